// Control-plane integration (root): weftd (local manifest source) in node 0's netns, a ztunnel
// and an agent per node using only the config stream and CA-issued certificates (no mesh.yaml,
// no certificate files), real traffic between pods in namespaces.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cli/localmesh/local_mesh.h"
#include "common/scrape/scrape.h"
#include "common/testing/root.h"
#include "nlohmann/json.hpp"
#include "tests/support/local_mesh_fixture.h"
#include "tests/support/test_util.h"

namespace weft {
namespace {

using namespace std::chrono_literals;
using localmesh::LocalMesh;
using weft::HttpGet;
using weft::testing::EchoRoundTrip;
using weft::testing::EchoServer;
using weft::testing::WaitClosed;
using weft::testing::WaitFor;

using weft::testing::kAppPort;

class ControlPlaneMesh : public weft::testing::LocalMeshFixture<> {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, iptables, SO_MARK");
    if (system("command -v iptables-restore >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "iptables-restore is not installed";
    localmesh::Options o;
    o.nodes = 2;
    o.pods = {
        {.name = "client", .ns = "shop", .service_account = "frontend", .node = 0},
        {.name = "server",
         .ns = "shop",
         .service_account = "catalogue",
         .node = 1,
         .labels = {{"app", "catalogue"}}},
        {.name = "legacy", .ns = "legacy", .service_account = "legacy", .node = 0, .mesh = false},
    };
    o.control_plane = true;
    o.capture = "iptables";
    StartMesh(o, {"server"});
  }

  using LocalMeshFixture::App;
  SockAddr App() { return App("server"); }
  bool RoundTrip(const std::string& msg, std::chrono::milliseconds timeout = 3s) {
    auto fd = mesh_->Dial("client", App(), timeout);
    return fd.ok() && EchoRoundTrip(fd->get(), msg, timeout) == msg;
  }
  // Runs weftctl inside node 0's netns (where weftd's admin endpoint is).
  std::string Weftctl(std::vector<std::string> args) {
    auto ns = mesh_->testbed().NodeNetns(0);
    auto ip = mesh_->testbed().NodeIp(0);
    EXPECT_TRUE(ns.ok() && ip.ok());
    args.insert(args.begin(), WEFT_WEFTCTL_BIN);
    args.insert(args.end(), {"--weftd", ip->ToString() + ":15010"});
    auto out = testbed::Exec(*ns, args);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }
  nlohmann::json Status() {
    auto s = mesh_->WeftdStatus();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? nlohmann::json::parse(*s, nullptr, false) : nlohmann::json();
  }
};

TEST_F(ControlPlaneMesh, TrafficUsesOnlyStreamedConfigAndCaIssuedCertificates) {
  EXPECT_TRUE(WaitFor([&] { return RoundTrip("streamed"); }, 15s))
      << mesh_->ZtunnelLog(0) << mesh_->WeftdLog();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(1, "istio_tcp_connections_opened_total",
                  {{"reporter", "destination"},
                   {"source_principal", "spiffe://cluster.local/ns/shop/sa/frontend"},
                   {"connection_security_policy", "mutual_tls"}}) >= 1;
  })) << *mesh_->Metrics(1);
  // No certificate files were handed out: the workload certificates came from weftd's CA.
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/certs/shop/frontend"));
  auto st = Status();
  int connected = 0;
  for (const auto& s : st["streams"]) connected += s.value("connected", false) ? 1 : 0;
  EXPECT_EQ(connected, 4) << st.dump(2);  // a ztunnel and an agent per node
  EXPECT_GE(st["ca"].value("issued", 0.0), 2.0) << st.dump(2);

  // The CA's record of what it issued: the workload certificates with their expiries.
  bool frontend_cert = false;
  for (const auto& c : st["ca"]["certificates"]) {
    frontend_cert |= c.value("identity", "") == "spiffe://cluster.local/ns/shop/sa/frontend" &&
                     !c.value("not_after", "").empty();
  }
  EXPECT_TRUE(frontend_cert) << st.dump(2);

