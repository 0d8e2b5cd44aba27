package syncproto

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// NewProgressPrinter returns a progress callback for Get that renders to w:
// on a terminal, a progress bar of entries with the bytes received, the
// rate and the ETA; otherwise plain lines, at most one every two seconds
// and one at each change of phase. It is safe for concurrent use.
func NewProgressPrinter(w io.Writer, isTerminal bool) func(Progress) {
	if isTerminal {
		return newBarPrinter(w)
	}
	return newLinePrinter(w)
}

func newLinePrinter(w io.Writer) func(Progress) {
	var mu sync.Mutex
	var last time.Time
	var lastPhase string
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Phase == lastPhase && time.Since(last) < 2*time.Second {
			return
		}
		last, lastPhase = time.Now(), p.Phase
		fmt.Fprintln(w, progressLine(p))
	}
}

// progressLine is the plain form of a progress report.
func progressLine(p Progress) string {
	switch p.Phase {
	case "connecting":
		return "get: connecting"
	case "done":
		return fmt.Sprintf("get: done: %d entries, %s received in %s (%s/s)",
			p.Entries, humanBytes(p.Bytes), p.Elapsed.Round(100*time.Millisecond), humanBytes(int64(p.Rate)))
	case "syncing":
		return fmt.Sprintf("get: %d entries stored; final sync with the peer", p.Entries)
	}
	s := fmt.Sprintf("get: %d/%d entries, %s", p.Entries, p.TotalEntries, humanBytes(p.Bytes))
	if p.TotalBytes > 0 {
		s += " of ~" + humanBytes(p.TotalBytes)
	}
	s += fmt.Sprintf(", %s/s", humanBytes(int64(p.Rate)))
	if p.ETA > 0 {
		s += ", ETA " + p.ETA.Round(time.Second).String()
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		if f < unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PB", f/unit)
}

func newBarPrinter(w io.Writer) func(Progress) {
	var mu sync.Mutex
	var bar *progressbar.ProgressBar
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		switch p.Phase {
		case "connecting":
			fmt.Fprintln(w, "get: connecting")
			return
		case "syncing", "done":
			if bar != nil {
				bar.Set64(p.Entries)
				bar.Finish()
				fmt.Fprintln(w)
				bar = nil
			}
			fmt.Fprintln(w, progressLine(p))
			return
		}
		if bar == nil {
			bar = progressbar.NewOptions64(max(p.TotalEntries, 1),
				progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription("get"),
				progressbar.OptionShowCount(),
				progressbar.OptionSetItsString("entries"),
				progressbar.OptionShowIts(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionShowDescriptionAtLineEnd(),
			)
		}
		if p.TotalEntries > bar.GetMax64() {
			bar.ChangeMax64(p.TotalEntries)
		}
		bar.Describe(fmt.Sprintf("%s, %s/s", humanBytes(p.Bytes), humanBytes(int64(p.Rate))))
		bar.Set64(p.Entries)
	}
}
