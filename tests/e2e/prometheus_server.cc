#include "tests/e2e/prometheus_server.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/net.h"
#include "common/scrape/scrape.h"
#include "common/status.h"

namespace weft::e2e {
namespace {

std::string UrlEncode(const std::string& s) {
  CURL* c = curl_easy_init();
  char* e = curl_easy_escape(c, s.data(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  curl_easy_cleanup(c);
  return out;
}

bool InPath(const std::string& bin) {
  if (bin.find('/') != std::string::npos) return ::access(bin.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (::access((dir + "/" + bin).c_str(), X_OK) == 0) return true;
  }
  return false;
}

double ParseValue(const nlohmann::json& pair) {
  // [ <unix time>, "<value>" ]; "NaN", "+Inf" as strings.
  double v = 0;
  if (pair.is_array() && pair.size() == 2 && pair[1].is_string()) {
    const std::string s = pair[1].get<std::string>();
    if (!absl::SimpleAtod(s, &v)) v = std::nan("");
  }
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrometheusServer>> PrometheusServer::Start(Options opts) {
  if (!InPath(opts.binary)) {
    return absl::NotFoundError(absl::StrCat("Prometheus server \"", opts.binary,
                                            "\" not found: install Debian's prometheus package "
                                            "(bash scripts/deps.sh does)"));
  }
  if (opts.work_dir.empty() || opts.listen.empty()) {
    return absl::InvalidArgumentError("PrometheusServer: work_dir and listen are required");
  }
  std::unique_ptr<PrometheusServer> p(new PrometheusServer());
  p->opts_ = opts;
  p->log_path_ = opts.work_dir + "/prometheus.log";
  const std::string interval = absl::StrCat(opts.scrape_interval.count(), "ms");
  YAML::Emitter y;
  y << YAML::BeginMap << YAML::Key << "global" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "scrape_interval" << YAML::Value << interval;
  y << YAML::Key << "scrape_timeout" << YAML::Value << interval;
  y << YAML::Key << "evaluation_interval" << YAML::Value << interval << YAML::EndMap;
  y << YAML::Key << "scrape_configs" << YAML::Value << YAML::BeginSeq;
  for (const ScrapeJob& j : opts.jobs) {
    y << YAML::BeginMap << YAML::Key << "job_name" << YAML::Value << j.name;
    y << YAML::Key << "static_configs" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
    y << YAML::Key << "targets" << YAML::Value << YAML::Flow << j.targets;
    if (!j.labels.empty()) y << YAML::Key << "labels" << YAML::Value << j.labels;
    y << YAML::EndMap << YAML::EndSeq << YAML::EndMap;
  }
  y << YAML::EndSeq << YAML::EndMap;
  const std::string config = opts.work_dir + "/prometheus.yml";
  {
    std::ofstream f(config);
    f << y.c_str() << "\n";
    if (!f) return absl::InternalError("cannot write " + config);
  }
  std::vector<std::string> argv = {opts.binary, "--config.file=" + config,
                                   "--storage.tsdb.path=" + opts.work_dir + "/tsdb",
                                   "--web.listen-address=" + opts.listen, "--log.level=warn",
                                   // Tests query what was just scraped: no lookback surprises.
                                   "--query.lookback-delta=15s"};
  WEFT_ASSIGN_OR_RETURN(p->process_, testbed::Spawn(opts.netns, argv, p->log_path_));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  absl::Status last = absl::UnavailableError("not started");
  while (std::chrono::steady_clock::now() < deadline) {
    if (!p->process_.Alive()) {
      return absl::InternalError(
          absl::StrCat("prometheus exited during start-up; its log:\n", p->Log()));
    }
    auto r = p->Get("/-/ready");
    if (r.ok()) return p;
    last = r.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("prometheus not ready after 30 s (", last.message(), "); its log:\n", p->Log()));
}

PrometheusServer::~PrometheusServer() {
  if (process_.valid()) process_.Terminate(std::chrono::seconds(5));
}

std::string PrometheusServer::Log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

absl::StatusOr<std::string> PrometheusServer::Get(const std::string& path_and_query) const {
  UniqueFd ns;
  if (!opts_.netns.empty()) {
    const std::string path = testbed::NetnsPath(opts_.netns);
    ns = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) {
      return absl::UnavailableError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
    }
  }
  WEFT_ASSIGN_OR_RETURN(SockAddr addr, SockAddr::Parse(opts_.listen));
  int status = 0;
  WEFT_ASSIGN_OR_RETURN(std::string body,
                        HttpGet(addr, path_and_query, ns.valid() ? ns.get() : -1, &status, 10000));
  if (status < 200 || status > 299) {
    // The API answers errors as JSON with errorType and error.
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error")) {
      return absl::InvalidArgumentError(absl::StrCat("prometheus ", path_and_query, ": ",
                                                     j.value("errorType", ""), ": ",
                                                     j.value("error", "")));
    }
    return absl::UnavailableError(
        absl::StrCat("prometheus ", path_and_query, ": HTTP ", status, ": ", body));
  }
  return body;
}

absl::StatusOr<std::vector<PromSample>> PrometheusServer::Query(const std::string& promql) const {
  WEFT_ASSIGN_OR_RETURN(std::string body, Get("/api/v1/query?query=" + UrlEncode(promql)));
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || j.value("status", "") != "success" || !j.contains("data")) {
    return absl::InternalError(absl::StrCat("prometheus query ", promql, ": bad answer ", body));
  }
  const auto& data = j["data"];
  std::vector<PromSample> out;
  const std::string type = data.value("resultType", "");
  if (type == "scalar") {
    out.push_back({{}, ParseValue(data["result"])});
  } else if (type == "vector") {
    for (const auto& e : data["result"]) {
      PromSample s;
      for (const auto& [k, v] : e["metric"].items()) s.labels[k] = v.get<std::string>();
      s.value = ParseValue(e["value"]);
      out.push_back(std::move(s));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("prometheus query ", promql, ": result type ",
                                                   type,
                                                   " (want an instant "
                                                   "vector or scalar)"));
  }
  return out;
}

absl::StatusOr<double> PrometheusServer::Sum(const std::string& promql) const {
  WEFT_ASSIGN_OR_RETURN(auto v, Query(promql));
  double sum = 0;
  for (const PromSample& s : v) sum += s.value;
  return sum;
}

absl::StatusOr<std::vector<PromSample>> PrometheusServer::WaitFor(
    const std::string& promql, const std::function<bool(const std::vector<PromSample>&)>& pred,
    std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last = "no answer";
  while (true) {
    auto v = Query(promql);
    if (v.ok()) {
      if (pred(*v)) return v;
      std::ostringstream os;
      os << v->size() << " series:";
      for (const PromSample& s : *v) {
        os << " {";
        for (const auto& [k, val] : s.labels) os << k << "=" << val << ",";
        os << "} " << s.value << ";";
      }
      last = os.str();
    } else {
      if (v.status().code() == absl::StatusCode::kInvalidArgument) return v.status();  // PromQL
      last = std::string(v.status().message());
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return absl::DeadlineExceededError(absl::StrCat("prometheus: ", promql, " not as expected after ",
                                                  timeout.count(), " ms; last: ", last));
}

absl::StatusOr<double> PrometheusServer::WaitForValue(const std::string& promql,
                                                      const std::function<bool(double)>& pred,
                                                      std::chrono::milliseconds timeout) const {
  WEFT_ASSIGN_OR_RETURN(auto v, WaitFor(
                                    promql,
                                    [&](const std::vector<PromSample>& r) {
                                      double sum = 0;
                                      for (const PromSample& s : r) sum += s.value;
                                      return pred(sum);
                                    },
                                    timeout));
  double sum = 0;
  for (const PromSample& s : v) sum += s.value;
  return sum;
}

absl::Status PrometheusServer::WaitTargetsUp(std::chrono::milliseconds timeout) const {
  size_t want = 0;
  for (const ScrapeJob& j : opts_.jobs) want += j.targets.size();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (true) {
    auto body = Get("/api/v1/targets?state=active");
    if (body.ok()) {
      auto j = nlohmann::json::parse(*body, nullptr, false);
      size_t up = 0;
      last.clear();
      if (j.is_object() && j.contains("data")) {
        for (const auto& t : j["data"]["activeTargets"]) {
          if (t.value("health", "") == "up") {
            ++up;
          } else {
            absl::StrAppend(&last, t.value("scrapeUrl", "?"), ": ", t.value("health", "?"), " ",
                            t.value("lastError", ""), "; ");
          }
        }
      }
      if (up == want) return absl::OkStatus();
    } else {
      last = std::string(body.status().message());
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return absl::DeadlineExceededError("prometheus targets not all up: " + last);
}

}  // namespace weft::e2e
