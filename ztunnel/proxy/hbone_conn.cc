// HBONE connections: TLS 1.3 (OpenSSL, over a BIO that reads/writes our own byte queues so
// socket I/O is batched) carrying an HTTP/2 session (nghttp2) whose CONNECT streams are
// tunnels. Both roles share this class; the client keeps a pool of them per pod (pool.cc), the
// server hands each CONNECT to the inbound path (inbound.cc).
#include "ztunnel/proxy/hbone_conn.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <climits>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "ztunnel/proxy/worker.h"

namespace weft::ztunnel {

namespace {

// OpenSSL's read-ahead buffer once the handshake is done. Until then OpenSSL's default (one
// record, ~18 KiB), and SSL_MODE_RELEASE_BUFFERS frees both record buffers whenever they are
// empty, so a connection waiting for its peer holds neither (limits.h).
constexpr size_t kTlsReadBuffer = 256 * 1024;
constexpr size_t kTlsOutHighWater = 1 << 20;  // stop generating frames above this
// The largest ClientHello the server takes. OpenSSL accepts up to 128 KiB and, on reading the
// message header, allocates and zeroes room for all of it, so a peer that announced 128 KiB
// and trickled the rest held that much for the whole handshake timeout. A ztunnel's (or any
// TLS 1.3 client's, post-quantum key shares included) is under 2 KiB.
constexpr size_t kMaxClientHello = 16 * 1024;
// A TLS record header (5 bytes) and a handshake message header (4 bytes).
constexpr int kHelloHeaders = 9;
// Bigger DATA frames than HTTP/2's 16 KiB default: one read() of the app socket and one
// nghttp2 frame per 128 KiB. Small enough not to hold up other streams on the connection.
constexpr int64_t kMaxDataFrame = 128 * 1024;

// The write side of TLS goes through a BIO that appends to HboneConn::tls_out_, so records are
// sent in one batch per Pump instead of one syscall each. The read side is a socket BIO
// (SocketBioMethod) with read-ahead: OpenSSL reads up to 256 KiB straight from the kernel into
// its own buffer (after the handshake; see kTlsReadBuffer).
int BioWrite(BIO* b, const char* d, int n) {
  auto* c = static_cast<HboneConn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  c->tls_out_.Append(d, static_cast<size_t>(n));
  return n;
}

int BioRead(BIO* b, char*, int) {
  BIO_clear_retry_flags(b);
  return -1;  // write-only
}

long BioCtrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int BioCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD* QueueBioMethod() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft-queue");
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, BioCreate);
    return m;
  }();
  return m;
}

// The read side: read(2) on the connection's socket, trusting a short read (io.h's Readiness).
// Once a read returned less than asked, the socket is drained until epoll reports it readable
// again (level-triggered, so bytes or a FIN left behind are reported at the next turn), and
// SSL_read learns WANT_READ without a read(2) that would only say EAGAIN: one syscall less per
// read batch. EOF and errors as OpenSSL's socket BIO reports them (BIO_FLAGS_IN_EOF, errno).
int SocketBioRead(BIO* b, char* d, int n) {
  auto* c = static_cast<HboneConn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  ssize_t k = ReadReady(c->fd(), d, static_cast<size_t>(n), c->rx_ready_);
  if (k > 0) return static_cast<int>(k);
  if (k == 0) {
    BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    return 0;
  }
  if (errno == EAGAIN || errno == EINTR) BIO_set_retry_read(b);
  return -1;
}

int SocketBioWrite(BIO* b, const char*, int) {
  BIO_clear_retry_flags(b);
  return -1;  // read-only: writes go through the queue BIO
}

long SocketBioCtrl(BIO* b, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    default:
      return 0;
  }
}

BIO_METHOD* SocketBioMethod() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft-socket");
    BIO_meth_set_write(m, SocketBioWrite);
    BIO_meth_set_read(m, SocketBioRead);
    BIO_meth_set_ctrl(m, SocketBioCtrl);
    BIO_meth_set_create(m, BioCreate);
    return m;
  }();
  return m;
}

std::string H2Err(int rv) {
  return nghttp2_strerror(rv);
}

}  // namespace

// ---- nghttp2 callbacks --------------------------------------------------------------------

