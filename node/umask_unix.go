//go:build unix

package node

import "syscall"

// syscallUmask sets the process umask and returns the old one, so the
// control socket is created with owner-only permissions from the start.
func syscallUmask(mask int) int { return syscall.Umask(mask) }
