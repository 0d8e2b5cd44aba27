package simnet

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Host is one machine of a Network, named by its IP address. It is safe for
// concurrent use.
type Host struct {
	n    *Network
	id   int32  // index in Network.byID
	name string // canonical IP string
	ip   net.IP
	key  uint64 // fnv64(name): the host's identity in random decisions

	down    atomic.Bool
	traffic counters

	mu         sync.Mutex
	udp        map[int]*Transport
	tcp        map[int]acceptor
	conns      map[*conn]struct{}
	ephemeral  int
	uplinkFree time.Duration // when the uplink queue drains
	linkIdx    []uint64      // per destination host id: decisions drawn so far
}

// acceptor is a bound stream port: a Listener or a Transport.
type acceptor interface {
	// enqueueLocked hands an accepted connection over without blocking;
	// false means the port is closed or its queue is full. Called with the
	// host's mu held.
	enqueueLocked(c *Conn) bool
	// detachLocked marks the port closed with err; called with the host's
	// mu held. It returns queued connections that nobody will accept.
	detachLocked(err error) []*Conn
}

func newHost(n *Network, id int32, name string, ip net.IP) *Host {
	return &Host{
		n:         n,
		id:        id,
		name:      name,
		ip:        ip,
		key:       fnv64(name),
		udp:       make(map[int]*Transport),
		tcp:       make(map[int]acceptor),
		conns:     make(map[*conn]struct{}),
		ephemeral: 32768,
	}
}

// Addr returns the host's IP address as a string.
func (h *Host) Addr() string { return h.name }

// IP returns the host's IP address.
func (h *Host) IP() net.IP { return append(net.IP(nil), h.ip...) }

// Transport binds a memberlist transport (packets and streams) to port on
// the host; port 0 picks a free port. Use it as memberlist.Config.Transport
// or serf.Config.MemberlistConfig.Transport; set the memberlist BindPort and
// AdvertisePort to the same port, or read it from FinalAdvertiseAddr. The
// port stays bound until Shutdown or until the host goes Down.
func (h *Host) Transport(port int) (*Transport, error) {
	if h.n.isClosed() {
		return nil, fmt.Errorf("simnet: bind %s:%d: %w", h.name, port, net.ErrClosed)
	}
	if h.down.Load() {
		return nil, fmt.Errorf("simnet: bind %s:%d: %w", h.name, port, ErrHostDown)
	}
	t := &Transport{
		h:        h,
		packetCh: make(chan *memberlist.Packet, h.n.cfg.packetQueue),
		streamCh: make(chan net.Conn, h.n.cfg.acceptQueue),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := h.bindLocked(port, true)
	if err != nil {
		return nil, err
	}
	t.port = p
	h.udp[p] = t
	h.tcp[p] = t
	return t, nil
}

// Listen binds a stream listener to port on the host (0 picks a free
// port). The concrete type of accepted connections is *Conn.
func (h *Host) Listen(port int) (net.Listener, error) {
	if h.n.isClosed() {
		return nil, fmt.Errorf("simnet: listen %s:%d: %w", h.name, port, net.ErrClosed)
	}
	if h.down.Load() {
		return nil, fmt.Errorf("simnet: listen %s:%d: %w", h.name, port, ErrHostDown)
	}
	l := &Listener{
		h:    h,
		ch:   make(chan *Conn, h.n.cfg.acceptQueue),
		done: make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := h.bindLocked(port, false)
	if err != nil {
		return nil, err
	}
	l.port = p
	h.tcp[p] = l
	return l, nil
}

// DialContext opens a stream connection to addr ("10.1.0.7:7000"). The
// handshake takes one round trip; a lost or cut handshake is retried after
// 1 s, 2 s, 4 s … like TCP's SYN, so dialling across a partition or to a
// downed host fails when ctx ends (or after the retries run out). Nothing
// listening on the port fails the dial with ErrRefused after a round trip.
// The concrete type of the returned connection is *Conn.
func (h *Host) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	c, err := h.dial(ctx, addr, classStream)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// bindLocked reserves port (or a free one if 0) for a transport (udp too)
// or a listener.
func (h *Host) bindLocked(port int, udp bool) (int, error) {
	if port < 0 || port > 65535 {
		return 0, fmt.Errorf("simnet: bind %s:%d: bad port", h.name, port)
	}
	free := func(p int) bool {
		_, t := h.tcp[p]
		_, u := h.udp[p]
		return !t && !(udp && u)
	}
	if port == 0 {
		for p := 49152; p <= 65535; p++ {
			if free(p) {
				return p, nil
			}
		}
		return 0, fmt.Errorf("simnet: bind %s:0: no free port: %w", h.name, ErrPortInUse)
	}
	if !free(port) {
		return 0, fmt.Errorf("simnet: bind %s:%d: %w", h.name, port, ErrPortInUse)
	}
	return port, nil
}

// nextIndexLocked returns the index of the next random decision on the link
// from h to dst.
func (h *Host) nextIndexLocked(dst *Host) uint64 {
	if int(dst.id) >= len(h.linkIdx) {
		grown := make([]uint64, int(dst.id)+1+len(h.linkIdx)/2)
		copy(grown, h.linkIdx)
		h.linkIdx = grown
	}
	i := h.linkIdx[dst.id]
	h.linkIdx[dst.id]++
	return i
}

// reserveLocked queues size bytes on the uplink at now; it returns when the
// last byte leaves.
func (h *Host) reserveLocked(now time.Duration, l *Link, size int) time.Duration {
	if l.Bandwidth <= 0 {
		return now
	}
	start := max(now, h.uplinkFree)
	h.uplinkFree = start + l.serialization(size)
	return h.uplinkFree
}

// backlog is how long traffic queued now would wait for the uplink.
func (h *Host) backlog(now time.Duration) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return max(0, h.uplinkFree-now)
}

func (h *Host) nextEphemeralLocked() int {
	p := h.ephemeral
	h.ephemeral++
	if h.ephemeral > 60999 {
		h.ephemeral = 32768
	}
	return p
}

// crash detaches every port with portErr and resets every connection of the
// host with err.
func (h *Host) crash(err, portErr error) {
	h.mu.Lock()
	var orphans []*Conn
	for p, a := range h.tcp {
		orphans = append(orphans, a.detachLocked(portErr)...)
		delete(h.tcp, p)
	}
	for p, t := range h.udp {
		t.detachLocked(portErr)
		delete(h.udp, p)
	}
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range orphans {
		c.c.abort(err)
	}
	for _, c := range conns {
		c.abort(err)
	}
}

// unbind releases port if a still holds it, and detaches a.
func (h *Host) unbind(port int, a acceptor, err error) {
	h.mu.Lock()
	if h.tcp[port] == a {
		delete(h.tcp, port)
	}
	if t, ok := a.(*Transport); ok && h.udp[port] == t {
		delete(h.udp, port)
	}
	orphans := a.detachLocked(err)
	h.mu.Unlock()
	for _, c := range orphans {
		c.c.abort(fmt.Errorf("simnet: listener closed: %w", ErrReset))
	}
}
