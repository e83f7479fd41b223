// The seed's traffic-management scenarios (issue 15) on a real `weftctl up` mesh, each asserted
// through a real Prometheus server and through the client's own results. One mesh for the suite
// (testdata/traffic-scenarios.yaml: weft-teashop --role echo-request back ends on node1, some
// made flaky, broken or slow with --fail-percent / --delay; the client on node0), Prometheus in
// node0's namespace scraping both ztunnels every 500 ms. Each scenario applies its HTTPRoute or
// TrafficPolicy with `weftctl apply --wait` (every node ACKed it), drives bounded load from the
// meshed client (`weft-teashop --role load --path / --json` under `weftctl exec`: the client's
// own count of requests and statuses), then reads istio_requests_total and Weft's traffic
// metrics from Prometheus once it has scraped every ztunnel after the load and the values stopped
// changing (Settled). Counts are differences of the raw counters around the load, so they are
// exact: the source reporter (the client's ztunnel on node0) counts what the client got, the
// destination reporter (node1's ztunnel) every attempt that reached a back end. The objects are
// deleted after their scenario.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "common/file.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_fixture.h"
#include "tests/e2e/suite_mesh.h"

namespace weft::e2e {
namespace {

constexpr char kNs[] = "scen";
constexpr char kClient[] = "scen/client";

// The load driver's own account of one run (weft-teashop --role load --path / --json).
struct LoadRun {
  nlohmann::json j;
  std::string err;
  double seconds = 0;
  uint64_t requests = 0, successes = 0;
  uint64_t Status(int code) const {
    const nlohmann::json& st = j["types"]["get"]["statuses"];
    return st.value(std::to_string(code), uint64_t{0});
  }
  double MeanMs() const { return j["types"]["get"].value("mean_ms", 0.0); }
  double SuccessRate() const { return requests ? double(successes) / requests : 0; }
};

// The tolerance for a share measured over n draws around p: five binomial standard deviations,
// and never under `floor`.
double Tolerance(double p, double n, double floor) {
  return std::max(floor, 5 * std::sqrt(p * (1 - p) / std::max(n, 1.0)));
}

double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class TrafficScenarios : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    auto t0 = std::chrono::steady_clock::now();
    mesh_.Up("scen", std::string(WEFT_E2E_TESTDATA) + "/traffic-scenarios.yaml");
    if (!mesh_.ok()) return;
    const up::MeshState* s = &mesh_.state;
    if (s->nodes.size() != 2) {
      mesh_.error = "the mesh has " + std::to_string(s->nodes.size()) + " nodes, not 2";
      return;
    }
    for (const up::PodState& p : s->pods) workload_[p.ns + "/" + p.name] = p.workload;
    PrometheusServer::Options o;
    o.netns = s->nodes[0].netns;
    o.listen = s->nodes[0].ip + ":19090";
    o.work_dir = mesh_.tmp->path() + "/prometheus";
    std::filesystem::create_directories(o.work_dir);
    o.scrape_interval = milliseconds(500);
    ScrapeJob zt{"ztunnel", {}, {}};
    for (const up::NodeState& n : s->nodes) zt.targets.push_back(n.metrics);
    o.jobs = {zt};
    auto prom = PrometheusServer::Start(o);
    if (!prom.ok()) {
      mesh_.error = "prometheus: " + prom.status().ToString();
      return;
    }
    prom_ = prom->release();
    if (absl::Status st = prom_->WaitTargetsUp(seconds(20)); !st.ok()) {
      mesh_.error = "prometheus targets: " + st.ToString() + "\n" + prom_->Log();
      return;
    }
    std::printf("[ mesh %s up with Prometheus in %.1f s ]\n", mesh_.name.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  static void TearDownTestSuite() {
    delete prom_;
    prom_ = nullptr;
    mesh_.Down();
  }
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, iptables");
    ASSERT_TRUE(mesh_.ok()) << mesh_.error;
  }
  void TearDown() override {
    for (const auto& [object, f] : applied_) {
      auto r = Weftctl({"delete", "-f", f, "--wait"});
      EXPECT_TRUE(r.ok()) << r.status();
    }
  }

  static absl::StatusOr<std::string> Weftctl(std::vector<std::string> args,
                                             milliseconds timeout = seconds(120)) {
    return mesh_.Weftctl(std::move(args), timeout);
  }

