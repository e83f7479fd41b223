// The Gateway API mesh conformance cases (kubernetes-sigs/gateway-api conformance/tests/mesh/),
// rebuilt on a real `weftctl up` mesh (testdata/mesh-conformance.yaml: upstream's echo, echo-v1
// and echo-v2 Services, weft-teashop --role echo-request as the echo server). Each case applies
// its route as Gateway API YAML with `weftctl apply --wait` (every node ACKed the change), waits
// for `weftctl status` to show it Accepted, makes upstream's requests with curl from a client pod
// and checks what upstream checks: the status code, the backend pod that answered (the echo's
// JSON), the request as the backend saw it (path, host, headers), response headers, redirects'
// Location. The route is deleted at the end of its case. One mesh for the whole suite.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
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

constexpr char kNs[] = "gateway-conformance-mesh";
constexpr char kClient[] = "gateway-conformance-mesh/client";
constexpr char kConsumer[] = "gateway-conformance-mesh-consumer/client";

// One HTTP exchange as curl saw it, and the echo's account of the request when it answered.
struct Exchange {
  int code = 0;                                // 0: no response
  std::map<std::string, std::string> headers;  // response headers, names lower-case
  nlohmann::json echo;                         // the echo's JSON (null if the body was not)
  std::string raw, err;
  std::string Pod() const { return echo.is_object() ? echo.value("pod", "") : ""; }
  std::string RequestHeader(const std::string& name) const {
    if (!echo.is_object() || !echo["headers"].contains(name)) return "";
    return absl::StrJoin(echo["headers"][name].get<std::vector<std::string>>(), ",");
  }
  bool HasRequestHeader(const std::string& name) const {
    return echo.is_object() && echo["headers"].contains(name);
  }
};

// Splits curl -i output (possibly several responses for URL globs) into exchanges.
std::vector<Exchange> ParseCurl(const std::string& out) {
  std::vector<Exchange> res;
  size_t at = 0;
  while ((at = out.find("HTTP/1.1 ", at)) != std::string::npos) {
    Exchange e;
    size_t head_end = out.find("\r\n\r\n", at);
    if (head_end == std::string::npos) break;
    std::vector<std::string> lines = absl::StrSplit(out.substr(at, head_end - at), "\r\n");
    (void)absl::SimpleAtoi(lines[0].substr(9, 3), &e.code);
    size_t length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      size_t c = lines[i].find(':');
      if (c == std::string::npos) continue;
      std::string name = absl::AsciiStrToLower(lines[i].substr(0, c));
      e.headers[name] = std::string(absl::StripAsciiWhitespace(lines[i].substr(c + 1)));
    }
    if (e.headers.count("content-length"))
      (void)absl::SimpleAtoi(e.headers["content-length"], &length);
    std::string body = out.substr(head_end + 4, length);
    e.raw = body;
    e.echo = nlohmann::json::parse(body, nullptr, false);
    if (e.echo.is_discarded()) e.echo = nullptr;
    at = head_end + 4 + length;
    res.push_back(std::move(e));
  }
  return res;
}

class MeshConformance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    mesh_.Up("conf", std::string(WEFT_E2E_TESTDATA) + "/mesh-conformance.yaml");
    for (const up::PodState& p : mesh_.state.pods) pod_ip_[p.ns + "/" + p.name] = p.ip;
  }
  static void TearDownTestSuite() { mesh_.Down(); }
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, iptables");
    ASSERT_TRUE(mesh_.ok()) << mesh_.error;
  }
  void TearDown() override {
    for (const std::string& f : applied_) {
      auto r = Weftctl({"delete", "-f", f, "--wait"});
      EXPECT_TRUE(r.ok()) << r.status();
    }
  }

  static absl::StatusOr<std::string> Weftctl(std::vector<std::string> args,
                                             milliseconds timeout = seconds(120)) {
    return mesh_.Weftctl(std::move(args), timeout);
  }

  // Applies `yaml` as a user does (weftctl apply --wait: every node ACKed), then waits until
  // weftctl status shows each route of `routes` ("HTTPRoute ns/name") Accepted for its parents.
  void ApplyRoutes(const std::string& yaml, const std::vector<std::string>& routes) {
    std::string file = absl::StrCat(mesh_.tmp->path(), "/route-", counter_++, ".yaml");
    ASSERT_TRUE(WriteFileAtomic(file, yaml).ok());
    auto r = Weftctl({"apply", "-f", file, "--wait"});
    ASSERT_TRUE(r.ok()) << r.status();
    applied_.push_back(file);
    std::string status;
    for (const std::string& route : routes) {
      EXPECT_TRUE(Eventually(
          [&] {
            auto st = Weftctl({"status"});
            status = st.ok() ? *st : std::string(st.status().message());
            return RouteAccepted(status, route);
          },
          seconds(20)))
          << route << " never Accepted:\n"
          << status;
    }
  }
  // The lines of `route` in weftctl status: every parent Accepted=True and ResolvedRefs=True.
  static bool RouteAccepted(const std::string& status, const std::string& route) {
    size_t at = status.find("  " + route + " (");
    if (at == std::string::npos) return false;
    size_t end = status.find("\n  ", status.find('\n', at));
    while (end != std::string::npos && status.compare(end + 3, 1, " ") == 0)
      end = status.find("\n  ", end + 1);
    std::string block = status.substr(at, end == std::string::npos ? std::string::npos : end - at);
    return absl::StrContains(block, "Accepted=True") &&
           !absl::StrContains(block, "Accepted=False") &&
           !absl::StrContains(block, "ResolvedRefs=False");
  }

  // curl -i from `pod`; `args` are curl's (headers, method, URL or URL glob).
  std::vector<Exchange> Curl(const std::string& pod, std::vector<std::string> args) {
    std::vector<std::string> cmd = {"exec", pod, "--", "curl", "-sS", "-i", "-m", "5"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    auto r = Weftctl(cmd, seconds(90));
    if (!r.ok()) {
      Exchange e;
      e.err = std::string(r.status().message());
      return {e};
    }
    std::vector<Exchange> out = ParseCurl(*r);
    if (out.empty()) {
      Exchange e;
      e.err = "no HTTP response in: " + *r;
      out.push_back(e);
    }
    return out;
  }
  Exchange Get(const std::string& url, std::vector<std::string> headers = {},
               const std::string& pod = kClient) {
    std::vector<std::string> args;
    for (const std::string& h : headers) {
      args.push_back("-H");
      args.push_back(h);
    }
    args.push_back(url);
    return Curl(pod, args).back();
  }

  // Upstream's MakeRequestAndExpectEventuallyConsistentResponse: the first check waits until
  // the answer is the expected one (the route is ACKed, so this is only a guard).
  ::testing::AssertionResult Expect(const std::string& what, const std::function<Exchange()>& call,
                                    const std::function<std::string(const Exchange&)>& check) {
    std::string why;
    Exchange last;
    bool ok = Eventually(
        [&] {
          last = call();
          why = check(last);
          return why.empty();
        },
        seconds(10));
    if (ok) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << ": " << why << " (status " << last.code
                                         << ", body " << last.raw << last.err << ")";
  }
  static std::function<std::string(const Exchange&)> Backend(const std::string& pod,
                                                             int code = 200) {
    return [pod, code](const Exchange& e) -> std::string {
      if (e.code != code) return absl::StrCat("status ", e.code, ", want ", code);
      if (!pod.empty() && e.Pod() != pod) return "answered by \"" + e.Pod() + "\", want " + pod;
      if (e.echo.is_object() && e.echo.value("namespace", "") != kNs)
        return "backend namespace " + e.echo.value("namespace", "");
      return "";
    };
  }

  void RedirectStatus(int code);

  static inline SuiteMesh mesh_;
  static inline std::map<std::string, std::string> pod_ip_;
  static inline int counter_ = 0;
  std::vector<std::string> applied_;
};

