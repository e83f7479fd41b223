#include "common/testing/netns_fixture.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/netns.h"
#include "common/status.h"
#include "gtest/gtest.h"

namespace weft::testing {

std::string Shell(const std::string& cmd, int* exit_code) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  if (exit_code) *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

void DeleteStaleNamespaces(std::string_view prefix) {
  DIR* d = ::opendir("/run/netns");
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!absl::StartsWith(name, Av(prefix))) continue;
    std::vector<std::string> parts = absl::StrSplit(name, '-');
    int pid = 0;
    if (parts.size() < 4 || !absl::SimpleAtoi(parts[2], &pid) || pid <= 0) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) Shell("ip netns del " + name);
  }
  ::closedir(d);
}

ScopedNetns::ScopedNetns(std::string_view prefix) {
  static std::atomic<int> counter{0};
  name_ = absl::StrCat(Av(prefix), ::getpid(), "-", counter++);
  for (const std::string& cmd : {"ip netns add " + name_, "ip -n " + name_ + " link set lo up"}) {
    int rc = 0;
    std::string out = Shell(cmd, &rc);
    if (rc != 0) {
      ADD_FAILURE() << cmd << ": " << out;
      return;
    }
  }
  auto fd = OpenNetns(path());
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return;
  fd_ = std::move(*fd);
  auto c = NetnsCookie(fd_.get());
  EXPECT_TRUE(c.ok()) << c.status();
  cookie_ = c.ok() ? *c : 0;
}

ScopedNetns::~ScopedNetns() {
  fd_.reset();
  Shell("ip netns del " + name_);
}

std::string ScopedNetns::Exec(const std::string& cmd) const {
  return Shell("ip netns exec " + name_ + " " + cmd);
}

}  // namespace weft::testing
