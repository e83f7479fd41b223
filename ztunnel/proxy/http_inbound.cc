#include "ztunnel/proxy/http_inbound.h"

#include <utility>

#include "common/log.h"
#include "ztunnel/proxy/worker.h"

namespace weft::ztunnel {

HttpInbound::HttpInbound(Worker* w, std::string pod_uid, ConnectionInfo ci)
    : w_(w),
      pod_uid_(std::move(pod_uid)),
      ci_(std::move(ci)),
      codec_(
          l7::Http1Limits{}, [this](HttpRequestAttributes& r) { return Gate(r); },
          [this](const l7::Exchange& ex) { Done(ex); }) {}

void HttpInbound::FromClient(const char* p, size_t n, ByteQueue& to_app) {
  codec_.FromClient(std::string_view(p, n),
                    [&](std::string_view b) { to_app.Append(b.data(), b.size()); });
  if (broken()) {
    w_->metrics().BadInput("http", "unframed_request");
    LOG_INFO("inbound", "HTTP connection refused",
             {{"dst", ci_.dst.ToString()}, {"src", ci_.src_ip.ToString()}, {"reason", error()}});
  }
}

void HttpInbound::FromApp(const char* p, size_t n, ByteQueue& to_app) {
  codec_.FromServer(std::string_view(p, n),
                    [&](std::string_view b) { to_app.Append(b.data(), b.size()); });
  if (broken()) {
    w_->metrics().BadInput("http", "unframed_response");
    LOG_WARN("inbound", "the application's HTTP response could not be framed",
             {{"dst", ci_.dst.ToString()}, {"reason", error()}});
  }
}

std::optional<l7::LocalReply> HttpInbound::Gate(HttpRequestAttributes& req) {
  ++requests_;
  auto snap = w_->shared().config->Get();
  const Workload* dst = snap->FindWorkloadByUid(pod_uid_);
  if (!dst) return l7::LocalReply{503, "destination pod left the config"};
  AuthzDecision d = AuthorizeRequest(*snap, *dst, ci_, req);
  if (!d.allowed) {
    if (d.bad_request) {
      w_->metrics().BadInput("http", "bad_request_target");
    } else {
      w_->metrics().PolicyDenial(d.policy, d.policy.empty() ? "no_allow_match" : "deny");
    }
    LOG_INFO("inbound", "request denied by policy",
             {{"src", ci_.src_ip.ToString()},
              {"src.identity", ci_.src_identity ? ci_.src_identity->ToString() : ""},
              {"dst", ci_.dst.ToString()},
              {"method", req.method},
              {"path", req.path},
              {"reason", d.reason}});
    if (d.bad_request) return l7::LocalReply{400, "Bad Request"};
    return l7::LocalReply{};
  }
  for (auto& a : d.audited)
    LOG_INFO("audit", "AUDIT policy matched",
             {{"policy", a}, {"dst", ci_.dst.ToString()}, {"path", req.path}});
  for (auto& r : d.dry_run)
    LOG_INFO("audit", "dry-run policy result",
             {{"result", r}, {"dst", ci_.dst.ToString()}, {"path", req.path}});
  // Forward what was authorized: the normalised path (origin-form targets only).
  RequestTarget t = NormalizeRequestTarget(req.method, req.path);
  if (t.kind == RequestTarget::Kind::kPath && t.authority.empty()) req.path = t.path + t.query;
  return std::nullopt;
}

void HttpInbound::Done(const l7::Exchange& ex) {
  if (ex.local_reply && ex.status != 403 && ex.status != 503 && ex.reason != "Bad Request") {
    // The codec refused the head itself (framing, limits).
    w_->metrics().BadInput("http", ex.status == 431 ? "header_too_large" : "malformed_request");
    LOG_INFO("inbound", "HTTP request refused",
             {{"dst", ci_.dst.ToString()}, {"status", ex.status}, {"reason", ex.reason}});
  }
}

}  // namespace weft::ztunnel
