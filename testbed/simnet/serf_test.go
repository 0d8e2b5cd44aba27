package simnet

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// agent is one Serf node running on a simnet host.
type agent struct {
	addr string
	serf *serf.Serf

	mu  sync.Mutex
	got map[string]time.Time // user event name → first arrival
}

func (a *agent) received(name string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.got[name]
	return at, ok
}

// alive counts the members a sees as alive.
func (a *agent) alive() int {
	k := 0
	for _, m := range a.serf.Members() {
		if m.Status == serf.StatusAlive {
			k++
		}
	}
	return k
}

// status returns how a sees the member named name.
func (a *agent) status(name string) serf.MemberStatus {
	for _, m := range a.serf.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return serf.StatusNone
}

// agentAddr is the IP of the i-th agent: 10.1.0.1, 10.1.0.2, … 10.1.1.1, …
func agentAddr(i int) string { return fmt.Sprintf("10.1.%d.%d", i/250, i%250+1) }

// agentProfile selects memberlist timing: the stock LAN profile, or LAN with
// fast failure detection for tests.
type agentProfile int

const (
	profileLAN agentProfile = iota
	profileFastLAN
)

// startAgent creates a Serf agent on host agentAddr(i), port 7946.
func startAgent(n *Network, i int, profile agentProfile) (*agent, error) {
	addr := agentAddr(i)
	tr, err := n.Host(addr).Transport(7946)
	if err != nil {
		return nil, err
	}
	ml := memberlist.DefaultLANConfig()
	ml.Name = addr
	ml.BindAddr = addr
	ml.BindPort = 7946
	ml.AdvertisePort = 7946
	ml.Transport = tr
	ml.LogOutput = io.Discard
	conf := serf.DefaultConfig()
	conf.NodeName = addr
	conf.LogOutput = io.Discard
	if profile == profileFastLAN {
		ml.ProbeInterval = 200 * time.Millisecond
		ml.ProbeTimeout = 100 * time.Millisecond
		ml.SuspicionMult = 2
		// Gossip alone can miss a node (few retransmissions in a small
		// cluster); Serf's push/pull carries recent user events and
		// repairs that, so run it often.
		ml.PushPullInterval = 2 * time.Second
		conf.ReconnectInterval = 500 * time.Millisecond
		conf.ReapInterval = time.Second
	}
	conf.MemberlistConfig = ml
	events := make(chan serf.Event, 1024)
	conf.EventCh = events
	a := &agent{addr: addr, got: make(map[string]time.Time)}
	s, err := serf.Create(conf)
	if err != nil {
		_ = tr.Shutdown()
		return nil, err
	}
	a.serf = s
	go func() {
		for {
			select {
			case e := <-events:
				if u, ok := e.(serf.UserEvent); ok {
					now := time.Now()
					a.mu.Lock()
					if _, seen := a.got[u.Name]; !seen {
						a.got[u.Name] = now
					}
					a.mu.Unlock()
				}
			case <-s.ShutdownCh():
				return
			}
		}
	}()
	return a, nil
}

// startCluster starts count agents with staggered starts (nodes started in
// the same instant keep their gossip tickers in step), each joining one
// random earlier agent. It fails the test unless the agents start.
func startCluster(t testing.TB, n *Network, count int, profile agentProfile, stagger time.Duration) []*agent {
	t.Helper()
	rnd := rand.New(rand.NewPCG(uint64(count), 1))
	agents := make([]*agent, 0, count)
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Add(1)
			go func() { defer wg.Done(); _ = a.serf.Shutdown() }()
		}
		wg.Wait()
	})
	for i := 0; i < count; i++ {
		a, err := startAgent(n, i, profile)
		if err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
		if i > 0 {
			peer := net.JoinHostPort(agentAddr(rnd.IntN(i)), "7946")
			if _, err := a.serf.Join([]string{peer}, true); err != nil {
				t.Logf("agent %d join: %v", i, err)
			}
		}
		agents = append(agents, a)
		if count >= 200 && (i+1)%100 == 0 {
			t.Logf("%d agents started", i+1)
		}
		time.Sleep(stagger)
		// Each join is gossiped to every agent, so a join costs CPU in
		// proportion to the cluster's size. Pace joins by the gossip:
		// the next agent starts once the first one has learned of the
		// previous ones. Joining faster than the process can gossip
		// starves it of CPU, probes time out, and false suspicions
		// cascade.
		if count > 50 {
			waitFor(10*time.Second, func() bool { return agents[0].serf.NumNodes() >= len(agents)-5 })
			// And keep the process's CPU use near one core: the machine
			// has two, and a starved process misses its probe timeouts.
			for k := 0; k < 15; k++ {
				w, c := time.Now(), cpuTime()
				time.Sleep(200 * time.Millisecond)
				if (cpuTime()-c).Seconds()/time.Since(w).Seconds() < 1.2 {
					break
				}
			}
		}
	}
	return agents
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// converged reports whether every agent sees exactly want alive members
// (memberlist's count, which is cheaper than Serf's member list at scale).
func converged(agents []*agent, want int) bool {
	for _, a := range agents {
		if a.serf.Memberlist().NumMembers() != want {
			return false
		}
	}
	return true
}

