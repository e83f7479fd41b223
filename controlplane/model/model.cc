#include "controlplane/model/model.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/net.h"
#include "common/spiffe.h"
#include "common/status.h"
#include "config/xds/resources.h"
#include "controlplane/model/objects.h"
#include "controlplane/model/route_resolve.h"

namespace weft::cp {

namespace pb = ::weft::config::v1;
using nlohmann::json;

namespace internal {

struct Stored {
  std::string source;
  // As received, serialized (compact JSON, keys sorted, so equal objects give equal text):
  // unchanged re-deliveries (resyncs, reloads) are no-ops. Text, not a json tree: at 10,000
  // pods the trees cost several times the memory.
  std::string raw;
  Parsed value;
  uint64_t rev = 0;  // unique per accepted version of any object
  // Set when `value` is the fail-closed form of a policy (policies.h): its Rejected() entry.
  std::optional<RejectedObject> fail_closed;
};

// A pod's published Workload and what it was built from besides the pod itself, so that a
// rebuild reuses it (no protobuf built, no bytes compared) while none of that changed.
struct WorkloadMemo {
  uint64_t rev = 0;
  bool enrolled = false;
  std::vector<std::string> addresses;
  std::shared_ptr<const weft::config::v1::Resource> res;
};

using ResPtr = std::shared_ptr<const pb::Resource>;

// One published resource: its deterministic bytes (to tell whether a rebuilt object changed)
// and the pointer handed to the config stream. Kept across generations so that an unchanged
// object keeps its pointer, which the xds server caches its key and bytes by.
struct Published {
  std::string bytes;
  ResPtr res;
};
// Per ResourceKey.Kind number: key ("<uid>" or "<ns>/<name>") -> published version.
using PublishedMap = std::unordered_map<std::string, Published>;
constexpr int kKinds = 8;  // ResourceKey.Kind numbers 1..7

// A node's policies, as indices into Common's policy vectors (sorted, unique).
struct NodePolicies {
  std::vector<size_t> authz, peerauthn, netpols;
};

struct PodRef {
  std::string ns, name;
  const PodObj* pod;
  uint64_t rev;  // Stored::rev
};
// Workload indices (into the uid-sorted pod list) by namespace, each list in uid order.
using NsIndex = std::unordered_map<std::string, std::vector<size_t>>;

// Everything derived from the objects, shared by all node views of one generation.
struct Common {
  // The uid-sorted workload pods and their indexes (kept for rebuilding policies alone).
  std::vector<PodRef> pod_refs;
  NsIndex by_ns;
  std::unordered_map<std::string, size_t> by_uid;
  std::vector<ResPtr> workloads;          // sorted by uid
  std::vector<const PodObj*> pods;        // parallel to workloads
  std::vector<ResPtr> services;           // sorted by "<ns>/<name>"
  std::vector<ResPtr> netpols;            // sorted by "<ns>/<name>"
  std::vector<ResPtr> authz, peerauthn;   // sorted by "<ns>/<name>"
  std::vector<ResPtr> http_routes;        // every node gets all: sorted by their stream key
  std::vector<ResPtr> traffic_policies;   // sorted by "<ns>/<name>"
  std::vector<RouteStatus> route_status;  // by kind, namespace, name
  std::map<std::string, std::vector<size_t>, std::less<>> by_node;  // node -> workload index
  std::map<std::string, std::vector<size_t>, std::less<>> netpols_by_node;
  // Policy indices by the policy's namespace, for per-node selection.
  std::unordered_map<std::string, std::vector<size_t>> authz_by_ns, peerauthn_by_ns;
  // Filled lazily per node (views of one generation are asked for node by node).
  std::map<std::string, NodePolicies, std::less<>> node_policies;
};

using RejectKey = std::tuple<std::string, std::string, std::string, std::string>;

struct State {
  // kind -> "<ns>/<name>" (or "<name>") -> object
  std::map<std::string, std::map<std::string, Stored>, std::less<>> objects;
  std::map<RejectKey, RejectedObject> rejected;  // kind, ns, name, source
  std::map<std::pair<std::string, std::string>, std::set<std::string>> seen;  // source, kind
  uint64_t generation = 0;
  std::optional<Common> common;
  uint64_t common_generation = 0;
  std::array<PublishedMap, kKinds> published;
  std::unordered_map<std::string, WorkloadMemo> workload_memo;  // by uid
  std::set<std::string> dirty_kinds;  // kinds changed since `common` was built
  uint64_t next_rev = 0;

  prometheus::Family<prometheus::Counter>* rejected_total = nullptr;
  prometheus::Family<prometheus::Counter>* ignored_total = nullptr;
  prometheus::Family<prometheus::Counter>* applied_total = nullptr;
  prometheus::Counter* egress_ignored = nullptr;
  prometheus::Gauge* rejected_now = nullptr;

  const std::map<std::string, Stored>& Of(std::string_view kind) const {
    static const std::map<std::string, Stored> kEmpty;
    auto it = objects.find(kind);
    return it == objects.end() ? kEmpty : it->second;
  }
};

}  // namespace internal

namespace {

using internal::Common;
using internal::kKinds;
using internal::Labels;
using internal::NetPolObj;
using internal::NsIndex;
using internal::Parsed;
using internal::PodObj;
using internal::PodRef;
using internal::PublishedMap;
using internal::ResPtr;
using internal::State;
using internal::Stored;

std::string Key(std::string_view ns, std::string_view name) {
  return ns.empty() ? std::string(name) : absl::StrCat(Av(ns), "/", Av(name));
}

std::pair<std::string, std::string> SplitKey(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

bool Terminated(const PodObj& p) {
  return p.phase == "Succeeded" || p.phase == "Failed";
}

Labels NamespaceLabels(const State& st, const std::string& ns) {
  Labels labels;
  const auto& namespaces = st.Of("Namespace");
  if (auto it = namespaces.find(ns); it != namespaces.end()) {
    labels = std::get<internal::NamespaceObj>(it->second.value).labels;
  }
  // Set by Kubernetes on every namespace; local mode namespaces may not exist as objects.
  labels["kubernetes.io/metadata.name"] = ns;
  return labels;
}

bool MatchLabels(const google::protobuf::Map<std::string, std::string>& selector,
                 const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

// Istio scoping, as ztunnel::ConfigSnapshot::PoliciesFor / EffectiveMtls apply it.
bool AuthzApplies(const pb::AuthorizationPolicy& p, const std::string& root, const std::string& ns,
                  const Labels& labels) {
  if (p.namespace_() != root && p.namespace_() != ns) return false;
  if (!p.has_selector() || p.selector().match_labels().empty()) return true;
  return MatchLabels(p.selector().match_labels(), labels);
}

bool PeerAuthnApplies(const pb::PeerAuthentication& p, const std::string& root,
                      const std::string& ns, const Labels& labels) {
  if (!p.has_selector() || p.selector().match_labels().empty()) {
    return p.namespace_() == root || p.namespace_() == ns;
  }
  return p.namespace_() == ns && MatchLabels(p.selector().match_labels(), labels);
}

// Pods that are workloads (not hostNetwork, not terminated), sorted by uid, first of a uid.
std::vector<PodRef> WorkloadPods(const State& st) {
  std::vector<PodRef> out;
  for (const auto& [key, stored] : st.Of("Pod")) {
    const PodObj& p = std::get<PodObj>(stored.value);
    if (p.host_network || Terminated(p)) continue;
    auto [ns, name] = SplitKey(key);
    out.push_back({ns, name, &p, stored.rev});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PodRef& a, const PodRef& b) { return a.pod->uid < b.pod->uid; });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const PodRef& a, const PodRef& b) { return a.pod->uid == b.pod->uid; }),
            out.end());
  return out;
}

