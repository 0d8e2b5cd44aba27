package testbed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/testbed/simnet"
)

// What the convergence experiment measures.
//
// An *object* is one file of Size random (incompressible) bytes written
// with replica.WriteFile on one node; "k objects" are k such files written
// back to back on one node (one signed entry each, like the original's
// experiments writing k files into the mount). A node has *converged* on a
// write when its store holds every entry written and every block those
// entries' contents need (so it can read every file). The directory the
// objects go into exists everywhere beforehand, so a stored entry is an
// applied one.
//
// The *convergence time* of a trial is the time from the return of the
// first WriteFile on the writer until the last node has converged; every
// node's arrival instants are recorded as they happen (replica
// subscriptions), not polled. The Serf floor of a trial is the time from
// the return of gossip.SendRaw of one bare user event, as big as the
// envelope that carries one object, until the last node's Serf hands it
// over. Trials alternate randomly between the two in the same cluster
// (never both in flight at once), from a random writer.

// ConvergenceSpec configures a convergence experiment: one cluster per
// value of the varied parameter, Trials trials on each.
type ConvergenceSpec struct {
	// Vary names the parameter varied: objects, delay, loss, bandwidth,
	// sync or nodes. Values are its values: object counts; one-way delays
	// ("640ms", or a number of ms); loss in percent; bandwidth in bit/s
	// ("8k", "1M", "unlimited"); sync intervals ("5s"); node counts.
	Vary   string
	Values []string

	Nodes   int // default 30
	Objects int // default 1
	Size    int // bytes per object, default 512
	Trials  int // default 5
	Seed    int64
	// Link is the link every value starts from (default 1 ms ± 0.5 ms).
	Link         simnet.Link
	SyncInterval time.Duration // default syncproto's 5 s
	Profile      string        // gossip profile, default lan
	Tuning       gossip.Tuning
	// Timeout bounds one trial (default 120 s).
	Timeout time.Duration
	// Floor sends the bare Serf events (default on; NoFloor turns it off).
	NoFloor bool
	// Dir holds the stores ("" a temporary directory).
	Dir string
	// Command is the command line that ran the experiment, for the report.
	Command string
	// Name names the experiment in the report (default Vary).
	Name string
	Logf func(format string, args ...any)
}

// ConvergenceTrial is one measurement.
type ConvergenceTrial struct {
	Value     string
	Trial     int
	Kind      string // "basefs" or "serf"
	Writer    int
	Converged bool
	Reached   int     // nodes that had it within the timeout
	Seconds   float64 // to the last node (the timeout when not converged)
	MedianSec float64 // to the median node
	WriteSec  float64 // writing the objects on the writer (basefs only)
	Bytes     int     // bytes written (basefs) or payload (serf)
	LagMS     float64 // simnet's worst lateness during the trial
}

// ConvergencePoint summarizes one value.
type ConvergencePoint struct {
	Value                 string
	Params                string // the cluster's parameters, in words
	Trials                int
	Converged             int
	Median, P90, Max      float64 // basefs, seconds (+Inf: a trial did not converge)
	SerfMedian, SerfMax   float64
	SerfLost              int
	ViewsEqual            bool // all view hashes equal after the trials
	FormSeconds           float64
	CPUCores              float64 // during the trials
	MaxLagMS              float64
	EnvelopeBytes         int
	TrafficGossipKbitNode float64 // per node, during the trials
	TrafficSyncKbitNode   float64
}

// ConvergenceResult is the outcome of an experiment.
type ConvergenceResult struct {
	Spec    ConvergenceSpec
	Machine Machine
	Trials  []ConvergenceTrial
	Points  []ConvergencePoint
}

func (s *ConvergenceSpec) defaults() {
	if s.Nodes <= 0 {
		s.Nodes = 30
	}
	if s.Objects <= 0 {
		s.Objects = 1
	}
	if s.Size <= 0 {
		s.Size = 512
	}
	if s.Trials <= 0 {
		s.Trials = 5
	}
	if s.Link == (simnet.Link{}) {
		s.Link = simnet.Link{Delay: time.Millisecond, Jitter: 500 * time.Microsecond}
	}
	if s.Timeout <= 0 {
		s.Timeout = 120 * time.Second
	}
	if s.Name == "" {
		s.Name = s.Vary
	}
}

