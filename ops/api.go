// Package ops declares basefs's operation set once: the API interface is
// what the command line (and any other client) can do to a filesystem.
// Two implementations exist: Local acts on a replica opened in this
// process, and control.Client reaches a running node through its control
// socket (its client methods and the socket's method table are generated
// from this file: `go generate ./control`).
//
// Adding an operation is one method in API plus its implementation in
// Local (and in the replica); the control socket picks it up when
// regenerated.
//
// Write operations name their key by a Signer: only the key file's path
// travels through the control socket, never key material; the node reads
// the file itself.
package ops

import (
	"crypto/ed25519"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// API is the operation set. Every write is durable (synced to the store)
// before it returns. Implementations are safe for concurrent use.
type API interface {
	// Stat returns the item at path.
	Stat(path string) (view.Node, error)
	// List returns a directory's children.
	List(path string) ([]view.Node, error)
	// ReadFile returns a file's content.
	ReadFile(path string) ([]byte, error)
	// Readlink returns a symbolic link's target.
	Readlink(path string) (string, error)
	// WriteFile writes a file and returns its entry's hash.
	WriteFile(s Signer, path string, data []byte, o replica.WriteOptions) (log.Hash, error)
	// Mkdir creates a directory.
	Mkdir(s Signer, path string, o MkdirOptions) error
	// Remove removes a file, link, or (with Recursive) a directory.
	Remove(s Signer, path string, o RemoveOptions) error
	// Rename moves from to to.
	Rename(s Signer, from, to string) error
	// Symlink makes a symbolic link at path pointing to target.
	Symlink(s Signer, target, path string) error
	// Link makes path a hard link of existing.
	Link(s Signer, existing, path string) error
	// SetAttr changes permission bits and/or the modification time.
	SetAttr(s Signer, path string, o SetAttrOptions) error
	// Chown records path's owner and group by name ("USER:GROUP", or
	// "USER" to keep the group).
	Chown(s Signer, path, owner string) error
	// Grant gives pub write authority over path and below.
	Grant(s Signer, path string, pub ed25519.PublicKey) (log.Hash, error)
	// Revoke takes revoked's authority over path away.
	Revoke(s Signer, path string, revoked [32]byte) (log.Hash, error)
	// ResolveKey finds the key whose fingerprint starts with prefix.
	ResolveKey(prefix string) ([32]byte, error)
	// Log returns the entries of path and below, newest first.
	Log(path string) ([]replica.LogRecord, error)
	// ResolveEntry finds the entry of path (or below) whose hash starts
	// with prefix.
	ResolveEntry(path, prefix string) (log.Hash, error)
	// Revert makes path what it was at entry to; it returns how many
	// entries it wrote.
	Revert(s Signer, path string, to log.Hash) (int, error)
	// RevertPlan lists what Revert would change, writing nothing.
	RevertPlan(path string, to log.Hash) ([]replica.RevertChange, error)
	// ReadFileAt returns the content path had after its entry whose hash
	// starts with prefix (an old version, read without reverting).
	ReadFileAt(path, prefix string) ([]byte, error)
	// Grants lists who may write at path and below.
	Grants(path string) ([]replica.GrantRecord, error)
	// Conflicts reports lost branches and hidden paths at path and below.
	Conflicts(path string) (replica.ConflictReport, error)
	// Status reports the filesystem's (and a running node's) state.
	Status() (node.Status, error)
	// Verify re-checks every hash, signature and permission.
	Verify() (replica.VerifyReport, error)
	// GossipKey installs, uses, removes or lists gossip encryption keys
	// cluster-wide; it needs a running node.
	GossipKey(op, key string) (node.KeyReport, error)
}

// MkdirOptions are Mkdir's options.
type MkdirOptions struct {
	Mode    uint32 // permission bits; 0 means 0755
	Parents bool   // create missing parents; no error if it exists
}

// RemoveOptions are Remove's options.
type RemoveOptions struct {
	Recursive bool // remove a directory and everything in it
}

// SetAttrOptions are SetAttr's options.
type SetAttrOptions struct {
	Mode  *uint32 // new permission bits, when set
	MTime int64   // new modification time (unix nanoseconds), when not 0
}