std::string Route(const std::string& name, const std::string& parent, const std::string& spec,
                  const std::string& ns = kNs) {
  return absl::StrCat(
      "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ", name,
      ", namespace: ", ns, "}\nspec:\n  parentRefs:\n  - ", parent, "\n", spec);
}

// ---- core ---------------------------------------------------------------------------------

TEST_F(MeshConformance, MeshBasic) {
  // No route: the Service answers, from a backend in the mesh namespace.
  EXPECT_TRUE(Expect(
      "GET echo /", [&] { return Get("http://echo/"); }, Backend("")));
  Exchange e = Get("http://echo/");
  EXPECT_TRUE(e.Pod() == "echo-v1" || e.Pod() == "echo-v2") << e.raw;
  EXPECT_EQ(e.echo.value("method", ""), "GET");
  EXPECT_EQ(e.echo.value("path", ""), "/");
  EXPECT_EQ(e.echo.value("host", ""), "echo");
}

TEST_F(MeshConformance, MeshTrafficSplit) {
  ApplyRoutes(Route("mesh-split", "{group: \"\", kind: Service, name: echo, port: 80}",
                    "  rules:\n"
                    "  - matches: [{path: {type: Exact, value: /v1}}]\n"
                    "    backendRefs: [{name: echo-v1, port: 80}]\n"
                    "  - matches: [{path: {type: Exact, value: /v2}}]\n"
                    "    backendRefs: [{name: echo-v2, port: 80}]\n"),
              {"HTTPRoute gateway-conformance-mesh/mesh-split"});
  EXPECT_TRUE(Expect(
      "/v1", [&] { return Get("http://echo/v1"); }, Backend("echo-v1")));
  EXPECT_TRUE(Expect(
      "/v2", [&] { return Get("http://echo/v2"); }, Backend("echo-v2")));
}

TEST_F(MeshConformance, MeshHTTPRouteSimpleSameNamespace) {
  ApplyRoutes(Route("mesh-simple", "{group: \"\", kind: Service, name: echo, port: 80}",
                    "  rules:\n  - backendRefs: [{name: echo-v1, port: 80}]\n"),
              {"HTTPRoute gateway-conformance-mesh/mesh-simple"});
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(Expect(
        "/", [&] { return Get("http://echo/"); }, Backend("echo-v1")));
}

TEST_F(MeshConformance, MeshHTTPRouteMatching) {
  ApplyRoutes(Route("mesh-matching", "{group: \"\", kind: Service, name: echo, port: 80}",
                    "  rules:\n"
                    "  - matches: [{path: {type: PathPrefix, value: /}}]\n"
                    "    backendRefs: [{name: echo-v1, port: 80}]\n"
                    "  - matches:\n"
                    "    - path: {type: PathPrefix, value: /v2}\n"
                    "    - headers: [{name: version, value: two}]\n"
                    "    backendRefs: [{name: echo-v2, port: 80}]\n"),
              {"HTTPRoute gateway-conformance-mesh/mesh-matching"});
  EXPECT_TRUE(Expect(
      "/", [&] { return Get("http://echo/"); }, Backend("echo-v1")));
  EXPECT_TRUE(Expect(
      "/example", [&] { return Get("http://echo/example"); }, Backend("echo-v1")));
  EXPECT_TRUE(Expect(
      "/v2", [&] { return Get("http://echo/v2"); }, Backend("echo-v2")));
  EXPECT_TRUE(Expect(
      "/v2/example", [&] { return Get("http://echo/v2/example"); }, Backend("echo-v2")));
  EXPECT_TRUE(Expect(
      "version: one", [&] { return Get("http://echo/", {"version: one"}); }, Backend("echo-v1")));
  EXPECT_TRUE(Expect(
      "version: two", [&] { return Get("http://echo/", {"version: two"}); }, Backend("echo-v2")));
}

