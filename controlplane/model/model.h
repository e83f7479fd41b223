// weftd's typed model of the cluster: fed by ObjectEvents from the sources (Kubernetes watch,
// local manifests), validated object by object, and translated into per-node
// weft.config.v1.ConfigSnapshot views.
//
// Kinds (apiVersion checked): Namespace, Pod, Service, ServiceAccount (v1), EndpointSlice
// (discovery.k8s.io/v1), NetworkPolicy (networking.k8s.io/v1), AuthorizationPolicy and
// PeerAuthentication (security.weft.dev/v1, Istio's spec field names). Other kinds are ignored
// (logged, counted in weft_cp_objects_ignored_total), not rejected.
//
// Validation: every upsert is checked (types, required fields, CIDRs, ports, selectors,
// actions, modes; AuthorizationPolicy/PeerAuthentication additionally through the per-object
// conversions of config/model/convert.h, i.e. exactly the data plane's rules). A bad object is
// rejected: it is listed in Rejected() with a reason, counted in
// weft_cp_objects_rejected_total{kind,outcome="rejected"}, and the object's last accepted
// version (if any) stays in force; nothing else is affected. A later good version, a delete, or
// a kSynced that no longer lists it clears the entry. An object already defined by another
// source is rejected ("already defined by local:a.yaml").
//
// Policies fail closed instead: an AuthorizationPolicy or PeerAuthentication that cannot be
// used in full replaces its previous version in the fail-closed form of policies.h (an ALLOW
// without its unusable rules, a DENY without its unusable parts, STRICT mTLS, ...); so does a
// NetworkPolicy (its pods stay isolated for ingress, with only the rules that parse). It is
// listed in Rejected() with the reason and the effect, counted in
// weft_cp_objects_rejected_total{kind,outcome=<policies.h FailClosed label>}, and Apply
// returns InvalidArgument (docs/security.md).
//
// Enrolment: a pod is in the mesh (Workload.protocol HBONE) when its namespace has label
// weft.dev/mesh=enabled and the pod does not have weft.dev/mesh=disabled; otherwise TCP.
// Label changes flip it live. hostNetwork pods and Succeeded/Failed pods are not workloads.
//
// Workloads: uid = metadata.uid (cluster mode; the agent finds the netns from it), or
// "<ns>/<name>" when the manifest has no uid (local mode); annotation weft.dev/netns-path goes
// to netns_path; workload_name is the owning Deployment (ReplicaSet name minus
// pod-template-hash) or other owner's name, else the pod name. When two pods claim one IP the
// first by uid keeps it (the other is logged, kept without that address).
//
// Services: cluster IPs ("None" = headless: no address), ports with appProtocol, hostname
// <name>.<ns>.svc.<cluster_domain>. Endpoints come from the EndpointSlices labelled
// kubernetes.io/service-name=<svc> (ready: conditions.ready, absent = ready); a Service with a
// selector and no EndpointSlice (local mode has no endpoints controller) gets the Running pods
// its selector matches. Named targetPorts resolve through the EndpointSlice ports, else the
// selected pods' container ports; unresolved ones fall back to the service port.
//
// NetworkPolicy: ingress only, translated into weft.config.v1.NetworkPolicy (selectors resolved
// to workload uids and peer pod IPs; ipBlock/except kept as CIDRs). Named ports resolve against
// the selected pods' container ports (the union when pods disagree). Egress rules are not
// enforced: their presence is logged and counted (weft_cp_networkpolicy_egress_ignored_total).
// A policy whose policyTypes omits Ingress is not emitted (it isolates nothing for ingress).
//
// Traffic management (docs/traffic.md): HTTPRoute and GRPCRoute (gateway.networking.k8s.io v1;
// v1beta1 / v1alpha2 read the same way) attached to Services through parentRefs (GAMMA),
// ReferenceGrant (v1beta1) for cross-namespace backendRefs, and TrafficPolicy
// (networking.weft.dev/v1). Each route gets per-parent status conditions (RouteStatuses():
// Accepted, ResolvedRefs, with the spec's reasons) and one weft.config.v1.HttpRoute per Accepted
// Service parent. A route whose spec is invalid or unsupported is kept but applied nowhere: its
// parents say Accepted=False/UnsupportedValue, it is listed in Rejected() with the reason, and
// Apply returns InvalidArgument. Routes and TrafficPolicies go to every node (sources need them).
//
// Per-node view (NodeView): the node's own pods and every other workload and service (any pod
// may address any of them), plus only the policies that apply to the node's pods:
// AuthorizationPolicies and PeerAuthentications by Istio's scoping (root namespace without
// selector: everywhere; namespace without selector; selector within its namespace, and for
// AuthorizationPolicy in the root namespace mesh-wide), NetworkPolicies selecting one of the
// node's pods. Because every view holds every workload and service, a change to a Pod,
// Namespace, Service or EndpointSlice notifies all nodes; a policy change notifies only the
// nodes it applied to before or applies to now.
//
// Scale: everything derived from the objects (workloads, services, translated policies) is
// rebuilt at most once per generation, on the first view asked for after a change, with
// selectors matched only against pods of the selector's namespace; each node's policy list is
// computed once per generation from policies indexed by namespace. A view is then a copy of
// pointers (SharedNodeView) or of messages (NodeView). Policy changes find their nodes by
// walking only the policy's namespace (all pods for the root namespace).
//
// Thread-safe: all methods take an internal lock. Change listeners run on the thread that
// called Apply, after the lock is released.
#pragma once

