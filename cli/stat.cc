#include "cli/stat.h"

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/mesh_ref.h"
#include "common/flags.h"
#include "common/net.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace weft::cli {
namespace {

constexpr char kDuration[] = "weft_tcp_connection_duration_seconds";
constexpr char kSent[] = "istio_tcp_sent_bytes_total";
constexpr char kReceived[] = "istio_tcp_received_bytes_total";
constexpr char kRequests[] = "istio_requests_total";
constexpr char kRequestDuration[] = "istio_request_duration_milliseconds";

using WorkloadKey = std::pair<std::string, std::string>;  // namespace, workload

// Everything one reporter saw for one destination workload, summed over targets.
struct Totals {
  std::map<double, double> buckets;  // upper bound -> cumulative count (summed)
  double count = 0;
  double ok = 0;      // response_flags "-"
  double meshed = 0;  // mutual_tls or same_node
  double sent = 0, received = 0;
  // Istio's request metrics (HTTP workloads).
  std::map<double, double> req_buckets;  // milliseconds -> cumulative count (summed)
  double requests = 0;
  double req_ok = 0;  // response_code not 5xx
};

using ByReporter = std::map<std::string, std::map<WorkloadKey, Totals>>;  // reporter -> ...

std::string Label(const MetricSample& s, const char* name) {
  auto it = s.labels.find(name);
  return it == s.labels.end() ? "" : it->second;
}

ByReporter Collect(const std::vector<MetricSample>& samples) {
  ByReporter out;
  const std::string bucket = absl::StrCat(kDuration, "_bucket");
  const std::string count = absl::StrCat(kDuration, "_count");
  const std::string req_bucket = absl::StrCat(kRequestDuration, "_bucket");
  for (const MetricSample& s : samples) {
    const std::string reporter = Label(s, "reporter");
    WorkloadKey key{Label(s, "destination_workload_namespace"), Label(s, "destination_workload")};
    if (reporter.empty() || key.second.empty() || key.second == "unknown") continue;
    if (s.name == bucket || s.name == req_bucket) {
      double le = 0;
      const std::string le_text = Label(s, "le");
      if (le_text == "+Inf") {
        le = std::numeric_limits<double>::infinity();
      } else if (!absl::SimpleAtod(le_text, &le)) {
        continue;
      }
      Totals& t = out[reporter][key];
      (s.name == bucket ? t.buckets : t.req_buckets)[le] += s.value;
    } else if (s.name == kRequests) {
      Totals& t = out[reporter][key];
      t.requests += s.value;
      // Success as Istio's dashboards count it: response_code!~"5.*".
      if (Label(s, "response_code").rfind('5', 0) != 0) t.req_ok += s.value;
    } else if (s.name == count) {
      Totals& t = out[reporter][key];
      t.count += s.value;
      if (Label(s, "response_flags") == "-") t.ok += s.value;
      const std::string sec = Label(s, "connection_security_policy");
      if (sec == "mutual_tls" || sec == "same_node") t.meshed += s.value;
    } else if (s.name == kSent) {
      out[reporter][key].sent += s.value;
    } else if (s.name == kReceived) {
      out[reporter][key].received += s.value;
    }
  }
  return out;
}

Totals Minus(const Totals& a, const Totals* b) {
  if (!b) return a;
  Totals d = a;
  // Counters only grow; a ztunnel restart in the window resets them, so clamp at zero.
  auto sub = [](double x, double y) { return std::max(0.0, x - y); };
  for (auto& [le, v] : d.buckets) {
    auto it = b->buckets.find(le);
    if (it != b->buckets.end()) v = sub(v, it->second);
  }
  for (auto& [le, v] : d.req_buckets) {
    auto it = b->req_buckets.find(le);
    if (it != b->req_buckets.end()) v = sub(v, it->second);
  }
  d.requests = sub(a.requests, b->requests);
  d.req_ok = sub(a.req_ok, b->req_ok);
  d.count = sub(a.count, b->count);
  d.ok = sub(a.ok, b->ok);
  d.meshed = sub(a.meshed, b->meshed);
  d.sent = sub(a.sent, b->sent);
  d.received = sub(a.received, b->received);
  return d;
}

std::string Seconds(double s) {
  if (std::isnan(s)) return "-";
  if (s < 1e-3) return absl::StrFormat("%.0fµs", s * 1e6);
  if (s < 1) return absl::StrFormat("%.1fms", s * 1e3);
  return absl::StrFormat("%.2fs", s);
}

std::string Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%.0f%s", b, units[u]) : absl::StrFormat("%.1f%s", b, units[u]);
}

