package replica

import (
	"errors"
	"fmt"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

// Stat returns the visible node at path.
func (r *Replica) Stat(path string) (view.Node, error) {
	if err := checkPath(path); err != nil {
		return view.Node{}, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	n, ok := r.view.Lookup(path)
	if !ok {
		return view.Node{}, r.notExist(path)
	}
	return n, nil
}

// notExist explains a missing path: NotDir when an ancestor is a file.
func (r *Replica) notExist(path string) error {
	for d := log.Dir(path); d != "/"; d = log.Dir(d) {
		if n, ok := r.view.Lookup(d); ok {
			if n.Kind != view.KindDir {
				return pathErr(NotDir, d)
			}
			break
		}
	}
	return pathErr(NotExist, path)
}

// List returns the children of the directory at path, sorted by name.
func (r *Replica) List(path string) ([]view.Node, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	n, ok := r.view.Lookup(path)
	if !ok {
		return nil, r.notExist(path)
	}
	if n.Kind != view.KindDir {
		return nil, pathErr(NotDir, path)
	}
	kids, _ := r.view.List(path)
	return kids, nil
}

// ReadFile returns the content of the file at path.
func (r *Replica) ReadFile(path string) ([]byte, error) {
	n, err := r.Stat(path)
	if err != nil {
		return nil, err
	}
	switch n.Kind {
	case view.KindDir:
		return nil, pathErr(IsDir, path)
	case view.KindSymlink:
		return nil, errorf(Invalid, path, "%s is a symbolic link to %s", path, n.Target)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	b, err := r.content(n.Content)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Path == "" {
			e.Path = path
		}
		return nil, err
	}
	return b, nil
}

// Content returns the bytes of a content reference (see ReadFile).
func (r *Replica) Content(c *log.Content) ([]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.content(c)
}

// content reconstructs a content: from the entry itself when inline, from
// the materialized cache, or from its blocks (and, for a delta, its base,
// whose own chain is bounded by maxDeltaChain). Callers hold r.mu.
func (r *Replica) content(c *log.Content) ([]byte, error) {
	if c.Blocks == nil && c.Encoding == log.EncRaw {
		return c.Inline, nil
	}
	if b, err := r.cache.Get(c.Hash); err == nil {
		return b, nil
	}
	b, err := r.codec.Decode(c, r.store.Block, func(h log.Hash) ([]byte, error) {
		bc, ok := r.contents[h]
		if !ok {
			return nil, fmt.Errorf("base content %s: %w", h.Short(), log.ErrBlockMissing)
		}
		return r.content(bc)
	})
	switch {
	case errors.Is(err, log.ErrBlockMissing):
		return nil, &Error{Kind: Unavailable, Detail: "content is not complete on this node yet (blocks are missing)", Err: err}
	case err != nil:
		return nil, &Error{Kind: Corrupt, Detail: fmt.Sprintf("content %s does not check out: %v", c.Hash.Short(), err), Err: err}
	}
	if err := r.cache.Put(c.Hash, b); err != nil {
		r.logger.Warn("could not cache content", "hash", c.Hash.Short(), "err", err)
	}
	return b, nil
}

// Readlink returns a symbolic link's text.
func (r *Replica) Readlink(path string) (string, error) {
	n, err := r.Stat(path)
	if err != nil {
		return "", err
	}
	if n.Kind != view.KindSymlink {
		return "", errorf(Invalid, path, "%s is not a symbolic link", path)
	}
	return n.Target, nil
}

// View calls fn with the view under the read lock, for queries the replica
// does not wrap. fn must not keep the view or call back into the replica.
func (r *Replica) View(fn func(v *view.View)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn(r.view)
}

// ViewAt is View with the store position the view reflects (the number of
// entries stored): updates with a Pos at or below it are already in it.
func (r *Replica) ViewAt(fn func(v *view.View, pos int)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn(r.view, r.store.NumEntries())
}
