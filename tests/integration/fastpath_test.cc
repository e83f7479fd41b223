// Same-node fast path, direct tier: in-process ztunnels on loopback, port 0 everywhere. Ztunnel
// A holds two pods (client and server, "on the same node"), ztunnel B a third (remote, another
// node). Traffic client -> server must take the fast path (no HBONE, no TLS, destination policy
// applied with the client's identity, both reporters in the metrics as "same_node"); client ->
// remote must still use HBONE, and with the fast path switched off so must client -> server.
// As in direct_test.cc, the only seam is the original-destination table.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/testing/root.h"
#include "tests/support/direct_mesh.h"
#include "tests/support/test_util.h"
#include "ztunnel/app/ztunnel_app.h"

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using weft::testing::EchoRoundTrip;
using weft::testing::EchoServer;
using weft::testing::kClientId;
using weft::testing::kClientIp;
using weft::testing::kServerId;
using weft::testing::kServerIp;
using weft::testing::MetricSum;
using weft::testing::TableOrigDst;
using weft::testing::TempDir;
using weft::testing::WaitClosed;
using weft::testing::WaitFor;

const SpiffeId kRemoteId{"cluster.local", "ns-c", "remote"};
const IpAddr kRemoteIp = *IpAddr::Parse("127.0.0.40");

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

std::string RandomBytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t k =
        send(fd, data.data() + off, std::min<size_t>(1 << 20, data.size() - off), MSG_NOSIGNAL);
    if (k <= 0) return false;
    off += static_cast<size_t>(k);
  }
  return true;
}

// Reads until EOF (true) or an error/timeout (false, errno kept in *err).
bool ReadAll(int fd, std::string* out, int* err = nullptr) {
  char buf[1 << 16];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0) {
      if (err) *err = errno;
      return false;
    }
    out->append(buf, static_cast<size_t>(n));
  }
}

// The server `s` reads all of `data` (which `writer` sends from the client `c`, then
// half-closes), in order, then the FIN; the other direction still works after it: "done" back
// to the client, then the server's FIN. Joins `writer`; closes `s`.
void ExpectStreamThenReply(UniqueFd& c, UniqueFd& s, const std::string& data, std::thread& writer) {
  std::string seen;
  seen.reserve(data.size());
  EXPECT_TRUE(ReadAll(s.get(), &seen)) << "the server must see everything, then the FIN";
  writer.join();
  ASSERT_EQ(seen.size(), data.size());
  EXPECT_EQ(Sha256Hex(seen), Sha256Hex(data));
  ASSERT_TRUE(SendAll(s.get(), "done"));
  s.reset();
  std::string back;
  EXPECT_TRUE(ReadAll(c.get(), &back));
  EXPECT_EQ(back, "done");
}

// A listening socket the test drives by hand (accept, read, write) for the half-close and reset
// cases an echo server cannot show.
class ManualServer {
 public:
  explicit ManualServer(const IpAddr& ip) {
    fd_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage ss;
    socklen_t len = SockAddr{ip, 0}.ToSockaddr(&ss);
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
    EXPECT_EQ(listen(fd_.get(), 16), 0);
    addr_ = *LocalAddress(fd_.get());
  }
  SockAddr addr() const { return addr_; }
  UniqueFd Accept(std::chrono::milliseconds timeout = 5s) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return UniqueFd();
    UniqueFd c(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    timeval tv{10, 0};
    setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return c;
  }

 private:
  UniqueFd fd_;
  SockAddr addr_;
};

using Relay = ProxyOptions::SameNodeRelay;

class SameNodeFastPathFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca =
        weft::testing::MakeMeshCerts(dir_.path() + "/certs", {kClientId, kServerId, kRemoteId});
    ASSERT_TRUE(ca.ok()) << ca.status();
    echo_ = std::make_unique<EchoServer>(SockAddr{kServerIp, 0});
    remote_echo_ = std::make_unique<EchoServer>(SockAddr{kRemoteIp, 0});
    WriteConfig("", "");
    b_ = Start(&orig_b_);
    ASSERT_TRUE(b_);
    ASSERT_TRUE(b_->proxy()
                    .AddPod("ns-c/remote", UniqueFd(),
                            PodListenAddrs{{}, {SockAddr{kRemoteIp, 0}}, {SockAddr{kRemoteIp, 0}}})
                    .ok());
    remote_hbone_ = b_->proxy().BoundAddrs("ns-c/remote")->hbone.at(0);
    a_ = Start(&orig_a_);
    ASSERT_TRUE(a_);
    ASSERT_TRUE(
        a_->proxy()
            .AddPod("ns-a/client", UniqueFd(), PodListenAddrs{{SockAddr{kClientIp, 0}}, {}, {}})
            .ok());
    ASSERT_TRUE(a_->proxy()
                    .AddPod("ns-b/server", UniqueFd(),
                            PodListenAddrs{{}, {SockAddr{kServerIp, 0}}, {SockAddr{kServerIp, 0}}})
                    .ok());
    a_out_ = a_->proxy().BoundAddrs("ns-a/client")->outbound.at(0);
    server_hbone_ = a_->proxy().BoundAddrs("ns-b/server")->hbone.at(0);
    // AddPod reaches the workers through their queues: wait until one connection goes through.
    ASSERT_TRUE(WaitFor([&] {
      auto fd = Outbound(echo_->addr());
      return EchoRoundTrip(fd.get(), "warm-up", 1s) == "warm-up";
    }));
    warmup_ = 1;
  }

  virtual bool FastPath() const { return true; }
  virtual Relay RelayMode() const { return Relay::kAuto; }

  std::unique_ptr<ZtunnelApp> Start(OrigDstProvider* orig) {
    ZtunnelOptions o;
    o.node = orig == &orig_a_ ? "node-a" : "node-b";
    o.config_file = dir_.path() + "/mesh.yaml";
    o.certs_dir = dir_.path() + "/certs";
    o.admin_addr = *SockAddr::Parse("127.0.0.1:0");
    o.metrics_addr = *SockAddr::Parse("127.0.0.1:0");
    o.readiness_addr = *SockAddr::Parse("127.0.0.1:0");
    o.proxy.workers = 2;
    o.proxy.mark = 0;
    o.proxy.handshake_timeout = 3s;
    o.proxy.connect_timeout = 3s;
    o.proxy.same_node_fast_path = FastPath();
    o.proxy.same_node_relay = RelayMode();
    o.proxy.dial_override = [this](const SockAddr& a) {
      if (a == SockAddr{kServerIp, 15008}) return server_hbone_;
      if (a == SockAddr{kRemoteIp, 15008}) return remote_hbone_;
      return a;
    };
    auto app = std::make_unique<ZtunnelApp>(o);
    app->SetOrigDstProvider(orig);
    auto st = app->Start();
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() ? std::move(app) : nullptr;
  }

  void WriteConfig(const std::string& policies, const std::string& peer_authns) {
    std::string y = "version: \"v" + std::to_string(++version_) + R"("
workloads:
- {uid: ns-a/client, name: client, namespace: ns-a, serviceAccount: client, node: node-a,
   addresses: ["127.0.0.10"], protocol: HBONE, labels: {app: client}}
- {uid: ns-b/server, name: server, namespace: ns-b, serviceAccount: server, node: node-a,
   addresses: ["127.0.0.20"], protocol: HBONE, labels: {app: server, version: v1}}
- {uid: ns-c/remote, name: remote, namespace: ns-c, serviceAccount: remote, node: node-b,
   addresses: ["127.0.0.40"], protocol: HBONE, labels: {app: remote}}
services:
- name: echo
  namespace: ns-b
  hostname: echo.ns-b.svc.cluster.local
  addresses: ["10.96.0.10"]
  ports: [{port: 80, targetPort: )" +
                    std::to_string(echo_->addr().port) + R"(, name: tcp-echo}]
  endpoints: [{workloadUid: ns-b/server, ready: true}]
)";
    if (!policies.empty()) y += "authorizationPolicies:\n" + policies;
    if (!peer_authns.empty()) y += "peerAuthentications:\n" + peer_authns;
    dir_.Write("mesh.yaml", y);
  }

  void SetPolicies(const std::string& policies, const std::string& peer_authns = "") {
    WriteConfig(policies, peer_authns);
    std::string want = "v" + std::to_string(version_);
    ASSERT_TRUE(WaitFor([&] {
      return a_->config().Get()->version() == want && b_->config().Get()->version() == want;
    })) << "ztunnels did not load "
        << want;
  }

  // A client socket from the client pod's address whose original destination is `target`.
  UniqueFd Outbound(const SockAddr& target) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss;
    socklen_t len = SockAddr{kClientIp, 0}.ToSockaddr(&ss);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    orig_a_.Set(*LocalAddress(fd), target);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    len = a_out_.ToSockaddr(&ss);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    return UniqueFd(fd);
  }

  std::string Metrics(ZtunnelApp& app) {
    auto body = weft::testing::HttpGet(app.admin().metrics_addr(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    return body.ok() ? *body : "";
  }
  double Metric(ZtunnelApp& app, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
    return MetricSum(Metrics(app), name, labels);
  }
  // The labels of a client -> server connection as reported by `reporter`.
  static std::map<std::string, std::string> PairLabels(const std::string& reporter,
                                                       const std::string& security) {
    return {{"reporter", reporter},
            {"source_workload", "client"},
            {"source_workload_namespace", "ns-a"},
            {"source_principal", "spiffe://cluster.local/ns/ns-a/sa/client"},
            {"destination_workload", "server"},
            {"destination_workload_namespace", "ns-b"},
            {"destination_principal", "spiffe://cluster.local/ns/ns-b/sa/server"},
            {"connection_security_policy", security}};
  }
  // Every HBONE/TLS sign on ztunnel A: client pool connections and streams, handshakes
  // failed, and mutual_tls connections counted.
  void ExpectNoHbone(const std::string& when) {
    std::string m = Metrics(*a_);
    EXPECT_EQ(MetricSum(m, "weft_hbone_pool_connections", {}), 0) << when << "\n" << m;
    EXPECT_EQ(MetricSum(m, "weft_hbone_pool_streams", {}), 0) << when;
    EXPECT_EQ(MetricSum(m, "weft_hbone_handshake_failures_total", {}), 0) << when;
    EXPECT_EQ(MetricSum(m, "istio_tcp_connections_opened_total",
                        {{"connection_security_policy", "mutual_tls"}}),
              0)
        << when;
  }

  TempDir dir_;
  std::unique_ptr<EchoServer> echo_, remote_echo_;
  TableOrigDst orig_a_, orig_b_;
  std::unique_ptr<ZtunnelApp> a_, b_;
  SockAddr a_out_, server_hbone_, remote_hbone_;
  int version_ = 0;
  int warmup_ = 0;  // connections SetUp made client -> server
};

// Every fast-path test runs with both relays (ProxyOptions::same_node_relay): splice, and the
// sockmap relay (needs root: it loads a BPF program; nothing is attached outside the test's
// own sockets).
class SameNodeFastPath : public SameNodeFastPathFixture,
                         public ::testing::WithParamInterface<Relay> {
 protected:
  void SetUp() override {
    if (GetParam() == Relay::kSockmap) WEFT_SKIP_UNLESS_ROOT("the sockmap relay loads BPF");
    SameNodeFastPathFixture::SetUp();
    ASSERT_EQ(a_->proxy().same_node_relay(), RelayName());
  }
  Relay RelayMode() const override { return GetParam(); }
  std::string RelayName() const { return GetParam() == Relay::kSockmap ? "sockmap" : "splice"; }
  double Wakeups() {
    return Metric(*a_, "weft_same_node_relay_events_total",
                  {{"relay", RelayName()}, {"event", "wakeup"}});
  }
};

INSTANTIATE_TEST_SUITE_P(Relay, SameNodeFastPath,
                         ::testing::Values(Relay::kSplice, Relay::kSockmap),
                         [](const ::testing::TestParamInfo<Relay>& i) {
                           return std::string(i.param == Relay::kSockmap ? "Sockmap" : "Splice");
                         });

TEST_P(SameNodeFastPath, MovesTensOfMiBBothWaysIntactWithoutHbone) {
  constexpr size_t kSize = 32 << 20;
  const std::string data = RandomBytes(kSize, 7);
  auto fd = Outbound(echo_->addr());
  std::string got;
  got.reserve(kSize);
  std::thread writer([&] {
    EXPECT_TRUE(SendAll(fd.get(), data));
    shutdown(fd.get(), SHUT_WR);
  });
  // Mid-transfer: the connection exists and no HBONE connection does.
  char first[4096];
  ssize_t n0 = read(fd.get(), first, sizeof first);
  if (n0 > 0) {
    got.append(first, static_cast<size_t>(n0));
    EXPECT_EQ(Metric(*a_, "weft_active_connections"), 2) << "one connection, two reporters";
    ExpectNoHbone("while the fast-path connection is open");
    EXPECT_TRUE(ReadAll(fd.get(), &got)) << "half-close must deliver everything, then EOF";
  }
  writer.join();
  ASSERT_GT(n0, 0) << "nothing came back";
  ASSERT_EQ(got.size(), kSize);
  EXPECT_EQ(Sha256Hex(got), Sha256Hex(data)) << "payload corrupted on the fast path";
  fd.reset();

  auto src = PairLabels("source", "same_node"), dst = PairLabels("destination", "same_node");
  // Closed is counted just before active goes down: wait for both.
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total", src) == 1 + warmup_ &&
           Metric(*a_, "istio_tcp_connections_closed_total", dst) == 1 + warmup_ &&
           Metric(*a_, "weft_active_connections") == 0;
  })) << Metrics(*a_);
  const double warm_bytes = 7.0 * warmup_;  // "warm-up"
  for (const auto& labels : {src, dst}) {
    EXPECT_EQ(Metric(*a_, "istio_tcp_connections_opened_total", labels), 1 + warmup_);
    EXPECT_EQ(Metric(*a_, "istio_tcp_sent_bytes_total", labels), kSize + warm_bytes);
    EXPECT_EQ(Metric(*a_, "istio_tcp_received_bytes_total", labels), kSize + warm_bytes);
  }
  EXPECT_EQ(Metric(*a_, "weft_active_connections"), 0);
  ExpectNoHbone("after the transfer");
}

