// Data-path internals shared by the proxy's .cc files. Everything here lives on one worker
// thread (see proxy.h); nothing is thread-safe unless stated.
#pragma once

#include <nghttp2/nghttp2.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/tls.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/hbone.h"
#include "ztunnel/proxy/io.h"
#include "ztunnel/proxy/proxy.h"
#include "ztunnel/rbac/authorizer.h"

namespace weft::ztunnel {

class Worker;
class HboneConn;

// A pod known to the proxy: its netns and listeners. Shared (read-only) by all workers.
struct Pod {
  std::string uid;
  UniqueFd netns;  // invalid: current netns (direct mode)
  using Kind = ListenerKind;
  struct Listener {
    Kind kind;
    UniqueFd fd;
    SockAddr addr;
  };
  std::vector<Listener> listeners;
  PodListenAddrs bound;
  std::string requested;                // the addresses asked for (re-add detection)
  OrigDstProvider* orig_dst = nullptr;  // never null once added
  int netns_fd() const { return netns.valid() ? netns.get() : -1; }
};

struct Proxy::Shared {
  ProxyOptions opts;
  ConfigStore* config;
  TlsContextCache* tls;
  Metrics* metrics;
  OrigDstProvider* orig_dst;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<Pod>> pods;
  std::atomic<uint64_t> rr{0};  // service endpoint round robin
  bool started = false;
};

// Metrics labels, counters and access-log fields of one proxied connection.
struct FlowInfo {
  std::string direction;  // "outbound" | "inbound"
  TcpLabels labels;
  TcpCounters counters{};
  SockAddr src, dst;
  std::string hbone_target;  // "ip:15008" when tunnelled
  std::string pod_uid;       // the local pod
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

 private:
  struct Side : EventLoop::Handler {
    PlainRelay* r;
    int idx;
    void OnEvents(uint32_t e) override { r->OnSide(idx, e); }
  };
  void OnSide(int idx, uint32_t events);
  void Pump(int from);
  void UpdateInterest(int idx);
  void MaybeDone();
  UniqueFd fd_[2];
  Side side_[2];
  ByteQueue q_[2];  // q_[i]: bytes read from i, waiting to be written to 1-i
  bool eof_[2] = {false, false}, shut_[2] = {false, false};
  bool connecting_ = true;
  uint32_t interest_[2] = {0, 0};
  uint64_t connect_timer_ = 0;
};

// Same-node fast path (fastpath.cc, docs/fastpath.md): the client socket accepted on the
// source pod's outbound listener and a socket connected from inside the destination pod's netns
// to the application, joined by splice(2) through one pipe per direction, so payload bytes
// never reach user space. Semantics are PlainRelay's: back-pressure (a direction reads only
// when its pipe is empty), half-close, RST propagation, connect timeout.
// The flow itself is the destination-side record (reporter="destination", authz set, pod_uid =
// the destination pod, registered as inbound so Reevaluate closes it); it also carries the
// source-side record (reporter="source"). Both are begun together (when the application
// answers; on failure just before finishing, so the metrics carry the response flags) and
// finished together, exactly once.
class SameNodeFlow : public Flow {
 public:
  // `client` is connected; `server` is connecting; pipe_r/pipe_w: [0] client->server, [1]
  // server->client, non-blocking.
  SameNodeFlow(Worker* w, FlowInfo dst_info, FlowInfo src_info, UniqueFd client, UniqueFd server,
               UniqueFd pipe_r[2], UniqueFd pipe_w[2], size_t pipe_size);
  ~SameNodeFlow() override;
  void Start();
  void Abort(const std::string& reason) override;
  void OnEvents(uint32_t events) override;  // unused: each socket has its own handler
  FlowInfo& source_info();

 private:
  class SourceRecord;
  struct Side : EventLoop::Handler {
    SameNodeFlow* f;
    int idx;
    void OnEvents(uint32_t e) override { f->OnSide(idx, e); }
  };
  void OnSide(int idx, uint32_t events);
  void OnConnected();
  bool Pump(int from);  // false: aborted
  void UpdateInterest(int idx);
  void MaybeDone();
  void FinishBoth();
  std::unique_ptr<SourceRecord> src_;
  UniqueFd fd_[2];  // [0] client (source pod), [1] server (destination app)
  UniqueFd pipe_r_[2], pipe_w_[2];
  size_t pipe_size_;
  size_t in_pipe_[2] = {0, 0};  // bytes spliced into pipe i and not yet out of it
  Side side_[2];
  bool eof_[2] = {false, false}, shut_[2] = {false, false};
  bool hup_[2] = {false, false};         // EPOLLHUP seen: unregister when idle (it never stops)
  bool registered_[2] = {false, false};  // fd_[i] is in the loop's epoll set
  bool connecting_ = true;
  uint32_t interest_[2] = {0, 0};
  uint64_t connect_timer_ = 0;
};

// One HBONE stream bound to one application socket.
class Tunnel : public Flow {
 public:
  // outbound: app is the captured client; inbound: app is the local server (connecting).
  Tunnel(Worker* w, FlowInfo info, UniqueFd app, bool outbound);
  ~Tunnel() override;
  void Attach(HboneConn* c, int32_t sid) {
    conn_ = c;
    sid_ = sid;
  }
  void Detach() { conn_ = nullptr; }
  int32_t sid() const { return sid_; }
  bool outbound() const { return outbound_; }
  int app_fd() const { return app_.get(); }

