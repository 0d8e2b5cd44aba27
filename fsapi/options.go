package fsapi

import (
	"crypto/ed25519"
	"log/slog"
	"path"
	"time"
)

// Options configure a mount.
type Options struct {
	// Key signs every entry written through the mount. Its authority decides
	// which files show write bits and which writes succeed.
	Key ed25519.PrivateKey
	// UID and GID are shown as the owner of files whose owner was never
	// set, and for owner names with no account on this machine. chown
	// records owners by name (replicated); each node maps the names to its
	// own ids.
	UID, GID uint32
	// Private mounts without allow_other: only the mounting user may use
	// the mount. By default other users may, under the kernel's checks of
	// the mode bits (default_permissions): a service that dropped root
	// reads its 0644 configuration, and not a 0600 file of root's.
	Private bool
	// Ignore lists glob patterns (path.Match syntax) of names kept local:
	// files and symlinks whose names match live only in this mount's memory
	// and are never replicated. A pattern without a slash matches the base
	// name, one with a slash the whole path inside the filesystem. Nil means
	// DefaultIgnore(); an empty, non-nil slice ignores nothing.
	Ignore []string
	// AttrTimeout is how long the kernel may cache attributes, names and
	// missing names. Zero means DefaultAttrTimeout; negative means no caching.
	AttrTimeout time.Duration
	// Logger receives warnings (commits that failed where no caller could be
	// told, deferred deletes) and debug messages. Nil discards them.
	Logger *slog.Logger
	// Mount is the mount point as the caller names it, kept with the other
	// options for handlers' BASEFS_MOUNT. fsapi mounts the dir argument of
	// Mount (Mounted.Dir returns it made absolute) and does not read this.
	Mount string
	// Temp lists glob patterns (as Ignore) of temporary files that tools
	// write and then rename over the real name: rsync's .name.XXXXXX and
	// sed -i's sedXXXXXX. Such a file stays in memory while it is young:
	// renamed to a real name within Grace it becomes one write entry of
	// that name; still there after Grace, at its first fsync or at unmount
	// it is written like any other file — so a real file whose name looks
	// like a temporary one is only late, never lost. Nil means
	// DefaultTemp(); an empty, non-nil slice defers nothing.
	Temp []string
	// Grace is how long a temporary file (Temp) stays local, and how long a
	// replicated file renamed to an ignored name (an editor's backup) stays
	// hidden before its deletion is written — so an editor's save, rename to
	// file~ then write a new file, becomes one write entry. Zero means
	// DefaultGrace.
	Grace time.Duration
	// MultiThreaded serves FUSE requests on several threads. The default,
	// one thread, measured three times faster per request on a 2-core
	// machine (an open+close 40 µs instead of 125 µs) because a sequential
	// client then wakes one thread instead of two in turn; several threads
	// help only when many processes use the mount at once, and let one slow
	// fsync not delay the others.
	MultiThreaded bool

	// noInvalidate turns the kernel cache invalidation off (tests measure
	// the attribute timeout alone with it).
	noInvalidate bool
}

// DefaultAttrTimeout is the kernel cache timeout used when
// Options.AttrTimeout is zero. Remote changes do not wait for it: the mount
// invalidates the kernel's cache when they are applied (see Mount). It bounds
// only the staleness of what invalidation cannot reach (another name of a
// hard-linked file written here). Chosen by measurement; see README.md in
// this directory.
const DefaultAttrTimeout = 1 * time.Second

// DefaultGrace is the default of Options.Grace.
const DefaultGrace = 2 * time.Second

// DefaultIgnore returns the default patterns of names kept local: editors'
// swap, backup and lock files, which are meaningful on one machine only.
//
//   - vim: swap files (.name.swp … .name.swa, and .name.swpx or .name.swx
//     which vim makes to probe whether swap files work), the
//     write-permission probe "4913", and backups "name~" (also emacs, nano,
//     joe and most others)
//   - emacs: auto-save files "#name#" and lock symlinks ".#name"
//   - LibreOffice: lock files ".~lock.name#"
//
// Temporary files that tools rename over the real name are not ignored but
// deferred (see Options.Temp and DefaultTemp): a legitimate file with a
// look-alike name must still replicate.
func DefaultIgnore() []string {
	return []string{
		".*.sw[a-p]", ".*.sw[a-p]x", ".*.swx",
		"4913",
		"*~",
		"#*#", ".#*",
		".~lock.*#",
	}
}

// DefaultTemp returns the default patterns of temporary files (see
// Options.Temp): rsync's ".name.XXXXXX" and sed -i's "sedXXXXXX". Without
// them rsync -a writes each file as a temporary file, its time, its mode
// and a rename — four entries instead of one — and peers see the temporary
// names come and go.
func DefaultTemp() []string {
	return []string{".?*.??????", "sed??????"}
}

// ignoreMatcher decides which names are kept local.
type ignoreMatcher []string

// match reports whether p (a path inside the filesystem) matches a pattern.
func (im ignoreMatcher) match(p string) bool {
	if p == "/" {
		return false
	}
	base := path.Base(p)
	for _, pat := range im {
		subject := base
		if containsSlash(pat) {
			subject = p
		}
		if ok, err := path.Match(pat, subject); err == nil && ok {
			return true
		}
	}
	return false
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}
