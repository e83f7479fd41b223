// The config model: the validated, typed form of weft.config.v1 objects that ztunnel works on
// and weftd validates against. Built from protobuf one object at a time by the conversions in
// config/model/convert.h (which validate everything about the object), then read-only: the data
// path never touches generated code.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/net.h"
#include "common/spiffe.h"

namespace re2 {
class RE2;
}

namespace weft::config {

using Labels = std::map<std::string, std::string>;

enum class WorkloadProtocol { kTcp, kHbone };

// Defaults applied by WorkloadFromProto: service_account "default" when empty (what
// Kubernetes assigns to a pod without one), workload_name = name, trust_domain = the snapshot's.
struct Workload {
  std::string uid;
  std::string name;
  std::string ns;
  std::string service_account;
  std::string node;
  std::string workload_name;  // canonical name for metrics; defaults to name
  std::string trust_domain;   // defaults to the snapshot's trust domain
  std::string netns_path;     // local mode only
  std::vector<IpAddr> addresses;
  Labels labels;
  WorkloadProtocol protocol = WorkloadProtocol::kTcp;
  bool running = true;  // phase empty or "Running"
  std::vector<uint16_t> capture_exclude_ports;
  std::vector<Cidr> capture_exclude_cidrs;

  SpiffeId identity() const { return SpiffeId{trust_domain, ns, service_account}; }
  bool in_mesh() const { return protocol == WorkloadProtocol::kHbone; }
};

struct ServicePort {
  uint16_t port = 0;
  uint16_t target_port = 0;  // already defaulted to port
  std::string name;
  std::string app_protocol;
};

struct Service {
  std::string name;
  std::string ns;
  std::string hostname;  // defaults to "<name>.<ns>.svc.cluster.local"
  std::vector<IpAddr> addresses;
  std::vector<ServicePort> ports;
  std::vector<std::string> ready_endpoint_uids;  // only ready endpoints, in config order

  // The ServicePort whose service `port` equals `port`, or nullptr.
  const ServicePort* FindPort(uint16_t port) const;
};

// Istio string match: "*" any, "abc*" prefix, "*abc" suffix, else exact. Parse never fails;
// the conversions reject empty patterns and '*' anywhere else before calling it.
struct StringMatch {
  enum class Kind { kExact, kPrefix, kSuffix, kAny };
  Kind kind = Kind::kExact;
  std::string value;

  static StringMatch Parse(std::string_view pattern);
  bool Matches(std::string_view s) const;
};

struct AuthzSource {
  std::vector<StringMatch> principals, not_principals;
  std::vector<StringMatch> namespaces, not_namespaces;
  std::vector<Cidr> ip_blocks, not_ip_blocks;
  std::vector<Cidr> remote_ip_blocks, not_remote_ip_blocks;
  bool has_l7 = false;  // request_principals set: only evaluable at L7
};

struct AuthzOperation {
  std::vector<uint16_t> ports, not_ports;
  std::vector<StringMatch> hosts, not_hosts, methods, not_methods, paths, not_paths;
  bool has_l7() const;
};

// L4 `when` keys accepted: source.ip, remote.ip (both the peer address at L4),
// source.namespace, source.principal, destination.ip, destination.port; request.* keys are L7
// (has_l7); any other key (connection.sni, experimental.*, ...) is rejected by
// AuthorizationPolicyFromProto.
struct AuthzCondition {
  enum class Kind {
    kSourceIp,         // source.ip and remote.ip: ip_values/not_ip_values
    kDestinationIp,    // ip_values/not_ip_values
    kDestinationPort,  // port_values/not_port_values
    kSourceNamespace,  // match_values/not_match_values against the peer identity's namespace
    kSourcePrincipal,  // match_values/not_match_values against SpiffeId::Principal()
    kL7,               // request.*: not evaluable at L4 (see header_name for L7)
  };
  std::string key;
  std::vector<std::string> values, not_values;  // as written
  bool has_l7() const;

  // Parsed forms of values/not_values, filled by AuthorizationPolicyFromProto according to `kind`.
  Kind kind = Kind::kL7;
  std::vector<Cidr> ip_values, not_ip_values;
  std::vector<uint16_t> port_values, not_port_values;
  std::vector<StringMatch> match_values, not_match_values;
  // kL7 with a key of the form request.headers[NAME]: NAME lower-cased, and match_values /
  // not_match_values hold the values as Istio's header matchers read them (leading '*' suffix,
  // trailing '*' prefix, "*" presence, anything else exact). Empty for every other request.* key
  // (request.auth.*, malformed keys): those are evaluable nowhere in Weft.
  std::string header_name;
};

struct AuthzRule {
  std::vector<AuthzSource> from;
  std::vector<AuthzOperation> to;
  std::vector<AuthzCondition> when;
};

enum class AuthzAction { kAllow, kDeny, kAudit };

// Istio semantics: a policy with no rules matches nothing (so an ALLOW policy without rules
// denies everything it applies to); a rule with no from/to/when matches everything.
struct AuthorizationPolicy {
  std::string name;
  std::string ns;
  // nullopt: namespace-wide (mesh-wide in root namespace). A selector with empty matchLabels
  // is treated as absent, as Istio does.
  std::optional<Labels> selector;
  AuthzAction action = AuthzAction::kAllow;
  std::vector<AuthzRule> rules;
  bool dry_run = false;