TEST_F(MeshConformance, MeshHTTPRouteWeight) {
  ApplyRoutes(Route("mesh-weighted-backends", "{group: \"\", kind: Service, name: echo, port: 80}",
                    "  rules:\n  - backendRefs:\n"
                    "    - {name: echo-v1, port: 80, weight: 70}\n"
                    "    - {name: echo-v2, port: 80, weight: 30}\n"),
              {"HTTPRoute gateway-conformance-mesh/mesh-weighted-backends"});
  EXPECT_TRUE(Expect(
      "/", [&] { return Get("http://echo/"); }, Backend("")));
  // Upstream: 500 requests, each backend's share within 0.05 of its weight, up to 10 tries.
  constexpr double kTotal = 500, kTolerance = 0.05;
  std::string last;
  bool within = false;
  for (int attempt = 0; attempt < 10 && !within; ++attempt) {
    // One curl, 500 requests (a URL glob; each with its own jitter query).
    std::vector<Exchange> all = Curl(kClient, {"http://echo/?jitter=[1-500]"});
    std::map<std::string, double> seen;
    int bad = 0;
    for (const Exchange& e : all) {
      if (e.code == 200) {
        ++seen[e.Pod()];
      } else {
        ++bad;
      }
    }
    double v1 = seen["echo-v1"] / kTotal, v2 = seen["echo-v2"] / kTotal;
    last = absl::StrCat(all.size(), " responses, ", bad, " not 200, echo-v1 ", v1, ", echo-v2 ", v2,
                        ", other pods ", seen.size() - 2);
    within = all.size() == kTotal && bad == 0 && seen.size() == 2 &&
             std::abs(v1 - 0.7) <= kTolerance && std::abs(v2 - 0.3) <= kTolerance;
    std::printf("[ weight attempt %d: %s ]\n", attempt + 1, last.c_str());
  }
  EXPECT_TRUE(within) << last;
}

TEST_F(MeshConformance, MeshHTTPRouteRequestHeaderModifier) {
  ApplyRoutes(
      Route(
          "mesh-request-header-modifier", "{group: \"\", kind: Service, name: echo, port: 80}",
          "  rules:\n"
          "  - matches: [{path: {type: PathPrefix, value: /set}}]\n"
          "    filters:\n"
          "    - type: RequestHeaderModifier\n"
          "      requestHeaderModifier: {set: [{name: X-Header-Set, value: "
          "set-overwrites-values}]}\n"
          "    backendRefs: [{name: echo-v1, port: 80}]\n"
          "  - matches: [{path: {type: PathPrefix, value: /add}}]\n"
          "    filters:\n"
          "    - type: RequestHeaderModifier\n"
          "      requestHeaderModifier: {add: [{name: X-Header-Add, value: add-appends-values}]}\n"
          "    backendRefs: [{name: echo-v1, port: 80}]\n"
          "  - matches: [{path: {type: PathPrefix, value: /remove}}]\n"
          "    filters:\n"
          "    - type: RequestHeaderModifier\n"
          "      requestHeaderModifier: {remove: [X-Header-Remove]}\n"
          "    backendRefs: [{name: echo-v1, port: 80}]\n"
          "  - matches: [{path: {type: PathPrefix, value: /multiple}}]\n"
          "    filters:\n"
          "    - type: RequestHeaderModifier\n"
          "      requestHeaderModifier:\n"
          "        set: [{name: X-Header-Set-1, value: header-set-1}, "
          "{name: X-Header-Set-2, value: header-set-2}]\n"
          "        add: [{name: X-Header-Add-1, value: header-add-1}, "
          "{name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: "
          "header-add-3}]\n"
          "        remove: [X-Header-Remove-1, X-Header-Remove-2]\n"
          "    backendRefs: [{name: echo-v1, port: 80}]\n"),
      {"HTTPRoute gateway-conformance-mesh/mesh-request-header-modifier"});
  auto headers = [](std::map<std::string, std::string> want, std::vector<std::string> absent) {
    return [want, absent](const Exchange& e) -> std::string {
      if (e.code != 200 || e.Pod() != "echo-v1") return "not answered 200 by echo-v1";
      for (const auto& [k, v] : want)
        if (e.RequestHeader(k) != v) return k + ": \"" + e.RequestHeader(k) + "\", want " + v;
      for (const std::string& k : absent)
        if (e.HasRequestHeader(k)) return k + " still there";
      return "";
    };
  };
  EXPECT_TRUE(Expect(
      "/set", [&] { return Get("http://echo/set", {"Some-Other-Header: val"}); },
      headers({{"some-other-header", "val"}, {"x-header-set", "set-overwrites-values"}}, {})));
  EXPECT_TRUE(Expect(
      "/set overwrites", [&] { return Get("http://echo/set", {"X-Header-Set: some-other-value"}); },
      headers({{"x-header-set", "set-overwrites-values"}}, {})));
  EXPECT_TRUE(Expect(
      "/add", [&] { return Get("http://echo/add", {"Some-Other-Header: val"}); },
      headers({{"x-header-add", "add-appends-values"}}, {})));
  EXPECT_TRUE(Expect(
      "/add appends", [&] { return Get("http://echo/add", {"X-Header-Add: some-other-value"}); },
      headers({{"x-header-add", "some-other-value,add-appends-values"}}, {})));
  EXPECT_TRUE(Expect(
      "/remove", [&] { return Get("http://echo/remove", {"X-Header-Remove: val"}); },
      headers({}, {"x-header-remove"})));
  EXPECT_TRUE(Expect(
      "/multiple",
      [&] {
        return Get("http://echo/multiple", {"X-Header-Set-2: set-val", "X-Header-Add-2: add-val",
                                            "X-Header-Remove-1: val", "X-Header-Remove-2: val"});
      },
      headers({{"x-header-set-1", "header-set-1"},
               {"x-header-set-2", "header-set-2"},
               {"x-header-add-1", "header-add-1"},
               {"x-header-add-2", "add-val,header-add-2"},
               {"x-header-add-3", "header-add-3"}},
              {"x-header-remove-1", "x-header-remove-2"})));
}

std::function<std::string(const Exchange&)> Redirect(int code, const std::string& location) {
  return [code, location](const Exchange& e) -> std::string {
    if (e.code != code) return absl::StrCat("status ", e.code, ", want ", code);
    auto it = e.headers.find("location");
    std::string got = it == e.headers.end() ? "" : it->second;
    if (got != location) return "Location \"" + got + "\", want " + location;
    return "";
  };
}

