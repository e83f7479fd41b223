// `weft-bench-suite client`: the benchmark's traffic clients as a process of their own. The
// suite runs it inside a pod (`weftctl exec`: the pod's network namespace and cgroup), so its
// sockets are created by a task of the pod: in eBPF capture mode the cgroup connect hooks only
// see sockets created by tasks in the pod's cgroup, and a client on a thread of the suite would
// silently bypass the mesh. Every mode (bare, iptables, eBPF) uses this same path.
//
//   weft-bench-suite client --kind pingpong --to IP:PORT [--size N] [--warmup N]
//                           [--round-trips N] [--max-seconds N]
//   weft-bench-suite client --kind connect --to IP:PORT [--seconds N] [--max N]
//   weft-bench-suite client --kind idle --to IP:PORT --count N
//
// Prints one JSON object on one line to stdout when done (pingpong: round_trips, seconds and the
// latency summary in µs; connect: connections, failures, seconds, per_second). `idle` opens
// `count` connections (one 16-byte round trip each), prints {"opened": N}, then holds them until
// SIGTERM/SIGINT and exits 0. Errors go to stderr with exit status 1 (2 for bad flags).
#pragma once

#include <atomic>

namespace weft::bench {

// argv[0] is "client". `stop` is set by SIGINT/SIGTERM.
int ClientMain(int argc, char** argv, const std::atomic<bool>& stop);

}  // namespace weft::bench
