package ops

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// Signer names the private key an operation is signed with. Through the
// control socket only KeyPath travels; the node reads the key file itself
// (the socket is reachable only by the node's owner, who can read the
// file too). A Signer made by KeySigner carries the key itself and is for
// in-process use.
type Signer struct {
	// KeyPath is the private key file.
	KeyPath string `json:"key_path"`
	key     ed25519.PrivateKey
}

// FileSigner names the key file path; Key reads it.
func FileSigner(path string) Signer { return Signer{KeyPath: path} }

// KeySigner carries k itself (in-process callers and tests).
func KeySigner(k ed25519.PrivateKey) Signer { return Signer{key: k} }

// Key returns the private key, reading the file when the Signer names one.
// The errors say what is wrong in a user's words.
func (s Signer) Key() (ed25519.PrivateKey, error) {
	if len(s.key) == ed25519.PrivateKeySize {
		return s.key, nil
	}
	if s.KeyPath == "" {
		return nil, replica.NewError(replica.Invalid, "no signing key given")
	}
	k, err := log.ReadPrivateKey(s.KeyPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, replica.NewError(replica.NotExist, fmt.Sprintf("no key at %s (create one with 'basefs genkey')", s.KeyPath))
	}
	if err != nil {
		return nil, replica.NewError(replica.Invalid, fmt.Sprintf("cannot read key %s: %v", s.KeyPath, err))
	}
	return k, nil
}
