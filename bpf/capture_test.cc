// Root tests of the capture programs. sk_lookup: BPF_PROG_TEST_RUN tables (input, verdict,
// selected socket, counter deltas) plus one real connect through an attached netns link.
// connect4/6 have no test run: real sockets in test netns, in a cgroup the test creates.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bpf/capture.h"
#include "bpf/testing.h"
#include "common/cgroup.h"
#include "common/net.h"
#include "common/netns.h"
#include "common/testing/kernel_features.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "gtest/gtest.h"

namespace weft::bpf {
namespace {

constexpr std::string_view kNsPrefix = "weft-bpf-";

// Loads a capture owner, or skips when the kernel lacks the program types (probed by libbpf,
// not by the code under test; a failure with WEFT_REQUIRE_KERNEL_FEATURES). On a kernel that
// has them, a load failure (e.g. the verifier refusing a program) fails the test.
#define WEFT_LOAD_OR_SKIP(var, Type)                                                 \
  WEFT_SKIP_UNLESS_KERNEL_FEATURE(testing::KernelHasCapturePrograms(),               \
                                  "this kernel lacks sk_lookup or cgroup sock_addr " \
                                  "programs");                                       \
  auto var##_or = Type::Load();                                                      \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status();                                   \
  auto var = std::move(*var##_or)

uint64_t SocketCookie(int fd) {
  uint64_t c = 0;
  socklen_t len = sizeof(c);
  EXPECT_EQ(::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len), 0) << std::strerror(errno);
  return c;
}

// A listening TCP socket in `netns_fd` bound to `addr` (port 0 = any).
UniqueFd Listen(int netns_fd, const std::string& addr, bool v6only = true) {
  auto sa = SockAddr::Parse(addr);
  EXPECT_TRUE(sa.ok()) << sa.status();
  if (!sa.ok()) return UniqueFd();
  int family = sa->ip.IsV4() ? AF_INET : AF_INET6;
  auto fd = SocketInNetns(netns_fd, family, SOCK_STREAM, 0);
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return UniqueFd();
  int one = 1, v6 = v6only ? 1 : 0;
  ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) ::setsockopt(fd->get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof(v6));
  sockaddr_storage ss;
  socklen_t len = sa->ToSockaddr(&ss);
  EXPECT_EQ(::bind(fd->get(), reinterpret_cast<sockaddr*>(&ss), len), 0)
      << addr << ": " << std::strerror(errno);
  EXPECT_EQ(::listen(fd->get(), 64), 0) << std::strerror(errno);
  return std::move(*fd);
}

uint16_t BoundPort(int fd) {
  auto a = LocalAddress(fd);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? a->port : 0;
}

ReasonCounts Delta(const ReasonCounts& before, const ReasonCounts& after) {
  ReasonCounts d;
  for (const auto& [reason, n] : after) {
    auto it = before.find(reason);
    uint64_t b = it == before.end() ? 0 : it->second;
    if (n != b) d[reason] = n - b;
  }
  return d;
}

std::string Show(const ReasonCounts& c) {
  std::ostringstream o;
  for (const auto& [r, n] : c) o << ReasonName(r) << "=" << n << " ";
  return o.str();
}

// ---- sk_lookup: BPF_PROG_TEST_RUN ---------------------------------------------------------

struct LookupCase {
  std::string name;
  int family;
  int protocol;
  std::string remote;  // "ip:port"
  std::string local;   // "ip:port"
  bool hbone_present;
  bool inbound_present;
  int verdict;  // SK_PASS / SK_DROP
  enum { kNone, kHbone, kInbound, kV6Only } selected;
  ReasonCounts counts;
};

void FillLookup(bpf_sk_lookup* ctx, const LookupCase& c) {
  auto r = SockAddr::Parse(c.remote);
  auto l = SockAddr::Parse(c.local);
  ASSERT_TRUE(r.ok() && l.ok()) << c.name;
  ctx->family = static_cast<uint32_t>(c.family);
  ctx->protocol = static_cast<uint32_t>(c.protocol);
  ctx->remote_port = htons(r->port);
  ctx->local_port = l->port;  // host order, as the kernel gives it
  if (c.family == AF_INET) {
    ctx->remote_ip4 = htonl(r->ip.v4_host_order());
    ctx->local_ip4 = htonl(l->ip.v4_host_order());
  } else {
    std::memcpy(ctx->remote_ip6, r->ip.bytes().data(), 16);
    std::memcpy(ctx->local_ip6, l->ip.bytes().data(), 16);
  }
}

TEST(SkLookupTest, TableOfVerdictsSelectedSocketsAndCounters) {
  WEFT_SKIP_UNLESS_ROOT("BPF, netns, cgroups");
  weft::testing::DeleteStaleNamespaces(kNsPrefix);
  WEFT_LOAD_OR_SKIP(in, InboundCapture);
  // Decided by the kernel release, never by the error of a test run (an EINVAL from a bad
  // context or program would otherwise pass as "unsupported").
  WEFT_SKIP_UNLESS_KERNEL_FEATURE(weft::testing::KernelAtLeast(5, 14),
                                  "BPF_PROG_TEST_RUN for sk_lookup programs needs Linux 5.14");
  weft::testing::ScopedNetns ns(kNsPrefix);
  ASSERT_GE(ns.fd(), 0);

  // Pod slot 1: addresses 10.77.0.2 and fd00::2, dual-stack listeners as ztunnel binds them.
  UniqueFd hbone = Listen(ns.fd(), "[::]:0", /*v6only=*/false);
  UniqueFd inbound = Listen(ns.fd(), "[::]:0", /*v6only=*/false);
  // Pod slot 2: its plaintext listener is IPv6-only, so an IPv4 SYN cannot be assigned to it.
  UniqueFd v6only = Listen(ns.fd(), "[::]:0", /*v6only=*/true);
  ASSERT_TRUE(hbone && inbound && v6only);
  for (const char* a : {"10.77.0.2", "fd00::2", "127.0.0.1"}) {
    ASSERT_TRUE(in->AddPodAddress(*IpAddr::Parse(a), 1).ok());
  }
  ASSERT_TRUE(in->AddPodAddress(*IpAddr::Parse("10.77.0.3"), 2).ok());
  ASSERT_TRUE(in->SetListener(2, WEFT_LISTENER_INBOUND, v6only.get()).ok());

  const std::vector<LookupCase> cases = {
      {"v4 app port -> inbound",
       AF_INET,
       IPPROTO_TCP,
       "10.1.0.9:40000",
       "10.77.0.2:8080",
       true,
       true,
       SK_PASS,
       LookupCase::kInbound,
       {{WEFT_REDIRECT_INBOUND, 1}}},
      {"v4 15008 -> hbone",
       AF_INET,
       IPPROTO_TCP,
       "10.1.0.9:40000",
       "10.77.0.2:15008",
       true,
       true,
       SK_PASS,
       LookupCase::kHbone,
       {{WEFT_REDIRECT_HBONE, 1}}},
      {"v6 app port -> inbound",
       AF_INET6,
       IPPROTO_TCP,
       "[fd00::9]:40000",
       "[fd00::2]:80",
       true,
       true,
       SK_PASS,
       LookupCase::kInbound,
       {{WEFT_REDIRECT_INBOUND, 1}}},
      {"v6 15008 -> hbone",
       AF_INET6,
       IPPROTO_TCP,
       "[fd00::9]:40000",
       "[fd00::2]:15008",
       true,
       true,
       SK_PASS,
       LookupCase::kHbone,
       {{WEFT_REDIRECT_HBONE, 1}}},
      {"pod to its own address left alone",
       AF_INET,
       IPPROTO_TCP,
       "10.77.0.2:40000",
       "10.77.0.2:8080",
       true,
       true,
       SK_PASS,
       LookupCase::kNone,
       {{WEFT_PASS_SELF, 1}}},
      {"v6 pod to its own address left alone",
       AF_INET6,
       IPPROTO_TCP,
       "[fd00::2]:40000",
       "[fd00::2]:8080",
       true,
       true,
       SK_PASS,
       LookupCase::kNone,
       {{WEFT_PASS_SELF, 1}}},
      {"another local address of the pod's netns is dropped",
       AF_INET,
       IPPROTO_TCP,
       "10.1.0.9:40000",
       "10.77.0.99:8080",
       true,
       true,
       SK_DROP,
       LookupCase::kNone,
       {{WEFT_DROP_NOT_POD_ADDR, 1}}},
      {"v6 link-local address is dropped",
       AF_INET6,
       IPPROTO_TCP,
       "[fe80::9]:40000",
       "[fe80::2]:8080",
       true,
       true,
       SK_DROP,
       LookupCase::kNone,
       {{WEFT_DROP_NOT_POD_ADDR, 1}}},
      {"loopback left alone",
       AF_INET,
       IPPROTO_TCP,
       "127.0.0.1:40000",
       "127.0.0.1:8080",
       true,
       true,
       SK_PASS,
       LookupCase::kNone,
       {{WEFT_PASS_LOOPBACK, 1}}},
      {"v6 loopback left alone",
       AF_INET6,
       IPPROTO_TCP,
       "[::1]:40000",
       "[::1]:8080",
       true,
       true,
       SK_PASS,
       LookupCase::kNone,
       {{WEFT_PASS_LOOPBACK, 1}}},
      {"udp left alone",
       AF_INET,
       IPPROTO_UDP,
       "10.1.0.9:40000",
       "10.77.0.2:53",
       true,
       true,
       SK_PASS,
       LookupCase::kNone,
       {{WEFT_PASS_NOT_TCP, 1}}},
      {"hbone listener gone: drop",
       AF_INET,
       IPPROTO_TCP,
       "10.1.0.9:40000",
       "10.77.0.2:15008",
       false,
       true,
       SK_DROP,
       LookupCase::kNone,
       {{WEFT_DROP_NO_HBONE_SOCKET, 1}}},
      {"inbound listener gone: drop",
       AF_INET6,
       IPPROTO_TCP,
       "[fd00::9]:40000",
       "[fd00::2]:8080",
       true,
       false,
       SK_DROP,
       LookupCase::kNone,
       {{WEFT_DROP_NO_INBOUND_SOCKET, 1}}},
      {"hbone gone, app port still steered",
       AF_INET,
       IPPROTO_TCP,
       "10.1.0.9:40000",
       "10.77.0.2:8080",
       false,
       true,
       SK_PASS,
       LookupCase::kInbound,
       {{WEFT_REDIRECT_INBOUND, 1}}},
      {"v4 SYN to an IPv6-only listener: drop",
       AF_INET,
       IPPROTO_TCP,
       "10.1.0.9:40000",
       "10.77.0.3:8080",
       true,
       true,
       SK_DROP,
       LookupCase::kNone,
       {{WEFT_DROP_ASSIGN_FAILED, 1}}},
  };

  for (const LookupCase& c : cases) {
    SCOPED_TRACE(c.name);
    // The test's listeners are dual-stack, so each one serves both families' kinds.
    for (auto kind : {WEFT_LISTENER_HBONE, WEFT_LISTENER_HBONE6}) {
      if (c.hbone_present) {
        ASSERT_TRUE(in->SetListener(1, kind, hbone.get()).ok());
      } else {
        ASSERT_TRUE(in->RemoveListener(1, kind).ok());
      }
    }
    for (auto kind : {WEFT_LISTENER_INBOUND, WEFT_LISTENER_INBOUND6}) {
      if (c.inbound_present) {
        ASSERT_TRUE(in->SetListener(1, kind, inbound.get()).ok());
      } else {
        ASSERT_TRUE(in->RemoveListener(1, kind).ok());
      }
    }
    bpf_sk_lookup ctx{};
    FillLookup(&ctx, c);
    auto before = in->Counters();
    ASSERT_TRUE(before.ok()) << before.status();
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &ctx, .ctx_out = &ctx,
                .ctx_size_in = sizeof(ctx), .ctx_size_out = sizeof(ctx));
    int err = bpf_prog_test_run_opts(in->prog_fd(), &opts);
    ASSERT_EQ(err, 0) << std::strerror(errno);
    EXPECT_EQ(static_cast<int>(opts.retval), c.verdict);
    uint64_t want_cookie = 0;
    if (c.selected == LookupCase::kHbone) want_cookie = SocketCookie(hbone.get());
    if (c.selected == LookupCase::kInbound) want_cookie = SocketCookie(inbound.get());
    EXPECT_EQ(ctx.cookie, want_cookie);
    auto after = in->Counters();
    ASSERT_TRUE(after.ok()) << after.status();
    ReasonCounts d = Delta(*before, *after);
    EXPECT_EQ(d, c.counts) << "got " << Show(d) << " want " << Show(c.counts);
  }
}

