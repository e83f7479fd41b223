// The results document of weft-bench-suite (bench/suite): what `results.json` holds, which the
// markdown report and the plots (report.h) read. One document per invocation.
//
// {
//   "suite": "weft-bench-suite",
//   "started": "2026-11-27T14:00:00Z", "finished": "...",
//   "invocation": "bash bench/run.sh --quick", "revision": "ad1166f",
//   "quick": true,
//   "machine": {"nproc": 2, "kernel": "6.1.0-...", "mem_total_bytes": N,
//               "load_before": [1m, 5m, 15m], "load_after": [...]},
//   "modes": ["bare", "ebpf", "iptables", "sidecar"],     // run order within each step
//   "meshes": [{"mode": "ebpf", "name": "wbs123-ebpf", "testbed_prefix": "weft-up456",
//               "state_dir": "..."}, ...],             // the weftctl up meshes the run used
//   "mode_titles": {"bare": "bare (no mesh)", "ebpf": "Weft, eBPF capture", ...},
//   "scenarios": {
//     "seed": {                                       // TeaStore-like: users x 5 rps, 8 types
//       "rate_per_user": 5, "warmup_seconds": 5, "duration_seconds": 20,
//       "steps": [
//         {"users": 5,
//          "runs": {"bare": RUN, "ebpf": RUN, ...}}, ...]},
//     "istio": {                                      // fortio-like: 1 KiB echo, 1000 rps
//       "rps": 1000, "payload_bytes": 1024, "duration_seconds": 20,
//       "cases": [{"connections": 4, "runs": {"bare": RUN, ...}},
//                 {"connections": 64, "runs": {...}}]},
//     "throughput": {                                  // iperf3
//       "seconds": 5,
//       "cases": [{"pair": "same-node"|"cross-node", "streams": 1|8,
//                  "runs": {"bare": {"gbps": 21.3, "usage": USAGE, "error": "..."?}, ...}}]},
//     "churn": {                                       // new connections/s until saturation
//       "runs": {"bare": {"max_sustained_cps": 4000,
//                         "steps": [{"asked_cps": 500, "achieved_cps": 499.8, "p99_ms": 1.2,
//                                    "errors": 0, "saturated": false}, ...]}, ...}},
//     "scale": {                                       // bench/suite/scale.h
//       "pods": [{"mode": "ebpf", "pods": 10, "ztunnel_rss_bytes": N, "agent_rss_bytes": N}, ...],
//       "idle_connections": [{"mode": "ebpf", "connections": 10000,
//                             "ztunnel_rss_bytes": N,           // sum of both nodes' ztunnels
//                             "baseline_ztunnel_rss_bytes": N,  // same, with 0 connections
//                             "bytes_per_connection": N}, ...]},
//     "dataplane": DataplaneResult (below, ToJson/FromJson)
//   },
//   "errors": ["scenario churn, mode sidecar: ..."]   // a failed run is reported, not fatal
// }
//
// RUN (seed and istio): the load generator's numbers plus the run's resource accounting:
//   {"asked_rps": 100, "achieved_rps": 99.9, "sent": N, "ok": N, "errors": N, "unfinished": N,
//    "latency_ms": {"p50":..,"p75":..,"p90":..,"p99":..,"p999":..,"max":..},  // from intended time
//    "ttfb_ms": {same keys},
//    "cpu_cores": ..,        // (apps + mesh) CPU seconds / elapsed seconds, all processes of the
//                            // mode except the load generator's pod
//    "mesh_cpu_cores": .., "apps_cpu_cores": ..,
//    "host_cpu_cores": ..,   // whole machine, non-idle (user+system+irq+softirq+steal) / elapsed
//    "host_softirq_cores": ..,
//    "mem_bytes": ..,        // mean over samples of (apps + mesh) summed PSS (shared library
//                            // pages counted once, not once per process as an RSS sum would)
//    "mesh_mem_bytes": .., "apps_mem_bytes": ..,   // the same per group (PSS)
//    "mem_rss_bytes": .., "mesh_rss_bytes": ..,    // mean summed RSS, for reference
//    "mesh_peak_rss_bytes": ..,                    // peak of the mesh group's summed RSS
//    "ztunnel_peak_rss_bytes": ..,   // Weft modes only: the largest ztunnel's peak RSS, and
//    "ztunnel_peak_pss_bytes": .., "ztunnel_peak_anon_bytes": ..,  // its PSS and private part
//    "loadgen": {...},       // weft-loadgen's full JSON (bench/loadgen/loadgen.h Result::ToJson)
//    "usage": USAGE,         // ToJson(RunUsage), bench/accounting.h
//    "error": "..."}         // only when the run failed (then the numbers may be missing)
// USAGE: bench/accounting.h ToJson(RunUsage), groups "apps" and "mesh".
//
// Mode names are fixed: "bare", "ebpf", "iptables", "sidecar". Any scenario, step, case or run
// may be missing (not run, e.g. --quick or --scenarios); readers must cope.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace weft::bench::suite {

