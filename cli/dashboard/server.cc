#include "cli/dashboard/server.h"

#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file.h"
#include "common/status.h"

namespace weft::cli::dashboard {
namespace {

using json = nlohmann::json;

constexpr double kTapIdleSeconds = 30;  // stop reading the taps when nobody asked this long
constexpr size_t kTapKept = 1000;

std::string ContentType(const std::string& path) {
  static const std::map<std::string, std::string> kTypes = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".png", "image/png"},
      {".svg", "image/svg+xml"},
      {".ico", "image/x-icon"}};
  auto dot = path.rfind('.');
  auto it = dot == std::string::npos ? kTypes.end() : kTypes.find(path.substr(dot));
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

double UnixSeconds(absl::Time t) {
  return static_cast<double>(absl::ToUnixMicros(t)) / 1e6;
}

HttpReply JsonReply(const json& doc) {
  HttpReply r;
  r.status = doc.is_object() && doc.contains("error") ? 503 : 200;
  r.body = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  r.headers = {{"Cache-Control", "no-store"}};
  return r;
}

// One point of a time series: [unix seconds, rate, success, p50, p95, p99] from a stat.
json Point(double t, const json& stat) {
  const bool http = stat.value("protocol", "") == "http";
  auto get = [&](const char* k) { return stat.contains(k) ? stat[k] : json(nullptr); };
  return {t,
          http ? get("requests_per_second") : get("connections_per_second"),
          http ? get("request_success_rate") : get("success_rate"),
          http ? get("request_p50_seconds") : get("p50_seconds"),
          http ? get("request_p95_seconds") : get("p95_seconds"),
          http ? get("request_p99_seconds") : get("p99_seconds")};
}

}  // namespace

struct Dashboard::Impl {
  explicit Impl(DashboardOptions opts) : o(std::move(opts)) {}

  void Collect();
  // weftd's configuration of every node of `status`, merged.
  absl::StatusOr<json> Configs(const json& status);
  void CollectTap(absl::Time now);
  // The reading `window` before now (local sources: the oldest kept one within the window).
  std::pair<std::vector<MetricSample>, double> Before(absl::Time now);
  void AddSeries(double t, const json& signals);
  HttpReply Static(const std::string& path) const;
  HttpReply Tap(const std::map<std::string, std::string>& params);
  HttpReply Series(const std::map<std::string, std::string>& params);

  DashboardOptions o;
  std::unique_ptr<AdminServer> http;

  // Collector thread only.
  std::deque<std::pair<absl::Time, std::vector<MetricSample>>> readings;

  std::mutex mu;  // guards everything below
  std::condition_variable cv;
  bool stopping = false;
  std::thread thread;
  json meta = json::object(), overview, graph, signals, health;
  std::map<std::string, std::deque<json>> series;  // id -> points, oldest first
  std::deque<json> tap_events;                     // each with "seq"
  uint64_t tap_next = 0;
  json tap_error;
  absl::Time tap_wanted = absl::InfinitePast();
};

std::pair<std::vector<MetricSample>, double> Dashboard::Impl::Before(absl::Time now) {
  const absl::Time want = now - absl::Seconds(o.window_seconds);
  if (o.source->past_readable()) {
    auto b = o.source->Metrics(want);
    if (b.ok()) return {std::move(*b), o.window_seconds};
    return {{}, 0};
  }
  // The newest reading at least a window old, else the oldest (shortly after start).
  while (readings.size() > 1 && readings[1].first <= want) readings.pop_front();
  if (readings.empty()) return {{}, 0};
  return {readings.front().second, absl::ToDoubleSeconds(now - readings.front().first)};
}

absl::StatusOr<json> Dashboard::Impl::Configs(const json& status) {
  std::vector<json> configs;
  for (const json& n : status.value("nodes", json::array())) {
    auto c = o.source->Weftd("/config_dump?node=" + n.value("name", ""));
    if (!c.ok()) return c.status();
    configs.push_back(std::move(*c));
  }
  if (configs.empty()) {
    return absl::FailedPreconditionError("weftd knows no node yet (no ztunnel has connected)");
  }
  return MergeNodeConfigs(configs);
}

