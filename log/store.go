package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
)

// The store file. One filesystem's entries and content blocks live in one
// append-only file, StoreFileName, as a sequence of records:
//
//	magic(4) crc(4) length(4) type(1) payload(length)
//
// magic is recMagic (little-endian), length is the payload's length
// (little-endian), and crc is the CRC-32C (Castagnoli) of the bytes from
// length to the end of the payload, so a damaged length is caught too. A
// record's type is one of recHeader (the file's first record: the format
// name and version), recEntry (payload: an entry's canonical bytes) or
// recBlock (payload: a content block; its hash is recomputed on open). Each
// type has a length limit (recPayloadLimit), so no garbage can make the store
// allocate more than one small record.
//
// Appends write whole batches of records with one write(2) at the end of the
// file. A crash can therefore only leave an unfinished batch at the end: open
// finds the first bad record, sees that no valid record follows it, and
// truncates the file there (a torn tail). A bad record that valid records
// follow is damage in the middle of the file: it is skipped and reported as a
// Corruption, never truncated, and everything after it is loaded.
//
// Entries are verified (signature) before they are appended, so open only
// decodes them, which is far cheaper. The one exception: after a damaged
// record, open cannot know where the damaged record really ended, and a
// record found by searching for the next magic number could lie inside
// the payload of another record (a block's bytes are chosen by whoever wrote
// the file). So every entry after the first damaged record has its signature
// checked at open (about 100 µs an entry on one core of the reference
// machine), and entries that fail are reported and not loaded.

// StoreFileName is the name of the store file inside a store's directory.
const StoreFileName = "store.log"

// storeLockName is the lock file OpenStore holds for as long as a Store is
// open, so that two processes never append to one store file.
const storeLockName = "store.lock"

const (
	recMagic     uint32 = 0x7cf55eba // bytes ba 5e f5 7c
	recMagicStr         = "\xba\x5e\xf5\x7c"
	recHeaderLen        = 13

	recHeader byte = 1
	recEntry  byte = 2
	recBlock  byte = 3

	storeFormatName    = "basefs-store\x00"
	storeFormatVersion = 1
	recHeaderPayload   = 64 // limit on a header record's payload

	// recMaxRecord is the largest record of any type, header included.
	recMaxRecord = recHeaderLen + max(MaxEntrySize, BlockSize, recHeaderPayload)
	// recWindow is how many bytes open reads and hands to a decoder at once.
	recWindow = max(1<<20, 4*recMaxRecord)
	// recResyncStep is how far the search for the next valid record after a
	// damaged one reads at a time.
	recResyncStep = 1 << 20
	// storeParallelMin is the file size from which open decodes on all
	// cores.
	storeParallelMin = 4 << 20
)

// Errors returned by the store.
var (
	// ErrBlockMissing is returned by Store.Block for a block the store does
	// not hold.
	ErrBlockMissing = errors.New("block not in store")
	// ErrBlockCorrupt is wrapped by Store.Block when the bytes read from the
	// file do not hash to the requested block hash.
	ErrBlockCorrupt = errors.New("block corrupt")
	// ErrStoreClosed is returned by Store methods that need the file after
	// Close.
	ErrStoreClosed = errors.New("store closed")
)

// Corruption describes a damaged stretch in the middle of a store file,
// found at open: Length bytes starting at file offset Offset could not be
// loaded, for the given reason. The bytes stay in the file; the records
// after them are loaded.
type Corruption struct {
	Offset int64
	Length int64
	Reason string
}

// String formats the corruption for messages.
func (c Corruption) String() string {
	return fmt.Sprintf("%d bytes at offset %d: %s", c.Length, c.Offset, c.Reason)
}

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Logger receives the store's reports: a truncated torn tail (Warn),
	// corrupt records (Error). Nil discards them.
	Logger *slog.Logger
	// NoSync makes Sync a no-op, and skips every other fsync; for tests and
	// benchmarks only: nothing is durable.
	NoSync bool

	// Tests override storeParallelMin and recWindow (at least
	// recMaxRecord) with these, to run the parallel load on small files,
	// and the signature check of entries after damage (Entry.Verify), which
	// would make fuzzing crawl.
	parallelMin int64
	window      int
	verify      func(*Entry) error
}

