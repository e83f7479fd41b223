// weft-h2echo: the benchmark's HTTP/2 (h2c, prior knowledge) echo server, the istio scenario's
// server over h2c and gRPC (bench/suite). nghttp2 does the protocol; one thread per connection.
//
// Every request's body comes back as the response body, status 200. A request whose
// content-type starts with "application/grpc" is a gRPC call: the body (already gRPC's
// length-prefixed message) comes back with content-type application/grpc and the trailers
// "grpc-status: 0", so a unary gRPC echo call succeeds; a gRPC request whose body is not one
// whole length-prefixed message gets grpc-status 13 (INTERNAL) instead, and one with the header
// "x-echo-grpc-status: N" (N != 0) fails with grpc-status N (as fortio's echo takes a status to
// answer). A bodiless request gets `echo_size` bytes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"

namespace weft::bench::loadgen {

class H2EchoServer {
 public:
  // Listens on `listen` (port 0: the kernel picks one, see port()) and serves until destroyed.
  static absl::StatusOr<std::unique_ptr<H2EchoServer>> Start(const SockAddr& listen,
                                                             int echo_size = 1024);
  ~H2EchoServer();  // closes the listener and every connection, joins the threads
  H2EchoServer(const H2EchoServer&) = delete;
  H2EchoServer& operator=(const H2EchoServer&) = delete;

  uint16_t port() const { return port_; }
  int64_t requests() const { return requests_.load(); }
  int64_t connections() const { return connections_.load(); }

 private:
  H2EchoServer() = default;
  void AcceptLoop();
  void Serve(int fd);

  uint16_t port_ = 0;
  int echo_size_ = 1024;
  UniqueFd listen_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> requests_{0}, connections_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> open_fds_;  // shut down on destruction
  std::vector<std::thread> workers_;
};

// `weft-h2echo --listen ADDR:PORT [--echo-size N]`: serves until SIGTERM/SIGINT. Exit code 0,
// 1 when it cannot listen, 2 for bad flags.
int H2EchoMain(int argc, char** argv);

}  // namespace weft::bench::loadgen