// A real connect through the attached link: the app's listener is never reached, ztunnel's
// is, and the accepted socket's local address is the original destination.
TEST(SkLookupTest, AttachedLinkSteersRealSynsAndFailsClosed) {
  WEFT_SKIP_UNLESS_ROOT("BPF, netns, cgroups");
  WEFT_LOAD_OR_SKIP(in, InboundCapture);
  weft::testing::ScopedNetns ns(kNsPrefix);
  ASSERT_GE(ns.fd(), 0);
  // 10.77.0.9 stands in for a remote client (a SYN from the pod's own address is self-traffic,
  // which the lookup leaves alone: checked at the end).
  ns.Exec("ip addr add 10.77.0.2/32 dev lo");
  ns.Exec("ip addr add 10.77.0.9/32 dev lo");
  UniqueFd app = Listen(ns.fd(), "10.77.0.2:0");
  UniqueFd ztunnel = Listen(ns.fd(), "127.0.0.1:0");
  ASSERT_TRUE(app && ztunnel);
  uint16_t app_port = BoundPort(app.get());
  ASSERT_TRUE(in->AddPodAddress(*IpAddr::Parse("10.77.0.2"), 7).ok());
  ASSERT_TRUE(in->SetListener(7, WEFT_LISTENER_INBOUND, ztunnel.get()).ok());
  // sk_lookup programs attach through netns links only, so a kernel that loads them (probed
  // above) attaches them: a failure here is a failure.
  auto link = in->AttachToNetns(ns.fd());
  ASSERT_TRUE(link.ok()) << link.status();

  auto connect_once = [&](const char* from = "10.77.0.9:0") -> int {
    auto c = SocketInNetns(ns.fd(), AF_INET, SOCK_STREAM, 0);
    if (!c.ok()) return -1;
    sockaddr_storage ss;
    socklen_t blen = SockAddr::Parse(from)->ToSockaddr(&ss);
    if (::bind(c->get(), reinterpret_cast<sockaddr*>(&ss), blen) != 0) return errno;
    socklen_t len = SockAddr{*IpAddr::Parse("10.77.0.2"), app_port}.ToSockaddr(&ss);
    return ::connect(c->get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
  };
  ASSERT_EQ(connect_once(), 0);
  pollfd p{ztunnel.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1) << "ztunnel's listener got no connection";
  UniqueFd accepted(::accept(ztunnel.get(), nullptr, nullptr));
  ASSERT_TRUE(accepted);
  auto local = LocalAddress(accepted.get());
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->ToString(), SockAddr({*IpAddr::Parse("10.77.0.2"), app_port}).ToString());
  pollfd pa{app.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pa, 1, 0), 0) << "the app's listener was reached directly";

  // ztunnel's socket gone: the SYN is dropped by the lookup, the client is refused.
  ASSERT_TRUE(in->RemoveListener(7, WEFT_LISTENER_INBOUND).ok());
  EXPECT_EQ(connect_once(), ECONNREFUSED);
  EXPECT_EQ(::poll(&pa, 1, 0), 0) << "fail-open: the app's listener was reached";
  auto counts = in->Counters();
  ASSERT_TRUE(counts.ok());
  EXPECT_GE((*counts)[WEFT_REDIRECT_INBOUND], 1u) << Show(*counts);
  EXPECT_GE((*counts)[WEFT_DROP_NO_INBOUND_SOCKET], 1u) << Show(*counts);

  // The pod's own address to itself (ztunnel's leg to the app) reaches the app untouched.
  EXPECT_EQ(connect_once("10.77.0.2:0"), 0);
  EXPECT_EQ(::poll(&pa, 1, 2000), 1) << "self-traffic did not reach the app";
  counts = in->Counters();
  ASSERT_TRUE(counts.ok());
  EXPECT_GE((*counts)[WEFT_PASS_SELF], 1u) << Show(*counts);
}

// ---- connect4 / connect6: namespaced, real sockets ------------------------------------------

using weft::bpf::testing::ScopedCgroup;

struct ConnectResult {
  int err = -1;  // errno of connect(), 0 on success
  uint64_t cookie = 0;
  uint16_t local_port = 0;
};

// A forked child that joins `cgroup` and `netns_fd`, connects a TCP socket of `family` to
// `dst` (with SO_MARK `mark` when non-zero) and reports back. Only syscalls run in the child.
struct Child {
  pid_t pid = -1;
  int result_fd = -1;
};

// In a forked child: moves it into the cgroup (`procs` is its cgroup.procs) and the netns.
bool JoinInChild(const std::string& procs, int netns_fd) {
  int pf = ::open(procs.c_str(), O_WRONLY);
  return pf >= 0 && ::write(pf, "0", 1) == 1 && ::setns(netns_fd, CLONE_NEWNET) == 0;
}

// Forks a child that runs `body` (only syscalls: the parent may hold locks) and writes the
// plain struct it returns to a pipe, which `CollectReport` reads.
template <class Report, class Body>
Child ForkReporting(Body body) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    Report r = body();
    ssize_t w = ::write(pipefd[1], &r, sizeof(r));
    ::_exit(w == sizeof(r) ? 0 : 1);
  }
  ::close(pipefd[1]);
  if (pid < 0) {
    ::close(pipefd[0]);
    return {};
  }
  return {pid, pipefd[0]};
}

// The child's report, or nullopt when it never came (the child is killed after `timeout_ms`).
template <class Report>
std::optional<Report> CollectReport(const Child& c, int timeout_ms = -1) {
  if (c.pid < 0) return std::nullopt;
  Report r;
  pollfd p{c.result_fd, POLLIN, 0};
  bool ok = ::poll(&p, 1, timeout_ms) == 1 && ::read(c.result_fd, &r, sizeof(r)) == sizeof(r);
  if (!ok) ::kill(c.pid, SIGKILL);
  ::close(c.result_fd);
  ::waitpid(c.pid, nullptr, 0);
  if (!ok) return std::nullopt;
  return r;
}

