#include "bench/loadgen/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace weft::bench::loadgen {
namespace {

int64_t ExactNearestRank(const std::vector<int64_t>& sorted, double q) {
  if (q >= 1.0) return sorted.back();
  const auto rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q * sorted.size())));
  return sorted[rank - 1];
}

// Reported percentile is never below the exact one and at most 1/128 of it above.
void ExpectWithinBound(const Histogram& h, std::vector<int64_t> values) {
  std::sort(values.begin(), values.end());
  for (double q : {0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const int64_t exact = ExactNearestRank(values, q);
    const int64_t got = h.Percentile(q);
    EXPECT_GE(got, exact) << "q=" << q;
    EXPECT_LE(static_cast<double>(got - exact), exact * Histogram::kRelativeError) << "q=" << q;
  }
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.count(), values.size());
}

TEST(Histogram, BucketLayoutIsContiguousAndBounded) {
  // Every value maps to a bucket whose [lowest, highest] contains it, buckets tile the range.
  for (size_t i = 0; i + 1 < Histogram::IndexOf(Histogram::kMaxValue); ++i) {
    ASSERT_EQ(Histogram::HighestOf(i) + 1, Histogram::LowestOf(i + 1)) << i;
    ASSERT_LE(Histogram::HighestOf(i) - Histogram::LowestOf(i),
              static_cast<int64_t>(Histogram::LowestOf(i) * Histogram::kRelativeError))
        << i;
  }
  std::mt19937_64 rng(1);
  for (int k = 0; k < 100000; ++k) {
    const int64_t v = static_cast<int64_t>(rng() % static_cast<uint64_t>(Histogram::kMaxValue));
    const size_t i = Histogram::IndexOf(v);
    ASSERT_LE(Histogram::LowestOf(i), v);
    ASSERT_GE(Histogram::HighestOf(i), v);
  }
  for (int64_t v = 0; v < 256; ++v) EXPECT_EQ(Histogram::LowestOf(Histogram::IndexOf(v)), v);
}

TEST(Histogram, EmptyAndSingle) {
  Histogram h;
  EXPECT_EQ(h.Percentile(0.5), 0);
  EXPECT_EQ(h.count(), 0u);
  h.Record(123456789);
  for (double q : {0.0, 0.5, 0.999, 1.0}) EXPECT_EQ(h.Percentile(q), 123456789);
  EXPECT_DOUBLE_EQ(h.mean(), 123456789.0);
}

TEST(Histogram, RandomDataMatchesExactPercentilesWithinBound) {
  std::mt19937_64 rng(42);
  // Latency-like: log-normal around 1 ms in ns, plus a uniform and a tiny-value population.
  std::lognormal_distribution<double> lognormal(std::log(1e6), 1.0);
  std::uniform_int_distribution<int64_t> uniform(0, 5'000'000'000);
  std::uniform_int_distribution<int64_t> small(0, 300);
  for (int round = 0; round < 3; ++round) {
    Histogram h;
    std::vector<int64_t> values;
    for (int i = 0; i < 200000; ++i) {
      int64_t v = round == 0   ? static_cast<int64_t>(lognormal(rng))
                  : round == 1 ? uniform(rng)
                               : small(rng);
      values.push_back(v);
      h.Record(v);
    }
    ExpectWithinBound(h, values);
    long double sum = 0;
    for (int64_t v : values) sum += v;
    EXPECT_NEAR(h.mean(), static_cast<double>(sum / values.size()), 1e-6 * h.mean() + 1e-9);
  }
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> d(std::log(2e5), 1.5);
  Histogram a, b, all;
  std::vector<int64_t> values;
  for (int i = 0; i < 50000; ++i) {
    const auto v = static_cast<int64_t>(d(rng));
    values.push_back(v);
    (i % 3 ? a : b).Record(v);
    all.Record(v);
  }
  Histogram m = a;
  m.Merge(b);
  EXPECT_EQ(m.ToJson(), all.ToJson());
  ExpectWithinBound(m, values);
  Histogram empty;
  empty.Merge(m);
  EXPECT_EQ(empty.ToJson(), all.ToJson());
}

TEST(Histogram, JsonRoundTripAndErrors) {
  Histogram h;
  for (int64_t v : {0, 5, 300, 70'000, 1'000'000'000, 999}) h.Record(v, 3);
  auto back = Histogram::FromJson(h.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), h.ToJson());
  for (double q : {0.1, 0.5, 0.9, 1.0}) EXPECT_EQ(back->Percentile(q), h.Percentile(q));

  EXPECT_FALSE(Histogram::FromJson(nlohmann::json::array()).ok());
  auto j = h.ToJson();
  j["sub_bucket_bits"] = 5;
  auto s = Histogram::FromJson(j);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("sub_bucket_bits must be 7"), std::string::npos);
  j = h.ToJson();
  j["counts"].push_back(-3);
  EXPECT_FALSE(Histogram::FromJson(j).ok());
  j = h.ToJson();
  j["first_bucket"] = 999999999;
  EXPECT_FALSE(Histogram::FromJson(j).ok());
  j = h.ToJson();
  j.erase("first_bucket");
  EXPECT_FALSE(Histogram::FromJson(j).ok());
  // Dense from the lowest to the highest non-empty bucket.
  j = h.ToJson();
  EXPECT_EQ(j["first_bucket"], 0);
  EXPECT_EQ(j["counts"].size(), Histogram::IndexOf(1'000'000'000) + 1);
  EXPECT_EQ(Histogram().ToJson()["counts"].size(), 0u);
}

TEST(Histogram, CountAtOrAboveAndClamping) {
  Histogram h;
  for (int64_t v = 1; v <= 1000; ++v) h.Record(v * 1000);
  EXPECT_EQ(h.CountAtOrAbove(500'000), 501u);  // 500 000's bucket starts at 499 712, above 499 000
  EXPECT_EQ(h.CountAtOrAbove(0), 1000u);
  h.Record(-5);
  EXPECT_EQ(h.min(), 0);
  h.Record(Histogram::kMaxValue * 4);
  EXPECT_EQ(h.max(), Histogram::kMaxValue);
}

}  // namespace
}  // namespace weft::bench::loadgen
