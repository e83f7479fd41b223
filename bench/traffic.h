// The benchmark's own traffic: an epoll echo server that runs on a thread of the suite with
// its listening socket inside a pod's network namespace, and the clients that drive it
// (request/response latency, connection rate, many idle connections). The clients create their
// sockets in the calling thread's netns and cgroup; the suite runs them in `weft-bench-suite
// client` (bench/client.h), a process spawned inside the client pod's netns and cgroup, so that
// their traffic takes the pod's path in every capture mode (iptables and eBPF).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/stats.h"
#include "common/net.h"
#include "common/unique_fd.h"

namespace weft::bench {

// Echoes every byte it receives back on the same connection, for any number of connections,
// on one thread (level-triggered epoll; a connection whose peer does not read is not read
// either until its pending output drained). Thread-safe accessors.
class EchoServer {
 public:
  // Listens on 0.0.0.0:port in the netns `netns_fd` and starts serving. With `close_after_echo`
  // the server closes each connection once it has echoed its first read (the server does the
  // active close, so TIME_WAIT stays on the server side and a client making connections in a
  // loop does not slow down as its ephemeral ports fill with TIME_WAIT).
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(int netns_fd, uint16_t port,
                                                           bool close_after_echo = false);
  ~EchoServer();  // stops the thread, closes every connection
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  uint16_t port() const { return port_; }
  int64_t open_connections() const { return open_.load(); }
  int64_t accepted() const { return accepted_.load(); }

 private:
  EchoServer() = default;
  void Loop();

  uint16_t port_ = 0;
  bool close_after_echo_ = false;
  UniqueFd listen_, epoll_, wake_;
  std::atomic<int64_t> open_{0}, accepted_{0};
  std::thread thread_;
};

// Everything below blocks, bounds its own time, and stops early (CancelledError) once `stop`
// becomes true. Sockets are created in the calling thread's current netns: run them under
// RunInNetns(client_netns, ...).

struct PingPongResult {
  LatencySummary latency;  // of the measured round trips (warm-up excluded)
  // The median of each consecutive block of 1000 measured round trips, in order: shows whether
  // a slow run was slow throughout or had a slow phase.
  std::vector<double> block_p50_us;
  int64_t round_trips = 0;
  double seconds = 0;  // wall time of the measured part
};
// One connection to `server`; `warmup` round trips, then up to `round_trips` measured ones
// (or until `max_time` passed) of a `size`-byte request answered by a `size`-byte response.
absl::StatusOr<PingPongResult> RunPingPong(const SockAddr& server, size_t size, int64_t warmup,
                                           int64_t round_trips, std::chrono::milliseconds max_time,
                                           const std::atomic<bool>& stop);

struct ConnectRateResult {
  int64_t connections = 0;  // completed: connect + 32-byte round trip + close
  int64_t failures = 0;
  double seconds = 0;
  double per_second = 0;
};
// Sequential new connections to a close_after_echo EchoServer for `duration` (or until
// `max_connections`): connect, 32-byte round trip, wait for the server's FIN, close. Gives up
// with an error after 20 failed connections.
absl::StatusOr<ConnectRateResult> RunConnectRate(const SockAddr& server,
                                                 std::chrono::milliseconds duration,
                                                 int64_t max_connections,
                                                 const std::atomic<bool>& stop);

// Opens `n` connections to `server`, each doing one 16-byte round trip, and returns them open.
absl::StatusOr<std::vector<UniqueFd>> OpenIdleConnections(const SockAddr& server, int n,
                                                          const std::atomic<bool>& stop);

}  // namespace weft::bench
