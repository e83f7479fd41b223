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
  std::vector<std::string> keys;
  for (size_t i = 0; i < latency.size(); ++i) keys.push_back("ep" + std::to_string(i));
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
    b.Finished(keys[i], latency[i], false, now);
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
  // One request at a time: nothing is ever outstanding, so only the latency estimates differ,
  // by noise; near-ties are random, so the shares stay even instead of piling on one.
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
  // Nothing has answered yet: every cost is default_rtt × (outstanding + 1), so 30 requests in a
  // burst spread over the three endpoints instead of piling on one.
  Balancer b({}, 11);
  std::vector<std::string> keys = {"a", "b", "c"};
  std::map<std::string, int> got;
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
  std::vector<std::string> keys = {"ok", "bad"};
  Clock::time_point now{};
  b.Started("bad", now);
  b.Finished("bad", 1ms, /*failed=*/true, now);
  int bad = 0;
  for (int i = 0; i < 100; ++i) bad += b.Choose(keys, now) == 1;
  EXPECT_EQ(bad, 0) << "barred for 1 s";
  now += 1100ms;
  EXPECT_FALSE(b.Barred("bad", now));
  b.Finished("bad", 1ms, true, now);  // fails again: 2 s
  EXPECT_TRUE(b.Barred("bad", now + 1900ms));
  EXPECT_FALSE(b.Barred("bad", now + 2100ms));
  b.Finished("bad", 1ms, false, now + 2100ms);  // a success resets the backoff
  b.Finished("bad", 1ms, true, now + 2200ms);
  EXPECT_FALSE(b.Barred("bad", now + 3300ms));
  // Only barred endpoints left: one is still chosen (the caller then answers or fails it).
  std::vector<std::string> only = {"bad"};
  EXPECT_EQ(b.Choose(only, now), 0u);
}

TEST(BalancerTest, AnOutlierBarelyMovesTheEstimateButASlowDownTakesOver) {
  Balancer b({}, 3);
  Clock::time_point now{};
  for (int i = 0; i < 1000; ++i, now += 1ms) b.Finished("a", 1ms, false, now);
  b.Finished("a", 50ms, false, now);  // one hiccup among requests every millisecond
  EXPECT_LT(b.Latency("a", now), 1.1e6);
  for (int i = 0; i < 3000; ++i, now += 1ms) b.Finished("a", 10ms, false, now);  // 3 s slower
  EXPECT_GT(b.Latency("a", now), 9e6);
}

TEST(BalancerTest, AnEndpointWithoutSamplesCountsTheMeanOfTheKnownOnes) {
  Balancer b({}, 4);
  Clock::time_point now{};
  b.Finished("a", 1ms, false, now);  // the first sample meets default_rtt (1 ms) half way
  b.Finished("b", 3ms, false, now);  // meets a's 1 ms half way: 2 ms
  EXPECT_DOUBLE_EQ(b.Latency("new", now), 1.5e6);
  b.Finished("c", 50ms, false, now, /*sample=*/false);  // paid for a connection: not learnt
  EXPECT_DOUBLE_EQ(b.Latency("c", now), 1.5e6);
}

TEST(BalancerTest, PruneForgetsIdleEndpointsOnly) {
  Balancer b({}, 9);
  Clock::time_point now{};
  b.Finished("idle", 1ms, false, now);
  b.Started("busy", now);
  b.Prune(now + 1h, 10min);
  EXPECT_EQ(b.size(), 1u);
  EXPECT_EQ(b.Outstanding("busy"), 1u);
}

TEST(BalancerTest, OneEndpointIsAlwaysChosen) {
  Balancer b;
  std::vector<std::string> keys = {"only"};
  EXPECT_EQ(b.Choose(keys, Clock::now()), 0u);
}

}  // namespace
}  // namespace weft::ztunnel
