//go:build cgo && linux && !fuse3

package fsapi

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"

	blog "github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

func statT(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func TestAttributes(t *testing.T) {
	r := newReplica(t, "")
	root := testKey("root")
	mt := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC).UnixNano()
	_, err := r.WriteFile(root, "/etc/app.conf", []byte("port=80\n"), replica.WriteOptions{Mode: 0o640, MTime: mt, Parents: true})
	must(t, err)
	must(t, r.Symlink(root, "app.conf", "/etc/link", false))
	must(t, r.Link(root, "/etc/app.conf", "/etc/hard", false))
	_, mnt := mount(t, r, Options{UID: 1234, GID: 5678})
	watchdog(t, time.Minute, mnt)

	st := statT(t, mnt+"/etc/app.conf")
	if st.Mode != syscall.S_IFREG|0o640 || st.Size != 8 || st.Uid != 1234 || st.Gid != 5678 || st.Nlink != 2 {
		t.Errorf("file attributes: mode %o size %d owner %d:%d nlink %d", st.Mode, st.Size, st.Uid, st.Gid, st.Nlink)
	}
	if got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UnixNano(); got != mt {
		t.Errorf("mtime %d, want %d", got, mt)
	}
	hard := statT(t, mnt+"/etc/hard")
	if hard.Ino != st.Ino || hard.Ino != inoOf("/etc/app.conf") {
		t.Errorf("hard link inode %d, file inode %d", hard.Ino, st.Ino)
	}
	dir := statT(t, mnt+"/etc")
	if dir.Mode != syscall.S_IFDIR|0o755 || dir.Nlink < 2 || dir.Ino != inoOf("/etc") {
		t.Errorf("dir attributes: mode %o nlink %d ino %d", dir.Mode, dir.Nlink, dir.Ino)
	}
	ln := statT(t, mnt+"/etc/link")
	if ln.Mode != syscall.S_IFLNK|0o777 || ln.Size != int64(len("app.conf")) {
		t.Errorf("symlink attributes: mode %o size %d", ln.Mode, ln.Size)
	}
	if statT(t, mnt).Ino != 1 {
		t.Error("root inode is not 1")
	}

	// Size without content: a replica that has the entry but not its blocks.
	b := cloneReplica(t, r)
	big := make([]byte, 100_000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	_, err = r.WriteFile(root, "/etc/big", big, replica.WriteOptions{})
	must(t, err)
	entries, _ := pending(t, r, b)
	if _, err := b.Ingest(entries, nil); err != nil {
		t.Fatal(err)
	}
	_, mntB := mount(t, b, Options{})
	watchdog(t, time.Minute, mntB)
	if st := statT(t, mntB+"/etc/big"); st.Size != int64(len(big)) {
		t.Errorf("size without blocks %d, want %d", st.Size, len(big))
	}
	_, err = os.ReadFile(mntB + "/etc/big")
	wantErrno(t, "read without blocks", err, syscall.EAGAIN)
	ship(t, r, b)
	if got := readFile(t, mntB+"/etc/big"); got != string(big) {
		t.Error("content after the blocks arrived differs")
	}
}

func TestOperations(t *testing.T) {
	r := newReplica(t, "")
	m, mnt := mount(t, r, Options{})
	watchdog(t, 2*time.Minute, mnt)
	p := func(s string) string { return filepath.Join(mnt, s) }

	t.Run("create-read-write", func(t *testing.T) {
		must(t, os.WriteFile(p("a.txt"), []byte("hello\n"), 0o644))
		if got := readFile(t, p("a.txt")); got != "hello\n" {
			t.Fatalf("read %q", got)
		}
		f, err := os.OpenFile(p("a.txt"), os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		_, err = f.WriteString("world\n")
		must(t, err)
		must(t, f.Close())
		f, err = os.OpenFile(p("a.txt"), os.O_RDWR, 0)
		must(t, err)
		_, err = f.WriteAt([]byte("J"), 0)
		must(t, err)
		buf := make([]byte, 5)
		_, err = f.ReadAt(buf, 0)
		must(t, err)
		if string(buf) != "Jello" {
			t.Errorf("read own write %q", buf)
		}
		must(t, f.Truncate(3))
		must(t, f.Close())
		got, err := r.ReadFile("/a.txt")
		must(t, err)
		if string(got) != "Jel" {
			t.Errorf("replica has %q", got)
		}
		must(t, os.Truncate(p("a.txt"), 5))
		got, _ = r.ReadFile("/a.txt")
		if string(got) != "Jel\x00\x00" {
			t.Errorf("after truncate(2) replica has %q", got)
		}
		f, err = os.OpenFile(p("a.txt"), os.O_WRONLY|os.O_TRUNC, 0)
		must(t, err)
		must(t, f.Close())
		if n, _ := r.Stat("/a.txt"); n.Size != 0 {
			t.Errorf("O_TRUNC left %d bytes", n.Size)
		}
		_, err = os.OpenFile(p("a.txt"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		wantErrno(t, "O_EXCL on an existing file", err, syscall.EEXIST)
		_, err = os.Open(p("missing"))
		wantErrno(t, "open missing", err, syscall.ENOENT)
		_, err = os.Stat(p("a.txt/x"))
		wantErrno(t, "stat below a file", err, syscall.ENOTDIR)
		_, err = os.Create(p("nodir/x"))
		wantErrno(t, "create in a missing directory", err, syscall.ENOENT)
	})

	t.Run("mkdir-rmdir", func(t *testing.T) {
		must(t, os.Mkdir(p("d"), 0o750))
		if n, err := r.Stat("/d"); err != nil || n.Mode != 0o750 {
			t.Errorf("replica dir %+v %v", n, err)
		}
		wantErrno(t, "mkdir existing", os.Mkdir(p("d"), 0o755), syscall.EEXIST)
		wantErrno(t, "mkdir in missing", os.Mkdir(p("no/d"), 0o755), syscall.ENOENT)
		must(t, os.WriteFile(p("d/f"), []byte("x"), 0o644))
		wantErrno(t, "mkdir below a file", os.Mkdir(p("d/f/x"), 0o755), syscall.ENOTDIR)
		wantErrno(t, "rmdir non-empty", syscall.Rmdir(p("d")), syscall.ENOTEMPTY)
		wantErrno(t, "rmdir a file", syscall.Rmdir(p("d/f")), syscall.ENOTDIR)
		wantErrno(t, "rmdir missing", syscall.Rmdir(p("nope")), syscall.ENOENT)
		wantErrno(t, "unlink a directory", syscall.Unlink(p("d")), syscall.EISDIR)
		wantErrno(t, "unlink missing", syscall.Unlink(p("nope")), syscall.ENOENT)
		must(t, os.Remove(p("d/f")))
		must(t, syscall.Rmdir(p("d")))
		if _, err := r.Stat("/d"); !replica.IsKind(err, replica.NotExist) {
			t.Errorf("replica still has /d: %v", err)
		}
		_, err := os.ReadDir(p("a.txt"))
		wantErrno(t, "readdir of a file", err, syscall.ENOTDIR)
		_, err = os.OpenFile(p("/"), os.O_WRONLY, 0)
		wantErrno(t, "open a directory for writing", err, syscall.EISDIR)
	})

	t.Run("rename", func(t *testing.T) {
		must(t, os.WriteFile(p("r1"), []byte("one"), 0o644))
		must(t, os.WriteFile(p("r2"), []byte("two"), 0o644))
		must(t, os.Rename(p("r1"), p("r2")))
		if got := readFile(t, p("r2")); got != "one" {
			t.Errorf("replaced file reads %q", got)
		}
		if _, err := r.Stat("/r1"); !replica.IsKind(err, replica.NotExist) {
			t.Error("old name still in the replica")
		}
		must(t, os.MkdirAll(p("dir/sub"), 0o755))
		must(t, os.WriteFile(p("dir/sub/f"), []byte("deep"), 0o644))
		must(t, os.Rename(p("dir"), p("moved")))
		if got := readFile(t, p("moved/sub/f")); got != "deep" {
			t.Errorf("moved tree reads %q", got)
		}
		if got, _ := r.ReadFile("/moved/sub/f"); string(got) != "deep" {
			t.Errorf("replica's moved file %q", got)
		}
		must(t, os.Mkdir(p("empty"), 0o755))
		must(t, syscall.Rename(p("moved/sub"), p("empty"))) // os.Rename refuses existing directories
		if got := readFile(t, p("empty/f")); got != "deep" {
			t.Errorf("dir over empty dir: %q", got)
		}
		wantErrno(t, "rename file over dir", syscall.Rename(p("r2"), p("moved")), syscall.EISDIR)
		wantErrno(t, "rename dir over file", syscall.Rename(p("moved"), p("r2")), syscall.ENOTDIR)
		must(t, os.WriteFile(p("moved/x"), []byte("x"), 0o644))
		must(t, os.Mkdir(p("full"), 0o755))
		must(t, os.WriteFile(p("full/y"), []byte("y"), 0o644))
		wantErrno(t, "rename dir over non-empty dir", syscall.Rename(p("moved"), p("full")), syscall.ENOTEMPTY)
		wantErrno(t, "rename missing", os.Rename(p("nope"), p("x")), syscall.ENOENT)
		wantErrno(t, "rename into itself", os.Rename(p("full"), p("full/in")), syscall.EINVAL)
	})

	t.Run("symlink", func(t *testing.T) {
		must(t, os.Symlink("r2", p("sl")))
		if tg, err := os.Readlink(p("sl")); err != nil || tg != "r2" {
			t.Errorf("readlink %q %v", tg, err)
		}
		if got := readFile(t, p("sl")); got != "one" {
			t.Errorf("through the symlink: %q", got)
		}
		if tg, err := r.Readlink("/sl"); err != nil || tg != "r2" {
			t.Errorf("replica readlink %q %v", tg, err)
		}
		wantErrno(t, "symlink over existing", os.Symlink("x", p("sl")), syscall.EEXIST)
		_, err := os.Readlink(p("r2"))
		wantErrno(t, "readlink of a file", err, syscall.EINVAL)
	})

	t.Run("link", func(t *testing.T) {
		must(t, os.WriteFile(p("h1"), []byte("shared"), 0o644))
		must(t, os.Link(p("h1"), p("h2")))
		a, b := statT(t, p("h1")), statT(t, p("h2"))
		if a.Ino != b.Ino || b.Nlink != 2 {
			t.Errorf("hard link: inodes %d %d, nlink %d", a.Ino, b.Ino, b.Nlink)
		}
		must(t, os.WriteFile(p("h2"), []byte("changed"), 0o644))
		if got, _ := r.ReadFile("/h1"); string(got) != "changed" {
			t.Errorf("write through the link: primary has %q", got)
		}
		wantErrno(t, "link over existing", os.Link(p("h1"), p("h2")), syscall.EEXIST)
		wantErrno(t, "link missing", os.Link(p("nope"), p("h3")), syscall.ENOENT)
	})

	t.Run("chmod-utimens", func(t *testing.T) {
		must(t, os.WriteFile(p("m"), []byte("m"), 0o644))
		must(t, os.Chmod(p("m"), 0o600))
		if n, _ := r.Stat("/m"); n.Mode != 0o600 {
			t.Errorf("replica mode %o", n.Mode)
		}
		if st := statT(t, p("m")); st.Mode&0o7777 != 0o600 {
			t.Errorf("mount mode %o", st.Mode)
		}
		when := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
		must(t, os.Chtimes(p("m"), when, when))
		if n, _ := r.Stat("/m"); n.MTime != when.UnixNano() {
			t.Errorf("replica mtime %d, want %d", n.MTime, when.UnixNano())
		}
		if fi, err := os.Stat(p("m")); err != nil || !fi.ModTime().Equal(when) {
			t.Errorf("mount mtime %v", fi.ModTime())
		}
		// Only the modification time, as tar x and touch -m set it.
		only := time.Date(2018, 7, 8, 9, 10, 11, 12, time.UTC)
		must(t, utimensat(p("m"), [2]syscall.Timespec{{Nsec: utimeOmit}, syscall.NsecToTimespec(only.UnixNano())}))
		if n, _ := r.Stat("/m"); n.MTime != only.UnixNano() {
			t.Errorf("mtime-only utimensat: replica mtime %v", time.Unix(0, n.MTime))
		}
		before := time.Now()
		must(t, utimensat(p("m"), [2]syscall.Timespec{{Nsec: utimeOmit}, {Nsec: utimeNow}}))
		if n, _ := r.Stat("/m"); n.MTime < before.UnixNano() {
			t.Errorf("utimensat(UTIME_NOW): replica mtime %v", time.Unix(0, n.MTime))
		}
		must(t, utimensat(p("m"), [2]syscall.Timespec{{Nsec: utimeNow}, {Nsec: utimeOmit}}))
		must(t, os.Chmod(p("empty"), 0o700))
		if n, _ := r.Stat("/empty"); n.Mode != 0o700 {
			t.Errorf("dir mode %o", n.Mode)
		}
		wantErrno(t, "chmod missing", os.Chmod(p("nope"), 0o644), syscall.ENOENT)
		must(t, os.Lchown(p("m"), 0, 0))
	})

	t.Run("readdir-statfs", func(t *testing.T) {
		ents, err := os.ReadDir(mnt)
		must(t, err)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		var kids []view.Node
		underMount(m, func() { kids, err = r.List("/") })
		must(t, err)
		var want []string
		for _, k := range kids {
			want = append(want, blog.Base(k.Path))
		}
		if !slices.Equal(names, want) {
			t.Errorf("readdir %v, replica %v", names, want)
		}
		var fs syscall.Statfs_t
		must(t, syscall.Statfs(mnt, &fs))
		if fs.Type != 0x65735546 || fs.Namelen != 255 || fs.Files == 0 {
			t.Errorf("statfs %+v", fs)
		}
	})
}

func TestWriteOnClose(t *testing.T) {
	r := newReplica(t, "")
	_, mnt := mount(t, r, Options{})
	watchdog(t, time.Minute, mnt)

	f, err := os.Create(mnt + "/conf")
	must(t, err)
	for i := 0; i < 5; i++ {
		_, err := f.WriteString("line\n")
		must(t, err)
	}
	if _, err := r.Stat("/conf"); !replica.IsKind(err, replica.NotExist) {
		t.Errorf("the file reached the replica before close: %v", err)
	}
	if st := statT(t, mnt+"/conf"); st.Size != 25 {
		t.Errorf("size while open %d", st.Size)
	}
	must(t, f.Close())
	if n := entriesAt(t, r, "/conf"); n != 1 {
		t.Errorf("%d entries after one close, want 1", n)
	}
	if got, _ := r.ReadFile("/conf"); string(got) != "line\nline\nline\nline\nline\n" {
		t.Errorf("replica has %q", got)
	}

	// Appending in several writes: one more entry.
	f, err = os.OpenFile(mnt+"/conf", os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	for i := 0; i < 3; i++ {
		_, err := f.WriteString("more\n")
		must(t, err)
	}
	must(t, f.Close())
	if n := countActions(t, r, "/conf", "write"); n != 2 {
		t.Errorf("%d write entries, want 2", n)
	}

	// What cp -a does: create, write, set times and mode, close — one entry.
	when := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	f, err = os.OpenFile(mnt+"/copied", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	must(t, err)
	_, err = f.WriteString("data")
	must(t, err)
	must(t, os.Chtimes(mnt+"/copied", when, when))
	must(t, f.Chmod(0o640))
	must(t, f.Close())
	if n := entriesAt(t, r, "/copied"); n != 1 {
		t.Errorf("cp -a pattern made %d entries, want 1", n)
	}
	if n, _ := r.Stat("/copied"); n.Mode != 0o640 || n.MTime != when.UnixNano() {
		t.Errorf("replica mode %o mtime %v", n.Mode, time.Unix(0, n.MTime))
	}

	// Rewriting the same content writes nothing.
	must(t, os.WriteFile(mnt+"/copied", []byte("data"), 0o640))
	if n := entriesAt(t, r, "/copied"); n != 1 {
		t.Errorf("identical rewrite made an entry (%d)", n)
	}
	// An empty new file is one entry.
	must(t, os.WriteFile(mnt+"/empty", nil, 0o644))
	if n := entriesAt(t, r, "/empty"); n != 1 {
		t.Errorf("empty file: %d entries", n)
	}
}

func TestFsync(t *testing.T) {
	r := newReplica(t, "")
	_, mnt := mount(t, r, Options{})
	watchdog(t, time.Minute, mnt)
	f, err := os.Create(mnt + "/durable")
	must(t, err)
	_, err = f.WriteString("must survive")
	must(t, err)
	must(t, f.Sync())
	// The entry is in the replica and on disk before close.
	recs, err := r.Log("/durable")
	must(t, err)
	if len(recs) != 1 {
		t.Fatalf("%d entries after fsync", len(recs))
	}
	h, err := blog.ParseHash(recs[0].Hash)
	must(t, err)
	raw, ok := r.EntryBytes(h)
	if !ok {
		t.Fatal("entry bytes missing")
	}
	disk, err := os.ReadFile(filepath.Join(r.Dir(), blog.StoreFileName))
	must(t, err)
	if !bytes.Contains(disk, raw) {
		t.Error("the fsynced entry is not in the store file")
	}
	must(t, f.Close())
	if n := entriesAt(t, r, "/durable"); n != 1 {
		t.Errorf("close after fsync added entries: %d", n)
	}
}

func TestAuthority(t *testing.T) {
	r := newReplica(t, "")
	root, u := testKey("root"), testKey("u")
	_, err := r.Grant(root, "/home/u", pubOf(u), false)
	must(t, err)
	_, err = r.WriteFile(root, "/etc/app.conf", []byte("x"), replica.WriteOptions{Parents: true})
	must(t, err)
	_, err = r.WriteFile(root, "/home/u/mine", []byte("x"), replica.WriteOptions{})
	must(t, err)
	must(t, r.Mkdir(root, "/etc/empty", 0o755, false, false))
	_, mnt := mount(t, r, Options{Key: u, UID: 1000, GID: 1000})
	watchdog(t, time.Minute, mnt)
	p := func(s string) string { return filepath.Join(mnt, s) }

	for path, mode := range map[string]uint32{"/": 0o555, "/etc": 0o555, "/etc/app.conf": 0o444, "/home/u": 0o755, "/home/u/mine": 0o644} {
		if st := statT(t, p(path)); st.Mode&0o777 != mode {
			t.Errorf("%s shows mode %o, want %o", path, st.Mode&0o777, mode)
		}
	}
	_, err = os.OpenFile(p("etc/app.conf"), os.O_WRONLY, 0)
	wantErrno(t, "open for writing without authority", err, syscall.EACCES)
	_, err = os.OpenFile(p("etc/app.conf"), os.O_RDWR|os.O_TRUNC, 0)
	wantErrno(t, "open O_TRUNC without authority", err, syscall.EACCES)
	if got := readFile(t, p("etc/app.conf")); got != "x" {
		t.Errorf("read %q", got)
	}
	_, err = os.Create(p("etc/new"))
	wantErrno(t, "create", err, syscall.EACCES)
	_, err = os.Create(p("etc/.new.swp"))
	wantErrno(t, "create an ignored file", err, syscall.EACCES)
	wantErrno(t, "mkdir", os.Mkdir(p("etc/d"), 0o755), syscall.EACCES)
	wantErrno(t, "unlink", os.Remove(p("etc/app.conf")), syscall.EACCES)
	wantErrno(t, "rename out", os.Rename(p("etc/app.conf"), p("home/u/stolen")), syscall.EACCES)
	wantErrno(t, "rename in", os.Rename(p("home/u/mine"), p("etc/mine")), syscall.EACCES)
	wantErrno(t, "chmod", os.Chmod(p("etc/app.conf"), 0o600), syscall.EACCES)
	wantErrno(t, "utimens", os.Chtimes(p("etc/app.conf"), time.Now(), time.Now()), syscall.EACCES)
	wantErrno(t, "truncate", os.Truncate(p("etc/app.conf"), 0), syscall.EACCES)
	wantErrno(t, "symlink", os.Symlink("x", p("etc/sl")), syscall.EACCES)
	wantErrno(t, "link", os.Link(p("home/u/mine"), p("etc/hl")), syscall.EACCES)
	wantErrno(t, "rmdir", syscall.Rmdir(p("etc/empty")), syscall.EACCES)
	if n := entriesAt(t, r, "/etc"); n != 3 {
		t.Errorf("refused operations left entries: %d under /etc", n)
	}

	must(t, os.WriteFile(p("home/u/new"), []byte("by u"), 0o644))
	must(t, os.Mkdir(p("home/u/sub"), 0o755))
	must(t, os.Rename(p("home/u/new"), p("home/u/sub/new")))
	recs, err := r.Log("/home/u/sub/new")
	must(t, err)
	if len(recs) == 0 || recs[0].Author != blog.Fingerprint(pubOf(u)) {
		t.Errorf("entries under /home/u: %+v", recs)
	}
}

func TestUnmountCommits(t *testing.T) {
	r := newReplica(t, "")
	m, mnt := mount(t, r, Options{})
	watchdog(t, time.Minute, mnt)
	f, err := os.Create(mnt + "/open")
	must(t, err)
	_, err = f.WriteString("still open")
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- m.Unmount() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, err := r.ReadFile("/open"); err == nil && string(got) == "still open" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unmount did not commit the open file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if isMounted(mnt) {
		t.Error("still mounted after Unmount")
	}
	if n := entriesAt(t, r, "/open"); n != 1 {
		t.Errorf("%d entries", n)
	}
}

func TestReadWhileWriting(t *testing.T) {
	r := newReplica(t, "")
	root := testKey("root")
	_, err := r.WriteFile(root, "/f", []byte("old content"), replica.WriteOptions{})
	must(t, err)
	_, mnt := mount(t, r, Options{})
	watchdog(t, time.Minute, mnt)
	rd, err := os.Open(mnt + "/f")
	must(t, err)
	defer rd.Close()
	must(t, os.WriteFile(mnt+"/f", []byte("new content!"), 0o644))
	old, err := io.ReadAll(rd)
	must(t, err)
	if string(old) != "old content" {
		t.Errorf("an open reader sees %q (close-to-open: the old content)", old)
	}
	if got := readFile(t, mnt+"/f"); got != "new content!" {
		t.Errorf("a new open sees %q", got)
	}
	// Reopening the same content keeps the kernel's pages; new content does not.
	for i := 0; i < 3; i++ {
		if got := readFile(t, mnt+"/f"); got != "new content!" {
			t.Fatalf("reread %d: %q", i, got)
		}
	}
	_, err = r.WriteFile(root, "/f", []byte("third version"), replica.WriteOptions{})
	must(t, err)
	waitFor(t, "the change made elsewhere", func() bool { b, _ := os.ReadFile(mnt + "/f"); return string(b) == "third version" })
}

// utimensat calls utimensat(2) on path (os.Chtimes cannot pass UTIME_OMIT).
func utimensat(path string, ts [2]syscall.Timespec) error {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	const atFDCWD = -100
	fd := atFDCWD
	_, _, e := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(fd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// TestCloseReportsFailure: a write that cannot be committed reaches the
// writer as the error of close(2), and nothing reaches the log.
func TestCloseReportsFailure(t *testing.T) {
	r := newReplica(t, "")
	root, u := testKey("root"), testKey("u")
	_, err := r.Grant(root, "/home/u", pubOf(u), false)
	must(t, err)
	_, mnt := mount(t, r, Options{Key: u})
	watchdog(t, time.Minute, mnt)
	f, err := os.Create(mnt + "/home/u/draft")
	must(t, err)
	_, err = f.WriteString("written before the revoke")
	must(t, err)
	g, err := os.Create(mnt + "/home/u/synced")
	must(t, err)
	_, err = g.WriteString("also")
	must(t, err)
	var k [32]byte
	copy(k[:], pubOf(u))
	_, err = r.Revoke(root, "/home/u", k, false)
	must(t, err)
	wantErrno(t, "close after the key lost its authority", f.Close(), syscall.EACCES)
	wantErrno(t, "fsync after the key lost its authority", g.Sync(), syscall.EACCES)
	g.Close()
	for _, p := range []string{"/home/u/draft", "/home/u/synced"} {
		if _, err := r.Stat(p); !replica.IsKind(err, replica.NotExist) {
			t.Errorf("the refused file %s reached the replica: %v", p, err)
		}
	}
}
