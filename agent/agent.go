// Package agent runs one basefs node with what runs beside it: the FUSE
// mount and the handlers. It owns their order: the node starts first (its
// replica, gossip, sync and control socket), then the mount, then the
// handlers; Stop undoes them in reverse, so handlers never see a tree that
// is going away and the node leaves the cluster last. The control socket
// starts right after the node and closes right before it. The command line's
// `run`, `mount` and `demo` are short callers of this package.
//
// An Agent is safe for concurrent use: Stop may be called from any
// goroutine, any number of times.
package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/basefs/basefs/control"
	"github.com/basefs/basefs/fsapi"
	"github.com/basefs/basefs/handlers"
	"github.com/basefs/basefs/metrics"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/ops"
)

// Config is one node and what runs beside it.
type Config struct {
	// Node is the node's configuration.
	Node node.Config
	// Control serves the control socket (package control) in Node.Dir, so
	// the command line acts through this node.
	Control bool
	// MountDir, when set, is where the filesystem is mounted.
	MountDir string
	// Mount holds the mount's options; Mount.Key must be set when MountDir
	// is. Its Mount and Logger fields are filled in by Start.
	Mount fsapi.Options
	// Handlers, when it has Specs, starts handlers on the node's replica.
	// Its Mount and Logger fields are filled in by Start.
	Handlers handlers.Config
	// Metrics, when set, is the HOST:PORT where /metrics (Prometheus) and
	// /healthz are served.
	Metrics string
	// HandlerStopTimeout bounds how long Stop waits for running handler
	// scripts (default 30 s).
	HandlerStopTimeout time.Duration
	// Logger receives the agent's and its parts' logs (default: discard).
	Logger *slog.Logger
}

// Agent is a running node with its mount and handlers.
type Agent struct {
	n           *node.Node
	mount       string
	handlers    *handlers.Runner
	metricsAddr string
	logger      *slog.Logger

	mu      sync.Mutex
	stops   []func() error // in start order
	stopped bool
	err     error
}

// Start starts the node and its control socket, then the mount, then the
// handlers, then the metrics server. When a part
// fails, what already started is stopped again and the error says which
// part failed.
func Start(cfg Config) (*Agent, error) {
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if cfg.Node.Logger == nil {
		cfg.Node.Logger = lg
	}
	a := &Agent{logger: lg}
	if cfg.MountDir != "" {
		if err := fsapi.Supported(); err != nil {
			return nil, fmt.Errorf("cannot mount: %v", err)
		}
		if len(cfg.Mount.Key) != ed25519.PrivateKeySize {
			return nil, errors.New("cannot mount: no key to sign writes with")
		}
		abs, err := filepath.Abs(cfg.MountDir)
		if err != nil {
			return nil, fmt.Errorf("cannot mount at %s: %v", cfg.MountDir, err)
		}
		if err := PrepareMountDir(abs, lg); err != nil {
			return nil, err
		}
		a.mount = abs
	}
	n, err := node.Start(cfg.Node)
	if err != nil {
		return nil, err
	}
	a.n = n
	a.stops = append(a.stops, n.Stop)
	if cfg.Control {
		cs, err := control.Listen(cfg.Node.Dir, ops.Local{R: n.Replica(), Node: n}, lg)
		if err != nil {
			a.Stop()
			return nil, err
		}
		a.stops = append(a.stops, cs.Close)
	}
	if a.mount != "" {
		opts := cfg.Mount
		opts.Mount = a.mount
		if opts.Logger == nil {
			opts.Logger = lg
		}
		m, err := fsapi.Mount(n.Replica(), a.mount, opts)
		if err != nil {
			a.Stop()
			return nil, fmt.Errorf("cannot mount %s: %v", a.mount, err)
		}
		lg.Info("mounted", "dir", a.mount)
		a.stops = append(a.stops, m.Unmount)
	}
	if len(cfg.Handlers.Specs) > 0 {
		hc := cfg.Handlers
		hc.Mount = a.mount
		if hc.Logger == nil {
			hc.Logger = lg
		}
		h, err := handlers.Start(n.Replica(), hc)
		if err != nil {
			a.Stop()
			return nil, fmt.Errorf("cannot start handlers: %v", err)
		}
		a.handlers = h
		wait := cfg.HandlerStopTimeout
		if wait <= 0 {
			wait = 30 * time.Second
		}
		a.stops = append(a.stops, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			return h.Stop(ctx)
		})
	}
	if cfg.Metrics != "" {
		src := metrics.Sources{Status: n.Status, Gossip: n.GossipStats}
		if a.handlers != nil {
			src.Handlers = a.handlers.Stats
		}
		ms, err := metrics.Listen(cfg.Metrics, src, lg)
		if err != nil {
			a.Stop()
			return nil, fmt.Errorf("cannot serve metrics: %v", err)
		}
		lg.Info("serving metrics", "addr", "http://"+ms.Addr()+"/metrics")
		a.metricsAddr = ms.Addr()
		a.stops = append(a.stops, ms.Close)
	}
	return a, nil
}

// MetricsAddr is where metrics are served ("" when they are not).
func (a *Agent) MetricsAddr() string { return a.metricsAddr }

// Node is the running node.
func (a *Agent) Node() *node.Node { return a.n }

// MountDir is where the filesystem is mounted ("" when it is not).
func (a *Agent) MountDir() string { return a.mount }

// Stop stops the handlers, unmounts, and stops the node (which leaves the
// cluster). Later calls return the first call's result.
func (a *Agent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return a.err
	}
	a.stopped = true
	var errs []error
	for i := len(a.stops) - 1; i >= 0; i-- {
		errs = append(errs, a.stops[i]())
	}
	a.err = errors.Join(errs...)
	return a.err
}

// Run starts an agent, waits until ctx is done, and stops it.
func Run(ctx context.Context, cfg Config) error {
	a, err := Start(cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return a.Stop()
}

// PrepareMountDir checks that dir can be mounted on. A mount left behind
// by a node that was killed (the directory then fails with "transport
// endpoint is not connected") is unmounted first, so a restart after
// kill -9 works.
func PrepareMountDir(dir string, lg *slog.Logger) error {
	err := probeDir(dir)
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		lg.Warn("unmounting a stale mount left by an earlier run", "dir", dir)
		if uerr := lazyUnmount(dir); uerr != nil {
			return fmt.Errorf("cannot mount at %s: a stale mount of an earlier run is there and could not be unmounted (%v); run 'fusermount -u %s'", dir, uerr, dir)
		}
		_, err = os.Stat(dir)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("cannot mount at %s: no such directory", dir)
	case err != nil:
		return fmt.Errorf("cannot mount at %s: %v", dir, err)
	}
	if st, _ := os.Stat(dir); !st.IsDir() {
		return fmt.Errorf("cannot mount at %s: not a directory", dir)
	}
	return nil
}

// probeDir stats dir and, when it is a directory, reads a name from it:
// the kernel may answer a stat of a dead FUSE mount from its attribute
// cache, but reading the directory reaches the (missing) server.
func probeDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// lazyUnmount detaches a (stale) FUSE mount at dir.
func lazyUnmount(dir string) error {
	var errs []error
	for _, argv := range [][]string{{"fusermount", "-u", "-z", dir}, {"fusermount3", "-u", "-z", dir}, {"umount", "-l", dir}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %v %s", argv[0], err, out))
	}
	return errors.Join(errs...)
}