std::string HostCidr(const std::string& ip) {
  return absl::StrCat(ip, ip.find(':') != std::string::npos ? "/128" : "/32");
}

pb::NetworkPolicy TranslateNetworkPolicy(const State& st, const std::string& ns,
                                         const std::string& name, const NetPolObj& np,
                                         const std::vector<PodRef>& pods, const NsIndex& by_ns) {
  static const std::vector<size_t> kNone;
  auto in_ns = [&](const std::string& n) -> const std::vector<size_t>& {
    auto it = by_ns.find(n);
    return it == by_ns.end() ? kNone : it->second;
  };
  pb::NetworkPolicy out;
  out.set_name(name);
  out.set_namespace_(ns);
  std::vector<const PodObj*> selected;
  for (size_t i : in_ns(ns)) {
    if (np.pod_selector.Matches(pods[i].pod->labels)) {
      selected.push_back(pods[i].pod);
      out.add_workload_uids(pods[i].pod->uid);
    }
  }
  for (const internal::NetRule& rule : np.ingress) {
    pb::NetworkPolicyRule* r = out.add_ingress();
    r->set_all_sources(rule.all_sources);
    r->set_all_ports(rule.all_ports);
    std::set<std::string> peer_ips;
    auto add_peers = [&](const std::vector<size_t>& candidates, const internal::NetPeer& peer) {
      for (size_t i : candidates) {
        if (peer.pod_selector && !peer.pod_selector->Matches(pods[i].pod->labels)) continue;
        for (const std::string& ip : pods[i].pod->ips) peer_ips.insert(ip);
      }
    };
    for (const internal::NetPeer& peer : rule.from) {
      if (peer.ip_block) {
        pb::NetworkPolicyPeer* p = r->add_from();
        p->set_cidr(peer.ip_block->first);
        for (const std::string& e : peer.ip_block->second) p->add_except(e);
        continue;
      }
      if (!peer.namespace_selector) {
        add_peers(in_ns(ns), peer);
        continue;
      }
      for (const auto& [pod_ns, idx] : by_ns) {
        if (peer.namespace_selector->Matches(NamespaceLabels(st, pod_ns))) add_peers(idx, peer);
      }
    }
    for (const std::string& ip : peer_ips) r->add_from()->set_cidr(HostCidr(ip));
    for (const internal::NetPort& port : rule.ports) {
      if (!port.port_name.empty()) {
        // Resolved per selected pod; pods that disagree contribute the union of their numbers.
        std::set<uint16_t> numbers;
        if (port.protocol == "TCP") {
          for (const PodObj* p : selected) {
            if (auto it = p->named_ports.find(port.port_name); it != p->named_ports.end()) {
              numbers.insert(it->second);
            }
          }
        }
        for (uint16_t n : numbers) {
          pb::NetworkPolicyPort* pp = r->add_ports();
          pp->set_protocol(port.protocol);
          pp->set_port(n);
        }
        continue;
      }
      pb::NetworkPolicyPort* pp = r->add_ports();
      pp->set_protocol(port.protocol);
      if (port.port == 0) {  // every port of this protocol
        pp->set_port(1);
        pp->set_end_port(65535);
      } else {
        pp->set_port(port.port);
        if (port.end_port != 0) pp->set_end_port(port.end_port);
      }
    }
  }
  return out;
}

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    m.SerializeWithCachedSizes(&cos);
  }
  return out;
}

// Publishes a rebuilt object: the previous generation's pointer when the bytes did not change
// (so the config stream sees the very same object), else a new one.
class Publisher {
 public:
  explicit Publisher(std::array<PublishedMap, kKinds>& published) : old_(published) {
    for (int k = 0; k < kKinds; ++k) fresh_[k].reserve(old_[k].size());
  }
  ResPtr Publish(int kind, const std::string& key, pb::Resource r) {
    r.ByteSizeLong();  // caches sizes for SerializeWithCachedSizes
    std::string bytes = DeterministicBytes(r);
    ResPtr p;
    if (auto it = old_[kind].find(key); it != old_[kind].end() && it->second.bytes == bytes) {
      p = it->second.res;
    } else {
      p = std::make_shared<const pb::Resource>(std::move(r));
    }
    fresh_[kind].insert_or_assign(key, internal::Published{std::move(bytes), p});
    touched_[kind] = true;
    return p;
  }
  // Kinds not published this time (not rebuilt) keep their previous objects.
  void Touch(int kind) { touched_[kind] = true; }
  void Commit() {
    for (int k = 0; k < kKinds; ++k) {
      if (touched_[k]) old_[k] = std::move(fresh_[k]);
    }
  }

 private:
  std::array<PublishedMap, kKinds>& old_;
  std::array<PublishedMap, kKinds> fresh_;
  std::array<bool, kKinds> touched_{};
};

