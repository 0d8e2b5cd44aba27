package view

import (
	"sort"

	"github.com/basefs/basefs/log"
)

// Head returns the head entry of path's history in its directory's current
// incarnation and the state it leaves; false when the path has no such
// history (a new entry there must then be a creation in the directory). A
// head whose state is absent (deleted) is still returned: a new entry
// continues it.
func (v *View) Head(path string) (*log.Entry, State, bool) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	ch := v.chains[path]
	if ch == nil || ch.head == nil {
		return nil, State{}, false
	}
	return ch.head.en.e, *v.stateAt(ch.head), true
}

// StateAt returns the state that entry h leaves at path (its own path, or the
// old path of a rename), and whether h is an applied entry of that path.
func (v *View) StateAt(h log.Hash, path string) (State, bool) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	c := v.cnodeAt(h, path)
	if c == nil {
		return State{}, false
	}
	return *v.stateAt(c), true
}

func (v *View) cnodeAt(h log.Hash, path string) *cnode {
	en, ok := v.nodes[h]
	if !ok || en.status != StatusApplied || en.e.Action.IsAnnotation() {
		return nil
	}
	switch {
	case en.e.Path == path:
		return &en.primary
	case en.moved != nil && en.e.Target == path:
		return en.moved
	}
	return nil
}

// AnyEntryAt returns a counting chain entry of path (its head if it has
// one), for annotations, whose parent must be an entry of their path.
func (v *View) AnyEntryAt(path string) (*log.Entry, bool) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	ch := v.chains[path]
	if ch == nil {
		return nil, false
	}
	if ch.head != nil {
		return ch.head.en.e, true
	}
	if cs := effectiveClosure(ch.roots, nil); len(cs) > 0 {
		return cs[0].en.e, true
	}
	return nil, false
}

// Used reports whether the view uses entry h: a counting entry on the winning
// history of its path, or a counting grant, revoke or ack.
func (v *View) Used(h log.Hash) bool {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	en, ok := v.nodes[h]
	if !ok || en.status != StatusApplied || !en.counts {
		return false
	}
	if en.e.Action.IsAnnotation() {
		return true
	}
	return v.onWinningPath(&en.primary) || (en.moved != nil && v.onWinningPath(en.moved))
}

func (v *View) onWinningPath(c *cnode) bool {
	for x := c.ch.head; x != nil; x = x.parent {
		if x == c {
			return true
		}
	}
	return false
}

// UsedSet returns the hashes of all used entries (see Used), computed in one
// pass; cheaper than Used for many entries.
func (v *View) UsedSet() map[log.Hash]bool {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	used := make(map[log.Hash]bool)
	for _, ch := range v.chains {
		for x := ch.head; x != nil; x = x.parent {
			if x.en.counts {
				used[x.en.e.Hash()] = true
			}
		}
		for _, en := range ch.annotations {
			if en.counts {
				used[en.e.Hash()] = true
			}
		}
	}
	return used
}

// Conflict is one branch that lost a fork in a path's history.
type Conflict struct {
	Path      string
	At        log.Hash // the entry the branches fork from; zero when they are separate creations
	Winner    log.Hash // first entry of the winning branch
	Loser     log.Hash // first entry of the losing branch
	LoserHead log.Hash // where the losing branch ends
	Authors   [][32]byte
	Reason    string // why the winner won: "authority", "more authors" or "hash"
}

// Conflicts returns the lost branches of every path at or below under, by
// path.
func (v *View) Conflicts(under string) []Conflict {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	var out []Conflict
	for _, ch := range v.chains {
		if !ch.forked || ch.head == nil || !log.IsAtOrUnder(ch.path, under) {
			continue
		}
		out = append(out, v.chainConflicts(ch)...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return lessHash(out[i].Loser, out[j].Loser)
	})
	return out
}

