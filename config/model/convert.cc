#include "config/model/convert.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft::config {
namespace {

namespace pb = ::weft::config::v1;
using RepeatedStrings = google::protobuf::RepeatedPtrField<std::string>;

constexpr std::string_view kPathPayload = "type.weft.dev/weft.config.ConfigError.path";
constexpr std::string_view kReasonPayload = "type.weft.dev/weft.config.ConfigError.reason";

absl::Status Invalid(std::string_view field, std::string_view problem) {
  return ConfigErrorStatus(field, problem);
}

std::string Quote(std::string_view s) {
  return absl::StrCat("\"", Av(s), "\"");
}

std::string Indexed(std::string_view field, size_t i) {
  return absl::StrCat(Av(field), "[", i, "]");
}

absl::StatusOr<IpAddr> ParseIp(std::string_view s, std::string_view field) {
  auto ip = IpAddr::Parse(s);
  if (!ip.ok()) return Invalid(field, absl::StrCat(Quote(s), " is not an IP address"));
  return *ip;
}

absl::StatusOr<Cidr> ParseCidr(std::string_view s, std::string_view field) {
  auto c = Cidr::Parse(s);
  if (!c.ok()) {
    return Invalid(field,
                   absl::StrCat("bad CIDR ", Quote(s),
                                " (want an IP or a CIDR like 10.0.0.0/8): ", c.status().message()));
  }
  return *c;
}

absl::StatusOr<uint16_t> CheckPort(uint64_t port, std::string_view field) {
  if (port < 1 || port > 65535) {
    return Invalid(field, absl::StrCat("port ", port, " is out of range 1-65535"));
  }
  return static_cast<uint16_t>(port);
}

absl::StatusOr<uint16_t> ParsePort(std::string_view s, std::string_view field) {
  uint32_t v = 0;
  if (!absl::SimpleAtoi(Av(s), &v) || v < 1 || v > 65535) {
    return Invalid(field, absl::StrCat(Quote(s),
                                       " is not a port number (want 1-65535; ranges and "
                                       "names are not supported)"));
  }
  return static_cast<uint16_t>(v);
}

absl::Status ParseMatches(const RepeatedStrings& in, std::string_view field,
                          std::vector<StringMatch>* out) {
  for (int i = 0; i < in.size(); ++i) {
    const std::string& p = in[i];
    if (p.empty()) return Invalid(Indexed(field, i), "empty value is not allowed");
    size_t star = p.find('*');
    bool ok = star == std::string::npos || p == "*" ||
              (p.find('*', 1) == std::string::npos) ||  // only leading
              (star == p.size() - 1);                   // only trailing
    if (!ok) {
      return Invalid(Indexed(field, i),
                     absl::StrCat(Quote(p),
                                  ": '*' is allowed only alone, as a prefix (\"*x\") or "
                                  "as a suffix (\"x*\")"));
    }
    out->push_back(StringMatch::Parse(p));
  }
  return absl::OkStatus();
}

absl::Status ParseCidrs(const RepeatedStrings& in, std::string_view field, std::vector<Cidr>* out) {
  for (int i = 0; i < in.size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(Cidr c, ParseCidr(in[i], Indexed(field, i)));
    out->push_back(c);
  }
  return absl::OkStatus();
}

absl::Status ParsePorts(const RepeatedStrings& in, std::string_view field,
                        std::vector<uint16_t>* out) {
  for (int i = 0; i < in.size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(uint16_t p, ParsePort(in[i], Indexed(field, i)));
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

// ---- workloads and services

absl::StatusOr<WorkloadProtocol> ConvertProtocol(int protocol) {
  switch (protocol) {
    case pb::Workload::PROTOCOL_UNSPECIFIED:
    case pb::Workload::TCP:
      return WorkloadProtocol::kTcp;
    case pb::Workload::HBONE:
      return WorkloadProtocol::kHbone;
  }
  return Invalid("protocol", absl::StrCat("unknown protocol ", protocol, " (want TCP or HBONE)"));
}

absl::StatusOr<bool> ConvertPhase(const std::string& phase) {  // true: running
  if (phase.empty() || phase == "Running") return true;
  if (phase == "Pending" || phase == "Succeeded" || phase == "Failed" || phase == "Unknown") {
    return false;
  }
  return Invalid("phase", absl::StrCat("unknown phase ", Quote(phase),
                                       " (want Pending, Running, Succeeded, Failed or Unknown)"));
}

// Addresses of one object: parsed, none listed twice.
absl::Status ParseAddresses(const RepeatedStrings& in, std::vector<IpAddr>* out) {
  for (int j = 0; j < in.size(); ++j) {
    std::string field = Indexed("addresses", j);
    WEFT_ASSIGN_OR_RETURN(IpAddr ip, ParseIp(in[j], field));
    if (std::find(out->begin(), out->end(), ip) != out->end()) {
      return Invalid(field, absl::StrCat("address ", ip.ToString(), " is listed twice"));
    }
    out->push_back(ip);
  }
  return absl::OkStatus();
}

absl::Status ConvertServicePorts(const pb::Service& ps, Service* svc) {
  for (int j = 0; j < ps.ports_size(); ++j) {
    const pb::ServicePort& pp = ps.ports(j);
    std::string field = Indexed("ports", j);
    ServicePort port;
    WEFT_ASSIGN_OR_RETURN(port.port, CheckPort(pp.port(), field + ".port"));
    if (svc->FindPort(port.port) != nullptr) {
      return Invalid(field + ".port", absl::StrCat("port ", port.port, " is listed twice"));
    }
    if (pp.target_port() == 0) {
      port.target_port = port.port;
    } else {
      WEFT_ASSIGN_OR_RETURN(port.target_port, CheckPort(pp.target_port(), field + ".targetPort"));
    }
    port.name = pp.name();
    port.app_protocol = pp.app_protocol();
    svc->ports.push_back(std::move(port));
  }
  return absl::OkStatus();
}

// ---- authorization policies

}  // namespace

absl::StatusOr<AuthzSource> AuthzSourceFromProto(const pb::Source& s, std::string_view path) {
  AuthzSource out;
  auto f = [&](std::string_view name) { return absl::StrCat(Av(path), ".", Av(name)); };
  WEFT_RETURN_IF_ERROR(ParseMatches(s.principals(), f("principals"), &out.principals));
  WEFT_RETURN_IF_ERROR(ParseMatches(s.not_principals(), f("notPrincipals"), &out.not_principals));
  WEFT_RETURN_IF_ERROR(ParseMatches(s.namespaces(), f("namespaces"), &out.namespaces));
  WEFT_RETURN_IF_ERROR(ParseMatches(s.not_namespaces(), f("notNamespaces"), &out.not_namespaces));
  WEFT_RETURN_IF_ERROR(ParseCidrs(s.ip_blocks(), f("ipBlocks"), &out.ip_blocks));
  WEFT_RETURN_IF_ERROR(ParseCidrs(s.not_ip_blocks(), f("notIpBlocks"), &out.not_ip_blocks));
  WEFT_RETURN_IF_ERROR(
      ParseCidrs(s.remote_ip_blocks(), f("remoteIpBlocks"), &out.remote_ip_blocks));
  WEFT_RETURN_IF_ERROR(
      ParseCidrs(s.not_remote_ip_blocks(), f("notRemoteIpBlocks"), &out.not_remote_ip_blocks));
  // Request principals come from a JWT: validated here, evaluated only at L7.
  std::vector<StringMatch> ignored;
  WEFT_RETURN_IF_ERROR(ParseMatches(s.request_principals(), f("requestPrincipals"), &ignored));
  WEFT_RETURN_IF_ERROR(
      ParseMatches(s.not_request_principals(), f("notRequestPrincipals"), &ignored));
  out.has_l7 = !s.request_principals().empty() || !s.not_request_principals().empty();
  bool any = out.has_l7 || !out.principals.empty() || !out.not_principals.empty() ||
             !out.namespaces.empty() || !out.not_namespaces.empty() || !out.ip_blocks.empty() ||
             !out.not_ip_blocks.empty() || !out.remote_ip_blocks.empty() ||
             !out.not_remote_ip_blocks.empty();
  if (!any) {
    return Invalid(path, "must set at least one field (drop the `from` entry to match any source)");
  }
  return out;
}

absl::StatusOr<AuthzOperation> AuthzOperationFromProto(const pb::Operation& o,
                                                       std::string_view path) {
  AuthzOperation out;
  auto f = [&](std::string_view name) { return absl::StrCat(Av(path), ".", Av(name)); };
  WEFT_RETURN_IF_ERROR(ParsePorts(o.ports(), f("ports"), &out.ports));
  WEFT_RETURN_IF_ERROR(ParsePorts(o.not_ports(), f("notPorts"), &out.not_ports));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.hosts(), f("hosts"), &out.hosts));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.not_hosts(), f("notHosts"), &out.not_hosts));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.methods(), f("methods"), &out.methods));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.not_methods(), f("notMethods"), &out.not_methods));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.paths(), f("paths"), &out.paths));
  WEFT_RETURN_IF_ERROR(ParseMatches(o.not_paths(), f("notPaths"), &out.not_paths));
  if (out.ports.empty() && out.not_ports.empty() && !out.has_l7()) {
    return Invalid(path,
                   "must set at least one field (drop the `to` entry to match any operation)");
  }
  return out;
}

