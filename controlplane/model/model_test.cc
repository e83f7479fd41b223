#include "controlplane/model/model.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model_testing.h"

namespace weft::cp {
namespace {

// The model alone. Tests that also put its views through ztunnel's snapshot and authorizer (the
// data plane's checks) are in tests/integration/model_dataplane_test.cc.

namespace pb = ::weft::config::v1;
using nlohmann::json;
using namespace model_testing;

// ---- validation fixtures: testdata/invalid.yaml = [{name, object, reason}]

TEST(ValidationTest, EveryInvalidFixtureIsRejectedWithItsReason) {
  json cases = Yaml(ReadFile(std::string(WEFT_MODEL_TESTDATA) + "/invalid.yaml").value());
  ASSERT_TRUE(cases.is_array());
  ASSERT_GT(cases.size(), 25u);
  for (const json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    Model model;
    ApplyAll(model, kBase);
    const std::string before = model.NodeView("node-a").SerializeAsString();
    const uint64_t generation = model.generation();
    absl::Status st = model.Apply(Upsert(c["object"], "local:/etc/weft/bad.yaml"));
    const std::string want = c["reason"].get<std::string>();
    ASSERT_FALSE(st.ok());
    // Reasons ending in ": " go on with a library's message (CIDR/IP parsers, protobuf JSON).
    if (want.ends_with(": ")) {
      EXPECT_TRUE(std::string(st.message()).starts_with(want)) << st.message();
    } else {
      EXPECT_EQ(st.message(), want);
    }
    auto rejected = model.Rejected();
    ASSERT_EQ(rejected.size(), 1u);
    EXPECT_EQ(rejected[0].reason, std::string(st.message()));
    EXPECT_EQ(rejected[0].source, "local:/etc/weft/bad.yaml");
    EXPECT_EQ(rejected[0].kind, c["object"]["kind"].get<std::string>());
    EXPECT_EQ(MetricSum(*model.registry(), "weft_cp_objects_rejected_total"), 1);
    EXPECT_EQ(MetricSum(*model.registry(), "weft_cp_rejected_objects"), 1);
    // A NetworkPolicy is enforced fail-closed (for the pods of its namespace, default, where
    // there are none); anything else is simply not used. Nothing else changed.
    const bool netpol = c["object"]["kind"] == "NetworkPolicy";
    EXPECT_EQ(rejected[0].effect.empty(), !netpol) << rejected[0].effect;
    if (!netpol) EXPECT_EQ(model.generation(), generation);
    pb::ConfigSnapshot after = model.NodeView("node-a");
    after.set_version(std::to_string(generation));
    EXPECT_EQ(after.SerializeAsString(), before);
  }
}

TEST(ValidationTest, ValidateObjectMatchesTheModel) {
  EXPECT_TRUE(ValidateObject("", Yaml("{apiVersion: v1, kind: Pod, metadata: {name: a}}")).ok());
  EXPECT_EQ(ValidateObject("", Yaml("{apiVersion: v1, kind: Pod, metadata: {name: a}, "
                                    "status: {phase: Zombie}}"))
                .message(),
            "status.phase: unknown phase \"Zombie\" (want Pending, Running, Succeeded, Failed or "
            "Unknown)");
  // Kinds the model does not use are fine (ignored), and so say IsSupportedKind.
  EXPECT_TRUE(
      ValidateObject("", Yaml("{apiVersion: apps/v1, kind: Deployment, metadata: {name: a}}"))
          .ok());
  EXPECT_FALSE(IsSupportedKind("Deployment"));
  EXPECT_TRUE(IsSupportedKind("NetworkPolicy"));
}

TEST(ValidationTest, BadUpdateKeepsLastGoodVersionUntilFixed) {
  Model model;
  ApplyAll(model, kBase);
  json svc = Yaml(R"(
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod}
spec: {clusterIP: 10.96.0.10, ports: [{port: 5432}]}
)");
  ASSERT_TRUE(model.Apply(Upsert(svc)).ok());
  json bad = svc;
  bad["spec"]["clusterIP"] = "not-an-ip";
  EXPECT_FALSE(model.Apply(Upsert(bad)).ok());
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.services_size(), 1);
  EXPECT_EQ(view.services(0).addresses(0), "10.96.0.10");
  ASSERT_EQ(model.Rejected().size(), 1u);
  EXPECT_EQ(model.Rejected()[0].ns, "prod");
  EXPECT_EQ(model.Rejected()[0].name, "db");
  EXPECT_EQ(model.Rejected()[0].effect, "") << "a rejected Service is simply not used";