void Dashboard::Impl::Collect() {
  const absl::Time now = absl::Now();
  json errors = json::array();
  auto status = o.source->Weftd("/status");
  absl::StatusOr<json> config = absl::UnavailableError("weftd's status is unavailable");
  if (status.ok()) config = Configs(*status);
  const json no_config = nullptr;
  json ov, he;
  if (!status.ok() || !config.ok()) {
    ov = ErrorJson(status.ok() ? config.status() : status.status(), "weftd");
    errors.push_back(ov);
  } else {
    ov = OverviewJson(*status, *config, o.source->Capture());
  }
  he = status.ok() ? HealthJson(*status, config.ok() ? *config : no_config, now) : ov;
  auto after = o.source->Metrics(now);
  json gr, si;
  double window = 0;
  if (after.ok()) {
    auto [before, w] = Before(now);
    window = w;
    gr = GraphJson(before, *after, window, config.ok() ? *config : no_config);
    si = SignalsJson(before, *after, window, config.ok() ? *config : no_config);
    if (!o.source->past_readable()) readings.emplace_back(now, std::move(*after));
  } else {
    gr = ErrorJson(after.status(), o.source->metrics_source());
    si = gr;
    errors.push_back(gr);
  }
  CollectTap(now);
  std::lock_guard<std::mutex> lock(mu);
  overview = std::move(ov);
  health = std::move(he);
  graph = std::move(gr);
  if (!si.contains("error")) AddSeries(UnixSeconds(now), si);
  signals = std::move(si);
  meta = json{{"source", o.source->Describe()},
              {"updated_unix", UnixSeconds(now)},
              {"window_seconds", window},
              {"interval_seconds", o.interval.count() / 1000.0},
              {"errors", std::move(errors)}};
}

void Dashboard::Impl::CollectTap(absl::Time now) {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (absl::ToDoubleSeconds(now - tap_wanted) > kTapIdleSeconds) return;
  }
  auto events = o.source->Tap();
  std::lock_guard<std::mutex> lock(mu);
  if (!events.ok()) {
    tap_error = ErrorJson(events.status(), "tap");
    return;
  }
  tap_error = nullptr;
  for (json& e : *events) {
    e["seq"] = tap_next++;
    tap_events.push_back(std::move(e));
  }
  while (tap_events.size() > kTapKept) tap_events.pop_front();
}

void Dashboard::Impl::AddSeries(double t, const json& doc) {
  auto add = [&](const std::string& id, const json& stat) {
    auto& points = series[id];
    points.push_back(Point(t, stat));
    while (!points.empty() && points.front()[0].get<double>() < t - o.history_seconds) {
      points.pop_front();
    }
  };
  for (const json& w : doc["workloads"]) {
    add(w.value("namespace", "") + "/" + w.value("workload", ""), w);
  }
  for (const json& e : doc["edges"]) add(e.value("id", ""), e);
  // Services and the edges through them (a direct edge of that view has its workload edge's id).
  for (const json& s : doc.value("services", json::array())) add(s.value("id", ""), s);
  for (const json& e : doc.value("service_edges", json::array())) {
    if (e.value("kind", "") != "workload") add(e.value("id", ""), e);
  }
}

HttpReply Dashboard::Impl::Series(const std::map<std::string, std::string>& params) {
  double since = 0;
  if (auto it = params.find("since"); it != params.end())
    (void)absl::SimpleAtod(it->second, &since);
  json out = json::object();
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [id, points] : series) {
    json list = json::array();
    for (const json& p : points) {
      if (p[0].get<double>() > since) list.push_back(p);
    }
    out[id] = std::move(list);
  }
  return JsonReply(
      {{"series", std::move(out)}, {"columns", {"t", "rate", "success", "p50", "p95", "p99"}}});
}

HttpReply Dashboard::Impl::Tap(const std::map<std::string, std::string>& params) {
  uint64_t since = 0;
  if (auto it = params.find("since"); it != params.end())
    (void)absl::SimpleAtoi(it->second, &since);
  std::lock_guard<std::mutex> lock(mu);
  tap_wanted = absl::Now();
  if (!tap_error.is_null()) return JsonReply(tap_error);
  json events = json::array();
  for (const json& e : tap_events) {
    if (e["seq"].get<uint64_t>() >= since) events.push_back(e);
  }
  return JsonReply({{"next", tap_next},
                    {"events", std::move(events)},
                    {"note",
                     "requests on connections ztunnel parses as HTTP (workloads with L7 policy, "
                     "Services declared HTTP)"}});
}

