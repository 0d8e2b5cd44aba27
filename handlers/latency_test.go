package handlers

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// TestLatencyRemote measures, over 200 writes, the time from a write on
// replica A (ingested into B at once, as gossip would hand it over) to the
// handler's script starting on B (exec done), with the default quiet period
// and with none. Each write waits for the previous script to end. Not run
// under -short:
//
//	go test -run TestLatencyRemote -v ./handlers/
func TestLatencyRemote(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	script := filepath.Join(t.TempDir(), "h.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec cat >/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, quiet := range []time.Duration{DefaultQuiet, -1} {
		a := newFS(t)
		b := cloneFS(t, a)
		pos := a.NumEntries()
		started := make(chan time.Time, 1)
		cfg := Config{Specs: []Spec{{Glob: "/etc/**", Script: script}}, Quiet: quiet,
			onStart: func(int, []pending) { started <- time.Now() }}
		rn := start(t, b, cfg)
		const n = 200
		var lat, ingest []time.Duration
		for i := 0; i < n; i++ {
			t0 := time.Now()
			write(t, a, "/etc/app.conf", fmt.Sprintf("port=%d\n", i))
			transfer(t, a, b, &pos)
			ingest = append(ingest, time.Since(t0))
			select {
			case at := <-started:
				lat = append(lat, at.Sub(t0))
			case <-time.After(10 * time.Second):
				t.Fatalf("write %d never ran", i)
			}
			for rn.Stats().Running > 0 {
				time.Sleep(200 * time.Microsecond)
			}
		}
		stop(t, rn)
		pct := func(d []time.Duration, p float64) time.Duration {
			s := append([]time.Duration(nil), d...)
			sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
			return s[min(len(s)-1, int(p*float64(len(s))))]
		}
		name := fmt.Sprint(quiet)
		if quiet < 0 {
			name = "none"
		}
		t.Logf("quiet %s: write on A → script started on B over %d writes: p50 %v p99 %v max %v (write+ingest alone: p50 %v p99 %v)",
			name, n, pct(lat, .5).Round(10*time.Microsecond), pct(lat, .99).Round(10*time.Microsecond),
			pct(lat, 1).Round(10*time.Microsecond), pct(ingest, .5).Round(10*time.Microsecond), pct(ingest, .99).Round(10*time.Microsecond))
	}
}
