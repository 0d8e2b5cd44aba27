package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/hashicorp/memberlist"
)

// TestMockClusterAnnounce: five nodes over memberlist.MockNetwork (with
// UDP-like packets, see mockTransport) converge,
// see each other's tags, and an Announce reaches every other node intact.
func TestMockClusterAnnounce(t *testing.T) {
	c := startCluster(t, clusterOpts{n: 5, mock: true, seed: 1})
	for _, nd := range c.nodes {
		for _, m := range nd.g.Members() {
			if m.Tags["sync"] == "" || !strings.HasPrefix(m.Addr, "127.0.0.1:") {
				t.Fatalf("member %+v", m)
			}
		}
	}
	em := newEntryMaker(t, 1)
	e1, e2 := em.mkdir(t), em.mkdir(t)
	if err := c.nodes[2].g.Announce([][]byte{e1, e2}, nil); err != nil {
		t.Fatal(err)
	}
	want := hashes([][]byte{e1, e2})
	waitFor(t, 5*time.Second, "entries everywhere", func() bool {
		for i, nd := range c.nodes {
			if i != 2 && !nd.rec.hasEntries(want) {
				return false
			}
		}
		return true
	})
	if c.nodes[2].rec.countEntries(want) != 0 {
		t.Fatal("a node heard its own announcement")
	}
	st := c.nodes[2].g.Stats()
	if st.EventsSent != 1 || st.EntriesSent != 2 {
		t.Fatalf("sender stats %+v", st)
	}
	st = c.nodes[0].g.Stats()
	if st.EventsReceived != 1 || st.EntriesReceived != 2 || st.DecodeFailures != 0 {
		t.Fatalf("receiver stats %+v", st)
	}
}

// TestMessageContents checks a received Message field by field: entries
// that verify, blocks intact, the origin.
func TestMessageContents(t *testing.T) {
	c := startCluster(t, clusterOpts{n: 3, mock: true, seed: 2})
	for _, nd := range c.nodes {
		nd.rec.keepMsg = true
	}
	em := newEntryMaker(t, 2)
	e := em.mkdir(t)
	blk := bytes.Repeat([]byte("0123456789abcdef"), 20)
	if err := c.nodes[0].g.Announce([][]byte{e}, [][]byte{blk}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes[1:] {
		waitFor(t, 5*time.Second, "message", func() bool {
			nd.rec.mu.Lock()
			defer nd.rec.mu.Unlock()
			return len(nd.rec.msgs) > 0
		})
		nd.rec.mu.Lock()
		m := nd.rec.msgs[0]
		nd.rec.mu.Unlock()
		if m.Origin != c.nodes[0].g.LocalName() || len(m.Entries) != 1 || len(m.Blocks) != 1 || len(m.Hashes) != 0 {
			t.Fatalf("message %+v", m)
		}
		if !bytes.Equal(m.Blocks[0], blk) {
			t.Fatal("block changed")
		}
		ent, err := log.DecodeVerified(m.Entries[0])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ent.Encoded(), e) {
			t.Fatal("entry changed")
		}
	}
}