// convParams are one value's cluster parameters.
type convParams struct {
	nodes, objects int
	link           simnet.Link
	sync           time.Duration
}

// ParseBandwidth parses a rate in bit/s ("8k", "32000", "1M",
// "unlimited") into bytes per second (0: unlimited).
func ParseBandwidth(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "bit/s"))
	if s == "unlimited" || s == "inf" || s == "0" {
		return 0, nil
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1e6, strings.TrimSuffix(s, "m")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("bandwidth %q: want e.g. 8k, 1M or unlimited", s)
	}
	return int64(f * mult / 8), nil
}

// parseMS parses a duration, or a bare number of milliseconds.
func parseMS(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Millisecond)), nil
	}
	return time.ParseDuration(s)
}

// apply sets the varied parameter to value.
func (s *ConvergenceSpec) apply(value string) (convParams, error) {
	p := convParams{nodes: s.Nodes, objects: s.Objects, link: s.Link, sync: s.SyncInterval}
	var err error
	switch s.Vary {
	case "objects":
		p.objects, err = strconv.Atoi(value)
		if err == nil && p.objects < 1 {
			err = errors.New("must be at least 1")
		}
	case "nodes":
		p.nodes, err = strconv.Atoi(value)
		if err == nil && p.nodes < 2 {
			err = errors.New("must be at least 2")
		}
	case "delay":
		p.link.Delay, err = parseMS(value)
	case "loss":
		var f float64
		f, err = strconv.ParseFloat(strings.TrimSuffix(value, "%"), 64)
		if err == nil && (f < 0 || f > 100) {
			err = errors.New("must be 0 to 100 (percent)")
		}
		p.link.Loss = f / 100
	case "bandwidth":
		p.link.Bandwidth, err = ParseBandwidth(value)
	case "sync":
		p.sync, err = time.ParseDuration(value)
		if err == nil && p.sync <= 0 {
			err = errors.New("must be positive")
		}
	default:
		return p, fmt.Errorf("testbed: cannot vary %q (objects, delay, loss, bandwidth, sync, nodes)", s.Vary)
	}
	if err != nil {
		return p, fmt.Errorf("testbed: --vary %s value %q: %v", s.Vary, value, err)
	}
	return p, nil
}

func (p convParams) String() string {
	bw := "unlimited"
	if p.link.Bandwidth > 0 {
		bw = fmt.Sprintf("%g kbit/s", float64(p.link.Bandwidth)*8/1000)
	}
	sync := "5s (default)"
	if p.sync > 0 {
		sync = p.sync.String()
	}
	return fmt.Sprintf("%d nodes, %d objects, delay %v ± %v, loss %g%%, bandwidth %s, sync every %s",
		p.nodes, p.objects, p.link.Delay, p.link.Jitter, p.link.Loss*100, bw, sync)
}

// RunConvergence runs the experiment. It returns the trials measured so far
// with an error if a cluster could not be built or ctx ended.
func RunConvergence(ctx context.Context, spec ConvergenceSpec) (*ConvergenceResult, error) {
	spec.defaults()
	res := &ConvergenceResult{Spec: spec, Machine: NewMachine()}
	var params []convParams
	for _, v := range spec.Values {
		p, err := spec.apply(v)
		if err != nil {
			return nil, err
		}
		params = append(params, p)
	}
	if len(params) == 0 {
		return nil, errors.New("testbed: no values to measure")
	}
	for vi, v := range spec.Values {
		pt, trials, err := runConvergenceValue(ctx, &spec, vi, v, params[vi])
		res.Trials = append(res.Trials, trials...)
		if err != nil {
			res.Machine.Done()
			return res, err
		}
		res.Points = append(res.Points, pt)
	}
	res.Machine.Done()
	return res, nil
}

