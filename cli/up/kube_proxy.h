// What kube-proxy does for pods outside the mesh, in the local mesh's node namespaces: a
// Service's cluster IP and port are DNATed, in the node's PREROUTING (the path every packet of a
// pod takes), to one of its ready endpoints chosen at random. Enrolled pods never get there:
// their connections are captured in the pod netns and ztunnel resolves the Service itself, as in
// a cluster.
//
// Rules live only in the testbed's node namespaces (which `up` owns outright, so the whole nat
// table there is replaced atomically by one iptables-restore), in chains named WEFT-SERVICES,
// WEFT-SVC-<i>, WEFT-SEP-<i>-<j> and WEFT-POSTROUTING. A packet from an endpoint to its own
// Service (hairpin) is SNATed to the pods' gateway 169.254.1.1 so the reply comes back through
// the node. A Service port without ready endpoints has no rule: nodes have no route for cluster
// IPs, so such a connection fails at once (no route to host).
//
// Pure functions, tested without root; the supervisor applies the script.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/net.h"
#include "nlohmann/json.hpp"

namespace weft::up {

struct ServiceEndpoint {
  IpAddr ip;
  uint16_t port = 0;
  friend bool operator==(const ServiceEndpoint&, const ServiceEndpoint&) = default;
};

struct ServiceRule {
  std::string ns, name;
  IpAddr vip;
  uint16_t port = 0;
  std::string protocol = "TCP";            // TCP | UDP (others are skipped)
  std::vector<ServiceEndpoint> endpoints;  // ready ones, sorted
};

// Whether the pod's process is running (its container would be Ready).
using PodReady = std::function<bool(const std::string& ns, const std::string& name)>;

// From the runtime objects (Pods with status.podIP, Services, EndpointSlices): one rule per
// Service port with a cluster IP. Endpoints: the Service's EndpointSlices when it has any
// (conditions.ready, absent = ready; port by the Service port's name), else the Running pods in
// its namespace matching spec.selector for which `ready` says yes. targetPort: a number, a
// container port name of the endpoint pod, or absent (= port).
std::vector<ServiceRule> ComputeServiceRules(const std::vector<nlohmann::json>& objects,
                                             const PodReady& ready);

// The iptables-restore input (the whole nat table) that programs `rules`.
std::string IptablesRestoreScript(const std::vector<ServiceRule>& rules);

}  // namespace weft::up
