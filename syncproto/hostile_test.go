package syncproto

import (
	"context"
	"errors"
	"io"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
)

// hostileTarget is a node served over loopback TCP with short timeouts.
func hostileTarget(t *testing.T, rng *rand.Rand) (*gen, *node, string) {
	g := newGen(t, "test")
	g.tree("/", 2, 30)
	r := makeReplica(t, g.out, nil)
	lg, tl := newTestLogger(t)
	lim := Limits{IOTimeout: 300 * time.Millisecond, SessionTimeout: 5 * time.Second}
	svc := NewService(Config{Replica: r, Node: "target", Rand: rng, Limits: lim, Logger: lg})
	t.Cleanup(func() { svc.Close() })
	addr := listen(t, svc.Server)
	return g, &node{name: "target", r: r, svc: svc, log: tl}, addr
}

// raw opens a connection and, if hello is set, says hello properly.
func raw(t *testing.T, addr string, g *gen, greet bool) (net.Conn, *wire) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := newWire(c, Limits{IOTimeout: 5 * time.Second})
	if greet {
		h := hello{Purpose: purposeSync, FSName: "test", FSID: g.root.Hash(), Node: "evil"}
		w.writePreamble()
		w.writeFrame(tHello, h.encode())
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := readWelcome(w); err != nil {
			t.Fatal(err)
		}
	}
	return c, w
}

// waitClosed reads until the server closes the connection; it returns the
// error frame's error, if the server sent one, and how long it took.
func waitClosed(t *testing.T, w *wire, preamble bool) (error, time.Duration) {
	start := time.Now()
	w.ioTimeout = 5 * time.Second
	var perr error
	if preamble {
		if _, err := w.readPreamble(); err != nil {
			return nil, time.Since(start)
		}
	}
	for {
		ft, p, err := w.readFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("server did not close the connection")
			}
			return perr, time.Since(start)
		}
		if ft == tError {
			perr, _ = decodeError(p)
		}
	}
}

func TestHostileClients(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g, target, addr := hostileTarget(t, rng)
	before := target.r.Status()
	forged := func() []byte {
		e := g.fork().write("/d000/f0001", []byte("evil"))
		b := append([]byte(nil), e.Encoded()...)
		b[len(b)-5] ^= 1
		return b
	}()
	cases := []struct {
		name  string
		hello bool
		send  func(w *wire)
		want  error // the error frame's, if any
	}{
		{"garbage", false, func(w *wire) {
			b := make([]byte, 5000)
			rng.Read(b)
			w.w.Write(b)
		}, ErrProtocol},
		{"oversized frame", false, func(w *wire) {
			w.writePreamble()
			w.w.Write([]byte{byte(tHello), 0x80, 0x80, 0x80, 0x01}) // 2 MiB
		}, ErrProtocol},
		{"wrong version", false, func(w *wire) {
			w.w.WriteString(magic)
			w.w.WriteByte(99)
			h := hello{Purpose: purposeSync, FSName: "test", FSID: g.root.Hash()}
			w.writeFrame(tHello, h.encode())
		}, ErrVersion},
		{"wrong filesystem", false, func(w *wire) {
			w.writePreamble()
			h := hello{Purpose: purposeSync, FSName: "test", FSID: log.Sum([]byte("other"))}
			w.writeFrame(tHello, h.encode())
		}, ErrDifferentFS},
		{"garbage expand", true, func(w *wire) {
			w.writeFrame(tExpand, []byte{5, 1, 2, 3})
		}, ErrProtocol},
		{"unknown frame", true, func(w *wire) {
			w.w.Write([]byte{200, 0})
		}, ErrProtocol},
		{"welcome from a client", true, func(w *wire) {
			w.writeFrame(tWelcome, (&welcome{}).encode())
		}, ErrProtocol},
		{"malformed entry", true, func(w *wire) {
			var f itemsFrame
			f.add([]byte{1, 2, 3, 4})
			w.writeFrame(tEntries, f.payload())
		}, ErrProtocol},
		{"forged entry", true, func(w *wire) {
			var f itemsFrame
			f.add(forged)
			w.writeFrame(tEntries, f.payload())
			w.writeFrame(tEndRound, nil)
		}, ErrForged},
		{"unsolicited block", true, func(w *wire) {
			var f itemsFrame
			f.add([]byte("a block no entry refers to"))
			w.writeFrame(tBlocks, f.payload())
		}, ErrForged},
		{"stall", true, func(w *wire) {}, nil},
		{"stall mid-frame", true, func(w *wire) {
			w.w.Write([]byte{byte(tWantEntries), 100, 1})
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, w := raw(t, addr, g, tc.hello)
			tc.send(w)
			w.flush()
			perr, took := waitClosed(t, w, !tc.hello)
			if tc.want != nil && !errors.Is(perr, tc.want) {
				t.Fatalf("error frame %v, want %v", perr, tc.want)
			}
			t.Logf("closed after %v with %v", took.Round(time.Millisecond), perr)
			if took > 2*time.Second {
				t.Fatalf("took %v", took)
			}
		})
	}
	// While one peer stalls, others are served.
	_, stalled := raw(t, addr, g, true)
	other := makeReplica(t, g.out[:1], nil)
	osvc := NewService(Config{Replica: other, Node: "other", Rand: rng, Limits: testLimits})
	defer osvc.Close()
	if _, err := osvc.Client.Sync(context.Background(), addr); err != nil {
		t.Fatalf("sync while another peer stalls: %v", err)
	}
	if other.Status().ViewHash != before.ViewHash {
		t.Fatal("sync did not converge")
	}
	waitClosed(t, stalled, false)
	after := target.r.Status()
	if after.Entries != before.Entries || after.ViewHash != before.ViewHash {
		t.Fatalf("hostile peers changed the store: %d -> %d entries", before.Entries, after.Entries)
	}
	if target.log.warns.Load() == 0 || !strings.Contains(target.log.text(), "disconnected a peer") {
		t.Fatalf("no log lines:\n%s", target.log.text())
	}
	var rejected int64
	for _, p := range target.svc.Status().Peers {
		rejected += p.Rejections["bad signature"]
	}
	if rejected != 1 {
		t.Fatalf("rejections: %+v", target.svc.Status().Peers)
	}
}