Child SpawnConnect(const ScopedCgroup& cgroup, int netns_fd, int family,
                   const sockaddr_storage& dst, socklen_t dst_len, uint32_t mark) {
  std::string procs = cgroup.path() + "/cgroup.procs";
  return ForkReporting<ConnectResult>([&] {
    ConnectResult r;
    if (!JoinInChild(procs, netns_fd)) {
      r.err = -2;
      return r;
    }
    int s = ::socket(family, SOCK_STREAM, 0);
    if (mark != 0) ::setsockopt(s, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
    r.err = ::connect(s, reinterpret_cast<const sockaddr*>(&dst), dst_len) == 0 ? 0 : errno;
    socklen_t len = sizeof(r.cookie);
    ::getsockopt(s, SOL_SOCKET, SO_COOKIE, &r.cookie, &len);
    sockaddr_storage local;
    socklen_t llen = sizeof(local);
    ::getsockname(s, reinterpret_cast<sockaddr*>(&local), &llen);
    r.local_port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);  // same offset v6
    return r;
  });
}

ConnectResult Collect(const Child& c) {
  if (c.pid < 0) return {};
  ConnectResult failed;
  failed.err = -3;
  return CollectReport<ConnectResult>(c).value_or(failed);
}

// A forked child in `cgroup` and `netns_fd` that makes up to `count` non-blocking IPv4 connects
// to `dst` in a tight loop, closing each socket at once, for at most `limit`. Reports how many
// it made and the socket cookie of the last one.
struct FloodResult {
  int made = -1;
  uint64_t last_cookie = 0;
};

FloodResult FloodConnects(const ScopedCgroup& cgroup, int netns_fd, const sockaddr_in& dst,
                          int count, absl::Duration limit) {
  Child c = ForkReporting<FloodResult>([&] {
    FloodResult r;
    if (!JoinInChild(cgroup.path() + "/cgroup.procs", netns_fd)) return r;
    absl::Time deadline = absl::Now() + limit;
    r.made = 0;
    while (r.made < count && (r.made % 1024 != 0 || absl::Now() < deadline)) {
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (s < 0) break;
      int err = ::connect(s, reinterpret_cast<const sockaddr*>(&dst), sizeof(dst)) == 0 ? 0 : errno;
      socklen_t len = sizeof(r.last_cookie);
      ::getsockopt(s, SOL_SOCKET, SO_COOKIE, &r.last_cookie, &len);
      ::close(s);
      if (err != 0 && err != EINPROGRESS && err != EAGAIN) break;
      ++r.made;
    }
    return r;
  });
  FloodResult failed;
  failed.made = -3;
  return CollectReport<FloodResult>(c).value_or(failed);
}

// A pod netns with ztunnel's outbound listeners and a destination service listener.
struct Pod {
  weft::testing::ScopedNetns ns{kNsPrefix};
  UniqueFd ztunnel4, ztunnel6, dst4, dst6;
  uint16_t dst4_port = 0, dst6_port = 0;

  void Setup() {
    ASSERT_GE(ns.fd(), 0);
    ns.Exec("ip addr add 10.77.0.1/32 dev lo");
    ns.Exec("ip -6 addr add fd00::1/128 dev lo nodad");
    ztunnel4 = Listen(ns.fd(), "127.0.0.1:15001");
    ztunnel6 = Listen(ns.fd(), "[::1]:15001");
    dst4 = Listen(ns.fd(), "10.77.0.1:0");
    dst6 = Listen(ns.fd(), "[fd00::1]:0");
    ASSERT_TRUE(ztunnel4 && ztunnel6 && dst4 && dst6);
    dst4_port = BoundPort(dst4.get());
    dst6_port = BoundPort(dst6.get());
  }
};

// Which of the listeners accepted the child's connection (peer port == the child's port).
enum class Landed { kNowhere, kZtunnel4, kZtunnel6, kDst4, kDst6 };

// `accepted` (if set) receives the accepted socket.
Landed WhereLanded(const Pod& pod, uint16_t client_port, UniqueFd* accepted = nullptr) {
  std::vector<std::pair<int, Landed>> ls = {{pod.ztunnel4.get(), Landed::kZtunnel4},
                                            {pod.ztunnel6.get(), Landed::kZtunnel6},
                                            {pod.dst4.get(), Landed::kDst4},
                                            {pod.dst6.get(), Landed::kDst6}};
  std::vector<pollfd> pfds;
  for (auto& [fd, _] : ls) pfds.push_back({fd, POLLIN, 0});
  if (::poll(pfds.data(), pfds.size(), 2000) <= 0) return Landed::kNowhere;
  for (size_t i = 0; i < pfds.size(); ++i) {
    if (!(pfds[i].revents & POLLIN)) continue;
    UniqueFd a(::accept(ls[i].first, nullptr, nullptr));
    auto peer = a ? PeerAddress(a.get()) : absl::StatusOr<SockAddr>(absl::InternalError("accept"));
    if (peer.ok() && peer->port == client_port) {
      if (accepted) *accepted = std::move(a);
      return ls[i].second;
    }
  }
  return Landed::kNowhere;
}

class ConnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("BPF, netns, cgroups");
    weft::testing::DeleteStaleNamespaces(kNsPrefix);
    auto root = FindCgroup2Mount();
    WEFT_SKIP_UNLESS_KERNEL_FEATURE(root.ok(), root.status());
    WEFT_SKIP_UNLESS_KERNEL_FEATURE(testing::KernelHasCapturePrograms(),
                                    "this kernel lacks cgroup sock_addr or sock_ops programs");
    auto out = OutboundCapture::Load();
    ASSERT_TRUE(out.ok()) << out.status();
    out_ = std::move(*out);
    cgroup_ = std::make_unique<ScopedCgroup>();
    ASSERT_GE(cgroup_->fd(), 0);
    auto links = out_->AttachToCgroup(cgroup_->fd());
    ASSERT_TRUE(links.ok()) << links.status();
    links_ = std::move(*links);
    pod_.Setup();
  }
  void TearDown() override {
    links_.reset();
    cgroup_.reset();  // the children are reaped: the cgroup is empty
  }

  ConnectResult Connect(const Pod& pod, const std::string& dst, int family = 0, uint32_t mark = 0) {
    return Collect(Spawn(pod, dst, family, mark));
  }

  Child Spawn(const Pod& pod, const std::string& dst, int family = 0, uint32_t mark = 0) {
    auto sa = SockAddr::Parse(dst);
    EXPECT_TRUE(sa.ok()) << sa.status();
    sockaddr_storage ss{};
    socklen_t len = sa->ToSockaddr(&ss);
    if (family == AF_INET6 && sa->ip.IsV4()) {  // as an IPv4-mapped IPv6 destination
      sockaddr_in6 s6{};
      s6.sin6_family = AF_INET6;
      s6.sin6_port = htons(sa->port);
      s6.sin6_addr.s6_addr[10] = s6.sin6_addr.s6_addr[11] = 0xff;
      uint32_t v4 = htonl(sa->ip.v4_host_order());
      std::memcpy(&s6.sin6_addr.s6_addr[12], &v4, 4);
      std::memcpy(&ss, &s6, sizeof(s6));
      len = sizeof(s6);
    }
    if (family == 0) family = sa->ip.IsV4() ? AF_INET : AF_INET6;
    return SpawnConnect(*cgroup_, pod.ns.fd(), family, ss, len, mark);
  }

  // Connects from `pod` to `dst` and asserts the connect was redirected to ztunnel's listener
  // `where`, with `dst` as the original destination both by socket cookie and from the accepted
  // socket alone (ztunnel's view). Returns the connect's result for further checks.
  ConnectResult ExpectRedirected(const Pod& pod, const std::string& dst, Landed where,
                                 int family = 0) {
    ConnectResult r = Connect(pod, dst, family);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err > 0 ? r.err : 0);
    if (r.err != 0) return r;
    UniqueFd accepted;
    EXPECT_EQ(WhereLanded(pod, r.local_port, &accepted), where);
    auto orig = out_->OriginalDestination(r.cookie);
    EXPECT_TRUE(orig.ok()) << orig.status();
    if (orig.ok()) {
      EXPECT_EQ(orig->ToString(), dst);  // IPv4-mapped reported unmapped
    }
    EXPECT_TRUE(accepted);
    if (!accepted) return r;
    auto seen = out_->OriginalDestinationOfAccepted(accepted.get());
    EXPECT_TRUE(seen.ok()) << seen.status();
    if (seen.ok()) {
      EXPECT_EQ(seen->ToString(), dst);
    }
    return r;
  }

  std::unique_ptr<OutboundCapture> out_;
  std::unique_ptr<ScopedCgroup> cgroup_;
  std::optional<OutboundCapture::CgroupLinks> links_;
  Pod pod_;
};

TEST_F(ConnectTest, EnrolledV4IsRedirectedAndOriginalDestinationRecorded) {
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  auto before = out_->Counters();
  std::string dst = "10.77.0.1:" + std::to_string(pod_.dst4_port);
  ConnectResult r = ExpectRedirected(pod_, dst, Landed::kZtunnel4);
  ASSERT_EQ(r.err, 0);
  auto after = out_->Counters();
  EXPECT_EQ(Delta(*before, *after),
            (ReasonCounts{{WEFT_REDIRECT_OUTBOUND, 1}, {WEFT_RECORD_PEER, 1}}));
  ASSERT_TRUE(out_->ForgetOriginalDestination(r.cookie).ok());
  EXPECT_TRUE(absl::IsNotFound(out_->OriginalDestination(r.cookie).status()));
}

