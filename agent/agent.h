// weft-agent, standalone mode: reads the node's config from a file, enrolls this node's mesh
// pods (opens each pod's netns, installs the in-pod capture, hands the netns to ztunnel) and
// keeps ztunnel in sync as the file changes or ztunnel restarts.
//
// Order per pod (Istio ambient's): capture first, then the handoff, so an enrolled pod fails
// closed until ztunnel's in-pod listeners exist; on removal the capture goes first, then the
// DelWorkload. On every (re)connect the agent replays AddWorkload for all pods and then sends
// SnapshotSent, so ztunnel drops pods that went away while the agent was not connected.
// Exiting leaves the capture in place (pods stay fail-closed while the agent restarts) unless
// uninstall_on_exit is set.
//
// Capture modes: iptables (in-pod REDIRECT rules), ebpf (bpf/node.h: sk_lookup per pod netns,
// connect4/6 + sockops on a cgroup, everything pinned under the node's pin dir), none, or auto
// (the kernel probe, agent/probe.h, picks ebpf when every required feature is there, else
// iptables). In eBPF mode a restarted agent re-adopts the pins, keeps the pods that are still
// in the config with their slots (their traffic never stops), unenrols the ones that are not,
// and replays to ztunnel; a killed agent leaves traffic flowing (the links are pinned).
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/handoff_client.h"
#include "agent/probe.h"
#include "cni/install.h"
#include "cni/protocol.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "ztunnel/state/snapshot.h"
#include "ztunnel/xds/client.h"

namespace weft::bpf {
class NodeCapture;
}
namespace weft::agent {
class CniServer;
}
namespace CLI {
class App;
}

namespace weft::agent {

enum class CaptureMode { kNone, kIptables, kEbpf, kAuto };
// "ebpf" | "iptables" | "auto" | "none"
absl::StatusOr<CaptureMode> ParseCaptureMode(std::string_view s);
std::string_view CaptureModeName(CaptureMode m);

// The agent's default metrics address (--metrics): loopback, next to ztunnel's 15020/15021.
inline constexpr char kDefaultMetricsAddr[] = "127.0.0.1:15030";

struct AgentOptions {
  std::string node;         // this node's name: only workloads with node == this
  std::string config_path;  // standalone config file (ztunnel/state/config_file.h)
  // Control-plane mode (instead of config_path): the pod list comes from weftd's config stream.
  ztunnel::ControlPlaneEndpoint control_plane;
  std::string ztunnel_socket;                    // ztunnel's handoff socket
  CaptureMode capture = CaptureMode::kIptables;  // the command line defaults to kAuto
  // eBPF mode: the cgroup v2 directory the connect hooks attach to (empty: the cgroup2 mount
  // root) and the pin dir (empty: bpf::DefaultPinDir(node), /sys/fs/bpf/weft/<node>).
  std::string cgroup_path;
  std::string bpf_pin_dir;
  // eBPF mode: the sk_msg short-cut between apps and ztunnel inside each pod (docs/fastpath.md,
  // "The local legs of cross-node traffic"). Off by default (see there).
  bool local_legs = false;
  // Serve /metrics here (port 0: any free port; see Agent::metrics_addr()). The admin
  // (/config_dump, /logging) and readiness (/healthz/ready) endpoints bind 127.0.0.1 at a free
  // port whatever this address is (Agent::StartAdmin), so exposing /metrics on the node's address
  // never exposes them. Unset: no endpoint.
  std::optional<SockAddr> metrics_addr;
  bool uninstall_on_exit = false;  // remove capture + DelWorkload for every pod on exit
  std::chrono::milliseconds ack_timeout{5000};
  std::chrono::milliseconds backoff_min{100}, backoff_max{2000};  // ztunnel reconnects
  // Retry interval for pods whose netns could not be opened/captured or that ztunnel refused.
  std::chrono::milliseconds pod_retry{2000};
  // weft-cni (cni/plugin.h): serve the plugin here (empty: no CNI endpoint). A CNI ADD for a
  // pod the config does not list yet waits up to cni_pod_wait for weftd to send it.
  std::string cni_socket;
  std::chrono::milliseconds cni_pod_wait{5000};
  // Install the plugin at start (bin_dir and conf_dir set; agent_socket = cni_socket) and, with
  // uninstall_on_exit, remove it on exit. Retried every pod_retry until the node's network
  // plugin has written its configuration; then checked every cni_recheck and chained again
  // when the network plugin rewrote its configuration without it.
  cni::InstallOptions cni_install;
  std::chrono::milliseconds cni_recheck{5000};
  // Remove the plugin on exit (also done by uninstall_on_exit) while leaving the pods captured:
  // a node whose agent is gone for good must not keep refusing every new pod. Pods that start
  // while no agent runs are enrolled live when it is back (found through /proc).
  bool cni_uninstall_on_exit = false;
};

struct CommandLine {
  AgentOptions options;
  // --kubernetes: talk to the API server (in-cluster service account, or --kubeconfig) to remove
  // the node's weft.dev/agent-not-ready taint once ready (agent/node_taint.h).
  bool kubernetes = false;
  std::string kubeconfig;
  bool once = false;
  bool uninstall_cni = false;  // remove weft-cni from --cni-bin-dir/--cni-conf-dir and exit
  std::string log_level = "info";
};
// weft-agent --node NAME (--config FILE | --control-plane ADDR) --ztunnel-socket PATH
//            [--capture ebpf|iptables|auto|none] [--cgroup PATH] [--bpf-pin-dir DIR]
//            [--metrics ADDR:PORT|off] [--once] [--uninstall-on-exit] [--log-level LEVEL]
//            [--cni-socket PATH [--cni-bin-dir DIR --cni-conf-dir DIR [--cni-plugin PATH]
//             [--cni-uninstall-on-exit]]] [--kubernetes [--kubeconfig FILE]]
// weft-agent --uninstall-cni --cni-bin-dir DIR --cni-conf-dir DIR
// Defaults: --capture auto, --metrics 127.0.0.1:15030 (agent/command_line.cc).
// ("--flag value" or "--flag=value"). Errors name the flag and say what is expected.
void AddFlags(CLI::App& app, CommandLine* cl);         // the flags, into *cl (with its defaults)
absl::Status CheckCommandLine(const CommandLine& cl);  // required and exclusive flags
// AddFlags + parse + CheckCommandLine (--help is an error here; main answers it).
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv);
// The weft-cni shipped beside the running binary (<dir of /proc/self/exe>/weft-cni).
std::string DefaultCniPlugin();

