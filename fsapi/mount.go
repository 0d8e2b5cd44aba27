//go:build cgo && unix && !fuse3

package fsapi

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/basefs/basefs/replica"
)

// mountWait bounds how long Mount waits for the kernel to show the mount,
// and Unmount for the FUSE loop to end.
const (
	mountWait   = 15 * time.Second
	unmountWait = 5 * time.Second
)

// Mounted is a live FUSE mount of a replica (what Mount returns).
//
// It subscribes to the replica itself, so the node need not call
// Invalidate: every change the replica applies that did not come through
// this mount (remote entries, writes through the node's control socket)
// drops what the kernel cached of that path — its name, or its attributes
// and pages — and shows through the mount within about a millisecond (see
// invalidator). Invalidate does the same for paths the caller names.
//
// Concurrency: the methods are safe for concurrent use. Unmount may be
// called more than once; later calls return the first call's result.
type Mounted struct {
	fs     *fsys
	ad     *adapter
	host   *fuse.FileSystemHost
	dir    string
	logger *slog.Logger
	inv    *invalidator
	unsub  func()
	done   chan struct{} // closed when the FUSE loop has ended
	dev    uint64        // the mount's device number

	mu       sync.Mutex
	failed   error
	once     sync.Once
	unmntErr error
}

// Supported reports whether this build can mount (it can: cgo and FUSE are
// built in; whether /dev/fuse works shows at Mount).
func Supported() error { return nil }