  // Applies `yaml` as a user does: weftctl apply --wait returns once every node ACKed it. The
  // same object applied again replaces it; every object applied is deleted after the test.
  void Apply(const std::string& yaml) {
    std::string file = absl::StrCat(mesh_.tmp->path(), "/object-", counter_++, ".yaml");
    ASSERT_TRUE(WriteFileAtomic(file, yaml).ok());
    auto r = Weftctl({"apply", "-f", file, "--wait"});
    ASSERT_TRUE(r.ok()) << r.status();
    applied_[yaml.substr(0, yaml.find("\nspec:"))] = file;  // apiVersion, kind, metadata
  }
  static std::string Policy(const std::string& name, const std::string& spec) {
    return absl::StrCat(
        "apiVersion: networking.weft.dev/v1\nkind: TrafficPolicy\nmetadata: {name: ", name,
        ", namespace: ", kNs, "}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: ", name,
        "}]\n", spec);
  }
  static std::string Route(const std::string& name, const std::string& service,
                           const std::string& rules) {
    return absl::StrCat(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ", name,
        ", namespace: ", kNs,
        "}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: ", service,
        ", port: 80}]\n  rules:\n", rules);
  }

  // Bounded load from the meshed client: GET / of http://SERVICE.scen for `secs` seconds with
  // `concurrency` users (keep-alive). The driver exits 1 when no request succeeded, which some
  // scenarios expect, so only other exit codes are errors (sh keeps its stdout, the JSON).
  LoadRun Load(const std::string& service, const std::string& duration, int concurrency) {
    LoadRun run;
    auto r = Weftctl(
        {"exec", kClient, "--", "sh", "-c", "\"$0\" \"$@\" || [ $? -eq 1 ]", WEFT_TEASHOP_PATH,
         "--role", "load", "--target", absl::StrCat("http://", service, ".", kNs), "--path", "/",
         "--duration", duration, "--concurrency", std::to_string(concurrency), "--json"},
        seconds(90));
    if (!r.ok()) {
      run.err = r.status().ToString();
      ADD_FAILURE() << "load on " << service << ": " << run.err;
      return run;
    }
    run.j = nlohmann::json::parse(*r, nullptr, false);
    if (run.j.is_discarded() || !run.j.is_object() || !run.j["types"].contains("get")) {
      ADD_FAILURE() << "load on " << service << ": no report in: " << *r;
      run.j = nlohmann::json::object();
      return run;
    }
    run.seconds = run.j.value("seconds", 0.0);
    run.requests = run.j.value("requests", uint64_t{0});
    run.successes = run.j.value("successes", uint64_t{0});
    EXPECT_GT(run.requests, 0u) << *r;
    return run;
  }

  // The values of `queries` (each a sum) once Prometheus has settled them: every ztunnel scraped
  // after this call, and no value changed over the next scrape of every ztunnel. So a count read
  // after a load holds every request of it (the client had all its answers when it exited).
  // ztunnel refreshes its weft_traffic_* series from the traffic state once a second, not per
  // event, so for those the scrapes compared are at least that far apart.
  std::vector<double> Settled(const std::vector<std::string>& queries) {
    const bool refreshed = absl::StrContains(absl::StrJoin(queries, " "), "weft_traffic_");
    const double gap = refreshed ? 1.1 : 0;
    double since = NowUnix() + gap;
    std::vector<double> last;
    for (int round = 0; round < 40; ++round) {
      auto scraped = prom_->WaitForValue(
          "min(timestamp(up{job=\"ztunnel\"}))", [&](double t) { return t > since; }, seconds(10));
      if (!scraped.ok()) {
        ADD_FAILURE() << scraped.status() << "\n" << prom_->Log();
        return std::vector<double>(queries.size(), -1);
      }
      since = *scraped + gap;
      std::vector<double> now;
      for (const std::string& q : queries) {
        auto v = prom_->Sum(q);
        EXPECT_TRUE(v.ok()) << q << ": " << v.status();
        now.push_back(v.ok() ? *v : -1);
      }
      if (now == last) return now;
      last = std::move(now);
    }
    ADD_FAILURE() << "Prometheus's values never settled: " << absl::StrJoin(queries, ", ");
    return last;
  }
  // What each query counted during `load`: its settled values after minus before.
  template <typename F>
  std::vector<double> Delta(const std::vector<std::string>& queries, F&& load) {
    std::vector<double> before = Settled(queries);
    load();
    std::vector<double> after = Settled(queries);
    for (size_t i = 0; i < after.size(); ++i) after[i] -= before[i];
    return after;
  }

