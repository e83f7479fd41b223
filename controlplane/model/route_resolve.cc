#include "controlplane/model/route_resolve.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "config/model/convert.h"

namespace weft::cp::internal {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;

// One reference's problem, if any.
struct RefProblem {
  std::string reason;  // empty: resolved
  std::string message;
};

std::string PortList(const ServiceObj& svc) {
  std::vector<std::string> ports;
  for (const ServicePortObj& p : svc.ports) {
    ports.push_back(p.name.empty() ? absl::StrCat(p.port)
                                   : absl::StrCat(p.port, " (", p.name, ")"));
  }
  return ports.empty() ? "none" : absl::StrJoin(ports, ", ");
}

const ServicePortObj* FindPort(const ServiceObj& svc, uint16_t port, std::string_view name) {
  for (const ServicePortObj& p : svc.ports) {
    if (p.protocol != "TCP") continue;
    if ((port == 0 || p.port == port) && (name.empty() || p.name == name)) return &p;
  }
  return nullptr;
}

RefProblem CheckRef(std::string_view route_kind, std::string_view route_ns, const RouteRef& ref,
                    const RouteEnv& env) {
  const std::string where = ref.path.empty() ? "" : absl::StrCat(ref.path, ": ");
  if (!ref.IsService()) {
    return {"InvalidKind", absl::StrCat(where, "kind ", ref.kind, " of group \"", ref.group,
                                        "\" is not supported as a backend (only core Services)")};
  }
  const std::string key = absl::StrCat(ref.ns, "/", ref.name);
  if (ref.ns != route_ns) {
    bool permitted = false;
    for (const ReferenceGrantObj* g : env.grants(ref.ns)) {
      permitted =
          permitted || g->Permits(kGatewayGroup, route_kind, route_ns, "", "Service", ref.name);
    }
    if (!permitted) {
      return {"RefNotPermitted", absl::StrCat(where, "Service ", key,
                                              " is in another namespace and no "
                                              "ReferenceGrant in namespace ",
                                              ref.ns, " allows ", Av(route_kind), "s of namespace ",
                                              Av(route_ns), " to refer to it")};
    }
  }
  const ServiceObj* svc = env.service(key);
  if (svc == nullptr) {
    return {"BackendNotFound", absl::StrCat(where, "Service ", key, " does not exist")};
  }
  if (FindPort(*svc, ref.port, "") == nullptr) {
    return {"BackendNotFound", absl::StrCat(where, "Service ", key, " has no TCP port ", ref.port,
                                            " (its ports: ", PortList(*svc), ")")};
  }
  return {};
}

json ParentRefJson(const RouteRef& p) {
  json j = {{"group", p.group}, {"kind", p.kind}, {"namespace", p.ns}, {"name", p.name}};
  if (!p.section_name.empty()) j["sectionName"] = p.section_name;
  if (p.port != 0) j["port"] = p.port;
  return j;
}

// Accepted for a Service parent: the port it attaches to (0: every port), or the condition.
RouteCondition AcceptParent(std::string_view route_ns, const RouteObj& r, const RouteRef& p,
                            const RouteEnv& env, uint16_t* port) {
  if (!r.invalid.empty()) return {"Accepted", "False", "UnsupportedValue", r.invalid};
  if (!r.unsupported.empty()) return {"Accepted", "False", "UnsupportedValue", r.unsupported};
  const std::string key = absl::StrCat(p.ns, "/", p.name);
  const ServiceObj* svc = env.service(key);
  if (svc == nullptr) {
    return {"Accepted", "False", "NoMatchingParent",
            absl::StrCat("Service ", key, " does not exist")};
  }
  *port = p.port;
  if (p.port != 0 || !p.section_name.empty()) {
    const ServicePortObj* sp = FindPort(*svc, p.port, p.section_name);
    if (sp == nullptr) {
      return {"Accepted", "False", "NoMatchingParent",
              absl::StrCat("Service ", key, " has no TCP port ",
                           p.port != 0 ? absl::StrCat(p.port) : "",
                           p.port != 0 && !p.section_name.empty() ? " " : "",
                           p.section_name.empty() ? "" : absl::StrCat("named ", p.section_name),
                           " (its ports: ", PortList(*svc), ")")};
    }
    *port = sp->port;
  }
  return {"Accepted", "True", "Accepted",
          absl::StrCat("attached to Service ", key,
                       *port != 0 ? absl::StrCat(" port ", *port) : " (every port)",
                       p.ns == route_ns
                           ? " (producer route: applies to every client)"
                           : absl::StrCat(" (consumer route: applies to clients in namespace ",
                                          Av(route_ns), ")"))};
}

pb::HttpRoute Translate(std::string_view ns, std::string_view name, const RouteObj& r,
                        const RouteRef& parent, uint16_t port,
                        const std::vector<RefProblem>& problems) {
  pb::HttpRoute out = r.route;
  out.set_name(std::string(name));
  out.set_namespace_(std::string(ns));
  out.set_parent_service(absl::StrCat(parent.ns, "/", parent.name));
  out.set_parent_port(port);
  std::vector<std::pair<int, int>> dropped_mirrors;
  for (size_t i = 0; i < r.refs.size(); ++i) {
    if (problems[i].reason.empty()) continue;
    const RouteBackend& b = r.refs[i];
    if (b.backend >= 0) {
      out.mutable_rules(b.rule)->mutable_backends(b.backend)->set_invalid(true);
    } else {
      dropped_mirrors.emplace_back(b.rule, b.filter);
    }
  }
  std::sort(dropped_mirrors.rbegin(), dropped_mirrors.rend());
  for (const auto& [rule, filter] : dropped_mirrors) {
    auto* filters = out.mutable_rules(rule)->mutable_filters();
    filters->erase(filters->begin() + filter);
  }
  for (pb::HttpRouteRule& rule : *out.mutable_rules()) {
    const bool redirect =
        std::any_of(rule.filters().begin(), rule.filters().end(),
                    [](const pb::HttpRouteFilter& f) { return f.has_request_redirect(); });
    if (rule.backends_size() == 0 && !redirect) {
      pb::HttpBackendRef* b = rule.add_backends();
      b->set_service(out.parent_service());
      b->set_port(port);
      b->set_weight(1);
    }
  }
  return out;
}

}  // namespace

