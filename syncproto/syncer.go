// Package syncproto is basefs's anti-entropy sync and bootstrap ("get")
// protocol over TCP (or any net.Conn).
//
// Every Interval a node syncs with one peer, chosen with probability
// proportional to the time since it last synced with it (PeerSelector). A
// session compares the root digests of the two nodes' Merkle indexes of
// their logs (Index, keyed by path); two nodes in sync stop there, after a
// hello, a welcome and a bye — about 200 bytes whatever the size of the
// log. Otherwise the client descends where the digests differ, a round
// trip per level, asking for at most 16 digests or 16 items per node, and
// both sides send what the other lacks: entries with the blocks of their
// contents, pull and push in one session. Then the client fetches the
// blocks its replica still misses. For k differing entries among n, the
// bytes exchanged grow as O(k log n).
//
// Everything received is verified: entries by replica.Ingest (signatures,
// before anything is stored), blocks by hash and by being wanted (asked
// for, or referred to by an entry of the session). Messages are versioned
// and length-limited (wire.go); every read and write has a deadline and
// every session a time and byte budget (Limits). A peer that sends garbage
// or forgeries is disconnected with a log line; it never crashes or stalls
// the node.
//
// Get streams a whole store for `basefs get` (get.go).
//
// The pieces: an Index per replica (IndexReplica), shared by a Server
// (answers sessions) and a Client (starts them); a Syncer runs the periodic
// rounds; Stats and a PeerSelector record what happened, per peer. Service
// bundles them for a running node.
package syncproto

import (
	"context"
	"log/slog"
	"math/rand"
	"net"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// DefaultInterval is the default time between two anti-entropy sessions.
const DefaultInterval = 5 * time.Second

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	Client   *Client
	Selector *PeerSelector
	// Peers returns the sync addresses of the current peers (from gossip
	// membership and the cluster file), this node's own excluded.
	Peers    func() []string
	Interval time.Duration // zero: DefaultInterval
	// Jitter randomizes each wait by up to ±Jitter×Interval (default 0.1,
	// negative for none), so nodes started together do not sync in step.
	Jitter float64
	Rand   *rand.Rand // for the jitter; nil: seeded from the clock
	Logger *slog.Logger
}

// Syncer runs anti-entropy: every interval, one session with one peer.
type Syncer struct {
	cfg SyncerConfig
	log *slog.Logger
}

// NewSyncer returns a syncer.
func NewSyncer(cfg SyncerConfig) *Syncer {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.1
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	return &Syncer{cfg: cfg, log: orDiscard(cfg.Logger)}
}

// Step chooses a peer and syncs with it once. ok is false when there is no
// peer.
func (s *Syncer) Step(ctx context.Context) (peer string, st SessionStats, ok bool, err error) {
	peers := s.cfg.Peers()
	peer, ok = s.cfg.Selector.Choose(peers)
	if !ok {
		return "", st, false, nil
	}
	st, err = s.cfg.Client.Sync(ctx, peer)
	return peer, st, true, err
}

// Run syncs every interval until ctx is done; it returns ctx's error.
func (s *Syncer) Run(ctx context.Context) error {
	for {
		wait := s.cfg.Interval
		if s.cfg.Jitter > 0 {
			wait += time.Duration((s.cfg.Rand.Float64()*2 - 1) * s.cfg.Jitter * float64(s.cfg.Interval))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if peer, st, ok, err := s.Step(ctx); ok && err == nil && !st.InSync {
			s.log.Debug("sync: exchanged", "peer", peer, "received", st.EntriesReceived, "sent", st.EntriesSent,
				"blocks", st.BlocksReceived, "bytes", st.BytesSent+st.BytesReceived, "rounds", st.Rounds)
		}
	}
}

// Config configures a Service: the sync layer of one running node.
type Config struct {
	Replica *replica.Replica
	Node    string // this node's name
	Addr    string // this node's sync address, as peers dial it
	// Peers returns the peers' sync addresses (not this node's).
	Peers    func() []string
	Dial     DialFunc // nil: TCPDial
	Interval time.Duration
	Limits   Limits
	Logger   *slog.Logger
	Rand     *rand.Rand       // peer choice and jitter; nil: seeded from the clock
	Now      func() time.Time // nil: time.Now
}

// Service bundles the index, server, client, peer selector, statistics and
// syncer of one node.
type Service struct {
	Index    *Index
	Server   *Server
	Client   *Client
	Syncer   *Syncer
	Selector *PeerSelector
	Stats    *Stats

	cancelIndex func()
}

// NewService builds a node's sync layer (the index is built from the
// replica here: a scan of every entry).
func NewService(cfg Config) *Service {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	if cfg.Peers == nil {
		cfg.Peers = func() []string { return nil }
	}
	ix, cancel := IndexReplica(cfg.Replica)
	stats := NewStats(cfg.Now)
	sel := NewPeerSelector(cfg.Rand, cfg.Now)
	srv := NewServer(ServerConfig{Replica: cfg.Replica, Index: ix, Node: cfg.Node, Logger: cfg.Logger, Limits: cfg.Limits, Stats: stats, Selector: sel})
	cl := NewClient(ClientConfig{Replica: cfg.Replica, Index: ix, Node: cfg.Node, Addr: cfg.Addr, Dial: cfg.Dial, Logger: cfg.Logger, Limits: cfg.Limits, Stats: stats, Selector: sel})
	sy := NewSyncer(SyncerConfig{Client: cl, Selector: sel, Peers: cfg.Peers, Interval: cfg.Interval, Rand: cfg.Rand, Logger: cfg.Logger})
	return &Service{Index: ix, Server: srv, Client: cl, Syncer: sy, Selector: sel, Stats: stats, cancelIndex: cancel}
}

// Serve serves sync sessions on l (see Server.Serve).
func (s *Service) Serve(l net.Listener) error { return s.Server.Serve(l) }

// Run runs anti-entropy until ctx is done.
func (s *Service) Run(ctx context.Context) error { return s.Syncer.Run(ctx) }

// FetchEntries fetches entries by hash from peer (see Client.FetchEntries).
func (s *Service) FetchEntries(ctx context.Context, peer string, hashes []log.Hash) (SessionStats, error) {
	return s.Client.FetchEntries(ctx, peer, hashes)
}

// FetchBlocks fetches blocks by hash from peer (see Client.FetchBlocks).
func (s *Service) FetchBlocks(ctx context.Context, peer string, hashes []log.Hash) (SessionStats, error) {
	return s.Client.FetchBlocks(ctx, peer, hashes)
}

// Status reports per-peer statistics and the blocks being fetched.
func (s *Service) Status() Status { return s.Stats.Status() }

// Close stops the server and stops following the replica. The replica
// stays open.
func (s *Service) Close() error {
	err := s.Server.Close()
	s.Client.Close()
	s.cancelIndex()
	return err
}
