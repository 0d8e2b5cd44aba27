package log

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The canonical encoding of an entry:
//
//	version(1 byte) action(1 byte) field*
//	field = tag(1 byte) length(uvarint) value(length bytes)
//
// Fields appear in increasing tag order, each at most once, exactly those the
// action's schema requires plus those of its optional fields that are not zero.
// Integers inside values are uvarints (signed ones zigzag-encoded). The
// signature is the last field; it signs the domain string followed by every
// byte before it. The entry's hash is the SHA-256 of all the bytes.
//
// Decode accepts only canonical input: it re-encodes what it parsed and
// rejects any difference, so decode → encode always gives the same bytes.

const (
	tagParent  = 1
	tagPath    = 2
	tagTime    = 3
	tagAuthor  = 4
	tagName    = 5
	tagNonce   = 6
	tagMode    = 7
	tagMTime   = 8
	tagContent = 9
	tagTarget  = 10
	tagRef     = 11
	tagKey     = 12
	tagHashes  = 13
	tagOwner   = 14
	tagSig     = 15
	numTags    = 16
)

// Content sub-fields.
const (
	ctagSize       = 1
	ctagHash       = 2
	ctagEncoding   = 3
	ctagBase       = 4
	ctagInline     = 5
	ctagPayloadLen = 6
	ctagDepth      = 7
	ctagBlocks     = 8
)

const signDomain = "basefs/entry/v1\x00"

type presence uint8

const (
	forbidden presence = iota
	required
	optional
)

// schema lists, per action, which fields an entry has. Root entries (mkdir
// without parent) use rootSchema.
var (
	rootSchema = fieldSet(tagPath, tagTime, tagAuthor, tagName, tagNonce, tagMode)
	schemas    = map[Action][numTags]presence{
		ActMkdir:   fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagMode),
		ActWrite:   withOptional(fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagMode, tagContent), tagMTime),
		ActDelete:  fieldSet(tagParent, tagPath, tagTime, tagAuthor),
		ActRevert:  fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagRef),
		ActGrant:   withOptional(fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagKey), tagHashes),
		ActRevoke:  fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagKey),
		ActAck:     fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagHashes),
		ActLink:    fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagTarget, tagRef),
		ActSymlink: fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagTarget),
		ActMode:    withOptional(fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagMode), tagMTime, tagOwner),
		ActRename:  fieldSet(tagParent, tagPath, tagTime, tagAuthor, tagTarget, tagRef),
	}
)

func fieldSet(tags ...int) [numTags]presence {
	var s [numTags]presence
	for _, t := range tags {
		s[t] = required
	}
	s[tagSig] = required
	return s
}

func withOptional(s [numTags]presence, tags ...int) [numTags]presence {
	for _, t := range tags {
		s[t] = optional
	}
	return s
}

func (e *Entry) schema() ([numTags]presence, bool) {
	if e.Action == ActMkdir && e.Parent.IsZero() {
		return rootSchema, true
	}
	s, ok := schemas[e.Action]
	return s, ok
}

