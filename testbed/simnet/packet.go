package simnet

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// maxPacket is the largest packet accepted, as for UDP over IPv4.
const maxPacket = 65507

// sendPacket sends b from h:srcPort to addr through the link's conditions.
func (h *Host) sendPacket(srcPort int, b []byte, addr string) (time.Time, error) {
	n := h.n
	if n.isClosed() {
		return time.Time{}, fmt.Errorf("simnet: write to %s: %w", addr, net.ErrClosed)
	}
	if h.down.Load() {
		return time.Time{}, fmt.Errorf("simnet: write to %s: %w", addr, ErrHostDown)
	}
	if len(b) > maxPacket {
		return time.Time{}, fmt.Errorf("simnet: write to %s: packet of %d bytes is too large", addr, len(b))
	}
	dst, port, err := n.lookup(addr)
	if err != nil {
		return time.Time{}, err
	}
	sent := time.Now()
	l := n.link(h, dst)
	now := n.sched.now()
	h.mu.Lock()
	idx := h.nextIndexLocked(dst)
	depart := h.reserveLocked(now, &l, len(b))
	h.mu.Unlock()
	h.traffic.packetsSent.Add(1)
	h.traffic.packetBytesSent.Add(int64(len(b)))

	// Every draw happens whatever the outcome, so the decisions for packet
	// idx on this link never depend on partitions or other state.
	r := newRNG(n.seed, h.key, dst.key, idx)
	copies := 1
	if r.chance(l.Duplicate) {
		copies = 2
	}
	from := &net.UDPAddr{IP: h.ip, Port: srcPort}
	for i := 0; i < copies; i++ {
		lost := r.chance(l.Loss)
		at := depart + l.jittered(&r)
		if lost || n.blocked(h, dst) {
			h.traffic.packetsLost.Add(1)
			continue
		}
		p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: from}
		if at <= now {
			dst.deliverPacket(h, port, p)
			continue
		}
		n.sched.at(at, func() { dst.deliverPacket(h, port, p) })
	}
	return sent, nil
}

// deliverPacket hands p, sent by src, to whatever is bound to port on h. It
// never blocks.
func (h *Host) deliverPacket(src *Host, port int, p *memberlist.Packet) {
	if h.n.blocked(src, h) {
		src.traffic.packetsLost.Add(1)
		return
	}
	h.mu.Lock()
	t := h.udp[port]
	h.mu.Unlock()
	if t == nil {
		h.traffic.packetsDropped.Add(1)
		return
	}
	p.Timestamp = time.Now()
	select {
	case t.packetCh <- p:
		h.traffic.packetsRecv.Add(1)
		h.traffic.packetBytesRecv.Add(int64(len(p.Buf)))
	default:
		h.traffic.packetsDropped.Add(1)
	}
}