TEST_P(SameNodeFastPath, HalfCloseLetsTheOtherDirectionFlow) {
  ManualServer srv(kServerIp);
  // Client -> server ends first; the server answers after it saw EOF.
  {
    const std::string req = RandomBytes(6 << 20, 1);
    auto c = Outbound(srv.addr());
    auto s = srv.Accept();
    ASSERT_TRUE(s);
    std::thread writer([&] {
      EXPECT_TRUE(SendAll(c.get(), req));
      shutdown(c.get(), SHUT_WR);
    });
    std::string seen;
    ASSERT_TRUE(ReadAll(s.get(), &seen)) << "the server must see the client's FIN";
    writer.join();
    ASSERT_EQ(seen.size(), req.size());
    const std::string answer = Sha256Hex(seen);
    ASSERT_TRUE(SendAll(s.get(), answer)) << "the server -> client direction must stay open";
    s.reset();
    std::string back;
    EXPECT_TRUE(ReadAll(c.get(), &back));
    EXPECT_EQ(back, Sha256Hex(req));
  }
  // Server -> client ends first; the client keeps sending after it saw EOF.
  {
    const std::string banner = RandomBytes(3 << 20, 2);
    auto c = Outbound(srv.addr());
    auto s = srv.Accept();
    ASSERT_TRUE(s);
    std::thread writer([&] {
      EXPECT_TRUE(SendAll(s.get(), banner));
      shutdown(s.get(), SHUT_WR);
    });
    std::string got;
    ASSERT_TRUE(ReadAll(c.get(), &got)) << "the client must see the server's FIN";
    writer.join();
    EXPECT_EQ(Sha256Hex(got), Sha256Hex(banner));
    ASSERT_TRUE(SendAll(c.get(), "late words"));
    shutdown(c.get(), SHUT_WR);
    std::string late;
    EXPECT_TRUE(ReadAll(s.get(), &late));
    EXPECT_EQ(late, "late words");
  }
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "weft_active_connections") == 0; }))
      << "both half-closed connections must finish once both sides are done";
  EXPECT_EQ(Metric(*a_, "istio_tcp_connections_closed_total",
                   {{"connection_security_policy", "same_node"}, {"response_flags", "-"}}),
            2 * (2 + warmup_));
}

