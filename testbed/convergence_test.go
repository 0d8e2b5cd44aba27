package testbed

import (
	"context"
	"encoding/xml"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkOutputs asserts that dir holds a CSV with rows lines of data, a
// well-formed SVG and a report mentioning want.
func checkOutputs(t *testing.T, dir string, rows int, want ...string) {
	t.Helper()
	csv, err := os.ReadFile(filepath.Join(dir, "data.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(csv), "\n"); n != rows+1 {
		t.Fatalf("data.csv has %d lines, want %d:\n%s", n, rows+1, csv)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "plot.svg"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ XMLName xml.Name }
	if err := xml.Unmarshal(svg, &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("plot.svg is not an SVG document: %v", err)
	}
	rep, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range append(want, "Simulated and real time", "machine:") {
		if !strings.Contains(string(rep), w) {
			t.Fatalf("report.md lacks %q:\n%s", w, rep)
		}
	}
}

func TestConvergenceObjects(t *testing.T) {
	spec := ConvergenceSpec{Vary: "objects", Values: []string{"1", "4"}, Nodes: 5, Trials: 2, Seed: 1,
		Timeout: 30 * time.Second, Dir: t.TempDir(), Command: "go test", Logf: t.Logf}
	res, err := RunConvergence(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Points {
		if p.Converged != p.Trials || !p.ViewsEqual {
			t.Fatalf("value %s: %d of %d trials converged, views equal %v", p.Value, p.Converged, p.Trials, p.ViewsEqual)
		}
		if p.Median <= 0 || p.Median > 10 || p.SerfMedian <= 0 || p.SerfMedian > 10 || p.SerfLost > 0 {
			t.Fatalf("value %s: implausible medians %v / %v", p.Value, p.Median, p.SerfMedian)
		}
		if p.EnvelopeBytes < 512 || p.EnvelopeBytes > 1024 {
			t.Fatalf("envelope of one 512-byte object: %d B", p.EnvelopeBytes)
		}
	}
	out := t.TempDir()
	if err := res.Write(out); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, out, 2*2*2, "| objects |", "original BaseFS", "0.7 s / 1.1 s")
}

// TestConvergenceEachParameter runs every other varied parameter once at a
// tiny scale, with faults that must still converge.
func TestConvergenceEachParameter(t *testing.T) {
	for _, c := range []struct{ vary, value string }{
		{"delay", "40ms"}, {"loss", "20"}, {"bandwidth", "64k"}, {"sync", "1s"}, {"nodes", "3"},
	} {
		t.Run(c.vary, func(t *testing.T) {
			spec := ConvergenceSpec{Vary: c.vary, Values: []string{c.value}, Nodes: 4, Objects: 2, Trials: 1, Seed: 2,
				Timeout: 40 * time.Second, Dir: t.TempDir(), Command: "go test", Logf: t.Logf}
			res, err := RunConvergence(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			p := res.Points[0]
			if p.Converged != 1 || math.IsInf(p.Median, 0) {
				t.Fatalf("%s=%s: not converged (%+v)", c.vary, c.value, p)
			}
			out := t.TempDir()
			if err := res.Write(out); err != nil {
				t.Fatal(err)
			}
			checkOutputs(t, out, 2, "| "+c.vary+" |")
		})
	}
}

func TestConvergenceBadValues(t *testing.T) {
	for _, s := range []ConvergenceSpec{
		{Vary: "colour", Values: []string{"1"}},
		{Vary: "objects", Values: []string{"0"}},
		{Vary: "loss", Values: []string{"120"}},
		{Vary: "bandwidth", Values: []string{"fast"}},
		{Vary: "objects"},
	} {
		if _, err := RunConvergence(context.Background(), s); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}

func TestParseBandwidth(t *testing.T) {
	for in, want := range map[string]int64{"8k": 1000, "32k": 4000, "1M": 125000, "unlimited": 0, "64000": 8000} {
		got, err := ParseBandwidth(in)
		if err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestPlotSVG(t *testing.T) {
	p := Plot{Title: "t <&>", X: []string{"a", "b", "c"}, LogY: true, Series: []Series{
		{Name: "one", Y: []float64{0.1, math.NaN(), 10}},
		{Name: "two", Y: []float64{1, math.Inf(1), 100}, Dashed: true},
	}}
	var doc struct{ XMLName xml.Name }
	if err := xml.Unmarshal(p.SVG(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, p.SVG())
	}
	if !strings.Contains(string(p.SVG()), "not converged") {
		t.Fatal("no legend for +Inf")
	}
	empty := Plot{}
	if err := xml.Unmarshal(empty.SVG(), &doc); err != nil {
		t.Fatal(err)
	}
}

func TestDurations(t *testing.T) {
	d := durations{3, 1, 2, math.Inf(1)}
	if d.median() != 2.5 || !math.IsInf(d.max(), 1) {
		t.Fatalf("median %v max %v", d.median(), d.max())
	}
	if (durations{1, math.Inf(1)}).median() != math.Inf(1) {
		t.Fatal("a median on a non-converged trial must be +Inf")
	}
	if !math.IsNaN(durations{}.median()) {
		t.Fatal("empty median")
	}
}
