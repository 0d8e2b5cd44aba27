// Package testbed runs basefs clusters to measure and to break them: N real
// nodes (node.Start: replica, Serf gossip, anti-entropy sync) in one process
// over the simulated network of package simnet — per-link delay and jitter
// (which reorders), loss, duplication, bandwidth limits, partitions, crashes
// and restarts, all from a seed — and N real `basefs run` processes on
// 127.0.77.x or in network namespaces with nftables loss, to check the
// simulation against the real thing.
//
// Experiments (each writes data.csv, plot.svg and report.md):
//
//   - RunConvergence: convergence time vs objects written at once, one-way
//     delay, loss, bandwidth, sync interval or cluster size, with a bare Serf
//     user event timed in the same cluster as the floor (see the comment at
//     the top of convergence.go for what "object" and "converged" mean);
//   - RunTraffic: traffic per node, gossip and sync separately, vs the sync
//     interval, idle and under writes;
//   - RunFaults / RunFaultSeeds: seeded schedules of partitions, heals,
//     crashes, restarts, link changes and writes, then the invariants (equal
//     views, no acknowledged write lost, no view going backwards, every
//     entry verifies); a failure names the seed and the replay command;
//   - RunReal / RunCompare: real processes beside the simulation.
//
// Summarize renders the overview of a results directory (the issue's
// targets and the original BaseFS's figures beside ours). The command
// `basefs-testbed` drives all of this; testbed/results/README.md lists the
// exact commands that produced the committed results.
//
// # Simulated time
//
// Simulated time is real time: simnet delivers packets and stream segments
// at wall-clock instants from one timer heap and the nodes run their usual
// clocks, so a simulated second takes a second, and experiments report
// wall-clock times. The simulation is faithful while the machine keeps up;
// simnet's Lag (how late deliveries fire) and the process's CPU use are
// reported with every result. A 30-node cluster idles at a few percent of a
// core; a thousand nodes need gentler gossip timings and a lower
// retransmit multiplier on two cores: each join is gossiped by every node
// RetransmitMult·⌈log10(N+1)⌉ times, 24 with the default at 1000 nodes,
// and forming the cluster then outruns the machine past about 700 nodes
// (see the nodes1000 results).
//
// # Concurrency
//
// Cluster and Arrivals are safe for concurrent use (Cluster's Crash, Restart
// and Stop of one node must not overlap). The Run functions may be called
// concurrently with each other: each builds its own network and nodes. The
// package has no package-level mutable state.
package testbed
