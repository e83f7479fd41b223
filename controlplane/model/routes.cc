#include "controlplane/model/routes.h"

#include <re2/re2.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/net.h"
#include "common/status.h"
#include "controlplane/model/json_fields.h"

namespace weft::cp::internal {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;

// The spec's limits (the CRDs' maxItems).
constexpr size_t kMaxParentRefs = 32, kMaxHostnames = 16, kMaxRules = 16, kMaxMatches = 64,
                 kMaxTotalMatches = 128, kMaxFilters = 16, kMaxBackendRefs = 16,
                 kMaxHeaderMatches = 16, kMaxModifierEntries = 16;
constexpr int64_t kMaxWeight = 1000000;

// Where spec problems go while a route is parsed: `invalid` (not valid Gateway API) is returned
// as an error by the parsers; `unsupported` (valid, but Weft does not implement it) is noted and
// parsing goes on, so that an invalid part later in the spec still wins.
struct RouteCtx {
  std::string kind;  // HTTPRoute or GRPCRoute
  std::string ns;
  std::string unsupported;
  std::vector<RouteBackend>* refs;
  int rule = 0;
  void Unsupported(std::string_view path, std::string_view what) {
    if (unsupported.empty()) unsupported = absl::StrCat(Av(path), ": ", Av(what));
  }
  bool grpc() const { return kind == "GRPCRoute"; }
};

bool FullMatch(std::string_view s, const char* pattern) {
  const RE2 re(pattern);
  return RE2::FullMatch(s, re);
}

// HTTPHeaderName (also query parameter names): RFC 7230 token.
absl::Status CheckHeaderName(const std::string& name, std::string_view path) {
  if (name.empty() || name.size() > 256 || !FullMatch(name, "[A-Za-z0-9!#$%&'*+\\-.^_`|~]+")) {
    return Bad(path, absl::StrCat("\"", name,
                                  "\" is not a valid header name (1-256 characters of an RFC 7230 "
                                  "token: letters, digits and !#$%&'*+-.^_`|~)"));
  }
  return absl::OkStatus();
}

absl::Status CheckRegex(const std::string& re, std::string_view path) {
  const RE2 compiled(re, RE2::Quiet);
  if (!compiled.ok()) {
    return Bad(path, absl::StrCat("\"", re,
                                  "\" is not a valid RE2 regular expression: ", compiled.error()));
  }
  return absl::OkStatus();
}

// Hostname (wildcard allowed) or PreciseHostname: RFC 1123, lower case, not an IP.
absl::Status CheckHostname(const std::string& h, std::string_view path, bool wildcard_ok) {
  const char* pattern =
      wildcard_ok ? "(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
                  : "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
  if (h.empty() || h.size() > 253 || !FullMatch(h, pattern) || IpAddr::Parse(h).ok()) {
    return Bad(path,
               absl::StrCat("\"", h, "\" is not a valid ",
                            wildcard_ok ? "hostname (lower-case RFC 1123, optionally "
                                          "\"*.\"-prefixed, not an IP)"
                                        : "precise hostname (lower-case RFC 1123, not an IP)"));
  }
  return absl::OkStatus();
}

// A list field: nullptr when absent; an error when longer than `max`.
absl::StatusOr<const json*> List(const json& parent, std::string_view key, std::string_view path,
                                 size_t max) {
  WEFT_ASSIGN_OR_RETURN(const json* arr, Arr(parent, key, path));
  if (arr != nullptr && arr->size() > max) {
    return Bad(Join(path, key),
               absl::StrCat("has ", arr->size(), " entries; at most ", max, " are allowed"));
  }
  return arr;
}

absl::StatusOr<const json*> Item(const json& list, size_t i, const std::string& path) {
  const json& v = list[i];
  if (!v.is_object()) return WrongType(path, "a mapping", v);
  return &v;
}

// ---- references

// A parentRef: group defaults to gateway.networking.k8s.io and kind to Gateway (the spec's
// defaults), namespace to the route's.
absl::StatusOr<RouteRef> ParseParentRef(const json& p, const std::string& path,
                                        std::string_view route_ns) {
  WEFT_RETURN_IF_ERROR(
      OnlyKnownFields(p, path, {"group", "kind", "namespace", "name", "sectionName", "port"}));
  RouteRef r;
  r.path = path;
  const json* group = Get(p, "group");
  WEFT_ASSIGN_OR_RETURN(r.group, Str(p, "group", path));
  if (group == nullptr) r.group = std::string(kGatewayGroup);
  WEFT_ASSIGN_OR_RETURN(r.kind, Str(p, "kind", path));
  if (r.kind.empty()) r.kind = "Gateway";
  WEFT_ASSIGN_OR_RETURN(r.ns, Str(p, "namespace", path));
  if (r.ns.empty()) r.ns = std::string(route_ns);
  if (!IsDnsLabel(r.ns)) return Bad(Join(path, "namespace"), "is not a valid namespace name");
  WEFT_ASSIGN_OR_RETURN(r.name, Str(p, "name", path, true));
  WEFT_ASSIGN_OR_RETURN(r.section_name, Str(p, "sectionName", path));
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> port, Int(p, "port", path, 1, 65535));
  r.port = static_cast<uint16_t>(port.value_or(0));
  return r;
}

