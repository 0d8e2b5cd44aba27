package view

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/basefs/basefs/log"
)

// benchLog is a realistic log: a tree of directories, files written many
// times, a few grants, authored by a handful of keys. Generated once.
type benchLog struct {
	root    *log.Entry
	entries []*log.Entry
}

var (
	benchOnce sync.Once
	benchData benchLog
)

const benchEntries = 200_000

func getBenchLog(b *testing.B) benchLog {
	benchOnce.Do(func() {
		f := newFixture(b)
		f.mkdir("root", "/srv")
		f.grant("root", "/srv", "ops")
		keys := []string{"root", "ops"}
		for d := 0; len(f.all) < benchEntries; d++ {
			dir := fmt.Sprintf("/srv/d%03d", d)
			f.mkdir(keys[d%2], dir)
			for i := 0; i < 50 && len(f.all) < benchEntries; i++ {
				sub := fmt.Sprintf("%s/s%02d", dir, i)
				f.mkdir("ops", sub)
				for j := 0; j < 20 && len(f.all) < benchEntries; j++ {
					p := fmt.Sprintf("%s/f%02d", sub, j)
					for k := 0; k < 3 && len(f.all) < benchEntries; k++ {
						f.write(keys[(i+j+k)%2], p, fmt.Sprintf("version %d of %s", k, p))
					}
				}
			}
		}
		benchData = benchLog{root: f.root, entries: f.all}
	})
	return benchData
}

// BenchmarkApply measures applying verified entries to a view, one Apply call
// per entry (as gossip delivers them) and in batches (as a store is replayed).
func BenchmarkApply(b *testing.B) {
	bl := getBenchLog(b)
	for _, batch := range []int{1, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			runtime.GC()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				v, _ := New(bl.root)
				for i := 0; i < len(bl.entries); i += batch {
					v.Apply(bl.entries[i:min(i+batch, len(bl.entries))]...)
				}
				if n == 0 {
					v.Hash()
				}
			}
			b.ReportMetric(float64(len(bl.entries)*b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkApplyReverse applies the same entries in reverse order, so most
// wait for their parents and resolve in bursts.
func BenchmarkApplyReverse(b *testing.B) {
	bl := getBenchLog(b)
	rev := make([]*log.Entry, len(bl.entries))
	for i, e := range bl.entries {
		rev[len(rev)-1-i] = e
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		v, _ := New(bl.root)
		for _, e := range rev {
			v.Apply(e)
		}
	}
	b.ReportMetric(float64(len(bl.entries)*b.N)/b.Elapsed().Seconds(), "entries/s")
}
