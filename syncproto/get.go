package syncproto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// Progress reports a get's advance. Entries counts the entries held
// locally (those held before this run included); Bytes the bytes received
// in this run.
type Progress struct {
	Phase        string // "connecting", "streaming", "syncing", "done"
	Entries      int64
	TotalEntries int64 // the peer's entries when the get began
	Bytes        int64
	TotalBytes   int64         // estimate of the bytes this run receives
	Rate         float64       // bytes per second
	EntryRate    float64       // entries per second
	ETA          time.Duration // 0: unknown
	Elapsed      time.Duration
}

// GetOptions tune GetWithOptions.
type GetOptions struct {
	Node    string       // this node's name, for the peer's logs
	Logger  *slog.Logger // nil: discard
	Limits  Limits       // IOTimeout applies to the stream; the rest to the final sync
	NoSync  bool         // never fsync (tests and benchmarks)
	Workers int          // verifying goroutines; 0: GOMAXPROCS
	// ExpectID, when set, pins the filesystem: a hex prefix (8 digits or
	// more) its id must start with, or the get is refused before anything
	// is stored (as ssh pins a host key).
	ExpectID string
}

// GetResult is what a get did and where its time went.
type GetResult struct {
	ID            log.Hash // the filesystem id the peer served
	Resumed       bool     // the store existed and was extended
	HeldBefore    int64    // entries held before this run
	Entries       int64    // entries stored by the stream
	Blocks        int64    // blocks stored by the stream
	BytesReceived int64    // stream and final sync, framing included
	Duration      time.Duration
	// Wall time of each pipeline stage's work (the stages overlap):
	// reading and splitting frames, verifying (decode, signatures, block
	// hashes; each group on all workers), and appending to the store; then
	// the final anti-entropy session (opening the replica included).
	ReadTime, VerifyTime, StoreTime, SyncTime time.Duration
	// FinalSync is the anti-entropy session that follows the stream.
	FinalSync SessionStats
}

// Get fetches the filesystem called name from the node at addr into dir
// (see GetWithOptions).
func Get(ctx context.Context, dial DialFunc, addr, dir, name string, progress func(Progress)) error {
	_, err := GetWithOptions(ctx, dial, addr, dir, name, progress, GetOptions{})
	return err
}