TEST_P(SameNodeFastPath, ResetIsPropagatedBothWays) {
  ManualServer srv(kServerIp);
  for (int who = 0; who < 2; who++) {  // 0: the client resets, 1: the server resets
    auto c = Outbound(srv.addr());
    auto s = srv.Accept();
    ASSERT_TRUE(s);
    ASSERT_TRUE(SendAll(c.get(), "ping"));
    char buf[4];
    ASSERT_EQ(read(s.get(), buf, 4), 4);
    UniqueFd& closer = who == 0 ? c : s;
    UniqueFd& other = who == 0 ? s : c;
    linger l{1, 0};
    setsockopt(closer.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    closer.reset();
    std::string rest;
    int err = 0;
    EXPECT_FALSE(ReadAll(other.get(), &rest, &err)) << "a reset must not turn into a clean EOF";
    EXPECT_EQ(err, ECONNRESET) << (who == 0 ? "client" : "server") << " reset: " << strerror(err);
  }
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "weft_active_connections") == 0; }));
}

// Issue 13 hole 5, the fast path's side: a client connecting to a same-node pod's HBONE port
// would be put into ztunnel's own listener from inside that pod (source: the pod itself).
// Refused as the HBONE server refuses such a CONNECT, and counted.
TEST_P(SameNodeFastPath, ConnectionToZtunnelsOwnPortIsRefused) {
  auto fd = Outbound(server_hbone_);
  EXPECT_TRUE(WaitClosed(fd.get(), 3s));
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_bad_input_total",
                  {{"port", "15001"}, {"kind", "connect_to_ztunnel_port"}}) == 1;
  })) << Metrics(*a_);
  auto ok = Outbound(echo_->addr());
  EXPECT_EQ(EchoRoundTrip(ok.get(), "still served"), "still served");
}