  void Begin() { Flow::Begin(); }
  void WatchApp();                          // registers the app fd with the loop
  void OnEstablished();                     // CONNECT answered 200: start moving bytes
  void OnData(const uint8_t* d, size_t n);  // h2 -> app (buffered until FlushDown)
  void FlushDown();                         // writes buffered h2 -> app bytes
  void OnRemoteEnd();                       // END_STREAM from the peer
  void OnStreamClosed(uint32_t error_code);
  void OnConnClosed(const std::string& reason);
  // nghttp2 data source: reads the app socket straight into nghttp2's frame buffer.
  ssize_t ReadForH2(uint8_t* buf, size_t len, uint32_t* flags);
  void Abort(const std::string& reason) override;
  void OnEvents(uint32_t events) override;
  // Inbound: called when the app connect finishes (ok or errno).
  std::function<void(int err)> on_app_connected;

 private:
  void SetInterest(uint32_t ev);
  void MaybeDone();
  HboneConn* conn_ = nullptr;
  int32_t sid_ = -1;
  UniqueFd app_;
  bool outbound_;
  bool app_connecting_;
  bool established_ = false, read_deferred_ = false, app_eof_ = false;
  bool remote_ended_ = false, shut_wr_ = false, stream_closed_ = false;
  uint32_t interest_ = 0;
  bool watched_ = false;
  ByteQueue down_;              // h2 -> app bytes the app socket did not take yet
  std::vector<iovec> pending_;  // h2 -> app bytes of this read batch, in the worker's scratch
};

class HboneConn : public EventLoop::Handler {
 public:
  enum class Role { kClient, kServer };
  HboneConn(Worker* w, Role role, std::shared_ptr<Pod> pod, UniqueFd fd,
            std::shared_ptr<SSL_CTX> ctx, SockAddr peer);
  ~HboneConn() override;
  absl::Status Start(bool tcp_connecting);

  // Client side.
  PoolKey key;
  bool CanTakeStream() const;
  void AddTunnel(Tunnel* t);

  // Used by tunnels.
  void ResumeData(int32_t sid);
  void Consume(int32_t sid, size_t n);
  void ResetStream(int32_t sid, uint32_t code);
  void TunnelGone(Tunnel* t);
  void FlushReceived();       // deferred window consumption + every dirty tunnel's FlushDown
  void MarkDirty(Tunnel* t);  // t got data in this read batch
  void StreamGauge(int delta);
  void Pump();
  void SubmitResponse(int32_t sid, int status, bool with_body);

  void Close(const std::string& reason);
  void OnEvents(uint32_t events) override;
  bool closed() const { return closed_; }
  size_t stream_count() const { return streams_.size() + pending_.size(); }

 private:
  friend struct H2Callbacks;
  void OnReadable();
  void DriveHandshake();
  bool OnHandshakeDone();
  bool FlushTls();
  void UpdateInterest();
  void ArmIdleTimer();
  void SubmitConnect(Tunnel* t);
  void HandleConnectRequest(int32_t sid, HeaderList headers);
  std::string direction() const { return role_ == Role::kClient ? "outbound" : "inbound"; }

 public:  // BIO callbacks
  ByteQueue tls_out_;

