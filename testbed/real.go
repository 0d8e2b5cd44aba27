package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RealSpec configures a run of real basefs processes, each a `basefs run`
// node with its own home, on 127.0.77.x (loopback), or — with Netns — each
// in its own network namespace joined by veth pairs to a bridge in a hub
// namespace, on 10.77.0.x, where nftables drops Loss percent of the packets
// each node receives (so each packet is lost with probability Loss, as on
// a simulated link). It measures the same thing as the convergence
// experiment: Objects files written on one node (through `basefs write`,
// i.e. the running node's control socket) until every node's `status
// --json` shows the writer's view hash and no missing block. Status is
// polled, so times are accurate to about one polling round (reported).
type RealSpec struct {
	// Binary is the basefs executable to run.
	Binary       string
	Nodes        int // default 5
	Objects      int // default 16
	Size         int // default 512
	Trials       int // default 5
	Loss         float64
	Netns        bool
	SyncInterval time.Duration // default 5 s
	Seed         int64
	Timeout      time.Duration // per trial, default 120 s
	Dir          string        // homes ("" a temporary directory)
	Logf         func(format string, args ...any)
}

// RealTrial is one measurement on real processes.
type RealTrial struct {
	Trial     int
	Writer    int
	Converged bool
	Seconds   float64
	WriteSec  float64
	PollSec   float64 // how long one round of status polls took
}

// ErrNeedRoot is returned when namespaces are asked for without root, or
// the ip and nft tools are missing.
var ErrNeedRoot = errors.New("testbed: network namespaces need root and the ip and nft tools")

// NetnsAvailable reports whether namespaces can be used here, and why not.
func NetnsAvailable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w (not root)", ErrNeedRoot)
	}
	for _, t := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%w (%s not found)", ErrNeedRoot, t)
		}
	}
	return nil
}

type realNode struct {
	home, addr, ns string
	cmd            *exec.Cmd
	done           chan error
}

type realRun struct {
	spec  RealSpec
	nodes []*realNode
	hub   string
	made  []string // namespaces created, deleted on teardown
}

func (r *realRun) logf(format string, args ...any) {
	if r.spec.Logf != nil {
		r.spec.Logf(format, args...)
	}
}

