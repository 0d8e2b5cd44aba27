//go:build cgo && unix && !linux && !fuse3

package fsapi

import "errors"

// fuseNotifier is unavailable on this platform or FUSE version: the mount
// relies on its attribute timeout alone, and utimensat calls that set only
// one of the times are whatever the FUSE library makes of them.
type fuseNotifier struct{}

func captureNotifier(float64) (*fuseNotifier, error) {
	return nil, errors.New("cache invalidation is implemented for Linux FUSE 2 only")
}

func (*fuseNotifier) lookup(string) (uint64, uint64)  { return 0, 0 }
func (*fuseNotifier) cached() []uint64                { return nil }
func (*fuseNotifier) invalEntry(uint64, string) error { return errors.ErrUnsupported }
func (*fuseNotifier) invalInode(uint64) error         { return errors.ErrUnsupported }
func (*fuseNotifier) close()                          {}
