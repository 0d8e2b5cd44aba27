package simnet

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// errWriteShut is returned by Write after CloseWrite.
var errWriteShut = errors.New("simnet: write after CloseWrite")

// conn is the shared state of one stream connection: two flows (one per
// direction) under one mutex. ends[0] dialled, ends[1] accepted; flows[i]
// carries data written at ends[i] to ends[1-i].
type conn struct {
	n     *Network
	class int
	seed  uint64 // root of the connection's random decisions

	mu    sync.Mutex
	err   error // non-nil once reset or timed out
	ends  [2]*Conn
	flows [2]flow
	done  bool // deregistered from its hosts
}

// Conn is one end of a simulated stream connection. It implements net.Conn
// and, like *net.TCPConn, CloseWrite and CloseRead. It is safe for
// concurrent use; concurrent Reads (or Writes) are serialized.
//
// Written data is buffered (WithStreamBuffer); Write blocks while the buffer
// is full of unacknowledged data, until the deadline or Close. Close sends a
// FIN after the buffered data, so the peer reads everything and then io.EOF;
// data arriving at a closed end resets the connection, so the peer's later
// writes fail with ErrReset. Deadlines behave as for net.Conn: operations
// fail with an error wrapping os.ErrDeadlineExceeded.
type Conn struct {
	c             *conn
	side          int
	local, remote *net.TCPAddr

	rdMu, wrMu sync.Mutex
	readable   chan struct{} // capacity 1: something changed for Read
	writable   chan struct{} // capacity 1: something changed for Write
	rdl, wdl   deadline

	// under c.mu:
	closed bool
	wshut  bool
}

var _ net.Conn = (*Conn)(nil)

// newConn creates a connection from a (dialer) to b (acceptor).
func newConn(n *Network, class int, seed uint64, a *Host, aport int, b *Host, bport int) *conn {
	c := &conn{n: n, class: class, seed: seed}
	addrs := [2]*net.TCPAddr{{IP: a.IP(), Port: aport}, {IP: b.IP(), Port: bport}}
	hosts := [2]*Host{a, b}
	for i := range 2 {
		c.ends[i] = &Conn{
			c:        c,
			side:     i,
			local:    addrs[i],
			remote:   addrs[1-i],
			readable: make(chan struct{}, 1),
			writable: make(chan struct{}, 1),
			rdl:      newDeadline(),
			wdl:      newDeadline(),
		}
		c.flows[i] = flow{
			c:        c,
			dir:      i,
			src:      hosts[i],
			dst:      hosts[1-i],
			unacked:  make(map[uint64]*segment),
			ooo:      make(map[uint64]*segment),
			cwnd:     initialCwnd,
			ssthresh: float64(n.cfg.streamBuffer/mss + 1),
		}
	}
	return c
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// LocalAddr returns the local address (*net.TCPAddr).
func (e *Conn) LocalAddr() net.Addr { return e.local }

// RemoteAddr returns the remote address (*net.TCPAddr).
func (e *Conn) RemoteAddr() net.Addr { return e.remote }

func (e *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: e.local, Addr: e.remote, Err: err}
}

// Read reads data in order as it arrives. After the peer's FIN it returns
// io.EOF; after a reset, the data already received and then the error.
func (e *Conn) Read(b []byte) (int, error) {
	e.rdMu.Lock()
	defer e.rdMu.Unlock()
	c := e.c
	for {
		c.mu.Lock()
		if e.closed {
			c.mu.Unlock()
			return 0, e.opError("read", net.ErrClosed)
		}
		f := &c.flows[1-e.side]
		if f.rlen > 0 && len(b) > 0 {
			n := f.take(b)
			f.trySend() // the receive window opened
			c.mu.Unlock()
			return n, nil
		}
		switch {
		case f.eof || f.rclosed:
			c.mu.Unlock()
			return 0, io.EOF
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return 0, e.opError("read", err)
		case len(b) == 0:
			c.mu.Unlock()
			return 0, nil
		case e.rdl.expired():
			c.mu.Unlock()
			return 0, e.opError("read", os.ErrDeadlineExceeded)
		}
		c.mu.Unlock()
		select {
		case <-e.readable:
		case <-e.rdl.wait():
		}
	}
}

