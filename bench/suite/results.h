// The results document of weft-bench-suite (bench/suite): what `results.json` holds, which the
// markdown report and the plots (report.h) read. One document per invocation: SuiteResults,
// below, is its schema, and ToJson / FromJson<SuiteResults> (schema.h) its JSON form both ways;
// the suite writes the document through it and the report reads it through it only.
//
// Layout: {"suite", "started", "finished", "invocation", "revision", "quick", "machine",
// "modes" (run order within each step), "mode_titles", "meshes" (the weftctl up meshes the run
// used), "scenarios": {"seed", "istio", "throughput", "churn", "dataplane", "scale"}, "errors"
// (a failed run is reported, not fatal), plus "goals" (report.h GoalsToJson, written by
// weft-bench-suite next to the document, recomputed by every reader)}.
//
// Mode names are fixed: "bare", "ebpf", "iptables", "sidecar" (HAProxy mode tcp), "sidecar-http"
// (HAProxy mode http); run keys add "ebpf-l7" and "iptables-l7" (kL7Suffix). Any scenario, step,
// case or run may be missing (not run, e.g. --quick or --scenarios), and a run that failed carries
// "error" and may lack its figures: readers must cope. Fields marked "required" are there in every
// document any version of the suite wrote; FromJson names the field when one is missing.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/suite/schema.h"
#include "nlohmann/json.hpp"

