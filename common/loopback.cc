#include "common/loopback.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/status.h"

namespace weft {

absl::Status LoopbackTcpPair(UniqueFd out[2]) {
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  out[0].reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  if (!l || !out[0] || ::bind(l.get(), reinterpret_cast<sockaddr*>(&a), alen) != 0 ||
      ::listen(l.get(), 1) != 0 ||
      ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &alen) != 0 ||
      ::connect(out[0].get(), reinterpret_cast<sockaddr*>(&a), alen) != 0)
    return ErrnoError(errno, "loopback TCP pair");
  out[1].reset(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!out[1]) return ErrnoError(errno, "accept (loopback TCP pair)");
  return absl::OkStatus();
}

}  // namespace weft
