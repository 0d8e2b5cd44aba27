package ops

import (
	"crypto/ed25519"
	"fmt"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// Local implements API on a replica of this process: the store opened by a
// command when no node runs, or a running node's own replica (with the
// node answering Status and GossipKey).
type Local struct {
	R *replica.Replica
	// Node, when set, is the running node the replica belongs to.
	Node *node.Node
}

var _ API = Local{}

func (l Local) Stat(path string) (view.Node, error)   { return l.R.Stat(path) }
func (l Local) List(path string) ([]view.Node, error) { return l.R.List(path) }
func (l Local) ReadFile(path string) ([]byte, error)  { return l.R.ReadFile(path) }
func (l Local) Readlink(path string) (string, error)  { return l.R.Readlink(path) }

func (l Local) WriteFile(s Signer, path string, data []byte, o replica.WriteOptions) (log.Hash, error) {
	return signed(s, func(k ed25519.PrivateKey) (log.Hash, error) {
		o.Sync = true
		return hashOf(l.R.WriteFile(k, path, data, o))
	})
}

func (l Local) Mkdir(s Signer, path string, o MkdirOptions) error {
	return signedErr(s, func(k ed25519.PrivateKey) error { return l.R.Mkdir(k, path, o.Mode, o.Parents, true) })
}

func (l Local) Remove(s Signer, path string, o RemoveOptions) error {
	return signedErr(s, func(k ed25519.PrivateKey) error { return l.R.Remove(k, path, o.Recursive, true) })
}

func (l Local) Rename(s Signer, from, to string) error {
	return signedErr(s, func(k ed25519.PrivateKey) error { return l.R.Rename(k, from, to, true) })
}

func (l Local) Symlink(s Signer, target, path string) error {
	return signedErr(s, func(k ed25519.PrivateKey) error { return l.R.Symlink(k, target, path, true) })
}

func (l Local) Link(s Signer, existing, path string) error {
	return signedErr(s, func(k ed25519.PrivateKey) error { return l.R.Link(k, existing, path, true) })
}

func (l Local) SetAttr(s Signer, path string, o SetAttrOptions) error {
	return signedErr(s, func(k ed25519.PrivateKey) error { return l.R.SetAttr(k, path, o.Mode, o.MTime, true) })
}

func (l Local) Chown(s Signer, path, owner string) error {
	return signedErr(s, func(k ed25519.PrivateKey) error { return l.R.Chown(k, path, owner, true) })
}

func (l Local) Grant(s Signer, path string, pub ed25519.PublicKey) (log.Hash, error) {
	return signed(s, func(k ed25519.PrivateKey) (log.Hash, error) { return hashOf(l.R.Grant(k, path, pub, true)) })
}

func (l Local) Revoke(s Signer, path string, revoked [32]byte) (log.Hash, error) {
	return signed(s, func(k ed25519.PrivateKey) (log.Hash, error) { return hashOf(l.R.Revoke(k, path, revoked, true)) })
}

func (l Local) ResolveKey(prefix string) ([32]byte, error)            { return l.R.ResolveKey(prefix) }
func (l Local) Log(path string) ([]replica.LogRecord, error)          { return l.R.Log(path) }
func (l Local) Conflicts(path string) (replica.ConflictReport, error) { return l.R.Conflicts(path) }
func (l Local) Verify() (replica.VerifyReport, error)                 { return l.R.Verify(), nil }

func (l Local) ResolveEntry(path, prefix string) (log.Hash, error) {
	return hashOf(l.R.ResolveEntry(path, prefix))
}

func (l Local) Revert(s Signer, path string, to log.Hash) (int, error) {
	return signed(s, func(k ed25519.PrivateKey) (int, error) { return l.R.Revert(k, path, to, true) })
}

func (l Local) RevertPlan(path string, to log.Hash) ([]replica.RevertChange, error) {
	return l.R.RevertPlan(path, to)
}
func (l Local) ReadFileAt(path, prefix string) ([]byte, error)    { return l.R.ReadFileAt(path, prefix) }
func (l Local) Grants(path string) ([]replica.GrantRecord, error) { return l.R.Grants(path) }

func (l Local) Status() (node.Status, error) {
	if l.Node != nil {
		return l.Node.Status(), nil
	}
	return node.Status{Status: l.R.Status(), Members: []node.Member{}}, nil
}

func (l Local) GossipKey(op, key string) (node.KeyReport, error) {
	if l.Node == nil {
		return node.KeyReport{}, replica.NewError(replica.Invalid, fmt.Sprintf("gossip-key %s needs a running node of this filesystem", op))
	}
	return l.Node.GossipKey(op, key)
}

func signed[T any](s Signer, f func(ed25519.PrivateKey) (T, error)) (T, error) {
	k, err := s.Key()
	if err != nil {
		var zero T
		return zero, err
	}
	return f(k)
}

func signedErr(s Signer, f func(ed25519.PrivateKey) error) error {
	_, err := signed(s, func(k ed25519.PrivateKey) (struct{}, error) { return struct{}{}, f(k) })
	return err
}

func hashOf(e *log.Entry, err error) (log.Hash, error) {
	if err != nil {
		return log.Hash{}, err
	}
	return e.Hash(), nil
}