struct H2Callbacks {
  static HboneConn* C(void* u) { return static_cast<HboneConn*>(u); }

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* f, void* u) {
    auto* c = C(u);
    if (c->role_ == HboneConn::Role::kServer && f->hd.type == NGHTTP2_HEADERS &&
        f->headers.cat == NGHTTP2_HCAT_REQUEST)
      c->req_headers_[f->hd.stream_id];
    return 0;
  }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nl,
                      const uint8_t* value, size_t vl, uint8_t, void* u) {
    auto* c = C(u);
    std::string k(reinterpret_cast<const char*>(name), nl);
    std::string v(reinterpret_cast<const char*>(value), vl);
    if (c->role_ == HboneConn::Role::kServer) {
      auto it = c->req_headers_.find(f->hd.stream_id);
      if (it != c->req_headers_.end() && it->second.size() < 64)
        it->second.emplace_back(std::move(k), std::move(v));
    } else if (k == ":status") {
      int s = 0;
      for (char ch : v) s = s * 10 + (ch - '0');
      c->resp_status_[f->hd.stream_id] = s;
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* u) {
    auto* c = C(u);
    int32_t sid = f->hd.stream_id;
    if (f->hd.type == NGHTTP2_HEADERS) {
      if (c->role_ == HboneConn::Role::kServer && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        auto it = c->req_headers_.find(sid);
        if (it != c->req_headers_.end()) {
          HeaderList h = std::move(it->second);
          c->req_headers_.erase(it);
          c->w_->inbound().OnConnect(*c, sid, h);
        }
      } else if (c->role_ == HboneConn::Role::kClient && f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        auto st = c->resp_status_[sid];
        c->resp_status_.erase(sid);
        auto it = c->streams_.find(sid);
        if (it != c->streams_.end()) {
          if (st == 200) {
            it->second->OnEstablished();
          } else {
            Tunnel* t = it->second;
            t->info().labels.mut().response_flags = st == 403 ? "DENY" : "UF";
            c->w_->metrics().ConnectionFailure("outbound", absl::StrCat("hbone_status_", st));
            t->Abort(absl::StrCat("destination ztunnel answered CONNECT with ", st,
                                  st == 403 ? " (denied by an AuthorizationPolicy)" : ""));
          }
        }
      }
    }
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      auto it = c->streams_.find(sid);
      if (it != c->streams_.end()) it->second->OnRemoteEnd();
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t sid, const uint8_t* d, size_t n,
                         void* u) {
    auto* c = C(u);
    auto it = c->streams_.find(sid);
    if (it == c->streams_.end()) {
      c->Consume(sid, n);  // stream gone: drop the bytes but keep the connection window open
      return 0;
    }
    it->second->OnData(d, n);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t sid, uint32_t code, void* u) {
    auto* c = C(u);
    c->req_headers_.erase(sid);
    c->resp_status_.erase(sid);
    auto it = c->streams_.find(sid);
    if (it == c->streams_.end()) return 0;
    Tunnel* t = it->second;
    c->streams_.erase(it);
    // Bytes of this batch still point into the scratch buffer: write (or copy) them now.
    c->dirty_.erase(std::remove(c->dirty_.begin(), c->dirty_.end(), t), c->dirty_.end());
    t->FlushDown();
    t->Detach();
    t->OnStreamClosed(code);
    c->StreamGauge(-1);
    c->ArmIdleTimer();
    return 0;
  }

  static int OnInvalidFrame(nghttp2_session*, const nghttp2_frame* f, int err, void* u) {
    auto* c = C(u);
    c->w_->metrics().BadInput(c->role_ == HboneConn::Role::kServer ? "15008" : "hbone_client",
                              "h2_invalid_frame");
    LOG_WARN("hbone", "invalid HTTP/2 frame from peer",
             {{"peer", c->peer_.ToString()}, {"error", H2Err(err)}, {"type", f->hd.type}});
    return 0;
  }

  static ssize_t ReadLength(nghttp2_session*, uint8_t, int32_t, int32_t conn_window,
                            int32_t stream_window, uint32_t peer_max_frame, void*) {
    int64_t n = std::min<int64_t>({kMaxDataFrame, peer_max_frame, conn_window, stream_window});
    return static_cast<ssize_t>(std::max<int64_t>(n, 1));
  }

  static ssize_t DataRead(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                          nghttp2_data_source* src, void*) {
    return static_cast<Tunnel*>(src->ptr)->ReadForH2(buf, len, flags);
  }
};

// ---- HboneConn ----------------------------------------------------------------------------

HboneConn::HboneConn(Worker* w, Role role, std::shared_ptr<Pod> pod, UniqueFd fd,
                     std::shared_ptr<SSL_CTX> ctx, SockAddr peer)
    : w_(w), role_(role), pod_(std::move(pod)), fd_(std::move(fd)), peer_(peer) {
  // A server connection gets its TLS state (~10 KiB) only once a ClientHello is coming
  // (CheckClientHello): a peer that connects and says nothing costs just this object.
  if (role_ == Role::kClient) {
    CreateSsl(ctx.get());
    w_->metrics().pool_connections().Increment();
  } else {
    ctx_ = std::move(ctx);
  }
}

void HboneConn::CreateSsl(SSL_CTX* ctx) {
  ssl_.reset(SSL_new(ctx));
  BIO* wbio = BIO_new(QueueBioMethod());
  BIO_set_data(wbio, this);
  BIO* rbio = BIO_new(SocketBioMethod());
  BIO_set_data(rbio, this);
  SSL_set_bio(ssl_.get(), rbio, wbio);
  SSL_set_read_ahead(ssl_.get(), 1);
  SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
  if (role_ == Role::kClient)
    SSL_set_connect_state(ssl_.get());
  else
    SSL_set_accept_state(ssl_.get());
}

HboneConn::~HboneConn() {
  if (session_) nghttp2_session_del(session_);
}

absl::Status HboneConn::Start(bool tcp_connecting) {
  tcp_connecting_ = tcp_connecting;
  if (role_ == Role::kClient) SetDeadPeerTimeouts(fd_.get());  // accepted ones: Worker
  SetNoDelay(fd_.get());
  interest_ = tcp_connecting ? EPOLLOUT : EPOLLIN;
  if (role_ == Role::kServer) {
    // No wake-up (and no TLS work) until the ClientHello's headers are in (CheckClientHello).
    int lowat = kHelloHeaders;
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  }
  auto st = w_->loop().Add(fd_.get(), interest_, this);
  if (!st.ok()) return st;
  timer_ = w_->loop().AddTimer(w_->opts().handshake_timeout, [this] {
    timer_ = 0;
    if (!handshake_done_) {
      w_->metrics().HandshakeFailure(direction(), "timeout");
      Close(tcp_connecting_ ? "TCP connect timed out (is port 15008 reachable? maybe a "
                              "NetworkPolicy is blocking HBONE port 15008)"
                            : "TLS handshake timed out");
    }
  });
  if (!tcp_connecting && role_ == Role::kClient) DriveHandshake();
  return absl::OkStatus();
}

