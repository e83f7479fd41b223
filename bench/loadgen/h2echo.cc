#include "bench/loadgen/h2echo.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/signals.h"

namespace weft::bench::loadgen {
namespace {

// One request stream: its body so far, then the response being sent.
struct StreamState {
  std::string body;
  bool grpc = false;
  size_t sent = 0;  // of body, once responding
  int grpc_status = 0;
};

struct Conn {
  nghttp2_session* session = nullptr;
  std::map<int32_t, StreamState> streams;
  int echo_size = 1024;
  std::atomic<int64_t>* requests = nullptr;
};

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

ssize_t ReadBody(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                 uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* c = static_cast<Conn*>(user);
  auto it = c->streams.find(stream_id);
  if (it == c->streams.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  StreamState& s = it->second;
  const size_t n = std::min(length, s.body.size() - s.sent);
  memcpy(buf, s.body.data() + s.sent, n);
  s.sent += n;
  if (s.sent == s.body.size()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s.grpc) {
      // gRPC's status travels in trailers, after the last DATA frame.
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      static const std::string kName = "grpc-status";
      const std::string value = std::to_string(s.grpc_status);
      nghttp2_nv trailer = Nv(kName, value);
      if (nghttp2_submit_trailer(session, stream_id, &trailer, 1) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      }
    }
  }
  return static_cast<ssize_t>(n);
}

// A gRPC body is whole when it is exactly one length-prefixed message (flag byte, 4-byte
// big-endian length, the message).
bool OneGrpcMessage(const std::string& b) {
  if (b.size() < 5) return false;
  const uint32_t len = (uint32_t{static_cast<uint8_t>(b[1])} << 24) |
                       (uint32_t{static_cast<uint8_t>(b[2])} << 16) |
                       (uint32_t{static_cast<uint8_t>(b[3])} << 8) | static_cast<uint8_t>(b[4]);
  return b.size() == 5 + static_cast<size_t>(len);
}

int Respond(Conn& c, int32_t stream_id) {
  auto it = c.streams.find(stream_id);
  if (it == c.streams.end()) return 0;
  StreamState& s = it->second;
  ++*c.requests;
  if (s.body.empty() && !s.grpc) s.body.assign(c.echo_size, 'x');
  if (s.grpc && (s.grpc_status != 0 || !OneGrpcMessage(s.body))) {
    if (s.grpc_status == 0) s.grpc_status = 13;  // INTERNAL
    s.body.clear();
  }
  static const std::string kStatus = ":status", k200 = "200", kType = "content-type",
                           kGrpc = "application/grpc", kOctets = "application/octet-stream";
  nghttp2_nv nva[] = {Nv(kStatus, k200), Nv(kType, s.grpc ? kGrpc : kOctets)};
  nghttp2_data_provider prd{};
  prd.read_callback = ReadBody;
  return nghttp2_submit_response(c.session, stream_id, nva, 2, &prd);
}

int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    static_cast<Conn*>(user)->streams[frame->hd.stream_id];
  }
  return 0;
}

int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* c = static_cast<Conn*>(user);
  auto it = c->streams.find(frame->hd.stream_id);
  if (it == c->streams.end()) return 0;
  absl::string_view n(reinterpret_cast<const char*>(name), namelen);
  absl::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == "content-type" && absl::StartsWith(v, "application/grpc")) it->second.grpc = true;
  int status = 0;
  if (n == "x-echo-grpc-status" && absl::SimpleAtoi(v, &status)) it->second.grpc_status = status;
  return 0;
}

int OnData(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
           void* user) {
  auto* c = static_cast<Conn*>(user);
  auto it = c->streams.find(stream_id);
  if (it != c->streams.end()) it->second.body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  const bool request_frame = frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS;
  if (request_frame && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    return Respond(*static_cast<Conn*>(user), frame->hd.stream_id) == 0
               ? 0
               : NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

int OnClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  static_cast<Conn*>(user)->streams.erase(stream_id);
  return 0;
}

bool WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Sends everything nghttp2 has queued. False when the peer is gone or the session failed.
bool Flush(int fd, nghttp2_session* s) {
  std::string out;
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(s, &data);
    if (n < 0) return false;
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  return WriteAll(fd, reinterpret_cast<const uint8_t*>(out.data()), out.size());
}

}  // namespace

absl::StatusOr<std::unique_ptr<H2EchoServer>> H2EchoServer::Start(const SockAddr& listen,
                                                                  int echo_size) {
  auto srv = std::unique_ptr<H2EchoServer>(new H2EchoServer());
  srv->echo_size_ = echo_size;
  sockaddr_storage ss{};
  const socklen_t len = listen.ToSockaddr(&ss);
  srv->listen_ = UniqueFd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!srv->listen_.valid()) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  const int one = 1;
  setsockopt(srv->listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(srv->listen_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(srv->listen_.get(), 1024) != 0) {
    return absl::UnavailableError(
        absl::StrCat("weft-h2echo: listen on ", listen.ToString(), ": ", strerror(errno)));
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(srv->listen_.get(), reinterpret_cast<sockaddr*>(&bound), &blen);
  srv->port_ = SockAddr::FromSockaddr(reinterpret_cast<sockaddr*>(&bound)).port;
  srv->acceptor_ = std::thread([s = srv.get()] { s->AcceptLoop(); });
  return srv;
}

H2EchoServer::~H2EchoServer() {
  stop_ = true;
  shutdown(listen_.get(), SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
  }
  for (std::thread& t : workers_) t.join();
}

void H2EchoServer::AcceptLoop() {
  while (!stop_) {
    const int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // the listener was shut down
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++connections_;
    std::lock_guard<std::mutex> l(mu_);
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void H2EchoServer::Serve(int fd) {
  Conn c;
  c.echo_size = echo_size_;
  c.requests = &requests_;
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnData);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnClose);
  nghttp2_session_server_new(&c.session, cb, &c);
  nghttp2_session_callbacks_del(cb);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 256},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
  nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, iv, 2);
  bool ok = Flush(fd, c.session);
  char buf[16384];
  while (ok && !stop_ &&
         (nghttp2_session_want_read(c.session) || nghttp2_session_want_write(c.session))) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ok = nghttp2_session_mem_recv(c.session, reinterpret_cast<const uint8_t*>(buf),
                                  static_cast<size_t>(n)) >= 0 &&
         Flush(fd, c.session);
  }
  nghttp2_session_del(c.session);
  std::lock_guard<std::mutex> l(mu_);
  std::erase(open_fds_, fd);
  close(fd);
}

int H2EchoMain(int argc, char** argv) {
  std::string listen = "0.0.0.0:8081";
  int echo_size = 1024;
  CLI::App app("weft-h2echo: an h2c (and gRPC) echo server for the benchmark suite", "weft-h2echo");
  app.add_option("--listen", listen, "ADDR:PORT (default 0.0.0.0:8081)");
  app.add_option("--echo-size", echo_size, "bytes sent back for a bodiless request")
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto addr = SockAddr::Parse(listen);
  if (!addr.ok()) {
    std::cerr << "weft-h2echo: --listen " << listen << ": " << addr.status().message() << "\n";
    return 2;
  }
  BlockTerminationSignals();
  auto srv = H2EchoServer::Start(*addr, echo_size);
  if (!srv.ok()) {
    std::cerr << srv.status().message() << "\n";
    return 1;
  }
  std::cerr << "weft-h2echo: listening on " << listen << " (h2c, prior knowledge)\n";
  WaitForTerminationSignal();
  return 0;
}

}  // namespace weft::bench::loadgen
