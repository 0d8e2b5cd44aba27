package simnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

func TestStreamEchoDelayed(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 25 * time.Millisecond})
	a, b := n.Host("10.0.0.1"), n.Host("10.0.0.2")
	l, err := b.Listen(7000)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	start := time.Now()
	c, err := a.DialContext(ctxFor(t, 5*time.Second), "10.0.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := time.Since(start); d < 50*time.Millisecond || d > 50*time.Millisecond+scaled(30*time.Millisecond) {
		t.Errorf("dial took %v, want one round trip ≈ 50ms", d)
	}
	if got := c.RemoteAddr().String(); got != "10.0.0.2:7000" {
		t.Errorf("RemoteAddr %s", got)
	}
	for i := 0; i < 3; i++ {
		start = time.Now()
		msg := []byte("hello, simulated world")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo %q", got)
		}
		if d := time.Since(start); d < 50*time.Millisecond || d > 50*time.Millisecond+scaled(30*time.Millisecond) {
			t.Errorf("echo took %v, want ≈ 50ms", d)
		}
	}
	tr := n.Traffic("10.0.0.1")
	if tr.StreamBytesSent != 66 || tr.StreamBytesRecv != 66 || tr.StreamsDialed != 1 || tr.GossipStreamBytesSent != 0 {
		t.Errorf("traffic %+v", tr)
	}
}

// transfer sends size random bytes from a to b over a fresh connection and
// checks they arrive intact and in order; it returns the time taken until
// the receiver has read EOF.
func transfer(t *testing.T, n *Network, a, b *Host, port, size int) time.Duration {
	t.Helper()
	client, server := pair(t, a, b, port)
	data := make([]byte, size)
	rnd := rand.New(rand.NewPCG(uint64(size), uint64(port)))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := client.Write(data)
		if err == nil {
			err = client.Close()
		}
		errc <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, server)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", got, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got != int64(size) || !bytes.Equal(h.Sum(nil), sha256.New().Sum(nil)) && sha256.Sum256(data) != [32]byte(h.Sum(nil)) {
		t.Fatalf("received %d bytes, want %d intact", got, size)
	}
	return elapsed
}

func TestStreamBandwidth(t *testing.T) {
	n := newNet(t)
	const bw = 1 << 20
	n.SetDefaultLink(Link{Delay: 10 * time.Millisecond, Bandwidth: bw})
	size := 2 << 20
	if testing.Short() {
		size = 1 << 20
	}
	d := transfer(t, n, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80, size)
	want := time.Duration(float64(size) / bw * float64(time.Second))
	t.Logf("%d bytes at %d B/s: %v (ideal %v)", size, bw, d, want)
	if d < want || d > want*13/10+scaled(50*time.Millisecond) {
		t.Errorf("took %v, want ≈ %v", d, want)
	}
}

func TestStreamBandwidthSharedUplink(t *testing.T) {
	n := newNet(t)
	const bw = 1 << 20
	n.SetDefaultLink(Link{Delay: 5 * time.Millisecond, Bandwidth: bw})
	a := n.Host("10.0.0.1")
	size := 512 << 10
	var wg sync.WaitGroup
	start := time.Now()
	for i, to := range []string{"10.0.0.2", "10.0.0.3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			transfer(t, n, a, n.Host(to), 80+i, size)
		}()
	}
	// Packets sent meanwhile queue behind at most a few segments.
	time.Sleep(100 * time.Millisecond)
	pa := mustTransport(t, a, 1)
	pb := mustTransport(t, n.Host("10.0.0.4"), 1)
	sent, err := pa.WriteTo([]byte("gossip"), "10.0.0.4:1")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := recvPacket(pb, 2*time.Second)
	if !ok {
		t.Fatal("packet lost")
	}
	if d := p.Timestamp.Sub(sent); d > scaled(40*time.Millisecond) {
		t.Errorf("packet waited %v behind stream data", d)
	}
	wg.Wait()
	want := time.Duration(float64(2*size) / bw * float64(time.Second))
	if d := time.Since(start); d < want || d > want*13/10+scaled(50*time.Millisecond) {
		t.Errorf("two streams sharing the uplink took %v, want ≈ %v", d, want)
	}
}

