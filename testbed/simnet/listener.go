package simnet

import (
	"fmt"
	"net"
)

// Listener is a stream listener bound to a host's port. It is safe for
// concurrent use. Up to 256 established connections wait for Accept; when
// the queue is full, dials are refused.
type Listener struct {
	h    *Host
	port int
	ch   chan *Conn
	done chan struct{} // closed when detached

	// under h.mu:
	err error // why it was detached
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next connection. It fails once the listener is
// closed or its host went down.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
	}
	l.h.mu.Lock()
	err := l.err
	l.h.mu.Unlock()
	return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
}

// Close releases the port; connections waiting in the accept queue are
// reset. Established connections stay open. Close is idempotent.
func (l *Listener) Close() error {
	l.h.unbind(l.port, l, fmt.Errorf("simnet: listener closed: %w", net.ErrClosed))
	return nil
}

// Addr returns the listening address (*net.TCPAddr).
func (l *Listener) Addr() net.Addr { return &net.TCPAddr{IP: l.h.IP(), Port: l.port} }

func (l *Listener) enqueueLocked(c *Conn) bool {
	if l.err != nil {
		return false
	}
	select {
	case l.ch <- c:
		return true
	default:
		return false
	}
}

func (l *Listener) detachLocked(err error) []*Conn {
	if l.err != nil {
		return nil
	}
	l.err = err
	close(l.done)
	var orphans []*Conn
	for {
		select {
		case c := <-l.ch:
			orphans = append(orphans, c)
		default:
			return orphans
		}
	}
}
