#include "ztunnel/rbac/authorizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace weft::ztunnel {
namespace {

// How L7-only attributes are treated, following Istio's TCP filter generation: for ALLOW a rule
// that needs them is dropped (the policy allows less); for DENY and AUDIT only the L7 parts are
// dropped (the policy matches more).
enum class L7Mode { kRuleNeverMatches, kIgnoreL7Parts };

template <typename T, typename Pred>
bool Any(const std::vector<T>& v, Pred pred) {
  return std::any_of(v.begin(), v.end(), pred);
}

// Precomputed per connection: the peer identity's principal and namespace.
struct Peer {
  const ConnectionInfo& conn;
  bool has_identity;
  std::string principal;
  std::string_view ns;

  explicit Peer(const ConnectionInfo& c)
      : conn(c),
        has_identity(c.src_identity.has_value()),
        principal(has_identity ? c.src_identity->Principal() : std::string()),
        ns(has_identity ? std::string_view(c.src_identity->ns) : std::string_view()) {}
};

// Identity fields: a connection without identity never matches `values` and always passes
// `not_values` (Istio: principals does not match a plaintext request, notPrincipals does).
bool IdentityFieldMatches(const std::vector<StringMatch>& values,
                          const std::vector<StringMatch>& not_values, const Peer& peer,
                          std::string_view attr) {
  auto hit = [&](const StringMatch& m) { return m.Matches(attr); };
  if (!values.empty() && (!peer.has_identity || !Any(values, hit))) return false;
  if (peer.has_identity && Any(not_values, hit)) return false;
  return true;
}

bool IpFieldMatches(const std::vector<Cidr>& values, const std::vector<Cidr>& not_values,
                    const IpAddr& ip) {
  auto hit = [&](const Cidr& c) { return c.Contains(ip); };
  if (!values.empty() && !Any(values, hit)) return false;
  return !Any(not_values, hit);
}

bool PortFieldMatches(const std::vector<uint16_t>& values, const std::vector<uint16_t>& not_values,
                      uint16_t port) {
  auto hit = [&](uint16_t p) { return p == port; };
  if (!values.empty() && !Any(values, hit)) return false;
  return !Any(not_values, hit);
}

bool SourceMatches(const AuthzSource& s, const Peer& peer) {
  const IpAddr& src = peer.conn.src_ip;
  return IdentityFieldMatches(s.principals, s.not_principals, peer, peer.principal) &&
         IdentityFieldMatches(s.namespaces, s.not_namespaces, peer, peer.ns) &&
         IpFieldMatches(s.ip_blocks, s.not_ip_blocks, src) &&
         // At L4 the remote address is the peer address: there is no X-Forwarded-For.
         IpFieldMatches(s.remote_ip_blocks, s.not_remote_ip_blocks, src);
}

bool OperationMatches(const AuthzOperation& op, const Peer& peer) {
  return PortFieldMatches(op.ports, op.not_ports, peer.conn.dst.port);
}

bool ConditionMatches(const AuthzCondition& c, const Peer& peer) {
  switch (c.kind) {
    case AuthzCondition::Kind::kSourceIp:
      return IpFieldMatches(c.ip_values, c.not_ip_values, peer.conn.src_ip);
    case AuthzCondition::Kind::kDestinationIp:
      return IpFieldMatches(c.ip_values, c.not_ip_values, peer.conn.dst.ip);
    case AuthzCondition::Kind::kDestinationPort:
      return PortFieldMatches(c.port_values, c.not_port_values, peer.conn.dst.port);
    case AuthzCondition::Kind::kSourceNamespace:
      return IdentityFieldMatches(c.match_values, c.not_match_values, peer, peer.ns);
    case AuthzCondition::Kind::kSourcePrincipal:
      return IdentityFieldMatches(c.match_values, c.not_match_values, peer, peer.principal);
    case AuthzCondition::Kind::kL7:
      break;
  }
  // Only reached for L7 conditions, which callers filter out first.
  return false;
}

bool RuleUsesL7(const AuthzRule& r) {
  return Any(r.from, [](const AuthzSource& s) { return s.has_l7; }) ||
         Any(r.to, [](const AuthzOperation& o) { return o.has_l7(); }) ||
         Any(r.when, [](const AuthzCondition& c) { return c.has_l7(); });
}

bool RuleMatches(const AuthzRule& r, const Peer& peer, L7Mode mode) {
  if (mode == L7Mode::kRuleNeverMatches && RuleUsesL7(r)) return false;
  // AND across from/to/when; OR within from and within to; every condition must hold.
  if (!r.from.empty() &&
      !Any(r.from, [&](const AuthzSource& s) { return SourceMatches(s, peer); })) {
    return false;
  }
  if (!r.to.empty() &&
      !Any(r.to, [&](const AuthzOperation& o) { return OperationMatches(o, peer); })) {
    return false;
  }
  return std::all_of(r.when.begin(), r.when.end(), [&](const AuthzCondition& c) {
    return c.has_l7() || ConditionMatches(c, peer);
  });
}

// A policy without rules matches nothing; a rule without from/to/when matches everything.
bool PolicyMatches(const AuthorizationPolicy& p, const Peer& peer) {
  L7Mode mode =
      p.action == AuthzAction::kAllow ? L7Mode::kRuleNeverMatches : L7Mode::kIgnoreL7Parts;
  return Any(p.rules, [&](const AuthzRule& r) { return RuleMatches(r, peer, mode); });
}

}  // namespace