// basefs runs one CLI command for node i (inside its namespace when inNS).
func (r *realRun) basefs(ctx context.Context, i int, inNS bool, stdin []byte, args ...string) (string, error) {
	n := r.nodes[i]
	argv := append([]string{r.spec.Binary, "--home", n.home}, args...)
	if inNS && n.ns != "" {
		argv = append([]string{"ip", "netns", "exec", n.ns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func run(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setupNetns creates the hub, one namespace per node and the loss rules.
func (r *realRun) setupNetns(ctx context.Context) error {
	prefix := fmt.Sprintf("bftb%d", os.Getpid())
	r.hub = prefix + "-hub"
	cmds := [][]string{
		{"ip", "netns", "add", r.hub},
		{"ip", "-n", r.hub, "link", "set", "lo", "up"},
		{"ip", "-n", r.hub, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", r.hub, "link", "set", "br0", "up"},
	}
	for k, c := range cmds {
		if err := run(ctx, c...); err != nil {
			return err
		}
		if k == 0 {
			r.made = append(r.made, r.hub)
		}
	}
	for i, n := range r.nodes {
		n.ns = fmt.Sprintf("%s-%d", prefix, i)
		if err := run(ctx, "ip", "netns", "add", n.ns); err != nil {
			return err
		}
		r.made = append(r.made, n.ns)
		veth := fmt.Sprintf("vh%d", i)
		ip := fmt.Sprintf("10.77.0.%d", i+1)
		for _, c := range [][]string{
			{"ip", "link", "add", veth, "netns", r.hub, "type", "veth", "peer", "name", "eth0", "netns", n.ns},
			{"ip", "-n", r.hub, "link", "set", veth, "master", "br0"},
			{"ip", "-n", r.hub, "link", "set", veth, "up"},
			{"ip", "-n", n.ns, "link", "set", "lo", "up"},
			{"ip", "-n", n.ns, "addr", "add", ip + "/24", "dev", "eth0"},
			{"ip", "-n", n.ns, "link", "set", "eth0", "up"},
		} {
			if err := run(ctx, c...); err != nil {
				return err
			}
		}
		if r.spec.Loss > 0 {
			rules := fmt.Sprintf("table inet basefs_testbed {\n chain in {\n  type filter hook input priority 0; policy accept;\n  iifname \"eth0\" numgen random mod 100 < %d drop\n }\n}\n", int(math.Round(r.spec.Loss)))
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.ns, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(rules)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("nft in %s: %v: %s", n.ns, err, out)
			}
		}
		n.addr = ip + ":7946"
	}
	return nil
}

// teardown stops the nodes this run started and deletes the namespaces it
// made. It is safe to call more than once.
func (r *realRun) teardown() {
	for _, n := range r.nodes {
		r.stopNode(n)
	}
	for i := len(r.made) - 1; i >= 0; i-- {
		exec.Command("ip", "netns", "del", r.made[i]).Run()
	}
	r.made = nil
}

func (r *realRun) stopNode(n *realNode) {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
	n.cmd = nil
}

func (r *realRun) startNode(ctx context.Context, i int) error {
	n := r.nodes[i]
	f, err := os.OpenFile(filepath.Join(n.home, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	argv := []string{r.spec.Binary, "--home", n.home, "run", "demo", "--bind", n.addr,
		"--sync-interval", r.spec.SyncInterval.String()}
	if n.ns != "" {
		argv = append([]string{"ip", "netns", "exec", n.ns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	n.cmd, n.done = cmd, make(chan error, 1)
	go func() { n.done <- cmd.Wait(); f.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := r.status(ctx, i); err == nil && st.Running {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("node %d did not start; see %s", i, filepath.Join(n.home, "node.log"))
}

type realStatus struct {
	Running       bool   `json:"running"`
	ViewHash      string `json:"view_hash"`
	Entries       int    `json:"entries"`
	MissingBlocks int    `json:"missing_blocks"`
	Members       []struct {
		Status string `json:"status"`
	} `json:"members"`
}

func (r *realRun) status(ctx context.Context, i int) (realStatus, error) {
	var st realStatus
	out, err := r.basefs(ctx, i, false, nil, "status", "demo", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// freePort finds a port free for UDP and TCP on every IP, with the next
// port free for TCP.
func freePort(ips []string, rng *rand.Rand) (int, error) {
	for try := 0; try < 200; try++ {
		p := 20000 + rng.Intn(20000)
		ok := true
		var closers []func() error
		for _, ip := range ips {
			for _, spec := range []struct {
				network string
				port    int
			}{{"tcp", p}, {"udp", p}, {"tcp", p + 1}} {
				a := net.JoinHostPort(ip, strconv.Itoa(spec.port))
				var c interface{ Close() error }
				var err error
				if spec.network == "udp" {
					c, err = net.ListenPacket("udp", a)
				} else {
					c, err = net.Listen("tcp", a)
				}
				if err != nil {
					ok = false
					break
				}
				closers = append(closers, c.Close)
			}
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("testbed: no free port")
}

// defaults fills in the zero fields of s.
func (s *RealSpec) defaults() {
	if s.Nodes < 2 {
		s.Nodes = 5
	}
	if s.Objects <= 0 {
		s.Objects = 16
	}
	if s.Size <= 0 {
		s.Size = 512
	}
	if s.Trials <= 0 {
		s.Trials = 5
	}
	if s.SyncInterval <= 0 {
		s.SyncInterval = 5 * time.Second
	}
	if s.Timeout <= 0 {
		s.Timeout = 120 * time.Second
	}
}

// RunReal runs the real-process experiment and returns its trials.
func RunReal(ctx context.Context, spec RealSpec) ([]RealTrial, error) {
	spec.defaults()
	if spec.Loss > 0 && !spec.Netns {
		return nil, errors.New("testbed: packet loss on real processes needs network namespaces (--netns)")
	}
	if spec.Netns {
		if err := NetnsAvailable(); err != nil {
			return nil, err
		}
	}
	base := spec.Dir
	if base == "" {
		d, err := os.MkdirTemp("", "basefs-testbed-real-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		base = d
	}
	rng := rand.New(rand.NewSource(spec.Seed))
	r := &realRun{spec: spec}
	defer r.teardown()
	for i := 0; i < spec.Nodes; i++ {
		home := filepath.Join(base, fmt.Sprintf("home%d", i))
		if err := os.MkdirAll(home, 0o700); err != nil {
			return nil, err
		}
		r.nodes = append(r.nodes, &realNode{home: home})
	}
	if spec.Netns {
		if err := r.setupNetns(ctx); err != nil {
			return nil, err
		}
	} else {
		var ips []string
		for i := range r.nodes {
			ips = append(ips, fmt.Sprintf("127.0.77.%d", i+1))
		}
		port, err := freePort(ips, rng)
		if err != nil {
			return nil, err
		}
		for i, n := range r.nodes {
			n.addr = net.JoinHostPort(ips[i], strconv.Itoa(port))
		}
	}
	for i := range r.nodes {
		if _, err := r.basefs(ctx, i, false, nil, "genkey"); err != nil {
			return nil, err
		}
	}
	if _, err := r.basefs(ctx, 0, false, nil, "bootstrap", "demo", "--addr", r.nodes[0].addr); err != nil {
		return nil, err
	}
	if _, err := r.basefs(ctx, 0, false, nil, "mkdir", "-p", "demo:"+ObjectDir); err != nil {
		return nil, err
	}
	// Any node may be a trial's writer, each with its own key: the root
	// key grants them the objects' directory.
	for i := 1; i < spec.Nodes; i++ {
		pub := filepath.Join(r.nodes[i].home, "id_ed25519.pub")
		if _, err := r.basefs(ctx, 0, false, nil, "grant", "demo:"+ObjectDir, pub); err != nil {
			return nil, err
		}
	}
	if err := r.startNode(ctx, 0); err != nil {
		return nil, err
	}
	for i := 1; i < spec.Nodes; i++ {
		var err error
		for try := 0; try < 5; try++ {
			if _, err = r.basefs(ctx, i, true, nil, "get", "demo", r.nodes[0].addr); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(rng.Int63n(int64(200 * time.Millisecond))))
		if err := r.startNode(ctx, i); err != nil {
			return nil, err
		}
	}
	r.logf("%d nodes started; waiting for membership", spec.Nodes)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for i := range r.nodes {
			st, err := r.status(ctx, i)
			alive := 0
			for _, m := range st.Members {
				if m.Status == "alive" {
					alive++
				}
			}
			if err != nil || alive != spec.Nodes {
				ok = false
				break
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("testbed: real nodes did not all see each other within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	var trials []RealTrial
	for t := 0; t < spec.Trials; t++ {
		tr, err := r.trial(ctx, rng, t)
		if err != nil {
			return trials, err
		}
		r.logf("real trial %d: converged %v in %.2f s (status polling round %.0f ms)", t, tr.Converged, tr.Seconds, tr.PollSec*1000)
		trials = append(trials, tr)
		time.Sleep(time.Second)
	}
	return trials, nil
}

func (r *realRun) trial(ctx context.Context, rng *rand.Rand, t int) (RealTrial, error) {
	// Writers take turns, starting with node 1 (a granted key, not the
	// root's).
	w := (t + 1) % len(r.nodes)
	tr := RealTrial{Trial: t, Writer: w}
	var start time.Time
	wstart := time.Now()
	for k := 0; k < r.spec.Objects; k++ {
		b := make([]byte, r.spec.Size)
		rng.Read(b)
		if _, err := r.basefs(ctx, w, false, b, "write", fmt.Sprintf("demo:%s/real-t%d-f%d", ObjectDir, t, k)); err != nil {
			return tr, err
		}
		if k == 0 {
			start = time.Now()
		}
	}
	tr.WriteSec = time.Since(wstart).Seconds()
	want, err := r.status(ctx, w)
	if err != nil {
		return tr, err
	}
	done := make([]bool, len(r.nodes))
	var last time.Time
	var rounds []float64
	end := start.Add(r.spec.Timeout)
	for time.Now().Before(end) {
		r0 := time.Now()
		all := true
		for i := range r.nodes {
			if done[i] {
				continue
			}
			st, err := r.status(ctx, i)
			if err == nil && st.Entries >= want.Entries && st.MissingBlocks == 0 {
				// The writer's view may have moved on only by this trial.
				if st.ViewHash == want.ViewHash || i == w {
					done[i], last = true, time.Now()
					continue
				}
			}
			all = false
		}
		rounds = append(rounds, time.Since(r0).Seconds())
		if all {
			tr.Converged = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sort.Float64s(rounds)
	if len(rounds) > 0 {
		tr.PollSec = rounds[len(rounds)/2]
	}
	if tr.Converged {
		tr.Seconds = last.Sub(start).Seconds()
	} else {
		tr.Seconds = r.spec.Timeout.Seconds()
	}
	return tr, nil
}