// hostileServer accepts connections and runs fn on each.
func hostileServer(t *testing.T, fn func(c net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return l.Addr().String()
}

func TestHostileServers(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	g.tree("/", 1, 20)
	r := makeReplica(t, g.out, nil)
	before := r.Status()
	lim := Limits{IOTimeout: 300 * time.Millisecond, SessionTimeout: 3 * time.Second}
	cl := NewClient(ClientConfig{Replica: r, Index: func() *Index { ix, c := IndexReplica(r); t.Cleanup(c); return ix }(), Limits: lim})
	defer cl.Close()
	greet := func(c net.Conn) *wire {
		w := newWire(c, Limits{IOTimeout: 5 * time.Second})
		w.readPreamble()
		w.readFrame()
		w.writePreamble()
		w.writeFrame(tWelcome, (&welcome{FSID: g.root.Hash(), Digest: log.Sum([]byte("differs"))}).encode())
		w.flush()
		return w
	}
	cases := []struct {
		name  string
		serve func(c net.Conn)
		want  error
	}{
		{"garbage", func(c net.Conn) {
			b := make([]byte, 1000)
			rng.Read(b)
			c.Write(b)
			io.Copy(io.Discard, c)
		}, ErrProtocol},
		{"silent", func(c net.Conn) { io.Copy(io.Discard, c) }, nil},
		{"stalls after welcome", func(c net.Conn) {
			greet(c)
			io.Copy(io.Discard, c)
		}, nil},
		{"oversized frame", func(c net.Conn) {
			greet(c)
			c.Write([]byte{byte(tNodes), 0xff, 0xff, 0x7f})
			io.Copy(io.Discard, c)
		}, ErrProtocol},
		{"wrong filesystem", func(c net.Conn) {
			w := newWire(c, Limits{IOTimeout: 5 * time.Second})
			w.readPreamble()
			w.readFrame()
			w.writePreamble()
			w.writeFrame(tWelcome, (&welcome{FSID: log.Sum([]byte("x"))}).encode())
			w.flush()
			io.Copy(io.Discard, c)
		}, ErrDifferentFS},
		{"too many nodes", func(c net.Conn) {
			w := greet(c)
			for {
				if t, _, err := w.readFrame(); err != nil || t == tEndRound {
					break
				}
			}
			var e enc
			e.uvarint(2)
			e.rep(&rep{Kind: repEmpty})
			e.rep(&rep{Kind: repEmpty})
			w.writeFrame(tNodes, e.b)
			w.writeFrame(tEndRound, nil)
			w.flush()
			io.Copy(io.Discard, c)
		}, ErrProtocol},
		{"forged entry", func(c net.Conn) {
			w := greet(c)
			for {
				if t, _, err := w.readFrame(); err != nil || t == tEndRound {
					break
				}
			}
			e := g.fork().write("/evil", []byte("x"))
			b := append([]byte(nil), e.Encoded()...)
			b[len(b)-1] ^= 1
			var f itemsFrame
			f.add(b)
			w.writeFrame(tEntries, f.payload())
			var en enc
			en.uvarint(1)
			en.rep(&rep{Kind: repEmpty})
			w.writeFrame(tNodes, en.b)
			w.writeFrame(tEndRound, nil)
			w.flush()
			io.Copy(io.Discard, c)
		}, ErrForged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileServer(t, tc.serve)
			start := time.Now()
			_, err := cl.Sync(context.Background(), addr)
			took := time.Since(start)
			t.Logf("%v after %v", err, took.Round(time.Millisecond))
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if took > 2*time.Second {
				t.Fatalf("took %v", took)
			}
		})
	}
	if after := r.Status(); after.Entries != before.Entries || after.ViewHash != before.ViewHash {
		t.Fatal("hostile servers changed the store")
	}
}

