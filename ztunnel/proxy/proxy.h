// The ztunnel data plane: per-pod listeners (15001 outbound, 15006 inbound plaintext, 15008
// inbound HBONE) created inside each pod's network namespace, served by N worker threads.
//
// Threads: each worker runs its own epoll loop; every pod's listeners are watched by every
// worker with EPOLLEXCLUSIVE, and a connection lives on the worker that accepted it for its
// whole life (so its HBONE pool, buffers and counters need no locks). Config snapshots are
// read through ConfigStore (atomic shared_ptr swap); a policy change is posted to every
// worker, which re-authorizes its open inbound connections and closes the denied ones.
//
// Public methods are thread-safe unless noted.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "ztunnel/capture/capture.h"
#include "ztunnel/identity/identity.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/limits.h"
#include "ztunnel/proxy/tap.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

struct PodListenAddrs {
  std::vector<SockAddr> outbound;       // default 127.0.0.1:15001 and [::1]:15001
  std::vector<SockAddr> inbound_plain;  // default 0.0.0.0:15006 and [::]:15006
  std::vector<SockAddr> hbone;          // default 0.0.0.0:15008 and [::]:15008
};
PodListenAddrs DefaultListenAddrs();

enum class ListenerKind { kOutbound, kInboundPlain, kHbone };

// How one pod's connections reach ztunnel: set from the pod's capture mode, so the data path
// itself has no per-mode cases.
struct PodOptions {
  PodListenAddrs addrs = DefaultListenAddrs();
  // Original destinations of this pod's captured connections; null: the proxy's default.
  OrigDstProvider* orig_dst = nullptr;
  // Called for each listener once it is bound and before the pod is served (eBPF capture puts
  // the inbound listeners into the kernel's steering map here). An error fails AddPod.
  std::function<absl::Status(ListenerKind kind, const SockAddr& bound, int fd)> on_listener;
  // Listening sockets taken over from a predecessor ztunnel (docs/upgrades.md): used instead of
  // binding new ones, so connections already queued on them are accepted here. Each must be a
  // listening TCP socket inside the pod's netns. AddPod duplicates the descriptors.
  struct Adopted {
    ListenerKind kind;
    int fd;
  };
  std::vector<Adopted> adopt;
};

// A pod's listening sockets as a successor ztunnel takes them over. `keep` holds the
// descriptors open while the caller uses them.
struct HeldPod {
  std::string uid;
  int netns = -1;
  struct Listener {
    ListenerKind kind;
    int fd;
  };
  std::vector<Listener> listeners;
  std::shared_ptr<const void> keep;
};

