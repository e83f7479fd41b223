#include "ztunnel/state/snapshot.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace weft::ztunnel {
namespace {

namespace pb = ::weft::config::v1;
using RepeatedStrings = google::protobuf::RepeatedPtrField<std::string>;

constexpr std::string_view kDefaultTrustDomain = "cluster.local";
constexpr std::string_view kDefaultRootNamespace = "weft-system";

// Every validation error reads "<object>: <field path>: <problem>".
absl::Status Invalid(std::string_view object, std::string_view field, std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(Av(object), ": ", Av(field), ": ", Av(problem)));
}

std::string Quote(std::string_view s) {
  return absl::StrCat("\"", Av(s), "\"");
}

std::string Indexed(std::string_view field, size_t i) {
  return absl::StrCat(Av(field), "[", i, "]");
}

absl::Status CheckTrustDomain(std::string_view td, std::string_view object) {
  if (td.empty() || td.find_first_of("/?#: \t\r\n") != std::string_view::npos) {
    return Invalid(
        object, "trustDomain",
        absl::StrCat(Quote(td), " is not a valid trust domain (want e.g. cluster.local)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<IpAddr> ParseIp(std::string_view s, std::string_view object,
                               std::string_view field) {
  auto ip = IpAddr::Parse(s);
  if (!ip.ok()) {
    return Invalid(object, field, absl::StrCat(Quote(s), " is not an IP address"));
  }
  return *ip;
}

absl::StatusOr<Cidr> ParseCidr(std::string_view s, std::string_view object,
                               std::string_view field) {
  auto c = Cidr::Parse(s);
  if (!c.ok()) {
    return Invalid(object, field,
                   absl::StrCat("bad CIDR ", Quote(s),
                                " (want an IP or a CIDR like 10.0.0.0/8): ", c.status().message()));
  }
  return *c;
}

absl::StatusOr<uint16_t> CheckPort(uint64_t port, std::string_view object, std::string_view field) {
  if (port < 1 || port > 65535) {
    return Invalid(object, field, absl::StrCat("port ", port, " is out of range 1-65535"));
  }
  return static_cast<uint16_t>(port);
}

absl::StatusOr<uint16_t> ParsePort(std::string_view s, std::string_view object,
                                   std::string_view field) {
  uint32_t v = 0;
  if (!absl::SimpleAtoi(Av(s), &v) || v < 1 || v > 65535) {
    return Invalid(object, field,
                   absl::StrCat(Quote(s),
                                " is not a port number (want 1-65535; ranges and "
                                "names are not supported)"));
  }
  return static_cast<uint16_t>(v);
}

absl::Status ParseMatches(const RepeatedStrings& in, std::string_view object,
                          std::string_view field, std::vector<StringMatch>* out) {
  for (int i = 0; i < in.size(); ++i) {
    const std::string& p = in[i];
    if (p.empty()) return Invalid(object, Indexed(field, i), "empty value is not allowed");
    size_t star = p.find('*');
    bool ok = star == std::string::npos || p == "*" ||
              (p.find('*', 1) == std::string::npos) ||  // only leading
              (star == p.size() - 1);                   // only trailing
    if (!ok) {
      return Invalid(object, Indexed(field, i),
                     absl::StrCat(Quote(p),
                                  ": '*' is allowed only alone, as a prefix (\"*x\") or "
                                  "as a suffix (\"x*\")"));
    }
    out->push_back(StringMatch::Parse(p));
  }
  return absl::OkStatus();
}

absl::Status ParseCidrs(const RepeatedStrings& in, std::string_view object, std::string_view field,
                        std::vector<Cidr>* out) {
  for (int i = 0; i < in.size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(Cidr c, ParseCidr(in[i], object, Indexed(field, i)));
    out->push_back(c);
  }
  return absl::OkStatus();
}

absl::Status ParsePorts(const RepeatedStrings& in, std::string_view object, std::string_view field,
                        std::vector<uint16_t>* out) {
  for (int i = 0; i < in.size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(uint16_t p, ParsePort(in[i], object, Indexed(field, i)));
    out->push_back(p);
  }
  return absl::OkStatus();
}

Labels ToLabels(const google::protobuf::Map<std::string, std::string>& m) {
  Labels out;
  for (const auto& [k, v] : m) out.emplace(k, v);
  return out;
}

std::optional<Labels> SelectorFrom(bool has, const pb::WorkloadSelector& sel) {
  // Istio treats a selector without matchLabels like no selector at all.
  if (!has || sel.match_labels().empty()) return std::nullopt;
  return ToLabels(sel.match_labels());
}

std::string ObjectName(std::string_view kind, std::string_view plural, size_t index,
                       std::string_view ns, std::string_view name) {
  if (ns.empty() || name.empty()) return Indexed(plural, index);
  return absl::StrCat(Av(kind), " \"", Av(ns), "/", Av(name), "\"");
}

absl::StatusOr<AuthzSource> ConvertSource(const pb::Source& s, std::string_view obj,
                                          const std::string& path) {
  AuthzSource out;
  auto f = [&](std::string_view name) { return absl::StrCat(path, ".", Av(name)); };
  WEFT_RETURN_IF_ERROR(ParseMatches(s.principals(), obj, f("principals"), &out.principals));
  WEFT_RETURN_IF_ERROR(
      ParseMatches(s.not_principals(), obj, f("notPrincipals"), &out.not_principals));
  WEFT_RETURN_IF_ERROR(ParseMatches(s.namespaces(), obj, f("namespaces"), &out.namespaces));
  WEFT_RETURN_IF_ERROR(
      ParseMatches(s.not_namespaces(), obj, f("notNamespaces"), &out.not_namespaces));
  WEFT_RETURN_IF_ERROR(ParseCidrs(s.ip_blocks(), obj, f("ipBlocks"), &out.ip_blocks));
  WEFT_RETURN_IF_ERROR(ParseCidrs(s.not_ip_blocks(), obj, f("notIpBlocks"), &out.not_ip_blocks));
  WEFT_RETURN_IF_ERROR(
      ParseCidrs(s.remote_ip_blocks(), obj, f("remoteIpBlocks"), &out.remote_ip_blocks));
  WEFT_RETURN_IF_ERROR(
      ParseCidrs(s.not_remote_ip_blocks(), obj, f("notRemoteIpBlocks"), &out.not_remote_ip_blocks));
  // Request principals come from a JWT: validated here, evaluated only at L7.
  std::vector<StringMatch> ignored;
  WEFT_RETURN_IF_ERROR(ParseMatches(s.request_principals(), obj, f("requestPrincipals"), &ignored));
  WEFT_RETURN_IF_ERROR(
      ParseMatches(s.not_request_principals(), obj, f("notRequestPrincipals"), &ignored));
  out.has_l7 = !s.request_principals().empty() || !s.not_request_principals().empty();
  bool any = out.has_l7 || !out.principals.empty() || !out.not_principals.empty() ||
             !out.namespaces.empty() || !out.not_namespaces.empty() || !out.ip_blocks.empty() ||
             !out.not_ip_blocks.empty() || !out.remote_ip_blocks.empty() ||
             !out.not_remote_ip_blocks.empty();
  if (!any) {
    return Invalid(obj, path,
                   "must set at least one field (drop the `from` entry to match any source)");
  }
  return out;
}

absl::StatusOr<AuthzOperation> ConvertOperation(const pb::Operation& o, std::string_view obj,
                                                const std::string& path) {
  AuthzOperation out;
  auto f = [&](std::string_view name) { return absl::StrCat(path, ".", Av(name)); };
  WEFT_RETURN_IF_ERROR(ParsePorts(o.ports(), obj, f("ports"), &out.ports));
  WEFT_RETURN_IF_ERROR(ParsePorts(o.not_ports(), obj, f("notPorts"), &out.not_ports));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.hosts(), obj, f("hosts"), &out.hosts));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.not_hosts(), obj, f("notHosts"), &out.not_hosts));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.methods(), obj, f("methods"), &out.methods));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.not_methods(), obj, f("notMethods"), &out.not_methods));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.paths(), obj, f("paths"), &out.paths));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.not_paths(), obj, f("notPaths"), &out.not_paths));
  if (out.ports.empty() && out.not_ports.empty() && !out.has_l7()) {
    return Invalid(obj, path,
                   "must set at least one field (drop the `to` entry to match any operation)");
  }
  return out;
}

