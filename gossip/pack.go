package gossip

import (
	"fmt"

	"github.com/basefs/basefs/log"
)

// packed is one event being filled by packEvents.
type packed struct {
	ev   Event
	size int
}

// packEvents packs entries, hashes and blocks into as few envelopes of at
// most max bytes as it can, first fit in the order given:
//
//   - each entry goes into the first event with room, else a new event; an
//     entry too big for any event is announced by its hash instead;
//   - then each hash, the same way;
//   - then the blocks, in order: into the first event with room, else into a
//     new event while fewer than maxBlockEvents events were opened for
//     blocks. The first block that finds no room ends the packing: it and
//     all blocks after it are left out (the receivers pull them by sync).
//
// tmpl supplies the FS prefix and origin. It returns the events and how many
// blocks were left out.
func packEvents(tmpl Event, max, maxBlockEvents int, entries [][]byte, hashes []log.Hash, blocks [][]byte) ([]*Event, int, error) {
	hdr := headerSize(tmpl.Origin)
	if hdr+itemSize(len(log.Hash{})) > max {
		return nil, 0, fmt.Errorf("gossip: event size %d too small for a header of %d bytes", max, hdr)
	}
	var evs []*packed
	place := func(cost int, add func(*Event)) bool {
		for _, p := range evs {
			if p.size+cost <= max {
				add(&p.ev)
				p.size += cost
				return true
			}
		}
		return false
	}
	open := func(cost int, add func(*Event)) {
		p := &packed{ev: Event{FS: tmpl.FS, Origin: tmpl.Origin}, size: hdr}
		evs = append(evs, p)
		add(&p.ev)
		p.size += cost
	}
	addHash := func(h log.Hash) {
		cost := itemSize(len(h))
		add := func(e *Event) { e.Hashes = append(e.Hashes, h) }
		if !place(cost, add) {
			open(cost, add)
		}
	}
	var oversized []log.Hash
	for _, b := range entries {
		if len(b) == 0 {
			return nil, 0, fmt.Errorf("gossip: empty entry")
		}
		cost := itemSize(len(b))
		if len(b) > log.MaxEntrySize || hdr+cost > max {
			oversized = append(oversized, log.Sum(b))
			continue
		}
		add := func(e *Event) { e.Entries = append(e.Entries, b) }
		if !place(cost, add) {
			open(cost, add)
		}
	}
	for _, h := range oversized {
		addHash(h)
	}
	for _, h := range hashes {
		addHash(h)
	}
	blockEvents, dropped := 0, 0
	for _, b := range blocks {
		if len(b) == 0 || len(b) > log.BlockSize {
			return nil, 0, fmt.Errorf("gossip: block of %d bytes (want 1..%d)", len(b), log.BlockSize)
		}
		if dropped > 0 {
			dropped++
			continue
		}
		cost := itemSize(len(b))
		add := func(e *Event) { e.Blocks = append(e.Blocks, b) }
		switch {
		case place(cost, add):
		case blockEvents < maxBlockEvents && hdr+cost <= max:
			open(cost, add)
			blockEvents++
		default:
			dropped = 1 // this one and, below, every later one
		}
	}
	out := make([]*Event, len(evs))
	for i, p := range evs {
		out[i] = &p.ev
	}
	return out, dropped, nil
}
