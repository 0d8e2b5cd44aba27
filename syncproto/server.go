package syncproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	Replica  *replica.Replica
	Index    *Index        // the replica's index (IndexReplica)
	Node     string        // this node's name, sent in welcomes
	Logger   *slog.Logger  // nil: discard
	Limits   Limits        // zero fields: DefaultLimits
	Stats    *Stats        // nil: not recorded
	Selector *PeerSelector // nil: not recorded
}

// Server answers sync, fetch and get sessions for one replica. Each
// connection is served on its own goroutine, within the limits; a peer that
// breaks the protocol, sends forged data or stalls is logged and
// disconnected, and never affects the other sessions. Safe for concurrent
// use.
type Server struct {
	cfg ServerConfig
	lim Limits
	log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]bool
	conns     map[net.Conn]bool
	closed    bool
	wg        sync.WaitGroup
	sem       chan struct{}
	perHost   map[string]int // live sessions by source host

	refused     atomic.Int64 // sessions refused as busy
	lastRefusal time.Time    // when a refusal was last logged (under mu)
}

// NewServer returns a server for cfg.Replica.
func NewServer(cfg ServerConfig) *Server {
	lim := cfg.Limits.withDefaults()
	return &Server{
		cfg: cfg, lim: lim, log: orDiscard(cfg.Logger),
		listeners: map[net.Listener]bool{}, conns: map[net.Conn]bool{},
		sem: make(chan struct{}, lim.MaxSessions), perHost: map[string]int{},
	}
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("sync server closed")

// Serve accepts connections on l until l fails or the server is closed,
// serving each on its own goroutine.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(conn, true) {
			conn.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			s.serve(conn)
		}()
	}
}

// track adds c to the live sessions (add) or removes it. Adding fails once
// the server is closed; a successful add also counts the session in s.wg,
// under s.mu, so that it never races with Close's Wait. The caller of a
// successful add calls s.wg.Done when the session ends.
func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = true
		s.wg.Add(1)
	} else {
		delete(s.conns, c)
	}
	return true
}

// Close stops the listeners, drops every session and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// ServeConn serves one connection and closes it; it returns when the
// session is over.
func (s *Server) ServeConn(conn net.Conn) {
	if !s.track(conn, true) {
		conn.Close()
		return
	}
	defer s.wg.Done()
	s.serve(conn)
}

func (s *Server) serve(conn net.Conn) {
	defer s.track(conn, false)
	defer conn.Close()
	remote := "?"
	if a := conn.RemoteAddr(); a != nil {
		remote = a.String()
	}
	ss := &serverSession{s: s, remote: remote, peer: remote, w: newWire(conn, s.lim)}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("sync: internal error serving a peer; connection dropped", "peer", ss.peer, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	if !s.takeHostSlot(host) {
		s.refuse(ss, remote, "too many sync sessions from "+host)
		return
	}
	defer s.releaseHostSlot(host)
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.refuse(ss, remote, "too many sync sessions")
		return
	}
	start := time.Now()
	err := ss.run()
	if err != nil && ss.rc != nil {
		// Keep what arrived before the failure (Ingest verifies it).
		ss.rc.flush()
	}
	ss.finish(start, err)
}

// takeHostSlot counts a session from host, unless host has its limit.
func (s *Server) takeHostSlot(host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perHost[host] >= s.lim.MaxSessionsPerHost {
		return false
	}
	s.perHost[host]++
	return true
}

func (s *Server) releaseHostSlot(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perHost[host]--; s.perHost[host] <= 0 {
		delete(s.perHost, host)
	}
}

// refuse answers a session with a busy error. Refusals are counted
// (Refused) and logged at most once a minute, so a peer that keeps
// reconnecting cannot fill the log.
func (s *Server) refuse(ss *serverSession, remote, why string) {
	ss.w.writePreamble()
	ss.w.sendError(fmt.Errorf("%w: %s", ErrBusy, why))
	n := s.refused.Add(1)
	s.mu.Lock()
	logIt := time.Since(s.lastRefusal) >= time.Minute
	if logIt {
		s.lastRefusal = time.Now()
	}
	s.mu.Unlock()
	if logIt {
		s.log.Warn("sync: refusing sessions ("+why+")", "peer", remote, "refused_so_far", n)
	} else {
		s.log.Debug("sync: refused a peer", "peer", remote, "why", why)
	}
}

