// The resource vocabulary shared by the config stream's server and client: keys, the split of a
// ConfigSnapshot into keyed Resources, deterministic bytes, and the client-side resource set that
// applies full snapshots and deltas.
//
// Resource kinds are found by reflection over the `Resource.kind` oneof: each oneof field maps to
// the ConfigSnapshot repeated field of the same message type, and its key kind is the
// ResourceKey.Kind with the same number. A kind added to config.proto therefore streams with no
// change here. "Globals" are the ConfigSnapshot singular fields (other than `version`) that
// ConfigResponse also has, by name (today trust_domain and root_namespace); they are sent with
// every response.
#pragma once

#include <compare>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "weft/config/v1/config.pb.h"

namespace weft::config::xds {

// Identifies one resource in a node's view: (ResourceKey.Kind number, name), where name is the
// workload uid or "<namespace>/<name>". Ordered by kind, then name: the canonical config order.
struct Key {
  int kind = 0;
  std::string name;
  auto operator<=>(const Key&) const = default;
};

std::string KeyString(const Key& k);  // "WORKLOAD/default/a", for logs and errors
weft::config::v1::ResourceKey ToProto(const Key& k);
absl::StatusOr<Key> KeyFromProto(const weft::config::v1::ResourceKey& k);
// Error if no kind is set or the object has no uid (workloads) / namespace or name (the rest).
absl::StatusOr<Key> KeyOf(const weft::config::v1::Resource& r);

// An HttpRoute's key name: weftd sends one per (route, parent Service, port), so the route's own
// "<namespace>/<name>" is not unique: "<HTTPRoute|GRPCRoute>/<namespace>/<name>/<parent
// namespace>/<parent name>/<parent port>".
std::string HttpRouteKeyName(const weft::config::v1::HttpRoute& r);

// Serialization with map entries in key order, so equal messages give equal bytes.
std::string DeterministicBytes(const google::protobuf::Message& m);

// Calls `fn` for every resource of `snap`, in snapshot order. Stops at and returns the first error
// of `fn`; a resource whose key cannot be computed is passed to `on_bad` (or, if null, fails).
absl::Status ForEachResource(const weft::config::v1::ConfigSnapshot& snap,
                             const std::function<absl::Status(Key, weft::config::v1::Resource)>& fn,
                             const std::function<void(const absl::Status&)>& on_bad = nullptr);

// Globals (see above) between a snapshot and a response.
void CopyGlobals(const weft::config::v1::ConfigSnapshot& from,
                 weft::config::v1::ConfigResponse* to);
void CopyGlobals(const weft::config::v1::ConfigResponse& from,
                 weft::config::v1::ConfigSnapshot* to);
// Names of singular fields set in `snap` that ConfigResponse cannot carry (so a node never sees
// them), e.g. {"outbound_traffic_policy"} until config.proto's ConfigResponse gains that field.
std::vector<std::string> UncarriedFields(const weft::config::v1::ConfigSnapshot& snap);

// A node's copy of its view, as built from a stream. Not thread-safe.
class ResourceSet {
 public:
  // Full snapshot: replaces everything. Delta: upserts, then removes (removing an absent key is
  // fine; a key both upserted and removed in one response is an error). On error *this is left
  // unchanged and the error names the offending entry.
  absl::Status Apply(const weft::config::v1::ConfigResponse& r);
  // The snapshot this set stands for: globals, then each kind's resources in key order.
  weft::config::v1::ConfigSnapshot ToSnapshot(const std::string& version) const;
  size_t size() const { return resources_.size(); }

 private:
  std::map<Key, weft::config::v1::Resource> resources_;
  weft::config::v1::ConfigResponse globals_;  // only the globals are set
};

// A node's view held as the ConfigSnapshot itself (each kind's repeated field in key order, as
// ResourceSet::ToSnapshot builds it) and changed in place, so that a delta costs
// O(changed resources * log n) plus pointer moves instead of a copy of every resource. Apply
// keeps an undo log until Commit or Revert: Revert restores the previous snapshot exactly
// (same messages, order, globals and version). Not thread-safe.
class SnapshotSet {
 public:
  SnapshotSet();
  ~SnapshotSet();
  SnapshotSet(SnapshotSet&&) noexcept;
  SnapshotSet& operator=(SnapshotSet&&) noexcept;

  // Same rules and errors as ResourceSet::Apply, and sets the snapshot's version to the
  // response's. On error nothing changed (and nothing is pending). At most one Apply may be
  // pending: Apply while one is pending is a programming error (WEFT_CHECK).
  absl::Status Apply(const weft::config::v1::ConfigResponse& r);
  void Commit();  // forget the undo log: the applied state is the new base
  void Revert();  // back to the state before the pending Apply (no-op if none)
  bool pending() const;

  const weft::config::v1::ConfigSnapshot& snapshot() const { return snap_; }
  size_t size() const;  // number of resources

 private:
  struct Undo;
  weft::config::v1::ConfigSnapshot snap_;
  std::unique_ptr<Undo> undo_;  // null: nothing pending
};

// The snapshot a client ends up with for view `snap`: globals and every resource with a valid
// key in key order (first of duplicates wins), version set to `version`. For tests and
// `weftctl config-dump` comparisons.
weft::config::v1::ConfigSnapshot Canonicalize(const weft::config::v1::ConfigSnapshot& snap,
                                              const std::string& version = "");

}  // namespace weft::config::xds