  bad["spec"]["clusterIP"] = "10.96.0.11";
  EXPECT_TRUE(model.Apply(Upsert(bad)).ok());
  EXPECT_TRUE(model.Rejected().empty());
  view = model.NodeView("node-a");
  EXPECT_EQ(view.services(0).addresses(0), "10.96.0.11");
  EXPECT_EQ(MetricSum(*model.registry(), "weft_cp_rejected_objects"), 0);
}

TEST(FailClosedTest, ValidateObjectReportsAFailClosedPolicy) {
  absl::Status st = ValidateObject(
      "", Yaml("{apiVersion: security.weft.dev/v1, kind: AuthorizationPolicy, metadata: {name: a}, "
               "spec: {rules: [{when: [{key: connection.sni, values: [x]}]}]}}"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(std::string(st.message()).starts_with("spec.rules[0].when[0].key: unsupported"))
      << st;
}

TEST(ValidationTest, SameObjectFromTwoSourcesIsRejected) {
  Model model;
  json ns = Yaml("{apiVersion: v1, kind: Namespace, metadata: {name: prod}}");
  EXPECT_TRUE(model.Apply(Upsert(ns, "local:/a.yaml")).ok());
  absl::Status st = model.Apply(Upsert(ns, "local:/b.yaml"));
  EXPECT_EQ(st.message(), "already defined by local:/a.yaml");
  // A delete from the other source does not remove it either.
  EXPECT_TRUE(model.Apply(Delete(ns, "local:/b.yaml")).ok());
  EXPECT_TRUE(model.Rejected().empty());
  EXPECT_EQ(model.generation(), 1u);
}

// ---- Istio's own policies (security.istio.io v1 and v1beta1): read exactly as Weft's

// Weft's policies, each valid or fail-closed; every one is also applied under Istio's groups.
constexpr std::string_view kWeftPolicies = R"(
- apiVersion: security.weft.dev/v1
  kind: AuthorizationPolicy
  metadata: {name: allow-web, namespace: prod}
  spec:
    selector: {matchLabels: {app: db}}
    action: ALLOW
    rules:
    - from: [{source: {principals: [cluster.local/ns/prod/sa/web], notIpBlocks: [10.9.0.0/16]}}]
      to: [{operation: {ports: ["5432"]}}]
      when: [{key: source.ip, values: [10.0.0.0/8]}]
- apiVersion: security.weft.dev/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-ns, namespace: prod}
  spec: {action: DENY, rules: [{from: [{source: {namespaces: [jobs]}}]}]}
- apiVersion: security.weft.dev/v1
  kind: AuthorizationPolicy
  metadata: {name: sni, namespace: prod}
  spec: {rules: [{when: [{key: connection.sni, values: [x]}]}]}
- apiVersion: security.weft.dev/v1
  kind: PeerAuthentication
  metadata: {name: db, namespace: prod}
  spec:
    selector: {matchLabels: {app: db}}
    mtls: {mode: STRICT}
    portLevelMtls: {"9090": {mode: PERMISSIVE}}
- apiVersion: security.weft.dev/v1
  kind: PeerAuthentication
  metadata: {name: odd, namespace: prod}
  spec: {mtls: {mode: SOMETIMES}}
)";

struct PolicyResult {
  std::string view;      // the node's policies (JSON)
  std::string rejected;  // every Rejected() entry but its source
};

PolicyResult ApplyPolicies(const std::string& api_version) {
  Model model;
  ApplyAll(model, kTwoNodes);
  for (json o : Yaml(kWeftPolicies)) {
    o["apiVersion"] = api_version;
    (void)model.Apply(Upsert(o));  // the fail-closed ones report an error
  }
  pb::ConfigSnapshot view = model.NodeView("node-b");
  view.clear_workloads();
  view.clear_services();
  view.clear_version();
  PolicyResult r{ToJson(view), ""};
  for (const RejectedObject& o : model.Rejected()) {
    absl::StrAppend(&r.rejected, o.kind, " ", o.ns, "/", o.name, ": ", o.reason, " => ", o.effect,
                    "\n");
  }
  return r;
}

