package fsapi

import (
	"errors"
	"syscall"

	blog "github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

// KindErrno maps each replica error kind to one errno. Unavailable (content
// whose blocks have not arrived on this node yet) is EAGAIN rather than EIO:
// the condition is transient and a retry succeeds once the blocks are here,
// while EIO stays reserved for data that fails its checks (Corrupt) and for
// failures of the store itself (Other).
func KindErrno(k replica.Kind) syscall.Errno {
	switch k {
	case replica.NotExist:
		return syscall.ENOENT
	case replica.Exist:
		return syscall.EEXIST
	case replica.IsDir:
		return syscall.EISDIR
	case replica.NotDir:
		return syscall.ENOTDIR
	case replica.NotEmpty:
		return syscall.ENOTEMPTY
	case replica.Permission:
		return syscall.EACCES
	case replica.Invalid:
		return syscall.EINVAL
	case replica.Unavailable:
		return syscall.EAGAIN
	case replica.Busy:
		return syscall.EBUSY
	}
	return syscall.EIO // Other, Corrupt
}

// Errno returns the errno that err becomes at the FUSE boundary: the mapping
// of its replica.Kind (see KindErrno), a syscall.Errno as it is, 0 for nil
// and EIO for anything else.
func Errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var re *replica.Error
	if errors.As(err, &re) {
		return KindErrno(re.Kind)
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}

// neg returns the negative errno of err, the form FUSE operations return.
func neg(err error) int { return -int(Errno(err)) }

// errc turns an errno into the negative form FUSE operations return.
func errc(e syscall.Errno) int { return -int(e) }

// nameTooLong returns -ENAMETOOLONG for a path a new name cannot have: a
// component over log.MaxNameLen bytes or a whole path over log.MaxPathLen
// (the kernel's own limits are larger), else 0.
func nameTooLong(path string) int {
	if len(path) > blog.MaxPathLen {
		return -int(syscall.ENAMETOOLONG)
	}
	start := 0
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '/' {
			if i-start > blog.MaxNameLen {
				return -int(syscall.ENAMETOOLONG)
			}
			start = i + 1
		}
	}
	return 0
}