// GetWithOptions fetches the whole log and content of filesystem name from
// the node at addr into the store in dir, verifying all of it, so that dir
// is ready for a replica to open.
//
// If dir holds no store, the store is created from the root entry the peer
// sends, once its hash, signature and name check out. If dir holds one, its
// root must be the peer's ("peer serves a different filesystem under that
// name" otherwise), and the stream starts at the number of entries held: a
// get that was interrupted, rerun, fetches only the rest. Either way, an
// anti-entropy session with the peer ends the get, repairing whatever a
// stream from that position could not cover.
//
// The stream is a pipeline: a reader splits frames into groups (about a
// thousand entries and the blocks of their contents); a verifier decodes
// the entries and checks their signatures, and the blocks' hashes, on all
// workers; a writer appends each verified group to the store as one batch.
// So the store only ever holds complete, verified groups: interrupting a
// get at any point leaves a valid store. Blocks are accepted only if an
// entry of the stream refers to them (directly, or through tree blocks).
// An entry with a bad signature, or the root entry of another filesystem,
// ends the get with an error wrapping ErrForged; nothing of its group is
// stored.
//
// The stream writes the store directly (log.Store), without building the
// view, and verifies each entry once: replica.Ingest would verify it again
// and apply it to the view batch by batch, which costs as much again. The
// view is built once, by replica.Open, for the final session.
func GetWithOptions(ctx context.Context, dial DialFunc, addr, dir, name string, progress func(Progress), opt GetOptions) (res GetResult, err error) {
	start := time.Now()
	if progress == nil {
		progress = func(Progress) {}
	}
	if dial == nil {
		dial = TCPDial
	}
	lim := opt.Limits.withDefaults()
	logger := orDiscard(opt.Logger)
	if err := log.ValidateFSName(name); err != nil {
		return res, err
	}
	_, statErr := os.Stat(dir)
	dirExisted := statErr == nil
	lock, err := log.LockDir(dir)
	if err != nil {
		if errors.Is(err, log.ErrLocked) {
			return res, fmt.Errorf("the filesystem in %s is in use by another basefs process (stop it first)", dir)
		}
		return res, err
	}
	var store *log.Store
	unlocked := false
	defer func() {
		if store != nil {
			store.Close()
		}
		if !unlocked {
			lock.Unlock()
		}
		if err != nil && !dirExisted && store == nil && !replica.Exists(dir) {
			os.RemoveAll(dir) // nothing was fetched: leave no trace
		}
	}()
	var localID log.Hash
	if replica.Exists(dir) {
		store, err = log.OpenStore(dir, log.StoreOptions{Logger: logger, NoSync: opt.NoSync})
		if err != nil {
			return res, fmt.Errorf("opening the local store: %w", err)
		}
		for _, e := range store.Entries() {
			if e.IsRoot() {
				localID = e.Hash()
				if e.Name != name {
					return res, fmt.Errorf("%s holds filesystem %q, not %q", dir, e.Name, name)
				}
				break
			}
		}
		if localID.IsZero() {
			// A store without a root (not one a get leaves): start afresh.
			store.Close()
			store = nil
			if err := os.Remove(store0(dir)); err != nil {
				return res, err
			}
		}
	}

	progress(Progress{Phase: "connecting", Elapsed: time.Since(start)})
	conn, err := dial(ctx, addr)
	if err != nil {
		return res, fmt.Errorf("cannot reach %s: %w", addr, err)
	}
	w := newWire(conn, lim)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	h := hello{Purpose: purposeGet, FSName: name, FSID: localID, Node: opt.Node}
	w.writePreamble()
	if err := w.writeFrame(tHello, h.encode()); err != nil {
		return res, getNetErr(ctx, addr, err)
	}
	if err := w.flush(); err != nil {
		return res, getNetErr(ctx, addr, err)
	}
	wel, err := readWelcome(w)
	if err != nil {
		var pe *PeerError
		if errors.As(err, &pe) && errors.Is(err, ErrDifferentFS) {
			return res, &userError{fmt.Sprintf("peer serves a different filesystem under that name: %s %s", addr, pe.Msg), ErrDifferentFS}
		}
		return res, getNetErr(ctx, addr, err)
	}
	if opt.ExpectID != "" && !strings.HasPrefix(wel.FSID.String(), strings.ToLower(opt.ExpectID)) {
		return res, &userError{fmt.Sprintf("refused: %s serves %s with id %s, not the pinned %s; nothing was stored",
			addr, name, wel.FSID.String(), opt.ExpectID), ErrDifferentFS}
	}
	res.ID = wel.FSID
	if !localID.IsZero() && wel.FSID != localID {
		return res, &userError{fmt.Sprintf("peer serves a different filesystem under that name: %s serves %s with id %s, not %s",
			addr, name, wel.FSID.Short(), localID.Short()), ErrDifferentFS}
	}
	if store == nil {
		root, err := log.DecodeVerified(wel.Root)
		switch {
		case err != nil:
			return res, &userError{fmt.Sprintf("refused: peer %s sent an invalid root entry (%v); nothing was stored", addr, err), ErrForged}
		case !root.IsRoot() || root.Hash() != wel.FSID:
			return res, &userError{fmt.Sprintf("refused: peer %s sent a root entry that is not its filesystem's; nothing was stored", addr), ErrForged}
		case root.Name != name:
			return res, &userError{fmt.Sprintf("peer serves a different filesystem under that name: %s serves %q, not %q", addr, root.Name, name), ErrDifferentFS}
		}
		store, err = log.OpenStore(dir, log.StoreOptions{Logger: logger, NoSync: opt.NoSync})
		if err != nil {
			return res, fmt.Errorf("creating the local store: %w", err)
		}
		if err := store.Append([]*log.Entry{root}, nil); err != nil {
			return res, err
		}
		if err := store.Sync(); err != nil {
			return res, err
		}
	} else {
		res.Resumed = true
	}
	held := int64(store.NumEntries())
	res.HeldBefore = held
	if err := w.writeFrame(tGetStream, encodeCount(uint64(held))); err != nil {
		return res, getNetErr(ctx, addr, err)
	}
	if err := w.flush(); err != nil {
		return res, getNetErr(ctx, addr, err)
	}

	g := &getter{
		ctx: ctx, w: w, store: store, addr: addr, fsID: wel.FSID, progress: progress,
		workers: opt.Workers, start: start, held: held, total: int64(wel.Entries),
		expect: map[log.Hash]uint8{},
	}
	if g.workers <= 0 {
		g.workers = runtime.GOMAXPROCS(0)
	}
	if wel.Entries > 0 {
		remaining := max(0, int64(wel.Entries)-held)
		g.totalBytes = int64(float64(wel.StoreBytes) * float64(remaining) / float64(wel.Entries))
	}
	err = g.run()
	res.Entries, res.Blocks = g.entries.Load(), g.blocks
	res.ReadTime, res.VerifyTime, res.StoreTime = g.readTime, g.verifyTime, g.storeTime
	res.BytesReceived = w.bytesIn()
	if err != nil {
		kept := held + res.Entries
		if ctx.Err() != nil {
			return res, fmt.Errorf("get interrupted (%w); the %s held are verified — run get again to continue", ctx.Err(), plural(kept, "entry", "entries"))
		}
		if errors.Is(err, ErrForged) {
			return res, &userError{fmt.Sprintf("refused: peer %s sent forged data (%s); nothing forged was stored (%s kept)",
				addr, detail(err, ErrForged), plural(kept, "verified entry", "verified entries")), ErrForged}
		}
		return res, fmt.Errorf("get from %s failed: %w; the %s held are verified — run get again to continue", addr, getNetErr(ctx, addr, err), plural(kept, "entry", "entries"))
	}
	conn.Close()
	if err := store.Sync(); err != nil {
		return res, err
	}
	if err := store.Close(); err != nil {
		store = nil
		return res, err
	}
	store = nil
	lock.Unlock()
	unlocked = true

	// The final anti-entropy session: entries the stream could not cover
	// (stored before the position it started from, or since), and blocks.
	syncStart := time.Now()
	progress(g.progressNow("syncing"))
	r, err := replica.Open(dir, replica.Options{Logger: logger, NoSync: opt.NoSync})
	if err != nil {
		return res, fmt.Errorf("the fetched store does not open: %w", err)
	}
	defer r.Close()
	ix, cancelIx := IndexReplica(r)
	defer cancelIx()
	cl := NewClient(ClientConfig{Replica: r, Index: ix, Node: opt.Node, Dial: dial, Logger: logger, Limits: opt.Limits})
	defer cl.Close()
	st, err := cl.Sync(ctx, addr)
	res.FinalSync = st
	res.BytesReceived += st.BytesReceived
	res.SyncTime = time.Since(syncStart)
	res.Duration = time.Since(start)
	if err != nil {
		if errors.Is(err, ErrForged) {
			return res, &userError{fmt.Sprintf("refused: peer %s sent forged data (%s); nothing forged was stored", addr, detail(err, ErrForged)), ErrForged}
		}
		return res, fmt.Errorf("the log was fetched, but the final sync with %s failed: %w; run get again to finish", addr, err)
	}
	if err := r.Sync(); err != nil {
		return res, err
	}
	p := g.progressNow("done")
	p.Entries = int64(r.NumEntries())
	progress(p)
	return res, nil
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// detail is err's message without the sentinel's words.
func detail(err, sentinel error) string {
	m := err.Error()
	if i := strings.Index(m, sentinel.Error()+": "); i >= 0 {
		return m[:i] + m[i+len(sentinel.Error())+2:]
	}
	return m
}

func store0(dir string) string { return dir + string(os.PathSeparator) + log.StoreFileName }

// getNetErr phrases a connection failure.
func getNetErr(ctx context.Context, addr string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var pe *PeerError
	if errors.As(err, &pe) || !isNetErr(err) {
		return err
	}
	return fmt.Errorf("connection to %s lost: %v", addr, err)
}

// getter runs the pipeline of one get stream.
type getter struct {
	ctx      context.Context
	w        *wire
	store    *log.Store
	addr     string
	fsID     log.Hash
	progress func(Progress)
	workers  int
	start    time.Time

	held, total int64
	totalBytes  int64
	expect      map[log.Hash]uint8 // blocks an entry of the stream refers to, not yet received

	entries                         atomic.Int64
	blocks                          int64
	readTime, verifyTime, storeTime time.Duration
	lastProgress                    time.Time
}

// group is the unit of the pipeline: the entries of one commit and the
// blocks sent with them.
type group struct {
	raw     [][]byte // entries' bytes
	blocks  [][]byte
	entries []*log.Entry
	err     error
}

func (g *getter) run() error {
	toVerify := make(chan *group, 4)
	toStore := make(chan *group, 4)
	var rerr, verr, serr error
	var wg sync.WaitGroup
	fail := func() { g.w.conn.Close() } // unblocks the reader
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(toVerify)
		rerr = g.read(toVerify)
		if rerr != nil {
			fail()
		}
	}()
	go func() {
		defer wg.Done()
		defer close(toStore)
		for gr := range toVerify {
			if verr != nil {
				continue
			}
			t := time.Now()
			verr = g.verify(gr)
			g.verifyTime += time.Since(t)
			if verr != nil {
				fail()
				continue
			}
			toStore <- gr
		}
	}()
	go func() {
		defer wg.Done()
		for gr := range toStore {
			if serr != nil {
				continue
			}
			t := time.Now()
			serr = g.store.Append(gr.entries, gr.blocks)
			g.storeTime += time.Since(t)
			if serr != nil {
				fail()
				continue
			}
			g.entries.Add(int64(len(gr.entries)))
			g.blocks += int64(len(gr.blocks))
			if time.Since(g.lastProgress) >= 100*time.Millisecond {
				g.lastProgress = time.Now()
				g.progress(g.progressNow("streaming"))
			}
		}
	}()
	wg.Wait()
	// The first failure in pipeline order is the cause; the others follow
	// from the connection being closed.
	for _, err := range []error{verr, serr, rerr} {
		if err != nil && (errors.Is(err, ErrForged) || errors.Is(err, ErrProtocol)) {
			return err
		}
	}
	for _, err := range []error{serr, verr, rerr} {
		if err != nil {
			return err
		}
	}
	return nil
}

