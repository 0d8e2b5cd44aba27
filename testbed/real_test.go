package testbed

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildBasefs builds the command for the real-process tests.
func buildBasefs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "basefs")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/basefs").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRealLoopback runs three real node processes on 127.0.77.x, writes
// two objects and compares with the simulation (full tier).
func TestRealLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("builds basefs and runs node processes: full tier")
	}
	spec := RealSpec{Binary: buildBasefs(t), Nodes: 3, Objects: 2, Trials: 1, Seed: 5, SyncInterval: time.Second,
		Timeout: 60 * time.Second, Dir: t.TempDir(), Logf: t.Logf}
	res, err := RunCompare(context.Background(), spec, "go test")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Real) != 1 || !res.Real[0].Converged {
		t.Fatalf("real trials: %+v", res.Real)
	}
	out := t.TempDir()
	if err := res.Write(out); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, out, 2, "| real processes |", "| simulation |")
}

// TestRealNetns runs real processes in network namespaces with nftables
// loss (full tier; skipped without root, ip or nft).
func TestRealNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds basefs and runs node processes in namespaces: full tier")
	}
	if err := NetnsAvailable(); err != nil {
		t.Skip(err)
	}
	spec := RealSpec{Binary: buildBasefs(t), Nodes: 3, Objects: 2, Trials: 1, Seed: 6, Loss: 10, Netns: true,
		SyncInterval: time.Second, Timeout: 60 * time.Second, Dir: t.TempDir(), Logf: t.Logf}
	trials, err := RunReal(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(trials) != 1 || !trials[0].Converged {
		t.Fatalf("trials: %+v", trials)
	}
}

func TestRealNeedsNetnsForLoss(t *testing.T) {
	_, err := RunReal(context.Background(), RealSpec{Binary: "/nonexistent", Loss: 10})
	if err == nil {
		t.Fatal("loss without namespaces accepted")
	}
	_, err = RunReal(context.Background(), RealSpec{Binary: "/nonexistent", Loss: 10, Netns: true})
	if err == nil {
		t.Fatal("a missing binary went unnoticed")
	}
	if NetnsAvailable() != nil && !errors.Is(err, ErrNeedRoot) {
		t.Fatalf("without namespaces: %v", err)
	}
}
