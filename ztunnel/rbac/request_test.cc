// Per-request (L7) authorization: Istio's semantics for every L7 match type and not-form, its
// decision order, and its default (BASE) path normalisation. Where an expectation is not obvious
// the comment names the Istio document or source it comes from.
#include "ztunnel/rbac/request.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "ztunnel/state/config_file.h"

namespace weft::ztunnel {
namespace {

// prod/db-0 (app=db, 10.0.0.10), prod/web-0 (app=web, 10.0.0.11), other/db-0 (app=db).
constexpr std::string_view kWorkloads = R"(
trustDomain: cluster.local
rootNamespace: weft-system
workloads:
- {uid: prod/db-0, name: db-0, namespace: prod, serviceAccount: db, addresses: [10.0.0.10],
   labels: {app: db}, protocol: HBONE}
- {uid: prod/web-0, name: web-0, namespace: prod, serviceAccount: web, addresses: [10.0.0.11],
   labels: {app: web}, protocol: HBONE}
- {uid: other/db-0, name: db-0, namespace: other, serviceAccount: db, addresses: [10.0.1.10],
   labels: {app: db}, protocol: HBONE}
)";

SnapshotPtr Build(std::string_view policies_yaml, std::string_view network_policies = "") {
  std::string text(kWorkloads);
  if (!network_policies.empty()) text += "networkPolicies:\n" + std::string(network_policies);
  if (!policies_yaml.empty()) text += "authorizationPolicies:\n" + std::string(policies_yaml);
  auto pb = ParseConfigText(text);
  EXPECT_TRUE(pb.ok()) << pb.status() << "\n" << text;
  if (!pb.ok()) return nullptr;
  auto snap = ConfigSnapshot::FromProto(*pb);
  EXPECT_TRUE(snap.ok()) << snap.status() << "\n" << text;
  return snap.ok() ? *snap : nullptr;
}

ConnectionInfo Conn(const std::string& ns_sa, const std::string& src, const std::string& dst) {
  ConnectionInfo c;
  auto slash = ns_sa.find('/');
  c.src_identity = SpiffeId{"cluster.local", ns_sa.substr(0, slash), ns_sa.substr(slash + 1)};
  c.src_ip = *IpAddr::Parse(src);
  c.dst = *SockAddr::Parse(dst);
  return c;
}

// prod/frontend from 10.0.0.20 to prod/db-0 port 8080.
ConnectionInfo Frontend() {
  return Conn("prod/frontend", "10.0.0.20", "10.0.0.10:8080");
}
ConnectionInfo Batch() {
  return Conn("batch/job", "10.0.2.30", "10.0.0.10:8080");
}

using Headers = std::vector<std::pair<std::string, std::string>>;

HttpRequestAttributes Req(std::string method, std::string path, std::string authority = "db",
                          Headers headers = {}) {
  return HttpRequestAttributes{std::move(method), std::move(authority), std::move(path),
                               std::move(headers)};
}
HttpRequestAttributes Get(std::string path) {
  return Req("GET", std::move(path));
}
HttpRequestAttributes Host(std::string authority) {
  return Req("GET", "/", std::move(authority));
}
HttpRequestAttributes WithHeaders(Headers headers) {
  return Req("GET", "/", "db", std::move(headers));
}

// One policy on prod/db-0 with a single rule; `rule` is a YAML flow mapping.
std::string OneRule(std::string_view action, std::string_view rule) {
  return "- {name: p, namespace: prod, action: " + std::string(action) +
         ", selector: {matchLabels: {app: db}}, rules: [" + std::string(rule) + "]}\n";
}

// ---- match table: every L7 match type and not-form

struct L7Case {
  std::string name;
  std::string rule;
  HttpRequestAttributes req;
  bool allow_matches;  // as the rule of an ALLOW policy
  bool deny_matches;  // as the rule of a DENY policy (differs only where fail-closed narrows ALLOW)
  ConnectionInfo conn = Frontend();
};

void PrintTo(const L7Case& c, std::ostream* os) {
  *os << c.name;
}

class L7MatchTest : public testing::TestWithParam<L7Case> {};

TEST_P(L7MatchTest, AllowPolicy) {
  const L7Case& c = GetParam();
  auto snap = Build(OneRule("ALLOW", c.rule));
  ASSERT_NE(snap, nullptr);
  AuthzDecision d = AuthorizeRequest(*snap, *snap->FindWorkloadByUid("prod/db-0"), c.conn, c.req);
  EXPECT_EQ(d.allowed, c.allow_matches) << d.reason;
  if (c.allow_matches) {
    EXPECT_EQ(d.reason, "allowed by ALLOW policy prod/p");
  } else {
    // Plus "; 1 rule uses requestPrincipals ..." where that is why.
    EXPECT_TRUE(d.reason.starts_with("no ALLOW policy matched (1 ALLOW policy applies"))
        << d.reason;
  }
  EXPECT_FALSE(d.bad_request);
}

TEST_P(L7MatchTest, DenyPolicy) {
  const L7Case& c = GetParam();
  auto snap = Build(OneRule("DENY", c.rule));
  ASSERT_NE(snap, nullptr);
  AuthzDecision d = AuthorizeRequest(*snap, *snap->FindWorkloadByUid("prod/db-0"), c.conn, c.req);
  EXPECT_EQ(d.allowed, !c.deny_matches) << d.reason;
  EXPECT_EQ(d.reason,
            c.deny_matches ? "denied by DENY policy prod/p" : "allowed: no ALLOW policy applies");
}

// Istio's Rule doc: "Any string field in the rule supports Exact, Prefix, Suffix and Presence
// match: "abc" matches "abc"; "abc*" matches "abc" and "abcd"; "*abc" matches "abc" and "xabc";
// "*" matches when the value is not empty" (istio/api security/v1beta1/authorization.proto).
const L7Case kMatchCases[] = {
    // methods: Envoy header matcher on :method, case-sensitive.
    {"MethodExact", "{to: [{operation: {methods: [GET]}}]}", Get("/"), true, true},
    {"MethodExactMiss", "{to: [{operation: {methods: [GET]}}]}", Req("POST", "/"), false, false},
    {"MethodIsCaseSensitive", "{to: [{operation: {methods: [GET]}}]}", Req("get", "/"), false,
     false},
    {"MethodPrefix", "{to: [{operation: {methods: ['P*']}}]}", Req("PUT", "/"), true, true},
    {"MethodPrefixMiss", "{to: [{operation: {methods: ['P*']}}]}", Get("/"), false, false},
    {"MethodSuffix", "{to: [{operation: {methods: ['*ETE']}}]}", Req("DELETE", "/"), true, true},
    {"MethodPresence", "{to: [{operation: {methods: ['*']}}]}", Req("OPTIONS", "/"), true, true},
    {"NotMethodsExcludes", "{to: [{operation: {notMethods: [GET]}}]}", Get("/"), false, false},
    {"NotMethodsPasses", "{to: [{operation: {notMethods: [GET]}}]}", Req("POST", "/"), true, true},
    {"MethodsAndNotMethods", "{to: [{operation: {methods: ['P*'], notMethods: [PATCH]}}]}",
     Req("PATCH", "/"), false, false},
    // paths: the normalised path without query or fragment (Envoy RBAC url_path).
    {"PathExact", "{to: [{operation: {paths: [/a]}}]}", Get("/a"), true, true},
    {"PathExactTrailingSlashDiffers", "{to: [{operation: {paths: [/a]}}]}", Get("/a/"), false,
     false},
    {"PathIsCaseSensitive", "{to: [{operation: {paths: [/a]}}]}", Get("/A"), false, false},
    {"PathQueryIgnored", "{to: [{operation: {paths: [/a]}}]}", Get("/a?x=/b"), true, true},
    {"PathFragmentIgnored", "{to: [{operation: {paths: [/a]}}]}", Get("/a#top"), true, true},
    {"PathPrefix", "{to: [{operation: {paths: ['/a/*']}}]}", Get("/a/b/c"), true, true},
    {"PathPrefixNeedsTheSlash", "{to: [{operation: {paths: ['/a/*']}}]}", Get("/a"), false, false},
    {"PathPrefixNotASegment", "{to: [{operation: {paths: ['/a*']}}]}", Get("/ab"), true, true},
    {"PathSuffix", "{to: [{operation: {paths: ['*.js']}}]}", Get("/x/y.js?v=2"), true, true},
    {"PathSuffixMiss", "{to: [{operation: {paths: ['*.js']}}]}", Get("/x/y.jsx"), false, false},
    {"PathPresence", "{to: [{operation: {paths: ['*']}}]}", Get("/"), true, true},
    {"NotPathsExcludes", "{to: [{operation: {notPaths: ['/admin*']}}]}", Get("/admin/x"), false,
     false},
    {"NotPathsPasses", "{to: [{operation: {notPaths: ['/admin*']}}]}", Get("/public"), true, true},
    // Normalisation (BASE) before matching: dot segments, encoded dots, backslashes, the root.
    {"DotSegments", "{to: [{operation: {paths: ['/admin/*']}}]}", Get("/public/../admin/users"),
     true, true},
    {"EncodedDotSegments", "{to: [{operation: {paths: ['/admin/*']}}]}",
     Get("/public/%2e%2E/admin/users"), true, true},
    {"BackslashIsASlash", "{to: [{operation: {paths: ['/admin/*']}}]}",
     Get("/public\\..\\admin\\users"), true, true},
    {"DotDotAboveRootStaysAtRoot", "{to: [{operation: {paths: ['/admin/*']}}]}",
     Get("/../../admin/users"), true, true},
    {"UnreservedEscapesDecoded", "{to: [{operation: {paths: ['/admin/*']}}]}",
     Get("/%61dmin/users"), true, true},
    {"NotPathsSeesNormalisedPath", "{to: [{operation: {notPaths: ['/admin/*']}}]}",
     Get("/public/./../admin/users"), false, false},
    // BASE keeps repeated slashes and encoded slashes (istio.io security best practices: "/a//b"
    // is merged only by MERGE_SLASHES, "%2F" decoded only by DECODE_AND_MERGE_SLASHES).
    {"DoubleSlashNotMerged", "{to: [{operation: {paths: ['/admin/*']}}]}", Get("//admin/users"),
     false, false},
    {"EncodedSlashNotDecoded", "{to: [{operation: {paths: [/admin/users]}}]}",
     Get("/admin%2Fusers"), false, false},
    {"AbsoluteFormPath", "{to: [{operation: {paths: [/a/b]}}]}", Get("http://db/a/./b?q=1"), true,
     true},
    // A CONNECT has no path: paths never match it, notPaths always pass (Envoy's url_path
    // matcher does not match a request without :path; Istio builds notPaths as its negation).
    {"ConnectHasNoPathForPaths", "{to: [{operation: {paths: ['*']}}]}", Req("CONNECT", "db:443"),
     false, false},
    {"ConnectPassesNotPaths", "{to: [{operation: {notPaths: ['/public']}}]}",
     Req("CONNECT", "db:443"), true, true},
    // hosts: case-insensitive (Istio HostMatcher sets ignore_case, CVE-2021-39155); matched
    // against the authority as received and without its port, so "db" behaves like Istio's
    // recommended ["db", "db:*"].
    {"HostExact", "{to: [{operation: {hosts: [db.prod]}}]}", Host("db.prod"), true, true},
    {"HostCaseInsensitive", "{to: [{operation: {hosts: [db.prod]}}]}", Host("DB.Prod"), true, true},
    {"HostWithPort", "{to: [{operation: {hosts: [db.prod]}}]}", Host("db.prod:8080"), true, true},
    {"HostMiss", "{to: [{operation: {hosts: [db.prod]}}]}", Host("db.prod.evil"), false, false},
    {"HostPatternWithPort", "{to: [{operation: {hosts: ['db.prod:8080']}}]}", Host("db.prod:8080"),
     true, true},
    {"HostPatternWithOtherPort", "{to: [{operation: {hosts: ['db.prod:8080']}}]}",
     Host("db.prod:9090"), false, false},
    {"HostPortWildcard", "{to: [{operation: {hosts: ['db.prod:*']}}]}", Host("DB.prod:1"), true,
     true},
    {"HostSuffixWithPort", "{to: [{operation: {hosts: ['*.prod']}}]}", Host("db.PROD:80"), true,
     true},
    {"HostSuffixMiss", "{to: [{operation: {hosts: ['*.prod']}}]}", Host("db.production"), false,
     false},
    {"HostPrefix", "{to: [{operation: {hosts: ['db.*']}}]}", Host("DB.other"), true, true},
    {"HostIpv6WithPort", "{to: [{operation: {hosts: ['[fd00::1]']}}]}", Host("[fd00::1]:80"), true,
     true},
    {"HostPresence", "{to: [{operation: {hosts: ['*']}}]}", Host("x"), true, true},
    {"HostAbsentNeverMatches", "{to: [{operation: {hosts: ['*']}}]}", Host(""), false, false},
    {"NotHostsExcludesWithPort", "{to: [{operation: {notHosts: [db.prod]}}]}", Host("db.prod:80"),
     false, false},
    {"NotHostsPasses", "{to: [{operation: {notHosts: [db.prod]}}]}", Host("web.prod"), true, true},
    {"NotHostsAbsentPasses", "{to: [{operation: {notHosts: [db.prod]}}]}", Host(""), true, true},
    // RFC 9112 3.2.2: the authority of an absolute-form target replaces Host.
    {"AbsoluteFormAuthorityWins", "{to: [{operation: {hosts: [db.prod]}}]}",
     Req("GET", "http://db.prod/x", "evil"), true, true},
    {"AbsoluteFormAuthorityWinsMiss", "{to: [{operation: {hosts: [evil]}}]}",
     Req("GET", "http://db.prod/x", "evil"), false, false},
    // ports: the connection's destination port, as at L4.
    {"Ports", "{to: [{operation: {ports: ['8080'], methods: [GET]}}]}", Get("/"), true, true},
    {"PortsMiss", "{to: [{operation: {ports: ['9090'], methods: [GET]}}]}", Get("/"), false, false},
    {"NotPorts", "{to: [{operation: {notPorts: ['8080'], methods: [GET]}}]}", Get("/"), false,
     false},
    // Operations OR; fields of one operation AND.
    {"OperationsOr",
     "{to: [{operation: {methods: [POST], paths: [/a]}}, {operation: {methods: [GET]}}]}",
     Get("/b"), true, true},
    {"FieldsAnd", "{to: [{operation: {methods: [GET], paths: [/a]}}]}", Get("/b"), false, false},
    // from/to/when AND.
    {"FromAndTo", "{from: [{source: {namespaces: [prod]}}], to: [{operation: {methods: [GET]}}]}",
     Get("/"), true, true},
    {"FromAndToOtherSource",
     "{from: [{source: {namespaces: [prod]}}], to: [{operation: {methods: [GET]}}]}", Get("/"),
     false, false, Batch()},
    // when request.headers[NAME]: name case-insensitive, values as Istio header matchers
    // (case-sensitive; "*" is a presence match: an empty value is present).
    {"HeaderExact", "{when: [{key: 'request.headers[x-user]', values: [alice]}]}",
     WithHeaders({{"x-user", "alice"}}), true, true},
    {"HeaderExactMiss", "{when: [{key: 'request.headers[x-user]', values: [alice]}]}",
     WithHeaders({{"x-user", "bob"}}), false, false},
    {"HeaderValueCaseSensitive", "{when: [{key: 'request.headers[x-user]', values: [alice]}]}",
     WithHeaders({{"x-user", "Alice"}}), false, false},
    {"HeaderNameCaseInsensitive", "{when: [{key: 'request.headers[X-User]', values: [alice]}]}",
     WithHeaders({{"x-user", "alice"}}), true, true},
    {"HeaderPrefix", "{when: [{key: 'request.headers[user-agent]', values: ['curl/*']}]}",
     WithHeaders({{"user-agent", "curl/8.1"}}), true, true},
    {"HeaderSuffix", "{when: [{key: 'request.headers[x-user]', values: ['*@example.com']}]}",
     WithHeaders({{"x-user", "a@example.com"}}), true, true},
    {"HeaderPresenceEmptyValue", "{when: [{key: 'request.headers[x-flag]', values: ['*']}]}",
     WithHeaders({{"x-flag", ""}}), true, true},
    {"HeaderAbsentNeverMatchesValues", "{when: [{key: 'request.headers[x-flag]', values: ['*']}]}",
     WithHeaders({}), false, false},
    {"HeaderNotValuesExcludes", "{when: [{key: 'request.headers[x-user]', notValues: [alice]}]}",
     WithHeaders({{"x-user", "alice"}}), false, false},
    {"HeaderNotValuesPasses", "{when: [{key: 'request.headers[x-user]', notValues: [alice]}]}",
     WithHeaders({{"x-user", "bob"}}), true, true},
    {"HeaderAbsentPassesNotValues",
     "{when: [{key: 'request.headers[x-user]', notValues: [alice]}]}", WithHeaders({}), true, true},
    {"HeaderValuesAndNotValues",
     "{when: [{key: 'request.headers[x-user]', values: ['a*'], notValues: [admin]}]}",
     WithHeaders({{"x-user", "admin"}}), false, false},
    {"HostHeaderIsTheAuthority", "{when: [{key: 'request.headers[host]', values: ['db.prod*']}]}",
     Host("db.prod:80"), true, true},
    {"MethodPseudoHeader", "{when: [{key: 'request.headers[:method]', values: [GET]}]}", Get("/"),
     true, true},
    // A repeated header: Envoy matches the values joined by ',' (HeaderUtility::
    // getAllOfHeaderAsString); an application may read any one of them. ALLOW needs every
    // reading to hold, DENY any, so Weft never allows what Istio denies.
    {"RepeatedHeaderAllowNeedsEveryValue",
     "{when: [{key: 'request.headers[x-user]', values: [alice]}]}",
     WithHeaders({{"x-user", "alice"}, {"x-user", "mallory"}}), false, true},
    {"RepeatedHeaderDenyOnAnyValue",
     "{when: [{key: 'request.headers[x-user]', values: [mallory]}]}",
     WithHeaders({{"x-user", "alice"}, {"x-user", "mallory"}}), false, true},
    {"RepeatedHeaderJoinedReading",
     "{when: [{key: 'request.headers[x-user]', values: ['alice,mallory']}]}",
     WithHeaders({{"x-user", "alice"}, {"x-user", "mallory"}}), false, true},
    {"RepeatedHeaderNotValues", "{when: [{key: 'request.headers[x-user]', notValues: [mallory]}]}",
     WithHeaders({{"x-user", "alice"}, {"x-user", "mallory"}}), false, true},
    {"RepeatedHeaderEveryValueMatches",
     "{when: [{key: 'request.headers[x-user]', values: ['a*']}]}",
     WithHeaders({{"x-user", "alice"}, {"x-other", "x"}, {"X-User", "adam"}}), true, true},
    // Still not evaluable per request: ALLOW rules using them never match; DENY rules match on
    // their other attributes (docs/security.md, "A policy weftd cannot read in full fails
    // closed").
    {"RequestPrincipals",
     "{from: [{source: {requestPrincipals: ['*']}}], to: [{operation: "
     "{methods: [GET]}}]}",
     Get("/"), false, true},
    {"RequestAuthClaims",
     "{to: [{operation: {paths: [/a]}}], when: [{key: 'request.auth.claims[iss]', values: [x]}]}",
     Get("/a"), false, true},
    {"RequestAuthClaimsOtherPath",
     "{to: [{operation: {paths: [/a]}}], when: [{key: 'request.auth.claims[iss]', values: [x]}]}",
     Get("/b"), false, false},
};

INSTANTIATE_TEST_SUITE_P(Matching, L7MatchTest, testing::ValuesIn(kMatchCases),
                         [](const testing::TestParamInfo<L7Case>& i) { return i.param.name; });

// ---- whole decisions: Istio's order, AUDIT, dry-run, the reasons

struct DecisionCase {
  std::string name;
  std::string policies;
  HttpRequestAttributes req;
  bool allowed;
  std::string policy;
  std::string reason;
  std::vector<std::string> audited = {};
  std::vector<std::string> dry_run = {};
};

void PrintTo(const DecisionCase& c, std::ostream* os) {
  *os << c.name;
}

class L7DecisionTest : public testing::TestWithParam<DecisionCase> {};

TEST_P(L7DecisionTest, Decides) {
  const DecisionCase& c = GetParam();
  auto snap = Build(c.policies);
  ASSERT_NE(snap, nullptr);
  AuthzDecision d =
      AuthorizeRequest(*snap, *snap->FindWorkloadByUid("prod/db-0"), Frontend(), c.req);
  EXPECT_EQ(d.allowed, c.allowed);
  EXPECT_EQ(d.policy, c.policy);
  EXPECT_EQ(d.reason, c.reason);
  EXPECT_EQ(d.audited, c.audited);
  EXPECT_EQ(d.dry_run, c.dry_run);
  EXPECT_FALSE(d.bad_request);
}

constexpr std::string_view kAllowGetDenyAdmin = R"(
- {name: allow-get, namespace: prod, rules: [{to: [{operation: {methods: [GET]}}]}]}
- {name: deny-admin, namespace: prod, action: DENY, rules: [{to: [{operation: {paths: ['/admin/*']}}]}]}
)";