// A backendRef (or a RequestMirror's): group "" and kind Service by default; a Service needs a
// port. Resolution (existence, ReferenceGrant) is the model's, per parent.
absl::StatusOr<RouteRef> ParseBackendObjectRef(const json& b, const std::string& path,
                                               std::string_view route_ns) {
  RouteRef r;
  r.path = path;
  WEFT_ASSIGN_OR_RETURN(r.group, Str(b, "group", path));
  WEFT_ASSIGN_OR_RETURN(r.kind, Str(b, "kind", path));
  if (r.kind.empty()) r.kind = "Service";
  WEFT_ASSIGN_OR_RETURN(r.name, Str(b, "name", path, true));
  WEFT_ASSIGN_OR_RETURN(r.ns, Str(b, "namespace", path));
  if (r.ns.empty()) r.ns = std::string(route_ns);
  if (!IsDnsLabel(r.ns)) return Bad(Join(path, "namespace"), "is not a valid namespace name");
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> port, Int(b, "port", path, 1, 65535));
  r.port = static_cast<uint16_t>(port.value_or(0));
  if (r.IsService() && r.port == 0) {
    return Bad(Join(path, "port"), "is required when referring to a Service");
  }
  return r;
}

// ---- filters

absl::StatusOr<pb::HttpHeaderModifier> ParseHeaderModifier(const json& m, const std::string& path) {
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(m, path, {"set", "add", "remove"}));
  pb::HttpHeaderModifier out;
  for (const char* op : {"set", "add"}) {
    WEFT_ASSIGN_OR_RETURN(const json* list, List(m, op, path, kMaxModifierEntries));
    std::set<std::string> seen;
    for (size_t i = 0; list != nullptr && i < list->size(); ++i) {
      const std::string hp = At(Join(path, op), i);
      WEFT_ASSIGN_OR_RETURN(const json* h, Item(*list, i, hp));
      WEFT_RETURN_IF_ERROR(OnlyKnownFields(*h, hp, {"name", "value"}));
      pb::HttpHeader* header = std::string(op) == "set" ? out.add_set() : out.add_add();
      WEFT_ASSIGN_OR_RETURN(*header->mutable_name(), Str(*h, "name", hp, true));
      WEFT_RETURN_IF_ERROR(CheckHeaderName(header->name(), Join(hp, "name")));
      WEFT_ASSIGN_OR_RETURN(*header->mutable_value(), Str(*h, "value", hp, true));
      if (header->value().size() > 4096) return Bad(Join(hp, "value"), "is over 4096 characters");
      if (!seen.insert(absl::AsciiStrToLower(header->name())).second) {
        return Bad(Join(hp, "name"),
                   absl::StrCat("header \"", header->name(),
                                "\" is listed twice (names are case-insensitive)"));
      }
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* remove, List(m, "remove", path, kMaxModifierEntries));
  std::set<std::string> seen;
  for (size_t i = 0; remove != nullptr && i < remove->size(); ++i) {
    const std::string rp = At(Join(path, "remove"), i);
    if (!(*remove)[i].is_string()) return WrongType(rp, "a header name", (*remove)[i]);
    const std::string name = (*remove)[i].get<std::string>();
    WEFT_RETURN_IF_ERROR(CheckHeaderName(name, rp));
    if (!seen.insert(absl::AsciiStrToLower(name)).second) {
      return Bad(rp, absl::StrCat("header \"", name, "\" is listed twice"));
    }
    out.add_remove(name);
  }
  return out;
}

absl::StatusOr<pb::HttpPathModifier> ParsePathModifier(const json& m, const std::string& path) {
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(m, path, {"type", "replaceFullPath", "replacePrefixMatch"}));
  pb::HttpPathModifier out;
  WEFT_ASSIGN_OR_RETURN(std::string type, Str(m, "type", path, true));
  const json* full = Get(m, "replaceFullPath");
  const json* prefix = Get(m, "replacePrefixMatch");
  std::string_view field;
  if (type == "ReplaceFullPath") {
    out.set_type(pb::HttpPathModifier::REPLACE_FULL_PATH);
    field = "replaceFullPath";
    if (prefix != nullptr)
      return Bad(Join(path, "replacePrefixMatch"), "must not be set for type ReplaceFullPath");
  } else if (type == "ReplacePrefixMatch") {
    out.set_type(pb::HttpPathModifier::REPLACE_PREFIX_MATCH);
    field = "replacePrefixMatch";
    if (full != nullptr)
      return Bad(Join(path, "replaceFullPath"), "must not be set for type ReplacePrefixMatch");
  } else {
    return Bad(Join(path, "type"), absl::StrCat("unknown type \"", type,
                                                "\" (want ReplaceFullPath or ReplacePrefixMatch)"));
  }
  WEFT_ASSIGN_OR_RETURN(*out.mutable_value(), Str(m, field, path));
  if (Get(m, field) == nullptr) {
    return Bad(Join(path, field), absl::StrCat("is required for type ", type));
  }
  if (out.value().size() > 1024) return Bad(Join(path, field), "is over 1024 characters");
  if (!out.value().empty() && out.value().front() != '/') {
    return Bad(Join(path, field), absl::StrCat("\"", out.value(), "\" must start with '/'"));
  }
  return out;
}