// What the services need from the workloads besides Common: workload index by canonical IP,
// and the uids in workload order.
struct WorkloadIndex {
  std::unordered_map<std::string, size_t> by_ip;
  std::vector<std::string> uids;
};

// A pod is in the mesh when its namespace has weft.dev/mesh=enabled and the pod does not opt
// out with weft.dev/mesh=disabled. `ns_cache` memoizes the namespace part.
bool PodEnrolled(const State& st, const PodRef& r,
                 std::unordered_map<std::string, bool>& ns_cache) {
  auto ns_it = ns_cache.find(r.ns);
  if (ns_it == ns_cache.end()) {
    const Labels ns_labels = NamespaceLabels(st, r.ns);
    auto mesh = ns_labels.find("weft.dev/mesh");
    ns_it = ns_cache.emplace(r.ns, mesh != ns_labels.end() && mesh->second == "enabled").first;
  }
  auto opt_out = r.pod->labels.find("weft.dev/mesh");
  return ns_it->second && (opt_out == r.pod->labels.end() || opt_out->second != "disabled");
}

pb::Resource WorkloadResource(const PodRef& r, const ModelOptions& opts, bool enrolled,
                              const std::vector<std::string>& addresses) {
  const PodObj& p = *r.pod;
  pb::Resource res;
  pb::Workload& w = *res.mutable_workload();
  w.set_uid(p.uid);
  w.set_name(r.name);
  w.set_namespace_(r.ns);
  w.set_service_account(p.service_account);
  w.set_node(p.node);
  w.set_workload_name(p.workload_name);
  w.set_trust_domain(opts.trust_domain);
  w.set_netns_path(p.netns_path);
  w.set_phase(p.phase);
  for (const auto& [k, v] : p.labels) (*w.mutable_labels())[k] = v;
  w.set_protocol(enrolled ? pb::Workload::HBONE : pb::Workload::TCP);
  for (const std::string& ip : addresses) w.add_addresses(ip);
  return res;
}

// Workloads (and the pod indexes the policies and services use). An unchanged pod keeps its
// previous generation's resource (st.workload_memo).
WorkloadIndex BuildWorkloads(State& st, const ModelOptions& opts, Common& c) {
  c.pod_refs = WorkloadPods(st);
  const std::vector<PodRef>& pods = c.pod_refs;
  WorkloadIndex idx;
  idx.uids.reserve(pods.size());
  std::unordered_set<std::string> claimed;
  std::unordered_map<std::string, bool> ns_enrolled;
  std::unordered_map<std::string, internal::WorkloadMemo> memo;
  memo.reserve(pods.size());
  for (const PodRef& r : pods) {
    const PodObj& p = *r.pod;
    const bool enrolled = PodEnrolled(st, r, ns_enrolled);
    const size_t index = c.workloads.size();
    std::vector<std::string> addresses;
    for (const std::string& ip : p.ips) {
      const std::string canonical = IpAddr::Parse(ip)->ToString();
      if (!claimed.insert(canonical).second) {
        LOG_WARN("model", "pod IP already claimed by another pod; left out",
                 {{"pod", Key(r.ns, p.uid)}, {"ip", ip}});
        continue;
      }
      addresses.push_back(ip);
      idx.by_ip.emplace(canonical, index);
    }
    c.by_uid.emplace(p.uid, index);
    c.by_ns[r.ns].push_back(index);
    c.by_node[p.node].push_back(index);
    idx.uids.push_back(p.uid);
    ResPtr published;
    if (auto old = st.workload_memo.find(p.uid);
        old != st.workload_memo.end() && old->second.rev == r.rev &&
        old->second.enrolled == enrolled && old->second.addresses == addresses) {
      published = old->second.res;
    } else {
      published =
          std::make_shared<const pb::Resource>(WorkloadResource(r, opts, enrolled, addresses));
    }
    memo.insert_or_assign(p.uid,
                          internal::WorkloadMemo{r.rev, enrolled, std::move(addresses), published});
    c.workloads.push_back(std::move(published));
    c.pods.push_back(&p);
  }
  st.workload_memo = std::move(memo);
  return idx;
}

// EndpointSlices by "<ns>/<service>", each with its namespace.
using SliceIndex =
    std::map<std::string, std::vector<std::pair<std::string, const internal::SliceObj*>>>;

// A named targetPort: the slices' number for the port's name, else the first selected pod's
// container port of that name; 0 (the service port) when neither knows it.
uint16_t ResolveTargetPort(const internal::ServicePortObj& sp, const std::string& key,
                           const SliceIndex::const_iterator slice_it, const SliceIndex& slices,
                           const std::vector<const PodObj*>& selected) {
  uint16_t resolved = 0;
  if (slice_it != slices.end()) {
    for (const auto& [slice_ns, s] : slice_it->second) {
      if (auto it = s->ports.find(sp.name); it != s->ports.end()) resolved = it->second;
    }
  }
  for (size_t i = 0; resolved == 0 && i < selected.size(); ++i) {
    auto it = selected[i]->named_ports.find(sp.target_port_name);
    if (it != selected[i]->named_ports.end()) resolved = it->second;
  }
  if (resolved == 0) {
    LOG_DEBUG("model", "named targetPort not resolved; using the service port",
              {{"service", key}, {"targetPort", sp.target_port_name}});
  }
  return resolved;
}

// A service's endpoints, uid -> ready: from its EndpointSlices (by target uid, target name, or
// address), or without slices (local mode: no endpoints controller) the selector's Running pods.
std::map<std::string, bool> ServiceEndpoints(
    const Common& c, const WorkloadIndex& idx, const SliceIndex::const_iterator slice_it,
    const SliceIndex& slices, const std::unordered_map<std::string, std::string>& uid_by_name,
    const std::vector<const PodObj*>& selected) {
  std::map<std::string, bool> endpoints;
  if (slice_it == slices.end()) {
    for (const PodObj* p : selected) {
      if (p->phase.empty() || p->phase == "Running") endpoints[p->uid] = !p->ips.empty();
    }
    return endpoints;
  }
  for (const auto& [slice_ns, s] : slice_it->second) {
    for (const internal::SliceEndpoint& e : s->endpoints) {
      std::string uid;
      if (!e.target_uid.empty() && c.by_uid.contains(e.target_uid)) {
        uid = e.target_uid;
      } else if (!e.target_name.empty()) {
        auto it =
            uid_by_name.find(Key(e.target_ns.empty() ? slice_ns : e.target_ns, e.target_name));
        if (it != uid_by_name.end() && c.by_uid.contains(it->second)) uid = it->second;
      }
      for (size_t i = 0; uid.empty() && i < e.addresses.size(); ++i) {
        auto ip = IpAddr::Parse(e.addresses[i]);
        if (!ip.ok()) continue;
        if (auto it = idx.by_ip.find(ip->ToString()); it != idx.by_ip.end()) {
          uid = idx.uids[it->second];
        }
      }
      if (uid.empty()) continue;  // not a pod we know (yet)
      endpoints[uid] = endpoints[uid] || e.ready;
    }
  }
  return endpoints;
}

