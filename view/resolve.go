package view

import (
	"bytes"
	"container/heap"

	"github.com/basefs/basefs/log"
)

// finish settles everything the current Apply touched: authority first, then
// the dirty chains, shallowest first.
func (v *View) finish() {
	if v.auth.dirty {
		v.settleAuthority()
	}
	for v.dirty.h.Len() > 0 {
		ch := heap.Pop(&v.dirty.h).(*chain)
		ch.inHeap = false
		v.settle(ch)
	}
}

// settleAuthority recomputes grants, revokes and acks, re-evaluates the
// entries whose standing may have changed and marks their chains.
func (v *View) settleAuthority() {
	ch := v.auth.recompute()
	for _, en := range ch.newlyCounting {
		switch en.e.Action {
		case log.ActGrant:
			v.changes = append(v.changes, Change{Event: "grant", Path: en.e.Path, Entry: en.e.Hash(), Author: en.e.Author})
		case log.ActRevoke:
			v.changes = append(v.changes, Change{Event: "revoke", Path: en.e.Path, Entry: en.e.Hash(), Author: en.e.Author})
		}
	}
	var touched []*enode
	for k := range ch.keys {
		touched = append(touched, v.byKey[k]...)
	}
	for h := range ch.acked {
		if en, ok := v.nodes[h]; ok && en.status == StatusApplied && !en.e.Action.IsAnnotation() {
			touched = append(touched, en)
		}
	}
	changed := false
	for _, en := range touched {
		c, l := v.evalCounts(en)
		if c == en.counts && l == en.level {
			continue
		}
		en.counts, en.level = c, l
		changed = true
		v.markFullDeps(en.primary.ch)
		if en.moved != nil {
			v.markFullDeps(en.moved.ch)
		}
	}
	if changed {
		v.epoch++
	}
}

// markFullDeps marks a chain for full resolution, together with every chain
// whose states may derive from its entries' states: the paths below it (a
// creation's incarnation derives from its directory entry's state, whichever
// entry of the directory's history that is) and the chains naming its entries
// by Ref — and, in turn, theirs.
func (v *View) markFullDeps(ch *chain) {
	if ch.full && ch.inHeap {
		return
	}
	v.markFull(ch)
	for _, k := range ch.kids {
		v.markFullDeps(k)
	}
	for d := range ch.refDeps {
		v.markFullDeps(d)
	}
}

// settle resolves one chain's head and updates the visible tree.
func (v *View) settle(ch *chain) {
	oldInc, oldKind := ch.settledInc, ch.settledKind
	if ch.full || len(ch.hints) > 0 {
		if ch.full || !v.fastForward(ch) {
			ch.head = v.resolve(ch)
		}
	}
	ch.full, ch.hints, ch.visDirty = false, nil, false

	var newInc log.Hash
	var newKind Kind
	if ch.head != nil {
		s := v.stateAt(ch.head)
		newInc, newKind = s.Inc, s.Kind
	}
	ch.settledInc, ch.settledKind = newInc, newKind
	if newInc != oldInc || (newKind == KindDir) != (oldKind == KindDir) {
		for _, k := range ch.kids {
			v.markFull(k)
		}
	}
	v.updateVisible(ch)
}

// fastForward handles the common case without walking the chain: each new
// entry extends the current head. Appending below the head never changes the
// winner of any fork above it (the winning branch only gains keys and
// authority), so the new entry simply becomes the head.
func (v *View) fastForward(ch *chain) bool {
	head := ch.head
	if head == nil {
		return false
	}
	for _, c := range ch.hints {
		if !c.en.counts {
			continue // transparent: changes nothing by itself
		}
		if c.parent == nil || effParent(c) != head {
			return false
		}
		head = c
	}
	ch.head = head
	return true
}

// effParent is the nearest counting strict ancestor within the chain.
func effParent(c *cnode) *cnode {
	for p := c.parent; p != nil; p = p.parent {
		if p.en.counts {
			return p
		}
	}
	return nil
}

// resolve walks the chain from its origin, choosing the winning branch at
// every fork, and returns the leaf it ends at.
func (v *View) resolve(ch *chain) *cnode {
	var roots []*cnode
	if ch.path == "/" {
		roots = ch.roots
	} else {
		var dirInc log.Hash
		if dc := v.chains[log.Dir(ch.path)]; dc != nil && dc.head != nil {
			dirInc = v.stateAt(dc.head).Inc
		}
		for _, r := range ch.roots {
			if r.dirParent != nil && v.stateAt(r.dirParent).Inc == dirInc {
				roots = append(roots, r)
			}
		}
	}
	cands := effectiveClosure(roots, nil)
	var cur *cnode
	for len(cands) > 0 {
		if len(cands) == 1 {
			cur = cands[0]
		} else {
			cur = pickBranch(cands)
		}
		cands = effectiveClosure(cur.kids, cands[:0])
	}
	return cur
}

