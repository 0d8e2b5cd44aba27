package log

import (
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/gabstv/go-bsdiff/pkg/bsdiff"
	"github.com/klauspost/compress/zstd"
)

// Block layout of content payloads. A payload longer than MaxInline is cut
// into data blocks of at most BlockSize bytes. When more than MaxRootBlocks
// blocks are needed, their hashes are grouped Fanout at a time into tree
// blocks (each the concatenation of its children's hashes), level upon level,
// until at most MaxRootBlocks references remain; those go into the entry with
// the tree's depth. Every block fits in one gossip message.
const (
	BlockSize = 896
	Fanout    = BlockSize / 32
)

// MaxPayloadLen is the largest payload a tree of the given depth with the
// given number of root references can hold.
func MaxPayloadLen(depth uint8, roots int) uint64 {
	n := uint64(roots) * BlockSize
	for i := uint8(0); i < depth; i++ {
		n *= Fanout
	}
	return n
}

// The shape of a block tree is fully determined by the payload length and
// the depth, so decoders check it strictly:
//
//   - a payload of at most MaxInline bytes is carried inline, never in blocks;
//   - data blocks are BlockSize bytes, except the last, which holds the rest
//     (1 to BlockSize bytes);
//   - each tree level has ceil(n/Fanout) blocks for the n references of the
//     level below; every tree block holds Fanout references (32 bytes each)
//     except the last of its level, which holds the rest;
//   - the depth is the smallest that leaves at most MaxRootBlocks references
//     for the entry, and their number must be exactly what the level above
//     the top tree level would have.
//
// The encodings (Encoding) are defined as follows:
//
//   - EncRaw: the payload is the content.
//   - EncZstd: the payload is one zstd frame (RFC 8878) whose window is at
//     most MaxZstdWindow and at most the next power of two above the size
//     (at least 1 KiB); no dictionary.
//   - EncZstdDct: as EncZstd, but the frame is compressed with the base
//     content as a raw-content dictionary (dictionary id 0, as zstd
//     --patch-from does).
//   - EncBsdiff: the payload is a BSDIFF40 patch (bsdiff 4, bzip2 streams)
//     from the base content to the content; its header's new size equals
//     the content size, and the content size is at most MaxBsdiffSize.
//
// Every decoder verifies the result against the content's size and SHA-256.
const (
	// MaxBsdiffSize is the largest content a bsdiff payload may produce.
	// Patching costs time linear in the output, and a bsdiff patch can claim
	// an output far larger than itself; the limit bounds that cost.
	MaxBsdiffSize = 4 << 20
	// MaxZstdWindow is the largest window a zstd payload frame may declare.
	MaxZstdWindow = 8 << 20
)

// Encoder limits: which encodings EncodeContent tries, and when. They are
// choices of this encoder, not rules of the format.
const (
	// contentBsdiffEncodeMax: bsdiff's suffix sort costs ~30 ms for 100 KB,
	// ~200 ms for 256 KiB and ~450 ms for 1 MiB on the 2-core reference
	// machine, for a patch rarely smaller than zstd with a dictionary; above
	// this size (of base or data) it is not tried.
	contentBsdiffEncodeMax = 128 << 10
	// contentDictEncodeMax: zstd with a dictionary is tried while both the
	// base and the new content are at most this size.
	contentDictEncodeMax = 8 << 20
	// contentDictBetterAbove: above this base size the default zstd level
	// finds few matches in the dictionary; the "better" level is used.
	contentDictBetterAbove = 1 << 20
	// contentBsdiffMinPatch is a lower bound on any bsdiff patch: a 32-byte
	// header and three bzip2 streams of at least 14 bytes each. When another
	// encoding is already this small, bsdiff cannot win and is skipped.
	contentBsdiffMinPatch = 32 + 3*14
	// contentPrealloc caps how much output is allocated on the word of a
	// reference (beyond a few times the payload) before the bytes arrive;
	// after that, buffers at most double ahead of the bytes decoded.
	contentPrealloc = 64 << 10
)

