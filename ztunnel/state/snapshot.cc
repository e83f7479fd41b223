#include "ztunnel/state/snapshot.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "config/model/convert.h"

namespace weft::ztunnel {
namespace {

namespace pb = ::weft::config::v1;

constexpr std::string_view kDefaultTrustDomain = "cluster.local";
constexpr std::string_view kDefaultRootNamespace = "weft-system";

// Every validation error reads "<object>: <field path>: <problem>".
absl::Status Invalid(std::string_view object, std::string_view field, std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(Av(object), ": ", Av(field), ": ", Av(problem)));
}

// A per-object conversion's error, named after its object.
absl::Status InObject(std::string_view object, const absl::Status& st) {
  if (st.ok()) return st;
  std::optional<config::ConfigError> e = config::GetConfigError(st);
  if (!e) return st;  // not a validation error (the conversions make no other kind)
  return Invalid(object, e->path, e->reason);
}

std::string Quote(std::string_view s) {
  return absl::StrCat("\"", Av(s), "\"");
}

// `authorization_policy "ns/name"`, or `authorizationPolicies[3]` while the key is incomplete.
std::string ObjectName(std::string_view kind, std::string_view plural, size_t index,
                       std::string_view ns, std::string_view name) {
  if (ns.empty() || name.empty()) return absl::StrCat(Av(plural), "[", index, "]");
  return absl::StrCat(Av(kind), " \"", Av(ns), "/", Av(name), "\"");
}

// How a namespaced kind is named in errors.
struct NamedKind {
  std::string_view kind;    // authorization_policy
  std::string_view plural;  // authorizationPolicies
  std::string_view what;    // authorization policy
};

// The steps every namespaced kind shares: name and namespace present, "<ns>/<name>" not seen
// before in this snapshot, then the kind's own conversion (`convert`).
template <typename Pb, typename Convert>
auto ConvertNamed(const Pb& in, const std::string& obj, const NamedKind& kind,
                  absl::flat_hash_set<std::string>* seen, Convert convert)
    -> decltype(convert(in)) {
  WEFT_RETURN_IF_ERROR(InObject(obj, config::CheckNamedKey(in.name(), in.namespace_())));
  if (!seen->insert(absl::StrCat(in.namespace_(), "/", in.name())).second) {
    return Invalid(obj, "name",
                   absl::StrCat("duplicate ", Av(kind.what), " (same namespace and name)"));
  }
  auto out = convert(in);
  if (!out.ok()) return InObject(obj, out.status());
  return out;
}

}  // namespace

// Builds one snapshot: the globals, then each kind in turn through its per-object conversion
// (config/model/convert.h), adding the checks that span objects and the indexes.
class ConfigSnapshot::Builder {
 public:
  explicit Builder(ConfigSnapshot& s) : s_(s) {}

  absl::Status Globals(const pb::ConfigSnapshot& in) {
    s_.version_ = in.version();
    s_.trust_domain_ =
        in.trust_domain().empty() ? std::string(kDefaultTrustDomain) : in.trust_domain();
    WEFT_RETURN_IF_ERROR(InObject("snapshot", config::CheckTrustDomain(s_.trust_domain_)));
    s_.root_namespace_ =
        in.root_namespace().empty() ? std::string(kDefaultRootNamespace) : in.root_namespace();
    switch (in.outbound_traffic_policy()) {
      case pb::ConfigSnapshot::ALLOW_ANY:
        s_.registry_only_ = false;
        return absl::OkStatus();
      case pb::ConfigSnapshot::REGISTRY_ONLY:
        s_.registry_only_ = true;
        return absl::OkStatus();
      default:
        return Invalid("snapshot", "outboundTrafficPolicy",
                       absl::StrCat("unknown value ", in.outbound_traffic_policy(),
                                    " (want ALLOW_ANY or REGISTRY_ONLY)"));
    }
  }

