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

// create makes a new file, or opens an existing one unless O_EXCL.
func (f *fsys) create(p string, flags int, mode uint32) (int, uint64) {
	f.mu.Lock()
	e, fh, exists := f.createLocked(p, flags, mode)
	f.mu.Unlock()
	if exists {
		e, fh, _ = f.open(p, flags)
	}
	return e, fh
}

// createLocked makes a new file; exists reports that p exists and should be
// opened instead. Called with mu held.
func (f *fsys) createLocked(p string, flags int, mode uint32) (e int, fh uint64, exists bool) {
	excl := flags&syscall.O_EXCL != 0
	if n := f.nodes[p]; n != nil && !n.gone {
		if excl {
			return errc(syscall.EEXIST), 0, false
		}
		return 0, 0, true
	}
	if f.whiteouts[p] != nil {
		// A new file in place of one renamed away (an editor's save): it
		// continues that file's history, unless that was a hard link, whose
		// other names must keep the old content.
		st, err := f.stat(p)
		if err == nil && (st.Primary != "" || st.Nlink > 1 || st.Kind != view.KindFile) {
			if err := f.settleWhiteout(p); err != nil {
				return neg(err), 0, false
			}
		} else {
			f.cancelWhiteout(p)
		}
	} else if _, err := f.stat(p); err == nil {
		if excl {
			return errc(syscall.EEXIST), 0, false
		}
		return 0, 0, true
	} else if !replica.IsKind(err, replica.NotExist) {
		return neg(err), 0, false
	}
	if err := f.parentDir(p); err != nil {
		return neg(err), 0, false
	}
	if !f.mayWrite(p) {
		return errc(syscall.EACCES), 0, false
	}
	local := f.ignore.match(p)
	temp := !local && f.temp.match(p)
	n := &node{path: p, local: local || temp, temp: temp, created: !local && !temp, dirty: !local && !temp,
		mode: mode & permMask, mtime: f.now().UnixNano(), ino: inoOf(p), nlink: 1}
	f.nodes[p] = n
	if temp {
		f.schedulePromote(n)
	}
	delete(f.kcache, p)
	h := &handle{n: n, write: flags&syscall.O_ACCMODE != syscall.O_RDONLY, append: flags&syscall.O_APPEND != 0, path: p}
	return 0, f.addHandle(h), false
}

// open opens p; keep reports whether the kernel may keep the pages it has
// cached for p (they hold the content the file has now).
func (f *fsys) open(p string, flags int) (e int, fh uint64, keep bool) {
	acc := flags & syscall.O_ACCMODE
	wr := acc != syscall.O_RDONLY
	trunc := wr && flags&syscall.O_TRUNC != 0
	app := flags&syscall.O_APPEND != 0
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[p] != nil {
		return errc(syscall.ENOENT), 0, false
	}
	if n := f.nodes[p]; n != nil && !n.gone {
		if n.symlink {
			return errc(syscall.ELOOP), 0, false
		}
		if wr && !n.local && !n.created && n.writers == 0 {
			st, err := f.stat(p)
			if err != nil {
				return neg(err), 0, false
			}
			if !f.mayWrite(st.ContentKey()) {
				return errc(syscall.EACCES), 0, false
			}
		}
		if trunc {
			f.truncNode(n, 0)
		}
		h := &handle{n: n, write: wr, append: app, path: p}
		return 0, f.addHandle(h), false
	}
	st, err := f.stat(p)
	if err != nil {
		return neg(err), 0, false
	}
	switch st.Kind {
	case view.KindDir:
		if wr {
			return errc(syscall.EISDIR), 0, false
		}
		return 0, f.addHandle(&handle{path: p, loaded: true}), false
	case view.KindSymlink:
		return errc(syscall.ELOOP), 0, false
	}
	if !wr {
		if !f.r.ContentComplete(st.Content) {
			return neg(&replica.Error{Kind: replica.Unavailable, Path: p}), 0, false
		}
		old, had := f.kcache[p]
		keep = had && old == st.ContentHash
		if !keep {
			if len(f.kcache) >= kcacheMax {
				clear(f.kcache)
			}
			f.kcache[p] = st.ContentHash
		}
		return 0, f.addHandle(&handle{path: p, content: st.Content}), keep
	}
	if !f.mayWrite(st.ContentKey()) {
		return errc(syscall.EACCES), 0, false
	}
	n := &node{path: p, mode: st.Mode & permMask, mtime: st.MTime, ino: inoOf(st.ContentKey()), nlink: uint32(max(st.Nlink, 1))}
	if trunc {
		f.truncNode(n, 0)
	} else {
		data, err := f.r.Content(st.Content)
		if err != nil {
			return neg(err), 0, false
		}
		n.data = bytes.Clone(data)
	}
	f.nodes[p] = n
	delete(f.kcache, p)
	return 0, f.addHandle(&handle{n: n, write: true, append: app, path: p}), false
}