TEST_P(SameNodeFastPath, ConnectFailureIsReportedByBothReporters) {
  // A port on the server's address where nothing listens.
  int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss;
  socklen_t len = SockAddr{kServerIp, 0}.ToSockaddr(&ss);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&ss), len), 0);
  SockAddr closed = *LocalAddress(probe);  // bound, never listening: connect is refused
  auto fd = Outbound(closed);
  EXPECT_TRUE(WaitClosed(fd.get(), 3s));
  close(probe);
  for (const char* reporter : {"source", "destination"}) {
    EXPECT_TRUE(WaitFor([&] {
      return Metric(*a_, "istio_tcp_connections_closed_total",
                    {{"reporter", reporter},
                     {"connection_security_policy", "same_node"},
                     {"response_flags", "UF"}}) == 1;
    })) << reporter
        << "\n"
        << Metrics(*a_);
  }
  EXPECT_EQ(Metric(*a_, "weft_connection_failures_total", {{"reason", "connect_failed"}}), 1);
}

TEST_P(SameNodeFastPath, DenyPolicyRefusesWithTheSourceIdentity) {
  int accepted = echo_->accepted();
  SetPolicies(R"(- name: deny-client
  namespace: ns-b
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/ns-a/sa/client"]}
)");
  auto fd = Outbound(echo_->addr());
  EXPECT_NE(EchoRoundTrip(fd.get(), "denied?", 2s), "denied?");
  EXPECT_TRUE(WaitClosed(fd.get()));
  EXPECT_EQ(echo_->accepted(), accepted) << "a denied connection must not reach the server";
  EXPECT_EQ(Metric(*a_, "weft_policy_denials_total", {{"policy", "ns-b/deny-client"}}), 1);
  for (const char* reporter : {"source", "destination"}) {
    auto l = PairLabels(reporter, "same_node");
    l["response_flags"] = "DENY";
    EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "istio_tcp_connections_closed_total", l) == 1; }))
        << reporter << "\n"
        << Metrics(*a_);
  }
  // An ALLOW policy for another principal denies too; one naming the client allows.
  SetPolicies(R"(- name: allow-other
  namespace: ns-b
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/x/sa/y"]}
)");
  auto other = Outbound(echo_->addr());
  EXPECT_NE(EchoRoundTrip(other.get(), "nope", 2s), "nope");
  SetPolicies(R"(- name: allow-client
  namespace: ns-b
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/ns-a/sa/client"]}
    to:
    - operation: {ports: [")" +
              std::to_string(echo_->addr().port) +
              R"("]}
)");
  auto ok = Outbound(echo_->addr());
  EXPECT_EQ(EchoRoundTrip(ok.get(), "allowed"), "allowed");
  ExpectNoHbone("policy decisions are taken locally");
}

