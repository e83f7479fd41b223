// The destination side of one HTTP/2 cleartext connection (prior knowledge, "h2c") in ztunnel,
// without I/O: what L7 authorization needs for gRPC and HTTP/2 clients of a policed workload.
//
// Two nghttp2 sessions (no hand-written framing): a server session terminates the client's
// HTTP/2, a client session originates HTTP/2 towards the app, and every client stream is mapped
// to one app stream. Per stream:
//  - the request's header block is complete before anything of it reaches the app: its
//    HttpRequestAttributes (:method, :authority or Host, :path, the regular fields) go through
//    the gate (same signature as Http1ServerConnection's); the gate may change the path and the
//    app then sees the changed :path. A denied stream gets a local reply on that stream only
//    (Envoy's: 403 "RBAC: access denied"; for gRPC, content-type application/grpc*, HTTP 200
//    trailers-only with grpc-status 7 PERMISSION_DENIED and grpc-message "RBAC: access denied"),
//    its DATA is dropped, and the other streams continue;
//  - DATA, trailers (gRPC's grpc-status) and interim 1xx are forwarded both ways; RST_STREAM is
//    propagated both ways with its error code; an app stream that ends without a complete
//    response resets the client's stream;
//  - flow control is end to end: both sessions run without automatic WINDOW_UPDATE, and bytes a
//    peer sent are given back to it (nghttp2_session_consume) only as the other session takes
//    them into its frames. A slow app (its window closed) therefore stops the client once the
//    client's window is spent. Buffered in the codec, per direction: at most the stream window
//    per stream and the connection window per connection (Http2Limits: 64 KiB and 1 MiB), since
//    a peer may never send beyond the window advertised to it.
// Connection: SETTINGS_MAX_CONCURRENT_STREAMS and SETTINGS_MAX_HEADER_LIST_SIZE towards the
// client (a request over the header limits gets 431), SETTINGS_ENABLE_PUSH 0 towards the app (a
// PUSH_PROMISE from it is a connection error; nothing is ever pushed to the client); an app's
// GOAWAY is forwarded to the client (streams the app refused are reset with REFUSED_STREAM), a
// client's GOAWAY drains the connection. A protocol error from the client (bad preface, bad
// frames) or from the app breaks the connection (kBroken).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "ztunnel/l7/exchange.h"
#include "ztunnel/l7/http1_server.h"
#include "ztunnel/rbac/request.h"

struct nghttp2_session;

namespace weft::ztunnel::l7 {

// The client connection preface (RFC 9113 3.4): what prior-knowledge HTTP/2 starts with.
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Http2Limits {
  uint32_t max_concurrent_streams = 100;       // towards the client (Envoy's default is higher)
  uint32_t max_header_list_bytes = 60 * 1024;  // per request header block (Envoy's 60 KiB): 431
  size_t max_fields = 100;                     // header fields per request (Envoy's default): 431
  int32_t stream_window = 64 * 1024;           // receive window per stream, each side
  int32_t connection_window = 1024 * 1024;     // receive window per connection, each side
};

class Http2ServerConnection {
 public:
  using Gate = Http1ServerConnection::Gate;
  using Done = Http1ServerConnection::Done;
  using Sink = absl::FunctionRef<void(std::string_view)>;
  // kHttp: running; kClosing: the connection is over (GOAWAY exchanged and no stream left, or
  // the app closed): flush what was emitted and close; kBroken: a protocol error, abort both.
  using State = Http1ServerConnection::State;

  Http2ServerConnection(Http2Limits limits, Gate gate, Done done);
  ~Http2ServerConnection();
  Http2ServerConnection(const Http2ServerConnection&) = delete;
  Http2ServerConnection& operator=(const Http2ServerConnection&) = delete;

  // Client bytes in. Frames for the app go to `to_app`, frames for the client (SETTINGS,
  // WINDOW_UPDATE, local replies, resets) to `to_client`, in order.
  void FromClient(std::string_view in, Sink to_app, Sink to_client);
  // App bytes in; same sinks.
  void FromApp(std::string_view in, Sink to_app, Sink to_client);
  // The app closed its side: streams without a response get 503 (Envoy's "upstream reset"), the
  // others are reset; the client gets a GOAWAY.
  void AppEof(Sink to_client);
  // The connection is torn down: streams still open are reported.
  void Finish();

  // Always empty: HTTP/2 local replies go out on their own stream through `to_client`.
  std::string TakeLocalReply() { return {}; }
  State state() const { return state_; }
  const std::string& error() const { return error_; }
  bool InHead() const { return false; }
  size_t open_streams() const { return streams_.size(); }
  // Bytes received from either peer that the codec holds for the other (the buffering figure).
  size_t buffered() const;

 private:
  struct Stream;
  struct Callbacks;
  void Flush(Sink to_app, Sink to_client);
  void OnRequest(Stream& s);
  void Reply(Stream& s, const LocalReply& r);
  void OnResponseHeaders(Stream& s, bool end_stream);
  void AppStreamClosed(Stream& s, uint32_t code);
  void ClientStreamClosed(Stream& s, uint32_t code);
  void MaybeRelease(Stream& s);
  void Report(Stream& s);
  void Fail(std::string reason);

  Http2Limits limits_;
  Gate gate_;
  Done done_;
  State state_ = State::kHttp;
  std::string error_;
  nghttp2_session* down_ = nullptr;                     // server session: the client
  nghttp2_session* up_ = nullptr;                       // client session: the app
  std::map<int32_t, std::unique_ptr<Stream>> streams_;  // by client stream id
  bool app_gone_ = false;
  bool goaway_to_client_ = false;
};

}  // namespace weft::ztunnel::l7
