package testbed

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/syncproto"
	"github.com/basefs/basefs/testbed/simnet"
)

// FSName is the name of the filesystem every simulated cluster shares.
const FSName = "sim"

// GossipPort is the port every simulated node binds (sync is the next).
const GossipPort = 7946

// HostAddr is the simulated IP of node i: 10.0.0.1, …, 10.0.0.250,
// 10.0.1.1, …
func HostAddr(i int) string { return fmt.Sprintf("10.%d.%d.%d", i/62500, i/250%250, i%250+1) }

// ClusterConfig configures a simulated cluster. Zero fields take the
// defaults named.
type ClusterConfig struct {
	// Nodes is the number of nodes (at least 1).
	Nodes int
	// Seed seeds the network's faults, the start offsets, the nodes' peer
	// choice and everything an experiment draws. Equal seeds give equal
	// fault patterns (see simnet's package comment for what replays).
	Seed int64
	// Dir holds the nodes' stores; "" makes a temporary directory that
	// Close removes.
	Dir string
	// Link is the default link, applied once the cluster has formed (it
	// forms on a clean network with Link's delay and jitter only, so
	// formation time does not depend on the faults studied).
	Link simnet.Link
	// Profile is the gossip profile (lan, wan, local; default lan).
	Profile string
	// Tuning overrides gossip timings.
	Tuning gossip.Tuning
	// SyncInterval is the anti-entropy period (default syncproto's 5 s).
	SyncInterval time.Duration
	// RetryInterval is how often a lone node retries joining (default 1 s,
	// and 10 ms per node above 100 nodes: every node's join loop lists all
	// members at each tick, which costs O(N²) per tick across the cluster).
	RetryInterval time.Duration
	// JoinAddrs is how many of the first nodes' addresses each node is
	// given to join besides /.cluster (node 0), so that a restarted node
	// finds the cluster while node 0 is down (default 5, or 1 above 100
	// nodes: each address joined costs a push/pull of the whole member
	// list).
	JoinAddrs int
	// Stagger: each node starts after a random pause in [0, Stagger)
	// (default 200 ms, one LAN gossip interval), so that gossip tickers
	// are not in step (DESIGN §3).
	Stagger time.Duration
	// FormTimeout bounds the wait for every node to see every other alive
	// (default 60 s + 100 ms per node).
	FormTimeout time.Duration
	// Fsync makes the stores fsync (default off: the simulated crashes stop
	// the node's goroutines, not the process, so written data survives in
	// the page cache either way).
	Fsync bool
	// NetOptions are passed to simnet.New.
	NetOptions []simnet.Option
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
	// Logger, if set, receives the nodes' logs.
	Logger *slog.Logger
}

// Cluster is N basefs nodes of one filesystem, each on its own simnet host,
// in this process. The node code is the real one (node.Start with a
// simulated network underneath). Every node's replica is watched: the first
// time each entry, block and bare Serf event reaches a node is recorded,
// which is how experiments time convergence without polling view hashes.
//
// Concurrency: the methods are safe for concurrent use, except that Crash,
// Restart and Close of one node must not run concurrently with each other.
type Cluster struct {
	cfg    ClusterConfig
	net    *simnet.Network
	root   ed25519.PrivateKey
	dir    string
	ownDir bool
	addrs  []string
	rng    *rand.Rand // guarded by mu

	mu    sync.Mutex
	nodes []*node.Node
	arr   []*Arrivals
	cpu0  time.Duration
	start time.Time
}

