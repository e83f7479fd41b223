#include "ztunnel/traffic/outlier.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "common/status.h"

namespace weft::ztunnel::traffic {

OutlierDetector::OutlierDetector(const config::OutlierDetection& cfg, TimePoint now)
    : cfg_(cfg), next_sweep_(now + Millis(cfg.interval_ms)) {}

void OutlierDetector::SetEndpoints(const std::vector<std::string>& endpoint_uids) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::flat_hash_set<std::string_view> keep(endpoint_uids.begin(), endpoint_uids.end());
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    if (!keep.contains(it->first)) {
      if (it->second.ejected) stats_.ejections_active--;
      hosts_.erase(it++);
    } else {
      ++it;
    }
  }
  for (const std::string& uid : endpoint_uids) hosts_.try_emplace(uid);
}

OutlierDetector::Outcome OutlierDetector::Classify(uint16_t status) {
  if (status == 502 || status == 503 || status == 504) return Outcome::kGatewayError;
  if (status >= 500 && status <= 599) return Outcome::kError5xx;
  return Outcome::kSuccess;
}

void OutlierDetector::Report(std::string_view endpoint, Outcome outcome, TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = hosts_.find(Av(endpoint));
  if (it == hosts_.end()) return;  // not (or no longer) an endpoint of the Service
  Host& h = it->second;
  if (outcome == Outcome::kSuccess) {
    h.consecutive_5xx = h.consecutive_gateway = 0;
    return;
  }
  bool gateway = outcome != Outcome::kError5xx;
  if (gateway) {
    h.consecutive_gateway++;
  } else {
    h.consecutive_gateway = 0;
  }
  h.consecutive_5xx++;
  if (h.ejected) return;
  if (gateway && cfg_.consecutive_gateway_errors != 0 &&
      h.consecutive_gateway >= cfg_.consecutive_gateway_errors) {
    MaybeEject(h, true, now);
  } else if (cfg_.consecutive_5xx_errors != 0 && h.consecutive_5xx >= cfg_.consecutive_5xx_errors) {
    MaybeEject(h, false, now);
  }
}

void OutlierDetector::MaybeEject(Host& h, bool gateway, TimePoint now) {
  double ejected_percent = 100.0 * stats_.ejections_active / std::max<size_t>(1, hosts_.size());
  if (ejected_percent >= cfg_.max_ejection_percent) {
    stats_.ejections_overflow++;
    return;
  }
  h.ejected = true;
  h.ejected_at = now;
  h.times_ejected++;
  h.consecutive_5xx = h.consecutive_gateway = 0;
  stats_.ejections_active++;
  stats_.ejections_enforced_total++;
  if (gateway) {
    stats_.ejections_enforced_consecutive_gateway_failure++;
  } else {
    stats_.ejections_enforced_consecutive_5xx++;
  }
}

void OutlierDetector::Sweep(TimePoint now) {
  const uint64_t max_ms = std::max<uint64_t>(cfg_.base_ejection_time_ms, 300000);
  for (auto& [uid, h] : hosts_) {
    if (h.ejected) {
      uint64_t ms = std::min<uint64_t>(cfg_.base_ejection_time_ms * h.times_ejected, max_ms);
      if (now >= h.ejected_at + Millis(ms)) {
        h.ejected = false;
        h.consecutive_5xx = h.consecutive_gateway = 0;
        stats_.ejections_active--;
        stats_.unejections_total++;
      }
    } else if (h.times_ejected > 0) {
      h.times_ejected--;  // healthy for a whole interval
    }
  }
}

void OutlierDetector::Tick(TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now < next_sweep_) return;
  Sweep(now);
  // On a fixed grid, as Envoy's interval timer: the next sweep is the first grid point after now.
  const auto interval = Millis(std::max<uint64_t>(1, cfg_.interval_ms));
  next_sweep_ += ((now - next_sweep_) / interval + 1) * interval;
}

bool OutlierDetector::IsEjected(std::string_view endpoint) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = hosts_.find(Av(endpoint));
  return it != hosts_.end() && it->second.ejected;
}

OutlierDetector::Stats OutlierDetector::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<std::string> OutlierDetector::EjectedEndpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [uid, h] : hosts_) {
    if (h.ejected) out.push_back(uid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace weft::ztunnel::traffic
