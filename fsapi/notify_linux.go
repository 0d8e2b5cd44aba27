//go:build cgo && linux && !fuse3

package fsapi

/*
#cgo CFLAGS: -DFUSE_USE_VERSION=28 -D_FILE_OFFSET_BITS=64 -I/usr/include/fuse
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fuse.h>
#include <fuse_lowlevel.h>

// cgofuse loads libfuse.so.2 with dlopen and offers no way to invalidate
// the kernel's caches on Linux (its FileSystemHost.Notify works on Windows
// only), nor to name the kernel's node ids, which the high-level library
// keeps to itself. The code below opens the same library (RTLD_NOLOAD: the
// copy already loaded) and, from the init callback:
//
//   - duplicates the mount's /dev/fuse descriptor, on which it writes the
//     kernel's invalidation notices itself (FUSE_NOTIFY_INVAL_ENTRY and
//     _INODE, as fuse_lowlevel_notify_inval_* would): a descriptor of our
//     own stays valid after libfuse tears its channel down, where a write
//     then just fails;
//   - keeps a pointer to libfuse 2.9's private node table, to turn a path
//     into the node id the kernel knows it by (only paths the kernel has
//     cached have one). libfuse frees the table when its loop ends, before
//     telling the file system, so the table is read only inside a FUSE
//     operation (the loop cannot end during one): see Mounted.resolve;
//   - sets the private flag utime_omit_ok, which cgofuse leaves unset, so
//     that libfuse passes utimensat calls that set only one of the two
//     times (tar x, touch -m) instead of dropping them.
//
// The private structures are declared here as lib/fuse.c of libfuse 2.9
// defines them. basefs_capture checks the running library against them
// field by field (version 29, the session pointer, the options this mount
// passed, the file system's user data) and uses none of them unless every
// check passes.

typedef int (*basefs_version_fn)(void);
typedef struct fuse_context *(*basefs_get_context_fn)(void);
typedef struct fuse_session *(*basefs_get_session_fn)(struct fuse *);
typedef struct fuse_chan *(*basefs_next_chan_fn)(struct fuse_session *, struct fuse_chan *);
typedef int (*basefs_chan_fd_fn)(struct fuse_chan *);

struct basefs_node_table { void **array; size_t use; size_t size; size_t split; };
struct basefs_list_head { void *next; void *prev; };
struct basefs_fuse_config {
	unsigned int uid, gid, umask;
	double entry_timeout, negative_timeout, attr_timeout, ac_attr_timeout;
	int ac_attr_timeout_set, remember, nopath, debug, hard_remove, use_ino, readdir_ino,
		set_mode, set_uid, set_gid, direct_io, kernel_cache, auto_cache, intr, intr_signal, help;
	char *modules;
};
struct basefs_fuse_fs { struct fuse_operations op; void *m; void *user_data; int compat; int debug; };
struct basefs_fuse {
	struct fuse_session *se;
	struct basefs_node_table name_table, id_table;
	struct basefs_list_head lru_table;
	fuse_ino_t ctr;
	unsigned int generation, hidectr;
	pthread_mutex_t lock;
	struct basefs_fuse_config conf;
	int intr_installed;
	struct basefs_fuse_fs *fs;
	int nullpath_ok;
	int utime_omit_ok;
};
struct basefs_node {
	struct basefs_node *name_next;
	struct basefs_node *id_next;
	fuse_ino_t nodeid;
	unsigned int generation;
	int refctr;
	struct basefs_node *parent;
	char *name;
};

typedef struct {
	int fd;                // our duplicate of the mount's /dev/fuse descriptor
	struct basefs_fuse *f; // 0 when the private layout did not check out
} basefs_notifier;

// The kernel's notification messages (linux/fuse.h, protocol 7.12 and up).
struct basefs_out_header { uint32_t len; int32_t error; uint64_t unique; };
struct basefs_inval_inode_out { uint64_t ino; int64_t off; int64_t len; };
struct basefs_inval_entry_out { uint64_t parent; uint32_t namelen; uint32_t flags; };
enum { BASEFS_NOTIFY_INVAL_INODE = 2, BASEFS_NOTIFY_INVAL_ENTRY = 3 };

// basefs_check returns 0 when f has the layout declared above.
static int basefs_check(struct fuse_context *c, basefs_get_session_fn get_session, double timeout) {
	struct basefs_fuse *f = (struct basefs_fuse *)c->fuse;
	if (f->se == 0 || f->se != get_session(c->fuse))
		return -10;
	if (f->conf.use_ino != 1 || f->conf.hard_remove != 1 || f->conf.nopath != 1 ||
	    f->conf.entry_timeout != timeout || f->conf.attr_timeout != timeout || f->conf.negative_timeout != timeout)
		return -11;
	if (f->fs == 0 || f->fs->user_data != c->private_data || f->fs->op.getattr == 0)
		return -12;
	if ((f->nullpath_ok != 0 && f->nullpath_ok != 1) || (f->utime_omit_ok != 0 && f->utime_omit_ok != 1))
		return -13;
	if (f->name_table.array == 0 || f->name_table.size < 2 || f->id_table.array == 0 || f->id_table.size < 2)
		return -14;
	return 0;
}

// basefs_capture must run on a FUSE thread inside an operation (init).
// timeout is the cache timeout the mount passed. It returns 0 when all
// works, a positive step when only the channel works (no node table, no
// utime flag), and a negative step when nothing does.
static int basefs_capture(basefs_notifier *n, double timeout) {
	void *h = dlopen("libfuse.so.2", RTLD_NOW | RTLD_NOLOAD);
	if (h == 0)
		return -1;
	basefs_version_fn version = (basefs_version_fn)dlsym(h, "fuse_version");
	basefs_get_context_fn get_context = (basefs_get_context_fn)dlsym(h, "fuse_get_context");
	basefs_get_session_fn get_session = (basefs_get_session_fn)dlsym(h, "fuse_get_session");
	basefs_next_chan_fn next_chan = (basefs_next_chan_fn)dlsym(h, "fuse_session_next_chan");
	basefs_chan_fd_fn chan_fd = (basefs_chan_fd_fn)dlsym(h, "fuse_chan_fd");
	dlclose(h);
	n->fd = -1;
	if (!version || !get_context || !get_session || !next_chan || !chan_fd)
		return -2;
	struct fuse_context *c = get_context();
	if (c == 0 || c->fuse == 0)
		return -3;
	struct fuse_session *se = get_session(c->fuse);
	if (se == 0)
		return -4;
	struct fuse_chan *ch = next_chan(se, 0);
	if (ch == 0 || chan_fd(ch) < 0)
		return -5;
	n->fd = fcntl(chan_fd(ch), F_DUPFD_CLOEXEC, 0);
	if (n->fd < 0)
		return -6;
	if (version() != 29)
		return 9;
	int rc = basefs_check(c, get_session, timeout);
	if (rc != 0)
		return -rc;
	n->f = (struct basefs_fuse *)c->fuse;
	n->f->utime_omit_ok = 1; // before any other request: init comes first
	return 0;
}

// basefs_child is libfuse's lookup_node: the cached child name of parent.
// Called with f->lock held.
static struct basefs_node *basefs_child(struct basefs_fuse *f, fuse_ino_t parent, const char *name) {
	uint64_t hash = parent;
	for (const char *s = name; *s; s++)
		hash = hash * 31 + (unsigned char)*s;
	hash %= f->name_table.size;
	uint64_t oldhash = hash % (f->name_table.size / 2);
	if (oldhash >= f->name_table.split)
		hash = oldhash;
	for (struct basefs_node *node = f->name_table.array[hash]; node != 0; node = node->name_next)
		if (node->parent != 0 && node->parent->nodeid == parent && strcmp(node->name, name) == 0)
			return node;
	return 0;
}

// basefs_lookup sets *ino to the node id of path and *parent to that of its
// directory, each 0 when the kernel has none (nothing cached there). Only
// inside a FUSE operation.
static int basefs_lookup(basefs_notifier *n, const char *path, uint64_t *parent, uint64_t *ino) {
	struct basefs_fuse *f = n->f;
	if (f == 0)
		return -1;
	char comp[256];
	fuse_ino_t cur = 1, par = 0;
	const char *p = path;
	pthread_mutex_lock(&f->lock);
	while (*p == '/')
		p++;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len >= sizeof comp) {
			par = cur = 0;
			break;
		}
		memcpy(comp, p, len);
		comp[len] = 0;
		p += len;
		while (*p == '/')
			p++;
		par = cur;
		struct basefs_node *node = basefs_child(f, cur, comp);
		cur = node ? node->nodeid : 0;
		if (cur == 0) {
			if (*p)
				par = 0; // an ancestor is not cached: nothing below it is
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	*parent = par;
	*ino = cur;
	return 0;
}

// basefs_cached copies up to max node ids the kernel holds into out and
// returns how many there are. Only inside a FUSE operation.
static size_t basefs_cached(basefs_notifier *n, uint64_t *out, size_t max) {
	struct basefs_fuse *f = n->f;
	size_t count = 0;
	if (f == 0)
		return 0;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->id_table.size; i++)
		for (struct basefs_node *node = f->id_table.array[i]; node != 0; node = node->id_next) {
			if (count < max)
				out[count] = node->nodeid;
			count++;
		}
	pthread_mutex_unlock(&f->lock);
	return count;
}

// basefs_inval_entry and basefs_inval_inode write a notification; they
// return 0 or -errno (ENOENT: the kernel has nothing cached there).
static int basefs_inval_entry(basefs_notifier *n, uint64_t parent, const char *name, size_t len) {
	struct basefs_inval_entry_out arg = { parent, (uint32_t)len, 0 };
	struct basefs_out_header hdr = { (uint32_t)(sizeof hdr + sizeof arg + len + 1), BASEFS_NOTIFY_INVAL_ENTRY, 0 };
	struct iovec iov[3] = { { &hdr, sizeof hdr }, { &arg, sizeof arg }, { (void *)name, len + 1 } };
	ssize_t w = writev(n->fd, iov, 3);
	return w < 0 ? -errno : 0;
}

static int basefs_inval_inode(basefs_notifier *n, uint64_t ino) {
	struct basefs_inval_inode_out arg = { ino, 0, 0 };
	struct basefs_out_header hdr = { (uint32_t)(sizeof hdr + sizeof arg), BASEFS_NOTIFY_INVAL_INODE, 0 };
	struct iovec iov[2] = { { &hdr, sizeof hdr }, { &arg, sizeof arg } };
	ssize_t w = writev(n->fd, iov, 2);
	return w < 0 ? -errno : 0;
}
*/
import "C"

