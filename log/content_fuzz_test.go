package log

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime/metrics"
	"testing"

	"github.com/gabstv/go-bsdiff/pkg/bsdiff"
	"github.com/gabstv/go-bsdiff/pkg/bspatch"
)

// The fuzz targets' seed corpora live in testdata/fuzz/<target>/. They are
// written by TestContentWriteFuzzCorpus (run it with
// BASEFS_WRITE_FUZZ_CORPUS=1 to regenerate them); crashers that fuzzing
// finds are kept there beside them as regression inputs.

// contentFuzzAllocLimit bounds the bytes one decode of fuzzed input may
// allocate. Fuzzed sizes are kept at most contentFuzzMaxSize; the decoders
// may allocate a few times the output and a zstd window besides.
const (
	contentFuzzMaxSize    = 16 << 20
	contentFuzzAllocLimit = 4*contentFuzzMaxSize + 2*MaxZstdWindow + (16 << 20)
)

// contentHeapAllocs returns the bytes allocated so far by the process.
func contentHeapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// contentFuzzRef builds the reference FuzzDecodeContent decodes, and the
// blocks it may fetch. mode&3 selects how:
//
//	0: ref is a content field as it appears in an entry, parsed by the
//	   entry decoder; the blocks are payload's honest tree.
//	1: an honest tree (or inline payload) of payload repeated 1+repeat
//	   times, with the fuzzed size and encoding (and hostile as the content
//	   hash if it is 32 bytes long).
//	2: as 1, with the first tree block (or data block) replaced by hostile.
//	3: as 1, with the fuzzed depth (mode>>2) and payload length (size).
func contentFuzzRef(ref, payload, base, hostile []byte, size uint64, enc, mode, repeat uint8) (*Content, *contentStore) {
	s := newContentStore()
	if int(repeat) > 0 && len(payload)*(1+int(repeat)) <= 1<<20 {
		payload = bytes.Repeat(payload, 1+int(repeat))
	}
	honest, blocks, err := EncodeContent(payload, EncodeOptions{Encodings: []Encoding{EncRaw}})
	if err != nil {
		return nil, s
	}
	s.put(blocks)
	if mode&3 == 0 {
		c, err := decodeContent(ref)
		if err != nil {
			return nil, s
		}
		return c, s
	}
	c := honest
	c.Size = size % (contentFuzzMaxSize + 1)
	c.Encoding = Encoding(enc % 4)
	c.Hash = Sum(payload)
	if mode&3 == 1 && len(hostile) == len(c.Hash) {
		copy(c.Hash[:], hostile) // the seeds give the decoded content's hash
	}
	if c.Encoding.IsDelta() {
		c.Base = Sum(base)
	}
	switch mode & 3 {
	case 2:
		s.put([][]byte{hostile})
		if c.Blocks != nil {
			// Replace the first block of the level below the roots, or
			// the first root itself at depth 0.
			if c.Depth == 0 {
				c.Blocks[0] = Sum(hostile)
			} else {
				root := bytes.Clone(s.blocks[c.Blocks[0]])
				copy(root, make([]byte, 32))
				copy(root, hostile)
				s.put([][]byte{root})
				c.Blocks[0] = Sum(root)
			}
		} else {
			c.Inline = hostile
		}
	case 3:
		c.Depth = (mode >> 2) % (MaxContentDepth + 2)
		c.PayloadLen = size % (contentFuzzMaxSize + 1)
		if c.Blocks == nil && len(hostile) >= 32 {
			c.Inline = nil
			for i := 0; i+32 <= len(hostile) && i < 32*MaxRootBlocks; i += 32 {
				var h Hash
				copy(h[:], hostile[i:])
				c.Blocks = append(c.Blocks, h)
			}
			s.put([][]byte{hostile})
		}
	}
	return c, s
}

func FuzzDecodeContent(f *testing.F) {
	f.Add([]byte{}, []byte("hello"), []byte("hell"), []byte{}, uint64(5), uint8(0), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, ref, payload, base, hostile []byte, size uint64, enc, mode, repeat uint8) {
		c, s := contentFuzzRef(ref, payload, base, hostile, size, enc, mode, repeat)
		if c == nil {
			return
		}
		bases := func(h Hash) ([]byte, error) {
			if h != Sum(base) {
				return nil, fmt.Errorf("no base %s: %w", h.Short(), ErrBlockMissing)
			}
			return base, nil
		}
		limit := c.Size
		if c.Blocks != nil {
			limit = max(limit, c.PayloadLen)
		}
		check := limit <= contentFuzzMaxSize
		before := contentHeapAllocs()
		out, err := DecodeContent(c, s.get, bases)
		if alloc := contentHeapAllocs() - before; check && alloc > contentFuzzAllocLimit {
			t.Fatalf("decode of a %d-byte %s content allocated %d bytes", c.Size, c.Encoding, alloc)
		}
		if err == nil && (uint64(len(out)) != c.Size || Sum(out) != c.Hash) {
			t.Fatalf("decode returned %d bytes that do not match the reference", len(out))
		}
		if err != nil && !errors.Is(err, ErrContentCorrupt) && !errors.Is(err, ErrBlockMissing) {
			t.Fatalf("decode error of an unexpected kind: %v", err)
		}
		all, missing, err := ContentBlocks(c, s.get)
		if err == nil {
			if len(missing) > len(all) {
				t.Fatalf("%d missing of %d blocks", len(missing), len(all))
			}
			if c.Blocks == nil && len(all) != 0 {
				t.Fatalf("inline content lists %d blocks", len(all))
			}
		}
	})
}