TEST(IstioPolicyTest, IstioV1AndV1beta1ReadExactlyAsWeftV1) {
  const PolicyResult weft = ApplyPolicies("security.weft.dev/v1");
  ASSERT_NE(weft.view.find("allow-web"), std::string::npos) << weft.view;
  ASSERT_NE(weft.rejected.find("connection.sni"), std::string::npos) << weft.rejected;
  ASSERT_NE(weft.rejected.find("SOMETIMES"), std::string::npos) << weft.rejected;
  for (const char* v : {"security.istio.io/v1", "security.istio.io/v1beta1"}) {
    const PolicyResult istio = ApplyPolicies(v);
    EXPECT_EQ(istio.view, weft.view) << v;
    EXPECT_EQ(istio.rejected, weft.rejected) << v;
    for (const json& o : Yaml(kWeftPolicies)) {
      json copy = o;
      copy["apiVersion"] = v;
      EXPECT_EQ(ValidateObject("", copy), ValidateObject("", o)) << v << " " << o.dump();
    }
  }
}

TEST(IstioPolicyTest, AnUnknownIstioVersionIsEnforcedFailClosedWithTheVersionsWanted) {
  for (const char* kind : {"AuthorizationPolicy", "PeerAuthentication"}) {
    json o = Yaml("{apiVersion: security.istio.io/v1alpha1, metadata: {name: a, namespace: prod}}");
    o["kind"] = kind;
    absl::Status st = ValidateObject("", o);
    EXPECT_EQ(st.message(),
              absl::StrCat("apiVersion: \"security.istio.io/v1alpha1\" is not supported for ", kind,
                           " (want security.weft.dev/v1, security.istio.io/v1 or "
                           "security.istio.io/v1beta1)"));
  }
}

// The model keys a policy by kind and namespace/name whatever its group: a Weft and an Istio
// policy of the same name are one object. From two sources (weftd's Kubernetes source gives
// Istio's group its own), the second is rejected as any object defined twice is.
TEST(IstioPolicyTest, SameNameInWeftAndIstioGroupsIsOneObjectFirstSourceWins) {
  Model model;
  ApplyAll(model, kTwoNodes);
  json weft = Yaml(
      "{apiVersion: security.weft.dev/v1, kind: AuthorizationPolicy, metadata: {name: a, "
      "namespace: prod}, spec: {action: DENY, rules: [{}]}}");
  json istio = weft;
  istio["apiVersion"] = "security.istio.io/v1";
  istio["spec"]["action"] = "ALLOW";
  ASSERT_TRUE(model.Apply(Upsert(weft, "kubernetes")).ok());
  absl::Status st = model.Apply(Upsert(istio, "kubernetes/security.istio.io"));
  EXPECT_EQ(st.message(), "already defined by kubernetes");
  ASSERT_EQ(model.Rejected().size(), 1u);
  EXPECT_EQ(model.Rejected()[0].source, "kubernetes/security.istio.io");
  // The Istio group's list completing does not remove the Weft one, nor does its delete.
  ASSERT_TRUE(model
                  .Apply(ObjectEvent{ObjectEvent::Type::kSynced, "kubernetes/security.istio.io",
                                     "AuthorizationPolicy", json()})
                  .ok());
  EXPECT_TRUE(model.Apply(Delete(istio, "kubernetes/security.istio.io")).ok());
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.authorization_policies_size(), 1);
  EXPECT_EQ(view.authorization_policies(0).action(), pb::AuthorizationPolicy::DENY);
  EXPECT_TRUE(model.Rejected().empty());
}

TEST(ValidationTest, UnusedKindsAreIgnoredNotRejected) {
  Model model;
  EXPECT_TRUE(
      model.Apply(Upsert(Yaml("{apiVersion: apps/v1, kind: Deployment, metadata: {name: a}}")))
          .ok());
  EXPECT_TRUE(model.Rejected().empty());
  EXPECT_EQ(model.generation(), 0u);
  EXPECT_EQ(MetricSum(*model.registry(), "weft_cp_objects_ignored_total"), 1);
}

// ---- enrolment

constexpr std::string_view kPod = R"(
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, uid: u-web, labels: {app: web}}
spec: {nodeName: node-a, serviceAccountName: web}
status: {phase: Running, podIP: 10.0.0.1}
)";

