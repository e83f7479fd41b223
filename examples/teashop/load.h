// `weft-teashop --role load`: a small closed-loop driver for the demo. Each of `concurrency`
// users sends the front end's eight request types in turn (kRequestTypes), the next request as
// soon as the previous answered, for `duration` (each user finishes at least one full cycle while
// the front end answers). (The benchmark's open-loop generator with corrected latency lives in
// bench/; this one only shows the shop working.)
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "examples/teashop/catalogue.h"
#include "examples/teashop/http.h"
#include "nlohmann/json.hpp"

namespace weft::teashop {

struct LoadOptions {
  std::string target;  // the front end, http://HOST[:PORT]
  // Set: every user GETs this path of `target` in a loop (reported as type "get"), e.g. one
  // back end's /teas/1, instead of the front end's eight request types.
  std::string path;
  std::chrono::milliseconds duration{10000};
  int concurrency = 4;
  int threads = 1;
  ConnMode conn = ConnMode::kKeepAlive;
  std::chrono::milliseconds timeout{5000};
  int catalogue_size = Catalogue::kDefaultSize;  // ids to ask for: 1..catalogue_size
  uint32_t seed = 1;
};

struct TypeStats {
  std::map<int, uint64_t> by_status;  // HTTP status -> count; 0: no response (transport error)
  uint64_t requests = 0;
  double total_ms = 0, max_ms = 0;
  std::string last_error;      // of the last failed request (status >= 400 or no response)
  uint64_t Successes() const;  // 2xx
};

struct LoadReport {
  // by request type name: all eight present, or only "get" for a --path run
  std::map<std::string, TypeStats> types;
  double seconds = 0;
  uint64_t Requests() const;
  uint64_t Successes() const;
  // {"seconds", "requests", "successes", "types": {NAME: {"requests", "statuses": {"200": n},
  //  "mean_ms", "max_ms", "last_error"}}}
  nlohmann::json ToJson() const;
  std::string ToTable() const;  // for people
};

// Runs the load; an error only for bad options (e.g. an unparsable target).
absl::StatusOr<LoadReport> RunLoad(const LoadOptions& opts);

}  // namespace weft::teashop
