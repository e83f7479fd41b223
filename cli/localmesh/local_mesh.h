// A whole mesh on one host: a testbed (nodes and pods as network namespaces), mesh
// certificates, a standalone config file, and one ztunnel + one weft-agent per node, running as
// real processes inside the node namespaces. Used by the namespaced integration tests, the
// README demo and the benchmark; the precursor of `weftctl up`.
//
// Layout under work_dir: certs/ (FileCertificateProvider layout), mesh.yaml (the config every
// node reads), node<i>.sock (handoff sockets), logs/ztunnel-<i>.log, logs/agent-<i>.log.
// Not thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/testbed/testbed.h"
#include "common/tls.h"
#include "common/unique_fd.h"

namespace weft::localmesh {

struct MeshPod {
  std::string name;  // pod name; uid is "<namespace>/<name>"
  std::string ns = "default";
  std::string service_account = "default";
  int node = 0;
  bool mesh = true;  // enrolled (HBONE) or not (plain TCP, no capture)
  std::map<std::string, std::string> labels;
  std::string workload_name;  // default: name
  // The testbed's pod name (its netns suffix and cgroup name), when `name` alone is not unique
  // across namespaces; default: name. Lookups by pod name accept `name`.
  std::string testbed_name;
};

struct MeshService {
  std::string name;
  std::string ns = "default";
  std::string vip;  // cluster IP
  uint16_t port = 80;
  uint16_t target_port = 0;
  std::vector<std::string> pods;  // endpoint pod names (ready)
};

struct Options {
  std::string role = "t";  // testbed prefix role ("t", "demo", "bench")
  std::string prefix;      // the testbed prefix; "" = testbed::UniquePrefix(role)
  int nodes = 2;
  std::vector<MeshPod> pods;
  std::vector<MeshService> services;
  std::string ztunnel_bin;
  std::string agent_bin;
  std::string work_dir;
  std::string capture = "iptables";  // weft-agent --capture: iptables | ebpf | auto | none
  int ztunnel_workers = 1;
  std::string log_level = "info";
  bool access_log = true;
  bool start_mesh = true;  // false: testbed only (bare baseline)
  // Control-plane mode: weftd (in node 0's netns) serves config and certificates from
  // Kubernetes manifests written to <work_dir>/manifests; ztunnels and agents use
  // --control-plane instead of mesh.yaml and certs/.
  bool control_plane = false;
  std::string weftd_bin;
  // Control-plane mode: weftd watches this directory, which the caller owns and writes (the
  // mesh writes no manifests, no mesh.yaml and no certificates; SetPolicies/SetMesh fail).
  // Pods must then be enrolled by the caller's manifests exactly when `mesh` says so.
  std::string manifests_dir;
  // A cgroup per pod (and the mesh cgroup) in every capture mode, not only eBPF.
  bool pod_cgroups = false;
  // Daemon logs named logs/ztunnel-node<i>.log and logs/agent-node<i>.log (default: -<i>.log).
  bool node_named_logs = false;
};

class LocalMesh {
 public:
  static absl::StatusOr<std::unique_ptr<LocalMesh>> Start(Options opts);
  ~LocalMesh();  // stops the processes, removes the testbed

