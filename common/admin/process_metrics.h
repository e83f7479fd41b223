// The process_* metrics every Prometheus client library exports (the names, types and meanings
// of the Prometheus "process collector": client_golang's, which Istio's components export and
// Istio's ztunnel dashboard reads), read from /proc/self at scrape time:
//   process_cpu_seconds_total      counter  user + system CPU time
//   process_open_fds               gauge    open file descriptors
//   process_max_fds                gauge    the soft RLIMIT_NOFILE
//   process_virtual_memory_bytes   gauge    virtual memory size
//   process_resident_memory_bytes  gauge    resident set size
//   process_start_time_seconds     gauge    start time, seconds since the Unix epoch
// AdminServer renders them on every /metrics (AdminOptions::process_metrics).
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

namespace weft {

// The families above for the calling process. A value that cannot be read (no /proc) is left
// out, never reported as 0.
std::vector<prometheus::MetricFamily> CollectProcessMetrics();

}  // namespace weft
