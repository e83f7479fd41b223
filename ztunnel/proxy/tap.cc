#include "ztunnel/proxy/tap.h"

#include <algorithm>

#include "nlohmann/json.hpp"

namespace weft::ztunnel {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool TapBuffer::Active() const {
  return NowMs() - last_read_ms_.load(std::memory_order_relaxed) <
         std::chrono::duration_cast<std::chrono::milliseconds>(kActiveFor).count();
}

void TapBuffer::Publish(TapEvent ev) {
  std::unique_lock<std::mutex> l(mu_, std::try_to_lock);
  if (!l.owns_lock()) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  ev.seq = ++last_seq_;
  ring_.push_back(std::move(ev));
  while (ring_.size() > capacity_) ring_.pop_front();
}

TapBuffer::Page TapBuffer::Read(uint64_t since, size_t max) {
  last_read_ms_.store(NowMs(), std::memory_order_relaxed);
  Page p;
  std::lock_guard<std::mutex> l(mu_);
  p.dropped = dropped_.load(std::memory_order_relaxed);
  if (since > last_seq_) since = 0;  // a reader from before a restart starts over
  uint64_t first = ring_.empty() ? last_seq_ + 1 : ring_.front().seq;
  if (first > since + 1) p.missed = first - since - 1;
  p.next = std::max(since, first - 1);
  for (const TapEvent& e : ring_) {
    if (e.seq <= since) continue;
    if (p.events.size() >= max) break;
    p.events.push_back(e);
    p.next = e.seq;
  }
  return p;
}

std::string TapBuffer::ReadJson(uint64_t since, size_t max) {
  Page p = Read(since, max);
  nlohmann::json events = nlohmann::json::array();
  for (const TapEvent& e : p.events) {
    events.push_back({{"seq", e.seq},
                      {"unix_ms", e.unix_ms},
                      {"reporter", e.reporter},
                      {"src_workload", e.src_workload},
                      {"dst_workload", e.dst_workload},
                      {"src_identity", e.src_identity},
                      {"dst_identity", e.dst_identity},
                      {"src_addr", e.src_addr},
                      {"dst_addr", e.dst_addr},
                      {"method", e.method},
                      {"authority", e.authority},
                      {"path", e.path},
                      {"status", e.status},
                      {"latency_ms", e.latency_ms},
                      {"request_bytes", e.request_bytes},
                      {"response_bytes", e.response_bytes},
                      {"local_reply", e.local_reply},
                      {"trace_id", e.trace_id}});
  }
  nlohmann::json out = {
      {"next", p.next}, {"dropped", p.dropped}, {"missed", p.missed}, {"events", events}};
  // Paths and headers are the client's bytes: never let invalid UTF-8 fail the dump.
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace weft::ztunnel
