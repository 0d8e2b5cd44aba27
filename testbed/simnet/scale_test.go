package simnet

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var scaleFlag = flag.String("simnet.scale", "", "comma-separated cluster sizes for TestSerfScale (e.g. 100,1000); empty skips it")

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSerfScale runs clusters of stock LAN-profile Serf agents over simnet
// and reports how long they take to converge, how long a user event takes
// to reach the last agent, the CPU and memory the process used, and the
// network's delivery lag (Network.Lag). It runs only when -simnet.scale
// lists sizes:
//
//	go test ./testbed/simnet/ -run TestSerfScale -timeout 30m -v -args -simnet.scale=100,200
//
// On the 2-core development machine, 100 and 200 agents converge and carry
// user events; simnet itself is below 2% of the CPU profile. Around 250–350
// agents the Go scheduler's latency with thousands of goroutines (delivery
// lag above 100 ms at 200 agents) makes memberlist's 500 ms probes miss,
// false suspicions cascade, and joins time out; 1 000 stock LAN agents in
// one process do not form a cluster there.
func TestSerfScale(t *testing.T) {
	if *scaleFlag == "" {
		t.Skip("set -simnet.scale=100,1000 to run")
	}
	for _, f := range strings.Split(*scaleFlag, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || size < 2 {
			t.Fatalf("bad -simnet.scale entry %q", f)
		}
		t.Run(strconv.Itoa(size), func(t *testing.T) { scaleRun(t, size) })
	}
}

func scaleRun(t *testing.T, size int) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: time.Millisecond, Jitter: 500 * time.Microsecond})
	report := func(format string, args ...any) {
		t.Logf(format, args...)
		fmt.Printf("scale %d: "+format+"\n", append([]any{size}, args...)...)
	}

	start, cpu0 := time.Now(), cpuTime()
	// Stagger starts over about 10 ms per agent.
	agents := startCluster(t, n, size, profileLAN, 10*time.Millisecond)
	report("started %d agents in %v", size, time.Since(start).Round(time.Millisecond))
	ok := waitFor(10*time.Minute, func() bool {
		time.Sleep(time.Second)
		return converged(agents, size)
	})
	if !ok {
		hist := map[int]int{}
		for _, a := range agents {
			hist[a.alive()]++
		}
		t.Fatalf("no convergence: alive counts %v", hist)
	}
	wall, cpu := time.Since(start), cpuTime()-cpu0
	report("converged (every agent sees %d alive) %v after the first start; CPU %.2f cores",
		size, wall.Round(time.Millisecond), cpu.Seconds()/wall.Seconds())

	// Steady state.
	t0, c0, tr0 := time.Now(), cpuTime(), n.TotalTraffic()
	var lag time.Duration
	_ = n.Lag()
	for k := 0; k < 10; k++ {
		time.Sleep(time.Second)
		lag = max(lag, n.Lag())
	}
	wall, cpu = time.Since(t0), cpuTime()-c0
	tr := n.TotalTraffic()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	report("steady state: CPU %.2f cores, delivery lag ≤ %v, %.0f packets/s (%.0f per agent), %d dropped at full queues, heap %d MiB, %d goroutines",
		cpu.Seconds()/wall.Seconds(), lag.Round(time.Millisecond),
		float64(tr.PacketsSent-tr0.PacketsSent)/wall.Seconds(),
		float64(tr.PacketsSent-tr0.PacketsSent)/wall.Seconds()/float64(size),
		tr.PacketsDropped-tr0.PacketsDropped,
		ms.HeapInuse>>20, runtime.NumGoroutine())

	// User events, one at a time from random agents.
	rnd := rand.New(rand.NewPCG(uint64(size), 2))
	var lasts []time.Duration
	t0, c0 = time.Now(), cpuTime()
	for k := 0; k < 5; k++ {
		name := "scale" + strconv.Itoa(k)
		d, ok := spread(agents[rnd.IntN(size)], agents, name, 60*time.Second)
		if !ok {
			missing := 0
			for _, a := range agents {
				if _, got := a.received(name); !got {
					missing++
				}
			}
			report("event %d: %d of %d agents did not receive it within 60s", k, missing, size)
			continue
		}
		lasts = append(lasts, d)
		time.Sleep(time.Second)
	}
	wall, cpu = time.Since(t0), cpuTime()-c0
	slices.Sort(lasts)
	if len(lasts) > 0 {
		report("user event to the last of %d agents: median %v, max %v (%d events); CPU %.2f cores",
			size, lasts[len(lasts)/2].Round(time.Millisecond), lasts[len(lasts)-1].Round(time.Millisecond),
			len(lasts), cpu.Seconds()/wall.Seconds())
	}
}