namespace {

// request.headers[NAME] (Istio: the name between the brackets, non-empty): evaluable per request.
// Values are read as Istio's HeaderMatcher reads them (pilot/pkg/security/authz/matcher:
// "*" presence, leading '*' suffix, trailing '*' prefix, else exact), without the stricter
// wildcard check of the other fields, so a policy accepted before stays accepted.
void ParseRequestHeaderCondition(const pb::Condition& c, AuthzCondition* out) {
  constexpr std::string_view kPrefix = "request.headers[";
  std::string_view k = c.key();
  if (!k.starts_with(kPrefix) || !k.ends_with("]") || k.size() <= kPrefix.size() + 1) return;
  std::string_view name = k.substr(kPrefix.size(), k.size() - kPrefix.size() - 1);
  if (name.find_first_of("[] ") != std::string_view::npos) return;
  out->header_name = absl::AsciiStrToLower(Av(name));
  for (const std::string& v : c.values()) out->match_values.push_back(StringMatch::Parse(v));
  for (const std::string& v : c.not_values()) {
    out->not_match_values.push_back(StringMatch::Parse(v));
  }
}

}  // namespace

absl::StatusOr<AuthzCondition> AuthzConditionFromProto(const pb::Condition& c,
                                                       std::string_view path_view) {
  const std::string path(path_view);
  AuthzCondition out;
  out.key = c.key();
  out.values.assign(c.values().begin(), c.values().end());
  out.not_values.assign(c.not_values().begin(), c.not_values().end());
  if (c.key().empty()) return Invalid(path + ".key", "is required");
  if (c.values().empty() && c.not_values().empty()) {
    return Invalid(path, absl::StrCat("condition ", Quote(c.key()),
                                      " must set at least one of values or notValues"));
  }
  const std::string& k = c.key();
  std::string v = path + ".values", nv = path + ".notValues";
  if (k == "source.ip" || k == "remote.ip" || k == "destination.ip") {
    out.kind = k == "destination.ip" ? AuthzCondition::Kind::kDestinationIp
                                     : AuthzCondition::Kind::kSourceIp;
    WEFT_RETURN_IF_ERROR(ParseCidrs(c.values(), v, &out.ip_values));
    WEFT_RETURN_IF_ERROR(ParseCidrs(c.not_values(), nv, &out.not_ip_values));
  } else if (k == "destination.port") {
    out.kind = AuthzCondition::Kind::kDestinationPort;
    WEFT_RETURN_IF_ERROR(ParsePorts(c.values(), v, &out.port_values));
    WEFT_RETURN_IF_ERROR(ParsePorts(c.not_values(), nv, &out.not_port_values));
  } else if (k == "source.namespace" || k == "source.principal") {
    out.kind = k == "source.namespace" ? AuthzCondition::Kind::kSourceNamespace
                                       : AuthzCondition::Kind::kSourcePrincipal;
    WEFT_RETURN_IF_ERROR(ParseMatches(c.values(), v, &out.match_values));
    WEFT_RETURN_IF_ERROR(ParseMatches(c.not_values(), nv, &out.not_match_values));
  } else if (k.starts_with("request.") && k.size() > 8) {
    out.kind = AuthzCondition::Kind::kL7;
    ParseRequestHeaderCondition(c, &out);
  } else {
    return Invalid(path + ".key", absl::StrCat("unsupported condition key ", Quote(k),
                                               "; supported: source.ip, remote.ip, "
                                               "source.namespace, source.principal, "
                                               "destination.ip, destination.port, and "
                                               "request.* (L7)"));
  }
  return out;
}

