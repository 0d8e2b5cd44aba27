package node

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// The control socket: a unix socket (mode 0600) in the filesystem's
// directory through which the CLI's commands act on a running node. One JSON
// request per line, one JSON response per line, any number per connection.
// Signing keys travel as their 32-byte seed: the socket is reachable only by
// its owner, who can read the key file anyway.

// SocketName is the control socket's file name in the filesystem directory.
const SocketName = "node.sock"

// maxRequest bounds one request line (a file write carries its content).
const maxRequest = 2*log.MaxFileSize + 1<<20

type request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Kind    replica.Kind `json:"kind"`
	Message string       `json:"message"`
}

func (e *rpcError) Error() string { return e.Message }

// remoteError is an error returned by the node, with the replica's kind kept
// so callers can tell permission from absence.
func remoteError(e *rpcError) error { return replica.NewError(e.Kind, e.Message) }

// Params of the methods. Keys are ed25519 seeds.
type (
	pathParams  struct{ Path string }
	writeParams struct {
		Key  []byte
		Path string
		Data []byte
		Opts replica.WriteOptions
	}
	mkdirParams struct {
		Key              []byte
		Path             string
		Mode             uint32
		Parents, Sync    bool
		Recursive        bool
		From, To, Target string
		ModeSet          *uint32
		MTime            int64
	}
	grantParams struct {
		Key  []byte
		Path string
		Pub  []byte
	}
	revokeParams struct {
		Key     []byte
		Path    string
		Revoked [32]byte
	}
	revertParams struct {
		Key  []byte
		Path string
		To   log.Hash
	}
	resolveParams struct{ Path, Prefix string }
	keyParams     struct {
		Op  string // install, use, remove, list
		Key string // base64
	}
)

