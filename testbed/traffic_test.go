package testbed

import (
	"context"
	"testing"
	"time"
)

func TestTrafficTiny(t *testing.T) {
	res, err := RunTraffic(context.Background(), TrafficSpec{Intervals: []time.Duration{time.Second}, Nodes: 4,
		Window: 3 * time.Second, WriteEvery: 500 * time.Millisecond, Seed: 3, Dir: t.TempDir(), Command: "go test", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 2 {
		t.Fatalf("%d points", len(res.Points))
	}
	idle, writing := res.Points[0], res.Points[1]
	if idle.Gossip <= 0 || idle.Sync <= 0 || writing.Writes < 3 {
		t.Fatalf("idle %+v, writing %+v", idle, writing)
	}
	if writing.Gossip <= idle.Gossip {
		t.Fatalf("writing did not add gossip traffic: idle %.2f, writing %.2f kbit/s", idle.Gossip, writing.Gossip)
	}
	out := t.TempDir()
	if err := res.Write(out); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, out, 2, "| 1s | idle |", "2.5–2.9 kbit/s")
}