namespace weft::bench::suite {

inline constexpr std::string_view kModeBare = "bare";
inline constexpr std::string_view kModeEbpf = "ebpf";
inline constexpr std::string_view kModeIptables = "iptables";
inline constexpr std::string_view kModeSidecar = "sidecar";           // HAProxy mode tcp
inline constexpr std::string_view kModeSidecarHttp = "sidecar-http";  // HAProxy mode http
// Run keys within the istio scenario's cases: a Weft mode's run against the echo Service
// declared HTTP is "<mode>-l7" (Weft L7 once the source proxy terminates HTTP); "<mode>" itself
// is the run against the same server behind a Service declared TCP (Weft L4).
inline constexpr std::string_view kL7Suffix = "-l7";
// The istio scenario's HTTP/1.1 case in eBPF mode, once more against a Service with an HTTPRoute
// and a retry TrafficPolicy attached ("ebpf-l7-route"): what the traffic features cost.
inline constexpr std::string_view kL7RouteSuffix = "-l7-route";
// The istio scenario's protocols: HTTP/1.1, and unary gRPC calls over h2c.
inline constexpr std::string_view kProtocolHttp1 = "http1";
inline constexpr std::string_view kProtocolGrpc = "grpc";

// The one human title of a mode ("Weft, eBPF capture"); the suite writes them into the
// document's "mode_titles" and the report falls back to them. Unknown modes: the name itself.
std::string ModeTitle(std::string_view mode);

// ---- The "seed" and "istio" scenarios: weft-loadgen runs ----

// Latency percentiles of one run, ms (weft-loadgen's "p99.9" is "p999" here).
struct Percentiles {
  std::optional<double> p50, p75, p90, p99, p999, max, mean;
  bool operator==(const Percentiles&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("p50", s.p50);
    f("p75", s.p75);
    f("p90", s.p90);
    f("p99", s.p99);
    f("p999", s.p999);
    f("max", s.max);
    f("mean", s.mean);
  }
};

// The resource accounting of one run (bench/accounting.h), in the run's own object. Absent when
// the sampler failed; the ztunnel figures only in Weft modes.
struct RunResources {
  // (apps + mesh) CPU seconds / elapsed seconds, all processes of the mode except the load pod's.
  std::optional<double> cpu_cores, apps_cpu_cores, mesh_cpu_cores;
  // Whole machine, non-idle (user+system+irq+softirq+steal) / elapsed; and softirq alone.
  std::optional<double> host_cpu_cores, host_softirq_cores;
  // Mean over samples of the summed PSS (shared library pages counted once), and per group.
  std::optional<int64_t> mem_bytes, apps_mem_bytes, mesh_mem_bytes;
  // Mean summed RSS, for reference; the peak of the mesh group's summed RSS.
  std::optional<int64_t> mem_rss_bytes, mesh_rss_bytes, mesh_peak_rss_bytes;
  // The largest ztunnel's peak RSS, its PSS and private (anonymous) part at that peak.
  std::optional<int64_t> ztunnel_peak_rss_bytes, ztunnel_peak_pss_bytes, ztunnel_peak_anon_bytes;
  nlohmann::json usage;  // ToJson(RunUsage), bench/accounting.h: groups "apps" and "mesh"
  bool operator==(const RunResources&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("cpu_cores", s.cpu_cores);
    f("apps_cpu_cores", s.apps_cpu_cores);
    f("mesh_cpu_cores", s.mesh_cpu_cores);
    f("host_cpu_cores", s.host_cpu_cores);
    f("host_softirq_cores", s.host_softirq_cores);
    f("mem_bytes", s.mem_bytes);
    f("apps_mem_bytes", s.apps_mem_bytes);
    f("mesh_mem_bytes", s.mesh_mem_bytes);
    f("mem_rss_bytes", s.mem_rss_bytes);
    f("mesh_rss_bytes", s.mesh_rss_bytes);
    f("mesh_peak_rss_bytes", s.mesh_peak_rss_bytes);
    f("ztunnel_peak_rss_bytes", s.ztunnel_peak_rss_bytes);
    f("ztunnel_peak_pss_bytes", s.ztunnel_peak_pss_bytes);
    f("ztunnel_peak_anon_bytes", s.ztunnel_peak_anon_bytes);
    f("usage", s.usage, Field::kOmitEmpty);
  }
};

// What a run adds over bare's run in the same step or case (report.h OverBare computes it; the
// suite writes it into every meshed seed and istio run).
struct OverBare {
  // Latency percentile of the run minus bare's, ms.
  std::optional<double> p50_ms, p90_ms, p99_ms;
  // (apps + mesh processes' CPU + softirq) minus bare's, × 1000 / the run's achieved rps: vCPU
  // per 1,000 requests/s, kernel time included; and the mesh's processes alone (not minus bare).
  std::optional<double> cpu_per_1000_rps, mesh_cpu_per_1000_rps;
  bool operator==(const OverBare&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("p50_ms", s.p50_ms);
    f("p90_ms", s.p90_ms);
    f("p99_ms", s.p99_ms);
    f("cpu_per_1000_rps", s.cpu_per_1000_rps);
    f("mesh_cpu_per_1000_rps", s.mesh_cpu_per_1000_rps);
  }
};

// One weft-loadgen run in the load pod (seed and istio), with its accounting.
struct LoadRun {
  std::optional<double> asked_rps, achieved_rps;
  std::optional<int64_t> sent, ok, errors, unfinished;
  Percentiles latency_ms;  // from the intended send time
  Percentiles ttfb_ms, service_ms;
  RunResources resources;  // its fields sit in the run's object
  // Meshed modes: the connections the mesh counted from the load pod during the run.
  std::optional<double> mesh_connections;
  std::optional<OverBare> over_bare;  // meshed runs of documents written since L7 was measured
  nlohmann::json loadgen;  // weft-loadgen's JSON (bench/loadgen/loadgen.h), per-type histograms cut
  std::string warning;     // e.g. the mesh's state could not be re-read before the run
  std::string error;       // only when the run failed (then the figures may be missing)
  bool operator==(const LoadRun&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("asked_rps", s.asked_rps);
    f("achieved_rps", s.achieved_rps);
    f("sent", s.sent);
    f("ok", s.ok);
    f("errors", s.errors);
    f("unfinished", s.unfinished);
    f("latency_ms", s.latency_ms);
    f("ttfb_ms", s.ttfb_ms);
    f("service_ms", s.service_ms);
    RunResources::Schema(s.resources, f);
    f("mesh_connections", s.mesh_connections);
    f("over_bare", s.over_bare);
    f("loadgen", s.loadgen, Field::kOmitEmpty);
    f("warning", s.warning, Field::kOmitEmpty);
    f("error", s.error, Field::kOmitEmpty);
  }
};

// seed: TeaStore-like, `users` × rate_per_user requests/s over the tea shop's 8 request types.
struct SeedStep {
  int users = 0;                        // required
  std::map<std::string, LoadRun> runs;  // by mode
  bool operator==(const SeedStep&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("users", s.users, Field::kRequired);
    f("runs", s.runs);
  }
};
struct SeedResult {
  double rate_per_user = 0;                      // required
  int warmup_seconds = 0, duration_seconds = 0;  // required
  std::vector<SeedStep> steps;
  bool operator==(const SeedResult&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("rate_per_user", s.rate_per_user, Field::kRequired);
    f("warmup_seconds", s.warmup_seconds, Field::kRequired);
    f("duration_seconds", s.duration_seconds, Field::kRequired);
    f("steps", s.steps);
  }
};

// istio: fortio-like, a payload_bytes echo at `rps` over each case's connections.
struct IstioCase {
  int connections = 0;  // required
  // kProtocolHttp1 or kProtocolGrpc; empty in documents written before gRPC was measured (then
  // HTTP/1.1).
  std::string protocol;
  std::map<std::string, LoadRun> runs;  // by run key: mode, or mode + kL7Suffix
  bool operator==(const IstioCase&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("connections", s.connections, Field::kRequired);
    f("protocol", s.protocol, Field::kOmitEmpty);
    f("runs", s.runs);
  }
};
struct IstioResult {
  double rps = 0;                               // required
  int payload_bytes = 0, duration_seconds = 0;  // required
  std::optional<int> warmup_seconds;
  std::vector<IstioCase> cases;
  bool operator==(const IstioResult&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("rps", s.rps, Field::kRequired);
    f("payload_bytes", s.payload_bytes, Field::kRequired);
    f("warmup_seconds", s.warmup_seconds);
    f("duration_seconds", s.duration_seconds, Field::kRequired);
    f("cases", s.cases);
  }
};

// ---- The "throughput" scenario: iperf3 from the load pod ----

struct ThroughputRun {
  std::optional<double> gbps;          // received, Gbit/s
  std::optional<int64_t> retransmits;  // the sender's
  RunResources resources;              // its fields sit in the run's object
  std::optional<double> mesh_connections;
  std::string warning, error;
  bool operator==(const ThroughputRun&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("gbps", s.gbps);
    f("retransmits", s.retransmits);
    RunResources::Schema(s.resources, f);
    f("mesh_connections", s.mesh_connections);
    f("warning", s.warning, Field::kOmitEmpty);
    f("error", s.error, Field::kOmitEmpty);
  }
};
struct ThroughputCase {
  std::string pair;                           // required: "same-node" | "cross-node"
  int streams = 0;                            // required: iperf3 -P
  std::map<std::string, ThroughputRun> runs;  // by mode
  bool operator==(const ThroughputCase&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("pair", s.pair, Field::kRequired);
    f("streams", s.streams, Field::kRequired);
    f("runs", s.runs);
  }
};
struct ThroughputResult {
  int seconds = 0;  // required: per run
  std::vector<ThroughputCase> cases;
  bool operator==(const ThroughputResult&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("seconds", s.seconds, Field::kRequired);
    f("cases", s.cases);
  }
};

// ---- The "churn" scenario: new connections/s, rising until the mode saturates ----

struct ChurnStep {
  double asked_cps = 0;  // required
  std::optional<double> achieved_cps, p99_ms;
  std::optional<double> errors;  // errors + unfinished requests
  std::optional<double> cpu_cores, host_cpu_cores, mesh_connections;
  bool saturated = false;  // achieved < 95 % of asked, > 0.1 % errors, p99 > 100 ms, or failed
  std::string error;
  bool operator==(const ChurnStep&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("asked_cps", s.asked_cps, Field::kRequired);
    f("achieved_cps", s.achieved_cps);
    f("p99_ms", s.p99_ms);
    f("errors", s.errors);
    f("cpu_cores", s.cpu_cores);
    f("host_cpu_cores", s.host_cpu_cores);
    f("mesh_connections", s.mesh_connections);
    f("saturated", s.saturated);
    f("error", s.error, Field::kOmitEmpty);
  }
};
struct ChurnRun {
  std::optional<double> max_sustained_cps;  // the highest asked rate not saturated
  std::vector<ChurnStep> steps;
  std::string error;
  bool operator==(const ChurnRun&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("max_sustained_cps", s.max_sustained_cps);
    f("steps", s.steps);
    f("error", s.error, Field::kOmitEmpty);
  }
};
struct ChurnResult {
  std::optional<int> users, seconds;     // load generator users; seconds per step
  std::optional<int> threads;            // load generator threads (absent: 1, before 2026-12-07)
  std::map<std::string, ChurnRun> runs;  // by mode
  bool operator==(const ChurnResult&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("users", s.users);
    f("seconds", s.seconds);
    f("threads", s.threads);
    f("runs", s.runs);
  }
};

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
  bool operator==(const DataplaneRun&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("round_trips", s.round_trips);
    f("p50_us", s.p50_us);
    f("p90_us", s.p90_us);
    f("p99_us", s.p99_us);
    f("p999_us", s.p999_us);
    f("mean_us", s.mean_us);
    f("max_us", s.max_us);
    f("connections", s.connections);
    f("failures", s.failures);
    f("per_second", s.per_second);
    f("seconds", s.seconds);
    f("mesh_connections", s.mesh_connections);
    f("error", s.error, Field::kOmitEmpty);
  }
};

