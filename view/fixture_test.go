package view

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/basefs/basefs/log"
)

// fixture builds signed entries for tests. Each entry is applied to the
// fixture's own view as it is made (unless made with apply=false).
// failer is what the fixture needs of *testing.T and *rapid.T.
type failer interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

type fixture struct {
	t     failer
	keys  map[string]ed25519.PrivateKey
	root  *log.Entry
	v     *View
	all   []*log.Entry
	clock int64
}

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("basefs-test-key:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pub(k ed25519.PrivateKey) [32]byte {
	var p [32]byte
	copy(p[:], k.Public().(ed25519.PublicKey))
	return p
}

func newFixture(t failer) *fixture {
	f := &fixture{t: t, keys: map[string]ed25519.PrivateKey{}}
	f.root = f.sign("root", &log.Entry{Action: log.ActMkdir, Path: "/", Name: "test", Nonce: make([]byte, log.NonceLen), Mode: 0o755})
	v, err := New(f.root)
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

func (f *fixture) key(name string) ed25519.PrivateKey {
	if k, ok := f.keys[name]; ok {
		return k
	}
	k := testKey(name)
	f.keys[name] = k
	return k
}

func (f *fixture) sign(key string, e *log.Entry) *log.Entry {
	f.t.Helper()
	f.clock++
	e.Time = f.clock
	if err := e.Sign(f.key(key)); err != nil {
		f.t.Fatalf("sign %s %s: %v", e.Action, e.Path, err)
	}
	return e
}

// add signs e, records it and applies it to the fixture's view.
func (f *fixture) add(key string, e *log.Entry) *log.Entry {
	f.t.Helper()
	f.sign(key, e)
	f.all = append(f.all, e)
	f.v.Apply(e)
	return e
}

// parentFor picks the parent a writer with this view would use.
func (f *fixture) parentFor(path string) log.Hash {
	f.t.Helper()
	if h, _, ok := f.v.Head(path); ok {
		return h.Hash()
	}
	d, _, ok := f.v.Head(log.Dir(path))
	if !ok {
		f.t.Fatalf("no directory for %s", path)
	}
	return d.Hash()
}

func content(data string) *log.Content {
	return &log.Content{Size: uint64(len(data)), Hash: log.Sum([]byte(data)), Encoding: log.EncRaw, Inline: []byte(data)}
}

func (f *fixture) mkdir(key, path string) *log.Entry {
	return f.add(key, &log.Entry{Action: log.ActMkdir, Parent: f.parentFor(path), Path: path, Mode: 0o755})
}

func (f *fixture) write(key, path, data string) *log.Entry {
	return f.add(key, &log.Entry{Action: log.ActWrite, Parent: f.parentFor(path), Path: path, Mode: 0o644, Content: content(data)})
}

func (f *fixture) writeAt(key string, parent *log.Entry, path, data string) *log.Entry {
	return f.add(key, &log.Entry{Action: log.ActWrite, Parent: parent.Hash(), Path: path, Mode: 0o644, Content: content(data)})
}

func (f *fixture) del(key, path string) *log.Entry {
	return f.add(key, &log.Entry{Action: log.ActDelete, Parent: f.parentFor(path), Path: path})
}

func (f *fixture) grant(key, path, grantee string) *log.Entry {
	p, ok := f.v.AnyEntryAt(path)
	if !ok {
		f.t.Fatalf("grant: nothing at %s", path)
	}
	return f.add(key, &log.Entry{Action: log.ActGrant, Parent: p.Hash(), Path: path, Key: pub(f.key(grantee))})
}

func (f *fixture) revoke(key, path, revoked string) *log.Entry {
	p, _ := f.v.AnyEntryAt(path)
	return f.add(key, &log.Entry{Action: log.ActRevoke, Parent: p.Hash(), Path: path, Key: pub(f.key(revoked))})
}

// revokeWithAcks revokes like the CLI does: acks first, then the revoke.
func (f *fixture) revokeWithAcks(key, path, revoked string) {
	targets := f.v.AckSet(pub(f.key(revoked)), path)
	byPath := map[string][]log.Hash{}
	var order []string
	for _, t := range targets {
		if _, ok := byPath[t.AckPath]; !ok {
			order = append(order, t.AckPath)
		}
		byPath[t.AckPath] = append(byPath[t.AckPath], t.Entry)
	}
	for _, ap := range order {
		hs := byPath[ap]
		for len(hs) > 0 {
			n := min(len(hs), log.MaxHashes)
			p, _ := f.v.AnyEntryAt(ap)
			f.add(key, &log.Entry{Action: log.ActAck, Parent: p.Hash(), Path: ap, Hashes: hs[:n]})
			hs = hs[n:]
		}
	}
	f.revoke(key, path, revoked)
}

func (f *fixture) rename(key, from, to string) *log.Entry {
	h, _, ok := f.v.Head(from)
	if !ok {
		f.t.Fatalf("rename: no %s", from)
	}
	return f.add(key, &log.Entry{Action: log.ActRename, Parent: f.parentFor(to), Path: to, Target: from, Ref: h.Hash()})
}

func (f *fixture) revert(key, path string, to *log.Entry) *log.Entry {
	return f.add(key, &log.Entry{Action: log.ActRevert, Parent: f.parentFor(path), Path: path, Ref: to.Hash()})
}

func (f *fixture) chmod(key, path string, mode uint32) *log.Entry {
	return f.add(key, &log.Entry{Action: log.ActMode, Parent: f.parentFor(path), Path: path, Mode: mode})
}

// fresh builds a new view from the root and the given entries, applied one by one.
func (f *fixture) fresh(entries []*log.Entry) *View {
	v, err := New(f.root)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range entries {
		v.Apply(e)
	}
	return v
}

// tree renders the visible tree for comparisons and messages.
func tree(v *View) string {
	s := ""
	v.Walk("/", func(n Node) bool {
		switch n.Kind {
		case KindFile:
			s += fmt.Sprintf("%s file %o %q\n", n.Path, n.Mode, inlineOf(n.Content))
		case KindDir:
			s += fmt.Sprintf("%s dir %o\n", n.Path, n.Mode)
		case KindSymlink:
			s += fmt.Sprintf("%s -> %s\n", n.Path, n.Target)
		}
		return true
	})
	return s
}

func inlineOf(c *log.Content) string {
	if c == nil {
		return ""
	}
	return string(c.Inline)
}

func (f *fixture) cat(path string) (string, bool) {
	n, ok := f.v.Lookup(path)
	if !ok || n.Kind != KindFile {
		return "", false
	}
	return inlineOf(n.Content), true
}

func (f *fixture) mustCat(path, want string) {
	f.t.Helper()
	got, ok := f.cat(path)
	if !ok {
		f.t.Fatalf("%s: not a visible file; tree:\n%s", path, tree(f.v))
	}
	if got != want {
		f.t.Fatalf("%s = %q, want %q", path, got, want)
	}
}

func (f *fixture) mustNotExist(path string) {
	f.t.Helper()
	if _, ok := f.v.Lookup(path); ok {
		f.t.Fatalf("%s exists; tree:\n%s", path, tree(f.v))
	}
}
