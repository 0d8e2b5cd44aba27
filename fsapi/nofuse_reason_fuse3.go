//go:build fuse3

package fsapi

// noFUSEReason says why a build without the mount has none: the mount
// speaks the FUSE 2 API of cgofuse (its options, its libfuse 2.9 hooks).
const noFUSEReason = "this basefs was built with -tags fuse3; its mount supports FUSE 2 only (build without the tag)"
