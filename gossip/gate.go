package gossip

import (
	"sync"

	"github.com/hashicorp/memberlist"
)

// gatedTransport holds back a transport's inbound packets until open is
// called. Serf v0.11.0 starts memberlist before it sets its key manager, and
// a packet arriving in between — a peer's gossip carrying a user event, then
// a ping whose reply piggybacks the rebroadcast — dereferences the nil key
// manager (serf/delegate.go:168). On a simulated network a restarted node
// gets such packets at once. Packets wait in the transport's own queue (and
// are dropped there if it fills, as a busy UDP socket drops them).
//
// Safe for concurrent use.
type gatedTransport struct {
	memberlist.Transport
	packets  chan *memberlist.Packet
	opened   chan struct{}
	done     chan struct{}
	openOnce sync.Once
	stopOnce sync.Once
}

func newGatedTransport(t memberlist.Transport) *gatedTransport {
	g := &gatedTransport{Transport: t, packets: make(chan *memberlist.Packet),
		opened: make(chan struct{}), done: make(chan struct{})}
	go g.forward()
	return g
}

func (g *gatedTransport) forward() {
	select {
	case <-g.opened:
	case <-g.done:
		return
	}
	in := g.Transport.PacketCh()
	for {
		select {
		case p, ok := <-in:
			if !ok {
				return
			}
			select {
			case g.packets <- p:
			case <-g.done:
				return
			}
		case <-g.done:
			return
		}
	}
}

// open lets packets through.
func (g *gatedTransport) open() { g.openOnce.Do(func() { close(g.opened) }) }

// PacketCh returns the gated packet channel.
func (g *gatedTransport) PacketCh() <-chan *memberlist.Packet { return g.packets }

// Shutdown stops forwarding and shuts the transport down.
func (g *gatedTransport) Shutdown() error {
	g.stopOnce.Do(func() { close(g.done) })
	return g.Transport.Shutdown()
}
