package syncproto

import (
	"errors"
	"fmt"
	"strings"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// receiver takes the entries and blocks a peer sends in a session and
// ingests them through the replica, which verifies every signature before it
// stores anything.
//
// Blocks are accepted only when this side has a reason to want them: they
// were asked for by hash, or they belong to the content of an entry the peer
// sent in this session (its root blocks, then, level by level, the blocks
// its tree blocks name). So a peer cannot fill the store with blocks no
// entry refers to.
type receiver struct {
	r         *replica.Replica
	expect    map[log.Hash]uint8 // block → tree levels below it (0: data block)
	requested map[log.Hash]bool  // blocks asked for by hash

	entries []*log.Entry
	blocks  [][]byte
	bytes   int

	// Totals.
	newEntries, dupEntries, newBlocks int64
	gotBlocks                         []log.Hash // blocks received that were asked for by hash
	rejected                          map[string]int64
	contentEntries                    bool // an entry with block content was stored
	forged                            error
}

func newReceiver(r *replica.Replica) *receiver {
	return &receiver{r: r, expect: map[log.Hash]uint8{}, requested: map[log.Hash]bool{}}
}

// Flush thresholds: ingest in batches so memory stays bounded.
const (
	flushEntries = 4096
	flushBytes   = 16 << 20
)

// entriesFrame decodes an entries frame. A malformed entry is a protocol
// violation (garbage); signatures are checked at flush.
func (rc *receiver) entriesFrame(p []byte) error {
	items, err := decodeItems(p, log.MaxEntrySize)
	if err != nil {
		return err
	}
	for _, b := range items {
		e, err := log.Decode(b)
		if err != nil {
			return protoErr("peer sent a malformed entry: %v", err)
		}
		if c := e.Content; c != nil && c.Blocks != nil {
			for _, h := range c.Blocks {
				if len(rc.expect) >= maxExpect {
					return fmt.Errorf("%w: too many blocks outstanding", ErrLimit)
				}
				if old, ok := rc.expect[h]; !ok || c.Depth > old {
					rc.expect[h] = c.Depth
				}
			}
		}
		rc.entries = append(rc.entries, e)
		rc.bytes += len(b)
	}
	if len(rc.entries) >= flushEntries || rc.bytes >= flushBytes {
		return rc.flush()
	}
	return nil
}

// blocksFrame checks and keeps the blocks of a blocks frame.
func (rc *receiver) blocksFrame(p []byte) error {
	items, err := decodeItems(p, log.BlockSize)
	if err != nil {
		return err
	}
	for _, b := range items {
		h := log.Sum(b)
		level, ok := rc.expect[h]
		if !ok && !rc.requested[h] {
			rc.reject("block no entry refers to")
			return fmt.Errorf("%w: peer sent block %s, which no entry of this session refers to and which was not asked for", ErrForged, h.Short())
		}
		if rc.requested[h] {
			delete(rc.requested, h)
			rc.gotBlocks = append(rc.gotBlocks, h)
		}
		if ok && level > 0 {
			if len(b)%32 != 0 {
				rc.reject("malformed tree block")
				return fmt.Errorf("%w: tree block %s of %d bytes", ErrForged, h.Short(), len(b))
			}
			for i := 0; i+32 <= len(b); i += 32 {
				var c log.Hash
				copy(c[:], b[i:])
				if len(rc.expect) >= maxExpect {
					return fmt.Errorf("%w: too many blocks outstanding", ErrLimit)
				}
				if old, ok := rc.expect[c]; !ok || level-1 > old {
					rc.expect[c] = level - 1
				}
			}
		}
		rc.blocks = append(rc.blocks, append([]byte(nil), b...))
		rc.bytes += len(b)
	}
	if rc.bytes >= flushBytes {
		return rc.flush()
	}
	return nil
}

// flush ingests what was received. Entries failing verification make the
// session fail with ErrForged (after the good ones are stored: each entry
// is verified on its own, so nothing forged is ever stored).
func (rc *receiver) flush() error {
	if len(rc.entries) == 0 && len(rc.blocks) == 0 {
		return rc.forged
	}
	res, err := rc.r.Ingest(rc.entries, rc.blocks)
	for _, e := range rc.entries {
		if c := e.Content; c != nil && (c.Blocks != nil || c.Encoding.IsDelta()) {
			rc.contentEntries = true
		}
	}
	rc.entries, rc.blocks, rc.bytes = rc.entries[:0], rc.blocks[:0], 0
	if err != nil {
		return err
	}
	rc.newEntries += int64(res.Entries)
	rc.dupEntries += int64(res.Duplicates)
	rc.newBlocks += int64(res.Blocks)
	for _, rj := range res.Rejected {
		rc.reject(rj.Reason)
		if rc.forged == nil && (rj.Reason == "bad signature" || rj.Reason == "root entry of another filesystem") {
			rc.forged = fmt.Errorf("%w: entry %.12s: %s", ErrForged, rj.Hash, rj.Reason)
		}
	}
	return rc.forged
}

func (rc *receiver) reject(reason string) {
	if rc.rejected == nil {
		rc.rejected = map[string]int64{}
	}
	rc.rejected[reason]++
}

// isBlockReason reports whether a rejection reason concerns a block.
func isBlockReason(reason string) bool { return strings.Contains(reason, "block") }

// sender writes entries and the blocks of their contents.
type sender struct {
	w    *wire
	r    *replica.Replica
	seen map[log.Hash]bool // blocks sent in this session

	entries, blocks int64
	notFound        []log.Hash
}

func newSender(w *wire, r *replica.Replica) *sender {
	return &sender{w: w, r: r, seen: map[log.Hash]bool{}}
}

// sendEntries sends the entries with the given hashes (those not held are
// noted in notFound) and then the blocks of their contents that are held
// here, tree blocks before the blocks they name.
func (s *sender) sendEntries(hashes []log.Hash) error {
	var f itemsFrame
	var contents []*log.Content
	for _, h := range hashes {
		b, ok := s.r.EntryBytes(h)
		if !ok {
			s.notFound = append(s.notFound, h)
			continue
		}
		f.add(b)
		s.entries++
		if f.full() {
			if err := s.w.writeFrame(tEntries, f.payload()); err != nil {
				return err
			}
		}
		if e, err := log.Decode(b); err == nil && e.Content != nil && e.Content.Blocks != nil {
			contents = append(contents, e.Content)
		}
	}
	if f.n > 0 {
		if err := s.w.writeFrame(tEntries, f.payload()); err != nil {
			return err
		}
	}
	for _, c := range contents {
		all, missing := s.r.ContentBlocks(c)
		miss := make(map[log.Hash]bool, len(missing))
		for _, h := range missing {
			miss[h] = true
		}
		for _, h := range all {
			if miss[h] || s.seen[h] {
				continue
			}
			b, err := s.r.Block(h)
			if err != nil {
				if errors.Is(err, log.ErrBlockMissing) {
					continue
				}
				return fmt.Errorf("reading block %s: %w", h.Short(), err)
			}
			s.seen[h] = true
			f.add(b)
			s.blocks++
			if f.full() {
				if err := s.w.writeFrame(tBlocks, f.payload()); err != nil {
					return err
				}
			}
		}
	}
	if f.n > 0 {
		return s.w.writeFrame(tBlocks, f.payload())
	}
	return nil
}

// sendBlocks sends the blocks asked for that are held here.
func (s *sender) sendBlocks(hashes []log.Hash) error {
	var f itemsFrame
	for _, h := range hashes {
		if s.seen[h] {
			continue
		}
		b, err := s.r.Block(h)
		if err != nil {
			s.notFound = append(s.notFound, h)
			continue
		}
		s.seen[h] = true
		f.add(b)
		s.blocks++
		if f.full() {
			if err := s.w.writeFrame(tBlocks, f.payload()); err != nil {
				return err
			}
		}
	}
	if f.n > 0 {
		return s.w.writeFrame(tBlocks, f.payload())
	}
	return nil
}

// sendNotFound sends the hashes noted as not held, and clears them.
func (s *sender) sendNotFound() error {
	for len(s.notFound) > 0 {
		n := min(len(s.notFound), maxFrameHashes)
		if err := s.w.writeFrame(tNotFound, encodeHashes(s.notFound[:n])); err != nil {
			return err
		}
		s.notFound = s.notFound[n:]
	}
	s.notFound = nil
	return nil
}

// writeHashes sends hashes in frames of type t.
func writeHashes(w *wire, t frameType, hs []log.Hash) error {
	for len(hs) > 0 {
		n := min(len(hs), maxFrameHashes)
		if err := w.writeFrame(t, encodeHashes(hs[:n])); err != nil {
			return err
		}
		hs = hs[n:]
	}
	return nil
}

// writeRefs sends node references in frames of type t.
func writeRefs(w *wire, t frameType, refs []nodeRef) error {
	for len(refs) > 0 {
		n, size := 0, 0
		for n < len(refs) && (n == 0 || size < targetFrame) {
			size += 3 + len(refs[n].Path) + 32
			n++
		}
		if err := w.writeFrame(t, encodeNodeRefs(refs[:n])); err != nil {
			return err
		}
		refs = refs[n:]
	}
	return nil
}

// writeReps sends node representations in frames.
func writeReps(w *wire, reps []rep) error {
	for len(reps) > 0 {
		var e enc
		n := 0
		var body enc
		for n < len(reps) && (n == 0 || len(body.b) < targetFrame) {
			body.rep(&reps[n])
			n++
		}
		e.uvarint(uint64(n))
		e.b = append(e.b, body.b...)
		if err := w.writeFrame(tNodes, e.b); err != nil {
			return err
		}
		reps = reps[n:]
	}
	return nil
}
