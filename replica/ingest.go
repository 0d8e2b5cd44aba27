package replica

import (
	"runtime"
	"sync"

	"github.com/basefs/basefs/log"
)

// Rejection is an entry or block refused by Ingest, and why.
type Rejection struct {
	Hash   string
	Reason string
}

// IngestResult says what Ingest did with what it was given.
type IngestResult struct {
	Entries    int // new entries stored
	Blocks     int // new blocks stored
	Duplicates int // entries already held
	Rejected   []Rejection
}

// Ingest verifies entries and blocks received from elsewhere and stores and
// applies those that check out. Entries must come from log.Decode (so their
// hashes were recomputed from their bytes); their signatures are verified
// here, on all cores, before anything is stored. Blocks are content-addressed
// (their hash is computed here) and kept when they fit the block size. Nothing
// invalid is stored.
func (r *Replica) Ingest(entries []*log.Entry, blocks [][]byte) (IngestResult, error) {
	var res IngestResult
	r.mu.RLock()
	if r.store == nil {
		r.mu.RUnlock()
		return res, errorf(Other, "", "filesystem is closed")
	}
	id := r.view.ID()
	fresh := make([]*log.Entry, 0, len(entries))
	seen := map[log.Hash]bool{}
	for _, e := range entries {
		h := e.Hash()
		if seen[h] || r.store.HasEntry(h) {
			res.Duplicates++
			continue
		}
		seen[h] = true
		if e.IsRoot() && h != id {
			res.Rejected = append(res.Rejected, Rejection{h.String(), "root entry of another filesystem"})
			continue
		}
		fresh = append(fresh, e)
	}
	r.mu.RUnlock()

	bad := verifyAll(fresh)
	good := fresh[:0]
	for i, e := range fresh {
		if bad[i] {
			res.Rejected = append(res.Rejected, Rejection{e.Hash().String(), "bad signature"})
			continue
		}
		good = append(good, e)
	}

	r.mu.Lock()
	if r.store == nil {
		r.mu.Unlock()
		return res, errorf(Other, "", "filesystem is closed")
	}
	if r.failed != nil {
		r.mu.Unlock()
		return res, &Error{Kind: Other, Detail: "filesystem needs reopening after an earlier write failure", Err: r.failed}
	}
	if r.dropUnauthorized {
		var dropped []*log.Entry
		good, dropped = r.withStanding(good)
		for _, e := range dropped {
			res.Rejected = append(res.Rejected, Rejection{e.Hash().String(), "no authority"})
		}
	}
	// Entries first, so the block check below knows their contents.
	var keepBlocks [][]byte
	if len(good) > 0 {
		r.noteContents(good)
	}
	for _, b := range blocks {
		h := log.Sum(b)
		if r.store.HasBlock(h) {
			continue
		}
		if len(b) > log.BlockSize {
			res.Rejected = append(res.Rejected, Rejection{h.String(), "block larger than the block size"})
			continue
		}
		keepBlocks = append(keepBlocks, b)
	}
	if err := r.store.Append(good, keepBlocks); err != nil {
		r.mu.Unlock()
		return res, &Error{Kind: Other, Detail: "could not store received entries: " + err.Error(), Err: err}
	}
	res.Entries, res.Blocks = len(good), len(keepBlocks)
	changes := r.view.Apply(good...)
	if len(good) == 0 && len(keepBlocks) == 0 {
		r.mu.Unlock()
		return res, nil
	}
	r.enqueue(Update{Entries: good, Blocks: blockHashes(keepBlocks), Changes: changes})
	r.mu.Unlock()
	r.drain()
	return res, nil
}

// SetDropUnauthorized makes Ingest drop entries whose authors have no
// standing for their paths (a running node's defence against peers flooding
// it with entries by ungranted keys). Local writes and get are not affected.
// Dropping loses nothing valid: an entry dropped because its grant had not
// arrived yet is sent again by anti-entropy once it has.
func (r *Replica) SetDropUnauthorized(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropUnauthorized = on
}

// withStanding splits entries into those whose authors may write where they
// write — by the view's grants and acks, or by grants and acks that arrive in
// the same batch from authors with standing — and the others. Callers hold
// r.mu.
func (r *Replica) withStanding(entries []*log.Entry) (keep, drop []*log.Entry) {
	var rootKey [32]byte
	var v = r.view
	rootKey = v.RootKey()
	granted := map[[32]byte][]string{} // key -> paths granted in this batch
	acked := map[log.Hash][]string{}   // entry -> ack paths in this batch
	standing := func(author [32]byte, p string) bool {
		if author == rootKey {
			return true
		}
		if _, ok := v.Level(author, p); ok {
			return true
		}
		for _, gp := range granted[author] {
			if log.IsAtOrUnder(p, gp) {
				return true
			}
		}
		return false
	}
	ok := func(e *log.Entry) bool {
		paths := []string{e.Path}
		if e.Action == log.ActRename {
			paths = append(paths, e.Target)
		}
		for _, p := range paths {
			if standing(e.Author, p) || v.AckedAt(e.Hash(), p) {
				continue
			}
			covered := false
			for _, ap := range acked[e.Hash()] {
				if log.IsAtOrUnder(p, ap) {
					covered = true
				}
			}
			if !covered {
				return false
			}
		}
		return true
	}
	// Grants and acks with standing widen what counts for the rest of the
	// batch; iterate until nothing more is admitted.
	admitted := make([]bool, len(entries))
	for changed := true; changed; {
		changed = false
		for i, e := range entries {
			if admitted[i] || !ok(e) {
				continue
			}
			admitted[i], changed = true, true
			switch e.Action {
			case log.ActGrant:
				granted[e.Key] = append(granted[e.Key], e.Path)
			case log.ActAck:
				for _, h := range e.Hashes {
					acked[h] = append(acked[h], e.Path)
				}
			}
		}
	}
	for i, e := range entries {
		if admitted[i] {
			keep = append(keep, e)
		} else {
			drop = append(drop, e)
		}
	}
	return keep, drop
}

// verifyAll checks signatures on all cores; bad[i] reports entries[i].
func verifyAll(entries []*log.Entry) []bool {
	bad := make([]bool, len(entries))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(entries)/64))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(entries); i += workers {
				bad[i] = entries[i].Verify() != nil
			}
		}(w)
	}
	wg.Wait()
	return bad
}
