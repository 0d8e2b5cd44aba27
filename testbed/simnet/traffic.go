package simnet

import "sync/atomic"

// Traffic counts what one host sent and received. Byte counts are payload
// bytes: packet bodies and stream data, without modelled headers.
type Traffic struct {
	// PacketsSent and PacketBytesSent count packets written by the host's
	// transports, lost ones included.
	PacketsSent, PacketBytesSent int64
	// PacketsRecv and PacketBytesRecv count packets handed to the host's
	// transports (a duplicated packet counts twice).
	PacketsRecv, PacketBytesRecv int64
	// PacketsLost counts packets (and duplicates) sent by the host that were
	// dropped on the way: link loss, partition, a downed end.
	PacketsLost int64
	// PacketsDropped counts packets that reached the host but found no bound
	// port or a full receive queue.
	PacketsDropped int64
	// GossipStreamBytesSent and GossipStreamBytesRecv count stream data on
	// connections dialled through a Transport (memberlist push/pull and
	// stream fallbacks), counted once when first transmitted and once when
	// delivered in order.
	GossipStreamBytesSent, GossipStreamBytesRecv int64
	// StreamBytesSent and StreamBytesRecv count stream data on connections
	// dialled with Host.DialContext.
	StreamBytesSent, StreamBytesRecv int64
	// StreamsDialed counts connections the host established as a dialer.
	StreamsDialed int64
	// SegmentsSent counts stream segment transmissions by the host,
	// retransmissions included; SegmentsRetransmitted counts those alone.
	SegmentsSent, SegmentsRetransmitted int64
}

func (t *Traffic) add(o Traffic) {
	t.PacketsSent += o.PacketsSent
	t.PacketBytesSent += o.PacketBytesSent
	t.PacketsRecv += o.PacketsRecv
	t.PacketBytesRecv += o.PacketBytesRecv
	t.PacketsLost += o.PacketsLost
	t.PacketsDropped += o.PacketsDropped
	t.GossipStreamBytesSent += o.GossipStreamBytesSent
	t.GossipStreamBytesRecv += o.GossipStreamBytesRecv
	t.StreamBytesSent += o.StreamBytesSent
	t.StreamBytesRecv += o.StreamBytesRecv
	t.StreamsDialed += o.StreamsDialed
	t.SegmentsSent += o.SegmentsSent
	t.SegmentsRetransmitted += o.SegmentsRetransmitted
}

// counters is the live, atomically updated form of Traffic.
type counters struct {
	packetsSent, packetBytesSent atomic.Int64
	packetsRecv, packetBytesRecv atomic.Int64
	packetsLost, packetsDropped  atomic.Int64
	streamSent, streamRecv       [2]atomic.Int64 // by class
	streamsDialed                atomic.Int64
	segmentsSent, segmentsRetx   atomic.Int64
}

// stream classes for accounting.
const (
	classStream = 0 // Host.DialContext / Listen
	classGossip = 1 // Transport
)

func (c *counters) snapshot() Traffic {
	return Traffic{
		PacketsSent:           c.packetsSent.Load(),
		PacketBytesSent:       c.packetBytesSent.Load(),
		PacketsRecv:           c.packetsRecv.Load(),
		PacketBytesRecv:       c.packetBytesRecv.Load(),
		PacketsLost:           c.packetsLost.Load(),
		PacketsDropped:        c.packetsDropped.Load(),
		GossipStreamBytesSent: c.streamSent[classGossip].Load(),
		GossipStreamBytesRecv: c.streamRecv[classGossip].Load(),
		StreamBytesSent:       c.streamSent[classStream].Load(),
		StreamBytesRecv:       c.streamRecv[classStream].Load(),
		StreamsDialed:         c.streamsDialed.Load(),
		SegmentsSent:          c.segmentsSent.Load(),
		SegmentsRetransmitted: c.segmentsRetx.Load(),
	}
}
