// Passing a file descriptor over a Unix socket (SCM_RIGHTS).
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace weft {

// sendmsg of `len` bytes at `data` on `sock`, with `fd` attached as SCM_RIGHTS (fd < 0: none),
// `flags` as sendmsg's. Returns sendmsg's result (-1 with errno set). Async-signal-safe (no
// allocation), so a forked child may call it before exec or _exit.
ssize_t SendWithFd(int sock, const void* data, size_t len, int fd, int flags);

}  // namespace weft
