package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/hashicorp/memberlist"
)

// fastTuning makes functional tests quick: a 20 ms gossip tick and a short
// leave. The failure detector stays lenient (a busy 2-core machine running
// the race detector must not see live nodes as failed); TestLeaveAndKill
// speeds it up. Push/pull is pushed out of the way so tests see gossip
// alone.
func fastTuning() Tuning {
	return Tuning{
		GossipInterval:      20 * time.Millisecond,
		ProbeInterval:       300 * time.Millisecond,
		ProbeTimeout:        200 * time.Millisecond,
		SuspicionMult:       4,
		PushPullInterval:    10 * time.Minute,
		TCPTimeout:          2 * time.Second,
		LeavePropagateDelay: 100 * time.Millisecond,
		BroadcastTimeout:    2 * time.Second,
		GossipToTheDeadTime: 2 * time.Second,
	}
}

// testFSID is the filesystem id the test clusters use.
var testFSID = [32]byte{0xba, 0x5e, 0xf5, 1, 2, 3, 4, 5, 6}

// recorder collects what one node received.
type recorder struct {
	mu      sync.Mutex
	entries map[log.Hash]time.Time
	blocks  map[log.Hash]time.Time
	hashes  map[log.Hash]time.Time
	raw     map[string]time.Time
	msgs    []Message
	members []MemberEvent
	keepMsg bool
}

func newRecorder() *recorder {
	return &recorder{
		entries: map[log.Hash]time.Time{}, blocks: map[log.Hash]time.Time{},
		hashes: map[log.Hash]time.Time{}, raw: map[string]time.Time{},
	}
}

func (r *recorder) onMessage(from string, m Message) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range m.Entries {
		h := log.Sum(e)
		if _, ok := r.entries[h]; !ok {
			r.entries[h] = now
		}
	}
	for _, b := range m.Blocks {
		h := log.Sum(b)
		if _, ok := r.blocks[h]; !ok {
			r.blocks[h] = now
		}
	}
	for _, h := range m.Hashes {
		if _, ok := r.hashes[h]; !ok {
			r.hashes[h] = now
		}
	}
	if r.keepMsg {
		r.msgs = append(r.msgs, m)
	}
}

func (r *recorder) onMember(e MemberEvent) {
	r.mu.Lock()
	r.members = append(r.members, e)
	r.mu.Unlock()
}

func (r *recorder) onRaw(name string, payload []byte) {
	now := time.Now()
	r.mu.Lock()
	if _, ok := r.raw[string(payload)]; !ok {
		r.raw[string(payload)] = now
	}
	r.mu.Unlock()
}

func (r *recorder) hasEntries(hs []log.Hash) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range hs {
		if _, ok := r.entries[h]; !ok {
			return false
		}
	}
	return true
}

func (r *recorder) countEntries(hs []log.Hash) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, h := range hs {
		if _, ok := r.entries[h]; ok {
			n++
		}
	}
	return n
}

func (r *recorder) entryTime(h log.Hash) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.entries[h]
	return t, ok
}

func (r *recorder) rawTime(p string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.raw[p]
	return t, ok
}

// node is one Gossip in a test cluster and what it received.
type node struct {
	g   *Gossip
	rec *recorder
}

// clusterOpts describe a test cluster.
type clusterOpts struct {
	n         int
	mock      bool // memberlist.MockNetwork; else real loopback sockets
	profile   string
	tuning    *Tuning // nil: fastTuning
	keys      [][]byte
	fsid      *[32]byte
	seed      int64
	logger    *slog.Logger
	noJoin    bool
	transport func(i int) memberlist.Transport // overrides mock/loopback
	advertise func(i int) string
}

// cluster is a set of nodes started at staggered times and joined.
type cluster struct {
	t     testing.TB
	nodes []*node
	net   *mockNet
	mocks []*mockTransport
	done  chan struct{}
	once  sync.Once
}

// startCluster starts o.n nodes, each a random fraction of a gossip
// interval after the previous one (nodes started in the same instant keep
// their gossip tickers in step), joins each to a random earlier node and
// waits until every node lists all of them alive.
func startCluster(t testing.TB, o clusterOpts) *cluster {
	t.Helper()
	tun := fastTuning()
	if o.tuning != nil {
		tun = *o.tuning
	}
	fsid := testFSID
	if o.fsid != nil {
		fsid = *o.fsid
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano()
	}
	rng := rand.New(rand.NewSource(o.seed))
	c := &cluster{t: t, done: make(chan struct{})}
	t.Cleanup(c.close)
	if o.mock {
		// MockNetwork is not safe for concurrent use: make every
		// transport before any node runs.
		c.net, c.mocks = newMockNet(o.n, c.done)
	}
	interval := tun.GossipInterval
	if interval <= 0 {
		interval = profileGossipInterval(o.profile)
	}
	for i := 0; i < o.n; i++ {
		if i > 0 {
			time.Sleep(time.Duration(rng.Int63n(int64(interval))))
		}
		c.nodes = append(c.nodes, c.start(i, o, tun, fsid, rng))
	}
	if !o.noJoin {
		c.waitMembers(o.n, 60*time.Second) // a bound for loaded machines, not a timing target
	}
	return c
}

