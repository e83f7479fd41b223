// Internal to weft_cp_model: Gateway API routes for the mesh (GAMMA: HTTPRoute and GRPCRoute of
// gateway.networking.k8s.io whose parentRefs name a Service), ReferenceGrant, and Weft's
// TrafficPolicy (networking.weft.dev/v1), parsed from their Kubernetes objects with the spec's
// field names, defaults and validation (the CRDs' OpenAPI and CEL rules, plus what the API server
// cannot check: RE2 regular expressions). docs/traffic.md is the user's view.
//
// A route is never rejected for its spec: what the spec does not allow, or what Weft does not
// implement, is kept in RouteObj::invalid / ::unsupported, so that weftd can say so in each
// Service parent's `Accepted` condition (False, UnsupportedValue) and apply nothing of it. Only a
// route whose parentRefs cannot be read (there is nobody to tell) is an error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "weft/config/v1/config.pb.h"

namespace weft::cp::internal {

inline constexpr std::string_view kGatewayGroup = "gateway.networking.k8s.io";

// A parentRef, backendRef or targetRef as written, with the spec's defaults applied.
struct RouteRef {
  std::string group, kind, ns, name, section_name;
  uint16_t port = 0;  // 0: not given
  std::string path;   // field path, for messages ("spec.rules[0].backendRefs[1]")
  bool IsService() const { return group.empty() && kind == "Service"; }
  bool operator==(const RouteRef&) const = default;
};

// A backendRef (rules[rule].backends[backend]) or a RequestMirror's backendRef
// (rules[rule].filters[filter]), resolved per parent by the model.
struct RouteBackend {
  RouteRef ref;
  int rule = 0;
  int backend = -1;  // >= 0: a backendRef
  int filter = -1;   // >= 0: a RequestMirror filter of the rule
};

struct RouteObj {
  std::string kind;  // "HTTPRoute" or "GRPCRoute"
  int64_t generation = 0;
  std::vector<RouteRef> parents;
  // "<field path>: <problem>" when the spec is not valid Gateway API (as the CRD's validation
  // would say) / uses what Weft does not implement; empty otherwise.
  std::string invalid;
  std::string unsupported;
  // kind, hostnames, rules (backend services "<ns>/<name>", weights defaulted, GRPCRoute matches
  // compiled into path matches) and creation_timestamp_ms; the model fills name, namespace and
  // the parent, marks unresolved backends invalid and fills empty backends with the parent.
  weft::config::v1::HttpRoute route;
  std::vector<RouteBackend> refs;
};

struct ReferenceGrantObj {
  struct From {
    std::string group, kind, ns;
  };
  struct To {
    std::string group, kind, name;  // name empty: every object of the kind
  };
  std::vector<From> from;
  std::vector<To> to;
  // Whether a `from_kind` of `from_ns` may refer to the object `to_name` (of this grant's
  // namespace).
  bool Permits(std::string_view from_group, std::string_view from_kind, std::string_view from_ns,
               std::string_view to_group, std::string_view to_kind, std::string_view to_name) const;
};

struct TrafficPolicyObj {
  weft::config::v1::TrafficPolicy policy;  // name/namespace/target_service set; defaults filled
  std::string section_name;                // targetRefs[0].sectionName (a Service port name)
};

// `kind` is "HTTPRoute" or "GRPCRoute"; `ns` the route's namespace.
absl::StatusOr<RouteObj> ParseRoute(std::string_view kind, std::string_view ns,
                                    const nlohmann::json& object);
absl::StatusOr<ReferenceGrantObj> ParseReferenceGrant(const nlohmann::json& object);
absl::StatusOr<TrafficPolicyObj> ParseTrafficPolicy(std::string_view ns, std::string_view name,
                                                    const nlohmann::json& object);

// A Gateway API Duration (GEP-2257: "1h", "1.5s" is not allowed, "1m30s", "500ms") or, for
// TrafficPolicy, the same; the value in milliseconds.
absl::StatusOr<uint64_t> ParseDurationMs(const nlohmann::json& v, std::string_view path);

}  // namespace weft::cp::internal