std::string Percent(double f) {
  return absl::StrFormat("%.2f%%", f * 100);
}

bool Matches(const WorkloadStat& s, const std::string& filter) {
  if (filter.empty()) return true;
  auto slash = filter.find('/');
  if (slash == std::string::npos) return s.ns == filter;
  return s.ns == filter.substr(0, slash) && s.workload == filter.substr(slash + 1);
}

}  // namespace

absl::StatusOr<StatTarget> ParseStatTarget(const std::string& spec) {
  StatTarget t;
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--target \"", spec,
                                                   "\": want NODE=NETNS@ADDR:PORT or "
                                                   "NODE=ADDR:PORT"));
  }
  t.node = spec.substr(0, eq);
  std::string rest = spec.substr(eq + 1);
  auto at = rest.rfind('@');
  if (at != std::string::npos) {
    t.netns = rest.substr(0, at);
    rest = rest.substr(at + 1);
  }
  if (!SockAddr::Parse(rest).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--target \"", spec, "\": \"", rest, "\" is not ADDR:PORT"));
  }
  t.addr = rest;
  return t;
}

double HistogramQuantile(double q, const std::vector<std::pair<double, double>>& buckets) {
  if (buckets.empty() || !std::isinf(buckets.back().first)) return std::nan("");
  const double total = buckets.back().second;
  if (total <= 0) return std::nan("");
  const double rank = q * total;
  double prev_bound = 0, prev_count = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const auto& [bound, count] = buckets[i];
    if (count >= rank) {
      // In the +Inf bucket the best answer is the highest finite bound (as Prometheus does).
      if (std::isinf(bound)) return i == 0 ? std::nan("") : buckets[i - 1].first;
      if (count == prev_count) return bound;
      return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count);
    }
    prev_bound = bound;
    prev_count = count;
  }
  return prev_bound;
}

