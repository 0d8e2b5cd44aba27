package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/basefs/basefs/log"
	"github.com/hashicorp/serf/serf"
)

// The event envelope. Every basefs Serf user event (name EventName) carries
// one envelope as its payload:
//
//	offset  size  field
//	0       1     version (EnvelopeVersion = 1)
//	1       1     type (TypeAnnounce = 1)
//	2       8     filesystem id prefix: the first FSPrefixLen bytes of the
//	              root entry's hash
//	10      1     n: length of the origin's node name, 1..MaxNodeNameLen
//	11      n     origin: the announcing node's name
//	11+n    ...   items, to the end of the payload, each:
//	                kind    1 byte (ItemEntry, ItemBlock, ItemHash)
//	                length  uvarint, minimal encoding
//	                bytes   length bytes
//
// Item bounds: an entry is 1..log.MaxEntrySize bytes, a block
// 1..log.BlockSize bytes, a hash exactly 32 bytes. A whole envelope is at
// most maxDecodeSize bytes (Serf's hard cap on a user event); the encoder
// keeps its own events within MaxEventSize. Items of one kind keep their
// order; the encoder writes entries, then hashes, then blocks, and the
// decoder accepts the kinds in any order.
//
// A decoder that meets a version or type it does not know returns
// ErrVersion, so newer nodes can add types without being counted as
// senders of garbage by older ones.
const (
	EnvelopeVersion = 1
	TypeAnnounce    = 1

	FSPrefixLen    = 8
	MaxNodeNameLen = 64

	ItemEntry = 1
	ItemBlock = 2
	ItemHash  = 3

	// envelopeFixed is the header's size without the origin name.
	envelopeFixed = 2 + FSPrefixLen + 1
)

// MaxEventSize is the largest envelope (Serf user event payload) this
// package sends. With the one-byte event name and Serf's msgpack framing
// (38 bytes, TestSerfFraming) the encoded Serf message is at most 1063
// bytes, which leaves
// memberlist's 1400-byte gossip packet (less its 2-byte compound header, a
// 25-byte label, 29 bytes of AES-GCM and 3 bytes of per-message framing)
// about 275 bytes for its own membership messages in the same packet.
// TestMaxEventOverUDP checks that events of exactly this size are
// delivered by UDP gossip in well under a second.
//
// A full data block (log.BlockSize = 896 bytes) with the largest header
// (11 + MaxNodeNameLen bytes) and its 3-byte item framing needs 974 bytes,
// so one block always fits in an event of its own.
const MaxEventSize = 1024

// maxDecodeSize is the largest envelope DecodeEvent accepts: Serf's hard
// limit on a user event (name + payload).
const maxDecodeSize = serf.UserEventSizeLimit

// Errors returned by DecodeEvent.
var (
	ErrMalformed = errors.New("gossip: malformed event")
	ErrVersion   = errors.New("gossip: unknown event version or type")
)

// Event is one decoded envelope.
//
// The byte slices of a decoded Event share one copy of the input (never the
// input itself); the caller may keep them but must not grow them.
type Event struct {
	FS      [FSPrefixLen]byte
	Origin  string
	Entries [][]byte
	Blocks  [][]byte
	Hashes  []log.Hash
}

// itemSize is the encoded size of an item of n bytes.
func itemSize(n int) int { return 1 + uvarintLen(uint64(n)) + n }

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// headerSize is the size of an envelope's header for an origin name.
func headerSize(origin string) int { return envelopeFixed + len(origin) }

// Size returns the encoded size of e.
func (e *Event) Size() int {
	n := headerSize(e.Origin)
	for _, b := range e.Entries {
		n += itemSize(len(b))
	}
	for range e.Hashes {
		n += itemSize(len(log.Hash{}))
	}
	for _, b := range e.Blocks {
		n += itemSize(len(b))
	}
	return n
}

