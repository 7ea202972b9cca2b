// Package bench is deact's load and propagation benchmark, driven by cmd/deactbench. Run every benchmark,
// short, with report and plots in bench-out/ (about a minute on 2 cores, at most 5):
//
//	go run ./cmd/deactbench all --quick --out bench-out
//
// It drives deact from outside, over its APIs: the Envoy ext_authz gRPC Check and the HTTP check endpoint for
// the load, the native admin API for the state. The modes:
//
//   - check: a realistic request mix (ZITADEL token, authorize, login; Commvault backup and restore; API calls
//     with a JWT) over orgs and apps registered through the admin API, a share deactivated. Closed loop (N
//     workers over M connections) or open loop at a fixed rate, with latency measured from each request's
//     intended send time (corrected for coordinated omission) in HDR histograms. With a baseline (NullServer, or
//     another ext_authz server) the same load is measured before and after deact and the ratio reported.
//     Servers run in child processes (CheckConfig.Servers, deactbench --servers; the summary's "servers:" line
//     says which ran): deactd (built from ./cmd/deactd, or --deactd), started through the launcher that reads
//     its --ready-file, and the null server as "deactbench null-server", each with its own Go runtime and GC;
//     each server process's own CPU per answer (/proc/PID/stat) is the most robust comparison on a shared
//     machine; --pin gives the load generator one CPU and the servers another. In-process mode (--servers
//     inprocess) runs only the null server in the generator's process, for a deact given by address.
//   - propagation: deactivate and reactivate an org through the admin API; every node is checked in a loop
//     (200 µs pauses by default; a tight loop on 2 cores slows etcd) until it flips. Per node and all-node
//     percentiles, from the write and from the admin's ack; a check sent after a confirmed ack that still
//     sees the old state is an error.
//   - sync: a fresh deactd child process over an etcd holding 10⁵–10⁶ records: time to ready, memory.
//   - admin: confirmed writes per second at a given concurrency.
//   - fleet: N gateways with node reporting (in-process replicas and reporters, the code a gateway runs, plus
//     1% deactd gateway child processes) on a 3-member etcd in a child process ("deactbench etcd-cluster"),
//     a churn through a deactd admin child: etcd's writes, CPU and db size per change (its own counters and
//     /proc), confirmation and write → applied on every replica, and the answers and /v1/nodes while 1% of
//     the gateways are SIGSTOPped.
//
// Every answer is compared with the state the generator knows (model): an allow of a deactivated subject or a
// deny of an active one is counted, reported with examples, and fails the run (ErrCorrectness). With churn,
// answers about an org are not judged between the start of a write and the admin's confirmation by every node.
//
// Guarantees: load goes only to loopback addresses; every loop is bounded in count and time; a run stops what
// it started (child processes too: SIGTERM, then SIGKILL after 10 s; the null server also exits when its stdin
// closes). The load generator, deact and the baseline share one machine (and, in-process, one Go runtime),
// which every report says: compare ratios from one run, not absolute figures across machines.
package bench
