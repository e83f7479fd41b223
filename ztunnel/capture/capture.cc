#include "ztunnel/capture/capture.h"

#include <fcntl.h>
#include <ifaddrs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::ztunnel {
namespace {

constexpr char kScope[] = "capture";
// SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST
// (linux/netfilter_ipv6/ip6_tables.h) share the value; the kernel headers that define them
// do not mix well with glibc's, so the number is spelled out.
constexpr int kSoOriginalDst = 80;

constexpr char kOutputChain[] = "WEFT_INPOD_OUTPUT";
constexpr char kPreroutingChain[] = "WEFT_INPOD_PREROUTING";
// What removal leaves: an empty chain, jumped to from OUTPUT by a rule with a conntrack match.
// The REDIRECT rules were the netns's only users of conntrack; once they are gone the kernel
// stops tracking the pod's packets, so connections REDIRECTed before the removal are no longer
// translated: the app's bytes (and its FIN) go to the original destination and ztunnel's to
// nobody, and both ends hang. This rule matches nothing it changes, but keeps conntrack (and
// the nat hooks) on in the netns, so captured connections drain through ztunnel.
constexpr char kDrainChain[] = "WEFT_INPOD_DRAIN";
constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr auto kCommandTimeout = std::chrono::seconds(30);

// ---- running iptables inside a netns ---------------------------------------------------

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

std::optional<std::string> FindExecutable(const std::string& name) {
  const char* env = std::getenv("PATH");
  std::string path = env && *env ? std::string(env) : kDefaultPath;
  // Pods and systemd units often run with a PATH that lacks the sbin dirs.
  absl::StrAppend(&path, ":", kDefaultPath);
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// The child's stdin, stdout and stderr pipes, every end close-on-exec and at fd 3 or above.
struct Pipes {
  UniqueFd in_r, in_w, out_r, out_w, err_r, err_w;
};

absl::StatusOr<Pipes> MakePipes() {
  // A daemon that closed its stdio would get pipe fds 0..2, which the child's dup2 calls would
  // clobber (or leave close-on-exec); keep every pipe end at 3 or above.
  auto above_stdio = [](int fd) -> UniqueFd {
    if (fd > 2) return UniqueFd(fd);
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    return UniqueFd(moved);
  };
  Pipes p;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  p.in_r = above_stdio(in[0]), p.in_w = above_stdio(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  p.out_r = above_stdio(out[0]), p.out_w = above_stdio(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  p.err_r = above_stdio(err[0]), p.err_w = above_stdio(err[1]);
  if (!p.in_r || !p.in_w || !p.out_r || !p.out_w || !p.err_r || !p.err_w)
    return ErrnoError(errno, "fcntl(F_DUPFD_CLOEXEC)");
  return p;
}

// The child may exit before reading all of stdin: while this lives SIGPIPE is blocked on this
// thread, so the write fails with EPIPE instead of killing the process; a SIGPIPE that became
// pending meanwhile is discarded.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    sigset_t pending_before;
    sigpending(&pending_before);
    had_pipe_pending_ = sigismember(&pending_before, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_mask_);
  }
  ~SigpipeBlocked() {
    if (!had_pipe_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE)) {
        timespec zero{0, 0};
        sigtimedwait(&pipe_set_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t pipe_set_, old_mask_;
  bool had_pipe_pending_ = false;
};

// Feeds `input` to the child's stdin and collects its stdout and stderr until both close.
// False if `deadline` passed first.
bool PumpChildIo(Pipes& p, std::string_view input, std::chrono::steady_clock::time_point deadline,
                 CommandResult* res) {
  size_t written = 0;
  if (input.empty()) p.in_w.reset();
  auto drain = [](UniqueFd& fd, std::string& sink) {
    char buf[4096];
    ssize_t got = ::read(fd.get(), buf, sizeof buf);
    if (got > 0) {
      sink.append(buf, static_cast<size_t>(got));
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      fd.reset();
    }
  };
  while (p.out_r.valid() || p.err_r.valid()) {
    pollfd fds[3];
    int n = 0;
    int idx_in = -1, idx_out = -1, idx_err = -1;
    if (p.in_w.valid()) idx_in = n, fds[n++] = {p.in_w.get(), POLLOUT, 0};
    if (p.out_r.valid()) idx_out = n, fds[n++] = {p.out_r.get(), POLLIN, 0};
    if (p.err_r.valid()) idx_err = n, fds[n++] = {p.err_r.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    int r = ::poll(fds, n, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (idx_in >= 0 && fds[idx_in].revents) {
      ssize_t w = ::write(p.in_w.get(), input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) p.in_w.reset();
    }
    if (idx_out >= 0 && fds[idx_out].revents) drain(p.out_r, res->out);
    if (idx_err >= 0 && fds[idx_err].revents) drain(p.err_r, res->err);
  }
  return true;
}

// fork + (in the child) setns + execve, feeding `input` on stdin and collecting stdout and
// stderr. Everything the child needs is prepared before fork: between fork and exec in a
// multithreaded process only async-signal-safe calls are allowed (no malloc, no locks).
absl::StatusOr<CommandResult> RunCommandInNetns(int netns_fd, const std::string& exe,
                                                const std::vector<std::string>& args,
                                                std::string_view input) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::string path_env = absl::StrCat("PATH=", kDefaultPath);
  char lc_all[] = "LC_ALL=C";  // stable error texts, which we match on
  char* envp[] = {path_env.data(), lc_all, nullptr};
  sigset_t empty;
  sigemptyset(&empty);
  static const char kSetnsFailed[] = "weft: setns into the pod network namespace failed\n";
  static const char kExecFailed[] = "weft: execve failed\n";
  WEFT_ASSIGN_OR_RETURN(Pipes p, MakePipes());

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
    ::dup2(p.in_r.get(), 0);
    ::dup2(p.out_w.get(), 1);
    ::dup2(p.err_w.get(), 2);
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
      (void)!::write(2, kSetnsFailed, sizeof kSetnsFailed - 1);
      ::_exit(126);
    }
    ::execve(exe.c_str(), argv.data(), envp);
    (void)!::write(2, kExecFailed, sizeof kExecFailed - 1);
    ::_exit(127);
  }
  p.in_r.reset();
  p.out_w.reset();
  p.err_w.reset();
  ::fcntl(p.in_w.get(), F_SETFL, O_NONBLOCK);

  CommandResult res;
  bool timed_out = false;
  {
    SigpipeBlocked no_sigpipe;
    timed_out = !PumpChildIo(p, input, std::chrono::steady_clock::now() + kCommandTimeout, &res);
    p.in_w.reset();
    if (timed_out) ::kill(pid, SIGKILL);
  }

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoError(errno, "waitpid");
  }
  if (timed_out)
    return absl::DeadlineExceededError(absl::StrCat(exe, " did not finish within ",
                                                    kCommandTimeout.count(),
                                                    " s; killed (xtables lock held?)"));
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return res;
}

// ---- the iptables flavour for one address family ---------------------------------------

enum class Family { kV4, kV6 };

struct Tools {
  std::string cmd, restore, save;
  std::string version;
};

std::string_view Prefix(Family f) {
  return f == Family::kV4 ? "iptables" : "ip6tables";
}

absl::StatusOr<Tools> FindTools(Family f) {
  // Cached once found: the binaries do not move while we run. A failed lookup is retried, so
  // installing iptables later fixes a running agent.
  static std::mutex mu;
  static std::optional<Tools> cached[2];
  std::lock_guard<std::mutex> lock(mu);
  std::optional<Tools>& slot = cached[f == Family::kV4 ? 0 : 1];
  if (slot) return *slot;

  std::string p(Prefix(f));
  Tools t;
  std::optional<std::string> cmd = FindExecutable(p),
                             restore = FindExecutable(absl::StrCat(p, "-restore")),
                             save = FindExecutable(absl::StrCat(p, "-save"));
  if (!cmd || !restore || !save)
    return absl::FailedPreconditionError(absl::StrCat(
        p, ", ", p, "-restore and ", p, "-save are needed for iptables capture mode but ",
        !cmd       ? p
        : !restore ? absl::StrCat(p, "-restore")
                   : absl::StrCat(p, "-save"),
        " was not found in PATH or ", kDefaultPath,
        "; install the iptables package, or use eBPF capture"));
  t.cmd = *cmd;
  t.restore = *restore;
  t.save = *save;
  WEFT_ASSIGN_OR_RETURN(CommandResult r, RunCommandInNetns(-1, t.cmd, {"--version"}, ""));
  if (r.exit_code != 0)
    return absl::FailedPreconditionError(absl::StrCat("`", t.cmd, " --version` failed (exit ",
                                                      r.exit_code, "): ", r.err,
                                                      "; is the iptables installation broken?"));
  t.version = std::string(absl::StripAsciiWhitespace(r.out));
  LOG_INFO(kScope, "iptables found", {{"family", Prefix(f)}, {"version", t.version}});
  slot = t;
  return t;
}

// The jump rules from the built-in chains into ours, as currently installed, with the
// leading "-A" so that they can be turned into "-D" lines. `*capture`: whether any capture
// chain or jump is there (the drain rule alone is not capture).
absl::StatusOr<std::vector<std::string>> CurrentJumps(int netns_fd, const Tools& t, bool* capture) {
  WEFT_ASSIGN_OR_RETURN(CommandResult r, RunCommandInNetns(netns_fd, t.save, {"-t", "nat"}, ""));
  std::vector<std::string> jumps;
  *capture = false;
  if (r.exit_code != 0) {
    // No nat table in this netns yet: nothing of ours can be there.
    if (absl::StrContains(r.err, "does not exist") || absl::StrContains(r.err, "can't initialize"))
      return jumps;
    return absl::InternalError(
        absl::StrCat(t.save, " -t nat failed in the pod netns (exit ", r.exit_code, "): ", r.err));
  }
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    if (absl::StartsWith(line, absl::StrCat(":", kOutputChain, " ")) ||
        absl::StartsWith(line, absl::StrCat(":", kPreroutingChain, " ")))
      *capture = true;
    bool builtin = absl::StartsWith(line, "-A OUTPUT ") || absl::StartsWith(line, "-A PREROUTING ");
    if (!builtin) continue;
    bool to_capture = absl::EndsWith(line, absl::StrCat("-j ", kOutputChain)) ||
                      absl::EndsWith(line, absl::StrCat("-j ", kPreroutingChain));
    if (to_capture) *capture = true;
    if (to_capture || absl::EndsWith(line, absl::StrCat("-j ", kDrainChain)))
      jumps.emplace_back(line);
  }
  return jumps;
}

// Lines that take out whatever an earlier install or removal left: jumps first (a referenced
// chain cannot be deleted), then flush (":CHAIN" creates or flushes under --noflush). Removal
// (`remove`) deletes the capture chains and leaves the drain rule; install deletes the drain.
void AppendRemoval(const std::vector<std::string>& jumps, bool remove, bool drain, std::string* s) {
  for (const std::string& j : jumps) absl::StrAppend(s, "-D", j.substr(2), "\n");
  absl::StrAppend(s, ":", kOutputChain, " - [0:0]\n:", kPreroutingChain, " - [0:0]\n:", kDrainChain,
                  " - [0:0]\n");
  if (remove) absl::StrAppend(s, "-X ", kOutputChain, "\n-X ", kPreroutingChain, "\n");
  if (remove && drain)
    absl::StrAppend(s, "-A OUTPUT -p tcp -m conntrack --ctstate DNAT -j ", kDrainChain, "\n");
  else
    absl::StrAppend(s, "-X ", kDrainChain, "\n");
}

std::string InstallRules(Family f, const InpodIptablesOptions& o) {
  std::string s;
  const std::string out = absl::StrCat("-A ", kOutputChain, " ");
  const std::string pre = absl::StrCat("-A ", kPreroutingChain, " ");
  const char* loopback = f == Family::kV4 ? "127.0.0.1/32" : "::1/128";
  // ztunnel's own sockets (marked) must never loop back into ztunnel.
  absl::StrAppend(
      &s, out, absl::StrFormat("-p tcp -m mark --mark 0x%x/0x%x -j RETURN\n", o.mark, o.mark_mask));
  absl::StrAppend(&s, out, "-p tcp -d ", loopback, " -j RETURN\n");
  // Anything routed over lo stays in the pod: loopback and the pod talking to its own IP.
  // Capturing app -> own-IP would hairpin through ztunnel for no policy gain (Istio ambient
  // leaves it alone too).
  absl::StrAppend(&s, out, "-p tcp -o lo -j RETURN\n");
  for (uint16_t port : o.exclude_ports)
    absl::StrAppend(&s, out, "-p tcp --dport ", port, " -j RETURN\n");
  for (const Cidr& c : o.exclude_cidrs) {
    if (c.base().IsV4() != (f == Family::kV4)) continue;
    absl::StrAppend(&s, out, "-p tcp -d ", c.ToString(), " -j RETURN\n");
  }
  absl::StrAppend(&s, out, "-p tcp -j REDIRECT --to-ports ", o.outbound_port, "\n");

  absl::StrAppend(&s, pre, "-p tcp -i lo -j RETURN\n");
  absl::StrAppend(&s, pre, "-p tcp --dport ", o.hbone_port, " -j RETURN\n");
  for (uint16_t port : o.exclude_ports)
    absl::StrAppend(&s, pre, "-p tcp --dport ", port, " -j RETURN\n");
  absl::StrAppend(&s, pre, "-p tcp -j REDIRECT --to-ports ", o.inbound_port, "\n");

  absl::StrAppend(&s, "-A OUTPUT -p tcp -j ", kOutputChain, "\n");
  absl::StrAppend(&s, "-A PREROUTING -p tcp -j ", kPreroutingChain, "\n");
  return s;
}

absl::Status Restore(int netns_fd, const Tools& t, const std::string& script) {
  WEFT_ASSIGN_OR_RETURN(CommandResult r,
                        RunCommandInNetns(netns_fd, t.restore, {"--noflush", "--wait=10"}, script));
  if (r.exit_code != 0)
    return absl::InternalError(absl::StrCat(t.restore, " failed in the pod netns (exit ",
                                            r.exit_code, "): ", absl::StripAsciiWhitespace(r.err),
                                            "\nrules were:\n", script));
  return absl::OkStatus();
}

// The family's table cannot be used in this netns (module missing, family disabled).
bool FamilyUnavailable(const absl::Status& st) {
  absl::string_view m = st.message();
  return absl::StrContains(m, "can't initialize") || absl::StrContains(m, "does not exist") ||
         absl::StrContains(m, "Address family not supported") ||
         absl::StrContains(m, "Could not fetch rule set");
}

absl::Status ApplyFamily(int netns_fd, Family f, const InpodIptablesOptions* install) {
  WEFT_ASSIGN_OR_RETURN(Tools t, FindTools(f));
  bool capture = false;
  WEFT_ASSIGN_OR_RETURN(std::vector<std::string> jumps, CurrentJumps(netns_fd, t, &capture));
  if (!install && !capture) return absl::OkStatus();  // never captured, or already removed
  auto script = [&](bool drain) {
    std::string s = "*nat\n";
    AppendRemoval(jumps, /*remove=*/install == nullptr, drain, &s);
    if (install) s += InstallRules(f, *install);
    return s + "COMMIT\n";
  };
  absl::Status st = Restore(netns_fd, t, script(/*drain=*/true));
  if (st.ok() || install) return st;
  // Without the conntrack match (xt_conntrack missing) capture still goes; connections
  // captured until now may then hang until their ends time out.
  LOG_WARN(kScope, "could not leave the drain rule; removing capture without it",
           {{"family", Prefix(f)}, {"error", std::string(st.message())}});
  return Restore(netns_fd, t, script(/*drain=*/false));
}

// True if the netns can have IPv6 sockets at all.
bool NetnsHasIpv6(int netns_fd) {
  auto s = SocketInNetns(netns_fd, AF_INET6, SOCK_DGRAM, 0);
  return s.ok();
}

absl::Status ApplyV6(int netns_fd, const InpodIptablesOptions* install) {
  if (!NetnsHasIpv6(netns_fd)) {
    LOG_INFO(kScope, "no IPv6 in the pod netns; ip6tables capture skipped", {});
    return absl::OkStatus();
  }
  absl::Status st = ApplyFamily(netns_fd, Family::kV6, install);
  if (st.ok()) return st;
  // A missing ip6tables costs nothing where the pod has no IPv6 address; where it has one,
  // IPv6 would bypass the mesh, so enrolment fails. A broken ruleset on a working ip6tables
  // stays an error too.
  if (st.code() == absl::StatusCode::kFailedPrecondition || FamilyUnavailable(st))
    return install ? Ipv6Uncapturable(netns_fd, st) : absl::OkStatus();
  return st;
}

absl::Status Validate(const InpodIptablesOptions& o) {
  if (o.outbound_port == 0 || o.inbound_port == 0 || o.hbone_port == 0)
    return absl::InvalidArgumentError("in-pod capture ports must be non-zero");
  if (o.outbound_port == o.inbound_port || o.outbound_port == o.hbone_port ||
      o.inbound_port == o.hbone_port)
    return absl::InvalidArgumentError(absl::StrCat("in-pod capture ports must differ: outbound ",
                                                   o.outbound_port, ", inbound ", o.inbound_port,
                                                   ", hbone ", o.hbone_port));
  if (o.mark == 0 || o.mark_mask == 0 || (o.mark & ~o.mark_mask) != 0)
    return absl::InvalidArgumentError(absl::StrFormat(
        "capture mark 0x%x must be non-zero and inside mask 0x%x", o.mark, o.mark_mask));
  for (uint16_t p : o.exclude_ports)
    if (p == 0) return absl::InvalidArgumentError("capture exclude port 0 is not a port");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SockAddr> SoOriginalDstProvider::OriginalDst(int fd) {
  WEFT_ASSIGN_OR_RETURN(SockAddr local, LocalAddress(fd));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int level;
  // A dual-stack AF_INET6 socket carrying IPv4 (::ffff:a.b.c.d) has an IPv4 conntrack entry.
  if (local.ip.IsV4()) {
    level = SOL_IP;
    len = sizeof(sockaddr_in);
  } else {
    level = SOL_IPV6;
    len = sizeof(sockaddr_in6);
  }
  if (::getsockopt(fd, level, kSoOriginalDst, &ss, &len) != 0) {
    int err = errno;
    if (err == ENOENT)
      return absl::NotFoundError(absl::StrCat(
          "no conntrack entry for the connection to ", local.ToString(),
          ": it was not captured by iptables REDIRECT (is the in-pod capture installed?)"));
    if (err == ENOPROTOOPT)
      return absl::FailedPreconditionError(
          "SO_ORIGINAL_DST unsupported: nf_conntrack is not loaded for this address family");
    return ErrnoError(
        err, level == SOL_IP ? "getsockopt(SO_ORIGINAL_DST)" : "getsockopt(IP6T_SO_ORIGINAL_DST)");
  }
  SockAddr orig = SockAddr::FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
  // conntrack answers for every tracked connection; without NAT its "original destination"
  // is simply our own address.
  if (orig == local)
    return absl::FailedPreconditionError(absl::StrCat(
        "connection to ", local.ToString(),
        " was not REDIRECTed (made directly to the capture port); no original destination"));
  return orig;
}

absl::Status MarkSocket(int fd, uint32_t mark) {
  if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)
    return ErrnoError(errno, "setsockopt(SO_MARK) (needs CAP_NET_ADMIN)");
  return absl::OkStatus();
}

absl::Status Ipv6Uncapturable(int netns_fd, const absl::Status& why) {
  std::string found;
  WEFT_RETURN_IF_ERROR(RunInNetns(netns_fd, [&]() -> absl::Status {
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return ErrnoError(errno, "getifaddrs in the pod netns");
    for (ifaddrs* a = list; a != nullptr && found.empty(); a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET6) continue;
      SockAddr sa = SockAddr::FromSockaddr(a->ifa_addr);
      if (!sa.ip.IsLoopback()) found = absl::StrCat(sa.ip.ToString(), " on ", a->ifa_name);
    }
    ::freeifaddrs(list);
    return absl::OkStatus();
  }));
  if (found.empty()) {
    LOG_INFO(kScope, "IPv6 capture unavailable; the pod has no IPv6 address, only IPv4 captured",
             {{"error", std::string(why.message())}});
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the pod has IPv6 address ", found, " but IPv6 cannot be captured (", why.message(),
      "): its IPv6 traffic would bypass the mesh, so it is not enrolled. Install ip6tables "
      "with the nat table, disable IPv6 in pods, or use eBPF capture"));
}

