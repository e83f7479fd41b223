// Where `weftctl dashboard` reads the mesh: a local mesh started by `weftctl up` (weftd's admin
// endpoint and every ztunnel's /metrics and /tap, inside their network namespaces, as
// `weftctl status`, `stat` and `tap` read them), or a cluster (a Prometheus server that scrapes
// the ztunnels, and weftd's admin API). The interface is the test seam: unit tests give recorded
// documents and metric texts.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/dashboard/api.h"
#include "cli/mesh_ref.h"
#include "cli/tap.h"
#include "common/scrape/scrape.h"
#include "nlohmann/json.hpp"

namespace weft::cli::dashboard {

// Called from one thread (the dashboard's collector).
class MeshSource {
 public:
  virtual ~MeshSource() = default;
  // "local mesh \"weft\"" or "Prometheus at URL": shown in the page's header.
  virtual std::string Describe() const = 0;
  // A JSON document from weftd's admin endpoint ("/status", "/config_dump?node=N").
  virtual absl::StatusOr<nlohmann::json> Weftd(const std::string& path) = 0;
  // The ztunnels' counters (the samples ComputeStats reads) as they were at `at`; a source
  // that can only read the present (`past_readable()` false) ignores `at`.
  virtual absl::StatusOr<std::vector<MetricSample>> Metrics(absl::Time at) = 0;
  virtual bool past_readable() const = 0;
  // Which part failed when Metrics() fails: "metrics" (ztunnels) or "prometheus".
  virtual std::string metrics_source() const = 0;
  // Each node's capture mode as its agent chose it (unknown nodes are left out).
  virtual std::map<std::string, NodeCapture> Capture() = 0;
  // The HTTP requests the ztunnels saw since the previous call (weftctl tap's events).
  virtual absl::StatusOr<std::vector<nlohmann::json>> Tap() = 0;
};

// A mesh started by `weftctl up` (re-read on every call: it may go down and come back).
std::unique_ptr<MeshSource> LocalSource(const MeshRef& mesh, long timeout_ms);

// A cluster: Prometheus at `prometheus_url` (http://host:port), weftd's admin at `weftd_url`.
std::unique_ptr<MeshSource> PrometheusSource(const std::string& prometheus_url,
                                             const std::string& weftd_url, long timeout_ms);

// The samples of a Prometheus instant-query answer (/api/v1/query, resultType vector), as
// ParseSamples gives them from a /metrics text.
absl::StatusOr<std::vector<MetricSample>> ParsePrometheusVector(const std::string& body);

// The capture mode the agent last chose, from its JSON log ("capture mode chosen" line).
NodeCapture CaptureFromAgentLog(const std::string& log);

}  // namespace weft::cli::dashboard