namespace {

absl::StatusOr<AuthzAction> ConvertAction(int action) {
  switch (action) {
    case pb::AuthorizationPolicy::ALLOW:
      return AuthzAction::kAllow;
    case pb::AuthorizationPolicy::DENY:
      return AuthzAction::kDeny;
    case pb::AuthorizationPolicy::AUDIT:
      return AuthzAction::kAudit;
    case pb::AuthorizationPolicy::CUSTOM:
      return Invalid("action",
                     "CUSTOM action is not supported (use ALLOW, DENY or AUDIT; external "
                     "authorization is not available)");
  }
  return Invalid("action", absl::StrCat("unknown action ", action, " (want ALLOW, DENY or AUDIT)"));
}

absl::StatusOr<AuthzRule> ConvertRule(const pb::Rule& pr, const std::string& rp) {
  AuthzRule rule;
  for (int j = 0; j < pr.from_size(); ++j) {
    std::string path = absl::StrCat(rp, ".", Indexed("from", j), ".source");
    if (!pr.from(j).has_source()) return Invalid(path, "is required in every `from` entry");
    WEFT_ASSIGN_OR_RETURN(AuthzSource src, AuthzSourceFromProto(pr.from(j).source(), path));
    rule.from.push_back(std::move(src));
  }
  for (int j = 0; j < pr.to_size(); ++j) {
    std::string path = absl::StrCat(rp, ".", Indexed("to", j), ".operation");
    if (!pr.to(j).has_operation()) return Invalid(path, "is required in every `to` entry");
    WEFT_ASSIGN_OR_RETURN(AuthzOperation op, AuthzOperationFromProto(pr.to(j).operation(), path));
    rule.to.push_back(std::move(op));
  }
  for (int j = 0; j < pr.when_size(); ++j) {
    std::string path = absl::StrCat(rp, ".", Indexed("when", j));
    WEFT_ASSIGN_OR_RETURN(AuthzCondition c, AuthzConditionFromProto(pr.when(j), path));
    rule.when.push_back(std::move(c));
  }
  return rule;
}

// ---- peer authentications and network policies

absl::StatusOr<MtlsMode> ConvertMode(int mode, std::string_view field) {
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
  return Invalid(field,
                 absl::StrCat("unknown mode ", mode, " (want UNSET, DISABLE, PERMISSIVE, STRICT)"));
}

absl::StatusOr<NetworkPeer> ConvertNetworkPeer(const pb::NetworkPolicyPeer& in,
                                               const std::string& path) {
  NetworkPeer peer;
  WEFT_ASSIGN_OR_RETURN(peer.cidr, ParseCidr(in.cidr(), path + ".cidr"));
  for (int e = 0; e < in.except_size(); ++e) {
    const std::string ep = absl::StrCat(path, ".", Indexed("except", e));
    WEFT_ASSIGN_OR_RETURN(Cidr ex, ParseCidr(in.except(e), ep));
    if (!peer.cidr.Contains(ex.base()) || ex.prefix_len() < peer.cidr.prefix_len()) {
      return Invalid(ep,
                     absl::StrCat(Quote(in.except(e)), " is not inside cidr ", Quote(in.cidr())));
    }
    peer.except.push_back(ex);
  }
  return peer;
}

absl::StatusOr<NetworkPortRange> ConvertNetworkPort(const pb::NetworkPolicyPort& pp,
                                                    const std::string& path) {
  NetworkPortRange range;
  const std::string& proto = pp.protocol();
  if (!proto.empty() && proto != "TCP" && proto != "UDP" && proto != "SCTP") {
    return Invalid(path + ".protocol",
                   absl::StrCat("unknown protocol ", Quote(proto), " (want TCP, UDP or SCTP)"));
  }
  range.tcp = proto.empty() || proto == "TCP";
  WEFT_ASSIGN_OR_RETURN(range.first, CheckPort(pp.port(), path + ".port"));
  range.last = range.first;
  if (pp.end_port() != 0) {
    WEFT_ASSIGN_OR_RETURN(range.last, CheckPort(pp.end_port(), path + ".endPort"));
    if (range.last < range.first) {
      return Invalid(path + ".endPort",
                     absl::StrCat("is ", range.last, ", below port ", range.first));
    }
  }
  return range;
}

absl::StatusOr<NetworkRule> ConvertNetworkRule(const pb::NetworkPolicyRule& pr,
                                               const std::string& rp) {
  NetworkRule rule;
  rule.all_sources = pr.all_sources();
  rule.all_ports = pr.all_ports();
  for (int j = 0; j < pr.from_size(); ++j) {
    WEFT_ASSIGN_OR_RETURN(
        NetworkPeer peer,
        ConvertNetworkPeer(pr.from(j), absl::StrCat(rp, ".", Indexed("from", j))));
    rule.from.push_back(std::move(peer));
  }
  for (int j = 0; j < pr.ports_size(); ++j) {
    WEFT_ASSIGN_OR_RETURN(
        NetworkPortRange range,
        ConvertNetworkPort(pr.ports(j), absl::StrCat(rp, ".", Indexed("ports", j))));
    rule.ports.push_back(range);
  }
  return rule;
}

}  // namespace

