// Wires ztunnel together: config (file watcher), certificates, metrics + admin server, the
// pod handoff server and the proxy. main.cc only parses flags and waits for a signal.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/admin/admin_server.h"
#include "ztunnel/app/connect_deny.h"
#include "ztunnel/capture/capture.h"
#include "ztunnel/capture/ebpf.h"
#include "ztunnel/identity/ca_client.h"
#include "ztunnel/identity/identity.h"
#include "ztunnel/inpod/handoff_server.h"
#include "ztunnel/inpod/takeover.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/proxy.h"
#include "ztunnel/state/config_file.h"
#include "ztunnel/xds/client.h"

namespace weft::ztunnel {

struct ZtunnelOptions {
  std::string node;         // this node's name (for logs and, later, the config stream)
  std::string config_file;  // standalone config (YAML/JSON ConfigSnapshot)
  std::string certs_dir;    // FileCertificateProvider layout
  // Peer trust domains accepted besides a workload's own (Istio's trustDomainAliases); any other
  // trust domain is refused at the handshake, on both sides (--trust-domain-alias, repeated).
  std::vector<std::string> trust_domain_aliases;
  // Control-plane mode (instead of config_file / certs_dir): weftd's gRPC address. Config comes
  // from its ConfigDiscovery stream, certificates from its CA (key generated here, CSR sent).
  ControlPlaneEndpoint control_plane;
  std::string inpod_socket;  // handoff socket; empty: no agent
  SockAddr admin_addr = *SockAddr::Parse("127.0.0.1:15000");
  SockAddr metrics_addr = *SockAddr::Parse("0.0.0.0:15020");
  SockAddr readiness_addr = *SockAddr::Parse("0.0.0.0:15021");
  ProxyOptions proxy;
  // Hitless upgrades (docs/upgrades.md). With an --inpod-socket, a starting ztunnel takes the
  // listeners over from the one running at TakeoverSocketPath(inpod_socket), if any (false:
  // --no-takeover). Once replaced, this one drains its open connections for drain_deadline
  // (--drain-deadline), or for what the successor asked (takeover_drain_deadline, 0: the
  // predecessor's own), then closes them.
  bool takeover = true;
  std::chrono::milliseconds drain_deadline{30000};
  std::chrono::milliseconds takeover_drain_deadline{0};
  // A successor waits this long for its first config before it takes anything over.
  std::chrono::milliseconds takeover_config_wait{60000};
  // Deny at connect (docs/security.md): connects of eBPF-captured pods that the destination's
  // policy certainly denies fail in the pod (false: --no-deny-at-connect).
  bool deny_at_connect = true;
};

class ZtunnelApp {
 public:
  explicit ZtunnelApp(ZtunnelOptions opts);
  ~ZtunnelApp();
  // Loads config and certs, binds admin ports, starts workers and the handoff server. Errors
  // say what to fix (bad config file, port in use, socket dir missing).
  absl::Status Start();
  void Stop();

  // Hitless upgrades. Retiring: a successor is taking over or took over. Drained: nothing left
  // to wait for before Stop (not retiring, or the drain is over: open connections closed by
  // their ends or at the deadline).
  bool Retiring() const;
  bool Drained() const { return drained_.load() || !Retiring(); }

  // Test access.
  Proxy& proxy() { return *proxy_; }
  ConfigStore& config() { return store_; }
  Metrics& metrics() { return *metrics_; }
  AdminServer& admin() { return *admin_; }
  // Used instead of the iptables provider by direct tests (must be set before Start()).
  void SetOrigDstProvider(OrigDstProvider* p) { orig_dst_override_ = p; }

 private:
  std::string ConfigDump() const;
  std::string NotReadyReason() const;
  void CertLoop();
  absl::Status StartConfig();
  AdminOptions MakeAdminOptions();
  absl::Status StartHandoff(std::optional<TakenState>& taken);
  // Successor side: connects to a predecessor (none: nullopt) and takes its state.
  absl::StatusOr<std::optional<TakenState>> TakeOver();
  absl::Status WaitForConfig(std::chrono::milliseconds timeout);
  // Predecessor side.
  absl::Status StartTakeoverServer();
  TakeoverSnapshot Snapshot();
  std::chrono::milliseconds HandOver(std::chrono::milliseconds asked);
  void Drain(std::chrono::milliseconds deadline);

  ZtunnelOptions opts_;
  ConfigStore store_;
  std::atomic<bool> config_loaded_{false};
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<ConnectDenyInstaller> deny_;
  std::unique_ptr<CertificateProvider> certs_;
  CaCertificateProvider* ca_certs_ = nullptr;  // control-plane mode: the object in certs_
  std::unique_ptr<ConfigClient> cp_config_;
  void OnConfig(SnapshotPtr s);
  std::unique_ptr<TlsContextCache> tls_;
  SoOriginalDstProvider so_orig_dst_;
  // eBPF-captured pods' providers, one per agent pin dir; kept for ztunnel's lifetime (pods
  // hold raw pointers). Handoff thread only.
  std::map<std::string, std::unique_ptr<EbpfOrigDstProvider>> ebpf_;
  absl::Status AddPod(const weft::inpod::v1::AddWorkload& add, UniqueFd netns,
                      std::vector<PodOptions::Adopted> adopt = {});
  OrigDstProvider* orig_dst_override_ = nullptr;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<ConfigFileWatcher> watcher_;
  std::unique_ptr<HandoffServer> handoff_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<TakeoverClient> predecessor_;
  int64_t predecessor_pid_ = 0;
  std::array<int, 3> adopted_admin_ = {-1, -1, -1};  // admin, metrics, readiness (AdminOptions)
  std::unique_ptr<TakeoverServer> takeover_;
  std::thread drain_thread_;
  std::atomic<bool> handed_over_{false}, drained_{false}, stop_drain_{false};
  std::thread cert_thread_;
  std::mutex cert_mu_;
  std::condition_variable cert_cv_;
  bool stopping_ = false;
  bool started_ = false;
};

}  // namespace weft::ztunnel
