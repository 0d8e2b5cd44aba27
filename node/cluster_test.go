package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/syncproto"
	"github.com/basefs/basefs/testbed/simnet"
	"github.com/basefs/basefs/view"
)

// simCluster is n nodes of one filesystem on a simulated network.
type simCluster struct {
	t     *testing.T
	seed  int64
	net   *simnet.Network
	root  ed25519.PrivateKey
	base  string
	addrs []string
	nodes []*Node
}

// seedFor returns BASEFS_SEED if set, else a fresh seed; it is printed on
// failure.
func seedFor(t *testing.T) int64 {
	if s := os.Getenv("BASEFS_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("BASEFS_SEED: %v", err)
		}
		return n
	}
	return time.Now().UnixNano()
}

func newSimCluster(t *testing.T, n int, link simnet.Link) *simCluster {
	t.Helper()
	seed := seedFor(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d; replay: BASEFS_SEED=%d go test ./node -run '%s'", seed, seed, t.Name())
		}
	})
	c := &simCluster{t: t, seed: seed, net: simnet.New(seed), root: testKey("root"), base: t.TempDir()}
	// The cluster forms on a clean network; the link's faults apply once
	// every node has joined.
	c.net.SetDefaultLink(simnet.Link{Delay: link.Delay, Jitter: link.Jitter})
	t.Cleanup(c.net.Close)
	for i := 0; i < n; i++ {
		c.addrs = append(c.addrs, fmt.Sprintf("10.0.0.%d:7946", i+1))
	}
	r, err := replica.Create(c.dir(0), "sim", c.root, c.addrs[:1], replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	c.nodes = make([]*Node, n)
	c.start(0)
	for i := 1; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		host := c.net.Host(fmt.Sprintf("10.0.0.%d", i+1))
		_, err := syncproto.GetWithOptions(ctx, host.DialContext, "10.0.0.1:7947", c.dir(i), "sim", nil, syncproto.GetOptions{NoSync: true})
		cancel()
		if err != nil {
			t.Fatalf("get into node %d: %v", i, err)
		}
		time.Sleep(time.Duration(c.seed%97+int64(i)*31) * time.Millisecond % 150 * time.Millisecond / time.Millisecond)
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	c.waitMembers(n, 30*time.Second)
	c.net.SetDefaultLink(link)
	return c
}

func (c *simCluster) dir(i int) string { return filepath.Join(c.base, fmt.Sprintf("n%d", i)) }

func (c *simCluster) start(i int) {
	c.t.Helper()
	host := c.net.Host(fmt.Sprintf("10.0.0.%d", i+1))
	n, err := Start(Config{Dir: c.dir(i), Bind: c.addrs[i], Join: c.addrs[:1], Network: simnet.AddrNetwork{Host: host}, NoSync: true,
		SyncInterval: 500 * time.Millisecond, RetryInterval: 200 * time.Millisecond, GossipTuning: fastTuning, Seed: c.seed + int64(i)})
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.nodes[i] = n
}

func (c *simCluster) stop(i int) {
	if c.nodes[i] != nil {
		c.nodes[i].Stop()
		c.nodes[i] = nil
	}
}

func (c *simCluster) live() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

func (c *simCluster) waitMembers(k int, d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, fmt.Sprintf("%d alive members on every live node", k), func() bool {
		for _, n := range c.live() {
			if n.aliveOthers() != k-1 {
				return false
			}
		}
		return true
	})
}

// waitConverged waits until the nodes hold the same entries and blocks: the
// same view is not enough (the losers of a conflict may still be missing
// while every node already shows the winner).
func (c *simCluster) waitConverged(nodes []*Node, d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, "the same entries and views everywhere", func() bool {
		if !sameViews(nodes...) {
			return false
		}
		first := nodes[0].Replica().Status()
		for _, n := range nodes {
			st := n.Replica().Status()
			if st.MissingBlocks != 0 || st.Entries != first.Entries {
				return false
			}
		}
		return true
	})
}

func (c *simCluster) write(i int, path, data string) {
	c.t.Helper()
	if _, err := c.nodes[i].Replica().WriteFile(c.root, path, []byte(data), replica.WriteOptions{Parents: true}); err != nil {
		c.t.Fatalf("write %s on node %d: %v", path, i, err)
	}
}

func TestSimWritesAndBurstsConverge(t *testing.T) {
	n := 6
	if testing.Short() {
		n = 3
	}
	c := newSimCluster(t, n, simnet.Link{Delay: 5 * time.Millisecond, Jitter: 3 * time.Millisecond})
	c.write(0, "/etc/one", "a single small write")
	c.waitConverged(c.live(), 20*time.Second)
	for i := 0; i < 100; i++ {
		c.write(i%n, fmt.Sprintf("/burst/n%d/f%03d", i%n, i), fmt.Sprintf("file %d", i))
	}
	big := make([]byte, 256*896) // a 256-block file
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	c.write(1, "/big", string(big))
	c.waitConverged(c.live(), 30*time.Second)
	for i, nd := range c.live() {
		if kids, _ := nd.Replica().List("/burst"); len(kids) != n {
			t.Fatalf("node %d: /burst has %d directories", i, len(kids))
		}
		if got, err := nd.Replica().ReadFile("/big"); err != nil || string(got) != string(big) {
			t.Fatalf("node %d: big file: %v", i, err)
		}
	}
}

