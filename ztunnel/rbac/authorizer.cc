#include "ztunnel/rbac/authorizer.h"

#include <algorithm>
#include <optional>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "ztunnel/rbac/request.h"

namespace weft::ztunnel {
namespace {

template <typename T, typename Pred>
bool Any(const std::vector<T>& v, Pred pred) {
  return std::any_of(v.begin(), v.end(), pred);
}

// A request prepared once for all policies.
struct Request {
  const HttpRequestAttributes& attrs;
  RequestTarget target;
  std::string_view authority;  // the absolute-form target's authority, else the Host/:authority
  std::string_view host;       // authority without its port
  std::string path_header;     // :path as Envoy's RBAC filter sees it: normalised path + query

  explicit Request(const HttpRequestAttributes& r)
      : attrs(r),
        target(NormalizeRequestTarget(r.method, r.path)),
        authority(target.authority.empty() ? std::string_view(r.authority)
                                           : std::string_view(target.authority)),
        host(AuthorityHost(authority)),
        path_header(target.kind == RequestTarget::Kind::kPath ? target.path + target.query
                                                              : std::string()) {}
  Request(const Request&) = delete;  // `authority` may point into `target`
  Request& operator=(const Request&) = delete;
};

// Everything a rule can look at. Precomputed per connection (and per request at L7).
struct Attributes {
  const ConnectionInfo& conn;
  bool has_identity;
  std::string principal;
  std::string_view ns;
  const Request* req;  // nullptr at L4

