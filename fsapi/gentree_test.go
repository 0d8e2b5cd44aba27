package fsapi

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// treeSpec shapes a generated tree.
type treeSpec struct {
	Files    int   // regular files
	Bytes    int64 // their total size, roughly
	Dirs     int
	MaxDepth int
	Symlinks int
	Links    int // hard links to earlier files
	Seed     uint64
}

// etcSpec is an /etc-like tree: about 2 500 files and 22 MB, as in the
// original BaseFS measurement (2 512 files, 22 MB).
var etcSpec = treeSpec{Files: 2500, Bytes: 22 << 20, Dirs: 260, MaxDepth: 6, Symlinks: 120, Links: 4, Seed: 1}

// smallSpec is a tree small enough for functional tests.
var smallSpec = treeSpec{Files: 120, Bytes: 600 << 10, Dirs: 18, MaxDepth: 4, Symlinks: 8, Links: 2, Seed: 7}

// treeStats describes what genTree wrote.
type treeStats struct {
	Files, Dirs, Symlinks, Links int
	Bytes                        int64
}

// genTree writes a deterministic tree under root (which must not exist):
// many small text files, some medium ones, a few large ones, nested
// directories (some deep), symlinks and a few hard links, with varied modes
// and modification times. The same spec always gives the same tree.
func genTree(tb testing.TB, root string, s treeSpec) treeStats {
	tb.Helper()
	rng := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	var st treeStats
	must := func(err error) {
		if err != nil {
			tb.Helper()
			tb.Fatal(err)
		}
	}
	must(os.MkdirAll(root, 0o755))
	dirs := []string{root}
	depth := map[string]int{root: 0}
	words := []string{"port", "listen", "enable", "user", "group", "path", "timeout", "allow", "deny", "include",
		"server", "address", "interface", "log", "level", "cache", "size", "mode", "key", "value"}
	for i := 0; i < s.Dirs; i++ {
		var parent string
		// Every tenth directory goes as deep as it can, so a few chains are deep.
		if i%10 == 9 {
			parent = dirs[len(dirs)-1]
		} else {
			parent = dirs[rng.IntN(len(dirs))]
		}
		if depth[parent] >= s.MaxDepth {
			parent = root
		}
		d := filepath.Join(parent, fmt.Sprintf("%s.d%d", words[rng.IntN(len(words))], i))
		must(os.Mkdir(d, 0o755))
		depth[d] = depth[parent] + 1
		dirs = append(dirs, d)
		st.Dirs++
	}
	// Sizes: 60% tiny, 30% small, 9% medium, 1% large; scaled to s.Bytes.
	sizes := make([]int, s.Files)
	var total int64
	for i := range sizes {
		switch p := rng.IntN(100); {
		case p < 60:
			sizes[i] = 40 + rng.IntN(1000)
		case p < 90:
			sizes[i] = 1024 + rng.IntN(15<<10)
		case p < 99:
			sizes[i] = 16<<10 + rng.IntN(112<<10)
		default:
			sizes[i] = 256<<10 + rng.IntN(1<<20)
		}
		total += int64(sizes[i])
	}
	scale := float64(s.Bytes) / float64(total)
	var files []string
	for i, n := range sizes {
		n = max(1, int(float64(n)*scale))
		d := dirs[rng.IntN(len(dirs))]
		name := fmt.Sprintf("%s%d.conf", words[rng.IntN(len(words))], i)
		p := filepath.Join(d, name)
		var b strings.Builder
		b.Grow(n + 64)
		for b.Len() < n {
			fmt.Fprintf(&b, "%s_%d = %s %d\n", words[rng.IntN(len(words))], rng.IntN(1000),
				words[rng.IntN(len(words))], rng.Uint32())
		}
		data := []byte(b.String())[:n]
		mode := os.FileMode(0o644)
		switch rng.IntN(20) {
		case 0:
			mode = 0o755
		case 1:
			mode = 0o600
		case 2:
			mode = 0o640
		}
		must(os.WriteFile(p, data, mode))
		must(os.Chmod(p, mode))
		mt := time.Unix(1_600_000_000+int64(rng.IntN(100_000_000)), int64(rng.IntN(1_000_000_000)))
		must(os.Chtimes(p, mt, mt))
		files = append(files, p)
		st.Files++
		st.Bytes += int64(n)
	}
	for i := 0; i < s.Symlinks; i++ {
		d := dirs[rng.IntN(len(dirs))]
		target := files[rng.IntN(len(files))]
		rel, err := filepath.Rel(d, target)
		must(err)
		must(os.Symlink(rel, filepath.Join(d, fmt.Sprintf("link%d", i))))
		st.Symlinks++
	}
	for i := 0; i < s.Links; i++ {
		src := files[rng.IntN(len(files))]
		must(os.Link(src, filepath.Join(filepath.Dir(src), fmt.Sprintf("hard%d.conf", i))))
		st.Links++
	}
	// Directory times last, after their contents changed.
	for i := len(dirs) - 1; i >= 0; i-- {
		mt := time.Unix(1_600_000_000+int64(rng.IntN(100_000_000)), 0)
		must(os.Chtimes(dirs[i], mt, mt))
	}
	return st
}