// ErrContentCorrupt says blocks, a payload or a base do not match the
// content reference that names them. (A block that is not held is
// ErrBlockMissing, defined with the store.)
var ErrContentCorrupt = errors.New("content corrupt")

// BlockGetter returns the block whose SHA-256 is h, or an error wrapping
// ErrBlockMissing if it is not held (Store.Block is one). The decoder
// verifies what it returns; other errors abort the decode and are returned
// wrapped.
type BlockGetter func(h Hash) ([]byte, error)

// EncodeOptions says how EncodeContent may encode a new version.
type EncodeOptions struct {
	// Base is the previous version's bytes, or nil. Delta encodings
	// (bsdiff, zstd with a dictionary) are tried only with a base.
	Base []byte
	// BaseHash is Base's content hash. If zero, it is computed; otherwise
	// it must match Base.
	BaseHash Hash
	// NoDelta forces a whole encoding. Callers set it every N versions so
	// delta chains, and the work to rebuild a version from scratch, stay
	// short.
	NoDelta bool
	// Encodings, if not empty, restricts the candidates to these encodings
	// and lifts this encoder's speed limits on them (the format's limits
	// still hold). Tests and tools use it to force one encoding.
	Encodings []Encoding
}

// ContentCodec encodes and decodes file contents (see EncodeContent and
// DecodeContent). It keeps zstd encoders and decoders for reuse, which are
// expensive to create.
//
// A ContentCodec is safe for concurrent use by multiple goroutines: each call
// takes its own encoder or decoder from a pool and returns it when done.
type ContentCodec struct {
	plain      sync.Pool // *zstd.Encoder, SpeedFastest, no dictionary
	dict       sync.Pool // *zstd.Encoder, SpeedDefault, with a raw dictionary
	dictBetter sync.Pool // *zstd.Encoder, SpeedBetterCompression, with a raw dictionary
	dec        sync.Pool // *zstd.Decoder, synchronous
}

// NewContentCodec returns a codec with empty pools.
func NewContentCodec() *ContentCodec { return &ContentCodec{} }

// EncodeContent encodes data with a fresh codec; see ContentCodec.Encode.
// Long-lived callers should keep a ContentCodec instead: its pooled zstd
// encoders make repeated calls cheaper.
func EncodeContent(data []byte, opt EncodeOptions) (*Content, [][]byte, error) {
	return NewContentCodec().Encode(data, opt)
}

// DecodeContent decodes c with a fresh codec; see ContentCodec.Decode.
func DecodeContent(c *Content, blocks BlockGetter, base func(Hash) ([]byte, error)) ([]byte, error) {
	return NewContentCodec().Decode(c, blocks, base)
}

type contentCandidate struct {
	enc     Encoding
	payload []byte
}

