package replica

import (
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

// Block admission. A block received from elsewhere is stored only when a
// content the replica knows (of an entry that passed its checks, standing
// included when the replica drops unauthorized entries) refers to it and
// it is not held yet: a peer cannot fill the disk with blocks no entry
// needs. wanted holds those missing blocks with their tree level (0: a data
// block; above: a tree block whose children become wanted once it is
// held). It is built on first use from every known content and kept up to
// date by Ingest; local writes store whole contents and want nothing.
//
// The caller holds r.mu for writing.

// wantedBlocks returns the wanted set, building it on first use.
func (r *Replica) wantedBlocks() map[log.Hash]uint8 {
	if r.wanted == nil {
		r.rebuildWanted()
	}
	return r.wanted
}

// rebuildWanted computes the wanted set afresh: the blocks missing from
// every known content and from the contents the tree shows (with the
// delta bases they need) — the same contents missingBlocks walks, so a
// block status reports missing is always admissible.
func (r *Replica) rebuildWanted() {
	r.wanted = map[log.Hash]uint8{}
	r.wantedBuilt = time.Now()
	for _, c := range r.contents {
		r.wantContent(c)
	}
	var chain func(c *log.Content, depth int)
	chain = func(c *log.Content, depth int) {
		if c == nil || depth > maxDeltaChain+1 {
			return
		}
		r.wantContent(c)
		if c.Encoding.IsDelta() {
			chain(r.contents[c.Base], depth+1)
		}
	}
	r.view.Walk("/", func(n view.Node) bool {
		if n.Kind == view.KindFile {
			chain(n.Content, 0)
		}
		return true
	})
}

// rebuildEvery bounds how often blocks nobody seems to want make the
// wanted set be recomputed (a safety net that costs a walk of the tree).
const rebuildEvery = 5 * time.Second

// wantContent marks the blocks of c that are missing as wanted.
func (r *Replica) wantContent(c *log.Content) {
	if c == nil || c.Blocks == nil {
		return
	}
	for _, h := range c.Blocks {
		r.wantBlock(h, c.Depth, 0)
	}
}

// wantBlock marks h (at the given tree level) as wanted when it is
// missing, or descends into it when it is a held tree block.
func (r *Replica) wantBlock(h log.Hash, level uint8, depth int) {
	if depth > log.MaxContentDepth+1 {
		return
	}
	if !r.store.HasBlock(h) {
		if old, ok := r.wanted[h]; !ok || level > old {
			r.wanted[h] = level
		}
		return
	}
	if level == 0 {
		return
	}
	b, err := r.store.Block(h)
	if err != nil {
		return
	}
	for i := 0; i+32 <= len(b); i += 32 {
		var child log.Hash
		copy(child[:], b[i:i+32])
		r.wantBlock(child, level-1, depth+1)
	}
}

// admitBlocks picks, from received blocks, those to store: wanted and not
// held. A tree block admitted makes its children wanted, so a tree and its
// leaves may arrive together in any order. It returns the blocks to store
// and how many were refused as wanted by no entry.
func (r *Replica) admitBlocks(blocks [][]byte) (keep [][]byte, unwanted int, tooBig []log.Hash) {
	wanted := r.wantedBlocks()
	type blk struct {
		h log.Hash
		b []byte
	}
	var pending []blk
	seen := map[log.Hash]bool{}
	for _, b := range blocks {
		h := log.Sum(b)
		if seen[h] || r.store.HasBlock(h) {
			continue
		}
		seen[h] = true
		if len(b) > log.BlockSize {
			tooBig = append(tooBig, h)
			continue
		}
		pending = append(pending, blk{h, b})
	}
	rebuilt := false
admit:
	for progress := true; progress && len(pending) > 0; {
		progress = false
		rest := pending[:0]
		for _, p := range pending {
			level, ok := wanted[p.h]
			if !ok {
				rest = append(rest, p)
				continue
			}
			delete(wanted, p.h)
			keep = append(keep, p.b)
			progress = true
			if level > 0 {
				for i := 0; i+32 <= len(p.b); i += 32 {
					var child log.Hash
					copy(child[:], p.b[i:i+32])
					r.wantBlock(child, level-1, 0)
				}
			}
		}
		pending = rest
	}
	if len(pending) > 0 && !rebuilt && time.Since(r.wantedBuilt) >= rebuildEvery {
		// Blocks nobody wants: junk, or a want this set lost track of.
		// Recompute once in a while, so the second never sticks.
		rebuilt = true
		r.rebuildWanted()
		wanted = r.wanted
		goto admit
	}
	return keep, len(pending), tooBig
}
