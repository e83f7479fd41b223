#include "ztunnel/rbac/connect_deny.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "ztunnel/rbac/authorizer.h"
#include "ztunnel/state/config_file.h"

namespace weft::ztunnel {
namespace {

// prod/db-0 (app=db) and prod/web-0 (app=web) run on this node; other/job-0 too; remote/api-0
// runs on another node.
constexpr std::string_view kWorkloads = R"(
trustDomain: cluster.local
rootNamespace: weft-system
workloads:
- {uid: prod/db-0, name: db-0, namespace: prod, serviceAccount: db, addresses: [10.0.0.10],
   labels: {app: db}, protocol: HBONE, node: n0}
- {uid: prod/web-0, name: web-0, namespace: prod, serviceAccount: web, addresses: [10.0.0.11],
   labels: {app: web}, protocol: HBONE, node: n0}
- {uid: other/job-0, name: job-0, namespace: other, serviceAccount: job, addresses: [10.0.1.10],
   labels: {app: job}, protocol: HBONE, node: n0}
- {uid: remote/api-0, name: api-0, namespace: remote, serviceAccount: api,
   addresses: [10.0.2.10, 'fd00::2:10'], labels: {app: api}, protocol: HBONE, node: n1}
- {uid: remote/plain-0, name: plain-0, namespace: remote, serviceAccount: plain,
   addresses: [10.0.2.11], labels: {app: plain}}
)";

constexpr uint64_t kWeb = 101, kJob = 102, kDb = 103;
const std::set<std::string> kLocal = {"prod/db-0", "prod/web-0", "other/job-0"};

SnapshotPtr Build(std::string_view policies, std::string_view extra = "") {
  std::string text(kWorkloads);
  text += std::string(extra);
  if (!policies.empty()) text += "authorizationPolicies:\n" + std::string(policies);
  auto pb = ParseConfigText(text);
  EXPECT_TRUE(pb.ok()) << pb.status() << "\n" << text;
  if (!pb.ok()) return nullptr;
  auto snap = ConfigSnapshot::FromProto(*pb);
  EXPECT_TRUE(snap.ok()) << snap.status() << "\n" << text;
  return snap.ok() ? *snap : nullptr;
}

CompiledDenies Compile(const SnapshotPtr& snap, size_t max_entries = 1000,
                       std::string_view node = "n0") {
  std::vector<DenySource> sources = {
      {"prod/web-0", kWeb}, {"other/job-0", kJob}, {"prod/db-0", kDb}};
  return CompileConnectDenies(*snap, sources, node, kLocal, max_entries);
}

// "cookie addr:port deny|pass policy reason", sorted.
std::set<std::string> Show(const CompiledDenies& c) {
  std::set<std::string> out;
  for (const DenyEntry& e : c.entries) {
    out.insert(std::to_string(e.netns_cookie) + " " + e.dst.ToString() + ":" +
               std::to_string(e.port) + " " +
               (e.deny ? "deny " + e.policy + " " + e.reason : "pass"));
  }
  return out;
}

// Every entry agrees with what the destination decides (Authorize) for that source, and a
// port-0 entry for a spread of ports without their own entry.
void ExpectAgreesWithAuthorize(const ConfigSnapshot& snap, const CompiledDenies& c) {
  const std::map<uint64_t, std::string> uid = {
      {kWeb, "prod/web-0"}, {kJob, "other/job-0"}, {kDb, "prod/db-0"}};
  std::set<std::tuple<uint64_t, std::string, uint16_t>> exact;
  for (const DenyEntry& e : c.entries) exact.insert({e.netns_cookie, e.dst.ToString(), e.port});
  for (const DenyEntry& e : c.entries) {
    if (IsNeverDeniedPort(e.port)) continue;  // ztunnel's ports: never denied, whatever policy says
    const Workload* src = snap.FindWorkloadByUid(uid.at(e.netns_cookie));
    const Workload* dst = snap.FindWorkloadByAddress(e.dst);
    ASSERT_TRUE(src && dst);
    std::vector<uint16_t> ports;
    if (e.port != 0) {
      ports.push_back(e.port);
    } else {
      for (uint16_t p : {1, 22, 80, 443, 5432, 8080, 9090, 65535})
        if (!exact.contains({e.netns_cookie, e.dst.ToString(), p})) ports.push_back(p);
    }
    for (uint16_t p : ports) {
      ConnectionInfo ci{src->identity(), src->addresses.front(), SockAddr{e.dst, p}};
      AuthzDecision d = Authorize(snap, *dst, ci);
      EXPECT_EQ(!d.allowed, e.deny) << e.dst.ToString() << ":" << p << " " << d.reason;
      if (e.deny) EXPECT_EQ(d.policy, e.policy) << d.reason;
    }
  }
}

TEST(ConnectDenyTest, NoPolicyMeansNoEntry) {
  auto snap = Build("");
  CompiledDenies c = Compile(snap);
  EXPECT_TRUE(c.entries.empty());
  EXPECT_EQ(c.compiled, 0u);
}

TEST(ConnectDenyTest, AllowByPrincipalDeniesEveryOtherSourceOnEveryPort) {
  auto snap = Build(R"(- name: db-from-web
  namespace: prod
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/web]}}]}]
)");
  CompiledDenies c = Compile(snap);
  EXPECT_EQ(Show(c), (std::set<std::string>{
                         "102 10.0.0.10:0 deny  no_allow_match", "102 10.0.0.10:15001 pass",
                         "102 10.0.0.10:15006 pass", "102 10.0.0.10:15008 pass",
                         "103 10.0.0.10:0 deny  no_allow_match", "103 10.0.0.10:15001 pass",
                         "103 10.0.0.10:15006 pass", "103 10.0.0.10:15008 pass"}));
  ExpectAgreesWithAuthorize(*snap, c);
}

