// Network namespaces for root tests: each test process names its namespaces
// "<prefix><pid>-<n>", so parallel runs never collide and namespaces that a killed run left
// behind can be told apart (their pid is gone) and removed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/unique_fd.h"

namespace weft::testing {

// Runs `cmd` with /bin/sh, stderr merged into stdout; returns the output. `exit_code` (if set)
// gets the exit status, -1 if the command did not exit normally.
std::string Shell(const std::string& cmd, int* exit_code = nullptr);

// Deletes the namespaces in /run/netns named "<prefix><pid>-<n>" whose pid no longer exists;
// those of test processes running in parallel are left alone. `prefix` ends with '-'
// (e.g. "weft-cap-") and holds exactly one other '-'.
void DeleteStaleNamespaces(std::string_view prefix);

// A named network namespace "<prefix><pid>-<n>" (`ip netns add`) with lo up, held open; the
// destructor closes it and runs `ip netns del`. Setup failures are reported as test failures
// (the object then holds no fd and a zero cookie).
class ScopedNetns {
 public:
  explicit ScopedNetns(std::string_view prefix);
  ~ScopedNetns();
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;

  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  int fd() const { return fd_.get(); }
  // The kernel's cookie of this namespace (NetnsCookie), to compare with an fd handed elsewhere.
  uint64_t cookie() const { return cookie_; }
  // Runs `cmd` inside the namespace (ip netns exec); returns its output.
  std::string Exec(const std::string& cmd) const;

 private:
  std::string name_;
  UniqueFd fd_;
  uint64_t cookie_ = 0;
};

}  // namespace weft::testing
