// Helpers shared by the testbed's .cc files; not part of the public API.
#pragma once

#include <string>
#include <vector>

namespace weft::testbed::internal {

// cgroup.cc: the cgroup and bpffs pin directories named after `prefix` that exist.
std::vector<std::string> KernelObjectsOf(const std::string& prefix);

}  // namespace weft::testbed::internal

namespace weft::testbed {
// cgroup.cc: removes the cgroup tree and bpffs pin dirs named after `prefix`.
void RemoveTestbedKernelObjects(const std::string& prefix);
// cgroup.cc: the same for every prefix whose owner pid is gone.
void CleanupStaleKernelObjects();
}  // namespace weft::testbed
