// Package gossip is basefs's membership and dissemination layer: an embedded
// Serf (github.com/hashicorp/serf, used as a library) on memberlist.
//
// New entries, and the first blocks of small files, travel in Serf user
// events that always fit one memberlist UDP gossip packet (MaxEventSize), so
// they spread within a few gossip intervals instead of waiting for the 30 s
// TCP push/pull. An entry too big for an event is announced by its hash, and
// receivers pull it (from the announcer, Message.Origin, or any peer that
// has it) through the sync protocol, which also repairs whatever gossip
// loses: gossip is fast, never complete.
//
// Nothing received is trusted here. DecodeEvent parses the envelope with
// strict bounds; the node verifies every entry and block before storing it
// and reports failures back with ReportInvalid, which counts them per peer
// and logs a peer that keeps sending them. Serf does not say which peer
// relayed an event, so "peer" is the origin the event names: honest nodes
// name themselves, a forger can name anyone. With gossip encryption
// (Config.Keys) only holders of the key can send at all.
//
// Nodes of different filesystems never form one cluster: every memberlist
// packet and stream is labelled "basefs/" + the hex of the FSID prefix, and
// a node drops what carries another label. Events also carry the prefix.
//
// Costs to know: each event is sent by every node RetransmitMult·
// ⌈log10(N+1)⌉ times (see MinRetransmitMult), and Serf's push/pull (every
// 30 s on LAN, 60 s on WAN) carries its ring of the last Tuning.EventBuffer
// user events, up to EventBuffer × MaxEventSize bytes.
//
// The network is injectable: Config.Transport takes any memberlist.Transport
// (a simulated network, or memberlist.MockNetwork in tests); nil binds real
// UDP and TCP sockets on Config.BindAddr. Serf's own state gossip (push/pull,
// intents, key queries) runs over the same transport.
//
// Concurrency: a Gossip is safe for concurrent use by multiple goroutines.
// Config.OnMessage and Config.OnMember run on one goroutine owned by the
// Gossip, one call at a time, in the order events arrived; they may call any
// method except Leave and Shutdown (which wait for that goroutine). Serf
// itself never waits for them: received events go through a bounded queue
// (Tuning.QueueLimit), and messages that find it full are dropped and
// counted in Stats.QueueDrops.
//
// The package has no package-level mutable state.
package gossip

