// L4 authorization, evaluated at the destination. First Kubernetes NetworkPolicy (weftd's
// translation, see config.proto): a workload selected by any NetworkPolicy is denied unless one
// of their ingress rules admits (src_ip, dst.port); this is ANDed with what follows. Then
// Istio AuthorizationPolicy semantics:
//   1. any matching DENY policy denies;
//   2. if no ALLOW policy applies to the workload, allow;
//   3. if any ALLOW policy matches, allow;
//   4. otherwise deny.
// AUDIT policies and dry-run policies never change the decision; their matches are reported.
// L7-only attributes (methods, paths, hosts, request principals, request.* conditions) cannot
// be evaluated at L4 and fail closed: an ALLOW rule that uses them never matches; a DENY rule
// that uses them matches on its L4 attributes alone. Per-request evaluation, with the same rule
// evaluator, is AuthorizeRequest() in request.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/net.h"
#include "common/spiffe.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

struct ConnectionInfo {
  std::optional<SpiffeId> src_identity;  // nullopt for plaintext connections
  IpAddr src_ip;
  SockAddr dst;  // the destination workload address and port the client asked for
};

struct AuthzDecision {
  bool allowed = true;
  // The deciding policy "ns/name"; empty when no policy decided (default allow / no match).
  std::string policy;
  // Human-readable, one of:
  //   "denied by DENY policy prod/deny-db"
  //   "denied by NetworkPolicy: no ingress rule of 1 policy (prod/db-ingress) admits 10.0.0.5
  //       to port 5432"  (policy = the first NetworkPolicy)
  //   "no ALLOW policy matched (2 ALLOW policies apply)"  (plus "; 1 rule uses L7 attributes
  //       and cannot match at L4" inside the parentheses when that is why)
  //   "allowed by ALLOW policy prod/allow-web"
  //   "allowed: no ALLOW policy applies"
  std::string reason;
  std::vector<std::string> audited;  // AUDIT policies that matched, "ns/name", config order
  // Dry-run policies, config order: "ns/name: would deny" (DENY matched), "ns/name: would
  // allow" / "ns/name: would not allow (no rule matched)" (ALLOW), "ns/name: would audit".
  // Dry-run ALLOW policies do not count as applying ALLOW policies.
  std::vector<std::string> dry_run;
  // AuthorizeRequest only: the request was refused before any AuthorizationPolicy was consulted
  // because its target cannot be normalised (reason "invalid request: ..."). Istio's Envoy
  // answers these itself with 400 (404 for a target that is not a path), not 403.
  bool bad_request = false;
};

// Thread-safe (reads only). Matching follows Istio: from/to/when are ANDed, entries within
// from (and within to) are ORed, the set fields of one source/operation are ANDed, and a field
// matches when any value matches and no not-value matches. A connection without identity never
// matches principals/namespaces (or source.principal/source.namespace values) and always passes
// their not-forms. ipBlocks and remoteIpBlocks both match src_ip at L4; ports match dst.port.
AuthzDecision Authorize(const ConfigSnapshot& snap, const Workload& dst_workload,
                        const ConnectionInfo& conn);

// PeerAuthentication check for a plaintext connection arriving on 15006: ok unless the
// effective mode for (dst_workload, port) is STRICT.
bool PlaintextAllowed(const ConfigSnapshot& snap, const Workload& dst_workload, uint16_t port);

}  // namespace weft::ztunnel
