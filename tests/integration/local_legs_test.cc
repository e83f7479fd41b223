// The sk_msg local legs (docs/fastpath.md, "The local legs of cross-node traffic") with real
// processes (root): a local mesh in eBPF capture whose agents run with WEFT_LOCAL_LEGS=on, a
// client pod on node 0 and an echo server on node 1. The client's socket and ztunnel's accepted
// socket move messages socket to socket; every byte arrives, and ztunnel's death ends the flow.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bpf/node.h"
#include "cli/localmesh/local_mesh.h"
#include "cli/testbed/testbed.h"
#include "common/cgroup.h"
#include "common/testing/kernel_features.h"
#include "common/testing/root.h"
#include "shared/capture.h"
#include "tests/support/local_mesh_fixture.h"
#include "tests/support/test_util.h"

namespace weft {
namespace {

using namespace std::chrono_literals;
using testing::EchoRoundTrip;
using testing::WaitClosed;

class LocalLegsMesh : public weft::testing::LocalMeshFixture<> {
 protected:
  virtual bool On() const { return true; }
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, eBPF");
    auto cg = FindCgroup2Mount();
    WEFT_SKIP_UNLESS_KERNEL_FEATURE(cg.ok(), "eBPF capture needs cgroup v2: " << cg.status());
    // Inherited by the agents the mesh starts (off: the default, as without the variable).
    ::setenv("WEFT_LOCAL_LEGS", On() ? "on" : "off", 1);
    localmesh::Options o;
    o.capture = "ebpf";
    o.nodes = 2;
    o.pods = {
        {.name = "client", .ns = "shop", .service_account = "frontend", .node = 0},
        {.name = "server",
         .ns = "shop",
         .service_account = "catalogue",
         .node = 1,
         .labels = {{"app", "catalogue"}}},
    };
    StartMesh(o, {});
    // The echo server's listener is created by a task in the server pod's cgroup, as a pod's
    // own server's is: its accepted sockets are then the pod's, which the sockops program sees
    // (the delivery leg joins them). The fixture's in-process servers are in the test's cgroup.
    auto pod = mesh_->testbed().Pod("server");
    ASSERT_TRUE(pod.ok()) << pod.status();
    auto sock = testbed::SocketInPod(*pod, AF_INET, SOCK_STREAM);
    ASSERT_TRUE(sock.ok()) << sock.status();
    servers_.push_back(std::make_unique<testing::EchoServer>(
        SockAddr{*IpAddr::Parse("0.0.0.0"), testing::kAppPort}, std::move(*sock)));
  }
  void TearDown() override { ::unsetenv("WEFT_LOCAL_LEGS"); }

  // App sockets that joined on `node`: outbound (the client's) or inbound (the server's
  // accepted socket of ztunnel's delivery leg).
  uint64_t Joined(int node = 0, int reason = WEFT_LOCAL_LEG_JOINED) {
    auto c = bpf::NodeCapture::ReadPinnedCounters(mesh_->BpfPinDir(node));
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return 0;
    auto it = c->outbound.find(reason);
    return it == c->outbound.end() ? 0 : it->second;
  }
  uint64_t DeliveryJoined() { return Joined(1, WEFT_LOCAL_LEG_INBOUND); }
};

// Waits for `what` on the non-blocking `fd`.
bool Wait(int fd, short what) {
  pollfd p{fd, what, 0};
  return ::poll(&p, 1, 5000) == 1;
}

bool SendAll(int fd, const std::string& s) {
  for (size_t off = 0; off < s.size();) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN && Wait(fd, POLLOUT)) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly n bytes (less on EOF, error or a 5 s silence).
std::string RecvN(int fd, size_t n) {
  std::string out;
  std::vector<char> buf(64 * 1024);
  while (out.size() < n) {
    ssize_t k = ::recv(fd, buf.data(), std::min(buf.size(), n - out.size()), 0);
    if (k < 0 && errno == EAGAIN && Wait(fd, POLLIN)) continue;
    if (k <= 0) break;
    out.append(buf.data(), static_cast<size_t>(k));
  }
  return out;
}

std::string Pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + seed + i / 4093) & 0xff);
  return s;
}