absl::StatusOr<pb::HttpRequestRedirect> ParseRedirect(const json& r, const std::string& path) {
  WEFT_RETURN_IF_ERROR(
      OnlyKnownFields(r, path, {"scheme", "hostname", "path", "port", "statusCode"}));
  pb::HttpRequestRedirect out;
  WEFT_ASSIGN_OR_RETURN(*out.mutable_scheme(), Str(r, "scheme", path));
  if (!out.scheme().empty() && out.scheme() != "http" && out.scheme() != "https") {
    return Bad(Join(path, "scheme"),
               absl::StrCat("\"", out.scheme(), "\" is not supported (want http or https)"));
  }
  WEFT_ASSIGN_OR_RETURN(*out.mutable_hostname(), Str(r, "hostname", path));
  if (!out.hostname().empty()) {
    WEFT_RETURN_IF_ERROR(CheckHostname(out.hostname(), Join(path, "hostname"), false));
  }
  WEFT_ASSIGN_OR_RETURN(const json* p, Obj(r, "path", path));
  if (p != nullptr) {
    WEFT_ASSIGN_OR_RETURN(*out.mutable_path(), ParsePathModifier(*p, Join(path, "path")));
  }
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> port, Int(r, "port", path, 1, 65535));
  out.set_port(static_cast<uint32_t>(port.value_or(0)));
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> code, Int(r, "statusCode", path, 0, 999));
  out.set_status_code(static_cast<uint32_t>(code.value_or(302)));
  static const std::set<uint32_t> kCodes = {301, 302, 303, 307, 308};
  if (!kCodes.contains(out.status_code())) {
    return Bad(Join(path, "statusCode"),
               absl::StrCat(out.status_code(),
                            " is not a redirect status (want 301, 302, 303, "
                            "307 or 308)"));
  }
  return out;
}

absl::StatusOr<pb::HttpUrlRewrite> ParseUrlRewrite(const json& r, const std::string& path) {
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(r, path, {"hostname", "path"}));
  pb::HttpUrlRewrite out;
  WEFT_ASSIGN_OR_RETURN(*out.mutable_hostname(), Str(r, "hostname", path));
  if (!out.hostname().empty()) {
    WEFT_RETURN_IF_ERROR(CheckHostname(out.hostname(), Join(path, "hostname"), false));
  }
  WEFT_ASSIGN_OR_RETURN(const json* p, Obj(r, "path", path));
  if (p != nullptr) {
    WEFT_ASSIGN_OR_RETURN(*out.mutable_path(), ParsePathModifier(*p, Join(path, "path")));
  }
  return out;
}

// RequestMirror: percent (0-100) or fraction (numerator/denominator, default 100), not both;
// neither: every request (100).
absl::StatusOr<pb::HttpRequestMirror> ParseMirror(const json& m, const std::string& path,
                                                  RouteCtx& ctx, int filter_index) {
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(m, path, {"backendRef", "percent", "fraction"}));
  pb::HttpRequestMirror out;
  WEFT_ASSIGN_OR_RETURN(const json* b, Obj(m, "backendRef", path, true));
  const std::string bp = Join(path, "backendRef");
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(*b, bp, {"group", "kind", "name", "namespace", "port"}));
  WEFT_ASSIGN_OR_RETURN(RouteRef ref, ParseBackendObjectRef(*b, bp, ctx.ns));
  out.set_service(absl::StrCat(ref.ns, "/", ref.name));
  out.set_port(ref.port);
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> percent, Int(m, "percent", path, 0, 100));
  WEFT_ASSIGN_OR_RETURN(const json* fraction, Obj(m, "fraction", path));
  if (percent && fraction != nullptr) {
    return Bad(path, "percent and fraction cannot both be set");
  }
  out.set_percent(static_cast<uint32_t>(percent.value_or(100)));
  if (fraction != nullptr) {
    const std::string fp = Join(path, "fraction");
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*fraction, fp, {"numerator", "denominator"}));
    WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> num,
                          Int(*fraction, "numerator", fp, 0, INT32_MAX));
    if (!num) return Bad(Join(fp, "numerator"), "is required");
    WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> den,
                          Int(*fraction, "denominator", fp, 1, INT32_MAX));
    if (*num > den.value_or(100)) {
      return Bad(fp, "numerator must not be greater than denominator");
    }
    out.set_percent(
        static_cast<uint32_t>((*num * 100 + den.value_or(100) / 2) / den.value_or(100)));
  }
  ctx.refs->push_back(RouteBackend{std::move(ref), ctx.rule, -1, filter_index});
  return out;
}

