package view

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"

	"github.com/basefs/basefs/log"
)

// vnode is a visible path in the tree.
type vnode struct {
	node      Node
	children  map[string]*vnode // directories
	sorted    []string          // children names, sorted; nil when stale
	hash      log.Hash          // directories: Merkle hash of the subtree
	hashDirty bool
}

// maxLinkHops bounds how many hard links are followed to find the file a
// link shows.
const maxLinkHops = 8

// computeNode returns what the chain's path shows, or nil when it is not
// visible.
func (v *View) computeNode(ch *chain) *Node {
	if ch.head == nil {
		return nil
	}
	if ch.path != "/" {
		dv := v.tree[log.Dir(ch.path)]
		if dv == nil || dv.node.Kind != KindDir {
			return nil
		}
	}
	st := v.stateAt(ch.head)
	if !st.Live() {
		return nil
	}
	he := ch.head.en.e
	n := &Node{Path: ch.path, Kind: st.Kind, Mode: st.Mode, MTime: st.MTime, Owner: st.Owner,
		Head: he.Hash(), HeadAuthor: he.Author, HeadAction: he.Action}
	switch st.Kind {
	case KindDir:
		n.Nlink = 2
	case KindSymlink:
		n.Target = st.Target
		n.Size = uint64(len(st.Target))
	case KindFile:
		n.Content = st.Content
		n.Size = st.Content.Size
		n.ContentHash = st.Content.Hash
		n.Nlink = 1
	case KindLink:
		primary, pst := v.followLink(ch, st)
		if pst == nil || pst.Kind != KindFile {
			return nil
		}
		n.Kind = KindFile
		n.Primary = primary
		n.Mode = pst.Mode
		n.MTime = pst.MTime
		n.Owner = pst.Owner
		n.Content = pst.Content
		n.Size = pst.Content.Size
		n.ContentHash = pst.Content.Hash
		n.Nlink = 1
	}
	return n
}

// followLink finds the file a hard link at ch shows: the primary path's
// current state while it is a visible file (following links of links),
// otherwise the state the primary had when the link was made. It returns the
// primary path ("" for the fallback) and the state. Every chain it looks at
// records ch as a dependent, so ch is recomputed when they change.
func (v *View) followLink(ch *chain, st *State) (string, *State) {
	cur := st
	for hop := 0; hop < maxLinkHops; hop++ {
		target := cur.Target
		tc := v.chain(target)
		if tc.linkers == nil {
			tc.linkers = make(map[*chain]struct{})
		}
		tc.linkers[ch] = struct{}{}
		if tc.head == nil || v.tree[target] == nil {
			break
		}
		ts := v.stateAt(tc.head)
		if ts.Kind == KindFile {
			return target, ts
		}
		if ts.Kind != KindLink {
			break
		}
		cur = ts
	}
	if ref, ok := v.nodes[st.Link.Ref]; ok && ref.status == StatusApplied {
		rs := v.stateAt(&ref.primary)
		if rs.Kind == KindFile {
			return "", rs
		}
	}
	return "", nil
}

// updateVisible recomputes the chain's node, updates the tree and reports the
// change.
func (v *View) updateVisible(ch *chain) {
	nn := v.computeNode(ch)
	old := v.tree[ch.path]
	var on *Node
	if old != nil {
		on = &old.node
	}
	if sameNode(on, nn) {
		return
	}
	wasDir := on != nil && on.Kind == KindDir
	isDir := nn != nil && nn.Kind == KindDir
	if wasDir != isDir {
		for _, k := range ch.kids {
			v.markVis(k)
		}
	}
	for l := range ch.linkers {
		v.markVis(l)
	}
	v.report(ch, on, nn)
	parentPath := log.Dir(ch.path)
	if nn == nil {
		delete(v.tree, ch.path)
		if pv := v.tree[parentPath]; pv != nil && ch.path != "/" {
			delete(pv.children, log.Base(ch.path))
			pv.sorted = nil
		}
	} else if old == nil {
		vn := &vnode{node: *nn, hashDirty: true}
		if isDir {
			vn.children = map[string]*vnode{}
		}
		v.tree[ch.path] = vn
		if pv := v.tree[parentPath]; pv != nil && ch.path != "/" {
			pv.children[log.Base(ch.path)] = vn
			pv.sorted = nil
		}
	} else {
		old.node = *nn
		if isDir && old.children == nil {
			old.children = map[string]*vnode{}
		}
	}
	v.dirtyHashUp(parentPath)
}