// Services, after BuildWorkloads: VIPs (first claim wins), TCP ports with resolved target
// ports, endpoints.
void BuildServices(const State& st, const ModelOptions& opts, Common& c, const WorkloadIndex& idx,
                   Publisher& pub) {
  SliceIndex slices;
  for (const auto& [key, stored] : st.Of("EndpointSlice")) {
    const auto& s = std::get<internal::SliceObj>(stored.value);
    const std::string ns = SplitKey(key).first;
    slices[Key(ns, s.service)].emplace_back(ns, &s);
  }
  std::unordered_map<std::string, std::string> uid_by_name;  // "<ns>/<name>" -> uid; slices need it
  if (!slices.empty()) {
    for (const auto& [key, stored] : st.Of("Pod")) {
      uid_by_name.emplace(key, std::get<PodObj>(stored.value).uid);
    }
  }

  std::unordered_set<std::string> claimed_vips;
  for (const auto& [key, stored] : st.Of("Service")) {
    const auto& svc = std::get<internal::ServiceObj>(stored.value);
    auto [ns, name] = SplitKey(key);
    pb::Resource res;
    pb::Service& out = *res.mutable_service();
    out.set_name(name);
    out.set_namespace_(ns);
    out.set_hostname(absl::StrCat(name, ".", ns, ".svc.", opts.cluster_domain));
    for (const std::string& ip : svc.cluster_ips) {
      if (!claimed_vips.insert(IpAddr::Parse(ip)->ToString()).second) {
        LOG_WARN("model", "service IP already claimed by another service; left out",
                 {{"service", key}, {"ip", ip}});
        continue;
      }
      out.add_addresses(ip);
    }
    std::vector<const PodObj*> selected;
    if (svc.selector) {
      const internal::LabelSelector selector{*svc.selector, {}};
      if (auto it = c.by_ns.find(ns); it != c.by_ns.end()) {
        for (size_t i : it->second) {
          if (selector.Matches(c.pods[i]->labels)) selected.push_back(c.pods[i]);
        }
      }
    }
    const auto slice_it = std::as_const(slices).find(key);
    for (const internal::ServicePortObj& sp : svc.ports) {
      if (sp.protocol != "TCP") continue;  // only TCP is proxied
      pb::ServicePort* port = out.add_ports();
      port->set_port(sp.port);
      port->set_name(sp.name);
      port->set_app_protocol(sp.app_protocol);
      if (sp.target_port != 0) {
        port->set_target_port(sp.target_port);
      } else if (!sp.target_port_name.empty()) {
        port->set_target_port(ResolveTargetPort(sp, key, slice_it, slices, selected));
      }
    }
    for (const auto& [uid, ready] :
         ServiceEndpoints(c, idx, slice_it, slices, uid_by_name, selected)) {
      pb::Endpoint* e = out.add_endpoints();
      e->set_workload_uid(uid);
      e->set_ready(ready);
    }
    c.services.push_back(pub.Publish(pb::ResourceKey::SERVICE, key, std::move(res)));
  }
  pub.Touch(pb::ResourceKey::SERVICE);
}

// Workloads and services (and the pod indexes the policies use).
void BuildWorkloadsAndServices(State& st, const ModelOptions& opts, Common& c, Publisher& pub) {
  const WorkloadIndex idx = BuildWorkloads(st, opts, c);
  BuildServices(st, opts, c, idx, pub);
}

void BuildNetworkPolicies(const State& st, Common& c, Publisher& pub) {
  const std::vector<PodRef>& pods = c.pod_refs;
  c.netpols.clear();
  c.netpols_by_node.clear();
  for (const auto& [key, stored] : st.Of("NetworkPolicy")) {
    const NetPolObj& np = std::get<NetPolObj>(stored.value);
    if (!np.ingress_isolated) continue;
    auto [ns, name] = SplitKey(key);
    pb::Resource res;
    *res.mutable_network_policy() = TranslateNetworkPolicy(st, ns, name, np, pods, c.by_ns);
    std::set<std::string> nodes;
    for (const std::string& uid : res.network_policy().workload_uids()) {
      nodes.insert(pods[c.by_uid.at(uid)].pod->node);
    }
    for (const std::string& n : nodes) c.netpols_by_node[n].push_back(c.netpols.size());
    c.netpols.push_back(pub.Publish(pb::ResourceKey::NETWORK_POLICY, key, std::move(res)));
  }
  pub.Touch(pb::ResourceKey::NETWORK_POLICY);
}

void BuildSecurityPolicies(const State& st, Common& c, Publisher& pub) {
  c.authz.clear();
  c.peerauthn.clear();
  c.authz_by_ns.clear();
  c.peerauthn_by_ns.clear();
  for (const auto& [key, stored] : st.Of("AuthorizationPolicy")) {
    pb::Resource res;
    *res.mutable_authorization_policy() = std::get<pb::AuthorizationPolicy>(stored.value);
    c.authz_by_ns[SplitKey(key).first].push_back(c.authz.size());
    c.authz.push_back(pub.Publish(pb::ResourceKey::AUTHORIZATION_POLICY, key, std::move(res)));
  }
  for (const auto& [key, stored] : st.Of("PeerAuthentication")) {
    pb::Resource res;
    *res.mutable_peer_authentication() = std::get<pb::PeerAuthentication>(stored.value);
    c.peerauthn_by_ns[SplitKey(key).first].push_back(c.peerauthn.size());
    c.peerauthn.push_back(pub.Publish(pb::ResourceKey::PEER_AUTHENTICATION, key, std::move(res)));
  }
  pub.Touch(pb::ResourceKey::AUTHORIZATION_POLICY);
  pub.Touch(pb::ResourceKey::PEER_AUTHENTICATION);
}