// Store is the append-only file of one filesystem's entries and content
// blocks, with in-memory indexes of both (the format and the recovery rules
// are described at the top of store.go). Entries stay in memory, in file
// order; blocks are read from the file when asked for.
//
// All methods are safe for concurrent use; they share one internal mutex.
// Append and Sync may be called from several goroutines: Append returns once
// its batch is written to the file, where it survives a crash of this
// process but not of the machine; Sync returns once every batch appended
// before it was called is on stable storage (durability level 1 of DESIGN
// §4). Concurrent Sync calls share one fsync. Block reads do not hold the
// mutex while they read.
type Store struct {
	path        string
	log         *slog.Logger
	noSync      bool
	parallelMin int64
	window      int
	verify      func(*Entry) error

	mu      sync.Mutex
	cond    *sync.Cond // signals the end of an fsync; uses mu
	f       *os.File
	lock    *DirLock
	closed  bool
	failed  error // sticky: a write that could not be rolled back, or a failed fsync
	size    int64
	written uint64 // appends that wrote something
	synced  uint64 // value of written when the last successful fsync began
	syncing bool
	wbuf    []byte // reused by Append

	entries     []*Entry
	entryIndex  map[Hash]int // hash → position in entries
	blocks      map[Hash]storeBlockLoc
	blockBytes  int64
	corruptions []Corruption
}

// storeBlockLoc is where a block's bytes are in the file.
type storeBlockLoc struct {
	off int64 // of the payload
	n   int32
}

// OpenStore opens the store in dir, creating dir (mode 0700) and the file
// if they are missing. It takes the store's lock (a file beside the store),
// so a second OpenStore of the same directory, from this process or another,
// fails with an error wrapping ErrLocked until Close. It reads every record:
// a torn tail is truncated (logged as a warning); damaged records in the
// middle are skipped, logged as errors and listed by Corruptions, and the
// records after them are loaded.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lock, err := lockPath(filepath.Join(dir, storeLockName))
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}
	path := filepath.Join(dir, StoreFileName)
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		lock.Unlock()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{
		path:        path,
		log:         logger,
		noSync:      opts.NoSync,
		parallelMin: opts.parallelMin,
		window:      opts.window,
		verify:      opts.verify,
		f:           f,
		lock:        lock,
		entryIndex:  make(map[Hash]int),
		blocks:      make(map[Hash]storeBlockLoc),
	}
	s.cond = sync.NewCond(&s.mu)
	if err := s.load(); err != nil {
		f.Close()
		lock.Unlock()
		return nil, err
	}
	if s.size == 0 {
		if err := s.writeHeader(); err != nil {
			f.Close()
			lock.Unlock()
			return nil, err
		}
	}
	if created && !s.noSync {
		if err := storeSyncDir(dir); err != nil {
			f.Close()
			lock.Unlock()
			return nil, err
		}
	}
	return s, nil
}

// writeHeader starts an empty file with the header record.
func (s *Store) writeHeader() error {
	p := append([]byte(storeFormatName), storeFormatVersion)
	b := recAppend(nil, recHeader, p)
	if _, err := s.f.Write(b); err != nil {
		return fmt.Errorf("write header of %s: %w", s.path, err)
	}
	s.size = int64(len(b))
	if !s.noSync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", s.path, err)
		}
	}
	return nil
}

// storeSyncDir fsyncs a directory, so that a file created in it survives a
// crash.
func storeSyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// recAppend appends one framed record to dst.
func recAppend(dst []byte, typ byte, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, recMagic)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // crc, below
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, typ)
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[start+4:], recCRC(dst[start+8:]))
	return dst
}

