// Route selection: Gateway API precedence, matching, hostnames, ports and consumer routes.
#include "ztunnel/traffic/router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <tuple>

#include "absl/strings/str_cat.h"
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

namespace weft::ztunnel::traffic {
namespace {

// A reference selector written straight from the semantics in router.h, without indexes: every
// applicable candidate sorted by the whole precedence key, the first that matches wins.
struct RefRequest {
  std::string client_ns, method, path, query, host;  // query: "k=v&k2=v2", no repeats
  Headers headers;                                   // no repeated names
  uint16_t port = 80;
};

std::string RefSelect(const ConfigSnapshot& snap, std::string_view service, const RefRequest& q) {
  std::vector<const config::HttpRoute*> consumer, producer;
  for (const config::HttpRoute& r : snap.http_routes()) {
    if (r.parent_service != service || (r.parent_port != 0 && r.parent_port != q.port)) continue;
    if (!r.is_consumer()) {
      producer.push_back(&r);
    } else if (r.ns == q.client_ns) {
      consumer.push_back(&r);
    }
  }
  const auto& routes = consumer.empty() ? producer : consumer;
  if (routes.empty()) return "SERVICE";
  // Host score: 3 exact, 2 wildcard (with its length), 1 no hostnames, 0 no match.
  auto score = [&](const config::HttpRoute& r) -> std::pair<int, size_t> {
    if (r.hostnames.empty()) return {1, 0};
    std::pair<int, size_t> best{0, 0};
    for (const std::string& h : r.hostnames) {
      if (h == q.host) best = std::max(best, std::pair<int, size_t>{3, 0});
      if (h.starts_with("*.") && q.host.size() > h.size() - 1 && q.host.ends_with(h.substr(1))) {
        best = std::max(best, std::pair<int, size_t>{2, h.size()});
      }
    }
    return best;
  };
  std::pair<int, size_t> vhost{0, 0};
  for (const auto* r : routes) vhost = std::max(vhost, score(*r));
  if (vhost.first == 0) return "NR";
  struct C {
    std::tuple<int, int64_t, bool, int64_t, int64_t, int64_t, std::string, uint32_t, uint32_t> key;
    const config::HttpRoute* route;
    const config::HttpRouteMatch* match;
  };
  std::vector<C> cands;
  for (const auto* r : routes) {
    if (score(*r) != vhost) continue;
    for (uint32_t i = 0; i < r->rules.size(); ++i) {
      for (uint32_t j = 0; j < r->rules[i].matches.size(); ++j) {
        const config::HttpRouteMatch& m = r->rules[i].matches[j];
        std::string_view p = m.path.value;
        while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
        int cls = m.path.kind == config::HttpPathMatch::Kind::kExact   ? 0
                  : m.path.kind == config::HttpPathMatch::Kind::kRegex ? 1
                                                                       : 2;
        int64_t len = cls == 2 ? -static_cast<int64_t>(p.size()) : 0;
        cands.push_back(C{{cls, len, m.method.empty(), -static_cast<int64_t>(m.headers.size()),
                           -static_cast<int64_t>(m.query_params.size()), r->creation_timestamp_ms,
                           r->key(), i, j},
                          r,
                          &m});
      }
    }
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const C& a, const C& b) { return a.key < b.key; });
  for (const C& c : cands) {
    const config::HttpRouteMatch& m = *c.match;
    bool ok = m.path.Matches(q.path) && (m.method.empty() || m.method == q.method);
    for (const auto& h : m.headers) {
      auto it = std::find_if(q.headers.begin(), q.headers.end(),
                             [&](const auto& e) { return e.first == h.name; });
      ok = ok && it != q.headers.end() && h.Matches(it->second);
    }
    for (const auto& qp : m.query_params) {
      std::string want = qp.name + "=";
      size_t at = ("&" + q.query).find("&" + want);
      if (at == std::string::npos) {
        ok = false;
        continue;
      }
      std::string v = q.query.substr(at + want.size());
      ok = ok && qp.Matches(v.substr(0, v.find('&')));
    }
    if (ok) {
      return absl::StrCat(c.route->key(), "/", std::get<7>(c.key), "/", std::get<8>(c.key));
    }
  }
  return "NR";
}

std::string RouterSelect(const Router& router, std::string_view service, const RefRequest& q) {
  std::string path = q.query.empty() ? q.path : q.path + "?" + q.query;
  RouteRequest req{q.client_ns, q.method, path, q.host + ":" + std::to_string(q.port), &q.headers};
  RouteSelection s = router.Select(service, q.port, req);
  if (s.kind == RouteSelection::Kind::kNoRoutes) return "SERVICE";
  if (s.kind == RouteSelection::Kind::kNoMatch) return "NR";
  uint32_t j = static_cast<uint32_t>(s.match - s.rule->matches.data());
  return absl::StrCat(s.route->key(), "/", s.rule_index, "/", j);
}

template <typename T>
const T& PickOne(std::mt19937& rng, const std::vector<T>& v) {
  return v[rng() % v.size()];
}

// Random route sets over a small vocabulary, so that rules collide on every criterion.
config::v1::ConfigSnapshot RandomRoutes(std::mt19937& rng) {
  namespace pb = ::weft::config::v1;
  const std::vector<std::string> prefixes = {"/", "/a", "/a/", "/a/b", "/b"};
  const std::vector<std::string> exacts = {"/a", "/a/b", "/b/c"};
  const std::vector<std::string> hosts = {"foo.com", "*.com", "*.foo.com", "bar.com"};
  config::v1::ConfigSnapshot s;
  int n = 1 + static_cast<int>(rng() % 12);
  for (int i = 0; i < n; ++i) {
    pb::HttpRoute* r = s.add_http_routes();
    r->set_name(absl::StrCat("r", i));
    r->set_namespace_(rng() % 4 == 0 ? "web" : "shop");
    r->set_parent_service(rng() % 8 == 0 ? "shop/other" : "shop/svc");
    r->set_parent_port(rng() % 4 == 0 ? 8080 : 0);
    r->set_creation_timestamp_ms(rng() % 3);
    if (rng() % 3 == 0) r->add_hostnames(PickOne(rng, hosts));
    if (rng() % 6 == 0) r->add_hostnames(PickOne(rng, hosts));
    for (int k = 0, rules = 1 + static_cast<int>(rng() % 3); k < rules; ++k) {
      pb::HttpRouteRule* rule = r->add_rules();
      for (int m = 0, ms = static_cast<int>(rng() % 3); m < ms; ++m) {
        pb::HttpRouteMatch* match = rule->add_matches();
        switch (rng() % 4) {
          case 0:
            match->set_path_type(pb::HttpRouteMatch::EXACT);
            match->set_path(PickOne(rng, exacts));
            break;
          case 1:
            match->set_path_type(pb::HttpRouteMatch::REGULAR_EXPRESSION);
            match->set_path(rng() % 2 ? "/a/.*" : "/[ab]");
            break;
          default:
            match->set_path_type(pb::HttpRouteMatch::PATH_PREFIX);
            match->set_path(PickOne(rng, prefixes));
        }
        if (rng() % 3 == 0) match->set_method("GET");
        for (int h = 0, hs = static_cast<int>(rng() % 3); h < hs; ++h) {
          pb::HttpHeaderMatch* hm = match->add_headers();
          hm->set_name(h == 0 ? "x-t" : "x-u");
          hm->set_value(rng() % 2 ? "1" : "2");
          if (rng() % 5 == 0) hm->set_type(pb::HttpHeaderMatch::REGULAR_EXPRESSION);
        }
        if (rng() % 4 == 0) {
          pb::HttpHeaderMatch* qm = match->add_query_params();
          qm->set_name("q");
          qm->set_value("1");
        }
      }
    }
  }
  return s;
}

TEST(RouterTest, AgreesWithAReferenceSelectorOnRandomRouteSets) {
  std::mt19937 rng(20261206);
  const std::vector<std::string> paths = {"/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/b", "/b/c"};
  const std::vector<std::string> hosts = {"foo.com", "x.foo.com", "bar.com", "baz.com", "svc"};
  int compared = 0, matched = 0;
  for (int round = 0; round < 300; ++round) {
    auto snap = ConfigSnapshot::FromProto(RandomRoutes(rng));
    ASSERT_TRUE(snap.ok()) << snap.status();
    auto router = Router::Build(*snap);
    for (int i = 0; i < 40; ++i) {
      RefRequest q;
      q.client_ns = rng() % 3 == 0 ? "web" : "shop";
      q.method = rng() % 2 ? "GET" : "POST";
      q.path = PickOne(rng, paths);
      q.query = rng() % 3 == 0 ? "q=1" : "";
      q.host = PickOne(rng, hosts);
      q.port = rng() % 3 == 0 ? 8080 : 80;
      if (rng() % 2) q.headers.emplace_back("x-t", rng() % 2 ? "1" : "2");
      if (rng() % 2) q.headers.emplace_back("x-u", rng() % 2 ? "1" : "2");
      std::string want = RefSelect(**snap, "shop/svc", q);
      ASSERT_EQ(RouterSelect(*router, "shop/svc", q), want)
          << "round " << round << " " << q.method << " " << q.path << "?" << q.query << " host "
          << q.host << " port " << q.port << " ns " << q.client_ns << "\n"
          << (*snap)->ToJson();
      ++compared;
      matched += want != "NR" && want != "SERVICE";
    }
  }
  EXPECT_GT(matched, compared / 4);  // the comparison is not all misses
}

}  // namespace
}  // namespace weft::ztunnel::traffic
