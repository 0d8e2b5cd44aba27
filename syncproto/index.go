package syncproto

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sort"
	"strings"
	"sync"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// The Merkle index.
//
// Entries are grouped by path (an entry counts under its own Path: a rename
// under its new path, an annotation under the path it annotates). Each path
// P has a set of items: its own entries, keyed by their hash, and one item
// per child name c that has entries at or below P/c, keyed by
// SHA-256("basefs/sync/name\x00" || c). A set's digest is a function of the
// set alone (never of insertion order):
//
//	D(S, d) = SHA-256(0x10 || item...)                 if |S| <= leafItems or d = 64
//	        = SHA-256(0x11 || D'(S_0, d+1) ... D'(S_15, d+1))  otherwise
//
// where the items of a list are in key order, an entry item is 0x00 || hash,
// a child item is 0x01 || len(name) || name || digest(P/c), S_x is the
// subset whose key has nibble x at position d, and D' is D, or 32 zero bytes
// for an empty subset. The digest of P is D(items(P), 0); the root digest is
// that of "/". So a path's digest covers its entries' sorted hashes and its
// children's digests, and a directory's children (or a path's entries, for a
// file written thousands of times) are bucketed by key into a 16-ary trie:
// any one summary message holds at most 16 digests or 16 items, and two sets
// differing in one item differ in O(log n) trie nodes. Lists and sub-bucket
// digests are hashed, never XORed or summed, so a peer cannot craft a
// different set with the same digest without a SHA-256 collision.
//
// Memory. The canonical trie exists only in digests; in memory, a path keeps
// its items in one sorted bucket (a slice of entry hashes and a slice of
// child pointers) until it has more than splitItems items, and only then
// gets 16 sub-buckets, each split again past splitItems. So an entry costs
// its 32-byte hash in a slice (plus slice slack), and a path about 150 bytes
// (name, key, cached digest, bucket); buckets are few (one per ~100-256
// items). Digests are cached per bucket and recomputed lazily: adding an
// entry marks dirty only the buckets on its route from the root, and the
// next digest query rehashes only those, each at most splitItems items.
const (
	leafItems  = 16  // canonical: a set of at most this many items is listed
	splitItems = 256 // memory: a bucket gets sub-buckets past this many items
	keyNibbles = 64  // nibbles in a key: the trie's depth limit
)

var nameDomain = []byte("basefs/sync/name\x00")

// nameKey is the trie key of a child name.
func nameKey(name string) log.Hash {
	h := sha256.New()
	h.Write(nameDomain)
	h.Write([]byte(name))
	var k log.Hash
	h.Sum(k[:0])
	return k
}

type bucket struct {
	entries []log.Hash // sorted; nil once split
	kids    []*pnode   // sorted by key; nil once split
	sub     *[16]*bucket
	digest  log.Hash
	clean   bool
}

func (b *bucket) size() int { return len(b.entries) + len(b.kids) }

// pnode is one path of the index.
type pnode struct {
	name string
	key  log.Hash
	b    bucket
}

// Index is the Merkle index of one replica's entries by path. It is safe for
// concurrent use. Entries are only ever added (a store never loses
// entries); adding one that is already there does nothing.
type Index struct {
	mu   sync.Mutex
	root *pnode
	n    int
	h    hash.Hash // reused under mu

	qmu   sync.Mutex
	queue []qitem
}

type qitem struct {
	path string
	h    log.Hash
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{root: &pnode{}, h: sha256.New()}
}

// IndexReplica builds the index of r's entries and keeps it up to date with
// r's updates until cancel is called.
func IndexReplica(r *replica.Replica) (ix *Index, cancel func()) {
	ix = NewIndex()
	// Subscribe first, so nothing stored during the scan is missed; what
	// both deliver is added once.
	cancel = r.Subscribe(func(u replica.Update) { ix.Enqueue(u.Entries) })
	const chunk = 4096
	batch := make([]qitem, 0, chunk)
	flush := func() {
		ix.mu.Lock()
		for _, q := range batch {
			ix.add(q.path, q.h)
		}
		ix.mu.Unlock()
		batch = batch[:0]
	}
	r.ScanEntries(0, func(e *log.Entry) bool {
		batch = append(batch, qitem{e.Path, e.Hash()})
		if len(batch) == chunk {
			flush()
		}
		return true
	})
	flush()
	return ix, cancel
}

