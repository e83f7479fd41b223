#include "ztunnel/traffic/plan.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "ztunnel/traffic/fault.h"
#include "ztunnel/traffic/filters.h"

namespace weft::ztunnel::traffic {
namespace {

void LocalReply(RequestPlan* p, uint16_t status, std::string_view flags) {
  p->action = RequestPlan::Action::kLocalReply;
  p->status = status;
  p->response_flags = std::string(flags);
}

// Step 2: returns true when the request is aborted.
bool ApplyFault(RequestPlan* p, const std::function<uint64_t()>& draw) {
  if (p->policy == nullptr) return false;
  const bool routed = p->selection.kind == RouteSelection::Kind::kMatched;
  const config::FaultInjection* f =
      FaultFor(*p->policy, routed ? p->selection.route->key() : std::string(),
               routed ? std::string_view(p->selection.rule->name) : std::string_view());
  if (f == nullptr) return false;
  uint64_t delay_draw = draw();
  FaultDecision d = DecideFault(*f, delay_draw, draw());
  p->delay_ms = d.delay_ms;
  if (!d.aborted()) return false;
  if (d.abort_grpc_status >= 0) {
    LocalReply(p, 200, "FI");
    p->grpc_status = d.abort_grpc_status;
  } else {
    LocalReply(p, d.abort_http_status, "FI");
  }
  return true;
}

// Steps 3 to 6 for a matched rule.
void ApplyRule(RequestPlan* p, uint16_t port, const std::function<uint64_t()>& draw) {
  const config::HttpRouteRule& rule = *p->selection.rule;
  const config::HttpRouteMatch& match = *p->selection.match;
  if (rule.redirect) {
    Redirect r = BuildRedirect(*rule.redirect, match, "http", p->authority, p->path, port);
    LocalReply(p, r.status, "");
    p->location = std::move(r.location);
    return;
  }
  if (rule.request_headers) ApplyHeaderModifier(*rule.request_headers, &p->headers);
  if (rule.rewrite) ApplyUrlRewrite(*rule.rewrite, match, &p->authority, &p->path);
  BackendChoice b = ChooseBackend(rule.backends, draw());
  if (b.kind != BackendChoice::Kind::kBackend) {
    LocalReply(p, 500, "");
    return;
  }
  p->backend_service = b.backend->service;
  p->backend_port = b.backend->port != 0 ? b.backend->port : port;
  if (b.backend->request_headers) ApplyHeaderModifier(*b.backend->request_headers, &p->headers);
  p->rule_response_headers = rule.response_headers ? &*rule.response_headers : nullptr;
  p->backend_response_headers =
      b.backend->response_headers ? &*b.backend->response_headers : nullptr;
  for (const config::HttpRequestMirror& m : rule.mirrors) {
    if (ShouldMirror(m, draw())) p->mirrors.push_back(&m);
  }
  p->request_timeout_ms = rule.request_timeout_ms;
  p->retry = EffectiveRetry(&rule, p->policy);
}

}  // namespace

RequestPlan PlanRequest(const Router& router, const config::Service& service, uint16_t port,
                        PlanInput in, const std::function<uint64_t()>& draw) {
  RequestPlan p;
  p.authority = std::string(in.authority);
  p.path = std::string(in.path);
  p.headers = std::move(in.headers);
  RouteRequest req{in.client_namespace, in.method, in.path, in.authority, &p.headers};
  p.selection = router.Select(service, port, req);
  const std::string key = absl::StrCat(service.ns, "/", service.name);
  p.policy = router.snapshot().TrafficPolicyFor(key, port);
  if (p.selection.kind == RouteSelection::Kind::kNoMatch) {
    LocalReply(&p, 404, "NR");
    return p;
  }
  if (ApplyFault(&p, draw)) return p;
  if (p.selection.kind == RouteSelection::Kind::kNoRoutes) {
    p.backend_service = key;
    p.backend_port = port;
    p.retry = EffectiveRetry(nullptr, p.policy);
    return p;
  }
  ApplyRule(&p, port, draw);
  return p;
}

}  // namespace weft::ztunnel::traffic