struct DataplanePair {
  std::string pair;    // required: "same-node" | "cross-node"
  std::string server;  // the server pod ("shop/iperf-local", "shop/echo")
  std::map<std::string, DataplaneRun> pingpong, connect;  // by mode
  bool operator==(const DataplanePair&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("pair", s.pair, Field::kRequired);
    f("server", s.server);
    f("pingpong", s.pingpong);
    f("connect", s.connect);
  }
};

// BPF program run time (eBPF mode): the kernel's run_cnt / run_time_ns deltas of each weft_*
// program the eBPF mesh's agents attached (their pinned links), summed over the eBPF-mode runs
// of each figure, with kernel.bpf_stats_enabled=1 for the scenario only.
struct BpfFigure {
  double runs = 0, run_time_ns = 0;
  double ns_per_run() const { return runs > 0 ? run_time_ns / runs : 0; }
  bool operator==(const BpfFigure&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("runs", s.runs);
    f("run_time_ns", s.run_time_ns);
    f.Derived("ns_per_run", s.ns_per_run());
  }
};
struct BpfProgram {
  std::string name, type;
  std::map<std::string, BpfFigure> by_figure;  // "pingpong", "connect"
  bool operator==(const BpfProgram&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("name", s.name, Field::kRequired);
    f("type", s.type);
    f("by_figure", s.by_figure);
  }
};

