package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// Defaults for Config.
const (
	DefaultQuiet       = 200 * time.Millisecond
	DefaultMaxDelay    = 2 * time.Second
	DefaultTimeout     = 60 * time.Second
	DefaultConcurrency = 4
	DefaultKillGrace   = 2 * time.Second
	DefaultMaxPending  = 10000
)

// recheckEvery is how often changes held for missing content are checked
// again even when no new blocks arrived (a safety net: block arrivals are
// the normal trigger).
const recheckEvery = time.Second

// Config configures a Runner. Zero durations and counts take the defaults.
type Config struct {
	Specs       []Spec
	Name        string        // BASEFS_NAME
	Mount       string        // BASEFS_MOUNT ("" when not mounted)
	StateDir    string        // where cursors live (the filesystem directory); "": the replica's directory
	Initial     bool          // --handler-initial: fire once for the current state at start
	Quiet       time.Duration // a batch runs once no change came for this long; default 200 ms, < 0: none
	MaxDelay    time.Duration // … or this long after its first change; default 2 s
	Timeout     time.Duration // a script running longer is killed; default 60 s
	Concurrency int           // scripts running at once, all handlers together; default 4
	KillGrace   time.Duration // SIGTERM to SIGKILL on timeout; default 2 s
	MaxPending  int           // changes one handler queues before merging per path; default 10000
	Logger      *slog.Logger

	onStart func(h int, batch []pending) // test hook: a script was started
}

// Stats counts what the runner did.
type Stats struct {
	Runs     uint64 // scripts started
	Failures uint64 // scripts that exited non-zero or could not start
	Timeouts uint64 // scripts killed at their timeout
	Merged   uint64 // changes folded into a newer change of the same path (queue overflow)
	Running  int    // scripts running now
	Held     int    // changes waiting for their content to be complete here
	Pending  int    // changes not yet handed to a script (Held included; before matching, all changes)
}

// change is one change as a handler sees it.
type change struct {
	event, path, oldPath string
	entry                log.Hash
	author               [32]byte
	node                 *view.Node // nil when the path is gone
	oldGone              bool       // rename: the old path is not visible any more
	initial              bool       // from --handler-initial
}

func fromView(c view.Change) change {
	return change{event: c.Event, path: c.Path, oldPath: c.OldPath, entry: c.Entry, author: c.Author, node: c.Node}
}

func (c *change) annotation() bool { return c.event == "grant" || c.event == "revoke" }

// item is a change on its way to the handlers it matches, held until the
// content it shows is complete on this node.
type item struct {
	c        change
	hs       []int // indices of the handlers it goes to
	complete bool
	waitFor  []log.Hash // blocks known missing (empty: unknown, recheck on any arrival)
}

// Runner runs the handlers of one replica. See the package comment.
type Runner struct {
	r       *replica.Replica
	cfg     Config
	log     *slog.Logger
	hs      []*handler
	sem     chan struct{}
	workdir string
	unsub   func()

	inMu  sync.Mutex
	inbox []replica.Update
	inSig chan struct{}

	// Owned by the dispatcher goroutine.
	held      []*item
	startN    int               // store position of the start-up snapshot
	filtering bool              // updates may still be ones the snapshot reflects
	judged    map[log.Hash]bool // grants and revokes the snapshot judged

	stop     chan struct{}
	stopOnce sync.Once
	dispDone chan struct{}
	workers  sync.WaitGroup
	syncStop chan struct{}
	syncers  sync.WaitGroup
	stopErr  error

	runs, failures, timeouts, merged atomic.Uint64
	running, heldN                   atomic.Int64
}