// truncNode sets a node's size. Called with mu held.
func (f *fsys) truncNode(n *node, size int) {
	switch {
	case size <= len(n.data):
		n.data = n.data[:size]
	case size <= cap(n.data):
		old := len(n.data)
		n.data = n.data[:size]
		clear(n.data[old:])
	default:
		nd := make([]byte, size)
		copy(nd, n.data)
		n.data = nd
	}
	n.dirty, n.reported = !n.local, false
	n.mtime, n.mtimeSet = f.now().UnixNano(), false
}

func (f *fsys) read(fh uint64, buf []byte, off int64) int {
	f.mu.Lock()
	h := f.handles[fh]
	if h == nil {
		f.mu.Unlock()
		return errc(syscall.EBADF)
	}
	if n := h.n; n != nil {
		defer f.mu.Unlock()
		if off >= int64(len(n.data)) {
			return 0
		}
		return copy(buf, n.data[off:])
	}
	f.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.loaded {
		data, err := f.r.Content(h.content)
		if err != nil {
			return neg(err)
		}
		h.data, h.loaded = data, true
	}
	if off >= int64(len(h.data)) {
		return 0
	}
	return copy(buf, h.data[off:])
}

func (f *fsys) writeData(fh uint64, buf []byte, off int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.handles[fh]
	if h == nil || h.n == nil || !h.write {
		return errc(syscall.EBADF)
	}
	n := h.n
	if h.append {
		off = int64(len(n.data))
	}
	end := off + int64(len(buf))
	if off < 0 || end > int64(blog.MaxFileSize) {
		return errc(syscall.EFBIG)
	}
	if int(end) > len(n.data) {
		if int(end) <= cap(n.data) {
			old := len(n.data)
			n.data = n.data[:end]
			clear(n.data[old:off])
		} else {
			nd := make([]byte, end, max(int(end), 2*cap(n.data)))
			copy(nd, n.data)
			n.data = nd
		}
	}
	copy(n.data[off:], buf)
	n.dirty, n.reported = !n.local, false
	n.mtime, n.mtimeSet = f.now().UnixNano(), false
	return len(buf)
}

