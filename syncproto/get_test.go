package syncproto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// getSource builds a replica with a tree of small files and a few large
// ones, served over loopback TCP; it returns the address and the big
// files' contents.
func getSource(t *testing.T, rng *rand.Rand, dirs, files int) (*node, string, map[string][]byte) {
	g := newGen(t, "test")
	g.tree("/", dirs, files)
	g.mkdir("/blobs")
	big := map[string][]byte{}
	for i := 0; i < 3; i++ {
		b := make([]byte, 50<<10+rng.Intn(200<<10))
		rng.Read(b)
		p := fmt.Sprintf("/blobs/b%d", i)
		g.write(p, b)
		big[p] = b
	}
	r := makeReplica(t, g.out, g.blocks)
	lg, tl := newTestLogger(t)
	svc := NewService(Config{Replica: r, Node: "src", Rand: rng, Limits: testLimits, Logger: lg})
	t.Cleanup(func() { svc.Close() })
	addr := listen(t, svc.Server)
	return &node{name: "src", r: r, svc: svc, log: tl}, addr, big
}

func checkGot(t *testing.T, src *node, dir string, big map[string][]byte) {
	t.Helper()
	r, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, b := src.r.Status(), r.Status()
	if a.ViewHash != b.ViewHash || a.Entries != b.Entries || b.MissingBlocks != 0 {
		t.Fatalf("got: view %s/%s entries %d/%d missing %d", a.ViewHash[:12], b.ViewHash[:12], a.Entries, b.Entries, b.MissingBlocks)
	}
	for p, want := range big {
		got, err := r.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v", p, err)
		}
	}
	if rep := r.Verify(); !rep.OK {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestGet(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	src, addr, big := getSource(t, rng, 3, 300)
	dir := filepath.Join(t.TempDir(), "home", "fs", "test")
	var mu sync.Mutex
	var phases []string
	var last Progress
	res, err := GetWithOptions(context.Background(), TCPDial, addr, dir, "test", func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
		last = p
	}, GetOptions{NoSync: true, Node: "new"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("get: %+v", res)
	if strings.Join(phases, ",") != "connecting,streaming,syncing,done" && strings.Join(phases, ",") != "connecting,syncing,done" {
		t.Fatalf("phases %v", phases)
	}
	if last.Entries != int64(src.r.NumEntries()) {
		t.Fatalf("final progress %+v", last)
	}
	if res.Resumed || !res.FinalSync.InSync {
		t.Fatalf("result %+v", res)
	}
	checkGot(t, src, dir, big)
	// Run again: nothing to fetch, still fine.
	res, err = GetWithOptions(context.Background(), TCPDial, addr, dir, "test", nil, GetOptions{NoSync: true})
	if err != nil || !res.Resumed || res.Entries != 0 {
		t.Fatalf("second get: %+v, %v", res, err)
	}
}

// A get whose connection dies midway leaves a valid store; running it again
// completes it, fetching only the rest.
func TestGetInterrupted(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	dirs, cut := 8, int64(400<<10+rng.Intn(300<<10))
	if testing.Short() {
		dirs, cut = 3, int64(250<<10+rng.Intn(100<<10))
	}
	src, addr, big := getSource(t, rng, dirs, 500)
	dir := filepath.Join(t.TempDir(), "fs")
	dial := func(ctx context.Context, a string) (net.Conn, error) {
		c, err := TCPDial(ctx, a)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: c, limit: cut}, nil
	}
	res, err := GetWithOptions(context.Background(), dial, addr, dir, "test", nil, GetOptions{NoSync: true})
	if err == nil {
		t.Fatalf("get through a connection cut at %d bytes succeeded: %+v", cut, res)
	}
	t.Logf("cut at %d bytes: %v", cut, err)
	if !strings.Contains(err.Error(), "run get again") {
		t.Fatalf("message %q does not say what to do", err)
	}
	// The partial store opens and holds verified entries only.
	r, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	held := r.NumEntries()
	if rep := r.Verify(); !rep.OK {
		t.Fatalf("partial store: %+v", rep)
	}
	r.Close()
	if held <= 1 || held >= src.r.NumEntries() {
		t.Fatalf("partial store holds %d of %d entries", held, src.r.NumEntries())
	}
	res, err = GetWithOptions(context.Background(), TCPDial, addr, dir, "test", nil, GetOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.HeldBefore != int64(held) || res.Entries != int64(src.r.NumEntries()-held) {
		t.Fatalf("resumed get: %+v (held %d)", res, held)
	}
	checkGot(t, src, dir, big)
}

// A peer serving a forged entry is refused with a clear message; nothing
// forged is stored.
func TestGetForged(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	g.tree("/", 2, 600)
	entries := append([]*log.Entry{}, g.out...)
	i := len(entries) / 2
	enc := append([]byte(nil), entries[i].Encoded()...)
	enc[len(enc)-3] ^= 0x40 // inside the signature
	forged, err := log.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	entries[i] = forged
	// The store does not check signatures on append or open: a hostile
	// node can serve anything.
	r := makeReplica(t, entries, nil)
	svc := NewService(Config{Replica: r, Node: "evil", Rand: rng, Limits: testLimits})
	defer svc.Close()
	addr := listen(t, svc.Server)
	dir := filepath.Join(t.TempDir(), "fs")
	_, err = GetWithOptions(context.Background(), TCPDial, addr, dir, "test", nil, GetOptions{NoSync: true})
	if !errors.Is(err, ErrForged) || !strings.Contains(err.Error(), "sent forged data (entry "+forged.Hash().Short()+" with a bad signature)") ||
		!strings.Contains(err.Error(), "nothing forged was stored") {
		t.Fatalf("error %v", err)
	}
	t.Logf("message: %v", err)
	got, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.HasEntry(forged.Hash()) {
		t.Fatal("the forged entry was stored")
	}
	if rep := got.Verify(); !rep.OK {
		t.Fatalf("store after refusal: %+v", rep)
	}
}

// A peer that serves another filesystem under the same name is refused.
func TestGetDifferentFilesystem(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	_, addr, _ := getSource(t, rng, 1, 10)
	// Same name, another root (another nonce).
	other := newGen(t, "test")
	other.root = &log.Entry{Action: log.ActMkdir, Path: "/", Time: 1, Name: "test", Nonce: []byte("another-nonce-16"), Mode: 0o755}
	if err := other.root.Sign(other.key); err != nil {
		t.Fatal(err)
	}
	local := makeReplica(t, []*log.Entry{other.root}, nil)
	dir := local.Dir()
	local.Close()
	_, err := GetWithOptions(context.Background(), TCPDial, addr, dir, "test", nil, GetOptions{NoSync: true})
	if !errors.Is(err, ErrDifferentFS) || !strings.Contains(err.Error(), "peer serves a different filesystem under that name") {
		t.Fatalf("error %v", err)
	}
	t.Logf("message: %v", err)
	// Another name than the one served.
	_, err = GetWithOptions(context.Background(), TCPDial, addr, filepath.Join(t.TempDir(), "x"), "prod", nil, GetOptions{NoSync: true})
	if !errors.Is(err, ErrDifferentFS) || !strings.HasPrefix(err.Error(), "peer serves a different filesystem under that name: ") || !strings.HasSuffix(err.Error(), ` serves "test", not "prod"`) {
		t.Fatalf("error %v", err)
	}
	t.Logf("message: %v", err)
	// A sync client with the other filesystem is refused too.
	r, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	svc := NewService(Config{Replica: r, Node: "other", Rand: rng, Limits: testLimits})
	defer svc.Close()
	if _, err := svc.Client.Sync(context.Background(), addr); !errors.Is(err, ErrDifferentFS) {
		t.Fatalf("sync error %v", err)
	}
}

func TestProgressPrinter(t *testing.T) {
	for _, term := range []bool{false, true} {
		var b bytes.Buffer
		p := NewProgressPrinter(&b, term)
		p(Progress{Phase: "connecting"})
		p(Progress{Phase: "streaming", Entries: 10, TotalEntries: 100, Bytes: 2000, TotalBytes: 20000, Rate: 1000, ETA: 18e9})
		p(Progress{Phase: "syncing", Entries: 100, TotalEntries: 100})
		p(Progress{Phase: "done", Entries: 100, TotalEntries: 100, Bytes: 20000, Rate: 1000, Elapsed: 2e9})
		out := b.String()
		t.Logf("terminal=%v:\n%s", term, out)
		if !strings.Contains(out, "done: 100 entries") {
			t.Fatalf("output %q", out)
		}
		if !term && !strings.Contains(out, "10/100 entries, 2.0 kB of ~20.0 kB, 1.0 kB/s, ETA 18s") {
			t.Fatalf("plain output %q", out)
		}
	}
}

// TestGetPinned: with ExpectID, a peer serving another filesystem id is
// refused before anything is stored; the right prefix is accepted, and
// the result names the id.
func TestGetPinned(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	src, addr, _ := getSource(t, rng, 1, 20)
	id := src.r.ID().String()
	dir := filepath.Join(t.TempDir(), "home", "fs", "test")
	_, err := GetWithOptions(context.Background(), TCPDial, addr, dir, "test", nil, GetOptions{NoSync: true, ExpectID: "00000000"})
	if !errors.Is(err, ErrDifferentFS) || !strings.Contains(err.Error(), "not the pinned 00000000") {
		t.Fatalf("wrong pin: %v", err)
	}
	if replica.Exists(dir) {
		t.Fatal("a refused get stored something")
	}
	res, err := GetWithOptions(context.Background(), TCPDial, addr, dir, "test", nil, GetOptions{NoSync: true, ExpectID: strings.ToUpper(id[:12])})
	if err != nil || res.ID.String() != id {
		t.Fatalf("right pin: %+v %v", res, err)
	}
}
