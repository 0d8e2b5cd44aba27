package simnet

import (
	"context"
	"flag"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var seedFlag = flag.Int64("simnet.seed", 0, "seed for simulated networks (0: derive from the clock)")

// newNet returns a network seeded from -simnet.seed or the clock, closed at
// the end of the test; the seed is logged when the test fails.
func newNet(t testing.TB, opts ...Option) *Network {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	n := New(seed, opts...)
	t.Cleanup(func() {
		n.Close()
		if t.Failed() {
			t.Logf("simnet seed %d (rerun with -simnet.seed=%d)", seed, seed)
		}
	})
	return n
}

// scaled is d, stretched under the race detector, whose overhead makes
// timing slack necessary.
func scaled(d time.Duration) time.Duration {
	if raceEnabled {
		return 3 * d
	}
	return d
}

// ctxFor returns a context bounded by d, cancelled when the test ends.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustTransport binds a transport or fails the test.
func mustTransport(t testing.TB, h *Host, port int) *Transport {
	t.Helper()
	tr, err := h.Transport(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	return tr
}

// recvPacket waits up to d for a packet.
func recvPacket(tr *Transport, d time.Duration) (*memberlist.Packet, bool) {
	select {
	case p := <-tr.PacketCh():
		return p, true
	case <-time.After(d):
		return nil, false
	}
}

// pair returns a connected pair of streams from a to b:port.
func pair(t testing.TB, a, b *Host, port int) (client, server net.Conn) {
	t.Helper()
	l, err := b.Listen(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	client, err = a.DialContext(ctxFor(t, 10*time.Second), net.JoinHostPort(b.Addr(), strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = r.c.Close() })
	// Bound every read and write of the test; tests may set their own.
	_ = client.SetDeadline(time.Now().Add(time.Minute))
	_ = r.c.SetDeadline(time.Now().Add(time.Minute))
	return client, r.c
}
