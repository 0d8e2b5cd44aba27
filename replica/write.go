package replica

import (
	"crypto/ed25519"
	"fmt"
	"sort"
	"strings"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

// txn builds the entries of one operation. Each entry is applied to the view
// as it is made, so the next one sees its effect; commit then appends them all
// to the store in one write. Validation happens before the first entry is
// made, so a refused operation leaves the log as it was.
type txn struct {
	r        *Replica
	key      ed25519.PrivateKey
	pub      [32]byte
	entries  []*log.Entry
	blocks   [][]byte
	changes  []view.Change
	contents map[log.Hash][]byte // to materialize after commit
}

func (r *Replica) begin(key ed25519.PrivateKey) (*txn, error) {
	if r.failed != nil {
		return nil, &Error{Kind: Other, Detail: "filesystem needs reopening after an earlier write failure", Err: r.failed}
	}
	if r.store == nil {
		return nil, errorf(Other, "", "filesystem is closed")
	}
	t := &txn{r: r, key: key, contents: map[log.Hash][]byte{}}
	copy(t.pub[:], key.Public().(ed25519.PublicKey))
	return t, nil
}

// add signs e, applies it to the view and keeps it for commit.
func (t *txn) add(e *log.Entry) (*log.Entry, error) {
	e.Time = t.r.now()
	if err := e.Sign(t.key); err != nil {
		return nil, &Error{Kind: Invalid, Path: e.Path, Detail: err.Error(), Err: err}
	}
	t.changes = append(t.changes, t.r.view.Apply(e)...)
	t.r.noteContents([]*log.Entry{e})
	t.entries = append(t.entries, e)
	return e, nil
}

// commit stores the entries. If the store refuses them, the view (which has
// them applied) no longer matches the store: the replica refuses further
// writes until it is reopened.
func (t *txn) commit(sync bool) ([]*log.Entry, error) {
	r := t.r
	if len(t.entries) == 0 {
		return nil, nil
	}
	if err := r.store.Append(t.entries, t.blocks); err != nil {
		r.failed = err
		return nil, &Error{Kind: Other, Detail: fmt.Sprintf("could not store the change: %v", err), Err: err}
	}
	if sync && !r.opts.NoSync {
		if err := r.store.Sync(); err != nil {
			r.failed = err
			return nil, &Error{Kind: Other, Detail: fmt.Sprintf("could not sync the store: %v", err), Err: err}
		}
	}
	for h, data := range t.contents {
		if err := r.cache.Put(h, data); err != nil {
			r.logger.Warn("could not cache content", "hash", h.Short(), "err", err)
		}
	}
	return t.entries, nil
}

// run executes one operation: build under the write lock, commit, then —
// with the lock released, but in commit order — tell the listeners (see
// enqueue and drain).
func (r *Replica) run(key ed25519.PrivateKey, sync bool, build func(t *txn) error) error {
	r.mu.Lock()
	t, err := r.begin(key)
	if err == nil {
		err = build(t)
	}
	if err == nil {
		_, err = t.commit(sync)
	}
	if err != nil || len(t.entries) == 0 {
		r.mu.Unlock()
		return err
	}
	r.enqueue(Update{Entries: t.entries, Blocks: blockHashes(t.blocks), Changes: t.changes, Local: true})
	r.mu.Unlock()
	r.drain()
	return nil
}

func blockHashes(blocks [][]byte) []log.Hash {
	if len(blocks) == 0 {
		return nil
	}
	hs := make([]log.Hash, len(blocks))
	for i, b := range blocks {
		hs[i] = log.Sum(b)
	}
	return hs
}

// requireAuthority fails unless the txn's key may write at path.
func (t *txn) requireAuthority(path string) error {
	if _, ok := t.r.view.Level(t.pub, path); !ok {
		return &Error{Kind: Permission, Path: path,
			Detail: fmt.Sprintf("key %s has no write authority over %s", log.ShortFingerprint(t.pub[:]), path)}
	}
	return nil
}

// parentFor returns the parent of a new chain entry at path: its head, or
// when it has none its directory's head.
func (t *txn) parentFor(path string) (log.Hash, error) {
	if h, _, ok := t.r.view.Head(path); ok {
		return h.Hash(), nil
	}
	if d, _, ok := t.r.view.Head(log.Dir(path)); ok {
		return d.Hash(), nil
	}
	return log.ZeroHash, pathErr(NotExist, log.Dir(path))
}

// missingDirs returns the ancestors of path that must be created, outermost
// first, or an error when one of them exists but is not a directory.
func (t *txn) missingDirs(path string) ([]string, error) {
	var missing []string
	for d := log.Dir(path); ; d = log.Dir(d) {
		n, ok := t.r.view.Lookup(d)
		if ok {
			if n.Kind != view.KindDir {
				return nil, pathErr(NotDir, d)
			}
			break
		}
		missing = append(missing, d)
		if d == "/" {
			break
		}
	}
	for i, j := 0, len(missing)-1; i < j; i, j = i+1, j-1 {
		missing[i], missing[j] = missing[j], missing[i]
	}
	return missing, nil
}

// prepareParents checks that path's directory exists, or — with create —
// that the key may create the missing ones; it returns those to create.
func (t *txn) prepareParents(path string, create bool) ([]string, error) {
	missing, err := t.missingDirs(path)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 && !create {
		return nil, pathErr(NotExist, log.Dir(path))
	}
	for _, d := range missing {
		if err := t.requireAuthority(d); err != nil {
			return nil, err
		}
	}
	return missing, nil
}

func (t *txn) mkdirs(dirs []string, mode uint32) error {
	for _, d := range dirs {
		par, err := t.parentFor(d)
		if err != nil {
			return err
		}
		if _, err := t.add(&log.Entry{Action: log.ActMkdir, Parent: par, Path: d, Mode: mode}); err != nil {
			return err
		}
	}
	return nil
}

func checkPath(path string) error {
	if err := log.ValidatePath(path); err != nil {
		return &Error{Kind: Invalid, Path: path, Detail: err.Error()}
	}
	return nil
}

// checkNewName refuses a path a write would create when it holds a
// control character (a byte below 0x20, or 0x7f): such names would carry
// terminal escapes into every listing. Entries with such paths that come
// from peers are still accepted (they are valid in the log), and existing
// ones can be removed or renamed.
func checkNewName(path string) error {
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f {
			return errorf(Invalid, "", "%q: names with control characters are refused (byte 0x%02x)", path, c)
		}
	}
	return nil
}

