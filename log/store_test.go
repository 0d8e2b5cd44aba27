package log

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// storeTestSeed returns the seed of a randomized test: BASEFS_SEED if set,
// otherwise the clock. It is logged, and repeated if the test fails.
func storeTestSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BASEFS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BASEFS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d", seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with seed %d: rerun with BASEFS_SEED=%d", seed, seed)
		}
	})
	return seed
}

// storeTestLog returns a logger that writes text lines into a buffer.
func storeTestLog() (*slog.Logger, *storeLogBuf) {
	b := &storeLogBuf{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// storeLogBuf is a goroutine-safe buffer for log output.
type storeLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *storeLogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *storeLogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// storeTestKey derives a signing key from rng.
func storeTestKey(rng *rand.Rand) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	return ed25519.NewKeyFromSeed(seed)
}

// storeTestRoot returns a signed root entry.
func storeTestRoot(t testing.TB, priv ed25519.PrivateKey, rng *rand.Rand) *Entry {
	t.Helper()
	nonce := make([]byte, NonceLen)
	for i := range nonce {
		nonce[i] = byte(rng.Uint32())
	}
	root := &Entry{Action: ActMkdir, Path: "/", Time: 1, Name: "store", Nonce: nonce, Mode: 0o755}
	if err := root.Sign(priv); err != nil {
		t.Fatal(err)
	}
	return root
}

// storeTestEntry returns the i-th entry of a realistic mix under root:
// directories, small files with inline content, mode changes and grants.
func storeTestEntry(priv ed25519.PrivateKey, root Hash, i int, rng *rand.Rand) (*Entry, error) {
	e := &Entry{Parent: root, Time: int64(i) + 1}
	switch i % 10 {
	case 0, 1:
		e.Action, e.Path, e.Mode = ActMkdir, fmt.Sprintf("/d%d", i), 0o755
	case 2:
		e.Action, e.Path, e.Mode = ActMode, fmt.Sprintf("/d%d", i-1), 0o700
	case 3:
		e.Action, e.Path = ActGrant, fmt.Sprintf("/d%d", i-2)
		for j := range e.Key {
			e.Key[j] = byte(rng.Uint32())
		}
	default:
		data := make([]byte, rng.IntN(MaxInline))
		for j := range data {
			data[j] = byte('a' + rng.IntN(26))
		}
		e.Action, e.Path, e.Mode = ActWrite, fmt.Sprintf("/d%d/file-%d.conf", i/10, i), 0o644
		e.Content = &Content{Size: uint64(len(data)), Hash: Sum(data), Encoding: EncRaw, Inline: data}
	}
	if err := e.Sign(priv); err != nil {
		return nil, err
	}
	return e, nil
}

// storeTestBatch returns n signed entries starting at index from, and up to
// nblocks random blocks.
func storeTestBatch(t testing.TB, priv ed25519.PrivateKey, root Hash, from, n, nblocks int, rng *rand.Rand) ([]*Entry, [][]byte) {
	t.Helper()
	var es []*Entry
	for i := from; i < from+n; i++ {
		e, err := storeTestEntry(priv, root, i, rng)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	var bs [][]byte
	for range nblocks {
		b := make([]byte, 1+rng.IntN(BlockSize))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		bs = append(bs, b)
	}
	return es, bs
}

// storeTestOpen opens a store and fails the test on error. It loads with
// the parallel pipeline, in small windows, so tests of small files run it.
// (The fuzz test runs the sequential load; TestStoreLoadModesAgree compares
// the two.)
func storeTestOpen(t testing.TB, dir string, logger *slog.Logger) *Store {
	t.Helper()
	s, err := OpenStore(dir, StoreOptions{Logger: logger, NoSync: true, parallelMin: 1, window: 1})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return s
}

// storeTestRecords returns the offsets of the records of an undamaged
// store file, and the file's length.
func storeTestRecords(t testing.TB, path string) ([]int64, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for pos := 0; pos < len(b); {
		total, _, fault := recCheck(b[pos:])
		if fault.kind != recOK {
			t.Fatalf("record at %d: %v", pos, fault)
		}
		offs = append(offs, int64(pos))
		pos += total
	}
	return offs, b
}

// storeTestHashes returns the entries' hashes.
func storeTestHashes(es []*Entry) []Hash {
	hs := make([]Hash, len(es))
	for i, e := range es {
		hs[i] = e.Hash()
	}
	return hs
}

// storeTestDetached returns a copy of e that holds its own bytes.
func storeTestDetached(t testing.TB, e *Entry) *Entry {
	t.Helper()
	d, err := Decode(e.Encoded())
	if err != nil {
		t.Fatalf("re-decode %s: %v", e.Hash().Short(), err)
	}
	return d
}

func storeTestSameEntries(t testing.TB, got, want []*Entry) {
	t.Helper()
	g, w := storeTestHashes(got), storeTestHashes(want)
	if len(g) != len(w) {
		t.Fatalf("store has %d entries, want %d", len(g), len(w))
	}
	for i := range g {
		if g[i] != w[i] {
			t.Fatalf("entry %d is %s, want %s", i, g[i].Short(), w[i].Short())
		}
		if !bytes.Equal(got[i].Encoded(), want[i].Encoded()) {
			t.Fatalf("entry %d: encoding differs", i)
		}
	}
}

func TestStoreRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 1))
	priv := storeTestKey(rng)
	root := storeTestRoot(t, priv, rng)
	dir := filepath.Join(t.TempDir(), "fs")
	s := storeTestOpen(t, dir, nil)

	want := []*Entry{root}
	if err := s.Append([]*Entry{root}, nil); err != nil {
		t.Fatal(err)
	}
	blocks := map[Hash][]byte{}
	var blockBytes int64
	next := 0
	for range 20 {
		es, bs := storeTestBatch(t, priv, root.Hash(), next, 1+rng.IntN(30), rng.IntN(4), rng)
		next += len(es)
		want = append(want, es...)
		for _, b := range bs {
			if _, ok := blocks[Sum(b)]; !ok {
				blocks[Sum(b)] = b
				blockBytes += int64(len(b))
			}
		}
		// Duplicates: within the batch, and of earlier batches.
		dupEs := append(append([]*Entry{}, es...), es[0], want[rng.IntN(len(want))])
		dupBs := append(append([][]byte{}, bs...), bs...)
		if err := s.Append(dupEs, dupBs); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		storeTestSameEntries(t, s.Entries(), want)
		if s.NumEntries() != len(want) {
			t.Fatalf("NumEntries %d, want %d", s.NumEntries(), len(want))
		}
		for _, e := range want {
			if !s.HasEntry(e.Hash()) {
				t.Fatalf("HasEntry(%s) false", e.Hash().Short())
			}
			if g, ok := s.GetEntry(e.Hash()); !ok || g.Hash() != e.Hash() {
				t.Fatalf("GetEntry(%s) wrong", e.Hash().Short())
			}
		}
		if s.NumBlocks() != len(blocks) || s.BlockBytes() != blockBytes {
			t.Fatalf("%d blocks of %d bytes, want %d of %d", s.NumBlocks(), s.BlockBytes(), len(blocks), blockBytes)
		}
		for h, b := range blocks {
			got, err := s.Block(h)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("Block(%s) = %d bytes, %v", h.Short(), len(got), err)
			}
			if !s.HasBlock(h) {
				t.Fatalf("HasBlock(%s) false", h.Short())
			}
		}
		if s.HasEntry(Sum([]byte("nothing"))) || s.HasBlock(Sum([]byte("nothing"))) {
			t.Fatal("store claims a hash it never got")
		}
		if _, err := s.Block(Sum([]byte("nothing"))); err != ErrBlockMissing {
			t.Fatalf("Block(absent) error %v, want ErrBlockMissing", err)
		}
		if len(s.Corruptions()) != 0 {
			t.Fatalf("corruptions in a clean store: %v", s.Corruptions())
		}
		fi, err := os.Stat(filepath.Join(dir, StoreFileName))
		if err != nil || fi.Size() != s.Size() {
			t.Fatalf("file size %v (%v), Size() %d", fi.Size(), err, s.Size())
		}
	}
	check(s)
	if got := s.EntriesSince(len(want) - 3); len(got) != 3 || got[2].Hash() != want[len(want)-1].Hash() {
		t.Fatalf("EntriesSince gave %d entries", len(got))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logger, logs := storeTestLog()
	s = storeTestOpen(t, dir, logger)
	check(s)
	if logs.String() != "" {
		t.Fatalf("clean open logged:\n%s", logs)
	}
	// Appending what is stored changes nothing.
	size := s.Size()
	if err := s.Append(want, nil); err != nil {
		t.Fatal(err)
	}
	if s.Size() != size {
		t.Fatalf("appending duplicates grew the file from %d to %d", size, s.Size())
	}
	s.Close()
}

func TestStoreAppendRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 2))
	priv := storeTestKey(rng)
	root := storeTestRoot(t, priv, rng)
	s := storeTestOpen(t, t.TempDir(), nil)
	defer s.Close()
	size := s.Size()
	unsigned := &Entry{Action: ActMkdir, Parent: root.Hash(), Path: "/x", Mode: 0o755}
	if err := s.Append([]*Entry{root, unsigned}, nil); err == nil {
		t.Fatal("appended an entry that was never signed")
	}
	if err := s.Append([]*Entry{root}, [][]byte{make([]byte, BlockSize+1)}); err == nil {
		t.Fatal("appended an oversized block")
	}
	if s.Size() != size || s.NumEntries() != 0 {
		t.Fatalf("a rejected batch was written: size %d → %d, %d entries", size, s.Size(), s.NumEntries())
	}
	// An empty block and an empty batch are fine.
	if err := s.Append(nil, [][]byte{{}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(nil, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Block(Sum(nil)); err != nil || len(b) != 0 {
		t.Fatalf("empty block: %v", err)
	}
}

// storeTestBuild writes a store of nbatches batches into dir and returns its
// entries and the file offset where the last batch begins.
func storeTestBuild(t testing.TB, dir string, rng *rand.Rand, nbatches int) ([]*Entry, map[Hash][]byte, int64) {
	t.Helper()
	priv := storeTestKey(rng)
	root := storeTestRoot(t, priv, rng)
	s := storeTestOpen(t, dir, nil)
	defer s.Close()
	all := []*Entry{root}
	if err := s.Append(all, nil); err != nil {
		t.Fatal(err)
	}
	blocks := map[Hash][]byte{}
	var last int64
	for i := range nbatches {
		es, bs := storeTestBatch(t, priv, root.Hash(), 1000*i, 1+rng.IntN(4), rng.IntN(3), rng)
		last = s.Size()
		if err := s.Append(es, bs); err != nil {
			t.Fatal(err)
		}
		all = append(all, es...)
		for _, b := range bs {
			blocks[Sum(b)] = b
		}
	}
	return all, blocks, last
}

func storeTestWrite(t testing.TB, dir string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, StoreFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStoreTornTail(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 3))
	src := t.TempDir()
	all, _, _ := storeTestBuild(t, src, rng, 6)
	offs, file := storeTestRecords(t, filepath.Join(src, StoreFileName))
	last := offs[len(offs)-1] // the last record: one entry

	var cuts []int64
	for c := last + 1; c < int64(len(file)); c++ {
		cuts = append(cuts, c)
	}
	if testing.Short() {
		rng.Shuffle(len(cuts), func(i, j int) { cuts[i], cuts[j] = cuts[j], cuts[i] })
		cuts = append(cuts[:min(len(cuts), 20)], last+1, last+recHeaderLen, int64(len(file))-1)
	}
	for _, cut := range cuts {
		dir := filepath.Join(t.TempDir(), "fs")
		storeTestWrite(t, dir, file[:cut])
		logger, logs := storeTestLog()
		s := storeTestOpen(t, dir, logger)
		storeTestSameEntries(t, s.Entries(), all[:len(all)-1])
		if s.Size() != last {
			t.Fatalf("cut at %d: Size %d, want %d", cut, s.Size(), last)
		}
		if len(s.Corruptions()) != 0 {
			t.Fatalf("cut at %d: a torn tail reported as corruption: %v", cut, s.Corruptions())
		}
		fi, err := os.Stat(filepath.Join(dir, StoreFileName))
		if err != nil || fi.Size() != last {
			t.Fatalf("cut at %d: file not truncated to %d: %v %v", cut, last, fi.Size(), err)
		}
		l := logs.String()
		wantLog := fmt.Sprintf("offset=%d dropped_bytes=%d", last, cut-last)
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "torn tail") || !strings.Contains(l, wantLog) ||
			strings.Count(l, "\n") != 1 {
			t.Fatalf("cut at %d: want one warning with %q, log:\n%s", cut, wantLog, l)
		}
		// The lost entry can be appended again, and then it is there.
		if err := s.Append(all[len(all)-1:], nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = storeTestOpen(t, dir, nil)
		storeTestSameEntries(t, s.Entries(), all)
		s.Close()
	}
}

func TestStoreTornHeader(t *testing.T) {
	for _, n := range []int{1, 5, recHeaderLen, recHeaderLen + 3} {
		dir := t.TempDir()
		full := recAppend(nil, recHeader, append([]byte(storeFormatName), storeFormatVersion))
		storeTestWrite(t, dir, full[:n])
		logger, logs := storeTestLog()
		s := storeTestOpen(t, dir, logger)
		if s.Size() != int64(len(full)) || !strings.Contains(logs.String(), "torn tail") {
			t.Fatalf("%d bytes of header: size %d, log %s", n, s.Size(), logs)
		}
		s.Close()
		if b, _ := os.ReadFile(filepath.Join(dir, StoreFileName)); !bytes.Equal(b, full) {
			t.Fatalf("%d bytes of header: header not rewritten", n)
		}
	}
}

// TestStoreMidFileCorruption flips a byte inside a random record in the
// middle of a store, and checks that exactly that record is reported (with
// its offset and length) and skipped, every other record loaded, and the
// file left as it is.
func TestStoreMidFileCorruption(t *testing.T) {
	seed := storeTestSeed(t)
	rng := rand.New(rand.NewPCG(seed, 4))
	src := t.TempDir()
	all, blocks, _ := storeTestBuild(t, src, rng, 30)
	offs, file := storeTestRecords(t, filepath.Join(src, StoreFileName))

	trials := 60
	if testing.Short() {
		trials = 15
	}
	for trial := range trials {
		// A record other than the header, the last or the first entry.
		k := 2 + rng.IntN(len(offs)-3)
		recOff, recEnd := offs[k], offs[k+1]
		at := recOff + rng.Int64N(recEnd-recOff)
		damaged := bytes.Clone(file)
		damaged[at] ^= byte(1 + rng.IntN(255))
		typ := file[recOff+12]

		dir := filepath.Join(t.TempDir(), "fs")
		storeTestWrite(t, dir, damaged)
		logger, logs := storeTestLog()
		s := storeTestOpen(t, dir, logger)
		cs := s.Corruptions()
		if len(cs) != 1 || cs[0].Offset != recOff || cs[0].Length != recEnd-recOff {
			t.Fatalf("trial %d: byte %d of record %d..%d flipped: corruptions %v", trial, at, recOff, recEnd, cs)
		}
		l := logs.String()
		if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, fmt.Sprintf("offset=%d ", recOff)) {
			t.Fatalf("trial %d: no error logged with the offset:\n%s", trial, l)
		}
		if s.Size() != int64(len(file)) {
			t.Fatalf("trial %d: file size changed from %d to %d", trial, len(file), s.Size())
		}
		// Every other record is loaded.
		want := all
		if typ == recEntry {
			// The entry records follow the header, in order; find which
			// entry this one was.
			e, err := Decode(file[recOff+recHeaderLen : recEnd])
			if err != nil {
				t.Fatal(err)
			}
			want = nil
			for _, w := range all {
				if w.Hash() != e.Hash() {
					want = append(want, w)
				}
			}
		}
		storeTestSameEntries(t, s.Entries(), want)
		nb := len(blocks)
		if typ == recBlock {
			nb--
		}
		if s.NumBlocks() != nb {
			t.Fatalf("trial %d: %d blocks, want %d", trial, s.NumBlocks(), nb)
		}
		// Appends go at the end, and the next open sees them and the same
		// corruption.
		if err := s.Append(nil, [][]byte{[]byte("after")}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = storeTestOpen(t, dir, nil)
		if cs2 := s.Corruptions(); len(cs2) != 1 || cs2[0] != cs[0] || !s.HasBlock(Sum([]byte("after"))) {
			t.Fatalf("trial %d: after reopen: %v", trial, cs2)
		}
		s.Close()
	}
}

// TestStoreGarbageBetween puts zeros (as a crash can leave on some
// filesystems) and random bytes between records.
func TestStoreGarbageBetween(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 5))
	src := t.TempDir()
	all, _, _ := storeTestBuild(t, src, rng, 10)
	offs, file := storeTestRecords(t, filepath.Join(src, StoreFileName))
	k := 3 + rng.IntN(len(offs)-4)
	for _, garbage := range [][]byte{make([]byte, 4096), []byte(recMagicStr), []byte(recMagicStr + "\x00\x00\x00\x00\x10\x00\x00\x00\x02")} {
		damaged := append(append(bytes.Clone(file[:offs[k]]), garbage...), file[offs[k]:]...)
		dir := t.TempDir()
		storeTestWrite(t, dir, damaged)
		s := storeTestOpen(t, dir, nil)
		cs := s.Corruptions()
		if len(cs) != 1 || cs[0].Offset != offs[k] || cs[0].Length != int64(len(garbage)) {
			t.Fatalf("%d bytes of garbage at %d: corruptions %v", len(garbage), offs[k], cs)
		}
		storeTestSameEntries(t, s.Entries(), all)
		s.Close()
	}
}

