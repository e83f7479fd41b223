#include "cli/testbed/testbed.h"
#include "common/file.h"
#include "common/testing/temp_dir.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/cgroup.h"
#include "common/netns.h"
#include "common/status.h"
#include "common/testing/kernel_features.h"
#include "common/testing/root.h"
#include "gtest/gtest.h"

namespace weft::testbed {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;


bool NetnsExists(const std::string& name) {
  struct stat st;
  return ::lstat(NetnsPath(name).c_str(), &st) == 0;
}

std::pair<dev_t, ino_t> NsId(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return {st.st_dev, st.st_ino};
}

std::string RandomToken(std::string_view tag) {
  std::random_device rd;
  return absl::StrCat(Av(tag), "-", rd(), rd());
}

// A listener bound to port 0 inside a netns.
struct Listener {
  UniqueFd fd;
  SockAddr addr;
};

Listener Listen(const std::string& netns, const IpAddr& ip) {
  Listener l;
  auto ns = OpenNetns(NetnsPath(netns));
  EXPECT_TRUE(ns.ok()) << ns.status();
  auto s = SocketInNetns(ns->get(), ip.IsV4() ? AF_INET : AF_INET6, SOCK_STREAM, 0);
  EXPECT_TRUE(s.ok()) << s.status();
  SockAddr bind_addr{ip, 0};
  sockaddr_storage ss;
  socklen_t len = bind_addr.ToSockaddr(&ss);
  EXPECT_EQ(::bind(s->get(), reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
  EXPECT_EQ(::listen(s->get(), 16), 0);
  auto local = LocalAddress(s->get());
  EXPECT_TRUE(local.ok());
  l.addr = *local;
  l.fd = std::move(*s);
  return l;
}

// Sends `payload` from a client socket in `client_ns` to the listener and checks that the server
// receives it from the client pod's own address (no NAT anywhere).
void CheckTcp(const std::string& client_ns, const IpAddr& client_ip, Listener& l,
              const std::string& payload) {
  auto ns = OpenNetns(NetnsPath(client_ns));
  ASSERT_TRUE(ns.ok()) << ns.status();
  auto c = SocketInNetns(ns->get(), l.addr.ip.IsV4() ? AF_INET : AF_INET6, SOCK_STREAM, 0);
  ASSERT_TRUE(c.ok()) << c.status();
  timeval tv{5, 0};
  ::setsockopt(c->get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_storage ss;
  socklen_t len = l.addr.ToSockaddr(&ss);
  ASSERT_EQ(::connect(c->get(), reinterpret_cast<sockaddr*>(&ss), len), 0)
      << client_ns << " -> " << l.addr.ToString() << ": " << std::strerror(errno);
  ASSERT_EQ(::send(c->get(), payload.data(), payload.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(payload.size()));
  UniqueFd a(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(a.valid());
  auto peer = PeerAddress(a.get());
  ASSERT_TRUE(peer.ok());
  EXPECT_EQ(peer->ip, client_ip);
  ::setsockopt(a.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got(payload.size(), '\0');
  size_t n = 0;
  while (n < got.size()) {
    ssize_t r = ::recv(a.get(), got.data() + n, got.size() - n, 0);
    ASSERT_GT(r, 0);
    n += static_cast<size_t>(r);
  }
  EXPECT_EQ(got, payload);
}

Options TwoByTwo(const std::string& prefix) {
  Options o;
  o.prefix = prefix;
  o.nodes = 2;
  o.pods = {{"client-a", 0}, {"server_B", 0}, {"c", 1}, {"d", 1}};
  return o;
}

// ---------------------------------------------------------------------------------------------

TEST(TestbedNames, PrefixAndOwnerPid) {
  std::string p = UniquePrefix("t");
  EXPECT_EQ(p.rfind(absl::StrCat("weft-t", ::getpid(), "-"), 0), 0u) << p;
  EXPECT_NE(UniquePrefix("t"), UniquePrefix("t"));
  EXPECT_EQ(OwnerPid(p), ::getpid());
  EXPECT_EQ(OwnerPid(p + "-n0"), ::getpid());
  EXPECT_EQ(OwnerPid("weft-t4711-0-fab"), 4711);
  EXPECT_EQ(OwnerPid("weft-demo-4711-2-n1"), 4711);
  EXPECT_EQ(OwnerPid("weft-bench99"), 99);
  EXPECT_EQ(OwnerPid("weft-4711-0"), std::nullopt);  // no role
  EXPECT_EQ(OwnerPid("weft-t-x"), std::nullopt);
  EXPECT_EQ(OwnerPid("weft-t12x-0"), std::nullopt);
  EXPECT_EQ(OwnerPid("cni-1234"), std::nullopt);
  EXPECT_EQ(OwnerPid("weft-t0-1"), std::nullopt);
  EXPECT_EQ(SanitizePodName("Server_B.ns"), "server-b-ns");
  EXPECT_EQ(NetnsPath("x"), "/run/netns/x");
}

TEST(TestbedOptions, RejectsBadInputWithoutCreatingAnything) {
  Options o = TwoByTwo("mytestbed");
  auto r = Testbed::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("UniquePrefix"), std::string::npos) << r.status();

  o = TwoByTwo(UniquePrefix("t"));
  o.pods.push_back({"e", 2});
  EXPECT_EQ(Testbed::Create(o).status().code(), absl::StatusCode::kInvalidArgument);

  o = TwoByTwo(UniquePrefix("t"));
  o.pods.push_back({"Client.A", 1});  // sanitizes like "client-a"
  r = Testbed::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("client-a"), std::string::npos) << r.status();

  o = TwoByTwo(UniquePrefix("t"));
  o.pods.push_back({"n7", 1});
  EXPECT_EQ(Testbed::Create(o).status().code(), absl::StatusCode::kInvalidArgument);

  o = TwoByTwo(UniquePrefix("t"));
  o.nodes = 0;
  EXPECT_EQ(Testbed::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(NetnsExists(o.prefix + "-fab"));
}

TEST(Testbed, PodsReachEachOtherAcrossAndWithinNodes) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  std::string host_fwd_before = ReadFile("/proc/sys/net/ipv4/ip_forward").value_or("");
  auto host_links_before = Exec("", {"ip", "-o", "link", "show"});
  ASSERT_TRUE(host_links_before.ok()) << host_links_before.status();
  auto tb = Testbed::Create(TwoByTwo(UniquePrefix("t")));
  ASSERT_TRUE(tb.ok()) << tb.status();
  const Testbed& t = **tb;
  for (const auto& ns : t.AllNetns()) EXPECT_TRUE(NetnsExists(ns)) << ns;
  EXPECT_EQ(t.AllNetns().size(), 7u);

  // Layout and addressing.
  EXPECT_EQ(t.PodNetns("server_B").value(), t.prefix() + "-server-b");
  EXPECT_EQ(t.PodIp("client-a")->ToString(), "10.248.0.1");
  EXPECT_EQ(t.PodIp("server_B")->ToString(), "10.248.0.2");
  EXPECT_EQ(t.PodIp("c")->ToString(), "10.248.1.1");
  EXPECT_EQ(t.PodIp6("d")->ToString(), "fd00:248:0:1::2");
  EXPECT_EQ(t.NodeIp(1)->ToString(), "10.249.0.2");
  EXPECT_EQ(t.NodeNetns(0).value(), t.prefix() + "-n0");
  EXPECT_EQ(t.NodeFabricIface(0), "eth0");
  EXPECT_EQ(t.Pod("d")->node_iface, "vp2");
  EXPECT_EQ(t.PodIp("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.NodeNetns(2).status().code(), absl::StatusCode::kNotFound);

  auto routes = Exec(t.PodNetns("c").value(), {"ip", "-4", "route"});
  ASSERT_TRUE(routes.ok()) << routes.status();
  EXPECT_NE(routes->find("default via 169.254.1.1 dev eth0"), std::string::npos) << *routes;
  EXPECT_NE(routes->find("169.254.1.1 dev eth0 scope link"), std::string::npos) << *routes;
  auto fwd = Exec(t.NodeNetns(1).value(), {"cat", "/proc/sys/net/ipv4/ip_forward"});
  ASSERT_TRUE(fwd.ok()) << fwd.status();
  EXPECT_EQ(*fwd, "1\n");
  auto parp = Exec(t.NodeNetns(0).value(), {"cat", "/proc/sys/net/ipv4/conf/vp1/proxy_arp"});
  ASSERT_TRUE(parp.ok()) << parp.status();
  EXPECT_EQ(*parp, "1\n");
  // Sysctls were written inside the namespaces only, and no interface appeared on the host.
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward").value_or(""), host_fwd_before);
  auto host_links = Exec("", {"ip", "-o", "link", "show"});
  ASSERT_TRUE(host_links.ok()) << host_links.status();
  for (const char* name : {": br0:", ": n0@", ": n1@", ": vp1@", ": vp2@"}) {
    if (host_links_before->find(name) != std::string::npos) continue;
    EXPECT_EQ(host_links->find(name), std::string::npos) << name << " leaked into the host netns";
  }
  EXPECT_EQ(host_links->find(t.prefix()), std::string::npos) << *host_links;

  // Real TCP: same node, across nodes, both directions, IPv4 and IPv6.
  auto ip = [&](const char* pod) { return t.PodIp(pod).value(); };
  auto ns = [&](const char* pod) { return t.PodNetns(pod).value(); };
  {
    Listener l = Listen(ns("server_B"), ip("server_B"));
    ASSERT_TRUE(WaitTcp(ns("client-a"), l.addr, seconds(5)).ok());
    UniqueFd drained(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    CheckTcp(ns("client-a"), ip("client-a"), l, "same-node hello");
  }
  {
    Listener l = Listen(ns("c"), ip("c"));
    CheckTcp(ns("client-a"), ip("client-a"), l, "cross-node hello");
  }
  {
    Listener l = Listen(ns("client-a"), ip("client-a"));
    CheckTcp(ns("d"), ip("d"), l, "cross-node reply");
  }
  {
    Listener l = Listen(ns("d"), t.PodIp6("d").value());
    CheckTcp(ns("server_B"), t.PodIp6("server_B").value(), l, "cross-node over IPv6");
  }
  {
    Listener l = Listen(ns("c"), t.PodIp6("c").value());
    CheckTcp(ns("d"), t.PodIp6("d").value(), l, "same-node over IPv6");
  }
  // Nothing listens: WaitTcp gives up with a useful error.
  auto st = WaitTcp(ns("c"), SockAddr{ip("client-a"), 9}, milliseconds(200));
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(st.message().find("is the server listening"), std::string::npos) << st;
}

TEST(Testbed, SpawnAndExecRunInsideTheNetns) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  Options o;
  o.prefix = UniquePrefix("t");
  o.nodes = 1;
  o.pods = {{"p", 0}};
  auto tb = Testbed::Create(o);
  ASSERT_TRUE(tb.ok()) << tb.status();
  std::string pod_ns = (*tb)->PodNetns("p").value();
  weft::testing::TempDir tmp;
  const std::string& dir = tmp.path();

  auto sleeper = Spawn(pod_ns, {"sleep", "30"}, dir + "/sleep.log");
  ASSERT_TRUE(sleeper.ok()) << sleeper.status();
  EXPECT_TRUE(sleeper->Alive());
  EXPECT_EQ(NsId(absl::StrCat("/proc/", sleeper->pid(), "/ns/net")), NsId(NetnsPath(pod_ns)));
  EXPECT_TRUE(sleeper->Wait(milliseconds(50)).status().code() ==
              absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(sleeper->Kill(SIGTERM).ok());
  auto code = sleeper->Wait(seconds(5));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGTERM);
  EXPECT_FALSE(sleeper->Alive());
  EXPECT_EQ(sleeper->Kill(SIGTERM).code(), absl::StatusCode::kFailedPrecondition);

  SpawnOptions so;
  so.env = {{"WEFT_TESTBED_VAR", "hello-env"}};
  auto sh =
      Spawn(pod_ns, {"sh", "-c", "echo $WEFT_TESTBED_VAR; ip -o -4 addr show dev eth0; exit 3"},
            dir + "/sh.log", so);
  ASSERT_TRUE(sh.ok()) << sh.status();
  EXPECT_EQ(sh->Wait(seconds(10)).value_or(-1), 3);
  std::string log = ReadFile(dir + "/sh.log").value_or("");
  EXPECT_NE(log.find("hello-env"), std::string::npos) << log;
  EXPECT_NE(log.find("10.248.0.1/32"), std::string::npos) << log;

  // The destructor terminates and reaps.
  pid_t pid;
  {
    auto p = Spawn(pod_ns, {"sleep", "30"}, "");
    ASSERT_TRUE(p.ok());
    pid = p->pid();
  }
  EXPECT_NE(::kill(pid, 0), 0);

  auto out = Exec(pod_ns, {"ip", "-o", "-4", "addr", "show", "dev", "eth0"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->find("10.248.0.1/32"), std::string::npos) << *out;
  auto cat = Exec(pod_ns, {"cat"}, "through stdin\n");
  ASSERT_TRUE(cat.ok()) << cat.status();
  EXPECT_EQ(*cat, "through stdin\n");
  auto bad = Exec(pod_ns, {"ip", "link", "show", "dev", "nosuchdev0"});
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nosuchdev0"), std::string::npos) << bad.status();
  EXPECT_EQ(Exec(pod_ns, {"no-such-program-weft"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Exec(pod_ns, {"sleep", "5"}, {}, milliseconds(200)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Spawn(o.prefix + "-missing", {"true"}, "").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Spawn(pod_ns, {}, "").status().code(), absl::StatusCode::kInvalidArgument);

  // ~Testbed kills what still runs inside its namespaces, even processes it did not spawn.
  auto survivor = Spawn(pod_ns, {"sleep", "30"}, "");
  ASSERT_TRUE(survivor.ok());
  tb->reset();
  auto gone = survivor->Wait(seconds(5));
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_EQ(*gone, 128 + SIGTERM);
}

TEST(Testbed, CaptureOnFabricSeesClearTextPayload) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  Options o;
  o.prefix = UniquePrefix("t");
  o.nodes = 2;
  o.pods = {{"a", 0}, {"b", 1}};
  auto tb = Testbed::Create(o);
  ASSERT_TRUE(tb.ok()) << tb.status();
  const Testbed& t = **tb;
  weft::testing::TempDir tmp;
  const std::string& dir = tmp.path();
  std::string pcap = dir + "/fabric.pcap";

  Listener l = Listen(t.PodNetns("b").value(), t.PodIp("b").value());
  auto cap = StartCapture(t.NodeNetns(0).value(), t.NodeFabricIface(0), pcap,
                          absl::StrCat("tcp port ", l.addr.port));
  ASSERT_TRUE(cap.ok()) << cap.status();
  std::string sent = RandomToken("weft-cleartext");
  std::string never_sent = RandomToken("weft-never-sent");
  CheckTcp(t.PodNetns("a").value(), t.PodIp("a").value(), l, sent);
  // Bytes that look like a TLS application_data record, to check the TLS counting.
  std::string tls_like("\x17\x03\x03\x00\x10", 5);
  tls_like += "0123456789abcdef";
  CheckTcp(t.PodNetns("a").value(), t.PodIp("a").value(), l, tls_like);
  ASSERT_TRUE(StopCapture(*cap).ok());
  EXPECT_TRUE(cap->Stop().ok());  // idempotent

  auto has = PcapContains(pcap, sent);
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_TRUE(*has);
  EXPECT_FALSE(PcapContains(pcap, never_sent).value());
  EXPECT_FALSE(PcapContains(dir + "/missing.pcap", sent).ok());

  auto sum = PcapSummary(pcap, {l.addr.port});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_GE(sum->tcp_packets, 8) << "two handshakes, payloads and acks";
  EXPECT_EQ(sum->frames, sum->tcp_packets);  // the filter kept only this port's TCP
  EXPECT_GE(sum->tcp_payload_packets, 2);
  EXPECT_GE(sum->tcp_payload_bytes, static_cast<int64_t>(sent.size() + tls_like.size()));
  EXPECT_GE(sum->tls_app_data_records, 1);

  // A capture on an interface that does not exist fails with the tool's message.
  auto bad = StartCapture(t.NodeNetns(0).value(), "nosuchif0", dir + "/bad.pcap", "");
  EXPECT_FALSE(bad.ok());
}

TEST(Testbed, Ipv4OnlyTestbed) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  Options o;
  o.prefix = UniquePrefix("t");
  o.nodes = 2;
  o.pods = {{"x", 1}, {"y", 0}};
  o.ipv6 = false;
  auto tb = Testbed::Create(o);
  ASSERT_TRUE(tb.ok()) << tb.status();
  const Testbed& t = **tb;
  EXPECT_EQ(t.PodIp("x")->ToString(), "10.248.1.1");
  EXPECT_EQ(t.PodIp6("x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(t.nodes()[0].ip6.has_value());
  auto v6 = Exec(t.PodNetns("x").value(), {"ip", "-6", "-o", "addr"});
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(*v6, "");
  Listener l = Listen(t.PodNetns("x").value(), t.PodIp("x").value());
  CheckTcp(t.PodNetns("y").value(), t.PodIp("y").value(), l, "v4 only");
}

TEST(Testbed, DestructionRemovesEverything) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  std::string prefix = UniquePrefix("t");
  auto tb = Testbed::Create(TwoByTwo(prefix));
  ASSERT_TRUE(tb.ok()) << tb.status();
  // A second testbed with the same prefix is refused and leaves the first intact.
  auto dup = Testbed::Create(TwoByTwo(prefix));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(NetnsExists(prefix + "-fab"));
  tb->reset();
  auto list = Exec("", {"ip", "netns", "list"});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->find(prefix + "-"), std::string::npos) << *list;
}

TEST(Testbed, CleanupStaleRemovesOnlyDeadOwners) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int st;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  ASSERT_NE(::kill(child, 0), 0);  // reaped: this pid belongs to nobody now

  std::string dead = absl::StrCat("weft-t", child, "-0-stale");
  std::string live = UniquePrefix("t") + "-live";
  ASSERT_TRUE(
      Exec("", {"ip", "-batch", "-"}, absl::StrCat("netns add ", dead, "\nnetns add ", live, "\n"))
          .ok());
  // A leftover daemon inside the stale netns is killed too.
  auto daemon = Spawn(dead, {"sleep", "30"}, "");
  ASSERT_TRUE(daemon.ok()) << daemon.status();

  auto removed = CleanupStale();
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_FALSE(NetnsExists(dead));
  EXPECT_TRUE(NetnsExists(live));
  for (const auto& n : *removed) EXPECT_NE(n, live);
  auto code = daemon->Wait(seconds(5));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGTERM);

  ASSERT_TRUE(Exec("", {"ip", "netns", "del", live}).ok());
}

}  // namespace
}  // namespace weft::testbed

namespace weft::testbed {
namespace {

std::string CgroupOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);  // the cgroup v2 line
  }
  return "";
}

TEST(Testbed, CgroupsHoldThePodsProcessesAndSocketsAndAreRemoved) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups");
  auto mount = FindCgroup2Mount();
  WEFT_SKIP_UNLESS_KERNEL_FEATURE(mount.ok(), mount.status());
  Options o;
  o.prefix = UniquePrefix("t");
  o.nodes = 1;
  o.pods = {{"a", 0}};
  o.cgroups = true;
  std::string mesh_cg;
  {
    auto tb = Testbed::Create(o);
    ASSERT_TRUE(tb.ok()) << tb.status();
    mesh_cg = (*tb)->MeshCgroup();
    EXPECT_EQ(mesh_cg, *mount + "/" + o.prefix);
    auto pod = (*tb)->Pod("a");
    ASSERT_TRUE(pod.ok());
    EXPECT_EQ(pod->cgroup, mesh_cg + "/a");
    struct stat st;
    ASSERT_EQ(::stat(pod->cgroup.c_str(), &st), 0);

    SpawnOptions so;
    so.cgroup = pod->cgroup;
    auto p = Spawn(pod->netns, {"sleep", "30"}, "", so);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(*mount + CgroupOf(p->pid()), pod->cgroup);

    // The socket comes from the pod's netns, and this process stays where it was.
    std::string mine = CgroupOf(::getpid());
    auto s = SocketInPod(*pod, AF_INET, SOCK_STREAM);
    ASSERT_TRUE(s.ok()) << s.status();
    auto ns = OpenNetns(NetnsPath(pod->netns));
    ASSERT_TRUE(ns.ok());
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    ASSERT_EQ(::getsockopt(s->get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len), 0);
    EXPECT_EQ(*NetnsCookie(ns->get()), cookie);
    EXPECT_EQ(CgroupOf(::getpid()), mine);
  }
  struct stat st;
  EXPECT_NE(::stat(mesh_cg.c_str(), &st), 0) << "the testbed's cgroup was left behind";
}

TEST(Testbed, SpawnPrivateMountsHostnameEnvAndCwd) {
  WEFT_SKIP_UNLESS_ROOT("network, mount and UTS namespaces");
  weft::testing::TempDir tmp;
  std::string hosts = tmp.Write("hosts", "10.1.2.3\tmy-service\n");
  std::string before = ReadFile("/etc/hosts").value_or("");
  char host_before[256] = {};
  ::gethostname(host_before, sizeof host_before - 1);
  SpawnOptions so;
  so.clear_env = true;
  so.env = {{"ONLY", "this"}, {"PATH", "/usr/bin:/bin"}};
  so.bind_mounts = {{hosts, "/etc/hosts"}};
  so.hostname = "pod-a";
  so.cwd = tmp.path();
  const std::string log = tmp.path() + "/out.log";
  auto p = Spawn("", {"/bin/sh", "-c", "cat /etc/hosts; hostname; env | sort; pwd"}, log, so);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->Wait(seconds(10)).ok());
  std::string out = ReadFile(log).value_or("");
  EXPECT_NE(out.find("10.1.2.3\tmy-service"), std::string::npos) << out;
  EXPECT_NE(out.find("pod-a\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ONLY=this"), std::string::npos) << out;
  EXPECT_EQ(out.find("HOME="), std::string::npos) << out;  // nothing of the parent's env
  EXPECT_NE(out.find(tmp.path()), std::string::npos) << out;
  // The host saw none of it.
  EXPECT_EQ(ReadFile("/etc/hosts").value_or(""), before);
  char host_after[256] = {};
  ::gethostname(host_after, sizeof host_after - 1);
  EXPECT_STREQ(host_before, host_after);
  // A bind source that does not exist is a clear error, not a half-started child.
  so.bind_mounts = {{tmp.path() + "/missing", "/etc/hosts"}};
  auto bad = Spawn("", {"true"}, "", so);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bind-mounting"), std::string::npos) << bad.status();
}

TEST(Testbed, RemoveTestbedAndLeftoversByPrefix) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups");
  Options o;
  o.prefix = UniquePrefix("t");
  o.nodes = 1;
  o.pods = {{"a", 0}};
  o.cgroups = FindCgroup2Mount().ok();
  auto tb = Testbed::Create(o);
  ASSERT_TRUE(tb.ok()) << tb.status();
  auto pod = (*tb)->Pod("a");
  ASSERT_TRUE(pod.ok());
  auto p = Spawn(pod->netns, {"sleep", "30"}, "");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(TestbedLeftovers(o.prefix).empty());
  // What a supervisor does when the owner of a testbed crashed: remove it by its prefix.
  auto removed = RemoveTestbed(o.prefix);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->size(), 3u);  // fabric, node, pod
  EXPECT_TRUE(TestbedLeftovers(o.prefix).empty());
  EXPECT_TRUE(p->Wait(seconds(5)).ok()) << "the pod's process was not killed";
  EXPECT_FALSE(RemoveTestbed("not-a-prefix").ok());
  EXPECT_EQ(PodAddress(1, 2).ToString(), "10.248.1.2");
  EXPECT_EQ(PodAddress6(1, 2).ToString(), "fd00:248:0:1::2");
  EXPECT_EQ(NodeAddress(0).ToString(), "10.249.0.1");
}

}  // namespace
}  // namespace weft::testbed
