// The source-side HTTP/1.1 proxy's traffic features (issue 15): what a request's route and the
// TrafficPolicies of its Services ask of it once it is forwarded.
//
// - Circuit breaking (the backend Service's connectionPool, per source ztunnel): a request
//   needs an http2MaxRequests slot while outstanding, a new upstream a maxConnections slot per
//   endpoint while open; a refused one is answered 503 "UO". An upstream is closed after
//   maxRequestsPerConnection requests. Requests never wait for a connection here (a new
//   upstream is opened at once), so http1MaxPendingRequests has nothing to count.
// - Outlier detection (the backend's outlierDetection): every attempt's result is reported for
//   its endpoint; ejected endpoints are skipped by the balancer (ChooseEndpoint).
// - Fault delay ("DI"): the request's bytes wait in its upstream's queue for the delay.
// - Timeouts: timeouts.request covers the whole exchange (Envoy's route timeout): before the
//   response began it is answered 504 "upstream request timeout" with "UT", after that the
//   client connection is reset. The per-try timeout (perTryTimeout, or the rule's
//   timeouts.backendRequest) ends an attempt that has no response head yet.
// - Retries (retry.h: what is retriable, back-off, the budget, maxRetries): a request with
//   retries keeps its bytes as sent (at most kMaxReplay; a bigger or still streaming request is
//   not retried) and its response head is held until complete (as is any response that a
//   ResponseHeaderModifier changes); a retriable attempt (status, reset, connect failure,
//   per-try timeout) is dropped with its upstream and the request sent again, after the
//   back-off, to another endpoint when there is one. "URX" when the attempts are used up.
// - ResponseHeaderModifier (the rule's, then the backend's): applied to the held head; the
//   framing fields (content-length, transfer-encoding, connection, upgrade) are never changed.
// - RequestMirror (the rule's, each drawn by its percent/fraction): a copy of the request to an
//   endpoint of the mirror Service on a connection of its own, fire and forget; its answer is
//   dropped and nothing of it reaches the client. HTTP/1.1: the kept bytes (kMaxReplay) once
//   the exchange is done. HTTP/2: the codec's copy (header block as sent, body up to
//   kMaxReplay, trailers) once the request is whole, sent by the worker's MirrorSender.
#include "ztunnel/proxy/http_outbound.h"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ztunnel/l7/http2_mirror.h"
#include "ztunnel/proxy/outbound.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/traffic/filters.h"