std::string ConfigError::ToString() const {
  return absl::StrCat(path, ": ", reason);
}

absl::Status ConfigErrorStatus(std::string_view path, std::string_view reason) {
  absl::Status st = absl::InvalidArgumentError(absl::StrCat(Av(path), ": ", Av(reason)));
  st.SetPayload(Av(kPathPayload), absl::Cord(Av(path)));
  st.SetPayload(Av(kReasonPayload), absl::Cord(Av(reason)));
  return st;
}

std::optional<ConfigError> GetConfigError(const absl::Status& status) {
  auto path = status.GetPayload(Av(kPathPayload));
  auto reason = status.GetPayload(Av(kReasonPayload));
  if (status.ok() || !path || !reason) return std::nullopt;
  return ConfigError{std::string(*path), std::string(*reason)};
}

absl::Status CheckTrustDomain(std::string_view td) {
  if (td.empty() || td.find_first_of("/?#: \t\r\n") != std::string_view::npos) {
    return Invalid(
        "trustDomain",
        absl::StrCat(Quote(td), " is not a valid trust domain (want e.g. cluster.local)"));
  }
  return absl::OkStatus();
}

absl::Status CheckWorkloadKey(const pb::Workload& pb) {
  if (pb.uid().empty()) {
    return Invalid("uid", "is required (a unique key such as <namespace>/<pod name>)");
  }
  return absl::OkStatus();
}

