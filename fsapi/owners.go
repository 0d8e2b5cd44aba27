package fsapi

import (
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idMap maps owner and group names to this machine's ids and back,
// through the user database (os/user), caching answers for a minute. A
// name with no local account shows as the mount's default owner; an id
// with no name is recorded as its number. Safe for concurrent use.
type idMap struct {
	mu    sync.Mutex
	cache map[string]idEntry
}

type idEntry struct {
	val string
	ok  bool
	at  time.Time
}

const idCacheFor = time.Minute

func (m *idMap) lookup(key string, fn func() (string, bool)) (string, bool) {
	m.mu.Lock()
	if e, ok := m.cache[key]; ok && time.Since(e.at) < idCacheFor {
		m.mu.Unlock()
		return e.val, e.ok
	}
	m.mu.Unlock()
	v, ok := fn()
	m.mu.Lock()
	if m.cache == nil {
		m.cache = map[string]idEntry{}
	}
	m.cache[key] = idEntry{v, ok, time.Now()}
	m.mu.Unlock()
	return v, ok
}

// ids returns the uid and gid of an owner "USER:GROUP"; a part with no
// local account (and not a number) gives the default.
func (m *idMap) ids(owner string, defUID, defGID uint32) (uint32, uint32) {
	u, g, _ := strings.Cut(owner, ":")
	uid, gid := defUID, defGID
	if s, ok := m.lookup("u:"+u, func() (string, bool) {
		if _, err := strconv.ParseUint(u, 10, 32); err == nil {
			return u, true
		}
		if usr, err := user.Lookup(u); err == nil {
			return usr.Uid, true
		}
		return "", false
	}); ok {
		if v, err := strconv.ParseUint(s, 10, 32); err == nil {
			uid = uint32(v)
		}
	}
	if s, ok := m.lookup("g:"+g, func() (string, bool) {
		if _, err := strconv.ParseUint(g, 10, 32); err == nil {
			return g, true
		}
		if grp, err := user.LookupGroup(g); err == nil {
			return grp.Gid, true
		}
		return "", false
	}); ok {
		if v, err := strconv.ParseUint(s, 10, 32); err == nil {
			gid = uint32(v)
		}
	}
	return uid, gid
}

// userName returns the name of uid on this machine, or its number.
func (m *idMap) userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	s, _ := m.lookup("uid:"+id, func() (string, bool) {
		if u, err := user.LookupId(id); err == nil {
			return u.Username, true
		}
		return id, true
	})
	return s
}

// groupName returns the name of gid on this machine, or its number.
func (m *idMap) groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	s, _ := m.lookup("gid:"+id, func() (string, bool) {
		if g, err := user.LookupGroupId(id); err == nil {
			return g.Name, true
		}
		return id, true
	})
	return s
}
