package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/basefs/basefs/fsapi"
	"github.com/basefs/basefs/handlers"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/syncproto"
)

// demoNode is one node of the demo cluster.
type demoNode struct {
	home, addr string
	mnt        string // mount point, when mounted
	n          *node.Node
	a          *Agent
}

// DemoConfig configures RunDemo.
type DemoConfig struct {
	// Dir holds the three nodes' homes, mount points and the handler's
	// files; it must exist.
	Dir string
	// Out receives the demo's narration.
	Out io.Writer
	// Binary is the basefs executable the narration's commands (and the
	// handler script) call.
	Binary string
	// Logger receives the nodes' logs (default: discard).
	Logger *slog.Logger
}

// RunDemo starts a local 3-node cluster on 127.0.0.1-3 in cfg.Dir: one
// filesystem, a grant, each node's tree mounted (when FUSE is usable), a
// handler on node 3, sample configuration written on node 1 and node 3;
// it narrates each step and the commands to try, runs until ctx is done,
// and stops the cluster.
func RunDemo(ctx context.Context, cfg DemoConfig) error {
	dir := cfg.Dir
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, format+"\n", args...) }

	port, err := demoPort()
	if err != nil {
		return err
	}
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	var nodes []*demoNode
	var addrs []string
	for i, ip := range ips {
		nd := &demoNode{home: filepath.Join(dir, fmt.Sprintf("node%d", i+1)), addr: net.JoinHostPort(ip, fmt.Sprint(port))}
		nodes = append(nodes, nd)
		addrs = append(addrs, nd.addr)
	}
	say("basefs demo: a 3-node cluster in %s", dir)
	// One operator's key on every node; node 3 also has a key of its own,
	// granted /nodes/node3 only.
	key, err := log.GenerateKeyFile(filepath.Join(nodes[0].home, "id_ed25519"), false)
	if err != nil {
		return fmt.Errorf("demo key: %v", err)
	}
	for _, nd := range nodes[1:2] {
		if err := copyKey(nodes[0].home, nd.home); err != nil {
			return err
		}
	}
	own, err := log.GenerateKeyFile(filepath.Join(nodes[2].home, "id_ed25519"), false)
	if err != nil {
		return err
	}
	r, err := replica.Create(filepath.Join(nodes[0].home, "fs", "demo"), "demo", key, addrs, replica.Options{Logger: lg})
	if err != nil {
		return err
	}
	if _, err := r.Grant(key, "/nodes/node3", own.Public().(ed25519.PublicKey), true); err != nil {
		r.Close()
		return err
	}
	r.Close()
	say("  created filesystem demo; root key %s", log.ShortFingerprint(key.Public().(ed25519.PublicKey)))

	defer func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			nodes[i].shutdown()
		}
	}()
	mounted := demoCanMount() == nil
	// A handler on node 3: whenever something under /etc/hosts.d changes,
	// regenerate a hosts file from the tree and "reload" the service (the
	// README's example, with a log line standing in for the reload).
	hlog := filepath.Join(dir, "node3-handler.log")
	generated := filepath.Join(dir, "node3-hosts")
	script := filepath.Join(dir, "regenerate-hosts.sh")
	cat := fmt.Sprintf("%s --home %s", cfg.Binary, nodes[2].home)
	if err := os.WriteFile(script, []byte(demoHandler(cat, generated, hlog)), 0o755); err != nil {
		return err
	}
	startNode := func(i int, nd *demoNode) error {
		fsDir := filepath.Join(nd.home, "fs", "demo")
		cfg := Config{Logger: lg, HandlerStopTimeout: 10 * time.Second, Control: true,
			Node: node.Config{Dir: fsDir, Bind: nd.addr, SyncInterval: 2 * time.Second, RetryInterval: time.Second}}
		if mounted {
			nd.mnt = filepath.Join(nd.home, "mnt")
			if err := os.MkdirAll(nd.mnt, 0o755); err != nil {
				return err
			}
			k := key
			if i == 2 {
				k = own
			}
			cfg.MountDir, cfg.Mount = nd.mnt, fsapi.Options{Key: k, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
		}
		if i == 2 {
			cfg.Handlers = handlers.Config{Specs: []handlers.Spec{{Glob: "/etc/hosts.d/**", Script: script}}, Name: "demo", StateDir: fsDir}
		}
		a, err := Start(cfg)
		if err != nil {
			return fmt.Errorf("node at %s: %v", nd.addr, err)
		}
		nd.a, nd.n = a, a.Node()
		return nil
	}
	if err := startNode(0, nodes[0]); err != nil {
		return err
	}
	for i, nd := range nodes[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := syncproto.GetWithOptions(ctx, nil, mustSyncAddr(nodes[0].addr), filepath.Join(nd.home, "fs", "demo"), "demo", nil,
			syncproto.GetOptions{Logger: lg})
		cancel()
		if err != nil {
			return fmt.Errorf("get into %s: %v", nd.home, err)
		}
		if err := startNode(i+1, nd); err != nil {
			return err
		}
	}
	say("  nodes running at %s", strings.Join(addrs, ", "))
	if mounted {
		say("  mounted each node's tree at %s/node{1,2,3}/mnt", dir)
	} else {
		say("  (not mounting: %v)", demoCanMount())
	}

	if err := demoWaitMembers(nodes, 30*time.Second); err != nil {
		return err
	}
	say("  membership: all 3 nodes see each other")
	// Sample configuration, written on node 1.
	sample := map[string]string{
		"/etc/app/app.conf":     "listen = 0.0.0.0:8080\nworkers = 4\n",
		"/etc/app/users":        "alice\nbob\n",
		"/etc/hosts.d/node1":    addrs[0] + "\n",
		"/nodes/node3/location": "rack 3, the one by the window\n",
	}
	start := time.Now()
	for _, path := range []string{"/etc/app/app.conf", "/etc/app/users", "/etc/hosts.d/node1"} {
		if mounted {
			// Through the mount, with ordinary file calls.
			p := filepath.Join(nodes[0].mnt, filepath.FromSlash(path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(sample[path]), 0o644); err != nil {
				return err
			}
		} else if _, err := nodes[0].n.Replica().WriteFile(key, path, []byte(sample[path]), replica.WriteOptions{Parents: true, Sync: true}); err != nil {
			return err
		}
	}
	if _, err := nodes[2].n.Replica().WriteFile(own, "/nodes/node3/location", []byte(sample["/nodes/node3/location"]), replica.WriteOptions{Parents: true, Sync: true}); err != nil {
		return err
	}
	if mounted {
		say("  wrote 3 files into node 1's mount, and 1 on node 3 (with node 3's own key)")
	} else {
		say("  wrote 3 files on node 1 and 1 on node 3 (with node 3's own key)")
	}
	if err := demoWaitConverged(nodes, 30*time.Second); err != nil {
		return err
	}
	say("  converged in %s: every node shows view hash %s", time.Since(start).Round(time.Millisecond),
		nodes[0].n.Replica().Status().ViewHash[:16])
	if mounted {
		if b, err := os.ReadFile(filepath.Join(nodes[1].mnt, "etc", "app", "app.conf")); err == nil {
			say("  node 2's mount shows etc/app/app.conf:\n%s", indent(string(b), "    "))
		}
	}
	waitFile(hlog, 5*time.Second)
	if b, err := os.ReadFile(hlog); err == nil {
		say("  node 3's handler ran:\n%s", indent(string(b), "    "))
	}
	bin := cfg.Binary
	say("\nTry it (in another terminal):")
	if mounted {
		say("  ls -l %s/etc/app", nodes[1].mnt)
		say("  echo '10.0.0.2 node2' > %s/etc/hosts.d/node2      # then: cat %s", nodes[0].mnt, generated)
		say("  vi %s/etc/app/app.conf                          # and watch %s/etc/app/app.conf", nodes[0].mnt, nodes[2].mnt)
	}
	say("  echo 'workers = 8' | %s --home %s write demo:/etc/app/app.conf", bin, nodes[0].home)
	say("  %s --home %s cat demo:/etc/app/app.conf", bin, nodes[2].home)
	say("  %s --home %s log demo:/etc", bin, nodes[2].home)
	say("  %s --home %s status demo", bin, nodes[1].home)
	say("  tail -f %s", hlog)
	say("\nStop the demo with Ctrl-C (everything stays in %s).", dir)

	<-ctx.Done()
	say("stopping the demo cluster")
	return nil
}

func (nd *demoNode) shutdown() {
	if nd.a != nil {
		nd.a.Stop()
	}
}

func demoWaitMembers(nodes []*demoNode, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ok := true
		for _, nd := range nodes {
			alive := 0
			for _, m := range nd.n.Status().Members {
				if m.Status == "alive" {
					alive++
				}
			}
			ok = ok && alive == len(nodes)
		}
		if ok {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the demo nodes did not find each other within 30s (is 127.0.0.2-3 usable on this host?)")
}

func demoWaitConverged(nodes []*demoNode, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		h := nodes[0].n.Replica().Status().ViewHash
		ok := true
		for _, nd := range nodes[1:] {
			ok = ok && nd.n.Replica().Status().ViewHash == h && nd.n.Replica().Status().MissingBlocks == 0
		}
		if ok {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the demo nodes did not converge within 30s")
}

// demoPort finds a port free on 127.0.0.1-3 (TCP and UDP), with the next
// one free for TCP.
func demoPort() (int, error) {
	for p := 27946; p < 28946; p += 2 {
		ok := true
		var closers []func() error
		for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
			if l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(p))); err == nil {
				closers = append(closers, l.Close)
			} else {
				ok = false
			}
			if c, err := net.ListenPacket("udp", net.JoinHostPort(ip, fmt.Sprint(p))); err == nil {
				closers = append(closers, c.Close)
			} else {
				ok = false
			}
			if l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(p+1))); err == nil {
				closers = append(closers, l.Close)
			} else {
				ok = false
			}
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no free port pair on 127.0.0.1-3 between 27946 and 28946")
}