// Enqueue records entries to add. It never waits for a digest computation
// (it is called from replica update callbacks, which must not block): the
// entries are added by the next query, or here when the index is idle and
// the queue is long.
func (ix *Index) Enqueue(entries []*log.Entry) {
	ix.qmu.Lock()
	for _, e := range entries {
		ix.queue = append(ix.queue, qitem{e.Path, e.Hash()})
	}
	long := len(ix.queue) >= 4096
	ix.qmu.Unlock()
	if long && ix.mu.TryLock() {
		ix.drain()
		ix.mu.Unlock()
	}
}

// Add adds one entry now.
func (ix *Index) Add(path string, h log.Hash) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drain()
	return ix.add(path, h)
}

// drain adds the queued entries. Callers hold mu.
func (ix *Index) drain() {
	ix.qmu.Lock()
	q := ix.queue
	ix.queue = nil
	ix.qmu.Unlock()
	for _, it := range q {
		ix.add(it.path, it.h)
	}
}

// Len returns the number of entries indexed.
func (ix *Index) Len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drain()
	return ix.n
}

// Digest returns the root digest (zero for an empty index).
func (ix *Index) Digest() log.Hash {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drain()
	if ix.n == 0 {
		return log.ZeroHash
	}
	return ix.pdigest(ix.root)
}

// components splits a valid path into its names ("/" has none).
func forEachName(path string, fn func(name string) bool) {
	if path == "/" {
		return
	}
	rest := path[1:]
	for {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			fn(rest)
			return
		}
		if !fn(rest[:i]) {
			return
		}
		rest = rest[i+1:]
	}
}

// add inserts an entry. Callers hold mu.
func (ix *Index) add(path string, h log.Hash) bool {
	// Find or create the path's node, remembering the chain to mark dirty.
	var chainBuf [16]*pnode
	chain := append(chainBuf[:0], ix.root)
	p := ix.root
	created := false
	forEachName(path, func(name string) bool {
		k, c := p.kid(name, true)
		created = created || c
		_ = k
		p = k
		chain = append(chain, p)
		return true
	})
	if !insertEntry(&p.b, 0, h) {
		if created {
			// Cannot happen: a new path has no entries yet.
			panic("syncproto: index inconsistent")
		}
		return false
	}
	ix.n++
	for i := 0; i+1 < len(chain); i++ {
		markRoute(&chain[i].b, &chain[i+1].key)
	}
	markRoute(&p.b, &h)
	return true
}

// markRoute marks dirty the buckets from b down to the one holding key.
func markRoute(b *bucket, key *log.Hash) {
	for d := 0; b != nil; d++ {
		b.clean = false
		if b.sub == nil {
			return
		}
		b = b.sub[nib(key, d)]
	}
}

// leafFor returns the leaf bucket where key belongs, creating sub-buckets on
// the way when create is set, and its depth.
func leafFor(b *bucket, key *log.Hash, create bool) (*bucket, int) {
	d := 0
	for b.sub != nil {
		x := nib(key, d)
		nb := b.sub[x]
		if nb == nil {
			if !create {
				return nil, d + 1
			}
			nb = &bucket{}
			b.sub[x] = nb
		}
		b = nb
		d++
	}
	return b, d
}

// kid finds child name of p, creating it if create is set; created reports
// whether it did.
func (p *pnode) kid(name string, create bool) (k *pnode, created bool) {
	if p.b.sub == nil && len(p.b.kids) <= 32 {
		// Small: compare names, no hashing.
		for _, k := range p.b.kids {
			if k.name == name {
				return k, false
			}
		}
		if !create {
			return nil, false
		}
	}
	key := nameKey(name)
	b, d := leafFor(&p.b, &key, create)
	if b == nil {
		return nil, false
	}
	i := sort.Search(len(b.kids), func(i int) bool { return bytes.Compare(b.kids[i].key[:], key[:]) >= 0 })
	if i < len(b.kids) && b.kids[i].key == key && b.kids[i].name == name {
		return b.kids[i], false
	}
	if !create {
		return nil, false
	}
	k = &pnode{name: strings.Clone(name), key: key}
	b.kids = append(b.kids, nil)
	copy(b.kids[i+1:], b.kids[i:])
	b.kids[i] = k
	maybeSplit(b, d)
	return k, true
}

