package simnet

import (
	"encoding/binary"
	"errors"
	"math"
	"net"
	"slices"
	"testing"
	"time"
)

func TestPacketDelay(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 40 * time.Millisecond})
	a := mustTransport(t, n.Host("10.0.0.1"), 7946)
	b := mustTransport(t, n.Host("10.0.0.2"), 7946)
	var delays []time.Duration
	for i := 0; i < 10; i++ {
		sent, err := a.WriteTo([]byte("ping"), "10.0.0.2:7946")
		if err != nil {
			t.Fatal(err)
		}
		p, ok := recvPacket(b, time.Second)
		if !ok {
			t.Fatal("packet not delivered")
		}
		if string(p.Buf) != "ping" {
			t.Fatalf("payload %q", p.Buf)
		}
		from, ok := p.From.(*net.UDPAddr)
		if !ok || from.String() != "10.0.0.1:7946" {
			t.Fatalf("From = %v", p.From)
		}
		delays = append(delays, p.Timestamp.Sub(sent))
	}
	slices.Sort(delays)
	if delays[0] < 40*time.Millisecond {
		t.Errorf("delivered early: %v", delays[0])
	}
	if med := delays[len(delays)/2]; med > 40*time.Millisecond+scaled(15*time.Millisecond) {
		t.Errorf("median delay %v, want ≈ 40ms", med)
	}
}

// within checks that count is within 5 standard deviations of a binomial
// with n trials and probability p.
func within(t *testing.T, what string, count, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(count)-mean) > 5*sd+1 {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, count, n, mean, 5*sd)
	}
}

// blast sends count numbered packets from a to b's address and returns how
// often each number arrived, waiting wait for the last ones.
func blast(t *testing.T, a, b *Transport, count int, wait time.Duration) []int {
	t.Helper()
	got := make([]int, count)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			p, ok := recvPacket(b, wait)
			if !ok {
				return
			}
			got[binary.BigEndian.Uint32(p.Buf)]++
		}
	}()
	addr := b.Addr().String()
	buf := make([]byte, 64)
	for i := 0; i < count; i++ {
		binary.BigEndian.PutUint32(buf, uint32(i))
		if _, err := a.WriteTo(buf, addr); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	return got
}

func TestPacketLossRate(t *testing.T) {
	n := newNet(t)
	const loss = 0.3
	n.SetDefaultLink(Link{Loss: loss})
	a := mustTransport(t, n.Host("10.0.0.1"), 1)
	b := mustTransport(t, n.Host("10.0.0.2"), 1)
	const count = 4000
	got := blast(t, a, b, count, 100*time.Millisecond)
	recv := 0
	for _, c := range got {
		recv += c
	}
	within(t, "delivered", recv, count, 1-loss)
	tr := n.Traffic("10.0.0.1")
	if tr.PacketsSent != count || tr.PacketsLost != int64(count-recv) {
		t.Errorf("traffic %+v, want %d sent, %d lost", tr, count, count-recv)
	}
}

func TestPacketDuplicate(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Duplicate: 0.2, Delay: time.Millisecond})
	a := mustTransport(t, n.Host("10.0.0.1"), 1)
	b := mustTransport(t, n.Host("10.0.0.2"), 1)
	const count = 4000
	got := blast(t, a, b, count, 200*time.Millisecond)
	dups := 0
	for i, c := range got {
		switch c {
		case 1:
		case 2:
			dups++
		default:
			t.Fatalf("packet %d arrived %d times", i, c)
		}
	}
	within(t, "duplicated", dups, count, 0.2)
}

func TestPacketJitterReorders(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 30 * time.Millisecond, Jitter: 20 * time.Millisecond})
	a := mustTransport(t, n.Host("10.0.0.1"), 1)
	b := mustTransport(t, n.Host("10.0.0.2"), 1)
	start := time.Now()
	buf := make([]byte, 4)
	const count = 200
	for i := 0; i < count; i++ {
		binary.BigEndian.PutUint32(buf, uint32(i))
		if _, err := a.WriteTo(buf, "10.0.0.2:1"); err != nil {
			t.Fatal(err)
		}
	}
	inversions, last := 0, -1
	for i := 0; i < count; i++ {
		p, ok := recvPacket(b, time.Second)
		if !ok {
			t.Fatalf("only %d packets", i)
		}
		if d := p.Timestamp.Sub(start); d < 10*time.Millisecond {
			t.Errorf("packet after %v, before delay − jitter", d)
		}
		k := int(binary.BigEndian.Uint32(p.Buf))
		if k < last {
			inversions++
		}
		last = k
	}
	if inversions == 0 {
		t.Error("jitter did not reorder any packet")
	}
	if d := time.Since(start); d > 50*time.Millisecond+scaled(100*time.Millisecond) {
		t.Errorf("last packet after %v, want ≤ 50ms + slack", d)
	}
}

