package log

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func entryTestKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("entry-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// sampleEntries returns one signed entry of every action.
func sampleEntries(t testing.TB) []*Entry {
	k := entryTestKey("a")
	root := &Entry{Action: ActMkdir, Path: "/", Time: 1, Name: "fs", Nonce: bytes.Repeat([]byte{7}, NonceLen), Mode: 0o755}
	if err := root.Sign(k); err != nil {
		t.Fatal(err)
	}
	p := root.Hash()
	var key [32]byte
	copy(key[:], entryTestKey("b").Public().(ed25519.PublicKey))
	es := []*Entry{
		root,
		{Action: ActMkdir, Parent: p, Path: "/etc", Time: 2, Mode: 0o700},
		{Action: ActWrite, Parent: p, Path: "/f", Time: -3, Mode: 0o644, Content: &Content{Size: 2, Hash: Sum([]byte("hi")), Inline: []byte("hi")}},
		{Action: ActWrite, Parent: p, Path: "/g", Time: 3, Mode: 0o600, MTime: 99, Content: &Content{Size: 5000, Hash: Sum([]byte("x")), Encoding: EncZstd,
			PayloadLen: 1000, Blocks: []Hash{Sum([]byte("b1")), Sum([]byte("b2"))}}},
		{Action: ActWrite, Parent: p, Path: "/h", Time: 3, Mode: 0o600, Content: &Content{Size: 9, Hash: Sum([]byte("y")), Encoding: EncZstdDct, Base: Sum([]byte("base")), Inline: []byte{1, 2}}},
		{Action: ActDelete, Parent: p, Path: "/f", Time: 4},
		{Action: ActRevert, Parent: p, Path: "/f", Time: 5, Ref: p},
		{Action: ActGrant, Parent: p, Path: "/etc", Time: 6, Key: key},
		{Action: ActGrant, Parent: p, Path: "/etc", Time: 6, Key: key, Hashes: []Hash{p}},
		{Action: ActRevoke, Parent: p, Path: "/etc", Time: 7, Key: key},
		{Action: ActAck, Parent: p, Path: "/etc", Time: 8, Hashes: []Hash{p, Sum([]byte("z"))}},
		{Action: ActLink, Parent: p, Path: "/l", Time: 9, Target: "/f", Ref: p},
		{Action: ActSymlink, Parent: p, Path: "/s", Time: 10, Target: "../anything at all"},
		{Action: ActMode, Parent: p, Path: "/f", Time: 11, Mode: 0},
		{Action: ActMode, Parent: p, Path: "/f", Time: 11, Mode: 0o4755, MTime: 12345},
		{Action: ActRename, Parent: p, Path: "/b", Time: 12, Target: "/a", Ref: p},
	}
	for _, e := range es[1:] {
		if err := e.Sign(k); err != nil {
			t.Fatalf("%s %s: %v", e.Action, e.Path, err)
		}
	}
	return es
}

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range sampleEntries(t) {
		d, err := DecodeVerified(e.Encoded())
		if err != nil {
			t.Fatalf("%s %s: %v", e.Action, e.Path, err)
		}
		if d.Hash() != e.Hash() || !bytes.Equal(d.Encoded(), e.Encoded()) {
			t.Fatalf("%s: decode changed the entry", e.Action)
		}
		if d.Hash() != Sum(e.Encoded()) {
			t.Fatalf("%s: hash is not the SHA-256 of the bytes", e.Action)
		}
		if len(e.Encoded()) > 1024 {
			t.Fatalf("%s entry is %d bytes: too big to gossip", e.Action, len(e.Encoded()))
		}
	}
}

func TestEntryTamperingDetected(t *testing.T) {
	for _, e := range sampleEntries(t) {
		b := e.Encoded()
		for i := range b {
			c := append([]byte(nil), b...)
			c[i] ^= 0x01
			d, err := Decode(c)
			if err != nil {
				continue
			}
			if d.Verify() == nil {
				t.Fatalf("%s: flipping byte %d still verifies", e.Action, i)
			}
		}
	}
}