// read splits the stream into groups.
func (g *getter) read(out chan<- *group) error {
	gr := &group{}
	for {
		t0 := time.Now()
		t, p, err := g.w.readFrameOwned()
		if err != nil {
			return err
		}
		switch t {
		case tEntries:
			items, err := decodeItems(p, log.MaxEntrySize)
			if err != nil {
				return err
			}
			gr.raw = append(gr.raw, items...)
		case tBlocks:
			items, err := decodeItems(p, log.BlockSize)
			if err != nil {
				return err
			}
			gr.blocks = append(gr.blocks, items...)
		case tCommit:
			if len(p) != 0 {
				return protoErr("bad commit")
			}
			g.readTime += time.Since(t0)
			select {
			case out <- gr:
			case <-g.ctx.Done():
				return g.ctx.Err()
			}
			gr = &group{}
			continue
		case tStreamEnd:
			if _, _, err := decodeCounts(p); err != nil {
				return err
			}
			if len(gr.raw)+len(gr.blocks) != 0 {
				return protoErr("stream ended inside a group")
			}
			// Done reading; the server waits for bye.
			g.w.writeFrame(tBye, nil)
			g.w.flush()
			g.readTime += time.Since(t0)
			return nil
		case tError:
			pe, err := decodeError(p)
			if err != nil {
				return err
			}
			return pe
		default:
			return protoErr("unexpected %s frame in a get stream", t)
		}
		g.readTime += time.Since(t0)
		if len(gr.raw) > 1<<16 || len(gr.blocks) > 1<<18 {
			return fmt.Errorf("%w: stream group too large", ErrLimit)
		}
	}
}