// Encode encodes data as the smallest payload among the candidates: raw,
// zstd, and — given a base, unless NoDelta — zstd with the base as a raw
// dictionary (base and data up to 8 MiB) and a bsdiff patch (up to 128 KiB;
// skipped when another candidate is already smaller than any bsdiff patch
// can be). On equal sizes the earlier in that order wins.
//
// It returns the content reference — inline if the payload is at most
// MaxInline bytes, otherwise a block tree as described above — and the
// blocks to store: every distinct data and tree block, data blocks first in
// payload order, then tree blocks level by level. The blocks are freshly
// allocated; data is not retained.
func (cc *ContentCodec) Encode(data []byte, opt EncodeOptions) (*Content, [][]byte, error) {
	if uint64(len(data)) > MaxFileSize {
		return nil, nil, fmt.Errorf("encode content: %d bytes, more than %d", len(data), MaxFileSize)
	}
	var want [EncZstdDct + 1]bool
	forced := len(opt.Encodings) > 0
	for _, e := range opt.Encodings {
		if !e.Valid() {
			return nil, nil, fmt.Errorf("encode content: unknown encoding %d", e)
		}
		want[e] = true
	}
	if !forced {
		for e := range want {
			want[e] = true
		}
	}
	base := opt.Base
	haveBase := base != nil && !opt.NoDelta
	baseHash := opt.BaseHash
	if haveBase {
		sum := Sum(base)
		if baseHash.IsZero() {
			baseHash = sum
		} else if sum != baseHash {
			return nil, nil, fmt.Errorf("encode content: base hash %s does not match the base bytes (%s)", baseHash.Short(), sum.Short())
		}
	}
	if forced && !haveBase && (want[EncBsdiff] || want[EncZstdDct]) {
		return nil, nil, errors.New("encode content: a delta encoding needs a base")
	}
	if want[EncBsdiff] && forced && len(data) > MaxBsdiffSize {
		return nil, nil, fmt.Errorf("encode content: bsdiff encodes at most %d bytes, not %d", MaxBsdiffSize, len(data))
	}

	var best *contentCandidate
	consider := func(e Encoding, p []byte) {
		if best == nil || len(p) < len(best.payload) {
			best = &contentCandidate{enc: e, payload: p}
		}
	}
	if want[EncRaw] {
		consider(EncRaw, data)
	}
	if want[EncZstd] {
		consider(EncZstd, cc.zstdEncode(data, nil))
	}
	if want[EncZstdDct] && haveBase && (forced || len(data) <= contentDictEncodeMax && len(base) <= contentDictEncodeMax) {
		consider(EncZstdDct, cc.zstdEncode(data, base))
	}
	if want[EncBsdiff] && haveBase && len(data) <= MaxBsdiffSize &&
		(forced || len(data) <= contentBsdiffEncodeMax && len(base) <= contentBsdiffEncodeMax &&
			(best == nil || len(best.payload) > contentBsdiffMinPatch)) {
		p, err := contentBsdiff(base, data)
		if err != nil && forced {
			return nil, nil, err
		}
		if err == nil {
			consider(EncBsdiff, p)
		}
	}
	if best == nil {
		return nil, nil, errors.New("encode content: no encoding applies")
	}

	c := &Content{Size: uint64(len(data)), Hash: Sum(data), Encoding: best.enc}
	if best.enc.IsDelta() {
		c.Base = baseHash
	}
	payload := best.payload
	if best.enc == EncRaw {
		payload = bytes.Clone(data)
	}
	if len(payload) <= MaxInline {
		c.Inline = append([]byte{}, payload...)
		if err := c.check(); err != nil {
			return nil, nil, fmt.Errorf("encode content: %w", err)
		}
		return c, nil, nil
	}
	depth, roots, blocks, err := contentBuildTree(payload)
	if err != nil {
		return nil, nil, err
	}
	c.PayloadLen = uint64(len(payload))
	c.Depth = depth
	c.Blocks = roots
	if err := c.check(); err != nil {
		return nil, nil, fmt.Errorf("encode content: %w", err)
	}
	return c, blocks, nil
}

// contentBuildTree cuts payload into data blocks and builds the tree levels
// above them. The data blocks share payload's memory.
func contentBuildTree(payload []byte) (depth uint8, roots []Hash, blocks [][]byte, err error) {
	seen := make(map[Hash]bool)
	add := func(b []byte) Hash {
		h := Sum(b)
		if !seen[h] {
			seen[h] = true
			blocks = append(blocks, b)
		}
		return h
	}
	level := make([]Hash, 0, (len(payload)+BlockSize-1)/BlockSize)
	for off := 0; off < len(payload); off += BlockSize {
		level = append(level, add(payload[off:min(off+BlockSize, len(payload))]))
	}
	for len(level) > MaxRootBlocks {
		if depth == MaxContentDepth {
			return 0, nil, nil, fmt.Errorf("encode content: payload of %d bytes needs more than %d tree levels", len(payload), MaxContentDepth)
		}
		next := make([]Hash, 0, (len(level)+Fanout-1)/Fanout)
		for i := 0; i < len(level); i += Fanout {
			group := level[i:min(i+Fanout, len(level))]
			tb := make([]byte, 0, 32*len(group))
			for _, h := range group {
				tb = append(tb, h[:]...)
			}
			next = append(next, add(tb))
		}
		level = next
		depth++
	}
	return depth, level, blocks, nil
}

