// Package sechan is the encrypted, mutually authenticated channel that
// carries the sync protocol (and so get) when a cluster has a secret
// (--encrypt KEYFILE, the same keys as gossip's).
//
// It is the Noise protocol's NNpsk0 pattern (Noise_NNpsk0_25519_ChaChaPoly_
// SHA256, github.com/flynn/noise): both sides send an ephemeral X25519 key,
// and the pre-shared key — derived from the cluster key with HKDF — is
// mixed in before the first payload is encrypted. A peer without the
// secret cannot produce a first message the other side accepts, nor read
// or answer a reply; every session has its own keys (forward secrecy from
// the ephemeral exchange). Go's crypto/tls was the other candidate, but it
// has no external pre-shared keys, and the contract's secret is a shared
// key, not a certificate per node.
//
// Every message is framed by a 2-byte length, so nothing is allocated
// beyond 64 KiB per frame; the handshake has a deadline. A Conn is safe
// for one reader and one writer at once, as net.Conn is.
package sechan

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/flynn/noise"
)

// prologue binds the handshake to this protocol and version.
const prologue = "basefs sync channel v1"

// hello is the payload of both handshake messages: decrypting it is what
// proves the peer holds the secret.
var hello = []byte("basefs")

// maxFrame is the largest frame (Noise's message limit).
const maxFrame = 65535

// HandshakeTimeout bounds the handshake.
const HandshakeTimeout = 10 * time.Second

// ErrNoSecret is the error of a handshake with a peer that does not hold
// any of the secrets (or speaks plaintext).
var ErrNoSecret = errors.New("the peer does not hold the cluster secret (or does not encrypt)")

var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)

// PSK derives the channel's pre-shared key from a cluster key.
func PSK(clusterKey []byte) []byte {
	k, err := hkdf.Key(sha256.New, clusterKey, nil, "basefs sync psk v1", 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot give
	}
	return k
}

// Conn is a net.Conn whose traffic goes through the channel. The
// handshake runs on first Read or Write (or Handshake).
type Conn struct {
	net.Conn
	client bool
	psks   [][]byte

	hsOnce sync.Once
	hsErr  error

	rmu    sync.Mutex
	rd     *noise.CipherState
	rbuf   []byte // decrypted, not yet read
	rframe []byte

	wmu sync.Mutex
	wr  *noise.CipherState
}

// Client wraps c as the dialing side, with the primary secret's key.
func Client(c net.Conn, clusterKey []byte) *Conn {
	return &Conn{Conn: c, client: true, psks: [][]byte{PSK(clusterKey)}}
}

// Server wraps c as the accepting side; a client holding any of the keys
// is accepted (key rotation: a node knows the old and the new key).
func Server(c net.Conn, clusterKeys [][]byte) *Conn {
	s := &Conn{Conn: c}
	for _, k := range clusterKeys {
		s.psks = append(s.psks, PSK(k))
	}
	return s
}

// Handshake runs the handshake if it has not run; it is safe to call more
// than once.
func (c *Conn) Handshake() error {
	c.hsOnce.Do(func() {
		c.Conn.SetDeadline(time.Now().Add(HandshakeTimeout))
		if c.client {
			c.hsErr = c.clientHandshake()
		} else {
			c.hsErr = c.serverHandshake()
		}
		c.Conn.SetDeadline(time.Time{})
	})
	return c.hsErr
}

func newState(initiator bool, psk []byte) (*noise.HandshakeState, error) {
	return noise.NewHandshakeState(noise.Config{CipherSuite: suite, Pattern: noise.HandshakeNN, Initiator: initiator,
		Prologue: []byte(prologue), PresharedKey: psk, PresharedKeyPlacement: 0})
}

func (c *Conn) clientHandshake() error {
	hs, err := newState(true, c.psks[0])
	if err != nil {
		return err
	}
	msg, _, _, err := hs.WriteMessage(nil, hello)
	if err != nil {
		return err
	}
	if err := writeFrame(c.Conn, msg); err != nil {
		return fmt.Errorf("secure channel: %w", err)
	}
	reply, err := readFrame(c.Conn, nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrNoSecret // the server closed on our first message
		}
		return fmt.Errorf("secure channel: %w", err)
	}
	payload, cs1, cs2, err := hs.ReadMessage(nil, reply)
	if err != nil || string(payload) != string(hello) {
		return ErrNoSecret
	}
	c.wr, c.rd = cs1, cs2
	return nil
}

func (c *Conn) serverHandshake() error {
	first, err := readFrame(c.Conn, nil)
	if err != nil {
		return fmt.Errorf("secure channel: %w", err)
	}
	for _, psk := range c.psks {
		hs, err := newState(false, psk)
		if err != nil {
			return err
		}
		payload, _, _, err := hs.ReadMessage(nil, first)
		if err != nil || string(payload) != string(hello) {
			continue
		}
		msg, cs1, cs2, err := hs.WriteMessage(nil, hello)
		if err != nil {
			return err
		}
		if err := writeFrame(c.Conn, msg); err != nil {
			return fmt.Errorf("secure channel: %w", err)
		}
		c.rd, c.wr = cs1, cs2
		return nil
	}
	return ErrNoSecret
}

// Read reads decrypted bytes.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.rbuf) == 0 {
		f, err := readFrame(c.Conn, c.rframe[:0])
		if err != nil {
			return 0, err
		}
		c.rframe = f
		out, err := c.rd.Decrypt(f[:0:0], nil, f)
		if err != nil {
			return 0, errors.New("secure channel: a frame failed authentication")
		}
		c.rbuf = out
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

// Write encrypts and sends p in frames.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	const chunk = maxFrame - 16 // the AEAD tag
	n := 0
	buf := make([]byte, 0, 2+maxFrame)
	for n < len(p) {
		end := min(len(p), n+chunk)
		buf = buf[:2]
		out, err := c.wr.Encrypt(buf, nil, p[n:end])
		if err != nil {
			return n, err
		}
		binary.BigEndian.PutUint16(out[:2], uint16(len(out)-2))
		if _, err := c.Conn.Write(out); err != nil {
			return n, err
		}
		n = end
	}
	return n, nil
}

// writeFrame sends one length-prefixed frame.
func writeFrame(w io.Writer, b []byte) error {
	if len(b) > maxFrame {
		return errors.New("frame too long")
	}
	out := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	copy(out[2:], b)
	_, err := w.Write(out)
	return err
}

// readFrame reads one length-prefixed frame into buf (at most 64 KiB).
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// DialFunc dials a stream connection.
type DialFunc = func(ctx context.Context, addr string) (net.Conn, error)

// Dialer wraps dial so that every connection is a Client channel with the
// key key() returns at dial time; the handshake completes before the
// connection is returned.
func Dialer(dial DialFunc, key func() []byte) DialFunc {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		sc := Client(c, key())
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		if err := sc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		return sc, nil
	}
}

// Listener wraps l so that every accepted connection is a Server channel
// accepting the keys keys() returns at accept time. The handshake runs on
// the connection's first read or write, so Accept never waits for a peer.
func Listener(l net.Listener, keys func() [][]byte) net.Listener {
	return &listener{Listener: l, keys: keys}
}

type listener struct {
	net.Listener
	keys func() [][]byte
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.keys()), nil
}
