// Per-request (L7) authorization, evaluated by the destination's ztunnel on every HTTP request it
// parses (issue 14). The same rule evaluator as the L4 Authorize() (authorizer.h), with the
// request's attributes available; see docs/security.md "L7 authorization semantics (issue 14)".
//
// Thread-safe (reads only). Use: on a workload for which NeedsHttpAuthorization() is true, the
// inbound side parses HTTP on every port and calls AuthorizeRequest() for every request, instead of
// Authorize() for the connection (Authorize() would apply a DENY rule's L4 parts to the whole
// connection). Policy changes apply to the next request: pass the snapshot current when the request
// arrives.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ztunnel/rbac/authorizer.h"

namespace weft::ztunnel {

struct HttpRequestAttributes {
  std::string method;     // as received, e.g. "GET"
  std::string authority;  // Host header (HTTP/1.1) or :authority (HTTP/2), as received, may
                          // carry ":port"; empty when the request has none
  std::string path;  // request-target as received (origin-form "/a/b?x=1"; may be absolute-form
                     // "http://h/a" for HTTP/1.1 proxies, or "*" for OPTIONS)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case, in received
                                                             // order, repeated names repeated
  // Set by a source-side gate (never by authorization): fields the codec appends to the request
  // it forwards, names lower-case (trace context it created: traceparent, x-request-id).
  std::vector<std::pair<std::string, std::string>> add_headers;
  // Set by a source-side gate that changed `authority` or `headers` (a route's filters): the
  // codec then forwards a head rebuilt from method, path, authority and headers instead of the
  // one received. Framing fields (content-length, transfer-encoding) and hop-by-hop ones stay as
  // received whatever `headers` says.
  bool rewrite_head = false;
};

// The request-target as Istio's default path normalisation (meshConfig.pathNormalization BASE)
// presents it to the authorization filter. The proxy should forward `path` + `query` (Envoy
// forwards the normalised path, so the application sees what was authorised).
struct RequestTarget {
  enum class Kind {
    kPath,     // origin-form or absolute-form: `path` is set
    kNoPath,   // CONNECT to an authority: no path attribute (paths never match, notPaths pass)
    kInvalid,  // refused: `error` says why
  };
  Kind kind = Kind::kInvalid;
  std::string path;       // normalised, without query and fragment, always starts with '/'
  std::string query;      // "?..." as received (not normalised), or empty
  std::string authority;  // the authority of an absolute-form target, else empty
  std::string error;
};
RequestTarget NormalizeRequestTarget(std::string_view method, std::string_view target);

// Full Istio-order decision for one request on a connection: NetworkPolicy as at L4, then the
// request-target check below, then DENY, then ALLOW, with AUDIT/dry-run reporting. Evaluates
// every L7 attribute: to.operation methods/notMethods, paths/notPaths, hosts/notHosts,
// ports/notPorts, and `when` keys request.headers[NAME], plus all L4 keys. requestPrincipals and
// request.auth.* stay not evaluable and fail closed as at L4 (an ALLOW rule using them never
// matches; a DENY or AUDIT rule using them matches on its other attributes).
//
// A request whose target cannot be normalised (see NormalizeRequestTarget) is denied before any
// AuthorizationPolicy is consulted, with `bad_request` set: Istio's Envoy answers such requests
// itself (400, or 404 for a target that is not a path) and they never reach its RBAC filter.
// Same AuthzDecision and reason strings as Authorize(), except that the ALLOW "no match" reason
// names the rules that cannot match per request ("...; 1 rule uses request principals or
// request.auth.* and cannot match").
//
// `target`, when not null, receives the request-target as normalised for the decision (done
// once per request: the proxy forwards its `path` + `query` for an origin-form target); it is
// left as it was when a NetworkPolicy refused the connection before the target was looked at.
AuthzDecision AuthorizeRequest(const ConfigSnapshot& snap, const Workload& dst_workload,
                               const ConnectionInfo& conn, const HttpRequestAttributes& req,
                               RequestTarget* target = nullptr);

// True when any policy (including dry-run/audit) that applies to dst_workload has an L7
// attribute ztunnel can evaluate per request (methods, paths, hosts or their not-forms, or a
// request.headers[NAME] condition): the inbound side must then parse HTTP on every port of that
// workload.
bool NeedsHttpAuthorization(const ConfigSnapshot& snap, const Workload& dst_workload);

// BASE normalisation of a path (no query, no fragment): Envoy's normalize_path, which is
// Chromium's URL path canonicaliser. nullopt when it rejects the path (a NUL byte, raw or %00).
std::optional<std::string> NormalizePathBase(std::string_view path);

// The host part of an authority: "h:8080" -> "h", "[::1]:80" -> "[::1]", "h" -> "h".
std::string_view AuthorityHost(std::string_view authority);

}  // namespace weft::ztunnel
