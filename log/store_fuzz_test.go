package log

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// storeFuzzSeeds returns store files for the fuzz corpus: a valid store of
// entries and blocks, and that store torn, with a flipped byte, with garbage
// in the middle, with an oversized length, and other edge cases.
func storeFuzzSeeds(t testing.TB) map[string][]byte {
	rng := rand.New(rand.NewPCG(42, 42))
	priv := storeTestKey(rng)
	root := storeTestRoot(t, priv, rng)
	es, bs := storeTestBatch(t, priv, root.Hash(), 0, 5, 2, rng)
	valid := recAppend(nil, recHeader, append([]byte(storeFormatName), storeFormatVersion))
	valid = recAppend(valid, recEntry, root.Encoded())
	for _, b := range bs {
		valid = recAppend(valid, recBlock, b)
	}
	for _, e := range es {
		valid = recAppend(valid, recEntry, e.Encoded())
	}
	mid := len(valid) / 2
	flipped := bytes.Clone(valid)
	flipped[mid] ^= 0x40
	huge := recAppend(nil, recBlock, []byte("x"))
	huge[8], huge[9], huge[10], huge[11] = 0xff, 0xff, 0xff, 0xff
	undecodable := recAppend(bytes.Clone(valid), recEntry, []byte{FormatVersion, byte(ActMkdir), 2, 1, '/'})
	return map[string][]byte{
		"empty":         {},
		"valid":         valid,
		"torn":          valid[:len(valid)-7],
		"flipped":       flipped,
		"garbage":       append(append(bytes.Clone(valid[:mid]), bytes.Repeat([]byte{0xba, 0x5e}, 40)...), valid[mid:]...),
		"zeros":         append(append(bytes.Clone(valid[:mid]), make([]byte, 100)...), valid[mid:]...),
		"huge-length":   append(huge, valid...),
		"undecodable":   undecodable,
		"doubled":       append(bytes.Clone(valid), valid...),
		"magic-only":    []byte(recMagicStr + recMagicStr + recMagicStr),
		"other-version": recAppend(nil, recHeader, append([]byte(storeFormatName), 9)),
	}
}

// TestStoreFuzzSeeds writes the seed corpus of FuzzStoreRecords into
// testdata when BASEFS_WRITE_FUZZ_SEEDS=1, and otherwise checks it is there.
func TestStoreFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzStoreRecords")
	for name, b := range storeFuzzSeeds(t) {
		path := filepath.Join(dir, "seed-"+name)
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if os.Getenv("BASEFS_WRITE_FUZZ_SEEDS") == "1" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("seed corpus file missing (BASEFS_WRITE_FUZZ_SEEDS=1 writes it): %v", err)
		}
	}
}

// FuzzStoreRecords opens arbitrary bytes as a store file. OpenStore must
// never panic, must allocate no more than a bounded multiple of the file's
// size, and must either refuse the file (only for another format version)
// or load it consistently: a second open of the result finds the same
// entries, blocks and damaged stretches, and no torn tail. Run it with
// go test -run '^$' -fuzz FuzzStoreRecords -fuzzminimizetime 10s ./log/
func FuzzStoreRecords(f *testing.F) {
	for _, b := range storeFuzzSeeds(f) {
		f.Add(b)
	}
	// One directory for every input (a fresh one each time would make the
	// target slow, and minimizing interesting inputs slower still).
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		storeTestWrite(t, dir, data)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		s, err := OpenStore(dir, StoreOptions{NoSync: true, verify: storeFuzzVerify})
		runtime.ReadMemStats(&m1)
		if alloc, limit := m1.TotalAlloc-m0.TotalAlloc, uint64(8<<20+200*len(data)); alloc > limit {
			t.Fatalf("open of %d bytes allocated %d bytes, more than %d", len(data), alloc, limit)
		}
		if err != nil {
			if total, typ, fault := recCheck(data); fault.kind == recOK && typ == recHeader &&
				recCheckHeader(data[recHeaderLen:total]) != nil {
				return // another format: refusing it is right
			}
			t.Fatalf("open failed: %v", err)
		}
		defer s.Close()
		size := s.Size()
		if size > int64(len(data)) && size != int64(len(storeFuzzHeader())) {
			t.Fatalf("store of %d bytes grew to %d at open", len(data), size)
		}
		if fi, err := os.Stat(filepath.Join(dir, StoreFileName)); err != nil || fi.Size() != size {
			t.Fatalf("file is %d bytes, Size() %d (%v)", fi.Size(), size, err)
		}
		end := int64(0)
		for _, c := range s.Corruptions() {
			if c.Offset < end || c.Length <= 0 || c.Offset+c.Length > size {
				t.Fatalf("corruption %v out of order or outside the file of %d bytes", c, size)
			}
			end = c.Offset + c.Length
		}
		seen := map[Hash]bool{}
		for _, e := range s.Entries() {
			if seen[e.Hash()] {
				t.Fatalf("entry %s loaded twice", e.Hash().Short())
			}
			seen[e.Hash()] = true
			if d, err := Decode(e.Encoded()); err != nil || d.Hash() != e.Hash() {
				t.Fatalf("loaded entry does not decode to itself: %v", err)
			}
		}
		s.mu.Lock()
		var blocks []Hash
		for h := range s.blocks {
			blocks = append(blocks, h)
		}
		s.mu.Unlock()
		for _, h := range blocks {
			if _, err := s.Block(h); err != nil {
				t.Fatalf("indexed block %s: %v", h.Short(), err)
			}
		}
		entries, nblocks, cs := s.Entries(), s.NumBlocks(), s.Corruptions()
		// Loaded entries read their bytes from the open store: copy them
		// before closing it.
		for i, e := range entries {
			entries[i] = storeTestDetached(t, e)
		}
		s.Close()

		logger, logs := storeTestLog()
		s2, err := OpenStore(dir, StoreOptions{NoSync: true, Logger: logger, verify: storeFuzzVerify})
		if err != nil {
			t.Fatalf("second open: %v", err)
		}
		defer s2.Close()
		if bytes.Contains([]byte(logs.String()), []byte("torn tail")) || s2.Size() != size {
			t.Fatalf("second open truncated again: size %d → %d\n%s", size, s2.Size(), logs)
		}
		storeTestSameEntries(t, s2.Entries(), entries)
		// The same stretches are damaged. (Their reasons may differ: a
		// damaged record whose claimed length ran into a torn tail that
		// the first open cut off is now "cut short".)
		spans := func(cs []Corruption) string {
			var b bytes.Buffer
			for _, c := range cs {
				fmt.Fprintf(&b, "%d+%d ", c.Offset, c.Length)
			}
			return b.String()
		}
		if s2.NumBlocks() != nblocks || spans(s2.Corruptions()) != spans(cs) {
			t.Fatalf("second open: %d blocks, corruptions %v; first: %d, %v", s2.NumBlocks(), s2.Corruptions(), nblocks, cs)
		}
	})
}

// storeFuzzHeader is the header record OpenStore writes into an empty file.
func storeFuzzHeader() []byte {
	return recAppend(nil, recHeader, append([]byte(storeFormatName), storeFormatVersion))
}

// storeFuzzVerify stands in for Entry.Verify in the fuzz target, where real
// signature checks would take most of the time: it rejects half the
// entries, by their hash, so both outcomes are exercised.
func storeFuzzVerify(e *Entry) error {
	if e.Hash()[0]&1 == 1 {
		return ErrSignature
	}
	return nil
}