std::vector<WorkloadStat> ComputeStats(const std::vector<MetricSample>& before,
                                       const std::vector<MetricSample>& after,
                                       double window_seconds) {
  const ByReporter a = Collect(after), b = Collect(before);
  std::set<WorkloadKey> keys;
  for (const auto& [reporter, by_key] : a) {
    for (const auto& [key, t] : by_key) keys.insert(key);
  }
  // One reporter's readings of `key` (null when it has none).
  auto find = [&](const char* reporter, const WorkloadKey& key) {
    std::pair<const Totals*, const Totals*> r{nullptr, nullptr};
    if (auto it = a.find(reporter); it != a.end()) {
      if (auto k = it->second.find(key); k != it->second.end()) r.first = &k->second;
    }
    if (auto bt = b.find(reporter); r.first && bt != b.end()) {
      if (auto bk = bt->second.find(key); bk != bt->second.end()) r.second = &bk->second;
    }
    return r;
  };
  auto has_requests = [](const Totals* t) {
    return t && (t->requests > 0 || !t->req_buckets.empty());
  };
  std::vector<WorkloadStat> out;
  for (const WorkloadKey& key : keys) {
    // The destination's own ztunnel when it saw the workload, else the callers' ztunnels; the
    // same for requests, which the callers' ztunnels alone record when the destination does not
    // parse HTTP (a Service declared HTTP is terminated at the source).
    auto [now, then] = find("destination", key);
    bool from_source = false;
    if (!now) {
      std::tie(now, then) = find("source", key);
      from_source = true;
    }
    auto [req_now, req_then] = std::make_pair(now, then);
    if (!has_requests(req_now)) std::tie(req_now, req_then) = find("source", key);
    if (!now) continue;
    const Totals d = Minus(*now, then);
    WorkloadStat s;
    s.ns = key.first;
    s.workload = key.second;
    s.from_source = from_source;
    s.conns = d.count;
    s.success_rate = d.count > 0 ? d.ok / d.count : 0;
    s.meshed = d.count > 0 ? d.meshed / d.count : 0;
    std::vector<std::pair<double, double>> buckets(d.buckets.begin(), d.buckets.end());
    s.p50 = HistogramQuantile(0.50, buckets);
    s.p95 = HistogramQuantile(0.95, buckets);
    s.p99 = HistogramQuantile(0.99, buckets);
    // Bytes from the workload's side: it reads what the source sent and writes what the source
    // received.
    const double per = window_seconds > 0 ? window_seconds : 1;
    s.rate = window_seconds > 0 ? d.count / window_seconds : 0;
    s.read_bps = d.sent / per;
    s.write_bps = d.received / per;
    // Request metrics exist: the HTTP view (over the same window), latencies in seconds.
    s.http = has_requests(req_now);
    if (s.http) {
      const Totals r = Minus(*req_now, req_then);
      s.requests = r.requests;
      s.request_success_rate = r.requests > 0 ? r.req_ok / r.requests : 0;
      s.rps = window_seconds > 0 ? r.requests / window_seconds : 0;
      std::vector<std::pair<double, double>> rb(r.req_buckets.begin(), r.req_buckets.end());
      s.req_p50 = HistogramQuantile(0.50, rb) / 1000;
      s.req_p95 = HistogramQuantile(0.95, rb) / 1000;
      s.req_p99 = HistogramQuantile(0.99, rb) / 1000;
    }
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// Aligned columns, two spaces apart; widths in characters ("µ" is two bytes but one column).
void PrintRows(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  auto chars = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  };
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], chars(r[i]));
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - chars(r[i]) + 2, ' ');
    }
    out << line << "\n";
  }
}

}  // namespace

void PrintStatTable(const std::vector<WorkloadStat>& stats, const std::string& filter,
                    double window_seconds, std::ostream& out) {
  const bool totals = window_seconds <= 0;
  // HTTP workloads (request metrics): requests, like `linkerd viz stat`.
  std::vector<std::vector<std::string>> http = {{"NAMESPACE", "WORKLOAD", "MESHED", "SUCCESS",
                                                 totals ? "REQS" : "RPS", "P50", "P95", "P99",
                                                 totals ? "CONNS" : "CONN/S"}};
  // L4 workloads: connections.
  std::vector<std::vector<std::string>> tcp = {
      {"NAMESPACE", "WORKLOAD", "MESHED", "SUCCESS", totals ? "CONNS" : "CONN/S", "P50", "P95",
       "P99", totals ? "READ" : "READ/S", totals ? "WRITE" : "WRITE/S"}};
  for (const WorkloadStat& s : stats) {
    if (!Matches(s, filter)) continue;
    const bool any = s.conns > 0;
    std::string workload = s.workload + (s.from_source ? "*" : "");
    std::string conns = totals ? absl::StrFormat("%.0f", s.conns) : absl::StrFormat("%.1f", s.rate);
    if (s.http) {
      const bool reqs = s.requests > 0;
      http.push_back({s.ns, workload, any ? Percent(s.meshed) : "-",
                      reqs ? Percent(s.request_success_rate) : "-",
                      totals ? absl::StrFormat("%.0f", s.requests) : absl::StrFormat("%.1f", s.rps),
                      Seconds(s.req_p50), Seconds(s.req_p95), Seconds(s.req_p99), conns});
      continue;
    }
    tcp.push_back({s.ns, workload, any ? Percent(s.meshed) : "-",
                   any ? Percent(s.success_rate) : "-", conns, Seconds(s.p50), Seconds(s.p95),
                   Seconds(s.p99), Bytes(s.read_bps), Bytes(s.write_bps)});
  }
  if (http.size() > 1) PrintRows(http, out);
  if (http.size() > 1 && tcp.size() > 1) out << "\n";
  if (tcp.size() > 1 || http.size() == 1) PrintRows(tcp, out);
  if (http.size() == 1 && tcp.size() == 1) {
    out << "(no connections seen" << (filter.empty() ? "" : " for " + filter) << ")\n";
  }
  if (std::any_of(stats.begin(), stats.end(),
                  [&](const WorkloadStat& s) { return s.from_source && Matches(s, filter); })) {
    out << "* not served by a ztunnel (not enrolled): seen from its callers' side\n";
  }
}

