package view

import (
	"container/heap"

	"github.com/basefs/basefs/log"
)

// enode is the view's record of one entry.
type enode struct {
	e       *log.Entry
	status  Status
	counts  bool
	level   int32
	primary cnode  // chain entries: the role at e.Path
	moved   *cnode // rename: the role at e.Target (acts as a delete there)
	ref     *cnode // revert, rename, link: the entry named by Ref
}

// cnode is one entry's place in one path's history.
type cnode struct {
	en        *enode
	ch        *chain
	parent    *cnode // structural parent in this chain; nil for creations
	dirParent *cnode // creations: the parent entry's role in the directory's chain
	kids      []*cnode
	moved     bool // the old-path role of a rename

	st      State  // memo: the state this entry leaves
	eff     *State // memo: the state of the nearest counting ancestor-or-self
	stEpoch uint64
}

// chain is the history of one path.
type chain struct {
	path        string
	depth       int
	roots       []*cnode // creations, in every incarnation of the directory
	head        *cnode   // the winning leaf (nil: no history in the current incarnation)
	kids        map[string]*chain
	annotations []*enode
	refDeps     map[*chain]struct{} // chains whose entries name entries of this one by Ref
	linkers     map[*chain]struct{} // chains that showed a hard link to this path
	forked      bool                // some entry has more than one child, or several roots

	// What the head was when the chain was last settled.
	settledInc  log.Hash
	settledKind Kind

	// Dirty state of the current Apply.
	inHeap   bool
	heapIdx  int
	full     bool
	visDirty bool
	hints    []*cnode
}

func (v *View) chain(path string) *chain {
	if ch, ok := v.chains[path]; ok {
		return ch
	}
	ch := &chain{path: path, depth: log.Depth(path)}
	v.chains[path] = ch
	if path != "/" {
		d := v.chain(log.Dir(path))
		if d.kids == nil {
			d.kids = make(map[string]*chain)
		}
		d.kids[log.Base(path)] = ch
	}
	return ch
}

// Apply adds entries to the view and returns the changes of the visible tree
// they caused, in the order they were resolved. Entries must have been decoded
// and their signatures verified by the caller; the view trusts neither their
// order nor their uniqueness. An entry whose dependencies are missing waits
// until they arrive.
func (v *View) Apply(entries ...*log.Entry) []Change {
	v.changes = nil
	queue := entries
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		h := e.Hash()
		en, known := v.nodes[h]
		if known && en.status != StatusPending {
			continue
		}
		if !known {
			if e.IsRoot() {
				// Another filesystem's root: never part of this one.
				v.nodes[h] = &enode{e: e, status: StatusMalformed}
				v.malformed++
				continue
			}
			en = &enode{e: e, status: StatusPending}
			v.nodes[h] = en
			v.pending++
		}
		if dep, missing := v.missingDep(e); missing {
			if v.waitingOn[h] != dep {
				v.waitingOn[h] = dep
				v.waiting[dep] = append(v.waiting[dep], e)
			}
			continue
		}
		v.pending--
		delete(v.waitingOn, h)
		v.attach(en)
		v.applied++
		if ws, ok := v.waiting[h]; ok {
			delete(v.waiting, h)
			queue = append(queue, ws...)
		}
	}
	v.finish()
	out := v.changes
	v.changes = nil
	return out
}

func (v *View) missingDep(e *log.Entry) (log.Hash, bool) {
	for _, d := range e.Deps() {
		if en, ok := v.nodes[d]; !ok || en.status == StatusPending {
			return d, true
		}
	}
	return log.ZeroHash, false
}

func (v *View) setMalformed(en *enode) {
	en.status = StatusMalformed
	v.malformed++
}

