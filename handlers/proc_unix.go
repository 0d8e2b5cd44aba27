//go:build unix

package handlers

import (
	"os/exec"
	"syscall"
)

// newGroup makes the command the leader of a new process group, so a
// timeout can kill it with everything it started.
func newGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to every process of the group led by pid.
func signalGroup(pid int, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-pid, sig)
}

// groupAlive reports whether any process of the group led by pid is left.
func groupAlive(pid int) bool {
	return syscall.Kill(-pid, 0) == nil
}

// executable reports whether the file may be executed by this process.
func executable(path string) bool {
	return syscall.Access(path, 0x1 /* X_OK */) == nil
}
