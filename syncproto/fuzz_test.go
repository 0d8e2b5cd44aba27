package syncproto

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// decodeAny runs every payload decoder on p.
func decodeAny(t frameType, p []byte) {
	switch t {
	case tHello:
		decodeHello(p)
	case tWelcome:
		decodeWelcome(p)
	case tError:
		decodeError(p)
	case tExpand, tWantTree:
		decodeNodeRefs(p, maxRoundRefs)
	case tNodes:
		decodeReps(p, 1<<20)
	case tWantEntries, tWantBlocks, tNotFound:
		decodeHashes(p)
	case tEntries:
		items, err := decodeItems(p, log.MaxEntrySize)
		if err == nil {
			for _, b := range items {
				log.Decode(b)
			}
		}
	case tBlocks:
		decodeItems(p, log.BlockSize)
	case tGetStream:
		decodeCount(p)
	case tStreamEnd:
		decodeCounts(p)
	}
}

// seedFrames are well-formed frame sequences for the fuzzers' corpora.
func seedFrames() [][]byte {
	g := newGen(&testing.T{}, "test")
	g.tree("/", 1, 3)
	frame := func(t frameType, p []byte) []byte {
		return append(append([]byte{byte(t)}, encodeCount(uint64(len(p)))...), p...)
	}
	pre := append([]byte(magic), Version)
	h := (&hello{Purpose: purposeSync, FSName: "test", FSID: g.root.Hash(), Node: "fuzz"}).encode()
	var ents itemsFrame
	for _, e := range g.out[1:] {
		ents.add(e.Encoded())
	}
	var blks itemsFrame
	blks.add([]byte("block"))
	var reps enc
	reps.uvarint(3)
	reps.rep(&rep{Kind: repEmpty})
	reps.rep(&rep{Kind: repList, Entries: []log.Hash{g.root.Hash()}, Kids: []kidRef{{Name: "d000", Digest: log.Sum(nil)}}})
	reps.rep(&rep{Kind: repSplit, Sub: [16]log.Hash{1: log.Sum(nil), 7: log.Sum([]byte{1})}})
	refs := encodeNodeRefs([]nodeRef{{Path: "/"}, {Path: "/d000", Prefix: prefix{}.child(3).child(12).child(5)}})
	hs := encodeHashes([]log.Hash{g.root.Hash(), g.out[1].Hash()})
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return [][]byte{
		cat(pre, frame(tHello, h), frame(tExpand, refs), frame(tEndRound, nil), frame(tBye, nil)),
		cat(pre, frame(tHello, h), frame(tWantEntries, hs), frame(tWantTree, refs), frame(tWantBlocks, hs), frame(tEndRound, nil)),
		cat(pre, frame(tHello, h), frame(tEntries, ents.payload()), frame(tBlocks, blks.payload()), frame(tEndRound, nil)),
		cat(pre, frame(tWelcome, (&welcome{FSID: g.root.Hash(), Node: "x", Root: g.root.Encoded()}).encode()), frame(tNodes, reps.b), frame(tNotFound, hs)),
		cat(pre, frame(tHello, (&hello{Purpose: purposeGet, FSName: "test"}).encode()), frame(tGetStream, encodeCount(5)), frame(tCommit, nil), frame(tStreamEnd, encodeCounts(1, 2))),
		cat(pre, frame(tError, encodeError(codeWrongFS, "nope"))),
		{byte(tHello), 0xff, 0xff, 0xff, 0x7f},
	}
}

// FuzzFrame feeds arbitrary bytes to the frame reader and every payload
// decoder: errors, never panics, and allocation bounded by the input.
func FuzzFrame(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		if p, _ := r.Peek(preambleLen); len(p) == preambleLen && string(p[:4]) == magic {
			r.Discard(preambleLen)
		}
		for {
			ft, n, err := readFrameHeader(r)
			if err != nil {
				return
			}
			if n > len(data) {
				return // would wait for bytes that never come
			}
			p := make([]byte, n)
			if _, err := io.ReadFull(r, p); err != nil {
				return
			}
			for t := tHello; t <= tStreamEnd; t++ {
				decodeAny(t, p)
			}
			_ = ft
		}
	})
}

var fuzzServer struct {
	once sync.Once
	srv  *Server
	err  error
}

// FuzzServe feeds arbitrary bytes to a server session: it must end the
// session (never panic, never hang past its timeouts) and store nothing
// that does not verify.
func FuzzServe(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	setupFuzzServer()
	if fuzzServer.err != nil {
		f.Fatal(fuzzServer.err)
	}
	f.Fuzz(runServe)
}

func setupFuzzServer() {
	fuzzServer.once.Do(func() {
		g := newGen(&testing.T{}, "test")
		g.tree("/", 1, 20)
		dir, err := os.MkdirTemp("", "basefs-fuzz")
		if err != nil {
			fuzzServer.err = err
			return
		}
		s, err := log.OpenStore(filepath.Join(dir, "fs"), log.StoreOptions{NoSync: true})
		if err != nil {
			fuzzServer.err = err
			return
		}
		s.Append(g.out, nil)
		s.Close()
		r, err := replica.Open(filepath.Join(dir, "fs"), replica.Options{NoSync: true})
		if err != nil {
			fuzzServer.err = err
			return
		}
		ix, _ := IndexReplica(r)
		fuzzServer.srv = NewServer(ServerConfig{Replica: r, Index: ix, Limits: Limits{IOTimeout: 20 * time.Millisecond, SessionTimeout: time.Second}})
	})
}

func runServe(t *testing.T, data []byte) {
	setupFuzzServer()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fuzzServer.srv.ServeConn(b)
	}()
	go io.Copy(io.Discard, a)
	a.SetWriteDeadline(time.Now().Add(time.Second))
	a.Write(data)
	// The server has read everything (a pipe has no buffer): end the
	// input rather than wait for its timeout.
	a.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
}

// TestWriteFuzzSeeds writes the seed corpus files (BASEFS_WRITE_SEEDS=1).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("BASEFS_WRITE_SEEDS") == "" {
		t.Skip("set BASEFS_WRITE_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	for _, name := range []string{"FuzzFrame", "FuzzServe"} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seedFrames() {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
