// bpffs: where pins live. Part of weft_bpf_pinned (libbpf + weft_common only).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/pins.h"
#include "common/cgroup.h"  // FindCgroup2Mount (was here)

namespace weft::bpf {

// True when `path` is on a bpffs (statfs magic BPF_FS_MAGIC).
bool IsBpffs(std::string_view path);

// Makes sure a bpffs is mounted at `root` (default /sys/fs/bpf), mounting one (mode 0700) if
// not, as Cilium's agent does. Errors say what to do (e.g. run as root, or mount it by hand).
absl::Status EnsureBpffsMounted(std::string_view root = kBpffsRoot);

// mkdir -p of `dir` (on bpffs pins can only be created in existing directories).
absl::Status MakeDirs(const std::string& dir);

}  // namespace weft::bpf

namespace weft::bpf {}  // namespace weft::bpf
