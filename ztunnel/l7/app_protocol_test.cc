#include "ztunnel/l7/app_protocol.h"

#include <gtest/gtest.h>

namespace weft::ztunnel::l7 {
namespace {

TEST(AppProtocolTest, AppProtocolDecides) {
  for (const char* p : {"http", "HTTP", "http2", "h2c", "grpc", "grpc-web", "kubernetes.io/h2c",
                        "kubernetes.io/ws"})
    EXPECT_TRUE(IsHttpPort(p, "tcp-whatever")) << p;
  for (const char* p : {"tcp", "https", "tls", "mongo", "kubernetes.io/wss", "httpx"})
    EXPECT_FALSE(IsHttpPort(p, "http")) << p << ": an appProtocol wins over the name";
}

TEST(AppProtocolTest, IstioPortNamePrefixes) {
  for (const char* n : {"http", "http-web", "HTTP-api", "http2", "http2-x", "grpc", "grpc-api",
                        "grpc-web", "grpc-web-ui"})
    EXPECT_TRUE(IsHttpPort("", n)) << n;
  for (const char* n : {"", "tcp", "https", "https-api", "httpx", "web-http", "tls-http", "mysql",
                        "grpcx", "http_1"})
    EXPECT_FALSE(IsHttpPort("", n)) << n;
}

TEST(AppProtocolTest, Http2Ports) {
  for (const char* p : {"http2", "H2C", "grpc", "kubernetes.io/h2c"})
    EXPECT_TRUE(IsHttp2Port(p, "http")) << p;
  for (const char* p : {"http", "grpc-web", "kubernetes.io/ws", "tcp"})
    EXPECT_FALSE(IsHttp2Port(p, "grpc")) << p << ": an appProtocol wins over the name";
  for (const char* n : {"http2", "http2-x", "grpc", "GRPC-api"})
    EXPECT_TRUE(IsHttp2Port("", n)) << n;
  for (const char* n : {"http", "http-web", "grpc-web", "grpc-web-ui", "tcp", ""})
    EXPECT_FALSE(IsHttp2Port("", n)) << n;
}

}  // namespace
}  // namespace weft::ztunnel::l7