  Attributes(const ConnectionInfo& c, const Request* r)
      : conn(c),
        has_identity(c.src_identity.has_value()),
        principal(has_identity ? c.src_identity->Principal() : std::string()),
        ns(has_identity ? std::string_view(c.src_identity->ns) : std::string_view()),
        req(r) {}
};

// How a rule fails closed, following Istio's TCP filter generation. ALLOW rules are narrowed: a
// rule that needs an attribute that cannot be evaluated is dropped (the policy allows less), and
// an attribute that can be read more than one way must hold for every reading. DENY and AUDIT
// rules are widened: only the parts that cannot be evaluated are dropped (the policy matches
// more), and an attribute holds when it holds for any reading.
enum class Bias { kNarrow, kWide };

// A field matches when the attribute is present and some value matches (or no values are set),
// and no not-value matches. An absent attribute never matches values and always passes
// not-values (Istio: principals do not match a plaintext request, notPrincipals do; a missing
// header matches no values and passes notValues).
template <typename Hit>
bool StringFieldMatches(const std::vector<StringMatch>& values,
                        const std::vector<StringMatch>& not_values, bool present, Hit hit) {
  if (!values.empty() && (!present || !Any(values, hit))) return false;
  return !present || !Any(not_values, hit);
}

bool IdentityFieldMatches(const std::vector<StringMatch>& values,
                          const std::vector<StringMatch>& not_values, const Attributes& a,
                          std::string_view attr) {
  return StringFieldMatches(values, not_values, a.has_identity,
                            [&](const StringMatch& m) { return m.Matches(attr); });
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

// Istio matches hosts case-insensitively (HostMatcher sets ignore_case).
bool MatchesIgnoreCase(const StringMatch& m, std::string_view s) {
  switch (m.kind) {
    case StringMatch::Kind::kAny:
      return !s.empty();
    case StringMatch::Kind::kPrefix:
      return absl::StartsWithIgnoreCase(Av(s), m.value);
    case StringMatch::Kind::kSuffix:
      return absl::EndsWithIgnoreCase(Av(s), m.value);
    case StringMatch::Kind::kExact:
      return absl::EqualsIgnoreCase(Av(s), m.value);
  }
  return false;
}

bool SourceMatches(const AuthzSource& s, const Attributes& a) {
  const IpAddr& src = a.conn.src_ip;
  return IdentityFieldMatches(s.principals, s.not_principals, a, a.principal) &&
         IdentityFieldMatches(s.namespaces, s.not_namespaces, a, a.ns) &&
         IpFieldMatches(s.ip_blocks, s.not_ip_blocks, src) &&
         // The remote address is the peer address: X-Forwarded-For is not trusted.
         IpFieldMatches(s.remote_ip_blocks, s.not_remote_ip_blocks, src);
}

// methods: as received, case-sensitive. paths: the normalised path without query; a CONNECT
// has none. hosts: case-insensitive, against the authority as received and without its port,
// so "h" behaves as Istio's recommended pair ["h", "h:*"].
bool RequestOperationMatches(const AuthzOperation& op, const Request& r) {
  auto method_hit = [&](const StringMatch& m) { return m.Matches(r.attrs.method); };
  auto path_hit = [&](const StringMatch& m) { return m.Matches(r.target.path); };
  auto host_hit = [&](const StringMatch& m) {
    return MatchesIgnoreCase(m, r.authority) || MatchesIgnoreCase(m, r.host);
  };
  const bool has_path = r.target.kind == RequestTarget::Kind::kPath;
  return StringFieldMatches(op.methods, op.not_methods, !r.attrs.method.empty(), method_hit) &&
         StringFieldMatches(op.paths, op.not_paths, has_path, path_hit) &&
         StringFieldMatches(op.hosts, op.not_hosts, !r.authority.empty(), host_hit);
}

bool OperationMatches(const AuthzOperation& op, const Attributes& a) {
  if (!PortFieldMatches(op.ports, op.not_ports, a.conn.dst.port)) return false;
  // At L4 the L7 parts are only reached by widened rules, which drop them.
  return a.req == nullptr || RequestOperationMatches(op, *a.req);
}

// The values of header `name` in the request; pseudo-headers and Host come from the request
// line so that HTTP/1.1 and HTTP/2 read the same.
std::vector<std::string_view> HeaderValues(const Request& r, std::string_view name) {
  std::vector<std::string_view> out;
  if (name == ":authority" || name == "host") {
    if (!r.authority.empty()) out.push_back(r.authority);
  } else if (name == ":method") {
    out.push_back(r.attrs.method);
  } else if (name == ":path") {
    if (!r.path_header.empty()) out.push_back(r.path_header);
  } else {
    for (const auto& [n, v] : r.attrs.headers) {
      if (absl::EqualsIgnoreCase(n, Av(name))) out.push_back(v);
    }
  }
  return out;
}

// request.headers[NAME]: Istio's header matcher ("*" means present, even empty). A repeated
// header is read as each of its values and as Envoy reads it, the values joined by ','; see the
// Bias for how the readings combine.
bool HeaderConditionMatches(const AuthzCondition& c, const Request& r, Bias bias) {
  std::vector<std::string_view> values = HeaderValues(r, c.header_name);
  if (values.empty()) return c.match_values.empty();
  std::vector<std::string> readings(values.begin(), values.end());
  if (values.size() > 1) {
    std::string joined;
    for (std::string_view v : values) absl::StrAppend(&joined, joined.empty() ? "" : ",", Av(v));
    readings.push_back(std::move(joined));
  }
  auto holds = [&](const std::string& v) {
    return StringFieldMatches(c.match_values, c.not_match_values, true, [&](const StringMatch& m) {
      return m.kind == StringMatch::Kind::kAny || m.Matches(v);
    });
  };
  return bias == Bias::kNarrow ? std::all_of(readings.begin(), readings.end(), holds)
                               : std::any_of(readings.begin(), readings.end(), holds);
}

bool ConditionMatches(const AuthzCondition& c, const Attributes& a, Bias bias) {
  switch (c.kind) {
    case AuthzCondition::Kind::kSourceIp:
      return IpFieldMatches(c.ip_values, c.not_ip_values, a.conn.src_ip);
    case AuthzCondition::Kind::kDestinationIp:
      return IpFieldMatches(c.ip_values, c.not_ip_values, a.conn.dst.ip);
    case AuthzCondition::Kind::kDestinationPort:
      return PortFieldMatches(c.port_values, c.not_port_values, a.conn.dst.port);
    case AuthzCondition::Kind::kSourceNamespace:
      return IdentityFieldMatches(c.match_values, c.not_match_values, a, a.ns);
    case AuthzCondition::Kind::kSourcePrincipal:
      return IdentityFieldMatches(c.match_values, c.not_match_values, a, a.principal);
    case AuthzCondition::Kind::kL7:
      // Callers pass only evaluable conditions: a request header with a request.
      return a.req != nullptr && !c.header_name.empty() && HeaderConditionMatches(c, *a.req, bias);
  }
  return false;
}

bool ConditionEvaluable(const AuthzCondition& c, const Attributes& a) {
  return !c.has_l7() || (a.req != nullptr && !c.header_name.empty());
}

// True when the rule needs an attribute that cannot be evaluated here: at L4 any L7 attribute;
// per request only request principals and request.* keys other than request.headers[NAME].
bool RuleHasUnevaluable(const AuthzRule& r, const Attributes& a) {
  return Any(r.from, [](const AuthzSource& s) { return s.has_l7; }) ||
         (a.req == nullptr && Any(r.to, [](const AuthzOperation& o) { return o.has_l7(); })) ||
         Any(r.when, [&](const AuthzCondition& c) { return !ConditionEvaluable(c, a); });
}

bool RuleMatches(const AuthzRule& r, const Attributes& a, Bias bias) {
  if (bias == Bias::kNarrow && RuleHasUnevaluable(r, a)) return false;
  // AND across from/to/when; OR within from and within to; every condition must hold.
  if (!r.from.empty() && !Any(r.from, [&](const AuthzSource& s) { return SourceMatches(s, a); })) {
    return false;
  }
  if (!r.to.empty() &&
      !Any(r.to, [&](const AuthzOperation& o) { return OperationMatches(o, a); })) {
    return false;
  }
  return std::all_of(r.when.begin(), r.when.end(), [&](const AuthzCondition& c) {
    return !ConditionEvaluable(c, a) || ConditionMatches(c, a, bias);
  });
}

Bias BiasFor(const AuthorizationPolicy& p) {
  return p.action == AuthzAction::kAllow ? Bias::kNarrow : Bias::kWide;
}

// A policy without rules matches nothing; a rule without from/to/when matches everything.
bool PolicyMatches(const AuthorizationPolicy& p, const Attributes& a) {
  return Any(p.rules, [&](const AuthzRule& r) { return RuleMatches(r, a, BiasFor(p)); });
}

// NetworkPolicy is ANDed with AuthorizationPolicy: an isolated workload needs a matching
// NetworkPolicy rule before AuthorizationPolicies are even consulted.
std::optional<AuthzDecision> NetworkPolicyDenial(const ConfigSnapshot& snap,
                                                 const Workload& dst_workload,
                                                 const ConnectionInfo& conn) {
  auto nps = snap.NetworkPoliciesFor(dst_workload);
  if (nps.empty()) return std::nullopt;
  const bool admitted = std::any_of(nps.begin(), nps.end(), [&](const NetworkPolicy* np) {
    return std::any_of(np->ingress.begin(), np->ingress.end(),
                       [&](const NetworkRule& r) { return r.Matches(conn.src_ip, conn.dst.port); });
  });
  if (admitted) return std::nullopt;
  AuthzDecision d;
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

// Istio's order over the AuthorizationPolicies that apply: DENY, then ALLOW; AUDIT and dry-run
// policies are reported only.
AuthzDecision DecideByPolicies(const ConfigSnapshot& snap, const Workload& dst_workload,
                               const Attributes& a) {
  AuthzDecision d;
  const AuthorizationPolicy* deny = nullptr;
  const AuthorizationPolicy* allow = nullptr;
  int allow_policies = 0;
  int unevaluable_allow_rules = 0;
  for (const AuthorizationPolicy* p : snap.PoliciesFor(dst_workload)) {
    const bool matched = PolicyMatches(*p, a);
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
        unevaluable_allow_rules += static_cast<int>(
            std::count_if(p->rules.begin(), p->rules.end(),
                          [&](const AuthzRule& r) { return RuleHasUnevaluable(r, a); }));
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
    if (unevaluable_allow_rules > 0) {
      absl::StrAppend(&d.reason, "; ", unevaluable_allow_rules,
                      unevaluable_allow_rules == 1 ? " rule uses" : " rules use",
                      a.req == nullptr ? " L7 attributes and cannot match at L4"
                                       : " requestPrincipals or request.auth.* and cannot match");
    }
    absl::StrAppend(&d.reason, ")");
  }
  return d;
}

}  // namespace

AuthzDecision Authorize(const ConfigSnapshot& snap, const Workload& dst_workload,
                        const ConnectionInfo& conn) {
  if (auto denied = NetworkPolicyDenial(snap, dst_workload, conn)) return *std::move(denied);
  return DecideByPolicies(snap, dst_workload, Attributes(conn, nullptr));
}

AuthzDecision AuthorizeRequest(const ConfigSnapshot& snap, const Workload& dst_workload,
                               const ConnectionInfo& conn, const HttpRequestAttributes& req,
                               RequestTarget* target) {
  if (auto denied = NetworkPolicyDenial(snap, dst_workload, conn)) return *std::move(denied);
  Request request(req);
  AuthzDecision d;
  if (request.target.kind == RequestTarget::Kind::kInvalid) {
    d.allowed = false;
    d.bad_request = true;
    d.reason = absl::StrCat("invalid request: ", request.target.error);
  } else {
    d = DecideByPolicies(snap, dst_workload, Attributes(conn, &request));
  }
  if (target) *target = std::move(request.target);  // `request` is not used after this
  return d;
}

bool NeedsHttpAuthorization(const ConfigSnapshot& snap, const Workload& dst_workload) {
  // An ALLOW rule that uses request principals or request.auth.* never matches, so its other
  // L7 attributes do not matter; every other rule with an evaluable L7 attribute does.
  const ConnectionInfo none;
  const HttpRequestAttributes empty;
  const Request request(empty);
  const Attributes a(none, &request);
  for (const AuthorizationPolicy* p : snap.PoliciesFor(dst_workload)) {
    for (const AuthzRule& r : p->rules) {
      if (BiasFor(*p) == Bias::kNarrow && RuleHasUnevaluable(r, a)) continue;
      if (Any(r.to, [](const AuthzOperation& o) { return o.has_l7(); }) ||
          Any(r.when, [](const AuthzCondition& c) { return !c.header_name.empty(); })) {
        return true;
      }
    }
  }
  return false;
}

bool PlaintextAllowed(const ConfigSnapshot& snap, const Workload& dst_workload, uint16_t port) {
  return snap.EffectiveMtls(dst_workload, port) != MtlsMode::kStrict;
}

}  // namespace weft::ztunnel
