// Route selection cost per request (issue 15 "Benchmark"): N HTTPRoutes (1, 100, 1000) on one
// Service, one rule each, the request matching the middle route. Three shapes:
//   DistinctPrefixes  route i: PathPrefix /svc<i>/api, header x-tenant: t<i>   (the common case)
//   ExactPaths        route i: Exact /item/<i>, method GET
//   SharedPrefix      route i: PathPrefix /api, header x-tenant: t<i>   (only headers differ:
//                     the one shape scanned in precedence order, so it grows with N)
// plus a Miss (404 NR) over DistinctPrefixes. Each iteration is one Router::Select.
#include <benchmark/benchmark.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "ztunnel/traffic/router.h"

namespace weft::ztunnel::traffic {
namespace {

namespace pb = ::weft::config::v1;

enum class Shape { kDistinctPrefixes, kExactPaths, kSharedPrefix };

void AddRoute(pb::ConfigSnapshot* s, Shape shape, int i) {
  pb::HttpRoute* r = s->add_http_routes();
  r->set_name(absl::StrCat("route-", i));
  r->set_namespace_("shop");
  r->set_parent_service("shop/reviews");
  r->set_creation_timestamp_ms(i);
  pb::HttpRouteMatch* m = r->add_rules()->add_matches();
  switch (shape) {
    case Shape::kDistinctPrefixes:
      m->set_path_type(pb::HttpRouteMatch::PATH_PREFIX);
      m->set_path(absl::StrCat("/svc", i, "/api"));
      break;
    case Shape::kExactPaths:
      m->set_path_type(pb::HttpRouteMatch::EXACT);
      m->set_path(absl::StrCat("/item/", i));
      m->set_method("GET");
      break;
    case Shape::kSharedPrefix:
      m->set_path_type(pb::HttpRouteMatch::PATH_PREFIX);
      m->set_path("/api");
      break;
  }
  if (shape != Shape::kExactPaths) {
    pb::HttpHeaderMatch* h = m->add_headers();
    h->set_name("x-tenant");
    h->set_value(absl::StrCat("t", i));
  }
  pb::HttpBackendRef* b = r->mutable_rules(0)->add_backends();
  b->set_service(absl::StrCat("shop/reviews-v", i));
  b->set_weight(1);
}

std::shared_ptr<const Router> Build(Shape shape, int n) {
  pb::ConfigSnapshot s;
  for (int i = 0; i < n; ++i) AddRoute(&s, shape, i);
  auto snap = ConfigSnapshot::FromProto(s);
  WEFT_CHECK(snap.ok());
  return Router::Build(*snap);
}

void Run(benchmark::State& state, Shape shape, bool miss) {
  const int n = static_cast<int>(state.range(0));
  auto router = Build(shape, n);
  const int target = n / 2;
  Headers headers = {{"user-agent", "bench"},
                     {"accept", "*/*"},
                     {"x-tenant", absl::StrCat("t", target)},
                     {"x-request-id", "0f4b6c2e"}};
  std::string path = shape == Shape::kExactPaths ? absl::StrCat("/item/", target)
                     : shape == Shape::kSharedPrefix
                         ? "/api/reviews/1?x=1"
                         : absl::StrCat("/svc", target, "/api/reviews/1?x=1");
  if (miss) path = "/nothing/here";
  RouteRequest req{"web", "GET", path, "reviews.shop.svc.cluster.local:9080", &headers};
  const auto want = miss ? RouteSelection::Kind::kNoMatch : RouteSelection::Kind::kMatched;
  for (auto _ : state) {
    RouteSelection sel = router->Select("shop/reviews", 9080, req);
    benchmark::DoNotOptimize(sel);
    if (sel.kind != want) state.SkipWithError("wrong selection");
  }
  state.counters["routes"] = n;
}

void BM_DistinctPrefixes(benchmark::State& s) {
  Run(s, Shape::kDistinctPrefixes, false);
}
void BM_ExactPaths(benchmark::State& s) {
  Run(s, Shape::kExactPaths, false);
}
void BM_SharedPrefix(benchmark::State& s) {
  Run(s, Shape::kSharedPrefix, false);
}
void BM_Miss(benchmark::State& s) {
  Run(s, Shape::kDistinctPrefixes, true);
}

BENCHMARK(BM_DistinctPrefixes)->Arg(1)->Arg(100)->Arg(1000);
BENCHMARK(BM_ExactPaths)->Arg(1)->Arg(100)->Arg(1000);
BENCHMARK(BM_SharedPrefix)->Arg(1)->Arg(100)->Arg(1000);
BENCHMARK(BM_Miss)->Arg(1)->Arg(100)->Arg(1000);

}  // namespace
}  // namespace weft::ztunnel::traffic

BENCHMARK_MAIN();
