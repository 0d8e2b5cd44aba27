package syncproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	Replica *replica.Replica
	// Index is the replica's Merkle index (IndexReplica); shared with the
	// Server of the same node.
	Index *Index
	Node  string // this node's name, sent in hellos
	// Addr is this node's own sync address, if it serves one: the peer
	// then records the session as a sync with this node too.
	Addr     string
	Dial     DialFunc      // nil: TCPDial
	Logger   *slog.Logger  // nil: discard
	Limits   Limits        // zero fields: DefaultLimits
	Stats    *Stats        // nil: not recorded
	Selector *PeerSelector // nil: not recorded
}

// Client runs sessions with peers: anti-entropy syncs and fetches by hash.
// It is safe for concurrent use; each call is its own session.
type Client struct {
	cfg ClientConfig
	lim Limits
	log *slog.Logger

	// missingDirty says the replica may miss blocks it did not miss at the
	// last check: set by updates that bring entries with block content.
	// MissingBlocks walks the whole view, so an idle node skips it.
	missingDirty atomic.Bool
	cancelSub    func()
}

// NewClient returns a client. Close it to stop following the replica.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Dial == nil {
		cfg.Dial = TCPDial
	}
	c := &Client{cfg: cfg, lim: cfg.Limits.withDefaults(), log: orDiscard(cfg.Logger)}
	c.missingDirty.Store(true)
	c.cancelSub = cfg.Replica.Subscribe(func(u replica.Update) {
		for _, e := range u.Entries {
			if ct := e.Content; ct != nil && (ct.Blocks != nil || ct.Encoding.IsDelta()) {
				c.missingDirty.Store(true)
				return
			}
		}
	})
	return c
}

// Close stops following the replica's updates.
func (c *Client) Close() { c.cancelSub() }

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// SessionStats describes one session.
type SessionStats struct {
	Peer            string
	PeerName        string
	InSync          bool // the root digests were equal at the start
	Rounds          int
	BytesSent       int64 // everything written to the connection, framing included
	BytesReceived   int64
	EntriesSent     int64
	EntriesReceived int64 // new entries stored
	BlocksSent      int64
	BlocksReceived  int64 // new blocks stored
	Rejected        map[string]int64
	Duration        time.Duration
}

// missingBlocks returns the replica's missing blocks, skipping the walk
// when nothing can have changed since it last found none.
func (c *Client) missingBlocks() []log.Hash {
	if !c.missingDirty.Swap(false) {
		return nil
	}
	m := c.cfg.Replica.MissingBlocks()
	if len(m) > 0 {
		c.missingDirty.Store(true) // still work to do: look again next time
	}
	c.cfg.Stats.setMissing(m)
	return m
}

// Sync runs one anti-entropy session with the peer at addr: the root
// digests are compared; if they differ, the index is descended where it
// differs, each side sends the entries (and their blocks) the other lacks,
// and this side fetches the blocks it misses. Two nodes in sync exchange
// one hello, one welcome and a bye.
func (c *Client) Sync(ctx context.Context, addr string) (SessionStats, error) {
	return c.session(ctx, addr, purposeSync, nil, nil)
}

// FetchEntries fetches the entries with the given hashes from the peer at
// addr (for example those a gossip announcement named) and ingests them,
// with the blocks of their contents.
func (c *Client) FetchEntries(ctx context.Context, addr string, hashes []log.Hash) (SessionStats, error) {
	return c.session(ctx, addr, purposeFetch, hashes, nil)
}

// FetchBlocks fetches the blocks with the given hashes from the peer at
// addr and stores those it has.
func (c *Client) FetchBlocks(ctx context.Context, addr string, hashes []log.Hash) (SessionStats, error) {
	return c.session(ctx, addr, purposeFetch, nil, hashes)
}