HttpReply Dashboard::Impl::Static(const std::string& path) const {
  HttpReply r;
  if (o.web_root.empty()) {
    r.status = 404;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "this dashboard serves its API only (the page was not built)\n";
    return r;
  }
  std::string rel = path == "/" ? "/index.html" : path;
  if (rel.find("..") != std::string::npos || rel.find('\0') != std::string::npos) {
    r.status = 400;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "bad path\n";
    return r;
  }
  auto body = ReadFile(o.web_root + rel);
  if (!body.ok()) {
    r.status = 404;
    r.content_type = "text/plain; charset=utf-8";
    r.body = absl::StrCat("not found: ", path, "\n");
    return r;
  }
  r.content_type = ContentType(rel);
  r.body = std::move(*body);
  return r;
}

Dashboard::Dashboard(DashboardOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {
  const json starting = {{"error", "no reading taken yet"}, {"source", "dashboard"}};
  impl_->overview = impl_->graph = impl_->signals = impl_->health = starting;
}

Dashboard::~Dashboard() {
  Stop();
}

void Dashboard::CollectOnce() {
  impl_->Collect();
}

HttpReply Dashboard::Handle(const std::string& path,
                            const std::map<std::string, std::string>& params) {
  Impl& i = *impl_;
  if (!absl::StartsWith(path, "/api/")) return i.Static(path);
  if (path == "/api/tap") return i.Tap(params);
  if (path == "/api/series") return i.Series(params);
  std::lock_guard<std::mutex> lock(i.mu);
  if (path == "/api/meta") return JsonReply(i.meta);
  if (path == "/api/overview") return JsonReply(i.overview);
  if (path == "/api/graph") return JsonReply(i.graph);
  if (path == "/api/signals") return JsonReply(i.signals);
  if (path == "/api/health") return JsonReply(i.health);
  HttpReply r = JsonReply({{"error", "no such API: " + path}, {"source", "dashboard"}});
  r.status = 404;
  return r;
}

absl::Status Dashboard::Start() {
  Impl& i = *impl_;
  i.Collect();
  AdminOptions ao;
  ao.admin_addr = i.o.listen;
  ao.admin_only = true;
  ao.component = "weftctl dashboard";
  ao.fallback = [this](const std::string& path, const std::map<std::string, std::string>& q) {
    return std::optional<HttpReply>(Handle(path, q));
  };
  i.http = std::make_unique<AdminServer>(std::move(ao));
  WEFT_RETURN_IF_ERROR(i.http->Start());
  i.thread = std::thread([&i] {
    std::unique_lock<std::mutex> lock(i.mu);
    while (!i.cv.wait_for(lock, i.o.interval, [&i] { return i.stopping; })) {
      lock.unlock();
      i.Collect();
      lock.lock();
    }
  });
  return absl::OkStatus();
}

void Dashboard::Stop() {
  Impl& i = *impl_;
  if (i.http) i.http->Stop();
  {
    std::lock_guard<std::mutex> lock(i.mu);
    i.stopping = true;
  }
  i.cv.notify_all();
  if (i.thread.joinable()) i.thread.join();
}

SockAddr Dashboard::addr() const {
  return impl_->http ? impl_->http->admin_addr() : SockAddr{};
}

absl::StatusOr<std::string> FindWebRoot(const std::string& flag) {
  std::vector<std::string> candidates;
  if (!flag.empty()) {
    candidates = {flag};
  } else {
    if (const char* env = std::getenv("WEFT_DASHBOARD_WEB")) candidates.push_back(env);
#ifdef WEFT_DASHBOARD_BUILD_DIR
    candidates.push_back(WEFT_DASHBOARD_BUILD_DIR);
#endif
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back((exe.parent_path() / "../share/weft/dashboard").string());
  }
  for (const std::string& c : candidates) {
    if (std::filesystem::exists(c + "/index.html")) return c;
  }
  return absl::NotFoundError(
      absl::StrCat("the dashboard's page is not built (looked for index.html in: ",
                   absl::StrJoin(candidates, ", "),
                   "): build it with `ninja -C build weft_dashboard_web` (needs node and npm: bash "
                   "scripts/deps.sh), or point --web-root at a built copy"));
}

}  // namespace weft::cli::dashboard