  std::string table = Weftctl({"status"});
  EXPECT_NE(table.find("node1"), std::string::npos) << table;
  EXPECT_NE(table.find("ztunnel"), std::string::npos) << table;
  EXPECT_NE(table.find("REJECTED OBJECTS\n  none"), std::string::npos) << table;
  EXPECT_NE(table.find("CERTIFICATES (the newest issued per node and identity)"), std::string::npos)
      << table;
  EXPECT_NE(table.find("spiffe://cluster.local/ns/shop/sa/frontend"), std::string::npos) << table;
  EXPECT_EQ(table.find("EXPIRED"), std::string::npos) << table;
  std::string dump = Weftctl({"config-dump", "node1"});
  auto view = nlohmann::json::parse(dump, nullptr, false);
  ASSERT_FALSE(view.is_discarded()) << dump;
  bool has_server = false;
  for (const auto& w : view["workloads"]) has_server |= w.value("name", "") == "server";
  EXPECT_TRUE(has_server) << dump;
}

TEST_F(ControlPlaneMesh, PolicyChangesArriveLiveAndSurviveAWeftdRestart) {
  ASSERT_TRUE(WaitFor([&] { return RoundTrip("before"); }, 15s));
  auto open = mesh_->Dial("client", App(), 3s);
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(EchoRoundTrip(open->get(), "open"), "open");

  // weftd gone: the nodes keep their last good config and certificates.
  ASSERT_TRUE(mesh_->KillWeftd().ok());
  EXPECT_TRUE(RoundTrip("weftd down")) << "traffic must keep flowing while weftd is away";
  EXPECT_EQ(EchoRoundTrip(open->get(), "still open"), "still open");

  ASSERT_TRUE(mesh_->StartWeftd().ok());
  ASSERT_TRUE(mesh_
                  ->SetPolicies(R"(- name: deny-frontend
  namespace: shop
  selector: {matchLabels: {app: catalogue}}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/frontend"]}
)")
                  .ok())
      << mesh_->WeftdLog();
  EXPECT_TRUE(WaitClosed(open->get())) << "the open connection must close once denied";
  EXPECT_FALSE(RoundTrip("denied", 2s));
  EXPECT_GE(Metric(1, "weft_policy_denials_total", {{"policy", "shop/deny-frontend"}}), 1);

  ASSERT_TRUE(mesh_->SetPolicies("").ok());
  EXPECT_TRUE(WaitFor([&] { return RoundTrip("allowed again"); }, 10s));
}

// A policy of `action` for the catalogue whose only rule (from frontend) also needs
// connection.sni, a key ztunnel cannot evaluate.
std::string SniOnlyPolicy(const std::string& action) {
  return absl::StrCat(R"(- name: sni-only
  namespace: shop
  selector: {matchLabels: {app: catalogue}}
  action: )",
                      action, R"(
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/frontend"]}
    when:
    - {key: connection.sni, values: [catalogue.shop]}
)");
}