absl::Status InstallInpodIptables(int netns_fd, const InpodIptablesOptions& opts) {
  if (netns_fd < 0)
    return absl::InvalidArgumentError(
        "in-pod iptables need the pod's netns fd; the node's own netns is never modified");
  WEFT_RETURN_IF_ERROR(Validate(opts));
  WEFT_RETURN_IF_ERROR(ApplyFamily(netns_fd, Family::kV4, &opts));
  if (opts.ipv6) WEFT_RETURN_IF_ERROR(ApplyV6(netns_fd, &opts));
  return absl::OkStatus();
}

absl::StatusOr<bool> InpodIptablesPresent(int netns_fd) {
  if (netns_fd < 0) return absl::InvalidArgumentError("InpodIptablesPresent needs a netns fd");
  WEFT_ASSIGN_OR_RETURN(Tools t, FindTools(Family::kV4));
  bool capture = false;
  WEFT_ASSIGN_OR_RETURN(std::vector<std::string> jumps, CurrentJumps(netns_fd, t, &capture));
  bool out = false, in = false;
  for (const std::string& j : jumps) {
    out |= absl::StartsWith(j, "-A OUTPUT ") && absl::EndsWith(j, kOutputChain);
    in |= absl::StartsWith(j, "-A PREROUTING ") && absl::EndsWith(j, kPreroutingChain);
  }
  return out && in;
}

absl::Status RemoveInpodIptables(int netns_fd) {
  if (netns_fd < 0)
    return absl::InvalidArgumentError("RemoveInpodIptables needs the pod's netns fd");
  WEFT_RETURN_IF_ERROR(ApplyFamily(netns_fd, Family::kV4, nullptr));
  return ApplyV6(netns_fd, nullptr);
}

}  // namespace weft::ztunnel