// zstdEncode compresses data, with dict as a raw dictionary if not nil.
func (cc *ContentCodec) zstdEncode(data, dict []byte) []byte {
	pool, level := &cc.plain, zstd.SpeedFastest
	if dict != nil {
		pool, level = &cc.dict, zstd.SpeedDefault
		if len(dict) > contentDictBetterAbove {
			pool, level = &cc.dictBetter, zstd.SpeedBetterCompression
		}
	}
	enc, _ := pool.Get().(*zstd.Encoder)
	if enc == nil {
		opts := []zstd.EOption{
			zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false), // the content hash covers integrity
			zstd.WithWindowSize(MaxZstdWindow),
		}
		if dict != nil {
			opts = append(opts, zstd.WithEncoderDictRaw(0, dict))
		}
		var err error
		if enc, err = zstd.NewWriter(nil, opts...); err != nil {
			panic(fmt.Sprintf("log: zstd encoder options rejected: %v", err))
		}
	} else if dict != nil {
		if err := enc.ResetWithOptions(nil, zstd.WithEncoderDictRaw(0, dict)); err != nil {
			panic(fmt.Sprintf("log: zstd encoder reset rejected: %v", err))
		}
	}
	out := enc.EncodeAll(data, nil)
	pool.Put(enc)
	return out
}

// contentBsdiff returns a BSDIFF40 patch from base to data, turning a panic
// of the library into an error.
func contentBsdiff(base, data []byte) (patch []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			patch, err = nil, fmt.Errorf("encode content: bsdiff failed: %v", r)
		}
	}()
	patch, err = bsdiff.Bytes(base, data)
	if err != nil {
		return nil, fmt.Errorf("encode content: bsdiff: %w", err)
	}
	return patch, nil
}

// Decode reconstructs the content c references and verifies its size and
// SHA-256. blocks supplies the payload's blocks (its errors are returned
// wrapped, so errors.Is(err, ErrBlockMissing) tells a missing block); base
// supplies the base version's bytes for delta encodings and may be nil
// otherwise.
//
// Decoding is bounded: block sizes are checked against the tree shape before
// use, output grows only as decoded bytes arrive (never beyond c.Size), zstd
// windows are capped, and a bsdiff patch can make at most c.Size+1 steps.
// Blocks, payloads or bases that do not match c give errors wrapping
// ErrContentCorrupt; a malformed c gives one wrapping both ErrContentCorrupt
// and ErrMalformed.
func (cc *ContentCodec) Decode(c *Content, blocks BlockGetter, base func(Hash) ([]byte, error)) ([]byte, error) {
	payload, err := contentPayload(c, blocks)
	if err != nil {
		return nil, err
	}
	var out []byte
	switch c.Encoding {
	case EncRaw:
		out = payload
		if c.Blocks == nil {
			out = bytes.Clone(payload) // do not hand out the reference's own bytes
		}
	case EncZstd:
		out, err = cc.zstdDecode(payload, nil, c.Size)
	case EncZstdDct, EncBsdiff:
		var b []byte
		if b, err = contentBase(c, base); err != nil {
			return nil, err
		}
		if c.Encoding == EncZstdDct {
			out, err = cc.zstdDecode(payload, b, c.Size)
		} else {
			out, err = contentBspatch(b, payload, c.Size)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s content %s: %w", c.Encoding, c.Hash.Short(), err)
	}
	if uint64(len(out)) != c.Size {
		return nil, fmt.Errorf("%w: content %s decodes to %d bytes, want %d", ErrContentCorrupt, c.Hash.Short(), len(out), c.Size)
	}
	if got := Sum(out); got != c.Hash {
		return nil, fmt.Errorf("%w: content %s decodes to bytes with hash %s", ErrContentCorrupt, c.Hash.Short(), got.Short())
	}
	return out, nil
}

// contentBase fetches and verifies the base of a delta content.
func contentBase(c *Content, base func(Hash) ([]byte, error)) ([]byte, error) {
	if base == nil {
		return nil, fmt.Errorf("decode content %s: %s needs base %s, and no base source was given", c.Hash.Short(), c.Encoding, c.Base.Short())
	}
	b, err := base(c.Base)
	if err != nil {
		return nil, fmt.Errorf("decode content %s: base %s: %w", c.Hash.Short(), c.Base.Short(), err)
	}
	if got := Sum(b); got != c.Base {
		return nil, fmt.Errorf("%w: content %s: base %s was given bytes with hash %s", ErrContentCorrupt, c.Hash.Short(), c.Base.Short(), got.Short())
	}
	return b, nil
}

// contentCheck validates a reference before decoding.
func contentCheck(c *Content) error {
	if c == nil {
		return fmt.Errorf("%w: no content reference", ErrContentCorrupt)
	}
	if err := c.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrContentCorrupt, err)
	}
	return nil
}