inline constexpr std::string_view kModeBare = "bare";
inline constexpr std::string_view kModeEbpf = "ebpf";
inline constexpr std::string_view kModeIptables = "iptables";
inline constexpr std::string_view kModeSidecar = "sidecar";

// The one human title of a mode ("Weft, eBPF capture"); the suite writes them into the
// document's "mode_titles" and the report falls back to them. Unknown modes: the name itself.
std::string ModeTitle(std::string_view mode);

// ---- The "dataplane" scenario: the data path below HTTP, per capture mode ----
//
// `weft-bench-suite client --kind pingpong|connect` (bench/client.h) runs in the load pod
// (node0) against the suite's own TCP echo servers (bench/traffic.h) in a same-node pod
// (iperf-local, node0) and a cross-node pod (echo, node1), by pod IP. Modes: bare and the Weft
// capture modes (the sidecar mesh only routes the ports its manifests declare).

// One client run. Absent figures (std::nullopt) were not measured, e.g. the run failed.
struct DataplaneRun {
  // pingpong: `round_trips` request/response round trips of `message_bytes` on one connection
  // (warm-up excluded); latency in µs.
  std::optional<double> round_trips, p50_us, p90_us, p99_us, p999_us, mean_us, max_us;
  // connect: sequential connections (connect, 32-byte round trip, server closes, close).
  std::optional<double> connections, failures, per_second;
  std::optional<double> seconds;
  // Meshed modes: the connections the mesh counted from the load pod during the run (at least
  // the run's own, else the run is an error: its traffic bypassed the mesh).
  std::optional<double> mesh_connections;
  std::string error;  // empty: the run succeeded

  nlohmann::json ToJson() const;
  static DataplaneRun FromJson(const nlohmann::json& j);
};

struct DataplanePair {
  std::string pair;    // "same-node" | "cross-node"
  std::string server;  // the server pod ("shop/iperf-local", "shop/echo")
  std::map<std::string, DataplaneRun> pingpong, connect;  // by mode

  nlohmann::json ToJson() const;
  static DataplanePair FromJson(const nlohmann::json& j);
};

// BPF program run time (eBPF mode): the kernel's run_cnt / run_time_ns deltas of each weft_*
// program the eBPF mesh's agents attached (their pinned links), summed over the eBPF-mode runs
// of each figure, with kernel.bpf_stats_enabled=1 for the scenario only.
struct BpfFigure {
  double runs = 0, run_time_ns = 0;
  double ns_per_run() const { return runs > 0 ? run_time_ns / runs : 0; }
};
struct BpfProgram {
  std::string name, type;
  std::map<std::string, BpfFigure> by_figure;  // "pingpong", "connect"

  nlohmann::json ToJson() const;
  static BpfProgram FromJson(const nlohmann::json& j);
};

struct DataplaneResult {
  int round_trips = 0, message_bytes = 0, connect_seconds = 0;
  std::vector<DataplanePair> pairs;
  std::vector<BpfProgram> bpf_programs;
  std::string bpf_error;  // why there are no BPF figures (no eBPF mode, no libbpf, ...)

  nlohmann::json ToJson() const;
  static DataplaneResult FromJson(const nlohmann::json& j);
};

}  // namespace weft::bench::suite
