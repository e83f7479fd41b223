#include "bench/stats.h"

#include <algorithm>
#include <cmath>

namespace weft::bench {

int64_t Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Nearest rank: ceil(q*n) as a 1-based rank; rank 0 (q == 0) means the minimum.
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

LatencySummary Summarize(std::vector<int64_t>& samples_ns) {
  LatencySummary s;
  if (samples_ns.empty()) return s;
  std::sort(samples_ns.begin(), samples_ns.end());
  s.count = static_cast<int64_t>(samples_ns.size());
  double sum = 0;
  for (int64_t v : samples_ns) sum += static_cast<double>(v);
  auto us = [](int64_t ns) { return static_cast<double>(ns) / 1000.0; };
  s.min_us = us(samples_ns.front());
  s.max_us = us(samples_ns.back());
  s.mean_us = sum / static_cast<double>(s.count) / 1000.0;
  s.p50_us = us(Percentile(samples_ns, 0.50));
  s.p90_us = us(Percentile(samples_ns, 0.90));
  s.p99_us = us(Percentile(samples_ns, 0.99));
  s.p999_us = us(Percentile(samples_ns, 0.999));
  return s;
}

}  // namespace weft::bench
