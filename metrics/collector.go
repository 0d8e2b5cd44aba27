package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector turns the node's status and counters into metrics at each
// scrape.
type collector struct{ src Sources }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("basefs_"+name, help, labels, nil)
}

var (
	dRunning       = desc("running", "1 while the node runs.")
	dInSync        = desc("in_sync", "1 when the last sync with every alive member was clean and nothing is missing.")
	dStoreHealthy  = desc("store_healthy", "1 while the store takes writes; 0 after a write failed.")
	dEntries       = desc("entries", "Valid entries stored.")
	dEntriesState  = desc("entries_by_state", "Stored entries by what the view made of them.", "state")
	dPaths         = desc("paths", "Visible paths in the tree.")
	dBlocks        = desc("blocks", "Content blocks held.")
	dMissingBlocks = desc("blocks_missing", "Content blocks referenced but not yet held.")
	dStoreBytes    = desc("store_bytes", "Bytes of the store on disk.")
	dMembers       = desc("members", "Cluster members by gossip status.", "status")
	dRejected      = desc("rejected_total", "Entries, blocks and events refused, by reason.", "reason")
	dSyncSessions  = desc("sync_sessions_total", "Sync sessions with an alive member.", "peer")
	dSyncFailures  = desc("sync_failures_total", "Failed sync sessions with an alive member.", "peer")
	dSyncBytes     = desc("sync_bytes_total", "Sync bytes exchanged with an alive member.", "peer", "direction")
	dSyncEntries   = desc("sync_entries_total", "Entries exchanged by sync with an alive member.", "peer", "direction")
	dSyncBlocks    = desc("sync_blocks_total", "Blocks exchanged by sync with an alive member.", "peer", "direction")
	dGossipEvents  = desc("gossip_events_total", "Gossip events.", "direction")
	dGossipEntries = desc("gossip_entries_total", "Entries carried by gossip events.", "direction")
	dGossipBytes   = desc("gossip_bytes_total", "Bytes of gossip events.", "direction")
	dHandlerRuns   = desc("handler_runs_total", "Handler scripts started.")
	dHandlerFails  = desc("handler_failures_total", "Handler scripts that exited non-zero or could not start.")
	dHandlerTOs    = desc("handler_timeouts_total", "Handler scripts killed at their timeout.")
	dHandlerRun    = desc("handlers_running", "Handler scripts running now.")
	dHandlerPend   = desc("handler_changes_pending", "Changes not yet handed to a handler script.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dRunning, dInSync, dStoreHealthy, dEntries, dEntriesState, dPaths, dBlocks, dMissingBlocks,
		dStoreBytes, dMembers, dRejected, dSyncSessions, dSyncFailures, dSyncBytes, dSyncEntries, dSyncBlocks,
		dGossipEvents, dGossipEntries, dGossipBytes, dHandlerRuns, dHandlerFails, dHandlerTOs, dHandlerRun, dHandlerPend} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	st := c.src.Status()
	gauge(dRunning, b2f(st.Running))
	gauge(dInSync, b2f(st.InSync))
	gauge(dStoreHealthy, b2f(st.StoreError == ""))
	gauge(dEntries, float64(st.Entries))
	gauge(dEntriesState, float64(st.Counting), "counting")
	gauge(dEntriesState, float64(st.Pending), "pending")
	gauge(dEntriesState, float64(st.Malformed), "malformed")
	gauge(dPaths, float64(st.Paths))
	gauge(dBlocks, float64(st.Blocks))
	gauge(dMissingBlocks, float64(st.MissingBlocks))
	gauge(dStoreBytes, float64(st.StoreBytes))
	members := map[string]int{"alive": 0}
	for _, m := range st.Members {
		members[m.Status]++
	}
	for s, k := range members {
		gauge(dMembers, float64(k), s)
	}
	for reason, k := range st.Rejected {
		counter(dRejected, float64(k), reason)
	}
	for _, p := range st.Peers {
		counter(dSyncSessions, float64(p.Sessions), p.Peer)
		counter(dSyncFailures, float64(p.Failures), p.Peer)
		counter(dSyncBytes, float64(p.BytesSent), p.Peer, "sent")
		counter(dSyncBytes, float64(p.BytesReceived), p.Peer, "received")
		counter(dSyncEntries, float64(p.EntriesSent), p.Peer, "sent")
		counter(dSyncEntries, float64(p.EntriesReceived), p.Peer, "received")
		counter(dSyncBlocks, float64(p.BlocksSent), p.Peer, "sent")
		counter(dSyncBlocks, float64(p.BlocksReceived), p.Peer, "received")
	}
	if c.src.Gossip != nil {
		if g, ok := c.src.Gossip(); ok {
			counter(dGossipEvents, float64(g.EventsSent), "sent")
			counter(dGossipEvents, float64(g.EventsReceived), "received")
			counter(dGossipEntries, float64(g.EntriesSent), "sent")
			counter(dGossipEntries, float64(g.EntriesReceived), "received")
			counter(dGossipBytes, float64(g.BytesSent), "sent")
			counter(dGossipBytes, float64(g.BytesReceived), "received")
		}
	}
	if c.src.Handlers != nil {
		h := c.src.Handlers()
		counter(dHandlerRuns, float64(h.Runs))
		counter(dHandlerFails, float64(h.Failures))
		counter(dHandlerTOs, float64(h.Timeouts))
		gauge(dHandlerRun, float64(h.Running))
		gauge(dHandlerPend, float64(h.Pending))
	}
}
