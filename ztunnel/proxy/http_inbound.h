// L7 on the destination side (issue 14): the HTTP/1.1 codec (ztunnel/l7/http1_server.h) of one
// inbound connection to a workload that NeedsHttpAuthorization, whatever carried it (an HBONE
// stream, plaintext 15006). Every request is authorized with AuthorizeRequest against the
// snapshot current when it arrives (a policy change applies to the next request on an open
// connection), and forwarded with the normalised path it was authorized on; a denial is answered
// with Envoy's 403 "RBAC: access denied" and counted as at L4 (weft_policy_denials_total), bad
// input with 400/431 and weft_bad_input_total{port="http"}. Every finished request (local
// replies included) is recorded as Istio's destination-reporter request metrics
// (Metrics::ForRequest, labelled with the connection's TcpLabels) and, when the access log is on
// and the level is info, one JSON access-log line (scope "access"). Loop thread only.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/net.h"
#include "ztunnel/l7/http1_server.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/io.h"
#include "ztunnel/rbac/request.h"

namespace weft::ztunnel {

class Worker;

class HttpInbound {
 public:
  using State = l7::Http1ServerConnection::State;
  // `pod_uid`: the destination pod; `ci`: the connection as L4 authorization saw it; `labels`:
  // the connection's metric labels (reporter "destination"), which its requests carry too.
  HttpInbound(Worker* w, std::string pod_uid, ConnectionInfo ci, const TcpLabels& labels);
  // Requests still waiting are reported as cut short by the client (Envoy's "DC").
  ~HttpInbound();
  HttpInbound(const HttpInbound&) = delete;
  HttpInbound& operator=(const HttpInbound&) = delete;

  // Client bytes; what the application may see is appended to `to_app`.
  void FromClient(const char* p, size_t n, ByteQueue& to_app);
  // Application bytes (forwarded to the client unchanged by the caller); client bytes held for a
  // protocol switch this settles go to `to_app`.
  void FromApp(const char* p, size_t n, ByteQueue& to_app);
  void AppEof() { codec_.ServerEof(); }
  // The application's side failed (reset, read error): waiting requests are cut short ("UC").
  void AppReset() { codec_.ServerReset(); }
  void Finish() { codec_.Finish(); }

  // A local reply for the client; after it, end the connection both ways.
  std::string TakeLocalReply() { return codec_.TakeLocalReply(); }
  State state() const { return codec_.state(); }
  // Nothing more will reach the application (a local reply was made, or bytes could not be
  // framed): the caller stops reading the client and, once the reply is out, closes.
  bool done() const { return state() == State::kClosing || state() == State::kBroken; }
  bool broken() const { return state() == State::kBroken; }
  const std::string& error() const { return codec_.error(); }
  uint64_t requests() const { return requests_; }

 private:
  std::optional<l7::LocalReply> Gate(HttpRequestAttributes& req);
  void Done(const l7::Exchange& ex);
  void AccessLog(const l7::Exchange& ex, std::string_view flags, double ms) const;

  Worker* w_;
  std::string pod_uid_;
  ConnectionInfo ci_;
  uint64_t requests_ = 0;
  TcpLabels labels_;
  // The request series this connection has used, by (response code, flags): looked up in
  // Metrics once each, so a request costs no label work (a connection sees few of them).
  struct Series {
    int code;
    std::string_view flags;  // one of the static flag strings
    RequestSeries series;
  };
  std::vector<Series> series_;
  l7::Http1ServerConnection codec_;
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
