// Package node runs one basefs node for one filesystem: the replica, gossip
// (Serf) for membership and fast dissemination, and anti-entropy sync that
// repairs what gossip misses. (Package agent adds the control socket, the
// mount and the handlers.) The network underneath is an interface, so the
// same node runs over real sockets or an in-process simulated network.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/sechan"
	"github.com/basefs/basefs/syncproto"
	"github.com/basefs/basefs/view"
)

// Network is what a node needs of the network: a gossip transport bound to
// its address, and streams for sync. RealNetwork uses the host's sockets; a
// simulated network lets many nodes run in one process.
type Network interface {
	// GossipTransport returns the memberlist transport bound to addr, or nil
	// for memberlist's own UDP+TCP sockets.
	GossipTransport(addr string) (memberlist.Transport, error)
	Listen(addr string) (net.Listener, error)
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// RealNetwork is the host's network.
type RealNetwork struct{}

// GossipTransport returns nil: memberlist binds its own sockets.
func (RealNetwork) GossipTransport(string) (memberlist.Transport, error) { return nil, nil }

// Listen listens on TCP.
func (RealNetwork) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// Dial dials TCP.
func (RealNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return syncproto.TCPDial(ctx, addr)
}

// Config configures a node.
type Config struct {
	// Dir is the filesystem's directory in the node's home.
	Dir string
	// Replica, when set, is used instead of opening Dir (the node then does
	// not close it on Stop).
	Replica *replica.Replica
	Logger  *slog.Logger

	// Bind is HOST:PORT. Gossip uses PORT (UDP and TCP), sync PORT+1 (TCP).
	// Empty: no networking.
	Bind string
	// Advertise is the HOST:PORT others reach this node at (default Bind).
	Advertise string
	// Join lists addresses to join, besides those in /.cluster.
	Join []string
	// Network is the network underneath (nil: RealNetwork).
	Network Network
	// Profile is the gossip timing profile: lan (default), wan or local.
	Profile string
	// Keys enable gossip encryption; KeyringFile persists rotations.
	Keys        [][]byte
	KeyringFile string
	// SyncInterval is the anti-entropy period (default syncproto's).
	SyncInterval time.Duration
	// RetryInterval is how often a node that is alone retries joining
	// (default 5 s).
	RetryInterval time.Duration
	// GossipTuning overrides gossip timings (tests, simulations).
	GossipTuning gossip.Tuning
	// SyncLimits overrides sync limits (zero fields: defaults).
	SyncLimits syncproto.Limits
	// Seed seeds peer choice and jitter (0: from the clock).
	Seed int64
	// NoSync turns off fsync in an opened replica (simulations).
	NoSync bool
}

// Node is a running node. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	logger *slog.Logger
	r      *replica.Replica

	g *gossip.Gossip
	// keyring is g once it exists, for the sync channel's key lookups
	// (which start before gossip does).
	keyring  atomic.Pointer[gossip.Gossip]
	sync     *syncproto.Service
	syncAddr string
	name     string

	inbox     chan gossip.Message
	cancelSub func()
	fetchSem  chan struct{}

	mu        sync.Mutex
	stopped   bool
	rejected  map[string]int64
	peerClean map[string]bool // sync peer -> its last session found nothing to exchange
	joinNow   chan struct{}
	syncNow   chan struct{}

	// Used by onMember alone (the gossip delivery goroutine).
	memberRand *rand.Rand
	alive      int // members that joined and have not left or failed since, this node included

	cancel context.CancelFunc
	ctx    context.Context
	wg     sync.WaitGroup
}