// Refused is how many sessions the server refused as busy.
func (s *Server) Refused() int64 { return s.refused.Load() }

// serverSession is the server's side of one connection.
type serverSession struct {
	s      *Server
	remote string
	peer   string // stats key: the peer's sync address, or node@remote
	name   string
	w      *wire
	hello  *hello
	rc     *receiver
	snd    *sender
	bye    bool
	// preamble says this side's preamble was written (an error frame
	// needs one before it).
	preamble bool
}

func (ss *serverSession) run() error {
	s := ss.s
	w := ss.w
	w.deadline = time.Now().Add(s.lim.SessionTimeout)
	v, err := w.readPreamble()
	if err != nil {
		return err
	}
	t, p, err := w.readFrame()
	if err != nil {
		return err
	}
	if t != tHello {
		return protoErr("expected hello, got %s", t)
	}
	if v != Version {
		return fmt.Errorf("%w: peer speaks version %d, this node %d", ErrVersion, v, Version)
	}
	h, err := decodeHello(p)
	if err != nil {
		return err
	}
	ss.hello = h
	ss.name = sanitize(h.Node)
	host := ss.remote
	if hst, _, err := net.SplitHostPort(ss.remote); err == nil {
		host = hst // not the ephemeral port: one record per node and host
	}
	ss.peer = sanitize(h.Node) + "@" + host
	if h.Addr != "" {
		ss.peer = sanitize(h.Addr)
	}
	r := s.cfg.Replica
	id := r.ID()
	if h.FSName != r.Name() {
		return fmt.Errorf("%w: serves %q, not %q", ErrDifferentFS, r.Name(), sanitize(h.FSName))
	}
	if !h.FSID.IsZero() && h.FSID != id {
		return fmt.Errorf("%w: serves %s with id %s, not %s", ErrDifferentFS, r.Name(), id.Short(), h.FSID.Short())
	}
	if h.Purpose != purposeGet && h.FSID.IsZero() {
		return protoErr("sync without a filesystem id")
	}
	wel := welcome{FSID: id, Node: s.cfg.Node}
	if h.Purpose == purposeSync {
		wel.Digest = s.cfg.Index.Digest()
	}
	if h.Purpose == purposeGet {
		st := r.Status()
		wel.Entries, wel.StoreBytes = uint64(st.Entries), uint64(st.StoreBytes)
		wel.Root = r.Root().Encoded()
	}
	w.writePreamble()
	ss.preamble = true
	if err := w.writeFrame(tWelcome, wel.encode()); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.maxBytes = s.lim.MaxSessionBytes
	ss.rc = newReceiver(r)
	ss.snd = newSender(w, r)
	for round := 0; ; round++ {
		if round > s.lim.MaxRounds {
			return fmt.Errorf("%w: %d rounds", ErrLimit, round)
		}
		done, err := ss.round(round)
		if err != nil || done {
			return err
		}
	}
}

