package view

import (
	"sort"

	"github.com/basefs/basefs/log"
)

// rootLevel is the authority level of the filesystem's root key: above every
// grant (a grant at "/" has level 0).
const rootLevel = -1

// authority holds the grant, revoke and ack annotations and what they resolve
// to (docs/semantics.md, "Authority").
type authority struct {
	rootKey [32]byte
	grants  map[log.Hash]*enode
	revokes map[log.Hash]*enode
	acks    map[log.Hash]*enode
	dirty   bool

	// Results of the last recompute.
	eff     map[[32]byte][]string // key -> paths of its counting grants
	ackedBy map[log.Hash][]*enode // entry -> counting acks listing it
}

func newAuthority(rootKey [32]byte) *authority {
	return &authority{
		rootKey: rootKey,
		grants:  map[log.Hash]*enode{},
		revokes: map[log.Hash]*enode{},
		acks:    map[log.Hash]*enode{},
		eff:     map[[32]byte][]string{},
		ackedBy: map[log.Hash][]*enode{},
	}
}

func (a *authority) add(en *enode) {
	switch en.e.Action {
	case log.ActGrant:
		a.grants[en.e.Hash()] = en
	case log.ActRevoke:
		a.revokes[en.e.Hash()] = en
	case log.ActAck:
		a.acks[en.e.Hash()] = en
	}
	a.dirty = true
}

// levelIn returns key's authority level over path under the given grants:
// the depth of its highest counting grant covering path.
func levelIn(eff map[[32]byte][]string, rootKey, key [32]byte, path string) (int32, bool) {
	if key == rootKey {
		return rootLevel, true
	}
	best, ok := int32(0), false
	for _, gp := range eff[key] {
		if log.IsAtOrUnder(path, gp) {
			if d := int32(log.Depth(gp)); !ok || d < best {
				best, ok = d, true
			}
		}
	}
	return best, ok
}

func (a *authority) level(key [32]byte, path string) (int32, bool) {
	return levelIn(a.eff, a.rootKey, key, path)
}

// ackLevel returns the level at which counting acks covering path p make e
// count there: the depth of the highest such ack's path.
func (a *authority) ackLevel(e *log.Entry, p string) (int32, bool) {
	best, ok := int32(0), false
	for _, ack := range a.ackedBy[e.Hash()] {
		if !log.IsAtOrUnder(p, ack.e.Path) {
			continue
		}
		if d := int32(log.Depth(ack.e.Path)); !ok || d < best {
			best, ok = d, true
		}
	}
	return best, ok
}

// ackCovers reports whether ack may vouch for annotation e (at e's path).
func ackCovers(ack *enode, e *log.Entry) bool { return log.IsAtOrUnder(e.Path, ack.e.Path) }

// ackCounts reports whether ack's author could revoke at its path, under the
// grants settled so far.
func ackCountsIn(eff map[[32]byte][]string, rootKey [32]byte, ack *enode) bool {
	l, ok := levelIn(eff, rootKey, ack.e.Author, ack.e.Path)
	return ok && l < int32(log.Depth(ack.e.Path))
}

// authChange is what a recompute changed.
type authChange struct {
	keys          map[[32]byte]bool // keys whose counting grants changed
	acked         map[log.Hash]bool // entries whose covering acks changed
	newlyCounting []*enode          // grants and revokes that started to count
}

