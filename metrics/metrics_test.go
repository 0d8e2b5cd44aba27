package metrics

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/replica"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("metrics-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// freePort finds a port free for TCP and UDP on 127.0.0.1 whose next port
// is free for TCP.
func freePort(t *testing.T) int {
	t.Helper()
	for try := 0; try < 100; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err1 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		l2, err2 := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err1 == nil {
			u.Close()
		}
		if err2 == nil {
			l2.Close()
		}
		if err1 == nil && err2 == nil && p < 65534 {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok := false
			for _, lp := range m.Label {
				ok = ok || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			match = match && ok
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum, found
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestScrapeAfterWriteAndSync: two nodes on loopback; after a write on
// one and a sync, both nodes' /metrics parse and show the entries, the
// sync sessions, gossip traffic and Serf's own metrics.
func TestScrapeAfterWriteAndSync(t *testing.T) {
	root := testKey("root")
	base := t.TempDir()
	p1, p2 := freePort(t), 0
	for p2 == 0 || p2 == p1 || p2 == p1+1 || p2+1 == p1 {
		p2 = freePort(t)
	}
	a1, a2 := fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	r, err := replica.Create(filepath.Join(base, "n1"), "m", root, []string{a1, a2}, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	// The second node is a copy of the first: same root entry.
	if err := copyDir(filepath.Join(base, "n1"), filepath.Join(base, "n2")); err != nil {
		t.Fatal(err)
	}
	var nodes []*node.Node
	var servers []*Server
	for i, a := range []string{a1, a2} {
		n, err := node.Start(node.Config{Dir: filepath.Join(base, fmt.Sprintf("n%d", i+1)), Bind: a, NoSync: true,
			SyncInterval: 200 * time.Millisecond, RetryInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Stop()
		s, err := Listen("127.0.0.1:0", Sources{Status: n.Status, Gossip: n.GossipStats}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		nodes, servers = append(nodes, n), append(servers, s)
	}
	before, _ := value(scrape(t, servers[1].Addr()), "basefs_entries")
	if _, err := nodes[0].Replica().WriteFile(root, "/etc/app.conf", []byte("port=80\n"), replica.WriteOptions{Parents: true, Sync: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the write and a sync on the second node's /metrics", func() bool {
		f := scrape(t, servers[1].Addr())
		entries, _ := value(f, "basefs_entries")
		sessions, _ := value(f, "basefs_sync_sessions_total")
		return entries > before && sessions > 0
	})
	f := scrape(t, servers[0].Addr())
	for _, want := range []string{"basefs_running", "basefs_in_sync", "basefs_store_bytes", "basefs_members", "go_goroutines"} {
		if _, ok := value(f, want); !ok {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if v, _ := value(f, "basefs_running"); v != 1 {
		t.Errorf("basefs_running = %v", v)
	}
	if v, _ := value(f, "basefs_members", "status", "alive"); v != 2 {
		t.Errorf("alive members = %v", v)
	}
	if v, _ := value(f, "basefs_gossip_events_total", "direction", "sent"); v < 1 {
		t.Errorf("gossip events sent = %v", v)
	}
	serf := false
	for name := range f {
		serf = serf || strings.HasPrefix(name, "basefs_serf_") || strings.HasPrefix(name, "basefs_memberlist_")
	}
	if !serf {
		t.Errorf("no Serf or memberlist metrics among %d families", len(f))
	}
	resp, err := http.Get("http://" + servers[0].Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz: %s %q", resp.Status, body)
	}
}

// TestHealthzUnhealthy: a store that stopped taking writes, or a stopped
// node, makes /healthz answer 503 with the reason.
func TestHealthzUnhealthy(t *testing.T) {
	var mu sync.Mutex
	st := node.Status{Running: true}
	set := func(s node.Status) { mu.Lock(); st = s; mu.Unlock() }
	s, err := Listen("127.0.0.1:0", Sources{Status: func() node.Status { mu.Lock(); defer mu.Unlock(); return st }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func() (int, string) {
		resp, err := http.Get("http://" + s.Addr() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get(); code != 200 || body != "ok" {
		t.Fatalf("healthy: %d %q", code, body)
	}
	set(node.Status{Running: true, Status: replica.Status{StoreError: "append: no space left on device"}})
	if code, body := get(); code != 503 || !strings.Contains(body, "no space left") {
		t.Fatalf("store failed: %d %q", code, body)
	}
	if v, _ := value(scrape(t, s.Addr()), "basefs_store_healthy"); v != 0 {
		t.Fatalf("basefs_store_healthy = %v", v)
	}
	set(node.Status{})
	if code, body := get(); code != 503 || body != "not running" {
		t.Fatalf("stopped: %d %q", code, body)
	}
}

func copyDir(from, to string) error {
	return filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode())
	})
}