// appendField appends one field: tag, length, value.
func appendField(b []byte, tag int, v []byte) []byte {
	b = append(b, byte(tag))
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendUvarintField appends a field whose value is a uvarint.
func appendUvarintField(b []byte, tag int, v uint64) []byte {
	var tmp [binary.MaxVarintLen64]byte
	return appendField(b, tag, tmp[:binary.PutUvarint(tmp[:], v)])
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// appendBody appends the encoding of every field but the signature to dst.
func (e *Entry) appendBody(dst []byte) ([]byte, error) {
	s, ok := e.schema()
	if !ok {
		return nil, fmt.Errorf("%w: unknown action %d", ErrMalformed, e.Action)
	}
	w := dst
	w = append(w, FormatVersion, byte(e.Action))
	want := func(tag int, zero bool) bool {
		switch s[tag] {
		case required:
			return true
		case optional:
			return !zero
		}
		return false
	}
	if want(tagParent, e.Parent.IsZero()) {
		w = appendField(w, tagParent, e.Parent[:])
	}
	if want(tagPath, e.Path == "") {
		w = appendField(w, tagPath, []byte(e.Path))
	}
	if want(tagTime, e.Time == 0) {
		w = appendUvarintField(w, tagTime, zigzag(e.Time))
	}
	if want(tagAuthor, false) {
		w = appendField(w, tagAuthor, e.Author[:])
	}
	if want(tagName, e.Name == "") {
		w = appendField(w, tagName, []byte(e.Name))
	}
	if want(tagNonce, len(e.Nonce) == 0) {
		w = appendField(w, tagNonce, e.Nonce)
	}
	if want(tagMode, e.Mode == 0) {
		w = appendUvarintField(w, tagMode, uint64(e.Mode))
	}
	if want(tagMTime, e.MTime == 0) {
		w = appendUvarintField(w, tagMTime, zigzag(e.MTime))
	}
	if want(tagContent, e.Content == nil) {
		if e.Content == nil {
			return nil, fmt.Errorf("%w: %s without content", ErrMalformed, e.Action)
		}
		var cb [256 + 32*MaxRootBlocks]byte
		w = appendField(w, tagContent, e.Content.appendTo(cb[:0]))
	}
	if want(tagTarget, e.Target == "") {
		w = appendField(w, tagTarget, []byte(e.Target))
	}
	if want(tagRef, e.Ref.IsZero()) {
		w = appendField(w, tagRef, e.Ref[:])
	}
	if want(tagKey, false) {
		w = appendField(w, tagKey, e.Key[:])
	}
	if want(tagHashes, len(e.Hashes) == 0) {
		hb := make([]byte, 0, 32*len(e.Hashes))
		for _, h := range e.Hashes {
			hb = append(hb, h[:]...)
		}
		w = appendField(w, tagHashes, hb)
	}
	if want(tagOwner, e.Owner == "") {
		w = appendField(w, tagOwner, []byte(e.Owner))
	}
	return w, nil
}

func (c *Content) appendTo(dst []byte) []byte {
	w := dst
	w = appendUvarintField(w, ctagSize, c.Size)
	w = appendField(w, ctagHash, c.Hash[:])
	w = appendUvarintField(w, ctagEncoding, uint64(c.Encoding))
	if c.Encoding.IsDelta() {
		w = appendField(w, ctagBase, c.Base[:])
	}
	if c.Blocks == nil {
		w = appendField(w, ctagInline, c.Inline)
	} else {
		w = appendUvarintField(w, ctagPayloadLen, c.PayloadLen)
		w = appendUvarintField(w, ctagDepth, uint64(c.Depth))
		hb := make([]byte, 0, 32*len(c.Blocks))
		for _, h := range c.Blocks {
			hb = append(hb, h[:]...)
		}
		w = appendField(w, ctagBlocks, hb)
	}
	return w
}

// sigFieldLen is the length of the signature field: tag, length (64 < 128,
// one byte), signature.
const sigFieldLen = 1 + 1 + ed25519.SignatureSize

// Sign fills in the author, signs the entry with priv and computes its
// encoding and hash. The entry's fields must not change afterwards.
func (e *Entry) Sign(priv ed25519.PrivateKey) error {
	copy(e.Author[:], priv.Public().(ed25519.PublicKey))
	if err := e.Check(); err != nil {
		return err
	}
	var buf [MaxEntrySize + 1024]byte
	msg, err := e.appendBody(append(buf[:0], signDomain...))
	if err != nil {
		return err
	}
	if len(msg)-len(signDomain)+sigFieldLen > MaxEntrySize {
		return fmt.Errorf("%w: entry is %d bytes, more than %d", ErrMalformed, len(msg)-len(signDomain)+sigFieldLen, MaxEntrySize)
	}
	sig := ed25519.Sign(priv, msg)
	w := msg
	w = appendField(w, tagSig, sig)
	e.encoded = bytes.Clone(w[len(signDomain):])
	e.hash = Sum(e.encoded)
	return nil
}

// Signature returns the entry's ed25519 signature (after Sign or Decode).
func (e *Entry) Signature() []byte {
	enc := e.Encoded()
	if len(enc) < sigFieldLen {
		return nil
	}
	return enc[len(enc)-ed25519.SignatureSize:]
}

// Verify checks the entry's signature against its author key. It assumes the
// entry came from Decode or Sign (so its encoding is canonical).
func (e *Entry) Verify() error {
	enc := e.Encoded()
	if len(enc) < sigFieldLen {
		return fmt.Errorf("%w: the entry's bytes are not available", ErrMalformed)
	}
	body := enc[:len(enc)-sigFieldLen]
	var buf [MaxEntrySize + 32]byte
	msg := append(append(buf[:0], signDomain...), body...)
	if !ed25519.Verify(ed25519.PublicKey(e.Author[:]), msg, enc[len(enc)-ed25519.SignatureSize:]) {
		return ErrSignature
	}
	return nil
}

// DecodeVerified decodes b and checks its signature.
func DecodeVerified(b []byte) (*Entry, error) {
	e, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if err := e.Verify(); err != nil {
		return nil, err
	}
	return e, nil
}

// Decode parses canonical entry bytes. It checks structure and field limits
// and computes the hash, but does not verify the signature (see Verify). The
// returned entry keeps a copy of b.
func Decode(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxEntrySize)
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: too short", ErrMalformed)
	}
	if b[0] != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, this build reads %d", ErrMalformed, b[0], FormatVersion)
	}
	e := &Entry{Action: Action(b[1])}
	if !e.Action.Valid() {
		return nil, fmt.Errorf("%w: unknown action %d", ErrMalformed, b[1])
	}
	var seen [numTags]bool
	var sig []byte
	rest := b[2:]
	last := 0
	for len(rest) > 0 {
		tag := int(rest[0])
		if tag <= last || tag >= numTags {
			return nil, fmt.Errorf("%w: field %d out of order or unknown", ErrMalformed, tag)
		}
		last = tag
		n, k := binary.Uvarint(rest[1:])
		if k <= 0 || n > uint64(len(rest)-1-k) {
			return nil, fmt.Errorf("%w: field %d length", ErrMalformed, tag)
		}
		v := rest[1+k : 1+k+int(n)]
		rest = rest[1+k+int(n):]
		seen[tag] = true
		if tag == tagSig {
			if len(v) != ed25519.SignatureSize {
				return nil, fmt.Errorf("%w: signature is %d bytes", ErrMalformed, len(v))
			}
			sig = v
			continue
		}
		if err := e.setField(tag, v); err != nil {
			return nil, err
		}
	}
	s, _ := e.schema()
	for tag := 1; tag < numTags; tag++ {
		if seen[tag] && s[tag] == forbidden {
			return nil, fmt.Errorf("%w: %s entry has field %d", ErrMalformed, e.Action, tag)
		}
		if !seen[tag] && s[tag] == required {
			return nil, fmt.Errorf("%w: %s entry lacks field %d", ErrMalformed, e.Action, tag)
		}
	}
	if err := e.Check(); err != nil {
		return nil, err
	}
	var buf [MaxEntrySize + 1024]byte
	body, err := e.appendBody(buf[:0])
	if err != nil {
		return nil, err
	}
	w := body
	w = appendField(w, tagSig, sig)
	if !bytes.Equal(w, b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrMalformed)
	}
	e.encoded = bytes.Clone(b)
	e.hash = Sum(e.encoded)
	return e, nil
}