// Write queues b for transmission, blocking while the send buffer is full.
// It returns once all of b is queued, not when it is delivered.
func (e *Conn) Write(b []byte) (int, error) {
	e.wrMu.Lock()
	defer e.wrMu.Unlock()
	c := e.c
	n := 0
	for {
		c.mu.Lock()
		var err error
		switch {
		case e.closed:
			err = net.ErrClosed
		case c.err != nil:
			err = c.err
		case e.wshut:
			err = errWriteShut
		case e.wdl.expired():
			err = os.ErrDeadlineExceeded
		}
		if err != nil {
			c.mu.Unlock()
			return n, e.opError("write", err)
		}
		f := &c.flows[e.side]
		if space := c.n.cfg.streamBuffer - len(f.pend) - f.unackedBytes; space > 0 && n < len(b) {
			k := min(space, len(b)-n)
			f.pend = append(f.pend, b[n:n+k]...)
			n += k
			f.trySend()
		}
		if n == len(b) {
			c.mu.Unlock()
			return n, nil
		}
		c.mu.Unlock()
		select {
		case <-e.writable:
		case <-e.wdl.wait():
		}
	}
}

// Close closes the end: buffered data is still delivered, followed by a
// FIN. Blocked Reads and Writes on this end return errors. Closing twice
// fails.
func (e *Conn) Close() error {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.closed {
		return e.opError("close", net.ErrClosed)
	}
	e.closed = true
	in := &c.flows[1-e.side]
	in.rclosed = true
	in.rbuf, in.rlen = nil, 0
	e.shutWriteLocked()
	signal(e.readable)
	signal(e.writable)
	e.rdl.stop()
	e.wdl.stop()
	c.maybeDoneLocked()
	return nil
}

// CloseWrite sends a FIN after the buffered data: the peer reads io.EOF,
// while this end can still read.
func (e *Conn) CloseWrite() error {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.closed {
		return e.opError("close", net.ErrClosed)
	}
	e.shutWriteLocked()
	signal(e.writable)
	return nil
}

// CloseRead stops reading: buffered and later data is discarded and Read
// returns io.EOF.
func (e *Conn) CloseRead() error {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.closed {
		return e.opError("close", net.ErrClosed)
	}
	in := &c.flows[1-e.side]
	in.rclosed = true
	in.rbuf, in.rlen = nil, 0
	in.trySend()
	signal(e.readable)
	return nil
}

func (e *Conn) shutWriteLocked() {
	if e.wshut {
		return
	}
	e.wshut = true
	f := &e.c.flows[e.side]
	f.fin = true
	f.trySend()
}

// SetDeadline sets the read and write deadlines.
func (e *Conn) SetDeadline(t time.Time) error {
	e.rdl.set(t)
	e.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for current and future Reads.
func (e *Conn) SetReadDeadline(t time.Time) error {
	e.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the deadline for current and future Writes.
func (e *Conn) SetWriteDeadline(t time.Time) error {
	e.wdl.set(t)
	return nil
}

// take copies buffered data into b.
func (f *flow) take(b []byte) int {
	n := 0
	for n < len(b) && len(f.rbuf) > 0 {
		k := copy(b[n:], f.rbuf[0])
		n += k
		if k == len(f.rbuf[0]) {
			f.rbuf[0] = nil
			f.rbuf = f.rbuf[1:]
		} else {
			f.rbuf[0] = f.rbuf[0][k:]
		}
	}
	f.rlen -= n
	if len(f.rbuf) == 0 {
		f.rbuf = nil
	}
	return n
}

// abort resets the connection with err (wrapped as needed).
func (c *conn) abort(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abortLocked(err)
}

func (c *conn) abortLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	for i := range 2 {
		f := &c.flows[i]
		f.pend, f.unacked, f.ooo, f.unackedBytes = nil, nil, nil, 0
		signal(c.ends[i].readable)
		signal(c.ends[i].writable)
	}
	c.deregisterLocked()
}

// maybeDoneLocked deregisters the connection once both ends are closed and
// both FINs are acknowledged.
func (c *conn) maybeDoneLocked() {
	if c.ends[0].closed && c.ends[1].closed && c.flows[0].finAcked && c.flows[1].finAcked {
		c.deregisterLocked()
	}
}

func (c *conn) deregisterLocked() {
	if c.done {
		return
	}
	c.done = true
	for i := range 2 {
		h := c.flows[i].src
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
	}
}