class Agent {
 public:
  explicit Agent(AgentOptions opts);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // One pass: load the config file, capture every pod, connect, hand all pods over,
  // SnapshotSent, return. Errors: config unreadable, ztunnel unreachable, or any pod that
  // could not be enrolled (all pods are still attempted).
  absl::Status RunOnce();

  // Runs on the calling thread until Stop(): watches the config file, reconnects to ztunnel
  // with backoff (backoff_min..backoff_max) and replays on reconnect. Returns an error only if
  // the config cannot be loaded at start; later bad edits are logged and the last good config
  // is kept.
  absl::Status Run();

  // Makes Run() return. Thread-safe and async-signal-safe (one write to an eventfd).
  void Stop();

  struct PodState {
    std::string uid;
    std::string netns_path;
    bool captured = false;    // in-pod capture installed (always false with kNone)
    bool handed_off = false;  // ztunnel acked it on the current connection
    uint64_t netns_cookie = 0;
    uint32_t slot = 0;  // eBPF mode: the pod's slot (bpf/node.h); 0 otherwise
  };
  // The enrolled pods, as of the end of the last loop iteration. Thread-safe.
  std::vector<PodState> Pods() const;
  bool ztunnel_connected() const { return connected_.load(); }
  // Ready to enrol new pods (what the node taint waits for, agent/node_taint.h): a config is
  // loaded, ztunnel is connected, and weft-cni is chained when the agent installs it.
  // Thread-safe.
  bool ready() const { return ready_.load(); }
  // The mode in effect (auto resolved by the probe) once Run/RunOnce started; until then the
  // configured one. Thread-safe.
  CaptureMode capture_mode() const { return mode_.load(); }
  // The bound /metrics address once Run() started it (nullopt before, or when disabled).
  std::optional<SockAddr> metrics_addr() const;
  // eBPF mode: the pin dir in use (empty in other modes).
  const std::string& bpf_pin_dir() const { return pin_dir_; }

  // A weft-cni request (any thread; the CNI endpoint's): handed to the loop thread, which
  // answers once the pod is enrolled and acknowledged by ztunnel, or with the reason it is not.
  //   add:   pod not in the config yet -> waits up to cni_pod_wait, then try-again (11); not in
  //          the mesh -> ok, not enrolled; in the mesh -> capture + AddWorkload with the netns
  //          the runtime named, ok once ztunnel acked; not connected to ztunnel -> 11.
  //   del:   capture off + DelWorkload; unknown pods and missing netns are ok.
  //   check: an enrolled pod whose capture is gone (or that ztunnel does not have) -> 101.
  cni::Reply HandleCni(const cni::Request& req);

