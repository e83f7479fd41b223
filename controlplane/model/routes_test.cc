// Gateway API routes, ReferenceGrant and TrafficPolicy in weftd's model: validation (field path
// and reason), per-parent status, and translation into weft.config.v1.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "common/status.h"
#include "common/testing/temp_dir.h"
#include "config/xds/resources.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"
#include "controlplane/model/model_testing.h"

namespace weft::cp {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;
using namespace model_testing;

// Services reviews (port 9080 "http" and 9090), reviews-v1, reviews-v2 (prod) and ratings
// (namespace backends).
constexpr std::string_view kServices = R"(
- {apiVersion: v1, kind: Namespace, metadata: {name: prod, labels: {weft.dev/mesh: enabled}}}
- apiVersion: v1
  kind: Service
  metadata: {name: reviews, namespace: prod}
  spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 9080}, {port: 9090}]}
- apiVersion: v1
  kind: Service
  metadata: {name: reviews-v1, namespace: prod}
  spec: {clusterIP: 10.96.0.11, ports: [{port: 9080}]}
- apiVersion: v1
  kind: Service
  metadata: {name: reviews-v2, namespace: prod}
  spec: {clusterIP: 10.96.0.12, ports: [{port: 9080}]}
- apiVersion: v1
  kind: Service
  metadata: {name: ratings, namespace: backends}
  spec: {clusterIP: 10.96.0.13, ports: [{port: 9080}]}
)";

json Route(std::string_view yaml) {
  return Yaml(yaml);
}

