// L7 on the destination side (issue 14): the HTTP/1.1 codec (ztunnel/l7/http1_server.h), or the
// HTTP/2 one for prior-knowledge h2c and gRPC (ztunnel/l7/http2_server.h), of one inbound
// connection to a workload that NeedsHttpAuthorization (Mode::kEnforce), or to a port a Service
// declares HTTP (Mode::kObserve: parsed for the request metrics), whatever carried it (an HBONE
// stream, plaintext 15006). Every request is authorized with AuthorizeRequest against the
// snapshot current when it arrives (a policy change applies to the next request on an open
// connection), and forwarded with the normalised path it was authorized on; a denial is answered
// with Envoy's 403 "RBAC: access denied" and counted as at L4 (weft_policy_denials_total), bad
// input with 400/431 and weft_bad_input_total{port="http"}. Every finished request (local
// replies included) is recorded as Istio's destination-reporter request metrics
// (Metrics::ForRequest, labelled with the connection's TcpLabels) and, when the access log is on
// and the level is info, one JSON access-log line (scope "access"). Loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/net.h"
#include "ztunnel/l7/http1_server.h"
#include "ztunnel/l7/http2_server.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/io.h"
#include "ztunnel/proxy/request_record.h"
#include "ztunnel/rbac/request.h"

namespace weft::ztunnel {

class Worker;

class HttpInbound {
 public:
  using State = l7::Http1ServerConnection::State;
  // What bytes that are not HTTP do. kEnforce (an L7 policy applies): they are refused (fail
  // closed). kObserve (a Service declares the port HTTP, no L7 policy): the connection falls back
  // to L4, decided on the first bytes: the client's must start an HTTP/1.1 request line (an
  // uppercase method token, then a space) or the HTTP/2 preface, and an application that speaks
  // first must start with an HTTP/2 SETTINGS frame; anything else is relayed unparsed (see
  // not_http()) and counted (weft_bad_input_total{port="http",kind="not_http_l4_fallback"}).
  enum class Mode { kEnforce, kObserve };
  // `pod_uid`: the destination pod; `ci`: the connection as L4 authorization saw it; `labels`:
  // the connection's metric labels (reporter "destination"), which its requests carry too.
  HttpInbound(Worker* w, std::string pod_uid, ConnectionInfo ci, const TcpLabels& labels,
              Mode mode);
  // Requests still waiting are reported as cut short by the client (Envoy's "DC").
  ~HttpInbound();
  HttpInbound(const HttpInbound&) = delete;
  HttpInbound& operator=(const HttpInbound&) = delete;

  // Protocol detection: a connection whose first 24 client bytes are the HTTP/2 connection
  // preface (prior-knowledge h2c, gRPC) gets the HTTP/2 codec (l7/http2_server.h), any other
  // the HTTP/1.1 one; client bytes are held until the preface matches or cannot match.
  //
  // Client bytes; what the application may see is appended to `to_app`, frames the HTTP/2 codec
  // sends the client itself (SETTINGS, WINDOW_UPDATE, responses, local replies) to `to_client`.
  void FromClient(const char* p, size_t n, ByteQueue& to_app, ByteQueue& to_client);
  // Application bytes. HTTP/1.1: the caller forwards them to the client unchanged, and client
  // bytes held for a protocol switch this settles go to `to_app`. While the protocol is not
  // decided (an HTTP/2 server speaks first) and for HTTP/2, owns_app_bytes() is true: they are
  // held or re-framed here and reach the client through `to_client`; the caller must not
  // forward them itself.
  void FromApp(const char* p, size_t n, ByteQueue& to_app, ByteQueue& to_client);
  // HTTP/2: streams still waiting are answered (503) or reset; those frames are dropped, as the
  // caller ends the connection.
  void AppEof();
  // The application's side failed (reset, read error): waiting requests are cut short ("UC").
  void AppReset();
  void Finish();
  // Timeouts, once a caller watches them (the flows do; without it there is no timer). A request
  // head must be complete ProxyOptions::request_headers_timeout after its first byte
  // (slowloris): HTTP/1.1 then answers 408 "request timeout" if no response is in progress (else
  // it is broken()), and it is counted (weft_bad_input_total{port="http",kind="header_timeout"}).
  // A connection with no request in flight and no bytes either way for http_idle_timeout is
  // idle. Either way `ended` is called (loop thread) and must end the connection: abort it when
  // broken(), else send TakeLocalReply() (may be empty) and close. One timer per connection,
  // re-armed lazily: bytes moving only store the time.
  void WatchTimeouts(std::function<void()> ended);
  // Whether app bytes fed next are the codec's to forward (held or re-framed into `to_client`);
  // ask before FromApp: when they settle the protocol, that call's bytes went out as it decided.
  bool owns_app_bytes() const { return sniffing_ || h2_ != nullptr; }
  // kObserve: the connection is not HTTP. The bytes held while deciding went to `to_app` and
  // `to_client`, the timers are off, and from now on client bytes fed are appended to `to_app`
  // unchanged and app bytes are the caller's: the caller should stop feeding it and relay the
  // connection as L4 (it may drop the HttpInbound once nothing it queued is pending).
  bool not_http() const { return not_http_; }

