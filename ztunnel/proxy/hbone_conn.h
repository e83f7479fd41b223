// HBONE connections (TLS 1.3 + HTTP/2, both roles) and their CONNECT streams (tunnels). The
// transport only: what a server does with a CONNECT is inbound.h's, which client connection a
// tunnel rides is pool.h's. Loop thread only.
#pragma once

#include <nghttp2/nghttp2.h>
#include <sys/uio.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "common/tls.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/flow.h"
#include "ztunnel/proxy/hbone.h"
#include "ztunnel/proxy/http_inbound.h"
#include "ztunnel/proxy/io.h"

namespace weft::ztunnel {

class Worker;
class HboneConn;
struct Pod;

// One HBONE stream bound to one application socket.
class Tunnel : public Flow {
 public:
  // outbound: app is the captured client; inbound: app is the local server (connecting).
  Tunnel(Worker* w, FlowInfo info, UniqueFd app, bool outbound);
  ~Tunnel() override;
  // Bytes received for the application that it has not taken yet (counted in HboneLimits).
  size_t buffered() const { return reported_buffered_; }
  void Attach(HboneConn* c, int32_t sid) {
    conn_ = c;
    sid_ = sid;
  }
  void Detach() { conn_ = nullptr; }
  int32_t sid() const { return sid_; }
  bool outbound() const { return outbound_; }
  int app_fd() const { return app_.get(); }

  void Begin() { Flow::Begin(); }
  void WatchApp();  // registers the app fd, once, edge-triggered
  // The app fd is in weft_local_legs: a short read does not prove it empty (io.h, Readiness).
  void AppInLocalLegs() { app_ready_.greedy = true; }
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
  // Inbound L7 (http_inbound.h): every byte between the stream and the app goes through it, and
  // its timeouts (header read, idle) end the stream.
  void SetHttp(std::unique_ptr<HttpInbound> http);

 private:
  void ScheduleFlush();  // FlushDown (and Pump) after this event batch
  void MaybeDone();
  void SyncBuffered();  // reports down_'s size change to HboneLimits
  HboneConn* conn_ = nullptr;
  int32_t sid_ = -1;
  UniqueFd app_;
  bool outbound_;
  bool app_connecting_;
  bool established_ = false, read_deferred_ = false, app_eof_ = false;
  bool remote_ended_ = false, shut_wr_ = false, stream_closed_ = false;
  Readiness app_ready_;  // the app socket, edge-triggered (io.h)
  bool watched_ = false, flush_scheduled_ = false;
  bool HttpAfterRead();  // L7: takes a local reply or aborts a broken codec; false: aborted
  void ConsumeHttpWindow();
  void HttpTimedOut();
  std::unique_ptr<HttpInbound> http_;
  ByteQueue reply_;             // L7: a local reply for the client, sent ahead of app bytes
  bool http_closing_ = false;   // L7 timeout: after reply_, END_STREAM then RST_STREAM
  ByteQueue to_client_;         // L7 HTTP/2: the codec's frames for the client
  uint64_t http_in_ = 0;        // L7: stream bytes fed to the codec
  uint64_t http_consumed_ = 0;  // L7: of those, given back to the stream's flow control
  ByteQueue down_;              // h2 -> app bytes the app socket did not take yet
  // h2 -> app bytes of this read batch, in the worker's scratch (one span, usually: inline)
  absl::InlinedVector<iovec, 1> pending_;
  size_t reported_buffered_ = 0;
};

class HboneConn : public EventLoop::Handler {
 public:
  enum class Role { kClient, kServer };
  HboneConn(Worker* w, Role role, std::shared_ptr<Pod> pod, UniqueFd fd,
            std::shared_ptr<SSL_CTX> ctx, SockAddr peer);
  ~HboneConn() override;
  absl::Status Start(bool tcp_connecting);

  // Client side (pool.h): the pool this connection is filed under.
  PoolKey key;
  bool CanTakeStream() const;
  void AddTunnel(Tunnel* t);

  // Server side (inbound.h): who is calling, from which pod's listener.
  const SockAddr& peer() const { return peer_; }
  const std::optional<SpiffeId>& peer_id() const { return peer_id_; }  // set after the handshake
  const std::shared_ptr<Pod>& pod() const { return pod_; }
  // Binds an accepted CONNECT stream to its tunnel (answer it with SubmitResponse).
  void AcceptStream(int32_t sid, Tunnel* t);

