package view

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"pgregory.net/rapid"

	"github.com/basefs/basefs/log"
)

// A small world of nodes that write concurrently from their own partial view
// and exchange entries now and then. Every random schedule must satisfy the
// CRDT laws of the view.

var (
	simDirs  = []string{"/a", "/a/b", "/c", "/a/a", "/c/b"}
	simFiles = []string{"/a/f", "/a/b/g", "/c/h", "/f", "/a/a/a", "/c/b/g"}
	simKeys  = []string{"root", "k1", "k2", "k3"}
)

type simNode struct {
	v       *View
	entries []*log.Entry
	have    map[log.Hash]bool
}

type simWorld struct {
	f     *fixture
	nodes []*simNode
	all   []*log.Entry
}

func newSimWorld(t failer, n int) *simWorld {
	f := newFixture(t)
	w := &simWorld{f: f}
	for i := 0; i < n; i++ {
		v, _ := New(f.root)
		w.nodes = append(w.nodes, &simNode{v: v, have: map[log.Hash]bool{}})
	}
	return w
}

func (w *simWorld) emit(n *simNode, key string, e *log.Entry) *log.Entry {
	w.f.sign(key, e)
	w.all = append(w.all, e)
	n.entries = append(n.entries, e)
	n.have[e.Hash()] = true
	n.v.Apply(e)
	return e
}

func (w *simWorld) sync(to, from *simNode) {
	var batch []*log.Entry
	for _, e := range from.entries {
		if !to.have[e.Hash()] {
			to.have[e.Hash()] = true
			to.entries = append(to.entries, e)
			batch = append(batch, e)
		}
	}
	to.v.Apply(batch...)
}

func parentIn(v *View, path string) (log.Hash, bool) {
	if h, _, ok := v.Head(path); ok {
		return h.Hash(), true
	}
	if log.Dir(path) == path {
		return log.ZeroHash, false
	}
	d, st, ok := v.Head(log.Dir(path))
	if !ok || st.Kind != KindDir {
		return log.ZeroHash, false
	}
	if _, vis := v.Lookup(log.Dir(path)); !vis {
		return log.ZeroHash, false
	}
	return d.Hash(), true
}

// chooser draws random choices: from rapid (which shrinks failures) or from
// a seeded generator (long uniform schedules).
type chooser interface {
	intn(n int, label string) int
	failer
}

type rapidChooser struct{ *rapid.T }

func (c rapidChooser) intn(n int, label string) int { return rapid.IntRange(0, n-1).Draw(c.T, label) }

type seededChooser struct {
	*testing.T
	r *rand.Rand
}

func (c seededChooser) intn(n int, _ string) int { return c.r.IntN(n) }

func pick[S any](t chooser, xs []S, label string) S { return xs[t.intn(len(xs), label)] }