struct ProxyOptions {
  int workers = 0;               // 0: one per CPU
  uint32_t mark = kZtunnelMark;  // SO_MARK on every socket in a pod netns; 0 disables
  uint16_t hbone_port = kInboundHbonePort;
  // Test seam: where to really dial for a destination (default: as is). Lets "direct" tests
  // run several ztunnels on loopback with port 0.
  std::function<SockAddr(const SockAddr&)> dial_override;
  std::chrono::milliseconds pool_idle_timeout{30000};
  std::chrono::milliseconds connect_timeout{10000};
  // Both roles. An honest TLS 1.3 handshake takes one or two round trips; a peer that sends
  // nothing or trickles bytes holds a handshaking slot (limits.h) until this expires.
  std::chrono::milliseconds handshake_timeout{5000};
  // L7 at the destination (http_inbound.h): a request head must be complete this long after its
  // first byte, or the client gets 408 and the connection closes (slowloris; Envoy's
  // request_headers_timeout, which Envoy leaves off by default). ztunnel:
  // --http-request-headers-timeout.
  std::chrono::milliseconds request_headers_timeout{10000};
  // An HTTP connection with no request in flight and no bytes either way for this long is closed
  // (Envoy's idle_timeout default, 1 h). ztunnel: --http-idle-timeout.
  std::chrono::milliseconds http_idle_timeout{3600 * 1000};
  uint32_t max_streams_per_conn = 100;
  // HTTP/2 receive windows: how many bytes a peer may send that the destination application
  // has not read yet (window updates are sent only once the application socket took bytes).
  // 4 MiB per stream covers a datacenter bandwidth-delay product; 8 MiB per connection bounds
  // what one connection can park in ztunnel (it was 64 MiB) while two streams still run at
  // full window. A client stops putting new streams on a connection whose window is spent.
  int32_t stream_window = 4 << 20;
  int32_t connection_window = 8 << 20;
  HboneLimitOptions hbone_limits;  // 15008: connection counts and the unread-bytes budget
  bool access_log = true;
  // Same-node fast path (docs/fastpath.md): a connection from one of this proxy's pods to a
  // meshed workload whose pod this proxy also holds skips HBONE/TLS. The destination's L4
  // policy is applied with the source's identity, the proxy connects from inside the
  // destination pod's netns, and bytes move with splice(2) through a pipe per direction.
  // Reported with connection_security_policy="same_node". ztunnel: --no-same-node-fast-path.
  bool same_node_fast_path = true;
  // How the fast path moves bytes (docs/fastpath.md). kSockmap: the kernel's sockmap redirect
  // between ztunnel's two sockets (bpf/relay.bpf.c), no ztunnel wake-up per message; kSplice:
  // splice(2) through a pipe per direction; kAuto: sockmap where this kernel passes the relay's
  // self-test at start (bpf::SelfTestRelay), else splice. An explicit kSockmap the kernel cannot
  // run fails Start. ztunnel: --same-node-relay=auto|sockmap|splice.
  enum class SameNodeRelay { kAuto, kSockmap, kSplice };
  SameNodeRelay same_node_relay = SameNodeRelay::kAuto;
  // Sockmap relay: when a socket's peer has this many redirected bytes its application has not
  // taken (a slow reader), ztunnel stops the kernel reading that socket until the peer is back
  // under half of it, so TCP's window pushes back on the sender (the kernel's redirect itself
  // has no bound).
  size_t fast_path_relay_cap = 4 << 20;
  // eBPF capture's local legs (docs/fastpath.md, "The local legs of cross-node traffic"): an
  // outbound connection that leaves the node over HBONE joins the app's socket, which the
  // agent's sockops program put in weft_local_legs (weft-agent --local-legs on), so the two
  // move messages socket to socket instead of through loopback TCP; likewise an inbound HBONE
  // stream's connection to the destination app (the delivery leg: ztunnel announces it before
  // connecting, the sockops program joins the app's accepted socket). Follows the agent; off
  // here keeps loopback TCP whatever the agent does. ztunnel: --no-local-legs.
  bool local_legs = true;
  // Capacity asked of each fast-path pipe (F_SETPIPE_SZ); two pipes per connection.
  size_t fast_path_pipe_size = 256 * 1024;
  // `weftctl tap`: where the HTTP paths publish requests while someone taps (tap.h); null: off.
  std::shared_ptr<TapBuffer> tap;
};

class Proxy {
 public:
  Proxy(ProxyOptions opts, ConfigStore* config, TlsContextCache* tls, Metrics* metrics,
        OrigDstProvider* orig_dst);
  ~Proxy();  // Stop()

  absl::Status Start();  // starts the worker threads
  void Stop();

  // Creates the pod's listeners inside `netns` (invalid fd: the current netns; used by direct
  // tests) and starts serving them. Re-adding a uid with the same netns, addresses and provider
  // keeps its listeners (and calls on_listener for each again); otherwise it replaces them.
  absl::Status AddPod(const std::string& uid, UniqueFd netns,
                      const PodListenAddrs& addrs = DefaultListenAddrs());
  absl::Status AddPod(const std::string& uid, UniqueFd netns, const PodOptions& opts);
  // Stops accepting for the pod and closes its listeners; open connections drain.
  void RemovePod(const std::string& uid);
  std::optional<PodListenAddrs> BoundAddrs(const std::string& uid) const;
  std::vector<std::string> PodUids() const;

  // Re-authorizes every open inbound connection against `snap` and closes denied ones.
  void Reevaluate(const SnapshotPtr& snap);
  // The fast path's relay once started: "sockmap" or "splice" (ProxyOptions::same_node_relay).
  std::string_view same_node_relay() const;

  // Hitless upgrades (docs/upgrades.md). HeldPods: every pod's netns and listeners, for a
  // successor. StopAccepting: the successor serves the same sockets now; every worker drops
  // them from its epoll and the proxy closes its descriptors without shutdown(2) (the sockets
  // and their accept queues live on in the successor), and every inbound HBONE connection gets
  // a GOAWAY (shutdown notice) so its peer opens its next streams on a new connection, to the
  // successor. Open connections keep running. OpenConnections: flows still open, all workers.
  std::vector<HeldPod> HeldPods() const;
  void StopAccepting();
  size_t OpenConnections();

  struct Shared;  // implementation detail, shared with workers

 private:
  std::unique_ptr<Shared> shared_;
};

}  // namespace weft::ztunnel
