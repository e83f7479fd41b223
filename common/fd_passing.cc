#include "common/fd_passing.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft {

ssize_t SendWithFd(int sock, const void* data, size_t len, int fd, int flags) {
  iovec iov{const_cast<void*>(data), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  return ::sendmsg(sock, &msg, flags);
}

ssize_t RecvWithFds(int sock, void* data, size_t len, int flags, size_t max_fds,
                    std::vector<UniqueFd>* fds, int* msg_flags) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * max_fds));
  iovec iov{data, len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  *msg_flags = n < 0 ? 0 : msg.msg_flags;
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      fds->emplace_back(f);
    }
  }
  return n;
}

absl::StatusOr<UnixListener> ListenUnixReplacing(const std::string& path, int backlog,
                                                 const char* what) {
  const std::string tmp = absl::StrCat(path, ".", ::getpid(), ".tmp");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || tmp.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat(
        what, " path \"", path, "\" is empty or too long (with its temporary suffix it needs ",
        tmp.size() + 1, " of ", sizeof(addr.sun_path), " bytes); choose a shorter path"));
  std::memcpy(addr.sun_path, tmp.data(), tmp.size());
  // Only a socket may be replaced; anything else at that path is somebody else's file.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
    return absl::FailedPreconditionError(
        absl::StrCat(what, " path ", path, " exists and is not a socket; refusing to replace it"));
  ::unlink(tmp.c_str());
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoError(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  UnixListener l;
  l.fd.reset(fd);
  // Linux takes the socket file's mode from the socket inode at bind time, so setting it
  // first leaves no window in which another user could connect.
  if (::fchmod(fd, 0600) != 0) return ErrnoError(errno, absl::StrCat("fchmod ", what));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return ErrnoError(errno, absl::StrCat("bind ", what, " ", tmp));
  const char* failed = nullptr;
  if (::chmod(tmp.c_str(), 0600) != 0)
    failed = "chmod 0600";
  else if (::listen(fd, backlog) != 0)
    failed = "listen on";
  else if (::rename(tmp.c_str(), path.c_str()) != 0)
    failed = "rename over";
  if (failed) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat(failed, " ", what, " ", path));
  }
  if (::lstat(path.c_str(), &st) == 0) {
    l.ino = st.st_ino;
    l.dev = st.st_dev;
  }
  return l;
}

void UnlinkUnixListener(const std::string& path, const UnixListener& l) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && st.st_ino == l.ino && st.st_dev == l.dev)
    ::unlink(path.c_str());
}

}  // namespace weft
