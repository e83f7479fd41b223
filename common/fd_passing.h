// Passing a file descriptor over a Unix socket (SCM_RIGHTS).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

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

}  // namespace weft