func TestStreamLossySlowerButComplete(t *testing.T) {
	n := newNet(t, WithStreamRetries(12))
	a, b := n.Host("10.0.0.1"), n.Host("10.0.0.2")
	size := 1 << 20
	if testing.Short() {
		size = 512 << 10
	}
	n.SetDefaultLink(Link{Delay: 10 * time.Millisecond})
	clean := transfer(t, n, a, b, 80, size)
	n.SetDefaultLink(Link{Delay: 10 * time.Millisecond, Loss: 0.05, Jitter: 2 * time.Millisecond})
	lossy := transfer(t, n, a, b, 81, size)
	// Mathis et al.: TCP throughput ≈ MSS/RTT × 1.22/√p.
	mathis := time.Duration(float64(size) / (mss / 0.020 * 1.22 / math.Sqrt(0.05)) * float64(time.Second))
	t.Logf("%d bytes, 20ms RTT: clean %v, 5%% loss %v (Mathis estimate %v), %d retransmissions",
		size, clean, lossy, mathis, n.Traffic("10.0.0.1").SegmentsRetransmitted)
	if lossy < 2*clean {
		t.Errorf("5%% loss took %v, not much slower than clean %v", lossy, clean)
	}
	if n.Traffic("10.0.0.1").SegmentsRetransmitted == 0 {
		t.Error("no retransmissions")
	}
}

func TestStreamDialFailures(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 5 * time.Millisecond})
	a, b := n.Host("10.0.0.1"), n.Host("10.0.0.2")
	if _, err := a.DialContext(ctxFor(t, time.Second), "10.0.0.2:80"); !errors.Is(err, ErrRefused) {
		t.Errorf("dial to closed port: %v, want ErrRefused", err)
	}
	l, err := b.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n.Partition([]string{"10.0.0.1"})
	start := time.Now()
	_, err = a.DialContext(ctxFor(t, 200*time.Millisecond), "10.0.0.2:80")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial across partition: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > scaled(400*time.Millisecond) {
		t.Errorf("dial took %v to fail", d)
	}
	n.Heal()
	n.Down("10.0.0.2")
	if _, err := a.DialContext(ctxFor(t, 100*time.Millisecond), "10.0.0.2:80"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial to downed host: %v, want deadline exceeded", err)
	}
	if _, err := b.DialContext(ctxFor(t, 100*time.Millisecond), "10.0.0.1:80"); !errors.Is(err, ErrHostDown) {
		t.Errorf("dial from downed host: %v, want ErrHostDown", err)
	}
	if _, err := a.DialContext(ctxFor(t, 100*time.Millisecond), "10.7.7.7:80"); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("dial to unknown host: %v", err)
	}
}

func TestStreamDialRetriesLostSYN(t *testing.T) {
	n := newNet(t)
	a, b := n.Host("10.0.0.1"), n.Host("10.0.0.2")
	l, err := b.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n.SetDefaultLink(Link{Loss: 1})
	go func() {
		time.Sleep(300 * time.Millisecond)
		n.SetDefaultLink(Link{})
	}()
	start := time.Now()
	c, err := a.DialContext(ctxFor(t, 5*time.Second), "10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if d := time.Since(start); d < time.Second || d > time.Second+scaled(200*time.Millisecond) {
		t.Errorf("dial with the first SYN lost took %v, want ≈ 1s", d)
	}
}

func TestStreamPartitionStallsThenFails(t *testing.T) {
	n := newNet(t, WithMinRTO(20*time.Millisecond), WithStreamRetries(3))
	n.SetDefaultLink(Link{Delay: 2 * time.Millisecond})
	client, server := pair(t, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80)
	n.Partition([]string{"10.0.0.1"})
	if _, err := client.Write([]byte("into the void")); err != nil {
		t.Fatal(err) // buffered, like TCP
	}
	// 20ms × (1+2+4+8) = 300ms until the sender gives up.
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := server.Read(make([]byte, 10))
	if !errors.Is(err, ErrTimedOut) {
		t.Fatalf("server read: %v, want ErrTimedOut", err)
	}
	if _, err := client.Write([]byte("more")); !errors.Is(err, ErrTimedOut) {
		t.Fatalf("client write after timeout: %v", err)
	}
}

func TestStreamShortPartitionHeals(t *testing.T) {
	n := newNet(t, WithMinRTO(20*time.Millisecond))
	n.SetDefaultLink(Link{Delay: 2 * time.Millisecond})
	client, server := pair(t, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80)
	n.Partition([]string{"10.0.0.1"})
	msg := bytes.Repeat([]byte("0123456789"), 5000)
	go func() { _, _ = client.Write(msg); _ = client.Close() }()
	time.Sleep(100 * time.Millisecond)
	n.Heal()
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after heal: %d bytes, %v", len(got), err)
	}
}

