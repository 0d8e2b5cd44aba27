package simnet

import (
	"fmt"
	"time"
)

const (
	// mss is the payload of one stream segment.
	mss = 1400
	// initialCwnd is the initial congestion window in segments (RFC 6928).
	initialCwnd = 10
	// maxRTO caps the doubling retransmission timeout.
	maxRTO = 60 * time.Second
	// minUplinkQueue is how much queueing delay a stream may build up on a
	// bandwidth-limited uplink before it waits for the queue to drain (in
	// the spirit of Linux's TCP small queues): enough to keep the link busy,
	// little enough that packets sent meanwhile are not held up behind a
	// whole window of stream data.
	minUplinkQueue = 5 * time.Millisecond
)

// segment is one unit of transmission of a flow.
type segment struct {
	seq    uint64
	data   []byte
	fin    bool
	tx     int // transmissions so far
	acked  bool
	depart time.Duration // when the last transmission left the uplink
	rto    time.Duration // timeout of the last transmission
	rtt    time.Duration // round trip at the first transmission
}

// flow is one direction of a connection: a simplified TCP sender at the
// writing end and receiver at the reading end. All fields are guarded by
// conn.mu.
type flow struct {
	c        *conn
	dir      int
	src, dst *Host

	// sender
	pend         []byte // written, not yet cut into segments
	fin          bool   // a FIN follows pend
	finSent      bool
	finAcked     bool
	nextSeq      uint64
	una          uint64 // lowest unacknowledged seq (== nextSeq if none)
	unacked      map[uint64]*segment
	unackedBytes int
	cwnd         float64 // segments
	ssthresh     float64
	recover      uint64 // losses below this seq belong to the last reduction
	tx           uint64 // transmissions: index of random decisions
	uplinkWait   bool   // a retry is scheduled for when the uplink drains

	// receiver
	expect  uint64
	ooo     map[uint64]*segment
	rbuf    [][]byte
	rlen    int
	eof     bool // the FIN was delivered in order
	rclosed bool // the reading end no longer reads: data is discarded
}

// trySend transmits new segments while the congestion window, the
// receiver's window and the uplink allow.
func (f *flow) trySend() {
	c := f.c
	if c.err != nil || f.uplinkWait {
		return
	}
	n := c.n
	now := n.sched.now()
	for {
		hasData := len(f.pend) > 0
		if !hasData && (!f.fin || f.finSent) {
			return
		}
		if len(f.unacked) >= int(f.cwnd) {
			return
		}
		// The receiver's window starts at the lowest unacknowledged
		// segment: data held out of order behind a loss counts against it.
		if hasData && int(f.nextSeq-f.una)*mss+f.rlen >= n.cfg.streamBuffer {
			return
		}
		l := n.link(f.src, f.dst)
		if l.Bandwidth > 0 {
			limit := max(4*l.serialization(mss), minUplinkQueue)
			if b := f.src.backlog(now); b > limit {
				f.uplinkWait = true
				n.sched.at(now+b-limit/2, func() {
					c.mu.Lock()
					defer c.mu.Unlock()
					f.uplinkWait = false
					f.trySend()
				})
				return
			}
		}
		seg := &segment{seq: f.nextSeq}
		f.nextSeq++
		if hasData {
			k := min(mss, len(f.pend))
			seg.data = append([]byte(nil), f.pend[:k]...)
			f.pend = f.pend[k:]
			if len(f.pend) == 0 {
				f.pend = nil
			}
		} else {
			seg.fin = true
			f.finSent = true
		}
		f.unacked[seg.seq] = seg
		f.unackedBytes += len(seg.data)
		f.transmit(seg, &l, now)
	}
}

// transmit sends (or resends) seg over link l.
func (f *flow) transmit(seg *segment, l *Link, now time.Duration) {
	c := f.c
	n := c.n
	seg.tx++
	f.tx++
	r := newRNG(c.seed, uint64(f.dir), f.tx)
	lost := r.chance(l.Loss)
	delay := l.jittered(&r)

	f.src.mu.Lock()
	seg.depart = f.src.reserveLocked(now, l, len(seg.data))
	f.src.mu.Unlock()
	if seg.tx == 1 {
		seg.rtt = l.Delay + n.link(f.dst, f.src).Delay
		seg.rto = min(max(n.cfg.minRTO, 2*seg.rtt), maxRTO)
		f.src.traffic.streamSent[c.class].Add(int64(len(seg.data)))
	} else {
		f.src.traffic.segmentsRetx.Add(1)
	}
	f.src.traffic.segmentsSent.Add(1)

	tx := seg.tx
	if lost || n.blocked(f.src, f.dst) {
		// The sender learns of the loss from duplicate acknowledgements
		// one round trip later, if later segments are in flight, or else
		// when the retransmission timer expires.
		n.sched.at(seg.depart+seg.rtt, func() { f.dupAcks(seg, tx) })
		n.sched.at(seg.depart+seg.rto, func() { f.timeout(seg, tx) })
		return
	}
	n.sched.at(seg.depart+delay, func() { f.arrive(seg, tx) })
}

