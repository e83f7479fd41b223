// Same-node fast path, namespaced tier (root): nodes and pods are network namespaces, ztunnel
// and weft-agent run as real processes, capture is real (iptables or eBPF). Two pods on node 0
// talk through the fast path: no HBONE, no packet on either pod's interface (the bytes never
// leave the node's kernel), metrics from both reporters as "same_node", policy enforced and
// re-evaluated. A pod on node 1 is still reached over HBONE from the same client.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <thread>

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

std::string Sha256Hex(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  std::string hex;
  char b[3];
  for (unsigned i = 0; i < n; i++) {
    std::snprintf(b, sizeof b, "%02x", md[i]);
    hex += b;
  }
  return hex;
}

// Param: "<capture>/<relay>": the capture mode and ztunnel's --same-node-relay (passed to the
// ztunnel processes through WEFT_SAME_NODE_RELAY, which they inherit).
class NamespacedFastPath
    : public weft::testing::LocalMeshFixture<::testing::TestWithParam<std::string>> {
 protected:
  std::string Capture() const { return GetParam().substr(0, GetParam().find('/')); }
  std::string Relay() const { return GetParam().substr(GetParam().find('/') + 1); }
  void TearDown() override {
    LocalMeshFixture::TearDown();
    unsetenv("WEFT_SAME_NODE_RELAY");
  }
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, capture, SO_MARK");
    if (Capture() == "iptables" && system("command -v iptables-restore >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "iptables-restore is not installed";
    setenv("WEFT_SAME_NODE_RELAY", Relay().c_str(), 1);
    if (Capture() == "ebpf") {
      auto cg = FindCgroup2Mount();
      WEFT_SKIP_UNLESS_KERNEL_FEATURE(cg.ok(), "eBPF capture needs cgroup v2: " << cg.status());
    }
    localmesh::Options o;
    o.nodes = 2;
    o.capture = Capture();
    o.pods = {
        {.name = "client",
         .ns = "shop",
         .service_account = "frontend",
         .node = 0,
         .labels = {{"app", "frontend"}}},
        {.name = "server",
         .ns = "shop",
         .service_account = "catalogue",
         .node = 0,
         .labels = {{"app", "catalogue"}}},
        {.name = "remote",
         .ns = "shop",
         .service_account = "payments",
         .node = 1,
         .labels = {{"app", "payments"}}},
    };
    StartMesh(o, {"server", "remote"});
  }

  absl::StatusOr<testbed::Capture> CapturePod(const std::string& pod, const std::string& file) {
    auto ns = mesh_->testbed().PodNetns(pod);
    if (!ns.ok()) return ns.status();
    return testbed::StartCapture(*ns, testbed::Testbed::kPodIface, dir_.path() + "/" + file, "tcp");
  }
  static std::string Secret() {
    std::mt19937_64 rng(std::random_device{}());
    return "WEFT-SECRET-" + std::to_string(rng());
  }
};

TEST_P(NamespacedFastPath, SameNodePairStaysInTheKernelWithBothReporters) {
  auto cap_client = CapturePod("client", "client.pcap");
  ASSERT_TRUE(cap_client.ok()) << cap_client.status();
  auto cap_server = CapturePod("server", "server.pcap");
  ASSERT_TRUE(cap_server.ok()) << cap_server.status();

  std::string secret = Secret();
  constexpr size_t kSize = 16 << 20;
  std::string data(kSize, '\0');
  std::mt19937 rng(3);
  for (auto& c : data) c = static_cast<char>(rng());
  {
    auto fd = DialFrom("client", App("server"));
    ASSERT_EQ(EchoRoundTrip(fd.get(), secret), secret);
    EXPECT_EQ(Metric(0, "weft_hbone_pool_connections"), 0) << "the fast path opens no HBONE";
    std::thread writer([&] {
      size_t off = 0;
      while (off < data.size()) {
        ssize_t k = send(fd.get(), data.data() + off, std::min<size_t>(1 << 20, data.size() - off),
                         MSG_NOSIGNAL);
        if (k <= 0) break;
        off += static_cast<size_t>(k);
      }
      shutdown(fd.get(), SHUT_WR);
    });
    std::string got;
    char buf[1 << 16];
    while (true) {
      ssize_t n = read(fd.get(), buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    writer.join();
    ASSERT_EQ(got.size(), kSize);
    EXPECT_EQ(Sha256Hex(got), Sha256Hex(data));
  }
  ASSERT_TRUE(cap_client->Stop().ok());
  ASSERT_TRUE(cap_server->Stop().ok());
  for (const auto* cap : {&*cap_client, &*cap_server}) {
    auto leaked = testbed::PcapContains(cap->pcap_path(), secret);
    ASSERT_TRUE(leaked.ok()) << leaked.status();
    EXPECT_FALSE(*leaked) << cap->pcap_path();
    auto stats = testbed::PcapSummary(cap->pcap_path(), {15008});
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->tcp_packets, 0)
        << "a same-node fast-path connection must not cross a pod's interface: "
        << cap->pcap_path();
  }

  const std::map<std::string, std::string> labels = {
      {"source_workload", "client"},
      {"source_principal", "spiffe://cluster.local/ns/shop/sa/frontend"},
      {"destination_workload", "server"},
      {"destination_principal", "spiffe://cluster.local/ns/shop/sa/catalogue"},
      {"connection_security_policy", "same_node"}};
  auto src = labels, dst = labels;
  src["reporter"] = "source";
  dst["reporter"] = "destination";
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "istio_tcp_connections_closed_total", src) == 1 &&
           Metric(0, "istio_tcp_connections_closed_total", dst) == 1;
  })) << *mesh_->Metrics(0);
  for (const auto& l : {src, dst}) {
    EXPECT_EQ(Metric(0, "istio_tcp_sent_bytes_total", l), secret.size() + kSize);
    EXPECT_EQ(Metric(0, "istio_tcp_received_bytes_total", l), secret.size() + kSize);
  }
  EXPECT_EQ(Metric(0, "istio_tcp_connections_opened_total",
                   {{"connection_security_policy", "mutual_tls"}}),
            0);
  EXPECT_EQ(Metric(0, "weft_hbone_pool_connections"), 0);
  // The relay asked for is the one that moved the bytes.
  EXPECT_GT(Metric(0, "weft_same_node_relay_events_total", {{"relay", Relay()}}), 0);
  EXPECT_EQ(Metric(0, "weft_same_node_relay_events_total",
                   {{"relay", Relay() == "sockmap" ? "splice" : "sockmap"}}),
            0);
}

