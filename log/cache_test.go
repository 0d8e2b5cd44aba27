package log

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestContentCacheBasics(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	c, err := OpenContentCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	data := contentConfig(r, 5000)
	h := Sum(data)
	if c.Has(h) {
		t.Fatal("empty cache has a content")
	}
	if _, err := c.Get(h); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("get of a missing content: %v", err)
	}
	if _, err := c.Open(h); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open of a missing content: %v", err)
	}
	if err := c.Put(h, data[1:]); !errors.Is(err, ErrContentCorrupt) {
		t.Fatalf("put of bytes that do not match: %v", err)
	}
	if c.Has(h) {
		t.Fatal("a rejected put left a file")
	}
	if err := c.Put(h, data); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(h, data); err != nil {
		t.Fatalf("second put: %v", err)
	}
	want := filepath.Join(c.Dir(), h.String()[:2], h.String())
	if st, err := os.Stat(want); err != nil || st.Size() != int64(len(data)) {
		t.Fatalf("file %s: %v", want, err)
	}
	got, err := c.Get(h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %v", err)
	}
	f, err := c.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := f.ReadAt(buf, 1000); err != nil || !bytes.Equal(buf, data[1000:1100]) {
		t.Fatalf("ReadAt: %v", err)
	}
	f.Close()
	empty := Sum(nil)
	if err := c.Put(empty, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(empty); err != nil || len(got) != 0 {
		t.Fatalf("empty content: %v", err)
	}
	if err := c.Remove(h); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(h); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if c.Has(h) || !c.Has(empty) {
		t.Fatal("remove removed the wrong content")
	}
	// A cache reopened on the same directory sees the same contents.
	c2, err := OpenContentCache(c.Dir())
	if err != nil || !c2.Has(empty) {
		t.Fatalf("reopen: %v", err)
	}
	// A file is not a directory.
	if _, err := OpenContentCache(want + "x"); err != nil {
		t.Fatalf("open of a new directory: %v", err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o600)
	if _, err := OpenContentCache(notDir); err == nil {
		t.Fatal("cache opened on a file")
	}
}

func TestContentCacheCorruptFile(t *testing.T) {
	c, err := OpenContentCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("the cached content")
	h := Sum(data)
	if err := c.Put(h, data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.Dir(), h.String()[:2], h.String())
	if err := os.WriteFile(p, []byte("the cached contenT"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(h)
	if !errors.Is(err, ErrContentCorrupt) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("get of a damaged file: %v", err)
	}
	if c.Has(h) {
		t.Fatal("damaged file kept")
	}
	if err := c.Put(h, data); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(h); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after put again: %v", err)
	}
}

func TestContentCacheRetain(t *testing.T) {
	c, err := OpenContentCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var hs []Hash
	for i := range 50 {
		d := []byte(fmt.Sprintf("content %d", i))
		h := Sum(d)
		hs = append(hs, h)
		if err := c.Put(h, d); err != nil {
			t.Fatal(err)
		}
	}
	// Files the cache did not write, and a temporary file of an
	// interrupted write.
	sub := filepath.Join(c.Dir(), hs[0].String()[:2])
	stray := []string{filepath.Join(c.Dir(), "README"), filepath.Join(sub, "notes.txt"), filepath.Join(sub, hs[1].String())}
	for _, p := range stray {
		os.WriteFile(p, []byte("x"), 0o600)
	}
	temp := filepath.Join(sub, "."+hs[0].String()+".tmp123456")
	os.WriteFile(temp, []byte("partial"), 0o600)

	keep := make(map[Hash]bool)
	for i, h := range hs {
		if i%3 == 0 {
			keep[h] = true
		}
	}
	removed, err := c.Retain(func(h Hash) bool { return keep[h] })
	if err != nil {
		t.Fatal(err)
	}
	if removed != 50-len(keep) {
		t.Errorf("removed %d, want %d", removed, 50-len(keep))
	}
	for _, h := range hs {
		if c.Has(h) != keep[h] {
			t.Errorf("%s: has %v, keep %v", h.Short(), c.Has(h), keep[h])
		}
	}
	if _, err := os.Stat(temp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary file survived: %v", err)
	}
	for _, p := range stray {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("stray file %s removed: %v", p, err)
		}
	}
}

func TestContentCacheConcurrent(t *testing.T) {
	seed := contentSeed(t)
	c, err := OpenContentCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	contents := make([][]byte, 40)
	r := rand.New(rand.NewSource(seed))
	for i := range contents {
		contents[i] = contentConfig(r, 100+r.Intn(20_000))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed + int64(g)))
			for range 200 {
				d := contents[r.Intn(len(contents))]
				h := Sum(d)
				var err error
				switch r.Intn(5) {
				case 0, 1:
					err = c.Put(h, d)
				case 2:
					var got []byte
					got, err = c.Get(h)
					if errors.Is(err, fs.ErrNotExist) {
						err = nil // removed meanwhile: a miss
					} else if err == nil && !bytes.Equal(got, d) {
						err = errors.New("wrong bytes")
					}
				case 3:
					err = c.Remove(h)
				default:
					_, err = c.Retain(func(x Hash) bool { return x != h })
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d: %w", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Whatever remains is intact.
	if _, err := c.Retain(func(h Hash) bool {
		if _, err := c.Get(h); err != nil {
			t.Errorf("after the storm: %v", err)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}