// arrive runs when transmission tx of seg reaches the receiver.
func (f *flow) arrive(seg *segment, tx int) {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	n := c.n
	now := n.sched.now()
	if n.blocked(f.src, f.dst) {
		n.sched.at(max(now, seg.depart+seg.rto), func() { f.timeout(seg, tx) })
		return
	}
	if seg.seq >= f.expect && f.ooo[seg.seq] == nil {
		if len(seg.data) > 0 && c.ends[1-f.dir].closed {
			// Data for a closed end: the receiver answers with a reset.
			c.abortLocked(fmt.Errorf("simnet: peer closed the connection: %w", ErrReset))
			return
		}
		f.ooo[seg.seq] = seg
		delivered := false
		for s := f.ooo[f.expect]; s != nil; s = f.ooo[f.expect] {
			delete(f.ooo, f.expect)
			f.expect++
			if len(s.data) > 0 {
				f.dst.traffic.streamRecv[c.class].Add(int64(len(s.data)))
				if !f.rclosed {
					f.rbuf = append(f.rbuf, s.data)
					f.rlen += len(s.data)
				}
			}
			if s.fin {
				f.eof = true
			}
			delivered = true
		}
		if delivered {
			signal(c.ends[1-f.dir].readable)
		}
	}
	back := n.link(f.dst, f.src).Delay
	n.sched.at(now+back, func() { f.ack(seg, tx) })
}

// ack runs when the acknowledgement of transmission tx of seg reaches the
// sender. Acknowledgements are not lost, delayed by jitter or queued behind
// the uplink, but a partition or a crash cuts them.
func (f *flow) ack(seg *segment, tx int) {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || seg.acked {
		return
	}
	n := c.n
	if n.blocked(f.dst, f.src) {
		n.sched.at(max(n.sched.now(), seg.depart+seg.rto), func() { f.timeout(seg, tx) })
		return
	}
	seg.acked = true
	delete(f.unacked, seg.seq)
	f.unackedBytes -= len(seg.data)
	for f.una < f.nextSeq && f.unacked[f.una] == nil {
		f.una++
	}
	if seg.fin {
		f.finAcked = true
	}
	if f.cwnd < f.ssthresh {
		f.cwnd++
	} else {
		f.cwnd += 1 / f.cwnd
	}
	f.cwnd = min(f.cwnd, float64(n.cfg.streamBuffer/mss+1))
	signal(c.ends[f.dir].writable)
	f.trySend()
	c.maybeDoneLocked()
}

// dupAcks runs one round trip after transmission tx of seg was lost: with
// at least three later segments in flight the receiver's duplicate
// acknowledgements trigger a fast retransmit; otherwise, and for lost
// retransmissions, the retransmission timer will.
func (f *flow) dupAcks(seg *segment, tx int) {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || seg.acked || seg.tx != tx || tx != 1 || f.nextSeq < seg.seq+4 {
		return
	}
	f.retransmitLocked(seg, false)
}

// timeout runs when the retransmission timer of transmission tx of seg
// expires without an acknowledgement.
func (f *flow) timeout(seg *segment, tx int) {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || seg.acked || seg.tx != tx {
		return
	}
	f.retransmitLocked(seg, true)
}

// retransmitLocked reduces the congestion window (once per window of data,
// as NewReno) and sends seg again; after a timeout the next timeout
// doubles, and too many retries fail the connection.
func (f *flow) retransmitLocked(seg *segment, timeout bool) {
	c := f.c
	n := c.n
	if seg.tx > n.cfg.streamRetries {
		c.abortLocked(fmt.Errorf("simnet: %d retransmissions unanswered: %w", n.cfg.streamRetries, ErrTimedOut))
		return
	}
	if seg.seq >= f.recover {
		f.ssthresh = max(float64(len(f.unacked))/2, 2)
		f.cwnd = f.ssthresh
		f.recover = f.nextSeq
	}
	if timeout {
		seg.rto = min(2*seg.rto, maxRTO)
	}
	l := n.link(f.src, f.dst)
	f.transmit(seg, &l, n.sched.now())
}