import (
	"encoding/hex"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// EventName is the Serf user-event name of every basefs envelope. Events are
// sent with coalescing off: Serf's coalescer keeps only the last event of a
// name, which would lose entries.
const EventName = "b"

// serfOverhead bounds the bytes Serf's msgpack framing of a user event adds
// to name and payload (type byte, field names, a Lamport time of up to nine
// bytes, a length header: 38 bytes at most, TestSerfFraming).
const serfOverhead = 64

// MinRetransmitMult is the least retransmit multiplier basefs gives
// memberlist, whatever the profile. Each node sends each event
// RetransmitMult·⌈log10(N+1)⌉ times, to random peers; a given node misses an
// event with probability about e^-(that count). With the profiles' 4 (2 for
// local), clusters of under 10 nodes send each event only 4 times and
// measured ~1.3% of deliveries missing (13 of 1024 in a 5-node burst); with
// 6, 0.1–0.3%. Sync repairs the rest.
const MinRetransmitMult = 6

// ErrClosed is returned by operations on a Gossip after Leave or Shutdown.
var ErrClosed = errors.New("gossip: closed")

// ErrNoEncryption is returned by the key operations when the cluster was
// started without gossip encryption (Config.Keys empty).
var ErrNoEncryption = errors.New("gossip: encryption is not enabled (no keys configured)")

// Config configures a Gossip. NodeName and either BindAddr or Transport are
// required.
type Config struct {
	// NodeName is unique per node; the caller passes e.g. "host:port". At
	// most MaxNodeNameLen bytes: it travels in every event.
	NodeName string
	// BindAddr is "ip:port"; memberlist binds UDP and TCP there when
	// Transport is nil (port 0 picks a free port).
	BindAddr string
	// AdvertiseAddr is the "ip:port" others should use, if not BindAddr's.
	AdvertiseAddr string
	// Transport, if set, carries all packets and streams (a simulated
	// network). memberlist then binds nothing and asks the Transport's
	// FinalAdvertiseAddr for this node's address, passing AdvertiseAddr, or
	// else BindAddr, when set. A Transport serves one Gossip and is shut
	// down with it.
	Transport memberlist.Transport
	// Profile selects memberlist's timing: "lan" (default), "wan" or
	// "local" (DefaultLANConfig, DefaultWANConfig, DefaultLocalConfig).
	Profile string
	// FSID is the filesystem id (the root entry's hash). Events carry its
	// first FSPrefixLen bytes and events of another filesystem are ignored;
	// it also labels every memberlist packet and stream, so nodes of
	// different filesystems never join one cluster.
	FSID [32]byte
	// Keys enables gossip encryption (AES-GCM, Serf's keyring) when not
	// empty: 16, 24 or 32 bytes each; the first is the primary key.
	Keys [][]byte
	// KeyringFile, if set, is where Serf persists the keyring after
	// InstallKey, UseKey and RemoveKey (a JSON list of base64 keys, primary
	// first, which ReadKeyFile reads), so a rotation survives a restart.
	KeyringFile string
	// Tags are this node's Serf tags (e.g. the sync port), ≤ 512 bytes
	// encoded.
	Tags map[string]string
	// Logger receives the package's warnings, and Serf's and memberlist's
	// logs at debug level. nil discards.
	Logger *slog.Logger
	// OnMessage is called for every decoded event from another node of this
	// filesystem. from is the origin named in the event (Serf does not tell
	// which peer relayed it), equal to m.Origin. It must not block long: the
	// node queues. The slices in m are the callee's to keep.
	OnMessage func(from string, m Message)
	// OnMember is called on membership changes: join, leave, failed, update
	// and reap.
	OnMember func(MemberEvent)
	// Tuning overrides timing and buffer sizes; zero values keep the
	// profile's defaults.
	Tuning Tuning

	// rawEvent, if set, is called (on the receiving goroutine, as soon as
	// Serf hands it over) for every user event whose name is not EventName.
	// Tests use it to time bare Serf events.
	rawEvent func(name string, payload []byte)
}

// Tuning holds knobs for tests, simulations and operators. Zero means the
// profile's (or Serf's) default.
type Tuning struct {
	GossipInterval      time.Duration // memberlist gossip tick (LAN 200 ms)
	GossipNodes         int           // peers per gossip tick (LAN 3)
	ProbeInterval       time.Duration // failure-detector probe tick (LAN 1 s)
	ProbeTimeout        time.Duration // (LAN 500 ms)
	SuspicionMult       int           // (LAN 4)
	RetransmitMult      int           // each broadcast is sent RetransmitMult·⌈log10(N+1)⌉ times (default MinRetransmitMult)
	PushPullInterval    time.Duration // full state exchange (LAN 30 s)
	TCPTimeout          time.Duration
	GossipToTheDeadTime time.Duration
	LeavePropagateDelay time.Duration // Serf: linger after a leave (1 s)
	BroadcastTimeout    time.Duration // Serf: wait for the leave broadcast (5 s)
	ReapInterval        time.Duration // Serf (15 s)
	TombstoneTimeout    time.Duration // Serf: how long left nodes stay listed (24 h)
	ReconnectTimeout    time.Duration // Serf: how long failed nodes stay listed (24 h)

	// EventBuffer is Serf's ring of recent user events (default 512). It is
	// both the de-duplication window and the largest burst, in events
	// cluster-wide, that can arrive without loss: an event older than the
	// newest seen minus EventBuffer is dropped as "old". Serf also sends the
	// whole ring in every push/pull, so it costs up to EventBuffer ×
	// MaxEventSize bytes per push/pull: lower it on slow links.
	EventBuffer int
	// MaxQueueDepth bounds Serf's outgoing broadcast queues (default 4096
	// events); beyond it the oldest are dropped at the queue check.
	MaxQueueDepth int
	// MaxBlockEvents is how many events one Announce may open for blocks
	// (default 8); negative: blocks only fill room left by entries.
	MaxBlockEvents int
	// QueueLimit bounds messages waiting for OnMessage (default 8192).
	QueueLimit int
	// WarnThreshold and WarnInterval: a peer is logged (Warn) once it has
	// sent WarnThreshold invalid items since its last warning, at most once
	// per WarnInterval (defaults 3 and 1 min).
	WarnThreshold int
	WarnInterval  time.Duration
	// EventSize overrides MaxEventSize (for experiments only).
	EventSize int
}

// Message is what one event carried.
type Message struct {
	Entries [][]byte   // encoded entries, unverified
	Blocks  [][]byte   // content blocks, unverified
	Hashes  []log.Hash // announced, not carried: pull them
	Origin  string     // the announcer's node name
}

// Member is one node as Serf sees it.
type Member struct {
	Name   string
	Addr   string // "ip:port"
	Status string // "alive", "leaving", "left", "failed"
	Tags   map[string]string
}

// MemberEvent is a membership change.
type MemberEvent struct {
	Type    string // "join", "leave", "failed", "update", "reap"
	Members []Member
}

// Gossip is one node's membership in a filesystem's cluster. See the package
// comment for its concurrency contract.
type Gossip struct {
	cfg      Config
	tun      Tuning
	logger   *slog.Logger
	serf     *serf.Serf
	name     string
	prefix   [FSPrefixLen]byte
	maxEvent int
	keyed    bool
	keyring  *memberlist.Keyring

	eventCh chan serf.Event
	stop    chan struct{}
	wg      sync.WaitGroup

	qmu    sync.Mutex
	queue  []delivery
	qmsgs  int
	signal chan struct{}

	// closeMu is held shared by operations that feed Serf (Announce and
	// the key operations), so none is in flight once Shutdown marks the
	// Gossip closed: Serf would block handing our own event to a channel
	// nobody reads any more.
	closeMu sync.RWMutex
	closed  bool

	st    counters
	peers peerTable

	rawHandler atomic.Pointer[func(name string, payload []byte)] // SetRawHandler
}

type delivery struct {
	msg    *Message
	member *MemberEvent
}

// New starts a Serf node. It does not join anyone: call Join.
func New(cfg Config) (*Gossip, error) {
	if cfg.NodeName == "" || len(cfg.NodeName) > MaxNodeNameLen {
		return nil, fmt.Errorf("gossip: node name %q must be 1..%d bytes", cfg.NodeName, MaxNodeNameLen)
	}
	tun := cfg.Tuning.withDefaults()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gossip{
		cfg:      cfg,
		tun:      tun,
		logger:   logger,
		name:     cfg.NodeName,
		maxEvent: MaxEventSize,
		eventCh:  make(chan serf.Event, 1024),
		stop:     make(chan struct{}),
		signal:   make(chan struct{}, 1),
		keyed:    len(cfg.Keys) > 0,
	}
	if tun.EventSize > 0 {
		g.maxEvent = min(tun.EventSize, maxDecodeSize-len(EventName)-serfOverhead)
	}
	copy(g.prefix[:], cfg.FSID[:FSPrefixLen])
	g.peers.init(tun)

	ml, err := memberlistConfig(cfg, tun)
	if err != nil {
		return nil, err
	}
	g.keyring = ml.Keyring
	ml.Label = "basefs/" + hex.EncodeToString(g.prefix[:])
	serfLog := stdlog.New(&slogWriter{l: logger.With("component", "serf")}, "", 0)
	ml.Logger = serfLog

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = maps.Clone(cfg.Tags)
	sc.EventCh = g.eventCh
	sc.Logger = serfLog
	sc.LogOutput = nil
	sc.MemberlistConfig = ml
	var gate *gatedTransport
	if ml.Transport != nil {
		gate = newGatedTransport(ml.Transport)
		ml.Transport = gate
	}
	sc.UserEventSizeLimit = g.maxEvent + len(EventName) + serfOverhead
	sc.DisableCoordinates = true // unused; saves bytes on every ack
	sc.EventBuffer = tun.EventBuffer
	sc.MaxQueueDepth = tun.MaxQueueDepth
	sc.KeyringFile = cfg.KeyringFile
	setDur(&sc.LeavePropagateDelay, tun.LeavePropagateDelay)
	setDur(&sc.BroadcastTimeout, tun.BroadcastTimeout)
	setDur(&sc.ReapInterval, tun.ReapInterval)
	setDur(&sc.TombstoneTimeout, tun.TombstoneTimeout)
	setDur(&sc.ReconnectTimeout, tun.ReconnectTimeout)

	// Drain Serf's channel from the start: Serf blocks on it.
	g.wg.Add(2)
	go g.receive()
	go g.deliver()
	s, err := serf.Create(sc)
	if err != nil {
		if gate != nil {
			gate.Shutdown()
		}
		close(g.stop)
		g.wg.Wait()
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if gate != nil {
		gate.open()
	}
	g.serf = s
	return g, nil
}

func (t Tuning) withDefaults() Tuning {
	if t.EventBuffer <= 0 {
		t.EventBuffer = 512
	}
	if t.MaxQueueDepth <= 0 {
		t.MaxQueueDepth = 4096
	}
	if t.MaxBlockEvents == 0 {
		t.MaxBlockEvents = 8
	}
	if t.QueueLimit <= 0 {
		t.QueueLimit = 8192
	}
	if t.WarnThreshold <= 0 {
		t.WarnThreshold = 3
	}
	if t.WarnInterval <= 0 {
		t.WarnInterval = time.Minute
	}
	return t
}

func setDur(dst *time.Duration, v time.Duration) {
	if v > 0 {
		*dst = v
	}
}

func setInt(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}

// memberlistConfig builds memberlist's configuration from the profile,
// tuning, addresses and keys.
func memberlistConfig(cfg Config, tun Tuning) (*memberlist.Config, error) {
	var ml *memberlist.Config
	switch cfg.Profile {
	case "", "lan":
		ml = memberlist.DefaultLANConfig()
	case "wan":
		ml = memberlist.DefaultWANConfig()
	case "local":
		ml = memberlist.DefaultLocalConfig()
	default:
		return nil, fmt.Errorf("gossip: unknown profile %q (want lan, wan or local)", cfg.Profile)
	}
	ml.RetransmitMult = max(ml.RetransmitMult, MinRetransmitMult)
	setDur(&ml.GossipInterval, tun.GossipInterval)
	setInt(&ml.GossipNodes, tun.GossipNodes)
	setDur(&ml.ProbeInterval, tun.ProbeInterval)
	setDur(&ml.ProbeTimeout, tun.ProbeTimeout)
	setInt(&ml.SuspicionMult, tun.SuspicionMult)
	setInt(&ml.RetransmitMult, tun.RetransmitMult)
	setDur(&ml.PushPullInterval, tun.PushPullInterval)
	setDur(&ml.TCPTimeout, tun.TCPTimeout)
	setDur(&ml.GossipToTheDeadTime, tun.GossipToTheDeadTime)

	ml.Transport = cfg.Transport
	if cfg.Transport == nil && cfg.BindAddr == "" {
		return nil, errors.New("gossip: BindAddr or Transport is required")
	}
	if cfg.BindAddr != "" {
		host, port, err := splitHostPort(cfg.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: bind address: %w", err)
		}
		ml.BindAddr, ml.BindPort = host, port
		ml.AdvertisePort = port
	}
	if cfg.AdvertiseAddr != "" {
		host, port, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: advertise address: %w", err)
		}
		ml.AdvertiseAddr, ml.AdvertisePort = host, port
	}
	if len(cfg.Keys) > 0 {
		for _, k := range cfg.Keys {
			if err := checkKey(k); err != nil {
				return nil, err
			}
		}
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		ml.Keyring = kr
		ml.GossipVerifyIncoming = true
		ml.GossipVerifyOutgoing = true
	}
	return ml, nil
}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// LocalName returns this node's name.
func (g *Gossip) LocalName() string { return g.name }

// LocalAddr returns the "ip:port" this node advertises.
func (g *Gossip) LocalAddr() string {
	m := g.serf.LocalMember()
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}

// MaxEventSize returns the largest envelope this node sends (MaxEventSize
// unless overridden by Tuning.EventSize).
func (g *Gossip) MaxEventSize() int { return g.maxEvent }

// Join contacts the given "host:port" addresses and merges their clusters'
// state into ours. It returns how many it reached; an error only if none.
// Old user events are not replayed to a joining node (sync brings it up to
// date).
func (g *Gossip) Join(addrs []string) (int, error) {
	if g.isClosed() {
		return 0, ErrClosed
	}
	if len(addrs) == 0 {
		return 0, nil
	}
	n, err := g.serf.Join(addrs, true)
	if err != nil && n == 0 {
		// Serf's multierror spans lines; a node's log and CLI want one.
		msg := strings.TrimPrefix(strings.Join(strings.Fields(err.Error()), " "), "1 error occurred: * ")
		return 0, fmt.Errorf("gossip: join %s: %s", strings.Join(addrs, ","), msg)
	}
	return n, nil
}

// Announce gossips new entries (encoded, as log.Entry.Encoded gives them)
// and blocks, at once. It packs them, first fit in the order given, into as
// few events as possible, each at most MaxEventSize bytes: entries first;
// an entry too big for one event is announced by its hash instead, for the
// receivers to pull. Blocks (the node passes the first blocks of small
// files) fill the room left, then up to Tuning.MaxBlockEvents further
// events; the first block that does not fit and every block after it are
// left out (counted in Stats.BlocksDropped): sync pulls them.
//
// It returns an error for an empty entry or a block larger than
// log.BlockSize, before sending anything. Delivery is best effort.
func (g *Gossip) Announce(entries [][]byte, blocks [][]byte) error {
	return g.announce(entries, nil, blocks)
}

// AnnounceHashes gossips hashes of entries or blocks that receivers should
// pull from this node (or any peer that has them).
func (g *Gossip) AnnounceHashes(hashes []log.Hash) error {
	return g.announce(nil, hashes, nil)
}

func (g *Gossip) announce(entries [][]byte, hashes []log.Hash, blocks [][]byte) error {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if g.closed {
		return ErrClosed
	}
	evs, dropped, err := packEvents(Event{FS: g.prefix, Origin: g.name}, g.maxEvent, g.tun.MaxBlockEvents, entries, hashes, blocks)
	if err != nil {
		return err
	}
	g.st.blocksDropped.Add(int64(dropped))
	for _, e := range evs {
		if err := g.sendEvent(e); err != nil {
			return err
		}
	}
	return nil
}

func (g *Gossip) sendEvent(e *Event) error {
	payload, err := e.AppendEncode(make([]byte, 0, e.Size()))
	if err != nil {
		return err
	}
	if err := g.sendRaw(EventName, payload); err != nil {
		g.st.sendErrors.Add(1)
		return err
	}
	g.st.eventsSent.Add(1)
	g.st.bytesSent.Add(int64(len(payload)))
	g.st.entriesSent.Add(int64(len(e.Entries)))
	g.st.blocksSent.Add(int64(len(e.Blocks)))
	g.st.hashesSent.Add(int64(len(e.Hashes)))
	return nil
}

// SendRaw sends a bare Serf user event: name and payload as given, no
// envelope, coalescing off. It exists for testbeds that time Serf itself
// against basefs's announcements in the same cluster; receivers hand it to
// their SetRawHandler function, never to OnMessage. name must not be
// EventName, and name plus payload must fit Serf's user-event limit
// (MaxEventSize plus a little). Safe for concurrent use; ErrClosed after
// Leave or Shutdown.
func (g *Gossip) SendRaw(name string, payload []byte) error {
	if name == EventName {
		return fmt.Errorf("gossip: raw event name %q is reserved", name)
	}
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if g.closed {
		return ErrClosed
	}
	return g.sendRaw(name, payload)
}

// SetRawHandler registers fn to be called for every user event whose name
// is not EventName — bare events of SendRaw, this node's own included, as
// Serf hands them back — with the event's name and payload. fn runs on the
// goroutine that takes events from Serf, as soon as an event arrives, so it
// must return quickly and must not call Leave or Shutdown. nil removes the
// handler. Safe for concurrent use.
func (g *Gossip) SetRawHandler(fn func(name string, payload []byte)) {
	if fn == nil {
		g.rawHandler.Store(nil)
		return
	}
	g.rawHandler.Store(&fn)
}

// sendRaw sends a Serf user event as is (tests use it for bare events and
// forged envelopes).
func (g *Gossip) sendRaw(name string, payload []byte) error {
	if err := g.serf.UserEvent(name, payload, false); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	return nil
}

// Members returns every node Serf knows, this one included, with failed
// and left nodes until they are reaped.
func (g *Gossip) Members() []Member {
	ms := g.serf.Members()
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = memberOf(m)
	}
	return out
}

