#include "ztunnel/rbac/authorizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ztunnel/state/config_file.h"

namespace weft::ztunnel {
namespace {

// Three workloads: prod/db-0 (app=db), prod/web-0 (app=web) and other/db-0 (app=db).
constexpr std::string_view kWorkloads = R"(
trustDomain: cluster.local
rootNamespace: weft-system
workloads:
- uid: prod/db-0
  name: db-0
  namespace: prod
  serviceAccount: db
  addresses: [10.0.0.10]
  labels: {app: db}
  protocol: HBONE
- uid: prod/web-0
  name: web-0
  namespace: prod
  serviceAccount: web
  addresses: [10.0.0.11]
  labels: {app: web}
  protocol: HBONE
- uid: other/db-0
  name: db-0
  namespace: other
  serviceAccount: db
  addresses: [10.0.1.10]
  labels: {app: db}
  protocol: HBONE
)";

SnapshotPtr MustBuild(std::string_view policies_yaml) {
  std::string text(kWorkloads);
  if (!policies_yaml.empty()) text += "authorizationPolicies:\n" + std::string(policies_yaml);
  auto pb = ParseConfigText(text);
  EXPECT_TRUE(pb.ok()) << pb.status() << "\n" << text;
  if (!pb.ok()) return nullptr;
  auto snap = ConfigSnapshot::FromProto(*pb);
  EXPECT_TRUE(snap.ok()) << snap.status() << "\n" << text;
  return snap.ok() ? *snap : nullptr;
}

ConnectionInfo Conn(std::optional<std::string> principal_ns_sa, const std::string& src,
                    const std::string& dst) {
  ConnectionInfo c;
  if (principal_ns_sa) {
    auto slash = principal_ns_sa->find('/');
    c.src_identity = SpiffeId{"cluster.local", principal_ns_sa->substr(0, slash),
                              principal_ns_sa->substr(slash + 1)};
  }
  c.src_ip = *IpAddr::Parse(src);
  c.dst = *SockAddr::Parse(dst);
  return c;
}

// prod/frontend from 10.0.0.20 to prod/db-0 port 5432.
ConnectionInfo Frontend() {
  return Conn("prod/frontend", "10.0.0.20", "10.0.0.10:5432");
}
// The same, from another namespace's identity and address.
ConnectionInfo Batch() {
  return Conn("batch/job", "10.0.2.30", "10.0.0.10:5432");
}
// Plaintext (no identity) from outside the pod network.
ConnectionInfo Plain() {
  return Conn(std::nullopt, "192.168.1.5", "10.0.0.10:5432");
}

// One ALLOW policy on prod/db-0 with a single rule; `rule` is the YAML body of that rule.
std::string AllowRule(std::string_view rule) {
  return "- name: p\n  namespace: prod\n  selector: {matchLabels: {app: db}}\n  rules:\n  - " +
         std::string(rule) + "\n";
}

struct MatchCase {
  std::string name;
  std::string rule;  // YAML flow mapping for one rule
  ConnectionInfo conn;
  bool matches;
};

void PrintTo(const MatchCase& c, std::ostream* os) {
  *os << c.name;
}

class RuleMatchTest : public testing::TestWithParam<MatchCase> {};

// With a single ALLOW policy the decision is "allowed by" exactly when the rule matches.
TEST_P(RuleMatchTest, AllowPolicyDecision) {
  const MatchCase& c = GetParam();
  auto snap = MustBuild(AllowRule(c.rule));
  ASSERT_NE(snap, nullptr);
  const Workload* db = snap->FindWorkloadByUid("prod/db-0");
  ASSERT_NE(db, nullptr);
  AuthzDecision d = Authorize(*snap, *db, c.conn);
  EXPECT_EQ(d.allowed, c.matches) << d.reason;
  if (c.matches) {
    EXPECT_EQ(d.policy, "prod/p");
    EXPECT_EQ(d.reason, "allowed by ALLOW policy prod/p");
  } else {
    EXPECT_EQ(d.policy, "");
    EXPECT_EQ(d.reason, "no ALLOW policy matched (1 ALLOW policy applies)");
  }
}

// The same rule as DENY: denied exactly when it matches (no L7 attributes in these rules).
TEST_P(RuleMatchTest, DenyPolicyDecision) {
  const MatchCase& c = GetParam();
  std::string yaml = AllowRule(c.rule);
  yaml.insert(yaml.find("  rules:"), "  action: DENY\n");
  auto snap = MustBuild(yaml);
  ASSERT_NE(snap, nullptr);
  AuthzDecision d = Authorize(*snap, *snap->FindWorkloadByUid("prod/db-0"), c.conn);
  EXPECT_EQ(d.allowed, !c.matches) << d.reason;
  EXPECT_EQ(d.reason,
            c.matches ? "denied by DENY policy prod/p" : "allowed: no ALLOW policy applies");
}

const MatchCase kMatchCases[] = {
    // principals
    {"PrincipalExact", "{from: [{source: {principals: [cluster.local/ns/prod/sa/frontend]}}]}",
     Frontend(), true},
    {"PrincipalExactMiss", "{from: [{source: {principals: [cluster.local/ns/prod/sa/other]}}]}",
     Frontend(), false},
    {"PrincipalPrefix", "{from: [{source: {principals: [cluster.local/ns/prod/*]}}]}", Frontend(),
     true},
    {"PrincipalPrefixMiss", "{from: [{source: {principals: [cluster.local/ns/prod/*]}}]}", Batch(),
     false},
    {"PrincipalSuffix", "{from: [{source: {principals: ['*/sa/frontend']}}]}", Frontend(), true},
    {"PrincipalSuffixMiss", "{from: [{source: {principals: ['*/sa/frontend']}}]}", Batch(), false},
    {"PrincipalAnyWithIdentity", "{from: [{source: {principals: ['*']}}]}", Frontend(), true},
    {"PrincipalAnyPlaintext", "{from: [{source: {principals: ['*']}}]}", Plain(), false},
    {"PrincipalSecondValue",
     "{from: [{source: {principals: [a/ns/b/sa/c, cluster.local/ns/batch/sa/job]}}]}", Batch(),
     true},
    {"NotPrincipalListed",
     "{from: [{source: {notPrincipals: [cluster.local/ns/prod/sa/frontend]}}]}", Frontend(), false},
    {"NotPrincipalOther",
     "{from: [{source: {notPrincipals: [cluster.local/ns/prod/sa/frontend]}}]}", Batch(), true},
    {"NotPrincipalPlaintext", "{from: [{source: {notPrincipals: ['*']}}]}", Plain(), true},
    {"NotPrincipalAnyWithIdentity", "{from: [{source: {notPrincipals: ['*']}}]}", Frontend(),
     false},
    // namespaces
    {"Namespace", "{from: [{source: {namespaces: [prod]}}]}", Frontend(), true},
    {"NamespaceMiss", "{from: [{source: {namespaces: [prod]}}]}", Batch(), false},
    {"NamespacePrefix", "{from: [{source: {namespaces: ['ba*']}}]}", Batch(), true},
    {"NamespacePlaintext", "{from: [{source: {namespaces: ['*']}}]}", Plain(), false},
    {"NotNamespace", "{from: [{source: {notNamespaces: [prod]}}]}", Frontend(), false},
    {"NotNamespaceOther", "{from: [{source: {notNamespaces: [prod]}}]}", Batch(), true},
    {"NotNamespacePlaintext", "{from: [{source: {notNamespaces: [prod]}}]}", Plain(), true},
    // ipBlocks / remoteIpBlocks
    {"IpBlockCidr", "{from: [{source: {ipBlocks: [10.0.0.0/24]}}]}", Frontend(), true},
    {"IpBlockCidrMiss", "{from: [{source: {ipBlocks: [10.0.0.0/24]}}]}", Batch(), false},
    {"IpBlockSingleIp", "{from: [{source: {ipBlocks: [192.168.1.5]}}]}", Plain(), true},
    {"IpBlockV6NeverMatchesV4", "{from: [{source: {ipBlocks: ['::/0']}}]}", Frontend(), false},
    {"NotIpBlock", "{from: [{source: {notIpBlocks: [10.0.0.0/24]}}]}", Frontend(), false},
    {"NotIpBlockOther", "{from: [{source: {notIpBlocks: [10.0.0.0/24]}}]}", Batch(), true},
    {"RemoteIpBlock", "{from: [{source: {remoteIpBlocks: [192.168.0.0/16]}}]}", Plain(), true},
    {"RemoteIpBlockMiss", "{from: [{source: {remoteIpBlocks: [192.168.0.0/16]}}]}", Frontend(),
     false},
    {"NotRemoteIpBlock", "{from: [{source: {notRemoteIpBlocks: [192.168.0.0/16]}}]}", Plain(),
     false},
    {"NotRemoteIpBlockOther", "{from: [{source: {notRemoteIpBlocks: [192.168.0.0/16]}}]}",
     Frontend(), true},
    // AND within a source, OR across sources
    {"SourceFieldsAnd", "{from: [{source: {namespaces: [prod], ipBlocks: [10.0.2.0/24]}}]}",
     Frontend(), false},
    {"SourceFieldsAndBoth", "{from: [{source: {namespaces: [prod], ipBlocks: [10.0.0.0/24]}}]}",
     Frontend(), true},
    {"SourceValueAndNotValue", "{from: [{source: {namespaces: ['*'], notNamespaces: [batch]}}]}",
     Batch(), false},
    {"SourcesOr", "{from: [{source: {namespaces: [nope]}}, {source: {namespaces: [batch]}}]}",
     Batch(), true},
    // operation ports
    {"Port", "{to: [{operation: {ports: ['5432']}}]}", Frontend(), true},
    {"PortMiss", "{to: [{operation: {ports: ['80', '443']}}]}", Frontend(), false},
    {"PortUnquoted", "{to: [{operation: {ports: [80, 5432]}}]}", Frontend(), true},
    {"NotPort", "{to: [{operation: {notPorts: ['5432']}}]}", Frontend(), false},
    {"NotPortOther", "{to: [{operation: {notPorts: ['80']}}]}", Frontend(), true},
    {"OperationsOr", "{to: [{operation: {ports: ['80']}}, {operation: {ports: ['5432']}}]}",
     Frontend(), true},
    // from AND to AND when
    {"FromAndToBoth",
     "{from: [{source: {namespaces: [prod]}}], to: [{operation: {ports: ['5432']}}]}", Frontend(),
     true},
    {"FromAndToMiss",
     "{from: [{source: {namespaces: [prod]}}], to: [{operation: {ports: ['80']}}]}", Frontend(),
     false},
    {"FromAndWhenMiss",
     "{from: [{source: {namespaces: [prod]}}], when: [{key: destination.port, values: ['80']}]}",
     Frontend(), false},
    {"EmptyRuleMatchesAll", "{}", Plain(), true},
    // when keys
    {"WhenSourceIp", "{when: [{key: source.ip, values: [10.0.0.0/24]}]}", Frontend(), true},
    {"WhenSourceIpMiss", "{when: [{key: source.ip, values: [10.0.0.0/24]}]}", Batch(), false},
    {"WhenSourceIpNot", "{when: [{key: source.ip, notValues: [10.0.0.20]}]}", Frontend(), false},
    {"WhenSourceIpNotOther", "{when: [{key: source.ip, notValues: [10.0.0.20]}]}", Batch(), true},
    {"WhenRemoteIp", "{when: [{key: remote.ip, values: [192.168.1.0/24]}]}", Plain(), true},
    {"WhenRemoteIpNot", "{when: [{key: remote.ip, notValues: [192.168.1.0/24]}]}", Plain(), false},
    {"WhenSourceNamespace", "{when: [{key: source.namespace, values: [prod]}]}", Frontend(), true},
    {"WhenSourceNamespacePlaintext", "{when: [{key: source.namespace, values: ['*']}]}", Plain(),
     false},
    {"WhenSourceNamespaceNot", "{when: [{key: source.namespace, notValues: [prod]}]}", Frontend(),
     false},
    {"WhenSourceNamespaceNotPlaintext", "{when: [{key: source.namespace, notValues: [prod]}]}",
     Plain(), true},
    {"WhenSourcePrincipal",
     "{when: [{key: source.principal, values: ['cluster.local/ns/batch/*']}]}", Batch(), true},
    {"WhenSourcePrincipalMiss",
     "{when: [{key: source.principal, values: ['cluster.local/ns/batch/*']}]}", Frontend(), false},
    {"WhenSourcePrincipalNot", "{when: [{key: source.principal, notValues: ['*/sa/job']}]}",
     Batch(), false},
    {"WhenSourcePrincipalNotPlaintext", "{when: [{key: source.principal, notValues: ['*']}]}",
     Plain(), true},
    {"WhenDestinationIp", "{when: [{key: destination.ip, values: [10.0.0.10]}]}", Frontend(), true},
    {"WhenDestinationIpMiss", "{when: [{key: destination.ip, values: [10.0.0.11/32]}]}", Frontend(),
     false},
    {"WhenDestinationIpNot", "{when: [{key: destination.ip, notValues: [10.0.0.0/8]}]}", Frontend(),
     false},
    {"WhenDestinationPort", "{when: [{key: destination.port, values: ['5432']}]}", Frontend(),
     true},
    {"WhenDestinationPortNot", "{when: [{key: destination.port, notValues: ['5432']}]}", Frontend(),
     false},
    {"WhenDestinationPortNotOther", "{when: [{key: destination.port, notValues: ['80']}]}",
     Frontend(), true},
    {"WhenAllMustHold",
     "{when: [{key: source.namespace, values: [prod]}, {key: destination.port, values: ['80']}]}",
     Frontend(), false},
};

INSTANTIATE_TEST_SUITE_P(Matching, RuleMatchTest, testing::ValuesIn(kMatchCases),
                         [](const testing::TestParamInfo<MatchCase>& i) { return i.param.name; });

// Whole-decision cases: several policies, scopes, actions, dry-run and L7 attributes.
struct DecisionCase {
  std::string name;
  std::string policies;  // YAML list of authorization policies
  std::string dst_uid;
  ConnectionInfo conn;
  bool allowed;
  std::string policy;
  std::string reason;
  std::vector<std::string> audited = {};
  std::vector<std::string> dry_run = {};
};

void PrintTo(const DecisionCase& c, std::ostream* os) {
  *os << c.name;
}

class DecisionTest : public testing::TestWithParam<DecisionCase> {};

TEST_P(DecisionTest, Decides) {
  const DecisionCase& c = GetParam();
  auto snap = MustBuild(c.policies);
  ASSERT_NE(snap, nullptr);
  const Workload* dst = snap->FindWorkloadByUid(c.dst_uid);
  ASSERT_NE(dst, nullptr);
  AuthzDecision d = Authorize(*snap, *dst, c.conn);
  EXPECT_EQ(d.allowed, c.allowed);
  EXPECT_EQ(d.policy, c.policy);
  EXPECT_EQ(d.reason, c.reason);
  EXPECT_EQ(d.audited, c.audited);
  EXPECT_EQ(d.dry_run, c.dry_run);
}

const DecisionCase kDecisionCases[] = {
    {"NoPoliciesAllow", "", "prod/db-0", Plain(), true, "", "allowed: no ALLOW policy applies"},
    {"DenyBeforeAllow", R"(
- {name: allow-all, namespace: prod, rules: [{}]}
- {name: deny-batch, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: [batch]}}]}]}
)",
     "prod/db-0", Batch(), false, "prod/deny-batch", "denied by DENY policy prod/deny-batch"},
    {"DenyNotMatchingThenAllow", R"(
- {name: allow-all, namespace: prod, rules: [{}]}
- {name: deny-batch, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: [batch]}}]}]}
)",
     "prod/db-0", Frontend(), true, "prod/allow-all", "allowed by ALLOW policy prod/allow-all"},
    {"FirstMatchingDenyReported", R"(
- {name: d1, namespace: weft-system, action: DENY, rules: [{}]}
- {name: d2, namespace: prod, action: DENY, rules: [{}]}
)",
     "prod/db-0", Frontend(), false, "weft-system/d1", "denied by DENY policy weft-system/d1"},
    {"AllowNoMatchTwoPolicies", R"(
- {name: a1, namespace: prod, rules: [{from: [{source: {namespaces: [x]}}]}]}
- {name: a2, namespace: weft-system, rules: [{from: [{source: {namespaces: [y]}}]}]}
)",
     "prod/db-0", Frontend(), false, "", "no ALLOW policy matched (2 ALLOW policies apply)"},
    {"SecondAllowMatches", R"(
- {name: a1, namespace: prod, rules: [{from: [{source: {namespaces: [x]}}]}]}
- {name: a2, namespace: prod, rules: [{from: [{source: {namespaces: [prod]}}]}]}
)",
     "prod/db-0", Frontend(), true, "prod/a2", "allowed by ALLOW policy prod/a2"},
    {"AllowWithoutRulesDeniesAll", "- {name: allow-nothing, namespace: prod}\n", "prod/db-0",
     Frontend(), false, "", "no ALLOW policy matched (1 ALLOW policy applies)"},
    {"DenyWithoutRulesMatchesNothing", "- {name: d, namespace: prod, action: DENY}\n", "prod/db-0",
     Frontend(), true, "", "allowed: no ALLOW policy applies"},
    {"DenyEmptyRuleDeniesAll", "- {name: d, namespace: prod, action: DENY, rules: [{}]}\n",
     "prod/db-0", Plain(), false, "prod/d", "denied by DENY policy prod/d"},
    // Scope.
    {"SelectorMatches",
     "- {name: a, namespace: prod, selector: {matchLabels: {app: db}}, rules: [{from: [{source: "
     "{namespaces: [x]}}]}]}\n",
     "prod/db-0", Frontend(), false, "", "no ALLOW policy matched (1 ALLOW policy applies)"},
    {"SelectorDoesNotMatch",
     "- {name: a, namespace: prod, selector: {matchLabels: {app: web}}, rules: [{from: [{source: "
     "{namespaces: [x]}}]}]}\n",
     "prod/db-0", Frontend(), true, "", "allowed: no ALLOW policy applies"},
    {"EmptySelectorIsNamespaceWide",
     "- {name: a, namespace: prod, selector: {}, action: DENY, rules: [{}]}\n", "prod/web-0",
     Frontend(), false, "prod/a", "denied by DENY policy prod/a"},
    {"OtherNamespaceDoesNotApply", "- {name: d, namespace: other, action: DENY, rules: [{}]}\n",
     "prod/db-0", Frontend(), true, "", "allowed: no ALLOW policy applies"},
    {"NamespacePolicyApplies", "- {name: d, namespace: other, action: DENY, rules: [{}]}\n",
     "other/db-0", Frontend(), false, "other/d", "denied by DENY policy other/d"},
    {"RootNamespaceMeshWide", "- {name: d, namespace: weft-system, action: DENY, rules: [{}]}\n",
     "other/db-0", Frontend(), false, "weft-system/d", "denied by DENY policy weft-system/d"},
    {"RootNamespaceSelectorAcrossNamespaces",
     "- {name: d, namespace: weft-system, selector: {matchLabels: {app: db}}, action: DENY, "
     "rules: [{}]}\n",
     "other/db-0", Frontend(), false, "weft-system/d", "denied by DENY policy weft-system/d"},
    {"RootNamespaceSelectorMiss",
     "- {name: d, namespace: weft-system, selector: {matchLabels: {app: db}}, action: DENY, "
     "rules: [{}]}\n",
     "prod/web-0", Conn("prod/frontend", "10.0.0.20", "10.0.0.11:80"), true, "",
     "allowed: no ALLOW policy applies"},
    {"OtherNamespaceSelectorDoesNotApply",
     "- {name: d, namespace: other, selector: {matchLabels: {app: db}}, action: DENY, rules: "
     "[{}]}\n",
     "prod/db-0", Frontend(), true, "", "allowed: no ALLOW policy applies"},
    // AUDIT.
    {"AuditMatchReportedOnly",
     R"(
- {name: audit-all, namespace: prod, action: AUDIT, rules: [{}]}
- {name: audit-none, namespace: prod, action: AUDIT, rules: [{from: [{source: {namespaces: [x]}}]}]}
)",
     "prod/db-0",
     Frontend(),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {"prod/audit-all"}},
    {"AuditDoesNotCountAsAllow",
     R"(
- {name: audit-all, namespace: prod, action: AUDIT, rules: [{}]}
- {name: a, namespace: prod, rules: [{from: [{source: {namespaces: [x]}}]}]}
)",
     "prod/db-0",
     Frontend(),
     false,
     "",
     "no ALLOW policy matched (1 ALLOW policy applies)",
     {"prod/audit-all"}},
    {"AuditReportedWhenDenied",
     R"(
- {name: audit-all, namespace: weft-system, action: AUDIT, rules: [{}]}
- {name: d, namespace: prod, action: DENY, rules: [{}]}
)",
     "prod/db-0",
     Frontend(),
     false,
     "prod/d",
     "denied by DENY policy prod/d",
     {"weft-system/audit-all"}},
    // Dry-run.
    {"DryRunDenyDoesNotDeny",
     "- {name: d, namespace: prod, action: DENY, dryRun: true, rules: [{}]}\n",
     "prod/db-0",
     Frontend(),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {},
     {"prod/d: would deny"}},
    {"DryRunDenyNoMatchSilent",
     "- {name: d, namespace: prod, action: DENY, dryRun: true, rules: [{from: [{source: "
     "{namespaces: [x]}}]}]}\n",
     "prod/db-0", Frontend(), true, "", "allowed: no ALLOW policy applies"},
    {"DryRunAllowDoesNotRestrict",
     "- {name: a, namespace: prod, dryRun: true, rules: [{from: [{source: {namespaces: "
     "[x]}}]}]}\n",
     "prod/db-0",
     Frontend(),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {},
     {"prod/a: would not allow (no rule matched)"}},
    {"DryRunAllowDoesNotAllow",
     R"(
- {name: shadow, namespace: prod, dryRun: true, rules: [{}]}
- {name: a, namespace: prod, rules: [{from: [{source: {namespaces: [x]}}]}]}
)",
     "prod/db-0",
     Frontend(),
     false,
     "",
     "no ALLOW policy matched (1 ALLOW policy applies)",
     {},
     {"prod/shadow: would allow"}},
    {"DryRunAudit",
     "- {name: au, namespace: prod, action: AUDIT, dryRun: true, rules: [{}]}\n",
     "prod/db-0",
     Frontend(),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {},
     {"prod/au: would audit"}},
    // L7 attributes at L4.
    {"AllowWithMethodsNeverMatches",
     "- {name: a, namespace: prod, rules: [{to: [{operation: {methods: [GET]}}]}]}\n", "prod/db-0",
     Frontend(), false, "",
     "no ALLOW policy matched (1 ALLOW policy applies; 1 rule uses L7 attributes and cannot "
     "match at L4)"},
    {"AllowWithPathsAndPortsNeverMatches",
     "- {name: a, namespace: prod, rules: [{to: [{operation: {ports: ['5432'], paths: "
     "['/x']}}]}]}\n",
     "prod/db-0", Frontend(), false, "",
     "no ALLOW policy matched (1 ALLOW policy applies; 1 rule uses L7 attributes and cannot "
     "match at L4)"},
    {"AllowL4RuleBesideL7Rule",
     "- {name: a, namespace: prod, rules: [{to: [{operation: {hosts: [db]}}]}, {from: [{source: "
     "{namespaces: [prod]}}]}]}\n",
     "prod/db-0", Frontend(), true, "prod/a", "allowed by ALLOW policy prod/a"},
    {"AllowWithRequestPrincipalsNeverMatches",
     "- {name: a, namespace: prod, rules: [{from: [{source: {requestPrincipals: ['*']}}]}]}\n",
     "prod/db-0", Frontend(), false, "",
     "no ALLOW policy matched (1 ALLOW policy applies; 1 rule uses L7 attributes and cannot "
     "match at L4)"},
    {"AllowWithRequestConditionNeverMatches",
     "- {name: a, namespace: prod, rules: [{when: [{key: 'request.headers[x-user]', values: "
     "[alice]}]}]}\n",
     "prod/db-0", Frontend(), false, "",
     "no ALLOW policy matched (1 ALLOW policy applies; 1 rule uses L7 attributes and cannot "
     "match at L4)"},
    {"DenyWithMethodsMatchesOnPorts",
     "- {name: d, namespace: prod, action: DENY, rules: [{to: [{operation: {ports: ['5432'], "
     "methods: [POST]}}]}]}\n",
     "prod/db-0", Frontend(), false, "prod/d", "denied by DENY policy prod/d"},
    {"DenyWithMethodsOtherPort",
     "- {name: d, namespace: prod, action: DENY, rules: [{to: [{operation: {ports: ['80'], "
     "methods: [POST]}}]}]}\n",
     "prod/db-0", Frontend(), true, "", "allowed: no ALLOW policy applies"},
    {"DenyWithOnlyPathsDeniesAll",
     "- {name: d, namespace: prod, action: DENY, rules: [{to: [{operation: {paths: "
     "['/admin']}}]}]}\n",
     "prod/db-0", Frontend(), false, "prod/d", "denied by DENY policy prod/d"},
    {"DenyWithRequestPrincipalsUsesL4Fields",
     "- {name: d, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: [batch], "
     "notRequestPrincipals: ['*']}}]}]}\n",
     "prod/db-0", Frontend(), true, "", "allowed: no ALLOW policy applies"},
    {"DenyWithRequestConditionIgnoresIt",
     "- {name: d, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: [batch]}}], "
     "when: [{key: 'request.auth.claims[iss]', values: [x]}]}]}\n",
     "prod/db-0", Batch(), false, "prod/d", "denied by DENY policy prod/d"},
    {"AuditWithL7AuditsOnL4",
     "- {name: au, namespace: prod, action: AUDIT, rules: [{to: "
     "[{operation: {methods: [GET]}}]}]}\n",
     "prod/db-0",
     Frontend(),
     true,
     "",
     "allowed: no ALLOW policy applies",
     {"prod/au"}},
    // Plaintext sources.
    {"PlaintextAgainstPrincipalAllow",
     "- {name: a, namespace: prod, rules: [{from: [{source: {principals: ['*']}}]}]}\n",
     "prod/db-0", Plain(), false, "", "no ALLOW policy matched (1 ALLOW policy applies)"},
    {"PlaintextDenyByNotPrincipals",
     "- {name: d, namespace: prod, action: DENY, rules: [{from: [{source: {notPrincipals: "
     "['*']}}]}]}\n",
     "prod/db-0", Plain(), false, "prod/d", "denied by DENY policy prod/d"},
    {"AuthenticatedPassesNotPrincipalsDeny",
     "- {name: d, namespace: prod, action: DENY, rules: [{from: [{source: {notPrincipals: "
     "['*']}}]}]}\n",
     "prod/db-0", Frontend(), true, "", "allowed: no ALLOW policy applies"},
    {"PlaintextAllowedByIpBlock",
     "- {name: a, namespace: prod, rules: [{from: [{source: {ipBlocks: [192.168.0.0/16]}}]}]}\n",
     "prod/db-0", Plain(), true, "prod/a", "allowed by ALLOW policy prod/a"},
};

