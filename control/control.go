// Package control is the control socket through which the command line
// acts on a running node: a unix socket (mode 0600) in the filesystem's
// directory, one JSON request per line and one JSON response per line, any
// number per connection. The server calls an ops.API (the node's replica
// with the node); Client implements ops.API on the other side. Both sides'
// per-operation code is generated from ops/api.go (api_gen.go).
package control

import (
	"bufio"
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
	"github.com/basefs/basefs/ops"
	"github.com/basefs/basefs/replica"
)

//go:generate go run ../internal/opsgen/cmd/opsgen

// SocketName is the control socket's file name in the filesystem directory.
const SocketName = "node.sock"

// maxRequest bounds one request or response line (a file write carries its
// content, base64-encoded).
const maxRequest int64 = 2*log.MaxFileSize + 1<<20

type request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *rpcError       `json:"error,omitempty"`
}

// rpcError is an error as it crosses the socket: its kind survives, so the
// caller can tell permission from absence.
type rpcError struct {
	Kind    replica.Kind `json:"kind"`
	Message string       `json:"message"`
}

// Server serves the control socket of one node. It is safe for concurrent
// use; each connection is served on its own goroutine.
type Server struct {
	api    ops.API
	l      net.Listener
	path   string
	logger *slog.Logger
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// Listen creates the socket in the filesystem directory dir, replacing a
// stale one, and serves api on it until Close.
func Listen(dir string, api ops.API, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(dir, SocketName)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("a node is already serving %s", path)
	}
	os.Remove(path)
	l, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	s := &Server{api: api, l: l, path: path, logger: logger, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *Server) acceptLoop() {
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
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes open connections, waits for their
// requests to finish and removes the socket.
func (s *Server) Close() error {
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

func (s *Server) serveConn(c net.Conn) {
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
		b, _ := json.Marshal(s.handle(line))
		w.Write(b)
		w.WriteByte('\n')
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// handle answers one request line.
func (s *Server) handle(line []byte) (resp response) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return response{Error: &rpcError{Kind: replica.Invalid, Message: "malformed control request"}}
	}
	m, ok := methods[req.Method]
	if !ok {
		return response{Error: &rpcError{Kind: replica.Invalid, Message: fmt.Sprintf("unknown control method %q", req.Method)}}
	}
	result, err := m(s.api, req.Params)
	if err == nil {
		resp.Result, err = json.Marshal(result)
	}
	if err != nil {
		return response{Error: &rpcError{Kind: replica.KindOf(err), Message: err.Error()}}
	}
	return resp
}

// readLine reads one newline-terminated line of at most max bytes.
func readLine(r *bufio.Reader, max int64) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if int64(len(line)) > max {
			return nil, fmt.Errorf("control message longer than %d bytes", max)
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

func decode[T any](raw json.RawMessage) (T, error) {
	var p T
	if len(raw) == 0 || string(raw) == "null" {
		return p, nil
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, replica.NewError(replica.Invalid, "malformed control request parameters")
	}
	return p, nil
}

// Client talks to a running node through its control socket; it
// implements ops.API. It is safe for concurrent use (requests are
// serialized on one connection).
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

var _ ops.API = (*Client)(nil)

// Dial connects to the control socket in the filesystem directory dir. It
// fails quickly when no node is running there.
func Dial(dir string) (*Client, error) {
	c, err := net.DialTimeout("unix", filepath.Join(dir, SocketName), 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &Client{conn: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(method string, params, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(request{Method: method, Params: p})
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
		return replica.NewError(resp.Error.Kind, resp.Error.Message)
	}
	if result != nil && resp.Result != nil {
		return json.Unmarshal(resp.Result, result)
	}
	return nil
}

// listenPrivate listens on a unix socket at path and makes it mode 0600.
// The filesystem directory is mode 0700, so nobody else can reach the
// socket in the moment before the chmod either.
func listenPrivate(path string) (net.Listener, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
