// "Namespaced" integration tests (root): nodes and pods are network namespaces, ztunnel and
// weft-agent run as real processes on each node, and real clients and servers talk across a
// veth fabric. Every test runs twice: with the in-pod iptables REDIRECT capture and with the
// eBPF capture (cgroup connect hooks + sk_lookup). Skips with a reason when not root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <random>

#include "absl/strings/match.h"
#include "cli/localmesh/local_mesh.h"
#include "common/cgroup.h"
#include "common/scrape/scrape.h"
#include "common/testing/kernel_features.h"
#include "common/testing/root.h"
#include "tests/support/local_mesh_fixture.h"
#include "tests/support/test_util.h"

namespace weft {
namespace {

using namespace std::chrono_literals;
using localmesh::LocalMesh;
using weft::testing::EchoRoundTrip;
using weft::testing::EchoServer;
using weft::testing::WaitClosed;
using weft::testing::WaitFor;

using weft::testing::kAppPort;

class NamespacedMesh
    : public weft::testing::LocalMeshFixture<::testing::TestWithParam<std::string>> {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, iptables, SO_MARK");
    if (GetParam() == "iptables" && system("command -v iptables-restore >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "iptables-restore is not installed";
    if (GetParam() == "ebpf") {
      auto cg = FindCgroup2Mount();
      WEFT_SKIP_UNLESS_KERNEL_FEATURE(cg.ok(), "eBPF capture needs cgroup v2: " << cg.status());
    }
    localmesh::Options o;
    o.capture = GetParam();
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
                   .pods = {"server"}},
                  // Service port 8080 to the pods' 8081: a policy on 8080 is not about it.
                  {.name = "catalogue-admin",
                   .ns = "shop",
                   .vip = "10.96.0.21",
                   .port = kAppPort,
                   .target_port = kAppPort + 1,
                   .pods = {"server"}}};
    StartMesh(o, {"server", "outside"});
  }

  // Sockets of `pod`'s sk_lookup links pinned by node `node`'s agent (eBPF mode).
  int PinnedLookupLinks(int node) {
    int n = 0;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(mesh_->BpfPinDir(node) + "/links", ec)) {
      if (e.path().filename().string().rfind("sk_lookup_", 0) == 0) ++n;
    }
    return n;
  }
  static std::string Secret() {
    std::mt19937_64 rng(std::random_device{}());
    return "WEFT-SECRET-" + std::to_string(rng());
  }
};

TEST_P(NamespacedMesh, CrossNodeTrafficIsMutualTlsOnTheWireWithIstioMetrics) {
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

TEST_P(NamespacedMesh, Ipv6TrafficIsTunnelledToo) {
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

TEST_P(NamespacedMesh, ServiceVipIsResolvedByZtunnel) {
  auto fd = DialFrom("client", *SockAddr::Parse("10.96.0.20:80"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "via vip"), "via vip");
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "istio_tcp_connections_closed_total",
                  {{"destination_service", "catalogue.shop.svc.cluster.local"},
                   {"destination_workload", "server"}}) == 1;
  }));
}

TEST_P(NamespacedMesh, PoliciesAllowAndDenyAcrossNodes) {
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
  if (GetParam() == "ebpf") {
    // Deny at connect: node 0 knows this DENY (it applies to its client pod too) and the
    // client's identity, so the connect fails in the pod; counted there, outbound.
    EXPECT_TRUE(WaitFor([&] { return Metric(0, "weft_connect_deny_entries") > 0; }));
    auto denied = mesh_->Dial("client", App("server"), 2s);
    EXPECT_FALSE(denied.ok());
    EXPECT_TRUE(WaitFor([&] {
      return Metric(0, "weft_policy_denials_total",
                    {{"policy", "shop/deny-frontend"}, {"direction", "outbound"}}) >= 1;
    }));
    return;
  }
  auto denied = DialFrom("client", App("server"));
  EXPECT_NE(EchoRoundTrip(denied.get(), "denied", 2s), "denied");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(1, "weft_policy_denials_total", {{"policy", "shop/deny-frontend"}}) >= 1;
  }));
}

