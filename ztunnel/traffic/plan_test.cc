// PlanRequest: the per-request decisions in order (route, fault, redirect, filters, backend,
// mirrors, timeouts, retries).
#include "ztunnel/traffic/plan.h"

#include <gtest/gtest.h>

#include "ztunnel/state/config_file.h"

namespace weft::ztunnel::traffic {
namespace {

std::shared_ptr<const Router> RouterFor(std::string_view yaml) {
  auto proto = ParseConfigText(yaml);
  EXPECT_TRUE(proto.ok()) << proto.status();
  auto snap = ConfigSnapshot::FromProto(proto.ok() ? *proto : config::v1::ConfigSnapshot());
  EXPECT_TRUE(snap.ok()) << snap.status();
  return Router::Build(snap.ok() ? *snap : ConfigSnapshot::Empty());
}

constexpr std::string_view kConfig = R"(
services:
- {name: reviews, namespace: shop, ports: [{port: 9080}]}
- {name: plain, namespace: shop, ports: [{port: 80}]}
httpRoutes:
- name: r
  namespace: shop
  parentService: shop/reviews
  rules:
  - name: api
    matches: [{pathType: PATH_PREFIX, path: /api}]
    filters:
    - requestHeaderModifier: {set: [{name: x-set, value: "1"}], remove: [x-drop]}
    - responseHeaderModifier: {add: [{name: x-resp, value: "1"}]}
    - urlRewrite: {hostname: backend.shop, path: {type: REPLACE_PREFIX_MATCH, value: /v2}}
    - requestMirror: {service: shop/shadow, percent: 100}
    - requestMirror: {service: shop/never, percent: 0}
    backends:
    - {service: shop/reviews-v0, weight: 0}
    - {service: shop/reviews-v1, weight: 1, filters: [{requestHeaderModifier: {add: [{name: x-backend, value: v1}]}}]}
    requestTimeoutMs: 2000
    retry: {attempts: 2, codes: [503]}
  - name: old
    matches: [{pathType: EXACT, path: /old}]
    filters: [{requestRedirect: {hostname: example.org, statusCode: 301}}]
  - name: broken
    matches: [{pathType: EXACT, path: /broken}]
    backends: [{service: gone, invalid: true}]
  - name: faulty
    matches: [{pathType: EXACT, path: /faulty}]
    backends: [{service: shop/reviews}]
trafficPolicies:
- name: p
  namespace: shop
  targetService: shop/reviews
  retries: {attempts: 4, retryOn: [5xx]}
  routeFaultInjection:
    "shop/r#faulty": {delay: {fixedDelayMs: 7, percentage: 100}, abort: {grpcStatus: 14, percentage: 100}}
- name: q
  namespace: shop
  targetService: shop/plain
  retries: {attempts: 1, retryOn: [reset]}
  faultInjection: {abort: {httpStatus: 503, percentage: 100}}
)";

uint64_t Zero() {
  return 0;
}

RequestPlan Plan(const Router& router, int service, std::string path, Headers h = {}) {
  const config::Service& svc = router.snapshot().services()[service];
  uint16_t port = svc.ports[0].port;
  return PlanRequest(router, svc, port,
                     PlanInput{"shop", "GET", path, "reviews:9080", std::move(h)}, Zero);
}

TEST(PlanTest, MatchedRuleForwardsWithItsFilters) {
  auto router = RouterFor(kConfig);
  RequestPlan p = Plan(*router, 0, "/api/users?x=1", {{"x-drop", "a"}, {"x-keep", "b"}});
  ASSERT_EQ(p.action, RequestPlan::Action::kForward);
  EXPECT_EQ(p.selection.rule->name, "api");
  EXPECT_EQ(p.backend_service, "shop/reviews-v1");  // the weight-0 backend is never chosen
  EXPECT_EQ(p.backend_port, 9080);
  EXPECT_EQ(p.authority, "backend.shop");
  EXPECT_EQ(p.path, "/v2/users?x=1");
  EXPECT_EQ(p.headers, (Headers{{"x-keep", "b"}, {"x-set", "1"}, {"x-backend", "v1"}}));
  ASSERT_EQ(p.mirrors.size(), 1u);
  EXPECT_EQ(p.mirrors[0]->service, "shop/shadow");
  EXPECT_EQ(p.request_timeout_ms, 2000u);
  EXPECT_EQ(p.retry.attempts, 2u);  // the rule's retry beats the policy's
  EXPECT_EQ(p.retry.status_codes, (std::vector<uint16_t>{503}));
  ASSERT_NE(p.rule_response_headers, nullptr);
  EXPECT_EQ(p.rule_response_headers->add[0].name, "x-resp");
  EXPECT_EQ(p.backend_response_headers, nullptr);
  EXPECT_EQ(p.delay_ms, 0u);
}

TEST(PlanTest, LocalReplies) {
  auto router = RouterFor(kConfig);
  RequestPlan p = Plan(*router, 0, "/nothing");
  EXPECT_EQ(p.action, RequestPlan::Action::kLocalReply);
  EXPECT_EQ(p.status, 404);
  EXPECT_EQ(p.response_flags, "NR");

  p = Plan(*router, 0, "/old?a=b");
  EXPECT_EQ(p.action, RequestPlan::Action::kLocalReply);
  EXPECT_EQ(p.status, 301);
  EXPECT_EQ(p.location, "http://example.org:9080/old?a=b");
  EXPECT_EQ(p.response_flags, "");

  p = Plan(*router, 0, "/broken");
  EXPECT_EQ(p.status, 500);

  p = Plan(*router, 0, "/faulty");  // the rule's fault: delay, then a gRPC abort
  EXPECT_EQ(p.action, RequestPlan::Action::kLocalReply);
  EXPECT_EQ(p.delay_ms, 7u);
  EXPECT_EQ(p.status, 200);
  EXPECT_EQ(p.grpc_status, 14);
  EXPECT_EQ(p.response_flags, "FI");
}

TEST(PlanTest, NoRoutesForwardsToTheServiceWithItsPolicy) {
  auto router = RouterFor(kConfig);
  const config::Service& plain = router->snapshot().services()[1];
  RequestPlan p = PlanRequest(*router, plain, 80, PlanInput{"shop", "GET", "/", "plain", {}},
                              [] { return ~uint64_t{0}; });
  // faultInjection aborts 100 %: even the highest draw aborts.
  EXPECT_EQ(p.action, RequestPlan::Action::kLocalReply);
  EXPECT_EQ(p.status, 503);
  EXPECT_EQ(p.response_flags, "FI");

  auto no_fault = RouterFor(R"(
services:
- {name: plain, namespace: shop, ports: [{port: 80}]}
trafficPolicies:
- {name: q, namespace: shop, targetService: shop/plain, retries: {attempts: 1, retryOn: [reset]}}
)");
  const config::Service& svc = no_fault->snapshot().services()[0];
  p = PlanRequest(*no_fault, svc, 80, PlanInput{"shop", "GET", "/x", "plain", {{"a", "b"}}}, Zero);
  ASSERT_EQ(p.action, RequestPlan::Action::kForward);
  EXPECT_EQ(p.selection.kind, RouteSelection::Kind::kNoRoutes);
  EXPECT_EQ(p.backend_service, "shop/plain");
  EXPECT_EQ(p.backend_port, 80);
  EXPECT_EQ(p.path, "/x");
  EXPECT_EQ(p.headers, (Headers{{"a", "b"}}));
  EXPECT_EQ(p.retry.attempts, 1u);
  EXPECT_EQ(p.retry.retry_on, config::kRetryOnReset);
}

}  // namespace
}  // namespace weft::ztunnel::traffic
