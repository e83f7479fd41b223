#include "ztunnel/metrics/metrics.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace weft::ztunnel {
namespace {

const std::vector<std::string> kIstioTcpNames = {
    "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
    "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"};

const std::set<std::string> kIstioLabelNames = {"reporter",
                                                "source_workload",
                                                "source_workload_namespace",
                                                "source_principal",
                                                "source_app",
                                                "source_version",
                                                "source_cluster",
                                                "destination_workload",
                                                "destination_workload_namespace",
                                                "destination_principal",
                                                "destination_app",
                                                "destination_version",
                                                "destination_service",
                                                "destination_service_name",
                                                "destination_service_namespace",
                                                "destination_cluster",
                                                "request_protocol",
                                                "response_flags",
                                                "connection_security_policy"};

TcpLabels SampleLabels() {
  TcpLabels l;
  l.reporter = "destination";
  l.source_workload = "sleep";
  l.source_workload_namespace = "default";
  l.source_principal = "spiffe://cluster.local/ns/default/sa/sleep";
  l.source_app = "sleep";
  l.source_version = "v1";
  l.destination_workload = "httpbin";
  l.destination_workload_namespace = "default";
  l.destination_principal = "spiffe://cluster.local/ns/default/sa/httpbin";
  l.destination_app = "httpbin";
  l.destination_version = "v2";
  l.destination_service = "httpbin.default.svc.cluster.local";
  l.destination_service_name = "httpbin";
  l.destination_service_namespace = "default";
  l.connection_security_policy = "mutual_tls";
  return l;
}

std::string Render(Metrics& m) {
  prometheus::TextSerializer s;
  return s.Serialize(m.registry()->Collect());
}

const prometheus::MetricFamily* FindFamily(const std::vector<prometheus::MetricFamily>& fams,
                                           const std::string& name) {
  for (const auto& f : fams)
    if (f.name == name) return &f;
  return nullptr;
}

std::map<std::string, std::string> LabelMap(const prometheus::ClientMetric& m) {
  std::map<std::string, std::string> out;
  for (const auto& l : m.label) out[l.name] = l.value;
  return out;
}

TEST(MetricsTest, SameLabelsReturnSameCounters) {
  Metrics m;
  TcpCounters a = m.ForConnection(SampleLabels());
  TcpLabels copy = SampleLabels();  // equal values, different object
  TcpCounters b = m.ForConnection(copy);
  EXPECT_EQ(a.opened, b.opened);
  EXPECT_EQ(a.closed, b.closed);
  EXPECT_EQ(a.sent, b.sent);
  EXPECT_EQ(a.received, b.received);
  // The four are distinct counters.
  std::set<prometheus::Counter*> ptrs = {a.opened, a.closed, a.sent, a.received};
  EXPECT_EQ(ptrs.size(), 4u);
  a.opened->Increment();
  b.opened->Increment();
  EXPECT_DOUBLE_EQ(a.opened->Value(), 2);
}

// Open connections of one series share one copy of their labels (memory per idle connection);
// writing to one connection's labels copies them first, so the others and the series keep theirs.
TEST(MetricsTest, ConnectionsOfOneSeriesShareTheirLabelsCopyOnWrite) {
  Metrics m;
  SharedLabels a, b;
  a.mut() = SampleLabels();
  b.mut() = SampleLabels();
  ASSERT_NE(&*a, &*b);
  const TcpCounters* ca = m.ForConnection(a);
  const TcpCounters* cb = m.ForConnection(b);
  EXPECT_EQ(ca, cb);
  EXPECT_EQ(ca->opened, m.ForConnection(SampleLabels()).opened);
  EXPECT_EQ(&*a, &*b) << "one copy for the series";

  b.mut().response_flags = "UF";  // b's connection failed
  EXPECT_NE(&*a, &*b);
  EXPECT_EQ(a->response_flags, SampleLabels().response_flags);
  EXPECT_EQ(b->response_flags, "UF");
  SharedLabels c;
  c.mut() = SampleLabels();
  m.ForConnection(c);
  EXPECT_EQ(&*c, &*a) << "the series' copy did not change";
  // A flow's whole labels cost one pointer while it is open.
  EXPECT_LE(sizeof(SharedLabels), 2 * sizeof(void*));
}

TEST(MetricsTest, DistinctLabelSetsProduceDistinctChildren) {
  Metrics m;
  TcpLabels l1 = SampleLabels();
  TcpLabels l2 = SampleLabels();
  l2.reporter = "source";
  TcpLabels l3 = SampleLabels();
  l3.response_flags = "UF";
  TcpCounters c1 = m.ForConnection(l1);
  TcpCounters c2 = m.ForConnection(l2);
  TcpCounters c3 = m.ForConnection(l3);
  EXPECT_NE(c1.opened, c2.opened);
  EXPECT_NE(c1.opened, c3.opened);
  EXPECT_NE(c2.sent, c3.sent);
  c1.sent->Increment(100);
  c2.sent->Increment(7);
  EXPECT_DOUBLE_EQ(c1.sent->Value(), 100);
  EXPECT_DOUBLE_EQ(c2.sent->Value(), 7);
  EXPECT_DOUBLE_EQ(c3.sent->Value(), 0);

  auto fams = m.registry()->Collect();
  const auto* sent = FindFamily(fams, "istio_tcp_sent_bytes_total");
  ASSERT_NE(sent, nullptr);
  EXPECT_EQ(sent->metric.size(), 3u);
}

// A naive concatenation key would make ("ab","c") and ("a","bc") collide.
TEST(MetricsTest, CacheKeyDoesNotConfuseShiftedValues) {
  Metrics m;
  TcpLabels a;
  a.reporter = "ab";
  a.source_workload = "c";
  TcpLabels b;
  b.reporter = "a";
  b.source_workload = "bc";
  EXPECT_NE(m.ForConnection(a).opened, m.ForConnection(b).opened);
  TcpLabels c;
  c.reporter = std::string("x\0y", 3);
  TcpLabels d;
  d.reporter = "x";
  d.source_workload = std::string("y\0", 1) + "unknown";
  EXPECT_NE(m.ForConnection(c).opened, m.ForConnection(d).opened);
}

TEST(MetricsTest, SerializedTextHasIstioNamesAndAllLabels) {
  Metrics m;
  TcpCounters c = m.ForConnection(SampleLabels());
  c.opened->Increment();
  c.sent->Increment(1234);
  c.received->Increment(99);
  c.closed->Increment();

  auto fams = m.registry()->Collect();
  for (const auto& name : kIstioTcpNames) {
    SCOPED_TRACE(name);
    const auto* f = FindFamily(fams, name);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->type, prometheus::MetricType::Counter);
    ASSERT_EQ(f->metric.size(), 1u);
    auto labels = LabelMap(f->metric[0]);
    std::set<std::string> names;
    for (auto& [k, v] : labels) names.insert(k);
    EXPECT_EQ(names, kIstioLabelNames);
    EXPECT_EQ(labels["reporter"], "destination");
    EXPECT_EQ(labels["source_cluster"], "Kubernetes");
    EXPECT_EQ(labels["request_protocol"], "tcp");
    EXPECT_EQ(labels["response_flags"], "-");
    EXPECT_EQ(labels["connection_security_policy"], "mutual_tls");
    EXPECT_EQ(labels["destination_service"], "httpbin.default.svc.cluster.local");
  }

