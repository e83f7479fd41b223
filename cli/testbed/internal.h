// Helpers shared by the testbed's .cc files; not part of the public API.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace weft::testbed::internal {

// The whole content of a (small) file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// cgroup.cc: the cgroup and bpffs pin directories named after `prefix` that exist.
std::vector<std::string> KernelObjectsOf(const std::string& prefix);

}  // namespace weft::testbed::internal

namespace weft::testbed {
// cgroup.cc: removes the cgroup tree and bpffs pin dirs named after `prefix`.
void RemoveTestbedKernelObjects(const std::string& prefix);
// cgroup.cc: the same for every prefix whose owner pid is gone.
void CleanupStaleKernelObjects();
}  // namespace weft::testbed

namespace weft::testbed::internal {}  // namespace weft::testbed::internal
