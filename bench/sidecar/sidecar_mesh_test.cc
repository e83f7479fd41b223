// The sidecar reference mesh on a real 2-node testbed: HAProxy processes, iptables capture,
// mTLS on the fabric, refusal of clients without a mesh certificate, and a clean teardown.
#include <utility>  // Boost 1.74's asio/awaitable.hpp uses std::exchange without including it

#include "bench/sidecar/sidecar_mesh.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/loadgen/h2echo.h"
#include "bench/loadgen/loadgen.h"
#include "common/netns.h"
#include "common/status.h"
#include "common/testing/root.h"
#include "examples/teashop/http.h"
#include "gtest/gtest.h"
#include "tests/support/test_util.h"

namespace weft::bench::sidecar {
namespace {

using namespace std::chrono_literals;
using testbed::Testbed;

constexpr uint16_t kAppPort = 8080;

bool HaveHaproxy() {
  return testbed::Exec("", {"haproxy", "-v"}, {}, 10s).ok();
}

// The uid a process runs as (first field of "Uid:" in /proc/<pid>/status), or -1.
int ProcessUid(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (f >> key) {
    if (key == "Uid:") {
      int uid = -1;
      f >> uid;
      return uid;
    }
  }
  return -1;
}

class SidecarMeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, iptables");
    if (!HaveHaproxy()) GTEST_SKIP() << "haproxy is not installed (scripts/deps.sh installs it)";
    testbed::Options o;
    o.prefix = testbed::UniquePrefix("t");
    o.nodes = 2;
    o.ipv6 = false;
    // client on node 0; server and a same-node peer on node 1.
    o.pods = {{"client", 0}, {"server", 1}, {"peer", 1}};
    auto tb = Testbed::Create(o);
    ASSERT_TRUE(tb.ok()) << tb.status();
    tb_ = std::move(*tb);
    auto server = tb_->Pod("server");
    ASSERT_TRUE(server.ok());
    server_ = *server;
    auto nsfd = OpenNetns(testbed::NetnsPath(server_.netns));
    ASSERT_TRUE(nsfd.ok()) << nsfd.status();
    echo_ = std::make_unique<testing::EchoServer>(SockAddr{*IpAddr::Parse("127.0.0.1"), kAppPort},
                                                  nsfd->get());

    SidecarOptions so;
    so.work_dir = tmp_.path();
    so.log_connections = true;  // the logs explain a failure
    vip_ = SockAddr{*IpAddr::Parse("10.96.0.10"), 80};
    auto mesh = SidecarMesh::Start(*tb_, {{"client", {}}, {"server", {kAppPort}}, {"peer", {}}},
                                   {{"echo", vip_.ip, vip_.port, {"server"}, kAppPort}}, so);
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = std::move(*mesh);
  }

  std::string RoundTrip(const std::string& pod, const SockAddr& to, const std::string& msg) {
    auto p = tb_->Pod(pod);
    if (!p.ok()) return "no pod";
    auto fd = testbed::DialFromPod(*p, to, 5s);
    if (!fd.ok()) return "dial failed: " + std::string(fd.status().message());
    return testing::EchoRoundTrip(fd->get(), msg, 5s);
  }

  // A TLS connection from `pod` to the server's sidecar (optionally with a client certificate);
  // returns what came back for `msg` ("" on any failure).
  std::string TlsRoundTrip(const std::string& pod, const std::string& cert_file,
                           const std::string& msg) {
    auto p = tb_->Pod(pod);
    if (!p.ok()) return "";
    auto fd = testbed::DialFromPod(*p, SockAddr{server_.ip, 15443}, 5s);
    if (!fd.ok()) return "";
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx, mesh_->ca_cert_path().c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!cert_file.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str());
      SSL_CTX_use_PrivateKey_file(ctx, cert_file.c_str(), SSL_FILETYPE_PEM);
    }
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd->get());
    SSL_set_tlsext_host_name(ssl, "port-8080.server.default.server.sidecar.weft");
    std::string got;
    if (SSL_connect(ssl) == 1 && SSL_write(ssl, msg.data(), static_cast<int>(msg.size())) > 0) {
      char buf[256];
      while (got.size() < msg.size()) {
        int n = SSL_read(ssl, buf, sizeof(buf));
        if (n <= 0) break;
        got.append(buf, n);
      }
    }
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return got;
  }

  testing::TempDir tmp_;
  std::unique_ptr<Testbed> tb_;
  testbed::PodInfo server_;
  SockAddr vip_;
  std::unique_ptr<testing::EchoServer> echo_;
  std::unique_ptr<SidecarMesh> mesh_;
};