  std::string text = Render(m);
  // Exact exposition names: no second _total appended, no other istio_ family than the four,
  // istio_build and istio_tcp_sockets_open.
  for (const auto& name : kIstioTcpNames)
    EXPECT_NE(text.find("# TYPE " + name + " counter\n"), std::string::npos) << name;
  EXPECT_EQ(text.find("_total_total"), std::string::npos);
  size_t istio_types = 0;
  for (size_t p = text.find("# TYPE istio_"); p != std::string::npos;
       p = text.find("# TYPE istio_", p + 1))
    ++istio_types;
  EXPECT_EQ(istio_types, 6u);
  EXPECT_NE(text.find("# TYPE istio_build gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE istio_tcp_sockets_open gauge\n"), std::string::npos);

  // One sample line carrying every label and the value.
  size_t line_start = text.find("\nistio_tcp_sent_bytes_total{");
  ASSERT_NE(line_start, std::string::npos);
  std::string line = text.substr(line_start + 1, text.find('\n', line_start + 1) - line_start - 1);
  for (const auto& l : kIstioLabelNames)
    EXPECT_NE(line.find(l + "=\""), std::string::npos) << l << " missing in " << line;
  EXPECT_NE(line.find("source_principal=\"spiffe://cluster.local/ns/default/sa/sleep\""),
            std::string::npos);
  EXPECT_NE(line.find("} 1234"), std::string::npos) << line;
}

