// TrafficRegistry: per-policy machines kept across snapshots while their section is unchanged.
#include "ztunnel/traffic/registry.h"

#include <gtest/gtest.h>

#include "ztunnel/state/config_file.h"

namespace weft::ztunnel::traffic {
namespace {

SnapshotPtr Snap(std::string_view yaml) {
  auto proto = ParseConfigText(yaml);
  EXPECT_TRUE(proto.ok()) << proto.status();
  auto s = ConfigSnapshot::FromProto(proto.ok() ? *proto : config::v1::ConfigSnapshot());
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : ConfigSnapshot::Empty();
}

constexpr std::string_view kBase = R"(
workloads:
- {uid: shop/r1, namespace: shop}
- {uid: shop/r2, namespace: shop}
services:
- {name: reviews, namespace: shop, ports: [{port: 9080}],
   endpoints: [{workloadUid: shop/r1, ready: true}, {workloadUid: shop/r2, ready: true}]}
)";

TEST(TrafficRegistryTest, KeepsMachinesWhileTheirSectionIsUnchanged) {
  TrafficRegistry reg;
  EXPECT_EQ(reg.For("shop/reviews", 9080), nullptr);
  const TimePoint t0{};
  reg.Update(Snap(std::string(kBase) + R"(
trafficPolicies:
- {name: p, namespace: shop, targetService: shop/reviews, connectionPool: {maxConnections: 1},
   outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 50}, retries: {attempts: 2}}
)"),
             t0);
  auto st = reg.For("shop/reviews", 9080);
  ASSERT_NE(st, nullptr);
  ASSERT_TRUE(st->breaker && st->outlier && st->budget);
  EXPECT_EQ(st->policy->name, "p");
  auto slot = st->breaker->TryConnection("shop/r1");
  ASSERT_TRUE(slot.has_value());
  // The detector knows the Service's ready endpoints.
  st->outlier->Report("shop/r1", OutlierDetector::Outcome::kError5xx, t0);
  EXPECT_TRUE(st->outlier->IsEjected("shop/r1"));
  EXPECT_EQ(reg.For("shop/other", 9080), nullptr);

  // Same sections, another snapshot (e.g. a retry attempt count changed): same machines.
  reg.Update(Snap(std::string(kBase) + R"(
trafficPolicies:
- {name: p, namespace: shop, targetService: shop/reviews, connectionPool: {maxConnections: 1},
   outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 50}, retries: {attempts: 5}}
)"),
             t0);
  auto again = reg.For("shop/reviews", 9080);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->breaker, st->breaker);
  EXPECT_EQ(again->outlier, st->outlier);
  EXPECT_EQ(again->budget, st->budget);
  EXPECT_EQ(again->policy->retries->attempts, 5u);
  EXPECT_FALSE(again->breaker->TryConnection("shop/r1").has_value());  // counters survived
  EXPECT_EQ(reg.All().size(), 1u);

  // A changed section gets a fresh machine; a removed one is gone.
  reg.Update(Snap(std::string(kBase) + R"(
trafficPolicies:
- {name: p, namespace: shop, targetService: shop/reviews, connectionPool: {maxConnections: 2}}
)"),
             t0);
  auto changed = reg.For("shop/reviews", 9080);
  ASSERT_NE(changed, nullptr);
  EXPECT_NE(changed->breaker, st->breaker);
  EXPECT_EQ(changed->outlier, nullptr);
  EXPECT_EQ(changed->budget, nullptr);
  reg.Update(Snap(kBase), t0);
  EXPECT_EQ(reg.For("shop/reviews", 9080), nullptr);
  // What a caller held stays valid (it keeps its snapshot).
  EXPECT_EQ(st->policy->name, "p");
}

}  // namespace
}  // namespace weft::ztunnel::traffic
