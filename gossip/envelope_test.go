package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/basefs/basefs/log"
)

func sampleEvent() *Event {
	return &Event{
		FS:      [FSPrefixLen]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Origin:  "127.0.0.2:7946",
		Entries: [][]byte{bytes.Repeat([]byte{1}, 150), bytes.Repeat([]byte{2}, 200)},
		Hashes:  []log.Hash{log.Sum([]byte("x"))},
		Blocks:  [][]byte{bytes.Repeat([]byte{3}, 300)},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := sampleEvent()
	b, err := e.AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != e.Size() {
		t.Fatalf("encoded %d bytes, Size says %d", len(b), e.Size())
	}
	d, err := DecodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, e) {
		t.Fatalf("round trip: got %+v want %+v", d, e)
	}
	// The decoded items never alias the input.
	b[len(b)-1] ^= 0xff
	if d.Blocks[0][len(d.Blocks[0])-1] != 3 {
		t.Fatal("decoded block aliases the input")
	}
}

func TestEncodeRejects(t *testing.T) {
	for name, e := range map[string]*Event{
		"no origin":   {Entries: [][]byte{{1}}},
		"long origin": {Origin: strings.Repeat("x", MaxNodeNameLen+1), Entries: [][]byte{{1}}},
		"empty entry": {Origin: "a", Entries: [][]byte{{}}},
		"big entry":   {Origin: "a", Entries: [][]byte{make([]byte, log.MaxEntrySize+1)}},
		"big block":   {Origin: "a", Blocks: [][]byte{make([]byte, log.BlockSize+1)}},
		"empty block": {Origin: "a", Blocks: [][]byte{{}}},
		"too big":     {Origin: "a", Blocks: bytes.SplitAfter(make([]byte, 11*log.BlockSize), make([]byte, log.BlockSize))},
	} {
		if _, err := e.AppendEncode(nil); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

// malformed returns hand-made bad envelopes, by what is wrong with them.
func malformed() map[string][]byte {
	hdr := func(origin string) []byte {
		b := []byte{EnvelopeVersion, TypeAnnounce, 1, 2, 3, 4, 5, 6, 7, 8, byte(len(origin))}
		return append(b, origin...)
	}
	item := func(b []byte, kind byte, n uint64, body []byte) []byte {
		b = append(b, kind)
		b = binary.AppendUvarint(b, n)
		return append(b, body...)
	}
	return map[string][]byte{
		"empty":            {},
		"one byte":         {EnvelopeVersion},
		"short header":     {EnvelopeVersion, TypeAnnounce, 1, 2, 3},
		"no origin":        hdr(""),
		"origin overruns":  append([]byte{EnvelopeVersion, TypeAnnounce, 1, 2, 3, 4, 5, 6, 7, 8, 10}, "abc"...),
		"origin too long":  append([]byte{EnvelopeVersion, TypeAnnounce, 1, 2, 3, 4, 5, 6, 7, 8, MaxNodeNameLen + 1}, strings.Repeat("a", MaxNodeNameLen+1)...),
		"no items":         hdr("a"),
		"kind only":        append(hdr("a"), ItemEntry),
		"bad varint":       append(hdr("a"), ItemEntry, 0x80),
		"overlong varint":  append(hdr("a"), ItemEntry, 0x81, 0x00, 1),
		"huge length":      append(hdr("a"), ItemEntry, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"overrun":          item(hdr("a"), ItemEntry, 10, []byte{1, 2, 3}),
		"empty entry":      item(hdr("a"), ItemEntry, 0, nil),
		"entry too big":    item(hdr("a"), ItemEntry, log.MaxEntrySize+1, make([]byte, log.MaxEntrySize+1)),
		"block too big":    item(hdr("a"), ItemBlock, log.BlockSize+1, make([]byte, log.BlockSize+1)),
		"empty block":      item(hdr("a"), ItemBlock, 0, nil),
		"short hash":       item(hdr("a"), ItemHash, 31, make([]byte, 31)),
		"long hash":        item(hdr("a"), ItemHash, 33, make([]byte, 33)),
		"unknown kind":     item(hdr("a"), 9, 1, []byte{1}),
		"good then bad":    append(item(hdr("a"), ItemEntry, 1, []byte{1}), 0),
		"over decode size": item(hdr("a"), ItemBlock, maxDecodeSize, make([]byte, maxDecodeSize)),
	}
}

func TestDecodeEventRejects(t *testing.T) {
	for name, b := range malformed() {
		if _, err := DecodeEvent(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	for _, b := range [][]byte{{2, TypeAnnounce, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 1, 1, 1}, {EnvelopeVersion, 7}} {
		if _, err := DecodeEvent(b); !errors.Is(err, ErrVersion) {
			t.Errorf("%x: err = %v, want ErrVersion", b, err)
		}
	}
}

// TestDecodeEventAllocs bounds what a worst-case envelope (as many tiny
// items as fit in the largest accepted size) costs to decode.
func TestDecodeEventAllocs(t *testing.T) {
	b := []byte{EnvelopeVersion, TypeAnnounce, 1, 2, 3, 4, 5, 6, 7, 8, 1, 'a'}
	for len(b)+3 <= maxDecodeSize {
		b = append(b, ItemBlock, 1, 7)
	}
	e, err := DecodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Blocks) != (len(b)-12)/3 {
		t.Fatalf("%d blocks", len(e.Blocks))
	}
	allocs := testing.AllocsPerRun(20, func() { DecodeEvent(b) })
	// One copy, the Event, the origin string and the slice's doublings.
	if allocs > 24 {
		t.Fatalf("%.0f allocations per decode", allocs)
	}
}

// fuzzSeeds are the seed corpus of FuzzDecodeEvent: real envelopes and the
// malformed ones.
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	em := newEntryMaker(t, 1)
	var entries [][]byte
	for i := 0; i < 8; i++ {
		entries = append(entries, em.mkdir(t))
	}
	evs, _, err := packEvents(Event{FS: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, Origin: "127.0.0.2:7946"}, MaxEventSize, 2,
		append(entries, em.big(t, 1100)), []log.Hash{log.Sum([]byte("h"))},
		[][]byte{bytes.Repeat([]byte("block"), 179), []byte("tail")})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		b, err := e.AppendEncode(nil)
		if err != nil {
			t.Fatal(err)
		}
		seeds[fmt.Sprintf("seed-event-%d", i)] = b
	}
	for name, b := range malformed() {
		if len(b) > 4096 {
			continue
		}
		seeds["seed-bad-"+strings.ReplaceAll(name, " ", "-")] = b
	}
	return seeds
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/FuzzDecodeEvent's seeds when
// BASEFS_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("BASEFS_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set BASEFS_WRITE_FUZZ_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeEvent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds(t) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDecodeEvent: decoding never panics, never returns more than the
// input holds, and whatever decodes re-encodes to something that decodes to
// the same event.
func FuzzDecodeEvent(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			if e != nil {
				t.Fatal("event with an error")
			}
			return
		}
		items := len(e.Entries) + len(e.Blocks) + len(e.Hashes)
		if items == 0 || items > len(b)/3 {
			t.Fatalf("%d items from %d bytes", items, len(b))
		}
		total := len(e.Origin)
		for _, x := range e.Entries {
			total += len(x)
		}
		for _, x := range e.Blocks {
			total += len(x)
		}
		total += 32 * len(e.Hashes)
		if total > len(b) {
			t.Fatalf("%d bytes of items from %d bytes", total, len(b))
		}
		re, err := e.AppendEncode(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if len(re) != len(b) {
			t.Fatalf("re-encoded %d bytes from %d", len(re), len(b))
		}
		e2, err := DecodeEvent(re)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func TestPackEvents(t *testing.T) {
	em := newEntryMaker(t, 2)
	var entries [][]byte
	for i := 0; i < 40; i++ {
		entries = append(entries, em.mkdir(t))
	}
	big := em.big(t, 1100)
	entries = append(entries[:20:20], append([][]byte{big}, entries[20:]...)...)
	blocks := make([][]byte, 12)
	for i := range blocks {
		blocks[i] = bytes.Repeat([]byte{byte(i)}, log.BlockSize-i*60)
	}
	tmpl := Event{FS: [8]byte{9}, Origin: "node-a"}
	evs, dropped, err := packEvents(tmpl, MaxEventSize, 3, entries, nil, blocks)
	if err != nil {
		t.Fatal(err)
	}
	var gotE, gotB [][]byte
	var gotH []log.Hash
	entryBytes := 0
	for _, e := range evs {
		if e.Size() > MaxEventSize {
			t.Fatalf("event of %d bytes", e.Size())
		}
		if e.Origin != "node-a" || e.FS != tmpl.FS {
			t.Fatal("header lost")
		}
		gotE = append(gotE, e.Entries...)
		gotB = append(gotB, e.Blocks...)
		gotH = append(gotH, e.Hashes...)
		for _, x := range e.Entries {
			entryBytes += itemSize(len(x))
		}
	}
	// Entries: all but the big one, in order; the big one by hash.
	want := append(append([][]byte{}, entries[:20]...), entries[21:]...)
	if !reflect.DeepEqual(gotE, want) {
		t.Fatal("entries lost or reordered")
	}
	if len(gotH) != 1 || gotH[0] != log.Sum(big) {
		t.Fatalf("hashes %v", gotH)
	}
	// As few events as first fit can: entries fill ⌈bytes/room⌉ events,
	// give or take one.
	room := MaxEventSize - headerSize("node-a")
	minEntryEvents := (entryBytes + 34 + room - 1) / room
	entryEvents := 0
	for _, e := range evs {
		if len(e.Entries) > 0 {
			entryEvents++
		}
	}
	if entryEvents > minEntryEvents+1 {
		t.Fatalf("%d events for entries, %d would do", entryEvents, minEntryEvents)
	}
	// Blocks: a prefix, in order, in at most 3 new events plus the room
	// left in the entries' events.
	if len(gotB)+dropped != len(blocks) || dropped == 0 {
		t.Fatalf("%d blocks packed, %d dropped", len(gotB), dropped)
	}
	for i, b := range gotB {
		if !bytes.Equal(b, blocks[i]) {
			t.Fatalf("block %d out of order", i)
		}
	}
	if len(evs)-entryEvents > 3 {
		t.Fatalf("%d events opened for blocks", len(evs)-entryEvents)
	}

	// Negative MaxBlockEvents: blocks only fill room left by entries.
	evs, dropped, err = packEvents(tmpl, MaxEventSize, -1, entries[:1], nil, blocks[:1])
	if err != nil || len(evs) != 1 {
		t.Fatal(err, len(evs))
	}
	if len(evs[0].Blocks) != 0 || dropped != 1 {
		t.Fatalf("%d blocks, %d dropped", len(evs[0].Blocks), dropped)
	}
	small := []byte("tiny block")
	evs, dropped, _ = packEvents(tmpl, MaxEventSize, -1, entries[:1], nil, [][]byte{small})
	if len(evs) != 1 || len(evs[0].Blocks) != 1 || dropped != 0 {
		t.Fatal("small block not packed beside its entry")
	}

	// A full block always fits one event with the longest origin.
	tmpl.Origin = strings.Repeat("o", MaxNodeNameLen)
	evs, dropped, err = packEvents(tmpl, MaxEventSize, 1, nil, nil, [][]byte{make([]byte, log.BlockSize)})
	if err != nil || dropped != 0 || len(evs) != 1 {
		t.Fatalf("full block: %v, %d dropped", err, dropped)
	}

	// Bad input.
	if _, _, err := packEvents(tmpl, MaxEventSize, 1, [][]byte{{}}, nil, nil); err == nil {
		t.Fatal("empty entry packed")
	}
	if _, _, err := packEvents(tmpl, MaxEventSize, 1, nil, nil, [][]byte{make([]byte, log.BlockSize+1)}); err == nil {
		t.Fatal("oversized block packed")
	}
}

// BenchmarkDecodeEvent: a full event of small entries.
func BenchmarkDecodeEvent(b *testing.B) {
	em := newEntryMaker(b, 9)
	var entries [][]byte
	for i := 0; i < 6; i++ {
		entries = append(entries, em.mkdir(b))
	}
	evs, _, err := packEvents(Event{Origin: "127.0.0.2:7946"}, MaxEventSize, 0, entries, nil, nil)
	if err != nil || len(evs) != 1 {
		b.Fatal(err, len(evs))
	}
	buf, _ := evs[0].AppendEncode(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPack256: packing and encoding a burst of 256 entries.
func BenchmarkPack256(b *testing.B) {
	em := newEntryMaker(b, 10)
	var entries [][]byte
	for i := 0; i < 256; i++ {
		entries = append(entries, em.mkdir(b))
	}
	b.ReportAllocs()
	for b.Loop() {
		evs, _, err := packEvents(Event{Origin: "127.0.0.2:7946"}, MaxEventSize, 8, entries, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range evs {
			if _, err := e.AppendEncode(make([]byte, 0, e.Size())); err != nil {
				b.Fatal(err)
			}
		}
	}
}
