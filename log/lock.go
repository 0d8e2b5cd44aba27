package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// dirLockName is the lock file LockDir holds in a directory.
const dirLockName = "lock"

// ErrLocked is wrapped by the errors of LockDir and OpenStore when another
// process (or another lock in this process) holds the lock.
var ErrLocked = errors.New("locked by another process")

// DirLock is an exclusive lock (flock(2) on Unix, LockFileEx on Windows, so
// the kernel releases it when the holding process dies) on a lock file, which holds the holder's
// process id for the error messages of those who find it locked. The lock
// file is never removed: removing it would let two processes lock two
// different files of the same name.
//
// A DirLock is safe for concurrent use; Unlock may be called more than once.
type DirLock struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// LockDir takes the lock of directory dir (the file "lock" in it), creating
// dir (mode 0700) if needed. It does not wait: if another process, or
// another DirLock in this process, holds the lock, it returns an error that
// wraps ErrLocked and names the holder's process id.
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return lockPath(filepath.Join(dir, dirLockName))
}

// lockPath takes the lock on the file at path, creating it if needed.
func lockPath(path string) (*DirLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := tryLockFile(f); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("lock %s: %w (held by %s)", path, ErrLocked, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Write the pid first and cut the old contents after, so a reader never
	// sees an empty file while we hold the lock.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if _, err := f.WriteAt(pid, 0); err == nil {
		err = f.Truncate(int64(len(pid)))
	}
	if err != nil {
		unlockFile(f)
		f.Close()
		return nil, fmt.Errorf("lock %s: write pid: %w", path, err)
	}
	return &DirLock{f: f, path: path}, nil
}

// lockHolder describes the process named in a lock file.
func lockHolder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	s := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(s); err != nil || s == "" {
		return "an unknown process"
	}
	return "pid " + s
}

// Path returns the lock file's path.
func (l *DirLock) Path() string { return l.path }

// Unlock releases the lock. Calling it again does nothing.
func (l *DirLock) Unlock() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Clear our pid so that nobody blames us later; the file stays.
	terr := f.Truncate(0)
	uerr := unlockFile(f)
	cerr := f.Close()
	if err := errors.Join(terr, uerr, cerr); err != nil {
		return fmt.Errorf("unlock %s: %w", l.path, err)
	}
	return nil
}