  // Keyed by uid: unique, and no address claimed by two workloads.
  absl::Status AddWorkload(const pb::Workload& pw, size_t i) {
    if (absl::Status st = config::CheckWorkloadKey(pw); !st.ok()) {
      return InObject(absl::StrCat("workloads[", i, "]"), st);
    }
    const std::string obj = absl::StrCat("workload ", Quote(pw.uid()));
    if (s_.by_uid_.contains(pw.uid())) return Invalid(obj, "uid", "duplicate workload uid");
    absl::StatusOr<Workload> w = config::WorkloadFromProto(pw, s_.trust_domain_);
    if (!w.ok()) return InObject(obj, w.status());
    for (size_t j = 0; j < w->addresses.size(); ++j) {
      const IpAddr& ip = w->addresses[j];
      if (auto it = s_.by_ip_.find(ip); it != s_.by_ip_.end()) {
        return Invalid(obj, absl::StrCat("addresses[", j, "]"),
                       absl::StrCat("address ", ip.ToString(), " is already claimed by workload ",
                                    Quote(s_.workloads_[it->second].uid)));
      }
    }
    size_t idx = s_.workloads_.size();
    s_.by_uid_.emplace(w->uid, idx);
    for (const auto& ip : w->addresses) s_.by_ip_.emplace(ip, idx);
    s_.workloads_.push_back(*std::move(w));
    return absl::OkStatus();
  }

  // No address claimed by two services; every endpoint names a workload of this snapshot.
  absl::Status AddService(const pb::Service& ps, size_t i) {
    const std::string obj = ObjectName("service", "services", i, ps.namespace_(), ps.name());
    WEFT_ASSIGN_OR_RETURN(Service svc, ConvertNamed(ps, obj, {"service", "services", "service"},
                                                    &service_keys_, config::ServiceFromProto));
    for (size_t j = 0; j < svc.addresses.size(); ++j) {
      const IpAddr& ip = svc.addresses[j];
      if (auto it = s_.svc_by_ip_.find(ip); it != s_.svc_by_ip_.end()) {
        const Service& other = s_.services_[it->second];
        return Invalid(obj, absl::StrCat("addresses[", j, "]"),
                       absl::StrCat("address ", ip.ToString(), " is already claimed by service ",
                                    Quote(absl::StrCat(other.ns, "/", other.name))));
      }
    }
    for (int j = 0; j < ps.endpoints_size(); ++j) {
      const std::string& uid = ps.endpoints(j).workload_uid();
      if (!s_.by_uid_.contains(uid)) {
        return Invalid(obj, absl::StrCat("endpoints[", j, "].workloadUid"),
                       absl::StrCat("workload ", Quote(uid),
                                    " is not in the snapshot (add it to workloads or remove the "
                                    "endpoint)"));
      }
    }
    size_t idx = s_.services_.size();
    for (const auto& ip : svc.addresses) s_.svc_by_ip_.emplace(ip, idx);
    s_.svc_by_key_.emplace(absl::StrCat(svc.ns, "/", svc.name), idx);
    for (const auto& uid : svc.ready_endpoint_uids) s_.svc_by_endpoint_[uid].push_back(idx);
    s_.services_.push_back(std::move(svc));
    return absl::OkStatus();
  }

  absl::Status AddAuthorizationPolicy(const pb::AuthorizationPolicy& pp, size_t i) {
    const NamedKind kind{"authorization_policy", "authorizationPolicies", "authorization policy"};
    const std::string obj = ObjectName(kind.kind, kind.plural, i, pp.namespace_(), pp.name());
    WEFT_ASSIGN_OR_RETURN(
        AuthorizationPolicy ap,
        ConvertNamed(pp, obj, kind, &policy_keys_, config::AuthorizationPolicyFromProto));
    s_.policies_by_ns_[ap.ns].push_back(s_.policies_.size());
    s_.policies_.push_back(std::move(ap));
    return absl::OkStatus();
  }