TEST_F(ConnectTest, EnrolledV6IsRedirectedToLoopbackV6) {
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  ExpectRedirected(pod_, "[fd00::1]:" + std::to_string(pod_.dst6_port), Landed::kZtunnel6);
}

TEST_F(ConnectTest, EnrolledV4MappedIsRedirectedToTheV4Listener) {
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  // Connects as an IPv4-mapped IPv6 destination; reported unmapped, as the app meant it.
  ExpectRedirected(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port), Landed::kZtunnel4,
                   AF_INET6);
}

TEST_F(ConnectTest, NotEnrolledNetnsIsNotTouched) {
  Pod other;
  other.Setup();
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());  // a different netns is enrolled
  auto before = out_->Counters();
  ConnectResult r = Connect(other, "10.77.0.1:" + std::to_string(other.dst4_port));
  ASSERT_EQ(r.err, 0) << std::strerror(r.err > 0 ? r.err : 0);
  EXPECT_EQ(WhereLanded(other, r.local_port), Landed::kDst4);
  EXPECT_TRUE(absl::IsNotFound(out_->OriginalDestination(r.cookie).status()));
  EXPECT_EQ(Delta(*before, *out_->Counters()), (ReasonCounts{{WEFT_PASS_NOT_ENROLLED, 1}}));
}

TEST_F(ConnectTest, ZtunnelMarkedSocketIsNotRedirected) {
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  auto before = out_->Counters();
  // Only the low 12 bits are ztunnel's: other mark bits (a CNI's) do not hide the mark.
  ConnectResult r = Connect(pod_, "[fd00::1]:" + std::to_string(pod_.dst6_port), 0, 0x7000539);
  ASSERT_EQ(r.err, 0) << std::strerror(r.err > 0 ? r.err : 0);
  EXPECT_EQ(WhereLanded(pod_, r.local_port), Landed::kDst6);
  EXPECT_EQ(Delta(*before, *out_->Counters()), (ReasonCounts{{WEFT_PASS_ZTUNNEL_MARK, 1}}));
}

TEST_F(ConnectTest, ExcludedPortAndCidrAreNotRedirected) {
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  ASSERT_TRUE(out_->ExcludePort(pod_.ns.cookie(), pod_.dst4_port).ok());
  ASSERT_TRUE(out_->ExcludeCidr(pod_.ns.cookie(), *Cidr::Parse("fd00::/64")).ok());
  // Another netns's exclusion of the same CIDR must not leak into this one.
  ASSERT_TRUE(out_->ExcludeCidr(pod_.ns.cookie() + 1, *Cidr::Parse("10.77.0.0/24")).ok());
  auto before = out_->Counters();

  ConnectResult r = Connect(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port));
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(WhereLanded(pod_, r.local_port), Landed::kDst4);
  r = Connect(pod_, "[fd00::1]:" + std::to_string(pod_.dst6_port));
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(WhereLanded(pod_, r.local_port), Landed::kDst6);
  EXPECT_EQ(Delta(*before, *out_->Counters()),
            (ReasonCounts{{WEFT_PASS_EXCLUDED_PORT, 1}, {WEFT_PASS_EXCLUDED_CIDR, 1}}));

  // The v4 CIDR exclusion applies once it is this netns's; a mapped destination matches too.
  UniqueFd dst_other = Listen(pod_.ns.fd(), "10.77.0.1:0");
  uint16_t other_port = BoundPort(dst_other.get());
  ASSERT_TRUE(out_->ExcludeCidr(pod_.ns.cookie(), *Cidr::Parse("10.77.0.0/24")).ok());
  r = Connect(pod_, "10.77.0.1:" + std::to_string(other_port), AF_INET6);
  ASSERT_EQ(r.err, 0);
  pollfd p{dst_other.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 2000), 1) << "mapped connect into an excluded CIDR was redirected";

  // Unenroll removes the netns's exclusions with it; nothing is redirected afterwards.
  ASSERT_TRUE(out_->Unenroll(pod_.ns.cookie()).ok());
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  r = Connect(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port));
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(WhereLanded(pod_, r.local_port), Landed::kZtunnel4) << "exclusions survived Unenroll";
}

// Many connects at once from two pods whose sockets share addresses and destination ports:
// every socket's record is its own (keyed by socket cookie, not by a colliding 4-tuple).
TEST_F(ConnectTest, OriginalDestinationsStaySeparateUnderConcurrency) {
  Pod other;
  other.Setup();
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  ASSERT_TRUE(out_->Enroll(other.ns.cookie(), 2).ok());
  struct Want {
    Child child;
    std::string dst;
    const Pod* pod;
  };
  std::vector<Want> wants;
  for (int i = 0; i < 12; ++i) {
    const Pod& pod = i % 2 == 0 ? pod_ : other;
    std::string dst = (i % 3 == 0 ? "[fd00::1]:" : "10.77.0.1:") + std::to_string(20000 + i / 2);
    wants.push_back({Spawn(pod, dst), dst, &pod});
  }
  std::vector<uint64_t> cookies;
  std::map<std::pair<const Pod*, uint16_t>, std::string> by_client;  // ports may repeat per pod
  for (Want& w : wants) {
    ConnectResult r = Collect(w.child);
    ASSERT_EQ(r.err, 0) << w.dst << ": " << std::strerror(r.err > 0 ? r.err : 0);
    auto orig = out_->OriginalDestination(r.cookie);
    ASSERT_TRUE(orig.ok()) << orig.status();
    EXPECT_EQ(orig->ToString(), w.dst);
    cookies.push_back(r.cookie);
    by_client[{w.pod, r.local_port}] = w.dst;
  }
  std::sort(cookies.begin(), cookies.end());
  EXPECT_EQ(std::unique(cookies.begin(), cookies.end()), cookies.end());

  // ztunnel's side: every accepted connection of each pod maps back to its own destination.
  size_t checked = 0;
  for (const Pod* pod : {&pod_, &other}) {
    for (int lfd : {pod->ztunnel4.get(), pod->ztunnel6.get()}) {
      pollfd p{lfd, POLLIN, 0};
      while (::poll(&p, 1, 200) == 1) {
        UniqueFd a(::accept(lfd, nullptr, nullptr));
        ASSERT_TRUE(a);
        auto peer = PeerAddress(a.get());
        ASSERT_TRUE(peer.ok());
        auto seen = out_->OriginalDestinationOfAccepted(a.get());
        ASSERT_TRUE(seen.ok()) << seen.status();
        EXPECT_EQ(seen->ToString(), (by_client[{pod, peer->port}]));
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, wants.size());
}

// Issue 13, hole 8: one pod connecting in a tight loop cannot evict its neighbours'
// original-destination records. With one LRU map shared by every pod (65,536 entries) the flood
// below evicted the other pod's record and ztunnel refused that pod's connection; with a map per
// pod (WEFT_ORIG_DST_PER_POD) the flood only recycles the flooding pod's own entries.
TEST_F(ConnectTest, APodFloodingConnectsEvictsOnlyItsOwnRecords) {
  Pod other;
  other.Setup();
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  ASSERT_TRUE(out_->Enroll(other.ns.cookie(), 2).ok());
  // The neighbour's connection, made before the flood and accepted by ztunnel after it.
  std::string dst = "10.77.0.1:" + std::to_string(other.dst4_port);
  ConnectResult victim = Connect(other, dst);
  ASSERT_EQ(victim.err, 0) << std::strerror(victim.err > 0 ? victim.err : 0);
  auto before = out_->Counters();
  ASSERT_TRUE(before.ok());

  constexpr int kFlood = 70000;  // more than the old shared map's 65,536 entries
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(pod_.dst4_port);
  sin.sin_addr.s_addr = htonl(0x0a4d0001);  // 10.77.0.1
  FloodResult flood = FloodConnects(*cgroup_, pod_.ns.fd(), sin, kFlood, absl::Seconds(90));
  ASSERT_EQ(flood.made, kFlood) << "the flood stopped early (-2: could not join the pod)";
  auto after = out_->Counters();
  ASSERT_TRUE(after.ok());
  ReasonCounts delta = Delta(*before, *after);
  EXPECT_EQ(delta[WEFT_REDIRECT_OUTBOUND], static_cast<uint64_t>(kFlood)) << Show(delta);
  EXPECT_EQ(delta[WEFT_DROP_ORIG_DST_FULL], 0u) << Show(delta);

  // The neighbour's record survived, by socket cookie and from ztunnel's accepted socket.
  auto orig = out_->OriginalDestination(victim.cookie);
  ASSERT_TRUE(orig.ok()) << orig.status() << " (evicted by the other pod's flood)";
  EXPECT_EQ(orig->ToString(), dst);
  UniqueFd accepted;
  ASSERT_EQ(WhereLanded(other, victim.local_port, &accepted), Landed::kZtunnel4);
  auto seen = out_->OriginalDestinationOfAccepted(accepted.get());
  ASSERT_TRUE(seen.ok()) << seen.status() << " (evicted by the other pod's flood)";
  EXPECT_EQ(seen->ToString(), dst);
  // The flooding pod still has its newest record: its own LRU recycled only its oldest.
  auto newest = out_->OriginalDestination(flood.last_cookie);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ(newest->ToString(), "10.77.0.1:" + std::to_string(pod_.dst4_port));
}

TEST_F(ConnectTest, ZtunnelDownMeansConnectFailsNotLeaks) {
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  pod_.ztunnel4.reset();
  ConnectResult r = Connect(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port));
  EXPECT_EQ(r.err, ECONNREFUSED);
  pollfd p{pod_.dst4.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 200), 0) << "the destination was reached without ztunnel";
}

