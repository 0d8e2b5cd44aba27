package syncproto

import (
	"context"
	"math/rand"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/basefs/basefs/log"
)

// DialFunc opens a connection to a peer's sync address. Production passes a
// net.Dialer's DialContext for "tcp"; tests pass net.Pipe-based or
// simulated networks.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// TCPDial dials addr over TCP.
func TCPDial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Limits bound every session in time and bytes. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	// IOTimeout: a peer that neither sends nor accepts a byte for this long
	// is dropped (a stalled peer never holds a session forever).
	IOTimeout time.Duration
	// SessionTimeout bounds a whole sync or fetch session (not a get
	// stream, which is bounded by the store's size and IOTimeout).
	SessionTimeout time.Duration
	// MaxSessionBytes bounds the bytes of one sync or fetch session, both
	// directions. What does not fit is exchanged by the next session.
	MaxSessionBytes int64
	// MaxRounds bounds the rounds of one session.
	MaxRounds int
	// MaxSessions bounds the sessions a server runs at once; more are
	// refused with a "busy" error.
	MaxSessions int
	// MaxSessionsPerHost bounds the sessions from one source address, so
	// one host cannot take every slot.
	MaxSessionsPerHost int
	// MaxExpand is the most index nodes a client asks for in one round.
	MaxExpand int
}

// DefaultLimits are the limits used for zero fields.
var DefaultLimits = Limits{
	IOTimeout:          15 * time.Second,
	SessionTimeout:     2 * time.Minute,
	MaxSessionBytes:    256 << 20,
	MaxRounds:          512,
	MaxSessions:        64,
	MaxSessionsPerHost: 16,
	MaxExpand:          512,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.IOTimeout > 0 {
		d.IOTimeout = l.IOTimeout
	}
	if l.SessionTimeout > 0 {
		d.SessionTimeout = l.SessionTimeout
	}
	if l.MaxSessionBytes > 0 {
		d.MaxSessionBytes = l.MaxSessionBytes
	}
	if l.MaxRounds > 0 {
		d.MaxRounds = l.MaxRounds
	}
	if l.MaxSessions > 0 {
		d.MaxSessions = l.MaxSessions
	}
	if l.MaxSessionsPerHost > 0 {
		d.MaxSessionsPerHost = l.MaxSessionsPerHost
	}
	if l.MaxExpand > 0 {
		d.MaxExpand = l.MaxExpand
	}
	return d
}

// Per-round bounds on what a server accepts, so a round's answers stay
// bounded in memory.
const (
	maxRoundRefs   = 4096    // expand and want-tree nodes
	maxRoundHashes = 1 << 17 // wanted entries and blocks
	// maxRoundCollect bounds the entries one round's want-tree requests
	// send; the rest is left to the next round or session.
	maxRoundCollect = 1 << 16
	// maxExpect bounds the blocks a receiver waits for at once.
	maxExpect = 1 << 21
)

// ---- statistics ----

// PeerStatus is what this node knows of its sync sessions with one peer.
type PeerStatus struct {
	Peer            string           `json:"peer"`           // sync address, or node@host for peers that gave none
	Name            string           `json:"name,omitempty"` // the peer's node name, from its hello
	LastSync        time.Time        `json:"last_sync"`      // end of the last successful session (either direction)
	LastAttempt     time.Time        `json:"last_attempt"`   // start of the last session this node began
	LastError       string           `json:"last_error,omitempty"`
	Sessions        int64            `json:"sessions"`
	Failures        int64            `json:"failures"`
	BytesSent       int64            `json:"bytes_sent"`
	BytesReceived   int64            `json:"bytes_received"`
	EntriesSent     int64            `json:"entries_sent"`
	EntriesReceived int64            `json:"entries_received"` // new entries stored
	EntriesRejected int64            `json:"entries_rejected"`
	BlocksSent      int64            `json:"blocks_sent"`
	BlocksReceived  int64            `json:"blocks_received"`
	BlocksRejected  int64            `json:"blocks_rejected"`
	Rejections      map[string]int64 `json:"rejections,omitempty"` // reason → count
}

