package log

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dsbzip2 "github.com/dsnet/compress/bzip2"
	"github.com/gabstv/go-bsdiff/pkg/bsdiff"
	"github.com/gabstv/go-bsdiff/pkg/bspatch"
)

// contentSeed returns a seed for a test's randomness: BASEFS_SEED if set,
// otherwise the clock. The seed is printed if the test fails.
func contentSeed(t testing.TB) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("BASEFS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("BASEFS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (rerun with BASEFS_SEED=%d)", seed, seed)
		}
	})
	return seed
}

// contentConfig returns n bytes of text like a configuration file.
func contentConfig(r *rand.Rand, n int) []byte {
	keys := []string{"hostname", "address", "gateway", "mtu", "dns", "user", "key", "port", "enabled", "interface", "ssh_key", "slice"}
	var b bytes.Buffer
	for b.Len() < n {
		switch r.Intn(4) {
		case 0:
			fmt.Fprintf(&b, "[node%d]\n", r.Intn(500))
		case 1:
			fmt.Fprintf(&b, "%s = %d.%d.%d.%d\n", keys[r.Intn(len(keys))], r.Intn(256), r.Intn(256), r.Intn(256), r.Intn(256))
		case 2:
			fmt.Fprintf(&b, "%s = %x\n", keys[r.Intn(len(keys))], r.Uint64())
		default:
			fmt.Fprintf(&b, "%s = %s%d # updated by node%d\n", keys[r.Intn(len(keys))], keys[r.Intn(len(keys))], r.Intn(100), r.Intn(500))
		}
	}
	return b.Bytes()[:n]
}