// ControlServer serves the control socket for one node. It is safe for
// concurrent use; each connection is served on its own goroutine.
type ControlServer struct {
	n      *Node
	l      net.Listener
	path   string
	logger *slog.Logger
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// listenControl creates the socket at path, replacing a stale one.
func listenControl(n *Node, path string, logger *slog.Logger) (*ControlServer, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("a node is already serving %s", path)
	}
	os.Remove(path)
	old := syscallUmask(0o177)
	l, err := net.Listen("unix", path)
	syscallUmask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	s := &ControlServer{n: n, l: l, path: path, logger: logger, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *ControlServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes open connections and removes the socket.
func (s *ControlServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.l.Close()
	s.wg.Wait()
	os.Remove(s.path)
	return err
}

func (s *ControlServer) serveConn(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	for {
		line, err := readLine(r, maxRequest)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.logger.Debug("control connection", "err", err)
			}
			return
		}
		var req request
		var resp response
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = &rpcError{Kind: replica.Invalid, Message: "malformed control request"}
		} else {
			result, err := s.dispatch(req)
			if err != nil {
				resp.Error = &rpcError{Kind: replica.KindOf(err), Message: err.Error()}
			} else if resp.Result, err = json.Marshal(result); err != nil {
				resp.Error = &rpcError{Kind: replica.Other, Message: err.Error()}
			}
		}
		b, _ := json.Marshal(resp)
		w.Write(b)
		w.WriteByte('\n')
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// readLine reads one newline-terminated line of at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("control request longer than %d bytes", max)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

func seedKey(seed []byte) (ed25519.PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, &replica.Error{Kind: replica.Invalid, Detail: "control request without a valid signing key"}
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func decode[T any](raw json.RawMessage) (T, error) {
	var p T
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, &replica.Error{Kind: replica.Invalid, Detail: "malformed control request parameters"}
	}
	return p, nil
}

func (s *ControlServer) dispatch(req request) (any, error) {
	r := s.n.Replica()
	switch req.Method {
	case "Stat", "List", "ReadFile", "Log", "Conflicts", "Readlink":
		p, err := decode[pathParams](req.Params)
		if err != nil {
			return nil, err
		}
		switch req.Method {
		case "Stat":
			return r.Stat(p.Path)
		case "List":
			return r.List(p.Path)
		case "ReadFile":
			return r.ReadFile(p.Path)
		case "Log":
			return r.Log(p.Path)
		case "Readlink":
			return r.Readlink(p.Path)
		default:
			return r.Conflicts(p.Path)
		}
	case "WriteFile":
		p, err := decode[writeParams](req.Params)
		if err != nil {
			return nil, err
		}
		k, err := seedKey(p.Key)
		if err != nil {
			return nil, err
		}
		e, err := r.WriteFile(k, p.Path, p.Data, p.Opts)
		if err != nil {
			return nil, err
		}
		return e.Hash(), nil
	case "Mkdir", "Remove", "Rename", "Symlink", "Link", "SetAttr":
		p, err := decode[mkdirParams](req.Params)
		if err != nil {
			return nil, err
		}
		k, err := seedKey(p.Key)
		if err != nil {
			return nil, err
		}
		switch req.Method {
		case "Mkdir":
			return nil, r.Mkdir(k, p.Path, p.Mode, p.Parents, p.Sync)
		case "Remove":
			return nil, r.Remove(k, p.Path, p.Recursive, p.Sync)
		case "Rename":
			return nil, r.Rename(k, p.From, p.To, p.Sync)
		case "Symlink":
			return nil, r.Symlink(k, p.Target, p.Path, p.Sync)
		case "Link":
			return nil, r.Link(k, p.From, p.Path, p.Sync)
		default:
			return nil, r.SetAttr(k, p.Path, p.ModeSet, p.MTime, p.Sync)
		}
	case "Grant":
		p, err := decode[grantParams](req.Params)
		if err != nil {
			return nil, err
		}
		k, err := seedKey(p.Key)
		if err != nil {
			return nil, err
		}
		e, err := r.Grant(k, p.Path, ed25519.PublicKey(p.Pub), true)
		if err != nil {
			return nil, err
		}
		return e.Hash(), nil
	case "ResolveKey":
		p, err := decode[resolveParams](req.Params)
		if err != nil {
			return nil, err
		}
		return r.ResolveKey(p.Prefix)
	case "Revoke":
		p, err := decode[revokeParams](req.Params)
		if err != nil {
			return nil, err
		}
		k, err := seedKey(p.Key)
		if err != nil {
			return nil, err
		}
		e, err := r.Revoke(k, p.Path, p.Revoked, true)
		if err != nil {
			return nil, err
		}
		return e.Hash(), nil
	case "ResolveEntry":
		p, err := decode[resolveParams](req.Params)
		if err != nil {
			return nil, err
		}
		e, err := r.ResolveEntry(p.Path, p.Prefix)
		if err != nil {
			return nil, err
		}
		return e.Hash(), nil
	case "Revert":
		p, err := decode[revertParams](req.Params)
		if err != nil {
			return nil, err
		}
		k, err := seedKey(p.Key)
		if err != nil {
			return nil, err
		}
		return r.Revert(k, p.Path, p.To, true)
	case "Status":
		return s.n.Status(), nil
	case "GossipKey":
		p, err := decode[keyParams](req.Params)
		if err != nil {
			return nil, err
		}
		return s.n.GossipKey(p.Op, p.Key)
	case "Verify":
		return r.Verify(), nil
	}
	return nil, &replica.Error{Kind: replica.Invalid, Detail: fmt.Sprintf("unknown control method %q", req.Method)}
}

// Client talks to a running node through its control socket. It is safe for
// concurrent use (requests are serialized on one connection).
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

// DialControl connects to the control socket in the filesystem directory
// dir. It fails quickly when no node is running there.
func DialControl(dir string) (*Client, error) {
	c, err := net.DialTimeout("unix", filepath.Join(dir, SocketName), 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &Client{conn: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(ctx context.Context, method string, params, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(request{Method: method, Params: p})
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("talking to the running node: %w", err)
	}
	line, err := readLine(c.r, maxRequest)
	if err != nil {
		return fmt.Errorf("the running node did not answer: %w", err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("the running node sent a malformed answer: %w", err)
	}
	if resp.Error != nil {
		return remoteError(resp.Error)
	}
	if result != nil && resp.Result != nil {
		return json.Unmarshal(resp.Result, result)
	}
	return nil
}

func (c *Client) do(method string, params, result any) error {
	return c.call(context.Background(), method, params, result)
}

// The methods below mirror the replica's and the CLI's backend interface.

// Stat returns the node at path.
func (c *Client) Stat(path string) (view.Node, error) {
	var n view.Node
	return n, c.do("Stat", pathParams{path}, &n)
}

// List returns a directory's children.
func (c *Client) List(path string) ([]view.Node, error) {
	var ns []view.Node
	return ns, c.do("List", pathParams{path}, &ns)
}

// ReadFile returns a file's content.
func (c *Client) ReadFile(path string) ([]byte, error) {
	var b []byte
	return b, c.do("ReadFile", pathParams{path}, &b)
}

// Readlink returns a symbolic link's text.
func (c *Client) Readlink(path string) (string, error) {
	var s string
	return s, c.do("Readlink", pathParams{path}, &s)
}

// WriteFile writes a file through the node.
func (c *Client) WriteFile(key ed25519.PrivateKey, path string, data []byte, o replica.WriteOptions) (log.Hash, error) {
	var h log.Hash
	return h, c.do("WriteFile", writeParams{Key: key.Seed(), Path: path, Data: data, Opts: o}, &h)
}

// Mkdir creates a directory through the node.
func (c *Client) Mkdir(key ed25519.PrivateKey, path string, mode uint32, parents, sync bool) error {
	return c.do("Mkdir", mkdirParams{Key: key.Seed(), Path: path, Mode: mode, Parents: parents, Sync: sync}, nil)
}

// Remove deletes through the node.
func (c *Client) Remove(key ed25519.PrivateKey, path string, recursive, sync bool) error {
	return c.do("Remove", mkdirParams{Key: key.Seed(), Path: path, Recursive: recursive, Sync: sync}, nil)
}

// Rename moves through the node.
func (c *Client) Rename(key ed25519.PrivateKey, from, to string, sync bool) error {
	return c.do("Rename", mkdirParams{Key: key.Seed(), From: from, To: to, Sync: sync}, nil)
}

// Symlink makes a symbolic link through the node.
func (c *Client) Symlink(key ed25519.PrivateKey, target, path string, sync bool) error {
	return c.do("Symlink", mkdirParams{Key: key.Seed(), Target: target, Path: path, Sync: sync}, nil)
}

// Link makes a hard link through the node.
func (c *Client) Link(key ed25519.PrivateKey, existing, path string, sync bool) error {
	return c.do("Link", mkdirParams{Key: key.Seed(), From: existing, Path: path, Sync: sync}, nil)
}

// SetAttr changes mode or mtime through the node.
func (c *Client) SetAttr(key ed25519.PrivateKey, path string, mode *uint32, mtime int64, sync bool) error {
	return c.do("SetAttr", mkdirParams{Key: key.Seed(), Path: path, ModeSet: mode, MTime: mtime, Sync: sync}, nil)
}

// Grant grants through the node.
func (c *Client) Grant(key ed25519.PrivateKey, path string, pub ed25519.PublicKey) error {
	return c.do("Grant", grantParams{Key: key.Seed(), Path: path, Pub: pub}, nil)
}

// ResolveKey resolves a fingerprint prefix.
func (c *Client) ResolveKey(prefix string) ([32]byte, error) {
	var k [32]byte
	return k, c.do("ResolveKey", resolveParams{Prefix: prefix}, &k)
}

// Revoke revokes through the node.
func (c *Client) Revoke(key ed25519.PrivateKey, path string, revoked [32]byte) error {
	return c.do("Revoke", revokeParams{Key: key.Seed(), Path: path, Revoked: revoked}, nil)
}

// Log returns the history of path and below.
func (c *Client) Log(path string) ([]replica.LogRecord, error) {
	var recs []replica.LogRecord
	return recs, c.do("Log", pathParams{path}, &recs)
}

// ResolveEntry resolves an entry hash prefix.
func (c *Client) ResolveEntry(path, prefix string) (log.Hash, error) {
	var h log.Hash
	return h, c.do("ResolveEntry", resolveParams{Path: path, Prefix: prefix}, &h)
}

// Revert reverts through the node.
func (c *Client) Revert(key ed25519.PrivateKey, path string, to log.Hash) (int, error) {
	var n int
	return n, c.do("Revert", revertParams{Key: key.Seed(), Path: path, To: to}, &n)
}

// Conflicts returns lost branches and hidden paths.
func (c *Client) Conflicts(path string) (replica.ConflictReport, error) {
	var rep replica.ConflictReport
	return rep, c.do("Conflicts", pathParams{path}, &rep)
}

// Status returns the node's status.
func (c *Client) Status() (Status, error) {
	var st Status
	return st, c.do("Status", nil, &st)
}

// Verify runs verify in the node.
func (c *Client) Verify() (replica.VerifyReport, error) {
	var rep replica.VerifyReport
	return rep, c.do("Verify", nil, &rep)
}

// GossipKey installs, uses, removes or lists gossip encryption keys
// cluster-wide through the running node.
func (c *Client) GossipKey(op, key string) (KeyReport, error) {
	var rep KeyReport
	return rep, c.do("GossipKey", keyParams{Op: op, Key: key}, &rep)
}
