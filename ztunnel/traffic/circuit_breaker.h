// Circuit breaking for one Service, per source ztunnel (issue 15, TrafficPolicy.connectionPool):
// Envoy's cluster circuit breakers. Each limit is a gate the proxy passes before the matching
// action, holding the returned Slot while the thing it counts is outstanding:
//   TryConnection(endpoint)  a new upstream connection to `endpoint` (maxConnections, per endpoint)
//   TryPending()             a request waiting for a connection (http1MaxPendingRequests)
//   TryRequest()             an outstanding request to the Service (http2MaxRequests)
//   TryRetry()               an outstanding retry (maxRetries)
// A refused gate is an overflow: the proxy answers 503 with response flag "UO" (for a refused
// retry: returns the response it has, no flag), and the overflow is counted. Limits of 0 are
// unlimited. maxRequestsPerConnection is the proxy's to apply (max_requests_per_connection()).
//
// Thread-safe: every worker of a ztunnel shares one CircuitBreaker per Service (atomics for the
// Service-wide gates, a mutex only to find an endpoint's counter).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "config/model/types.h"

namespace weft::ztunnel::traffic {

class CircuitBreaker {
 public:
  explicit CircuitBreaker(const config::ConnectionPool& limits);

  // Held while the counted thing is outstanding; releases on destruction. Move-only.
  class Slot {
   public:
    Slot(Slot&& o) noexcept : counter_(std::exchange(o.counter_, nullptr)) {}
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }
    void Release();

   private:
    friend class CircuitBreaker;
    explicit Slot(std::atomic<uint32_t>* c) : counter_(c) {}
    std::atomic<uint32_t>* counter_;
  };

  std::optional<Slot> TryConnection(std::string_view endpoint);
  std::optional<Slot> TryPending();
  std::optional<Slot> TryRequest();
  std::optional<Slot> TryRetry();

  uint32_t max_requests_per_connection() const { return limits_.max_requests_per_connection; }

  struct Stats {  // overflows since creation, and what is outstanding now
    uint64_t connection_overflows = 0, pending_overflows = 0, request_overflows = 0,
             retry_overflows = 0;
    uint32_t pending = 0, requests = 0, retries = 0;
  };
  Stats stats() const;

 private:
  std::optional<Slot> Try(std::atomic<uint32_t>* counter, uint32_t limit,
                          std::atomic<uint64_t>* overflows);

  const config::ConnectionPool limits_;
  std::atomic<uint32_t> pending_{0}, requests_{0}, retries_{0};
  std::atomic<uint64_t> connection_overflows_{0}, pending_overflows_{0}, request_overflows_{0},
      retry_overflows_{0};
  std::mutex mu_;  // guards the map, not the counters
  absl::flat_hash_map<std::string, std::unique_ptr<std::atomic<uint32_t>>> connections_;
};

}  // namespace weft::ztunnel::traffic
