package replica

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
)

// buildStore writes a store of n entries to dir: 1000-file directories of
// small files, each written many times (a long-lived configuration tree).
// Entries are signed on all cores; no view is built.
func buildStore(tb testing.TB, dir string, n int) {
	k := key("root")
	root := &log.Entry{Action: log.ActMkdir, Path: "/", Time: 1, Name: "bench", Nonce: make([]byte, log.NonceLen), Mode: 0o755}
	if err := root.Sign(k); err != nil {
		tb.Fatal(err)
	}
	entries := make([]*log.Entry, 0, n)
	entries = append(entries, root)
	const files, versions = 50, 20
	for d := 0; len(entries) < n; d++ {
		dirPath := fmt.Sprintf("/d%05d", d)
		mk := &log.Entry{Action: log.ActMkdir, Parent: root.Hash(), Path: dirPath, Time: int64(len(entries)), Mode: 0o755}
		entries = append(entries, mk)
		entries[len(entries)-1].Sign(k)
		for f := 0; f < files && len(entries) < n; f++ {
			p := fmt.Sprintf("%s/f%02d.conf", dirPath, f)
			par := mk.Hash()
			// Sign this file's versions in order (each names the one before).
			for v := 0; v < versions && len(entries) < n; v++ {
				data := []byte(fmt.Sprintf("setting=%d\nversion=%d\n", f, v))
				e := &log.Entry{Action: log.ActWrite, Parent: par, Path: p, Time: int64(len(entries)), Mode: 0o644,
					Content: &log.Content{Size: uint64(len(data)), Hash: log.Sum(data), Inline: data}}
				if err := e.Sign(k); err != nil {
					tb.Fatal(err)
				}
				entries = append(entries, e)
				par = e.Hash()
			}
		}
	}
	s, err := log.OpenStore(dir, log.StoreOptions{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(entries); i += 10000 {
		if err := s.Append(entries[i:min(i+10000, len(entries))], nil); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
}

// TestOpenChild is the child half of BenchmarkOpen: it opens the store in
// BASEFS_OPEN_DIR and prints the time and the peak resident memory.
func TestOpenChild(t *testing.T) {
	dir := os.Getenv("BASEFS_OPEN_DIR")
	if dir == "" {
		t.Skip("child of BenchmarkOpen")
	}
	start := time.Now()
	r, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Status()
	elapsed := time.Since(start)
	if p := os.Getenv("BASEFS_OPEN_HEAPPROFILE"); p != "" {
		f, _ := os.Create(p)
		runtime.GC()
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	fmt.Printf("RESULT entries=%d paths=%d seconds=%.3f hwm_kb=%d\n", st.Entries, st.Paths, elapsed.Seconds(), vmHWM())
	r.Close()
}

func vmHWM() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}

// openBench holds the store BenchmarkOpen builds once per process (Go may
// call a benchmark function more than once); TestMain removes it.
var openBench struct {
	once sync.Once
	dir  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if openBench.dir != "" {
		os.RemoveAll(filepath.Dir(openBench.dir))
	}
	os.Exit(code)
}

// BenchmarkOpen opens a store of BASEFS_OPEN_ENTRIES entries (default
// 1,000,000) and builds its view, in a fresh process so the peak resident
// memory is the open's alone. Reports seconds and MB resident.
func BenchmarkOpen(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("BASEFS_OPEN_ENTRIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	openBench.once.Do(func() {
		dir, err := os.MkdirTemp("", "basefs-open-bench")
		if err != nil {
			b.Fatal(err)
		}
		openBench.dir = filepath.Join(dir, "fs")
		runtime.GC()
		buildStore(b, openBench.dir, n)
	})
	b.ResetTimer()
	var secs, mb float64
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpenChild$", "-test.v")
		cmd.Env = append(os.Environ(), "BASEFS_OPEN_DIR="+openBench.dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		i := bytes.Index(out, []byte("RESULT "))
		if i < 0 {
			b.Fatalf("child said:\n%s", out)
		}
		var entries, paths, hwm int
		var s float64
		fmt.Sscanf(string(out[i:]), "RESULT entries=%d paths=%d seconds=%f hwm_kb=%d", &entries, &paths, &s, &hwm)
		if entries != n {
			b.Fatalf("child opened %d entries, want %d", entries, n)
		}
		secs += s
		mb += float64(hwm) / 1024
	}
	b.ReportMetric(secs/float64(b.N), "s/open")
	b.ReportMetric(mb/float64(b.N), "MB-resident")
}

// BenchmarkReadVersion reads a 1 MB file at its 1st version and after 100
// versions that each changed 10 bytes: the cost must not grow with history.
func BenchmarkReadVersion(b *testing.B) {
	for _, versions := range []int{1, 100} {
		b.Run(fmt.Sprintf("version=%d", versions), func(b *testing.B) {
			r, err := Create(filepath.Join(b.TempDir(), "fs"), "bench", key("root"), nil, Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			data := make([]byte, 1<<20)
			for i := range data {
				data[i] = "abcdefghij\n"[i%11]
			}
			for v := 0; v < versions; v++ {
				copy(data[(v*7919)%(len(data)-10):], fmt.Sprintf("v%08d!", v))
				if _, err := r.WriteFile(key("root"), "/big", data, WriteOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				got, err := r.ReadFile("/big")
				if err != nil || len(got) != len(data) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadVersionCold is BenchmarkReadVersion without the materialized
// copy: the content is rebuilt from blocks and at most maxDeltaChain deltas.
func BenchmarkReadVersionCold(b *testing.B) {
	for _, versions := range []int{1, 100} {
		b.Run(fmt.Sprintf("version=%d", versions), func(b *testing.B) {
			r, err := Create(filepath.Join(b.TempDir(), "fs"), "bench", key("root"), nil, Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			data := make([]byte, 1<<20)
			for i := range data {
				data[i] = "abcdefghij\n"[i%11]
			}
			for v := 0; v < versions; v++ {
				copy(data[(v*7919)%(len(data)-10):], fmt.Sprintf("v%08d!", v))
				if _, err := r.WriteFile(key("root"), "/big", data, WriteOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			n, _ := r.Stat("/big")
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				r.cache.Retain(func(log.Hash) bool { return false })
				b.StartTimer()
				got, err := r.Content(n.Content)
				if err != nil || len(got) != len(data) {
					b.Fatal(err)
				}
			}
		})
	}
}