// One filter; `backend_level`: a backendRef's filters (Weft implements the header modifiers
// there). `type` receives the filter's type.
absl::StatusOr<pb::HttpRouteFilter> ParseFilter(const json& f, const std::string& path,
                                                RouteCtx& ctx, bool backend_level, int index,
                                                std::string* type) {
  WEFT_RETURN_IF_ERROR(
      OnlyKnownFields(f, path,
                      {"type", "requestHeaderModifier", "responseHeaderModifier", "requestRedirect",
                       "urlRewrite", "requestMirror", "extensionRef", "cors", "externalAuth"}));
  WEFT_ASSIGN_OR_RETURN(*type, Str(f, "type", path, true));
  struct Known {
    const char* type;
    const char* field;
    bool http_only;
  };
  static constexpr Known kKnown[] = {
      {"RequestHeaderModifier", "requestHeaderModifier", false},
      {"ResponseHeaderModifier", "responseHeaderModifier", false},
      {"RequestRedirect", "requestRedirect", true},
      {"URLRewrite", "urlRewrite", true},
      {"RequestMirror", "requestMirror", false},
      {"ExtensionRef", "extensionRef", false},
      {"CORS", "cors", true},
      {"ExternalAuth", "externalAuth", true},
  };
  const Known* known = nullptr;
  for (const Known& k : kKnown) {
    if (*type == k.type && !(k.http_only && ctx.grpc())) known = &k;
  }
  if (known == nullptr) {
    return Bad(Join(path, "type"),
               absl::StrCat("unknown filter type \"", *type, "\" for a ", ctx.kind));
  }
  // Filter type/field agreement (the spec's CEL rules): exactly the type's own field is set.
  for (const Known& k : kKnown) {
    const bool set = Get(f, k.field) != nullptr;
    if (k.field == std::string_view(known->field) && !set) {
      return Bad(Join(path, k.field), absl::StrCat("is required for filter type ", *type));
    }
    if (k.field != std::string_view(known->field) && set) {
      return Bad(Join(path, k.field), absl::StrCat("must not be set for filter type ", *type));
    }
  }
  pb::HttpRouteFilter out;
  const std::string fp = Join(path, known->field);
  const json& body = f.at(known->field);
  if (!body.is_object()) return WrongType(fp, "a mapping", body);
  const bool header_modifier =
      *type == "RequestHeaderModifier" || *type == "ResponseHeaderModifier";
  if (backend_level && !header_modifier) {
    ctx.Unsupported(Join(path, "type"), absl::StrCat("filter ", *type,
                                                     " on a backendRef is not supported by Weft "
                                                     "(use it on the rule)"));
  }
  if (*type == "RequestHeaderModifier") {
    WEFT_ASSIGN_OR_RETURN(*out.mutable_request_header_modifier(), ParseHeaderModifier(body, fp));
  } else if (*type == "ResponseHeaderModifier") {
    WEFT_ASSIGN_OR_RETURN(*out.mutable_response_header_modifier(), ParseHeaderModifier(body, fp));
  } else if (*type == "RequestRedirect") {
    WEFT_ASSIGN_OR_RETURN(*out.mutable_request_redirect(), ParseRedirect(body, fp));
  } else if (*type == "URLRewrite") {
    WEFT_ASSIGN_OR_RETURN(*out.mutable_url_rewrite(), ParseUrlRewrite(body, fp));
  } else if (*type == "RequestMirror" && !backend_level) {
    WEFT_ASSIGN_OR_RETURN(*out.mutable_request_mirror(), ParseMirror(body, fp, ctx, index));
  } else if (!backend_level) {
    ctx.Unsupported(Join(path, "type"),
                    absl::StrCat("filter type ", *type, " is not supported by Weft"));
  }
  return out;
}

// A list of filters with the spec's per-list rules: each of the header modifiers, RequestRedirect
// and URLRewrite at most once, and never RequestRedirect together with URLRewrite. `types` gets
// the filters' types in order.
absl::StatusOr<std::vector<pb::HttpRouteFilter>> ParseFilters(const json& parent,
                                                              const std::string& path,
                                                              RouteCtx& ctx, bool backend_level,
                                                              std::vector<std::string>* types) {
  std::vector<pb::HttpRouteFilter> out;
  WEFT_ASSIGN_OR_RETURN(const json* list, List(parent, "filters", path, kMaxFilters));
  std::map<std::string, int> count;
  for (size_t i = 0; list != nullptr && i < list->size(); ++i) {
    const std::string fp = At(Join(path, "filters"), i);
    WEFT_ASSIGN_OR_RETURN(const json* f, Item(*list, i, fp));
    std::string type;
    WEFT_ASSIGN_OR_RETURN(pb::HttpRouteFilter filter,
                          ParseFilter(*f, fp, ctx, backend_level, static_cast<int>(i), &type));
    if (type != "RequestMirror" && type != "ExtensionRef" && ++count[type] > 1) {
      return Bad(fp, absl::StrCat("filter ", type, " may appear at most once in a filters list"));
    }
    if (count["RequestRedirect"] > 0 && count["URLRewrite"] > 0) {
      return Bad(fp, "RequestRedirect and URLRewrite filters cannot be used together");
    }
    types->push_back(type);
    out.push_back(std::move(filter));
  }
  return out;
}

// ---- matches

