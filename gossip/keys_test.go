package gossip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
)

func TestReadKeyFile(t *testing.T) {
	k16, k32 := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 32)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys, err := ReadKeyFile(write("lines", "# gossip keys\n\n"+EncodeKey(k32)+"\n  "+EncodeKey(k16)+"  \n"))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k32) || !bytes.Equal(keys[1], k16) {
		t.Fatalf("lines: %v %x", err, keys)
	}
	keys, err = ReadKeyFile(write("json", `[ "`+EncodeKey(k16)+`", "`+EncodeKey(k32)+`" ]`))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k16) {
		t.Fatalf("json: %v %x", err, keys)
	}
	for name, data := range map[string]string{
		"empty":    "# nothing\n",
		"badlen":   EncodeKey(make([]byte, 20)),
		"notb64":   "not base64!",
		"badjson":  "[1, 2",
		"jsonlen":  `["` + EncodeKey(make([]byte, 8)) + `"]`,
		"emptyarr": "[]",
	} {
		if _, err := ReadKeyFile(write(name, data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if k := GenerateKey(); len(k) != 32 || bytes.Equal(k, GenerateKey()) {
		t.Error("GenerateKey")
	}
}

// TestEncryption over loopback: nodes with the same key talk; a node with
// another key, or none, cannot join; the key operations fail cleanly
// without encryption.
func TestEncryption(t *testing.T) {
	k1, k2 := GenerateKey(), GenerateKey()
	c := startCluster(t, clusterOpts{n: 3, seed: 20, keys: [][]byte{k1}})
	em := newEntryMaker(t, 20)
	e := em.mkdir(t)
	if err := c.nodes[0].g.Announce([][]byte{e}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "encrypted entry", func() bool { return allHave(c.nodes[1:], hashes([][]byte{e})) })
	if c.nodes[0].g.Stats().Serf["encrypted"] != "true" {
		t.Fatal("not encrypted")
	}
	for name, keys := range map[string][][]byte{"other key": {k2}, "no key": nil} {
		g, err := New(Config{NodeName: "intruder", BindAddr: "127.0.0.99:0", FSID: testFSID, Keys: keys, Tuning: fastTuning(), Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		n, err := g.Join([]string{c.nodes[1].g.LocalAddr()})
		if err == nil || n != 0 {
			t.Errorf("%s: joined (%d, %v)", name, n, err)
		}
		if name == "no key" {
			if err := g.InstallKey(k1); !errors.Is(err, ErrNoEncryption) {
				t.Errorf("InstallKey without encryption: %v", err)
			}
		}
		g.Shutdown()
	}
	time.Sleep(100 * time.Millisecond)
	for _, nd := range c.nodes {
		if alive(nd.g) != 3 {
			t.Fatalf("%s lists %v", nd.g.LocalName(), nd.g.Members())
		}
	}
}

// TestKeyRotation: install a new key, use it, remove the old one, while
// one node keeps announcing; every announcement reaches every node and
// membership never drops. Afterwards only the new key gets in, and the
// keyring file holds it.
func TestKeyRotation(t *testing.T) {
	k1, k2 := GenerateKey(), GenerateKey()
	c := startCluster(t, clusterOpts{n: 3, seed: 21, keys: [][]byte{k1}})
	// A fourth node persists its keyring.
	kf := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(kf, []byte(EncodeKey(k1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := ReadKeyFile(kf)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	g4, err := New(Config{NodeName: "n03", BindAddr: "127.0.0.5:0", FSID: testFSID, Keys: keys, KeyringFile: kf,
		Tuning: fastTuning(), Logger: testLogger(), OnMessage: rec.onMessage})
	if err != nil {
		t.Fatal(err)
	}
	c.nodes = append(c.nodes, &node{g: g4, rec: rec})
	if _, err := g4.Join([]string{c.nodes[0].g.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	c.waitMembers(4, 5*time.Second)

	// Announce continuously and watch membership during the rotation.
	em := newEntryMaker(t, 21)
	var (
		mu      sync.Mutex
		sent    []log.Hash
		stop    = make(chan struct{})
		done    = make(chan struct{})
		minSeen atomic.Int64
	)
	minSeen.Store(4)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			e := em.mkdir(t)
			if err := c.nodes[1].g.Announce([][]byte{e}, nil); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			sent = append(sent, log.Sum(e))
			mu.Unlock()
			for _, nd := range c.nodes {
				if a := int64(alive(nd.g)); a < minSeen.Load() {
					minSeen.Store(a)
				}
			}
		}
	}()
	step := func(what string, op func([]byte) error, k []byte) {
		t.Helper()
		if err := op(k); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	g := c.nodes[0].g
	step("install", g.InstallKey, k2)
	step("use", g.UseKey, k2)
	if err := g.RemoveKey(k2); err == nil {
		t.Fatal("removed the primary key")
	}
	step("remove", g.RemoveKey, k1)
	close(stop)
	<-done
	mu.Lock()
	want := append([]log.Hash(nil), sent...)
	mu.Unlock()
	if len(want) < 5 {
		t.Fatalf("only %d announcements during the rotation", len(want))
	}
	waitFor(t, 5*time.Second, "every announcement everywhere", func() bool {
		for i, nd := range c.nodes {
			if i != 1 && !nd.rec.hasEntries(want) {
				return false
			}
		}
		return true
	})
	if m := minSeen.Load(); m != 4 {
		t.Fatalf("membership dropped to %d during the rotation", m)
	}

	st, err := g.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 1 || st.Keys[EncodeKey(k2)] != 4 || st.Primary[EncodeKey(k2)] != 4 {
		t.Fatalf("keys after rotation: %+v", st)
	}
	for _, nd := range c.nodes {
		if lk := nd.g.LocalKeys(); len(lk) != 1 || !bytes.Equal(lk[0], k2) {
			t.Fatalf("%s has %d keys", nd.g.LocalName(), len(lk))
		}
	}
	keys, err = ReadKeyFile(kf)
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0], k2) {
		t.Fatalf("keyring file after rotation: %v, %d keys", err, len(keys))
	}
	// The old key no longer gets in; the new one does.
	for i, k := range [][]byte{k1, k2} {
		ng, err := New(Config{NodeName: "late", BindAddr: "127.0.0.98:0", FSID: testFSID, Keys: [][]byte{k}, Tuning: fastTuning(), Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = ng.Join([]string{c.nodes[2].g.LocalAddr()})
		if (err == nil) != (i == 1) {
			t.Errorf("join with key %d: %v", i+1, err)
		}
		if i == 1 {
			ng.Leave()
		} else {
			ng.Shutdown()
		}
	}
}
