package log

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ContentCache is a directory of materialized file contents, one file per
// content hash (dir/ab/abcdef…, the full hex hash under a directory named by
// its first two digits). It keeps each file's current version whole, so that
// reading it costs O(size) instead of replaying a delta chain.
//
// The cache is derived data: anything in it can be rebuilt from the log, so
// a missing file is a miss, never an error of the filesystem. Files are
// written atomically (a temporary file, fsynced, renamed into place) and Get
// verifies the bytes against the hash, so a crash or a damaged disk can cost
// a miss but never serve wrong content through Get.
//
// A ContentCache is safe for concurrent use by multiple goroutines. One
// directory must be used by one ContentCache of one process at a time.
type ContentCache struct {
	dir string
	// mu orders Puts (shared) against Retain's removal of stray temporary
	// files (exclusive), so Retain never removes a file a Put is writing.
	mu sync.RWMutex
}

// cacheTempMarker is part of the names cacheWriteFile gives its temporary
// files (".NAME.tmpRANDOM").
const cacheTempMarker = ".tmp"

// OpenContentCache opens the cache in dir, creating the directory if needed.
func OpenContentCache(dir string) (*ContentCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open content cache: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open content cache: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("open content cache: %s is not a directory", dir)
	}
	return &ContentCache{dir: dir}, nil
}

// Dir returns the cache's directory.
func (c *ContentCache) Dir() string { return c.dir }

func (c *ContentCache) path(h Hash) string {
	s := h.String()
	return filepath.Join(c.dir, s[:2], s)
}

// Put stores data as the content with hash h, after checking that data
// hashes to h. Storing a content that is already present does nothing.
func (c *ContentCache) Put(h Hash, data []byte) error {
	if got := Sum(data); got != h {
		return fmt.Errorf("content cache: put %s: %w: the bytes hash to %s", h.Short(), ErrContentCorrupt, got.Short())
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	p := c.path(h)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Size() == int64(len(data)) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("content cache: put %s: %w", h.Short(), err)
	}
	if err := cacheWriteFile(p, data); err != nil {
		return fmt.Errorf("content cache: put %s: %w", h.Short(), err)
	}
	return nil
}

// cacheWriteFile writes data to a temporary file beside p and renames it into
// place, without fsync: the cache can always be rebuilt from the store's
// blocks, and Get checks every file's hash, so a file torn by a crash is
// detected and removed rather than served.
func cacheWriteFile(p string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+cacheTempMarker+"*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// Get returns the content with hash h. A content that is not cached gives an
// error wrapping fs.ErrNotExist. A cached file whose bytes do not match h is
// removed and gives an error wrapping ErrContentCorrupt (and fs.ErrNotExist,
// since it is gone).
func (c *ContentCache) Get(h Hash) ([]byte, error) {
	p := c.path(h)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("content cache: get %s: %w", h.Short(), err)
	}
	if Sum(b) != h {
		_ = os.Remove(p)
		return nil, fmt.Errorf("content cache: get %s: %w: the cached file did not match and was removed (%w)", h.Short(), ErrContentCorrupt, fs.ErrNotExist)
	}
	return b, nil
}

// Has reports whether the content with hash h is cached.
func (c *ContentCache) Has(h Hash) bool {
	st, err := os.Stat(c.path(h))
	return err == nil && st.Mode().IsRegular()
}

// Open opens the cached content with hash h for reading (ReadAt, Seek), so
// a large file need not be held in memory. The caller closes the file. The
// bytes are not verified (see Get); the file stays readable even if it is
// removed from the cache meanwhile. A content that is not cached gives an
// error wrapping fs.ErrNotExist.
func (c *ContentCache) Open(h Hash) (*os.File, error) {
	f, err := os.Open(c.path(h))
	if err != nil {
		return nil, fmt.Errorf("content cache: open %s: %w", h.Short(), err)
	}
	return f, nil
}

// Remove removes the content with hash h from the cache. Removing a content
// that is not cached does nothing.
func (c *ContentCache) Remove(h Hash) error {
	if err := os.Remove(c.path(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content cache: remove %s: %w", h.Short(), err)
	}
	return nil
}

// Retain removes every cached content for which keep returns false, and the
// temporary files of interrupted writes, and returns how many contents it
// removed. keep is called once per cached content, without any lock held; a
// content Put while Retain runs may be removed if keep said no to it, which
// costs only a miss. Files in the directory that the cache did not write are
// left alone.
func (c *ContentCache) Retain(keep func(Hash) bool) (removed int, err error) {
	subs, err := os.ReadDir(c.dir)
	if err != nil {
		return 0, fmt.Errorf("content cache: retain: %w", err)
	}
	var temps []string
	for _, sub := range subs {
		if !sub.IsDir() || !cacheIsHexPrefix(sub.Name()) {
			continue
		}
		subDir := filepath.Join(c.dir, sub.Name())
		files, err := os.ReadDir(subDir)
		if err != nil {
			return removed, fmt.Errorf("content cache: retain: %w", err)
		}
		for _, f := range files {
			name := f.Name()
			if strings.HasPrefix(name, ".") && strings.Contains(name, cacheTempMarker) {
				temps = append(temps, filepath.Join(subDir, name))
				continue
			}
			h, err := ParseHash(name)
			if err != nil || h.String() != name || name[:2] != sub.Name() || !f.Type().IsRegular() {
				continue
			}
			if keep(h) {
				continue
			}
			if err := os.Remove(filepath.Join(subDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, fmt.Errorf("content cache: retain: %w", err)
			}
			removed++
		}
	}
	if len(temps) > 0 {
		// No Put is running while the lock is held, so a temporary file
		// that still exists belongs to a write that was interrupted.
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, t := range temps {
			if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, fmt.Errorf("content cache: retain: %w", err)
			}
		}
	}
	return removed, nil
}

// cacheIsHexPrefix reports whether name is two lowercase hex digits.
func cacheIsHexPrefix(name string) bool {
	if len(name) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		if !(name[i] >= '0' && name[i] <= '9' || name[i] >= 'a' && name[i] <= 'f') {
			return false
		}
	}
	return true
}