func nodeName(i int) string { return fmt.Sprintf("n%02d", i) }

func profileGossipInterval(p string) time.Duration {
	switch p {
	case "wan":
		return 500 * time.Millisecond
	case "local":
		return 100 * time.Millisecond
	}
	return 200 * time.Millisecond
}

func (c *cluster) start(i int, o clusterOpts, tun Tuning, fsid [32]byte, rng *rand.Rand) *node {
	t := c.t
	rec := newRecorder()
	cfg := Config{
		NodeName:  nodeName(i),
		Profile:   o.profile,
		FSID:      fsid,
		Keys:      o.keys,
		Logger:    o.logger,
		Tuning:    tun,
		Tags:      map[string]string{"sync": fmt.Sprint(9000 + i)},
		OnMessage: rec.onMessage,
		OnMember:  rec.onMember,
		rawEvent:  rec.onRaw,
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	switch {
	case o.transport != nil:
		cfg.Transport = o.transport(i)
	case o.mock:
		cfg.Transport = c.mocks[i]
	default:
		cfg.BindAddr = fmt.Sprintf("127.0.0.%d:0", 2+i%250)
	}
	if o.advertise != nil {
		cfg.AdvertiseAddr = o.advertise(i)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	n := &node{g: g, rec: rec}
	if i > 0 && !o.noJoin {
		peer := c.nodes[rng.Intn(len(c.nodes))]
		if _, err := g.Join([]string{peer.g.LocalAddr()}); err != nil {
			t.Fatalf("node %d join: %v", i, err)
		}
	}
	return n
}

// waitMembers waits until every running node lists n alive members.
func (c *cluster) waitMembers(n int, timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, fmt.Sprintf("%d alive members everywhere", n), func() bool {
		for _, nd := range c.nodes {
			if nd.g.isClosed() {
				continue
			}
			if alive(nd.g) != n {
				return false
			}
		}
		return true
	})
}

func alive(g *Gossip) int {
	k := 0
	for _, m := range g.Members() {
		if m.Status == "alive" {
			k++
		}
	}
	return k
}

func (c *cluster) close() { c.once.Do(c.shutdown) }

func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd.g.Shutdown()
		}()
	}
	wg.Wait()
	close(c.done)
}

// mockTransport is a memberlist.MockTransport with UDP's semantics for
// packets. MockTransport delivers a packet by a blocking send on the
// receiver's unbuffered channel, and memberlist's packet handler itself
// sends (an ack to a ping): two nodes that ping each other at the same
// moment block each other's handlers for good. That happens within seconds
// on a loaded machine (found here: a 10-node burst stalled with every
// packet listener stuck in MockTransport.WriteToAddress). So packets go
// to a buffered channel per host and are dropped when it is full or the
// host is down, as UDP would; streams stay MockTransport's net.Pipe, and
// dialing a host that is down fails.
type mockTransport struct {
	*memberlist.MockTransport
	net  *mockNet
	name string
	pkts chan *memberlist.Packet
	down atomic.Bool
	done <-chan struct{}
	once sync.Once
}

// mockNet finds mockTransports by address and name. It is filled before
// any node starts and only read afterwards.
type mockNet struct {
	byAddr, byName map[string]*mockTransport
	dropped        atomic.Int64
}

func newMockNet(n int, done <-chan struct{}) (*mockNet, []*mockTransport) {
	mn := &memberlist.MockNetwork{}
	net := &mockNet{byAddr: map[string]*mockTransport{}, byName: map[string]*mockTransport{}}
	var trs []*mockTransport
	for i := 0; i < n; i++ {
		name := nodeName(i)
		mt := mn.NewTransport(name)
		tr := &mockTransport{MockTransport: mt, net: net, name: name, pkts: make(chan *memberlist.Packet, 4096), done: done}
		ip, port, _ := mt.FinalAdvertiseAddr("", 0)
		net.byAddr[fmt.Sprintf("%s:%d", ip, port)] = tr
		net.byName[name] = tr
		trs = append(trs, tr)
	}
	return net, trs
}

func (t *mockTransport) peer(a memberlist.Address) *mockTransport {
	if a.Name != "" {
		return t.net.byName[a.Name]
	}
	return t.net.byAddr[a.Addr]
}