  // A local reply for the client; after it, end the connection both ways.
  std::string TakeLocalReply() { return h2_ ? std::string() : codec_.TakeLocalReply(); }
  State state() const { return h2_ ? h2_->state() : codec_.state(); }
  // Nothing more will reach the application (a local reply was made, or bytes could not be
  // framed): the caller stops reading the client and, once the reply is out, closes.
  bool done() const { return state() == State::kClosing || state() == State::kBroken; }
  bool broken() const { return state() == State::kBroken || flooded_; }
  const std::string& error() const {
    return flooded_ ? flood_error_ : h2_ ? h2_->error() : codec_.error();
  }
  uint64_t requests() const { return requests_; }

 private:
  std::optional<l7::LocalReply> Gate(HttpRequestAttributes& req);
  void Done(const l7::Exchange& ex);
  void Tap(const l7::Exchange& ex);  // publishes to `weftctl tap` while someone taps
  using Clock = std::chrono::steady_clock;
  bool InHead() const;  // a request head (or the bytes before the protocol is known) is incomplete
  bool Idle() const;    // no request in flight
  void Touch();         // bytes moved: the activity time and the start of a head
  void Arm(Clock::time_point at);
  void OnTimer();
  void HeadTimedOut();
  // kObserve: whether bytes can start HTTP (yes, no, not yet known).
  enum class Sniff { kYes, kNo, kMore };
  static Sniff ClientSniff(std::string_view held);
  static Sniff AppSniff(std::string_view held);
  void FallBackToL4(ByteQueue& to_app, ByteQueue& to_client);

  Worker* w_;
  std::string pod_uid_;
  ConnectionInfo ci_;
  Mode mode_;
  bool not_http_ = false;  // kObserve fell back to L4
  uint64_t requests_ = 0;
  // The connection's request series (its labels: reporter "destination"), looked up once each.
  RequestSeriesCache series_;
  l7::Http1ServerConnection codec_;
  std::unique_ptr<l7::Http2ServerConnection> h2_;  // set when the client sent the h2 preface
  bool sniffing_ = true;                           // the protocol is not decided yet
  std::string sniffed_;    // client bytes held meanwhile (< 24; kObserve: a method token, <= 33)
  std::string app_early_;  // app bytes held meanwhile (<= 64 KiB)
  // HTTP/2: what the codec owes a client that never reads (PING and SETTINGS acks) would pile up
  // in the caller's queue; past kMaxClientBacklog the connection is refused as a flood.
  static constexpr size_t kMaxClientBacklog = 4 << 20;
  bool flooded_ = false;
  std::string flood_error_;
  std::function<void()> on_timeout_;  // WatchTimeouts
  uint64_t timer_ = 0;
  Clock::time_point timer_at_, last_active_, head_since_;
  bool head_started_ = false;  // head_since_ is the first byte of the incomplete head
};

// Envoy's response flags for a finished exchange at the destination: "-" (a response, including
// the 403 of an RBAC denial: Istio reports "-" there, istio/istio#47622), "UC" (the application
// closed or reset first), "DC" (the client left first), "DPE" (ztunnel refused the request as
// malformed: Envoy's downstream protocol error), "UH" (the destination pod left the config).
std::string_view ResponseFlags(const l7::Exchange& ex);
// The trace id of a request: from W3C `traceparent` (version-traceid-parentid-flags), else B3's
// `x-b3-traceid` or single `b3` header; empty when none is valid.
std::string TraceId(const HttpRequestAttributes& req);

}  // namespace weft::ztunnel
