#include "cli/stat.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "ztunnel/metrics/metrics.h"

namespace weft::cli {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The text a real ztunnel serves, from the real metrics code.
std::vector<MetricSample> Scrape(ztunnel::Metrics& m) {
  prometheus::TextSerializer s;
  std::string text = s.Serialize(m.registry()->Collect());
  auto out = ParseSamples(text, "weft_tcp_connection_duration_seconds");
  for (auto& x : ParseSamples(text, "istio_tcp_")) out.push_back(x);
  for (auto& x : ParseSamples(text, "istio_request")) out.push_back(x);
  return out;
}

ztunnel::TcpLabels Labels(const std::string& reporter, const std::string& dst,
                          const std::string& security = "mutual_tls") {
  ztunnel::TcpLabels l;
  l.reporter = reporter;
  l.source_workload = "frontend";
  l.source_workload_namespace = "shop";
  l.destination_workload = dst;
  l.destination_workload_namespace = "shop";
  l.connection_security_policy = security;
  return l;
}

TEST(HistogramQuantileTest, InterpolatesLikePrometheus) {
  // 10 in (0, 1], 10 in (1, 2]: p50 at the first bound, p75 half way into the second bucket.
  std::vector<std::pair<double, double>> b = {{1, 10}, {2, 20}, {kInf, 20}};
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.5, b), 1.0);
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.75, b), 1.5);
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.25, b), 0.5);
  // Beyond the last finite bound: the highest finite bound.
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.99, {{1, 1}, {2, 1}, {kInf, 10}}), 2.0);
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {{1, 0}, {kInf, 0}})));
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {{1, 3}})));  // no +Inf bucket: malformed
}

