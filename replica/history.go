package replica

import (
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

// ReadFileAt returns the content file path had right after its entry
// whose hash starts with prefix (cat NAME:/path@ENTRY): an old version,
// read without reverting.
func (r *Replica) ReadFileAt(path, prefix string) ([]byte, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, err := r.resolveEntry(path, prefix)
	if err != nil {
		return nil, err
	}
	st, ok := r.view.StateAt(e.Hash(), path)
	if !ok {
		return nil, errorf(Invalid, path, "entry %s is not one of %s's versions", e.Hash().Short(), path)
	}
	switch st.Kind {
	case view.KindFile:
	case view.KindAbsent:
		return nil, errorf(NotExist, path, "%s did not exist after entry %s", path, e.Hash().Short())
	default:
		return nil, errorf(Invalid, path, "%s was a %s after entry %s, not a file", path, st.Kind, e.Hash().Short())
	}
	b, err := r.content(st.Content)
	if err != nil {
		if re, ok := err.(*Error); ok && re.Path == "" {
			re.Path = path
		}
		return nil, err
	}
	return b, nil
}

// GrantRecord is one key's write authority, for listing.
type GrantRecord struct {
	Path   string `json:"path"`   // the subtree
	Key    string `json:"key"`    // fingerprint of the key with authority
	Root   bool   `json:"root"`   // the filesystem's root key (authority everywhere)
	Entry  string `json:"entry"`  // the grant entry (the root entry for the root key)
	Author string `json:"author"` // fingerprint of the key that granted it
}

// Grants lists who may write at path: the root key, the counting grants
// that cover path, and those below it, by path then key.
func (r *Replica) Grants(path string) ([]GrantRecord, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	root := r.view.RootKey()
	out := []GrantRecord{{Path: "/", Key: log.Fingerprint(root[:]), Root: true, Entry: r.view.ID().String(), Author: log.Fingerprint(root[:])}}
	for _, g := range r.view.Grants() {
		if log.IsAtOrUnder(path, g.Path) || log.IsAtOrUnder(g.Path, path) {
			out = append(out, GrantRecord{Path: g.Path, Key: log.Fingerprint(g.Key[:]), Entry: g.Entry.String(), Author: log.Fingerprint(g.Author[:])})
		}
	}
	return out, nil
}
