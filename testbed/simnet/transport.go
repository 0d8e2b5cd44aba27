package simnet

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// Transport is a memberlist.NodeAwareTransport bound to one host and port:
// packets on the port's UDP side, streams on its TCP side. It is safe for
// concurrent use. Incoming packets wait in a bounded queue (WithPacketQueue)
// until read from PacketCh; when it is full further packets are dropped.
type Transport struct {
	h        *Host
	port     int
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn

	// under h.mu:
	detached error // non-nil after Shutdown or Down
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Addr returns the transport's address.
func (t *Transport) Addr() *net.UDPAddr { return &net.UDPAddr{IP: t.h.IP(), Port: t.port} }

// FinalAdvertiseAddr returns the host's IP and the bound port, whatever was
// configured.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.h.IP(), t.port, nil
}

// WriteTo sends a packet to addr ("ip:port"). It never blocks; the packet
// arrives (or not) according to the link's conditions. It fails after
// Shutdown, when the host is down, or when addr names no host.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if err := t.err(); err != nil {
		return time.Time{}, fmt.Errorf("simnet: write to %s: %w", addr, err)
	}
	return t.h.sendPacket(t.port, b, addr)
}

// WriteToAddress is WriteTo with memberlist's Address.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// PacketCh returns the channel of received packets. It is never closed.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr, counted as gossip traffic.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if err := t.err(); err != nil {
		return nil, fmt.Errorf("simnet: dial %s: %w", addr, err)
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := t.h.dial(ctx, addr, classGossip)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialAddressTimeout is DialTimeout with memberlist's Address.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// StreamCh returns the channel of accepted streams. It is never closed.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown releases the port. Streams already accepted stay open; queued
// ones are reset. It is idempotent.
func (t *Transport) Shutdown() error {
	t.h.unbind(t.port, t, fmt.Errorf("simnet: transport shut down: %w", net.ErrClosed))
	return nil
}

func (t *Transport) err() error {
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	return t.detached
}

func (t *Transport) enqueueLocked(c *Conn) bool {
	if t.detached != nil {
		return false
	}
	select {
	case t.streamCh <- c:
		return true
	default:
		return false
	}
}

func (t *Transport) detachLocked(err error) []*Conn {
	if t.detached == nil {
		t.detached = err
	}
	var orphans []*Conn
	for {
		select {
		case c := <-t.streamCh:
			orphans = append(orphans, c.(*Conn))
		default:
			return orphans
		}
	}
}
