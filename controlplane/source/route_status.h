// What weftd says about each Gateway API route it read (HTTPRoute, GRPCRoute): the route's
// `status.parents[]` as the spec defines it, one entry per Service parentRef, computed by the
// model and written back by the Kubernetes source (status subresource) or shown by weftctl
// status. Parent kinds other than Service belong to other controllers and are not listed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace weft::cp {

// The controllerName weftd writes in status.parents[].
inline constexpr char kRouteControllerName[] = "weft.dev/weftd";

struct RouteCondition {
  std::string type;    // "Accepted", "ResolvedRefs"
  std::string status;  // "True" / "False"
  std::string reason;  // Accepted, NoMatchingParent, UnsupportedValue, ResolvedRefs,
                       // BackendNotFound, InvalidKind, RefNotPermitted
  std::string message;
  bool operator==(const RouteCondition&) const = default;
};

struct RouteParentStatus {
  nlohmann::json parent_ref;  // as the spec writes it: group, kind, namespace, name[, port,
                              // sectionName]
  std::vector<RouteCondition> conditions;
  bool operator==(const RouteParentStatus&) const = default;
};

struct RouteStatus {
  std::string kind;  // HTTPRoute or GRPCRoute
  std::string ns, name;
  int64_t generation = 0;  // metadata.generation the conditions were computed for
  std::vector<RouteParentStatus> parents;
  bool operator==(const RouteStatus&) const = default;
};

}  // namespace weft::cp