const DecisionCase kDecisionCases[] = {
    // "If there are any DENY policies that match the request, deny the request. If there are no
    // ALLOW policies for the workload, allow the request. If any of the ALLOW policies match the
    // request, allow the request. Deny the request." (Istio AuthorizationPolicy reference)
    {"DenyBeforeAllow", std::string(kAllowGetDenyAdmin), Get("/admin/users"), false,
     "prod/deny-admin", "denied by DENY policy prod/deny-admin"},
    {"DenyAfterNormalisation", std::string(kAllowGetDenyAdmin), Get("/x/../admin/users"), false,
     "prod/deny-admin", "denied by DENY policy prod/deny-admin"},
    {"AllowWhenNoDenyMatches", std::string(kAllowGetDenyAdmin), Get("/public"), true,
     "prod/allow-get", "allowed by ALLOW policy prod/allow-get"},
    {"NoAllowMatches", std::string(kAllowGetDenyAdmin), Req("POST", "/public"), false, "",
     "no ALLOW policy matched (1 ALLOW policy applies)"},
    {"OnlyDenyPoliciesAllowTheRest",
     "- {name: d, namespace: prod, action: DENY, rules: [{to: [{operation: {methods: "
     "[DELETE]}}]}]}\n",
     Get("/"), true, "", "allowed: no ALLOW policy applies"},
    {"SecondAllowMatches", R"(
- {name: a1, namespace: prod, rules: [{to: [{operation: {paths: [/a]}}]}]}
- {name: a2, namespace: weft-system, rules: [{to: [{operation: {paths: [/b]}}]}]}
)",
     Get("/b"), true, "weft-system/a2", "allowed by ALLOW policy weft-system/a2"},
    {"UnevaluableAllowRuleReason",
     "- {name: jwt, namespace: prod, rules: [{from: [{source: {requestPrincipals: ['*']}}]}]}\n",
     Get("/"), false, "",
     "no ALLOW policy matched (1 ALLOW policy applies; 1 rule uses requestPrincipals or "
     "request.auth.* and cannot match)"},
    {"AuditOnlyReports",
     R"(
- {name: audit-posts, namespace: prod, action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}]}
- {name: audit-gets, namespace: prod, action: AUDIT, rules: [{to: [{operation: {methods: [GET]}}]}]}
)",
     Get("/"),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {"prod/audit-gets"}},
    {"DryRunDenyOnL7",
     R"(
- {name: shadow-deny, namespace: prod, action: DENY, dryRun: true, rules: [{to: [{operation: {paths: ['/admin/*']}}]}]}
)",
     Get("/admin/x"),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {},
     {"prod/shadow-deny: would deny"}},
    {"DryRunDenyNoMatchSilent", R"(
- {name: shadow-deny, namespace: prod, action: DENY, dryRun: true, rules: [{to: [{operation: {paths: ['/admin/*']}}]}]}
)",
     Get("/public"), true, "", "allowed: no ALLOW policy applies"},
    {"DryRunAllowOnL7",
     R"(
- {name: shadow-allow, namespace: prod, dryRun: true, rules: [{to: [{operation: {methods: [GET]}}]}]}
)",
     Req("POST", "/"),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {},
     {"prod/shadow-allow: would not allow (no rule matched)"}},
};

