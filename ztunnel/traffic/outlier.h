// Outlier detection for one Service, per source ztunnel (issue 15,
// TrafficPolicy.outlierDetection): Envoy's consecutive-5xx and consecutive-gateway-failure
// detectors with its ejection rules.
// - Report() every attempt's result for the endpoint (workload uid) that served it. A 5xx
//   counts towards consecutive5xxErrors; 502/503/504 and connect failures / resets / timeouts
//   (locally originated, counted as 503 as Envoy does without split_external_local_origin_errors)
//   count towards both counters; anything else resets both. A counter reaching its threshold
//   (0: detector off) ejects the endpoint at once, unless that would exceed maxEjectionPercent
//   (Envoy's rule: eject while ejected * 100 / endpoints < maxEjectionPercent, so one endpoint can
//   always be ejected when the percentage is above 0); such a refusal is counted as an overflow.
// - An ejection lasts baseEjectionTime x the number of times the endpoint was ejected (capped
//   at max(base, 300 s), as Envoy). Un-ejection happens in the interval sweep (Tick), every
//   `interval`; a sweep also lowers by one the ejection multiplier of an endpoint that was not
//   ejected during the interval before it.
// - Ejected endpoints get no requests: the balancer skips those for which IsEjected is true.
//
// Thread-safe (one mutex): one detector per Service shared by the workers.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "config/model/types.h"
#include "ztunnel/traffic/clock.h"

namespace weft::ztunnel::traffic {

class OutlierDetector {
 public:
  OutlierDetector(const config::OutlierDetection& cfg, TimePoint now);

  // The Service's current ready endpoints: others are forgotten; the total for the percentage.
  void SetEndpoints(const std::vector<std::string>& endpoint_uids);

  enum class Outcome { kSuccess, kError5xx, kGatewayError, kLocalFailure };
  // kGatewayError for 502/503/504, kError5xx for other 5xx, kSuccess for the rest.
  static Outcome Classify(uint16_t http_status);
  void Report(std::string_view endpoint, Outcome outcome, TimePoint now);

  bool IsEjected(std::string_view endpoint) const;
  // Runs the interval sweep when one is due (call it from a timer or on requests).
  void Tick(TimePoint now);

  struct Stats {  // Envoy's outlier_detection.* names
    uint64_t ejections_enforced_total = 0;
    uint64_t ejections_enforced_consecutive_5xx = 0;
    uint64_t ejections_enforced_consecutive_gateway_failure = 0;
    uint64_t ejections_overflow = 0;  // refused by maxEjectionPercent
    uint64_t unejections_total = 0;
    uint32_t ejections_active = 0;
  };
  Stats stats() const;
  std::vector<std::string> EjectedEndpoints() const;  // sorted

 private:
  struct Host {
    uint32_t consecutive_5xx = 0, consecutive_gateway = 0;
    uint32_t times_ejected = 0;  // the ejection-time multiplier
    bool ejected = false;
    TimePoint ejected_at{};
  };
  void MaybeEject(Host& h, bool gateway, TimePoint now);  // mu_ held
  void Sweep(TimePoint now);                              // mu_ held

  const config::OutlierDetection cfg_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Host> hosts_;
  TimePoint next_sweep_;
  Stats stats_;
};

}  // namespace weft::ztunnel::traffic