TEST_P(SameNodeFastPath, PolicyChangeClosesAnOpenConnection) {
  auto fd = Outbound(echo_->addr());
  ASSERT_EQ(EchoRoundTrip(fd.get(), "before"), "before");
  SetPolicies(R"(- name: deny-ns-a
  namespace: ns-b
  action: DENY
  rules:
  - from:
    - source: {namespaces: ["ns-a"]}
)");
  EXPECT_TRUE(WaitClosed(fd.get())) << "an open fast-path connection the new policy denies "
                                       "must be closed";
  EXPECT_EQ(Metric(*a_, "weft_policy_reevaluation_closed_total"), 1);
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "weft_active_connections") == 0; }));
}

TEST_P(SameNodeFastPath, StrictPeerAuthenticationIsSatisfied) {
  SetPolicies("", R"(- name: strict
  namespace: ns-b
  mtls: {mode: STRICT}
)");
  auto fd = Outbound(echo_->addr());
  EXPECT_EQ(EchoRoundTrip(fd.get(), "identity known"), "identity known");
  EXPECT_EQ(Metric(*a_, "weft_policy_denials_total", {{"reason", "strict_mtls"}}), 0);
}

TEST_P(SameNodeFastPath, ServiceVipToALocalEndpoint) {
  auto fd = Outbound(*SockAddr::Parse("10.96.0.10:80"));
  EXPECT_EQ(EchoRoundTrip(fd.get(), "via vip"), "via vip");
  fd.reset();
  for (const char* reporter : {"source", "destination"}) {
    EXPECT_TRUE(WaitFor([&] {
      return Metric(*a_, "istio_tcp_connections_closed_total",
                    {{"reporter", reporter},
                     {"destination_service", "echo.ns-b.svc.cluster.local"},
                     {"connection_security_policy", "same_node"}}) == 1 + warmup_;
    })) << reporter
        << "\n"
        << Metrics(*a_);
  }
}

TEST_P(SameNodeFastPath, ManyConcurrentConnections) {
  constexpr int kConns = 24;
  std::vector<std::thread> ts;
  std::atomic<int> good{0};
  for (int i = 0; i < kConns; i++) {
    ts.emplace_back([&, i] {
      const std::string data = RandomBytes(512 << 10, 100 + i);
      auto fd = Outbound(echo_->addr());
      std::thread w([&] {
        SendAll(fd.get(), data);
        shutdown(fd.get(), SHUT_WR);
      });
      std::string got;
      bool eof = ReadAll(fd.get(), &got);
      w.join();
      if (eof && got == data) good++;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(good, kConns);
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "weft_active_connections") == 0; }));
  for (const char* reporter : {"source", "destination"}) {  // counted exactly once each
    auto l = PairLabels(reporter, "same_node");
    EXPECT_EQ(Metric(*a_, "istio_tcp_connections_opened_total", l), kConns + warmup_);
    EXPECT_EQ(Metric(*a_, "istio_tcp_connections_closed_total", l), kConns + warmup_);
    EXPECT_EQ(Metric(*a_, "istio_tcp_sent_bytes_total", l), kConns * (512 << 10) + 7 * warmup_);
  }
}

