#include "cli/dashboard/sources.h"

#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/stat.h"
#include "cli/up/state.h"
#include "common/file.h"
#include "common/status.h"

namespace weft::cli::dashboard {
namespace {

using json = nlohmann::json;

absl::StatusOr<json> ParseJson(const std::string& body, const std::string& what) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::DataLossError(
        absl::StrCat(what, " answered something that is not JSON: ", body.substr(0, 200)));
  }
  return j;
}

// GET `url` (in `netns_fd`, -1 = ours); a non-2xx answer is an error quoting the body.
absl::StatusOr<json> GetJson(const std::string& url, int netns_fd, long timeout_ms,
                             const std::string& what) {
  int code = 0;
  auto body = HttpGetUrl(url, netns_fd, &code, timeout_ms);
  if (!body.ok()) {
    return absl::UnavailableError(absl::StrCat(what, " unreachable: ", body.status().message()));
  }
  if (code < 200 || code > 299) {
    return absl::UnavailableError(
        absl::StrCat(what, " answered HTTP ", code, ": ", body->substr(0, 300)));
  }
  return ParseJson(*body, what);
}

class Local : public MeshSource {
 public:
  Local(MeshRef mesh, long timeout_ms) : mesh_(std::move(mesh)), timeout_ms_(timeout_ms) {}

  std::string Describe() const override { return absl::StrCat("local mesh \"", mesh_.name, "\""); }

  absl::StatusOr<json> Weftd(const std::string& path) override {
    WEFT_ASSIGN_OR_RETURN(NetnsEndpoint ep, LocalWeftdAdmin(mesh_));
    WEFT_ASSIGN_OR_RETURN(UniqueFd ns, OpenNetns(ep.netns));
    return GetJson(absl::StrCat("http://", ep.addr, path), ns.valid() ? ns.get() : -1, timeout_ms_,
                   absl::StrCat("weftd's admin endpoint ", ep.addr));
  }

  absl::StatusOr<std::vector<MetricSample>> Metrics(absl::Time) override {
    WEFT_ASSIGN_OR_RETURN(std::vector<NetnsEndpoint> eps, LocalZtunnelMetrics(mesh_));
    std::vector<StatTarget> targets;
    for (const NetnsEndpoint& e : eps) targets.push_back({e.label, e.netns, e.addr});
    return ScrapeZtunnels(targets);
  }
  bool past_readable() const override { return false; }
  std::string metrics_source() const override { return "metrics"; }

  std::map<std::string, NodeCapture> Capture() override {
    std::map<std::string, NodeCapture> out;
    auto s = up::LoadMesh(up::StateRoot(mesh_.state_root), mesh_.name);
    if (!s.ok()) return out;
    for (const up::NodeState& n : s->nodes) {
      NodeCapture c = CaptureFromAgentLog(ReadFile(n.agent_log).value_or(""));
      if (c.mode.empty() && s->capture != "auto") c.mode = s->capture;
      out[n.name] = c;
    }
    return out;
  }

  absl::StatusOr<std::vector<json>> Tap() override {
    if (!tap_) {
      WEFT_ASSIGN_OR_RETURN(std::vector<NetnsEndpoint> eps, LocalZtunnelAdmins(mesh_));
      std::vector<StatTarget> targets;
      for (const NetnsEndpoint& e : eps) targets.push_back({e.label, e.netns, e.addr});
      WEFT_ASSIGN_OR_RETURN(tap_, TapReader::Open(targets));
    }
    auto events = tap_->Poll();
    if (!events.ok()) tap_.reset();  // the mesh may have restarted: reopen next time
    return events;
  }

 private:
  MeshRef mesh_;
  long timeout_ms_;
  std::unique_ptr<TapReader> tap_;
};

// Percent-encoding for a URL query value (RFC 3986 unreserved characters stay).
std::string QueryEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// Every series `weftctl stat` reads (ScrapeZtunnels), as one PromQL selector.
constexpr char kSelector[] =
    "{__name__=~\"weft_tcp_connection_duration_seconds_(bucket|count)|istio_tcp_.*"
    "|istio_requests_total|istio_request_duration_milliseconds_bucket\"}";

class Prometheus : public MeshSource {
 public:
  Prometheus(std::string url, std::string weftd, long timeout_ms)
      : url_(std::move(url)), weftd_(std::move(weftd)), timeout_ms_(timeout_ms) {
    while (!url_.empty() && url_.back() == '/') url_.pop_back();
    if (weftd_.find("://") == std::string::npos) weftd_ = "http://" + weftd_;
  }