struct DataplaneResult {
  int round_trips = 0, message_bytes = 0, connect_seconds = 0;  // required
  std::vector<DataplanePair> pairs;
  std::vector<BpfProgram> bpf_programs;
  std::string bpf_error;  // why there are no BPF figures (no eBPF mode, no libbpf, ...)
  bool operator==(const DataplaneResult&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("round_trips", s.round_trips, Field::kRequired);
    f("message_bytes", s.message_bytes, Field::kRequired);
    f("connect_seconds", s.connect_seconds, Field::kRequired);
    f("pairs", s.pairs);
    f("bpf_programs", s.bpf_programs);
    f("bpf_error", s.bpf_error, Field::kOmitEmpty);
  }
};

// ---- The "scale" scenario (bench/suite/scale.h): ztunnel/agent memory vs pods and idle
// connections, on meshes of its own ----

// One node's figures at one pod count.
struct ScalePodsNode {
  int node = 0;
  int pods = 0;                                 // pods on the node
  std::optional<double> ztunnel_enrolled_pods;  // ztunnel's weft_enrolled_pods (checked = pods)
  std::optional<int64_t> ztunnel_rss_bytes, agent_rss_bytes;
  bool operator==(const ScalePodsNode&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("node", s.node, Field::kRequired);
    f("pods", s.pods);
    f("ztunnel_enrolled_pods", s.ztunnel_enrolled_pods);
    f("ztunnel_rss_bytes", s.ztunnel_rss_bytes);
    f("agent_rss_bytes", s.agent_rss_bytes);
  }
};
struct ScalePods {
  std::string mode;                                           // required
  int pods = 0;                                               // required
  std::optional<int64_t> ztunnel_rss_bytes, agent_rss_bytes;  // summed over the nodes
  std::vector<ScalePodsNode> nodes;
  std::optional<double> up_seconds, down_seconds;
  std::string error;
  bool operator==(const ScalePods&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("mode", s.mode, Field::kRequired);
    f("pods", s.pods, Field::kRequired);
    f("ztunnel_rss_bytes", s.ztunnel_rss_bytes);
    f("agent_rss_bytes", s.agent_rss_bytes);
    f("nodes", s.nodes, Field::kOmitEmpty);
    f("up_seconds", s.up_seconds);
    f("down_seconds", s.down_seconds);
    f("error", s.error, Field::kOmitEmpty);
  }
};

