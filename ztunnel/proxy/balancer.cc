#include "ztunnel/proxy/balancer.h"

#include <algorithm>
#include <cmath>

namespace weft::ztunnel {

namespace {
double Ns(std::chrono::nanoseconds d) {
  return static_cast<double>(d.count());
}
}  // namespace

Balancer::Balancer(Options opts, uint64_t seed) : opts_(opts), rng_(seed) {}

Balancer::Endpoint& Balancer::Get(std::string_view key, Clock::time_point now) {
  auto it = eps_.find(std::string(key));
  if (it != eps_.end()) return it->second;
  Endpoint e;
  e.stamp = now;
  return eps_.emplace(std::string(key), e).first->second;
}

double Balancer::UnknownRtt() const {
  double sum = 0;
  int n = 0;
  for (const auto& [k, x] : eps_) {
    if (!x.sampled) continue;
    sum += x.rtt_ns;
    ++n;
  }
  return n > 0 ? sum / n : Ns(opts_.default_rtt);
}

double Balancer::Latency(std::string_view endpoint, Clock::time_point now) {
  Endpoint& e = Get(endpoint, now);
  const double idle = std::max(0.0, Ns(now - e.stamp));
  return (e.sampled ? e.rtt_ns : UnknownRtt()) * std::exp(-idle / Ns(opts_.idle_decay));
}

bool Balancer::Barred(std::string_view endpoint, Clock::time_point now) const {
  auto it = eps_.find(std::string(endpoint));
  return it != eps_.end() && now < it->second.barred_until;
}

bool Balancer::Prefer(std::string_view b, std::string_view a, Clock::time_point now) {
  const bool bar_a = Barred(a, now), bar_b = Barred(b, now);
  if (bar_a != bar_b) return bar_a;
  return Get(b, now).outstanding < Get(a, now).outstanding;
}

size_t Balancer::Choose(absl::Span<const std::string> endpoints, Clock::time_point now) {
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

void Balancer::Finished(std::string_view endpoint, std::chrono::nanoseconds rtt, bool failed,
                        Clock::time_point now, bool sample) {
  Endpoint& e = Get(endpoint, now);
  if (e.outstanding > 0) --e.outstanding;
  if (failed) {
    std::chrono::nanoseconds backoff =
        opts_.first_backoff * (1LL << std::min<uint32_t>(e.failures, 20));
    e.barred_until = now + std::min(backoff, opts_.max_backoff);
    ++e.failures;
    return;
  }
  e.failures = 0;
  if (!sample) return;
  // A sample weighs 1 - exp(-Δt/decay), at most half: one sample, even the first (which starts
  // from the others' mean), never decides alone.
  const double dt = std::max(0.0, Ns(now - e.stamp));
  const double weight = std::min(0.5, 1 - std::exp(-dt / Ns(opts_.decay)));
  const double prior = e.sampled ? e.rtt_ns : UnknownRtt();
  e.rtt_ns = prior * (1 - (e.sampled ? weight : 0.5)) + Ns(rtt) * (e.sampled ? weight : 0.5);
  e.sampled = true;
  e.stamp = std::max(e.stamp, now);
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