pb::Workload::Protocol ProtocolOf(const Model& model) {
  pb::ConfigSnapshot view = model.NodeView("node-a");
  EXPECT_EQ(view.workloads_size(), 1);
  return view.workloads_size() == 1 ? view.workloads(0).protocol()
                                    : pb::Workload::PROTOCOL_UNSPECIFIED;
}

TEST(EnrolmentTest, NamespaceAndPodLabelsFlipProtocolLive) {
  Model model;
  std::vector<NodeSet> notified;
  model.OnChange([&](const NodeSet& n) { notified.push_back(n); });
  json pod = Yaml(kPod);
  json ns = Yaml("{apiVersion: v1, kind: Namespace, metadata: {name: prod}}");
  ASSERT_TRUE(model.Apply(Upsert(pod)).ok());
  EXPECT_EQ(ProtocolOf(model), pb::Workload::TCP) << "namespace not known: not enrolled";
  ASSERT_TRUE(model.Apply(Upsert(ns)).ok());
  EXPECT_EQ(ProtocolOf(model), pb::Workload::TCP) << "namespace without the label";

  ns["metadata"]["labels"]["weft.dev/mesh"] = "enabled";
  ASSERT_TRUE(model.Apply(Upsert(ns)).ok());
  EXPECT_EQ(ProtocolOf(model), pb::Workload::HBONE);
  ASSERT_FALSE(notified.empty());
  EXPECT_TRUE(notified.back().all) << "every view holds every workload";

  pod["metadata"]["labels"]["weft.dev/mesh"] = "disabled";
  ASSERT_TRUE(model.Apply(Upsert(pod)).ok());
  EXPECT_EQ(ProtocolOf(model), pb::Workload::TCP) << "pod opted out";

  pod["metadata"]["labels"].erase("weft.dev/mesh");
  ASSERT_TRUE(model.Apply(Upsert(pod)).ok());
  EXPECT_EQ(ProtocolOf(model), pb::Workload::HBONE);

  ns["metadata"]["labels"]["weft.dev/mesh"] = "disabled";
  ASSERT_TRUE(model.Apply(Upsert(ns)).ok());
  EXPECT_EQ(ProtocolOf(model), pb::Workload::TCP);

  ASSERT_TRUE(model.Apply(Delete(ns)).ok());
  EXPECT_EQ(ProtocolOf(model), pb::Workload::TCP);
  EXPECT_EQ(notified.size(), 7u);
}

// ---- per-node views, notifications, identities

TEST(NodeViewTest, PolicyChangesNotifyOnlyTheNodesTheyApplyTo) {
  Model model;
  ApplyAll(model, kTwoNodes);
  std::vector<NodeSet> notified;
  model.OnChange([&](const NodeSet& n) { notified.push_back(n); });
  json ap = Yaml(R"(
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: db, namespace: prod}
spec: {selector: {matchLabels: {app: db}}, rules: [{from: [{source: {namespaces: [prod]}}]}]}
)");
  ASSERT_TRUE(model.Apply(Upsert(ap)).ok());
  ASSERT_EQ(notified.size(), 1u);
  EXPECT_FALSE(notified[0].all);
  EXPECT_EQ(notified[0].nodes, (std::set<std::string>{"node-b"}));
  EXPECT_EQ(model.NodeView("node-a").authorization_policies_size(), 0);
  EXPECT_EQ(model.NodeView("node-b").authorization_policies_size(), 1);

  ap["spec"]["selector"]["matchLabels"]["app"] = "web";  // moves from node-b to node-a
  ASSERT_TRUE(model.Apply(Upsert(ap)).ok());
  EXPECT_EQ(notified.back().nodes, (std::set<std::string>{"node-a", "node-b"}));
  EXPECT_EQ(model.NodeView("node-a").authorization_policies_size(), 1);
  EXPECT_EQ(model.NodeView("node-b").authorization_policies_size(), 0);

  ASSERT_TRUE(model.Apply(Upsert(ap)).ok());  // unchanged re-delivery: no notification
  EXPECT_EQ(notified.size(), 2u);

  ASSERT_TRUE(model.Apply(Delete(ap)).ok());
  EXPECT_EQ(notified.back().nodes, (std::set<std::string>{"node-a"}));

  // A namespace-wide PeerAuthentication in jobs reaches node-b only; a ServiceAccount nobody.
  ASSERT_TRUE(model
                  .Apply(Upsert(Yaml("{apiVersion: security.weft.dev/v1, kind: "
                                     "PeerAuthentication, metadata: {name: s, namespace: jobs}, "
                                     "spec: {mtls: {mode: STRICT}}}")))
                  .ok());
  EXPECT_EQ(notified.back().nodes, (std::set<std::string>{"node-b"}));
  ASSERT_TRUE(
      model.Apply(Upsert(Yaml("{apiVersion: v1, kind: ServiceAccount, metadata: {name: s}}")))
          .ok());
  EXPECT_TRUE(notified.back().empty());
}