// Deny at connect (issue 16 §5): an entry of weft_connect_deny fails the connect in the pod at
// once (EACCES where bpf_set_retval is offered to cgroup/connect, else EPERM), nothing is
// reached, the per-label counter and drop_policy_deny count it; a port-0 entry covers every
// other port of the address, a pass entry is its exception, and removing the entries restores
// the redirect.
TEST_F(ConnectTest, DenyEntryFailsTheConnectAtOnceAndCountsIt) {
  ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
  auto deny = out_->ConnectDeny();
  ASSERT_TRUE(deny.ok()) << deny.status();
  const int want_err = out_->denies_with_eacces() ? EACCES : EPERM;
  std::printf("denied connects fail with %s on this kernel\n", strerrorname_np(want_err));
  const uint64_t cookie = pod_.ns.cookie();
  const IpAddr v4 = *IpAddr::Parse("10.77.0.1"), v6 = *IpAddr::Parse("fd00::1");
  ASSERT_TRUE((*deny)
                  ->Sync({{cookie, v4, pod_.dst4_port, true, 7},
                          {cookie, v6, 0, true, 3},
                          {cookie, v6, pod_.dst6_port, false, 3},
                          {cookie + 1, v4, 0, true, 9}})  // another pod's: no effect here
                  .ok());
  auto before = out_->Counters();
  auto counts_before = (*deny)->Counts({3, 7, 9});
  ASSERT_TRUE(counts_before.ok()) << counts_before.status();

  const auto t0 = std::chrono::steady_clock::now();
  ConnectResult r = Connect(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port));
  EXPECT_EQ(r.err, want_err) << std::strerror(r.err > 0 ? r.err : 0);
  r = Connect(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port), AF_INET6);  // mapped
  EXPECT_EQ(r.err, want_err) << std::strerror(r.err > 0 ? r.err : 0);
  r = Connect(pod_, "[fd00::1]:" + std::to_string(pod_.dst6_port + 1));  // port-0 entry
  EXPECT_EQ(r.err, want_err) << std::strerror(r.err > 0 ? r.err : 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  for (int fd : {pod_.ztunnel4.get(), pod_.ztunnel6.get(), pod_.dst4.get(), pod_.dst6.get()}) {
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 100), 0) << "a denied connect reached a listener";
  }
  EXPECT_EQ(Delta(*before, *out_->Counters()), (ReasonCounts{{WEFT_DROP_POLICY_DENY, 3}}));
  auto counts = (*deny)->Counts({3, 7, 9});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ((*counts)[7] - (*counts_before)[7], 2u);
  EXPECT_EQ((*counts)[3] - (*counts_before)[3], 1u);
  EXPECT_EQ((*counts)[9] - (*counts_before)[9], 0u);

  // The exception passes; another address of the same pod is not touched.
  ExpectRedirected(pod_, "[fd00::1]:" + std::to_string(pod_.dst6_port), Landed::kZtunnel6);
  ExpectRedirected(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port + 1), Landed::kZtunnel4);

  // Entries as written, and gone after an empty Sync: the connect is redirected again.
  auto entries = (*deny)->Entries();
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_EQ(entries->size(), 4u);
  ASSERT_TRUE((*deny)->Sync({}).ok());
  EXPECT_TRUE((*deny)->Entries()->empty());
  ExpectRedirected(pod_, "10.77.0.1:" + std::to_string(pod_.dst4_port), Landed::kZtunnel4);
  ASSERT_TRUE((*deny)->ResetCounts().ok());
  EXPECT_EQ((*(*deny)->Counts({7}))[7], 0u);
}

TEST_F(ConnectTest, DenySyncRefusesTooManyEntriesAndBadLabels) {
  auto deny = out_->ConnectDeny();
  ASSERT_TRUE(deny.ok()) << deny.status();
  const IpAddr v4 = *IpAddr::Parse("10.77.0.1");
  EXPECT_TRUE(absl::IsInvalidArgument((*deny)->Sync({{1, v4, 0, true, WEFT_DENY_LABELS}})));
  std::vector<ConnectDenyEntry> many(WEFT_CONNECT_DENY_ENTRIES + 1, {1, v4, 0, true, 0});
  absl::Status st = (*deny)->Sync(many);
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  EXPECT_TRUE((*deny)->Entries()->empty());
}

TEST(SkLookupTest, SetListenerRejectsSocketsThatCannotBeSteeredTo) {
  WEFT_SKIP_UNLESS_ROOT("BPF, netns, cgroups");
  WEFT_LOAD_OR_SKIP(in, InboundCapture);
  UniqueFd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(unbound);
  absl::Status st = in->SetListener(1, WEFT_LISTENER_INBOUND, unbound.get());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("listening TCP socket"), std::string::npos) << st;
  EXPECT_TRUE(absl::IsInvalidArgument(in->SetListener(1, WEFT_LISTENER_INBOUND, -1)));
}

// ---- local legs (sk_msg) ----------------------------------------------------------------

// Whether the kernel's BTF has struct sk_psock's msg_tot_len (the local legs need it).
bool KernelHasPsockMsgTotLen() {
  struct btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return false;
  bool found = false;
  int id = btf__find_by_name_kind(vmlinux, "sk_psock", BTF_KIND_STRUCT);
  if (id > 0) {
    const struct btf_type* t = btf__type_by_id(vmlinux, id);
    const struct btf_member* m = btf_members(t);
    for (int i = 0; i < btf_vlen(t); ++i)
      if (std::string_view(btf__name_by_offset(vmlinux, m[i].name_off)) == "msg_tot_len")
        found = true;
  }
  btf__free(vmlinux);
  return found;
}

uint8_t Pattern(uint64_t i, uint8_t seed) {
  return static_cast<uint8_t>((i % 251) ^ seed);
}
constexpr uint8_t kUpSeed = 0x11, kDownSeed = 0x22;

// What the app (a forked child in the test cgroup and netns) did on its connection.
struct LegReport {
  int connect_err = -1;
  int write_err = 0, read_err = 0;  // errno of the first failing write/read, 0: none
  uint64_t written = 0;             // bytes the app wrote
  uint64_t nonblocking = 0;         // of those, written without blocking before the first EAGAIN
  uint64_t down_ok = 0;             // bytes read in order before EOF/error
  bool down_bad = false;            // a byte out of pattern
  uint64_t tcp_acked = 0;           // tcpi_bytes_acked of the app's socket: bytes TCP carried
};

struct LegPlan {
  uint64_t up = 0;         // bytes to write after the go byte
  uint64_t probe = 0;      // first write until EAGAIN without waiting, at most this many
  bool half_close = true;  // shutdown(SHUT_WR) after writing
  uint32_t rounds = 0;     // ping-pong instead: `rounds` times `msg` bytes up, then down
  uint32_t msg = 0;
  bool listen = false;  // the app is the server (the inbound leg): listens on dst, accepts one
};

// The app's socket is non-blocking and waits in poll(), as event-driven servers and clients do
// (a blocking recv on a socket in a sockmap can return EAGAIN on this kernel: docs/fastpath.md).
bool WaitFor(int fd, short what) {
  pollfd p{fd, what, 0};
  return ::poll(&p, 1, 10000) == 1;
}

// Sends n bytes of the up pattern starting at stream offset *off. Returns errno or 0.
int SendUp(int s, uint64_t n, uint64_t* off, std::vector<uint8_t>& buf) {
  for (uint64_t end = *off + n; *off < end;) {
    size_t k = std::min<uint64_t>(buf.size(), end - *off);
    for (size_t i = 0; i < k; ++i) buf[i] = Pattern(*off + i, kUpSeed);
    ssize_t w = ::send(s, buf.data(), k, MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN) {
      if (!WaitFor(s, POLLOUT)) return ETIMEDOUT;
      continue;
    }
    if (w <= 0) return w < 0 ? errno : EPIPE;
    *off += static_cast<uint64_t>(w);
  }
  return 0;
}

// Reads up to n bytes (0: to EOF) of the down pattern. Returns errno or 0; *eof on EOF.
int RecvDown(int s, uint64_t n, LegReport* r, std::vector<uint8_t>& buf, bool* eof) {
  for (uint64_t end = r->down_ok + n; n == 0 || r->down_ok < end;) {
    size_t want = n == 0 ? buf.size() : std::min<uint64_t>(buf.size(), end - r->down_ok);
    ssize_t got = ::recv(s, buf.data(), want, 0);
    if (got < 0 && errno == EAGAIN) {
      if (!WaitFor(s, POLLIN)) return ETIMEDOUT;
      continue;
    }
    if (got < 0) return errno;
    if (got == 0) {
      *eof = true;
      return 0;
    }
    for (ssize_t i = 0; i < got; ++i)
      if (buf[static_cast<size_t>(i)] != Pattern(r->down_ok + static_cast<uint64_t>(i), kDownSeed))
        r->down_bad = true;
    r->down_ok += static_cast<uint64_t>(got);
  }
  return 0;
}