// contentShape returns the number of blocks at each level of c's tree (level
// 0: data blocks) after checking that the tree is the canonical one for its
// payload length and depth.
func contentShape(c *Content) ([]uint64, error) {
	if c.PayloadLen <= MaxInline {
		return nil, fmt.Errorf("%w: payload of %d bytes should be inline", ErrContentCorrupt, c.PayloadLen)
	}
	counts := make([]uint64, int(c.Depth)+1)
	counts[0] = (c.PayloadLen + BlockSize - 1) / BlockSize
	for l := 1; l <= int(c.Depth); l++ {
		counts[l] = (counts[l-1] + Fanout - 1) / Fanout
	}
	if counts[c.Depth] != uint64(len(c.Blocks)) {
		return nil, fmt.Errorf("%w: %d root blocks, a payload of %d bytes at depth %d has %d", ErrContentCorrupt, len(c.Blocks), c.PayloadLen, c.Depth, counts[c.Depth])
	}
	if c.Depth > 0 && counts[c.Depth-1] <= MaxRootBlocks {
		return nil, fmt.Errorf("%w: tree of depth %d is deeper than its %d-byte payload needs", ErrContentCorrupt, c.Depth, c.PayloadLen)
	}
	return counts, nil
}

// contentTree walks a reference's block tree depth first, in payload order.
type contentTree struct {
	counts []uint64 // blocks per level, level 0 being data blocks
	get    BlockGetter
	// data is called with each verified data block, in payload order.
	data func(h Hash, b []byte) error
	// tree, if set, is called with each tree block's hash before it is
	// fetched.
	tree func(h Hash)
	// missing, if set, is called for blocks the getter reports missing
	// (their subtrees are skipped); otherwise the error is returned.
	missing func(h Hash)
}

// blockLen is the exact length of block index at level.
func (t *contentTree) blockLen(payloadLen uint64, level int, index uint64) uint64 {
	if level == 0 {
		if index == t.counts[0]-1 {
			return payloadLen - index*BlockSize
		}
		return BlockSize
	}
	return 32 * min(Fanout, t.counts[level-1]-index*Fanout)
}

func (t *contentTree) walk(payloadLen uint64, level int, index uint64, h Hash) error {
	if t.tree != nil && level > 0 {
		t.tree(h)
	}
	b, err := t.get(h)
	if err != nil {
		if t.missing != nil && errors.Is(err, ErrBlockMissing) {
			t.missing(h)
			return nil
		}
		return fmt.Errorf("block %s: %w", h.Short(), err)
	}
	want := t.blockLen(payloadLen, level, index)
	if uint64(len(b)) != want {
		return fmt.Errorf("%w: block %s at level %d is %d bytes, want %d", ErrContentCorrupt, h.Short(), level, len(b), want)
	}
	if Sum(b) != h {
		return fmt.Errorf("%w: block %s does not match its hash", ErrContentCorrupt, h.Short())
	}
	if level == 0 {
		return t.data(h, b)
	}
	for k := 0; k < len(b)/32; k++ {
		var child Hash
		copy(child[:], b[32*k:])
		if err := t.walk(payloadLen, level-1, index*Fanout+uint64(k), child); err != nil {
			return err
		}
	}
	return nil
}

