// weftd's model (controlplane/model) with the data plane's own checks: every view the model
// builds must be accepted by ztunnel's ConfigSnapshot::FromProto (duplicate keys, addresses
// claimed twice, endpoints of unknown workloads: more than the per-object validation both share
// in config/model), and policies the model translates or enforces fail-closed must decide as
// intended in ztunnel's authorizer. These tests were in controlplane/model/model_test.cc; they
// live here because controlplane/ may not depend on ztunnel/ (docs/architecture.md,
// "Dependencies"). The pure model tests stay beside the model.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "controlplane/model/model.h"
#include "controlplane/model/model_testing.h"
#include "ztunnel/rbac/authorizer.h"
#include "ztunnel/state/snapshot.h"

namespace weft::cp {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;
using namespace model_testing;

// The view must always be acceptable to the data plane.
std::shared_ptr<const ztunnel::ConfigSnapshot> MustBuild(const pb::ConfigSnapshot& view) {
  auto snap = ztunnel::ConfigSnapshot::FromProto(view);
  EXPECT_TRUE(snap.ok()) << snap.status() << "\n" << view.DebugString();
  return snap.ok() ? *snap : ztunnel::ConfigSnapshot::Empty();
}

// ---- translation fixtures: testdata/translate/*.yaml = {node, objects, expect}

class TranslateTest : public testing::TestWithParam<std::string> {};

TEST_P(TranslateTest, NodeViewMatchesExpectation) {
  const std::string path = std::string(WEFT_MODEL_TESTDATA) + "/translate/" + GetParam();
  json fixture = Yaml(ReadFile(path).value());
  ASSERT_TRUE(fixture.is_object()) << path;
  Model model(ModelOptions{.pod_netns_prefix = "/run/netns/"});  // local-mode pods
  for (const json& o : fixture["objects"]) {
    EXPECT_TRUE(model.Apply(Upsert(o)).ok()) << o.dump();
  }
  EXPECT_TRUE(model.Rejected().empty()) << model.Rejected().front().reason;
  const pb::ConfigSnapshot view = model.NodeView(fixture["node"].get<std::string>());
  MustBuild(view);

  pb::ConfigSnapshot want;
  google::protobuf::util::JsonParseOptions opts;
  auto st = google::protobuf::util::JsonStringToMessage(fixture["expect"].dump(), &want, opts);
  ASSERT_TRUE(st.ok()) << st.message();
  // Only the fields the fixture lists are compared, each in full.
  const auto* d = pb::ConfigSnapshot::descriptor();
  for (const auto& [key, value] : fixture["expect"].items()) {
    const auto* field = d->FindFieldByName(key);
    if (field == nullptr) field = d->FindFieldByLowercaseName(key);
    if (field == nullptr) field = d->FindFieldByCamelcaseName(key);
    ASSERT_NE(field, nullptr) << key;
    pb::ConfigSnapshot got_part, want_part;
    got_part.GetReflection()->SwapFields(const_cast<pb::ConfigSnapshot*>(&view), &got_part,
                                         {field});
    want_part.GetReflection()->SwapFields(&want, &want_part, {field});
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got_part, want_part))
        << key << "\ngot:\n"
        << ToJson(got_part) << "\nwant:\n"
        << ToJson(want_part);
  }
}

std::vector<std::string> TranslateFixtures() {
  std::vector<std::string> out;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(WEFT_MODEL_TESTDATA) + "/translate")) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TranslateTest, testing::ValuesIn(TranslateFixtures()),
                         [](const testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param.substr(0, i.param.find('.'));
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// ---- policies weftd cannot use in full: enforced fail-closed (policies.h, docs/security.md)

double Outcome(prometheus::Registry& registry, const std::string& outcome) {
  double sum = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != "weft_cp_objects_rejected_total") continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == "outcome" && l.value == outcome) sum += m.counter.value;
      }
    }
  }
  return sum;
}

