// `weftctl stat`: golden signals per workload from the ztunnels' metrics, like `linkerd viz
// stat`, as a terminal table (or JSON).
//
// Source: every ztunnel's /metrics (scraped twice, `--window` apart; `--window 0` reads the
// totals since the ztunnels started). Per destination workload (NAMESPACE/WORKLOAD):
//   CONNS     connections that closed in the window (weft_tcp_connection_duration_seconds count)
//   SUCCESS   share of them that closed without a response flag (not refused, denied, or failed
//             upstream)
//   CONN/S    CONNS / window: with one request per connection (the demo's per-request mode)
//             this is the request rate; ztunnel is L4 only, so a keep-alive connection counts once
//   P50/P95/P99  connection duration percentiles, interpolated within histogram buckets as
//             Prometheus's histogram_quantile does
//   MESHED    share of connections that were mTLS (or same-node fast path, which never leaves
//             the node)
//   READ/S WRITE/S  bytes per second from the workload's point of view (istio_tcp_*_bytes_total)
// Workloads with Istio's request metrics (HTTP, parsed by their ztunnel) get the request view in
// a table of their own, like `linkerd viz stat`:
//   SUCCESS   share of requests whose response_code is not 5xx (as Istio's dashboards count it;
//             a request without response, code "0", is not a 5xx)
//   RPS       requests per second in the window (istio_requests_total)
//   P50/P95/P99  request latency from istio_request_duration_milliseconds, interpolated as above
//   CONN/S    connections per second, as for L4
// The destination ztunnel's view (reporter="destination") is used where it exists; a workload
// no ztunnel serves inbound (not enrolled) is described by its callers' ztunnels
// (reporter="source").
#pragma once

#include <iosfwd>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "common/scrape/scrape.h"
#include "nlohmann/json.hpp"

namespace weft::cli {

// One ztunnel's metrics endpoint; netns empty = the current network namespace.
struct StatTarget {
  std::string node;
  std::string netns;  // path, e.g. /run/netns/weft-up-1234-0-n0
  std::string addr;   // ip:port of /metrics
};

// "NODE=NETNS@ADDR:PORT" or "NODE=ADDR:PORT" (current netns).
absl::StatusOr<StatTarget> ParseStatTarget(const std::string& spec);

// --target NODE=NETNS@ADDR:PORT (repeatable) filling `targets`; `endpoint` names which one
// ("metrics", "admin") in the help.
void AddTargetFlag(CLI::App& app, std::vector<StatTarget>* targets, std::string_view endpoint);

struct MeshRef;
// When `targets` is empty (no --target given), fills it with every ztunnel of the local mesh
// `mesh`: their admin endpoints if `admin`, else their metrics endpoints. False (after saying
// why on `err`, prefixed with `command`) when there is no such mesh.
bool FillLocalTargets(std::vector<StatTarget>& targets, const MeshRef& mesh, bool admin,
                      std::string_view command, std::ostream& err);

// Reads every target's /metrics (in its network namespace) and keeps the samples ComputeStats
// reads. Unavailable, naming the node, when one cannot be read.
absl::StatusOr<std::vector<MetricSample>> ScrapeZtunnels(const std::vector<StatTarget>& targets);

struct WorkloadStat {
  std::string ns;
  std::string workload;
  double conns = 0;                    // closed in the window
  double success_rate = 0;             // 0..1; meaningless when conns == 0
  double rate = 0;                     // conns per second (0 when the window is 0)
  double p50 = 0, p95 = 0, p99 = 0;    // seconds; NaN when no connection
  double meshed = 0;                   // 0..1 share of mutual_tls / same_node connections
  double read_bps = 0, write_bps = 0;  // per second (window > 0) or totals (window 0)
  bool from_source = false;            // described by the callers' ztunnels only
  // HTTP workloads: the reporter chosen above has request metrics for it.
  bool http = false;
  double requests = 0;                           // in the window
  double request_success_rate = 0;               // 0..1 non-5xx; meaningless when requests == 0
  double rps = 0;                                // requests per second (0 when the window is 0)
  double req_p50 = 0, req_p95 = 0, req_p99 = 0;  // seconds; NaN when no request
};

// The stats between two readings of the same targets (`before` empty: totals of `after`).
// Samples from every target are summed. `window_seconds` 0 = totals.
std::vector<WorkloadStat> ComputeStats(const std::vector<MetricSample>& before,
                                       const std::vector<MetricSample>& after,
                                       double window_seconds);

// Prometheus's histogram_quantile over cumulative (upper bound, count) buckets, +Inf last.
double HistogramQuantile(double q, const std::vector<std::pair<double, double>>& buckets);

// One workload's stats as `weftctl stat --json` prints them (NaN latencies are null).
nlohmann::json StatJson(const WorkloadStat& s, double window_seconds);

// The terminal table; `filter` is "", "NS" or "NS/WORKLOAD".
void PrintStatTable(const std::vector<WorkloadStat>& stats, const std::string& filter,
                    double window_seconds, std::ostream& out);

// The CommandFn registered as "stat".
int StatMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli
