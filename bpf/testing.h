// Root-test helpers for BPF pins and cgroups. Every object is named after the test process
// ("t<pid>-<n>" pin dirs under /sys/fs/bpf/weft, "weft-t<pid>-<n>" cgroups under the cgroup2
// mount) so parallel runs never collide and what a crashed run left behind (pid gone) is
// removed by the next run's constructor.
#pragma once

#include <string>

#include "common/unique_fd.h"

namespace weft::bpf::testing {

// Removes /sys/fs/bpf/weft/t<pid>-<n> dirs (and their pins) whose pid is gone.
void DeleteStalePinDirs();
// Removes <cgroup2 mount>/weft-t<pid>-<n> cgroups whose pid is gone (after their pins).
void DeleteStaleCgroups();

// A fresh pin dir (not created: the code under test creates it). Mounts bpffs if needed and
// cleans stale ones first. The destructor removes it recursively. path() is empty (with a test
// failure recorded) when bpffs cannot be mounted.
class ScopedPinDir {
 public:
  ScopedPinDir();
  ~ScopedPinDir();
  ScopedPinDir(const ScopedPinDir&) = delete;
  ScopedPinDir& operator=(const ScopedPinDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child cgroup of the cgroup2 mount (never the root), held open; removed in the destructor
// (after its processes left). path() is empty when there is no cgroup2 mount.
class ScopedCgroup {
 public:
  ScopedCgroup();
  ~ScopedCgroup();
  ScopedCgroup(const ScopedCgroup&) = delete;
  ScopedCgroup& operator=(const ScopedCgroup&) = delete;
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace weft::bpf::testing