func mustSyncAddr(addr string) string {
	s, _ := node.SyncAddr(addr)
	return s
}

func copyKey(from, to string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	for _, name := range []string{"id_ed25519", "id_ed25519.pub"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if name == "id_ed25519" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(to, name), b, mode); err != nil {
			return err
		}
	}
	return nil
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// demoCanMount says why the demo cannot mount, or nil.
func demoCanMount() error {
	if err := fsapi.Supported(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount"); err != nil {
			return errors.New("fusermount is not installed")
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("/dev/fuse is not available")
	}
	return nil
}

// demoHandler is the script of the demo's handler: it rebuilds a hosts file
// from /etc/hosts.d in the tree and logs the "reload".
func demoHandler(basefs, generated, logfile string) string {
	return `#!/bin/sh
# basefs demo handler: regenerate a service's configuration from the tree,
# then reload the service (here: a log line). Runs on node 3 for every batch
# of changes under /etc/hosts.d.
set -e
out=` + generated + `
tmp="$out.tmp.$$"
: > "$tmp"
if [ -n "$BASEFS_MOUNT" ]; then
	# Mounted: read the tree like any directory.
	for f in "$BASEFS_MOUNT"/etc/hosts.d/*; do
		[ -f "$f" ] && cat "$f" >> "$tmp"
	done
else
	for f in $(` + basefs + ` ls demo:/etc/hosts.d 2>/dev/null); do
		` + basefs + ` cat "demo:/etc/hosts.d/$f" >> "$tmp"
	done
fi
mv "$tmp" "$out"
echo "$(date +%T) $BASEFS_EVENT $BASEFS_PATH ($BASEFS_COUNT change(s)): regenerated $out, reloading the service" >> ` + logfile + `
`
}

// waitFile waits until the file exists and is not empty.
func waitFile(p string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
