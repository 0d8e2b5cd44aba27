package syncproto

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("syncproto-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// seed returns a test's RNG seed (BASEFS_SEED overrides) and logs it.
func seed(t testing.TB) int64 {
	s := time.Now().UnixNano()
	if v := os.Getenv("BASEFS_SEED"); v != "" {
		fmt.Sscan(v, &s)
	}
	t.Logf("seed %d (rerun with BASEFS_SEED=%d)", s, s)
	return s
}

// gen builds signed entries by hand: fast, and any shape (forks included).
type gen struct {
	t      testing.TB
	key    ed25519.PrivateKey
	root   *log.Entry
	clock  int64
	last   map[string]*log.Entry // the latest entry of each path
	out    []*log.Entry
	blocks [][]byte
}

func newGen(t testing.TB, name string) *gen {
	k := testKey("root")
	root := &log.Entry{Action: log.ActMkdir, Path: "/", Time: 1, Name: name, Nonce: []byte(fmt.Sprintf("%-16s", name)), Mode: 0o755}
	if err := root.Sign(k); err != nil {
		t.Fatal(err)
	}
	return &gen{t: t, key: k, root: root, clock: 1, last: map[string]*log.Entry{"/": root}, out: []*log.Entry{root}}
}

// fork returns a generator continuing from g's state, with its own output.
func (g *gen) fork() *gen {
	f := &gen{t: g.t, key: g.key, root: g.root, clock: g.clock, last: map[string]*log.Entry{}}
	for p, e := range g.last {
		f.last[p] = e
	}
	return f
}

func (g *gen) sign(e *log.Entry) *log.Entry {
	g.clock++
	e.Time = g.clock
	if err := e.Sign(g.key); err != nil {
		g.t.Fatal(err)
	}
	g.last[e.Path] = e
	g.out = append(g.out, e)
	return e
}

func (g *gen) parentFor(path string) log.Hash {
	if e, ok := g.last[path]; ok {
		return e.Hash()
	}
	d, ok := g.last[log.Dir(path)]
	if !ok {
		g.t.Fatalf("gen: no directory for %s", path)
	}
	return d.Hash()
}

func (g *gen) mkdir(path string) *log.Entry {
	return g.sign(&log.Entry{Action: log.ActMkdir, Parent: g.parentFor(path), Path: path, Mode: 0o755})
}

func (g *gen) write(path string, data []byte) *log.Entry {
	c, blocks, err := log.EncodeContent(data, log.EncodeOptions{})
	if err != nil {
		g.t.Fatal(err)
	}
	g.blocks = append(g.blocks, blocks...)
	return g.sign(&log.Entry{Action: log.ActWrite, Parent: g.parentFor(path), Path: path, Mode: 0o644, Content: c})
}

// tree writes dirs directories of files files each under base, one entry
// per file (plus the mkdirs).
func (g *gen) tree(base string, dirs, files int) {
	for d := 0; d < dirs; d++ {
		dir := fmt.Sprintf("%s/d%03d", strings.TrimSuffix(base, "/"), d)
		g.mkdir(dir)
		for f := 0; f < files; f++ {
			g.write(fmt.Sprintf("%s/f%04d", dir, f), []byte(fmt.Sprintf("dir %d file %d\n", d, f)))
		}
	}
}

// makeReplica writes entries and blocks into a new store in a temp dir and
// opens it as a replica.
func makeReplica(t testing.TB, entries []*log.Entry, blocks [][]byte) *replica.Replica {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	s, err := log.OpenStore(dir, log.StoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(entries); i += 8192 {
		if err := s.Append(entries[i:min(i+8192, len(entries))], nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(blocks); i += 8192 {
		if err := s.Append(nil, blocks[i:min(i+8192, len(blocks))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// testLogger logs to the test's output, and counts warnings.
type testLogger struct {
	t     testing.TB
	warns atomic.Int64
	mu    sync.Mutex
	lines []string
}

func newTestLogger(t testing.TB) (*slog.Logger, *testLogger) {
	tl := &testLogger{t: t}
	return slog.New(tl), tl
}

func (l *testLogger) Enabled(context.Context, slog.Level) bool { return true }
func (l *testLogger) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		l.warns.Add(1)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "stack" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *testLogger) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *testLogger) WithGroup(string) slog.Handler      { return l }
func (l *testLogger) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// node is one test node: a replica with its sync service, reachable over
// net.Pipe through a pipeNet.
type node struct {
	name string
	r    *replica.Replica
	svc  *Service
	log  *testLogger
}

// pipeNet connects nodes by name with net.Pipe.
type pipeNet struct {
	mu    sync.Mutex
	nodes map[string]*node
	wg    sync.WaitGroup
}

func newPipeNet(t testing.TB) *pipeNet {
	n := &pipeNet{nodes: map[string]*node{}}
	t.Cleanup(n.wg.Wait)
	return n
}

func (n *pipeNet) dial(ctx context.Context, addr string) (net.Conn, error) {
	n.mu.Lock()
	nd := n.nodes[addr]
	n.mu.Unlock()
	if nd == nil {
		return nil, fmt.Errorf("no node %s", addr)
	}
	a, b := net.Pipe()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		nd.svc.Server.ServeConn(b)
	}()
	return a, nil
}

var testLimits = Limits{IOTimeout: 5 * time.Second, SessionTimeout: 30 * time.Second}

func (n *pipeNet) add(t testing.TB, name string, r *replica.Replica, rng *rand.Rand) *node {
	lg, tl := newTestLogger(t)
	svc := NewService(Config{Replica: r, Node: name, Addr: name, Dial: n.dial, Limits: testLimits, Logger: lg, Rand: rng})
	t.Cleanup(func() { svc.Close() })
	nd := &node{name: name, r: r, svc: svc, log: tl}
	n.mu.Lock()
	n.nodes[name] = nd
	n.mu.Unlock()
	return nd
}

func (nd *node) sync(t testing.TB, peer string) SessionStats {
	t.Helper()
	st, err := nd.svc.Client.Sync(context.Background(), peer)
	if err != nil {
		t.Fatalf("%s sync with %s: %v\nlog of %s:\n%s", nd.name, peer, err, nd.name, nd.log.text())
	}
	return st
}

func requireSame(t testing.TB, nodes ...*node) {
	t.Helper()
	a := nodes[0]
	sa := a.r.Status()
	for _, b := range nodes[1:] {
		sb := b.r.Status()
		if sa.ViewHash != sb.ViewHash || sa.Entries != sb.Entries {
			t.Fatalf("%s and %s differ: view %s/%s entries %d/%d", a.name, b.name, sa.ViewHash[:12], sb.ViewHash[:12], sa.Entries, sb.Entries)
		}
		if da, db := a.svc.Index.Digest(), b.svc.Index.Digest(); da != db {
			t.Fatalf("%s and %s: index digests differ", a.name, b.name)
		}
	}
}

// cutConn closes the connection once more than limit bytes were read.
type cutConn struct {
	net.Conn
	limit int64
	n     atomic.Int64
}

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.n.Add(int64(n)) > c.limit {
		c.Conn.Close()
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// listen serves svc on a loopback TCP port.
func listen(t testing.TB, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// eventually waits up to 5 s for cond, and fails with msg's message.
func eventually(t testing.TB, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