// Routes (per Accepted Service parent) and TrafficPolicies, resolved against the current
// Services and ReferenceGrants; also each route's status.
void BuildRoutes(const State& st, Common& c, Publisher& pub) {
  c.http_routes.clear();
  c.traffic_policies.clear();
  c.route_status.clear();
  std::map<std::string, std::vector<const internal::ReferenceGrantObj*>> grants;
  for (const auto& [key, stored] : st.Of("ReferenceGrant")) {
    grants[SplitKey(key).first].push_back(&std::get<internal::ReferenceGrantObj>(stored.value));
  }
  const auto& services = st.Of("Service");
  internal::RouteEnv env;
  env.service = [&](const std::string& key) -> const internal::ServiceObj* {
    auto it = services.find(key);
    return it == services.end() ? nullptr : &std::get<internal::ServiceObj>(it->second.value);
  };
  env.grants = [&](const std::string& ns) {
    auto it = grants.find(ns);
    return it == grants.end() ? std::vector<const internal::ReferenceGrantObj*>() : it->second;
  };
  std::vector<std::pair<std::string, pb::Resource>> routes;
  for (const char* kind : {"GRPCRoute", "HTTPRoute"}) {
    for (const auto& [key, stored] : st.Of(kind)) {
      auto [ns, name] = SplitKey(key);
      internal::ResolvedRoute r =
          internal::ResolveRoute(ns, name, std::get<internal::RouteObj>(stored.value), env);
      if (!r.status.parents.empty()) c.route_status.push_back(std::move(r.status));
      for (pb::HttpRoute& route : r.routes) {
        pb::Resource res;
        *res.mutable_http_route() = std::move(route);
        routes.emplace_back(weft::config::xds::HttpRouteKeyName(res.http_route()), std::move(res));
      }
    }
  }
  std::sort(routes.begin(), routes.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [key, res] : routes) {
    c.http_routes.push_back(pub.Publish(pb::ResourceKey::HTTP_ROUTE, key, std::move(res)));
  }
  for (const auto& [key, stored] : st.Of("TrafficPolicy")) {
    auto policy =
        internal::ResolveTrafficPolicy(std::get<internal::TrafficPolicyObj>(stored.value), env);
    if (!policy.ok()) {
      LOG_DEBUG("model", "TrafficPolicy not sent",
                {{"policy", key}, {"reason", std::string(policy.status().message())}});
      continue;
    }
    pb::Resource res;
    *res.mutable_traffic_policy() = std::move(*policy);
    c.traffic_policies.push_back(pub.Publish(pb::ResourceKey::TRAFFIC_POLICY, key, std::move(res)));
  }
  pub.Touch(pb::ResourceKey::HTTP_ROUTE);
  pub.Touch(pb::ResourceKey::TRAFFIC_POLICY);
}

// Rebuilt on the first view after a change. Workloads and services depend on pods, services,
// slices and namespaces; when only policies changed, the rest of the previous build stays.
Common& GetCommon(State& st, const ModelOptions& opts) {
  if (st.common && st.common_generation == st.generation) return *st.common;
  static const std::set<std::string> kPolicyKinds = {
      "AuthorizationPolicy", "PeerAuthentication", "NetworkPolicy",  "ServiceAccount",
      "HTTPRoute",           "GRPCRoute",          "ReferenceGrant", "TrafficPolicy"};
  const bool policies_only =
      st.common && std::all_of(st.dirty_kinds.begin(), st.dirty_kinds.end(),
                               [](const std::string& k) { return kPolicyKinds.contains(k); });
  Publisher pub(st.published);
  if (!policies_only) {
    st.common.emplace();
    BuildWorkloadsAndServices(st, opts, *st.common, pub);
  }
  Common& c = *st.common;
  if (!policies_only || st.dirty_kinds.contains("NetworkPolicy")) {
    BuildNetworkPolicies(st, c, pub);
  }
  BuildSecurityPolicies(st, c, pub);
  BuildRoutes(st, c, pub);
  c.node_policies.clear();
  pub.Commit();
  st.dirty_kinds.clear();
  st.common_generation = st.generation;
  return c;
}

// The policies that apply to the node's pods (Istio scoping: a pod sees policies of its own
// namespace and of the root namespace, so only those are checked).
const internal::NodePolicies& PoliciesOf(Common& c, std::string_view node,
                                         const ModelOptions& opts) {
  if (auto it = c.node_policies.find(node); it != c.node_policies.end()) return it->second;
  internal::NodePolicies np;
  if (auto mine = c.by_node.find(node); mine != c.by_node.end()) {
    std::vector<char> authz(c.authz.size()), peerauthn(c.peerauthn.size());
    for (size_t i : mine->second) {
      const std::string& ns = c.workloads[i]->workload().namespace_();
      const Labels& labels = c.pods[i]->labels;
      for (const std::string* policy_ns : {&ns, &opts.root_namespace}) {
        if (auto f = c.authz_by_ns.find(*policy_ns); f != c.authz_by_ns.end()) {
          for (size_t k : f->second) {
            if (!authz[k] &&
                AuthzApplies(c.authz[k]->authorization_policy(), opts.root_namespace, ns, labels)) {
              authz[k] = 1;
            }
          }
        }
        if (auto f = c.peerauthn_by_ns.find(*policy_ns); f != c.peerauthn_by_ns.end()) {
          for (size_t k : f->second) {
            if (!peerauthn[k] && PeerAuthnApplies(c.peerauthn[k]->peer_authentication(),
                                                  opts.root_namespace, ns, labels)) {
              peerauthn[k] = 1;
            }
          }
        }
      }
    }
    for (size_t k = 0; k < authz.size(); ++k) {
      if (authz[k]) np.authz.push_back(k);
    }
    for (size_t k = 0; k < peerauthn.size(); ++k) {
      if (peerauthn[k]) np.peerauthn.push_back(k);
    }
  }
  if (auto it = c.netpols_by_node.find(node); it != c.netpols_by_node.end()) {
    np.netpols = it->second;
  }
  return c.node_policies.emplace(std::string(node), std::move(np)).first->second;
}

