// Package replica is one node's copy of one basefs filesystem: the durable
// store of signed entries and blocks (package log), the tree resolved from
// them (package view), the materialized file contents, and the operations
// that turn a user's intent — write, mkdir, rename, grant, revert … — into
// signed entries. The CLI works on a Replica directly when no node runs, and
// a running node serves the same operations over its control socket.
//
// Concurrency: a Replica is safe for concurrent use. Reads share a lock;
// writes and ingestion of remote entries are serialized.
package replica

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

// applyBatch is how many stored entries are applied to the view at a time
// when a store is opened.
const applyBatch = 4096

// maxDeltaChain is the longest chain of delta encodings a new version may
// extend; past it the version is stored whole, so reconstructing any version
// replays at most this many deltas.
const maxDeltaChain = 16

// Options configure a Replica.
type Options struct {
	Logger *slog.Logger     // nil: discard
	NoSync bool             // never fsync (tests and benchmarks)
	Clock  func() time.Time // entry timestamps; nil: time.Now
}

// Replica is one filesystem as stored in one directory. See the package
// comment for its concurrency contract.
type Replica struct {
	mu     sync.RWMutex
	dir    string
	opts   Options
	logger *slog.Logger
	lock   *log.DirLock
	store  *log.Store
	cache  *log.ContentCache
	codec  *log.ContentCodec
	view   *view.View
	name   string

	contents map[log.Hash]*log.Content // every content reference applied, by content hash
	chainLen map[log.Hash]int          // deltas to replay to rebuild a content

	// Updates wait in pubQ (appended under mu, so in commit order) until a
	// drain publishes them; pubMu is held by the one goroutine publishing,
	// never together with mu, so a listener may take mu to read.
	pubMu  sync.Mutex
	qMu    sync.Mutex
	pubQ   []Update
	subsMu sync.Mutex
	subs   map[int]func(Update)
	nextID int

	failed error // set when the store and the view disagree after a failed append

	dropUnauthorized bool // Ingest drops entries without standing
}

// Update is what listeners hear after entries were stored and applied: the
// new entries (in store order) and the hashes of new blocks, the changes of
// the visible tree they caused, and whether they were written here.
type Update struct {
	Entries []*log.Entry
	Blocks  []log.Hash
	Changes []view.Change
	Local   bool
	Pos     int // entries stored once this update's are: its store position
}

// Exists reports whether dir holds a filesystem store.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, log.StoreFileName))
	return err == nil
}

