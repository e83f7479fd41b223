#include "common/grpc_client/grpc_call.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft::grpc_client {
namespace {

constexpr size_t kPrefix = 5;  // compressed flag + 4-byte big-endian length
// Receive window: a large config snapshot should not wait for a WINDOW_UPDATE every 64 KiB.
constexpr int32_t kWindow = 1 << 20;

std::string ErrText(int err) {
  return std::strerror(err);
}

// gRPC's mapping of an HTTP status without grpc-status (doc/http-grpc-status-mapping.md).
absl::StatusCode FromHttpStatus(int http) {
  switch (http) {
    case 400:
      return absl::StatusCode::kInternal;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

// grpc-message is percent-encoded (RFC 3986 style, any byte outside printable ASCII and '%').
std::string PercentDecode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

nghttp2_nv Nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

int MillisUntil(std::optional<Clock::time_point> t, Clock::time_point now) {
  if (!t) return -1;
  if (*t <= now) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*t - now).count() + 1;
  return static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

}  // namespace

absl::StatusOr<Target> ParseTarget(std::string_view target) {
  std::string_view t = target;
  if (t.substr(0, 7) == "dns:///") t.remove_prefix(7);
  Target out;
  if (!t.empty() && t.front() == '[') {
    size_t close = t.find(']');
    if (close == std::string_view::npos || close + 1 >= t.size() || t[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("address \"", std::string(target), "\": want [ipv6]:port"));
    }
    out.host = std::string(t.substr(1, close - 1));
    out.port = std::string(t.substr(close + 2));
  } else {
    size_t colon = t.rfind(':');
    if (colon == std::string_view::npos || t.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat("address \"", std::string(target),
                       "\": want host:port, [ipv6]:port or dns:///host:port"));
    }
    out.host = std::string(t.substr(0, colon));
    out.port = std::string(t.substr(colon + 1));
  }
  uint32_t port = 0;
  if (out.host.empty() || !absl::SimpleAtoi(out.port, &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", std::string(target), "\": want a host and a port 1-65535"));
  }
  return out;
}

Call::Call() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Call::~Call() {
  if (h2_ != nullptr) nghttp2_session_del(h2_);
}

void Call::Cancel() {
  cancelled_.store(true);
  if (wake_) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }
}

void Call::TransportError(absl::Status st) {
  // After the server's trailers the call has its status; the connection closing is no error.
  if (!remote_closed_) Fail(std::move(st));
}

void Call::Fail(absl::Status st) {
  if (!local_error_) local_error_ = std::move(st);
}

absl::Status Call::Connect(const ChannelOptions& opts, const Target& t) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = ::getaddrinfo(t.host.c_str(), t.port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", t.host, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(res, freeaddrinfo);
  const auto until = Clock::now() + opts.connect_timeout;
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    UniqueFd s(::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s) {
      last = absl::StrCat("socket: ", ErrText(errno));
      continue;
    }
    int one = 1;
    ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(s.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = ErrText(errno);
      continue;
    }
    pollfd p[2] = {{s.get(), POLLOUT, 0}, {wake_.get(), POLLIN, 0}};
    int n;
    do {
      n = ::poll(p, 2, MillisUntil(std::min(until, deadline_.value_or(until)), Clock::now()));
    } while (n < 0 && errno == EINTR);
    if (cancelled_.load()) return absl::CancelledError("call cancelled");
    if (n == 0) {
      last = "connect timed out";
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last = ErrText(err);
      continue;
    }
    sock_ = std::move(s);
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("cannot connect to ", t.host, ":", t.port, ": ", last));
}