func sameNode(a, b *Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Kind == b.Kind && a.Mode == b.Mode && a.MTime == b.MTime && a.Size == b.Size &&
		a.ContentHash == b.ContentHash && a.Target == b.Target && a.Primary == b.Primary && a.Head == b.Head && a.Owner == b.Owner
}

// dirtyHashUp marks p and its ancestors as needing a new hash. Invariant: the
// ancestors of a dirty directory are dirty, so the walk stops at the first
// dirty one.
func (v *View) dirtyHashUp(p string) {
	for {
		vn := v.tree[p]
		if vn == nil || vn.hashDirty {
			return
		}
		vn.hashDirty = true
		if p == "/" {
			return
		}
		p = log.Dir(p)
	}
}

// report records the change from old to new for the chain's path.
func (v *View) report(ch *chain, old, nn *Node) {
	head := ch.head
	c := Change{Path: ch.path, Node: nn}
	if head != nil {
		c.Entry = head.en.e.Hash()
		c.Author = head.en.e.Author
	}
	if nn == nil {
		if head != nil && head.moved {
			return // reported as a rename at the new path
		}
		c.Event = "delete"
		v.changes = append(v.changes, c)
		return
	}
	switch head.en.e.Action {
	case log.ActRename:
		c.Event = "rename"
		c.OldPath = head.en.e.Target
	case log.ActRevert:
		c.Event = "revert"
	case log.ActLink, log.ActSymlink:
		c.Event = "link"
	case log.ActMkdir:
		if old != nil && old.Kind == KindDir {
			c.Event = "mode"
		} else {
			c.Event = "mkdir"
		}
	case log.ActWrite:
		if old == nil || old.Kind != KindFile {
			c.Event = "create"
		} else {
			c.Event = "write"
		}
	case log.ActMode:
		c.Event = "mode"
	default:
		c.Event = "write"
	}
	if old == nil && head.en.e.Action != log.ActRename && head.en.e.Action != log.ActRevert &&
		head.en.e.Action != log.ActLink && head.en.e.Action != log.ActSymlink {
		// A path that appears without being written itself (its directory
		// came back, or a losing branch won) is a creation.
		if nn.Kind == KindDir {
			c.Event = "mkdir"
		} else {
			c.Event = "create"
		}
	}
	v.changes = append(v.changes, c)
}

// Hash returns the view hash: a Merkle hash over the visible tree
// (docs/semantics.md). Equal hashes mean byte-identical trees.
func (v *View) Hash() log.Hash {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	return v.dirHash(v.tree["/"])
}

func (v *View) dirHash(vn *vnode) log.Hash {
	if !vn.hashDirty {
		return vn.hash
	}
	h := sha256.New()
	var buf [8]byte
	for _, name := range vn.sortedNames() {
		c := vn.children[name]
		n := &c.node
		binary.BigEndian.PutUint32(buf[:4], uint32(len(name)))
		h.Write(buf[:4])
		h.Write([]byte(name))
		h.Write([]byte{byte(n.Kind)})
		binary.BigEndian.PutUint32(buf[:4], n.Mode)
		h.Write(buf[:4])
		binary.BigEndian.PutUint64(buf[:], n.Size)
		h.Write(buf[:])
		switch n.Kind {
		case KindFile:
			h.Write(n.ContentHash[:])
		case KindSymlink:
			binary.BigEndian.PutUint32(buf[:4], uint32(len(n.Target)))
			h.Write(buf[:4])
			h.Write([]byte(n.Target))
		case KindDir:
			sub := v.dirHash(c)
			h.Write(sub[:])
		}
		// The owner counts once one is set; a tree without owners hashes
		// as before owners existed.
		if n.Owner != "" {
			binary.BigEndian.PutUint32(buf[:4], uint32(len(n.Owner))|1<<31)
			h.Write(buf[:4])
			h.Write([]byte(n.Owner))
		}
	}
	h.Sum(vn.hash[:0])
	vn.hashDirty = false
	return vn.hash
}

