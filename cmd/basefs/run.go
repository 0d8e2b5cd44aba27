package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/control"
	"github.com/basefs/basefs/fsapi"
	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/handlers"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/sechan"
	"github.com/basefs/basefs/syncproto"
)

// runFlags are the flags of run (mount adds to them).
var runFlags = []flagSpec{
	keyFlag,
	{name: "bind", value: true, valueFor: "HOST:PORT", help: "where this node listens (PORT gossip, PORT+1 sync); default: its address in /.cluster"},
	{name: "advertise", value: true, valueFor: "HOST:PORT", help: "the address others reach this node at (default --bind)"},
	{name: "join", value: true, repeat: true, valueFor: "HOST:PORT,...", help: "nodes to join, besides those in /.cluster"},
	{name: "profile", value: true, valueFor: "lan|wan|local", help: "gossip timing profile (default lan)"},
	{name: "encrypt", value: true, valueFor: "KEYFILE", help: "encrypt and authenticate gossip, sync and get with the cluster secret in KEYFILE (base64 keys, first is primary)"},
	{name: "sync-interval", value: true, valueFor: "DURATION", help: "anti-entropy period (default 5s)"},
	{name: "retransmit-mult", value: true, valueFor: "N", help: "gossip sends each event N·⌈log10(nodes+1)⌉ times (default 6); lower it on slow links, sync repairs what is missed"},
	{name: "event-buffer", value: true, valueFor: "N", help: "Serf's ring of recent events, sent in every push/pull (default 512); lower it on slow links"},
	{name: "handler", value: true, repeat: true, valueFor: "[GLOB=]SCRIPT", help: "run SCRIPT when a path matching GLOB changes (repeatable)"},
	{name: "handler-initial", help: "fire the handlers once for the current state at start"},
	{name: "handler-timeout", value: true, valueFor: "DURATION", help: "kill a handler script running longer (default 60s)"},
	{name: "mount", value: true, valueFor: "DIR", help: "mount the filesystem at DIR while the node runs"},
	{name: "private", help: "mount without allow_other: only this user may use the mount"},
	{name: "metrics", value: true, valueFor: "HOST:PORT", help: "serve Prometheus metrics at http://HOST:PORT/metrics and health at /healthz"},
	{name: "config", value: true, valueFor: "FILE", help: "read options from a YAML file (option: value); the command line wins"},
}

func cmdGet(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "get", 2, 2); err != nil {
		return err
	}
	name, addr := p.args[0], p.args[1]
	if err := log.ValidateFSName(name); err != nil {
		return usagef("%v", err)
	}
	if err := checkAddr(addr); err != nil {
		return err
	}
	syncAddr, err := node.SyncAddr(addr)
	if err != nil {
		return err
	}
	dir := env.fsDir(name)
	if c, err := control.Dial(dir); err == nil {
		c.Close()
		return fmt.Errorf("a node of this home is running %s; stop it before get (it keeps itself up to date)", name)
	}
	isTerm := false
	if f, ok := env.stderr.(*os.File); ok {
		isTerm = term.IsTerminal(int(f.Fd()))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var dial syncproto.DialFunc
	if kf := p.get("encrypt"); kf != "" {
		keys, err := gossip.ReadKeyFile(kf)
		if err != nil {
			return fmt.Errorf("--encrypt %s: %v", kf, err)
		}
		dial = sechan.Dialer(syncproto.TCPDial, func() []byte { return keys[0] })
	}
	pin := p.get("id")
	if pin != "" {
		if len(pin) < 8 || strings.Trim(strings.ToLower(pin), "0123456789abcdef") != "" {
			return usagef("--id %q: give at least 8 hex digits of the filesystem id", pin)
		}
	}
	res, err := syncproto.GetWithOptions(ctx, dial, syncAddr, dir, name, syncproto.NewProgressPrinter(env.stderr, isTerm),
		syncproto.GetOptions{Logger: env.logger(), ExpectID: pin})
	if errors.Is(err, sechan.ErrNoSecret) {
		return fmt.Errorf("get %s from %s: the node does not accept this cluster secret (is --encrypt the cluster's key file?)", name, addr)
	}
	if err != nil && dial == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, syncproto.ErrForged) {
		return fmt.Errorf("get %s from %s: %v (if the cluster is encrypted, give --encrypt KEYFILE)", name, addr, err)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("get interrupted; what arrived is stored and verified: run 'basefs get %s %s' again to finish", name, addr)
		}
		if errors.Is(err, syncproto.ErrForged) {
			return fmt.Errorf("refused %s's data: %v (nothing of it was stored)", addr, err)
		}
		return fmt.Errorf("get %s from %s: %v", name, addr, err)
	}
	fmt.Fprintf(env.stdout, "fetched %s from %s: %d entries, %d blocks, %s in %s\n", name, addr,
		res.HeldBefore+res.Entries, res.Blocks, byteCount(res.BytesReceived), res.Duration.Round(time.Millisecond))
	fmt.Fprintf(env.stdout, "filesystem id %s (pin it on other machines with --id %s)\n", res.ID, res.ID.String()[:16])
	fmt.Fprintf(env.stdout, "run it with: basefs run %s --bind HOST:PORT\n", name)
	return nil
}

