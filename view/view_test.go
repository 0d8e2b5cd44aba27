package view

import (
	"fmt"
	"testing"

	"github.com/basefs/basefs/log"
)

func TestBasicTree(t *testing.T) {
	f := newFixture(t)
	h0 := f.v.Hash()
	f.mkdir("root", "/etc")
	f.write("root", "/etc/app.conf", "port=80")
	f.mustCat("/etc/app.conf", "port=80")
	if f.v.Hash() == h0 {
		t.Fatal("view hash did not change")
	}
	f.write("root", "/etc/app.conf", "port=81")
	f.mustCat("/etc/app.conf", "port=81")
	ls, ok := f.v.List("/etc")
	if !ok || len(ls) != 1 || ls[0].Path != "/etc/app.conf" || ls[0].Size != 7 {
		t.Fatalf("ls /etc = %+v", ls)
	}
	f.del("root", "/etc/app.conf")
	f.mustNotExist("/etc/app.conf")
	f.write("root", "/etc/app.conf", "again")
	f.mustCat("/etc/app.conf", "again")
}

func TestChildNamedLikeParent(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/a")
	f.mkdir("root", "/a/a")
	f.write("root", "/a/a/a", "deep")
	if n, ok := f.v.Lookup("/a"); !ok || n.Kind != KindDir {
		t.Fatalf("/a = %+v", n)
	}
	if n, ok := f.v.Lookup("/a/a"); !ok || n.Kind != KindDir {
		t.Fatalf("/a/a = %+v", n)
	}
	f.mustCat("/a/a/a", "deep")
	// A write to /a/a must not be taken as a continuation of /a.
	f.del("root", "/a/a/a")
	f.del("root", "/a/a")
	if n, ok := f.v.Lookup("/a"); !ok || n.Kind != KindDir {
		t.Fatalf("/a gone after deleting /a/a: %+v", n)
	}
}

func TestStructuralMismatchIsMalformed(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/a")
	f.mkdir("root", "/a/b")
	a, _, _ := f.v.Head("/a")
	// Parent /a for an entry at /a/b/c: neither the same path nor its directory.
	e := f.add("root", &log.Entry{Action: log.ActWrite, Parent: a.Hash(), Path: "/a/b/c", Mode: 0o644, Content: content("x")})
	if f.v.StatusOf(e.Hash()) != StatusMalformed {
		t.Fatalf("status %v, want malformed", f.v.StatusOf(e.Hash()))
	}
	f.mustNotExist("/a/b/c")
	// A delete cannot create a path.
	e = f.add("root", &log.Entry{Action: log.ActDelete, Parent: a.Hash(), Path: "/a/zz"})
	if f.v.StatusOf(e.Hash()) != StatusMalformed {
		t.Fatalf("creation by delete: status %v, want malformed", f.v.StatusOf(e.Hash()))
	}
}

// Conflicts at depth >= 2 (of the tree and of the history) where authority
// must beat hash order.
func TestConflictAuthorityBeatsHash(t *testing.T) {
	for _, order := range []string{"high-first", "low-first"} {
		t.Run(order, func(t *testing.T) {
			f := newFixture(t)
			f.mkdir("root", "/srv")
			f.mkdir("root", "/srv/app")
			f.grant("root", "/srv", "ops")       // level 1
			f.grant("root", "/srv/app", "alice") // level 2
			f.write("alice", "/srv/app/cfg", "v1")
			f.write("alice", "/srv/app/cfg", "v2")
			base, _, _ := f.v.Head("/srv/app/cfg")
			// Fork at the third entry of the history.
			var hi, lo *log.Entry
			if order == "high-first" {
				hi = f.writeAt("ops", base, "/srv/app/cfg", "ops")
				lo = f.writeAt("alice", base, "/srv/app/cfg", "alice")
			} else {
				lo = f.writeAt("alice", base, "/srv/app/cfg", "alice")
				hi = f.writeAt("ops", base, "/srv/app/cfg", "ops")
			}
			// And extend alice's branch so it is longer and has more entries.
			f.writeAt("alice", lo, "/srv/app/cfg", "alice2")
			f.mustCat("/srv/app/cfg", "ops")
			cs := f.v.Conflicts("/")
			if len(cs) != 1 || cs[0].Winner != hi.Hash() || cs[0].Loser != lo.Hash() || cs[0].Reason != "authority" {
				t.Fatalf("conflicts = %+v", cs)
			}
		})
	}
}

