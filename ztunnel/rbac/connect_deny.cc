#include "ztunnel/rbac/connect_deny.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
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

}  // namespace

bool IsNeverDeniedPort(uint16_t port) {
  return std::find(std::begin(kNeverDenied), std::end(kNeverDenied), port) !=
         std::end(kNeverDenied);
}

CompiledDenies CompileConnectDenies(const ConfigSnapshot& snap,
                                    const std::vector<DenySource>& sources, std::string_view node,
                                    const std::set<std::string>& local_uids, size_t max_entries) {
  CompiledDenies out;
  std::vector<std::pair<const DenySource*, const Workload*>> srcs;
  for (const DenySource& s : sources) {
    const Workload* w = snap.FindWorkloadByUid(s.uid);
    if (w && s.netns_cookie != 0) srcs.emplace_back(&s, w);
  }
  if (srcs.empty()) return out;

  for (const Workload& dst : snap.workloads()) {
    if (!dst.in_mesh() || !dst.running || dst.addresses.empty()) continue;
    const bool local = !node.empty() && dst.node == node && local_uids.contains(dst.uid);
    const Scope scope = local ? Scope::kLocal : Scope::kRemote;
    auto policies = DecidablePolicies(snap, dst, scope);
    if (!policies) {
      ++out.skipped;
      continue;
    }
    if (policies->empty()) continue;  // nothing denies (local: no ALLOW either)
    ++out.compiled;
    const std::set<uint16_t> named = NamedPorts(*policies);
    const uint16_t other = OtherPort(named);

    std::map<std::string, Plan> plans;  // by source identity: pods of one identity share it
    for (const auto& [source, src] : srcs) {
      const std::string id = src->identity().ToString();
      auto it = plans.find(id);
      if (it == plans.end()) {
        Plan plan;
        if (other != 0) plan.other = Decide(snap, dst, *src, other, scope);
        for (uint16_t port : named) {
          if (!IsNeverDeniedPort(port)) plan.named[port] = Decide(snap, dst, *src, port, scope);
        }
        it = plans.emplace(id, std::move(plan)).first;
      }
      const Plan& plan = it->second;
      const bool wildcard = plan.other && plan.other->deny;
      const uint64_t netns_cookie = source->netns_cookie;  // (clang 14: no binding in a lambda)
      for (const IpAddr& addr : dst.addresses) {
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
        if (group.empty()) continue;
        if (out.entries.size() + group.size() > max_entries) {
          ++out.dropped;
          continue;
        }
        out.entries.insert(out.entries.end(), group.begin(), group.end());
      }
    }
  }
  return out;
}

}  // namespace weft::ztunnel
