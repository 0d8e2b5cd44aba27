// Package node runs one basefs node for one filesystem: the replica, gossip
// (Serf) for membership and fast dissemination, anti-entropy sync that
// repairs what gossip misses, and the control socket through which the CLI
// acts on the running node. The network underneath is an interface, so the
// same node runs over real sockets or an in-process simulated network.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/basefs/basefs/replica"
)

// Node is a running node. Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	r       *replica.Replica
	control *ControlServer

	mu      sync.Mutex
	stopped bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Config configures a node.
type Config struct {
	// Dir is the filesystem's directory in the node's home.
	Dir string
	// Replica, when set, is used instead of opening Dir (the node then does
	// not close it on Stop).
	Replica *replica.Replica
	// Control serves the control socket in Dir.
	Control bool
	Logger  *slog.Logger
}

// Start opens the replica and starts the node's services.
func Start(cfg Config) (*Node, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	n := &Node{cfg: cfg, logger: logger}
	if cfg.Replica != nil {
		n.r = cfg.Replica
	} else {
		r, err := replica.Open(cfg.Dir, replica.Options{Logger: logger})
		if err != nil {
			return nil, err
		}
		n.r = r
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	_ = ctx
	if cfg.Control {
		cs, err := listenControl(n, filepath.Join(cfg.Dir, SocketName), logger)
		if err != nil {
			n.closeReplica()
			cancel()
			return nil, err
		}
		n.control = cs
	}
	return n, nil
}

// Replica returns the node's replica.
func (n *Node) Replica() *replica.Replica { return n.r }

// Status reports the node's state.
func (n *Node) Status() Status {
	st := Status{Status: n.r.Status(), Running: true, Members: []Member{}}
	return st
}

// Stop stops the node's services, syncs and closes the replica (unless it
// was given in Config).
func (n *Node) Stop() error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	n.mu.Unlock()
	var errs []error
	if n.control != nil {
		errs = append(errs, n.control.Close())
	}
	n.cancel()
	n.wg.Wait()
	errs = append(errs, n.closeReplica())
	return errors.Join(errs...)
}

func (n *Node) closeReplica() error {
	if n.cfg.Replica != nil {
		return n.r.Sync()
	}
	if err := n.r.Close(); err != nil {
		return fmt.Errorf("closing the store: %w", err)
	}
	return nil
}
