#include "ztunnel/rbac/connect_deny.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "ztunnel/l7/app_protocol.h"
#include "ztunnel/rbac/authorizer.h"
#include "ztunnel/rbac/request.h"

namespace weft::ztunnel {
namespace {

constexpr uint16_t kNeverDenied[] = {15001, 15006, 15008};

bool SourceDecidable(const AuthzSource& s) {
  return !s.has_l7 && s.ip_blocks.empty() && s.not_ip_blocks.empty() &&
         s.remote_ip_blocks.empty() && s.not_remote_ip_blocks.empty();
}

bool ConditionDecidable(const AuthzCondition& c) {
  return c.kind == AuthzCondition::Kind::kSourceNamespace ||
         c.kind == AuthzCondition::Kind::kSourcePrincipal ||
         c.kind == AuthzCondition::Kind::kDestinationPort;
}

// Uses only the source identity and the destination port.
bool PolicyDecidable(const AuthorizationPolicy& p) {
  return std::all_of(p.rules.begin(), p.rules.end(), [](const AuthzRule& r) {
    return std::all_of(r.from.begin(), r.from.end(), SourceDecidable) &&
           std::none_of(r.to.begin(), r.to.end(),
                        [](const AuthzOperation& o) { return o.has_l7(); }) &&
           std::all_of(r.when.begin(), r.when.end(), ConditionDecidable);
  });
}

bool Enforced(const AuthorizationPolicy& p) {
  return !p.dry_run && p.action != AuthzAction::kAudit;
}

// Every port a rule of `policies` names: the decision is the same for all other ports.
std::set<uint16_t> NamedPorts(const std::vector<const AuthorizationPolicy*>& policies) {
  std::set<uint16_t> ports;
  for (const AuthorizationPolicy* p : policies) {
    for (const AuthzRule& r : p->rules) {
      for (const AuthzOperation& o : r.to) {
        ports.insert(o.ports.begin(), o.ports.end());
        ports.insert(o.not_ports.begin(), o.not_ports.end());
      }
      for (const AuthzCondition& c : r.when) {
        ports.insert(c.port_values.begin(), c.port_values.end());
        ports.insert(c.not_port_values.begin(), c.not_port_values.end());
      }
    }
  }
  return ports;
}

// A port no rule names and the connect program would not leave alone anyway.
uint16_t OtherPort(const std::set<uint16_t>& named) {
  for (uint32_t p = 1; p <= 65535; ++p) {
    auto port = static_cast<uint16_t>(p);
    if (!named.contains(port) && !IsNeverDeniedPort(port)) return port;
  }
  return 0;  // every port named: no port-0 entry
}

struct Verdict {
  bool deny = false;
  std::string policy, reason;
  bool operator==(const Verdict&) const = default;
};

// What the destination decides for `identity` on `port`, when the source can be certain.
struct Plan {
  std::optional<Verdict> other;       // ports no rule names
  std::map<uint16_t, Verdict> named;  // the named ports
};

enum class Scope { kLocal, kRemote };

// nullopt: the source cannot decide this workload at all.
std::optional<std::vector<const AuthorizationPolicy*>> DecidablePolicies(const ConfigSnapshot& snap,
                                                                         const Workload& w,
                                                                         Scope scope) {
  std::vector<const AuthorizationPolicy*> enforced;
  for (const AuthorizationPolicy* p : snap.PoliciesFor(w)) {
    if (!Enforced(*p)) continue;
    if (scope == Scope::kRemote && p->action != AuthzAction::kDeny) continue;
    if (!PolicyDecidable(*p)) return std::nullopt;
    enforced.push_back(p);
  }
  if (scope == Scope::kLocal) {
    if (!snap.NetworkPoliciesFor(w).empty() || NeedsHttpAuthorization(snap, w)) return std::nullopt;
  }
  return enforced;
}

Verdict Decide(const ConfigSnapshot& snap, const Workload& dst, const Workload& src, uint16_t port,
               Scope scope) {
  ConnectionInfo ci;
  ci.src_identity = src.identity();
  ci.src_ip = src.addresses.empty() ? IpAddr() : src.addresses.front();  // no rule reads it
  ci.dst = SockAddr{dst.addresses.front(), port};
  AuthzDecision d = Authorize(snap, dst, ci);
  if (d.allowed) return {};
  // Remote: only a DENY policy is certain (the destination's view may hold ALLOW policies and
  // NetworkPolicies this one lacks); its reason names it.
  if (scope == Scope::kRemote && !absl::StartsWith(d.reason, "denied by DENY policy ")) return {};
  return Verdict{true, d.policy, d.policy.empty() ? "no_allow_match" : "deny"};
}

// A destination workload the source can decide: its scope and the policies that decide it.
struct Decidable {
  Scope scope = Scope::kRemote;
  std::vector<const AuthorizationPolicy*> policies;  // empty: nothing denies
  std::set<uint16_t> named;                          // NamedPorts(policies)
  uint16_t other = 0;                                // OtherPort(named)
};

// The decisions of one compile, each worked out once: a workload is asked about by its own
// addresses and by every Service VIP it backs.
class Decisions {
 public:
  Decisions(const ConfigSnapshot& snap, std::string_view node,
            const std::set<std::string>& local_uids)
      : snap_(snap), node_(node), local_uids_(local_uids) {}

