//go:build !unix

package handlers

import (
	"os"
	"os/exec"
)

// Without process groups only the script itself can be killed.

func newGroup(cmd *exec.Cmd) {}

func signalGroup(pid int, kill bool) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}

func groupAlive(pid int) bool { return false }

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
