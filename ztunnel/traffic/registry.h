// The traffic state one ztunnel keeps per TrafficPolicy across snapshots (issue 15): the
// CircuitBreaker (connectionPool), OutlierDetector (outlierDetection) and RetryBudget (retries)
// of the Service (and port) the policy targets. Counters and ejections must survive unrelated
// config changes, so Update() keeps a policy's machines while their own section is unchanged and
// replaces only those whose section changed (or drops them with the policy).
//
// Thread-safety: Update (config thread) and For (workers) may run concurrently; For returns a
// shared_ptr the caller holds while it uses the machines (each is thread-safe itself).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "ztunnel/state/snapshot.h"
#include "ztunnel/traffic/circuit_breaker.h"
#include "ztunnel/traffic/clock.h"
#include "ztunnel/traffic/outlier.h"
#include "ztunnel/traffic/retry.h"

namespace weft::ztunnel::traffic {

struct ServiceTraffic {
  SnapshotPtr snapshot;                           // keeps `policy` alive
  const config::TrafficPolicy* policy = nullptr;  // in `snapshot`
  std::shared_ptr<CircuitBreaker> breaker;        // null: no connectionPool
  std::shared_ptr<OutlierDetector> outlier;       // null: no outlierDetection
  std::shared_ptr<RetryBudget> budget;            // null: no retries
};

class TrafficRegistry {
 public:
  // Takes the snapshot's TrafficPolicies: new ones get fresh machines, unchanged sections keep
  // theirs, removed policies are dropped. Outlier detectors learn their Service's ready endpoints
  // (a Service missing from the snapshot has none).
  void Update(SnapshotPtr snapshot, TimePoint now);

  // The state for a request to Service "<namespace>/<name>" on `port` (the policy
  // ConfigSnapshot::TrafficPolicyFor picks), or null when no TrafficPolicy applies.
  std::shared_ptr<const ServiceTraffic> For(std::string_view service_key, uint16_t port) const;

  // Every policy's state, keyed "<namespace>/<name>" of the policy (for metrics export).
  absl::flat_hash_map<std::string, std::shared_ptr<const ServiceTraffic>> All() const;

 private:
  mutable std::mutex mu_;
  SnapshotPtr snapshot_;
  absl::flat_hash_map<std::string, std::shared_ptr<const ServiceTraffic>> by_policy_;
};

}  // namespace weft::ztunnel::traffic
