// Reading Weft's HTTP endpoints from tools and tests: an HTTP GET (libcurl) that can run from
// inside a network namespace, and a lookup over Prometheus text exposition.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"

namespace weft {

// GET http://addr/path. The socket is created inside `netns_fd` (-1: current netns).
// Returns the body; on a non-2xx status, an error unless `status` is given (then it is set).
absl::StatusOr<std::string> HttpGet(const SockAddr& addr, const std::string& path,
                                    int netns_fd = -1, int* status = nullptr,
                                    long timeout_ms = 5000);

// The same for a whole URL (http or https; a host name is resolved), e.g. a Prometheus
// server's query API.
absl::StatusOr<std::string> HttpGetUrl(const std::string& url, int netns_fd = -1,
                                       int* status = nullptr, long timeout_ms = 5000);

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// The samples whose metric name starts with `name_prefix` (Prometheus text format 0.0.4, as
// prometheus-cpp writes it; label values unescaped); comments and malformed lines are skipped.
// No Debian package parses this format, hence this small reader.
std::vector<MetricSample> ParseSamples(const std::string& text, const std::string& name_prefix);

// Sum of the values of samples named exactly `name` whose label set includes every pair in
// `labels` (Prometheus text format 0.0.4, as prometheus-cpp writes it).
double MetricSum(const std::string& text, const std::string& name,
                 const std::map<std::string, std::string>& labels = {});

}  // namespace weft