func contentRandom(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

// contentEdit returns a copy of b with a few random replacements,
// insertions and deletions.
func contentEdit(r *rand.Rand, b []byte, edits int) []byte {
	out := bytes.Clone(b)
	for range edits {
		pos := 0
		if len(out) > 0 {
			pos = r.Intn(len(out))
		}
		switch r.Intn(3) {
		case 0:
			for i := pos; i < min(pos+10, len(out)); i++ {
				out[i] = byte('a' + r.Intn(26))
			}
		case 1:
			ins := []byte(fmt.Sprintf("new_key%d = %d\n", r.Intn(1000), r.Intn(1000)))
			out = append(out[:pos], append(ins, out[pos:]...)...)
		default:
			end := min(pos+1+r.Intn(40), len(out))
			out = append(out[:pos], out[end:]...)
		}
	}
	return out
}

// contentStore is an in-memory block store.
type contentStore struct {
	mu     sync.Mutex
	blocks map[Hash][]byte
}

func newContentStore() *contentStore { return &contentStore{blocks: make(map[Hash][]byte)} }

func (s *contentStore) put(blocks [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range blocks {
		s.blocks[Sum(b)] = b
	}
}

func (s *contentStore) get(h Hash) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blocks[h]
	if !ok {
		return nil, ErrBlockMissing
	}
	return b, nil
}

// contentBases returns a base source holding the given versions.
func contentBases(versions ...[]byte) func(Hash) ([]byte, error) {
	m := make(map[Hash][]byte)
	for _, v := range versions {
		m[Sum(v)] = v
	}
	return func(h Hash) ([]byte, error) {
		b, ok := m[h]
		if !ok {
			return nil, fmt.Errorf("base %s not held", h.Short())
		}
		return b, nil
	}
}

// checkContentRef checks the structural promises of an encoded reference.
func checkContentRef(t *testing.T, c *Content, blocks [][]byte) {
	t.Helper()
	if err := c.check(); err != nil {
		t.Fatalf("reference fails check: %v", err)
	}
	if c.Blocks == nil {
		if len(blocks) != 0 {
			t.Fatalf("inline content came with %d blocks", len(blocks))
		}
		return
	}
	if c.PayloadLen <= MaxInline {
		t.Fatalf("payload of %d bytes in blocks", c.PayloadLen)
	}
	for _, b := range blocks {
		if len(b) > BlockSize || len(b) == 0 {
			t.Fatalf("block of %d bytes", len(b))
		}
	}
	s := newContentStore()
	s.put(blocks)
	all, missing, err := ContentBlocks(c, s.get)
	if err != nil || len(missing) != 0 {
		t.Fatalf("ContentBlocks: %v, missing %d", err, len(missing))
	}
	if len(all) != len(blocks) {
		t.Fatalf("ContentBlocks lists %d blocks, encoder returned %d", len(all), len(blocks))
	}
	for _, h := range all {
		if _, ok := s.blocks[h]; !ok {
			t.Fatalf("ContentBlocks lists %s, which the encoder did not return", h.Short())
		}
	}
}

// roundTripEntry puts c into a signed write entry, decodes the entry and
// returns its content reference.
func roundTripEntry(t *testing.T, priv ed25519.PrivateKey, c *Content) *Content {
	t.Helper()
	e := &Entry{Action: ActWrite, Parent: Sum([]byte("parent")), Path: "/etc/config", Time: 1, Mode: 0o644, Content: c}
	if err := e.Sign(priv); err != nil {
		t.Fatalf("sign: %v", err)
	}
	d, err := DecodeVerified(e.Encoded())
	if err != nil {
		t.Fatalf("decode entry: %v", err)
	}
	return d.Content
}

func TestContentRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	_, priv, _ := ed25519.GenerateKey(r)
	cc := NewContentCodec()
	sizes := []int{0, 1, 255, 256, 257, 896, 897, 8 * 896, 8*896 + 1, 224 * 896, 1 << 20}
	kinds := map[string]func(*rand.Rand, int) []byte{"random": contentRandom, "config": contentConfig}
	forced := [][]Encoding{nil, {EncRaw}, {EncZstd}, {EncZstdDct}, {EncBsdiff}}
	for _, n := range sizes {
		for kind, gen := range kinds {
			data := gen(r, n)
			base := append([]byte{}, contentEdit(r, data, 3)...) // never nil
			for _, encs := range forced {
				name := fmt.Sprintf("%d/%s/%v", n, kind, encs)
				if testing.Short() && len(encs) == 1 && encs[0] == EncBsdiff && n > 64<<10 {
					continue // bsdiff's suffix sort is slow under -race
				}
				t.Run(name, func(t *testing.T) {
					c, blocks, err := cc.Encode(data, EncodeOptions{Base: base, Encodings: encs})
					if err != nil {
						t.Fatalf("encode: %v", err)
					}
					if len(encs) == 1 && c.Encoding != encs[0] {
						t.Fatalf("forced %s, got %s", encs[0], c.Encoding)
					}
					if c.Size != uint64(n) || c.Hash != Sum(data) {
						t.Fatalf("reference says %d bytes, hash %s", c.Size, c.Hash.Short())
					}
					checkContentRef(t, c, blocks)
					c2 := roundTripEntry(t, priv, c)
					s := newContentStore()
					s.put(blocks)
					got, err := cc.Decode(c2, s.get, contentBases(base))
					if err != nil {
						t.Fatalf("decode %s: %v", c.Encoding, err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("decode %s: wrong bytes", c.Encoding)
					}
				})
			}
		}
	}
}

// TestContentChoosesSmallest checks that the chosen encoding is no larger
// than each forced one.
func TestContentChoosesSmallest(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	cc := NewContentCodec()
	for _, n := range []int{0, 10, 300, 5000, 100_000} {
		for _, data := range [][]byte{contentConfig(r, n), contentRandom(r, n)} {
			base := append([]byte{}, contentEdit(r, data, 2)...) // never nil
			chosen, _, err := cc.Encode(data, EncodeOptions{Base: base})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range []Encoding{EncRaw, EncZstd, EncZstdDct, EncBsdiff} {
				forced, _, err := cc.Encode(data, EncodeOptions{Base: base, Encodings: []Encoding{e}})
				if err != nil {
					t.Fatal(err)
				}
				if contentPayloadLen(chosen) > contentPayloadLen(forced) {
					t.Errorf("%d bytes: chose %s (%d bytes) over %s (%d bytes)", n, chosen.Encoding, contentPayloadLen(chosen), e, contentPayloadLen(forced))
				}
			}
		}
	}
}

func contentPayloadLen(c *Content) uint64 {
	if c.Blocks == nil {
		return uint64(len(c.Inline))
	}
	return c.PayloadLen
}

func TestContentEncodeOptions(t *testing.T) {
	data := []byte("hello, world")
	if _, _, err := EncodeContent(data, EncodeOptions{Encodings: []Encoding{EncBsdiff}}); err == nil {
		t.Error("forced delta without base: no error")
	}
	if _, _, err := EncodeContent(data, EncodeOptions{Base: data, BaseHash: Sum([]byte("other"))}); err == nil {
		t.Error("wrong base hash: no error")
	}
	if _, _, err := EncodeContent(data, EncodeOptions{Encodings: []Encoding{Encoding(9)}}); err == nil {
		t.Error("unknown encoding: no error")
	}
	c, _, err := EncodeContent(bytes.Repeat(data, 100), EncodeOptions{Base: bytes.Repeat(data, 99), NoDelta: true})
	if err != nil || c.Encoding.IsDelta() {
		t.Errorf("NoDelta gave %v, %v", c.Encoding, err)
	}
	c, _, err = EncodeContent(bytes.Repeat(data, 100), EncodeOptions{Base: bytes.Repeat(data, 99)})
	if err != nil || !c.Encoding.IsDelta() || c.Base != Sum(bytes.Repeat(data, 99)) {
		t.Errorf("delta against a computed base hash: %v %s, %v", c.Encoding, c.Base.Short(), err)
	}
}

func TestContentTreeShape(t *testing.T) {
	cases := []struct {
		payload int
		depth   uint8
		roots   int
		blocks  int // distinct blocks, payload bytes all different
	}{
		{257, 0, 1, 1},
		{8 * 896, 0, 8, 8},
		{8*896 + 1, 1, 1, 9 + 1},
		{224 * 896, 1, 8, 224 + 8},
		{224*896 + 1, 2, 1, 225 + 9 + 1},
		{8 * 28 * 28 * 896, 2, 8, 8*28*28 + 8*28 + 8},
		{8*28*28*896 + 1, 3, 1, 8*28*28 + 1 + 8*28 + 1 + 9 + 1},
	}
	r := rand.New(rand.NewSource(contentSeed(t)))
	for _, tc := range cases {
		data := contentRandom(r, tc.payload)
		c, blocks, err := EncodeContent(data, EncodeOptions{Encodings: []Encoding{EncRaw}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Depth != tc.depth || len(c.Blocks) != tc.roots || len(blocks) != tc.blocks || c.PayloadLen != uint64(tc.payload) {
			t.Errorf("payload %d: depth %d, %d roots, %d blocks; want %d, %d, %d", tc.payload, c.Depth, len(c.Blocks), len(blocks), tc.depth, tc.roots, tc.blocks)
		}
		// Every block's length follows the shape rule.
		for i, b := range blocks {
			if i < len(blocks)-1 && len(b) != BlockSize && i+1 < (tc.payload+BlockSize-1)/BlockSize {
				t.Errorf("payload %d: data block %d is %d bytes", tc.payload, i, len(b))
			}
		}
	}
	// Repeated blocks are stored once.
	c, blocks, err := EncodeContent(make([]byte, 20*BlockSize), EncodeOptions{Encodings: []Encoding{EncRaw}})
	if err != nil || len(blocks) != 2 || c.Depth != 1 {
		t.Errorf("zeros: %d blocks at depth %d, %v", len(blocks), c.Depth, err)
	}
	if got, err := DecodeContent(c, newStoreOf(blocks).get, nil); err != nil || !bytes.Equal(got, make([]byte, 20*BlockSize)) {
		t.Errorf("zeros: decode: %v", err)
	}
}

func newStoreOf(blocks [][]byte) *contentStore {
	s := newContentStore()
	s.put(blocks)
	return s
}

func TestContentDeltaChain(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	cc := NewContentCodec()
	s := newContentStore()
	versions := [][]byte{contentConfig(r, 20_000+r.Intn(80_000))}
	refs := []*Content{}
	var prev []byte
	deltas := 0
	for v := 0; v < 20; v++ {
		data := versions[len(versions)-1]
		c, blocks, err := cc.Encode(data, EncodeOptions{Base: prev, NoDelta: v%8 == 0})
		if err != nil {
			t.Fatalf("v%d: %v", v+1, err)
		}
		s.put(blocks)
		refs = append(refs, c)
		if c.Encoding.IsDelta() {
			deltas++
			if contentPayloadLen(c) > uint64(len(data))/10 {
				t.Errorf("v%d: %s delta of %d bytes for a few edits of %d bytes", v+1, c.Encoding, contentPayloadLen(c), len(data))
			}
		}
		prev = data
		versions = append(versions, contentEdit(r, data, 1+r.Intn(5)))
	}
	if deltas < 15 {
		t.Errorf("only %d of 20 versions are deltas", deltas)
	}
	// Rebuild every version from scratch, each from its decoded predecessor.
	var last []byte
	for v, c := range refs {
		got, err := cc.Decode(c, s.get, func(h Hash) ([]byte, error) {
			if last == nil || Sum(last) != h {
				return nil, fmt.Errorf("unexpected base %s", h.Short())
			}
			return last, nil
		})
		if err != nil {
			t.Fatalf("v%d (%s): %v", v+1, c.Encoding, err)
		}
		if !bytes.Equal(got, versions[v]) {
			t.Fatalf("v%d: wrong bytes", v+1)
		}
		last = got
	}
}

// contentHostileFixture is content in a three-level tree (depth 1) and its
// store.
func contentHostileFixture(t *testing.T, r *rand.Rand) (*Content, *contentStore, [][]byte) {
	t.Helper()
	data := contentRandom(r, 10*BlockSize+100)
	c, blocks, err := EncodeContent(data, EncodeOptions{Encodings: []Encoding{EncRaw}})
	if err != nil || c.Depth != 1 || len(c.Blocks) != 1 {
		t.Fatalf("fixture: depth %d, %d roots, %v", c.Depth, len(c.Blocks), err)
	}
	return c, newStoreOf(blocks), blocks
}

func expectContentErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
	} else if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

func TestContentHostileBlocks(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	c, s, blocks := contentHostileFixture(t, r)
	tree := s.blocks[c.Blocks[0]]
	child := func(i int) Hash {
		var h Hash
		copy(h[:], tree[32*i:])
		return h
	}
	decode := func(c *Content, get BlockGetter) error {
		_, err := DecodeContent(c, get, nil)
		if err == nil {
			return nil
		}
		_, _, err2 := ContentBlocks(c, get)
		if err2 == nil && !errors.Is(err, ErrBlockMissing) {
			// ContentBlocks does not read data into the payload, but it
			// does check every held block.
			return fmt.Errorf("DecodeContent failed (%w) but ContentBlocks did not", err)
		}
		return err
	}
	override := func(h Hash, b []byte) BlockGetter {
		return func(x Hash) ([]byte, error) {
			if x == h {
				return b, nil
			}
			return s.get(x)
		}
	}
	// A data block with other bytes of the right length.
	other := bytes.Clone(s.blocks[child(3)])
	other[7] ^= 1
	expectContentErr(t, "wrong block content", decode(c, override(child(3), other)), ErrContentCorrupt)
	// A truncated data block.
	expectContentErr(t, "truncated block", decode(c, override(child(3), s.blocks[child(3)][:BlockSize-1])), ErrContentCorrupt)
	// A data block that is too long (the last one is short).
	expectContentErr(t, "long last block", decode(c, override(child(10), append(bytes.Clone(s.blocks[child(10)]), 0))), ErrContentCorrupt)
	// A missing data block, a missing tree block.
	miss := func(h Hash) BlockGetter {
		return func(x Hash) ([]byte, error) {
			if x == h {
				return nil, fmt.Errorf("store: %w", ErrBlockMissing)
			}
			return s.get(x)
		}
	}
	expectContentErr(t, "missing data block", decode(c, miss(child(5))), ErrBlockMissing)
	expectContentErr(t, "missing tree block", decode(c, miss(c.Blocks[0])), ErrBlockMissing)
	// Another error of the block source passes through.
	boom := errors.New("disk on fire")
	expectContentErr(t, "getter error", decode(c, func(Hash) ([]byte, error) { return nil, boom }), boom)

	// Hostile tree blocks, each stored under its own (honest) hash.
	hostileTree := func(name string, tb []byte) {
		t.Helper()
		h := Sum(tb)
		c2 := *c
		c2.Blocks = []Hash{h}
		expectContentErr(t, name, decode(&c2, override(h, tb)), ErrContentCorrupt)
	}
	hostileTree("tree block of 33-byte stride", append(bytes.Clone(tree), 0))
	hostileTree("tree block missing a hash", tree[:len(tree)-32])
	hostileTree("tree block with an extra hash", append(bytes.Clone(tree), tree[:32]...))
	hostileTree("tree block of 29 hashes", bytes.Repeat(tree[:32], Fanout+1))
	hostileTree("empty tree block", []byte{})
	swapped := bytes.Clone(tree)
	copy(swapped[32*2:], tree[32*4:32*5])
	copy(swapped[32*4:], tree[32*2:32*3])
	hostileTree("swapped data blocks", swapped)
	// A tree block that points at itself cannot be built (its hash would
	// have to be inside it); a tree block pointing at a data block as if
	// it were a tree block is caught by the length rule.
	c3 := *c
	c3.Depth = 2
	expectContentErr(t, "depth 2 claimed", decode(&c3, s.get), ErrContentCorrupt)

	// Swapped roots.
	d := contentRandom(r, 3*BlockSize)
	c4, bl4, err := EncodeContent(d, EncodeOptions{Encodings: []Encoding{EncRaw}})
	if err != nil {
		t.Fatal(err)
	}
	c4.Blocks[0], c4.Blocks[1] = c4.Blocks[1], c4.Blocks[0]
	expectContentErr(t, "swapped roots", decode(c4, newStoreOf(bl4).get), ErrContentCorrupt)

	// Non-canonical shapes.
	c5 := *c
	c5.Blocks = []Hash{child(0), child(1)}
	c5.Depth = 0
	c5.PayloadLen = 2 * BlockSize
	expectContentErr(t, "roots do not match the payload length", decode(&c5, s.get), ErrContentCorrupt)
	c6 := *c4
	c6.PayloadLen = 200
	c6.Size = 200
	c6.Blocks = c6.Blocks[:1]
	expectContentErr(t, "short payload in blocks", decode(&c6, newStoreOf(bl4).get), ErrContentCorrupt)
	small := contentRandom(r, 2*BlockSize)
	c7, bl7, _ := EncodeContent(small, EncodeOptions{Encodings: []Encoding{EncRaw}})
	tb := append(c7.Blocks[0][:], c7.Blocks[1][:]...)
	c7.Blocks = []Hash{Sum(tb)}
	c7.Depth = 1
	s7 := newStoreOf(append(bl7, tb))
	expectContentErr(t, "deeper than needed", decode(c7, s7.get), ErrContentCorrupt)

	// Size and hash must match.
	c8 := *c
	c8.Hash[0] ^= 1
	expectContentErr(t, "wrong content hash", decode(&c8, s.get), ErrContentCorrupt)
	// Malformed references.
	c9 := *c
	c9.Depth = 9
	expectContentErr(t, "malformed", decode(&c9, s.get), ErrMalformed)
	expectContentErr(t, "nil", decode(nil, s.get), ErrContentCorrupt)
	_ = blocks
}

func TestContentHostileDeltas(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	base := contentConfig(r, 50_000)
	data := contentEdit(r, base, 4)
	for _, e := range []Encoding{EncBsdiff, EncZstdDct} {
		c, blocks, err := EncodeContent(data, EncodeOptions{Base: base, Encodings: []Encoding{e}})
		if err != nil {
			t.Fatal(err)
		}
		s := newStoreOf(blocks)
		wrongBase := bytes.Clone(base)
		wrongBase[100] ^= 1
		_, err = DecodeContent(c, s.get, func(Hash) ([]byte, error) { return wrongBase, nil })
		expectContentErr(t, e.String()+" with a base of the wrong hash", err, ErrContentCorrupt)
		_, err = DecodeContent(c, s.get, nil)
		if err == nil {
			t.Errorf("%s without a base source: no error", e)
		}
		_, err = DecodeContent(c, s.get, func(Hash) ([]byte, error) { return nil, ErrBlockMissing })
		expectContentErr(t, e.String()+" with the base missing", err, ErrBlockMissing)
		// The right base under a reference naming another base.
		c2 := *c
		c2.Base[0] ^= 1
		_, err = DecodeContent(&c2, s.get, func(Hash) ([]byte, error) { return base, nil })
		expectContentErr(t, e.String()+" whose base is not the one named", err, ErrContentCorrupt)
	}
}

// contentBsdiffHeader returns a BSDIFF40 header.
func contentBsdiffHeader(ctrlLen, dataLen, newSize uint64) []byte {
	h := []byte("BSDIFF40")
	h = binary.LittleEndian.AppendUint64(h, ctrlLen)
	h = binary.LittleEndian.AppendUint64(h, dataLen)
	return binary.LittleEndian.AppendUint64(h, newSize)
}

func contentBzip2(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := dsbzip2.NewWriter(&buf, &dsbzip2.WriterConfig{Level: dsbzip2.BestCompression})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// contentAllocated returns the bytes allocated while f runs.
func contentAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestContentHostilePayloads(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	base := contentConfig(r, 10_000)
	bases := contentBases(base)
	hostileStore := newContentStore()
	ref := func(e Encoding, size uint64, payload []byte) *Content {
		c := &Content{Size: size, Hash: Sum([]byte("whatever")), Encoding: e, Inline: payload}
		if e.IsDelta() {
			c.Base = Sum(base)
		}
		if len(payload) > MaxInline {
			cref, blocks, err := EncodeContent(payload, EncodeOptions{Encodings: []Encoding{EncRaw}})
			if err != nil {
				t.Fatal(err)
			}
			c.Inline, c.PayloadLen, c.Depth, c.Blocks = nil, cref.PayloadLen, cref.Depth, cref.Blocks
			hostileStore.put(blocks)
		}
		return c
	}
	const allocLimit = 48 << 20
	check := func(name string, c *Content) {
		t.Helper()
		var err error
		start := time.Now()
		alloc := contentAllocated(func() { _, err = DecodeContent(c, hostileStore.get, bases) })
		expectContentErr(t, name, err, ErrContentCorrupt)
		if alloc > allocLimit {
			t.Errorf("%s: allocated %d MiB", name, alloc>>20)
		}
		t.Logf("%s: %v, %d KiB allocated in %v", name, err, alloc>>10, time.Since(start))
	}

	// bsdiff headers claiming huge or mismatched sizes.
	check("bsdiff claims 1 GiB", ref(EncBsdiff, MaxFileSize, contentBsdiffHeader(0, 0, MaxFileSize)))
	check("bsdiff header size differs", ref(EncBsdiff, 1000, contentBsdiffHeader(0, 0, 1<<40)))
	check("bsdiff negative size", ref(EncBsdiff, 1000, contentBsdiffHeader(0, 0, 1<<63|1000)))
	check("bsdiff lengths past the end", ref(EncBsdiff, 1000, contentBsdiffHeader(1<<62, 1<<62, 1000)))
	check("bsdiff no magic", ref(EncBsdiff, 1000, make([]byte, 40)))
	check("bsdiff short", ref(EncBsdiff, 1000, []byte("BSDIFF40")))
	empty := contentBzip2(t, nil)
	// Control triples that make no progress, more than size+1 of them.
	zeros := contentBzip2(t, make([]byte, 24*1002))
	p := append(contentBsdiffHeader(uint64(len(zeros)), uint64(len(empty)), 1000), zeros...)
	p = append(append(p, empty...), empty...)
	check("bsdiff stalls", ref(EncBsdiff, 1000, p))
	if _, err := contentBspatch(base, p, 1000); err == nil || !strings.Contains(err.Error(), "control triples") {
		t.Errorf("bsdiff stalls: %v, want the triple limit", err)
	}
	// A negative add length, an add length past the end.
	for _, triple := range [][3]uint64{{1<<63 | 5, 0, 0}, {2000, 0, 0}, {0, 2000, 0}, {10, 0, 1 << 62}} {
		var tb []byte
		for _, v := range triple {
			tb = binary.LittleEndian.AppendUint64(tb, v)
		}
		ctrl := contentBzip2(t, tb)
		diff := contentBzip2(t, make([]byte, 10))
		p := append(contentBsdiffHeader(uint64(len(ctrl)), uint64(len(diff)), 1000), ctrl...)
		p = append(append(p, diff...), empty...)
		check(fmt.Sprintf("bsdiff triple %x", triple), ref(EncBsdiff, 1000, p))
	}
	// The largest bsdiff size, with a control stream of zeros: bounded
	// work and memory.
	if !testing.Short() {
		n := uint64(MaxBsdiffSize)
		zeros := contentBzip2(t, make([]byte, 24*(n+2)))
		p := append(contentBsdiffHeader(uint64(len(zeros)), uint64(len(empty)), n), zeros...)
		p = append(append(p, empty...), empty...)
		check("bsdiff bomb at MaxBsdiffSize", ref(EncBsdiff, n, p))
	}

	// zstd frames: a window beyond the cap; a frame content size of 1 GiB
	// with 8 MiB of RLE blocks behind it; a frame that decodes to more than
	// the reference's size.
	frame := func(fhd byte, wd byte, fcs uint64, blocks int, blockSize int) []byte {
		b := []byte{0x28, 0xb5, 0x2f, 0xfd, fhd}
		if fhd&0x20 == 0 {
			b = append(b, wd)
		}
		b = binary.LittleEndian.AppendUint64(b, fcs)
		for i := range blocks {
			hdr := uint32(blockSize)<<3 | 1<<1 // RLE
			if i == blocks-1 {
				hdr |= 1
			}
			b = append(b, byte(hdr), byte(hdr>>8), byte(hdr>>16), 'x')
		}
		return b
	}
	check("zstd single segment of 1 GiB", ref(EncZstd, MaxFileSize, frame(0xe0, 0, MaxFileSize, 1, 1000)))
	check("zstd window 1 GiB", ref(EncZstd, MaxFileSize, frame(0xc0, 20<<3, MaxFileSize, 1, 1000)))
	check("zstd claims 1 GiB, has 8 MiB", ref(EncZstd, MaxFileSize, frame(0xc0, 13<<3, MaxFileSize, 64, 128<<10)))
	check("zstd window beyond size", ref(EncZstd, 100_000, frame(0xc0, 13<<3, 1<<20, 8, 128<<10)))
	check("zstd more than size", ref(EncZstd, 100_000, frame(0xc0, 7<<3, 1<<20, 8, 128<<10)))
	check("zstd window above size", ref(EncZstd, 2000, frame(0xc0, 13<<3, 2000, 1, 2000)))
	check("zstd-dict claims 1 GiB", ref(EncZstdDct, MaxFileSize, frame(0xc0, 13<<3, MaxFileSize, 64, 128<<10)))
	check("zstd garbage", ref(EncZstd, 100, []byte("not a zstd frame at all")))
	// A raw payload that is not the content.
	check("raw wrong bytes", ref(EncRaw, 5, []byte("hello")))
}

func TestContentBspatchCompat(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	for i := 0; i < 30; i++ {
		var old, nw []byte
		switch i % 3 {
		case 0:
			old = contentConfig(r, r.Intn(20_000))
			nw = contentEdit(r, old, 1+r.Intn(10))
		case 1:
			old = contentRandom(r, r.Intn(5000))
			nw = contentRandom(r, r.Intn(5000))
		default:
			old = contentRandom(r, 1+r.Intn(3000))
			nw = append(contentRandom(r, r.Intn(100)), old...)
		}
		patch, err := bsdiff.Bytes(old, nw)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := bspatch.Bytes(old, patch)
		if err != nil || !bytes.Equal(theirs, nw) {
			t.Fatalf("go-bsdiff's own patcher: %v", err)
		}
		ours, err := contentBspatch(old, patch, uint64(len(nw)))
		if err != nil || !bytes.Equal(ours, nw) {
			t.Fatalf("case %d (%d → %d bytes): %v", i, len(old), len(nw), err)
		}
		if _, err := contentBspatch(old, patch, uint64(len(nw))+1); err == nil {
			t.Fatalf("case %d: wrong size accepted", i)
		}
	}
}

func TestContentCodecConcurrent(t *testing.T) {
	seed := contentSeed(t)
	cc := NewContentCodec()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed + int64(g)))
			prev := contentConfig(r, 3000+r.Intn(30_000))
			for i := 0; i < 10; i++ {
				data := contentEdit(r, prev, 2)
				c, blocks, err := cc.Encode(data, EncodeOptions{Base: prev})
				if err == nil {
					var got []byte
					got, err = cc.Decode(c, newStoreOf(blocks).get, contentBases(prev))
					if err == nil && !bytes.Equal(got, data) {
						err = errors.New("wrong bytes")
					}
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d, step %d: %w", g, i, err)
					return
				}
				prev = data
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestContentBlocksProgressive(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	data := contentRandom(r, 300*BlockSize)
	c, blocks, err := EncodeContent(data, EncodeOptions{Encodings: []Encoding{EncRaw}})
	if err != nil || c.Depth != 2 {
		t.Fatalf("depth %d, %v", c.Depth, err)
	}
	src := newStoreOf(blocks)
	local := newContentStore()
	for round := 0; ; round++ {
		all, missing, err := ContentBlocks(c, local.get)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 0 {
			if len(all) != len(blocks) {
				t.Fatalf("complete listing has %d blocks, want %d", len(all), len(blocks))
			}
			if round != 3 {
				t.Errorf("took %d rounds for depth 2, want 3", round)
			}
			break
		}
		if round > 3 {
			t.Fatal("listing never completes")
		}
		for _, h := range missing {
			b, _ := src.get(h)
			local.put([][]byte{b})
		}
	}
	got, err := DecodeContent(c, local.get, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("decode after fetching: %v", err)
	}
	if all, missing, err := ContentBlocks(&Content{Size: 3, Hash: Sum([]byte("abc")), Inline: []byte("abc")}, nil); all != nil || missing != nil || err != nil {
		t.Errorf("inline content needs blocks: %v %v %v", all, missing, err)
	}
}

// TestContentEditTarget is the benchmark target as a test: a
// 10-byte edit of a 100 KB file encodes in at most 1 % of the file.
func TestContentEditTarget(t *testing.T) {
	r := rand.New(rand.NewSource(contentSeed(t)))
	for i := 0; i < 5; i++ {
		base, data := contentEditPair(r)
		c, _, err := EncodeContent(data, EncodeOptions{Base: base})
		if err != nil {
			t.Fatal(err)
		}
		if n := contentPayloadLen(c); n > uint64(len(data))/100 {
			t.Errorf("10-byte edit of %d bytes encoded as %s in %d bytes, more than 1 %%", len(data), c.Encoding, n)
		}
	}
}

// contentEditPair returns a 100 KB config-like file and a copy with 10
// bytes changed at a random place.
func contentEditPair(r *rand.Rand) (base, data []byte) {
	base = contentConfig(r, 100_000)
	data = bytes.Clone(base)
	pos := r.Intn(len(data) - 10)
	for i := range 10 {
		data[pos+i] = byte('A' + r.Intn(26))
	}
	return base, data
}

func BenchmarkEncodeEdit100K(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	base, data := contentEditPair(r)
	for _, bc := range []struct {
		name string
		encs []Encoding
	}{{"bsdiff", []Encoding{EncBsdiff}}, {"zstd-dict", []Encoding{EncZstdDct}}, {"zstd-whole", []Encoding{EncZstd}}, {"chosen", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			cc := NewContentCodec()
			var c *Content
			for b.Loop() {
				var err error
				if c, _, err = cc.Encode(data, EncodeOptions{Base: base, Encodings: bc.encs}); err != nil {
					b.Fatal(err)
				}
			}
			n := float64(contentPayloadLen(c))
			b.ReportMetric(n, "bytes/edit")
			b.ReportMetric(100*n/float64(len(data)), "%file")
		})
	}
}

func BenchmarkEncodeWhole(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	for _, bc := range []struct {
		name string
		data []byte
	}{{"config-1MiB", contentConfig(r, 1<<20)}, {"random-1MiB", contentRandom(r, 1<<20)}} {
		b.Run(bc.name, func(b *testing.B) {
			cc := NewContentCodec()
			b.SetBytes(int64(len(bc.data)))
			var c *Content
			for b.Loop() {
				var err error
				if c, _, err = cc.Encode(bc.data, EncodeOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(contentPayloadLen(c)), "payload-bytes")
		})
	}
}

// BenchmarkEncodeSmall compares a shared codec with a fresh one per call
// (EncodeContent) on a 4 KB file, the common case of a config write.
func BenchmarkEncodeSmall(b *testing.B) {
	data := contentConfig(rand.New(rand.NewSource(1)), 4096)
	b.Run("shared-codec", func(b *testing.B) {
		cc := NewContentCodec()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, _, err := cc.Encode(data, EncodeOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("per-call", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, _, err := EncodeContent(data, EncodeOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	base := contentConfig(r, 1<<20)
	data := contentEdit(r, base, 10)
	for _, e := range []Encoding{EncRaw, EncZstd, EncZstdDct, EncBsdiff} {
		b.Run(e.String()+"-1MiB", func(b *testing.B) {
			cc := NewContentCodec()
			c, blocks, err := cc.Encode(data, EncodeOptions{Base: base, Encodings: []Encoding{e}})
			if err != nil {
				b.Fatal(err)
			}
			s := newStoreOf(blocks)
			bases := contentBases(base)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := cc.Decode(c, s.get, bases); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(contentPayloadLen(c)), "payload-bytes")
		})
	}
}
