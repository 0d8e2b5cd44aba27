package testbed

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"
)

var faultSeed = flag.Int64("faults.seed", 0, "run TestFaults on this one seed only (replay)")

// TestFaults runs seeded fault schedules and checks the invariants: a few
// seeds in the fast tier (-short), more in the full tier (bounded in time).
// A failure prints the seed and the command that replays it.
func TestFaults(t *testing.T) {
	spec := FaultsSpec{Seeds: 4, FirstSeed: 1, Parallel: 4, Dir: t.TempDir()}
	if !testing.Short() {
		spec.Seeds, spec.Budget = 200, 4*time.Minute
	}
	if *faultSeed != 0 {
		spec.Seeds, spec.FirstSeed, spec.Parallel = 1, *faultSeed, 1
	}
	spec.Logf = t.Logf
	res := RunFaultSeeds(context.Background(), spec)
	for _, e := range res.Errors {
		t.Errorf("setup: %s", e)
	}
	for _, r := range res.Reports {
		if !r.OK() {
			t.Errorf("seed %d: %s\nschedule:\n  %s\nseed %d; replay: %s", r.Seed, strings.Join(r.Violations, "\n  "),
				strings.Join(r.Ops, "\n  "), r.Seed, ReplayCommand(r.Seed))
		}
	}
	if len(res.Reports) == 0 {
		t.Fatal("no schedule ran")
	}
	t.Logf("%d schedules, %d failed setups", len(res.Reports), len(res.Errors))
}