 private:
  Worker* w_;
  Role role_;
  std::shared_ptr<Pod> pod_;
  UniqueFd fd_;
  tls::SslPtr ssl_;
  nghttp2_session* session_ = nullptr;
  SockAddr peer_;
  std::optional<SpiffeId> peer_id_;
  bool tcp_connecting_ = false, handshake_done_ = false, closed_ = false, in_recv_ = false;
  bool pumping_ = false;
  bool more_to_send_ = false;  // Pump stopped for fairness with frames still pending
  bool got_app_data_ = false;  // client: the server's first TLS record decrypted
  uint32_t interest_ = 0;
  uint64_t timer_ = 0;  // connect/handshake timeout, then idle timer (client)
  absl::flat_hash_map<int32_t, Tunnel*> streams_;
  std::vector<Tunnel*> pending_;
  absl::flat_hash_map<int32_t, HeaderList> req_headers_;  // server: headers being received
  absl::flat_hash_map<int32_t, int> resp_status_;         // client: :status per stream
  std::vector<std::pair<int32_t, size_t>> consume_later_;
  std::vector<Tunnel*> dirty_;  // tunnels with data from the current read batch
};

class Worker {
 public:
  Worker(Proxy::Shared* shared, int index) : shared_(shared), index_(index) {}
  absl::Status Init();
  EventLoop& loop() { return loop_; }
  Proxy::Shared& shared() { return *shared_; }
  Metrics& metrics() { return *shared_->metrics; }
  const ProxyOptions& opts() const { return shared_->opts; }
  char* scratch() { return scratch_.get(); }
  // Decrypted bytes of one read batch; tunnels point into it until the batch is flushed.
  static constexpr size_t kScratch = 1 << 20;

  // Loop thread only.
  void AddPod(std::shared_ptr<Pod> pod);
  void RemovePod(const std::string& uid);
  void Reevaluate(const SnapshotPtr& snap);
  void OnAccept(const std::shared_ptr<Pod>& pod, Pod::Kind kind, UniqueFd fd);

  // Ownership of flows and connections (deleted via the loop's graveyard).
  Tunnel* NewTunnel(FlowInfo info, UniqueFd app, bool outbound);
  void ReleaseFlow(Flow* f);
  // Counts a refused connection (opened + closed with info's response_flags) and resets it.
  void Refuse(FlowInfo info, UniqueFd client, const std::string& reason);
  void RegisterInbound(Flow* f) { inbound_.insert(f); }
  void UnregisterInbound(Flow* f) { inbound_.erase(f); }
  HboneConn* NewConn(HboneConn::Role role, std::shared_ptr<Pod> pod, UniqueFd fd,
                     std::shared_ptr<SSL_CTX> ctx, SockAddr peer);
  void ReleaseConn(HboneConn* c);
  void PoolRemove(HboneConn* c);

 private:
  void ScheduleTrim();  // TrimBufferCache every 5 s on this worker's thread
  void HandleOutbound(const std::shared_ptr<Pod>& pod, UniqueFd fd);
  void HandleInboundPlain(const std::shared_ptr<Pod>& pod, UniqueFd fd);
  void HandleHbone(const std::shared_ptr<Pod>& pod, UniqueFd fd);
  // Same-node fast path (fastpath.cc): when `dst`'s pod is held by this proxy, takes `info`
  // (the source-side record) and `client`, authorizes and starts a SameNodeFlow (or refuses),
  // and returns true; otherwise returns false with both untouched.
  bool TrySameNode(const ConfigSnapshot& snap, const Workload& src, const Workload& dst,
                   FlowInfo& info, UniqueFd& client);
  // Plain TCP relay from `client` to info.dst, connecting from inside the pod's netns.
  void Relay(const std::shared_ptr<Pod>& pod, FlowInfo info, UniqueFd client, const IpAddr* src_ip);
  HboneConn* PoolGet(const std::shared_ptr<Pod>& pod, const PoolKey& key, const SockAddr& dial,
                     const IpAddr* src_ip);

  struct ListenerHandler : EventLoop::Handler {
    Worker* w;
    std::shared_ptr<Pod> pod;
    Pod::Kind kind;
    int fd;
    void OnEvents(uint32_t e) override;
  };
  struct PodState {
    std::shared_ptr<Pod> pod;
    std::vector<std::unique_ptr<ListenerHandler>> listeners;
  };

  Proxy::Shared* shared_;
  int index_;
  EventLoop loop_;
  std::map<std::string, PodState> pods_;
  std::map<Flow*, std::unique_ptr<Flow>> flows_;
  std::map<HboneConn*, std::unique_ptr<HboneConn>> conns_;
  std::set<Flow*> inbound_;
  // Per pod: pool key -> open client connections.
  std::map<std::string, absl::flat_hash_map<PoolKey, std::vector<HboneConn*>>> pools_;
  std::unique_ptr<char[]> scratch_{new char[kScratch]};
};

// Label helpers (flow.cc).
void FillSourceLabels(TcpLabels& l, const Workload* w, const std::optional<SpiffeId>& id);
void FillDestinationLabels(TcpLabels& l, const Workload* w, const std::optional<SpiffeId>& id);
void FillServiceLabels(TcpLabels& l, const Service* s);

}  // namespace weft::ztunnel
