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
// for seconds (measured: 3 of 3,000, then 2 of 3,000 sequential requests on one connection). The
// EWMA of response times is still kept per endpoint (Latency(): time-weighted, a sample weighs
// 1 - exp(-Δt/`decay`) at most 1/2, decaying towards 0 while idle) for reporting and for a future
// rule that needs more evidence than one answer.
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
  std::chrono::nanoseconds decay = std::chrono::seconds(1);
  std::chrono::nanoseconds idle_decay = std::chrono::seconds(1);
  std::chrono::nanoseconds default_rtt = std::chrono::milliseconds(1);
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
  size_t Choose(absl::Span<const std::string> endpoints, Clock::time_point now);
  // A request went to `endpoint` / its response is over (`rtt` from the request's first byte to
  // the response's last; `failed`: no response came; `sample` false: do not learn from its time,
  // e.g. it included opening a connection).
  void Started(std::string_view endpoint, Clock::time_point now);
  void Finished(std::string_view endpoint, std::chrono::nanoseconds rtt, bool failed,
                Clock::time_point now, bool sample = true);
  // The response-time estimate, decayed for idleness (tests and debugging).
  double Latency(std::string_view endpoint, Clock::time_point now);
  uint32_t Outstanding(std::string_view endpoint) const;
  bool Barred(std::string_view endpoint, Clock::time_point now) const;
  // Forgets endpoints with nothing outstanding and no sample for `idle` (called now and then, so
  // the table does not keep every endpoint ever seen).
  void Prune(Clock::time_point now, std::chrono::nanoseconds idle);
  size_t size() const { return eps_.size(); }

 private:
  struct Endpoint {
    double rtt_ns = 0;
    Clock::time_point stamp;  // of the last sample (or of its creation)
    bool sampled = false;
    uint32_t outstanding = 0;
    uint32_t failures = 0;  // in a row
    Clock::time_point barred_until{};
  };
  Endpoint& Get(std::string_view key, Clock::time_point now);
  double UnknownRtt() const;  // an endpoint without samples: the mean of the others'
  bool Prefer(std::string_view b, std::string_view a, Clock::time_point now);  // b over a?

  Options opts_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, Endpoint> eps_;
};

}  // namespace weft::ztunnel
