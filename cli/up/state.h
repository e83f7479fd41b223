// Where a local mesh (`weftctl up`) keeps its state, and the state file that lets the other
// commands (down, label, logs, apply, delete, exec, stat) find it.
//
// Layout: <root>/<name>/ with root = --state-root, else $WEFT_STATE_ROOT, else /run/weft (a
// tmpfs: like the namespaces it describes, the state does not survive a reboot):
//   state.json            MeshState (below), written atomically; present while the mesh exists
//   manifests/            the runtime manifest dir weftd watches: one object per file,
//                         "<kind>_<ns>_<name>.json" (label/apply/delete edit these)
//   manifests.lock        flock serializing edits of manifests/
//   pods/<ns>_<name>/     a pod's hosts file (bind-mounted over /etc/hosts) and working dir
//   weftd/                weftd's --state-dir: ca/ (mesh root), tokens/<node>.token
//   logs/                 supervisor.log, weftd.log, ztunnel-node<i>.log, agent-node<i>.log,
//                         pod-<ns>-<name>.log
//   node<i>.sock          agent -> ztunnel handoff sockets (node<i>.sock.takeover: ztunnel's
//                         listener takeover, docs/upgrades.md)
//   upgrades/             `weftctl upgrade` requests to the supervisor (<node>.request.json)
//                         and its answers (<node>.result.json)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace weft::up {

struct MeshPaths {
  std::string dir;  // <root>/<name>
  std::string state_file, manifests, lock_file, pods, logs, weftd_state, upgrades;
  std::string PodDir(const std::string& ns, const std::string& name) const;
  std::string PodLog(const std::string& ns, const std::string& name) const;
};

// --state-root if given, else $WEFT_STATE_ROOT, else /run/weft.
std::string StateRoot(const std::string& flag);

// --name NAME and --state-root DIR: which local mesh a command acts on.
void AddMeshFlags(CLI::App& app, std::string* name, std::string* state_root);
MeshPaths PathsFor(const std::string& root, const std::string& name);
// Mesh names: 1..40 of [a-z0-9-], starting with a letter or digit.
absl::Status ValidateMeshName(const std::string& name);

struct PodState {
  std::string ns, name, workload;
  int node = 0;
  std::string ip, ip6;
  std::string netns, cgroup, hosts_file, log, working_dir;
  bool enrolled = false;  // at up time; `label` may change it since
  std::vector<std::string> argv;
  std::vector<std::vector<std::string>> env;  // [name, value] pairs
  int pid = 0;
  int restarts = 0;
};

struct NodeState {
  std::string name;  // node<i>
  std::string netns, ip;
  std::string metrics;  // ztunnel's Prometheus endpoint, ip:port, inside `netns`
  std::string ztunnel_log, agent_log;
  int ztunnel_pid = 0, agent_pid = 0;
  std::string admin;  // ztunnel's admin endpoint (loopback), ip:port, inside `netns`
};

struct ServiceState {
  std::string ns, name, cluster_ip;
  std::vector<std::string> ports;  // "80->8080/TCP"
};

struct WeftdState {
  std::string netns;                            // node0's
  std::string grpc, admin, metrics, readiness;  // ip:port inside netns
  std::string log;
  int pid = 0;
};

struct MeshState {
  std::string name;
  std::string status;  // starting | ready | stopping
  int supervisor_pid = 0;
  uint64_t supervisor_start_time = 0;  // /proc/<pid>/stat starttime: guards against pid reuse
  std::string prefix;                  // the testbed prefix: every netns/cgroup/pin carries it
  std::string capture;
  std::string source;  // the MANIFEST_DIR given to up
  std::string dir;     // MeshPaths::dir
  WeftdState weftd;
  std::vector<NodeState> nodes;
  std::vector<PodState> pods;
  std::vector<ServiceState> services;
  std::vector<std::string> warnings;
  // ManifestsSignature of the runtime manifests whose service rules and hosts files are in
  // force (what `--wait` compares against).
  std::string synced_manifests;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PodState, ns, name, workload, node, ip, ip6, netns,
                                                cgroup, hosts_file, log, working_dir, enrolled,
                                                argv, env, pid, restarts)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(NodeState, name, netns, ip, metrics, admin,
                                                ztunnel_log, agent_log, ztunnel_pid, agent_pid)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ServiceState, ns, name, cluster_ip, ports)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(WeftdState, netns, grpc, admin, metrics, readiness,
                                                log, pid)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MeshState, name, status, supervisor_pid,
                                                supervisor_start_time, prefix, capture, source, dir,
                                                weftd, nodes, pods, services, warnings,
                                                synced_manifests)

// `weftctl upgrade ztunnel` asks the supervisor (which owns the daemons) to replace a node's
// ztunnel; the supervisor answers with an UpgradeResult of the same id.
struct UpgradeRequest {
  std::string id, node, binary;   // binary "": the mesh's ztunnel
  int64_t drain_deadline_ms = 0;  // 0: ztunnel's default
};
struct UpgradeResult {
  std::string id, node;
  bool ok = false;
  std::string error;
  int old_pid = 0, new_pid = 0;
  int64_t drain_deadline_ms = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(UpgradeRequest, id, node, binary, drain_deadline_ms)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(UpgradeResult, id, node, ok, error, old_pid,
                                                new_pid, drain_deadline_ms)

absl::Status WriteState(const std::string& path, const MeshState& s);
// NotFound when there is no state file (no mesh of that name).
absl::StatusOr<MeshState> ReadState(const std::string& path);
// The argv of `weftctl ARGS` for the local mesh `name` under `state_root`: `--name` and
// `--state-root` go right after the command word, before any "--" (so `exec POD -- CMD` keeps
// its command's own flags), e.g. {weftctl, "exec", "--name", N, "--state-root", R, "p", "--", ...}.
std::vector<std::string> WeftctlArgv(const std::string& weftctl, const std::string& name,
                                     const std::string& state_root, std::vector<std::string> args);

// Reads <root>/<name>/state.json; NotFound says "no mesh named ... (weftctl up ...)".
absl::StatusOr<MeshState> LoadMesh(const std::string& root, const std::string& name);

// A digest of the runtime manifest dir: its manifest files' names, sizes and mtimes.
std::string ManifestsSignature(const std::string& dir);

// The kernel's start time of `pid` (clock ticks since boot), 0 if it is not running.
uint64_t ProcessStartTime(pid_t pid);
// Whether the mesh's supervisor is the live process recorded in the state.
bool SupervisorAlive(const MeshState& s);

// Finds a pod by "NS/NAME" or by NAME alone (unique across namespaces). Errors list candidates.
absl::StatusOr<const PodState*> FindPod(const MeshState& s, const std::string& ref);
// A node by "node<i>" or "<i>".
absl::StatusOr<const NodeState*> FindNode(const MeshState& s, const std::string& ref);

}  // namespace weft::up
