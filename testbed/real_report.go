package testbed

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/basefs/basefs/testbed/simnet"
)

// CompareResult sets real processes beside the simulation in one
// configuration: the check of the simulation's faithfulness.
type CompareResult struct {
	Spec    RealSpec
	Command string
	Machine Machine
	Real    []RealTrial
	Sim     *ConvergenceResult
}

// RunCompare runs spec on real processes, then the same configuration
// (nodes, objects, size, loss, sync interval, trials, seed) in the
// simulation, on links of 50 µs ± 20 µs (about what loopback and veth
// pairs add).
func RunCompare(ctx context.Context, spec RealSpec, command string) (*CompareResult, error) {
	spec.defaults()
	res := &CompareResult{Spec: spec, Command: command, Machine: NewMachine()}
	defer res.Machine.Done()
	real, err := RunReal(ctx, spec)
	res.Real = real
	if err != nil {
		return res, err
	}
	sim, err := RunConvergence(ctx, ConvergenceSpec{Vary: "loss", Values: []string{ff(spec.Loss)}, Nodes: spec.Nodes,
		Objects: spec.Objects, Size: spec.Size, Trials: spec.Trials, Seed: spec.Seed, SyncInterval: spec.SyncInterval,
		Link:    simnet.Link{Delay: 50 * time.Microsecond, Jitter: 20 * time.Microsecond},
		Timeout: spec.Timeout, Command: command, Logf: spec.Logf})
	res.Sim = sim
	return res, err
}

// Write writes data.csv, plot.svg and report.md into dir.
func (r *CompareResult) Write(dir string) error {
	header := []string{"where", "trial", "nodes", "objects", "loss_pct", "converged", "seconds", "write_s", "poll_round_s"}
	var rows [][]string
	var real, sim durations
	plot := Plot{Title: fmt.Sprintf("Real processes vs simulation: %d nodes, %d objects, %g%% loss", r.Spec.Nodes, r.Spec.Objects, r.Spec.Loss),
		XLabel: "trial", YLabel: "seconds to the last node"}
	var ry, sy []float64
	for _, t := range r.Real {
		rows = append(rows, []string{"real", strconv.Itoa(t.Trial), strconv.Itoa(r.Spec.Nodes), strconv.Itoa(r.Spec.Objects), ff(r.Spec.Loss),
			strconv.FormatBool(t.Converged), ff(t.Seconds), ff(t.WriteSec), ff(t.PollSec)})
		v := t.Seconds
		if !t.Converged {
			v = math.Inf(1)
		}
		real = append(real, v)
		ry = append(ry, v)
	}
	if r.Sim != nil {
		for _, t := range r.Sim.Trials {
			if t.Kind != "basefs" {
				continue
			}
			rows = append(rows, []string{"simulated", strconv.Itoa(t.Trial), strconv.Itoa(r.Spec.Nodes), strconv.Itoa(r.Spec.Objects), ff(r.Spec.Loss),
				strconv.FormatBool(t.Converged), ff(t.Seconds), ff(t.WriteSec), "0"})
			v := t.Seconds
			if !t.Converged {
				v = math.Inf(1)
			}
			sim = append(sim, v)
			sy = append(sy, v)
		}
	}
	for i := 0; i < max(len(ry), len(sy)); i++ {
		plot.X = append(plot.X, strconv.Itoa(i))
	}
	pad := func(y []float64) []float64 {
		for len(y) < len(plot.X) {
			y = append(y, math.NaN())
		}
		return y
	}
	plot.Series = []Series{{Name: "real processes", Y: pad(ry)}, {Name: "simulation", Y: pad(sy), Dashed: true}}

	var b strings.Builder
	b.WriteString("# Real processes beside the simulation\n\n")
	fmt.Fprintf(&b, "Command:\n\n```sh\n%s\n```\n\n", r.Command)
	b.WriteString(r.Machine.Markdown())
	where := "on loopback (127.0.77.x)"
	if r.Spec.Netns {
		where = "each in its own network namespace (veth pairs to a bridge in a hub namespace, 10.77.0.x), nftables dropping " + ff(r.Spec.Loss) + " % of the packets each node receives"
	}
	fmt.Fprintf(&b, "- %d `basefs run` processes %s; sync every %v; %d trials of %d objects of %d bytes written with `basefs write`, the writers taking turns (node 1, 2, …; each non-root node holds a grant over the objects' directory); seed %d\n",
		r.Spec.Nodes, where, r.Spec.SyncInterval, r.Spec.Trials, r.Spec.Objects, r.Spec.Size, r.Spec.Seed)
	b.WriteString("- real: convergence is observed by polling every node's `basefs status --json` (its view hash equals the writer's, no missing block), " +
		"so real times are late by up to one polling round (median round given below); simulation: the in-process testbed with the same parameters on links of 50 µs ± 20 µs, " +
		"arrival instants recorded exactly\n\n")
	b.WriteString("| | median | max | converged | note |\n|---|---|---|---|---|\n")
	var polls durations
	for _, t := range r.Real {
		polls = append(polls, t.PollSec)
	}
	fmt.Fprintf(&b, "| real processes | %s | %s | %d/%d | status polling round median %.0f ms |\n", fmtSec(real.median()), fmtSec(real.max()), countFinite(real), len(real), polls.median()*1000)
	if r.Sim != nil && len(r.Sim.Points) > 0 {
		p := r.Sim.Points[0]
		fmt.Fprintf(&b, "| simulation | %s | %s | %d/%d | bare Serf floor median %s; max lag %.0f ms |\n", fmtSec(sim.median()), fmtSec(sim.max()), countFinite(sim), len(sim), fmtSec(p.SerfMedian), p.MaxLagMS)
	}
	fmt.Fprintf(&b, "\nratio real / simulated: median %s, max %s\n", fmtRatio(real.median(), sim.median()), fmtRatio(real.max(), sim.max()))
	b.WriteString("\n## Simulated and real time\n\n" + simTimeNote + "\n")
	return writeOutputs(dir, header, rows, plot, b.String())
}

func countFinite(d durations) int {
	k := 0
	for _, v := range d {
		if !math.IsInf(v, 0) && !math.IsNaN(v) {
			k++
		}
	}
	return k
}