// Deny at connect: the source's count joins the destination's family with direction="outbound",
// brought up to date by the before-scrape hook.
TEST(MetricsTest, SourceDenialsAreCountedBeforeEachScrape) {
  Metrics m;
  int scrapes = 0;
  m.SetBeforeScrape([&] {
    ++scrapes;
    m.SourcePolicyDenials("shop/deny-frontend", "deny", 2);
  });
  m.connect_deny_entries().Set(7);
  m.ConnectDenyError("full", 3);
  std::string text = Render(m);
  EXPECT_EQ(scrapes, 1);
  for (const std::string& line :
       {std::string("weft_policy_denials_total{direction=\"outbound\",policy=\"shop/"
                    "deny-frontend\",reason=\"deny\"} 2"),
        std::string("weft_connect_deny_entries 7"),
        std::string("weft_connect_deny_errors_total{reason=\"full\"} 3")}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  EXPECT_NE(Render(m).find("reason=\"deny\"} 4"), std::string::npos);
  m.SetBeforeScrape(nullptr);
  Render(m);
  EXPECT_EQ(scrapes, 2);
}

TEST(MetricsTest, WeftMetricsAppear) {
  Metrics m;
  m.HandshakeFailure("inbound", "untrusted_peer");
  m.HandshakeFailure("inbound", "untrusted_peer");
  m.PolicyDenial("default/deny-all", "deny");
  m.BadInput("15008", "bad_connect");
  m.ConnectionFailure("outbound", "connect_refused");
  m.ConfigLoad(true, "v1");
  m.ConfigLoad(false, "v2");
  m.ReevaluationClosed();
  m.active_connections("inbound").Increment();
  m.active_connections("outbound").Set(3);
  m.pool_connections().Set(2);
  m.pool_streams().Set(5);
  m.enrolled_pods().Set(4);
  m.cert_expiry("spiffe://cluster.local/ns/default/sa/sleep").Set(1800000000);

  std::string text = Render(m);
  const std::vector<std::string> expected_lines = {
      "weft_hbone_handshake_failures_total{direction=\"inbound\",reason=\"untrusted_peer\"} 2",
      "weft_policy_denials_total{direction=\"inbound\",policy=\"default/"
      "deny-all\",reason=\"deny\"} "
      "1",
      "weft_bad_input_total{kind=\"bad_connect\",port=\"15008\"} 1",
      "weft_connection_failures_total{direction=\"outbound\",reason=\"connect_refused\"} 1",
      "weft_config_loads_total{result=\"ok\"} 1",
      "weft_config_loads_total{result=\"error\"} 1",
      "weft_config_version_info{version=\"v1\"} 1",
      "weft_policy_reevaluation_closed_total 1",
      "weft_active_connections{direction=\"inbound\"} 1",
      "weft_active_connections{direction=\"outbound\"} 3",
      "weft_hbone_pool_connections 2",
      "weft_hbone_pool_streams 5",
      "weft_enrolled_pods 4",
      "weft_cert_expiry_seconds{identity=\"spiffe://cluster.local/ns/default/sa/sleep\"} "
      "1800000000",
      "weft_build_info{version=\"" + std::string(Metrics::BuildVersion()) + "\"} 1",
  };
  for (const auto& l : expected_lines)
    EXPECT_NE(text.find("\n" + l + "\n"), std::string::npos) << "missing line: " << l << "\n"
                                                             << text;
  EXPECT_FALSE(Metrics::BuildVersion().empty());
  // A failed load must not report v2 as the version in use.
  EXPECT_EQ(text.find("version=\"v2\""), std::string::npos);
}

// What Istio's ztunnel dashboard reads besides the traffic metrics: istio_build by tag, the
// workload manager's proxy counts, and open sockets (process_* come from the admin server).
TEST(MetricsTest, IstioZtunnelDashboardMetrics) {
  Metrics m;
  m.enrolled_pods().Set(2);
  m.WorkloadProxyStarting();
  m.WorkloadProxyStarting();
  m.WorkloadProxyStarted(true);
  m.WorkloadProxyStarting();
  m.WorkloadProxyStarted(false);
  m.WorkloadProxyStopped();
  std::string text = Render(m);
  for (const std::string& l :
       {"istio_build{component=\"ztunnel\",tag=\"" + std::string(Metrics::BuildVersion()) + "\"} 1",
        std::string("workload_manager_active_proxy_count 2"),
        std::string("workload_manager_pending_proxy_count 1"),
        std::string("workload_manager_proxies_started_total 1"),
        std::string("workload_manager_proxies_stopped_total 1")}) {
    EXPECT_NE(text.find("\n" + l + "\n"), std::string::npos) << "missing line: " << l << "\n"
                                                             << text;
  }
  // The active count follows weft_enrolled_pods at each scrape.
  m.enrolled_pods().Set(5);
  EXPECT_NE(Render(m).find("\nworkload_manager_active_proxy_count 5\n"), std::string::npos);
}

double SocketsOpen(Metrics& m) {
  auto fams = m.registry()->Collect();
  const prometheus::MetricFamily* f = FindFamily(fams, "istio_tcp_sockets_open");
  EXPECT_NE(f, nullptr);
  if (f == nullptr || f->metric.size() != 1) return -1;
  EXPECT_EQ(f->type, prometheus::MetricType::Gauge);
  return f->metric[0].gauge.value;
}

// istio_tcp_sockets_open counts this process's TCP connection sockets, not listeners, not UDP.
TEST(MetricsTest, TcpSocketsOpenCountsConnectionSockets) {
  Metrics m;
  const double before = SocketsOpen(m);
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &alen), 0);
  int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(udp, 0);
  EXPECT_EQ(SocketsOpen(m), before) << "a listener or a UDP socket was counted";
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  int server = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(server, 0);
  EXPECT_EQ(SocketsOpen(m), before + 2);
  for (int fd : {client, server, listener, udp}) ::close(fd);
  EXPECT_EQ(SocketsOpen(m), before);
}

