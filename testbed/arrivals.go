package testbed

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
)

// Arrivals records when entries, blocks and bare Serf events first reached
// one node: a replica subscription notes every stored entry and block, a
// gossip raw handler every bare event. Recording costs a map insert on the
// storing goroutine, so a thousand nodes can be watched without polling.
//
// Concurrency: safe for concurrent use.
type Arrivals struct {
	mu     sync.Mutex
	at     map[log.Hash]time.Time
	raw    map[string]time.Time
	cancel func()
	n      *node.Node
}

func newArrivals() *Arrivals {
	return &Arrivals{at: map[log.Hash]time.Time{}, raw: map[string]time.Time{}}
}

// attach starts recording for a (re)started node. Entries it already holds
// count as arrived now, unless recorded earlier.
func (a *Arrivals) attach(n *node.Node) {
	r := n.Replica()
	cancel := r.Subscribe(func(u replica.Update) { a.note(u) })
	if g := n.Gossip(); g != nil {
		g.SetRawHandler(func(name string, _ []byte) {
			now := time.Now()
			a.mu.Lock()
			if _, ok := a.raw[name]; !ok {
				a.raw[name] = now
			}
			a.mu.Unlock()
		})
	}
	now := time.Now()
	var hs []log.Hash
	r.ScanEntries(0, func(e *log.Entry) bool { hs = append(hs, e.Hash()); return true })
	a.mu.Lock()
	for _, h := range hs {
		if _, ok := a.at[h]; !ok {
			a.at[h] = now
		}
	}
	a.cancel, a.n = cancel, n
	a.mu.Unlock()
}

// detach stops recording (the node is stopping).
func (a *Arrivals) detach() {
	a.mu.Lock()
	cancel, n := a.cancel, a.n
	a.cancel, a.n = nil, nil
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if n != nil && n.Gossip() != nil {
		n.Gossip().SetRawHandler(nil)
	}
}

func (a *Arrivals) note(u replica.Update) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range u.Entries {
		h := e.Hash()
		if _, ok := a.at[h]; !ok {
			a.at[h] = now
		}
	}
	for _, h := range u.Blocks {
		if _, ok := a.at[h]; !ok {
			a.at[h] = now
		}
	}
}

// Has reports whether the node holds everything in ws and, if so, when the
// last of it arrived.
func (a *Arrivals) Has(ws ...Written) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var last time.Time
	for _, w := range ws {
		t, ok := a.at[w.Entry]
		if !ok {
			return time.Time{}, false
		}
		if t.After(last) {
			last = t
		}
		for _, b := range w.Blocks {
			t, ok := a.at[b]
			if !ok {
				return time.Time{}, false
			}
			if t.After(last) {
				last = t
			}
		}
	}
	return last, true
}

// Raw returns when the bare Serf event called name first arrived.
func (a *Arrivals) Raw(name string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.raw[name]
	return t, ok
}

// KeyFromSeed derives an ed25519 key from a seed and a label, so a replayed
// run signs with the same keys.
func KeyFromSeed(seed int64, label string) ed25519.PrivateKey {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h := sha256.Sum256(append(b[:], label...))
	return ed25519.NewKeyFromSeed(h[:])
}
