// The dataplane client's statistics: the ping-pong percentiles come from these functions.
#include "bench/stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace weft::bench {
namespace {

TEST(Stats, PercentileIsNearestRank) {
  std::vector<int64_t> v;
  for (int i = 1; i <= 1000; i++) v.push_back(i);
  EXPECT_EQ(Percentile(v, 0.5), 500);
  EXPECT_EQ(Percentile(v, 0.9), 900);
  EXPECT_EQ(Percentile(v, 0.99), 990);
  EXPECT_EQ(Percentile(v, 0.999), 999);
  EXPECT_EQ(Percentile(v, 1.0), 1000);
  EXPECT_EQ(Percentile(v, 0.0), 1);
  EXPECT_EQ(Percentile({}, 0.5), 0);
  EXPECT_EQ(Percentile({7}, 0.999), 7);
}

TEST(Stats, SummarizeSortsAndConvertsToMicroseconds) {
  std::vector<int64_t> ns;
  for (int i = 1; i <= 10000; i++) ns.push_back(i * 1000);  // 1..10000 us
  std::shuffle(ns.begin(), ns.end(), std::mt19937(42));
  LatencySummary s = Summarize(ns);
  EXPECT_EQ(s.count, 10000);
  EXPECT_DOUBLE_EQ(s.min_us, 1);
  EXPECT_DOUBLE_EQ(s.max_us, 10000);
  EXPECT_DOUBLE_EQ(s.mean_us, 5000.5);
  EXPECT_DOUBLE_EQ(s.p50_us, 5000);
  EXPECT_DOUBLE_EQ(s.p90_us, 9000);
  EXPECT_DOUBLE_EQ(s.p99_us, 9900);
  EXPECT_DOUBLE_EQ(s.p999_us, 9990);
  EXPECT_TRUE(std::is_sorted(ns.begin(), ns.end()));
}

}  // namespace
}  // namespace weft::bench
