// The soak's arithmetic, kept free of I/O so it is unit-tested (analysis_test.cc): least-squares
// slopes of the processes' RSS and open descriptors after warm-up, and which failed requests the
// churn explains.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace weft::soak {

// ---- slopes ---------------------------------------------------------------------------------

struct Point {
  double t = 0;  // seconds
  double v = 0;
};

struct Fit {
  double slope = 0;  // v per second
  double intercept = 0;
  int n = 0;
};

// Ordinary least squares v = intercept + slope * t. nullopt with fewer than 3 points or when
// every t is the same.
std::optional<Fit> LeastSquares(const std::vector<Point>& points);

// One reading of one process (weftd, a node's ztunnel or agent, the supervisor).
struct ProcSample {
  double t = 0;  // seconds since the load started
  pid_t pid = 0;
  double rss_kib = 0;
  double fds = 0;
};

// The trend of one process after warm-up: the samples at t >= `from` and t <= `to` of the
// incarnation alive at the last of them (a restart after warm-up is reported, not fitted across).
struct Trend {
  std::string process;
  int samples = 0;
  double rss_kib_first = 0, rss_kib_last = 0, fds_first = 0, fds_last = 0;
  double rss_kib_per_min = 0, fds_per_min = 0;
  int pids_after_warmup = 0;  // incarnations seen in the window (1 when it never restarted)
  bool fitted = false;        // enough samples of one incarnation
};
Trend TrendOf(const std::string& process, const std::vector<ProcSample>& samples, double from,
              double to);

// ---- errors ---------------------------------------------------------------------------------

// One load segment of one stream (weft-soak load prints one per --segment).
struct Segment {
  std::string stream;
  double t0 = 0, t1 = 0;  // seconds since the load started
  uint64_t requests = 0, ok = 0, errors = 0;
};

// A churn action's time span. Errors of a segment of an affected stream that overlaps it are
// attributed to it; `explains` says whether they are expected (a DENY on that stream, a ztunnel
// restart) or still count as unexplained (an agent restart, an endpoint move: the mesh promises
// no interruption there).
struct Window {
  std::string what;
  double t0 = 0, t1 = 0;
  std::vector<std::string> streams;  // empty: every stream
  bool explains = false;
};

struct ErrorTally {
  uint64_t requests = 0, ok = 0, errors = 0, explained = 0, unexplained = 0;
  std::map<std::string, uint64_t> errors_by_window;  // every error in a window, explained or not
  std::map<std::string, uint64_t> errors_by_stream;
  std::vector<Segment> unexplained_segments;
};
ErrorTally TallyErrors(const std::vector<Segment>& segments, const std::vector<Window>& windows);

// Parses a line "SEGMENT {json}" written by weft-soak load; nullopt for any other line. Times in
// the line are Unix milliseconds; `origin_ms` (when the load started) makes them relative.
std::optional<Segment> ParseSegmentLine(const std::string& line, const std::string& stream,
                                        double origin_ms);

nlohmann::json ToJson(const Trend& t);
nlohmann::json ToJson(const ErrorTally& t);
nlohmann::json ToJson(const Window& w);

}  // namespace weft::soak
