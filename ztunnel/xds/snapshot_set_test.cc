// config/xds's SnapshotSet as the config client uses it: apply a response in place, validate
// the result with ztunnel's ConfigSnapshot::FromProto, commit or revert.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "config/xds/resources.h"
#include "config/xds/testing.h"
#include "ztunnel/state/snapshot.h"

namespace weft::config::xds {
namespace {

namespace pb = ::weft::config::v1;

using testing::WorkloadRes;

// ---- SnapshotSet: in place, with undo ---------------------------------------------------------

// A workload that also passes ztunnel's validation ("<ns>/<name>" uid, namespace and name set).
pb::Resource ValidWorkload(const std::string& ns, const std::string& name, const std::string& ip) {
  pb::Resource r = WorkloadRes(absl::StrCat(ns, "/", name), ip);
  r.mutable_workload()->set_namespace_(ns);
  r.mutable_workload()->set_name(name);
  return r;
}

pb::Resource ServiceRes(const std::string& ns, const std::string& name, int n) {
  pb::Resource r;
  r.mutable_service()->set_namespace_(ns);
  r.mutable_service()->set_name(name);
  r.mutable_service()->add_addresses(absl::StrCat("10.96.", n / 250, ".", n % 250));
  return r;
}

pb::Resource PolicyRes(const std::string& ns, const std::string& name, bool deny) {
  pb::Resource r;
  r.mutable_authorization_policy()->set_namespace_(ns);
  r.mutable_authorization_policy()->set_name(name);
  r.mutable_authorization_policy()->set_action(deny ? pb::AuthorizationPolicy::DENY
                                                    : pb::AuthorizationPolicy::ALLOW);
  return r;
}

// Random responses over a small key space so that upserts hit existing keys, removes hit present
// and absent keys, and globals change now and then.
class RandomResponses {
 public:
  explicit RandomResponses(uint64_t seed) : rng_(seed) {}
  pb::ConfigResponse Next(bool full) {
    pb::ConfigResponse r;
    r.set_version(std::to_string(++version_));
    r.set_full_snapshot(full);
    r.set_trust_domain(Pick(5) == 0 ? "other.example" : "cluster.local");
    if (Pick(3) != 0) r.set_root_namespace("weft-system");
    std::set<Key> used;
    const int n = full ? 5 + Pick(30) : Pick(6);
    for (int i = 0; i < n; ++i) {
      pb::Resource res = Random();
      if (!used.insert(*KeyOf(res)).second) continue;
      *r.add_upserted() = std::move(res);
    }
    if (!full) {
      for (int i = Pick(4); i > 0; --i) {
        Key k = *KeyOf(Random());
        if (!used.insert(k).second) continue;
        *r.add_removed() = ToProto(k);
      }
    }
    return r;
  }

 private:
  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  pb::Resource Random() {
    const std::string ns = Pick(2) == 0 ? "a" : "b";
    const int id = Pick(12);
    switch (Pick(3)) {
      case 0:
        return WorkloadRes(absl::StrCat(ns, "/w", id), absl::StrCat("10.0.", Pick(9), ".", id));
      case 1:
        return ServiceRes(ns, absl::StrCat("s", id), Pick(500));
      default:
        return PolicyRes(ns, absl::StrCat("p", id), Pick(2) == 0);
    }
  }
  std::mt19937_64 rng_;
  int version_ = 0;
};

TEST(XdsSnapshotSet, MatchesResourceSetAndRevertRestoresExactly) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    RandomResponses gen(seed);
    ResourceSet reference;
    SnapshotSet set;
    for (int step = 0; step < 200; ++step) {
      pb::ConfigResponse r = gen.Next(step == 0 || step % 50 == 0);
      const std::string before = DeterministicBytes(set.snapshot());
      const std::string before_version = set.snapshot().version();
      ASSERT_TRUE(set.Apply(r).ok()) << step;
      ASSERT_TRUE(set.pending());
      if (step % 3 == 1) {  // as on a NACK: back to exactly the previous state
        set.Revert();
        EXPECT_FALSE(set.pending());
        ASSERT_EQ(DeterministicBytes(set.snapshot()), before) << step;
        continue;
      }
      set.Commit();
      ASSERT_TRUE(reference.Apply(r).ok());
      ASSERT_EQ(DeterministicBytes(set.snapshot()),
                DeterministicBytes(reference.ToSnapshot(r.version())))
          << step;
      EXPECT_EQ(set.size(), reference.size());
    }
  }
}

