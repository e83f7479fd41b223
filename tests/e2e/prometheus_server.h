// A real Prometheus server (Debian's `prometheus`) for the end-to-end suite: started inside a
// network namespace the test created (so its fixed listen port never touches the host), scraping
// the given targets every `scrape_interval`, queried through its HTTP API (/api/v1/query).
//
//   PrometheusServer::Options o;
//   o.netns = bed.NodeNetns(0); o.listen = "10.249.0.1:9090"; o.work_dir = dir;
//   o.jobs = {{"ztunnel", {"10.249.0.1:15020", "10.249.0.2:15020"}}};
//   auto prom = PrometheusServer::Start(o);
//   auto v = (*prom)->WaitForValue("sum(istio_tcp_connections_opened_total)",
//                                  [](double x) { return x > 0; }, 20s);
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/testbed/testbed.h"
#include "common/unique_fd.h"

namespace weft::e2e {

struct ScrapeJob {
  std::string name;                           // job label
  std::vector<std::string> targets;           // host:port
  std::map<std::string, std::string> labels;  // added to every series of the job
};

// One element of an instant-vector result.
struct PromSample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

class PrometheusServer {
 public:
  struct Options {
    std::string binary = "prometheus";  // looked up in PATH without a '/'
    std::string netns;                  // netns name (testbed) to run in; "" = caller's
    std::string listen;                 // ip:port inside that netns
    std::string work_dir;               // config, TSDB and log go here
    std::vector<ScrapeJob> jobs;
    std::chrono::milliseconds scrape_interval{1000};
  };

  // Writes the config, starts the server, waits until /-/ready answers (at most 30 s). NotFound
  // with an install hint when the binary is missing.
  static absl::StatusOr<std::unique_ptr<PrometheusServer>> Start(Options opts);
  ~PrometheusServer();  // stops the server

  // GET /api/v1/query?query=... : the instant vector (or a scalar as one sample without labels).
  // An error carries Prometheus's errorType/error (e.g. a PromQL syntax error).
  absl::StatusOr<std::vector<PromSample>> Query(const std::string& promql) const;
  // Sum of the values Query returns (0 for an empty vector).
  absl::StatusOr<double> Sum(const std::string& promql) const;
  // Polls Query every 250 ms until `pred` holds for the result, or `timeout`; DeadlineExceeded
  // names the query and the last result.
  absl::StatusOr<std::vector<PromSample>> WaitFor(
      const std::string& promql, const std::function<bool(const std::vector<PromSample>&)>& pred,
      std::chrono::milliseconds timeout) const;
  // The same over Sum.
  absl::StatusOr<double> WaitForValue(const std::string& promql,
                                      const std::function<bool(double)>& pred,
                                      std::chrono::milliseconds timeout) const;
  // Waits until every configured target's last scrape succeeded (/api/v1/targets health "up").
  absl::Status WaitTargetsUp(std::chrono::milliseconds timeout) const;

  const std::string& log_path() const { return log_path_; }
  std::string Log() const;  // the server's log, for failure messages

 private:
  PrometheusServer() = default;
  absl::StatusOr<std::string> Get(const std::string& path_and_query) const;

  Options opts_;
  std::string log_path_;
  testbed::Process process_;
};

}  // namespace weft::e2e