func recCRC(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// recPayloadLimit returns the largest payload of a record type, or -1 for an
// unknown type.
func recPayloadLimit(typ byte) int {
	switch typ {
	case recHeader:
		return recHeaderPayload
	case recEntry:
		return MaxEntrySize
	case recBlock:
		return BlockSize
	}
	return -1
}

// recFault says why bytes are not a valid record; the zero value means
// they are.
type recFault struct {
	kind uint8
	a, b int64
}

const (
	recOK = iota
	recShortHeader
	recBadMagic
	recBadType
	recTooLong
	recShort
	recBadCRC
)

func (f recFault) String() string {
	switch f.kind {
	case recShortHeader:
		return fmt.Sprintf("record header cut short: %d of %d bytes", f.a, recHeaderLen)
	case recBadMagic:
		return "bad magic number"
	case recBadType:
		return fmt.Sprintf("unknown record type %d", f.a)
	case recTooLong:
		return fmt.Sprintf("record length %d over the limit %d of its type", f.a, f.b)
	case recShort:
		return fmt.Sprintf("record cut short: %d bytes, %d remain in the file", f.a, f.b)
	case recBadCRC:
		return "checksum mismatch"
	}
	return "valid"
}

// recCheck checks the record at the start of b, where b holds at least the
// largest possible record or runs to the end of the file. It returns the
// record's total length and type, or the fault.
func recCheck(b []byte) (int, byte, recFault) {
	if len(b) < recHeaderLen {
		return 0, 0, recFault{kind: recShortHeader, a: int64(len(b))}
	}
	if binary.LittleEndian.Uint32(b) != recMagic {
		return 0, 0, recFault{kind: recBadMagic}
	}
	typ := b[12]
	limit := recPayloadLimit(typ)
	if limit < 0 {
		return 0, 0, recFault{kind: recBadType, a: int64(typ)}
	}
	n := binary.LittleEndian.Uint32(b[8:])
	if n > uint32(limit) {
		return 0, 0, recFault{kind: recTooLong, a: int64(n), b: int64(limit)}
	}
	total := recHeaderLen + int(n)
	if total > len(b) {
		return 0, 0, recFault{kind: recShort, a: int64(total), b: int64(len(b))}
	}
	if recCRC(b[8:total]) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, 0, recFault{kind: recBadCRC}
	}
	return total, typ, recFault{}
}

// recBatch is a window of the file and the valid records found in it, on its
// way from the scanner through a decoder to the merge.
type recBatch struct {
	buf  []byte
	base int64 // file offset of buf[0]
	recs []recInfo
	done chan struct{} // closed when the records are decoded
}

// recInfo is one valid record in a batch, and what decoding it gave.
type recInfo struct {
	off    int64 // file offset of the record
	start  int32 // payload offset in the batch's buf
	n      int32 // payload length
	typ    byte
	verify bool // check the entry's signature: it follows damaged bytes
	entry  *Entry
	hash   Hash // a block's hash
	err    error
}

// recScanner finds the records of a store file, in order, on one goroutine.
type recScanner struct {
	f      *os.File
	path   string
	size   int64
	window int

	emit func(*recBatch) // passes on a batch with records, in file order
	free chan *recBatch  // batches to reuse, with their buffers

	// Results, read after run returns.
	faults   []Corruption
	tail     int64 // offset of a torn tail to cut, or -1
	tailWhy  string
	damaged  bool
	err      error
	resyncBf []byte
}

// run scans the file, passing batches of valid records to sc.emit.
func (sc *recScanner) run() {
	sc.tail = -1
	var pos int64
	var cur *recBatch
	for pos < sc.size {
		if cur == nil || pos+min(recMaxRecord, sc.size-pos) > cur.base+int64(len(cur.buf)) {
			sc.hand(cur)
			cur = nil
			var err error
			if cur, err = sc.readWindow(pos); err != nil {
				sc.err = err
				return
			}
		}
		total, typ, fault := recCheck(cur.buf[pos-cur.base:])
		if fault.kind == recOK {
			cur.recs = append(cur.recs, recInfo{
				off:    pos,
				start:  int32(pos - cur.base + recHeaderLen),
				n:      int32(total - recHeaderLen),
				typ:    typ,
				verify: sc.damaged,
			})
			pos += int64(total)
			continue
		}
		next, err := sc.resync(pos + 1)
		if err != nil {
			sc.err = err
			return
		}
		if next < 0 {
			sc.tail, sc.tailWhy = pos, fault.String()
			break
		}
		sc.faults = append(sc.faults, Corruption{Offset: pos, Length: next - pos, Reason: fault.String()})
		sc.damaged = true
		pos = next
	}
	sc.hand(cur)
}