TEST(FailClosedTest, EveryFixtureIsEnforcedInItsFailClosedForm) {
  json cases = Yaml(ReadFile(std::string(WEFT_MODEL_TESTDATA) + "/failclosed.yaml").value());
  ASSERT_TRUE(cases.is_array());
  ASSERT_GE(cases.size(), 15u);
  for (const json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    Model model;
    ApplyAll(model, kBase);
    const uint64_t generation = model.generation();
    absl::Status st = model.Apply(Upsert(c["object"], "local:/etc/weft/bad.yaml"));
    const std::string want = c["reason"].get<std::string>();
    ASSERT_FALSE(st.ok());
    // A reason ending in ": ", "; " or ", " is a prefix (a library's message or more follows).
    if (want.ends_with(": ") || want.ends_with("; ") || want.ends_with(", ")) {
      EXPECT_TRUE(std::string(st.message()).starts_with(want)) << st.message();
    } else {
      EXPECT_EQ(st.message(), want);
    }
    auto rejected = model.Rejected();
    ASSERT_EQ(rejected.size(), 1u);
    EXPECT_EQ(rejected[0].reason, std::string(st.message()));
    EXPECT_TRUE(rejected[0].effect.starts_with("fail-closed: ")) << rejected[0].effect;
    EXPECT_EQ(Outcome(*model.registry(), c["label"].get<std::string>()), 1);
    EXPECT_EQ(MetricSum(*model.registry(), "weft_cp_rejected_objects"), 1);
    EXPECT_GT(model.generation(), generation) << "the fail-closed form is in force";
    // The view holds the fail-closed form, and the data plane accepts it.
    pb::ConfigSnapshot view = model.NodeView("node-a");
    MustBuild(view);
    const bool authz = c["object"]["kind"] == "AuthorizationPolicy";
    std::unique_ptr<google::protobuf::Message> want_policy, got_policy;
    if (c["object"]["kind"] == "NetworkPolicy") {
      want_policy = std::make_unique<pb::NetworkPolicy>();
      for (const auto& p : view.network_policies()) {
        if (p.name() == "x") got_policy = std::make_unique<pb::NetworkPolicy>(p);
      }
    } else if (authz) {
      want_policy = std::make_unique<pb::AuthorizationPolicy>();
      for (const auto& p : view.authorization_policies()) {
        if (p.name() == "x") got_policy = std::make_unique<pb::AuthorizationPolicy>(p);
      }
    } else {
      want_policy = std::make_unique<pb::PeerAuthentication>();
      for (const auto& p : view.peer_authentications()) {
        if (p.name() == "x") got_policy = std::make_unique<pb::PeerAuthentication>(p);
      }
    }
    ASSERT_NE(got_policy, nullptr) << "the policy must be in the view:\n" << view.DebugString();
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(c["policy"].dump(), want_policy.get()).ok());
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*got_policy, *want_policy))
        << "got " << ToJson(*got_policy) << "\nwant " << ToJson(*want_policy);
  }
}

constexpr std::string_view kClientPod = R"(
- apiVersion: v1
  kind: Pod
  metadata: {name: client, namespace: prod, labels: {app: client}}
  spec: {nodeName: node-b, serviceAccountName: client}
  status: {phase: Running, podIP: 10.0.0.2}
)";

// What ztunnel decides for client -> web:8080 with the model's view of node-a.
ztunnel::AuthzDecision ClientToWeb(const Model& model) {
  auto snap = MustBuild(model.NodeView("node-a"));
  const ztunnel::Workload* web = snap->FindWorkloadByAddress(*IpAddr::Parse("10.0.0.1"));
  EXPECT_NE(web, nullptr);
  if (web == nullptr) return ztunnel::AuthzDecision{};
  ztunnel::ConnectionInfo conn;
  conn.src_identity = SpiffeId{"cluster.local", "prod", "client"};
  conn.src_ip = *IpAddr::Parse("10.0.0.2");
  conn.dst = SockAddr{*IpAddr::Parse("10.0.0.1"), 8080};
  return ztunnel::Authorize(*snap, *web, conn);
}