absl::Status CheckNamedKey(std::string_view name, std::string_view ns) {
  if (name.empty()) return Invalid("name", "is required");
  if (ns.empty()) return Invalid("namespace", "is required");
  return absl::OkStatus();
}

absl::StatusOr<Workload> WorkloadFromProto(const pb::Workload& pw,
                                           std::string_view default_trust_domain) {
  WEFT_RETURN_IF_ERROR(CheckWorkloadKey(pw));
  if (pw.namespace_().empty()) return Invalid("namespace", "is required");
  Workload w;
  w.uid = pw.uid();
  w.name = pw.name();
  w.ns = pw.namespace_();
  w.service_account = pw.service_account().empty() ? "default" : pw.service_account();
  w.node = pw.node();
  w.workload_name = !pw.workload_name().empty() ? pw.workload_name()
                    : !pw.name().empty()        ? pw.name()
                                                : pw.uid();
  w.trust_domain =
      pw.trust_domain().empty() ? std::string(default_trust_domain) : pw.trust_domain();
  WEFT_RETURN_IF_ERROR(CheckTrustDomain(w.trust_domain));
  w.netns_path = pw.netns_path();
  w.labels = ToLabels(pw.labels());
  WEFT_ASSIGN_OR_RETURN(w.protocol, ConvertProtocol(pw.protocol()));
  WEFT_ASSIGN_OR_RETURN(w.running, ConvertPhase(pw.phase()));
  WEFT_RETURN_IF_ERROR(ParseAddresses(pw.addresses(), &w.addresses));
  for (int j = 0; j < pw.capture_exclude_ports_size(); ++j) {
    WEFT_ASSIGN_OR_RETURN(
        uint16_t p, CheckPort(pw.capture_exclude_ports(j), Indexed("captureExcludePorts", j)));
    w.capture_exclude_ports.push_back(p);
  }
  WEFT_RETURN_IF_ERROR(
      ParseCidrs(pw.capture_exclude_cidrs(), "captureExcludeCidrs", &w.capture_exclude_cidrs));
  return w;
}