TEST_P(SameNodeFastPath, ConnectTimeoutResetsTheClient) {
  // A listener whose accept queue is full drops SYNs: the connect neither succeeds nor fails.
  UniqueFd lfd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = SockAddr{kServerIp, 0}.ToSockaddr(&ss);
  ASSERT_EQ(bind(lfd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  ASSERT_EQ(listen(lfd.get(), 0), 0);
  SockAddr full = *LocalAddress(lfd.get());
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 2; i++) {
    auto f = weft::testing::Dial(full, -1, 300ms);
    if (f.ok()) fillers.push_back(std::move(*f));
  }
  auto start = std::chrono::steady_clock::now();
  auto fd = Outbound(full);
  EXPECT_TRUE(WaitClosed(fd.get(), 8s));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 2500ms) << "closed before the 3 s connect timeout";
  // The client sees the reset before the flow is counted closed: wait for the counters.
  auto closed_uf = [&](const char* reporter) {
    return Metric(*a_, "istio_tcp_connections_closed_total",
                  {{"reporter", reporter},
                   {"connection_security_policy", "same_node"},
                   {"response_flags", "UF"}});
  };
  EXPECT_TRUE(WaitFor([&] { return closed_uf("source") >= 1 && closed_uf("destination") >= 1; }))
      << Metrics(*a_);
  EXPECT_EQ(Metric(*a_, "weft_connection_failures_total", {{"reason", "connect_timeout"}}), 1);
  for (const char* reporter : {"source", "destination"})
    EXPECT_EQ(closed_uf(reporter), 1) << reporter;
}

TEST_P(SameNodeFastPath, AnotherNodesPodStillGoesOverHbone) {
  auto fd = Outbound(remote_echo_->addr());
  EXPECT_EQ(EchoRoundTrip(fd.get(), "cross node"), "cross node");
  EXPECT_GE(Metric(*a_, "weft_hbone_pool_connections"), 1);
  fd.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total",
                  {{"reporter", "source"},
                   {"destination_workload", "remote"},
                   {"connection_security_policy", "mutual_tls"}}) == 1 &&
           Metric(*b_, "istio_tcp_connections_closed_total",
                  {{"reporter", "destination"},
                   {"source_principal", "spiffe://cluster.local/ns/ns-a/sa/client"},
                   {"connection_security_policy", "mutual_tls"}}) == 1;
  }));
  EXPECT_EQ(
      Metric(*a_, "istio_tcp_connections_opened_total",
             {{"destination_workload", "remote"}, {"connection_security_policy", "same_node"}}),
      0);
}

// Request/response traffic: with the sockmap relay ztunnel is not woken per message (only at
// setup and close, and by the 5 s byte-counter timer); with splice every message wakes it.
TEST_P(SameNodeFastPath, WakeupsDoNotGrowWithMessageCount) {
  constexpr int kMessages = 10000;
  auto fd = Outbound(echo_->addr());
  ASSERT_EQ(EchoRoundTrip(fd.get(), "hello", 5s), "hello");
  const double before = Wakeups();
  const std::string msg(64, 'm');
  char buf[64];
  for (int k = 0; k < kMessages; k++) {
    ASSERT_EQ(send(fd.get(), msg.data(), msg.size(), MSG_NOSIGNAL), 64);
    size_t got = 0;
    while (got < sizeof buf) {
      ssize_t n = read(fd.get(), buf + got, sizeof buf - got);
      ASSERT_GT(n, 0) << "message " << k;
      got += static_cast<size_t>(n);
    }
  }
  const double wakeups = Wakeups() - before;
  if (GetParam() == Relay::kSockmap)
    EXPECT_LT(wakeups, 50) << kMessages << " round trips";
  else
    EXPECT_GE(wakeups, kMessages) << "splice: ztunnel handles every message";
  fd.reset();
  const double bytes = 5 + 64.0 * kMessages + 7.0 * warmup_;
  auto src = PairLabels("source", "same_node");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_sent_bytes_total", src) == bytes &&
           Metric(*a_, "istio_tcp_received_bytes_total", src) == bytes;
  })) << Metrics(*a_);
}

