// An immutable, indexed, validated configuration snapshot, and the store that publishes it to
// worker threads (std::shared_ptr<const ConfigSnapshot>, swapped atomically).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "weft/config/v1/config.pb.h"
#include "ztunnel/state/model.h"

namespace weft::ztunnel {

// Immutable once built: every const method is thread-safe, and returned pointers/references
// live as long as the snapshot (hold the SnapshotPtr while using them).
class ConfigSnapshot {
 public:
  // Validates and converts, one object at a time with the conversions of
  // config/model/convert.h, plus the checks that span objects. Any invalid object fails the whole
  // snapshot with an error naming the object and the field, e.g.
  //   authorization_policy "prod/deny-db": rules[0].from[0].source.ipBlocks[1]: bad CIDR ...
  // Rejected: missing uid/namespace/name, bad IPs/CIDRs/ports, duplicate keys (workload uid,
  // service and policy "ns/name"), an address claimed by two workloads or two services,
  // endpoints naming unknown workloads, CUSTOM actions, unsupported `when` keys, wildcards
  // other than "*", "x*", "*x", empty from.source / to.operation, conditions without values,
  // portLevelMtls without a selector, unknown enum values; for network policies: missing
  // name/namespace, duplicates, bad CIDRs or excepts outside their cidr, ports outside
  // 1..65535, endPort below port, protocols other than TCP/UDP/SCTP. Unknown workload uids in
  // a network policy are not errors (a per-node view may leave them out). HTTP routes and
  // traffic policies: everything HttpRouteFromProto/TrafficPolicyFromProto reject, a route
  // listed twice (same kind, namespace, name, parent Service and port), a traffic policy "ns/name"
  // listed twice. A route or policy naming a Service the snapshot lacks is kept (and never
  // applies): the per-node view may leave the Service out.
  static absl::StatusOr<std::shared_ptr<const ConfigSnapshot>> FromProto(
      const weft::config::v1::ConfigSnapshot& pb);
  static std::shared_ptr<const ConfigSnapshot> Empty();

  const std::string& version() const { return version_; }
  const std::string& trust_domain() const { return trust_domain_; }      // default cluster.local
  const std::string& root_namespace() const { return root_namespace_; }  // default weft-system
  bool outbound_registry_only() const { return registry_only_; }

  const std::vector<Workload>& workloads() const { return workloads_; }
  const std::vector<Service>& services() const { return services_; }
  const std::vector<AuthorizationPolicy>& authorization_policies() const { return policies_; }
  const std::vector<PeerAuthentication>& peer_authentications() const { return peer_authns_; }
  const std::vector<NetworkPolicy>& network_policies() const { return network_policies_; }
  const std::vector<HttpRoute>& http_routes() const { return http_routes_; }
  const std::vector<TrafficPolicy>& traffic_policies() const { return traffic_policies_; }

  const Workload* FindWorkloadByUid(std::string_view uid) const;
  const Workload* FindWorkloadByAddress(const IpAddr& ip) const;
  const Service* FindServiceByAddress(const IpAddr& vip) const;
  const Service* FindServiceByKey(std::string_view key) const;  // "<namespace>/<name>"
  // The first Service (config order) with `w` among its ready endpoints and a port whose
  // target port is `target_port`; nullptr if none. Indexed: O(services fronting w).
  const Service* ServiceForEndpoint(const Workload& w, uint16_t target_port) const;

  // AuthorizationPolicies that apply to `w`: root-namespace policies without a selector,
  // policies in w's namespace without a selector, and any policy in the root namespace or
  // w's namespace whose selector matches w's labels.
  std::vector<const AuthorizationPolicy*> PoliciesFor(const Workload& w) const;

  // NetworkPolicies whose workload_uids name `w` (config order). Non-empty means `w` is
  // isolated for ingress: a connection needs a matching rule in one of them.
  std::vector<const NetworkPolicy*> NetworkPoliciesFor(const Workload& w) const;

  // Effective mTLS mode for traffic to `w` on `port`: the most specific PeerAuthentication
  // (workload selector > namespace > root namespace; portLevelMtls beats the workload mode;
  // UNSET inherits from the next level). Default when nothing is set: kPermissive. When several
  // policies compete at one level, the first in config order wins (Istio: the oldest).
  // Never returns kUnset.
  MtlsMode EffectiveMtls(const Workload& w, uint16_t port) const;

  // HttpRoutes whose parent is the Service "<namespace>/<name>" (every port and consumer
  // namespace; config order). The route selection itself is ztunnel/traffic/router.h's.
  std::vector<const HttpRoute*> RoutesForService(std::string_view service_key) const;
  // The TrafficPolicy for Service "<namespace>/<name>" on `port`: one targeting that port beats
  // one targeting every port (0); among equals, the first in config order. nullptr if none.
  const TrafficPolicy* TrafficPolicyFor(std::string_view service_key, uint16_t port) const;

  // JSON view of the whole snapshot (admin /config_dump): the source proto as protobuf JSON
  // (lowerCamelCase, indented), before defaults were applied.
  std::string ToJson() const;

 private:
  class Builder;  // FromProto's steps, one per kind (snapshot.cc)

  std::string version_, trust_domain_, root_namespace_;
  bool registry_only_ = false;
  std::vector<Workload> workloads_;
  std::vector<Service> services_;
  std::vector<AuthorizationPolicy> policies_;
  std::vector<PeerAuthentication> peer_authns_;
  absl::flat_hash_map<std::string, size_t> by_uid_;
  absl::flat_hash_map<IpAddr, size_t> by_ip_;
  absl::flat_hash_map<IpAddr, size_t> svc_by_ip_;
  absl::flat_hash_map<std::string, size_t> svc_by_key_;
  absl::flat_hash_map<std::string, std::vector<size_t>> svc_by_endpoint_;  // ready endpoints
  // Indexes into policies_/peer_authns_ by namespace, each in config order.
  absl::flat_hash_map<std::string, std::vector<size_t>> policies_by_ns_;
  absl::flat_hash_map<std::string, std::vector<size_t>> peer_authns_by_ns_;
  std::vector<NetworkPolicy> network_policies_;
  absl::flat_hash_map<std::string, std::vector<size_t>> network_policies_by_uid_;
  std::vector<HttpRoute> http_routes_;
  std::vector<TrafficPolicy> traffic_policies_;
  // "<namespace>/<name>" of the parent / target Service -> indexes, in config order.
  absl::flat_hash_map<std::string, std::vector<size_t>> routes_by_service_;
  absl::flat_hash_map<std::string, std::vector<size_t>> traffic_policies_by_service_;
  weft::config::v1::ConfigSnapshot source_;  // kept for ToJson
};

using SnapshotPtr = std::shared_ptr<const ConfigSnapshot>;

// Holds the current snapshot. Get() is cheap and thread-safe; Set() notifies subscribers on
// the calling thread after the swap.
class ConfigStore {
 public:
  ConfigStore() : current_(ConfigSnapshot::Empty()) {}
  SnapshotPtr Get() const;
  void Set(SnapshotPtr s);
  void Subscribe(std::function<void(const SnapshotPtr&)> fn);

 private:
  mutable std::mutex mu_;
  SnapshotPtr current_;
  std::vector<std::function<void(const SnapshotPtr&)>> subscribers_;
};

}  // namespace weft::ztunnel
