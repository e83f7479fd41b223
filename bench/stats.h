// Percentiles of latency samples (the dataplane client's ping-pong figures). Pure functions, no
// I/O; thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

namespace weft::bench {

// The q-quantile (0 <= q <= 1) of `sorted` (ascending) by the nearest-rank method: the
// smallest sample such that at least q*n samples are <= it. 0 for an empty vector.
int64_t Percentile(const std::vector<int64_t>& sorted, double q);

struct LatencySummary {
  int64_t count = 0;
  double min_us = 0, mean_us = 0, max_us = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0;
};

// Summarises round-trip samples given in nanoseconds (sorts `samples_ns` in place).
LatencySummary Summarize(std::vector<int64_t>& samples_ns);

}  // namespace weft::bench
