package replica

import (
	"github.com/basefs/basefs/log"
)

// Access for the network layers (gossip, sync, get): what is stored, by hash
// and in store order. All are safe for concurrent use with everything else.

// HasEntry reports whether the entry with hash h is stored here.
func (r *Replica) HasEntry(h log.Hash) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.store != nil && r.store.HasEntry(h)
}

// EntryBytes returns the canonical bytes of the stored entry with hash h.
func (r *Replica) EntryBytes(h log.Hash) ([]byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.store == nil {
		return nil, false
	}
	e, ok := r.store.GetEntry(h)
	if !ok {
		return nil, false
	}
	return e.Encoded(), true
}

// HasBlock reports whether the block with hash h is stored here.
func (r *Replica) HasBlock(h log.Hash) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.store != nil && r.store.HasBlock(h)
}

// Block returns the stored block with hash h (log.ErrBlockMissing if absent).
func (r *Replica) Block(h log.Hash) ([]byte, error) {
	r.mu.RLock()
	s := r.store
	r.mu.RUnlock()
	if s == nil {
		return nil, errorf(Other, "", "filesystem is closed")
	}
	return s.Block(h)
}

// NumEntries returns how many entries are stored.
func (r *Replica) NumEntries() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.store == nil {
		return 0
	}
	return r.store.NumEntries()
}

// ScanEntries calls fn with the stored entries from position from (0 is the
// first) in store order, until fn returns false; it returns the position
// after the last entry passed. The entries are those stored when the scan
// started. fn runs without the replica lock.
func (r *Replica) ScanEntries(from int, fn func(e *log.Entry) bool) int {
	r.mu.RLock()
	var entries []*log.Entry
	if r.store != nil {
		entries = r.store.EntriesSince(from)
	}
	r.mu.RUnlock()
	for i, e := range entries {
		if !fn(e) {
			return from + i + 1
		}
	}
	return from + len(entries)
}

// MissingBlocks lists the blocks the visible files need that are not held
// here (for "missing_blocks" and for fetching them from peers).
func (r *Replica) MissingBlocks() []log.Hash {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.missingBlocks()
}

// ContentBlocks lists the blocks of a content reference that are held and
// missing here, as far as the held tree blocks tell.
func (r *Replica) ContentBlocks(c *log.Content) (all, missing []log.Hash) {
	r.mu.RLock()
	s := r.store
	r.mu.RUnlock()
	if s == nil || c == nil || c.Blocks == nil {
		return nil, nil
	}
	all, missing, _ = log.ContentBlocks(c, s.Block)
	return all, missing
}

// ContentComplete reports whether the content can be read on this node now:
// it is inline, materialized, or all its blocks (and its delta base, in
// turn) are held.
func (r *Replica) ContentComplete(c *log.Content) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.complete(c, 0)
}

func (r *Replica) complete(c *log.Content, depth int) bool {
	if c == nil || depth > maxDeltaChain+1 || r.store == nil {
		return false
	}
	if c.Blocks == nil && !c.Encoding.IsDelta() {
		return true
	}
	if r.cache.Has(c.Hash) {
		return true
	}
	if c.Blocks != nil {
		if _, missing, err := log.ContentBlocks(c, r.store.Block); err != nil || len(missing) > 0 {
			return false
		}
	}
	if c.Encoding.IsDelta() {
		return r.complete(r.contents[c.Base], depth+1)
	}
	return true
}
