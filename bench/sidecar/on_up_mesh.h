// The sidecar reference mesh (sidecar_mesh.h) attached to a local mesh brought up by
// `weftctl up` (cli/up): the benchmark's "sidecar" mode on the same pods the Weft modes use.
//
// For the pods of the given namespaces (which should not be enrolled in Weft, or a request would
// cross both meshes):
//   * every pod gets a sidecar named "<ns>/<name>" (as `weftctl exec` names pods); its app ports
//     are its containers' TCP containerPorts; its SPIFFE id is ns/<ns>/sa/<serviceAccountName>
//     ("default" when the pod names none);
//   * every Service of those namespaces with a cluster IP becomes a SidecarService per TCP port:
//     address = cluster IP, the Service port, backends = the pods kube-proxy would pick
//     (up::ComputeServiceRules: its EndpointSlices, else the pods its selector matches), each
//     with its resolved targetPort (numbers and container port names) and its protocol
//     (PortProtocol, used by the HTTP mesh, SidecarOptions::http). Backends outside the
//     namespaces are left out; a Service port left without backends gets no sidecar route (its
//     connections then go, uncaptured, to the node's kube-proxy rules). A target port a
//     backend does not declare as a containerPort is added to that pod's app ports.
// The pods' objects come from the mesh's runtime manifests (<MeshState::dir>/manifests), else
// from the MANIFEST_DIR it was brought up from (MeshState::source); the pods' addresses and
// netns from the state.
//
// A process that `weftctl exec` starts in such a pod runs as root, not as the proxy user, so its
// connections are captured like the app's. IPv4 only: a pod's IPv6 address is not captured.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/sidecar/sidecar_mesh.h"
#include "cli/up/state.h"
#include "nlohmann/json.hpp"

namespace weft::bench::sidecar {

// What a Service port speaks, as Istio and Weft read it: its appProtocol when set ("http" ->
// kHttp; "http2", "h2c", "kubernetes.io/h2c", "grpc" -> kHttp2; "grpc-web" -> kHttp; anything
// else -> kTcp), else its name's Istio prefix (<protocol>[-<suffix>]: http, http2, grpc,
// grpc-web), else kTcp. `port` is one entry of a Service's spec.ports.
AppProtocol PortProtocol(const nlohmann::json& port);

// What StartOnUpMesh would run, without running anything (no root): the pods, their
// placements and the services.
struct UpMeshPlan {
  std::vector<PodPlacement> placements;
  std::vector<SidecarPod> pods;
  std::vector<SidecarService> services;
};
absl::StatusOr<UpMeshPlan> PlanOnUpMesh(const up::MeshState& mesh,
                                        const std::vector<std::string>& namespaces);

// The sidecar name of a pod of the local mesh: "<ns>/<name>".
std::string SidecarPodName(const std::string& ns, const std::string& name);
// The sidecar names of the mesh's pods in `namespaces`, in state order.
std::vector<std::string> SidecarPodNames(const up::MeshState& mesh,
                                         const std::vector<std::string>& namespaces);

// PlanOnUpMesh, then SidecarMesh::Start. InvalidArgument when a namespace has no pod (a typo
// would otherwise silently leave traffic outside the mesh).
absl::StatusOr<std::unique_ptr<SidecarMesh>> StartOnUpMesh(
    const up::MeshState& mesh, const std::vector<std::string>& namespaces, SidecarOptions opts);

}  // namespace weft::bench::sidecar
