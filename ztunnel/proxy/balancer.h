// Per-request endpoint choice for the source-side HTTP proxy (http_outbound.h): power of two
// choices over peak-EWMA cost, the balancer Linkerd's proxy uses (after Finagle's PeakEwma).
//
// Why this one: it is latency-aware (an endpoint that slows down, or is on a busier node, gets
// less traffic within a few requests) and load-aware at once (the cost is multiplied by the
// requests outstanding on the endpoint, so concurrent requests spread even when latencies tie),
// and it needs no coordination: each worker keeps its own view (no locks on the data path), and
// comparing two random candidates instead of taking the global minimum keeps workers (and
// ztunnels) that share an endpoint set from all herding onto the same "best" endpoint.
//
// Cost of an endpoint = RTT estimate × (outstanding + 1). The RTT estimate takes a sample that
// is above it at once (peak sensitivity: a slow-down is believed immediately) and otherwise moves
// towards the sample with weight 1 - exp(-Δt/τ) (τ = `decay`); when read, it first decays
// towards 0 for the time since the last sample, so an endpoint that has not been tried for a
// while becomes attractive again. An endpoint never seen starts at `default_rtt` (Linkerd's 30
// ms), a failed request (no response) counts as `failure_rtt`.
//
// Two costs within 25 % of each other are a tie, settled by the random order of the pair: below
// that, a latency difference is noise (loopback round trips vary more), and preferring the
// marginally cheaper endpoint would pile light, sequential traffic (one request at a time, so
// nothing outstanding) onto whichever endpoint happened to answer fastest once. Loop thread only.
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
  std::chrono::nanoseconds decay = std::chrono::seconds(10);
  std::chrono::nanoseconds default_rtt = std::chrono::milliseconds(30);
  std::chrono::nanoseconds failure_rtt = std::chrono::seconds(1);
};

class Balancer {
 public:
  using Clock = std::chrono::steady_clock;
  using Options = BalancerOptions;
  static constexpr double kTie = 1.25;
  explicit Balancer(Options opts = {}, uint64_t seed = std::random_device{}());

  // The index in `endpoints` (keys: one per endpoint, e.g. its workload uid) of the endpoint to
  // send the next request to. `endpoints` must not be empty.
  size_t Choose(absl::Span<const std::string> endpoints, Clock::time_point now);
  // A request went to `endpoint` / its response is over (`rtt` from the request's first byte to
  // the response's last; `failed`: no response came).
  void Started(std::string_view endpoint, Clock::time_point now);
  void Finished(std::string_view endpoint, std::chrono::nanoseconds rtt, bool failed,
                Clock::time_point now);
  // The current cost (tests and debugging).
  double Cost(std::string_view endpoint, Clock::time_point now);
  uint32_t Outstanding(std::string_view endpoint) const;
  // Forgets endpoints with nothing outstanding and no sample for `idle` (called now and then, so
  // the table does not keep every endpoint ever seen).
  void Prune(Clock::time_point now, std::chrono::nanoseconds idle);
  size_t size() const { return eps_.size(); }

 private:
  struct Endpoint {
    double rtt_ns = 0;
    Clock::time_point stamp;
    uint32_t outstanding = 0;
  };
  Endpoint& Get(std::string_view key, Clock::time_point now);
  void Observe(Endpoint& e, double rtt_ns, Clock::time_point now) const;

  Options opts_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, Endpoint> eps_;
};

}  // namespace weft::ztunnel
