// `weftctl up`'s manifest processing, without root and without side effects: from the user's
// Kubernetes manifests to what the local mesh runs and what weftd is shown.
//
//   * Pods (and Deployments, expanded into `replicas` Pods named <deploy>-<hash>-<suffix> with a
//     ReplicaSet owner, as the controllers would) are placed on nodes node0..node<N-1>:
//     spec.nodeName when it names one of them, else round-robin in manifest order. Each gets the
//     testbed's address for its slot on that node (testbed::PodAddress).
//   * Services without spec.clusterIP get one from 10.247.0.0/16 (the range `up` owns), in
//     manifest order, skipping user-given ones; "None" stays headless.
//   * Namespaces referenced by a Pod or Service but not defined get an unlabelled Namespace.
//   * The effective objects are what the cluster would show: Pods with spec.nodeName,
//     status.phase Running, status.podIP(s), status.hostIP, annotation weft.dev/netns-path;
//     Services with their cluster IP. Written one object per file (ObjectFileName) into the
//     runtime manifest dir that weftd watches, so label/apply/delete can replace single objects.
//   * Each Pod's process: spec.containers[0].command + args with Kubernetes' $(VAR) expansion
//     over the container's environment: service links (<SVC>_SERVICE_HOST/_PORT for Services of
//     the Pod's namespace), HOSTNAME, then spec env in order (value, or valueFrom.fieldRef).
//
// Thread-compatible; pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "nlohmann/json.hpp"

namespace weft::up {

using Labels = std::map<std::string, std::string>;

inline constexpr char kMeshLabel[] = "weft.dev/mesh";
inline constexpr char kNetnsAnnotation[] = "weft.dev/netns-path";
inline constexpr char kVipRange[] = "10.247.0.0/16";

struct ManifestObject {
  std::string file;  // where it came from (for messages)
  nlohmann::json object;
};

// Every object of the *.yaml/*.yml/*.json files directly in `path` (sorted by name), or of the
// one file `path`, parsed as weftd's local source parses them.
absl::StatusOr<std::vector<ManifestObject>> LoadManifests(const std::string& path);

struct ContainerPort {
  std::string name;
  uint16_t port = 0;
  std::string protocol = "TCP";
};

struct PodPlan {
  std::string ns, name;
  std::string testbed_name;  // unique netns/cgroup suffix
  std::string workload;      // the Deployment's name, else the pod's
  int node = 0;
  int slot = 0;  // 1-based index among the pods of its node (testbed order)
  IpAddr ip;
  std::optional<IpAddr> ip6;
  std::string service_account = "default";
  Labels labels;
  bool enrolled = false;          // at up time (namespace label and pod label)
  std::vector<std::string> argv;  // command + args, expanded
  std::vector<std::pair<std::string, std::string>> env;  // the process's whole environment
  std::string working_dir;
  std::string restart_policy = "Always";  // Always | OnFailure | Never
  std::vector<ContainerPort> ports;
  nlohmann::json object;  // the effective Pod manifest
  std::string uid() const { return ns + "/" + name; }
};

struct ServicePortPlan {
  std::string name;
  uint16_t port = 0;
  std::string protocol = "TCP";
  nlohmann::json target_port;  // number, name, or null (= port)
};

struct ServicePlan {
  std::string ns, name;
  std::string cluster_ip;  // "" when headless
  std::vector<ServicePortPlan> ports;
  nlohmann::json object;  // the effective Service manifest
};

struct PlanOptions {
  int nodes = 1;
  bool ipv6 = true;
  std::string prefix = "weft-up0-0";  // the testbed prefix (netns paths)
};

struct Plan {
  std::vector<PodPlan> pods;
  std::vector<ServicePlan> services;
  std::map<std::string, nlohmann::json> namespaces;  // name -> Namespace object
  std::vector<nlohmann::json> others;                // every other supported object, as given
  std::vector<std::string> warnings;                 // ignored kinds, unknown nodeNames, ...

  // file name -> object: what the runtime manifest dir holds at up time.
  std::map<std::string, nlohmann::json> RuntimeFiles() const;
  const PodPlan* FindPod(std::string_view ns, std::string_view name) const;
};

absl::StatusOr<Plan> MakePlan(const std::vector<ManifestObject>& objects, const PlanOptions& opts);

// "<kind>_<ns>_<name>.json" (kind lowercased; "<kind>_<name>.json" for cluster-scoped kinds).
std::string ObjectFileName(const nlohmann::json& object);
std::string ObjectFileName(std::string_view kind, std::string_view ns, std::string_view name);
// Whether `kind` is cluster-scoped (Namespace and the like): no namespace defaults to "".
bool ClusterScoped(std::string_view kind);

// weftd's enrolment rule: the namespace has weft.dev/mesh=enabled and the pod does not have
// weft.dev/mesh=disabled.
bool Enrolled(const Labels& namespace_labels, const Labels& pod_labels);

// Kubernetes' $(VAR) expansion: $(NAME) becomes lookup(NAME) when it returns a value and stays
// as written otherwise; $$ is a literal $; any other $ is kept.
std::string ExpandVars(std::string_view in,
                       const std::function<std::optional<std::string>(std::string_view)>& lookup);

// The hosts file of a pod: localhost, the pod's own name and addresses, and every Service of
// `objects` (runtime manifests) as NAME.NS.svc.cluster.local and NAME.NS (plus NAME for Services
// of the pod's namespace); a headless Service lists its selected pods' IPs.
std::string HostsFile(const std::vector<nlohmann::json>& objects, const std::string& ns,
                      const std::string& name, const IpAddr& ip, const std::optional<IpAddr>& ip6);
// The same for a planned pod over the plan's runtime objects.
std::string HostsFile(const Plan& plan, const PodPlan& pod);

// A Service applied to a live mesh gets its cluster IP as at up time: kept when given (checked
// against the testbed ranges and the other Services of `existing`), the previous one when the
// Service already exists, else the first free address of kVipRange. Sets spec.clusterIP(s).
absl::Status AssignClusterIp(nlohmann::json& service, const std::vector<nlohmann::json>& existing);

// Applies a kubectl-style label change ("key=value" sets, "key-" removes) to `labels`.
// FailedPrecondition when a key already has another value and !overwrite (kubectl's rule);
// InvalidArgument for a malformed change. Returns whether anything changed.
absl::StatusOr<bool> ApplyLabelChange(Labels& labels, std::string_view change, bool overwrite);

}  // namespace weft::up