// TestBurst256: a burst of 256 signed entries from one node reaches every
// node by gossip alone (push/pull is 10 minutes away): nothing is dropped
// at the sender or by the receivers' buffers. Gossip's own randomness is
// taken out of the test with 12 sends per event (the default gives small
// clusters 6, and about 0.1–0.3% of deliveries then miss a node, for sync
// to repair; see TestMeasureBurst).
func TestBurst256(t *testing.T) {
	n := 10
	if testing.Short() {
		n = 3
	}
	tun := fastTuning()
	if n < 10 {
		tun.RetransmitMult = 12 // 12 sends per event, as the default gives 10–99 nodes
	}
	c := startCluster(t, clusterOpts{n: n, mock: true, seed: 3, tuning: &tun})
	em := newEntryMaker(t, 3)
	var entries [][]byte
	for i := 0; i < 256; i++ {
		entries = append(entries, em.mkdir(t))
	}
	want := hashes(entries)
	start := time.Now()
	for _, e := range entries {
		// As a node does: one Announce per new local entry.
		if err := c.nodes[0].g.Announce([][]byte{e}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "256 entries everywhere", func() bool {
		if time.Since(start) > 29*time.Second {
			for _, nd := range c.nodes {
				t.Logf("%s: %d entries, %d alive, %+v", nd.g.LocalName(), nd.rec.countEntries(want), alive(nd.g), nd.g.Stats())
			}
		}
		return allHave(c.nodes[1:], want)
	})
	t.Logf("256 single-entry announcements reached %d nodes in %v", n, time.Since(start))

	// The same burst packed in one Announce takes far fewer events.
	more := make([][]byte, 256)
	for i := range more {
		more[i] = em.mkdir(t)
	}
	before := c.nodes[0].g.Stats().EventsSent
	start = time.Now()
	if err := c.nodes[0].g.Announce(more, nil); err != nil {
		t.Fatal(err)
	}
	events := c.nodes[0].g.Stats().EventsSent - before
	wantMore := hashes(more)
	waitFor(t, 30*time.Second, "packed burst everywhere", func() bool { return allHave(c.nodes[1:], wantMore) })
	t.Logf("256 entries packed in %d events reached %d nodes in %v", events, n, time.Since(start))
	if events > int64(256*len(more[0])/MaxEventSize+8) {
		t.Fatalf("%d events for 256 entries of ~%d bytes", events, len(more[0]))
	}
	for _, nd := range c.nodes {
		if st := nd.g.Stats(); st.QueueDrops != 0 || st.DecodeFailures != 0 {
			t.Fatalf("%s: %+v", nd.g.LocalName(), st)
		}
	}
	if d := c.net.dropped.Load(); d != 0 {
		t.Logf("%d packets dropped by full receive buffers", d)
	}
}

// TestOversizedEntryByHash: an entry too big for an event is announced by
// hash; the small ones beside it travel whole.
func TestOversizedEntryByHash(t *testing.T) {
	c := startCluster(t, clusterOpts{n: 3, mock: true, seed: 4})
	em := newEntryMaker(t, 4)
	big, small := em.big(t, MaxEventSize), em.mkdir(t)
	if err := c.nodes[1].g.Announce([][]byte{big, small}, nil); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		r := c.nodes[i].rec
		waitFor(t, 5*time.Second, "hash and entry", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			_, h := r.hashes[log.Sum(big)]
			_, e := r.entries[log.Sum(small)]
			return h && e
		})
		if _, ok := r.entryTime(log.Sum(big)); ok {
			t.Fatal("oversized entry carried whole")
		}
	}
	if st := c.nodes[1].g.Stats(); st.HashesSent != 1 || st.EntriesSent != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Explicit hash announcements.
	h := log.Sum([]byte("some block"))
	if err := c.nodes[0].g.AnnounceHashes([]log.Hash{h}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "hash", func() bool {
		c.nodes[2].rec.mu.Lock()
		defer c.nodes[2].rec.mu.Unlock()
		_, ok := c.nodes[2].rec.hashes[h]
		return ok
	})
}

