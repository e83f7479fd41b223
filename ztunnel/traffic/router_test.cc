// Route selection: Gateway API precedence, matching, hostnames, ports and consumer routes.
#include "ztunnel/traffic/router.h"

#include <gtest/gtest.h>

#include "ztunnel/state/config_file.h"

namespace weft::ztunnel::traffic {
namespace {

std::shared_ptr<const Router> RouterFor(std::string_view yaml) {
  auto proto = ParseConfigText(yaml);
  EXPECT_TRUE(proto.ok()) << proto.status();
  auto snap = ConfigSnapshot::FromProto(proto.ok() ? *proto : config::v1::ConfigSnapshot());
  EXPECT_TRUE(snap.ok()) << snap.status() << "\n" << yaml;
  return Router::Build(snap.ok() ? *snap : ConfigSnapshot::Empty());
}

struct Req {
  std::string method = "GET";
  std::string path = "/";
  std::string authority = "svc";
  Headers headers;
  std::string client_ns = "shop";
  uint16_t port = 80;
};

// "<route name>/<rule name>", "NR" for no match, "SERVICE" for no routes.
std::string Pick(const Router& r, const Req& q, std::string_view service = "shop/svc") {
  RouteRequest req{q.client_ns, q.method, q.path, q.authority, &q.headers};
  RouteSelection s = r.Select(service, q.port, req);
  switch (s.kind) {
    case RouteSelection::Kind::kNoRoutes:
      return "SERVICE";
    case RouteSelection::Kind::kNoMatch:
      return "NR";
    case RouteSelection::Kind::kMatched:
      break;
  }
  return s.route->name + "/" + s.rule->name;
}

constexpr std::string_view kPrecedence = R"(
httpRoutes:
- name: old
  namespace: shop
  parentService: shop/svc
  creationTimestampMs: 1
  rules:
  - {name: exact, matches: [{pathType: EXACT, path: /exact}]}
  - {name: p, matches: [{pathType: PATH_PREFIX, path: /p}]}
  - {name: longer, matches: [{pathType: PATH_PREFIX, path: /p/longer/}]}
  - {name: re, matches: [{pathType: REGULAR_EXPRESSION, path: "/re/[0-9]+"}]}
- name: new
  namespace: shop
  parentService: shop/svc
  creationTimestampMs: 2
  rules:
  - {name: get, matches: [{pathType: PATH_PREFIX, path: /p, method: GET}]}
  - {name: h1, matches: [{pathType: PATH_PREFIX, path: /p, headers: [{name: X-A, value: "1"}]}]}
  - name: h2
    matches: [{pathType: PATH_PREFIX, path: /p, headers: [{name: x-a, value: "1"}, {name: x-b, value: "1"}]}]
  - {name: q, matches: [{pathType: PATH_PREFIX, path: /p, queryParams: [{name: q, value: "1"}]}]}
  - {name: catchall}
- {name: b-tie, namespace: shop, parentService: shop/svc, creationTimestampMs: 5,
   rules: [{name: first, matches: [{pathType: PATH_PREFIX, path: /t}]}, {name: second, matches: [{pathType: PATH_PREFIX, path: /t}]}]}
- {name: a-tie, namespace: shop, parentService: shop/svc, creationTimestampMs: 5,
   rules: [{name: only, matches: [{pathType: PATH_PREFIX, path: /t}]}, {name: exact-t, matches: [{pathType: EXACT, path: /t/x}]}]}
- {name: z-oldest, namespace: shop, parentService: shop/svc, creationTimestampMs: 0,
   rules: [{name: only, matches: [{pathType: PATH_PREFIX, path: /u}]}]}
- {name: a-younger, namespace: shop, parentService: shop/svc, creationTimestampMs: 3,
   rules: [{name: only, matches: [{pathType: PATH_PREFIX, path: /u}]}]}
)";

struct PrecedenceCase {
  std::string name;
  Req req;
  std::string want;
};

TEST(RouterTest, PrecedenceTable) {
  auto router = RouterFor(kPrecedence);
  const PrecedenceCase cases[] = {
      {"ExactBeatsEverything", {"GET", "/exact"}, "old/exact"},
      {"ExactIsExact", {"GET", "/exact/"}, "new/catchall"},
      {"MethodBeatsPlainPrefix", {"GET", "/p"}, "new/get"},
      {"PlainPrefixWhenNothingElse", {"POST", "/p/x"}, "old/p"},
      {"MethodBeatsHeaders", {"GET", "/p", "svc", {{"x-a", "1"}}}, "new/get"},
      {"HeadersWhenNoMethod", {"POST", "/p", "svc", {{"x-a", "1"}}}, "new/h1"},
      {"MoreHeadersWin", {"POST", "/p", "svc", {{"x-b", "1"}, {"x-a", "1"}}}, "new/h2"},
      {"QueryBeatsPlain", {"POST", "/p?q=1"}, "new/q"},
      {"HeadersBeatQuery", {"POST", "/p?q=1", "svc", {{"x-a", "1"}}}, "new/h1"},
      {"LongestPrefixBeatsMethod", {"GET", "/p/longer/x"}, "old/longer"},
      {"PrefixTrailingSlashIgnored", {"GET", "/p/longer"}, "old/longer"},
      {"PrefixIsElementWise", {"GET", "/pp"}, "new/catchall"},
      {"RegexFullMatch", {"GET", "/re/12"}, "old/re"},
      {"RegexNotPartial", {"GET", "/re/12x"}, "new/catchall"},
      {"RegexBeatsPrefix", {"GET", "/re/7?q=1"}, "old/re"},
      {"AlphabeticalOnSameAge", {"GET", "/t/y"}, "a-tie/only"},
      {"ExactInAnotherRoute", {"GET", "/t/x"}, "a-tie/exact-t"},
      {"OldestRouteWins", {"GET", "/u"}, "z-oldest/only"},
      {"QueryNotInPathMatch", {"GET", "/exact?x=1"}, "old/exact"},
  };
  for (const PrecedenceCase& c : cases) {
    EXPECT_EQ(Pick(*router, c.req), c.want) << c.name;
  }
}

TEST(RouterTest, RuleOrderBreaksTheLastTie) {
  auto router = RouterFor(R"(
httpRoutes:
- {name: r, namespace: shop, parentService: shop/svc,
   rules: [{name: one, matches: [{pathType: PATH_PREFIX, path: /a}]}, {name: two, matches: [{pathType: PATH_PREFIX, path: /a}]}]}
)");
  EXPECT_EQ(Pick(*router, {"GET", "/a"}), "r/one");
  EXPECT_EQ(Pick(*router, {"GET", "/b"}), "NR");  // routes attached, none matches: 404 NR
  EXPECT_EQ(Pick(*router, {"GET", "/a"}, "shop/other"), "SERVICE");
}

TEST(RouterTest, HeadersAndQueryParams) {
  auto router = RouterFor(R"(
httpRoutes:
- name: r
  namespace: shop
  parentService: shop/svc
  rules:
  - {name: re, matches: [{headers: [{type: REGULAR_EXPRESSION, name: X-Re, value: "ab+"}]}]}
  - {name: joined, matches: [{headers: [{name: x-multi, value: "a,b"}]}]}
  - {name: decoded, matches: [{queryParams: [{name: n, value: "a b"}]}]}
  - {name: case, matches: [{queryParams: [{name: Q, value: "1"}]}]}
  - {name: regexq, matches: [{queryParams: [{type: REGULAR_EXPRESSION, name: v, value: "[0-9]+"}]}]}
)");
  EXPECT_EQ(Pick(*router, {"GET", "/", "svc", {{"x-re", "abbb"}}}), "r/re");
  EXPECT_EQ(Pick(*router, {"GET", "/", "svc", {{"x-re", "abc"}}}), "NR");  // full match
  EXPECT_EQ(Pick(*router, {"GET", "/", "svc", {{"x-multi", "a"}, {"x-multi", "b"}}}), "r/joined");
  EXPECT_EQ(Pick(*router, {"GET", "/?n=a%20b"}), "r/decoded");
  EXPECT_EQ(Pick(*router, {"GET", "/?n=x&n=a%20b"}), "NR");  // the first occurrence counts
  EXPECT_EQ(Pick(*router, {"GET", "/?q=1"}), "NR");          // names are case-sensitive
  EXPECT_EQ(Pick(*router, {"GET", "/?Q=1"}), "r/case");
  EXPECT_EQ(Pick(*router, {"GET", "/?v=12"}), "r/regexq");
  EXPECT_EQ(Pick(*router, {"GET", "/?v"}), "NR");
}

TEST(RouterTest, RulesToldApartByOneHeaderKeepTheirPrecedence) {
  // Enough rules on one path for the bucket to be indexed by x-tenant.
  auto router = RouterFor(R"(
httpRoutes:
- name: r
  namespace: shop
  parentService: shop/svc
  rules:
  - {name: t0, matches: [{pathType: PATH_PREFIX, path: /api, headers: [{name: x-tenant, value: t0}]}]}
  - {name: t1, matches: [{pathType: PATH_PREFIX, path: /api, headers: [{name: x-tenant, value: t1}]}]}
  - {name: t1-beta, matches: [{pathType: PATH_PREFIX, path: /api, headers: [{name: x-tenant, value: t1}, {name: x-beta, value: "1"}]}]}
  - {name: t2, matches: [{pathType: PATH_PREFIX, path: /api, headers: [{name: x-tenant, value: t2}]}]}
  - {name: joined, matches: [{pathType: PATH_PREFIX, path: /api, headers: [{name: x-tenant, value: "t3,t4"}]}]}
  - {name: get, matches: [{pathType: PATH_PREFIX, path: /api, method: GET}]}
  - {name: any-t, matches: [{pathType: PATH_PREFIX, path: /api, headers: [{type: REGULAR_EXPRESSION, name: x-tenant, value: "t[0-9]"}]}]}
  - {name: plain, matches: [{pathType: PATH_PREFIX, path: /api}]}
)");
  EXPECT_EQ(Pick(*router, {"GET", "/api", "svc", {{"x-tenant", "t1"}}}), "r/get");  // method first
  EXPECT_EQ(Pick(*router, {"POST", "/api", "svc", {{"x-tenant", "t1"}}}), "r/t1");
  EXPECT_EQ(Pick(*router, {"POST", "/api", "svc", {{"x-tenant", "t1"}, {"x-beta", "1"}}}),
            "r/t1-beta");
  EXPECT_EQ(Pick(*router, {"POST", "/api", "svc", {{"x-tenant", "t2"}}}), "r/t2");
  EXPECT_EQ(Pick(*router, {"POST", "/api", "svc", {{"x-tenant", "t3"}, {"x-tenant", "t4"}}}),
            "r/joined");
  EXPECT_EQ(Pick(*router, {"POST", "/api", "svc", {{"x-tenant", "t9"}}}), "r/any-t");
  EXPECT_EQ(Pick(*router, {"POST", "/api", "svc", {{"x-tenant", "zz"}}}), "r/plain");
  EXPECT_EQ(Pick(*router, {"POST", "/api"}), "r/plain");
  EXPECT_EQ(Pick(*router, {"GET", "/api"}), "r/get");
}

TEST(RouterTest, HostnamesPickTheMostSpecificVirtualHost) {
  auto router = RouterFor(R"(
httpRoutes:
- {name: exact, namespace: shop, parentService: shop/svc, hostnames: [foo.example.com],
   rules: [{name: r, matches: [{pathType: PATH_PREFIX, path: /only}]}]}
- {name: wild, namespace: shop, parentService: shop/svc, hostnames: ["*.example.com"], rules: [{name: r}]}
- {name: longer-wild, namespace: shop, parentService: shop/svc, hostnames: ["*.b.example.com"], rules: [{name: r}]}
- {name: none, namespace: shop, parentService: shop/svc, rules: [{name: r}]}
)");
  EXPECT_EQ(Pick(*router, {"GET", "/only", "foo.example.com"}), "exact/r");
  EXPECT_EQ(Pick(*router, {"GET", "/only", "FOO.Example.COM.:8080"}), "exact/r");
  // The exact host's routes are the virtual host: no fall-back to wildcards or the catch-all.
  EXPECT_EQ(Pick(*router, {"GET", "/other", "foo.example.com"}), "NR");
  EXPECT_EQ(Pick(*router, {"GET", "/", "bar.example.com"}), "wild/r");
  EXPECT_EQ(Pick(*router, {"GET", "/", "a.bar.example.com"}), "wild/r");
  EXPECT_EQ(Pick(*router, {"GET", "/", "a.b.example.com"}), "longer-wild/r");
  EXPECT_EQ(Pick(*router, {"GET", "/", "example.com"}), "none/r");  // "*." needs a label
  EXPECT_EQ(Pick(*router, {"GET", "/", "svc.shop.svc.cluster.local:80"}), "none/r");
  EXPECT_EQ(Pick(*router, {"GET", "/", "[::1]:80"}), "none/r");

  auto only_hosts = RouterFor(R"(
httpRoutes:
- {name: bar, namespace: shop, parentService: shop/svc, hostnames: [bar.com], rules: [{name: r}]}
)");
  EXPECT_EQ(Pick(*only_hosts, {"GET", "/", "bar.com"}), "bar/r");
  EXPECT_EQ(Pick(*only_hosts, {"GET", "/", "svc"}), "NR");
}

TEST(RouterTest, ParentPorts) {
  auto router = RouterFor(R"(
httpRoutes:
- {name: every, namespace: shop, parentService: shop/svc, creationTimestampMs: 1, rules: [{name: r}]}
- {name: on8080, namespace: shop, parentService: shop/svc, parentPort: 8080, rules: [{name: r, matches: [{method: GET}]}]}
)");
  Req get{"GET", "/"};
  get.port = 8080;
  EXPECT_EQ(Pick(*router, get), "on8080/r");
  get.method = "POST";
  EXPECT_EQ(Pick(*router, get), "every/r");
  get.method = "GET";
  get.port = 9090;
  EXPECT_EQ(Pick(*router, get), "every/r");

  auto port_only = RouterFor(R"(
httpRoutes:
- {name: on8080, namespace: shop, parentService: shop/svc, parentPort: 8080, rules: [{name: r}]}
)");
  EXPECT_EQ(Pick(*port_only, get), "SERVICE");  // nothing on 9090: the Service itself
  get.port = 8080;
  EXPECT_EQ(Pick(*port_only, get), "on8080/r");
}

TEST(RouterTest, ConsumerRoutesReplaceProducerRoutesForTheirNamespace) {
  auto router = RouterFor(R"(
httpRoutes:
- {name: producer, namespace: shop, parentService: shop/svc, rules: [{name: r}]}
- {name: consumer, namespace: web, parentService: shop/svc,
   rules: [{name: r, matches: [{pathType: PATH_PREFIX, path: /api}]}]}
- {name: on8080, namespace: batch, parentService: shop/svc, parentPort: 8080, rules: [{name: r}]}
)");
  Req q{"GET", "/api"};
  q.client_ns = "web";
  EXPECT_EQ(Pick(*router, q), "consumer/r");
  q.path = "/other";
  EXPECT_EQ(Pick(*router, q), "NR");  // the producer route no longer applies to web's clients
  q.client_ns = "shop";
  EXPECT_EQ(Pick(*router, q), "producer/r");
  q.client_ns = "elsewhere";
  EXPECT_EQ(Pick(*router, q), "producer/r");
  q.client_ns = "batch";
  EXPECT_EQ(Pick(*router, q), "producer/r");  // batch's route is for port 8080 only
  q.port = 8080;
  EXPECT_EQ(Pick(*router, q), "on8080/r");
}

TEST(RouterTest, SelectByServiceAndSelectionDetails) {
  auto router = RouterFor(R"(
services:
- {name: svc, namespace: shop, ports: [{port: 80}]}
httpRoutes:
- {name: r, namespace: shop, parentService: shop/svc,
   rules: [{name: a, matches: [{pathType: EXACT, path: /x}, {pathType: PATH_PREFIX, path: /y}]}]}
)");
  const config::Service& svc = router->snapshot().services()[0];
  Headers none;
  RouteSelection s = router->Select(svc, 80, RouteRequest{"shop", "GET", "/y/z", "svc", &none});
  ASSERT_EQ(s.kind, RouteSelection::Kind::kMatched);
  EXPECT_EQ(s.rule_index, 0u);
  EXPECT_EQ(s.match->path.value, "/y");
  s = router->Select(svc, 80, RouteRequest{"shop", "GET", "/x", "svc", nullptr});
  ASSERT_EQ(s.kind, RouteSelection::Kind::kMatched);
  EXPECT_EQ(s.match->path.value, "/x");
}

}  // namespace
}  // namespace weft::ztunnel::traffic
