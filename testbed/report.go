package testbed

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine describes where an experiment ran.
type Machine struct {
	Cores     int
	GoVersion string
	OS        string
	LoadStart string // /proc/loadavg at the start
	LoadEnd   string
	Started   time.Time
	Finished  time.Time
}

// NewMachine records the machine and its load now.
func NewMachine() Machine {
	return Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		LoadStart: loadAvg(), Started: time.Now()}
}

// Done records the end of the run.
func (m *Machine) Done() { m.LoadEnd, m.Finished = loadAvg(), time.Now() }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// Markdown renders the machine section of a report.
func (m Machine) Markdown() string {
	return fmt.Sprintf("- machine: %d cores, %s, %s; load average (1/5/15 min) %s at the start, %s at the end\n- ran %s → %s (%s)\n",
		m.Cores, m.OS, m.GoVersion, m.LoadStart, m.LoadEnd,
		m.Started.UTC().Format("2006-01-02 15:04:05Z"), m.Finished.UTC().Format("15:04:05Z"),
		m.Finished.Sub(m.Started).Round(time.Second))
}

// writeCSV writes a header and rows to path.
func writeCSV(path string, header []string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(header)
	w.WriteAll(rows)
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeOutputs writes data.csv, plot.svg and report.md into dir.
func writeOutputs(dir string, header []string, rows [][]string, plot Plot, report string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeCSV(filepath.Join(dir, "data.csv"), header, rows); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "plot.svg"), plot.SVG(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(report), 0o644)
}

// durations summarizes measurements; +Inf stands for "did not converge".
type durations []float64

func (d durations) sorted() []float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// quantile returns the q-quantile (nearest rank; +Inf if it falls on a
// trial that did not converge; NaN when empty).
func (d durations) quantile(q float64) float64 {
	s := d.sorted()
	if len(s) == 0 {
		return math.NaN()
	}
	if q >= 1 {
		return s[len(s)-1]
	}
	if len(s)%2 == 0 && q == 0.5 {
		a, b := s[len(s)/2-1], s[len(s)/2]
		if math.IsInf(b, 1) {
			return b
		}
		return (a + b) / 2
	}
	return s[int(math.Ceil(q*float64(len(s))))-1]
}

func (d durations) median() float64 { return d.quantile(0.5) }
func (d durations) max() float64    { return d.quantile(1) }

// fmtSec formats seconds for a table.
func fmtSec(s float64) string {
	switch {
	case math.IsNaN(s):
		return "–"
	case math.IsInf(s, 1):
		return "not converged"
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}

func fmtRatio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// simTimeNote explains how simulated time relates to real time.
const simTimeNote = `Simulated time is real time. simnet schedules every packet and stream
segment on one timer heap at wall-clock instants, and the nodes run their
ordinary clocks and timers (Serf's gossip ticks, sync intervals, TCP-like
retransmission timers), so one simulated second is one second on the clock
and the times above are wall-clock times. The simulation is faithful while
the machine keeps up: simnet measures its *lag*, how late a delivery fired
after its due instant, which grows when the two cores are saturated. The
"max lag" column is the worst lateness seen during the trials; when it is
small against the delays being simulated (and against Serf's 200 ms gossip
interval) the figures are those of the modelled network. CPU is the
process's CPU time over wall time (2.0 = both cores busy).`
