#include "ztunnel/proxy/balancer.h"

#include <gtest/gtest.h>

#include <map>
#include <queue>
#include <random>
#include <vector>

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using Clock = Balancer::Clock;

// A discrete-event run: `total` requests, `concurrency` in flight at once, endpoint i answering
// in latency[i] (± `jitter` fraction, uniformly); returns the requests each endpoint got.
std::vector<int> Simulate(const std::vector<std::chrono::microseconds>& latency, int total,
                          int concurrency, double jitter, uint64_t seed) {
  Balancer b({}, seed);
  std::vector<std::string> names;
  for (size_t i = 0; i < latency.size(); ++i) names.push_back("ep" + std::to_string(i));
  std::vector<std::string_view> keys(names.begin(), names.end());
  std::vector<int> got(latency.size());
  std::mt19937_64 rng(seed ^ 0x5eed);
  std::uniform_real_distribution<double> noise(1 - jitter, 1 + jitter);
  using Done = std::pair<Clock::time_point, size_t>;  // when, endpoint
  std::priority_queue<Done, std::vector<Done>, std::greater<>> in_flight;
  Clock::time_point now{};
  int sent = 0;
  while (sent < total || !in_flight.empty()) {
    while (sent < total && static_cast<int>(in_flight.size()) < concurrency) {
      size_t i = b.Choose(keys, now);
      b.Started(keys[i], now);
      ++got[i];
      ++sent;
      auto rtt = std::chrono::duration_cast<Clock::duration>(latency[i] * noise(rng));
      in_flight.push({now + rtt, i});
    }
    auto [when, i] = in_flight.top();
    in_flight.pop();
    now = when;
    b.Finished(keys[i], false, now);
  }
  return got;
}

TEST(BalancerTest, EqualEndpointsUnderConcurrencyGetEvenShares) {
  for (uint64_t seed : {1, 2, 3}) {
    auto got = Simulate({500us, 500us, 500us}, 3000, 8, 0.2, seed);
    for (int g : got) {
      EXPECT_GE(g, 900) << "seed " << seed;
      EXPECT_LE(g, 1100) << "seed " << seed;
    }
  }
}

TEST(BalancerTest, EqualEndpointsGetEvenSharesOfSequentialRequests) {
  // One request at a time: nothing is ever outstanding, so every pair is a tie settled by its
  // random order: the shares stay even instead of piling on one.
  for (uint64_t seed : {1, 2, 3}) {
    auto got = Simulate({500us, 500us, 500us}, 3000, 1, 0.2, seed);
    for (int g : got) {
      EXPECT_GE(g, 900) << "seed " << seed;
      EXPECT_LE(g, 1100) << "seed " << seed;
    }
  }
}

TEST(BalancerTest, ASlowEndpointGetsLessTraffic) {
  auto got = Simulate({500us, 500us, 5000us}, 3000, 8, 0.1, 7);
  EXPECT_LT(got[2] * 4, got[0]);
  EXPECT_LT(got[2] * 4, got[1]);
}

TEST(BalancerTest, OutstandingRequestsSpreadBeforeAnyAnswer) {
  // Nothing has answered yet: fewer outstanding wins, so 30 requests in a burst spread over the
  // three endpoints instead of piling on one.
  Balancer b({}, 11);
  std::vector<std::string_view> keys = {"a", "b", "c"};
  std::map<std::string_view, int> got;
  Clock::time_point now{};
  for (int i = 0; i < 30; ++i) {
    size_t k = b.Choose(keys, now);
    b.Started(keys[k], now);
    ++got[keys[k]];
  }
  for (const auto& k : keys) {
    EXPECT_GE(got[k], 7) << k;
    EXPECT_LE(got[k], 13) << k;
    EXPECT_EQ(b.Outstanding(k), static_cast<uint32_t>(got[k]));
  }
}

TEST(BalancerTest, AFailedEndpointIsBarredWithABackoffThatDoubles) {
  Balancer b({}, 5);
  std::vector<std::string_view> keys = {"ok", "bad"};
  Clock::time_point now{};
  b.Started("bad", now);
  b.Finished("bad", /*failed=*/true, now);
  int bad = 0;
  for (int i = 0; i < 100; ++i) bad += b.Choose(keys, now) == 1;
  EXPECT_EQ(bad, 0) << "barred for 1 s";
  now += 1100ms;
  EXPECT_FALSE(b.Barred("bad", now));
  b.Finished("bad", true, now);  // fails again: 2 s
  EXPECT_TRUE(b.Barred("bad", now + 1900ms));
  EXPECT_FALSE(b.Barred("bad", now + 2100ms));
  b.Finished("bad", false, now + 2100ms);  // a success resets the backoff
  b.Finished("bad", true, now + 2200ms);
  EXPECT_FALSE(b.Barred("bad", now + 3300ms));
  // Only barred endpoints left: one is still chosen (the caller then answers or fails it).
  std::vector<std::string_view> only = {"bad"};
  EXPECT_EQ(b.Choose(only, now), 0u);
}

TEST(BalancerTest, PruneForgetsIdleEndpointsOnly) {
  Balancer b({}, 9);
  Clock::time_point now{};
  b.Finished("idle", false, now);
  b.Started("busy", now);
  b.Prune(now + 1h, 10min);
  EXPECT_EQ(b.size(), 1u);
  EXPECT_EQ(b.Outstanding("busy"), 1u);
}

TEST(BalancerTest, OneEndpointIsAlwaysChosen) {
  Balancer b;
  std::vector<std::string_view> keys = {"only"};
  EXPECT_EQ(b.Choose(keys, Clock::now()), 0u);
}

}  // namespace
}  // namespace weft::ztunnel