// Issue 13, hole 2: a policy weftd rejected used to be absent from the view, so a rejected
// ALLOW left its workloads allow-all and a rejected DENY denied nothing.
TEST(FailClosedTest, RejectedAllowAllowsNothingAndRejectedDenyDenies) {
  Model model;
  ApplyAll(model, kBase);
  ApplyAll(model, kClientPod);
  ASSERT_TRUE(ClientToWeb(model).allowed) << "no policy selects web yet";

  json allow = Yaml(R"(
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-sni, namespace: prod}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {namespaces: [prod]}}]
    when: [{key: connection.sni, values: [web.prod]}]
)");
  EXPECT_FALSE(model.Apply(Upsert(allow)).ok());
  pb::ConfigSnapshot view = model.NodeView("node-a");
  const pb::AuthorizationPolicy* streamed = nullptr;
  for (const auto& p : view.authorization_policies()) {
    if (p.name() == "allow-sni") streamed = &p;
  }
  ASSERT_NE(streamed, nullptr) << "the rejected ALLOW must still be streamed";
  EXPECT_EQ(streamed->action(), pb::AuthorizationPolicy::ALLOW);
  EXPECT_EQ(streamed->selector().match_labels().at("app"), "web");
  EXPECT_EQ(streamed->rules_size(), 0) << "with no usable rule";
  ztunnel::AuthzDecision d = ClientToWeb(model);
  EXPECT_FALSE(d.allowed) << d.reason;
  EXPECT_EQ(Outcome(*model.registry(), "allow_nothing"), 1);

  json deny = Yaml(R"(
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-sni, namespace: prod}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/prod/sa/client]}}]
    when: [{key: connection.sni, values: [web.prod]}]
)");
  EXPECT_FALSE(model.Apply(Upsert(deny)).ok());
  d = ClientToWeb(model);
  EXPECT_FALSE(d.allowed) << d.reason;
  EXPECT_EQ(d.policy, "prod/allow-sni");
  EXPECT_EQ(Outcome(*model.registry(), "deny_widened"), 1);
  ASSERT_EQ(model.Rejected().size(), 1u);
  EXPECT_NE(model.Rejected()[0].effect.find("DENY"), std::string::npos);

  // Fixed: a usable policy replaces the fail-closed form and clears the entry.
  deny["spec"]["rules"][0].erase("when");
  deny["spec"]["rules"][0]["from"][0]["source"]["principals"][0] = "cluster.local/ns/prod/sa/other";
  EXPECT_TRUE(model.Apply(Upsert(deny)).ok());
  EXPECT_TRUE(model.Rejected().empty());
  EXPECT_TRUE(ClientToWeb(model).allowed);
}

TEST(FailClosedTest, ResyncOfAFailClosedPolicyKeepsItListed) {
  Model model;
  ApplyAll(model, kBase);
  json pa = Yaml(R"(
apiVersion: security.weft.dev/v1
kind: PeerAuthentication
metadata: {name: p, namespace: prod}
spec: {mtls: {mode: PERMISSIVE}, portLevelMtls: {"80": {mode: DISABLE}}}
)");
  EXPECT_FALSE(model.Apply(Upsert(pa)).ok());
  const uint64_t generation = model.generation();
  EXPECT_FALSE(model.Apply(Upsert(pa)).ok()) << "the same bytes again are still fail-closed";
  EXPECT_EQ(model.generation(), generation) << "and change nothing";
  ASSERT_EQ(model.Rejected().size(), 1u);
  EXPECT_NE(model.Rejected()[0].effect.find("STRICT"), std::string::npos);
  auto snap = MustBuild(model.NodeView("node-a"));
  const ztunnel::Workload* web = snap->FindWorkloadByAddress(*IpAddr::Parse("10.0.0.1"));
  ASSERT_NE(web, nullptr);
  EXPECT_FALSE(ztunnel::PlaintextAllowed(*snap, *web, 80)) << "a rejected policy is STRICT";
  EXPECT_FALSE(ztunnel::PlaintextAllowed(*snap, *web, 8080));
  // A delete clears it.
  EXPECT_TRUE(model.Apply(Delete(pa)).ok());
  EXPECT_TRUE(model.Rejected().empty());
  EXPECT_EQ(MetricSum(*model.registry(), "weft_cp_rejected_objects"), 0);
}

