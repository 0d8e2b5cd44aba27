package node

import (
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/syncproto"
)

// Status is one node's state of one filesystem, as `status --json` shows it:
// the replica's fields and — when a node runs — its network view.
type Status struct {
	replica.Status
	Running  bool                   `json:"running"`
	Node     string                 `json:"node,omitempty"` // this node's name in the cluster
	Addr     string                 `json:"addr,omitempty"` // the address it serves (gossip; sync is the next port)
	Members  []Member               `json:"members"`
	Peers    []syncproto.PeerStatus `json:"peers,omitempty"`
	Rejected map[string]int64       `json:"rejected,omitempty"` // entries and blocks refused, by reason
	Fetching []syncproto.BlockFetch `json:"fetching,omitempty"` // missing blocks and who they are asked from
	// Behind lists the alive peers whose last sync with this node was not
	// clean (brought something, failed, or has not happened yet).
	Behind []string `json:"behind,omitempty"`
	// Departed lists sync peers that are not alive members (left, failed,
	// or clients such as get): they do not count for InSync.
	Departed []string `json:"departed,omitempty"`
	// InSync: the last sync with every alive member brought nothing new,
	// and nothing is missing or waiting here.
	InSync bool `json:"in_sync"`
}

// Member is a cluster member as gossip sees it.
type Member struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Status string `json:"status"`
}
