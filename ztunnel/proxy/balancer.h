// Per-request endpoint choice for the source-side HTTP proxy (http_outbound.h): power of two
// choices, each pair settled by (1) recent failures, (2) outstanding requests, (3) the pair's
// random order — Envoy's LEAST_REQUEST with outlier ejection on the first failure.
//
// Why this one: it is load-aware, and latency-aware through load: a slower endpoint holds its
// requests longer, so under concurrency it has more outstanding and gets fewer new ones. It needs
// no coordination: each worker keeps its own view (no locks on the data path), and comparing two
// random candidates instead of taking the global minimum keeps workers and ztunnels that share an
// endpoint set from herding onto one endpoint. Response times are not compared directly: with
// Linkerd's peak-EWMA cost, and then with an EWMA compared only beyond 2x, one slow early answer
// (an HBONE handshake, a scheduler hiccup on a loaded node) starved one of three equal endpoints
// for seconds (measured: 3 of 3,000, then 2 of 3,000 sequential requests on one connection), so
// no response-time estimate is kept.
//
// A failed request (no response) bars the endpoint for 1 s, doubling with each failure in a row
// up to 30 s, while any other is available. Loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/types/span.h"

namespace weft::ztunnel {

struct BalancerOptions {
  std::chrono::nanoseconds first_backoff = std::chrono::seconds(1);
  std::chrono::nanoseconds max_backoff = std::chrono::seconds(30);
};

class Balancer {
 public:
  using Clock = std::chrono::steady_clock;
  using Options = BalancerOptions;
  explicit Balancer(Options opts = {}, uint64_t seed = std::random_device{}());

  // The index in `endpoints` (keys: one per endpoint, e.g. its workload uid) of the endpoint to
  // send the next request to. `endpoints` must not be empty.
  size_t Choose(absl::Span<const std::string_view> endpoints, Clock::time_point now);
  // A request went to `endpoint` / its response is over (`failed`: no response came).
  void Started(std::string_view endpoint, Clock::time_point now);
  void Finished(std::string_view endpoint, bool failed, Clock::time_point now);
  uint32_t Outstanding(std::string_view endpoint) const;
  bool Barred(std::string_view endpoint, Clock::time_point now) const;
  // Forgets endpoints with nothing outstanding and no request for `idle` (the worker calls it
  // every few seconds, so the table does not keep every endpoint ever seen).
  void Prune(Clock::time_point now, std::chrono::nanoseconds idle);
  size_t size() const { return eps_.size(); }

 private:
  struct Endpoint {
    Clock::time_point stamp;  // of the last request's start or end
    uint32_t outstanding = 0;
    uint32_t failures = 0;  // in a row
    Clock::time_point barred_until{};
  };
  Endpoint& Get(std::string_view key, Clock::time_point now);
  bool Prefer(std::string_view b, std::string_view a, Clock::time_point now) const;  // b over a?

  Options opts_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, Endpoint> eps_;
};

}  // namespace weft::ztunnel
