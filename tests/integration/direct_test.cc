// "Direct" integration tests (ztunnel's two-tier scheme): two real ztunnels in one process on
// loopback, real TLS 1.3 mTLS, real nghttp2, real sockets, port 0 everywhere. The only seam is
// the original-destination provider (no netfilter here): a table keyed by the client's address.
#include <arpa/inet.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <cctype>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/loadgen/h2echo.h"
#include "common/scrape/scrape.h"
#include "common/testing/child_process.h"
#include "examples/teashop/http.h"
#include "nlohmann/json.hpp"
#include "tests/integration/direct_mesh_fixture.h"
#include "tests/support/direct_mesh.h"
#include "tests/support/http_conn.h"
#include "tests/support/test_util.h"
#include "ztunnel/app/ztunnel_app.h"
#include "ztunnel/l7/http2_server.h"

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using direct_fixture::DirectMesh;
using direct_fixture::DirectMeshHttp;
using weft::testing::EchoServer;
using weft::testing::kClientId;
using weft::testing::kClientIp;
using weft::testing::kServerId;
using weft::testing::kServerIp;
using weft::testing::MetricSum;
using weft::testing::TableOrigDst;
using weft::testing::TempDir;
using weft::testing::WaitFor;

TEST_F(DirectMesh, TunnelsThroughHboneWithIstioMetrics) {
  {
    auto fd = Outbound(EchoAddr());
    EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "hello mesh"), "hello mesh");
  }
  const std::map<std::string, std::string> src_labels = {
      {"reporter", "source"},
      {"source_workload", "client"},
      {"source_workload_namespace", "ns-a"},
      {"source_principal", "spiffe://cluster.local/ns/ns-a/sa/client"},
      {"destination_workload", "server"},
      {"destination_workload_namespace", "ns-b"},
      {"destination_principal", "spiffe://cluster.local/ns/ns-b/sa/server"},
      {"connection_security_policy", "mutual_tls"},
      {"request_protocol", "tcp"},
      {"response_flags", "-"}};
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total", src_labels) == 1 &&
           Metric(*b_, "istio_tcp_connections_closed_total", {{"reporter", "destination"}}) == 1;
  }));
  EXPECT_EQ(Metric(*a_, "istio_tcp_connections_opened_total", src_labels), 1);
  EXPECT_EQ(Metric(*a_, "istio_tcp_sent_bytes_total", src_labels), 10);
  EXPECT_EQ(Metric(*a_, "istio_tcp_received_bytes_total", src_labels), 10);
  auto dst_labels = src_labels;
  dst_labels["reporter"] = "destination";
  EXPECT_EQ(Metric(*b_, "istio_tcp_connections_opened_total", dst_labels), 1)
      << "destination ztunnel must see the client's authenticated identity\n"
      << Metrics(*b_);
  EXPECT_EQ(Metric(*b_, "istio_tcp_sent_bytes_total", dst_labels), 10);
  int status = 0;
  auto ready = weft::testing::HttpGet(a_->admin().readiness_addr(), "/healthz/ready", -1, &status);
  EXPECT_EQ(status, 200);
  auto dump = weft::testing::HttpGet(a_->admin().admin_addr(), "/config_dump");
  ASSERT_TRUE(dump.ok());
  EXPECT_NE(dump->find("ns-a/client"), std::string::npos);
}

TEST_F(DirectMesh, LargeTransfersKeepEveryByteInBothDirections) {
  auto fd = Outbound(EchoAddr());
  constexpr size_t kSize = 24 << 20;
  std::string data(kSize, '\0');
  std::mt19937 rng(42);
  for (auto& c : data) c = static_cast<char>(rng());
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
  got.reserve(kSize);
  char buf[1 << 16];
  while (true) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  writer.join();
  ASSERT_EQ(got.size(), kSize) << "half-close must deliver everything, then EOF";
  EXPECT_TRUE(got == data) << "payload corrupted in the tunnel";
}

// Back-pressure with sockets registered once, edge-triggered (issue 16): the client writes 16 MiB
// while it reads the echo slowly, through a small receive buffer, after a stall that lets every
// buffer on the way fill. Each hop then stops reading (no window, a full queue, a full socket)
// and must read on when its peer drains, from readiness it remembered: a lost edge stalls the
// transfer. Every byte must come back, in order, then EOF.
void SlowReaderGetsEveryByte(int fd) {
  int rcvbuf = 16 << 10;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  constexpr size_t kSize = 16 << 20;
  std::string data(kSize, '\0');
  std::mt19937 rng(7);
  for (auto& c : data) c = static_cast<char>(rng());
  std::thread writer([&] {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t k =
          send(fd, data.data() + off, std::min<size_t>(256 << 10, data.size() - off), MSG_NOSIGNAL);
      if (k <= 0) break;
      off += static_cast<size_t>(k);
    }
    shutdown(fd, SHUT_WR);
  });
  std::this_thread::sleep_for(200ms);  // everything on the way fills up
  std::string got;
  got.reserve(kSize);
  char buf[4096];
  pollfd p{fd, POLLIN, 0};
  while (got.size() < kSize) {
    if (poll(&p, 1, 10000) != 1) break;  // bounded: a stall fails the test, not hangs it
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    if (got.size() % (64 << 10) < static_cast<size_t>(n)) std::this_thread::sleep_for(2ms);
  }
  char extra;
  bool eof = poll(&p, 1, 10000) == 1 && read(fd, &extra, 1) == 0;
  shutdown(fd, SHUT_RDWR);  // unblocks the writer if the transfer stalled
  writer.join();
  ASSERT_EQ(got.size(), kSize) << "the transfer stalled: a readiness edge was lost";
  EXPECT_TRUE(got == data) << "payload corrupted under back-pressure";
  EXPECT_TRUE(eof) << "the half-close must follow the last byte";
}

TEST_F(DirectMesh, ASlowReaderGetsEveryByteThroughTheTunnels) {
  auto fd = Outbound(EchoAddr());
  SlowReaderGetsEveryByte(fd.get());
}

TEST_F(DirectMesh, ASlowReaderGetsEveryByteThroughThePlainRelay) {
  auto fd = Outbound(outside_->addr());
  SlowReaderGetsEveryByte(fd.get());
}

TEST_F(DirectMesh, PoolsStreamsOnOneConnectionPerKey) {
  std::vector<UniqueFd> fds;
  for (int i = 0; i < 5; i++) {
    fds.push_back(Outbound(EchoAddr()));
    EXPECT_EQ(weft::testing::EchoRoundTrip(fds.back().get(), "x" + std::to_string(i)),
              "x" + std::to_string(i));
  }
  EXPECT_EQ(Metric(*a_, "weft_hbone_pool_connections"), 1)
      << "5 tunnels with the same (src identity, dst identity, dst) must share one connection";
  EXPECT_EQ(Metric(*a_, "weft_hbone_pool_streams"), 5);
  fds.clear();
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "weft_hbone_pool_streams") == 0; }));
  auto fd = Outbound(EchoAddr());
  EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "again"), "again");
  EXPECT_EQ(Metric(*a_, "weft_hbone_pool_connections"), 1) << "idle connection must be reused";
}

TEST_F(DirectMesh, ServiceVipGoesToAReadyEndpoint) {
  auto fd = Outbound(*SockAddr::Parse("10.96.0.10:80"));
  EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "via service"), "via service");
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total",
                  {{"destination_service", "echo.ns-b.svc.cluster.local"},
                   {"destination_service_name", "echo"},
                   {"destination_workload", "server"}}) == 1;
  }));
}

TEST_F(DirectMesh, ServiceWithoutEndpointsFailsFastAndCounts) {
  // Fast: refused at once (counted as no_ready_endpoint, flags UH), not left to the 10 s
  // connect timeout. Judged by what happened, not by the clock.
  auto fd = Outbound(*SockAddr::Parse("10.96.0.11:80"));
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
  EXPECT_EQ(Metric(*a_, "weft_connection_failures_total", {{"reason", "no_ready_endpoint"}}), 1);
  EXPECT_EQ(Metric(*a_, "weft_connection_failures_total", {{"reason", "connect_timeout"}}), 0);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total", {{"response_flags", "UH"}}) == 1;
  })) << Metrics(*a_);
}

TEST_F(DirectMesh, PassthroughToDestinationsOutsideTheMesh) {
  auto fd = Outbound(outside_->addr());
  EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "plain"), "plain");
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total",
                  {{"reporter", "source"}, {"destination_workload", "unknown"}}) == 1;
  }));
  EXPECT_EQ(Metric(*a_, "weft_hbone_pool_connections"), 0) << "passthrough must not use HBONE";
}

TEST_F(DirectMesh, DenyPolicyClosesOpenConnectionsAndRefusesNewOnes) {
  auto open = Outbound(EchoAddr());
  ASSERT_EQ(weft::testing::EchoRoundTrip(open.get(), "before"), "before");
  SetPolicies(R"(- name: deny-client
  namespace: ns-b
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/ns-a/sa/client"]}
)");
  EXPECT_TRUE(weft::testing::WaitClosed(open.get()))
      << "an open connection that the new policy denies must be closed";
  EXPECT_EQ(Metric(*b_, "weft_policy_reevaluation_closed_total"), 1);
  auto denied = Outbound(EchoAddr());
  EXPECT_NE(weft::testing::EchoRoundTrip(denied.get(), "after", 2s), "after");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_policy_denials_total", {{"policy", "ns-b/deny-client"}}) >= 1;
  }));
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_connection_failures_total", {{"reason", "hbone_status_403"}}) == 1;
  }));
  SetPolicies("");
  ExpectTunnelWorks("policy removed");
}

TEST_F(DirectMesh, AllowPoliciesMatchOnPrincipalNamespaceIpBlockAndPort) {
  struct Case {
    std::string name, source, op;
    bool allowed;
  };
  std::string port = std::to_string(EchoAddr().port);
  const Case cases[] = {
      {"principal", R"({principals: ["cluster.local/ns/ns-a/sa/client"]})", "", true},
      {"other principal", R"({principals: ["cluster.local/ns/x/sa/y"]})", "", false},
      {"namespace", R"({namespaces: ["ns-a"]})", "", true},
      {"not namespace", R"({notNamespaces: ["ns-a"]})", "", false},
      {"ipBlock", R"({ipBlocks: ["127.0.0.10/32"]})", "", true},
      {"other ipBlock", R"({ipBlocks: ["10.0.0.0/8"]})", "", false},
      {"port", R"({namespaces: ["ns-a"]})", R"({ports: [")" + port + R"("]})", true},
      {"other port", R"({namespaces: ["ns-a"]})", R"({ports: ["1"]})", false},
  };
  for (const auto& c : cases) {
    std::string pol = R"(- name: allow-case
  namespace: ns-b
  action: ALLOW
  rules:
  - from:
    - source: )" + c.source +
                      "\n";
    if (!c.op.empty()) pol += "    to:\n    - operation: " + c.op + "\n";
    SetPolicies(pol);
    auto fd = Outbound(EchoAddr());
    bool ok = weft::testing::EchoRoundTrip(fd.get(), "ping", 3s) == "ping";
    EXPECT_EQ(ok, c.allowed) << c.name;
  }
}

TEST_F(DirectMesh, PeerAuthenticationStrictRefusesPlaintext) {
  {
    auto fd = Plaintext(EchoAddr());
    EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "plain ok"), "plain ok")
        << "PERMISSIVE (default) must accept plaintext";
  }
  SetPolicies("", R"(- name: strict
  namespace: ns-b
  mtls: {mode: STRICT}
)");
  auto fd = Plaintext(EchoAddr());
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
  EXPECT_EQ(Metric(*b_, "weft_policy_denials_total", {{"reason", "strict_mtls"}}), 1);
  ExpectTunnelWorks("mTLS still allowed under STRICT");
}

TEST_F(DirectMesh, MalformedConfigKeepsTheLastGoodOne) {
  double errors = Metric(*b_, "weft_config_loads_total", {{"result", "error"}});
  dir_.Write("b.yaml", "workloads: [ {uid: broken, addresses: [\"not-an-ip\"] } ]\n");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_config_loads_total", {{"result", "error"}}) == errors + 1;
  }));
  dir_.Write("b.yaml", "{{{ not yaml");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_config_loads_total", {{"result", "error"}}) == errors + 2;
  }));
  EXPECT_EQ(b_->config().Get()->version(), "v2");
  ExpectTunnelWorks("bad config must leave the last good config in force");
}