// AppendEncode appends e's envelope to dst. It checks the bounds the
// decoder enforces, so anything it encodes decodes again.
func (e *Event) AppendEncode(dst []byte) ([]byte, error) {
	if len(e.Origin) == 0 || len(e.Origin) > MaxNodeNameLen {
		return dst, fmt.Errorf("gossip: origin name of %d bytes (want 1..%d)", len(e.Origin), MaxNodeNameLen)
	}
	if n := e.Size(); n > maxDecodeSize {
		return dst, fmt.Errorf("gossip: event of %d bytes exceeds %d", n, maxDecodeSize)
	}
	for _, b := range e.Entries {
		if len(b) == 0 || len(b) > log.MaxEntrySize {
			return dst, fmt.Errorf("gossip: entry of %d bytes (want 1..%d)", len(b), log.MaxEntrySize)
		}
	}
	for _, b := range e.Blocks {
		if len(b) == 0 || len(b) > log.BlockSize {
			return dst, fmt.Errorf("gossip: block of %d bytes (want 1..%d)", len(b), log.BlockSize)
		}
	}
	dst = append(dst, EnvelopeVersion, TypeAnnounce)
	dst = append(dst, e.FS[:]...)
	dst = append(dst, byte(len(e.Origin)))
	dst = append(dst, e.Origin...)
	for _, b := range e.Entries {
		dst = appendItem(dst, ItemEntry, b)
	}
	for _, h := range e.Hashes {
		dst = appendItem(dst, ItemHash, h[:])
	}
	for _, b := range e.Blocks {
		dst = appendItem(dst, ItemBlock, b)
	}
	return dst, nil
}

func appendItem(dst []byte, kind byte, b []byte) []byte {
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// DecodeEvent parses an envelope with strict bounds. It never panics, and
// it allocates at most one copy of b plus one slice header per item (an
// item takes at least 3 bytes of b), whatever b holds. Entries and blocks
// are returned as found: verifying them is the caller's job.
func DecodeEvent(b []byte) (*Event, error) {
	if len(b) > maxDecodeSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(b), maxDecodeSize)
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if b[0] != EnvelopeVersion || b[1] != TypeAnnounce {
		return nil, fmt.Errorf("%w: version %d type %d", ErrVersion, b[0], b[1])
	}
	if len(b) < envelopeFixed {
		return nil, fmt.Errorf("%w: short header", ErrMalformed)
	}
	e := &Event{}
	copy(e.FS[:], b[2:2+FSPrefixLen])
	n := int(b[envelopeFixed-1])
	if n == 0 || n > MaxNodeNameLen || len(b) < envelopeFixed+n {
		return nil, fmt.Errorf("%w: origin name of %d bytes", ErrMalformed, n)
	}
	e.Origin = string(b[envelopeFixed : envelopeFixed+n])
	rest := b[envelopeFixed+n:]
	if len(rest) == 0 {
		return nil, fmt.Errorf("%w: no items", ErrMalformed)
	}
	// One copy of the items, so the caller's slices never alias Serf's
	// buffers (Serf keeps the payload for push/pull).
	buf := make([]byte, len(rest))
	copy(buf, rest)
	for off := 0; off < len(buf); {
		kind := buf[off]
		off++
		l, k := binary.Uvarint(buf[off:])
		if k <= 0 || k != uvarintLen(l) {
			return nil, fmt.Errorf("%w: bad item length at %d", ErrMalformed, off)
		}
		off += k
		if l > uint64(len(buf)-off) {
			return nil, fmt.Errorf("%w: item of %d bytes overruns the event", ErrMalformed, l)
		}
		item := buf[off : off+int(l) : off+int(l)]
		off += int(l)
		switch kind {
		case ItemEntry:
			if l == 0 || l > log.MaxEntrySize {
				return nil, fmt.Errorf("%w: entry of %d bytes", ErrMalformed, l)
			}
			e.Entries = append(e.Entries, item)
		case ItemBlock:
			if l == 0 || l > log.BlockSize {
				return nil, fmt.Errorf("%w: block of %d bytes", ErrMalformed, l)
			}
			e.Blocks = append(e.Blocks, item)
		case ItemHash:
			if l != uint64(len(log.Hash{})) {
				return nil, fmt.Errorf("%w: hash of %d bytes", ErrMalformed, l)
			}
			e.Hashes = append(e.Hashes, log.Hash(item))
		default:
			return nil, fmt.Errorf("%w: unknown item kind %d", ErrMalformed, kind)
		}
	}
	return e, nil
}