// step performs one random operation on a random node.
func (w *simWorld) step(t chooser) {
	n := w.nodes[t.intn(len(w.nodes), "node")]
	// rapid favours small draws; spread them so every operation is common.
	key := []string{"root", "k1", "root", "k2", "k3", "root", "mallory"}[t.intn(7000, "key")%7]
	op := t.intn(20000, "op") % 20
	v := n.v
	switch op {
	case 0, 1: // mkdir
		p := pick(t, simDirs, "dir")
		if nd, ok := v.Lookup(p); ok && nd.Kind == KindDir && t.intn(3+1, "remkdir") > 0 {
			return
		}
		if par, ok := parentIn(v, p); ok {
			w.emit(n, key, &log.Entry{Action: log.ActMkdir, Parent: par, Path: p, Mode: 0o755})
		}
	case 2, 3, 4, 5, 6: // write
		p := pick(t, simFiles, "file")
		data := fmt.Sprintf("%s@%d", key, t.intn(3+1, "data"))
		if par, ok := parentIn(v, p); ok {
			w.emit(n, key, &log.Entry{Action: log.ActWrite, Parent: par, Path: p, Mode: 0o644, Content: content(data)})
		}
	case 7, 8: // delete
		p := pick(t, append(simFiles, simDirs...), "path")
		if h, st, ok := v.Head(p); ok && st.Live() {
			w.emit(n, key, &log.Entry{Action: log.ActDelete, Parent: h.Hash(), Path: p})
		}
	case 9: // chmod
		p := pick(t, append(simFiles, simDirs...), "path")
		if h, st, ok := v.Head(p); ok && st.Live() {
			w.emit(n, key, &log.Entry{Action: log.ActMode, Parent: h.Hash(), Path: p, Mode: uint32(pick(t, []int{0o600, 0o644, 0o755}, "mode"))})
		}
	case 10, 11: // grant
		p := pick(t, append([]string{"/"}, simDirs...), "gpath")
		grantee := pick(t, simKeys[1:], "grantee")
		if par, ok := v.AnyEntryAt(p); ok {
			w.emit(n, key, &log.Entry{Action: log.ActGrant, Parent: par.Hash(), Path: p, Key: pub(w.f.key(grantee))})
		}
	case 12: // revoke, like the CLI: acks first; the view must not change
		p := pick(t, simDirs, "rpath")
		revoked := pick(t, simKeys[1:], "revoked")
		l, ok := v.Level(pub(w.f.key(key)), p)
		if !ok || l >= log.Depth(p) {
			return
		}
		if _, ok := v.AnyEntryAt(p); !ok {
			return
		}
		before, beforeTree := v.Hash(), tree(v)
		rk := pub(w.f.key(revoked))
		for _, target := range v.AckSet(rk, p) {
			par, _ := v.AnyEntryAt(target.AckPath)
			w.emit(n, key, &log.Entry{Action: log.ActAck, Parent: par.Hash(), Path: target.AckPath, Hashes: []log.Hash{target.Entry}})
		}
		par, _ := v.AnyEntryAt(p)
		w.emit(n, key, &log.Entry{Action: log.ActRevoke, Parent: par.Hash(), Path: p, Key: rk})
		if v.Hash() != before {
			t.Fatalf("revoke of %s at %s by %s changed the view:\nbefore:\n%s\nafter:\n%s\n%s", revoked, p, key, beforeTree, tree(v), w.describeNode(n))
		}
	case 13: // revert to an earlier entry of the path
		p := pick(t, append(simFiles, simDirs...), "path")
		h, _, ok := v.Head(p)
		if !ok {
			return
		}
		var cands []*log.Entry
		for _, e := range n.entries {
			if e.Path == p && !e.Action.IsAnnotation() && v.Counts(e.Hash()) {
				cands = append(cands, e)
			}
		}
		if len(cands) == 0 {
			return
		}
		to := cands[t.intn(len(cands), "to")]
		w.emit(n, key, &log.Entry{Action: log.ActRevert, Parent: h.Hash(), Path: p, Ref: to.Hash()})
	case 14: // rename a file
		from := pick(t, simFiles, "from")
		to := pick(t, simFiles, "to")
		h, st, ok := v.Head(from)
		if from == to || !ok || st.Kind != KindFile {
			return
		}
		if par, ok := parentIn(v, to); ok {
			w.emit(n, key, &log.Entry{Action: log.ActRename, Parent: par, Path: to, Target: from, Ref: h.Hash()})
		}
	case 15: // symlink or hard link
		p := pick(t, simFiles, "lpath")
		target := pick(t, simFiles, "ltarget")
		par, ok := parentIn(v, p)
		if !ok || p == target {
			return
		}
		if t.intn(2, "hard") == 1 {
			if h, st, ok := v.Head(target); ok && st.Kind == KindFile {
				w.emit(n, key, &log.Entry{Action: log.ActLink, Parent: par, Path: p, Target: target, Ref: h.Hash()})
			}
		} else {
			w.emit(n, key, &log.Entry{Action: log.ActSymlink, Parent: par, Path: p, Target: target})
		}
	case 16: // rename a directory: the directory, then its descendants
		from := pick(t, simDirs, "dfrom")
		to := pick(t, simDirs, "dto")
		h, st, ok := v.Head(from)
		if from == to || log.IsUnder(to, from) || !ok || st.Kind != KindDir {
			return
		}
		if _, vis := v.Lookup(from); !vis {
			return
		}
		par, ok := parentIn(v, to)
		if !ok {
			return
		}
		type moved struct {
			path string
			head log.Hash
		}
		var kids []moved
		v.Walk(from, func(nd Node) bool {
			if nd.Path != from {
				kids = append(kids, moved{nd.Path, nd.Head})
			}
			return true
		})
		w.emit(n, key, &log.Entry{Action: log.ActRename, Parent: par, Path: to, Target: from, Ref: h.Hash()})
		for _, k := range kids {
			np := to + k.path[len(from):]
			kp, ok := parentIn(v, np)
			if !ok {
				continue
			}
			w.emit(n, key, &log.Entry{Action: log.ActRename, Parent: kp, Path: np, Target: k.path, Ref: k.head})
		}
	default: // exchange entries
		a := w.nodes[t.intn(len(w.nodes), "to")]
		b := w.nodes[t.intn(len(w.nodes), "from")]
		w.sync(a, b)
	}
}

func (w *simWorld) fresh(entries []*log.Entry) *View { return w.f.fresh(entries) }