TEST(NodeViewTest, AllWorkloadsAndServicesOwnPolicies) {
  Model model;
  ApplyAll(model, kTwoNodes);
  for (const char* node : {"node-a", "node-b", "node-without-pods"}) {
    pb::ConfigSnapshot view = model.NodeView(node);
    MustBuild(view);
    EXPECT_EQ(view.workloads_size(), 3) << node << ": hostNetwork and Succeeded pods are left out";
    EXPECT_EQ(view.services_size(), 1);
  }
  EXPECT_EQ(model.Nodes(), (std::vector<std::string>{"node-a", "node-b"}));
  EXPECT_EQ(model.IdentitiesOnNode("node-a"),
            (std::vector<std::string>{"spiffe://cluster.local/ns/prod/sa/web"}));
  EXPECT_EQ(model.IdentitiesOnNode("node-b"),
            (std::vector<std::string>{"spiffe://cluster.local/ns/jobs/sa/runner",
                                      "spiffe://cluster.local/ns/prod/sa/db"}));
  EXPECT_TRUE(model.IdentitiesOnNode("node-c").empty());
  // The CA's check of a pod-bound node token: hostNetwork pods (the node agent) count; the uid
  // must match; terminated pods do not.
  EXPECT_EQ(model.PodNode("kube-system", "host", "u-host"), std::optional<std::string>("node-a"));
  EXPECT_EQ(model.PodNode("kube-system", "host", "u-other"), std::nullopt);
  EXPECT_EQ(model.PodNode("prod", "host", "u-host"), std::nullopt);
  EXPECT_EQ(model.PodNode("jobs", "done", "u-done"), std::nullopt);
}

// ---- NetworkPolicy: translated by the model, enforced by the data plane

TEST(NetworkPolicyTest, TranslatedRulesBiteOnTheRequestedPort) {
  Model model;
  ApplyAll(model, kTwoNodes);
  ASSERT_TRUE(model
                  .Apply(Upsert(Yaml(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: pg}]
  egress: [{}]
)")))
                  .ok());
  EXPECT_EQ(MetricSum(*model.registry(), "weft_cp_networkpolicy_egress_ignored_total"), 1);
  EXPECT_EQ(model.NodeView("node-a").network_policies_size(), 0) << "no selected pod on node-a";
  auto snap = MustBuild(model.NodeView("node-b"));
  ASSERT_EQ(snap->network_policies().size(), 1u);
  const ztunnel::Workload* db = snap->FindWorkloadByUid("u-db");
  ASSERT_NE(db, nullptr);
  auto conn = [](const char* src, uint16_t port) {
    ztunnel::ConnectionInfo c;
    c.src_identity = SpiffeId{"cluster.local", "prod", "web"};
    c.src_ip = *IpAddr::Parse(src);
    c.dst = SockAddr{*IpAddr::Parse("10.0.0.2"), port};
    return c;
  };
  EXPECT_TRUE(ztunnel::Authorize(*snap, *db, conn("10.0.0.1", 5432)).allowed);
  auto wrong_port = ztunnel::Authorize(*snap, *db, conn("10.0.0.1", 22));
  EXPECT_FALSE(wrong_port.allowed);
  EXPECT_EQ(wrong_port.policy, "prod/db");
  EXPECT_FALSE(ztunnel::Authorize(*snap, *db, conn("10.0.0.3", 5432)).allowed) << "batch pod";

  // Relabelling the batch pod as web admits it: pod changes reach every node.
  json batch = Yaml(kTwoNodes)[3];
  batch["metadata"]["namespace"] = "prod";
  batch["metadata"]["labels"] = {{"app", "web"}};
  ASSERT_TRUE(model.Apply(Delete(Yaml(kTwoNodes)[3])).ok());
  ASSERT_TRUE(model.Apply(Upsert(batch)).ok());
  snap = MustBuild(model.NodeView("node-b"));
  db = snap->FindWorkloadByUid("u-db");
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(ztunnel::Authorize(*snap, *db, conn("10.0.0.3", 5432)).allowed);
}