func checkWritable(path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if path == "/" {
		return errorf(Invalid, path, "/ cannot be changed that way")
	}
	return nil
}

// minDeltaSize is the smallest file worth encoding as a delta.
const minDeltaSize = 1024

// WriteOptions tune WriteFile.
type WriteOptions struct {
	Mode      uint32 // permission bits; 0 keeps the file's mode, or 0644 for a new file
	MTime     int64  // explicit modification time (unix ns); 0: the entry's time
	Parents   bool   // create missing parent directories
	Exclusive bool   // fail if the path exists
	Sync      bool   // fsync before returning
}

// WriteFile makes data the content of the file at path, signed with key.
// Writing through a hard link writes the file it links to.
func (r *Replica) WriteFile(key ed25519.PrivateKey, path string, data []byte, o WriteOptions) (*log.Entry, error) {
	if err := checkWritable(path); err != nil {
		return nil, err
	}
	if err := checkNewName(path); err != nil {
		return nil, err
	}
	if uint64(len(data)) > log.MaxFileSize {
		return nil, errorf(Invalid, path, "file of %d bytes is larger than the limit of %d", len(data), log.MaxFileSize)
	}
	// Encoding is the expensive part: do it before taking the write lock,
	// against the current version as delta base, so concurrent writers use
	// every core. The base is checked again under the lock.
	var base []byte
	var baseHash log.Hash
	noDelta := true
	if len(data) > minDeltaSize { // a delta pays only for files of some size
		r.mu.RLock()
		if n, ok := r.view.Lookup(path); ok && n.Kind == view.KindFile && r.chainLen[n.ContentHash] < maxDeltaChain {
			if b, err := r.content(n.Content); err == nil {
				base, baseHash, noDelta = b, n.ContentHash, false
			}
		}
		r.mu.RUnlock()
	}
	encode := func(noDelta bool) (*log.Content, [][]byte, error) {
		c, blocks, err := r.codec.Encode(data, log.EncodeOptions{Base: base, BaseHash: baseHash, NoDelta: noDelta})
		if err != nil {
			return nil, nil, &Error{Kind: Other, Path: path, Detail: fmt.Sprintf("cannot encode content: %v", err), Err: err}
		}
		return c, blocks, nil
	}
	c, blocks, err := encode(noDelta)
	if err != nil {
		return nil, err
	}
	var out *log.Entry
	err = r.run(key, o.Sync, func(t *txn) error {
		target, mode := path, o.Mode
		current := log.ZeroHash
		if n, ok := r.view.Lookup(path); ok {
			switch {
			case o.Exclusive:
				return pathErr(Exist, path)
			case n.Kind == view.KindDir:
				return pathErr(IsDir, path)
			case n.Kind == view.KindFile:
				target = n.ContentKey()
				current = n.ContentHash
				if mode == 0 {
					mode = n.Mode
				}
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		if err := t.requireAuthority(target); err != nil {
			return err
		}
		missing, err := t.prepareParents(target, o.Parents)
		if err != nil {
			return err
		}
		if c.Encoding.IsDelta() && current != baseHash {
			// The file changed while we encoded: store this version whole.
			if c, blocks, err = encode(true); err != nil {
				return err
			}
		}
		if err := t.mkdirs(missing, 0o755); err != nil {
			return err
		}
		par, err := t.parentFor(target)
		if err != nil {
			return err
		}
		t.blocks = blocks
		if c.Encoding.IsDelta() {
			// Materialize deltas, so reading this version (or encoding the
			// next against it) does not replay the chain. Whole encodings
			// read from their own blocks.
			t.contents[c.Hash] = data
		}
		out, err = t.add(&log.Entry{Action: log.ActWrite, Parent: par, Path: target, Mode: mode, MTime: o.MTime, Content: c})
		return err
	})
	return out, err
}

// Mkdir creates a directory. With parents, missing parents are created and
// an existing directory is not an error.
func (r *Replica) Mkdir(key ed25519.PrivateKey, path string, mode uint32, parents, sync bool) error {
	if err := checkWritable(path); err != nil {
		return err
	}
	if err := checkNewName(path); err != nil {
		return err
	}
	if mode == 0 {
		mode = 0o755
	}
	return r.run(key, sync, func(t *txn) error {
		if n, ok := r.view.Lookup(path); ok {
			if parents && n.Kind == view.KindDir {
				return nil
			}
			return pathErr(Exist, path)
		}
		if err := t.requireAuthority(path); err != nil {
			return err
		}
		missing, err := t.prepareParents(path, parents)
		if err != nil {
			return err
		}
		return t.mkdirs(append(missing, path), mode)
	})
}

// subtree returns the visible paths at and below path, parents first.
func (r *Replica) subtree(path string) []view.Node {
	var out []view.Node
	r.view.Walk(path, func(n view.Node) bool {
		out = append(out, n)
		return true
	})
	return out
}

// Remove deletes the file, symlink or directory at path. A non-empty
// directory needs recursive.
func (r *Replica) Remove(key ed25519.PrivateKey, path string, recursive, sync bool) error {
	if err := checkWritable(path); err != nil {
		return err
	}
	return r.run(key, sync, func(t *txn) error {
		n, ok := r.view.Lookup(path)
		if !ok {
			return pathErr(NotExist, path)
		}
		nodes := []view.Node{n}
		if n.Kind == view.KindDir {
			nodes = r.subtree(path)
			if len(nodes) > 1 && !recursive {
				return pathErr(NotEmpty, path)
			}
		}
		for _, n := range nodes {
			if err := t.requireAuthority(n.Path); err != nil {
				return err
			}
		}
		// Children first, so no directory is deleted before what it holds.
		for i := len(nodes) - 1; i >= 0; i-- {
			h, _, ok := r.view.Head(nodes[i].Path)
			if !ok {
				continue
			}
			if _, err := t.add(&log.Entry{Action: log.ActDelete, Parent: h.Hash(), Path: nodes[i].Path}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Rename moves from to to with POSIX rename semantics: an existing file at to
// is replaced, an existing directory at to only when it is empty and from is
// a directory too.
func (r *Replica) Rename(key ed25519.PrivateKey, from, to string, sync bool) error {
	if err := checkWritable(from); err != nil {
		return err
	}
	if err := checkWritable(to); err != nil {
		return err
	}
	if err := checkNewName(to); err != nil {
		return err
	}
	if from == to {
		return nil
	}
	if log.IsUnder(to, from) {
		return errorf(Invalid, to, "cannot move %s into itself", from)
	}
	return r.run(key, sync, func(t *txn) error {
		src, ok := r.view.Lookup(from)
		if !ok {
			return pathErr(NotExist, from)
		}
		if dn, ok := r.view.Lookup(log.Dir(to)); !ok {
			return pathErr(NotExist, log.Dir(to))
		} else if dn.Kind != view.KindDir {
			return pathErr(NotDir, log.Dir(to))
		}
		if dst, ok := r.view.Lookup(to); ok {
			switch {
			case dst.Kind == view.KindDir && src.Kind != view.KindDir:
				return pathErr(IsDir, to)
			case dst.Kind != view.KindDir && src.Kind == view.KindDir:
				return pathErr(NotDir, to)
			case dst.Kind == view.KindDir:
				if kids, _ := r.view.List(to); len(kids) > 0 {
					return pathErr(NotEmpty, to)
				}
			}
		}
		moving := r.subtree(from)
		for _, n := range moving {
			if err := t.requireAuthority(n.Path); err != nil {
				return err
			}
			if err := t.requireAuthority(to + strings.TrimPrefix(n.Path, from)); err != nil {
				return err
			}
		}
		return t.renameTree(moving, from, to)
	})
}

// renameTree writes the rename entries for the nodes (from's subtree, parents
// first), whose heads were taken before anything moved.
func (t *txn) renameTree(moving []view.Node, from, to string) error {
	for _, n := range moving {
		np := to + strings.TrimPrefix(n.Path, from)
		par, err := t.parentFor(np)
		if err != nil {
			return err
		}
		if _, err := t.add(&log.Entry{Action: log.ActRename, Parent: par, Path: np, Target: n.Path, Ref: n.Head}); err != nil {
			return err
		}
	}
	return nil
}

// Symlink creates a symbolic link at path whose text is target.
func (r *Replica) Symlink(key ed25519.PrivateKey, target, path string, sync bool) error {
	if err := checkWritable(path); err != nil {
		return err
	}
	if err := checkNewName(path); err != nil {
		return err
	}
	if target == "" || len(target) > log.MaxTargetLen || strings.IndexByte(target, 0) >= 0 {
		return errorf(Invalid, path, "symlink target must be 1 to %d bytes without NUL", log.MaxTargetLen)
	}
	return r.run(key, sync, func(t *txn) error {
		if _, ok := r.view.Lookup(path); ok {
			return pathErr(Exist, path)
		}
		if err := t.requireAuthority(path); err != nil {
			return err
		}
		if _, err := t.prepareParents(path, false); err != nil {
			return err
		}
		par, err := t.parentFor(path)
		if err != nil {
			return err
		}
		_, err = t.add(&log.Entry{Action: log.ActSymlink, Parent: par, Path: path, Target: target})
		return err
	})
}

// Link creates a hard link at path to the file at existing.
func (r *Replica) Link(key ed25519.PrivateKey, existing, path string, sync bool) error {
	if err := checkWritable(path); err != nil {
		return err
	}
	if err := checkNewName(path); err != nil {
		return err
	}
	if err := checkWritable(existing); err != nil {
		return err
	}
	return r.run(key, sync, func(t *txn) error {
		src, ok := r.view.Lookup(existing)
		if !ok {
			return pathErr(NotExist, existing)
		}
		if src.Kind == view.KindDir {
			return errorf(Permission, existing, "hard links to directories are not allowed")
		}
		if src.Kind != view.KindFile {
			return errorf(Invalid, existing, "only regular files can be hard-linked")
		}
		if _, ok := r.view.Lookup(path); ok {
			return pathErr(Exist, path)
		}
		if err := t.requireAuthority(path); err != nil {
			return err
		}
		if _, err := t.prepareParents(path, false); err != nil {
			return err
		}
		primary := src.ContentKey()
		h, _, ok := r.view.Head(primary)
		if !ok {
			return pathErr(NotExist, primary)
		}
		par, err := t.parentFor(path)
		if err != nil {
			return err
		}
		_, err = t.add(&log.Entry{Action: log.ActLink, Parent: par, Path: path, Target: primary, Ref: h.Hash()})
		return err
	})
}

// SetAttr changes the mode (when mode is not nil) and the modification time
// (when mtime is not 0) of path. For a hard link it changes its file.
func (r *Replica) SetAttr(key ed25519.PrivateKey, path string, mode *uint32, mtime int64, sync bool) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if mode != nil && *mode > 0o7777 {
		return errorf(Invalid, path, "mode %o is out of range", *mode)
	}
	return r.run(key, sync, func(t *txn) error {
		n, ok := r.view.Lookup(path)
		if !ok {
			return pathErr(NotExist, path)
		}
		target := n.ContentKey()
		if err := t.requireAuthority(target); err != nil {
			return err
		}
		m := n.Mode
		if mode != nil {
			m = *mode
		}
		if m == n.Mode && (mtime == 0 || mtime == n.MTime) {
			return nil
		}
		h, _, ok := r.view.Head(target)
		if !ok {
			return pathErr(NotExist, target)
		}
		_, err := t.add(&log.Entry{Action: log.ActMode, Parent: h.Hash(), Path: target, Mode: m, MTime: mtime})
		return err
	})
}

// Grant gives pub write authority over path and below. A missing path is
// created as a directory first. Earlier revokes of pub that cover path are
// superseded: the key's earlier entries there count again.
func (r *Replica) Grant(key ed25519.PrivateKey, path string, pub ed25519.PublicKey, sync bool) (*log.Entry, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, errorf(Invalid, path, "public key of %d bytes", len(pub))
	}
	var out *log.Entry
	err := r.run(key, sync, func(t *txn) error {
		lvl, ok := r.view.Level(t.pub, path)
		if !ok || lvl > log.Depth(path) {
			return &Error{Kind: Permission, Path: path,
				Detail: fmt.Sprintf("key %s has no authority to grant over %s", log.ShortFingerprint(t.pub[:]), path)}
		}
		var grantee [32]byte
		copy(grantee[:], pub)
		if _, ok := r.view.Lookup(path); !ok {
			missing, err := t.missingDirs(path)
			if err != nil {
				return err
			}
			missing = append(missing, path)
			for _, d := range missing {
				if err := t.requireAuthority(d); err != nil {
					return err
				}
			}
			if err := t.mkdirs(missing, 0o755); err != nil {
				return err
			}
		}
		par, ok := r.view.AnyEntryAt(path)
		if !ok {
			return pathErr(NotExist, path)
		}
		supersedes := r.view.RevokedAt(grantee, path)
		if len(supersedes) > log.MaxHashes {
			supersedes = supersedes[:log.MaxHashes]
		}
		var err error
		out, err = t.add(&log.Entry{Action: log.ActGrant, Parent: par.Hash(), Path: path, Key: grantee, Hashes: supersedes})
		return err
	})
	return out, err
}

// ResolveKey finds the key whose fingerprint starts with prefix among the
// keys the filesystem knows (its root key and every granted key).
func (r *Replica) ResolveKey(prefix string) ([32]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	prefix = strings.ToLower(strings.TrimSuffix(prefix, "…"))
	if len(prefix) < 4 {
		return [32]byte{}, errorf(Invalid, "", "fingerprint %q is too short (give at least 4 hex digits)", prefix)
	}
	var found [][32]byte
	for _, k := range r.view.KnownKeys() {
		if strings.HasPrefix(log.Fingerprint(k[:]), prefix) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return [32]byte{}, errorf(NotExist, "", "no key with fingerprint %s appears in this filesystem", prefix)
	case 1:
		return found[0], nil
	}
	return [32]byte{}, errorf(Invalid, "", "fingerprint %s matches %d keys; give more digits", prefix, len(found))
}

// Revoke takes key revoked's authority at path and below away. It first
// acknowledges every entry of that key the current tree rests on, so the
// tree does not change; the key's entries this node has not seen, and its
// future ones, count nowhere.
func (r *Replica) Revoke(key ed25519.PrivateKey, path string, revoked [32]byte, sync bool) (*log.Entry, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	var out *log.Entry
	err := r.run(key, sync, func(t *txn) error {
		fp := log.ShortFingerprint(revoked[:])
		if revoked == r.view.RootKey() {
			return errorf(Invalid, path, "the filesystem's root key %s cannot be revoked", fp)
		}
		lvl, ok := r.view.Level(t.pub, path)
		if !ok || lvl >= log.Depth(path) {
			return &Error{Kind: Permission, Path: path,
				Detail: fmt.Sprintf("key %s cannot revoke at %s: that needs authority from above it", log.ShortFingerprint(t.pub[:]), path)}
		}
		below := false
		for _, g := range r.view.Grants() {
			if g.Key != revoked {
				continue
			}
			if log.IsUnder(path, g.Path) {
				return errorf(Invalid, path, "key %s's authority over %s comes from its grant at %s; revoke it there", fp, path, g.Path)
			}
			if log.IsAtOrUnder(g.Path, path) {
				below = true
			}
		}
		if !below {
			return errorf(Invalid, path, "key %s has no grant at or below %s", fp, path)
		}
		byPath := map[string][]log.Hash{}
		for _, tg := range r.view.AckSet(revoked, path) {
			byPath[tg.AckPath] = append(byPath[tg.AckPath], tg.Entry)
		}
		paths := make([]string, 0, len(byPath))
		for p := range byPath {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, ap := range paths {
			for hs := byPath[ap]; len(hs) > 0; {
				n := min(len(hs), log.MaxHashes)
				par, ok := r.view.AnyEntryAt(ap)
				if !ok {
					return pathErr(NotExist, ap)
				}
				if _, err := t.add(&log.Entry{Action: log.ActAck, Parent: par.Hash(), Path: ap, Hashes: hs[:n]}); err != nil {
					return err
				}
				hs = hs[n:]
			}
		}
		par, ok := r.view.AnyEntryAt(path)
		if !ok {
			return pathErr(NotExist, path)
		}
		var err error
		out, err = t.add(&log.Entry{Action: log.ActRevoke, Parent: par.Hash(), Path: path, Key: revoked})
		return err
	})
	return out, err
}