func TestEntryRejectsNonCanonical(t *testing.T) {
	e := sampleEntries(t)[1]
	b := e.Encoded()
	// A non-minimal varint length for the parent field: 0x20 as 0xA0 0x00.
	i := bytes.IndexByte(b[2:], tagParent) + 2
	bad := append(append(append([]byte(nil), b[:i+1]...), 0xA0, 0x00), b[i+2:]...)
	if _, err := Decode(bad); err == nil {
		t.Fatal("non-minimal length accepted")
	}
	// A field the action does not have (mode on a delete).
	del := sampleEntries(t)[5]
	w := append([]byte(nil), del.Encoded()[:len(del.Encoded())-sigFieldLen]...)
	w = appendUvarintField(w, tagMode, 0o644)
	w = appendField(w, tagSig, del.Signature())
	if _, err := Decode(w); err == nil {
		t.Fatal("forbidden field accepted")
	}
	if _, err := Decode([]byte{2, 1}); err == nil || !strings.Contains(err.Error(), "format version") {
		t.Fatalf("future version: %v", err)
	}
}

func TestEntryCheck(t *testing.T) {
	k := entryTestKey("a")
	p := Sum([]byte("parent"))
	bad := []*Entry{
		{Action: ActWrite, Parent: p, Path: "/a/../b", Mode: 0o644, Content: &Content{Inline: []byte{}}},
		{Action: ActMkdir, Parent: p, Path: "relative", Mode: 0o755},
		{Action: ActMkdir, Parent: p, Path: "/a//b", Mode: 0o755},
		{Action: ActMkdir, Parent: p, Path: "/a/", Mode: 0o755},
		{Action: ActMkdir, Parent: p, Path: "/a\x00b", Mode: 0o755},
		{Action: ActMkdir, Parent: p, Path: "/" + strings.Repeat("x", 256), Mode: 0o755},
		{Action: ActMkdir, Parent: p, Path: "/x", Mode: 0o10000},
		{Action: ActDelete, Parent: p, Path: "/"},
		{Action: ActRename, Parent: p, Path: "/a/b", Target: "/a", Ref: p},
		{Action: ActAck, Parent: p, Path: "/a"},
		{Action: ActWrite, Parent: p, Path: "/f", Mode: 0o644, Content: &Content{Size: 3, Inline: []byte("ab")}},
		{Action: ActWrite, Parent: p, Path: "/f", Mode: 0o644, Content: &Content{Size: 3, Encoding: EncBsdiff, Inline: []byte("ab")}},
		{Action: ActMkdir, Path: "/", Name: "Bad Name", Nonce: make([]byte, NonceLen)},
	}
	for _, e := range bad {
		if err := e.Sign(k); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s %q: err %v, want malformed", e.Action, e.Path, err)
		}
	}
}

func TestPaths(t *testing.T) {
	cases := []struct{ p, dir, base string }{
		{"/", "/", ""}, {"/a", "/", "a"}, {"/a/b", "/a", "b"}, {"/a/a", "/a", "a"},
	}
	for _, c := range cases {
		if Dir(c.p) != c.dir || Base(c.p) != c.base {
			t.Errorf("%s: Dir %q Base %q", c.p, Dir(c.p), Base(c.p))
		}
	}
	if !IsUnder("/a/a", "/a") || IsUnder("/ab", "/a") || IsUnder("/a", "/a") || !IsAtOrUnder("/a", "/a") || !IsUnder("/x", "/") {
		t.Error("IsUnder")
	}
	if Depth("/") != 0 || Depth("/a/b") != 2 {
		t.Error("Depth")
	}
}

// FuzzDecodeEntry: any bytes either fail to decode or decode to an entry
// that re-encodes to the same bytes; never a panic.
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries(f) {
		f.Add(e.Encoded())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		if !bytes.Equal(e.Encoded(), b) || e.Hash() != Sum(b) {
			t.Fatal("decoded entry does not re-encode to its bytes")
		}
		_ = e.Verify()
		if err := e.Check(); err != nil {
			t.Fatalf("decoded entry fails Check: %v", err)
		}
	})
}

func BenchmarkVerifyEntry(b *testing.B) {
	es := sampleEntries(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := es[i%len(es)].Verify(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkDecodeEntry(b *testing.B) {
	es := sampleEntries(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(es[i%len(es)].Encoded()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// TestEntryWriteFuzzCorpus writes the sample entries as FuzzDecodeEntry's
// seed corpus in testdata (run with BASEFS_WRITE_FUZZ_CORPUS=1).
func TestEntryWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("BASEFS_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set BASEFS_WRITE_FUZZ_CORPUS=1 to rewrite the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeEntry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, e := range sampleEntries(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", e.Encoded())
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("sample-%02d-%s", i, e.Action)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkVerifyEntryParallel verifies on every core GOMAXPROCS allows
// (run with -cpu 1,2 to see the per-core rate and the two-core rate).
func BenchmarkVerifyEntryParallel(b *testing.B) {
	es := sampleEntries(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := es[i%len(es)].Verify(); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