// Deny at connect (issue 16 §5, docs/security.md): with eBPF capture a connect the destination's
// policy certainly denies fails at once in the source pod with EACCES; no HBONE stream, nothing
// at the destination; counted on the source node with the destination's policy label. Other
// ports still work, and a policy change that allows it applies to the next connect. With
// iptables capture the destination denies it, as it always did.
TEST_P(NamespacedMesh, DenyAtConnectFailsInTheSourcePodAndNeverReachesTheDestination) {
  auto ns = mesh_->PodNetns("server");
  ASSERT_TRUE(ns.ok());
  EchoServer other_port(SockAddr{*IpAddr::Parse("0.0.0.0"), kAppPort + 1}, ns->get());
  const SockAddr other{*mesh_->PodIp("server"), kAppPort + 1};
  {
    auto fd = DialFrom("client", App("server"));
    ASSERT_EQ(EchoRoundTrip(fd.get(), "before"), "before");
  }
  // Namespace-wide, so it applies to the client's node too (a node's view holds the policies
  // of its own pods): the source node can be certain.
  ASSERT_TRUE(mesh_
                  ->SetPolicies(R"(- name: no-app-port
  namespace: shop
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/frontend"]}
    to:
    - operation: {ports: ["8080"]}
)")
                  .ok());
  if (GetParam() != "ebpf") {
    // iptables capture has no connect hook: the connect reaches ztunnel and the destination
    // denies it, as before; nothing is counted on the source side.
    auto fd = DialFrom("client", App("server"));
    EXPECT_NE(EchoRoundTrip(fd.get(), "denied", 2s), "denied");
    EXPECT_TRUE(WaitFor([&] {
      return Metric(1, "weft_policy_denials_total", {{"policy", "shop/no-app-port"}}) >= 1;
    })) << *mesh_->Metrics(1);
    EXPECT_EQ(Metric(0, "weft_policy_denials_total", {{"direction", "outbound"}}), 0);
    EXPECT_EQ(Metric(0, "weft_connect_deny_entries"), 0);
    return;
  }
  ASSERT_TRUE(WaitFor([&] { return Metric(0, "weft_connect_deny_entries") > 0; }))
      << *mesh_->Metrics(0);
  const std::map<std::string, std::string> dst = {{"reporter", "destination"}};
  const std::map<std::string, std::string> src = {{"reporter", "source"},
                                                  {"destination_workload", "server"}};
  WaitFor([&] { return Metric(1, "istio_tcp_connections_closed_total", dst) >= 1; });
  const double dst_opened = Metric(1, "istio_tcp_connections_opened_total", dst);
  const double src_opened = Metric(0, "istio_tcp_connections_opened_total", src);
  const double dst_denials = Metric(1, "weft_policy_denials_total");

  const auto t0 = std::chrono::steady_clock::now();
  auto denied = mesh_->Dial("client", App("server"), 2s);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(denied.ok()) << "a connect the destination's policy denies was let through";
  EXPECT_TRUE(absl::StrContains(denied.status().message(), "Permission denied") ||
              absl::StrContains(denied.status().message(), "Operation not permitted"))
      << denied.status();
  EXPECT_LT(took, 1s) << "the connect must fail at once, not after a round trip";
  // The Service VIP in front of it: its port 80 reaches the pod's 8080, which every endpoint (the
  // one) denies, so the connect to the VIP fails in the pod too (the connect program sees the
  // VIP: ztunnel would pick the endpoint after the redirect).
  const auto t1 = std::chrono::steady_clock::now();
  auto vip_denied = mesh_->Dial("client", *SockAddr::Parse("10.96.0.20:80"), 2s);
  const auto vip_took = std::chrono::steady_clock::now() - t1;
  ASSERT_FALSE(vip_denied.ok()) << "a connect to a VIP every endpoint denies was let through";
  EXPECT_TRUE(absl::StrContains(vip_denied.status().message(), "Permission denied") ||
              absl::StrContains(vip_denied.status().message(), "Operation not permitted"))
      << vip_denied.status();
  EXPECT_LT(vip_took, 1s) << "the connect to the VIP must fail at once";
  EXPECT_TRUE(WaitFor([&] {
    return Metric(
               0, "weft_policy_denials_total",
               {{"policy", "shop/no-app-port"}, {"direction", "outbound"}, {"reason", "deny"}}) ==
           2;
  })) << *mesh_->Metrics(0);
  // Nothing left the pod: neither ztunnel opened anything for it, the destination saw nothing.
  EXPECT_EQ(Metric(0, "istio_tcp_connections_opened_total", src), src_opened);
  EXPECT_EQ(Metric(1, "istio_tcp_connections_opened_total", dst), dst_opened);
  EXPECT_EQ(Metric(1, "weft_policy_denials_total"), dst_denials);

  // Another port of the same pod is not denied, directly or through the VIP whose service port
  // is 8080 but whose target port is not.
  {
    auto fd = DialFrom("client", other);
    EXPECT_EQ(EchoRoundTrip(fd.get(), "other port"), "other port");
  }
  {
    auto fd = DialFrom("client", *SockAddr::Parse("10.96.0.21:" + std::to_string(kAppPort)));
    EXPECT_EQ(EchoRoundTrip(fd.get(), "allowed vip"), "allowed vip");
  }
  // The policy goes: the next connect goes through.
  ASSERT_TRUE(mesh_->SetPolicies("").ok());
  ASSERT_TRUE(WaitFor([&] { return Metric(0, "weft_connect_deny_entries") == 0; }));
  auto fd = DialFrom("client", App("server"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "allowed again"), "allowed again");
}

