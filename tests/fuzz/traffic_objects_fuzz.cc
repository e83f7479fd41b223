// libFuzzer target for the Gateway API and TrafficPolicy objects weftd reads (HTTPRoute,
// GRPCRoute, ReferenceGrant, TrafficPolicy; controlplane/model/routes.h): text ->
// ParseManifests -> the model, against a fixed set of Services so that attachment, backendRef
// resolution, ReferenceGrants and port lookups all run. Checks, per object, that
// `weftctl validate` (ValidateObject) and weftd (Model::Apply) agree exactly on the verdict and
// the reason; and that every view, with its translated routes and policies, passes the data
// plane's ztunnel::ConfigSnapshot::FromProto, and every route status names a Service parent.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "common/status.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"
#include "ztunnel/state/snapshot.h"

namespace {

constexpr size_t kMaxInput = 64 * 1024;

constexpr std::string_view kCluster = R"(
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {nodeName: node-a}
status: {phase: Running, podIP: 10.0.0.1}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: prod}
spec: {clusterIP: 10.96.0.10, selector: {app: web}, ports: [{name: http, port: 9080}, {port: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: prod}
spec: {clusterIP: 10.96.0.11, ports: [{port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: backends}
spec: {clusterIP: 10.96.0.12, ports: [{name: grpc, port: 9080}]}
)";

bool TrafficKind(const std::string& kind) {
  return kind == "HTTPRoute" || kind == "GRPCRoute" || kind == "ReferenceGrant" ||
         kind == "TrafficPolicy";
}

void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s: %s\n", what, detail.c_str());
  std::abort();
}

void CheckViews(const weft::cp::Model& model) {
  auto view = model.NodeView("node-a");
  auto snap = weft::ztunnel::ConfigSnapshot::FromProto(view);
  if (!snap.ok()) Fail("model view rejected by the data plane", snap.status().ToString());
  (void)model.SharedNodeView("node-a");
  for (const weft::cp::RouteStatus& r : model.RouteStatuses()) {
    for (const weft::cp::RouteParentStatus& p : r.parents) {
      if (p.parent_ref.value("kind", "") != "Service" || p.conditions.empty()) {
        Fail("route status without a Service parent or conditions", r.ns + "/" + r.name);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  auto objects =
      weft::cp::ParseManifests(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!objects.ok()) return 0;
  static const auto* cluster = new std::vector<nlohmann::json>(*weft::cp::ParseManifests(kCluster));
  weft::cp::Model model;
  for (const auto& o : *cluster) {
    WEFT_CHECK(model.Apply({weft::cp::ObjectEvent::Type::kUpsert, "base", "", o}).ok());
  }
  for (const auto& o : *objects) {
    const std::string kind = o["kind"].get<std::string>();
    if (!TrafficKind(kind)) continue;  // the manifest fuzzer covers the other kinds
    auto st = model.Apply({weft::cp::ObjectEvent::Type::kUpsert, "fuzz", kind, o});
    WEFT_CHECK(st.ok() || st.code() == absl::StatusCode::kInvalidArgument);
    // One validation, two callers: weftctl validate says exactly what weftd says. (A second
    // object with the same name is "already defined" only for the model, and a repeat is a
    // no-op for it: compare only first appearances.)
    auto alone = weft::cp::ValidateObject("", o);
    if (st.message().find("already defined") == std::string_view::npos &&
        alone.message() != st.message()) {
      Fail("weftctl validate and weftd disagree",
           std::string(alone.message()) + " | " + std::string(st.message()));
    }
  }
  CheckViews(model);
  for (const auto& o : *objects) {
    const std::string kind = o["kind"].get<std::string>();
    if (TrafficKind(kind))
      (void)model.Apply({weft::cp::ObjectEvent::Type::kDelete, "fuzz", kind, o});
  }
  CheckViews(model);
  if (!model.RouteStatuses().empty()) Fail("route status left after every route was deleted", "");
  return 0;
}
