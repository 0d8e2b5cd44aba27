package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/basefs/basefs/control"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/ops"
	"github.com/basefs/basefs/replica"
)

// backend is a filesystem the file and history commands act on: a running
// node of this home (through its control socket), or the local store
// opened for the one command. Either way it is the one operation set.
type backend interface {
	ops.API
	Close() error
}

// localBackend is a replica opened by the command itself.
type localBackend struct{ ops.Local }

func (b localBackend) Close() error { return b.R.Close() }

// openBackend opens filesystem name of this home: through the running node
// when there is one, else the local store.
func (env *cliEnv) openBackend(name string) (backend, error) {
	if err := log.ValidateFSName(name); err != nil {
		return nil, usagef("%v", err)
	}
	dir := env.fsDir(name)
	if !replica.Exists(dir) {
		return nil, fmt.Errorf("no filesystem %s in %s (create it with 'basefs bootstrap %s' or fetch it with 'basefs get %s HOST:PORT')", name, env.home, name, name)
	}
	// Another command may hold the store for a moment, or a node may be
	// starting (its socket appears once it has opened the store): wait a
	// little before giving up.
	deadline := time.Now().Add(busyWait)
	for {
		if c, err := control.Dial(dir); err == nil {
			return c, nil
		}
		r, err := replica.Open(dir, env.replicaOptions())
		if err == nil {
			return localBackend{ops.Local{R: r}}, nil
		}
		if !replica.IsKind(err, replica.Busy) {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("filesystem %s is in use by another basefs process that serves no control socket (%v); wait for it to finish", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// busyWait is how long a command waits for a store another process holds.
const busyWait = 5 * time.Second

// openReplicaWaiting opens the replica in dir, waiting up to busyWait while
// another (short-lived) process holds it.
func (env *cliEnv) openReplicaWaiting(dir string) (*replica.Replica, error) {
	deadline := time.Now().Add(busyWait)
	for {
		r, err := replica.Open(dir, env.replicaOptions())
		if err == nil || !replica.IsKind(err, replica.Busy) || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withBackend opens name, runs fn and closes it, keeping fn's error first.
func (env *cliEnv) withBackend(name string, fn func(b backend) error) error {
	b, err := env.openBackend(name)
	if err != nil {
		return err
	}
	err = fn(b)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	return err
}

// keyPath is the private key a command signs with.
func (env *cliEnv) keyPath(p *parsed) string {
	if k := p.get("key"); k != "" {
		return k
	}
	return env.home + "/id_ed25519"
}

// signer names the key file a command signs with, after checking that it
// holds a key (so a missing key is reported before anything is opened).
// The path is absolute: a running node reads it from its own directory.
func (env *cliEnv) signer(p *parsed) (ops.Signer, error) {
	if _, err := env.loadKey(p); err != nil {
		return ops.Signer{}, err
	}
	abs, err := filepath.Abs(env.keyPath(p))
	if err != nil {
		return ops.Signer{}, err
	}
	return ops.FileSigner(abs), nil
}

// loadKey reads the signing key, explaining how to make one if it is missing.
func (env *cliEnv) loadKey(p *parsed) (ed25519.PrivateKey, error) {
	path := env.keyPath(p)
	k, err := log.ReadPrivateKey(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no key at %s (create one with 'basefs genkey')", path)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read key %s: %v", path, err)
	}
	return k, nil
}
