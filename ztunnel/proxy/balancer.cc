#include "ztunnel/proxy/balancer.h"

#include <algorithm>
#include <cmath>

namespace weft::ztunnel {

Balancer::Balancer(Options opts, uint64_t seed) : opts_(opts), rng_(seed) {}

Balancer::Endpoint& Balancer::Get(std::string_view key, Clock::time_point now) {
  auto it = eps_.find(std::string(key));
  if (it != eps_.end()) return it->second;
  Endpoint e;
  e.rtt_ns = static_cast<double>(opts_.default_rtt.count());
  e.stamp = now;
  return eps_.emplace(std::string(key), e).first->second;
}

void Balancer::Observe(Endpoint& e, double rtt_ns, Clock::time_point now) const {
  const double dt = static_cast<double>(std::max<int64_t>(0, (now - e.stamp).count()));
  e.stamp = std::max(e.stamp, now);
  if (rtt_ns > e.rtt_ns) {
    e.rtt_ns = rtt_ns;  // peak: believed at once
    return;
  }
  const double w = std::exp(-dt / static_cast<double>(opts_.decay.count()));
  e.rtt_ns = e.rtt_ns * w + rtt_ns * (1 - w);
}

double Balancer::Cost(std::string_view endpoint, Clock::time_point now) {
  Endpoint& e = Get(endpoint, now);
  Observe(e, 0, now);  // decay for the time since the last sample
  return e.rtt_ns * (e.outstanding + 1);
}

size_t Balancer::Choose(absl::Span<const std::string> endpoints, Clock::time_point now) {
  const size_t n = endpoints.size();
  if (n <= 1) return 0;
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  const size_t a = pick(rng_);
  size_t b = std::uniform_int_distribution<size_t>(0, n - 2)(rng_);
  if (b >= a) ++b;  // two distinct candidates
  const double ca = Cost(endpoints[a], now), cb = Cost(endpoints[b], now);
  // Costs within kTie of each other are a tie, kept by the first candidate (itself random).
  return cb * kTie < ca ? b : a;
}

void Balancer::Started(std::string_view endpoint, Clock::time_point now) {
  ++Get(endpoint, now).outstanding;
}

void Balancer::Finished(std::string_view endpoint, std::chrono::nanoseconds rtt, bool failed,
                        Clock::time_point now) {
  Endpoint& e = Get(endpoint, now);
  if (e.outstanding > 0) --e.outstanding;
  Observe(e, static_cast<double>((failed ? std::max(rtt, opts_.failure_rtt) : rtt).count()), now);
}

uint32_t Balancer::Outstanding(std::string_view endpoint) const {
  auto it = eps_.find(std::string(endpoint));
  return it == eps_.end() ? 0 : it->second.outstanding;
}

void Balancer::Prune(Clock::time_point now, std::chrono::nanoseconds idle) {
  std::erase_if(eps_, [&](const auto& kv) {
    return kv.second.outstanding == 0 && now - kv.second.stamp > idle;
  });
}

}  // namespace weft::ztunnel
