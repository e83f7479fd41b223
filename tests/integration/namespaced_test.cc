// "Namespaced" integration tests (root): nodes and pods are network namespaces, ztunnel and
// weft-agent run as real processes on each node, capture is the in-pod iptables REDIRECT, and
// real clients and servers talk across a veth fabric. Skips with a reason when not root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "cli/localmesh/local_mesh.h"
#include "common/scrape/scrape.h"
#include "tests/support/test_util.h"

namespace weft {
namespace {

using namespace std::chrono_literals;
using localmesh::LocalMesh;
using weft::testing::EchoRoundTrip;
using weft::testing::EchoServer;
using weft::testing::WaitClosed;
using weft::testing::WaitFor;

constexpr uint16_t kAppPort = 8080;

class NamespacedMesh : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, iptables, SO_MARK)";
    if (system("command -v iptables-restore >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "iptables-restore is not installed";
    localmesh::Options o;
    o.nodes = 2;
    o.pods = {
        {.name = "client",
         .ns = "shop",
         .service_account = "frontend",
         .node = 0,
         .labels = {{"app", "frontend"}}},
        {.name = "server",
         .ns = "shop",
         .service_account = "catalogue",
         .node = 1,
         .labels = {{"app", "catalogue"}}},
        {.name = "legacy", .ns = "legacy", .service_account = "legacy", .node = 0, .mesh = false},
        {.name = "outside", .ns = "ext", .service_account = "ext", .node = 1, .mesh = false},
    };
    o.services = {{.name = "catalogue",
                   .ns = "shop",
                   .vip = "10.96.0.20",
                   .port = 80,
                   .target_port = kAppPort,
                   .pods = {"server"}}};
    o.ztunnel_bin = WEFT_ZTUNNEL_BIN;
    o.agent_bin = WEFT_AGENT_BIN;
    o.work_dir = dir_.path();
    auto m = LocalMesh::Start(o);
    ASSERT_TRUE(m.ok()) << m.status();
    mesh_ = std::move(*m);
    for (const char* pod : {"server", "outside"}) {
      auto ns = mesh_->PodNetns(pod);
      ASSERT_TRUE(ns.ok());
      servers_.push_back(
          std::make_unique<EchoServer>(SockAddr{*IpAddr::Parse("0.0.0.0"), kAppPort}, ns->get()));
    }
  }

  UniqueFd DialFrom(const std::string& pod, const SockAddr& to) {
    auto ns = mesh_->PodNetns(pod);
    EXPECT_TRUE(ns.ok());
    auto fd = weft::testing::Dial(to, ns->get(), 5s);
    EXPECT_TRUE(fd.ok()) << fd.status();
    return fd.ok() ? std::move(*fd) : UniqueFd();
  }
  SockAddr App(const std::string& pod) { return SockAddr{*mesh_->PodIp(pod), kAppPort}; }
  double Metric(int node, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
    auto m = mesh_->Metrics(node);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? MetricSum(*m, name, labels) : -1;
  }
  static std::string Secret() {
    std::mt19937_64 rng(std::random_device{}());
    return "WEFT-SECRET-" + std::to_string(rng());
  }

  weft::testing::TempDir dir_;
  std::unique_ptr<LocalMesh> mesh_;
  std::vector<std::unique_ptr<EchoServer>> servers_;
};

TEST_F(NamespacedMesh, CrossNodeTrafficIsMutualTlsOnTheWireWithIstioMetrics) {
  auto node0 = mesh_->testbed().NodeNetns(0);
  ASSERT_TRUE(node0.ok());
  auto cap = testbed::StartCapture(*node0, "eth0", dir_.path() + "/fabric.pcap", "tcp");
  ASSERT_TRUE(cap.ok()) << cap.status();
  std::string secret = Secret();
  {
    auto fd = DialFrom("client", App("server"));
    ASSERT_EQ(EchoRoundTrip(fd.get(), secret), secret);
  }
  ASSERT_TRUE(cap->Stop().ok());
  auto leaked = testbed::PcapContains(cap->pcap_path(), secret);
  ASSERT_TRUE(leaked.ok());
  EXPECT_FALSE(*leaked) << "the payload crossed the node boundary in clear text";
  auto stats = testbed::PcapSummary(cap->pcap_path(), {15008});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->tls_handshake_records, 0) << "expected a TLS handshake on port 15008";
  EXPECT_GT(stats->tls_app_data_records, 0);

  const std::map<std::string, std::string> labels = {
      {"source_workload", "client"},
      {"source_workload_namespace", "shop"},
      {"source_principal", "spiffe://cluster.local/ns/shop/sa/frontend"},
      {"destination_workload", "server"},
      {"destination_principal", "spiffe://cluster.local/ns/shop/sa/catalogue"},
      {"connection_security_policy", "mutual_tls"}};
  auto src = labels, dst = labels;
  src["reporter"] = "source";
  dst["reporter"] = "destination";
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "istio_tcp_connections_closed_total", src) == 1 &&
           Metric(1, "istio_tcp_connections_closed_total", dst) == 1;
  })) << *mesh_->Metrics(0)
      << *mesh_->Metrics(1);
  EXPECT_EQ(Metric(0, "istio_tcp_sent_bytes_total", src), secret.size());
  EXPECT_EQ(Metric(1, "istio_tcp_received_bytes_total", dst), secret.size());
}