func byteCount(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// localBind picks the address in /.cluster that belongs to this host.
func localBind(r *replica.Replica) (string, bool) {
	b, err := r.ReadFile(replica.ClusterFile)
	if err != nil {
		return "", false
	}
	ifaces, _ := net.InterfaceAddrs()
	local := map[string]bool{}
	for _, a := range ifaces {
		if ipn, ok := a.(*net.IPNet); ok {
			local[ipn.IP.String()] = true
		}
	}
	for _, line := range node.ParseClusterFile(b) {
		host, _, err := net.SplitHostPort(line)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil && (local[ip.String()] || ip.IsLoopback() && ip.Equal(net.IPv4(127, 0, 0, 1))) {
			// 127.0.0.1 is always ours; other loopback addresses are
			// left to --bind, since several nodes may share a host.
			if checkAddr(line) == nil {
				return line, true
			}
		}
	}
	return "", false
}

// nodeConfig builds a node configuration from run's flags.
func (env *cliEnv) nodeConfig(name string, p *parsed) (node.Config, error) {
	dir := env.fsDir(name)
	cfg := node.Config{Dir: dir, Logger: env.logger(), Bind: p.get("bind"), Advertise: p.get("advertise"), Profile: p.get("profile")}
	if cfg.Bind != "" {
		if err := checkAddr(cfg.Bind); err != nil {
			return cfg, err
		}
	}
	if cfg.Advertise != "" {
		if err := checkAddr(cfg.Advertise); err != nil {
			return cfg, err
		}
	}
	switch cfg.Profile {
	case "", "lan", "wan", "local":
	default:
		return cfg, usagef("--profile %q: use lan, wan or local", cfg.Profile)
	}
	joins, err := splitAddrs(p.all("join"))
	if err != nil {
		return cfg, err
	}
	cfg.Join = joins
	if s := p.get("sync-interval"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 100*time.Millisecond {
			return cfg, usagef("--sync-interval %q: give a duration of at least 100ms, like 5s", s)
		}
		cfg.SyncInterval = d
	}
	for _, f := range []struct {
		name string
		min  int
		dst  *int
	}{{"retransmit-mult", 1, &cfg.GossipTuning.RetransmitMult}, {"event-buffer", 16, &cfg.GossipTuning.EventBuffer}} {
		if s := p.get(f.name); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < f.min {
				return cfg, usagef("--%s %q: give a whole number of at least %d", f.name, s, f.min)
			}
			*f.dst = v
		}
	}
	// A keyring persisted by an earlier rotation wins over --encrypt: the
	// cluster may have moved on from the key in KEYFILE.
	keyring := filepath.Join(dir, "keyring.json")
	if _, err := os.Stat(keyring); err == nil {
		keys, err := gossip.ReadKeyFile(keyring)
		if err != nil {
			return cfg, fmt.Errorf("gossip keyring %s: %v (delete it to start from --encrypt)", keyring, err)
		}
		cfg.Keys, cfg.KeyringFile = keys, keyring
	} else if kf := p.get("encrypt"); kf != "" {
		keys, err := gossip.ReadKeyFile(kf)
		if err != nil {
			return cfg, fmt.Errorf("--encrypt %s: %v", kf, err)
		}
		cfg.Keys, cfg.KeyringFile = keys, keyring
	}
	return cfg, nil
}

func cmdRun(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "run", 1, 1); err != nil {
		return err
	}
	return env.runNode(p.args[0], p, p.get("mount"))
}