INSTANTIATE_TEST_SUITE_P(Policies, DecisionTest, testing::ValuesIn(kDecisionCases),
                         [](const testing::TestParamInfo<DecisionCase>& i) {
                           return i.param.name;
                         });

TEST(PlaintextAllowedTest, FollowsEffectiveMode) {
  std::string text(kWorkloads);
  text += R"(
peerAuthentications:
- {name: mesh, namespace: weft-system, mtls: {mode: STRICT}}
- {name: prod, namespace: prod, mtls: {mode: PERMISSIVE}}
- name: db
  namespace: prod
  selector: {matchLabels: {app: db}}
  mtls: {mode: UNSET}
  portLevelMtls:
    5432: {mode: STRICT}
)";
  auto pb = ParseConfigText(text);
  ASSERT_TRUE(pb.ok()) << pb.status();
  auto snap = ConfigSnapshot::FromProto(*pb);
  ASSERT_TRUE(snap.ok()) << snap.status();
  const Workload* db = (*snap)->FindWorkloadByUid("prod/db-0");
  const Workload* web = (*snap)->FindWorkloadByUid("prod/web-0");
  const Workload* other = (*snap)->FindWorkloadByUid("other/db-0");
  EXPECT_FALSE(PlaintextAllowed(**snap, *db, 5432));   // port-level STRICT
  EXPECT_TRUE(PlaintextAllowed(**snap, *db, 80));      // UNSET -> namespace PERMISSIVE
  EXPECT_TRUE(PlaintextAllowed(**snap, *web, 5432));   // namespace PERMISSIVE
  EXPECT_FALSE(PlaintextAllowed(**snap, *other, 80));  // mesh-wide STRICT
  EXPECT_TRUE(PlaintextAllowed(*ConfigSnapshot::Empty(), *web, 80));  // default PERMISSIVE
}

