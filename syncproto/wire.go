package syncproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/log"
)

// The wire format.
//
// A connection starts with a preamble from each side — the four bytes
// "bfsy" and one byte of protocol version — followed by frames:
//
//	type(1 byte) length(uvarint, at most 3 bytes) payload(length bytes)
//
// A frame's payload is at most MaxFrame bytes; a longer length is refused
// before anything is allocated. Inside payloads, integers are uvarints,
// strings and byte strings are a uvarint length and the bytes, hashes are 32
// raw bytes. Every count read from the wire is checked against the bytes
// left before a slice is allocated, so a decoder allocates at most about the
// size of the frame it was given.
//
// The client speaks first: preamble and Hello. The server answers with its
// preamble and Welcome, or with an Error frame and a close. What follows is
// a sequence of rounds, strictly half-duplex: the client sends requests and
// pushes, then EndRound; the server reads them all, then sends its answers,
// then EndRound. A round's answers are bounded (see Limits), so neither side
// ever needs to read while it writes: that keeps the protocol free of
// deadlocks on any transport, net.Pipe included. The client ends the session
// with Bye. A get session instead sends GetStream, and the server streams
// groups of entries and their blocks, each closed by Commit, then StreamEnd.

// Protocol constants.
const (
	// Version is the protocol version this build speaks. A peer with another
	// version is answered with an Error frame naming both.
	Version = 1
	// MaxFrame is the largest frame payload accepted.
	MaxFrame = 1 << 20
	// targetFrame is the payload size at which senders start a new frame.
	targetFrame = 256 << 10

	magic       = "bfsy"
	preambleLen = len(magic) + 1
)

// Frame types. Their values are part of the protocol.
type frameType uint8

const (
	tHello       frameType = 1  // client: who I am, what I want
	tWelcome     frameType = 2  // server: who I am, my root digest
	tError       frameType = 3  // either: a refusal or a failure, then close
	tBye         frameType = 4  // client: the session ends cleanly
	tEndRound    frameType = 5  // either: end of this side's half of a round
	tExpand      frameType = 6  // client: send me these index nodes
	tNodes       frameType = 7  // server: the nodes asked for, in order
	tWantEntries frameType = 8  // client: send me these entries
	tWantTree    frameType = 9  // client: send me every entry under these nodes
	tEntries     frameType = 10 // either: entries (canonical bytes)
	tWantBlocks  frameType = 11 // client: send me these blocks
	tBlocks      frameType = 12 // either: blocks
	tNotFound    frameType = 13 // server: hashes asked for and not held
	tGetStream   frameType = 14 // client: stream the whole store from this position
	tCommit      frameType = 15 // server: the group of entries and blocks so far is complete
	tStreamEnd   frameType = 16 // server: the stream is over
)

var frameNames = map[frameType]string{
	tHello: "hello", tWelcome: "welcome", tError: "error", tBye: "bye", tEndRound: "end-round",
	tExpand: "expand", tNodes: "nodes", tWantEntries: "want-entries", tWantTree: "want-tree",
	tEntries: "entries", tWantBlocks: "want-blocks", tBlocks: "blocks", tNotFound: "not-found",
	tGetStream: "get-stream", tCommit: "commit", tStreamEnd: "stream-end",
}

func (t frameType) String() string {
	if n, ok := frameNames[t]; ok {
		return n
	}
	return fmt.Sprintf("frame(%d)", uint8(t))
}

// Purposes of a session, sent in Hello.
const (
	purposeSync  = 1 // anti-entropy: compare, pull and push
	purposeGet   = 2 // bootstrap: stream everything
	purposeFetch = 3 // fetch entries or blocks by hash
)

// Error codes of Error frames. Their values are part of the protocol.
const (
	codeProtocol = 1 // the peer broke the protocol (garbage, oversized, out of order)
	codeVersion  = 2 // protocol version mismatch
	codeWrongFS  = 3 // the filesystem asked for is not the one served here
	codeBusy     = 4 // too many sessions
	codeLimit    = 5 // a session limit (bytes, rounds, time) was reached
	codeForged   = 6 // the peer sent entries that fail verification
	codeInternal = 7 // this side failed (store error)
)