  std::string Describe() const override { return "Prometheus at " + url_; }

  absl::StatusOr<json> Weftd(const std::string& path) override {
    return GetJson(weftd_ + path, -1, timeout_ms_, "weftd's admin API at " + weftd_);
  }

  absl::StatusOr<std::vector<MetricSample>> Metrics(absl::Time at) override {
    return Query(kSelector, at);
  }
  bool past_readable() const override { return true; }
  std::string metrics_source() const override { return "prometheus"; }

  std::map<std::string, NodeCapture> Capture() override {
    std::map<std::string, NodeCapture> out;
    auto samples = Query("weft_agent_capture_mode == 1", absl::Now());
    if (!samples.ok()) return out;
    for (const MetricSample& s : *samples) {
      std::string node;
      for (const char* k : {"node", "kubernetes_node", "instance"}) {
        auto it = s.labels.find(k);
        if (it != s.labels.end() && node.empty()) node = it->second;
      }
      auto mode = s.labels.find("mode");
      if (!node.empty() && mode != s.labels.end()) out[node].mode = mode->second;
    }
    return out;
  }

  absl::StatusOr<std::vector<json>> Tap() override {
    return absl::UnimplementedError(
        "live requests are read from each ztunnel's loopback admin endpoint: run weftctl tap "
        "on a node (or weftctl dashboard on a local mesh)");
  }

 private:
  absl::StatusOr<std::vector<MetricSample>> Query(const std::string& promql, absl::Time at) {
    std::string url = absl::StrCat(
        url_, "/api/v1/query?query=", QueryEscape(promql),
        "&time=", absl::StrFormat("%.3f", static_cast<double>(absl::ToUnixMicros(at)) / 1e6));
    int code = 0;
    auto body = HttpGetUrl(url, -1, &code, timeout_ms_);
    if (!body.ok()) {
      return absl::UnavailableError(
          absl::StrCat("Prometheus at ", url_, " unreachable: ", body.status().message()));
    }
    if (code != 200) {
      return absl::UnavailableError(absl::StrCat("Prometheus at ", url_, " answered HTTP ", code,
                                                 ": ", body->substr(0, 300)));
    }
    auto samples = ParsePrometheusVector(*body);
    if (!samples.ok()) return WithContext(samples.status(), "Prometheus at " + url_);
    return samples;
  }

  std::string url_, weftd_;
  long timeout_ms_;
};

}  // namespace

std::unique_ptr<MeshSource> LocalSource(const MeshRef& mesh, long timeout_ms) {
  return std::make_unique<Local>(mesh, timeout_ms);
}

std::unique_ptr<MeshSource> PrometheusSource(const std::string& prometheus_url,
                                             const std::string& weftd_url, long timeout_ms) {
  return std::make_unique<Prometheus>(prometheus_url, weftd_url, timeout_ms);
}

absl::StatusOr<std::vector<MetricSample>> ParsePrometheusVector(const std::string& body) {
  WEFT_ASSIGN_OR_RETURN(json j, ParseJson(body, "the query API"));
  if (j.value("status", "") != "success") {
    return absl::UnavailableError(
        absl::StrCat("query failed: ", j.value("error", body.substr(0, 200))));
  }
  const json data = j.value("data", json::object());
  if (data.value("resultType", "") != "vector") {
    return absl::DataLossError("query answered a " + data.value("resultType", "?") +
                               ", not an instant vector");
  }
  std::vector<MetricSample> out;
  for (const json& r : data.value("result", json::array())) {
    MetricSample s;
    const json metric = r.value("metric", json::object());
    for (const auto& [k, v] : metric.items()) {
      if (!v.is_string()) continue;
      if (k == "__name__") {
        s.name = v.get<std::string>();
      } else {
        s.labels[k] = v.get<std::string>();
      }
    }
    const json value = r.value("value", json::array());
    if (value.size() != 2 || !value[1].is_string() ||
        !absl::SimpleAtod(value[1].get<std::string>(), &s.value)) {
      continue;
    }
    out.push_back(std::move(s));
  }
  return out;
}

NodeCapture CaptureFromAgentLog(const std::string& log) {
  NodeCapture c;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("capture mode chosen") == std::string::npos) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || j.value("msg", "") != "capture mode chosen") continue;
    c.mode = j.value("mode", "");
    c.reason = j.value("reason", "");
  }
  return c;
}

}  // namespace weft::cli::dashboard