TEST(NodeViewTest, SyncedDeletesWhatTheSourceNoLongerHas) {
  Model model;
  ApplyAll(model, kTwoNodes);  // source "test"
  const ObjectEvent synced{ObjectEvent::Type::kSynced, "test", "Pod", json()};
  ASSERT_TRUE(model.Apply(synced).ok());  // the first list: everything stays
  EXPECT_EQ(model.NodeView("node-a").workloads_size(), 3);
  json web = Yaml(kTwoNodes)[1];
  ASSERT_TRUE(model.Apply(Upsert(web)).ok());  // only web re-listed since the last sync
  ASSERT_TRUE(model.Apply(synced).ok());       // a relist that only had web
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.workloads_size(), 1);
  EXPECT_EQ(view.workloads(0).uid(), "u-web");
  EXPECT_EQ(view.services_size(), 1) << "other kinds untouched";
  EXPECT_EQ(view.services(0).endpoints_size(), 0) << "db pod is gone";
}

// ---- SharedNodeView: the config stream's form of NodeView

pb::ConfigSnapshot SharedToSnapshot(const SharedView& v) {
  pb::ConfigSnapshot out = v.globals;
  for (const auto& r : v.resources) {
    switch (r->kind_case()) {
      case pb::Resource::kWorkload:
        *out.add_workloads() = r->workload();
        break;
      case pb::Resource::kService:
        *out.add_services() = r->service();
        break;
      case pb::Resource::kAuthorizationPolicy:
        *out.add_authorization_policies() = r->authorization_policy();
        break;
      case pb::Resource::kPeerAuthentication:
        *out.add_peer_authentications() = r->peer_authentication();
        break;
      case pb::Resource::kNetworkPolicy:
        *out.add_network_policies() = r->network_policy();
        break;
      default:
        ADD_FAILURE() << "resource without a kind";
    }
  }
  return out;
}

