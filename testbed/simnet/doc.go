// Package simnet is an in-process simulated network for running the real
// Serf/memberlist code and basefs's own stream protocols under controlled
// delay, jitter, loss, duplication, bandwidth limits, partitions and crashes.
//
// A Network holds hosts named by IP address ("10.1.0.7"). Each Host offers a
// memberlist.Transport (UDP-like packets plus TCP-like streams on one port)
// and plain stream Listen/Dial for other protocols. Everything runs on real
// time: deliveries are scheduled on a single timer heap per Network and fire
// at wall-clock instants, so the software under test uses its ordinary
// clocks and timers.
//
// # Faults
//
// Link conditions (Link) have a network-wide default and can be overridden per
// directed pair of hosts. Packets are subject to delay, jitter (which reorders
// them), loss, duplication and the sender's uplink bandwidth (a FIFO queue:
// packets wait, they are not dropped). Streams model TCP: reliable and in
// order, segments of 1400 bytes, slow start and congestion avoidance, a
// receive window, loss repaired by fast retransmit (one round trip after the
// loss, when later segments are in flight) or else after a retransmission
// timeout of max(MinRTO, 2×RTT) that doubles on every retry, and the
// congestion window halved once per window of data on loss — so a lossy link
// slows a stream down the way it slows TCP. A stream whose segment goes
// unacknowledged through too many retries fails with ErrTimedOut.
//
// Partition splits hosts into groups that cannot reach each other; Heal
// undoes it. Down crashes a host: traffic to and from it is dropped, its
// streams are reset and its sockets are released; Up lets traffic through
// again and the caller starts its software anew.
//
// # Determinism
//
// Network is seeded. Every random decision (loss, duplication, jitter of a
// packet; loss and jitter of a stream segment; loss of a handshake) is a pure
// function of the seed, the names of the two hosts of the directed link, and
// the index of the packet on that link (for streams: the index of the
// connection on its link and of the transmission within the connection).
// Host names, not creation order, feed the derivation. What is not
// replayable is the order in which goroutines send: when the software under
// test sends in a different order, the same decisions fall on different
// packets. A failing seed therefore reproduces the fault pattern, not the
// exact interleaving.
//
// # Concurrency
//
// Network, Host, Transport, Listener and Conn are safe for concurrent use.
// Callbacks of the scheduler never block: a packet that finds its receiver's
// queue full is dropped and counted, as a full UDP socket buffer would.
package simnet