absl::Status Call::Start(const ChannelOptions& opts, std::string_view path,
                         const Metadata& metadata, std::optional<Clock::time_point> deadline) {
  opts_ = opts;
  deadline_ = deadline;
  if (!wake_) return ErrnoError(errno, "eventfd");
  WEFT_ASSIGN_OR_RETURN(Target t, ParseTarget(opts.target));
  const bool tls = !opts.root_pem.empty();
  const std::string server_name = opts.tls_server_name.empty() ? t.host : opts.tls_server_name;
  if (tls) {
    // The roots are parsed before connecting: a bad root file is a configuration error.
    WEFT_ASSIGN_OR_RETURN(auto roots, tls::CertsFromPem(opts.root_pem));
    ssl_ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ssl_ctx_) return tls::OpenSslError("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ssl_ctx_.get(), TLS1_2_VERSION);
    X509_STORE* store = SSL_CTX_get_cert_store(ssl_ctx_.get());
    for (auto& r : roots) X509_STORE_add_cert(store, r.get());
    SSL_CTX_set_verify(ssl_ctx_.get(), SSL_VERIFY_PEER, nullptr);
    static const unsigned char kAlpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ssl_ctx_.get(), kAlpn, sizeof kAlpn);
    // A write that would block is retried from out_, which does not move until it is sent.
    SSL_CTX_set_mode(ssl_ctx_.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  WEFT_RETURN_IF_ERROR(Connect(opts, t));
  if (tls) {
    ssl_.reset(SSL_new(ssl_ctx_.get()));
    if (!ssl_) return tls::OpenSslError("SSL_new");
    SSL_set_fd(ssl_.get(), sock_.get());
    SSL_set_tlsext_host_name(ssl_.get(), server_name.c_str());
    SSL_set1_host(ssl_.get(), server_name.c_str());
    const auto until = Clock::now() + opts.connect_timeout;
    while (true) {
      ERR_clear_error();
      int rc = SSL_connect(ssl_.get());
      if (rc == 1) break;
      int e = SSL_get_error(ssl_.get(), rc);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        long v = SSL_get_verify_result(ssl_.get());
        std::string why = v != X509_V_OK ? X509_verify_cert_error_string(v) : tls::OpenSslErrors();
        if (why.empty()) why = "connection closed during the handshake";
        return absl::UnavailableError(absl::StrCat("TLS handshake with ", opts.target, " (as ",
                                                   server_name, ") failed: ", why));
      }
      pollfd p[2] = {
          {sock_.get(), static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0},
          {wake_.get(), POLLIN, 0}};
      int n = ::poll(p, 2, MillisUntil(std::min(until, deadline_.value_or(until)), Clock::now()));
      if (cancelled_.load()) return absl::CancelledError("call cancelled");
      if (n == 0) {
        return absl::UnavailableError(
            absl::StrCat("TLS handshake with ", opts.target, " timed out"));
      }
    }
    const unsigned char* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl_.get(), &alpn, &alpn_len);
    if (alpn_len != 0 && std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != "h2") {
      return absl::UnavailableError(
          absl::StrCat(opts.target, " negotiated ALPN \"",
                       std::string(reinterpret_cast<const char*>(alpn), alpn_len),
                       "\" instead of h2: not a gRPC server"));
    }
  }

  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, &Call::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Call::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Call::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Call::OnStreamClose);
  int rc = nghttp2_session_client_new(&h2_, cb, this);
  nghttp2_session_callbacks_del(cb);
  if (rc != 0) return absl::InternalError(absl::StrCat("nghttp2: ", nghttp2_strerror(rc)));
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kWindow}};
  nghttp2_submit_settings(h2_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(h2_, NGHTTP2_FLAG_NONE, 0, kWindow);

  const std::string authority = opts.tls_server_name.empty()
                                    ? opts.target.substr(opts.target.rfind('/') + 1)
                                    : opts.tls_server_name;
  std::vector<nghttp2_nv> nv = {Nv(":method", "POST"),
                                Nv(":scheme", tls ? "https" : "http"),
                                Nv(":path", path),
                                Nv(":authority", authority),
                                Nv("content-type", "application/grpc"),
                                Nv("te", "trailers"),
                                Nv("user-agent", "weft-grpc-client")};
  std::string timeout;
  if (deadline_) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline_ - Clock::now());
    timeout = absl::StrCat(std::clamp<int64_t>(ms.count(), 1, 99999999), "m");
    nv.push_back(Nv("grpc-timeout", timeout));
  }
  for (const auto& [k, v] : metadata) nv.push_back(Nv(k, v));
  nghttp2_data_provider body{};
  body.read_callback = &Call::ReadBody;
  stream_id_ = nghttp2_submit_request(h2_, nullptr, nv.data(), nv.size(), &body, this);
  if (stream_id_ < 0) {
    return absl::InternalError(absl::StrCat("nghttp2: ", nghttp2_strerror(stream_id_)));
  }
  last_recv_ = Clock::now();
  if (!FlushOut()) return ResultStatus();
  return absl::OkStatus();
}

