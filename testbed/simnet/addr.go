package simnet

import (
	"context"
	"net"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// AddrNetwork adapts a Host to callers that name ports by "HOST:PORT"
// address — the shape of node.Network — so a node runs on the simulated
// network unchanged. Only the port of a bind address is used (the host is
// the Host's own). Safe for concurrent use, as Host is.
type AddrNetwork struct{ Host *Host }

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// GossipTransport returns the Host's memberlist transport on addr's port.
func (a AddrNetwork) GossipTransport(addr string) (memberlist.Transport, error) {
	return a.Host.Transport(portOf(addr))
}

// Listen listens for streams on addr's port.
func (a AddrNetwork) Listen(addr string) (net.Listener, error) { return a.Host.Listen(portOf(addr)) }

// Dial opens a stream to addr.
func (a AddrNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return a.Host.DialContext(ctx, addr)
}
