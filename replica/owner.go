package replica

import (
	"crypto/ed25519"
	"strings"

	"github.com/basefs/basefs/log"
)

// Chown records path's owner and group by name: owner is "USER:GROUP",
// or "USER" to keep the current group (root when none was ever set). Every
// node maps the names to its own ids when it shows the file. Setting the
// owner the path already has writes nothing. A hard link's owner is its
// primary file's.
func (r *Replica) Chown(key ed25519.PrivateKey, path, owner string, sync bool) error {
	if err := checkPath(path); err != nil {
		return err
	}
	return r.run(key, sync, func(t *txn) error {
		n, ok := r.view.Lookup(path)
		if !ok {
			return pathErr(NotExist, path)
		}
		want := owner
		if !strings.Contains(want, ":") {
			group := "root"
			if _, g, ok := strings.Cut(n.Owner, ":"); ok {
				group = g
			}
			want += ":" + group
		}
		if err := log.ValidateOwner(want); err != nil {
			return errorf(Invalid, path, "%v", err)
		}
		target := n.ContentKey()
		if err := t.requireAuthority(target); err != nil {
			return err
		}
		if want == n.Owner {
			return nil
		}
		h, _, ok := r.view.Head(target)
		if !ok {
			return pathErr(NotExist, target)
		}
		_, err := t.add(&log.Entry{Action: log.ActMode, Parent: h.Hash(), Path: target, Mode: n.Mode, Owner: want})
		return err
	})
}