// Mount mounts r at dir and returns once the mount is live. dir must be an
// empty directory. The replica must stay open until Unmount returns.
func Mount(r *replica.Replica, dir string, opts Options) (*Mounted, error) {
	if r == nil {
		return nil, errors.New("fsapi: no filesystem to mount")
	}
	if len(opts.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("fsapi: mounting needs the key that signs writes")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fsapi: mount point %s: %w", dir, err)
	}
	if err := checkMountPoint(abs); err != nil {
		return nil, err
	}
	before, err := devOf(abs)
	if err != nil {
		return nil, fmt.Errorf("fsapi: mount point: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fs := newFsys(r, opts)
	ad := &adapter{fs: fs, uid: opts.UID, gid: opts.GID, logger: logger, timeout: cacheTimeout(opts.AttrTimeout)}
	host := fuse.NewFileSystemHost(ad)
	host.SetCapOpenTrunc(true)
	m := &Mounted{fs: fs, ad: ad, host: host, dir: abs, logger: logger, done: make(chan struct{})}
	m.inv = newInvalidator(ad.notifier, m.resolve)
	allowOther := !opts.Private
	if allowOther && os.Geteuid() != 0 && !userAllowOther() {
		logger.Warn("mounting without allow_other: only this user can use the mount (add user_allow_other to /etc/fuse.conf, or mount as root)")
		allowOther = false
	}
	args := []string{"-o", mountOptions(r.Name(), ad.timeout, allowOther)}
	if !opts.MultiThreaded {
		args = append(args, "-s")
	}
	go func() {
		defer close(m.done)
		defer func() {
			if p := recover(); p != nil {
				m.setFailed(fmt.Errorf("fsapi: %v (is libfuse2 installed?)", p))
			}
		}()
		if !host.Mount(abs, args) {
			m.setFailed(fmt.Errorf("fsapi: mounting %s failed (the FUSE library said why on standard error)", abs))
		}
	}()
	deadline := time.Now().Add(mountWait)
	for {
		select {
		case <-m.done:
			if err := m.getFailed(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("fsapi: the FUSE loop for %s ended before the mount showed", abs)
		case <-time.After(2 * time.Millisecond):
		}
		if dev, err := devOf(abs); err == nil && dev != before {
			m.dev = dev
			break
		}
		if time.Now().After(deadline) {
			host.Unmount()
			return nil, fmt.Errorf("fsapi: %s did not show the mount within %v", abs, mountWait)
		}
	}
	if !opts.noInvalidate {
		m.unsub = r.Subscribe(m.onUpdate)
	}
	m.inv.start()
	logger.Debug("mounted", "dir", abs, "fs", r.Name())
	return m, nil
}

// mountOptions returns the FUSE options: inode numbers from the file system
// (stable per path, shared by hard links), no renaming of open files to
// .fuse_hidden* on unlink, no path lookups for operations on open files,
// permissions checked by the kernel from the modes shown (write bits only
// where the key has authority), 128 KiB writes, and the cache timeouts.
//
// default_permissions makes the kernel check mode bits against the
// caller; with allowOther, other users (services that dropped root) may use
// the mount under those checks.
func mountOptions(name string, timeout float64, allowOther bool) string {
	t := strconv.FormatFloat(timeout, 'f', -1, 64)
	o := "fsname=basefs:" + name + ",subtype=basefs,use_ino,hard_remove,nopath,default_permissions," +
		"big_writes,max_write=131072,attr_timeout=" + t + ",entry_timeout=" + t + ",negative_timeout=" + t
	if allowOther {
		o += ",allow_other"
	}
	return o
}

// userAllowOther reports whether /etc/fuse.conf lets users mount with
// allow_other.
func userAllowOther() bool {
	b, err := os.ReadFile("/etc/fuse.conf")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

// cacheTimeout returns the kernel cache timeout in seconds for the option.
func cacheTimeout(d time.Duration) float64 {
	switch {
	case d == 0:
		d = DefaultAttrTimeout
	case d < 0:
		d = 0
	}
	return d.Seconds()
}

// checkMountPoint refuses what FUSE would refuse with a message on stderr.
func checkMountPoint(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("fsapi: mount point: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("fsapi: mount point %s is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("fsapi: mount point: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("fsapi: mount point %s is not empty", dir)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("fsapi: this system has no FUSE device (/dev/fuse): %w", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount"); err != nil {
			return errors.New("fsapi: mounting as a user needs fusermount (install the fuse package)")
		}
	}
	return nil
}

func devOf(dir string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Dev), nil
}

func (m *Mounted) setFailed(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed == nil {
		m.failed = err
	}
}

func (m *Mounted) getFailed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// Dir returns the absolute mount point.
func (m *Mounted) Dir() string { return m.dir }

// Invalidate drops the kernel's cached attributes, names and pages for the
// given paths (inside the filesystem), so the next access asks the replica.
// The mount already does this for every change the replica applies; callers
// need it only for changes the replica does not report.
func (m *Mounted) Invalidate(paths ...string) {
	for _, p := range paths {
		m.inv.add(p, invalName|invalAttr)
	}
}

// onUpdate invalidates the kernel's cache for the changes an update made,
// except those this mount made itself (the kernel knows them already). It
// runs on the replica's writing goroutine and only queues work.
func (m *Mounted) onUpdate(u replica.Update) {
	for _, c := range u.Changes {
		if u.Local && m.fs.self.covers(c.Path) && (c.OldPath == "" || m.fs.self.covers(c.OldPath)) {
			// The kernel learned it from the operation. (The other names
			// of a hard-linked file written here keep their cached size
			// and time until the attribute timeout.)
			continue
		}
		switch c.Event {
		case "write", "mode":
			m.inv.add(c.Path, invalAttr)
			if c.Node != nil && c.Node.Nlink > 1 {
				// Its other names, unknown here, show the new content too.
				m.inv.addAll()
			}
		case "grant", "revoke":
			// Write bits change for everything below c.Path.
			m.inv.addAll()
		case "link":
			m.inv.add(c.Path, invalName)
			if c.Node != nil && c.Node.Primary != "" {
				m.inv.add(c.Node.Primary, invalAttr) // its link count
			}
		default: // create, mkdir, delete, rename, revert
			m.inv.add(c.Path, invalName|invalAttr)
			if c.OldPath != "" {
				m.inv.add(c.OldPath, invalName)
			}
		}
	}
}

// resolve finds the kernel's node ids for paths. The FUSE library frees its
// node table when its loop ends, before it tells the file system, so the
// table is read only inside a FUSE operation: resolve queues the request
// and makes one (statfs of the mount point, served by adapter.Statfs). It
// reports false when no operation served it (the mount is gone).
func (m *Mounted) resolve(paths []string, all bool) (resolution, bool) {
	req := &resolveReq{paths: paths, all: all, done: make(chan struct{})}
	m.ad.enqueue(req)
	var st syscall.Statfs_t
	_ = syscall.Statfs(m.dir, &st)
	if m.ad.dequeue(req) {
		return resolution{}, false
	}
	<-req.done
	return req.res, true
}

// Unmount commits every file still open for writing and every deferred
// deletion, then unmounts. A busy mount (a process has a file open or its
// working directory inside) is detached lazily: it disappears from the
// namespace now and goes away when the last user lets go; files written
// meanwhile are still committed while the replica is open.
func (m *Mounted) Unmount() error {
	m.once.Do(func() {
		err := m.fs.shutdown()
		if m.unsub != nil {
			m.unsub()
		}
		m.inv.stop() // before the FUSE loop ends: its resolve needs the loop
		select {
		case <-m.done: // unmounted from outside already
		default:
			m.host.Unmount()
			if dev, derr := devOf(m.dir); derr == nil && dev == m.dev {
				if uerr := lazyUnmount(m.dir); uerr != nil && err == nil {
					err = fmt.Errorf("fsapi: unmounting %s: %w", m.dir, uerr)
				}
			}
		}
		select {
		case <-m.done:
		case <-time.After(unmountWait):
			m.logger.Warn("mount point still in use; it was detached and goes away when the last user closes it", "dir", m.dir)
		}
		m.unmntErr = err
	})
	return m.unmntErr
}

// lazyUnmount detaches dir: directly as root, else through fusermount.
func lazyUnmount(dir string) error {
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err == nil {
		return nil
	}
	out, err := exec.Command("fusermount", "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount: %w: %s", err, out)
	}
	return nil
}

// stats reports counters for tests and benchmarks.
func (m *Mounted) stats() (invalidations, batches int64) {
	return m.inv.sent.Load(), m.inv.batches.Load()
}

// adapter binds fsys to cgofuse's interface. Operations it does not
// implement (extended attributes, locks) answer ENOSYS, which the kernel
// remembers, so it stops asking.
type adapter struct {
	fuse.FileSystemBase
	fs      *fsys
	uid     uint32
	gid     uint32
	logger  *slog.Logger
	timeout float64 // the cache timeout passed to FUSE, in seconds
	ids     idMap   // owner names <-> this machine's ids

	mu      sync.Mutex
	note    *fuseNotifier
	pending []*resolveReq // node id lookups waiting for a FUSE operation
}

// resolveReq is a node id lookup (see Mounted.resolve).
type resolveReq struct {
	paths []string
	all   bool
	res   resolution
	done  chan struct{} // closed when res is filled
}

func (a *adapter) enqueue(req *resolveReq) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = append(a.pending, req)
}

// dequeue removes req if no operation took it yet, and reports whether it
// did.
func (a *adapter) dequeue(req *resolveReq) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, r := range a.pending {
		if r == req {
			a.pending = append(a.pending[:i], a.pending[i+1:]...)
			return true
		}
	}
	return false
}