TEST_P(NamespacedFastPath, ClientToAnotherNodeStillUsesHbone) {
  auto cap = CapturePod("client", "cross.pcap");
  ASSERT_TRUE(cap.ok()) << cap.status();
  std::string secret = Secret();
  {
    auto fd = DialFrom("client", App("remote"));
    ASSERT_EQ(EchoRoundTrip(fd.get(), secret), secret);
  }
  ASSERT_TRUE(cap->Stop().ok());
  EXPECT_FALSE(*testbed::PcapContains(cap->pcap_path(), secret));
  auto stats = testbed::PcapSummary(cap->pcap_path(), {15008});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->tls_handshake_records, 0) << "cross-node traffic must be HBONE (TLS on 15008)";
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "istio_tcp_connections_closed_total",
                  {{"reporter", "source"},
                   {"destination_workload", "remote"},
                   {"connection_security_policy", "mutual_tls"}}) == 1 &&
           Metric(1, "istio_tcp_connections_closed_total",
                  {{"reporter", "destination"},
                   {"source_principal", "spiffe://cluster.local/ns/shop/sa/frontend"},
                   {"connection_security_policy", "mutual_tls"}}) == 1;
  }));
}

TEST_P(NamespacedFastPath, PolicyIsEnforcedAndReevaluated) {
  auto open = DialFrom("client", App("server"));
  ASSERT_EQ(EchoRoundTrip(open.get(), "before"), "before");
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
  EXPECT_TRUE(WaitClosed(open.get())) << "the open fast-path connection must close once denied";
  EXPECT_EQ(Metric(0, "weft_policy_reevaluation_closed_total"), 1);
  // ztunnel resets a denied connection as soon as it accepts it; on a slow machine (the kernel
  // matrix's TCG guests) the reset can land before the blocking connect() returns. Either way no
  // byte gets through.
  auto denied = mesh_->Dial("client", App("server"), 5s);
  if (denied.ok()) {
    EXPECT_NE(EchoRoundTrip(denied->get(), "denied", 2s), "denied");
  } else {
    EXPECT_TRUE(absl::StrContains(denied.status().message(), "reset by peer")) << denied.status();
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric(0, "weft_policy_denials_total", {{"policy", "shop/deny-frontend"}}) >= 1;
  }));
  // The policy selects the server only: the remote pod is still reachable.
  auto other = DialFrom("client", App("remote"));
  EXPECT_EQ(EchoRoundTrip(other.get(), "remote ok"), "remote ok");
}

INSTANTIATE_TEST_SUITE_P(Capture, NamespacedFastPath,
                         ::testing::Values("iptables/splice", "iptables/sockmap", "ebpf/splice",
                                           "ebpf/sockmap"),
                         [](const auto& info) {
                           std::string n = info.param;
                           n[n.find('/')] = '_';
                           return n;
                         });

}  // namespace
}  // namespace weft
