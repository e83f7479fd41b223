#include "ztunnel/proxy/traffic_metrics.h"

#include <set>
#include <utility>

namespace weft::ztunnel {

namespace {

prometheus::Family<prometheus::Counter>* Counter(prometheus::Registry& r, const char* name,
                                                 const char* help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>* Gauge(prometheus::Registry& r, const char* name,
                                             const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

}  // namespace

TrafficMetrics::TrafficMetrics(prometheus::Registry& r)
    : overflows_(Counter(r, "weft_traffic_overflows_total",
                         "Requests, connections and retries a TrafficPolicy's connectionPool "
                         "refused (503 UO), by limit")),
      ejections_(Counter(r, "weft_traffic_ejections_total",
                         "Endpoints ejected by a TrafficPolicy's outlierDetection, by detector")),
      ejection_overflows_(Counter(r, "weft_traffic_ejections_overflow_total",
                                  "Ejections maxEjectionPercent refused")),
      ejections_active_(Gauge(r, "weft_traffic_ejections_active", "Endpoints ejected now")),
      ejected_(Gauge(r, "weft_traffic_ejected", "1 while the endpoint is ejected")),
      budget_exhausted_(Counter(r, "weft_traffic_retry_budget_exhausted_total",
                                "Retries a TrafficPolicy's retry budget refused")) {}

void TrafficMetrics::Advance(prometheus::Family<prometheus::Counter>* family,
                             const std::map<std::string, std::string>& labels, uint64_t now) {
  std::map<std::string, std::string> key = labels;
  key["__family"] = std::to_string(reinterpret_cast<uintptr_t>(family));
  uint64_t& last = seen_[key];
  const uint64_t delta = now >= last ? now - last : now;
  last = now;
  if (delta > 0 || now == 0) family->Add(labels).Increment(static_cast<double>(delta));
}

void TrafficMetrics::Refresh(
    const absl::flat_hash_map<std::string, std::shared_ptr<const traffic::ServiceTraffic>>& all) {
  std::set<std::map<std::string, std::string>> still_ejected;
  for (const auto& [policy, st] : all) {
    if (!st || !st->policy) continue;
    const std::map<std::string, std::string> base = {{"policy", policy},
                                                     {"service", st->policy->target_service}};
    auto with = [&](const char* k, std::string v) {
      auto l = base;
      l[k] = std::move(v);
      return l;
    };
    if (st->breaker) {
      const auto s = st->breaker->stats();
      Advance(overflows_, with("limit", "connections"), s.connection_overflows);
      Advance(overflows_, with("limit", "pending"), s.pending_overflows);
      Advance(overflows_, with("limit", "requests"), s.request_overflows);
      Advance(overflows_, with("limit", "retries"), s.retry_overflows);
    }
    if (st->outlier) {
      const auto s = st->outlier->stats();
      Advance(ejections_, with("detector", "consecutive_5xx"),
              s.ejections_enforced_consecutive_5xx);
      Advance(ejections_, with("detector", "consecutive_gateway"),
              s.ejections_enforced_consecutive_gateway_failure);
      Advance(ejection_overflows_, base, s.ejections_overflow);
      ejections_active_->Add(base).Set(s.ejections_active);
      for (const std::string& ep : st->outlier->EjectedEndpoints()) {
        auto l = with("endpoint", ep);
        still_ejected.insert(l);
        auto [it, fresh] = ejected_now_.emplace(l, nullptr);
        if (fresh) it->second = &ejected_->Add(l);
        it->second->Set(1);
      }
    }
    if (st->budget) Advance(budget_exhausted_, base, st->budget->stats().exhausted);
  }
  for (auto it = ejected_now_.begin(); it != ejected_now_.end();) {
    if (still_ejected.count(it->first)) {
      ++it;
      continue;
    }
    ejected_->Remove(it->second);  // back in rotation: the series goes away
    it = ejected_now_.erase(it);
  }
}

}  // namespace weft::ztunnel