// Errors a session can end with. Those from the peer's Error frames are
// wrapped in a *PeerError that also carries the peer's message.
var (
	// ErrDifferentFS: the peer serves another filesystem (another root
	// entry) under the name asked for, or another name.
	ErrDifferentFS = errors.New("peer serves a different filesystem under that name")
	// ErrProtocol: the peer sent something that breaks the protocol.
	ErrProtocol = errors.New("protocol violation")
	// ErrVersion: the peer speaks another protocol version.
	ErrVersion = errors.New("protocol version mismatch")
	// ErrBusy: the peer has too many sessions.
	ErrBusy = errors.New("peer busy")
	// ErrLimit: a session limit was reached.
	ErrLimit = errors.New("session limit reached")
	// ErrForged: entries failed verification (bad signature, another
	// filesystem's root) or blocks no verified entry refers to.
	ErrForged = errors.New("forged data")
	// ErrPeerFailed: the peer reported an internal failure.
	ErrPeerFailed = errors.New("peer failed")
)

func codeErr(code uint8) error {
	switch code {
	case codeProtocol:
		return ErrProtocol
	case codeVersion:
		return ErrVersion
	case codeWrongFS:
		return ErrDifferentFS
	case codeBusy:
		return ErrBusy
	case codeLimit:
		return ErrLimit
	case codeForged:
		return ErrForged
	}
	return ErrPeerFailed
}

func errCode(err error) uint8 {
	switch {
	case errors.Is(err, ErrDifferentFS):
		return codeWrongFS
	case errors.Is(err, ErrVersion):
		return codeVersion
	case errors.Is(err, ErrBusy):
		return codeBusy
	case errors.Is(err, ErrLimit):
		return codeLimit
	case errors.Is(err, ErrForged):
		return codeForged
	case errors.Is(err, ErrProtocol):
		return codeProtocol
	}
	return codeInternal
}

// PeerError is an Error frame received from a peer: its code (as one of the
// sentinel errors above, for errors.Is) and its message.
type PeerError struct {
	Err error
	Msg string
}

func (e *PeerError) Error() string {
	if e.Msg == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Msg
}

// Unwrap returns the sentinel error of the code.
func (e *PeerError) Unwrap() error { return e.Err }

// protoErr builds an error wrapping ErrProtocol.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// ---- byte counting and deadlines ----

// countConn counts the bytes that cross a connection, both ways, as the
// transport sees them (framing included).
type countConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// wire is one side of a connection: buffered frame I/O with deadlines and a
// byte budget. Not safe for concurrent use, except that reads and writes may
// happen on two goroutines (the get stream's reader and the session's
// writer never share state).
type wire struct {
	conn      *countConn
	r         *bufio.Reader
	w         *bufio.Writer
	ioTimeout time.Duration
	deadline  time.Time // end of the session; zero: none
	maxBytes  int64     // both directions; 0: unlimited
	rbuf      []byte
	hdr       [8]byte
}

func newWire(c net.Conn, lim Limits) *wire {
	cc := &countConn{Conn: c}
	return &wire{
		conn:      cc,
		r:         bufio.NewReaderSize(cc, 64<<10),
		w:         bufio.NewWriterSize(cc, 64<<10),
		ioTimeout: lim.IOTimeout,
	}
}

func (w *wire) bytesIn() int64  { return w.conn.in.Load() }
func (w *wire) bytesOut() int64 { return w.conn.out.Load() }

// ioDeadline is when the next read or write must be done by.
func (w *wire) ioDeadline() time.Time {
	d := time.Now().Add(w.ioTimeout)
	if !w.deadline.IsZero() && w.deadline.Before(d) {
		d = w.deadline
	}
	return d
}

func (w *wire) checkBudget() error {
	if w.maxBytes > 0 && w.bytesIn()+w.bytesOut() > w.maxBytes {
		return fmt.Errorf("%w: more than %d bytes in one session", ErrLimit, w.maxBytes)
	}
	if !w.deadline.IsZero() && time.Now().After(w.deadline) {
		return fmt.Errorf("%w: session took too long", ErrLimit)
	}
	return nil
}

// writePreamble queues the magic and version.
func (w *wire) writePreamble() {
	w.w.WriteString(magic)
	w.w.WriteByte(Version)
}