TEST_F(MeshConformance, MeshHTTPRouteRedirectHostAndStatus) {
  ApplyRoutes(
      Route("mesh-redirect-host-and-status", "{group: \"\", kind: Service, name: echo, port: 80}",
            "  rules:\n"
            "  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]\n"
            "    filters:\n"
            "    - type: RequestRedirect\n"
            "      requestRedirect: {hostname: example.org}\n"
            "  - matches: [{path: {type: PathPrefix, value: /host-and-status}}]\n"
            "    filters:\n"
            "    - type: RequestRedirect\n"
            "      requestRedirect: {hostname: example.org, statusCode: 301}\n"),
      {"HTTPRoute gateway-conformance-mesh/mesh-redirect-host-and-status"});
  EXPECT_TRUE(Expect(
      "/hostname-redirect", [&] { return Get("http://echo/hostname-redirect"); },
      Redirect(302, "http://example.org/hostname-redirect")));
  EXPECT_TRUE(Expect(
      "/host-and-status", [&] { return Get("http://echo/host-and-status"); },
      Redirect(301, "http://example.org/host-and-status")));
}

// ---- extended -----------------------------------------------------------------------------

std::function<std::string(const Exchange&)> ResponseHeader(const std::string& pod,
                                                           const std::string& value) {
  return [pod, value](const Exchange& e) -> std::string {
    if (e.code != 200 || e.Pod() != pod) return "not answered 200 by " + pod;
    auto it = e.headers.find("x-header-set");
    if (value.empty()) return it == e.headers.end() ? "" : "X-Header-Set present: " + it->second;
    if (it == e.headers.end() || it->second != value)
      return "X-Header-Set missing or wrong, want " + value;
    return "";
  };
}

const char kSetHeader[] =
    "  rules:\n  - filters:\n    - type: ResponseHeaderModifier\n"
    "      responseHeaderModifier: {set: [{name: X-Header-Set, value: ";

TEST_F(MeshConformance, MeshFrontend) {
  ApplyRoutes(Route("mesh-frontend", "{group: \"\", kind: Service, name: echo-v2}",
                    absl::StrCat(kSetHeader, "set}]}\n")),
              {"HTTPRoute gateway-conformance-mesh/mesh-frontend"});
  EXPECT_TRUE(Expect(
      "to the Service", [&] { return Get("http://echo-v2/"); }, ResponseHeader("echo-v2", "set")));
  const std::string ip = pod_ip_["gateway-conformance-mesh/echo-v2"];
  ASSERT_FALSE(ip.empty());
  EXPECT_TRUE(Expect(
      "to the pod IP", [&] { return Get("http://" + ip + ":8080/"); },
      ResponseHeader("echo-v2", "")));
}

TEST_F(MeshConformance, MeshFrontendHostname) {
  ApplyRoutes(Route("mesh-frontend", "{group: \"\", kind: Service, name: echo-v2}",
                    absl::StrCat(kSetHeader, "set}]}\n")),
              {"HTTPRoute gateway-conformance-mesh/mesh-frontend"});
  // The parentRef matches the Service's IP, not the Host header.
  EXPECT_TRUE(Expect(
      "echo-v2 with Host: echo-v1", [&] { return Get("http://echo-v2/", {"Host: echo-v1"}); },
      ResponseHeader("echo-v2", "set")));
  EXPECT_TRUE(Expect(
      "echo-v1 with Host: echo-v2", [&] { return Get("http://echo-v1/", {"Host: echo-v2"}); },
      ResponseHeader("echo-v1", "")));
}

TEST_F(MeshConformance, MeshPorts) {
  ApplyRoutes(Route("mesh-ports-v1", "{group: \"\", kind: Service, name: echo-v1, port: 80}",
                    absl::StrCat(kSetHeader, "v1}]}\n")) +
                  "---\n" +
                  Route("mesh-ports-v2", "{group: \"\", kind: Service, name: echo-v2}",
                        absl::StrCat(kSetHeader, "v2}]}\n")),
              {"HTTPRoute gateway-conformance-mesh/mesh-ports-v1",
               "HTTPRoute gateway-conformance-mesh/mesh-ports-v2"});
  EXPECT_TRUE(Expect(
      "explicit port", [&] { return Get("http://echo-v1/"); }, ResponseHeader("echo-v1", "v1")));
  EXPECT_TRUE(Expect(
      "excluded port", [&] { return Get("http://echo-v1:8080/"); }, ResponseHeader("echo-v1", "")));
  EXPECT_TRUE(Expect(
      "no port set", [&] { return Get("http://echo-v2/"); }, ResponseHeader("echo-v2", "v2")));
  EXPECT_TRUE(Expect(
      "no port set, 8080", [&] { return Get("http://echo-v2:8080/"); },
      ResponseHeader("echo-v2", "v2")));
}

