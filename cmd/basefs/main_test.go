package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"time"

	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/node"
)

// cli runs basefs commands in-process against one home.
type cli struct {
	t    *testing.T
	home string
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, home: t.TempDir()}
}

type result struct {
	code           int
	stdout, stderr string
}

func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string {
			if k == "BASEFS_HOME" {
				return c.home
			}
			return ""
		}}
	code := run(env, args)
	return result{code, out.String(), errb.String()}
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("basefs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with code and a one-line error
// containing want.
func (c *cli) fails(code int, want string, stdin string, args ...string) {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != code {
		c.t.Fatalf("basefs %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), r.code, code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "basefs: ") || !strings.Contains(lines[0], want) {
		c.t.Fatalf("basefs %s: stderr %q, want one line 'basefs: ...%s...'", strings.Join(args, " "), r.stderr, want)
	}
}

func (c *cli) setup() {
	c.ok("", "genkey")
	c.ok("", "bootstrap", "demo", "--addr", "127.0.0.1:7946,127.0.0.2:7946")
}

func TestHelpListsCommands(t *testing.T) {
	c := newCLI(t)
	out := c.ok("", "--help")
	for _, name := range []string{"genkey", "fingerprint", "bootstrap", "ls", "cat", "write", "mkdir", "rm", "mv", "ln", "chmod", "grant", "revoke", "log", "revert", "conflicts", "status", "verify"} {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("help does not list %s", name)
		}
	}
	if got := c.ok("", "help", "write"); !strings.Contains(got, "usage: basefs [--home DIR] write") {
		t.Fatalf("help write: %q", got)
	}
	c.fails(2, "no command given", "")
	c.fails(2, `unknown command "frob"`, "", "frob")
}

func TestKeys(t *testing.T) {
	c := newCLI(t)
	fp := strings.TrimSpace(c.ok("", "genkey"))
	if len(fp) != 32 {
		t.Fatalf("fingerprint %q", fp)
	}
	st, err := os.Stat(filepath.Join(c.home, "id_ed25519"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", st.Mode(), err)
	}
	c.fails(1, "use --force", "", "genkey")
	if got := strings.TrimSpace(c.ok("", "fingerprint")); got != fp {
		t.Fatalf("fingerprint %q, genkey said %q", got, fp)
	}
	if got := strings.TrimSpace(c.ok("", "fingerprint", filepath.Join(c.home, "id_ed25519.pub"))); got != fp {
		t.Fatalf("fingerprint of .pub %q", got)
	}
	fp2 := strings.TrimSpace(c.ok("", "genkey", "--force"))
	if fp2 == fp {
		t.Fatal("--force kept the old key")
	}
	c.fails(1, "no key at", "", "fingerprint", "--key", filepath.Join(c.home, "nope"))
}

func TestFileCommands(t *testing.T) {
	c := newCLI(t)
	c.setup()
	if got := c.ok("", "cat", "demo:/.cluster"); got != "127.0.0.1:7946\n127.0.0.2:7946\n" {
		t.Fatalf("/.cluster = %q", got)
	}
	c.ok("port=80\n", "write", "demo:/etc/app/app.conf")
	if got := c.ok("", "cat", "demo:/etc/app/app.conf"); got != "port=80\n" {
		t.Fatalf("cat = %q", got)
	}
	c.ok("", "mkdir", "-p", "demo:/srv/www/html")
	c.fails(1, "already exists", "", "mkdir", "demo:/srv/www")
	c.ok("", "mv", "demo:/etc/app/app.conf", "demo:/srv") // into the directory
	if got := c.ok("", "ls", "demo:/srv"); got != "app.conf\nwww\n" {
		t.Fatalf("ls /srv = %q", got)
	}
	c.ok("", "ln", "-s", "app.conf", "demo:/srv/current")
	c.ok("", "ln", "demo:/srv/app.conf", "demo:/srv/hard")
	c.ok("", "chmod", "600", "demo:/srv/app.conf")
	long := c.ok("", "ls", "-l", "demo:/srv")
	if !strings.Contains(long, "-rw-------   2") || !strings.Contains(long, "current -> app.conf") {
		t.Fatalf("ls -l:\n%s", long)
	}
	c.fails(1, "directory not empty: /srv", "", "rm", "demo:/srv")
	c.ok("", "rm", "-r", "demo:/srv")
	c.fails(1, "no such file or directory: /srv", "", "ls", "demo:/srv")
	c.fails(2, "mode", "", "chmod", "u+x", "demo:/etc")
	c.fails(2, "not absolute", "", "cat", "demo:etc")
	c.fails(2, "filesystem name", "", "cat", "Demo:/x")
	c.fails(1, "no filesystem other", "", "ls", "other")
}

func TestPermissionDeniedLeavesLogUnchanged(t *testing.T) {
	c := newCLI(t)
	c.setup()
	alice := filepath.Join(c.home, "alice")
	c.ok("", "genkey", "--key", alice)
	c.ok("", "grant", "demo:/home/alice", alice+".pub")
	c.ok("hi", "write", "demo:/home/alice/notes", "--key", alice)
	var before node.Status
	json.Unmarshal([]byte(c.ok("", "status", "demo", "--json")), &before)
	fp := strings.TrimSpace(c.ok("", "fingerprint", "--key", alice))[:8]
	c.fails(1, "permission denied: key "+fp+" has no write authority over /etc/x", "evil", "write", "demo:/etc/x", "--key", alice)
	c.fails(1, "permission denied", "", "rm", "-r", "demo:/home", "--key", alice)
	var after node.Status
	json.Unmarshal([]byte(c.ok("", "status", "demo", "--json")), &after)
	if after.Entries != before.Entries || after.ViewHash != before.ViewHash {
		t.Fatalf("refused commands changed the log: %d -> %d entries", before.Entries, after.Entries)
	}
	// Revoke by fingerprint prefix; the notes stay.
	c.ok("", "revoke", "demo:/home/alice", fp)
	if got := c.ok("", "cat", "demo:/home/alice/notes"); got != "hi" {
		t.Fatalf("notes after revoke: %q", got)
	}
	c.fails(1, "permission denied", "again", "write", "demo:/home/alice/notes", "--key", alice)
}

func TestLogRevertStatusVerify(t *testing.T) {
	c := newCLI(t)
	c.setup()
	c.ok("v1", "write", "demo:/f")
	c.ok("v2", "write", "demo:/f")
	var recs []map[string]any
	if err := json.Unmarshal([]byte(c.ok("", "log", "demo:/f", "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("log /f: %d records", len(recs))
	}
	for _, field := range []string{"hash", "time", "author", "action", "path", "used"} {
		if _, ok := recs[0][field]; !ok {
			t.Fatalf("log --json lacks %q: %v", field, recs[0])
		}
	}
	oldest := recs[1]["hash"].(string)
	c.ok("", "revert", "demo:/f", oldest[:10])
	if got := c.ok("", "cat", "demo:/f"); got != "v1" {
		t.Fatalf("after revert: %q", got)
	}
	c.fails(1, "no entry", "", "revert", "demo:/f", "ffffffff")
	if got := c.ok("", "conflicts", "demo"); got != "no conflicts\n" {
		t.Fatalf("conflicts: %q", got)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(c.ok("", "status", "demo", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"name", "id", "entries", "view_hash", "missing_blocks", "members", "running"} {
		if _, ok := st[field]; !ok {
			t.Fatalf("status --json lacks %q", field)
		}
	}
	if !strings.HasSuffix(c.ok("", "verify", "demo"), "ok\n") {
		t.Fatal("verify did not say ok")
	}
	// Tamper with the middle of the store: verify must fail. (A damaged
	// last record is indistinguishable from a torn append: it is truncated
	// with a warning instead.)
	p := filepath.Join(c.home, "fs", "demo", "store.log")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x55
	os.WriteFile(p, b, 0o600)
	r := c.run("", "verify", "demo")
	if r.code != 1 {
		t.Fatalf("verify of a tampered store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// With a node of this home running, the commands go through its control
// socket (the store is locked by the node, so a local open would fail).
func TestCommandsThroughRunningNode(t *testing.T) {
	c := newCLI(t)
	c.setup()
	a, err := agent.Start(agent.Config{Node: node.Config{Dir: filepath.Join(c.home, "fs", "demo")}, Control: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	c.ok("hello\n", "write", "demo:/etc/motd")
	if got := c.ok("", "cat", "demo:/etc/motd"); got != "hello\n" {
		t.Fatalf("cat through node: %q", got)
	}
	c.ok("", "mkdir", "-p", "demo:/a/b")
	c.ok("", "mv", "demo:/etc/motd", "demo:/a/b")
	c.ok("", "chmod", "640", "demo:/a/b/motd")
	c.fails(1, "directory not empty", "", "rm", "demo:/a")
	alice := filepath.Join(c.home, "alice")
	c.ok("", "genkey", "--key", alice)
	c.ok("", "grant", "demo:/home/alice", alice+".pub")
	c.fails(1, "permission denied: key", "x", "write", "demo:/etc/x", "--key", alice)
	var recs []map[string]any
	json.Unmarshal([]byte(c.ok("", "log", "demo:/a", "--json")), &recs)
	if len(recs) < 3 {
		t.Fatalf("log through node: %d records", len(recs))
	}
	c.ok("", "revert", "demo:/a/b/motd", recs[0]["hash"].(string)[:12])
	var st map[string]any
	json.Unmarshal([]byte(c.ok("", "status", "demo", "--json")), &st)
	if st["running"] != true {
		t.Fatalf("status through node: running=%v", st["running"])
	}
	if out := c.ok("", "status", "demo", "--check"); !strings.HasPrefix(out, "demo: running, no other member alive") {
		t.Fatalf("status --check of a lone node: %q", out)
	}
	if !strings.HasSuffix(c.ok("", "verify", "demo"), "ok\n") {
		t.Fatal("verify through node")
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("real sockets on 127.0.0.1-3: full tier")
	}
	c := newCLI(t)
	dir := filepath.Join(c.home, "demo")
	out := c.ok("", "demo", "--dir", dir, "--for", "500ms")
	for _, want := range []string{"nodes running at", "all 3 nodes see each other", "converged in", "node 3's handler ran:", "/etc/hosts.d/node1", "regenerated", "stopping the demo cluster"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The handler regenerated the hosts file from the tree (read through
	// the mount; without FUSE it calls the basefs command, which a test
	// binary is not).
	if strings.Contains(out, "mounted each node's tree") {
		if b, err := os.ReadFile(filepath.Join(dir, "node3-hosts")); err != nil || !strings.Contains(string(b), "127.0.0.1:") {
			t.Fatalf("regenerated hosts file: %q %v", b, err)
		}
	}
	// The homes stay usable: a node's store has the sample files.
	if got := c.ok("", "--home", filepath.Join(dir, "node2"), "cat", "demo:/etc/app/users"); got != "alice\nbob\n" {
		t.Fatalf("node2 after the demo: %q", got)
	}
}

// runAsync runs a long-running command in-process until stop is closed.
func (c *cli) runAsync(stop chan struct{}, args ...string) <-chan result {
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, stopped: stop,
			getenv: func(k string) string {
				if k == "BASEFS_HOME" {
					return c.home
				}
				return ""
			}}
		code := run(env, args)
		done <- result{code, out.String(), errb.String()}
	}()
	return done
}

func fuseUsable(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE tests need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("FUSE tests need /dev/fuse")
	}
	if _, err := exec.LookPath("fusermount"); err != nil {
		t.Skip("FUSE tests need fusermount (apt-get install fuse)")
	}
}

func TestMountCommand(t *testing.T) {
	fuseUsable(t)
	c := newCLI(t)
	c.genkeyAndBootstrap(t)
	mnt := filepath.Join(c.home, "mnt")
	os.Mkdir(mnt, 0o755)
	stop := make(chan struct{})
	done := c.runAsync(stop, "mount", "demo", mnt, "--bind", "127.0.0.1:"+fmt.Sprint(freeLoopbackPort(t)))
	waitUntil(t, 20*time.Second, "the mount", func() bool {
		_, err := os.Stat(filepath.Join(mnt, ".cluster"))
		return err == nil
	})
	if err := os.MkdirAll(filepath.Join(mnt, "etc/app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "etc/app/app.conf"), []byte("port=80\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got := c.ok("", "cat", "demo:/etc/app/app.conf"); got != "port=80\n" {
		t.Fatalf("written through the mount, read through the node: %q", got)
	}
	close(stop)
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("mount exited %d: %s", r.code, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mount did not stop")
	}
	if _, err := os.Stat(filepath.Join(mnt, ".cluster")); err == nil {
		t.Fatal("still mounted after the command returned")
	}
}

func (c *cli) genkeyAndBootstrap(t *testing.T) {
	c.ok("", "genkey")
	c.ok("", "bootstrap", "demo", "--addr", "127.0.0.1:7946")
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	return e2ePort(t, []string{"127.0.0.1"})
}

// TestRunBadGossipFlags: run refuses bad slow-link tunings before it starts
// anything.
func TestRunBadGossipFlags(t *testing.T) {
	c := newCLI(t)
	c.setup()
	c.fails(2, "--retransmit-mult", "", "run", "demo", "--retransmit-mult", "0")
	c.fails(2, "--event-buffer", "", "run", "demo", "--event-buffer", "many")
	c.fails(2, "at least 16", "", "run", "demo", "--event-buffer", "8")
}
