#include "bench/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>

namespace weft::bench::loadgen {
namespace {
constexpr int64_t kSub = int64_t{1} << Histogram::kSubBits;  // 128
constexpr int64_t kLinear = 2 * kSub;                        // values below are exact
}  // namespace

size_t Histogram::IndexOf(int64_t v) {
  v = std::clamp<int64_t>(v, 0, kMaxValue);
  if (v < kLinear) return static_cast<size_t>(v);
  const int msb = 63 - std::countl_zero(static_cast<uint64_t>(v));
  const int shift = msb - kSubBits;  // >= 1
  const int64_t sub = v >> shift;    // [kSub, 2*kSub)
  return static_cast<size_t>(kLinear + (shift - 1) * kSub + (sub - kSub));
}

int64_t Histogram::LowestOf(size_t index) {
  const auto i = static_cast<int64_t>(index);
  if (i < kLinear) return i;
  const int64_t shift = (i - kLinear) / kSub + 1;
  const int64_t sub = (i - kLinear) % kSub + kSub;
  return sub << shift;
}

int64_t Histogram::HighestOf(size_t index) {
  const auto i = static_cast<int64_t>(index);
  if (i < kLinear) return i;
  const int64_t shift = (i - kLinear) / kSub + 1;
  return LowestOf(index) + (int64_t{1} << shift) - 1;
}

void Histogram::Record(int64_t value, uint64_t times) {
  if (times == 0) return;
  value = std::clamp<int64_t>(value, 0, kMaxValue);
  const size_t i = IndexOf(value);
  if (i >= counts_.size()) counts_.resize(i + 1, 0);
  counts_[i] += times;
  if (count_ == 0) {
    min_ = max_ = value;
  } else {
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }
  count_ += times;
  sum_ += static_cast<__int128>(value) * times;
}

void Histogram::Merge(const Histogram& o) {
  if (o.count_ == 0) return;
  if (o.counts_.size() > counts_.size()) counts_.resize(o.counts_.size(), 0);
  for (size_t i = 0; i < o.counts_.size(); ++i) counts_[i] += o.counts_[i];
  if (count_ == 0) {
    min_ = o.min_;
    max_ = o.max_;
  } else {
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }
  count_ += o.count_;
  sum_ += o.sum_;
}

int64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  if (q >= 1.0) return max_;
  // Nearest rank, 1-based: ceil(q*n), at least 1.
  const uint64_t rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(HighestOf(i), min_, max_);
  }
  return max_;
}

uint64_t Histogram::CountAtOrAbove(int64_t value) const {
  uint64_t n = 0;
  for (size_t i = IndexOf(value); i < counts_.size(); ++i) n += counts_[i];
  return n;
}

nlohmann::json Histogram::ToJson() const {
  // Dense counts from the lowest to the highest non-empty bucket: a latency histogram's buckets
  // are mostly adjacent, so this is a third of the size of [index, count] pairs.
  size_t first = 0, end = counts_.size();
  while (first < end && counts_[first] == 0) ++first;
  while (end > first && counts_[end - 1] == 0) --end;
  nlohmann::json counts = nlohmann::json::array();
  for (size_t i = first; i < end; ++i) counts.push_back(counts_[i]);
  return {{"sub_bucket_bits", kSubBits},
          {"count", count_},
          {"min", min()},
          {"max", max()},
          {"sum", static_cast<double>(sum_)},
          {"first_bucket", first < end ? first : 0},
          {"counts", std::move(counts)}};
}

absl::StatusOr<Histogram> Histogram::FromJson(const nlohmann::json& j) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError("histogram JSON: " + what +
                                      " (expected the \"histogram\" object weft-loadgen wrote)");
  };
  if (!j.is_object()) return bad("not an object");
  if (!j.contains("sub_bucket_bits") || !j["sub_bucket_bits"].is_number_integer() ||
      j["sub_bucket_bits"].get<int>() != kSubBits) {
    return bad("sub_bucket_bits must be " + std::to_string(kSubBits));
  }
  if (!j.contains("counts") || !j["counts"].is_array()) return bad("no \"counts\" array");
  if (!j.contains("first_bucket") || !j["first_bucket"].is_number_unsigned()) {
    return bad("no \"first_bucket\" (a non-negative integer)");
  }
  Histogram h;
  const auto first = j["first_bucket"].get<uint64_t>();
  const nlohmann::json& counts = j["counts"];
  if (!counts.empty() && first + counts.size() - 1 > IndexOf(kMaxValue)) {
    return bad("bucket index out of range: " + std::to_string(first + counts.size() - 1));
  }
  for (size_t i = 0; i < counts.size(); ++i) {
    if (!counts[i].is_number_unsigned()) {
      return bad("a bucket count is not a non-negative integer: " + counts[i].dump());
    }
    const auto n = counts[i].get<uint64_t>();
    if (n == 0) continue;
    if (first + i >= h.counts_.size()) h.counts_.resize(first + i + 1, 0);
    h.counts_[first + i] += n;
    h.count_ += n;
  }
  if (h.count_ == 0) return h;
  // min/max/sum are exact when present and consistent with the buckets; otherwise derived.
  size_t lo = 0, hi = h.counts_.size() - 1;
  while (h.counts_[lo] == 0) ++lo;
  h.min_ = LowestOf(lo);
  h.max_ = HighestOf(hi);
  if (j.contains("min") && j["min"].is_number_integer()) {
    const auto v = j["min"].get<int64_t>();
    if (IndexOf(v) != lo) return bad("\"min\" does not fall in the lowest bucket");
    h.min_ = v;
  }
  if (j.contains("max") && j["max"].is_number_integer()) {
    const auto v = j["max"].get<int64_t>();
    if (IndexOf(v) != hi) return bad("\"max\" does not fall in the highest bucket");
    h.max_ = v;
  }
  if (j.contains("sum") && j["sum"].is_number()) {
    h.sum_ = static_cast<__int128>(j["sum"].get<double>());
  } else {
    for (size_t i = 0; i < h.counts_.size(); ++i) {
      h.sum_ += static_cast<__int128>(LowestOf(i)) * h.counts_[i];
    }
  }
  return h;
}

}  // namespace weft::bench::loadgen
