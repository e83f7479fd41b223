#include "ztunnel/proxy/request_record.h"

#include <nlohmann/json.hpp>

#include "common/log.h"

namespace weft::ztunnel {

bool IsGrpcRequest(const HttpRequestAttributes& req) {
  for (const auto& [name, value] : req.headers)
    if (name == "content-type" && value.rfind("application/grpc", 0) == 0) return true;
  return false;
}

void RequestSeriesCache::Record(Metrics& m, const l7::Exchange& ex, std::string_view flags,
                                double ms) {
  // HTTP/1.1 carries no gRPC status here (no trailers are parsed), so it stays "".
  const bool grpc = IsGrpcRequest(ex.request);
  const int grpc_status = grpc ? ex.grpc_status : -1;
  const RequestSeries* s = nullptr;
  for (const Series& x : series_) {
    if (x.code == ex.status && x.flags == flags && x.grpc == grpc && x.grpc_status == grpc_status) {
      s = &x.series;
      break;
    }
  }
  if (s == nullptr) {
    series_.push_back({ex.status, std::string(flags), grpc, grpc_status,
                       m.ForRequest(labels_, grpc ? "grpc" : "http", ex.status,
                                    grpc_status >= 0 ? std::to_string(grpc_status) : "", flags)});
    s = &series_.back().series;
  }
  s->requests->Increment();
  s->duration_ms->Observe(ms);
  s->request_bytes->Observe(static_cast<double>(ex.request_bytes));
  s->response_bytes->Observe(static_cast<double>(ex.response_bytes));
}

void WriteRequestLog(const l7::Exchange& ex, const TcpLabels& labels, const RequestLogFields& f) {
  nlohmann::json rec = {
      {"level", "info"},
      {"scope", "access"},
      {"msg", "request complete"},
      {"direction", f.direction},
      {"reporter", labels.reporter},
      {"method", ex.request.method},
      {"authority", ex.request.authority},
      {"path", ex.request.path},
      {"status", ex.status},
      {"response_flags", f.flags},
      {"duration_ms", f.ms},
      {"bytes_received", ex.request_bytes},  // from the client: request head and body
      {"bytes_sent", ex.response_bytes},     // to the client: response head and body
      {"upstream", f.upstream},
      {"src.addr", f.src_addr},
      {"src.workload", labels.source_workload},
      {"src.namespace", labels.source_workload_namespace},
      {"src.identity", labels.source_principal},
      {"dst.workload", labels.destination_workload},
      {"dst.namespace", labels.destination_workload_namespace},
      {"dst.identity", labels.destination_principal},
      {"dst.service", labels.destination_service},
      {"trace_id", f.trace_id},
  };
  if (ex.local_reply) rec["local_reply"] = ex.reason;
  log::WriteRecord(std::move(rec));
}

TapEvent RequestTapEvent(const l7::Exchange& ex, std::string_view reporter, std::string trace_id) {
  TapEvent e;
  e.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch() -
                  (std::chrono::steady_clock::now() - ex.start))
                  .count();
  e.reporter = std::string(reporter);
  e.method = ex.request.method;
  e.authority = ex.request.authority;
  e.path = ex.request.path;
  e.status = ex.status;
  e.latency_ms = std::chrono::duration<double, std::milli>(ex.end - ex.start).count();
  e.request_bytes = ex.request_bytes;
  e.response_bytes = ex.response_bytes;
  e.local_reply = ex.local_reply;
  e.trace_id = std::move(trace_id);
  return e;
}

}  // namespace weft::ztunnel