// Start checks the handlers' scripts, loads their cursors, subscribes to the
// replica and queues the changes each handler has not been told about (see
// the package comment); scripts run from then on in the background. Stop it
// before closing the replica.
func Start(r *replica.Replica, cfg Config) (*Runner, error) {
	if cfg.Quiet == 0 {
		cfg.Quiet = DefaultQuiet
	} else if cfg.Quiet < 0 {
		cfg.Quiet = 0
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Name == "" {
		cfg.Name = r.Name()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = r.Dir()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rn := &Runner{
		r: r, cfg: cfg, log: logger,
		sem:      make(chan struct{}, cfg.Concurrency),
		workdir:  cfg.Mount,
		inSig:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
		dispDone: make(chan struct{}),
		syncStop: make(chan struct{}),
	}
	if rn.workdir == "" {
		rn.workdir = r.Dir()
	}
	curDir := filepath.Join(cfg.StateDir, cursorSubdir)
	if len(cfg.Specs) > 0 {
		if err := os.MkdirAll(curDir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create the handler state directory: %v", err)
		}
	}
	seen := map[string]bool{}
	var found []bool
	for i, s := range cfg.Specs {
		glob := NormalizeGlob(s.Glob)
		m, err := compileGlob(glob)
		if err != nil {
			return nil, fmt.Errorf("handler %s: %v", s, err)
		}
		script, err := resolveScript(s.Script)
		if err != nil {
			return nil, err
		}
		spec := Spec{Glob: glob, Script: script}
		sum := sha256.Sum256([]byte(spec.Glob + "=" + spec.Script))
		key := hex.EncodeToString(sum[:8])
		if seen[key] {
			return nil, fmt.Errorf("handler %s is given twice", s)
		}
		seen[key] = true
		cur := newCursor(curDir, key, spec)
		ok, err := cur.load()
		h := &handler{idx: i, spec: spec, m: m, cur: cur, notify: make(chan struct{}, 1),
			curKick: make(chan struct{}, 1), compactAt: cfg.MaxPending}
		if err != nil {
			// What it was told is unknown: tell it everything once.
			logger.Warn("handler cursor unreadable; the handler fires once for the whole current state",
				"handler", spec.String(), "err", err)
			cur = newCursor(curDir, key, spec)
			h.cur = cur
			h.forceInitial = true
		}
		found = append(found, ok)
		rn.hs = append(rn.hs, h)
	}
	if len(rn.hs) == 0 {
		rn.unsub = func() {}
		close(rn.dispDone)
		return rn, nil
	}
	rn.unsub = r.Subscribe(rn.listen)
	startup, err := rn.startup(found)
	if err != nil {
		rn.unsub()
		return nil, err
	}
	// Queued before Start returns, so Stats counts them from the start.
	rn.admit(startup, nil, false)
	go rn.dispatch()
	for _, h := range rn.hs {
		rn.workers.Add(1)
		go rn.work(h)
		rn.syncers.Add(1)
		go rn.syncCursor(h)
	}
	return rn, nil
}

// resolveScript returns the absolute path of an executable script.
func resolveScript(s string) (string, error) {
	p := s
	if !strings.Contains(s, "/") {
		if _, err := os.Stat(s); err != nil {
			if lp, err := exec.LookPath(s); err == nil {
				p = lp
			}
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("handler script %s: %v", s, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("handler script %s not found", s)
	}
	if st.IsDir() || !executable(abs) {
		return "", fmt.Errorf("handler script %s is not executable", s)
	}
	return abs, nil
}

// listen is the replica's listener: it only queues (it runs on the writer's
// goroutine, and must neither block nor call back into the replica).
func (rn *Runner) listen(u replica.Update) {
	rn.inMu.Lock()
	rn.inbox = append(rn.inbox, u)
	rn.inMu.Unlock()
	select {
	case rn.inSig <- struct{}{}:
	default:
	}
}

// startup compares each handler's cursor with the current tree and returns
// the changes to fire. It must know exactly which updates the snapshot
// reflects: those the listener hears that were applied before it (their
// changes are in the differences already) must not fire again, and the
// rest must. The replica gives the snapshot's store position (ViewAt) and
// every update's (Update.Pos): an update at or below the snapshot's is in
// it.
func (rn *Runner) startup(found []bool) ([]*item, error) {
	var snaps []*hsnap
	var cands []*log.Entry
	rn.r.ScanEntries(0, func(e *log.Entry) bool {
		if e.Action == log.ActGrant || e.Action == log.ActRevoke {
			for _, h := range rn.hs {
				if h.m.match(e.Path) {
					cands = append(cands, e)
					break
				}
			}
		}
		return true
	})
	rn.r.ViewAt(func(v *view.View, pos int) {
		rn.startN = pos
		snaps = rn.snapshot(v, cands)
	})
	// Grants and revokes stored after the candidates were listed were not
	// judged by the snapshot: their changes, if any, fire live.
	rn.judged = map[log.Hash]bool{}
	for _, e := range cands {
		rn.judged[e.Hash()] = true
	}
	rn.filtering = true
	rn.log.Debug("handlers: start-up snapshot", "position", rn.startN)
	return rn.diff(snaps, found)
}

// hsnap is one handler's view of the tree at start.
type hsnap struct {
	nodes   []view.Node         // matched visible paths, in walk order
	renamed map[string]string   // path → old path, for nodes whose head is a rename
	gone    map[string]goneHead // cursor paths no longer visible: their heads
	annots  []*log.Entry        // counting grants and revokes at matched paths
	visible map[string]bool     // every path any handler matches that is visible
}

type goneHead struct {
	entry  log.Hash
	author [32]byte
}

func (rn *Runner) snapshot(v *view.View, cands []*log.Entry) []*hsnap {
	snaps := make([]*hsnap, len(rn.hs))
	for i := range snaps {
		snaps[i] = &hsnap{renamed: map[string]string{}, gone: map[string]goneHead{}}
	}
	visible := map[string]bool{}
	for _, s := range snaps {
		s.visible = visible
	}
	v.Walk("/", func(n view.Node) bool {
		var from string
		matched := false
		for i, h := range rn.hs {
			if !h.m.match(n.Path) {
				continue
			}
			if !matched {
				matched = true
				visible[n.Path] = true
				if n.HeadAction == log.ActRename {
					if e, ok := v.Entry(n.Head); ok {
						from = e.Target
					}
				}
			}
			snaps[i].nodes = append(snaps[i].nodes, n)
			if from != "" {
				snaps[i].renamed[n.Path] = from
			}
		}
		return true
	})
	for i, h := range rn.hs {
		for p := range h.cur.paths {
			if visible[p] {
				continue
			}
			var g goneHead
			if e, _, ok := v.Head(p); ok {
				g = goneHead{entry: e.Hash(), author: e.Author}
			}
			snaps[i].gone[p] = g
		}
		for _, e := range cands {
			if h.m.match(e.Path) && v.Counts(e.Hash()) {
				snaps[i].annots = append(snaps[i].annots, e)
			}
		}
	}
	return snaps
}

// diff turns the snapshots into start-up changes and brings new cursors
// into being.
func (rn *Runner) diff(snaps []*hsnap, found []bool) ([]*item, error) {
	var items []*item
	for i, h := range rn.hs {
		s := snaps[i]
		cur := h.cur
		initial := rn.cfg.Initial || h.forceInitial
		var cs []change
		renamedAway := map[string]bool{}
		for j := range s.nodes {
			n := &s.nodes[j]
			c := change{path: n.Path, entry: n.Head, author: n.HeadAuthor, node: n}
			if initial {
				c.initial = true
				switch n.Kind {
				case view.KindDir:
					c.event = "mkdir"
				case view.KindSymlink:
					c.event = "link"
				default:
					c.event = "create"
				}
				cs = append(cs, c)
				continue
			}
			if !found[i] {
				continue
			}
			var old *cursorPath
			if cp, ok := cur.paths[n.Path]; ok {
				if cp.d == nodeDigest(n) {
					continue
				}
				old = &cp
			}
			c.event = inferEvent(n, old)
			if c.event == "rename" {
				c.oldPath = s.renamed[n.Path]
				c.oldGone = !s.visible[c.oldPath]
				if c.oldGone {
					renamedAway[c.oldPath] = true
				}
			}
			cs = append(cs, c)
		}
		if found[i] {
			// Deleted paths first, deepest first; a path renamed away is
			// reported by the rename at its new path.
			var gone []string
			for p := range s.gone {
				if !renamedAway[p] {
					gone = append(gone, p)
				}
			}
			sort.Sort(sort.Reverse(sort.StringSlice(gone)))
			dels := make([]change, 0, len(gone)+len(cs))
			for _, p := range gone {
				g := s.gone[p]
				dels = append(dels, change{event: "delete", path: p, entry: g.entry, author: g.author, initial: initial})
			}
			cs = append(dels, cs...)
		}
		counting := map[log.Hash]bool{}
		for _, e := range s.annots {
			counting[e.Hash()] = true
			if found[i] && !initial && !cur.annots[e.Hash()] {
				cs = append(cs, change{event: e.Action.String(), path: e.Path, entry: e.Hash(), author: e.Author})
			}
		}
		if !found[i] {
			// A new handler: it starts from the current state, or from
			// nothing when told the whole state now.
			if !initial {
				for j := range s.nodes {
					n := &s.nodes[j]
					cur.paths[n.Path] = cursorPath{d: nodeDigest(n), kind: kindChar(n.Kind)}
				}
			}
			cur.annots = counting
			if err := cur.save(); err != nil {
				return nil, fmt.Errorf("cannot save handler cursor: %v", err)
			}
		} else {
			// Grants and revokes that stopped counting are forgotten; with
			// --handler-initial every counting one counts as told.
			for a := range cur.annots {
				if !counting[a] {
					delete(cur.annots, a)
				}
			}
			if initial {
				for a := range counting {
					cur.annots[a] = true
				}
			}
		}
		for _, c := range cs {
			items = append(items, &item{c: c, hs: []int{i}})
		}
	}
	return items, nil
}

// inferEvent names the change from a cursor state to a node the way the
// view names live changes (docs/semantics.md, "Changes").
func inferEvent(n *view.Node, old *cursorPath) string {
	switch n.HeadAction {
	case log.ActRename:
		return "rename"
	case log.ActRevert:
		return "revert"
	case log.ActLink, log.ActSymlink:
		return "link"
	}
	if old == nil || old.kind != kindChar(n.Kind) {
		if n.Kind == view.KindDir {
			return "mkdir"
		}
		return "create"
	}
	switch n.HeadAction {
	case log.ActMkdir, log.ActMode:
		return "mode"
	}
	return "write"
}

// dispatch is the one goroutine between the listener and the handlers: it
// drops the updates the start-up snapshot reflects, matches changes to
// handlers, holds changes whose content is incomplete and hands the rest to
// the handlers in order.
func (rn *Runner) dispatch() {
	defer close(rn.dispDone)
	recheck := time.NewTimer(recheckEvery)
	defer recheck.Stop()
	for {
		select {
		case <-rn.stop:
			return
		case <-rn.inSig:
			rn.inMu.Lock()
			ups := rn.inbox
			rn.inbox = nil
			rn.inMu.Unlock()
			rn.process(ups)
		case <-recheck.C:
			recheck.Reset(recheckEvery)
			if rn.heldN.Load() > 0 {
				rn.admit(nil, nil, true)
			}
		}
	}
}

func (rn *Runner) process(ups []replica.Update) {
	var fresh []*item
	var arrived map[log.Hash]bool
	for _, u := range ups {
		if len(u.Blocks) > 0 {
			if arrived == nil {
				arrived = map[log.Hash]bool{}
			}
			for _, b := range u.Blocks {
				arrived[b] = true
			}
		}
		if rn.filtering && len(u.Entries) > 0 {
			if u.Pos <= rn.startN {
				// The start-up snapshot has its changes, except for grants
				// and revokes it did not judge.
				for _, c := range u.Changes {
					if (c.Event == "grant" || c.Event == "revoke") && !rn.judged[c.Entry] {
						fresh = rn.match(fresh, c)
					}
				}
				continue
			}
			rn.filtering = false
			rn.judged = nil
		}
		for _, c := range u.Changes {
			fresh = rn.match(fresh, c)
		}
	}
	if len(fresh) > 0 || arrived != nil {
		rn.admit(fresh, arrived, false)
	}
}

// match appends c as an item when some handler matches it.
func (rn *Runner) match(fresh []*item, c view.Change) []*item {
	var hs []int
	for i, h := range rn.hs {
		if h.m.match(c.Path) || (c.OldPath != "" && h.m.match(c.OldPath)) {
			hs = append(hs, i)
		}
	}
	if len(hs) > 0 {
		fresh = append(fresh, &item{c: fromView(c), hs: hs})
	}
	return fresh
}

// admit checks new items (and held ones, when blocks arrived or on the
// periodic recheck) and releases what may go.
func (rn *Runner) admit(fresh []*item, arrived map[log.Hash]bool, full bool) {
	var renames []*item
	for _, it := range fresh {
		if it.c.oldPath != "" && !it.c.initial && it.c.node != nil && !it.c.oldGone {
			renames = append(renames, it)
		}
		rn.checkComplete(it)
	}
	if len(renames) > 0 {
		rn.r.View(func(v *view.View) {
			for _, it := range renames {
				_, ok := v.Lookup(it.c.oldPath)
				it.c.oldGone = !ok
			}
		})
	}
	if arrived != nil || full {
		for _, it := range rn.held {
			if it.complete {
				continue
			}
			if full || len(it.waitFor) == 0 || anyIn(it.waitFor, arrived) {
				rn.checkComplete(it)
			}
		}
	}
	rn.held = append(rn.held, fresh...)
	rn.release()
}

func anyIn(hs []log.Hash, set map[log.Hash]bool) bool {
	for _, h := range hs {
		if set[h] {
			return true
		}
	}
	return false
}

func (rn *Runner) checkComplete(it *item) {
	n := it.c.node
	if n == nil || n.Kind != view.KindFile || n.Content == nil || rn.r.ContentComplete(n.Content) {
		it.complete, it.waitFor = true, nil
		return
	}
	_, it.waitFor = rn.r.ContentBlocks(n.Content)
}

// release hands on every held change that may go: its content is complete
// — or a later held change of its path will show complete content, and
// goes with it — and no earlier change of its path (or a rename's other
// path) is still held.
func (rn *Runner) release() {
	allComplete := true
	for _, it := range rn.held {
		if !it.complete {
			allComplete = false
			break
		}
	}
	var out []*item
	if allComplete {
		out = rn.held
		rn.held = nil
	} else {
		ready := make([]bool, len(rn.held))
		later := map[string]bool{}
		for i := len(rn.held) - 1; i >= 0; i-- {
			it := rn.held[i]
			r := it.complete
			if !r {
				r = later[it.c.path]
			}
			ready[i] = r
			later[it.c.path] = r
			if it.c.oldPath != "" {
				later[it.c.oldPath] = r
			}
		}
		blocked := map[string]bool{}
		keep := make([]*item, 0, len(rn.held))
		for i, it := range rn.held {
			if ready[i] && !blocked[it.c.path] && (it.c.oldPath == "" || !blocked[it.c.oldPath]) {
				out = append(out, it)
				continue
			}
			keep = append(keep, it)
			blocked[it.c.path] = true
			if it.c.oldPath != "" {
				blocked[it.c.oldPath] = true
			}
		}
		rn.held = keep
	}
	rn.heldN.Store(int64(len(rn.held)))
	if len(out) == 0 {
		return
	}
	per := make([][]change, len(rn.hs))
	for _, it := range out {
		for _, i := range it.hs {
			per[i] = append(per[i], it.c)
		}
	}
	for i, cs := range per {
		if len(cs) > 0 {
			rn.hs[i].add(cs, rn)
		}
	}
}

// Stop stops taking changes, waits for running scripts (until ctx is done;
// then it kills them, and their batches fire again on the next start) and
// saves the cursors. Changes not yet run are not lost: the cursors do not
// include them, so they fire on the next start. Stop is idempotent.
func (rn *Runner) Stop(ctx context.Context) error {
	first := false
	rn.stopOnce.Do(func() {
		first = true
		rn.unsub()
		close(rn.stop)
	})
	<-rn.dispDone
	done := make(chan struct{})
	go func() {
		rn.workers.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("handlers still running at shutdown were killed: %w", ctx.Err())
		for _, h := range rn.hs {
			h.mu.Lock()
			h.interrupted = true
			if h.pid != 0 {
				signalGroup(h.pid, true)
			}
			h.mu.Unlock()
		}
		<-done
	}
	if !first {
		return nil
	}
	close(rn.syncStop)
	rn.syncers.Wait()
	for _, h := range rn.hs {
		if serr := h.cur.save(); serr != nil {
			rn.log.Error("cannot save handler cursor", "handler", h.spec.String(), "err", serr)
			if err == nil {
				err = serr
			}
		}
		h.cur.close()
	}
	return err
}

// Stats returns the runner's counters.
func (rn *Runner) Stats() Stats {
	s := Stats{
		Runs: rn.runs.Load(), Failures: rn.failures.Load(), Timeouts: rn.timeouts.Load(),
		Merged: rn.merged.Load(), Running: int(rn.running.Load()), Held: int(rn.heldN.Load()),
	}
	s.Pending = s.Held
	rn.inMu.Lock()
	for _, u := range rn.inbox {
		s.Pending += len(u.Changes)
	}
	rn.inMu.Unlock()
	for _, h := range rn.hs {
		h.mu.Lock()
		s.Pending += len(h.batch)
		h.mu.Unlock()
	}
	return s
}