func TestPacketBandwidthQueues(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Bandwidth: 100_000})
	a := mustTransport(t, n.Host("10.0.0.1"), 1)
	b := mustTransport(t, n.Host("10.0.0.2"), 1)
	start := time.Now()
	for i := 0; i < 20; i++ {
		if _, err := a.WriteTo(make([]byte, 1000), "10.0.0.2:1"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		if _, ok := recvPacket(b, 2*time.Second); !ok {
			t.Fatalf("packet %d not delivered: bandwidth must queue, not drop", i)
		}
	}
	// 20 000 bytes at 100 000 B/s.
	if d := time.Since(start); d < 190*time.Millisecond || d > 200*time.Millisecond+scaled(60*time.Millisecond) {
		t.Errorf("20 kB at 100 kB/s took %v, want ≈ 200ms", d)
	}
}

func TestPacketPartitionAndHeal(t *testing.T) {
	n := newNet(t)
	a := mustTransport(t, n.Host("10.0.0.1"), 1)
	b := mustTransport(t, n.Host("10.0.0.2"), 1)
	c := mustTransport(t, n.Host("10.0.0.3"), 1)
	n.Partition([]string{"10.0.0.1"}, []string{"10.0.0.2"})
	for _, to := range []string{"10.0.0.2:1", "10.0.0.3:1"} {
		if _, err := a.WriteTo([]byte("x"), to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.WriteTo([]byte("x"), "10.0.0.3:1"); err != nil {
		t.Fatal(err)
	}
	if p, ok := recvPacket(b, 50*time.Millisecond); ok {
		t.Fatalf("packet crossed the partition: %v", p.From)
	}
	if p, ok := recvPacket(c, 50*time.Millisecond); ok {
		t.Fatalf("packet crossed the partition: %v", p.From)
	}
	if got := n.Traffic("10.0.0.1").PacketsLost; got != 2 {
		t.Errorf("PacketsLost = %d, want 2", got)
	}
	// Hosts not listed form one group together.
	n.Partition([]string{"10.0.0.1"})
	if _, err := b.WriteTo([]byte("y"), "10.0.0.3:1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := recvPacket(c, time.Second); !ok {
		t.Fatal("unlisted hosts cannot talk")
	}
	n.Heal()
	if _, err := a.WriteTo([]byte("z"), "10.0.0.2:1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := recvPacket(b, time.Second); !ok {
		t.Fatal("no delivery after Heal")
	}
}

func TestPacketPartitionDropsInFlight(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 50 * time.Millisecond})
	a := mustTransport(t, n.Host("10.0.0.1"), 1)
	b := mustTransport(t, n.Host("10.0.0.2"), 1)
	if _, err := a.WriteTo([]byte("x"), "10.0.0.2:1"); err != nil {
		t.Fatal(err)
	}
	n.Partition([]string{"10.0.0.1"})
	if _, ok := recvPacket(b, 150*time.Millisecond); ok {
		t.Fatal("packet in flight crossed a partition made after it was sent")
	}
}