bool HboneConn::CanTakeStream() const {
  if (closed_ || (session_ && !nghttp2_session_check_request_allowed(session_))) return false;
  // Streams whose destination application does not read have spent the connection's window:
  // a new stream here would wait behind them, so the pool opens another connection.
  if (session_ && nghttp2_session_get_remote_window_size(session_) < kMaxDataFrame) return false;
  uint32_t max = w_->opts().max_streams_per_conn;
  if (session_) {
    max = std::min(max, nghttp2_session_get_remote_settings(
                            session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  }
  return stream_count() < max;
}

void HboneConn::AddTunnel(Tunnel* t) {
  if (timer_ && handshake_done_) {  // idle timer running
    w_->loop().CancelTimer(timer_);
    timer_ = 0;
  }
  if (!handshake_done_) {
    pending_.push_back(t);
    return;
  }
  SubmitConnect(t);
  Pump();
}

void HboneConn::SubmitConnect(Tunnel* t) {
  HeaderList h = BuildConnectRequest(t->info().dst);
  std::vector<nghttp2_nv> nv;
  for (auto& [k, v] : h)
    nv.push_back({reinterpret_cast<uint8_t*>(k.data()), reinterpret_cast<uint8_t*>(v.data()),
                  k.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
  nghttp2_data_provider prd;
  prd.source.ptr = t;
  prd.read_callback = H2Callbacks::DataRead;
  int32_t sid = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), &prd, t);
  if (sid < 0) {
    t->Abort("cannot open HBONE stream: " + H2Err(sid));
    return;
  }
  t->Attach(this, sid);
  streams_[sid] = t;
  StreamGauge(+1);
}

void HboneConn::SubmitResponse(int32_t sid, int status, bool with_body) {
  std::string st = std::to_string(status);
  nghttp2_nv nv[] = {
      {(uint8_t*)":status", (uint8_t*)st.data(), 7, st.size(), NGHTTP2_NV_FLAG_NONE}};
  if (with_body) {
    auto it = streams_.find(sid);
    nghttp2_data_provider prd;
    prd.source.ptr = it->second;
    prd.read_callback = H2Callbacks::DataRead;
    nghttp2_submit_response(session_, sid, nv, 1, &prd);
  } else {
    nghttp2_submit_response(session_, sid, nv, 1, nullptr);
  }
  Pump();
}

void HboneConn::ResumeData(int32_t sid) {
  if (session_) nghttp2_session_resume_data(session_, sid);
}

void HboneConn::Consume(int32_t sid, size_t n) {
  if (!session_ || n == 0) return;
  if (in_recv_) {
    consume_later_.emplace_back(sid, n);
    return;
  }
  nghttp2_session_consume(session_, sid, n);
}

void HboneConn::ResetStream(int32_t sid, uint32_t code) {
  if (session_ && !closed_) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, sid, code);
    Pump();
  }
}

void HboneConn::StreamGauge(int delta) {
  // Only the client side pools; the server's streams are counted by weft_active_connections.
  if (role_ == Role::kClient) w_->metrics().pool_streams().Increment(delta);
}

void HboneConn::MarkDirty(Tunnel* t) {
  if (std::find(dirty_.begin(), dirty_.end(), t) == dirty_.end()) dirty_.push_back(t);
}

void HboneConn::TunnelGone(Tunnel* t) {
  dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), t), dirty_.end());
  auto it = streams_.find(t->sid());
  if (it != streams_.end() && it->second == t) {
    streams_.erase(it);
    StreamGauge(-1);
    if (session_ && !closed_) {
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, t->sid(), NGHTTP2_CANCEL);
      Pump();
    }
  }
  pending_.erase(std::remove(pending_.begin(), pending_.end(), t), pending_.end());
  ArmIdleTimer();
}

void HboneConn::ArmIdleTimer() {
  if (role_ != Role::kClient || closed_ || stream_count() > 0 || timer_) return;
  timer_ = w_->loop().AddTimer(w_->opts().pool_idle_timeout, [this] {
    timer_ = 0;
    if (stream_count() == 0) {
      if (session_) nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
      Pump();
      Close("idle");
    }
  });
}

