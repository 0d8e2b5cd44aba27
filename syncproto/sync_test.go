package syncproto

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"testing"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// Two replicas that each have entries the other lacks — new files, new
// versions, a fork on one path, a deep tree, a directory of 1 000 children
// — converge in one session.
func TestSyncTwoConverge(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	g.mkdir("/etc")
	g.write("/etc/app.conf", []byte("port=80\n"))
	g.tree("/", 2, 50)
	base := len(g.out)

	a, b := g.fork(), g.fork()
	// A fork: both continue /etc/app.conf.
	a.write("/etc/app.conf", []byte("port=81\n"))
	b.write("/etc/app.conf", []byte("port=82\n"))
	// A deep tree on A.
	p := ""
	for i := 0; i < 20; i++ {
		p += fmt.Sprintf("/deep%02d", i)
		a.mkdir(p)
	}
	a.write(p+"/leaf", []byte("deep"))
	// 1 000 children on B.
	b.mkdir("/big")
	for i := 0; i < 1000; i++ {
		b.write(fmt.Sprintf("/big/c%04d", i), []byte{byte(i)})
	}
	// Random new versions on both.
	for i := 0; i < 30; i++ {
		f := fmt.Sprintf("/d%03d/f%04d", rng.Intn(2), rng.Intn(50))
		if rng.Intn(2) == 0 {
			a.write(f, []byte(fmt.Sprint("a", i)))
		} else {
			b.write(f, []byte(fmt.Sprint("b", i)))
		}
	}
	ra := makeReplica(t, append(append([]*log.Entry{}, g.out[:base]...), a.out...), nil)
	rb := makeReplica(t, append(append([]*log.Entry{}, g.out[:base]...), b.out...), nil)
	net := newPipeNet(t)
	na := net.add(t, "a", ra, rng)
	nb := net.add(t, "b", rb, rng)
	if ra.Status().ViewHash == rb.Status().ViewHash {
		t.Fatal("replicas start equal")
	}
	st := na.sync(t, "b")
	t.Logf("session: %d rounds, %d bytes sent, %d received, %d entries in, %d out",
		st.Rounds, st.BytesSent, st.BytesReceived, st.EntriesReceived, st.EntriesSent)
	requireSame(t, na, nb)
	if st.EntriesReceived != int64(len(b.out)) || st.EntriesSent != int64(len(a.out)) {
		t.Fatalf("received %d (want %d), sent %d (want %d)", st.EntriesReceived, len(b.out), st.EntriesSent, len(a.out))
	}
	// In sync now: the next session is a hello and a welcome.
	st = na.sync(t, "b")
	if !st.InSync || st.Rounds != 0 {
		t.Fatalf("second session: %+v", st)
	}
	// Both sides recorded the sessions (the server's side as it ends,
	// after the client's bye).
	for _, nd := range []*node{na, nb} {
		eventually(t, func() bool {
			ps := nd.svc.Status().Peers
			return len(ps) == 1 && ps[0].Sessions == 2 && !ps[0].LastSync.IsZero()
		}, func() string { return fmt.Sprintf("%s peers: %+v", nd.name, nd.svc.Status().Peers) })
	}
}

// Three replicas with disjoint changes converge through pairwise sessions.
func TestSyncThreeConverge(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	g.tree("/", 3, 20)
	base := g.out
	var nodes []*node
	net := newPipeNet(t)
	for i, name := range []string{"a", "b", "c"} {
		f := g.fork()
		f.mkdir("/" + name)
		for j := 0; j < 40; j++ {
			f.write(fmt.Sprintf("/%s/f%d", name, j), []byte(name))
			f.write(fmt.Sprintf("/d%03d/f%04d", i, j%20), []byte(fmt.Sprint(name, j)))
		}
		r := makeReplica(t, append(append([]*log.Entry{}, base...), f.out...), nil)
		nodes = append(nodes, net.add(t, name, r, rng))
	}
	nodes[0].sync(t, "b")
	nodes[1].sync(t, "c")
	nodes[2].sync(t, "a")
	nodes[0].sync(t, "b")
	requireSame(t, nodes...)
}