func cmdMount(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "mount", 2, 2); err != nil {
		return err
	}
	if p.has("mount") {
		return usagef("mount takes its directory as an argument, not --mount")
	}
	return env.runNode(p.args[0], p, p.args[1])
}

// runNode runs a node for name in the foreground until SIGINT or SIGTERM.
func (env *cliEnv) runNode(name string, p *parsed, mountDir string) error {
	if err := log.ValidateFSName(name); err != nil {
		return usagef("%v", err)
	}
	dir := env.fsDir(name)
	if !replica.Exists(dir) {
		return fmt.Errorf("no filesystem %s in %s (create it with 'basefs bootstrap %s' or fetch it with 'basefs get %s HOST:PORT')", name, env.home, name, name)
	}
	if !env.logLevelSet {
		env.logLevel = slog.LevelInfo
	}
	cfg, err := env.agentConfig(name, p, mountDir)
	if err != nil {
		return err
	}
	r, err := env.openReplicaWaiting(dir)
	if err != nil {
		if replica.IsKind(err, replica.Busy) {
			return fmt.Errorf("filesystem %s is already in use (is a node running?): %v", name, err)
		}
		return err
	}
	defer r.Close()
	if cfg.Node.Bind == "" {
		b, ok := localBind(r)
		if !ok {
			return usagef("give --bind HOST:PORT: none of the addresses in %s:%s is this host's", name, replica.ClusterFile)
		}
		cfg.Node.Bind = b
	}
	cfg.Node.Replica = r
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.Start(cfg)
	if err != nil {
		return err
	}
	lg := cfg.Logger
	lg.Info("node running", "fs", name, "id", r.ID().Short(), "addr", cfg.Node.Bind, "entries", r.NumEntries())
	select {
	case <-ctx.Done():
	case <-env.stopped:
	}
	lg.Info("stopping: leaving the cluster")
	if err := a.Stop(); err != nil {
		return err
	}
	lg.Info("stopped")
	return nil
}

// agentConfig builds the node, mount and handler configuration from run's
// flags.
func (env *cliEnv) agentConfig(name string, p *parsed, mountDir string) (agent.Config, error) {
	nc, err := env.nodeConfig(name, p)
	if err != nil {
		return agent.Config{}, err
	}
	cfg := agent.Config{Node: nc, Control: true, MountDir: mountDir, Metrics: p.get("metrics"), Logger: nc.Logger}
	if cfg.Metrics != "" {
		if _, _, err := net.SplitHostPort(cfg.Metrics); err != nil {
			return cfg, usagef("--metrics %q: want HOST:PORT", cfg.Metrics)
		}
	}
	if cfg.Handlers.Specs, err = handlerSpecs(p); err != nil {
		return cfg, err
	}
	cfg.Handlers.Name, cfg.Handlers.StateDir, cfg.Handlers.Initial = name, env.fsDir(name), p.has("handler-initial")
	if s := p.get("handler-timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return cfg, usagef("--handler-timeout %q: give a duration, like 30s", s)
		}
		cfg.Handlers.Timeout = d
	}
	if mountDir != "" {
		key, err := env.loadKey(p)
		if err != nil {
			return cfg, err
		}
		cfg.Mount = fsapi.Options{Key: key, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Private: p.has("private")}
	}
	return cfg, nil
}

func handlerSpecs(p *parsed) ([]handlers.Spec, error) {
	var specs []handlers.Spec
	for _, s := range p.all("handler") {
		spec, err := handlers.ParseSpec(s)
		if err != nil {
			return nil, usagef("--handler %q: %v", s, err)
		}
		specs = append(specs, spec)
	}
	if len(specs) == 0 && (p.has("handler-initial") || p.has("handler-timeout")) {
		return nil, usagef("--handler-initial and --handler-timeout need --handler")
	}
	return specs, nil
}

func cmdDemo(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "demo", 0, 0); err != nil {
		return err
	}
	dir := p.get("dir")
	if dir == "" {
		d, err := os.MkdirTemp("", "basefs-demo-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if s := p.get("for"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return usagef("--for %q: give a duration, like 30s", s)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if env.stopped != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-env.stopped:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	bin, err := os.Executable()
	if err != nil {
		bin = "basefs"
	}
	return agent.RunDemo(ctx, agent.DemoConfig{Dir: dir, Out: env.stdout, Binary: bin, Logger: env.logger()})
}