// Forks the app: connects to `dst` (plan.listen: listens on `dst` and accepts one connection),
// reports its local port on `port_fd`, waits for the go byte on `go_fd`, then follows `plan` and
// reads to EOF, checking the down pattern.
Child SpawnLegApp(const ScopedCgroup& cgroup, int netns_fd, const sockaddr_storage& dst,
                  socklen_t dst_len, LegPlan plan, int port_fd, int go_fd) {
  std::string procs = cgroup.path() + "/cgroup.procs";
  return ForkReporting<LegReport>([&] {
    LegReport r;
    uint16_t port = 0;
    int s = -1;
    const bool in = JoinInChild(procs, netns_fd);
    if (!in && plan.listen) (void)!::write(port_fd, &port, sizeof(port));
    if (in && plan.listen) {
      // The listener is created here, in the pod's cgroup: its accepted sockets are too.
      int l = ::socket(dst.ss_family, SOCK_STREAM, 0);
      r.connect_err = 0;
      sockaddr_storage local;
      socklen_t llen = sizeof(local);
      if (::bind(l, reinterpret_cast<const sockaddr*>(&dst), dst_len) != 0 || ::listen(l, 4) != 0 ||
          ::getsockname(l, reinterpret_cast<sockaddr*>(&local), &llen) != 0)
        r.connect_err = errno;
      port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
      (void)!::write(port_fd, &port, sizeof(port));
      if (r.connect_err == 0 && WaitFor(l, POLLIN)) s = ::accept(l, nullptr, nullptr);
      if (s < 0 && r.connect_err == 0) r.connect_err = ETIMEDOUT;
      ::close(l);
      if (s >= 0) ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    } else if (in) {
      s = ::socket(dst.ss_family, SOCK_STREAM, 0);
      r.connect_err =
          ::connect(s, reinterpret_cast<const sockaddr*>(&dst), dst_len) == 0 ? 0 : errno;
      sockaddr_storage local;
      socklen_t llen = sizeof(local);
      ::getsockname(s, reinterpret_cast<sockaddr*>(&local), &llen);
      port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
      ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    }
    if (!plan.listen) (void)!::write(port_fd, &port, sizeof(port));
    char go = 0;
    if (r.connect_err == 0 && ::read(go_fd, &go, 1) == 1) {
      std::vector<uint8_t> buf(64 * 1024);
      bool eof = false;
      if (plan.probe > 0) {
        while (r.written < plan.probe) {
          size_t n = std::min<uint64_t>(buf.size(), plan.probe - r.written);
          for (size_t i = 0; i < n; ++i) buf[i] = Pattern(r.written + i, kUpSeed);
          ssize_t w = ::send(s, buf.data(), n, MSG_NOSIGNAL);
          if (w <= 0) break;
          r.written += static_cast<uint64_t>(w);
        }
        r.nonblocking = r.written;
      }
      for (uint32_t i = 0; i < plan.rounds && r.write_err == 0 && r.read_err == 0 && !eof; ++i) {
        r.write_err = SendUp(s, plan.msg, &r.written, buf);
        if (r.write_err == 0) r.read_err = RecvDown(s, plan.msg, &r, buf, &eof);
      }
      if (plan.up > r.written && r.write_err == 0)
        r.write_err = SendUp(s, plan.up - r.written, &r.written, buf);
      if (plan.half_close && r.write_err == 0) ::shutdown(s, SHUT_WR);
      if (r.read_err == 0 && !eof) r.read_err = RecvDown(s, 0, &r, buf, &eof);
      tcp_info ti{};
      socklen_t tl = sizeof(ti);
      if (::getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0) r.tcp_acked = ti.tcpi_bytes_acked;
    }
    return r;
  });
}

LegReport CollectLeg(const Child& c) {
  if (c.pid < 0) return {};
  LegReport failed;
  failed.connect_err = -3;
  return CollectReport<LegReport>(c, 20000).value_or(failed);
}

// Reads `fd` to EOF (or `max` bytes), checking the up pattern. Returns the bytes in order.
uint64_t ReadUp(int fd, uint64_t max, bool* bad, int* err, uint64_t start = 0) {
  std::vector<uint8_t> buf(64 * 1024);
  uint64_t got = 0;
  for (int rounds = 0; rounds < 1 << 20 && got < max; ++rounds) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) {
      *err = ETIMEDOUT;
      break;
    }
    ssize_t n = ::recv(fd, buf.data(), std::min<uint64_t>(buf.size(), max - got), 0);
    if (n <= 0) {
      if (n < 0) *err = errno;
      break;
    }
    for (ssize_t i = 0; i < n; ++i)
      if (buf[static_cast<size_t>(i)] != Pattern(start + got + static_cast<uint64_t>(i), kUpSeed))
        *bad = true;
    got += static_cast<uint64_t>(n);
  }
  return got;
}

bool WriteDown(int fd, uint64_t n) {
  std::vector<uint8_t> buf(64 * 1024);
  for (uint64_t sent = 0; sent < n;) {
    size_t k = std::min<uint64_t>(buf.size(), n - sent);
    for (size_t i = 0; i < k; ++i) buf[i] = Pattern(sent + i, kDownSeed);
    ssize_t w = ::send(fd, buf.data(), k, MSG_NOSIGNAL);
    if (w <= 0) return false;
    sent += static_cast<uint64_t>(w);
  }
  return true;
}

class LocalLegsTest : public ConnectTest {
 protected:
  void SetUp() override {
    ConnectTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(out_->Enroll(pod_.ns.cookie(), 1).ok());
    // sk_psock.msg_tot_len (the bound of the redirected queue) is what the kernel must have;
    // where it has it, a program that fails to load is a failure, not a skip.
    if (!out_->local_legs_unsupported().empty()) {
      ASSERT_FALSE(KernelHasPsockMsgTotLen()) << out_->local_legs_unsupported();
      if (NeedsLegs())
        GTEST_SKIP() << "kernel without the local legs: " << out_->local_legs_unsupported();
    }
  }
  // Whether the test needs the kernel to run the local legs (else it runs everywhere).
  virtual bool NeedsLegs() const { return true; }

  // Forks the app (in the test cgroup and the pod's netns) on `addr` as `plan` says, held
  // until Go(); `port` gets the port it reports (its source port, or its listener's), 0 if it
  // reported none within 5 s.
  Child Spawn(const SockAddr& addr, const LegPlan& plan, uint16_t* port) {
    sockaddr_storage ss{};
    socklen_t len = addr.ToSockaddr(&ss);
    int port_pipe[2], go_pipe[2];
    if (::pipe2(port_pipe, O_CLOEXEC) != 0) return {};
    if (::pipe2(go_pipe, O_CLOEXEC) != 0) {
      ::close(port_pipe[0]);
      ::close(port_pipe[1]);
      return {};
    }
    Child c = SpawnLegApp(*cgroup_, pod_.ns.fd(), ss, len, plan, port_pipe[1], go_pipe[0]);
    ::close(port_pipe[1]);
    ::close(go_pipe[0]);
    go_ = UniqueFd(go_pipe[1]);
    pollfd p{port_pipe[0], POLLIN, 0};
    if (::poll(&p, 1, 5000) == 1) (void)!::read(port_pipe[0], port, sizeof(*port));
    ::close(port_pipe[0]);
    return c;
  }

  // Starts the app towards the pod's IPv4 (or IPv6) destination and accepts ztunnel's end.
  Child Start(LegPlan plan, UniqueFd* accepted, bool v6 = false) {
    std::string dst = v6 ? "[fd00::1]:" + std::to_string(pod_.dst6_port)
                         : "10.77.0.1:" + std::to_string(pod_.dst4_port);
    uint16_t port = 0;
    Child c = Spawn(*SockAddr::Parse(dst), plan, &port);
    EXPECT_EQ(WhereLanded(pod_, port, accepted), v6 ? Landed::kZtunnel6 : Landed::kZtunnel4);
    return c;
  }
  void Go() { ASSERT_EQ(::write(go_.get(), "g", 1), 1); }

  // Both directions of `mib` MiB each through a joined pair (or plain TCP when `join` is off),
  // with the app half-closing first: every byte arrives, in order, EOF after the last one.
  LegReport RoundTrip(uint64_t bytes, bool expect_joined, bool v6 = false) {
    UniqueFd z;
    Child c = Start({.up = bytes}, &z, v6);
    EXPECT_TRUE(z);
    if (!z) return CollectLeg(c);
    absl::Status joined = out_->JoinLocalLeg(z.get());
    EXPECT_EQ(joined.ok(), expect_joined) << joined;
    return Exchange(z.get(), c, bytes);
  }

  // ztunnel's side of a bulk exchange on `z`: reads the app's `bytes` up to its half-close,
  // writes `bytes` down and half-closes; every byte checked both ways.
  LegReport Exchange(int z, const Child& c, uint64_t bytes) {
    Go();
    bool bad = false;
    int err = 0;
    EXPECT_EQ(ReadUp(z, bytes + 1, &bad, &err), bytes);  // then EOF (the half-close)
    EXPECT_FALSE(bad);
    EXPECT_EQ(err, 0) << std::strerror(err);
    EXPECT_TRUE(WriteDown(z, bytes));
    ::shutdown(z, SHUT_WR);
    LegReport r = CollectLeg(c);
    EXPECT_EQ(r.connect_err, 0);
    EXPECT_EQ(r.written, bytes);
    EXPECT_EQ(r.down_ok, bytes);
    EXPECT_FALSE(r.down_bad);
    EXPECT_EQ(r.read_err, 0) << std::strerror(r.read_err);
    return r;
  }