// serve fills the queued lookups. It runs inside a FUSE operation.
func (a *adapter) serve() {
	a.mu.Lock()
	reqs, n := a.pending, a.note
	a.pending = nil
	a.mu.Unlock()
	for _, req := range reqs {
		req.res.ids = make(map[string]nodeIDs, len(req.paths))
		if n != nil {
			if req.all {
				req.res.cached = n.cached()
			}
			for _, p := range req.paths {
				parent, ino := n.lookup(p)
				req.res.ids[p] = nodeIDs{parent, ino}
			}
		}
		close(req.done)
	}
}

func (a *adapter) notifier() notifier {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.note == nil {
		return nil
	}
	return a.note
}

// Init runs on a FUSE thread before any other operation; it finds what
// cache invalidation needs and lets libfuse pass single-time utimensat
// calls (see captureNotifier).
func (a *adapter) Init() {
	n, err := captureNotifier(a.timeout)
	if err != nil {
		a.logger.Warn("FUSE library", "err", err)
	}
	if n == nil {
		return
	}
	a.mu.Lock()
	a.note = n
	a.mu.Unlock()
}

// Destroy runs when the FUSE loop ends.
func (a *adapter) Destroy() {
	a.mu.Lock()
	n := a.note
	a.note = nil
	a.mu.Unlock()
	if n != nil {
		n.close()
	}
}

func (a *adapter) fill(st *fuse.Stat_t, at *attr) {
	uid, gid := a.uid, a.gid
	if at.Owner != "" {
		uid, gid = a.ids.ids(at.Owner, a.uid, a.gid)
	}
	*st = fuse.Stat_t{Mode: at.Mode, Ino: at.Ino, Nlink: at.Nlink, Uid: uid, Gid: gid, Size: at.Size,
		Blksize: 4096, Blocks: (at.Size + 511) / 512}
	ts := fuse.Timespec{Sec: at.MTime / 1e9, Nsec: at.MTime % 1e9}
	if ts.Nsec < 0 {
		ts.Sec--
		ts.Nsec += 1e9
	}
	st.Atim, st.Mtim, st.Ctim, st.Birthtim = ts, ts, ts, ts
}

func (a *adapter) Statfs(path string, stat *fuse.Statfs_t) int {
	a.serve()
	var s statfsInfo
	e := a.fs.statfs(&s)
	*stat = fuse.Statfs_t{Bsize: s.Bsize, Frsize: s.Bsize, Blocks: s.Blocks, Bfree: s.Bfree, Bavail: s.Bavail,
		Files: s.Files, Ffree: s.Ffree, Favail: s.Ffree, Namemax: s.Namemax}
	return e
}

func (a *adapter) Getattr(path string, stat *fuse.Stat_t, fh uint64) int {
	if e := nameTooLong(path); e != 0 {
		return e // a lookup of a name no file can have
	}
	var at attr
	if e := a.fs.getattr(path, fh, &at); e != 0 {
		return e
	}
	a.fill(stat, &at)
	return 0
}

