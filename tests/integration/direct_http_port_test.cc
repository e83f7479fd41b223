// L7 at the destination without any policy (issue 14, "When a connection is L7"): a port that a
// Service declares HTTP is parsed by the destination's ztunnel for Istio's request metrics
// (reporter "destination"); bytes that are not HTTP on it fall back to L4 (relayed unchanged,
// counted), while with an L7 policy they are still refused. Both carriers: an HBONE stream
// through ztunnel A (a pod-IP call) and plaintext 15006. Fixtures: direct_mesh_fixture.h.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "tests/integration/direct_mesh_fixture.h"
#include "tests/support/http_conn.h"
#include "tests/support/test_util.h"

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using direct_fixture::DirectMeshHttp;
using weft::testing::EchoServer;
using weft::testing::HttpConn;
using weft::testing::kServerIp;
using weft::testing::WaitFor;

// A server-first protocol (SMTP-like): greets each connection, then echoes until the client
// closes; one connection at a time.
class Greeter {
 public:
  static constexpr std::string_view kGreeting = "220 weft.test ESMTP ready\r\n";
  Greeter() {
    listen_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage ss;
    socklen_t len = SockAddr{kServerIp, 0}.ToSockaddr(&ss);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
    EXPECT_EQ(::listen(listen_.get(), 16), 0);
    addr_ = *LocalAddress(listen_.get());
    thread_ = std::thread([this] { Run(); });
  }
  ~Greeter() {
    stop_ = true;
    thread_.join();
  }
  SockAddr addr() const { return addr_; }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{listen_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      UniqueFd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      (void)::send(c.get(), kGreeting.data(), kGreeting.size(), MSG_NOSIGNAL);
      char buf[4096];
      while (!stop_) {
        pollfd q{c.get(), POLLIN, 0};
        if (::poll(&q, 1, 100) <= 0) continue;
        ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
        if (n <= 0 || ::send(c.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
      }
    }
  }
  UniqueFd listen_;
  SockAddr addr_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class DirectHttpPort : public DirectMeshHttp {
 protected:
  void SetUp() override {
    DirectMeshHttp::SetUp();
    if (HasFatalFailure()) return;
    // Service "web" declares the HTTP server's port HTTP by name, and a second echo server's
    // port HTTP by appProtocol (the name says otherwise: appProtocol wins).
    echo_http_ = std::make_unique<EchoServer>(SockAddr{kServerIp, 0});
    greeter_ = std::make_unique<Greeter>();
    extra_services_ = R"(- name: web
  namespace: ns-b
  hostname: web.ns-b.svc.cluster.local
  addresses: ["10.96.0.30"]
  ports:
  - {port: 80, targetPort: )" +
                      std::to_string(http_->port()) +
                      R"(, name: http-web}
  - {port: 81, targetPort: )" +
                      std::to_string(echo_http_->addr().port) +
                      R"(, name: tcp-echo, appProtocol: http}
  - {port: 25, targetPort: )" +
                      std::to_string(greeter_->addr().port) +
                      R"(, name: http-greet}
  endpoints: [{workloadUid: ns-b/server, ready: true}]
)";
    SetPolicies("");
  }
  UniqueFd Connect(bool hbone, const SockAddr& to) { return hbone ? Outbound(to) : Plaintext(to); }
  double BadInput(const std::string& kind) {
    return Metric(*b_, "weft_bad_input_total", {{"port", "http"}, {"kind", kind}});
  }

  std::unique_ptr<EchoServer> echo_http_;
  std::unique_ptr<Greeter> greeter_;
};

// Reads until `n` bytes came (or the peer closed, or 5 s passed).
std::string ReadN(int fd, size_t n) {
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  char buf[4096];
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t k = ::recv(fd, buf, sizeof buf, 0);
    if (k <= 0) break;
    got.append(buf, static_cast<size_t>(k));
  }
  return got;
}

TEST_F(DirectHttpPort, RequestsToAnHttpServicePortAreRecordedByTheDestinationWithoutPolicy) {
  for (bool hbone : {true, false}) {
    SCOPED_TRACE(hbone ? "HBONE" : "plaintext");
    auto fd = Connect(hbone, HttpAddr());
    HttpConn c(fd.get());
    for (int i = 0; i < 3; ++i) {
      auto r = c.Request("GET", "/tea/" + std::to_string(i));
      ASSERT_EQ(r.status, 200) << r.error;
      EXPECT_EQ(r.body, "GET /tea/" + std::to_string(i));
    }
  }
  std::map<std::string, std::string> labels = {
      {"reporter", "destination"},
      {"source_workload", "client"},
      {"source_workload_namespace", "ns-a"},
      {"destination_workload", "server"},
      {"destination_workload_namespace", "ns-b"},
      {"destination_principal", "spiffe://cluster.local/ns/ns-b/sa/server"},
      {"destination_service", "web.ns-b.svc.cluster.local"},
      {"destination_service_name", "web"},
      {"destination_service_namespace", "ns-b"},
      {"request_protocol", "http"},
      {"response_code", "200"},
      {"response_flags", "-"},
  };
  EXPECT_TRUE(WaitFor([&] { return Metric(*b_, "istio_requests_total", labels) == 6; }))
      << Metrics(*b_);
  labels["connection_security_policy"] = "mutual_tls";
  labels["source_principal"] = "spiffe://cluster.local/ns/ns-a/sa/client";
  EXPECT_EQ(Metric(*b_, "istio_requests_total", labels), 3) << "HBONE";
  labels.erase("source_principal");
  labels["connection_security_policy"] = "none";
  EXPECT_EQ(Metric(*b_, "istio_requests_total", labels), 3) << "plaintext";
  EXPECT_EQ(Metric(*b_, "istio_request_duration_milliseconds_count", {{"reporter", "destination"}}),
            6);
  EXPECT_EQ(BadInput("not_http_l4_fallback"), 0);
  EXPECT_EQ(Metric(*b_, "weft_policy_denials_total"), 0);
  // A port no Service declares HTTP stays L4: no request metrics.
  auto fd = Outbound(EchoAddr());
  EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "GET / HTTP/1.1\r\n"), "GET / HTTP/1.1\r\n");
  EXPECT_EQ(Metric(*b_, "istio_requests_total"), 6);
}

