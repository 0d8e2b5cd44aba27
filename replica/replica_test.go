package replica

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
)

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("replica-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func newReplica(t *testing.T) (*Replica, ed25519.PrivateKey) {
	t.Helper()
	root := key("root")
	r, err := Create(filepath.Join(t.TempDir(), "fs"), "test", root, []string{"127.0.0.1:7946"}, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, root
}

func mustWrite(t *testing.T, r *Replica, k ed25519.PrivateKey, path, data string) {
	t.Helper()
	if _, err := r.WriteFile(k, path, []byte(data), WriteOptions{Parents: true}); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func mustRead(t *testing.T, r *Replica, path, want string) {
	t.Helper()
	got, err := r.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if string(got) != want {
		t.Fatalf("read %s = %q, want %q", path, got, want)
	}
}

func mustKind(t *testing.T, err error, k Kind) {
	t.Helper()
	if !IsKind(err, k) {
		t.Fatalf("error %v (kind %v), want kind %v", err, KindOf(err), k)
	}
}

func TestCreateWriteReopen(t *testing.T) {
	r, root := newReplica(t)
	mustRead(t, r, ClusterFile, "127.0.0.1:7946\n")
	big := bytes.Repeat([]byte("line of config\n"), 10000)
	mustWrite(t, r, root, "/etc/app/app.conf", "port=80\n")
	if _, err := r.WriteFile(root, "/etc/big", big, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	before := r.Status()
	dir := r.Dir()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	mustRead(t, r2, "/etc/app/app.conf", "port=80\n")
	got, err := r2.ReadFile("/etc/big")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file after reopen: %v", err)
	}
	after := r2.Status()
	if after.ViewHash != before.ViewHash || after.Entries != before.Entries || after.ID != before.ID {
		t.Fatalf("status changed across reopen:\n%+v\n%+v", before, after)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	r, _ := newReplica(t)
	_, err := Open(r.Dir(), Options{})
	mustKind(t, err, Busy)
}

func TestRefusedOperationLeavesLogUnchanged(t *testing.T) {
	r, root := newReplica(t)
	mustWrite(t, r, root, "/etc/app.conf", "x")
	stranger := key("stranger")
	n := r.Status().Entries
	_, err := r.WriteFile(stranger, "/etc/app.conf", []byte("evil"), WriteOptions{})
	mustKind(t, err, Permission)
	fp := log.ShortFingerprint(pubOf(stranger))
	if want := "permission denied: key " + fp + " has no write authority over /etc/app.conf"; err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
	// A multi-entry operation refused half-way through validation.
	r.Grant(root, "/home/u", pubOf(key("u")), false)
	mustWrite(t, r, root, "/home/u/a", "a")
	mustWrite(t, r, root, "/root-only/b", "b")
	n = r.Status().Entries
	hash := r.Status().ViewHash
	mustKind(t, r.Rename(key("u"), "/home/u/a", "/root-only/a", false), Permission)
	mustKind(t, r.Remove(key("u"), "/root-only", true, false), Permission)
	if s := r.Status(); s.Entries != n || s.ViewHash != hash {
		t.Fatalf("refused operations changed the log: %d -> %d entries", n, s.Entries)
	}
}

func TestErrorKinds(t *testing.T) {
	r, root := newReplica(t)
	mustWrite(t, r, root, "/d/f", "x")
	mustKind(t, r.Mkdir(root, "/d", 0, false, false), Exist)
	mustKind(t, r.Mkdir(root, "/nope/x", 0, false, false), NotExist)
	mustKind(t, r.Remove(root, "/d", false, false), NotEmpty)
	mustKind(t, r.Remove(root, "/missing", false, false), NotExist)
	_, err := r.WriteFile(root, "/d", []byte("x"), WriteOptions{})
	mustKind(t, err, IsDir)
	_, err = r.WriteFile(root, "/d/f/g", []byte("x"), WriteOptions{Parents: true})
	mustKind(t, err, NotDir)
	_, err = r.List("/d/f")
	mustKind(t, err, NotDir)
	_, err = r.Stat("/d/f/g")
	mustKind(t, err, NotDir)
	_, err = r.Stat("/a/../b")
	mustKind(t, err, Invalid)
	_, err = r.WriteFile(root, "/d/f", []byte("x"), WriteOptions{Exclusive: true})
	mustKind(t, err, Exist)
	mustKind(t, r.Rename(root, "/d", "/d/sub", false), Invalid)
}

func TestTreeOperations(t *testing.T) {
	r, root := newReplica(t)
	mustWrite(t, r, root, "/a/b/c.txt", "c")
	mustWrite(t, r, root, "/a/b/d.txt", "d")
	if err := r.Rename(root, "/a/b", "/x", false); err != nil {
		t.Fatal(err)
	}
	mustRead(t, r, "/x/c.txt", "c")
	mustRead(t, r, "/x/d.txt", "d")
	if _, err := r.Stat("/a/b"); !IsKind(err, NotExist) {
		t.Fatalf("/a/b after move: %v", err)
	}
	if err := r.Symlink(root, "c.txt", "/x/link", false); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Readlink("/x/link"); got != "c.txt" {
		t.Fatalf("readlink = %q", got)
	}
	if err := r.Link(root, "/x/c.txt", "/x/hard", false); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r, root, "/x/hard", "through the link")
	mustRead(t, r, "/x/c.txt", "through the link")
	if n, _ := r.Stat("/x/c.txt"); n.Nlink != 2 {
		t.Fatalf("nlink %d", n.Nlink)
	}
	m := uint32(0o600)
	if err := r.SetAttr(root, "/x/c.txt", &m, 0, false); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Stat("/x/hard"); n.Mode != 0o600 {
		t.Fatalf("mode through link %o", n.Mode)
	}
	if err := r.Remove(root, "/x", true, false); err != nil {
		t.Fatal(err)
	}
	if kids, _ := r.List("/"); len(kids) != 2 { // /.cluster and /a
		t.Fatalf("ls / = %v", kids)
	}
	// Rename over an existing file replaces it.
	mustWrite(t, r, root, "/a/new", "new")
	mustWrite(t, r, root, "/a/old", "old")
	if err := r.Rename(root, "/a/new", "/a/old", false); err != nil {
		t.Fatal(err)
	}
	mustRead(t, r, "/a/old", "new")
}

func TestGrantRevoke(t *testing.T) {
	r, root := newReplica(t)
	u := key("u")
	if _, err := r.Grant(root, "/home/u", pubOf(u), false); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r, u, "/home/u/proj/README", "hi")
	if err := r.Mkdir(u, "/home/u/proj/src", 0, false, false); err != nil {
		t.Fatal(err)
	}
	_, err := r.WriteFile(u, "/home/other", []byte("x"), WriteOptions{})
	mustKind(t, err, Permission)
	before := r.Status().ViewHash
	k, err := r.ResolveKey(log.Fingerprint(pubOf(u))[:8])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revoke(u, "/home/u", k, false); !IsKind(err, Permission) {
		t.Fatalf("self-revoke: %v", err)
	}
	if _, err := r.Revoke(root, "/home/u", k, false); err != nil {
		t.Fatal(err)
	}
	if got := r.Status().ViewHash; got != before {
		t.Fatal("revoke changed the tree")
	}
	mustRead(t, r, "/home/u/proj/README", "hi")
	_, err = r.WriteFile(u, "/home/u/proj/README", []byte("after"), WriteOptions{})
	mustKind(t, err, Permission)
	var rootKey [32]byte
	copy(rootKey[:], pubOf(root))
	if _, err := r.Revoke(root, "/", rootKey, false); !IsKind(err, Invalid) {
		t.Fatalf("revoking the root key: %v", err)
	}
	// Re-granting restores the key.
	if _, err := r.Grant(root, "/home/u", pubOf(u), false); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r, u, "/home/u/proj/README", "back")
}

