#include "ztunnel/proxy/limits.h"

#include "ztunnel/metrics/metrics.h"

namespace weft::ztunnel {

HboneLimits::HboneLimits(const HboneLimitOptions& o, Metrics* metrics)
    : opts_(o), metrics_(metrics) {}

std::string_view HboneLimits::AdmitHandshake(const IpAddr& src) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_source_.find(src);
  if (it != by_source_.end()) {
    if (it->second.handshaking >= opts_.max_handshaking_per_source) return "handshaking_per_source";
    if (it->second.established >= opts_.max_established_per_source) return "established_per_source";
  }
  if (established_ >= opts_.max_established) return "established_global";
  by_source_[src].handshaking++;
  handshaking_++;
  metrics_->hbone_server_connections("handshaking").Set(handshaking_);
  return {};
}

std::string_view HboneLimits::Establish(const IpAddr& src) {
  std::lock_guard<std::mutex> lock(mu_);
  Counts& c = by_source_[src];
  if (c.handshaking > 0) c.handshaking--;
  if (handshaking_ > 0) handshaking_--;
  metrics_->hbone_server_connections("handshaking").Set(handshaking_);
  std::string_view refused;
  if (c.established >= opts_.max_established_per_source) {
    refused = "established_per_source";
  } else if (established_ >= opts_.max_established) {
    refused = "established_global";
  } else {
    c.established++;
    established_++;
    metrics_->hbone_server_connections("established").Set(established_);
  }
  if (c.handshaking == 0 && c.established == 0) by_source_.erase(src);
  return refused;
}

void HboneLimits::Release(const IpAddr& src, bool established) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_source_.find(src);
  if (it == by_source_.end()) return;
  Counts& c = it->second;
  if (established) {
    if (c.established > 0) c.established--;
    if (established_ > 0) established_--;
    metrics_->hbone_server_connections("established").Set(established_);
  } else {
    if (c.handshaking > 0) c.handshaking--;
    if (handshaking_ > 0) handshaking_--;
    metrics_->hbone_server_connections("handshaking").Set(handshaking_);
  }
  if (c.handshaking == 0 && c.established == 0) by_source_.erase(it);
}

void HboneLimits::AddBuffered(int64_t delta) {
  if (delta == 0) return;
  buffered_.fetch_add(delta, std::memory_order_relaxed);
  metrics_->hbone_buffered_bytes().Increment(static_cast<double>(delta));
}

}  // namespace weft::ztunnel
