// weft-bench: the data-plane benchmark. One invocation starts two 2-node LocalMesh testbeds
// side by side, both up for the whole run:
//
//   mesh "bench"      weft-agent --capture iptables; holds the iptables pods and the bare pods
//                     (not enrolled: plain routing)
//   mesh "benchebpf"  weft-agent --capture ebpf (cgroup connect hooks on the testbed's cgroup,
//                     per-netns sk_lookup)
//
// Per mode (bare, iptables, ebpf) one client pod on node 0 and two server pods, one on node 0
// (same-node pair) and one on node 1 (cross-node pair). Figures, interleaved mode by mode
// (bare, iptables, ebpf, bare, ...) for `rounds` rounds, medians reported: single-stream
// throughput (iperf3), 1 KiB request/response latency p50/p90/p99/p99.9, connection rate,
// ztunnel and agent CPU per run, BPF program run time (bpf_prog_info run_time_ns / run_cnt of
// every weft_* program, with kernel.bpf_stats_enabled=1 only while the benchmark runs), and
// once, ztunnel memory idle and with `hold_connections` idle tunnelled connections open.
//
// Clients run as processes inside the client pod's netns and cgroup (`weft-bench client`, see
// bench/client.h, and iperf3 -c), the same way in every mode: eBPF capture hooks only see
// sockets created by a task in the pod's cgroup. After each meshed run the client node's
// ztunnel must have counted the run's connections, else the run fails rather than report a
// bare figure as a meshed one. Every process and socket lives in namespaces (and cgroups) the
// run creates; they are removed on exit, including on SIGINT/SIGTERM (via `stop`).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace weft::bench {

struct Config {
  std::vector<std::string> modes = {"bare", "iptables", "ebpf"};  // in interleaving order
  // Noise allowed when checking that eBPF capture is at least as fast as iptables capture.
  double tolerance = 0.05;
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
  // Keep every vCPU out of idle with one SCHED_IDLE busy-loop thread per CPU (they run only when
  // nothing else wants the CPU). On a VM the PM QoS request does not stop a vCPU from halting,
  // and waking a halted vCPU costs ~50 µs per hop, which comes and goes with the machine's
  // other load and hits the meshed paths (more hops) harder than bare.
  bool spin = true;
  // Nice value for weft-bench and everything it starts (ztunnels, agents, iperf3, clients):
  // on a shared machine, other jobs' CPU bursts otherwise land in the latency tails of
  // whichever mode happens to run. Applied before any thread or child exists. 0: unchanged.
  int nice = -10;
  // CPUs weft-bench and everything it starts are pinned to (sched_setaffinity, inherited);
  // empty: all. One CPU makes every wake-up local: on a VM, cross-vCPU wake-ups (IPIs) make
  // meshed latency runs bimodal, so `--cpus 0` gives a steadier latency comparison of the
  // software paths, at the cost of parallelism in the throughput figures.
  std::vector<int> cpus;
  bool quick = false;
  bool help = false;
  std::string command_line;  // argv, shell-quoted, for the report
  std::string invoked_as;    // set by bench/dataplane.sh (WEFT_BENCH_INVOCATION)
};

std::string Usage();

// Parses weft-bench's flags (see Usage()). Errors say which flag is wrong and why.
absl::StatusOr<Config> ParseArgs(int argc, char** argv);

// Runs the whole benchmark and returns results.json's document. Needs root, iperf3, ss and
// iptables-restore (and libbpf at build time for BPF run times). Progress goes to stderr.
// Returns CancelledError once `stop` is set (kernel.bpf_stats_enabled is restored first).
absl::StatusOr<nlohmann::json> Run(const Config& cfg, const std::atomic<bool>& stop);

// The markdown report for a results document from Run().
std::string RenderMarkdown(const nlohmann::json& results);

}  // namespace weft::bench
