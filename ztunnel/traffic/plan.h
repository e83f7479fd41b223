// One request's traffic plan (issue 15): the route, fault, redirect, filter, backend, mirror,
// timeout and retry decisions of ztunnel/traffic applied in Envoy's order, so that the
// source-side proxy makes one call per request and then only carries the plan out:
//   1. route selection (Router): no route for the Service -> forward to the Service itself;
//      routes but no match -> local 404 "NR";
//   2. fault injection (the TrafficPolicy of the Service and port; rule > route > policy):
//      a delay first ("DI"), then an abort -> local reply with the fault's status ("FI"; a gRPC
//      abort is 200 with grpc-status);
//   3. RequestRedirect -> local reply with Location;
//   4. RequestHeaderModifier, URLRewrite on the forwarded request;
//   5. backendRefs: weighted choice; none or an invalid one -> local 500; the backend's own
//      request header modifier;
//   6. RequestMirror decisions; timeouts.request; the effective retries (retry.h).
// Response-side modifiers (the rule's, then the backend's) are returned for the proxy to apply.
//
// Pure: randomness from `draw` (called a few times per request), no clock. Thread-safe as the
// Router is; the plan's pointers live as long as the Router.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ztunnel/traffic/retry.h"
#include "ztunnel/traffic/router.h"

namespace weft::ztunnel::traffic {

struct PlanInput {
  std::string_view client_namespace;
  std::string_view method;
  std::string_view path;  // origin-form path + query, normalised
  std::string_view authority;
  Headers headers;  // moved into the plan, modified there
};

struct RequestPlan {
  enum class Action { kForward, kLocalReply };
  Action action = Action::kForward;
  RouteSelection selection;
  const config::TrafficPolicy* policy = nullptr;  // the Service's (and port's), or null

  uint64_t delay_ms = 0;  // injected delay before anything else ("DI"); 0: none

  // kLocalReply: `status` (and `location` for a redirect; `grpc_status` >= 0 for a gRPC abort,
  // sent as 200 with that grpc-status) with Envoy's response flag ("NR", "FI", or "" for a
  // redirect and for the 500 of a rule without a usable backend).
  uint16_t status = 0;
  int32_t grpc_status = -1;
  std::string location;
  std::string response_flags;

  // kForward: where and what.
  std::string backend_service;  // "<namespace>/<name>": a backendRef's, or the called Service
  uint16_t backend_port = 0;    // service port
  std::string authority, path;
  Headers headers;
  std::vector<const config::HttpRequestMirror*> mirrors;  // those drawn for this request
  uint64_t request_timeout_ms = 0;                        // timeouts.request; 0: none
  RetrySpec retry;
  // Applied in this order to the response (either may be null).
  const config::HttpHeaderModifier* rule_response_headers = nullptr;
  const config::HttpHeaderModifier* backend_response_headers = nullptr;
};

RequestPlan PlanRequest(const Router& router, const config::Service& service, uint16_t port,
                        PlanInput in, const std::function<uint64_t()>& draw);

}  // namespace weft::ztunnel::traffic