absl::Status ParseHeaderMatches(const json& m, std::string_view key, const std::string& path,
                                google::protobuf::RepeatedPtrField<pb::HttpHeaderMatch>* out) {
  WEFT_ASSIGN_OR_RETURN(const json* list, List(m, key, path, kMaxHeaderMatches));
  std::set<std::string> seen;
  const bool query = key == "queryParams";
  for (size_t i = 0; list != nullptr && i < list->size(); ++i) {
    const std::string hp = At(Join(path, key), i);
    WEFT_ASSIGN_OR_RETURN(const json* h, Item(*list, i, hp));
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*h, hp, {"type", "name", "value"}));
    pb::HttpHeaderMatch* hm = out->Add();
    WEFT_ASSIGN_OR_RETURN(std::string type, Str(*h, "type", hp));
    if (type.empty() || type == "Exact") {
      hm->set_type(pb::HttpHeaderMatch::EXACT);
    } else if (type == "RegularExpression") {
      hm->set_type(pb::HttpHeaderMatch::REGULAR_EXPRESSION);
    } else {
      return Bad(Join(hp, "type"),
                 absl::StrCat("unknown type \"", type, "\" (want Exact or RegularExpression)"));
    }
    WEFT_ASSIGN_OR_RETURN(*hm->mutable_name(), Str(*h, "name", hp, true));
    WEFT_RETURN_IF_ERROR(CheckHeaderName(hm->name(), Join(hp, "name")));
    WEFT_ASSIGN_OR_RETURN(*hm->mutable_value(), Str(*h, "value", hp, true));
    if (hm->value().size() > (query ? 1024u : 4096u)) {
      return Bad(Join(hp, "value"), "is too long");
    }
    if (hm->type() == pb::HttpHeaderMatch::REGULAR_EXPRESSION) {
      WEFT_RETURN_IF_ERROR(CheckRegex(hm->value(), Join(hp, "value")));
    }
    // Header names are case-insensitive, query parameter names are not.
    if (!seen.insert(query ? hm->name() : absl::AsciiStrToLower(hm->name())).second) {
      return Bad(Join(hp, "name"), absl::StrCat("\"", hm->name(), "\" is matched twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPathValue(const std::string& v, const std::string& path) {
  if (v.empty() || v.front() != '/') {
    return Bad(path, absl::StrCat("\"", v, "\" must start with '/'"));
  }
  for (const char* bad : {"//", "/./", "/../", "%2f", "%2F", "#"}) {
    if (v.find(bad) != std::string::npos) {
      return Bad(path, absl::StrCat("\"", v, "\" must not contain '", bad, "'"));
    }
  }
  if (v.ends_with("/..") || v.ends_with("/.")) {
    return Bad(path, absl::StrCat("\"", v, "\" must not end with '/.' or '/..'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::HttpRouteMatch> ParseHttpMatch(const json& m, const std::string& path) {
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(m, path, {"path", "headers", "queryParams", "method"}));
  pb::HttpRouteMatch out;
  WEFT_ASSIGN_OR_RETURN(const json* p, Obj(m, "path", path));
  if (p != nullptr) {
    const std::string pp = Join(path, "path");
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*p, pp, {"type", "value"}));
    WEFT_ASSIGN_OR_RETURN(std::string type, Str(*p, "type", pp));
    WEFT_ASSIGN_OR_RETURN(std::string value, Str(*p, "value", pp));
    if (Get(*p, "value") == nullptr) value = "/";
    if (value.size() > 1024) return Bad(Join(pp, "value"), "is over 1024 characters");
    if (type.empty() || type == "PathPrefix") {
      out.set_path_type(pb::HttpRouteMatch::PATH_PREFIX);
    } else if (type == "Exact") {
      out.set_path_type(pb::HttpRouteMatch::EXACT);
    } else if (type == "RegularExpression") {
      out.set_path_type(pb::HttpRouteMatch::REGULAR_EXPRESSION);
    } else {
      return Bad(Join(pp, "type"),
                 absl::StrCat("unknown type \"", type,
                              "\" (want Exact, PathPrefix or RegularExpression)"));
    }
    if (out.path_type() == pb::HttpRouteMatch::REGULAR_EXPRESSION) {
      WEFT_RETURN_IF_ERROR(CheckRegex(value, Join(pp, "value")));
    } else {
      WEFT_RETURN_IF_ERROR(CheckPathValue(value, Join(pp, "value")));
    }
    out.set_path(value);
  }
  WEFT_RETURN_IF_ERROR(ParseHeaderMatches(m, "headers", path, out.mutable_headers()));
  WEFT_RETURN_IF_ERROR(ParseHeaderMatches(m, "queryParams", path, out.mutable_query_params()));
  WEFT_ASSIGN_OR_RETURN(*out.mutable_method(), Str(m, "method", path));
  static const std::set<std::string> kMethods = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                                 "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  if (!out.method().empty() && !kMethods.contains(out.method())) {
    return Bad(Join(path, "method"),
               absl::StrCat("\"", out.method(),
                            "\" is not an HTTP method of the spec (GET, HEAD, POST, PUT, DELETE, "
                            "CONNECT, OPTIONS, TRACE, PATCH)"));
  }
  return out;
}

// GRPCRoute's method match compiled into a path match (config.proto's rule, as Istio does).
absl::StatusOr<pb::HttpRouteMatch> ParseGrpcMatch(const json& m, const std::string& path) {
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(m, path, {"method", "headers"}));
  pb::HttpRouteMatch out;
  WEFT_ASSIGN_OR_RETURN(const json* method, Obj(m, "method", path));
  if (method != nullptr) {
    const std::string mp = Join(path, "method");
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*method, mp, {"type", "service", "method"}));
    WEFT_ASSIGN_OR_RETURN(std::string type, Str(*method, "type", mp));
    WEFT_ASSIGN_OR_RETURN(std::string service, Str(*method, "service", mp));
    WEFT_ASSIGN_OR_RETURN(std::string name, Str(*method, "method", mp));
    if (service.empty() && name.empty()) {
      return Bad(mp, "one or both of service and method must be set");
    }
    if (service.size() > 1024 || name.size() > 1024) return Bad(mp, "is over 1024 characters");
    if (type.empty() || type == "Exact") {
      if (!service.empty() &&
          !FullMatch(service, "(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*")) {
        return Bad(Join(mp, "service"),
                   absl::StrCat("\"", service, "\" is not a gRPC service name (pkg.Service)"));
      }
      if (!name.empty() && !FullMatch(name, "[A-Za-z_][A-Za-z_0-9]*")) {
        return Bad(Join(mp, "method"), absl::StrCat("\"", name, "\" is not a gRPC method name"));
      }
      if (!service.empty() && !name.empty()) {
        out.set_path_type(pb::HttpRouteMatch::EXACT);
        out.set_path(absl::StrCat("/", service, "/", name));
      } else if (!service.empty()) {
        out.set_path_type(pb::HttpRouteMatch::PATH_PREFIX);
        out.set_path(absl::StrCat("/", service, "/"));
      } else {
        out.set_path_type(pb::HttpRouteMatch::REGULAR_EXPRESSION);
        out.set_path(absl::StrCat("/[^/]+/", name));
      }
    } else if (type == "RegularExpression") {
      if (!service.empty()) WEFT_RETURN_IF_ERROR(CheckRegex(service, Join(mp, "service")));
      if (!name.empty()) WEFT_RETURN_IF_ERROR(CheckRegex(name, Join(mp, "method")));
      out.set_path_type(pb::HttpRouteMatch::REGULAR_EXPRESSION);
      out.set_path(absl::StrCat("/(", service.empty() ? "[^/]+" : service, ")/(",
                                name.empty() ? "[^/]+" : name, ")"));
    } else {
      return Bad(Join(mp, "type"),
                 absl::StrCat("unknown type \"", type, "\" (want Exact or RegularExpression)"));
    }
  }
  WEFT_RETURN_IF_ERROR(ParseHeaderMatches(m, "headers", path, out.mutable_headers()));
  return out;
}