// The score is computed afresh at every fork: a deeper fork is decided by the
// keys of its own branches, not by what decided the fork above it.
func TestConflictScoredAfreshAtEveryFork(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/a")
	f.grant("root", "/a", "k1")
	f.mkdir("root", "/a/b")
	f.grant("root", "/a/b", "k2")
	f.grant("root", "/a/b", "k3")
	base := f.write("k2", "/a/b/f", "base")
	// First fork: root-level (-1) branch vs k2's branch: root's wins.
	win1 := f.writeAt("root", base, "/a/b/f", "root")
	f.writeAt("k2", base, "/a/b/f", "k2-loses")
	// Second fork below root's entry: k1 (level 1) vs k2 + k3 (level 2, two
	// authors). Authority wins over author count.
	k1 := f.writeAt("k1", win1, "/a/b/f", "k1")
	k2 := f.writeAt("k2", win1, "/a/b/f", "k2")
	f.writeAt("k3", k2, "/a/b/f", "k3")
	f.mustCat("/a/b/f", "k1")
	// Third fork below k1's entry: k2 alone vs k2 + k3: more authors win.
	x := f.writeAt("k2", k1, "/a/b/f", "k2-only")
	y := f.writeAt("k3", k1, "/a/b/f", "k3-first")
	f.writeAt("k2", y, "/a/b/f", "k3-then-k2")
	f.mustCat("/a/b/f", "k3-then-k2")
	_ = x
}

func TestConflictHashTieBreak(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	base := f.write("root", "/d/f", "base")
	a := f.writeAt("root", base, "/d/f", "a")
	b := f.writeAt("root", base, "/d/f", "b")
	want := "a"
	if lessHash(a.Hash(), b.Hash()) {
		want = "b"
	}
	f.mustCat("/d/f", want)
	cs := f.v.Conflicts("/d")
	if len(cs) != 1 || cs[0].Reason != "hash" {
		t.Fatalf("conflicts = %+v", cs)
	}
}

func TestConcurrentMkdirMerges(t *testing.T) {
	f := newFixture(t)
	root, _, _ := f.v.Head("/")
	m1 := f.add("root", &log.Entry{Action: log.ActMkdir, Parent: root.Hash(), Path: "/x", Mode: 0o755})
	f.add("root", &log.Entry{Action: log.ActWrite, Parent: m1.Hash(), Path: "/x/one", Mode: 0o644, Content: content("1")})
	m2 := f.add("root", &log.Entry{Action: log.ActMkdir, Parent: root.Hash(), Path: "/x", Mode: 0o700})
	f.add("root", &log.Entry{Action: log.ActWrite, Parent: m2.Hash(), Path: "/x/two", Mode: 0o644, Content: content("2")})
	f.mustCat("/x/one", "1")
	f.mustCat("/x/two", "2")
}

func TestUnauthorizedEntriesDoNotCount(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/etc")
	f.write("root", "/etc/passwd", "root:x:0")
	before := f.v.Hash()
	e1 := f.write("mallory", "/etc/passwd", "mallory")
	f.mustCat("/etc/passwd", "root:x:0")
	if f.v.Hash() != before || f.v.Counts(e1.Hash()) || f.v.Used(e1.Hash()) {
		t.Fatal("unauthorized write changed the view")
	}
	f.add("mallory", &log.Entry{Action: log.ActMkdir, Parent: f.parentFor("/evil"), Path: "/evil", Mode: 0o755})
	f.grant("mallory", "/etc", "mallory")
	if f.v.Hash() != before {
		t.Fatal("unauthorized mkdir or grant changed the view")
	}
	// A later grant makes the kept entry count.
	f.grant("root", "/etc", "mallory")
	if !f.v.Counts(e1.Hash()) {
		t.Fatal("entry did not count after its author was granted")
	}
}