ssize_t Call::ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* data_flags,
                       nghttp2_data_source*, void* self) {
  Call* c = static_cast<Call*>(self);
  size_t avail = c->body_.size() - c->body_off_;
  if (avail == 0) {
    if (c->writes_done_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    c->body_deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = std::min(avail, len);
  std::memcpy(buf, c->body_.data() + c->body_off_, n);
  c->body_off_ += n;
  if (c->body_off_ == c->body_.size()) {
    c->body_.clear();
    c->body_off_ = 0;
  }
  return static_cast<ssize_t>(n);
}

int Call::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                   size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* self) {
  Call* c = static_cast<Call*>(self);
  if (frame->hd.stream_id != c->stream_id_) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":status") {
    c->http_status_ = std::string(v);
  } else if (n == "content-type") {
    c->content_type_ = std::string(v);
  } else if (n == "grpc-status") {
    int code = 0;
    c->grpc_status_ = absl::SimpleAtoi(Av(v), &code) && code >= 0 && code <= 16 ? code : 2;
  } else if (n == "grpc-message") {
    c->grpc_message_ = PercentDecode(v);
  }
  return 0;
}

int Call::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  Call* c = static_cast<Call*>(self);
  c->last_recv_ = Clock::now();
  if (frame->hd.stream_id == c->stream_id_ && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
      (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
    c->remote_closed_ = true;  // the server's side is done (trailers), whatever ours does
  } else if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
    c->ping_sent_.reset();
  } else if (frame->hd.type == NGHTTP2_GOAWAY) {
    c->goaway_ = true;
    if (frame->goaway.last_stream_id < c->stream_id_) c->reset_code_ = frame->goaway.error_code;
  }
  return 0;
}