// ---- rules

absl::Status ParseBackendRefs(const json& r, const std::string& path, RouteCtx& ctx,
                              pb::HttpRouteRule* rule) {
  WEFT_ASSIGN_OR_RETURN(const json* list, List(r, "backendRefs", path, kMaxBackendRefs));
  for (size_t i = 0; list != nullptr && i < list->size(); ++i) {
    const std::string bp = At(Join(path, "backendRefs"), i);
    WEFT_ASSIGN_OR_RETURN(const json* b, Item(*list, i, bp));
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(
        *b, bp, {"group", "kind", "name", "namespace", "port", "weight", "filters"}));
    WEFT_ASSIGN_OR_RETURN(RouteRef ref, ParseBackendObjectRef(*b, bp, ctx.ns));
    pb::HttpBackendRef* out = rule->add_backends();
    out->set_service(absl::StrCat(ref.ns, "/", ref.name));
    out->set_port(ref.port);
    WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> weight, Int(*b, "weight", bp, 0, kMaxWeight));
    out->set_weight(static_cast<uint32_t>(weight.value_or(1)));
    std::vector<std::string> types;
    WEFT_ASSIGN_OR_RETURN(auto filters, ParseFilters(*b, bp, ctx, true, &types));
    for (auto& f : filters) *out->add_filters() = std::move(f);
    ctx.refs->push_back(RouteBackend{std::move(ref), ctx.rule, static_cast<int>(i), -1});
  }
  return absl::OkStatus();
}

absl::Status ParseTimeoutsAndRetry(const json& r, const std::string& path,
                                   pb::HttpRouteRule* rule) {
  WEFT_ASSIGN_OR_RETURN(const json* t, Obj(r, "timeouts", path));
  if (t != nullptr) {
    const std::string tp = Join(path, "timeouts");
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*t, tp, {"request", "backendRequest"}));
    if (const json* v = Get(*t, "request"); v != nullptr) {
      WEFT_ASSIGN_OR_RETURN(uint64_t ms, ParseDurationMs(*v, Join(tp, "request")));
      rule->set_request_timeout_ms(ms);
    }
    if (const json* v = Get(*t, "backendRequest"); v != nullptr) {
      WEFT_ASSIGN_OR_RETURN(uint64_t ms, ParseDurationMs(*v, Join(tp, "backendRequest")));
      rule->set_backend_request_timeout_ms(ms);
    }
    if (rule->request_timeout_ms() != 0 &&
        rule->backend_request_timeout_ms() > rule->request_timeout_ms()) {
      return Bad(Join(tp, "backendRequest"), "must not be greater than timeouts.request");
    }
  }
  WEFT_ASSIGN_OR_RETURN(const json* retry, Obj(r, "retry", path));
  if (retry != nullptr) {
    const std::string rp = Join(path, "retry");
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*retry, rp, {"codes", "attempts", "backoff"}));
    pb::HttpRouteRetry* out = rule->mutable_retry();
    WEFT_ASSIGN_OR_RETURN(const json* codes, Arr(*retry, "codes", rp));
    for (size_t i = 0; codes != nullptr && i < codes->size(); ++i) {
      const json& c = (*codes)[i];
      const std::string cp = At(Join(rp, "codes"), i);
      if (!c.is_number_integer()) return WrongType(cp, "an HTTP status code", c);
      if (c.get<int64_t>() < 400 || c.get<int64_t>() > 599) {
        return Bad(cp, absl::StrCat(c.dump(), " is not a retriable status (want 400-599)"));
      }
      out->add_codes(c.get<uint32_t>());
    }
    WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> attempts, Int(*retry, "attempts", rp, 0, 1000));
    out->set_attempts(static_cast<uint32_t>(attempts.value_or(0)));
    if (const json* v = Get(*retry, "backoff"); v != nullptr) {
      WEFT_ASSIGN_OR_RETURN(uint64_t ms, ParseDurationMs(*v, Join(rp, "backoff")));
      out->set_backoff_ms(ms);
    }
  }
  return absl::OkStatus();
}

