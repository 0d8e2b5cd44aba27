//go:build windows

package log

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// errWouldBlock is what tryLockFile returns when another holds the lock.
var errWouldBlock = errors.New("lock held")

// tryLockFile takes an exclusive LockFileEx lock on f's first byte without
// waiting.
func tryLockFile(f *os.File) error {
	ol := new(windows.Overlapped)
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return errWouldBlock
	}
	return err
}

// unlockFile releases the lock on f.
func unlockFile(f *os.File) error {
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, new(windows.Overlapped))
}
