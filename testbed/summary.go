package testbed

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// table is a CSV file read back: rows as maps from column to value.
type table []map[string]string

func readTable(path string) (table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	var t table
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			if i < len(r) {
				m[h] = r[i]
			}
		}
		t = append(t, m)
	}
	return t, nil
}

// times collects the "seconds" column of the rows matching all of match,
// +Inf for a trial that did not converge.
func (t table) times(match map[string]string) durations {
	var out durations
rows:
	for _, r := range t {
		for k, v := range match {
			if r[k] != v {
				continue rows
			}
		}
		s, _ := strconv.ParseFloat(r["seconds"], 64)
		if r["converged"] != "true" {
			s = math.Inf(1)
		}
		out = append(out, s)
	}
	return out
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// commandOf returns the command recorded in dir/report.md.
func commandOf(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.Index(s, "```sh\n")
	if i < 0 {
		return ""
	}
	s = s[i+6:]
	if j := strings.Index(s, "\n```"); j >= 0 {
		return strings.TrimSpace(s[:j])
	}
	return ""
}

// Summarize reads the experiments' data.csv files under dir (objects, loss,
// bandwidth, nodes1000, faults, real, traffic, … — whatever is there) and
// renders the overview: the targets with our measured values, a
// table of every experiment with its command, and the original's figures.
func Summarize(dir string) string {
	var b strings.Builder
	b.WriteString("# testbed results\n\n")
	b.WriteString("Every directory here holds `data.csv` (one row per trial), `plot.svg` and `report.md` (the exact command, the machine and its load, " +
		"the parameters, medians and maxima, the bare Serf floor measured in the same run, the original BaseFS's figures beside ours, and how simulated " +
		"time relates to real time). Regenerate them with the commands below, from the repository root, with a built `bin/basefs` " +
		"(`go build -o bin/ ./cmd/basefs ./cmd/basefs-testbed`); `bin/basefs-testbed all --quick` reruns everything at a scale that finishes well within an hour, " +
		"`bin/basefs-testbed summary` rewrites this page from the CSV files.\n\n")
	b.WriteString("Simulated time is real time: the simulated network delivers at wall-clock instants and the nodes use their ordinary clocks, " +
		"so a simulated second is a second; each report gives simnet's worst scheduling lag and the CPU used, which say whether the machine kept up.\n\n")
	b.WriteString("## Targets\n\n| target | goal | measured | verdict |\n|---|---|---|---|\n")
	if t, err := readTable(filepath.Join(dir, "objects", "data.csv")); err == nil {
		ours := t.times(map[string]string{"value": "1", "kind": "basefs"})
		serf := t.times(map[string]string{"value": "1", "kind": "serf"})
		rm, rx := ours.median()/serf.median(), ours.max()/serf.max()
		fmt.Fprintf(&b, "| 30 nodes, one-object write vs the bare Serf event in the same run | p50 and max ≤ 1.3 × Serf | p50 %s vs %s (**%.2f×**), max %s vs %s (**%.2f×**), %d trials | %s |\n",
			fmtSec(ours.median()), fmtSec(serf.median()), rm, fmtSec(ours.max()), fmtSec(serf.max()), rx, len(ours), verdict(rm <= 1.3 && rx <= 1.3))
	}
	if t, err := readTable(filepath.Join(dir, "loss", "data.csv")); err == nil {
		ours := t.times(map[string]string{"value": "50", "kind": "basefs"})
		all := countFinite(ours) == len(ours) && len(ours) > 0
		fmt.Fprintf(&b, "| 30 nodes, 50 %% loss, 16-object write | all converge, median ≤ 30 s (original: 390–730 s median, worst 5 531 s) | %d/%d converged, median **%s**, max %s | %s |\n",
			countFinite(ours), len(ours), fmtSec(ours.median()), fmtSec(ours.max()), verdict(all && ours.median() <= 30))
	}
	if t, err := readTable(filepath.Join(dir, "bandwidth", "data.csv")); err == nil {
		ours := t.times(map[string]string{"value": "32k", "kind": "basefs"})
		tuned := ""
		if tt, err := readTable(filepath.Join(dir, "bandwidth-tuned", "data.csv")); err == nil {
			if tu := tt.times(map[string]string{"value": "32k", "kind": "basefs"}); len(tu) > 0 {
				tuned = fmt.Sprintf("; with the slow-link settings of [bandwidth-tuned](bandwidth-tuned/report.md): %d/%d, median %s", countFinite(tu), len(tu), fmtSec(tu.median()))
			}
		}
		fmt.Fprintf(&b, "| 30 nodes at 32 kbit/s, 16-object write | median ≤ 15 s (original: 39–138 s) | %d/%d converged, median **%s**, max %s%s | %s |\n",
			countFinite(ours), len(ours), fmtSec(ours.median()), fmtSec(ours.max()), tuned, verdict(countFinite(ours) == len(ours) && len(ours) > 0 && ours.median() <= 15))
	}
	if t, err := readTable(filepath.Join(dir, "nodes1000", "data.csv")); err == nil {
		ours := t.times(map[string]string{"value": "1000", "kind": "basefs"})
		serf := t.times(map[string]string{"value": "1000", "kind": "serf"})
		all := countFinite(ours) == len(ours) && len(ours) > 0
		fmt.Fprintf(&b, "| 1 000 simulated nodes, one write | all converge; report the time | %d/%d converged, median **%s**, max %s (bare Serf: %s / %s) | %s |\n",
			countFinite(ours), len(ours), fmtSec(ours.median()), fmtSec(ours.max()), fmtSec(serf.median()), fmtSec(serf.max()), verdict(all))
	}
	if t, err := readTable(filepath.Join(dir, "faults", "data.csv")); err == nil {
		bad := 0
		for _, r := range t {
			if r["violations"] != "0" {
				bad++
			}
		}
		fmt.Fprintf(&b, "| fault schedules | 0 invariant violations over ≥ 500 seeds | **%d** violating schedules of %d | %s |\n", bad, len(t), verdict(bad == 0 && len(t) >= 500))
	}
	if t, err := readTable(filepath.Join(dir, "real", "data.csv")); err == nil {
		real := t.times(map[string]string{"where": "real"})
		sim := t.times(map[string]string{"where": "simulated"})
		loss := ""
		if len(t) > 0 {
			loss = t[0]["loss_pct"]
		}
		fmt.Fprintf(&b, "| simulation vs real processes (5 nodes, 16 objects, %s %% loss) | comparable | real median %s / max %s; simulated %s / %s | see real/report.md |\n",
			loss, fmtSec(real.median()), fmtSec(real.max()), fmtSec(sim.median()), fmtSec(sim.max()))
	}
	if t, err := readTable(filepath.Join(dir, "traffic", "data.csv")); err == nil {
		for _, r := range t {
			if r["phase"] == "idle" && (r["sync_interval_s"] == "20" || r["sync_interval_s"] == "10") {
				g, _ := strconv.ParseFloat(r["gossip_kbit_node"], 64)
				s, _ := strconv.ParseFloat(r["sync_kbit_node"], 64)
				fmt.Fprintf(&b, "| idle traffic per node at a %s s sync interval | (original: anti-entropy ≈ 2.5–2.9 kbit/s at 16–20 s) | sync **%.3f kbit/s**, gossip %.2f kbit/s | – |\n", r["sync_interval_s"], s, g)
			}
		}
	}
	b.WriteString("\n## Experiments\n\n| directory | what | command |\n|---|---|---|\n")
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		cmd := commandOf(filepath.Join(dir, n))
		if cmd == "" {
			continue
		}
		what := ""
		b2, _ := os.ReadFile(filepath.Join(dir, n, "report.md"))
		if line, _, ok := strings.Cut(string(b2), "\n"); ok {
			what = strings.TrimPrefix(line, "# ")
		}
		fmt.Fprintf(&b, "| [%s](%s/report.md) | %s | `%s` |\n", n, n, what, cmd)
	}
	b.WriteString("\n## The original BaseFS (DESIGN §2)\n\n")
	b.WriteString("| measure | original BaseFS (30 nodes in Docker on one laptop, Serf WAN profile) |\n|---|---|\n" +
		"| gossip only, 1-object write, median / max convergence | 0.7 s / 1.1 s |\n" +
		"| gossip only, 16 / 64 / 256 objects, max | 6.6 s / 26 s / 81 s |\n" +
		"| full system, ≥16 objects (sync-dependent), median | 19–48 s |\n" +
		"| 50 % packet loss, ≥16 objects, median / worst | 390–730 s / 5531 s |\n" +
		"| 32 kbit/s links, ≥16 objects, median | 39–138 s |\n" +
		"| anti-entropy traffic per node at a 16–20 s interval | ≈ 2.5–2.9 kbit/s |\n")
	return b.String()
}

// WriteSummary writes Summarize(dir) to dir/README.md.
func WriteSummary(dir string) error {
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(Summarize(dir)), 0o644)
}