func fixed(dst []byte, v []byte, what string) error {
	if len(v) != len(dst) {
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrMalformed, what, len(v), len(dst))
	}
	copy(dst, v)
	return nil
}

func uvarintValue(v []byte, what string) (uint64, error) {
	u, k := binary.Uvarint(v)
	if k <= 0 || k != len(v) {
		return 0, fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
	return u, nil
}

func hashList(v []byte, max int, what string) ([]Hash, error) {
	if len(v) == 0 || len(v)%32 != 0 || len(v)/32 > max {
		return nil, fmt.Errorf("%w: %s list of %d bytes", ErrMalformed, what, len(v))
	}
	hs := make([]Hash, len(v)/32)
	for i := range hs {
		copy(hs[i][:], v[32*i:])
	}
	return hs, nil
}

func (e *Entry) setField(tag int, v []byte) error {
	var err error
	var u uint64
	switch tag {
	case tagParent:
		return fixed(e.Parent[:], v, "parent")
	case tagPath:
		e.Path = string(v)
	case tagTime:
		u, err = uvarintValue(v, "time")
		e.Time = unzigzag(u)
	case tagAuthor:
		return fixed(e.Author[:], v, "author")
	case tagName:
		e.Name = string(v)
	case tagNonce:
		e.Nonce = bytes.Clone(v)
	case tagMode:
		u, err = uvarintValue(v, "mode")
		if u > 0o7777 {
			return fmt.Errorf("%w: mode %o", ErrMalformed, u)
		}
		e.Mode = uint32(u)
	case tagMTime:
		u, err = uvarintValue(v, "mtime")
		e.MTime = unzigzag(u)
	case tagContent:
		e.Content, err = decodeContent(v)
	case tagTarget:
		e.Target = string(v)
	case tagRef:
		return fixed(e.Ref[:], v, "ref")
	case tagKey:
		return fixed(e.Key[:], v, "key")
	case tagHashes:
		e.Hashes, err = hashList(v, MaxHashes, "hash")
	case tagOwner:
		e.Owner = string(v)
	default:
		return fmt.Errorf("%w: unknown field %d", ErrMalformed, tag)
	}
	return err
}

func decodeContent(b []byte) (*Content, error) {
	c := &Content{}
	last := 0
	var sawInline, sawBlocks bool
	for len(b) > 0 {
		tag := int(b[0])
		if tag <= last || tag > ctagBlocks {
			return nil, fmt.Errorf("%w: content field %d out of order or unknown", ErrMalformed, tag)
		}
		last = tag
		n, k := binary.Uvarint(b[1:])
		if k <= 0 || n > uint64(len(b)-1-k) {
			return nil, fmt.Errorf("%w: content field %d length", ErrMalformed, tag)
		}
		v := b[1+k : 1+k+int(n)]
		b = b[1+k+int(n):]
		var err error
		var u uint64
		switch tag {
		case ctagSize:
			c.Size, err = uvarintValue(v, "content size")
		case ctagHash:
			err = fixed(c.Hash[:], v, "content hash")
		case ctagEncoding:
			u, err = uvarintValue(v, "encoding")
			c.Encoding = Encoding(u)
			if u > 255 || !c.Encoding.Valid() {
				err = fmt.Errorf("%w: unknown encoding %d", ErrMalformed, u)
			}
		case ctagBase:
			err = fixed(c.Base[:], v, "base hash")
		case ctagInline:
			c.Inline = bytes.Clone(v)
			sawInline = true
		case ctagPayloadLen:
			c.PayloadLen, err = uvarintValue(v, "payload length")
		case ctagDepth:
			u, err = uvarintValue(v, "depth")
			c.Depth = uint8(u)
			if u > MaxContentDepth {
				err = fmt.Errorf("%w: content depth %d", ErrMalformed, u)
			}
		case ctagBlocks:
			c.Blocks, err = hashList(v, MaxRootBlocks, "block")
			sawBlocks = true
		}
		if err != nil {
			return nil, err
		}
	}
	if sawInline == sawBlocks {
		return nil, fmt.Errorf("%w: content must be either inline or in blocks", ErrMalformed)
	}
	if sawInline && c.Inline == nil {
		c.Inline = []byte{}
	}
	return c, nil
}

// Check validates the entry's fields against the limits and rules that do
// not need other entries: a valid path, sizes, the fields the action needs.
func (e *Entry) Check() error {
	s, ok := e.schema()
	if !ok {
		return fmt.Errorf("%w: unknown action %d", ErrMalformed, e.Action)
	}
	if e.Parent.IsZero() {
		if s != rootSchema {
			return fmt.Errorf("%w: %s entry without parent", ErrMalformed, e.Action)
		}
		if e.Path != "/" {
			return fmt.Errorf("%w: root entry at %q", ErrMalformed, e.Path)
		}
		if err := ValidateFSName(e.Name); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if len(e.Nonce) != NonceLen {
			return fmt.Errorf("%w: root nonce of %d bytes", ErrMalformed, len(e.Nonce))
		}
	}
	if err := ValidatePath(e.Path); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.Mode > 0o7777 {
		return fmt.Errorf("%w: mode %o", ErrMalformed, e.Mode)
	}
	if s[tagTarget] == required {
		if e.Target == "" || len(e.Target) > MaxTargetLen || bytes.IndexByte([]byte(e.Target), 0) >= 0 {
			return fmt.Errorf("%w: bad target", ErrMalformed)
		}
		if e.Action != ActSymlink {
			if err := ValidatePath(e.Target); err != nil {
				return fmt.Errorf("%w: target: %v", ErrMalformed, err)
			}
		}
	}
	if e.Path == "/" && !e.Parent.IsZero() {
		switch e.Action {
		case ActMode, ActGrant, ActRevoke, ActAck:
		default:
			return fmt.Errorf("%w: %s of /", ErrMalformed, e.Action)
		}
	}
	if e.Action == ActRename && (e.Target == e.Path || IsUnder(e.Path, e.Target)) {
		return fmt.Errorf("%w: rename of %s into itself", ErrMalformed, e.Target)
	}
	if e.Action == ActLink && e.Target == e.Path {
		return fmt.Errorf("%w: link to itself", ErrMalformed)
	}
	if e.Owner != "" {
		if err := ValidateOwner(e.Owner); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if len(e.Hashes) > MaxHashes {
		return fmt.Errorf("%w: %d hashes, more than %d", ErrMalformed, len(e.Hashes), MaxHashes)
	}
	if s[tagHashes] == required && len(e.Hashes) == 0 {
		return fmt.Errorf("%w: %s without hashes", ErrMalformed, e.Action)
	}
	if c := e.Content; c != nil {
		if err := c.check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Content) check() error {
	if c.Size > MaxFileSize {
		return fmt.Errorf("%w: file of %d bytes, more than %d", ErrMalformed, c.Size, MaxFileSize)
	}
	if !c.Encoding.Valid() {
		return fmt.Errorf("%w: unknown encoding %d", ErrMalformed, c.Encoding)
	}
	if c.Encoding.IsDelta() == c.Base.IsZero() {
		return fmt.Errorf("%w: base hash must be given exactly for delta encodings", ErrMalformed)
	}
	if c.Blocks == nil {
		if len(c.Inline) > MaxInline {
			return fmt.Errorf("%w: inline payload of %d bytes", ErrMalformed, len(c.Inline))
		}
		if c.PayloadLen != 0 || c.Depth != 0 {
			return fmt.Errorf("%w: inline content with block fields", ErrMalformed)
		}
		if c.Encoding == EncRaw && uint64(len(c.Inline)) != c.Size {
			return fmt.Errorf("%w: raw inline payload length differs from size", ErrMalformed)
		}
		return nil
	}
	if c.Inline != nil {
		return fmt.Errorf("%w: content both inline and in blocks", ErrMalformed)
	}
	if len(c.Blocks) == 0 || len(c.Blocks) > MaxRootBlocks {
		return fmt.Errorf("%w: %d root blocks", ErrMalformed, len(c.Blocks))
	}
	if c.Depth > MaxContentDepth {
		return fmt.Errorf("%w: content depth %d", ErrMalformed, c.Depth)
	}
	if c.PayloadLen == 0 || c.PayloadLen > MaxPayloadLen(c.Depth, len(c.Blocks)) {
		return fmt.Errorf("%w: payload of %d bytes does not fit %d blocks at depth %d", ErrMalformed, c.PayloadLen, len(c.Blocks), c.Depth)
	}
	if c.Encoding == EncRaw && c.PayloadLen != c.Size {
		return fmt.Errorf("%w: raw payload length differs from size", ErrMalformed)
	}
	// Raw is always a candidate, so the smallest encoding is never longer
	// than the file; a forced one may expand a little (compressing random
	// bytes), never by more than this.
	if c.PayloadLen > c.Size+c.Size/16+4096 {
		return fmt.Errorf("%w: payload of %d bytes for a %d-byte file", ErrMalformed, c.PayloadLen, c.Size)
	}
	if _, err := contentShape(c); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// ValidateFSName checks a filesystem name: [a-z0-9][a-z0-9._-]{0,62}.
func ValidateFSName(name string) error {
	if name == "" || len(name) > MaxFSNameLen {
		return fmt.Errorf("filesystem name %q must be 1 to %d characters", name, MaxFSNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("filesystem name %q: use lowercase letters, digits, and . _ - after the first character", name)
		}
	}
	return nil
}

// ValidatePath checks an absolute filesystem path: it starts with '/', has no
// empty, "." or ".." components, no trailing slash (except "/"), no NUL, is
// valid UTF-8 and within the length limits.
func ValidatePath(p string) error {
	if p == "/" {
		return nil
	}
	if p == "" || p[0] != '/' {
		return fmt.Errorf("path %q is not absolute", p)
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("path is %d bytes long, more than %d", len(p), MaxPathLen)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("path %q is not valid UTF-8", p)
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if p[i] == 0 {
				return fmt.Errorf("path %q contains a NUL byte", p)
			}
			continue
		}
		comp := p[start:i]
		switch {
		case comp == "":
			return fmt.Errorf("path %q has an empty component", p)
		case comp == "." || comp == "..":
			return fmt.Errorf("path %q contains %q", p, comp)
		case len(comp) > MaxNameLen:
			return fmt.Errorf("path component is %d bytes long, more than %d", len(comp), MaxNameLen)
		}
		start = i + 1
	}
	return nil
}

// Dir returns the directory of a valid path ("/" for top-level names and for
// "/" itself).
func Dir(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "/"
}

// Base returns the last component of a valid path ("" for "/").
func Base(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// Join returns dir/name for a valid directory path and a component.
func Join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// Depth returns the number of components of a valid path ("/" is 0).
func Depth(p string) int {
	if p == "/" {
		return 0
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			n++
		}
	}
	return n
}

// IsUnder reports whether p is strictly below dir.
func IsUnder(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}

// IsAtOrUnder reports whether p is dir or below it.
func IsAtOrUnder(p, dir string) bool { return p == dir || IsUnder(p, dir) }

// MaxOwnerPart bounds a user or group name in an owner field.
const MaxOwnerPart = 64

// ValidateOwner checks an owner field: "USER:GROUP", each a name of 1 to
// MaxOwnerPart printable ASCII bytes without ':' or spaces (a numeric id
// when the writer had no name for it).
func ValidateOwner(o string) error {
	user, group, ok := strings.Cut(o, ":")
	if !ok {
		return fmt.Errorf("owner %q: want USER:GROUP", o)
	}
	for _, part := range []string{user, group} {
		if part == "" || len(part) > MaxOwnerPart {
			return fmt.Errorf("owner %q: names must be 1 to %d bytes", o, MaxOwnerPart)
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; c <= ' ' || c >= 0x7f || c == ':' {
				return fmt.Errorf("owner %q: names are printable ASCII without spaces or ':'", o)
			}
		}
	}
	return nil
}
