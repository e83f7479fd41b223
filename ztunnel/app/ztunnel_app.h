// Wires ztunnel together: config (file watcher), certificates, metrics + admin server, the
// pod handoff server and the proxy. main.cc only parses flags and waits for a signal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/admin/admin_server.h"
#include "ztunnel/capture/capture.h"
#include "ztunnel/capture/ebpf.h"
#include "ztunnel/identity/ca_client.h"
#include "ztunnel/identity/identity.h"
#include "ztunnel/inpod/handoff_server.h"
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
};

class ZtunnelApp {
 public:
  explicit ZtunnelApp(ZtunnelOptions opts);
  ~ZtunnelApp();
  // Loads config and certs, binds admin ports, starts workers and the handoff server. Errors
  // say what to fix (bad config file, port in use, socket dir missing).
  absl::Status Start();
  void Stop();

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

  ZtunnelOptions opts_;
  ConfigStore store_;
  std::atomic<bool> config_loaded_{false};
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<CertificateProvider> certs_;
  CaCertificateProvider* ca_certs_ = nullptr;  // control-plane mode: the object in certs_
  std::unique_ptr<ConfigClient> cp_config_;
  void OnConfig(SnapshotPtr s);
  std::unique_ptr<TlsContextCache> tls_;
  SoOriginalDstProvider so_orig_dst_;
  // eBPF-captured pods' providers, one per agent pin dir; kept for ztunnel's lifetime (pods
  // hold raw pointers). Handoff thread only.
  std::map<std::string, std::unique_ptr<EbpfOrigDstProvider>> ebpf_;
  absl::Status AddPod(const weft::inpod::v1::AddWorkload& add, UniqueFd netns);
  OrigDstProvider* orig_dst_override_ = nullptr;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<ConfigFileWatcher> watcher_;
  std::unique_ptr<HandoffServer> handoff_;
  std::unique_ptr<AdminServer> admin_;
  std::thread cert_thread_;
  std::mutex cert_mu_;
  std::condition_variable cert_cv_;
  bool stopping_ = false;
  bool started_ = false;
};

}  // namespace weft::ztunnel
