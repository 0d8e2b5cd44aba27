package handlers

import (
	"context"
	"fmt"
	mrand "math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "/usr/local/bin/reload", want: Spec{Script: "/usr/local/bin/reload"}},
		{in: "/etc/**/*.conf=/bin/reload", want: Spec{Glob: "/etc/**/*.conf", Script: "/bin/reload"}},
		{in: "*.conf=./h.sh", want: Spec{Glob: "*.conf", Script: "./h.sh"}},
		{in: "**=/opt/a=b/run", want: Spec{Glob: "**", Script: "/opt/a=b/run"}},
		{in: "", err: "empty handler"},
		{in: "  ", err: "empty handler"},
		{in: "=/bin/x", err: "empty GLOB"},
		{in: "/etc/*=", err: "empty SCRIPT"},
		{in: "/etc/[a=/bin/x", err: "unclosed '['"},
	} {
		got, err := ParseSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSpec(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		glob string
		yes  []string
		no   []string
	}{
		{"", []string{"/", "/a", "/a/b/c"}, nil},
		{"/etc/**/*.conf", []string{"/etc/a.conf", "/etc/x/a.conf", "/etc/x/y/z.conf"}, []string{"/a.conf", "/etc/a.conf.bak", "/etcx/a.conf", "/etc/x/a.txt"}},
		{"*.conf", []string{"/a.conf", "/.conf"}, []string{"/etc/a.conf", "/a.confx", "/a/b.conf"}},
		{"/etc/**", []string{"/etc", "/etc/a", "/etc/a/b"}, []string{"/etcx", "/", "/x/etc/a"}},
		{"**", []string{"/", "/a", "/a/b"}, nil},
		{"**/*.conf", []string{"/a.conf", "/x/y/a.conf"}, []string{"/a.txt"}},
		{"/etc/**.conf", []string{"/etc/a.conf", "/etc/x/a.conf"}, []string{"/etc/a.txt"}},
		{"/a/?", []string{"/a/b", "/a/é"}, []string{"/a/bc", "/a/", "/a//"}},
		{"/[a-c]x", []string{"/ax", "/cx"}, []string{"/dx", "/x"}},
		{"/[!a-c]x", []string{"/dx"}, []string{"/ax", "//x"}},
		{"/[^a]x", []string{"/bx"}, []string{"/ax"}},
		{"/[]a]x", []string{"/]x", "/ax"}, []string{"/bx"}},
		{"/[+-0]x", []string{"/-x", "/.x", "/0x", "/,x"}, []string{"//x", "/1x"}},
		{`/a\*b`, []string{"/a*b"}, []string{"/axb"}},
		{"/a.b+c(d)", []string{"/a.b+c(d)"}, []string{"/aXb+c(d)"}},
		{"/home/*/.ssh/*", []string{"/home/u/.ssh/authorized_keys"}, []string{"/home/u/v/.ssh/k", "/home/.ssh/k"}},
	} {
		m, err := compileGlob(tc.glob)
		if err != nil {
			t.Fatalf("%q: %v", tc.glob, err)
		}
		for _, p := range tc.yes {
			if !m.match(p) {
				t.Errorf("%q does not match %q", tc.glob, p)
			}
		}
		for _, p := range tc.no {
			if m.match(p) {
				t.Errorf("%q matches %q", tc.glob, p)
			}
		}
	}
	for _, bad := range []string{"/a[", "/a[b", `/a\`, "/[z-a]"} {
		if _, err := compileGlob(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func TestScriptChecks(t *testing.T) {
	r := newFS(t)
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec.sh")
	os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644)
	for script, want := range map[string]string{
		noexec:                         "handler script " + noexec + " is not executable",
		dir:                            "handler script " + dir + " is not executable",
		filepath.Join(dir, "missing"):  "handler script " + filepath.Join(dir, "missing") + " not found",
		"no-such-command-basefs-12345": "handler script no-such-command-basefs-12345 not found",
	} {
		_, err := Start(r, Config{Specs: []Spec{{Script: script}}})
		if err == nil || err.Error() != want {
			t.Errorf("Start(%s) = %v, want %q", script, err, want)
		}
	}
	rec := newRecorder(t, "h", "")
	if _, err := Start(r, Config{Specs: []Spec{{Glob: "**", Script: rec.script}, {Glob: "/**", Script: rec.script}}}); err == nil {
		t.Error("the same handler twice was accepted")
	}
}

// TestLocalEnvironment checks the whole environment for each kind of local
// change.
func TestLocalEnvironment(t *testing.T) {
	r := newFS(t)
	root := testKey("root")
	rec := newRecorder(t, "h", "")
	start(t, r, fast(Spec{Glob: "/etc/**", Script: rec.script}))

	e := write(t, r, "/etc/app.conf", "port=80\n")
	rs := rec.wait(t, 1, 5*time.Second)
	got := rs[0]
	want := map[string]string{
		"BASEFS_EVENT": "create", "BASEFS_PATH": "/etc/app.conf", "BASEFS_NAME": "test",
		"BASEFS_AUTHOR": fingerprint(root), "BASEFS_ENTRY": e.Hash().String(), "BASEFS_COUNT": "2",
	}
	if fmt.Sprint(got.env) != fmt.Sprint(want) {
		t.Fatalf("env %v\nwant %v", got.env, want)
	}
	if got.pwd != r.Dir() {
		t.Errorf("working directory %s, want %s", got.pwd, r.Dir())
	}
	if len(got.changes) != 2 || got.changes[0].Event != "mkdir" || got.changes[0].Path != "/etc" ||
		got.changes[1] != (jsonChange{Event: "create", Path: "/etc/app.conf", Author: fingerprint(root), Entry: e.Hash().String()}) {
		t.Fatalf("stdin %+v", got.changes)
	}

	n := 1
	step := func(what string, do func() error, event, path, oldPath string) {
		t.Helper()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		n++
		rs := rec.wait(t, n, 5*time.Second)
		env := rs[n-1].env
		if env["BASEFS_EVENT"] != event || env["BASEFS_PATH"] != path || env["BASEFS_OLD_PATH"] != oldPath || env["BASEFS_COUNT"] != "1" {
			t.Fatalf("%s: env %v, want %s %s %q", what, env, event, path, oldPath)
		}
		if _, ok := env["BASEFS_OLD_PATH"]; ok != (oldPath != "") {
			t.Fatalf("%s: BASEFS_OLD_PATH set: %v", what, env)
		}
		if len(env["BASEFS_ENTRY"]) != 64 || env["BASEFS_AUTHOR"] != fingerprint(root) {
			t.Fatalf("%s: entry/author %v", what, env)
		}
	}
	step("write", func() error { write(t, r, "/etc/app.conf", "port=81\n"); return nil }, "write", "/etc/app.conf", "")
	step("rename", func() error { return r.Rename(root, "/etc/app.conf", "/etc/app2.conf", false) }, "rename", "/etc/app2.conf", "/etc/app.conf")
	mode := uint32(0o600)
	step("chmod", func() error { return r.SetAttr(root, "/etc/app2.conf", &mode, 0, false) }, "mode", "/etc/app2.conf", "")
	step("symlink", func() error { return r.Symlink(root, "app2.conf", "/etc/link", false) }, "link", "/etc/link", "")
	step("mkdir", func() error { return r.Mkdir(root, "/etc/d", 0o755, false, false) }, "mkdir", "/etc/d", "")
	step("grant", func() error { _, err := r.Grant(root, "/etc/d", pub(testKey("alice")), false); return err }, "grant", "/etc/d", "")
	step("delete", func() error { return r.Remove(root, "/etc/link", false, false) }, "delete", "/etc/link", "")
	renamed, _ := log.ParseHash(rec.runs(t)[2].env["BASEFS_ENTRY"])
	h := renamed
	step("revert", func() error { _, err := r.Revert(root, "/etc/app2.conf", h, false); return err }, "revert", "/etc/app2.conf", "")
	rec.quiet(t, n, 100*time.Millisecond)
}

func TestMountEnvironment(t *testing.T) {
	r := newFS(t)
	rec := newRecorder(t, "h", "")
	mnt := t.TempDir()
	cfg := fast(Spec{Script: rec.script})
	cfg.Mount = mnt
	start(t, r, cfg)
	os.Setenv("BASEFS_OLD_PATH", "leaked") // inherited values of basefs's variables never leak
	defer os.Unsetenv("BASEFS_OLD_PATH")
	write(t, r, "/a", "x")
	rs := rec.wait(t, 1, 5*time.Second)
	if rs[0].env["BASEFS_MOUNT"] != mnt || rs[0].pwd != mnt {
		t.Fatalf("env %v pwd %s, want mount %s", rs[0].env, rs[0].pwd, mnt)
	}
	if _, ok := rs[0].env["BASEFS_OLD_PATH"]; ok {
		t.Fatalf("inherited BASEFS_OLD_PATH: %v", rs[0].env)
	}
}

// TestRemoteEnvironment: changes ingested from another node fire with their
// author's fingerprint and entry hash.
func TestRemoteEnvironment(t *testing.T) {
	a := newFS(t)
	b := cloneFS(t, a)
	pos := a.NumEntries()
	rec := newRecorder(t, "h", "")
	start(t, b, fast(Spec{Glob: "/home/**", Script: rec.script}))
	alice := testKey("alice")
	g, err := a.Grant(testKey("root"), "/home/alice", pub(alice), false)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b, &pos)
	rs := rec.wait(t, 1, 5*time.Second)
	// One update: the grant, reported when it starts to count, and the
	// directories it made (order across paths is the view's).
	seen := map[string]bool{}
	for _, c := range rs[0].changes {
		seen[c.Event+" "+c.Path] = true
		if c.Event == "grant" && c != (jsonChange{Event: "grant", Path: "/home/alice", Author: fingerprint(testKey("root")), Entry: g.Hash().String()}) {
			t.Fatalf("grant %+v", c)
		}
	}
	if len(rs[0].changes) != 3 || !seen["grant /home/alice"] || !seen["mkdir /home"] || !seen["mkdir /home/alice"] {
		t.Fatalf("grant batch %+v", rs[0].changes)
	}
	e, err := a.WriteFile(alice, "/home/alice/key", []byte("ssh-ed25519 AAAA"), replica.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b, &pos)
	rs = rec.wait(t, 2, 5*time.Second)
	want := map[string]string{
		"BASEFS_EVENT": "create", "BASEFS_PATH": "/home/alice/key", "BASEFS_NAME": "test",
		"BASEFS_AUTHOR": fingerprint(alice), "BASEFS_ENTRY": e.Hash().String(), "BASEFS_COUNT": "1",
	}
	if fmt.Sprint(rs[1].env) != fmt.Sprint(want) {
		t.Fatalf("env %v\nwant %v", rs[1].env, want)
	}
	if err := a.Rename(alice, "/home/alice/key", "/home/alice/key2", false); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b, &pos)
	rs = rec.wait(t, 3, 5*time.Second)
	if env := rs[2].env; env["BASEFS_EVENT"] != "rename" || env["BASEFS_OLD_PATH"] != "/home/alice/key" || env["BASEFS_AUTHOR"] != fingerprint(alice) {
		t.Fatalf("rename env %v", env)
	}
	rec.quiet(t, 3, 100*time.Millisecond)
}

// randomData is incompressible (so it needs blocks), and seeded.
func randomData(n int) []byte {
	b := make([]byte, n)
	mrand.New(mrand.NewSource(int64(n))).Read(b)
	return b
}

// TestWaitsForContent: a remote write whose blocks come later fires only
// once they are here.
func TestWaitsForContent(t *testing.T) {
	a := newFS(t)
	b := cloneFS(t, a)
	pos := a.NumEntries()
	rec := newRecorder(t, "h", "")
	rn := start(t, b, fast(Spec{Script: rec.script}))
	big := randomData(40 << 10)
	e, err := a.WriteFile(testKey("root"), "/big", big, replica.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, a, "/small", "x") // another path is not held back
	transfer(t, a, b, &pos)
	rs := rec.wait(t, 1, 5*time.Second)
	if c := allChanges(rs); len(c) != 1 || c[0].Path != "/small" {
		t.Fatalf("before the blocks: %+v", c)
	}
	rec.quiet(t, 1, 200*time.Millisecond)
	if s := rn.Stats(); s.Held != 1 || s.Pending != 1 {
		t.Fatalf("stats %+v, want one held", s)
	}
	// A later change of the held path waits behind it.
	mode := uint32(0o600)
	if err := a.SetAttr(testKey("root"), "/big", &mode, 0, false); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b, &pos)
	rec.quiet(t, 1, 200*time.Millisecond)
	if nb := transferBlocks(t, a, b, "/big"); nb == 0 {
		t.Fatal("the file has no blocks")
	}
	if !b.ContentComplete(e.Content) {
		t.Fatal("content incomplete after the blocks")
	}
	rs = rec.wait(t, 2, 5*time.Second)
	if c := rs[1].changes; len(c) != 2 || c[0].Event != "create" || c[0].Entry != e.Hash().String() || c[1].Event != "mode" {
		t.Fatalf("after the blocks: %+v", c)
	}
	if s := rn.Stats(); s.Held != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestSupersededContentDoesNotStall: a version whose blocks never come is
// released with the next complete version of its path.
func TestSupersededContentDoesNotStall(t *testing.T) {
	a := newFS(t)
	b := cloneFS(t, a)
	pos := a.NumEntries()
	rec := newRecorder(t, "h", "")
	start(t, b, fast(Spec{Script: rec.script}))
	write(t, a, "/f", string(randomData(40<<10)))
	transfer(t, a, b, &pos)
	rec.quiet(t, 0, 150*time.Millisecond)
	write(t, a, "/f", "small now")
	transfer(t, a, b, &pos)
	rs := rec.wait(t, 1, 5*time.Second)
	if c := allChanges(rs); len(c) != 2 || c[0].Event != "create" || c[1].Event != "write" {
		t.Fatalf("changes %+v", c)
	}
}

func TestGlobFiltering(t *testing.T) {
	r := newFS(t)
	root := testKey("root")
	deep := newRecorder(t, "deep", "")
	top := newRecorder(t, "top", "")
	all := newRecorder(t, "all", "")
	start(t, r, fast(Spec{Glob: "/etc/**/*.conf", Script: deep.script}, Spec{Glob: "*.conf", Script: top.script},
		Spec{Script: all.script}))
	for _, p := range []string{"/a.conf", "/etc/b.conf", "/etc/x/c.conf", "/etc/x/d.txt", "/z/e.conf", "/tmp/q"} {
		write(t, r, p, p)
	}
	if err := r.Rename(root, "/etc/b.conf", "/tmp/b.bak", false); err != nil { // matches by its old path
		t.Fatal(err)
	}
	if err := r.Rename(root, "/tmp/q", "/etc/q.conf", false); err != nil { // by its new path
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	paths := func(rec *recorder) string {
		rec.wait(t, 1, 5*time.Second)
		var out []string
		for _, c := range allChanges(rec.runs(t)) {
			s := c.Event + " " + c.Path
			if c.OldPath != "" {
				s += " <" + c.OldPath
			}
			out = append(out, s)
		}
		return strings.Join(out, ", ")
	}
	if got, want := paths(deep), "create /etc/b.conf, create /etc/x/c.conf, rename /tmp/b.bak </etc/b.conf, rename /etc/q.conf </tmp/q"; got != want {
		t.Errorf("/etc/**/*.conf saw %s\nwant %s", got, want)
	}
	if got, want := paths(top), "create /a.conf"; got != want {
		t.Errorf("*.conf saw %s\nwant %s", got, want)
	}
	// 6 creates, 4 mkdirs (/etc /etc/x /z /tmp), 2 renames.
	if got := paths(all); strings.Count(got, ",")+1 != 12 {
		t.Errorf("no glob saw %s", got)
	}
}

// TestCoalescing: a burst of 100 writes runs the script once or a few times,
// with every change on stdin, in order per path.
func TestCoalescing(t *testing.T) {
	r := newFS(t)
	rec := newRecorder(t, "h", "")
	cfg := fast(Spec{Script: rec.script})
	cfg.Quiet = DefaultQuiet
	cfg.MaxDelay = DefaultMaxDelay
	start(t, r, cfg)
	want := map[string][]string{}
	for i := 0; i < 100; i++ {
		p := fmt.Sprintf("/f%d", i%10)
		e := write(t, r, p, fmt.Sprint(i))
		want[p] = append(want[p], e.Hash().String())
	}
	deadline := time.Now().Add(10 * time.Second)
	var rs []run
	total := 0
	for total < 100 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		rs = rec.runs(t)
		total = 0
		for _, r := range rs {
			n, _ := strconv.Atoi(r.env["BASEFS_COUNT"])
			total += n
			if n != len(r.changes) {
				t.Fatalf("BASEFS_COUNT %d with %d lines", n, len(r.changes))
			}
		}
	}
	if total != 100 || len(rs) > 3 {
		t.Fatalf("%d runs with %d changes, want ≤ 3 runs with 100", len(rs), total)
	}
	t.Logf("100 writes: %d run(s)", len(rs))
	got := map[string][]string{}
	for _, c := range allChanges(rs) {
		got[c.Path] = append(got[c.Path], c.Entry)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("changes per path differ from the writes, or are out of order")
	}
	rec.quiet(t, len(rs), 300*time.Millisecond)
}

// TestMaxDelay: a steady stream never quiet for the quiet period still runs
// the script every MaxDelay.
func TestMaxDelay(t *testing.T) {
	r := newFS(t)
	rec := newRecorder(t, "h", "")
	cfg := fast(Spec{Script: rec.script})
	cfg.Quiet = 100 * time.Millisecond
	cfg.MaxDelay = 250 * time.Millisecond
	start(t, r, cfg)
	t0 := time.Now()
	for time.Since(t0) < 900*time.Millisecond {
		write(t, r, "/f", time.Now().String())
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(rec.runs(t)); n < 2 {
		t.Fatalf("%d runs during a 900 ms stream with a 250 ms maximum delay", n)
	}
}

// TestOverflowMerges: a slow script under a storm: its batch is folded per
// path, counted, and no path is lost.
func TestOverflowMerges(t *testing.T) {
	r := newFS(t)
	root := testKey("root")
	gate := filepath.Join(t.TempDir(), "gate")
	rec := newRecorder(t, "h", fmt.Sprintf("while [ ! -e '%s' ]; do sleep 0.01; done", gate))
	cfg := fast(Spec{Script: rec.script})
	cfg.MaxPending = 30
	rn := start(t, r, cfg)
	write(t, r, "/first", "x")
	for rn.Stats().Running == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 200; i++ {
		write(t, r, fmt.Sprintf("/p%d", i%20), fmt.Sprint(i))
	}
	if err := r.Rename(root, "/p0", "/moved", false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		write(t, r, "/moved", fmt.Sprint(i))
	}
	s := rn.Stats()
	if s.Pending > 2*30+1 || s.Merged == 0 {
		t.Fatalf("stats %+v: the batch was not folded", s)
	}
	os.WriteFile(gate, nil, 0o644)
	var rs []run
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs = rec.runs(t)
		count := 0
		for _, r := range rs {
			n, _ := strconv.Atoi(r.env["BASEFS_COUNT"])
			count += n
		}
		if count == 252 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("changes counted %d, want 252", count)
		}
		time.Sleep(10 * time.Millisecond)
	}
	last := map[string]jsonChange{}
	merged := 0
	for _, c := range allChanges(rs) {
		last[c.Path] = c
		merged += c.Merged
	}
	if len(last) != 22 || last["/moved"].Event != "write" {
		t.Fatalf("paths %d (want 20 + /moved): %+v", len(last), last)
	}
	var sawRename bool
	for _, c := range allChanges(rs) {
		sawRename = sawRename || (c.Event == "rename" && c.OldPath == "/p0")
	}
	if !sawRename {
		t.Fatal("the rename (the only news that /p0 went away) was folded")
	}
	if merged == 0 || uint64(merged) != rn.Stats().Merged {
		t.Fatalf("merged %d, stats %+v", merged, rn.Stats())
	}
	for _, r := range rs {
		if m := r.env["BASEFS_MERGED"]; m != "" {
			return
		}
	}
	t.Fatal("no BASEFS_MERGED")
}

// TestListenerNeverBlocks: writes go at full speed while every script hangs.
func TestListenerNeverBlocks(t *testing.T) {
	r := newFS(t)
	rec := newRecorder(t, "h", "sleep 30")
	cfg := fast(Spec{Script: rec.script})
	cfg.Concurrency = 1
	rn := start(t, r, cfg)
	write(t, r, "/first", "x")
	for rn.Stats().Running == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Now()
	for i := 0; i < 500; i++ {
		write(t, r, fmt.Sprintf("/f%d", i), "x")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("500 writes took %v while a handler hung", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := rn.Stop(ctx); err == nil {
		t.Fatal("Stop with a hung script returned no error")
	}
}