func (a *adapter) Mknod(path string, mode uint32, dev uint64) int {
	if mode&fuse.S_IFMT != fuse.S_IFREG {
		return -fuse.EPERM
	}
	e, fh := a.fs.create(path, syscall.O_WRONLY|syscall.O_EXCL, mode)
	if e != 0 {
		return e
	}
	e = a.fs.flush(fh)
	a.fs.release(fh)
	return e
}

func (a *adapter) Mkdir(path string, mode uint32) int {
	if e := nameTooLong(path); e != 0 {
		return e
	}
	return a.fs.mkdir(path, mode)
}
func (a *adapter) Unlink(path string) int { return a.fs.unlink(path) }
func (a *adapter) Rmdir(path string) int  { return a.fs.rmdir(path) }
func (a *adapter) Link(oldpath, newpath string) int {
	if e := nameTooLong(newpath); e != 0 {
		return e
	}
	return a.fs.link(oldpath, newpath)
}
func (a *adapter) Symlink(target, newpath string) int {
	if e := nameTooLong(newpath); e != 0 {
		return e
	}
	return a.fs.symlink(target, newpath)
}
func (a *adapter) Readlink(path string) (int, string) { return a.fs.readlink(path) }
func (a *adapter) Rename(oldpath, newpath string) int {
	if e := nameTooLong(newpath); e != 0 {
		return e
	}
	return a.fs.rename(oldpath, newpath)
}
func (a *adapter) Chmod(path string, mode uint32) int { return a.fs.chmod(path, mode) }

// Chown maps the ids to names on this machine (ids with no name stay
// numbers) and records the names; ^0 (-1) keeps the current one.
func (a *adapter) Chown(path string, uid, gid uint32) int {
	user, group := "", ""
	if uid != ^uint32(0) {
		user = a.ids.userName(uid)
	}
	if gid != ^uint32(0) {
		group = a.ids.groupName(gid)
	}
	return a.fs.chown(path, user, group)
}
func (a *adapter) Access(path string, mask uint32) int { return a.fs.access(path, mask) }
func (a *adapter) Truncate(path string, size int64, fh uint64) int {
	return a.fs.truncate(path, size, fh)
}

func (a *adapter) Utimens(path string, tmsp []fuse.Timespec) int {
	if len(tmsp) < 2 {
		return a.fs.utimens(path, 0, utimeNow)
	}
	return a.fs.utimens(path, tmsp[1].Sec, tmsp[1].Nsec)
}

func (a *adapter) Create(path string, flags int, mode uint32) (int, uint64) {
	if e := nameTooLong(path); e != 0 {
		return e, 0
	}
	return a.fs.create(path, flags, mode)
}

func (a *adapter) Open(path string, flags int) (int, uint64) {
	e, fh, _ := a.fs.open(path, flags)
	return e, fh
}

// CreateEx and OpenEx let the open decide whether the kernel keeps its
// cached pages (FileSystemOpenEx).
func (a *adapter) CreateEx(path string, mode uint32, fi *fuse.FileInfo_t) int {
	if e := nameTooLong(path); e != 0 {
		return e
	}
	e, fh := a.fs.create(path, fi.Flags, mode)
	fi.Fh = fh
	return e
}

func (a *adapter) OpenEx(path string, fi *fuse.FileInfo_t) int {
	e, fh, keep := a.fs.open(path, fi.Flags)
	fi.Fh, fi.KeepCache = fh, keep
	return e
}

func (a *adapter) Read(path string, buff []byte, ofst int64, fh uint64) int {
	return a.fs.read(fh, buff, ofst)
}

func (a *adapter) Write(path string, buff []byte, ofst int64, fh uint64) int {
	return a.fs.writeData(fh, buff, ofst)
}

func (a *adapter) Flush(path string, fh uint64) int                   { return a.fs.flush(fh) }
func (a *adapter) Release(path string, fh uint64) int                 { return a.fs.release(fh) }
func (a *adapter) Fsync(path string, datasync bool, fh uint64) int    { return a.fs.fsync(fh) }
func (a *adapter) Opendir(path string) (int, uint64)                  { return a.fs.opendir(path) }
func (a *adapter) Releasedir(path string, fh uint64) int              { return a.fs.releasedir(fh) }
func (a *adapter) Fsyncdir(path string, datasync bool, fh uint64) int { return neg(a.fs.r.Sync()) }

func (a *adapter) Readdir(path string, fill func(name string, stat *fuse.Stat_t, ofst int64) bool, ofst int64, fh uint64) int {
	var st fuse.Stat_t
	return a.fs.readdir(path, fh, func(name string, at *attr) bool {
		if at == nil {
			return fill(name, nil, 0)
		}
		st = fuse.Stat_t{Mode: at.Mode, Ino: at.Ino}
		return fill(name, &st, 0)
	})
}
