//go:build unix

package fsapi

import (
	"bytes"
	"syscall"
	"time"

	blog "github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

func (f *fsys) mkdir(p string, mode uint32) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.nodes[p]; n != nil && (n.local || n.created) {
		return errc(syscall.EEXIST)
	}
	if err := f.settleWhiteout(p); err != nil {
		return neg(err)
	}
	return neg(f.change([]string{p}, func() error {
		return f.r.Mkdir(f.key, p, mode&permMask, false, false)
	}))
}

func (f *fsys) rmdir(p string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[p] != nil {
		return errc(syscall.ENOENT)
	}
	if n := f.nodes[p]; n != nil && (n.local || n.created) {
		return errc(syscall.ENOTDIR)
	}
	st, err := f.stat(p)
	if err != nil {
		return neg(err)
	}
	if st.Kind != view.KindDir {
		return errc(syscall.ENOTDIR)
	}
	if p == "/" {
		return errc(syscall.EBUSY)
	}
	for np, n := range f.nodes {
		if (n.local || n.created) && blog.Dir(np) == p {
			return errc(syscall.ENOTEMPTY)
		}
	}
	for wp := range f.whiteouts {
		if blog.Dir(wp) == p {
			if err := f.settleWhiteout(wp); err != nil {
				return neg(err)
			}
		}
	}
	return neg(f.change([]string{p}, func() error { return f.r.Remove(f.key, p, false, false) }))
}

func (f *fsys) unlink(p string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[p] != nil {
		return errc(syscall.ENOENT)
	}
	n := f.nodes[p]
	if n != nil && (n.local || n.created) {
		if n.created {
			if err := f.dropReplaced(p); err != nil {
				return neg(err)
			}
		}
		n.gone = true
		delete(f.nodes, p)
		delete(f.kcache, p)
		return 0
	}
	st, err := f.stat(p)
	if err != nil {
		return neg(err)
	}
	if st.Kind == view.KindDir {
		return errc(syscall.EISDIR)
	}
	if err := f.change([]string{p}, func() error { return f.r.Remove(f.key, p, false, false) }); err != nil {
		return neg(err)
	}
	if n != nil {
		n.gone = true
		delete(f.nodes, p)
	}
	delete(f.kcache, p)
	return 0
}

func (f *fsys) symlink(target, p string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.nodes[p]; n != nil && (n.local || n.created) {
		return errc(syscall.EEXIST)
	}
	if f.whiteouts[p] == nil && f.localName(p) {
		if err := f.parentDir(p); err != nil {
			return neg(err)
		}
		if !f.mayWrite(p) {
			return errc(syscall.EACCES)
		}
		f.nodes[p] = &node{path: p, local: true, symlink: true, target: target,
			mode: 0o777, mtime: f.now().UnixNano(), ino: inoOf(p), nlink: 1}
		return 0
	}
	if err := f.settleWhiteout(p); err != nil {
		return neg(err)
	}
	return neg(f.change([]string{p}, func() error { return f.r.Symlink(f.key, target, p, false) }))
}

func (f *fsys) readlink(p string) (int, string) {
	f.mu.Lock()
	if f.whiteouts[p] != nil {
		f.mu.Unlock()
		return errc(syscall.ENOENT), ""
	}
	if n := f.nodes[p]; n != nil && (n.local || n.created) {
		f.mu.Unlock()
		if !n.symlink {
			return errc(syscall.EINVAL), ""
		}
		return 0, n.target
	}
	f.mu.Unlock()
	t, err := f.r.Readlink(p)
	if err != nil {
		return neg(err), ""
	}
	return 0, t
}

func (f *fsys) link(oldp, newp string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[oldp] != nil {
		return errc(syscall.ENOENT)
	}
	if n := f.nodes[oldp]; n != nil && !n.gone {
		if n.local {
			return errc(syscall.EPERM)
		}
		if n.created {
			if err := f.commit(n, false); err != nil {
				return neg(err)
			}
		}
	}
	if n := f.nodes[newp]; n != nil && (n.local || n.created) {
		return errc(syscall.EEXIST)
	}
	if f.whiteouts[newp] == nil && f.localName(newp) {
		return errc(syscall.EPERM)
	}
	if err := f.settleWhiteout(newp); err != nil {
		return neg(err)
	}
	return neg(f.change([]string{newp, oldp}, func() error { return f.r.Link(f.key, oldp, newp, false) }))
}

