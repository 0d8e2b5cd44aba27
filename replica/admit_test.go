package replica

import (
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
)

// signedWrite builds a decoded, signed write entry of data at path by key,
// and the content's blocks.
func signedWrite(t *testing.T, r *Replica, k string, path string, data []byte) (*log.Entry, [][]byte) {
	t.Helper()
	c, blocks, err := log.EncodeContent(data, log.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &log.Entry{Action: log.ActWrite, Parent: r.Root().Hash(), Path: path, Mode: 0o644, Content: c, Time: 1}
	if err := e.Sign(key(k)); err != nil {
		t.Fatal(err)
	}
	d, err := log.Decode(e.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	return d, blocks
}

// TestUnwantedBlocksAreNotStored: blocks named by an entry without
// standing, and blocks no entry names, are not stored; a file's blocks
// arriving after its entry, shuffled, are — also after a reopen (a data
// block that comes before its tree block is refused, and taken when sent
// again, as sync does for what is still missing).
func TestUnwantedBlocksAreNotStored(t *testing.T) {
	seed := rand.Int63()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	dir := filepath.Join(t.TempDir(), "fs")
	r, err := Create(dir, "t", key("root"), nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.Close() }()
	r.SetDropUnauthorized(true)
	data := make([]byte, 100<<10) // a tree of depth 1
	rng.Read(data)

	before := r.Status().Blocks
	junk, junkBlocks := signedWrite(t, r, "stranger", "/junk", data)
	res, err := r.Ingest([]*log.Entry{junk}, junkBlocks)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Status().Blocks; got != before || res.Unwanted != len(junkBlocks) {
		t.Fatalf("an ungranted key's blocks: %d stored, %d refused of %d", got-before, res.Unwanted, len(junkBlocks))
	}
	bare := make([]byte, log.BlockSize)
	rng.Read(bare)
	if res, _ := r.Ingest(nil, [][]byte{bare}); res.Blocks != 0 || res.Unwanted != 1 {
		t.Fatalf("a bare block: %+v", res)
	}

	good, blocks := signedWrite(t, r, "root", "/good", data)
	if _, err := r.Ingest([]*log.Entry{good}, nil); err != nil {
		t.Fatal(err)
	}
	rng.Shuffle(len(blocks), func(i, j int) { blocks[i], blocks[j] = blocks[j], blocks[i] })
	half := len(blocks) / 2
	if _, err := r.Ingest(nil, blocks[:half]); err != nil {
		t.Fatal(err)
	}
	// Reopened, the replica still wants the rest.
	r.Close()
	if r, err = Open(dir, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	r.SetDropUnauthorized(true)
	// Sync asks again for what is still missing: data blocks that came
	// before their tree block were refused the first time.
	if _, err := r.Ingest(nil, blocks); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadFile("/good")
	if err != nil || string(got) != string(data) {
		t.Fatalf("the granted file after its blocks arrived: %v", err)
	}
	if st := r.Status(); st.MissingBlocks != 0 {
		t.Fatalf("%d blocks still missing", st.MissingBlocks)
	}
}

// TestControlCharactersRefused: a write that would create a name with a
// control character is refused with a clear error; nothing is written.
func TestControlCharactersRefused(t *testing.T) {
	r, err := Create(filepath.Join(t.TempDir(), "fs"), "t", key("root"), nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before := r.NumEntries()
	for _, p := range []string{"/evil\x1b[2J", "/d\x07/f", "/tab\there", "/del\x7f"} {
		_, err := r.WriteFile(key("root"), p, []byte("x"), WriteOptions{Parents: true})
		if !IsKind(err, Invalid) || !strings.Contains(err.Error(), "control characters") {
			t.Errorf("write %q: %v", p, err)
		}
		if err := r.Mkdir(key("root"), p, 0o755, true, false); !IsKind(err, Invalid) {
			t.Errorf("mkdir %q: %v", p, err)
		}
	}
	if r.NumEntries() != before {
		t.Fatal("a refused write left entries")
	}
}

// TestWantedSetRecovers: should the wanted set lose track of a block the
// tree needs, it is recomputed (at most every rebuildEvery) and the block
// is taken: status and admission never disagree for good.
func TestWantedSetRecovers(t *testing.T) {
	r, err := Create(filepath.Join(t.TempDir(), "fs"), "t", key("root"), nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data := make([]byte, 20<<10)
	rand.New(rand.NewSource(1)).Read(data)
	e, blocks := signedWrite(t, r, "root", "/f", data)
	if _, err := r.Ingest([]*log.Entry{e}, blocks[:1]); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	for h := range r.wanted {
		delete(r.wanted, h) // drift
	}
	r.wantedBuilt = time.Time{}
	r.mu.Unlock()
	if _, err := r.Ingest(nil, blocks); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadFile("/f"); err != nil || string(got) != string(data) {
		t.Fatalf("after the wanted set was recomputed: %v", err)
	}
}
