#include "bpf/testing.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "bpf/bpffs.h"
#include "common/netns.h"
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

bool KernelHasCapturePrograms() {
  return libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, nullptr) == 1 &&
         libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, nullptr) == 1 &&
         libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, nullptr) == 1;
}

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
  // The shared parent goes with the last test that used it (fails while others are in it).
  ::rmdir(PinRoot().c_str());
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
  // Killed processes leave the cgroup as they are reaped; a busy machine may take seconds.
  for (int i = 0; i < 500 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i) ::usleep(20000);
}

uint16_t ConnectFromCgroup(const std::string& cgroup_path, int netns_fd, const SockAddr& dst) {
  sockaddr_storage ss{};
  socklen_t sl = dst.ToSockaddr(&ss);
  int family = dst.ip.IsV4() ? AF_INET : AF_INET6;
  std::string procs = cgroup_path + "/cgroup.procs";
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) return 0;
  pid_t pid = ::fork();
  if (pid == 0) {
    uint16_t port = 0;
    int f = ::open(procs.c_str(), O_WRONLY);
    if (f >= 0 && ::write(f, "0", 1) == 1 && ::setns(netns_fd, CLONE_NEWNET) == 0) {
      int s = ::socket(family, SOCK_STREAM, 0);
      if (::connect(s, reinterpret_cast<sockaddr*>(&ss), sl) == 0) {
        sockaddr_storage local{};
        socklen_t ll = sizeof(local);
        ::getsockname(s, reinterpret_cast<sockaddr*>(&local), &ll);
        port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);  // same offset in v6
      }
    }
    ssize_t w = ::write(pfd[1], &port, sizeof(port));
    ::_exit(w == sizeof(port) ? 0 : 1);
  }
  ::close(pfd[1]);
  uint16_t port = 0;
  if (pid < 0 || ::read(pfd[0], &port, sizeof(port)) != sizeof(port)) port = 0;
  ::close(pfd[0]);
  if (pid > 0) ::waitpid(pid, nullptr, 0);
  return port;
}

uint16_t ConnectFrom(int netns_fd, const SockAddr& src, const SockAddr& dst, UniqueFd* keep) {
  auto c = SocketInNetns(netns_fd, dst.ip.IsV4() ? AF_INET : AF_INET6, SOCK_STREAM, 0);
  if (!c.ok()) return 0;
  sockaddr_storage ss{};
  socklen_t sl = src.ToSockaddr(&ss);
  if (::bind(c->get(), reinterpret_cast<sockaddr*>(&ss), sl) != 0) return 0;
  sl = dst.ToSockaddr(&ss);
  if (::connect(c->get(), reinterpret_cast<sockaddr*>(&ss), sl) != 0) return 0;
  auto local = LocalAddress(c->get());
  if (!local.ok()) return 0;
  if (keep) *keep = std::move(*c);
  return local->port;
}

std::string WhoAccepted(uint16_t client_port,
                        const std::vector<std::pair<int, std::string>>& listeners) {
  if (client_port == 0) return "";
  std::vector<pollfd> p;
  for (const auto& [fd, name] : listeners) p.push_back({fd, POLLIN, 0});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::poll(p.data(), p.size(), 200) <= 0) continue;
    for (size_t i = 0; i < p.size(); ++i) {
      if (!(p[i].revents & POLLIN)) continue;
      UniqueFd a(::accept4(listeners[i].first, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      auto peer = a ? PeerAddress(a.get()) : absl::StatusOr<SockAddr>(absl::InternalError(""));
      if (peer.ok() && peer->port == client_port) return listeners[i].second;
    }
  }
  return "";
}

int AttachedPrograms(int fd, int attach_type) {
  uint32_t ids[16] = {}, cnt = 16;
  if (bpf_prog_query(fd, static_cast<bpf_attach_type>(attach_type), 0, nullptr, ids, &cnt) != 0)
    return -1;
  return static_cast<int>(cnt);
}

}  // namespace weft::bpf::testing