// Blocks of a large file arrive with its entry; a replica holding an entry
// without its blocks fetches them (tree blocks first, then their children).
func TestSyncBlocks(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	g.mkdir("/data")
	big := make([]byte, 300<<10)
	rng.Read(big)
	a := g.fork()
	a.write("/data/big", big)
	ra := makeReplica(t, append(append([]*log.Entry{}, g.out...), a.out...), a.blocks)
	rb := makeReplica(t, g.out, nil)
	net := newPipeNet(t)
	na := net.add(t, "a", ra, rng)
	nb := net.add(t, "b", rb, rng)
	st := nb.sync(t, "a")
	requireSame(t, na, nb)
	got, err := rb.ReadFile("/data/big")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file on b: %v", err)
	}
	t.Logf("pull with blocks: %d rounds, %d blocks, %d bytes", st.Rounds, st.BlocksReceived, st.BytesReceived)

	// C has the entry (as gossip would deliver it) but no blocks.
	rc := makeReplica(t, append(append([]*log.Entry{}, g.out...), a.out...), nil)
	nc := net.add(t, "c", rc, rng)
	if m := rc.Status().MissingBlocks; m == 0 {
		t.Fatal("c misses no blocks")
	}
	st = nc.sync(t, "a")
	if !st.InSync {
		t.Fatal("entries should be in sync")
	}
	if m := rc.Status().MissingBlocks; m != 0 {
		t.Fatalf("c still misses %d blocks after %d rounds", m, st.Rounds)
	}
	got, err = rc.ReadFile("/data/big")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file on c: %v", err)
	}
	if s := nc.svc.Status(); s.MissingBlocks != 0 || len(s.Fetching) != 0 {
		t.Fatalf("status after fetch: %+v", s)
	}

	// Fetch by hash, as after a gossip announcement.
	rd := makeReplica(t, g.out, nil)
	nd := net.add(t, "d", rd, rng)
	if _, err := nd.svc.FetchEntries(context.Background(), "a", []log.Hash{a.out[0].Hash()}); err != nil {
		t.Fatal(err)
	}
	if got, err := rd.ReadFile("/data/big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("fetched entry's file: %v", err)
	}
}

// syncBytes returns the bytes of one session that brings b up to a, for
// two replicas sharing n entries, a having k more (new versions of random
// files) — both directions, framing included.
func syncBytes(t *testing.T, rng *rand.Rand, n, k int) (SessionStats, int) {
	t.Helper()
	g := sharedTree(t, n)
	a := g.fork()
	for i := 0; i < k; i++ {
		a.write(fmt.Sprintf("/d%03d/f%04d", rng.Intn(n/1000), rng.Intn(1000)), []byte(fmt.Sprint("new ", i)))
	}
	ra := makeReplica(t, append(append([]*log.Entry{}, g.out...), a.out...), nil)
	rb := makeReplica(t, g.out, nil)
	net := newPipeNet(t)
	na := net.add(t, "a", ra, rng)
	nb := net.add(t, "b", rb, rng)
	st := nb.sync(t, "a")
	requireSame(t, na, nb)
	again := nb.sync(t, "a")
	return st, int(again.BytesSent + again.BytesReceived)
}

var sharedTrees = map[int]*gen{}

// sharedTree is a tree of n/1000 directories of 1 000 files (n entries, one
// per file, plus the mkdirs and the root), built once per test binary.
func sharedTree(t *testing.T, n int) *gen {
	if g, ok := sharedTrees[n]; ok {
		return g
	}
	g := newGen(t, "test")
	g.tree("/", n/1000, 1000)
	sharedTrees[n] = g
	return g
}