INSTANTIATE_TEST_SUITE_P(Policies, L7DecisionTest, testing::ValuesIn(kDecisionCases),
                         [](const testing::TestParamInfo<DecisionCase>& i) {
                           return i.param.name;
                         });

TEST(AuthorizeRequestTest, L7PartsDecidePerRequestNotPerConnection) {
  // At L4 a DENY with methods must deny the whole connection (fail closed); per request it
  // denies only the requests it names.
  auto snap = Build(OneRule("DENY", "{to: [{operation: {methods: [POST]}}]}"));
  ASSERT_NE(snap, nullptr);
  const Workload& db = *snap->FindWorkloadByUid("prod/db-0");
  EXPECT_FALSE(Authorize(*snap, db, Frontend()).allowed);
  EXPECT_TRUE(AuthorizeRequest(*snap, db, Frontend(), Get("/")).allowed);
  EXPECT_FALSE(AuthorizeRequest(*snap, db, Frontend(), Req("POST", "/")).allowed);
}

TEST(AuthorizeRequestTest, NetworkPolicyFirst) {
  auto snap = Build("- {name: allow-all, namespace: prod, rules: [{}]}\n", R"(- name: db-ingress
  namespace: prod
  workloadUids: [prod/db-0]
  ingress: [{from: [{cidr: 10.0.0.20/32}], ports: [{port: 8080}]}]
)");
  ASSERT_NE(snap, nullptr);
  const Workload& db = *snap->FindWorkloadByUid("prod/db-0");
  EXPECT_TRUE(AuthorizeRequest(*snap, db, Frontend(), Get("/")).allowed);
  AuthzDecision d = AuthorizeRequest(*snap, db, Batch(), Get("/"));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.policy, "prod/db-ingress");
  EXPECT_EQ(d.reason,
            "denied by NetworkPolicy: no ingress rule of 1 policy (prod/db-ingress) admits "
            "10.0.2.30 to port 8080");
  // Also ahead of the request-target check.
  EXPECT_FALSE(AuthorizeRequest(*snap, db, Batch(), Req("OPTIONS", "*")).bad_request);
}

