package node

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/handlers"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/syncproto"
)

// loopbackCluster starts n in-process nodes on 127.0.0.1 with real sockets.
func loopbackCluster(t testing.TB, n int) []*Node {
	base := t.TempDir()
	root := testKey("root")
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", freePortPair(t))
	}
	r, err := replica.Create(filepath.Join(base, "n0"), "demo", root, addrs[:1], replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	var nodes []*Node
	for i := 0; i < n; i++ {
		dir := filepath.Join(base, fmt.Sprintf("n%d", i))
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err := syncproto.GetWithOptions(ctx, nil, nodes[0].syncAddr, dir, "demo", nil, syncproto.GetOptions{NoSync: true})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		nd, err := Start(Config{Dir: dir, Bind: addrs[i], NoSync: true, RetryInterval: 200 * time.Millisecond, Seed: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Stop() })
		nodes = append(nodes, nd)
		time.Sleep(time.Duration(37*i%113) * time.Millisecond) // stagger (DESIGN §3)
	}
	waitFor(t, 20*time.Second, "membership", func() bool {
		for _, nd := range nodes {
			if nd.aliveOthers() != n-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

// BenchmarkHandlerLatency measures, with 3 nodes on loopback, the time from a
// write's return on node A to the handler script starting on node B, with
// the default quiet period and with none. BASEFS_HANDLER_WRITES sets the
// number of writes (default 200). Run with -benchtime 1x.
func BenchmarkHandlerLatency(b *testing.B) {
	writes := 200
	if s := os.Getenv("BASEFS_HANDLER_WRITES"); s != "" {
		writes, _ = strconv.Atoi(s)
	}
	t := b
	nodes := loopbackCluster(t, 3)
	nodeA, nodeB := nodes[0], nodes[1]
	root := testKey("root")
	for _, quiet := range []time.Duration{0, -1} {
		name := "default quiet period (200ms)"
		if quiet < 0 {
			name = "no quiet period"
		}
		dir := t.TempDir()
		logf := filepath.Join(dir, "started.log")
		script := filepath.Join(dir, "h.sh")
		// The script records when it started and which path fired it.
		os.WriteFile(script, []byte("#!/bin/sh\necho \"$(date +%s%N) $BASEFS_PATH\" >> "+logf+"\n"), 0o755)
		prefix := fmt.Sprintf("/lat%d", -int(quiet))
		h, err := handlers.Start(nodeB.Replica(), handlers.Config{Specs: []handlers.Spec{{Glob: prefix + "/**", Script: script}},
			StateDir: dir, Quiet: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var lat []time.Duration
		rng := rand.New(rand.NewPCG(uint64(writes), uint64(-quiet)))
		for i := 0; i < writes; i++ {
			// A random pause, so writes do not fall in step with the
			// gossip ticks the previous one was delivered on.
			time.Sleep(time.Duration(rng.Int64N(int64(250 * time.Millisecond))))
			p := fmt.Sprintf("%s/f%04d", prefix, i)
			if _, err := nodeA.Replica().WriteFile(root, p, []byte(fmt.Sprint(i)), replica.WriteOptions{Parents: true}); err != nil {
				t.Fatal(err)
			}
			wrote := time.Now()
			started := waitStarted(t, logf, p, 10*time.Second)
			lat = append(lat, started.Sub(wrote))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		h.Stop(ctx)
		cancel()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("handler latency, %s, %d writes: p50 %v  p99 %v  max %v", name, len(lat),
			lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)*99/100].Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
		unit := "quiet"
		if quiet < 0 {
			unit = "noquiet"
		}
		b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms-"+unit)
		b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms-"+unit)
	}
}

// waitStarted waits until the handler log has a line for path and returns
// the start time it recorded.
func waitStarted(t testing.TB, logf, path string, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f, err := os.Open(logf); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				if len(fields) == 2 && fields[1] == path {
					ns, _ := strconv.ParseInt(fields[0], 10, 64)
					f.Close()
					return time.Unix(0, ns)
				}
			}
			f.Close()
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("the handler did not fire for %s within %v", path, d)
	return time.Time{}
}

// BenchmarkBigFileLoopback measures how long a 256-block file written on one
// of 5 loopback nodes takes to be complete on every node (target: 3 s). Run
// with -benchtime 1x.
func BenchmarkBigFileLoopback(b *testing.B) {
	t := b
	nodes := loopbackCluster(t, 5)
	root := testKey("root")
	var times []time.Duration
	for trial := 0; trial < 5; trial++ {
		data := make([]byte, 256*896)
		rng := rand.New(rand.NewPCG(uint64(trial), 42))
		for i := range data {
			data[i] = byte(rng.Uint32()) // incompressible: 256 blocks
		}
		p := fmt.Sprintf("/big/f%d", trial)
		e, err := nodes[trial%5].Replica().WriteFile(root, p, data, replica.WriteOptions{Parents: true})
		if err != nil {
			t.Fatal(err)
		}
		if e.Content.PayloadLen < 255*896 {
			t.Fatalf("payload of %d bytes: not 256 blocks", e.Content.PayloadLen)
		}
		start := time.Now()
		waitFor(t, 30*time.Second, "the file complete everywhere", func() bool {
			for _, nd := range nodes {
				n, err := nd.Replica().Stat(p)
				if err != nil || !nd.Replica().ContentComplete(n.Content) {
					return false
				}
			}
			return true
		})
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("256-block file complete on all 5 loopback nodes: median %v, max %v (5 trials)", times[2].Round(time.Millisecond), times[4].Round(time.Millisecond))
	b.ReportMetric(float64(times[2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(times[4].Milliseconds()), "max-ms")
}