TEST(MetricsTest, ConnectionDurationHistogramKeepsFlagsSetAtClose) {
  Metrics m;
  TcpLabels ok = SampleLabels();
  m.ConnectionClosed(ok, 0.0003);
  m.ConnectionClosed(ok, 0.002);
  TcpLabels failed = SampleLabels();
  failed.response_flags = "UF";
  failed.source_principal = "spiffe://cluster.local/ns/default/sa/other";  // not a label here
  m.ConnectionClosed(failed, 0.04);

  auto fams = m.registry()->Collect();
  const auto* fam = FindFamily(fams, "weft_tcp_connection_duration_seconds");
  ASSERT_NE(fam, nullptr);
  ASSERT_EQ(fam->metric.size(), 2u);
  const std::set<std::string> want = {"reporter",
                                      "source_workload",
                                      "source_workload_namespace",
                                      "destination_workload",
                                      "destination_workload_namespace",
                                      "destination_service",
                                      "connection_security_policy",
                                      "response_flags"};
  for (const auto& metric : fam->metric) {
    auto labels = LabelMap(metric);
    std::set<std::string> names;
    for (const auto& [k, v] : labels) names.insert(k);
    EXPECT_EQ(names, want);
    if (labels["response_flags"] == "-") {
      EXPECT_EQ(metric.histogram.sample_count, 2u);
      EXPECT_NEAR(metric.histogram.sample_sum, 0.0023, 1e-9);
      // Cumulative buckets: 0.0003 falls in le=0.0005, 0.002 in le=0.0025.
      for (const auto& b : metric.histogram.bucket) {
        const std::map<double, uint64_t> want_counts = {{0.00025, 0}, {0.0005, 1}, {0.0025, 2}};
        auto it = want_counts.find(b.upper_bound);
        if (it != want_counts.end()) {
          EXPECT_EQ(b.cumulative_count, it->second) << "le=" << b.upper_bound;
        }
      }
    } else {
      EXPECT_EQ(labels["response_flags"], "UF");
      EXPECT_EQ(metric.histogram.sample_count, 1u);
    }
  }
  EXPECT_NE(Render(m).find("weft_tcp_connection_duration_seconds_bucket{"), std::string::npos);
}

