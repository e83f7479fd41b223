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

// A Service VIP entry: a deny on a service port, and every endpoint ztunnel can send that
// connect to (ready, running, with an address) denies `src` on the target port, with the label
// of the entry.
void ExpectEveryEndpointDenies(const ConfigSnapshot& snap, const Service& svc, const Workload& src,
                               const DenyEntry& e) {
  EXPECT_TRUE(e.deny) << "a pass exception for a VIP";
  const ServicePort* sp = svc.FindPort(e.port);
  ASSERT_NE(sp, nullptr) << e.dst.ToString() << ":" << e.port << " is no port of " << svc.name;
  int endpoints = 0;
  for (const std::string& uid : svc.ready_endpoint_uids) {
    const Workload* ep = snap.FindWorkloadByUid(uid);
    ASSERT_NE(ep, nullptr);
    if (!ep->running || ep->addresses.empty()) continue;
    ++endpoints;
    ConnectionInfo ci{src.identity(), src.addresses.front(),
                      SockAddr{ep->addresses.front(), sp->target_port}};
    AuthzDecision d = Authorize(snap, *ep, ci);
    EXPECT_FALSE(d.allowed) << svc.name << ":" << e.port << " -> " << uid << ":" << sp->target_port;
    EXPECT_EQ(d.policy, e.policy) << d.reason;
  }
  EXPECT_GT(endpoints, 0) << "a VIP entry for a Service without endpoints";
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
    if (const Service* svc = snap.FindServiceByAddress(e.dst)) {
      ExpectEveryEndpointDenies(snap, *svc, *src, e);
      continue;
    }
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
      if (e.deny) {
        EXPECT_EQ(d.policy, e.policy) << d.reason;
      }
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

// Service VIPs. prod/db-1 backs the db Service too, from another node (remote: only a DENY is
// certain there); the Service maps port 80 to the pods' 8080 and 5432 to 15432.
constexpr std::string_view kDbService =
    R"(- {uid: prod/db-1, name: db-1, namespace: prod, serviceAccount: db,
   addresses: [10.0.2.20], labels: {app: db, zone: b}, protocol: HBONE, node: n1}
services:
- name: db
  namespace: prod
  addresses: [10.96.0.10, 'fd00::96:10']
  ports: [{port: 80, targetPort: 8080}, {port: 5432, targetPort: 15432}]
  endpoints: [{workloadUid: prod/db-0, ready: true}, {workloadUid: prod/db-1, ready: true}]
)";

std::set<std::string> VipEntries(const CompiledDenies& c) {
  std::set<std::string> out;
  for (const std::string& e : Show(c))
    if (e.find(" 10.96.") != std::string::npos || e.find(" fd00::96:") != std::string::npos)
      out.insert(e);
  return out;
}

// Every endpoint denies job-0 on the target port 8080 (a namespace-wide DENY naming 8080): the
// VIP's port 80 is denied on both VIP addresses; 5432 (target 15432) is not.
TEST(ConnectDenyTest, VipPortIsDeniedWhenEveryEndpointDeniesItsTargetPort) {
  auto snap = Build(R"(- name: no-jobs-8080
  namespace: prod
  action: DENY
  rules: [{from: [{source: {namespaces: [other]}}], to: [{operation: {ports: ['8080']}}]}]
)",
                    kDbService);
  CompiledDenies c = Compile(snap);
  EXPECT_EQ(VipEntries(c),
            (std::set<std::string>{"102 10.96.0.10:80 deny prod/no-jobs-8080 deny",
                                   "102 fd00::96:10:80 deny prod/no-jobs-8080 deny"}));
  EXPECT_EQ(c.vip_ports_compiled, 2u);
  EXPECT_EQ(c.vip_ports_skipped, 0u);
  ExpectAgreesWithAuthorize(*snap, c);

  // Without ports: every service port, for both addresses.
  snap = Build(
      "- {name: no-jobs, namespace: prod, action: DENY, rules: [{from: [{source: "
      "{namespaces: [other]}}]}]}\n",
      kDbService);
  c = Compile(snap);
  EXPECT_EQ(VipEntries(c), (std::set<std::string>{"102 10.96.0.10:80 deny prod/no-jobs deny",
                                                  "102 10.96.0.10:5432 deny prod/no-jobs deny",
                                                  "102 fd00::96:10:80 deny prod/no-jobs deny",
                                                  "102 fd00::96:10:5432 deny prod/no-jobs deny"}));
  ExpectAgreesWithAuthorize(*snap, c);
}

