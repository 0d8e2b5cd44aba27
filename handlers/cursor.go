package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

// The cursor of one handler is what the handler has been told: for every
// visible path its glob matches, a digest of the node as of the last change
// the handler ran for; and the grant and revoke entries (at matched paths)
// it was told about. It is kept as a snapshot file plus a journal of the
// batches run since, so recording a batch costs a few appended lines rather
// than a rewrite of every matched path.
//
//	STATEDIR/handlers/KEY.cursor   snapshot: a header line (with its
//	                               generation), then one JSON object per
//	                               path or annotation
//	STATEDIR/handlers/KEY.journal  a header line naming the snapshot
//	                               generation it extends, then one JSON
//	                               object per change since
//
// A new snapshot (generation G+1) is written to a temporary file, fsynced and
// renamed over the old one; then a fresh journal for G+1 replaces the old.
// A journal whose generation is not the snapshot's is ignored, so a crash
// between the two steps loses nothing. A torn last journal line (a crash
// mid-append) is ignored: that batch fires again.
//
// Durability is off the handler's path: record applies a batch in memory
// and queues its lines; flush (the handler's syncer goroutine) appends and
// fsyncs them, so a slow fsync never delays the next script.

const (
	cursorFormat  = "basefs-handler-cursor"
	cursorVersion = 1
	cursorSubdir  = "handlers"
)

// digest identifies a visible node's state: everything the view compares to
// decide that a path changed (view.sameNode), so equal digests mean no
// change to report.
type digest [16]byte

func nodeDigest(n *view.Node) digest {
	h := sha256.New()
	var buf [8]byte
	h.Write([]byte{byte(n.Kind)})
	binary.BigEndian.PutUint32(buf[:4], n.Mode)
	h.Write(buf[:4])
	binary.BigEndian.PutUint64(buf[:], uint64(n.MTime))
	h.Write(buf[:])
	binary.BigEndian.PutUint64(buf[:], n.Size)
	h.Write(buf[:])
	h.Write(n.ContentHash[:])
	h.Write(n.Head[:])
	for _, s := range []string{n.Target, n.Primary} {
		binary.BigEndian.PutUint32(buf[:4], uint32(len(s)))
		h.Write(buf[:4])
		h.Write([]byte(s))
	}
	var d digest
	copy(d[:], h.Sum(nil))
	return d
}

func kindChar(k view.Kind) string {
	switch k {
	case view.KindDir:
		return "d"
	case view.KindSymlink:
		return "l"
	}
	return "f"
}

type cursorPath struct {
	d    digest
	kind string // "f", "d" or "l"
}

type cursor struct {
	dir, key   string
	spec       Spec
	compactMin int // journal lines before a snapshot rewrite, at least

	mu      sync.Mutex
	paths   map[string]cursorPath
	annots  map[log.Hash]bool
	pending []cursorOp // recorded, not yet in the journal
	gen     uint64     // the snapshot's generation
	jlines  int        // lines in the journal
	jok     bool       // the journal file belongs to the snapshot
	journal *os.File   // the open journal (flush and save only)
}

// cursorRecord is one line of a snapshot or journal.
type cursorRecord struct {
	// Header (first line only).
	Format  string `json:"format,omitempty"`
	Version int    `json:"version,omitempty"`
	Gen     uint64 `json:"gen,omitempty"`
	Glob    string `json:"glob,omitempty"`
	Script  string `json:"script,omitempty"`
	// A path: set (D, K) or deleted (X).
	P string `json:"p,omitempty"`
	D string `json:"d,omitempty"`
	K string `json:"k,omitempty"`
	X bool   `json:"x,omitempty"`
	// An annotation told.
	A string `json:"a,omitempty"`
}

func (c *cursor) snapPath() string    { return filepath.Join(c.dir, c.key+".cursor") }
func (c *cursor) journalPath() string { return filepath.Join(c.dir, c.key+".journal") }

func newCursor(dir, key string, spec Spec) *cursor {
	return &cursor{dir: dir, key: key, spec: spec, paths: map[string]cursorPath{},
		annots: map[log.Hash]bool{}, compactMin: 4096}
}

