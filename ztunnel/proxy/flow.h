// A proxied connection's record (metrics labels, counters, access log) and the plain TCP relay.
// Loop thread only.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "common/net.h"
#include "common/unique_fd.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/http_inbound.h"
#include "ztunnel/proxy/io.h"
#include "ztunnel/rbac/authorizer.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

class Worker;
struct Pod;

// Metrics labels, counters and access-log fields of one proxied connection.
struct FlowInfo {
  const char* direction = "";  // "outbound" | "inbound"
  SharedLabels labels;         // copied on write; shared with the series' other flows once begun
  const TcpCounters* counters = nullptr;  // the series' (Metrics), set by Flow::Begin
  SockAddr src, dst;
  std::optional<SockAddr> hbone_target;  // ip:15008 when tunnelled
  std::string pod_uid;                   // the local pod
  // Inbound only: what authorization saw, re-evaluated on policy change.
  std::optional<ConnectionInfo> authz;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  uint64_t sent = 0, received = 0;  // client->server, server->client
  std::string error;
};

// A proxied connection (tunnel or plain relay). Begin() counts it opened; Finish() counts it
// closed, writes the access log and schedules deletion; both happen exactly once.
class Flow : public EventLoop::Handler {
 public:
  Flow(Worker* w, FlowInfo info) : w_(w), info_(std::move(info)) {}
  ~Flow() override;
  virtual void Abort(const std::string& reason) = 0;
  // ztunnel is stopping: say goodbye where the protocol has a way (HTTP/2's GOAWAY).
  virtual void OnShutdown() {}
  FlowInfo& info() { return info_; }
  void AddSent(uint64_t n);
  void AddReceived(uint64_t n);

 protected:
  void Begin();
  void Finish();
  Worker* w_;
  FlowInfo info_;
  bool begun_ = false, finished_ = false;
};

// Plain TCP <-> TCP relay: passthrough to non-mesh destinations and inbound plaintext.
class PlainRelay : public Flow {
 public:
  // `client` is connected; `server` is connecting (EPOLLOUT tells when).
  PlainRelay(Worker* w, FlowInfo info, UniqueFd client, UniqueFd server);
  void Start();
  void Abort(const std::string& reason) override;
  void OnEvents(uint32_t events) override;  // unused: each side has its own handler
  // Inbound L7 (http_inbound.h): every byte between client and server goes through it, and its
  // timeouts (header read, idle) end the relay.
  void SetHttp(std::unique_ptr<HttpInbound> http);

 private:
  struct Side : EventLoop::Handler {
    PlainRelay* r;
    int idx;
    void OnEvents(uint32_t e) override { r->OnSide(idx, e); }
  };
  void OnSide(int idx, uint32_t events);
  void Pump(int from);
  ssize_t ReadHttp(int from);
  void HttpTimedOut();
  void MaybeDone();
  std::unique_ptr<HttpInbound> http_;
  ByteQueue scratch_;  // L7: bytes read, before the codec
  UniqueFd fd_[2];
  Side side_[2];
  ByteQueue q_[2];  // q_[i]: bytes read from i, waiting to be written to 1-i
  bool eof_[2] = {false, false}, shut_[2] = {false, false};
  bool connecting_ = true;
  Readiness ready_[2];  // both sockets registered once, edge-triggered (io.h)
  uint64_t connect_timer_ = 0;
};

// Flows every path starts.
// Counts a refused connection (opened + closed with info's response_flags) and resets `client`
// (may be invalid: a record without a socket).
void RefuseFlow(Worker& w, FlowInfo info, UniqueFd client, const std::string& reason);
// A PlainRelay from `client` to info.dst, connecting from inside the pod's netns (from `src_ip`
// if set), through `http` when set (inbound L7); a failed connect is refused with "UF".
void StartRelay(Worker& w, const Pod& pod, FlowInfo info, UniqueFd client, const IpAddr* src_ip,
                std::unique_ptr<HttpInbound> http = nullptr);
// Closes `fd` with RST: a connection dropped before it became a flow.
void ResetConnection(UniqueFd& fd);

// Label helpers.
void FillSourceLabels(TcpLabels& l, const Workload* w, const std::optional<SpiffeId>& id);
void FillDestinationLabels(TcpLabels& l, const Workload* w, const std::optional<SpiffeId>& id);
void FillServiceLabels(TcpLabels& l, const Service* s);

// The destination-side record of a connection from `from` to `target` for the local pod
// `pod_uid` whose workload is `dst`: reporter "destination", `security_policy`, the source's
// labels from `src`/`src_id` (either may be unknown), the destination's and its Service's. The one
// builder for 15006 plaintext, 15008 HBONE and the same-node fast path.
FlowInfo DestinationFlowInfo(const ConfigSnapshot& snap, const std::string& pod_uid,
                             const Workload& dst, const Workload* src,
                             const std::optional<SpiffeId>& src_id, const SockAddr& from,
                             const SockAddr& target, const char* security_policy);

}  // namespace weft::ztunnel