// readWindow reads the file from pos into a fresh batch.
func (sc *recScanner) readWindow(pos int64) (*recBatch, error) {
	n := int(min(int64(sc.window), sc.size-pos))
	var b *recBatch
	select {
	case b = <-sc.free:
	default:
		b = &recBatch{}
	}
	if cap(b.buf) < n {
		b.buf = make([]byte, n)
	}
	b.buf, b.base, b.done = b.buf[:n], pos, nil
	if _, err := sc.f.ReadAt(b.buf, pos); err != nil {
		return nil, fmt.Errorf("read %s at offset %d: %w", sc.path, pos, err)
	}
	return b, nil
}

// hand passes a batch on to emit, or recycles an empty one.
func (sc *recScanner) hand(b *recBatch) {
	if b == nil {
		return
	}
	if len(b.recs) == 0 {
		sc.recycle(b)
		return
	}
	sc.emit(b)
}

// recycle keeps a batch that has been merged for reuse, if there is room.
func (sc *recScanner) recycle(b *recBatch) {
	clear(b.recs) // drop the references to entries and errors
	b.recs = b.recs[:0]
	select {
	case sc.free <- b:
	default:
	}
}

// resync returns the offset of the first valid record at or after from, or
// -1 if there is none before the end of the file.
func (sc *recScanner) resync(from int64) (int64, error) {
	magic := []byte(recMagicStr)
	for base := from; base < sc.size; base += recResyncStep {
		n := int(min(int64(recResyncStep+recMaxRecord), sc.size-base))
		if cap(sc.resyncBf) < n {
			sc.resyncBf = make([]byte, n)
		}
		buf := sc.resyncBf[:n]
		if _, err := sc.f.ReadAt(buf, base); err != nil {
			return 0, fmt.Errorf("read %s at offset %d: %w", sc.path, base, err)
		}
		limit := min(recResyncStep, n)
		for i := 0; i < limit; i++ {
			j := bytes.Index(buf[i:], magic)
			if j < 0 || i+j >= limit {
				break
			}
			i += j
			if _, _, fault := recCheck(buf[i:]); fault.kind == recOK {
				return base + int64(i), nil
			}
		}
	}
	return -1, nil
}

// recDecode decodes a batch's records: entries (and, after damage, their
// signatures), block hashes, headers.
func recDecode(b *recBatch, verify func(*Entry) error) {
	for i := range b.recs {
		r := &b.recs[i]
		p := b.buf[r.start : r.start+r.n]
		switch r.typ {
		case recEntry:
			e, err := Decode(p)
			if err == nil && r.verify {
				err = verify(e)
			}
			r.entry, r.err = e, err
		case recBlock:
			r.hash = Sum(p)
		case recHeader:
			r.err = recCheckHeader(p)
		}
	}
}

// storeSizeIndexes sizes the indexes of a large store before its first
// batch is merged, by extrapolating that batch's mix of entries and blocks
// to the whole file: growing a map of a million entries step by step costs
// more than a tenth of the open.
func storeSizeIndexes(s *Store, b *recBatch, size int64) {
	var entries, blocks int64
	for _, r := range b.recs {
		switch r.typ {
		case recEntry:
			entries++
		case recBlock:
			blocks++
		}
	}
	scale := func(n int64) int { return int(min(n*size/int64(len(b.buf)), size/recHeaderLen)) }
	s.entryIndex = make(map[Hash]int, scale(entries))
	s.entries = make([]*Entry, 0, scale(entries))
	s.blocks = make(map[Hash]storeBlockLoc, scale(blocks))
}

// recCheckHeader checks a header record's payload.
func recCheckHeader(p []byte) error {
	if !bytes.HasPrefix(p, []byte(storeFormatName)) || len(p) != len(storeFormatName)+1 {
		return errors.New("not a basefs store header")
	}
	if v := p[len(storeFormatName)]; v != storeFormatVersion {
		return fmt.Errorf("store format version %d, this build reads %d", v, storeFormatVersion)
	}
	return nil
}

