package node

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/syncproto"
)

// freePortPair finds a port p on 127.0.0.1 with p and p+1 free for TCP and
// UDP (gossip uses both on p, sync TCP on p+1).
func freePortPair(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= 65534 {
			continue
		}
		ok := true
		var closers []func() error
		for _, try := range []func() (func() error, error){
			func() (func() error, error) {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
				if err != nil {
					return nil, err
				}
				return l.Close, nil
			},
			func() (func() error, error) {
				c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
				if err != nil {
					return nil, err
				}
				return c.Close, nil
			},
			func() (func() error, error) {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
				if err != nil {
					return nil, err
				}
				return l.Close, nil
			},
		} {
			c, err := try()
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, c)
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// fastTuning makes gossip react in a test's time.
var fastTuning = gossip.Tuning{GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond,
	ProbeTimeout: 100 * time.Millisecond, PushPullInterval: 2 * time.Second, LeavePropagateDelay: 50 * time.Millisecond,
	BroadcastTimeout: time.Second}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

func sameViews(nodes ...*Node) bool {
	h := nodes[0].Replica().Status().ViewHash
	for _, n := range nodes[1:] {
		if n.Replica().Status().ViewHash != h {
			return false
		}
	}
	return true
}

func TestLoopbackClusterConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("real sockets: full tier")
	}
	base := t.TempDir()
	root := testKey("root")
	pa := freePortPair(t)
	addrA := fmt.Sprintf("127.0.0.1:%d", pa)
	r, err := replica.Create(filepath.Join(base, "a"), "demo", root, []string{addrA}, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	start := func(dir, addr string) *Node {
		n, err := Start(Config{Dir: dir, Bind: addr, NoSync: true, SyncInterval: 500 * time.Millisecond,
			RetryInterval: 200 * time.Millisecond, GossipTuning: fastTuning, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Stop() })
		return n
	}
	a := start(filepath.Join(base, "a"), addrA)
	var nodes = []*Node{a}
	for _, name := range []string{"b", "c"} {
		dir := filepath.Join(base, name)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := syncproto.Get(ctx, nil, a.syncAddr, dir, "demo", nil); err != nil {
			cancel()
			t.Fatalf("get into %s: %v", name, err)
		}
		cancel()
		nodes = append(nodes, start(dir, fmt.Sprintf("127.0.0.1:%d", freePortPair(t))))
	}
	waitFor(t, 15*time.Second, "membership of 3", func() bool {
		for _, n := range nodes {
			if n.aliveOthers() != 2 {
				return false
			}
		}
		return true
	})
	if _, err := a.Replica().WriteFile(root, "/etc/app.conf", []byte("port=80\n"), replica.WriteOptions{Parents: true}); err != nil {
		t.Fatal(err)
	}
	big := []byte(strings.Repeat("a large file: many blocks. ", 4000))
	if _, err := nodes[2].Replica().WriteFile(root, "/srv/big", big, replica.WriteOptions{Parents: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "views to converge", func() bool { return sameViews(nodes...) })
	for i, n := range nodes {
		got, err := n.Replica().ReadFile("/srv/big")
		if err != nil || string(got) != string(big) {
			t.Fatalf("node %d: big file: %v", i, err)
		}
	}
	st := nodes[1].Status()
	if !st.Running || len(st.Members) != 3 {
		t.Fatalf("status: %+v", st)
	}
}