TEST(ConnectDenyTest, AllowWithPortsLeavesThosePortsToTheRuleAndNamespacesWork) {
  auto snap = Build(R"(- name: db-5432
  namespace: prod
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {namespaces: [prod]}}], to: [{operation: {ports: ['5432']}}]}]
)");
  CompiledDenies c = Compile(snap);
  std::set<std::string> got = Show(c);
  EXPECT_TRUE(got.contains("101 10.0.0.10:0 deny  no_allow_match"));
  EXPECT_TRUE(got.contains("101 10.0.0.10:5432 pass"));  // web is in prod: 5432 allowed
  EXPECT_TRUE(got.contains("102 10.0.0.10:0 deny  no_allow_match"));
  EXPECT_FALSE(got.contains("102 10.0.0.10:5432 pass"));  // job is not: denied on 5432 too
  ExpectAgreesWithAuthorize(*snap, c);
}

TEST(ConnectDenyTest, DenyPolicyWithPortAndWhenConditions) {
  auto snap = Build(R"(- name: no-ssh
  namespace: prod
  action: DENY
  rules: [{to: [{operation: {ports: ['22']}}]}]
- name: no-other-ns
  namespace: prod
  action: DENY
  rules: [{when: [{key: source.namespace, notValues: [prod]}]}]
)");
  CompiledDenies c = Compile(snap);
  std::set<std::string> got = Show(c);
  // Every prod workload (db-0, web-0): port 22 for everybody, every port for other/job-0.
  EXPECT_TRUE(got.contains("101 10.0.0.10:22 deny prod/no-ssh deny"));
  EXPECT_TRUE(got.contains("103 10.0.0.11:22 deny prod/no-ssh deny"));
  EXPECT_TRUE(got.contains("102 10.0.0.11:0 deny prod/no-other-ns deny"));
  EXPECT_TRUE(got.contains("102 10.0.0.11:22 deny prod/no-ssh deny"));  // the first DENY wins
  EXPECT_FALSE(got.contains("101 10.0.0.10:0 deny prod/no-other-ns deny"));
  ExpectAgreesWithAuthorize(*snap, c);
}

// Anything the source cannot know leaves the destination alone.
TEST(ConnectDenyTest, PoliciesTheSourceCannotDecideCompileToNothing) {
  for (std::string_view rule : {
           "{to: [{operation: {methods: [GET]}}]}",
           "{to: [{operation: {paths: [/admin]}}]}",
           "{from: [{source: {ipBlocks: [10.0.0.0/8]}}]}",
           "{from: [{source: {notRemoteIpBlocks: [10.0.0.0/8]}}]}",
           "{from: [{source: {requestPrincipals: ['*']}}]}",
           "{when: [{key: 'request.headers[x-user]', values: [a]}]}",
           "{when: [{key: destination.ip, values: [10.0.0.10]}]}",
           "{when: [{key: source.ip, values: [10.0.0.11]}]}",
       }) {
    for (std::string_view action : {"ALLOW", "DENY"}) {
      std::string p = "- name: p\n  namespace: prod\n  action: " + std::string(action) +
                      "\n  selector: {matchLabels: {app: db}}\n  rules: [" + std::string(rule) +
                      "]\n";
      auto snap = Build(p);
      ASSERT_TRUE(snap) << p;
      CompiledDenies c = Compile(snap);
      EXPECT_TRUE(c.entries.empty()) << p;
      EXPECT_EQ(c.skipped, 1u) << p;
    }
  }
}

