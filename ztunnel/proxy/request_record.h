// What both HTTP paths (http_inbound.h at the destination, http_outbound.h at the source) do
// with a finished request: Istio's request metrics for one reporter, and one JSON access-log
// line. Loop thread only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ztunnel/l7/exchange.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/tap.h"

namespace weft::ztunnel {

// True for a gRPC request (content-type application/grpc*): Istio labels it
// request_protocol="grpc" and records its grpc-status.
bool IsGrpcRequest(const HttpRequestAttributes& req);

// The request series of one set of connection labels: each (code, flags, gRPC status) series is
// looked up in Metrics once, so a request costs no label work (a connection sees few of them).
class RequestSeriesCache {
 public:
  explicit RequestSeriesCache(TcpLabels labels) : labels_(std::move(labels)) {}
  const TcpLabels& labels() const { return labels_; }
  // Counts `ex` in istio_requests_total and observes its duration and sizes.
  void Record(Metrics& m, const l7::Exchange& ex, std::string_view flags, double ms);

 private:
  struct Series {
    int code;
    std::string flags;
    bool grpc;
    int grpc_status;  // -1: none
    RequestSeries series;
  };
  TcpLabels labels_;
  std::vector<Series> series_;
};

// One access-log line (scope "access", "request complete") for `ex` as seen by `labels`'
// reporter; `upstream` is where the request went (ip:port), `trace_id` may be empty.
struct RequestLogFields {
  std::string_view direction;  // "inbound" | "outbound"
  std::string_view flags;
  double ms = 0;
  std::string src_addr, upstream;
  std::string_view trace_id;
};
void WriteRequestLog(const l7::Exchange& ex, const TcpLabels& labels, const RequestLogFields& f);

// The `weftctl tap` event of `ex` as far as the exchange alone says: when it arrived, the
// request, its outcome and sizes, `reporter` and `trace_id`; the caller adds who and where.
TapEvent RequestTapEvent(const l7::Exchange& ex, std::string_view reporter, std::string trace_id);

}  // namespace weft::ztunnel
