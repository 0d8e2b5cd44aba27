package simnet

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// synRTO is the first retransmission timeout of a handshake, as Linux's.
const synRTO = time.Second

// dialState is one dial in progress; its handshake attempts race with the
// dialer giving up, and the first to finish wins.
type dialState struct {
	mu   sync.Mutex
	done bool
	ch   chan dialResult // capacity 1
}

type dialResult struct {
	c   *Conn
	err error
}

// finish marks the dial finished by the dialer; false means a result is
// already in ch.
func (d *dialState) finish() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return false
	}
	d.done = true
	return true
}

// resultLocked delivers the outcome of a handshake attempt.
func (d *dialState) resultLocked(c *Conn, err error) {
	d.done = true
	d.ch <- dialResult{c: c, err: err}
}

// dial performs the handshake from h to addr and returns the dialling end.
func (h *Host) dial(ctx context.Context, addr string, class int) (*Conn, error) {
	n := h.n
	if n.isClosed() {
		return nil, fmt.Errorf("simnet: dial %s: %w", addr, net.ErrClosed)
	}
	if h.down.Load() {
		return nil, fmt.Errorf("simnet: dial %s: %w", addr, ErrHostDown)
	}
	dst, port, err := n.lookup(addr)
	if err != nil {
		return nil, fmt.Errorf("simnet: dial: %w", err)
	}
	d := &dialState{ch: make(chan dialResult, 1)}
	rto := synRTO
	timer := time.NewTimer(rto)
	defer timer.Stop()
	result := func(r dialResult) (*Conn, error) {
		if r.err != nil {
			return nil, fmt.Errorf("simnet: dial %s: %w", addr, r.err)
		}
		h.traffic.streamsDialed.Add(1)
		return r.c, nil
	}
	for attempt := 0; ; attempt++ {
		h.sendSYN(d, dst, port, class)
		select {
		case r := <-d.ch:
			return result(r)
		case <-timer.C:
			if attempt < n.cfg.synRetries {
				rto *= 2
				timer.Reset(rto)
				continue
			}
			if d.finish() {
				return nil, fmt.Errorf("simnet: dial %s: %w", addr, ErrTimedOut)
			}
			return result(<-d.ch)
		case <-ctx.Done():
			if d.finish() {
				return nil, fmt.Errorf("simnet: dial %s: %w", addr, ctx.Err())
			}
			return result(<-d.ch)
		case <-n.done:
			if d.finish() {
				return nil, fmt.Errorf("simnet: dial %s: %w", addr, net.ErrClosed)
			}
			return result(<-d.ch)
		}
	}
}

// sendSYN starts one handshake attempt: the SYN travels to dst, the answer
// (SYN-ACK or reset) travels back, and on its arrival the connection is
// handed to both ends at once.
func (h *Host) sendSYN(d *dialState, dst *Host, port, class int) {
	n := h.n
	now := n.sched.now()
	fl, bl := n.link(h, dst), n.link(dst, h)
	h.mu.Lock()
	idx := h.nextIndexLocked(dst)
	h.mu.Unlock()
	r := newRNG(n.seed, h.key, dst.key, idx)
	lostFwd, lostBack := r.chance(fl.Loss), r.chance(bl.Loss)
	fwd, back := fl.jittered(&r), bl.jittered(&r)
	seed := r.next()
	if lostFwd || n.blocked(h, dst) {
		return
	}
	n.sched.at(now+fwd, func() {
		if n.blocked(h, dst) {
			return
		}
		dst.mu.Lock()
		_, listening := dst.tcp[port]
		dst.mu.Unlock()
		n.sched.after(back, func() {
			if lostBack || n.blocked(dst, h) {
				return
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.done {
				return
			}
			if !listening {
				d.resultLocked(nil, ErrRefused)
				return
			}
			c, err := h.establish(dst, port, class, seed)
			d.resultLocked(c, err)
		})
	})
}

// establish creates a connection from h to dst:port, registers it with both
// hosts and hands the accepting end to dst's listener.
func (h *Host) establish(dst *Host, port, class int, seed uint64) (*Conn, error) {
	h.mu.Lock()
	if h.down.Load() {
		h.mu.Unlock()
		return nil, ErrHostDown
	}
	c := newConn(h.n, class, seed, h, h.nextEphemeralLocked(), dst, port)
	h.conns[c] = struct{}{}
	h.mu.Unlock()

	dst.mu.Lock()
	a := dst.tcp[port]
	ok := a != nil && !dst.down.Load() && a.enqueueLocked(c.ends[1])
	if ok {
		dst.conns[c] = struct{}{}
	}
	dst.mu.Unlock()
	if !ok {
		c.abort(ErrRefused)
		return nil, ErrRefused
	}
	return c.ends[0], nil
}