  testbed::Testbed& testbed() { return *testbed_; }
  const Options& options() const { return opts_; }
  std::string PodUid(const std::string& pod) const;
  absl::StatusOr<IpAddr> PodIp(const std::string& pod) const {
    return testbed_->PodIp(TestbedName(pod));
  }
  absl::StatusOr<UniqueFd> PodNetns(const std::string& pod) const;
  absl::StatusOr<UniqueFd> NodeNetns(int node) const;
  // A TCP connection from `pod` as one of its processes would open it (in eBPF mode the
  // socket belongs to the pod's cgroup, so the capture hooks see it).
  absl::StatusOr<UniqueFd> Dial(const std::string& pod, const SockAddr& to,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  // Runs a process in the pod (its netns and, with cgroups, its cgroup).
  absl::StatusOr<testbed::Process> SpawnInPod(const std::string& pod,
                                              const std::vector<std::string>& argv,
                                              const std::string& log_path) const;
  bool ebpf() const { return opts_.capture == "ebpf"; }
  // The agent's pin directory for `node` (eBPF mode).
  std::string BpfPinDir(int node) const;
  absl::Status KillAgent(int node);
  // Control-plane mode: weftd's process and endpoints.
  absl::Status KillWeftd();
  absl::Status StartWeftd();                        // and waits until it serves
  absl::StatusOr<std::string> WeftdStatus() const;  // GET /status (JSON)
  std::string WeftdLog() const;
  std::string WeftdAddress() const;  // gRPC host:port the nodes use
  absl::Status StartAgent(int node);
  std::string AgentLog(int node) const;
  // How many snapshots the node's agent has sent to its ztunnel (its log's lines saying so):
  // one more after a restart once the agent has reconnected.
  int AgentSnapshotsSent(int node) const;
  const tls::CertificateAuthority& ca() const { return *ca_; }

  // Replaces the policy sections of the config (YAML lists, as under authorizationPolicies:
  // and peerAuthentications:) and waits until every ztunnel runs the new version.
  absl::Status SetPolicies(const std::string& authorization_policies_yaml,
                           const std::string& peer_authentications_yaml = "");
  // Enrols (`mesh` = true) or unenrols a pod live: rewrites the config and waits until every
  // ztunnel runs it (the agent applies it from the same file).
  absl::Status SetMesh(const std::string& pod, bool mesh);
  // GET http://<node ip>:15020/metrics from inside the node's netns.
  absl::StatusOr<std::string> Metrics(int node) const;
  std::string ZtunnelLog(int node) const;
  pid_t ztunnel_pid(int node) const;
  pid_t agent_pid(int node) const;
  pid_t weftd_pid() const;
  // Whether the daemon is still running (reaps it once it exited).
  bool ZtunnelAlive(int node);
  bool AgentAlive(int node);
  bool WeftdAlive();
  // The log file of a node daemon ("ztunnel" or "agent").
  std::string DaemonLogPath(const std::string& name, int node) const;
  absl::Status KillZtunnel(int node);
  absl::Status StartZtunnel(int node);  // and waits for readiness

  // Hitless upgrade of a node's ztunnel (docs/upgrades.md): starts `binary` (empty: the
  // mesh's ztunnel) next to the running one, waits until it took the listeners over (its pid
  // answers on the admin port), then SIGTERMs the old one, which drains its open connections
  // for `drain_deadline` (0: ztunnel's default) and exits. The old process is reaped by
  // ReapDraining (killed if it outlives its deadline by 15 s) or the destructor. If the new
  // one fails, the old one goes on serving and the error carries the new one's log.
  struct ZtunnelUpgrade {
    pid_t old_pid = -1, new_pid = -1;
    std::chrono::milliseconds drain_deadline{0};  // what the old one drains for
  };
  absl::StatusOr<ZtunnelUpgrade> UpgradeZtunnel(
      int node, const std::string& binary = "",
      std::chrono::milliseconds drain_deadline = std::chrono::milliseconds(0),
      std::chrono::milliseconds timeout = std::chrono::seconds(90));
  // Replaced ztunnels still draining (reaps the ones that exited).
  size_t ReapDraining();
  // GET /server_info on the node's ztunnel admin port: the pid of the process serving it.
  absl::StatusOr<pid_t> ZtunnelServerPid(int node) const;
  std::string config_path() const { return opts_.work_dir + "/mesh.yaml"; }
  std::string version() const { return "v" + std::to_string(version_); }

 private:
  LocalMesh() = default;
  absl::Status WriteConfig();
  absl::Status WriteManifests();
  // Hands the pods and policies to the mesh (weftd's manifests, or ztunnel's config file) and
  // waits until every node has them.
  absl::Status Publish();
  // Control-plane mode: waits until weftd's state moved from `before` (WeftdFingerprint: model
  // generation, rejected objects, file errors) and every stream has ACKed what it was sent.
  absl::Status WaitWeftdSettled(const std::string& before, std::chrono::milliseconds timeout);
  absl::StatusOr<std::string> WeftdFingerprint() const;
  absl::Status WaitVersion(std::chrono::milliseconds timeout);
  // Runs a node daemon (ztunnel or agent) in the node's netns with the flags both take
  // (--node, --config, --log-level), logging to logs/<name>-<node>.log.
  absl::StatusOr<testbed::Process> SpawnDaemon(int node, const std::string& name,
                                               std::vector<std::string> argv) const;
  std::string HandoffSocket(int node) const;
  std::string TestbedName(const std::string& pod) const;
  std::string ManifestsDir() const;

  Options opts_;
  std::unique_ptr<testbed::Testbed> testbed_;
  std::unique_ptr<tls::CertificateAuthority> ca_;
  std::vector<std::string> ZtunnelArgv(int node, const std::string& binary) const;
  std::vector<testbed::Process> ztunnels_, agents_;
  struct Draining {
    testbed::Process proc;
    std::chrono::steady_clock::time_point kill_at;
  };
  std::vector<Draining> draining_;
  testbed::Process weftd_;
  std::string authz_yaml_, peer_authn_yaml_;
  int version_ = 0;
};

}  // namespace weft::localmesh
