#include "config/xds/resources.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "config/xds/testing.h"

namespace weft::config::xds {
namespace {

namespace pb = ::weft::config::v1;

using testing::WorkloadRes;

TEST(XdsResources, KeysComeFromUidOrNamespaceAndName) {
  auto k = KeyOf(WorkloadRes("ns/a", "10.0.0.1"));
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->kind, pb::ResourceKey::WORKLOAD);
  EXPECT_EQ(k->name, "ns/a");

  pb::Resource svc;
  svc.mutable_service()->set_namespace_("prod");
  svc.mutable_service()->set_name("db");
  k = KeyOf(svc);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(KeyString(*k), "SERVICE/prod/db");

  pb::Resource nameless;
  nameless.mutable_authorization_policy()->set_namespace_("prod");
  EXPECT_FALSE(KeyOf(nameless).ok());
  EXPECT_FALSE(KeyOf(pb::Resource{}).ok());  // no kind
  EXPECT_FALSE(KeyOf(WorkloadRes("", "10.0.0.1")).ok());
}

TEST(XdsResources, DeterministicBytesIgnoreMapInsertionOrder) {
  pb::Workload a, b;
  for (int i = 0; i < 20; ++i) (*a.mutable_labels())[std::to_string(i)] = "v";
  for (int i = 19; i >= 0; --i) (*b.mutable_labels())[std::to_string(i)] = "v";
  EXPECT_EQ(DeterministicBytes(a), DeterministicBytes(b));
}

TEST(XdsResources, FullThenDeltaApply) {
  ResourceSet set;
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  full.set_trust_domain("example.org");
  *full.add_upserted() = WorkloadRes("ns/b", "10.0.0.2");
  *full.add_upserted() = WorkloadRes("ns/a", "10.0.0.1");
  ASSERT_TRUE(set.Apply(full).ok());
  pb::ConfigSnapshot s = set.ToSnapshot("1");
  EXPECT_EQ(s.version(), "1");
  EXPECT_EQ(s.trust_domain(), "example.org");
  ASSERT_EQ(s.workloads_size(), 2);
  EXPECT_EQ(s.workloads(0).uid(), "ns/a");  // key order, not arrival order

  pb::ConfigResponse delta;
  delta.set_trust_domain("example.org");
  *delta.add_upserted() = WorkloadRes("ns/a", "10.0.0.9");
  pb::ResourceKey* rm = delta.add_removed();
  rm->set_kind(pb::ResourceKey::WORKLOAD);
  rm->set_name("ns/b");
  ASSERT_TRUE(set.Apply(delta).ok());
  s = set.ToSnapshot("2");
  ASSERT_EQ(s.workloads_size(), 1);
  EXPECT_EQ(s.workloads(0).addresses(0), "10.0.0.9");
}

TEST(XdsResources, BadDeltaLeavesTheSetUnchanged) {
  ResourceSet set;
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  *full.add_upserted() = WorkloadRes("ns/a", "10.0.0.1");
  ASSERT_TRUE(set.Apply(full).ok());
  std::string before = DeterministicBytes(set.ToSnapshot("1"));

  pb::ConfigResponse bad;
  *bad.add_upserted() = WorkloadRes("ns/c", "10.0.0.3");
  bad.add_upserted();  // no kind
  auto st = set.Apply(bad);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("upserted[1]"), std::string::npos) << st;

  pb::ConfigResponse conflict;
  *conflict.add_upserted() = WorkloadRes("ns/c", "10.0.0.3");
  pb::ResourceKey* rm = conflict.add_removed();
  rm->set_kind(pb::ResourceKey::WORKLOAD);
  rm->set_name("ns/c");
  EXPECT_FALSE(set.Apply(conflict).ok());

  pb::ConfigResponse unknown_kind;
  unknown_kind.add_removed()->set_name("x");
  EXPECT_FALSE(set.Apply(unknown_kind).ok());

  EXPECT_EQ(DeterministicBytes(set.ToSnapshot("1")), before);
}

TEST(XdsResources, CanonicalizeSortsAndDropsDuplicates) {
  pb::ConfigSnapshot s;
  s.set_root_namespace("mesh");
  for (const char* uid : {"z", "a", "m", "a"}) s.add_workloads()->set_uid(uid);
  s.add_workloads();  // no uid: dropped
  pb::ConfigSnapshot c = Canonicalize(s, "7");
  EXPECT_EQ(c.version(), "7");
  EXPECT_EQ(c.root_namespace(), "mesh");
  ASSERT_EQ(c.workloads_size(), 3);
  EXPECT_EQ(c.workloads(0).uid(), "a");
  EXPECT_EQ(c.workloads(2).uid(), "z");
}

