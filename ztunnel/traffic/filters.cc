#include "ztunnel/traffic/filters.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft::ztunnel::traffic {
namespace {

void RemoveAll(Headers* headers, std::string_view name) {
  headers->erase(std::remove_if(headers->begin(), headers->end(),
                                [&](const auto& h) { return h.first == name; }),
                 headers->end());
}

std::string_view TrimSlashes(std::string_view p) {
  while (!p.empty() && p.back() == '/') p.remove_suffix(1);
  return p;
}

// The spec's ReplacePrefixMatch on a path without its query.
std::string ReplacePrefix(std::string_view prefix, std::string_view replacement,
                          std::string_view path) {
  std::string_view p = TrimSlashes(prefix);  // "/" -> ""
  std::string_view rest = path.starts_with(p) ? path.substr(p.size()) : path;
  if (p.empty() && rest == "/") rest = "";  // prefix "/" on path "/": the prefix itself
  std::string_view head = TrimSlashes(replacement);
  if (head.empty() && rest.empty()) return "/";
  // Both parts start with '/' (or are empty) for a path the prefix matched.
  bool slash = !head.starts_with('/') && !rest.starts_with('/');
  return absl::StrCat(slash ? "/" : "", Av(head), Av(rest));
}

}  // namespace

void ApplyHeaderModifier(const config::HttpHeaderModifier& m, Headers* headers) {
  for (const std::string& name : m.remove) RemoveAll(headers, name);
  for (const config::HttpHeader& h : m.set) {
    auto it = std::find_if(headers->begin(), headers->end(),
                           [&](const auto& e) { return e.first == h.name; });
    if (it == headers->end()) {
      headers->emplace_back(h.name, h.value);
      continue;
    }
    it->second = h.value;  // keeps the header's place, drops its other values
    headers->erase(std::remove_if(std::next(it), headers->end(),
                                  [&](const auto& e) { return e.first == h.name; }),
                   headers->end());
  }
  for (const config::HttpHeader& h : m.add) headers->emplace_back(h.name, h.value);
}

std::string ModifyPath(const config::HttpPathModifier& m, const config::HttpRouteMatch& matched,
                       std::string_view path) {
  size_t q = path.find('?');
  std::string_view query = q == std::string_view::npos ? "" : path.substr(q);
  std::string_view bare = path.substr(0, q);
  switch (m.kind) {
    case config::HttpPathModifier::Kind::kNone:
      break;
    case config::HttpPathModifier::Kind::kReplaceFullPath:
      return absl::StrCat(Av(m.value), Av(query));
    case config::HttpPathModifier::Kind::kReplacePrefixMatch:
      // Conversion guarantees a PathPrefix match here; anything else leaves the path alone.
      if (matched.path.kind != config::HttpPathMatch::Kind::kPrefix) break;
      return absl::StrCat(ReplacePrefix(matched.path.value, m.value, bare), Av(query));
  }
  return std::string(path);
}

void ApplyUrlRewrite(const config::HttpUrlRewrite& rw, const config::HttpRouteMatch& matched,
                     std::string* authority, std::string* path) {
  if (!rw.hostname.empty()) *authority = rw.hostname;
  if (rw.path.kind != config::HttpPathModifier::Kind::kNone) {
    *path = ModifyPath(rw.path, matched, *path);
  }
}

Redirect BuildRedirect(const config::HttpRequestRedirect& r, const config::HttpRouteMatch& matched,
                       std::string_view request_scheme, std::string_view authority,
                       std::string_view path, uint16_t listener_port) {
  std::string_view scheme = r.scheme.empty() ? request_scheme : std::string_view(r.scheme);
  if (scheme.empty()) scheme = "http";
  std::string_view host = r.hostname;
  if (host.empty()) {
    host = authority;
    if (host.starts_with('[')) {
      host = host.substr(0, host.find(']') + 1);
    } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
      host = host.substr(0, colon);
    }
  }
  uint16_t port = r.port;
  if (port == 0) {
    if (r.scheme == "http") {
      port = 80;
    } else if (r.scheme == "https") {
      port = 443;
    } else {
      port = listener_port;
    }
  }
  bool default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
  Redirect out;
  out.status = r.status_code;
  out.location = absl::StrCat(Av(scheme), "://", Av(host));
  if (!default_port && port != 0) absl::StrAppend(&out.location, ":", port);
  absl::StrAppend(&out.location, ModifyPath(r.path, matched, path));
  return out;
}

BackendChoice ChooseBackend(const std::vector<config::HttpBackendRef>& backends, uint64_t draw) {
  uint64_t total = 0;
  for (const config::HttpBackendRef& b : backends) total += b.weight;
  if (total == 0) return BackendChoice{};
  uint64_t pick = draw % total;
  for (size_t i = 0; i < backends.size(); ++i) {
    if (pick < backends[i].weight) {
      return BackendChoice{backends[i].invalid ? BackendChoice::Kind::kInvalidBackend
                                               : BackendChoice::Kind::kBackend,
                           &backends[i], i};
    }
    pick -= backends[i].weight;
  }
  return BackendChoice{};  // unreachable: pick < total
}

bool Chance(double percentage, uint64_t draw) {
  if (!(percentage > 0)) return false;
  if (percentage >= 100) return true;
  // The draw's top 53 bits as a uniform double in [0, 1).
  double u = static_cast<double>(draw >> 11) * 0x1.0p-53;
  return u * 100 < percentage;
}

}  // namespace weft::ztunnel::traffic
