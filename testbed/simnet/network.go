package simnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the simulated network. They are wrapped with context;
// test with errors.Is.
var (
	// ErrHostDown: the local host is down (see Network.Down).
	ErrHostDown = errors.New("simnet: host is down")
	// ErrUnknownHost: the address names no host of the network.
	ErrUnknownHost = errors.New("simnet: no such host")
	// ErrRefused: nothing listens on the dialled port.
	ErrRefused = errors.New("simnet: connection refused")
	// ErrReset: the connection was reset (peer crashed, wrote to a closed
	// peer, or the network was closed).
	ErrReset = errors.New("simnet: connection reset")
	// ErrTimedOut: the connection gave up retransmitting, or a dial ran out
	// of handshake retries.
	ErrTimedOut = errors.New("simnet: connection timed out")
	// ErrPortInUse: the port is already bound on the host.
	ErrPortInUse = errors.New("simnet: address already in use")
)

// Option configures a Network.
type Option func(*config)

type config struct {
	minRTO        time.Duration
	streamRetries int
	synRetries    int
	streamBuffer  int
	packetQueue   int
	acceptQueue   int
}

// WithMinRTO sets the floor of the stream retransmission timeout
// (default 200 ms, as Linux).
func WithMinRTO(d time.Duration) Option { return func(c *config) { c.minRTO = d } }

// WithStreamRetries sets how many times one stream segment is retransmitted
// before the connection fails with ErrTimedOut (default 6: about 25 s with
// the default RTO).
func WithStreamRetries(n int) Option { return func(c *config) { c.streamRetries = n } }

// WithStreamBuffer sets the per-direction stream buffer in bytes (default
// 256 KiB): a writer blocks once this much is written but not yet
// acknowledged, and the receiver window is as large.
func WithStreamBuffer(n int) Option { return func(c *config) { c.streamBuffer = n } }

// WithPacketQueue sets how many received packets wait for a Transport's
// reader before further ones are dropped (default 4096).
func WithPacketQueue(n int) Option { return func(c *config) { c.packetQueue = n } }

// Network is a simulated network of hosts. It is safe for concurrent use.
//
// Random fault decisions are seeded: see the package documentation for what
// replays and what does not.
type Network struct {
	seed  uint64
	cfg   config
	sched *scheduler

	mu     sync.RWMutex
	hosts  map[string]*Host
	byID   []*Host
	links  map[[2]int32]Link
	closed bool

	nlinks atomic.Int32          // len(links), read without mu
	def    atomic.Pointer[Link]  // default link
	groups atomic.Pointer[[]int] // partition group by host id; nil: none
	done   chan struct{}         // closed by Close
}

// New returns an empty network whose random decisions derive from seed.
// Every random decision of a packet, a stream segment or a handshake comes
// from a generator derived from the seed, the directed link and the index of
// the packet (or connection and segment) on it; goroutine scheduling, and so
// which packet gets which index, is not replayable.
func New(seed int64, opts ...Option) *Network {
	cfg := config{
		minRTO:        200 * time.Millisecond,
		streamRetries: 6,
		synRetries:    6,
		streamBuffer:  256 << 10,
		packetQueue:   4096,
		acceptQueue:   256,
	}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.streamBuffer = max(cfg.streamBuffer, mss)
	cfg.packetQueue = max(cfg.packetQueue, 1)
	n := &Network{
		seed:  uint64(seed),
		cfg:   cfg,
		sched: newScheduler(),
		hosts: make(map[string]*Host),
		links: make(map[[2]int32]Link),
		done:  make(chan struct{}),
	}
	n.def.Store(&Link{})
	return n
}

// Host returns the host with IP address addr ("10.1.0.7"), creating it on
// first use. addr must be an IP literal; Host panics otherwise, since
// memberlist needs IP addresses.
func (n *Network) Host(addr string) *Host {
	n.mu.RLock()
	h := n.hosts[addr]
	n.mu.RUnlock()
	if h != nil {
		return h
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		panic(fmt.Sprintf("simnet: host address %q is not an IP: %v", addr, err))
	}
	name := ip.Unmap().String()
	n.mu.Lock()
	defer n.mu.Unlock()
	if h := n.hosts[name]; h != nil {
		n.hosts[addr] = h
		return h
	}
	h = newHost(n, int32(len(n.byID)), name, net.IP(ip.Unmap().AsSlice()))
	n.byID = append(n.byID, h)
	n.hosts[name] = h
	n.hosts[addr] = h
	return h
}

// lookup resolves "ip:port" to an existing host and port.
func (n *Network) lookup(addr string) (*Host, int, error) {
	hs, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("simnet: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("simnet: address %q: bad port", addr)
	}
	n.mu.RLock()
	h := n.hosts[hs]
	n.mu.RUnlock()
	if h == nil {
		if ip, err := netip.ParseAddr(hs); err == nil {
			n.mu.RLock()
			h = n.hosts[ip.Unmap().String()]
			n.mu.RUnlock()
		}
	}
	if h == nil {
		return nil, 0, fmt.Errorf("simnet: %s: %w", addr, ErrUnknownHost)
	}
	return h, port, nil
}

