//go:build cgo && linux && !fuse3

package fsapi

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	blog "github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// fuseSkip says why FUSE tests cannot run here ("" when they can).
var fuseSkip = sync.OnceValue(func() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return "/dev/fuse: " + err.Error()
	}
	f.Close()
	if _, err := exec.LookPath("fusermount"); err != nil {
		return "no fusermount"
	}
	return ""
})

// needFUSE skips the test, with one line, when FUSE mounts are impossible.
func needFUSE(t testing.TB) {
	t.Helper()
	if why := fuseSkip(); why != "" {
		t.Skipf("skipping FUSE test: needs root, /dev/fuse and fusermount (%s)", why)
	}
}

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("fsapi-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// newReplica creates a filesystem in a temporary directory, with the "root"
// test key as its root authority.
func newReplica(t testing.TB, dir string) *replica.Replica {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	r, err := replica.Create(filepath.Join(dir, "fs"), "test", testKey("root"), []string{"127.0.0.1:7946"}, replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// isMounted reports whether dir is a mount point.
func isMounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && fs[4] == dir {
			return true
		}
	}
	return false
}

// mount mounts r with the given options (the root key when opts.Key is
// nil) and unmounts in cleanup, lazily and forcibly if it must.
func mount(t testing.TB, r *replica.Replica, opts Options) (*Mounted, string) {
	t.Helper()
	needFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.Key == nil {
		opts.Key = testKey("root")
	}
	m, err := Mount(r, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if isMounted(dir) {
			syscall.Unmount(dir, syscall.MNT_DETACH|syscall.MNT_FORCE)
		}
	})
	return m, dir
}

// watchdog bounds a test: past d it force-unmounts the test's mounts (so
// calls blocked in the file system fail instead of hanging) and fails.
func watchdog(t testing.TB, d time.Duration, dirs ...string) {
	t.Helper()
	tm := time.AfterFunc(d, func() {
		for _, dir := range dirs {
			syscall.Unmount(dir, syscall.MNT_DETACH|syscall.MNT_FORCE)
		}
		t.Errorf("test ran longer than %v; mounts were forcibly detached", d)
	})
	t.Cleanup(func() { tm.Stop() })
}

// cloneReplica opens a second replica of r's filesystem: a copy of r's
// store as it is now, in a new directory.
func cloneReplica(t testing.TB, r *replica.Replica) *replica.Replica {
	t.Helper()
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(r.Dir(), blog.StoreFileName))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, blog.StoreFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := replica.Open(dir, replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pending returns the entries of from that to lacks (decoded from their
// canonical bytes, as the network would deliver them) and the content
// blocks to lacks.
func pending(t testing.TB, from, to *replica.Replica) ([]*blog.Entry, [][]byte) {
	t.Helper()
	var entries []*blog.Entry
	var blocks [][]byte
	from.ScanEntries(0, func(e *blog.Entry) bool {
		if e.Content != nil {
			all, _ := from.ContentBlocks(e.Content)
			for _, h := range all {
				if to.HasBlock(h) {
					continue
				}
				b, err := from.Block(h)
				if err != nil {
					t.Fatal(err)
				}
				blocks = append(blocks, b)
			}
		}
		if to.HasEntry(e.Hash()) {
			return true
		}
		raw, ok := from.EntryBytes(e.Hash())
		if !ok {
			t.Fatalf("entry %s vanished", e.Hash().Short())
		}
		d, err := blog.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, d)
		return true
	})
	return entries, blocks
}

// ship moves what to lacks from from into to, as sync would.
func ship(t testing.TB, from, to *replica.Replica) int {
	t.Helper()
	entries, blocks := pending(t, from, to)
	res, err := to.Ingest(entries, blocks)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) > 0 {
		t.Fatalf("ingest rejected %v", res.Rejected)
	}
	return res.Entries
}

// countActions counts the log entries at exactly path with the action.
func countActions(t testing.TB, r *replica.Replica, path, action string) int {
	t.Helper()
	recs, err := r.Log(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range recs {
		if rec.Path == path && rec.Action == action {
			n++
		}
	}
	return n
}

// entriesAt counts the log entries at or below path.
func entriesAt(t testing.TB, r *replica.Replica, path string) int {
	t.Helper()
	recs, err := r.Log(path)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// errnoOf returns the errno inside err (0 for nil, -1 for another error).
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return ^syscall.Errno(0)
}

// wantErrno fails unless err carries the errno want.
func wantErrno(t testing.TB, what string, err error, want syscall.Errno) {
	t.Helper()
	if got := errnoOf(err); got != want {
		t.Errorf("%s: error %v (errno %d), want %v", what, err, got, want)
	}
}

// must fails the test on an error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readFile reads a file through the mount and fails on an error.
func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compareTrees fails unless the trees at a and b hold the same names, types,
// modes, contents and symlink targets, and files the same modification
// times to the precision prec (0: times are not compared).
func compareTrees(t testing.TB, a, b string, prec time.Duration) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		q := filepath.Join(b, rel)
		ai, err := os.Lstat(p)
		if err != nil {
			return err
		}
		bi, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		n++
		if ai.Mode().Type() != bi.Mode().Type() {
			t.Errorf("%s: type %v vs %v", rel, ai.Mode().Type(), bi.Mode().Type())
			return nil
		}
		switch {
		case ai.Mode()&fs.ModeSymlink != 0:
			ta, _ := os.Readlink(p)
			tb, _ := os.Readlink(q)
			if ta != tb {
				t.Errorf("%s: link %q vs %q", rel, ta, tb)
			}
			return nil
		case ai.IsDir():
			if rel != "." && ai.Mode().Perm() != bi.Mode().Perm() {
				t.Errorf("%s: mode %v vs %v", rel, ai.Mode(), bi.Mode())
			}
		default:
			if ai.Mode().Perm() != bi.Mode().Perm() {
				t.Errorf("%s: mode %v vs %v", rel, ai.Mode(), bi.Mode())
			}
			if ai.Size() != bi.Size() {
				t.Errorf("%s: size %d vs %d", rel, ai.Size(), bi.Size())
			}
			ca, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			cb, err := os.ReadFile(q)
			if err != nil {
				t.Errorf("%s: %v", rel, err)
				return nil
			}
			if !bytes.Equal(ca, cb) {
				t.Errorf("%s: contents differ", rel)
			}
			if prec > 0 && !ai.ModTime().Truncate(prec).Equal(bi.ModTime().Truncate(prec)) {
				t.Errorf("%s: mtime %v vs %v", rel, ai.ModTime(), bi.ModTime())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing extra on b's side.
	filepath.WalkDir(b, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(b, q)
		if _, err := os.Lstat(filepath.Join(a, rel)); err != nil {
			t.Errorf("%s: only in %s", rel, b)
		}
		return nil
	})
	return n
}

// waitFor polls cond (every 100 µs) for up to 5 seconds and returns how
// long it took.
func waitFor(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: not seen within 5s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return time.Since(start)
}

// underMount runs fn with the mount's lock held. The view caches sorted
// names and hashes when read (replica.List, Status), so calls from the test
// must not overlap the mount's own listings.
func underMount(m *Mounted, fn func()) {
	m.fs.mu.Lock()
	defer m.fs.mu.Unlock()
	fn()
}