// contentPayload returns c's payload, fetched from its blocks if it is not
// inline.
func contentPayload(c *Content, get BlockGetter) ([]byte, error) {
	if err := contentCheck(c); err != nil {
		return nil, err
	}
	if c.Blocks == nil {
		return c.Inline, nil
	}
	counts, err := contentShape(c)
	if err != nil {
		return nil, err
	}
	if get == nil {
		return nil, fmt.Errorf("decode content %s: no block source: %w", c.Hash.Short(), ErrBlockMissing)
	}
	payload := make([]byte, 0, min(c.PayloadLen, contentPrealloc))
	t := &contentTree{counts: counts, get: get, data: func(_ Hash, b []byte) error {
		payload = contentAppend(payload, b, c.PayloadLen)
		return nil
	}}
	for i, h := range c.Blocks {
		if err := t.walk(c.PayloadLen, int(c.Depth), uint64(i), h); err != nil {
			return nil, fmt.Errorf("decode content %s: %w", c.Hash.Short(), err)
		}
	}
	return payload, nil
}

// contentAppend appends b to buf, growing its capacity by doubling but never
// beyond limit (when the result fits in it).
func contentAppend(buf, b []byte, limit uint64) []byte {
	need := len(buf) + len(b)
	if need > cap(buf) {
		newCap := max(2*cap(buf), need)
		if uint64(newCap) > limit && uint64(need) <= limit {
			newCap = int(limit)
		}
		nb := make([]byte, len(buf), newCap)
		copy(nb, buf)
		buf = nb
	}
	return append(buf, b...)
}

// ContentBlocks lists every block c needs (data and tree blocks, each once,
// in walk order), walking tree blocks as far as they are held, and missing,
// the listed blocks that blocks reports missing. Children of a missing tree
// block cannot be known, so all is complete only when missing is empty: a
// caller fetches the missing blocks and asks again. Inline content needs no
// blocks. Held blocks are verified (length and hash); a mismatch gives an
// error wrapping ErrContentCorrupt, as does a malformed c.
func ContentBlocks(c *Content, blocks BlockGetter) (all []Hash, missing []Hash, err error) {
	if err := contentCheck(c); err != nil {
		return nil, nil, err
	}
	if c.Blocks == nil {
		return nil, nil, nil
	}
	counts, err := contentShape(c)
	if err != nil {
		return nil, nil, err
	}
	seen := make(map[Hash]bool)
	note := func(h Hash) {
		if !seen[h] {
			seen[h] = true
			all = append(all, h)
		}
	}
	seenMissing := make(map[Hash]bool)
	t := &contentTree{
		counts: counts,
		get:    blocks,
		tree:   note,
		data: func(h Hash, _ []byte) error {
			note(h)
			return nil
		},
		missing: func(h Hash) {
			note(h)
			if !seenMissing[h] {
				seenMissing[h] = true
				missing = append(missing, h)
			}
		},
	}
	if blocks == nil {
		t.get = func(Hash) ([]byte, error) { return nil, ErrBlockMissing }
	}
	for i, h := range c.Blocks {
		if err := t.walk(c.PayloadLen, int(c.Depth), uint64(i), h); err != nil {
			return nil, nil, fmt.Errorf("content %s: %w", c.Hash.Short(), err)
		}
	}
	return all, missing, nil
}

// zstdWindowLimit is the largest window a zstd payload for content of the
// given size may declare.
func zstdWindowLimit(size uint64) uint64 {
	w := uint64(1) << min(bits.Len64(size), 63)
	return min(max(w, zstd.MinWindowSize), MaxZstdWindow)
}