func (v *View) chainConflicts(ch *chain) []Conflict {
	var out []Conflict
	// Walk back from the head to find the winning path, then look at the
	// forks along it.
	var path []*cnode
	for x := ch.head; x != nil; x = effParent(x) {
		path = append(path, x)
	}
	var at log.Hash
	var cands []*cnode
	for i := len(path) - 1; i >= 0; i-- {
		win := path[i]
		if i == len(path)-1 {
			cands = effectiveClosure(v.liveRoots(ch), nil)
		}
		if len(cands) > 1 {
			ws := scoreBranch(win)
			for _, c := range cands {
				if c == win {
					continue
				}
				ls := scoreBranch(c)
				reason := "hash"
				switch {
				case ws.level != ls.level:
					reason = "authority"
				case ws.authors != ls.authors:
					reason = "more authors"
				}
				out = append(out, Conflict{Path: ch.path, At: at, Winner: win.en.e.Hash(), Loser: c.en.e.Hash(),
					LoserHead: branchHead(c).en.e.Hash(), Authors: branchAuthors(c), Reason: reason})
			}
		}
		at = win.en.e.Hash()
		cands = effectiveClosure(win.kids, nil)
	}
	return out
}

// liveRoots returns the chain's creations in the directory's current
// incarnation.
func (v *View) liveRoots(ch *chain) []*cnode {
	if ch.path == "/" {
		return ch.roots
	}
	var dirInc log.Hash
	if dc := v.chains[log.Dir(ch.path)]; dc != nil && dc.head != nil {
		dirInc = v.stateAt(dc.head).Inc
	}
	var out []*cnode
	for _, r := range ch.roots {
		if r.dirParent != nil && v.stateAt(r.dirParent).Inc == dirInc {
			out = append(out, r)
		}
	}
	return out
}

func branchHead(b *cnode) *cnode {
	cur := b
	for {
		kids := effectiveClosure(cur.kids, nil)
		if len(kids) == 0 {
			return cur
		}
		cur = pickBranch(kids)
	}
}

func branchAuthors(b *cnode) [][32]byte {
	seen := map[[32]byte]bool{}
	var out [][32]byte
	stack := []*cnode{b}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.en.counts && !seen[c.en.e.Author] {
			seen[c.en.e.Author] = true
			out = append(out, c.en.e.Author)
		}
		stack = append(stack, c.kids...)
	}
	sort.Slice(out, func(i, j int) bool { return lessHash(out[i], out[j]) })
	return out
}

// Hidden is a path whose history leads to a live state that the tree does not
// show, because its directory is gone or was replaced.
type Hidden struct {
	Path   string
	Head   log.Hash
	Reason string
}