absl::StatusOr<Service> ServiceFromProto(const pb::Service& ps) {
  WEFT_RETURN_IF_ERROR(CheckNamedKey(ps.name(), ps.namespace_()));
  Service svc;
  svc.name = ps.name();
  svc.ns = ps.namespace_();
  svc.hostname = ps.hostname().empty()
                     ? absl::StrCat(ps.name(), ".", ps.namespace_(), ".svc.cluster.local")
                     : ps.hostname();
  WEFT_RETURN_IF_ERROR(ParseAddresses(ps.addresses(), &svc.addresses));
  WEFT_RETURN_IF_ERROR(ConvertServicePorts(ps, &svc));
  for (int j = 0; j < ps.endpoints_size(); ++j) {
    const pb::Endpoint& ep = ps.endpoints(j);
    if (ep.workload_uid().empty()) {
      return Invalid(Indexed("endpoints", j) + ".workloadUid", "is required");
    }
    if (!ep.ready()) continue;
    auto& ready = svc.ready_endpoint_uids;
    if (std::find(ready.begin(), ready.end(), ep.workload_uid()) == ready.end()) {
      ready.push_back(ep.workload_uid());
    }
  }
  return svc;
}

absl::StatusOr<AuthorizationPolicy> AuthorizationPolicyFromProto(
    const pb::AuthorizationPolicy& pp) {
  WEFT_RETURN_IF_ERROR(CheckNamedKey(pp.name(), pp.namespace_()));
  AuthorizationPolicy ap;
  ap.name = pp.name();
  ap.ns = pp.namespace_();
  ap.selector = SelectorFrom(pp.has_selector(), pp.selector());
  WEFT_ASSIGN_OR_RETURN(ap.action, ConvertAction(pp.action()));
  ap.dry_run = pp.dry_run();
  for (int r = 0; r < pp.rules_size(); ++r) {
    WEFT_ASSIGN_OR_RETURN(AuthzRule rule, ConvertRule(pp.rules(r), Indexed("rules", r)));
    ap.rules.push_back(std::move(rule));
  }
  return ap;
}

absl::StatusOr<PeerAuthentication> PeerAuthenticationFromProto(const pb::PeerAuthentication& pp) {
  WEFT_RETURN_IF_ERROR(CheckNamedKey(pp.name(), pp.namespace_()));
  PeerAuthentication pa;
  pa.name = pp.name();
  pa.ns = pp.namespace_();
  pa.selector = SelectorFrom(pp.has_selector(), pp.selector());
  WEFT_ASSIGN_OR_RETURN(pa.mode, ConvertMode(pp.mtls().mode(), "mtls.mode"));
  if (!pp.port_level_mtls().empty() && !pa.selector) {
    return Invalid("portLevelMtls",
                   "requires a selector with matchLabels (port-level mTLS applies to selected "
                   "workloads only, as in Istio)");
  }
  // Sorted so that errors name ports deterministically (protobuf maps are unordered).
  std::map<uint32_t, int> port_modes;
  for (const auto& [port, m] : pp.port_level_mtls()) port_modes.emplace(port, m.mode());
  for (const auto& [port, mode] : port_modes) {
    std::string field = absl::StrCat("portLevelMtls[", port, "]");
    WEFT_ASSIGN_OR_RETURN(uint16_t p, CheckPort(port, field));
    WEFT_ASSIGN_OR_RETURN(MtlsMode m, ConvertMode(mode, field + ".mode"));
    pa.port_modes.emplace(p, m);
  }
  return pa;
}

absl::StatusOr<NetworkPolicy> NetworkPolicyFromProto(const pb::NetworkPolicy& pn) {
  WEFT_RETURN_IF_ERROR(CheckNamedKey(pn.name(), pn.namespace_()));
  NetworkPolicy np;
  np.name = pn.name();
  np.ns = pn.namespace_();
  np.workload_uids.assign(pn.workload_uids().begin(), pn.workload_uids().end());
  for (int r = 0; r < pn.ingress_size(); ++r) {
    WEFT_ASSIGN_OR_RETURN(NetworkRule rule,
                          ConvertNetworkRule(pn.ingress(r), Indexed("ingress", r)));
    np.ingress.push_back(std::move(rule));
  }
  return np;
}

}  // namespace weft::config