// An authorized entry on top of an unauthorized one attaches to the nearest
// counting ancestor.
func TestNonCountingEntriesAreTransparent(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	f.write("root", "/d/f", "good")
	bad := f.write("mallory", "/d/f", "bad")
	f.writeAt("root", bad, "/d/f", "fixed")
	f.mustCat("/d/f", "fixed")
}

func TestRevokeKeepsDirectoryCreatedByRevokedKey(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/home")
	f.mkdir("root", "/home/u")
	f.grant("root", "/home/u", "u")
	f.mkdir("u", "/home/u/proj")
	f.write("u", "/home/u/proj/README", "hello")
	f.mkdir("u", "/home/u/proj/src")
	f.write("root", "/home/u/proj/src/main.go", "package main")
	before := f.v.Hash()
	treeBefore := tree(f.v)

	f.revokeWithAcks("root", "/home/u", "u")
	if got := tree(f.v); got != treeBefore || f.v.Hash() != before {
		t.Fatalf("revoke changed the tree:\nbefore:\n%s\nafter:\n%s", treeBefore, got)
	}
	// The revoked key's new writes count nowhere.
	late := f.write("u", "/home/u/proj/README", "after revoke")
	if f.v.Counts(late.Hash()) {
		t.Fatal("write by revoked key counts")
	}
	f.mustCat("/home/u/proj/README", "hello")
}

func TestRevokeWithoutAcksDropsUnacknowledgedEntries(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/home")
	f.mkdir("root", "/home/u")
	f.grant("root", "/home/u", "u")
	f.write("root", "/home/u/keep", "root's")
	f.write("u", "/home/u/notes", "u's")
	f.revoke("root", "/home/u", "u")
	f.mustNotExist("/home/u/notes")
	f.mustCat("/home/u/keep", "root's")
}

func TestRegrantRestores(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/p")
	f.grant("root", "/p", "k")
	f.write("k", "/p/f", "k's")
	r := f.revoke("root", "/p", "k")
	f.mustNotExist("/p/f")
	// A grant that does not supersede the revoke stays cancelled.
	f.grant("root", "/p", "k")
	f.mustNotExist("/p/f")
	p, _ := f.v.AnyEntryAt("/p")
	f.add("root", &log.Entry{Action: log.ActGrant, Parent: p.Hash(), Path: "/p", Key: pub(f.key("k")), Hashes: []log.Hash{r.Hash()}})
	f.mustCat("/p/f", "k's")
}

func TestGrantCycleDoesNotBootstrap(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/x")
	f.grant("a", "/x", "b")
	f.grant("b", "/x", "a")
	if _, ok := f.v.Level(pub(f.key("a")), "/x"); ok {
		t.Fatal("a gained authority from a cycle")
	}
	f.grant("root", "/x", "a")
	if l, ok := f.v.Level(pub(f.key("b")), "/x"); !ok || l != 1 {
		t.Fatalf("b level %d %v, want 1 via a's grant", l, ok)
	}
}

func TestRevokeNeedsAuthorityFromAbove(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/x")
	f.grant("root", "/x", "a")
	f.grant("root", "/x", "b")
	r := f.revoke("a", "/x", "b") // same level: does not count
	if f.v.Counts(r.Hash()) {
		t.Fatal("revoke by a peer counts")
	}
	if _, ok := f.v.Level(pub(f.key("b")), "/x"); !ok {
		t.Fatal("b lost authority")
	}
}

func TestRevertFile(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	v1 := f.write("root", "/d/f", "one")
	f.write("root", "/d/f", "two")
	f.chmod("root", "/d/f", 0o600)
	f.revert("root", "/d/f", v1)
	f.mustCat("/d/f", "one")
	if n, _ := f.v.Lookup("/d/f"); n.Mode != 0o644 {
		t.Fatalf("mode after revert %o, want 644", n.Mode)
	}
	f.del("root", "/d/f")
	f.revert("root", "/d/f", v1)
	f.mustCat("/d/f", "one")
}

