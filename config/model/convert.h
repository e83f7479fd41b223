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

}  // namespace weft::config
