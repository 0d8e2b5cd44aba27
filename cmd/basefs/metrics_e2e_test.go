package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunWithMetrics: `run --metrics HOST:PORT` serves the Prometheus
// text format at /metrics and "ok" at /healthz.
func TestRunWithMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes: full tier")
	}
	bin := basefsBinary(t)
	c := newCLI(t)
	c.setup()
	port := e2ePort(t, []string{"127.0.0.1"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := l.Addr().String()
	l.Close()
	n := &e2eNode{t: t, bin: bin, home: c.home, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	n.start("--metrics", maddr)
	defer n.stop()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + maddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil(t, 20*time.Second, "/healthz", func() bool {
		code, body := get("/healthz")
		return code == 200 && strings.TrimSpace(body) == "ok"
	})
	n.must("x\n", "write", "demo:/etc/x")
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "\nbasefs_running 1\n") || !strings.Contains(body, "# TYPE basefs_entries gauge") {
		t.Fatalf("/metrics: %d\n%.2000s", code, body)
	}
}