// recompute resolves all annotations from scratch. Grants are settled in
// strata of depth: revokes that can cancel grants at depth d need authority
// from depths < d, and grants at depth d are a least fixpoint over the
// authority known so far, so the result does not depend on any order.
func (a *authority) recompute() authChange {
	a.dirty = false
	eff := map[[32]byte][]string{}
	byDepth := func(m map[log.Hash]*enode) (map[int][]*enode, int) {
		out := map[int][]*enode{}
		maxD := 0
		for _, en := range m {
			d := log.Depth(en.e.Path)
			out[d] = append(out[d], en)
			if d > maxD {
				maxD = d
			}
		}
		return out, maxD
	}
	grantsBy, gmax := byDepth(a.grants)
	revokesBy, rmax := byDepth(a.revokes)
	maxD := max(gmax, rmax)

	// Acks listing grants or revokes, by the annotation's hash.
	acksOf := map[log.Hash][]*enode{}
	for _, ack := range a.acks {
		for _, h := range ack.e.Hashes {
			_, isGrant := a.grants[h]
			_, isRevoke := a.revokes[h]
			if isGrant || isRevoke {
				acksOf[h] = append(acksOf[h], ack)
			}
		}
	}
	acked := func(en *enode) bool {
		for _, ack := range acksOf[en.e.Hash()] {
			if ackCovers(ack, en.e) && ackCountsIn(eff, a.rootKey, ack) {
				return true
			}
		}
		return false
	}

	counting := map[*enode]bool{}
	var active []*enode // counting revokes so far
	for d := 0; d <= maxD; d++ {
		for _, r := range revokesBy[d] {
			if r.e.Key == a.rootKey {
				continue
			}
			if l, ok := levelIn(eff, a.rootKey, r.e.Author, r.e.Path); (ok && l < int32(d)) || acked(r) {
				counting[r] = true
				active = append(active, r)
			}
		}
		var cands []*enode
		for _, g := range grantsBy[d] {
			if !cancelled(g, active) {
				cands = append(cands, g)
			}
		}
		for changed := true; changed; {
			changed = false
			for _, g := range cands {
				if counting[g] {
					continue
				}
				if l, ok := levelIn(eff, a.rootKey, g.e.Author, g.e.Path); (ok && l <= int32(d)) || acked(g) {
					counting[g] = true
					eff[g.e.Key] = append(eff[g.e.Key], g.e.Path)
					changed = true
				}
			}
		}
	}
	for k := range eff {
		sort.Strings(eff[k])
		eff[k] = dedupSorted(eff[k])
	}

	ackedBy := map[log.Hash][]*enode{}
	for _, ack := range a.acks {
		if ackCountsIn(eff, a.rootKey, ack) {
			counting[ack] = true
			for _, h := range ack.e.Hashes {
				ackedBy[h] = append(ackedBy[h], ack)
			}
		}
	}

	ch := authChange{keys: map[[32]byte]bool{}, acked: map[log.Hash]bool{}}
	for k, paths := range eff {
		if !equalStrings(paths, a.eff[k]) {
			ch.keys[k] = true
		}
	}
	for k := range a.eff {
		if _, ok := eff[k]; !ok {
			ch.keys[k] = true
		}
	}
	for h, acks := range ackedBy {
		if !sameEnodes(acks, a.ackedBy[h]) {
			ch.acked[h] = true
		}
	}
	for h := range a.ackedBy {
		if _, ok := ackedBy[h]; !ok {
			ch.acked[h] = true
		}
	}
	for _, m := range []map[log.Hash]*enode{a.grants, a.revokes, a.acks} {
		for _, en := range m {
			c := counting[en]
			if c && !en.counts {
				ch.newlyCounting = append(ch.newlyCounting, en)
			}
			en.counts = c
		}
	}
	sort.Slice(ch.newlyCounting, func(i, j int) bool {
		return lessHash(ch.newlyCounting[i].e.Hash(), ch.newlyCounting[j].e.Hash())
	})
	a.eff, a.ackedBy = eff, ackedBy
	return ch
}

// cancelled reports whether a counting revoke cancels grant g.
func cancelled(g *enode, revokes []*enode) bool {
	for _, r := range revokes {
		if r.e.Key != g.e.Key || !log.IsAtOrUnder(g.e.Path, r.e.Path) {
			continue
		}
		superseded := false
		for _, h := range g.e.Hashes {
			if h == r.e.Hash() {
				superseded = true
				break
			}
		}
		if !superseded {
			return true
		}
	}
	return false
}

func dedupSorted(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameEnodes(a, b []*enode) bool {
	if len(a) != len(b) {
		return false
	}
	set := make(map[*enode]bool, len(a))
	for _, x := range a {
		set[x] = true
	}
	for _, x := range b {
		if !set[x] {
			return false
		}
	}
	return true
}

func lessHash(a, b log.Hash) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func sortHashes(hs []log.Hash) {
	sort.Slice(hs, func(i, j int) bool { return lessHash(hs[i], hs[j]) })
}

// Grant is a counting grant, for listing.
type Grant struct {
	Path   string
	Key    [32]byte
	Entry  log.Hash
	Author [32]byte
}

// Grants returns the counting grants, sorted by path then key.
func (v *View) Grants() []Grant {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	var out []Grant
	for _, en := range v.auth.grants {
		if en.counts {
			out = append(out, Grant{Path: en.e.Path, Key: en.e.Key, Entry: en.e.Hash(), Author: en.e.Author})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return lessHash(out[i].Key, out[j].Key)
	})
	return out
}

// Level returns key's authority level over path (rootLevel for the root key,
// otherwise the depth of its highest grant covering path) and whether it has
// any authority there.
func (v *View) Level(key [32]byte, path string) (int, bool) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	l, ok := v.auth.level(key, path)
	return int(l), ok
}

// RevokedAt returns the counting revokes of key that cover path.
func (v *View) RevokedAt(key [32]byte, path string) []log.Hash {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	var out []log.Hash
	for _, en := range v.auth.revokes {
		if en.counts && en.e.Key == key && log.IsAtOrUnder(path, en.e.Path) {
			out = append(out, en.e.Hash())
		}
	}
	sortHashes(out)
	return out
}

// KnownKeys returns every key that appears in a grant, the root key included.
func (v *View) KnownKeys() [][32]byte {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	seen := map[[32]byte]bool{v.rootKey: true}
	out := [][32]byte{v.rootKey}
	for _, en := range v.auth.grants {
		if !seen[en.e.Key] {
			seen[en.e.Key] = true
			out = append(out, en.e.Key)
		}
	}
	return out
}
