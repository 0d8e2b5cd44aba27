package testbed

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strconv"
)

// Series is one line of a Plot: one Y per X label; NaN leaves a gap, +Inf
// is drawn at the top edge as an open marker ("did not converge").
type Series struct {
	Name   string
	Y      []float64
	Dashed bool
}

// Plot is a small line plot over categorical X values, rendered as SVG
// with no external tools.
type Plot struct {
	Title, XLabel, YLabel string
	X                     []string
	Series                []Series
	// LogY draws the Y axis in log scale (values ≤ 0 are skipped).
	LogY bool
}

var plotColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

// SVG renders the plot.
func (p Plot) SVG() []byte {
	const w, h = 760.0, 440.0
	const left, right, top, bottom = 70.0, 190.0, 40.0, 60.0
	pw, ph := w-left-right, h-top-bottom
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, y := range s.Y {
			if math.IsNaN(y) || math.IsInf(y, 0) || (p.LogY && y <= 0) {
				continue
			}
			lo, hi = math.Min(lo, y), math.Max(hi, y)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	var ticks []float64
	if p.LogY {
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			ticks = append(ticks, t)
		}
	} else {
		lo = 0
		if hi <= 0 {
			hi = 1
		}
		step := niceStep(hi / 5)
		hi = math.Ceil(hi/step) * step
		for t := 0.0; t <= hi*1.0001; t += step {
			ticks = append(ticks, t)
		}
	}
	ypos := func(y float64) float64 {
		if math.IsInf(y, 1) {
			return top
		}
		if p.LogY {
			return top + ph - ph*(math.Log10(y)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
		}
		return top + ph - ph*(y-lo)/(hi-lo)
	}
	xpos := func(i int) float64 {
		if len(p.X) <= 1 {
			return left + pw/2
		}
		return left + pw*float64(i)/float64(len(p.X)-1)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" text-anchor="middle">%s</text>`+"\n", left+pw/2, html.EscapeString(p.Title))
	for _, t := range ticks {
		y := ypos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, fmtTick(t))
	}
	for i, x := range p.X {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", xpos(i), top+ph, xpos(i), top+ph+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xpos(i), top+ph+20, html.EscapeString(x))
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, h-15, html.EscapeString(p.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, html.EscapeString(p.YLabel))
	for si, s := range p.Series {
		color := plotColors[si%len(plotColors)]
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6,4"`
		}
		var path bytes.Buffer
		pen := false
		for i, y := range s.Y {
			if i >= len(p.X) || math.IsNaN(y) || (p.LogY && y <= 0 && !math.IsInf(y, 1)) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, xpos(i), ypos(y))
			pen = true
			if math.IsInf(y, 1) {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="white" stroke="%s"/>`+"\n", xpos(i), ypos(y), color)
			} else {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", xpos(i), ypos(y), color)
			}
		}
		if path.Len() > 0 {
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", bytes.TrimSpace(path.Bytes()), color, dash)
		}
		ly := top + 10 + float64(si)*20
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", left+pw+12, ly, left+pw+36, ly, color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+42, ly+4, html.EscapeString(s.Name))
	}
	if hasInf(p.Series) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11">open circle at the top: not converged</text>`+"\n", left+pw+12, top+ph)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func hasInf(ss []Series) bool {
	for _, s := range ss {
		for _, y := range s.Y {
			if math.IsInf(y, 1) {
				return true
			}
		}
	}
	return false
}

func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(t float64) string {
	if t != 0 && (math.Abs(t) < 0.01 || math.Abs(t) >= 1e6) {
		return strconv.FormatFloat(t, 'g', 3, 64)
	}
	return strconv.FormatFloat(t, 'f', -1, 64)
}
