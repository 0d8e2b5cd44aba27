package syncproto

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/basefs/basefs/log"
)

// refDigest is a direct implementation of the digest definition (index.go)
// over a map path → entries, to check the incremental index against.
func refDigest(paths map[string][]log.Hash, path string) log.Hash {
	type item struct {
		key  log.Hash
		enc  []byte
		kind int
	}
	var items []item
	for _, h := range paths[path] {
		items = append(items, item{key: h, enc: append([]byte{0}, h[:]...)})
	}
	kids := map[string]bool{}
	for p := range paths {
		if p != path && (path == "/" || strings.HasPrefix(p, path+"/")) {
			rest := strings.TrimPrefix(strings.TrimPrefix(p, path), "/")
			kids[strings.SplitN(rest, "/", 2)[0]] = true
		}
	}
	for k := range kids {
		d := refDigest(paths, log.Join(path, k))
		enc := []byte{1}
		enc = binary.AppendUvarint(enc, uint64(len(k)))
		enc = append(append(enc, k...), d[:]...)
		items = append(items, item{key: nameKey(k), enc: enc, kind: 1})
	}
	sort.Slice(items, func(i, j int) bool {
		if c := bytes.Compare(items[i].key[:], items[j].key[:]); c != 0 {
			return c < 0
		}
		return items[i].kind < items[j].kind
	})
	var set func(items []item, d int) log.Hash
	set = func(items []item, d int) log.Hash {
		if len(items) == 0 {
			return log.ZeroHash
		}
		if len(items) <= leafItems || d >= keyNibbles {
			h := sha256.New()
			h.Write([]byte{0x10})
			for _, it := range items {
				h.Write(it.enc)
			}
			return log.Hash(h.Sum(nil))
		}
		h := sha256.New()
		h.Write([]byte{0x11})
		for x := 0; x < 16; x++ {
			var sub []item
			for _, it := range items {
				if nib(&it.key, d) == x {
					sub = append(sub, it)
				}
			}
			s := set(sub, d+1)
			h.Write(s[:])
		}
		return log.Hash(h.Sum(nil))
	}
	return set(items, 0)
}

// randomPaths makes a random tree of paths with entries: some directories
// with many children, some paths with many entries (past splitItems).
func randomPaths(rng *rand.Rand, n int) ([]qitem, map[string][]log.Hash) {
	m := map[string][]log.Hash{}
	var out []qitem
	add := func(p string) {
		var h log.Hash
		rng.Read(h[:])
		m[p] = append(m[p], h)
		out = append(out, qitem{p, h})
		for d := log.Dir(p); ; d = log.Dir(d) {
			if _, ok := m[d]; !ok {
				m[d] = nil
			}
			if d == "/" {
				break
			}
		}
	}
	add("/")
	for i := 0; i < n; i++ {
		switch rng.Intn(4) {
		case 0:
			add("/hot") // one path with many entries
		case 1:
			add(fmt.Sprintf("/wide/c%d", rng.Intn(600))) // a wide directory
		default:
			add(fmt.Sprintf("/t%d/u%d/v%d", rng.Intn(3), rng.Intn(5), rng.Intn(8)))
		}
	}
	return out, m
}

func TestIndexDigestMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	items, m := randomPaths(rng, 3000)
	// Two insertion orders, with digests taken along the way (so caches
	// are exercised), give the reference digest.
	var digests []log.Hash
	for round := 0; round < 2; round++ {
		ix := NewIndex()
		rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		for i, it := range items {
			ix.Add(it.path, it.h)
			if i%500 == 0 {
				ix.Digest()
			}
		}
		ix.Add(items[0].path, items[0].h) // duplicates change nothing
		if ix.Len() != len(items) {
			t.Fatalf("len %d, want %d", ix.Len(), len(items))
		}
		digests = append(digests, ix.Digest())
		// Every node's representation is consistent with the definition:
		// a list hashes to its digest, a split's sub-digests hash to it.
		ix.mu.Lock()
		for _, p := range []string{"/", "/hot", "/wide", "/t1/u2"} {
			want := refDigest(m, p)
			if got := ix.pdigest(ix.lookup(p)); got != want {
				t.Fatalf("digest of %s differs from the definition", p)
			}
			r := ix.rep(nodeRef{Path: p})
			switch r.Kind {
			case repList:
				if listRepDigest(&r) != want {
					t.Fatalf("list of %s does not hash to its digest", p)
				}
			case repSplit:
				if ix.splitDigest(&r.Sub) != want {
					t.Fatalf("split of %s does not hash to its digest", p)
				}
				// One level down, too.
				for x := 0; x < 16; x++ {
					if r.Sub[x].IsZero() {
						continue
					}
					cr := ix.rep(nodeRef{Path: p, Prefix: prefix{}.child(x)})
					var got log.Hash
					if cr.Kind == repList {
						got = listRepDigest(&cr)
					} else {
						got = ix.splitDigest(&cr.Sub)
					}
					if got != r.Sub[x] {
						t.Fatalf("%s/%x: sub-node does not hash to its digest", p, x)
					}
				}
			}
		}
		ix.mu.Unlock()
	}
	if digests[0] != digests[1] || digests[0] != refDigest(m, "/") {
		t.Fatal("root digest depends on insertion order or differs from the definition")
	}
}

// Collect returns every entry under a node exactly once, directories'
// entries before their children's.
func TestIndexCollect(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	items, _ := randomPaths(rng, 2000)
	ix := NewIndex()
	for _, it := range items {
		ix.Add(it.path, it.h)
	}
	got := ix.lockedCollect([]nodeRef{{Path: "/"}}, 1<<30)
	if len(got) != len(items) {
		t.Fatalf("collected %d of %d", len(got), len(items))
	}
	pos := map[log.Hash]int{}
	for i, h := range got {
		pos[h] = i
	}
	first, last := map[string]int{}, map[string]int{}
	for _, it := range items {
		i := pos[it.h]
		if f, ok := first[it.path]; !ok || i < f {
			first[it.path] = i
		}
		last[it.path] = max(last[it.path], i)
	}
	for p, f := range first {
		if p == "/" {
			continue
		}
		if l, ok := last[log.Dir(p)]; ok && l > f {
			t.Fatalf("an entry of %s comes after one of its child %s", log.Dir(p), p)
		}
	}
}

// BenchmarkIndexMemory reports the index's memory per entry for a
// configuration tree: 1000-file directories, 20 versions per file.
//
//	go test -run XXX -bench IndexMemory -benchtime 1x ./syncproto/
//	(BASEFS_INDEX_ENTRIES=1000000 for a million entries)
func BenchmarkIndexMemory(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("BASEFS_INDEX_ENTRIES")); err == nil {
		n = v
	}
	items := make([]qitem, 0, n)
	rng := rand.New(rand.NewSource(1))
	for len(items) < n {
		d, f := len(items)/20000, len(items)/20%1000
		var h log.Hash
		rng.Read(h[:])
		items = append(items, qitem{fmt.Sprintf("/d%03d/f%04d.conf", d, f), h})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		ix := NewIndex()
		for _, it := range items {
			ix.Add(it.path, it.h)
		}
		ix.Digest()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(n), "B/entry")
		runtime.KeepAlive(ix)
	}
}

// BenchmarkIndexBuild times adding entries and the first digest.
func BenchmarkIndexBuild(b *testing.B) {
	const n = 100_000
	items := make([]qitem, 0, n)
	rng := rand.New(rand.NewSource(1))
	for len(items) < n {
		var h log.Hash
		rng.Read(h[:])
		items = append(items, qitem{fmt.Sprintf("/d%03d/f%04d.conf", len(items)/20000, len(items)/20%1000), h})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ix := NewIndex()
		for _, it := range items {
			ix.Add(it.path, it.h)
		}
		ix.Digest()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}
