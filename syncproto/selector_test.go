package syncproto

import (
	"math/rand"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// The choice follows p_i = t_i / Σ t_j: a chi-square test over many draws
// with t fixed (Choose records nothing by itself).
func TestPeerSelectorDistribution(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	s := NewPeerSelector(rng, clk.now)
	peers := []string{"a:1", "b:1", "c:1", "d:1"}
	ages := map[string]time.Duration{"a:1": 10 * time.Second, "b:1": 20 * time.Second, "c:1": 30 * time.Second, "d:1": 40 * time.Second}
	for p, age := range ages {
		s.Synced(p, clk.t.Add(-age))
	}
	const draws = 20000
	counts := map[string]int{}
	for i := 0; i < draws; i++ {
		p, ok := s.Choose(peers)
		if !ok {
			t.Fatal("no choice")
		}
		counts[p]++
	}
	var chi2 float64
	for p, age := range ages {
		want := draws * age.Seconds() / 100
		d := float64(counts[p]) - want
		chi2 += d * d / want
	}
	t.Logf("counts %v, chi² = %.2f (3 degrees of freedom)", counts, chi2)
	// p = 0.001 critical value for 3 degrees of freedom.
	if chi2 > 16.27 {
		t.Fatalf("distribution off: chi² = %.2f", chi2)
	}
}

// A new peer counts from when it is first seen; syncing resets t_i; a
// peer synced just now is not chosen while another has waited.
func TestPeerSelectorRecords(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	s := NewPeerSelector(rng, clk.now)
	if _, ok := s.Choose(nil); ok {
		t.Fatal("chose from no peers")
	}
	// Both first seen now: all weights zero, so uniform.
	if _, ok := s.Choose([]string{"a", "b"}); !ok {
		t.Fatal("no choice")
	}
	clk.t = clk.t.Add(10 * time.Second)
	s.Synced("a", clk.t)
	w := s.Weights([]string{"a", "b"})
	if w["a"] != 0 || w["b"] != 10 {
		t.Fatalf("weights %v", w)
	}
	for i := 0; i < 100; i++ {
		if p, _ := s.Choose([]string{"a", "b"}); p != "b" {
			t.Fatalf("chose %s, synced just now", p)
		}
	}
	// A peer that appears later starts from then.
	clk.t = clk.t.Add(5 * time.Second)
	s.Choose([]string{"a", "b", "c"})
	if w := s.Weights([]string{"a", "b", "c"}); w["c"] != 0 || w["a"] != 5 || w["b"] != 15 {
		t.Fatalf("weights %v", w)
	}
	// Deterministic given the seed.
	a := NewPeerSelector(rand.New(rand.NewSource(7)), clk.now)
	b := NewPeerSelector(rand.New(rand.NewSource(7)), clk.now)
	for _, x := range []*PeerSelector{a, b} {
		x.Synced("p", clk.t.Add(-3*time.Second))
		x.Synced("q", clk.t.Add(-time.Second))
	}
	for i := 0; i < 50; i++ {
		pa, _ := a.Choose([]string{"p", "q"})
		pb, _ := b.Choose([]string{"q", "p"})
		if pa != pb {
			t.Fatal("not deterministic")
		}
	}
}

// The Syncer's loop picks peers through the selector and syncs; the weights
// it leaves behind are the times since each sync.
func TestSyncerRuns(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	g.tree("/", 1, 10)
	pn := newPipeNet(t)
	var nodes []*node
	for _, name := range []string{"a", "b", "c"} {
		f := g.fork()
		f.write("/only-"+name, []byte(name))
		nodes = append(nodes, pn.add(t, name, makeReplica(t, append(append(g.out[:0:0], g.out...), f.out...), nil), rng))
	}
	for round := 0; round < 12; round++ {
		for i, nd := range nodes {
			var peers []string
			for j, o := range nodes {
				if j != i {
					peers = append(peers, o.name)
				}
			}
			nd.svc.Syncer.cfg.Peers = func() []string { return peers }
			if _, _, ok, err := nd.svc.Syncer.Step(t.Context()); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
	}
	requireSame(t, nodes...)
}