// A session that exceeds its byte budget (checked between frames) ends with
// ErrLimit; what arrived is kept, and the next sessions finish the job.
func TestSessionByteLimit(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	dirs, limit := 4, int64(300<<10)
	if testing.Short() {
		dirs, limit = 2, 150<<10
	}
	g.tree("/", dirs, 1000)
	ra := makeReplica(t, g.out, nil)
	rb := makeReplica(t, g.out[:1], nil)
	pn := newPipeNet(t)
	pn.add(t, "a", ra, rng)
	ix, cancel := IndexReplica(rb)
	defer cancel()
	cl := NewClient(ClientConfig{Replica: rb, Index: ix, Dial: pn.dial, Limits: Limits{MaxSessionBytes: limit, IOTimeout: time.Second}})
	defer cl.Close()
	sessions := 0
	for ; sessions < 20 && rb.Status().ViewHash != ra.Status().ViewHash; sessions++ {
		_, err := cl.Sync(context.Background(), "a")
		if err != nil && !errors.Is(err, ErrLimit) {
			t.Fatal(err)
		}
	}
	if rb.Status().ViewHash != ra.Status().ViewHash {
		t.Fatal("did not converge")
	}
	if sessions < 2 {
		t.Fatalf("converged in %d sessions of at most %d bytes (plus a frame)", sessions, limit)
	}
	t.Logf("converged in %d sessions", sessions)
}

// Entries from a store of another filesystem are refused when pushed.
func TestSyncRefusesOtherRoot(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	r := makeReplica(t, g.out, nil)
	pn := newPipeNet(t)
	nd := pn.add(t, "a", r, rng)
	other := newGen(t, "test")
	other.root = &log.Entry{Action: log.ActMkdir, Path: "/", Time: 1, Name: "test", Nonce: []byte("another-nonce-16"), Mode: 0o755}
	other.root.Sign(other.key)
	_, w := func() (net.Conn, *wire) {
		c, err := nd.svc.Client.cfg.Dial(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		w := newWire(c, Limits{IOTimeout: time.Second})
		h := hello{Purpose: purposeSync, FSName: "test", FSID: g.root.Hash(), Node: "evil"}
		w.writePreamble()
		w.writeFrame(tHello, h.encode())
		w.flush()
		if _, err := readWelcome(w); err != nil {
			t.Fatal(err)
		}
		return c, w
	}()
	var f itemsFrame
	f.add(other.root.Encoded())
	w.writeFrame(tEntries, f.payload())
	w.writeFrame(tEndRound, nil)
	w.flush()
	perr, _ := waitClosed(t, w, false)
	if !errors.Is(perr, ErrForged) || !strings.Contains(perr.Error(), "root entry of another filesystem") {
		t.Fatalf("error %v", perr)
	}
	if r.HasEntry(other.root.Hash()) {
		t.Fatal("stored another filesystem's root")
	}
}