TEST_F(MeshConformance, MeshConsumerRoute) {
  ApplyRoutes(
      Route("mesh-echo-add-header",
            "{group: \"\", kind: Service, name: echo-v1, namespace: gateway-conformance-mesh}",
            absl::StrCat(kSetHeader, "set}]}\n"), "gateway-conformance-mesh-consumer"),
      {"HTTPRoute gateway-conformance-mesh-consumer/mesh-echo-add-header"});
  const std::string url = "http://echo-v1.gateway-conformance-mesh/";
  EXPECT_TRUE(Expect(
      "from the consumer namespace", [&] { return Get(url, {}, kConsumer); },
      ResponseHeader("echo-v1", "set")));
  EXPECT_TRUE(Expect(
      "from the producer namespace", [&] { return Get(url, {}, kClient); },
      ResponseHeader("echo-v1", "")));
}

}  // namespace
}  // namespace weft::e2e
namespace weft::e2e {
namespace {

TEST_F(MeshConformance, MeshHTTPRouteQueryParamMatching) {
  auto rule = [](const std::string& matches, const std::string& backend) {
    return absl::StrCat("  - matches:\n", matches, "    backendRefs: [{name: ", backend,
                        ", port: 80}]\n");
  };
  ApplyRoutes(
      Route("mesh-query-param-matching", "{group: \"\", kind: Service, name: echo, port: 80}",
            "  rules:\n" + rule("    - queryParams: [{name: animal, value: whale}]\n", "echo-v1") +
                rule("    - queryParams: [{name: animal, value: dolphin}]\n", "echo-v2") +
                rule("    - path: {type: PathPrefix, value: /path1}\n"
                     "      queryParams: [{name: animal, value: whale}]\n",
                     "echo-v1") +
                rule("    - headers: [{name: version, value: one}]\n"
                     "      queryParams: [{name: animal, value: whale}]\n",
                     "echo-v2") +
                rule("    - path: {type: PathPrefix, value: /path3}\n"
                     "      queryParams: [{name: animal, value: shark}]\n"
                     "    - path: {type: PathPrefix, value: /path4}\n"
                     "      headers: [{name: version, value: three}]\n"
                     "      queryParams: [{name: animal, value: kraken}]\n",
                     "echo-v1") +
                rule("    - path: {type: PathPrefix, value: /path5}\n"
                     "      queryParams: [{name: animal, value: hydra}]\n",
                     "echo-v1") +
                rule("    - queryParams: [{name: animal, value: hydra}]\n", "echo-v2")),
      {"HTTPRoute gateway-conformance-mesh/mesh-query-param-matching"});
  const std::vector<std::tuple<std::string, std::vector<std::string>, std::string>> cases = {
      {"/?animal=whale", {}, "echo-v1"},
      {"/?animal=dolphin", {}, "echo-v2"},
      {"/?animal=whale&otherparam=irrelevant", {}, "echo-v1"},
      {"/?animal=dolphin&color=yellow", {}, "echo-v2"},
      {"/?color=blue", {}, ""},
      {"/?animal=dog", {}, ""},
      {"/?animal=whaledolphin", {}, ""},
      {"/", {}, ""},
      {"/path1?animal=whale", {}, "echo-v1"},
      {"/?animal=whale", {"version: one"}, "echo-v2"},
      {"/path3?animal=shark", {}, "echo-v1"},
      {"/path4?animal=kraken", {"version: three"}, "echo-v1"},
      {"/?animal=shark", {}, ""},
      {"/path4?animal=kraken", {}, ""},
      {"/path5?animal=hydra", {}, "echo-v1"},
  };
  for (const auto& [path, headers, backend] : cases) {
    EXPECT_TRUE(Expect(
        path + (headers.empty() ? "" : " " + headers[0]),
        [&] { return Get("http://echo" + path, headers); },
        backend.empty()
            ? std::function<std::string(const Exchange&)>([](const Exchange& e) -> std::string {
                return e.code == 404 ? "" : absl::StrCat("status ", e.code);
              })
            : Backend(backend)));
  }
}

TEST_F(MeshConformance, MeshHTTPRouteRewritePath) {
  const std::string headers =
      "    - type: RequestHeaderModifier\n"
      "      requestHeaderModifier:\n"
      "        set: [{name: X-Header-Set, value: set-overwrites-values}]\n"
      "        add: [{name: X-Header-Add, value: header-val-1}, "
      "{name: X-Header-Add-Append, value: header-val-2}]\n"
      "        remove: [X-Header-Remove]\n";
  auto rule = [](const std::string& prefix, const std::string& rewrite,
                 const std::string& more = "") {
    return absl::StrCat("  - matches: [{path: {type: PathPrefix, value: ", prefix,
                        "}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite: {path: ",
                        rewrite, "}\n", more, "    backendRefs: [{name: echo-v1, port: 80}]\n");
  };
  ApplyRoutes(
      Route("mesh-rewrite-path", "{group: \"\", kind: Service, name: echo, port: 80}",
            "  rules:\n" +
                rule("/prefix/one", "{type: ReplacePrefixMatch, replacePrefixMatch: /one}") +
                rule("/strip-prefix", "{type: ReplacePrefixMatch, replacePrefixMatch: /}") +
                rule("/full/one", "{type: ReplaceFullPath, replaceFullPath: /one}") +
                rule("/full/rewrite-path-and-modify-headers",
                     "{type: ReplaceFullPath, replaceFullPath: /test}", headers) +
                rule("/prefix/rewrite-path-and-modify-headers",
                     "{type: ReplacePrefixMatch, replacePrefixMatch: /prefix}", headers)),
      {"HTTPRoute gateway-conformance-mesh/mesh-rewrite-path"});
  auto seen = [](const std::string& path, bool modified) {
    return [path, modified](const Exchange& e) -> std::string {
      if (e.code != 200 || e.Pod() != "echo-v1") return "not answered 200 by echo-v1";
      if (e.echo.value("path", "") != path) return "backend saw " + e.echo.value("path", "");
      if (!modified) return "";
      if (e.RequestHeader("x-header-add") != "header-val-1") return "X-Header-Add";
      if (e.RequestHeader("x-header-add-append") != "append-val-1,header-val-2")
        return "X-Header-Add-Append: " + e.RequestHeader("x-header-add-append");
      if (e.RequestHeader("x-header-set") != "set-overwrites-values") return "X-Header-Set";
      if (e.HasRequestHeader("x-header-remove")) return "X-Header-Remove still there";
      return "";
    };
  };
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{{"/prefix/one/two", "/one/two"},
                                                        {"/strip-prefix/three", "/three"},
                                                        {"/strip-prefix", "/"},
                                                        {"/full/one/two", "/one"}}) {
    EXPECT_TRUE(Expect(
        from, [&] { return Get("http://echo" + from); }, seen(to, false)));
  }
  const std::vector<std::string> in = {
      "X-Header-Remove: remove-val", "X-Header-Add-Append: append-val-1", "X-Header-Set: set-val"};
  EXPECT_TRUE(Expect(
      "full path and headers",
      [&] { return Get("http://echo/full/rewrite-path-and-modify-headers/test", in); },
      seen("/test", true)));
  EXPECT_TRUE(Expect(
      "prefix and headers",
      [&] { return Get("http://echo/prefix/rewrite-path-and-modify-headers/one", in); },
      seen("/prefix/one", true)));
}

// A redirect's Location, checked as upstream's RedirectRequest: only the parts it names.
struct Want {
  int code;
  std::string scheme, host, port, path;
};
std::function<std::string(const Exchange&)> RedirectTo(Want w) {
  return [w](const Exchange& e) -> std::string {
    if (e.code != w.code) return absl::StrCat("status ", e.code, ", want ", w.code);
    auto it = e.headers.find("location");
    if (it == e.headers.end()) return "no Location";
    std::string loc = it->second, scheme, host, port, path = "/";
    size_t s = loc.find("://");
    if (s == std::string::npos) return "Location not absolute: " + loc;
    scheme = loc.substr(0, s);
    std::string rest = loc.substr(s + 3);
    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    if (slash != std::string::npos) path = rest.substr(slash);
    size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
    if (!w.scheme.empty() && scheme != w.scheme) return "scheme in " + loc;
    if (!w.host.empty() && host != w.host) return "host in " + loc;
    if (!w.port.empty() && port != w.port) return "port in " + loc;
    if (w.port.empty() && !port.empty() && w.scheme == "https") return "port kept in " + loc;
    if (!w.path.empty() && path != w.path) return "path in " + loc;
    return "";
  };
}

std::string RedirectRules(const std::vector<std::pair<std::string, std::string>>& rules) {
  std::string out = "  rules:\n";
  for (const auto& [prefix, redirect] : rules) {
    absl::StrAppend(
        &out, "  - matches: [{path: {type: PathPrefix, value: ", prefix,
        "}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect: ", redirect, "\n");
  }
  return out;
}

TEST_F(MeshConformance, MeshHTTPRouteRedirectPath) {
  const std::string prefix =
      "path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}";
  const std::string full = "path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}";
  ApplyRoutes(
      Route(
          "mesh-redirect-path", "{group: \"\", kind: Service, name: echo, port: 80}",
          RedirectRules({
              {"/original-prefix", "{" + prefix + "}"},
              {"/full", "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}"},
              {"/path-and-host", "{hostname: example.org, " + prefix + "}"},
              {"/path-and-status", "{statusCode: 301, " + prefix + "}"},
              {"/full-path-and-host", "{hostname: example.org, " + full + "}"},
              {"/full-path-and-status", "{statusCode: 301, " + full + "}"},
          })),
      {"HTTPRoute gateway-conformance-mesh/mesh-redirect-path"});
  const std::vector<std::pair<std::string, Want>> cases = {
      {"/original-prefix/lemon", {302, "", "", "", "/replacement-prefix/lemon"}},
      {"/full/path/original", {302, "", "", "", "/full-path-replacement"}},
      {"/path-and-host", {302, "", "example.org", "", "/replacement-prefix"}},
      {"/path-and-status", {301, "", "", "", "/replacement-prefix"}},
      {"/full-path-and-host", {302, "", "example.org", "", "/replacement-full"}},
      {"/full-path-and-status", {301, "", "", "", "/replacement-full"}},
  };
  for (const auto& [path, want] : cases)
    EXPECT_TRUE(Expect(
        path, [&] { return Get("http://echo" + path); }, RedirectTo(want)));
}

TEST_F(MeshConformance, MeshHTTPRouteRedirectPort) {
  ApplyRoutes(
      Route(
          "mesh-redirect-port", "{group: \"\", kind: Service, name: echo, port: 80}",
          RedirectRules({
              {"/port", "{port: 8083}"},
              {"/port-and-host", "{hostname: example.org, port: 8083}"},
              {"/port-and-status", "{port: 8083, statusCode: 301}"},
              {"/port-and-host-and-status", "{port: 8083, hostname: example.org, statusCode: 302}"},
          })),
      {"HTTPRoute gateway-conformance-mesh/mesh-redirect-port"});
  const std::vector<std::pair<std::string, Want>> cases = {
      {"/port", {302, "", "", "8083", ""}},
      {"/port-and-host", {302, "", "example.org", "8083", ""}},
      {"/port-and-status", {301, "", "", "8083", ""}},
      {"/port-and-host-and-status", {302, "", "example.org", "8083", ""}},
  };
  for (const auto& [path, want] : cases)
    EXPECT_TRUE(Expect(
        path, [&] { return Get("http://echo" + path); }, RedirectTo(want)));
}

TEST_F(MeshConformance, MeshHTTPRouteSchemeRedirect) {
  ApplyRoutes(Route("mesh-redirect-scheme", "{group: \"\", kind: Service, name: echo, port: 80}",
                    RedirectRules({
                        {"/scheme", "{scheme: https}"},
                        {"/scheme-and-host", "{hostname: example.org, scheme: https}"},
                        {"/scheme-and-status", "{scheme: https, statusCode: 301}"},
                        {"/scheme-and-host-and-status",
                         "{scheme: https, statusCode: 302, hostname: example.org}"},
                    })),
              {"HTTPRoute gateway-conformance-mesh/mesh-redirect-scheme"});
  const std::vector<std::pair<std::string, Want>> cases = {
      {"/scheme", {302, "https", "", "", ""}},
      {"/scheme-and-host", {302, "https", "example.org", "", ""}},
      {"/scheme-and-status", {301, "https", "", "", ""}},
      {"/scheme-and-host-and-status", {302, "https", "example.org", "", ""}},
  };
  for (const auto& [path, want] : cases)
    EXPECT_TRUE(Expect(
        path, [&] { return Get("http://echo" + path); }, RedirectTo(want)));
}

// MeshHTTPRoute303Redirect, 307 and 308: /redirect answered with the code, the path kept.
void MeshConformance::RedirectStatus(int code) {
  const std::string name = absl::StrCat("mesh-", code, "-redirect");
  ApplyRoutes(Route(name, "{group: \"\", kind: Service, name: echo, port: 80}",
                    RedirectRules({{"/redirect", absl::StrCat("{statusCode: ", code, "}")}})),
              {"HTTPRoute gateway-conformance-mesh/" + name});
  EXPECT_TRUE(Expect(
      "/redirect", [&] { return Get("http://echo/redirect"); },
      RedirectTo({code, "", "", "", "/redirect"})));
}

TEST_F(MeshConformance, MeshHTTPRoute303Redirect) {
  RedirectStatus(303);
}
TEST_F(MeshConformance, MeshHTTPRoute307Redirect) {
  RedirectStatus(307);
}
TEST_F(MeshConformance, MeshHTTPRoute308Redirect) {
  RedirectStatus(308);
}

// HTTPRouteBackendRequestHeaderModifier (upstream's Gateway case; no mesh twin): header
// modifiers on a backendRef apply to the requests sent to that backend only.
TEST_F(MeshConformance, MeshHTTPRouteBackendRequestHeaderModifier) {
  auto backend = [](const std::string& name, const std::string& modifier) {
    return absl::StrCat("    - name: ", name,
                        "\n      port: 80\n      filters:\n"
                        "      - type: RequestHeaderModifier\n        requestHeaderModifier: ",
                        modifier, "\n");
  };
  ApplyRoutes(
      Route("mesh-backend-request-header-modifier",
            "{group: \"\", kind: Service, name: echo, port: 80}",
            "  rules:\n"
            "  - matches: [{path: {type: PathPrefix, value: /set}}]\n    backendRefs:\n" +
                backend("echo-v1", "{set: [{name: X-Header-Set, value: set-overwrites-values}]}") +
                "  - matches: [{path: {type: PathPrefix, value: /add}}]\n    backendRefs:\n" +
                backend("echo-v1", "{add: [{name: X-Header-Add, value: add-appends-values}]}") +
                "  - matches: [{path: {type: PathPrefix, value: /remove}}]\n    backendRefs:\n" +
                backend("echo-v1", "{remove: [X-Header-Remove]}") +
                "  - matches: [{path: {type: PathPrefix, value: /multiple-backends}}]\n"
                "    backendRefs:\n" +
                backend("echo-v1", "{set: [{name: X-Header-Set, value: v1}]}") +
                backend("echo-v2", "{set: [{name: X-Header-Set, value: v2}]}")),
      {"HTTPRoute gateway-conformance-mesh/mesh-backend-request-header-modifier"});
  auto saw = [](const std::string& pod, const std::string& name, const std::string& value) {
    return [pod, name, value](const Exchange& e) -> std::string {
      if (e.code != 200 || (!pod.empty() && e.Pod() != pod)) return "not answered 200 by " + pod;
      if (value.empty()) return e.HasRequestHeader(name) ? name + " still there" : "";
      return e.RequestHeader(name) == value ? "" : name + ": " + e.RequestHeader(name);
    };
  };
  EXPECT_TRUE(Expect(
      "/set", [&] { return Get("http://echo/set", {"X-Header-Set: other"}); },
      saw("echo-v1", "x-header-set", "set-overwrites-values")));
  EXPECT_TRUE(Expect(
      "/add", [&] { return Get("http://echo/add", {"X-Header-Add: other"}); },
      saw("echo-v1", "x-header-add", "other,add-appends-values")));
  EXPECT_TRUE(Expect(
      "/remove", [&] { return Get("http://echo/remove", {"X-Header-Remove: x"}); },
      saw("echo-v1", "x-header-remove", "")));
  // Each backend with its own filter: whichever answered saw its own value, and both answer.
  std::set<std::string> pods;
  for (int i = 0; i < 20; ++i) {
    Exchange e = Get("http://echo/multiple-backends");
    ASSERT_EQ(e.code, 200) << e.raw << e.err;
    EXPECT_EQ(e.RequestHeader("x-header-set"), e.Pod() == "echo-v1" ? "v1" : "v2") << e.raw;
    pods.insert(e.Pod());
  }
  EXPECT_EQ(pods.size(), 2u);
}

// ---- GRPCRoute --------------------------------------------------------------------------------
// The echo pods also answer gRPC on 9090 (weft-teashop echo-request --grpc-listen); calls are
// made by a real gRPC client in the client pod (weft-teashop --role grpc-call), one HTTP/2
// connection for all its calls, so the split below is per call, not per connection.

std::string GrpcRoute(const std::string& name, const std::string& spec) {
  return absl::StrCat(
      "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: ", name,
      ", namespace: ", kNs,
      "}\nspec:\n  parentRefs:\n"
      "  - {group: \"\", kind: Service, name: echo-grpc, port: 9090}\n",
      spec);
}

// What grpc-call printed: one JSON object per call.
std::vector<nlohmann::json> GrpcReplies(const std::string& out) {
  std::vector<nlohmann::json> res;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) res.push_back(std::move(j));
  }
  return res;
}