// One node's ztunnel with N idle connections held.
struct ScaleIdleNode {
  int node = 0;
  std::string side;  // "client (outbound)" | "server (inbound)"
  std::optional<int64_t> baseline_rss_bytes, rss_bytes, bytes_per_connection;
  bool operator==(const ScaleIdleNode&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("node", s.node, Field::kRequired);
    f("side", s.side);
    f("baseline_rss_bytes", s.baseline_rss_bytes);
    f("rss_bytes", s.rss_bytes);
    f("bytes_per_connection", s.bytes_per_connection);
  }
};
struct ZtunnelCounted {
  std::optional<double> node0_outbound_opened, node1_inbound_opened;
  bool operator==(const ZtunnelCounted&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("node0_outbound_opened", s.node0_outbound_opened);
    f("node1_inbound_opened", s.node1_inbound_opened);
  }
};
struct ScaleIdle {
  std::string mode;     // required
  int connections = 0;  // required
  // Both nodes' ztunnels summed: with the connections held, and with none (after a warm-up).
  std::optional<int64_t> ztunnel_rss_bytes, baseline_ztunnel_rss_bytes;
  // (ztunnel_rss_bytes - baseline) / connections; per ztunnel: half of it (two hold each).
  std::optional<int64_t> bytes_per_connection, bytes_per_connection_per_ztunnel;
  std::optional<bool> goal_met;
  std::optional<int64_t> ztunnel_rss_after_close_bytes, server_open_connections;
  std::optional<ZtunnelCounted> ztunnel_counted;
  std::vector<ScaleIdleNode> nodes;
  std::optional<double> seconds;  // open + measure
  std::string error;
  bool operator==(const ScaleIdle&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("mode", s.mode, Field::kRequired);
    f("connections", s.connections, Field::kRequired);
    f("baseline_ztunnel_rss_bytes", s.baseline_ztunnel_rss_bytes);
    f("ztunnel_rss_bytes", s.ztunnel_rss_bytes);
    f("bytes_per_connection", s.bytes_per_connection);
    f("bytes_per_connection_per_ztunnel", s.bytes_per_connection_per_ztunnel);
    f("goal_met", s.goal_met);
    f("ztunnel_rss_after_close_bytes", s.ztunnel_rss_after_close_bytes);
    f("server_open_connections", s.server_open_connections);
    f("ztunnel_counted", s.ztunnel_counted);
    f("nodes", s.nodes, Field::kOmitEmpty);
    f("seconds", s.seconds);
    f("error", s.error, Field::kOmitEmpty);
  }
};
struct ScaleIdleMesh {
  std::string mode;
  std::optional<double> up_seconds, down_seconds;
  std::vector<int64_t> ztunnel_nofile_limits;  // per node
  bool operator==(const ScaleIdleMesh&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("mode", s.mode, Field::kRequired);
    f("up_seconds", s.up_seconds);
    f("down_seconds", s.down_seconds);
    f("ztunnel_nofile_limits", s.ztunnel_nofile_limits);
  }
};
struct ScaleMesh {
  std::string name, testbed_prefix;
  bool operator==(const ScaleMesh&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("name", s.name, Field::kRequired);
    f("testbed_prefix", s.testbed_prefix, Field::kOmitEmpty);  // missing: up failed early
  }
};
struct ScaleResult {
  std::vector<ScalePods> pods;
  std::vector<ScaleIdle> idle_connections;
  std::vector<ScaleIdleMesh> idle_connection_meshes;
  std::optional<int> nodes;
  std::optional<int64_t> goal_bytes_per_connection_per_ztunnel;
  std::string note;  // how the figures are made
  std::optional<double> pods_seconds, idle_connections_seconds;
  std::optional<int64_t> nofile_limit;  // RLIMIT_NOFILE the meshes inherited
  std::vector<ScaleMesh> meshes;        // every mesh made (all removed by the end)
  std::vector<std::string> errors;      // a failed mode or step; the scenario goes on
  bool operator==(const ScaleResult&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("pods", s.pods);
    f("idle_connections", s.idle_connections);
    f("idle_connection_meshes", s.idle_connection_meshes, Field::kOmitEmpty);
    f("nodes", s.nodes);
    f("goal_bytes_per_connection_per_ztunnel", s.goal_bytes_per_connection_per_ztunnel);
    f("note", s.note, Field::kOmitEmpty);
    f("pods_seconds", s.pods_seconds);
    f("idle_connections_seconds", s.idle_connections_seconds);
    f("nofile_limit", s.nofile_limit);
    f("meshes", s.meshes, Field::kOmitEmpty);
    f("errors", s.errors);
  }
};

