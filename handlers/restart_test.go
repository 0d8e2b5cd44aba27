package handlers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// settle waits until the runner has nothing queued or running (a script
// records its run before it exits) for a while, then returns the runs.
func settle(t *testing.T, rn *Runner, rec *recorder) []run {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := rn.Stats()
		if s.Pending == 0 && s.Running == 0 {
			time.Sleep(100 * time.Millisecond)
			if s2 := rn.Stats(); s2 == s {
				return rec.runs(t)
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: %+v, %d runs recorded", s, len(rec.runs(t)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func reopen(t *testing.T, r *replica.Replica) *replica.Replica {
	t.Helper()
	dir := r.Dir()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	return r2
}

func eventSet(cs []jsonChange) string {
	var out []string
	for _, c := range cs {
		s := c.Event + " " + c.Path
		if c.OldPath != "" {
			s += " <" + c.OldPath
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// TestRestart: after a restart nothing re-fires; what changed while the
// node was down fires once; and again nothing after the next restart.
func TestRestart(t *testing.T) {
	r := newFS(t)
	root := testKey("root")
	rec := newRecorder(t, "h", "")
	cfg := fast(Spec{Script: rec.script}, Spec{Glob: "/etc/**", Script: rec.script})
	rn := start(t, r, cfg)

	// Every kind of change, live.
	write(t, r, "/etc/a.conf", "a")
	write(t, r, "/etc/b.conf", "b")
	write(t, r, "/etc/sub/c", "c")
	write(t, r, "/srv/www/index.html", "<html>")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Rename(root, "/etc/sub", "/etc/sub2", false)) // a directory with a child
	must(r.Symlink(root, "a.conf", "/etc/sym", false))
	must(r.Link(root, "/etc/b.conf", "/etc/hard", false))
	write(t, r, "/etc/b.conf", "b2") // the hard link shows it too
	mode := uint32(0o600)
	must(r.SetAttr(root, "/etc/a.conf", &mode, 0, false))
	must(r.Remove(root, "/srv", true, false))
	_, err := r.Grant(root, "/etc/sub2", pub(testKey("alice")), false)
	must(err)
	settle(t, rn, rec)
	stop(t, rn)

	r = reopen(t, r)
	rn = start(t, r, cfg)
	rec.quiet(t, len(rec.runs(t)), 300*time.Millisecond)
	if s := rn.Stats(); s.Runs != 0 || s.Pending != 0 {
		t.Fatalf("after a restart: %+v", s)
	}
	stop(t, rn)

	// Changes while stopped.
	before := len(rec.runs(t))
	write(t, r, "/etc/new.conf", "n")
	write(t, r, "/etc/a.conf", "a2")
	write(t, r, "/etc/a.conf", "a3") // two writes while down: one change
	must(r.Remove(root, "/etc/sym", false, false))
	must(r.Rename(root, "/etc/sub2/c", "/etc/c", false))
	must(r.SetAttr(root, "/etc/sub2", &mode, 0, false))
	_, err = r.Grant(root, "/etc", pub(testKey("bob")), false)
	must(err)
	write(t, r, "/elsewhere", "x")
	rn = start(t, r, cfg)
	rs := settle(t, rn, rec)[before:]
	// Each handler is told each change once; several writes of a path while
	// down are one change. The no-glob handler also sees /elsewhere.
	etc := []string{"create /etc/new.conf", "write /etc/a.conf", "delete /etc/sym",
		"rename /etc/c </etc/sub2/c", "mode /etc/sub2", "grant /etc"}
	want := map[string]int{"create /elsewhere": 1}
	for _, w := range etc {
		want[w] = 2
	}
	got := map[string]int{}
	for _, c := range allChanges(rs) {
		s := c.Event + " " + c.Path
		if c.OldPath != "" {
			s += " <" + c.OldPath
		}
		got[s]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes while down fired as\n%v\nwant %v", got, want)
	}
	stop(t, rn)
	rn = start(t, r, cfg)
	rec.quiet(t, before+len(rs), 300*time.Millisecond)
	if s := rn.Stats(); s.Runs != 0 {
		t.Fatalf("after the second restart: %+v", s)
	}
}

// TestHardLinkFollowsPrimary: a hard link shows its primary's content; a
// rewrite of the primary while down is told for both paths, once.
func TestHardLinkFollowsPrimary(t *testing.T) {
	r := newFS(t)
	root := testKey("root")
	rec := newRecorder(t, "h", "")
	cfg := fast(Spec{Script: rec.script})
	write(t, r, "/p", "1")
	if err := r.Link(root, "/p", "/l", false); err != nil {
		t.Fatal(err)
	}
	rn := start(t, r, cfg)
	write(t, r, "/p", "2")
	live := eventSet(allChanges(settle(t, rn, rec)))
	stop(t, rn)
	write(t, r, "/p", "3")
	rn = start(t, r, cfg)
	rs := settle(t, rn, rec)
	if down := eventSet(allChanges(rs[1:])); down != live {
		t.Fatalf("while down: %s; live: %s", down, live)
	}
	t.Logf("rewriting a hard link's primary: %s", live)
}

// TestNewHandlerStartsAtCurrentState: a new handler fires nothing for what
// exists; --handler-initial fires one batch describing it, at every start.
func TestNewHandlerStartsAtCurrentState(t *testing.T) {
	r := newFS(t)
	write(t, r, "/etc/a.conf", "a")
	write(t, r, "/etc/x/b.conf", "b")
	if err := r.Symlink(testKey("root"), "a.conf", "/etc/s", false); err != nil {
		t.Fatal(err)
	}
	plain := newRecorder(t, "plain", "")
	rn := start(t, r, fast(Spec{Glob: "/etc/**", Script: plain.script}))
	plain.quiet(t, 0, 200*time.Millisecond)
	write(t, r, "/etc/a.conf", "a2")
	rs := plain.wait(t, 1, 5*time.Second)
	if got := eventSet(allChanges(rs)); got != "write /etc/a.conf" {
		t.Fatalf("new handler fired %s", got)
	}
	stop(t, rn)

	ini := newRecorder(t, "initial", "")
	cfg := fast(Spec{Glob: "/etc/**", Script: ini.script})
	cfg.Initial = true
	for i := 1; i <= 2; i++ {
		rn := start(t, r, cfg)
		rs := settle(t, rn, ini)
		if len(rs) != i {
			t.Fatalf("start %d: %d runs", i, len(rs))
		}
		last := rs[i-1]
		if got, want := eventSet(last.changes), "create /etc/a.conf, create /etc/x/b.conf, link /etc/s, mkdir /etc, mkdir /etc/x"; got != want {
			t.Fatalf("initial batch %s\nwant %s", got, want)
		}
		if last.env["BASEFS_INITIAL"] != "1" || last.env["BASEFS_COUNT"] != "5" || !last.changes[0].Initial {
			t.Fatalf("initial env %v", last.env)
		}
		stop(t, rn)
	}
	rn = start(t, r, fast(Spec{Glob: "/etc/**", Script: ini.script}))
	ini.quiet(t, 2, 200*time.Millisecond)
	stop(t, rn)
}

// TestStopKillsAndRefires: a script still running when Stop's deadline
// passes is killed, and its batch fires again on the next start.
func TestStopKillsAndRefires(t *testing.T) {
	r := newFS(t)
	flag := filepath.Join(t.TempDir(), "flag")
	rec := newRecorder(t, "h", fmt.Sprintf("if [ ! -e '%s' ]; then touch '%s'; sleep 30; fi", flag, flag))
	cfg := fast(Spec{Script: rec.script})
	rn := start(t, r, cfg)
	write(t, r, "/a", "1")
	for rn.Stats().Running == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	write(t, r, "/b", "1") // queued behind it
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := rn.Stop(ctx); err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Stop took %v", d)
	}
	rn = start(t, r, cfg)
	rs := settle(t, rn, rec)
	if got := eventSet(allChanges(rs)); got != "create /a, create /b" {
		t.Fatalf("after restart: %s", got)
	}
}

// TestStartWhileWriting: changes made while Start takes its snapshot fire
// exactly once (either as start-up differences or live).
func TestStartWhileWriting(t *testing.T) {
	for round := 0; round < 6; round++ {
		r := newFS(t)
		rec := newRecorder(t, fmt.Sprintf("h%d", round), "")
		cfg := fast(Spec{Script: rec.script})
		rn := start(t, r, cfg)
		stop(t, rn) // the handler's cursor now exists
		var wg sync.WaitGroup
		wg.Add(1)
		const n = 300
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				write(t, r, fmt.Sprintf("/w/%03d", i), "x")
			}
		}()
		time.Sleep(time.Duration(round) * time.Millisecond)
		rn = start(t, r, cfg)
		wg.Wait()
		rs := settle(t, rn, rec)
		count := map[string]int{}
		for _, c := range allChanges(rs) {
			count[c.Path]++
		}
		if len(count) != n+1 {
			t.Fatalf("round %d: %d paths fired, want %d", round, len(count), n+1)
		}
		for p, k := range count {
			if k != 1 {
				t.Fatalf("round %d: %s fired %d times", round, p, k)
			}
		}
		stop(t, rn)
	}
}

func TestCursorFile(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{Glob: "/**", Script: "/bin/true"}
	c := newCursor(dir, "k", spec)
	c.compactMin = 4
	var h log.Hash
	h[0] = 7
	d := func(b byte) cursorPath { return cursorPath{d: digest{b}, kind: "f"} }
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	steps := [][]cursorOp{
		{{path: "/a", cp: d(1)}, {path: "/b", cp: d(2)}},
		{{path: "/a", cp: d(3)}, {annot: h}},
		{{path: "/b", del: true}},
		{{path: "/c", cp: d(4)}, {path: "/a", cp: d(5)}}, // past compactMin: a new snapshot
		{{path: "/d", cp: d(6)}},
	}
	for _, ops := range steps {
		c.record(ops)
		if err := c.flush(); err != nil {
			t.Fatal(err)
		}
	}
	if c.gen != 2 {
		t.Fatalf("generation %d: the journal was never folded into a snapshot", c.gen)
	}
	c.close()
	check := func(what string) {
		t.Helper()
		l := newCursor(dir, "k", spec)
		ok, err := l.load()
		if err != nil || !ok {
			t.Fatalf("%s: load %v %v", what, ok, err)
		}
		if fmt.Sprint(l.paths) != fmt.Sprint(c.paths) || len(l.annots) != 1 || !l.annots[h] {
			t.Fatalf("%s: loaded %v %v, want %v", what, l.paths, l.annots, c.paths)
		}
	}
	check("clean")
	// A torn last journal line (crash mid-append) is ignored.
	jf, _ := os.OpenFile(c.journalPath(), os.O_WRONLY|os.O_APPEND, 0)
	jf.WriteString(`{"p":"/e","d":"0`)
	jf.Close()
	check("torn")
	// A crash after a new snapshot was written but before its journal: the
	// old journal (of the previous generation) is ignored.
	old, _ := os.ReadFile(c.journalPath())
	c2 := newCursor(dir, "k", spec)
	c2.load()
	c2.record([]cursorOp{{path: "/a", cp: d(9)}})
	if err := c2.save(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(c.journalPath(), old, 0o600)
	c.paths["/a"] = d(9)
	check("stale journal")
	// An unreadable snapshot is an error.
	os.WriteFile(c.snapPath(), []byte("garbage\n"), 0o600)
	if _, err := newCursor(dir, "k", spec).load(); err == nil {
		t.Fatal("garbage loaded")
	}
}

// TestCorruptCursorFiresEverything: a handler whose cursor cannot be read
// is told the whole current state once, rather than nothing.
func TestCorruptCursorFiresEverything(t *testing.T) {
	r := newFS(t)
	rec := newRecorder(t, "h", "")
	cfg := fast(Spec{Glob: "/etc/**", Script: rec.script})
	var logs logBuf
	cfg.Logger = logs.logger()
	rn := start(t, r, cfg)
	write(t, r, "/etc/a", "1")
	settle(t, rn, rec)
	stop(t, rn)
	files, _ := filepath.Glob(filepath.Join(r.Dir(), cursorSubdir, "*.cursor"))
	if len(files) != 1 {
		t.Fatalf("cursor files %v", files)
	}
	os.WriteFile(files[0], []byte("{}\n"), 0o600)
	rn = start(t, r, cfg)
	rs := settle(t, rn, rec)
	if got := eventSet(rs[len(rs)-1].changes); got != "create /etc/a, mkdir /etc" {
		t.Fatalf("after a corrupt cursor: %s", got)
	}
	if !strings.Contains(logs.String(), "cursor unreadable") {
		t.Fatal("not logged")
	}
}

// TestStartupWaitsForContent: a change made while down whose content is not
// here yet fires once its blocks arrive.
func TestStartupWaitsForContent(t *testing.T) {
	a := newFS(t)
	b := cloneFS(t, a)
	pos := a.NumEntries()
	rec := newRecorder(t, "h", "")
	cfg := fast(Spec{Script: rec.script})
	stop(t, start(t, b, cfg))
	write(t, a, "/big", string(randomData(50<<10)))
	transfer(t, a, b, &pos)
	rn := start(t, b, cfg)
	rec.quiet(t, 0, 200*time.Millisecond)
	if s := rn.Stats(); s.Held != 1 {
		t.Fatalf("stats %+v", s)
	}
	transferBlocks(t, a, b, "/big")
	rs := rec.wait(t, 1, 5*time.Second)
	if got := eventSet(allChanges(rs)); got != "create /big" {
		t.Fatalf("fired %s", got)
	}
}

func TestNoHandlers(t *testing.T) {
	r := newFS(t)
	rn, err := Start(r, Config{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, r, "/a", "x")
	stop(t, rn)
	if _, err := os.Stat(filepath.Join(r.Dir(), cursorSubdir)); err == nil {
		t.Fatal("state directory made for no handlers")
	}
}

func TestStopLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r := newFS(t)
	rec := newRecorder(t, "h", "")
	rn, err := Start(r, fast(Spec{Script: rec.script}, Spec{Glob: "/x/**", Script: rec.script}))
	if err != nil {
		t.Fatal(err)
	}
	write(t, r, "/x/a", "x")
	rec.wait(t, 2, 5*time.Second)
	stop(t, rn)
	stop(t, rn) // idempotent
}
