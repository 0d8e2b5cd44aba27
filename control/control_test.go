package control

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/ops"
	"github.com/basefs/basefs/replica"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("node-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// serve starts an offline node on dir with its control socket; the
// returned stop closes both.
func serve(t *testing.T, dir string) func() error {
	t.Helper()
	n, err := node.Start(node.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(dir, ops.Local{R: n.Replica(), Node: n}, nil)
	if err != nil {
		n.Stop()
		t.Fatal(err)
	}
	var once sync.Once
	var serr error
	return func() error {
		once.Do(func() { serr = errors.Join(s.Close(), n.Stop()) })
		return serr
	}
}

func TestControlSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fs")
	keys := t.TempDir()
	rootKey := filepath.Join(keys, "root")
	root, err := log.GenerateKeyFile(rootKey, false)
	if err != nil {
		t.Fatal(err)
	}
	strangerKey := filepath.Join(keys, "stranger")
	if _, err := log.GenerateKeyFile(strangerKey, false); err != nil {
		t.Fatal(err)
	}
	rootSigner := ops.FileSigner(rootKey)
	r, err := replica.Create(dir, "ctl", root, []string{"127.0.0.1:7946"}, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	stop := serve(t, dir)
	defer stop()
	st, err := os.Stat(filepath.Join(dir, SocketName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", st.Mode(), err)
	}
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteFile(rootSigner, "/etc/app.conf", []byte("port=80"), replica.WriteOptions{Parents: true}); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadFile("/etc/app.conf")
	if err != nil || string(got) != "port=80" {
		t.Fatalf("read %q %v", got, err)
	}
	// Errors keep their kind and message.
	_, err = c.WriteFile(ops.FileSigner(strangerKey), "/etc/app.conf", []byte("x"), replica.WriteOptions{})
	if !replica.IsKind(err, replica.Permission) || !strings.HasPrefix(err.Error(), "permission denied: key ") {
		t.Fatalf("stranger's write: %v", err)
	}
	if _, err := c.Stat("/nope"); !replica.IsKind(err, replica.NotExist) {
		t.Fatalf("stat: %v", err)
	}
	// Concurrent clients.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cc, err := Dial(dir)
			if err != nil {
				t.Error(err)
				return
			}
			defer cc.Close()
			if err := cc.Mkdir(rootSigner, "/d"+string(rune('a'+i)), ops.MkdirOptions{}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	kids, err := c.List("/")
	if err != nil || len(kids) != 10 {
		t.Fatalf("ls / = %d nodes, %v", len(kids), err)
	}
	s, err := c.Status()
	if err != nil || !s.Running || s.Name != "ctl" {
		t.Fatalf("status %+v %v", s, err)
	}
	// A second server on the same directory is refused.
	if _, err := Listen(dir, ops.Local{}, nil); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("second server: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SocketName)); !os.IsNotExist(err) {
		t.Fatal("socket left behind")
	}
}

func TestControlRejectsGarbage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fs")
	r, err := replica.Create(dir, "ctl", testKey("root"), nil, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer serve(t, dir)()
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.call("Frobnicate", nil, nil); err == nil || !strings.Contains(err.Error(), "unknown control method") {
		t.Fatalf("unknown method: %v", err)
	}
	if err := c.call("WriteFile", map[string]any{"S": 3, "Path": "/x"}, nil); !replica.IsKind(err, replica.Invalid) {
		t.Fatalf("malformed parameters: %v", err)
	}
	if _, err := c.WriteFile(ops.Signer{}, "/x", nil, replica.WriteOptions{}); !replica.IsKind(err, replica.Invalid) || !strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("no key: %v", err)
	}
	// Raw garbage on the wire gets an error answer, and the node still serves.
	c.conn.Write([]byte("{not json\n"))
	line, err := readLine(c.r, maxRequest)
	if err != nil || !strings.Contains(string(line), "malformed control request") {
		t.Fatalf("garbage answer %q %v", line, err)
	}
	if _, err := c.Stat("/"); err != nil {
		t.Fatal(err)
	}
}