  // Used by tunnels.
  void ResumeData(int32_t sid);
  void Consume(int32_t sid, size_t n);
  void ResetStream(int32_t sid, uint32_t code);
  void TunnelGone(Tunnel* t);
  void FlushReceived();       // deferred window consumption + every dirty tunnel's FlushDown
  void MarkDirty(Tunnel* t);  // t got data in this read batch
  void StreamGauge(int delta);
  void Pump();
  // Pump after this event batch: tunnels made readable in one batch share one Pump, so their
  // frames leave in one TLS write and one sendmsg instead of one each.
  void SchedulePump();
  void SubmitResponse(int32_t sid, int status, bool with_body);

  void Close(const std::string& reason);
  // Server side, hitless upgrade: a GOAWAY naming no last stream (RFC 9113 6.8's shutdown
  // notice), so the peer puts new streams on a new connection; streams go on.
  void NotifyShutdown();
  void OnEvents(uint32_t events) override;
  bool closed() const { return closed_; }
  size_t stream_count() const { return streams_.size() + pending_.size(); }

  // Server connections' place in the limits (worker.h keeps it; limits.h counts it).
  enum class LimitState { kNone, kHandshaking, kEstablished };
  LimitState limit_state = LimitState::kNone;
  EventLoop::Clock::time_point admitted;  // when it started to count as handshaking
  // False while the unread-bytes budget is spent and this connection holds unread bytes.
  bool MayRead() const;
  void ResumeRead();
  size_t BufferedBytes() const;  // unread bytes of this connection's streams
  // While not read: since when its unread bytes last shrank, and how many there were then.
  EventLoop::Clock::time_point stalled_since;
  size_t stalled_bytes = 0;

 private:
  friend struct H2Callbacks;
  void OnReadable(bool hangup);
  void CreateSsl(SSL_CTX* ctx);
  bool CheckClientHello();  // server: false while waiting for its headers, or closed
  void DriveHandshake();
  bool OnHandshakeDone();  // false: closed
  bool VerifyPeer();       // the peer's SPIFFE identity; false: closed
  bool StartSession();     // the HTTP/2 session and our SETTINGS; false: closed
  bool FlushTls();
  void UpdateInterest();
  void ArmIdleTimer();
  void SubmitConnect(Tunnel* t);
  std::string direction() const { return role_ == Role::kClient ? "outbound" : "inbound"; }

 public:  // BIO callbacks
  ByteQueue tls_out_;
  Readiness rx_ready_;  // the socket's read side, as the last read and epoll left it (io.h)
  int fd() const { return fd_.get(); }

 private:
  Worker* w_;
  Role role_;
  std::shared_ptr<Pod> pod_;
  UniqueFd fd_;
  tls::SslPtr ssl_;
  std::shared_ptr<SSL_CTX> ctx_;  // server: until CreateSsl
  nghttp2_session* session_ = nullptr;
  SockAddr peer_;
  std::optional<SpiffeId> peer_id_;
  bool tcp_connecting_ = false, handshake_done_ = false, closed_ = false, in_recv_ = false;
  bool pumping_ = false, pump_scheduled_ = false;
  bool more_to_send_ = false;   // Pump stopped for fairness with frames still pending
  bool got_app_data_ = false;   // client: the server's first TLS record decrypted
  bool hello_checked_ = false;  // server: CheckClientHello passed
  bool read_paused_ = false;    // not reading: over the unread-bytes budget (Worker::PauseRead)
  uint32_t interest_ = 0;
  uint64_t timer_ = 0;  // connect/handshake timeout, then idle timer (client)
  absl::flat_hash_map<int32_t, Tunnel*> streams_;
  std::vector<Tunnel*> pending_;
  absl::flat_hash_map<int32_t, HeaderList> req_headers_;  // server: headers being received
  absl::flat_hash_map<int32_t, int> resp_status_;         // client: :status per stream
  std::vector<std::pair<int32_t, size_t>> consume_later_;
  std::vector<Tunnel*> dirty_;  // tunnels with data from the current read batch
};

}  // namespace weft::ztunnel