func (f *fsys) truncate(p string, size int64, fh uint64) int {
	if size < 0 {
		return errc(syscall.EINVAL)
	}
	if size > int64(blog.MaxFileSize) {
		return errc(syscall.EFBIG)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var n *node
	if h := f.handles[fh]; fh != noFh && h != nil && h.n != nil {
		n = h.n
	} else {
		if p == "" && h != nil {
			p = h.path
		}
		if f.whiteouts[p] != nil {
			return errc(syscall.ENOENT)
		}
		if x := f.nodes[p]; x != nil && !x.gone && (x.local || x.created || x.writers > 0) {
			n = x
		}
	}
	if n != nil {
		if n.symlink {
			return errc(syscall.EINVAL)
		}
		f.truncNode(n, int(size))
		return 0
	}
	st, err := f.stat(p)
	if err != nil {
		return neg(err)
	}
	switch st.Kind {
	case view.KindDir:
		return errc(syscall.EISDIR)
	case view.KindSymlink:
		return errc(syscall.EINVAL)
	}
	if !f.mayWrite(st.ContentKey()) {
		return errc(syscall.EACCES)
	}
	old, err := f.r.Content(st.Content)
	if err != nil {
		return neg(err)
	}
	if int64(len(old)) == size {
		return 0
	}
	data := make([]byte, size)
	copy(data, old)
	delete(f.kcache, p)
	return neg(f.change([]string{p, st.ContentKey()}, func() error {
		_, err := f.r.WriteFile(f.key, p, data, replica.WriteOptions{})
		return err
	}))
}

// commit writes what a node holds: its content as one write entry, or only
// a pending chmod/utimens as a mode entry. A close that leaves the content,
// mode and time as they were writes nothing. Called with mu held.
func (f *fsys) commit(n *node, sync bool) error {
	if !n.pending() {
		if sync {
			return f.r.Sync()
		}
		return nil
	}
	var mtime int64
	if n.mtimeSet {
		mtime = max(n.mtime, 1)
	}
	if n.created || n.dirty {
		if !n.created && !n.modeSet && !n.mtimeSet {
			if st, err := f.stat(n.path); err == nil && st.Kind == view.KindFile && st.ContentHash == blog.Sum(n.data) {
				n.dirty = false
				if sync {
					return f.r.Sync()
				}
				return nil
			}
		}
		o := replica.WriteOptions{MTime: mtime, Sync: sync}
		if n.created || n.modeSet {
			o.Mode = n.mode
		}
		var e *blog.Entry
		err := f.change([]string{n.path}, func() error {
			var err error
			e, err = f.r.WriteFile(f.key, n.path, n.data, o)
			return err
		})
		if err != nil {
			return err
		}
		n.created, n.dirty, n.modeSet, n.mtimeSet = false, false, false, false
		n.mtime = e.Time
		if mtime != 0 {
			n.mtime = mtime
		}
		delete(f.kcache, n.path)
		return f.commitOwner(n, sync)
	}
	var mp *uint32
	if n.modeSet {
		m := n.mode
		mp = &m
	}
	if n.modeSet || n.mtimeSet {
		err := f.change([]string{n.path}, func() error { return f.r.SetAttr(f.key, n.path, mp, mtime, sync) })
		if err != nil {
			return err
		}
		n.modeSet, n.mtimeSet = false, false
	}
	return f.commitOwner(n, sync)
}

// commitOwner writes the owner a chown set while the file was written.
func (f *fsys) commitOwner(n *node, sync bool) error {
	if !n.ownerSet {
		return nil
	}
	if err := f.change([]string{n.path}, func() error { return f.r.Chown(f.key, n.path, n.owner, sync) }); err != nil {
		return err
	}
	n.ownerSet = false
	return nil
}

// flush commits a written file when one of its writers closes it; its
// result is what close(2) returns.
func (f *fsys) flush(fh uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.handles[fh]
	if h == nil || h.n == nil || !h.write {
		return 0
	}
	return f.report(h.n, f.commit(h.n, false))
}

// report returns a commit's result as an errno for a writer, noting that
// the writer was told of a failure. Called with mu held.
func (f *fsys) report(n *node, err error) int {
	n.reported = err != nil
	return neg(err)
}

// fsync commits a written file durably, or makes earlier commits durable.
func (f *fsys) fsync(fh uint64) int {
	f.mu.Lock()
	h := f.handles[fh]
	if h != nil && h.n != nil {
		defer f.mu.Unlock()
		if h.n.temp {
			if err := f.promote(h.n); err != nil {
				return neg(err)
			}
		}
		return f.report(h.n, f.commit(h.n, true))
	}
	f.mu.Unlock()
	return neg(f.r.Sync())
}

// release drops a handle. The last handle on a node commits what is still
// pending (a file written through a shared mapping after its last flush);
// no caller hears that result, so failures are logged.
func (f *fsys) release(fh uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.handles[fh]
	if h == nil {
		return 0
	}
	delete(f.handles, fh)
	n := h.n
	if n == nil {
		return 0
	}
	n.open--
	if h.write {
		n.writers--
	}
	if n.open > 0 {
		return 0
	}
	if n.temp && n.due {
		if err := f.promote(n); err != nil {
			f.logger.Warn("a temporary file could not be written", "path", n.path, "err", err)
		}
	}
	if n.pending() {
		if err := f.commit(n, false); err != nil {
			f.logger.Warn("a file closed through the mount could not be written", "path", n.path, "err", err, "writer_told", n.reported)
		}
	}
	if !n.local && f.nodes[n.path] == n {
		delete(f.nodes, n.path)
	}
	return 0
}

// shutdown commits every pending file and writes every deferred deletion,
// returning the first failure no writer has been told of (failures a
// writer's close or fsync already returned are logged). Later operations
// still work.
func (f *fsys) shutdown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var first error
	for _, n := range f.nodes {
		if n.temp {
			if err := f.promote(n); err != nil && first == nil {
				first = err
			}
		}
		if n.pending() {
			err := f.commit(n, false)
			switch {
			case err == nil:
			case n.reported:
				f.logger.Warn("a file written through the mount could not be written at unmount either", "path", n.path, "err", err)
			case first == nil:
				first = err
			}
		}
	}
	for p := range f.whiteouts {
		if err := f.settleWhiteout(p); err != nil && first == nil {
			first = err
		}
	}
	if err := f.r.Sync(); err != nil && first == nil {
		first = err
	}
	return first
}

// schedulePromote writes the temporary file n as it is once the grace
// period is over, unless it was renamed or removed by then; a file still
// open for writing is written when its last handle closes. Called with mu
// held.
func (f *fsys) schedulePromote(n *node) {
	time.AfterFunc(f.grace, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !n.temp || n.gone || f.nodes[n.path] != n {
			return
		}
		if n.writers > 0 {
			n.due = true
			return
		}
		if err := f.promote(n); err != nil {
			f.logger.Warn("a temporary file could not be written", "path", n.path, "err", err)
		}
	})
}

// promote writes the temporary file n as a replicated file: one write entry
// with its content, mode and time. Called with mu held.
func (f *fsys) promote(n *node) error {
	if !n.temp || n.gone {
		return nil
	}
	err := f.change([]string{n.path}, func() error {
		_, err := f.r.WriteFile(f.key, n.path, n.data, replica.WriteOptions{Mode: n.mode, MTime: max(n.mtime, 1)})
		return err
	})
	if err != nil {
		return err
	}
	n.temp, n.local, n.due = false, false, false
	if n.open == 0 && f.nodes[n.path] == n {
		delete(f.nodes, n.path)
	}
	return nil
}
