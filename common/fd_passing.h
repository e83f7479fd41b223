// Passing a file descriptor over a Unix socket (SCM_RIGHTS).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace weft {

// sendmsg of `len` bytes at `data` on `sock`, with `fd` attached as SCM_RIGHTS (fd < 0: none),
// `flags` as sendmsg's. Returns sendmsg's result (-1 with errno set). Async-signal-safe (no
// allocation), so a forked child may call it before exec or _exit.
ssize_t SendWithFd(int sock, const void* data, size_t len, int fd, int flags);

// recvmsg of up to `len` bytes into `data` on `sock` (`flags` as recvmsg's, MSG_CMSG_CLOEXEC
// added; EINTR is retried). Every SCM_RIGHTS descriptor that came with it is owned by *fds, so
// each is closed on every path (room for `max_fds`; more sets MSG_CTRUNC). Returns recvmsg's
// result (-1 with errno set); *msg_flags gets the message's flags (MSG_TRUNC, MSG_CTRUNC).
ssize_t RecvWithFds(int sock, void* data, size_t len, int flags, size_t max_fds,
                    std::vector<UniqueFd>* fds, int* msg_flags);

// A listening AF_UNIX SOCK_SEQPACKET socket (non-blocking, close-on-exec, mode 0600) at a path,
// and which socket file it is, so that only this one is removed at the end.
struct UnixListener {
  UniqueFd fd;
  ino_t ino = 0;
  dev_t dev = 0;
};

// Binds under a temporary name (`path`.PID.tmp) and renames it over `path`: a predecessor's (or
// a stale) socket there is replaced at once, so a client reconnecting finds one or the other.
// Anything at `path` that is not a socket is left alone (an error). `what` names the socket in
// errors ("handoff socket").
absl::StatusOr<UnixListener> ListenUnixReplacing(const std::string& path, int backlog,
                                                 const char* what);

// Unlinks `path` if it is still the socket file `l` created (a successor may have replaced it).
void UnlinkUnixListener(const std::string& path, const UnixListener& l);

}  // namespace weft
