// Package log holds basefs's signed, Merkle-linked log: entries with their
// canonical encoding, hashing, signing and verification; content manifests and
// blocks; and the durable local store. It knows nothing of the network or of
// how entries are resolved into a tree (that is package view).
package log

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// FormatVersion is the version byte every entry encoding starts with.
const FormatVersion = 1

// Hash is a SHA-256 digest: of an entry's canonical bytes, of a block, or of a
// file's content.
type Hash [32]byte

// ZeroHash is the all-zero hash, used for "none".
var ZeroHash Hash

// IsZero reports whether h is the all-zero hash.
func (h Hash) IsZero() bool { return h == ZeroHash }

// String returns the full lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short returns the first 12 hex digits, for display.
func (h Hash) Short() string { return hex.EncodeToString(h[:6]) }

// MarshalText encodes the hash as 64 hex digits (so JSON shows it as a
// string).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash parses a full 64-digit hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q is not 64 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q is not hex", s)
	}
	return h, nil
}

// Sum returns the SHA-256 of b.
func Sum(b []byte) Hash { return sha256.Sum256(b) }

// Action is what an entry does.
type Action uint8

// The actions. Their numeric values are part of the encoding.
const (
	ActMkdir   Action = 1
	ActWrite   Action = 2
	ActDelete  Action = 3
	ActRevert  Action = 4
	ActGrant   Action = 5
	ActRevoke  Action = 6
	ActAck     Action = 7
	ActLink    Action = 8
	ActSymlink Action = 9
	ActMode    Action = 10
	ActRename  Action = 11
)

var actionNames = [...]string{
	ActMkdir: "mkdir", ActWrite: "write", ActDelete: "delete", ActRevert: "revert",
	ActGrant: "grant", ActRevoke: "revoke", ActAck: "ack", ActLink: "link",
	ActSymlink: "slink", ActMode: "mode", ActRename: "rename",
}