TEST(XdsSnapshotSet, BadResponseChangesNothingAndLeavesNothingPending) {
  SnapshotSet set;
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  full.set_version("1");
  *full.add_upserted() = WorkloadRes("ns/a", "10.0.0.1");
  *full.add_upserted() = WorkloadRes("ns/b", "10.0.0.2");
  ASSERT_TRUE(set.Apply(full).ok());
  set.Commit();
  const std::string before = DeterministicBytes(set.snapshot());

  pb::ConfigResponse bad;
  bad.set_version("2");
  *bad.add_upserted() = WorkloadRes("ns/c", "10.0.0.3");
  *bad.add_upserted() = WorkloadRes("", "10.0.0.4");  // no uid: the key check fails first
  absl::Status st = set.Apply(bad);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("upserted[1]"), std::string_view::npos) << st;
  EXPECT_FALSE(set.pending());
  EXPECT_EQ(DeterministicBytes(set.snapshot()), before);

  pb::ConfigResponse both;
  both.set_version("3");
  *both.add_upserted() = WorkloadRes("ns/a", "10.0.0.9");
  both.add_removed()->set_kind(pb::ResourceKey::WORKLOAD);
  both.mutable_removed(0)->set_name("ns/a");
  EXPECT_FALSE(set.Apply(both).ok());
  EXPECT_EQ(DeterministicBytes(set.snapshot()), before);
}

// A delta that validates as resources but fails FromProto (an address claimed twice): the
// client's sequence Apply -> FromProto fails -> Revert leaves the previous set exactly, including
// a replaced resource, a removed one and an inserted one.
TEST(XdsSnapshotSet, InPlaceDeltaRejectedByValidationIsUndoneExactly) {
  SnapshotSet set;
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  full.set_version("1");
  full.set_trust_domain("cluster.local");
  for (int i = 0; i < 50; ++i) {
    *full.add_upserted() =
        ValidWorkload("ns", absl::StrCat("w", i), absl::StrCat("10.0.0.", i + 1));
  }
  *full.add_upserted() = ServiceRes("ns", "s", 1);
  ASSERT_TRUE(set.Apply(full).ok());
  ASSERT_TRUE(ztunnel::ConfigSnapshot::FromProto(set.snapshot()).ok());
  set.Commit();
  const pb::ConfigSnapshot before = set.snapshot();

  pb::ConfigResponse delta;
  delta.set_version("2");
  delta.set_trust_domain("other.example");
  *delta.add_upserted() = ValidWorkload("ns", "w7", "10.0.0.99");   // replaced
  *delta.add_upserted() = ValidWorkload("ns", "w25x", "10.0.0.3");  // inserted; ns/w2's address
  delta.add_removed()->set_kind(pb::ResourceKey::WORKLOAD);         // removed
  delta.mutable_removed(0)->set_name("ns/w40");
  delta.add_removed()->set_kind(pb::ResourceKey::SERVICE);  // removed
  delta.mutable_removed(1)->set_name("ns/s");
  ASSERT_TRUE(set.Apply(delta).ok());
  EXPECT_EQ(set.snapshot().version(), "2");
  EXPECT_EQ(set.snapshot().workloads_size(), 50);
  auto v = ztunnel::ConfigSnapshot::FromProto(set.snapshot());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("already claimed"), std::string_view::npos) << v.status();
  set.Revert();
  EXPECT_EQ(DeterministicBytes(set.snapshot()), DeterministicBytes(before));
  EXPECT_EQ(set.snapshot().version(), "1");
  EXPECT_EQ(set.snapshot().trust_domain(), "cluster.local");
  bool found = false;
  for (const pb::Workload& w : set.snapshot().workloads()) {
    if (w.uid() != "ns/w7") continue;
    found = true;
    EXPECT_EQ(w.addresses(0), "10.0.0.8");
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(set.size(), 51u);

  // The base still takes a good delta afterwards.
  pb::ConfigResponse good = delta;
  good.set_version("3");
  good.mutable_upserted(1)->mutable_workload()->set_addresses(0, "10.0.1.1");
  ASSERT_TRUE(set.Apply(good).ok());
  EXPECT_TRUE(ztunnel::ConfigSnapshot::FromProto(set.snapshot()).ok());
  set.Commit();
  EXPECT_EQ(set.size(), 50u);  // 50 workloads (one in, one out), no service
}