func permute(t chooser, entries []*log.Entry, label string) []*log.Entry {
	out := append([]*log.Entry(nil), entries...)
	for i := len(out) - 1; i > 0; i-- {
		j := t.intn(i+1, label)
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// checkLaws runs a schedule of nsteps and checks the CRDT laws on its result.
func checkLaws(t chooser, nsteps int) {
	w := newSimWorld(t, 3)
	for i := 0; i < nsteps; i++ {
		w.step(t)
		for j, n := range w.nodes {
			if err := n.v.checkConsistency(); err != nil {
				t.Fatalf("step %d, node %d: %v\n%s", i, j, err, w.describeNode(n))
			}
		}
	}
	ref := w.fresh(w.all)
	want := ref.Hash()
	// Any permutation, with duplicates, gives the same view.
	perm := permute(t, w.all, "perm")
	dup := append(perm, permute(t, w.all, "perm2")[:len(w.all)/2]...)
	if got := w.fresh(dup).Hash(); got != want {
		t.Fatalf("permutation with duplicates gives %s, want %s\nwant tree:\n%s\ngot tree:\n%s\n%s", got.Short(), want.Short(), tree(ref), tree(w.fresh(dup)), w.describe())
	}
	// Applying everything in one batch gives the same view.
	vb, _ := New(w.f.root)
	vb.Apply(perm...)
	if vb.Hash() != want {
		t.Fatalf("one batch gives %s, want %s\nwant:\n%s\ngot:\n%s\n%s", vb.Hash().Short(), want.Short(), tree(ref), tree(vb), w.describe())
	}
	// Every node, after receiving everything incrementally, agrees.
	for i, n := range w.nodes {
		for _, m := range w.nodes {
			w.sync(n, m)
		}
		if got := n.v.Hash(); got != want {
			t.Fatalf("node %d after incremental sync: %s, want %s\nwant:\n%s\ngot:\n%s\n%s", i, got.Short(), want.Short(), tree(ref), tree(n.v), w.describe())
		}
	}
	// Merge is commutative and associative: split into three sets and merge
	// them in two different groupings and orders.
	var a, b, c []*log.Entry
	for _, e := range perm {
		switch t.intn(3, "part") {
		case 0:
			a = append(a, e)
		case 1:
			b = append(b, e)
		default:
			c = append(c, e)
		}
	}
	v1, _ := New(w.f.root)
	v1.Apply(a...)
	v1.Apply(b...)
	v1.Apply(c...)
	v2, _ := New(w.f.root)
	v2.Apply(c...)
	v2.Apply(append(b, a...)...)
	if v1.Hash() != want || v2.Hash() != want {
		t.Fatalf("merge groupings differ: %s %s want %s\n%s", v1.Hash().Short(), v2.Hash().Short(), want.Short(), w.describe())
	}
	// Entries by a key that never had authority never change the view.
	var honest []*log.Entry
	for _, e := range w.all {
		if e.Author != pub(w.f.key("mallory")) {
			honest = append(honest, e)
		}
	}
	if got := w.fresh(honest).Hash(); got != want {
		t.Fatalf("removing the unauthorized key's entries changed the view: %s want %s\n%s", got.Short(), want.Short(), w.describe())
	}
}

// TestPropertyCRDT checks the laws on schedules drawn by rapid, which
// shrinks a failure to a minimal schedule.
func TestPropertyCRDT(t *testing.T) {
	steps := 60
	if testing.Short() {
		steps = 30
	}
	rapid.Check(t, func(rt *rapid.T) {
		checkLaws(rapidChooser{rt}, rapid.IntRange(1, steps).Draw(rt, "steps"))
	})
}

// TestPropertyCRDTLongSchedules checks the laws on long uniform schedules,
// one seed each. BASEFS_SEED=N replays one seed; BASEFS_SEEDS=N runs N seeds.
func TestPropertyCRDTLongSchedules(t *testing.T) {
	seeds, steps := 300, 300
	if testing.Short() {
		seeds, steps = 30, 150
	}
	first := uint64(1)
	if s := os.Getenv("BASEFS_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("BASEFS_SEEDS=%q: %v", s, err)
		}
		seeds = n
	}
	if s := os.Getenv("BASEFS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BASEFS_SEED=%q: %v", s, err)
		}
		first, seeds = n, 1
	}
	for seed := first; seed < first+uint64(seeds); seed++ {
		ok := t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			checkLaws(seededChooser{t, rand.New(rand.NewPCG(seed, 0x6261736566732121))}, steps)
		})
		if !ok {
			t.Fatalf("failed with seed %d; replay: BASEFS_SEED=%d go test ./view -run TestPropertyCRDTLongSchedules", seed, seed)
		}
	}
}

func (w *simWorld) describeNode(n *simNode) string {
	names := map[[32]byte]string{}
	for name, k := range w.f.keys {
		names[pub(k)] = name
	}
	s := ""
	for _, e := range n.entries {
		extra := ""
		if e.Action == log.ActGrant || e.Action == log.ActRevoke {
			extra = " key=" + names[e.Key]
		}
		if e.Action == log.ActRename || e.Action == log.ActLink {
			extra = " target=" + e.Target
		}
		s += fmt.Sprintf("%s %s %s %s parent=%s ref=%s counts=%v%s\n", e.Hash().Short(), names[e.Author], e.Action, e.Path, e.Parent.Short(), e.Ref.Short(), n.v.Counts(e.Hash()), extra)
	}
	return s
}

func (w *simWorld) describe() string {
	names := map[[32]byte]string{}
	for name, k := range w.f.keys {
		names[pub(k)] = name
	}
	s := ""
	for _, e := range w.all {
		s += fmt.Sprintf("%s %s %s %s parent=%s ref=%s status=%v counts=%v\n", e.Hash().Short(), names[e.Author], e.Action, e.Path, e.Parent.Short(), e.Ref.Short(), w.nodes[0].v.StatusOf(e.Hash()), w.nodes[0].v.Counts(e.Hash()))
	}
	return s
}