  absl::Status AddPeerAuthentication(const pb::PeerAuthentication& pp, size_t i) {
    const NamedKind kind{"peer_authentication", "peerAuthentications", "peer authentication"};
    const std::string obj = ObjectName(kind.kind, kind.plural, i, pp.namespace_(), pp.name());
    WEFT_ASSIGN_OR_RETURN(PeerAuthentication pa, ConvertNamed(pp, obj, kind, &peer_authn_keys_,
                                                              config::PeerAuthenticationFromProto));
    s_.peer_authns_by_ns_[pa.ns].push_back(s_.peer_authns_.size());
    s_.peer_authns_.push_back(std::move(pa));
    return absl::OkStatus();
  }

  // Workload uids unknown to this snapshot are not errors (a per-node view may leave them out).
  absl::Status AddNetworkPolicy(const pb::NetworkPolicy& pn, size_t i) {
    const NamedKind kind{"network_policy", "networkPolicies", "network policy"};
    const std::string obj = ObjectName(kind.kind, kind.plural, i, pn.namespace_(), pn.name());
    WEFT_ASSIGN_OR_RETURN(NetworkPolicy np, ConvertNamed(pn, obj, kind, &network_policy_keys_,
                                                         config::NetworkPolicyFromProto));
    for (const std::string& uid : np.workload_uids) {
      s_.network_policies_by_uid_[uid].push_back(s_.network_policies_.size());
    }
    s_.network_policies_.push_back(std::move(np));
    return absl::OkStatus();
  }

  // Keyed like the config stream's HTTP_ROUTE resources: one route per (kind, route, parent, port).
  absl::Status AddHttpRoute(const pb::HttpRoute& pr, size_t i) {
    std::string obj = ObjectName("http_route", "httpRoutes", i, pr.namespace_(), pr.name());
    WEFT_RETURN_IF_ERROR(InObject(obj, config::CheckNamedKey(pr.name(), pr.namespace_())));
    obj =
        absl::StrCat(obj, " (parent ", Quote(pr.parent_service()), " port ", pr.parent_port(), ")");
    if (!route_keys_
             .insert(absl::StrCat(pr.kind(), "/", pr.namespace_(), "/", pr.name(), "/",
                                  pr.parent_service(), "/", pr.parent_port()))
             .second) {
      return Invalid(obj, "name", "duplicate route (same kind, namespace, name, parent and port)");
    }
    absl::StatusOr<HttpRoute> r = config::HttpRouteFromProto(pr);
    if (!r.ok()) return InObject(obj, r.status());
    s_.routes_by_service_[r->parent_service].push_back(s_.http_routes_.size());
    s_.http_routes_.push_back(*std::move(r));
    return absl::OkStatus();
  }

  absl::Status AddTrafficPolicy(const pb::TrafficPolicy& pp, size_t i) {
    const NamedKind kind{"traffic_policy", "trafficPolicies", "traffic policy"};
    const std::string obj = ObjectName(kind.kind, kind.plural, i, pp.namespace_(), pp.name());
    WEFT_ASSIGN_OR_RETURN(TrafficPolicy tp, ConvertNamed(pp, obj, kind, &traffic_policy_keys_,
                                                         config::TrafficPolicyFromProto));
    s_.traffic_policies_by_service_[tp.target_service].push_back(s_.traffic_policies_.size());
    s_.traffic_policies_.push_back(std::move(tp));
    return absl::OkStatus();
  }

 private:
  ConfigSnapshot& s_;
  absl::flat_hash_set<std::string> service_keys_, policy_keys_, peer_authn_keys_,
      network_policy_keys_, route_keys_, traffic_policy_keys_;
};

