// Route selection for the source-side HTTP proxy (issue 15): which Gateway API route rule of a
// Service (GAMMA: HTTPRoutes and GRPCRoutes whose parentRef is the Service) a request takes.
//
// Semantics (Gateway API, exactly):
// - Routes apply to traffic addressed to their parent Service (the caller passes the Service the
//   request's destination resolved to, never a pod called directly) and to `parent_port`'s port
//   (0: every port).
// - Producer routes (in the Service's namespace) apply to every client; consumer routes (in
//   another namespace) apply only to clients in their own namespace, and when a client's
//   namespace has any for the Service and port, they replace the producer routes for it.
// - Hostnames: the request's Host (port and trailing dot dropped, case-insensitive) picks, as an
//   Envoy virtual host does, the routes listing it exactly, else those with the longest matching
//   wildcard ("*.example.com" matches "a.example.com" and "a.b.example.com", not
//   "example.com"), else those without hostnames; a request matching none of these is "no
//   match".
// - Among the picked routes' rules, precedence: Exact path > RegularExpression path (Weft's
//   choice; the spec leaves it to the implementation) > the longest PathPrefix (element-wise) >
//   a method match > most header matches > most query-parameter matches > the oldest route
//   (creation_timestamp_ms) > "<namespace>/<name>" alphabetically > rule order > match order.
//   Header names are case-insensitive (repeated headers are matched joined with ","), query
//   parameters case-sensitive (the first occurrence, percent-decoded); regexes are RE2 full
//   matches.
//
// Cost: tables are compiled once per snapshot (Router::Build); Select does a hash lookup per
// path element, and within one path a lookup by the value of the header most of its rules match
// exactly, so it does not grow with the number of routes unless many routes share one path and
// differ only by method, regexes or query parameters (those are scanned in precedence order).
// bench/routing measures it.
//
// Thread-safety: a Router is immutable; Select is thread-safe. It holds the snapshot it was built
// from, so the pointers in a RouteSelection live as long as the Router.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel::traffic {

// Request headers as the HTTP paths carry them (ztunnel/rbac/request.h HttpRequestAttributes):
// names lower-case, in received order, repeated names repeated.
using Headers = std::vector<std::pair<std::string, std::string>>;

struct RouteRequest {
  std::string_view client_namespace;  // the source workload's namespace
  std::string_view method;            // "GET"
  std::string_view path;       // origin-form path with its query ("/a/b?x=1"), as normalised by
                               // NormalizeRequestTarget (path + query)
  std::string_view authority;  // Host / :authority as received, may carry ":port"
  const Headers* headers = nullptr;
};

struct RouteSelection {
  enum class Kind {
    kNoRoutes,  // no route applies to this Service, port and client: use the Service itself
    kNoMatch,   // routes apply but none matches: answer 404 with response flag "NR"
    kMatched,
  };
  Kind kind = Kind::kNoRoutes;
  const config::HttpRoute* route = nullptr;  // kMatched only
  const config::HttpRouteRule* rule = nullptr;
  const config::HttpRouteMatch* match = nullptr;  // the matching entry (rewrites need its path)
  uint32_t rule_index = 0;
};

class Router {
 public:
  // Compiles the route tables of every Service `snapshot` has routes for.
  static std::shared_ptr<const Router> Build(SnapshotPtr snapshot);

  // The winning rule for a request to Service "<namespace>/<name>" on service port `port`.
  RouteSelection Select(std::string_view service_key, uint16_t port, const RouteRequest& req) const;
  // The same, for a Service of the snapshot.
  RouteSelection Select(const config::Service& service, uint16_t port,
                        const RouteRequest& req) const;

  const ConfigSnapshot& snapshot() const { return *snapshot_; }

  // Compiled form (router.cc); public only so that router.cc's helpers can name it.
  struct Candidate {
    const config::HttpRoute* route;
    const config::HttpRouteRule* rule;
    const config::HttpRouteMatch* match;
    uint32_t rule_index;
    uint32_t match_index;
  };
  // The candidates of one path, in precedence order. A large bucket whose candidates mostly
  // match one header exactly is also indexed by that header's value, so that routes sharing a
  // path and told apart by a header (x-tenant, x-version, ...) stay a lookup.
  struct Bucket {
    std::vector<Candidate> candidates;
    std::string key_header;                                            // empty: not indexed
    absl::flat_hash_map<std::string, std::vector<uint32_t>> by_value;  // positions, ascending
    std::vector<uint32_t> others;  // positions without an exact match on key_header
  };
  struct MatchTable {  // the rules of one virtual host, indexed by path
    absl::flat_hash_map<std::string, Bucket> exact;
    Bucket regex;
    absl::flat_hash_map<std::string, Bucket> prefix;  // no trailing '/'
  };
  struct HostTables {  // the routes of one (Service, port, audience), by hostname
    absl::flat_hash_map<std::string, MatchTable> exact_hosts;
    absl::flat_hash_map<std::string, MatchTable> wildcard_hosts;  // "*.a.com" keyed ".a.com"
    std::unique_ptr<MatchTable> any_host;                         // routes without hostnames
    bool has_hostnames = false;
  };
  struct PortTables {
    absl::flat_hash_map<uint16_t, HostTables> by_port;  // routes on that port + on every port
    std::unique_ptr<HostTables> every_port;             // routes on every port only
    const HostTables* For(uint16_t port) const;
  };
  struct ServiceTables {
    std::string ns;  // the Service's namespace
    PortTables producer;
    absl::flat_hash_map<std::string, PortTables> consumers;  // by client namespace
  };

 private:
  explicit Router(SnapshotPtr s) : snapshot_(std::move(s)) {}

  SnapshotPtr snapshot_;
  absl::flat_hash_map<std::string, ServiceTables> services_;
};

}  // namespace weft::ztunnel::traffic
