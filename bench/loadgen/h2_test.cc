// weft-loadgen over HTTP/2 (h2c) and gRPC against weft-h2echo's server (h2echo.h) on loopback,
// and a raw nghttp2 client check of the server's gRPC replies.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "bench/loadgen/h2_client.h"
#include "bench/loadgen/h2echo.h"
#include "bench/loadgen/loadgen.h"

namespace weft::bench::loadgen {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<H2EchoServer> StartEcho() {
  auto s = H2EchoServer::Start(*SockAddr::Parse("127.0.0.1:0"));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

Options EchoLoad(uint16_t port, Protocol p, std::string body) {
  Options o;
  o.target = absl::StrCat("http://127.0.0.1:", port);
  o.protocol = p;
  o.users = 4;
  o.total_rate = 200;
  o.warmup = 100ms;
  o.duration = 1000ms;
  o.profile.requests.push_back({"echo", "POST", "/echo", std::move(body), {}});
  return o;
}

// Every scheduled request succeeds over h2c, on one connection per user, with its body echoed.
TEST(LoadgenH2, H2cKeepAliveOneConnectionPerUser) {
  auto server = StartEcho();
  ASSERT_NE(server, nullptr);
  auto r = loadgen::Run(EchoLoad(server->port(), Protocol::kH2c, std::string(1024, 'f')));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->scheduled, 200u);
  EXPECT_EQ(r->overall.ok, 200u) << r->Summary();
  EXPECT_EQ(r->errors(), 0u) << r->Summary();
  EXPECT_EQ(r->overall.statuses.at(200), 200u);
  EXPECT_EQ(r->connections_opened, 4u);
  EXPECT_EQ(server->connections(), 4);
  // Warm-up requests were served too.
  EXPECT_GE(server->requests(), 200);
  EXPECT_GT(r->overall.latency.Percentile(0.5), 0);
  EXPECT_EQ(r->ToJson()["protocol"], "h2c");
}

// gRPC calls: HTTP 200 with grpc-status 0 in the trailers is a success.
TEST(LoadgenH2, GrpcCallsSucceedOnGrpcStatusZero) {
  auto server = StartEcho();
  ASSERT_NE(server, nullptr);
  auto r = loadgen::Run(EchoLoad(server->port(), Protocol::kGrpc, std::string(1024, 'g')));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->overall.ok, 200u) << r->Summary();
  EXPECT_EQ(r->errors(), 0u) << r->Summary();
}

// A gRPC failure (HTTP 200, grpc-status != 0) is a status error, counted as 1000 + status;
// over plain h2c the same reply is an HTTP 200, a success.
TEST(LoadgenH2, GrpcStatusErrorsAreCounted) {
  auto server = StartEcho();
  ASSERT_NE(server, nullptr);
  Options g = EchoLoad(server->port(), Protocol::kGrpc, "x");
  g.profile.requests[0].headers.push_back({"X-Echo-Grpc-Status", "14"});
  auto r = loadgen::Run(g);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->overall.ok, 0u) << r->Summary();
  EXPECT_EQ(r->overall.status_errors, 200u) << r->Summary();
  EXPECT_EQ(r->overall.statuses.at(1014), 200u) << r->Summary();

  Options h = EchoLoad(server->port(), Protocol::kH2c, std::string(GrpcFrame("x")));
  h.profile.requests[0].headers = {{"Content-Type", "application/grpc"},
                                   {"X-Echo-Grpc-Status", "14"}};
  auto plain = loadgen::Run(h);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->overall.ok, 200u) << plain->Summary();
}

TEST(LoadgenH2, GrpcFrameIsLengthPrefixed) {
  const std::string f = GrpcFrame(std::string(258, 'a'));
  ASSERT_EQ(f.size(), 263u);
  EXPECT_EQ(f[0], '\0');
  EXPECT_EQ(static_cast<uint8_t>(f[3]), 1);
  EXPECT_EQ(static_cast<uint8_t>(f[4]), 2);
  EXPECT_EQ(GrpcFrame("").size(), 5u);
}

TEST(LoadgenH2, ProtocolFlag) {
  EXPECT_EQ(*ParseProtocol("http1"), Protocol::kHttp1);
  EXPECT_EQ(*ParseProtocol("h2c"), Protocol::kH2c);
  EXPECT_EQ(*ParseProtocol("grpc"), Protocol::kGrpc);
  auto bad = ParseProtocol("h3");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("http1, h2c or grpc"), std::string::npos);
  EXPECT_EQ(ProtocolName(Protocol::kGrpc), "grpc");
}

// Nothing listens: transport errors, never successes.
TEST(LoadgenH2, ClosedPortIsTransportErrors) {
  uint16_t port = 0;
  {
    auto server = StartEcho();
    ASSERT_NE(server, nullptr);
    port = server->port();
  }
  Options o = EchoLoad(port, Protocol::kH2c, "x");
  o.users = 1;
  o.total_rate = 20;
  o.timeout = 500ms;
  auto r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->overall.ok, 0u);
  EXPECT_GT(r->overall.transport_errors, 0u) << r->Summary();
}

}  // namespace
}  // namespace weft::bench::loadgen