void HboneConn::OnEvents(uint32_t ev) {
  if (closed_) return;
  rx_ready_.OnEvents(ev & ~static_cast<uint32_t>(EPOLLOUT));
  if (tcp_connecting_) {
    int err = ConnectResult(fd_.get());
    if (err != 0) {
      w_->metrics().ConnectionFailure("outbound", "hbone_connect_failed");
      Close(absl::StrCat("connect to ", peer_.ToString(), " failed: ", std::strerror(err),
                         " (is the destination's ztunnel running? maybe a NetworkPolicy is "
                         "blocking HBONE port 15008)"));
      return;
    }
    if (!(ev & EPOLLOUT)) return;
    tcp_connecting_ = false;
    DriveHandshake();
    return;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable((ev & (EPOLLHUP | EPOLLERR)) != 0);
  if (closed_) return;
  if (ev & EPOLLOUT) {
    if (!FlushTls()) return;
    Pump();
  }
}

bool HboneConn::MayRead() const {
  return !w_->limits().OverBudget() || BufferedBytes() == 0;
}

size_t HboneConn::BufferedBytes() const {
  size_t n = 0;
  for (const auto& [sid, t] : streams_) n += t->buffered();
  return n;
}

void HboneConn::ResumeRead() {
  read_paused_ = false;
  UpdateInterest();  // level-triggered: bytes waiting in the socket bring OnEvents back
}

bool HboneConn::CheckClientHello() {
  uint8_t h[kHelloHeaders];
  ssize_t n = recv(fd_.get(), h, sizeof h, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  // A handshake record starting a ClientHello (type 1) of a plausible length. Anything else,
  // fewer bytes and an EOF included, is left to OpenSSL, which refuses it as before.
  if (n == kHelloHeaders && h[0] == 22 && h[5] == 1) {
    size_t len = (size_t{h[6]} << 16) | (size_t{h[7]} << 8) | h[8];
    if (len > kMaxClientHello) {
      w_->metrics().BadInput("15008", "client_hello_too_large");
      Close(absl::StrCat("ClientHello of ", len, " bytes announced (at most ", kMaxClientHello,
                         " taken)"));
      return false;
    }
  }
  hello_checked_ = true;
  int lowat = 1;
  setsockopt(fd_.get(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  CreateSsl(ctx_.get());
  ctx_.reset();
  return true;
}

void HboneConn::OnReadable(bool hangup) {
  if (!handshake_done_) {
    if (role_ == Role::kServer && !hello_checked_ && !CheckClientHello()) return;
    DriveHandshake();
    if (closed_ || !handshake_done_) return;
  }
  // Over the ztunnel's budget of unread bytes, a connection that holds some is not read: its
  // peer's sends back up into TCP (back-pressure) instead of into our memory. A hangup is
  // still read, to close.
  if (!hangup && !MayRead()) {
    read_paused_ = true;
    UpdateInterest();
    w_->PauseRead(this);
    return;
  }
  // Decrypt into the worker's scratch buffer, record after record, and feed nghttp2. DATA is
  // handed to the tunnels as pointers into that buffer and written out (sendmsg with iovecs)
  // when the buffer is about to be reused and at the end: no copy on this side.
  char* base = w_->scratch();
  size_t off = 0, total = 0;
  in_recv_ = true;
  while (true) {
    if (Worker::kScratch - off < kTlsReadBuffer / 4) {
      in_recv_ = false;
      FlushReceived();
      if (closed_) return;
      in_recv_ = true;
      off = 0;
    }
    ERR_clear_error();  // see DriveHandshake
    int n = SSL_read(ssl_.get(), base + off, static_cast<int>(Worker::kScratch - off));
    if (n <= 0) {
      int e = SSL_get_error(ssl_.get(), n);
      if (e == SSL_ERROR_WANT_READ) break;
      in_recv_ = false;
      FlushReceived();
      if (closed_) return;
      unsigned long err = ERR_peek_error();
      if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && err == 0) ||
          ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        Close("peer closed the connection");
      } else if (role_ == Role::kClient && !got_app_data_) {
        // TLS 1.3: the client finishes first and learns that the server rejected its
        // certificate from an alert on the first read. That is a handshake failure.
        std::string detail;
        TlsFailure f = ClassifyHandshakeFailure(ssl_.get(), &detail);
        w_->metrics().HandshakeFailure(direction(), TlsFailureName(f));
        Close(absl::StrCat("server ", peer_.ToString(),
                           " rejected the handshake: ", Av(TlsFailureName(f)), " (", detail, ")"));
      } else {
        w_->metrics().BadInput(role_ == Role::kServer ? "15008" : "hbone_client", "tls_record");
        Close("TLS error: " + tls::OpenSslErrors());
      }
      return;
    }
    got_app_data_ = true;
    ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<uint8_t*>(base + off), n);
    if (rv < 0) {
      in_recv_ = false;
      FlushReceived();
      w_->metrics().BadInput(role_ == Role::kServer ? "15008" : "hbone_client", "h2_protocol");
      Close("HTTP/2 protocol error from peer: " + H2Err(static_cast<int>(rv)));
      return;
    }
    if (closed_) return;
    off += static_cast<size_t>(n);
    total += static_cast<size_t>(n);
    // Fairness: let other connections run; level-triggered epoll brings us back, but only
    // if OpenSSL holds nothing already read from the socket.
    if (total >= kTlsReadBuffer * 4 && !SSL_has_pending(ssl_.get())) break;
  }
  in_recv_ = false;
  FlushReceived();
  if (closed_) return;
  Pump();
}

void HboneConn::FlushReceived() {
  for (auto [sid, n] : consume_later_) nghttp2_session_consume(session_, sid, n);
  consume_later_.clear();
  auto dirty = std::move(dirty_);
  dirty_.clear();
  for (Tunnel* t : dirty) t->FlushDown();
}

void HboneConn::DriveHandshake() {
  // SSL_get_error and the classification below read this thread's error queue, which must be
  // empty before the call: building a TLS context for a new certificate on this worker leaves
  // benign PEM errors there, and a port probe's EOF was then reported as a protocol failure.
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    if (!OnHandshakeDone()) return;
    FlushTls();
    return;
  }
  int e = SSL_get_error(ssl_.get(), rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    FlushTls();
    return;
  }
  unsigned long err = ERR_peek_error();
  // Connected and closed without sending a byte: a port probe (kubelet, load balancer, a
  // readiness check), not a failed handshake. "Without a byte" is what the TLS layer read, not
  // SSL_in_before(): that turns false at the first SSL_do_handshake, which usually ran (and
  // wanted to read) before the probe's FIN arrived.
  const bool nothing_received = BIO_number_read(SSL_get_rbio(ssl_.get())) == 0;
  if (nothing_received && ((e == SSL_ERROR_SYSCALL && err == 0) ||
                           ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    ERR_clear_error();
    w_->metrics().BadInput("15008", "closed_before_handshake");
    Close("peer closed before the TLS handshake");
    return;
  }
  TlsFailure f = ClassifyHandshakeFailure(ssl_.get());
  FlushTls();  // deliver our alert
  w_->metrics().HandshakeFailure(direction(), TlsFailureName(f));
  Close(absl::StrCat("TLS handshake with ", peer_.ToString(), " failed: ", Av(TlsFailureName(f))));
}

bool HboneConn::OnHandshakeDone() {
  if (!VerifyPeer()) return false;
  if (role_ == Role::kServer && !w_->HboneEstablished(this)) return false;
  handshake_done_ = true;
  SSL_set_default_read_buffer_len(ssl_.get(), kTlsReadBuffer);
  if (timer_) {
    w_->loop().CancelTimer(timer_);
    timer_ = 0;
  }
  if (!StartSession()) return false;
  auto pending = std::move(pending_);
  pending_.clear();
  for (Tunnel* t : pending) SubmitConnect(t);
  Pump();
  return !closed_;
}

bool HboneConn::VerifyPeer() {
  TlsFailure f = TlsFailure::kNone;
  if (role_ == Role::kClient) {
    auto st = VerifyPeerIdentity(ssl_.get(), key.dst, &f);
    if (!st.ok()) {
      w_->metrics().HandshakeFailure(direction(), TlsFailureName(f));
      Close(absl::StrCat("server ", peer_.ToString(), " failed identity check: ", st.message()));
      return false;
    }
    peer_id_ = key.dst;
  } else {
    auto id = PeerIdentity(ssl_.get(), &f);
    if (!id.ok()) {
      w_->metrics().HandshakeFailure(direction(), TlsFailureName(f));
      Close(absl::StrCat("client ", peer_.ToString(), " rejected: ", id.status().message()));
      return false;
    }
    peer_id_ = *id;
  }
  return true;
}

bool HboneConn::StartSession() {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, H2Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, H2Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, H2Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, H2Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, H2Callbacks::OnStreamClose);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, H2Callbacks::OnInvalidFrame);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, H2Callbacks::ReadLength);
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  // Window updates only once the application socket took the bytes: back-pressure end to end.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, w_->opts().max_streams_per_conn);
  int rv = role_ == Role::kClient ? nghttp2_session_client_new2(&session_, cbs, this, opt)
                                  : nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    Close("nghttp2 session: " + H2Err(rv));
    return false;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, w_->opts().max_streams_per_conn},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(w_->opts().stream_window)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, static_cast<uint32_t>(kMaxDataFrame)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, 4);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        w_->opts().connection_window);
  // Handshaken after a successor took the listeners over: new streams belong there.
  if (role_ == Role::kServer && w_->draining()) nghttp2_submit_shutdown_notice(session_);
  LOG_DEBUG("hbone", "HBONE connection up",
            {{"peer", peer_.ToString()},
             {"peer_identity", peer_id_->ToString()},
             {"role", role_ == Role::kClient ? "client" : "server"}});
  return true;
}

