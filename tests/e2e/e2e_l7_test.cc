// L7 end to end on a `weftctl up` mesh (testdata/mesh-l7.yaml, namespace l7 enrolled, Services
// declared HTTP), asserted through the real Prometheus server, in both capture modes. Real
// clients run inside the client pod with `weftctl exec`: curl (HTTP/1.1), h2load and nghttp (h2c
// prior knowledge, Debian nghttp2-client), weft-e2e-app ws (a Boost.Beast WebSocket client) and
// weft-e2e-app raw (non-HTTP bytes).
//   1. L7 AuthorizationPolicy: ALLOW by method + path, DENY by request.headers[x-debug]:
//      403 "RBAC: access denied" for the denied, 200 for the allowed, denials counted
//   2. the destination pod IP called directly is still enforced
//   3. non-HTTP bytes to the L7-policed port refused and counted (weft_bad_input_total)
//   4. h2c through a Service declared h2c (h2load, nghttp), a DENY answering one stream 403
//   5. a WebSocket upgrade (101) through the policed port, then messages both ways
//   6. istio_requests_total with reporter source and destination, response codes 200 and 403
//   7. `weftctl stat` (request view) and `weftctl tap` show the requests
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/e2e/e2e_fixture.h"

namespace weft::e2e {
namespace {

constexpr char kClient[] = "l7/client", kWeb[] = "l7/web", kH2[] = "l7/h2";

class L7E2eTest : public E2eTest {
 protected:
  std::string MeshFile() const override { return "mesh-l7.yaml"; }
  size_t ExpectedPods() const override { return 3; }