TEST(StatTest, WindowDeltasRatesAndPercentiles) {
  ztunnel::Metrics node0, node1;
  // Before the window: traffic that must not count.
  node1.ConnectionClosed(Labels("destination", "catalogue"), 5.0);
  auto before0 = Scrape(node0), before1 = Scrape(node1);
  std::vector<MetricSample> before = before0;
  before.insert(before.end(), before1.begin(), before1.end());

  // In the window: catalogue served 8 fast ok connections on node1 and 2 refused ones.
  for (int i = 0; i < 8; ++i) node1.ConnectionClosed(Labels("destination", "catalogue"), 0.0008);
  auto denied = Labels("destination", "catalogue");
  denied.response_flags = "DENY";
  for (int i = 0; i < 2; ++i) node1.ConnectionClosed(denied, 0.0002);
  auto c = node1.ForConnection(Labels("destination", "catalogue"));
  c.sent->Increment(4096);
  c.received->Increment(1024);
  // The source side (node0) also saw them: must not be double counted.
  for (int i = 0; i < 10; ++i) node0.ConnectionClosed(Labels("source", "catalogue"), 0.001);
  // legacy is not enrolled: only its callers' ztunnel reports it, in plain text.
  for (int i = 0; i < 4; ++i) node0.ConnectionClosed(Labels("source", "legacy", "unknown"), 0.02);

  std::vector<MetricSample> after = Scrape(node0);
  auto a1 = Scrape(node1);
  after.insert(after.end(), a1.begin(), a1.end());
  auto stats = ComputeStats(before, after, 2.0);
  ASSERT_EQ(stats.size(), 2u);
  const WorkloadStat& cat = stats[0];
  EXPECT_EQ(cat.workload, "catalogue");
  EXPECT_FALSE(cat.from_source);
  EXPECT_DOUBLE_EQ(cat.conns, 10);
  EXPECT_DOUBLE_EQ(cat.rate, 5);
  EXPECT_DOUBLE_EQ(cat.success_rate, 0.8);
  EXPECT_DOUBLE_EQ(cat.meshed, 1.0);
  EXPECT_DOUBLE_EQ(cat.read_bps, 2048);
  EXPECT_DOUBLE_EQ(cat.write_bps, 512);
  // 2 in (0.0001, 0.00025], 8 in (0.0005, 0.001]: p50 and p99 in the 1 ms bucket.
  EXPECT_GT(cat.p50, 0.0005);
  EXPECT_LE(cat.p50, 0.001);
  EXPECT_LE(cat.p99, 0.001);
  EXPECT_GT(cat.p99, cat.p50);
  const WorkloadStat& legacy = stats[1];
  EXPECT_EQ(legacy.workload, "legacy");
  EXPECT_TRUE(legacy.from_source);
  EXPECT_DOUBLE_EQ(legacy.conns, 4);
  EXPECT_DOUBLE_EQ(legacy.meshed, 0);
  EXPECT_GT(legacy.p50, 0.01);
  EXPECT_LE(legacy.p50, 0.025);

  std::ostringstream table;
  PrintStatTable(stats, "shop", 2.0, table);
  EXPECT_NE(table.str().find("CONN/S"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("80.00%"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("legacy*"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("not enrolled"), std::string::npos) << table.str();
  std::ostringstream one;
  PrintStatTable(stats, "shop/legacy", 2.0, one);
  EXPECT_EQ(one.str().find("catalogue"), std::string::npos) << one.str();
  std::ostringstream none;
  PrintStatTable(stats, "other", 2.0, none);
  EXPECT_NE(none.str().find("no connections seen for other"), std::string::npos);
}

TEST(StatTest, TotalsWithoutWindowAndRestartedCountersClamp) {
  ztunnel::Metrics m;
  for (int i = 0; i < 3; ++i) m.ConnectionClosed(Labels("destination", "cart"), 0.003);
  auto totals = ComputeStats({}, Scrape(m), 0);
  ASSERT_EQ(totals.size(), 1u);
  EXPECT_DOUBLE_EQ(totals[0].conns, 3);
  EXPECT_DOUBLE_EQ(totals[0].rate, 0);
  // A ztunnel restarted inside the window: the later reading is lower; never negative.
  ztunnel::Metrics restarted;
  restarted.ConnectionClosed(Labels("destination", "cart"), 0.003);
  auto s = ComputeStats(Scrape(m), Scrape(restarted), 1.0);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_GE(s[0].conns, 0);
  EXPECT_GE(s[0].read_bps, 0);
}

// Requests recorded the way HttpInbound records them (Metrics::ForRequest).
void Requests(ztunnel::Metrics& m, const ztunnel::TcpLabels& conn, int code, int n, double ms,
              const char* flags = "-") {
  auto s = m.ForRequest(conn, "http", code, "", flags);
  for (int i = 0; i < n; ++i) {
    s.requests->Increment();
    s.duration_ms->Observe(ms);
    s.request_bytes->Observe(100);
    s.response_bytes->Observe(200);
  }
}

TEST(StatTest, HttpWorkloadsShowRequestsAndL4WorkloadsKeepConnections) {
  ztunnel::Metrics node1;
  auto store = Labels("destination", "store");
  node1.ConnectionClosed(store, 1.0);  // one keep-alive connection
  Requests(node1, store, 200, 50, 2);  // before the window: must not count
  auto before = Scrape(node1);
  // In the window: 90 fast 200s, 6 403s (policy: not a failure), 4 503s, one slow request.
  Requests(node1, store, 200, 89, 3);
  Requests(node1, store, 200, 1, 900);
  Requests(node1, store, 403, 6, 0.3);
  Requests(node1, store, 503, 4, 0.3);
  node1.ConnectionClosed(store, 2.0);
  node1.ConnectionClosed(Labels("destination", "db"), 0.004);  // an L4 workload
  auto stats = ComputeStats(before, Scrape(node1), 4.0);
  ASSERT_EQ(stats.size(), 2u);
  const WorkloadStat& db = stats[0];
  EXPECT_EQ(db.workload, "db");
  EXPECT_FALSE(db.http);
  const WorkloadStat& st = stats[1];
  EXPECT_EQ(st.workload, "store");
  EXPECT_TRUE(st.http);
  EXPECT_DOUBLE_EQ(st.requests, 100);
  EXPECT_DOUBLE_EQ(st.rps, 25);
  EXPECT_DOUBLE_EQ(st.request_success_rate, 0.96);
  EXPECT_DOUBLE_EQ(st.conns, 1);
  // 10 in (0, 0.5] ms, 89 in (1, 5] ms, 1 in (500, 1000] ms.
  EXPECT_GT(st.req_p50, 0.001);
  EXPECT_LE(st.req_p50, 0.005);
  EXPECT_LE(st.req_p95, 0.005);
  EXPECT_GT(st.req_p99, 0.001);
  EXPECT_LE(st.req_p99, 1.0);

  std::ostringstream table;
  PrintStatTable(stats, "", 4.0, table);
  const std::string t = table.str();
  EXPECT_NE(t.find("RPS"), std::string::npos) << t;
  EXPECT_NE(t.find("25.0"), std::string::npos) << t;
  EXPECT_NE(t.find("96.00%"), std::string::npos) << t;
  EXPECT_NE(t.find("READ/S"), std::string::npos) << "db keeps the connection view:\n" << t;
  EXPECT_LT(t.find("store"), t.find("READ/S")) << "store is in the request table:\n" << t;
  EXPECT_GT(t.find("db"), t.find("READ/S")) << t;

  // A window without requests: still the HTTP view, with no rate to show.
  auto quiet = ComputeStats(Scrape(node1), Scrape(node1), 1.0);
  ASSERT_EQ(quiet.size(), 2u);
  EXPECT_TRUE(quiet[1].http);
  EXPECT_DOUBLE_EQ(quiet[1].requests, 0);
  EXPECT_TRUE(std::isnan(quiet[1].req_p50));
  std::ostringstream only_http;
  PrintStatTable(quiet, "shop/store", 1.0, only_http);
  EXPECT_EQ(only_http.str().find("READ/S"), std::string::npos) << only_http.str();
  EXPECT_EQ(only_http.str().find("no connections seen"), std::string::npos) << only_http.str();
}

TEST(StatTest, RequestsOnlyTheCallersRecordedStillGiveTheHttpView) {
  // The store's own ztunnel saw connections but parsed no HTTP (no L7 policy; the Service is
  // declared HTTP, so the front end's ztunnel terminated the requests): the request view comes
  // from the source reporter, the connection figures still from the destination.
  ztunnel::Metrics node0, node1;
  auto before0 = Scrape(node0), before1 = Scrape(node1);
  std::vector<MetricSample> before = before0;
  before.insert(before.end(), before1.begin(), before1.end());
  node1.ConnectionClosed(Labels("destination", "store"), 1.0);
  Requests(node0, Labels("source", "store"), 200, 19, 2);
  Requests(node0, Labels("source", "store"), 503, 1, 2);
  std::vector<MetricSample> after = Scrape(node0);
  auto a1 = Scrape(node1);
  after.insert(after.end(), a1.begin(), a1.end());
  auto stats = ComputeStats(before, after, 2.0);
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_FALSE(stats[0].from_source);
  EXPECT_DOUBLE_EQ(stats[0].conns, 1);
  EXPECT_TRUE(stats[0].http);
  EXPECT_DOUBLE_EQ(stats[0].requests, 20);
  EXPECT_DOUBLE_EQ(stats[0].rps, 10);
  EXPECT_DOUBLE_EQ(stats[0].request_success_rate, 0.95);
}

TEST(StatTest, TargetsAndFlagsParse) {
  auto t = ParseStatTarget("node0=/run/netns/weft-x-n0@10.249.0.1:15020");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->node, "node0");
  EXPECT_EQ(t->netns, "/run/netns/weft-x-n0");
  EXPECT_EQ(t->addr, "10.249.0.1:15020");
  auto local = ParseStatTarget("n=127.0.0.1:15020");
  ASSERT_TRUE(local.ok());
  EXPECT_TRUE(local->netns.empty());
  EXPECT_FALSE(ParseStatTarget("127.0.0.1:15020").ok());
  EXPECT_FALSE(ParseStatTarget("n=/x@nonsense").ok());

  std::ostringstream out, err;
  EXPECT_EQ(StatMain({"--window", "soon", "--target", "n=127.0.0.1:1"}, out, err), 2);
  EXPECT_NE(err.str().find("not a duration"), std::string::npos) << err.str();
  // No --target and no local mesh of that name: says how to get one.
  std::ostringstream out2, err2;
  EXPECT_EQ(StatMain({"--name", "weft-stat-test-none", "--state-root", "/nonexistent"}, out2, err2),
            1);
  EXPECT_NE(err2.str().find("weftctl up"), std::string::npos) << err2.str();
  // Nothing listens there: a clear failure naming the node, not a crash or an empty table.
  std::ostringstream out3, err3;
  EXPECT_EQ(StatMain({"--window", "0", "--target", "node7=127.0.0.1:1"}, out3, err3), 1);
  EXPECT_NE(err3.str().find("node7"), std::string::npos) << err3.str();
}

}  // namespace
}  // namespace weft::cli
