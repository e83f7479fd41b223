#include "ztunnel/proxy/balancer.h"

#include <algorithm>

namespace weft::ztunnel {

Balancer::Balancer(Options opts, uint64_t seed) : opts_(opts), rng_(seed) {}

Balancer::Endpoint& Balancer::Get(std::string_view key, Clock::time_point now) {
  auto it = eps_.find(std::string(key));
  if (it == eps_.end()) it = eps_.emplace(std::string(key), Endpoint{}).first;
  it->second.stamp = std::max(it->second.stamp, now);
  return it->second;
}

bool Balancer::Barred(std::string_view endpoint, Clock::time_point now) const {
  auto it = eps_.find(std::string(endpoint));
  return it != eps_.end() && now < it->second.barred_until;
}

bool Balancer::Prefer(std::string_view b, std::string_view a, Clock::time_point now) const {
  const bool bar_a = Barred(a, now), bar_b = Barred(b, now);
  if (bar_a != bar_b) return bar_a;
  return Outstanding(b) < Outstanding(a);
}

size_t Balancer::Choose(absl::Span<const std::string_view> endpoints, Clock::time_point now) {
  const size_t n = endpoints.size();
  if (n <= 1) return 0;
  const size_t a = std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  size_t b = std::uniform_int_distribution<size_t>(0, n - 2)(rng_);
  if (b >= a) ++b;  // two distinct candidates, in random order: a tie keeps the first
  return Prefer(endpoints[b], endpoints[a], now) ? b : a;
}

void Balancer::Started(std::string_view endpoint, Clock::time_point now) {
  ++Get(endpoint, now).outstanding;
}

void Balancer::Finished(std::string_view endpoint, bool failed, Clock::time_point now) {
  Endpoint& e = Get(endpoint, now);
  if (e.outstanding > 0) --e.outstanding;
  if (!failed) {
    e.failures = 0;
    return;
  }
  std::chrono::nanoseconds backoff =
      opts_.first_backoff * (1LL << std::min<uint32_t>(e.failures, 20));
  e.barred_until = now + std::min(backoff, opts_.max_backoff);
  ++e.failures;
}

uint32_t Balancer::Outstanding(std::string_view endpoint) const {
  auto it = eps_.find(std::string(endpoint));
  return it == eps_.end() ? 0 : it->second.outstanding;
}

void Balancer::Prune(Clock::time_point now, std::chrono::nanoseconds idle) {
  std::erase_if(eps_, [&](const auto& kv) {
    return kv.second.outstanding == 0 && now - kv.second.stamp > idle &&
           now >= kv.second.barred_until;
  });
}

}  // namespace weft::ztunnel