  struct Reply {
    int code = 0;  // 0: no HTTP response (curl failed)
    std::string body, err;
  };
  // curl from the client pod: `args` are curl's (method, headers, URL); the status and body back.
  Reply Curl(std::vector<std::string> args) {
    std::vector<std::string> cmd = {"exec", kClient, "--", "curl",          "-sS",
                                    "-m",   "5",     "-w", "\n%{http_code}"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    auto r = Weftctl(cmd, seconds(30));
    Reply out;
    if (!r.ok()) {
      out.err = std::string(r.status().message());
      return out;
    }
    size_t nl = r->rfind('\n');
    out.body = r->substr(0, nl == std::string::npos ? 0 : nl);
    if (!absl::SimpleAtoi(r->substr(nl == std::string::npos ? 0 : nl + 1), &out.code)) out.code = 0;
    return out;
  }
  ::testing::AssertionResult Status(const std::vector<std::string>& args, int want) {
    Reply r = Curl(args);
    std::string what = absl::StrJoin(args, " ");
    if (r.code != want) {
      return ::testing::AssertionFailure() << "curl " << what << ": status " << r.code << ", want "
                                           << want << "; body \"" << r.body << "\"" << r.err;
    }
    if (want == 403 && r.body != "RBAC: access denied") {
      return ::testing::AssertionFailure() << "curl " << what << ": 403 body \"" << r.body << "\"";
    }
    return ::testing::AssertionSuccess();
  }
  std::string RequestsQuery(const std::string& reporter, const std::string& workload,
                            const std::string& code) {
    return absl::StrCat("sum(istio_requests_total{reporter=\"", reporter,
                        "\",destination_workload=\"", workload, "\",response_code=\"", code,
                        "\"})");
  }
};

INSTANTIATE_TEST_SUITE_P(Capture, L7E2eTest, ::testing::Values("iptables", "ebpf"),
                         [](const auto& info) { return std::string(info.param); });

TEST_P(L7E2eTest, L7EndToEnd) {
  const std::string web = "http://web.l7", web_ip = "http://" + Pod(kWeb).ip + ":8080";
  const std::string web_workload = Pod(kWeb).workload;
  {
    SCOPED_TRACE("baseline: HTTP through the Service declared HTTP, no L7 policy yet");
    Reply r = Curl({web + "/private/x"});
    ASSERT_EQ(r.code, 200) << r.body << r.err;
    EXPECT_EQ(r.body, "GET /private/x\n");
    // The client's ztunnel terminated HTTP to the VIP: a request record, reporter source.
    ExpectPromValue(RequestsQuery("source", web_workload, "200"), [](double v) { return v >= 1; });
  }
  const double denied_before = Denials();
  ASSERT_TRUE(Apply(Data("l7-policy.yaml")).ok());
  {
    // 1. ALLOW by method + path, DENY by header: 403 from the destination's ztunnel.
    SCOPED_TRACE("1: L7 ALLOW/DENY by method, path and header through the Service");
    EXPECT_TRUE(Status({web + "/public/tea"}, 200));
    EXPECT_TRUE(Status({"-X", "POST", "-d", "x", web + "/orders"}, 200));
    EXPECT_TRUE(Status({"-X", "DELETE", web + "/public/tea"}, 403)) << "method not allowed";
    EXPECT_TRUE(Status({"-X", "POST", "-d", "x", web + "/public/tea"}, 403)) << "method";
    EXPECT_TRUE(Status({web + "/private/x"}, 403)) << "path not allowed";
    EXPECT_TRUE(Status({"-H", "x-debug: 1", web + "/public/tea"}, 403)) << "DENY header";
  }
  {
    // 2. The pod IP called directly (no VIP, so L4 at the source) is enforced all the same.
    SCOPED_TRACE("2: the destination pod IP directly is still enforced");
    EXPECT_TRUE(Status({web_ip + "/private/x"}, 403));
    EXPECT_TRUE(Status({"-H", "x-debug: yes", web_ip + "/public/tea"}, 403));
    EXPECT_TRUE(Status({web_ip + "/public/direct"}, 200));
    // 4 (Service) + 2 (pod IP) denials at least.
    ExpectPromValue("sum(weft_policy_denials_total)",
                    [&](double v) { return v >= denied_before + 6; });
  }
  {
    // 3. Non-HTTP bytes to the policed port: no 200, the connection closes, counted.
    SCOPED_TRACE("3: non-HTTP bytes to the L7-policed port are refused");
    const double bad_before = Sum("sum(weft_bad_input_total{port=\"http\"})");
    for (const std::string& host : {std::string("web.l7"), Pod(kWeb).ip}) {
      const std::string port = host == "web.l7" ? "80" : "8080";
      auto r =
          Weftctl({"exec", kClient, "--", WEFT_E2E_APP_PATH, "raw", host, port, "garbage\r\n\r\n"},
                  seconds(30));
      ASSERT_TRUE(r.ok()) << host << ": the connection was not closed: " << r.status();
      EXPECT_EQ(r->find("200"), std::string::npos) << host << ": " << *r;
    }
    ExpectPromValue("sum(weft_bad_input_total{port=\"http\"})",
                    [&](double v) { return v >= bad_before + 2; });
  }
  {
    // 5. A WebSocket upgrade on an allowed path: 101, then a message echoed through the relay;
    // on a denied path the upgrade itself is refused.
    SCOPED_TRACE("5: WebSocket upgrade through the L7-policed port");
    const std::string token = Token();
    auto r = Weftctl(
        {"exec", kClient, "--", WEFT_E2E_APP_PATH, "ws", "web.l7", "80", "/public/ws", token},
        seconds(30));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, token + "\n");
    auto denied = Weftctl(
        {"exec", kClient, "--", WEFT_E2E_APP_PATH, "ws", "web.l7", "80", "/private/ws", token},
        seconds(30));
    EXPECT_FALSE(denied.ok()) << "a WebSocket upgrade on a denied path went through";
  }
  {
    // 4. h2c prior knowledge (h2load's and nghttp's default for http://) through a Service
    // declared h2c: 50 requests, 4 in flight on one connection, all answered 200 and recorded
    // by both ztunnels; then one nghttp connection with two streams, the one on the path the
    // h2 DENY names answered 403 and the other 200.
    SCOPED_TRACE("4: HTTP/2 (h2c) clients through the mesh");
    auto r = Weftctl(
        {"exec", kClient, "--", "h2load", "-n", "50", "-c", "1", "-m", "4", "http://h2.l7/healthz"},
        seconds(60));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NE(r->find("Application protocol: h2c"), std::string::npos) << *r;
    EXPECT_NE(r->find("50 succeeded"), std::string::npos) << *r;
    EXPECT_NE(r->find("status codes: 50 2xx"), std::string::npos) << *r;
    for (const char* reporter : {"source", "destination"}) {
      SCOPED_TRACE(reporter);
      ExpectPromValue(RequestsQuery(reporter, Pod(kH2).workload, "200"),
                      [](double v) { return v >= 50; });
    }
    auto nghttp = Weftctl(
        {"exec", kClient, "--", "nghttp", "-v", "-n", "http://h2.l7/tea", "http://h2.l7/admin"},
        seconds(30));
    ASSERT_TRUE(nghttp.ok()) << nghttp.status();
    EXPECT_NE(nghttp->find(":status: 200"), std::string::npos) << *nghttp;
    EXPECT_NE(nghttp->find(":status: 403"), std::string::npos) << *nghttp;
    ExpectPromValue(RequestsQuery("destination", Pod(kH2).workload, "403"),
                    [](double v) { return v >= 1; });
  }
  {
    // 6. Request metrics from both reporters with both codes.
    SCOPED_TRACE("6: istio_requests_total, reporter source and destination, 200 and 403");
    for (const char* reporter : {"source", "destination"}) {
      for (const char* code : {"200", "403"}) {
        SCOPED_TRACE(absl::StrCat(reporter, " ", code));
        ExpectPromValue(RequestsQuery(reporter, web_workload, code),
                        [](double v) { return v >= 1; });
      }
    }
    auto series = prom_->Query(
        absl::StrCat("istio_requests_total{reporter=\"destination\",destination_workload=\"",
                     web_workload, "\",response_code=\"403\"}"));
    ASSERT_TRUE(series.ok()) << series.status();
    ASSERT_FALSE(series->empty());
    const auto& l = (*series)[0].labels;
    EXPECT_EQ(l.at("request_protocol"), "http");
    EXPECT_EQ(l.at("source_principal"), "spiffe://cluster.local/ns/l7/sa/client");
    EXPECT_EQ(l.at("connection_security_policy"), "mutual_tls");
  }
  {
    // 7. weftctl stat's request view, and weftctl tap seeing a request made while it runs.
    SCOPED_TRACE("7: weftctl stat and weftctl tap");
    auto stat = Weftctl({"stat", "l7", "--window", "0"});
    ASSERT_TRUE(stat.ok()) << stat.status();
    EXPECT_NE(stat->find("REQS"), std::string::npos) << *stat;
    EXPECT_NE(stat->find("P50"), std::string::npos) << *stat;
    bool web_row = false;
    for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
      std::vector<std::string> col = absl::StrSplit(line, ' ', absl::SkipWhitespace());
      if (col.size() < 9 || col[0] != "l7" || col[1] != web_workload) continue;
      web_row = true;
      EXPECT_EQ(col[3].back(), '%') << "SUCCESS: " << line;
      double reqs = 0;
      EXPECT_TRUE(absl::SimpleAtod(col[4], &reqs) && reqs >= 10) << "REQS: " << line;
      EXPECT_NE(col[5], "-") << "P50: " << line;
    }
    EXPECT_TRUE(web_row) << "no request row for l7/" << web_workload << ":\n" << *stat;

    const std::string log = tmp_.path() + "/tap.log";
    auto tap = testbed::Spawn(
        "", up::WeftctlArgv(WEFTCTL_PATH, name_, root_, {"tap", "l7", "--duration", "30s"}), log);
    ASSERT_TRUE(tap.ok()) << tap.status();
    const std::string path = "/public/tap-" + Token();
    EXPECT_TRUE(Eventually(
        [&] {
          Curl({web + path});
          return ReadFile(log).value_or("").find(path) != std::string::npos;
        },
        seconds(15)))
        << "weftctl tap never showed GET " << path << ":\n"
        << ReadFile(log).value_or("");
    std::string tapped = ReadFile(log).value_or("");
    size_t at = tapped.find(path);
    if (at != std::string::npos) {
      size_t b = tapped.rfind('\n', at), e = tapped.find('\n', at);
      std::string line = tapped.substr(b == std::string::npos ? 0 : b + 1, e - b - 1);
      EXPECT_NE(line.find("GET"), std::string::npos) << line;
      EXPECT_NE(line.find("200"), std::string::npos) << line;
    }
  }
}

}  // namespace
}  // namespace weft::e2e