absl::StatusOr<std::shared_ptr<const ConfigSnapshot>> ConfigSnapshot::FromProto(
    const pb::ConfigSnapshot& in) {
  auto snap = std::make_shared<ConfigSnapshot>();
  Builder b(*snap);
  WEFT_RETURN_IF_ERROR(b.Globals(in));
  snap->workloads_.reserve(in.workloads_size());
  for (int i = 0; i < in.workloads_size(); ++i) {
    WEFT_RETURN_IF_ERROR(b.AddWorkload(in.workloads(i), i));
  }
  snap->services_.reserve(in.services_size());
  for (int i = 0; i < in.services_size(); ++i) {
    WEFT_RETURN_IF_ERROR(b.AddService(in.services(i), i));
  }
  snap->policies_.reserve(in.authorization_policies_size());
  for (int i = 0; i < in.authorization_policies_size(); ++i) {
    WEFT_RETURN_IF_ERROR(b.AddAuthorizationPolicy(in.authorization_policies(i), i));
  }
  snap->peer_authns_.reserve(in.peer_authentications_size());
  for (int i = 0; i < in.peer_authentications_size(); ++i) {
    WEFT_RETURN_IF_ERROR(b.AddPeerAuthentication(in.peer_authentications(i), i));
  }
  snap->network_policies_.reserve(in.network_policies_size());
  for (int i = 0; i < in.network_policies_size(); ++i) {
    WEFT_RETURN_IF_ERROR(b.AddNetworkPolicy(in.network_policies(i), i));
  }
  snap->http_routes_.reserve(in.http_routes_size());
  for (int i = 0; i < in.http_routes_size(); ++i) {
    WEFT_RETURN_IF_ERROR(b.AddHttpRoute(in.http_routes(i), i));
  }
  snap->traffic_policies_.reserve(in.traffic_policies_size());
  for (int i = 0; i < in.traffic_policies_size(); ++i) {
    WEFT_RETURN_IF_ERROR(b.AddTrafficPolicy(in.traffic_policies(i), i));
  }
  snap->source_ = in;
  return std::shared_ptr<const ConfigSnapshot>(std::move(snap));
}

std::shared_ptr<const ConfigSnapshot> ConfigSnapshot::Empty() {
  static const std::shared_ptr<const ConfigSnapshot> empty = [] {
    auto s = FromProto(pb::ConfigSnapshot());
    WEFT_CHECK(s.ok());
    return *s;
  }();
  return empty;
}

const Workload* ConfigSnapshot::FindWorkloadByUid(std::string_view uid) const {
  auto it = by_uid_.find(Av(uid));
  return it == by_uid_.end() ? nullptr : &workloads_[it->second];
}

const Workload* ConfigSnapshot::FindWorkloadByAddress(const IpAddr& ip) const {
  auto it = by_ip_.find(ip);
  return it == by_ip_.end() ? nullptr : &workloads_[it->second];
}

const Service* ConfigSnapshot::FindServiceByKey(std::string_view key) const {
  auto it = svc_by_key_.find(Av(key));
  return it == svc_by_key_.end() ? nullptr : &services_[it->second];
}

const Service* ConfigSnapshot::FindServiceByAddress(const IpAddr& vip) const {
  auto it = svc_by_ip_.find(vip);
  return it == svc_by_ip_.end() ? nullptr : &services_[it->second];
}

const Service* ConfigSnapshot::ServiceForEndpoint(const Workload& w, uint16_t target_port) const {
  auto it = svc_by_endpoint_.find(w.uid);
  if (it == svc_by_endpoint_.end()) return nullptr;
  for (size_t i : it->second)
    for (const auto& p : services_[i].ports)
      if (p.target_port == target_port) return &services_[i];
  return nullptr;
}