// Makes `fd` non-blocking and echoes `n` requests of 512 B on it (both legs joined by then where
// the local legs are on); false at the first that fails.
bool EchoRequests(int fd, unsigned n) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  for (unsigned i = 0; i < n; ++i) {
    std::string req = Pattern(512, i);
    if (!SendAll(fd, req) || RecvN(fd, req.size()) != req) return false;
  }
  return true;
}

TEST_F(LocalLegsMesh, CrossNodeRequestsTakeTheShortCutAndEveryByteArrives) {
  const uint64_t joined_before = Joined();
  const uint64_t delivery_before = DeliveryJoined();
  UniqueFd fd = DialFrom("client", App("server"));
  ASSERT_TRUE(fd);
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  // Request/response: 300 echoes of 1 KiB, then one of 4 MiB.
  for (unsigned i = 0; i < 300; ++i) {
    std::string req = Pattern(1024, i);
    ASSERT_TRUE(SendAll(fd.get(), req)) << i;
    ASSERT_EQ(RecvN(fd.get(), req.size()), req) << "echo " << i;
  }
  tcp_info ti{};
  socklen_t tl = sizeof(ti);
  ASSERT_EQ(::getsockopt(fd.get(), IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
  // Only the first request(s) went through the app's loopback TCP.
  EXPECT_LT(ti.tcpi_bytes_acked, 300u * 1024 / 10) << "the app's TCP carried the requests";
  EXPECT_EQ(Joined(), joined_before + 1);
  // The destination node's ztunnel announced its connection to the echo server: the server's
  // accepted socket joined too (the delivery leg).
  EXPECT_EQ(DeliveryJoined(), delivery_before + 1);
  std::string big = Pattern(4 << 20, 7);
  std::string echoed;
  std::thread reader([&] { echoed = RecvN(fd.get(), big.size()); });
  EXPECT_TRUE(SendAll(fd.get(), big));
  reader.join();
  EXPECT_TRUE(echoed == big) << "4 MiB echo came back " << echoed.size() << " bytes, or changed";
  // Half-close: the server's EOF comes back after the last byte.
  ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
  EXPECT_EQ(RecvN(fd.get(), 1), "");
}

TEST_F(LocalLegsMesh, ZtunnelKilledEndsTheAppsFlow) {
  UniqueFd fd = DialFrom("client", App("server"));
  ASSERT_TRUE(fd);
  ASSERT_TRUE(EchoRequests(fd.get(), 20));
  ASSERT_TRUE(mesh_->KillZtunnel(0).ok());
  // The app sees its flow end (EOF or reset) and can send no more.
  EXPECT_TRUE(Wait(fd.get(), POLLIN));
  char c;
  ssize_t n = ::recv(fd.get(), &c, 1, 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << std::strerror(errno);
  bool failed = false;
  for (int i = 0; i < 10 && !failed; ++i) failed = !SendAll(fd.get(), "after");
  EXPECT_TRUE(failed) << "the app could still send after ztunnel died";
}

// The destination's ztunnel dies: its delivery legs close, and the flow ends for the client.
TEST_F(LocalLegsMesh, DestinationZtunnelKilledEndsTheFlow) {
  UniqueFd fd = DialFrom("client", App("server"));
  ASSERT_TRUE(fd);
  ASSERT_TRUE(EchoRequests(fd.get(), 20));
  EXPECT_GE(DeliveryJoined(), 1u);
  ASSERT_TRUE(mesh_->KillZtunnel(1).ok());
  // No byte moves any more: the client's flow ends (EOF or reset), or at least never echoes.
  std::string after = Pattern(512, 99);
  bool sent = SendAll(fd.get(), after);
  EXPECT_TRUE(!sent || RecvN(fd.get(), after.size()) != after)
      << "an echo came back through a dead destination ztunnel";
  EXPECT_TRUE(WaitClosed(fd.get())) << "the client's flow must end";
}

// The destination's agent restarts: the joined flow keeps moving (the maps are pinned, the new
// sk_msg program replaces the old one), and a new connection joins the delivery leg again.
TEST_F(LocalLegsMesh, DestinationAgentRestartKeepsTheJoinedFlow) {
  UniqueFd fd = DialFrom("client", App("server"));
  ASSERT_TRUE(fd);
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  auto echo = [&](unsigned seed, size_t n) {
    std::string req = Pattern(n, seed);
    return SendAll(fd.get(), req) && RecvN(fd.get(), req.size()) == req;
  };
  ASSERT_TRUE(echo(1, 1024));
  const uint64_t delivery = DeliveryJoined();
  EXPECT_GE(delivery, 1u);
  const int before = mesh_->AgentSnapshotsSent(1);
  ASSERT_TRUE(mesh_->KillAgent(1).ok());
  EXPECT_TRUE(echo(2, 1024)) << "agent gone";
  ASSERT_TRUE(mesh_->StartAgent(1).ok());
  EXPECT_TRUE(testing::WaitFor([&] { return mesh_->AgentSnapshotsSent(1) > before; }))
      << mesh_->AgentLog(1);
  for (unsigned i = 0; i < 50; ++i) ASSERT_TRUE(echo(10 + i, 1024)) << "agent back, echo " << i;
  EXPECT_TRUE(echo(99, 1 << 20));
  UniqueFd fresh = DialFrom("client", App("server"));
  ASSERT_TRUE(fresh);
  EXPECT_EQ(EchoRoundTrip(fresh.get(), "new"), "new");
  EXPECT_EQ(DeliveryJoined(), delivery + 1) << "a new connection did not join after the restart";
}

// A policy that now denies the flow closes it at the destination, delivery leg included.
TEST_F(LocalLegsMesh, PolicyChangeClosesTheJoinedFlow) {
  UniqueFd fd = DialFrom("client", App("server"));
  ASSERT_TRUE(fd);
  ASSERT_EQ(EchoRoundTrip(fd.get(), "before"), "before");
  const uint64_t delivery = DeliveryJoined();
  EXPECT_GE(delivery, 1u);
  ASSERT_TRUE(mesh_
                  ->SetPolicies(R"(- name: deny-frontend
  namespace: shop
  selector: {matchLabels: {app: catalogue}}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/frontend"]}
)")
                  .ok());
  EXPECT_TRUE(WaitClosed(fd.get())) << "the open flow must close once denied";
  EXPECT_EQ(Metric(1, "weft_policy_reevaluation_closed_total"), 1);
  // A denied connection never reaches the app: no new delivery leg.
  auto denied = mesh_->Dial("client", App("server"), 5s);
  if (denied.ok()) EXPECT_NE(EchoRoundTrip(denied->get(), "denied", 2s), "denied");
  EXPECT_EQ(DeliveryJoined(), delivery);
}

// The default: no app socket joins, every byte takes the loopback TCP legs.
class LocalLegsOffMesh : public LocalLegsMesh {
 protected:
  bool On() const override { return false; }
};

TEST_F(LocalLegsOffMesh, OffMeansLoopbackTcp) {
  UniqueFd fd = DialFrom("client", App("server"));
  ASSERT_TRUE(fd);
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  for (unsigned i = 0; i < 50; ++i) {
    std::string req = Pattern(1024, i);
    ASSERT_TRUE(SendAll(fd.get(), req));
    ASSERT_EQ(RecvN(fd.get(), req.size()), req);
  }
  tcp_info ti{};
  socklen_t tl = sizeof(ti);
  ASSERT_EQ(::getsockopt(fd.get(), IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
  EXPECT_GE(ti.tcpi_bytes_acked, 50u * 1024);
  EXPECT_EQ(Joined(), 0u);
  EXPECT_EQ(DeliveryJoined(), 0u);
}

}  // namespace
}  // namespace weft
