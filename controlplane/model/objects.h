// Internal to weft_cp_model: the typed, validated forms of the Kubernetes objects the model
// keeps, and the parsers that produce them from JSON (Parse* return InvalidArgument with
// "<field path>: <problem>").
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/model/routes.h"
#include "nlohmann/json.hpp"
#include "weft/config/v1/config.pb.h"

namespace weft::cp::internal {

using Labels = std::map<std::string, std::string>;

struct LabelRequirement {
  enum class Op { kIn, kNotIn, kExists, kDoesNotExist };
  std::string key;
  Op op = Op::kIn;
  std::set<std::string> values;
};

// Kubernetes LabelSelector: matchLabels AND matchExpressions; empty matches everything.
struct LabelSelector {
  Labels match_labels;
  std::vector<LabelRequirement> expressions;
  bool Matches(const Labels& labels) const;
};

struct NamespaceObj {
  Labels labels;
};

struct PodObj {
  std::string uid;  // metadata.uid, or "<ns>/<name>" when absent
  std::string node, service_account, phase, netns_path, workload_name;
  std::vector<std::string> ips;
  Labels labels;
  bool host_network = false;
  std::map<std::string, uint16_t> named_ports;  // TCP container ports by name
};

struct ServicePortObj {
  uint16_t port = 0;
  uint16_t target_port = 0;                  // numeric targetPort; 0 when named or absent
  std::string target_port_name;              // named targetPort
  std::string name, app_protocol, protocol;  // protocol: TCP/UDP/SCTP
};

struct ServiceObj {
  std::vector<std::string> cluster_ips;
  std::vector<ServicePortObj> ports;
  std::optional<Labels> selector;  // nullopt: no selector (endpoints managed elsewhere)
};

struct SliceEndpoint {
  std::vector<std::string> addresses;
  bool ready = true;
  std::string target_uid, target_ns, target_name;  // targetRef to a Pod, if any
};

struct SliceObj {
  std::string service;  // label kubernetes.io/service-name
  std::vector<SliceEndpoint> endpoints;
  std::map<std::string, uint16_t> ports;  // port name -> target port number
};

struct ServiceAccountObj {};

struct NetPeer {
  std::optional<LabelSelector> pod_selector, namespace_selector;
  std::optional<std::pair<std::string, std::vector<std::string>>> ip_block;  // cidr, except
};

struct NetPort {
  std::string protocol = "TCP";
  uint16_t port = 0;  // 0: every port (of the protocol)
  std::string port_name;
  uint16_t end_port = 0;
};

struct NetRule {
  bool all_sources = false;
  std::vector<NetPeer> from;
  bool all_ports = false;
  std::vector<NetPort> ports;
};

struct NetPolObj {
  LabelSelector pod_selector;
  bool ingress_isolated = true;  // policyTypes includes Ingress
  bool has_egress = false;
  std::vector<NetRule> ingress;
};

using Parsed =
    std::variant<NamespaceObj, PodObj, ServiceObj, SliceObj, ServiceAccountObj, NetPolObj,
                 weft::config::v1::AuthorizationPolicy, weft::config::v1::PeerAuthentication,
                 RouteObj, ReferenceGrantObj, TrafficPolicyObj>;

struct KindInfo {
  std::string_view kind;
  std::string_view api_version;
  bool namespaced;
  // Other versions (or groups: Istio's security.istio.io) read exactly the same way.
  std::array<std::string_view, 2> alt_api_versions = {};
  bool Accepts(std::string_view v) const {
    if (v == api_version) return true;
    for (std::string_view alt : alt_api_versions) {
      if (!alt.empty() && v == alt) return true;
    }
    return false;
  }
  // "" when Accepts(v), else "\"<v>\" is not supported for <kind> (want A, B or C)".
  std::string VersionProblem(std::string_view v) const;
};
// nullptr for unsupported kinds.
const KindInfo* FindKind(std::string_view kind);

struct ObjectId {
  std::string kind, ns, name;
};

// Reads apiVersion/kind/metadata.name/namespace. `kind` overrides an absent object kind and
// must agree with a present one. Namespaced kinds without a namespace get "default".
absl::StatusOr<ObjectId> ParseId(const std::string& kind, const nlohmann::json& object);
// What the model enforces instead of what a policy asked for, and why (policies.h).
struct FailClosed {
  std::string reason;  // every problem, "; "-joined, each "<field path>: <problem>"
  std::string effect;  // what is enforced instead, for weftctl status / validate
  std::string label;   // bounded metric label: deny_all, allow_nothing, allow_rules_dropped,
                       // custom_as_deny, deny_widened, audit_widened, dry_run_enforced, strict
};

// Full validation and conversion of an object whose id ParseId accepted. AuthorizationPolicy and
// PeerAuthentication are never rejected here: what cannot be read in them is enforced
// fail-closed (policies.h) and described in *fail_closed; with fail_closed == nullptr such a
// policy is an InvalidArgument error with the reasons instead.
absl::StatusOr<Parsed> ParseObject(const ObjectId& id, const nlohmann::json& object,
                                   std::optional<FailClosed>* fail_closed = nullptr);

}  // namespace weft::cp::internal