TEST(MetricsTest, ConfigVersionInfoShowsOnlyCurrentVersion) {
  Metrics m;
  m.ConfigLoad(true, "v1");
  m.ConfigLoad(true, "v2");
  m.ConfigLoad(true, "v2");
  std::string text = Render(m);
  EXPECT_EQ(text.find("weft_config_version_info{version=\"v1\"}"), std::string::npos) << text;
  EXPECT_NE(text.find("weft_config_version_info{version=\"v2\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("weft_config_loads_total{result=\"ok\"} 3\n"), std::string::npos) << text;
}

TEST(MetricsTest, ConcurrentLookupsAgree) {
  Metrics m;
  constexpr int kThreads = 4, kIters = 2000;
  std::vector<std::thread> threads;
  std::vector<std::vector<prometheus::Counter*>> seen(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        TcpLabels l = SampleLabels();
        l.destination_workload = "w" + std::to_string(i % 16);
        TcpCounters c = m.ForConnection(l);
        c.opened->Increment();
        if (i < 16) seen[t].push_back(c.opened);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[t], seen[0]);
  auto fams = m.registry()->Collect();
  const auto* f = FindFamily(fams, "istio_tcp_connections_opened_total");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->metric.size(), 16u);
  double total = 0;
  for (const auto& cm : f->metric) total += cm.counter.value;
  EXPECT_DOUBLE_EQ(total, kThreads * kIters);
}

TEST(MetricsTest, RequestSeriesCarryTheConnectionLabelsAndIstiosBuckets) {
  Metrics m;
  TcpLabels conn;
  conn.reporter = "destination";
  conn.source_workload = "frontend";
  conn.destination_workload = "catalogue";
  conn.connection_security_policy = "mutual_tls";
  RequestSeries a = m.ForRequest(conn, "http", 200, "", "-");
  RequestSeries b = m.ForRequest(conn, "http", 200, "", "-");
  EXPECT_EQ(a.requests, b.requests) << "cached";
  EXPECT_EQ(a.duration_ms, b.duration_ms);
  RequestSeries denied = m.ForRequest(conn, "http", 403, "", "-");
  RequestSeries cut = m.ForRequest(conn, "http", 0, "", "DC");
  EXPECT_NE(a.requests, denied.requests);
  EXPECT_NE(denied.requests, cut.requests);
  a.requests->Increment();
  a.duration_ms->Observe(3);
  cut.requests->Increment();

  auto fams = m.registry()->Collect();
  const auto* total = FindFamily(fams, "istio_requests_total");
  ASSERT_NE(total, nullptr);
  bool seen_dc = false;
  for (const auto& metric : total->metric) {
    auto l = LabelMap(metric);
    EXPECT_EQ(l.size(), 21u) << "19 connection labels + response_code + grpc_response_status";
    EXPECT_EQ(l["reporter"], "destination");
    EXPECT_EQ(l["source_workload"], "frontend");
    EXPECT_EQ(l["request_protocol"], "http") << "not the connection's tcp";
    EXPECT_EQ(l["grpc_response_status"], "");
    if (l["response_code"] == "0") {
      seen_dc = true;
      EXPECT_EQ(l["response_flags"], "DC");
      EXPECT_EQ(metric.counter.value, 1);
    }
  }
  EXPECT_TRUE(seen_dc);
  const auto* duration = FindFamily(fams, "istio_request_duration_milliseconds");
  ASSERT_NE(duration, nullptr);
  ASSERT_FALSE(duration->metric.empty());
  const auto& buckets = duration->metric[0].histogram.bucket;
  ASSERT_EQ(buckets.size(), Metrics::RequestBuckets().size() + 1);  // and +Inf
  EXPECT_EQ(buckets.front().upper_bound, 0.5);
  EXPECT_EQ(buckets[buckets.size() - 2].upper_bound, 3600000);
  for (const char* f : {"istio_request_bytes", "istio_response_bytes"})
    EXPECT_NE(FindFamily(fams, f), nullptr) << f;
}

}  // namespace
}  // namespace weft::ztunnel