TEST(AuthorizeRequestTest, TargetsIstioNeverAuthorizesAreRefused) {
  // Envoy answers these itself before RBAC (400 for a NUL in the path, 404 for a :path that
  // does not start with '/'), so no policy, not even allow-all, lets them through.
  auto snap = Build("- {name: allow-all, namespace: prod, rules: [{}]}\n");
  ASSERT_NE(snap, nullptr);
  const Workload& db = *snap->FindWorkloadByUid("prod/db-0");
  struct Bad {
    HttpRequestAttributes req;
    std::string reason;
  };
  const Bad kBad[] = {
      {Req("OPTIONS", "*"), "invalid request: the request-target \"*\" is not a path"},
      {Get("/admin%00"),
       "invalid request: the path contains a NUL byte, which path normalisation rejects"},
      {Get(std::string("/a\0b", 4)),
       "invalid request: the path contains a NUL byte, which path normalisation rejects"},
      {Get("admin"),
       "invalid request: the request-target is neither origin-form nor an http(s) URL"},
      {Get("ftp://db/a"),
       "invalid request: the request-target is neither origin-form nor an http(s) URL"},
      {Get("http://user@db/a"),
       "invalid request: the absolute-form request-target has no authority or carries "
       "userinfo"},
      {Get(""), "invalid request: the request-target is neither origin-form nor an http(s) URL"},
  };
  for (const Bad& b : kBad) {
    AuthzDecision d = AuthorizeRequest(*snap, db, Frontend(), b.req);
    EXPECT_FALSE(d.allowed) << b.req.path;
    EXPECT_TRUE(d.bad_request) << b.req.path;
    EXPECT_EQ(d.policy, "");
    EXPECT_EQ(d.reason, b.reason);
  }
}