TEST_F(DirectMesh, BadInputOnHbonePortIsCountedAndServerKeepsServing) {
  auto root = ca_->root_pem();
  auto failures = [&](const std::string& reason) {
    return Metric(*b_, "weft_hbone_handshake_failures_total",
                  {{"direction", "inbound"}, {"reason", reason}});
  };
  // Garbage and plaintext HTTP/1 instead of TLS.
  for (std::string junk : {std::string("\x16\x03\x01\xff\xff garbage garbage", 22),
                           std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")}) {
    auto fd = weft::testing::Dial(b_hbone_);
    ASSERT_TRUE(fd.ok());
    send(fd->get(), junk.data(), junk.size(), MSG_NOSIGNAL);
    EXPECT_TRUE(weft::testing::WaitClosed(fd->get()));
  }
  EXPECT_TRUE(WaitFor([&] { return failures("protocol") == 2; })) << Metrics(*b_);

  // Port probes: connect and close without a byte, at once and after the server has already
  // started its handshake (waiting for a ClientHello). Neither is a handshake failure; both are
  // counted as such probes.
  for (auto wait : {std::chrono::milliseconds(0), std::chrono::milliseconds(150)}) {
    auto fd = weft::testing::Dial(b_hbone_);
    ASSERT_TRUE(fd.ok());
    std::this_thread::sleep_for(wait);
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_bad_input_total",
                  {{"port", "15008"}, {"kind", "closed_before_handshake"}}) == 2;
  })) << Metrics(*b_);
  EXPECT_EQ(failures("protocol"), 2) << Metrics(*b_);

  // A client certificate from another CA.
  auto other = tls::CertificateAuthority::CreateRoot("evil", std::chrono::hours(1));
  ASSERT_TRUE(other.ok());
  auto foreign = weft::testing::IssueClientCert(*other, &kClientId, std::chrono::hours(1));
  ASSERT_TRUE(foreign.ok());
  weft::testing::HboneConnect(b_hbone_, &*foreign, root, "127.0.0.20:80");
  EXPECT_TRUE(WaitFor([&] { return failures("unknown_ca") == 1; }));

  // Expired, and not yet valid.
  auto expired = weft::testing::IssueClientCert(*ca_, &kClientId, std::chrono::seconds(60),
                                                -std::chrono::seconds(3600));
  ASSERT_TRUE(expired.ok());
  weft::testing::HboneConnect(b_hbone_, &*expired, root, "127.0.0.20:80");
  EXPECT_TRUE(WaitFor([&] { return failures("expired") == 1; }));
  auto future = weft::testing::IssueClientCert(*ca_, &kClientId, std::chrono::hours(2),
                                               std::chrono::seconds(3600));
  ASSERT_TRUE(future.ok());
  weft::testing::HboneConnect(b_hbone_, &*future, root, "127.0.0.20:80");
  EXPECT_TRUE(WaitFor([&] { return failures("not_yet_valid") == 1; }));

  // No client certificate; a certificate without a SPIFFE SAN.
  weft::testing::HboneConnect(b_hbone_, nullptr, root, "127.0.0.20:80");
  EXPECT_TRUE(WaitFor([&] { return failures("no_client_cert") == 1; }));
  {
    weft::testing::ClientCert nosan;
    nosan.key = *tls::GenerateKey();
    auto csr = tls::MakeCsr(nosan.key.get(), kClientId);
    ASSERT_TRUE(csr.ok());
    auto cert = ca_->SignWithSans(csr->get(), {}, {"client.example"}, std::chrono::hours(1));
    ASSERT_TRUE(cert.ok()) << cert.status();
    nosan.cert = std::move(*cert);
    weft::testing::HboneConnect(b_hbone_, &nosan, root, "127.0.0.20:80");
    EXPECT_TRUE(WaitFor([&] { return failures("no_spiffe_id") == 1; })) << Metrics(*b_);
  }

  // Valid client, then an HTTP/2 protocol violation.
  auto good = weft::testing::IssueClientCert(*ca_, &kClientId, std::chrono::hours(1));
  ASSERT_TRUE(good.ok());
  std::string junk = "this is not an HTTP/2 connection preface\r\n\r\n";
  weft::testing::HboneConnect(b_hbone_, &*good, root, "", &junk);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_bad_input_total", {{"port", "15008"}, {"kind", "h2_protocol"}}) == 1;
  })) << Metrics(*b_);

  // Valid client, CONNECT to an address that is not the pod's.
  auto r = weft::testing::HboneConnect(b_hbone_, &*good, root, "127.0.0.99:80");
  EXPECT_EQ(r.status, 400) << r.error;
  EXPECT_EQ(
      Metric(*b_, "weft_bad_input_total", {{"port", "15008"}, {"kind", "connect_foreign_address"}}),
      1);
  // Valid client, CONNECT that is not ip:port.
  r = weft::testing::HboneConnect(b_hbone_, &*good, root, "echo.ns-b:80");
  EXPECT_EQ(r.status, 400) << r.error;

  // And a valid raw CONNECT works.
  r = weft::testing::HboneConnect(b_hbone_, &*good, root, EchoAddr().ToString());
  EXPECT_EQ(r.status, 200) << r.error;
  ExpectTunnelWorks("after every kind of bad input");
}

// Issue 13 hole 5: a CONNECT to one of ztunnel's own ports on the pod (15008 here, the
// listener's real port in this tier) would tunnel a second session whose inner source is the
// destination pod itself, defeating ipBlocks, source.ip and NetworkPolicy. It is refused (400)
// and counted; a normal CONNECT still works.
TEST_F(DirectMesh, ConnectToZtunnelsOwnPortIsRefusedAndCounted) {
  auto root = ca_->root_pem();
  auto good = weft::testing::IssueClientCert(*ca_, &kClientId, std::chrono::hours(1));
  ASSERT_TRUE(good.ok());
  auto refused = [&](const std::string& port) {
    return Metric(*b_, "weft_bad_input_total",
                  {{"port", port}, {"kind", "connect_to_ztunnel_port"}});
  };
  int n = 0;
  for (uint16_t port :
       {b_hbone_.port, b_plain_.port, uint16_t{15008}, uint16_t{15006}, uint16_t{15001}}) {
    auto r =
        weft::testing::HboneConnect(b_hbone_, &*good, root, SockAddr{kServerIp, port}.ToString());
    EXPECT_EQ(r.status, 400) << "CONNECT to port " << port << ": " << r.error;
    EXPECT_EQ(refused("15008"), ++n) << Metrics(*b_);
  }
  // The plaintext path: a connection captured on 15006 whose original destination is one of
  // ztunnel's ports is not relayed back into ztunnel from inside the pod.
  auto fd = Plaintext(b_hbone_);
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
  EXPECT_TRUE(WaitFor([&] { return refused("15006") == 1; })) << Metrics(*b_);

  auto r = weft::testing::HboneConnect(b_hbone_, &*good, root, EchoAddr().ToString());
  EXPECT_EQ(r.status, 200) << r.error;
  ExpectTunnelWorks("after CONNECTs to ztunnel's own ports");
}

class DirectMeshSanMismatch : public DirectMesh {
 protected:
  void SetUp() override {
    server_sa_for_client_ = "impostor";  // ztunnel A expects another identity than B has
    DirectMesh::SetUp();
  }
};

TEST_F(DirectMeshSanMismatch, ClientRefusesAServerWithTheWrongIdentity) {
  auto fd = Outbound(EchoAddr());
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_hbone_handshake_failures_total",
                  {{"direction", "outbound"}, {"reason", "identity_mismatch"}}) == 1;
  })) << Metrics(*a_);
  EXPECT_EQ(echo_->accepted(), 0) << "no byte may reach the server";
}

// ztunnel A trusts B, but A's own certificate comes from a CA that B does not trust. In TLS 1.3
// the client finishes first, so A learns of the rejection from B's alert on its first read.
class DirectMeshForeignClient : public DirectMesh {
 protected:
  void SetUp() override {
    a_certs_ = "/certs-a";
    auto other = weft::testing::MakeMeshCerts(dir_.path() + a_certs_, {kClientId});
    ASSERT_TRUE(other.ok());
    auto mesh = weft::testing::MakeMeshCerts(dir_.path() + "/certs", {kClientId, kServerId});
    ASSERT_TRUE(mesh.ok());
    // A's trust anchors: its own root and the mesh root (so it accepts B's certificate).
    ASSERT_TRUE(tls::WriteFileAtomic(dir_.path() + a_certs_ + "/root-cert.pem",
                                     other->root_pem() + mesh->root_pem(), 0644)
                    .ok());
    skip_certs_ = true;
    DirectMesh::SetUp();
  }
};

TEST_F(DirectMeshForeignClient, ServerRejectionIsCountedAtTheSourceWithItsReason) {
  auto fd = Outbound(EchoAddr());
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_hbone_handshake_failures_total",
                  {{"direction", "outbound"}, {"reason", "unknown_ca"}}) == 1;
  })) << Metrics(*a_);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_hbone_handshake_failures_total",
                  {{"direction", "inbound"}, {"reason", "unknown_ca"}}) == 1;
  }));
  EXPECT_EQ(echo_->accepted(), 0);
}

// ---- L7 (issue 14): per-request authorization at the destination ----------------------------

// The mesh with a real HTTP server (Boost.Beast, the tea shop's) on the server workload's
// address: every response body is "METHOD TARGET" as the server received it.
TEST_F(DirectMeshHttp, EveryRequestIsAuthorizedByMethodAndPathWith403sCounted) {
  SetPolicies(kAllowPublicGet);
  auto fd = Outbound(HttpAddr());
  weft::testing::HttpConn c(fd.get());
  auto r = c.Request("GET", "/public/a");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "GET /public/a");
  r = c.Request("GET", "/public/b?x=1");  // the same connection: keep-alive
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "GET /public/b?x=1");
  r = c.Request("POST", "/public/a");
  EXPECT_EQ(r.status, 403) << r.error;
  EXPECT_EQ(r.body, "RBAC: access denied");
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get())) << "a local reply closes the connection";

  auto fd2 = Outbound(HttpAddr());
  weft::testing::HttpConn c2(fd2.get());
  r = c2.Request("GET", "/private");
  EXPECT_EQ(r.status, 403) << r.error;
  // Normalised as Istio's BASE does before matching, and forwarded as authorized.
  auto fd3 = Outbound(HttpAddr());
  weft::testing::HttpConn c3(fd3.get());
  r = c3.Request("GET", "/public/../private");
  EXPECT_EQ(r.status, 403) << "dot segments must not escape /public/*";
  auto fd4 = Outbound(HttpAddr());
  weft::testing::HttpConn c4(fd4.get());
  r = c4.Request("GET", "/public/./x/%61");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "GET /public/x/a") << "the server sees the path that was authorized";
  EXPECT_TRUE(WaitFor([&] { return Denials() >= 3; })) << Metrics(*b_);
  EXPECT_EQ(Metric(*b_, "weft_policy_denials_total", {{"reason", "no_allow_match"}}), Denials());
}