// Create makes a new filesystem called name in dir, with key as its root
// authority, and writes the given node addresses to /.cluster.
func Create(dir, name string, key ed25519.PrivateKey, addrs []string, opts Options) (*Replica, error) {
	if err := log.ValidateFSName(name); err != nil {
		return nil, &Error{Kind: Invalid, Detail: err.Error()}
	}
	if Exists(dir) {
		return nil, errorf(Exist, "", "filesystem %s already exists in this home (%s)", name, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &Error{Kind: Other, Detail: fmt.Sprintf("cannot create %s: %v", dir, err)}
	}
	r, err := open(dir, opts)
	if err != nil {
		return nil, err
	}
	now := r.now()
	root := &log.Entry{Action: log.ActMkdir, Path: "/", Time: now, Name: name, Nonce: log.NewNonce(), Mode: 0o755}
	if err := root.Sign(key); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.store.Append([]*log.Entry{root}, nil); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.initView(root); err != nil {
		r.Close()
		return nil, err
	}
	data := []byte{}
	for _, a := range addrs {
		data = append(data, a...)
		data = append(data, '\n')
	}
	if _, err := r.WriteFile(key, ClusterFile, data, WriteOptions{Mode: 0o644, Sync: true}); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// ClusterFile is the path of the file listing node addresses to join.
const ClusterFile = "/.cluster"

// Open opens the filesystem stored in dir, taking its lock: no other process
// can open it until Close.
func Open(dir string, opts Options) (*Replica, error) {
	if !Exists(dir) {
		return nil, errorf(NotExist, "", "no filesystem in %s", dir)
	}
	r, err := open(dir, opts)
	if err != nil {
		return nil, err
	}
	if err := r.load(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func open(dir string, opts Options) (*Replica, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lock, err := log.LockDir(dir)
	if err != nil {
		if errors.Is(err, log.ErrLocked) {
			return nil, &Error{Kind: Busy, Detail: fmt.Sprintf("the filesystem in %s is in use by another basefs process (%v)", dir, err), Err: err}
		}
		return nil, &Error{Kind: Other, Detail: err.Error(), Err: err}
	}
	store, err := log.OpenStore(dir, log.StoreOptions{Logger: logger, NoSync: opts.NoSync})
	if err != nil {
		lock.Unlock()
		return nil, &Error{Kind: Corrupt, Detail: err.Error(), Err: err}
	}
	cache, err := log.OpenContentCache(filepath.Join(dir, "content"))
	if err != nil {
		store.Close()
		lock.Unlock()
		return nil, &Error{Kind: Other, Detail: err.Error(), Err: err}
	}
	return &Replica{
		dir: dir, opts: opts, logger: logger, lock: lock, store: store, cache: cache,
		codec:    log.NewContentCodec(),
		contents: map[log.Hash]*log.Content{},
		chainLen: map[log.Hash]int{},
		subs:     map[int]func(Update){},
	}, nil
}

// load builds the view from the store.
func (r *Replica) load() error {
	entries := r.store.Entries()
	var root *log.Entry
	for _, e := range entries {
		if e.IsRoot() {
			if root != nil && root.Hash() != e.Hash() {
				return errorf(Corrupt, "", "store %s holds two filesystems' root entries", r.store.Path())
			}
			root = e
		}
	}
	if root == nil {
		return errorf(Corrupt, "", "store %s has no root entry", r.store.Path())
	}
	if err := r.initView(root); err != nil {
		return err
	}
	for i := 0; i < len(entries); i += applyBatch {
		batch := entries[i:min(i+applyBatch, len(entries))]
		r.view.Apply(batch...)
		r.noteContents(batch)
	}
	return nil
}

func (r *Replica) initView(root *log.Entry) error {
	if err := root.Verify(); err != nil {
		return errorf(Corrupt, "", "root entry: %v", err)
	}
	v, err := view.New(root)
	if err != nil {
		return errorf(Corrupt, "", "%v", err)
	}
	r.view = v
	r.name = root.Name
	return nil
}

// noteContents records the content references of write entries.
func (r *Replica) noteContents(entries []*log.Entry) {
	for _, e := range entries {
		c := e.Content
		if c == nil {
			continue
		}
		if _, ok := r.contents[c.Hash]; ok {
			continue
		}
		r.contents[c.Hash] = c
		n := 0
		if c.Encoding.IsDelta() {
			n = r.chainLen[c.Base] + 1
		}
		r.chainLen[c.Hash] = n
	}
}

// Close releases the store and the lock. Pending writes are synced first.
func (r *Replica) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store == nil {
		return nil
	}
	err := r.store.Sync()
	if cerr := r.store.Close(); err == nil {
		err = cerr
	}
	r.store = nil
	if uerr := r.lock.Unlock(); err == nil {
		err = uerr
	}
	return err
}

// Dir returns the directory the filesystem is stored in.
func (r *Replica) Dir() string { return r.dir }

// Name returns the filesystem's name.
func (r *Replica) Name() string { return r.name }

// ID returns the filesystem id: its root entry's hash.
func (r *Replica) ID() log.Hash {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.view.ID()
}

// Root returns the root entry.
func (r *Replica) Root() *log.Entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.view.Root()
}

// Subscribe registers fn to hear every update, in commit order, once it is
// in the store. fn runs on a writing goroutine without the replica lock, so
// it may read the replica, but it must not write to it (that would wait for
// itself) nor block for long (queue the work). The returned function
// unsubscribes.
func (r *Replica) Subscribe(fn func(Update)) (cancel func()) {
	r.subsMu.Lock()
	defer r.subsMu.Unlock()
	id := r.nextID
	r.nextID++
	r.subs[id] = fn
	return func() {
		r.subsMu.Lock()
		defer r.subsMu.Unlock()
		delete(r.subs, id)
	}
}

// enqueue queues an update for the listeners. Callers hold r.mu, so the
// queue is in commit order.
func (r *Replica) enqueue(u Update) {
	u.Pos = r.store.NumEntries()
	r.qMu.Lock()
	r.pubQ = append(r.pubQ, u)
	r.qMu.Unlock()
}

// drain publishes the queued updates in order. Callers do not hold r.mu.
// Whoever holds pubMu publishes everything queued so far; a caller whose
// update was taken by another drain returns once that drain is done.
func (r *Replica) drain() {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	for {
		r.qMu.Lock()
		q := r.pubQ
		r.pubQ = nil
		r.qMu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, u := range q {
			r.publish(u)
		}
	}
}

func (r *Replica) publish(u Update) {
	if len(u.Entries) == 0 && len(u.Blocks) == 0 {
		return
	}
	r.subsMu.Lock()
	fns := make([]func(Update), 0, len(r.subs))
	for _, fn := range r.subs {
		fns = append(fns, fn)
	}
	r.subsMu.Unlock()
	for _, fn := range fns {
		fn(u)
	}
}

// Sync makes every entry appended so far durable (fsync).
func (r *Replica) Sync() error {
	r.mu.RLock()
	s := r.store
	r.mu.RUnlock()
	if s == nil {
		return errorf(Other, "", "filesystem is closed")
	}
	return s.Sync()
}

func (r *Replica) now() int64 {
	if r.opts.Clock != nil {
		return r.opts.Clock().UnixNano()
	}
	return time.Now().UnixNano()
}