TEST_F(DirectHttpPort, BytesThatAreNotHttpFallBackToL4AndAreRelayedUnchanged) {
  const SockAddr echo = echo_http_->addr();
  const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 23);
  int fallbacks = 0;
  for (bool hbone : {true, false}) {
    SCOPED_TRACE(hbone ? "HBONE" : "plaintext");
    for (const std::string& first : {hello, std::string("get / lowercase\r\n\r\n")}) {
      auto fd = Connect(hbone, echo);
      EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), first), first);
      // L4 from here on, even for bytes that look like HTTP.
      const std::string later = "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
      EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), later), later);
      ++fallbacks;
    }
    // Undecided first bytes (an uppercase token, no space yet) are held, then relayed with the
    // rest once they cannot start a request line.
    auto fd = Connect(hbone, echo);
    ASSERT_EQ(::send(fd.get(), "SSH", 3, MSG_NOSIGNAL), 3);
    const double before = BadInput("not_http_l4_fallback");
    const std::string rest = "-2.0-OpenSSH_9.2\r\n";
    ASSERT_EQ(::send(fd.get(), rest.data(), rest.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(rest.size()));
    EXPECT_EQ(ReadN(fd.get(), 3 + rest.size()), "SSH" + rest);
    EXPECT_TRUE(WaitFor([&] { return BadInput("not_http_l4_fallback") == before + 1; }));
    ++fallbacks;
  }
  EXPECT_TRUE(WaitFor([&] { return BadInput("not_http_l4_fallback") == fallbacks; }))
      << Metrics(*b_);
  EXPECT_EQ(Metric(*b_, "istio_requests_total"), 0);
  EXPECT_EQ(BadInput("unframed_request"), 0);
  // The connections were relayed as L4 and reported as such.
  EXPECT_TRUE(WaitFor([&] {
    return Metric(*b_, "istio_tcp_connections_closed_total",
                  {{"reporter", "destination"}, {"destination_service_name", "web"}}) == fallbacks;
  })) << Metrics(*b_);
}

TEST_F(DirectHttpPort, AServerFirstProtocolFallsBackToL4) {
  // HTTP servers never speak first (an HTTP/2 one's SETTINGS aside): the greeting is relayed at
  // once, although the client has sent nothing yet.
  for (bool hbone : {true, false}) {
    SCOPED_TRACE(hbone ? "HBONE" : "plaintext");
    const double before = BadInput("not_http_l4_fallback");
    auto fd = Connect(hbone, greeter_->addr());
    EXPECT_EQ(ReadN(fd.get(), Greeter::kGreeting.size()), Greeter::kGreeting);
    EXPECT_EQ(weft::testing::EchoRoundTrip(fd.get(), "EHLO client\r\n"), "EHLO client\r\n");
    EXPECT_TRUE(WaitFor([&] { return BadInput("not_http_l4_fallback") == before + 1; }))
        << Metrics(*b_);
  }
  EXPECT_EQ(Metric(*b_, "istio_requests_total"), 0);
}

TEST_F(DirectHttpPort, WithAnL7PolicyBytesThatAreNotHttpAreStillRefused) {
  SetPolicies(R"(- name: public-get
  namespace: ns-b
  action: ALLOW
  rules:
  - to:
    - operation: {methods: ["GET"], paths: ["/public/*"]}
)");
  const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 23);
  for (bool hbone : {true, false}) {
    SCOPED_TRACE(hbone ? "HBONE" : "plaintext");
    const double before = Metric(*b_, "weft_bad_input_total", {{"port", "http"}});
    auto fd = Connect(hbone, echo_http_->addr());
    ASSERT_EQ(::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(hello.size()));
    // The HTTP/1.1 codec's 400 (or a reset), never the echo.
    std::string got = ReadN(fd.get(), 1 << 20);
    EXPECT_TRUE(got.empty() || got.starts_with("HTTP/1.1 400 ")) << got;
    EXPECT_TRUE(WaitFor([&] {
      return Metric(*b_, "weft_bad_input_total", {{"port", "http"}}) == before + 1;
    })) << Metrics(*b_);
  }
  EXPECT_EQ(BadInput("not_http_l4_fallback"), 0);
  auto fd = Outbound(HttpAddr());
  HttpConn c(fd.get());
  EXPECT_EQ(c.Request("GET", "/public/a").status, 200);
  EXPECT_EQ(c.Request("GET", "/private").status, 403);
}

}  // namespace
}  // namespace weft::ztunnel