class MeshGrpcConformance : public MeshConformance {
 protected:
  std::vector<nlohmann::json> Call(const std::string& method, int count,
                                   std::vector<std::string> metadata = {}, int expect_code = 0) {
    std::vector<std::string> cmd = {"exec",     kClient,     "--",       "weft-teashop",
                                    "--role",   "grpc-call", "--target", "echo-grpc:9090",
                                    "--method", method,      "--count",  std::to_string(count)};
    for (const std::string& m : metadata) {
      cmd.push_back("--metadata");
      cmd.push_back(m);
    }
    cmd.push_back("--expect-code");
    cmd.push_back(std::to_string(expect_code));
    auto r = Weftctl(cmd, seconds(120));
    last_ = r.ok() ? *r : std::string(r.status().message());
    return GrpcReplies(last_);
  }
  // The pod that answered a call, "" if it failed.
  static std::string Pod(const nlohmann::json& j) {
    if (j.value("code", -1) != 0 || !j["reply"].is_object()) return "";
    return j["reply"].value("pod", "");
  }
  static std::string Header(const nlohmann::json& j, const std::string& name) {
    if (!j["reply"].is_object() || !j["reply"]["headers"].contains(name)) return "";
    return absl::StrJoin(j["reply"]["headers"][name].get<std::vector<std::string>>(), ",");
  }
  std::string last_;
};