TEST(AuthorizeRequestTest, HandsOutTheTargetItNormalisedForTheDecision) {
  auto snap = Build(
      "- {name: deny-c, namespace: prod, action: DENY, rules: "
      "[{to: [{operation: {paths: [/a/c]}}]}]}\n");
  ASSERT_NE(snap, nullptr);
  const Workload& db = *snap->FindWorkloadByUid("prod/db-0");
  RequestTarget t;
  AuthzDecision d = AuthorizeRequest(*snap, db, Frontend(), Get("/a/./b/../%63?x=../y"), &t);
  EXPECT_FALSE(d.allowed) << "matched on the normalised path";
  EXPECT_EQ(t.kind, RequestTarget::Kind::kPath);
  EXPECT_EQ(t.path, "/a/c");
  EXPECT_EQ(t.query, "?x=../y");
  d = AuthorizeRequest(*snap, db, Frontend(), Get("http://db:8080/a/../b"), &t);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(t.path, "/b");
  EXPECT_EQ(t.authority, "db:8080");
  d = AuthorizeRequest(*snap, db, Frontend(), Req("OPTIONS", "*"), &t);
  EXPECT_TRUE(d.bad_request);
  EXPECT_EQ(t.kind, RequestTarget::Kind::kInvalid);
}

TEST(AuthorizeRequestTest, PolicyChangesApplyToTheNextRequest) {
  // The caller passes the snapshot current for each request; nothing is cached per connection.
  auto before = Build("");
  auto after = Build(OneRule("DENY", "{to: [{operation: {paths: [/a]}}]}"));
  ASSERT_NE(before, nullptr);
  ASSERT_NE(after, nullptr);
  EXPECT_TRUE(
      AuthorizeRequest(*before, *before->FindWorkloadByUid("prod/db-0"), Frontend(), Get("/a"))
          .allowed);
  EXPECT_FALSE(
      AuthorizeRequest(*after, *after->FindWorkloadByUid("prod/db-0"), Frontend(), Get("/a"))
          .allowed);
}