const RouteStatus* StatusOf(const std::vector<RouteStatus>& all, std::string_view name) {
  for (const RouteStatus& s : all) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound" for parent `i`.
std::string Conditions(const Model& m, std::string_view route, size_t i = 0) {
  auto all = m.RouteStatuses();
  const RouteStatus* s = StatusOf(all, route);
  if (s == nullptr || s->parents.size() <= i) return "<no status>";
  std::string out;
  for (const RouteCondition& c : s->parents[i].conditions) {
    if (!out.empty()) out += " ";
    out += c.type + "=" + c.status + "/" + c.reason;
  }
  return out;
}

std::string Message(const Model& m, std::string_view route, std::string_view type) {
  for (const RouteStatus& s : m.RouteStatuses()) {
    if (s.name != route || s.parents.empty()) continue;
    for (const RouteCondition& c : s.parents[0].conditions) {
      if (c.type == type) return c.message;
    }
  }
  return "";
}

TEST(RouteValidationTest, EveryInvalidFixtureIsRefusedWithItsReason) {
  json cases = Yaml(ReadFile(std::string(WEFT_MODEL_TESTDATA) + "/routes_invalid.yaml").value());
  ASSERT_GT(cases.size(), 25u);
  for (const json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::string want = c["reason"].get<std::string>();
    // weftctl validate's function and the model say the same.
    EXPECT_EQ(ValidateObject("", c["object"]).message(), want);
    Model model;
    ApplyAll(model, kServices);
    absl::Status st = model.Apply(Upsert(c["object"], "local:bad.yaml"));
    EXPECT_EQ(st.message(), want);
    auto rejected = model.Rejected();
    ASSERT_EQ(rejected.size(), 1u);
    EXPECT_EQ(rejected[0].reason, want);
    pb::ConfigSnapshot view = model.NodeView("node-a");
    EXPECT_EQ(view.http_routes_size(), 0);
    EXPECT_EQ(view.traffic_policies_size(), 0);
    const std::string kind = c["object"]["kind"].get<std::string>();
    if ((kind == "HTTPRoute" || kind == "GRPCRoute") && !want.starts_with("apiVersion")) {
      // Kept, so that its Service parent says why it is not applied.
      EXPECT_TRUE(Conditions(model, "r").starts_with("Accepted=False/UnsupportedValue"))
          << Conditions(model, "r");
      EXPECT_EQ(Message(model, "r", "Accepted"), want);
      EXPECT_FALSE(rejected[0].effect.empty());
    }
  }
}

TEST(RouteModelTest, CanarySplitIsTranslatedWithDefaults) {
  Model model;
  ApplyAll(model, kServices);
  ASSERT_TRUE(model
                  .Apply(Upsert(Route(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: prod, generation: 3, creationTimestamp: "2026-01-02T03:04:05Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  hostnames: [reviews.prod.svc.cluster.local]
  rules:
  - name: canary
    matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-user, value: jason}]}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}}}
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: 90}
    - {name: reviews-v2, port: 9080, weight: 10}
    timeouts: {request: 2s, backendRequest: 500ms}
    retry: {codes: [503], attempts: 2, backoff: 100ms}
  - backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: Exact, value: /self}}]
)")))
                  .ok());
  EXPECT_EQ(Conditions(model, "reviews"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  EXPECT_NE(Message(model, "reviews", "Accepted").find("producer route"), std::string::npos);
  auto status = model.RouteStatuses();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0].generation, 3);
  EXPECT_EQ(status[0].parents[0].parent_ref, json({{"group", ""},
                                                   {"kind", "Service"},
                                                   {"namespace", "prod"},
                                                   {"name", "reviews"},
                                                   {"port", 9080}}));

  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.http_routes_size(), 1);
  const pb::HttpRoute& r = view.http_routes(0);
  EXPECT_EQ(r.name(), "reviews");
  EXPECT_EQ(r.namespace_(), "prod");
  EXPECT_EQ(r.kind(), pb::HttpRoute::HTTP_ROUTE);
  EXPECT_EQ(r.parent_service(), "prod/reviews");
  EXPECT_EQ(r.parent_port(), 9080u);
  EXPECT_EQ(r.creation_timestamp_ms(), 1767323045000);
  ASSERT_EQ(r.rules_size(), 3);
  const pb::HttpRouteRule& canary = r.rules(0);
  EXPECT_EQ(canary.name(), "canary");
  EXPECT_EQ(canary.matches(0).path_type(), pb::HttpRouteMatch::PATH_PREFIX);
  EXPECT_EQ(canary.matches(0).headers(0).type(), pb::HttpHeaderMatch::EXACT);
  ASSERT_EQ(canary.backends_size(), 2);
  EXPECT_EQ(canary.backends(0).service(), "prod/reviews-v1");
  EXPECT_EQ(canary.backends(0).weight(), 90u);
  EXPECT_EQ(canary.backends(1).weight(), 10u);
  EXPECT_FALSE(canary.backends(1).invalid());
  EXPECT_EQ(canary.filters(0).request_mirror().percent(), 100u);  // the spec's default
  EXPECT_EQ(canary.filters(0).request_mirror().service(), "prod/reviews-v2");
  EXPECT_EQ(canary.request_timeout_ms(), 2000u);
  EXPECT_EQ(canary.backend_request_timeout_ms(), 500u);
  EXPECT_EQ(canary.retry().attempts(), 2u);
  EXPECT_EQ(canary.retry().backoff_ms(), 100u);
  EXPECT_EQ(canary.retry().codes(0), 503u);
  EXPECT_EQ(r.rules(1).backends(0).weight(), 1u);  // weight defaults to 1
  // GAMMA: a rule without backendRefs goes to the parent Service.
  ASSERT_EQ(r.rules(2).backends_size(), 1);
  EXPECT_EQ(r.rules(2).backends(0).service(), "prod/reviews");
  EXPECT_EQ(r.rules(2).backends(0).port(), 9080u);
}

TEST(RouteModelTest, StatusWriteBackIsNotAChange) {
  Model model;
  ApplyAll(model, kServices);
  json route = Route(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: prod, resourceVersion: "10"}
spec: {parentRefs: [{group: "", kind: Service, name: reviews}]}
)");
  ASSERT_TRUE(model.Apply(Upsert(route)).ok());
  const uint64_t generation = model.generation();
  route["metadata"]["resourceVersion"] = "11";
  route["status"] = {{"parents", json::array()}};
  ASSERT_TRUE(model.Apply(Upsert(route)).ok());
  EXPECT_EQ(model.generation(), generation);
}