TEST_F(DirectMeshHttp, DenyByHeaderAndPipelinedRequestsKeepTheirOrder) {
  SetPolicies(R"(- name: deny-debug
  namespace: ns-b
  action: DENY
  rules:
  - when:
    - key: request.headers[x-debug]
      values: ["on"]
)");
  auto fd = Outbound(HttpAddr());
  weft::testing::HttpConn c(fd.get());
  // Two pipelined requests, the second denied: the 200 comes first, then the 403.
  auto r = c.Exchange(
      "GET /one HTTP/1.1\r\nHost: server\r\n\r\n"
      "GET /two HTTP/1.1\r\nHost: server\r\nX-Debug: on\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "GET /one");
  r = c.Exchange("");
  EXPECT_EQ(r.status, 403) << r.error;
  EXPECT_EQ(Metric(*b_, "weft_policy_denials_total", {{"policy", "ns-b/deny-debug"}}), 1);
}

TEST_F(DirectMeshHttp, PolicyChangeAppliesToTheNextRequestOnAnOpenConnection) {
  SetPolicies(kAllowPublicGet);
  auto fd = Outbound(HttpAddr());
  weft::testing::HttpConn c(fd.get());
  EXPECT_EQ(c.Request("GET", "/public/a").status, 200);
  SetPolicies(R"(- name: deny-public
  namespace: ns-b
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/public/*"]}
)");
  auto r = c.Request("GET", "/public/a");
  EXPECT_EQ(r.status, 403) << r.error;
}

TEST_F(DirectMeshHttp, BytesThatAreNotHttpAreRefusedAndCountedWhileOthersAreServed) {
  SetPolicies(kAllowPublicGet);
  auto bad = Outbound(HttpAddr());
  const std::string garbage = "\x16\x03\x01\x02\x00 not http at all\r\n\r\n";
  ASSERT_EQ(::send(bad.get(), garbage.data(), garbage.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(garbage.size()));
  EXPECT_TRUE(weft::testing::WaitClosed(bad.get()));
  auto smuggle = Outbound(HttpAddr());
  weft::testing::HttpConn s(smuggle.get());
  auto r = s.Exchange(
      "POST /public/a HTTP/1.1\r\nHost: server\r\nContent-Length: 4\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /private HTTP/1.1\r\nHost: server\r\n\r\n");
  EXPECT_EQ(r.status, 400) << r.error;
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_bad_input_total", {{"port", "http"}}) >= 2;
  })) << Metrics(*b_);
  auto good = Outbound(HttpAddr());
  weft::testing::HttpConn g(good.get());
  EXPECT_EQ(g.Request("GET", "/public/ok").status, 200);
  EXPECT_EQ(http_->requests(), 1u) << "neither the garbage nor the smuggled request reached it";
}

// Istio's request metrics, destination reporter, on ztunnel B for every request (local replies
// included), with the labels Istio's service and workload Grafana dashboards query, and one
// access-log line per request.
TEST_F(DirectMeshHttp, RequestsAreIstioRequestMetricsAndAccessLogLines) {
  SetPolicies(kAllowPublicGet);
  ::testing::internal::CaptureStderr();  // the access log: JSON lines on stderr
  auto fd = Outbound(HttpAddr());
  weft::testing::HttpConn c(fd.get());
  auto r = c.Exchange(
      "GET /public/a HTTP/1.1\r\nHost: server\r\n"
      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r.error;
  r = c.Request("GET", "/public/b", "server", "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n");
  EXPECT_EQ(r.status, 200) << r.error;
  r = c.Request("POST", "/private");
  EXPECT_EQ(r.status, 403) << r.error;
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
  auto bad = Outbound(HttpAddr());  // HTTP/1.1 without Host: refused by ztunnel with 400
  weft::testing::HttpConn b(bad.get());
  EXPECT_EQ(b.Exchange("GET /public/a HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_TRUE(weft::testing::WaitClosed(bad.get()));
  const std::string log = ::testing::internal::GetCapturedStderr();

  const std::map<std::string, std::string> conn = {
      {"reporter", "destination"},
      {"source_workload", "client"},
      {"source_workload_namespace", "ns-a"},
      {"source_principal", kClientId.ToString()},
      {"source_app", "client"},
      {"destination_workload", "server"},
      {"destination_workload_namespace", "ns-b"},
      {"destination_principal", kServerId.ToString()},
      {"destination_app", "server"},
      {"destination_version", "v1"},
      {"request_protocol", "http"},
      {"connection_security_policy", "mutual_tls"},
      {"grpc_response_status", ""},  // HTTP/1.1: no gRPC status
  };
  auto with = [&](std::map<std::string, std::string> extra) {
    extra.insert(conn.begin(), conn.end());
    return extra;
  };
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "istio_requests_total", with({{"response_code", "400"}})) == 1;
  })) << Metrics(*b_);
  EXPECT_EQ(Metric(*b_, "istio_requests_total",
                   with({{"response_code", "200"}, {"response_flags", "-"}})),
            2);
  // An RBAC denial is Envoy's local 403 with flag "-", as Istio reports it (istio/istio#47622).
  EXPECT_EQ(Metric(*b_, "istio_requests_total",
                   with({{"response_code", "403"}, {"response_flags", "-"}})),
            1);
  EXPECT_EQ(Metric(*b_, "istio_requests_total",
                   with({{"response_code", "400"}, {"response_flags", "DPE"}})),
            1);
  EXPECT_EQ(Metric(*b_, "istio_requests_total", {{"reporter", "destination"}}), 4);
  for (const char* h :
       {"istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"}) {
    EXPECT_EQ(Metric(*b_, std::string(h) + "_count", conn), 4) << h;
    EXPECT_EQ(Metric(*b_, std::string(h) + "_bucket", with({{"le", "+Inf"}})), 4) << h;
  }
  EXPECT_GE(Metric(*b_, "istio_request_bytes_sum", with({{"response_code", "200"}})),
            2 * std::string("GET /public/a HTTP/1.1\r\n").size());
  EXPECT_EQ(Metric(*b_, "istio_response_bytes_sum", with({{"response_code", "403"}})),
            std::string("HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\ncontent-type: "
                        "text/plain\r\nconnection: close\r\n\r\nRBAC: access denied")
                .size());

  // Istio's istio-workload-dashboard and istio-service-dashboard query istio_requests_total and
  // the request histograms by these labels (e.g. sum(irate(istio_requests_total{reporter=~"$qrep",
  // connection_security_policy="mutual_tls", destination_workload=~"$workload",
  // destination_workload_namespace=~"$namespace", source_workload=~"$srcwl",
  // source_workload_namespace=~"$srcns"}[5m])) by (source_workload, source_workload_namespace,
  // response_code), response_code!~"5.*" for success rates, destination_service=~"$service" on the
  // service dashboard, `le` for histogram_quantile): every series carries each of them.
  const std::string text = Metrics(*b_);
  int series = 0;
  for (const char* name : {"istio_requests_total", "istio_request_duration_milliseconds_bucket",
                           "istio_request_bytes_bucket", "istio_response_bytes_bucket"}) {
    for (const MetricSample& m : ParseSamples(text, name)) {
      if (m.name != name) continue;
      ++series;
      for (const char* label :
           {"reporter", "connection_security_policy", "destination_workload",
            "destination_workload_namespace", "destination_service", "destination_service_name",
            "destination_service_namespace", "source_workload", "source_workload_namespace",
            "response_code", "response_flags", "request_protocol", "grpc_response_status"}) {
        EXPECT_TRUE(m.labels.count(label)) << name << " has no " << label;
      }
      if (std::string(name) != "istio_requests_total") EXPECT_TRUE(m.labels.count("le")) << name;
      auto code = m.labels.find("response_code");
      if (code != m.labels.end()) {
        EXPECT_TRUE(code->second.size() == 3 && std::isdigit(code->second[0]))
            << "response_code must be the status as digits for response_code!~\"5.*\"";
      }
    }
  }
  EXPECT_GT(series, 0);
  // Istio's buckets (Envoy's defaults, 0.5 ... 3600000) and +Inf, for each series.
  std::set<std::string> les;
  for (const MetricSample& m : ParseSamples(text, "istio_request_duration_milliseconds_bucket")) {
    if (m.labels.at("response_code") == "200") les.insert(m.labels.at("le"));
  }
  EXPECT_EQ(les.size(), 20u);
  EXPECT_TRUE(les.count("0.5") && les.count("1") && les.count("+Inf"));

  // One JSON access-log line per request, with the trace id of its traceparent or B3 header.
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("scope", "") == "access" &&
        j.value("msg", "") == "request complete") {
      lines.push_back(j);
    }
  }
  ASSERT_EQ(lines.size(), 4u) << log;
  EXPECT_EQ(lines[0]["method"], "GET");
  EXPECT_EQ(lines[0]["authority"], "server");
  EXPECT_EQ(lines[0]["path"], "/public/a");
  EXPECT_EQ(lines[0]["status"], 200);
  EXPECT_EQ(lines[0]["response_flags"], "-");
  EXPECT_EQ(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(lines[0]["upstream"], HttpAddr().ToString());
  EXPECT_EQ(lines[0]["src.identity"], kClientId.ToString());
  EXPECT_EQ(lines[0]["dst.identity"], kServerId.ToString());
  EXPECT_GT(lines[0]["bytes_received"].get<double>(), 0);
  EXPECT_GT(lines[0]["bytes_sent"].get<double>(), 0);
  EXPECT_GE(lines[0]["duration_ms"].get<double>(), 0);
  EXPECT_EQ(lines[1]["trace_id"], "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(lines[2]["status"], 403);
  EXPECT_EQ(lines[2]["method"], "POST");
  EXPECT_EQ(lines[2]["trace_id"], "");
  EXPECT_EQ(lines[2]["local_reply"], "RBAC: access denied");
  EXPECT_EQ(lines[3]["status"], 400);
  EXPECT_EQ(lines[3]["response_flags"], "DPE");
}

// ---- L7 over h2c: gRPC through the mesh ---------------------------------------------------------

// A real gRPC server without generated code (grpc++'s generic API): every unary call is answered
// with its method name.
class MethodEchoService : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      explicit Reactor(std::string method) : method_(std::move(method)) { StartRead(&req_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
          return;
        }
        grpc::Slice s(method_);
        resp_ = grpc::ByteBuffer(&s, 1);
        StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      std::string method_;
      grpc::ByteBuffer req_, resp_;
    };
    return new Reactor(ctx->method());
  }
};

// One unary call; `out` gets the response message.
grpc::Status GrpcCall(grpc::GenericStub& stub, const std::string& method, std::string* out,
                      const std::string& message = "ping") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Slice s(message);
  grpc::ByteBuffer req(&s, 1), resp;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp,
                 [&](grpc::Status st) { done.set_value(std::move(st)); });
  grpc::Status st = done.get_future().get();
  out->clear();
  std::vector<grpc::Slice> slices;
  if (st.ok() && resp.Dump(&slices).ok()) {
    for (const auto& sl : slices) out->append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  }
  return st;
}

// Starts a MethodEchoService on the server workload's address; `port` gets its port.
std::unique_ptr<grpc::Server> StartGrpc(MethodEchoService* svc, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(kServerIp.ToString() + ":0", grpc::InsecureServerCredentials(), port);
  builder.RegisterCallbackGenericService(svc);
  return builder.BuildAndStart();
}

TEST_F(DirectMeshHttp, GrpcCallsOverOneH2cConnectionAreAuthorizedPerCall) {
  SetPolicies(R"(- name: grpc-allowed
  namespace: ns-b
  action: ALLOW
  rules:
  - to:
    - operation: {paths: ["/pkg.Svc/Allowed"]}
)");
  MethodEchoService svc;
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpc(&svc, &port);
  ASSERT_TRUE(server && port > 0);

  // The client's connection goes through A's captured outbound listener, HBONE, and B, which
  // sees the HTTP/2 preface and authorizes every call.
  auto fd = Outbound(SockAddr{kServerIp, static_cast<uint16_t>(port)});
  ASSERT_TRUE(fd.valid());
  auto stub = std::make_unique<grpc::GenericStub>(
      grpc::CreateInsecureChannelFromFd("server", fd.release()));
  std::string out;
  grpc::Status st = GrpcCall(*stub, "/pkg.Svc/Allowed", &out);
  EXPECT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
  EXPECT_EQ(out, "/pkg.Svc/Allowed");
  st = GrpcCall(*stub, "/pkg.Svc/Denied", &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_EQ(st.error_message(), "RBAC: access denied");
  // The denial answered that call only: the connection goes on.
  st = GrpcCall(*stub, "/pkg.Svc/Allowed", &out);
  EXPECT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
  EXPECT_TRUE(WaitFor([&] { return Denials() >= 1; })) << Metrics(*b_);
  EXPECT_EQ(Denials(), 1);
  // Istio's request metrics know them as gRPC, with the call's grpc-status.
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "istio_requests_total",
                  {{"request_protocol", "grpc"}, {"grpc_response_status", "0"}}) == 2 &&
           Metric(*b_, "istio_requests_total",
                  {{"request_protocol", "grpc"}, {"grpc_response_status", "7"}}) == 1;
  })) << Metrics(*b_);

  // A plaintext h2c client on 15006 (PlainRelay) is authorized per call the same way.
  auto pfd = Plaintext(SockAddr{kServerIp, static_cast<uint16_t>(port)});
  ASSERT_TRUE(pfd.valid());
  auto plain = std::make_unique<grpc::GenericStub>(
      grpc::CreateInsecureChannelFromFd("server", pfd.release()));
  st = GrpcCall(*plain, "/pkg.Svc/Allowed", &out);
  EXPECT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
  EXPECT_EQ(out, "/pkg.Svc/Allowed");
  st = GrpcCall(*plain, "/pkg.Svc/Other", &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  stub.reset();
  plain.reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

TEST_F(DirectMeshHttp, H2cClientThatNeverReadsIsCutOffInsteadOfBuffered) {
  SetPolicies(kAllowPublicGet);
  MethodEchoService svc;
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpc(&svc, &port);
  ASSERT_TRUE(server && port > 0);
  auto fd = Plaintext(SockAddr{kServerIp, static_cast<uint16_t>(port)});
  ASSERT_TRUE(fd.valid());
  // The preface, SETTINGS, then PINGs (each owed an ACK), never reading a byte. Cut off by
  // nghttp2's flood detection (too many ACKs owed per read) or HttpInbound's 4 MiB limit on
  // what the client is owed, whichever comes first; never queued without bound.
  std::string hello("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
  hello.append(std::string("\0\0\0\4\0\0\0\0\0", 9));
  std::string pings;
  for (int i = 0; i < 4096; ++i) pings.append(std::string("\0\0\x08\x06\0\0\0\0\0pingping", 17));
  ASSERT_EQ(send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(hello.size()));
  size_t sent = 0;
  bool cut = false;
  while (sent < (256u << 20) && !cut) {  // without the limit ztunnel would queue all of it
    ssize_t n = send(fd.get(), pings.data(), pings.size(), MSG_NOSIGNAL);
    if (n < 0) {
      cut = errno == EPIPE || errno == ECONNRESET;
      if (!cut) break;
    } else {
      sent += static_cast<size_t>(n);
    }
  }
  EXPECT_TRUE(cut) << "sent " << sent << " bytes of PINGs without being cut off";
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "weft_bad_input_total", {{"port", "http"}}) >= 1;
  })) << Metrics(*b_);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

TEST_F(DirectMeshHttp, PlaintextClientsAreAuthorizedPerRequestToo) {
  SetPolicies(R"(- name: get-only
  namespace: ns-b
  action: ALLOW
  rules:
  - to:
    - operation: {methods: ["GET"]}
)");
  auto fd = Plaintext(HttpAddr());
  weft::testing::HttpConn c(fd.get());
  auto r = c.Request("GET", "/x");
  EXPECT_EQ(r.status, 200) << r.error;
  r = c.Request("DELETE", "/x");
  EXPECT_EQ(r.status, 403) << r.error;
  EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
}

TEST_F(DirectMeshHttp, TapStreamsRequestsOnlyWhileSomeoneReads) {
  SetPolicies(kAllowPublicGet);
  auto tap = [&](uint64_t since) {
    auto body =
        weft::testing::HttpGet(b_->admin().admin_addr(), "/tap?since=" + std::to_string(since));
    EXPECT_TRUE(body.ok()) << body.status();
    return nlohmann::json::parse(body.ok() ? *body : "{}");
  };
  {
    auto fd = Outbound(HttpAddr());
    weft::testing::HttpConn c(fd.get());
    ASSERT_EQ(c.Request("GET", "/public/before").status, 200);
  }
  auto first = tap(0);
  EXPECT_TRUE(first["events"].empty()) << "nobody tapped: nothing was recorded";
  auto fd = Outbound(HttpAddr());
  weft::testing::HttpConn c(fd.get());
  ASSERT_EQ(c.Request("GET", "/public/a", "server",
                      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n")
                .status,
            200);
  ASSERT_EQ(c.Request("POST", "/public/a").status, 403);
  nlohmann::json events = nlohmann::json::array();
  uint64_t since = first["next"];
  ASSERT_TRUE(WaitFor([&] {
    auto page = tap(since);
    since = page["next"];
    for (auto& e : page["events"]) events.push_back(e);
    return events.size() >= 2;
  }));
  EXPECT_EQ(events[0]["path"], "/public/a");
  EXPECT_EQ(events[0]["status"], 200);
  EXPECT_EQ(events[0]["src_identity"], kClientId.ToString());
  EXPECT_EQ(events[0]["dst_workload"], "ns-b/server");
  EXPECT_EQ(events[0]["src_workload"], "ns-a/client");
  EXPECT_EQ(events[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736") << "as in the access log";
  EXPECT_EQ(events[1]["trace_id"], "");
  EXPECT_EQ(events[1]["method"], "POST");
  EXPECT_EQ(events[1]["status"], 403);
  EXPECT_EQ(events[1]["local_reply"], true);
  EXPECT_EQ(tap(0)["dropped"], 0);
  // Not on the metrics port: request paths and identities stay on loopback.
  int status = 0;
  auto on_metrics = weft::testing::HttpGet(b_->admin().metrics_addr(), "/tap", -1, &status);
  EXPECT_EQ(status, 404);
}

// The source side of L7: ztunnel A terminates HTTP to a Service port declared HTTP and chooses an
// endpoint per request among three server pods on ztunnel B (127.0.0.20, .21, .22), all serving
// the same target port.
class DirectMeshHttpSource : public DirectMesh {
 protected:
  static constexpr int kEndpoints = 3;
  static IpAddr EndpointIp(int i) { return *IpAddr::Parse("127.0.0.2" + std::to_string(i)); }
  static inline const SockAddr kVip = *SockAddr::Parse("10.96.0.20:80");

  // A gRPC service that answers every unary call with its endpoint's name; "/pkg.Svc/Flaky"
  // fails 30 % of calls with UNAVAILABLE (as /flaky does for HTTP), "/pkg.Svc/Slow" answers
  // after 1.5 s. It counts the calls it read and the request message bytes.
  class NamedEchoService : public grpc::CallbackGenericService {
   public:
    NamedEchoService(std::string name, int index) : name_(std::move(name)), index_(index) {}
    grpc::ServerGenericBidiReactor* CreateReactor(
        grpc::GenericCallbackServerContext* ctx) override {
      const bool fail = ctx->method() == "/pkg.Svc/Flaky" && Flaky(index_, flaky_.fetch_add(1));
      class Reactor : public grpc::ServerGenericBidiReactor {
       public:
        Reactor(NamedEchoService* svc, const std::string& name, bool fail, bool slow)
            : svc_(svc), name_(name), fail_(fail), slow_(slow) {
          StartRead(&req_);
        }
        void OnReadDone(bool ok) override {
          if (!ok) {
            Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
            return;
          }
          svc_->calls.fetch_add(1);
          svc_->message_bytes.fetch_add(static_cast<int64_t>(req_.Length()));
          if (fail_) {
            Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "flaky"));
            return;
          }
          if (slow_) {  // answers after 1.5 s, off the callback thread
            std::thread([this] {
              std::this_thread::sleep_for(std::chrono::milliseconds(1500));
              Answer();
            }).detach();
            return;
          }
          Answer();
        }
        void Answer() {
          grpc::Slice s(name_);
          resp_ = grpc::ByteBuffer(&s, 1);
          StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
        }
        void OnDone() override { delete this; }

       private:
        NamedEchoService* svc_;
        std::string name_;
        bool fail_, slow_;
        grpc::ByteBuffer req_, resp_;
      };
      return new Reactor(this, name_, fail, ctx->method() == "/pkg.Svc/Slow");
    }
    std::atomic<int> calls{0};
    std::atomic<int64_t> message_bytes{0};

   private:
    std::string name_;
    int index_;
    std::atomic<uint64_t> flaky_{0};
  };

  void SetUp() override {
    for (int i = 0; i < kEndpoints; ++i) {
      grpc_services_.push_back(
          std::make_unique<NamedEchoService>("server-" + std::to_string(i), i));
      grpc::ServerBuilder builder;
      int bound = 0;
      builder.AddListeningPort(EndpointIp(i).ToString() + ":" + std::to_string(grpc_port_),
                               grpc::InsecureServerCredentials(), &bound);
      builder.RegisterCallbackGenericService(grpc_services_.back().get());
      grpc_servers_.push_back(builder.BuildAndStart());
      ASSERT_TRUE(grpc_servers_.back() && bound > 0) << "gRPC server " << i;
      grpc_port_ = bound;
    }
    for (int i = 0; i < kEndpoints; ++i) {
      teashop::ServerOptions so;
      so.listen = EndpointIp(i).ToString() + ":" + std::to_string(port_);
      so.threads = 1;
      auto srv = teashop::Server::Start(
          so, [i, this](teashop::Request req) -> teashop::asio::awaitable<teashop::Response> {
            // Who answered, and the trace context it received.
            std::string body = "server-" + std::to_string(i) + " " +
                               std::string(req["traceparent"]) + " " +
                               std::string(req["x-request-id"]);
            // Behaviours for the traffic features (issue 15): /status/N answers N, /flaky
            // fails 30 % of requests (503, pseudo-random, independent per server), /fail-on/N:
            // server N answers 503, /delay/MS answers after MS milliseconds.
            const std::string target(req.target());
            hits_[i].fetch_add(1);
            auto status = teashop::http::status::ok;
            int arg = 0;
            if (absl::StartsWith(target, "/status/") && absl::SimpleAtoi(target.substr(8), &arg))
              status = static_cast<teashop::http::status>(arg);
            if (target == "/flaky" && Flaky(i, flaky_[i].fetch_add(1)))
              status = teashop::http::status::service_unavailable;
            if (absl::StartsWith(target, "/fail-on/") && target.substr(9) == std::to_string(i))
              status = teashop::http::status::service_unavailable;
            if (absl::StartsWith(target, "/delay/") && absl::SimpleAtoi(target.substr(7), &arg)) {
              teashop::asio::steady_timer t(co_await teashop::asio::this_coro::executor,
                                            std::chrono::milliseconds(arg));
              boost::system::error_code ec;
              co_await t.async_wait(
                  teashop::asio::redirect_error(teashop::asio::use_awaitable, ec));
            }
            // And what a route may have changed (issue 15).
            auto res = teashop::MakeResponse(status, body);
            res.set("x-echo-path", req.target());
            res.set("x-echo-host", req[teashop::http::field::host]);
            res.set("x-echo-route", req["x-route"]);
            co_return res;
          });
      ASSERT_TRUE(srv.ok()) << srv.status();
      if (i == 0) port_ = (*srv)->port();
      servers_.push_back(std::move(*srv));
    }
    for (int i = 1; i < kEndpoints; ++i) {
      extra_workloads_ +=
          "- {uid: ns-b/server" + std::to_string(i) + ", name: server" + std::to_string(i) +
          ", namespace: ns-b, serviceAccount: server, node: node-b, addresses: [\"" +
          EndpointIp(i).ToString() + "\"], protocol: HBONE, labels: {app: server, version: v1}}\n";
    }
    extra_services_ = Services(true);
    DirectMesh::SetUp();
    if (HasFatalFailure()) return;
    for (int i = 1; i < kEndpoints; ++i) {
      const std::string uid = "ns-b/server" + std::to_string(i);
      ASSERT_TRUE(b_->proxy()
                      .AddPod(uid, UniqueFd(),
                              PodListenAddrs{
                                  {}, {SockAddr{EndpointIp(i), 0}}, {SockAddr{EndpointIp(i), 0}}})
                      .ok());
      hbone_dial_[SockAddr{EndpointIp(i), 15008}.ToString()] =
          b_->proxy().BoundAddrs(uid)->hbone.at(0);
    }
  }

  // One worker on B: the three endpoints' HBONE connections then share it, so none is faster
  // for sitting alone on a worker (two workers made one endpoint systematically quicker, and a
  // latency-aware balancer rightly sent it more).
  void TuneOptions(ZtunnelOptions& o) override {
    if (o.node == "b.yaml") o.proxy.workers = 1;
  }

  std::string Services(bool ready) const {
    std::string y = R"(- name: web
  namespace: ns-b
  hostname: web.ns-b.svc.cluster.local
  addresses: ["10.96.0.20"]
  ports: [{port: 80, targetPort: )" +
                    std::to_string(port_) + R"(, name: web, appProtocol: http}]
  endpoints:
)";
    y += "  - {workloadUid: ns-b/server, ready: " + std::string(ready ? "true" : "false") + "}\n";
    for (int i = 1; i < kEndpoints; ++i)
      y += "  - {workloadUid: ns-b/server" + std::to_string(i) +
           ", ready: " + (ready ? "true" : "false") + "}\n";
    // The same endpoints serve gRPC behind a second Service.
    y += R"(- name: rpc
  namespace: ns-b
  hostname: rpc.ns-b.svc.cluster.local
  addresses: ["10.96.0.21"]
  ports: [{port: 80, targetPort: )" +
         std::to_string(grpc_port_) + R"(, name: grpc, appProtocol: grpc}]
  endpoints:
)";
    y += "  - {workloadUid: ns-b/server, ready: true}\n";
    for (int i = 1; i < kEndpoints; ++i)
      y += "  - {workloadUid: ns-b/server" + std::to_string(i) + ", ready: true}\n";
    return y;
  }

  // A's Services and traffic configuration become `extra` (B keeps its own); waits until A
  // runs it.
  void ApplyToA(const std::string& extra) {
    extra_services_ = extra;
    WriteConfig("a.yaml", "", "", server_sa_for_client_);
    const std::string want = "v" + std::to_string(version_);
    ASSERT_TRUE(WaitFor([&] { return a_->config().Get()->version() == want; }))
        << "ztunnel A did not load " << want;
  }

  // Rewrites A's config (B keeps its own) and waits until A runs it.
  void ReconfigureA(bool endpoints_ready) { ApplyToA(Services(endpoints_ready)); }

  // The balancer is load- and latency-aware: requests in flight go where fewer are outstanding
  // (a slower endpoint holds its requests longer, so it gets fewer), and with nothing outstanding
  // an endpoint more than 2x slower loses. On this shared 2-core machine an endpoint's server
  // thread is sometimes slower for a whole run; then its share is rightly smaller. So: even
  // within the tolerance below when the endpoints answered alike, and a
  // real share for every endpoint in any case (the balancer's own tests show ±10 % on equal
  // simulated endpoints).
  static void ExpectSpread(const std::map<std::string, int>& got, int total, double latency_ratio,
                           const std::string& shares) {
    // Allowed deviation from the even share: ±20 % when the client-measured means are within
    // 30 % (unloaded runs stay within ±5 %: 394/396/410 of 1,200; under ctest -j2 beside other
    // suites, ±11 % was seen with means within 8 %, as the client's own per-call overhead hides
    // the servers' differences in these means), else at least half the even share. The
    // balancer's simulated tests hold ±10 % on equal endpoints.
    const double even = static_cast<double>(total) / kEndpoints;
    const double tol = latency_ratio < 1.3 ? 0.2 : 0.5;
    for (const auto& [who, n] : got) {
      EXPECT_GE(n, even * (1 - tol)) << who << " (ratio " << latency_ratio << "):" << shares;
      if (tol < 0.5) EXPECT_LE(n, even * (1 + tol)) << who << ":" << shares;
    }
    std::cerr << "spread over the endpoints:" << shares << "\n";
  }

  // Which server answered a 200 ("server-N ..."), or -1.
  static int Answerer(const weft::testing::HttpResult& r) {
    if (r.status != 200 || r.body.rfind("server-", 0) != 0) return -1;
    return r.body[7] - '0';
  }

  // Whether server i fails its n-th /flaky request: splitmix64 of (i, n), 30 % of them.
  static bool Flaky(int i, uint64_t n) {
    uint64_t z = n * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(i + 1) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z % 1000 < 300;
  }
  // Requests each server received (all paths), and its /flaky counter.
  int Hits() const {
    int n = 0;
    for (const auto& h : hits_) n += h.load();
    return n;
  }
  std::array<std::atomic<int>, kEndpoints> hits_{};
  std::array<std::atomic<uint64_t>, kEndpoints> flaky_{};

  uint16_t port_ = 0;
  std::vector<std::unique_ptr<teashop::Server>> servers_;
  int grpc_port_ = 0;
  std::vector<std::unique_ptr<NamedEchoService>> grpc_services_;
  std::vector<std::unique_ptr<grpc::Server>> grpc_servers_;
};

TEST_F(DirectMeshHttpSource, OneGrpcConnectionSpreadsItsCallsOverEveryEndpoint) {
  // One h2c connection (a gRPC channel on one captured socket), 8 calls in flight at a time.
  auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
  ASSERT_TRUE(fd.valid());
  grpc::GenericStub stub(grpc::CreateInsecureChannelFromFd("rpc", fd.release()));
  constexpr int kThreads = 8, kCallsEach = 150, kCalls = kThreads * kCallsEach;
  std::mutex mu;
  std::map<std::string, int> got;
  std::map<std::string, double> us;  // client-measured call time per endpoint
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCallsEach; ++i) {
        std::string out;
        const auto t0 = std::chrono::steady_clock::now();
        grpc::Status st = GrpcCall(stub, "/pkg.Svc/Who", &out);
        const double took =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                .count();
        std::lock_guard<std::mutex> l(mu);
        if (st.ok()) {
          ++got[out];
          us[out] += took;
        } else {
          errors.push_back(std::to_string(st.error_code()) + ": " + st.error_message());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(errors.empty()) << errors.size() << " failed calls, first: " << errors[0];
  std::string shares;
  double fastest = 1e18, slowest = 0;
  for (const auto& [who, n] : got) {
    const double mean = us[who] / n;
    fastest = std::min(fastest, mean);
    slowest = std::max(slowest, mean);
    shares += absl::StrCat(" ", who, ": ", n, " calls, mean ", mean, " us;");
  }
  ASSERT_EQ(got.size(), static_cast<size_t>(kEndpoints)) << shares;
  ExpectSpread(got, kCalls, slowest / fastest, shares);
  // Source-reporter request metrics know them as gRPC with their grpc-status.
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"},
                   {"destination_service_name", "rpc"},
                   {"request_protocol", "grpc"},
                   {"grpc_response_status", "0"}}) == kCalls;
  })) << Metrics(*a_);
}

TEST_F(DirectMeshHttpSource, OneKeepAliveConnectionSpreadsItsRequestsOverEveryEndpoint) {
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  constexpr int kRequests = 3000;
  std::vector<int> got(kEndpoints);
  std::vector<double> us(kEndpoints);  // client-measured time per endpoint
  for (int i = 0; i < kRequests; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = c.Request("GET", "/item/" + std::to_string(i), "web.ns-b.svc.cluster.local");
    const int who = Answerer(r);
    ASSERT_GE(who, 0) << "request " << i << ": " << r.status << " " << r.body << " " << r.error;
    ++got[who];
    us[who] +=
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  double fastest = 1e18, slowest = 0;
  std::string shares;
  for (int i = 0; i < kEndpoints; ++i) {
    const double mean = us[i] / std::max(1, got[i]);
    fastest = std::min(fastest, mean);
    slowest = std::max(slowest, mean);
    shares += absl::StrCat(" endpoint ", i, ": ", got[i], " requests, mean ", mean, " us;");
  }
  std::map<std::string, int> by_name;
  for (int i = 0; i < kEndpoints; ++i) by_name["server-" + std::to_string(i)] = got[i];
  ExpectSpread(by_name, kRequests, slowest / fastest, shares);
  // One client connection, and one upstream per endpoint: the source's L4 view.
  const std::map<std::string, std::string> src = {{"reporter", "source"},
                                                  {"destination_service_name", "web"}};
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "istio_requests_total", src) == kRequests; }))
      << Metrics(*a_);
  for (const char* w : {"server", "server1", "server2"}) {
    auto labels = src;
    labels["destination_workload"] = w;
    labels["response_code"] = "200";
    labels["connection_security_policy"] = "mutual_tls";
    EXPECT_GT(Metric(*a_, "istio_requests_total", labels), 0) << w << "\n" << Metrics(*a_);
  }
  EXPECT_EQ(Metric(*a_, "istio_tcp_connections_opened_total", src), kEndpoints);
}

TEST_F(DirectMeshHttpSource, AnHttp1UpgradeToH2cIsTakenAndItsStreamsSpreadOverEndpoints) {
  // curl --http2 to an http:// URL of the gRPC port (appProtocol grpc: its servers speak HTTP/2):
  // the first request offers `Upgrade: h2c`; ztunnel answers the 101 itself, that request
  // becomes stream 1, and the other URLs follow as streams on the same connection, each routed
  // on its own. (The gRPC servers answer these plain GETs with a gRPC error: what counts here is
  // that every request reached one of them over HTTP/2.)
  weft::testing::LoopbackRelay relay(Outbound(*SockAddr::Parse("10.96.0.21:80")));
  ASSERT_NE(relay.port(), 0);
  TempDir dir;
  constexpr int kRequests = 30;
  std::vector<std::string> argv = {
      "/usr/bin/curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}\n"};
  for (int i = 0; i < kRequests; ++i)
    argv.push_back(absl::StrCat("http://127.0.0.1:", relay.port(), "/pkg.Svc/Who", i));
  weft::testing::ChildProcess curl(dir.path(), "curl", argv);
  ASSERT_EQ(curl.Wait(30s), 0) << curl.Err();
  std::vector<std::string> lines = absl::StrSplit(curl.Out(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), static_cast<size_t>(kRequests)) << curl.Out();
  for (const auto& l : lines) EXPECT_EQ(l.substr(0, 2), "2 ") << curl.Out();
  std::map<std::string, std::string> src = {{"reporter", "source"},
                                            {"destination_service_name", "rpc"}};
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "istio_requests_total", src) == kRequests; }))
      << Metrics(*a_);
  src["response_code"] = "503";
  EXPECT_EQ(Metric(*a_, "istio_requests_total", src), 0) << Metrics(*a_);
  src.erase("response_code");
  for (const char* w : {"server", "server1", "server2"}) {
    auto labels = src;
    labels["destination_workload"] = w;
    EXPECT_GT(Metric(*a_, "istio_requests_total", labels), 0) << w << "\n" << Metrics(*a_);
  }
}

TEST_F(DirectMeshHttpSource, AnHttp2ClientGetsAGoawayWhenZtunnelStops) {
  auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
  ASSERT_TRUE(fd.valid());
  // The client preface and an empty SETTINGS frame, then wait for ztunnel's SETTINGS.
  const std::string hello = std::string(l7::kHttp2Preface) + std::string("\0\0\0\4\0\0\0\0\0", 9);
  ASSERT_EQ(write(fd.get(), hello.data(), hello.size()), static_cast<ssize_t>(hello.size()));
  std::string got;
  auto read_some = [&] {
    char buf[4096];
    pollfd p{fd.get(), POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return false;
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
    return true;
  };
  ASSERT_TRUE(read_some()) << "no SETTINGS from ztunnel";
  a_->proxy().Stop();
  while (read_some()) {
  }
  // Frames: 3-byte length, type, flags, 4-byte stream id. GOAWAY is type 7, error code 0.
  bool goaway = false;
  for (size_t off = 0; off + 9 <= got.size();) {
    const auto* b = reinterpret_cast<const unsigned char*>(got.data() + off);
    const size_t len = (size_t{b[0]} << 16) | (size_t{b[1]} << 8) | b[2];
    if (b[3] == 7 && off + 9 + 8 <= got.size()) {
      goaway = b[9 + 4] == 0 && b[9 + 5] == 0 && b[9 + 6] == 0 && b[9 + 7] == 0;
    }
    off += 9 + len;
  }
  EXPECT_TRUE(goaway) << got.size() << " bytes from ztunnel, no GOAWAY (NO_ERROR) among them";
}

// Gateway API routes attached to the Service (issue 15), as weftd sends them: one rule per
// feature, and a second Service "web-v2" with server 2 only.
std::string RoutesYaml(uint16_t port, const std::string& rules) {
  return R"(- name: web-v2
  namespace: ns-b
  hostname: web-v2.ns-b.svc.cluster.local
  addresses: ["10.96.0.22"]
  ports: [{port: 80, targetPort: )" +
         std::to_string(port) + R"(, name: http, appProtocol: http}]
  endpoints: [{workloadUid: ns-b/server2, ready: true}]
- name: web-v1
  namespace: ns-b
  hostname: web-v1.ns-b.svc.cluster.local
  addresses: ["10.96.0.23"]
  ports: [{port: 80, targetPort: )" +
         std::to_string(port) + R"(, name: http, appProtocol: http}]
  endpoints: [{workloadUid: ns-b/server, ready: true}, {workloadUid: ns-b/server1, ready: true}]
httpRoutes:
- name: web-routes
  namespace: ns-b
  parentService: ns-b/web
  parentPort: 80
  rules:
)" + rules;
}

TEST_F(DirectMeshHttpSource, RoutesSendMatchesToTheirBackendsWithTheirFilters) {
  ASSERT_NO_FATAL_FAILURE(
      ApplyToA(Services(true) + RoutesYaml(port_, R"(  - matches: [{pathType: EXACT, path: /v2}]
    filters: [{requestHeaderModifier: {set: [{name: x-route, value: v2}]}}]
    backends: [{service: ns-b/web-v2, port: 80, weight: 1}]
  - matches: [{pathType: PATH_PREFIX, path: /old}]
    filters: [{requestRedirect: {path: {type: REPLACE_FULL_PATH, value: /new}, statusCode: 301}}]
  - matches: [{pathType: PATH_PREFIX, path: /api, headers: [{name: x-canary, value: "yes"}]}]
    filters: [{urlRewrite: {hostname: api.internal, path: {type: REPLACE_PREFIX_MATCH, value: /v1api}}}]
    backends: [{service: ns-b/web-v1, port: 80, weight: 1}]
  - matches: [{pathType: PATH_PREFIX, path: /shop}]
    backends: [{service: ns-b/web, port: 80, weight: 1}]
)")));

  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  for (int i = 0; i < 5; ++i) {  // exact path: the v2 Service (server 2 only), header set
    auto r = c.Request("GET", "/v2", "web", "x-route: client-value\r\n");
    ASSERT_EQ(Answerer(r), 2) << r.status << " " << r.body << r.error;
    EXPECT_EQ(r.headers["x-echo-route"], "v2");
    EXPECT_EQ(r.headers["x-echo-path"], "/v2");
  }
  std::set<int> answerers;
  for (int i = 0; i < 30; ++i) {  // a rewrite to the v1 Service (servers 0 and 1)
    auto r = c.Request("GET", "/api/items?x=1", "web", "x-canary: yes\r\n");
    const int who = Answerer(r);
    ASSERT_TRUE(who == 0 || who == 1) << r.status << " " << r.body << r.error;
    answerers.insert(who);
    EXPECT_EQ(r.headers["x-echo-path"], "/v1api/items?x=1");
    EXPECT_EQ(r.headers["x-echo-host"], "api.internal");
  }
  EXPECT_EQ(answerers.size(), 2u) << "per-request balancing within the backend";
  auto r = c.Request("GET", "/shop/tea", "web");  // the Service itself
  ASSERT_GE(Answerer(r), 0) << r.status << " " << r.body << r.error;
  EXPECT_EQ(r.headers["x-echo-route"], "");
  // Without the canary header nothing matches: Envoy's 404 "NR" (the connection then closes).
  r = c.Request("GET", "/api/items", "web");
  EXPECT_EQ(r.status, 404) << r.body << r.error;

  auto fd2 = Outbound(kVip);
  weft::testing::HttpConn c2(fd2.get());
  r = c2.Request("GET", "/old/page", "web");
  EXPECT_EQ(r.status, 301) << r.body << r.error;
  EXPECT_TRUE(absl::EndsWith(r.headers["location"], "/new")) << r.headers["location"];

  // Source-reporter metrics name the backend Service that served each request, and the 404's
  // response flag.
  std::map<std::string, std::string> v2 = {{"reporter", "source"},
                                           {"destination_service_name", "web-v2"}};
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "istio_requests_total", v2) == 5; }))
      << Metrics(*a_);
  EXPECT_EQ(Metric(*a_, "istio_requests_total",
                   {{"reporter", "source"}, {"destination_service_name", "web-v1"}}),
            30);
  EXPECT_EQ(Metric(*a_, "istio_requests_total",
                   {{"reporter", "source"}, {"response_code", "404"}, {"response_flags", "NR"}}),
            1)
      << Metrics(*a_);
}

TEST_F(DirectMeshHttpSource, AFaultAbortAnswersEveryRequestLocallyWithFI) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + R"(trafficPolicies:
- name: web-faults
  namespace: ns-b
  targetService: ns-b/web
  faultInjection: {abort: {httpStatus: 418, grpcStatus: -1, percentage: 100}}
)"));
  for (int i = 0; i < 3; ++i) {
    auto fd = Outbound(kVip);
    weft::testing::HttpConn c(fd.get());
    auto r = c.Request("GET", "/", "web");
    EXPECT_EQ(r.status, 418) << r.body << r.error;
    EXPECT_EQ(r.body, "fault filter abort");
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"}, {"response_code", "418"}, {"response_flags", "FI"}}) ==
           3;
  })) << Metrics(*a_);
  // Nothing reached a server.
  EXPECT_EQ(Metric(*a_, "istio_tcp_connections_opened_total",
                   {{"reporter", "source"}, {"destination_service_name", "web"}}),
            0);
}

TEST_F(DirectMeshHttpSource, AWeightedSplitSendsItsShareToEachBackend) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + RoutesYaml(port_, R"(  - backends:
    - {service: ns-b/web-v1, port: 80, weight: 90}
    - {service: ns-b/web-v2, port: 80, weight: 10}
)")));
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  constexpr int kRequests = 1000;
  int v2 = 0;
  for (int i = 0; i < kRequests; ++i) {
    auto r = c.Request("GET", "/", "web");
    const int who = Answerer(r);
    ASSERT_GE(who, 0) << r.status << " " << r.body << r.error;
    v2 += who == 2;
  }
  // 10 % of 1,000: binomial sd 9.5; +-5 sd.
  EXPECT_GE(v2, 52);
  EXPECT_LE(v2, 148);
}

// A TrafficPolicy on Service "web" (issue 15), in ztunnel's config form.
// Routes on Service ns-b/rpc (the gRPC one) with these rules.
std::string RpcRoutesYaml(const std::string& rules) {
  return "httpRoutes:\n- name: rpc-routes\n  namespace: ns-b\n  parentService: ns-b/rpc\n"
         "  parentPort: 80\n  rules:\n" +
         rules;
}

std::string PolicyYaml(const std::string& body) {
  return "trafficPolicies:\n- name: web-policy\n  namespace: ns-b\n  targetService: ns-b/web\n" +
         body;
}

// The seed's "retries hide a flaky backend" scenario: every server fails 3 of 10 requests;
// without retries the client sees those failures, with `retries` it sees (almost) none.
TEST_F(DirectMeshHttpSource, RetriesHideAFlakyBackend) {
  constexpr int kRequests = 300;
  auto success = [&] {
    auto fd = Outbound(kVip);
    weft::testing::HttpConn c(fd.get());
    int ok = 0;
    for (int i = 0; i < kRequests; ++i) {
      auto r = c.Request("GET", "/flaky", "web");
      if (r.status == 0) ADD_FAILURE() << r.error;
      ok += r.status == 200;
    }
    return ok;
  };
  const int before = success();
  EXPECT_LE(before, kRequests * 8 / 10) << "without retries the failures reach the client";
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + PolicyYaml(R"(  retries:
    attempts: 5
    retryOn: ["5xx"]
    budget: {retryRatio: 1.0, minRetriesPerSecond: 100, ttlMs: 10000}
)")));
  const int after = success();
  // An attempt fails with probability 0.3: six in a row (1 + 5 retries) 0.07 %.
  EXPECT_GE(after, kRequests - 3) << "before: " << before << "/" << kRequests;
  std::cerr << "success with retries: " << after << "/" << kRequests << " (without: " << before
            << ")\n";
  if (after < kRequests - 3) std::cerr << Metrics(*a_);
  EXPECT_GT(Metric(*a_, "weft_http_retries_total", {{"result", "retried"}}), 0) << Metrics(*a_);
}

// The retry budget stops amplification: a backend failing every request gets at most the
// budget's share of retries on top of the original requests, not `attempts` times each.
TEST_F(DirectMeshHttpSource, TheRetryBudgetStopsAmplificationWhenEveryRequestFails) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + PolicyYaml(R"(  retries:
    attempts: 5
    retryOn: ["5xx"]
    budget: {retryRatio: 0.2, minRetriesPerSecond: 1, ttlMs: 10000}
)")));
  constexpr int kRequests = 100;
  const int hits_before = Hits();
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  for (int i = 0; i < kRequests; ++i) {
    auto r = c.Request("GET", "/status/503", "web");
    ASSERT_EQ(r.status, 503) << r.error;
  }
  const int attempts = Hits() - hits_before;
  // Budget: 0.2 x 100 requests + 1/s x 10 s = 30 retries at most (5 x 100 without it).
  EXPECT_LE(attempts, kRequests + 30) << Metrics(*a_);
  EXPECT_GT(attempts, kRequests) << "some retries were allowed";
  EXPECT_GT(Metric(*a_, "weft_http_retries_total", {{"result", "budget_exhausted"}}), 0)
      << Metrics(*a_);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_traffic_retry_budget_exhausted_total",
                  {{"policy", "ns-b/web-policy"}}) > 0;
  })) << Metrics(*a_);
}

TEST_F(DirectMeshHttpSource, ARequestTimeoutIsAnswered504WithUT) {
  // 1 s: the request within it must make it on this loaded 2-core machine too (with 200 ms,
  // ctest -j2 beside the whole suite once made /delay/1 miss it).
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + RoutesYaml(port_, R"(  - requestTimeoutMs: 1000
    backends: [{service: ns-b/web, port: 80, weight: 1}]
)")));
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  auto r = c.Request("GET", "/delay/4000", "web");
  EXPECT_EQ(r.status, 504) << r.error;
  EXPECT_EQ(r.body, "upstream request timeout");
  auto fd2 = Outbound(kVip);
  weft::testing::HttpConn c2(fd2.get());
  r = c2.Request("GET", "/delay/1", "web");  // within the timeout
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"}, {"response_code", "504"}, {"response_flags", "UT"}}) ==
           1;
  })) << Metrics(*a_);
}

TEST_F(DirectMeshHttpSource, AFaultDelayHoldsEveryRequestAndIsFlaggedDI) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(
      Services(true) + PolicyYaml(R"(  faultInjection: {delay: {fixedDelayMs: 300, percentage: 100}}
)")));
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  for (int i = 0; i < 2; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto r = c.Request("GET", "/", "web");
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"}, {"response_code", "200"}, {"response_flags", "DI"}}) ==
           2;
  })) << Metrics(*a_);
}

// A circuit breaker tripping under overload: one request outstanding at most (http2MaxRequests
// 1); a second one meanwhile is refused locally with 503 "UO", the backend never sees it.
TEST_F(DirectMeshHttpSource, ACircuitBreakerAnswersOverflowWith503UO) {
  ASSERT_NO_FATAL_FAILURE(
      ApplyToA(Services(true) + PolicyYaml(R"(  connectionPool: {http2MaxRequests: 1}
)")));
  auto fd1 = Outbound(kVip);
  weft::testing::HttpConn c1(fd1.get());
  const int hits = Hits();
  const std::string slow = "GET /delay/1500 HTTP/1.1\r\nhost: web\r\n\r\n";
  ASSERT_EQ(send(fd1.get(), slow.data(), slow.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(slow.size()));
  ASSERT_TRUE(WaitFor([&] { return Hits() == hits + 1; })) << "the slow request arrived";
  auto fd2 = Outbound(kVip);
  weft::testing::HttpConn c2(fd2.get());
  auto r = c2.Request("GET", "/", "web");
  EXPECT_EQ(r.status, 503) << r.error;
  EXPECT_TRUE(absl::EndsWith(r.body, "reset reason: overflow")) << r.body;
  EXPECT_EQ(Hits(), hits + 1) << "the backend was protected";
  auto slow_r = c1.Exchange("");
  EXPECT_EQ(slow_r.status, 200) << slow_r.error;
  // Once the slow one is done, requests go through again.
  auto fd3 = Outbound(kVip);
  weft::testing::HttpConn c3(fd3.get());
  EXPECT_EQ(c3.Request("GET", "/", "web").status, 200);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"}, {"response_code", "503"}, {"response_flags", "UO"}}) ==
           1;
  })) << Metrics(*a_);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_traffic_overflows_total",
                  {{"policy", "ns-b/web-policy"}, {"limit", "requests"}}) == 1;
  })) << Metrics(*a_);
}

// Outlier detection: server 1 fails every request; after 3 consecutive 5xx it is ejected (no
// request reaches it), and after the ejection time it gets requests again.
TEST_F(DirectMeshHttpSource, OutlierDetectionEjectsAFailingEndpointAndBringsItBack) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + PolicyYaml(R"(  outlierDetection:
    consecutive5xxErrors: 3
    intervalMs: 100
    baseEjectionTimeMs: 1500
    maxEjectionPercent: 50
)")));
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  auto send_some = [&](int n) {
    int failed = 0;
    for (int i = 0; i < n; ++i) {
      auto r = c.Request("GET", "/fail-on/1", "web");
      EXPECT_NE(r.status, 0) << r.error;
      failed += r.status == 503;
    }
    return failed;
  };
  const auto start = std::chrono::steady_clock::now();
  const int first = send_some(30);
  EXPECT_LE(first, 3) << "ejected after its third consecutive 5xx";
  EXPECT_GE(first, 3) << "it got requests before";
  const int during = send_some(30);
  if (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1400))
    EXPECT_EQ(during, 0) << "an ejected endpoint gets no request";
  // Back after the ejection time: it fails again (and is ejected again).
  std::this_thread::sleep_for(std::chrono::milliseconds(1600));
  EXPECT_GE(send_some(30), 1) << "the endpoint came back";
  // Counted, per policy and Service.
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_traffic_ejections_total",
                  {{"policy", "ns-b/web-policy"},
                   {"service", "ns-b/web"},
                   {"detector", "consecutive_5xx"}}) >= 1;
  })) << Metrics(*a_);
}

// ResponseHeaderModifier: set, add and remove on the response, framing untouched.
TEST_F(DirectMeshHttpSource, AResponseHeaderModifierChangesTheResponseHead) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + RoutesYaml(port_, R"(  - filters:
    - responseHeaderModifier:
        set: [{name: x-echo-host, value: hidden}]
        add: [{name: x-served-by, value: weft}]
        remove: [x-echo-path]
    backends: [{service: ns-b/web, port: 80, weight: 1}]
)")));
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  for (int i = 0; i < 3; ++i) {  // keep-alive: the framing stayed right
    auto r = c.Request("GET", "/page", "web");
    ASSERT_GE(Answerer(r), 0) << r.status << r.error;
    EXPECT_EQ(r.headers["x-echo-host"], "hidden");
    EXPECT_EQ(r.headers["x-served-by"], "weft");
    EXPECT_EQ(r.headers.count("x-echo-path"), 0u);
  }
}

// ResponseHeaderModifier on HTTP/2 (gRPC): set, add and remove on the response head's metadata;
// the call and the connection carry on (pseudo-headers and framing untouched).
TEST_F(DirectMeshHttpSource, AResponseHeaderModifierChangesAnHttp2ResponseHead) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + RpcRoutesYaml(R"(  - filters:
    - responseHeaderModifier:
        set: [{name: content-type, value: application/grpc}, {name: x-served-by, value: weft}]
        add: [{name: x-tag, value: two}]
        remove: [grpc-accept-encoding]
    backends: [{service: ns-b/rpc, port: 80, weight: 1}]
)")));
  auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
  grpc::GenericStub stub(grpc::CreateInsecureChannelFromFd("rpc", fd.release()));
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    grpc::Slice sl(std::string("ping"));
    grpc::ByteBuffer req(&sl, 1), resp;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, "/pkg.Svc/Who", grpc::StubOptions(), &req, &resp,
                   [&](grpc::Status st) { done.set_value(std::move(st)); });
    grpc::Status st = done.get_future().get();
    ASSERT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
    std::multimap<std::string, std::string> md;
    for (const auto& [k, v] : ctx.GetServerInitialMetadata())
      md.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
    EXPECT_EQ(md.count("x-served-by"), 1u) << i;
    if (md.count("x-served-by")) EXPECT_EQ(md.find("x-served-by")->second, "weft");
    EXPECT_EQ(md.count("x-tag"), 1u) << i;
    EXPECT_EQ(md.count("grpc-accept-encoding"), 0u) << i;
  }
}

// HTTP/2 (gRPC): a fault delay holds each call's stream before it is routed (the codec's kDefer,
// as a retry's back-off does; l7/http2_server_test.cc) and flags it DI.
TEST_F(DirectMeshHttpSource, Http2StreamsGetFaultDelays) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + R"(trafficPolicies:
- name: rpc-policy
  namespace: ns-b
  targetService: ns-b/rpc
  faultInjection: {delay: {fixedDelayMs: 300, percentage: 100}}
)"));
  auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
  grpc::GenericStub stub(grpc::CreateInsecureChannelFromFd("rpc", fd.release()));
  std::string out;
  for (int i = 0; i < 2; ++i) {
    const auto start = std::chrono::steady_clock::now();
    grpc::Status st = GrpcCall(stub, "/pkg.Svc/Who", &out);
    EXPECT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"},
                   {"destination_service_name", "rpc"},
                   {"response_flags", "DI"}}) == 2;
  })) << Metrics(*a_);
}

// gRPC over HTTP/2: a retry policy with gRPC's status names hides UNAVAILABLE answers on one
// long-lived channel (trailers-only responses are judged at their head and sent again).
TEST_F(DirectMeshHttpSource, GrpcRetriesHideAFlakyBackendOnOneChannel) {
  constexpr int kCalls = 200;
  auto success = [&] {
    auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
    grpc::GenericStub stub(grpc::CreateInsecureChannelFromFd("rpc", fd.release()));
    int ok = 0;
    for (int i = 0; i < kCalls; ++i) {
      std::string out;
      grpc::Status st = GrpcCall(stub, "/pkg.Svc/Flaky", &out);
      if (!st.ok() && st.error_code() != grpc::StatusCode::UNAVAILABLE)
        ADD_FAILURE() << st.error_code() << " " << st.error_message();
      ok += st.ok();
    }
    return ok;
  };
  const int before = success();
  EXPECT_LE(before, kCalls * 8 / 10) << "without retries the failures reach the client";
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + R"(trafficPolicies:
- name: rpc-policy
  namespace: ns-b
  targetService: ns-b/rpc
  retries:
    attempts: 5
    retryOn: ["unavailable"]
    budget: {retryRatio: 1.0, minRetriesPerSecond: 100, ttlMs: 10000}
)"));
  const int after = success();
  std::cerr << "gRPC success with retries: " << after << "/" << kCalls << " (without: " << before
            << ")\n";
  EXPECT_GE(after, kCalls - 2);
  EXPECT_GT(Metric(*a_, "weft_http_retries_total", {{"result", "retried"}}), 0) << Metrics(*a_);
}

// HTTP/2: timeouts.request answers a stream that outlives it locally ("UT"; for gRPC, 200 with
// grpc-status UNAVAILABLE as Envoy maps 504); the channel and its other calls carry on.
TEST_F(DirectMeshHttpSource, AGrpcCallPastItsRequestTimeoutIsAnsweredLocallyWithUT) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + RpcRoutesYaml(R"(  - requestTimeoutMs: 300
    backends: [{service: ns-b/rpc, port: 80, weight: 1}]
)")));
  auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
  grpc::GenericStub stub(grpc::CreateInsecureChannelFromFd("rpc", fd.release()));
  std::string out;
  grpc::Status st = GrpcCall(stub, "/pkg.Svc/Slow", &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_EQ(st.error_message(), "upstream request timeout");
  st = GrpcCall(stub, "/pkg.Svc/Who", &out);  // the same channel
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"}, {"response_flags", "UT"}}) == 1;
  })) << Metrics(*a_);
}

// RequestMirror: every request is answered by the backends (servers 0 and 1), and a copy goes
// to the mirror Service (server 2 only), whose answers are dropped.
TEST_F(DirectMeshHttpSource, ARequestMirrorSendsACopyOfEveryRequest) {
  ASSERT_NO_FATAL_FAILURE(ApplyToA(
      Services(true) +
      RoutesYaml(port_,
                 R"(  - filters: [{requestMirror: {service: ns-b/web-v2, port: 80, percent: 100}}]
    backends: [{service: ns-b/web-v1, port: 80, weight: 1}]
)")));
  constexpr int kRequests = 10;
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  for (int i = 0; i < kRequests; ++i) {
    auto r = c.Request("GET", "/mirrored", "web");
    const int who = Answerer(r);
    ASSERT_TRUE(who == 0 || who == 1) << r.status << " " << r.body << r.error;
  }
  EXPECT_TRUE(WaitFor([&] { return hits_[2].load() == kRequests; }))
      << "mirror copies received: " << hits_[2].load();
  EXPECT_EQ(Metric(*a_, "weft_http_mirrors_total", {{"result", "sent"}}), kRequests);
}

// RequestMirror on HTTP/2 (issue 15): the rpc Service's route sends its calls to rpc-v1
// (servers 0 and 1) and mirrors them to `mirror` (rpc-v2: server 2 only; rpc-down: server 2's
// address on a port nobody listens on; rpc-empty: no ready endpoint).
std::string RpcMirrorYaml(int grpc_port, int closed_port, const std::string& mirror,
                          int percent = 100) {
  auto svc = [](const std::string& name, const std::string& addr, int port,
                const std::string& endpoints) {
    return "- name: " + name + "\n  namespace: ns-b\n  hostname: " + name +
           ".ns-b.svc.cluster.local\n  addresses: [\"" + addr +
           "\"]\n  ports: [{port: 80, targetPort: " + std::to_string(port) +
           ", name: grpc, appProtocol: grpc}]\n  endpoints: [" + endpoints + "]\n";
  };
  return svc("rpc-v1", "10.96.0.24", grpc_port,
             "{workloadUid: ns-b/server, ready: true}, {workloadUid: ns-b/server1, ready: true}") +
         svc("rpc-v2", "10.96.0.25", grpc_port, "{workloadUid: ns-b/server2, ready: true}") +
         svc("rpc-down", "10.96.0.26", closed_port, "{workloadUid: ns-b/server2, ready: true}") +
         svc("rpc-empty", "10.96.0.27", grpc_port, "{workloadUid: ns-b/server2, ready: false}") +
         RpcRoutesYaml("  - filters: [{requestMirror: {service: ns-b/" + mirror +
                       ", port: 80, percent: " + std::to_string(percent) + "}}]\n" +
                       "    backends: [{service: ns-b/rpc-v1, port: 80, weight: 1}]\n");
}

// A loopback port nobody listens on (bound, then closed).
int ClosedPort(const IpAddr& ip) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  inet_pton(AF_INET, ip.ToString().c_str(), &a.sin_addr);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  socklen_t len = sizeof a;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// gRPC calls on the mirrored route: every one answered by rpc-v1, and a copy of each, its
// message whole, reaches server 2 on a connection of its own; the copies' answers are dropped.
TEST_F(DirectMeshHttpSource, AnHttp2RequestMirrorCopiesEveryGrpcCallWithItsMessage) {
  ASSERT_NO_FATAL_FAILURE(
      ApplyToA(Services(true) + RpcMirrorYaml(grpc_port_, ClosedPort(EndpointIp(2)), "rpc-v2")));
  constexpr int kCalls = 10;
  const std::string message(20000, 'm');
  {
    auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
    grpc::GenericStub stub(grpc::CreateInsecureChannelFromFd("rpc", fd.release()));
    for (int i = 0; i < kCalls; ++i) {
      std::string out;
      grpc::Status st = GrpcCall(stub, "/pkg.Svc/Who", &out, i == 0 ? message : "ping");
      ASSERT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
      EXPECT_TRUE(out == "server-0" || out == "server-1") << out;
    }
  }
  EXPECT_TRUE(WaitFor([&] { return grpc_services_[2]->calls.load() == kCalls; }))
      << "mirrored calls received: " << grpc_services_[2]->calls.load();
  // The message bytes of every copy: the big one and nine "ping"s, whole.
  EXPECT_EQ(grpc_services_[2]->message_bytes.load(),
            static_cast<int64_t>(message.size() + 4 * (kCalls - 1)));
  EXPECT_EQ(grpc_services_[0]->calls.load() + grpc_services_[1]->calls.load(), kCalls);
  EXPECT_EQ(Metric(*a_, "weft_http_mirrors_total", {{"result", "sent"}}), kCalls);
  EXPECT_EQ(Metric(*a_, "weft_http_mirrors_total", {{"result", "dropped"}}), 0);
  // Each copy's connection closed once answered (the answer dropped): none failed.
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total",
                  {{"reporter", "source"}, {"destination_service_name", "rpc-v2"}}) == kCalls;
  })) << Metrics(*a_);
  EXPECT_EQ(Metric(*a_, "weft_http_mirrors_total", {{"result", "failed"}}), 0) << Metrics(*a_);
}

// h2c that is not gRPC (curl --http2-prior-knowledge against weft-h2echo's server): a GET
// without a body and a POST with one, both answered by the route's backend, both copied to the
// mirror Service with their bodies.
TEST_F(DirectMeshHttpSource, AnHttp2RequestMirrorCopiesH2cRequestsWithAndWithoutABody) {
  auto primary = bench::loadgen::H2EchoServer::Start(SockAddr{EndpointIp(0), 0});
  auto shadow = bench::loadgen::H2EchoServer::Start(SockAddr{EndpointIp(2), 0});
  ASSERT_TRUE(primary.ok() && shadow.ok());
  auto svc = [](const std::string& name, const std::string& addr, int port,
                const std::string& endpoint) {
    return "- name: " + name + "\n  namespace: ns-b\n  hostname: " + name +
           ".ns-b.svc.cluster.local\n  addresses: [\"" + addr +
           "\"]\n  ports: [{port: 80, targetPort: " + std::to_string(port) +
           ", name: http2, appProtocol: http2}]\n  endpoints: [{workloadUid: ns-b/" + endpoint +
           ", ready: true}]\n";
  };
  ASSERT_NO_FATAL_FAILURE(
      ApplyToA(Services(true) + svc("h2", "10.96.0.28", (*primary)->port(), "server") +
               svc("h2-v2", "10.96.0.29", (*shadow)->port(), "server2") +
               "httpRoutes:\n- name: h2-routes\n  namespace: ns-b\n  parentService: ns-b/h2\n"
               "  parentPort: 80\n  rules:\n"
               "  - filters: [{requestMirror: {service: ns-b/h2-v2, port: 80, percent: 100}}]\n"
               "    backends: [{service: ns-b/h2, port: 80, weight: 1}]\n"));
  TempDir dir;
  const std::string body_file = dir.path() + "/body";
  { std::ofstream(body_file) << std::string(30000, 'h'); }
  // One connection each (curl 7.88 fails a second transfer of a --next chain on a reused h2c
  // connection, with or without ztunnel between).
  auto request = [&](std::vector<std::string> args) {
    weft::testing::LoopbackRelay relay(Outbound(*SockAddr::Parse("10.96.0.28:80")));
    EXPECT_NE(relay.port(), 0);
    const std::string fmt = "%{http_version} %{http_code} %{size_download}";
    std::vector<std::string> argv = {
        "/usr/bin/curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", fmt};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.back() = absl::StrCat("http://127.0.0.1:", relay.port(), argv.back());
    weft::testing::ChildProcess curl(dir.path(), "curl", argv);
    EXPECT_EQ(curl.Wait(30s), 0) << curl.Err();
    return curl.Out();
  };
  EXPECT_EQ(request({"/get"}), "2 200 1024");
  EXPECT_EQ(request({"--data-binary", "@" + body_file, "/post"}), "2 200 30000");
  EXPECT_EQ((*primary)->requests(), 2);
  EXPECT_TRUE(WaitFor([&] { return (*shadow)->requests() == 2; }))
      << "copies received: " << (*shadow)->requests();
  EXPECT_EQ(Metric(*a_, "weft_http_mirrors_total", {{"result", "sent"}}), 2);
  // The POST's copy carried its body: the mirror's upstream sent at least that much.
  EXPECT_GE(Metric(*a_, "istio_tcp_sent_bytes_total",
                   {{"reporter", "source"}, {"destination_service_name", "h2-v2"}}),
            30000)
      << Metrics(*a_);
}

// A mirror that cannot be served changes nothing for the calls: its Service without a ready
// endpoint ("dropped"), its endpoint's server down ("sent", then "failed"), a body over the
// 64 KiB a copy keeps ("dropped"). Every call is answered by rpc-v1 as if no mirror existed.
TEST_F(DirectMeshHttpSource, AnHttp2MirrorThatIsDownOrTooBigNeverAffectsTheCalls) {
  const int closed = ClosedPort(EndpointIp(2));
  ASSERT_NE(closed, 0);
  auto calls = [&](int n, const std::string& message) {
    auto fd = Outbound(*SockAddr::Parse("10.96.0.21:80"));
    grpc::GenericStub stub(grpc::CreateInsecureChannelFromFd("rpc", fd.release()));
    for (int i = 0; i < n; ++i) {
      std::string out;
      grpc::Status st = GrpcCall(stub, "/pkg.Svc/Who", &out, message);
      ASSERT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
      EXPECT_TRUE(out == "server-0" || out == "server-1") << out;
    }
  };
  auto mirrors = [&](const char* result) {
    return Metric(*a_, "weft_http_mirrors_total", {{"result", result}});
  };
  ASSERT_NO_FATAL_FAILURE(
      ApplyToA(Services(true) + RpcMirrorYaml(grpc_port_, closed, "rpc-empty")));
  ASSERT_NO_FATAL_FAILURE(calls(3, "ping"));
  EXPECT_EQ(mirrors("dropped"), 3) << Metrics(*a_);
  EXPECT_EQ(mirrors("sent"), 0);

  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + RpcMirrorYaml(grpc_port_, closed, "rpc-down")));
  ASSERT_NO_FATAL_FAILURE(calls(3, "ping"));
  EXPECT_EQ(mirrors("sent"), 3);
  EXPECT_TRUE(WaitFor([&] { return mirrors("failed") == 3; })) << Metrics(*a_);

  ASSERT_NO_FATAL_FAILURE(ApplyToA(Services(true) + RpcMirrorYaml(grpc_port_, closed, "rpc-v2")));
  ASSERT_NO_FATAL_FAILURE(calls(2, std::string(100 * 1024, 'x')));
  EXPECT_EQ(mirrors("dropped"), 3 + 2) << Metrics(*a_);
  ASSERT_NO_FATAL_FAILURE(calls(1, "ping"));  // under the bound: mirrored again
  EXPECT_TRUE(WaitFor([&] { return grpc_services_[2]->calls.load() == 1; }))
      << grpc_services_[2]->calls.load();
  EXPECT_EQ(mirrors("sent"), 4);
  EXPECT_EQ(grpc_services_[0]->calls.load() + grpc_services_[1]->calls.load(), 3 + 3 + 2 + 1);
}

TEST_F(DirectMeshHttpSource, ClientsThatOpenAConnectionPerRequestReuseIdleUpstreams) {
  constexpr int kRequests = 30;
  for (int i = 0; i < kRequests; ++i) {
    auto fd = Outbound(kVip);
    weft::testing::HttpConn c(fd.get());
    auto r = c.Request("GET", "/", "web");
    ASSERT_GE(Answerer(r), 0) << i << ": " << r.status << " " << r.body << r.error;
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total", {{"reporter", "source"}}) == kRequests;
  }));
  // One upstream (an HBONE stream) per endpoint would do; a few more when a new client arrives
  // before the previous one's close was seen. Without the pool: one per request.
  const double opened = Metric(*a_, "istio_tcp_connections_opened_total",
                               {{"reporter", "source"}, {"destination_service_name", "web"}});
  EXPECT_LE(opened, 2 * kEndpoints) << Metrics(*a_);
  EXPECT_GE(opened, 1);
}

TEST_F(DirectMeshHttpSource, TraceContextIsCreatedWhenMissingAndPropagatedWhenPresent) {
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  auto r = c.Request("GET", "/", "web");
  ASSERT_GE(Answerer(r), 0) << r.body << r.error;
  std::vector<std::string> f = absl::StrSplit(r.body, ' ');
  ASSERT_EQ(f.size(), 3u) << r.body;
  std::vector<std::string> tp = absl::StrSplit(f[1], '-');
  ASSERT_EQ(tp.size(), 4u) << f[1];
  EXPECT_EQ(tp[0], "00");
  EXPECT_EQ(tp[1].size(), 32u);
  EXPECT_EQ(tp[2].size(), 16u);
  EXPECT_EQ(tp[3], "00") << "ztunnel records no span: not sampled";
  EXPECT_EQ(f[2].size(), 36u) << "x-request-id: a UUID";
  EXPECT_EQ(f[2][14], '4') << f[2];

  const std::string given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  r = c.Request("GET", "/", "web", "traceparent: " + given + "\r\nx-request-id: abc\r\n");
  ASSERT_GE(Answerer(r), 0) << r.body << r.error;
  EXPECT_EQ(r.body.substr(r.body.find(' ') + 1), given + " abc") << "propagated unchanged";

  r = c.Request("GET", "/", "web",
                "X-B3-TraceId: 80f198ee56343ba8\r\nX-B3-SpanId: e457b5a2e4d86bd1\r\n");
  ASSERT_GE(Answerer(r), 0) << r.body << r.error;
  EXPECT_NE(r.body.find(" 00-000000000000000080f198ee56343ba8-"), std::string::npos)
      << "a traceparent in the B3 trace: " << r.body;
}

TEST_F(DirectMeshHttpSource, NoReadyEndpointIsEnvoys503UHOnTheOpenConnection) {
  auto fd = Outbound(kVip);
  weft::testing::HttpConn c(fd.get());
  ASSERT_GE(Answerer(c.Request("GET", "/", "web")), 0);
  ReconfigureA(/*endpoints_ready=*/false);
  auto r = c.Request("GET", "/", "web");
  EXPECT_EQ(r.status, 503) << r.error;
  EXPECT_EQ(r.body, "no healthy upstream");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"}, {"response_code", "503"}, {"response_flags", "UH"}}) ==
           1;
  })) << Metrics(*a_);
}