// ---- NeedsHttpAuthorization

struct NeedsCase {
  std::string name;
  std::string policies;
  std::string dst_uid;
  bool needs;
};

void PrintTo(const NeedsCase& c, std::ostream* os) {
  *os << c.name;
}

class NeedsHttpTest : public testing::TestWithParam<NeedsCase> {};

TEST_P(NeedsHttpTest, Decides) {
  const NeedsCase& c = GetParam();
  auto snap = Build(c.policies);
  ASSERT_NE(snap, nullptr);
  EXPECT_EQ(NeedsHttpAuthorization(*snap, *snap->FindWorkloadByUid(c.dst_uid)), c.needs);
}

const NeedsCase kNeedsCases[] = {
    {"NoPolicies", "", "prod/db-0", false},
    {"L4Only",
     "- {name: a, namespace: prod, rules: [{from: [{source: {namespaces: [prod]}}], to: "
     "[{operation: {ports: ['80']}}], when: [{key: source.ip, values: [10.0.0.0/8]}]}]}\n",
     "prod/db-0", false},
    {"AllowMethods", OneRule("ALLOW", "{to: [{operation: {methods: [GET]}}]}"), "prod/db-0", true},
    {"DenyNotPaths", OneRule("DENY", "{to: [{operation: {notPaths: [/x]}}]}"), "prod/db-0", true},
    {"Hosts", OneRule("ALLOW", "{to: [{operation: {hosts: [db]}}]}"), "prod/db-0", true},
    {"HeaderCondition", OneRule("ALLOW", "{when: [{key: 'request.headers[x]', values: [y]}]}"),
     "prod/db-0", true},
    {"OtherWorkload", OneRule("ALLOW", "{to: [{operation: {methods: [GET]}}]}"), "prod/web-0",
     false},
    {"DryRun",
     "- {name: d, namespace: prod, action: DENY, dryRun: true, rules: [{to: [{operation: "
     "{paths: [/x]}}]}]}\n",
     "prod/db-0", true},
    {"Audit",
     "- {name: au, namespace: weft-system, action: AUDIT, rules: [{to: [{operation: {methods: "
     "[POST]}}]}]}\n",
     "other/db-0", true},
    {"RequestAuthOnly", OneRule("DENY", "{when: [{key: 'request.auth.claims[iss]', values: [x]}]}"),
     "prod/db-0", false},
    {"RequestPrincipalsOnly", OneRule("DENY", "{from: [{source: {requestPrincipals: ['*']}}]}"),
     "prod/db-0", false},
    // An ALLOW rule with request principals never matches, so its methods do not matter; the
    // same rule in a DENY matches on its methods.
    {"AllowRuleThatNeverMatches",
     OneRule("ALLOW",
             "{from: [{source: {requestPrincipals: ['*']}}], to: [{operation: {methods: [GET]}}]}"),
     "prod/db-0", false},
    {"DenyRuleWithRequestPrincipalsAndMethods",
     OneRule("DENY",
             "{from: [{source: {requestPrincipals: ['*']}}], to: [{operation: {methods: [GET]}}]}"),
     "prod/db-0", true},
};