// TestStoreBadEntryRecord: a record whose checksum is right but whose
// entry does not decode is reported and skipped, in the middle and at the
// end, and never truncated.
func TestStoreBadEntryRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 6))
	src := t.TempDir()
	all, _, _ := storeTestBuild(t, src, rng, 5)
	offs, file := storeTestRecords(t, filepath.Join(src, StoreFileName))
	bad := recAppend(nil, recEntry, []byte{FormatVersion, 99, 1, 2})
	for _, at := range []int64{offs[3], int64(len(file))} {
		damaged := append(append(bytes.Clone(file[:at]), bad...), file[at:]...)
		dir := t.TempDir()
		storeTestWrite(t, dir, damaged)
		s := storeTestOpen(t, dir, nil)
		cs := s.Corruptions()
		if len(cs) != 1 || cs[0].Offset != at || cs[0].Length != int64(len(bad)) || !strings.Contains(cs[0].Reason, "entry") {
			t.Fatalf("bad entry at %d: corruptions %v", at, cs)
		}
		if s.Size() != int64(len(damaged)) {
			t.Fatalf("bad entry at %d: file truncated", at)
		}
		storeTestSameEntries(t, s.Entries(), all)
		s.Close()
	}
}

// TestStoreVerifiesAfterDamage: open trusts entries (they were verified
// before they were appended), except after damaged bytes, where a record
// found by searching may be one embedded in another record's payload.
func TestStoreVerifiesAfterDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 7))
	src := t.TempDir()
	all, _, _ := storeTestBuild(t, src, rng, 5)
	_, file := storeTestRecords(t, filepath.Join(src, StoreFileName))
	forged, err := Decode(all[2].Encoded())
	if err != nil {
		t.Fatal(err)
	}
	enc := bytes.Clone(forged.Encoded())
	enc[len(enc)-1] ^= 1 // the signature's last byte
	forged, err = Decode(enc)
	if err != nil || forged.Verify() == nil {
		t.Fatalf("forged entry: decode %v, verify passes", err)
	}
	rec := recAppend(nil, recEntry, enc)

	// Undamaged file: the record is trusted.
	dir := t.TempDir()
	storeTestWrite(t, dir, append(bytes.Clone(file), rec...))
	s := storeTestOpen(t, dir, nil)
	if !s.HasEntry(forged.Hash()) {
		t.Fatal("an entry in an undamaged file was not loaded")
	}
	s.Close()

	// After damage: checked, reported, skipped; good entries still load.
	dir = t.TempDir()
	damaged := append(bytes.Clone(file), 0xff, 0xff, 0xff)
	damaged = append(damaged, rec...)
	good, _ := storeTestBatch(t, storeTestKey(rng), all[0].Hash(), 5000, 3, 0, rng)
	for _, e := range good {
		damaged = recAppend(damaged, recEntry, e.Encoded())
	}
	storeTestWrite(t, dir, damaged)
	logger, logs := storeTestLog()
	s = storeTestOpen(t, dir, logger)
	defer s.Close()
	if s.HasEntry(forged.Hash()) {
		t.Fatal("an entry with a bad signature after damaged bytes was loaded")
	}
	storeTestSameEntries(t, s.Entries(), append(append([]*Entry{}, all...), good...))
	cs := s.Corruptions()
	if len(cs) != 2 || cs[0].Offset != int64(len(file)) || cs[0].Length != 3 ||
		cs[1].Offset != int64(len(file))+3 || !strings.Contains(cs[1].Reason, "signature") {
		t.Fatalf("corruptions %v", cs)
	}
	if !strings.Contains(logs.String(), "entries=4") {
		t.Fatalf("log does not count the checked entries:\n%s", logs)
	}
}

func TestStoreDuplicateRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 8))
	src := t.TempDir()
	all, blocks, _ := storeTestBuild(t, src, rng, 5)
	_, file := storeTestRecords(t, filepath.Join(src, StoreFileName))
	// The whole file again, minus its header: every record twice, as a
	// retried append after a crash can leave it.
	hdr, _, _ := recCheck(file)
	doubled := append(bytes.Clone(file), file[hdr:]...)
	dir := t.TempDir()
	storeTestWrite(t, dir, doubled)
	s := storeTestOpen(t, dir, nil)
	defer s.Close()
	storeTestSameEntries(t, s.Entries(), all)
	if s.NumBlocks() != len(blocks) || len(s.Corruptions()) != 0 {
		t.Fatalf("%d blocks (want %d), corruptions %v", s.NumBlocks(), len(blocks), s.Corruptions())
	}
}

func TestStoreBlockCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := storeTestOpen(t, dir, nil)
	defer s.Close()
	blk := bytes.Repeat([]byte("block"), 100)
	if err := s.Append(nil, [][]byte{blk}); err != nil {
		t.Fatal(err)
	}
	// Damage the block's bytes behind the store's back.
	f, err := os.OpenFile(filepath.Join(dir, StoreFileName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("X"), s.Size()-7); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := s.Block(Sum(blk)); !errors.Is(err, ErrBlockCorrupt) {
		t.Fatalf("Block of damaged bytes: %v, want ErrBlockCorrupt", err)
	}
}

