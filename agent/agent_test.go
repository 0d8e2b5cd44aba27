package agent

import (
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/control"
	"github.com/basefs/basefs/fsapi"
	"github.com/basefs/basefs/handlers"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("agent-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newFS(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	root := testKey("root")
	r, err := replica.Create(dir, "agent", root, []string{"127.0.0.1:7946"}, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	return dir, root
}

// TestStartStop: the node runs with its control socket; Stop may be called
// concurrently and again, and every call reports the same result.
func TestStartStop(t *testing.T) {
	dir, _ := newFS(t)
	a, err := Start(Config{Node: node.Config{Dir: dir}, Control: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.Dial(dir)
	if err != nil {
		t.Fatalf("control socket: %v", err)
	}
	c.Close()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = a.Stop() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != errs[0] {
			t.Fatalf("Stop results differ: %v", errs)
		}
	}
	if _, err := control.Dial(dir); err == nil {
		t.Fatal("control socket still answers after Stop")
	}
	// The store was released: another agent can start on it.
	b, err := Start(Config{Node: node.Config{Dir: dir}})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	b.Stop()
}

// TestBadMountDir: a mount point that does not exist is refused before
// the node starts, with the cause named.
func TestBadMountDir(t *testing.T) {
	if fsapi.Supported() != nil {
		t.Skip("no FUSE in this build")
	}
	dir, root := newFS(t)
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := Start(Config{Node: node.Config{Dir: dir}, Control: true, MountDir: missing, Mount: fsapi.Options{Key: root}})
	if err == nil || !strings.Contains(err.Error(), "no such directory") {
		t.Fatalf("err = %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Start(Config{Node: node.Config{Dir: dir}, MountDir: file, Mount: fsapi.Options{Key: root}}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Start(Config{Node: node.Config{Dir: dir}, MountDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("err = %v", err)
	}
	// Nothing was left running: the store opens.
	r, err := replica.Open(dir, replica.Options{})
	if err != nil {
		t.Fatalf("store held after failed starts: %v", err)
	}
	r.Close()
}

// TestMountAndHandlers: with a mount and a handler, a file written through
// the mount fires the handler with the mount's path; Stop unmounts.
func TestMountAndHandlers(t *testing.T) {
	if testing.Short() {
		t.Skip("FUSE: full tier")
	}
	if fsapi.Supported() != nil || os.Geteuid() != 0 {
		t.Skip("needs FUSE and root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir, root := newFS(t)
	mnt := t.TempDir()
	out := filepath.Join(t.TempDir(), "fired")
	script := filepath.Join(t.TempDir(), "h.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$BASEFS_EVENT $BASEFS_PATH $BASEFS_MOUNT\" >> "+out+"\n"), 0o755)
	a, err := Start(Config{Node: node.Config{Dir: dir}, Control: true, MountDir: mnt, Mount: fsapi.Options{Key: root},
		Handlers: handlers.Config{Specs: []handlers.Spec{{Glob: "/etc/**", Script: script}}, Name: "agent", StateDir: dir,
			Quiet: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	if err := os.MkdirAll(filepath.Join(mnt, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "etc", "app.conf"), []byte("x=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "create /etc/app.conf " + mnt
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		if strings.Contains(string(b), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler output %q, want a line %q", b, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(mnt); err != nil || len(ents) != 0 {
		t.Fatalf("after Stop the mount point holds %v (%v)", ents, err)
	}
}