// settleWhiteout writes the deferred deletion of p now, if p is hidden by a
// whiteout. Called with mu held.
func (f *fsys) settleWhiteout(p string) error {
	w := f.whiteouts[p]
	if w == nil {
		return nil
	}
	w.timer.Stop()
	delete(f.whiteouts, p)
	err := f.change([]string{p}, func() error { return f.r.Remove(f.key, p, false, false) })
	if replica.IsKind(err, replica.NotExist) {
		return nil
	}
	return err
}

// cancelWhiteout drops p's whiteout without deleting p (its replacement
// continues its history). Called with mu held.
func (f *fsys) cancelWhiteout(p string) {
	if w := f.whiteouts[p]; w != nil {
		w.timer.Stop()
		delete(f.whiteouts, p)
	}
}

// addWhiteout hides p and schedules its deletion. Called with mu held.
func (f *fsys) addWhiteout(p string) {
	f.cancelWhiteout(p)
	w := &whiteout{}
	w.timer = time.AfterFunc(f.grace, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.whiteouts[p] != w {
			return
		}
		if err := f.settleWhiteout(p); err != nil {
			f.logger.Warn("the deletion of a file renamed to an ignored name could not be written", "path", p, "err", err)
		}
	})
	f.whiteouts[p] = w
}

// dropReplaced deletes the replica's file at p, which a created node there
// was going to replace (a new file in place of one an editor renamed away),
// when that node goes elsewhere. Called with mu held.
func (f *fsys) dropReplaced(p string) error {
	if !f.existsInReplica(p) {
		return nil
	}
	return f.change([]string{p}, func() error { return f.r.Remove(f.key, p, false, false) })
}

// replaceNode marks the overlay's file at p as replaced. Called with mu held.
func (f *fsys) replaceNode(p string) {
	if n := f.nodes[p]; n != nil {
		n.gone = true
		delete(f.nodes, p)
	}
	delete(f.kcache, p)
}

// moveNodes re-keys the overlay's nodes at and below from to to. Called with
// mu held.
func (f *fsys) moveNodes(from, to string) {
	var moved []*node
	for p, n := range f.nodes {
		if blog.IsAtOrUnder(p, from) {
			moved = append(moved, n)
			delete(f.nodes, p)
			delete(f.kcache, p)
		}
	}
	for _, n := range moved {
		n.path = to + n.path[len(from):]
		f.replaceNode(n.path)
		f.nodes[n.path] = n
	}
}

