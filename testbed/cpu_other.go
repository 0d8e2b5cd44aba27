//go:build !unix

package testbed

import "time"

// CPUTime is the CPU time the process has used; 0 where unknown.
func CPUTime() time.Duration { return 0 }