// readPreamble reads and checks the peer's preamble.
func (w *wire) readPreamble() (version int, err error) {
	var p [preambleLen]byte
	w.conn.SetReadDeadline(w.ioDeadline())
	if _, err := io.ReadFull(w.r, p[:]); err != nil {
		return 0, fmt.Errorf("reading preamble: %w", err)
	}
	if string(p[:len(magic)]) != magic {
		return 0, protoErr("not a basefs sync peer (preamble %q)", p[:])
	}
	return int(p[len(magic)]), nil
}

// writeFrame queues one frame; it is sent by flush (or when the buffer
// fills).
func (w *wire) writeFrame(t frameType, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("internal error: %s frame of %d bytes", t, len(payload))
	}
	if err := w.checkBudget(); err != nil {
		return err
	}
	w.conn.SetWriteDeadline(w.ioDeadline())
	w.hdr[0] = byte(t)
	n := binary.PutUvarint(w.hdr[1:], uint64(len(payload)))
	if _, err := w.w.Write(w.hdr[:1+n]); err != nil {
		return err
	}
	_, err := w.w.Write(payload)
	return err
}

// sendError writes an error frame, best effort: the peer may not be
// reading, so it waits at most errorWriteTimeout.
func (w *wire) sendError(err error) {
	w.ioTimeout = min(w.ioTimeout, errorWriteTimeout)
	code := errCode(err)
	// The code says what the sentinel says; the message adds the detail.
	msg := strings.TrimPrefix(err.Error(), codeErr(code).Error()+": ")
	w.writeFrame(tError, encodeError(code, msg))
	w.flush()
}

// userError is an error with a message for users that still matches its
// sentinel with errors.Is.
type userError struct {
	msg string
	err error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.err }

// errorWriteTimeout bounds the best-effort write of an error frame.
const errorWriteTimeout = 500 * time.Millisecond

func (w *wire) flush() error {
	w.conn.SetWriteDeadline(w.ioDeadline())
	return w.w.Flush()
}

// readFrame reads one frame. The payload is valid until the next call.
func (w *wire) readFrame() (frameType, []byte, error) {
	if err := w.checkBudget(); err != nil {
		return 0, nil, err
	}
	w.conn.SetReadDeadline(w.ioDeadline())
	t, n, err := readFrameHeader(w.r)
	if err != nil {
		return 0, nil, err
	}
	if cap(w.rbuf) < n {
		w.rbuf = make([]byte, n, max(n, 4096))
	}
	buf := w.rbuf[:n]
	if _, err := io.ReadFull(w.r, buf); err != nil {
		return 0, nil, fmt.Errorf("reading %s frame: %w", t, noEOF(err))
	}
	return t, buf, nil
}

// readFrameOwned is readFrame with a payload the caller may keep.
func (w *wire) readFrameOwned() (frameType, []byte, error) {
	if err := w.checkBudget(); err != nil {
		return 0, nil, err
	}
	w.conn.SetReadDeadline(w.ioDeadline())
	t, n, err := readFrameHeader(w.r)
	if err != nil {
		return 0, nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(w.r, buf); err != nil {
		return 0, nil, fmt.Errorf("reading %s frame: %w", t, noEOF(err))
	}
	return t, buf, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readFrameHeader reads a frame's type and length and checks them.
func readFrameHeader(r io.ByteReader) (frameType, int, error) {
	tb, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	t := frameType(tb)
	if _, ok := frameNames[t]; !ok {
		return 0, 0, protoErr("unknown frame type %d", tb)
	}
	var n uint64
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s frame: %w", t, noEOF(err))
		}
		if i == 2 && b >= 0x80 {
			return 0, 0, protoErr("%s frame length too long", t)
		}
		n |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if i > 0 && b == 0 {
				return 0, 0, protoErr("%s frame length not minimal", t)
			}
			break
		}
	}
	if n > MaxFrame {
		return 0, 0, protoErr("%s frame of %d bytes, more than %d", t, n, MaxFrame)
	}
	return t, int(n), nil
}

// ---- payload encoding ----

type enc struct{ b []byte }

func (e *enc) u8(v uint8)       { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) hash(h log.Hash)  { e.b = append(e.b, h[:]...) }
func (e *enc) bytes(v []byte)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) u16(v uint16)     { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) hashes(hs []log.Hash) {
	e.uvarint(uint64(len(hs)))
	for _, h := range hs {
		e.hash(h)
	}
}