// BlockFetch is a missing block and who it is being fetched from.
type BlockFetch struct {
	Hash  string    `json:"hash"`
	From  string    `json:"from,omitempty"`   // peer asked in the session running now
	Since time.Time `json:"since,omitempty"`  // when it was asked
	NotAt []string  `json:"not_at,omitempty"` // peers that said they do not have it
}

// Status is the sync layer's report for `basefs status`.
type Status struct {
	Peers         []PeerStatus `json:"peers"`
	MissingBlocks int          `json:"missing_blocks"`
	Fetching      []BlockFetch `json:"fetching,omitempty"` // at most maxStatusFetches
}

const (
	maxStatusFetches = 100
	maxNotAt         = 8
)

// Stats collects per-peer statistics and block fetches. Safe for
// concurrent use.
type Stats struct {
	mu      sync.Mutex
	now     func() time.Time
	peers   map[string]*PeerStatus
	fetch   map[log.Hash]*BlockFetch
	missing int
}

// NewStats returns empty statistics; now may be nil (time.Now).
func NewStats(now func() time.Time) *Stats {
	if now == nil {
		now = time.Now
	}
	return &Stats{now: now, peers: map[string]*PeerStatus{}, fetch: map[log.Hash]*BlockFetch{}}
}

// maxPeerRecords bounds the peers Stats remembers (peers name themselves
// in their hellos, so a hostile one could invent many); past it, the
// record least recently used goes.
const maxPeerRecords = 1024

func (s *Stats) peer(key string) *PeerStatus {
	p := s.peers[key]
	if p == nil {
		if len(s.peers) >= maxPeerRecords {
			var oldest string
			var at time.Time
			for k, q := range s.peers {
				t := q.LastSync
				if q.LastAttempt.After(t) {
					t = q.LastAttempt
				}
				if oldest == "" || t.Before(at) {
					oldest, at = k, t
				}
			}
			delete(s.peers, oldest)
		}
		p = &PeerStatus{Peer: key}
		s.peers[key] = p
	}
	return p
}

// update runs fn on a peer's record.
func (s *Stats) update(key string, fn func(p *PeerStatus)) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.peer(key))
}

// reject counts a rejection by reason.
func (p *PeerStatus) reject(reason string, n int64) {
	if p.Rejections == nil {
		p.Rejections = map[string]int64{}
	}
	p.Rejections[reason] += n
}

// setMissing records the blocks the replica misses now; fetch records of
// blocks no longer missing are dropped.
func (s *Stats) setMissing(missing []log.Hash) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.missing = len(missing)
	keep := make(map[log.Hash]bool, len(missing))
	for _, h := range missing {
		keep[h] = true
		if s.fetch[h] == nil && len(s.fetch) < 4*maxStatusFetches {
			s.fetch[h] = &BlockFetch{Hash: h.String()}
		}
	}
	for h := range s.fetch {
		if !keep[h] {
			delete(s.fetch, h)
		}
	}
}

// fetching records that blocks are being asked of peer.
func (s *Stats) fetching(hs []log.Hash, peer string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, h := range hs {
		f := s.fetch[h]
		if f == nil {
			if len(s.fetch) >= 4*maxStatusFetches {
				continue
			}
			f = &BlockFetch{Hash: h.String()}
			s.fetch[h] = f
		}
		f.From, f.Since = peer, now
	}
}

// fetched records the outcome of a fetch from peer: got blocks arrived,
// notAt were not there.
func (s *Stats) fetched(got, notAt []log.Hash, peer string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range got {
		delete(s.fetch, h)
	}
	for _, h := range notAt {
		if f := s.fetch[h]; f != nil {
			f.From = ""
			if len(f.NotAt) < maxNotAt && !containsStr(f.NotAt, peer) {
				f.NotAt = append(f.NotAt, peer)
			}
		}
	}
}

