//go:build cgo && linux && !fuse3

package fsapi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/replica"
)

// needTool skips the test, with one line, when a tool is not installed.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("skipping: %s is not installed", name)
	}
	return p
}

// run runs a command in dir with a bounded time and returns its output.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v: timed out\n%s", name, args, out)
	}
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// noLocalNames fails if names the default ignore list keeps local reached
// the replica.
func noLocalNames(t *testing.T, r *replica.Replica) {
	t.Helper()
	recs, err := r.Log("/")
	must(t, err)
	im := ignoreMatcher(DefaultIgnore())
	for _, rec := range recs {
		if im.match(rec.Path) {
			t.Errorf("ignored name %s reached the log (%s)", rec.Path, rec.Action)
		}
	}
}

func TestVim(t *testing.T) {
	vim := needTool(t, "vim")
	r := newReplica(t, "")
	_, mnt := mount(t, r, Options{Grace: 300 * time.Millisecond})
	watchdog(t, 2*time.Minute, mnt)
	must(t, os.MkdirAll(mnt+"/etc", 0o755))
	must(t, os.WriteFile(mnt+"/etc/app.conf", []byte("port=80\nhost=a\n"), 0o644))
	before := entriesAt(t, r, "/etc")
	// A swap file, a 4913 probe and a rename-to-backup save, as vim does
	// with its defaults (backupskip would skip backups below /tmp, where
	// the test mounts).
	run(t, mnt+"/etc", []string{"HOME=" + t.TempDir()}, vim, "-u", "NONE", "-i", "NONE", "-N", "-es",
		"-c", "set swapfile backupskip= writebackup nobackup backupcopy=auto", "-c", "%s/port=80/port=8080/", "-c", "wq", "app.conf")
	if got, _ := r.ReadFile("/etc/app.conf"); string(got) != "port=8080\nhost=a\n" {
		t.Errorf("replica has %q", got)
	}
	time.Sleep(600 * time.Millisecond) // past the delete grace
	if n := entriesAt(t, r, "/etc") - before; n != 1 {
		recs, _ := r.Log("/etc")
		t.Errorf("the save made %d entries, want one write: %+v", n, recs)
	}
	if _, err := r.Stat("/etc/app.conf"); err != nil {
		t.Errorf("file gone after the grace: %v", err)
	}
	noLocalNames(t, r)
	ents, _ := os.ReadDir(mnt + "/etc")
	if len(ents) != 1 {
		t.Errorf("left in the directory: %v", ents)
	}
	// The same with the backup kept (backupcopy=no renames the original away).
	run(t, mnt+"/etc", []string{"HOME=" + t.TempDir()}, vim, "-u", "NONE", "-i", "NONE", "-N", "-es",
		"-c", "set swapfile backupskip= backup backupcopy=no", "-c", "%s/host=a/host=b/", "-c", "wq", "app.conf")
	time.Sleep(600 * time.Millisecond)
	if got := readFile(t, mnt+"/etc/app.conf~"); got != "port=8080\nhost=a\n" {
		t.Errorf("local backup reads %q", got)
	}
	if got, _ := r.ReadFile("/etc/app.conf"); string(got) != "port=8080\nhost=b\n" {
		t.Errorf("replica has %q", got)
	}
	if n := countActions(t, r, "/etc/app.conf", "delete"); n != 0 {
		t.Errorf("the save deleted the file %d times", n)
	}
	noLocalNames(t, r)
}

func TestSedInPlace(t *testing.T) {
	sed := needTool(t, "sed")
	r := newReplica(t, "")
	_, mnt := mount(t, r, Options{})
	watchdog(t, time.Minute, mnt)
	must(t, os.WriteFile(mnt+"/app.conf", []byte("a=1\nb=2\n"), 0o640))
	before := r.NumEntries()
	run(t, mnt, nil, sed, "-i", "s/b=2/b=3/", "app.conf")
	if n := r.NumEntries() - before; n != 1 {
		t.Errorf("sed -i made %d entries, want one write", n)
	}
	if got, _ := r.ReadFile("/app.conf"); string(got) != "a=1\nb=3\n" {
		t.Errorf("replica has %q", got)
	}
	if n, _ := r.Stat("/app.conf"); n.Mode != 0o640 {
		t.Errorf("mode %o", n.Mode)
	}
	ents, _ := os.ReadDir(mnt)
	if len(ents) != 2 { // .cluster, app.conf
		t.Errorf("left behind: %v", ents)
	}
	recs, err := r.Log("/")
	must(t, err)
	for _, rec := range recs {
		if strings.HasPrefix(rec.Path, "/sed") {
			t.Errorf("sed's temporary file reached the log: %+v", rec)
		}
	}
}