// Close stops the network: pending deliveries are discarded, open streams
// are reset, listeners return errors from Accept and no packet is delivered
// any more. Transports stay valid objects whose sends fail. Close is
// idempotent and safe to call concurrently with anything.
func (n *Network) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	close(n.done)
	hosts := append([]*Host(nil), n.byID...)
	n.mu.Unlock()
	n.sched.stop()
	for _, h := range hosts {
		h.crash(fmt.Errorf("simnet: network closed: %w", ErrReset),
			fmt.Errorf("simnet: network closed: %w", net.ErrClosed))
	}
}

// Lag returns the largest lateness of a delivery since the previous call:
// how far behind its schedule the network ran, a measure of CPU starvation.
// Once it approaches the delays being simulated, the simulation no longer
// keeps time and its results are skewed; slow the experiment down.
func (n *Network) Lag() time.Duration { return n.sched.lag() }

// Seed returns the seed the network was created with.
func (n *Network) Seed() int64 { return int64(n.seed) }

func (n *Network) isClosed() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// SetDefaultLink sets the conditions of every directed link that has no
// SetLink override. It applies to packets sent from now on and to stream
// segments transmitted from now on.
func (n *Network) SetDefaultLink(l Link) { n.def.Store(&l) }

// SetLink overrides the conditions of the directed link from → to (host IP
// addresses; hosts are created if needed). Set both directions for a
// symmetric link. A host's traffic to itself always uses a perfect loopback.
func (n *Network) SetLink(from, to string, l Link) {
	a, b := n.Host(from), n.Host(to)
	n.mu.Lock()
	n.links[[2]int32{a.id, b.id}] = l
	n.nlinks.Store(int32(len(n.links)))
	n.mu.Unlock()
}

// ClearLink removes the override of the directed link from → to, so the
// default applies again.
func (n *Network) ClearLink(from, to string) {
	a, b := n.Host(from), n.Host(to)
	n.mu.Lock()
	delete(n.links, [2]int32{a.id, b.id})
	n.nlinks.Store(int32(len(n.links)))
	n.mu.Unlock()
}

// link returns the conditions in force on a → b. Traffic of a host to
// itself goes over a perfect loopback.
func (n *Network) link(a, b *Host) Link {
	if a == b {
		return Link{}
	}
	if n.nlinks.Load() > 0 {
		n.mu.RLock()
		l, ok := n.links[[2]int32{a.id, b.id}]
		n.mu.RUnlock()
		if ok {
			return l
		}
	}
	return *n.def.Load()
}

// Partition splits the network: hosts in different groups cannot talk.
// Packets between them are dropped, new dials fail (time out) and open
// streams stall, then fail once their retransmissions run out. Hosts listed
// in no group together form one more group; a host listed twice belongs to
// the last group naming it. Partition replaces any earlier partition;
// packets and segments already in flight are dropped on arrival if their
// endpoints are now separated.
func (n *Network) Partition(groups ...[]string) {
	for _, g := range groups {
		for _, a := range g {
			n.Host(a)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	gs := make([]int, len(n.byID))
	for i, g := range groups {
		for _, a := range g {
			gs[n.hosts[a].id] = i + 1
		}
	}
	n.groups.Store(&gs)
}

// Heal removes the partition.
func (n *Network) Heal() { n.groups.Store(nil) }

// Down crashes a host: everything to and from it is dropped, its open
// streams are reset at both ends, its listeners fail and its transports are
// detached (their ports become free; their sends fail with ErrHostDown).
// The software that ran on it should be shut down by the caller.
func (n *Network) Down(host string) {
	h := n.Host(host)
	h.down.Store(true)
	h.crash(fmt.Errorf("simnet: host %s crashed: %w", h.name, ErrReset),
		fmt.Errorf("simnet: host %s crashed: %w", h.name, ErrHostDown))
}

// Up lets traffic to and from a downed host through again. Bind new
// transports and listeners on it to restart its software.
func (n *Network) Up(host string) { n.Host(host).down.Store(false) }

// blocked reports whether traffic from a to b is cut by Down or Partition.
func (n *Network) blocked(a, b *Host) bool {
	if a.down.Load() || b.down.Load() {
		return true
	}
	gp := n.groups.Load()
	if gp == nil {
		return false
	}
	gs := *gp
	ga, gb := 0, 0
	if int(a.id) < len(gs) {
		ga = gs[a.id]
	}
	if int(b.id) < len(gs) {
		gb = gs[b.id]
	}
	return ga != gb
}

// Hosts returns the IP addresses of all hosts, in creation order.
func (n *Network) Hosts() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]string, len(n.byID))
	for i, h := range n.byID {
		out[i] = h.name
	}
	return out
}

// Traffic returns the traffic counters of a host (created if needed).
func (n *Network) Traffic(host string) Traffic { return n.Host(host).traffic.snapshot() }

// TotalTraffic returns the sum of the traffic counters of all hosts.
func (n *Network) TotalTraffic() Traffic {
	n.mu.RLock()
	hosts := append([]*Host(nil), n.byID...)
	n.mu.RUnlock()
	var t Traffic
	for _, h := range hosts {
		t.add(h.traffic.snapshot())
	}
	return t
}
