package sechan

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// pair returns a connected client and server over loopback TCP.
func pair(t *testing.T, clientKey []byte, serverKeys [][]byte) (*Conn, *Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	c, s := Client(cc, clientKey), Server(sc, serverKeys)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func TestRoundTrip(t *testing.T) {
	c, s := pair(t, key(1), [][]byte{key(1)})
	data := make([]byte, 300<<10) // several frames
	rand.Read(data)
	go func() {
		c.Write(data)
		c.Write([]byte("end"))
	}()
	got := make([]byte, len(data)+3)
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(data)], data) || string(got[len(data):]) != "end" {
		t.Fatal("data changed on the way")
	}
	// And back.
	go s.Write([]byte("reply"))
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "reply" {
		t.Fatalf("reply %q %v", b, err)
	}
}

// TestWrongKey: neither side accepts a peer with another secret, and the
// server sends nothing but its refusal (it closes).
func TestWrongKey(t *testing.T) {
	c, s := pair(t, key(1), [][]byte{key(2)})
	errs := make(chan error, 1)
	go func() {
		errs <- s.Handshake()
		s.Close()
	}()
	if err := c.Handshake(); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("client: %v", err)
	}
	if err := <-errs; !errors.Is(err, ErrNoSecret) {
		t.Fatalf("server: %v", err)
	}
}

// TestRotation: a server that knows the old and the new key accepts
// clients with either.
func TestRotation(t *testing.T) {
	for _, k := range [][]byte{key(1), key(2)} {
		c, s := pair(t, k, [][]byte{key(2), key(1)})
		go s.Write([]byte("hi"))
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
			t.Fatalf("key %x: %q %v", k[0], b, err)
		}
	}
}

// TestTamperedFrame: a flipped bit in a frame ends the session with an
// authentication error.
func TestTamperedFrame(t *testing.T) {
	cc, sc := net.Pipe()
	c, s := Client(cc, key(1)), Server(&flipper{Conn: sc}, [][]byte{key(1)})
	defer c.Close()
	defer s.Close()
	go c.Write([]byte("hello, world"))
	b := make([]byte, 12)
	_, err := io.ReadFull(s, b)
	if err == nil || bytes.Equal(b, []byte("hello, world")) {
		t.Fatalf("tampered frame read as %q (%v)", b, err)
	}
}

// flipper flips a bit of the third frame's payload it reads (the first
// transport frame after the 2 handshake messages... for the server only
// one handshake frame is read, so the second read frame is data).
type flipper struct {
	net.Conn
	reads int
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	f.reads++
	if f.reads == 4 && n > 0 { // header, body of the handshake; header, body of data
		p[n-1] ^= 1
	}
	return n, err
}

// TestPlaintextPeerTimesOut: a peer that sends garbage or nothing is
// refused within the handshake timeout, not held forever.
func TestPlaintextPeer(t *testing.T) {
	cc, sc := net.Pipe()
	s := Server(sc, [][]byte{key(1)})
	defer s.Close()
	go func() {
		cc.Write([]byte{0, 5, 'h', 'e', 'l', 'l', 'o'})
		io.Copy(io.Discard, cc)
	}()
	start := time.Now()
	if err := s.Handshake(); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("garbage first message: %v", err)
	}
	if time.Since(start) > HandshakeTimeout+5*time.Second {
		t.Fatal("handshake not bounded")
	}
}

// FuzzServerHandshake: whatever a peer sends first, the server neither
// panics nor accepts it.
func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte{0, 5, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0, 48})
	f.Add(bytes.Repeat([]byte{0xff}, 100))
	f.Fuzz(func(t *testing.T, in []byte) {
		cc, sc := net.Pipe()
		s := Server(sc, [][]byte{key(1)})
		go func() {
			cc.Write(in)
			cc.Close()
		}()
		if err := s.Handshake(); err == nil {
			t.Fatal("accepted a peer without the secret")
		}
		s.Close()
	})
}

// BenchmarkThroughput: 10 MiB through loopback TCP, plain and through the
// channel (the ratio is the channel's cost on a get).
func BenchmarkThroughput(b *testing.B) {
	data := make([]byte, 10<<20)
	rand.Read(data)
	for _, secure := range []bool{false, true} {
		name := "plain"
		if secure {
			name = "sechan"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				l, _ := net.Listen("tcp", "127.0.0.1:0")
				done := make(chan error, 1)
				go func() {
					c, err := l.Accept()
					if err != nil {
						done <- err
						return
					}
					var rc net.Conn = c
					if secure {
						rc = Server(c, [][]byte{key(1)})
					}
					_, err = io.Copy(io.Discard, rc)
					done <- err
				}()
				c, _ := net.Dial("tcp", l.Addr().String())
				var wc net.Conn = c
				if secure {
					wc = Client(c, key(1))
				}
				for off := 0; off < len(data); off += 64 << 10 {
					wc.Write(data[off:min(len(data), off+64<<10)])
				}
				c.(*net.TCPConn).CloseWrite()
				<-done
				c.Close()
				l.Close()
			}
		})
	}
}
