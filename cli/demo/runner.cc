#include "cli/demo/runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <ostream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/testbed/testbed.h"
#include "common/net.h"
#include "common/status.h"

#ifndef WEFT_SOURCE_DIR
#define WEFT_SOURCE_DIR ""
#endif

namespace weft::cli::demo {

using namespace std::chrono_literals;

namespace {
// ---------------------------------------------------------------------------------------------
// Ctrl-C: the handler only sets a flag. The demo's children run in their own process groups,
// so the terminal's SIGINT reaches only the demo, which stops the current step (except `up`,
// which is let finish so that `down` finds the mesh) and tears down. SA_RESETHAND: a second
// Ctrl-C kills at once (the next `weftctl up` or `down` removes what that leaves).

std::atomic<bool> g_interrupted{false};

void OnSignal(int) {
  g_interrupted = true;
  constexpr char kMsg[] = "\n==> interrupted: tearing down (press Ctrl-C again to quit at once)\n";
  ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)ignored;
}

class SignalGuard {
 public:
  SignalGuard() {
    g_interrupted = false;
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

}  // namespace

bool Interrupted() {
  return g_interrupted.load();
}

bool Sleep(std::chrono::milliseconds d) {
  auto end = Clock::now() + d;
  while (!Interrupted()) {
    auto left = end - Clock::now();
    if (left <= 0s) return true;
    std::this_thread::sleep_for(std::min<Clock::duration>(left, 50ms));
  }
  return false;
}

std::optional<std::string> InPath(const std::string& name) {
  const char* env = getenv("PATH");
  std::string path = env ? env : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  for (const std::string& dir :
       std::vector<std::string>(absl::StrSplit(path, ':', absl::SkipEmpty()))) {
    std::string p = absl::StrCat(dir, "/", name);
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

std::string Spiffe(const std::string& ns, const std::string& sa) {
  return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa;
}

std::string Label(const MetricSample& s, const std::string& key) {
  auto it = s.labels.find(key);
  return it == s.labels.end() ? "" : it->second;
}

std::string FormatValue(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v))) return std::to_string(int64_t(v));
  return absl::StrCat(v);
}

std::string Render(const MetricSample& s, const std::vector<std::string>& keys) {
  std::vector<std::string> parts;
  for (const auto& k : keys) {
    std::string v = Label(s, k);
    if (v.empty() || v == "unknown") continue;
    parts.push_back(absl::StrCat(k, "=\"", v, "\""));
  }
  return absl::StrCat(s.name, "{", absl::StrJoin(parts, ","), "} ", FormatValue(s.value));
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  size_t i = s.find_first_not_of(" \n");
  return i == std::string::npos ? "" : s.substr(i);
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<Child> Child::Start(const std::vector<std::string>& argv) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    return ErrnoError(e, "fork");
  }
  if (pid == 0) {
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(p[1], 1);
    dup2(p[1], 2);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  setpgid(pid, pid);  // both sides, so that a signal to the group never misses
  close(p[1]);
  Child c;
  c.pid_ = pid;
  c.fd_ = UniqueFd(p[0]);
  return c;
}

Child::Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), fd_(std::move(o.fd_)) {}

Child& Child::operator=(Child&& o) noexcept {
  std::swap(pid_, o.pid_);
  std::swap(fd_, o.fd_);
  return *this;
}

