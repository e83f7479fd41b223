// weft-bench: the data-plane benchmark. One invocation builds one 2-node LocalMesh testbed with
// four pods and measures the same workloads over two paths that share the fabric:
//
//   bare:  bare-client (node 0) -> bare-server (node 1), pods outside the mesh (plain routing)
//   mesh:  mesh-client (node 0) -> mesh-server (node 1), enrolled: in-pod capture, ztunnel on
//          both nodes, HBONE (mTLS + HTTP/2 CONNECT) across the fabric
//
// Workloads, interleaved bare, mesh, bare, mesh ... for `rounds` rounds (medians reported):
// single-stream throughput (iperf3), 1 KiB request/response latency (own ping-pong), connection
// rate (connect + small round trip + close), and once, ztunnel memory idle and with
// `hold_connections` idle tunnelled connections open. Every process and socket lives in
// namespaces the run creates; they are removed on exit, including on SIGINT/SIGTERM (via `stop`).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace weft::bench {

struct Config {
  int rounds = 3;
  int iperf_seconds = 5;
  int64_t round_trips = 20000;
  int latency_seconds = 20;  // upper bound per latency run
  int message_size = 1024;
  int connect_seconds = 5;
  int64_t connect_max = 200000;  // upper bound per connect-rate run
  int hold_connections = 1000;
  int ztunnel_workers = 0;  // 0: nproc
  std::string log_level = "warn";
  std::string ztunnel_bin, agent_bin;  // default: next to weft-bench's build dir
  std::string out_dir;                 // where results.json and report.md go ("" = nowhere)
  bool keep_work_dir = false;
  // Hold a PM QoS request of 0 µs on /dev/cpu_dma_latency for the run (released when the
  // process exits): on VMs, waking an idle vCPU costs tens of µs, which otherwise dominates
  // every latency figure and flips from run to run with background load.
  bool pm_qos = true;
  bool quick = false;
  bool help = false;
  std::string command_line;  // argv, shell-quoted, for the report
  std::string invoked_as;    // set by bench/run.sh (WEFT_BENCH_INVOCATION)
};

std::string Usage();

// Parses weft-bench's flags (see Usage()). Errors say which flag is wrong and why.
absl::StatusOr<Config> ParseArgs(int argc, char** argv);

// Runs the whole benchmark and returns results.json's document. Needs root, iperf3, ss and
// iptables-restore. Progress goes to stderr. Returns CancelledError once `stop` is set.
absl::StatusOr<nlohmann::json> Run(const Config& cfg, const std::atomic<bool>& stop);

// The markdown report for a results document from Run().
std::string RenderMarkdown(const nlohmann::json& results);

}  // namespace weft::bench
