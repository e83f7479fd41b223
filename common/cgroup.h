// cgroup v2 lookups shared by the agent, the testbed and tests.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace weft {

// Where the cgroup v2 hierarchy is mounted (first `cgroup2` in /proc/self/mounts;
// /sys/fs/cgroup wins on a pure v2 host, e.g. /sys/fs/cgroup/unified on a hybrid one).
// NotFound with what to do when there is none.
absl::StatusOr<std::string> FindCgroup2Mount();

}  // namespace weft
