package replica

import (
	"crypto/ed25519"
	"errors"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

// LogRecord is one entry as `basefs log` shows it.
type LogRecord struct {
	Hash   string `json:"hash"`
	Time   int64  `json:"time"` // unix ns, as the author's clock said
	Author string `json:"author"`
	Action string `json:"action"`
	Path   string `json:"path"`
	Target string `json:"target,omitempty"` // rename: old path; link, slink: target
	Key    string `json:"key,omitempty"`    // grant, revoke: the key's fingerprint
	Used   bool   `json:"used"`             // the view uses it
	Why    string `json:"why,omitempty"`    // when not used: why not
	Counts bool   `json:"counts"`           // its author had authority (or it was acknowledged)
	Status string `json:"status"`           // applied, pending, malformed
}

func entryTouches(e *log.Entry, path string) bool {
	return log.IsAtOrUnder(e.Path, path) || (e.Action == log.ActRename && log.IsAtOrUnder(e.Target, path))
}

// Log returns the entries for path and below, newest first (by their
// authors' clocks, then by hash).
func (r *Replica) Log(path string) ([]LogRecord, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	used := r.view.UsedSet()
	var entries []*log.Entry
	for _, e := range r.store.Entries() {
		if entryTouches(e, path) {
			entries = append(entries, e)
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].Time != entries[j].Time {
			return entries[i].Time > entries[j].Time
		}
		return entries[i].Hash().String() > entries[j].Hash().String()
	})
	out := make([]LogRecord, 0, len(entries))
	for _, e := range entries {
		h := e.Hash()
		rec := LogRecord{Hash: h.String(), Time: e.Time, Author: log.Fingerprint(e.Author[:]), Action: e.Action.String(),
			Path: e.Path, Used: used[h], Counts: r.view.Counts(h) || e.IsRoot(), Status: statusName(r.view.StatusOf(h))}
		if e.IsRoot() {
			rec.Used, rec.Counts = true, true
		}
		if !rec.Used {
			rec.Why = r.whyUnused(e, rec)
		}
		switch e.Action {
		case log.ActRename, log.ActLink, log.ActSymlink:
			rec.Target = e.Target
		case log.ActGrant, log.ActRevoke:
			rec.Key = log.Fingerprint(e.Key[:])
		}
		out = append(out, rec)
	}
	return out, nil
}

// whyUnused explains, in a few words, why the view does not use an entry.
func (r *Replica) whyUnused(e *log.Entry, rec LogRecord) string {
	switch rec.Status {
	case "pending":
		return "waits for entries not here yet"
	case "malformed":
		return "malformed"
	}
	if e.Action == log.ActGrant && len(r.view.RevokedAt(e.Key, e.Path)) > 0 {
		if _, ok := r.view.Level(e.Author, e.Path); ok {
			return "revoked"
		}
	}
	if !rec.Counts {
		return "no authority"
	}
	return "off the winning branch"
}

func statusName(s view.Status) string {
	switch s {
	case view.StatusApplied:
		return "applied"
	case view.StatusPending:
		return "pending"
	case view.StatusMalformed:
		return "malformed"
	}
	return "unknown"
}

// ConflictReport lists what lost at path and below: branches that lost a
// fork, and paths hidden because their directory went away.
type ConflictReport struct {
	Conflicts []ConflictRecord `json:"conflicts"`
	Hidden    []HiddenRecord   `json:"hidden"`
}

// ConflictRecord is one losing branch.
type ConflictRecord struct {
	Path      string   `json:"path"`
	Winner    string   `json:"winner"`
	Loser     string   `json:"loser"`
	LoserHead string   `json:"loser_head"`
	Authors   []string `json:"authors"`
	Reason    string   `json:"reason"`
}

// HiddenRecord is a path with a live history the tree does not show.
type HiddenRecord struct {
	Path   string `json:"path"`
	Head   string `json:"head"`
	Reason string `json:"reason"`
}