// insertEntry adds h to the bucket tree at b (depth d); false if present.
func insertEntry(b *bucket, d int, h log.Hash) bool {
	b, d = leafFor(b, &h, true)
	i := sort.Search(len(b.entries), func(i int) bool { return bytes.Compare(b.entries[i][:], h[:]) >= 0 })
	if i < len(b.entries) && b.entries[i] == h {
		return false
	}
	b.entries = append(b.entries, log.Hash{})
	copy(b.entries[i+1:], b.entries[i:])
	b.entries[i] = h
	maybeSplit(b, d)
	return true
}

// maybeSplit gives a leaf bucket at depth d sub-buckets once it holds more
// than splitItems items, recursively.
func maybeSplit(b *bucket, d int) {
	if b.size() <= splitItems || d >= keyNibbles {
		return
	}
	b.sub = new([16]*bucket)
	for _, h := range b.entries {
		x := nib(&h, d)
		if b.sub[x] == nil {
			b.sub[x] = &bucket{}
		}
		b.sub[x].entries = append(b.sub[x].entries, h)
	}
	for _, k := range b.kids {
		x := nib(&k.key, d)
		if b.sub[x] == nil {
			b.sub[x] = &bucket{}
		}
		b.sub[x].kids = append(b.sub[x].kids, k)
	}
	b.entries, b.kids = nil, nil
	b.clean = false
	for _, s := range b.sub {
		if s != nil {
			maybeSplit(s, d+1)
		}
	}
}

// ---- digests ----

// pdigest is a path's digest. Callers hold mu.
func (ix *Index) pdigest(p *pnode) log.Hash { return ix.bdigest(&p.b, 0) }

// bdigest is the canonical digest of a bucket at depth d, cached.
func (ix *Index) bdigest(b *bucket, d int) log.Hash {
	if b.clean {
		return b.digest
	}
	if b.sub != nil {
		var subs [16]log.Hash
		for x, s := range b.sub {
			if s != nil && s.size() > 0 || s != nil && s.sub != nil {
				subs[x] = ix.bdigest(s, d+1)
			}
		}
		b.digest = ix.splitDigest(&subs)
	} else {
		b.digest = ix.setDigest(b.entries, b.kids, d)
	}
	b.clean = true
	return b.digest
}

// setDigest is D(S, d) for a set given as sorted entries and kids.
func (ix *Index) setDigest(entries []log.Hash, kids []*pnode, d int) log.Hash {
	n := len(entries) + len(kids)
	if n == 0 {
		return log.ZeroHash
	}
	if n <= leafItems || d >= keyNibbles {
		return ix.listDigest(entries, kids)
	}
	var subs [16]log.Hash
	ei, ki := 0, 0
	for x := 0; x < 16; x++ {
		ej := ei
		for ej < len(entries) && nib(&entries[ej], d) == x {
			ej++
		}
		kj := ki
		for kj < len(kids) && nib(&kids[kj].key, d) == x {
			kj++
		}
		subs[x] = ix.setDigest(entries[ei:ej], kids[ki:kj], d+1)
		ei, ki = ej, kj
	}
	return ix.splitDigest(&subs)
}

func (ix *Index) splitDigest(subs *[16]log.Hash) log.Hash {
	h := sha256.New()
	h.Write([]byte{0x11})
	for i := range subs {
		h.Write(subs[i][:])
	}
	var out log.Hash
	h.Sum(out[:0])
	return out
}

