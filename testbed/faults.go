package testbed

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/testbed/simnet"
)

// FaultConfig configures one fault schedule.
type FaultConfig struct {
	Seed  int64
	Nodes int // default 5
	Steps int // operations in the schedule, default 40
	// Settle bounds the final wait for convergence once every fault is
	// undone (default 60 s).
	Settle time.Duration
	// Dir holds the stores ("" a temporary directory).
	Dir  string
	Logf func(format string, args ...any)
}

// FaultReport is the outcome of one schedule.
type FaultReport struct {
	Seed       int64
	Ops        []string // the schedule as run
	Writes     int      // writes attempted
	Acked      int      // writes whose WriteFile returned without error
	Refused    int      // writes refused (no authority)
	Samples    int      // monotonicity samples taken
	Violations []string // invariant violations; empty when the run passed
	Converge   time.Duration
	Duration   time.Duration
}

// OK reports whether no invariant was violated.
func (r *FaultReport) OK() bool { return len(r.Violations) == 0 }

// ReplayCommand is the command that replays seed.
func ReplayCommand(seed int64) string {
	return fmt.Sprintf("go test ./testbed -run 'TestFaults$' -v -faults.seed %d   (or: basefs-testbed faults --seed %d --seeds 1 -v)", seed, seed)
}

// faultTuning makes gossip react on a fault schedule's time scale.
func faultTuning() gossip.Tuning {
	return gossip.Tuning{GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond,
		ProbeTimeout: 100 * time.Millisecond, SuspicionMult: 3, PushPullInterval: 2 * time.Second,
		LeavePropagateDelay: 20 * time.Millisecond, BroadcastTimeout: 500 * time.Millisecond,
		ReapInterval: time.Second}
}