  // nullptr: the source cannot decide `dst` (see the header).
  const Decidable* For(const Workload& dst) {
    auto it = decidable_.find(dst.uid);
    if (it != decidable_.end()) return it->second ? &*it->second : nullptr;
    std::optional<Decidable> d;
    if (dst.in_mesh() && dst.running && !dst.addresses.empty()) {
      const bool local = !node_.empty() && dst.node == node_ && local_uids_.contains(dst.uid);
      const Scope scope = local ? Scope::kLocal : Scope::kRemote;
      if (auto policies = DecidablePolicies(snap_, dst, scope)) {
        d = Decidable{scope, std::move(*policies), {}, 0};
        d->named = NamedPorts(d->policies);
        d->other = OtherPort(d->named);
      }
    }
    it = decidable_.emplace(dst.uid, std::move(d)).first;
    return it->second ? &*it->second : nullptr;
  }

  // What `dst` (decidable, with policies) decides for `src` on every port: pods of one identity
  // share it.
  const Plan& PlanFor(const Workload& dst, const Decidable& d, const Workload& src) {
    auto key = std::make_pair(dst.uid, src.identity().ToString());
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    Plan plan;
    if (d.other != 0) plan.other = Decide(snap_, dst, src, d.other, d.scope);
    for (uint16_t port : d.named) {
      if (!IsNeverDeniedPort(port)) plan.named[port] = Decide(snap_, dst, src, port, d.scope);
    }
    return plans_.emplace(std::move(key), std::move(plan)).first->second;
  }

  // What `dst` certainly decides for `src` on `port` (not one of ztunnel's own ports); nullopt
  // when the source cannot decide `dst`. An allow is a Verdict without deny.
  std::optional<Verdict> At(const Workload& dst, const Workload& src, uint16_t port) {
    const Decidable* d = For(dst);
    if (!d) return std::nullopt;
    if (d->policies.empty()) return Verdict{};
    const Plan& plan = PlanFor(dst, *d, src);
    if (auto it = plan.named.find(port); it != plan.named.end()) return it->second;
    return plan.other ? *plan.other : Verdict{};
  }