// attach places an entry whose dependencies are all present.
func (v *View) attach(en *enode) {
	e := en.e
	p := v.nodes[e.Parent]
	if p.status != StatusApplied {
		v.setMalformed(en)
		return
	}
	if e.Action.IsAnnotation() {
		if p.e.Action.IsAnnotation() || (p.e.Path != e.Path && !(p.e.Action == log.ActRename && p.e.Target == e.Path)) {
			v.setMalformed(en)
			return
		}
		en.status = StatusApplied
		ch := v.chain(e.Path)
		ch.annotations = append(ch.annotations, en)
		v.auth.add(en)
		return
	}
	if p.e.Action.IsAnnotation() {
		v.setMalformed(en)
		return
	}
	var parentC, dirParent *cnode
	switch {
	case p.e.Path == e.Path:
		parentC = &p.primary
	case p.moved != nil && p.e.Target == e.Path:
		parentC = p.moved
	case e.Path != "/" && p.e.Path == log.Dir(e.Path):
		dirParent = &p.primary
	case e.Path != "/" && p.moved != nil && p.e.Target == log.Dir(e.Path):
		dirParent = p.moved
	default:
		v.setMalformed(en)
		return
	}
	if dirParent != nil && !e.Action.CanCreate() {
		v.setMalformed(en)
		return
	}
	var ref *enode
	switch e.Action {
	case log.ActRevert, log.ActRename, log.ActLink:
		ref = v.nodes[e.Ref]
		if ref.status != StatusApplied || ref.e.Action.IsAnnotation() {
			v.setMalformed(en)
			return
		}
	}
	switch e.Action {
	case log.ActRevert:
		switch {
		case ref.e.Path == e.Path:
			en.ref = &ref.primary
		case ref.moved != nil && ref.e.Target == e.Path:
			en.ref = ref.moved
		default:
			v.setMalformed(en)
			return
		}
	case log.ActRename, log.ActLink:
		if ref.e.Path != e.Target {
			v.setMalformed(en)
			return
		}
		en.ref = &ref.primary
	}

	en.status = StatusApplied
	ch := v.chain(e.Path)
	en.primary = cnode{en: en, ch: ch, parent: parentC, dirParent: dirParent}
	v.link(&en.primary)
	if e.Action == log.ActRename {
		old := v.chain(e.Target)
		en.moved = &cnode{en: en, ch: old, parent: en.ref, moved: true}
		v.link(en.moved)
	}
	if en.ref != nil && en.ref.ch != ch {
		rc := en.ref.ch
		if rc.refDeps == nil {
			rc.refDeps = make(map[*chain]struct{})
		}
		rc.refDeps[ch] = struct{}{}
	}
	en.counts, en.level = v.evalCounts(en)
	v.byKey[e.Author] = append(v.byKey[e.Author], en)
}

// link hangs a cnode into its chain and marks the chain for resolution.
func (v *View) link(c *cnode) {
	ch := c.ch
	if c.parent == nil {
		ch.roots = append(ch.roots, c)
		if len(ch.roots) > 1 {
			ch.forked = true
		}
	} else {
		c.parent.kids = append(c.parent.kids, c)
		if len(c.parent.kids) > 1 {
			ch.forked = true
		}
	}
	v.markHint(ch, c)
}

// evalCounts decides whether an applied chain entry counts, and at which
// authority level. A rename needs standing over both its paths; each side may
// come from the author's grants or from an ack covering that side.
func (v *View) evalCounts(en *enode) (bool, int32) {
	e := en.e
	if e.Author == v.rootKey {
		return true, rootLevel
	}
	lvl, ok := v.sideLevel(e, e.Path)
	if ok && e.Action == log.ActRename {
		_, ok = v.sideLevel(e, e.Target)
	}
	if !ok {
		return false, 0
	}
	return true, lvl
}

func (v *View) sideLevel(e *log.Entry, p string) (int32, bool) {
	lvl, ok := v.auth.level(e.Author, p)
	if al, aok := v.auth.ackLevel(e, p); aok && (!ok || al < lvl) {
		lvl, ok = al, true
	}
	return lvl, ok
}

// Dirty tracking. Chains to resolve sit in a heap ordered by depth, so a
// directory is resolved before the paths inside it.

type dirtySet struct{ h chainHeap }

func (d *dirtySet) init() {}

type chainHeap []*chain

func (h chainHeap) Len() int { return len(h) }
func (h chainHeap) Less(i, j int) bool {
	if h[i].depth != h[j].depth {
		return h[i].depth < h[j].depth
	}
	return h[i].path < h[j].path
}
func (h chainHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *chainHeap) Push(x any) {
	c := x.(*chain)
	c.heapIdx = len(*h)
	*h = append(*h, c)
}
func (h *chainHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

func (v *View) enqueue(ch *chain) {
	if !ch.inHeap {
		ch.inHeap = true
		heap.Push(&v.dirty.h, ch)
	}
}

func (v *View) markHint(ch *chain, c *cnode) {
	if !ch.full {
		ch.hints = append(ch.hints, c)
	}
	v.enqueue(ch)
}

func (v *View) markFull(ch *chain) {
	ch.full = true
	ch.hints = nil
	v.enqueue(ch)
}

func (v *View) markVis(ch *chain) {
	ch.visDirty = true
	v.enqueue(ch)
}
