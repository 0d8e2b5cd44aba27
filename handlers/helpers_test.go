package handlers

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("handlers-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func fingerprint(k ed25519.PrivateKey) string { return log.Fingerprint(pub(k)) }

// newFS creates a filesystem "test" whose root key is testKey("root").
func newFS(t *testing.T) *replica.Replica {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	r, err := replica.Create(dir, "test", testKey("root"), []string{"127.0.0.1:7946"}, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// cloneFS makes a second replica of a's filesystem holding a's entries up to
// now (a copy of its store), as another node would.
func cloneFS(t *testing.T, a *replica.Replica) *replica.Replica {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(a.Dir(), log.StoreFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, log.StoreFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := replica.Open(dir, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// transfer moves the entries of a from position *pos on into b (not their
// blocks), as gossip would.
func transfer(t testing.TB, a, b *replica.Replica, pos *int) []*log.Entry {
	t.Helper()
	var es []*log.Entry
	*pos = a.ScanEntries(*pos, func(e *log.Entry) bool {
		d, err := log.Decode(e.Encoded())
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, d)
		return true
	})
	if len(es) > 0 {
		if _, err := b.Ingest(es, nil); err != nil {
			t.Fatal(err)
		}
	}
	return es
}

// transferBlocks moves the blocks of a's file at path into b.
func transferBlocks(t testing.TB, a, b *replica.Replica, path string) int {
	t.Helper()
	n, err := a.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := a.ContentBlocks(n.Content)
	var blocks [][]byte
	for _, h := range all {
		blk, err := a.Block(h)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, blk)
	}
	if _, err := b.Ingest(nil, blocks); err != nil {
		t.Fatal(err)
	}
	return len(blocks)
}

func write(t testing.TB, r *replica.Replica, path, data string) *log.Entry {
	t.Helper()
	e, err := r.WriteFile(testKey("root"), path, []byte(data), replica.WriteOptions{Parents: true})
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return e
}

// run is one recorded script run.
type run struct {
	env     map[string]string
	pwd     string
	changes []jsonChange
}

// recorder writes a script that appends its environment, working directory
// and stdin to a file, and reads the runs back.
type recorder struct {
	script, out string
}

func newRecorder(t *testing.T, name, extra string) *recorder {
	t.Helper()
	dir := t.TempDir()
	rec := &recorder{script: filepath.Join(dir, name+".sh"), out: filepath.Join(dir, name+".out")}
	// The record is appended in one write, so handlers sharing the
	// script do not interleave.
	body := fmt.Sprintf(`#!/bin/sh
%s
tmp=$(mktemp)
{
echo "@@run"
env | grep '^BASEFS_' | sort
echo "@@pwd $(pwd)"
echo "@@stdin"
cat
echo "@@end"
} > "$tmp"
cat "$tmp" >> '%s'
rm -f "$tmp"
`, extra, rec.out)
	if err := os.WriteFile(rec.script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return rec
}

func (rec *recorder) runs(t testing.TB) []run {
	t.Helper()
	data, err := os.ReadFile(rec.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []run
	for _, part := range strings.Split(string(data), "@@run\n")[1:] {
		if !strings.HasSuffix(part, "@@end\n") {
			break // still being written
		}
		r := run{env: map[string]string{}}
		inStdin := false
		for _, ln := range strings.Split(strings.TrimSuffix(part, "@@end\n"), "\n") {
			switch {
			case ln == "":
			case ln == "@@stdin":
				inStdin = true
			case strings.HasPrefix(ln, "@@pwd "):
				r.pwd = strings.TrimPrefix(ln, "@@pwd ")
			case inStdin:
				var c jsonChange
				if err := json.Unmarshal([]byte(ln), &c); err != nil {
					t.Fatalf("stdin line %q: %v", ln, err)
				}
				r.changes = append(r.changes, c)
			default:
				k, v, _ := strings.Cut(ln, "=")
				for _, name := range reservedEnv { // not e.g. the tester's BASEFS_HOME
					if k == name {
						r.env[k] = v
					}
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// wait waits until at least n runs are recorded.
func (rec *recorder) wait(t testing.TB, n int, within time.Duration) []run {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rs := rec.runs(t)
		if len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs after %v, want %d: %+v", len(rs), within, n, rs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// changes returns every change of every run, in order.
func allChanges(rs []run) []jsonChange {
	var out []jsonChange
	for _, r := range rs {
		out = append(out, r.changes...)
	}
	return out
}

// quiet asserts that no further run comes within d.
func (rec *recorder) quiet(t testing.TB, have int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if rs := rec.runs(t); len(rs) != have {
		t.Fatalf("%d runs, want %d; extra: %+v", len(rs), have, rs[have:])
	}
}

// fast is a config with short periods, for tests.
func fast(specs ...Spec) Config {
	return Config{Specs: specs, Quiet: 20 * time.Millisecond, MaxDelay: 300 * time.Millisecond,
		Timeout: 10 * time.Second, KillGrace: 200 * time.Millisecond}
}

func start(t *testing.T, r *replica.Replica, cfg Config) *Runner {
	t.Helper()
	rn, err := Start(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rn.Stop(context.Background()) })
	return rn
}

func stop(t testing.TB, rn *Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rn.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// logBuf is a thread-safe log sink.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(l), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