// Policies match the endpoint's target port, never the service port: a DENY of port 80 does not
// deny VIP:80 (which reaches 8080).
TEST(ConnectDenyTest, VipPortsMapToTargetPortsBeforePoliciesAreAsked) {
  auto snap = Build(R"(- name: no-80
  namespace: prod
  action: DENY
  rules: [{to: [{operation: {ports: ['80', '5432']}}]}]
)",
                    kDbService);
  CompiledDenies c = Compile(snap);
  EXPECT_TRUE(VipEntries(c).empty()) << *VipEntries(c).begin();
  EXPECT_TRUE(Show(c).contains("102 10.0.0.10:80 deny prod/no-80 deny"));  // the pod itself
  ExpectAgreesWithAuthorize(*snap, c);
}

// One endpoint the source cannot decide, one that allows, or two that deny with different labels:
// no VIP entry (the endpoint's own entries are unaffected).
TEST(ConnectDenyTest, VipWithAnEndpointTheSourceCannotDecideGetsNoEntry) {
  const std::string deny_jobs =
      "- {name: no-jobs, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: "
      "[other]}}]}]}\n";
  // db-1 (remote) also has a DENY by ipBlocks: the source cannot decide it.
  auto snap = Build(deny_jobs + R"(- name: zone-b-blocks
  namespace: prod
  action: DENY
  selector: {matchLabels: {zone: b}}
  rules: [{from: [{source: {ipBlocks: [192.168.0.0/16]}}]}]
)",
                    kDbService);
  CompiledDenies c = Compile(snap);
  EXPECT_TRUE(VipEntries(c).empty());
  EXPECT_EQ(c.vip_ports_skipped, 2u);
  EXPECT_TRUE(Show(c).contains("102 10.0.0.10:0 deny prod/no-jobs deny"));  // db-0 still
  ExpectAgreesWithAuthorize(*snap, c);

  // db-0 denies job-0 (no ALLOW matched, local), db-1 is remote: its ALLOW-only decision is not
  // certain here.
  snap = Build(R"(- name: db-from-web
  namespace: prod
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/web]}}]}]
)",
               kDbService);
  c = Compile(snap);
  EXPECT_TRUE(Show(c).contains("102 10.0.0.10:0 deny  no_allow_match"));
  EXPECT_TRUE(VipEntries(c).empty());

  // Both deny, with different labels (no ALLOW matched at db-0, a DENY at db-1): which label the
  // destination would count depends on the endpoint picked, so nothing is compiled.
  snap = Build(R"(- name: db-from-web
  namespace: prod
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/web]}}]}]
- name: zone-b-no-jobs
  namespace: prod
  action: DENY
  selector: {matchLabels: {zone: b}}
  rules: [{from: [{source: {namespaces: [other]}}]}]
)",
               kDbService);
  c = Compile(snap);
  EXPECT_TRUE(VipEntries(c).empty());
  EXPECT_TRUE(Show(c).contains("102 10.0.2.20:0 deny prod/zone-b-no-jobs deny"));

  // An endpoint outside the mesh: plain TCP, no policy decides it.
  snap = Build(deny_jobs, std::string(kDbService) +
                              "- {name: mixed, namespace: prod, addresses: [10.96.0.11], ports: "
                              "[{port: 80, targetPort: 8080}], endpoints: [{workloadUid: "
                              "prod/db-0, ready: true}, {workloadUid: remote/plain-0, ready: "
                              "true}]}\n");
  c = Compile(snap);
  for (const std::string& e : VipEntries(c))
    EXPECT_EQ(e.find("10.96.0.11"), std::string::npos) << e;
  EXPECT_TRUE(VipEntries(c).contains("102 10.96.0.10:80 deny prod/no-jobs deny"));
  ExpectAgreesWithAuthorize(*snap, c);
}