namespace weft::ztunnel {

namespace {

namespace http = boost::beast::http;
using SteadyClock = std::chrono::steady_clock;

absl::string_view View(boost::beast::string_view v) {
  return {v.data(), v.size()};
}

constexpr size_t kMaxReplay = 64 * 1024;  // request bytes kept for a retry
constexpr size_t kMaxHeldHead = 64 * 1024;
constexpr std::string_view kOverflow =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";
constexpr std::string_view kUpstreamTimeout = "upstream request timeout";

bool IsFramingField(std::string_view name) {
  return name == "content-length" || name == "transfer-encoding" || name == "connection" ||
         name == "upgrade" || name == "keep-alive";
}

// The held head with the modifiers applied (framing fields kept as they were).
std::string RebuildResponseHead(const http::response_header<>& h,
                                const config::HttpHeaderModifier* const mods[2]) {
  traffic::Headers framing, fields;
  for (const auto& f : h) {
    std::string name = absl::AsciiStrToLower(View(f.name_string()));
    (IsFramingField(name) ? framing : fields)
        .emplace_back(std::move(name), std::string(View(f.value())));
  }
  for (int i = 0; i < 2; ++i)
    if (mods[i]) traffic::ApplyHeaderModifier(*mods[i], &fields);
  std::string out = absl::StrCat("HTTP/", h.version() / 10, ".", h.version() % 10, " ",
                                 h.result_int(), " ", View(h.reason()), "\r\n");
  for (const auto* list : {&fields, &framing})
    for (const auto& [n, v] : *list)
      if (!IsFramingField(n) || list == &framing) absl::StrAppend(&out, n, ": ", v, "\r\n");
  out += "\r\n";
  return out;
}

}  // namespace

// The gate's second half for a request that has its backend: breaker slots, endpoint, upstream,
// and its retry, timeout, delay and response-modifier state. A local reply when it cannot go
// (gate_flags_ set).
std::optional<l7::LocalReply> HttpOutbound::Admit(Routed& r, const SnapshotPtr& snap,
                                                  const Target& t,
                                                  const HttpRequestAttributes& req) {
  Outbound& ob = w_->outbound();
  r.snap = snap;
  r.backend = t.svc;
  r.backend_port = t.port;
  if (t.svc && t.port && !snap->traffic_policies().empty()) {
    r.backend_traffic =
        w_->shared().TrafficFor(absl::StrCat(t.svc->ns, "/", t.svc->name), t.port->port);
    if (t.retry.attempts > 0) r.called_traffic = CalledTraffic(*snap, t, r.backend_traffic);
  }
  traffic::CircuitBreaker* breaker = r.backend_traffic ? r.backend_traffic->breaker.get() : nullptr;
  if (breaker && !(r.request_slot = breaker->TryRequest())) {
    gate_flags_ = "UO";
    return l7::LocalReply{503, std::string(kOverflow)};
  }
  const Workload* dst =
      t.svc ? ChooseEndpoint(*snap, *t.svc,
                             r.backend_traffic ? r.backend_traffic->outlier.get() : nullptr)
            : nullptr;
  if (!dst) {
    gate_flags_ = "UH";
    return l7::LocalReply{503, "no healthy upstream"};
  }
  const auto now = SteadyClock::now();
  bool overflow = false;
  Upstream* u = UpstreamFor(*snap, *dst, t, breaker, &overflow);
  if (!u) {
    if (overflow) {
      gate_flags_ = "UO";
      return l7::LocalReply{503, std::string(kOverflow)};
    }
    gate_flags_ = "UF";
    ob.balancer().Finished(dst->uid, /*failed=*/true, now);
    ReportAttempt(r, dst->uid, 0);
    return l7::LocalReply{503, std::string(l7::kResetBeforeHeadersFailure)};
  }
  ob.balancer().Started(dst->uid, now);
  u->busy = true;
  u->resp_bytes = 0;
  ++u->requests;
  cur_ = u;
  r.up = u->idx;
  const bool switching = req.method == "CONNECT" || [&] {
    for (const auto& [n, v] : req.headers)
      if (n == "upgrade") return true;
    return false;
  }();
  if (t.retry.attempts > 0 && !switching) {
    traffic::RetryBudget* budget = r.called_traffic ? r.called_traffic->budget.get() : nullptr;
    r.retry = std::make_unique<traffic::RetryState>(t.retry, budget, breaker, now);
    if (t.retry.per_try_timeout_ms)
      r.try_deadline = now + std::chrono::milliseconds(t.retry.per_try_timeout_ms);
  }
  r.mirrors = t.mirrors;
  r.response_mods[0] = t.response_mods[0];
  r.response_mods[1] = t.response_mods[1];
  r.hold = !switching && (r.retry || r.response_mods[0] || r.response_mods[1]);
  if (t.timeout_ms) r.deadline = now + std::chrono::milliseconds(t.timeout_ms);
  if (t.delay_ms) {
    Hold(*u, t.delay_ms);
    r.flags = "DI";
  }
  return std::nullopt;
}

// The traffic state of the Service the client called, which holds the retry budget (looked up
// only for a request that retries): the backend's when the route kept it on that Service.
std::shared_ptr<const traffic::ServiceTraffic> HttpOutbound::CalledTraffic(
    const ConfigSnapshot& snap, const Target& t,
    const std::shared_ptr<const traffic::ServiceTraffic>& backend) {
  const Service* called = snap.FindServiceByAddress(orig_.ip);
  if (!called) return nullptr;
  if (called == t.svc && t.port && orig_.port == t.port->port) return backend;
  return w_->shared().TrafficFor(absl::StrCat(called->ns, "/", called->name), orig_.port);
}

// One timer per request, at its nearest deadline.
void HttpOutbound::ArmTimer(Routed& r) {
  if (r.timer) w_->loop().CancelTimer(r.timer);
  r.timer = 0;
  SteadyClock::time_point at = r.deadline;
  if (r.try_deadline != SteadyClock::time_point{} && !r.committed &&
      (at == SteadyClock::time_point{} || r.try_deadline < at))
    at = r.try_deadline;
  if (at == SteadyClock::time_point{}) return;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(at - SteadyClock::now());
  r.timer = w_->loop().AddTimer(std::max(ms, std::chrono::milliseconds(0)),
                                [this, id = r.id] { OnRequestTimer(id); });
}

void HttpOutbound::OnRequestTimer(uint64_t id) {
  if (closed_) return;
  auto it =
      std::find_if(routed_.begin(), routed_.end(), [id](const Routed& r) { return r.id == id; });
  if (it == routed_.end()) return;
  Routed& r = *it;
  r.timer = 0;
  if (it != routed_.begin()) {  // its response is not due yet: look again soon
    r.timer =
        w_->loop().AddTimer(std::chrono::milliseconds(10), [this, id] { OnRequestTimer(id); });
    return;
  }
  const auto now = SteadyClock::now();
  if (r.deadline != SteadyClock::time_point{} && now >= r.deadline) {
    TimeOut(r);
  } else if (r.try_deadline != SteadyClock::time_point{} && now >= r.try_deadline && !r.committed) {
    traffic::AttemptResult res;
    res.kind = traffic::AttemptResult::Kind::kTimeout;
    if (!MaybeRetry(r, res)) TimeOut(r);
  } else {
    ArmTimer(r);
  }
  if (!closed_) {
    Flush();
    if (!closed_) UpdateInterest();
  }
}

// The oldest request ran out of time: 504 "UT" when nothing of a response reached the client,
// else the client connection is reset (a reply cannot go between response bytes).
void HttpOutbound::TimeOut(Routed& r) {
  if (r.committed) {
    info_.error = "HTTP: request timeout after the response began";
    Close(/*reset=*/true);
    return;
  }
  DropUpstream(*ups_[r.up]);  // its late response must not reach anyone
  FailFront(504, kUpstreamTimeout, "UT");
}

// The oldest request is answered by ztunnel; the client connection closes after it.
void HttpOutbound::FailFront(uint16_t status, std::string_view body, std::string flags) {
  Routed& r = routed_.front();
  r.failed = true;
  r.fail_status = status;
  r.fail_body = body;
  if (!r.flags.empty() && r.flags != "-") flags = r.flags + "," + flags;  // e.g. "DI,UT"
  r.flags = std::move(flags);
  std::string reply =
      absl::StrCat("HTTP/1.1 ", status, status == 504 ? " Gateway Timeout" : " Service Unavailable",
                   "\r\ncontent-length: ", body.size(),
                   "\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n");
  reply.append(body);
  client_out_.Append(reply.data(), reply.size());
  closing_ = true;
  codec_.ServerReset();  // reports the exchange (Done)
}

// An attempt of the oldest request failed: send it again when its retry policy says so. True
// when a retry is under way (the old upstream dropped).
bool HttpOutbound::MaybeRetry(Routed& r, const traffic::AttemptResult& result) {
  if (!r.retry || !r.replay_ok || r.committed || !r.backend || !r.backend_port) return false;
  if (&r == &routed_.back() && codec_.InRequest()) return false;  // not all of it was sent
  Outbound& ob = w_->outbound();
  const auto now = SteadyClock::now();
  const traffic::RetryState::Decision d = r.retry->OnAttempt(result, now, ob.Draw());
  using A = traffic::RetryState::Decision::Action;
  if (d.action == A::kLimitExceeded) r.flags = "URX";
  if (d.action != A::kDone && d.action != A::kRetry) {
    w_->metrics().Retry(d.action == A::kLimitExceeded     ? "limit_exceeded"
                        : d.action == A::kBudgetExhausted ? "budget_exhausted"
                                                          : "overflow");
  }
  if (d.action != A::kRetry) return false;
  Upstream& old = *ups_[r.up];
  const std::string old_endpoint = old.endpoint;
  ReportAttempt(r, old_endpoint,
                result.kind == traffic::AttemptResult::Kind::kResponse ? result.status : 0);
  ob.balancer().Finished(old_endpoint, /*failed=*/true, now);
  DropUpstream(old);
  r.head.clear();
  traffic::CircuitBreaker* breaker = r.backend_traffic ? r.backend_traffic->breaker.get() : nullptr;
  const Workload* dst =
      ChooseEndpoint(*r.snap, *r.backend,
                     r.backend_traffic ? r.backend_traffic->outlier.get() : nullptr, old_endpoint);
  Target t;
  t.svc = r.backend;
  t.port = r.backend_port;
  Upstream* u = dst ? UpstreamFor(*r.snap, *dst, t, breaker) : nullptr;
  if (!u) {
    w_->metrics().Retry("no_upstream");
    return false;  // answered with the failure at hand
  }
  w_->metrics().Retry("retried");
  ob.balancer().Started(dst->uid, now);
  r.up = u->idx;
  u->busy = true;
  u->resp_bytes = 0;
  ++u->requests;
  u->out.Append(r.replay.data(), r.replay.size());
  if (d.backoff_ms) Hold(*u, d.backoff_ms);
  if (r.retry->spec().per_try_timeout_ms)
    r.try_deadline = now + std::chrono::milliseconds(r.retry->spec().per_try_timeout_ms);
  ArmTimer(r);
  return true;
}

// Response bytes of the oldest request while its head is held. True with the bytes to forward
// in *out once the head is complete and the attempt stands (modifiers applied); false while
// the head is incomplete or when the attempt was retried (the upstream is then dropped).
bool HttpOutbound::HoldHead(Routed& r, std::string* out) {
  const size_t end = r.head.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (r.head.size() <= kMaxHeldHead) return false;
    r.hold = false;  // no head in sight: let the codec judge the bytes
    *out = std::move(r.head);
    return true;
  }
  http::response_parser<http::empty_body> p;
  p.eager(false);
  p.header_limit(kMaxHeldHead);
  boost::system::error_code ec;
  p.put(boost::asio::buffer(r.head.data(), end + 4), ec);
  if (ec || !p.is_header_done() || p.get().result_int() < 200) {
    r.hold = false;  // not a head to decide on (an interim 1xx, or bad): forwarded as it is
    *out = std::move(r.head);
    return true;
  }
  const auto& h = p.get();
  traffic::AttemptResult res;
  res.status = static_cast<uint16_t>(h.result_int());
  if (auto g = h.find("grpc-status"); g != h.end()) {
    int v = -1;
    if (absl::SimpleAtoi(View(g->value()), &v)) res.grpc_status = v;
  }
  if (MaybeRetry(r, res)) return false;
  r.hold = false;
  if (r.response_mods[0] || r.response_mods[1]) {
    *out = RebuildResponseHead(h.base(), r.response_mods);
    out->append(r.head, end + 4, std::string::npos);
    r.head.clear();
  } else {
    *out = std::move(r.head);
  }
  return true;
}

