// A sidecar service mesh built from a real, well-known proxy, as the benchmark's reference
// point (mode "sidecar"): the architecture of Istio's sidecar mode and Linkerd, with HAProxy.
//
// For every pod of the description, one HAProxy process runs inside the pod's netns as the
// unprivileged user Options::proxy_user and does:
//   inbound   <pod ip>:Options::inbound_port (15443): terminates mTLS with its own workload
//             certificate (a CA made for the run; URI SAN spiffe://<td>/ns/<ns>/sa/<sa>, DNS SANs
//             <dns> and *.<dns> with <dns> = "<sa>.<ns>.<pod>.sidecar.weft"); the client must
//             present a certificate that chains to that CA (verify required); forwards to the
//             app on 127.0.0.1:<port>, the port named by the SNI "port-<port>.<dns>";
//   outbound  one listener 127.0.0.1:<local port> per destination (every pod IP:app port and
//             every service address:port); it originates mTLS (own certificate) to the
//             destination pod's inbound port with that SNI, and verifies the server's chain
//             against the CA and its name against the SNI (so it reached the pod it meant).
// Files in Options::work_dir are named after the pod's file name: SanitizePodName(name), with
// "-<index>" appended when another pod of the mesh already has that form.
// Traffic capture is in-pod iptables (nat table), in chains named after a unique prefix:
//   <P>_OUT  (jumped to from OUTPUT):      packets of the proxy user RETURN (the proxy's own
//            connections are not captured again), loopback RETURNs, and each destination
//            IP:port is REDIRECTed to its local outbound listener;
//   <P>_IN   (jumped to from PREROUTING):  plain connections to an app port are REDIRECTed to
//            the inbound port, so they meet TLS and fail (strict mTLS, as Istio's
//            PeerAuthentication STRICT).
// So a request crosses two user-space proxies per hop:
//   app -> iptables -> sidecar (out) -> mTLS -> sidecar (in) -> app.
//
// IPv4 only. Requires root, iptables (with the owner and REDIRECT matches) and haproxy.
// Not thread-safe. The pods' namespaces belong to the testbed; the mesh only adds processes and
// chains to them and removes both in Stop() / the destructor.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/testbed/testbed.h"
#include "common/net.h"

namespace weft::tls {
class CertificateAuthority;
}

namespace weft::bench::sidecar {

// What a destination speaks, as its Service port declares it (appProtocol or Istio's port-name
// prefix; see on_up_mesh.h PortProtocol): raw TCP, HTTP/1.1, or HTTP/2 (h2c, gRPC).
enum class AppProtocol { kTcp, kHttp, kHttp2 };
std::string_view AppProtocolName(AppProtocol p);  // "tcp", "http", "http2"

struct SidecarPod {
  // A pod of the testbed (or of the placements). Any text: file names and certificate DNS names
  // use a sanitized form, made unique within the mesh (so "shop/cart" and "shop-cart" coexist).
  std::string name;
  std::vector<uint16_t> ports;  // the app's ports (it listens on 127.0.0.1 or 0.0.0.0)
  // Ports whose app speaks HTTP (absent: TCP); used when SidecarOptions::http is set.
  std::map<uint16_t, AppProtocol> port_protocols;
  std::string ns = "default";   // SPIFFE namespace
  std::string service_account;  // SPIFFE service account ("" = the pod name)
};

struct SidecarService {
  std::string name;
  IpAddr address;                 // a VIP, or a pod IP
  uint16_t port = 0;              // the port clients dial
  std::vector<std::string> pods;  // backends (round robin), pods of the mesh
  uint16_t target_port = 0;       // the backends' app port (0 = `port`)
  // Per backend (same order as `pods`), when they differ (a named targetPort); overrides
  // target_port when non-empty, and must then have one entry per pod.
  std::vector<uint16_t> target_ports;
  AppProtocol protocol = AppProtocol::kTcp;  // used when SidecarOptions::http is set
};

// Where a pod of the mesh lives: its IPv4 address and the name of its network namespace, as
// testbed::Spawn/Exec take it (testbed::PodInfo::netns, up::PodState::netns; the namespace is
// /run/netns/<netns>).
struct PodPlacement {
  std::string name;
  IpAddr ip;
  std::string netns;
};

struct SidecarOptions {
  std::string work_dir;                // configs, certificates, logs (must exist)
  std::string haproxy = "haproxy";     // binary (PATH lookup without '/')
  std::string proxy_user = "haproxy";  // the sidecar's uid/gid, excluded from capture
  uint16_t inbound_port = 15443;
  uint16_t first_outbound_port = 15100;  // local outbound listeners: this, this+1, ...
  // HAProxy maxconn per sidecar: it needs 2 * maxconn + 16 descriptors under RLIMIT_NOFILE
  // (a 20000 hard limit allows up to 9992).
  int maxconn = 8000;
  int threads = 1;  // HAProxy nbthread per sidecar
  std::string trust_domain = "cluster.local";
  // One line per connection in the sidecar's log (<work_dir>/<pod>.haproxy.log); off by
  // default, as it costs the benchmark.
  bool log_connections = false;
  // The HTTP sidecar mesh (the benchmark's "sidecar-http", the analog of Istio's sidecars,
  // which parse every HTTP port): destinations and app ports declared HTTP are proxied in
  // HAProxy's `mode http` on both sidecars (keep-alive to the app, server connections pooled
  // and reused with `http-reuse safe`; HTTP/1.1 between sidecars for HTTP/1.1 apps, as Istio
  // does by default, HTTP/2 with ALPN h2 for HTTP/2 ones, h2c to the app), everything else in
  // `mode tcp` as before. false: every port in `mode tcp` (the "sidecar" mode).
  bool http = false;
};

// Chooses a unique chain prefix "WEFTSC<pid>_<n>" (fits iptables' 28 characters with the
// "_OUT"/"_IN" suffixes for any pid).
std::string UniqueChainPrefix();

class SidecarMesh {
 public:
  // Writes the CA, certificates and configs, installs the chains and starts the proxies; returns
  // once every sidecar listens. On error everything done so far is undone.
  static absl::StatusOr<std::unique_ptr<SidecarMesh>> Start(
      const testbed::Testbed& tb, const std::vector<SidecarPod>& pods,
      const std::vector<SidecarService>& services, const SidecarOptions& opts);
  // The same for pods that are not (or not only) a Testbed's: each pod of `pods` (and every
  // backend of `services`) must have exactly one placement of that name; extra placements are
  // ignored.
  static absl::StatusOr<std::unique_ptr<SidecarMesh>> Start(
      const std::vector<PodPlacement>& placements, const std::vector<SidecarPod>& pods,
      const std::vector<SidecarService>& services, const SidecarOptions& opts);
  ~SidecarMesh();  // Stop()
  SidecarMesh(const SidecarMesh&) = delete;
  SidecarMesh& operator=(const SidecarMesh&) = delete;