import (
	"fmt"
	"sync"
	"syscall"
	"unsafe"
)

// fuseNotifier writes invalidations for one mount and resolves paths to the
// kernel's node ids. Safe for concurrent use; after close it does nothing.
// lookup and cached must run inside a FUSE operation (see Mounted.resolve);
// invalEntry and invalInode must not (the kernel takes the directory's lock
// and may wait for pages an operation in flight holds).
type fuseNotifier struct {
	mu     sync.Mutex
	n      *C.basefs_notifier // C memory
	closed bool
}

// captureNotifier finds the mount's descriptor and node table and lets
// libfuse pass single-time utimensat calls. It must be called from the file
// system's Init, with the cache timeout the mount passed. A nil notifier
// with an error means no invalidation; a notifier with an error means the
// node table and the utime flag are not usable (the notifier then resolves
// no path, and remote changes wait for the timeout).
func captureNotifier(timeout float64) (*fuseNotifier, error) {
	n := (*C.basefs_notifier)(C.calloc(1, C.size_t(unsafe.Sizeof(C.basefs_notifier{}))))
	rc := C.basefs_capture(n, C.double(timeout))
	if rc < 0 && n.f == nil {
		if n.fd >= 0 {
			C.close(n.fd)
		}
		C.free(unsafe.Pointer(n))
		return nil, fmt.Errorf("cannot reach the FUSE device for cache invalidation (step %d)", -int(rc))
	}
	fn := &fuseNotifier{n: n}
	if rc != 0 {
		return fn, fmt.Errorf("libfuse is not the 2.9 this build knows (check %d): remote changes show only after the attribute timeout, and setting only the modification time (tar x, touch -m) is ignored", int(rc))
	}
	return fn, nil
}

