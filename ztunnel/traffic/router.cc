#include "ztunnel/traffic/router.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "common/status.h"

namespace weft::ztunnel::traffic {
namespace {

using Bucket = Router::Bucket;
using Candidate = Router::Candidate;
using MatchTable = Router::MatchTable;
using HostTables = Router::HostTables;
using PortTables = Router::PortTables;

// PathPrefix values are indexed without their trailing '/' (the spec ignores it), "/" as is.
std::string_view TrimSlashes(std::string_view p) {
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  return p;
}

// The spec's precedence inside one path bucket (the bucket itself is the path criterion).
bool Precedes(const Candidate& a, const Candidate& b) {
  auto rank = [](const Candidate& c) {
    return std::make_tuple(c.match->method.empty(), -static_cast<int64_t>(c.match->headers.size()),
                           -static_cast<int64_t>(c.match->query_params.size()),
                           c.route->creation_timestamp_ms);
  };
  auto ra = rank(a), rb = rank(b);
  if (ra != rb) return ra < rb;
  if (a.route != b.route) {
    int cmp = a.route->key().compare(b.route->key());
    if (cmp != 0) return cmp < 0;
  }
  return std::tie(a.rule_index, a.match_index) < std::tie(b.rule_index, b.match_index);
}

void AddRoute(const config::HttpRoute& route, MatchTable* t) {
  for (uint32_t i = 0; i < route.rules.size(); ++i) {
    const config::HttpRouteRule& rule = route.rules[i];
    for (uint32_t j = 0; j < rule.matches.size(); ++j) {
      const config::HttpRouteMatch& m = rule.matches[j];
      Candidate c{&route, &rule, &m, i, j};
      switch (m.path.kind) {
        case config::HttpPathMatch::Kind::kExact:
          t->exact[m.path.value].candidates.push_back(c);
          break;
        case config::HttpPathMatch::Kind::kRegex:
          t->regex.candidates.push_back(c);
          break;
        case config::HttpPathMatch::Kind::kPrefix:
          t->prefix[std::string(TrimSlashes(m.path.value))].candidates.push_back(c);
          break;
      }
    }
  }
}

const config::HttpValueMatch* ExactHeader(const Candidate& c, std::string_view name) {
  for (const config::HttpValueMatch& h : c.match->headers) {
    if (h.name == name) return h.kind == config::HttpValueMatch::Kind::kExact ? &h : nullptr;
  }
  return nullptr;
}

// Sorts a bucket and, when it is worth it, indexes it by the header name that most of its
// candidates match exactly (at least half of them, and 4 or more candidates).
void FinishBucket(Bucket* b) {
  std::stable_sort(b->candidates.begin(), b->candidates.end(), Precedes);
  if (b->candidates.size() < 4) return;
  absl::flat_hash_map<std::string_view, size_t> uses;
  for (const Candidate& c : b->candidates) {
    for (const config::HttpValueMatch& h : c.match->headers) {
      if (h.kind == config::HttpValueMatch::Kind::kExact) uses[h.name]++;
    }
  }
  std::string_view best;
  size_t best_uses = 0;
  for (const auto& [name, n] : uses) {
    if (n > best_uses || (n == best_uses && name < best)) best = name, best_uses = n;
  }
  if (best_uses * 2 < b->candidates.size()) return;
  b->key_header = std::string(best);
  for (uint32_t i = 0; i < b->candidates.size(); ++i) {
    if (const config::HttpValueMatch* h = ExactHeader(b->candidates[i], b->key_header)) {
      b->by_value[h->value].push_back(i);
    } else {
      b->others.push_back(i);
    }
  }
}

void SortTable(MatchTable* t) {
  for (auto& [k, b] : t->exact) FinishBucket(&b);
  for (auto& [k, b] : t->prefix) FinishBucket(&b);
  FinishBucket(&t->regex);
}

void BuildHostTables(const std::vector<const config::HttpRoute*>& routes, HostTables* out) {
  for (const config::HttpRoute* r : routes) {
    if (r->hostnames.empty()) {
      if (!out->any_host) out->any_host = std::make_unique<MatchTable>();
      AddRoute(*r, out->any_host.get());
      continue;
    }
    out->has_hostnames = true;
    absl::flat_hash_set<std::string_view> seen;  // a hostname listed twice adds the route once
    for (const std::string& h : r->hostnames) {
      if (!seen.insert(h).second) continue;
      if (h.starts_with("*.")) {
        AddRoute(*r, &out->wildcard_hosts[h.substr(1)]);
      } else {
        AddRoute(*r, &out->exact_hosts[h]);
      }
    }
  }
  for (auto& [h, t] : out->exact_hosts) SortTable(&t);
  for (auto& [h, t] : out->wildcard_hosts) SortTable(&t);
  if (out->any_host) SortTable(out->any_host.get());
}

void BuildPortTables(const std::vector<const config::HttpRoute*>& routes, PortTables* out) {
  std::set<uint16_t> ports;
  std::vector<const config::HttpRoute*> every_port;
  for (const config::HttpRoute* r : routes) {
    if (r->parent_port == 0) {
      every_port.push_back(r);
    } else {
      ports.insert(r->parent_port);
    }
  }
  if (!every_port.empty()) {
    out->every_port = std::make_unique<HostTables>();
    BuildHostTables(every_port, out->every_port.get());
  }
  for (uint16_t p : ports) {
    std::vector<const config::HttpRoute*> on_port;
    for (const config::HttpRoute* r : routes) {
      if (r->parent_port == 0 || r->parent_port == p) on_port.push_back(r);
    }
    BuildHostTables(on_port, &out->by_port[p]);
  }
}

// The request's host as route hostnames are written: no port, no trailing dot, lower-case.
std::string_view HostOf(std::string_view authority, std::string* storage) {
  std::string_view h = authority;
  if (h.starts_with('[')) {
    size_t end = h.find(']');
    if (end != std::string_view::npos) h = h.substr(0, end + 1);
  } else if (size_t colon = h.rfind(':'); colon != std::string_view::npos) {
    std::string_view port = h.substr(colon + 1);
    if (std::all_of(port.begin(), port.end(), absl::ascii_isdigit)) h = h.substr(0, colon);
  }
  while (h.ends_with('.')) h.remove_suffix(1);
  if (std::any_of(h.begin(), h.end(), absl::ascii_isupper)) {
    *storage = absl::AsciiStrToLower(Av(h));
    return *storage;
  }
  return h;
}

const MatchTable* PickHost(const HostTables& ht, std::string_view authority) {
  if (!ht.has_hostnames) return ht.any_host.get();
  std::string storage;
  std::string_view host = HostOf(authority, &storage);
  if (auto it = ht.exact_hosts.find(Av(host)); it != ht.exact_hosts.end()) return &it->second;
  // Longest wildcard first: suffixes from the leftmost dot on; "*.a.com" needs a label before.
  for (size_t dot = host.find('.'); dot != std::string_view::npos; dot = host.find('.', dot + 1)) {
    if (dot == 0) continue;
    auto it = ht.wildcard_hosts.find(Av(host.substr(dot)));
    if (it != ht.wildcard_hosts.end()) return &it->second;
  }
  return ht.any_host.get();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    int hi = 0, lo = 0;
    if (s[i] == '%' && i + 2 < s.size() && (hi = HexValue(s[i + 1])) >= 0 &&
        (lo = HexValue(s[i + 2])) >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// One request as the matcher reads it; the query is parsed on first use only.
class RequestView {
 public:
  explicit RequestView(const RouteRequest& req) : req_(req) {
    size_t q = req.path.find('?');
    path_ = req.path.substr(0, q);
    if (q != std::string_view::npos) query_ = req.path.substr(q + 1);
  }
  std::string_view path() const { return path_; }

  // The request's value of header `name` (repeated headers joined with ',' into `storage`), or
  // nullopt when absent.
  std::optional<std::string_view> Header(std::string_view name, std::string* storage) const {
    if (req_.headers == nullptr) return std::nullopt;
    const std::string* first = nullptr;
    size_t n = 0;
    for (const auto& [k, v] : *req_.headers) {
      if (k != name) continue;
      if (n++ == 0) first = &v;
    }
    if (n == 0) return std::nullopt;
    if (n == 1) return std::string_view(*first);
    storage->clear();  // Envoy matches a repeated header on its values joined with ','
    for (const auto& [k, v] : *req_.headers) {
      if (k != name) continue;
      if (!storage->empty()) storage->push_back(',');
      *storage += v;
    }
    return std::string_view(*storage);
  }

  bool Matches(const config::HttpRouteMatch& m) {
    if (!m.method.empty() && m.method != req_.method) return false;
    for (const config::HttpValueMatch& h : m.headers) {
      if (!HeaderMatches(h)) return false;
    }
    for (const config::HttpValueMatch& q : m.query_params) {
      const std::string* v = QueryParam(q.name);
      if (v == nullptr || !q.Matches(*v)) return false;
    }
    return true;
  }

 private:
  bool HeaderMatches(const config::HttpValueMatch& m) const {
    std::string storage;
    std::optional<std::string_view> v = Header(m.name, &storage);
    return v.has_value() && m.Matches(*v);
  }

  const std::string* QueryParam(std::string_view name) {
    if (!query_parsed_) {
      query_parsed_ = true;
      std::string_view rest = query_;
      while (!rest.empty()) {
        size_t amp = rest.find('&');
        std::string_view part = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
        size_t eq = part.find('=');
        std::string_view value = eq == std::string_view::npos ? "" : part.substr(eq + 1);
        params_.emplace_back(PercentDecode(part.substr(0, eq)), PercentDecode(value));
      }
    }
    for (const auto& [k, v] : params_) {
      if (k == name) return &v;  // the first occurrence
    }
    return nullptr;
  }

  const RouteRequest& req_;
  std::string_view path_, query_;
  bool query_parsed_ = false;
  std::vector<std::pair<std::string, std::string>> params_;
};

RouteSelection Matched(const Candidate& c) {
  return RouteSelection{RouteSelection::Kind::kMatched, c.route, c.rule, c.match, c.rule_index};
}

// The first candidate (in precedence order) that matches; `regex`: the path must match too.
const Candidate* FirstMatch(const Bucket& b, RequestView& rv, bool regex) {
  auto matches = [&](const Candidate& c) {
    return (!regex || c.match->path.Matches(rv.path())) && rv.Matches(*c.match);
  };
  if (b.key_header.empty()) {
    for (const Candidate& c : b.candidates) {
      if (matches(c)) return &c;
    }
    return nullptr;
  }
  // Candidates needing another value of key_header cannot match: merge, in position order,
  // those needing the request's value with those not matching on key_header.
  static const std::vector<uint32_t> kNone;
  const std::vector<uint32_t>* keyed = &kNone;
  std::string storage;
  if (std::optional<std::string_view> v = rv.Header(b.key_header, &storage)) {
    if (auto it = b.by_value.find(Av(*v)); it != b.by_value.end()) keyed = &it->second;
  }
  auto k = keyed->begin();
  auto o = b.others.begin();
  while (k != keyed->end() || o != b.others.end()) {
    bool take_k = o == b.others.end() || (k != keyed->end() && *k < *o);
    const Candidate& c = b.candidates[take_k ? *k++ : *o++];
    if (matches(c)) return &c;
  }
  return nullptr;
}

RouteSelection MatchIn(const MatchTable& t, const RouteRequest& req) {
  RequestView rv(req);
  std::string_view path = rv.path();
  if (auto it = t.exact.find(Av(path)); it != t.exact.end()) {
    if (const Candidate* c = FirstMatch(it->second, rv, false)) return Matched(*c);
  }
  if (const Candidate* c = FirstMatch(t.regex, rv, true)) return Matched(*c);
  // Element-wise prefixes, longest first: "/a/b/c", "/a/b", "/a", "/".
  std::string_view p = TrimSlashes(path);
  while (!t.prefix.empty()) {
    if (auto it = t.prefix.find(Av(p)); it != t.prefix.end()) {
      if (const Candidate* c = FirstMatch(it->second, rv, false)) return Matched(*c);
    }
    if (p == "/") break;
    size_t slash = p.rfind('/');
    if (slash == std::string_view::npos) break;
    p = slash == 0 ? std::string_view("/") : TrimSlashes(p.substr(0, slash));
  }
  return RouteSelection{RouteSelection::Kind::kNoMatch};
}

}  // namespace

const Router::HostTables* Router::PortTables::For(uint16_t port) const {
  if (auto it = by_port.find(port); it != by_port.end()) return &it->second;
  return every_port.get();
}

std::shared_ptr<const Router> Router::Build(SnapshotPtr snapshot) {
  std::shared_ptr<Router> r(new Router(std::move(snapshot)));
  absl::flat_hash_map<std::string, std::vector<const config::HttpRoute*>> by_service;
  for (const config::HttpRoute& route : r->snapshot_->http_routes()) {
    by_service[route.parent_service].push_back(&route);
  }
  for (const auto& [key, routes] : by_service) {
    ServiceTables& st = r->services_[key];
    st.ns = std::string(routes.front()->parent_namespace());
    std::vector<const config::HttpRoute*> producer;
    std::map<std::string, std::vector<const config::HttpRoute*>> consumers;
    for (const config::HttpRoute* route : routes) {
      if (route->is_consumer()) {
        consumers[route->ns].push_back(route);
      } else {
        producer.push_back(route);
      }
    }
    BuildPortTables(producer, &st.producer);
    for (const auto& [ns, list] : consumers) BuildPortTables(list, &st.consumers[ns]);
  }
  return r;
}

RouteSelection Router::Select(std::string_view service_key, uint16_t port,
                              const RouteRequest& req) const {
  auto it = services_.find(Av(service_key));
  if (it == services_.end()) return RouteSelection{};
  const ServiceTables& st = it->second;
  const HostTables* ht = nullptr;
  if (req.client_namespace != st.ns) {
    if (auto c = st.consumers.find(Av(req.client_namespace)); c != st.consumers.end()) {
      ht = c->second.For(port);
    }
  }
  if (ht == nullptr) ht = st.producer.For(port);
  if (ht == nullptr) return RouteSelection{};
  const MatchTable* t = PickHost(*ht, req.authority);
  if (t == nullptr) return RouteSelection{RouteSelection::Kind::kNoMatch};
  return MatchIn(*t, req);
}

RouteSelection Router::Select(const config::Service& service, uint16_t port,
                              const RouteRequest& req) const {
  char buf[256];
  if (service.ns.size() + service.name.size() + 1 <= sizeof(buf)) {
    size_t n = service.ns.copy(buf, service.ns.size());
    buf[n++] = '/';
    n += service.name.copy(buf + n, service.name.size());
    return Select(std::string_view(buf, n), port, req);
  }
  return Select(service.ns + "/" + service.name, port, req);
}

}  // namespace weft::ztunnel::traffic