// TestBlocksPacked: blocks travel with entries as room allows; the rest is
// dropped and counted.
func TestBlocksPacked(t *testing.T) {
	tun := fastTuning()
	tun.MaxBlockEvents = 2
	c := startCluster(t, clusterOpts{n: 3, mock: true, seed: 5, tuning: &tun})
	em := newEntryMaker(t, 5)
	var blocks [][]byte
	for i := 0; i < 5; i++ {
		blocks = append(blocks, bytes.Repeat([]byte{byte('a' + i)}, log.BlockSize))
	}
	tail := []byte("a short last block")
	blocks = append(blocks, tail)
	if err := c.nodes[0].g.Announce([][]byte{em.mkdir(t)}, blocks); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes[1:] {
		r := nd.rec
		waitFor(t, 5*time.Second, "two blocks", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.blocks) == 2
		})
		r.mu.Lock()
		for _, b := range blocks[:2] {
			if _, ok := r.blocks[log.Sum(b)]; !ok {
				t.Fatal("first blocks missing")
			}
		}
		r.mu.Unlock()
	}
	if st := c.nodes[0].g.Stats(); st.BlocksSent != 2 || st.BlocksDropped != 4 || st.EventsSent != 3 {
		t.Fatalf("stats %+v", st)
	}
	if err := c.nodes[0].g.Announce(nil, [][]byte{make([]byte, log.BlockSize+1)}); err == nil {
		t.Fatal("oversized block accepted")
	}
}

