// What the benchmark reads from /proc (a process's resident memory) and its descriptor limit.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace weft::bench {

// VmRSS of `pid` in bytes (from /proc/<pid>/status). NotFound if the process is gone.
absl::StatusOr<int64_t> VmRssBytes(pid_t pid);

// Raises RLIMIT_NOFILE's soft limit to at least `want` (up to the hard limit, raising the
// hard limit too when we may). Returns the resulting soft limit.
absl::StatusOr<int64_t> RaiseFdLimit(int64_t want);

}  // namespace weft::bench
