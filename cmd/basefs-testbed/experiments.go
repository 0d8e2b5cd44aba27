package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/testbed"
	"github.com/basefs/basefs/testbed/simnet"
)

// testbedFlags are the flags of basefs-testbed; each experiment reads the
// ones it needs.
var testbedFlags = []flagSpec{
	{name: "vary", value: true, valueFor: "PARAM", help: "convergence: objects, delay, loss, bandwidth, sync or nodes"},
	{name: "values", value: true, valueFor: "V,V,...", help: "convergence: the values of --vary"},
	{name: "nodes", value: true, valueFor: "N", help: "nodes (convergence, traffic 30; faults, real 5)"},
	{name: "objects", value: true, valueFor: "K", help: "objects written at once per trial (convergence 1, real 16)"},
	{name: "size", value: true, valueFor: "BYTES", help: "bytes per object (default 512)"},
	{name: "trials", value: true, valueFor: "N", help: "trials per value (default 5)"},
	{name: "seed", value: true, valueFor: "N", help: "seed (faults: the first seed; default 1)"},
	{name: "seeds", value: true, valueFor: "N", help: "faults: how many seeds (default 500)"},
	{name: "steps", value: true, valueFor: "N", help: "faults: operations per schedule (default 40)"},
	{name: "parallel", value: true, valueFor: "N", help: "faults: schedules at once (default 4)"},
	{name: "delay", value: true, valueFor: "DURATION", help: "one-way link delay (default 1ms)"},
	{name: "jitter", value: true, valueFor: "DURATION", help: "link jitter (default delay/2)"},
	{name: "loss", value: true, valueFor: "PERCENT", help: "packet loss in percent (default 0)"},
	{name: "bandwidth", value: true, valueFor: "BIT/S", help: "uplink bandwidth per node: 8k, 1M, unlimited (default)"},
	{name: "sync", value: true, valueFor: "DURATION", help: "anti-entropy interval (default 5s)"},
	{name: "intervals", value: true, valueFor: "D,D,...", help: "traffic: the sync intervals (default 1s,2s,5s,10s,20s,40s)"},
	{name: "window", value: true, valueFor: "DURATION", help: "traffic: measuring window per phase (default max(60s, 3 intervals))"},
	{name: "profile", value: true, valueFor: "lan|wan|local", help: "gossip profile (default lan)"},
	{name: "gossip-interval", value: true, valueFor: "DURATION", help: "override memberlist's gossip interval"},
	{name: "probe-interval", value: true, valueFor: "DURATION", help: "override memberlist's probe interval"},
	{name: "pushpull-interval", value: true, valueFor: "DURATION", help: "override memberlist's push/pull interval"},
	{name: "event-buffer", value: true, valueFor: "N", help: "override Serf's user-event buffer (default 512)"},
	{name: "retransmit-mult", value: true, valueFor: "N", help: "override the gossip retransmit multiplier (default 6)"},
	{name: "timeout", value: true, valueFor: "DURATION", help: "per-trial bound (default 120s)"},
	{name: "no-floor", help: "convergence: do not send the bare Serf events"},
	{name: "netns", help: "real: run each node in its own network namespace (root, ip, nft)"},
	{name: "binary", value: true, valueFor: "PATH", help: "real: the basefs binary (default: beside this one, else on PATH)"},
	{name: "out", value: true, valueFor: "DIR", help: "where data.csv, plot.svg and report.md go"},
	{name: "quick", help: "all: a scale that finishes well within an hour"},
	{name: "verbose", short: "v", help: "print progress"},
	{name: "cpuprofile", value: true, valueFor: "FILE", help: "write a CPU profile of the run (go tool pprof)"},
}

