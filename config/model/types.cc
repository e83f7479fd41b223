#include "config/model/types.h"

#include "re2/re2.h"

namespace weft::config {

const ServicePort* Service::FindPort(uint16_t port) const {
  for (const auto& p : ports) {
    if (p.port == port) return &p;
  }
  return nullptr;
}

StringMatch StringMatch::Parse(std::string_view pattern) {
  StringMatch m;
  if (pattern == "*") {
    m.kind = Kind::kAny;
  } else if (pattern.size() > 1 && pattern.front() == '*') {
    m.kind = Kind::kSuffix;
    m.value = std::string(pattern.substr(1));
  } else if (pattern.size() > 1 && pattern.back() == '*') {
    m.kind = Kind::kPrefix;
    m.value = std::string(pattern.substr(0, pattern.size() - 1));
  } else {
    m.kind = Kind::kExact;
    m.value = std::string(pattern);
  }
  return m;
}

bool StringMatch::Matches(std::string_view s) const {
  switch (kind) {
    case Kind::kAny:
      // Istio's "*" is a presence match: an empty attribute does not match it.
      return !s.empty();
    case Kind::kPrefix:
      return s.starts_with(value);
    case Kind::kSuffix:
      return s.ends_with(value);
    case Kind::kExact:
      return s == value;
  }
  return false;
}

bool AuthzOperation::has_l7() const {
  return !hosts.empty() || !not_hosts.empty() || !methods.empty() || !not_methods.empty() ||
         !paths.empty() || !not_paths.empty();
}

bool AuthzCondition::has_l7() const {
  return key.starts_with("request.");
}

bool NetworkPeer::Matches(const IpAddr& ip) const {
  if (!cidr.Contains(ip)) return false;
  for (const Cidr& e : except) {
    if (e.Contains(ip)) return false;
  }
  return true;
}

bool NetworkRule::Matches(const IpAddr& src, uint16_t dst_port) const {
  bool source_ok = all_sources;
  for (size_t i = 0; !source_ok && i < from.size(); ++i) source_ok = from[i].Matches(src);
  if (!source_ok) return false;
  if (all_ports) return true;
  for (const NetworkPortRange& r : ports) {
    if (r.tcp && dst_port >= r.first && dst_port <= r.last) return true;
  }
  return false;
}

bool SelectorMatches(const Labels& selector, const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

bool HttpValueMatch::Matches(std::string_view v) const {
  if (kind == Kind::kExact) return v == value;
  return RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *regex);
}

bool HttpPathMatch::Matches(std::string_view path) const {
  switch (kind) {
    case Kind::kExact:
      return path == value;
    case Kind::kRegex:
      return RE2::FullMatch(re2::StringPiece(path.data(), path.size()), *regex);
    case Kind::kPrefix: {
      // Element-wise: a trailing '/' on the prefix is ignored, and the path must end or
      // continue with '/' where the prefix ends.
      std::string_view p = value;
      while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
      if (p == "/") return path.starts_with('/');
      return path.starts_with(p) && (path.size() == p.size() || path[p.size()] == '/');
    }
  }
  return false;
}

std::string_view HttpRoute::parent_namespace() const {
  std::string_view p = parent_service;
  return p.substr(0, p.find('/'));
}

}  // namespace weft::config