TEST_F(MeshGrpcConformance, MeshGRPCRouteWeight) {
  ApplyRoutes(GrpcRoute("mesh-grpc-weighted-backends",
                        "  rules:\n  - backendRefs:\n"
                        "    - {name: echo-grpc-v1, port: 9090, weight: 70}\n"
                        "    - {name: echo-grpc-v2, port: 9090, weight: 30}\n"),
              {"GRPCRoute gateway-conformance-mesh/mesh-grpc-weighted-backends"});
  // As the HTTP case: 500 calls, each backend's share within 0.05 of its weight, up to 10 tries.
  constexpr double kTotal = 500, kTolerance = 0.05;
  std::string last;
  bool within = false;
  for (int attempt = 0; attempt < 10 && !within; ++attempt) {
    std::vector<nlohmann::json> all = Call("/weft.echo.Echo/Weighted", kTotal);
    std::map<std::string, double> seen;
    for (const auto& j : all) ++seen[Pod(j)];
    double v1 = seen["echo-v1"] / kTotal, v2 = seen["echo-v2"] / kTotal;
    within = all.size() == kTotal && seen.size() == 2 && std::abs(v1 - 0.7) <= kTolerance &&
             std::abs(v2 - 0.3) <= kTolerance;
    last = absl::StrCat(all.size(), " replies, echo-v1 ", v1, ", echo-v2 ", v2, ", failed ",
                        seen.count("") ? seen[""] : 0, "; ", last_.substr(0, 300));
    std::printf("[ gRPC weight attempt %d: echo-v1 %.3f, echo-v2 %.3f of %zu ]\n", attempt + 1, v1,
                v2, all.size());
  }
  EXPECT_TRUE(within) << last;
}