func (t *mockTransport) PacketCh() <-chan *memberlist.Packet { return t.pkts }

func (t *mockTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *mockTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	dest := t.peer(a)
	if dest == nil {
		return now, fmt.Errorf("no route to %v", a)
	}
	if dest.down.Load() {
		return now, nil // lost, as UDP to a dead host
	}
	ip, port, _ := t.FinalAdvertiseAddr("", 0)
	p := &memberlist.Packet{Buf: bytes.Clone(b), From: &net.UDPAddr{IP: ip, Port: port}, Timestamp: now}
	select {
	case dest.pkts <- p:
	default:
		t.net.dropped.Add(1)
	}
	return now, nil
}

func (t *mockTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *mockTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if dest := t.peer(a); dest == nil || dest.down.Load() {
		return nil, fmt.Errorf("connection refused by %v", a)
	}
	return t.MockTransport.DialAddressTimeout(a, timeout)
}

// Shutdown marks the host down. Streams that raced with it are closed
// until the test ends.
func (t *mockTransport) Shutdown() error {
	t.once.Do(func() {
		t.down.Store(true)
		go func() {
			for {
				select {
				case c := <-t.StreamCh():
					c.Close()
				case <-t.done:
					return
				}
			}
		}()
	})
	return nil
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testLogger discards, unless BASEFS_GOSSIP_DEBUG is set (then debug to
// stderr).
func testLogger() *slog.Logger {
	if os.Getenv("BASEFS_GOSSIP_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// captureHandler records log records at or above a level.
type captureHandler struct {
	mu    sync.Mutex
	level slog.Level
	recs  []string
}

func (h *captureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, b.String())
	h.mu.Unlock()
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func (h *captureHandler) records() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.recs...)
}

// entryMaker signs real log entries: a root, then mkdirs below it.
type entryMaker struct {
	priv ed25519.PrivateKey
	root *log.Entry
	n    int
}

func newEntryMaker(t testing.TB, seed int64) *entryMaker {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	rand.New(rand.NewSource(seed)).Read(s)
	priv := ed25519.NewKeyFromSeed(s)
	root := &log.Entry{Action: log.ActMkdir, Path: "/", Time: 1, Name: "t", Nonce: log.NewNonce(), Mode: 0o755}
	if err := root.Sign(priv); err != nil {
		t.Fatal(err)
	}
	return &entryMaker{priv: priv, root: root}
}

// mkdir returns a new signed entry's bytes.
func (m *entryMaker) mkdir(t testing.TB) []byte {
	t.Helper()
	m.n++
	e := &log.Entry{Action: log.ActMkdir, Parent: m.root.Hash(), Path: fmt.Sprintf("/d%d", m.n), Time: time.Now().UnixNano(), Mode: 0o755}
	if err := e.Sign(m.priv); err != nil {
		t.Fatal(err)
	}
	return e.Encoded()
}

// big returns a signed entry of more than minSize bytes (a mkdir with a
// long path).
func (m *entryMaker) big(t testing.TB, minSize int) []byte {
	t.Helper()
	m.n++
	path := ""
	for len(path) < minSize-200 {
		path += "/" + strings.Repeat(string(rune('a'+len(path)%26)), 200)
	}
	path += fmt.Sprintf("/x%d", m.n)
	e := &log.Entry{Action: log.ActMkdir, Parent: m.root.Hash(), Path: path, Time: 1, Mode: 0o755}
	if err := e.Sign(m.priv); err != nil {
		t.Fatal(err)
	}
	if len(e.Encoded()) <= minSize {
		t.Fatalf("big entry is only %d bytes", len(e.Encoded()))
	}
	return e.Encoded()
}

func hashes(bs [][]byte) []log.Hash {
	out := make([]log.Hash, len(bs))
	for i, b := range bs {
		out[i] = log.Sum(b)
	}
	return out
}

// sizeTransport wraps a real NetTransport and records the largest UDP
// datagram it writes.
type sizeTransport struct {
	*memberlist.NetTransport
	mu  sync.Mutex
	max int
}

func newSizeTransport(t testing.TB, ip string) (*sizeTransport, string) {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{ip},
		BindPort:  0,
		Logger:    stdlog.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &sizeTransport{NetTransport: nt}, net.JoinHostPort(ip, fmt.Sprint(nt.GetAutoBindPort()))
}

func (s *sizeTransport) note(n int) {
	s.mu.Lock()
	s.max = max(s.max, n)
	s.mu.Unlock()
}

func (s *sizeTransport) maxPacket() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

func (s *sizeTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	s.note(len(b))
	return s.NetTransport.WriteTo(b, addr)
}

func (s *sizeTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	s.note(len(b))
	return s.NetTransport.WriteToAddress(b, a)
}