// The nodes whose view an object (in the current state of everything else) touches.
NodeSet Affected(const State& st, const ModelOptions& opts, const std::string& kind,
                 const std::string& key, const Parsed& value) {
  NodeSet out;
  if (kind == "ServiceAccount") return out;
  if (kind == "Pod" || kind == "Namespace" || kind == "Service" || kind == "EndpointSlice" ||
      kind == "HTTPRoute" || kind == "GRPCRoute" || kind == "ReferenceGrant" ||
      kind == "TrafficPolicy") {
    out.all = true;  // every view holds every workload, service, route and traffic policy
    return out;
  }
  const std::string ns = SplitKey(key).first;
  // A policy reaches pods of its own namespace, and from the root namespace any pod. The pod
  // map is keyed "<ns>/<name>", so one namespace is one contiguous range.
  const auto& all_pods = st.Of("Pod");
  auto begin = all_pods.begin(), end = all_pods.end();
  if (ns != opts.root_namespace) {
    begin = all_pods.lower_bound(absl::StrCat(ns, "/"));
    end = all_pods.lower_bound(absl::StrCat(ns, "0"));  // '0' follows '/'
  }
  std::string pns;
  for (auto it = begin; it != end; ++it) {
    const auto& [pod_key, stored] = *it;
    const PodObj& pod = std::get<PodObj>(stored.value);
    if (pod.host_network || Terminated(pod) || out.nodes.contains(pod.node)) continue;
    pns.assign(pod_key, 0, pod_key.find('/'));
    bool applies = false;
    if (const auto* ap = std::get_if<pb::AuthorizationPolicy>(&value)) {
      applies = AuthzApplies(*ap, opts.root_namespace, pns, pod.labels);
    } else if (const auto* pa = std::get_if<pb::PeerAuthentication>(&value)) {
      applies = PeerAuthnApplies(*pa, opts.root_namespace, pns, pod.labels);
    } else if (const auto* np = std::get_if<NetPolObj>(&value)) {
      applies = np->ingress_isolated && pns == ns && np->pod_selector.Matches(pod.labels);
    }
    if (applies) out.nodes.insert(pod.node);
  }
  return out;
}

void Merge(NodeSet& into, const NodeSet& from) {
  into.all = into.all || from.all;
  into.nodes.insert(from.nodes.begin(), from.nodes.end());
  if (into.all) into.nodes.clear();
}

