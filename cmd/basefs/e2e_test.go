package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests with real basefs processes on 127.0.0.x.

var builtBinary struct {
	once sync.Once
	path string
	err  error
}

// basefsBinary builds the command once per test process.
func basefsBinary(t *testing.T) string {
	t.Helper()
	builtBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "basefs-e2e-bin")
		if err != nil {
			builtBinary.err = err
			return
		}
		builtBinary.path = filepath.Join(dir, "basefs")
		out, err := exec.Command("go", "build", "-o", builtBinary.path, ".").CombinedOutput()
		if err != nil {
			builtBinary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if builtBinary.err != nil {
		t.Fatal(builtBinary.err)
	}
	return builtBinary.path
}

// e2eNode is one home and, when running, its node process.
type e2eNode struct {
	t    *testing.T
	bin  string
	home string
	addr string
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

func (n *e2eNode) basefs(stdin string, args ...string) (string, error) {
	cmd := exec.Command(n.bin, append([]string{"--home", n.home}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("basefs %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (n *e2eNode) must(stdin string, args ...string) string {
	n.t.Helper()
	out, err := n.basefs(stdin, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

func (n *e2eNode) start(extra ...string) {
	n.t.Helper()
	f, err := os.OpenFile(filepath.Join(n.home, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	n.log = f
	args := append([]string{"--home", n.home, "--log-level", "debug", "run", "demo", "--bind", n.addr, "--sync-interval", "1s"}, extra...)
	n.cmd = exec.Command(n.bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan error, 1)
	go func() { n.done <- n.cmd.Wait() }()
	waitUntil(n.t, 20*time.Second, n.addr+" running", func() bool {
		st, err := n.status()
		return err == nil && st.Running
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (n *e2eNode) stop() {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("node %s exited with %v; log:\n%s", n.addr, err, n.tail())
		}
	case <-time.After(20 * time.Second):
		n.cmd.Process.Kill()
		n.t.Errorf("node %s did not stop within 20s; log:\n%s", n.addr, n.tail())
	}
	n.cmd = nil
	n.log.Close()
}

func (n *e2eNode) tail() string {
	b, _ := os.ReadFile(filepath.Join(n.home, "node.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

type e2eStatus struct {
	Running  bool   `json:"running"`
	ViewHash string `json:"view_hash"`
	Entries  int    `json:"entries"`
	Members  []struct {
		Name, Status string
	} `json:"members"`
}

func (n *e2eNode) status() (e2eStatus, error) {
	var st e2eStatus
	out, err := n.basefs("", "status", "demo", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

// e2ePort finds a port free for TCP and UDP on every given IP, with the next
// port free for TCP.
func e2ePort(t *testing.T, ips []string) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		p := 20000 + int(time.Now().UnixNano()%20000)
		ok := true
		var closers []func() error
		for _, ip := range ips {
			for _, spec := range []struct {
				network string
				port    int
			}{{"tcp", p}, {"udp", p}, {"tcp", p + 1}} {
				a := net.JoinHostPort(ip, fmt.Sprint(spec.port))
				if spec.network == "udp" {
					c, err := net.ListenPacket("udp", a)
					if err != nil {
						ok = false
						break
					}
					closers = append(closers, c.Close)
				} else {
					l, err := net.Listen("tcp", a)
					if err != nil {
						ok = false
						break
					}
					closers = append(closers, l.Close)
				}
			}
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func allEqual(t *testing.T, nodes []*e2eNode) bool {
	var first string
	for i, n := range nodes {
		st, err := n.status()
		if err != nil {
			return false
		}
		if i == 0 {
			first = st.ViewHash
		} else if st.ViewHash != first {
			return false
		}
	}
	return true
}

func TestEndToEndFiveProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs 5 node processes: full tier")
	}
	bin := basefsBinary(t)
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	port := e2ePort(t, ips)
	base := t.TempDir()
	var nodes []*e2eNode
	for i, ip := range ips {
		n := &e2eNode{t: t, bin: bin, home: filepath.Join(base, fmt.Sprintf("home%d", i+1)), addr: fmt.Sprintf("%s:%d", ip, port)}
		n.must("", "genkey")
		nodes = append(nodes, n)
	}
	defer func() {
		for _, n := range nodes {
			if n.cmd != nil {
				n.stop()
			}
		}
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("log of %s:\n%s", n.addr, n.tail())
			}
		}
	}()
	first := nodes[0]
	first.must("", "bootstrap", "demo", "--addr", first.addr)
	first.must("", "grant", "demo:/nodes/n2", filepath.Join(nodes[1].home, "id_ed25519.pub"))
	first.start()
	// Node 5 runs a handler on /etc/**.
	hlog := filepath.Join(base, "handler.log")
	script := filepath.Join(base, "handler.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$BASEFS_EVENT $BASEFS_PATH $BASEFS_NAME $BASEFS_AUTHOR $BASEFS_ENTRY\" >> "+hlog+"\n"), 0o755)
	for i, n := range nodes[1:] {
		n.must("", "get", "demo", first.addr)
		if i == 3 {
			n.start("--handler", "/etc/**="+script)
		} else {
			n.start()
		}
	}
	waitUntil(t, 30*time.Second, "5 alive members everywhere", func() bool {
		for _, n := range nodes {
			st, err := n.status()
			if err != nil {
				return false
			}
			alive := 0
			for _, m := range st.Members {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != 5 {
				return false
			}
		}
		return true
	})
	// Writes on two nodes, with two keys.
	first.must("port=80\n", "write", "demo:/etc/app/app.conf")
	nodes[1].must("n2 config\n", "write", "demo:/nodes/n2/config")
	big := strings.Repeat("0123456789abcdef", 20000) // 320 KB: hundreds of blocks
	nodes[1].must(big, "write", "demo:/nodes/n2/big")
	// A key without authority is refused at its own node.
	if _, err := nodes[2].basefs("x", "write", "demo:/etc/x"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("write without authority: %v", err)
	}
	waitUntil(t, 30*time.Second, "equal view hashes on 5 nodes", func() bool { return allEqual(t, nodes) })
	for _, n := range nodes {
		if got := n.must("", "cat", "demo:/nodes/n2/big"); got != big {
			t.Fatalf("%s: big file differs (%d bytes)", n.addr, len(got))
		}
	}
	// The remote write fired node 5's handler, with the contract's variables.
	rootFP := strings.TrimSpace(first.must("", "fingerprint"))
	waitUntil(t, 20*time.Second, "the handler on node 5", func() bool {
		b, _ := os.ReadFile(hlog)
		return strings.Contains(string(b), "create /etc/app/app.conf demo "+rootFP+" ")
	})
	// A node down during writes catches up when it comes back.
	nodes[2].stop()
	first.must("v2\n", "write", "demo:/etc/app/app.conf")
	nodes[3].must("", "mkdir", "-p", "demo:/tmp/made/while/n3/was/down", "--key", filepath.Join(first.home, "id_ed25519"))
	up := []*e2eNode{nodes[0], nodes[1], nodes[3], nodes[4]}
	waitUntil(t, 30*time.Second, "equal views without n3", func() bool { return allEqual(t, up) })
	nodes[2].start()
	waitUntil(t, 30*time.Second, "n3 to catch up", func() bool { return allEqual(t, nodes) })
	if got := nodes[2].must("", "cat", "demo:/etc/app/app.conf"); got != "v2\n" {
		t.Fatalf("n3 after restart: %q", got)
	}
}

func TestEndToEndGossipKeyRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes: full tier")
	}
	bin := basefsBinary(t)
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	port := e2ePort(t, ips)
	base := t.TempDir()
	var nodes []*e2eNode
	for i, ip := range ips {
		nodes = append(nodes, &e2eNode{t: t, bin: bin, home: filepath.Join(base, fmt.Sprintf("h%d", i)), addr: fmt.Sprintf("%s:%d", ip, port)})
	}
	defer func() {
		for _, n := range nodes {
			if n.cmd != nil {
				n.stop()
			}
		}
	}()
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.must("", "genkey")
	a.must("", "bootstrap", "demo", "--addr", a.addr)
	k1, k2 := filepath.Join(base, "k1"), filepath.Join(base, "k2")
	a.must("", "gossip-key", "generate", k1)
	a.must("", "gossip-key", "generate", k2)
	a.must("secret=42\n", "write", "demo:/etc/secret")
	a.start("--encrypt", k1)
	// Without the secret, get learns nothing: sync is encrypted too.
	if out, err := b.basefs("", "get", "demo", a.addr); err == nil || !strings.Contains(err.Error(), "give --encrypt KEYFILE") {
		t.Fatalf("get without the secret: %v %q", err, out)
	}
	if out, err := b.basefs("", "get", "demo", a.addr, "--encrypt", k2); err == nil || !strings.Contains(err.Error(), "does not accept this cluster secret") {
		t.Fatalf("get with another key: %v %q", err, out)
	}
	if got := probeSync(t, a.addr); strings.Contains(got, "secret=42") || strings.Contains(got, "demo") {
		t.Fatalf("a plaintext client read %q from the sync port", got)
	}
	b.must("", "get", "demo", a.addr, "--encrypt", k1)
	if got := b.must("", "cat", "demo:/etc/secret"); got != "secret=42\n" {
		t.Fatalf("get with the secret: %q", got)
	}
	b.start("--encrypt", k1)
	waitUntil(t, 20*time.Second, "a and b to meet", func() bool { st, _ := b.status(); return len(st.Members) == 2 })
	a.must("", "gossip-key", "demo", "install", k2)
	a.must("", "gossip-key", "demo", "use", k2)
	a.must("", "gossip-key", "demo", "remove", k1)
	// Still one cluster after the rotation.
	a.must("rotated\n", "write", "demo:/after")
	waitUntil(t, 20*time.Second, "a write after the rotation to reach b", func() bool {
		out, err := b.basefs("", "cat", "demo:/after")
		return err == nil && out == "rotated\n"
	})
	// b restarts with the old key file: the persisted keyring wins.
	b.stop()
	b.start("--encrypt", k1)
	a.must("again\n", "write", "demo:/again")
	waitUntil(t, 20*time.Second, "b, restarted, to get a's write", func() bool {
		out, err := b.basefs("", "cat", "demo:/again")
		return err == nil && out == "again\n"
	})
	// A newcomer with only the retired key cannot get, nor join.
	if _, err := c.basefs("", "get", "demo", a.addr, "--encrypt", k1); err == nil {
		t.Fatal("get with the retired key succeeded")
	}
	c.must("", "get", "demo", a.addr, "--encrypt", k2)
	c.start("--encrypt", k1)
	time.Sleep(3 * time.Second)
	if st, _ := c.status(); len(st.Members) > 1 {
		t.Fatalf("a node with the retired key joined: %+v", st.Members)
	}
}

// probeSync speaks plaintext to a node's sync port (a syncproto hello, or
// anything) and returns whatever came back within a few seconds.
func probeSync(t *testing.T, addr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscanf(port, "%d", &p)
	c, err := net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(p+1)))
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	c.Write([]byte("BFSY\x01\x00\x10hello, plaintext"))
	b, _ := io.ReadAll(c)
	return string(b)
}
