package node

import "github.com/basefs/basefs/replica"

// Status is one node's state of one filesystem, as `status --json` shows it:
// the replica's fields, and — when a node runs — its network view.
type Status struct {
	replica.Status
	Running  bool           `json:"running"`
	Node     string         `json:"node,omitempty"` // this node's name in the cluster
	Addr     string         `json:"addr,omitempty"` // the address it serves
	Members  []Member       `json:"members"`
	Peers    []PeerSync     `json:"peers,omitempty"`
	Rejected map[string]int `json:"rejected,omitempty"` // entries and blocks refused, by reason
	Fetching []BlockFetch   `json:"fetching,omitempty"` // missing blocks being fetched
	InSync   bool           `json:"in_sync"`            // the last sync with every peer it has talked to found nothing to exchange
}

// Member is a cluster member as gossip sees it.
type Member struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Status string `json:"status"`
}

// PeerSync is what anti-entropy knows of one peer.
type PeerSync struct {
	Name      string `json:"name"`
	LastSync  int64  `json:"last_sync,omitempty"` // unix ns of the last completed sync; 0: never
	LastError string `json:"last_error,omitempty"`
	Sent      int64  `json:"entries_sent"`
	Received  int64  `json:"entries_received"`
	BytesOut  int64  `json:"bytes_out"`
	BytesIn   int64  `json:"bytes_in"`
	WasInSync bool   `json:"was_in_sync"` // the last sync exchanged nothing
}

// BlockFetch is a missing block and the peers it is asked from.
type BlockFetch struct {
	Block string   `json:"block"`
	From  []string `json:"from"`
}