func TestRsync(t *testing.T) {
	rsync := needTool(t, "rsync")
	r := newReplica(t, "")
	_, mnt := mount(t, r, Options{})
	watchdog(t, 2*time.Minute, mnt)
	src := filepath.Join(t.TempDir(), "src")
	st := genTree(t, src, smallSpec)
	before := r.NumEntries()
	run(t, "/", nil, rsync, "-aH", src+"/", mnt+"/dst/")
	t.Logf("rsync -aH: %d entries for %d files, %d dirs, %d symlinks, %d hard links", r.NumEntries()-before, st.Files, st.Dirs, st.Symlinks, st.Links)
	tmp := ignoreMatcher(DefaultTemp())
	recs, err := r.Log("/dst")
	must(t, err)
	for _, rec := range recs {
		if tmp.match(rec.Path) || rec.Action == "rename" || rec.Action == "delete" {
			t.Errorf("rsync's temporary file reached the log: %s %s", rec.Action, rec.Path)
		}
	}
	compareTrees(t, src, mnt+"/dst", time.Nanosecond)
	checkHardLinks(t, src, mnt+"/dst")
	// An incremental run after a change rewrites just that file.
	var changed string
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if changed == "" && err == nil && d.Type().IsRegular() {
			changed = p
		}
		return nil
	})
	must(t, os.WriteFile(changed, []byte("changed by the test\n"), 0o644))
	run(t, "/", nil, rsync, "-aH", src+"/", mnt+"/dst/")
	compareTrees(t, src, mnt+"/dst", time.Nanosecond)
	rel, _ := filepath.Rel(src, changed)
	if got, _ := r.ReadFile("/dst/" + rel); string(got) != "changed by the test\n" {
		t.Errorf("replica has %q", got)
	}
}

func TestCpTar(t *testing.T) {
	r := newReplica(t, "")
	m, mnt := mount(t, r, Options{})
	watchdog(t, 2*time.Minute, mnt)
	src := filepath.Join(t.TempDir(), "src")
	st := genTree(t, src, smallSpec)
	before := r.NumEntries()
	run(t, "/", nil, "cp", "-a", src, mnt+"/cp")
	t.Logf("cp -a: %d entries for %d files, %d dirs, %d symlinks, %d hard links", r.NumEntries()-before, st.Files, st.Dirs, st.Symlinks, st.Links)
	compareTrees(t, src, mnt+"/cp", time.Nanosecond)
	checkHardLinks(t, src, mnt+"/cp")
	tar := needTool(t, "tar")
	must(t, os.Mkdir(mnt+"/tar", 0o755))
	archive := filepath.Join(t.TempDir(), "t.tar")
	run(t, src, nil, tar, "cf", archive, ".")
	before = r.NumEntries()
	run(t, mnt+"/tar", nil, tar, "xf", archive)
	t.Logf("tar x: %d entries", r.NumEntries()-before)
	if sent, _ := m.stats(); sent != 0 {
		t.Errorf("writes through the mount invalidated the kernel's cache %d times", sent)
	}
	compareTrees(t, src, mnt+"/tar", time.Second) // tar keeps whole seconds
	checkHardLinks(t, src, mnt+"/tar")
	// Reading the tree back with tar gives the same archive listing.
	out := run(t, mnt+"/tar", nil, tar, "cf", "-", ".")
	if len(out) == 0 {
		t.Error("tar c through the mount produced nothing")
	}
}

