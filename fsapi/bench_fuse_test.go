//go:build cgo && linux && !fuse3

package fsapi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// shmDir makes a directory on tmpfs (/dev/shm), removed in cleanup.
func shmDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("/dev/shm", "basefs-bench-")
	if err != nil {
		tb.Skipf("skipping: no tmpfs at /dev/shm (%v)", err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// timeSh runs a shell command and returns how long it took.
func timeSh(tb testing.TB, script string) time.Duration {
	tb.Helper()
	start := time.Now()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", script, err, out)
	}
	return d
}

// BenchmarkEtc copies a generated /etc-like tree (2 500 files, 22 MB) into
// the mount with cp -a and reads it back with a warm cache (tar c | cat),
// and reports both as ratios to the same commands on tmpfs. Each iteration
// runs BASEFS_BENCH_ROUNDS (default 3) interleaved rounds of tmpfs and mount
// and reports the medians, and the ratios of the fastest runs (this machine
// is shared and noisy; interleaving, medians and minima keep the ratio
// honest). The store lives on tmpfs unless
// BASEFS_BENCH_STORE names a directory (one on a disk, say).
// BASEFS_BENCH_CPUPROFILE=FILE profiles the copies into the mount.
func BenchmarkEtc(b *testing.B) {
	needFUSE(b)
	shm := shmDir(b)
	src := filepath.Join(shm, "src")
	st := genTree(b, src, etcSpec)
	b.Logf("tree: %d files, %d dirs, %d symlinks, %d hard links, %.1f MB", st.Files, st.Dirs, st.Symlinks, st.Links, float64(st.Bytes)/1e6)
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("BASEFS_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	if p := os.Getenv("BASEFS_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var cp, rd, tcp, trd, cpx, rdx []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := 0; k < rounds; k++ {
			tdst := filepath.Join(shm, "dst")
			tmpfsCopy := timeSh(b, "cp -a "+src+" "+tdst)
			timeSh(b, "tar c -C "+tdst+" . | cat > /dev/null")
			tmpfsRead := timeSh(b, "tar c -C "+tdst+" . | cat > /dev/null")
			os.RemoveAll(tdst)

			storeDir := os.Getenv("BASEFS_BENCH_STORE")
			if storeDir == "" {
				storeDir = filepath.Join(shm, "store")
			} else {
				storeDir = filepath.Join(storeDir, "basefs-bench-store")
			}
			os.RemoveAll(storeDir)
			if err := os.MkdirAll(storeDir, 0o700); err != nil {
				b.Fatal(err)
			}
			r := newReplica(b, storeDir)
			m, mnt := mount(b, r, Options{AttrTimeout: benchAttrTimeout()})
			watchdog(b, 5*time.Minute, mnt)
			mountCopy := timeSh(b, "cp -a "+src+" "+filepath.Join(mnt, "etc"))
			timeSh(b, "tar c -C "+filepath.Join(mnt, "etc")+" . | cat > /dev/null")
			mountRead := timeSh(b, "tar c -C "+filepath.Join(mnt, "etc")+" . | cat > /dev/null")
			if err := m.Unmount(); err != nil {
				b.Fatal(err)
			}
			r.Close()
			os.RemoveAll(storeDir)
			cp = append(cp, mountCopy.Seconds())
			rd = append(rd, mountRead.Seconds())
			tcp = append(tcp, tmpfsCopy.Seconds())
			trd = append(trd, tmpfsRead.Seconds())
			cpx = append(cpx, mountCopy.Seconds()/tmpfsCopy.Seconds())
			rdx = append(rdx, mountRead.Seconds()/tmpfsRead.Seconds())
			b.Logf("round %d: copy %.3fs (tmpfs %.3fs, %.1fx)  read %.3fs (tmpfs %.3fs, %.1fx)", k,
				mountCopy.Seconds(), tmpfsCopy.Seconds(), cpx[len(cpx)-1], mountRead.Seconds(), tmpfsRead.Seconds(), rdx[len(rdx)-1])
		}
	}
	b.ReportMetric(median(cp), "copy-s")
	b.ReportMetric(median(tcp), "tmpfs-copy-s")
	b.ReportMetric(median(cpx), "copy-x")
	b.ReportMetric(median(rd), "read-s")
	b.ReportMetric(median(trd), "tmpfs-read-s")
	b.ReportMetric(median(rdx), "read-x")
	b.ReportMetric(slices.Min(cp)/slices.Min(tcp), "copy-min-x")
	b.ReportMetric(slices.Min(rd)/slices.Min(trd), "read-min-x")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchAttrTimeout is the attribute timeout benchmarks use:
// BASEFS_BENCH_ATTR_TIMEOUT (a Go duration) or the default.
func benchAttrTimeout() time.Duration {
	if s := os.Getenv("BASEFS_BENCH_ATTR_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err == nil {
			if d == 0 {
				return -1
			}
			return d
		}
	}
	return 0
}

// BenchmarkOps measures single operations through the mount: stat of a
// cached file, open+read+close of a cached file, and create+write+close of
// a new file (one entry each). BASEFS_BENCH_MT=1 serves FUSE on several
// threads.
func BenchmarkOps(b *testing.B) {
	r := newReplica(b, "")
	_, mnt := mount(b, r, Options{MultiThreaded: os.Getenv("BASEFS_BENCH_MT") != ""})
	watchdog(b, 5*time.Minute, mnt)
	if err := os.WriteFile(mnt+"/f", []byte("port=80\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("stat", func(b *testing.B) {
		var st syscall.Stat_t
		for i := 0; i < b.N; i++ {
			if err := syscall.Stat(mnt+"/f", &st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open-read-close", func(b *testing.B) {
		buf := make([]byte, 64)
		for i := 0; i < b.N; i++ {
			fd, err := syscall.Open(mnt+"/f", syscall.O_RDONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			syscall.Read(fd, buf)
			syscall.Close(fd)
		}
	})
	b.Run("create-write-close", func(b *testing.B) {
		data := []byte("key = value\n")
		for i := 0; i < b.N; i++ {
			if err := os.WriteFile(fmt.Sprintf("%s/n%d", mnt, i), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	})
}
