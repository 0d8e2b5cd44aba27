//go:build !cgo || !unix || fuse3

package fsapi

import (
	"errors"
	"runtime"

	"github.com/basefs/basefs/replica"
)

// Mounted is a FUSE mount; this build has none.
type Mounted struct{}

// errNoFUSE explains why this build cannot mount.
func errNoFUSE() error {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return errors.New("this basefs has no FUSE support on " + runtime.GOOS)
	}
	return errors.New(noFUSEReason)
}

// Mount fails: this build has no FUSE support.
func Mount(r *replica.Replica, dir string, opts Options) (*Mounted, error) {
	return nil, errNoFUSE()
}

// Dir returns "".
func (m *Mounted) Dir() string { return "" }

// Unmount does nothing.
func (m *Mounted) Unmount() error { return nil }

// Invalidate does nothing.
func (m *Mounted) Invalidate(paths ...string) {}

// Supported says why this build cannot mount.
func Supported() error { return errNoFUSE() }