func (s *ConvergenceSpec) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func runConvergenceValue(ctx context.Context, spec *ConvergenceSpec, vi int, value string, p convParams) (ConvergencePoint, []ConvergenceTrial, error) {
	pt := ConvergencePoint{Value: value, Params: p.String(), Trials: spec.Trials}
	seed := spec.Seed*1000 + int64(vi)
	spec.logf("%s=%s: starting %s (seed %d)", spec.Vary, value, p, seed)
	formStart := time.Now()
	dir := ""
	if spec.Dir != "" {
		dir = filepath.Join(spec.Dir, fmt.Sprintf("v%d", vi))
		defer os.RemoveAll(dir)
	}
	c, err := NewCluster(ctx, ClusterConfig{
		Nodes: p.nodes, Seed: seed, Link: p.link, Profile: spec.Profile, Tuning: spec.Tuning,
		SyncInterval: p.sync, Dir: dir, Logf: spec.Logf,
	})
	if err != nil {
		return pt, nil, err
	}
	defer c.Close()
	pt.FormSeconds = time.Since(formStart).Seconds()
	spec.logf("%s=%s: %d nodes formed in %.1f s", spec.Vary, value, p.nodes, pt.FormSeconds)
	rng := rand.New(rand.NewSource(seed))
	data := func() []byte {
		b := make([]byte, spec.Size)
		rng.Read(b)
		return b
	}
	// Calibrate: one object, to learn the size of the envelope carrying it
	// and to let the first write's costs (caches, connections) pass.
	w0 := rng.Intn(p.nodes)
	g0 := c.Node(w0).Gossip().Stats()
	cal, err := c.Write(w0, nil, fmt.Sprintf("%s/v%d-calibration", ObjectDir, vi), data())
	if err != nil {
		return pt, nil, err
	}
	g1 := c.Node(w0).Gossip().Stats()
	env := spec.Size
	if ev := g1.EventsSent - g0.EventsSent; ev > 0 {
		env = int(g1.BytesSent-g0.BytesSent) / int(ev)
	}
	pt.EnvelopeBytes = env
	wctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	waitAll(wctx, c, []Written{cal}, "", time.Now())
	cancel()

	var trials []ConvergenceTrial
	cpu0, t0 := CPUTime(), time.Now()
	tr0 := c.Net().TotalTraffic()
	c.Net().Lag()
	for t := 0; t < spec.Trials; t++ {
		if err := ctx.Err(); err != nil {
			return pt, trials, err
		}
		kinds := []string{"basefs", "serf"}
		if spec.NoFloor {
			kinds = kinds[:1]
		} else if rng.Intn(2) == 0 {
			kinds[0], kinds[1] = kinds[1], kinds[0]
		}
		for _, kind := range kinds {
			writer := rng.Intn(p.nodes)
			tr := ConvergenceTrial{Value: value, Trial: t, Kind: kind, Writer: writer}
			c.Net().Lag()
			var start time.Time
			var res waitResult
			if kind == "basefs" {
				var ws []Written
				wstart := time.Now()
				for k := 0; k < p.objects; k++ {
					w, err := c.Write(writer, nil, fmt.Sprintf("%s/v%d-t%d-f%d", ObjectDir, vi, t, k), data())
					if err != nil {
						return pt, trials, err
					}
					if k == 0 {
						start = time.Now()
					}
					ws = append(ws, w)
				}
				tr.WriteSec = time.Since(wstart).Seconds()
				tr.Bytes = p.objects * spec.Size
				wctx, cancel := context.WithTimeout(ctx, spec.Timeout)
				res = waitAll(wctx, c, ws, "", start)
				cancel()
			} else {
				name := fmt.Sprintf("probe-v%d-t%d", vi, t)
				payload := data()
				if len(payload) > env {
					payload = payload[:env]
				}
				for len(payload) < env {
					payload = append(payload, byte(len(payload)))
				}
				if err := c.Node(writer).Gossip().SendRaw(name, payload); err != nil {
					return pt, trials, err
				}
				start = time.Now()
				tr.Bytes = len(payload)
				wctx, cancel := context.WithTimeout(ctx, spec.Timeout)
				res = waitAll(wctx, c, nil, name, start)
				cancel()
			}
			tr.Converged, tr.Reached = res.all, res.reached
			tr.Seconds, tr.MedianSec = res.last.Seconds(), res.median.Seconds()
			if !res.all {
				tr.Seconds = spec.Timeout.Seconds()
			}
			tr.LagMS = float64(c.Net().Lag()) / 1e6
			trials = append(trials, tr)
			status := "converged"
			if !tr.Converged {
				status = fmt.Sprintf("NOT converged (%d of %d nodes)", tr.Reached, p.nodes)
			}
			spec.logf("%s=%s trial %d %s: %s in %.3f s (lag %.0f ms)", spec.Vary, value, t, kind, status, tr.Seconds, tr.LagMS)
			// Let retransmissions drain and desynchronize from gossip ticks.
			time.Sleep(500*time.Millisecond + time.Duration(rng.Int63n(int64(500*time.Millisecond))))
		}
	}
	cpu, wall := CPUTime()-cpu0, time.Since(t0)
	pt.CPUCores = cpu.Seconds() / wall.Seconds()
	tr1 := c.Net().TotalTraffic()
	pt.TrafficGossipKbitNode = float64((tr1.PacketBytesSent-tr0.PacketBytesSent)+(tr1.GossipStreamBytesSent-tr0.GossipStreamBytesSent)) * 8 / 1000 / wall.Seconds() / float64(p.nodes)
	pt.TrafficSyncKbitNode = float64(tr1.StreamBytesSent-tr0.StreamBytesSent) * 8 / 1000 / wall.Seconds() / float64(p.nodes)
	vctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	pt.ViewsEqual = c.WaitConverged(vctx, nil) == nil
	cancel()
	var ours, serf durations
	for _, tr := range trials {
		pt.MaxLagMS = math.Max(pt.MaxLagMS, tr.LagMS)
		v := tr.Seconds
		if !tr.Converged {
			v = math.Inf(1)
		}
		if tr.Kind == "basefs" {
			ours = append(ours, v)
			if tr.Converged {
				pt.Converged++
			}
		} else {
			serf = append(serf, v)
			if !tr.Converged {
				pt.SerfLost++
			}
		}
	}
	pt.Median, pt.P90, pt.Max = ours.median(), ours.quantile(0.9), ours.max()
	pt.SerfMedian, pt.SerfMax = serf.median(), serf.max()
	return pt, trials, nil
}

