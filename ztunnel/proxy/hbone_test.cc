#include "ztunnel/proxy/hbone.h"

#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"

namespace weft::ztunnel {
namespace {

TEST(Hbone, BuildsConnectRequest) {
  auto h = BuildConnectRequest(*SockAddr::Parse("10.0.0.5:8080"));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0], (std::pair<std::string, std::string>{":method", "CONNECT"}));
  EXPECT_EQ(h[1], (std::pair<std::string, std::string>{":authority", "10.0.0.5:8080"}));
  auto v6 = BuildConnectRequest(*SockAddr::Parse("[fd00::5]:80"), "00-abc-def-01");
  EXPECT_EQ(v6[1].second, "[fd00::5]:80");
  EXPECT_EQ(v6[2].first, "traceparent");
}

TEST(Hbone, ParsesWhatItBuilds) {
  auto target = *SockAddr::Parse("10.0.0.5:8080");
  auto got = ParseConnectRequest(BuildConnectRequest(target));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, target);
}

struct BadCase {
  const char* name;
  HeaderList headers;
  int status;
};

TEST(Hbone, RejectsBadRequests) {
  const BadCase cases[] = {
      {"GET", {{":method", "GET"}, {":authority", "10.0.0.1:80"}}, 405},
      {"no method", {{":authority", "10.0.0.1:80"}}, 405},
      {"no authority", {{":method", "CONNECT"}}, 400},
      {"hostname authority", {{":method", "CONNECT"}, {":authority", "example.com:80"}}, 400},
      {"no port", {{":method", "CONNECT"}, {":authority", "10.0.0.1"}}, 400},
      {"port 0", {{":method", "CONNECT"}, {":authority", "10.0.0.1:0"}}, 400},
      {"port too big", {{":method", "CONNECT"}, {":authority", "10.0.0.1:65536"}}, 400},
      {"extended connect",
       {{":method", "CONNECT"}, {":protocol", "websocket"}, {":authority", "10.0.0.1:80"}},
       400},
      {"path", {{":method", "CONNECT"}, {":path", "/"}, {":authority", "10.0.0.1:80"}}, 400},
  };
  for (const auto& c : cases) {
    auto got = ParseConnectRequest(c.headers);
    ASSERT_FALSE(got.ok()) << c.name;
    EXPECT_EQ(StatusForRejection(got.status()), c.status) << c.name << ": " << got.status();
  }
}

TEST(Hbone, PoolKeyDistinguishesEveryField) {
  SpiffeId a{"cluster.local", "ns1", "sa1"}, b{"cluster.local", "ns1", "sa2"};
  auto addr1 = *SockAddr::Parse("10.0.0.1:15008"), addr2 = *SockAddr::Parse("10.0.0.2:15008");
  absl::flat_hash_map<PoolKey, int> m;
  m[{a, b, addr1}] = 1;
  m[{b, a, addr1}] = 2;  // direction matters
  m[{a, b, addr2}] = 3;  // destination address matters
  m[{a, a, addr1}] = 4;
  EXPECT_EQ(m.size(), 4u);
  EXPECT_EQ((m[{a, b, addr1}]), 1) << "the same key must find the same pooled entry";
}

}  // namespace
}  // namespace weft::ztunnel