// load reads the whole file into the indexes, truncating a torn tail.
func (s *Store) load() error {
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	size := fi.Size()

	// A file that starts with a valid header of another format version is
	// not ours to read, let alone to truncate or append to.
	head := make([]byte, min(int64(recMaxRecord), size))
	if _, err := s.f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("read %s at offset 0: %w", s.path, err)
	}
	if total, typ, fault := recCheck(head); fault.kind == recOK && typ == recHeader {
		if err := recCheckHeader(head[recHeaderLen:total]); err != nil {
			return fmt.Errorf("open %s: %w", s.path, err)
		}
	}

	var faults []Corruption
	verified := 0
	// merge adds a decoded batch to the indexes; it runs on this goroutine,
	// in file order.
	merge := func(b *recBatch) {
		if len(s.entries) == 0 && len(s.blocks) == 0 && size > int64(4*len(b.buf)) {
			storeSizeIndexes(s, b, size)
		}
		for i := range b.recs {
			r := &b.recs[i]
			if r.verify && r.typ == recEntry {
				verified++
			}
			switch {
			case r.err != nil:
				what := "entry"
				if r.typ == recHeader {
					what = "header"
				}
				faults = append(faults, Corruption{
					Offset: r.off,
					Length: int64(recHeaderLen) + int64(r.n),
					Reason: fmt.Sprintf("%s: %v", what, r.err),
				})
			case r.typ == recEntry:
				h := r.entry.Hash()
				if _, dup := s.entryIndex[h]; !dup {
					// Keep where the bytes are, not the bytes: a large
					// store's encodings would double its memory.
					r.entry.encoded = nil
					r.entry.src, r.entry.srcOff, r.entry.srcLen = s, r.off+recHeaderLen, r.n
					s.entryIndex[h] = len(s.entries)
					s.entries = append(s.entries, r.entry)
				}
			case r.typ == recBlock:
				if _, dup := s.blocks[r.hash]; !dup {
					s.blocks[r.hash] = storeBlockLoc{off: r.off + recHeaderLen, n: r.n}
					s.blockBytes += int64(r.n)
				}
			}
		}
	}

	workers := max(1, runtime.GOMAXPROCS(0))
	sc := &recScanner{f: s.f, path: s.path, size: size, window: recWindow, free: make(chan *recBatch, 2*workers+4)}
	if s.window > 0 {
		sc.window = max(s.window, recMaxRecord)
	}
	verify := s.verify
	if verify == nil {
		verify = (*Entry).Verify
	}
	parallelMin := s.parallelMin
	if parallelMin == 0 {
		parallelMin = storeParallelMin
	}
	if workers == 1 || size < parallelMin {
		// Small stores load on this goroutine: cheaper than the pipeline
		// below, and deterministic (which fuzzing needs).
		sc.emit = func(b *recBatch) {
			recDecode(b, verify)
			merge(b)
			sc.recycle(b)
		}
		sc.run()
	} else {
		// The scanner frames records on one goroutine, workers decode
		// batches in parallel, and this goroutine merges them in file
		// order. ordered bounds the batches in flight, so memory too.
		work := make(chan *recBatch, workers)
		ordered := make(chan *recBatch, 2*workers+2)
		sc.emit = func(b *recBatch) {
			b.done = make(chan struct{})
			ordered <- b
			work <- b
		}
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range work {
					recDecode(b, verify)
					close(b.done)
				}
			}()
		}
		go func() {
			defer close(ordered)
			defer close(work)
			sc.run()
		}()
		for b := range ordered {
			<-b.done
			merge(b)
			sc.recycle(b)
		}
		wg.Wait()
	}
	if sc.err != nil {
		return sc.err
	}

	faults = append(faults, sc.faults...)
	sort.Slice(faults, func(i, j int) bool { return faults[i].Offset < faults[j].Offset })
	s.corruptions = faults
	for _, c := range faults {
		s.log.Error("basefs store: corrupt record skipped; the records after it are loaded",
			"file", s.path, "offset", c.Offset, "length", c.Length, "reason", c.Reason)
	}
	if sc.damaged {
		s.log.Warn("basefs store: checked the signatures of the entries after damaged bytes",
			"file", s.path, "entries", verified)
	}

	s.size = size
	if sc.tail >= 0 {
		if err := s.f.Truncate(sc.tail); err != nil {
			return fmt.Errorf("truncate torn tail of %s at offset %d: %w", s.path, sc.tail, err)
		}
		if !s.noSync {
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("fsync %s: %w", s.path, err)
			}
		}
		s.size = sc.tail
		s.log.Warn("basefs store: truncated a torn tail (an append that a crash interrupted)",
			"file", s.path, "offset", sc.tail, "dropped_bytes", size-sc.tail, "reason", sc.tailWhy)
	}
	return nil
}

