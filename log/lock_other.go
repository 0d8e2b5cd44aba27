//go:build !unix && !windows

package log

import (
	"errors"
	"os"
)

// errWouldBlock is what tryLockFile returns when another holds the lock.
var errWouldBlock = errors.New("lock held")

// tryLockFile cannot lock on this platform; it always succeeds, so one
// process per home is the operator's care there.
func tryLockFile(*os.File) error { return nil }

// unlockFile does nothing.
func unlockFile(*os.File) error { return nil }