// Random namespaces, pods, services and the three policy kinds (also in the root namespace),
// with labels drawn from a small alphabet so that selectors hit and miss.
class RandomObjects {
 public:
  explicit RandomObjects(uint64_t seed) : rng_(seed) {}
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  std::string Ns() {
    static const char* kNs[] = {"a", "b", "c", "weft-system"};
    return kNs[Pick(4)];
  }
  json Labels() {
    json l = json::object();
    if (Pick(4) != 0) l["app"] = std::string(1, static_cast<char>('p' + Pick(3)));
    if (Pick(3) == 0) l["tier"] = Pick(2) == 0 ? "front" : "back";
    if (Pick(8) == 0) l["weft.dev/mesh"] = "disabled";
    return l;
  }
  json Selector() {
    json s = json::object();
    if (Pick(3) != 0) s["app"] = std::string(1, static_cast<char>('p' + Pick(3)));
    return s;
  }
  json Namespace() {
    json o = {{"apiVersion", "v1"},
              {"kind", "Namespace"},
              {"metadata", {{"name", Ns()}, {"labels", json::object()}}}};
    if (Pick(3) != 0) o["metadata"]["labels"]["weft.dev/mesh"] = "enabled";
    return o;
  }
  json Pod() {
    const int i = Pick(24);
    json o = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", "p" + std::to_string(i)}, {"namespace", Ns()}}},
              {"spec", {{"nodeName", "n" + std::to_string(Pick(4))}}},
              {"status", {{"phase", Pick(10) == 0 ? "Succeeded" : "Running"}}}};
    o["metadata"]["labels"] = Labels();
    // Unique per (ns, name) most of the time; sometimes two pods claim one IP.
    o["status"]["podIP"] = "10.1." + std::to_string(Pick(2)) + "." + std::to_string(i);
    return o;
  }
  json Service() {
    json o = {{"apiVersion", "v1"},
              {"kind", "Service"},
              {"metadata", {{"name", "s" + std::to_string(Pick(6))}, {"namespace", Ns()}}},
              {"spec",
               {{"clusterIP", "10.96.0." + std::to_string(1 + Pick(40))},
                {"ports", json::array({{{"port", 80 + Pick(3)}}})}}}};
    o["spec"]["selector"] = Selector();
    return o;
  }
  json Policy() {
    json o = {{"metadata", {{"name", "x" + std::to_string(Pick(5))}, {"namespace", Ns()}}}};
    json sel = Selector();
    switch (Pick(3)) {
      case 0:
        o["apiVersion"] = "security.weft.dev/v1";
        o["kind"] = "AuthorizationPolicy";
        o["spec"] = {
            {"action", Pick(2) == 0 ? "ALLOW" : "DENY"},
            {"rules",
             json::array({{{"to", json::array({{{"operation", {{"ports", {"8080"}}}}}})}}})}};
        if (!sel.empty()) o["spec"]["selector"] = {{"matchLabels", sel}};
        break;
      case 1:
        o["apiVersion"] = "security.weft.dev/v1";
        o["kind"] = "PeerAuthentication";
        o["spec"] = {{"mtls", {{"mode", Pick(2) == 0 ? "STRICT" : "PERMISSIVE"}}}};
        if (!sel.empty()) o["spec"]["selector"] = {{"matchLabels", sel}};
        break;
      default:
        o["apiVersion"] = "networking.k8s.io/v1";
        o["kind"] = "NetworkPolicy";
        o["spec"] = {
            {"podSelector", {{"matchLabels", sel}}},
            {"ingress",
             json::array(
                 {{{"from", json::array({{{"podSelector", {{"matchLabels", Selector()}}}}})},
                   {"ports", json::array({{{"port", 8080}}})}}})}};
        break;
    }
    return o;
  }
  json Any() {
    switch (Pick(8)) {
      case 0:
        return Namespace();
      case 1:
      case 2:
      case 3:
        return Pod();
      case 4:
        return Service();
      default:
        return Policy();
    }
  }

 private:
  std::mt19937_64 rng_;
};

TEST(SharedNodeViewTest, EqualsNodeViewAndAFreshModelForRandomChanges) {
  int policies_seen = 0, workloads_seen = 0;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(seed);
    RandomObjects gen(seed);
    Model model;
    std::vector<json> applied;
    for (int step = 0; step < 60; ++step) {
      if (!applied.empty() && gen.Pick(6) == 0) {
        const size_t i = static_cast<size_t>(gen.Pick(static_cast<int>(applied.size())));
        const json gone = applied[i];
        (void)model.Apply(Delete(gone));
        auto same_object = [&](const json& o) {
          return o["kind"] == gone["kind"] && o["metadata"]["name"] == gone["metadata"]["name"] &&
                 o["metadata"].value("namespace", "") == gone["metadata"].value("namespace", "");
        };
        applied.erase(std::remove_if(applied.begin(), applied.end(), same_object), applied.end());
      } else {
        json o = gen.Any();
        if (model.Apply(Upsert(o)).ok()) applied.push_back(o);
      }
      if (step % 5 != 4) continue;
      // The incremental model (objects kept across generations) against one built from scratch.
      Model fresh;
      for (const json& o : applied) ASSERT_TRUE(fresh.Apply(Upsert(o)).ok());
      for (const char* node : {"n0", "n1", "n2", "n3", "n-none"}) {
        const pb::ConfigSnapshot want = model.NodeView(node);
        pb::ConfigSnapshot scratch = fresh.NodeView(node), incremental = want;
        scratch.clear_version();
        incremental.clear_version();
        ASSERT_TRUE(google::protobuf::util::MessageDifferencer::Equals(incremental, scratch))
            << node << " step " << step << "\nincremental:\n"
            << ToJson(incremental) << "\nfrom scratch:\n"
            << ToJson(scratch);
        const pb::ConfigSnapshot got = SharedToSnapshot(model.SharedNodeView(node));
        policies_seen += want.authorization_policies_size() + want.peer_authentications_size() +
                         want.network_policies_size();
        workloads_seen += want.workloads_size();
        ASSERT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got, want))
            << node << " step " << step << "\nshared:\n"
            << ToJson(got) << "\nNodeView:\n"
            << ToJson(want);
      }
    }
  }
  EXPECT_GT(policies_seen, 100) << "the random models must exercise policy selection";
  EXPECT_GT(workloads_seen, 100);
}