AuthzDecision Authorize(const ConfigSnapshot& snap, const Workload& dst_workload,
                        const ConnectionInfo& conn) {
  AuthzDecision d;
  const Peer peer(conn);
  // NetworkPolicy is ANDed with AuthorizationPolicy: an isolated workload needs a matching
  // NetworkPolicy rule before AuthorizationPolicies are even consulted.
  if (auto nps = snap.NetworkPoliciesFor(dst_workload); !nps.empty()) {
    const bool admitted = std::any_of(nps.begin(), nps.end(), [&](const NetworkPolicy* np) {
      return std::any_of(np->ingress.begin(), np->ingress.end(), [&](const NetworkRule& r) {
        return r.Matches(conn.src_ip, conn.dst.port);
      });
    });
    if (!admitted) {
      d.allowed = false;
      d.policy = nps.front()->key();
      d.reason = absl::StrCat("denied by NetworkPolicy: no ingress rule of ", nps.size(),
                              nps.size() == 1 ? " policy (" : " policies (");
      for (size_t i = 0; i < nps.size(); ++i) {
        absl::StrAppend(&d.reason, i == 0 ? "" : ", ", nps[i]->key());
      }
      absl::StrAppend(&d.reason, ") admits ", conn.src_ip.ToString(), " to port ", conn.dst.port);
      return d;
    }
  }
  const AuthorizationPolicy* deny = nullptr;
  const AuthorizationPolicy* allow = nullptr;
  int allow_policies = 0;
  int l7_allow_rules = 0;
  for (const AuthorizationPolicy* p : snap.PoliciesFor(dst_workload)) {
    const bool matched = PolicyMatches(*p, peer);
    if (p->dry_run) {
      switch (p->action) {
        case AuthzAction::kDeny:
          if (matched) d.dry_run.push_back(absl::StrCat(p->key(), ": would deny"));
          break;
        case AuthzAction::kAllow:
          d.dry_run.push_back(absl::StrCat(
              p->key(), matched ? ": would allow" : ": would not allow (no rule matched)"));
          break;
        case AuthzAction::kAudit:
          if (matched) d.dry_run.push_back(absl::StrCat(p->key(), ": would audit"));
          break;
      }
      continue;
    }
    switch (p->action) {
      case AuthzAction::kDeny:
        if (matched && deny == nullptr) deny = p;
        break;
      case AuthzAction::kAllow:
        ++allow_policies;
        if (matched && allow == nullptr) allow = p;
        l7_allow_rules +=
            static_cast<int>(std::count_if(p->rules.begin(), p->rules.end(), RuleUsesL7));
        break;
      case AuthzAction::kAudit:
        if (matched) d.audited.push_back(p->key());
        break;
    }
  }

  if (deny != nullptr) {
    d.allowed = false;
    d.policy = deny->key();
    d.reason = absl::StrCat("denied by DENY policy ", d.policy);
  } else if (allow_policies == 0) {
    d.allowed = true;
    d.reason = "allowed: no ALLOW policy applies";
  } else if (allow != nullptr) {
    d.allowed = true;
    d.policy = allow->key();
    d.reason = absl::StrCat("allowed by ALLOW policy ", d.policy);
  } else {
    d.allowed = false;
    d.reason = absl::StrCat("no ALLOW policy matched (", allow_policies, " ALLOW ",
                            allow_policies == 1 ? "policy applies" : "policies apply");
    if (l7_allow_rules > 0) {
      absl::StrAppend(&d.reason, "; ", l7_allow_rules,
                      l7_allow_rules == 1 ? " rule uses" : " rules use",
                      " L7 attributes and cannot match at L4");
    }
    absl::StrAppend(&d.reason, ")");
  }
  return d;
}

bool PlaintextAllowed(const ConfigSnapshot& snap, const Workload& dst_workload, uint16_t port) {
  return snap.EffectiveMtls(dst_workload, port) != MtlsMode::kStrict;
}

}  // namespace weft::ztunnel
