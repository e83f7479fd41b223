// Circuit breaking: each gate's limit, release on slot destruction, overflow counters.
#include "ztunnel/traffic/circuit_breaker.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace weft::ztunnel::traffic {
namespace {

TEST(CircuitBreakerTest, GatesOverflowAtTheirLimitsAndReopenOnRelease) {
  CircuitBreaker cb(config::ConnectionPool{1, 2, 3, 0, 1});
  auto c1 = cb.TryConnection("a");
  ASSERT_TRUE(c1.has_value());
  EXPECT_FALSE(cb.TryConnection("a").has_value());  // maxConnections is per endpoint
  auto c2 = cb.TryConnection("b");
  EXPECT_TRUE(c2.has_value());
  c1.reset();
  EXPECT_TRUE(cb.TryConnection("a").has_value());

  auto p1 = cb.TryPending(), p2 = cb.TryPending();
  EXPECT_TRUE(p1 && p2);
  EXPECT_FALSE(cb.TryPending().has_value());

  std::vector<CircuitBreaker::Slot> requests;
  for (int i = 0; i < 3; ++i) requests.push_back(*cb.TryRequest());
  EXPECT_FALSE(cb.TryRequest().has_value());
  auto r1 = cb.TryRetry();
  EXPECT_TRUE(r1.has_value());
  EXPECT_FALSE(cb.TryRetry().has_value());

  CircuitBreaker::Stats s = cb.stats();
  EXPECT_EQ(s.connection_overflows, 1u);
  EXPECT_EQ(s.pending_overflows, 1u);
  EXPECT_EQ(s.request_overflows, 1u);
  EXPECT_EQ(s.retry_overflows, 1u);
  EXPECT_EQ(s.pending, 2u);
  EXPECT_EQ(s.requests, 3u);
  EXPECT_EQ(s.retries, 1u);

  CircuitBreaker::Slot moved = std::move(requests.back());
  requests.pop_back();
  EXPECT_FALSE(cb.TryRequest().has_value());  // the moved slot still holds its place
  moved.Release();
  EXPECT_TRUE(cb.TryRequest().has_value());
  requests.clear();
  EXPECT_EQ(cb.stats().requests, 0u);
}

TEST(CircuitBreakerTest, ZeroIsUnlimited) {
  CircuitBreaker cb(config::ConnectionPool{});
  std::vector<CircuitBreaker::Slot> slots;
  for (int i = 0; i < 1000; ++i) slots.push_back(*cb.TryRequest());
  EXPECT_EQ(cb.stats().requests, 1000u);
  EXPECT_EQ(cb.stats().request_overflows, 0u);
}

TEST(CircuitBreakerTest, ConcurrentAcquirersNeverExceedTheLimit) {
  CircuitBreaker cb(config::ConnectionPool{0, 0, 5, 0, 0});
  std::atomic<int> held{0}, max_held{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        auto s = cb.TryRequest();
        if (!s) continue;
        int now = ++held;
        int prev = max_held.load();
        while (now > prev && !max_held.compare_exchange_weak(prev, now)) {
        }
        --held;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(max_held.load(), 5);
  EXPECT_EQ(cb.stats().requests, 0u);
}

}  // namespace
}  // namespace weft::ztunnel::traffic