  // ztunnel's side of the app's request/response run (`rounds` messages of `msg` bytes each
  // way, then the app's half-close): answers each request and checks every byte both ways;
  // returns the app's report and ztunnel's socket's TCP_INFO.
  std::pair<LegReport, tcp_info> PingPong(int z, Child& c, uint32_t rounds, uint32_t msg) {
    Go();
    uint64_t up = 0;
    bool bad = false;
    int err = 0;
    for (uint32_t i = 0; i < rounds && !bad && err == 0; ++i) {
      up += ReadUp(z, msg, &bad, &err, up);
      std::vector<uint8_t> reply(msg);
      for (uint32_t k = 0; k < msg; ++k) reply[k] = Pattern(uint64_t{i} * msg + k, kDownSeed);
      if (::send(z, reply.data(), msg, MSG_NOSIGNAL) != static_cast<ssize_t>(msg)) {
        ADD_FAILURE() << "reply " << i << ": " << std::strerror(errno);
        break;
      }
    }
    EXPECT_EQ(up, uint64_t{rounds} * msg);
    EXPECT_FALSE(bad);
    EXPECT_EQ(ReadUp(z, 1, &bad, &err, up), 0u);  // EOF
    tcp_info ti{};
    socklen_t tl = sizeof(ti);
    EXPECT_EQ(::getsockopt(z, IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
    ::shutdown(z, SHUT_WR);
    LegReport r = CollectLeg(c);
    EXPECT_EQ(r.down_ok, uint64_t{rounds} * msg);
    EXPECT_FALSE(r.down_bad);
    return {r, ti};
  }

  // The app writes 64 MiB into its joined leg; ztunnel's end (`z`) takes 1 MiB and resets: the
  // app's writes end with a reset, long before the 64 MiB.
  void ResetEndsTheAppsFlow(UniqueFd& z, Child& c) {
    Go();
    bool bad = false;
    int err = 0;
    EXPECT_EQ(ReadUp(z.get(), 1 << 20, &bad, &err), 1u << 20);
    EXPECT_FALSE(bad);
    linger l{1, 0};
    ::setsockopt(z.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    z.reset();
    LegReport r = CollectLeg(c);
    EXPECT_LT(r.written, 64u << 20);
    EXPECT_TRUE(r.write_err == ECONNRESET || r.write_err == EPIPE) << std::strerror(r.write_err);
  }

  UniqueFd go_;
};

TEST_F(LocalLegsTest, JoinedPairMovesMiBsBothWaysInOrderWithHalfClose) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  auto before = out_->Counters();
  constexpr uint64_t kBytes = 8 << 20;
  LegReport r = RoundTrip(kBytes, /*expect_joined=*/true);
  // A bulk sender always has bytes in flight, so most of a bulk flow keeps to TCP; the point
  // here is that switching between the two paths loses and reorders nothing.
  EXPECT_LT(r.tcp_acked, kBytes) << "nothing took the short-cut";
  auto after = out_->Counters();
  EXPECT_EQ(Delta(*before, *after),
            (ReasonCounts{
                {WEFT_REDIRECT_OUTBOUND, 1}, {WEFT_RECORD_PEER, 1}, {WEFT_LOCAL_LEG_JOINED, 1}}));
}

TEST_F(LocalLegsTest, JoinedPairOverIpv6) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  LegReport r = RoundTrip(1 << 20, /*expect_joined=*/true, /*v6=*/true);
  EXPECT_LT(r.tcp_acked, 1u << 20);
}

// Request/response (the traffic the short-cut is for): after the first request, every message
// goes socket to socket, none through the app's TCP.
TEST_F(LocalLegsTest, RequestResponseGoesSocketToSocket) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  constexpr uint32_t kRounds = 200, kMsg = 4096;
  UniqueFd z;
  Child c = Start({.half_close = true, .rounds = kRounds, .msg = kMsg}, &z);
  ASSERT_TRUE(z);
  ASSERT_TRUE(out_->JoinLocalLeg(z.get()).ok());
  auto [r, ti] = PingPong(z.get(), c, kRounds, kMsg);
  EXPECT_LE(r.tcp_acked, kMsg) << "requests took TCP";
  EXPECT_LE(ti.tcpi_bytes_acked, kMsg) << "responses took TCP";
}

// Off (and on every kernel, with or without the local legs): plain TCP, nothing joins.
class LocalLegsOffTest : public LocalLegsTest {
 protected:
  bool NeedsLegs() const override { return false; }
};

TEST_F(LocalLegsOffTest, OffMeansPlainTcp) {
  ASSERT_TRUE(out_->SetLocalLegs(false).ok());
  constexpr uint64_t kBytes = 1 << 20;
  LegReport r = RoundTrip(kBytes, /*expect_joined=*/false);
  EXPECT_GE(r.tcp_acked, kBytes);
}

TEST_F(LocalLegsTest, ReleasedAppEndTakesPlainTcp) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  UniqueFd z;
  Child c = Start({.up = 1 << 20}, &z);
  ASSERT_TRUE(z);
  ASSERT_TRUE(out_->ReleaseLocalLeg(z.get()).ok());
  EXPECT_TRUE(absl::IsNotFound(out_->JoinLocalLeg(z.get())));
  Go();
  bool bad = false;
  int err = 0;
  EXPECT_EQ(ReadUp(z.get(), (1 << 20) + 1, &bad, &err), 1u << 20);
  EXPECT_FALSE(bad);
  z.reset();
  LegReport r = CollectLeg(c);
  EXPECT_GE(r.tcp_acked, 1u << 20);
}

// ztunnel reads slowly: the app cannot push more than about the receive buffer through the
// short-cut; the rest waits in TCP (its window pushes back), and nothing is lost or reordered
// when the short-cut resumes.
TEST_F(LocalLegsTest, SlowReaderPushesBackAndKeepsOrder) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  constexpr uint64_t kBytes = 24 << 20;
  UniqueFd z;
  Child c = Start({.up = kBytes, .probe = 64 << 20}, &z);
  ASSERT_TRUE(z);
  ASSERT_TRUE(out_->JoinLocalLeg(z.get()).ok());
  Go();
  ::usleep(300 * 1000);  // not reading: the app's non-blocking writes must hit EAGAIN
  bool bad = false;
  int err = 0;
  EXPECT_EQ(ReadUp(z.get(), kBytes + 1, &bad, &err), kBytes);
  EXPECT_FALSE(bad);
  ::shutdown(z.get(), SHUT_WR);
  LegReport r = CollectLeg(c);
  EXPECT_EQ(r.written, kBytes);
  EXPECT_GT(r.nonblocking, 0u);
  EXPECT_LT(r.nonblocking, 16u << 20) << "the short-cut did not push back";
}

// ztunnel resets (or dies: its sockets close): the app sees the end of the flow.
TEST_F(LocalLegsTest, ZtunnelResetEndsTheAppsFlow) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  UniqueFd z;
  Child c = Start({.up = 64 << 20, .half_close = false}, &z);
  ASSERT_TRUE(z);
  ASSERT_TRUE(out_->JoinLocalLeg(z.get()).ok());
  ResetEndsTheAppsFlow(z, c);
}

// A flow that started before the local legs were turned off keeps its short-cut; a new one
// takes plain TCP.
TEST_F(LocalLegsTest, TurningOffAffectsOnlyNewConnections) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  UniqueFd z1;
  Child c1 = Start({.up = 1 << 20}, &z1);
  ASSERT_TRUE(z1);
  ASSERT_TRUE(out_->JoinLocalLeg(z1.get()).ok());
  UniqueFd go1 = std::move(go_);
  ASSERT_TRUE(out_->SetLocalLegs(false).ok());
  UniqueFd z2;
  Child c2 = Start({.up = 1 << 20}, &z2);
  ASSERT_TRUE(z2);
  EXPECT_TRUE(absl::IsNotFound(out_->JoinLocalLeg(z2.get())));
  ASSERT_EQ(::write(go1.get(), "g", 1), 1);
  Go();
  LegReport r[2];
  UniqueFd* zs[2] = {&z1, &z2};
  Child cs[2] = {c1, c2};
  for (int i = 0; i < 2; ++i) {
    bool bad = false;
    int err = 0;
    EXPECT_EQ(ReadUp(zs[i]->get(), (1 << 20) + 1, &bad, &err), 1u << 20) << i;
    EXPECT_FALSE(bad) << i;
    ::shutdown(zs[i]->get(), SHUT_WR);
    r[i] = CollectLeg(cs[i]);
    EXPECT_EQ(r[i].written, 1u << 20) << i;
  }
  EXPECT_LT(r[0].tcp_acked, 1u << 20);  // joined before: short-cut
  EXPECT_GE(r[1].tcp_acked, 1u << 20);  // after: plain TCP
}

// ---- The inbound (delivery) leg: ztunnel connects to the app inside the pod ----------------