// The upstream's bytes wait `ms` before they are written.
void HttpOutbound::Hold(Upstream& u, uint64_t ms) {
  u.held = true;
  if (u.hold_timer) w_->loop().CancelTimer(u.hold_timer);
  u.hold_timer = w_->loop().AddTimer(std::chrono::milliseconds(ms), [this, idx = u.idx] {
    Upstream& x = *ups_[idx];
    x.hold_timer = 0;
    x.held = false;
    if (closed_ || x.ended) return;
    Flush();
    if (!closed_) UpdateInterest();
  });
}

// Forgets an upstream (closing it): no event, timer, byte or breaker slot of it remains.
void HttpOutbound::DropUpstream(Upstream& u) {
  u.ended = true;
  if (u.registered) w_->loop().Remove(u.fd.get());
  u.registered = false;
  if (u.hold_timer) w_->loop().CancelTimer(u.hold_timer);
  u.hold_timer = 0;
  u.held = false;
  u.fd.reset();
  u.out.Clear();
  u.conn_slot.reset();
}

// An attempt's result for outlier detection (`status` 0: ztunnel's own failure: reset, connect
// failure or timeout).
void HttpOutbound::ReportAttempt(const Routed& r, std::string_view endpoint, uint16_t status) {
  traffic::OutlierDetector* od = r.backend_traffic ? r.backend_traffic->outlier.get() : nullptr;
  if (!od) return;
  od->Report(endpoint,
             status ? traffic::OutlierDetector::Classify(status)
                    : traffic::OutlierDetector::Outcome::kLocalFailure,
             SteadyClock::now());
}