TEST_F(SidecarMeshTest, CrossNodeTrafficIsMtlsOnTheFabric) {
  auto cap = testbed::StartCapture(tb_->FabricNetns(), "br0", tmp_.path() + "/fabric.pcap", "tcp");
  ASSERT_TRUE(cap.ok()) << cap.status();
  const std::string msg = "weft-sidecar-plaintext-marker-0123456789";
  EXPECT_EQ(RoundTrip("client", SockAddr{server_.ip, kAppPort}, msg), msg);
  EXPECT_EQ(RoundTrip("client", vip_, msg + "-vip"), msg + "-vip");
  ASSERT_TRUE(cap->Stop().ok());
  auto has = testbed::PcapContains(cap->pcap_path(), "weft-sidecar-plaintext-marker");
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_FALSE(*has) << "the payload crossed the fabric in clear";
  auto sum = testbed::PcapSummary(cap->pcap_path(), {15443});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_GE(sum->tls_handshake_records, 2);
  EXPECT_GE(sum->tls_app_data_records, 2);
  EXPECT_GE(echo_->accepted(), 2);
  auto out = mesh_->ConnectionCounts("client");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->outbound, 2);  // both connections were captured by the client's sidecar
  auto in = mesh_->ConnectionCounts("server");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_GE(in->inbound, 2);
  EXPECT_EQ(in->outbound, 0);
}

TEST_F(SidecarMeshTest, SameNodePairAndProxiesRunAsTheProxyUser) {
  const std::string msg = "same-node hello";
  EXPECT_EQ(RoundTrip("peer", SockAddr{server_.ip, kAppPort}, msg), msg);
  EXPECT_EQ(RoundTrip("peer", vip_, msg), msg);
  ASSERT_EQ(mesh_->ProxyPids().size(), 3u);
  for (pid_t pid : mesh_->ProxyPids()) {
    EXPECT_NE(ProcessUid(pid), 0) << "haproxy " << pid << " kept root";
  }
}