func TestSimConcurrentConflictingWrites(t *testing.T) {
	c := newSimCluster(t, 4, simnet.Link{Delay: 10 * time.Millisecond, Jitter: 5 * time.Millisecond})
	c.write(0, "/shared/cfg", "base")
	c.waitConverged(c.live(), 20*time.Second)
	// Cut every node off from the others, so the writes below are truly
	// concurrent (each continues "base"), then let them meet.
	c.net.Partition([]string{"10.0.0.1"}, []string{"10.0.0.2"}, []string{"10.0.0.3"}, []string{"10.0.0.4"})
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c.write(i, "/shared/cfg", fmt.Sprintf("written by node %d", i))
		}(i)
	}
	wg.Wait()
	c.net.Heal()
	c.waitConverged(c.live(), 30*time.Second)
	var want string
	for i, nd := range c.live() {
		got, err := nd.Replica().ReadFile("/shared/cfg")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = string(got)
		} else if string(got) != want {
			t.Fatalf("node %d reads %q, node 0 %q", i, got, want)
		}
		rep, _ := nd.Replica().Conflicts("/shared")
		if len(rep.Conflicts) == 0 {
			recs, _ := nd.Replica().Log("/shared/cfg")
			var lines []string
			for _, r := range recs {
				lines = append(lines, fmt.Sprintf("%s %s %s used=%v why=%s", r.Hash[:12], r.Action, r.Path, r.Used, r.Why))
			}
			t.Fatalf("node %d lists no conflict after 4 concurrent writes; its log of /shared/cfg:\n%s", i, strings.Join(lines, "\n"))
		}
	}
}

func TestSimNodeDownCatchesUp(t *testing.T) {
	c := newSimCluster(t, 4, simnet.Link{Delay: 5 * time.Millisecond})
	c.write(0, "/a", "1")
	c.waitConverged(c.live(), 20*time.Second)
	c.stop(2)
	c.net.Down("10.0.0.3")
	for i := 0; i < 20; i++ {
		c.write(i%2, fmt.Sprintf("/while-down/%d", i), "x")
	}
	c.waitConverged(c.live(), 20*time.Second)
	c.net.Up("10.0.0.3")
	c.start(2)
	c.waitConverged(c.live(), 30*time.Second)
}

func TestSimPartitionHeals(t *testing.T) {
	c := newSimCluster(t, 5, simnet.Link{Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond})
	c.write(0, "/p/shared", "before")
	c.waitConverged(c.live(), 20*time.Second)
	c.net.Partition([]string{"10.0.0.1", "10.0.0.2"}, []string{"10.0.0.3", "10.0.0.4", "10.0.0.5"})
	c.write(0, "/p/left", "left side")
	c.write(3, "/p/right", "right side")
	c.write(1, "/p/shared", "left wins?")
	c.write(4, "/p/shared", "right wins?")
	left, right := []*Node{c.nodes[0], c.nodes[1]}, []*Node{c.nodes[2], c.nodes[3], c.nodes[4]}
	c.waitConverged(left, 20*time.Second)
	c.waitConverged(right, 20*time.Second)
	if sameViews(c.nodes[0], c.nodes[2]) {
		t.Fatal("the partition did not separate the views")
	}
	c.net.Heal()
	c.waitConverged(c.live(), 40*time.Second)
	for _, p := range []string{"/p/left", "/p/right"} {
		if _, err := c.nodes[2].Replica().Stat(p); err != nil {
			t.Fatalf("%s after heal: %v", p, err)
		}
	}
}

func TestSimLossRepairedBySync(t *testing.T) {
	c := newSimCluster(t, 5, simnet.Link{Delay: 5 * time.Millisecond, Loss: 0.3})
	for i := 0; i < 30; i++ {
		c.write(i%5, fmt.Sprintf("/lossy/%02d", i), fmt.Sprintf("payload %d", i))
	}
	c.waitConverged(c.live(), 60*time.Second)
}

