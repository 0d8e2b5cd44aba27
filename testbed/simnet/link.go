package simnet

import (
	"time"
)

// Link describes the conditions of a directed link between two hosts.
// The zero Link is a perfect link: no delay, no loss, unlimited bandwidth.
type Link struct {
	// Delay is the one-way propagation delay.
	Delay time.Duration
	// Jitter adds a uniform random offset in [-Jitter, +Jitter] to the delay
	// of every packet and stream segment (the result is never negative), so
	// packets reorder; streams put segments back in order.
	Jitter time.Duration
	// Loss is the probability in [0, 1] that a packet or a stream segment is
	// lost. Lost stream segments are retransmitted.
	Loss float64
	// Bandwidth is the rate in bytes per second of the sender's uplink, a
	// FIFO queue shared by all the sender's packets and streams: traffic
	// waits in it, it is never dropped. Each packet or segment is serialized
	// at the Bandwidth of its own link, so when all links from a host share
	// one value that value is the host's uplink rate. 0 means unlimited.
	// Only payload bytes count; headers are not modelled.
	Bandwidth int64
	// Duplicate is the probability in [0, 1] that a packet is delivered
	// twice (with independent jitter). Streams are not affected.
	Duplicate float64
}

// jittered returns the delay of one transmission on l, drawing from r.
func (l *Link) jittered(r *rng) time.Duration {
	d := l.Delay
	if l.Jitter > 0 {
		d += time.Duration(r.float()*float64(2*l.Jitter)) - l.Jitter
		if d < 0 {
			d = 0
		}
	}
	return d
}

// serialization is how long size bytes occupy an uplink of l.Bandwidth.
func (l *Link) serialization(size int) time.Duration {
	if l.Bandwidth <= 0 {
		return 0
	}
	return time.Duration(int64(size) * int64(time.Second) / l.Bandwidth)
}

// rng is a small splitmix64 generator. Each random decision of the network
// gets a fresh rng derived from (seed, link, index), so decisions do not
// depend on how other links or connections interleave.
type rng struct{ s uint64 }

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// newRNG derives a generator from a seed and a list of identifiers.
func newRNG(seed uint64, ids ...uint64) rng {
	s := mix64(seed + 0x9e3779b97f4a7c15)
	for _, id := range ids {
		s = mix64(s ^ mix64(id+0x632be59bd9b4e019))
	}
	return rng{s: s}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// float returns a uniform float64 in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// chance reports true with probability p.
func (r *rng) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	if p >= 1 {
		return true
	}
	return r.float() < p
}

// fnv64 hashes a host name; host identity in random decisions comes from its
// name so that the order in which hosts are created does not matter.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