// No endpoint ztunnel could send it to (none, only unready ones, only a pod not running): ztunnel
// refuses it itself, no policy decides it; no entry.
TEST(ConnectDenyTest, VipWithoutEndpointsGetsNoEntry) {
  const std::string deny_jobs =
      "- {name: no-jobs, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: "
      "[other]}}]}]}\n";
  for (std::string_view endpoints : {"[]", "[{workloadUid: prod/db-0, ready: false}]",
                                     "[{workloadUid: prod/gone-0, ready: true}]"}) {
    std::string extra =
        "- {uid: prod/gone-0, name: gone-0, namespace: prod, serviceAccount: db, addresses: "
        "[10.0.0.30], labels: {app: db}, protocol: HBONE, node: n0, phase: Succeeded}\n"
        "services:\n- {name: db, namespace: prod, addresses: [10.96.0.10], ports: [{port: 80}], "
        "endpoints: " +
        std::string(endpoints) + "}\n";
    auto snap = Build(deny_jobs, extra);
    ASSERT_TRUE(snap);
    ASSERT_FALSE(snap->FindWorkloadByUid("prod/gone-0")->running);
    CompiledDenies c = Compile(snap);
    EXPECT_TRUE(VipEntries(c).empty()) << endpoints;
    EXPECT_EQ(c.vip_ports_skipped, 1u) << endpoints;
    EXPECT_TRUE(Show(c).contains("102 10.0.0.10:0 deny prod/no-jobs deny")) << endpoints;
  }
}

// Ports the source ztunnel terminates as HTTP (declared HTTP, an HTTPRoute on the Service, a
// TrafficPolicy on the port) may go elsewhere than the Service's endpoints: no entry.
TEST(ConnectDenyTest, VipPortsTheSourceParsesAsHttpGetNoEntry) {
  const std::string deny_jobs =
      "- {name: no-jobs, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: "
      "[other]}}]}]}\n";
  const std::string svc =
      "services:\n- {name: db, namespace: prod, addresses: [10.96.0.10], ports: [{port: 80, "
      "targetPort: 8080, name: http}, {port: 81, appProtocol: grpc}, {port: 82, name: tcp-x}, "
      "{port: 83}], endpoints: [{workloadUid: prod/db-0, ready: true}]}\n";
  auto snap = Build(deny_jobs, svc);
  EXPECT_EQ(VipEntries(Compile(snap)),
            (std::set<std::string>{"102 10.96.0.10:82 deny prod/no-jobs deny",
                                   "102 10.96.0.10:83 deny prod/no-jobs deny"}));
  snap = Build(deny_jobs, svc +
                              "httpRoutes:\n- {name: r, namespace: prod, parentService: "
                              "prod/db, parentPort: 82}\n");
  EXPECT_TRUE(VipEntries(Compile(snap)).empty());
  snap = Build(deny_jobs, svc +
                              "trafficPolicies:\n- {name: t, namespace: prod, targetService: "
                              "prod/db, targetPort: 83, connectionPool: {maxConnections: 1}}\n");
  EXPECT_EQ(VipEntries(Compile(snap)),
            (std::set<std::string>{"102 10.96.0.10:82 deny prod/no-jobs deny"}));
}

// An address that is both a workload's and a Service's is resolved as the Service: no workload
// entries (no port-0 deny) for it, only the Service's ports.
TEST(ConnectDenyTest, AnAddressThatIsAVipIsCompiledAsTheService) {
  auto snap = Build(
      "- {name: no-jobs, namespace: prod, action: DENY, rules: [{from: [{source: {namespaces: "
      "[other]}}]}]}\n",
      "services:\n- {name: alias, namespace: prod, addresses: [10.0.0.10], ports: [{port: 9000}], "
      "endpoints: [{workloadUid: prod/web-0, ready: true}]}\n");
  CompiledDenies c = Compile(snap);
  std::set<std::string> got;
  for (const std::string& e : Show(c))
    if (e.find(" 10.0.0.10:") != std::string::npos) got.insert(e);
  EXPECT_EQ(got, (std::set<std::string>{"102 10.0.0.10:9000 deny prod/no-jobs deny"}));
  ExpectAgreesWithAuthorize(*snap, c);
}

}  // namespace
}  // namespace weft::ztunnel