func TestGit(t *testing.T) {
	git := needTool(t, "git")
	r := newReplica(t, "")
	_, mnt := mount(t, r, Options{})
	watchdog(t, 2*time.Minute, mnt)
	env := []string{"HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org"}
	repo := mnt + "/repo"
	must(t, os.Mkdir(repo, 0o755))
	run(t, repo, env, git, "init", "-q", "-b", "main")
	must(t, os.WriteFile(repo+"/app.conf", []byte("v=1\n"), 0o644))
	must(t, os.MkdirAll(repo+"/conf.d", 0o755))
	must(t, os.WriteFile(repo+"/conf.d/a.conf", []byte("a\n"), 0o644))
	must(t, os.WriteFile(repo+"/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755))
	run(t, repo, env, git, "add", ".")
	run(t, repo, env, git, "commit", "-q", "-m", "one")
	run(t, repo, env, git, "checkout", "-q", "-b", "other")
	must(t, os.WriteFile(repo+"/app.conf", []byte("v=2\n"), 0o644))
	must(t, os.Remove(repo+"/conf.d/a.conf"))
	must(t, os.WriteFile(repo+"/conf.d/b.conf", []byte("b\n"), 0o644))
	run(t, repo, env, git, "add", "-A")
	run(t, repo, env, git, "commit", "-q", "-m", "two")
	run(t, repo, env, git, "checkout", "-q", "main")
	if got, _ := r.ReadFile("/repo/app.conf"); string(got) != "v=1\n" {
		t.Errorf("after checkout main: %q", got)
	}
	if _, err := r.Stat("/repo/conf.d/b.conf"); !replica.IsKind(err, replica.NotExist) {
		t.Errorf("b.conf after checkout main: %v", err)
	}
	if got := readFile(t, repo+"/conf.d/a.conf"); got != "a\n" {
		t.Errorf("a.conf reads %q", got)
	}
	if st := run(t, repo, env, git, "status", "--porcelain"); strings.TrimSpace(st) != "" {
		t.Errorf("git status after checkout:\n%s", st)
	}
	run(t, repo, env, git, "checkout", "-q", "other")
	if got, _ := r.ReadFile("/repo/app.conf"); string(got) != "v=2\n" {
		t.Errorf("after checkout other: %q", got)
	}
	if n, _ := r.Stat("/repo/run.sh"); n.Mode&0o111 == 0 {
		t.Errorf("run.sh lost its execute bits: %o", n.Mode)
	}
	run(t, repo, env, git, "fsck", "--no-progress")
	// A clone into the mount works too.
	run(t, mnt, env, git, "clone", "-q", repo, mnt+"/clone")
	if got := readFile(t, mnt+"/clone/app.conf"); got != "v=2\n" {
		t.Errorf("clone reads %q", got)
	}
}

func TestIgnored(t *testing.T) {
	r := newReplica(t, "")
	m, mnt := mount(t, r, Options{Grace: 200 * time.Millisecond})
	watchdog(t, time.Minute, mnt)
	p := func(s string) string { return filepath.Join(mnt, s) }
	must(t, os.WriteFile(p(".app.conf.swp"), []byte("swap"), 0o600))
	must(t, os.WriteFile(p("app.conf~"), []byte("backup"), 0o644))
	must(t, os.WriteFile(p("#app.conf#"), []byte("autosave"), 0o644))
	must(t, os.Symlink("user@host.123", p(".#app.conf")))
	if got := readFile(t, p(".app.conf.swp")); got != "swap" {
		t.Errorf("local file reads %q", got)
	}
	if tg, _ := os.Readlink(p(".#app.conf")); tg != "user@host.123" {
		t.Errorf("local symlink %q", tg)
	}
	ents, _ := os.ReadDir(mnt)
	if len(ents) != 5 {
		t.Errorf("listing %v", ents)
	}
	if n := entriesAt(t, r, "/"); n != 2 { // root and /.cluster
		t.Errorf("ignored files made entries: %d", n)
	}

	// A local file renamed to a real name is written as that file, once.
	must(t, os.Rename(p("#app.conf#"), p("app.conf")))
	if got, _ := r.ReadFile("/app.conf"); string(got) != "autosave" {
		t.Errorf("replica has %q", got)
	}
	if n := entriesAt(t, r, "/app.conf"); n != 1 {
		t.Errorf("%d entries for the renamed local file", n)
	}
	// A real file renamed to an ignored name and not replaced is deleted
	// after the grace period; the local copy stays.
	must(t, os.WriteFile(p("old.conf"), []byte("old"), 0o644))
	must(t, os.Rename(p("old.conf"), p("old.conf~")))
	if _, err := os.Stat(p("old.conf")); !os.IsNotExist(err) {
		t.Errorf("renamed file still shows: %v", err)
	}
	waitFor(t, "the deferred delete", func() bool {
		_, err := r.Stat("/old.conf")
		return replica.IsKind(err, replica.NotExist)
	})
	if got := readFile(t, p("old.conf~")); got != "old" {
		t.Errorf("local backup reads %q", got)
	}
	// A file created in place of one renamed away, then removed before it
	// was written: the original is gone too.
	must(t, os.WriteFile(p("twice.conf"), []byte("orig"), 0o644))
	must(t, os.Rename(p("twice.conf"), p("twice.conf~")))
	nf, err := os.Create(p("twice.conf"))
	must(t, err)
	must(t, os.Remove(p("twice.conf")))
	nf.Close()
	if _, err := r.Stat("/twice.conf"); !replica.IsKind(err, replica.NotExist) {
		t.Errorf("the replaced original survived: %v", err)
	}
	if _, err := os.Stat(p("twice.conf")); !os.IsNotExist(err) {
		t.Errorf("the mount still shows it: %v", err)
	}
	// Editing a replicated file whose name looks ignored replicates.
	_, err = r.WriteFile(testKey("root"), "/shared~", []byte("from elsewhere"), replica.WriteOptions{})
	must(t, err)
	must(t, os.WriteFile(p("shared~"), []byte("edited"), 0o644))
	if got, _ := r.ReadFile("/shared~"); string(got) != "edited" {
		t.Errorf("replicated look-alike has %q", got)
	}
	must(t, os.Remove(p(".app.conf.swp")))
	if _, err := os.Stat(p(".app.conf.swp")); !os.IsNotExist(err) {
		t.Error("unlinked local file still there")
	}
	noLocalNames2 := func() {
		for _, n := range []string{"/.app.conf.swp", "/app.conf~", "/.#app.conf", "/old.conf~"} {
			if _, err := r.Stat(n); !replica.IsKind(err, replica.NotExist) {
				t.Errorf("%s reached the replica", n)
			}
		}
	}
	noLocalNames2()
	// Local files live in memory: gone after a remount.
	must(t, m.Unmount())
	m2, err := Mount(r, mnt, Options{Key: testKey("root")})
	must(t, err)
	defer m2.Unmount()
	if _, err := os.Stat(p("app.conf~")); !os.IsNotExist(err) {
		t.Errorf("local file survived the remount: %v", err)
	}
}

func TestTempFiles(t *testing.T) {
	r := newReplica(t, "")
	_, mnt := mount(t, r, Options{Grace: 300 * time.Millisecond})
	watchdog(t, time.Minute, mnt)
	p := func(s string) string { return filepath.Join(mnt, s) }
	// Renamed over the real name while young: one write of the real name.
	must(t, os.WriteFile(p(".app.conf.Ab12Cd"), []byte("new"), 0o640))
	must(t, os.Chtimes(p(".app.conf.Ab12Cd"), time.Unix(1e9, 0), time.Unix(1e9, 0)))
	must(t, os.Rename(p(".app.conf.Ab12Cd"), p("app.conf")))
	if n := entriesAt(t, r, "/"); n != 3 { // root, /.cluster, /app.conf
		t.Errorf("%d entries, want one more than the two of a new filesystem", n)
	}
	if n, _ := r.Stat("/app.conf"); n.Mode != 0o640 || n.MTime != 1e18 {
		t.Errorf("renamed temporary file: mode %o mtime %d", n.Mode, n.MTime)
	}
	// A real file with a temporary-looking name is written after the grace.
	must(t, os.WriteFile(p(".env.backup"), []byte("keep me"), 0o600))
	if _, err := r.Stat("/.env.backup"); err == nil {
		t.Error("written before the grace period ended")
	}
	waitFor(t, "the late write", func() bool {
		got, err := r.ReadFile("/.env.backup")
		return err == nil && string(got) == "keep me"
	})
	if got := readFile(t, p(".env.backup")); got != "keep me" {
		t.Errorf("mount reads %q", got)
	}
	// fsync writes it at once.
	f, err := os.Create(p(".synced.Xy98Zw"))
	must(t, err)
	_, err = f.WriteString("now")
	must(t, err)
	must(t, f.Sync())
	if got, err := r.ReadFile("/.synced.Xy98Zw"); err != nil || string(got) != "now" {
		t.Errorf("after fsync the replica has %q, %v", got, err)
	}
	must(t, f.Close())
	// Removed while young: nothing.
	must(t, os.WriteFile(p("sedAbCdEf"), []byte("x"), 0o644))
	must(t, os.Remove(p("sedAbCdEf")))
	time.Sleep(500 * time.Millisecond)
	if _, err := r.Stat("/sedAbCdEf"); err == nil {
		t.Error("a removed temporary file reached the replica")
	}
}