// listDigest hashes a list of items in key order. The kids' digests are
// computed (recursively) first, so the shared hasher is free.
func (ix *Index) listDigest(entries []log.Hash, kids []*pnode) log.Hash {
	kd := make([]log.Hash, len(kids))
	for i, k := range kids {
		kd[i] = ix.pdigest(k)
	}
	h := ix.h
	h.Reset()
	h.Write([]byte{0x10})
	var tmp [binary.MaxVarintLen64 + 1]byte
	ei, ki := 0, 0
	for ei < len(entries) || ki < len(kids) {
		if ki == len(kids) || ei < len(entries) && bytes.Compare(entries[ei][:], kids[ki].key[:]) <= 0 {
			h.Write([]byte{0x00})
			h.Write(entries[ei][:])
			ei++
			continue
		}
		tmp[0] = 0x01
		n := binary.PutUvarint(tmp[1:], uint64(len(kids[ki].name)))
		h.Write(tmp[:1+n])
		h.Write([]byte(kids[ki].name))
		h.Write(kd[ki][:])
		ki++
	}
	var out log.Hash
	h.Sum(out[:0])
	return out
}

// listRepDigest is the digest of a list as received in a rep.
func listRepDigest(r *rep) log.Hash {
	h := sha256.New()
	h.Write([]byte{0x10})
	var tmp [binary.MaxVarintLen64 + 1]byte
	ei, ki := 0, 0
	keys := make([]log.Hash, len(r.Kids))
	for i, k := range r.Kids {
		keys[i] = nameKey(k.Name)
	}
	for ei < len(r.Entries) || ki < len(r.Kids) {
		if ki == len(r.Kids) || ei < len(r.Entries) && bytes.Compare(r.Entries[ei][:], keys[ki][:]) <= 0 {
			h.Write([]byte{0x00})
			h.Write(r.Entries[ei][:])
			ei++
			continue
		}
		tmp[0] = 0x01
		n := binary.PutUvarint(tmp[1:], uint64(len(r.Kids[ki].Name)))
		h.Write(tmp[:1+n])
		h.Write([]byte(r.Kids[ki].Name))
		h.Write(r.Kids[ki].Digest[:])
		ki++
	}
	var out log.Hash
	h.Sum(out[:0])
	return out
}

// ---- queries ----

// lookup returns the node of path, or nil. Callers hold mu.
func (ix *Index) lookup(path string) *pnode {
	p := ix.root
	forEachName(path, func(name string) bool {
		p, _ = p.kid(name, false)
		return p != nil
	})
	if ix.n == 0 {
		return nil
	}
	return p
}

// view is the set of items under one node of the index: either a
// materialized bucket (sub != nil) or sorted slices.
type view struct {
	b       *bucket // materialized bucket at exactly the node's depth, or nil
	entries []log.Hash
	kids    []*pnode
	depth   int
	empty   bool
}

// at returns the items of path under prefix. Callers hold mu.
func (ix *Index) at(ref nodeRef) view {
	p := ix.lookup(ref.Path)
	if p == nil {
		return view{empty: true}
	}
	b := &p.b
	d := 0
	for d < int(ref.Prefix.n) && b.sub != nil {
		b = b.sub[ref.Prefix.nib(d)]
		if b == nil {
			return view{empty: true}
		}
		d++
	}
	if b.sub != nil {
		return view{b: b, depth: d}
	}
	v := view{depth: int(ref.Prefix.n)}
	if d == int(ref.Prefix.n) {
		v.entries, v.kids = b.entries, b.kids
	} else {
		// Sorted by key, so the items under the prefix are contiguous.
		lo := sort.Search(len(b.entries), func(i int) bool { return !keyBefore(&b.entries[i], ref.Prefix) })
		hi := lo
		for hi < len(b.entries) && ref.Prefix.matches(&b.entries[hi]) {
			hi++
		}
		v.entries = b.entries[lo:hi]
		lo = sort.Search(len(b.kids), func(i int) bool { return !keyBefore(&b.kids[i].key, ref.Prefix) })
		hi = lo
		for hi < len(b.kids) && ref.Prefix.matches(&b.kids[hi].key) {
			hi++
		}
		v.kids = b.kids[lo:hi]
	}
	v.empty = len(v.entries)+len(v.kids) == 0
	return v
}

// keyBefore reports whether k sorts before every key with prefix p.
func keyBefore(k *log.Hash, p prefix) bool {
	for i := 0; i < int(p.n); i++ {
		a, b := nib(k, i), p.nib(i)
		if a != b {
			return a < b
		}
	}
	return false
}

