package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// backend is what the file and history commands need of a filesystem: a
// running node of this home (through its control socket), or the local store
// opened for the one command.
type backend interface {
	Stat(path string) (view.Node, error)
	List(path string) ([]view.Node, error)
	ReadFile(path string) ([]byte, error)
	WriteFile(key ed25519.PrivateKey, path string, data []byte, o replica.WriteOptions) error
	Mkdir(key ed25519.PrivateKey, path string, mode uint32, parents bool) error
	Remove(key ed25519.PrivateKey, path string, recursive bool) error
	Rename(key ed25519.PrivateKey, from, to string) error
	Symlink(key ed25519.PrivateKey, target, path string) error
	Link(key ed25519.PrivateKey, existing, path string) error
	SetAttr(key ed25519.PrivateKey, path string, mode *uint32, mtime int64) error
	Grant(key ed25519.PrivateKey, path string, pub ed25519.PublicKey) error
	ResolveKey(prefix string) ([32]byte, error)
	Revoke(key ed25519.PrivateKey, path string, revoked [32]byte) error
	Log(path string) ([]replica.LogRecord, error)
	ResolveEntry(path, prefix string) (log.Hash, error)
	Revert(key ed25519.PrivateKey, path string, to log.Hash) (int, error)
	Conflicts(path string) (replica.ConflictReport, error)
	Status() (node.Status, error)
	Verify() (replica.VerifyReport, error)
	Close() error
}

// localBackend is a replica opened by the command itself. Every write is
// synced before the command returns.
type localBackend struct{ r *replica.Replica }

func (b localBackend) Stat(p string) (view.Node, error)   { return b.r.Stat(p) }
func (b localBackend) List(p string) ([]view.Node, error) { return b.r.List(p) }
func (b localBackend) ReadFile(p string) ([]byte, error)  { return b.r.ReadFile(p) }
func (b localBackend) WriteFile(k ed25519.PrivateKey, p string, d []byte, o replica.WriteOptions) error {
	_, err := b.r.WriteFile(k, p, d, o)
	return err
}
func (b localBackend) Mkdir(k ed25519.PrivateKey, p string, mode uint32, parents bool) error {
	return b.r.Mkdir(k, p, mode, parents, true)
}
func (b localBackend) Remove(k ed25519.PrivateKey, p string, rec bool) error {
	return b.r.Remove(k, p, rec, true)
}
func (b localBackend) Rename(k ed25519.PrivateKey, from, to string) error {
	return b.r.Rename(k, from, to, true)
}
func (b localBackend) Symlink(k ed25519.PrivateKey, t, p string) error {
	return b.r.Symlink(k, t, p, true)
}
func (b localBackend) Link(k ed25519.PrivateKey, e, p string) error { return b.r.Link(k, e, p, true) }
func (b localBackend) SetAttr(k ed25519.PrivateKey, p string, m *uint32, mt int64) error {
	return b.r.SetAttr(k, p, m, mt, true)
}
func (b localBackend) Grant(k ed25519.PrivateKey, p string, pub ed25519.PublicKey) error {
	_, err := b.r.Grant(k, p, pub, true)
	return err
}
func (b localBackend) ResolveKey(prefix string) ([32]byte, error) { return b.r.ResolveKey(prefix) }
func (b localBackend) Revoke(k ed25519.PrivateKey, p string, rk [32]byte) error {
	_, err := b.r.Revoke(k, p, rk, true)
	return err
}
func (b localBackend) Log(p string) ([]replica.LogRecord, error) { return b.r.Log(p) }
func (b localBackend) ResolveEntry(p, prefix string) (log.Hash, error) {
	e, err := b.r.ResolveEntry(p, prefix)
	if err != nil {
		return log.Hash{}, err
	}
	return e.Hash(), nil
}
func (b localBackend) Revert(k ed25519.PrivateKey, p string, to log.Hash) (int, error) {
	return b.r.Revert(k, p, to, true)
}
func (b localBackend) Conflicts(p string) (replica.ConflictReport, error) { return b.r.Conflicts(p) }
func (b localBackend) Status() (node.Status, error) {
	return node.Status{Status: b.r.Status(), Members: []node.Member{}}, nil
}
func (b localBackend) Verify() (replica.VerifyReport, error) { return b.r.Verify(), nil }
func (b localBackend) Close() error                          { return b.r.Close() }

// remoteBackend is a running node reached through its control socket.
type remoteBackend struct{ c *node.Client }

func (b remoteBackend) Stat(p string) (view.Node, error)   { return b.c.Stat(p) }
func (b remoteBackend) List(p string) ([]view.Node, error) { return b.c.List(p) }
func (b remoteBackend) ReadFile(p string) ([]byte, error)  { return b.c.ReadFile(p) }
func (b remoteBackend) WriteFile(k ed25519.PrivateKey, p string, d []byte, o replica.WriteOptions) error {
	_, err := b.c.WriteFile(k, p, d, o)
	return err
}
func (b remoteBackend) Mkdir(k ed25519.PrivateKey, p string, mode uint32, parents bool) error {
	return b.c.Mkdir(k, p, mode, parents, true)
}
func (b remoteBackend) Remove(k ed25519.PrivateKey, p string, rec bool) error {
	return b.c.Remove(k, p, rec, true)
}
func (b remoteBackend) Rename(k ed25519.PrivateKey, from, to string) error {
	return b.c.Rename(k, from, to, true)
}
func (b remoteBackend) Symlink(k ed25519.PrivateKey, t, p string) error {
	return b.c.Symlink(k, t, p, true)
}
func (b remoteBackend) Link(k ed25519.PrivateKey, e, p string) error { return b.c.Link(k, e, p, true) }
func (b remoteBackend) SetAttr(k ed25519.PrivateKey, p string, m *uint32, mt int64) error {
	return b.c.SetAttr(k, p, m, mt, true)
}
func (b remoteBackend) Grant(k ed25519.PrivateKey, p string, pub ed25519.PublicKey) error {
	return b.c.Grant(k, p, pub)
}
func (b remoteBackend) ResolveKey(prefix string) ([32]byte, error) { return b.c.ResolveKey(prefix) }
func (b remoteBackend) Revoke(k ed25519.PrivateKey, p string, rk [32]byte) error {
	return b.c.Revoke(k, p, rk)
}
func (b remoteBackend) Log(p string) ([]replica.LogRecord, error) { return b.c.Log(p) }
func (b remoteBackend) ResolveEntry(p, prefix string) (log.Hash, error) {
	return b.c.ResolveEntry(p, prefix)
}
func (b remoteBackend) Revert(k ed25519.PrivateKey, p string, to log.Hash) (int, error) {
	return b.c.Revert(k, p, to)
}
func (b remoteBackend) Conflicts(p string) (replica.ConflictReport, error) { return b.c.Conflicts(p) }
func (b remoteBackend) Status() (node.Status, error)                       { return b.c.Status() }
func (b remoteBackend) Verify() (replica.VerifyReport, error)              { return b.c.Verify() }
func (b remoteBackend) Close() error                                       { return b.c.Close() }

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
		if c, err := node.DialControl(dir); err == nil {
			return remoteBackend{c}, nil
		}
		r, err := replica.Open(dir, env.replicaOptions())
		if err == nil {
			return localBackend{r}, nil
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