Child::~Child() {
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

absl::StatusOr<std::string> Child::LineWith(const std::string& needle,
                                            std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string got;
  while (Clock::now() < deadline) {
    pollfd pfd{fd_.get(), POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = read(fd_.get(), buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    size_t at = got.find(needle);
    if (at == std::string::npos) continue;
    size_t start = got.rfind('\n', at);
    start = start == std::string::npos ? 0 : start + 1;
    return got.substr(start, got.find('\n', at) - start);
  }
  return absl::DeadlineExceededError(absl::StrCat("no \"", needle, "\" in: ", got));
}

ChildResult Child::Finish(std::chrono::milliseconds timeout, std::ostream* echo,
                          bool interruptible) {
  ChildResult r;
  auto deadline = Clock::now() + timeout;
  std::string pending;
  std::optional<Clock::time_point> termed, exited;
  int status = 0;
  bool eof = false;
  auto flush_lines = [&](bool all) {
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      if (echo) *echo << "    " << pending.substr(0, nl) << std::endl;
      pending.erase(0, nl + 1);
    }
    if (all && !pending.empty()) {
      if (echo) *echo << "    " << pending << std::endl;
      pending.clear();
    }
  };
  while (true) {
    if (!exited) {
      pid_t w = waitpid(pid_, &status, WNOHANG);
      if (w == pid_) exited = Clock::now();
    }
    // After the exit, what is still in the pipe is read; a grandchild holding the pipe open
    // (none should) cannot hold the demo for more than half a second.
    if (exited && (eof || Clock::now() - *exited > 500ms)) break;
    if (!exited && !termed) {
      bool stop = Clock::now() > deadline;
      if (interruptible && Interrupted()) {
        r.interrupted = true;
        stop = true;
      }
      if (stop) {
        r.timed_out = !r.interrupted;
        kill(-pid_, SIGTERM);
        termed = Clock::now();
      }
    } else if (!exited && termed && Clock::now() - *termed > 3s) {
      kill(-pid_, SIGKILL);
    }
    if (eof) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    pollfd pfd{fd_.get(), POLLIN, 0};
    int n = poll(&pfd, 1, 100);
    if (n > 0) {
      char buf[4096];
      ssize_t got = read(fd_.get(), buf, sizeof buf);
      if (got > 0) {
        r.output.append(buf, static_cast<size_t>(got));
        pending.append(buf, static_cast<size_t>(got));
        flush_lines(false);
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        eof = true;
      }
    }
  }
  flush_lines(true);
  pid_ = -1;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// The output of a program run for the demo's own analysis (tshark), not one of the steps.
std::string ReadCommand(const std::vector<std::string>& argv) {
  auto c = Child::Start(argv);
  if (!c.ok()) return "";
  return c->Finish(30s, nullptr, false).output;
}

ChildResult Runner::Run(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                        bool echo, bool interruptible) {
  std::vector<std::string> full = Weftctl(args);
  out_ << "  $ weftctl " << FormatCommand(full) << std::endl;
  full.insert(full.begin(), self_);
  auto c = Child::Start(full);
  if (!c.ok()) {
    ChildResult r;
    r.output = std::string(c.status().message());
    Info(r.output);
    return r;
  }
  return c->Finish(timeout, echo ? &out_ : nullptr, interruptible);
}

absl::StatusOr<Child> Runner::StartQuietly(const std::vector<std::string>& args) {
  std::vector<std::string> full = Weftctl(args);
  out_ << "  $ weftctl " << FormatCommand(full) << " &" << std::endl;
  full.insert(full.begin(), self_);
  return Child::Start(full);
}

absl::Status Runner::LoadState() {
  WEFT_ASSIGN_OR_RETURN(state_, up::LoadMesh(state_root_, o_.name));
  return absl::OkStatus();
}

std::string Runner::PodName(const std::string& ip) const {
  for (const auto& p : state_.pods)
    if (p.ip == ip) return p.ns + "/" + p.name;
  for (const auto& n : state_.nodes)
    if (n.ip == ip) return n.name;
  return ip;
}

absl::StatusOr<std::string> Runner::Metrics(const up::NodeState& node) {
  int fd = open(testbed::NetnsPath(node.netns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open netns " + node.netns);
  UniqueFd ns(fd);
  WEFT_ASSIGN_OR_RETURN(SockAddr addr, SockAddr::Parse(node.metrics));
  return HttpGet(addr, "/metrics", ns.get());
}

absl::Status Runner::Preflight() {
  Step(1, "checking this machine");
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "weftctl demo needs root: it creates network namespaces, cgroups and iptables rules; "
        "run it with sudo");
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return absl::InternalError("cannot resolve /proc/self/exe");
  self_.assign(self, static_cast<size_t>(n));
  std::vector<std::string> missing;
  for (const char* tool : {"ip", "iptables-restore", "tshark", "curl"})
    if (!InPath(tool)) missing.push_back(tool);
  if (!missing.empty())
    return absl::FailedPreconditionError(
        absl::StrCat("missing tools: ", absl::StrJoin(missing, ", "),
                     "; install them (Debian: apt-get install iproute2 iptables tshark curl, "
                     "or bash scripts/deps.sh)"));
  std::error_code ec;
  WEFT_ASSIGN_OR_RETURN(
      o_.manifests,
      FindManifests(o_.manifests, std::filesystem::current_path(ec).string(), WEFT_SOURCE_DIR));
  state_root_ = std::filesystem::absolute(up::StateRoot(o_.state_root)).string();
  if (auto s = up::LoadMesh(state_root_, o_.name); s.ok() && up::SupervisorAlive(*s))
    return absl::FailedPreconditionError(absl::StrCat(
        "a mesh named \"", o_.name, "\" is already running (", FormatCommand(Weftctl({"down"})),
        " stops it; or give the demo another --name)"));
  if (o_.work_dir.empty()) {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/weft-demo-XXXXXX";
    if (!mkdtemp(tmpl.data())) return ErrnoError(errno, "mkdtemp " + tmpl);
    o_.work_dir = tmpl;
    temp_dir_ = true;
  } else {
    std::filesystem::create_directories(o_.work_dir, ec);
    if (ec)
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create --work-dir ", o_.work_dir, ": ", ec.message()));
    o_.work_dir = std::filesystem::absolute(o_.work_dir).string();
  }
  Info("weftctl   = " + self_);
  Info("manifests = " + o_.manifests);
  Info("captures  = " + o_.work_dir);
  return absl::OkStatus();
}

absl::Status Runner::Up(int step, const std::string& manifests, const std::string& title) {
  Step(step, title);
  std::vector<std::string> args = {"up", "--nodes", std::to_string(o_.nodes)};
  if (o_.capture != "auto") {
    args.push_back("--capture");
    args.push_back(o_.capture);
  }
  args.push_back(manifests);
  up_started_ = true;
  // Not interruptible: `up` returns once the mesh is ready (or failed), then `down` removes it.
  ChildResult r = Run(args, 240s, true, /*interruptible=*/false);
  Record("weftctl up: the mesh and the shop are up", r.code == 0,
         absl::StrCat("exit ", r.code, r.timed_out ? " (timed out)" : ""));
  if (r.code != 0) return absl::InternalError("weftctl up failed (see its output above)");
  WEFT_RETURN_IF_ERROR(LoadState());
  if (state_.nodes.size() < 2) return absl::InternalError("the mesh has fewer than 2 nodes");
  return absl::OkStatus();
}

absl::Status Runner::Enrol(int step) {
  Step(step, "enrolling namespace shop in the mesh, live (no pod restarts)");
  ChildResult r = Run({"label", "namespace", "shop", "weft.dev/mesh=enabled", "--wait"}, 120s);
  if (r.interrupted) return absl::CancelledError("interrupted");
  Record("weftctl label enrols the shop", r.code == 0, absl::StrCat("exit ", r.code));
  if (r.code != 0) return absl::InternalError("enrolling the shop failed");
  return absl::OkStatus();
}

void Runner::Step(int n, const std::string& title) {
  auto s = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_).count();
  out_ << "\n==> [" << n << "/" << steps_ << "  " << absl::StrCat(s / 1000, ".", (s / 100) % 10)
       << "s] " << title << std::endl;
}

void Runner::Info(const std::string& s) {
  out_ << "    " << s << std::endl;
}

void Runner::Record(const std::string& what, bool ok, std::string detail) {
  std::replace(detail.begin(), detail.end(), '\n', ' ');
  checks_.push_back({what, ok, detail});
  out_ << "    " << (ok ? "[ok] " : "[FAILED] ") << what
       << (!ok && !detail.empty() ? ": " + detail : "") << std::endl;
}

std::vector<std::string> Runner::Weftctl(std::vector<std::string> args) const {
  std::vector<std::string> flags = MeshFlags(o_);
  args.insert(args.begin() + 1, flags.begin(), flags.end());
  return args;
}

void Runner::WaitForCtrlC() {
  out_ << "\n==> the mesh stays up (--keep); press Ctrl-C here to tear it down. Try:" << std::endl;
  auto cmd = [&](std::vector<std::string> args) {
    Info("weftctl " + FormatCommand(Weftctl(std::move(args))));
  };
  for (auto& c : TryNext()) cmd(std::move(c));
  Info("state and logs: " + state_.dir);
  // The mesh in a browser: weftctl dashboard, for as long as the mesh stays up.
  absl::StatusOr<Child> dashboard = StartQuietly({"dashboard"});
  auto url = dashboard.ok() ? dashboard->LineWith("http://", 10s) : dashboard.status();
  if (url.ok()) {
    out_ << "\n==> the dashboard (pods, service graph, golden signals, policies): "
         << url->substr(url->find("http://"),
                        url->find(' ', url->find("http://")) - url->find("http://"))
         << std::endl;
  } else {
    Info("weftctl dashboard did not start: " + std::string(url.status().message()));
  }
  while (Sleep(1s)) {
  }
}

void Runner::Down() {
  Step(steps_, "tearing down");
  // Ctrl-C during the teardown must not stop it.
  ChildResult r = Run({"down"}, 120s, true, /*interruptible=*/false);
  Record("weftctl down", r.code == 0, absl::StrCat("exit ", r.code));
  std::vector<std::string> left;
  if (!state_.prefix.empty())
    for (auto& l : testbed::TestbedLeftovers(state_.prefix)) left.push_back(l);
  std::error_code ec;
  if (std::filesystem::exists(up::PathsFor(state_root_, o_.name).state_file, ec))
    left.push_back(up::PathsFor(state_root_, o_.name).state_file);
  std::vector<std::pair<std::string, int>> pids = {{"supervisor", state_.supervisor_pid},
                                                   {"weftd", state_.weftd.pid}};
  for (const auto& n : state_.nodes) {
    pids.push_back({"ztunnel " + n.name, n.ztunnel_pid});
    pids.push_back({"weft-agent " + n.name, n.agent_pid});
  }
  for (const auto& p : state_.pods) pids.push_back({"pod " + p.ns + "/" + p.name, p.pid});
  // Processes may take a moment to be reaped once their namespaces are gone.
  auto deadline = Clock::now() + 3s;
  std::vector<std::string> alive;
  do {
    alive.clear();
    for (const auto& [what, pid] : pids)
      if (pid > 0 && kill(pid, 0) == 0) alive.push_back(absl::StrCat(what, " (pid ", pid, ")"));
    if (alive.empty()) break;
    std::this_thread::sleep_for(100ms);
  } while (Clock::now() < deadline);
  for (auto& a : alive) left.push_back("process " + a);
  if (left.empty())
    Info(absl::StrCat("nothing is left: no namespace, cgroup or bpffs pin named ", state_.prefix,
                      "*, no state file, none of the mesh's ", pids.size(), " processes"));
  Record("nothing of the mesh is left", left.empty(), absl::StrJoin(left, ", "));
}

int Runner::Main(const std::string& banner) {
  SignalGuard guard;
  out_ << banner << std::endl;
  absl::Status st = Steps();
  if (st.ok() && Interrupted()) st = absl::CancelledError("interrupted (Ctrl-C)");
  if (!st.ok()) err_ << "weftctl demo: " << st.message() << std::endl;
  if (st.ok() && o_.keep) WaitForCtrlC();
  if (up_started_) {
    if (state_.prefix.empty()) (void)LoadState();  // `up` failed or was cut short
    Down();
  }

  bool all_ok = st.ok() && !checks_.empty() &&
                std::all_of(checks_.begin(), checks_.end(), [](const Check& c) { return c.ok; });
  bool keep_dir = !temp_dir_ || o_.keep || (!all_ok && !Interrupted());
  if (temp_dir_ && !keep_dir) {
    std::error_code ec;
    std::filesystem::remove_all(o_.work_dir, ec);
  } else if (!o_.work_dir.empty()) {
    out_ << "    captures kept in " << o_.work_dir << std::endl;
  }
  if (!state_.dir.empty()) out_ << "    logs kept in " << state_.dir << "/logs" << std::endl;
  auto secs =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_).count() / 1000.0;
  int failed = static_cast<int>(
      std::count_if(checks_.begin(), checks_.end(), [](const Check& c) { return !c.ok; }));
  if (all_ok) {
    out_ << "\n==> demo passed: " << checks_.size() << " checks held in "
         << absl::StrCat(static_cast<int>(secs * 10) / 10.0) << "s" << std::endl;
    return kExitOk;
  }
  if (failed > 0) {
    out_ << "\n==> failed checks:" << std::endl;
    for (const auto& c : checks_)
      if (!c.ok) Info(c.what + (c.detail.empty() ? "" : ": " + c.detail));
  }
  if (Interrupted())
    out_ << "\n==> demo interrupted after " << secs << "s; the mesh has been removed" << std::endl;
  else if (!st.ok())
    out_ << "\n==> demo FAILED: it stopped at: " << st.message() << std::endl;
  else
    out_ << "\n==> demo FAILED: " << failed << " of " << checks_.size() << " checks failed"
         << std::endl;
  return kExitFailure;
}

}  // namespace weft::cli::demo
