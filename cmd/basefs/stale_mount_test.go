package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/basefs/basefs/fsapi"
)

// TestMountAfterKill: `basefs mount` killed with SIGKILL leaves its mount
// point stale ("transport endpoint is not connected"); the next mount
// cleans it up and mounts, instead of failing as under a systemd restart
// loop.
func TestMountAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes and FUSE: full tier")
	}
	if err := fsapi.Supported(); err != nil || os.Geteuid() != 0 {
		t.Skip("needs FUSE and root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	bin := basefsBinary(t)
	c := newCLI(t)
	c.setup()
	c.ok("hello\n", "write", "demo:/motd")
	port := e2ePort(t, []string{"127.0.0.1"})
	n := &e2eNode{t: t, bin: bin, home: c.home, addr: "127.0.0.1:" + itoa(port)}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	motd := filepath.Join(mnt, "motd")
	n.start("--mount", mnt)
	waitUntil(t, 20*time.Second, "the mount", func() bool {
		b, err := os.ReadFile(motd)
		return err == nil && string(b) == "hello\n"
	})
	n.cmd.Process.Kill()
	<-n.done
	n.cmd = nil
	n.log.Close()
	_, err := os.ReadDir(mnt)
	t.Logf("after SIGKILL, reading the mount point gives %v", err)
	n.start("--mount", mnt)
	defer n.stop()
	waitUntil(t, 20*time.Second, "the mount after a restart", func() bool {
		b, err := os.ReadFile(motd)
		return err == nil && string(b) == "hello\n"
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
