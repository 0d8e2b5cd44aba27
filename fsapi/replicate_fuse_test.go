//go:build cgo && linux && !fuse3

package fsapi

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/replica"
)

// TestReplicateTree copies a generated tree into one replica's mount and
// reads it back identical from a second replica's mount once the entries
// and blocks have been moved there; then renames, chmod, symlinks, unlinks
// and hard links made through the first mount show through the second.
func TestReplicateTree(t *testing.T) {
	a := newReplica(t, "")
	b := cloneReplica(t, a)
	mta, ma := mount(t, a, Options{})
	mtb, mb := mount(t, b, Options{})
	watchdog(t, 2*time.Minute, ma, mb)
	src := filepath.Join(t.TempDir(), "src")
	st := genTree(t, src, smallSpec)

	// Before: the second mount has cached that "tree" does not exist.
	if _, err := os.Stat(filepath.Join(mb, "tree")); !os.IsNotExist(err) {
		t.Fatalf("tree exists before the copy: %v", err)
	}
	out, err := exec.Command("cp", "-a", src, filepath.Join(ma, "tree")).CombinedOutput()
	if err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	n := compareTrees(t, src, filepath.Join(ma, "tree"), time.Nanosecond)
	if want := 1 + st.Files + st.Dirs + st.Symlinks + st.Links; n != want {
		t.Errorf("compared %d paths, want %d", n, want)
	}
	moved := ship(t, a, b)
	t.Logf("%d paths, %d entries moved to the second replica", n, moved)
	waitFor(t, "the tree on the second mount", func() bool {
		_, err := os.Stat(filepath.Join(mb, "tree"))
		return err == nil
	})
	compareTrees(t, src, filepath.Join(mb, "tree"), time.Nanosecond)
	checkHardLinks(t, src, filepath.Join(mb, "tree"))

	// Operations through the first mount replicate.
	pa := func(s string) string { return filepath.Join(ma, "tree", s) }
	pb := func(s string) string { return filepath.Join(mb, "tree", s) }
	must(t, os.WriteFile(pa("ops.conf"), []byte("v1"), 0o644))
	must(t, os.Rename(pa("ops.conf"), pa("renamed.conf")))
	must(t, os.Chmod(pa("renamed.conf"), 0o600))
	must(t, os.Symlink("renamed.conf", pa("ops.link")))
	must(t, os.Link(pa("renamed.conf"), pa("ops.hard")))
	must(t, os.WriteFile(pa("gone.conf"), []byte("x"), 0o644))
	must(t, os.Remove(pa("gone.conf")))
	must(t, os.Mkdir(pa("newdir"), 0o700))
	must(t, os.WriteFile(pa("newdir/f"), []byte("in dir"), 0o644))
	must(t, os.Rename(pa("newdir"), pa("moveddir")))
	ship(t, a, b)
	waitFor(t, "the operations on the second mount", func() bool {
		_, err := os.Stat(pb("moveddir/f"))
		return err == nil
	})
	if got := readFile(t, pb("renamed.conf")); got != "v1" {
		t.Errorf("renamed file reads %q", got)
	}
	if _, err := os.Stat(pb("ops.conf")); !os.IsNotExist(err) {
		t.Errorf("old name still there: %v", err)
	}
	if fi, err := os.Stat(pb("renamed.conf")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("chmod did not replicate: %v %v", fi, err)
	}
	if tg, err := os.Readlink(pb("ops.link")); err != nil || tg != "renamed.conf" {
		t.Errorf("symlink: %q %v", tg, err)
	}
	sa, sb := statT(t, pb("renamed.conf")), statT(t, pb("ops.hard"))
	if sa.Ino != sb.Ino || sa.Nlink != 2 {
		t.Errorf("hard link: inodes %d %d nlink %d", sa.Ino, sb.Ino, sa.Nlink)
	}
	if _, err := os.Stat(pb("gone.conf")); !os.IsNotExist(err) {
		t.Errorf("unlinked file still there: %v", err)
	}
	if got := readFile(t, pb("moveddir/f")); got != "in dir" {
		t.Errorf("moved dir's file reads %q", got)
	}
	if fi, err := os.Stat(pb("moveddir")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("moved dir: %v %v", fi, err)
	}
	var av, bv string
	underMount(mta, func() { av = a.Status().ViewHash })
	underMount(mtb, func() { bv = b.Status().ViewHash })
	if av != bv {
		t.Errorf("view hashes differ: %s vs %s", av, bv)
	}
}

// checkHardLinks fails unless files that share an inode under a share one
// under b.
func checkHardLinks(t testing.TB, a, b string) {
	t.Helper()
	groups := map[uint64][]string{}
	filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			var st syscall.Stat_t
			if syscall.Lstat(p, &st) == nil && st.Nlink > 1 {
				rel, _ := filepath.Rel(a, p)
				groups[st.Ino] = append(groups[st.Ino], rel)
			}
		}
		return nil
	})
	if len(groups) == 0 {
		t.Error("the source tree has no hard links")
	}
	for _, rels := range groups {
		first := statT(t, filepath.Join(b, rels[0]))
		for _, rel := range rels[1:] {
			if st := statT(t, filepath.Join(b, rel)); st.Ino != first.Ino {
				t.Errorf("%s and %s are no longer one file", rels[0], rel)
			}
		}
	}
}