TEST(ConnectDenyTest, DryRunAndAuditChangeNothing) {
  auto snap = Build(R"(- {name: d, namespace: prod, action: DENY, dryRun: true, rules: [{}]}
- {name: a, namespace: prod, action: AUDIT, rules: [{to: [{operation: {methods: [GET]}}]}]}
)");
  EXPECT_TRUE(Compile(snap).entries.empty());
  // An AUDIT policy with L4 attributes does not stop a DENY from compiling; one with L7
  // attributes does: the destination then parses HTTP and decides per request.
  snap = Build(R"(- {name: d, namespace: prod, action: DENY, rules: [{}]}
- {name: a, namespace: prod, action: AUDIT, rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}]}]}
)");
  CompiledDenies c = Compile(snap);
  EXPECT_TRUE(Show(c).contains("101 10.0.0.10:0 deny prod/d deny"));
  ExpectAgreesWithAuthorize(*snap, c);
  snap = Build(R"(- {name: d, namespace: prod, action: DENY, rules: [{}]}
- {name: a, namespace: prod, action: AUDIT, rules: [{to: [{operation: {methods: [GET]}}]}]}
)");
  EXPECT_TRUE(Compile(snap).entries.empty());
}

TEST(ConnectDenyTest, NetworkPolicyOnALocalWorkloadCompilesToNothing) {
  auto snap = Build("- {name: d, namespace: prod, action: DENY, rules: [{}]}\n",
                    "networkPolicies:\n- name: np\n  namespace: prod\n  workloadUids: "
                    "[prod/db-0]\n  ingress: [{}]\n");
  std::set<std::string> got = Show(Compile(snap));
  EXPECT_FALSE(got.contains("101 10.0.0.10:0 deny prod/d deny"));
  EXPECT_TRUE(got.contains("101 10.0.0.11:0 deny prod/d deny"));  // web-0 has none
}

// Another node's workload: its node may have ALLOW policies this view lacks, so only a matching
// DENY compiles; both its addresses get entries; workloads outside the mesh get none.
TEST(ConnectDenyTest, RemoteWorkloadsOnlyGetCertainDenies) {
  auto snap = Build(R"(- name: api-from-web
  namespace: remote
  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/web]}}]}]
)");
  EXPECT_TRUE(Compile(snap).entries.empty());
  snap = Build(R"(- name: no-jobs
  namespace: remote
  action: DENY
  rules: [{from: [{source: {namespaces: [other]}}]}]
)");
  CompiledDenies c = Compile(snap);
  std::set<std::string> got = Show(c);
  EXPECT_TRUE(got.contains("102 10.0.2.10:0 deny remote/no-jobs deny"));
  EXPECT_TRUE(got.contains("102 fd00::2:10:0 deny remote/no-jobs deny"));
  for (const std::string& e : got) {
    EXPECT_EQ(e.rfind("102 ", 0), 0u) << e;                  // only job-0's connects
    EXPECT_EQ(e.find("10.0.2.11"), std::string::npos) << e;  // plain-0 is not in the mesh
  }
  ExpectAgreesWithAuthorize(*snap, c);
}

// A pod this ztunnel holds but that the snapshot places on another node (a view older than the
// pod) is treated as remote: only a matching DENY, no "no ALLOW matched".
TEST(ConnectDenyTest, OnlyTheSnapshotsOwnNodeMakesAWorkloadLocal) {
  auto snap = Build(R"(- name: db-from-web
  namespace: prod
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/web]}}]}]
)");
  EXPECT_FALSE(Compile(snap, 1000, "n0").entries.empty());
  EXPECT_TRUE(Compile(snap, 1000, "n1").entries.empty());
  EXPECT_TRUE(Compile(snap, 1000, "").entries.empty());
}

TEST(ConnectDenyTest, MaxEntriesDropsWholeGroups) {
  auto snap = Build("- {name: d, namespace: prod, action: DENY, rules: [{}]}\n");
  CompiledDenies all = Compile(snap);
  ASSERT_EQ(all.entries.size(), 3u * 2 * 4);  // 3 sources x 2 prod workloads x (port 0 + 3)
  CompiledDenies some = Compile(snap, 10);
  EXPECT_EQ(some.entries.size(), 8u);  // two groups of 4
  EXPECT_EQ(some.dropped, 4u);
}

}  // namespace
}  // namespace weft::ztunnel
