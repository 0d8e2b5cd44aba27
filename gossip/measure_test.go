package gossip

import (
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
)

// The measurements run only with BASEFS_GOSSIP_MEASURE=1:
//
//	BASEFS_GOSSIP_MEASURE=1 go test ./gossip/ -run TestMeasure -count=1 -v -timeout 30m
//
// BASEFS_GOSSIP_TRIALS overrides the number of trials (20).
func measuring(t *testing.T) int {
	if os.Getenv("BASEFS_GOSSIP_MEASURE") == "" {
		t.Skip("set BASEFS_GOSSIP_MEASURE=1 to measure")
	}
	n := 20
	fmt.Sscan(os.Getenv("BASEFS_GOSSIP_TRIALS"), &n)
	return n
}

// latencies summarizes durations.
type latencies []time.Duration

func (l latencies) median() time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (l latencies) max() time.Duration {
	if len(l) == 0 {
		return 0
	}
	return slices.Max(l)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// probe is one event sent in a trial: how to send it and how to tell that
// a node has it.
type probe struct {
	send    func() error
	arrived func(*node) (time.Time, bool)
	start   time.Time
	last    time.Time // when the last other node had it; zero if not all did
}

// waitAll waits until every node but the sender has each probe, or until
// 10 s after its start.
func waitAll(t *testing.T, c *cluster, sender int, ps ...*probe) {
	for _, p := range ps {
		deadline := p.start.Add(10 * time.Second)
		for {
			all, last := true, p.start
			for j, nd := range c.nodes {
				if j == sender {
					continue
				}
				at, ok := p.arrived(nd)
				if !ok {
					all = false
					break
				}
				if at.After(last) {
					last = at
				}
			}
			if all {
				p.last = last
				break
			}
			if time.Now().After(deadline) {
				var missed []string
				for j, nd := range c.nodes {
					if _, ok := p.arrived(nd); !ok && j != sender {
						missed = append(missed, fmt.Sprintf("%s(sees %d alive)", nd.g.LocalName(), alive(nd.g)))
					}
				}
				t.Logf("  not within 10 s at %v", missed)
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// TestMeasureConvergence: the time from Announce of one signed entry until
// the last other node's OnMessage has it, against a bare serf.UserEvent of
// the same size timed as Serf hands it over (so the comparison includes
// everything this package adds: packing, envelope, decode, the queue to
// OnMessage), in the same cluster, random senders, profile defaults. Nodes
// start at random offsets within a gossip interval.
//
// Two designs: "interleaved" sends one event per trial, ours and bare in
// random order; "paired" sends both back to back in each trial (random
// order), so both meet the same gossip ticks and only what this package
// adds can differ.
func TestMeasureConvergence(t *testing.T) {
	trials := measuring(t)
	for _, setup := range []struct {
		name string
		n    int
		mock bool
	}{
		{"loopback, 10 nodes, LAN", 10, false},
		{"MockNetwork, 30 nodes, LAN", 30, true},
	} {
		t.Run(strings.ReplaceAll(setup.name, " ", ""), func(t *testing.T) {
			rng := rand.New(rand.NewSource(42))
			c := startCluster(t, clusterOpts{n: setup.n, mock: setup.mock, profile: "lan", seed: 42, tuning: &Tuning{}})
			time.Sleep(2 * time.Second) // let the joins' broadcasts drain
			em := newEntryMaker(t, 42)
			// The bare event is as big as ours: one entry in an envelope.
			bareSize := headerSize("n00") + itemSize(len(em.mkdir(t)))
			ourProbe := func(g *Gossip) *probe {
				e := em.mkdir(t)
				h := log.Sum(e)
				p := &probe{arrived: func(nd *node) (time.Time, bool) { return nd.rec.entryTime(h) }}
				p.send = func() error { return g.Announce([][]byte{e}, nil) }
				return p
			}
			bareProbe := func(g *Gossip) *probe {
				b := make([]byte, bareSize)
				rng.Read(b)
				p := &probe{arrived: func(nd *node) (time.Time, bool) { return nd.rec.rawTime(string(b)) }}
				p.send = func() error { return g.sendRaw("x", b) }
				return p
			}
			send := func(ps ...*probe) {
				for _, p := range ps {
					p.start = time.Now()
					if err := p.send(); err != nil {
						t.Fatal(err)
					}
				}
			}
			type result struct {
				ours, bare latencies
				lost       [2]int
				diff       latencies // paired: ours − bare, per trial
			}
			record := func(r *result, o, b *probe) {
				if o != nil {
					if o.last.IsZero() {
						r.lost[0]++
					} else {
						r.ours = append(r.ours, o.last.Sub(o.start))
					}
				}
				if b != nil {
					if b.last.IsZero() {
						r.lost[1]++
					} else {
						r.bare = append(r.bare, b.last.Sub(b.start))
					}
				}
				if o != nil && b != nil && !o.last.IsZero() && !b.last.IsZero() {
					r.diff = append(r.diff, o.last.Sub(o.start)-b.last.Sub(b.start))
				}
			}
			pause := func() {
				// Desynchronize the next trial from the gossip ticks.
				time.Sleep(300*time.Millisecond + time.Duration(rng.Int63n(int64(200*time.Millisecond))))
			}

			var inter, paired result
			kinds := make([]bool, 0, 2*trials)
			for i := 0; i < trials; i++ {
				kinds = append(kinds, true, false)
			}
			rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
			for _, isOurs := range kinds {
				s := rng.Intn(setup.n)
				if isOurs {
					p := ourProbe(c.nodes[s].g)
					send(p)
					waitAll(t, c, s, p)
					record(&inter, p, nil)
				} else {
					p := bareProbe(c.nodes[s].g)
					send(p)
					waitAll(t, c, s, p)
					record(&inter, nil, p)
				}
				pause()
			}
			for i := 0; i < trials; i++ {
				s := rng.Intn(setup.n)
				o, b := ourProbe(c.nodes[s].g), bareProbe(c.nodes[s].g)
				if rng.Intn(2) == 0 {
					send(o, b)
				} else {
					send(b, o)
				}
				waitAll(t, c, s, o, b)
				record(&paired, o, b)
				pause()
			}

			report := func(design string, r result) {
				t.Logf("%s, %s, %d trials (%d B events):", setup.name, design, trials, bareSize)
				t.Logf("  basefs Announce → OnMessage: median %s, max %s, not all within 10 s: %d",
					ms(r.ours.median()), ms(r.ours.max()), r.lost[0])
				t.Logf("  bare serf.UserEvent:         median %s, max %s, not all within 10 s: %d",
					ms(r.bare.median()), ms(r.bare.max()), r.lost[1])
				if r.bare.median() > 0 && r.bare.max() > 0 {
					t.Logf("  ratio of medians %.2f, of maxima %.2f",
						float64(r.ours.median())/float64(r.bare.median()), float64(r.ours.max())/float64(r.bare.max()))
				}
				if len(r.diff) > 0 {
					t.Logf("  per-trial difference ours − bare: median %+.1f ms, max %+.1f ms",
						float64(r.diff.median())/1e6, float64(r.diff.max())/1e6)
				}
			}
			report("interleaved", inter)
			report("paired", paired)
		})
	}
}

// TestMeasureBurst: 256 signed entries from one node to 10 nodes on
// loopback with the LAN profile and package defaults, announced one entry
// per Announce (as a node writing 256 files does) and all in one Announce.
// Reports the time until the last node has all of them, and the deliveries
// still missing when push/pull (30 s) has not yet run.
func TestMeasureBurst(t *testing.T) {
	measuring(t)
	for _, setup := range []struct {
		name string
		n    int
		mock bool
	}{
		{"loopback, 10 nodes, LAN", 10, false},
		{"MockNetwork, 5 nodes, LAN", 5, true},
	} {
		t.Run(strings.ReplaceAll(setup.name, " ", ""), func(t *testing.T) {
			c := startCluster(t, clusterOpts{n: setup.n, mock: setup.mock, profile: "lan", seed: 43, tuning: &Tuning{}})
			time.Sleep(2 * time.Second)
			em := newEntryMaker(t, 43)
			for _, packed := range []bool{false, true} {
				entries := make([][]byte, 256)
				for i := range entries {
					entries[i] = em.mkdir(t)
				}
				want := hashes(entries)
				sender := c.nodes[0].g
				before := sender.Stats().EventsSent
				start := time.Now()
				if packed {
					if err := sender.Announce(entries, nil); err != nil {
						t.Fatal(err)
					}
				} else {
					for _, e := range entries {
						if err := sender.Announce([][]byte{e}, nil); err != nil {
							t.Fatal(err)
						}
					}
				}
				events := sender.Stats().EventsSent - before
				total := 256 * (setup.n - 1)
				have := func() int {
					k := 0
					for _, nd := range c.nodes[1:] {
						k += nd.rec.countEntries(want)
					}
					return k
				}
				var t99, t100 time.Duration
				for time.Since(start) < 25*time.Second {
					h := have()
					if t99 == 0 && h*100 >= total*99 {
						t99 = time.Since(start)
					}
					if h == total {
						t100 = time.Since(start)
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				missing := total - have()
				mode := "one Announce per entry"
				if packed {
					mode = "one Announce of 256"
				}
				all := "not within 25 s"
				if t100 > 0 {
					all = ms(t100)
				}
				t.Logf("%s, %s (%d events): 99%% of deliveries in %s, all in %s, missing after 25 s: %d of %d",
					setup.name, mode, events, ms(t99), all, missing, total)
				time.Sleep(3 * time.Second)
			}
		})
	}
}
