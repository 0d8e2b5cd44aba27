// Package view turns a set of log entries into a filesystem tree. It is a pure,
// deterministic function of that set (docs/semantics.md is its specification):
// the same entries, in any order and with duplicates, give the same tree and
// the same Hash. It does no I/O, starts no goroutines and reads no clock.
//
// Entries are applied incrementally: Apply touches only the paths an entry
// affects (and, when an entry changes authority, the entries of the keys whose
// authority changed).
//
// Concurrency: Apply must not run concurrently with any other call (the
// replica holds its write lock around it). The read methods may run
// concurrently with each other: they fill lazy caches (hashes, sorted names,
// state memos) under an internal mutex.
package view

import (
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/basefs/basefs/log"
)

// Kind is the type of a path's state.
type Kind uint8

// The kinds. KindLink is a hard link's own state; in the visible tree a link
// shows as the file it links to.
const (
	KindAbsent Kind = iota
	KindFile
	KindDir
	KindSymlink
	KindLink
)

func (k Kind) String() string {
	switch k {
	case KindAbsent:
		return "absent"
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	case KindLink:
		return "link"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// State is what a path is after one entry of its history.
type State struct {
	Kind    Kind
	Mode    uint32
	MTime   int64        // unix ns, from the entries (informational)
	Content *log.Content // KindFile
	Target  string       // KindSymlink: link text; KindLink: primary path
	Link    *log.Entry   // KindLink: the link entry (its Ref: the primary's entry when the link was made)
	Inc     log.Hash     // KindDir: the incarnation its children belong to
	Owner   string       // "USER:GROUP" set by a mode entry; "" when never set
}

// Live reports whether the state is anything but absent.
func (s *State) Live() bool { return s.Kind != KindAbsent }

// Node is a visible path as the tree shows it.
type Node struct {
	Path        string
	Kind        Kind // KindFile, KindDir or KindSymlink (links show as files)
	Mode        uint32
	MTime       int64
	Size        uint64
	Content     *log.Content // files
	Target      string       // symlinks
	Primary     string       // for a hard link: the path whose content it shows
	Nlink       int          // files: 1 + hard links to it; dirs: 2 + subdirectories
	Head        log.Hash     // the head entry of the path's history
	HeadAuthor  [32]byte
	HeadAction  log.Action
	ContentHash log.Hash // files: Content.Hash
	Owner       string   // "USER:GROUP" by name, "" when never set (see chown)
}

// ContentKey identifies the file object a node shows: its own path, or the
// primary path for hard links (two paths with the same key are one inode).
func (n *Node) ContentKey() string {
	if n.Primary != "" {
		return n.Primary
	}
	return n.Path
}

// Change is one change of the visible tree, reported by Apply.
type Change struct {
	Event   string // create, write, mkdir, delete, rename, mode, link, grant, revoke, revert
	Path    string
	OldPath string // rename: where it came from
	Entry   log.Hash
	Author  [32]byte
	Node    *Node // the path's new node; nil when it is gone
}

// Status says what the view made of one entry.
type Status uint8

// The statuses.
const (
	StatusUnknown   Status = iota // never applied
	StatusPending                 // waiting for an entry it depends on
	StatusMalformed               // well-signed but does not fit the log's structure
	StatusApplied                 // attached; it may or may not count
)

// View is the resolved tree of one filesystem. See the package comment.
type View struct {
	lazy sync.Mutex // guards lazily filled caches during concurrent reads

	root    *log.Entry
	rootKey [32]byte

	nodes     map[log.Hash]*enode
	waiting   map[log.Hash][]*log.Entry // missing dependency -> entries needing it
	waitingOn map[log.Hash]log.Hash     // pending entry -> the dependency it waits for
	pending   int
	chains    map[string]*chain
	auth      *authority
	byKey     map[[32]byte][]*enode // chain entries by author, for authority changes

	epoch uint64 // bumped when counting may have changed anywhere; guards state memos

	// Work of the current Apply.
	dirty   dirtySet
	changes []Change
	applied uint64 // entries attached so far

	// The visible tree.
	tree map[string]*vnode

	// Counts for Stats.
	malformed int
}

// New returns the view of the filesystem whose root entry is root. The root
// entry must be signed and verified by the caller.
func New(root *log.Entry) (*View, error) {
	if !root.IsRoot() || root.Action != log.ActMkdir {
		return nil, fmt.Errorf("view: %s entry %s is not a root entry", root.Action, root.Hash().Short())
	}
	v := &View{
		root:      root,
		rootKey:   root.Author,
		nodes:     make(map[log.Hash]*enode),
		waiting:   make(map[log.Hash][]*log.Entry),
		waitingOn: make(map[log.Hash]log.Hash),
		chains:    make(map[string]*chain),
		byKey:     make(map[[32]byte][]*enode),
		tree:      make(map[string]*vnode),
		epoch:     1,
	}
	v.auth = newAuthority(root.Author)
	v.dirty.init()
	rc := v.chain("/")
	en := &enode{e: root, status: StatusApplied, counts: true, level: rootLevel}
	en.primary = cnode{en: en, ch: rc}
	rc.roots = append(rc.roots, &en.primary)
	v.nodes[root.Hash()] = en
	v.applied = 1
	rc.head = &en.primary
	v.tree["/"] = &vnode{node: Node{Path: "/", Kind: KindDir, Mode: root.Mode, MTime: root.Time, Nlink: 2,
		Head: root.Hash(), HeadAuthor: root.Author, HeadAction: root.Action}, children: map[string]*vnode{}, hashDirty: true}
	return v, nil
}

// ID returns the filesystem id: the root entry's hash.
func (v *View) ID() log.Hash { return v.root.Hash() }

// Root returns the root entry.
func (v *View) Root() *log.Entry { return v.root }

// RootKey returns the root authority's public key.
func (v *View) RootKey() [32]byte { return v.rootKey }

// Stats counts the entries the view holds.
type Stats struct {
	Entries   int // applied (attached), whether or not they count
	Counting  int // applied and counting
	Pending   int // waiting for a dependency
	Malformed int
}

// Stats returns entry counts.
func (v *View) Stats() Stats {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	s := Stats{Pending: v.pending, Malformed: v.malformed}
	for _, en := range v.nodes {
		if en.status == StatusApplied {
			s.Entries++
			if en.counts {
				s.Counting++
			}
		}
	}
	return s
}

// Has reports whether the view has seen the entry (in any status).
func (v *View) Has(h log.Hash) bool {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	if _, ok := v.nodes[h]; ok {
		return true
	}
	return false
}

// Entry returns an applied or malformed entry by hash.
func (v *View) Entry(h log.Hash) (*log.Entry, bool) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	en, ok := v.nodes[h]
	if !ok {
		return nil, false
	}
	return en.e, true
}

// StatusOf returns what the view made of the entry with hash h.
func (v *View) StatusOf(h log.Hash) Status {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	if en, ok := v.nodes[h]; ok {
		return en.status
	}
	return StatusUnknown
}

// Counts reports whether the entry with hash h is applied and counts.
func (v *View) Counts(h log.Hash) bool {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	en, ok := v.nodes[h]
	return ok && en.status == StatusApplied && en.counts
}

// Missing returns the hashes of entries that applied entries depend on but the
// view has not seen.
func (v *View) Missing() []log.Hash {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	out := make([]log.Hash, 0, len(v.waiting))
	for h := range v.waiting {
		out = append(out, h)
	}
	sortHashes(out)
	return out
}

// incHash derives a creation's incarnation from its directory's incarnation
// and its name.
func incHash(dirInc log.Hash, name string) log.Hash {
	h := sha256.New()
	h.Write([]byte("basefs/inc\x00"))
	h.Write(dirInc[:])
	h.Write([]byte(name))
	var out log.Hash
	h.Sum(out[:0])
	return out
}
