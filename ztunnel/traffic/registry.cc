#include "ztunnel/traffic/registry.h"

#include <vector>

#include "common/status.h"

namespace weft::ztunnel::traffic {
namespace {

const std::vector<std::string>& ReadyEndpoints(const ConfigSnapshot& snap, std::string_view key) {
  static const std::vector<std::string> kNone;
  for (const config::Service& s : snap.services()) {
    if (key.size() == s.ns.size() + 1 + s.name.size() && key.starts_with(s.ns) &&
        key[s.ns.size()] == '/' && key.ends_with(s.name)) {
      return s.ready_endpoint_uids;
    }
  }
  return kNone;
}

// A machine is kept when the section it was made from is the same in the new policy.
std::shared_ptr<ServiceTraffic> Rebuild(const SnapshotPtr& snap, const config::TrafficPolicy& p,
                                        const ServiceTraffic* old, TimePoint now) {
  auto st = std::make_shared<ServiceTraffic>();
  st->snapshot = snap;
  st->policy = &p;
  const config::TrafficPolicy* before = old != nullptr ? old->policy : nullptr;
  if (p.connection_pool) {
    bool same = before != nullptr && before->connection_pool == p.connection_pool && old->breaker;
    st->breaker = same ? old->breaker : std::make_shared<CircuitBreaker>(*p.connection_pool);
  }
  if (p.outlier_detection) {
    bool same =
        before != nullptr && before->outlier_detection == p.outlier_detection && old->outlier;
    st->outlier =
        same ? old->outlier : std::make_shared<OutlierDetector>(*p.outlier_detection, now);
  }
  if (p.retries) {
    bool same = before != nullptr && before->retries &&
                before->retries->budget == p.retries->budget && old->budget;
    st->budget = same ? old->budget : std::make_shared<RetryBudget>(p.retries->budget);
  }
  return st;
}

}  // namespace

void TrafficRegistry::Update(SnapshotPtr snapshot, TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const ServiceTraffic>> next;
  for (const config::TrafficPolicy& p : snapshot->traffic_policies()) {
    auto it = by_policy_.find(p.key());
    std::shared_ptr<ServiceTraffic> st =
        Rebuild(snapshot, p, it == by_policy_.end() ? nullptr : it->second.get(), now);
    if (st->outlier) st->outlier->SetEndpoints(ReadyEndpoints(*snapshot, p.target_service));
    next[p.key()] = std::move(st);
  }
  by_policy_ = std::move(next);
  snapshot_ = std::move(snapshot);
}

std::shared_ptr<const ServiceTraffic> TrafficRegistry::For(std::string_view service_key,
                                                           uint16_t port) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (snapshot_ == nullptr) return nullptr;
  const config::TrafficPolicy* p = snapshot_->TrafficPolicyFor(service_key, port);
  if (p == nullptr) return nullptr;
  auto it = by_policy_.find(p->key());
  return it == by_policy_.end() ? nullptr : it->second;
}

absl::flat_hash_map<std::string, std::shared_ptr<const ServiceTraffic>> TrafficRegistry::All()
    const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_policy_;
}

}  // namespace weft::ztunnel::traffic
