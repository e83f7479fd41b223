// A small gRPC client: one call (unary or bidirectional streaming) on its own HTTP/2 connection,
// over nghttp2 and OpenSSL. It is what ztunnel and weft-agent use to reach weftd (the config
// stream, the CA) instead of gRPC's C++ library, which is most of ztunnel's resident memory
// (docs/architecture.md "A small gRPC client on the node").
//
// The wire is gRPC's HTTP/2 protocol: POST <path> with content-type application/grpc and
// te: trailers, each message a 5-byte prefix (compressed flag 0, big-endian length) and the
// protobuf bytes, the status in the trailers (grpc-status, grpc-message). No compression, no
// name resolution beyond getaddrinfo, no load balancing: one server address, one connection per
// call, which is all the node needs (a config stream that lives for hours, a CSR twice a day).
//
// Transport: TLS 1.2+ verified against `root_pem` with the server name checked (SNI and
// hostname check, ALPN h2), or plaintext HTTP/2 (h2c, prior knowledge) when `root_pem` is empty.
// Keepalive: an HTTP/2 PING after `keepalive_time` without a frame from the server; the call
// fails (UNAVAILABLE) when it is not answered within `keepalive_timeout`.
//
// Thread-safety: one thread drives a call (Start, Write, Read, WritesDone, Finish); Cancel may be
// called from any thread at any time while the object lives, and makes the driving thread's
// blocked operation return (the call then ends CANCELLED).
//
// Errors: absl::Status with the gRPC status code (the numbering is the same as absl's): the
// server's grpc-status and grpc-message; UNAVAILABLE for a failed connect, TLS handshake or a
// lost connection; DEADLINE_EXCEEDED past the deadline; RESOURCE_EXHAUSTED for a message over
// `max_message_bytes`; INTERNAL for a malformed response (bad framing, compressed message,
// wrong content-type), with the reason in the message.
#pragma once

#include <google/protobuf/message_lite.h>
#include <nghttp2/nghttp2.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tls.h"
#include "common/unique_fd.h"

namespace weft::grpc_client {

// "host:port", "[v6]:port" or "dns:///host:port" (gRPC's spelling of the same).
struct Target {
  std::string host;
  std::string port;
};
absl::StatusOr<Target> ParseTarget(std::string_view target);

struct ChannelOptions {
  std::string target;  // see ParseTarget
  // Roots (PEM) that must have signed the server's certificate: TLS. Empty: plaintext h2c.
  std::string root_pem;
  // Name sent as SNI and checked against the server certificate's DNS SANs; also the
  // :authority. Empty: the target's host.
  std::string tls_server_name;
  std::chrono::milliseconds connect_timeout{10000};  // TCP connect + TLS handshake
  std::chrono::milliseconds keepalive_time{0};       // 0: no keepalive pings
  std::chrono::milliseconds keepalive_timeout{10000};
  size_t max_message_bytes = size_t{4} << 20;  // larger received messages fail the call
};

using Metadata = std::vector<std::pair<std::string, std::string>>;
using Clock = std::chrono::steady_clock;

class Call {
 public:
  Call();
  ~Call();
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  // Connects, handshakes and sends the request headers for `path` ("/pkg.Service/Method") with
  // `metadata` (lower-case names). `deadline` bounds the whole call (nullopt: none); it is sent
  // as grpc-timeout. An error here means nothing reached the server's handler (UNAVAILABLE for
  // connect/TLS failures): the caller may retry.
  absl::Status Start(const ChannelOptions& opts, std::string_view path, const Metadata& metadata,
                     std::optional<Clock::time_point> deadline);
  // Sends one message. False when the call has ended (Finish says why).
  bool Write(const google::protobuf::MessageLite& msg);
  // Half-closes the request stream (END_STREAM after the queued messages).
  void WritesDone();
  // Blocks for the next response message. False when there is none (the call ended, cleanly or
  // not: Finish says which). `wire_bytes`, if given, receives the message's encoded size.
  bool Read(google::protobuf::MessageLite* msg, size_t* wire_bytes = nullptr);
  // Waits for the call's end (trailers, reset, lost connection, deadline) and returns its status.
  // After Finish the connection is closed.
  absl::Status Finish();
  // From any thread: ends the call (CANCELLED) and wakes the driving thread.
  void Cancel();

 private:
  struct Session;
  // Runs the I/O loop until `done()` holds, the call ends or the deadline passes.
  template <typename Pred>
  void Pump(Pred done);
  void Fail(absl::Status st);            // the call's end with a local reason (the first one wins)
  void TransportError(absl::Status st);  // Fail, unless the server has already ended the call
  absl::Status Connect(const ChannelOptions& opts, const Target& t);
  bool FlushOut();  // nghttp2 -> socket; false on a transport error (recorded)
  bool ReadIn();    // socket -> nghttp2; false on EOF/error (recorded)
  bool PopMessage(google::protobuf::MessageLite* msg, size_t* wire_bytes);
  absl::Status ResultStatus() const;

  // nghttp2 callbacks.
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* self);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream, const uint8_t* data, size_t len,
                         void* self);
  static int OnStreamClose(nghttp2_session*, int32_t stream, uint32_t error_code, void* self);
  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* data_flags,
                          nghttp2_data_source*, void* self);

  ChannelOptions opts_;
  std::optional<Clock::time_point> deadline_;
  UniqueFd sock_;
  UniqueFd wake_;  // eventfd: Cancel() -> the driving thread
  std::atomic<bool> cancelled_{false};
  tls::SslCtxPtr ssl_ctx_;
  tls::SslPtr ssl_;
  nghttp2_session* h2_ = nullptr;
  int32_t stream_id_ = -1;

  std::string out_;   // encoded frames not yet written to the socket
  std::string body_;  // request messages not yet taken by nghttp2
  size_t body_off_ = 0;
  bool writes_done_ = false;
  bool body_deferred_ = false;

  std::string in_;  // response body bytes not yet parsed into messages
  size_t in_off_ = 0;
  std::string http_status_;
  std::string content_type_;
  std::optional<int> grpc_status_;
  std::string grpc_message_;
  bool stream_closed_ = false;  // nghttp2 closed the stream (both sides, or a reset)
  bool remote_closed_ = false;  // the server sent END_STREAM (or the stream closed)
  uint32_t reset_code_ = 0;     // RST_STREAM / GOAWAY error code, 0 = none
  bool goaway_ = false;
  std::optional<absl::Status> local_error_;  // transport, deadline, cancel, framing

  Clock::time_point last_recv_{};
  std::optional<Clock::time_point> ping_sent_;
};

// A unary call: Start, Write(request), WritesDone, Read(response), Finish. With
// `wait_for_ready`, connection failures (Start's UNAVAILABLE) are retried with backoff (1 s
// doubling up to `max_reconnect_backoff`) until the deadline, as gRPC's wait_for_ready does.
struct UnaryOptions {
  Clock::duration timeout = std::chrono::seconds(10);
  bool wait_for_ready = false;
  std::chrono::milliseconds max_reconnect_backoff{10000};
};
absl::Status UnaryCall(const ChannelOptions& opts, std::string_view path, const Metadata& metadata,
                       const google::protobuf::MessageLite& request,
                       google::protobuf::MessageLite* response, const UnaryOptions& uo);

}  // namespace weft::grpc_client
