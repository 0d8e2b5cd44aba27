package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// backend is what the file and history commands need of a filesystem. The
// local backend is a *replica.Replica opened for the command.
type backend interface {
	Stat(path string) (view.Node, error)
	List(path string) ([]view.Node, error)
	ReadFile(path string) ([]byte, error)
	WriteFile(key ed25519.PrivateKey, path string, data []byte, o replica.WriteOptions) (*log.Entry, error)
	Mkdir(key ed25519.PrivateKey, path string, mode uint32, parents, sync bool) error
	Remove(key ed25519.PrivateKey, path string, recursive, sync bool) error
	Rename(key ed25519.PrivateKey, from, to string, sync bool) error
	Symlink(key ed25519.PrivateKey, target, path string, sync bool) error
	Link(key ed25519.PrivateKey, existing, path string, sync bool) error
	SetAttr(key ed25519.PrivateKey, path string, mode *uint32, mtime int64, sync bool) error
	Grant(key ed25519.PrivateKey, path string, pub ed25519.PublicKey, sync bool) (*log.Entry, error)
	ResolveKey(prefix string) ([32]byte, error)
	Revoke(key ed25519.PrivateKey, path string, revoked [32]byte, sync bool) (*log.Entry, error)
	Log(path string) ([]replica.LogRecord, error)
	ResolveEntry(path, prefix string) (*log.Entry, error)
	Revert(key ed25519.PrivateKey, path string, to log.Hash, sync bool) (int, error)
	Conflicts(path string) (replica.ConflictReport, error)
	Status() replica.Status
	Verify() replica.VerifyReport
	Close() error
}

// openBackend opens filesystem name of this home.
func (env *cliEnv) openBackend(name string) (backend, error) {
	if err := log.ValidateFSName(name); err != nil {
		return nil, usagef("%v", err)
	}
	dir := env.fsDir(name)
	if !replica.Exists(dir) {
		return nil, fmt.Errorf("no filesystem %s in %s (create it with 'basefs bootstrap %s' or fetch it with 'basefs get %s HOST:PORT')", name, env.home, name, name)
	}
	r, err := replica.Open(dir, env.replicaOptions())
	if err != nil {
		if replica.IsKind(err, replica.Busy) {
			return nil, fmt.Errorf("filesystem %s is in use by another basefs process; stop it or wait for it to finish", name)
		}
		return nil, err
	}
	return r, nil
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