  // Kills the proxies and removes the chains (idempotent). Returns the first error.
  absl::Status Stop();

  const std::string& chain_prefix() const { return chain_prefix_; }
  // The run's CA certificate (PEM file) and a pod's combined cert+key PEM file.
  const std::string& ca_cert_path() const { return ca_cert_path_; }
  absl::StatusOr<std::string> PodCertPath(std::string_view pod) const;
  // The pods' names, in the order given.
  std::vector<std::string> PodNames() const;
  // Connections a pod's sidecar has accepted since it started, from its HAProxy stats socket
  // (<work_dir>/<pod file name>.stats.sock, "show stat": the frontends' cumulative sessions):
  // outbound = captured app connections, inbound = mTLS connections that reached its 15443
  // (including refused handshakes). For checking that a benchmark's traffic really went through the
  // mesh.
  // outbound_http_requests = HTTP requests its outbound frontends parsed (HTTP mesh, HTTP
  // destinations only; 0 in TCP mode), so a benchmark can check the sidecar-http mode parsed.
  struct Counts {
    int64_t outbound = 0;
    int64_t inbound = 0;
    int64_t outbound_http_requests = 0;
  };
  absl::StatusOr<Counts> ConnectionCounts(std::string_view pod) const;
  // The proxies' pids (for CPU/RSS accounting), one per pod in the order given.
  std::vector<pid_t> ProxyPids() const;
  // What is left of this mesh: live proxy pids and chains named after the prefix, per pod
  // netns. Empty after Stop().
  std::vector<std::string> Leftovers() const;

 private:
  struct PodState {
    std::string name;
    std::string file_name;  // sanitized, unique: files and certificate names
    std::string netns;
    std::string cert_path;
    std::string stats_socket;
    testbed::Process proxy;
    bool chains = false;
  };
  struct Topology;  // sidecar_mesh.cc
  SidecarMesh() = default;
  absl::Status StartPod(const SidecarPod& p, Topology& t, const tls::CertificateAuthority& ca,
                        const SidecarOptions& opts);
  absl::Status InstallChains(PodState& p, const std::vector<std::string>& rules);

  std::string chain_prefix_;
  std::string ca_cert_path_;
  std::vector<PodState> pods_;
  std::vector<pid_t> pids_;
};

}  // namespace weft::bench::sidecar