// RequestMirror: once the request is done, a copy of its bytes goes to an endpoint of each
// mirror Service, fire and forget: written whole into a new upstream whose end ztunnel then
// closes (the upstream flow delivers the request and drops the response). Not mirrored (counted
// as "dropped"): a request over kMaxReplay, one without a ready endpoint, or an upstream that
// cannot take the bytes at once.
void HttpOutbound::SendMirrors(const Routed& r) {
  for (const config::HttpRequestMirror* m : r.mirrors) {
    bool sent = false;
    if (r.replay_ok && !r.replay.empty()) {
      if (UniqueFd fd = OpenMirror(*r.snap, *m); fd.valid()) {
        ssize_t n = send(fd.get(), r.replay.data(), r.replay.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        sent = n == static_cast<ssize_t>(r.replay.size());
      }
    }
    w_->metrics().Mirror(sent ? "sent" : "dropped");
  }
}

UniqueFd HttpOutbound::OpenMirror(const ConfigSnapshot& snap, const config::HttpRequestMirror& m) {
  const Service* svc = snap.FindServiceByKey(m.service);
  const ServicePort* port = svc ? svc->FindPort(m.port ? m.port : orig_.port) : nullptr;
  const Workload* dst = port ? ChooseEndpoint(snap, *svc) : nullptr;
  const Workload* src = snap.FindWorkloadByUid(pod_->uid);
  if (!dst || !src) return UniqueFd();
  FlowInfo info = info_;
  info.dst = SockAddr{AddressLike(*dst, orig_.ip), port->target_port};
  FillServiceLabels(info.labels.mut(), svc);
  FillDestinationLabels(info.labels.mut(), dst, dst->identity());
  info.labels.mut().connection_security_policy = dst->in_mesh() ? "mutual_tls" : "unknown";
  auto fd = w_->outbound().OpenUpstream(pod_, snap, *src, *dst, std::move(info));
  if (!fd.ok()) return UniqueFd();
  return std::move(*fd);
}

// HTTP/2: the codec kept a copy of the stream's request (its header block as sent upstream, its
// body up to kMaxReplay, its trailers) and hands it over once the request is whole: each mirror
// gets it as one HTTP/2 request on a connection of its own, sent and answered in the worker's
// MirrorSender, whatever becomes of this stream or connection. "dropped": a body over the
// bound, a mirror Service without a ready endpoint, or the worker's mirrors at their limit.
void HttpOutbound::SendMirrorsH2(const HttpRequestAttributes& req,
                                 const l7::Http2ServerConnection::MirrorCopy* copy) {
  auto it = h2_routes_.find(&req);
  if (it == h2_routes_.end()) return;
  H2Route& route = it->second;
  const std::vector<const config::HttpRequestMirror*> mirrors = std::move(route.mirrors);
  route.mirrors.clear();
  MirrorSender& sender = w_->outbound().mirrors();
  size_t bytes = 0;
  if (copy) {
    bytes = copy->body.size();
    for (const auto* fields : {&copy->head, &copy->trailers})
      for (const auto& [n, v] : *fields) bytes += n.size() + v.size();
  }
  for (const config::HttpRequestMirror* m : mirrors) {
    bool sent = false;
    if (copy && route.snap && sender.Admit(bytes)) {
      if (UniqueFd fd = OpenMirror(*route.snap, *m); fd.valid()) {
        sent = sender.Send(std::move(fd),
                           std::make_unique<l7::Http2MirrorRequest>(
                               copy->head, std::string(copy->body), copy->trailers),
                           bytes, std::chrono::milliseconds(route.mirror_timeout_ms));
      }
    }
    w_->metrics().Mirror(sent ? "sent" : "dropped");
  }
}

// ---- HTTP/2 streams -------------------------------------------------------------------------

// The codec asks whether an attempt of a stream is to be sent again (l7/http2_server.h).
bool HttpOutbound::RetryH2(const HttpRequestAttributes& req, int upstream, int status,
                           int grpc_status) {
  auto it = h2_routes_.find(&req);
  if (it == h2_routes_.end() || !it->second.retry) return false;
  H2Route& route = it->second;
  const Upstream* old =
      upstream >= 0 && static_cast<size_t>(upstream) < ups_.size() ? ups_[upstream].get() : nullptr;
  traffic::AttemptResult res;
  if (status > 0) {
    res.status = static_cast<uint16_t>(status);
    res.grpc_status = grpc_status;
  } else {
    res.kind = h2_try_timeout_        ? traffic::AttemptResult::Kind::kTimeout
               : old && old->answered ? traffic::AttemptResult::Kind::kReset
                                      : traffic::AttemptResult::Kind::kConnectFailure;
  }
  const auto now = SteadyClock::now();
  const auto d = route.retry->OnAttempt(res, now, w_->outbound().Draw());
  using A = traffic::RetryState::Decision::Action;
  if (d.action == A::kLimitExceeded) route.final_flags = "URX";
  if (d.action != A::kRetry) {
    if (d.action != A::kDone) {
      w_->metrics().Retry(d.action == A::kLimitExceeded     ? "limit_exceeded"
                          : d.action == A::kBudgetExhausted ? "budget_exhausted"
                                                            : "overflow");
    }
    return false;
  }
  w_->metrics().Retry("retried");
  if (old) {
    route.avoid = old->endpoint;
    w_->outbound().balancer().Finished(old->endpoint, /*failed=*/true, now);
    if (route.traffic && route.traffic->outlier) {
      route.traffic->outlier->Report(
          old->endpoint,
          status > 0 ? traffic::OutlierDetector::Classify(static_cast<uint16_t>(status))
                     : traffic::OutlierDetector::Outcome::kLocalFailure,
          now);
    }
  }
  // Envoy's jittered back-off: the codec's next routing of it waits (DeferH2); the per-try
  // timeout counts from when it goes.
  route.defer_ms = d.backoff_ms;
  if (route.retry->spec().per_try_timeout_ms) {
    route.try_deadline = now + std::chrono::milliseconds(d.backoff_ms) +
                         std::chrono::milliseconds(route.retry->spec().per_try_timeout_ms);
    ArmH2Timer(&req, route);
  }
  return true;
}

size_t HttpOutbound::DeferH2(const HttpRequestAttributes* req, H2Route& route) {
  const uint64_t ms = std::exchange(route.defer_ms, 0);
  if (route.defer_timer) w_->loop().CancelTimer(route.defer_timer);
  route.defer_timer =
      w_->loop().AddTimer(std::chrono::milliseconds(ms), [this, req, id = route.id] {
        auto it = h2_routes_.find(req);
        if (closed_ || !h2_ || it == h2_routes_.end() || it->second.id != id) return;
        it->second.defer_timer = 0;
        h2_->RouteNow(*req, ToUp(), ToClient());
        if (AfterH2()) Flush();
        if (!closed_) UpdateInterest();
      });
  return l7::Http2ServerConnection::kDefer;
}

void HttpOutbound::ArmH2Timer(const HttpRequestAttributes* req, H2Route& route) {
  if (route.timer) w_->loop().CancelTimer(route.timer);
  route.timer = 0;
  SteadyClock::time_point at = route.deadline;
  if (route.try_deadline != SteadyClock::time_point{} &&
      (at == SteadyClock::time_point{} || route.try_deadline < at))
    at = route.try_deadline;
  if (at == SteadyClock::time_point{}) return;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(at - SteadyClock::now());
  route.timer = w_->loop().AddTimer(std::max(ms, std::chrono::milliseconds(0)),
                                    [this, req, id = route.id] { OnH2Timer(req, id); });
}

void HttpOutbound::OnH2Timer(const HttpRequestAttributes* req, uint64_t id) {
  auto it = h2_routes_.find(req);
  if (closed_ || !h2_ || it == h2_routes_.end() || it->second.id != id) return;
  H2Route& route = it->second;
  route.timer = 0;
  const auto now = SteadyClock::now();
  const bool overall = route.deadline != SteadyClock::time_point{} && now >= route.deadline;
  const bool per_try = route.try_deadline != SteadyClock::time_point{} && now >= route.try_deadline;
  if (!overall && !per_try) {
    ArmH2Timer(req, route);
    return;
  }
  if (!overall && h2_->ResponseStarted(*req)) {  // a per-try timeout ends at the response head
    route.try_deadline = {};
    ArmH2Timer(req, route);
    return;
  }
  bool retried = false;
  if (!overall) {
    route.try_deadline = {};
    h2_try_timeout_ = true;
    retried = h2_->RetryStream(*req, ToUp(), ToClient());
    h2_try_timeout_ = false;
  }
  if (!retried) {
    if (auto again = h2_routes_.find(req); again != h2_routes_.end()) again->second.flags = "UT";
    h2_->TimeOutStream(*req, l7::LocalReply{504, std::string(kUpstreamTimeout)}, ToUp(),
                       ToClient());
  }
  if (AfterH2()) Flush();
  if (!closed_) UpdateInterest();
}

}  // namespace weft::ztunnel
