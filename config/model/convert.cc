#include "config/model/convert.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "re2/re2.h"

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

// ---- traffic management (issue 15)

namespace {

bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return s.front() != '-' && s.back() != '-';
}

// RFC 7230 tchar.
bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

absl::Status CheckHeaderValue(std::string_view v, std::string_view path) {
  if (v.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    return Invalid(path, "must not contain CR, LF or NUL");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HeaderName(std::string_view name, std::string_view path) {
  if (!IsToken(name)) {
    return Invalid(path, absl::StrCat(Quote(name), " is not a valid HTTP header name"));
  }
  return absl::AsciiStrToLower(Av(name));
}

absl::Status CheckPercent(double v, std::string_view path) {
  if (!(v >= 0 && v <= 100)) return Invalid(path, absl::StrCat(v, " is not a percentage 0..100"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const re2::RE2>> CompileRegex(std::string_view pattern,
                                                             std::string_view path) {
  if (pattern.empty()) return Invalid(path, "an empty regular expression is not allowed");
  RE2::Options opts;
  opts.set_log_errors(false);
  auto re =
      std::make_shared<const re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), opts);
  if (!re->ok()) {
    return Invalid(path, absl::StrCat("bad regular expression ", Quote(pattern),
                                      " (RE2 syntax): ", re->error()));
  }
  return re;
}

// Gateway API's path validation for Exact and PathPrefix values.
absl::Status CheckMatchPath(std::string_view v, std::string_view path) {
  if (!v.starts_with('/')) return Invalid(path, absl::StrCat(Quote(v), " must start with '/'"));
  for (std::string_view bad : {"//", "/./", "/../", "%2f", "%2F", "#"}) {
    if (v.find(bad) != std::string_view::npos) {
      return Invalid(path, absl::StrCat(Quote(v), " must not contain ", Quote(bad)));
    }
  }
  if (v.ends_with("/..") || v.ends_with("/.")) {
    return Invalid(path, absl::StrCat(Quote(v), " must not end with \"/.\" or \"/..\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpValueMatch> ConvertValueMatch(const pb::HttpHeaderMatch& in, bool header,
                                                 const std::string& path) {
  HttpValueMatch m;
  if (header) {
    WEFT_ASSIGN_OR_RETURN(m.name, HeaderName(in.name(), path + ".name"));
  } else {
    if (in.name().empty()) return Invalid(path + ".name", "is required");
    m.name = in.name();
  }
  m.value = in.value();
  switch (in.type()) {
    case pb::HttpHeaderMatch::EXACT:
      m.kind = HttpValueMatch::Kind::kExact;
      break;
    case pb::HttpHeaderMatch::REGULAR_EXPRESSION: {
      m.kind = HttpValueMatch::Kind::kRegex;
      WEFT_ASSIGN_OR_RETURN(m.regex, CompileRegex(in.value(), path + ".value"));
      break;
    }
    default:
      return Invalid(path + ".type", absl::StrCat("unknown type ", in.type(),
                                                  " (want Exact or RegularExpression)"));
  }
  return m;
}

// Only the first entry of each name counts (the spec); `header` names compare case-insensitively
// (already lower-cased).
absl::Status ConvertValueMatches(const google::protobuf::RepeatedPtrField<pb::HttpHeaderMatch>& in,
                                 bool header, const std::string& path,
                                 std::vector<HttpValueMatch>* out) {
  for (int i = 0; i < in.size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(HttpValueMatch m, ConvertValueMatch(in[i], header, Indexed(path, i)));
    bool seen = std::any_of(out->begin(), out->end(),
                            [&](const HttpValueMatch& o) { return o.name == m.name; });
    if (!seen) out->push_back(std::move(m));
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpPathMatch> ConvertPathMatch(const pb::HttpRouteMatch& in,
                                               const std::string& path) {
  HttpPathMatch m;
  const std::string value_path = path + ".path.value";
  switch (in.path_type()) {
    case pb::HttpRouteMatch::PATH_UNSET:
      if (!in.path().empty() && in.path() != "/") {
        return Invalid(value_path, absl::StrCat(Quote(in.path()),
                                                " is set but path.type is not (want Exact, "
                                                "PathPrefix or RegularExpression)"));
      }
      m.kind = HttpPathMatch::Kind::kPrefix;
      m.value = "/";
      return m;
    case pb::HttpRouteMatch::EXACT:
    case pb::HttpRouteMatch::PATH_PREFIX:
      WEFT_RETURN_IF_ERROR(CheckMatchPath(in.path(), value_path));
      m.kind = in.path_type() == pb::HttpRouteMatch::EXACT ? HttpPathMatch::Kind::kExact
                                                           : HttpPathMatch::Kind::kPrefix;
      m.value = in.path();
      return m;
    case pb::HttpRouteMatch::REGULAR_EXPRESSION: {
      m.kind = HttpPathMatch::Kind::kRegex;
      m.value = in.path();
      WEFT_ASSIGN_OR_RETURN(m.regex, CompileRegex(in.path(), value_path));
      return m;
    }
    default:
      break;
  }
  return Invalid(path + ".path.type",
                 absl::StrCat("unknown type ", in.path_type(),
                              " (want Exact, PathPrefix or RegularExpression)"));
}

absl::StatusOr<HttpRouteMatch> ConvertRouteMatch(const pb::HttpRouteMatch& in,
                                                 const std::string& path) {
  static constexpr std::string_view kMethods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                                  "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  HttpRouteMatch m;
  WEFT_ASSIGN_OR_RETURN(m.path, ConvertPathMatch(in, path));
  WEFT_RETURN_IF_ERROR(ConvertValueMatches(in.headers(), true, path + ".headers", &m.headers));
  WEFT_RETURN_IF_ERROR(
      ConvertValueMatches(in.query_params(), false, path + ".queryParams", &m.query_params));
  if (!in.method().empty() &&
      std::find(std::begin(kMethods), std::end(kMethods), in.method()) == std::end(kMethods)) {
    return Invalid(path + ".method",
                   absl::StrCat("unknown method ", Quote(in.method()),
                                " (want GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or "
                                "PATCH)"));
  }
  m.method = in.method();
  return m;
}

absl::Status ConvertHeaderList(const google::protobuf::RepeatedPtrField<pb::HttpHeader>& in,
                               const std::string& path, std::vector<HttpHeader>* out) {
  for (int i = 0; i < in.size(); ++i) {
    const std::string p = Indexed(path, i);
    HttpHeader h;
    WEFT_ASSIGN_OR_RETURN(h.name, HeaderName(in[i].name(), p + ".name"));
    WEFT_RETURN_IF_ERROR(CheckHeaderValue(in[i].value(), p + ".value"));
    h.value = in[i].value();
    for (const HttpHeader& o : *out) {
      if (o.name == h.name) {
        return Invalid(p + ".name", absl::StrCat("header ", Quote(h.name), " is listed twice"));
      }
    }
    out->push_back(std::move(h));
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpHeaderModifier> ConvertHeaderModifier(const pb::HttpHeaderModifier& in,
                                                         const std::string& path) {
  HttpHeaderModifier m;
  WEFT_RETURN_IF_ERROR(ConvertHeaderList(in.set(), path + ".set", &m.set));
  WEFT_RETURN_IF_ERROR(ConvertHeaderList(in.add(), path + ".add", &m.add));
  for (int i = 0; i < in.remove_size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(std::string name, HeaderName(in.remove(i), Indexed(path + ".remove", i)));
    if (std::find(m.remove.begin(), m.remove.end(), name) == m.remove.end()) {
      m.remove.push_back(std::move(name));
    }
  }
  return m;
}

absl::StatusOr<HttpPathModifier> ConvertPathModifier(const pb::HttpPathModifier& in,
                                                     const std::string& path) {
  HttpPathModifier m;
  m.value = in.value();
  switch (in.type()) {
    case pb::HttpPathModifier::TYPE_UNSET:
      if (!in.value().empty()) {
        return Invalid(path + ".type",
                       "is required when a value is set (want ReplaceFullPath "
                       "or ReplacePrefixMatch)");
      }
      return m;
    case pb::HttpPathModifier::REPLACE_FULL_PATH:
      m.kind = HttpPathModifier::Kind::kReplaceFullPath;
      if (in.value().empty()) return Invalid(path + ".replaceFullPath", "is required");
      break;
    case pb::HttpPathModifier::REPLACE_PREFIX_MATCH:
      m.kind = HttpPathModifier::Kind::kReplacePrefixMatch;
      if (in.value().empty()) return m;  // replaces the prefix with "/"
      break;
    default:
      return Invalid(path + ".type", absl::StrCat("unknown type ", in.type(),
                                                  " (want ReplaceFullPath or ReplacePrefixMatch)"));
  }
  const std::string vp =
      path + (m.kind == HttpPathModifier::Kind::kReplaceFullPath ? ".replaceFullPath"
                                                                 : ".replacePrefixMatch");
  if (!in.value().starts_with('/')) {
    return Invalid(vp, absl::StrCat(Quote(in.value()), " must start with '/'"));
  }
  WEFT_RETURN_IF_ERROR(CheckHeaderValue(in.value(), vp));
  if (in.value().find_first_of("?# ") != std::string::npos) {
    return Invalid(vp, absl::StrCat(Quote(in.value()), " must not contain '?', '#' or spaces"));
  }
  return m;
}

absl::StatusOr<HttpRequestRedirect> ConvertRedirect(const pb::HttpRequestRedirect& in,
                                                    const std::string& path) {
  HttpRequestRedirect r;
  if (!in.scheme().empty() && in.scheme() != "http" && in.scheme() != "https") {
    return Invalid(path + ".scheme", absl::StrCat("unsupported scheme ", Quote(in.scheme()),
                                                  " (want http or https)"));
  }
  r.scheme = in.scheme();
  if (!in.hostname().empty()) {
    WEFT_RETURN_IF_ERROR(CheckHostname(in.hostname(), path + ".hostname", false));
  }
  r.hostname = in.hostname();
  WEFT_ASSIGN_OR_RETURN(r.path, ConvertPathModifier(in.path(), path + ".path"));
  if (in.port() != 0) {
    WEFT_ASSIGN_OR_RETURN(r.port, CheckPort(in.port(), path + ".port"));
  }
  switch (in.status_code()) {
    case 0:
      r.status_code = 302;
      break;
    case 301:
    case 302:
    case 303:
    case 307:
    case 308:
      r.status_code = static_cast<uint16_t>(in.status_code());
      break;
    default:
      return Invalid(path + ".statusCode", absl::StrCat(in.status_code(),
                                                        " is not a redirect status (want 301, "
                                                        "302, 303, 307 or 308)"));
  }
  return r;
}

absl::StatusOr<HttpRequestMirror> ConvertMirror(const pb::HttpRequestMirror& in,
                                                const std::string& path) {
  HttpRequestMirror m;
  WEFT_RETURN_IF_ERROR(CheckServiceRef(in.service(), path + ".service"));
  m.service = in.service();
  if (in.port() != 0) {
    WEFT_ASSIGN_OR_RETURN(m.port, CheckPort(in.port(), path + ".port"));
  }
  if (in.percent() > 100) {
    return Invalid(path + ".percent", absl::StrCat(in.percent(), " is not a percentage 0..100"));
  }
  m.percent = in.percent();
  return m;
}

// Sets `slot` once; a second filter of the same kind is an error.
template <typename T>
absl::Status SetOnce(std::optional<T>* slot, absl::StatusOr<T> v, const std::string& path,
                     std::string_view kind) {
  if (!v.ok()) return v.status();
  if (slot->has_value()) {
    return Invalid(path,
                   absl::StrCat("a second ", Av(kind), " filter (the spec allows one per rule)"));
  }
  *slot = *std::move(v);
  return absl::OkStatus();
}

absl::Status ConvertRuleFilter(const pb::HttpRouteFilter& f, const std::string& path,
                               HttpRouteRule* rule) {
  switch (f.kind_case()) {
    case pb::HttpRouteFilter::kRequestHeaderModifier:
      return SetOnce(
          &rule->request_headers,
          ConvertHeaderModifier(f.request_header_modifier(), path + ".requestHeaderModifier"), path,
          "RequestHeaderModifier");
    case pb::HttpRouteFilter::kResponseHeaderModifier:
      return SetOnce(
          &rule->response_headers,
          ConvertHeaderModifier(f.response_header_modifier(), path + ".responseHeaderModifier"),
          path, "ResponseHeaderModifier");
    case pb::HttpRouteFilter::kRequestRedirect:
      return SetOnce(&rule->redirect,
                     ConvertRedirect(f.request_redirect(), path + ".requestRedirect"), path,
                     "RequestRedirect");
    case pb::HttpRouteFilter::kUrlRewrite: {
      HttpUrlRewrite rw;
      if (!f.url_rewrite().hostname().empty()) {
        WEFT_RETURN_IF_ERROR(
            CheckHostname(f.url_rewrite().hostname(), path + ".urlRewrite.hostname", false));
      }
      rw.hostname = f.url_rewrite().hostname();
      WEFT_ASSIGN_OR_RETURN(rw.path,
                            ConvertPathModifier(f.url_rewrite().path(), path + ".urlRewrite.path"));
      return SetOnce(&rule->rewrite, absl::StatusOr<HttpUrlRewrite>(std::move(rw)), path,
                     "URLRewrite");
    }
    case pb::HttpRouteFilter::kRequestMirror: {
      WEFT_ASSIGN_OR_RETURN(HttpRequestMirror m,
                            ConvertMirror(f.request_mirror(), path + ".requestMirror"));
      rule->mirrors.push_back(std::move(m));
      return absl::OkStatus();
    }
    case pb::HttpRouteFilter::KIND_NOT_SET:
      break;
  }
  return Invalid(path,
                 "sets no filter (want requestHeaderModifier, responseHeaderModifier, "
                 "requestRedirect, urlRewrite or requestMirror)");
}

// ReplacePrefixMatch needs the prefix it replaces: the rule's single PathPrefix match.
absl::Status CheckPrefixRewrites(const HttpRouteRule& rule, const std::string& path) {
  auto uses_prefix = [](const HttpPathModifier& m) {
    return m.kind == HttpPathModifier::Kind::kReplacePrefixMatch;
  };
  bool needs = (rule.redirect && uses_prefix(rule.redirect->path)) ||
               (rule.rewrite && uses_prefix(rule.rewrite->path));
  if (!needs) return absl::OkStatus();
  if (rule.matches.size() != 1 || rule.matches[0].path.kind != HttpPathMatch::Kind::kPrefix) {
    return Invalid(path + ".filters",
                   "ReplacePrefixMatch needs exactly one match, of type PathPrefix (the spec)");
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpBackendRef> ConvertBackend(const pb::HttpBackendRef& in,
                                              const std::string& path) {
  HttpBackendRef b;
  b.invalid = in.invalid();
  if (!b.invalid) WEFT_RETURN_IF_ERROR(CheckServiceRef(in.service(), path + ".service"));
  b.service = in.service();
  if (in.port() != 0) {
    WEFT_ASSIGN_OR_RETURN(b.port, CheckPort(in.port(), path + ".port"));
  }
  if (in.weight() > 1000000) {
    return Invalid(path + ".weight", absl::StrCat(in.weight(), " is above 1000000"));
  }
  b.weight = in.weight();
  for (int i = 0; i < in.filters_size(); ++i) {
    const pb::HttpRouteFilter& f = in.filters(i);
    const std::string fp = Indexed(path + ".filters", i);
    if (f.has_request_header_modifier()) {
      WEFT_RETURN_IF_ERROR(
          SetOnce(&b.request_headers,
                  ConvertHeaderModifier(f.request_header_modifier(), fp + ".requestHeaderModifier"),
                  fp, "RequestHeaderModifier"));
    } else if (f.has_response_header_modifier()) {
      WEFT_RETURN_IF_ERROR(SetOnce(
          &b.response_headers,
          ConvertHeaderModifier(f.response_header_modifier(), fp + ".responseHeaderModifier"), fp,
          "ResponseHeaderModifier"));
    } else {
      return Invalid(fp,
                     "backend filters support requestHeaderModifier and "
                     "responseHeaderModifier only");
    }
  }
  return b;
}

absl::StatusOr<HttpRouteRetry> ConvertRouteRetry(const pb::HttpRouteRetry& in,
                                                 const std::string& path) {
  HttpRouteRetry r;
  for (int i = 0; i < in.codes_size(); ++i) {
    if (in.codes(i) < 400 || in.codes(i) > 599) {
      return Invalid(Indexed(path + ".codes", i),
                     absl::StrCat(in.codes(i), " is not a retriable status (want 400..599)"));
    }
    r.codes.push_back(static_cast<uint16_t>(in.codes(i)));
  }
  if (r.codes.empty()) r.codes = {500, 502, 503, 504};
  r.attempts = in.attempts();
  r.backoff_ms = in.backoff_ms();
  return r;
}

absl::StatusOr<HttpRouteRule> ConvertRouteRule(const pb::HttpRouteRule& in,
                                               const std::string& path) {
  HttpRouteRule rule;
  rule.name = in.name();
  for (int i = 0; i < in.matches_size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(HttpRouteMatch m,
                          ConvertRouteMatch(in.matches(i), Indexed(path + ".matches", i)));
    rule.matches.push_back(std::move(m));
  }
  if (rule.matches.empty()) rule.matches.emplace_back();  // PathPrefix "/"
  if (rule.matches.front().path.value.empty()) rule.matches.front().path.value = "/";
  for (int i = 0; i < in.filters_size(); ++i) {
    WEFT_RETURN_IF_ERROR(ConvertRuleFilter(in.filters(i), Indexed(path + ".filters", i), &rule));
  }
  if (rule.redirect && rule.rewrite) {
    return Invalid(path + ".filters",
                   "RequestRedirect and URLRewrite cannot be used together (the spec)");
  }
  WEFT_RETURN_IF_ERROR(CheckPrefixRewrites(rule, path));
  for (int i = 0; i < in.backends_size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(HttpBackendRef b,
                          ConvertBackend(in.backends(i), Indexed(path + ".backendRefs", i)));
    rule.backends.push_back(std::move(b));
  }
  rule.request_timeout_ms = in.request_timeout_ms();
  rule.backend_request_timeout_ms = in.backend_request_timeout_ms();
  if (rule.request_timeout_ms != 0 && rule.backend_request_timeout_ms > rule.request_timeout_ms) {
    return Invalid(path + ".timeouts.backendRequest",
                   absl::StrCat(rule.backend_request_timeout_ms, " ms is above timeouts.request (",
                                rule.request_timeout_ms, " ms)"));
  }
  if (in.has_retry()) {
    WEFT_ASSIGN_OR_RETURN(rule.retry, ConvertRouteRetry(in.retry(), path + ".retry"));
  }
  return rule;
}

absl::StatusOr<uint32_t> ParseRetryOn(std::string_view name, std::vector<uint16_t>* codes,
                                      const std::string& path) {
  static const std::map<std::string_view, uint32_t> kNames = {
      {"5xx", kRetryOn5xx},
      {"gateway-error", kRetryOnGatewayError},
      {"reset", kRetryOnReset},
      {"connect-failure", kRetryOnConnectFailure},
      {"retriable-status-codes", kRetryOnRetriableStatusCodes},
      {"cancelled", kRetryOnGrpcCancelled},
      {"deadline-exceeded", kRetryOnGrpcDeadlineExceeded},
      {"internal", kRetryOnGrpcInternal},
      {"resource-exhausted", kRetryOnGrpcResourceExhausted},
      {"unavailable", kRetryOnGrpcUnavailable},
  };
  if (auto it = kNames.find(name); it != kNames.end()) return it->second;
  uint32_t code = 0;
  if (absl::SimpleAtoi(Av(name), &code) && code >= 100 && code <= 599) {
    codes->push_back(static_cast<uint16_t>(code));  // Istio: a status code in retryOn
    return kRetryOnRetriableStatusCodes;
  }
  return Invalid(path, absl::StrCat("unknown retryOn ", Quote(name),
                                    " (want 5xx, gateway-error, reset, connect-failure, "
                                    "retriable-status-codes, a status code, or a gRPC status: "
                                    "cancelled, deadline-exceeded, internal, resource-exhausted, "
                                    "unavailable)"));
}

absl::StatusOr<RetryPolicy> ConvertRetryPolicy(const pb::RetryPolicy& in, const std::string& path) {
  RetryPolicy r;
  r.attempts = in.attempts();
  r.per_try_timeout_ms = in.per_try_timeout_ms();
  for (int i = 0; i < in.retriable_status_codes_size(); ++i) {
    uint32_t c = in.retriable_status_codes(i);
    if (c < 100 || c > 599) {
      return Invalid(Indexed(path + ".retriableStatusCodes", i),
                     absl::StrCat(c, " is not an HTTP status (want 100..599)"));
    }
    r.retriable_status_codes.push_back(static_cast<uint16_t>(c));
  }
  for (int i = 0; i < in.retry_on_size(); ++i) {
    for (absl::string_view part : absl::StrSplit(in.retry_on(i), ',', absl::SkipWhitespace())) {
      absl::string_view name = absl::StripAsciiWhitespace(part);
      WEFT_ASSIGN_OR_RETURN(uint32_t bit,
                            ParseRetryOn(std::string_view(name.data(), name.size()),
                                         &r.retriable_status_codes, Indexed(path + ".retryOn", i)));
      r.retry_on |= bit;
    }
  }
  if (in.has_budget()) {
    const pb::RetryBudget& b = in.budget();
    if (!(b.retry_ratio() >= 0 && b.retry_ratio() <= 1000)) {
      return Invalid(path + ".budget.retryRatio",
                     absl::StrCat(b.retry_ratio(), " is out of range 0..1000"));
    }
    r.budget.retry_ratio = b.retry_ratio();
    r.budget.min_retries_per_second = b.min_retries_per_second();
    r.budget.ttl_ms = b.ttl_ms() == 0 ? 10000 : b.ttl_ms();
    if (r.budget.ttl_ms < 1000 || r.budget.ttl_ms > 60000) {
      return Invalid(path + ".budget.ttl",
                     absl::StrCat(b.ttl_ms(), " ms is out of range 1 s..60 s (Linkerd's bounds)"));
    }
  }
  return r;
}

absl::StatusOr<FaultInjection> ConvertFault(const pb::FaultInjection& in, const std::string& path) {
  FaultInjection f;
  if (in.has_delay()) {
    if (in.delay().fixed_delay_ms() == 0) {
      return Invalid(path + ".delay.fixedDelay", "is required (a delay above 0 ms)");
    }
    WEFT_RETURN_IF_ERROR(CheckPercent(in.delay().percentage(), path + ".delay.percentage"));
    f.delay = FaultDelay{in.delay().fixed_delay_ms(), in.delay().percentage()};
  }
  if (in.has_abort()) {
    const pb::FaultInjection::Abort& a = in.abort();
    const std::string ap = path + ".abort";
    bool grpc = a.grpc_status() != -1 && a.grpc_status() != 0;
    if ((a.http_status() != 0) == grpc) {
      return Invalid(ap, "needs exactly one of httpStatus or grpcStatus");
    }
    if (grpc && (a.grpc_status() < 1 || a.grpc_status() > 16)) {
      return Invalid(ap + ".grpcStatus",
                     absl::StrCat(a.grpc_status(), " is not a gRPC error status (want 1..16)"));
    }
    if (!grpc && (a.http_status() < 200 || a.http_status() > 599)) {
      return Invalid(ap + ".httpStatus",
                     absl::StrCat(a.http_status(), " is not an HTTP status (want 200..599)"));
    }
    WEFT_RETURN_IF_ERROR(CheckPercent(a.percentage(), ap + ".percentage"));
    f.abort = FaultAbort{static_cast<uint16_t>(grpc ? 0 : a.http_status()),
                         grpc ? a.grpc_status() : -1, a.percentage()};
  }
  return f;
}

absl::StatusOr<OutlierDetection> ConvertOutlier(const pb::OutlierDetection& in,
                                                const std::string& path) {
  OutlierDetection o;
  o.consecutive_5xx_errors = in.consecutive_5xx_errors();
  o.consecutive_gateway_errors = in.consecutive_gateway_errors();
  if (in.interval_ms() != 0) o.interval_ms = in.interval_ms();
  if (in.base_ejection_time_ms() != 0) o.base_ejection_time_ms = in.base_ejection_time_ms();
  if (in.max_ejection_percent() > 100) {
    return Invalid(path + ".maxEjectionPercent",
                   absl::StrCat(in.max_ejection_percent(), " is not a percentage 0..100"));
  }
  if (in.max_ejection_percent() != 0) o.max_ejection_percent = in.max_ejection_percent();
  return o;
}

absl::Status CheckRouteFaultKey(std::string_view key, const std::string& path) {
  std::string_view route = key.substr(0, key.find('#'));
  if (key.find('#') != std::string_view::npos && key.substr(route.size() + 1).empty()) {
    return Invalid(path, absl::StrCat(Quote(key), ": the rule name after '#' is empty"));
  }
  absl::Status st = CheckServiceRef(route, path);
  if (!st.ok()) {
    return Invalid(path, absl::StrCat(Quote(key),
                                      " is not a route key (want <namespace>/<name> or "
                                      "<namespace>/<name>#<rule name>)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckServiceRef(std::string_view ref, std::string_view path) {
  size_t slash = ref.find('/');
  if (ref.empty()) return Invalid(path, "is required (<namespace>/<name>)");
  if (slash == std::string_view::npos || !IsDnsLabel(ref.substr(0, slash)) ||
      !IsDnsLabel(ref.substr(slash + 1))) {
    return Invalid(path, absl::StrCat(Quote(ref),
                                      " is not a Service reference (want <namespace>/<name>, "
                                      "lower-case DNS labels)"));
  }
  return absl::OkStatus();
}

absl::Status CheckHostname(std::string_view host, std::string_view path, bool allow_wildcard) {
  std::string_view rest = host;
  if (allow_wildcard && rest.starts_with("*.")) rest.remove_prefix(2);
  bool ok = !rest.empty() && host.size() <= 253;
  bool all_digits = true;
  for (absl::string_view label : absl::StrSplit(Av(rest), '.')) {
    ok = ok && IsDnsLabel(std::string_view(label.data(), label.size()));
    for (char c : label) all_digits = all_digits && (absl::ascii_isdigit(c));
  }
  if (!ok || all_digits) {
    return Invalid(path, absl::StrCat(Quote(host), " is not a hostname (lower-case DNS name",
                                      allow_wildcard ? ", optionally starting with \"*.\"" : "",
                                      "; no IP address, no port)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpRoute> HttpRouteFromProto(const pb::HttpRoute& in) {
  WEFT_RETURN_IF_ERROR(CheckNamedKey(in.name(), in.namespace_()));
  HttpRoute r;
  r.name = in.name();
  r.ns = in.namespace_();
  switch (in.kind()) {
    case pb::HttpRoute::HTTP_ROUTE:
      r.kind = HttpRoute::Kind::kHttp;
      break;
    case pb::HttpRoute::GRPC_ROUTE:
      r.kind = HttpRoute::Kind::kGrpc;
      break;
    default:
      return Invalid("kind",
                     absl::StrCat("unknown kind ", in.kind(), " (want HTTP_ROUTE or GRPC_ROUTE)"));
  }
  WEFT_RETURN_IF_ERROR(CheckServiceRef(in.parent_service(), "parentService"));
  r.parent_service = in.parent_service();
  if (in.parent_port() != 0) {
    WEFT_ASSIGN_OR_RETURN(r.parent_port, CheckPort(in.parent_port(), "parentPort"));
  }
  for (int i = 0; i < in.hostnames_size(); ++i) {
    WEFT_RETURN_IF_ERROR(CheckHostname(in.hostnames(i), Indexed("hostnames", i), true));
    r.hostnames.push_back(in.hostnames(i));
  }
  for (int i = 0; i < in.rules_size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(HttpRouteRule rule, ConvertRouteRule(in.rules(i), Indexed("rules", i)));
    r.rules.push_back(std::move(rule));
  }
  r.creation_timestamp_ms = in.creation_timestamp_ms();
  return r;
}

absl::StatusOr<TrafficPolicy> TrafficPolicyFromProto(const pb::TrafficPolicy& in) {
  WEFT_RETURN_IF_ERROR(CheckNamedKey(in.name(), in.namespace_()));
  TrafficPolicy p;
  p.name = in.name();
  p.ns = in.namespace_();
  WEFT_RETURN_IF_ERROR(CheckServiceRef(in.target_service(), "targetService"));
  if (std::string_view(in.target_service()).substr(0, in.target_service().find('/')) != p.ns) {
    return Invalid("targetService",
                   absl::StrCat(Quote(in.target_service()), " is not in the policy's namespace ",
                                Quote(p.ns)));
  }
  p.target_service = in.target_service();
  if (in.target_port() != 0) {
    WEFT_ASSIGN_OR_RETURN(p.target_port, CheckPort(in.target_port(), "targetPort"));
  }
  if (in.has_retries()) {
    WEFT_ASSIGN_OR_RETURN(p.retries, ConvertRetryPolicy(in.retries(), "retries"));
  }
  if (in.has_fault_injection()) {
    WEFT_ASSIGN_OR_RETURN(p.fault_injection, ConvertFault(in.fault_injection(), "faultInjection"));
  }
  if (in.has_connection_pool()) {
    const pb::ConnectionPool& c = in.connection_pool();
    p.connection_pool =
        ConnectionPool{c.max_connections(), c.http1_max_pending_requests(), c.http2_max_requests(),
                       c.max_requests_per_connection(), c.max_retries()};
  }
  if (in.has_outlier_detection()) {
    WEFT_ASSIGN_OR_RETURN(p.outlier_detection,
                          ConvertOutlier(in.outlier_detection(), "outlierDetection"));
  }
  // Sorted so that errors name keys deterministically (protobuf maps are unordered).
  std::map<std::string, const pb::FaultInjection*> faults;
  for (const auto& [k, v] : in.route_fault_injection()) faults.emplace(k, &v);
  for (const auto& [k, v] : faults) {
    const std::string path = absl::StrCat("routeFaultInjection[", k, "]");
    WEFT_RETURN_IF_ERROR(CheckRouteFaultKey(k, path));
    WEFT_ASSIGN_OR_RETURN(FaultInjection f, ConvertFault(*v, path));
    p.route_fault_injection.emplace(k, std::move(f));
  }
  return p;
}

}  // namespace weft::config