TEST(RouteModelTest, MissingParentServiceOrPortIsNoMatchingParentUntilItExists) {
  Model model;
  ApplyAll(model, kServices);
  ASSERT_TRUE(model
                  .Apply(Upsert(Route(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: prod}
spec:
  parentRefs:
  - {group: "", kind: Service, name: details}
  - {group: "", kind: Service, name: reviews, port: 8080}
  - {group: "", kind: Service, name: reviews, sectionName: http}
  - {name: some-gateway}
)")))
                  .ok());
  // The Gateway parent belongs to another controller: no status entry, no route.
  auto status = model.RouteStatuses();
  ASSERT_EQ(status.size(), 1u);
  ASSERT_EQ(status[0].parents.size(), 3u);
  EXPECT_EQ(Conditions(model, "a", 0),
            "Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(status[0].parents[0].conditions[0].message, "Service prod/details does not exist");
  EXPECT_EQ(Conditions(model, "a", 1),
            "Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(status[0].parents[1].conditions[0].message,
            "Service prod/reviews has no TCP port 8080 (its ports: 9080 (http), 9090)");
  EXPECT_EQ(Conditions(model, "a", 2), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.http_routes_size(), 1);                // only the Accepted parent
  EXPECT_EQ(view.http_routes(0).parent_port(), 9080u);  // sectionName resolved

  ASSERT_TRUE(model
                  .Apply(Upsert(Yaml(R"(
apiVersion: v1
kind: Service
metadata: {name: details, namespace: prod}
spec: {clusterIP: 10.96.0.20, ports: [{port: 9080}]}
)")))
                  .ok());
  EXPECT_EQ(Conditions(model, "a", 0), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(model.NodeView("node-a").http_routes_size(), 2);
}

TEST(RouteModelTest, UnresolvedBackendsAreKeptInvalidWithTheirReason) {
  Model model;
  ApplyAll(model, kServices);
  auto apply = [&](std::string_view backend) {
    return model.Apply(Upsert(Route(absl::StrCat(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{backendRefs: [{name: reviews-v1, port: 9080, weight: 3}, )",
                                                 Av(backend), R"(]}]
)"))));
  };
  ASSERT_TRUE(apply("{name: nope, port: 9080}").ok());
  EXPECT_EQ(Conditions(model, "b"), "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound");
  EXPECT_EQ(Message(model, "b", "ResolvedRefs"),
            "spec.rules[0].backendRefs[1]: Service prod/nope does not exist (requests for an "
            "unresolved backendRef are answered 500)");
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.http_routes_size(), 1);
  EXPECT_FALSE(view.http_routes(0).rules(0).backends(0).invalid());
  EXPECT_TRUE(view.http_routes(0).rules(0).backends(1).invalid());

  ASSERT_TRUE(apply("{name: reviews-v2, port: 1234}").ok());
  EXPECT_EQ(Conditions(model, "b"), "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound");
  ASSERT_TRUE(apply("{group: apps, kind: Deployment, name: reviews-v2}").ok());
  EXPECT_EQ(Conditions(model, "b"), "Accepted=True/Accepted ResolvedRefs=False/InvalidKind");
  ASSERT_TRUE(apply("{name: ratings, namespace: backends, port: 9080}").ok());
  EXPECT_EQ(Conditions(model, "b"), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted");
  EXPECT_TRUE(model.NodeView("node-a").http_routes(0).rules(0).backends(1).invalid());

  // A ReferenceGrant in the backend's namespace permits it.
  const json grant = Yaml(R"(
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-prod, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}]
  to: [{group: "", kind: Service, name: ratings}]
)");
  ASSERT_TRUE(model.Apply(Upsert(grant)).ok());
  EXPECT_EQ(Conditions(model, "b"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  EXPECT_FALSE(model.NodeView("node-a").http_routes(0).rules(0).backends(1).invalid());
  // A grant for GRPCRoutes, or from another namespace, does not.
  json other = grant;
  other["spec"]["from"][0]["kind"] = "GRPCRoute";
  ASSERT_TRUE(model.Apply(Upsert(other)).ok());
  EXPECT_EQ(Conditions(model, "b"), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted");
  other["spec"]["from"][0]["kind"] = "HTTPRoute";
  other["spec"]["from"][0]["namespace"] = "dev";
  ASSERT_TRUE(model.Apply(Upsert(other)).ok());
  EXPECT_EQ(Conditions(model, "b"), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted");
}

TEST(RouteModelTest, ConsumerRouteKeepsItsOwnNamespace) {
  Model model;
  ApplyAll(model, kServices);
  ASSERT_TRUE(model
                  .Apply(Upsert(Route(R"(
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: timeout, namespace: frontend}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, namespace: prod}]
  rules: [{timeouts: {request: 100ms}}]
)")))
                  .ok());
  EXPECT_EQ(Conditions(model, "timeout"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  EXPECT_NE(Message(model, "timeout", "Accepted")
                .find("consumer route: applies to clients in namespace frontend"),
            std::string::npos);
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.http_routes_size(), 1);
  EXPECT_EQ(view.http_routes(0).namespace_(), "frontend");  // consumer: not prod
  EXPECT_EQ(view.http_routes(0).parent_service(), "prod/reviews");
  // The parent itself, as the default backend, needs no ReferenceGrant.
  EXPECT_EQ(view.http_routes(0).rules(0).backends(0).service(), "prod/reviews");
  EXPECT_FALSE(view.http_routes(0).rules(0).backends(0).invalid());
}

TEST(RouteModelTest, GrpcRouteMatchesAreCompiledIntoPaths) {
  Model model;
  ApplyAll(model, kServices);
  ASSERT_TRUE(model
                  .Apply(Upsert(Route(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches:
    - method: {service: reviews.v1.Reviews, method: Get}
    - method: {service: reviews.v1.Reviews}
    - method: {method: Get}
    - method: {type: RegularExpression, service: "reviews\\.v[12]\\..*"}
    - headers: [{name: x-canary, value: "yes"}]
    backendRefs: [{name: reviews-v2, port: 9080}]
)")))
                  .ok());
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.http_routes_size(), 1);
  const pb::HttpRoute& r = view.http_routes(0);
  EXPECT_EQ(r.kind(), pb::HttpRoute::GRPC_ROUTE);
  const auto& m = r.rules(0).matches();
  ASSERT_EQ(m.size(), 5);
  EXPECT_EQ(m[0].path_type(), pb::HttpRouteMatch::EXACT);
  EXPECT_EQ(m[0].path(), "/reviews.v1.Reviews/Get");
  EXPECT_EQ(m[1].path_type(), pb::HttpRouteMatch::PATH_PREFIX);
  EXPECT_EQ(m[1].path(), "/reviews.v1.Reviews/");
  EXPECT_EQ(m[2].path_type(), pb::HttpRouteMatch::REGULAR_EXPRESSION);
  EXPECT_EQ(m[2].path(), "/[^/]+/Get");
  EXPECT_EQ(m[3].path_type(), pb::HttpRouteMatch::REGULAR_EXPRESSION);
  EXPECT_EQ(m[3].path(), "/(reviews\\.v[12]\\..*)/([^/]+)");
  EXPECT_EQ(m[4].path_type(), pb::HttpRouteMatch::PATH_UNSET);
  EXPECT_EQ(m[4].headers(0).name(), "x-canary");
  EXPECT_EQ(Conditions(model, "g"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  // Routes are streamed under one key per (route, parent, port).
  EXPECT_EQ(weft::config::xds::HttpRouteKeyName(r), "GRPCRoute/prod/g/prod/reviews/0");
}

TEST(RouteModelTest, TrafficPolicyDefaultsAndPortResolution) {
  Model model;
  ApplyAll(model, kServices);
  ASSERT_TRUE(model
                  .Apply(Upsert(Yaml(R"(
apiVersion: networking.weft.dev/v1
kind: TrafficPolicy
metadata: {name: reviews, namespace: prod}
spec:
  targetRefs: [{group: "", kind: Service, name: reviews, sectionName: http}]
  retries: {attempts: 3, perTryTimeout: 250ms, retryOn: "5xx, reset, 503, unavailable"}
  faultInjection:
    delay: {fixedDelay: 5s, percentage: {value: 10}}
    routes:
    - {name: reviews, sectionName: canary, abort: {grpcStatus: UNAVAILABLE, percentage: 50}}
  connectionPool: {maxConnections: 10, http1MaxPendingRequests: 5, maxRetries: 3}
  outlierDetection: {consecutive5xxErrors: 3}
)")))
                  .ok());
  pb::ConfigSnapshot view = model.NodeView("node-a");
  ASSERT_EQ(view.traffic_policies_size(), 1);
  const pb::TrafficPolicy& p = view.traffic_policies(0);
  EXPECT_EQ(p.target_service(), "prod/reviews");
  EXPECT_EQ(p.target_port(), 9080u);
  EXPECT_EQ(p.retries().attempts(), 3u);
  EXPECT_EQ(p.retries().per_try_timeout_ms(), 250u);
  EXPECT_EQ(std::vector<std::string>(p.retries().retry_on().begin(), p.retries().retry_on().end()),
            (std::vector<std::string>{"5xx", "reset", "unavailable", "retriable-status-codes"}));
  EXPECT_EQ(p.retries().retriable_status_codes(0), 503u);
  EXPECT_DOUBLE_EQ(p.retries().budget().retry_ratio(), 0.2);  // Linkerd's defaults
  EXPECT_EQ(p.retries().budget().min_retries_per_second(), 10u);
  EXPECT_EQ(p.retries().budget().ttl_ms(), 10000u);
  EXPECT_EQ(p.fault_injection().delay().fixed_delay_ms(), 5000u);
  EXPECT_DOUBLE_EQ(p.fault_injection().delay().percentage(), 10);
  ASSERT_TRUE(p.route_fault_injection().contains("prod/reviews#canary"));
  EXPECT_EQ(p.route_fault_injection().at("prod/reviews#canary").abort().grpc_status(), 14);
  EXPECT_EQ(p.connection_pool().max_connections(), 10u);
  EXPECT_EQ(p.connection_pool().max_retries(), 3u);
  EXPECT_EQ(p.outlier_detection().consecutive_5xx_errors(), 3u);
  EXPECT_EQ(p.outlier_detection().interval_ms(), 10000u);  // Istio's defaults
  EXPECT_EQ(p.outlier_detection().base_ejection_time_ms(), 30000u);
  EXPECT_EQ(p.outlier_detection().max_ejection_percent(), 10u);
}

TEST(RouteModelTest, SharedViewIsInStreamKeyOrder) {
  Model model;
  ApplyAll(model, kServices);
  for (const char* name : {"zz", "aa", "mm"}) {
    json r = Route(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}, {group: "", kind: Service, name: reviews-v1}]
)");
    r["metadata"]["name"] = name;
    ASSERT_TRUE(model.Apply(Upsert(r)).ok());
  }
  ASSERT_TRUE(model
                  .Apply(Upsert(Yaml(R"(
apiVersion: networking.weft.dev/v1
kind: TrafficPolicy
metadata: {name: p, namespace: prod}
spec: {targetRefs: [{kind: Service, name: reviews}], connectionPool: {maxConnections: 1}}
)")))
                  .ok());
  SharedView v = model.SharedNodeView("node-a");
  std::vector<weft::config::xds::Key> keys;
  for (const auto& r : v.resources) keys.push_back(weft::config::xds::KeyOf(*r).value());
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(std::adjacent_find(keys.begin(), keys.end()), keys.end());
  size_t routes = 0;
  for (const auto& k : keys) routes += k.kind == pb::ResourceKey::HTTP_ROUTE;
  EXPECT_EQ(routes, 6u);
  EXPECT_EQ(keys.back().kind, pb::ResourceKey::TRAFFIC_POLICY);
}

TEST(RouteModelTest, FixingAnInvalidRouteClearsItsRejection) {
  Model model;
  ApplyAll(model, kServices);
  json r = Route(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{matches: [{path: {type: RegularExpression, value: "/(a"}}]}]
)");
  EXPECT_FALSE(model.Apply(Upsert(r)).ok());
  EXPECT_EQ(model.Rejected().size(), 1u);
  EXPECT_EQ(model.NodeView("n").http_routes_size(), 0);
  r["spec"]["rules"][0]["matches"][0]["path"]["value"] = "/a.*";
  ASSERT_TRUE(model.Apply(Upsert(r)).ok());
  EXPECT_TRUE(model.Rejected().empty());
  EXPECT_EQ(model.NodeView("n").http_routes_size(), 1);
  EXPECT_EQ(Conditions(model, "r"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  ASSERT_TRUE(model.Apply(Delete(r)).ok());
  EXPECT_EQ(model.NodeView("n").http_routes_size(), 0);
  EXPECT_TRUE(model.RouteStatuses().empty());
}

// What `weftctl apply` writes (the local manifest directory) reaches the model the same way.
TEST(RouteModelTest, LocalManifestsCarryRoutesAndTrafficPolicies) {
  Model model;
  ApplyAll(model, kServices);
  testing::TempDir dir;
  dir.Write("traffic.yaml", R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{backendRefs: [{name: reviews-v1, port: 9080, weight: 90}, {name: reviews-v2, port: 9080, weight: 10}]}]
---
apiVersion: networking.weft.dev/v1
kind: TrafficPolicy
metadata: {name: reviews, namespace: prod}
spec:
  targetRefs: [{kind: Service, name: reviews}]
  retries: {attempts: 2, retryOn: 5xx}
)");
  LocalSource source(dir.path(), model.Sink());
  ASSERT_TRUE(source.Start().ok());
  source.Stop();
  pb::ConfigSnapshot view = model.NodeView("node-a");
  EXPECT_EQ(view.http_routes_size(), 1);
  EXPECT_EQ(view.traffic_policies_size(), 1);
  EXPECT_EQ(Conditions(model, "canary"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  EXPECT_TRUE(model.Rejected().empty());
}

// helm/crds: the TrafficPolicy CRD declares exactly the spec fields weftd reads.
TEST(RouteModelTest, TrafficPolicyCrdMatchesWhatWeftdReads) {
  json crd = Yaml(
      ReadFile(std::string(WEFT_HELM_CRDS) + "/trafficpolicies.networking.weft.dev.yaml").value());
  EXPECT_EQ(crd["spec"]["group"], "networking.weft.dev");
  EXPECT_EQ(crd["spec"]["names"]["kind"], "TrafficPolicy");
  const json& spec =
      crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
  std::set<std::string> declared;
  for (const auto& [k, v] : spec.items()) declared.insert(k);
  EXPECT_EQ(declared, (std::set<std::string>{"targetRefs", "retries", "faultInjection",
                                             "connectionPool", "outlierDetection"}));
  // Each declared section is read by weftd: an object using every field validates.
  EXPECT_TRUE(ValidateObject("", Yaml(R"(
apiVersion: networking.weft.dev/v1
kind: TrafficPolicy
metadata: {name: p, namespace: prod}
spec:
  targetRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  retries: {attempts: 2, perTryTimeout: 1s, retryOn: "5xx,503", budget: {retryRatio: 0.1, minRetriesPerSecond: 5, ttl: 5s}}
  faultInjection:
    delay: {fixedDelay: 10ms, percentage: 5}
    abort: {httpStatus: 503, percentage: 1}
    routes: [{name: r, sectionName: s, abort: {grpcStatus: UNAVAILABLE}}]
  connectionPool: {maxConnections: 1, http1MaxPendingRequests: 1, http2MaxRequests: 1, maxRequestsPerConnection: 1, maxRetries: 1}
  outlierDetection: {consecutive5xxErrors: 1, consecutiveGatewayErrors: 1, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 50}
)"))
                  .ok());
  for (const char* section : {"retries", "connectionPool", "outlierDetection"}) {
    std::set<std::string> fields;
    for (const auto& [k, v] : spec[section]["properties"].items()) fields.insert(k);
    EXPECT_FALSE(fields.empty()) << section;
  }
}

}  // namespace
}  // namespace weft::cp