// NetworkPolicy (weftd's translation) is ANDed with AuthorizationPolicy: an isolated workload
// needs a NetworkPolicy rule for (source address, destination port) first.
SnapshotPtr BuildWithNetworkPolicies(std::string_view nps, std::string_view aps) {
  std::string text(kWorkloads);
  text += "networkPolicies:\n" + std::string(nps);
  if (!aps.empty()) text += "authorizationPolicies:\n" + std::string(aps);
  auto pb = ParseConfigText(text);
  EXPECT_TRUE(pb.ok()) << pb.status() << "\n" << text;
  if (!pb.ok()) return nullptr;
  auto snap = ConfigSnapshot::FromProto(*pb);
  EXPECT_TRUE(snap.ok()) << snap.status() << "\n" << text;
  return snap.ok() ? *snap : nullptr;
}

constexpr std::string_view kDbPortPolicy = R"(- name: db-ingress
  namespace: prod
  workloadUids: [prod/db-0]
  ingress:
  - from: [{cidr: 10.0.0.20/32}]
    ports: [{port: 5432}]
)";

TEST(NetworkPolicyTest, PortAndSourceMustMatch) {
  auto snap = BuildWithNetworkPolicies(kDbPortPolicy, "");
  ASSERT_NE(snap, nullptr);
  const Workload* db = snap->FindWorkloadByUid("prod/db-0");
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(Authorize(*snap, *db, Frontend()).allowed);
  AuthzDecision wrong_port =
      Authorize(*snap, *db, Conn("prod/frontend", "10.0.0.20", "10.0.0.10:22"));
  EXPECT_FALSE(wrong_port.allowed);
  EXPECT_EQ(wrong_port.policy, "prod/db-ingress");
  EXPECT_EQ(wrong_port.reason,
            "denied by NetworkPolicy: no ingress rule of 1 policy (prod/db-ingress) admits "
            "10.0.0.20 to port 22");
  EXPECT_FALSE(Authorize(*snap, *db, Batch()).allowed) << "10.0.2.30 is not a listed peer";
  // Workloads no NetworkPolicy selects are not isolated.
  const Workload* web = snap->FindWorkloadByUid("prod/web-0");
  ASSERT_NE(web, nullptr);
  EXPECT_TRUE(Authorize(*snap, *web, Conn("batch/job", "10.0.2.30", "10.0.0.11:22")).allowed);
}