class LocalLegsInboundTest : public LocalLegsTest {
 protected:
  // The app listens in the pod (its listener, and so its accepted socket, in the pod's
  // cgroup); the test, as ztunnel, connects from a socket in the pod's netns (outside the
  // cgroup), announced before the connect when `announce`.
  Child StartServer(LegPlan plan, UniqueFd* z, bool announce, bool v6 = false) {
    plan.listen = true;
    auto bind_to = SockAddr::Parse(v6 ? "[fd00::1]:0" : "10.77.0.1:0");
    uint16_t port = 0;
    Child c = Spawn(*bind_to, plan, &port);
    EXPECT_NE(port, 0);
    SockAddr app{bind_to->ip, port};
    auto fd = SocketInNetns(pod_.ns.fd(), v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    EXPECT_TRUE(fd.ok()) << fd.status();
    if (!fd.ok() || port == 0) return c;
    if (announce) {
      auto own = out_->ExpectInboundLeg(fd->get(), app);
      EXPECT_TRUE(own.ok()) << own.status();
      if (own.ok()) own_ = *own;
      if (own.ok() && forget_) EXPECT_TRUE(out_->ForgetInboundLeg(own_).ok());
    }
    sockaddr_storage as{};
    socklen_t alen = app.ToSockaddr(&as);
    EXPECT_EQ(::connect(fd->get(), reinterpret_cast<sockaddr*>(&as), alen), 0)
        << std::strerror(errno);
    *z = std::move(*fd);
    return c;
  }

  // The app writes `bytes` and half-closes; ztunnel (the test) reads them all, then writes
  // `bytes` down and half-closes; the app reads them to EOF.
  LegReport RoundTrip(uint64_t bytes, bool announce, bool join, bool v6 = false) {
    UniqueFd z;
    Child c = StartServer({.up = bytes}, &z, announce, v6);
    EXPECT_TRUE(z);
    if (!z) return CollectLeg(c);
    if (join) EXPECT_TRUE(out_->JoinInboundLeg(z.get(), own_).ok());
    return Exchange(z.get(), c, bytes);
  }

  weft_sock_tuple own_{};
  bool forget_ = false;  // withdraw the announcement before connecting
};

TEST_F(LocalLegsInboundTest, AnnouncedLegJoinsAndMovesMiBsBothWaysInOrderWithHalfClose) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  auto before = out_->Counters();
  constexpr uint64_t kBytes = 8 << 20;
  LegReport r = RoundTrip(kBytes, /*announce=*/true, /*join=*/true);
  EXPECT_LT(r.tcp_acked, kBytes) << "nothing took the short-cut";
  auto after = out_->Counters();
  // Only the app's accepted socket passes through sockops (ztunnel's is outside the cgroup).
  EXPECT_EQ(Delta(*before, *after), (ReasonCounts{{WEFT_LOCAL_LEG_INBOUND, 1}}));
}

TEST_F(LocalLegsInboundTest, OverIpv6) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  LegReport r = RoundTrip(1 << 20, true, true, /*v6=*/true);
  EXPECT_LT(r.tcp_acked, 1u << 20);
}

// Request/response: after the first message, every one goes socket to socket in both
// directions, none through either end's TCP.
TEST_F(LocalLegsInboundTest, RequestResponseGoesSocketToSocket) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  constexpr uint32_t kRounds = 200, kMsg = 4096;
  UniqueFd z;
  Child c = StartServer({.half_close = true, .rounds = kRounds, .msg = kMsg}, &z, true);
  ASSERT_TRUE(z);
  ASSERT_TRUE(out_->JoinInboundLeg(z.get(), own_).ok());
  auto [r, ti] = PingPong(z.get(), c, kRounds, kMsg);
  EXPECT_LE(r.tcp_acked, kMsg) << "the app's messages took TCP";
  EXPECT_LE(ti.tcpi_bytes_acked, kMsg) << "ztunnel's messages took TCP";
}

// Not announced (another path: the same-node fast path, plaintext inbound), or the switch off:
// the app's socket never joins, every byte takes TCP.
TEST_F(LocalLegsInboundTest, UnannouncedOrOffMeansPlainTcp) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  auto before = out_->Counters();
  LegReport r = RoundTrip(1 << 20, /*announce=*/false, /*join=*/false);
  EXPECT_GE(r.tcp_acked, 1u << 20);
  ASSERT_TRUE(out_->SetLocalLegs(false).ok());
  r = RoundTrip(1 << 20, /*announce=*/true, /*join=*/true);
  EXPECT_GE(r.tcp_acked, 1u << 20);
  auto after = out_->Counters();
  EXPECT_EQ(Delta(*before, *after), ReasonCounts{});
}

// The app reads slowly (back-pressure on delivery): ztunnel's non-blocking writes stop at
// about the app's receive buffer, and every byte then arrives in order.
TEST_F(LocalLegsInboundTest, SlowAppPushesBackAndKeepsOrder) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  constexpr uint64_t kBytes = 24 << 20;
  UniqueFd z;
  Child c = StartServer({.half_close = false}, &z, true);
  ASSERT_TRUE(z);
  ASSERT_TRUE(out_->JoinInboundLeg(z.get(), own_).ok());
  // The app waits for the go byte and does not read: write until the socket refuses.
  ::fcntl(z.get(), F_SETFL, ::fcntl(z.get(), F_GETFL) | O_NONBLOCK);
  std::vector<uint8_t> buf(64 * 1024);
  uint64_t sent = 0;
  for (int i = 0; i < 4096 && sent < kBytes; ++i) {
    for (size_t k = 0; k < buf.size(); ++k) buf[k] = Pattern(sent + k, kDownSeed);
    ssize_t w = ::send(z.get(), buf.data(), buf.size(), MSG_NOSIGNAL);
    if (w <= 0) break;
    sent += static_cast<uint64_t>(w);
  }
  EXPECT_GT(sent, 0u);
  EXPECT_LT(sent, 16u << 20) << "the short-cut did not push back";
  Go();
  ::fcntl(z.get(), F_SETFL, ::fcntl(z.get(), F_GETFL) & ~O_NONBLOCK);
  while (sent < kBytes) {
    size_t k = std::min<uint64_t>(buf.size(), kBytes - sent);
    for (size_t i = 0; i < k; ++i) buf[i] = Pattern(sent + i, kDownSeed);
    ssize_t w = ::send(z.get(), buf.data(), k, MSG_NOSIGNAL);
    ASSERT_GT(w, 0) << std::strerror(errno);
    sent += static_cast<uint64_t>(w);
  }
  ::shutdown(z.get(), SHUT_WR);
  LegReport r = CollectLeg(c);
  EXPECT_EQ(r.down_ok, kBytes);
  EXPECT_FALSE(r.down_bad);
  EXPECT_EQ(r.read_err, 0) << std::strerror(r.read_err);
}

// ztunnel resets (or dies: its sockets close): the app sees the end of the flow.
TEST_F(LocalLegsInboundTest, ZtunnelResetEndsTheAppsFlow) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  UniqueFd z;
  Child c = StartServer({.up = 64 << 20, .half_close = false}, &z, true);
  ASSERT_TRUE(z);
  ASSERT_TRUE(out_->JoinInboundLeg(z.get(), own_).ok());
  ResetEndsTheAppsFlow(z, c);
}

// A failed connect withdraws its announcement: a connection on that tuple no longer joins.
TEST_F(LocalLegsInboundTest, ForgottenAnnouncementDoesNotJoin) {
  ASSERT_TRUE(out_->SetLocalLegs(true).ok());
  forget_ = true;
  auto before = out_->Counters();
  LegReport r = RoundTrip(1 << 20, /*announce=*/true, /*join=*/true);
  EXPECT_GE(r.tcp_acked, 1u << 20);
  auto after = out_->Counters();
  EXPECT_EQ(Delta(*before, *after), ReasonCounts{});
}

TEST(ReasonNameTest, EveryCodeHasALabel) {
  for (int r : {WEFT_DROP_NO_HBONE_SOCKET, WEFT_DROP_NO_INBOUND_SOCKET,  WEFT_DROP_ASSIGN_FAILED,
                WEFT_DROP_ORIG_DST_FULL,   WEFT_DROP_PEER_RECORD_FAILED, WEFT_RECORD_PEER,
                WEFT_PASS_NOT_TCP,         WEFT_PASS_LOOPBACK,           WEFT_DROP_NOT_POD_ADDR,
                WEFT_DROP_NO_POD_MAP,      WEFT_PASS_NOT_ENROLLED,       WEFT_PASS_ZTUNNEL_MARK,
                WEFT_PASS_EXCLUDED_PORT,   WEFT_PASS_EXCLUDED_CIDR,      WEFT_REDIRECT_HBONE,
                WEFT_REDIRECT_INBOUND,     WEFT_REDIRECT_OUTBOUND,       WEFT_DROP_POLICY_DENY,
                WEFT_LOCAL_LEG_JOINED,     WEFT_LOCAL_LEG_FULL,          WEFT_LOCAL_LEG_INBOUND}) {
    EXPECT_NE(ReasonName(r), "unknown") << r;
    EXPECT_EQ(ReasonName(r).substr(0, 4) == "drop", r < 0) << ReasonName(r);
  }
  EXPECT_EQ(ReasonName(0), "unknown");
}

}  // namespace
}  // namespace weft::bpf