  // istio_requests_total as the client's ztunnel reported it, for requests to `service`.
  static std::string Source(const std::string& service, const std::string& more = "") {
    return absl::StrCat("sum(istio_requests_total{reporter=\"source\",source_workload=\"",
                        Workload(kClient), "\",destination_service_name=\"", service,
                        "\",destination_service_namespace=\"", kNs, "\"", more, "})");
  }
  // The same for the requests the client's ztunnel sent to `pod` (a route's backend).
  static std::string SourceTo(const std::string& pod) {
    return absl::StrCat("sum(istio_requests_total{reporter=\"source\",source_workload=\"",
                        Workload(kClient), "\",destination_workload=\"",
                        Workload(absl::StrCat(kNs, "/", pod)), "\"})");
  }
  // istio_requests_total as the back ends' ztunnel (node1) reported it: every attempt that
  // reached one of `pods`.
  static std::string Reached(const std::vector<std::string>& pods) {
    std::vector<std::string> wl;
    for (const std::string& p : pods) wl.push_back(Workload(absl::StrCat(kNs, "/", p)));
    return absl::StrCat(
        "sum(istio_requests_total{reporter=\"destination\",destination_workload=~\"",
        absl::StrJoin(wl, "|"), "\",destination_workload_namespace=\"", kNs, "\"})");
  }
  static std::string Workload(const std::string& pod) {
    auto it = workload_.find(pod);
    return it == workload_.end() ? pod : it->second;
  }

