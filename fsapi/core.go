//go:build unix

package fsapi

import (
	"crypto/ed25519"
	"hash/fnv"
	"log/slog"
	"sync"
	"syscall"
	"time"

	blog "github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// File type bits of a mode, as POSIX (and every FUSE) defines them.
const (
	modeDir     = 0o040000
	modeReg     = 0o100000
	modeSymlink = 0o120000
	permMask    = 0o7777
)

// UTIME_NOW and UTIME_OMIT in a timespec's nanoseconds (Linux values, which
// FUSE passes through on every platform).
const (
	utimeNow  = (1 << 30) - 1
	utimeOmit = (1 << 30) - 2
)

// noFh is the file handle FUSE passes when an operation has none.
const noFh = ^uint64(0)

// kcacheMax bounds the table of contents the kernel may hold in its page
// cache; past it the table is cleared (costing one re-read per file).
const kcacheMax = 1 << 16

// attr is what getattr reports, independent of the FUSE binding.
type attr struct {
	Owner string // "USER:GROUP" by name; "" shows the mounting user
	Mode  uint32 // type bits | permission bits
	Ino   uint64
	Nlink uint32
	Size  int64
	MTime int64 // unix ns
}

// statfsInfo is what statfs reports.
type statfsInfo struct {
	Bsize, Blocks, Bfree, Bavail, Files, Ffree, Namemax uint64
}

// fsys is the filesystem behind a mount, independent of the FUSE binding:
// each method takes the arguments of one FUSE operation and returns 0 or a
// negative errno. It layers an in-memory overlay over the replica:
//
//   - files open for writing are buffered in a node and become one write
//     entry when a writer closes them (flush) or syncs them (fsync);
//   - files created here exist only in that node until then;
//   - files with ignored names (Options.Ignore) live only in nodes;
//   - files with temporary names (Options.Temp) live in nodes until renamed
//     to a real name (then written as that name) or until the grace period
//     ends (then written as they are);
//   - a replicated file renamed to an ignored name is hidden by a whiteout
//     and deleted after a grace period, unless a new file takes its name
//     first (an editor's save), which then continues its history.
//
// Concurrency: all methods are safe for concurrent use (FUSE may call them
// from several threads). mu guards the overlay; operations that change the
// replica hold it across the replica call, so the overlay and the replica
// change together as seen by other operations. Stat and content reads of
// the replica happen without mu; listings happen under it (the view caches
// sorted names when read, so concurrent listings would race). Nothing that
// holds mu waits for the kernel, so kernel cache invalidation (which may
// wait for the kernel's directory locks) never deadlocks with an operation
// in flight.
type fsys struct {
	r      *replica.Replica
	key    ed25519.PrivateKey
	pub    [32]byte
	uid    uint32
	gid    uint32
	ignore ignoreMatcher
	temp   ignoreMatcher
	grace  time.Duration
	logger *slog.Logger
	self   *selfScopes
	now    func() time.Time

	mu        sync.Mutex
	nodes     map[string]*node
	handles   map[uint64]*handle
	nextFh    uint64
	whiteouts map[string]*whiteout
	kcache    map[string]blog.Hash // content the kernel may have cached, by path
}

// node is the in-memory state of one path: a file open for writing (shared
// by all handles on it), a file created but not committed yet, or a local
// file (ignored name). Guarded by fsys.mu.
type node struct {
	path     string
	local    bool   // ignored or temporary name: lives only here
	temp     bool   // temporary name: written after the grace period unless renamed
	due      bool   // temporary, past its grace period, still open for writing
	symlink  bool   // local symlink
	target   string // local symlink's text
	data     []byte
	created  bool   // not in the replica yet
	dirty    bool   // data must be written
	mode     uint32 // permission bits
	modeSet  bool   // a chmod waits for the commit
	mtime    int64  // unix ns: local files, a pending utimens, or the last write
	mtimeSet bool   // an explicit mtime waits for the commit
	owner    string // "USER:GROUP" a chown set while the file was written
	ownerSet bool   // a chown waits for the commit
	ino      uint64
	nlink    uint32
	open     int  // handles
	writers  int  // handles open for writing
	gone     bool // unlinked or replaced: never committed
	reported bool // the last commit failed and a writer was told so
}

// active reports whether the node, rather than the replica, describes its
// path's attributes.
func (n *node) active() bool {
	return n.local || n.created || n.dirty || n.modeSet || n.mtimeSet || n.ownerSet
}

// pending reports whether the node holds something to commit.
func (n *node) pending() bool {
	return !n.gone && !n.local && (n.created || n.dirty || n.modeSet || n.mtimeSet || n.ownerSet)
}

// handle is one open file. A handle on a node shares the node's buffer; a
// read-only handle on a file nobody writes reads a snapshot of the content
// it had when it was opened (close-to-open consistency).
type handle struct {
	n      *node
	write  bool
	append bool

	mu      sync.Mutex // guards the snapshot below
	path    string
	content *blog.Content
	data    []byte
	loaded  bool
}

// whiteout hides a replicated path whose deletion is deferred.
type whiteout struct {
	timer *time.Timer
}

func newFsys(r *replica.Replica, opts Options) *fsys {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ign := opts.Ignore
	if ign == nil {
		ign = DefaultIgnore()
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	tmp := opts.Temp
	if tmp == nil {
		tmp = DefaultTemp()
	}
	f := &fsys{
		r: r, key: opts.Key, uid: opts.UID, gid: opts.GID,
		ignore: ignoreMatcher(append([]string(nil), ign...)), temp: ignoreMatcher(append([]string(nil), tmp...)),
		grace: grace, logger: logger,
		self: newSelfScopes(), now: time.Now,
		nodes: map[string]*node{}, handles: map[uint64]*handle{}, nextFh: 1,
		whiteouts: map[string]*whiteout{}, kcache: map[string]blog.Hash{},
	}
	copy(f.pub[:], opts.Key.Public().(ed25519.PublicKey))
	return f
}

// inoOf is the inode number shown for the file object with content key k
// (its path, or the primary path of a hard link): stable per path.
func inoOf(k string) uint64 {
	if k == "/" {
		return 1
	}
	h := fnv.New64a()
	h.Write([]byte(k))
	ino := h.Sum64()
	if ino <= 1 {
		ino += 2
	}
	return ino
}

// mayWrite reports whether the mount's key has authority over p.
func (f *fsys) mayWrite(p string) bool {
	ok := false
	f.r.View(func(v *view.View) { _, ok = v.Level(f.pub, p) })
	return ok
}

// stat returns the replica's node at p. A hard link shows its primary's
// mode and modification time (the view gives a link its own entry's time).
func (f *fsys) stat(p string) (view.Node, error) {
	n, err := f.r.Stat(p)
	if err != nil || n.Primary == "" {
		return n, err
	}
	if pn, err := f.r.Stat(n.Primary); err == nil && pn.Kind == view.KindFile {
		n.Mode, n.MTime = pn.Mode, pn.MTime
	}
	return n, nil
}

// existsInReplica reports whether p is visible in the replica.
func (f *fsys) existsInReplica(p string) bool {
	_, err := f.r.Stat(p)
	return err == nil
}

// localName reports whether a new file at p is kept local: its name is
// ignored and the replica has nothing there.
func (f *fsys) localName(p string) bool {
	return f.ignore.match(p) && !f.existsInReplica(p)
}

func (f *fsys) nodeAttr(n *node, a *attr) {
	*a = attr{Mode: modeReg | n.mode, Ino: n.ino, Nlink: n.nlink, Size: int64(len(n.data)), MTime: n.mtime}
	if n.ownerSet {
		a.Owner = n.owner
	}
	if n.symlink {
		a.Mode = modeSymlink | 0o777
		a.Size = int64(len(n.target))
	}
}

func (f *fsys) viewAttr(st *view.Node, a *attr) {
	*a = attr{Ino: inoOf(st.ContentKey()), Nlink: uint32(max(st.Nlink, 1)), MTime: st.MTime, Owner: st.Owner}
	switch st.Kind {
	case view.KindDir:
		a.Mode = modeDir | st.Mode&permMask
		a.Size = 4096
		if a.Nlink < 2 {
			a.Nlink = 2
		}
	case view.KindSymlink:
		a.Mode = modeSymlink | 0o777
		a.Size = int64(len(st.Target))
		return
	default:
		a.Mode = modeReg | st.Mode&permMask
		a.Size = int64(st.Size)
	}
	if !f.mayWrite(st.ContentKey()) {
		a.Mode &^= 0o222
	}
}

// parentDir checks that p's directory exists in the replica and is one.
func (f *fsys) parentDir(p string) error {
	d, err := f.stat(blog.Dir(p))
	if err != nil {
		return err
	}
	if d.Kind != view.KindDir {
		return syscall.ENOTDIR
	}
	return nil
}

// lookupHandle returns the handle fh (nil if none).
func (f *fsys) lookupHandle(fh uint64) *handle {
	if fh == noFh {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handles[fh]
}

func (f *fsys) addHandle(h *handle) uint64 {
	fh := f.nextFh
	f.nextFh++
	f.handles[fh] = h
	if h.n != nil {
		h.n.open++
		if h.write {
			h.n.writers++
		}
	}
	return fh
}

func (f *fsys) getattr(p string, fh uint64, a *attr) int {
	f.mu.Lock()
	if h := f.handles[fh]; fh != noFh && h != nil {
		if h.n != nil {
			if h.n.active() {
				f.nodeAttr(h.n, a)
				f.mu.Unlock()
				return 0
			}
			p = h.n.path
		} else if p == "" {
			p = h.path
		}
	}
	if f.whiteouts[p] != nil {
		f.mu.Unlock()
		return errc(syscall.ENOENT)
	}
	if n := f.nodes[p]; n != nil && n.active() {
		f.nodeAttr(n, a)
		f.mu.Unlock()
		return 0
	}
	f.mu.Unlock()
	st, err := f.stat(p)
	if err != nil {
		return neg(err)
	}
	f.viewAttr(&st, a)
	return 0
}

// opendir opens the directory p; its handle remembers the path, because
// readdir comes without one.
func (f *fsys) opendir(p string) (int, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[p] != nil {
		return errc(syscall.ENOENT), 0
	}
	if n := f.nodes[p]; n != nil && (n.local || n.created) {
		return errc(syscall.ENOTDIR), 0
	}
	st, err := f.stat(p)
	if err != nil {
		return neg(err), 0
	}
	if st.Kind != view.KindDir {
		return errc(syscall.ENOTDIR), 0
	}
	return 0, f.addHandle(&handle{path: p, loaded: true})
}

// releasedir drops a directory handle.
func (f *fsys) releasedir(fh uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.handles, fh)
	return 0
}

// readdir lists p (or the directory open as fh): the replica's children
// without whiteouts, plus the overlay's files in p.
func (f *fsys) readdir(p string, fh uint64, fill func(name string, a *attr) bool) int {
	if p == "" {
		h := f.lookupHandle(fh)
		if h == nil {
			return errc(syscall.EBADF)
		}
		p = h.path
	}
	type extra struct {
		name string
		a    attr
	}
	var extras []extra
	hidden := map[string]bool{}
	f.mu.Lock()
	if f.whiteouts[p] != nil {
		f.mu.Unlock()
		return errc(syscall.ENOENT)
	}
	// Under mu: the view caches sorted names on reads (see README), so the
	// mount's listings must not run concurrently.
	kids, err := f.r.List(p)
	if err != nil {
		f.mu.Unlock()
		return neg(err)
	}
	for wp := range f.whiteouts {
		if blog.Dir(wp) == p {
			hidden[blog.Base(wp)] = true
		}
	}
	for np, n := range f.nodes {
		if (n.local || n.created) && blog.Dir(np) == p {
			var a attr
			f.nodeAttr(n, &a)
			extras = append(extras, extra{blog.Base(np), a})
			hidden[blog.Base(np)] = true
		}
	}
	f.mu.Unlock()
	if !fill(".", nil) || !fill("..", nil) {
		return 0
	}
	for i := range kids {
		k := &kids[i]
		name := blog.Base(k.Path)
		if hidden[name] {
			continue
		}
		a := attr{Ino: inoOf(k.ContentKey()), Mode: modeReg}
		switch k.Kind {
		case view.KindDir:
			a.Mode = modeDir
		case view.KindSymlink:
			a.Mode = modeSymlink
		}
		if !fill(name, &a) {
			return 0
		}
	}
	for i := range extras {
		if !fill(extras[i].name, &extras[i].a) {
			return 0
		}
	}
	return 0
}

// change runs a replica operation on behalf of the mount, marking paths so
// the invalidation of the kernel's cache skips what the kernel already knows.
func (f *fsys) change(paths []string, op func() error) error {
	f.self.begin(paths)
	defer f.self.end(paths)
	return op()
}

// selfScopes records the paths the mount is changing right now, so that
// the replica's report of those changes does not invalidate what the kernel
// learned from the operation itself. A change made by someone else to the
// same path in the same instant is then missed by invalidation and bounded
// by the attribute timeout instead.
type selfScopes struct {
	mu    sync.Mutex
	paths map[string]int
}

func newSelfScopes() *selfScopes { return &selfScopes{paths: map[string]int{}} }

func (s *selfScopes) begin(paths []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range paths {
		s.paths[p]++
	}
}

func (s *selfScopes) end(paths []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range paths {
		if s.paths[p]--; s.paths[p] <= 0 {
			delete(s.paths, p)
		}
	}
}

// covers reports whether p is at or below a path being changed here.
func (s *selfScopes) covers(p string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.paths) == 0 {
		return false
	}
	if s.paths[p] > 0 {
		return true
	}
	for q := range s.paths {
		if blog.IsUnder(p, q) {
			return true
		}
	}
	return false
}