absl::StatusOr<AuthzCondition> ConvertCondition(const pb::Condition& c, std::string_view obj,
                                                const std::string& path) {
  AuthzCondition out;
  out.key = c.key();
  out.values.assign(c.values().begin(), c.values().end());
  out.not_values.assign(c.not_values().begin(), c.not_values().end());
  if (c.key().empty()) return Invalid(obj, path + ".key", "is required");
  if (c.values().empty() && c.not_values().empty()) {
    return Invalid(obj, path,
                   absl::StrCat("condition ", Quote(c.key()),
                                " must set at least one of values or notValues"));
  }
  const std::string& k = c.key();
  std::string v = path + ".values", nv = path + ".notValues";
  if (k == "source.ip" || k == "remote.ip" || k == "destination.ip") {
    out.kind = k == "destination.ip" ? AuthzCondition::Kind::kDestinationIp
                                     : AuthzCondition::Kind::kSourceIp;
    WEFT_RETURN_IF_ERROR(ParseCidrs(c.values(), obj, v, &out.ip_values));
    WEFT_RETURN_IF_ERROR(ParseCidrs(c.not_values(), obj, nv, &out.not_ip_values));
  } else if (k == "destination.port") {
    out.kind = AuthzCondition::Kind::kDestinationPort;
    WEFT_RETURN_IF_ERROR(ParsePorts(c.values(), obj, v, &out.port_values));
    WEFT_RETURN_IF_ERROR(ParsePorts(c.not_values(), obj, nv, &out.not_port_values));
  } else if (k == "source.namespace" || k == "source.principal") {
    out.kind = k == "source.namespace" ? AuthzCondition::Kind::kSourceNamespace
                                       : AuthzCondition::Kind::kSourcePrincipal;
    WEFT_RETURN_IF_ERROR(ParseMatches(c.values(), obj, v, &out.match_values));
    WEFT_RETURN_IF_ERROR(ParseMatches(c.not_values(), obj, nv, &out.not_match_values));
  } else if (k.starts_with("request.") && k.size() > 8) {
    out.kind = AuthzCondition::Kind::kL7;
  } else {
    return Invalid(obj, path + ".key",
                   absl::StrCat("unsupported condition key ", Quote(k),
                                "; supported: source.ip, remote.ip, source.namespace, "
                                "source.principal, destination.ip, destination.port, and "
                                "request.* (L7)"));
  }
  return out;
}

