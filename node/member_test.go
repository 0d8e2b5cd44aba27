package node

import (
	"io"
	"log/slog"
	"math/rand"
	"testing"

	"github.com/basefs/basefs/gossip"
)

// TestJoinSyncFanout: a join makes about joinSyncFanout nodes sync with the
// newcomer, not every node of a large cluster; a healed partition (many
// members joining together) makes every node sync.
func TestJoinSyncFanout(t *testing.T) {
	n := &Node{logger: slog.New(slog.NewTextHandler(io.Discard, nil)), syncNow: make(chan struct{}, 1),
		memberRand: rand.New(rand.NewSource(7))}
	members := func(k int) []gossip.Member { return make([]gossip.Member, k) }
	fired := func() bool {
		select {
		case <-n.syncNow:
			return true
		default:
			return false
		}
	}
	n.onMember(gossip.MemberEvent{Type: "join", Members: members(100)})
	if !fired() {
		t.Fatal("joining a cluster of 100 did not sync")
	}
	// 1 000 nodes come and go one at a time in a cluster of ~100: each
	// node should sync with about 3 of every 100 newcomers.
	count := 0
	for range 1000 {
		n.onMember(gossip.MemberEvent{Type: "join", Members: members(1)})
		if fired() {
			count++
		}
		n.onMember(gossip.MemberEvent{Type: "failed", Members: members(1)})
	}
	if count < 10 || count > 60 {
		t.Fatalf("synced with %d of 1000 single joins in a cluster of 100, want about 30 (seed 7)", count)
	}
	// A partition of 40 heals: their joins arrive together.
	n.onMember(gossip.MemberEvent{Type: "leave", Members: members(40)})
	n.onMember(gossip.MemberEvent{Type: "join", Members: members(40)})
	if !fired() {
		t.Fatal("a healed partition did not sync")
	}
}
