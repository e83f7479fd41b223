#include "cli/tap.h"

#include "gtest/gtest.h"

namespace weft::cli {
namespace {

nlohmann::json Event() {
  return {{"unix_ms", 1'796'000'000'123},  // 2026-11-30T...Z: only the time of day is printed
          {"src_workload", "shop/frontend"},
          {"dst_workload", "shop/store"},
          {"src_identity", "spiffe://cluster.local/ns/shop/sa/frontend"},
          {"src_addr", "10.0.0.1"},
          {"dst_addr", "10.0.1.2:8080"},
          {"method", "POST"},
          {"authority", "store.shop:80"},
          {"path", "/orders"},
          {"status", 403},
          {"latency_ms", 0.42},
          {"local_reply", true}};
}

TEST(TapMatches, NamespaceOrWorkloadOnEitherSide) {
  nlohmann::json e = Event();
  EXPECT_TRUE(TapMatches(e, ""));
  EXPECT_TRUE(TapMatches(e, "shop"));
  EXPECT_TRUE(TapMatches(e, "shop/store"));
  EXPECT_TRUE(TapMatches(e, "shop/frontend"));
  EXPECT_FALSE(TapMatches(e, "sho"));
  EXPECT_FALSE(TapMatches(e, "shop/stor"));
  EXPECT_FALSE(TapMatches(e, "legacy"));
}

TEST(FormatTapEvent, OneLineWithWhoWhatAndHowItEnded) {
  std::string line = FormatTapEvent(Event(), "node1");
  EXPECT_EQ(line.substr(12),
            " shop/frontend -> shop/store POST store.shop:80 /orders 403 0.4ms (ztunnel) "
            "src=spiffe://cluster.local/ns/shop/sa/frontend (node1)")
      << line;
  EXPECT_EQ(line.substr(8, 4), ".123") << line;
  nlohmann::json plain = Event();
  plain["src_workload"] = "";
  plain["src_identity"] = "";
  plain["status"] = 0;
  plain["local_reply"] = false;
  line = FormatTapEvent(plain, "node0");
  EXPECT_NE(line.find("10.0.0.1 (not in the mesh) -> shop/store"), std::string::npos) << line;
  EXPECT_NE(line.find(" no-response "), std::string::npos) << line;
  EXPECT_NE(line.find("src=plaintext (node0)"), std::string::npos) << line;
}

}  // namespace
}  // namespace weft::cli