// Issue 13, hole 2: weftd used to leave a policy it rejected out of the config, so a rejected
// ALLOW left its workloads allow-all. Now it is enforced fail-closed and reported.
TEST_F(ControlPlaneMesh, ARejectedPolicyFailsClosedAndIsReportedAndCounted) {
  ASSERT_TRUE(WaitFor([&] { return RoundTrip("before"); }, 15s));
  const double denials_before = Metric(1, "weft_policy_denials_total");
  // An ALLOW for the catalogue whose only rule needs an attribute ztunnel cannot evaluate.
  ASSERT_TRUE(mesh_->SetPolicies(SniOnlyPolicy("ALLOW")).ok()) << mesh_->WeftdLog();
  EXPECT_TRUE(WaitFor([&] { return !RoundTrip("refused", 2s); }, 10s))
      << "an ALLOW with no usable rule must allow nothing";
  EXPECT_GT(Metric(1, "weft_policy_denials_total"), denials_before) << *mesh_->Metrics(1);

  auto st = Status();
  ASSERT_EQ(st["rejected"].size(), 1u) << st.dump(2);
  EXPECT_EQ(st["rejected"][0]["name"], "sni-only");
  EXPECT_NE(st["rejected"][0]["reason"].get<std::string>().find("connection.sni"),
            std::string::npos)
      << st.dump(2);
  EXPECT_NE(st["rejected"][0].value("effect", "").find("allows nothing"), std::string::npos)
      << st.dump(2);
  std::string table = Weftctl({"status"});
  EXPECT_NE(table.find("AuthorizationPolicy shop/sni-only"), std::string::npos) << table;
  EXPECT_NE(table.find("-> fail-closed: enforced as an ALLOW with no usable rule"),
            std::string::npos)
      << table;
  // weftd counts it by what it enforces instead.
  auto nsfd = mesh_->NodeNetns(0);
  auto ip = mesh_->testbed().NodeIp(0);
  ASSERT_TRUE(nsfd.ok() && ip.ok());
  auto metrics = HttpGet(SockAddr{*ip, 15014}, "/metrics", nsfd->get());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(MetricSum(*metrics, "weft_cp_objects_rejected_total",
                      {{"kind", "AuthorizationPolicy"}, {"outcome", "allow_nothing"}}),
            1)
      << *metrics;

  // A DENY of frontend whose condition cannot be evaluated denies frontend (the condition holds).
  const double deny_before = Metric(1, "weft_policy_denials_total", {{"policy", "shop/sni-only"}});
  ASSERT_TRUE(mesh_->SetPolicies(SniOnlyPolicy("DENY")).ok()) << mesh_->WeftdLog();
  EXPECT_FALSE(RoundTrip("still refused", 2s));
  // Counted against the DENY itself, after the ALLOW's refusals.
  EXPECT_GT(Metric(1, "weft_policy_denials_total", {{"policy", "shop/sni-only"}}), deny_before)
      << *mesh_->Metrics(1);

  ASSERT_TRUE(mesh_->SetPolicies("").ok());
  EXPECT_TRUE(WaitFor([&] { return RoundTrip("allowed again"); }, 10s));
  EXPECT_TRUE(Status()["rejected"].empty());
}

// Issue 13, hole 2 for PeerAuthentication: one weftd cannot read is STRICT, never permissive.
TEST_F(ControlPlaneMesh, ARejectedPeerAuthenticationIsStrict) {
  auto plaintext = [&](const std::string& msg) {
    auto fd = mesh_->Dial("legacy", App(), 3s);
    return fd.ok() && EchoRoundTrip(fd->get(), msg, 2s) == msg;
  };
  ASSERT_TRUE(WaitFor([&] { return plaintext("permissive"); }, 15s))
      << "a pod outside the mesh reaches the server in plaintext by default";
  // PERMISSIVE with a port exception ztunnel cannot apply without a selector: rejected.
  ASSERT_TRUE(mesh_
                  ->SetPolicies("", R"(- name: loose
  namespace: shop
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {"8080": {mode: DISABLE}}
)")
                  .ok())
      << mesh_->WeftdLog();
  EXPECT_TRUE(WaitFor([&] { return !plaintext("strict"); }, 10s))
      << "a rejected PeerAuthentication must be enforced as STRICT";
  EXPECT_GE(Metric(1, "weft_policy_denials_total", {{"reason", "strict_mtls"}}), 1)
      << *mesh_->Metrics(1);
  EXPECT_TRUE(RoundTrip("mtls still fine"));
  auto st = Status();
  ASSERT_EQ(st["rejected"].size(), 1u) << st.dump(2);
  EXPECT_NE(st["rejected"][0].value("effect", "").find("STRICT"), std::string::npos) << st.dump(2);
}

}  // namespace
}  // namespace weft