// A reader slower than its sender: the sockmap relay pauses the direction (the kernel's redirect
// has no bound of its own, docs/fastpath.md), the sender is pushed back by TCP, and every byte
// still arrives in order; the sender half-closes while paused, so the end of the stream is
// copied by ztunnel after the last redirected byte and the FIN follows it.
TEST_P(SameNodeFastPath, SlowReaderIsPushedBackAndGetsEverything) {
  ManualServer srv(kServerIp);
  const std::string data = RandomBytes(48 << 20, 3);
  auto c = Outbound(srv.addr());
  auto s = srv.Accept();
  ASSERT_TRUE(s);
  std::thread writer([&] {
    EXPECT_TRUE(SendAll(c.get(), data));
    shutdown(c.get(), SHUT_WR);
  });
  if (GetParam() == Relay::kSockmap) {
    EXPECT_TRUE(WaitFor([&] {
      return Metric(*a_, "weft_same_node_relay_events_total",
                    {{"relay", "sockmap"}, {"event", "paused"}}) >= 1;
    })) << "the server has read nothing: the direction must pause";
  }
  ASSERT_NO_FATAL_FAILURE(ExpectStreamThenReply(c, s, data, writer));
  auto src = PairLabels("source", "same_node");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_sent_bytes_total", src) == data.size() + 7.0 * warmup_;
  })) << Metrics(*a_);
}

// --same-node-relay=auto: a direction whose sockmap relay falls behind (a cap's worth of
// redirected bytes not taken by the peer) is copied by ztunnel from then on, from exactly where
// the relay ended (the socket stays in the sockhash: docs/fastpath.md). A reader that waits
// before reading makes that happen at once; every byte arrives in order, the FIN after the last,
// the other direction works, and the byte metrics are exact.
class SameNodeFastPathAuto : public SameNodeFastPathFixture {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("the sockmap relay loads BPF");
    SameNodeFastPathFixture::SetUp();
    ASSERT_EQ(a_->proxy().same_node_relay(), "sockmap");
  }
};

TEST_F(SameNodeFastPathAuto, DirectionBehindItsRelayIsCopied) {
  ManualServer srv(kServerIp);
  const std::string data = RandomBytes(24 << 20, 5);
  auto c = Outbound(srv.addr());
  auto s = srv.Accept();
  ASSERT_TRUE(s);
  ASSERT_TRUE(SendAll(c.get(), "ping"));
  std::string ping(4, '\0');
  ASSERT_EQ(recv(s.get(), ping.data(), 4, MSG_WAITALL), 4);
  EXPECT_EQ(Metric(*a_, "weft_same_node_relay_events_total", {{"event", "to_copy"}}), 0)
      << "a message exchange stays on the relay";
  std::thread writer([&] {
    EXPECT_TRUE(SendAll(c.get(), data));
    shutdown(c.get(), SHUT_WR);
  });
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "weft_same_node_relay_events_total",
                  {{"relay", "sockmap"}, {"event", "to_copy"}}) == 1;
  })) << "the server has read nothing: the flow must leave the relay";
  ASSERT_NO_FATAL_FAILURE(ExpectStreamThenReply(c, s, data, writer));
  auto src = PairLabels("source", "same_node");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_sent_bytes_total", src) == 4 + data.size() + 7.0 * warmup_ &&
           Metric(*a_, "istio_tcp_received_bytes_total", src) == 4 + 7.0 * warmup_;
  })) << Metrics(*a_);
  EXPECT_EQ(Metric(*a_, "weft_same_node_relay_events_total", {{"event", "paused"}}), 0);
}

class SameNodeFastPathOff : public SameNodeFastPathFixture {
 protected:
  bool FastPath() const override { return false; }
};

TEST_F(SameNodeFastPathOff, SamePairGoesOverHbone) {
  auto fd = Outbound(echo_->addr());
  EXPECT_EQ(EchoRoundTrip(fd.get(), "over hbone"), "over hbone");
  EXPECT_GE(Metric(*a_, "weft_hbone_pool_connections"), 1);
  fd.reset();
  auto src = PairLabels("source", "mutual_tls"), dst = PairLabels("destination", "mutual_tls");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*a_, "istio_tcp_connections_closed_total", src) == 1 + warmup_ &&
           Metric(*a_, "istio_tcp_connections_closed_total", dst) == 1 + warmup_;
  })) << Metrics(*a_);
  EXPECT_EQ(Metric(*a_, "istio_tcp_connections_opened_total",
                   {{"connection_security_policy", "same_node"}}),
            0);
}

}  // namespace
}  // namespace weft::ztunnel