 private:
  const ConfigSnapshot& snap_;
  const std::string_view node_;
  const std::set<std::string>& local_uids_;
  std::map<std::string, std::optional<Decidable>> decidable_;  // by uid
  std::map<std::pair<std::string, std::string>, Plan> plans_;  // by (uid, source identity)
};

// Adds `group` (one source, one destination address) whole, or counts it dropped.
void AddGroup(CompiledDenies& out, std::vector<DenyEntry>& group, size_t max_entries) {
  if (group.empty()) return;
  if (out.entries.size() + group.size() > max_entries) {
    ++out.dropped;
    return;
  }
  out.entries.insert(out.entries.end(), group.begin(), group.end());
}

using Sources = std::vector<std::pair<const DenySource*, const Workload*>>;

// Entries for the workloads' own addresses (the connect program sees the pod address).
void CompileWorkloads(const ConfigSnapshot& snap, const Sources& srcs, Decisions& decisions,
                      size_t max_entries, CompiledDenies& out) {
  for (const Workload& dst : snap.workloads()) {
    if (!dst.in_mesh() || !dst.running || dst.addresses.empty()) continue;
    const Decidable* d = decisions.For(dst);
    if (!d) {
      ++out.skipped;
      continue;
    }
    if (d->policies.empty()) continue;  // nothing denies (local: no ALLOW either)
    ++out.compiled;
    for (const auto& [source, src] : srcs) {
      const Plan& plan = decisions.PlanFor(dst, *d, *src);
      const bool wildcard = plan.other && plan.other->deny;
      const uint64_t netns_cookie = source->netns_cookie;  // (clang 14: no binding in a lambda)
      for (const IpAddr& addr : dst.addresses) {
        // An address that is also a Service VIP is resolved as the Service (outbound.cc): its
        // entries, if any, are the Service's.
        if (snap.FindServiceByAddress(addr)) continue;
        std::vector<DenyEntry> group;
        auto add = [&](uint16_t port, const Verdict& v) {
          group.push_back(DenyEntry{netns_cookie, addr, port, v.deny, v.policy, v.reason});
        };
        if (wildcard) {
          add(0, *plan.other);
          for (uint16_t port : kNeverDenied) add(port, Verdict{});
          for (const auto& [port, v] : plan.named) {
            if (!(v == *plan.other)) add(port, v);
          }
        } else {
          for (const auto& [port, v] : plan.named) {
            if (v.deny) add(port, v);
          }
        }
        AddGroup(out, group, max_entries);
      }
    }
  }
}

// The endpoints a connect to `svc` can be sent to: what Outbound::ResolveService picks from.
std::vector<const Workload*> Endpoints(const ConfigSnapshot& snap, const Service& svc) {
  std::vector<const Workload*> eps;
  for (const std::string& uid : svc.ready_endpoint_uids) {
    const Workload* w = snap.FindWorkloadByUid(uid);
    if (w && w->running && !w->addresses.empty()) eps.push_back(w);
  }
  return eps;
}

// Whether a connect to `svc`:`sp` stays an L4 connection to one of the endpoints at
// sp.target_port: no HTTP termination at the source (an HTTP port, or a route or traffic
// policy that may make it one), and none of ztunnel's own ports on either side.
bool VipPortDecidable(const ConfigSnapshot& snap, const Service& svc, const ServicePort& sp) {
  if (IsNeverDeniedPort(sp.port) || IsNeverDeniedPort(sp.target_port)) return false;
  if (l7::IsHttpPort(sp.app_protocol, sp.name)) return false;
  const std::string key = svc.ns + "/" + svc.name;
  return snap.RoutesForService(key).empty() && snap.TrafficPolicyFor(key, sp.port) == nullptr;
}

// Entries for Service VIPs (the connect program sees the VIP: ztunnel resolves it to an endpoint
// after the redirect): VIP:port is denied when every endpoint certainly denies the source on the
// target port, all with the same label (the one the destination would count it with, whichever
// endpoint it were sent to).
void CompileServices(const ConfigSnapshot& snap, const Sources& srcs, Decisions& decisions,
                     size_t max_entries, CompiledDenies& out) {
  for (const Service& svc : snap.services()) {
    if (svc.addresses.empty()) continue;
    const std::vector<const Workload*> eps = Endpoints(snap, svc);
    std::vector<const ServicePort*> ports;
    for (const ServicePort& sp : svc.ports) {
      // No endpoint: ztunnel refuses it itself (no_ready_endpoint), no policy decides it.
      const bool decidable = !eps.empty() && VipPortDecidable(snap, svc, sp) &&
                             std::all_of(eps.begin(), eps.end(), [&](const Workload* ep) {
                               return decisions.For(*ep) != nullptr;
                             });
      if (decidable) {
        ports.push_back(&sp);
        ++out.vip_ports_compiled;
      } else {
        ++out.vip_ports_skipped;
      }
    }
    if (ports.empty()) continue;
    for (const auto& [source, src] : srcs) {
      std::vector<std::pair<uint16_t, Verdict>> denied;  // by service port
      for (const ServicePort* sp : ports) {
        std::optional<Verdict> common;
        for (const Workload* ep : eps) {
          std::optional<Verdict> v = decisions.At(*ep, *src, sp->target_port);
          if (!v || !v->deny || (common && !(*v == *common))) {
            common.reset();
            break;
          }
          common = std::move(v);
        }
        if (common) denied.emplace_back(sp->port, std::move(*common));
      }
      for (const IpAddr& vip : svc.addresses) {
        std::vector<DenyEntry> group;
        for (const auto& [port, v] : denied)
          group.push_back(DenyEntry{source->netns_cookie, vip, port, true, v.policy, v.reason});
        AddGroup(out, group, max_entries);
      }
    }
  }
}

}  // namespace

bool IsNeverDeniedPort(uint16_t port) {
  return std::find(std::begin(kNeverDenied), std::end(kNeverDenied), port) !=
         std::end(kNeverDenied);
}

CompiledDenies CompileConnectDenies(const ConfigSnapshot& snap,
                                    const std::vector<DenySource>& sources, std::string_view node,
                                    const std::set<std::string>& local_uids, size_t max_entries) {
  CompiledDenies out;
  Sources srcs;
  for (const DenySource& s : sources) {
    const Workload* w = snap.FindWorkloadByUid(s.uid);
    if (w && s.netns_cookie != 0) srcs.emplace_back(&s, w);
  }
  if (srcs.empty()) return out;
  Decisions decisions(snap, node, local_uids);
  CompileWorkloads(snap, srcs, decisions, max_entries, out);
  CompileServices(snap, srcs, decisions, max_entries, out);
  return out;
}

}  // namespace weft::ztunnel