// dec reads a payload; the first error sticks and later reads return zero
// values.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = protoErr(format, args...)
	}
}

func (d *dec) u8() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.fail("truncated payload")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) u16() uint16 {
	if d.err != nil || len(d.b) < 2 {
		d.fail("truncated payload")
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *dec) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad integer")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.fail("integer not minimal")
		return 0
	}
	if v > limit {
		d.fail("integer %d above %d", v, limit)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) hash() log.Hash {
	var h log.Hash
	if d.err != nil || len(d.b) < 32 {
		d.fail("truncated hash")
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[32:]
	return h
}

// bytes returns a sub-slice of the payload (not a copy).
func (d *dec) bytes(limit int) []byte {
	n := d.uvarint(uint64(limit))
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail("truncated byte string")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str(limit int) string { return string(d.bytes(limit)) }

// count reads a number of items of at least minSize bytes each, refusing
// counts the remaining bytes cannot hold.
func (d *dec) count(minSize, limit int) int {
	n := d.uvarint(uint64(limit))
	if d.err != nil {
		return 0
	}
	if n*uint64(minSize) > uint64(len(d.b)) {
		d.fail("count %d does not fit the payload", n)
		return 0
	}
	return int(n)
}

func (d *dec) hashes(limit int) []log.Hash {
	n := d.count(32, limit)
	if d.err != nil {
		return nil
	}
	hs := make([]log.Hash, n)
	for i := range hs {
		hs[i] = d.hash()
	}
	return hs
}

// done reports the first error, or trailing bytes.
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// ---- messages ----

const (
	maxNodeName = 255
	maxErrMsg   = 1024
	// maxFrameHashes is the most hashes one want/not-found frame carries.
	maxFrameHashes = (MaxFrame - 16) / 32
)

// hello is the client's opening message.
type hello struct {
	Purpose uint8
	FSName  string   // the filesystem asked for
	FSID    log.Hash // its id, or zero when the client does not know it (get into an empty home)
	Node    string   // the client's node name, for logs and status
	Addr    string   // the client's own sync address, if it serves one (so the server can record the sync)
	Digest  log.Hash // the client's root digest (sync)
}

func (m *hello) encode() []byte {
	var e enc
	e.u8(m.Purpose)
	e.str(m.FSName)
	e.hash(m.FSID)
	e.str(m.Node)
	e.str(m.Addr)
	e.hash(m.Digest)
	return e.b
}

func decodeHello(p []byte) (*hello, error) {
	d := dec{b: p}
	m := &hello{}
	m.Purpose = d.u8()
	m.FSName = d.str(log.MaxFSNameLen)
	m.FSID = d.hash()
	m.Node = d.str(maxNodeName)
	m.Addr = d.str(maxNodeName)
	m.Digest = d.hash()
	if err := d.done(); err != nil {
		return nil, err
	}
	if m.Purpose < purposeSync || m.Purpose > purposeFetch {
		return nil, protoErr("unknown purpose %d", m.Purpose)
	}
	return m, nil
}

// welcome is the server's answer to hello.
type welcome struct {
	FSID   log.Hash
	Node   string
	Digest log.Hash
	// For get only: the number of entries and bytes of the store (for
	// progress), and the root entry's canonical bytes (so an empty home can
	// create its store).
	Entries    uint64
	StoreBytes uint64
	Root       []byte
}

func (m *welcome) encode() []byte {
	var e enc
	e.hash(m.FSID)
	e.str(m.Node)
	e.hash(m.Digest)
	e.uvarint(m.Entries)
	e.uvarint(m.StoreBytes)
	e.bytes(m.Root)
	return e.b
}

func decodeWelcome(p []byte) (*welcome, error) {
	d := dec{b: p}
	m := &welcome{}
	m.FSID = d.hash()
	m.Node = d.str(maxNodeName)
	m.Digest = d.hash()
	m.Entries = d.uvarint(1 << 62)
	m.StoreBytes = d.uvarint(1 << 62)
	m.Root = d.bytes(log.MaxEntrySize)
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

func encodeError(code uint8, msg string) []byte {
	if len(msg) > maxErrMsg {
		msg = msg[:maxErrMsg]
	}
	var e enc
	e.u8(code)
	e.str(msg)
	return e.b
}

func decodeError(p []byte) (*PeerError, error) {
	d := dec{b: p}
	code := d.u8()
	msg := d.str(maxErrMsg)
	if err := d.done(); err != nil {
		return nil, err
	}
	return &PeerError{Err: codeErr(code), Msg: sanitize(msg)}, nil
}

// sanitize keeps a peer's text printable, for logs and messages.
func sanitize(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

// prefix is a position in a key trie: the first n nibbles (4-bit digits) of
// a key, most significant first. Unused nibbles are zero.
type prefix struct {
	n uint8
	b [32]byte
}

// nib returns nibble i of key k.
func nib(k *log.Hash, i int) int {
	if i&1 == 0 {
		return int(k[i>>1] >> 4)
	}
	return int(k[i>>1] & 0xf)
}

func (p prefix) nib(i int) int { h := log.Hash(p.b); return nib(&h, i) }

// child returns p extended by nibble x.
func (p prefix) child(x int) prefix {
	q := p
	if q.n&1 == 0 {
		q.b[q.n>>1] = byte(x) << 4
	} else {
		q.b[q.n>>1] |= byte(x)
	}
	q.n++
	return q
}

// matches reports whether key k starts with p.
func (p prefix) matches(k *log.Hash) bool {
	full := int(p.n) >> 1
	for i := 0; i < full; i++ {
		if k[i] != p.b[i] {
			return false
		}
	}
	if p.n&1 == 1 && k[full]>>4 != p.b[full]>>4 {
		return false
	}
	return true
}

func (p prefix) String() string {
	const hexd = "0123456789abcdef"
	s := make([]byte, p.n)
	for i := range s {
		s[i] = hexd[p.nib(i)]
	}
	return string(s)
}

// nodeRef names a node of the index: a path and a prefix of the trie of
// that path's items.
type nodeRef struct {
	Path   string
	Prefix prefix
}

func (e *enc) nodeRef(r nodeRef) {
	e.str(r.Path)
	e.u8(r.Prefix.n)
	e.b = append(e.b, r.Prefix.b[:(int(r.Prefix.n)+1)/2]...)
}

func (d *dec) nodeRef() nodeRef {
	var r nodeRef
	r.Path = d.str(log.MaxPathLen)
	n := d.u8()
	if d.err != nil {
		return r
	}
	if n > keyNibbles {
		d.fail("prefix of %d nibbles", n)
		return r
	}
	nb := (int(n) + 1) / 2
	if len(d.b) < nb {
		d.fail("truncated prefix")
		return r
	}
	copy(r.Prefix.b[:], d.b[:nb])
	d.b = d.b[nb:]
	r.Prefix.n = n
	if n&1 == 1 && r.Prefix.b[nb-1]&0xf != 0 {
		d.fail("prefix not canonical")
		return r
	}
	if err := log.ValidatePath(r.Path); err != nil {
		d.fail("bad path: %v", err)
	}
	return r
}

// minNodeRef is the smallest encoding of a nodeRef.
const minNodeRef = 3

func encodeNodeRefs(refs []nodeRef) []byte {
	var e enc
	e.uvarint(uint64(len(refs)))
	for _, r := range refs {
		e.nodeRef(r)
	}
	return e.b
}

func decodeNodeRefs(p []byte, limit int) ([]nodeRef, error) {
	d := dec{b: p}
	n := d.count(minNodeRef, limit)
	refs := make([]nodeRef, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		refs = append(refs, d.nodeRef())
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return refs, nil
}

// Kinds of node representations.
const (
	repEmpty = 0 // no items under this node
	repList  = 1 // at most leafItems items, listed
	repSplit = 2 // more: the digests of the 16 sub-buckets
)

// kidRef is a child path's item in a list: its name and digest.
type kidRef struct {
	Name   string
	Digest log.Hash
}

// rep is what a peer says about one index node.
type rep struct {
	Kind    uint8
	Entries []log.Hash   // repList: entry hashes, sorted
	Kids    []kidRef     // repList: children, in key order
	Sub     [16]log.Hash // repSplit: sub-bucket digests (zero: empty)
}

func (e *enc) rep(r *rep) {
	e.u8(r.Kind)
	switch r.Kind {
	case repList:
		e.hashes(r.Entries)
		e.uvarint(uint64(len(r.Kids)))
		for _, k := range r.Kids {
			e.str(k.Name)
			e.hash(k.Digest)
		}
	case repSplit:
		var bm uint16
		for i, h := range r.Sub {
			if !h.IsZero() {
				bm |= 1 << i
			}
		}
		e.u16(bm)
		for _, h := range r.Sub {
			if !h.IsZero() {
				e.hash(h)
			}
		}
	}
}

func (d *dec) rep() rep {
	var r rep
	r.Kind = d.u8()
	switch r.Kind {
	case repEmpty:
	case repList:
		r.Entries = d.hashes(leafItems)
		nk := d.count(33, leafItems)
		if d.err != nil {
			return r
		}
		if len(r.Entries)+nk > leafItems || len(r.Entries)+nk == 0 {
			d.fail("list of %d items", len(r.Entries)+nk)
			return r
		}
		r.Kids = make([]kidRef, nk)
		for i := range r.Kids {
			r.Kids[i].Name = d.str(log.MaxNameLen)
			r.Kids[i].Digest = d.hash()
			if d.err == nil && !validName(r.Kids[i].Name) {
				d.fail("bad child name %q", r.Kids[i].Name)
			}
		}
	case repSplit:
		bm := d.u16()
		if d.err == nil && bits.OnesCount16(bm) < 2 {
			d.fail("split node with %d sub-buckets", bits.OnesCount16(bm))
		}
		for i := range r.Sub {
			if bm&(1<<i) != 0 {
				r.Sub[i] = d.hash()
				if d.err == nil && r.Sub[i].IsZero() {
					d.fail("zero digest")
				}
			}
		}
	default:
		d.fail("unknown node kind %d", r.Kind)
	}
	return r
}

func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return false
		}
	}
	return log.ValidatePath("/"+name) == nil
}

func decodeReps(p []byte, limit int) ([]rep, error) {
	d := dec{b: p}
	n := d.count(1, limit)
	reps := make([]rep, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		reps = append(reps, d.rep())
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return reps, nil
}

func encodeHashes(hs []log.Hash) []byte {
	var e enc
	e.hashes(hs)
	return e.b
}

func decodeHashes(p []byte) ([]log.Hash, error) {
	d := dec{b: p}
	hs := d.hashes(maxFrameHashes)
	if err := d.done(); err != nil {
		return nil, err
	}
	return hs, nil
}

// decodeItems splits an entries or blocks frame into its byte strings
// (sub-slices of p), each at most limit bytes.
func decodeItems(p []byte, limit int) ([][]byte, error) {
	d := dec{b: p}
	n := d.count(1, MaxFrame)
	items := make([][]byte, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		b := d.bytes(limit)
		if d.err == nil && len(b) == 0 {
			d.fail("empty item")
		}
		items = append(items, b)
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return items, nil
}

// itemsFrame accumulates byte strings into frames of about targetFrame
// bytes.
type itemsFrame struct {
	n    int
	body []byte
}

func (f *itemsFrame) add(b []byte) {
	f.n++
	f.body = binary.AppendUvarint(f.body, uint64(len(b)))
	f.body = append(f.body, b...)
}

func (f *itemsFrame) full() bool { return len(f.body) >= targetFrame }

func (f *itemsFrame) payload() []byte {
	out := binary.AppendUvarint(make([]byte, 0, len(f.body)+4), uint64(f.n))
	out = append(out, f.body...)
	f.n, f.body = 0, f.body[:0]
	return out
}

func encodeCount(n uint64) []byte { return binary.AppendUvarint(nil, n) }

func decodeCount(p []byte) (uint64, error) {
	d := dec{b: p}
	v := d.uvarint(1 << 62)
	return v, d.done()
}

func decodeCounts(p []byte) (a, b uint64, err error) {
	d := dec{b: p}
	a = d.uvarint(1 << 62)
	b = d.uvarint(1 << 62)
	return a, b, d.done()
}

func encodeCounts(a, b uint64) []byte {
	var e enc
	e.uvarint(a)
	e.uvarint(b)
	return e.b
}