// zstdDecode decompresses one payload frame, with dict as a raw dictionary
// if not nil, producing at most size bytes (one more is read to detect
// overflow).
func (cc *ContentCodec) zstdDecode(payload, dict []byte, size uint64) (out []byte, err error) {
	dec, _ := cc.dec.Get().(*zstd.Decoder)
	if dec == nil {
		if dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true)); err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
	}
	healthy := false
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: zstd decoder failed: %v", ErrContentCorrupt, r)
		}
		if healthy {
			// Drop references to the payload and the dictionary.
			if dec.ResetWithOptions(nil, zstd.WithDecoderDictDelete()) == nil {
				cc.dec.Put(dec)
			}
		}
	}()
	w := zstdWindowLimit(size)
	opts := []zstd.DOption{
		zstd.WithDecoderMaxWindow(w),
		zstd.WithDecoderMaxMemory(w),
		zstd.WithDecoderDictDelete(),
	}
	if dict != nil {
		opts = append(opts, zstd.WithDecoderDictRaw(0, dict))
	}
	if err := dec.ResetWithOptions(bytes.NewReader(payload), opts...); err != nil {
		return nil, fmt.Errorf("zstd decoder reset: %w", err)
	}
	out, err = contentReadAll(dec, size, len(payload))
	healthy = true
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %w", ErrContentCorrupt, err)
	}
	return out, nil
}