func (f *fsys) rename(from, to string) int {
	if from == to {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[from] != nil {
		return errc(syscall.ENOENT)
	}
	if blog.IsUnder(to, from) {
		return errc(syscall.EINVAL)
	}
	nf := f.nodes[from]
	if nf != nil && nf.gone {
		nf = nil
	}
	if nf != nil && (nf.local || nf.created) {
		return f.renamePending(nf, from, to)
	}
	st, err := f.stat(from)
	if err != nil {
		return neg(err)
	}
	nt := f.nodes[to]
	if nt != nil && (nt.gone || !(nt.local || nt.created)) {
		nt = nil
	}
	if st.Kind != view.KindDir && (nt != nil && nt.local || nt == nil && f.whiteouts[to] == nil && f.localName(to)) {
		return f.renameToLocal(&st, nf, from, to)
	}
	if nt != nil && st.Kind == view.KindDir {
		return errc(syscall.ENOTDIR)
	}
	if st.Kind == view.KindDir {
		for wp := range f.whiteouts {
			if blog.IsUnder(wp, from) {
				if err := f.settleWhiteout(wp); err != nil {
					return neg(err)
				}
			}
		}
		for np, n := range f.nodes {
			if blog.IsUnder(np, from) && n.created {
				if err := f.commit(n, false); err != nil {
					return neg(err)
				}
			}
		}
	}
	if f.whiteouts[to] != nil {
		// The replica still holds the hidden file; the rename replaces it.
		f.cancelWhiteout(to)
	}
	err = f.change([]string{from, to}, func() error { return f.r.Rename(f.key, from, to, false) })
	if err != nil {
		return neg(err)
	}
	f.replaceNode(to)
	f.moveNodes(from, to)
	return 0
}

// renamePending moves a file that exists only in the overlay (local, or
// created and not committed yet). Called with mu held.
func (f *fsys) renamePending(nf *node, from, to string) int {
	nt := f.nodes[to]
	if nt != nil && nt.gone {
		nt = nil
	}
	free := nt == nil && f.whiteouts[to] == nil && !f.existsInReplica(to)
	toIgnored := nt != nil && nt.local && !nt.temp || free && f.ignore.match(to)
	toTemp := !toIgnored && nf.local && (nt != nil && nt.temp || free && f.temp.match(to))
	if toIgnored || toTemp {
		if err := f.parentDir(to); err != nil {
			return neg(err)
		}
		if !f.mayWrite(to) {
			return errc(syscall.EACCES)
		}
		if nf.created {
			if err := f.dropReplaced(from); err != nil {
				return neg(err)
			}
		}
		f.replaceNode(to)
		delete(f.nodes, from)
		delete(f.kcache, from)
		nf.path, nf.local, nf.created, nf.dirty, nf.modeSet, nf.mtimeSet = to, true, false, false, false, false
		nf.ino = inoOf(to)
		if toTemp && !nf.temp {
			f.schedulePromote(nf)
		}
		nf.temp = toTemp
		f.nodes[to] = nf
		return 0
	}
	// The destination is a replicated name.
	hidden := f.whiteouts[to] != nil
	if nt == nil && !hidden {
		if dst, err := f.stat(to); err == nil {
			if dst.Kind == view.KindDir {
				return errc(syscall.EISDIR)
			}
			if dst.Primary != "" || dst.Nlink > 1 || dst.Kind == view.KindSymlink {
				// Replace the name, not the file it shares with others.
				if err := f.change([]string{to}, func() error { return f.r.Remove(f.key, to, false, false) }); err != nil {
					return neg(err)
				}
			}
		} else if !replica.IsKind(err, replica.NotExist) {
			return neg(err)
		}
	}
	if err := f.parentDir(to); err != nil {
		return neg(err)
	}
	if !f.mayWrite(to) {
		return errc(syscall.EACCES)
	}
	if nf.created {
		// Still being written: it commits under its new name on close.
		if err := f.dropReplaced(from); err != nil {
			return neg(err)
		}
		f.cancelWhiteout(to)
		f.replaceNode(to)
		delete(f.nodes, from)
		nf.path, nf.ino = to, inoOf(to)
		f.nodes[to] = nf
		return 0
	}
	if hidden {
		f.cancelWhiteout(to)
	}
	var err error
	if nf.symlink {
		err = f.change([]string{to}, func() error {
			if f.existsInReplica(to) {
				if err := f.r.Remove(f.key, to, false, false); err != nil {
					return err
				}
			}
			return f.r.Symlink(f.key, nf.target, to, false)
		})
	} else {
		// A local file becomes the replicated one: one write entry.
		err = f.change([]string{to}, func() error {
			_, err := f.r.WriteFile(f.key, to, nf.data, replica.WriteOptions{Mode: nf.mode, MTime: max(nf.mtime, 1)})
			return err
		})
	}
	if err != nil {
		if hidden {
			f.addWhiteout(to)
		}
		return neg(err)
	}
	f.replaceNode(to)
	delete(f.nodes, from)
	delete(f.kcache, from)
	if nf.open > 0 && !nf.symlink {
		// Open handles follow the file, now a replicated one.
		nf.path, nf.local, nf.temp, nf.due = to, false, false, false
		nf.created, nf.dirty, nf.modeSet, nf.mtimeSet = false, false, false, false
		nf.ino = inoOf(to)
		f.nodes[to] = nf
	} else {
		nf.gone = true
	}
	return 0
}

// renameToLocal renames a replicated file or symlink to an ignored name: the
// content moves to a local file, and the replicated name is hidden and
// deleted after the grace period unless a new file takes it first. Called
// with mu held.
func (f *fsys) renameToLocal(st *view.Node, nf *node, from, to string) int {
	if !f.mayWrite(from) {
		return errc(syscall.EACCES)
	}
	if err := f.parentDir(to); err != nil {
		return neg(err)
	}
	if !f.mayWrite(to) {
		return errc(syscall.EACCES)
	}
	var ln *node
	if nf != nil {
		ln = nf
		delete(f.nodes, from)
	} else {
		ln = &node{mode: st.Mode & permMask, mtime: st.MTime, nlink: 1}
		if st.Kind == view.KindSymlink {
			ln.symlink, ln.target, ln.mode = true, st.Target, 0o777
		} else {
			data, err := f.r.Content(st.Content)
			if err != nil {
				return neg(err)
			}
			ln.data = bytes.Clone(data)
		}
	}
	ln.path, ln.local, ln.created, ln.dirty, ln.modeSet, ln.mtimeSet = to, true, false, false, false, false
	ln.ino, ln.nlink = inoOf(to), 1
	f.replaceNode(to)
	f.nodes[to] = ln
	delete(f.kcache, from)
	f.addWhiteout(from)
	return 0
}