// lookup returns the node ids of p's directory and of p (0: not cached).
func (fn *fuseNotifier) lookup(p string) (parent, ino uint64) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.closed || fn.n.f == nil {
		return 0, 0
	}
	cs := C.CString(p)
	defer C.free(unsafe.Pointer(cs))
	var par, nid C.uint64_t
	if C.basefs_lookup(fn.n, cs, &par, &nid) != 0 {
		return 0, 0
	}
	return uint64(par), uint64(nid)
}

// cached returns the node ids of everything the kernel holds.
func (fn *fuseNotifier) cached() []uint64 {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.closed || fn.n.f == nil {
		return nil
	}
	for size := 1024; ; {
		out := make([]uint64, size)
		n := int(C.basefs_cached(fn.n, (*C.uint64_t)(unsafe.Pointer(&out[0])), C.size_t(size)))
		if n <= size {
			return out[:n]
		}
		size = n + n/4
	}
}

func (fn *fuseNotifier) invalEntry(parent uint64, name string) error {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.closed {
		return syscall.ENOTCONN
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	if rc := C.basefs_inval_entry(fn.n, C.uint64_t(parent), cs, C.size_t(len(name))); rc != 0 {
		return syscall.Errno(-rc)
	}
	return nil
}

func (fn *fuseNotifier) invalInode(ino uint64) error {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.closed {
		return syscall.ENOTCONN
	}
	if rc := C.basefs_inval_inode(fn.n, C.uint64_t(ino)); rc != 0 {
		return syscall.Errno(-rc)
	}
	return nil
}

// close releases the descriptor; the node table dies with the mount.
func (fn *fuseNotifier) close() {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if !fn.closed {
		fn.closed = true
		C.close(fn.n.fd)
		C.free(unsafe.Pointer(fn.n))
		fn.n = nil
	}
}