func TestStreamDeadlines(t *testing.T) {
	n := newNet(t, WithStreamBuffer(16<<10))
	client, server := pair(t, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80)

	_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := server.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > scaled(150*time.Millisecond) {
		t.Errorf("read deadline fired after %v", d)
	}
	// A deadline moved into the future lets a blocked Read go on.
	_ = server.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	go func() {
		time.Sleep(10 * time.Millisecond)
		_ = server.SetReadDeadline(time.Time{})
		time.Sleep(40 * time.Millisecond)
		_, _ = client.Write([]byte("late"))
	}()
	if _, err := server.Read(make([]byte, 4)); err != nil {
		t.Fatalf("read after clearing the deadline: %v", err)
	}

	// The server does not read: the windows fill, Write blocks, then times out.
	_ = client.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	written, err := client.Write(make([]byte, 1<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past deadline: %v", err)
	}
	if written < 16<<10 || written >= 1<<20 {
		t.Errorf("wrote %d bytes before the deadline", written)
	}
	// A deadline in the past fails at once.
	_ = server.SetDeadline(time.Now().Add(-time.Second))
	if _, err := server.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write with past deadline: %v", err)
	}
}

func TestStreamCloseGivesEOF(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 5 * time.Millisecond})
	client, server := pair(t, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80)
	if _, err := client.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after EOF: %v", err)
	}
	// Writing to the closed end resets the connection.
	_, _ = server.Write([]byte("anyone?"))
	deadline := time.Now().Add(scaled(time.Second))
	for {
		_, err := server.Write([]byte("x"))
		if errors.Is(err, ErrReset) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes to a closed peer never failed: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStreamHalfClose(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 2 * time.Millisecond})
	client, server := pair(t, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80)
	if _, err := client.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := client.(*Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("x")); err == nil {
		t.Error("write after CloseWrite succeeded")
	}
	req, err := io.ReadAll(server)
	if err != nil || string(req) != "request" {
		t.Fatalf("server read %q, %v", req, err)
	}
	if _, err := server.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	resp, err := io.ReadAll(client)
	if err != nil || string(resp) != "response" {
		t.Fatalf("client read %q, %v", resp, err)
	}
}

func TestStreamDownResets(t *testing.T) {
	n := newNet(t)
	client, server := pair(t, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80)
	errc := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	n.Down("10.0.0.1")
	select {
	case err := <-errc:
		if !errors.Is(err, ErrReset) {
			t.Errorf("peer's read: %v, want ErrReset", err)
		}
	case <-time.After(time.Second):
		t.Fatal("blocked read not woken by Down")
	}
	if _, err := client.Write([]byte("x")); !errors.Is(err, ErrReset) {
		t.Errorf("crashed host's write: %v, want ErrReset", err)
	}
}

func TestStreamListenerClose(t *testing.T) {
	n := newNet(t)
	l, err := n.Host("10.0.0.2").Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Host("10.0.0.2").Listen(80); !errors.Is(err, ErrPortInUse) {
		t.Errorf("second Listen: %v", err)
	}
	c, err := n.Host("10.0.0.1").DialContext(ctxFor(t, time.Second), "10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errc <- err
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrReset) {
		t.Errorf("unaccepted connection: %v, want ErrReset", err)
	}
	l2, err := n.Host("10.0.0.2").Listen(80)
	if err != nil {
		t.Fatalf("port not freed: %v", err)
	}
	l2.Close()
}

func TestStreamConcurrentBothWays(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: time.Millisecond, Jitter: time.Millisecond, Loss: 0.02})
	client, server := pair(t, n.Host("10.0.0.1"), n.Host("10.0.0.2"), 80)
	const size = 300 << 10
	var wg sync.WaitGroup
	for _, c := range []net.Conn{client, server} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := bytes.Repeat([]byte{7}, size)
			if _, err := c.Write(buf); err != nil {
				t.Error(err)
			}
			_ = c.(*Conn).CloseWrite()
		}()
		go func() {
			defer wg.Done()
			got, err := io.ReadAll(c)
			if err != nil || len(got) != size {
				t.Errorf("read %d bytes, %v", len(got), err)
			}
		}()
	}
	wg.Wait()
}
