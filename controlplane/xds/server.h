// weftd's ConfigDiscovery service (proto/weft/config/v1/config.proto): every node component
// (ztunnel, agent) opens one Stream, says who it is, and receives its node's view as a full
// snapshot followed by versioned deltas that it ACKs or NACKs. The protocol (versions, nonces,
// what "last good" means on both ends) is documented in controlplane/xds/README.md.
//
// Usage:
//   ConfigDiscoveryServer xds(views, authenticator, {});
//   grpc::ServerBuilder b;
//   b.AddListeningPort(addr, creds, &port);
//   xds.Register(b);
//   auto server = b.BuildAndStart();
//   ... xds.Notify({"node-a"}) / xds.NotifyAll() whenever the model changes ...
//   xds.Shutdown();      // ends every stream (clients reconnect elsewhere / later)
//   server->Shutdown();  // then the grpc::Server; destroy `xds` last
#pragma once

#include <prometheus/registry.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "weft/config/v1/config.pb.h"

namespace grpc {
class ServerBuilder;
class Service;
}  // namespace grpc

namespace weft::cp {

// The node's view: what node `node` may see. Called only from the server's push thread (never
// concurrently with itself), once per node per push round; it should be quick (weftd computes
// views from its model under its own lock). Resources without a key (workload uid, or
// namespace and name) or with a duplicate key are dropped, logged and counted
// (weft_xds_view_errors_total); the rest of the view still streams.
using ViewProvider = std::function<weft::config::v1::ConfigSnapshot(const std::string& node)>;

// The same view in the form that scales to large meshes: weftd's model keeps one immutable
// Resource per object and hands the same pointers to every node that sees it. The server then
// computes each object's key and bytes once (cached by pointer while any provider result or
// view holds it) instead of once per node, and the model need not copy objects per node. Only
// the singular fields of `globals` (trust_domain, root_namespace) are used. An object must not
// be mutated once handed out: publish a new pointer for a new version of an object.
struct SharedView {
  weft::config::v1::ConfigSnapshot globals;
  std::vector<std::shared_ptr<const weft::config::v1::Resource>> resources;
};
using SharedViewProvider = std::function<SharedView(const std::string& node)>;

// gRPC request metadata (lower-case keys, e.g. "authorization" -> "Bearer ..."), plus ":peer"
// -> the gRPC peer address ("ipv4:10.0.0.7:5123"), which a client cannot set.
using Metadata = std::multimap<std::string, std::string>;
// Authenticates a stream from its metadata: returns the node name the credential belongs to, or
// an error (sent to the client as UNAUTHENTICATED with the error's text, logged and counted as
// weft_xds_auth_failures_total{reason="unauthenticated"}). The node named in the first
// ConfigRequest must equal it (else PERMISSION_DENIED, reason="node_mismatch"). Called on a gRPC
// thread, possibly concurrently; may block briefly (e.g. a cached TokenReview).
using Authenticator = std::function<absl::StatusOr<std::string>(const Metadata& md)>;

struct XdsServerOptions {
  // Trailing debounce: a push round starts once no Notify came for `debounce`, but at the latest
  // `max_delay` after the first Notify of the round (so a steady change stream still pushes).
  std::chrono::milliseconds debounce{100};
  std::chrono::milliseconds max_delay{1000};
  // Metrics are registered here; null: a private registry (see registry()).
  std::shared_ptr<prometheus::Registry> registry;
};

// One stream's state, for `weftctl status`. Keyed by (node, component); after a disconnect the
// last record stays with connected = false.
struct StreamStatus {
  std::string node;
  std::string component;
  std::string peer;  // gRPC peer, e.g. "ipv4:127.0.0.1:40000"
  bool connected = false;
  std::string version_sent;   // last version written on the stream
  std::string version_acked;  // the version the client runs (last ACK); "" before the first
  std::string last_nack_version;
  std::string last_nack_error;  // "" if the stream never NACKed
  uint64_t pushes = 0;
  uint64_t acks = 0;
  uint64_t nacks = 0;
  std::chrono::system_clock::time_point connected_at;
  std::chrono::system_clock::time_point last_ack_at;
};

// Thread-safe. Metrics: weft_xds_connected_nodes (nodes with at least one open stream),
// weft_xds_connected_streams, weft_xds_pushes_total{type="full|delta"}, weft_xds_acks_total,
// weft_xds_nacks_total, weft_xds_push_ack_seconds{result="ack|nack"} (push to ACK/NACK),
// weft_xds_push_bytes_total, weft_xds_auth_failures_total{reason},
// weft_xds_bad_requests_total{reason}, weft_xds_view_errors_total.
class ConfigDiscoveryServer {
 public:
  // `views` must be set. `auth` null: the node name in the request is trusted (tests, local
  // mode on a trusted host); a warning is logged once at construction.
  ConfigDiscoveryServer(ViewProvider views, Authenticator auth, XdsServerOptions opts = {});
  ConfigDiscoveryServer(SharedViewProvider views, Authenticator auth, XdsServerOptions opts = {});
  ~ConfigDiscoveryServer();  // Shutdown()
  ConfigDiscoveryServer(const ConfigDiscoveryServer&) = delete;
  ConfigDiscoveryServer& operator=(const ConfigDiscoveryServer&) = delete;

  // Registers the service on `b` and sets the keepalive policy the client relies on (pings
  // every 30 s allowed without calls). Call before b.BuildAndStart().
  void Register(grpc::ServerBuilder& b);

  // The views of these nodes (may) have changed: recompute and push after the debounce. Nodes
  // without an open stream are ignored (they get a full snapshot when they connect).
  void Notify(std::set<std::string> nodes);
  void NotifyAll();

  // Ends every stream with UNAVAILABLE and stops pushing; new streams are refused. Idempotent.
  // Call before grpc::Server::Shutdown(), which otherwise waits for the streams forever.
  void Shutdown();

  std::vector<StreamStatus> Status() const;  // sorted by (node, component)
  std::shared_ptr<prometheus::Registry> registry() const;

  struct Core;  // internal; public only so the stream reactor in the .cc can name it

 private:
  std::shared_ptr<Core> core_;
  void Init();

  std::unique_ptr<grpc::Service> service_;
};

}  // namespace weft::cp