TEST_F(DirectMeshHttpSource, AnEndpointWhoseServerIsGoneIsAvoidedAfterA503UF) {
  servers_[2]->Stop();
  int failures = 0, served = 0;
  for (int i = 0; i < 60; ++i) {
    auto fd = Outbound(kVip);
    weft::testing::HttpConn c(fd.get());
    auto r = c.Request("GET", "/", "web");
    if (r.status == 503) {
      ++failures;
      EXPECT_NE(r.body.find("upstream connect error"), std::string::npos) << r.body;
      EXPECT_TRUE(weft::testing::WaitClosed(fd.get()));
    } else {
      EXPECT_GE(Answerer(r), 0) << r.status << " " << r.body << r.error;
      EXPECT_NE(Answerer(r), 2);
      ++served;
    }
  }
  EXPECT_GE(served, 50) << "the dead endpoint costs failure_rtt and is avoided after a failure";
  EXPECT_GE(failures, 1) << "P2C offers the dead endpoint at first";
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_requests_total",
                  {{"reporter", "source"}, {"response_code", "503"}, {"response_flags", "UF"}}) ==
           failures;
  })) << Metrics(*a_);
}

TEST_F(DirectMeshHttpSource, AClientThatSendsNothingFallsBackToL4AfterTheDetectionTimeout) {
  // As a client of a server-first protocol behind a port declared HTTP by mistake would: it
  // waits. After a second its connection is L4; what it sends then is relayed unparsed.
  auto fd = Outbound(kVip);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_bad_input_total",
                  {{"port", "http"}, {"kind", "no_client_bytes_l4_fallback"}}) == 1;
  })) << Metrics(*a_);
  weft::testing::HttpConn c(fd.get());
  auto r = c.Request("GET", "/", "web");
  EXPECT_GE(Answerer(r), 0) << r.status << " " << r.body << r.error;
  EXPECT_EQ(r.body.find("00-"), std::string::npos) << "L4: no trace context added: " << r.body;
  EXPECT_EQ(Metric(*a_, "istio_requests_total", {{"reporter", "source"}}), 0);
}

TEST_F(DirectMeshHttpSource, BytesThatAreNotHttpFallBackToL4AndAreCounted) {
  // Nobody listens for this protocol behind the Service: the L4 path connects to the endpoint's
  // HTTP server, which answers garbage with 400; what matters is that ztunnel relayed it.
  auto fd = Outbound(kVip);
  const std::string hello = "\x16\x03\x01 not http";
  ASSERT_EQ(::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(hello.size()));
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_bad_input_total",
                  {{"port", "http"}, {"kind", "not_http_l4_fallback"}}) == 1;
  })) << Metrics(*a_);
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_opened_total",
                  {{"reporter", "source"}, {"destination_service_name", "web"}}) == 1;
  })) << Metrics(*a_);
  EXPECT_EQ(Metric(*a_, "istio_requests_total", {{"reporter", "source"}}), 0);
}

}  // namespace
}  // namespace weft::ztunnel
