//go:build cgo && linux && !fuse3

package fsapi

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asNobody runs argv as uid/gid 65534 and returns its output and error.
func asNobody(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestOtherUsersUseTheMount: a service that is not root (uid 65534)
// stats the mount, reads a 0644 file and is refused a 0600 one: the mount
// has allow_other, and the kernel checks the mode bits.
func TestOtherUsersUseTheMount(t *testing.T) {
	r := newReplica(t, "")
	_, dir := mount(t, r, Options{})
	watchdog(t, 60*time.Second, dir)
	// The test's temporary directories are 0700; let others reach the mount.
	for d := filepath.Dir(dir); d != "/" && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if err := os.WriteFile(filepath.Join(dir, "public.conf"), []byte("listen=80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.conf"), []byte("password=x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := asNobody("stat", dir); err != nil {
		t.Fatalf("stat of the mount point as nobody: %v: %s", err, out)
	}
	if out, err := asNobody("cat", filepath.Join(dir, "public.conf")); err != nil || out != "listen=80\n" {
		t.Fatalf("cat of a 0644 file as nobody: %v: %q", err, out)
	}
	if out, err := asNobody("cat", filepath.Join(dir, "secret.conf")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("cat of a 0600 file as nobody: %v: %q", err, out)
	}
	if out, err := asNobody("sh", "-c", "echo x > "+filepath.Join(dir, "new")); err == nil {
		t.Fatalf("nobody created a file in a 0755 directory of root's: %q", out)
	}
}

// TestPrivateMount: with Private, only the mounting user may use it.
func TestPrivateMount(t *testing.T) {
	r := newReplica(t, "")
	_, dir := mount(t, r, Options{Private: true})
	watchdog(t, 60*time.Second, dir)
	for d := filepath.Dir(dir); d != "/" && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if out, err := asNobody("stat", dir); err == nil {
		t.Fatalf("nobody could stat a private mount: %s", out)
	}
}

// TestNameTooLong: a name over 255 bytes or a path over 1024 bytes gives
// ENAMETOOLONG (not EINVAL).
func TestNameTooLong(t *testing.T) {
	r := newReplica(t, "")
	_, dir := mount(t, r, Options{})
	watchdog(t, 60*time.Second, dir)
	if err := os.WriteFile(filepath.Join(dir, strings.Repeat("n", 256)), nil, 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("a 256-byte name: %v", err)
	}
	long := strings.Repeat("d", 200)
	p := dir
	for len(p)-len(dir)+201 <= 1024 {
		p = filepath.Join(p, long)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatalf("mkdir at %d bytes: %v", len(p)-len(dir), err)
		}
	}
	for _, try := range []func(string) error{
		func(q string) error { return os.Mkdir(q, 0o755) },
		func(q string) error { return os.WriteFile(q, nil, 0o644) },
		func(q string) error { return os.Symlink("x", q) },
	} {
		if err := try(filepath.Join(p, long)); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Fatalf("a path over 1024 bytes: %v, want ENAMETOOLONG", err)
		}
	}
}

// TestOwnersByName: chown in the mount records names; cp -a keeps a
// file's owner; the replica shows the names and the mount the local ids.
func TestOwnersByName(t *testing.T) {
	r := newReplica(t, "")
	_, dir := mount(t, r, Options{})
	watchdog(t, 60*time.Second, dir)
	p := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(p, []byte("x=1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	st, err := r.Stat("/app.conf")
	if err != nil || (st.Owner != "nobody:nogroup" && st.Owner != "nobody:nobody" && st.Owner != "65534:65534") {
		t.Fatalf("replica owner %q, %v", st.Owner, err)
	}
	var fi syscall.Stat_t
	if err := syscall.Stat(p, &fi); err != nil || fi.Uid != 65534 || fi.Gid != 65534 {
		t.Fatalf("mount shows %d:%d (%v)", fi.Uid, fi.Gid, err)
	}
	// cp -a of a tree with a non-root owner keeps it.
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "pg_hba.conf"), []byte("local all all peer\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(src, "pg_hba.conf"), 65534, 65534)
	if out, err := exec.Command("cp", "-a", filepath.Join(src, "pg_hba.conf"), filepath.Join(dir, "pg_hba.conf")).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	if err := syscall.Stat(filepath.Join(dir, "pg_hba.conf"), &fi); err != nil || fi.Uid != 65534 || fi.Gid != 65534 || fi.Mode&0o777 != 0o640 {
		t.Fatalf("after cp -a the mount shows %d:%d %o (%v)", fi.Uid, fi.Gid, fi.Mode&0o777, err)
	}
	if st, err := r.Stat("/pg_hba.conf"); err != nil || st.Owner == "" {
		t.Fatalf("cp -a's owner not recorded: %q %v", st.Owner, err)
	}
	// chown -1 keeps the user and changes the group.
	if err := os.Lchown(p, -1, 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Stat("/app.conf"); !strings.HasSuffix(st.Owner, ":root") || !strings.HasPrefix(st.Owner, "nobody:") && !strings.HasPrefix(st.Owner, "65534:") {
		t.Fatalf("after chgrp root: %q", st.Owner)
	}
}

// TestDirLinkCountInMount: stat shows 2 + subdirectories, at once.
func TestDirLinkCountInMount(t *testing.T) {
	r := newReplica(t, "")
	_, dir := mount(t, r, Options{})
	watchdog(t, 60*time.Second, dir)
	a := filepath.Join(dir, "a")
	for _, d := range []string{a, filepath.Join(a, "b"), filepath.Join(a, "c")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(a, "f"), []byte("x"), 0o644)
	var st syscall.Stat_t
	if err := syscall.Stat(a, &st); err != nil || st.Nlink != 4 {
		t.Fatalf("nlink of a dir with 2 subdirectories: %d (%v)", st.Nlink, err)
	}
	if err := os.Remove(filepath.Join(a, "c")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(a, &st); err != nil || st.Nlink != 3 {
		t.Fatalf("after rmdir: nlink %d (%v)", st.Nlink, err)
	}
}