// cmdTestbed runs an experiment of package testbed and writes its results.
func cmdTestbed(env *cliEnv, p *parsed) error {
	if len(p.args) != 1 {
		return usagef("testbed: give one experiment: convergence, traffic, faults, real, all or summary")
	}
	ctx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(env.stderr, "basefs-testbed: %v: stopping\n", s)
			cancelRun()
		case <-ctx.Done():
		}
	}()
	if env.stopped != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-env.stopped:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	if f := p.get("cpuprofile"); f != "" {
		pf, err := os.Create(f)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	// Hundreds of simulated nodes allocate fast; trading memory for less
	// garbage collection keeps the simulation on time, within a bound that
	// leaves the machine usable (the collector works harder near it).
	debug.SetGCPercent(200)
	debug.SetMemoryLimit(8 << 30)
	line := "basefs-testbed " + strings.Join(p.raw(), " ")
	_, err := runTestbed(ctx, env, p, line)
	return err
}

// testbedResult is what one experiment produced.
type testbedResult struct {
	name string
	dir  string
	line string
	conv *testbed.ConvergenceResult
	traf *testbed.TrafficResult
	flt  *testbed.FaultsResult
	cmp  *testbed.CompareResult
}

func runTestbed(ctx context.Context, env *cliEnv, p *parsed, line string) (*testbedResult, error) {
	logf := func(format string, args ...any) {}
	if p.has("verbose") {
		logf = func(format string, args ...any) {
			fmt.Fprintf(env.stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
		}
	}
	intFlag := func(name string, def int) (int, error) {
		s := p.get(name)
		if s == "" {
			return def, nil
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return 0, usagef("--%s %q: want a whole number", name, s)
		}
		return v, nil
	}
	durFlag := func(name string, def time.Duration) (time.Duration, error) {
		s := p.get(name)
		if s == "" {
			return def, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, usagef("--%s %q: want a duration like 500ms", name, s)
		}
		return d, nil
	}
	var errs []error
	geti := func(name string, def int) int {
		v, err := intFlag(name, def)
		errs = append(errs, err)
		return v
	}
	getd := func(name string, def time.Duration) time.Duration {
		v, err := durFlag(name, def)
		errs = append(errs, err)
		return v
	}
	nodesDef := 30
	if p.args[0] == "faults" || p.args[0] == "real" {
		nodesDef = 5
	}
	nodes, trials, size := geti("nodes", nodesDef), geti("trials", 5), geti("size", 512)
	seed := int64(geti("seed", 1))
	delay := getd("delay", time.Millisecond)
	jitter := getd("jitter", delay/2)
	sync, timeout := getd("sync", 0), getd("timeout", 120*time.Second)
	tuning := gossip.Tuning{GossipInterval: getd("gossip-interval", 0), ProbeInterval: getd("probe-interval", 0),
		PushPullInterval: getd("pushpull-interval", 0), EventBuffer: geti("event-buffer", 0), RetransmitMult: geti("retransmit-mult", 0)}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	loss := 0.0
	if s := p.get("loss"); s != "" {
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || v < 0 || v > 100 {
			return nil, usagef("--loss %q: want a percentage", s)
		}
		loss = v
	}
	var bw int64
	if s := p.get("bandwidth"); s != "" {
		v, err := testbed.ParseBandwidth(s)
		if err != nil {
			return nil, usagef("--bandwidth: %v", err)
		}
		bw = v
	}
	link := simnet.Link{Delay: delay, Jitter: jitter, Loss: loss / 100, Bandwidth: bw}
	out := p.get("out")
	if out == "" && p.args[0] != "all" && p.args[0] != "summary" {
		out = filepath.Join("testbed", "results", p.args[0])
	}
	res := &testbedResult{name: p.args[0], dir: out, line: line}
	say := func(format string, args ...any) { fmt.Fprintf(env.stdout, format+"\n", args...) }
	switch p.args[0] {
	case "convergence":
		if p.get("vary") == "" || p.get("values") == "" {
			return nil, usagef("testbed convergence: give --vary PARAM and --values V,V,...")
		}
		if p.get("out") == "" {
			out = filepath.Join("testbed", "results", p.get("vary"))
			res.dir = out
		}
		spec := testbed.ConvergenceSpec{Vary: p.get("vary"), Values: strings.Split(p.get("values"), ","),
			Nodes: nodes, Objects: geti("objects", 1), Size: size, Trials: trials, Seed: seed, Link: link,
			SyncInterval: sync, Profile: p.get("profile"), Tuning: tuning, Timeout: timeout, NoFloor: p.has("no-floor"),
			Command: line, Logf: logf}
		r, err := testbed.RunConvergence(ctx, spec)
		res.conv = r
		if r != nil && len(r.Points) > 0 {
			if werr := r.Write(out); werr != nil {
				return res, werr
			}
			say("wrote %s", out)
		}
		return res, err
	case "traffic":
		var ivs []time.Duration
		for _, s := range strings.Split(p.get("intervals"), ",") {
			if s == "" {
				continue
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return nil, usagef("--intervals: %q is not a duration", s)
			}
			ivs = append(ivs, d)
		}
		if len(ivs) == 0 {
			ivs = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second}
		}
		window, err := durFlag("window", 0)
		if err != nil {
			return nil, err
		}
		r, err := testbed.RunTraffic(ctx, testbed.TrafficSpec{Intervals: ivs, Nodes: nodes, Window: window, Size: size, Seed: seed,
			Link: link, Profile: p.get("profile"), Tuning: tuning, Command: line, Logf: logf})
		res.traf = r
		if r != nil && len(r.Points) > 0 {
			if werr := r.Write(out); werr != nil {
				return res, werr
			}
			say("wrote %s", out)
		}
		return res, err
	case "faults":
		seeds, steps, par := geti("seeds", 500), geti("steps", 40), geti("parallel", 4)
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		r := testbed.RunFaultSeeds(ctx, testbed.FaultsSpec{Seeds: seeds, FirstSeed: seed, Nodes: nodes, Steps: steps,
			Parallel: par, Command: line, Logf: logf})
		res.flt = r
		if err := r.Write(out); err != nil {
			return res, err
		}
		bad := 0
		for _, rep := range r.Reports {
			if !rep.OK() {
				bad++
				say("seed %d: %s\nseed %d; replay: %s", rep.Seed, strings.Join(rep.Violations, "; "), rep.Seed, testbed.ReplayCommand(rep.Seed))
			}
		}
		say("%d schedules, %d with invariant violations, %d setups failed; wrote %s", len(r.Reports), bad, len(r.Errors), out)
		if bad > 0 {
			return res, fmt.Errorf("testbed faults: %d of %d schedules violated an invariant", bad, len(r.Reports))
		}
		return res, ctx.Err()
	case "real":
		bin, err := basefsBinary(p.get("binary"))
		if err != nil {
			return nil, err
		}
		r, err := testbed.RunCompare(ctx, testbed.RealSpec{Binary: bin, Nodes: nodes, Objects: geti("objects", 16), Size: size,
			Trials: trials, Loss: loss, Netns: p.has("netns"), SyncInterval: sync, Seed: seed, Timeout: timeout, Logf: logf}, line)
		res.cmp = r
		if r != nil && len(r.Real) > 0 {
			if werr := r.Write(out); werr != nil {
				return res, werr
			}
			say("wrote %s", out)
		}
		return res, err
	case "summary":
		if p.get("out") == "" {
			out = filepath.Join("testbed", "results")
		}
		if err := testbed.WriteSummary(out); err != nil {
			return nil, err
		}
		say("wrote %s", filepath.Join(out, "README.md"))
		return nil, nil
	case "all":
		if out == "" {
			out = filepath.Join("testbed", "results")
		}
		return nil, runTestbedAll(ctx, env, out, p.has("quick"), p.has("verbose"))
	}
	return nil, usagef("testbed: unknown experiment %q (convergence, traffic, faults, real, all, summary)", p.args[0])
}

