// The config model: the validated, typed form of weft.config.v1 objects that ztunnel works on
// and weftd validates against. Built from protobuf one object at a time by the conversions in
// config/model/convert.h (which validate everything about the object), then read-only: the data
// path never touches generated code.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/net.h"
#include "common/spiffe.h"

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

}  // namespace weft::config