// Conflicts reports lost branches and hidden paths at and below path.
func (r *Replica) Conflicts(path string) (ConflictReport, error) {
	if err := checkPath(path); err != nil {
		return ConflictReport{}, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	rep := ConflictReport{Conflicts: []ConflictRecord{}, Hidden: []HiddenRecord{}}
	for _, c := range r.view.Conflicts(path) {
		rec := ConflictRecord{Path: c.Path, Winner: c.Winner.String(), Loser: c.Loser.String(), LoserHead: c.LoserHead.String(), Reason: c.Reason}
		for _, a := range c.Authors {
			rec.Authors = append(rec.Authors, log.Fingerprint(a[:]))
		}
		rep.Conflicts = append(rep.Conflicts, rec)
	}
	for _, h := range r.view.HiddenPaths(path) {
		rep.Hidden = append(rep.Hidden, HiddenRecord{Path: h.Path, Head: h.Head.String(), Reason: h.Reason})
	}
	return rep, nil
}

// Status is one replica's state, as `status --json` reports it (the node
// adds its network fields).
type Status struct {
	Name          string   `json:"name"`
	ID            string   `json:"id"`
	Entries       int      `json:"entries"`
	Counting      int      `json:"counting"`
	Pending       int      `json:"pending"`
	Malformed     int      `json:"malformed"`
	ViewHash      string   `json:"view_hash"`
	Paths         int      `json:"paths"`
	Blocks        int      `json:"blocks"`
	MissingBlocks int      `json:"missing_blocks"`
	StoreBytes    int64    `json:"store_bytes"`
	Corruptions   []string `json:"corruptions,omitempty"`
	// StoreError is the store write that failed, when the replica has
	// stopped taking writes because of it.
	StoreError string `json:"store_error,omitempty"`
}

// Status reports the replica's state.
func (r *Replica) Status() Status {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := r.view.Stats()
	s := Status{
		Name: r.name, ID: r.view.ID().String(), Entries: r.store.NumEntries(),
		Counting: st.Counting, Pending: st.Pending, Malformed: st.Malformed,
		ViewHash: r.view.Hash().String(), Paths: r.view.NumVisible(),
		Blocks: r.store.NumBlocks(), MissingBlocks: len(r.missingBlocks()), StoreBytes: r.store.Size(),
	}
	for _, c := range r.store.Corruptions() {
		s.Corruptions = append(s.Corruptions, c.String())
	}
	if r.failed != nil {
		s.StoreError = r.failed.Error()
	}
	return s
}

// missingBlocks lists the blocks the visible files need that this node does
// not hold. Callers hold r.mu.
func (r *Replica) missingBlocks() []log.Hash {
	seen := map[log.Hash]bool{}
	var out []log.Hash
	var need func(c *log.Content, depth int)
	need = func(c *log.Content, depth int) {
		if c == nil || depth > maxDeltaChain+1 || (c.Blocks == nil && !c.Encoding.IsDelta()) || r.cache.Has(c.Hash) {
			return
		}
		if c.Blocks != nil {
			_, missing, _ := log.ContentBlocks(c, r.store.Block)
			for _, h := range missing {
				if !seen[h] {
					seen[h] = true
					out = append(out, h)
				}
			}
		}
		if c.Encoding.IsDelta() {
			need(r.contents[c.Base], depth+1)
		}
	}
	r.view.Walk("/", func(n view.Node) bool {
		if n.Kind == view.KindFile {
			need(n.Content, 0)
		}
		return true
	})
	return out
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Entries       int      `json:"entries"`
	BadEntries    []string `json:"bad_entries,omitempty"`  // hash or signature fails
	Corruptions   []string `json:"corruptions,omitempty"`  // unreadable store records
	BadContents   []string `json:"bad_contents,omitempty"` // files whose content does not check out
	Malformed     int      `json:"malformed"`              // signed entries that do not fit the log's structure
	NotCounting   int      `json:"not_counting"`           // entries whose authors have no authority
	Pending       int      `json:"pending"`                // entries waiting for entries not held
	Files         int      `json:"files"`                  // visible files checked
	MissingBlocks int      `json:"missing_blocks"`         // blocks not held yet (not an error)
	OK            bool     `json:"ok"`
}

// Verify re-checks every entry's hash and signature (on all cores), every
// visible file's content against its hash, and reports the entries that do
// not count.
func (r *Replica) Verify() VerifyReport {
	r.mu.RLock()
	defer r.mu.RUnlock()
	entries := r.store.Entries()
	rep := VerifyReport{Entries: len(entries)}
	for _, c := range r.store.Corruptions() {
		rep.Corruptions = append(rep.Corruptions, c.String())
	}
	bad := make([]bool, len(entries))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(entries); i += workers {
				e := entries[i]
				d, err := log.Decode(e.Encoded())
				if err != nil || d.Hash() != e.Hash() || e.Verify() != nil {
					bad[i] = true
				}
			}
		}(w)
	}
	wg.Wait()
	for i, b := range bad {
		if b {
			rep.BadEntries = append(rep.BadEntries, entries[i].Hash().String())
		}
	}
	for _, e := range entries {
		switch r.view.StatusOf(e.Hash()) {
		case view.StatusMalformed:
			rep.Malformed++
		case view.StatusPending:
			rep.Pending++
		case view.StatusApplied:
			if !r.view.Counts(e.Hash()) && !e.IsRoot() {
				rep.NotCounting++
			}
		}
	}
	r.view.Walk("/", func(n view.Node) bool {
		if n.Kind != view.KindFile {
			return true
		}
		rep.Files++
		if n.Content.Blocks == nil && n.Content.Encoding == log.EncRaw {
			if log.Sum(n.Content.Inline) != n.Content.Hash {
				rep.BadContents = append(rep.BadContents, n.Path)
			}
			return true
		}
		b, err := r.codec.Decode(n.Content, r.store.Block, func(h log.Hash) ([]byte, error) {
			bc, ok := r.contents[h]
			if !ok {
				return nil, log.ErrBlockMissing
			}
			return r.content(bc)
		})
		switch {
		case errors.Is(err, log.ErrBlockMissing):
		case err != nil || log.Sum(b) != n.Content.Hash:
			rep.BadContents = append(rep.BadContents, n.Path)
		}
		return true
	})
	rep.MissingBlocks = len(r.missingBlocks())
	rep.OK = len(rep.BadEntries) == 0 && len(rep.Corruptions) == 0 && len(rep.BadContents) == 0
	return rep
}

