// Root-test helpers for BPF pins and cgroups. Every object is named after the test process
// ("t<pid>-<n>" pin dirs under /sys/fs/bpf/weft, "weft-t<pid>-<n>" cgroups under the cgroup2
// mount) so parallel runs never collide and what a crashed run left behind (pid gone) is
// removed by the next run's constructor.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/net.h"
#include "common/unique_fd.h"

namespace weft::bpf::testing {

// The kernel has the program types of the capture (sk_lookup, cgroup sock_addr, sock_ops), as
// libbpf's probe loads them: decided independently of the code under test. Use it with
// WEFT_SKIP_UNLESS_KERNEL_FEATURE (common/testing/kernel_features.h).
bool KernelHasCapturePrograms();

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

// Forks a child that joins the cgroup at `cgroup_path` and the netns `netns_fd`, connects a
// TCP socket to `dst` (blocking) and reports its local port; 0 when the connect failed.
// Only syscalls run in the child.
uint16_t ConnectFromCgroup(const std::string& cgroup_path, int netns_fd, const SockAddr& dst);

// Connects from the test process (no capture cgroup) inside `netns_fd`, bound to `src`
// (port 0), to `dst`; returns the local port, 0 when refused/failed. `keep` (if set) receives
// the connected socket.
uint16_t ConnectFrom(int netns_fd, const SockAddr& src, const SockAddr& dst,
                     UniqueFd* keep = nullptr);

// Which of `listeners` (fd, name) accepted the connection whose client port is
// `client_port`, waiting up to 2 s: its name, or "" when none did.
std::string WhoAccepted(uint16_t client_port,
                        const std::vector<std::pair<int, std::string>>& listeners);

// Programs attached to a cgroup or netns fd for `attach_type` (enum bpf_attach_type); -1 on
// error.
int AttachedPrograms(int fd, int attach_type);

}  // namespace weft::bpf::testing
