#include "ztunnel/traffic/circuit_breaker.h"

#include "common/status.h"

namespace weft::ztunnel::traffic {

CircuitBreaker::Slot& CircuitBreaker::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    Release();
    counter_ = std::exchange(o.counter_, nullptr);
  }
  return *this;
}

void CircuitBreaker::Slot::Release() {
  if (counter_ != nullptr) counter_->fetch_sub(1, std::memory_order_relaxed);
  counter_ = nullptr;
}

CircuitBreaker::CircuitBreaker(const config::ConnectionPool& limits) : limits_(limits) {}

std::optional<CircuitBreaker::Slot> CircuitBreaker::Try(std::atomic<uint32_t>* counter,
                                                        uint32_t limit,
                                                        std::atomic<uint64_t>* overflows) {
  uint32_t cur = counter->load(std::memory_order_relaxed);
  do {
    if (limit != 0 && cur >= limit) {
      overflows->fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
  } while (!counter->compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return Slot(counter);
}

std::optional<CircuitBreaker::Slot> CircuitBreaker::TryConnection(std::string_view endpoint) {
  std::atomic<uint32_t>* counter;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = connections_[Av(endpoint)];
    if (!slot) slot = std::make_unique<std::atomic<uint32_t>>(0);
    counter = slot.get();  // never freed before the breaker: endpoints are few
  }
  return Try(counter, limits_.max_connections, &connection_overflows_);
}

std::optional<CircuitBreaker::Slot> CircuitBreaker::TryPending() {
  return Try(&pending_, limits_.http1_max_pending_requests, &pending_overflows_);
}

std::optional<CircuitBreaker::Slot> CircuitBreaker::TryRequest() {
  return Try(&requests_, limits_.http2_max_requests, &request_overflows_);
}

std::optional<CircuitBreaker::Slot> CircuitBreaker::TryRetry() {
  return Try(&retries_, limits_.max_retries, &retry_overflows_);
}

CircuitBreaker::Stats CircuitBreaker::stats() const {
  Stats s;
  s.connection_overflows = connection_overflows_.load(std::memory_order_relaxed);
  s.pending_overflows = pending_overflows_.load(std::memory_order_relaxed);
  s.request_overflows = request_overflows_.load(std::memory_order_relaxed);
  s.retry_overflows = retry_overflows_.load(std::memory_order_relaxed);
  s.pending = pending_.load(std::memory_order_relaxed);
  s.requests = requests_.load(std::memory_order_relaxed);
  s.retries = retries_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace weft::ztunnel::traffic