// verify decodes and verifies one group on all workers, then checks its
// blocks against the entries of the stream.
func (g *getter) verify(gr *group) error {
	gr.entries = make([]*log.Entry, len(gr.raw))
	hashes := make([]log.Hash, len(gr.blocks))
	errs := make([]error, g.workers)
	var wg sync.WaitGroup
	for wk := 0; wk < g.workers; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			for i := wk; i < len(gr.raw); i += g.workers {
				e, err := log.Decode(gr.raw[i])
				if err != nil {
					errs[wk] = protoErr("peer sent a malformed entry: %v", err)
					return
				}
				if err := e.Verify(); err != nil {
					errs[wk] = fmt.Errorf("%w: entry %s with a bad signature", ErrForged, e.Hash().Short())
					return
				}
				gr.entries[i] = e
			}
			for i := wk; i < len(gr.blocks); i += g.workers {
				hashes[i] = log.Sum(gr.blocks[i])
			}
		}(wk)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	gr.raw = nil
	for _, e := range gr.entries {
		if e.IsRoot() && e.Hash() != g.fsID {
			return fmt.Errorf("%w: the root entry of another filesystem (%s)", ErrForged, e.Hash().Short())
		}
		if c := e.Content; c != nil && c.Blocks != nil {
			for _, h := range c.Blocks {
				if old, ok := g.expect[h]; !ok || c.Depth > old {
					g.expect[h] = c.Depth
				}
			}
		}
	}
	for i, b := range gr.blocks {
		h := hashes[i]
		level, ok := g.expect[h]
		if !ok {
			return fmt.Errorf("%w: block %s, which no entry refers to", ErrForged, h.Short())
		}
		delete(g.expect, h)
		if level > 0 {
			if len(b)%32 != 0 {
				return fmt.Errorf("%w: tree block %s of %d bytes", ErrForged, h.Short(), len(b))
			}
			for j := 0; j+32 <= len(b); j += 32 {
				var c log.Hash
				copy(c[:], b[j:])
				if old, ok := g.expect[c]; !ok || level-1 > old {
					g.expect[c] = level - 1
				}
			}
		}
	}
	if len(g.expect) > maxExpect {
		return fmt.Errorf("%w: too many blocks outstanding", ErrLimit)
	}
	return nil
}

func (g *getter) progressNow(phase string) Progress {
	el := time.Since(g.start)
	p := Progress{
		Phase: phase, Entries: g.held + g.entries.Load(), TotalEntries: g.total,
		Bytes: g.w.bytesIn(), TotalBytes: g.totalBytes, Elapsed: el,
	}
	if p.TotalEntries < p.Entries {
		p.TotalEntries = p.Entries
	}
	if p.TotalBytes < p.Bytes {
		p.TotalBytes = p.Bytes
	}
	if s := el.Seconds(); s > 0 {
		p.Rate = float64(p.Bytes) / s
		p.EntryRate = float64(p.Entries-g.held) / s
	}
	if p.EntryRate > 0 && phase == "streaming" {
		p.ETA = time.Duration(float64(p.TotalEntries-p.Entries) / p.EntryRate * float64(time.Second))
	}
	return p
}
