package log

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lockChildEnv switches the test binary into a helper process for the lock
// tests: "try:DIR" tries LockDir(DIR) once and prints the outcome; "hold:DIR"
// takes the lock, prints "locked", and holds it until its stdin closes.
const lockChildEnv = "BASEFS_LOCK_CHILD"

// TestLockDirHelperProcess is not a test: it is the child process of the
// lock tests, and does nothing unless lockChildEnv is set.
func TestLockDirHelperProcess(t *testing.T) {
	spec := os.Getenv(lockChildEnv)
	if spec == "" {
		return
	}
	mode, dir, _ := strings.Cut(spec, ":")
	l, err := LockDir(dir)
	switch {
	case err != nil && errors.Is(err, ErrLocked):
		fmt.Printf("locked-out %v\n", err)
		os.Exit(0)
	case err != nil:
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	case mode == "try":
		fmt.Println("acquired")
		l.Unlock()
		os.Exit(0)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	l.Unlock()
	os.Exit(0)
}

func lockChild(t *testing.T, mode, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDirHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+mode+":"+dir)
	return cmd
}

// lockTry runs a child that tries the lock once and returns its first line.
func lockTry(t *testing.T, dir string) string {
	t.Helper()
	out, err := lockChild(t, "try", dir).Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(os.Getpid())
	if b, _ := os.ReadFile(filepath.Join(dir, dirLockName)); string(b) != pid+"\n" {
		t.Fatalf("lock file holds %q, want our pid %s", b, pid)
	}
	if l2, err := LockDir(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+pid) {
		if l2 != nil {
			l2.Unlock()
		}
		t.Fatalf("second LockDir in one process: %v, want ErrLocked naming pid %s", err, pid)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, dirLockName)); len(b) != 0 {
		t.Fatalf("lock file still names %q after Unlock", b)
	}
	l, err = LockDir(dir)
	if err != nil {
		t.Fatalf("LockDir after Unlock: %v", err)
	}
	l.Unlock()
}

func TestLockDirAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	line := lockTry(t, dir)
	if !strings.HasPrefix(line, "locked-out") || !strings.Contains(line, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("child got %q while we hold the lock", line)
	}
	l.Unlock()
	if line := lockTry(t, dir); line != "acquired" {
		t.Fatalf("child got %q after we unlocked", line)
	}

	// A child holds it; then it is killed, and the kernel releases it.
	cmd := lockChild(t, "hold", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		got <- line
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-got:
		if line != "locked\n" {
			t.Fatalf("holding child said %q", line)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("holding child did not take the lock")
	}
	_, err = LockDir(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("LockDir while a child holds it: %v, want ErrLocked naming pid %d", err, cmd.Process.Pid)
	}
	// A store in that directory is a different lock.
	s, err := OpenStore(dir, StoreOptions{NoSync: true})
	if err != nil {
		t.Fatalf("OpenStore beside a directory lock: %v", err)
	}
	s.Close()
	cmd.Process.Kill()
	cmd.Wait()
	l, err = LockDir(dir)
	if err != nil {
		t.Fatalf("LockDir after the holder died: %v", err)
	}
	l.Unlock()
}
