// The direct-tier mesh fixtures that several test files share (direct_test.cc,
// direct_http_hardening_test.cc): two real ztunnels in one process on loopback (A holds the client
// pod, B the server pod), real TLS 1.3 mTLS, real nghttp2, real sockets, port 0 everywhere. The
// only seam is the original-destination provider (no netfilter here): a table keyed by the
// client's address. DirectMeshHttp adds an HTTP server (teashop) behind B that answers every
// request with "METHOD TARGET".
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "common/scrape/scrape.h"
#include "examples/teashop/http.h"
#include "tests/support/direct_mesh.h"
#include "tests/support/test_util.h"
#include "ztunnel/app/ztunnel_app.h"

namespace weft::ztunnel::direct_fixture {

using namespace std::chrono_literals;
using weft::testing::EchoServer;
using weft::testing::kClientId;
using weft::testing::kClientIp;
using weft::testing::kServerId;
using weft::testing::kServerIp;
using weft::testing::MetricSum;
using weft::testing::TableOrigDst;
using weft::testing::TempDir;
using weft::testing::WaitFor;

class DirectMesh : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!skip_certs_) {
      auto ca = weft::testing::MakeMeshCerts(dir_.path() + "/certs", {kClientId, kServerId});
      ASSERT_TRUE(ca.ok()) << ca.status();
      ca_ = std::make_unique<tls::CertificateAuthority>(std::move(*ca));
    }
    echo_ = std::make_unique<EchoServer>(SockAddr{kServerIp, 0});
    outside_ = std::make_unique<EchoServer>(*SockAddr::Parse("127.0.0.30:0"));
    WriteConfig("a.yaml", "", "", server_sa_for_client_);
    WriteConfig("b.yaml", "", "");
    b_ = Start("b.yaml", &orig_b_, 2);
    ASSERT_TRUE(b_);
    ASSERT_TRUE(b_->proxy()
                    .AddPod("ns-b/server", UniqueFd(),
                            PodListenAddrs{{}, {SockAddr{kServerIp, 0}}, {SockAddr{kServerIp, 0}}})
                    .ok());
    auto bound = *b_->proxy().BoundAddrs("ns-b/server");
    b_hbone_ = bound.hbone.at(0);
    b_plain_ = bound.inbound_plain.at(0);
    a_ = Start("a.yaml", &orig_a_, 1);
    ASSERT_TRUE(a_);
    ASSERT_TRUE(
        a_->proxy()
            .AddPod("ns-a/client", UniqueFd(), PodListenAddrs{{SockAddr{kClientIp, 0}}, {}, {}})
            .ok());
    a_out_ = a_->proxy().BoundAddrs("ns-a/client")->outbound.at(0);
  }

  // A subclass's changes to both ztunnels' options (e.g. short HTTP timeouts).
  virtual void TuneOptions(ZtunnelOptions&) {}

  std::unique_ptr<ZtunnelApp> Start(const std::string& cfg, OrigDstProvider* orig, int workers) {
    ZtunnelOptions o;
    o.node = cfg;
    o.config_file = dir_.path() + "/" + cfg;
    o.certs_dir = dir_.path() + (cfg == "a.yaml" && !a_certs_.empty() ? a_certs_ : "/certs");
    o.admin_addr = *SockAddr::Parse("127.0.0.1:0");
    o.metrics_addr = *SockAddr::Parse("127.0.0.1:0");
    o.readiness_addr = *SockAddr::Parse("127.0.0.1:0");
    o.proxy.workers = workers;
    o.proxy.mark = 0;
    o.proxy.handshake_timeout = 3s;
    o.proxy.dial_override = [this](const SockAddr& a) {
      if (auto it = hbone_dial_.find(a.ToString()); it != hbone_dial_.end()) return it->second;
      return a == SockAddr{kServerIp, 15008} ? b_hbone_ : a;
    };
    TuneOptions(o);
    auto app = std::make_unique<ZtunnelApp>(o);
    app->SetOrigDstProvider(orig);
    auto st = app->Start();
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() ? std::move(app) : nullptr;
  }

  // The mesh as both ztunnels see it; `server_sa` lets a test lie to ztunnel A about the
  // server's identity (SAN mismatch).
  void WriteConfig(const std::string& file, const std::string& policies,
                   const std::string& peer_authns, const std::string& server_sa = "server") {
    std::string y = R"(version: "v)" + std::to_string(++version_) + R"("
workloads:
- uid: ns-a/client
  name: client
  namespace: ns-a
  serviceAccount: client
  node: node-a
  addresses: ["127.0.0.10"]
  protocol: HBONE
  labels: {app: client}
- uid: ns-b/server
  name: server
  namespace: ns-b
  serviceAccount: )" +
                    server_sa + R"(
  node: node-b
  addresses: ["127.0.0.20"]
  protocol: HBONE
  labels: {app: server, version: v1}
)" + extra_workloads_ +
                    R"(services:
- name: echo
  namespace: ns-b
  hostname: echo.ns-b.svc.cluster.local
  addresses: ["10.96.0.10"]
  ports: [{port: 80, targetPort: )" +
                    std::to_string(echo_->addr().port) + R"(, name: tcp-echo}]
  endpoints: [{workloadUid: ns-b/server, ready: true}]
- name: empty
  namespace: ns-b
  hostname: empty.ns-b.svc.cluster.local
  addresses: ["10.96.0.11"]
  ports: [{port: 80}]
)" + extra_services_;
    if (!policies.empty()) y += "authorizationPolicies:\n" + policies;
    if (!peer_authns.empty()) y += "peerAuthentications:\n" + peer_authns;
    dir_.Write(file, y);
  }

  // Applies the same policies to B and waits until B runs the new version.
  void SetPolicies(const std::string& policies, const std::string& peer_authns = "") {
    WriteConfig("b.yaml", policies, peer_authns);
    std::string want = "v" + std::to_string(version_);
    ASSERT_TRUE(WaitFor([&] { return b_->config().Get()->version() == want; }))
        << "ztunnel B did not load " << want;
  }

  // A client socket from the client pod's address whose original destination is `target`.
  UniqueFd ConnectVia(const SockAddr& listener, OrigDstProvider* orig_as, TableOrigDst* table,
                      const SockAddr& target) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss;
    socklen_t len = SockAddr{kClientIp, 0}.ToSockaddr(&ss);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    table->Set(*LocalAddress(fd), target);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    len = listener.ToSockaddr(&ss);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    return UniqueFd(fd);
  }
  UniqueFd Outbound(const SockAddr& target) {
    return ConnectVia(a_out_, &orig_a_, &orig_a_, target);
  }
  UniqueFd Plaintext(const SockAddr& target) {
    return ConnectVia(b_plain_, &orig_b_, &orig_b_, target);
  }
  SockAddr EchoAddr() const { return echo_->addr(); }

  std::string Metrics(ZtunnelApp& app) {
    auto body = weft::testing::HttpGet(app.admin().metrics_addr(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    return body.ok() ? *body : "";
  }
  double Metric(ZtunnelApp& app, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
    return MetricSum(Metrics(app), name, labels);
  }
  // Asserts a working tunnel through both ztunnels.
  void ExpectTunnelWorks(const std::string& why) {
    auto fd = Outbound(EchoAddr());
    EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "still serving"), "still serving") << why;
  }

  TempDir dir_;
  std::unique_ptr<tls::CertificateAuthority> ca_;
  std::unique_ptr<EchoServer> echo_, outside_;
  TableOrigDst orig_a_, orig_b_;
  std::unique_ptr<ZtunnelApp> a_, b_;
  SockAddr b_hbone_, b_plain_, a_out_;
  int version_ = 0;
  std::string server_sa_for_client_ = "server";
  bool skip_certs_ = false;  // a subclass made the certificates
  std::string a_certs_;      // ztunnel A's certificate dir, relative to dir_ (default: shared)
  // Subclasses: more workloads and services in both configs, and where their pods' HBONE
  // listeners really are ("ip:15008" -> bound address).
  std::string extra_workloads_, extra_services_;
  std::map<std::string, SockAddr> hbone_dial_;
};

class DirectMeshHttp : public DirectMesh {
 protected:
  void SetUp() override {
    DirectMesh::SetUp();
    if (HasFatalFailure()) return;
    teashop::ServerOptions so;
    so.listen = kServerIp.ToString() + ":0";
    so.threads = 1;
    auto srv = teashop::Server::Start(
        so, [](teashop::Request req) -> teashop::asio::awaitable<teashop::Response> {
          co_return teashop::MakeResponse(
              teashop::http::status::ok,
              std::string(req.method_string()) + " " + std::string(req.target()));
        });
    ASSERT_TRUE(srv.ok()) << srv.status();
    http_ = std::move(*srv);
  }
  SockAddr HttpAddr() const { return SockAddr{kServerIp, http_->port()}; }
  double Denials() { return Metric(*b_, "weft_policy_denials_total"); }

  // ALLOW GET on /public/* from ns-a; every other request is denied.
  static constexpr const char* kAllowPublicGet = R"(- name: public-get
  namespace: ns-b
  action: ALLOW
  rules:
  - from:
    - source: {namespaces: ["ns-a"]}
    to:
    - operation: {methods: ["GET"], paths: ["/public/*"]}
)";

  std::unique_ptr<teashop::Server> http_;
};

}  // namespace weft::ztunnel::direct_fixture