namespace {

struct StatFlags {
  std::vector<StatTarget> targets;
  double window = 5;
  bool json = false;
  std::string filter;
  MeshRef mesh;
};

std::unique_ptr<CLI::App> StatApp(StatFlags& f) {
  auto app = std::make_unique<CLI::App>(
      "Golden signals per destination workload from every ztunnel's metrics: share of\n"
      "mTLS connections, success rate, connections per second, connection duration\n"
      "p50/p95/p99, bytes per second; for HTTP workloads (request metrics) requests:\n"
      "success rate (non-5xx), requests per second, request latency p50/p95/p99.\n"
      "Two readings --window apart (0: totals since start).",
      "weftctl stat");
  app->add_option("NS|NS/WORKLOAD", f.filter, "only this namespace or workload");
  AddMeshRefFlags(*app, &f.mesh);
  AddTargetFlag(*app, &f.targets, "metrics");
  app->add_option_function<std::string>(
         "--window",
         [&f](const std::string& v) {
           absl::Duration d;
           if (v == "0") {
             f.window = 0;
           } else if (absl::ParseDuration(v, &d) && d >= absl::ZeroDuration()) {
             f.window = absl::ToDoubleSeconds(d);
           } else {
             throw CLI::ValidationError("--window",
                                        "\"" + v + "\" is not a duration like 5s or 500ms");
           }
         },
         "measurement window (default 5s; 0 = totals)")
      ->type_name("D");
  app->add_flag("--json", f.json, "print JSON instead of a table");
  return app;
}

}  // namespace

absl::StatusOr<std::vector<MetricSample>> ScrapeZtunnels(const std::vector<StatTarget>& targets) {
  std::vector<MetricSample> all;
  for (const StatTarget& t : targets) {
    auto opened = OpenNetns(t.netns);
    if (!opened.ok()) {
      return absl::UnavailableError(
          absl::StrCat("node ", t.node, ": ", opened.status().message(), " (is the mesh up?)"));
    }
    UniqueFd ns = std::move(*opened);
    WEFT_ASSIGN_OR_RETURN(SockAddr addr, SockAddr::Parse(t.addr));
    auto body = HttpGet(addr, "/metrics", ns.valid() ? ns.get() : -1, nullptr, 5000);
    if (!body.ok()) {
      return absl::UnavailableError(absl::StrCat("node ", t.node, ": ztunnel metrics at ", t.addr,
                                                 ": ", body.status().message()));
    }
    for (auto& s : ParseSamples(*body, "weft_tcp_connection_duration_seconds")) {
      all.push_back(std::move(s));
    }
    for (auto& s : ParseSamples(*body, "istio_tcp_")) all.push_back(std::move(s));
    for (auto& s : ParseSamples(*body, kRequests)) all.push_back(std::move(s));
    for (auto& s : ParseSamples(*body, absl::StrCat(kRequestDuration, "_bucket"))) {
      all.push_back(std::move(s));
    }
  }
  return all;
}