func memberOf(m serf.Member) Member {
	return Member{
		Name:   m.Name,
		Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
		Status: m.Status.String(),
		Tags:   maps.Clone(m.Tags),
	}
}

// SetTags replaces this node's tags and gossips the change.
func (g *Gossip) SetTags(tags map[string]string) error {
	if g.isClosed() {
		return ErrClosed
	}
	return g.serf.SetTags(maps.Clone(tags))
}

// Leave leaves the cluster gracefully, so the others list this node as
// "left" rather than "failed", then shuts down. It takes about
// Tuning.LeavePropagateDelay (1 s) longer than Shutdown.
func (g *Gossip) Leave() error {
	if g.isClosed() {
		return ErrClosed
	}
	err := g.serf.Leave()
	if serr := g.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Shutdown stops this node at once, without telling anyone: the others
// detect it as failed. It waits for the callbacks' goroutine to finish its
// current call, and is safe to call more than once.
func (g *Gossip) Shutdown() error {
	g.closeMu.Lock()
	if g.closed {
		g.closeMu.Unlock()
		return nil
	}
	g.closed = true
	g.closeMu.Unlock()
	err := g.serf.Shutdown()
	close(g.stop)
	g.wg.Wait()
	return err
}

func (g *Gossip) isClosed() bool {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	return g.closed
}

// receive takes every event from Serf, decodes it and queues it for
// deliver. It never blocks on the callbacks.
func (g *Gossip) receive() {
	defer g.wg.Done()
	for {
		select {
		case <-g.stop:
			return
		case ev := <-g.eventCh:
			switch e := ev.(type) {
			case serf.UserEvent:
				g.receiveUser(e)
			case serf.MemberEvent:
				me := &MemberEvent{Type: memberEventType(e.Type), Members: make([]Member, len(e.Members))}
				for i, m := range e.Members {
					me.Members[i] = memberOf(m)
				}
				g.enqueue(delivery{member: me})
			}
			// Queries (none of ours; Serf answers its internal ones) are
			// ignored.
		}
	}
}

func memberEventType(t serf.EventType) string {
	switch t {
	case serf.EventMemberJoin:
		return "join"
	case serf.EventMemberLeave:
		return "leave"
	case serf.EventMemberFailed:
		return "failed"
	case serf.EventMemberUpdate:
		return "update"
	case serf.EventMemberReap:
		return "reap"
	}
	return t.String()
}

func (g *Gossip) receiveUser(e serf.UserEvent) {
	if e.Name != EventName {
		if g.cfg.rawEvent != nil {
			g.cfg.rawEvent(e.Name, e.Payload)
		}
		if fn := g.rawHandler.Load(); fn != nil {
			(*fn)(e.Name, e.Payload)
		}
		return
	}
	peer := headerOrigin(e.Payload)
	if peer == g.name {
		// Our own event, which Serf hands back, or a forgery of our name.
		return
	}
	ev, err := DecodeEvent(e.Payload)
	if err != nil {
		if errors.Is(err, ErrVersion) {
			g.st.unknownVersion.Add(1)
			return
		}
		g.st.decodeFailures.Add(1)
		g.peers.bad(g.logger, peer, 1, true, err)
		return
	}
	if ev.FS != g.prefix {
		g.st.foreign.Add(1)
		return
	}
	g.st.eventsReceived.Add(1)
	g.st.bytesReceived.Add(int64(len(e.Payload)))
	g.st.entriesReceived.Add(int64(len(ev.Entries)))
	g.st.blocksReceived.Add(int64(len(ev.Blocks)))
	g.st.hashesReceived.Add(int64(len(ev.Hashes)))
	g.enqueue(delivery{msg: &Message{Entries: ev.Entries, Blocks: ev.Blocks, Hashes: ev.Hashes, Origin: ev.Origin}})
}

// headerOrigin returns the origin an envelope's header names, as far as it
// can be read ("" when not even that), without decoding the rest.
func headerOrigin(b []byte) string {
	if len(b) < envelopeFixed || b[0] != EnvelopeVersion {
		return ""
	}
	n := int(b[envelopeFixed-1])
	if n == 0 || n > MaxNodeNameLen || len(b) < envelopeFixed+n {
		return ""
	}
	return string(b[envelopeFixed : envelopeFixed+n])
}

func (g *Gossip) enqueue(d delivery) {
	g.qmu.Lock()
	if d.msg != nil {
		if g.qmsgs >= g.tun.QueueLimit {
			g.qmu.Unlock()
			g.st.queueDrops.Add(1)
			return
		}
		g.qmsgs++
	}
	g.queue = append(g.queue, d)
	g.qmu.Unlock()
	select {
	case g.signal <- struct{}{}:
	default:
	}
}

// deliver runs the callbacks, one at a time, in arrival order.
func (g *Gossip) deliver() {
	defer g.wg.Done()
	for {
		select {
		case <-g.stop:
			return
		case <-g.signal:
		}
		for {
			g.qmu.Lock()
			batch := g.queue
			g.queue = nil
			g.qmsgs = 0
			g.qmu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, d := range batch {
				select {
				case <-g.stop:
					return
				default:
				}
				switch {
				case d.msg != nil && g.cfg.OnMessage != nil:
					g.cfg.OnMessage(d.msg.Origin, *d.msg)
				case d.member != nil && g.cfg.OnMember != nil:
					g.cfg.OnMember(*d.member)
				}
			}
		}
	}
}
