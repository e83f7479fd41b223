#include "ztunnel/state/snapshot.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "ztunnel/state/config_file.h"

namespace weft::ztunnel {
namespace {

namespace pb = ::weft::config::v1;

absl::StatusOr<SnapshotPtr> Build(std::string_view yaml) {
  auto proto = ParseConfigText(yaml);
  if (!proto.ok()) return proto.status();
  return ConfigSnapshot::FromProto(*proto);
}

SnapshotPtr MustBuild(std::string_view yaml) {
  auto s = Build(yaml);
  EXPECT_TRUE(s.ok()) << s.status() << "\n" << yaml;
  return s.ok() ? *s : ConfigSnapshot::Empty();
}

constexpr std::string_view kTwoWorkloads = R"(
workloads:
- {uid: prod/a, name: a, namespace: prod, addresses: [10.0.0.1]}
- {uid: prod/b, name: b, namespace: prod, addresses: [10.0.0.2]}
)";

std::string WithWorkloads(std::string_view rest) {
  return std::string(kTwoWorkloads) + std::string(rest);
}

std::string Policy(std::string_view body) {
  return WithWorkloads("authorizationPolicies:\n- {name: deny-db, namespace: prod, " +
                       std::string(body) + "}\n");
}

struct InvalidCase {
  std::string name;
  std::string yaml;
  std::string error;  // exact expected message
};

void PrintTo(const InvalidCase& c, std::ostream* os) {
  *os << c.name;
}

class ValidationTest : public testing::TestWithParam<InvalidCase> {};

TEST_P(ValidationTest, RejectsWithObjectAndField) {
  const InvalidCase& c = GetParam();
  auto s = Build(c.yaml);
  ASSERT_FALSE(s.ok()) << c.yaml;
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  // Exact for our own text; CIDR errors go on with common/net's parser message.
  EXPECT_TRUE(absl::StartsWith(s.status().message(), c.error))
      << "got:  " << s.status().message() << "\nwant: " << c.error << "...";
  if (c.error.back() != ' ') {
    EXPECT_EQ(s.status().message(), c.error);
  }
}

const InvalidCase kInvalid[] = {
    // snapshot
    {"BadTrustDomain", "trustDomain: 'a/b'",
     "snapshot: trustDomain: \"a/b\" is not a valid trust domain (want e.g. cluster.local)"},
    // workloads
    {"WorkloadNoUid", "workloads: [{namespace: prod}]",
     "workloads[0]: uid: is required (a unique key such as <namespace>/<pod name>)"},
    {"WorkloadNoNamespace", "workloads: [{uid: prod/a}]",
     "workload \"prod/a\": namespace: is required"},
    {"WorkloadDuplicateUid",
     "workloads: [{uid: prod/a, namespace: prod}, {uid: prod/a, namespace: prod}]",
     "workload \"prod/a\": uid: duplicate workload uid"},
    {"WorkloadBadIp",
     "workloads: [{uid: prod/a, namespace: prod, addresses: [10.0.0.1, 10.0.0.300]}]",
     "workload \"prod/a\": addresses[1]: \"10.0.0.300\" is not an IP address"},
    {"WorkloadIpTwice",
     "workloads: [{uid: prod/a, namespace: prod, addresses: [10.0.0.1, 10.0.0.1]}]",
     "workload \"prod/a\": addresses[1]: address 10.0.0.1 is listed twice"},
    {"WorkloadIpClaimedTwice",
     WithWorkloads("") + "- {uid: prod/c, namespace: prod, addresses: ['fd00::1', 10.0.0.2]}\n",
     "workload \"prod/c\": addresses[1]: address 10.0.0.2 is already claimed by workload "
     "\"prod/b\""},
    {"WorkloadBadPhase", "workloads: [{uid: prod/a, namespace: prod, phase: running}]",
     "workload \"prod/a\": phase: unknown phase \"running\" (want Pending, Running, Succeeded, "
     "Failed or Unknown)"},
    {"WorkloadExcludePortZero",
     "workloads: [{uid: prod/a, namespace: prod, captureExcludePorts: [53, 0]}]",
     "workload \"prod/a\": captureExcludePorts[1]: port 0 is out of range 1-65535"},
    {"WorkloadExcludePortHigh",
     "workloads: [{uid: prod/a, namespace: prod, captureExcludePorts: [70000]}]",
     "workload \"prod/a\": captureExcludePorts[0]: port 70000 is out of range 1-65535"},
    {"WorkloadExcludeCidr",
     "workloads: [{uid: prod/a, namespace: prod, captureExcludeCidrs: [10.0.0.0/33]}]",
     "workload \"prod/a\": captureExcludeCidrs[0]: bad CIDR \"10.0.0.0/33\" (want an IP or a CIDR "
     "like 10.0.0.0/8): "},
    {"WorkloadTrustDomain", "workloads: [{uid: prod/a, namespace: prod, trustDomain: 'x y'}]",
     "workload \"prod/a\": trustDomain: \"x y\" is not a valid trust domain (want e.g. "
     "cluster.local)"},
    // services
    {"ServiceNoName", "services: [{namespace: prod}]", "services[0]: name: is required"},
    {"ServiceNoNamespace", "services: [{name: db}]", "services[0]: namespace: is required"},
    {"ServiceDuplicate", "services: [{name: db, namespace: prod}, {name: db, namespace: prod}]",
     "service \"prod/db\": name: duplicate service (same namespace and name)"},
    {"ServiceBadVip", "services: [{name: db, namespace: prod, addresses: [db.local]}]",
     "service \"prod/db\": addresses[0]: \"db.local\" is not an IP address"},
    {"ServiceVipClaimedTwice",
     "services: [{name: a, namespace: prod, addresses: [10.96.0.1]}, {name: b, namespace: prod, "
     "addresses: [10.96.0.1]}]",
     "service \"prod/b\": addresses[0]: address 10.96.0.1 is already claimed by service "
     "\"prod/a\""},
    {"ServicePortZero", "services: [{name: db, namespace: prod, ports: [{port: 0}]}]",
     "service \"prod/db\": ports[0].port: port 0 is out of range 1-65535"},
    {"ServicePortHigh", "services: [{name: db, namespace: prod, ports: [{port: 65536}]}]",
     "service \"prod/db\": ports[0].port: port 65536 is out of range 1-65535"},
    {"ServiceTargetPortHigh",
     "services: [{name: db, namespace: prod, ports: [{port: 80, targetPort: 99999}]}]",
     "service \"prod/db\": ports[0].targetPort: port 99999 is out of range 1-65535"},
    {"ServicePortTwice", "services: [{name: db, namespace: prod, ports: [{port: 80}, {port: 80}]}]",
     "service \"prod/db\": ports[1].port: port 80 is listed twice"},
    {"EndpointUnknownWorkload",
     WithWorkloads("services: [{name: db, namespace: prod, endpoints: [{workloadUid: prod/a}, "
                   "{workloadUid: prod/zz, ready: true}]}]"),
     "service \"prod/db\": endpoints[1].workloadUid: workload \"prod/zz\" is not in the snapshot "
     "(add it to workloads or remove the endpoint)"},
    {"EndpointNoUid", "services: [{name: db, namespace: prod, endpoints: [{ready: true}]}]",
     "service \"prod/db\": endpoints[0].workloadUid: is required"},
    // authorization policies
    {"PolicyNoName", "authorizationPolicies: [{namespace: prod}]",
     "authorizationPolicies[0]: name: is required"},
    {"PolicyNoNamespace", "authorizationPolicies: [{name: x}]",
     "authorizationPolicies[0]: namespace: is required"},
    {"PolicyDuplicate",
     "authorizationPolicies: [{name: x, namespace: prod}, {name: x, namespace: prod}]",
     "authorization_policy \"prod/x\": name: duplicate authorization policy (same namespace and "
     "name)"},
    {"PolicyCustom", Policy("action: CUSTOM"),
     "authorization_policy \"prod/deny-db\": action: CUSTOM action is not supported (use ALLOW, "
     "DENY or AUDIT; external authorization is not available)"},
    {"PolicyBadIpBlock",
     Policy("rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, 10.0.0.300/32]}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[0].source.ipBlocks[1]: bad CIDR "
     "\"10.0.0.300/32\" (want an IP or a CIDR like 10.0.0.0/8): "},
    {"PolicyBadNotIpBlock", Policy("rules: [{}, {from: [{source: {notIpBlocks: [x]}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[1].from[0].source.notIpBlocks[0]: bad CIDR "
     "\"x\" (want an IP or a CIDR like 10.0.0.0/8): "},
    {"PolicyBadRemoteIpBlock",
     Policy(
         "rules: [{from: [{source: {namespaces: [a]}}, {source: {remoteIpBlocks: ['::1/129']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[1].source.remoteIpBlocks[0]: bad CIDR "
     "\"::1/129\" (want an IP or a CIDR like 10.0.0.0/8): "},
    {"PolicyBadNotRemoteIpBlock",
     Policy("rules: [{from: [{source: {notRemoteIpBlocks: ['1.2.3.4/']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[0].source.notRemoteIpBlocks[0]: bad "
     "CIDR \"1.2.3.4/\" (want an IP or a CIDR like 10.0.0.0/8): "},
    {"PolicyPortName", Policy("rules: [{to: [{operation: {ports: [http]}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].to[0].operation.ports[0]: \"http\" is not a "
     "port number (want 1-65535; ranges and names are not supported)"},
    {"PolicyPortZero", Policy("rules: [{to: [{operation: {notPorts: ['0']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].to[0].operation.notPorts[0]: \"0\" is not a "
     "port number (want 1-65535; ranges and names are not supported)"},
    {"PolicyPortRange", Policy("rules: [{to: [{operation: {ports: ['80-90']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].to[0].operation.ports[0]: \"80-90\" is not "
     "a port number (want 1-65535; ranges and names are not supported)"},
    {"PolicyPortHigh", Policy("rules: [{to: [{operation: {ports: ['65536']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].to[0].operation.ports[0]: \"65536\" is not "
     "a port number (want 1-65535; ranges and names are not supported)"},
    {"PolicyInnerWildcard",
     Policy("rules: [{from: [{source: {principals: ['cluster.local/*/sa/x']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[0].source.principals[0]: "
     "\"cluster.local/*/sa/x\": '*' is allowed only alone, as a prefix (\"*x\") or as a suffix "
     "(\"x*\")"},
    {"PolicyDoubleWildcard", Policy("rules: [{from: [{source: {namespaces: ['*prod*']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[0].source.namespaces[0]: \"*prod*\": "
     "'*' is allowed only alone, as a prefix (\"*x\") or as a suffix (\"x*\")"},
    {"PolicyEmptyValue", Policy("rules: [{from: [{source: {notNamespaces: ['']}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[0].source.notNamespaces[0]: empty "
     "value is not allowed"},
    {"PolicyFromWithoutSource", Policy("rules: [{from: [{}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[0].source: is required in every "
     "`from` entry"},
    {"PolicyEmptySource", Policy("rules: [{from: [{source: {}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].from[0].source: must set at least one field "
     "(drop the `from` entry to match any source)"},
    {"PolicyToWithoutOperation", Policy("rules: [{to: [{}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].to[0].operation: is required in every `to` "
     "entry"},
    {"PolicyEmptyOperation", Policy("rules: [{to: [{operation: {}}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].to[0].operation: must set at least one "
     "field (drop the `to` entry to match any operation)"},
    {"PolicyUnsupportedWhenKey", Policy("rules: [{when: [{key: connection.sni, values: [a]}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].when[0].key: unsupported condition key "
     "\"connection.sni\"; supported: source.ip, remote.ip, source.namespace, source.principal, "
     "destination.ip, destination.port, and request.* (L7)"},
    {"PolicyWhenNoKey", Policy("rules: [{when: [{values: [a]}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].when[0].key: is required"},
    {"PolicyWhenNoValues", Policy("rules: [{when: [{key: source.ip}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].when[0]: condition \"source.ip\" must set "
     "at least one of values or notValues"},
    {"PolicyWhenBadIp", Policy("rules: [{when: [{key: source.ip, values: [nope]}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].when[0].values[0]: bad CIDR \"nope\" (want "
     "an IP or a CIDR like 10.0.0.0/8): "},
    {"PolicyWhenBadDestinationIp",
     Policy("rules: [{when: [{key: destination.ip, notValues: [10.0.0.1, bad]}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].when[0].notValues[1]: bad CIDR \"bad\" "
     "(want an IP or a CIDR like 10.0.0.0/8): "},
    {"PolicyWhenBadPort", Policy("rules: [{when: [{key: destination.port, values: ['99999']}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].when[0].values[0]: \"99999\" is not a port "
     "number (want 1-65535; ranges and names are not supported)"},
    {"PolicyWhenBadNamespacePattern",
     Policy("rules: [{when: [{key: source.namespace, values: ['a*b']}]}]"),
     "authorization_policy \"prod/deny-db\": rules[0].when[0].values[0]: \"a*b\": '*' is allowed "
     "only alone, as a prefix (\"*x\") or as a suffix (\"x*\")"},
    // peer authentications
    {"PeerAuthNoName", "peerAuthentications: [{namespace: prod}]",
     "peerAuthentications[0]: name: is required"},
    {"PeerAuthDuplicate",
     "peerAuthentications: [{name: x, namespace: prod}, {name: x, namespace: prod}]",
     "peer_authentication \"prod/x\": name: duplicate peer authentication (same namespace and "
     "name)"},
    {"PortLevelWithoutSelector",
     "peerAuthentications: [{name: x, namespace: prod, portLevelMtls: {80: {mode: DISABLE}}}]",
     "peer_authentication \"prod/x\": portLevelMtls: requires a selector with matchLabels "
     "(port-level mTLS applies to selected workloads only, as in Istio)"},
    {"PortLevelWithEmptySelector",
     "peerAuthentications: [{name: x, namespace: prod, selector: {matchLabels: {}}, "
     "portLevelMtls: {80: {mode: DISABLE}}}]",
     "peer_authentication \"prod/x\": portLevelMtls: requires a selector with matchLabels "
     "(port-level mTLS applies to selected workloads only, as in Istio)"},
    {"PortLevelPortZero",
     "peerAuthentications: [{name: x, namespace: prod, selector: {matchLabels: {app: a}}, "
     "portLevelMtls: {0: {mode: DISABLE}}}]",
     "peer_authentication \"prod/x\": portLevelMtls[0]: port 0 is out of range 1-65535"},
    {"NetworkPolicyNoNamespace", "networkPolicies: [{name: x}]",
     "networkPolicies[0]: namespace: is required"},
    {"NetworkPolicyDuplicate",
     "networkPolicies: [{name: x, namespace: a}, {name: x, namespace: a}]",
     "network_policy \"a/x\": name: duplicate network policy (same namespace and name)"},
    {"NetworkPolicyBadCidr",
     "networkPolicies: [{name: x, namespace: a, ingress: [{from: [{cidr: 10.0.0.0/99}]}]}]",
     "network_policy \"a/x\": ingress[0].from[0].cidr: bad CIDR \"10.0.0.0/99\" "},
    {"NetworkPolicyExceptOutside",
     "networkPolicies: [{name: x, namespace: a, ingress: [{from: [{cidr: 10.0.0.0/16, except: "
     "[10.1.0.0/24]}]}]}]",
     "network_policy \"a/x\": ingress[0].from[0].except[0]: \"10.1.0.0/24\" is not inside cidr "
     "\"10.0.0.0/16\""},
    {"NetworkPolicyPortZero",
     "networkPolicies: [{name: x, namespace: a, ingress: [{ports: [{port: 0}]}]}]",
     "network_policy \"a/x\": ingress[0].ports[0].port: port 0 is out of range 1-65535"},
    {"NetworkPolicyEndPortBelow",
     "networkPolicies: [{name: x, namespace: a, ingress: [{ports: [{port: 90, endPort: 80}]}]}]",
     "network_policy \"a/x\": ingress[0].ports[0].endPort: is 80, below port 90"},
    {"NetworkPolicyProtocol",
     "networkPolicies: [{name: x, namespace: a, ingress: [{ports: [{port: 80, protocol: ICMP}]}]}]",
     "network_policy \"a/x\": ingress[0].ports[0].protocol: unknown protocol \"ICMP\" (want "
     "TCP, UDP or SCTP)"},
};

INSTANTIATE_TEST_SUITE_P(Invalid, ValidationTest, testing::ValuesIn(kInvalid),
                         [](const testing::TestParamInfo<InvalidCase>& i) { return i.param.name; });

// Values only reachable through the proto API (the text parser rejects unknown enum names).
TEST(ValidationTest, UnknownEnumNumbers) {
  {
    pb::ConfigSnapshot p;
    auto* w = p.add_workloads();
    w->set_uid("prod/a");
    w->set_namespace_("prod");
    w->set_protocol(static_cast<pb::Workload::Protocol>(7));
    EXPECT_EQ(ConfigSnapshot::FromProto(p).status().message(),
              "workload \"prod/a\": protocol: unknown protocol 7 (want TCP or HBONE)");
  }
  {
    pb::ConfigSnapshot p;
    auto* ap = p.add_authorization_policies();
    ap->set_name("x");
    ap->set_namespace_("prod");
    ap->set_action(static_cast<pb::AuthorizationPolicy::Action>(9));
    EXPECT_EQ(ConfigSnapshot::FromProto(p).status().message(),
              "authorization_policy \"prod/x\": action: unknown action 9 (want ALLOW, DENY or "
              "AUDIT)");
  }
  {
    pb::ConfigSnapshot p;
    auto* pa = p.add_peer_authentications();
    pa->set_name("x");
    pa->set_namespace_("prod");
    pa->mutable_mtls()->set_mode(static_cast<pb::PeerAuthentication::Mode>(9));
    EXPECT_EQ(ConfigSnapshot::FromProto(p).status().message(),
              "peer_authentication \"prod/x\": mtls.mode: unknown mode 9 (want UNSET, DISABLE, "
              "PERMISSIVE, STRICT)");
  }
  {
    pb::ConfigSnapshot p;
    p.set_outbound_traffic_policy(static_cast<pb::ConfigSnapshot::OutboundTrafficPolicy>(4));
    EXPECT_EQ(ConfigSnapshot::FromProto(p).status().message(),
              "snapshot: outboundTrafficPolicy: unknown value 4 (want ALLOW_ANY or REGISTRY_ONLY)");
  }
}

TEST(SnapshotTest, DefaultsAndIndexes) {
  auto s = MustBuild(R"(
workloads:
- {uid: prod/a, name: a, namespace: prod, addresses: [10.0.0.1, 'fd00::1']}
- {uid: prod/b, namespace: prod, serviceAccount: sa-b, workloadName: b-deploy, trustDomain: other.td,
   protocol: HBONE, phase: Failed, addresses: [10.0.0.2]}
- {uid: prod/c, name: c, namespace: prod, phase: Running}
services:
- name: db
  namespace: prod
  addresses: [10.96.0.1, 'fd00:96::1']
  ports: [{port: 80}, {port: 443, targetPort: 8443}]
  endpoints:
  - {workloadUid: prod/a, ready: true}
  - {workloadUid: prod/b}
  - {workloadUid: prod/c, ready: true}
  - {workloadUid: prod/a, ready: true}
)");
  EXPECT_EQ(s->trust_domain(), "cluster.local");
  EXPECT_EQ(s->root_namespace(), "weft-system");
  EXPECT_FALSE(s->outbound_registry_only());
  ASSERT_EQ(s->workloads().size(), 3u);

  const Workload* a = s->FindWorkloadByUid("prod/a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->service_account, "default");
  EXPECT_EQ(a->workload_name, "a");
  EXPECT_EQ(a->trust_domain, "cluster.local");
  EXPECT_EQ(a->protocol, WorkloadProtocol::kTcp);
  EXPECT_TRUE(a->running);
  EXPECT_EQ(a->identity().ToString(), "spiffe://cluster.local/ns/prod/sa/default");

  const Workload* b = s->FindWorkloadByUid("prod/b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->service_account, "sa-b");
  EXPECT_EQ(b->workload_name, "b-deploy");
  EXPECT_EQ(b->trust_domain, "other.td");
  EXPECT_TRUE(b->in_mesh());
  EXPECT_FALSE(b->running);
  EXPECT_EQ(s->FindWorkloadByUid("prod/c")->workload_name, "c");
  EXPECT_EQ(s->FindWorkloadByUid("prod/zz"), nullptr);

  EXPECT_EQ(s->FindWorkloadByAddress(*IpAddr::Parse("10.0.0.1")), a);
  EXPECT_EQ(s->FindWorkloadByAddress(*IpAddr::Parse("fd00::1")), a);
  EXPECT_EQ(s->FindWorkloadByAddress(*IpAddr::Parse("::ffff:10.0.0.2")), b);
  EXPECT_EQ(s->FindWorkloadByAddress(*IpAddr::Parse("10.0.0.9")), nullptr);

  const Service* svc = s->FindServiceByAddress(*IpAddr::Parse("fd00:96::1"));
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(svc, s->FindServiceByAddress(*IpAddr::Parse("10.96.0.1")));
  EXPECT_EQ(s->FindServiceByAddress(*IpAddr::Parse("10.0.0.1")), nullptr);
  EXPECT_EQ(svc->hostname, "db.prod.svc.cluster.local");
  ASSERT_NE(svc->FindPort(80), nullptr);
  EXPECT_EQ(svc->FindPort(80)->target_port, 80);
  EXPECT_EQ(svc->FindPort(443)->target_port, 8443);
  EXPECT_EQ(svc->ready_endpoint_uids, (std::vector<std::string>{"prod/a", "prod/c"}));

  // Which service fronts an endpoint on a target port (inbound metric labels).
  EXPECT_EQ(s->ServiceForEndpoint(*a, 8443), svc);
  EXPECT_EQ(s->ServiceForEndpoint(*a, 80), svc);
  EXPECT_EQ(s->ServiceForEndpoint(*a, 443), nullptr) << "443 is a service port, not a target port";
  EXPECT_EQ(s->ServiceForEndpoint(*b, 80), nullptr) << "prod/b is not a ready endpoint";
}

TEST(SnapshotTest, NetworkPoliciesIndexedByWorkload) {
  SnapshotPtr s = MustBuild(WithWorkloads(R"(
networkPolicies:
- name: np1
  namespace: prod
  workloadUids: [prod/a, gone/uid]
  ingress:
  - from: [{cidr: 10.1.0.0/16, except: [10.1.2.0/24]}]
    ports: [{port: 80, endPort: 90}, {port: 53, protocol: UDP}]
  - {allSources: true, allPorts: true}
- {name: np2, namespace: prod, workloadUids: [prod/a]}
)"));
  ASSERT_EQ(s->network_policies().size(), 2u);
  const Workload* a = s->FindWorkloadByUid("prod/a");
  const Workload* b = s->FindWorkloadByUid("prod/b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto nps = s->NetworkPoliciesFor(*a);
  ASSERT_EQ(nps.size(), 2u);
  EXPECT_EQ(nps[0]->key(), "prod/np1");
  EXPECT_EQ(nps[1]->key(), "prod/np2");
  EXPECT_TRUE(nps[1]->ingress.empty());
  EXPECT_TRUE(s->NetworkPoliciesFor(*b).empty());
  const NetworkRule& r = nps[0]->ingress[0];
  EXPECT_TRUE(r.Matches(*IpAddr::Parse("10.1.0.1"), 85));
  EXPECT_FALSE(r.Matches(*IpAddr::Parse("10.1.2.1"), 85)) << "except";
  EXPECT_FALSE(r.Matches(*IpAddr::Parse("10.2.0.1"), 85)) << "outside cidr";
  EXPECT_FALSE(r.Matches(*IpAddr::Parse("10.1.0.1"), 91)) << "outside range";
  EXPECT_FALSE(r.Matches(*IpAddr::Parse("10.1.0.1"), 53)) << "UDP port never matches TCP";
  EXPECT_TRUE(nps[0]->ingress[1].Matches(*IpAddr::Parse("192.168.0.1"), 1));
}

TEST(SnapshotTest, EmptyHasDefaults) {
  auto e = ConfigSnapshot::Empty();
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e, ConfigSnapshot::Empty());
  EXPECT_EQ(e->trust_domain(), "cluster.local");
  EXPECT_EQ(e->root_namespace(), "weft-system");
  EXPECT_TRUE(e->workloads().empty());
  EXPECT_EQ(e->FindWorkloadByAddress(*IpAddr::Parse("10.0.0.1")), nullptr);
}

TEST(SnapshotTest, PolicyConversion) {
  auto s = MustBuild(WithWorkloads(R"(
authorizationPolicies:
- name: p
  namespace: prod
  selector: {matchLabels: {app: db}}
  action: AUDIT
  dryRun: true
  rules:
  - from: [{source: {principals: ['*'], requestPrincipals: ['iss/*']}}]
    to: [{operation: {ports: ['80'], notPorts: ['81'], methods: [GET]}}]
    when:
    - {key: remote.ip, values: [10.0.0.0/8]}
    - {key: destination.port, notValues: ['22']}
    - {key: source.principal, values: ['*/sa/x']}
    - {key: 'request.headers[x]', values: [y]}
)"));
  ASSERT_EQ(s->authorization_policies().size(), 1u);
  const AuthorizationPolicy& p = s->authorization_policies()[0];
  EXPECT_EQ(p.key(), "prod/p");
  EXPECT_EQ(p.action, AuthzAction::kAudit);
  EXPECT_TRUE(p.dry_run);
  ASSERT_TRUE(p.selector.has_value());
  EXPECT_EQ(p.selector->at("app"), "db");
  ASSERT_EQ(p.rules.size(), 1u);
  const AuthzRule& r = p.rules[0];
  ASSERT_EQ(r.from.size(), 1u);
  EXPECT_TRUE(r.from[0].has_l7);
  EXPECT_EQ(r.from[0].principals[0].kind, StringMatch::Kind::kAny);
  ASSERT_EQ(r.to.size(), 1u);
  EXPECT_EQ(r.to[0].ports, std::vector<uint16_t>{80});
  EXPECT_EQ(r.to[0].not_ports, std::vector<uint16_t>{81});
  EXPECT_TRUE(r.to[0].has_l7());
  ASSERT_EQ(r.when.size(), 4u);
  EXPECT_EQ(r.when[0].kind, AuthzCondition::Kind::kSourceIp);
  EXPECT_TRUE(r.when[0].ip_values[0].Contains(*IpAddr::Parse("10.1.2.3")));
  EXPECT_EQ(r.when[1].kind, AuthzCondition::Kind::kDestinationPort);
  EXPECT_EQ(r.when[1].not_port_values, std::vector<uint16_t>{22});
  EXPECT_EQ(r.when[2].kind, AuthzCondition::Kind::kSourcePrincipal);
  EXPECT_EQ(r.when[2].match_values[0].kind, StringMatch::Kind::kSuffix);
  EXPECT_EQ(r.when[3].kind, AuthzCondition::Kind::kL7);
  EXPECT_TRUE(r.when[3].has_l7());
  EXPECT_FALSE(r.when[0].has_l7());
}

TEST(SnapshotTest, PoliciesForScopes) {
  auto s = MustBuild(R"(
rootNamespace: root
workloads:
- {uid: prod/db, namespace: prod, labels: {app: db}}
- {uid: prod/web, namespace: prod, labels: {app: web}}
- {uid: root/gw, namespace: root, labels: {app: gw}}
authorizationPolicies:
- {name: ns-wide, namespace: prod}
- {name: mesh-wide, namespace: root}
- {name: db-only, namespace: prod, selector: {matchLabels: {app: db}}}
- {name: other-ns, namespace: other}
- {name: root-db, namespace: root, selector: {matchLabels: {app: db}}}
- {name: other-ns-db, namespace: other, selector: {matchLabels: {app: db}}}
- {name: empty-selector, namespace: prod, selector: {}}
)");
  auto names = [&](std::string_view uid) {
    std::vector<std::string> out;
    for (const auto* p : s->PoliciesFor(*s->FindWorkloadByUid(uid))) out.push_back(p->key());
    return out;
  };
  EXPECT_EQ(names("prod/db"),
            (std::vector<std::string>{"prod/ns-wide", "root/mesh-wide", "prod/db-only",
                                      "root/root-db", "prod/empty-selector"}));
  EXPECT_EQ(names("prod/web"),
            (std::vector<std::string>{"prod/ns-wide", "root/mesh-wide", "prod/empty-selector"}));
  EXPECT_EQ(names("root/gw"), (std::vector<std::string>{"root/mesh-wide"}));
}

struct MtlsCase {
  std::string name;
  std::string peer_authns;  // YAML list
  std::string workload_uid;
  uint16_t port;
  MtlsMode want;
};

void PrintTo(const MtlsCase& c, std::ostream* os) {
  *os << c.name;
}

class EffectiveMtlsTest : public testing::TestWithParam<MtlsCase> {};

TEST_P(EffectiveMtlsTest, Precedence) {
  const MtlsCase& c = GetParam();
  std::string yaml = R"(
workloads:
- {uid: prod/db, namespace: prod, labels: {app: db, tier: data}}
- {uid: prod/web, namespace: prod, labels: {app: web}}
- {uid: weft-system/ctl, namespace: weft-system, labels: {app: ctl}}
)";
  if (!c.peer_authns.empty()) yaml += "peerAuthentications:\n" + c.peer_authns;
  auto s = MustBuild(yaml);
  const Workload* w = s->FindWorkloadByUid(c.workload_uid);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(s->EffectiveMtls(*w, c.port), c.want);
}

const MtlsCase kMtls[] = {
    {"DefaultPermissive", "", "prod/db", 80, MtlsMode::kPermissive},
    {"RootStrict", "- {name: m, namespace: weft-system, mtls: {mode: STRICT}}\n", "prod/db", 80,
     MtlsMode::kStrict},
    {"RootUnsetIsPermissive", "- {name: m, namespace: weft-system, mtls: {mode: UNSET}}\n",
     "prod/db", 80, MtlsMode::kPermissive},
    {"NamespaceBeatsRoot",
     "- {name: m, namespace: weft-system, mtls: {mode: STRICT}}\n"
     "- {name: n, namespace: prod, mtls: {mode: PERMISSIVE}}\n",
     "prod/db", 80, MtlsMode::kPermissive},
    {"NamespaceUnsetInheritsRoot",
     "- {name: n, namespace: prod, mtls: {}}\n"
     "- {name: m, namespace: weft-system, mtls: {mode: STRICT}}\n",
     "prod/db", 80, MtlsMode::kStrict},
    {"FirstNamespacePolicyWins",
     "- {name: n1, namespace: prod, mtls: {mode: DISABLE}}\n"
     "- {name: n2, namespace: prod, mtls: {mode: STRICT}}\n",
     "prod/db", 80, MtlsMode::kDisable},
    {"OtherNamespaceIgnored", "- {name: n, namespace: other, mtls: {mode: STRICT}}\n", "prod/db",
     80, MtlsMode::kPermissive},
    {"WorkloadBeatsNamespace",
     "- {name: n, namespace: prod, mtls: {mode: DISABLE}}\n"
     "- {name: w, namespace: prod, selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}\n",
     "prod/db", 80, MtlsMode::kStrict},
    {"WorkloadSelectorMiss",
     "- {name: n, namespace: prod, mtls: {mode: DISABLE}}\n"
     "- {name: w, namespace: prod, selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}\n",
     "prod/web", 80, MtlsMode::kDisable},
    {"WorkloadUnsetInheritsNamespace",
     "- {name: n, namespace: prod, mtls: {mode: STRICT}}\n"
     "- {name: w, namespace: prod, selector: {matchLabels: {app: db}}}\n",
     "prod/db", 80, MtlsMode::kStrict},
    {"PortLevelBeatsWorkload",
     "- {name: w, namespace: prod, selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}, "
     "portLevelMtls: {8080: {mode: DISABLE}}}\n",
     "prod/db", 8080, MtlsMode::kDisable},
    {"PortLevelOtherPortUsesWorkload",
     "- {name: w, namespace: prod, selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}, "
     "portLevelMtls: {8080: {mode: DISABLE}}}\n",
     "prod/db", 80, MtlsMode::kStrict},
    {"PortLevelWithUnsetWorkloadFallsToNamespace",
     "- {name: n, namespace: prod, mtls: {mode: DISABLE}}\n"
     "- {name: w, namespace: prod, selector: {matchLabels: {app: db}}, "
     "portLevelMtls: {5432: {mode: STRICT}}}\n",
     "prod/db", 80, MtlsMode::kDisable},
    {"PortLevelUnsetUsesWorkload",
     "- {name: w, namespace: prod, selector: {matchLabels: {app: db}}, mtls: {mode: PERMISSIVE}, "
     "portLevelMtls: {5432: {mode: UNSET}}}\n",
     "prod/db", 5432, MtlsMode::kPermissive},
    {"PortLevelBeatsRootAndNamespace",
     "- {name: m, namespace: weft-system, mtls: {mode: DISABLE}}\n"
     "- {name: n, namespace: prod, mtls: {mode: DISABLE}}\n"
     "- {name: w, namespace: prod, selector: {matchLabels: {tier: data}}, "
     "portLevelMtls: {5432: {mode: STRICT}}}\n",
     "prod/db", 5432, MtlsMode::kStrict},
    {"FirstMatchingWorkloadPolicyWins",
     "- {name: w1, namespace: prod, selector: {matchLabels: {app: db}}, mtls: {mode: PERMISSIVE}}\n"
     "- {name: w2, namespace: prod, selector: {matchLabels: {tier: data}}, mtls: {mode: STRICT}, "
     "portLevelMtls: {80: {mode: STRICT}}}\n",
     "prod/db", 80, MtlsMode::kPermissive},
    {"RootSelectorOnlyForRootWorkloads",
     "- {name: w, namespace: weft-system, selector: {matchLabels: {app: db}}, mtls: {mode: "
     "STRICT}}\n",
     "prod/db", 80, MtlsMode::kPermissive},
    {"RootNamespaceWorkloadSelector",
     "- {name: m, namespace: weft-system, mtls: {mode: PERMISSIVE}}\n"
     "- {name: w, namespace: weft-system, selector: {matchLabels: {app: ctl}}, mtls: {mode: "
     "STRICT}}\n",
     "weft-system/ctl", 80, MtlsMode::kStrict},
    {"EmptySelectorIsNamespaceWide",
     "- {name: n, namespace: prod, selector: {}, mtls: {mode: STRICT}}\n", "prod/web", 80,
     MtlsMode::kStrict},
};

INSTANTIATE_TEST_SUITE_P(PeerAuthentication, EffectiveMtlsTest, testing::ValuesIn(kMtls),
                         [](const testing::TestParamInfo<MtlsCase>& i) { return i.param.name; });

TEST(SnapshotTest, HttpRoutesAndTrafficPoliciesIndexedByService) {
  SnapshotPtr s = MustBuild(R"(
httpRoutes:
- {name: split, namespace: shop, parentService: shop/reviews, parentPort: 9080,
   rules: [{backends: [{service: shop/reviews-v1, weight: 90}, {service: shop/reviews-v2, weight: 10}]}]}
- {name: split, namespace: shop, parentService: shop/ratings}
- {name: mine, namespace: web, parentService: shop/reviews,
   rules: [{matches: [{pathType: PATH_PREFIX, path: /api}]}]}
trafficPolicies:
- {name: all, namespace: shop, targetService: shop/reviews, retries: {attempts: 2, retryOn: [5xx]}}
- {name: port, namespace: shop, targetService: shop/reviews, targetPort: 9080,
   connectionPool: {maxConnections: 1}}
)");
  ASSERT_EQ(s->http_routes().size(), 3u);
  ASSERT_EQ(s->traffic_policies().size(), 2u);
  std::vector<const HttpRoute*> reviews = s->RoutesForService("shop/reviews");
  ASSERT_EQ(reviews.size(), 2u);
  EXPECT_EQ(reviews[0]->key(), "shop/split");
  EXPECT_EQ(reviews[0]->rules[0].backends[1].weight, 10u);
  EXPECT_EQ(reviews[1]->key(), "web/mine");
  EXPECT_TRUE(reviews[1]->is_consumer());
  EXPECT_EQ(s->RoutesForService("shop/ratings").size(), 1u);
  EXPECT_TRUE(s->RoutesForService("shop/none").empty());
  // A port-specific policy beats the whole-Service one on its port only.
  ASSERT_NE(s->TrafficPolicyFor("shop/reviews", 9080), nullptr);
  EXPECT_EQ(s->TrafficPolicyFor("shop/reviews", 9080)->name, "port");
  ASSERT_NE(s->TrafficPolicyFor("shop/reviews", 80), nullptr);
  EXPECT_EQ(s->TrafficPolicyFor("shop/reviews", 80)->name, "all");
  EXPECT_EQ(s->TrafficPolicyFor("shop/reviews", 80)->retries->attempts, 2u);
  EXPECT_EQ(s->TrafficPolicyFor("shop/ratings", 80), nullptr);
}

TEST(ValidationTest, HttpRoutesAndTrafficPoliciesNameTheObject) {
  const std::pair<std::string, std::string> cases[] = {
      {"httpRoutes: [{name: r, parentService: shop/a}]", "httpRoutes[0]: namespace: is required"},
      {"httpRoutes: [{name: r, namespace: shop, parentService: shop/a, rules: [{matches: "
       "[{pathType: EXACT, path: x}]}]}]",
       "http_route \"shop/r\" (parent \"shop/a\" port 0): rules[0].matches[0].path.value: \"x\" "
       "must start with '/'"},
      {"httpRoutes: [{name: r, namespace: shop, parentService: shop/a}, {name: r, namespace: "
       "shop, parentService: shop/a}]",
       "http_route \"shop/r\" (parent \"shop/a\" port 0): name: duplicate route (same kind, "
       "namespace, name, parent and port)"},
      {"trafficPolicies: [{name: p, namespace: shop, targetService: shop/a, faultInjection: "
       "{abort: {httpStatus: 503, percentage: 150}}}]",
       "traffic_policy \"shop/p\": faultInjection.abort.percentage: 150 is not a percentage "
       "0..100"},
      {"trafficPolicies: [{name: p, namespace: shop, targetService: shop/a}, {name: p, namespace: "
       "shop, targetService: shop/b}]",
       "traffic_policy \"shop/p\": name: duplicate traffic policy (same namespace and name)"},
  };
  for (const auto& [yaml, want] : cases) {
    auto s = Build(yaml);
    ASSERT_FALSE(s.ok()) << yaml;
    EXPECT_EQ(s.status().message(), want);
  }
  // The same route on two parents (or two ports) is two objects, not a duplicate.
  EXPECT_TRUE(Build("httpRoutes: [{name: r, namespace: shop, parentService: shop/a}, {name: r, "
                    "namespace: shop, parentService: shop/a, parentPort: 80}]")
                  .ok());
}

TEST(SnapshotTest, ToJsonRoundTrips) {
  std::string yaml = WithWorkloads(R"(
version: v7
authorizationPolicies:
- {name: a, namespace: prod, rules: [{from: [{source: {namespaces: [prod]}}]}]}
peerAuthentications:
- {name: w, namespace: prod, selector: {matchLabels: {app: db}}, portLevelMtls: {80: {mode: STRICT}}}
)");
  auto proto = ParseConfigText(yaml);
  ASSERT_TRUE(proto.ok()) << proto.status();
  auto s = ConfigSnapshot::FromProto(*proto);
  ASSERT_TRUE(s.ok()) << s.status();
  std::string json = (*s)->ToJson();
  EXPECT_NE(json.find("\"authorizationPolicies\""), std::string::npos) << json;
  pb::ConfigSnapshot back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok()) << json;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, *proto)) << json;
}

TEST(ConfigStoreTest, SetGetSubscribe) {
  ConfigStore store;
  EXPECT_EQ(store.Get(), ConfigSnapshot::Empty());
  std::vector<std::string> seen;
  store.Subscribe([&](const SnapshotPtr& s) { seen.push_back(s->version()); });
  auto s1 = MustBuild("version: one");
  auto s2 = MustBuild("version: two");
  store.Set(s1);
  EXPECT_EQ(store.Get(), s1);
  store.Set(s2);
  EXPECT_EQ(store.Get(), s2);
  EXPECT_EQ(seen, (std::vector<std::string>{"one", "two"}));
  store.Set(nullptr);  // never publishes a null snapshot
  EXPECT_EQ(store.Get(), ConfigSnapshot::Empty());
}

TEST(ConfigStoreTest, ConcurrentReadersSeeWholeSnapshots) {
  ConfigStore store;
  std::vector<SnapshotPtr> snaps;
  for (int i = 0; i < 4; ++i) snaps.push_back(MustBuild("version: v" + std::to_string(i)));
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    do {
      SnapshotPtr s = store.Get();
      ASSERT_NE(s, nullptr);
      EXPECT_TRUE(s->version().empty() || s->version()[0] == 'v');
      ++reads;
    } while (!stop);
  });
  for (int i = 0; i < 2000; ++i) store.Set(snaps[i % snaps.size()]);
  stop = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(store.Get(), snaps[1999 % snaps.size()]);
}

}  // namespace
}  // namespace weft::ztunnel
