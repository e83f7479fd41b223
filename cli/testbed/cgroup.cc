// Testbed cgroups (cgroup v2): one per testbed, one per pod below it, so that eBPF capture
// hooks attached to the testbed's cgroup see exactly the pods' sockets. Plus the other kernel
// objects named after a testbed prefix: bpffs pin directories.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/testbed/internal.h"
#include "cli/testbed/testbed.h"
#include "common/cgroup.h"
#include "common/fd_passing.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::testbed {
namespace {

constexpr const char* kBpfWeftDir = "/sys/fs/bpf/weft";

absl::Status Errno(int err, std::string_view what) {
  return absl::InternalError(absl::StrCat(Av(what), ": ", std::strerror(err)));
}

// Kills whatever is left in `dir` (and below) and removes the directories bottom-up.
void RemoveCgroupTree(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) RemoveCgroupTree(e.path().string());
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    // Processes still inside: cgroup.kill (5.14+) or one by one, then wait for the exit.
    {
      std::ofstream kill(dir + "/cgroup.kill");
      if (kill) kill << "1";
    }
    std::ifstream procs(dir + "/cgroup.procs");
    for (std::string line; std::getline(procs, line);) {
      int pid = 0;
      if (absl::SimpleAtoi(line, &pid) && pid > 0 && pid != ::getpid()) ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  LOG_WARN("testbed", "cannot remove cgroup", {{"cgroup", dir}, {"error", std::strerror(errno)}});
}

}  // namespace

std::string BpfPinRoot(std::string_view prefix) {
  return absl::StrCat(kBpfWeftDir, "/", Av(prefix));
}

void RemoveTestbedKernelObjects(const std::string& prefix) {
  auto mount = FindCgroup2Mount();
  if (mount.ok()) RemoveCgroupTree(absl::StrCat(*mount, "/", prefix));
  // Pin directories are <prefix> or <prefix>-<suffix> (one per node).
  std::error_code ec;
  if (!std::filesystem::is_directory(kBpfWeftDir, ec)) return;
  for (const auto& e : std::filesystem::directory_iterator(kBpfWeftDir, ec)) {
    std::string name = e.path().filename().string();
    if (name == prefix || absl::StartsWith(name, prefix + "-")) {
      std::filesystem::remove_all(e.path(), ec);
      if (ec) {
        LOG_WARN("testbed", "cannot remove bpffs pins",
                 {{"dir", e.path().string()}, {"error", ec.message()}});
      }
    }
  }
  ::rmdir(kBpfWeftDir);  // the shared parent, once no testbed uses it (fails otherwise)
}

std::vector<std::string> internal::KernelObjectsOf(const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  if (auto mount = FindCgroup2Mount(); mount.ok()) {
    std::string dir = absl::StrCat(*mount, "/", prefix);
    if (std::filesystem::exists(dir, ec)) out.push_back(dir);
  }
  if (!std::filesystem::is_directory(kBpfWeftDir, ec)) return out;
  for (const auto& e : std::filesystem::directory_iterator(kBpfWeftDir, ec)) {
    std::string name = e.path().filename().string();
    if (name == prefix || absl::StartsWith(name, prefix + "-")) out.push_back(e.path().string());
  }
  return out;
}

void CleanupStaleKernelObjects() {
  auto stale = [](const std::string& name) {
    auto pid = OwnerPid(name);
    return pid && ::kill(*pid, 0) != 0 && errno == ESRCH;
  };
  std::error_code ec;
  if (auto m = FindCgroup2Mount(); m.ok()) {
    for (const auto& e : std::filesystem::directory_iterator(*m, ec)) {
      if (e.is_directory(ec) && stale(e.path().filename().string())) {
        LOG_INFO("testbed", "removing stale cgroup", {{"cgroup", e.path().string()}});
        RemoveCgroupTree(e.path().string());
      }
    }
  }
  if (!std::filesystem::is_directory(kBpfWeftDir, ec)) return;
  for (const auto& e : std::filesystem::directory_iterator(kBpfWeftDir, ec)) {
    if (stale(e.path().filename().string())) {
      LOG_INFO("testbed", "removing stale bpffs pins", {{"dir", e.path().string()}});
      std::filesystem::remove_all(e.path(), ec);
    }
  }
}