absl::StatusOr<MtlsMode> ConvertMode(int mode, std::string_view obj, std::string_view field) {
  switch (mode) {
    case pb::PeerAuthentication::UNSET:
      return MtlsMode::kUnset;
    case pb::PeerAuthentication::DISABLE:
      return MtlsMode::kDisable;
    case pb::PeerAuthentication::PERMISSIVE:
      return MtlsMode::kPermissive;
    case pb::PeerAuthentication::STRICT:
      return MtlsMode::kStrict;
  }
  return Invalid(obj, field,
                 absl::StrCat("unknown mode ", mode, " (want UNSET, DISABLE, PERMISSIVE, STRICT)"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ConfigSnapshot>> ConfigSnapshot::FromProto(
    const pb::ConfigSnapshot& in) {
  auto snap = std::make_shared<ConfigSnapshot>();
  ConfigSnapshot& s = *snap;
  s.version_ = in.version();
  s.trust_domain_ =
      in.trust_domain().empty() ? std::string(kDefaultTrustDomain) : in.trust_domain();
  WEFT_RETURN_IF_ERROR(CheckTrustDomain(s.trust_domain_, "snapshot"));
  s.root_namespace_ =
      in.root_namespace().empty() ? std::string(kDefaultRootNamespace) : in.root_namespace();
  switch (in.outbound_traffic_policy()) {
    case pb::ConfigSnapshot::ALLOW_ANY:
      s.registry_only_ = false;
      break;
    case pb::ConfigSnapshot::REGISTRY_ONLY:
      s.registry_only_ = true;
      break;
    default:
      return Invalid("snapshot", "outboundTrafficPolicy",
                     absl::StrCat("unknown value ", in.outbound_traffic_policy(),
                                  " (want ALLOW_ANY or REGISTRY_ONLY)"));
  }

  // ---- workloads
  s.workloads_.reserve(in.workloads_size());
  for (int i = 0; i < in.workloads_size(); ++i) {
    const pb::Workload& pw = in.workloads(i);
    if (pw.uid().empty()) {
      return Invalid(Indexed("workloads", i), "uid",
                     "is required (a unique key such as <namespace>/<pod name>)");
    }
    const std::string obj = absl::StrCat("workload ", Quote(pw.uid()));
    if (s.by_uid_.contains(pw.uid())) return Invalid(obj, "uid", "duplicate workload uid");
    if (pw.namespace_().empty()) return Invalid(obj, "namespace", "is required");
    Workload w;
    w.uid = pw.uid();
    w.name = pw.name();
    w.ns = pw.namespace_();
    w.service_account = pw.service_account().empty() ? "default" : pw.service_account();
    w.node = pw.node();
    w.workload_name = !pw.workload_name().empty() ? pw.workload_name()
                      : !pw.name().empty()        ? pw.name()
                                                  : pw.uid();
    w.trust_domain = pw.trust_domain().empty() ? s.trust_domain_ : pw.trust_domain();
    WEFT_RETURN_IF_ERROR(CheckTrustDomain(w.trust_domain, obj));
    w.netns_path = pw.netns_path();
    w.labels = ToLabels(pw.labels());
    switch (pw.protocol()) {
      case pb::Workload::PROTOCOL_UNSPECIFIED:
      case pb::Workload::TCP:
        w.protocol = WorkloadProtocol::kTcp;
        break;
      case pb::Workload::HBONE:
        w.protocol = WorkloadProtocol::kHbone;
        break;
      default:
        return Invalid(obj, "protocol",
                       absl::StrCat("unknown protocol ", pw.protocol(), " (want TCP or HBONE)"));
    }
    if (pw.phase().empty() || pw.phase() == "Running") {
      w.running = true;
    } else if (pw.phase() == "Pending" || pw.phase() == "Succeeded" || pw.phase() == "Failed" ||
               pw.phase() == "Unknown") {
      w.running = false;
    } else {
      return Invalid(obj, "phase",
                     absl::StrCat("unknown phase ", Quote(pw.phase()),
                                  " (want Pending, Running, Succeeded, Failed or Unknown)"));
    }
    for (int j = 0; j < pw.addresses_size(); ++j) {
      std::string field = Indexed("addresses", j);
      WEFT_ASSIGN_OR_RETURN(IpAddr ip, ParseIp(pw.addresses(j), obj, field));
      if (std::find(w.addresses.begin(), w.addresses.end(), ip) != w.addresses.end()) {
        return Invalid(obj, field, absl::StrCat("address ", ip.ToString(), " is listed twice"));
      }
      if (auto it = s.by_ip_.find(ip); it != s.by_ip_.end()) {
        return Invalid(obj, field,
                       absl::StrCat("address ", ip.ToString(), " is already claimed by workload ",
                                    Quote(s.workloads_[it->second].uid)));
      }
      w.addresses.push_back(ip);
    }
    for (int j = 0; j < pw.capture_exclude_ports_size(); ++j) {
      WEFT_ASSIGN_OR_RETURN(uint16_t p, CheckPort(pw.capture_exclude_ports(j), obj,
                                                  Indexed("captureExcludePorts", j)));
      w.capture_exclude_ports.push_back(p);
    }
    WEFT_RETURN_IF_ERROR(ParseCidrs(pw.capture_exclude_cidrs(), obj, "captureExcludeCidrs",
                                    &w.capture_exclude_cidrs));
    size_t idx = s.workloads_.size();
    s.by_uid_.emplace(w.uid, idx);
    for (const auto& ip : w.addresses) s.by_ip_.emplace(ip, idx);
    s.workloads_.push_back(std::move(w));
  }

  // ---- services
  absl::flat_hash_set<std::string> service_keys;
  s.services_.reserve(in.services_size());
  for (int i = 0; i < in.services_size(); ++i) {
    const pb::Service& ps = in.services(i);
    const std::string obj = ObjectName("service", "services", i, ps.namespace_(), ps.name());
    if (ps.name().empty()) return Invalid(obj, "name", "is required");
    if (ps.namespace_().empty()) return Invalid(obj, "namespace", "is required");
    if (!service_keys.insert(absl::StrCat(ps.namespace_(), "/", ps.name())).second) {
      return Invalid(obj, "name", "duplicate service (same namespace and name)");
    }
    Service svc;
    svc.name = ps.name();
    svc.ns = ps.namespace_();
    svc.hostname = ps.hostname().empty()
                       ? absl::StrCat(ps.name(), ".", ps.namespace_(), ".svc.cluster.local")
                       : ps.hostname();
    size_t idx = s.services_.size();
    for (int j = 0; j < ps.addresses_size(); ++j) {
      std::string field = Indexed("addresses", j);
      WEFT_ASSIGN_OR_RETURN(IpAddr ip, ParseIp(ps.addresses(j), obj, field));
      if (std::find(svc.addresses.begin(), svc.addresses.end(), ip) != svc.addresses.end()) {
        return Invalid(obj, field, absl::StrCat("address ", ip.ToString(), " is listed twice"));
      }
      if (auto it = s.svc_by_ip_.find(ip); it != s.svc_by_ip_.end()) {
        const Service& other = s.services_[it->second];
        return Invalid(obj, field,
                       absl::StrCat("address ", ip.ToString(), " is already claimed by service ",
                                    Quote(absl::StrCat(other.ns, "/", other.name))));
      }
      svc.addresses.push_back(ip);
    }
    for (int j = 0; j < ps.ports_size(); ++j) {
      const pb::ServicePort& pp = ps.ports(j);
      std::string field = Indexed("ports", j);
      ServicePort port;
      WEFT_ASSIGN_OR_RETURN(port.port, CheckPort(pp.port(), obj, field + ".port"));
      if (svc.FindPort(port.port) != nullptr) {
        return Invalid(obj, field + ".port", absl::StrCat("port ", port.port, " is listed twice"));
      }
      if (pp.target_port() == 0) {
        port.target_port = port.port;
      } else {
        WEFT_ASSIGN_OR_RETURN(port.target_port,
                              CheckPort(pp.target_port(), obj, field + ".targetPort"));
      }
      port.name = pp.name();
      port.app_protocol = pp.app_protocol();
      svc.ports.push_back(std::move(port));
    }
    for (int j = 0; j < ps.endpoints_size(); ++j) {
      const pb::Endpoint& ep = ps.endpoints(j);
      std::string field = Indexed("endpoints", j) + ".workloadUid";
      if (ep.workload_uid().empty()) return Invalid(obj, field, "is required");
      if (!s.by_uid_.contains(ep.workload_uid())) {
        return Invalid(obj, field,
                       absl::StrCat("workload ", Quote(ep.workload_uid()),
                                    " is not in the snapshot (add it to workloads or remove the "
                                    "endpoint)"));
      }
      if (!ep.ready()) continue;
      auto& ready = svc.ready_endpoint_uids;
      if (std::find(ready.begin(), ready.end(), ep.workload_uid()) == ready.end()) {
        ready.push_back(ep.workload_uid());
      }
    }
    for (const auto& ip : svc.addresses) s.svc_by_ip_.emplace(ip, idx);
    for (const auto& uid : svc.ready_endpoint_uids) s.svc_by_endpoint_[uid].push_back(idx);
    s.services_.push_back(std::move(svc));
  }

  // ---- authorization policies
  absl::flat_hash_set<std::string> policy_keys;
  s.policies_.reserve(in.authorization_policies_size());
  for (int i = 0; i < in.authorization_policies_size(); ++i) {
    const pb::AuthorizationPolicy& pp = in.authorization_policies(i);
    const std::string obj =
        ObjectName("authorization_policy", "authorizationPolicies", i, pp.namespace_(), pp.name());
    if (pp.name().empty()) return Invalid(obj, "name", "is required");
    if (pp.namespace_().empty()) return Invalid(obj, "namespace", "is required");
    AuthorizationPolicy ap;
    ap.name = pp.name();
    ap.ns = pp.namespace_();
    if (!policy_keys.insert(ap.key()).second) {
      return Invalid(obj, "name", "duplicate authorization policy (same namespace and name)");
    }
    ap.selector = SelectorFrom(pp.has_selector(), pp.selector());
    switch (pp.action()) {
      case pb::AuthorizationPolicy::ALLOW:
        ap.action = AuthzAction::kAllow;
        break;
      case pb::AuthorizationPolicy::DENY:
        ap.action = AuthzAction::kDeny;
        break;
      case pb::AuthorizationPolicy::AUDIT:
        ap.action = AuthzAction::kAudit;
        break;
      case pb::AuthorizationPolicy::CUSTOM:
        return Invalid(obj, "action",
                       "CUSTOM action is not supported (use ALLOW, DENY or AUDIT; external "
                       "authorization is not available)");
      default:
        return Invalid(
            obj, "action",
            absl::StrCat("unknown action ", pp.action(), " (want ALLOW, DENY or AUDIT)"));
    }
    ap.dry_run = pp.dry_run();
    for (int r = 0; r < pp.rules_size(); ++r) {
      const pb::Rule& pr = pp.rules(r);
      const std::string rp = Indexed("rules", r);
      AuthzRule rule;
      for (int j = 0; j < pr.from_size(); ++j) {
        std::string path = absl::StrCat(rp, ".", Indexed("from", j), ".source");
        if (!pr.from(j).has_source()) {
          return Invalid(obj, path, "is required in every `from` entry");
        }
        WEFT_ASSIGN_OR_RETURN(AuthzSource src, ConvertSource(pr.from(j).source(), obj, path));
        rule.from.push_back(std::move(src));
      }
      for (int j = 0; j < pr.to_size(); ++j) {
        std::string path = absl::StrCat(rp, ".", Indexed("to", j), ".operation");
        if (!pr.to(j).has_operation()) {
          return Invalid(obj, path, "is required in every `to` entry");
        }
        WEFT_ASSIGN_OR_RETURN(AuthzOperation op, ConvertOperation(pr.to(j).operation(), obj, path));
        rule.to.push_back(std::move(op));
      }
      for (int j = 0; j < pr.when_size(); ++j) {
        std::string path = absl::StrCat(rp, ".", Indexed("when", j));
        WEFT_ASSIGN_OR_RETURN(AuthzCondition c, ConvertCondition(pr.when(j), obj, path));
        rule.when.push_back(std::move(c));
      }
      ap.rules.push_back(std::move(rule));
    }
    s.policies_by_ns_[ap.ns].push_back(s.policies_.size());
    s.policies_.push_back(std::move(ap));
  }

  // ---- peer authentications
  absl::flat_hash_set<std::string> pa_keys;
  s.peer_authns_.reserve(in.peer_authentications_size());
  for (int i = 0; i < in.peer_authentications_size(); ++i) {
    const pb::PeerAuthentication& pp = in.peer_authentications(i);
    const std::string obj =
        ObjectName("peer_authentication", "peerAuthentications", i, pp.namespace_(), pp.name());
    if (pp.name().empty()) return Invalid(obj, "name", "is required");
    if (pp.namespace_().empty()) return Invalid(obj, "namespace", "is required");
    if (!pa_keys.insert(absl::StrCat(pp.namespace_(), "/", pp.name())).second) {
      return Invalid(obj, "name", "duplicate peer authentication (same namespace and name)");
    }
    PeerAuthentication pa;
    pa.name = pp.name();
    pa.ns = pp.namespace_();
    pa.selector = SelectorFrom(pp.has_selector(), pp.selector());
    WEFT_ASSIGN_OR_RETURN(pa.mode, ConvertMode(pp.mtls().mode(), obj, "mtls.mode"));
    if (!pp.port_level_mtls().empty() && !pa.selector) {
      return Invalid(obj, "portLevelMtls",
                     "requires a selector with matchLabels (port-level mTLS applies to selected "
                     "workloads only, as in Istio)");
    }
    // Sorted so that errors name ports deterministically (protobuf maps are unordered).
    std::map<uint32_t, int> port_modes;
    for (const auto& [port, m] : pp.port_level_mtls()) port_modes.emplace(port, m.mode());
    for (const auto& [port, mode] : port_modes) {
      std::string field = absl::StrCat("portLevelMtls[", port, "]");
      WEFT_ASSIGN_OR_RETURN(uint16_t p, CheckPort(port, obj, field));
      WEFT_ASSIGN_OR_RETURN(MtlsMode m, ConvertMode(mode, obj, field + ".mode"));
      pa.port_modes.emplace(p, m);
    }
    s.peer_authns_by_ns_[pa.ns].push_back(s.peer_authns_.size());
    s.peer_authns_.push_back(std::move(pa));
  }

  // ---- network policies
  absl::flat_hash_set<std::string> np_keys;
  s.network_policies_.reserve(in.network_policies_size());
  for (int i = 0; i < in.network_policies_size(); ++i) {
    const pb::NetworkPolicy& pn = in.network_policies(i);
    const std::string obj =
        ObjectName("network_policy", "networkPolicies", i, pn.namespace_(), pn.name());
    if (pn.name().empty()) return Invalid(obj, "name", "is required");
    if (pn.namespace_().empty()) return Invalid(obj, "namespace", "is required");
    if (!np_keys.insert(absl::StrCat(pn.namespace_(), "/", pn.name())).second) {
      return Invalid(obj, "name", "duplicate network policy (same namespace and name)");
    }
    NetworkPolicy np;
    np.name = pn.name();
    np.ns = pn.namespace_();
    np.workload_uids.assign(pn.workload_uids().begin(), pn.workload_uids().end());
    for (int r = 0; r < pn.ingress_size(); ++r) {
      const pb::NetworkPolicyRule& pr = pn.ingress(r);
      const std::string rp = Indexed("ingress", r);
      NetworkRule rule;
      rule.all_sources = pr.all_sources();
      rule.all_ports = pr.all_ports();
      for (int j = 0; j < pr.from_size(); ++j) {
        const std::string path = absl::StrCat(rp, ".", Indexed("from", j));
        NetworkPeer peer;
        WEFT_ASSIGN_OR_RETURN(peer.cidr, ParseCidr(pr.from(j).cidr(), obj, path + ".cidr"));
        for (int e = 0; e < pr.from(j).except_size(); ++e) {
          const std::string ep = absl::StrCat(path, ".", Indexed("except", e));
          WEFT_ASSIGN_OR_RETURN(Cidr ex, ParseCidr(pr.from(j).except(e), obj, ep));
          if (!peer.cidr.Contains(ex.base()) || ex.prefix_len() < peer.cidr.prefix_len()) {
            return Invalid(obj, ep,
                           absl::StrCat(Quote(pr.from(j).except(e)), " is not inside cidr ",
                                        Quote(pr.from(j).cidr())));
          }
          peer.except.push_back(ex);
        }
        rule.from.push_back(std::move(peer));
      }
      for (int j = 0; j < pr.ports_size(); ++j) {
        const std::string path = absl::StrCat(rp, ".", Indexed("ports", j));
        const pb::NetworkPolicyPort& pp = pr.ports(j);
        NetworkPortRange range;
        const std::string& proto = pp.protocol();
        if (!proto.empty() && proto != "TCP" && proto != "UDP" && proto != "SCTP") {
          return Invalid(
              obj, path + ".protocol",
              absl::StrCat("unknown protocol ", Quote(proto), " (want TCP, UDP or SCTP)"));
        }
        range.tcp = proto.empty() || proto == "TCP";
        WEFT_ASSIGN_OR_RETURN(range.first, CheckPort(pp.port(), obj, path + ".port"));
        range.last = range.first;
        if (pp.end_port() != 0) {
          WEFT_ASSIGN_OR_RETURN(range.last, CheckPort(pp.end_port(), obj, path + ".endPort"));
          if (range.last < range.first) {
            return Invalid(obj, path + ".endPort",
                           absl::StrCat("is ", range.last, ", below port ", range.first));
          }
        }
        rule.ports.push_back(range);
      }
      np.ingress.push_back(std::move(rule));
    }
    for (const std::string& uid : np.workload_uids) {
      s.network_policies_by_uid_[uid].push_back(s.network_policies_.size());
    }
    s.network_policies_.push_back(std::move(np));
  }

  s.source_ = in;
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
