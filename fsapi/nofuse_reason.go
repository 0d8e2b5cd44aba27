//go:build !fuse3

package fsapi

// noFUSEReason says why a build without the mount has none.
const noFUSEReason = "this basefs was built without FUSE support (cgo disabled)"