TEST_F(SidecarMeshTest, ClientsWithoutAMeshCertificateAreRefused) {
  const std::string msg = "let me in";
  auto client = tb_->Pod("client");
  ASSERT_TRUE(client.ok());
  // Positive control: the same TLS client with the client pod's mesh certificate gets through.
  auto cert = mesh_->PodCertPath("client");
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(TlsRoundTrip("client", *cert, msg), msg);
  // TLS without a client certificate.
  EXPECT_EQ(TlsRoundTrip("client", "", msg), "");
  // Plain TCP to the inbound port.
  auto fd = testbed::DialFromPod(*client, SockAddr{server_.ip, 15443}, 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_NE(testing::EchoRoundTrip(fd->get(), msg, 3s), msg);
  // Plain TCP from outside the mesh (the node) to the app port meets the inbound TLS port.
  auto node_ns = OpenNetns(testbed::NetnsPath(*tb_->NodeNetns(0)));
  ASSERT_TRUE(node_ns.ok());
  auto fd2 = testing::Dial(SockAddr{server_.ip, kAppPort}, node_ns->get(), 5s);
  ASSERT_TRUE(fd2.ok()) << fd2.status();
  EXPECT_NE(testing::EchoRoundTrip(fd2->get(), msg, 3s), msg);
  EXPECT_EQ(echo_->accepted(), 1) << "only the certified connection may reach the app";
}

TEST_F(SidecarMeshTest, StopLeavesNoProcessOrChain) {
  ASSERT_FALSE(mesh_->Leftovers().empty());  // it is running: proxies and chains exist
  std::vector<pid_t> pids = mesh_->ProxyPids();
  EXPECT_TRUE(mesh_->Stop().ok());
  EXPECT_TRUE(mesh_->Leftovers().empty());
  for (pid_t pid : pids) EXPECT_NE(kill(pid, 0), 0) << pid;
  auto dump = testbed::Exec(server_.netns, {"iptables-save", "-t", "nat"});
  ASSERT_TRUE(dump.ok());
  EXPECT_EQ(dump->find(mesh_->chain_prefix()), std::string::npos) << *dump;
  // Traffic is no longer captured: a plain connection reaches nothing on the app port.
  auto client = tb_->Pod("client");
  ASSERT_TRUE(client.ok());
  EXPECT_NE(RoundTrip("client", vip_, "x"), "x");
  EXPECT_TRUE(mesh_->Stop().ok());  // idempotent
}

// The HTTP sidecar mesh (SidecarOptions::http): HTTP/1.1, h2c and gRPC through two sidecars in
// `mode http` (requests counted by the client's sidecar, which only HTTP parsing does), raw TCP
// still proxied on a port declared TCP.
TEST(SidecarMeshHttpTest, HttpH2cAndGrpcThroughHttpModeSidecars) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces, iptables");
  if (!HaveHaproxy()) GTEST_SKIP() << "haproxy is not installed (scripts/deps.sh installs it)";
  testbed::Options o;
  o.prefix = testbed::UniquePrefix("t");
  o.nodes = 2;
  o.ipv6 = false;
  o.pods = {{"client", 0}, {"server", 1}};
  auto tb = Testbed::Create(o);
  ASSERT_TRUE(tb.ok()) << tb.status();
  auto server = (*tb)->Pod("server");
  auto client = (*tb)->Pod("client");
  ASSERT_TRUE(server.ok() && client.ok());
  auto nsfd = OpenNetns(testbed::NetnsPath(server->netns));
  ASSERT_TRUE(nsfd.ok()) << nsfd.status();
  constexpr uint16_t kH1 = 8080, kH2 = 8081, kTcp = 9000;
  std::unique_ptr<teashop::Server> h1;
  std::unique_ptr<loadgen::H2EchoServer> h2;
  ASSERT_TRUE(RunInNetns(nsfd->get(), [&]() -> absl::Status {
                teashop::ServerOptions so;
                so.listen = absl::StrCat("127.0.0.1:", kH1);
                so.threads = 1;
                WEFT_ASSIGN_OR_RETURN(
                    h1,
                    teashop::Server::Start(
                        so, [](teashop::Request) -> teashop::asio::awaitable<teashop::Response> {
                          co_return teashop::MakeResponse(teashop::http::status::ok, "ok");
                        }));
                WEFT_ASSIGN_OR_RETURN(
                    h2, loadgen::H2EchoServer::Start(SockAddr{*IpAddr::Parse("127.0.0.1"), kH2}));
                return absl::OkStatus();
              }).ok());
  testing::EchoServer tcp(SockAddr{*IpAddr::Parse("127.0.0.1"), kTcp}, nsfd->get());

  testing::TempDir tmp;
  SidecarOptions so;
  so.work_dir = tmp.path();
  so.http = true;
  SidecarPod sp{"server", {kH1, kH2, kTcp}};
  sp.port_protocols = {{kH1, AppProtocol::kHttp}, {kH2, AppProtocol::kHttp2}};
  const IpAddr vip = *IpAddr::Parse("10.96.0.20");
  std::vector<SidecarService> svcs = {{"h1", vip, 80, {"server"}, kH1},
                                      {"h2", vip, 81, {"server"}, kH2},
                                      {"tcp", vip, 82, {"server"}, kTcp}};
  svcs[0].protocol = AppProtocol::kHttp;
  svcs[1].protocol = AppProtocol::kHttp2;
  auto mesh = SidecarMesh::Start(**tb, {{"client", {}}, sp}, svcs, so);
  ASSERT_TRUE(mesh.ok()) << mesh.status();

  auto load = [&](uint16_t port, loadgen::Protocol p) {
    loadgen::Options lo;
    lo.target = absl::StrCat("http://", vip.ToString(), ":", port);
    lo.netns = testbed::NetnsPath(client->netns);
    lo.protocol = p;
    lo.users = 2;
    lo.total_rate = 100;
    lo.warmup = std::chrono::milliseconds(0);
    lo.duration = std::chrono::milliseconds(500);
    lo.profile.requests.push_back({"echo", "POST", "/echo", std::string(1024, 'f'), {}});
    return loadgen::Run(lo);
  };
  for (auto [port, p] :
       std::vector<std::pair<uint16_t, loadgen::Protocol>>{{80, loadgen::Protocol::kHttp1},
                                                           {81, loadgen::Protocol::kH2c},
                                                           {81, loadgen::Protocol::kGrpc}}) {
    SCOPED_TRACE(loadgen::ProtocolName(p));
    auto r = load(port, p);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->overall.ok, r->scheduled) << r->Summary();
    EXPECT_EQ(r->errors(), 0u) << r->Summary();
  }
  auto c = (*mesh)->ConnectionCounts("client");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_GE(c->outbound_http_requests, 150) << "the client's sidecar parsed the requests";
  EXPECT_GE(h2->requests(), 100);
  auto fd = testbed::DialFromPod(*client, SockAddr{vip, 82}, 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(testing::EchoRoundTrip(fd->get(), "raw bytes", 5s), "raw bytes");
  EXPECT_TRUE((*mesh)->Stop().ok());
}

TEST(SidecarMeshArgsTest, BadInputIsAClearError) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  testbed::Options o;
  o.prefix = testbed::UniquePrefix("t");
  o.ipv6 = false;
  o.pods = {{"a", 0}};
  auto tb = Testbed::Create(o);
  ASSERT_TRUE(tb.ok()) << tb.status();
  testing::TempDir tmp;
  SidecarOptions so;
  so.work_dir = tmp.path();
  auto r =
      SidecarMesh::Start(**tb, {{"a", {80}}}, {{"s", *IpAddr::Parse("10.96.0.1"), 80, {"b"}}}, so);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'b'"), std::string::npos) << r.status();
  r = SidecarMesh::Start(**tb, {{"nope", {80}}}, {}, so);
  EXPECT_FALSE(r.ok());
  so.work_dir = tmp.path() + "/missing";
  r = SidecarMesh::Start(**tb, {{"a", {80}}}, {}, so);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("work_dir"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace weft::bench::sidecar
