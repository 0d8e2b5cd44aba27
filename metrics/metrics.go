// Package metrics serves a running node's metrics in the Prometheus text
// format at /metrics, and its health at /healthz (run and mount with
// --metrics HOST:PORT).
//
// The node's own metrics are read from its status when Prometheus scrapes,
// so enabling them adds nothing to the node's hot paths. Serf's and
// memberlist's metrics arrive through hashicorp/go-metrics, whose sink is
// process-global (those libraries call go-metrics' package functions): the
// first Server of a process installs one sink for the process, and every
// Server serves it beside its node's own metrics.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/handlers"
	"github.com/basefs/basefs/node"
)

// Sources is what the metrics are read from; nil fields are left out.
type Sources struct {
	// Status is the node's status (required).
	Status func() node.Status
	// Gossip is the node's gossip counters.
	Gossip func() (gossip.Stats, bool)
	// Handlers is the handlers' counters, when handlers run.
	Handlers func() handlers.Stats
}

// Server serves /metrics and /healthz until Close.
type Server struct {
	srv  *http.Server
	l    net.Listener
	done chan struct{}
}

// Listen starts serving on addr (HOST:PORT).
func Listen(addr string, src Sources, logger *slog.Logger) (*Server, error) {
	if src.Status == nil {
		return nil, errors.New("metrics: no status source")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &collector{src: src})
	gatherers := prometheus.Gatherers{reg}
	if serf, err := serfRegistry(); err != nil {
		logger.Warn("metrics: Serf's metrics are not available", "err", err)
	} else {
		gatherers = append(gatherers, serf)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorLog: slogAdapter{logger}}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := Healthy(src.Status())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{l: l, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.l.Addr().String() }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// Healthy says whether a node is healthy, and why not: it runs, and its
// store takes writes.
func Healthy(st node.Status) (bool, string) {
	switch {
	case !st.Running:
		return false, "not running"
	case st.StoreError != "":
		return false, "store write failed: " + st.StoreError
	}
	return true, "ok"
}

// serfOnce installs the process's go-metrics sink (see the package doc).
var serfOnce = sync.OnceValues(func() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 10 * time.Minute, Name: "basefs_serf"})
	if err != nil {
		return nil, err
	}
	conf := gometrics.DefaultConfig("basefs")
	conf.EnableHostname, conf.EnableRuntimeMetrics, conf.EnableServiceLabel = false, false, false
	if _, err := gometrics.NewGlobal(conf, sink); err != nil {
		return nil, err
	}
	return reg, nil
})

func serfRegistry() (*prometheus.Registry, error) { return serfOnce() }

// slogAdapter lets promhttp log through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Println(v ...any) { a.l.Warn("metrics: " + fmt.Sprint(v...)) }
