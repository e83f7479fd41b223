// Weft's Grafana dashboards (helm/dashboards/*.json) against a live mesh: a `weftctl up` mesh
// (testdata/mesh-dashboards.yaml, eBPF capture so that the capture-decision panel has data) scraped
// by the real Prometheus server (ztunnels, weftd, and node0's weft-agent), some L4 and L7 traffic
// plus the failures the overview counts (a policy denial, an upstream connect failure, an HBONE
// handshake with garbage), then EVERY target of EVERY panel is evaluated through Prometheus's
// HTTP API, variables substituted ($namespace, $workload, $reporter, $__rate_interval ...), and
// must return data: a panel that names a metric or label Weft does not export fails here. Then
// the same for queries of Istio's own dashboards (ztunnel, workload, service, mesh).
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "tests/e2e/dashboard_queries.h"
#include "tests/e2e/e2e_fixture.h"

namespace weft::e2e {
namespace {

constexpr char kClient[] = "dash/client", kWeb[] = "dash/web", kEcho[] = "dash/echo",
               kPlain[] = "outside/plain";

class DashboardsE2eTest : public E2eTest {
 protected:
  std::string MeshFile() const override { return "mesh-dashboards.yaml"; }
  size_t ExpectedPods() const override { return 4; }
  // The agent's /metrics stays on its node's loopback (127.0.0.1:15030): node0's is the one the
  // Prometheus server in node0's namespace reaches.
  std::vector<ScrapeJob> ExtraScrapeJobs() const override {
    return {ScrapeJob{"weft-agent", {"127.0.0.1:15030"}, {}}};
  }

  int Curl(const std::string& url) {
    auto r = Weftctl({"exec", kClient, "--", "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
                      "%{http_code}", url},
                     seconds(30));
    int code = 0;
    return r.ok() && absl::SimpleAtoi(*r, &code) ? code : 0;
  }
};

INSTANTIATE_TEST_SUITE_P(Capture, DashboardsE2eTest, ::testing::Values("ebpf"),
                         [](const auto& info) { return std::string(info.param); });

TEST_P(DashboardsE2eTest, EveryPanelQueryReturnsData) {
  auto dashboards = LoadDashboards(WEFT_DASHBOARDS_DIR);
  ASSERT_TRUE(dashboards.ok()) << dashboards.status();
  ASSERT_FALSE(dashboards->empty());
  {
    SCOPED_TRACE("traffic: L7 (200 and a policy's 403), L4 cross-node, and failures");
    EXPECT_EQ(Curl("http://web.dash/public/a"), 200);
    EXPECT_EQ(Curl("http://web.dash/public/b"), 200);
    EXPECT_EQ(Curl("http://web.dash/private"), 403);
    EXPECT_TRUE(Reaches(kClient, "echo.dash", "90"));
    EXPECT_TRUE(Reaches(kClient, Pod(kEcho).ip, "9090"));
    // Nothing listens on 9999 in the echo pod: the destination's ztunnel fails to connect.
    EXPECT_FALSE(Call(kClient, Pod(kEcho).ip, "9999").ok());
    // Garbage instead of a TLS ClientHello on web's HBONE port, from outside the mesh.
    auto raw = Weftctl(
        {"exec", kPlain, "--", WEFT_E2E_APP_PATH, "raw", Pod(kWeb).ip, "15008", "garbage\r\n\r\n"},
        seconds(30));
    EXPECT_TRUE(raw.ok()) << raw.status();
  }
  const std::map<std::string, std::string> vars = {
      {"namespace", "dash"}, {"workload", Pod(kWeb).workload}, {"reporter", "destination"}};
  int evaluated = 0;
  std::vector<std::string> empty;
  for (const Dashboard& d : *dashboards) {
    for (const PanelQuery& q : Queries(d)) {
      const std::string promql = Substitute(q.expr, vars);
      ASSERT_EQ(promql.find('$'), std::string::npos) << q.Name() << ": " << promql;
      // Counters show up at the next scrape, rates once two scrapes have them: wait a little
      // for each (most are there at once).
      auto r = prom_->WaitFor(
          promql, [](const std::vector<PromSample>& v) { return !v.empty(); }, seconds(10));
      ++evaluated;
      if (!r.ok()) empty.push_back(q.Name() + "\n    " + promql + "\n    " + r.status().ToString());
    }
  }
  EXPECT_TRUE(empty.empty()) << empty.size() << " of " << evaluated
                             << " panel queries returned no data:\n  "
                             << absl::StrJoin(empty, "\n  ");
  std::printf("[ %d panel queries of %zu dashboards evaluated ]\n", evaluated, dashboards->size());

  // What Istio's own dashboards query (istio/istio manifests/addons/dashboards: the ztunnel,
  // workload, service and mesh dashboards), with the ztunnel dashboard's pod/app selectors left
  // out (they match Kubernetes pod names, which Prometheus adds: docs/observability.md).
  const std::string w = Pod(kWeb).workload;
  const std::string dest = "reporter=\"destination\",destination_workload=~\"" + w + "\"";
  const std::vector<std::string> istio = {
      "sum by (tag) (istio_build{component=\"ztunnel\"})",
      "sum(process_open_fds)",
      "sum(istio_tcp_sockets_open)",
      "sum(istio_tcp_connections_opened_total) - sum(istio_tcp_connections_closed_total)",
      "sum(rate(istio_xds_connection_terminations_total[1m]))",
      "sum by (url) (irate(istio_xds_message_total[1m]))",
      "sum(workload_manager_active_proxy_count)",
      "sum(workload_manager_pending_proxy_count)",
      "round(sum(irate(istio_requests_total{" + dest +
          ",destination_workload_namespace=~\"dash\"}[5m])), 0.001)",
      "sum(irate(istio_requests_total{" + dest + ",response_code!~\"5.*\"}[5m])) / " +
          "sum(irate(istio_requests_total{" + dest + "}[5m]))",
      "histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket{" + dest +
          "}[1m])) by (le))",
      "sum(irate(istio_requests_total{connection_security_policy=\"mutual_tls\","
      "destination_service=~\"web.dash.svc.cluster.local\",reporter=~\"destination\"}[5m])) "
      "by (source_workload, source_workload_namespace, response_code)",
      "sum(irate(istio_tcp_sent_bytes_total{reporter=\"destination\","
      "destination_workload_namespace=~\"dash\"}[1m])) by (source_workload, "
      "source_workload_namespace, destination_service)",
      "round(sum(rate(istio_requests_total{reporter=~\"source|waypoint\"}[1m])))",
  };
  for (const std::string& promql : istio) {
    auto r = prom_->WaitFor(
        promql, [](const std::vector<PromSample>& v) { return !v.empty(); }, seconds(10));
    EXPECT_TRUE(r.ok()) << "Istio's dashboard query has no data on Weft: " << promql << "\n"
                        << r.status();
  }
}

}  // namespace
}  // namespace weft::e2e