TEST_P(NamespacedMesh, StrictPeerAuthenticationRefusesPlaintextFromOutsideTheMesh) {
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

TEST_P(NamespacedMesh, PassthroughToAPodOutsideTheMesh) {
  auto fd = DialFrom("client", App("outside"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "outside"), "outside");
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "istio_tcp_connections_closed_total",
                  {{"reporter", "source"}, {"destination_workload", "outside"}}) == 1;
  }));
}

TEST_P(NamespacedMesh, ZtunnelDownMeansNoTrafficAndNoPlaintext) {
  auto node0 = mesh_->testbed().NodeNetns(0);
  ASSERT_TRUE(node0.ok());
  auto client_ns = mesh_->PodNetns("client");
  ASSERT_TRUE(client_ns.ok());
  EchoServer client_app(SockAddr{*IpAddr::Parse("0.0.0.0"), kAppPort}, client_ns->get());
  ASSERT_TRUE(mesh_->KillZtunnel(0).ok());
  auto cap = testbed::StartCapture(*node0, "eth0", dir_.path() + "/down.pcap", "tcp");
  ASSERT_TRUE(cap.ok()) << cap.status();
  std::string secret = Secret();

  // Outbound: the enrolled pod's new connects fail at once (nothing listens where capture
  // sends them), they do not hang and do not go out directly.
  auto t0 = std::chrono::steady_clock::now();
  auto fd = mesh_->Dial("client", App("server"), 2s);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(fd.ok()) << "an enrolled pod connected with its ztunnel down";
  EXPECT_LT(took, 1s) << "the connect should fail immediately, not time out";
  if (fd.ok()) {
    EXPECT_NE(EchoRoundTrip(fd->get(), secret, 1s), secret);
  }
  // Inbound: a SYN from outside the mesh to the enrolled pod never reaches its app.
  int accepted_before = client_app.accepted();
  auto in = mesh_->Dial("outside", SockAddr{*mesh_->PodIp("client"), kAppPort}, 2s);
  if (in.ok()) {
    EXPECT_NE(EchoRoundTrip(in->get(), secret, 1s), secret);
  }
  EXPECT_EQ(client_app.accepted(), accepted_before)
      << "with ztunnel down a plaintext connection reached the enrolled pod's app";

  ASSERT_TRUE(cap->Stop().ok());
  EXPECT_FALSE(*testbed::PcapContains(cap->pcap_path(), secret))
      << "with ztunnel down an enrolled pod's bytes left the node in clear text";
  // Restart: traffic resumes with no manual step (the agent replays the pods).
  ASSERT_TRUE(mesh_->StartZtunnel(0).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto c = mesh_->Dial("client", App("server"), 1s);
        return c.ok() && EchoRoundTrip(c->get(), "back", 1s) == "back";
      },
      20s));
}