// Entries returns every entry in the store, in file order: those loaded at
// open, then those appended since. The slice is the caller's; the entries
// are shared and must not be modified.
func (s *Store) Entries() []*Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Entry(nil), s.entries...)
}

// EntriesSince returns the entries after the first n of Entries(), in file
// order: a caller that has seen n entries gets only the new ones.
func (s *Store) EntriesSince(n int) []*Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = max(0, min(n, len(s.entries)))
	return append([]*Entry(nil), s.entries[n:]...)
}

// NumEntries returns the number of distinct entries in the store.
func (s *Store) NumEntries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// HasEntry reports whether the store holds the entry with hash h.
func (s *Store) HasEntry(h Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.entryIndex[h]
	return ok
}

// GetEntry returns the entry with hash h, if the store holds it.
func (s *Store) GetEntry(h Hash) (*Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.entryIndex[h]
	if !ok {
		return nil, false
	}
	return s.entries[i], true
}

// Append writes one batch to the end of the file: the blocks first, then the
// entries, as one write(2), so that a crash keeps a prefix of the batch's
// records. Entries and blocks the store already holds (or that repeat within
// the batch) are skipped. Entries must come from Sign or Decode, and must
// have passed Verify: the store does not check signatures when it appends
// or when it opens. Append returns once the batch is written, before it is
// durable: call Sync for that. It fails, writing nothing, if an entry was
// never encoded or a block is longer than BlockSize.
func (s *Store) Append(entries []*Entry, blocks [][]byte) error {
	for i, e := range entries {
		switch enc := e.Encoded(); {
		case enc == nil:
			return fmt.Errorf("append to %s: entry %d was never signed or decoded", s.path, i)
		case len(enc) > MaxEntrySize:
			return fmt.Errorf("append to %s: entry %d is %d bytes, more than %d", s.path, i, len(enc), MaxEntrySize)
		}
	}
	hashes := make([]Hash, len(blocks))
	for i, b := range blocks {
		if len(b) > BlockSize {
			return fmt.Errorf("append to %s: block %d is %d bytes, more than %d", s.path, i, len(b), BlockSize)
		}
		hashes[i] = Sum(b)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	if s.failed != nil {
		return s.failed
	}
	type newBlock struct {
		h   Hash
		loc storeBlockLoc
	}
	var newBlocks []newBlock
	var newEntries []*Entry
	buf := s.wbuf[:0]
	for i, b := range blocks {
		h := hashes[i]
		if _, ok := s.blocks[h]; ok {
			continue
		}
		dup := false
		for _, nb := range newBlocks {
			dup = dup || nb.h == h
		}
		if dup {
			continue
		}
		off := s.size + int64(len(buf)) + recHeaderLen
		newBlocks = append(newBlocks, newBlock{h, storeBlockLoc{off: off, n: int32(len(b))}})
		buf = recAppend(buf, recBlock, b)
	}
	var batch map[Hash]bool
	for _, e := range entries {
		h := e.Hash()
		if _, ok := s.entryIndex[h]; ok || batch[h] {
			continue
		}
		if batch == nil {
			batch = make(map[Hash]bool, len(entries))
		}
		batch[h] = true
		newEntries = append(newEntries, e)
		buf = recAppend(buf, recEntry, e.Encoded())
	}
	if cap(buf) <= 4<<20 {
		s.wbuf = buf[:0]
	} else {
		s.wbuf = nil
	}
	if len(buf) == 0 {
		return nil
	}
	if _, err := s.f.Write(buf); err != nil {
		err = fmt.Errorf("append %d bytes to %s at offset %d: %w", len(buf), s.path, s.size, err)
		// Cut off whatever part of the batch reached the file, so the next
		// append does not follow a partial record.
		if terr := s.f.Truncate(s.size); terr != nil {
			s.failed = fmt.Errorf("%w; and truncating back failed: %v", err, terr)
		}
		return err
	}
	for _, nb := range newBlocks {
		s.blocks[nb.h] = nb.loc
		s.blockBytes += int64(nb.loc.n)
	}
	for _, e := range newEntries {
		s.entryIndex[e.Hash()] = len(s.entries)
		s.entries = append(s.entries, e)
	}
	s.size += int64(len(buf))
	s.written++
	return nil
}

// readEncoded reads back the canonical bytes of a loaded entry and checks
// them against its hash. Safe for concurrent use (ReadAt).
func (s *Store) readEncoded(off int64, n int32, h Hash) ([]byte, error) {
	b := make([]byte, n)
	if _, err := s.f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read entry %s from %s at offset %d: %w", h.Short(), s.path, off, err)
	}
	if Sum(b) != h {
		return nil, fmt.Errorf("entry %s at offset %d of %s: %w", h.Short(), off, s.path, ErrBlockCorrupt)
	}
	return b, nil
}

