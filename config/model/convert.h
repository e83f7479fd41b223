// Per-object validation and conversion of weft.config.v1 objects into the config model
// (config/model/types.h), one function per kind, in the manner of ztunnel's per-type TryFrom.
// ztunnel builds its snapshots with them (adding the checks that span objects: duplicate keys,
// an address claimed twice, endpoints naming unknown workloads) and weftd validates the objects it
// accepts with the same functions, so the two agree on what is valid.
//
// Every error is a ConfigError: the field path inside the object and the reason. Callers name the
// object their own way: ztunnel `authorization_policy "prod/deny-db": rules[0].from[0]...: bad
// CIDR ...`, weftd `spec.rules[0].from[0]...: bad CIDR ...`.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/model/types.h"
#include "weft/config/v1/config.pb.h"

namespace weft::config {

// A validation error inside one object: `path` is the field path from the object's root, in the
// proto's JSON names ("name", "rules[0].from[1].source.ipBlocks[2]"); `reason` says what is wrong
// ("is required", "bad CIDR ...").
struct ConfigError {
  std::string path;
  std::string reason;

  std::string ToString() const;  // "<path>: <reason>"
};

// The InvalidArgument status the conversions return: message "<path>: <reason>", with `path` and
// `reason` attached as payloads, so that callers read them with GetConfigError rather than by
// parsing the message.
absl::Status ConfigErrorStatus(std::string_view path, std::string_view reason);
// The ConfigError carried by `status`; nullopt for OK and for statuses not made by
// ConfigErrorStatus.
std::optional<ConfigError> GetConfigError(const absl::Status& status);

// A trust domain: non-empty, no '/', '?', '#', ':' or whitespace. Error path "trustDomain".
absl::Status CheckTrustDomain(std::string_view trust_domain);

// The key checks every kind shares, in the order the conversions apply them: a workload's uid
// (path "uid"); a namespaced object's name, then namespace (paths "name", "namespace"). Callers
// that detect duplicate keys across objects check the key first, then duplicates, then convert.
absl::Status CheckWorkloadKey(const v1::Workload& pb);
absl::Status CheckNamedKey(std::string_view name, std::string_view ns);

// Workload: uid and namespace required; defaults service_account "default", workload_name = name
// (or uid), trust_domain = `default_trust_domain`. Unknown protocol/phase, bad addresses (or one
// listed twice), ports and CIDRs are errors.
absl::StatusOr<Workload> WorkloadFromProto(const v1::Workload& pb,
                                           std::string_view default_trust_domain);
// Service: name and namespace required; hostname defaults to "<name>.<ns>.svc.cluster.local",
// targetPort to port; addresses and ports must not repeat; every endpoint names a workload uid.
// ready_endpoint_uids keeps the ready ones, in order, without repeats. Whether those workloads
// exist is the caller's check.
absl::StatusOr<Service> ServiceFromProto(const v1::Service& pb);
// AuthorizationPolicy: Istio semantics, L4 subset (see AuthzCondition for the `when` keys).
absl::StatusOr<AuthorizationPolicy> AuthorizationPolicyFromProto(const v1::AuthorizationPolicy& pb);
// The parts of one AuthorizationPolicy rule, converted one at a time with the same checks as
// AuthorizationPolicyFromProto; `path` is the part's field path (errors name fields below it).
// weftd uses them to find exactly which part of a policy it cannot use, so that it enforces the
// rest fail-closed instead of dropping the whole policy (docs/security.md).
absl::StatusOr<AuthzSource> AuthzSourceFromProto(const v1::Source& pb, std::string_view path);
absl::StatusOr<AuthzOperation> AuthzOperationFromProto(const v1::Operation& pb,
                                                       std::string_view path);
absl::StatusOr<AuthzCondition> AuthzConditionFromProto(const v1::Condition& pb,
                                                       std::string_view path);
// PeerAuthentication: known modes; portLevelMtls only with a selector.
absl::StatusOr<PeerAuthentication> PeerAuthenticationFromProto(const v1::PeerAuthentication& pb);
// NetworkPolicy (ingress, resolved by weftd): CIDRs with excepts inside them, ports 1..65535,
// endPort not below port, protocols TCP/UDP/SCTP. Workload uids are not checked (a per-node
// view may leave them out).
absl::StatusOr<NetworkPolicy> NetworkPolicyFromProto(const v1::NetworkPolicy& pb);

// ---- traffic management (issue 15)

// "<namespace>/<name>" naming a Service: two DNS labels (lower-case letters, digits and '-', at
// most 63 characters, starting and ending with a letter or digit). Error path `path`.
absl::Status CheckServiceRef(std::string_view ref, std::string_view path);
// A Gateway API hostname: lower-case DNS name, optionally with a leading "*." wildcard label
// (`allow_wildcard`); no IP addresses, no port.
absl::Status CheckHostname(std::string_view host, std::string_view path, bool allow_wildcard);

// HttpRoute (an HTTPRoute or GRPCRoute for one parent Service, resolved by weftd): name,
// namespace and parentService required; hostnames valid; paths start with '/' (Exact and
// PathPrefix also without "//", "/./", "/../", "%2f", "#" and not ending in "/." or "/.."),
// regexes compile (RE2, compiled here once and kept); header names are HTTP tokens (lower-cased),
// values without CR/LF/NUL; methods among GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH;
// filters: at most one of each kind but RequestMirror, no RequestRedirect with URLRewrite,
// ReplacePrefixMatch only on a rule whose single match is a PathPrefix, redirect schemes
// http/https and status codes 301/302/303/307/308, percentages 0..100, service refs
// "<namespace>/<name>", backend weights 0..1000000 with header-modifier filters only,
// timeouts.backendRequest not above timeouts.request, retry codes 400..599.
absl::StatusOr<HttpRoute> HttpRouteFromProto(const v1::HttpRoute& pb);
// TrafficPolicy: name and namespace required; targetService "<namespace>/<name>" in the policy's
// namespace; retryOn names known (Envoy's, comma-separated lists accepted, numeric codes join
// retriableStatusCodes), status codes 100..599, a budget with a ratio 0..1000 and a TTL of
// 1..60 s (0: 10 s); fault delays > 0 ms, aborts with exactly one of an HTTP status (200..599) or
// a gRPC status (1..16), percentages 0..100; maxEjectionPercent 0..100; routeFaultInjection keys
// "<namespace>/<name>" or "<namespace>/<name>#<rule name>".
absl::StatusOr<TrafficPolicy> TrafficPolicyFromProto(const v1::TrafficPolicy& pb);

}  // namespace weft::config