func TestRevertDirectoryRestoresIncarnation(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	old, _, _ := f.v.Head("/d")
	f.write("root", "/d/f", "kept")
	// rm -r /d: the child first, then the directory; then a new /d.
	f.del("root", "/d/f")
	f.del("root", "/d")
	f.mkdir("root", "/d")
	f.write("root", "/d/g", "new")
	f.mustNotExist("/d/f")
	f.mustCat("/d/g", "new")
	// Reverting /d to its first entry brings back the old incarnation; its
	// child /d/f is deleted there, so it stays gone, and /d/g (of the new
	// incarnation) disappears with it.
	f.revert("root", "/d", old)
	f.mustNotExist("/d/g")
	f.mustNotExist("/d/f")
	h, _, _ := f.v.Head("/d/f")
	if h == nil {
		t.Fatal("/d/f has no head in the restored incarnation")
	}
}

func TestDeletedDirectoryChildrenDoNotComeBack(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	dirEntry, _, _ := f.v.Head("/d")
	// Concurrent with the delete of /d, another node wrote /d/late.
	f.add("root", &log.Entry{Action: log.ActWrite, Parent: dirEntry.Hash(), Path: "/d/late", Mode: 0o644, Content: content("late")})
	f.del("root", "/d")
	f.mustNotExist("/d/late")
	f.mkdir("root", "/d")
	f.mustNotExist("/d/late")
	hidden := f.v.HiddenPaths("/")
	if len(hidden) != 1 || hidden[0].Path != "/d/late" {
		t.Fatalf("hidden = %+v", hidden)
	}
}

func TestRenameFileAndDirectory(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/a")
	f.write("root", "/a/f", "data")
	f.mkdir("root", "/a/sub")
	f.write("root", "/a/sub/g", "gee")
	changes := f.v.Apply(f.rename("root", "/a/f", "/a/f2"))
	_ = changes
	f.mustNotExist("/a/f")
	f.mustCat("/a/f2", "data")

	// Directory rename: the directory, then each descendant into it, all
	// built from the heads before the move.
	g, _, _ := f.v.Head("/a/sub/g")
	f.rename("root", "/a/sub", "/b")
	f.add("root", &log.Entry{Action: log.ActRename, Parent: f.parentFor("/b/g"), Path: "/b/g", Target: "/a/sub/g", Ref: g.Hash()})
	f.mustNotExist("/a/sub")
	f.mustCat("/b/g", "gee")
	// Writing at the old name starts afresh.
	f.write("root", "/a/f", "new")
	f.mustCat("/a/f", "new")
	f.mustCat("/a/f2", "data")
}

func TestRenameReportsOneEvent(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/a")
	f.write("root", "/a/f", "data")
	h, _, _ := f.v.Head("/a/f")
	e := f.sign("root", &log.Entry{Action: log.ActRename, Parent: f.parentFor("/a/g"), Path: "/a/g", Target: "/a/f", Ref: h.Hash()})
	ch := f.v.Apply(e)
	if len(ch) != 1 || ch[0].Event != "rename" || ch[0].Path != "/a/g" || ch[0].OldPath != "/a/f" {
		t.Fatalf("changes = %+v", ch)
	}
}

func TestHardLinkFollowsPrimary(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	f.write("root", "/d/a", "one")
	h, _, _ := f.v.Head("/d/a")
	f.add("root", &log.Entry{Action: log.ActLink, Parent: f.parentFor("/d/b"), Path: "/d/b", Target: "/d/a", Ref: h.Hash()})
	f.mustCat("/d/b", "one")
	if n, _ := f.v.Lookup("/d/a"); n.Nlink != 2 {
		t.Fatalf("nlink of /d/a = %d", n.Nlink)
	}
	f.write("root", "/d/a", "two")
	f.mustCat("/d/b", "two")
	f.del("root", "/d/a")
	f.mustCat("/d/b", "one") // the state when the link was made
}