void AddTargetFlag(CLI::App& app, std::vector<StatTarget>* targets, std::string_view endpoint) {
  app.add_option_function<std::vector<std::string>>(
         "--target",
         [targets](const std::vector<std::string>& values) {
           for (const std::string& v : values) {
             auto t = ParseStatTarget(v);
             if (!t.ok()) throw CLI::ValidationError("--target", std::string(t.status().message()));
             targets->push_back(*t);
           }
         },
         absl::StrCat("a ztunnel ", Av(endpoint),
                      " endpoint (repeatable; instead of the local mesh's); NETNS is a\n"
                      "network namespace path (omit it with the @ for the current one)"))
      ->type_name("NODE=NETNS@ADDR:PORT")
      ->allow_extra_args(false);
}

bool FillLocalTargets(std::vector<StatTarget>& targets, const MeshRef& mesh, bool admin,
                      std::string_view command, std::ostream& err) {
  if (!targets.empty()) return true;
  auto local = admin ? LocalZtunnelAdmins(mesh) : LocalZtunnelMetrics(mesh);
  if (!local.ok()) {
    err << "weftctl " << command << ": " << local.status().message()
        << "\n(start one with weftctl up, or name ztunnels with --target "
           "NODE=NETNS@ADDR:PORT)\n";
    return false;
  }
  for (const NetnsEndpoint& e : *local) targets.push_back({e.label, e.netns, e.addr});
  return true;
}

nlohmann::json StatJson(const WorkloadStat& s, double window_seconds) {
  auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  nlohmann::json w = {{"namespace", s.ns},
                      {"workload", s.workload},
                      {"connections", s.conns},
                      {"success_rate", s.success_rate},
                      {"connections_per_second", s.rate},
                      {"p50_seconds", num(s.p50)},
                      {"p95_seconds", num(s.p95)},
                      {"p99_seconds", num(s.p99)},
                      {"meshed", s.meshed},
                      {"read_bytes", s.read_bps},
                      {"write_bytes", s.write_bps},
                      {"seen_from_source_only", s.from_source},
                      {"window_seconds", window_seconds},
                      {"protocol", s.http ? "http" : "tcp"}};
  if (s.http) {
    w["requests"] = s.requests;
    w["requests_per_second"] = s.rps;
    w["request_success_rate"] = s.request_success_rate;
    w["request_p50_seconds"] = num(s.req_p50);
    w["request_p95_seconds"] = num(s.req_p95);
    w["request_p99_seconds"] = num(s.req_p99);
  }
  return w;
}

int StatMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  StatFlags f;
  if (auto rc = ParseCommand(*StatApp(f), args, out, err)) return *rc;
  if (!FillLocalTargets(f.targets, f.mesh, /*admin=*/false, "stat", err)) return kExitFailure;
  std::vector<MetricSample> before;
  if (f.window > 0) {
    auto b = ScrapeZtunnels(f.targets);
    if (!b.ok()) {
      err << "weftctl stat: " << b.status().message() << "\n";
      return kExitFailure;
    }
    before = std::move(*b);
    std::this_thread::sleep_for(std::chrono::duration<double>(f.window));
  }
  auto after = ScrapeZtunnels(f.targets);
  if (!after.ok()) {
    err << "weftctl stat: " << after.status().message() << "\n";
    return kExitFailure;
  }
  auto stats = ComputeStats(before, *after, f.window);
  if (f.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const WorkloadStat& s : stats) {
      if (Matches(s, f.filter)) j.push_back(StatJson(s, f.window));
    }
    out << j.dump(2) << "\n";
  } else {
    PrintStatTable(stats, f.filter, f.window, out);
  }
  return kExitOk;
}

}  // namespace weft::cli