// Rule-level rules of the spec: RequestRedirect excludes backendRefs; a ReplacePrefixMatch
// (redirect or rewrite) needs exactly one match, a PathPrefix one.
absl::Status CheckRuleFilters(const pb::HttpRouteRule& rule, const std::vector<std::string>& types,
                              const std::string& path) {
  for (size_t i = 0; i < types.size(); ++i) {
    const std::string fp = At(Join(path, "filters"), i);
    const pb::HttpRouteFilter& f = rule.filters(static_cast<int>(i));
    if (types[i] == "RequestRedirect" && rule.backends_size() > 0) {
      return Bad(fp, "a RequestRedirect filter cannot be used with backendRefs");
    }
    const bool prefix_rewrite =
        (f.has_request_redirect() &&
         f.request_redirect().path().type() == pb::HttpPathModifier::REPLACE_PREFIX_MATCH) ||
        (f.has_url_rewrite() &&
         f.url_rewrite().path().type() == pb::HttpPathModifier::REPLACE_PREFIX_MATCH);
    if (!prefix_rewrite) continue;
    const bool one_prefix_match =
        rule.matches_size() == 0 ||
        (rule.matches_size() == 1 &&
         (rule.matches(0).path_type() == pb::HttpRouteMatch::PATH_PREFIX ||
          rule.matches(0).path_type() == pb::HttpRouteMatch::PATH_UNSET));
    if (!one_prefix_match) {
      return Bad(fp,
                 "ReplacePrefixMatch needs the rule to have exactly one match, a PathPrefix one");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::HttpRouteRule> ParseRule(const json& r, const std::string& path, RouteCtx& ctx) {
  if (ctx.grpc()) {
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(
        r, path, {"name", "matches", "filters", "backendRefs", "sessionPersistence"}));
  } else {
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(
        r, path,
        {"name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"}));
  }
  pb::HttpRouteRule rule;
  WEFT_ASSIGN_OR_RETURN(*rule.mutable_name(), Str(r, "name", path));
  if (Get(r, "name") != nullptr && !IsDnsSubdomain(rule.name())) {
    return Bad(Join(path, "name"), absl::StrCat("\"", rule.name(),
                                                "\" is not a valid section name (lower-case RFC "
                                                "1123 subdomain)"));
  }
  WEFT_ASSIGN_OR_RETURN(const json* matches, List(r, "matches", path, kMaxMatches));
  for (size_t i = 0; matches != nullptr && i < matches->size(); ++i) {
    const std::string mp = At(Join(path, "matches"), i);
    WEFT_ASSIGN_OR_RETURN(const json* m, Item(*matches, i, mp));
    if (ctx.grpc()) {
      WEFT_ASSIGN_OR_RETURN(*rule.add_matches(), ParseGrpcMatch(*m, mp));
    } else {
      WEFT_ASSIGN_OR_RETURN(*rule.add_matches(), ParseHttpMatch(*m, mp));
    }
  }
  std::vector<std::string> types;
  WEFT_ASSIGN_OR_RETURN(auto filters, ParseFilters(r, path, ctx, false, &types));
  for (auto& f : filters) *rule.add_filters() = std::move(f);
  WEFT_RETURN_IF_ERROR(ParseBackendRefs(r, path, ctx, &rule));
  WEFT_RETURN_IF_ERROR(ParseTimeoutsAndRetry(r, path, &rule));
  if (Get(r, "sessionPersistence") != nullptr) {
    ctx.Unsupported(Join(path, "sessionPersistence"), "is not supported by Weft");
  }
  WEFT_RETURN_IF_ERROR(CheckRuleFilters(rule, types, path));
  return rule;
}

absl::Status ParseRouteSpec(const json& spec, RouteCtx& ctx, RouteObj* out) {
  WEFT_RETURN_IF_ERROR(
      OnlyKnownFields(spec, "spec", {"parentRefs", "hostnames", "rules", "useDefaultGateways"}));
  WEFT_ASSIGN_OR_RETURN(const json* hostnames, List(spec, "hostnames", "spec", kMaxHostnames));
  for (size_t i = 0; hostnames != nullptr && i < hostnames->size(); ++i) {
    const std::string hp = At("spec.hostnames", i);
    const json& h = (*hostnames)[i];
    if (!h.is_string()) return WrongType(hp, "a hostname", h);
    WEFT_RETURN_IF_ERROR(CheckHostname(h.get<std::string>(), hp, true));
    out->route.add_hostnames(h.get<std::string>());
  }
  WEFT_ASSIGN_OR_RETURN(const json* rules, List(spec, "rules", "spec", kMaxRules));
  size_t total_matches = 0;
  std::set<std::string> names;
  for (size_t i = 0; rules != nullptr && i < rules->size(); ++i) {
    const std::string rp = At("spec.rules", i);
    WEFT_ASSIGN_OR_RETURN(const json* r, Item(*rules, i, rp));
    ctx.rule = static_cast<int>(i);
    WEFT_ASSIGN_OR_RETURN(pb::HttpRouteRule rule, ParseRule(*r, rp, ctx));
    total_matches += static_cast<size_t>(rule.matches_size());
    if (total_matches > kMaxTotalMatches) {
      return Bad("spec.rules",
                 absl::StrCat("have more than ", kMaxTotalMatches, " matches in all"));
    }
    if (!rule.name().empty() && !names.insert(rule.name()).second) {
      return Bad(Join(rp, "name"), absl::StrCat("\"", rule.name(), "\" names two rules"));
    }
    *out->route.add_rules() = std::move(rule);
  }
  // The spec's default: one rule matching every request, with no backendRefs (GAMMA: the
  // parent Service itself).
  if (rules == nullptr || rules->empty()) out->route.add_rules();
  return absl::OkStatus();
}

int64_t CreationMs(const json& meta) {
  const json* ts = Get(meta, "creationTimestamp");
  absl::Time t;
  std::string err;
  if (ts == nullptr || !ts->is_string() ||
      !absl::ParseTime(absl::RFC3339_full, ts->get<std::string>(), &t, &err)) {
    return 0;
  }
  return absl::ToUnixMillis(t);
}

}  // namespace