std::string BestEffort(const json& object, const char* field) {
  if (!object.is_object()) return "";
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto it = meta->find(field);
  return it != meta->end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

Model::Model(ModelOptions opts)
    : opts_(std::move(opts)),
      registry_(opts_.registry ? opts_.registry : std::make_shared<prometheus::Registry>()),
      state_(std::make_unique<State>()) {
  state_->rejected_total =
      &prometheus::BuildCounter()
           .Name("weft_cp_objects_rejected_total")
           .Help(
               "Objects rejected by validation, by outcome: rejected (the previous version, if "
               "any, "
               "stays in force) or how a policy is enforced fail-closed instead")
           .Register(*registry_);
  state_->ignored_total = &prometheus::BuildCounter()
                               .Name("weft_cp_objects_ignored_total")
                               .Help("Objects of kinds the model does not use")
                               .Register(*registry_);
  state_->applied_total = &prometheus::BuildCounter()
                               .Name("weft_cp_objects_applied_total")
                               .Help("Accepted upserts and deletes that changed the model")
                               .Register(*registry_);
  state_->egress_ignored =
      &prometheus::BuildCounter()
           .Name("weft_cp_networkpolicy_egress_ignored_total")
           .Help("NetworkPolicy versions with egress rules, which Weft does not enforce")
           .Register(*registry_)
           .Add({});
  state_->rejected_now = &prometheus::BuildGauge()
                              .Name("weft_cp_rejected_objects")
                              .Help("Objects currently rejected (weftctl status lists them)")
                              .Register(*registry_)
                              .Add({});
}

Model::~Model() = default;

namespace {

// The nodes one event changed, collected while it is applied.
struct Changes {
  NodeSet nodes;
  bool any = false;
  void Add(const NodeSet& n) {
    any = true;
    Merge(nodes, n);
  }
};

// kSynced: the source has listed every object of ev.kind it has; those it no longer has go, and
// so do their rejections.
void ApplySynced(State& st, const ModelOptions& opts, const ObjectEvent& ev, Changes& ch) {
  auto& seen = st.seen[{ev.source, ev.kind}];
  auto kind_it = st.objects.find(ev.kind);
  if (kind_it != st.objects.end()) {
    for (auto it = kind_it->second.begin(); it != kind_it->second.end();) {
      if (it->second.source == ev.source && !seen.contains(it->first)) {
        ch.Add(Affected(st, opts, ev.kind, it->first, it->second.value));
        st.applied_total->Add({{"kind", ev.kind}}).Increment();
        it = kind_it->second.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto it = st.rejected.begin(); it != st.rejected.end();) {
    const RejectedObject& r = it->second;
    if (r.kind == ev.kind && r.source == ev.source && !seen.contains(Key(r.ns, r.name))) {
      it = st.rejected.erase(it);
    } else {
      ++it;
    }
  }
  seen.clear();
  if (ch.any) {
    ++st.generation;
    st.dirty_kinds.insert(ev.kind);
  }
}

// Records a rejected upsert (listed, counted, logged); returns the error Apply reports.
// A Pod's weft.dev/netns-path is honoured only as ModelOptions::pod_netns_prefix says.
absl::Status CheckNetnsPath(const ModelOptions& opts, const internal::Parsed& parsed) {
  const auto* pod = std::get_if<PodObj>(&parsed);
  if (pod == nullptr || pod->netns_path.empty()) return absl::OkStatus();
  constexpr char kField[] = "metadata.annotations[weft.dev/netns-path]: ";
  if (opts.pod_netns_prefix.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kField,
        "not accepted here: only weftctl up's own pods may name their network namespace "
        "(in a cluster the agent finds it from the pod's UID); remove the annotation"));
  }
  const std::string& path = pod->netns_path;
  const std::string rest = path.substr(std::min(path.size(), opts.pod_netns_prefix.size()));
  if (!absl::StartsWith(path, opts.pod_netns_prefix) || rest.empty() || rest == "." ||
      rest == ".." || rest.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(kField, "\"", path,
                                                   "\" is not a pod namespace of this mesh (",
                                                   opts.pod_netns_prefix, "NAME)"));
  }
  return absl::OkStatus();
}

absl::Status Reject(State& st, const std::string& source, const std::string& kind,
                    const std::string& ns, const std::string& name, const absl::Status& why,
                    const internal::FailClosed* fail_closed = nullptr) {
  RejectedObject r{source,
                   kind,
                   ns,
                   name,
                   std::string(why.message()),
                   fail_closed != nullptr ? fail_closed->effect : ""};
  st.rejected_total
      ->Add({{"kind", kind}, {"outcome", fail_closed != nullptr ? fail_closed->label : "rejected"}})
      .Increment();
  const char* what = fail_closed == nullptr                     ? "object rejected"
                     : fail_closed->label.starts_with("route_") ? "route not applied"
                                                                : "policy enforced fail-closed";
  LOG_WARN("model", what,
           {{"source", r.source},
            {"kind", r.kind},
            {"object", Key(ns, name)},
            {"reason", r.reason},
            {"effect", r.effect}});
  absl::Status result = absl::InvalidArgumentError(r.reason);
  st.rejected[{kind, ns, name, source}] = std::move(r);
  return result;
}

// An event whose kind/name could not be read: an upsert is rejected under whatever names it
// has; a delete just fails.
absl::Status ApplyUnidentified(State& st, const ObjectEvent& ev, const absl::Status& why) {
  if (ev.type != ObjectEvent::Type::kUpsert) return why;
  std::string kind = ev.kind;
  if (kind.empty() && ev.object.is_object() && ev.object.contains("kind") &&
      ev.object["kind"].is_string()) {
    kind = ev.object["kind"].get<std::string>();
  }
  return Reject(st, ev.source, kind, BestEffort(ev.object, "namespace"),
                BestEffort(ev.object, "name"), why);
}

// A delete removes the object only if this source defined it; it clears its rejection anyway.
void ApplyDelete(State& st, const ModelOptions& opts, const ObjectEvent& ev,
                 const internal::ObjectId& id, Changes& ch) {
  const std::string key = Key(id.ns, id.name);
  auto& objects = st.objects[id.kind];
  auto existing = objects.find(key);
  st.rejected.erase(internal::RejectKey{id.kind, id.ns, id.name, ev.source});
  if (existing == objects.end() || existing->second.source != ev.source) return;
  ch.Add(Affected(st, opts, id.kind, key, existing->second.value));
  objects.erase(existing);
  st.applied_total->Add({{"kind", id.kind}}).Increment();
  ++st.generation;
  st.dirty_kinds.insert(id.kind);
}

// The text an object is compared by. A route's status (which weftd itself writes back) and the
// resourceVersion that writing bumps are left out, so weftd's own status update is a no-op.
std::string RawForCompare(const std::string& kind, const json& object) {
  if ((kind != "HTTPRoute" && kind != "GRPCRoute") || !object.is_object()) return object.dump();
  json copy = object;
  copy.erase("status");
  if (auto meta = copy.find("metadata"); meta != copy.end() && meta->is_object()) {
    meta->erase("resourceVersion");
    meta->erase("managedFields");
  }
  return copy.dump();
}

// An upsert: rejected if another source defines the object or it does not parse; the same
// bytes again change nothing; else stored, and the nodes of its old and new versions change.
absl::Status ApplyUpsert(State& st, const ModelOptions& opts, const ObjectEvent& ev,
                         const internal::ObjectId& id, Changes& ch) {
  const std::string key = Key(id.ns, id.name);
  auto& objects = st.objects[id.kind];
  auto existing = objects.find(key);
  const internal::RejectKey rkey{id.kind, id.ns, id.name, ev.source};
  st.seen[{ev.source, id.kind}].insert(key);
  if (existing != objects.end() && existing->second.source != ev.source) {
    return Reject(
        st, ev.source, id.kind, id.ns, id.name,
        absl::InvalidArgumentError(absl::StrCat("already defined by ", existing->second.source)));
  }
  std::string raw = RawForCompare(id.kind, ev.object);
  if (existing != objects.end() && existing->second.raw == raw) {
    // The accepted version again (a fail-closed policy stays listed as such).
    const auto& fc = existing->second.fail_closed;
    if (!fc) {
      st.rejected.erase(rkey);
      return absl::OkStatus();
    }
    st.rejected[rkey] = *fc;
    return absl::InvalidArgumentError(fc->reason);
  }
  std::optional<internal::FailClosed> fail_closed;
  auto parsed = internal::ParseObject(id, ev.object, &fail_closed);
  if (!parsed.ok()) return Reject(st, ev.source, id.kind, id.ns, id.name, parsed.status());
  if (absl::Status ns = CheckNetnsPath(opts, *parsed); !ns.ok())
    return Reject(st, ev.source, id.kind, id.ns, id.name, ns);
  st.rejected.erase(rkey);
  absl::Status result;
  std::optional<RejectedObject> fc_entry;
  if (fail_closed) {
    result = Reject(st, ev.source, id.kind, id.ns, id.name,
                    absl::InvalidArgumentError(fail_closed->reason), &*fail_closed);
    fc_entry = st.rejected.at(rkey);
  }
  if (const auto* np = std::get_if<NetPolObj>(&*parsed); np && np->has_egress) {
    st.egress_ignored->Increment();
    LOG_WARN("model", "NetworkPolicy egress rules are not enforced",
             {{"source", ev.source}, {"policy", key}});
  }
  if (existing != objects.end()) ch.Add(Affected(st, opts, id.kind, key, existing->second.value));
  Stored stored{ev.source, std::move(raw), std::move(*parsed), ++st.next_rev, std::move(fc_entry)};
  objects.insert_or_assign(key, std::move(stored));
  ++st.generation;  // before Affected: it must see the new state
  st.dirty_kinds.insert(id.kind);
  ch.Add(Affected(st, opts, id.kind, key, objects.at(key).value));
  st.applied_total->Add({{"kind", id.kind}}).Increment();
  return result;
}

absl::Status ApplyEvent(State& st, const ModelOptions& opts, const ObjectEvent& ev, Changes& ch) {
  if (ev.type == ObjectEvent::Type::kSynced) {
    ApplySynced(st, opts, ev, ch);
    return absl::OkStatus();
  }
  auto id = internal::ParseId(ev.kind, ev.object);
  if (!id.ok()) return ApplyUnidentified(st, ev, id.status());
  if (internal::FindKind(id->kind) == nullptr) {
    st.ignored_total->Add({{"kind", id->kind}}).Increment();
    LOG_DEBUG("model", "object of an unused kind ignored",
              {{"source", ev.source}, {"kind", id->kind}, {"name", id->name}});
    return absl::OkStatus();
  }
  if (ev.type == ObjectEvent::Type::kDelete) {
    ApplyDelete(st, opts, ev, *id, ch);
    return absl::OkStatus();
  }
  return ApplyUpsert(st, opts, ev, *id, ch);
}

}  // namespace

