//go:build unix

package log

import (
	"errors"
	"os"
	"syscall"
)

// errWouldBlock is what tryLockFile returns when another holds the lock.
var errWouldBlock = syscall.EWOULDBLOCK

// tryLockFile takes an exclusive flock(2) on f without waiting.
func tryLockFile(f *os.File) error { return flockRetry(f, syscall.LOCK_EX|syscall.LOCK_NB) }

// unlockFile releases the lock on f.
func unlockFile(f *os.File) error { return flockRetry(f, syscall.LOCK_UN) }

// flockRetry applies flock(2) to f, retrying when a signal interrupts it.
func flockRetry(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if !errors.Is(ferr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}