INSTANTIATE_TEST_SUITE_P(Policies, NeedsHttpTest, testing::ValuesIn(kNeedsCases),
                         [](const testing::TestParamInfo<NeedsCase>& i) { return i.param.name; });

// ---- path normalisation

struct NormCase {
  std::string in;
  std::string out;  // normalised path, or "400" when BASE rejects it
};

// Istio's own expectations for meshConfig.pathNormalization BASE, the default (istio/istio
// tests/integration/security/normalization_test.go, "Base"; "/app#foo" through the target).
const NormCase kIstioBaseCases[] = {
    {"/", "/"},
    {"/app/", "/app/"},
    {"/app/../admin", "/admin"},
    {"/app", "/app"},
    {"/app//", "/app//"},
    {"/app/%2f", "/app/%2f"},
    {"/app%2f/", "/app%2f/"},
    {"/xyz%30..//abc", "/xyz0..//abc"},
    {"/app/%2E./admin", "/admin"},
    {"/app\\admin", "/app/admin"},
    {"/app/\\/\\/\\admin", "/app//////admin"},
    {"/%2Fapp%5cadmin%5Cabc", "/%2Fapp%5cadmin%5Cabc"},
    {"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc", "/%5Capp%2f%5c%2F..%2fadmin%5c/abc"},
    {"/app//../admin", "/app/admin"},
    {"/app//../../admin", "/admin"},
    {"/admin%00", "400"},
};

TEST(NormalizePathBaseTest, IstioBaseExpectations) {
  for (const NormCase& c : kIstioBaseCases) {
    std::optional<std::string> got = NormalizePathBase(c.in);
    EXPECT_EQ(got.value_or("400"), c.out) << c.in;
  }
  RequestTarget t = NormalizeRequestTarget("GET", "/app#foo");
  EXPECT_EQ(t.path, "/app");
  EXPECT_EQ(t.query, "");
}

TEST(NormalizePathBaseTest, EveryPercentEscape) {
  // As in Istio's "PercentEncoded" cases, less the slash decoding that only
  // DECODE_AND_MERGE_SLASHES adds: escapes of unreserved characters (ALPHA DIGIT - . _ ~) are
  // decoded, every other escape is kept exactly as sent, and %00 is rejected.
  for (int i = 0; i <= 0xff; ++i) {
    char in[16];
    std::snprintf(in, sizeof(in), "/admin%%%.2x", i);
    const bool unreserved = (i >= '0' && i <= '9') || (i >= 'A' && i <= 'Z') ||
                            (i >= 'a' && i <= 'z') || i == '-' || i == '.' || i == '_' || i == '~';
    std::string want = unreserved ? std::string("/admin") + static_cast<char>(i) : in;
    std::optional<std::string> got = NormalizePathBase(in);
    if (i == 0) {
      EXPECT_FALSE(got.has_value());
    } else {
      EXPECT_EQ(got.value_or("<rejected>"), want) << in;
    }
  }
}

TEST(NormalizePathBaseTest, ChromiumCanonicaliserDetails) {
  // Behaviour of the path canonicaliser Envoy runs for normalize_path (Chromium
  // url_canon_path.cc; Envoy's snapshot is source/common/chromium_url/url_canon_path.cc).
  const NormCase kCases[] = {
      {"", "/"},
      {"a/b", "/a/b"},                       // an initial slash is supplied
      {"/../../etc/passwd", "/etc/passwd"},  // never above the root
      {"/a/b/..", "/a/"},
      {"/a/b/.", "/a/b/"},
      {"/a/./b", "/a/b"},
      {"/a/.b/..c", "/a/.b/..c"},  // dots inside a name are not segments
      {"/a/.../b", "/a/.../b"},
      {"/a/%2e/b", "/a/b"},
      {"/a/.%2E/b", "/b"},
      {"/a%2e%2e/b", "/a../b"},  // not preceded by a slash: plain dots
      {"/a b", "/a%20b"},        // characters not allowed in a path are escaped
      {"/a\"<>`{|}^", "/a%22%3C%3E%60%7B%7C%7D%5E"},
      {"/caf\xc3\xa9", "/caf%C3%A9"},
      {"/a\tb", "/a%09b"},
      {"/!$&'()*+,;=:@[]", "/!$&'()*+,;=:@[]"},
      {"/%7E%5F%2D%41", "/~_-A"},
      {"/%zz/%4", "/%zz/%4"},  // '%' that starts no escape is kept
      {"/%2F%2f", "/%2F%2f"},  // hex case of kept escapes is preserved
      {"/%%300", "/%2500"},    // nested escapes cannot turn into "%00"
      {"/%%30%30", "/%2500"},
  };
  for (const NormCase& c : kCases) {
    EXPECT_EQ(NormalizePathBase(c.in).value_or("400"), c.out) << c.in;
  }
}