absl::Status Testbed::CreateCgroups() {
  WEFT_ASSIGN_OR_RETURN(std::string mount, FindCgroup2Mount());
  mesh_cgroup_ = absl::StrCat(mount, "/", prefix_);
  if (::mkdir(mesh_cgroup_.c_str(), 0755) != 0) {
    int err = errno;
    std::string dir = mesh_cgroup_;
    mesh_cgroup_.clear();
    return Errno(err, absl::StrCat("creating cgroup ", dir));
  }
  for (PodInfo& p : pods_) {
    p.cgroup = absl::StrCat(mesh_cgroup_, "/", SanitizePodName(p.name));
    if (::mkdir(p.cgroup.c_str(), 0755) != 0)
      return Errno(errno, absl::StrCat("creating cgroup ", p.cgroup));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> SocketInPod(const PodInfo& pod, int family, int type) {
  UniqueFd ns(::open(NetnsPath(pod.netns).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return Errno(errno, absl::StrCat("opening netns ", pod.netns));
  UniqueFd procs;
  if (!pod.cgroup.empty()) {
    procs.reset(::open((pod.cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!procs) return Errno(errno, absl::StrCat("opening ", pod.cgroup, "/cgroup.procs"));
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return Errno(errno, "socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  // A socket belongs to the cgroup of the task that creates it (the cgroup hooks follow the
  // socket), so a short-lived child joins the pod's cgroup and netns, creates it, and passes
  // it back. Async-signal-safe calls only in the child.
  pid_t pid = ::fork();
  if (pid < 0) return Errno(errno, "fork");
  if (pid == 0) {
    int err = 0;
    if (procs && ::write(procs.get(), "0", 1) != 1) err = errno;
    if (!err && ::setns(ns.get(), CLONE_NEWNET) != 0) err = errno;
    int s = err ? -1 : ::socket(family, type | SOCK_CLOEXEC, 0);
    if (!err && s < 0) err = errno;
    ssize_t n = SendWithFd(theirs.get(), &err, sizeof err, s, 0);
    ::_exit(n < 0 ? 1 : 0);
  }
  theirs.reset();
  int err = 0;
  std::vector<UniqueFd> fds;
  int flags = 0;
  ssize_t n = RecvWithFds(mine.get(), &err, sizeof err, 0, 1, &fds, &flags);
  int rerr = errno;
  int st;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof err)) return Errno(rerr, "receiving the pod's socket");
  if (err != 0) return Errno(err, absl::StrCat("creating a socket in pod ", pod.name));
  if (fds.empty()) return absl::InternalError("no socket came back");
  return std::move(fds[0]);
}

absl::StatusOr<UniqueFd> DialFromPod(const PodInfo& pod, const SockAddr& to,
                                     std::chrono::milliseconds timeout) {
  int family = to.ip.IsV4() ? AF_INET : AF_INET6;
  UniqueFd fd;
  if (!pod.cgroup.empty()) {
    WEFT_ASSIGN_OR_RETURN(fd, SocketInPod(pod, family, SOCK_STREAM));
  } else {
    UniqueFd ns(::open(NetnsPath(pod.netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns) return Errno(errno, absl::StrCat("opening netns ", pod.netns));
    WEFT_ASSIGN_OR_RETURN(fd, SocketInNetns(ns.get(), family, SOCK_STREAM, 0));
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect() too
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_storage ss;
  socklen_t len = to.ToSockaddr(&ss);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int err = errno;
    return absl::UnavailableError(absl::StrCat("connect from pod ", pod.name, " to ", to.ToString(),
                                               ": ", std::strerror(err)));
  }
  return fd;
}

}  // namespace weft::testbed