TEST_F(NamespacedMesh, Ipv6TrafficIsTunnelledToo) {
  auto ip6 = mesh_->testbed().PodIp6("server");
  ASSERT_TRUE(ip6.ok()) << ip6.status();
  auto ns = mesh_->PodNetns("server");
  ASSERT_TRUE(ns.ok());
  EchoServer v6(SockAddr{*IpAddr::Parse("::"), kAppPort + 1}, ns->get());
  auto fd = DialFrom("client", SockAddr{*ip6, kAppPort + 1});
  EXPECT_EQ(EchoRoundTrip(fd.get(), "over ipv6"), "over ipv6");
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(1, "istio_tcp_connections_closed_total",
                  {{"reporter", "destination"},
                   {"source_principal", "spiffe://cluster.local/ns/shop/sa/frontend"},
                   {"connection_security_policy", "mutual_tls"}}) == 1;
  })) << "the IPv6 connection must arrive over HBONE with the client's identity";
}

TEST_F(NamespacedMesh, ServiceVipIsResolvedByZtunnel) {
  auto fd = DialFrom("client", *SockAddr::Parse("10.96.0.20:80"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "via vip"), "via vip");
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "istio_tcp_connections_closed_total",
                  {{"destination_service", "catalogue.shop.svc.cluster.local"},
                   {"destination_workload", "server"}}) == 1;
  }));
}

TEST_F(NamespacedMesh, PoliciesAllowAndDenyAcrossNodes) {
  ASSERT_TRUE(mesh_
                  ->SetPolicies(R"(- name: only-frontend
  namespace: shop
  selector: {matchLabels: {app: catalogue}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/frontend"]}
)")
                  .ok());
  auto ok = DialFrom("client", App("server"));
  EXPECT_EQ(EchoRoundTrip(ok.get(), "allowed"), "allowed");
  // The plaintext legacy pod has no identity: not allowed by the principal rule.
  auto legacy = DialFrom("legacy", App("server"));
  EXPECT_NE(EchoRoundTrip(legacy.get(), "nope", 2s), "nope");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(1, "weft_policy_denials_total", {{"reason", "no_allow_match"}}) >= 1;
  }));

  ASSERT_TRUE(mesh_
                  ->SetPolicies(R"(- name: deny-frontend
  namespace: shop
  action: DENY
  rules:
  - from:
    - source: {namespaces: ["shop"]}
)")
                  .ok());
  EXPECT_TRUE(WaitClosed(ok.get())) << "open connection must close once denied";
  auto denied = DialFrom("client", App("server"));
  EXPECT_NE(EchoRoundTrip(denied.get(), "denied", 2s), "denied");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(1, "weft_policy_denials_total", {{"policy", "shop/deny-frontend"}}) >= 1;
  }));
}

TEST_F(NamespacedMesh, StrictPeerAuthenticationRefusesPlaintextFromOutsideTheMesh) {
  {
    auto fd = DialFrom("legacy", App("server"));
    EXPECT_EQ(EchoRoundTrip(fd.get(), "permissive"), "permissive");
  }
  ASSERT_TRUE(mesh_
                  ->SetPolicies("", R"(- name: strict
  namespace: shop
  mtls: {mode: STRICT}
)")
                  .ok());
  auto fd = DialFrom("legacy", App("server"));
  EXPECT_NE(EchoRoundTrip(fd.get(), "strict", 2s), "strict");
  EXPECT_EQ(Metric(1, "weft_policy_denials_total", {{"reason", "strict_mtls"}}), 1);
  auto meshed = DialFrom("client", App("server"));
  EXPECT_EQ(EchoRoundTrip(meshed.get(), "mtls ok"), "mtls ok");
}

TEST_F(NamespacedMesh, PassthroughToAPodOutsideTheMesh) {
  auto fd = DialFrom("client", App("outside"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "outside"), "outside");
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "istio_tcp_connections_closed_total",
                  {{"reporter", "source"}, {"destination_workload", "outside"}}) == 1;
  }));
}

TEST_F(NamespacedMesh, ZtunnelDownMeansNoTrafficAndNoPlaintext) {
  auto node0 = mesh_->testbed().NodeNetns(0);
  ASSERT_TRUE(node0.ok());
  ASSERT_TRUE(mesh_->KillZtunnel(0).ok());
  auto cap = testbed::StartCapture(*node0, "eth0", dir_.path() + "/down.pcap", "tcp");
  ASSERT_TRUE(cap.ok()) << cap.status();
  std::string secret = Secret();
  auto ns = mesh_->PodNetns("client");
  ASSERT_TRUE(ns.ok());
  auto fd = weft::testing::Dial(App("server"), ns->get(), 2s);
  if (fd.ok()) {
    EXPECT_NE(EchoRoundTrip(fd->get(), secret, 1s), secret);
  }
  ASSERT_TRUE(cap->Stop().ok());
  EXPECT_FALSE(*testbed::PcapContains(cap->pcap_path(), secret))
      << "with ztunnel down an enrolled pod's bytes left the node in clear text";
  // Restart: traffic resumes with no manual step (the agent replays the pods).
  ASSERT_TRUE(mesh_->StartZtunnel(0).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto c = weft::testing::Dial(App("server"), ns->get(), 1s);
        return c.ok() && EchoRoundTrip(c->get(), "back", 1s) == "back";
      },
      20s));
}

}  // namespace
}  // namespace weft