// load reads the snapshot and the journal. It returns false when there is
// no cursor yet; an error when one exists but cannot be read.
func (c *cursor) load() (bool, error) {
	data, err := os.ReadFile(c.snapPath())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	lines := bytes.Split(data, []byte("\n"))
	var hdr cursorRecord
	if err := json.Unmarshal(lines[0], &hdr); err != nil || hdr.Format != cursorFormat {
		return false, fmt.Errorf("%s: not a handler cursor", c.snapPath())
	}
	if hdr.Version != cursorVersion {
		return false, fmt.Errorf("%s: cursor version %d, this basefs reads version %d", c.snapPath(), hdr.Version, cursorVersion)
	}
	c.gen = hdr.Gen
	for i, ln := range lines[1:] {
		if len(ln) == 0 {
			continue
		}
		if err := c.applyLine(ln); err != nil {
			return false, fmt.Errorf("%s line %d: %v", c.snapPath(), i+2, err)
		}
	}
	jdata, err := os.ReadFile(c.journalPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	jl := bytes.Split(jdata, []byte("\n"))
	var jh cursorRecord
	if json.Unmarshal(jl[0], &jh) != nil || jh.Format != cursorFormat || jh.Gen != c.gen {
		return true, nil // no journal, or one that an interrupted snapshot made stale
	}
	c.jok = true
	for i, ln := range jl[1:] {
		if len(ln) == 0 {
			continue
		}
		if err := c.applyLine(ln); err != nil {
			if i == len(jl)-2 {
				break // torn last line: that batch was not recorded
			}
			return false, fmt.Errorf("%s line %d: %v", c.journalPath(), i+2, err)
		}
		c.jlines++
	}
	return true, nil
}

func (c *cursor) applyLine(ln []byte) error {
	var r cursorRecord
	if err := json.Unmarshal(ln, &r); err != nil {
		return err
	}
	switch {
	case r.A != "":
		h, err := log.ParseHash(r.A)
		if err != nil {
			return err
		}
		c.annots[h] = true
	case r.P != "" && r.X:
		delete(c.paths, r.P)
	case r.P != "":
		var d digest
		if b, err := hex.DecodeString(r.D); err != nil || len(b) != len(d) {
			return fmt.Errorf("bad digest %q", r.D)
		} else {
			copy(d[:], b)
		}
		c.paths[r.P] = cursorPath{d: d, kind: r.K}
	default:
		return fmt.Errorf("empty record")
	}
	return nil
}

// cursorOp is one change to a cursor.
type cursorOp struct {
	path  string
	del   bool
	cp    cursorPath
	annot log.Hash
}

func (op cursorOp) record() cursorRecord {
	switch {
	case !op.annot.IsZero():
		return cursorRecord{A: op.annot.String()}
	case op.del:
		return cursorRecord{P: op.path, X: true}
	}
	return cursorRecord{P: op.path, D: hex.EncodeToString(op.cp.d[:]), K: op.cp.kind}
}

func (c *cursor) apply(op cursorOp) {
	switch {
	case !op.annot.IsZero():
		c.annots[op.annot] = true
	case op.del:
		delete(c.paths, op.path)
	default:
		c.paths[op.path] = op.cp
	}
}

// record applies a batch's ops and queues them for the journal (flush
// makes them durable).
func (c *cursor) record(ops []cursorOp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, op := range ops {
		c.apply(op)
	}
	c.pending = append(c.pending, ops...)
}

// flush appends the queued ops to the journal and fsyncs it; when the
// journal has grown past the snapshot, it writes a new snapshot instead.
func (c *cursor) flush() error {
	c.mu.Lock()
	ops := c.pending
	c.pending = nil
	compact := c.jlines+len(ops) > max(c.compactMin, len(c.paths)+len(c.annots))
	c.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	if compact || !c.jok {
		return c.save()
	}
	if c.journal == nil {
		f, err := os.OpenFile(c.journalPath(), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		c.journal = f
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, op := range ops {
		enc.Encode(op.record())
	}
	if _, err := c.journal.Write(buf.Bytes()); err != nil {
		return err
	}
	c.jlines += len(ops)
	return c.journal.Sync()
}

// save writes the whole cursor as a new snapshot generation and starts an
// empty journal for it. Only one goroutine flushes or saves at a time.
func (c *cursor) save() error {
	c.mu.Lock()
	gen := c.gen + 1
	var snap bytes.Buffer
	enc := json.NewEncoder(&snap)
	enc.Encode(cursorRecord{Format: cursorFormat, Version: cursorVersion, Gen: gen, Glob: c.spec.Glob, Script: c.spec.Script})
	paths := make([]string, 0, len(c.paths))
	for p := range c.paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		cp := c.paths[p]
		enc.Encode(cursorRecord{P: p, D: hex.EncodeToString(cp.d[:]), K: cp.kind})
	}
	annots := make([]string, 0, len(c.annots))
	for h := range c.annots {
		annots = append(annots, h.String())
	}
	sort.Strings(annots)
	for _, a := range annots {
		enc.Encode(cursorRecord{A: a})
	}
	c.pending = nil // the snapshot holds them
	c.mu.Unlock()

	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	if err := log.WriteFileAtomic(c.snapPath(), snap.Bytes(), 0o600); err != nil {
		return err
	}
	if c.journal != nil {
		c.journal.Close()
		c.journal = nil
	}
	hdr, _ := json.Marshal(cursorRecord{Format: cursorFormat, Version: cursorVersion, Gen: gen})
	if err := log.WriteFileAtomic(c.journalPath(), append(hdr, '\n'), 0o600); err != nil {
		return err
	}
	c.gen, c.jlines, c.jok = gen, 0, true
	return nil
}

func (c *cursor) close() {
	if c.journal != nil {
		c.journal.Close()
		c.journal = nil
	}
}
