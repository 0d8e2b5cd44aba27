package testbed

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/testbed/simnet"
)

// TrafficSpec configures the traffic experiment: for each anti-entropy
// interval, a cluster is measured idle for Window, then for Window while
// one object is written every WriteEvery on a random node. Gossip traffic
// is what the nodes' memberlist transports send (UDP-like packets and
// memberlist's TCP push/pull streams); sync traffic is what the sync
// protocol's streams carry. Both are payload bytes (simnet does not model
// headers); the report adds an estimate with IPv4/UDP and TCP headers.
type TrafficSpec struct {
	Intervals  []time.Duration
	Nodes      int           // default 30
	Window     time.Duration // default max(60 s, 3 intervals)
	WriteEvery time.Duration // default 2 s
	Size       int           // object size, default 512
	Seed       int64
	Link       simnet.Link // default 1 ms ± 0.5 ms
	Profile    string
	Tuning     gossip.Tuning
	Dir        string
	Command    string
	Logf       func(format string, args ...any)
}

// TrafficPoint is one interval and phase.
type TrafficPoint struct {
	Interval time.Duration
	Phase    string // "idle" or "writing"
	Window   time.Duration
	Writes   int
	// Per node, kbit/s sent: gossip (packets + push/pull streams) and
	// sync (streams); SyncMax is the busiest node's sync rate.
	Gossip, GossipStreams, Sync, SyncMax float64
	// WireEstimate adds 28 B per packet and 52 B per stream segment.
	WireEstimate float64
	CPUCores     float64
	MaxLagMS     float64
}

// TrafficResult is the outcome.
type TrafficResult struct {
	Spec    TrafficSpec
	Machine Machine
	Points  []TrafficPoint
}