// NewCluster builds and starts a cluster: node 0 creates the filesystem
// (replica.Create, its key is the root authority, /.cluster names node 0);
// every other node fetches it from an earlier node with syncproto's get
// over the simulated network, then starts with node 0 as its join address,
// after a random pause (Stagger). It returns once every node sees all
// others alive; then it applies cfg.Link.
func NewCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Nodes < 1 {
		return nil, errors.New("testbed: a cluster needs at least one node")
	}
	if cfg.Stagger <= 0 {
		cfg.Stagger = 200 * time.Millisecond
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = max(time.Second, time.Duration(cfg.Nodes)*10*time.Millisecond)
	}
	if cfg.JoinAddrs <= 0 {
		cfg.JoinAddrs = 5
		if cfg.Nodes > 100 {
			cfg.JoinAddrs = 1
		}
	}
	if cfg.FormTimeout <= 0 {
		cfg.FormTimeout = 60*time.Second + time.Duration(cfg.Nodes)*100*time.Millisecond
	}
	c := &Cluster{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed)), start: time.Now(), cpu0: CPUTime()}
	c.root = KeyFromSeed(cfg.Seed, "root")
	c.dir = cfg.Dir
	if c.dir == "" {
		d, err := os.MkdirTemp("", "basefs-testbed-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownDir = d, true
	}
	c.net = simnet.New(cfg.Seed, cfg.NetOptions...)
	c.net.SetDefaultLink(simnet.Link{Delay: cfg.Link.Delay, Jitter: cfg.Link.Jitter})
	for i := 0; i < cfg.Nodes; i++ {
		c.addrs = append(c.addrs, net.JoinHostPort(HostAddr(i), strconv.Itoa(GossipPort)))
	}
	c.nodes = make([]*node.Node, cfg.Nodes)
	c.arr = make([]*Arrivals, cfg.Nodes)
	for i := range c.arr {
		c.arr[i] = newArrivals()
	}
	if err := c.form(ctx); err != nil {
		c.Close()
		return nil, err
	}
	c.net.SetDefaultLink(cfg.Link)
	return c, nil
}

func (c *Cluster) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

