// `weftctl dashboard`'s JSON API: pure functions from what the mesh reports (weftd's /status and
// /config_dump documents, the ztunnels' metric samples) to the documents the page reads. The
// server (server.h) calls them on each reading; tests call them on recorded inputs.
//
// Documents (every number the page shows comes from here):
//   overview  nodes (capture mode, config versions), namespaces (enrolled or not), pods (node,
//             IP, SPIFFE identity, enrolled or not and why), services
//   graph     workloads and Services as nodes; edges source -> destination workload ("edges")
//             and, for the view with Service nodes, source -> Service -> destination workload
//             ("service_edges", from the metrics' destination_service labels), each with its
//             security (mutual_tls, same_node, plaintext or mixed), rate and denials
//   signals   golden signals per workload, per Service and per edge, as `weftctl stat` computes
//             them (ComputeStats over the same samples)
//   health    rejected objects, certificate expiries and config versions per node, the
//             policies, routes and traffic policies that apply to each workload, and the routes
//             and traffic policies of each Service
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/scrape/scrape.h"
#include "nlohmann/json.hpp"

namespace weft::cli::dashboard {

// A node's capture mode as its agent chose it (from the agent's probe).
struct NodeCapture {
  std::string mode;    // ebpf | iptables | none | "" (unknown)
  std::string reason;  // the probe's words, when known
};

// One mesh-wide configuration from weftd's /config_dump of every node (each node gets the
// policies of its own workloads only): the union of their lists, first seen wins.
nlohmann::json MergeNodeConfigs(const std::vector<nlohmann::json>& configs);

// Service node ids: "svc:NS/NAME" (a workload's is "NS/NAME", the unmeshed callers' "unknown").
inline constexpr char kServicePrefix[] = "svc:";

// Which Service a ztunnel metric sample's traffic was addressed to: its destination_service_name
// and _namespace labels, or (the duration histogram carries only the FQDN) the Service whose
// hostname is its destination_service, from other samples or weftd's config.
class ServiceNames {
 public:
  ServiceNames(const std::vector<MetricSample>& samples, const nlohmann::json& config);
  static std::string Id(const std::string& ns, const std::string& name);
  // "svc:NS/NAME", or "" when the traffic was addressed to no Service (a pod's own address).
  std::string Of(const MetricSample& s) const;

 private:
  std::map<std::string, std::string> by_host_;  // FQDN -> id
};

// `status` is weftd's /status, `config` the merged /config_dump of every node.
nlohmann::json OverviewJson(const nlohmann::json& status, const nlohmann::json& config,
                            const std::map<std::string, NodeCapture>& capture);

// The service graph between two readings `window_seconds` apart (`before` empty: totals).
// `config` (may be null) names the workloads that have no traffic yet and which are enrolled.
nlohmann::json GraphJson(const std::vector<MetricSample>& before,
                         const std::vector<MetricSample>& after, double window_seconds,
                         const nlohmann::json& config);

// Golden signals per workload ("workloads", each as `weftctl stat --json` prints it) and per
// edge ("edges": the destination's stats counting only that source's traffic), over the window,
// and "totals" since the ztunnels started (as `weftctl stat --window 0`). Per Service
// ("services", "service_totals": the traffic addressed to it, whichever workload served it) and
// per edge of the graph with Service nodes ("service_edges", ids as the graph's). `config` (may
// be null) names the Services' hostnames.
nlohmann::json SignalsJson(const std::vector<MetricSample>& before,
                           const std::vector<MetricSample>& after, double window_seconds,
                           const nlohmann::json& config = nullptr);

// Policies per workload ("policies"), routes and traffic policies per Service
// ("service_policies", by "NS/NAME"), rejected objects, certificates (with seconds left at `now`)
// and config versions per node.
nlohmann::json HealthJson(const nlohmann::json& status, const nlohmann::json& config,
                          absl::Time now);

// {"error": message, "source": what failed, "hint": what to do}.
nlohmann::json ErrorJson(const absl::Status& st, const std::string& source);

}  // namespace weft::cli::dashboard