TEST(NetworkPolicyTest, AndedWithAuthorizationPolicy) {
  // The AuthorizationPolicy allows only batch/job; the NetworkPolicy only 10.0.0.20: nothing
  // satisfies both, so both connections are refused (an OR would have allowed both).
  auto snap = BuildWithNetworkPolicies(
      kDbPortPolicy,
      AllowRule("{from: [{source: {principals: [cluster.local/ns/batch/sa/job]}}]}"));
  ASSERT_NE(snap, nullptr);
  const Workload* db = snap->FindWorkloadByUid("prod/db-0");
  ASSERT_NE(db, nullptr);
  AuthzDecision frontend = Authorize(*snap, *db, Frontend());
  EXPECT_FALSE(frontend.allowed);
  EXPECT_EQ(frontend.reason, "no ALLOW policy matched (1 ALLOW policy applies)");
  AuthzDecision batch = Authorize(*snap, *db, Batch());
  EXPECT_FALSE(batch.allowed);
  EXPECT_TRUE(batch.reason.starts_with("denied by NetworkPolicy")) << batch.reason;
}

TEST(NetworkPolicyTest, PoliciesOrAmongThemselves) {
  auto snap = BuildWithNetworkPolicies(std::string(kDbPortPolicy) + R"(- name: deny-all
  namespace: prod
  workloadUids: [prod/db-0]
- name: batch
  namespace: prod
  workloadUids: [prod/db-0]
  ingress: [{from: [{cidr: 10.0.2.0/24, except: [10.0.2.128/25]}], allPorts: true}]
)",
                                       "");
  ASSERT_NE(snap, nullptr);
  const Workload* db = snap->FindWorkloadByUid("prod/db-0");
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(Authorize(*snap, *db, Frontend()).allowed);
  EXPECT_TRUE(Authorize(*snap, *db, Batch()).allowed);
  AuthzDecision excepted = Authorize(*snap, *db, Conn("batch/job", "10.0.2.200", "10.0.0.10:1"));
  EXPECT_FALSE(excepted.allowed);
  EXPECT_EQ(excepted.reason,
            "denied by NetworkPolicy: no ingress rule of 3 policies (prod/db-ingress, "
            "prod/deny-all, prod/batch) admits 10.0.2.200 to port 1");
}

}  // namespace
}  // namespace weft::ztunnel
