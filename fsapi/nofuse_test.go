//go:build !cgo

package fsapi

import (
	"strings"
	"testing"
)

func TestMountWithoutCgo(t *testing.T) {
	m, err := Mount(nil, t.TempDir(), Options{})
	if err == nil || m != nil || !strings.Contains(err.Error(), "without FUSE support (cgo disabled)") {
		t.Fatalf("Mount without cgo = %v, %v; want the no-FUSE error", m, err)
	}
}