TEST_F(MeshGrpcConformance, MeshGRPCRouteRequestHeaderModifier) {
  ApplyRoutes(GrpcRoute("mesh-grpc-request-header-modifier",
                        "  rules:\n"
                        "  - matches: [{method: {service: weft.echo.Echo, method: Set}}]\n"
                        "    filters:\n"
                        "    - type: RequestHeaderModifier\n"
                        "      requestHeaderModifier:\n"
                        "        set: [{name: X-Header-Set, value: set-overwrites-values}]\n"
                        "    backendRefs: [{name: echo-grpc-v1, port: 9090}]\n"
                        "  - matches: [{method: {service: weft.echo.Echo, method: Add}}]\n"
                        "    filters:\n"
                        "    - type: RequestHeaderModifier\n"
                        "      requestHeaderModifier:\n"
                        "        add: [{name: X-Header-Add, value: add-appends-values}]\n"
                        "    backendRefs: [{name: echo-grpc-v1, port: 9090}]\n"
                        "  - matches: [{method: {service: weft.echo.Echo, method: Remove}}]\n"
                        "    filters:\n"
                        "    - type: RequestHeaderModifier\n"
                        "      requestHeaderModifier: {remove: [X-Header-Remove]}\n"
                        "    backendRefs: [{name: echo-grpc-v1, port: 9090}]\n"),
              {"GRPCRoute gateway-conformance-mesh/mesh-grpc-request-header-modifier"});
  auto one = [&](const std::string& method, const std::string& meta) {
    std::vector<nlohmann::json> r = Call(method, 1, {meta});
    return r.empty() ? nlohmann::json::object() : r[0];
  };
  nlohmann::json set = one("/weft.echo.Echo/Set", "X-Header-Set=other");
  EXPECT_EQ(Pod(set), "echo-v1") << last_;
  EXPECT_EQ(Header(set, "x-header-set"), "set-overwrites-values") << last_;
  nlohmann::json add = one("/weft.echo.Echo/Add", "X-Header-Add=other");
  EXPECT_EQ(Pod(add), "echo-v1") << last_;
  EXPECT_EQ(Header(add, "x-header-add"), "other,add-appends-values") << last_;
  nlohmann::json rm = one("/weft.echo.Echo/Remove", "X-Header-Remove=x");
  EXPECT_EQ(Pod(rm), "echo-v1") << last_;
  EXPECT_TRUE(rm["reply"].is_object() && !rm["reply"]["headers"].contains("x-header-remove"))
      << last_;
}

// GRPCRoute method matching (upstream's GRPCExactMethodMatching, on a Service): each method to
// its own backend; a method no rule matches gets gRPC UNIMPLEMENTED (12), as Envoy answers a
// route miss on a gRPC request.
TEST_F(MeshGrpcConformance, MeshGRPCRouteExactMethodMatching) {
  ApplyRoutes(GrpcRoute("mesh-grpc-exact-method",
                        "  rules:\n"
                        "  - matches: [{method: {service: weft.echo.Echo, method: One}}]\n"
                        "    backendRefs: [{name: echo-grpc-v1, port: 9090}]\n"
                        "  - matches: [{method: {service: weft.echo.Echo, method: Two}}]\n"
                        "    backendRefs: [{name: echo-grpc-v2, port: 9090}]\n"),
              {"GRPCRoute gateway-conformance-mesh/mesh-grpc-exact-method"});
  for (int i = 0; i < 3; ++i) {
    std::vector<nlohmann::json> one = Call("/weft.echo.Echo/One", 5);
    ASSERT_EQ(one.size(), 5u) << last_;
    for (const auto& j : one) EXPECT_EQ(Pod(j), "echo-v1") << j.dump();
    std::vector<nlohmann::json> two = Call("/weft.echo.Echo/Two", 5);
    ASSERT_EQ(two.size(), 5u) << last_;
    for (const auto& j : two) EXPECT_EQ(Pod(j), "echo-v2") << j.dump();
  }
  std::vector<nlohmann::json> miss = Call("/weft.echo.Echo/Three", 1, {}, 12);
  ASSERT_EQ(miss.size(), 1u) << last_;
  EXPECT_EQ(miss[0].value("code", 0), 12) << miss[0].dump();
}

}  // namespace
}  // namespace weft::e2e