// TestForeignFilesystem: an event that names another filesystem is
// ignored and counted, and a node of another filesystem cannot join (the
// memberlist label differs).
func TestForeignFilesystem(t *testing.T) {
	c := startCluster(t, clusterOpts{n: 3, mock: true, seed: 6})
	em := newEntryMaker(t, 6)
	e := em.mkdir(t)
	foreign := &Event{FS: [FSPrefixLen]byte{0xde, 0xad}, Origin: "n01", Entries: [][]byte{e}}
	b, err := foreign.AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[1].g.sendRaw(EventName, b); err != nil {
		t.Fatal(err)
	}
	// A good event after it: once it is in, the foreign one was handled.
	good := em.mkdir(t)
	if err := c.nodes[1].g.Announce([][]byte{good}, nil); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		nd := c.nodes[i]
		waitFor(t, 5*time.Second, "good entry", func() bool { return nd.rec.hasEntries(hashes([][]byte{good})) })
		waitFor(t, 5*time.Second, "foreign counted", func() bool { return nd.g.Stats().Foreign == 1 })
		if _, ok := nd.rec.entryTime(log.Sum(e)); ok {
			t.Fatal("foreign entry delivered")
		}
	}

	other := [32]byte{0xde, 0xad}
	g, err := New(Config{NodeName: "stranger", BindAddr: "127.0.0.9:0", FSID: other, Tuning: fastTuning(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	loop := startCluster(t, clusterOpts{n: 2, seed: 7})
	n, err := g.Join([]string{loop.nodes[0].g.LocalAddr()})
	if err == nil || n != 0 {
		t.Fatalf("node of another filesystem joined: %d, %v", n, err)
	}
	t.Logf("join refused: %v", err)
	if alive(loop.nodes[0].g) != 2 {
		t.Fatal("stranger listed")
	}
}

// TestBadEvents: garbage is counted per claimed origin, a peer that keeps
// sending it is logged once per interval, and so are entries the node
// reports invalid.
func TestBadEvents(t *testing.T) {
	h := &captureHandler{level: slog.LevelDebug}
	tun := fastTuning()
	tun.WarnThreshold = 2
	tun.WarnInterval = time.Hour
	c := startCluster(t, clusterOpts{n: 2, mock: true, seed: 8, tuning: &tun, logger: slog.New(h)})
	sender, receiver := c.nodes[0].g, c.nodes[1].g

	bad := append([]byte{EnvelopeVersion, TypeAnnounce}, testFSID[:FSPrefixLen]...)
	bad = append(bad, byte(len("n00")))
	bad = append(bad, "n00"...)
	bad = append(bad, ItemEntry, 50, 1, 2) // overruns
	for i := 0; i < 3; i++ {
		if err := sender.sendRaw(EventName, append(bad, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.sendRaw(EventName, []byte{EnvelopeVersion}); err != nil {
		t.Fatal(err)
	}
	if err := sender.sendRaw(EventName, []byte{9, 9, 9}); err != nil { // a future version
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "decode failures", func() bool {
		st := receiver.Stats()
		return st.DecodeFailures == 4 && st.UnknownVersion == 1
	})
	st := receiver.Stats()
	if st.Peers["n00"].DecodeFailures != 3 || st.Peers[""].DecodeFailures != 1 {
		t.Fatalf("peers %+v", st.Peers)
	}
	warns := func() (n int) {
		for _, r := range h.records() {
			if strings.HasPrefix(r, "WARN gossip: peer keeps sending invalid data") && strings.Contains(r, "peer=n00") {
				n++
			}
		}
		return n
	}
	if warns() != 1 {
		t.Fatalf("warnings: %q", h.records())
	}
	receiver.ReportInvalid("n00", 5, log.ErrSignature)
	receiver.ReportInvalid("n05", 1, log.ErrSignature)
	st = receiver.Stats()
	if st.Invalid != 6 || st.Peers["n00"].Invalid != 5 || st.Peers["n05"].Invalid != 1 {
		t.Fatalf("stats %+v", st)
	}
	if warns() != 1 {
		t.Fatal("warning not rate-limited")
	}
	// The Serf debug lines went to slog at debug level, never above.
	for _, r := range h.records() {
		if strings.Contains(r, "serf_level=") && !strings.HasPrefix(r, "DEBUG") {
			t.Fatalf("serf log above debug: %s", r)
		}
	}
	// The peer table is bounded.
	for i := 0; i < maxPeers+10; i++ {
		receiver.ReportInvalid(fmt.Sprintf("p%d", i), 1, nil)
	}
	if n := len(receiver.Stats().Peers); n > maxPeers+1 {
		t.Fatalf("%d peers tracked", n)
	}
}

// TestLeaveAndKill over real loopback sockets: a graceful leave is seen as
// "left", a shutdown without leave as "failed" once the failure detector
// runs, and both raise member events.
func TestLeaveAndKill(t *testing.T) {
	tun := fastTuning()
	tun.ProbeInterval, tun.ProbeTimeout, tun.SuspicionMult = 100*time.Millisecond, 80*time.Millisecond, 2
	c := startCluster(t, clusterOpts{n: 4, seed: 10, tuning: &tun})
	obs := c.nodes[0]
	status := func(name string) string {
		for _, m := range obs.g.Members() {
			if m.Name == name {
				return m.Status
			}
		}
		return ""
	}
	leaver, victim := c.nodes[1].g, c.nodes[2].g
	start := time.Now()
	if err := leaver.Leave(); err != nil {
		t.Fatal(err)
	}
	if status(leaver.LocalName()) != "left" {
		waitFor(t, 5*time.Second, "left", func() bool { return status(leaver.LocalName()) == "left" })
	}
	t.Logf("leave took %v", time.Since(start))
	start = time.Now()
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "failed", func() bool { return status(victim.LocalName()) == "failed" })
	t.Logf("failure detected after %v", time.Since(start))
	if s := status(leaver.LocalName()); s != "left" {
		t.Fatalf("leaver is %q", s)
	}
	// Every survivor agrees, and heard the events.
	for _, nd := range []*node{c.nodes[0], c.nodes[3]} {
		waitFor(t, 5*time.Second, "member events", func() bool {
			nd.rec.mu.Lock()
			defer nd.rec.mu.Unlock()
			var leave, failed bool
			for _, e := range nd.rec.members {
				for _, m := range e.Members {
					leave = leave || e.Type == "leave" && m.Name == leaver.LocalName() && m.Status == "left"
					failed = failed || e.Type == "failed" && m.Name == victim.LocalName() && m.Status == "failed"
				}
			}
			return leave && failed
		})
	}
	if err := leaver.Announce([][]byte{{1}}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("announce after leave: %v", err)
	}
	if err := victim.Shutdown(); err != nil {
		t.Fatal("second shutdown:", err)
	}
}

// TestProfiles maps profile names to memberlist's defaults.
func TestProfiles(t *testing.T) {
	for name, want := range map[string]*memberlist.Config{
		"":      memberlist.DefaultLANConfig(),
		"lan":   memberlist.DefaultLANConfig(),
		"wan":   memberlist.DefaultWANConfig(),
		"local": memberlist.DefaultLocalConfig(),
	} {
		ml, err := memberlistConfig(Config{Profile: name, BindAddr: "127.0.0.1:7946"}, Tuning{})
		if err != nil {
			t.Fatal(err)
		}
		if ml.GossipInterval != want.GossipInterval || ml.ProbeInterval != want.ProbeInterval ||
			ml.RetransmitMult != max(want.RetransmitMult, MinRetransmitMult) || ml.PushPullInterval != want.PushPullInterval ||
			ml.SuspicionMult != want.SuspicionMult {
			t.Errorf("profile %q: %+v", name, ml)
		}
		if ml.BindAddr != "127.0.0.1" || ml.BindPort != 7946 {
			t.Errorf("bind %s:%d", ml.BindAddr, ml.BindPort)
		}
	}
	if _, err := memberlistConfig(Config{Profile: "fast", BindAddr: ":1"}, Tuning{}); err == nil {
		t.Fatal("unknown profile accepted")
	}
	ml, _ := memberlistConfig(Config{Profile: "wan", BindAddr: ":1", AdvertiseAddr: "10.0.0.1:99"}, Tuning{GossipInterval: time.Second, RetransmitMult: 7})
	if ml.GossipInterval != time.Second || ml.RetransmitMult != 7 || ml.ProbeInterval != 5*time.Second {
		t.Fatal("tuning not applied")
	}
	if ml.AdvertiseAddr != "10.0.0.1" || ml.AdvertisePort != 99 {
		t.Fatal("advertise address")
	}
	for _, cfg := range []Config{
		{NodeName: "", BindAddr: ":0"},
		{NodeName: strings.Repeat("n", MaxNodeNameLen+1), BindAddr: ":0"},
		{NodeName: "a"},
		{NodeName: "a", BindAddr: "nonsense"},
		{NodeName: "a", BindAddr: ":0", Keys: [][]byte{make([]byte, 10)}},
		{NodeName: "a", BindAddr: ":0", Profile: "lan2"},
	} {
		if g, err := New(cfg); err == nil {
			g.Shutdown()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestLocalProfileRuns: each profile starts and joins over loopback.
func TestProfilesJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("slow tickers")
	}
	for _, p := range []string{"lan", "wan", "local"} {
		t.Run(p, func(t *testing.T) {
			tun := Tuning{LeavePropagateDelay: 50 * time.Millisecond}
			c := startCluster(t, clusterOpts{n: 3, profile: p, seed: 11, tuning: &tun})
			em := newEntryMaker(t, 11)
			e := em.mkdir(t)
			if err := c.nodes[0].g.Announce([][]byte{e}, nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "entry", func() bool {
				return c.nodes[1].rec.hasEntries(hashes([][]byte{e})) && c.nodes[2].rec.hasEntries(hashes([][]byte{e}))
			})
		})
	}
}

// TestSetTags: a tag change reaches the others as an update.
func TestSetTags(t *testing.T) {
	c := startCluster(t, clusterOpts{n: 2, mock: true, seed: 12})
	if err := c.nodes[0].g.SetTags(map[string]string{"sync": "1234"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "tag update", func() bool {
		for _, m := range c.nodes[1].g.Members() {
			if m.Name == c.nodes[0].g.LocalName() && m.Tags["sync"] == "1234" {
				return true
			}
		}
		return false
	})
}

// allHave reports whether every node received all the entries.
func allHave(nodes []*node, want []log.Hash) bool {
	for _, nd := range nodes {
		if !nd.rec.hasEntries(want) {
			return false
		}
	}
	return true
}
