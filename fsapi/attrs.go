//go:build unix

package fsapi

import (
	"strings"
	"syscall"
	"time"

	blog "github.com/basefs/basefs/log"
	"github.com/basefs/basefs/view"
)

func (f *fsys) chmod(p string, mode uint32) int {
	mode &= permMask
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[p] != nil {
		return errc(syscall.ENOENT)
	}
	n := f.nodes[p]
	if n != nil && !n.gone {
		switch {
		case n.local:
			if !n.symlink {
				n.mode = mode
			}
			return 0
		case n.created || n.dirty:
			n.mode, n.modeSet, n.reported = mode, true, false
			return 0
		}
	}
	if err := f.change([]string{p}, func() error { return f.r.SetAttr(f.key, p, &mode, 0, false) }); err != nil {
		return neg(err)
	}
	if n != nil {
		n.mode = mode
	}
	return 0
}

// chown records owner names: user and group are names already (the
// adapter maps the caller's ids to names), "" to keep the current one. A
// file being written gets its owner when it is committed (cp -a chowns
// before it closes); otherwise the owner is written at once.
func (f *fsys) chown(p, user, group string) int {
	if user == "" && group == "" {
		f.mu.Lock()
		wo := f.whiteouts[p] != nil
		f.mu.Unlock()
		if wo {
			return errc(syscall.ENOENT)
		}
		_, err := f.stat(p)
		return neg(err)
	}
	f.mu.Lock()
	if f.whiteouts[p] != nil {
		f.mu.Unlock()
		return errc(syscall.ENOENT)
	}
	n := f.nodes[p]
	cur := ""
	if n != nil && n.ownerSet {
		cur = n.owner
	}
	f.mu.Unlock()
	if cur == "" {
		if st, err := f.stat(p); err == nil {
			cur = st.Owner
		}
	}
	cu, cg, _ := strings.Cut(cur, ":")
	if user == "" {
		user = cu
	}
	if group == "" {
		group = cg
	}
	if user == "" {
		user = "root"
	}
	if group == "" {
		group = "root"
	}
	owner := user + ":" + group
	f.mu.Lock()
	if n != nil && !n.gone {
		switch {
		case n.local:
			f.mu.Unlock()
			return 0
		case n.created || n.dirty:
			n.owner, n.ownerSet, n.reported = owner, true, false
			f.mu.Unlock()
			return 0
		}
	}
	f.mu.Unlock()
	if err := f.change([]string{p}, func() error { return f.r.Chown(f.key, p, owner, false) }); err != nil {
		return neg(err)
	}
	return 0
}

// utimens sets the modification time (unix seconds and nanoseconds; the
// nanoseconds may be UTIME_NOW or UTIME_OMIT). Access times are not kept.
func (f *fsys) utimens(p string, sec, nsec int64) int {
	var t int64
	switch nsec {
	case utimeOmit:
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.whiteouts[p] != nil {
			return errc(syscall.ENOENT)
		}
		if n := f.nodes[p]; n != nil && !n.gone {
			return 0
		}
		_, err := f.stat(p)
		return neg(err)
	case utimeNow:
		t = f.now().UnixNano()
	default:
		t = time.Unix(sec, nsec).UnixNano()
	}
	t = max(t, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whiteouts[p] != nil {
		return errc(syscall.ENOENT)
	}
	n := f.nodes[p]
	if n != nil && !n.gone {
		switch {
		case n.local:
			n.mtime = t
			return 0
		case n.created || n.dirty:
			n.mtime, n.mtimeSet, n.reported = t, true, false
			return 0
		}
	}
	return neg(f.change([]string{p}, func() error { return f.r.SetAttr(f.key, p, nil, t, false) }))
}

// access checks existence and, for W_OK, authority (used only when the
// kernel does not check permissions itself).
func (f *fsys) access(p string, mask uint32) int {
	f.mu.Lock()
	wo := f.whiteouts[p] != nil
	n := f.nodes[p]
	f.mu.Unlock()
	if wo {
		return errc(syscall.ENOENT)
	}
	if n != nil && !n.gone {
		return 0
	}
	st, err := f.stat(p)
	if err != nil {
		return neg(err)
	}
	const wOK = 2
	if mask&wOK != 0 && st.Kind != view.KindSymlink && !f.mayWrite(st.ContentKey()) {
		return errc(syscall.EACCES)
	}
	return 0
}

func (f *fsys) statfs(s *statfsInfo) int {
	var fs syscall.Statfs_t
	*s = statfsInfo{Bsize: 4096, Namemax: blog.MaxNameLen}
	if err := syscall.Statfs(f.r.Dir(), &fs); err == nil {
		bs := uint64(fs.Bsize)
		s.Blocks = uint64(fs.Blocks) * bs / 4096
		s.Bfree = uint64(fs.Bfree) * bs / 4096
		s.Bavail = uint64(fs.Bavail) * bs / 4096
		s.Ffree = uint64(fs.Ffree)
	}
	n := 0
	f.r.View(func(v *view.View) { n = v.NumVisible() })
	s.Files = uint64(n) + s.Ffree
	return 0
}