TEST_P(NamespacedMesh, AgentDownTrafficFlowsAndItsRestartDuplicatesNothing) {
  auto open = DialFrom("client", App("server"));
  ASSERT_EQ(EchoRoundTrip(open.get(), "before"), "before");
  ASSERT_TRUE(mesh_->KillAgent(0).ok());
  // The capture stays (pinned programs / in-pod rules): open and new connections keep flowing
  // through ztunnel.
  EXPECT_EQ(EchoRoundTrip(open.get(), "agent gone"), "agent gone");
  {
    auto fd = DialFrom("client", App("server"));
    EXPECT_EQ(EchoRoundTrip(fd.get(), "new while gone"), "new while gone");
  }
  auto snapshots = [&] { return mesh_->AgentSnapshotsSent(0); };
  int before = snapshots();
  ASSERT_TRUE(mesh_->StartAgent(0).ok());
  EXPECT_TRUE(WaitFor([&] { return snapshots() > before; }, 10s)) << mesh_->AgentLog(0);
  EXPECT_EQ(EchoRoundTrip(open.get(), "agent back"), "agent back");
  auto fd = DialFrom("client", App("server"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "after"), "after");
  // Nothing duplicated: still one enrolled pod on node 0 (client; legacy is not in the mesh).
  EXPECT_EQ(Metric(0, "weft_enrolled_pods"), 1) << *mesh_->Metrics(0);
  if (mesh_->ebpf()) {
    EXPECT_EQ(PinnedLookupLinks(0), 1);
  }
}

TEST_P(NamespacedMesh, UnenrolledPodOnTheSameNodeIsNeverTouched) {
  // legacy shares node 0 with the enrolled client; outside (node 1) is not in the mesh either.
  auto fd = DialFrom("legacy", App("outside"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "plain"), "plain");
  fd.reset();
  EXPECT_EQ(Metric(0, "istio_tcp_connections_opened_total", {{"source_workload", "legacy"}}), 0)
      << "ztunnel handled a connection of a pod outside the mesh";
  EXPECT_EQ(Metric(1, "istio_tcp_connections_opened_total", {{"destination_workload", "outside"}}),
            0);
}

TEST_P(NamespacedMesh, UnenrolLiveLeavesNothingBehindAndEnrolAgainCapturesAgain) {
  auto plain_now = [&] {
    // Plain connections from the client reach the server's app without ztunnel on node 0.
    return Metric(0, "istio_tcp_connections_opened_total", {{"source_workload", "client"}});
  };
  {
    auto fd = DialFrom("client", App("server"));
    ASSERT_EQ(EchoRoundTrip(fd.get(), "meshed"), "meshed");
  }
  double meshed = plain_now();
  EXPECT_GE(meshed, 1);

  ASSERT_TRUE(mesh_->SetMesh("client", false).ok());
  auto client_ns = mesh_->testbed().PodNetns("client");
  ASSERT_TRUE(client_ns.ok());
  // The agent applies the change from the same file: wait until the capture is gone.
  auto clean = [&] {
    auto rules = testbed::Exec(*client_ns, {"iptables-save"});
    // Only the drain rule (WEFT_INPOD_DRAIN, redirects nothing) may stay.
    bool no_rules = rules.ok() && rules->find("WEFT_INPOD_OUTPUT") == std::string::npos &&
                    rules->find("WEFT_INPOD_PREROUTING") == std::string::npos &&
                    rules->find("REDIRECT") == std::string::npos;
    return no_rules && (!mesh_->ebpf() || PinnedLookupLinks(0) == 0);
  };
  EXPECT_TRUE(WaitFor(clean, 10s)) << mesh_->AgentLog(0);
  {
    auto fd = DialFrom("client", App("server"));
    EXPECT_EQ(EchoRoundTrip(fd.get(), "plain"), "plain");
  }
  EXPECT_EQ(plain_now(), meshed) << "an unenrolled pod's connection went through ztunnel";

  ASSERT_TRUE(mesh_->SetMesh("client", true).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto fd = mesh_->Dial("client", App("server"), 1s);
        if (!fd.ok() || EchoRoundTrip(fd->get(), "again", 1s) != "again") return false;
        return plain_now() > meshed;
      },
      15s))
      << mesh_->AgentLog(0);
}

INSTANTIATE_TEST_SUITE_P(Capture, NamespacedMesh, ::testing::Values("iptables", "ebpf"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace weft
