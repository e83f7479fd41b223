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
//                             "bytes_per_connection": N}, ...]}
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

#include <string_view>

namespace weft::bench::suite {

inline constexpr std::string_view kModeBare = "bare";
inline constexpr std::string_view kModeEbpf = "ebpf";
inline constexpr std::string_view kModeIptables = "iptables";
inline constexpr std::string_view kModeSidecar = "sidecar";

}  // namespace weft::bench::suite