  std::string key() const { return ns + "/" + name; }
};

enum class MtlsMode { kUnset, kDisable, kPermissive, kStrict };

// A selector applies only within the policy's own namespace (Istio). port_modes requires a
// selector; PeerAuthenticationFromProto rejects portLevelMtls on a namespace- or mesh-wide policy.
struct PeerAuthentication {
  std::string name;
  std::string ns;
  std::optional<Labels> selector;  // nullopt also for empty matchLabels
  MtlsMode mode = MtlsMode::kUnset;
  std::map<uint16_t, MtlsMode> port_modes;
};

// A NetworkPolicy's ingress part, resolved by weftd (see config.proto). A workload selected by
// any NetworkPolicy accepts a connection only when one rule of one of them matches.
struct NetworkPeer {
  Cidr cidr;
  std::vector<Cidr> except;
  bool Matches(const IpAddr& ip) const;
};

struct NetworkPortRange {
  uint16_t first = 0, last = 0;  // inclusive
  bool tcp = true;               // UDP/SCTP ranges never match proxied (TCP) connections
};

struct NetworkRule {
  bool all_sources = false;
  std::vector<NetworkPeer> from;
  bool all_ports = false;
  std::vector<NetworkPortRange> ports;
  bool Matches(const IpAddr& src, uint16_t dst_port) const;
};

struct NetworkPolicy {
  std::string name;
  std::string ns;
  std::vector<std::string> workload_uids;
  std::vector<NetworkRule> ingress;  // empty: deny all ingress
  std::string key() const { return ns + "/" + name; }
};

// True if every selector label is present in `labels` with the same value.
bool SelectorMatches(const Labels& selector, const Labels& labels);

// ---- traffic management (issue 15): Gateway API routes (GAMMA) and Weft's TrafficPolicy, as
// resolved by weftd (config.proto "traffic management"). Built by HttpRouteFromProto and
// TrafficPolicyFromProto, which validate everything and compile every regular expression once.

// A header or query-parameter match. `name` is lower-cased for headers (case-insensitive) and
// kept as written for query parameters (case-sensitive). `regex` is set for kRegex (RE2, full
// match), shared between copies.
struct HttpValueMatch {
  enum class Kind { kExact, kRegex };
  Kind kind = Kind::kExact;
  std::string name;
  std::string value;
  std::shared_ptr<const re2::RE2> regex;

  bool Matches(std::string_view v) const;
};

// A path match. kPrefix is element-wise ("/a" matches "/a", "/a/" and "/a/b", not "/ab");
// `value` keeps the prefix as written ("/" for a rule without a path match, the spec's default).
struct HttpPathMatch {
  enum class Kind { kExact, kPrefix, kRegex };
  Kind kind = Kind::kPrefix;
  std::string value;
  std::shared_ptr<const re2::RE2> regex;  // kRegex: RE2, full match against the path (no query)

  bool Matches(std::string_view path) const;  // `path` without the query
};

// One entry of a rule's `matches`: every condition must hold. Headers and query parameters keep
// only the first entry of each name (the spec: later equivalent names are ignored).
struct HttpRouteMatch {
  HttpPathMatch path;
  std::vector<HttpValueMatch> headers;
  std::vector<HttpValueMatch> query_params;
  std::string method;  // empty: any
};

struct HttpHeader {
  std::string name;  // lower-case
  std::string value;
};

struct HttpHeaderModifier {
  std::vector<HttpHeader> set;      // replace every value (or add when absent)
  std::vector<HttpHeader> add;      // append
  std::vector<std::string> remove;  // lower-case names
};

struct HttpPathModifier {
  enum class Kind { kNone, kReplaceFullPath, kReplacePrefixMatch };
  Kind kind = Kind::kNone;
  std::string value;  // kReplacePrefixMatch: may be empty ("" and "/" replace with "/")
};

struct HttpRequestRedirect {
  std::string scheme;    // "", "http" or "https"; empty: keep the request's
  std::string hostname;  // empty: keep the request's host
  HttpPathModifier path;
  uint16_t port = 0;           // 0: the spec's defaulting rules
  uint16_t status_code = 302;  // 301, 302, 303, 307 or 308
};

struct HttpUrlRewrite {
  std::string hostname;  // empty: keep
  HttpPathModifier path;
};

struct HttpRequestMirror {
  std::string service;  // "<namespace>/<name>"
  uint16_t port = 0;    // 0: the port the client called
  uint32_t percent = 100;
};

struct HttpBackendRef {
  std::string service;  // "<namespace>/<name>"; may be anything when `invalid`
  uint16_t port = 0;    // 0: the port the client called
  uint32_t weight = 1;  // 0: never chosen
  std::optional<HttpHeaderModifier> request_headers, response_headers;
  bool invalid = false;  // its share of the requests is answered 500
};

// Gateway API GEP-1731. Empty `codes` in the proto become 500, 502, 503 and 504 (the codes the
// spec requires every implementation to support); connection errors are always retried.
struct HttpRouteRetry {
  std::vector<uint16_t> codes;
  uint32_t attempts = 0;    // retries after the first try
  uint64_t backoff_ms = 0;  // 0: the implementation default (25 ms)
};

// A rule's filters, at most one of each kind except mirrors; never both a redirect and a rewrite.
struct HttpRouteRule {
  std::string name;
  std::vector<HttpRouteMatch> matches;  // never empty: no matches becomes one PathPrefix "/"
  std::optional<HttpHeaderModifier> request_headers, response_headers;
  std::optional<HttpRequestRedirect> redirect;
  std::optional<HttpUrlRewrite> rewrite;
  std::vector<HttpRequestMirror> mirrors;
  std::vector<HttpBackendRef> backends;  // empty (and no redirect): answered 500
  uint64_t request_timeout_ms = 0;       // 0: none
  uint64_t backend_request_timeout_ms = 0;
  std::optional<HttpRouteRetry> retry;  // nullopt: the TrafficPolicy's retries apply
};

// One HTTPRoute or GRPCRoute for one parent Service (weftd sends one per Accepted parent).
struct HttpRoute {
  enum class Kind { kHttp, kGrpc };
  std::string name;
  std::string ns;
  Kind kind = Kind::kHttp;
  std::string parent_service;          // "<namespace>/<name>"
  uint16_t parent_port = 0;            // 0: every port
  std::vector<std::string> hostnames;  // lower-case, "*.example.com" wildcards
  std::vector<HttpRouteRule> rules;
  int64_t creation_timestamp_ms = 0;

