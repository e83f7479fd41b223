// The config stream client that ztunnel and weft-agent use: one ConfigDiscovery Stream to weftd,
// full snapshot then deltas applied to a local copy, every version validated with
// ztunnel::ConfigSnapshot::FromProto before it is accepted (ACK) or rejected (NACK, the last
// good config stays), reconnection with exponential backoff and jitter, and the last good config
// kept (and served by the caller) while weftd is away. Protocol: controlplane/xds/README.md.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "config/xds/resources.h"
#include "weft/config/v1/config.pb.h"
#include "ztunnel/state/snapshot.h"

namespace weft::grpc_client {
class Call;
}

namespace weft::ztunnel {

struct ConfigClientOptions {
  std::string target;  // weftd's address: "host:port", "[v6]:port" or "dns:///host:port"
  std::string node;    // this node's name
  std::string component = "ztunnel";  // "ztunnel" or "agent"
  // PEM file of the CA that signed weftd's serving certificate: TLS. Empty: plaintext (tests,
  // loopback). Re-read at every connect.
  std::string root_ca_file;
  std::string tls_server_name;  // name to check in weftd's certificate; empty: target's host
  // Sent as "authorization: Bearer <token>". The file (e.g. a projected service-account token)
  // is re-read at every connect and wins over the string. Both empty: no credential.
  std::string bearer_token;
  std::string bearer_token_file;
  // Delay before reconnect attempt n (n = 0 after a stream that delivered a version):
  // min(max_backoff, initial_backoff * 2^n), of which a random half is jitter.
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{30000};
  // HTTP/2 PING after this long without a frame from weftd; the stream fails (and reconnects)
  // when weftd does not answer within keepalive_timeout.
  std::chrono::milliseconds keepalive_time{30000};
  std::chrono::milliseconds keepalive_timeout{10000};
  // Metrics are registered here (null: none exported; Status() still counts):
  // weft_xds_client_connected, weft_xds_client_acks_total, weft_xds_client_nacks_total,
  // weft_xds_client_stream_errors_total; and Istio's ztunnel names, which its dashboard reads:
  // istio_xds_connection_terminations_total{reason} (ConnectionError: the stream failed before
  // delivering a version; Error: it failed after; Complete: weftd ended it cleanly) and
  // istio_xds_message_total{url} / istio_xds_message_bytes_total{url} (responses received and
  // their encoded size, url = the message's type URL).
  std::shared_ptr<prometheus::Registry> registry;
};

// How a node component reaches weftd: the --control-plane / --cp-root / --cp-token /
// --cp-server-name flags that ztunnel and the agent share.
struct ControlPlaneEndpoint {
  std::string address;     // weftd's gRPC address; empty: not in control-plane mode
  std::string root_file;   // PEM of the mesh root: TLS to weftd; empty: plaintext
  std::string token_file;  // this node's bearer token
  std::string server_name = "weftd.weft-system.svc";  // name in weftd's serving certificate
  bool enabled() const { return !address.empty(); }
  ConfigClientOptions ClientOptions(std::string node, std::string component) const {
    ConfigClientOptions o;
    o.target = address;
    o.node = std::move(node);
    o.component = std::move(component);
    o.root_ca_file = root_file;
    o.tls_server_name = root_file.empty() ? "" : server_name;
    o.bearer_token_file = token_file;
    return o;
  }
};

struct ConfigClientStatus {
  bool connected = false;  // a stream is open and has delivered at least one version
  std::string version;     // the last good (accepted) version; "" before the first
  uint64_t acks = 0;
  uint64_t nacks = 0;
  uint64_t streams = 0;         // streams opened (the first one and every reconnect)
  uint64_t full_snapshots = 0;  // full snapshots received (accepted or not)
  std::string last_nack_error;
  std::string last_stream_error;  // why the last stream ended (or failed to open)
};

// Thread-safe: Start/Stop/Current/Status may be called from any thread, except that Stop (and
// the destructor) must not be called from inside the callback.
class ConfigClient {
 public:
  // Called on the client's thread with every accepted snapshot (after a reconnect's full
  // snapshot too, even if its content did not change), before the version is ACKed.
  // It must not call CurrentProto (which waits for the callback to return).
  using Callback = std::function<void(const SnapshotPtr&)>;

  ConfigClient(ConfigClientOptions opts, Callback on_snapshot);
  ~ConfigClient();  // Stop()
  ConfigClient(const ConfigClient&) = delete;
  ConfigClient& operator=(const ConfigClient&) = delete;

  // Checks the options (target, node, component set; CA and token files readable) and starts the
  // stream thread. Idempotent while running; may be called again after Stop().
  absl::Status Start();
  // Cancels the stream and joins the thread. Idempotent. The last good config stays available.
  void Stop();

  SnapshotPtr Current() const;  // last good snapshot; null before the first
  // Its source proto (canonical order). A copy: meant for tools and tests, not hot paths.
  weft::config::v1::ConfigSnapshot CurrentProto() const;
  ConfigClientStatus Status() const;

 private:
  void Run();
  // One stream, until it ends. Returns true if it delivered at least one version.
  bool RunStream();
  // Validates and applies one response; fills the ACK/NACK to send.
  void HandleResponse(const weft::config::v1::ConfigResponse& resp,
                      weft::config::v1::ConfigRequest* reply);
  void StreamError(const std::string& err);

  const ConfigClientOptions opts_;
  const Callback on_snapshot_;
  prometheus::Gauge* m_connected_ = nullptr;
  prometheus::Counter* m_acks_ = nullptr;
  prometheus::Counter* m_nacks_ = nullptr;
  prometheus::Counter* m_stream_errors_ = nullptr;
  prometheus::Family<prometheus::Counter>* m_terminations_ = nullptr;
  prometheus::Counter* m_messages_ = nullptr;
  prometheus::Counter* m_message_bytes_ = nullptr;

  std::mutex lifecycle_mu_;  // serializes Start/Stop
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::shared_ptr<grpc_client::Call> call_;  // the open stream, for Stop's Cancel
  ConfigClientStatus status_;
  SnapshotPtr current_;

  // The last good version's source proto, changed in place by each response (undone on NACK).
  // The client thread holds proto_mu_ from Apply to Commit/Revert, so CurrentProto never sees a
  // version that is not (yet) accepted; it may wait for one version's validation.
  mutable std::mutex proto_mu_;
  config::xds::SnapshotSet set_;
};

}  // namespace weft::ztunnel