TEST(SharedNodeViewTest, UnchangedObjectsKeepTheirPointerAcrossGenerations) {
  Model model;
  ApplyAll(model, kTwoNodes);
  const SharedView before = model.SharedNodeView("node-a");
  json web = Yaml(kTwoNodes)[1];
  web["metadata"]["labels"]["version"] = "v2";
  ASSERT_TRUE(model.Apply(Upsert(web)).ok());
  const SharedView after = model.SharedNodeView("node-b");
  ASSERT_EQ(before.resources.size(), after.resources.size());
  EXPECT_NE(before.globals.version(), after.globals.version());
  int changed = 0;
  for (size_t i = 0; i < before.resources.size(); ++i) {
    if (before.resources[i] == after.resources[i]) continue;
    ++changed;
    ASSERT_TRUE(after.resources[i]->has_workload());
    EXPECT_EQ(after.resources[i]->workload().labels().at("version"), "v2");
    EXPECT_FALSE(before.resources[i]->workload().labels().contains("version"))
        << "a published object is never modified";
  }
  EXPECT_EQ(changed, 1) << "only the relabelled pod gets a new pointer";
  // Views of one generation share the objects between nodes.
  const SharedView other = model.SharedNodeView("node-a");
  EXPECT_EQ(other.resources.front(), after.resources.front());
}

// ---- helm/crds: the OpenAPI schemas must cover exactly the proto fields the model reads

// `schema` describes `d`: every field (except `skip`) is a property with the proto's JSON name,
// messages recurse, enums list the proto's value names, and there is nothing extra.
void ExpectSchemaCovers(const json& schema, const google::protobuf::Descriptor* d,
                        const std::set<std::string>& skip, const std::string& path) {
  ASSERT_TRUE(schema.contains("properties")) << path;
  const json& props = schema["properties"];
  std::set<std::string> expected;
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (skip.contains(f->name())) continue;
    expected.insert(f->json_name());
    const std::string fp = path + "." + f->json_name();
    ASSERT_TRUE(props.contains(f->json_name())) << fp << " missing from the CRD schema";
    json s = props[f->json_name()];
    if (f->is_map()) {
      ASSERT_EQ(s["type"], "object") << fp;
      s = s["additionalProperties"];
      f = f->message_type()->FindFieldByName("value");
    } else if (f->is_repeated()) {
      ASSERT_EQ(s["type"], "array") << fp;
      s = s["items"];
    }
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      ExpectSchemaCovers(s, f->message_type(), {}, fp);
    } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_ENUM) {
      std::set<std::string> names;
      for (int v = 0; v < f->enum_type()->value_count(); ++v) {
        names.insert(f->enum_type()->value(v)->name());
      }
      EXPECT_EQ(s["enum"].get<std::set<std::string>>(), names) << fp;
    } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      EXPECT_EQ(s["type"], "string") << fp;
    }
  }
  for (const auto& [k, v] : props.items()) {
    EXPECT_TRUE(expected.contains(k)) << path << "." << k << " is not a proto field";
  }
}

TEST(CrdTest, SchemasMatchTheProto) {
  struct Case {
    std::string file, kind;
    const google::protobuf::Descriptor* d;
  };
  for (const Case& c : {Case{"authorizationpolicies.security.weft.dev.yaml", "AuthorizationPolicy",
                             pb::AuthorizationPolicy::descriptor()},
                        Case{"peerauthentications.security.weft.dev.yaml", "PeerAuthentication",
                             pb::PeerAuthentication::descriptor()}}) {
    SCOPED_TRACE(c.file);
    json crd = Yaml(ReadFile(std::string(WEFT_HELM_CRDS) + "/" + c.file).value());
    ASSERT_TRUE(crd.is_object());
    EXPECT_EQ(crd["apiVersion"], "apiextensions.k8s.io/v1");
    EXPECT_EQ(crd["spec"]["group"], "security.weft.dev");
    EXPECT_EQ(crd["spec"]["names"]["kind"], c.kind);
    ASSERT_EQ(crd["spec"]["versions"].size(), 1u);
    const json& v1 = crd["spec"]["versions"][0];
    EXPECT_EQ(v1["name"], "v1");
    const json& spec = v1["schema"]["openAPIV3Schema"]["properties"]["spec"];
    ExpectSchemaCovers(spec, c.d, {"name", "namespace", "dry_run"}, "spec");
  }
}

