// The demo's tea shop: two tiny line-based TCP services that run as threads inside weftctl but
// listen inside a pod's network namespace, and a client that calls them from another pod's
// namespace. Real sockets and real bytes, so the mesh in between carries genuine traffic.
//
// Protocol: one request line, one reply line (both '\n'-terminated), any number per connection.
//   catalogue:  "search <word> [ref <token>]"  -> "catalogue: <n> teas matching '<word>': a, b
//               [ref <token>]"   (a case-insensitive search over the catalogue's teas)
//               "count [ref <token>]"          -> "catalogue: <n> teas [ref <token>]"
//   cart:       "add <tea> [ref <token>]"      -> "cart: added <tea>, <n> items in the cart
//               [ref <token>]"   (the cart is shared by every client of one server)
//   anything else -> "error: <what went wrong>"
// The "ref" token is echoed so that a caller can match replies and look for it on the wire.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"

namespace weft::cli::demo {

enum class TeaService { kCatalogue, kCart };

// One service listening on `addr` (port 0 picks one) inside `netns_fd` (-1: current netns),
// served by one background thread with poll(2). Start() returns once the socket listens.
// Thread-safe: requests() may be read from any thread.
class TeaServer {
 public:
  static absl::StatusOr<std::unique_ptr<TeaServer>> Start(TeaService service, const SockAddr& addr,
                                                          int netns_fd = -1);
  ~TeaServer();  // stops the thread and closes every connection
  TeaServer(const TeaServer&) = delete;
  TeaServer& operator=(const TeaServer&) = delete;

  const SockAddr& addr() const { return addr_; }
  int64_t requests() const { return requests_.load(); }
  int64_t connections() const { return connections_.load(); }

  // The reply (without '\n') this service gives to one request line; exposed for tests.
  std::string Handle(std::string_view request);

 private:
  TeaServer(TeaService service, UniqueFd listen, SockAddr addr);
  void Run();

  TeaService service_;
  UniqueFd listen_;
  SockAddr addr_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> requests_{0}, connections_{0};
  std::mutex mu_;
  int64_t cart_items_ = 0;  // guarded by mu_
  std::thread thread_;
};

// Connects to `to` from inside `netns_fd` (-1: current netns), sends `request` + '\n' and reads
// one reply line (without '\n'), all within `timeout`. An error says which step failed, e.g.
// "connection closed before a reply" when something between the two ends refused the call.
absl::StatusOr<std::string> TeaCall(int netns_fd, const SockAddr& to, std::string_view request,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(3));

}  // namespace weft::cli::demo
