// Internal to weft_cp_model: AuthorizationPolicy and PeerAuthentication from their Kubernetes
// objects. Neither is ever dropped for being partly unusable: a policy weftd cannot use in
// full is enforced in a fail-closed form and reported (docs/security.md "Policies weftd cannot
// read in full", which also gives the Istio behaviour this follows):
//   - ALLOW: a rule with any part weftd cannot evaluate is dropped (it allows nothing); the
//     policy still selects its workloads, so with no usable rule it allows nothing to them. If
//     the scope is uncertain (selector or top-level field unreadable), no rule is kept at all.
//   - DENY and AUDIT: each unusable part is left out of its rule (an unusable `from` or `to`
//     entry: the rule matches any source / operation; an unusable condition: that condition
//     holds), so the rule matches more. CUSTOM is enforced as DENY of what its rules select.
//   - action or spec unreadable: a DENY of every connection in the scope.
//   - scope: an unreadable selector falls back to its matchLabels if those read (a superset of
//     what the selector selects), else to the whole namespace (mesh-wide in the root namespace),
//     which is everything such a policy could ever reach.
//   - PeerAuthentication: STRICT on every port for its scope (same scope rule).
#pragma once

#include <optional>
#include <string>

#include "controlplane/model/objects.h"

namespace weft::cp::internal {

template <typename Msg>
struct PolicyParse {
  Msg policy;  // always passes the data plane's conversion (config/model/convert.h)
  std::optional<FailClosed> fail_closed;
};

// `version_problem`: empty when the object's apiVersion is one FindKind accepts for the kind
// (security.weft.dev/v1, or Istio's security.istio.io/v1 or v1beta1: read the same way); else
// why not (the spec's meaning is then unknown and nothing of it is read).
PolicyParse<weft::config::v1::AuthorizationPolicy> ParseAuthorizationPolicy(
    const ObjectId& id, const nlohmann::json& object, std::string_view version_problem);
PolicyParse<weft::config::v1::PeerAuthentication> ParsePeerAuthentication(
    const ObjectId& id, const nlohmann::json& object, std::string_view version_problem);

}  // namespace weft::cp::internal
