// Generated Kubernetes manifests for the control-plane scale benchmark (weft-cp-bench): a
// realistic-looking cluster of namespaces, Deployments' pods (labels, pod-template-hash,
// ReplicaSet ownerReferences, service accounts, named container ports, pod IPs, nodeName spread
// over the nodes), Services selecting Deployments, and a mix of AuthorizationPolicies,
// PeerAuthentications and NetworkPolicies with selectors, in the file layout weftd's local
// source reads (--manifests DIR).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace weft::bench::cpscale {

struct ClusterSpec {
  int pods = 10000;
  int services = 1000;
  int nodes = 100;
  int policies = 500;
  int namespaces = 50;
  uint64_t seed = 1;
};

// Where an object lives: file name (relative to the manifest directory) and index in it.
struct ObjectRef {
  std::string file;
  size_t index = 0;
};

struct GenPod {
  std::string ns, name, app, node;
  ObjectRef ref;
};

struct GenPolicy {
  std::string kind, ns, name;
  std::string app;  // the selector's app label; empty: namespace-wide or mesh-wide
  ObjectRef ref;
};

struct Cluster {
  std::vector<std::string> nodes;  // node-000, node-001, ...
  std::vector<GenPod> pods;
  std::vector<GenPolicy> policies;
  std::map<std::string, std::vector<nlohmann::json>> files;  // file -> objects

  nlohmann::json& At(const ObjectRef& r) { return files.at(r.file).at(r.index); }
  // Nodes running a pod of namespace `ns` with label app=`app` (empty app: any pod of ns).
  std::set<std::string> NodesOf(const std::string& ns, const std::string& app) const;
};

Cluster Generate(const ClusterSpec& spec);

// Writes one file atomically (temporary file in the same directory, then rename), so the local
// source never reads half a file. Block-style YAML documents separated by "---".
absl::Status WriteManifestFile(const std::string& dir, const std::string& file,
                               const std::vector<nlohmann::json>& objects);
// Writes every file; returns the total number of bytes written.
absl::StatusOr<size_t> WriteCluster(const Cluster& c, const std::string& dir);

}  // namespace weft::bench::cpscale
