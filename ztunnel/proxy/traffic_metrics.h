// The per-Service traffic state of a ztunnel (issue 15, traffic::TrafficRegistry) as Prometheus
// metrics, labelled by the TrafficPolicy ("<namespace>/<name>") and its target Service, so that
// circuit breaking and outlier ejection are visible where users look (Envoy's
// cluster.*.upstream_rq_pending_overflow, outlier_detection.ejections_* counterparts):
//   weft_traffic_overflows_total{policy,service,limit="connections|pending|requests|retries"}
//   weft_traffic_ejections_total{policy,service,detector="consecutive_5xx|consecutive_gateway"}
//   weft_traffic_ejections_overflow_total{policy,service}   refused by maxEjectionPercent
//   weft_traffic_ejections_active{policy,service}
//   weft_traffic_ejected{policy,service,endpoint}           1 while that endpoint is ejected
//   weft_traffic_retry_budget_exhausted_total{policy,service}
// Refreshed from the machines' own counters (Refresh, every second on worker 0); a policy whose
// machine was replaced starts again from its new counts (counters only move up).
//
// Thread-safety: Refresh is called from one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "ztunnel/traffic/registry.h"

namespace weft::ztunnel {

class TrafficMetrics {
 public:
  explicit TrafficMetrics(prometheus::Registry& registry);
  void Refresh(
      const absl::flat_hash_map<std::string, std::shared_ptr<const traffic::ServiceTraffic>>& all);

 private:
  // Adds what `now` has beyond what was last seen for `key` (all of it when it went down: a new
  // machine).
  void Advance(prometheus::Family<prometheus::Counter>* family,
               const std::map<std::string, std::string>& labels, uint64_t now);

  prometheus::Family<prometheus::Counter>* overflows_;
  prometheus::Family<prometheus::Counter>* ejections_;
  prometheus::Family<prometheus::Counter>* ejection_overflows_;
  prometheus::Family<prometheus::Gauge>* ejections_active_;
  prometheus::Family<prometheus::Gauge>* ejected_;
  prometheus::Family<prometheus::Counter>* budget_exhausted_;
  std::map<std::map<std::string, std::string>, uint64_t> seen_;  // by family-tagged labels
  std::map<std::map<std::string, std::string>, prometheus::Gauge*> ejected_now_;
};

}  // namespace weft::ztunnel
