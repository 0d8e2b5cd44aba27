package gossip

import (
	"bytes"
	"math"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// TestSerfFraming bounds what Serf adds to a user event's name and payload
// (serfOverhead), by encoding its message the way serf/messages.go does:
// a type byte, then msgpack of {LTime, Name, Payload, CC}, with the
// largest Lamport time.
func TestSerfFraming(t *testing.T) {
	type messageUserEvent struct { // as in serf/messages.go
		LTime   uint64
		Name    string
		Payload []byte
		CC      bool
	}
	for _, size := range []int{1, 200, MaxEventSize, 4096} {
		var buf bytes.Buffer
		buf.WriteByte(8) // messageUserEventType
		h := codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}}
		msg := messageUserEvent{LTime: math.MaxUint64, Name: EventName, Payload: make([]byte, size)}
		if err := codec.NewEncoder(&buf, &h).Encode(&msg); err != nil {
			t.Fatal(err)
		}
		over := buf.Len() - size - len(EventName)
		t.Logf("payload %d B: Serf message %d B (+%d)", size, buf.Len(), over)
		if over > serfOverhead {
			t.Fatalf("Serf adds %d bytes, serfOverhead is %d", over, serfOverhead)
		}
	}
}