  std::string key() const { return ns + "/" + name; }
  // The parent Service's namespace (the part of parent_service before '/').
  std::string_view parent_namespace() const;
  // A consumer route: in another namespace than its parent Service; applies only to clients in
  // its own namespace, and replaces the producer routes for them.
  bool is_consumer() const { return parent_namespace() != ns; }
};

// TrafficPolicy `retries.retryOn`, as bits.
enum RetryOn : uint32_t {
  kRetryOn5xx = 1u << 0,
  kRetryOnGatewayError = 1u << 1,  // 502, 503, 504
  kRetryOnReset = 1u << 2,
  kRetryOnConnectFailure = 1u << 3,
  kRetryOnRetriableStatusCodes = 1u << 4,
  kRetryOnGrpcCancelled = 1u << 5,
  kRetryOnGrpcDeadlineExceeded = 1u << 6,
  kRetryOnGrpcInternal = 1u << 7,
  kRetryOnGrpcResourceExhausted = 1u << 8,
  kRetryOnGrpcUnavailable = 1u << 9,
};

// Linkerd's defaults when the policy sets none.
struct RetryBudget {
  double retry_ratio = 0.2;
  uint32_t min_retries_per_second = 10;
  uint64_t ttl_ms = 10000;
  bool operator==(const RetryBudget&) const = default;
};

struct RetryPolicy {
  uint32_t attempts = 0;
  uint64_t per_try_timeout_ms = 0;               // 0: none
  uint32_t retry_on = 0;                         // RetryOn bits
  std::vector<uint16_t> retriable_status_codes;  // numeric retryOn entries land here too
  RetryBudget budget;
};

struct FaultDelay {
  uint64_t fixed_delay_ms = 0;
  double percentage = 0;  // 0..100
};

struct FaultAbort {
  uint16_t http_status = 0;  // 0: a gRPC abort
  int32_t grpc_status = -1;  // -1: an HTTP abort
  double percentage = 0;
};

struct FaultInjection {
  std::optional<FaultDelay> delay;
  std::optional<FaultAbort> abort;
};

struct ConnectionPool {  // 0: unlimited
  uint32_t max_connections = 0;
  uint32_t http1_max_pending_requests = 0;
  uint32_t http2_max_requests = 0;
  uint32_t max_requests_per_connection = 0;
  uint32_t max_retries = 0;
  bool operator==(const ConnectionPool&) const = default;
};

// Consecutive-error counters at 0 are off. Envoy's defaults for the rest: interval 10 s, base
// ejection time 30 s, max ejection 10 % (0 in the proto means the default).
struct OutlierDetection {
  uint32_t consecutive_5xx_errors = 0;
  uint32_t consecutive_gateway_errors = 0;
  uint64_t interval_ms = 10000;
  uint64_t base_ejection_time_ms = 30000;
  uint32_t max_ejection_percent = 10;
  bool operator==(const OutlierDetection&) const = default;
};

struct TrafficPolicy {
  std::string name;
  std::string ns;
  std::string target_service;  // "<namespace>/<name>", in the policy's namespace
  uint16_t target_port = 0;    // 0: every port
  std::optional<RetryPolicy> retries;
  std::optional<FaultInjection> fault_injection;
  std::optional<ConnectionPool> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  // Route "<namespace>/<name>" or "<namespace>/<name>#<rule name>" -> fault (replaces
  // fault_injection for that route or rule).
  std::map<std::string, FaultInjection> route_fault_injection;

  std::string key() const { return ns + "/" + name; }
};

}  // namespace weft::config
