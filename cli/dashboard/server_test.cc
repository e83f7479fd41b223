// The dashboard's server over a fake mesh source (recorded documents) and over real failing
// ones: every API answers JSON, and a failing part (weftd, the ztunnels, Prometheus
// unreachable or too slow) comes back as {"error": ...} with HTTP 503, never a hang.
#include "cli/dashboard/server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>

#include "common/file.h"
#include "common/testing/temp_dir.h"

namespace weft::cli::dashboard {
namespace {

using json = nlohmann::json;

std::string Data(const std::string& name) {
  return ReadFile(std::string(WEFT_DASHBOARD_TESTDATA) + "/" + name).value_or("");
}

// Recorded documents and readings; `weftd_error` / `metrics_error` make a part fail.
class FakeSource : public MeshSource {
 public:
  absl::Status weftd_error, metrics_error;
  int readings = 0;
  std::vector<json> tap;

  std::string Describe() const override { return "fake mesh"; }
  absl::StatusOr<json> Weftd(const std::string& path) override {
    if (!weftd_error.ok()) return weftd_error;
    return json::parse(Data(path == "/status" ? "status.json" : "config_dump.json"));
  }
  absl::StatusOr<std::vector<MetricSample>> Metrics(absl::Time) override {
    if (!metrics_error.ok()) return metrics_error;
    const char* when = readings++ == 0 ? "before" : "after";
    std::vector<MetricSample> all;
    for (const char* node : {"node0", "node1"}) {
      for (auto& s : ParseSamples(Data(std::string(node) + "-" + when + ".metrics"), "")) {
        all.push_back(std::move(s));
      }
    }
    return all;
  }
  bool past_readable() const override { return false; }
  std::string metrics_source() const override { return "metrics"; }
  std::map<std::string, NodeCapture> Capture() override { return {{"node0", {"ebpf", ""}}}; }
  absl::StatusOr<std::vector<json>> Tap() override { return std::move(tap); }
};

json Body(const HttpReply& r) {
  return json::parse(r.body);
}

TEST(Dashboard, DocumentsFromTwoReadings) {
  auto src = std::make_unique<FakeSource>();
  DashboardOptions o;
  o.source = std::move(src);
  Dashboard d(std::move(o));
  // Before any reading: an error the page can show, not an empty document.
  EXPECT_EQ(d.Handle("/api/graph", {}).status, 503);
  d.CollectOnce();
  d.CollectOnce();
  HttpReply ov = d.Handle("/api/overview", {});
  EXPECT_EQ(ov.status, 200);
  EXPECT_EQ(Body(ov)["pods"].size(), 7u);
  json g = Body(d.Handle("/api/graph", {}));
  EXPECT_GT(g["window_seconds"].get<double>(), 0);
  EXPECT_FALSE(g["edges"].empty());
  json s = Body(d.Handle("/api/signals", {}));
  EXPECT_FALSE(s["workloads"].empty());
  json series = Body(d.Handle("/api/series", {}));
  EXPECT_EQ(series["series"]["shop/frontend"].size(), 2u) << series.dump();
  json meta = Body(d.Handle("/api/meta", {}));
  EXPECT_EQ(meta["source"], "fake mesh");
  EXPECT_TRUE(meta["errors"].empty());
  EXPECT_EQ(d.Handle("/api/nothing", {}).status, 404);
}

TEST(Dashboard, WeftdAndMetricsErrorsAreJsonThePageShows) {
  auto src = std::make_unique<FakeSource>();
  FakeSource* fake = src.get();
  fake->weftd_error = absl::UnavailableError("weftd's admin endpoint 10.0.0.1:15010 unreachable");
  fake->metrics_error = absl::UnavailableError("node node0: ztunnel metrics: refused");
  DashboardOptions o;
  o.source = std::move(src);
  Dashboard d(std::move(o));
  d.CollectOnce();
  for (const char* api : {"/api/overview", "/api/health"}) {
    HttpReply r = d.Handle(api, {});
    EXPECT_EQ(r.status, 503) << api;
    EXPECT_EQ(Body(r)["source"], "weftd") << api;
    EXPECT_NE(Body(r)["error"].get<std::string>().find("unreachable"), std::string::npos);
  }
  for (const char* api : {"/api/graph", "/api/signals"}) {
    HttpReply r = d.Handle(api, {});
    EXPECT_EQ(r.status, 503) << api;
    EXPECT_EQ(Body(r)["source"], "metrics") << api;
  }
  EXPECT_EQ(Body(d.Handle("/api/meta", {}))["errors"].size(), 2u);
  // The mesh comes back: so do the documents.
  fake->weftd_error = absl::OkStatus();
  fake->metrics_error = absl::OkStatus();
  d.CollectOnce();
  EXPECT_EQ(d.Handle("/api/overview", {}).status, 200);
  EXPECT_EQ(d.Handle("/api/graph", {}).status, 200);
}

TEST(Dashboard, TapIsReadOnlyWhileSomeoneAsks) {
  auto src = std::make_unique<FakeSource>();
  FakeSource* fake = src.get();
  DashboardOptions o;
  o.source = std::move(src);
  Dashboard d(std::move(o));
  fake->tap = {{{"method", "GET"}, {"path", "/a"}}};
  d.CollectOnce();  // nobody asked yet: the tap is not read
  EXPECT_EQ(fake->tap.size(), 1u);
  json first = Body(d.Handle("/api/tap", {}));
  EXPECT_TRUE(first["events"].empty());
  d.CollectOnce();
  EXPECT_TRUE(fake->tap.empty());
  json got = Body(d.Handle("/api/tap", {{"since", "0"}}));
  ASSERT_EQ(got["events"].size(), 1u);
  EXPECT_EQ(got["events"][0]["path"], "/a");
  EXPECT_EQ(got["next"], 1);
  EXPECT_TRUE(Body(d.Handle("/api/tap", {{"since", "1"}}))["events"].empty());
}

TEST(Dashboard, ServesThePageAndTheApiOverHttp) {
  testing::TempDir web;
  ASSERT_TRUE(WriteFileAtomic(web.path() + "/index.html", "<title>weft</title>").ok());
  ASSERT_TRUE(WriteFileAtomic(web.path() + "/app.js", "let x = 1;").ok());
  DashboardOptions o;
  o.source = std::make_unique<FakeSource>();
  o.listen = *SockAddr::Parse("127.0.0.1:0");
  o.web_root = web.path();
  Dashboard d(std::move(o));
  ASSERT_TRUE(d.Start().ok());
  int code = 0;
  auto page = HttpGet(d.addr(), "/", -1, &code);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(code, 200);
  EXPECT_EQ(*page, "<title>weft</title>");
  auto api = HttpGet(d.addr(), "/api/overview", -1, &code);
  ASSERT_TRUE(api.ok());
  EXPECT_EQ(code, 200);
  EXPECT_EQ(json::parse(*api)["pods"].size(), 7u);
  (void)HttpGet(d.addr(), "/../etc/passwd", -1, &code);
  EXPECT_NE(code, 200);
  (void)HttpGet(d.addr(), "/logging", -1, &code);  // read-only: no admin endpoints
  EXPECT_EQ(code, 404);
}

TEST(Dashboard, PrometheusUnreachableOrSlowIsAnErrorWithinTheTimeout) {
  // Slow: a listener that never answers (the kernel accepts the connection into its backlog).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string slow = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  for (const std::string& url : {slow, std::string("http://127.0.0.1:1")}) {
    DashboardOptions o;
    o.source = PrometheusSource(url, url, /*timeout_ms=*/500);
    Dashboard d(std::move(o));
    auto t0 = std::chrono::steady_clock::now();
    d.CollectOnce();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
    HttpReply g = d.Handle("/api/graph", {});
    EXPECT_EQ(g.status, 503) << url;
    EXPECT_EQ(Body(g)["source"], "prometheus");
    EXPECT_NE(Body(g)["error"].get<std::string>().find("Prometheus at " + url), std::string::npos)
        << g.body;
    EXPECT_EQ(Body(d.Handle("/api/overview", {}))["source"], "weftd");
  }
  ::close(fd);
}

TEST(Dashboard, MissingPageSaysHowToBuildIt) {
  auto r = FindWebRoot("/nonexistent/dir");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ninja -C build weft_dashboard_web"), std::string::npos);
}

}  // namespace
}  // namespace weft::cli::dashboard