// ---- helm/crds: unknown Istio fields reach weftd (to be enforced fail-closed), not pruned away

json Crd(const std::string& file) {
  json crd = Yaml(ReadFile(std::string(WEFT_HELM_CRDS) + "/" + file).value());
  return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
}

// Every mapping with declared properties at or under `schema` keeps unknown fields.
void ExpectPreservesUnknown(const json& schema, const std::string& path) {
  if (schema.contains("properties")) {
    EXPECT_EQ(schema.value("x-kubernetes-preserve-unknown-fields", false), true)
        << path << " would let the API server prune fields weftd must see";
    for (const auto& [k, v] : schema["properties"].items())
      ExpectPreservesUnknown(v, path + "." + k);
  }
  if (schema.contains("items")) ExpectPreservesUnknown(schema["items"], path + "[]");
  if (schema.contains("additionalProperties") && schema["additionalProperties"].is_object()) {
    ExpectPreservesUnknown(schema["additionalProperties"], path + "[*]");
  }
}

// The API server's structural pruning (apiextensions-apiserver pkg/apiserver/schema/pruning):
// fields a mapping's schema does not declare are dropped unless it preserves unknown fields.
void Prune(json& value, const json& schema) {
  if (value.is_object()) {
    const bool preserve = schema.value("x-kubernetes-preserve-unknown-fields", false);
    if (schema.contains("properties")) {
      for (auto it = value.begin(); it != value.end();) {
        if (schema["properties"].contains(it.key())) {
          Prune(it.value(), schema["properties"][it.key()]);
          ++it;
        } else if (preserve) {
          ++it;
        } else {
          it = value.erase(it);
        }
      }
    } else if (schema.contains("additionalProperties") &&
               schema["additionalProperties"].is_object()) {
      for (auto& [k, v] : value.items()) Prune(v, schema["additionalProperties"]);
    } else if (!preserve) {
      value = json::object();
    }
  } else if (value.is_array() && schema.contains("items")) {
    for (auto& v : value) Prune(v, schema["items"]);
  }
}

TEST(CrdTest, IstioCompatiblePartsPreserveUnknownFields) {
  for (const char* file : {"authorizationpolicies.security.weft.dev.yaml",
                           "peerauthentications.security.weft.dev.yaml"}) {
    SCOPED_TRACE(file);
    ExpectPreservesUnknown(Crd(file)["properties"]["spec"], "spec");
  }
}

// Istio fields survive the CRD's pruning: serviceAccounts (which Weft reads as principals) and
// targetRefs (which it does not read: the policy then fails closed).
TEST(CrdTest, IstioFieldsReachWeftdUnpruned) {
  json ap = Yaml(R"(
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: by-sa, namespace: prod}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {serviceAccounts: [prod/client]}}]
)");
  // (metadata is the API server's own business; the CRD schema governs spec.)
  const json schema = Crd("authorizationpolicies.security.weft.dev.yaml")["properties"]["spec"];
  Prune(ap["spec"], schema);
  ASSERT_TRUE(ap["spec"]["rules"][0]["from"][0]["source"].contains("serviceAccounts"))
      << "pruned: " << ap.dump();
  Model model;
  ApplyAll(model, kBase);
  ASSERT_TRUE(model.Apply(Upsert(ap)).ok());
  pb::ConfigSnapshot view = model.NodeView("node-a");
  bool found = false;
  for (const auto& p : view.authorization_policies()) {
    if (p.name() != "by-sa") continue;
    found = true;
    EXPECT_EQ(p.rules(0).from(0).source().principals(0), "*/ns/prod/sa/client");
  }
  EXPECT_TRUE(found);

  ap["spec"]["targetRefs"] = Yaml("[{kind: Service, name: web}]");
  Prune(ap["spec"], schema);
  ASSERT_TRUE(ap["spec"].contains("targetRefs")) << "pruned: " << ap.dump();
  absl::Status st = model.Apply(Upsert(ap));
  EXPECT_TRUE(std::string(st.message()).starts_with("spec.targetRefs: attaches the policy")) << st;
  ASSERT_EQ(model.Rejected().size(), 1u);
  EXPECT_NE(model.Rejected()[0].effect.find("allows nothing"), std::string::npos)
      << model.Rejected()[0].effect;
}

}  // namespace
}  // namespace weft::cp