func TestPacketDownAndUp(t *testing.T) {
	n := newNet(t)
	a := mustTransport(t, n.Host("10.0.0.1"), 7946)
	b := mustTransport(t, n.Host("10.0.0.2"), 7946)
	n.Down("10.0.0.2")
	if _, err := a.WriteTo([]byte("x"), "10.0.0.2:7946"); err != nil {
		t.Fatal(err)
	}
	if _, ok := recvPacket(b, 50*time.Millisecond); ok {
		t.Fatal("downed host received a packet")
	}
	if _, err := b.WriteTo([]byte("x"), "10.0.0.1:7946"); !errors.Is(err, ErrHostDown) {
		t.Fatalf("send from downed host: %v, want ErrHostDown", err)
	}
	if _, err := n.Host("10.0.0.2").Transport(7946); !errors.Is(err, ErrHostDown) {
		t.Fatalf("bind on downed host: %v, want ErrHostDown", err)
	}
	n.Up("10.0.0.2")
	if _, err := b.WriteTo([]byte("x"), "10.0.0.1:7946"); !errors.Is(err, ErrHostDown) {
		t.Fatalf("old transport after Up: %v, want ErrHostDown", err)
	}
	b2 := mustTransport(t, n.Host("10.0.0.2"), 7946) // the crash freed the port
	if _, err := a.WriteTo([]byte("y"), "10.0.0.2:7946"); err != nil {
		t.Fatal(err)
	}
	if p, ok := recvPacket(b2, time.Second); !ok || string(p.Buf) != "y" {
		t.Fatal("restarted host does not receive")
	}
	if err := b.Shutdown(); err != nil { // must not unbind b2
		t.Fatal(err)
	}
	if _, err := a.WriteTo([]byte("z"), "10.0.0.2:7946"); err != nil {
		t.Fatal(err)
	}
	if _, ok := recvPacket(b2, time.Second); !ok {
		t.Fatal("old transport's Shutdown unbound the new one")
	}
}

func TestPacketErrors(t *testing.T) {
	n := newNet(t)
	h := n.Host("10.0.0.1")
	a := mustTransport(t, h, 7946)
	if _, err := h.Transport(7946); !errors.Is(err, ErrPortInUse) {
		t.Errorf("double bind: %v", err)
	}
	if _, err := h.Listen(7946); !errors.Is(err, ErrPortInUse) {
		t.Errorf("listen on transport port: %v", err)
	}
	if _, err := a.WriteTo([]byte("x"), "10.9.9.9:1"); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("unknown host: %v", err)
	}
	if _, err := a.WriteTo([]byte("x"), "nonsense"); err == nil {
		t.Error("bad address accepted")
	}
	if ip, port, err := a.FinalAdvertiseAddr("", 0); err != nil || ip.String() != "10.0.0.1" || port != 7946 {
		t.Errorf("FinalAdvertiseAddr = %v %d %v", ip, port, err)
	}
	auto := mustTransport(t, h, 0)
	if auto.Addr().Port == 0 {
		t.Error("port 0 not assigned")
	}
	if n.Host("10.0.0.1") != h || n.Host("::ffff:10.0.0.1") != h {
		t.Error("host identity depends on spelling")
	}
}

// deliveredSet sends count packets over a lossy, jittery, duplicating link
// and returns the numbers delivered and how many times.
func deliveredSet(t *testing.T, seed int64) []int {
	n := New(seed)
	defer n.Close()
	n.SetDefaultLink(Link{Loss: 0.5, Duplicate: 0.3})
	a, _ := n.Host("10.0.0.1").Transport(1)
	b, _ := n.Host("10.0.0.2").Transport(1)
	return blast(t, a, b, 500, 50*time.Millisecond)
}

func TestPacketDecisionsAreSeeded(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	x, y := deliveredSet(t, seed), deliveredSet(t, seed)
	if !slices.Equal(x, y) {
		t.Fatalf("seed %d: same seed, different decisions", seed)
	}
	if z := deliveredSet(t, seed+1); slices.Equal(x, z) {
		t.Fatalf("seed %d: different seeds, same decisions", seed)
	}
}

func TestNetworkClose(t *testing.T) {
	n := New(1)
	a, _ := n.Host("10.0.0.1").Transport(1)
	l, _ := n.Host("10.0.0.2").Listen(80)
	n.SetDefaultLink(Link{Delay: time.Hour})
	if _, err := a.WriteTo([]byte("x"), "10.0.0.2:1"); err != nil {
		t.Fatal(err)
	}
	n.Close()
	n.Close()
	if _, err := a.WriteTo([]byte("x"), "10.0.0.2:1"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

func BenchmarkPacket(b *testing.B) {
	n := New(1)
	defer n.Close()
	n.SetDefaultLink(Link{Delay: time.Millisecond, Jitter: 500 * time.Microsecond, Loss: 0.01})
	src, _ := n.Host("10.0.0.1").Transport(1)
	dst, _ := n.Host("10.0.0.2").Transport(1)
	go func() {
		for range dst.PacketCh() {
		}
	}()
	buf := make([]byte, 512)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := src.WriteTo(buf, "10.0.0.2:1"); err != nil {
			b.Fatal(err)
		}
	}
}
