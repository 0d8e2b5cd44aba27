package gossip

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ReportInvalid records that n items received from peer (a Message's
// Origin) failed verification, with the reason. The node calls it; a peer
// that keeps sending invalid items is logged (Warn, rate-limited, see
// Tuning.WarnThreshold).
func (g *Gossip) ReportInvalid(peer string, n int, reason error) {
	if n <= 0 {
		return
	}
	g.st.invalid.Add(int64(n))
	g.peers.bad(g.logger, peer, n, false, reason)
}

// counters are the Stats, updated atomically.
type counters struct {
	eventsSent, entriesSent, blocksSent, hashesSent, bytesSent      atomic.Int64
	eventsReceived, entriesReceived, blocksReceived, hashesReceived atomic.Int64
	bytesReceived, decodeFailures, unknownVersion, foreign, invalid atomic.Int64
	blocksDropped, sendErrors, queueDrops                           atomic.Int64
}

// Stats are a node's gossip counters since New. "Sent" counts what this
// node announced (not Serf's retransmissions); "Received" counts envelopes
// of this filesystem from other nodes, each once.
type Stats struct {
	EventsSent  int64
	EntriesSent int64
	BlocksSent  int64
	HashesSent  int64
	BytesSent   int64 // envelope bytes

	EventsReceived  int64
	EntriesReceived int64
	BlocksReceived  int64
	HashesReceived  int64
	BytesReceived   int64

	DecodeFailures int64 // envelopes that failed to decode
	UnknownVersion int64 // envelopes of a version or type this node does not know
	Foreign        int64 // envelopes of another filesystem, ignored
	Invalid        int64 // items reported by ReportInvalid
	BlocksDropped  int64 // blocks Announce left out (no room)
	SendErrors     int64
	QueueDrops     int64 // messages dropped because OnMessage fell behind

	// Peers counts decode failures and invalid items by claimed origin
	// ("" when an envelope's header was unreadable). At most maxPeers
	// peers are tracked; the rest are counted under "(other)".
	Peers map[string]PeerStats
	// Serf is serf.Serf.Stats: queue depths, Lamport times, members.
	Serf map[string]string
}

// PeerStats counts one peer's bad items.
type PeerStats struct {
	DecodeFailures int64
	Invalid        int64
}

// Stats returns a snapshot of the counters.
func (g *Gossip) Stats() Stats {
	s := &g.st
	return Stats{
		EventsSent: s.eventsSent.Load(), EntriesSent: s.entriesSent.Load(),
		BlocksSent: s.blocksSent.Load(), HashesSent: s.hashesSent.Load(), BytesSent: s.bytesSent.Load(),
		EventsReceived: s.eventsReceived.Load(), EntriesReceived: s.entriesReceived.Load(),
		BlocksReceived: s.blocksReceived.Load(), HashesReceived: s.hashesReceived.Load(),
		BytesReceived:  s.bytesReceived.Load(),
		DecodeFailures: s.decodeFailures.Load(), UnknownVersion: s.unknownVersion.Load(),
		Foreign: s.foreign.Load(), Invalid: s.invalid.Load(), BlocksDropped: s.blocksDropped.Load(),
		SendErrors: s.sendErrors.Load(), QueueDrops: s.queueDrops.Load(),
		Peers: g.peers.snapshot(),
		Serf:  g.serf.Stats(),
	}
}

// maxPeers bounds the per-peer table: origin names are chosen by senders.
const maxPeers = 1024

// peerTable counts bad items per peer and rate-limits warnings.
type peerTable struct {
	mu        sync.Mutex
	threshold int
	interval  time.Duration
	m         map[string]*peerState
}

type peerState struct {
	PeerStats
	since    int // bad items since the last warning
	lastWarn time.Time
}

func (t *peerTable) init(tun Tuning) {
	t.threshold, t.interval = tun.WarnThreshold, tun.WarnInterval
	t.m = map[string]*peerState{}
}

func (t *peerTable) bad(logger *slog.Logger, peer string, n int, decode bool, reason error) {
	t.mu.Lock()
	p := t.m[peer]
	if p == nil {
		if len(t.m) >= maxPeers {
			peer = "(other)"
			p = t.m[peer]
		}
		if p == nil {
			p = &peerState{}
			t.m[peer] = p
		}
	}
	if decode {
		p.DecodeFailures += int64(n)
	} else {
		p.Invalid += int64(n)
	}
	p.since += n
	now := time.Now()
	warn := p.since >= t.threshold && now.Sub(p.lastWarn) >= t.interval
	var since int
	var st PeerStats
	if warn {
		since, st = p.since, p.PeerStats
		p.since, p.lastWarn = 0, now
	}
	t.mu.Unlock()
	if warn {
		why := ""
		if reason != nil {
			why = reason.Error()
		}
		logger.Warn("gossip: peer keeps sending invalid data",
			"peer", peer, "recent", since, "decode_failures", st.DecodeFailures,
			"invalid", st.Invalid, "last_error", why)
	}
}

func (t *peerTable) snapshot() map[string]PeerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]PeerStats, len(t.m))
	for k, v := range t.m {
		out[k] = v.PeerStats
	}
	return out
}