// TestRemoteVisibility ingests entries on the replica behind a mount whose
// kernel caches live 30 s, and measures how soon stat and read see them.
func TestRemoteVisibility(t *testing.T) {
	a := newReplica(t, "")
	root := testKey("root")
	_, err := a.WriteFile(root, "/etc/app.conf", []byte("port=80\n"), replica.WriteOptions{Parents: true})
	must(t, err)
	b := cloneReplica(t, a)
	mtb, mb := mount(t, b, Options{AttrTimeout: 30 * time.Second})
	watchdog(t, time.Minute, mb)
	p := filepath.Join(mb, "etc/app.conf")
	if got := readFile(t, p); got != "port=80\n" {
		t.Fatalf("read %q", got)
	}
	if _, err := os.Stat(filepath.Join(mb, "etc/new.conf")); !os.IsNotExist(err) {
		t.Fatal(err)
	}
	_, err = a.WriteFile(root, "/etc/app.conf", []byte("port=8080\n"), replica.WriteOptions{})
	must(t, err)
	_, err = a.WriteFile(root, "/etc/new.conf", []byte("new\n"), replica.WriteOptions{})
	must(t, err)
	start := time.Now()
	ship(t, a, b)
	ingest := time.Since(start)
	changed := waitFor(t, "the changed file", func() bool {
		b, _ := os.ReadFile(p)
		return string(b) == "port=8080\n"
	})
	created := waitFor(t, "the new file", func() bool {
		_, err := os.Stat(filepath.Join(mb, "etc/new.conf"))
		return err == nil
	})
	sent, batches := mtb.stats()
	t.Logf("visible through the mount after ingest (%v): changed file %v, new file %v (attribute timeout 30s; %d notifications in %d batches)",
		ingest, changed, created, sent, batches)
	if changed > 2*time.Second || created > 2*time.Second {
		t.Errorf("remote changes took %v and %v to show", changed, created)
	}
	// Deletion and a rename of a directory.
	must(t, a.Remove(root, "/etc/new.conf", false, false))
	must(t, a.Rename(root, "/etc", "/conf", false))
	ship(t, a, b)
	waitFor(t, "the rename", func() bool {
		_, err1 := os.Stat(filepath.Join(mb, "etc"))
		_, err2 := os.Stat(filepath.Join(mb, "conf/app.conf"))
		return os.IsNotExist(err1) && err2 == nil
	})
	if _, err := os.Stat(filepath.Join(mb, "conf/new.conf")); !os.IsNotExist(err) {
		t.Errorf("deleted file: %v", err)
	}
}

// TestRemoteVisibilityTimeouts measures how soon a remote write shows with
// the kernel cache invalidation off, for several attribute timeouts, and
// with it on. The numbers are logged (they are in the package README).
func TestRemoteVisibilityTimeouts(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the visibility measurement in -short mode")
	}
	cases := []struct {
		timeout time.Duration
		inval   bool
	}{{time.Second, true}, {-1, false}, {100 * time.Millisecond, false}, {time.Second, false}}
	for _, c := range cases {
		a := newReplica(t, "")
		root := testKey("root")
		_, err := a.WriteFile(root, "/etc/app.conf", []byte("v0"), replica.WriteOptions{Parents: true})
		must(t, err)
		b := cloneReplica(t, a)
		_, mb := mount(t, b, Options{AttrTimeout: c.timeout, noInvalidate: !c.inval})
		watchdog(t, time.Minute, mb)
		p := filepath.Join(mb, "etc/app.conf")
		var worst, total time.Duration
		const rounds = 5
		for i := 1; i <= rounds; i++ {
			readFile(t, p) // cached now
			want := fmt.Sprintf("version %d%s", i, strings.Repeat("+", i))
			_, err := a.WriteFile(root, "/etc/app.conf", []byte(want), replica.WriteOptions{})
			must(t, err)
			ship(t, a, b)
			d := waitFor(t, "the write", func() bool {
				fi, err := os.Stat(p)
				if err != nil || fi.Size() != int64(len(want)) {
					return false
				}
				got, _ := os.ReadFile(p)
				return string(got) == want
			})
			total += d
			worst = max(worst, d)
			time.Sleep(time.Duration(i) * 37 * time.Millisecond) // vary the phase
		}
		t.Logf("attr timeout %v, invalidation %v: mean %v, worst %v", c.timeout, c.inval, total/rounds, worst)
	}
}

// TestExternalUnmount unmounts from outside (as fusermount -u, or cgofuse's
// own SIGINT handler, would) while remote changes keep the invalidator
// busy: the process must survive the FUSE library's teardown, and Unmount
// afterwards must still commit and return.
func TestExternalUnmount(t *testing.T) {
	a := newReplica(t, "")
	root := testKey("root")
	_, err := a.WriteFile(root, "/etc/app.conf", []byte("v0"), replica.WriteOptions{Parents: true})
	must(t, err)
	b := cloneReplica(t, a)
	m, mb := mount(t, b, Options{})
	watchdog(t, time.Minute, mb)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := a.WriteFile(root, "/etc/app.conf", []byte(fmt.Sprintf("v%d", i)), replica.WriteOptions{}); err != nil {
				t.Error(err)
				return
			}
			entries, blocks := pending(t, a, b)
			if _, err := b.Ingest(entries, blocks); err != nil {
				t.Error(err)
				return
			}
			os.Stat(filepath.Join(mb, "etc/app.conf")) // keep it cached
		}
	}()
	time.Sleep(200 * time.Millisecond)
	must(t, syscall.Unmount(mb, syscall.MNT_DETACH))
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	if err := m.Unmount(); err != nil {
		t.Errorf("unmount after an external unmount: %v", err)
	}
}
