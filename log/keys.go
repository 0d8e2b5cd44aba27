package log

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Key files. A private key is a PEM block holding the 32-byte ed25519 seed,
// file mode 0600. The public key sits beside it in PATH.pub as one line:
// "basefs-ed25519 BASE64 [comment]". Only public keys ever enter the log.

const (
	pemType      = "BASEFS ED25519 PRIVATE KEY"
	pubKeyPrefix = "basefs-ed25519"
)

// ErrKeyExists is returned by GenerateKeyFile when the key file exists.
var ErrKeyExists = errors.New("key file exists")

// Fingerprint is the display identity of a public key: the first 16 bytes of
// its SHA-256, as 32 hex digits.
func Fingerprint(pub []byte) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:16])
}

// ShortFingerprint is the first 8 hex digits of Fingerprint, for messages.
func ShortFingerprint(pub []byte) string { return Fingerprint(pub)[:8] }

// GenerateKeyFile makes a new key pair, writes the private key to path (mode
// 0600) and the public key to path+".pub". It refuses to overwrite unless
// force is set.
func GenerateKeyFile(path string, force bool) (ed25519.PrivateKey, error) {
	if !force {
		for _, p := range []string{path, path + ".pub"} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%w: %s", ErrKeyExists, p)
			}
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	block := pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: priv.Seed()})
	if err := writeFileAtomic(path, block, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path+".pub", []byte(FormatPublicKey(pub)+"\n"), 0o644); err != nil {
		return nil, err
	}
	return priv, nil
}

// FormatPublicKey returns the one-line public key file form.
func FormatPublicKey(pub []byte) string {
	return pubKeyPrefix + " " + base64.StdEncoding.EncodeToString(pub)
}

// ReadPrivateKey loads a private key file.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%s is readable by others (mode %04o): a private key must be yours alone; chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != pemType || len(block.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is not a basefs private key", path)
	}
	return ed25519.NewKeyFromSeed(block.Bytes), nil
}

// ParsePublicKey parses the one-line public key form.
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	fields := strings.Fields(string(bytes.TrimSpace(text)))
	if len(fields) < 2 || fields[0] != pubKeyPrefix {
		return nil, errors.New("not a basefs public key (want \"basefs-ed25519 BASE64\")")
	}
	raw, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("public key is not 32 bytes of base64")
	}
	return ed25519.PublicKey(raw), nil
}

// ReadPublicKey loads a public key file. A private key file is accepted too,
// and its public half returned.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if block, _ := pem.Decode(b); block != nil && block.Type == pemType && len(block.Bytes) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(block.Bytes).Public().(ed25519.PublicKey), nil
	}
	pub, err := ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return pub, nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it,
// renames it into place and syncs the directory, so the new file survives a
// crash whole or not at all.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// WriteFileAtomic is writeFileAtomic for other packages of basefs: the file
// at path is replaced whole or not at all.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return writeFileAtomic(path, data, mode)
}

// NewNonce returns NonceLen random bytes for a root entry.
func NewNonce() []byte {
	b := make([]byte, NonceLen)
	if _, err := rand.Read(b); err != nil {
		panic("basefs: no randomness: " + err.Error())
	}
	return b
}