// testbedPlan is the list of experiments `all` runs, as command lines:
// the full-scale list produced the committed results (about two hours on
// two cores); quick finishes well within an hour.
func testbedPlan(out string, quick bool) [][]string {
	o := func(name string) string { return filepath.Join(out, name) }
	if quick {
		return [][]string{
			{"convergence", "--vary", "objects", "--values", "1,16,256", "--trials", "3", "--out", o("objects")},
			{"convergence", "--vary", "loss", "--values", "0,30,50,90", "--objects", "16", "--trials", "3", "--timeout", "60s", "--out", o("loss")},
			{"convergence", "--vary", "bandwidth", "--values", "8k,32k,unlimited", "--objects", "16", "--trials", "3", "--out", o("bandwidth")},
			{"convergence", "--vary", "delay", "--values", "0,80,1280", "--objects", "16", "--trials", "2", "--out", o("delay")},
			{"convergence", "--vary", "sync", "--values", "1s,20s", "--objects", "16", "--loss", "50", "--trials", "2", "--out", o("sync")},
			{"convergence", "--vary", "nodes", "--values", "10,30,100", "--trials", "2", "--out", o("nodes")},
			{"convergence", "--vary", "nodes", "--values", "1000", "--trials", "1", "--sync", "30s", "--gossip-interval", "500ms", "--probe-interval", "5s", "--retransmit-mult", "2", "--timeout", "180s", "--out", o("nodes1000")},
			{"traffic", "--intervals", "1s,20s", "--window", "30s", "--out", o("traffic")},
			{"faults", "--seeds", "300", "--parallel", "8", "--out", o("faults")},
			{"real", "--objects", "16", "--loss", "10", "--netns", "--trials", "3", "--out", o("real")},
		}
	}
	return [][]string{
		{"convergence", "--vary", "objects", "--values", "1,4,16,64,256", "--trials", "10", "--out", o("objects")},
		{"convergence", "--vary", "loss", "--values", "0,10,30,50,70,90", "--objects", "16", "--trials", "5", "--timeout", "90s", "--out", o("loss")},
		{"convergence", "--vary", "bandwidth", "--values", "8k,32k,128k,1M,unlimited", "--objects", "16", "--trials", "3", "--timeout", "60s", "--out", o("bandwidth")},
		{"convergence", "--vary", "bandwidth", "--values", "32k,128k", "--objects", "16", "--trials", "3", "--timeout", "60s", "--retransmit-mult", "2", "--event-buffer", "64", "--out", o("bandwidth-tuned")},
		{"faults", "--seeds", "500", "--parallel", "10", "--out", o("faults")},
		{"convergence", "--vary", "delay", "--values", "0,10,40,160,640,1280", "--objects", "16", "--trials", "3", "--out", o("delay")},
		{"convergence", "--vary", "sync", "--values", "1s,5s,20s,40s", "--objects", "16", "--loss", "50", "--trials", "3", "--timeout", "120s", "--out", o("sync")},
		{"convergence", "--vary", "nodes", "--values", "10,30,100,200", "--trials", "3", "--out", o("nodes")},
		{"traffic", "--intervals", "1s,5s,20s", "--window", "60s", "--out", o("traffic")},
		{"real", "--objects", "16", "--loss", "10", "--netns", "--trials", "5", "--out", o("real")},
		{"convergence", "--vary", "nodes", "--values", "1000", "--trials", "2", "--sync", "30s", "--gossip-interval", "500ms", "--probe-interval", "5s", "--retransmit-mult", "2", "--timeout", "180s", "--out", o("nodes1000")},
	}
}

// runTestbedAll runs the plan and writes out/README.md with the targets.
// An experiment that fails is reported and the others still run.
func runTestbedAll(ctx context.Context, env *cliEnv, out string, quick, verbose bool) error {
	var failed []string
	for _, args := range testbedPlan(out, quick) {
		if args[0] == "real" && testbed.NetnsAvailable() != nil {
			args = withoutNetns(args)
		}
		if verbose {
			args = append(args, "-v")
		}
		p, err := parseArgs(args)
		if err != nil {
			return err
		}
		line := "basefs-testbed " + strings.Join(args, " ")
		fmt.Fprintf(env.stdout, "== %s\n", line)
		if _, err := runTestbed(ctx, env, p, line); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", line, err))
			fmt.Fprintf(env.stderr, "basefs-testbed: %s: %v\n", line, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := testbed.WriteSummary(out); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "wrote %s\n", filepath.Join(out, "README.md"))
	if len(failed) > 0 {
		return fmt.Errorf("testbed all: %d experiments failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return ctx.Err()
}

// withoutNetns drops --netns and --loss (loss needs namespaces).
func withoutNetns(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--netns":
			continue
		case "--loss":
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
