//go:build unix

package fsapi

import (
	"sync"
	"sync/atomic"

	blog "github.com/basefs/basefs/log"
)

// notifier drops entries from the kernel's caches of a live mount.
type notifier interface {
	// lookup returns the node ids the kernel knows p's directory and p by,
	// 0 for each it has not cached. Only inside a FUSE operation.
	lookup(p string) (parent, ino uint64)
	// cached returns the node ids of everything the kernel has cached. Only
	// inside a FUSE operation.
	cached() []uint64
	// invalEntry drops the name under the directory with node id parent
	// (the name's dentry, positive or negative, and the directory's
	// attributes).
	invalEntry(parent uint64, name string) error
	// invalInode drops the attributes and cached pages of node id ino.
	invalInode(ino uint64) error
}

// inval says what changed at a path.
type inval uint8

const (
	invalName inval = 1 << iota // the name appeared, disappeared or now names another file
	invalAttr                   // attributes or content changed
)

// nodeIDs are the node ids the kernel knows a path's directory and the path
// by (0: not cached).
type nodeIDs struct{ parent, ino uint64 }

// resolution is what a resolver found.
type resolution struct {
	ids    map[string]nodeIDs
	cached []uint64 // with all: every cached node id
}

// invalidator queues paths whose kernel cache must go and invalidates them
// from its own goroutine, coalescing bursts. It asks the FUSE library which
// node ids the kernel knows the paths by (resolve, which runs the lookups
// inside a FUSE operation, where the library's tables cannot be freed under
// it); paths the kernel has not cached cost nothing. A changed name drops the kernel's entry for it (and the
// directory's attributes); changed attributes or content drop the inode's
// attributes and pages, leaving names alone, so processes whose working
// directory is inside keep it.
//
// The notifications go out from this goroutine, never from a FUSE
// operation, because the kernel handles them under the directory's lock,
// which an operation in flight may hold; nothing here waits for an
// operation.
//
// Concurrency: add, addAll and the counters are safe for concurrent use and
// never block on the kernel; start runs the worker, stop ends it and waits.
type invalidator struct {
	note    func() notifier // nil result: no invalidation available
	resolve func(paths []string, all bool) (resolution, bool)

	mu      sync.Mutex
	paths   map[string]inval
	all     bool
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	started bool

	sent    atomic.Int64 // notifications sent
	batches atomic.Int64
}

func newInvalidator(note func() notifier, resolve func(paths []string, all bool) (resolution, bool)) *invalidator {
	return &invalidator{note: note, resolve: resolve, paths: map[string]inval{},
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// add queues the invalidation of what changed at p.
func (iv *invalidator) add(p string, what inval) {
	iv.mu.Lock()
	iv.paths[p] |= what
	iv.mu.Unlock()
	iv.poke()
}

// addAll queues the invalidation of every cached inode's attributes (the
// write bits changed everywhere, or a file changed under names unknown).
func (iv *invalidator) addAll() {
	iv.mu.Lock()
	iv.all = true
	iv.mu.Unlock()
	iv.poke()
}

func (iv *invalidator) poke() {
	select {
	case iv.wake <- struct{}{}:
	default:
	}
}

// run sends the queued invalidations until stop.
func (iv *invalidator) run() {
	defer close(iv.done)
	for {
		select {
		case <-iv.quit:
			return
		case <-iv.wake:
		}
		iv.mu.Lock()
		paths, all := iv.paths, iv.all
		iv.paths, iv.all = map[string]inval{}, false
		iv.mu.Unlock()
		n := iv.note()
		if n == nil {
			continue
		}
		list := make([]string, 0, len(paths))
		for p := range paths {
			list = append(list, p)
		}
		res, ok := iv.resolve(list, all)
		if !ok {
			continue // the mount is going away
		}
		// Errors below mean the kernel dropped the entry meanwhile.
		for _, ino := range res.cached {
			_ = n.invalInode(ino)
			iv.sent.Add(1)
		}
		for p, what := range paths {
			id := res.ids[p]
			if what&invalName != 0 && id.parent != 0 {
				_ = n.invalEntry(id.parent, blog.Base(p))
				iv.sent.Add(1)
			}
			if what&invalAttr != 0 && id.ino != 0 && !all {
				_ = n.invalInode(id.ino)
				iv.sent.Add(1)
			}
		}
		iv.batches.Add(1)
	}
}

// start runs the worker.
func (iv *invalidator) start() {
	iv.mu.Lock()
	iv.started = true
	iv.mu.Unlock()
	go iv.run()
}

// stop ends the worker and waits for it.
func (iv *invalidator) stop() {
	iv.mu.Lock()
	started := iv.started
	iv.started = false
	iv.mu.Unlock()
	if !started {
		return
	}
	close(iv.quit)
	<-iv.done
}