TEST(XdsResources, OutboundTrafficPolicyTravelsWithEveryResponse) {
  pb::ConfigSnapshot s;
  s.set_outbound_traffic_policy(pb::ConfigSnapshot::REGISTRY_ONLY);
  pb::ConfigResponse r;
  CopyGlobals(s, &r);
  pb::ConfigSnapshot back;
  CopyGlobals(r, &back);
  EXPECT_EQ(back.outbound_traffic_policy(), pb::ConfigSnapshot::REGISTRY_ONLY);
  EXPECT_TRUE(UncarriedFields(s).empty()) << "every mesh-wide field must reach the nodes";
}

pb::Resource RouteRes(const std::string& name, const std::string& parent, uint32_t port,
                      const std::string& backend) {
  pb::Resource r;
  pb::HttpRoute* route = r.mutable_http_route();
  route->set_namespace_("prod");
  route->set_name(name);
  route->set_parent_service(parent);
  route->set_parent_port(port);
  pb::HttpBackendRef* b = route->add_rules()->add_backends();
  b->set_service(backend);
  b->set_weight(1);
  return r;
}

TEST(XdsResources, HttpRoutesAreKeyedPerParentAndPort) {
  // One route attached to two Services (and to one of them on two ports) is three resources.
  auto a = KeyOf(RouteRes("reviews", "prod/reviews", 0, "prod/v1"));
  auto b = KeyOf(RouteRes("reviews", "prod/ratings", 0, "prod/v1"));
  auto c = KeyOf(RouteRes("reviews", "prod/reviews", 9080, "prod/v1"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(KeyString(*a), "HTTP_ROUTE/HTTPRoute/prod/reviews/prod/reviews/0");
  EXPECT_NE(*a, *b);
  EXPECT_NE(*a, *c);
  pb::Resource grpc = RouteRes("reviews", "prod/reviews", 0, "prod/v1");
  grpc.mutable_http_route()->set_kind(pb::HttpRoute::GRPC_ROUTE);
  EXPECT_EQ(KeyOf(grpc)->name, "GRPCRoute/prod/reviews/prod/reviews/0");
  EXPECT_FALSE(KeyOf(RouteRes("reviews", "", 0, "prod/v1")).ok());  // no parent

  pb::Resource tp;
  tp.mutable_traffic_policy()->set_namespace_("prod");
  tp.mutable_traffic_policy()->set_name("reviews");
  EXPECT_EQ(KeyString(KeyOf(tp).value()), "TRAFFIC_POLICY/prod/reviews");
}

TEST(XdsResources, RoutesAndTrafficPoliciesApplyAsDeltas) {
  SnapshotSet set;
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  *full.add_upserted() = RouteRes("r", "prod/reviews", 0, "prod/v1");
  *full.add_upserted() = RouteRes("r", "prod/ratings", 0, "prod/v1");
  pb::Resource tp;
  tp.mutable_traffic_policy()->set_namespace_("prod");
  tp.mutable_traffic_policy()->set_name("reviews");
  tp.mutable_traffic_policy()->mutable_connection_pool()->set_max_connections(5);
  *full.add_upserted() = tp;
  ASSERT_TRUE(set.Apply(full).ok());
  set.Commit();
  ASSERT_EQ(set.snapshot().http_routes_size(), 2);
  EXPECT_EQ(set.snapshot().http_routes(0).parent_service(), "prod/ratings");  // key order
  ASSERT_EQ(set.snapshot().traffic_policies_size(), 1);

  // The canary shifts on one parent; the other parent's copy goes.
  pb::ConfigResponse delta;
  *delta.add_upserted() = RouteRes("r", "prod/reviews", 0, "prod/v2");
  pb::ResourceKey* rm = delta.add_removed();
  rm->set_kind(pb::ResourceKey::HTTP_ROUTE);
  rm->set_name("HTTPRoute/prod/r/prod/ratings/0");
  ASSERT_TRUE(set.Apply(delta).ok());
  set.Commit();
  ASSERT_EQ(set.snapshot().http_routes_size(), 1);
  EXPECT_EQ(set.snapshot().http_routes(0).rules(0).backends(0).service(), "prod/v2");
  EXPECT_EQ(set.snapshot().traffic_policies(0).connection_pool().max_connections(), 5u);
}

}  // namespace
}  // namespace weft::config::xds