// round reads one round of the client's requests and answers it. done
// reports a clean end (bye).
func (ss *serverSession) round(n int) (done bool, err error) {
	w := ss.w
	var expand, trees []nodeRef
	var wantE, wantB []log.Hash
	for {
		t, p, err := w.readFrame()
		if err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return false, fmt.Errorf("peer closed the connection mid-session")
			}
			return false, err
		}
		switch t {
		case tBye:
			if len(p) != 0 || len(expand)+len(trees)+len(wantE)+len(wantB) != 0 {
				return false, protoErr("bad bye")
			}
			ss.bye = true
			return true, ss.rc.flush()
		case tExpand, tWantTree:
			refs, err := decodeNodeRefs(p, maxRoundRefs)
			if err != nil {
				return false, err
			}
			if t == tExpand {
				expand = append(expand, refs...)
			} else {
				trees = append(trees, refs...)
			}
			if len(expand) > maxRoundRefs || len(trees) > maxRoundRefs {
				return false, fmt.Errorf("%w: too many nodes asked for in one round", ErrLimit)
			}
		case tWantEntries, tWantBlocks:
			hs, err := decodeHashes(p)
			if err != nil {
				return false, err
			}
			if t == tWantEntries {
				wantE = append(wantE, hs...)
			} else {
				wantB = append(wantB, hs...)
			}
			if len(wantE) > maxRoundHashes || len(wantB) > maxRoundHashes {
				return false, fmt.Errorf("%w: too many hashes asked for in one round", ErrLimit)
			}
		case tEntries:
			if err := ss.rc.entriesFrame(p); err != nil {
				return false, err
			}
		case tBlocks:
			if err := ss.rc.blocksFrame(p); err != nil {
				return false, err
			}
		case tGetStream:
			if n != 0 || ss.hello.Purpose != purposeGet {
				return false, protoErr("get-stream out of place")
			}
			from, err := decodeCount(p)
			if err != nil {
				return false, err
			}
			return false, ss.stream(int(min(from, 1<<40)))
		case tEndRound:
			if len(p) != 0 {
				return false, protoErr("bad end-round")
			}
			if err := ss.rc.flush(); err != nil {
				return false, err
			}
			return false, ss.answer(expand, trees, wantE, wantB)
		case tError:
			pe, err := decodeError(p)
			if err != nil {
				return false, err
			}
			return false, pe
		default:
			return false, protoErr("unexpected %s frame", t)
		}
	}
}

// answer sends the answers to one round's requests, then end-round.
func (ss *serverSession) answer(expand, trees []nodeRef, wantE, wantB []log.Hash) error {
	ix := ss.s.cfg.Index
	w := ss.w
	if len(expand) > 0 {
		if err := writeReps(w, ix.lockedRep(expand)); err != nil {
			return err
		}
	}
	send := wantE
	if len(trees) > 0 {
		send = append(send, ix.lockedCollect(trees, maxRoundCollect)...)
	}
	if err := ss.snd.sendEntries(send); err != nil {
		return err
	}
	if err := ss.snd.sendBlocks(wantB); err != nil {
		return err
	}
	if err := ss.snd.sendNotFound(); err != nil {
		return err
	}
	if err := w.writeFrame(tEndRound, nil); err != nil {
		return err
	}
	return w.flush()
}

// finish logs and records the session.
func (ss *serverSession) finish(start time.Time, err error) {
	s := ss.s
	if err != nil && !isNetErr(err) {
		var pe *PeerError
		if !errors.As(err, &pe) {
			// Tell the peer why, best effort; a hello that never came has no
			// preamble of ours before it.
			if !ss.preamble {
				ss.w.writePreamble()
			}
			ss.w.maxBytes = 0
			ss.w.sendError(err)
		}
	}
	if ss.hello == nil {
		// Not a basefs peer, or one that never said hello: nothing to
		// record but the log line.
		if err != nil && !errors.Is(err, io.EOF) {
			s.log.Warn("sync: dropped a connection before hello", "peer", ss.remote, "err", err)
		}
		return
	}
	now := time.Now()
	var rc receiver
	if ss.rc != nil {
		rc = *ss.rc
	}
	s.cfg.Stats.update(ss.peer, func(p *PeerStatus) {
		p.Name = ss.name
		p.Sessions++
		p.BytesSent += ss.w.bytesOut()
		p.BytesReceived += ss.w.bytesIn()
		p.EntriesReceived += rc.newEntries
		p.BlocksReceived += rc.newBlocks
		if ss.snd != nil {
			p.EntriesSent += ss.snd.entries
			p.BlocksSent += ss.snd.blocks
		}
		for r, n := range rc.rejected {
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
			p.LastSync = now
			p.LastError = ""
		}
	})
	switch {
	case err == nil:
		if ss.hello.Purpose == purposeSync && ss.hello.Addr != "" {
			s.cfg.Selector.Synced(sanitize(ss.hello.Addr), now)
		}
	case errors.Is(err, ErrProtocol) || errors.Is(err, ErrForged) || errors.Is(err, ErrLimit):
		s.log.Warn("sync: disconnected a peer", "peer", ss.peer, "err", err)
	case errors.Is(err, ErrDifferentFS) || errors.Is(err, ErrVersion):
		s.log.Info("sync: refused a peer", "peer", ss.peer, "err", err)
	default:
		s.log.Info("sync: session ended", "peer", ss.peer, "err", err)
	}
}