std::vector<const AuthorizationPolicy*> ConfigSnapshot::PoliciesFor(const Workload& w) const {
  static const std::vector<size_t> kNone;
  auto lookup = [&](const std::string& ns) -> const std::vector<size_t>& {
    auto it = policies_by_ns_.find(ns);
    return it == policies_by_ns_.end() ? kNone : it->second;
  };
  const std::vector<size_t>& root = lookup(root_namespace_);
  const std::vector<size_t>& own = w.ns == root_namespace_ ? kNone : lookup(w.ns);
  // Both lists are in config order; merge them so the result is too.
  std::vector<size_t> idx;
  idx.reserve(root.size() + own.size());
  std::merge(root.begin(), root.end(), own.begin(), own.end(), std::back_inserter(idx));
  std::vector<const AuthorizationPolicy*> out;
  for (size_t i : idx) {
    const AuthorizationPolicy& p = policies_[i];
    if (!p.selector || SelectorMatches(*p.selector, w.labels)) out.push_back(&p);
  }
  return out;
}

std::vector<const NetworkPolicy*> ConfigSnapshot::NetworkPoliciesFor(const Workload& w) const {
  std::vector<const NetworkPolicy*> out;
  auto it = network_policies_by_uid_.find(w.uid);
  if (it == network_policies_by_uid_.end()) return out;
  for (size_t i : it->second) out.push_back(&network_policies_[i]);
  return out;
}

MtlsMode ConfigSnapshot::EffectiveMtls(const Workload& w, uint16_t port) const {
  auto level = [&](const std::string& ns, bool workload_level) -> MtlsMode {
    auto it = peer_authns_by_ns_.find(ns);
    if (it == peer_authns_by_ns_.end()) return MtlsMode::kUnset;
    for (size_t i : it->second) {
      const PeerAuthentication& pa = peer_authns_[i];
      if (pa.selector.has_value() != workload_level) continue;
      if (workload_level) {
        if (!SelectorMatches(*pa.selector, w.labels)) continue;
        auto pm = pa.port_modes.find(port);
        if (pm != pa.port_modes.end() && pm->second != MtlsMode::kUnset) return pm->second;
      }
      // The first policy at this level decides, even when its mode is UNSET (inherit).
      return pa.mode;
    }
    return MtlsMode::kUnset;
  };
  for (MtlsMode m : {level(w.ns, true), level(w.ns, false), level(root_namespace_, false)}) {
    if (m != MtlsMode::kUnset) return m;
  }
  return MtlsMode::kPermissive;
}

std::vector<const HttpRoute*> ConfigSnapshot::RoutesForService(std::string_view service_key) const {
  std::vector<const HttpRoute*> out;
  auto it = routes_by_service_.find(Av(service_key));
  if (it == routes_by_service_.end()) return out;
  for (size_t i : it->second) out.push_back(&http_routes_[i]);
  return out;
}

const TrafficPolicy* ConfigSnapshot::TrafficPolicyFor(std::string_view service_key,
                                                      uint16_t port) const {
  auto it = traffic_policies_by_service_.find(Av(service_key));
  if (it == traffic_policies_by_service_.end()) return nullptr;
  const TrafficPolicy* whole = nullptr;
  for (size_t i : it->second) {
    const TrafficPolicy& p = traffic_policies_[i];
    if (p.target_port != 0 && p.target_port == port) return &p;
    if (p.target_port == 0 && whole == nullptr) whole = &p;
  }
  return whole;
}

std::string ConfigSnapshot::ToJson() const {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  auto st = google::protobuf::util::MessageToJsonString(source_, &out, opts);
  // Serialising a message we already hold cannot fail short of memory exhaustion.
  WEFT_CHECK(st.ok());
  return out;
}

SnapshotPtr ConfigStore::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

void ConfigStore::Set(SnapshotPtr s) {
  if (s == nullptr) s = ConfigSnapshot::Empty();
  std::vector<std::function<void(const SnapshotPtr&)>> subs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = s;
    subs = subscribers_;
  }
  for (const auto& fn : subs) fn(s);
}

void ConfigStore::Subscribe(std::function<void(const SnapshotPtr&)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  subscribers_.push_back(std::move(fn));
}

}  // namespace weft::ztunnel
