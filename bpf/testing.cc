#include "bpf/testing.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "bpf/bpffs.h"
#include "gtest/gtest.h"

namespace weft::bpf::testing {
namespace {

std::atomic<int> counter{0};

std::string PinRoot() {
  return std::string(kBpffsRoot) + "/weft";
}

bool Dead(int pid) {
  return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

void DeleteStalePinDirs() {
  DIR* d = ::opendir(PinRoot().c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    int pid = 0, n = 0;
    if (std::sscanf(e->d_name, "t%d-%d", &pid, &n) == 2 && Dead(pid))
      stale.push_back(PinRoot() + "/" + e->d_name);
  }
  ::closedir(d);
  std::error_code ec;
  for (const auto& p : stale) std::filesystem::remove_all(p, ec);
}

void DeleteStaleCgroups() {
  auto root = FindCgroup2Mount();
  if (!root.ok()) return;
  DIR* d = ::opendir(root->c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    int pid = 0, n = 0;
    if (std::sscanf(e->d_name, "weft-t%d-%d", &pid, &n) == 2 && Dead(pid))
      ::rmdir((*root + "/" + e->d_name).c_str());
  }
  ::closedir(d);
}

ScopedPinDir::ScopedPinDir() {
  absl::Status st = EnsureBpffsMounted();
  if (!st.ok()) {
    ADD_FAILURE() << st;
    return;
  }
  DeleteStalePinDirs();
  path_ = PinRoot() + "/t" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

ScopedPinDir::~ScopedPinDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  EXPECT_FALSE(ec) << "removing " << path_ << ": " << ec.message();
}

ScopedCgroup::ScopedCgroup() {
  DeleteStaleCgroups();
  auto root = FindCgroup2Mount();
  if (!root.ok()) return;
  path_ = *root + "/weft-t" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  if (::mkdir(path_.c_str(), 0755) != 0) {
    ADD_FAILURE() << "mkdir " << path_ << ": " << std::strerror(errno);
    path_.clear();
    return;
  }
  fd_.reset(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_TRUE(fd_) << path_ << ": " << std::strerror(errno);
}

ScopedCgroup::~ScopedCgroup() {
  fd_.reset();
  if (path_.empty()) return;
  for (int i = 0; i < 50 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i) ::usleep(20000);
}

}  // namespace weft::bpf::testing
