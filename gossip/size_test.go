package gossip

import (
	"math/rand"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/hashicorp/memberlist"
)

// fullEvent returns an envelope of exactly size bytes from origin.
func fullEvent(t testing.TB, origin string, size int, fill byte) *Event {
	t.Helper()
	e := &Event{FS: [FSPrefixLen]byte(testFSID[:FSPrefixLen]), Origin: origin}
	// One (unsigned, gossip does not care) entry item fills the room.
	// Random bytes: memberlist compresses what it can.
	b := make([]byte, size-headerSize(origin)-3)
	rand.New(rand.NewSource(int64(fill))).Read(b)
	e.Entries = [][]byte{b}
	if e.Size() != size {
		t.Fatalf("event of %d bytes, want %d", e.Size(), size)
	}
	return e
}

// TestMaxEventOverUDP verifies MaxEventSize empirically, over real UDP
// sockets with encryption and the filesystem label on (the tightest
// packet budget): events of exactly MaxEventSize bytes, sent one after
// another, reach every node within a second by UDP gossip alone (push/pull
// is 10 minutes away), in datagrams of at most ~1400 bytes. As a control,
// events of 1400 bytes, which Serf accepts when the limit is raised, do
// not arrive by gossip at all.
func TestMaxEventOverUDP(t *testing.T) {
	key := GenerateKey()
	for _, tc := range []struct {
		size   int
		arrive bool
	}{{MaxEventSize, true}, {1400, false}} {
		var trs []*sizeTransport
		var addrs []string
		for i := 0; i < 3; i++ {
			tr, addr := newSizeTransport(t, "127.0.0.1")
			trs = append(trs, tr)
			addrs = append(addrs, addr)
		}
		tun := fastTuning()
		tun.EventSize = tc.size
		c := startCluster(t, clusterOpts{n: 3, seed: 30, keys: [][]byte{key}, tuning: &tun,
			transport: func(i int) memberlist.Transport { return trs[i] },
			advertise: func(i int) string { return addrs[i] }})
		sender := c.nodes[0].g
		if sender.MaxEventSize() != tc.size {
			t.Fatalf("max event size %d", sender.MaxEventSize())
		}
		// Let the join's membership broadcasts drain, then measure.
		time.Sleep(300 * time.Millisecond)
		var want []log.Hash
		start := time.Now()
		for k := 0; k < 10; k++ {
			e := fullEvent(t, sender.LocalName(), tc.size, byte(k))
			if err := sender.sendEvent(e); err != nil {
				t.Fatalf("size %d: %v", tc.size, err)
			}
			want = append(want, log.Sum(e.Entries[0]))
		}
		have := func() int {
			n := 0
			for _, nd := range c.nodes[1:] {
				nd.rec.mu.Lock()
				for _, h := range want {
					if _, ok := nd.rec.entries[h]; ok {
						n++
					}
				}
				nd.rec.mu.Unlock()
			}
			return n
		}
		all := 2 * len(want)
		for have() < all && time.Since(start) < time.Second {
			time.Sleep(5 * time.Millisecond)
		}
		elapsed := time.Since(start)
		maxPkt := 0
		for _, tr := range trs {
			maxPkt = max(maxPkt, tr.maxPacket())
		}
		t.Logf("events of %d bytes: %d/%d deliveries in %v; largest UDP datagram %d bytes",
			tc.size, have(), all, elapsed.Round(time.Millisecond), maxPkt)
		if tc.arrive {
			if have() != all {
				t.Fatalf("max-size events did not all arrive by UDP gossip within a second")
			}
			// 1400 of memberlist's packet budget, plus its 5-byte CRC
			// header.
			if maxPkt > 1405 {
				t.Fatalf("UDP datagram of %d bytes", maxPkt)
			}
		} else if have() != 0 {
			t.Fatalf("oversized events arrived by gossip: the control is broken")
		}
		c.close()
	}
}