// effectiveClosure returns the counting nodes reachable from cs through
// non-counting ones (non-counting entries are transparent).
func effectiveClosure(cs []*cnode, out []*cnode) []*cnode {
	out = out[:0]
	stack := append([]*cnode(nil), cs...)
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.en.counts {
			out = append(out, c)
			continue
		}
		stack = append(stack, c.kids...)
	}
	return out
}

// branchScore is the proof-of-authority score of one branch.
type branchScore struct {
	level   int32 // best (lowest) authority level of its counting entries
	authors int   // distinct authors of its counting entries
	first   log.Hash
}

func (a branchScore) beats(b branchScore) bool {
	if a.level != b.level {
		return a.level < b.level
	}
	if a.authors != b.authors {
		return a.authors > b.authors
	}
	return bytes.Compare(a.first[:], b.first[:]) > 0
}

func scoreBranch(b *cnode) branchScore {
	s := branchScore{level: b.en.level, first: b.en.e.Hash()}
	authors := map[[32]byte]struct{}{}
	stack := []*cnode{b}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.en.counts {
			authors[c.en.e.Author] = struct{}{}
			if c.en.level < s.level {
				s.level = c.en.level
			}
		}
		stack = append(stack, c.kids...)
	}
	s.authors = len(authors)
	return s
}

func pickBranch(cands []*cnode) *cnode {
	best := cands[0]
	bs := scoreBranch(best)
	for _, c := range cands[1:] {
		if s := scoreBranch(c); s.beats(bs) {
			best, bs = c, s
		}
	}
	return best
}

// stateAt returns the state the entry leaves in its chain: its own action
// applied to the state of its nearest counting ancestor. Memoized per epoch.
func (v *View) stateAt(c *cnode) *State {
	if c.stEpoch == v.epoch {
		return &c.st
	}
	// Walk up to the nearest memoized ancestor, then compute downwards.
	var path []*cnode
	for x := c; x != nil && x.stEpoch != v.epoch; x = x.parent {
		path = append(path, x)
	}
	absent := &State{}
	for i := len(path) - 1; i >= 0; i-- {
		x := path[i]
		before := absent
		if x.parent != nil {
			before = x.parent.eff
		}
		x.st = v.applyEntry(x, before)
		if x.en.counts {
			x.eff = &x.st
		} else {
			x.eff = before
		}
		x.stEpoch = v.epoch
	}
	return &c.st
}

// applyEntry computes the state an entry leaves, given the state before it.
func (v *View) applyEntry(c *cnode, before *State) State {
	e := c.en.e
	if c.moved {
		// Gone from here, but the histories below still belong to this
		// incarnation (they are hidden, not lost).
		return State{Kind: KindAbsent, Inc: before.Inc}
	}
	switch e.Action {
	case log.ActMkdir:
		s := State{Kind: KindDir, Mode: e.Mode, MTime: e.Time}
		if before.Kind == KindDir {
			s.Owner = before.Owner
		}
		switch {
		case e.IsRoot():
			s.Inc = e.Hash()
		case before.Kind == KindDir:
			s.Inc = before.Inc
		case c.dirParent != nil:
			s.Inc = incHash(v.stateAt(c.dirParent).Inc, log.Base(e.Path))
		default:
			s.Inc = e.Hash()
		}
		return s
	case log.ActWrite:
		mt := e.MTime
		if mt == 0 {
			mt = e.Time
		}
		// A new version keeps the file's owner, as a write in place does.
		s := State{Kind: KindFile, Mode: e.Mode, MTime: mt, Content: e.Content}
		if before.Kind == KindFile {
			s.Owner = before.Owner
		}
		return s
	case log.ActSymlink:
		return State{Kind: KindSymlink, Mode: 0o777, MTime: e.Time, Target: e.Target}
	case log.ActLink:
		return State{Kind: KindLink, MTime: e.Time, Target: e.Target, Link: e}
	case log.ActMode:
		if !before.Live() {
			return *before
		}
		s := *before
		if s.Kind != KindSymlink && s.Kind != KindLink {
			s.Mode = e.Mode
		}
		if e.MTime != 0 {
			s.MTime = e.MTime
		}
		if e.Owner != "" && s.Kind != KindLink {
			s.Owner = e.Owner
		}
		return s
	case log.ActDelete:
		return State{Kind: KindAbsent, Inc: before.Inc}
	case log.ActRevert:
		s := *v.stateAt(c.en.ref)
		if s.Live() {
			s.MTime = e.Time
		}
		return s
	case log.ActRename:
		s := *v.stateAt(c.en.ref)
		if s.Kind == KindDir {
			if c.dirParent != nil {
				s.Inc = incHash(v.stateAt(c.dirParent).Inc, log.Base(e.Path))
			} else {
				s.Inc = e.Hash()
			}
		}
		return s
	}
	return State{}
}