func (c *Client) session(ctx context.Context, addr string, purpose uint8, wantE, wantB []log.Hash) (st SessionStats, err error) {
	start := time.Now()
	st.Peer = addr
	c.cfg.Selector.Synced(addr, start)
	c.cfg.Stats.update(addr, func(p *PeerStatus) { p.LastAttempt = start })
	ctx, cancel := context.WithTimeout(ctx, c.lim.SessionTimeout)
	defer cancel()
	conn, err := c.cfg.Dial(ctx, addr)
	if err != nil {
		err = fmt.Errorf("dial %s: %w", addr, err)
		c.record(addr, &st, err)
		return st, err
	}
	s := &clientSession{c: c, peer: addr, w: newWire(conn, c.lim), st: &st}
	s.w.deadline = start.Add(c.lim.SessionTimeout)
	s.w.maxBytes = c.lim.MaxSessionBytes
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	err = s.run(purpose, wantE, wantB)
	if err != nil && s.rc != nil {
		// Keep what arrived before the failure: Ingest verifies it all,
		// and the next session need not fetch it again.
		s.rc.flush()
		s.st.EntriesReceived, s.st.BlocksReceived, s.st.Rejected = s.rc.newEntries, s.rc.newBlocks, s.rc.rejected
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrForged) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if err != nil {
		var pe *PeerError
		if !errors.As(err, &pe) && (errors.Is(err, ErrProtocol) || errors.Is(err, ErrForged) || errors.Is(err, ErrDifferentFS)) {
			// Tell the peer why, when it broke the protocol or sent
			// forgeries; best effort.
			s.w.maxBytes = 0
			s.w.sendError(err)
		}
	}
	conn.Close()
	st.BytesSent, st.BytesReceived = s.w.bytesOut(), s.w.bytesIn()
	st.Duration = time.Since(start)
	c.cfg.Stats.doneFetching(addr)
	c.record(addr, &st, err)
	if err != nil {
		lvl := slog.LevelInfo
		if errors.Is(err, ErrProtocol) || errors.Is(err, ErrForged) {
			lvl = slog.LevelWarn
		}
		c.log.Log(context.Background(), lvl, "sync: session failed", "peer", addr, "err", err)
	}
	return st, err
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

// record adds a session's outcome to the statistics.
func (c *Client) record(addr string, st *SessionStats, err error) {
	c.cfg.Stats.update(addr, func(p *PeerStatus) {
		if st.PeerName != "" {
			p.Name = st.PeerName
		}
		p.Sessions++
		p.BytesSent += st.BytesSent
		p.BytesReceived += st.BytesReceived
		p.EntriesSent += st.EntriesSent
		p.EntriesReceived += st.EntriesReceived
		p.BlocksSent += st.BlocksSent
		p.BlocksReceived += st.BlocksReceived
		for r, n := range st.Rejected {
			p.reject(r, n)
			if isBlockReason(r) {
				p.BlocksRejected += n
			} else {
				p.EntriesRejected += n
			}
		}
		if err != nil {
			p.Failures++
			p.LastError = err.Error()
		} else {
			p.LastSync = time.Now()
			p.LastError = ""
		}
	})
}

// clientSession is the client's side of one session.
type clientSession struct {
	c    *Client
	peer string
	w    *wire
	st   *SessionStats
	rc   *receiver
	snd  *sender

	frontier  []nodeRef  // index nodes to expand
	wantE     []log.Hash // entries to fetch
	wantT     []nodeRef  // nodes to fetch everything under
	pushE     []log.Hash // entries to send
	pushT     []nodeRef  // nodes to send everything under
	wantB     []log.Hash // blocks to fetch
	askedB    map[log.Hash]bool
	inflight  []log.Hash // blocks asked for this round
	gotBlocks bool       // blocks asked for arrived in the last round
}

func (s *clientSession) run(purpose uint8, wantE, wantB []log.Hash) error {
	c := s.c
	r := c.cfg.Replica
	s.rc = newReceiver(r)
	s.snd = newSender(s.w, r)
	s.askedB = map[log.Hash]bool{}
	digest := c.cfg.Index.Digest()
	h := hello{Purpose: purpose, FSName: r.Name(), FSID: r.ID(), Node: c.cfg.Node, Addr: c.cfg.Addr, Digest: digest}
	s.w.writePreamble()
	if err := s.w.writeFrame(tHello, h.encode()); err != nil {
		return err
	}
	if err := s.w.flush(); err != nil {
		return err
	}
	wel, err := readWelcome(s.w)
	if err != nil {
		return err
	}
	s.st.PeerName = sanitize(wel.Node)
	if wel.FSID != r.ID() {
		return fmt.Errorf("%w (peer's id %s, ours %s)", ErrDifferentFS, wel.FSID.Short(), r.ID().Short())
	}
	switch purpose {
	case purposeSync:
		s.st.InSync = wel.Digest == digest
		if !s.st.InSync {
			s.frontier = append(s.frontier, nodeRef{Path: "/"})
		}
		s.wantB = c.missingBlocks()
	case purposeFetch:
		s.wantE = append(s.wantE, wantE...)
		s.wantB = append(s.wantB, wantB...)
	}
	for round := 0; ; round++ {
		if len(s.frontier)+len(s.wantE)+len(s.wantT)+len(s.pushE)+len(s.pushT)+len(s.wantB) == 0 {
			break
		}
		if round >= c.lim.MaxRounds {
			return fmt.Errorf("%w: %d rounds", ErrLimit, round)
		}
		s.st.Rounds++
		if err := s.round(); err != nil {
			return err
		}
		if purpose == purposeSync && (s.rc.contentEntries || s.gotBlocks) {
			// New contents, or tree blocks that name blocks not known
			// before: look again.
			s.rc.contentEntries, s.gotBlocks = false, false
			c.missingDirty.Store(true)
			for _, h := range c.missingBlocks() {
				if !s.askedB[h] {
					s.wantB = append(s.wantB, h)
				}
			}
		}
	}
	if err := s.w.writeFrame(tBye, nil); err != nil {
		return err
	}
	return s.w.flush()
}

// readWelcome reads the server's preamble and welcome (or error).
func readWelcome(w *wire) (*welcome, error) {
	v, err := w.readPreamble()
	if err != nil {
		return nil, err
	}
	t, p, err := w.readFrame()
	if err != nil {
		return nil, err
	}
	if t == tError {
		pe, err := decodeError(p)
		if err != nil {
			return nil, err
		}
		return nil, pe
	}
	if v != Version {
		return nil, fmt.Errorf("%w: peer speaks version %d, this build %d", ErrVersion, v, Version)
	}
	if t != tWelcome {
		return nil, protoErr("expected welcome, got %s", t)
	}
	return decodeWelcome(p)
}

// round sends one round of requests and pushes, and handles the answers.
func (s *clientSession) round() error {
	c := s.c
	w := s.w
	// Requests.
	n := min(len(s.frontier), c.lim.MaxExpand)
	asked := s.frontier[:n:n]
	s.frontier = s.frontier[n:]
	if err := writeRefs(w, tExpand, asked); err != nil {
		return err
	}
	n = min(len(s.wantE), maxRoundHashes)
	if err := writeHashes(w, tWantEntries, s.wantE[:n]); err != nil {
		return err
	}
	s.wantE = s.wantE[n:]
	n = min(len(s.wantT), maxRoundRefs)
	if err := writeRefs(w, tWantTree, s.wantT[:n]); err != nil {
		return err
	}
	s.wantT = s.wantT[n:]
	// Pushes: entries the peer lacks, with their blocks.
	push := s.pushE
	s.pushE = nil
	if len(s.pushT) > 0 {
		n = min(len(s.pushT), maxRoundRefs)
		push = append(push, c.cfg.Index.lockedCollect(s.pushT[:n], maxRoundCollect)...)
		s.pushT = s.pushT[n:]
	}
	if len(push) > maxRoundCollect {
		s.pushE = push[maxRoundCollect:]
		push = push[:maxRoundCollect]
	}
	e0, b0 := s.snd.entries, s.snd.blocks
	if err := s.snd.sendEntries(push); err != nil {
		return err
	}
	s.snd.notFound = nil // an entry pushed is always held; ignore races
	n = min(len(s.wantB), maxRoundHashes)
	s.inflight = s.wantB[:n:n]
	s.wantB = s.wantB[n:]
	for _, h := range s.inflight {
		s.askedB[h] = true
		s.rc.requested[h] = true
	}
	c.cfg.Stats.fetching(s.inflight, s.peer)
	if err := writeHashes(w, tWantBlocks, s.inflight); err != nil {
		return err
	}
	if err := w.writeFrame(tEndRound, nil); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	s.st.EntriesSent += s.snd.entries - e0
	s.st.BlocksSent += s.snd.blocks - b0

	// Answers.
	var reps []rep
	var notFound []log.Hash
	for done := false; !done; {
		t, p, err := w.readFrame()
		if err != nil {
			return err
		}
		switch t {
		case tNodes:
			rs, err := decodeReps(p, len(asked)-len(reps))
			if err != nil {
				return err
			}
			reps = append(reps, rs...)
		case tEntries:
			if err := s.rc.entriesFrame(p); err != nil {
				return err
			}
		case tBlocks:
			if err := s.rc.blocksFrame(p); err != nil {
				return err
			}
		case tNotFound:
			hs, err := decodeHashes(p)
			if err != nil {
				return err
			}
			notFound = append(notFound, hs...)
		case tEndRound:
			done = true
		case tError:
			pe, err := decodeError(p)
			if err != nil {
				return err
			}
			return pe
		default:
			return protoErr("unexpected %s frame in a round", t)
		}
	}
	ferr := s.rc.flush()
	s.st.EntriesReceived, s.st.BlocksReceived = s.rc.newEntries, s.rc.newBlocks
	s.st.Rejected = s.rc.rejected
	var got []log.Hash
	got, s.rc.gotBlocks = s.rc.gotBlocks, nil
	s.gotBlocks = len(got) > 0
	c.cfg.Stats.fetched(got, notFound, s.peer)
	for _, h := range s.inflight {
		delete(s.rc.requested, h)
	}
	if ferr != nil {
		return ferr
	}
	if len(reps) != len(asked) {
		return protoErr("%d nodes asked for, %d answered", len(asked), len(reps))
	}
	return s.compare(asked, reps)
}

// compare turns the peer's view of the asked nodes into the next round's
// work: nodes to descend into, entries and subtrees to fetch and to push.
func (s *clientSession) compare(asked []nodeRef, reps []rep) error {
	ix := s.c.cfg.Index
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drain()
	for i, ref := range asked {
		theirs := &reps[i]
		switch theirs.Kind {
		case repEmpty:
			if !ix.at(ref).empty {
				s.pushT = append(s.pushT, ref)
			}
		case repSplit:
			if ref.Prefix.n >= keyNibbles {
				return protoErr("split node below the key length")
			}
			mine := ix.rep(ref)
			var subs [16]log.Hash
			switch mine.Kind {
			case repSplit:
				subs = mine.Sub
			case repList:
				subs = ix.subDigests(ref)
			}
			for x := 0; x < 16; x++ {
				t, m := theirs.Sub[x], subs[x]
				if t == m {
					continue
				}
				child := nodeRef{Path: ref.Path, Prefix: ref.Prefix.child(x)}
				switch {
				case t.IsZero():
					s.pushT = append(s.pushT, child)
				case m.IsZero():
					s.wantT = append(s.wantT, child)
				default:
					s.frontier = append(s.frontier, child)
				}
			}
		case repList:
			myE, myK := ix.items(ref)
			have := make(map[log.Hash]bool, len(myE))
			for _, h := range myE {
				have[h] = true
			}
			for _, h := range theirs.Entries {
				if have[h] {
					delete(have, h)
				} else {
					s.wantE = append(s.wantE, h)
				}
			}
			for _, h := range myE {
				if have[h] {
					s.pushE = append(s.pushE, h)
				}
			}
			mk := make(map[string]log.Hash, len(myK))
			for _, k := range myK {
				mk[k.Name] = k.Digest
			}
			for _, k := range theirs.Kids {
				p := log.Join(ref.Path, k.Name)
				if len(p) > log.MaxPathLen {
					return protoErr("child path too long")
				}
				d, ok := mk[k.Name]
				switch {
				case !ok:
					s.wantT = append(s.wantT, nodeRef{Path: p})
				case d != k.Digest:
					s.frontier = append(s.frontier, nodeRef{Path: p})
				}
				delete(mk, k.Name)
			}
			var only []string
			for name := range mk {
				only = append(only, name)
			}
			sort.Strings(only)
			for _, name := range only {
				s.pushT = append(s.pushT, nodeRef{Path: log.Join(ref.Path, name)})
			}
		}
	}
	if len(s.frontier) > 1<<16 || len(s.wantE) > 1<<20 {
		return fmt.Errorf("%w: difference too large for one session", ErrLimit)
	}
	return nil
}
