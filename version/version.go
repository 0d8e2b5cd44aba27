// Package version says which basefs this is: the release version and
// commit (stamped at build time by scripts/release.sh with -ldflags, or
// read from the Go build information), the Go version, and the wire
// protocol versions it speaks.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped at build time: -ldflags "-X github.com/basefs/basefs/version.version=v1.2.3
// -X github.com/basefs/basefs/version.commit=abc123".
var (
	version = ""
	commit  = ""
)

// Info is what `basefs version` reports.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	// SyncProtocol is the sync protocol version (peers must agree).
	SyncProtocol int `json:"sync_protocol"`
	// EntryFormat is the entry encoding's version byte.
	EntryFormat int `json:"entry_format"`
}

// Get returns this build's Info; the protocol versions are passed in so
// this package stays a leaf.
func Get(syncProtocol, entryFormat int) Info {
	i := Info{Version: version, Commit: commit, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		SyncProtocol: syncProtocol, EntryFormat: entryFormat}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && i.Commit == "" {
				i.Commit = s.Value
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	return i
}

// String is the one-line form: "basefs v1.2.3 (commit abc123, go1.26.8,
// linux/amd64, sync protocol 1, entry format 1)".
func (i Info) String() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return fmt.Sprintf("basefs %s (commit %s, %s, %s/%s, sync protocol %d, entry format %d)", i.Version, c, i.Go, i.OS, i.Arch, i.SyncProtocol, i.EntryFormat)
}