// HiddenPaths lists hidden paths at or below under, by path.
func (v *View) HiddenPaths(under string) []Hidden {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	var out []Hidden
	for _, ch := range v.chains {
		if ch.path == "/" || !log.IsAtOrUnder(ch.path, under) {
			continue
		}
		if ch.head != nil && v.stateAt(ch.head).Live() && v.tree[ch.path] == nil {
			out = append(out, Hidden{Path: ch.path, Head: ch.head.en.e.Hash(), Reason: "its directory does not exist"})
			continue
		}
		// Creations in earlier incarnations of the directory.
		live := map[*cnode]bool{}
		for _, r := range v.liveRoots(ch) {
			live[r] = true
		}
		for _, r := range ch.roots {
			if live[r] {
				continue
			}
			for _, c := range effectiveClosure([]*cnode{r}, nil) {
				if h := branchHead(c); v.stateAt(h).Live() {
					out = append(out, Hidden{Path: ch.path, Head: h.en.e.Hash(), Reason: "created in a directory that was deleted or replaced since"})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return lessHash(out[i].Head, out[j].Head)
	})
	return out
}

// AckTarget is an entry a revoke must acknowledge, and the path the ack goes
// to (the revoked key's highest grant covering the entry, so the entry keeps
// its level).
type AckTarget struct {
	Entry   log.Hash
	AckPath string
}

// AckSet returns what revoking key at path must acknowledge so that the view
// does not change: every counting entry of key under path whose authority
// comes from key's grants at or below path (docs/semantics.md, "Authority").
func (v *View) AckSet(key [32]byte, path string) []AckTarget {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	var out []AckTarget
	consider := func(en *enode) {
		if en.status != StatusApplied || !en.counts || en.e.Action == log.ActAck {
			return
		}
		e := en.e
		sides := []string{e.Path}
		if e.Action == log.ActRename {
			sides = append(sides, e.Target)
		}
		for _, side := range sides {
			if !log.IsAtOrUnder(side, path) {
				continue
			}
			if ackPath, ok := v.ackPathFor(key, side, path); ok {
				out = append(out, AckTarget{Entry: e.Hash(), AckPath: ackPath})
			}
		}
	}
	for _, en := range v.byKey[key] {
		consider(en)
	}
	for _, m := range []map[log.Hash]*enode{v.auth.grants, v.auth.revokes} {
		for _, en := range m {
			if en.e.Author == key {
				consider(en)
			}
		}
	}
	// Entries that count only through acks by key.
	for _, ack := range v.auth.acks {
		if ack.e.Author != key || !ack.counts || !log.IsAtOrUnder(ack.e.Path, path) {
			continue
		}
		for _, h := range ack.e.Hashes {
			en, ok := v.nodes[h]
			if !ok || en.status != StatusApplied || !en.counts || v.supportedWithout(en, key, ack.e.Path) {
				continue
			}
			out = append(out, AckTarget{Entry: h, AckPath: ack.e.Path})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].AckPath != out[j].AckPath {
			return out[i].AckPath < out[j].AckPath
		}
		return lessHash(out[i].Entry, out[j].Entry)
	})
	return dedupAckTargets(out)
}

// ackPathFor returns the path of key's highest counting grant covering p, if
// that grant is at or below revokePath (grants above it are not affected).
func (v *View) ackPathFor(key [32]byte, p, revokePath string) (string, bool) {
	best, found := "", false
	for _, gp := range v.auth.eff[key] {
		if !log.IsAtOrUnder(p, gp) {
			continue
		}
		if !found || log.Depth(gp) < log.Depth(best) {
			best, found = gp, true
		}
	}
	if !found || !log.IsAtOrUnder(best, revokePath) {
		return "", false
	}
	return best, true
}

// supportedWithout reports whether en keeps its standing on the side at ackPath
// without the acks written by key: through its author's own authority or an
// ack by another key.
func (v *View) supportedWithout(en *enode, key [32]byte, ackPath string) bool {
	if en.e.Author == v.rootKey {
		return true
	}
	side := en.e.Path
	if !log.IsAtOrUnder(side, ackPath) {
		side = en.e.Target
	}
	if en.e.Author != key {
		if _, ok := v.auth.level(en.e.Author, side); ok {
			return true
		}
	}
	for _, ack := range v.auth.ackedBy[en.e.Hash()] {
		if ack.e.Author != key && log.IsAtOrUnder(side, ack.e.Path) {
			return true
		}
	}
	return false
}

func dedupAckTargets(s []AckTarget) []AckTarget {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// EntryCounts reports an applied entry's standing: whether it counts and at
// which authority level.
func (v *View) EntryCounts(h log.Hash) (counts bool, level int) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	en, ok := v.nodes[h]
	if !ok || en.status != StatusApplied {
		return false, 0
	}
	return en.counts, int(en.level)
}

// AckedAt reports whether a counting ack covering path p lists entry h.
func (v *View) AckedAt(h log.Hash, p string) bool {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	for _, ack := range v.auth.ackedBy[h] {
		if log.IsAtOrUnder(p, ack.e.Path) {
			return true
		}
	}
	return false
}