// doneFetching clears the "from" of blocks still outstanding with peer.
func (s *Stats) doneFetching(peer string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.fetch {
		if f.From == peer {
			f.From = ""
		}
	}
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Status returns a copy of the statistics, peers sorted by address.
func (s *Stats) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{MissingBlocks: s.missing, Peers: []PeerStatus{}}
	for _, p := range s.peers {
		c := *p
		if p.Rejections != nil {
			c.Rejections = make(map[string]int64, len(p.Rejections))
			for k, v := range p.Rejections {
				c.Rejections[k] = v
			}
		}
		st.Peers = append(st.Peers, c)
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Peer < st.Peers[j].Peer })
	for _, f := range s.fetch {
		st.Fetching = append(st.Fetching, BlockFetch{Hash: f.Hash, From: f.From, Since: f.Since, NotAt: append([]string(nil), f.NotAt...)})
	}
	sort.Slice(st.Fetching, func(i, j int) bool { return st.Fetching[i].Hash < st.Fetching[j].Hash })
	if len(st.Fetching) > maxStatusFetches {
		st.Fetching = st.Fetching[:maxStatusFetches]
	}
	return st
}

// ---- peer selection ----

// PeerSelector chooses the peer of each anti-entropy round with
// probability proportional to the time since this node last synced with
// it: p_i = t_i / Σ t_j. Unlike the original BaseFS, t_i is really
// recorded: every session this node starts with a peer (successful or
// not, so a dead peer does not soak up every round) and every successful
// session a peer starts with this node (when the peer gave its address)
// resets it. A peer never synced counts from when it was first seen. Given
// the same seeded RNG, clock and calls, the choices are the same. Safe for
// concurrent use.
type PeerSelector struct {
	mu   sync.Mutex
	rng  *rand.Rand
	now  func() time.Time
	last map[string]time.Time
}

// NewPeerSelector returns a selector drawing from rng (nil: seeded from the
// clock) with clock now (nil: time.Now).
func NewPeerSelector(rng *rand.Rand, now func() time.Time) *PeerSelector {
	if now == nil {
		now = time.Now
	}
	if rng == nil {
		rng = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	return &PeerSelector{rng: rng, now: now, last: map[string]time.Time{}}
}

// Choose picks one of peers (in any order; duplicates ignored), or false
// if there are none. Peers not seen before start counting now; peers no
// longer listed are forgotten.
func (s *PeerSelector) Choose(peers []string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(peers) == 0 {
		return "", false
	}
	ps := append([]string(nil), peers...)
	sort.Strings(ps)
	uniq := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			uniq = append(uniq, p)
		}
	}
	now := s.now()
	listed := make(map[string]bool, len(uniq))
	weights := make([]float64, len(uniq))
	var total float64
	for i, p := range uniq {
		listed[p] = true
		t, ok := s.last[p]
		if !ok {
			s.last[p] = now
			t = now
		}
		w := now.Sub(t).Seconds()
		if w < 0 {
			w = 0
		}
		weights[i] = w
		total += w
	}
	for p := range s.last {
		if !listed[p] {
			delete(s.last, p)
		}
	}
	if total == 0 {
		return uniq[s.rng.Intn(len(uniq))], true
	}
	x := s.rng.Float64() * total
	for i, w := range weights {
		if x < w {
			return uniq[i], true
		}
		x -= w
	}
	return uniq[len(uniq)-1], true
}

// Synced records a sync (or an attempt) with peer at time at.
func (s *PeerSelector) Synced(peer string, at time.Time) {
	if s == nil || peer == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.last[peer]; !ok || at.After(t) {
		s.last[peer] = at
	}
}

// Weights returns each listed peer's current t_i in seconds (for status
// and tests), without recording anything.
func (s *PeerSelector) Weights(peers []string) map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make(map[string]float64, len(peers))
	for _, p := range peers {
		if t, ok := s.last[p]; ok {
			out[p] = max(0, now.Sub(t).Seconds())
		} else {
			out[p] = 0
		}
	}
	return out
}