bool HboneConn::FlushTls() {
  if (!FlushTo(fd_.get(), tls_out_)) {
    Close(absl::StrCat("write to ", peer_.ToString(), " failed: ", std::strerror(errno)));
    return false;
  }
  UpdateInterest();
  return true;
}

void HboneConn::Pump() {
  // nghttp2 forbids mem_send from inside its own callbacks; OnReadable pumps afterwards.
  if (closed_ || !session_ || pumping_ || in_recv_) return;
  pumping_ = true;
  // Coalesce small frames into one TLS record; hand big ones to SSL_write directly.
  std::string staging;
  auto write_tls = [&](const uint8_t* d, size_t n) {
    while (n > 0) {
      int k = SSL_write(ssl_.get(), d, static_cast<int>(std::min<size_t>(n, 1 << 20)));
      if (k <= 0) return false;
      d += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  };
  auto flush_staging = [&] {
    bool r = staging.empty() ||
             write_tls(reinterpret_cast<const uint8_t*>(staging.data()), staging.size());
    staging.clear();
    return r;
  };
  // Generate up to the high-water mark, write it to the socket, repeat while the socket takes
  // everything. A bounded number of rounds keeps one busy connection from starving the others;
  // if it still has frames to send, EPOLLOUT (immediately ready) brings us back.
  more_to_send_ = false;
  for (int round = 0; round < 8; round++) {
    bool ok = true, produced = false;
    while (ok && tls_out_.size() < kTlsOutHighWater) {
      const uint8_t* data;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        pumping_ = false;
        Close("HTTP/2 send error: " + H2Err(static_cast<int>(n)));
        return;
      }
      if (closed_) {
        pumping_ = false;
        return;
      }
      if (n == 0) break;
      produced = true;
      if (static_cast<size_t>(n) >= 8192) {
        ok = flush_staging() && write_tls(data, static_cast<size_t>(n));
      } else {
        staging.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
        if (staging.size() >= 16384) ok = flush_staging();
      }
    }
    ok = ok && flush_staging();
    if (!ok) {
      pumping_ = false;
      Close("TLS write error: " + tls::OpenSslErrors());
      return;
    }
    if (!FlushTo(fd_.get(), tls_out_)) {
      pumping_ = false;
      Close(absl::StrCat("write to ", peer_.ToString(), " failed: ", std::strerror(errno)));
      return;
    }
    if (!produced || !tls_out_.empty()) break;  // done, or the socket is full (EPOLLOUT)
    if (!nghttp2_session_want_write(session_)) break;
    more_to_send_ = round == 7;
  }
  pumping_ = false;
  UpdateInterest();
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_) &&
      tls_out_.empty())
    Close("HTTP/2 session finished");
}

