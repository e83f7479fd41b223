#include "common/cgroup.h"

#include <fstream>

namespace weft {

absl::StatusOr<std::string> FindCgroup2Mount() {
  std::ifstream mounts("/proc/self/mounts");
  if (!mounts) return absl::InternalError("cannot read /proc/self/mounts");
  std::string dev, dir, type, rest, found;
  while (mounts >> dev >> dir >> type && std::getline(mounts, rest)) {
    if (type != "cgroup2") continue;
    found = dir;
    if (dir == "/sys/fs/cgroup") break;  // the usual place on a pure v2 host wins
  }
  if (found.empty())
    return absl::NotFoundError(
        "no cgroup2 filesystem in /proc/self/mounts (eBPF connect hooks need cgroup v2: boot "
        "with systemd.unified_cgroup_hierarchy=1 or mount -t cgroup2 none /sys/fs/cgroup/unified)");
  return found;
}

}  // namespace weft