// Any value anywhere in a policy: weftd never crashes, never drops the policy, and the view it
// streams always passes the data plane's checks.
void Mutate(json& j, std::mt19937_64& rng) {
  std::vector<json*> nodes;
  std::function<void(json&)> collect = [&](json& n) {
    nodes.push_back(&n);
    if (n.is_object() || n.is_array()) {
      for (auto& c : n) collect(c);
    }
  };
  collect(j["spec"]);
  json& target = *nodes[rng() % nodes.size()];
  const json kValues[] = {json("x"),
                          json("*"),
                          json(""),
                          json(80),
                          json(-1),
                          json(true),
                          json(nullptr),
                          json::array(),
                          json::array({"10.0.0.0/33", "a*b"}),
                          json::object(),
                          json{{"serviceAccounts", {"a"}}},
                          json{{"key", "x"}}};
  target = kValues[rng() % std::size(kValues)];
}

TEST(FailClosedTest, RandomDamageToAnyPartNeverDropsThePolicyOrBreaksTheView) {
  const json policies[] = {Yaml(R"(
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: prod}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from: [{source: {principals: [a], ipBlocks: [10.0.0.0/8]}}, {source: {namespaces: [b]}}]
    to: [{operation: {ports: ["80"], methods: [GET]}}]
    when: [{key: source.ip, values: [10.1.0.0/16]}, {key: "request.headers[x]", values: [y]}]
  - when: [{key: destination.port, notValues: ["22"]}]
)"),
                           Yaml(R"(
apiVersion: security.weft.dev/v1
kind: PeerAuthentication
metadata: {name: p, namespace: prod}
spec: {selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, portLevelMtls: {"80": {mode: DISABLE}}}
)")};
  std::mt19937_64 rng(13);
  int fail_closed = 0;
  for (int i = 0; i < 600; ++i) {
    json p = policies[i % 2];
    if (i % 4 < 2) p["spec"]["action"] = (i % 8 < 4) ? "ALLOW" : "DENY";
    if (p["kind"] == "PeerAuthentication") p["spec"].erase("action");
    for (int m = 0; m < 1 + i % 3; ++m) Mutate(p, rng);
    Model model;
    ApplyAll(model, kBase);
    const uint64_t generation = model.generation();
    absl::Status st = model.Apply(Upsert(p));
    MustBuild(model.NodeView("node-a"));
    ASSERT_GT(model.generation(), generation) << "dropped: " << p.dump() << "\n" << st;
    fail_closed += st.ok() ? 0 : 1;
    EXPECT_EQ(model.Rejected().size(), st.ok() ? 0u : 1u) << p.dump();
  }
  EXPECT_GT(fail_closed, 300);
}

}  // namespace
// Istio's serviceAccounts (issue 17) decide as the principals they name: "<sa>" is in the
// policy's namespace, "<ns>/<sa>" names both, and nothing else matches.
TEST(FailClosedTest, IstioServiceAccountsAllowOnlyTheAccountTheyName) {
  for (const auto& [accounts, allowed] :
       {std::pair{"[client]", true}, std::pair{"[prod/client]", true},
        std::pair{"[jobs/client]", false}, std::pair{"[prod/other]", false}}) {
    Model model;
    ApplyAll(model, kBase);
    ApplyAll(model, kClientPod);
    ASSERT_TRUE(model
                    .Apply(Upsert(Yaml(absl::StrCat(
                        "{apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: "
                        "{name: by-sa, namespace: prod}, spec: {selector: {matchLabels: {app: "
                        "web}}, rules: [{from: [{source: {serviceAccounts: ",
                        accounts, "}}]}]}}"))))
                    .ok());
    EXPECT_EQ(ClientToWeb(model).allowed, allowed) << accounts;
  }
}

}  // namespace weft::cp
