// A log-linear latency histogram (HDR-style) for weft-loadgen: bounded relative error, constant
// memory, mergeable across runs and processes through its JSON form.
//
// Values are non-negative integers (weft-loadgen records nanoseconds). Values below 2^(kSubBits+1)
// (256) have a bucket each and are exact; above, every power of two [2^e, 2^(e+1)) is split into
// 2^kSubBits (128) equal buckets, so a bucket's width is at most 1/128 (0.79 %) of its lower
// bound. Percentile() reports the highest value of the bucket holding the nearest-rank sample
// (clamped to the recorded min/max): never below the exact sample and at most 1/128 of it above
// (kRelativeError). min, max, count and sum are exact. Values above kMaxValue (about 73 minutes in
// ns) are clamped to it. Thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace weft::bench::loadgen {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr double kRelativeError = 1.0 / (1 << kSubBits);
  static constexpr int64_t kMaxValue = (int64_t{1} << 42) - 1;

  void Record(int64_t value, uint64_t times = 1);
  void Merge(const Histogram& other);

  uint64_t count() const { return count_; }
  int64_t min() const { return count_ ? min_ : 0; }
  int64_t max() const { return count_ ? max_ : 0; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0; }

  // Nearest rank: the smallest recorded value v such that at least q*count values are <= v,
  // within the error bound above. 0 when empty; q is clamped to [0, 1] (q=1 is max()).
  int64_t Percentile(double q) const;
  // How many recorded values are >= value (bucket resolution: values in value's bucket count).
  uint64_t CountAtOrAbove(int64_t value) const;

  // {"sub_bucket_bits":7,"count":..,"min":..,"max":..,"sum":..,"first_bucket":i,
  //  "counts":[count of bucket i, of i+1, ...]} (from the lowest to the highest non-empty
  // bucket). FromJson rejects other bucket layouts and malformed input.
  nlohmann::json ToJson() const;
  static absl::StatusOr<Histogram> FromJson(const nlohmann::json& j);

  // The bucket index of a value and the lowest/highest value of a bucket (exposed for tests).
  static size_t IndexOf(int64_t value);
  static int64_t LowestOf(size_t index);
  static int64_t HighestOf(size_t index);

 private:
  std::vector<uint64_t> counts_;  // grown on demand
  uint64_t count_ = 0;
  int64_t min_ = 0, max_ = 0;
  __int128 sum_ = 0;
};

}  // namespace weft::bench::loadgen