ResolvedRoute ResolveRoute(std::string_view ns, std::string_view name, const RouteObj& r,
                           const RouteEnv& env) {
  ResolvedRoute out;
  out.status.kind = r.kind;
  out.status.ns = std::string(ns);
  out.status.name = std::string(name);
  out.status.generation = r.generation;
  std::vector<RefProblem> problems;
  RouteCondition resolved{"ResolvedRefs", "True", "ResolvedRefs", "all references are resolved"};
  std::vector<std::string> messages;
  for (const RouteBackend& b : r.refs) {
    problems.push_back(CheckRef(r.kind, ns, b.ref, env));
    if (problems.back().reason.empty()) continue;
    if (resolved.status == "True") resolved = {"ResolvedRefs", "False", problems.back().reason, ""};
    messages.push_back(problems.back().message);
  }
  if (!messages.empty()) {
    resolved.message = absl::StrCat(absl::StrJoin(messages, "; "),
                                    " (requests for an unresolved backendRef are answered 500)");
  }
  for (const RouteRef& p : r.parents) {
    if (!p.IsService()) continue;
    RouteParentStatus ps;
    ps.parent_ref = ParentRefJson(p);
    uint16_t port = 0;
    RouteCondition accepted = AcceptParent(ns, r, p, env, &port);
    ps.conditions.push_back(accepted);
    if (r.invalid.empty()) ps.conditions.push_back(resolved);
    out.status.parents.push_back(std::move(ps));
    if (accepted.status != "True") continue;
    pb::HttpRoute route = Translate(ns, name, r, p, port, problems);
    // The data plane's own check (config/model): what it would refuse is not sent.
    if (auto dp = weft::config::HttpRouteFromProto(route); !dp.ok()) {
      out.status.parents.back().conditions[0] = {
          "Accepted", "False", "UnsupportedValue",
          absl::StrCat("the data plane cannot use it: ", dp.status().message())};
      continue;
    }
    out.routes.push_back(std::move(route));
  }
  return out;
}

absl::StatusOr<pb::TrafficPolicy> ResolveTrafficPolicy(const TrafficPolicyObj& tp,
                                                       const RouteEnv& env) {
  pb::TrafficPolicy out = tp.policy;
  WEFT_RETURN_IF_ERROR(weft::config::TrafficPolicyFromProto(out).status());
  if (tp.section_name.empty()) return out;
  const ServiceObj* svc = env.service(out.target_service());
  if (svc == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("spec.targetRefs[0]: Service ", out.target_service(),
                     " does not exist (its sectionName cannot be resolved)"));
  }
  const ServicePortObj* sp = FindPort(*svc, 0, tp.section_name);
  if (sp == nullptr) {
    return absl::NotFoundError(absl::StrCat("spec.targetRefs[0].sectionName: Service ",
                                            out.target_service(), " has no TCP port named ",
                                            tp.section_name, " (its ports: ", PortList(*svc), ")"));
  }
  out.set_target_port(sp->port);
  return out;
}

}  // namespace weft::cp::internal