bool ReferenceGrantObj::Permits(std::string_view from_group, std::string_view from_kind,
                                std::string_view from_ns, std::string_view to_group,
                                std::string_view to_kind, std::string_view to_name) const {
  const bool from_ok = std::any_of(from.begin(), from.end(), [&](const From& f) {
    return f.group == from_group && f.kind == from_kind && f.ns == from_ns;
  });
  return from_ok && std::any_of(to.begin(), to.end(), [&](const To& t) {
           return t.group == to_group && t.kind == to_kind && (t.name.empty() || t.name == to_name);
         });
}

absl::StatusOr<uint64_t> ParseDurationMs(const json& v, std::string_view path) {
  if (!v.is_string()) return WrongType(path, "a duration such as \"1s\" or \"500ms\"", v);
  const std::string s = v.get<std::string>();
  if (!FullMatch(s, "([0-9]{1,5}(h|m|s|ms)){1,4}")) {
    return Bad(path, absl::StrCat("\"", s,
                                  "\" is not a Gateway API duration (1 to 4 parts of up to 5 "
                                  "digits and a unit h, m, s or ms, e.g. \"1m30s\", \"500ms\")"));
  }
  uint64_t total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    uint64_t n = 0;
    (void)absl::SimpleAtoi(Av(std::string_view(s).substr(i, j - i)), &n);
    if (s.compare(j, 2, "ms") == 0) {
      total += n;
      j += 2;
    } else {
      total += n * (s[j] == 'h' ? 3600000 : s[j] == 'm' ? 60000 : 1000);
      j += 1;
    }
    i = j;
  }
  return total;
}

absl::StatusOr<RouteObj> ParseRoute(std::string_view kind, std::string_view ns, const json& o) {
  RouteObj out;
  out.kind = std::string(kind);
  out.route.set_kind(kind == "GRPCRoute" ? pb::HttpRoute::GRPC_ROUTE : pb::HttpRoute::HTTP_ROUTE);
  const json& meta = o.at("metadata");
  if (const json* g = Get(meta, "generation"); g != nullptr && g->is_number_integer()) {
    out.generation = g->get<int64_t>();
  }
  out.route.set_creation_timestamp_ms(CreationMs(meta));
  // parentRefs first: without them nobody could be told what is wrong.
  WEFT_ASSIGN_OR_RETURN(const json* spec, Obj(o, "spec", "", true));
  WEFT_ASSIGN_OR_RETURN(const json* parents, List(*spec, "parentRefs", "spec", kMaxParentRefs));
  for (size_t i = 0; parents != nullptr && i < parents->size(); ++i) {
    const std::string pp = At("spec.parentRefs", i);
    WEFT_ASSIGN_OR_RETURN(const json* p, Item(*parents, i, pp));
    WEFT_ASSIGN_OR_RETURN(RouteRef ref, ParseParentRef(*p, pp, ns));
    if (std::find(out.parents.begin(), out.parents.end(), ref) != out.parents.end()) {
      return Bad(pp, "names the same parent as an earlier parentRef");
    }
    out.parents.push_back(std::move(ref));
  }
  for (RouteRef& p : out.parents) p.path.clear();  // equal refs compare equal from here on
  RouteCtx ctx{out.kind, std::string(ns), "", &out.refs};
  absl::Status spec_ok = ParseRouteSpec(*spec, ctx, &out);
  if (!spec_ok.ok()) {
    out.invalid = std::string(spec_ok.message());
    out.route.clear_rules();
    out.refs.clear();
  }
  out.unsupported = ctx.unsupported;
  return out;
}

absl::StatusOr<ReferenceGrantObj> ParseReferenceGrant(const json& o) {
  ReferenceGrantObj out;
  WEFT_ASSIGN_OR_RETURN(const json* spec, Obj(o, "spec", "", true));
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(*spec, "spec", {"from", "to"}));
  for (const char* key : {"from", "to"}) {
    WEFT_ASSIGN_OR_RETURN(const json* list, List(*spec, key, "spec", 16));
    if (list == nullptr || list->empty()) return Bad(Join("spec", key), "needs at least one entry");
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string ep = At(Join("spec", key), i);
      WEFT_ASSIGN_OR_RETURN(const json* e, Item(*list, i, ep));
      WEFT_ASSIGN_OR_RETURN(std::string group, Str(*e, "group", ep));
      if (Get(*e, "group") == nullptr) return Bad(Join(ep, "group"), "is required (\"\" for core)");
      WEFT_ASSIGN_OR_RETURN(std::string kind, Str(*e, "kind", ep, true));
      if (std::string_view(key) == "from") {
        WEFT_RETURN_IF_ERROR(OnlyKnownFields(*e, ep, {"group", "kind", "namespace"}));
        WEFT_ASSIGN_OR_RETURN(std::string ns, Str(*e, "namespace", ep, true));
        out.from.push_back({group, kind, ns});
      } else {
        WEFT_RETURN_IF_ERROR(OnlyKnownFields(*e, ep, {"group", "kind", "name"}));
        WEFT_ASSIGN_OR_RETURN(std::string name, Str(*e, "name", ep));
        out.to.push_back({group, kind, name});
      }
    }
  }
  return out;
}

}  // namespace weft::cp::internal