 private:
  struct Pod {
    ztunnel::Workload w;
    std::string cni_netns;  // the netns path CNI ADD named (empty: the config's, or /proc)
    UniqueFd netns;
    bool captured = false;
    bool handed_off = false;
    uint64_t cookie = 0;
    uint32_t slot = 0;
  };
  struct Metrics;
  struct CniCall {
    cni::Request req;
    std::promise<cni::Reply> reply;
    std::chrono::steady_clock::time_point wait_until;  // add: how long to wait for the pod
  };
  struct CniPod {  // what CNI ADD said about a pod
    std::string netns;
    std::vector<IpAddr> ips;
  };

  // Resolves the capture mode (probe), opens the eBPF capture, starts the metrics endpoint
  // (`serve`). Idempotent.
  absl::Status Init(bool serve);
  absl::Status InitCapture();  // once: mode (probe), eBPF set-up, mode gauge
  absl::Status InitEbpf();
  absl::Status StartAdmin();  // /metrics, /config_dump, readiness
  // eBPF mode: unenrols pinned pods that no enrolled pod of the config owns any more.
  void SweepEnrolled();
  void Shutdown();
  void LeaveOnExit();  // end of Run: uninstall if asked, close the handoff connection

  void OnConfig(ztunnel::SnapshotPtr s);  // any thread
  // Applies `snap` to pods_; returns the first enrollment error (all pods are attempted).
  absl::Status Reconcile(const ztunnel::ConfigSnapshot& snap);
  absl::Status Enroll(const ztunnel::Workload& w);
  void Remove(const std::string& uid, bool tell_ztunnel);
  absl::Status InstallCapture(Pod& p);
  // Connects and replays everything + SnapshotSent.
  absl::Status ConnectAndReplay();
  // Sends AddWorkload for pods not acked on this connection. Returns the first error.
  absl::Status HandOffPending();
  // Handoff call failed: drop the connection if the failure means it is gone.
  void NoteHandoffError(const absl::Status& st);
  void Disconnect(std::string_view why);
  void Publish();

  // CNI (loop thread). ServeCni answers what it can and keeps ADDs waiting for their pod.
  absl::Status StartCni();
  void ServeCni();
  void CloseCni();  // answers everything pending with try-again; stops the endpoint
  void TryInstallCni();
  std::optional<cni::Reply> AnswerCni(const CniCall& c);
  cni::Reply CniAdd(const ztunnel::Workload& w, const cni::Request& r);
  cni::Reply CniDel(const ztunnel::Workload* w, const cni::Request& r);
  cni::Reply CniCheck(const ztunnel::Workload& w, const cni::Request& r);
  const ztunnel::Workload* FindCniWorkload(const cni::Request& r) const;
  // `w` with what CNI told about it: its addresses when the config has none yet.
  ztunnel::Workload WithCni(const ztunnel::Workload& w) const;
  absl::Status VerifyCapture(Pod& p);
  std::chrono::steady_clock::time_point CniDeadline() const;

  AgentOptions opts_;
  HandoffClient client_;
  UniqueFd wake_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::atomic<bool> ready_{false};

  std::mutex pending_mu_;
  ztunnel::SnapshotPtr pending_;  // newest config not applied yet
  ztunnel::SnapshotPtr current_;  // loop thread only

  std::map<std::string, Pod> pods_;                    // loop thread only
  std::map<std::string, std::string> pod_errors_;      // uid -> last enrollment error (log dedup)
  std::map<std::string, std::string> handoff_errors_;  // uid -> last AddWorkload error

  mutable std::mutex pub_mu_;
  std::vector<PodState> published_;

  std::atomic<CaptureMode> mode_;
  bool initialized_ = false;
  std::string pin_dir_;
  UniqueFd cgroup_;
  std::unique_ptr<bpf::NodeCapture> node_;
  std::unique_ptr<Metrics> metrics_;

  std::mutex cni_mu_;
  bool cni_closed_ = false;                            // guarded by cni_mu_
  std::vector<std::shared_ptr<CniCall>> cni_queue_;    // guarded by cni_mu_: to the loop
  std::vector<std::shared_ptr<CniCall>> cni_waiting_;  // loop thread: ADDs awaiting their pod
  std::map<std::string, CniPod> cni_pods_;             // loop thread: uid -> CNI ADD's facts
  std::set<std::string> cni_deleted_;  // loop thread: CNI DELeted, kept out until config drops them
  bool cni_installed_ = false;
  // Next install attempt or, once installed, the next check that it is still chained.
  std::chrono::steady_clock::time_point next_cni_install_{};
  std::unique_ptr<CniServer> cni_server_;
};

}  // namespace weft::agent