  static inline SuiteMesh mesh_;
  static inline PrometheusServer* prom_ = nullptr;
  static inline std::map<std::string, std::string> workload_;
  static inline int counter_ = 0;
  std::map<std::string, std::string> applied_;  // object (its head) -> its last file
};

// A canary: HTTPRoute on Service web sending 90 % to web-v1 and 10 % to web-v2 (without it, web
// spreads over both pods evenly).
TEST_F(TrafficScenarios, CanarySplits90To10) {
  ASSERT_NO_FATAL_FAILURE(Apply(Route("web-canary", "web", R"(  - backendRefs:
    - {name: web-v1, port: 80, weight: 90}
    - {name: web-v2, port: 80, weight: 10}
)")));
  LoadRun run;
  const std::vector<double> d =
      Delta({SourceTo("web-v1"), SourceTo("web-v2"), Reached({"web-v1"}), Reached({"web-v2"})},
            [&] { run = Load("web", "3s", 4); });
  const double n = d[0] + d[1];
  EXPECT_EQ(run.successes, run.requests);
  EXPECT_EQ(n, run.requests) << "the client's ztunnel counted each of the client's requests";
  EXPECT_EQ(d[2], d[0]) << "web-v1 got what the source sent it";
  EXPECT_EQ(d[3], d[1]) << "web-v2 got what the source sent it";
  const double share = n > 0 ? d[1] / n : 0;
  EXPECT_NEAR(share, 0.10, Tolerance(0.10, n, 0.02)) << d[0] << " to v1, " << d[1] << " to v2";
  std::printf("[ canary: %.0f requests, web-v2 %.1f %% (want 10 %%) ]\n", n, 100 * share);
}

// A back end failing 30 % of requests: the client sees ~70 % success; with a TrafficPolicy
// retrying 5xx (3 retries after the first try: 0.3^4, 0.8 % still fail) it sees >= 97 %. The
// budget (1.0 + 10/s) leaves room for the ~45 % extra attempts this needs, so none is refused
// here (the next scenario is the budget's); what still fails is 503 URX (retries used up).
TEST_F(TrafficScenarios, RetriesHideABackendFailing30Percent) {
  const std::string ok = Source("flaky", ",response_code=\"200\"");
  LoadRun before, after;
  const std::vector<double> d0 =
      Delta({Source("flaky"), ok}, [&] { before = Load("flaky", "2s", 4); });
  EXPECT_EQ(d0[0], before.requests);
  EXPECT_EQ(d0[1], before.successes) << "the source's 200s are the client's successes";
  EXPECT_GE(before.SuccessRate(), 0.55) << before.j.dump();
  EXPECT_LE(before.SuccessRate(), 0.85) << "without retries the failures reach the client";

  ASSERT_NO_FATAL_FAILURE(Apply(Policy("flaky", R"(  retries:
    attempts: 3
    retryOn: 5xx
    budget: {retryRatio: 1.0, minRetriesPerSecond: 10, ttl: 10s}
)")));
  const std::vector<double> d1 =
      Delta({Source("flaky"), ok, Reached({"flaky-0", "flaky-1"}),
             "sum(weft_http_retries_total{result=\"retried\"})",
             "sum(weft_http_retries_total{result=\"budget_exhausted\"})",
             Source("flaky", ",response_code=\"503\",response_flags=\"URX\"")},
            [&] { after = Load("flaky", "2s", 4); });
  EXPECT_EQ(d1[0], after.requests);
  EXPECT_EQ(d1[1], after.successes);
  EXPECT_GE(after.SuccessRate(), 0.97) << after.j.dump();
  EXPECT_GT(d1[3], 0) << "retries were counted";
  EXPECT_EQ(d1[2], after.requests + d1[3]) << "the back ends got each request and each retry";
  EXPECT_EQ(d1[4], 0) << "the budget refused none";
  EXPECT_EQ(d1[5], after.requests - after.successes) << "what still failed is 503 URX";
  std::printf(
      "[ retries: success %.1f %% of %llu without, %.1f %% of %llu with (%.0f retries, "
      "%.0f URX) ]\n",
      100 * before.SuccessRate(), static_cast<unsigned long long>(before.requests),
      100 * after.SuccessRate(), static_cast<unsigned long long>(after.requests), d1[3], d1[5]);
}

// The retry budget stops amplification: a back end failing every request, 5 attempts allowed,
// budget 20 % + 1/s over 10 s: the back end gets at most requests x 1.2 + 1 x (seconds + ttl)
// attempts, not 5 x requests.
TEST_F(TrafficScenarios, RetryBudgetStopsAmplificationWhenTheBackendFailsEverything) {
  ASSERT_NO_FATAL_FAILURE(Apply(Policy("broken", R"(  retries:
    attempts: 5
    retryOn: 5xx
    budget: {retryRatio: 0.2, minRetriesPerSecond: 1, ttl: 10s}
)")));
  LoadRun run;
  const std::vector<double> d = Delta(
      {Source("broken"), Reached({"broken"}), "sum(weft_http_retries_total{result=\"retried\"})",
       "sum(weft_traffic_retry_budget_exhausted_total{policy=\"scen/broken\"})"},
      [&] { run = Load("broken", "2s", 4); });
  const double requests = run.requests, attempts = d[1];
  EXPECT_EQ(run.successes, 0u);
  EXPECT_EQ(run.Status(503), run.requests) << run.j.dump();
  EXPECT_EQ(d[0], requests) << "the client's ztunnel counted each of the client's requests";
  EXPECT_GT(attempts, requests) << "some retries were allowed";
  EXPECT_LE(attempts, requests * 1.2 + 1 * (run.seconds + 10)) << "the budget capped retries";
  EXPECT_EQ(attempts, requests + d[2]) << "every retry reached the back end";
  EXPECT_GT(d[3], 0) << "the budget's refusals were counted";
  std::printf("[ budget: %.0f requests -> %.0f attempts at the back end (x%.2f; no budget: x5) ]\n",
              requests, attempts, requests > 0 ? attempts / requests : 0);
}

// A request timeout: a route with timeouts.request 30ms on a back end answering after 100 ms:
// every request is answered 504 by the client's ztunnel, with response_flags UT.
TEST_F(TrafficScenarios, ATimeoutIsAnswered504WithUT) {
  ASSERT_NO_FATAL_FAILURE(
      Apply(Route("slow-timeout", "slow", R"(  - backendRefs: [{name: slow, port: 80}]
    timeouts: {request: 30ms}
)")));
  LoadRun run;
  const std::vector<double> d =
      Delta({Source("slow"), Source("slow", ",response_code=\"504\",response_flags=\"UT\"")},
            [&] { run = Load("slow", "2s", 4); });
  EXPECT_EQ(run.Status(504), run.requests) << run.j.dump();
  EXPECT_EQ(d[0], run.requests);
  EXPECT_EQ(d[1], run.requests) << "each one 504 UT at the source";
  std::printf("[ timeout: %llu requests, %.0f answered 504 UT ]\n",
              static_cast<unsigned long long>(run.requests), d[1]);
}

// Fault injection: a 200 ms delay on 50 % of requests (flagged DI, each of them at least the
// delay long), then an abort with 418 on 25 % (flagged FI, none reaching a back end).
TEST_F(TrafficScenarios, FaultInjectionDelaysAndAbortsTheConfiguredPercentage) {
  ASSERT_NO_FATAL_FAILURE(Apply(Policy("web", R"(  faultInjection:
    delay: {fixedDelay: 200ms, percentage: 50}
)")));
  const std::string di = ",response_flags=\"DI\"";
  // The source's duration histogram of the DI requests to web, bucket `le`.
  auto Duration = [](const std::string& le) {
    return absl::StrCat(
        "sum(istio_request_duration_milliseconds_bucket{reporter=\"source\",destination_service="
        "\"web.scen.svc.cluster.local\",response_flags=\"DI\",",
        le, "})");
  };
  LoadRun delayed;
  const std::vector<double> d = Delta({Source("web"), Source("web", di),
                                       Duration("le=~\"100(\\\\.0+)?\""), Duration("le=\"+Inf\"")},
                                      [&] { delayed = Load("web", "3s", 12); });
  EXPECT_EQ(delayed.successes, delayed.requests) << delayed.j.dump();
  EXPECT_EQ(d[0], delayed.requests);
  const double di_share = d[0] > 0 ? d[1] / d[0] : 0;
  EXPECT_NEAR(di_share, 0.5, Tolerance(0.5, d[0], 0.05)) << d[1] << " of " << d[0] << " DI";
  EXPECT_EQ(d[3], d[1]) << "the DI requests' durations";
  EXPECT_EQ(d[2], 0) << "no delayed request took under 100 ms";
  EXPECT_GE(delayed.MeanMs(), 200 * di_share) << "the client waited the delays";

  ASSERT_NO_FATAL_FAILURE(Apply(Policy("web", R"(  faultInjection:
    abort: {httpStatus: 418, percentage: 25}
)")));
  LoadRun aborted;
  const std::vector<double> a =
      Delta({Source("web"), Source("web", ",response_code=\"418\",response_flags=\"FI\""),
             Reached({"web-v1", "web-v2"})},
            [&] { aborted = Load("web", "2s", 4); });
  const double n = aborted.requests, c418 = aborted.Status(418);
  EXPECT_EQ(c418 + aborted.successes, n) << aborted.j.dump();
  EXPECT_NEAR(c418 / std::max(n, 1.0), 0.25, Tolerance(0.25, n, 0.03));
  EXPECT_EQ(a[0], n);
  EXPECT_EQ(a[1], c418) << "each abort counted 418 FI at the source";
  EXPECT_EQ(a[2], n - c418) << "aborted requests never reached a back end";
  std::printf(
      "[ faults: delay on %.1f %% of %.0f (want 50 %%), mean %.0f ms; abort on %.1f %% "
      "of %.0f (want 25 %%) ]\n",
      100 * di_share, d[0], delayed.MeanMs(), 100 * c418 / std::max(n, 1.0), n);
}

// A circuit breaker under overload: 16 users on a back end answering in 100 ms, the pool limited
// to 2 connections (2 requests in flight): the overflow is answered 503 UO at once and the back
// end never gets more than 2 at a time, so at most 2 / 100 ms.
TEST_F(TrafficScenarios, ACircuitBreakerTripsUnderOverload) {
  ASSERT_NO_FATAL_FAILURE(
      Apply(Policy("slow", R"(  connectionPool: {maxConnections: 2, http2MaxRequests: 2}
)")));
  LoadRun run;
  const std::vector<double> d =
      Delta({Source("slow", ",response_code=\"503\",response_flags=\"UO\""), Reached({"slow"}),
             "sum(weft_traffic_overflows_total{policy=\"scen/slow\"})", Source("slow")},
            [&] { run = Load("slow", "3s", 16); });
  const double uo = d[0], reached = d[1];
  EXPECT_GT(uo, 0) << "the breaker tripped";
  EXPECT_EQ(uo, run.Status(503)) << "the client's 503s are the UO ones";
  EXPECT_EQ(d[2], uo) << "each overflow counted";
  EXPECT_EQ(reached, run.Status(200)) << "only what got through reached the back end";
  EXPECT_EQ(d[3], run.requests);
  // 2 in flight, each at least 100 ms: 2 per 100 ms, plus the 2 in flight at the start.
  const double bound = 2 * (run.seconds / 0.1) + 2;
  EXPECT_LE(reached, bound * 1.1) << "the back end was protected";
  std::printf(
      "[ breaker: %llu requests, %.0f 503 UO, %.0f reached slow in %.1f s (%.1f/s; "
      "bound %.0f/s) ]\n",
      static_cast<unsigned long long>(run.requests), uo, reached, run.seconds,
      reached / std::max(run.seconds, 0.1), bound / std::max(run.seconds, 0.1));
}

// Outlier detection: pool-bad fails every request among two healthy pods. Without a policy it
// gets its share; with consecutive5xxErrors 3 it is ejected after 3 failures (its share drops to
// ~0, the ejection is counted and visible), and after baseEjectionTime (4 s) it gets requests
// again (failing, so it is ejected again).
TEST_F(TrafficScenarios, OutlierDetectionEjectsAFailingEndpointAndBringsItBack) {
  const std::string bad = Reached({"pool-bad"}), all = Reached({"pool-0", "pool-1", "pool-bad"});
  LoadRun base;
  const std::vector<double> b = Delta({bad, all}, [&] { base = Load("pool", "1s", 2); });
  const double base_share = b[1] > 0 ? b[0] / b[1] : 0;
  EXPECT_GE(base_share, 0.1) << "without outlier detection pool-bad gets requests";

  ASSERT_NO_FATAL_FAILURE(Apply(Policy("pool", R"(  outlierDetection:
    consecutive5xxErrors: 3
    interval: 500ms
    baseEjectionTime: 4s
    maxEjectionPercent: 50
)")));
  const std::string ejections = "sum(weft_traffic_ejections_total{policy=\"scen/pool\"})";
  const std::string ejected =
      "sum(weft_traffic_ejected{policy=\"scen/pool\",endpoint=~\".*pool-bad.*\"})";
  const auto start = std::chrono::steady_clock::now();
  auto since_start = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const double base_ejection = 4;  // s
  // A 3 s run: pool-bad is ejected after its third failure, and the ejection (4 s from some
  // moment after the run began) outlasts the run, so nothing more reaches it.
  LoadRun run;
  const std::vector<double> d = Delta({bad, all, ejections}, [&] { run = Load("pool", "3s", 2); });
  const double share = d[1] > 0 ? d[0] / d[1] : 1;
  EXPECT_LT(run.seconds, base_ejection);
  EXPECT_GE(d[0], 3) << "it failed 3 times before the ejection";
  EXPECT_LE(d[0], 3 + 2) << "then got nothing for the rest of the run (2 may have been in flight)";
  EXPECT_EQ(run.Status(503), d[0]) << "the client's failures are pool-bad's";
  EXPECT_EQ(d[2], 1) << "one ejection counted";
  auto visible = prom_->WaitForValue(
      ejected, [](double v) { return v == 1; }, seconds(10));
  EXPECT_TRUE(visible.ok()) << visible.status();

  // Back after the ejection time: short runs until one of them meets pool-bad again. Those that
  // ended within the ejection time must not have.
  bool back = false;
  double back_after = 0;
  int probes = 0;
  while (!back && since_start() < 20) {
    LoadRun probe = Load("pool", "300ms", 1);
    ++probes;
    back_after = since_start();
    back = probe.Status(503) > 0;
    if (back_after < base_ejection) {
      EXPECT_EQ(probe.Status(503), 0u) << "came back too early";
    }
  }
  EXPECT_TRUE(back) << "pool-bad never came back";
  auto again = prom_->WaitForValue(
      ejections, [](double v) { return v >= 2; }, seconds(10));
  EXPECT_TRUE(again.ok()) << "failing again, it is ejected again: " << again.status();
  std::printf(
      "[ outlier: pool-bad %.1f %% of %.0f without, %.1f %% of %.0f with (ejected after "
      "%.0f failures, none for the rest of the %.1f s run); back within %.1f s (%d probes) ]\n",
      100 * base_share, b[1], 100 * share, d[1], d[0], run.seconds, back_after, probes);
}

}  // namespace
}  // namespace weft::e2e