absl::Status Model::Apply(const ObjectEvent& ev) {
  Changes changes;
  absl::Status result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    result = ApplyEvent(*state_, opts_, ev, changes);
    state_->rejected_now->Set(static_cast<double>(state_->rejected.size()));
  }
  if (changes.any) {
    std::vector<std::function<void(const NodeSet&)>> listeners;
    {
      std::lock_guard<std::mutex> lock(mu_);
      listeners = listeners_;
    }
    for (const auto& fn : listeners) fn(changes.nodes);
  }
  return result;
}

ObjectSink Model::Sink() {
  return [this](const ObjectEvent& ev) { (void)Apply(ev); };
}

pb::ConfigSnapshot Model::NodeView(std::string_view node) const {
  std::lock_guard<std::mutex> lock(mu_);
  State& st = *state_;
  Common& c = GetCommon(st, opts_);
  const internal::NodePolicies& np = PoliciesOf(c, node, opts_);
  pb::ConfigSnapshot out;
  out.set_version(std::to_string(st.generation));
  out.set_trust_domain(opts_.trust_domain);
  out.set_root_namespace(opts_.root_namespace);
  out.set_outbound_traffic_policy(opts_.outbound_traffic_policy);
  out.mutable_workloads()->Reserve(static_cast<int>(c.workloads.size()));
  for (const ResPtr& w : c.workloads) *out.add_workloads() = w->workload();
  out.mutable_services()->Reserve(static_cast<int>(c.services.size()));
  for (const ResPtr& s : c.services) *out.add_services() = s->service();
  for (size_t k : np.authz) *out.add_authorization_policies() = c.authz[k]->authorization_policy();
  for (size_t k : np.peerauthn) {
    *out.add_peer_authentications() = c.peerauthn[k]->peer_authentication();
  }
  for (size_t k : np.netpols) *out.add_network_policies() = c.netpols[k]->network_policy();
  for (const ResPtr& r : c.http_routes) *out.add_http_routes() = r->http_route();
  for (const ResPtr& p : c.traffic_policies) *out.add_traffic_policies() = p->traffic_policy();
  return out;
}

SharedView Model::SharedNodeView(std::string_view node) const {
  std::lock_guard<std::mutex> lock(mu_);
  State& st = *state_;
  Common& c = GetCommon(st, opts_);
  const internal::NodePolicies& np = PoliciesOf(c, node, opts_);
  SharedView out;
  out.globals.set_version(std::to_string(st.generation));
  out.globals.set_trust_domain(opts_.trust_domain);
  out.globals.set_root_namespace(opts_.root_namespace);
  out.globals.set_outbound_traffic_policy(opts_.outbound_traffic_policy);
  // In ResourceKey.Kind order, each kind sorted by key: the config stream's canonical order.
  out.resources.reserve(c.workloads.size() + c.services.size() + np.authz.size() +
                        np.peerauthn.size() + np.netpols.size() + c.http_routes.size() +
                        c.traffic_policies.size());
  out.resources.insert(out.resources.end(), c.workloads.begin(), c.workloads.end());
  out.resources.insert(out.resources.end(), c.services.begin(), c.services.end());
  for (size_t k : np.authz) out.resources.push_back(c.authz[k]);
  for (size_t k : np.peerauthn) out.resources.push_back(c.peerauthn[k]);
  for (size_t k : np.netpols) out.resources.push_back(c.netpols[k]);
  out.resources.insert(out.resources.end(), c.http_routes.begin(), c.http_routes.end());
  out.resources.insert(out.resources.end(), c.traffic_policies.begin(), c.traffic_policies.end());
  return out;
}

std::vector<std::string> Model::IdentitiesOnNode(std::string_view node) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> ids;
  for (const auto& [key, stored] : state_->Of("Pod")) {
    const PodObj& p = std::get<PodObj>(stored.value);
    if (p.node != node || p.host_network || Terminated(p)) continue;
    ids.insert(SpiffeId{opts_.trust_domain, SplitKey(key).first, p.service_account}.ToString());
  }
  return {ids.begin(), ids.end()};
}

std::optional<std::string> Model::PodNode(std::string_view ns, std::string_view name,
                                          std::string_view uid) const {
  if (ns.empty() || name.empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  const auto& pods = state_->Of("Pod");
  auto it = pods.find(Key(ns, name));
  if (it == pods.end()) return std::nullopt;
  const PodObj& p = std::get<PodObj>(it->second.value);
  if (p.uid != uid || p.node.empty() || Terminated(p)) return std::nullopt;
  return p.node;
}

std::vector<std::string> Model::Nodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> nodes;
  for (const auto& [key, stored] : state_->Of("Pod")) {
    const PodObj& p = std::get<PodObj>(stored.value);
    if (!p.node.empty()) nodes.insert(p.node);
  }
  return {nodes.begin(), nodes.end()};
}

std::vector<RejectedObject> Model::Rejected() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RejectedObject> out;
  for (const auto& [key, r] : state_->rejected) out.push_back(r);
  return out;
}

std::vector<RouteStatus> Model::RouteStatuses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return GetCommon(*state_, opts_).route_status;
}

uint64_t Model::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_->generation;
}

void Model::OnChange(std::function<void(const NodeSet&)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.push_back(std::move(fn));
}

absl::Status ValidateObject(const std::string& kind, const json& object) {
  WEFT_ASSIGN_OR_RETURN(internal::ObjectId id, internal::ParseId(kind, object));
  if (internal::FindKind(id.kind) == nullptr) return absl::OkStatus();
  return internal::ParseObject(id, object).status();
}

bool IsSupportedKind(std::string_view kind) {
  return internal::FindKind(kind) != nullptr;
}

}  // namespace weft::cp
