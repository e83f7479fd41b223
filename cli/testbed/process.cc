// Spawn/Exec: fork + setns + exec, and the Process handle.

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/testbed/internal.h"
#include "cli/testbed/testbed.h"
#include "common/netns.h"
#include "common/status.h"

extern char** environ;

namespace weft::testbed {
namespace {

using Clock = std::chrono::steady_clock;

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int DecodeWaitStatus(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

absl::StatusOr<std::string> FindExecutable(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("empty argv[0]");
  auto is_exec = [](const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) {
    if (is_exec(name)) return name;
    return absl::NotFoundError(absl::StrCat(name, " is not an executable file"));
  }
  const char* env_path = ::getenv("PATH");
  std::string path = env_path && *env_path
                         ? env_path
                         : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  // Root's PATH in some CI shells lacks the sbin directories where `ip` lives.
  absl::StrAppend(&path, ":/usr/sbin:/sbin");
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string cand = absl::StrCat(dir, "/", name);
    if (is_exec(cand)) return cand;
  }
  return absl::NotFoundError(
      absl::StrCat("program '", name, "' not found in PATH (", path, "); install it"));
}

std::vector<std::string> BuildEnv(const std::vector<std::pair<std::string, std::string>>& add,
                                  bool clear = false) {
  std::vector<std::string> env;
  for (char** e = clear ? nullptr : environ; e && *e; ++e) {
    std::string_view kv(*e);
    std::string_view key = kv.substr(0, kv.find('='));
    bool overridden =
        std::any_of(add.begin(), add.end(), [&](const auto& p) { return p.first == key; });
    if (!overridden) env.emplace_back(kv);
  }
  for (const auto& [k, v] : add) env.push_back(absl::StrCat(k, "=", v));
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct ChildSetup {
  int netns_fd = -1;
  int cgroup_procs_fd = -1;  // <cgroup>/cgroup.procs to join, or -1
  int stdio[3] = {-1, -1, -1};
  int err_fd = -1;  // CLOEXEC pipe: receives {stage, errno} if the child fails before exec
  bool pdeathsig = true;
  pid_t parent = 0;
  const char* path = nullptr;
  char** argv = nullptr;
  char** envp = nullptr;
  const std::vector<std::pair<std::string, std::string>>* mounts = nullptr;
  const char* hostname = nullptr;  // non-null: new UTS namespace
  const char* cwd = nullptr;
  bool new_pgrp = true;
};

// Runs in the forked child of a possibly multi-threaded parent: async-signal-safe calls only.
[[noreturn]] void ChildMain(const ChildSetup& c) {
  auto fail = [&](int stage) {
    int msg[2] = {stage, errno};
    ssize_t n = ::write(c.err_fd, msg, sizeof msg);
    (void)n;
    ::_exit(127);
  };
  if (c.new_pgrp) ::setpgid(0, 0);
  if (c.pdeathsig) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(0);
    if (::getppid() != c.parent) ::_exit(127);  // the parent died before prctl
  }
  if (c.cgroup_procs_fd >= 0 && ::write(c.cgroup_procs_fd, "0", 1) != 1) fail(4);
  if (c.netns_fd >= 0 && ::setns(c.netns_fd, CLONE_NEWNET) != 0) fail(1);
  if (c.mounts && !c.mounts->empty()) {
    // A private copy of the mount table; slave first so nothing we mount propagates back.
    if (::unshare(CLONE_NEWNS) != 0) fail(5);
    if (::mount("none", "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) fail(5);
    for (const auto& [src, dst] : *c.mounts) {
      if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) fail(5);
    }
  }
  if (c.hostname) {
    if (::unshare(CLONE_NEWUTS) != 0 || ::sethostname(c.hostname, ::strlen(c.hostname)) != 0)
      fail(6);
  }
  if (c.cwd && ::chdir(c.cwd) != 0) fail(7);
  for (int i = 0; i < 3; ++i) {
    if (c.stdio[i] == i) {
      if (::fcntl(i, F_SETFD, 0) != 0) fail(2);
    } else if (::dup2(c.stdio[i], i) < 0) {
      fail(2);
    }
  }
  // Descriptors the parent left inheritable (a harness's pipes, listening sockets) must not
  // leak into a daemon that may outlive the test.
  ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, &dfl, nullptr);  // ignored signals survive exec
  ::execve(c.path, c.argv, c.envp);
  fail(3);
  ::_exit(127);
}

constexpr const char* kStageNames[] = {"prctl(PR_SET_PDEATHSIG)",
                                       "setns",
                                       "redirecting stdio",
                                       "execve",
                                       "joining the cgroup",
                                       "bind-mounting in a private mount namespace",
                                       "setting the hostname in a new UTS namespace",
                                       "changing to the working directory"};

// What a Spawn adds to a plain fork+setns+exec.
struct Extras {
  bool clear_env = false;
  const std::vector<std::pair<std::string, std::string>>* mounts = nullptr;
  std::string hostname;
  std::string cwd;
  bool new_pgrp = true;
};

struct Forked {
  pid_t pid = -1;
  int pidfd = -1;
};

// Forks a child that enters `netns` and execs argv with the given stdio. Returns once the exec
// succeeded (or the error that prevented it).
absl::StatusOr<Forked> ForkExec(const std::string& netns, const std::vector<std::string>& argv,
                                const std::vector<std::pair<std::string, std::string>>& env_add,
                                const int stdio[3], bool pdeathsig, const std::string& cgroup = "",
                                const Extras& extras = {}) {
  if (argv.empty()) return absl::InvalidArgumentError("empty argv: nothing to run");
  UniqueFd procs;
  if (!cgroup.empty()) {
    procs.reset(::open((cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!procs) return ErrnoError(errno, absl::StrCat("opening ", cgroup, "/cgroup.procs"));
  }
  WEFT_ASSIGN_OR_RETURN(std::string path, FindExecutable(argv[0]));
  UniqueFd ns_fd;
  if (!netns.empty()) {
    auto fd = OpenNetns(NetnsPath(netns));
    if (!fd.ok()) {
      return absl::NotFoundError(absl::StrCat("network namespace '", netns,
                                              "' cannot be opened: ", fd.status().message()));
    }
    ns_fd = std::move(*fd);
  }
  std::vector<std::string> args = argv;
  std::vector<std::string> env = BuildEnv(env_add, extras.clear_env);
  std::vector<char*> cargv = CStrings(args);
  std::vector<char*> cenv = CStrings(env);

  int errp[2];
  if (::pipe2(errp, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd err_r(errp[0]), err_w(errp[1]);

  ChildSetup c;
  c.netns_fd = ns_fd.get();
  c.cgroup_procs_fd = procs.get();
  for (int i = 0; i < 3; ++i) c.stdio[i] = stdio[i];
  c.err_fd = err_w.get();
  c.pdeathsig = pdeathsig;
  c.parent = ::getpid();
  c.path = path.c_str();
  c.argv = cargv.data();
  c.envp = cenv.data();
  c.mounts = extras.mounts;
  c.hostname = extras.hostname.empty() ? nullptr : extras.hostname.c_str();
  c.cwd = extras.cwd.empty() ? nullptr : extras.cwd.c_str();
  c.new_pgrp = extras.new_pgrp;

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) ChildMain(c);
  err_w.reset();
  int msg[2];
  ssize_t n;
  do {
    n = ::read(err_r.get(), msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof msg)) {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    int stage = std::clamp(msg[0], 0, 7);
    return ErrnoError(msg[1], absl::StrCat("starting '", absl::StrJoin(argv, " "), "' in netns '",
                                           netns, "': ", kStageNames[stage]));
  }
  // A pidfd makes Wait() a poll() and Kill() immune to pid reuse. The child cannot have been
  // reaped yet (only we reap it), so the pid is still ours.
  int pidfd = PidfdOpen(pid);
  return Forked{pid, pidfd};
}

std::string Truncated(std::string s, size_t max = 4000) {
  if (s.size() > max) s = absl::StrCat(s.substr(0, max), "...");
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::StatusOr<Process> Spawn(const std::string& netns, const std::vector<std::string>& argv,
                              const std::string& log_path, const SpawnOptions& opts) {
  Extras extras{opts.clear_env, &opts.bind_mounts, opts.hostname, opts.cwd,
                /*new_pgrp=*/!opts.inherit_stdio};
  if (opts.inherit_stdio) {
    int stdio[3] = {0, 1, 2};
    WEFT_ASSIGN_OR_RETURN(Forked f, ForkExec(netns, argv, opts.env, stdio, opts.die_with_parent,
                                             opts.cgroup, extras));
    Process p;
    p.pid_ = f.pid;
    p.pidfd_ = f.pidfd;
    return p;
  }
  UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!in) return ErrnoError(errno, "open /dev/null");
  UniqueFd out;
  if (log_path.empty()) {
    out.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  } else {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (opts.append_log ? O_APPEND : O_TRUNC);
    out.reset(::open(log_path.c_str(), flags, 0644));
  }
  if (!out) {
    return ErrnoError(errno, absl::StrCat("open log file '", log_path,
                                          "' (does its directory exist and is it writable?)"));
  }
  int stdio[3] = {in.get(), out.get(), out.get()};
  WEFT_ASSIGN_OR_RETURN(
      Forked f, ForkExec(netns, argv, opts.env, stdio, opts.die_with_parent, opts.cgroup, extras));
  Process p;
  p.pid_ = f.pid;
  p.pidfd_ = f.pidfd;
  p.log_path_ = log_path;
  return p;
}

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      pidfd_(std::exchange(o.pidfd_, -1)),
      status_(std::exchange(o.status_, std::nullopt)),
      log_path_(std::move(o.log_path_)) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    if (valid() && !status_) Terminate();
    if (pidfd_ >= 0) ::close(pidfd_);
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::exchange(o.pidfd_, -1);
    status_ = std::exchange(o.status_, std::nullopt);
    log_path_ = std::move(o.log_path_);
  }
  return *this;
}

Process::~Process() {
  if (valid() && !status_) Terminate();
  if (pidfd_ >= 0) ::close(pidfd_);
}

bool Process::Reap(int options) {
  if (status_) return true;
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, options);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = DecodeWaitStatus(st);
  } else if (r < 0) {
    status_ = -1;  // ECHILD: someone else reaped it (SIGCHLD ignored?); the status is lost
  } else {
    return false;
  }
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
  return true;
}

bool Process::Alive() {
  if (!valid()) return false;
  return !Reap(WNOHANG);
}

absl::Status Process::Kill(int sig) {
  if (!valid()) return absl::FailedPreconditionError("no process");
  if (status_) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", pid_, " already exited with status ", *status_));
  }
  // Until we reap it, the pid (and so its process group id) cannot be reused.
  if (::kill(-pid_, sig) == 0) return absl::OkStatus();
  if (pidfd_ >= 0 && ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) == 0)
    return absl::OkStatus();
  return ErrnoError(errno, absl::StrCat("kill ", pid_));
}

