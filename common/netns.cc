#include "common/netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace weft {

absl::StatusOr<UniqueFd> OpenNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open netns ", path));
  return UniqueFd(fd);
}

namespace {

bool SameFile(const struct stat& a, const std::string& path) {
  struct stat b;
  return ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

std::optional<NetnsRefusal> CheckPodNetns(int netns_fd, const std::string& proc_root) {
  struct stat st;
  if (::fstat(netns_fd, &st) != 0 || ::ioctl(netns_fd, NS_GET_NSTYPE) != CLONE_NEWNET)
    return NetnsRefusal{"not_netns", "not a network namespace"};
  if (SameFile(st, proc_root + "/self/ns/net"))
    return NetnsRefusal{"own_netns", "the caller's own network namespace, not a pod's"};
  if (SameFile(st, proc_root + "/1/ns/net"))
    return NetnsRefusal{"host_netns", "the host's network namespace (PID 1's), not a pod's"};
  return std::nullopt;
}

absl::StatusOr<UniqueFd> OpenPodNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open netns ", path));
  UniqueFd ns(fd);
  if (auto refused = CheckPodNetns(ns.get()))
    return absl::PermissionDeniedError(absl::StrCat("netns ", path, " is ", refused->reason));
  return ns;
}

namespace {
// The netns each thread returns to. Opening /proc/thread-self/ns/net (a procfs path walk) cost
// as much as the two setns calls together on every socket a proxy creates in a pod's netns, so
// the outermost Enter of a thread keeps the descriptor for the thread's life. Valid because a
// thread's netns only changes through ScopedNetns in this code base (forked children setns
// before exec, in their own process); nested Enters still open the path, as they come back to
// a pod's netns, not the thread's own.
struct ThreadNetns {
  UniqueFd home;
  int depth = 0;
};
thread_local ThreadNetns t_netns;

UniqueFd OpenCurrentNetns() {
  return UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
}
}  // namespace

absl::StatusOr<std::unique_ptr<ScopedNetns>> ScopedNetns::Enter(int netns_fd) {
  const bool outermost = t_netns.depth == 0;
  UniqueFd nested;
  if (outermost) {
    if (!t_netns.home) t_netns.home = OpenCurrentNetns();
    if (!t_netns.home) return ErrnoError(errno, "open /proc/thread-self/ns/net");
  } else {
    nested = OpenCurrentNetns();
    if (!nested) return ErrnoError(errno, "open /proc/thread-self/ns/net");
  }
  if (::setns(netns_fd, CLONE_NEWNET) != 0)
    return ErrnoError(errno, "setns(CLONE_NEWNET) (needs CAP_SYS_ADMIN)");
  ++t_netns.depth;
  return std::unique_ptr<ScopedNetns>(new ScopedNetns(std::move(nested)));
}

ScopedNetns::~ScopedNetns() {
  const int back = orig_ ? orig_.get() : t_netns.home.get();
  if (::setns(back, CLONE_NEWNET) != 0) {
    std::perror("weft: cannot return to the original network namespace");
    std::abort();
  }
  --t_netns.depth;
}

absl::Status RunInNetns(int netns_fd, const std::function<absl::Status()>& fn) {
  if (netns_fd < 0) return fn();
  WEFT_ASSIGN_OR_RETURN(auto scope, ScopedNetns::Enter(netns_fd));
  return fn();
}

absl::StatusOr<UniqueFd> SocketInNetns(int netns_fd, int domain, int type, int protocol) {
  UniqueFd out;
  WEFT_RETURN_IF_ERROR(RunInNetns(netns_fd, [&]() -> absl::Status {
    int fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) return ErrnoError(errno, "socket");
    out.reset(fd);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<uint64_t> NetnsCookie(int netns_fd) {
  WEFT_ASSIGN_OR_RETURN(UniqueFd s, SocketInNetns(netns_fd, AF_INET, SOCK_DGRAM, 0));
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
    return ErrnoError(errno, "getsockopt(SO_NETNS_COOKIE) (needs Linux 5.14+)");
  return cookie;
}

}  // namespace weft
