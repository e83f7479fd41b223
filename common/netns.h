// Network-namespace helpers. setns(CLONE_NEWNET) affects only the calling thread, so a
// ScopedNetns is used to create sockets inside a pod's netns and come straight back: a
// socket keeps the namespace it was created in.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace weft {

// Opens a netns handle: a path such as /run/netns/NAME or /proc/PID/ns/net.
absl::StatusOr<UniqueFd> OpenNetns(const std::string& path);

// The netns cookie (SO_NETNS_COOKIE, Linux 5.14+) of the namespace `netns_fd` refers to.
absl::StatusOr<uint64_t> NetnsCookie(int netns_fd);

// Enters `netns_fd` for the calling thread; the destructor returns to the original netns
// (and aborts if it cannot: continuing in the wrong netns would be a security bug).
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
