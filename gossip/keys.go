package gossip

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"

	"github.com/hashicorp/serf/serf"
)

// Gossip encryption. Keys are AES keys of 16, 24 or 32 bytes; every packet
// and stream is sealed with the primary key and opened with any key of the
// ring. A rotation without downtime, each step cluster-wide through Serf's
// key queries:
//
//	g.InstallKey(new) // every node can now open packets sealed with new
//	g.UseKey(new)     // every node seals with new
//	g.RemoveKey(old)  // old no longer opens anything
//
// Each step returns once every live node answered, or with an error naming
// how many did not (then repeat it: the steps are idempotent).

// checkKey reports whether k has an AES key length.
func checkKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("gossip: encryption key of %d bytes (want 16, 24 or 32)", len(k))
}

// GenerateKey returns a new random 32-byte key.
func GenerateKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// EncodeKey returns k in base64, the form key files and ListKeys use.
func EncodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// ParseKey decodes a base64 key and checks its length.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("gossip: key is not base64: %w", err)
	}
	return k, checkKey(k)
}

// ReadKeyFile reads the keys for --encrypt: base64 of 16, 24 or 32 bytes,
// one per line (blank lines and lines starting with # are skipped), or a
// JSON list of such strings (the form Serf writes to Config.KeyringFile
// after a rotation). The first key is the primary.
func ReadKeyFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip: key file: %w", err)
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return keys, nil
}

// ParseKeys parses the contents of a key file (see ReadKeyFile).
func ParseKeys(data []byte) ([][]byte, error) {
	var lines []string
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &lines); err != nil {
			return nil, fmt.Errorf("gossip: key file: %w", err)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			lines = append(lines, l)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("gossip: key file: %w", err)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("gossip: key file holds no key")
	}
	keys := make([][]byte, 0, len(lines))
	for i, l := range lines {
		k, err := ParseKey(l)
		if err != nil {
			return nil, fmt.Errorf("%w (key %d)", err, i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// KeyStatus is the cluster's answer to a key operation.
type KeyStatus struct {
	Nodes     int               // members memberlist knows
	Responses int               // nodes that answered
	Errors    int               // nodes that answered with an error
	Messages  map[string]string // node → its error or warning
	Keys      map[string]int    // base64 key → nodes holding it (ListKeys)
	Primary   map[string]int    // base64 key → nodes using it as primary (ListKeys)
}

func keyStatus(r *serf.KeyResponse) KeyStatus {
	if r == nil {
		return KeyStatus{}
	}
	return KeyStatus{
		Nodes: r.NumNodes, Responses: r.NumResp, Errors: r.NumErr,
		Messages: maps.Clone(r.Messages), Keys: maps.Clone(r.Keys), Primary: maps.Clone(r.PrimaryKeys),
	}
}

func (g *Gossip) keyOp(what string, k []byte, op func(string) (*serf.KeyResponse, error)) (KeyStatus, error) {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if g.closed {
		return KeyStatus{}, ErrClosed
	}
	if !g.keyed {
		return KeyStatus{}, ErrNoEncryption
	}
	if k != nil {
		if err := checkKey(k); err != nil {
			return KeyStatus{}, err
		}
	}
	r, err := op(EncodeKey(k))
	st := keyStatus(r)
	if err != nil {
		msgs := make([]string, 0, len(st.Messages))
		for n, m := range st.Messages {
			msgs = append(msgs, n+": "+m)
		}
		if len(msgs) > 0 {
			return st, fmt.Errorf("gossip: %s: %w (%s)", what, err, strings.Join(msgs, "; "))
		}
		return st, fmt.Errorf("gossip: %s: %w", what, err)
	}
	return st, nil
}

// InstallKey adds k to every node's keyring (not yet as primary).
func (g *Gossip) InstallKey(k []byte) error {
	_, err := g.keyOp("install key", k, g.serf.KeyManager().InstallKey)
	return err
}

// UseKey makes k, already installed, the primary key on every node.
func (g *Gossip) UseKey(k []byte) error {
	_, err := g.keyOp("use key", k, g.serf.KeyManager().UseKey)
	return err
}

// RemoveKey removes k, which must not be primary, from every node.
func (g *Gossip) RemoveKey(k []byte) error {
	_, err := g.keyOp("remove key", k, g.serf.KeyManager().RemoveKey)
	return err
}

// ListKeys asks every node for its keys.
func (g *Gossip) ListKeys() (KeyStatus, error) {
	return g.keyOp("list keys", nil, func(string) (*serf.KeyResponse, error) {
		return g.serf.KeyManager().ListKeys()
	})
}

// LocalKeys returns this node's keyring, primary first (nil without
// encryption).
func (g *Gossip) LocalKeys() [][]byte {
	if g.keyring == nil {
		return nil
	}
	var out [][]byte
	for _, k := range g.keyring.GetKeys() {
		out = append(out, bytes.Clone(k))
	}
	return out
}
