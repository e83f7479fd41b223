#include "controlplane/model/objects.h"

#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"
#include "common/net.h"
#include "common/status.h"
#include "controlplane/model/json_fields.h"
#include "controlplane/model/policies.h"

namespace weft::cp::internal {
namespace {

using nlohmann::json;

constexpr std::array<KindInfo, 12> kKinds = {{
    {"Namespace", "v1", false},
    {"Pod", "v1", true},
    {"Service", "v1", true},
    {"ServiceAccount", "v1", true},
    {"EndpointSlice", "discovery.k8s.io/v1", true},
    {"NetworkPolicy", "networking.k8s.io/v1", true},
    // Istio's own policies are read unchanged, by the same parser (docs/security.md).
    {"AuthorizationPolicy",
     "security.weft.dev/v1",
     true,
     {"security.istio.io/v1", "security.istio.io/v1beta1"}},
    {"PeerAuthentication",
     "security.weft.dev/v1",
     true,
     {"security.istio.io/v1", "security.istio.io/v1beta1"}},
    {"HTTPRoute", "gateway.networking.k8s.io/v1", true, {"gateway.networking.k8s.io/v1beta1"}},
    {"GRPCRoute", "gateway.networking.k8s.io/v1", true, {"gateway.networking.k8s.io/v1alpha2"}},
    {"ReferenceGrant", "gateway.networking.k8s.io/v1beta1", true, {"gateway.networking.k8s.io/v1"}},
    {"TrafficPolicy", "networking.weft.dev/v1", true},
}};

absl::StatusOr<Labels> StrMap(const json& parent, std::string_view key, std::string_view path,
                              bool label_syntax) {
  Labels out;
  const json* v = Get(parent, key);
  const std::string p = Join(path, key);
  if (v == nullptr) return out;
  if (!v->is_object()) return WrongType(p, "a mapping of strings", *v);
  for (const auto& [k, val] : v->items()) {
    const std::string kp = absl::StrCat(p, "[", Av(k), "]");
    if (!val.is_string()) return WrongType(kp, "a string", val);
    if (label_syntax) {
      if (!IsLabelKey(k)) {
        return Bad(kp,
                   "is not a valid label key (name of up to 63 characters [A-Za-z0-9._-], "
                   "optionally prefixed by a DNS subdomain and '/')");
      }
      if (!IsLabelName(val.get_ref<const std::string&>(), true)) {
        return Bad(kp, absl::StrCat("value ", val.dump(),
                                    " is not a valid label value (up to 63 characters "
                                    "[A-Za-z0-9._-], alphanumeric at both ends)"));
      }
    }
    out.emplace(k, val.get<std::string>());
  }
  return out;
}

absl::StatusOr<LabelSelector> ParseSelector(const json& sel, std::string_view path) {
  LabelSelector out;
  for (const auto& [k, v] : sel.items()) {
    if (k != "matchLabels" && k != "matchExpressions") {
      return Bad(Join(path, k), "unknown field (want matchLabels or matchExpressions)");
    }
  }
  WEFT_ASSIGN_OR_RETURN(out.match_labels, StrMap(sel, "matchLabels", path, true));
  WEFT_ASSIGN_OR_RETURN(const json* exprs, Arr(sel, "matchExpressions", path));
  if (exprs == nullptr) return out;
  for (size_t i = 0; i < exprs->size(); ++i) {
    const std::string ep = At(Join(path, "matchExpressions"), i);
    const json& e = (*exprs)[i];
    if (!e.is_object()) return WrongType(ep, "a mapping", e);
    LabelRequirement r;
    WEFT_ASSIGN_OR_RETURN(r.key, Str(e, "key", ep, true));
    if (!IsLabelKey(r.key)) return Bad(Join(ep, "key"), "is not a valid label key");
    WEFT_ASSIGN_OR_RETURN(std::string op, Str(e, "operator", ep, true));
    if (op == "In") {
      r.op = LabelRequirement::Op::kIn;
    } else if (op == "NotIn") {
      r.op = LabelRequirement::Op::kNotIn;
    } else if (op == "Exists") {
      r.op = LabelRequirement::Op::kExists;
    } else if (op == "DoesNotExist") {
      r.op = LabelRequirement::Op::kDoesNotExist;
    } else {
      return Bad(Join(ep, "operator"), absl::StrCat("unknown operator \"", op,
                                                    "\" (want In, NotIn, Exists or DoesNotExist)"));
    }
    WEFT_ASSIGN_OR_RETURN(const json* values, Arr(e, "values", ep));
    if (values != nullptr) {
      for (size_t j = 0; j < values->size(); ++j) {
        const json& v = (*values)[j];
        if (!v.is_string()) return WrongType(At(Join(ep, "values"), j), "a string", v);
        r.values.insert(v.get<std::string>());
      }
    }
    const bool set_op = r.op == LabelRequirement::Op::kIn || r.op == LabelRequirement::Op::kNotIn;
    if (set_op && r.values.empty()) {
      return Bad(Join(ep, "values"), absl::StrCat("must not be empty for operator ", op));
    }
    if (!set_op && !r.values.empty()) {
      return Bad(Join(ep, "values"), absl::StrCat("must be empty for operator ", op));
    }
    out.expressions.push_back(std::move(r));
  }
  return out;
}

absl::Status CheckIp(const std::string& ip, std::string_view path) {
  auto a = IpAddr::Parse(ip);
  if (!a.ok()) {
    return Bad(path, absl::StrCat("bad IP address \"", ip, "\": ", a.status().message()));
  }
  return absl::OkStatus();
}

// ---- per kind

absl::StatusOr<Parsed> ParseNamespace(const json& o) {
  NamespaceObj n;
  WEFT_ASSIGN_OR_RETURN(n.labels, StrMap(o.at("metadata"), "labels", "metadata", true));
  return n;
}

absl::StatusOr<Parsed> ParsePod(const ObjectId& id, const json& o) {
  PodObj p;
  const json& meta = o.at("metadata");
  WEFT_ASSIGN_OR_RETURN(p.uid, Str(meta, "uid", "metadata"));
  if (p.uid.empty()) p.uid = absl::StrCat(id.ns, "/", id.name);
  WEFT_ASSIGN_OR_RETURN(p.labels, StrMap(meta, "labels", "metadata", true));
  WEFT_ASSIGN_OR_RETURN(Labels annotations, StrMap(meta, "annotations", "metadata", false));
  if (auto it = annotations.find("weft.dev/netns-path"); it != annotations.end()) {
    if (it->second.empty() || it->second.front() != '/') {
      return Bad("metadata.annotations[weft.dev/netns-path]",
                 absl::StrCat("\"", it->second, "\" is not an absolute path"));
    }
    p.netns_path = it->second;
  }
  // workload_name: the owning controller, with a ReplicaSet traced to its Deployment.
  p.workload_name = id.name;
  WEFT_ASSIGN_OR_RETURN(const json* owners, Arr(meta, "ownerReferences", "metadata"));
  if (owners != nullptr) {
    for (size_t i = 0; i < owners->size(); ++i) {
      const std::string op = At("metadata.ownerReferences", i);
      const json& ref = (*owners)[i];
      if (!ref.is_object()) return WrongType(op, "a mapping", ref);
      WEFT_ASSIGN_OR_RETURN(std::string kind, Str(ref, "kind", op, true));
      WEFT_ASSIGN_OR_RETURN(std::string name, Str(ref, "name", op, true));
      WEFT_ASSIGN_OR_RETURN(std::optional<bool> controller, Bool(ref, "controller", op));
      if (i != 0 && !controller.value_or(false)) continue;
      p.workload_name = name;
      auto hash = p.labels.find("pod-template-hash");
      if (kind == "ReplicaSet" && hash != p.labels.end() &&
          name.ends_with(absl::StrCat("-", hash->second))) {
        p.workload_name = name.substr(0, name.size() - hash->second.size() - 1);
      }
      if (controller.value_or(false)) break;
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* spec, Obj(o, "spec", ""));
  const json empty = json::object();
  const json& s = spec != nullptr ? *spec : empty;
  WEFT_ASSIGN_OR_RETURN(p.node, Str(s, "nodeName", "spec"));
  WEFT_ASSIGN_OR_RETURN(p.service_account, Str(s, "serviceAccountName", "spec"));
  if (p.service_account.empty()) {
    WEFT_ASSIGN_OR_RETURN(p.service_account, Str(s, "serviceAccount", "spec"));
  }
  if (p.service_account.empty()) p.service_account = "default";
  WEFT_ASSIGN_OR_RETURN(std::optional<bool> host_network, Bool(s, "hostNetwork", "spec"));
  p.host_network = host_network.value_or(false);
  WEFT_ASSIGN_OR_RETURN(const json* containers, Arr(s, "containers", "spec"));
  if (containers != nullptr) {
    for (size_t i = 0; i < containers->size(); ++i) {
      const std::string cp = At("spec.containers", i);
      const json& c = (*containers)[i];
      if (!c.is_object()) return WrongType(cp, "a mapping", c);
      WEFT_ASSIGN_OR_RETURN(const json* ports, Arr(c, "ports", cp));
      if (ports == nullptr) continue;
      for (size_t j = 0; j < ports->size(); ++j) {
        const std::string pp = At(Join(cp, "ports"), j);
        const json& port = (*ports)[j];
        if (!port.is_object()) return WrongType(pp, "a mapping", port);
        const json* number = Get(port, "containerPort");
        if (number == nullptr) return Bad(Join(pp, "containerPort"), "is required");
        WEFT_ASSIGN_OR_RETURN(uint16_t n, PortValue(*number, Join(pp, "containerPort")));
        WEFT_ASSIGN_OR_RETURN(std::string name, Str(port, "name", pp));
        WEFT_ASSIGN_OR_RETURN(std::string proto, Str(port, "protocol", pp));
        if (!name.empty() && (proto.empty() || proto == "TCP")) p.named_ports.emplace(name, n);
      }
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* status, Obj(o, "status", ""));
  if (status != nullptr) {
    WEFT_ASSIGN_OR_RETURN(p.phase, Str(*status, "phase", "status"));
    if (!p.phase.empty() && p.phase != "Pending" && p.phase != "Running" &&
        p.phase != "Succeeded" && p.phase != "Failed" && p.phase != "Unknown") {
      return Bad("status.phase", absl::StrCat("unknown phase \"", p.phase,
                                              "\" (want Pending, Running, Succeeded, Failed or "
                                              "Unknown)"));
    }
    WEFT_ASSIGN_OR_RETURN(const json* ips, Arr(*status, "podIPs", "status"));
    if (ips != nullptr) {
      for (size_t i = 0; i < ips->size(); ++i) {
        const std::string ip_path = At("status.podIPs", i);
        const json& entry = (*ips)[i];
        if (!entry.is_object()) return WrongType(ip_path, "a mapping with ip", entry);
        WEFT_ASSIGN_OR_RETURN(std::string ip, Str(entry, "ip", ip_path, true));
        WEFT_RETURN_IF_ERROR(CheckIp(ip, Join(ip_path, "ip")));
        if (std::find(p.ips.begin(), p.ips.end(), ip) == p.ips.end()) p.ips.push_back(ip);
      }
    }
    WEFT_ASSIGN_OR_RETURN(std::string ip, Str(*status, "podIP", "status"));
    if (!ip.empty()) {
      WEFT_RETURN_IF_ERROR(CheckIp(ip, "status.podIP"));
      if (std::find(p.ips.begin(), p.ips.end(), ip) == p.ips.end()) p.ips.insert(p.ips.begin(), ip);
    }
  }
  return p;
}

absl::StatusOr<Parsed> ParseService(const json& o) {
  ServiceObj svc;
  WEFT_ASSIGN_OR_RETURN(const json* spec, Obj(o, "spec", ""));
  if (spec == nullptr) return svc;
  WEFT_ASSIGN_OR_RETURN(const json* ips, Arr(*spec, "clusterIPs", "spec"));
  if (ips != nullptr) {
    for (size_t i = 0; i < ips->size(); ++i) {
      const json& ip = (*ips)[i];
      if (!ip.is_string()) return WrongType(At("spec.clusterIPs", i), "a string", ip);
      const std::string s = ip.get<std::string>();
      if (s == "None" || s.empty()) continue;
      WEFT_RETURN_IF_ERROR(CheckIp(s, At("spec.clusterIPs", i)));
      svc.cluster_ips.push_back(s);
    }
  }
  WEFT_ASSIGN_OR_RETURN(std::string cluster_ip, Str(*spec, "clusterIP", "spec"));
  if (!cluster_ip.empty() && cluster_ip != "None") {
    WEFT_RETURN_IF_ERROR(CheckIp(cluster_ip, "spec.clusterIP"));
    if (std::find(svc.cluster_ips.begin(), svc.cluster_ips.end(), cluster_ip) ==
        svc.cluster_ips.end()) {
      svc.cluster_ips.insert(svc.cluster_ips.begin(), cluster_ip);
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* selector, Obj(*spec, "selector", "spec"));
  if (selector != nullptr) {
    WEFT_ASSIGN_OR_RETURN(Labels sel, StrMap(*spec, "selector", "spec", true));
    if (!sel.empty()) svc.selector = std::move(sel);
  }
  WEFT_ASSIGN_OR_RETURN(const json* ports, Arr(*spec, "ports", "spec"));
  if (ports != nullptr) {
    std::set<std::pair<uint16_t, std::string>> seen;
    for (size_t i = 0; i < ports->size(); ++i) {
      const std::string pp = At("spec.ports", i);
      const json& port = (*ports)[i];
      if (!port.is_object()) return WrongType(pp, "a mapping", port);
      ServicePortObj sp;
      const json* number = Get(port, "port");
      if (number == nullptr) return Bad(Join(pp, "port"), "is required");
      WEFT_ASSIGN_OR_RETURN(sp.port, PortValue(*number, Join(pp, "port")));
      WEFT_ASSIGN_OR_RETURN(sp.name, Str(port, "name", pp));
      WEFT_ASSIGN_OR_RETURN(sp.app_protocol, Str(port, "appProtocol", pp));
      WEFT_ASSIGN_OR_RETURN(sp.protocol, Str(port, "protocol", pp));
      if (sp.protocol.empty()) sp.protocol = "TCP";
      if (sp.protocol != "TCP" && sp.protocol != "UDP" && sp.protocol != "SCTP") {
        return Bad(Join(pp, "protocol"),
                   absl::StrCat("unknown protocol \"", sp.protocol, "\" (want TCP, UDP or SCTP)"));
      }
      if (!seen.emplace(sp.port, sp.protocol).second) {
        return Bad(Join(pp, "port"),
                   absl::StrCat("port ", sp.port, "/", sp.protocol, " is listed twice"));
      }
      if (const json* target = Get(port, "targetPort"); target != nullptr) {
        if (target->is_string()) {
          sp.target_port_name = target->get<std::string>();
          if (!IsLabelName(sp.target_port_name, false) || sp.target_port_name.size() > 15) {
            return Bad(Join(pp, "targetPort"),
                       absl::StrCat("\"", sp.target_port_name,
                                    "\" is not a port number or a valid port name"));
          }
        } else {
          WEFT_ASSIGN_OR_RETURN(sp.target_port, PortValue(*target, Join(pp, "targetPort")));
        }
      }
      svc.ports.push_back(std::move(sp));
    }
  }
  return svc;
}

absl::StatusOr<Parsed> ParseSlice(const json& o) {
  SliceObj s;
  WEFT_ASSIGN_OR_RETURN(Labels labels, StrMap(o.at("metadata"), "labels", "metadata", true));
  auto svc = labels.find("kubernetes.io/service-name");
  if (svc == labels.end() || svc->second.empty()) {
    return Bad("metadata.labels[kubernetes.io/service-name]",
               "is required (names the Service this slice belongs to)");
  }
  s.service = svc->second;
  WEFT_ASSIGN_OR_RETURN(std::string address_type, Str(o, "addressType", "", true));
  if (address_type != "IPv4" && address_type != "IPv6" && address_type != "FQDN") {
    return Bad("addressType", absl::StrCat("unknown address type \"", address_type,
                                           "\" (want IPv4, IPv6 or FQDN)"));
  }
  WEFT_ASSIGN_OR_RETURN(const json* endpoints, Arr(o, "endpoints", ""));
  if (endpoints != nullptr) {
    for (size_t i = 0; i < endpoints->size(); ++i) {
      const std::string ep = At("endpoints", i);
      const json& e = (*endpoints)[i];
      if (!e.is_object()) return WrongType(ep, "a mapping", e);
      SliceEndpoint out;
      WEFT_ASSIGN_OR_RETURN(const json* addrs, Arr(e, "addresses", ep));
      if (addrs == nullptr || addrs->empty()) return Bad(Join(ep, "addresses"), "is required");
      for (size_t j = 0; j < addrs->size(); ++j) {
        const json& a = (*addrs)[j];
        if (!a.is_string()) return WrongType(At(Join(ep, "addresses"), j), "a string", a);
        if (address_type != "FQDN") {
          WEFT_RETURN_IF_ERROR(CheckIp(a.get<std::string>(), At(Join(ep, "addresses"), j)));
        }
        out.addresses.push_back(a.get<std::string>());
      }
      WEFT_ASSIGN_OR_RETURN(const json* cond, Obj(e, "conditions", ep));
      if (cond != nullptr) {
        WEFT_ASSIGN_OR_RETURN(std::optional<bool> ready,
                              Bool(*cond, "ready", Join(ep, "conditions")));
        out.ready = ready.value_or(true);  // discovery.k8s.io/v1: nil means ready
      }
      WEFT_ASSIGN_OR_RETURN(const json* ref, Obj(e, "targetRef", ep));
      if (ref != nullptr) {
        const std::string rp = Join(ep, "targetRef");
        WEFT_ASSIGN_OR_RETURN(std::string kind, Str(*ref, "kind", rp));
        if (kind == "Pod") {
          WEFT_ASSIGN_OR_RETURN(out.target_uid, Str(*ref, "uid", rp));
          WEFT_ASSIGN_OR_RETURN(out.target_ns, Str(*ref, "namespace", rp));
          WEFT_ASSIGN_OR_RETURN(out.target_name, Str(*ref, "name", rp));
        }
      }
      s.endpoints.push_back(std::move(out));
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* ports, Arr(o, "ports", ""));
  if (ports != nullptr) {
    for (size_t i = 0; i < ports->size(); ++i) {
      const std::string pp = At("ports", i);
      const json& port = (*ports)[i];
      if (!port.is_object()) return WrongType(pp, "a mapping", port);
      WEFT_ASSIGN_OR_RETURN(std::string name, Str(port, "name", pp));
      const json* number = Get(port, "port");
      if (number == nullptr) continue;  // "all ports": nothing to resolve from it
      WEFT_ASSIGN_OR_RETURN(uint16_t n, PortValue(*number, Join(pp, "port")));
      s.ports.emplace(name, n);
    }
  }
  return s;
}

absl::StatusOr<NetPeer> ParsePeer(const json& peer, const std::string& path) {
  if (!peer.is_object()) return WrongType(path, "a mapping", peer);
  NetPeer out;
  for (const auto& [k, v] : peer.items()) {
    if (k != "podSelector" && k != "namespaceSelector" && k != "ipBlock") {
      return Bad(Join(path, k), "unknown field (want podSelector, namespaceSelector or ipBlock)");
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* pod, Obj(peer, "podSelector", path));
  WEFT_ASSIGN_OR_RETURN(const json* ns, Obj(peer, "namespaceSelector", path));
  WEFT_ASSIGN_OR_RETURN(const json* block, Obj(peer, "ipBlock", path));
  if (block != nullptr && (pod != nullptr || ns != nullptr)) {
    return Bad(path, "ipBlock cannot be combined with podSelector or namespaceSelector");
  }
  if (block == nullptr && pod == nullptr && ns == nullptr) {
    return Bad(path, "needs one of podSelector, namespaceSelector or ipBlock");
  }
  if (pod != nullptr) {
    WEFT_ASSIGN_OR_RETURN(out.pod_selector, ParseSelector(*pod, Join(path, "podSelector")));
  }
  if (ns != nullptr) {
    WEFT_ASSIGN_OR_RETURN(out.namespace_selector,
                          ParseSelector(*ns, Join(path, "namespaceSelector")));
  }
  if (block != nullptr) {
    const std::string bp = Join(path, "ipBlock");
    WEFT_ASSIGN_OR_RETURN(std::string cidr_text, Str(*block, "cidr", bp, true));
    auto cidr = Cidr::Parse(cidr_text);
    if (!cidr.ok()) {
      return Bad(Join(bp, "cidr"),
                 absl::StrCat("bad CIDR \"", cidr_text,
                              "\" (want e.g. 10.0.0.0/8): ", cidr.status().message()));
    }
    std::vector<std::string> except;
    WEFT_ASSIGN_OR_RETURN(const json* ex, Arr(*block, "except", bp));
    if (ex != nullptr) {
      for (size_t i = 0; i < ex->size(); ++i) {
        const std::string xp = At(Join(bp, "except"), i);
        const json& x = (*ex)[i];
        if (!x.is_string()) return WrongType(xp, "a string", x);
        auto xc = Cidr::Parse(x.get<std::string>());
        if (!xc.ok()) {
          return Bad(xp, absl::StrCat("bad CIDR ", x.dump(), ": ", xc.status().message()));
        }
        if (!cidr->Contains(xc->base()) || xc->prefix_len() < cidr->prefix_len()) {
          return Bad(xp, absl::StrCat(x.dump(), " is not inside cidr \"", cidr_text, "\""));
        }
        except.push_back(x.get<std::string>());
      }
    }
    out.ip_block.emplace(cidr_text, std::move(except));
  }
  return out;
}

absl::StatusOr<NetPort> ParseNetPort(const json& port, const std::string& path) {
  if (!port.is_object()) return WrongType(path, "a mapping", port);
  NetPort out;
  WEFT_ASSIGN_OR_RETURN(std::string proto, Str(port, "protocol", path));
  if (!proto.empty()) out.protocol = proto;
  if (out.protocol != "TCP" && out.protocol != "UDP" && out.protocol != "SCTP") {
    return Bad(Join(path, "protocol"),
               absl::StrCat("unknown protocol \"", out.protocol, "\" (want TCP, UDP or SCTP)"));
  }
  if (const json* p = Get(port, "port"); p != nullptr) {
    if (p->is_string()) {
      out.port_name = p->get<std::string>();
      if (!IsLabelName(out.port_name, false) || out.port_name.size() > 15) {
        return Bad(
            Join(path, "port"),
            absl::StrCat("\"", out.port_name, "\" is not a port number or a valid port name"));
      }
    } else {
      WEFT_ASSIGN_OR_RETURN(out.port, PortValue(*p, Join(path, "port")));
    }
  }
  if (const json* e = Get(port, "endPort"); e != nullptr) {
    WEFT_ASSIGN_OR_RETURN(out.end_port, PortValue(*e, Join(path, "endPort")));
    if (out.port == 0) return Bad(Join(path, "endPort"), "requires a numeric port");
    if (out.end_port < out.port) {
      return Bad(Join(path, "endPort"),
                 absl::StrCat("is ", out.end_port, ", below port ", out.port));
    }
  }
  return out;
}

absl::StatusOr<NetRule> ParseNetRule(const json& r, const std::string& rp,
                                     std::string_view peers_key) {
  if (!r.is_object()) return WrongType(rp, "a mapping", r);
  for (const auto& [k, v] : r.items()) {
    if (k != peers_key && k != "ports") {
      return Bad(Join(rp, k), absl::StrCat("unknown field (want ", Av(peers_key), " or ports)"));
    }
  }
  NetRule rule;
  WEFT_ASSIGN_OR_RETURN(const json* peers, Arr(r, peers_key, rp));
  rule.all_sources = peers == nullptr || peers->empty();
  if (peers != nullptr) {
    for (size_t j = 0; j < peers->size(); ++j) {
      WEFT_ASSIGN_OR_RETURN(NetPeer peer, ParsePeer((*peers)[j], At(Join(rp, peers_key), j)));
      rule.from.push_back(std::move(peer));
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* ports, Arr(r, "ports", rp));
  rule.all_ports = ports == nullptr || ports->empty();
  if (ports != nullptr) {
    for (size_t j = 0; j < ports->size(); ++j) {
      WEFT_ASSIGN_OR_RETURN(NetPort port, ParseNetPort((*ports)[j], At(Join(rp, "ports"), j)));
      rule.ports.push_back(std::move(port));
    }
  }
  return rule;
}

absl::StatusOr<std::vector<NetRule>> ParseNetRules(const json& spec, std::string_view key,
                                                   std::string_view peers_key) {
  std::vector<NetRule> out;
  WEFT_ASSIGN_OR_RETURN(const json* rules, Arr(spec, key, "spec"));
  if (rules == nullptr) return out;
  for (size_t i = 0; i < rules->size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(NetRule rule,
                          ParseNetRule((*rules)[i], At(Join("spec", key), i), peers_key));
    out.push_back(std::move(rule));
  }
  return out;
}

absl::StatusOr<Parsed> ParseNetworkPolicy(const json& o) {
  NetPolObj np;
  WEFT_ASSIGN_OR_RETURN(const json* spec, Obj(o, "spec", "", true));
  for (const auto& [k, v] : spec->items()) {
    if (k != "podSelector" && k != "policyTypes" && k != "ingress" && k != "egress") {
      return Bad(Join("spec", k), "unknown field (want podSelector, policyTypes, ingress, egress)");
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* sel, Obj(*spec, "podSelector", "spec", true));
  WEFT_ASSIGN_OR_RETURN(np.pod_selector, ParseSelector(*sel, "spec.podSelector"));
  WEFT_ASSIGN_OR_RETURN(np.ingress, ParseNetRules(*spec, "ingress", "from"));
  WEFT_ASSIGN_OR_RETURN(std::vector<NetRule> egress, ParseNetRules(*spec, "egress", "to"));
  WEFT_ASSIGN_OR_RETURN(const json* types, Arr(*spec, "policyTypes", "spec"));
  if (types == nullptr) {
    // Kubernetes' default: Ingress always, Egress when egress rules are present.
    np.ingress_isolated = true;
    np.has_egress = !egress.empty();
  } else {
    np.ingress_isolated = false;
    for (size_t i = 0; i < types->size(); ++i) {
      const json& t = (*types)[i];
      if (!t.is_string()) return WrongType(At("spec.policyTypes", i), "a string", t);
      if (t == "Ingress") {
        np.ingress_isolated = true;
      } else if (t == "Egress") {
        np.has_egress = true;
      } else {
        return Bad(At("spec.policyTypes", i),
                   absl::StrCat("unknown policy type ", t.dump(), " (want Ingress or Egress)"));
      }
    }
  }
  return np;
}

// A NetworkPolicy that does not parse in full is not dropped (its pods would stay unisolated):
// it isolates, for ingress, the pods its podSelector selects (every pod of its namespace when
// that cannot be read) and keeps only the ingress rules that parse (none when its scope or an
// unknown field is in doubt, since rules of all policies add up). `why`: the first problem.
NetPolObj NetworkPolicyFailClosed(const ObjectId& id, const json& o, const absl::Status& why,
                                  FailClosed* fc) {
  NetPolObj np;  // empty selector: every pod of the namespace; isolated for ingress
  bool in_doubt = true;
  int asked = 0, dropped = 0;
  const json* spec = Get(o, "spec");
  if (spec != nullptr && spec->is_object()) {
    in_doubt = false;
    for (const auto& [k, v] : spec->items()) {
      in_doubt |= k != "podSelector" && k != "policyTypes" && k != "ingress" && k != "egress";
    }
    auto sel = Obj(*spec, "podSelector", "spec", true);
    auto parsed = sel.ok() ? ParseSelector(**sel, "spec.podSelector") : sel.status();
    if (parsed.ok()) {
      np.pod_selector = *parsed;
    } else {
      in_doubt = true;
    }
    // policyTypes: isolated for ingress unless a readable list leaves Ingress out.
    auto types = Arr(*spec, "policyTypes", "spec");
    if (types.ok() && *types != nullptr &&
        std::all_of((*types)->begin(), (*types)->end(),
                    [](const json& t) { return t == "Ingress" || t == "Egress"; })) {
      np.ingress_isolated =
          std::find((*types)->begin(), (*types)->end(), json("Ingress")) != (*types)->end();
    }
    np.has_egress = Get(*spec, "egress") != nullptr;
    auto rules = Arr(*spec, "ingress", "spec");
    in_doubt |= !rules.ok();
    for (size_t i = 0; rules.ok() && *rules != nullptr && i < (*rules)->size(); ++i) {
      ++asked;
      auto rule = ParseNetRule((**rules)[i], At("spec.ingress", i), "from");
      if (rule.ok()) {
        np.ingress.push_back(std::move(*rule));
      } else {
        ++dropped;
      }
    }
  }
  if (in_doubt) np.ingress.clear();
  fc->reason = std::string(why.message());
  const std::string scope =
      in_doubt && np.pod_selector.match_labels.empty() && np.pod_selector.expressions.empty()
          ? absl::StrCat("every pod of namespace ", id.ns)
          : "the pods it selects";
  if (!np.ingress_isolated) {
    fc->label = "egress_ignored";
    fc->effect =
        "fail-closed: no ingress effect (policyTypes leaves Ingress out); egress is not "
        "enforced by Weft";
  } else if (np.ingress.empty()) {
    fc->label = "deny_ingress";
    fc->effect = absl::StrCat("fail-closed: denies all ingress to ", scope,
                              " (other NetworkPolicies' rules still apply)");
  } else if (dropped > 0) {
    fc->label = "ingress_rules_dropped";
    fc->effect = absl::StrCat("fail-closed: isolates ", scope, " with ", np.ingress.size(), " of ",
                              asked, " ingress rules (the unusable ones admit nothing)");
  } else {
    fc->label = "egress_ignored";
    fc->effect =
        "fail-closed: enforced for ingress as written; its egress part is not enforced by "
        "Weft";
  }
  return np;
}

// A route whose spec cannot be used is kept (its parents' status says why, and nothing of it is
// applied) and reported like a fail-closed policy; without `fail_closed` (weftctl validate) it
// is an error.
absl::StatusOr<Parsed> ParseRouteObject(const ObjectId& id, const json& object,
                                        std::optional<FailClosed>* fail_closed) {
  WEFT_ASSIGN_OR_RETURN(RouteObj route, ParseRoute(id.kind, id.ns, object));
  const std::string& why = route.invalid.empty() ? route.unsupported : route.invalid;
  if (why.empty()) return route;
  if (fail_closed == nullptr) return absl::InvalidArgumentError(why);
  FailClosed fc;
  fc.reason = why;
  fc.effect =
      "not applied: each Service parent's status says Accepted=False (UnsupportedValue); traffic "
      "is routed as if the route did not exist";
  fc.label = route.invalid.empty() ? "route_unsupported" : "route_invalid";
  *fail_closed = std::move(fc);
  return route;
}

}  // namespace

bool LabelSelector::Matches(const Labels& labels) const {
  for (const auto& [k, v] : match_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const LabelRequirement& r : expressions) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    switch (r.op) {
      case LabelRequirement::Op::kIn:
        if (!has || !r.values.contains(it->second)) return false;
        break;
      case LabelRequirement::Op::kNotIn:
        if (has && r.values.contains(it->second)) return false;
        break;
      case LabelRequirement::Op::kExists:
        if (!has) return false;
        break;
      case LabelRequirement::Op::kDoesNotExist:
        if (has) return false;
        break;
    }
  }
  return true;
}

std::string KindInfo::VersionProblem(std::string_view v) const {
  if (Accepts(v)) return "";
  std::vector<std::string_view> want = {api_version};
  for (std::string_view alt : alt_api_versions) {
    if (!alt.empty()) want.push_back(alt);
  }
  std::string list(want.front());
  for (size_t i = 1; i < want.size(); ++i) {
    absl::StrAppend(&list, i + 1 == want.size() ? " or " : ", ", Av(want[i]));
  }
  return absl::StrCat("\"", Av(v), "\" is not supported for ", Av(kind), " (want ", list, ")");
}

const KindInfo* FindKind(std::string_view kind) {
  for (const KindInfo& k : kKinds) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

absl::StatusOr<ObjectId> ParseId(const std::string& kind, const json& object) {
  if (!object.is_object()) return WrongType("object", "a mapping", object);
  ObjectId id;
  WEFT_ASSIGN_OR_RETURN(std::string own_kind, Str(object, "kind", ""));
  if (!kind.empty() && !own_kind.empty() && kind != own_kind) {
    return Bad("kind", absl::StrCat("is \"", own_kind, "\" but the source says \"", kind, "\""));
  }
  id.kind = kind.empty() ? own_kind : kind;
  if (id.kind.empty()) return Bad("kind", "is required");
  WEFT_ASSIGN_OR_RETURN(const json* meta, Obj(object, "metadata", "", true));
  WEFT_ASSIGN_OR_RETURN(id.name, Str(*meta, "name", "metadata", true));
  WEFT_ASSIGN_OR_RETURN(id.ns, Str(*meta, "namespace", "metadata"));
  const KindInfo* info = FindKind(id.kind);
  if (info != nullptr) {
    if (info->namespaced && id.ns.empty()) id.ns = "default";
    if (!info->namespaced) id.ns.clear();
    // The API server enforces this; local manifests do not, and a namespace such as "/2e"
    // made every node's view fail the data plane's validation (found by tests/fuzz, manifest).
    if (info->namespaced && !IsDnsLabel(id.ns)) {
      return Bad("metadata.namespace",
                 absl::StrCat("\"", id.ns,
                              "\" is not a valid namespace name (up to 63 characters [a-z0-9-], "
                              "alphanumeric at both ends)"));
    }
  }
  return id;
}

absl::StatusOr<Parsed> ParseObject(const ObjectId& id, const json& object,
                                   std::optional<FailClosed>* fail_closed) {
  const KindInfo* info = FindKind(id.kind);
  if (info == nullptr) return Bad("kind", absl::StrCat("unsupported kind \"", id.kind, "\""));
  WEFT_ASSIGN_OR_RETURN(std::string api_version, Str(object, "apiVersion", "", true));
  const std::string version_problem = info->VersionProblem(api_version);
  // Policies are never dropped for what cannot be read in them (policies.h).
  if (id.kind == "AuthorizationPolicy" || id.kind == "PeerAuthentication") {
    std::optional<FailClosed> fc;
    Parsed out;
    if (id.kind == "AuthorizationPolicy") {
      auto r = ParseAuthorizationPolicy(id, object, version_problem);
      out = std::move(r.policy);
      fc = std::move(r.fail_closed);
    } else {
      auto r = ParsePeerAuthentication(id, object, version_problem);
      out = std::move(r.policy);
      fc = std::move(r.fail_closed);
    }
    if (fail_closed != nullptr) *fail_closed = fc;
    if (fail_closed == nullptr && fc) return absl::InvalidArgumentError(fc->reason);
    return out;
  }
  if (!version_problem.empty()) {
    absl::Status bad = Bad("apiVersion", version_problem);
    if (id.kind != "NetworkPolicy" || fail_closed == nullptr) return bad;
    FailClosed fc;  // its spec's meaning is unknown: nothing of it is read
    Parsed out = NetworkPolicyFailClosed(id, json::object(), bad, &fc);
    *fail_closed = std::move(fc);
    return out;
  }
  if (id.kind == "Namespace") return ParseNamespace(object);
  if (id.kind == "Pod") return ParsePod(id, object);
  if (id.kind == "Service") return ParseService(object);
  if (id.kind == "ServiceAccount") return Parsed(ServiceAccountObj{});
  if (id.kind == "EndpointSlice") return ParseSlice(object);
  if (id.kind == "HTTPRoute" || id.kind == "GRPCRoute") {
    return ParseRouteObject(id, object, fail_closed);
  }
  if (id.kind == "ReferenceGrant") {
    WEFT_ASSIGN_OR_RETURN(ReferenceGrantObj grant, ParseReferenceGrant(object));
    return grant;
  }
  if (id.kind == "TrafficPolicy") {
    WEFT_ASSIGN_OR_RETURN(TrafficPolicyObj tp, ParseTrafficPolicy(id.ns, id.name, object));
    return tp;
  }
  absl::StatusOr<Parsed> np = ParseNetworkPolicy(object);
  if (np.ok() || fail_closed == nullptr) return np;
  FailClosed fc;
  Parsed out = NetworkPolicyFailClosed(id, object, np.status(), &fc);
  *fail_closed = std::move(fc);
  return out;
}

}  // namespace weft::cp::internal