// RunFaults runs one seeded schedule of random partitions, heals, crashes,
// restarts, link changes and writes (concurrent ones included, with the
// root key and a key granted /k2, and writes that key may not make) on a
// small simulated cluster, then heals everything, restarts every crashed
// node, waits for convergence and checks the invariants:
//
//  1. every node has the same view hash (and misses no block);
//  2. no acknowledged write is lost: every entry whose WriteFile returned
//     is stored on every node (it may have lost a conflict; it is held);
//  3. no node's stored-entry set ever shrank: it is sampled every 100 ms
//     and at every restart, across crashes (the simulated crash stops the
//     node's goroutines and cuts its network; stores are not fsynced,
//     which is safe here because the process, and so the page cache,
//     survives — a real crash is the store's own tests' business);
//  4. every node's Replica.Verify is OK (every entry's hash and signature,
//     every visible file's content).
//
// It returns an error only when the cluster cannot be set up; violations
// are in the report.
func RunFaults(ctx context.Context, cfg FaultConfig) (*FaultReport, error) {
	if cfg.Nodes < 2 {
		cfg.Nodes = 5
	}
	if cfg.Steps <= 0 {
		cfg.Steps = 40
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 60 * time.Second
	}
	start := time.Now()
	rep := &FaultReport{Seed: cfg.Seed}
	dir := cfg.Dir
	if dir != "" {
		dir = filepath.Join(dir, fmt.Sprintf("seed%d", cfg.Seed))
		defer os.RemoveAll(dir)
	}
	c, err := NewCluster(ctx, ClusterConfig{Nodes: cfg.Nodes, Seed: cfg.Seed, Dir: dir,
		Link:   simnet.Link{Delay: 2 * time.Millisecond, Jitter: time.Millisecond},
		Tuning: faultTuning(), SyncInterval: 300 * time.Millisecond, RetryInterval: 200 * time.Millisecond,
		Stagger: 50 * time.Millisecond, FormTimeout: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("seed %d: %w", cfg.Seed, err)
	}
	defer c.Close()
	f := &faultRun{c: c, rep: rep, rng: rand.New(rand.NewSource(cfg.Seed ^ 0x5eed)),
		seen: make([]map[log.Hash]bool, cfg.Nodes), down: make([]bool, cfg.Nodes)}
	for i := range f.seen {
		f.seen[i] = map[log.Hash]bool{}
	}
	f.key2 = KeyFromSeed(cfg.Seed, "second")
	f.key3 = KeyFromSeed(cfg.Seed, "stranger")
	if _, err := c.Node(0).Replica().Grant(c.Root(), "/k2", f.key2.Public().(ed25519.PublicKey), false); err != nil {
		return nil, fmt.Errorf("seed %d: grant: %w", cfg.Seed, err)
	}

	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-sctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			f.sampleAll()
		}
	}()

	for step := 0; step < cfg.Steps && ctx.Err() == nil; step++ {
		f.step()
	}
	stopSampling()
	wg.Wait()

	// Undo every fault, then check.
	f.op("final: heal, clean links, restart every crashed node")
	c.Net().Heal()
	c.Net().SetDefaultLink(simnet.Link{Delay: 2 * time.Millisecond, Jitter: time.Millisecond})
	for i := range f.down {
		if f.down[i] {
			f.restart(i)
		}
	}
	// Converged: equal views, no block missing, and every node holds every
	// acknowledged entry and as many entries as the others (a view can be
	// equal while a node still lacks an entry that lost a conflict).
	t0 := time.Now()
	deadline := t0.Add(cfg.Settle)
	for {
		if c.Converged(c.Live()) && f.allHeld() {
			err = nil
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			err = fmt.Errorf("not converged")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep.Converge = time.Since(t0)
	f.sampleAll()
	if err != nil {
		var views []string
		for i := 0; i < c.N(); i++ {
			if n := c.Node(i); n != nil {
				st := n.Replica().Status()
				views = append(views, fmt.Sprintf("n%d %.12s (%d entries, %d missing blocks, %d pending)", i, st.ViewHash, st.Entries, st.MissingBlocks, st.Pending))
			}
		}
		f.violate("not converged (equal views and every entry everywhere) %v after every fault was undone: %s", cfg.Settle, strings.Join(views, "; "))
	}
	for i := 0; i < c.N(); i++ {
		n := c.Node(i)
		if n == nil {
			f.violate("node %d is not running at the end", i)
			continue
		}
		r := n.Replica()
		var lost []string
		for _, h := range f.acked {
			if !r.HasEntry(h) {
				lost = append(lost, fmt.Sprintf("%.8s", h))
			}
		}
		if len(lost) > 0 {
			f.violate("node %d lacks %d of %d acknowledged writes (%s)", i, len(lost), len(f.acked), strings.Join(lost, ","))
		}
		if v := r.Verify(); !v.OK {
			f.violate("node %d: verify failed: bad entries %v, corruptions %v, bad contents %v", i, v.BadEntries, v.Corruptions, v.BadContents)
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// faultRun is one schedule in progress. Its methods run on the schedule's
// goroutine, except sampleAll, which also runs on the sampler's; mu
// serializes samples with crashes and restarts.
type faultRun struct {
	c     *Cluster
	rep   *FaultReport
	rng   *rand.Rand
	key2  ed25519.PrivateKey
	key3  ed25519.PrivateKey
	acked []log.Hash

	mu   sync.Mutex
	seen []map[log.Hash]bool // entries ever observed on each node
	down []bool
}

func (f *faultRun) op(format string, args ...any) {
	f.mu.Lock()
	f.rep.Ops = append(f.rep.Ops, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *faultRun) violate(format string, args ...any) {
	f.mu.Lock()
	f.rep.Violations = append(f.rep.Violations, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *faultRun) live() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, d := range f.down {
		if !d {
			out = append(out, i)
		}
	}
	return out
}

func (f *faultRun) step() {
	n := f.c.N()
	live := f.live()
	switch x := f.rng.Intn(100); {
	case x < 40:
		f.write(live[f.rng.Intn(len(live))])
	case x < 50:
		// Concurrent writes to one path from several nodes: conflicts.
		path := fmt.Sprintf("/f/%d", f.rng.Intn(4))
		k := min(len(live), 2+f.rng.Intn(2))
		f.rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
		var wg sync.WaitGroup
		for _, i := range live[:k] {
			data := f.data()
			wg.Add(1)
			go func() { defer wg.Done(); f.writeKey(i, f.c.Root(), "root", path, data) }()
		}
		wg.Wait()
	case x < 60:
		perm := f.rng.Perm(n)
		cut := 1 + f.rng.Intn(n-1)
		var a, b []string
		for k, i := range perm {
			if k < cut {
				a = append(a, HostAddr(i))
			} else {
				b = append(b, HostAddr(i))
			}
		}
		f.op("partition %v | %v", a, b)
		f.c.Net().Partition(a, b)
	case x < 67:
		f.op("heal")
		f.c.Net().Heal()
	case x < 75:
		if len(live) > 1 {
			f.crash(live[f.rng.Intn(len(live))])
		}
	case x < 83:
		var down []int
		for i := 0; i < n; i++ {
			if !contains(live, i) {
				down = append(down, i)
			}
		}
		if len(down) > 0 {
			f.restart(down[f.rng.Intn(len(down))])
		}
	case x < 88:
		l := simnet.Link{Delay: time.Duration(1+f.rng.Intn(30)) * time.Millisecond, Jitter: time.Duration(f.rng.Intn(10)) * time.Millisecond,
			Loss: float64(f.rng.Intn(4)) * 0.1, Duplicate: float64(f.rng.Intn(2)) * 0.05}
		f.op("link delay %v jitter %v loss %.0f%% duplicate %.0f%%", l.Delay, l.Jitter, l.Loss*100, l.Duplicate*100)
		f.c.Net().SetDefaultLink(l)
	default:
		d := time.Duration(20+f.rng.Intn(400)) * time.Millisecond
		f.op("wait %v", d)
		time.Sleep(d)
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (f *faultRun) data() []byte {
	sizes := []int{10, 200, 700, 3000}
	b := make([]byte, sizes[f.rng.Intn(len(sizes))]+f.rng.Intn(50))
	f.rng.Read(b)
	return b
}

func (f *faultRun) write(i int) {
	data := f.data()
	switch x := f.rng.Intn(10); {
	case x < 6:
		f.writeKey(i, f.c.Root(), "root", fmt.Sprintf("/f/%d", f.rng.Intn(6)), data)
	case x < 9:
		f.writeKey(i, f.key2, "k2", fmt.Sprintf("/k2/%d", f.rng.Intn(4)), data)
	default:
		// Keys without authority there: refused at the writer.
		if f.rng.Intn(2) == 0 {
			f.writeKey(i, f.key2, "k2", fmt.Sprintf("/f/%d", f.rng.Intn(6)), data)
		} else {
			f.writeKey(i, f.key3, "stranger", "/k2/x", data)
		}
	}
}

func (f *faultRun) writeKey(i int, key ed25519.PrivateKey, who, path string, data []byte) {
	w, err := f.c.Write(i, key, path, data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rep.Writes++
	switch {
	case err == nil:
		f.rep.Acked++
		f.acked = append(f.acked, w.Entry)
		f.rep.Ops = append(f.rep.Ops, fmt.Sprintf("write n%d %s %s %d B -> %.8s", i, who, path, len(data), w.Entry))
	case replica.IsKind(err, replica.Permission):
		f.rep.Refused++
		f.rep.Ops = append(f.rep.Ops, fmt.Sprintf("write n%d %s %s refused (%v)", i, who, path, err))
	default:
		f.rep.Ops = append(f.rep.Ops, fmt.Sprintf("write n%d %s %s failed: %v", i, who, path, err))
	}
}

func (f *faultRun) crash(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rep.Ops = append(f.rep.Ops, fmt.Sprintf("crash n%d", i))
	f.sampleLocked(i)
	if err := f.c.Crash(i); err != nil {
		f.rep.Ops = append(f.rep.Ops, fmt.Sprintf("crash n%d: stop: %v", i, err))
	}
	f.down[i] = true
}

func (f *faultRun) restart(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rep.Ops = append(f.rep.Ops, fmt.Sprintf("restart n%d", i))
	if err := f.c.Restart(i); err != nil {
		f.rep.Violations = append(f.rep.Violations, fmt.Sprintf("restart n%d: %v", i, err))
		return
	}
	f.down[i] = false
	f.sampleLocked(i)
}

// allHeld reports whether every running node holds every acknowledged
// entry and all hold equally many entries.
func (f *faultRun) allHeld() bool {
	f.mu.Lock()
	acked := append([]log.Hash(nil), f.acked...)
	f.mu.Unlock()
	count := -1
	for _, i := range f.c.Live() {
		n := f.c.Node(i)
		if n == nil {
			return false
		}
		r := n.Replica()
		for _, h := range acked {
			if !r.HasEntry(h) {
				return false
			}
		}
		if k := r.NumEntries(); count >= 0 && k != count {
			return false
		} else {
			count = k
		}
	}
	return true
}

func (f *faultRun) sampleAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.down {
		if !f.down[i] {
			f.sampleLocked(i)
		}
	}
}

// sampleLocked checks that node i still holds every entry it was ever seen
// to hold, and records what it holds now.
func (f *faultRun) sampleLocked(i int) {
	n := f.c.Node(i)
	if n == nil {
		return
	}
	r := n.Replica()
	now := map[log.Hash]bool{}
	r.ScanEntries(0, func(e *log.Entry) bool { now[e.Hash()] = true; return true })
	f.rep.Samples++
	var gone []string
	for h := range f.seen[i] {
		if !now[h] {
			gone = append(gone, fmt.Sprintf("%.8s", h))
		}
	}
	if len(gone) > 0 {
		sort.Strings(gone)
		f.rep.Violations = append(f.rep.Violations, fmt.Sprintf("node %d went backwards: %d entries it held are gone (%s)", i, len(gone), strings.Join(gone, ",")))
	}
	for h := range now {
		f.seen[i][h] = true
	}
}

// FaultsSpec runs many seeds.
type FaultsSpec struct {
	Seeds     int   // how many seeds (default 500)
	FirstSeed int64 // seeds FirstSeed … FirstSeed+Seeds-1
	Nodes     int
	Steps     int
	Parallel  int // schedules at once (default 4)
	// Budget, if set, stops starting new seeds once it has passed.
	Budget  time.Duration
	Dir     string
	Command string
	Logf    func(format string, args ...any)
}

// FaultsResult is the outcome of many schedules.
type FaultsResult struct {
	Spec    FaultsSpec
	Machine Machine
	Reports []*FaultReport // in seed order
	Errors  []string       // setups that failed (not invariant violations)
}

// RunFaultSeeds runs spec.Seeds schedules, spec.Parallel at a time.
func RunFaultSeeds(ctx context.Context, spec FaultsSpec) *FaultsResult {
	if spec.Seeds <= 0 {
		spec.Seeds = 500
	}
	if spec.Parallel <= 0 {
		spec.Parallel = 4
	}
	res := &FaultsResult{Spec: spec, Machine: NewMachine()}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, spec.Parallel)
	for k := 0; k < spec.Seeds; k++ {
		if ctx.Err() != nil || (spec.Budget > 0 && time.Since(start) > spec.Budget) {
			break
		}
		seed := spec.FirstSeed + int64(k)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := RunFaults(ctx, FaultConfig{Seed: seed, Nodes: spec.Nodes, Steps: spec.Steps, Dir: spec.Dir})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
				if spec.Logf != nil {
					spec.Logf("seed %d: setup failed: %v", seed, err)
				}
				return
			}
			res.Reports = append(res.Reports, r)
			if spec.Logf != nil {
				status := "ok"
				if !r.OK() {
					status = fmt.Sprintf("FAILED: %s; replay: %s", strings.Join(r.Violations, "; "), ReplayCommand(seed))
				}
				spec.Logf("seed %d: %d ops, %d/%d writes acked, converged in %.1f s: %s", seed, len(r.Ops), r.Acked, r.Writes, r.Converge.Seconds(), status)
			}
		}()
	}
	wg.Wait()
	sort.Slice(res.Reports, func(i, j int) bool { return res.Reports[i].Seed < res.Reports[j].Seed })
	res.Machine.Done()
	return res
}

// Report renders the markdown report of many schedules.
func (r *FaultsResult) Report() string {
	var b strings.Builder
	b.WriteString("# Fault schedules\n\n")
	fmt.Fprintf(&b, "Command:\n\n```sh\n%s\n```\n\n", r.Spec.Command)
	b.WriteString(r.Machine.Markdown())
	nodes, steps := r.Spec.Nodes, r.Spec.Steps
	if nodes < 2 {
		nodes = 5
	}
	if steps <= 0 {
		steps = 40
	}
	fmt.Fprintf(&b, "- seeds %d … %d, %d nodes, %d operations per schedule, %d schedules at once\n\n",
		r.Spec.FirstSeed, r.Spec.FirstSeed+int64(r.Spec.Seeds)-1, nodes, steps, r.Spec.Parallel)
	b.WriteString("Each schedule (a seed) builds a simulated cluster (links 2 ms ± 1 ms; gossip every 50 ms, probes every 200 ms; sync every 300 ms), " +
		"grants a second key /k2, then runs random operations: writes by the root key and the second key (some to the same paths from several nodes at once, " +
		"some that the key may not make and are refused), partitions into two random groups, heals, crashes (host down, node stopped without leaving), " +
		"restarts on the same store, link changes (delay up to 30 ms, jitter, 0–30 % loss, duplication) and waits. Then every fault is undone and, once the cluster " +
		"has converged (equal view hashes, no missing block, every acknowledged entry everywhere, equal entry counts; bounded at 60 s), the invariants are checked: " +
		"(1) equal view hashes; (2) no acknowledged write lost; (3) no node's stored-entry set ever shrank (sampled every 100 ms and at each crash and restart); " +
		"(4) `Verify` OK on every node.\n\n")
	var conv durations
	violations, ops, writes, acked, refused, samples := 0, 0, 0, 0, 0, 0
	for _, rep := range r.Reports {
		conv = append(conv, rep.Converge.Seconds())
		if !rep.OK() {
			violations++
		}
		ops += len(rep.Ops)
		writes += rep.Writes
		acked += rep.Acked
		refused += rep.Refused
		samples += rep.Samples
	}
	b.WriteString("## Results\n\n| measure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| schedules run | %d |\n| schedules with an invariant violation | **%d** |\n| setups that failed | %d |\n", len(r.Reports), violations, len(r.Errors))
	fmt.Fprintf(&b, "| operations | %d |\n| writes attempted / acknowledged / refused | %d / %d / %d |\n| monotonicity samples | %d |\n", ops, writes, acked, refused, samples)
	fmt.Fprintf(&b, "| convergence after the faults were undone: median / p90 / max | %s / %s / %s |\n\n", fmtSec(conv.median()), fmtSec(conv.quantile(0.9)), fmtSec(conv.max()))
	if violations > 0 {
		b.WriteString("## Violations\n\n")
		for _, rep := range r.Reports {
			if !rep.OK() {
				fmt.Fprintf(&b, "- seed %d: %s — replay: `%s`\n", rep.Seed, strings.Join(rep.Violations, "; "), ReplayCommand(rep.Seed))
			}
		}
		b.WriteString("\n")
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "- setup failed: %s\n", e)
	}
	b.WriteString("\nA failing seed replays its fault pattern (not the exact goroutine interleaving) with the command printed beside it.\n\n")
	b.WriteString("## Simulated and real time\n\n" + simTimeNote + "\n")
	return b.String()
}

// Write writes data.csv, plot.svg (a histogram of convergence times) and
// report.md into dir.
func (r *FaultsResult) Write(dir string) error {
	header := []string{"seed", "ops", "writes", "acked", "refused", "samples", "violations", "converge_s", "duration_s"}
	var rows [][]string
	bounds := []float64{0.5, 1, 2, 5, 10, 30, 60}
	labels := []string{"≤0.5", "≤1", "≤2", "≤5", "≤10", "≤30", "≤60", ">60"}
	hist := make([]float64, len(labels))
	for _, rep := range r.Reports {
		rows = append(rows, []string{fmt.Sprint(rep.Seed), fmt.Sprint(len(rep.Ops)), fmt.Sprint(rep.Writes), fmt.Sprint(rep.Acked),
			fmt.Sprint(rep.Refused), fmt.Sprint(rep.Samples), fmt.Sprint(len(rep.Violations)),
			ff(rep.Converge.Seconds()), ff(rep.Duration.Seconds())})
		k := len(bounds)
		for j, bd := range bounds {
			if rep.Converge.Seconds() <= bd {
				k = j
				break
			}
		}
		hist[k]++
	}
	plot := Plot{Title: fmt.Sprintf("Fault schedules: convergence once faults are undone (%d seeds)", len(r.Reports)),
		XLabel: "seconds to converge", YLabel: "schedules", X: labels, Series: []Series{{Name: "schedules", Y: hist}}}
	return writeOutputs(dir, header, rows, plot, r.Report())
}