int Call::OnDataChunk(nghttp2_session*, uint8_t, int32_t stream, const uint8_t* data, size_t len,
                      void* self) {
  Call* c = static_cast<Call*>(self);
  if (stream == c->stream_id_) c->in_.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int Call::OnStreamClose(nghttp2_session*, int32_t stream, uint32_t error_code, void* self) {
  Call* c = static_cast<Call*>(self);
  if (stream != c->stream_id_) return 0;
  c->stream_closed_ = true;
  c->remote_closed_ = true;
  if (error_code != NGHTTP2_NO_ERROR && c->reset_code_ == 0) c->reset_code_ = error_code;
  return 0;
}

bool Call::FlushOut() {
  while (true) {
    if (out_.empty()) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(h2_, &data);
      if (n < 0) {
        Fail(absl::InternalError(absl::StrCat("HTTP/2: ", nghttp2_strerror(static_cast<int>(n)))));
        return false;
      }
      if (n == 0) return true;
      out_.assign(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    while (!out_.empty()) {
      ssize_t w;
      if (ssl_) {
        ERR_clear_error();
        int rc = SSL_write(ssl_.get(), out_.data(), static_cast<int>(out_.size()));
        if (rc <= 0) {
          int e = SSL_get_error(ssl_.get(), rc);
          if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return true;
          TransportError(absl::UnavailableError(absl::StrCat(
              "connection to ", opts_.target, " lost (TLS write): ", tls::OpenSslErrors())));
          return false;
        }
        w = rc;
      } else {
        w = ::send(sock_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EAGAIN || errno == EINTR) return true;
          TransportError(absl::UnavailableError(
              absl::StrCat("connection to ", opts_.target, " lost: ", ErrText(errno))));
          return false;
        }
      }
      out_.erase(0, static_cast<size_t>(w));
    }
  }
}

bool Call::ReadIn() {
  char buf[16384];
  while (true) {
    ssize_t n;
    if (ssl_) {
      ERR_clear_error();
      int rc = SSL_read(ssl_.get(), buf, sizeof buf);
      if (rc <= 0) {
        int e = SSL_get_error(ssl_.get(), rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
        if (e == SSL_ERROR_ZERO_RETURN) {
          n = 0;
        } else {
          TransportError(absl::UnavailableError(absl::StrCat(
              "connection to ", opts_.target, " lost (TLS read): ", tls::OpenSslErrors())));
          return false;
        }
      } else {
        n = rc;
      }
    } else {
      n = ::recv(sock_.get(), buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return true;
        TransportError(absl::UnavailableError(
            absl::StrCat("connection to ", opts_.target, " lost: ", ErrText(errno))));
        return false;
      }
    }
    if (n == 0) {
      TransportError(absl::UnavailableError(absl::StrCat(opts_.target, " closed the connection")));
      return false;
    }
    ssize_t used = nghttp2_session_mem_recv(h2_, reinterpret_cast<const uint8_t*>(buf),
                                            static_cast<size_t>(n));
    if (used < 0) {
      Fail(absl::InternalError(absl::StrCat("malformed HTTP/2 from ", opts_.target, ": ",
                                            nghttp2_strerror(static_cast<int>(used)))));
      return false;
    }
  }
}

template <typename Pred>
void Call::Pump(Pred done) {
  while (!done() && !local_error_ && !remote_closed_) {
    if (cancelled_.load()) {
      Fail(absl::CancelledError("call cancelled"));
      break;
    }
    if (!FlushOut()) break;
    auto now = Clock::now();
    if (deadline_ && now >= *deadline_) {
      Fail(absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded waiting for ", opts_.target)));
      break;
    }
    std::optional<Clock::time_point> wake = deadline_;
    if (opts_.keepalive_time.count() > 0) {
      if (ping_sent_) {
        if (now >= *ping_sent_ + opts_.keepalive_timeout) {
          Fail(absl::UnavailableError(
              absl::StrCat("keepalive ping to ", opts_.target, " not answered: connection lost")));
          break;
        }
        wake = std::min(wake.value_or(Clock::time_point::max()),
                        *ping_sent_ + opts_.keepalive_timeout);
      } else if (now >= last_recv_ + opts_.keepalive_time) {
        nghttp2_submit_ping(h2_, NGHTTP2_FLAG_NONE, nullptr);
        ping_sent_ = now;
        continue;
      } else {
        wake = std::min(wake.value_or(Clock::time_point::max()), last_recv_ + opts_.keepalive_time);
      }
    }
    short ev = POLLIN;
    if (!out_.empty() || nghttp2_session_want_write(h2_)) ev |= POLLOUT;
    pollfd p[2] = {{sock_.get(), ev, 0}, {wake_.get(), POLLIN, 0}};
    int n = ::poll(p, 2, MillisUntil(wake, now));
    if (n < 0 && errno != EINTR) {
      Fail(ErrnoError(errno, "poll"));
      break;
    }
    if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (!ReadIn()) break;
    }
    if (ssl_ && SSL_pending(ssl_.get()) > 0 && !ReadIn()) break;
  }
  FlushOut();
}

bool Call::Write(const google::protobuf::MessageLite& msg) {
  if (h2_ == nullptr || local_error_ || remote_closed_ || writes_done_) return false;
  size_t len = msg.ByteSizeLong();
  char prefix[kPrefix] = {0, static_cast<char>(len >> 24), static_cast<char>(len >> 16),
                          static_cast<char>(len >> 8), static_cast<char>(len)};
  body_.append(prefix, kPrefix);
  size_t at = body_.size();
  body_.resize(at + len);
  if (!msg.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(&body_[at]))) {
    body_.resize(at - kPrefix);
    return false;
  }
  if (body_deferred_) {
    body_deferred_ = false;
    nghttp2_session_resume_data(h2_, stream_id_);
  }
  // Sent now as far as the flow-control window allows; the rest goes out while reading.
  return FlushOut() && !local_error_;
}

void Call::WritesDone() {
  if (h2_ == nullptr || writes_done_) return;
  writes_done_ = true;
  if (body_deferred_) {
    body_deferred_ = false;
    nghttp2_session_resume_data(h2_, stream_id_);
  }
  FlushOut();
}

bool Call::PopMessage(google::protobuf::MessageLite* msg, size_t* wire_bytes) {
  size_t avail = in_.size() - in_off_;
  if (avail < kPrefix) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(in_.data() + in_off_);
  uint32_t len = (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | p[4];
  if (p[0] != 0) {
    Fail(absl::InternalError(
        absl::StrCat(opts_.target, " sent a compressed message, but no compression was offered")));
    return false;
  }
  if (len > opts_.max_message_bytes) {
    Fail(absl::ResourceExhaustedError(absl::StrCat("message from ", opts_.target, " of ", len,
                                                   " bytes exceeds the limit of ",
                                                   opts_.max_message_bytes)));
    return false;
  }
  if (avail < kPrefix + len) return false;
  if (!msg->ParseFromArray(p + kPrefix, static_cast<int>(len))) {
    Fail(absl::InternalError(
        absl::StrCat("cannot parse a ", msg->GetTypeName(), " message from ", opts_.target)));
    return false;
  }
  if (wire_bytes != nullptr) *wire_bytes = len;
  in_off_ += kPrefix + len;
  if (in_off_ == in_.size()) {
    in_.clear();
    in_off_ = 0;
  } else if (in_off_ > (size_t{1} << 20) && in_off_ * 2 > in_.size()) {
    in_.erase(0, in_off_);
    in_off_ = 0;
  }
  return true;
}

bool Call::Read(google::protobuf::MessageLite* msg, size_t* wire_bytes) {
  if (h2_ == nullptr) return false;
  bool got = false;
  bool bad = false;
  auto ready = [&] {
    if (local_error_) return true;
    // Headers first: a response that is not gRPC is not parsed as messages.
    if (!http_status_.empty() &&
        (http_status_ != "200" || content_type_.rfind("application/grpc", 0) != 0)) {
      bad = true;
      return true;
    }
    got = PopMessage(msg, wire_bytes);
    return got || local_error_.has_value();
  };
  Pump(ready);
  if (!got && !bad && !local_error_) ready();  // the last messages came with END_STREAM
  return got && !bad;
}

absl::Status Call::ResultStatus() const {
  if (local_error_) return *local_error_;
  if (grpc_status_) {
    return absl::Status(static_cast<absl::StatusCode>(*grpc_status_), grpc_message_);
  }
  if (!http_status_.empty() && http_status_ != "200") {
    int code = 0;
    (void)absl::SimpleAtoi(http_status_, &code);
    return absl::Status(FromHttpStatus(code),
                        absl::StrCat(opts_.target, " answered HTTP ", http_status_));
  }
  if (!http_status_.empty() && content_type_.rfind("application/grpc", 0) != 0) {
    return absl::UnknownError(absl::StrCat(opts_.target, " answered with content-type \"",
                                           content_type_, "\": not a gRPC server"));
  }
  if (reset_code_ != 0) {
    absl::StatusCode c = reset_code_ == NGHTTP2_REFUSED_STREAM ? absl::StatusCode::kUnavailable
                         : reset_code_ == NGHTTP2_CANCEL       ? absl::StatusCode::kCancelled
                                                               : absl::StatusCode::kInternal;
    return absl::Status(c, absl::StrCat(opts_.target, " reset the stream (HTTP/2 error ",
                                        nghttp2_http2_strerror(reset_code_), ")"));
  }
  if (remote_closed_) {
    return absl::InternalError(absl::StrCat(opts_.target, " ended the call without a status"));
  }
  return absl::UnavailableError(absl::StrCat("connection to ", opts_.target, " ended"));
}

absl::Status Call::Finish() {
  if (h2_ != nullptr) {
    Pump([] { return false; });
    if (!remote_closed_ && !local_error_) Fail(absl::CancelledError("call cancelled"));
    if (!stream_closed_ && stream_id_ > 0) {
      nghttp2_submit_rst_stream(h2_, NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CANCEL);
      FlushOut();
    }
  }
  absl::Status st = ResultStatus();
  if (ssl_) SSL_shutdown(ssl_.get());
  ssl_.reset();
  sock_.reset();
  return st;
}

absl::Status UnaryCall(const ChannelOptions& opts, std::string_view path, const Metadata& metadata,
                       const google::protobuf::MessageLite& request,
                       google::protobuf::MessageLite* response, const UnaryOptions& uo) {
  const auto deadline = Clock::now() + uo.timeout;
  auto backoff =
      std::chrono::milliseconds(std::min<int64_t>(1000, uo.max_reconnect_backoff.count()));
  while (true) {
    Call call;
    absl::Status st = call.Start(opts, path, metadata, deadline);
    if (st.ok()) {
      call.Write(request);
      call.WritesDone();
      bool got = call.Read(response);
      st = call.Finish();
      if (st.ok() && !got) {
        return absl::InternalError(absl::StrCat(opts.target, " sent no response message"));
      }
      return st;
    }
    if (!uo.wait_for_ready || st.code() != absl::StatusCode::kUnavailable) return st;
    auto now = Clock::now();
    if (now + backoff >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no connection to ", opts.target, " before the deadline: ", st.message()));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, uo.max_reconnect_backoff);
  }
}

}  // namespace weft::grpc_client
