package handlers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// groupMembers lists the live (not zombie) processes of process group pgid.
func groupMembers(pgid int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // state ppid pgrp ...
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			out = append(out, e.Name()+" "+s)
		}
	}
	return out
}

// TestTimeoutKillsProcessGroup: a hung script that ignores SIGTERM and
// spawned a child is killed with the child at its timeout; the failure is
// logged with its stderr; the next change still fires.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	r := newFS(t)
	dir := t.TempDir()
	flag, pids := filepath.Join(dir, "flag"), filepath.Join(dir, "pids")
	rec := newRecorder(t, "h", fmt.Sprintf(`trap '' TERM
if [ ! -e '%s' ]; then
  touch '%s'
  sh -c 'sleep 1000; echo never' &
  echo "$$ $!" > '%s.tmp' && mv '%s.tmp' '%s'
  echo "hung on purpose" >&2
  sleep 1000
fi`, flag, flag, pids, pids, pids))
	var logs logBuf
	cfg := fast(Spec{Script: rec.script})
	cfg.Timeout = 300 * time.Millisecond
	cfg.KillGrace = 200 * time.Millisecond
	cfg.Logger = logs.logger()
	rn := start(t, r, cfg)
	write(t, r, "/a", "1")
	deadline := time.Now().Add(5 * time.Second)
	for rn.Stats().Timeouts == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no timeout: %+v", rn.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	var leader, child int
	fmt.Sscan(string(b), &leader, &child)
	for len(groupMembers(leader)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has %v", leader, groupMembers(leader))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child)); err == nil && !strings.Contains(string(st), ") Z") {
		t.Fatalf("the script's child %d survived: %s", child, st)
	}
	l := logs.String()
	if !strings.Contains(l, "timed out") || !strings.Contains(l, "hung on purpose") || !strings.Contains(l, "path=/a") {
		t.Fatalf("log does not tell the timeout with the stderr:\n%s", l)
	}
	write(t, r, "/b", "2")
	rs := rec.wait(t, 1, 5*time.Second)
	if c := allChanges(rs); len(c) != 1 || c[0].Path != "/b" {
		t.Fatalf("after the timeout: %+v", c)
	}
	if s := rn.Stats(); s.Timeouts != 1 || s.Runs != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFailureIsLogged(t *testing.T) {
	r := newFS(t)
	rec := newRecorder(t, "h", `if [ "$BASEFS_PATH" = /bad ]; then echo "cannot reload: bad config" >&2; exit 3; fi`)
	var logs logBuf
	cfg := fast(Spec{Script: rec.script})
	cfg.Logger = logs.logger()
	rn := start(t, r, cfg)
	write(t, r, "/bad", "x")
	for rn.Stats().Failures == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "handler failed") || !strings.Contains(l, "exit=3") || !strings.Contains(l, "cannot reload: bad config") {
		t.Fatalf("log:\n%s", l)
	}
	write(t, r, "/good", "x")
	rec.wait(t, 1, 5*time.Second)
}

// span is one script run as the script saw it.
type span struct{ start, end int64 }

// TestConcurrencyBound: four handlers of one change, Concurrency 2: never
// more than two scripts at once.
func TestConcurrencyBound(t *testing.T) {
	r := newFS(t)
	dir := t.TempDir()
	spans := filepath.Join(dir, "spans")
	var specs []Spec
	for i := 0; i < 4; i++ {
		s := filepath.Join(dir, fmt.Sprintf("h%d.sh", i))
		os.WriteFile(s, []byte(fmt.Sprintf("#!/bin/sh\ns=$(date +%%s%%N)\nsleep 0.3\necho \"$s $(date +%%s%%N)\" >> '%s'\n", spans)), 0o755)
		specs = append(specs, Spec{Script: s})
	}
	cfg := fast(specs...)
	cfg.Concurrency = 2
	maxRunning := 0
	var mu sync.Mutex
	var rn *Runner
	cfg.onStart = func(int, []pending) {
		mu.Lock()
		defer mu.Unlock()
		if n := int(rn.running.Load()); n > maxRunning {
			maxRunning = n
		}
	}
	mu.Lock()
	rn = start(t, r, cfg)
	mu.Unlock()
	write(t, r, "/a", "x")
	var ss []span
	deadline := time.Now().Add(10 * time.Second)
	for len(ss) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 runs", len(ss))
		}
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(spans)
		ss = nil
		for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var s span
			if n, _ := fmt.Sscan(ln, &s.start, &s.end); n == 2 {
				ss = append(ss, s)
			}
		}
	}
	type ev struct {
		at    int64
		delta int
	}
	var evs []ev
	for _, s := range ss {
		evs = append(evs, ev{s.start, 1}, ev{s.end, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		return evs[i].at < evs[j].at || (evs[i].at == evs[j].at && evs[i].delta < evs[j].delta)
	})
	cur, peak := 0, 0
	for _, e := range evs {
		cur += e.delta
		peak = max(peak, cur)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak > 2 || maxRunning > 2 {
		t.Fatalf("%d scripts at once (runner counted %d), bound 2", peak, maxRunning)
	}
	if peak < 2 {
		t.Fatalf("never two at once: the bound is not used")
	}
}

// TestSlowHandlerDoesNotDelayOthers: while one handler's script hangs, the
// other's changes run at their usual latency.
func TestSlowHandlerDoesNotDelayOthers(t *testing.T) {
	r := newFS(t)
	slow := newRecorder(t, "slow", "sleep 5")
	quick := newRecorder(t, "quick", "")
	cfg := fast(Spec{Script: slow.script}, Spec{Glob: "/q/**", Script: quick.script})
	cfg.Concurrency = 2
	started := make(chan time.Time, 100)
	cfg.onStart = func(h int, _ []pending) {
		if h == 1 {
			started <- time.Now()
		}
	}
	rn := start(t, r, cfg)
	write(t, r, "/s", "x")
	for rn.Stats().Running == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		write(t, r, fmt.Sprintf("/q/%d", i), "x")
		select {
		case at := <-started:
			if d := at.Sub(t0); d > cfg.Quiet+500*time.Millisecond {
				t.Fatalf("change %d ran after %v with a slow handler busy", i, d)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("change %d did not run while the slow handler hung", i)
		}
		quick.wait(t, i+1, 3*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rn.Stop(ctx)
}
