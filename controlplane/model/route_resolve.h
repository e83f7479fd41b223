// Internal to weft_cp_model: routes and TrafficPolicies resolved against the cluster (Services,
// ReferenceGrants): per-parent status conditions, and the weft.config.v1 messages the nodes get.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/model/objects.h"
#include "controlplane/source/route_status.h"

namespace weft::cp::internal {

struct RouteEnv {
  // The Service "<ns>/<name>", or nullptr.
  std::function<const ServiceObj*(const std::string& key)> service;
  // The ReferenceGrants of a namespace.
  std::function<std::vector<const ReferenceGrantObj*>(const std::string& ns)> grants;
};

struct ResolvedRoute {
  RouteStatus status;                               // one entry per Service parentRef
  std::vector<weft::config::v1::HttpRoute> routes;  // one per Accepted Service parent
};

// Gateway API semantics for the mesh (GAMMA): parents are Services (other parent kinds are
// skipped); Accepted is False with NoMatchingParent when the Service or its port does not
// exist, UnsupportedValue when the spec is invalid or uses what Weft does not implement;
// ResolvedRefs is False with InvalidKind (not a Service), RefNotPermitted (another namespace
// without a ReferenceGrant there) or BackendNotFound (no such Service or port). Unresolved
// backendRefs stay in the route with `invalid` set (their share is answered 500); unresolved
// mirrors are dropped; a rule without backendRefs or a redirect goes to the parent Service.
ResolvedRoute ResolveRoute(std::string_view ns, std::string_view name, const RouteObj& r,
                           const RouteEnv& env);

// The policy with its sectionName resolved to a port; an error (the policy is not sent) when
// the sectionName names no port of the Service.
absl::StatusOr<weft::config::v1::TrafficPolicy> ResolveTrafficPolicy(const TrafficPolicyObj& tp,
                                                                     const RouteEnv& env);

}  // namespace weft::cp::internal