void HboneConn::SchedulePump() {
  if (pump_scheduled_ || closed_) return;
  pump_scheduled_ = true;
  w_->loop().RunSoon([this] {  // before the loop's graveyard: `this` is alive
    pump_scheduled_ = false;
    Pump();
  });
}

void HboneConn::UpdateInterest() {
  if (closed_) return;
  uint32_t want = read_paused_ ? 0u : static_cast<uint32_t>(EPOLLIN);
  if (!tls_out_.empty() || more_to_send_) want |= EPOLLOUT;
  if (want != interest_) {
    interest_ = want;
    w_->loop().Modify(fd_.get(), want, this);
  }
}

void HboneConn::NotifyShutdown() {
  if (role_ != Role::kServer || closed_ || !session_) return;  // before SETTINGS: StartSession
  if (nghttp2_submit_shutdown_notice(session_) == 0) Pump();
}

void HboneConn::Close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  if ((handshake_done_ && (reason == "idle" || reason == "peer closed the connection")) ||
      reason == "peer closed before the TLS handshake") {
    LOG_DEBUG("hbone", "HBONE connection closed",
              {{"peer", peer_.ToString()}, {"reason", reason}, {"streams", stream_count()}});
  } else {
    LOG_INFO("hbone", "HBONE connection closed",
             {{"peer", peer_.ToString()}, {"reason", reason}, {"streams", stream_count()}});
  }
  if (timer_) w_->loop().CancelTimer(timer_);
  timer_ = 0;
  w_->loop().Remove(fd_.get());
  w_->HboneGone(this);
  if (role_ == Role::kClient) {
    w_->pool().Remove(this);
    w_->metrics().pool_connections().Decrement();
  }
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [sid, t] : streams) {
    StreamGauge(-1);
    t->Detach();
    t->OnConnClosed(reason);
  }
  auto pending = std::move(pending_);
  pending_.clear();
  for (Tunnel* t : pending) {
    t->Detach();
    t->OnConnClosed(reason);
  }
  w_->ReleaseConn(this);
}

void HboneConn::AcceptStream(int32_t sid, Tunnel* t) {
  t->Attach(this, sid);
  streams_[sid] = t;
  StreamGauge(+1);
}

// ---- Tunnel -------------------------------------------------------------------------------

Tunnel::Tunnel(Worker* w, FlowInfo info, UniqueFd app, bool outbound)
    : Flow(w, std::move(info)),
      app_(std::move(app)),
      outbound_(outbound),
      app_connecting_(!outbound) {}

Tunnel::~Tunnel() {
  w_->shared().limits->AddBuffered(-static_cast<int64_t>(reported_buffered_));
}

void Tunnel::SyncBuffered() {
  size_t now = down_.size();
  if (now == reported_buffered_) return;
  w_->shared().limits->AddBuffered(static_cast<int64_t>(now) -
                                   static_cast<int64_t>(reported_buffered_));
  reported_buffered_ = now;
}

// The app socket is registered once, for everything, edge-triggered: nghttp2 pulls the app's
// bytes (ReadForH2) only while the stream has window, and switching EPOLLIN off and on around
// every read cost two epoll_ctl per request. app_ready_ remembers the last edge instead, so a
// stream that stopped reading for want of window reads on when the window opens, and a read
// that cannot find anything is not tried (a short read means drained; io.h).
void Tunnel::WatchApp() {
  if (!app_ || watched_) return;
  watched_ = true;
  (void)w_->loop().Add(app_.get(), EventLoop::kEdgeTriggered, this);
}

// Bytes for the app appeared outside a read batch of the connection (the L7 codec answered the
// app): with level-triggered interest, EPOLLOUT would have called FlushDown at the next turn.
void Tunnel::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  w_->loop().RunSoon([this] {  // before the loop's graveyard: `this` is alive
    flush_scheduled_ = false;
    if (finished_ || down_.empty()) return;
    FlushDown();
    if (!finished_ && conn_) conn_->Pump();
  });
}

void Tunnel::OnEstablished() {
  established_ = true;
  if (conn_) {
    conn_->ResumeData(sid_);
    conn_->Pump();
  }
}