// String returns the action's name as the CLI shows it.
func (a Action) String() string {
	if int(a) < len(actionNames) && actionNames[a] != "" {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Valid reports whether a is a known action.
func (a Action) Valid() bool { return a >= ActMkdir && a <= ActRename }

// IsAnnotation reports whether entries of this action attach to a path
// (grant, revoke, ack) rather than change its state.
func (a Action) IsAnnotation() bool { return a == ActGrant || a == ActRevoke || a == ActAck }

// CanCreate reports whether an entry of this action may start a new lineage of
// a path inside its directory.
func (a Action) CanCreate() bool {
	switch a {
	case ActMkdir, ActWrite, ActSymlink, ActLink, ActRename:
		return true
	}
	return false
}

// Limits on entries. They keep every entry small enough to gossip (DESIGN §3)
// and every decoder's allocation bounded.
const (
	MaxPathLen      = 1024 // bytes in a whole path
	MaxNameLen      = 255  // bytes in one path component
	MaxTargetLen    = 1024 // symlink target, link or rename source
	MaxFSNameLen    = 63
	NonceLen        = 16
	MaxHashes       = 24   // hashes in one ack or supersedes list
	MaxEntrySize    = 2048 // encoded bytes
	MaxInline       = 256  // encoded content bytes carried inside an entry
	MaxRootBlocks   = 8    // block references carried inside an entry
	MaxContentDepth = 4    // levels of block-tree indirection
	MaxFileSize     = 1 << 30
)

// Entry is one signed record of the log. Which fields are present depends on
// the action (see schema in encode.go); absent fields are zero.
//
// An Entry is immutable once signed: the encoding, hash and signature are
// computed over its fields, so callers must not modify a decoded or signed
// entry. Entries are safe to share between goroutines for reading.
type Entry struct {
	Action Action
	Parent Hash   // zero only for the root entry
	Path   string // absolute, cleaned (see ValidatePath)
	Time   int64  // unix nanoseconds; informational only, never used for decisions
	Author [32]byte

	Name  string // root only: the filesystem name
	Nonce []byte // root only: NonceLen random bytes

	Mode  uint32 // mkdir, write, mode: permission bits (0o7777)
	MTime int64  // mode (optional): explicit modification time, unix ns
	// Owner (mode, optional): "USER:GROUP" by name; each node maps the
	// names to its own ids.
	Owner string

	Content *Content // write

	Target string   // slink: link text; link: primary path; rename: old path
	Ref    Hash     // revert: target entry; rename: moved entry; link: primary's entry
	Key    [32]byte // grant, revoke: the key granted or revoked
	Hashes []Hash   // ack: entries acknowledged; grant: revokes superseded

	// Filled by Sign and Decode: the canonical bytes (the signature is their
	// last field; see Signature) and their hash. An entry loaded from a store
	// holds no copy of its bytes but where to read them (see Encoded).
	hash    Hash
	encoded []byte
	src     *Store
	srcOff  int64
	srcLen  int32
}

// Content references a file's content. The content is encoded (compressed, or
// as a delta against Base), and the encoded payload is carried inline or split
// into content-addressed blocks arranged as a tree (see content.go).
type Content struct {
	Size     uint64   // bytes of the file
	Hash     Hash     // SHA-256 of the file's bytes
	Encoding Encoding // how the payload encodes the content
	Base     Hash     // content hash of the delta base; zero unless Encoding is a delta
	Inline   []byte   // the whole payload, when it is at most MaxInline bytes
	// When not inline: the payload's length, the tree's depth (0: Blocks are
	// data blocks) and the top-level block references (at most MaxRootBlocks).
	PayloadLen uint64
	Depth      uint8
	Blocks     []Hash
}

// Encoding says how a content payload encodes a file's bytes.
type Encoding uint8

// The encodings. Their numeric values are part of the entry encoding.
const (
	EncRaw     Encoding = 0 // payload is the content
	EncZstd    Encoding = 1 // zstd frame of the content
	EncBsdiff  Encoding = 2 // bsdiff patch from Base to the content
	EncZstdDct Encoding = 3 // zstd frame using Base as a raw dictionary
)

// IsDelta reports whether the encoding needs the base content to decode.
func (e Encoding) IsDelta() bool { return e == EncBsdiff || e == EncZstdDct }

// Valid reports whether e is a known encoding.
func (e Encoding) Valid() bool { return e <= EncZstdDct }

// String names the encoding.
func (e Encoding) String() string {
	switch e {
	case EncRaw:
		return "raw"
	case EncZstd:
		return "zstd"
	case EncBsdiff:
		return "bsdiff"
	case EncZstdDct:
		return "zstd-delta"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// IsRoot reports whether e is a filesystem's root entry.
func (e *Entry) IsRoot() bool { return e.Parent.IsZero() }

// Hash returns the entry's hash: SHA-256 of its canonical encoding. It is
// valid only after Sign or Decode.
func (e *Entry) Hash() Hash { return e.hash }

// Encoded returns the entry's canonical bytes (after Sign or Decode). The
// caller must not modify them. For an entry loaded from a store they are read
// back from the store file (and checked against the hash); nil means they
// cannot be read any more (the store was closed, or the file was damaged
// since).
func (e *Entry) Encoded() []byte {
	if e.encoded != nil {
		return e.encoded
	}
	if e.src == nil {
		return nil
	}
	b, err := e.src.readEncoded(e.srcOff, e.srcLen, e.hash)
	if err != nil {
		return nil
	}
	return b
}

// Deps returns the hashes of the entries that must be present before e can be
// interpreted: its parent, and the entry named by Ref where the action uses it.
func (e *Entry) Deps() []Hash {
	var d []Hash
	if !e.Parent.IsZero() {
		d = append(d, e.Parent)
	}
	switch e.Action {
	case ActRevert, ActRename, ActLink:
		if !e.Ref.IsZero() && e.Ref != e.Parent {
			d = append(d, e.Ref)
		}
	}
	return d
}

// Errors returned by decoding and verification.
var (
	ErrMalformed = errors.New("malformed entry")
	ErrSignature = errors.New("bad signature")
)
