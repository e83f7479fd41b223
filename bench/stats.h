// Small statistics helpers for weft-bench: percentiles of latency samples and medians of
// per-round results. Pure functions, no I/O; thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

namespace weft::bench {

// The q-quantile (0 <= q <= 1) of `sorted` (ascending) by the nearest-rank method: the
// smallest sample such that at least q*n samples are <= it. 0 for an empty vector.
int64_t Percentile(const std::vector<int64_t>& sorted, double q);

// The median of `v` (mean of the two middle values for an even count); 0 for an empty vector.
double Median(std::vector<double> v);

// mesh / bare, or 0 when bare is 0 (a ratio of nothing is reported as 0, never inf/NaN).
double Ratio(double mesh, double bare);

struct LatencySummary {
  int64_t count = 0;
  double min_us = 0, mean_us = 0, max_us = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0;
};

// Summarises round-trip samples given in nanoseconds (sorts `samples_ns` in place).
LatencySummary Summarize(std::vector<int64_t>& samples_ns);

}  // namespace weft::bench