absl::StatusOr<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (!valid()) return absl::FailedPreconditionError("no process");
  if (status_) return *status_;
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (Reap(WNOHANG)) return *status_;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    if (pidfd_ >= 0) {
      pollfd pfd{pidfd_, POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    } else {
      std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(10)));
    }
  }
  return absl::DeadlineExceededError(
      absl::StrCat("process ", pid_, " still running after ", timeout.count(), " ms"));
}

int Process::Terminate(std::chrono::milliseconds grace) {
  if (!valid()) return -1;
  if (status_) return *status_;
  (void)Kill(SIGTERM);
  if (auto st = Wait(grace); st.ok()) return *st;
  (void)Kill(SIGKILL);
  if (auto st = Wait(std::chrono::seconds(10)); st.ok()) return *st;
  Reap(0);
  return status_.value_or(-1);
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::string> Exec(const std::string& netns, const std::vector<std::string>& argv,
                                 std::string_view stdin_data, std::chrono::milliseconds timeout) {
  // stdin is a socket so that writing to a child that exited early fails with EPIPE
  // (MSG_NOSIGNAL) instead of raising SIGPIPE in the caller.
  int sp[2], outp[2], errp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
    return ErrnoError(errno, "socketpair");
  UniqueFd in_parent(sp[0]), in_child(sp[1]);
  if (::pipe2(outp, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd out_r(outp[0]), out_w(outp[1]);
  if (::pipe2(errp, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd err_r(errp[0]), err_w(errp[1]);
  ::shutdown(in_child.get(), SHUT_WR);

  int stdio[3] = {in_child.get(), out_w.get(), err_w.get()};
  WEFT_ASSIGN_OR_RETURN(Forked f, ForkExec(netns, argv, {}, stdio, /*pdeathsig=*/true));
  UniqueFd pidfd(f.pidfd);
  in_child.reset();
  out_w.reset();
  err_w.reset();
  for (UniqueFd* fd : {&in_parent, &out_r, &err_r}) {
    ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  }

  std::string out, err;
  size_t written = 0;
  if (stdin_data.empty()) in_parent.reset();
  auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  while (out_r || err_r) {
    pollfd pfds[3];
    int n = 0;
    if (in_parent) pfds[n++] = {in_parent.get(), POLLOUT, 0};
    if (out_r) pfds[n++] = {out_r.get(), POLLIN, 0};
    if (err_r) pfds[n++] = {err_r.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int r = ::poll(pfds, n, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (r < 0 && errno != EINTR) return ErrnoError(errno, "poll");
    for (int i = 0; i < n && r > 0; ++i) {
      if (!pfds[i].revents) continue;
      int fd = pfds[i].fd;
      if (in_parent && fd == in_parent.get()) {
        ssize_t w = ::send(fd, stdin_data.data() + written, stdin_data.size() - written,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) written += static_cast<size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size())
          in_parent.reset();
        continue;
      }
      UniqueFd& src = (out_r && fd == out_r.get()) ? out_r : err_r;
      std::string& dst = (&src == &out_r) ? out : err;
      char buf[16384];
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got > 0) {
        dst.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        src.reset();
      }
    }
  }
  std::string cmd = absl::StrJoin(argv, " ");
  std::string where = netns.empty() ? "" : absl::StrCat(" in netns '", netns, "'");
  if (timed_out) {
    ::kill(-f.pid, SIGKILL);
    int st;
    while (::waitpid(f.pid, &st, 0) < 0 && errno == EINTR) {
    }
    return absl::DeadlineExceededError(absl::StrCat("'", cmd, "'", where, " did not finish within ",
                                                    timeout.count(),
                                                    " ms; stderr: ", Truncated(err)));
  }
  int st = 0;
  while (::waitpid(f.pid, &st, 0) < 0 && errno == EINTR) {
  }
  int code = DecodeWaitStatus(st);
  if (code != 0) {
    return absl::InternalError(absl::StrCat("'", Truncated(cmd, 300), "'", where,
                                            " exited with status ", code, ": ", Truncated(err)));
  }
  return out;
}

}  // namespace weft::testbed
