// Gateway API route filters and backend choice as pure functions over one request (issue 15):
// header modifiers, URLRewrite, RequestRedirect, weighted backendRefs and RequestMirror.
// No I/O; randomness comes in as a uniform 64-bit `draw` the caller takes from its RNG, so tests
// are deterministic.
//
// Requests are in the shape of ztunnel/rbac/request.h's HttpRequestAttributes: header names
// lower-case; `path` is the origin-form path with its query. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/model/types.h"
#include "ztunnel/traffic/router.h"

namespace weft::ztunnel::traffic {

// RequestHeaderModifier / ResponseHeaderModifier: `remove` drops every value of each name, then
// `set` replaces every value of its name with one (adding it when absent), then `add` appends one
// more value (a new header line, as Envoy does). Names compare case-insensitively (the modifier's
// names are lower-case; `headers` names are expected lower-case too).
void ApplyHeaderModifier(const config::HttpHeaderModifier& m, Headers* headers);

// The path (with its query kept) after a path modifier. `matched` is the rule match the request
// took (ReplacePrefixMatch replaces its PathPrefix). ReplacePrefixMatch follows the spec's table:
// the prefix and the replacement are compared without trailing '/', the rest of the path keeps
// its own slash, and an empty result is "/" (prefix "/foo", replacement "/xyz": "/foo/bar" ->
// "/xyz/bar", "/foo" -> "/xyz", "/foo/" -> "/xyz/"; replacement "" or "/": "/foo/bar" -> "/bar",
// "/foo" -> "/"). kNone returns `path` unchanged.
std::string ModifyPath(const config::HttpPathModifier& m, const config::HttpRouteMatch& matched,
                       std::string_view path);

// URLRewrite: the hostname replaces the whole authority (Envoy's host_rewrite_literal), the path
// modifier rewrites `path`.
void ApplyUrlRewrite(const config::HttpUrlRewrite& rw, const config::HttpRouteMatch& matched,
                     std::string* authority, std::string* path);

// RequestRedirect: the response to send. Location = scheme "://" host [":" port] path, where
// scheme is the filter's or the request's; host the filter's hostname or the request's host
// (without its port); port the filter's, else the well-known port of the filter's scheme when it
// sets one (http 80, https 443), else `listener_port` (the Service port the client called); the
// port is left out for http:80 and https:443. The path is the filter's modifier applied to the
// request's path (query kept).
struct Redirect {
  uint16_t status = 302;
  std::string location;
};
Redirect BuildRedirect(const config::HttpRequestRedirect& r, const config::HttpRouteMatch& matched,
                       std::string_view request_scheme, std::string_view authority,
                       std::string_view path, uint16_t listener_port);

// backendRefs: a weighted random choice. A weight-0 backend is never chosen; no backends or all
// weights 0: kNoBackend (the spec: answer 500); an `invalid` backend chosen by its weight:
// kInvalidBackend (answer 500; its share of the traffic is never sent elsewhere).
struct BackendChoice {
  enum class Kind { kBackend, kNoBackend, kInvalidBackend };
  Kind kind = Kind::kNoBackend;
  const config::HttpBackendRef* backend = nullptr;  // set for kBackend and kInvalidBackend
  size_t index = 0;
};
BackendChoice ChooseBackend(const std::vector<config::HttpBackendRef>& backends, uint64_t draw);

// True with probability `percentage` / 100 over uniform draws (0: never, 100: always).
bool Chance(double percentage, uint64_t draw);

// RequestMirror: whether this request is mirrored (its `percent`).
inline bool ShouldMirror(const config::HttpRequestMirror& m, uint64_t draw) {
  return Chance(m.percent, draw);
}

}  // namespace weft::ztunnel::traffic