func TestRevertFileAndDirectory(t *testing.T) {
	r, root := newReplica(t)
	e1, err := r.WriteFile(root, "/cfg/a", []byte("v1"), WriteOptions{Parents: true})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r, root, "/cfg/a", "v2")
	if _, err := r.Revert(root, "/cfg/a", e1.Hash(), false); err != nil {
		t.Fatal(err)
	}
	mustRead(t, r, "/cfg/a", "v1")

	// Directory: snapshot point is the write of /cfg/b.
	eb, _ := r.WriteFile(root, "/cfg/b", []byte("b1"), WriteOptions{})
	mustWrite(t, r, root, "/cfg/b", "b2")
	mustWrite(t, r, root, "/cfg/c", "new file")
	if err := r.Remove(root, "/cfg/a", false, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Mkdir(root, "/cfg/sub", 0, false, false); err != nil {
		t.Fatal(err)
	}
	n, err := r.Revert(root, "/cfg", eb.Hash(), false)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("revert wrote nothing")
	}
	mustRead(t, r, "/cfg/a", "v1")
	mustRead(t, r, "/cfg/b", "b1")
	for _, p := range []string{"/cfg/c", "/cfg/sub"} {
		if _, err := r.Stat(p); !IsKind(err, NotExist) {
			t.Fatalf("%s after revert: %v", p, err)
		}
	}
	// Reverting a deleted directory's content through its parent.
	ec, _ := r.WriteFile(root, "/d/x/y", []byte("y"), WriteOptions{Parents: true})
	if err := r.Remove(root, "/d/x", true, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Mkdir(root, "/d/x", 0, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revert(root, "/d", ec.Hash(), false); err != nil {
		t.Fatal(err)
	}
	mustRead(t, r, "/d/x/y", "y")
	// Nothing to revert from outside the path's history.
	_, err = r.Revert(root, "/cfg", ec.Hash(), false)
	mustKind(t, err, Invalid)
}

func TestIngestConverges(t *testing.T) {
	a, root := newReplica(t)
	mustWrite(t, a, root, "/x/y", strings.Repeat("payload ", 1000))
	mustWrite(t, a, root, "/x/z", "small")
	dir := filepath.Join(t.TempDir(), "b")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var entries []*log.Entry
	for _, e := range a.store.Entries() {
		d, err := log.Decode(e.Encoded())
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, d)
	}
	if err := b.store.Append(entries[:1], nil); err != nil {
		t.Fatal(err)
	}
	if err := b.initView(entries[0]); err != nil {
		t.Fatal(err)
	}
	// A forged entry: valid structure, signature by someone else's key.
	forged, _ := log.Decode(entries[len(entries)-1].Encoded())
	enc := append([]byte(nil), forged.Encoded()...)
	enc[len(enc)-1] ^= 1
	forgedEntry, err := log.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]byte
	for h := range a.contents {
		c := a.contents[h]
		all, _, _ := log.ContentBlocks(c, a.store.Block)
		for _, bh := range all {
			blk, _ := a.store.Block(bh)
			blocks = append(blocks, blk)
		}
	}
	res, err := b.Ingest(append(entries[1:], forgedEntry), blocks)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Reason != "bad signature" {
		t.Fatalf("rejected = %+v", res.Rejected)
	}
	if b.Status().ViewHash != a.Status().ViewHash {
		t.Fatal("view hashes differ after ingest")
	}
	mustRead(t, b, "/x/y", strings.Repeat("payload ", 1000))
	if b.Status().MissingBlocks != 0 {
		t.Fatalf("missing blocks %d", b.Status().MissingBlocks)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	r, root := newReplica(t)
	data := bytes.Repeat([]byte{0xAB, 0x01, 0x77}, 40000) // incompressible enough to need blocks
	for i := range data {
		data[i] ^= byte(i * 7)
	}
	if _, err := r.WriteFile(root, "/blob", data, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if rep := r.Verify(); !rep.OK || rep.Files != 2 {
		t.Fatalf("clean store: %+v", rep)
	}
	dir := r.Dir()
	r.Close()
	// Flip a byte deep inside the store (in a block record) and drop the
	// materialized copy.
	p := filepath.Join(dir, log.StoreFileName)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xFF
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "content"))
	r2, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if rep := r2.Verify(); rep.OK {
		t.Fatalf("tampered store verified: %+v", rep)
	}
}