// Start opens the replica and starts the node's services.
func Start(cfg Config) (*Node, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Network == nil {
		cfg.Network = RealNetwork{}
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	n := &Node{cfg: cfg, logger: logger, rejected: map[string]int64{}, peerClean: map[string]bool{},
		inbox: make(chan gossip.Message, 1024), fetchSem: make(chan struct{}, 4),
		joinNow: make(chan struct{}, 1), syncNow: make(chan struct{}, 1),
		memberRand: rand.New(rand.NewSource(cfg.Seed + 2))}
	if cfg.Seed == 0 {
		// Real nodes must not all draw the same numbers.
		n.memberRand = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	if cfg.Replica != nil {
		n.r = cfg.Replica
	} else {
		r, err := replica.Open(cfg.Dir, replica.Options{Logger: logger, NoSync: cfg.NoSync})
		if err != nil {
			return nil, err
		}
		n.r = r
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if cfg.Bind != "" {
		if err := n.startNetwork(); err != nil {
			n.shutdown()
			return nil, err
		}
	}
	return n, nil
}

// SyncAddr returns the sync address of a node address HOST:PORT: the node
// gossips on PORT and syncs on PORT+1. It is the one place of that rule.
func SyncAddr(addr string) (string, error) {
	if err := CheckAddr(addr); err != nil {
		return "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

// CheckAddr validates a node address HOST:PORT; PORT+1 must be a port too.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("address %q: want HOST:PORT", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65534 {
		return fmt.Errorf("address %q: port must be 1 to 65534 (the node uses PORT and PORT+1)", addr)
	}
	return nil
}

func (n *Node) startNetwork() error {
	cfg := n.cfg
	// Peers may send anything: entries by keys with no standing are dropped
	// rather than stored (anti-entropy brings back any that gain it).
	n.r.SetDropUnauthorized(true)
	adv := cfg.Advertise
	if adv == "" {
		adv = cfg.Bind
	}
	n.name = adv
	syncBind, err := SyncAddr(cfg.Bind)
	if err != nil {
		return err
	}
	if n.syncAddr, err = SyncAddr(adv); err != nil {
		return err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	dial := cfg.Network.Dial
	if len(cfg.Keys) > 0 {
		dial = sechan.Dialer(dial, func() []byte { return n.syncKeys()[0] })
	}
	n.sync = syncproto.NewService(syncproto.Config{
		Replica: n.r, Node: n.name, Addr: n.syncAddr, Peers: n.syncPeers,
		Dial: dial, Interval: cfg.SyncInterval, Limits: cfg.SyncLimits,
		Logger: n.logger, Rand: rand.New(rand.NewSource(seed)),
	})
	l, err := cfg.Network.Listen(syncBind)
	if err != nil {
		return fmt.Errorf("cannot listen for sync on %s: %w", syncBind, err)
	}
	if len(cfg.Keys) > 0 {
		// With a cluster secret, sync and get are encrypted and
		// authenticated too, not only gossip.
		l = sechan.Listener(l, n.syncKeys)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.sync.Serve(l); err != nil && !errors.Is(err, syncproto.ErrServerClosed) {
			n.logger.Error("sync server stopped", "err", err)
		}
	}()
	tr, err := cfg.Network.GossipTransport(cfg.Bind)
	if err != nil {
		return fmt.Errorf("gossip transport on %s: %w", cfg.Bind, err)
	}
	_, syncPort, _ := net.SplitHostPort(n.syncAddr)
	n.g, err = gossip.New(gossip.Config{
		NodeName: n.name, BindAddr: cfg.Bind, AdvertiseAddr: cfg.Advertise, Transport: tr,
		Profile: cfg.Profile, FSID: n.r.ID(), Keys: cfg.Keys, KeyringFile: cfg.KeyringFile,
		Tags: map[string]string{"sync": syncPort}, Logger: n.logger,
		OnMessage: n.onMessage, OnMember: n.onMember, Tuning: cfg.GossipTuning,
	})
	if err != nil {
		return fmt.Errorf("cannot start gossip on %s: %w", cfg.Bind, err)
	}
	n.keyring.Store(n.g)
	n.cancelSub = n.r.Subscribe(n.onUpdate)
	n.wg.Add(3)
	go n.ingestLoop()
	go n.joinLoop()
	go n.syncLoop()
	return nil
}

// Replica returns the node's replica.
func (n *Node) Replica() *replica.Replica { return n.r }

// Name returns the node's name in the cluster (its advertised address).
func (n *Node) Name() string { return n.name }

// Gossip returns the node's gossip layer (nil without networking).
func (n *Node) Gossip() *gossip.Gossip { return n.g }

// SyncService returns the node's sync layer (nil without networking).
func (n *Node) SyncService() *syncproto.Service { return n.sync }

// SyncNow asks the node to run an anti-entropy session soon.
func (n *Node) SyncNow() {
	select {
	case n.syncNow <- struct{}{}:
	default:
	}
}

// clusterAddrs reads /.cluster: one HOST:PORT per line (# comments allowed).
func (n *Node) clusterAddrs() []string {
	b, err := n.r.ReadFile(replica.ClusterFile)
	if err != nil {
		return nil
	}
	return ParseClusterFile(b)
}

// ParseClusterFile parses the content of /.cluster: one HOST:PORT per
// line; '#' starts a comment; blank lines are skipped. It is the one
// parser of that file.
func ParseClusterFile(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// joinTargets are the addresses to join: --join and /.cluster, not self.
func (n *Node) joinTargets() []string {
	seen := map[string]bool{n.name: true, n.cfg.Bind: true}
	var out []string
	for _, a := range append(append([]string(nil), n.cfg.Join...), n.clusterAddrs()...) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// aliveOthers counts alive members other than this node.
func (n *Node) aliveOthers() int {
	c := 0
	for _, m := range n.g.Members() {
		if m.Name != n.name && m.Status == "alive" {
			c++
		}
	}
	return c
}

// joinWarnEvery is how often a node that cannot join says so at warn.
const joinWarnEvery = 5 * time.Minute

// joinLoop joins the known addresses, and retries while the node is alone.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	var failingSince, lastWarn time.Time
	for {
		if n.aliveOthers() == 0 {
			if targets := n.joinTargets(); len(targets) > 0 {
				if k, err := n.g.Join(targets); err != nil && k == 0 {
					// The first failure and then one line per joinWarnEvery
					// at warn (a wrong gossip key, a firewall); every
					// retry at debug.
					now := time.Now()
					if failingSince.IsZero() {
						failingSince = now
					}
					if lastWarn.IsZero() || now.Sub(lastWarn) >= joinWarnEvery {
						lastWarn = now
						n.logger.Warn("cannot join the cluster; retrying", "targets", targets, "for", now.Sub(failingSince).Round(time.Second), "err", err)
					} else {
						n.logger.Debug("join: nobody answered yet", "targets", targets, "err", err)
					}
				} else if k > 0 {
					failingSince, lastWarn = time.Time{}, time.Time{}
					n.logger.Info("joined the cluster", "contacted", k)
					n.SyncNow()
				}
			}
		}
		t := time.NewTimer(n.cfg.RetryInterval)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-n.joinNow:
		case <-t.C:
		}
		t.Stop()
	}
}

// syncPeers lists the sync addresses of the alive members; when gossip knows
// nobody, the addresses of /.cluster and --join.
func (n *Node) syncPeers() []string {
	var out []string
	if n.g != nil {
		for _, m := range n.g.Members() {
			if m.Name == n.name || m.Status != "alive" {
				continue
			}
			host, _, err := net.SplitHostPort(m.Addr)
			if err != nil {
				continue
			}
			if p := m.Tags["sync"]; p != "" {
				out = append(out, net.JoinHostPort(host, p))
			} else if a, err := SyncAddr(m.Addr); err == nil {
				out = append(out, a)
			}
		}
	}
	if len(out) == 0 {
		for _, a := range n.joinTargets() {
			if s, err := SyncAddr(a); err == nil {
				out = append(out, s)
			}
		}
	}
	return out
}

// syncLoop runs anti-entropy: one session every interval (jittered), and
// one at once when asked (a member joined, entries wait for parents).
func (n *Node) syncLoop() {
	defer n.wg.Done()
	interval := n.cfg.SyncInterval
	if interval <= 0 {
		interval = syncproto.DefaultInterval
	}
	rng := rand.New(rand.NewSource(n.cfg.Seed + 1))
	for {
		wait := interval + time.Duration((rng.Float64()*0.2-0.1)*float64(interval))
		t := time.NewTimer(wait)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-n.syncNow:
		case <-t.C:
		}
		t.Stop()
		ctx, cancel := context.WithTimeout(n.ctx, max(30*time.Second, 3*interval))
		peer, st, ok, err := n.sync.Syncer.Step(ctx)
		cancel()
		if !ok {
			continue
		}
		clean := err == nil && (st.InSync || st.EntriesReceived+st.EntriesSent+st.BlocksReceived+st.BlocksSent == 0)
		n.mu.Lock()
		n.peerClean[peer] = clean
		n.mu.Unlock()
		if err != nil && n.ctx.Err() == nil {
			n.logger.Debug("sync failed", "peer", peer, "err", err)
		} else if !clean {
			n.logger.Debug("synced", "peer", peer, "received", st.EntriesReceived, "sent", st.EntriesSent, "blocks", st.BlocksReceived)
		}
	}
}

// joinSyncFanout is how many nodes, on average, sync at once with a node
// that joins (besides the joiner's own sync when it starts).
const joinSyncFanout = 3

// onMember reacts to membership: a new member is synced with soon — by
// about joinSyncFanout of the nodes, each deciding at random with
// probability joinSyncFanout·joined/members, so that one join does not make
// every node of a large cluster connect to the newcomer at once, while a
// healed partition (many members joining together) still makes nearly
// every node sync promptly. It runs on the gossip delivery goroutine, one
// call at a time, which alone uses n.memberRand and n.alive.
func (n *Node) onMember(ev gossip.MemberEvent) {
	switch ev.Type {
	case "join":
		n.alive += len(ev.Members)
		if p := float64(joinSyncFanout*len(ev.Members)) / float64(max(1, n.alive)); p >= 1 || n.memberRand.Float64() < p {
			n.SyncNow()
		}
	case "leave", "failed":
		n.alive -= len(ev.Members)
	}
	for _, m := range ev.Members {
		n.logger.Info("member "+ev.Type, "name", m.Name, "addr", m.Addr)
	}
}

// onMessage queues a gossip message for the ingest loop. It never blocks:
// when the queue is full the message is dropped and anti-entropy repairs.
func (n *Node) onMessage(from string, m gossip.Message) {
	select {
	case n.inbox <- m:
	default:
		n.reject("gossip queue full (repaired by sync)", int64(len(m.Entries)))
	}
}

func (n *Node) reject(reason string, k int64) {
	if k == 0 {
		return
	}
	n.mu.Lock()
	n.rejected[reason] += k
	n.mu.Unlock()
}

// ingestLoop verifies and stores what gossip brings, in batches, and pulls
// what it only announced or what the new entries need.
func (n *Node) ingestLoop() {
	defer n.wg.Done()
	for {
		var batch []gossip.Message
		select {
		case <-n.ctx.Done():
			return
		case m := <-n.inbox:
			batch = append(batch, m)
		}
	more:
		for len(batch) < 256 {
			select {
			case m := <-n.inbox:
				batch = append(batch, m)
			default:
				break more
			}
		}
		n.ingest(batch)
	}
}

func (n *Node) ingest(batch []gossip.Message) {
	var entries []*log.Entry
	var blocks [][]byte
	want := map[string][]log.Hash{} // origin -> entries announced by hash
	origins := map[string]bool{}
	for _, m := range batch {
		bad := 0
		for _, b := range m.Entries {
			e, err := log.Decode(b)
			if err != nil {
				bad++
				continue
			}
			entries = append(entries, e)
		}
		if bad > 0 {
			n.reject("malformed entry in gossip", int64(bad))
			n.g.ReportInvalid(m.Origin, bad, log.ErrMalformed)
		}
		blocks = append(blocks, m.Blocks...)
		for _, h := range m.Hashes {
			if !n.r.HasEntry(h) {
				want[m.Origin] = append(want[m.Origin], h)
			}
		}
		origins[m.Origin] = true
	}
	res, err := n.r.Ingest(entries, blocks)
	if err != nil {
		n.logger.Warn("could not store gossiped entries", "err", err)
		return
	}
	for _, rj := range res.Rejected {
		n.reject(rj.Reason+" (gossip)", 1)
	}
	if len(res.Rejected) > 0 {
		for o := range origins {
			n.g.ReportInvalid(o, len(res.Rejected), errors.New(res.Rejected[0].Reason))
			break
		}
	}
	// Pull from the announcers what was announced by hash, what new entries
	// wait for (their parents), and the blocks of new contents.
	var contents []*log.Content
	for _, e := range entries {
		if c := e.Content; c != nil && c.Blocks != nil {
			contents = append(contents, c)
		}
	}
	var missingDeps []log.Hash
	n.r.View(func(v *view.View) { missingDeps = v.Missing() })
	if len(missingDeps) > 64 {
		missingDeps = missingDeps[:64]
	}
	for o := range origins {
		hs := append(want[o], missingDeps...)
		n.fetch(o, hs, contents)
	}
}

// fetch pulls entries, and the blocks of contents, from the node named
// origin, in the background and bounded; failures are left to anti-entropy.
// A content's blocks form a tree whose lower levels are known only once the
// upper ones are held, so blocks are fetched level by level until the
// contents are complete.
func (n *Node) fetch(origin string, entries []log.Hash, contents []*log.Content) {
	missingBlocks := func() []log.Hash {
		var out []log.Hash
		for _, c := range contents {
			_, missing := n.r.ContentBlocks(c)
			out = append(out, missing...)
		}
		return out
	}
	if len(entries) == 0 && len(missingBlocks()) == 0 {
		return
	}
	addr := n.syncAddrOfMember(origin)
	if addr == "" {
		n.SyncNow()
		return
	}
	select {
	case n.fetchSem <- struct{}{}:
	default:
		n.SyncNow() // enough fetches under way; a sync will catch up
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { <-n.fetchSem }()
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		defer cancel()
		if len(entries) > 0 {
			if _, err := n.sync.FetchEntries(ctx, addr, entries); err != nil {
				n.logger.Debug("fetch entries", "from", addr, "err", err)
			}
		}
		for level := 0; level <= log.MaxContentDepth; level++ {
			blocks := missingBlocks()
			if len(blocks) == 0 {
				return
			}
			st, err := n.sync.FetchBlocks(ctx, addr, blocks)
			if err != nil || st.BlocksReceived == 0 {
				if err != nil {
					n.logger.Debug("fetch blocks", "from", addr, "err", err)
				}
				n.SyncNow() // the origin lacks them: ask the others
				return
			}
		}
	}()
}

// syncAddrOfMember finds the sync address of the alive member named name;
// "" when no alive member has that name. A gossiped origin is a claim of
// whoever sent the event: only members are ever dialed, never an address
// an event names.
func (n *Node) syncAddrOfMember(name string) string {
	for _, m := range n.g.Members() {
		if m.Name != name || m.Status != "alive" {
			continue
		}
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil {
			return ""
		}
		if p := m.Tags["sync"]; p != "" {
			return net.JoinHostPort(host, p)
		}
		if a, err := SyncAddr(m.Addr); err == nil {
			return a
		}
	}
	return ""
}

// gossipedBlocks is how many blocks of a small file travel with its entry.
const gossipedBlocks = 8

// onUpdate announces entries written here at once, with the first blocks
// of small files.
func (n *Node) onUpdate(u replica.Update) {
	if !u.Local || n.g == nil {
		return
	}
	entries := make([][]byte, 0, len(u.Entries))
	var blocks [][]byte
	for _, e := range u.Entries {
		entries = append(entries, e.Encoded())
		if c := e.Content; c != nil && c.Blocks != nil && c.Depth == 0 && len(c.Blocks) <= gossipedBlocks {
			for _, h := range c.Blocks {
				if b, err := n.r.Block(h); err == nil {
					blocks = append(blocks, b)
				}
			}
		}
	}
	if err := n.g.Announce(entries, blocks); err != nil {
		n.logger.Warn("could not announce entries", "err", err)
	}
}

// Status reports the node's state.
func (n *Node) Status() Status {
	st := Status{Status: n.r.Status(), Running: true, Members: []Member{}}
	if n.g == nil {
		// No networking: nobody to be out of sync with.
		st.InSync = st.MissingBlocks == 0 && st.Pending == 0
		return st
	}
	st.Node, st.Addr = n.name, n.name
	for _, m := range n.g.Members() {
		st.Members = append(st.Members, Member{Name: m.Name, Addr: m.Addr, Status: m.Status})
	}
	ss := n.sync.Status()
	st.Fetching = ss.Fetching
	// Only the members gossip calls alive count: a peer that left or
	// died, or a `get` client, is history, not a peer to be in sync with.
	alive := map[string]bool{}
	if n.aliveOthers() > 0 {
		for _, a := range n.syncPeers() {
			alive[a] = true
		}
	}
	for _, p := range ss.Peers {
		if alive[p.Peer] {
			st.Peers = append(st.Peers, p)
		} else {
			st.Departed = append(st.Departed, p.Peer)
		}
	}
	n.mu.Lock()
	st.Rejected = map[string]int64{}
	for k, v := range n.rejected {
		st.Rejected[k] = v
	}
	clean := true
	for a := range alive {
		if !n.peerClean[a] {
			clean = false
			st.Behind = append(st.Behind, a)
		}
	}
	n.mu.Unlock()
	sort.Strings(st.Behind)
	for _, p := range ss.Peers {
		for reason, k := range p.Rejections {
			st.Rejected[reason+" (sync)"] += k
		}
	}
	if k := n.sync.Server.Refused(); k > 0 {
		st.Rejected["sync session (busy)"] += k
	}
	gs := n.g.Stats()
	if gs.DecodeFailures > 0 {
		st.Rejected["undecodable gossip event"] += gs.DecodeFailures
	}
	if len(st.Rejected) == 0 {
		st.Rejected = nil
	}
	st.InSync = clean && st.MissingBlocks == 0 && st.Pending == 0
	return st
}

// syncKeys are the cluster keys the sync channel accepts, primary first:
// gossip's keyring (rotations included) once gossip runs, else the
// configured keys.
func (n *Node) syncKeys() [][]byte {
	if g := n.keyring.Load(); g != nil {
		if ks := g.LocalKeys(); len(ks) > 0 {
			return ks
		}
	}
	return n.cfg.Keys
}

// GossipStats returns the gossip counters; false when the node runs
// without networking.
func (n *Node) GossipStats() (gossip.Stats, bool) {
	if n.g == nil {
		return gossip.Stats{}, false
	}
	return n.g.Stats(), true
}

// Stop leaves the cluster, stops the node's services, syncs and closes the
// replica (unless it was given in Config).
func (n *Node) Stop() error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	n.mu.Unlock()
	return n.shutdown()
}

func (n *Node) shutdown() error {
	var errs []error
	if n.g != nil {
		if err := n.g.Leave(); err != nil {
			n.logger.Debug("leave", "err", err)
		}
		errs = append(errs, n.g.Shutdown())
	}
	if n.cancelSub != nil {
		n.cancelSub()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.sync != nil {
		errs = append(errs, n.sync.Close())
	}
	n.wg.Wait()
	errs = append(errs, n.closeReplica())
	return errors.Join(errs...)
}

func (n *Node) closeReplica() error {
	if n.r == nil {
		return nil
	}
	if n.cfg.Replica != nil {
		return n.r.Sync()
	}
	if err := n.r.Close(); err != nil {
		return fmt.Errorf("closing the store: %w", err)
	}
	return nil
}

// KeyReport is what a gossip key operation found across the cluster.
type KeyReport struct {
	Nodes     int               `json:"nodes"`
	Responses int               `json:"responses"`
	Errors    map[string]string `json:"errors,omitempty"` // node -> its error
	Keys      map[string]int    `json:"keys,omitempty"`   // key -> nodes holding it (list)
	Primary   map[string]int    `json:"primary,omitempty"`
}

// GossipKey runs a gossip key operation (install, use, remove, list) on the
// whole cluster: Serf's keyring, rotated without downtime by installing a new
// key everywhere, making it primary, then removing the old one.
func (n *Node) GossipKey(op, key string) (KeyReport, error) {
	if n.g == nil {
		return KeyReport{}, replica.NewError(replica.Invalid, "this node runs without networking")
	}
	var k []byte
	if op != "list" {
		var err error
		if k, err = gossip.ParseKey(key); err != nil {
			return KeyReport{}, replica.NewError(replica.Invalid, err.Error())
		}
	}
	var err error
	switch op {
	case "install":
		err = n.g.InstallKey(k)
	case "use":
		err = n.g.UseKey(k)
	case "remove":
		err = n.g.RemoveKey(k)
	case "list":
		st, lerr := n.g.ListKeys()
		if lerr != nil {
			return KeyReport{}, replica.NewError(replica.Other, lerr.Error())
		}
		return KeyReport{Nodes: st.Nodes, Responses: st.Responses, Errors: st.Messages, Keys: st.Keys, Primary: st.Primary}, nil
	default:
		return KeyReport{}, replica.NewError(replica.Invalid, fmt.Sprintf("unknown key operation %q (install, use, remove or list)", op))
	}
	if err != nil {
		if errors.Is(err, gossip.ErrNoEncryption) {
			return KeyReport{}, replica.NewError(replica.Invalid, "gossip encryption is off on this node (start it with --encrypt KEYFILE)")
		}
		return KeyReport{}, replica.NewError(replica.Other, err.Error())
	}
	return KeyReport{}, nil
}