// contentReadAll reads r to its end, expecting at most size bytes. The
// buffer starts at contentStartCap(size+1, hint), hint being the input's
// length, and then at most doubles ahead of the bytes that arrived.
func contentReadAll(r io.Reader, size uint64, hint int) ([]byte, error) {
	buf := make([]byte, 0, contentStartCap(size+1, hint))
	for {
		if len(buf) == cap(buf) {
			buf = contentGrow(buf, size+1)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if uint64(len(buf)) > size {
			return nil, fmt.Errorf("more than %d bytes", size)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// contentStartCap is the capacity to start an output buffer with: what the
// output may need (limit) but no more than a few times the input (hint) or
// contentPrealloc, whichever is larger.
func contentStartCap(limit uint64, hint int) int {
	return int(min(limit, max(contentPrealloc, 8*uint64(hint))))
}

// contentGrow returns buf with its capacity doubled (at least 4 KiB more),
// but not beyond limit. buf must have len(buf) == cap(buf) < limit.
func contentGrow(buf []byte, limit uint64) []byte {
	newCap := min(uint64(max(2*cap(buf), cap(buf)+4096)), limit)
	nb := make([]byte, len(buf), newCap)
	copy(nb, buf)
	return nb
}

// contentOfftin reads a bsdiff 8-byte sign-magnitude little-endian integer.
func contentOfftin(b []byte) (v int64, negative bool) {
	u := binary.LittleEndian.Uint64(b)
	return int64(u &^ (1 << 63)), u>>63 != 0 && u&^(1<<63) != 0
}

// contentBspatch applies a BSDIFF40 patch (as github.com/gabstv/go-bsdiff
// and bsdiff 4 write it) to old, producing exactly size bytes. Unlike the
// library's own patcher it trusts nothing in the patch: the output grows
// only as the patch delivers bytes, every length is checked before use, the
// number of control triples is at most size+1 (bsdiff emits at most one per
// new byte, plus one), each bzip2 stream must end where its data is used up
// (so its checksums are checked), and a panic inside the bzip2 decoder
// becomes an error.
func contentBspatch(old, patch []byte, size uint64) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: bsdiff patch: %v", ErrContentCorrupt, r)
		}
	}()
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: bsdiff patch: %s", ErrContentCorrupt, fmt.Sprintf(format, args...))
	}
	if size > MaxBsdiffSize {
		return nil, corrupt("content of %d bytes, more than %d", size, MaxBsdiffSize)
	}
	if len(patch) < 32 || string(patch[:8]) != "BSDIFF40" {
		return nil, corrupt("no BSDIFF40 header")
	}
	ctrlLen, neg1 := contentOfftin(patch[8:])
	dataLen, neg2 := contentOfftin(patch[16:])
	newSize, neg3 := contentOfftin(patch[24:])
	rest := uint64(len(patch) - 32)
	if neg1 || neg2 || neg3 || uint64(ctrlLen) > rest || uint64(dataLen) > rest-uint64(ctrlLen) {
		return nil, corrupt("bad header lengths")
	}
	if uint64(newSize) != size {
		return nil, corrupt("header says %d bytes, content is %d", newSize, size)
	}
	body := patch[32:]
	ctrl := bzip2.NewReader(bytes.NewReader(body[:ctrlLen]))
	diff := bzip2.NewReader(bytes.NewReader(body[ctrlLen : ctrlLen+dataLen]))
	extra := bzip2.NewReader(bytes.NewReader(body[ctrlLen+dataLen:]))

	out = make([]byte, 0, contentStartCap(size, len(patch)))
	var buf [24]byte
	var oldPos int64
	const posLimit = 1 << 40 // far beyond any file; keeps arithmetic exact
	for steps := uint64(0); uint64(len(out)) < size; steps++ {
		if steps > size {
			return nil, corrupt("more than %d control triples", size+1)
		}
		if _, err := io.ReadFull(ctrl, buf[:]); err != nil {
			return nil, corrupt("control stream: %v", err)
		}
		add, negAdd := contentOfftin(buf[0:])
		copyLen, negCopy := contentOfftin(buf[8:])
		seek, negSeek := contentOfftin(buf[16:])
		left := size - uint64(len(out))
		if negAdd || negCopy || uint64(add) > left || uint64(copyLen) > left-uint64(add) {
			return nil, corrupt("control triple out of range")
		}
		start := len(out)
		if out, err = contentReadN(diff, out, uint64(add), size); err != nil {
			return nil, corrupt("diff stream: %v", err)
		}
		for i := range int(add) {
			if p := oldPos + int64(i); p >= 0 && p < int64(len(old)) {
				out[start+i] += old[p]
			}
		}
		if out, err = contentReadN(extra, out, uint64(copyLen), size); err != nil {
			return nil, corrupt("extra stream: %v", err)
		}
		if seek > posLimit {
			return nil, corrupt("old position out of range")
		}
		if negSeek {
			seek = -seek
		}
		// |oldPos| <= posLimit, add <= MaxBsdiffSize, |seek| <= posLimit:
		// no overflow.
		oldPos += add + seek
		if oldPos > posLimit || oldPos < -posLimit {
			return nil, corrupt("old position out of range")
		}
	}
	// bsdiff writes exactly the bytes the triples use. Reading each stream
	// to its end also checks the bzip2 checksums of the blocks used.
	for _, st := range []struct {
		name string
		r    io.Reader
	}{{"control", ctrl}, {"diff", diff}, {"extra", extra}} {
		var one [1]byte
		if _, err := io.ReadFull(st.r, one[:]); err == nil {
			return nil, corrupt("%s stream has bytes beyond what the patch uses", st.name)
		} else if err != io.EOF {
			return nil, corrupt("%s stream: %v", st.name, err)
		}
	}
	return out, nil
}

// contentReadN appends exactly n bytes from r to buf, growing buf by at
// most doubling ahead of the bytes that arrived, and never beyond limit.
func contentReadN(r io.Reader, buf []byte, n, limit uint64) ([]byte, error) {
	for n > 0 {
		if len(buf) == cap(buf) {
			if uint64(len(buf)) >= limit {
				return nil, fmt.Errorf("output beyond %d bytes", limit)
			}
			buf = contentGrow(buf, limit)
		}
		k := min(n, uint64(cap(buf)-len(buf)))
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+int(k)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, err
		}
		n -= k
	}
	return buf, nil
}