func TestSubscribeSeesLocalChanges(t *testing.T) {
	r, root := newReplica(t)
	var got []string
	cancel := r.Subscribe(func(u Update) {
		for _, c := range u.Changes {
			got = append(got, fmt.Sprintf("%s %s %v", c.Event, c.Path, u.Local))
			// Listeners may read the replica.
			r.Stat(c.Path)
		}
	})
	defer cancel()
	mustWrite(t, r, root, "/a/f", "1")
	want := []string{"mkdir /a true", "create /a/f true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
}

func TestReadDoesNotReplayHistory(t *testing.T) {
	r, root := newReplica(t)
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte('a' + i%23)
	}
	for v := 0; v < 40; v++ {
		copy(data[v*1000:], fmt.Sprintf("version %04d", v))
		if _, err := r.WriteFile(root, "/f", data, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every version past maxDeltaChain restarts the chain with a whole copy.
	n, _ := r.Stat("/f")
	if got := r.chainLen[n.ContentHash]; got > maxDeltaChain {
		t.Fatalf("delta chain of %d", got)
	}
	got, err := r.ReadFile("/f")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
}

func TestIngestDropsEntriesWithoutStanding(t *testing.T) {
	a, root := newReplica(t)
	u := key("u")
	mustWrite(t, a, root, "/etc/x", "x")
	// Entries made on a copy of a (same filesystem): a grant to u and u's
	// writes, and writes by a key nobody granted.
	var all []*log.Entry
	a.ScanEntries(0, func(e *log.Entry) bool { all = append(all, e); return true })
	b, _ := newReplicaFrom(t, all)
	if _, err := b.Grant(root, "/home/u", pubOf(u), false); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b, u, "/home/u/notes", "u's")
	b.SetDropUnauthorized(false)
	rogue := key("rogue")
	b.mu.Lock()
	t2, _ := b.begin(rogue)
	par, _, _ := b.view.Head("/etc/x")
	forgedParent := par.Hash()
	rogueEntry, _ := t2.add(&log.Entry{Action: log.ActWrite, Parent: forgedParent, Path: "/etc/x", Mode: 0o644,
		Content: &log.Content{Size: 4, Hash: log.Sum([]byte("evil")), Inline: []byte("evil")}})
	t2.commit(false)
	b.mu.Unlock()
	var fromB []*log.Entry
	b.ScanEntries(len(all), func(e *log.Entry) bool {
		d, _ := log.Decode(e.Encoded())
		fromB = append(fromB, d)
		return true
	})
	a.SetDropUnauthorized(true)
	// u's write arrives before the grant that authorizes it, in one batch:
	// kept; the rogue's write: dropped, nothing stored.
	for i, j := 0, len(fromB)-1; i < j; i, j = i+1, j-1 {
		fromB[i], fromB[j] = fromB[j], fromB[i]
	}
	res, err := a.Ingest(fromB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Hash != rogueEntry.Hash().String() || res.Rejected[0].Reason != "no authority" {
		t.Fatalf("rejected %+v", res.Rejected)
	}
	if a.HasEntry(rogueEntry.Hash()) {
		t.Fatal("rogue entry stored")
	}
	mustRead(t, a, "/home/u/notes", "u's")
	mustRead(t, a, "/etc/x", "x")
}

// newReplicaFrom makes a replica holding the given entries (the first is the
// root).
func newReplicaFrom(t *testing.T, entries []*log.Entry) (*Replica, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	var ds []*log.Entry
	for _, e := range entries {
		d, err := log.Decode(e.Encoded())
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if err := r.store.Append(ds[:1], nil); err != nil {
		t.Fatal(err)
	}
	if err := r.initView(ds[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Ingest(ds[1:], nil); err != nil {
		t.Fatal(err)
	}
	return r, nil
}

// A listener that reads the replica while several writers commit must not
// deadlock, and hears every update once, in commit order.
func TestListenerReadsWhileWritersCommit(t *testing.T) {
	r, root := newReplica(t)
	var mu sync.Mutex
	var seen []string
	cancel := r.Subscribe(func(u Update) {
		for _, e := range u.Entries {
			r.Stat(e.Path) // reads take the replica's lock
			mu.Lock()
			seen = append(seen, e.Hash().String())
			mu.Unlock()
		}
	})
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := r.WriteFile(root, fmt.Sprintf("/w%d/f%d", w, i), []byte("x"), WriteOptions{Parents: true}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writers and a reading listener deadlocked")
	}
	var stored []string
	r.ScanEntries(0, func(e *log.Entry) bool { stored = append(stored, e.Hash().String()); return true })
	// Everything after the bootstrap entries, in store order.
	stored = stored[len(stored)-len(seen):]
	if fmt.Sprint(stored) != fmt.Sprint(seen) {
		t.Fatal("listener heard updates out of commit order")
	}
}
