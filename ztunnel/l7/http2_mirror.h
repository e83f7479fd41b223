// One HTTP/2 request on a connection of its own, its response read and dropped: the copy a
// RequestMirror filter sends for an HTTP/2 (h2c, gRPC) stream (Envoy's shadow request). Without
// I/O: the caller moves the bytes (ztunnel/proxy/mirror.h).
//
// An nghttp2 client session: the connection preface and SETTINGS (no push), then the request:
// the header block as given (pseudo-headers first, as the primary upstream got it), the body
// and the trailers, END_STREAM on the last of them. The server's answer is read only to keep
// the connection correct (SETTINGS and PING acks, WINDOW_UPDATEs as the response is dropped) and
// to know when it is over: done() once the response ended or the stream was reset; then a
// GOAWAY is queued and the caller closes the connection after writing what output() holds.
// failed() when the server broke HTTP/2 or reset the stream before a response head.
//
// Memory: the request's bytes (held until the server's flow control takes them: a body over the
// server's initial window waits for its WINDOW_UPDATE) plus nghttp2's session. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct nghttp2_session;

namespace weft::ztunnel::l7 {

class Http2MirrorRequest {
 public:
  using Fields = std::vector<std::pair<std::string, std::string>>;
  Http2MirrorRequest(const Fields& head, std::string body, const Fields& trailers);
  ~Http2MirrorRequest();
  Http2MirrorRequest(const Http2MirrorRequest&) = delete;
  Http2MirrorRequest& operator=(const Http2MirrorRequest&) = delete;

  // Bytes for the server since the last call (moved out).
  std::string TakeOutput();
  // Bytes from the server. Bytes that are not HTTP/2 end it (done() and failed()).
  void FromServer(std::string_view in);
  // Output waiting in the session or in TakeOutput's buffer: the request's bytes not sent yet.
  size_t pending() const { return out_.size() + body_.size() - body_off_; }
  bool done() const { return done_; }
  bool failed() const { return failed_; }
  int status() const { return status_; }  // the response's :status; 0 before its head

 private:
  struct Callbacks;
  void Drain();
  void End(bool failed);

  nghttp2_session* s_ = nullptr;
  std::string body_;
  size_t body_off_ = 0;
  Fields trailers_;
  int32_t id_ = -1;
  std::string out_;
  int status_ = 0;
  bool done_ = false, failed_ = false;
};

}  // namespace weft::ztunnel::l7