// ResolveEntry finds the entry at or below path whose hash starts with prefix.
func (r *Replica) ResolveEntry(path, prefix string) (*log.Entry, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.resolveEntry(path, prefix)
}

func (r *Replica) resolveEntry(path, prefix string) (*log.Entry, error) {
	prefix = strings.ToLower(prefix)
	if len(prefix) < 4 {
		return nil, errorf(Invalid, "", "entry %q is too short (give at least 4 hex digits)", prefix)
	}
	var found []*log.Entry
	for _, e := range r.store.Entries() {
		if strings.HasPrefix(e.Hash().String(), prefix) && !e.Action.IsAnnotation() && entryTouches(e, path) {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return nil, errorf(NotExist, path, "no entry %s in the history of %s", prefix, path)
	case 1:
		return found[0], nil
	}
	return nil, errorf(Invalid, path, "entry %s is ambiguous (%d entries); give more digits", prefix, len(found))
}

// Revert makes path what it was at entry to (an entry of path or of a path
// below it): for path itself, the state that entry left when it is one of
// path's; for everything else below path, the state this node showed right
// after it stored that entry. It writes new entries; history is never
// rewritten. It returns how many entries it wrote.
func (r *Replica) Revert(key ed25519.PrivateKey, path string, to log.Hash, sync bool) (int, error) {
	if err := checkPath(path); err != nil {
		return 0, err
	}
	n := 0
	err := r.run(key, sync, func(t *txn) error {
		plan, err := r.revertPlanTo(path, to)
		if err != nil {
			return err
		}
		for _, step := range plan {
			if err := t.requireAuthority(step.path); err != nil {
				return err
			}
		}
		for _, step := range plan {
			if err := t.revertStep(step); err != nil {
				return err
			}
		}
		n = len(t.entries)
		return nil
	})
	return n, err
}

// RevertChange is one path's change that a revert would make.
type RevertChange struct {
	Path   string `json:"path"`
	Action string `json:"action"`          // "revert", "create" or "delete"
	Entry  string `json:"entry,omitempty"` // revert: the entry the path goes back to
	Kind   string `json:"kind,omitempty"`  // create: what is created
}

// RevertPlan lists what Revert(path, to) would change, without writing
// anything (revert --dry-run). Steps that only restore what the tree
// already shows are left out, as Revert leaves them out.
func (r *Replica) RevertPlan(path string, to log.Hash) ([]RevertChange, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	plan, err := r.revertPlanTo(path, to)
	if err != nil {
		return nil, err
	}
	out := []RevertChange{}
	for _, s := range plan {
		switch {
		case s.delete:
			out = append(out, RevertChange{Path: s.path, Action: "delete"})
		case !s.ref.IsZero():
			out = append(out, RevertChange{Path: s.path, Action: "revert", Entry: s.ref.String()})
		default:
			if cur, ok := r.view.Lookup(s.path); ok && sameVisible(&cur, s.want) {
				continue
			}
			out = append(out, RevertChange{Path: s.path, Action: "create", Kind: s.want.Kind.String()})
		}
	}
	return out, nil
}

// revertPlanTo finds entry to in the store and plans the revert of path to
// the state right after it. The caller holds r.mu.
func (r *Replica) revertPlanTo(path string, to log.Hash) ([]revertStep, error) {
	entries := r.store.Entries()
	idx := -1
	for i, e := range entries {
		if e.Hash() == to {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, errorf(NotExist, path, "entry %s is not stored here", to.Short())
	}
	target := entries[idx]
	if !entryTouches(target, path) || target.Action.IsAnnotation() {
		return nil, errorf(Invalid, path, "entry %s is not part of the history of %s", to.Short(), path)
	}
	then, err := view.New(r.view.Root())
	if err != nil {
		return nil, err
	}
	for i := 0; i <= idx; i += applyBatch {
		then.Apply(entries[i:min(i+applyBatch, idx+1)]...)
	}
	return r.revertPlan(then, path, target), nil
}

// revertStep is one path's change in a revert.
type revertStep struct {
	path   string
	ref    log.Hash   // revert to this entry of path, when set
	want   *view.Node // otherwise: recreate this node, or delete when nil
	delete bool
}

// revertPlan lists the steps: reverts and creations parents first, then
// deletions children first.
func (r *Replica) revertPlan(then *view.View, path string, target *log.Entry) []revertStep {
	desired := map[string]*view.Node{}
	var paths []string
	add := func(p string) {
		if _, ok := desired[p]; !ok {
			desired[p] = nil
			paths = append(paths, p)
		}
	}
	then.Walk(path, func(n view.Node) bool {
		add(n.Path)
		nn := n
		desired[n.Path] = &nn
		return true
	})
	r.view.Walk(path, func(n view.Node) bool {
		add(n.Path)
		return true
	})
	add(path)
	sort.Slice(paths, func(i, j int) bool { return pathLess(paths[i], paths[j]) })

	var steps, deletes []revertStep
	for _, p := range paths {
		cur, curOK := r.view.Lookup(p)
		if p == path && (target.Path == path || (target.Action == log.ActRename && target.Target == path)) {
			// The path itself goes to the state the entry left.
			if st, ok := r.view.StateAt(target.Hash(), path); ok && (!curOK || cur.Head != target.Hash()) {
				if _, _, hasHead := r.view.Head(path); hasHead {
					steps = append(steps, revertStep{path: p, ref: target.Hash()})
					continue
				}
				if st.Live() {
					n := nodeFromState(p, st)
					steps = append(steps, revertStep{path: p, want: &n})
				}
			}
			continue
		}
		want := desired[p]
		switch {
		case want == nil && curOK:
			deletes = append(deletes, revertStep{path: p, delete: true})
		case want == nil:
		case curOK && sameVisible(&cur, want):
		default:
			if _, _, hasHead := r.view.Head(p); hasHead {
				if _, ok := r.view.StateAt(want.Head, p); ok {
					steps = append(steps, revertStep{path: p, ref: want.Head})
					continue
				}
			}
			steps = append(steps, revertStep{path: p, want: want})
		}
	}
	for i := len(deletes) - 1; i >= 0; i-- {
		steps = append(steps, deletes[i])
	}
	return steps
}

// pathLess orders paths so that a directory comes before what it holds.
func pathLess(a, b string) bool {
	return strings.ReplaceAll(a, "/", "\x00") < strings.ReplaceAll(b, "/", "\x00")
}

func sameVisible(a, b *view.Node) bool {
	return a.Kind == b.Kind && a.Mode == b.Mode && a.ContentHash == b.ContentHash && a.Target == b.Target
}

func nodeFromState(path string, st view.State) view.Node {
	n := view.Node{Path: path, Kind: st.Kind, Mode: st.Mode, Target: st.Target, Content: st.Content}
	if st.Content != nil {
		n.ContentHash = st.Content.Hash
		n.Size = st.Content.Size
	}
	return n
}

func (t *txn) revertStep(s revertStep) error {
	r := t.r
	switch {
	case s.delete:
		if _, ok := r.view.Lookup(s.path); !ok {
			return nil // went with its directory
		}
		h, _, ok := r.view.Head(s.path)
		if !ok {
			return nil
		}
		_, err := t.add(&log.Entry{Action: log.ActDelete, Parent: h.Hash(), Path: s.path})
		return err
	case !s.ref.IsZero():
		h, _, ok := r.view.Head(s.path)
		if !ok {
			return pathErr(NotExist, s.path)
		}
		_, err := t.add(&log.Entry{Action: log.ActRevert, Parent: h.Hash(), Path: s.path, Ref: s.ref})
		return err
	}
	// Recreate by copy: the path's earlier history is in a directory
	// incarnation that no longer exists.
	w := s.want
	if cur, ok := r.view.Lookup(s.path); ok && sameVisible(&cur, w) {
		return nil
	}
	par, err := t.parentFor(s.path)
	if err != nil {
		return err
	}
	var e *log.Entry
	switch w.Kind {
	case view.KindDir:
		e = &log.Entry{Action: log.ActMkdir, Parent: par, Path: s.path, Mode: w.Mode}
	case view.KindSymlink:
		e = &log.Entry{Action: log.ActSymlink, Parent: par, Path: s.path, Target: w.Target}
	case view.KindFile:
		e = &log.Entry{Action: log.ActWrite, Parent: par, Path: s.path, Mode: w.Mode, Content: w.Content}
	default:
		return nil
	}
	_, err = t.add(e)
	return err
}