// The bytes of a session grow with the number of differences k, not with
// the size of the log n; two replicas in sync exchange the same bytes at
// n = 1k and 10k.
func TestSyncTrafficScales(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	total := func(st SessionStats) int64 { return st.BytesSent + st.BytesReceived }
	// n = 1k and 10k (4k under -short, to save time under -race).
	big := 10000
	if testing.Short() {
		big = 4000
	}
	stN1, idle1 := syncBytes(t, rng, 1000, 10)
	stN10, idle10 := syncBytes(t, rng, big, 10)
	t.Logf("k=10: n=1000 %d B (%d rounds), n=%d %d B (%d rounds)", total(stN1), stN1.Rounds, big, total(stN10), stN10.Rounds)
	t.Logf("in sync: n=1000 %d B, n=%d %d B", idle1, big, idle10)
	if idle1 != idle10 {
		t.Errorf("in-sync sessions cost %d B at n=1000 and %d B at n=%d", idle1, idle10, big)
	}
	if idle1 > 300 {
		t.Errorf("in-sync session costs %d B", idle1)
	}
	// n grew 10x: the bytes grow by the extra trie levels and by the
	// differences spreading over more directories (at n=1k all ten share
	// one), far less than 10x.
	if float64(total(stN10)) > 2.5*float64(total(stN1)) {
		t.Errorf("k=10: %d B at n=1000, %d B at n=%d: not sub-linear in n", total(stN1), total(stN10), big)
	}
	// Against k, at n = 10k (n = 1k under -short).
	n := 10000
	if testing.Short() {
		n = 1000
	}
	var prev int64
	for _, k := range []int{1, 10, 100} {
		st, _ := syncBytes(t, rng, n, k)
		b := total(st)
		t.Logf("n=%d k=%d: %d B, %d rounds, %.0f B per difference", n, k, b, st.Rounds, float64(b)/float64(k))
		// O(k log n): per difference, a few kilobytes at most.
		if b > int64(k)*6000+2000 {
			t.Errorf("k=%d: %d B", k, b)
		}
		if prev > 0 && b <= prev {
			t.Errorf("k=%d: %d B, not more than for fewer differences (%d B)", k, b, prev)
		}
		prev = b
	}
}

// A replica that only got the root (a fresh node) catches up by sync alone.
func TestSyncFromEmpty(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	g := newGen(t, "test")
	g.tree("/", 2, 300)
	ra := makeReplica(t, g.out, nil)
	rb := makeReplica(t, g.out[:1], nil)
	net := newPipeNet(t)
	na := net.add(t, "a", ra, rng)
	nb := net.add(t, "b", rb, rng)
	nb.sync(t, "a")
	requireSame(t, na, nb)
	// And the other way: a pushes to an empty c.
	rc := makeReplica(t, g.out[:1], nil)
	nc := net.add(t, "c", rc, rng)
	na.sync(t, "c")
	requireSame(t, na, nc)
}

// Sessions over real loopback TCP, with local writes through the replica
// API on both sides.
func TestSyncTCP(t *testing.T) {
	rng := rand.New(rand.NewSource(seed(t)))
	root := testKey("root")
	dirA := t.TempDir() + "/a"
	ra, err := replica.Create(dirA, "test", root, []string{"127.0.0.1:1"}, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb := makeReplica(t, []*log.Entry{ra.Root()}, nil)
	sa := NewService(Config{Replica: ra, Node: "a", Rand: rng, Limits: testLimits})
	defer sa.Close()
	addrA := listen(t, sa.Server)
	sb := NewService(Config{Replica: rb, Node: "b", Rand: rng, Limits: testLimits, Peers: func() []string { return []string{addrA} }})
	defer sb.Close()
	if _, err := ra.WriteFile(root, "/x/y", []byte("from a"), replica.WriteOptions{Parents: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.WriteFile(root, "/z", bytes.Repeat([]byte("from b "), 5000), replica.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	peer, st, ok, err := sb.Syncer.Step(context.Background())
	if err != nil || !ok || peer != addrA {
		t.Fatalf("step: %v %v %s", ok, err, peer)
	}
	if ra.Status().ViewHash != rb.Status().ViewHash {
		t.Fatalf("views differ after %+v", st)
	}
	if got, err := ra.ReadFile("/z"); err != nil || len(got) != 35000 {
		t.Fatalf("pushed file: %v", err)
	}
}
