// Network-namespace helpers. setns(CLONE_NEWNET) affects only the calling thread, so a
// ScopedNetns is used to create sockets inside a pod's netns and come straight back: a
// socket keeps the namespace it was created in.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace weft {

// Opens a netns handle: a path such as /run/netns/NAME or /proc/PID/ns/net.
absl::StatusOr<UniqueFd> OpenNetns(const std::string& path);

// Why a network-namespace fd may not be used as a pod's, or nullopt when it may: it must be a
// network namespace (NS_GET_NSTYPE), and neither the caller's own (`proc_root`/self/ns/net) nor
// the host's (`proc_root`/1/ns/net: PID 1's). Capture or ztunnel listeners in either would put
// the node's traffic under a tenant's control. `kind` is a short label for counters.
struct NetnsRefusal {
  std::string kind;    // "not_netns", "own_netns", "host_netns"
  std::string reason;  // a sentence for the log and the error
};
std::optional<NetnsRefusal> CheckPodNetns(int netns_fd, const std::string& proc_root = "/proc");

// Opens a pod's network namespace by path and checks it with CheckPodNetns. The open is
// non-blocking and never follows the path into a terminal, so a FIFO or a device in its place
// cannot stall the caller. Errors name the path and the reason.
absl::StatusOr<UniqueFd> OpenPodNetns(const std::string& path);

// The netns cookie (SO_NETNS_COOKIE, Linux 5.14+) of the namespace `netns_fd` refers to.
absl::StatusOr<uint64_t> NetnsCookie(int netns_fd);

// Enters `netns_fd` for the calling thread; the destructor, on the same thread, returns to the
// original netns (and aborts if it cannot: continuing in the wrong netns would be a security
// bug). The outermost ScopedNetns of a thread returns to a descriptor of the thread's own netns
// kept for the thread's life (opened at its first Enter): code that moves a thread to another
// netns for good must not use ScopedNetns on that thread afterwards.
class ScopedNetns {
 public:
  static absl::StatusOr<std::unique_ptr<ScopedNetns>> Enter(int netns_fd);
  ~ScopedNetns();
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;

 private:
  explicit ScopedNetns(UniqueFd orig) : orig_(std::move(orig)) {}
  UniqueFd orig_;
};

// Runs fn() with the calling thread inside netns_fd (netns_fd < 0: current netns).
absl::Status RunInNetns(int netns_fd, const std::function<absl::Status()>& fn);

// socket(2) inside the given netns (netns_fd < 0: current netns). SOCK_CLOEXEC is added.
absl::StatusOr<UniqueFd> SocketInNetns(int netns_fd, int domain, int type, int protocol);

}  // namespace weft