// spread fires a user event at from and returns how long until each of the
// agents in to has it (the last arrival), or false after d.
func spread(from *agent, to []*agent, name string, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	if err := from.serf.UserEvent(name, []byte("payload"), false); err != nil {
		return 0, false
	}
	var last time.Duration
	ok := waitFor(d, func() bool {
		for _, a := range to {
			at, ok := a.received(name)
			if !ok {
				return false
			}
			last = max(last, at.Sub(start))
		}
		return true
	})
	return last, ok
}

func TestSerfMembershipAndUserEvent(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.01})
	const count = 8
	agents := startCluster(t, n, count, profileFastLAN, 20*time.Millisecond)
	if !waitFor(20*time.Second, func() bool { return converged(agents, count) }) {
		for _, a := range agents {
			t.Logf("%s sees %d alive", a.addr, a.alive())
		}
		t.Fatal("membership did not converge")
	}
	for k := 0; k < 3; k++ {
		d, ok := spread(agents[k], agents, "ev"+strconv.Itoa(k), 10*time.Second)
		if !ok {
			for _, a := range agents {
				_, got := a.received("ev" + strconv.Itoa(k))
				t.Logf("%s: received %v, traffic %+v", a.addr, got, n.Traffic(a.addr))
			}
			t.Fatalf("user event %d did not reach every agent", k)
		}
		t.Logf("user event %d reached all %d agents in %v", k, count, d)
	}
	if tr := n.TotalTraffic(); tr.PacketsSent == 0 || tr.GossipStreamBytesSent == 0 {
		t.Errorf("traffic not accounted: %+v", tr)
	}
}

func TestSerfPartitionAndHeal(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 2 * time.Millisecond, Jitter: time.Millisecond})
	const count = 8
	agents := startCluster(t, n, count, profileFastLAN, 20*time.Millisecond)
	if !waitFor(20*time.Second, func() bool { return converged(agents, count) }) {
		t.Fatal("membership did not converge")
	}
	left, right := agents[:count/2], agents[count/2:]
	var group []string
	for _, a := range left {
		group = append(group, a.addr)
	}
	n.Partition(group)
	if !waitFor(30*time.Second, func() bool { return converged(left, count/2) && converged(right, count/2) }) {
		for _, a := range agents {
			t.Logf("%s sees %d alive", a.addr, a.alive())
		}
		t.Fatal("partition did not split the membership view")
	}
	if _, ok := spread(left[0], left, "inside", 10*time.Second); !ok {
		t.Fatal("event did not spread within its side")
	}
	time.Sleep(time.Second)
	for _, a := range right {
		if _, ok := a.received("inside"); ok {
			t.Fatalf("%s received an event across the partition", a.addr)
		}
	}
	n.Heal()
	if !waitFor(30*time.Second, func() bool { return converged(agents, count) }) {
		for _, a := range agents {
			t.Logf("%s sees %d alive", a.addr, a.alive())
		}
		t.Fatal("membership did not heal")
	}
	if _, ok := spread(right[0], agents, "after", 10*time.Second); !ok {
		t.Fatal("event did not reach everyone after Heal")
	}
}

func TestSerfDownDetectedAsFailed(t *testing.T) {
	n := newNet(t)
	n.SetDefaultLink(Link{Delay: 2 * time.Millisecond})
	const count = 6
	agents := startCluster(t, n, count, profileFastLAN, 20*time.Millisecond)
	if !waitFor(20*time.Second, func() bool { return converged(agents, count) }) {
		t.Fatal("membership did not converge")
	}
	victim := agents[count-1]
	start := time.Now()
	n.Down(victim.addr)
	_ = victim.serf.Shutdown()
	others := agents[:count-1]
	if !waitFor(20*time.Second, func() bool {
		for _, a := range others {
			if a.status(victim.addr) != serf.StatusFailed {
				return false
			}
		}
		return true
	}) {
		t.Fatal("downed host not detected as failed")
	}
	t.Logf("downed host detected as failed by all in %v", time.Since(start))

	// Restart it: Up, a fresh transport on the same port, join again.
	n.Up(victim.addr)
	re, err := startAgent(n, count-1, profileFastLAN)
	if err != nil {
		t.Fatal(err)
	}
	defer re.serf.Shutdown()
	if _, err := re.serf.Join([]string{agents[0].addr + ":7946"}, true); err != nil {
		t.Fatal(err)
	}
	all := append(others[:len(others):len(others)], re)
	if !waitFor(20*time.Second, func() bool { return converged(all, count) }) {
		t.Fatal("restarted host did not rejoin")
	}
}