// waitResult is when the nodes got something.
type waitResult struct {
	all     bool
	reached int
	last    time.Duration // to the last node that got it
	median  time.Duration // to the median node
}

// waitAll waits until every node holds ws (or, with raw set, has the bare
// event named raw), or ctx ends. Times are measured from start using the
// recorded arrival instants, so the polling period does not matter. A node
// down or stopped counts as not reached.
func waitAll(ctx context.Context, c *Cluster, ws []Written, raw string, start time.Time) waitResult {
	n := c.N()
	at := make([]time.Time, n)
	got := make([]bool, n)
	every := 5 * time.Millisecond
	if n > 100 {
		every = 20 * time.Millisecond
	}
	for {
		reached := 0
		for i := 0; i < n; i++ {
			if !got[i] {
				a := c.Arrivals(i)
				if raw != "" {
					at[i], got[i] = a.Raw(raw)
				} else {
					at[i], got[i] = a.Has(ws...)
				}
			}
			if got[i] {
				reached++
			}
		}
		if reached == n || ctx.Err() != nil {
			var ds []time.Duration
			for i := range at {
				if got[i] {
					ds = append(ds, max(0, at[i].Sub(start)))
				}
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			r := waitResult{all: reached == n, reached: reached}
			if len(ds) > 0 {
				r.last = ds[len(ds)-1]
				r.median = ds[(len(ds)-1)/2]
			}
			return r
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}