// ---- the get stream ----

// Stream groups: a group is at most this many entries (or bytes of
// entries), followed by the blocks of their contents; the client stores
// each group as one batch once all of it is verified.
const (
	groupEntries = 1024
	groupBytes   = 256 << 10
)

type outFrame struct {
	t frameType
	p []byte
}

// stream sends the store from position from: groups of entries in store
// order, each followed by the blocks of its entries' contents (those held
// here, each once) and a commit frame; then stream-end with the totals.
// Frames are prepared on another goroutine, so reading the store overlaps
// writing to the network.
func (ss *serverSession) stream(from int) error {
	r := ss.s.cfg.Replica
	// A get stream is bounded by the store, not by the sync limits; a
	// client that stops reading is still dropped after IOTimeout.
	ss.w.deadline, ss.w.maxBytes = time.Time{}, 0
	frames := make(chan outFrame, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var perr error
	var counts [2]uint64
	go func() {
		defer close(frames)
		perr = produceStream(ctx, r, from, frames, &counts)
	}()
	var werr error
	for f := range frames {
		if werr != nil {
			continue // drain
		}
		if werr = ss.w.writeFrame(f.t, f.p); werr != nil {
			cancel()
		}
	}
	if werr != nil {
		return werr
	}
	if perr != nil {
		return perr
	}
	ss.snd.entries, ss.snd.blocks = int64(counts[0]), int64(counts[1])
	if err := ss.w.flush(); err != nil {
		return err
	}
	// The client closes once it has stored everything, or says bye.
	t, _, err := ss.w.readFrame()
	if err == nil && t != tBye {
		return protoErr("unexpected %s after the stream", t)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// produceStream prepares the frames of a get stream.
// counts receives the numbers of entries and blocks sent.
func produceStream(ctx context.Context, r *replica.Replica, from int, out chan<- outFrame, counts *[2]uint64) error {
	seen := map[log.Hash]bool{}
	var ef, bf itemsFrame
	var group []*log.Entry
	var groupSize int
	var nEntries, nBlocks uint64
	var err error
	emit := func(t frameType, p []byte) bool {
		select {
		case out <- outFrame{t, p}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	flushGroup := func() bool {
		if len(group) == 0 {
			return true
		}
		for _, e := range group {
			ef.add(e.Encoded())
			if ef.full() && !emit(tEntries, ef.payload()) {
				return false
			}
		}
		if ef.n > 0 && !emit(tEntries, ef.payload()) {
			return false
		}
		for _, e := range group {
			c := e.Content
			if c == nil || c.Blocks == nil {
				continue
			}
			all, missing := r.ContentBlocks(c)
			miss := map[log.Hash]bool{}
			for _, h := range missing {
				miss[h] = true
			}
			for _, h := range all {
				if seen[h] || miss[h] {
					continue
				}
				b, berr := r.Block(h)
				if berr != nil {
					if errors.Is(berr, log.ErrBlockMissing) {
						continue
					}
					err = fmt.Errorf("reading block %s: %w", h.Short(), berr)
					return false
				}
				seen[h] = true
				nBlocks++
				bf.add(b)
				if bf.full() && !emit(tBlocks, bf.payload()) {
					return false
				}
			}
		}
		if bf.n > 0 && !emit(tBlocks, bf.payload()) {
			return false
		}
		nEntries += uint64(len(group))
		group, groupSize = group[:0], 0
		return emit(tCommit, nil)
	}
	ok := true
	r.ScanEntries(from, func(e *log.Entry) bool {
		group = append(group, e)
		groupSize += len(e.Encoded())
		if len(group) >= groupEntries || groupSize >= groupBytes {
			ok = flushGroup()
		}
		return ok
	})
	if ok {
		ok = flushGroup()
	}
	counts[0], counts[1] = nEntries, nBlocks
	if ok {
		emit(tStreamEnd, encodeCounts(nEntries, nBlocks))
	}
	if err != nil {
		return err
	}
	return ctx.Err()
}
