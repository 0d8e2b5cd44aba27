package syncproto

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/replica"
)

// TestSessionsPerHost: idle connections from one host take at most
// MaxSessionsPerHost slots; the next from that host is refused as busy,
// and another host is still served. Refusals are counted.
func TestSessionsPerHost(t *testing.T) {
	root := testKey("root")
	r, err := replica.Create(t.TempDir()+"/a", "test", root, nil, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lim := testLimits
	lim.MaxSessionsPerHost = 3
	lim.IOTimeout = 20 * time.Second
	svc := NewService(Config{Replica: r, Node: "a", Limits: lim})
	defer svc.Close()
	addr := listen(t, svc.Server)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// Once the server counts the three, the fourth from 127.0.0.1 is
	// refused.
	deadline := time.Now().Add(60 * time.Second)
	for {
		svc.Server.mu.Lock()
		n := svc.Server.perHost["127.0.0.1"]
		svc.Server.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server counts %d sessions from 127.0.0.1, want 3", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c4, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	c4.SetDeadline(time.Now().Add(15 * time.Second))
	if b, _ := io.ReadAll(c4); !bytes.Contains(b, []byte("too many sync sessions from 127.0.0.1")) {
		t.Fatalf("a fourth session from one host got %q, want a refusal", b)
	}
	if svc.Server.Refused() < 1 {
		t.Fatal("refusal not counted")
	}
	// Another host is served: it gets the server's preamble, no error.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	b, _ := io.ReadAll(c)
	if strings.Contains(string(b), "too many") {
		t.Fatalf("another host was refused: %q", b)
	}
}