// ---- The whole document ----

struct Machine {
  std::optional<int> nproc;
  std::string kernel;
  std::optional<int64_t> mem_total_bytes;
  std::optional<std::vector<double>> load_before, load_after;  // 1, 5, 15 min
  bool operator==(const Machine&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("nproc", s.nproc);
    f("kernel", s.kernel, Field::kOmitEmpty);
    f("mem_total_bytes", s.mem_total_bytes);
    f("load_before", s.load_before);
    f("load_after", s.load_after);
  }
};

// A `weftctl up` mesh the run used (one per mode).
struct MeshRecord {
  std::string mode, name, testbed_prefix, state_dir;
  bool operator==(const MeshRecord&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("mode", s.mode, Field::kRequired);
    f("name", s.name);
    f("testbed_prefix", s.testbed_prefix);
    f("state_dir", s.state_dir);
  }
};

struct Scenarios {
  std::optional<SeedResult> seed;
  std::optional<IstioResult> istio;
  std::optional<ThroughputResult> throughput;
  std::optional<ChurnResult> churn;
  std::optional<DataplaneResult> dataplane;
  std::optional<ScaleResult> scale;
  bool operator==(const Scenarios&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("seed", s.seed);
    f("istio", s.istio);
    f("throughput", s.throughput);
    f("churn", s.churn);
    f("dataplane", s.dataplane);
    f("scale", s.scale);
  }
};

struct SuiteResults {
  std::string suite = "weft-bench-suite";
  std::optional<std::string> started, finished;  // UTC, 2026-11-27T14:00:00Z
  std::optional<std::string> invocation;         // "bash bench/run.sh --quick"
  std::string command_line;
  std::optional<std::string> revision;  // git, "(with uncommitted changes)" when so
  bool quick = false;
  Machine machine;
  std::vector<std::string> modes;                  // run order within each step
  std::map<std::string, std::string> mode_titles;  // ModeTitle() of each mode, as run
  std::vector<MeshRecord> meshes;
  Scenarios scenarios;
  std::vector<std::string> errors;  // "scenario churn, mode sidecar: ..."
  std::string work_dir;
  bool operator==(const SuiteResults&) const = default;

  template <typename S, typename F>
  static void Schema(S& s, F& f) {
    f("suite", s.suite, Field::kRequired);
    f("started", s.started);
    f("finished", s.finished);
    f("invocation", s.invocation);
    f("command_line", s.command_line, Field::kOmitEmpty);
    f("revision", s.revision);
    f("quick", s.quick);
    f("machine", s.machine);
    f("modes", s.modes);
    f("mode_titles", s.mode_titles, Field::kOmitEmpty);
    f("meshes", s.meshes, Field::kOmitEmpty);
    f("scenarios", s.scenarios);
    f("errors", s.errors);
    f("work_dir", s.work_dir, Field::kOmitEmpty);
  }
};

// FromJson<SuiteResults>, and InvalidArgument when the document is another program's ("suite"
// is not "weft-bench-suite", e.g. weft-cp-bench's results.json has none).
absl::StatusOr<SuiteResults> ReadSuiteResults(const nlohmann::json& j);

}  // namespace weft::bench::suite
