#include "common/scrape/scrape.h"

#include <gtest/gtest.h>

namespace weft {
namespace {

TEST(ParseSamples, ReadsNamesLabelsAndValues) {
  const std::string text =
      "# HELP istio_tcp_sent_bytes_total bytes\n"
      "# TYPE istio_tcp_sent_bytes_total counter\n"
      "istio_tcp_sent_bytes_total{reporter=\"source\",source_workload=\"frontend\","
      "destination_service=\"a\\\"b\\\\c\"} 1234\n"
      "istio_tcp_connections_opened_total{reporter=\"destination\"} 7 1700000000000\n"
      "istio_tcp_broken{reporter=\"x\n"
      "weft_policy_denials_total{policy=\"shop/p\"} 2\n"
      "istio_build 1\n";
  auto s = ParseSamples(text, "istio_tcp_");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "istio_tcp_sent_bytes_total");
  EXPECT_EQ(s[0].labels.at("source_workload"), "frontend");
  EXPECT_EQ(s[0].labels.at("destination_service"), "a\"b\\c");
  EXPECT_EQ(s[0].value, 1234);
  EXPECT_EQ(s[1].name, "istio_tcp_connections_opened_total");
  EXPECT_EQ(s[1].value, 7);
  auto d = ParseSamples(text, "weft_policy_denials_total");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].labels.at("policy"), "shop/p");
  auto plain = ParseSamples(text, "istio_build");
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_TRUE(plain[0].labels.empty());
}

TEST(MetricSum, MatchesNameAndLabelsExactly) {
  const std::string text =
      "weft_x_total{a=\"1\",b=\"2\"} 3\n"
      "weft_x_total{a=\"1\",b=\"22\"} 4\n"
      "weft_x_total_more{a=\"1\"} 100\n"
      "weft_x_total 5\n";
  EXPECT_EQ(MetricSum(text, "weft_x_total"), 12);
  EXPECT_EQ(MetricSum(text, "weft_x_total", {{"b", "2"}}), 3) << "b=22 must not match b=2";
  EXPECT_EQ(MetricSum(text, "weft_x_total", {{"a", "1"}}), 7);
  EXPECT_EQ(MetricSum(text, "weft_nothing"), 0);
}

}  // namespace
}  // namespace weft