func TestChanges(t *testing.T) {
	f := newFixture(t)
	check := func(e *log.Entry, want ...string) {
		t.Helper()
		// Re-apply on a fresh view built from everything before e.
		v := f.fresh(f.all[:len(f.all)-1])
		ch := v.Apply(e)
		var got []string
		for _, c := range ch {
			got = append(got, c.Event+" "+c.Path)
		}
		if len(got) != len(want) {
			t.Fatalf("%s %s: changes %v, want %v", e.Action, e.Path, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s %s: changes %v, want %v", e.Action, e.Path, got, want)
			}
		}
	}
	check(f.mkdir("root", "/d"), "mkdir /d")
	check(f.write("root", "/d/f", "1"), "create /d/f")
	check(f.write("root", "/d/f", "2"), "write /d/f")
	check(f.chmod("root", "/d/f", 0o600), "mode /d/f")
	check(f.grant("root", "/d", "k"), "grant /d")
	check(f.del("root", "/d/f"), "delete /d/f")
}

func TestDuplicatesAndOrder(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/a")
	f.write("root", "/a/x", "1")
	f.write("root", "/a/x", "2")
	f.mkdir("root", "/a/b")
	f.write("root", "/a/b/y", "3")
	want := f.v.Hash()
	rev := make([]*log.Entry, 0, len(f.all)*2)
	for i := len(f.all) - 1; i >= 0; i-- {
		rev = append(rev, f.all[i], f.all[i])
	}
	v := f.fresh(rev)
	if v.Hash() != want {
		t.Fatalf("reverse order with duplicates: %s, want %s\n%s", v.Hash().Short(), want.Short(), tree(v))
	}
	if v.Stats().Pending != 0 {
		t.Fatalf("pending %d", v.Stats().Pending)
	}
}

func TestHardLinkShowsPrimaryModeAndTime(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	f.write("root", "/d/a", "one")
	h, _, _ := f.v.Head("/d/a")
	f.add("root", &log.Entry{Action: log.ActLink, Parent: f.parentFor("/d/b"), Path: "/d/b", Target: "/d/a", Ref: h.Hash()})
	f.chmod("root", "/d/a", 0o600)
	f.write("root", "/d/a", "two")
	a, _ := f.v.Lookup("/d/a")
	b, _ := f.v.Lookup("/d/b")
	if b.Mode != a.Mode || b.MTime != a.MTime || b.ContentHash != a.ContentHash {
		t.Fatalf("link shows mode %o mtime %d, primary %o %d", b.Mode, b.MTime, a.Mode, a.MTime)
	}
}

// Concurrent readers share the view's lazy caches (run with -race).
func TestConcurrentReads(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 7; i++ {
		f.mkdir("root", fmt.Sprintf("/d%d", i))
	}
	for i := 0; i < 50; i++ {
		f.write("root", fmt.Sprintf("/d%d/f", i%7), fmt.Sprint(i))
	}
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 100; i++ {
				f.v.Hash()
				f.v.List("/d3")
				f.v.Head("/d3/f")
				f.v.Walk("/", func(n Node) bool { f.v.Lookup(n.Path); return true })
			}
			done <- true
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

// TestDirLinkCount: a directory's link count is 2 plus its subdirectories.
func TestDirLinkCount(t *testing.T) {
	f := newFixture(t)
	f.mkdir("root", "/d")
	f.mkdir("root", "/d/a")
	f.mkdir("root", "/d/b")
	f.write("root", "/d/file", "x")
	for path, want := range map[string]int{"/d": 4, "/d/a": 2, "/": 3} {
		if n, ok := f.v.Lookup(path); !ok || n.Nlink != want {
			t.Errorf("%s: nlink %d, want %d", path, n.Nlink, want)
		}
	}
	f.del("root", "/d/b")
	if n, _ := f.v.Lookup("/d"); n.Nlink != 3 {
		t.Errorf("/d after rmdir b: nlink %d, want 3", n.Nlink)
	}
}