// What a node pays per one-resource version at benchmark size (10,000 workloads, 1,000
// services): the old path (copy the set, rebuild the snapshot, FromProto) against in-place apply
// + FromProto, and FromProto alone (the floor while the callback receives a whole
// ztunnel::ConfigSnapshot). Prints the figures; asserts only that both paths agree.
TEST(XdsSnapshotSet, PerVersionCostAtBenchmarkSize) {
  using Clock = std::chrono::steady_clock;
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  full.set_version("1");
  for (int i = 0; i < 10000; ++i) {
    pb::Resource r =
        WorkloadRes(absl::StrCat("ns-", i % 50, "/pod-", i),
                    absl::StrCat("10.", 1 + i / 62500, ".", (i / 250) % 250, ".", i % 250 + 1));
    auto* w = r.mutable_workload();
    w->set_name(absl::StrCat("pod-", i));
    w->set_namespace_(absl::StrCat("ns-", i % 50));
    w->set_service_account("default");
    w->set_node(absl::StrCat("node-", i % 100));
    (*w->mutable_labels())["app"] = absl::StrCat("app-", i / 10);
    (*w->mutable_labels())["pod-template-hash"] = "5d8f7c9b6";
    *full.add_upserted() = std::move(r);
  }
  for (int i = 0; i < 1000; ++i) {
    pb::Resource r = ServiceRes(absl::StrCat("ns-", (i * 10) % 50), absl::StrCat("svc-", i), i);
    auto* p = r.mutable_service()->add_ports();
    p->set_port(80);
    p->set_target_port(8080);
    for (int e = 0; e < 10; ++e) {
      auto* ep = r.mutable_service()->add_endpoints();
      ep->set_workload_uid(absl::StrCat("ns-", (i * 10 + e) % 50, "/pod-", i * 10 + e));
      ep->set_ready(true);
    }
    *full.add_upserted() = std::move(r);
  }
  pb::ConfigResponse delta;
  delta.set_version("2");
  *delta.add_upserted() = full.upserted(1234);
  (*delta.mutable_upserted(0)->mutable_workload()->mutable_labels())["v"] = "2";

  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  ResourceSet old_set;
  ASSERT_TRUE(old_set.Apply(full).ok());
  SnapshotSet set;
  ASSERT_TRUE(set.Apply(full).ok());
  set.Commit();
  double old_ms = 1e9, new_ms = 1e9, apply_ms = 1e9, from_proto_ms = 1e9, copy_ms = 1e9;
  for (int i = 0; i < 3; ++i) {
    auto t = Clock::now();
    ResourceSet next = old_set;
    ASSERT_TRUE(next.Apply(delta).ok());
    pb::ConfigSnapshot snap = next.ToSnapshot("2");
    ASSERT_TRUE(ztunnel::ConfigSnapshot::FromProto(snap).ok());
    old_ms = std::min(old_ms, ms(Clock::now() - t));

    t = Clock::now();
    ASSERT_TRUE(set.Apply(delta).ok());
    auto t_applied = Clock::now();
    ASSERT_TRUE(ztunnel::ConfigSnapshot::FromProto(set.snapshot()).ok());
    auto t_built = Clock::now();
    ASSERT_EQ(DeterministicBytes(set.snapshot()), DeterministicBytes(snap));
    auto t_checked = Clock::now();
    set.Revert();  // so the next round applies the same delta again
    new_ms = std::min(new_ms, ms(t_built - t) + ms(Clock::now() - t_checked));
    apply_ms = std::min(apply_ms, ms(t_applied - t) + ms(Clock::now() - t_checked));
    from_proto_ms = std::min(from_proto_ms, ms(t_built - t_applied));
    t = Clock::now();
    pb::ConfigSnapshot copy = set.snapshot();  // what FromProto spends keeping its source
    copy_ms = std::min(copy_ms, ms(Clock::now() - t));
    ASSERT_EQ(copy.workloads_size(), 10000);
  }
  std::printf(
      "per one-workload version at 11,000 resources (best of 3): copy+rebuild+FromProto %.1f ms; "
      "in-place apply+FromProto %.1f ms, of which apply+undo %.2f ms and FromProto %.1f ms "
      "(a copy of the snapshot proto alone: %.1f ms)\n",
      old_ms, new_ms, apply_ms, from_proto_ms, copy_ms);
  RecordProperty("old_ms", std::to_string(old_ms));
  RecordProperty("new_ms", std::to_string(new_ms));
  RecordProperty("from_proto_ms", std::to_string(from_proto_ms));
}

}  // namespace
}  // namespace weft::config::xds