func FuzzBspatch(f *testing.F) {
	f.Add([]byte("old"), []byte("BSDIFF40"), uint32(3))
	f.Fuzz(func(t *testing.T, old, patch []byte, size uint32) {
		n := uint64(size) % (MaxBsdiffSize + 2)
		before := contentHeapAllocs()
		out, err := contentBspatch(old, patch, n)
		if alloc := contentHeapAllocs() - before; alloc > contentFuzzAllocLimit {
			t.Fatalf("patch to %d bytes allocated %d bytes", n, alloc)
		}
		if err != nil {
			if !errors.Is(err, ErrContentCorrupt) {
				t.Fatalf("error of an unexpected kind: %v", err)
			}
			return
		}
		if uint64(len(out)) != n {
			t.Fatalf("patch produced %d bytes, want %d", len(out), n)
		}
		// Where ours succeeds, go-bsdiff's own patcher must agree with it
		// (it preallocates the header's size, so only small ones).
		if n > 1<<20 {
			return
		}
		theirs, err := contentFuzzTheirPatch(old, patch)
		if err == nil && !bytes.Equal(theirs, out) {
			t.Fatalf("go-bsdiff's patcher gives other bytes")
		}
	})
}

func contentFuzzTheirPatch(old, patch []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return bspatch.Bytes(old, patch)
}

func FuzzZstdDecode(f *testing.F) {
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, []byte{}, uint32(0), false)
	cc := NewContentCodec()
	f.Fuzz(func(t *testing.T, payload, dict []byte, size uint32, useDict bool) {
		n := uint64(size) % (contentFuzzMaxSize + 1)
		if !useDict {
			dict = nil
		} else if dict == nil {
			dict = []byte{}
		}
		before := contentHeapAllocs()
		out, err := cc.zstdDecode(payload, dict, n)
		if alloc := contentHeapAllocs() - before; alloc > contentFuzzAllocLimit {
			t.Fatalf("zstd decode to at most %d bytes allocated %d bytes", n, alloc)
		}
		if err == nil && uint64(len(out)) > n {
			t.Fatalf("zstd decode gave %d bytes, more than %d", len(out), n)
		}
		if err != nil && !errors.Is(err, ErrContentCorrupt) {
			t.Fatalf("error of an unexpected kind: %v", err)
		}
	})
}

// contentFuzzValue formats one value as a line of a corpus file.
func contentFuzzValue(v any) string {
	switch v := v.(type) {
	case []byte:
		return fmt.Sprintf("[]byte(%q)", v)
	case uint64:
		return fmt.Sprintf("uint64(%d)", v)
	case uint32:
		return fmt.Sprintf("uint32(%d)", v)
	case uint8:
		return fmt.Sprintf("byte(%q)", v)
	case bool:
		return fmt.Sprintf("bool(%v)", v)
	}
	panic(fmt.Sprintf("no corpus format for %T", v))
}

func contentWriteCorpusFile(t *testing.T, target, name string, vals ...any) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		b.WriteString(contentFuzzValue(v) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestContentWriteFuzzCorpus regenerates the seed corpora from valid
// encodings of generated files, when BASEFS_WRITE_FUZZ_CORPUS=1.
func TestContentWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("BASEFS_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set BASEFS_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz seeds")
	}
	r := rand.New(rand.NewSource(1))
	for i, n := range []int{0, 40, 300, 2000, 9000} {
		base := contentConfig(r, n+50)
		data := contentEdit(r, base, 3)
		for _, e := range []Encoding{EncRaw, EncZstd, EncZstdDct, EncBsdiff} {
			c, _, err := EncodeContent(data, EncodeOptions{Base: base, Encodings: []Encoding{e}})
			if err != nil {
				t.Fatal(err)
			}
			var payload []byte
			cc := NewContentCodec()
			switch e {
			case EncRaw:
				payload = data
			case EncZstd:
				payload = cc.zstdEncode(data, nil)
			case EncZstdDct:
				payload = cc.zstdEncode(data, base)
			case EncBsdiff:
				if payload, err = contentBsdiff(base, data); err != nil {
					t.Fatal(err)
				}
			}
			name := fmt.Sprintf("seed-%d-%s", i, e)
			// Mode 1: an honest reference to this payload, right size.
			sum := Sum(data)
			contentWriteCorpusFile(t, "FuzzDecodeContent", name, []byte{}, payload, base, sum[:], uint64(len(data)), uint8(e), uint8(1), uint8(0))
			// Mode 0: the reference as an entry carries it.
			contentWriteCorpusFile(t, "FuzzDecodeContent", name+"-ref", c.appendTo(nil), payload, base, []byte{}, uint64(0), uint8(0), uint8(0), uint8(0))
			switch e {
			case EncBsdiff:
				contentWriteCorpusFile(t, "FuzzBspatch", name, base, payload, uint32(len(data)))
			case EncZstd, EncZstdDct:
				contentWriteCorpusFile(t, "FuzzZstdDecode", name, payload, base, uint32(len(data)), e == EncZstdDct)
			}
		}
	}
	// Trees: hostile first blocks and fuzzed shapes over a repeated payload.
	p := contentRandom(r, 900)
	contentWriteCorpusFile(t, "FuzzDecodeContent", "seed-tree-hostile", []byte{}, p, []byte{}, bytes.Repeat([]byte{7}, 33), uint64(9000), uint8(0), uint8(2), uint8(9))
	contentWriteCorpusFile(t, "FuzzDecodeContent", "seed-tree-shape", []byte{}, p, []byte{}, bytes.Repeat([]byte{9}, 64), uint64(2000), uint8(1), uint8(3|1<<2), uint8(40))
	patch, err := bsdiff.Bytes([]byte("a small old file"), []byte("a small new file, longer"))
	if err != nil {
		t.Fatal(err)
	}
	contentWriteCorpusFile(t, "FuzzBspatch", "seed-small", []byte("a small old file"), patch, uint32(24))
}