// RunTraffic runs the experiment.
func RunTraffic(ctx context.Context, spec TrafficSpec) (*TrafficResult, error) {
	if spec.Nodes <= 0 {
		spec.Nodes = 30
	}
	if spec.WriteEvery <= 0 {
		spec.WriteEvery = 2 * time.Second
	}
	if spec.Size <= 0 {
		spec.Size = 512
	}
	if spec.Link == (simnet.Link{}) {
		spec.Link = simnet.Link{Delay: time.Millisecond, Jitter: 500 * time.Microsecond}
	}
	res := &TrafficResult{Spec: spec, Machine: NewMachine()}
	defer res.Machine.Done()
	for vi, iv := range spec.Intervals {
		window := spec.Window
		if window <= 0 {
			window = max(60*time.Second, 3*iv)
		}
		seed := spec.Seed*1000 + int64(vi)
		dir := ""
		if spec.Dir != "" {
			dir = filepath.Join(spec.Dir, fmt.Sprintf("t%d", vi))
		}
		if spec.Logf != nil {
			spec.Logf("sync interval %v: starting %d nodes", iv, spec.Nodes)
		}
		c, err := NewCluster(ctx, ClusterConfig{Nodes: spec.Nodes, Seed: seed, Link: spec.Link, Profile: spec.Profile,
			Tuning: spec.Tuning, SyncInterval: iv, Dir: dir, Logf: spec.Logf})
		if err != nil {
			return res, err
		}
		// Let the joins' broadcasts and first syncs pass.
		select {
		case <-ctx.Done():
		case <-time.After(10*time.Second + iv):
		}
		rng := rand.New(rand.NewSource(seed))
		for _, phase := range []string{"idle", "writing"} {
			pt, err := measureTraffic(ctx, c, spec, rng, iv, window, phase)
			if err != nil {
				c.Close()
				return res, err
			}
			res.Points = append(res.Points, pt)
			if spec.Logf != nil {
				spec.Logf("sync interval %v, %s: gossip %.2f kbit/s, sync %.2f kbit/s per node", iv, phase, pt.Gossip, pt.Sync)
			}
		}
		c.Close()
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	return res, nil
}

func measureTraffic(ctx context.Context, c *Cluster, spec TrafficSpec, rng *rand.Rand, iv, window time.Duration, phase string) (TrafficPoint, error) {
	pt := TrafficPoint{Interval: iv, Phase: phase, Window: window}
	n := c.N()
	before := make([]simnet.Traffic, n)
	for i := range before {
		before[i] = c.Net().Traffic(HostAddr(i))
	}
	cpu0, t0 := CPUTime(), time.Now()
	c.Net().Lag()
	end := t0.Add(window)
	for time.Now().Before(end) {
		if err := ctx.Err(); err != nil {
			return pt, err
		}
		if phase == "writing" {
			b := make([]byte, spec.Size)
			rng.Read(b)
			if _, err := c.Write(rng.Intn(n), nil, fmt.Sprintf("%s/traffic-%v-%d", ObjectDir, iv, pt.Writes), b); err != nil {
				return pt, err
			}
			pt.Writes++
			time.Sleep(min(spec.WriteEvery, time.Until(end)))
		} else {
			time.Sleep(time.Until(end))
		}
	}
	wall := time.Since(t0)
	pt.Window = wall
	pt.CPUCores = (CPUTime() - cpu0).Seconds() / wall.Seconds()
	pt.MaxLagMS = float64(c.Net().Lag()) / 1e6
	var gossipB, streamsB, syncB, packets, segments int64
	for i := 0; i < n; i++ {
		a := c.Net().Traffic(HostAddr(i))
		b := before[i]
		gossipB += a.PacketBytesSent - b.PacketBytesSent + a.GossipStreamBytesSent - b.GossipStreamBytesSent
		streamsB += a.GossipStreamBytesSent - b.GossipStreamBytesSent
		s := a.StreamBytesSent - b.StreamBytesSent
		syncB += s
		pt.SyncMax = max(pt.SyncMax, float64(s)*8/1000/wall.Seconds())
		packets += a.PacketsSent - b.PacketsSent
		segments += a.SegmentsSent - b.SegmentsSent
	}
	perNode := func(bytes int64) float64 { return float64(bytes) * 8 / 1000 / wall.Seconds() / float64(n) }
	pt.Gossip, pt.GossipStreams, pt.Sync = perNode(gossipB), perNode(streamsB), perNode(syncB)
	pt.WireEstimate = perNode(gossipB + syncB + 28*packets + 52*segments)
	return pt, nil
}

// Report renders the markdown report.
func (r *TrafficResult) Report() string {
	var b strings.Builder
	b.WriteString("# Traffic per node vs anti-entropy interval\n\n")
	fmt.Fprintf(&b, "Command:\n\n```sh\n%s\n```\n\n", r.Spec.Command)
	b.WriteString(r.Machine.Markdown())
	profile := r.Spec.Profile
	if profile == "" {
		profile = "lan"
	}
	fmt.Fprintf(&b, "- %d nodes, seed %d, gossip profile %s, links %v ± %v; writing phase: one %d-byte object every %v from a random node\n\n",
		r.Spec.Nodes, r.Spec.Seed, profile, r.Spec.Link.Delay, r.Spec.Link.Jitter, r.Spec.Size, r.Spec.WriteEvery)
	b.WriteString("Rates are kbit/s *sent* per node, averaged over the nodes and the window (every byte sent is received once, so received rates are the same on average). " +
		"Gossip = Serf/memberlist packets (probes, acks, gossip with piggybacked events) plus memberlist's TCP push/pull; sync = the anti-entropy protocol's streams " +
		"(sessions started and answered, and fetches of announced entries and blocks). Payload bytes; the last column adds 28 B per packet (IPv4 + UDP) and 52 B per TCP segment.\n\n")
	b.WriteString("| sync interval | phase | writes | gossip kbit/s | of which push/pull | sync kbit/s | busiest node's sync | total with headers (est.) | CPU (cores) | max lag |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Points {
		fmt.Fprintf(&b, "| %v | %s | %d | %.2f | %.2f | %.3f | %.3f | %.2f | %.2f | %.0f ms |\n",
			p.Interval, p.Phase, p.Writes, p.Gossip, p.GossipStreams, p.Sync, p.SyncMax, p.WireEstimate, p.CPUCores, p.MaxLagMS)
	}
	b.WriteString("\n## The original BaseFS beside ours\n\n")
	b.WriteString(originalFigures("sync"))
	b.WriteString("\n## Simulated and real time\n\n" + simTimeNote + "\n")
	return b.String()
}

// Write writes data.csv, plot.svg and report.md into dir.
func (r *TrafficResult) Write(dir string) error {
	header := []string{"sync_interval_s", "phase", "window_s", "writes", "nodes", "gossip_kbit_node", "gossip_pushpull_kbit_node",
		"sync_kbit_node", "sync_max_kbit_node", "wire_estimate_kbit_node", "cpu_cores", "max_lag_ms"}
	var rows [][]string
	plot := Plot{Title: fmt.Sprintf("Traffic sent per node, %d nodes", r.Spec.Nodes), XLabel: "anti-entropy interval",
		YLabel: "kbit/s per node", LogY: true}
	series := map[string][]float64{}
	var order []string
	add := func(name string, v float64) {
		if _, ok := series[name]; !ok {
			order = append(order, name)
		}
		series[name] = append(series[name], v)
	}
	for _, p := range r.Points {
		rows = append(rows, []string{ff(p.Interval.Seconds()), p.Phase, ff(p.Window.Seconds()), fmt.Sprint(p.Writes), fmt.Sprint(r.Spec.Nodes),
			ff(p.Gossip), ff(p.GossipStreams), ff(p.Sync), ff(p.SyncMax), ff(p.WireEstimate), ff(p.CPUCores), ff(p.MaxLagMS)})
		if p.Phase == "idle" {
			plot.X = append(plot.X, p.Interval.String())
		}
		add("gossip, "+p.Phase, p.Gossip)
		add("sync, "+p.Phase, p.Sync)
	}
	for _, name := range order {
		plot.Series = append(plot.Series, Series{Name: name, Y: series[name], Dashed: strings.HasSuffix(name, "writing")})
	}
	return writeOutputs(dir, header, rows, plot, r.Report())
}