func (c *Cluster) form(ctx context.Context) error {
	r, err := replica.Create(c.NodeDir(0), FSName, c.root, c.addrs[:1], replica.Options{NoSync: !c.cfg.Fsync})
	if err != nil {
		return err
	}
	// The directory experiments write into exists everywhere before they
	// start, so a stored entry is an applied one.
	if err := r.Mkdir(c.root, ObjectDir, 0o755, true, false); err != nil {
		r.Close()
		return err
	}
	if err := r.Close(); err != nil {
		return err
	}
	if err := c.Start(0); err != nil {
		return err
	}
	// Above 100 nodes, nodes start in waves of ten, in parallel within a
	// wave, which keeps the formation of a large cluster short (each join
	// is still gossiped to every node). Each node still starts after its
	// own random pause, so the gossip tickers are out of step.
	wave := 1
	if c.cfg.Nodes > 100 {
		wave = 10
	}
	for lo := 1; lo < c.cfg.Nodes; lo += wave {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(c.cfg.Nodes, lo+wave)
		errs := make([]error, hi-lo)
		var wg sync.WaitGroup
		for i := lo; i < hi; i++ {
			c.mu.Lock()
			from := c.rng.Intn(lo)
			pause := time.Duration(c.rng.Int63n(int64(c.cfg.Stagger)))
			c.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.get(ctx, i, from); err != nil {
					errs[i-lo] = err
					return
				}
				time.Sleep(pause)
				errs[i-lo] = c.Start(i)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if c.cfg.Nodes > 100 {
			// Let the wave's joins spread before the next: while the
			// machine cannot keep up (simnet runs late), broadcasts pile
			// up in queues faster than they drain.
			c.net.Lag()
			for k := 0; k < 60; k++ {
				time.Sleep(500 * time.Millisecond)
				if c.net.Lag() < 50*time.Millisecond {
					break
				}
			}
			if (hi-1)%50 == 0 || hi == c.cfg.Nodes {
				c.logf("started %d of %d nodes (%v)", hi, c.cfg.Nodes, time.Since(c.start).Round(time.Second))
			}
		}
	}
	fctx, cancel := context.WithTimeout(ctx, c.cfg.FormTimeout)
	defer cancel()
	err = c.WaitMembers(fctx, c.cfg.Nodes)
	if err != nil && c.cfg.Nodes > 100 && ctx.Err() == nil {
		// In a large cluster on two cores a few member lists stay stale
		// for a while (suspicions raised while the machine lagged, until
		// push/pull repairs them); the experiment needs a connected
		// cluster, not perfect lists, and counts the nodes it reaches.
		if w := c.worstAlive(c.cfg.Nodes); w >= c.cfg.Nodes-c.cfg.Nodes/100 {
			c.logf("formed: every node sees at least %d of %d alive (99 %% accepted above 100 nodes)", w, c.cfg.Nodes)
			return nil
		}
	}
	return err
}

// get bootstraps node i's store from node from over the simulated network,
// retrying a few times (a get can fail while the source is busy).
func (c *Cluster) get(ctx context.Context, i, from int) error {
	host := c.net.Host(HostAddr(i))
	src := net.JoinHostPort(HostAddr(from), strconv.Itoa(GossipPort+1))
	var err error
	for try := 0; try < 5; try++ {
		gctx, cancel := context.WithTimeout(ctx, 120*time.Second)
		_, err = syncproto.GetWithOptions(gctx, host.DialContext, src, c.NodeDir(i), FSName, nil,
			syncproto.GetOptions{NoSync: !c.cfg.Fsync, Node: c.addrs[i], Workers: 1})
		cancel()
		if err == nil {
			return nil
		}
		src = net.JoinHostPort(HostAddr(0), strconv.Itoa(GossipPort+1))
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("testbed: get into node %d: %w", i, err)
}

// Start starts node i on its store (again, after Crash or Stop).
func (c *Cluster) Start(i int) error {
	host := c.net.Host(HostAddr(i))
	n, err := node.Start(node.Config{Logger: c.cfg.Logger,
		Dir: c.NodeDir(i), Bind: c.addrs[i], Join: c.addrs[:min(len(c.addrs), c.cfg.JoinAddrs)], Network: simnet.AddrNetwork{Host: host},
		NoSync: !c.cfg.Fsync, Profile: c.cfg.Profile, GossipTuning: c.cfg.Tuning,
		SyncInterval: c.cfg.SyncInterval, RetryInterval: c.cfg.RetryInterval,
		Seed: c.cfg.Seed*1_000_003 + int64(i) + 1,
	})
	if err != nil {
		return fmt.Errorf("testbed: start node %d: %w", i, err)
	}
	a := c.arr[i]
	a.attach(n)
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return nil
}

// Crash stops node i without leaving the cluster: its host goes down first
// (simnet Down: its packets and streams are cut), then its gossip is shut
// down without a leave and the node's services stop, so the others see it
// fail rather than leave.
func (c *Cluster) Crash(i int) error {
	n := c.take(i)
	if n == nil {
		return nil
	}
	c.net.Down(HostAddr(i))
	// Shut gossip down first, so Stop does not broadcast a leave.
	if g := n.Gossip(); g != nil {
		g.Shutdown()
	}
	return n.Stop()
}

// Restart brings node i's host up and starts the node on its store.
func (c *Cluster) Restart(i int) error {
	c.net.Up(HostAddr(i))
	return c.Start(i)
}

// Stop stops node i gracefully (it leaves the cluster).
func (c *Cluster) Stop(i int) error {
	n := c.take(i)
	if n == nil {
		return nil
	}
	return n.Stop()
}

// take removes node i from the cluster and stops recording its arrivals;
// it returns the node, or nil if it was not running.
func (c *Cluster) take(i int) *node.Node {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		c.arr[i].detach()
	}
	return n
}

// Close stops every node, closes the network and removes a temporary Dir.
// Nodes are stopped without the leave broadcast (the network closes first,
// gossip is shut down before the node) and in parallel, so closing a large
// cluster is quick.
func (c *Cluster) Close() error {
	c.mu.Lock()
	nodes := append([]*node.Node(nil), c.nodes...)
	for i := range c.nodes {
		c.nodes[i] = nil
	}
	c.mu.Unlock()
	if c.net != nil {
		c.net.Close()
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i, n := range nodes {
		if n == nil {
			continue
		}
		c.arr[i].detach()
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if g := n.Gossip(); g != nil {
				g.Shutdown() // no leave: nobody is listening any more
			}
			n.Stop()
		}()
	}
	wg.Wait()
	if c.ownDir {
		return os.RemoveAll(c.dir)
	}
	return nil
}

// N returns the number of nodes.
func (c *Cluster) N() int { return c.cfg.Nodes }

// Net returns the simulated network.
func (c *Cluster) Net() *simnet.Network { return c.net }

// Root returns the filesystem's root key.
func (c *Cluster) Root() ed25519.PrivateKey { return c.root }

// NodeDir returns node i's store directory.
func (c *Cluster) NodeDir(i int) string { return filepath.Join(c.dir, fmt.Sprintf("n%04d", i)) }

// Addr returns node i's gossip address (its name in the cluster).
func (c *Cluster) Addr(i int) string { return c.addrs[i] }

// Node returns node i, or nil while it is crashed or stopped.
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Arrivals returns the arrival record of node i (it survives restarts).
func (c *Cluster) Arrivals(i int) *Arrivals { return c.arr[i] }

// Live returns the indexes of the running nodes.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, n := range c.nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// Rand returns a number from the cluster's seeded generator in [0, n).
func (c *Cluster) Rand(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Intn(n)
}

// CPU returns the CPU time the process used since the cluster was created,
// and the wall time.
func (c *Cluster) CPU() (cpu, wall time.Duration) { return CPUTime() - c.cpu0, time.Since(c.start) }

// alive counts the members node n sees alive, itself included, from Serf's
// counters (cheap even with a thousand members).
func alive(n *node.Node) int {
	g := n.Gossip()
	if g == nil {
		return 0
	}
	st := g.Stats().Serf
	m, _ := strconv.Atoi(st["members"])
	f, _ := strconv.Atoi(st["failed"])
	l, _ := strconv.Atoi(st["left"])
	return m - f - l
}

// WaitMembers waits until every running node sees k members alive.
func (c *Cluster) WaitMembers(ctx context.Context, k int) error {
	every := 50 * time.Millisecond
	if c.cfg.Nodes > 100 {
		every = time.Second
	}
	for {
		worst := c.worstAlive(k)
		if worst == k {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: membership did not converge (a node sees %d of %d alive): %w", worst, k, ctx.Err())
		case <-time.After(every):
		}
	}
}

// worstAlive returns the fewest alive members any running node sees, or k
// if every node sees exactly k.
func (c *Cluster) worstAlive(k int) int {
	worst := k
	for _, i := range c.Live() {
		if n := c.Node(i); n != nil {
			if a := alive(n); a != k {
				worst = min(worst, a)
			}
		}
	}
	return worst
}

// WaitConverged waits until the given nodes (nil: all running) have equal
// view hashes and miss no blocks.
func (c *Cluster) WaitConverged(ctx context.Context, idx []int) error {
	if idx == nil {
		idx = c.Live()
	}
	for {
		if c.Converged(idx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: views did not converge: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Converged reports whether the given running nodes have equal view
// hashes and miss no blocks.
func (c *Cluster) Converged(idx []int) bool {
	first := ""
	for k, i := range idx {
		n := c.Node(i)
		if n == nil {
			return false
		}
		st := n.Replica().Status()
		if st.MissingBlocks != 0 {
			return false
		}
		if k == 0 {
			first = st.ViewHash
		} else if st.ViewHash != first {
			return false
		}
	}
	return true
}

// ObjectDir is the directory experiments write their objects into; it is
// created with the filesystem.
const ObjectDir = "/o"

// Written is what a write put in the log: the entry and the blocks its
// content needs (the things a node must hold to have converged).
type Written struct {
	Entry  log.Hash
	Blocks []log.Hash
}

// Write writes data to path on node i with key (nil: the root key) and
// returns what a node must hold to have it.
func (c *Cluster) Write(i int, key ed25519.PrivateKey, path string, data []byte) (Written, error) {
	n := c.Node(i)
	if n == nil {
		return Written{}, fmt.Errorf("testbed: node %d is not running", i)
	}
	if key == nil {
		key = c.root
	}
	e, err := n.Replica().WriteFile(key, path, data, replica.WriteOptions{Parents: true})
	if err != nil {
		return Written{}, err
	}
	w := Written{Entry: e.Hash()}
	if e.Content != nil {
		w.Blocks, _ = n.Replica().ContentBlocks(e.Content)
	}
	return w, nil
}
