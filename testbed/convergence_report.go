package testbed

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/basefs/basefs/gossip"
)

// originalFigures returns the original BaseFS's measured figures (DESIGN §2)
// that an experiment varying vary should be read beside.
func originalFigures(vary string) string {
	const head = "| measure | original BaseFS (30 nodes, Docker on one laptop, Serf WAN profile) |\n|---|---|\n"
	switch vary {
	case "objects":
		return head +
			"| gossip only, 1-object write, median / max convergence | 0.7 s / 1.1 s |\n" +
			"| gossip only, 16 / 64 / 256 objects, max | 6.6 s / 26 s / 81 s |\n" +
			"| full system, ≥16 objects (sync-dependent), median | 19–48 s |\n"
	case "loss":
		return head + "| 50 % packet loss, ≥16 objects, median / worst | 390–730 s / 5 531 s |\n"
	case "bandwidth":
		return head + "| 32 kbit/s links, ≥16 objects, median | 39–138 s |\n"
	case "sync":
		return head + "| full system, ≥16 objects (sync-dependent), median | 19–48 s |\n" +
			"| anti-entropy traffic per node at a 16–20 s interval | ≈ 2.5–2.9 kbit/s |\n"
	case "delay":
		return head + "| gossip only, 1-object write, median / max convergence (no added delay) | 0.7 s / 1.1 s |\n" +
			"| full system, ≥16 objects, median (no added delay) | 19–48 s |\n\n" +
			"The original's latency curve itself is not among DESIGN §2's figures (its plot was lost in the text extraction).\n"
	case "nodes":
		return head + "| gossip only, 1-object write, 30 nodes, median / max | 0.7 s / 1.1 s |\n\n" +
			"Bare Serf in one process on this machine (DESIGN §3), LAN profile, time to the last node: " +
			"10 nodes 248–264 ms median (≤ 460 ms max), 30 nodes 380–443 ms (≤ 711 ms), 100 nodes 574–607 ms (≤ 933 ms); " +
			"WAN profile 468–527, 876–890, 1 203–1 254 ms.\n"
	}
	return ""
}

// Report renders the markdown report.
func (r *ConvergenceResult) Report() string {
	s := r.Spec
	var b strings.Builder
	fmt.Fprintf(&b, "# Convergence vs %s\n\n", s.Vary)
	fmt.Fprintf(&b, "Command:\n\n```sh\n%s\n```\n\n", s.Command)
	b.WriteString(r.Machine.Markdown())
	profile := s.Profile
	if profile == "" {
		profile = "lan"
	}
	fmt.Fprintf(&b, "- seed %d; %d trials per value; objects of %d random bytes; per-trial timeout %v; gossip profile %s", s.Seed, s.Trials, s.Size, s.Timeout, profile)
	if t := tuningWords(s.Tuning); t != "" {
		fmt.Fprintf(&b, " with %s", t)
	}
	b.WriteString("\n\n")
	b.WriteString("## What is measured\n\n")
	b.WriteString("An object is one file of random bytes written with `WriteFile` on one node (one signed entry; a block when it is larger than 256 bytes); " +
		"k objects are k files written back to back on one node. A node has converged when its store holds every entry written and every block their contents need. " +
		"Convergence time: from the return of the first write on the writer until the last node has converged (arrival instants recorded by replica subscriptions). " +
		"Serf floor: in the same cluster, a bare Serf user event as big as the envelope carrying one object, from `SendRaw`'s return until the last node's Serf delivers it. " +
		"Trials alternate between the two at random, never both in flight; the writer is random.\n\n")
	b.WriteString("## Results\n\n")
	b.WriteString("| " + s.Vary + " | basefs median | p90 | max | converged | Serf floor median | Serf max | ratio median | ratio max | views equal after | max lag | CPU (cores) | gossip / sync kbit/s per node | cluster formed in |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Points {
		serfMed, serfMax := fmtSec(p.SerfMedian), fmtSec(p.SerfMax)
		if p.SerfLost > 0 {
			serfMax += fmt.Sprintf(" (%d lost)", p.SerfLost)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d/%d | %s | %s | %s | %s | %v | %.0f ms | %.2f | %.1f / %.1f | %.0f s |\n",
			p.Value, fmtSec(p.Median), fmtSec(p.P90), fmtSec(p.Max), p.Converged, p.Trials, serfMed, serfMax,
			fmtRatio(p.Median, p.SerfMedian), fmtRatio(p.Max, p.SerfMax), yesNo(p.ViewsEqual), p.MaxLagMS, p.CPUCores,
			p.TrafficGossipKbitNode, p.TrafficSyncKbitNode, p.FormSeconds)
	}
	b.WriteString("\nParameters per value:\n\n")
	for _, p := range r.Points {
		fmt.Fprintf(&b, "- %s: %s; envelope of one object %d B\n", p.Value, p.Params, p.EnvelopeBytes)
	}
	b.WriteString("\n## The original BaseFS beside ours\n\n")
	b.WriteString(originalFigures(s.Vary))
	b.WriteString("\n## Simulated and real time\n\n")
	b.WriteString(simTimeNote + "\n")
	return b.String()
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "NO"
}

