#include "bench/loadgen/h2_client.h"

#include <cstring>
#include <string_view>

#include "absl/strings/numbers.h"

namespace weft::bench::loadgen {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::string GrpcFrame(const std::string& message) {
  const auto n = static_cast<uint32_t>(message.size());
  std::string f = {'\0', static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                   static_cast<char>(n >> 8), static_cast<char>(n)};
  return f + message;
}

H2Conn::H2Conn(std::unique_ptr<beast::tcp_stream> stream) : stream_(std::move(stream)) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnClose);
  if (nghttp2_session_client_new(&session_, cb, this) != 0) failed_ = true;
  nghttp2_session_callbacks_del(cb);
  // Responses here are small; a large window keeps flow control out of the latency figures.
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
  if (!failed_ && nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, 2) != 0) failed_ = true;
}

H2Conn::~H2Conn() {
  if (session_ != nullptr) nghttp2_session_del(session_);
  beast::error_code ec;
  stream_->socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  stream_->socket().close(ec);
}

bool H2Conn::usable() const {
  return !failed_ && session_ != nullptr &&
         (nghttp2_session_want_read(session_) || nghttp2_session_want_write(session_)) &&
         nghttp2_session_check_request_allowed(session_);
}

int H2Conn::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  if (frame->hd.type == NGHTTP2_HEADERS && frame->hd.stream_id == c->cur_.id &&
      !c->cur_.reply.got_response) {
    c->cur_.reply.got_response = true;
    c->cur_.reply.first_byte = c->read_at_;
  }
  return 0;
}

int H2Conn::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                     size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  if (frame->hd.stream_id != c->cur_.id) return 0;
  absl::string_view n(reinterpret_cast<const char*>(name), namelen);
  absl::string_view v(reinterpret_cast<const char*>(value), valuelen);
  int parsed = 0;
  if (n == ":status" && absl::SimpleAtoi(v, &parsed)) c->cur_.reply.status = parsed;
  if (n == "grpc-status" && absl::SimpleAtoi(v, &parsed)) c->cur_.reply.grpc_status = parsed;
  return 0;
}

int H2Conn::OnClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  if (stream_id == c->cur_.id) {
    c->cur_.closed = true;
    c->cur_.reset = error_code != NGHTTP2_NO_ERROR;
  }
  return 0;
}

ssize_t H2Conn::ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                         nghttp2_data_source*, void* user) {
  Current& cur = static_cast<H2Conn*>(user)->cur_;
  const size_t n = std::min(length, cur.body->size() - cur.body_off);
  memcpy(buf, cur.body->data() + cur.body_off, n);
  cur.body_off += n;
  if (cur.body_off == cur.body->size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

asio::awaitable<bool> H2Conn::Flush() {
  std::string out;
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) co_return false;
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (out.empty()) co_return true;
  beast::error_code ec;
  co_await asio::async_write(*stream_, asio::buffer(out),
                             asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

asio::awaitable<H2Reply> H2Conn::Exchange(const H2Request& req, Clock::time_point deadline) {
  cur_ = Current{};
  if (failed_) co_return cur_.reply;
  static const std::string kMethod = ":method", kScheme = ":scheme", kHttp = "http",
                           kAuthority = ":authority", kPath = ":path", kLength = "content-length";
  const std::string length = std::to_string(req.body.size());
  std::vector<nghttp2_nv> nva = {Nv(kMethod, req.method), Nv(kScheme, kHttp),
                                 Nv(kAuthority, req.authority), Nv(kPath, req.path)};
  for (const auto& [k, v] : req.headers) nva.push_back(Nv(k, v));
  if (!req.body.empty()) nva.push_back(Nv(kLength, length));
  nghttp2_data_provider prd{};
  prd.read_callback = ReadBody;
  cur_.body = &req.body;
  cur_.id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                   req.body.empty() ? nullptr : &prd, nullptr);
  if (cur_.id < 0) {
    failed_ = true;
    co_return cur_.reply;
  }
  stream_->expires_at(deadline);
  for (;;) {
    if (!co_await Flush()) break;
    if (cur_.closed) break;
    beast::error_code ec;
    const size_t n = co_await stream_->async_read_some(
        asio::buffer(buf_), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    read_at_ = Clock::now();
    if (nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(buf_.data()), n) < 0)
      break;
  }
  H2Reply r = cur_.reply;
  r.done = Clock::now();
  r.transport_ok = cur_.closed && !cur_.reset && r.status > 0;
  if (!r.transport_ok) {
    failed_ = true;
  } else {
    stream_->expires_never();
  }
  cur_.body = nullptr;
  co_return r;
}

}  // namespace weft::bench::loadgen
