package simnet

import (
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestCloseLeavesNoGoroutines exercises packets, streams, a timed-out dial
// and a blocked Read, then checks that Close leaves no goroutine of the
// network behind.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := New(1)
	n.SetDefaultLink(Link{Delay: time.Millisecond, Loss: 0.1})
	a, b := n.Host("10.0.0.1"), n.Host("10.0.0.2")
	ta, _ := a.Transport(1)
	for i := 0; i < 100; i++ {
		_, _ = ta.WriteTo([]byte("x"), "10.0.0.2:1")
	}
	l, err := b.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := a.DialContext(ctxFor(t, 10*time.Second), "10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(time.Hour))
	if _, err := c.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	n.Partition([]string{"10.0.0.1"})
	if _, err := a.DialContext(ctxFor(t, 20*time.Millisecond), "10.0.0.2:80"); err == nil {
		t.Fatal("dial across a partition succeeded")
	}
	n.Close()
	<-done
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
}