// Sync makes every batch appended before it was called durable (fsync).
// Concurrent callers share fsyncs: a caller whose batches an fsync already
// in progress covers waits for it; the others wait and then start one for
// all of them. With NoSync it does nothing. Once an fsync has failed, the
// kernel may have dropped the unwritten data, so that failure is sticky:
// Sync and Append return it from then on and the store must be reopened.
func (s *Store) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	if s.noSync {
		return nil
	}
	target := s.written
	for {
		if s.failed != nil {
			return s.failed
		}
		if s.synced >= target {
			return nil
		}
		if s.closed {
			return ErrStoreClosed
		}
		if !s.syncing {
			break
		}
		s.cond.Wait()
	}
	s.syncing = true
	upto := s.written
	s.mu.Unlock()
	err := s.f.Sync()
	s.mu.Lock()
	s.syncing = false
	if err != nil {
		s.failed = fmt.Errorf("fsync %s: %w", s.path, err)
	} else {
		s.synced = upto
	}
	s.cond.Broadcast()
	return s.failed
}

// Block returns the block with hash h, read from the file and checked
// against h. It returns ErrBlockMissing if the store does not hold it, and
// an error wrapping ErrBlockCorrupt if the file's bytes do not match.
func (s *Store) Block(h Hash) ([]byte, error) {
	s.mu.Lock()
	loc, ok := s.blocks[h]
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrStoreClosed
	}
	if !ok {
		return nil, ErrBlockMissing
	}
	b := make([]byte, loc.n)
	if _, err := s.f.ReadAt(b, loc.off); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil, ErrStoreClosed
		}
		return nil, fmt.Errorf("read block %s from %s at offset %d: %w", h.Short(), s.path, loc.off, err)
	}
	if Sum(b) != h {
		return nil, fmt.Errorf("block %s in %s at offset %d: %w: its bytes do not match its hash", h.Short(), s.path, loc.off, ErrBlockCorrupt)
	}
	return b, nil
}

// HasBlock reports whether the store holds the block with hash h.
func (s *Store) HasBlock(h Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blocks[h]
	return ok
}

// NumBlocks returns the number of distinct blocks in the store.
func (s *Store) NumBlocks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.blocks)
}

// BlockBytes returns the total size of the distinct blocks in the store.
func (s *Store) BlockBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blockBytes
}

// Corruptions returns the damaged stretches found in the middle of the file
// at open, in file order (a torn tail is not one: it was truncated).
func (s *Store) Corruptions() []Corruption {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Corruption(nil), s.corruptions...)
}

// Size returns the length of the store file in bytes.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Path returns the store file's path.
func (s *Store) Path() string { return s.path }

// Close waits for an fsync in progress, fsyncs what was appended since the
// last one (unless NoSync), closes the file and releases the store's lock.
// The in-memory accessors keep working; Append, Sync and Block return
// ErrStoreClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.syncing {
		s.cond.Wait()
	}
	if s.closed {
		return ErrStoreClosed
	}
	var err error
	if !s.noSync && s.failed == nil && s.synced < s.written {
		if err = s.f.Sync(); err != nil {
			err = fmt.Errorf("fsync %s: %w", s.path, err)
		}
	}
	s.closed = true
	s.cond.Broadcast()
	if cerr := s.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", s.path, cerr)
	}
	if uerr := s.lock.Unlock(); uerr != nil && err == nil {
		err = uerr
	}
	return err
}