// rep is the node's representation for a peer. Callers hold mu.
func (ix *Index) rep(ref nodeRef) rep {
	v := ix.at(ref)
	switch {
	case v.empty:
		return rep{Kind: repEmpty}
	case v.b != nil:
		return rep{Kind: repSplit, Sub: ix.viewSubDigests(v)}
	}
	n := len(v.entries) + len(v.kids)
	if n <= leafItems || v.depth >= keyNibbles {
		r := rep{Kind: repList, Entries: append([]log.Hash(nil), v.entries...)}
		for _, k := range v.kids {
			r.Kids = append(r.Kids, kidRef{Name: k.name, Digest: ix.pdigest(k)})
		}
		return r
	}
	return rep{Kind: repSplit, Sub: ix.viewSubDigests(v)}
}

// subDigests returns the canonical digests of the 16 sub-buckets of a node
// (zero for empty ones), whatever its own size. Callers hold mu.
func (ix *Index) subDigests(ref nodeRef) [16]log.Hash { return ix.viewSubDigests(ix.at(ref)) }

func (ix *Index) viewSubDigests(v view) [16]log.Hash {
	var subs [16]log.Hash
	switch {
	case v.empty || v.depth >= keyNibbles:
		return subs
	case v.b != nil:
		for x, s := range v.b.sub {
			if s != nil {
				subs[x] = ix.bdigest(s, v.depth+1)
			}
		}
		return subs
	}
	ei, ki := 0, 0
	for x := 0; x < 16; x++ {
		ej := ei
		for ej < len(v.entries) && nib(&v.entries[ej], v.depth) == x {
			ej++
		}
		kj := ki
		for kj < len(v.kids) && nib(&v.kids[kj].key, v.depth) == x {
			kj++
		}
		subs[x] = ix.setDigest(v.entries[ei:ej], v.kids[ki:kj], v.depth+1)
		ei, ki = ej, kj
	}
	return subs
}

// items lists every item under a node (entries, and kids with digests).
// Callers hold mu.
func (ix *Index) items(ref nodeRef) (entries []log.Hash, kids []kidRef) {
	v := ix.at(ref)
	var walk func(b *bucket)
	add := func(es []log.Hash, ks []*pnode) {
		entries = append(entries, es...)
		for _, k := range ks {
			kids = append(kids, kidRef{Name: k.name, Digest: ix.pdigest(k)})
		}
	}
	walk = func(b *bucket) {
		if b.sub == nil {
			add(b.entries, b.kids)
			return
		}
		for _, s := range b.sub {
			if s != nil {
				walk(s)
			}
		}
	}
	if v.b != nil {
		walk(v.b)
	} else {
		add(v.entries, v.kids)
	}
	return entries, kids
}

// collect appends every entry under a node, its descendants' included, in
// pre-order (a directory's own entries before its children's), stopping
// once out holds limit entries. Callers hold mu.
func (ix *Index) collect(ref nodeRef, out []log.Hash, limit int) []log.Hash {
	v := ix.at(ref)
	if v.b != nil {
		return collectBucket(v.b, out, limit)
	}
	out = append(out, v.entries...)
	for _, k := range v.kids {
		if len(out) >= limit {
			break
		}
		out = collectBucket(&k.b, out, limit)
	}
	return out
}

func collectBucket(b *bucket, out []log.Hash, limit int) []log.Hash {
	var kids []*pnode
	var walk func(b *bucket)
	walk = func(b *bucket) {
		if b.sub == nil {
			out = append(out, b.entries...)
			kids = append(kids, b.kids...)
			return
		}
		for _, s := range b.sub {
			if s != nil {
				walk(s)
			}
		}
	}
	// Own entries of every sub-bucket first, then the children.
	walk(b)
	for _, k := range kids {
		if len(out) >= limit {
			break
		}
		out = collectBucket(&k.b, out, limit)
	}
	return out
}

// Rep, Items and Collect are the locked forms of rep, items and collect.
func (ix *Index) lockedRep(refs []nodeRef) []rep {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drain()
	out := make([]rep, len(refs))
	for i, r := range refs {
		out[i] = ix.rep(r)
	}
	return out
}

func (ix *Index) lockedCollect(refs []nodeRef, limit int) []log.Hash {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drain()
	var out []log.Hash
	for _, r := range refs {
		if len(out) >= limit {
			break
		}
		out = ix.collect(r, out, limit)
	}
	return out
}
