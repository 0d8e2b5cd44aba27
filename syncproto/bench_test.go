package syncproto

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// tcpSegments returns the kernel's count of TCP segments sent
// (/proc/net/snmp OutSegs); on loopback every segment is sent once.
func tcpSegments() (int64, bool) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, false
	}
	var names, values []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Tcp:") {
			if names == nil {
				names = strings.Fields(line)
			} else {
				values = strings.Fields(line)
			}
		}
	}
	for i, n := range names {
		if n == "OutSegs" && i < len(values) {
			v, err := strconv.ParseInt(values[i], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// Header bytes of a TCP/IPv4 segment on Linux: 20 (IP) + 20 (TCP) + 12
// (timestamps option); SYN and SYN-ACK carry 20 option bytes instead of 12.
const segHeader = 52

// BenchmarkIdleTraffic measures the anti-entropy traffic of two nodes of
// 10 000 entries that are in sync, over loopback TCP: application bytes
// per session (both directions, framing included) and TCP segments per
// session, and from them the traffic per node at a 20 s interval. Each
// node starts one session per interval and, on average, answers one.
//
//	go test -run XXX -bench IdleTraffic -benchtime 200x ./syncproto/
func BenchmarkIdleTraffic(b *testing.B) {
	g := newGen(b, "test")
	g.tree("/", 10, 1000)
	ra := makeReplica(b, g.out, nil)
	rb := makeReplica(b, g.out, nil)
	sa := NewService(Config{Replica: ra, Node: "node-a", Addr: "10.0.0.1:7947"})
	defer sa.Close()
	sb := NewService(Config{Replica: rb, Node: "node-b", Addr: "10.0.0.2:7947"})
	defer sb.Close()
	addr := listen(b, sa.Server)
	if _, err := sb.Client.Sync(context.Background(), addr); err != nil {
		b.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	seg0, segOK := tcpSegments()
	var app int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := sb.Client.Sync(context.Background(), addr)
		if err != nil || !st.InSync {
			b.Fatal(err, st.InSync)
		}
		app += st.BytesSent + st.BytesReceived
	}
	b.StopTimer()
	time.Sleep(50 * time.Millisecond) // let the FIN/ACKs go out
	seg1, _ := tcpSegments()
	perSession := float64(app) / float64(b.N)
	b.ReportMetric(perSession, "app-B/session")
	const interval, sessionsPerNode = 20.0, 2.0
	b.ReportMetric(perSession*8*sessionsPerNode/interval, "app-bit/s/node")
	if segOK {
		segs := float64(seg1-seg0) / float64(b.N)
		total := perSession + segs*segHeader + 2*8 // SYN options
		b.ReportMetric(segs, "segs/session")
		b.ReportMetric(total*8*sessionsPerNode/interval, "wire-bit/s/node")
	}
}

// getFixture is a store of n entries with about contentBytes of file
// content: mostly small configuration files written in versions, and
// files of 50 kB of incompressible bytes.
func getFixture(b *testing.B, n int, contentBytes int) *replica.Replica {
	dir := filepath.Join(b.TempDir(), "src")
	rng := rand.New(rand.NewSource(1))
	k := testKey("root")
	root := &log.Entry{Action: log.ActMkdir, Path: "/", Time: 1, Name: "bench", Nonce: make([]byte, log.NonceLen), Mode: 0o755}
	root.Sign(k)
	entries := []*log.Entry{root}
	var blocks [][]byte
	const bigSize = 50 << 10
	bigFiles := contentBytes / bigSize
	type job struct {
		e   *log.Entry
		blk [][]byte
	}
	// Sign on all cores: each directory's entries in order.
	dirs := (n + 999) / 1000
	results := make([][]job, dirs)
	done := make(chan int)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for d := 0; d < dirs; d++ {
		go func(d int) {
			sem <- struct{}{}
			defer func() { <-sem; done <- d }()
			local := rand.New(rand.NewSource(int64(d)))
			codec := log.NewContentCodec()
			var out []job
			mk := &log.Entry{Action: log.ActMkdir, Parent: root.Hash(), Path: fmt.Sprintf("/d%04d", d), Time: 2, Mode: 0o755}
			mk.Sign(k)
			out = append(out, job{e: mk})
			last := map[string]log.Hash{}
			per := min(1000, n-1-d*1000)
			bigHere := bigFiles / dirs
			for i := 0; i < per-1; i++ {
				var data []byte
				p := fmt.Sprintf("/d%04d/f%03d.conf", d, i%100)
				if i < bigHere {
					p = fmt.Sprintf("/d%04d/blob%03d", d, i)
					data = make([]byte, bigSize)
					local.Read(data)
				} else {
					data = []byte(fmt.Sprintf("setting=%d\nversion=%d\n", i%100, i/100))
				}
				c, blk, err := codec.Encode(data, log.EncodeOptions{})
				if err != nil {
					panic(err)
				}
				par, ok := last[p]
				if !ok {
					par = mk.Hash()
				}
				e := &log.Entry{Action: log.ActWrite, Parent: par, Path: p, Time: int64(3 + i), Mode: 0o644, Content: c}
				if err := e.Sign(k); err != nil {
					panic(err)
				}
				last[p] = e.Hash()
				out = append(out, job{e, blk})
			}
			results[d] = out
		}(d)
	}
	for range dirs {
		<-done
	}
	for _, js := range results {
		for _, j := range js {
			entries = append(entries, j.e)
			blocks = append(blocks, j.blk...)
		}
	}
	_ = rng
	s, err := log.OpenStore(dir, log.StoreOptions{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(entries); i += 4096 {
		// Blocks with the entries that need them, as a writer appends.
		if err := s.Append(entries[i:min(i+4096, len(entries))], nil); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < len(blocks); i += 4096 {
		if err := s.Append(nil, blocks[i:min(i+4096, len(blocks))]); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	r, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// tcpCopy sends data over a loopback TCP connection to a reader that
// discards it, and returns the time until the reader has it all.
func tcpCopy(b *testing.B, data []byte) time.Duration {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	got := make(chan int64)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	start := time.Now()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c.Write(data)
	c.Close()
	if n := <-got; n != int64(len(data)) {
		b.Fatalf("copied %d of %d bytes", n, len(data))
	}
	return time.Since(start)
}

// BenchmarkGet measures `get` of a 100 000-entry, 50 MB filesystem over
// loopback against a plain TCP copy of the same bytes (the store file) in
// the same run. BASEFS_GET_ENTRIES and BASEFS_GET_MB change the size;
// BASEFS_GET_FSYNC=1 makes the get durable (fsync), as the CLI's is.
//
//	go test -run XXX -bench 'Get$' -benchtime 1x -timeout 30m ./syncproto/
func BenchmarkGet(b *testing.B) {
	n, mb := 100_000, 50
	if v, err := strconv.Atoi(os.Getenv("BASEFS_GET_ENTRIES")); err == nil {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("BASEFS_GET_MB")); err == nil {
		mb = v
	}
	t0 := time.Now()
	src := getFixture(b, n, mb<<20)
	st := src.Status()
	b.Logf("fixture: %d entries, %d blocks, store %.1f MB, built in %v", st.Entries, st.Blocks, float64(st.StoreBytes)/1e6, time.Since(t0).Round(time.Millisecond))
	svc := NewService(Config{Replica: src, Node: "src"})
	defer svc.Close()
	addr := listen(b, svc.Server)
	raw, err := os.ReadFile(filepath.Join(src.Dir(), log.StoreFileName))
	if err != nil {
		b.Fatal(err)
	}
	noSync := os.Getenv("BASEFS_GET_FSYNC") == ""
	entries := src.Status().Entries
	var all []*log.Entry
	src.ScanEntries(0, func(e *log.Entry) bool { all = append(all, e); return true })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copyTime := tcpCopy(b, raw)
		// The floor: verifying every signature on all cores, nothing else.
		vstart := time.Now()
		verifyAllParallel(all)
		verifyTime := time.Since(vstart)
		dir := filepath.Join(b.TempDir(), "got")
		cpu0 := cpuTime()
		start := time.Now()
		res, err := GetWithOptions(context.Background(), TCPDial, addr, dir, "bench", nil, GetOptions{NoSync: noSync})
		if err != nil {
			b.Fatal(err)
		}
		getTime := time.Since(start)
		cpu := cpuTime() - cpu0
		b.ReportMetric(getTime.Seconds()/verifyTime.Seconds(), "get/verify-time")
		b.ReportMetric(float64(cpu.Microseconds())/float64(entries), "cpu-µs/entry")
		b.Logf("verification alone (%d entries, %d workers): %v; get used %v of CPU (both sides) in %v",
			entries, runtime.GOMAXPROCS(0), verifyTime.Round(time.Millisecond), cpu.Round(time.Millisecond), getTime.Round(time.Millisecond))
		streamTime := getTime - res.SyncTime
		mbps := func(d time.Duration) float64 { return float64(len(raw)) / d.Seconds() / 1e6 }
		b.ReportMetric(mbps(copyTime), "copy-MB/s")
		b.ReportMetric(mbps(getTime), "get-MB/s")
		b.ReportMetric(mbps(streamTime), "stream-MB/s")
		b.ReportMetric(float64(n)/getTime.Seconds(), "entries/s")
		b.ReportMetric(getTime.Seconds()/copyTime.Seconds(), "get/copy-time")
		b.Logf("copy %v; get %v = stream %v (read %v, verify %v, store %v; stages overlap) + open & final sync %v; %.1f MB received",
			copyTime.Round(time.Millisecond), getTime.Round(time.Millisecond), streamTime.Round(time.Millisecond),
			res.ReadTime.Round(time.Millisecond), res.VerifyTime.Round(time.Millisecond), res.StoreTime.Round(time.Millisecond),
			res.SyncTime.Round(time.Millisecond), float64(res.BytesReceived)/1e6)
	}
}

func verifyAllParallel(entries []*log.Entry) {
	workers := runtime.GOMAXPROCS(0)
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func(w int) {
			for j := w; j < len(entries); j += workers {
				entries[j].Verify()
			}
			done <- struct{}{}
		}(w)
	}
	for w := 0; w < workers; w++ {
		<-done
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerify is the floor of get's rate on this machine: ed25519
// verification of entries on all cores.
func BenchmarkVerify(b *testing.B) {
	g := newGen(b, "test")
	g.tree("/", 1, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		workers := runtime.GOMAXPROCS(0)
		done := make(chan struct{})
		for w := 0; w < workers; w++ {
			go func(w int) {
				for j := w; j < len(g.out); j += workers {
					g.out[j].Verify()
				}
				done <- struct{}{}
			}(w)
		}
		for w := 0; w < workers; w++ {
			<-done
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(g.out)), "µs/entry")
}