// tuningWords lists the gossip tuning's non-zero fields.
func tuningWords(t gossip.Tuning) string {
	v := reflect.ValueOf(t)
	var out []string
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); !f.IsZero() {
			out = append(out, fmt.Sprintf("%s=%v", v.Type().Field(i).Name, f.Interface()))
		}
	}
	return strings.Join(out, ", ")
}

// CSV returns the header and rows of data.csv.
func (r *ConvergenceResult) CSV() ([]string, [][]string) {
	header := []string{"experiment", "vary", "value", "trial", "kind", "writer", "nodes", "objects", "size_bytes",
		"delay_ms", "jitter_ms", "loss_pct", "bandwidth_kbit", "sync_s", "converged", "reached", "seconds", "median_node_s",
		"write_s", "bytes", "lag_ms"}
	var rows [][]string
	s := r.Spec
	for _, t := range r.Trials {
		p, _ := s.apply(t.Value)
		sync := p.sync.Seconds()
		if p.sync == 0 {
			sync = 5
		}
		rows = append(rows, []string{s.Name, s.Vary, t.Value, strconv.Itoa(t.Trial), t.Kind, strconv.Itoa(t.Writer),
			strconv.Itoa(p.nodes), strconv.Itoa(p.objects), strconv.Itoa(s.Size),
			ff(float64(p.link.Delay) / 1e6), ff(float64(p.link.Jitter) / 1e6), ff(p.link.Loss * 100), ff(float64(p.link.Bandwidth) * 8 / 1000),
			ff(sync), strconv.FormatBool(t.Converged), strconv.Itoa(t.Reached), ff(t.Seconds), ff(t.MedianSec),
			ff(t.WriteSec), strconv.Itoa(t.Bytes), ff(t.LagMS)})
	}
	return header, rows
}

func ff(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Plot returns the plot: medians and maxima of basefs and the Serf floor.
func (r *ConvergenceResult) Plot() Plot {
	p := Plot{Title: fmt.Sprintf("Convergence vs %s (%d trials per value)", r.Spec.Vary, r.Spec.Trials),
		XLabel: xLabel(r.Spec.Vary), YLabel: "seconds to the last node"}
	var med, mx, sm, sx []float64
	lo, hi := math.Inf(1), 0.0
	for _, pt := range r.Points {
		p.X = append(p.X, pt.Value)
		med, mx, sm, sx = append(med, pt.Median), append(mx, pt.Max), append(sm, pt.SerfMedian), append(sx, pt.SerfMax)
		for _, v := range []float64{pt.Median, pt.Max, pt.SerfMedian, pt.SerfMax} {
			if v > 0 && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	p.LogY = hi > 30*lo
	p.Series = []Series{{Name: "basefs median", Y: med}, {Name: "basefs max", Y: mx, Dashed: true},
		{Name: "bare Serf median", Y: sm}, {Name: "bare Serf max", Y: sx, Dashed: true}}
	return p
}

func xLabel(vary string) string {
	switch vary {
	case "objects":
		return "objects written at once"
	case "delay":
		return "one-way delay"
	case "loss":
		return "packet loss (%)"
	case "bandwidth":
		return "uplink bandwidth (bit/s)"
	case "sync":
		return "anti-entropy interval"
	case "nodes":
		return "nodes"
	}
	return vary
}

// Write writes data.csv, plot.svg and report.md into dir.
func (r *ConvergenceResult) Write(dir string) error {
	h, rows := r.CSV()
	return writeOutputs(dir, h, rows, r.Plot(), r.Report())
}
