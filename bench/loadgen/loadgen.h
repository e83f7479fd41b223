// weft-loadgen: an open-loop HTTP/1.1, h2c and gRPC load generator (constant arrival rate,
// coordinated omission corrected), the benchmark suite's load driver (issue 6).
//
// Schedule. `users` users each send `rate_per_user` requests/s, uniformly paced: user u's k-th
// request is INTENDED at start + u*T/users + k*T (T = 1/rate_per_user), so the users' schedules
// are staggered evenly over one period. A user cycles over the profile's request types in
// order (user u starts at type 0, like a TeaStore user). Each user sends its requests one at a
// time (in keep-alive mode on its own connection, as a browser tab or a JMeter thread does): a
// request whose time came while the user's previous one is still running, or while all
// `max_inflight` slots are taken, waits and is sent as soon as it can. Its latency is still
// measured from its intended time, so a stall of the system is counted in full by every request
// scheduled during it (the coordinated-omission correction of wrk2), not only by the one that
// met it. Service time (from the actual send, connect included in per-request mode) is recorded
// separately.
//
// Phases. Requests intended before start+warmup are sent but not recorded; requests intended in
// [start+warmup, start+warmup+duration) are recorded; none are scheduled after. The run then
// waits for the recorded ones still queued or in flight, at most `drain` (those still unsent or
// unanswered then are counted as `unfinished`, never as latencies).
//
// A request succeeds when it gets a 2xx or 3xx response; others count as status errors (per
// code), transport failures (connect, send, receive, timeout) as transport errors. Latency
// histograms (ns) hold successful requests only: full response and time to first response byte
// from the intended time, full response from the actual send (service).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/loadgen/histogram.h"
#include "bench/loadgen/profile.h"
#include "nlohmann/json.hpp"

namespace weft::bench::loadgen {

enum class ConnMode { kKeepAlive, kPerRequest };
// kH2c: HTTP/2 over cleartext with prior knowledge (nghttp2), one request at a time per user's
// connection as over HTTP/1.1. kGrpc: the same, each request a unary gRPC call (the profile's
// body framed as one gRPC message, content-type application/grpc, te: trailers); it succeeds
// on HTTP 200 with grpc-status 0; a call that fails with another grpc-status is a status error
// counted under the code 1000 + grpc-status (1000 + 99 when grpc-status is missing).
enum class Protocol { kHttp1, kH2c, kGrpc };

struct Options {
  std::string target;  // "http://HOST[:PORT][/base]"; HOST a name or an IPv4/IPv6 address
  int users = 1;
  double rate_per_user = 1;  // requests/s per user; or set total_rate
  double total_rate = 0;     // > 0: rate_per_user = total_rate / users
  std::chrono::milliseconds duration{10000};
  std::chrono::milliseconds warmup{2000};
  std::chrono::milliseconds timeout{10000};  // per request (connect + send + receive)
  std::chrono::milliseconds drain{10000};    // after the measured window
  ConnMode conn = ConnMode::kKeepAlive;
  Protocol protocol = Protocol::kHttp1;
  int max_inflight = 0;  // 0: as many as users
  // Threads, each with its own io_context and a share of the users (user u on thread
  // u % threads, max_inflight split evenly), all on one schedule: the same requests at the same
  // intended times as with one thread, so only the generator's own ceiling moves (1 to 64).
  int threads = 1;
  Profile profile;  // empty: TeashopProfile()
  // Create every socket inside this network namespace (a /proc/PID/ns/net or /run/netns/NAME
  // path; empty: the current one). Names are resolved in the caller's namespace.
  std::string netns;
};

struct TypeResult {
  uint64_t sent = 0;  // recorded requests that were sent
  uint64_t ok = 0;    // 2xx/3xx
  uint64_t status_errors = 0;
  uint64_t transport_errors = 0;
  uint64_t unfinished = 0;           // recorded requests not done when the drain ended
  std::map<int, uint64_t> statuses;  // every status code seen (recorded requests)
  Histogram latency, ttfb, service;  // ns; successful recorded requests
  void Merge(const TypeResult& o);
  nlohmann::json ToJson() const;
};

struct Result {
  Options options;  // as run (rate_per_user and max_inflight resolved)
  double asked_rps = 0;
  double achieved_rps = 0;              // completed recorded requests / measured seconds
  double measured_seconds = 0;          // duration, or longer when completions ran past its end
  uint64_t scheduled = 0;               // recorded requests the schedule asked for
  uint64_t late_sends = 0;              // recorded requests sent >= 1 ms after their intended time
  std::vector<std::string> type_order;  // profile order
  std::map<std::string, TypeResult> types;
  TypeResult overall;
  uint64_t connections_opened = 0;

  uint64_t errors() const { return overall.status_errors + overall.transport_errors; }
  nlohmann::json ToJson() const;
  std::string Summary() const;  // a few human-readable lines
};

absl::StatusOr<ConnMode> ParseConnMode(std::string_view s);  // "keepalive" | "per-request"
absl::StatusOr<Protocol> ParseProtocol(std::string_view s);  // "http1" | "h2c" | "grpc"
std::string_view ProtocolName(Protocol p);

// Runs the load (blocking, on a thread of its own) and returns the results. Errors only for bad
// options or an unusable target/netns; a system under test that fails is a result.
absl::StatusOr<Result> Run(Options opts);

// The command line of weft-loadgen (argv[0] is the program). Returns the exit code: 0, 1 when
// the run failed or no request succeeded, 2 for bad flags.
int Main(int argc, char** argv);

}  // namespace weft::bench::loadgen