func TestStoreFormatVersion(t *testing.T) {
	dir := t.TempDir()
	file := recAppend(nil, recHeader, append([]byte(storeFormatName), storeFormatVersion+1))
	storeTestWrite(t, dir, file)
	if s, err := OpenStore(dir, StoreOptions{NoSync: true}); err == nil || !strings.Contains(err.Error(), "version") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("opened a store of another format version: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, StoreFileName)); !bytes.Equal(b, file) {
		t.Fatal("the file of another format version was changed")
	}
}

func TestStoreLocked(t *testing.T) {
	dir := t.TempDir()
	s := storeTestOpen(t, dir, nil)
	if s2, err := OpenStore(dir, StoreOptions{NoSync: true}); !errors.Is(err, ErrLocked) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second OpenStore: %v, want ErrLocked", err)
	} else if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("error does not name the holder: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = storeTestOpen(t, dir, nil)
	s.Close()
}

func TestStoreClosed(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(nil, [][]byte{[]byte("b")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(nil, [][]byte{[]byte("c")}); err != ErrStoreClosed {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := s.Sync(); err != ErrStoreClosed {
		t.Fatalf("Sync after Close: %v", err)
	}
	if _, err := s.Block(Sum([]byte("b"))); err != ErrStoreClosed {
		t.Fatalf("Block after Close: %v", err)
	}
	if err := s.Close(); err != ErrStoreClosed {
		t.Fatalf("second Close: %v", err)
	}
	if !s.HasBlock(Sum([]byte("b"))) {
		t.Fatal("accessors stop working after Close")
	}
}

// TestStoreConcurrent appends, syncs and reads from several goroutines
// (run it with -race).
func TestStoreConcurrent(t *testing.T) {
	seed := storeTestSeed(t)
	rng := rand.New(rand.NewPCG(seed, 9))
	priv := storeTestKey(rng)
	root := storeTestRoot(t, priv, rng)
	dir := t.TempDir()
	s, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, batches = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	var mu sync.Mutex
	var want []*Entry
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(100+w)))
			for b := range batches {
				var es []*Entry
				for i := range 1 + r.IntN(5) {
					e, err := storeTestEntry(priv, root.Hash(), 100000*w+1000*b+i, r)
					if err != nil {
						errs <- err
						return
					}
					es = append(es, e)
				}
				blk := []byte(fmt.Sprintf("block %d %d", w, b))
				if err := s.Append(es, [][]byte{blk}); err != nil {
					errs <- err
					return
				}
				if err := s.Sync(); err != nil {
					errs <- err
					return
				}
				if got, err := s.Block(Sum(blk)); err != nil || !bytes.Equal(got, blk) {
					errs <- fmt.Errorf("block just appended: %v", err)
					return
				}
				_ = s.Entries()
				mu.Lock()
				want = append(want, es...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = storeTestOpen(t, dir, nil)
	defer s.Close()
	if s.NumEntries() != len(want) || s.NumBlocks() != writers*batches {
		t.Fatalf("%d entries, %d blocks; want %d, %d", s.NumEntries(), s.NumBlocks(), len(want), writers*batches)
	}
	for _, e := range want {
		if !s.HasEntry(e.Hash()) {
			t.Fatalf("entry %s lost", e.Hash().Short())
		}
	}
}

// storeBenchBuild writes a store of n entries (in the mix of
// storeTestEntry, about 240 bytes each on disk) into dir, signing on all
// cores.
func storeBenchBuild(b *testing.B, dir string, n int) {
	rng := rand.New(rand.NewPCG(1, 1))
	priv := storeTestKey(rng)
	root := storeTestRoot(b, priv, rng)
	s := storeTestOpen(b, dir, nil)
	defer s.Close()
	if err := s.Append([]*Entry{root}, nil); err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	type job struct {
		from int
		out  chan []*Entry
	}
	jobs := make(chan job)
	order := make(chan chan []*Entry, 2*runtime.GOMAXPROCS(0))
	for w := range runtime.GOMAXPROCS(0) {
		go func() {
			r := rand.New(rand.NewPCG(2, uint64(w)))
			for j := range jobs {
				var es []*Entry
				for i := j.from; i < min(j.from+batch, n); i++ {
					e, err := storeTestEntry(priv, root.Hash(), i, r)
					if err != nil {
						panic(err)
					}
					es = append(es, e)
				}
				j.out <- es
			}
		}()
	}
	go func() {
		for from := 0; from < n; from += batch {
			out := make(chan []*Entry, 1)
			order <- out
			jobs <- job{from, out}
		}
		close(jobs)
		close(order)
	}()
	for out := range order {
		if err := s.Append(<-out, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// storeVmHWM returns the process's peak resident memory in bytes, from
// /proc/self/status, or 0 where there is none.
func storeVmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkOpenStore opens a store of BASEFS_BENCH_ENTRIES entries (default
// 1,000,000; 20,000 with -short), built once, three ways: "readfile" only
// reads the file (the floor), "open" is OpenStore, "open-1goroutine" is
// OpenStore decoding on one goroutine. Each reports entries/s, the file's
// size, the heap the open store holds, and the process's peak RSS (reset
// before each sub-benchmark where Linux allows it).
//
//	go test -run '^$' -bench OpenStore -benchtime 3x ./log/
func BenchmarkOpenStore(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 20_000
	}
	if s := os.Getenv("BASEFS_BENCH_ENTRIES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		n = v
	}
	dir := b.TempDir()
	start := time.Now()
	storeBenchBuild(b, dir, n)
	b.Logf("built a store of %d entries in %v", n, time.Since(start).Round(time.Millisecond))
	// Write the file back now, not during the measurements.
	if f, err := os.Open(filepath.Join(dir, StoreFileName)); err == nil {
		f.Sync()
		f.Close()
	}

	b.Run("readfile", func(b *testing.B) {
		storeBenchOpen(b, n, func() (*Store, error) {
			_, err := os.ReadFile(filepath.Join(dir, StoreFileName))
			return nil, err
		})
	})
	b.Run("open", func(b *testing.B) {
		storeBenchOpen(b, n, func() (*Store, error) {
			return OpenStore(dir, StoreOptions{NoSync: true})
		})
	})
	b.Run("open-1goroutine", func(b *testing.B) {
		storeBenchOpen(b, n, func() (*Store, error) {
			return OpenStore(dir, StoreOptions{NoSync: true, parallelMin: math.MaxInt64})
		})
	})
}

// storeBenchOpen measures open, which returns a store of n entries or nil.
func storeBenchOpen(b *testing.B, n int, open func() (*Store, error)) {
	runtime.GC()
	debug.FreeOSMemory()
	// Reset the peak RSS to the current RSS, so VmHWM measures the opens.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var size int64
	var heap uint64
	for b.Loop() {
		s, err := open()
		if err != nil {
			b.Fatal(err)
		}
		if s == nil {
			continue
		}
		if s.NumEntries() != n+1 {
			b.Fatalf("%d entries, want %d", s.NumEntries(), n+1)
		}
		size = s.Size()
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = ms.HeapAlloc - min(ms.HeapAlloc, before.HeapAlloc)
		s.Close()
		runtime.GC()
		b.StartTimer()
	}
	b.ReportMetric(float64(n+1)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	if size > 0 {
		b.ReportMetric(float64(size)/(1<<20), "file-MiB")
		b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	}
	b.ReportMetric(float64(storeVmHWM())/(1<<20), "peak-RSS-MiB")
}

// BenchmarkStoreAppend appends batches of 10 signed entries, without fsync.
func BenchmarkStoreAppend(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	priv := storeTestKey(rng)
	root := storeTestRoot(b, priv, rng)
	var batches [][]*Entry
	for i := 0; i < 2000; i += 10 {
		es, _ := storeTestBatch(b, priv, root.Hash(), i, 10, 0, rng)
		batches = append(batches, es)
	}
	var bytesPerOp int64
	i := 0
	var s *Store
	for b.Loop() {
		if i%len(batches) == 0 {
			if s != nil {
				s.Close()
			}
			s = storeTestOpen(b, b.TempDir(), nil)
		}
		size := s.Size()
		if err := s.Append(batches[i%len(batches)], nil); err != nil {
			b.Fatal(err)
		}
		bytesPerOp = s.Size() - size
		i++
	}
	s.Close()
	b.SetBytes(bytesPerOp)
}

// TestStoreLoadModesAgree loads randomly damaged stores both ways, on one
// goroutine and with the parallel pipeline in windows of several sizes,
// and expects the same entries, blocks, corruptions and truncation.
func TestStoreLoadModesAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 12))
	src := t.TempDir()
	storeTestBuild(t, src, rng, 40)
	_, file := storeTestRecords(t, filepath.Join(src, StoreFileName))
	trials := 40
	if testing.Short() {
		trials = 10
	}
	for trial := range trials {
		damaged := bytes.Clone(file)
		for range rng.IntN(4) {
			damaged[rng.IntN(len(damaged))] ^= byte(1 + rng.IntN(255))
		}
		if rng.IntN(2) == 0 {
			damaged = damaged[:len(damaged)-rng.IntN(len(damaged)/4)]
		}
		var first string
		for _, opts := range []StoreOptions{
			{NoSync: true},
			{NoSync: true, parallelMin: 1, window: 1},
			{NoSync: true, parallelMin: 1, window: 3000},
			{NoSync: true, parallelMin: 1, window: 1 << 20},
		} {
			dir := t.TempDir()
			storeTestWrite(t, dir, damaged)
			s, err := OpenStore(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			var blocks []string
			for h := range s.blocks {
				blocks = append(blocks, h.String())
			}
			slices.Sort(blocks)
			got := fmt.Sprint(storeTestHashes(s.Entries()), blocks, s.Corruptions(), s.Size())
			s.Close()
			if first == "" {
				first = got
			} else if got != first {
				t.Fatalf("trial %d: window %d loads differently:\n%s\nvs\n%s", trial, opts.window, got, first)
			}
		}
	}
}

// Loaded entries do not keep their bytes in memory; Encoded reads them back,
// checked against the hash, while the store is open.
func TestStoreEntriesReadBackTheirBytes(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(storeTestSeed(t), 1))
	priv := storeTestKey(rng)
	root := storeTestRoot(t, priv, rng)
	batch, _ := storeTestBatch(t, priv, root.Hash(), 1, 19, 0, rng)
	all := append([]*Entry{root}, batch...)
	s, err := OpenStore(dir, StoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(all, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenStore(dir, StoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range s.Entries() {
		if e.encoded != nil {
			t.Fatalf("entry %d holds its bytes after open", i)
		}
		if !bytes.Equal(e.Encoded(), all[i].Encoded()) || e.Verify() != nil {
			t.Fatalf("entry %d: bytes read back differ or do not verify", i)
		}
	}
	// Damage the file under the open store: the bytes no longer check out.
	e := s.Entries()[5]
	f, _ := os.OpenFile(filepath.Join(dir, StoreFileName), os.O_RDWR, 0)
	f.WriteAt([]byte{0xFF}, e.srcOff+int64(e.srcLen)/2)
	f.Close()
	if e.Encoded() != nil || e.Verify() == nil {
		t.Fatal("damaged bytes served")
	}
	s.Close()
	if s.Entries()[0].Encoded() != nil {
		t.Fatal("bytes served after close")
	}
}