TEST(NormalizePathBaseTest, PropertiesOnGeneratedPaths) {
  // Paths built from the characters that matter (slashes, dots, escapes, bytes to escape): the
  // output is a canonical path that a second normalisation leaves alone, so what was
  // authorised is what a normalising application will see.
  const std::vector<std::string> kPieces = {
      "/", "\\", ".", "..", "%2e", "%2E",  "%",    "%2", "%2f", "%5C", "%41", "%3", "0",
      "a", "Z",  "~", " ",  "?",   "\x7f", "\xc3", "%%", "%25", "//",  "#",   "-",  "%7e"};
  std::mt19937 rng(14);  // fixed seed: the same inputs on every run
  for (int n = 0; n < 20000; ++n) {
    std::string in;
    const int len = static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) in += kPieces[rng() % kPieces.size()];
    std::optional<std::string> once = NormalizePathBase(in);
    if (!once.has_value()) {
      ASSERT_NE(in.find("%00"), std::string::npos) << in;  // the only rejection
      continue;
    }
    const std::string& out = *once;
    ASSERT_TRUE(out.starts_with('/')) << in;
    for (unsigned char c : out) {
      ASSERT_TRUE(c > 0x20 && c < 0x7f &&
                  std::string_view("\\\"#<>?^`{|}").find(c) == std::string_view::npos)
          << in << " -> " << out;
    }
    for (std::string_view bad : {"/./", "/../", "%2e", "%2E"}) {
      ASSERT_EQ(out.find(bad), std::string::npos) << in << " -> " << out;
    }
    ASSERT_FALSE(out.ends_with("/.") || out.ends_with("/..")) << in << " -> " << out;
    ASSERT_EQ(NormalizePathBase(out).value_or("<rejected>"), out) << in;
  }
}

TEST(NormalizeRequestTargetTest, Forms) {
  RequestTarget t = NormalizeRequestTarget("GET", "/a/./b/../c?x=../y#frag");
  EXPECT_EQ(t.kind, RequestTarget::Kind::kPath);
  EXPECT_EQ(t.path, "/a/c");
  EXPECT_EQ(t.query, "?x=../y");  // the query is not normalised
  EXPECT_EQ(t.authority, "");

  t = NormalizeRequestTarget("GET", "HTTP://Db.Prod:8080/a/../b?q");
  EXPECT_EQ(t.kind, RequestTarget::Kind::kPath);
  EXPECT_EQ(t.authority, "Db.Prod:8080");
  EXPECT_EQ(t.path, "/b");
  EXPECT_EQ(t.query, "?q");

  t = NormalizeRequestTarget("GET", "https://db");
  EXPECT_EQ(t.kind, RequestTarget::Kind::kPath);
  EXPECT_EQ(t.path, "/");

  t = NormalizeRequestTarget("GET", "http://db?q=1");
  EXPECT_EQ(t.path, "/");
  EXPECT_EQ(t.query, "?q=1");

  EXPECT_EQ(NormalizeRequestTarget("CONNECT", "db:443").kind, RequestTarget::Kind::kNoPath);
  EXPECT_EQ(NormalizeRequestTarget("CONNECT", "").kind, RequestTarget::Kind::kNoPath);
  // Extended CONNECT (RFC 8441) carries a :path.
  t = NormalizeRequestTarget("CONNECT", "/chat/../ws");
  EXPECT_EQ(t.kind, RequestTarget::Kind::kPath);
  EXPECT_EQ(t.path, "/ws");

  EXPECT_EQ(NormalizeRequestTarget("OPTIONS", "*").kind, RequestTarget::Kind::kInvalid);
  EXPECT_EQ(NormalizeRequestTarget("GET", "http:///a").kind, RequestTarget::Kind::kInvalid);
}

TEST(AuthorityHostTest, StripsOnlyAPort) {
  EXPECT_EQ(AuthorityHost("db"), "db");
  EXPECT_EQ(AuthorityHost("db:8080"), "db");
  EXPECT_EQ(AuthorityHost("db:"), "db");
  EXPECT_EQ(AuthorityHost("db:http"), "db:http");
  EXPECT_EQ(AuthorityHost("10.0.0.1:80"), "10.0.0.1");
  EXPECT_EQ(AuthorityHost("[fd00::1]:80"), "[fd00::1]");
  EXPECT_EQ(AuthorityHost("[fd00::1]"), "[fd00::1]");
  EXPECT_EQ(AuthorityHost("fd00::1"), "fd00::1");
  EXPECT_EQ(AuthorityHost(""), "");
}

}  // namespace
}  // namespace weft::ztunnel
