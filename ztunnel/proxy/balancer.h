// Per-request endpoint choice for the source-side HTTP proxy (http_outbound.h): power of two
// choices, each pair settled by (1) recent failures, (2) outstanding requests, (3) an EWMA of
// response times when they differ by more than 2×, (4) the pair's random order.
//
// Why this one: it is load-aware (concurrent requests spread by what is outstanding, as Envoy's
// LEAST_REQUEST, and a slow endpoint holds its requests longer, so it gets fewer) and
// latency-aware where it matters (with nothing outstanding, an endpoint more than twice as slow
// as the other candidate loses), and needs no coordination: each worker keeps its own view (no
// locks on the data path), and comparing two random candidates instead of taking the global
// minimum keeps workers and ztunnels that share an endpoint set from herding onto one endpoint.
// Latency differences under 2× are treated as noise on purpose: preferring the marginally faster
// endpoint (Linkerd's peak-EWMA cost) piled light, sequential traffic (nothing outstanding) onto
// whichever endpoint answered fastest once, and made a single hiccup shun an endpoint for tens of
// seconds on a loopback-fast mesh (measured: one of three equal endpoints got 0.1 %).
//
// The response-time estimate is time-weighted (a sample's weight is 1 - exp(-Δt/`decay`), Δt
// since the previous sample, at most 1/2): at a high request rate one outlier barely moves it, a
// sustained slow-down takes over within about `decay`. It decays towards 0 while an endpoint gets
// no samples (`idle_decay`), so an endpoint that lost every draw is tried again within about a
// second. An endpoint without samples counts the mean of the others', and its first sample is
// averaged with that mean (one slow first answer must not starve it). A failed request (no
// response) is no sample: it bars the endpoint for 1 s, doubling with each failure in a row up to
// 30 s, while any other is available (outlier ejection, as Envoy's consecutive-5xx but on the first
// failure). Loop thread only.
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
  static constexpr double kLatencyTie = 2.0;
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