func (vn *vnode) sortedNames() []string {
	if vn.sorted == nil {
		vn.sorted = make([]string, 0, len(vn.children))
		for name := range vn.children {
			vn.sorted = append(vn.sorted, name)
		}
		sort.Strings(vn.sorted)
	}
	return vn.sorted
}

// Lookup returns the visible node at path.
func (v *View) Lookup(path string) (Node, bool) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	return v.lookup(path)
}

func (v *View) lookup(path string) (Node, bool) {
	vn := v.tree[path]
	if vn == nil {
		return Node{}, false
	}
	n := vn.node
	switch n.Kind {
	case KindFile:
		n.Nlink = 1 + v.linkCount(n.ContentKey(), path)
	case KindDir:
		// As on disk: itself, its entry in its parent, and each
		// subdirectory's "..".
		n.Nlink = 2
		for _, c := range vn.children {
			if c.node.Kind == KindDir {
				n.Nlink++
			}
		}
	}
	return n, true
}

// linkCount counts the visible paths other than self that show the file
// whose content key is key.
func (v *View) linkCount(key, self string) int {
	count := 0
	seen := map[string]bool{self: true}
	var walk func(p string)
	walk = func(p string) {
		ch := v.chains[p]
		if ch == nil {
			return
		}
		for l := range ch.linkers {
			if seen[l.path] {
				continue
			}
			seen[l.path] = true
			if vn := v.tree[l.path]; vn != nil && vn.node.Primary == key {
				count++
				walk(l.path)
			}
		}
	}
	walk(key)
	if key != self {
		count++ // the primary itself
	}
	return count
}

// List returns the visible children of the directory at path, sorted by name.
// It returns false when path is not a visible directory.
func (v *View) List(path string) ([]Node, bool) {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	vn := v.tree[path]
	if vn == nil || vn.node.Kind != KindDir {
		return nil, false
	}
	names := vn.sortedNames()
	out := make([]Node, 0, len(names))
	for _, name := range names {
		n, _ := v.lookup(log.Join(path, name))
		out = append(out, n)
	}
	return out, true
}

// Walk calls fn for every visible path at or below root in depth-first,
// name order, stopping early when fn returns false. The nodes are collected
// first, so fn may call the view's read methods.
func (v *View) Walk(root string, fn func(Node) bool) {
	var nodes []Node
	v.lazy.Lock()
	if vn := v.tree[root]; vn != nil {
		v.walk(root, vn, func(n Node) bool {
			nodes = append(nodes, n)
			return true
		})
	}
	v.lazy.Unlock()
	for _, n := range nodes {
		if !fn(n) {
			return
		}
	}
}

func (v *View) walk(p string, vn *vnode, fn func(Node) bool) bool {
	n, _ := v.lookup(p)
	if !fn(n) {
		return false
	}
	if vn.node.Kind != KindDir {
		return true
	}
	for _, name := range vn.sortedNames() {
		if !v.walk(log.Join(p, name), vn.children[name], fn) {
			return false
		}
	}
	return true
}

// NumVisible returns the number of visible paths, "/" included.
func (v *View) NumVisible() int {
	v.lazy.Lock()
	defer v.lazy.Unlock()
	return len(v.tree)
}