// A rogue member of the cluster gossips forged entries (bad signatures),
// entries by a key nobody granted, and garbage: the nodes store none of it,
// count it in their status, and keep serving.
func TestSimHostileGossipPeer(t *testing.T) {
	c := newSimCluster(t, 3, simnet.Link{Delay: 2 * time.Millisecond})
	before := c.nodes[1].Replica().Status()
	// The rogue: a bare gossip member of the same filesystem.
	host := c.net.Host("10.0.0.99")
	tr, err := host.Transport(7946)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gossip.New(gossip.Config{NodeName: "10.0.0.99:7946", Transport: tr, FSID: c.nodes[0].Replica().ID(), Tuning: fastTuning})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	if _, err := g.Join([]string{c.addrs[0]}); err != nil {
		t.Fatal(err)
	}
	// Real entries to start from.
	var head log.Hash
	c.nodes[0].Replica().View(func(v *view.View) {
		h, _, _ := v.Head("/")
		head = h.Hash()
	})
	stranger := testKey("stranger")
	unauthorized := &log.Entry{Action: log.ActMkdir, Parent: head, Path: "/evil", Time: 1, Mode: 0o755}
	if err := unauthorized.Sign(stranger); err != nil {
		t.Fatal(err)
	}
	good := &log.Entry{Action: log.ActMkdir, Parent: head, Path: "/forged", Time: 2, Mode: 0o755}
	if err := good.Sign(c.root); err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), good.Encoded()...)
	forged[len(forged)-5] ^= 0x40 // break the signature
	if err := g.Announce([][]byte{unauthorized.Encoded(), forged, []byte("garbage, not an entry")}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the rejections to be counted", func() bool {
		st := c.nodes[1].Status()
		return st.Rejected["no authority (gossip)"] >= 1 && st.Rejected["bad signature (gossip)"] >= 1 && st.Rejected["malformed entry in gossip"] >= 1
	})
	for i, nd := range c.live() {
		r := nd.Replica()
		if r.HasEntry(unauthorized.Hash()) || r.HasEntry(good.Hash()) {
			t.Fatalf("node %d stored a hostile entry", i)
		}
	}
	if st := c.nodes[1].Replica().Status(); st.Entries != before.Entries {
		t.Fatalf("entries went from %d to %d", before.Entries, st.Entries)
	}
	// The nodes keep working.
	c.write(2, "/after", "still fine")
	c.waitConverged(c.live(), 20*time.Second)
}

// TestSimStatusForgetsDepartedPeers: once a peer is gone, the survivors
// are in sync again (the dead peer's failed syncs do not count), and
// status names it as departed.
func TestSimStatusForgetsDepartedPeers(t *testing.T) {
	c := newSimCluster(t, 3, simnet.Link{Delay: 2 * time.Millisecond})
	c.write(0, "/etc/a", "a")
	c.waitConverged(c.live(), 20*time.Second)
	waitFor(t, 30*time.Second, "every node in sync", func() bool {
		for _, n := range c.live() {
			if !n.Status().InSync {
				return false
			}
		}
		return true
	})
	gone := c.addrs[2]
	goneSync, _ := SyncAddr(gone)
	c.stop(2)
	c.waitMembers(2, 60*time.Second)
	// The dead node's last session failed (as one does while it dies).
	for _, n := range c.live() {
		n.mu.Lock()
		n.peerClean[goneSync] = false
		n.mu.Unlock()
	}
	c.write(0, "/etc/b", "b")
	c.waitConverged(c.live(), 20*time.Second)
	waitFor(t, 30*time.Second, "the survivors in sync without the departed node", func() bool {
		for _, n := range c.live() {
			if st := n.Status(); !st.InSync || len(st.Behind) != 0 {
				return false
			}
		}
		return true
	})
	for _, n := range c.live() {
		for _, p := range n.Status().Peers {
			if p.Peer == goneSync {
				t.Fatalf("departed %s still listed as a peer", gone)
			}
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the node's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestJoinFailureIsLoggedOnce: a node that cannot join says so at warn,
// once (not once per retry).
func TestJoinFailureIsLoggedOnce(t *testing.T) {
	net := simnet.New(seedFor(t))
	dir := filepath.Join(t.TempDir(), "fs")
	r, err := replica.Create(dir, "j", testKey("root"), []string{"10.0.0.9:7946"}, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	var logs lockedBuffer
	lg := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := Start(Config{Dir: dir, Bind: "10.0.0.1:7946", Network: simnet.AddrNetwork{Host: net.Host("10.0.0.1")}, NoSync: true,
		RetryInterval: 50 * time.Millisecond, GossipTuning: fastTuning, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	waitFor(t, 30*time.Second, "a warning that the node cannot join", func() bool {
		return strings.Contains(logs.String(), "cannot join the cluster")
	})
	time.Sleep(500 * time.Millisecond) // several more retries
	if k := strings.Count(logs.String(), "cannot join the cluster"); k != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", k, logs.String())
	}
}

// TestMadeUpOriginIsNotDialed: an event's origin is a claim; a node only
// ever dials members, so a made-up origin gives no address to dial.
func TestMadeUpOriginIsNotDialed(t *testing.T) {
	c := newSimCluster(t, 2, simnet.Link{Delay: time.Millisecond})
	c.waitMembers(2, 30*time.Second)
	n := c.nodes[0]
	if a := n.syncAddrOfMember("10.9.9.9:7946"); a != "" {
		t.Fatalf("a made-up origin maps to %q", a)
	}
	if a := n.syncAddrOfMember(c.addrs[1]); a == "" {
		t.Fatal("a member's origin maps to no address")
	}
}