ssize_t Tunnel::ReadForH2(uint8_t* buf, size_t len, uint32_t* flags) {
  if (!established_ || finished_) {
    read_deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (http_ && (!reply_.empty() || http_closing_)) {
    // A local reply goes out ahead of anything else; then the stream ends. (Until the codec
    // releases it, responses to earlier requests are still read below.)
    size_t n = reply_.Take(buf, len);
    AddReceived(n);
    if (reply_.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      // A timeout: the client side is closed too. The RST_STREAM (NO_ERROR) is queued behind
      // this DATA frame, which is already being sent (RFC 9113 8.1: a server may end a request
      // it no longer needs this way once its response is complete).
      if (http_closing_ && conn_) conn_->ResetStream(sid_, NGHTTP2_NO_ERROR);
    }
    return static_cast<ssize_t>(n);
  }
  ssize_t n;
  for (;;) {
    // L7 HTTP/2: app bytes are re-framed by the codec; the stream carries its frames. (Or the
    // codec held them while deciding, and released them as they were.)
    if (!to_client_.empty()) {
      return static_cast<ssize_t>(to_client_.Take(buf, len));
    }
    n = ReadReady(app_.get(), buf, len, app_ready_);
    if (n <= 0 || !http_ || !http_->owns_app_bytes()) break;
    AddReceived(static_cast<uint64_t>(n));
    http_->FromApp(reinterpret_cast<const char*>(buf), static_cast<size_t>(n), down_, to_client_);
    if (http_->broken()) {
      info_.error = "HTTP: " + http_->error();
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // nghttp2 resets the stream
    }
    if (!down_.empty()) ScheduleFlush();  // window updates for the app
  }
  if (n > 0) {
    if (outbound_)
      AddSent(static_cast<uint64_t>(n));
    else
      AddReceived(static_cast<uint64_t>(n));
    if (http_) {
      http_->FromApp(reinterpret_cast<const char*>(buf), static_cast<size_t>(n), down_,
                     to_client_);  // HTTP/1.1: untouched (the bytes go out as read)
      if (http_->broken()) {
        info_.error = "HTTP: " + http_->error();
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // nghttp2 resets the stream
      }
      std::string reply = http_->TakeLocalReply();
      if (!reply.empty()) reply_.Append(reply.data(), reply.size());
      if (!down_.empty()) ScheduleFlush();  // bytes a switch released
    }
    return n;
  }
  if (n == 0) {
    if (http_) http_->AppEof();
    app_eof_ = true;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  if (errno == EAGAIN || errno == EINTR) {
    read_deferred_ = true;  // the next EPOLLIN edge resumes the stream (OnEvents)
    return NGHTTP2_ERR_DEFERRED;
  }
  if (http_) http_->AppReset();
  info_.error = std::string("application read failed: ") + std::strerror(errno);
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // nghttp2 resets the stream
}

void Tunnel::OnData(const uint8_t* d, size_t n) {
  if (outbound_)
    AddReceived(n);
  else
    AddSent(n);
  if (http_ && http_closing_) {  // timed out: nothing more reaches the app
    if (conn_) conn_->Consume(sid_, n);
    return;
  }
  if (http_) {
    // Parsed, so copied; the connection calls FlushDown after the read batch, which takes a
    // local reply or aborts (not from inside nghttp2's callback).
    http_in_ += n;
    http_->FromClient(reinterpret_cast<const char*>(d), n, down_, to_client_);
    SyncBuffered();
    if (conn_) conn_->MarkDirty(this);
    return;
  }
  // Called from inside nghttp2_session_mem_recv with a pointer into the worker's scratch
  // buffer, which stays put until the connection calls FlushDown: keep pointers, not copies,
  // unless older bytes are already queued (order).
  if (down_.empty()) {
    if (!pending_.empty() &&
        static_cast<const uint8_t*>(pending_.back().iov_base) + pending_.back().iov_len == d) {
      pending_.back().iov_len += n;
    } else {
      pending_.push_back({const_cast<uint8_t*>(d), n});
    }
  } else {
    down_.Append(d, n);
    SyncBuffered();
  }
  if (conn_) conn_->MarkDirty(this);
}

bool Tunnel::HttpAfterRead() {
  if (http_->broken()) {
    if (info_.labels->response_flags == "-") info_.labels.mut().response_flags = "DENY";
    Abort("HTTP: " + http_->error());
    return false;
  }
  std::string reply = http_->TakeLocalReply();
  if (!reply.empty() || !to_client_.empty()) {  // a local reply, or HTTP/2 frames for the client
    reply_.Append(reply.data(), reply.size());
    if (read_deferred_ && conn_) {
      read_deferred_ = false;
      conn_->ResumeData(sid_);
    }
  }
  return true;
}

void Tunnel::SetHttp(std::unique_ptr<HttpInbound> http) {
  http_ = std::move(http);
  http_->WatchTimeouts([this] { HttpTimedOut(); });
}

// L7: the header-read or idle timeout expired. The client gets the codec's 408 if it made one,
// then END_STREAM and RST_STREAM(NO_ERROR), which ends the tunnel and closes the app socket; a
// broken codec or a stream not yet established is reset at once.
void Tunnel::HttpTimedOut() {
  if (finished_ || http_closing_) return;
  if (!conn_ || !established_ || http_->broken()) {
    Abort(http_->broken() ? "HTTP: " + http_->error() : "HTTP: timed out");
    return;
  }
  info_.error = http_->done() ? "HTTP: " + http_->error() : "HTTP: idle";
  std::string reply = http_->TakeLocalReply();
  reply_.Append(reply.data(), reply.size());
  http_closing_ = true;
  if (read_deferred_) {
    read_deferred_ = false;
    conn_->ResumeData(sid_);
  }
  conn_->Pump();
}

// L7: the stream's window is given back for every byte the codec took, less what still waits
// for the app (the codec's own hold is bounded by its head limit).
void Tunnel::ConsumeHttpWindow() {
  uint64_t waiting = std::min<uint64_t>(down_.size(), http_in_);
  uint64_t target = http_in_ - waiting;
  if (target > http_consumed_ && conn_) {
    conn_->Consume(sid_, static_cast<size_t>(target - http_consumed_));
    http_consumed_ = target;
  }
}

void Tunnel::FlushDown() {
  if (finished_ || !app_) {
    pending_.clear();
    return;
  }
  if (http_ && !HttpAfterRead()) return;
  size_t written = 0;
  if (!pending_.empty()) {
    size_t want = 0;
    for (const auto& v : pending_) want += v.iov_len;
    msghdr mh{};
    mh.msg_iov = pending_.data();
    mh.msg_iovlen = std::min<size_t>(pending_.size(), IOV_MAX);
    ssize_t k = -1;
    errno = EAGAIN;
    if (app_ready_.writable) k = ::sendmsg(app_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && errno != EAGAIN && errno != EINTR) {
      pending_.clear();
      Abort(std::string("application write failed: ") + std::strerror(errno));
      return;
    }
    written = k > 0 ? static_cast<size_t>(k) : 0;
    if (written < want) app_ready_.writable = false;  // full: EPOLLOUT comes when room is made
    if (written < want) {  // the app is slower than the sender: keep the rest, copied
      size_t skip = written;
      for (const auto& v : pending_) {
        if (skip >= v.iov_len) {
          skip -= v.iov_len;
          continue;
        }
        down_.Append(static_cast<const char*>(v.iov_base) + skip, v.iov_len - skip);
        skip = 0;
      }
    }
    pending_.clear();
  } else if (!down_.empty()) {
    size_t before = down_.size();
    if (!FlushTo(app_.get(), down_, &app_ready_)) {
      Abort(std::string("application write failed: ") + std::strerror(errno));
      return;
    }
    written = before - down_.size();
  }
  if (http_) {
    ConsumeHttpWindow();
    // Not HTTP (HttpInbound::not_http): once the window is square (nothing waits in down_),
    // the stream is relayed as L4, zero-copy.
    if (http_->not_http() && down_.empty()) http_.reset();
  } else if (conn_) {
    conn_->Consume(sid_, written);
  }
  if (down_.empty() && remote_ended_ && !shut_wr_) {
    shutdown(app_.get(), SHUT_WR);
    shut_wr_ = true;
  }
  SyncBuffered();
  MaybeDone();
}

void Tunnel::OnRemoteEnd() {
  remote_ended_ = true;
  if (down_.empty() && pending_.empty() && !shut_wr_ && app_) {
    shutdown(app_.get(), SHUT_WR);
    shut_wr_ = true;
  }
}

void Tunnel::OnStreamClosed(uint32_t code) {
  stream_closed_ = true;
  if (code != NGHTTP2_NO_ERROR) {
    Abort(info_.error.empty() ? std::string("stream reset by peer: ") + nghttp2_http2_strerror(code)
                              : info_.error);
    return;
  }
  MaybeDone();
}

void Tunnel::OnConnClosed(const std::string& reason) {
  stream_closed_ = true;
  if (!established_ && info_.labels->response_flags == "-")
    info_.labels.mut().response_flags = "UF";
  if (!established_ && outbound_)
    w_->metrics().ConnectionFailure("outbound", "hbone_connection_failed");
  Abort(reason);
}

void Tunnel::OnEvents(uint32_t ev) {
  if (finished_) return;
  app_ready_.OnEvents(ev);  // an edge is remembered even when nothing reads now
  if (app_connecting_) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    app_connecting_ = false;
    int err = ConnectResult(app_.get());  // TCP_NODELAY: set by StartConnect before connect
    if (on_app_connected) {               // once: its captures go now, not with the connection
      auto done = std::move(on_app_connected);
      on_app_connected = nullptr;
      done(err);
    }
    return;
  }
  // Edge-triggered, EPOLLOUT rides along with every event of a writable socket: flush only
  // what waits.
  if ((ev & EPOLLOUT) && !down_.empty()) {
    FlushDown();
    if (finished_) return;
    if (conn_) conn_->SchedulePump();  // its window updates
  }
  if ((ev & EPOLLERR) && !read_deferred_) {
    // Reset while its stream waits for window (nghttp2 is not asking for bytes, so no read
    // would see it): abort now, or the stream would hold its unread bytes at the peer forever
    // and the error would be reported again at every loop turn.
    int err = ConnectResult(app_.get());
    Abort(std::string("application connection failed: ") + std::strerror(err ? err : EPIPE));
    return;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    if (read_deferred_ && conn_) {
      read_deferred_ = false;
      conn_->ResumeData(sid_);
      conn_->SchedulePump();
    }
  }
}

void Tunnel::MaybeDone() {
  if (finished_ || !stream_closed_ || !down_.empty() || !pending_.empty()) return;
  if (app_) {
    if (watched_) w_->loop().Remove(app_.get());
    app_.reset();
  }
  Finish();
}

void Tunnel::Abort(const std::string& reason) {
  if (finished_) return;
  pending_.clear();
  if (info_.error.empty()) info_.error = reason;
  if (conn_) {
    HboneConn* c = conn_;
    conn_ = nullptr;
    c->TunnelGone(this);
  }
  if (app_) {
    if (watched_) w_->loop().Remove(app_.get());
    SetResetOnClose(app_.get());
    app_.reset();
  }
  Finish();
}

}  // namespace weft::ztunnel