#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/source/object_event.h"
#include "controlplane/source/route_status.h"
#include "controlplane/xds/server.h"  // SharedView
#include "weft/config/v1/config.pb.h"

namespace weft::cp {

struct ModelOptions {
  std::string trust_domain = "cluster.local";
  std::string root_namespace = "weft-system";
  std::string cluster_domain = "cluster.local";  // for Service hostnames
  weft::config::v1::ConfigSnapshot::OutboundTrafficPolicy outbound_traffic_policy =
      weft::config::v1::ConfigSnapshot::ALLOW_ANY;
  // Local mode only: the Pod annotation weft.dev/netns-path is honoured when its value is this
  // prefix followed by one path component (weftctl up gives weftd "/run/netns/<mesh prefix>-",
  // where its supervisor creates the pods' namespaces and writes their annotations). Empty (a
  // cluster): a Pod carrying the annotation is rejected; the agent finds a pod's namespace from
  // its UID. A tenant must never be able to point the agent and ztunnel at another namespace.
  std::string pod_netns_prefix;
  // Metrics are registered here; nullptr: the model makes its own (see registry()).
  std::shared_ptr<prometheus::Registry> registry;
};

// One rejected object, for `weftctl status` / `weftctl validate`.
struct RejectedObject {
  std::string source;  // the ObjectEvent's source
  std::string kind;
  std::string ns;  // empty for cluster-scoped kinds
  std::string name;
  std::string reason;  // e.g. "spec.rules[0].from[0].source.ipBlocks[0]: bad CIDR ..."
  // Empty: the object is not used (its last accepted version, if any, stays in force). Else
  // (AuthorizationPolicy, PeerAuthentication) what is enforced in its place, e.g.
  // "fail-closed: enforced as an ALLOW with no usable rule: it allows nothing to ...".
  std::string effect;
};

// Which nodes' views may have changed.
struct NodeSet {
  bool all = false;             // every node (also nodes the model has no pod for)
  std::set<std::string> nodes;  // when !all
  bool empty() const { return !all && nodes.empty(); }
};

namespace internal {
struct State;
}

class Model {
 public:
  explicit Model(ModelOptions opts = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Applies one event. OK when accepted (or ignored: unsupported kind); InvalidArgument with
  // the rejection reason otherwise (the same text Rejected() lists).
  absl::Status Apply(const ObjectEvent& ev);
  // A sink that calls Apply (for the sources).
  ObjectSink Sink();

  // The node's view as a ConfigSnapshot (version = generation()). Always passes
  // ztunnel::ConfigSnapshot::FromProto.
  weft::config::v1::ConfigSnapshot NodeView(std::string_view node) const;
  // The same view for the config stream's SharedViewProvider: the same resources in the same
  // order (kinds in ResourceKey.Kind order, each sorted by key), as pointers the model shares
  // between nodes and keeps across generations while the object's content does not change
  // (so the stream's per-object key/bytes cache hits and a delta costs a pointer compare per
  // unchanged object). globals carries version, trust_domain, root_namespace and
  // outbound_traffic_policy. The resources are immutable; holding them is safe after later
  // changes.
  SharedView SharedNodeView(std::string_view node) const;
  // SPIFFE URIs ("spiffe://<td>/ns/<ns>/sa/<sa>") of the non-terminated pods scheduled on
  // `node`, sorted, no duplicates: what the CA may issue to that node.
  std::vector<std::string> IdentitiesOnNode(std::string_view node) const;
  // The node pod <ns>/<name> is scheduled on, if the model has it, not terminated, with
  // metadata.uid `uid` (the CA's check of a pod-bound node token).
  std::optional<std::string> PodNode(std::string_view ns, std::string_view name,
                                     std::string_view uid) const;
  // Nodes that have at least one pod, sorted.
  std::vector<std::string> Nodes() const;
  // The status of every HTTPRoute/GRPCRoute with a Service parent (route_status.h), sorted by
  // kind, namespace, name: what the Kubernetes source writes back and weftctl status shows.
  std::vector<RouteStatus> RouteStatuses() const;
  // Currently rejected objects, sorted by kind, namespace, name, source.
  std::vector<RejectedObject> Rejected() const;
  // Bumped by every event that changed the model.
  uint64_t generation() const;

  // Called after each event that changed the model, with the nodes whose views may differ.
  void OnChange(std::function<void(const NodeSet&)> fn);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  ModelOptions opts_;
  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex mu_;
  std::unique_ptr<internal::State> state_;
  std::vector<std::function<void(const NodeSet&)>> listeners_;
};

// The model's per-object validation without a model: parses `object` as `kind` (empty: the
// object's own kind). OK, or InvalidArgument with the reason. Cross-object checks (duplicate
// definitions) need a Model.
absl::Status ValidateObject(const std::string& kind, const nlohmann::json& object);
// True for the kinds the model uses (others are ignored, not rejected).
bool IsSupportedKind(std::string_view kind);

}  // namespace weft::cp
