// Helpers shared by weftd's model tests (controlplane/model/model_test.cc) and the tests that
// put the model's views through ztunnel (tests/integration/model_dataplane_test.cc): objects
// from YAML, events, metric sums, and two small fixtures.
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"

namespace weft::cp::model_testing {

using nlohmann::json;

inline json Yaml(std::string_view text) {
  auto j = YamlToJson(text);
  EXPECT_TRUE(j.ok()) << j.status();
  return j.ok() ? *j : json();
}

inline ObjectEvent Upsert(const json& object, std::string source = "test") {
  return ObjectEvent{ObjectEvent::Type::kUpsert, std::move(source), "", object};
}

inline ObjectEvent Delete(const json& object, std::string source = "test") {
  return ObjectEvent{ObjectEvent::Type::kDelete, std::move(source), "", object};
}

inline double MetricSum(prometheus::Registry& registry, const std::string& name) {
  double sum = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) sum += m.counter.value + m.gauge.value;
  }
  return sum;
}

inline std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

// A namespace in the mesh, one pod on node-a (web, 10.0.0.1) and a DENY policy.
inline constexpr std::string_view kBase = R"(
- {apiVersion: v1, kind: Namespace, metadata: {name: prod, labels: {weft.dev/mesh: enabled}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: prod, labels: {app: web}}
  spec: {nodeName: node-a}
  status: {phase: Running, podIP: 10.0.0.1}
- apiVersion: security.weft.dev/v1
  kind: AuthorizationPolicy
  metadata: {name: base, namespace: prod}
  spec: {action: DENY, rules: [{from: [{source: {ipBlocks: [192.0.2.0/24]}}]}]}
)";

inline void ApplyAll(Model& model, std::string_view yaml) {
  for (const json& o : Yaml(yaml)) ASSERT_TRUE(model.Apply(Upsert(o)).ok()) << o.dump();
}

// Two nodes: web on node-a; db (named port pg) and batch (namespace jobs) on node-b; a finished
// pod and a hostNetwork pod (left out of every view); Service db.
inline constexpr std::string_view kTwoNodes = R"(
- {apiVersion: v1, kind: Namespace, metadata: {name: prod, labels: {weft.dev/mesh: enabled}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: prod, uid: u-web, labels: {app: web}}
  spec: {nodeName: node-a, serviceAccountName: web}
  status: {phase: Running, podIP: 10.0.0.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: db, namespace: prod, uid: u-db, labels: {app: db}}
  spec:
    nodeName: node-b
    serviceAccountName: db
    containers: [{name: pg, ports: [{name: pg, containerPort: 5432}]}]
  status: {phase: Running, podIP: 10.0.0.2}
- apiVersion: v1
  kind: Pod
  metadata: {name: batch, namespace: jobs, uid: u-batch}
  spec: {nodeName: node-b, serviceAccountName: runner}
  status: {phase: Running, podIP: 10.0.0.3}
- apiVersion: v1
  kind: Pod
  metadata: {name: done, namespace: jobs, uid: u-done}
  spec: {nodeName: node-a, serviceAccountName: finished}
  status: {phase: Succeeded}
- apiVersion: v1
  kind: Pod
  metadata: {name: host, namespace: kube-system, uid: u-host}
  spec: {nodeName: node-a, hostNetwork: true, serviceAccountName: agent}
  status: {phase: Running, podIP: 192.168.1.10}
- apiVersion: v1
  kind: Service
  metadata: {name: db, namespace: prod}
  spec: {clusterIP: 10.96.0.2, selector: {app: db}, ports: [{port: 5432}]}
)";

}  // namespace weft::cp::model_testing
