#include "ztunnel/proxy/http_outbound.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "ztunnel/l7/app_protocol.h"
#include "ztunnel/l7/http2_server.h"
#include "ztunnel/proxy/http_inbound.h"
#include "ztunnel/proxy/outbound.h"
#include "ztunnel/proxy/tap.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/traffic/filters.h"
#include "ztunnel/traffic/plan.h"

namespace weft::ztunnel {

namespace {

// The destination's record of a same-node upstream's requests (see Upstream::dst_series).
std::unique_ptr<RequestSeriesCache> SameNodeTwin(const TcpLabels& l) {
  if (l.connection_security_policy != "same_node") return nullptr;
  TcpLabels d = l;
  d.reporter = "destination";
  return std::make_unique<RequestSeriesCache>(std::move(d));
}

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxOutstanding = 16;  // pipelined requests read ahead of their responses
// Request bytes kept for a retry or a RequestMirror copy (HTTP/2: the body's).
constexpr size_t kMaxReplayBytes = 64 * 1024;
constexpr const char* kConnectFailure =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
constexpr const char* kConnectionTermination =
    "upstream connect error or disconnect/reset before headers. reset reason: connection "
    "termination";

bool HasHeader(const HttpRequestAttributes& req, std::string_view name) {
  for (const auto& [n, v] : req.headers)
    if (n == name) return true;
  return false;
}

// Could `p` be the start of an HTTP/1.1 request line ("METHOD SP") or of the HTTP/2 preface?
bool LooksLikeHttp(std::string_view p) {
  if (p.empty()) return false;
  size_t i = 0;
  for (; i < p.size() && i < 24; ++i) {
    const char c = p[i];
    if (c == ' ') return i > 0;
    if (!((c >= 'A' && c <= 'Z') || c == '-' || c == '_')) return false;
  }
  return true;  // a method token so far
}

std::string LocalReplyBytes(int status, std::string_view reason, std::string_view body) {
  return absl::StrFormat(
      "HTTP/1.1 %d %s\r\ncontent-length: %d\r\ncontent-type: text/plain\r\nconnection: "
      "close\r\n\r\n%s",
      status, reason, body.size(), body);
}

}  // namespace

HttpOutbound::HttpOutbound(Worker* w, FlowInfo info, UniqueFd client, std::shared_ptr<Pod> pod,
                           SockAddr orig)
    : Flow(w, std::move(info)),
      pod_(std::move(pod)),
      orig_(orig),
      client_(std::move(client)),
      codec_(
          l7::Http1Limits{}, [this](HttpRequestAttributes& r) { return Route(r); },
          [this](const l7::Exchange& ex) { Done(ex); }),
      local_(*info_.labels) {}

HttpOutbound::~HttpOutbound() = default;

// The HTTP/2 codec's router mode, a stream per request (prior-knowledge h2c, or after an
// HTTP/1.1 upgrade).
void HttpOutbound::StartH2() {
  h2_ = std::make_unique<l7::Http2ServerConnection>(
      l7::Http2Limits{}, [this](HttpRequestAttributes& r) { return GateH2(r); },
      [this](const l7::Exchange& ex) { DoneH2(ex); },
      [this](const HttpRequestAttributes& r) { return RouteH2(r); });
  h2_->SetRetryCheck([this](const HttpRequestAttributes& r, int upstream, int status, int grpc) {
    return RetryH2(r, upstream, status, grpc);
  });
  h2_->SetResponseEdit([this](const HttpRequestAttributes& r,
                              std::vector<std::pair<std::string, std::string>>* fields) {
    EditH2Response(r, fields);
  });
  h2_->SetMirror(
      [this](const HttpRequestAttributes& r) {
        auto it = h2_routes_.find(&r);
        return it != h2_routes_.end() && !it->second.mirrors.empty();
      },
      [this](const HttpRequestAttributes& r, const l7::Http2ServerConnection::MirrorCopy* copy) {
        SendMirrorsH2(r, copy);
      },
      kMaxReplayBytes);
  // Its upstreams are the worker's, shared with the pod's other HTTP/2 client connections.
  H2UpstreamPool& pool = w_->outbound().h2_pool();
  h2_->SetShared(pool.hub(), ToClient(), [this, &pool] { pool.Wake(this); });
}

// Work on a shared upstream (another connection's, or its bytes) touched this connection: its
// client's bytes out, its state checked.
void HttpOutbound::OnH2Wake() {
  if (closed_ || !h2_) return;
  if (!AfterH2()) return;
  Flush();
  if (!closed_) UpdateInterest();
}

// The client's HTTP/1.1 h2c upgrade was taken by the codec: answer 101 and go on in HTTP/2 with
// the request as stream 1. False when the flow was closed.
bool HttpOutbound::UpgradeToH2() {
  std::optional<l7::Http1ServerConnection::H2cUpgrade> up = codec_.TakeH2cUpgrade();
  constexpr std::string_view kSwitch =
      "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n";
  StartH2();
  client_out_.Append(kSwitch.data(), kSwitch.size());
  if (!up || !h2_->AcceptUpgrade(up->settings, up->request, up->head_bytes, ToUp(), ToClient())) {
    info_.error = "HTTP: an h2c upgrade with settings nghttp2 refused";
    Close(/*reset=*/true);
    return false;
  }
  if (!up->rest.empty()) h2_->FromClient(up->rest, ToUp(), ToClient());
  return AfterH2();
}

void HttpOutbound::Start() {
  // An h2c upgrade is taken where upstreams speak HTTP/2 (the port says so), else stripped.
  auto snap = w_->shared().config->Get();
  const Service* svc = snap->FindServiceByAddress(orig_.ip);
  const ServicePort* port = svc ? svc->FindPort(orig_.port) : nullptr;
  if (port && l7::IsHttp2Port(port->app_protocol, port->name)) codec_.AcceptH2cUpgrade();
  client_interest_ = EPOLLIN;
  if (auto st = w_->loop().Add(client_.get(), client_interest_, this); !st.ok()) {
    Abort("cannot watch the client: " + st.ToString());
    return;
  }
  // An HTTP client speaks first. One that stays silent may be waiting for a server-first
  // protocol behind a port declared HTTP by mistake: it gets L4 after kDetectTimeout.
  detect_timer_ = w_->loop().AddTimer(kDetectTimeout, [this] {
    detect_timer_ = 0;
    if (sniffing_ && !closed_) FallBackToL4("no_client_bytes_l4_fallback");
  });
}

void HttpOutbound::OnEvents(uint32_t events) {
  if (closed_) return;
  if (sniffing_) {
    Sniff();
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadClient();
  if (!closed_ && (events & EPOLLOUT)) Flush();
  if (!closed_) UpdateInterest();
}

// The first bytes decide: HTTP, or this connection falls back to L4 (nothing consumed yet).
void HttpOutbound::Sniff() {
  char buf[24];
  ssize_t n = recv(client_.get(), buf, sizeof buf, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    Close(/*reset=*/n < 0);
    return;
  }
  std::string_view p(buf, static_cast<size_t>(n));
  if (l7::kHttp2Preface.substr(0, p.size()) == p) {
    StartH2();  // prior-knowledge h2c (gRPC)
  } else if (!LooksLikeHttp(p)) {
    FallBackToL4("not_http_l4_fallback");
    return;
  }
  sniffing_ = false;
  CancelDetectTimer();
  ReadClient();
  if (!closed_) UpdateInterest();
}

void HttpOutbound::CancelDetectTimer() {
  if (detect_timer_) w_->loop().CancelTimer(detect_timer_);
  detect_timer_ = 0;
}

void HttpOutbound::FallBackToL4(std::string_view kind) {
  CancelDetectTimer();
  w_->metrics().BadInput("http", std::string(kind));
  LOG_DEBUG("outbound", "not HTTP on an HTTP service port: this connection stays L4",
            {{"pod", pod_->uid}, {"dst", orig_.ToString()}, {"why", std::string(kind)}});
  w_->loop().Remove(client_.get());
  closed_ = true;
  w_->outbound().Dispatch(pod_, std::move(client_), orig_, /*http=*/false);
  w_->ReleaseFlow(this);
}

void HttpOutbound::ReadClient() {
  // A read shorter than asked emptied the socket: no second recv to see EAGAIN (one syscall per
  // request saved); the loop is level-triggered, so bytes or a FIN that come later are reported.
  bool emptied = false;
  while (!closed_ && !client_eof_ && !closing_ && !emptied) {
    for (const auto& u : ups_)
      if (!u->out.empty()) return;  // back-pressure: an upstream has not taken its bytes
    if (!h2_ && routed_.size() >= kMaxOutstanding) return;
    ssize_t n = recv(client_.get(), w_->scratch(), kReadChunk, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    emptied = n > 0 && static_cast<size_t>(n) < kReadChunk;
    if (n < 0) {
      info_.error = std::string("client: ") + std::strerror(errno);
      Close(/*reset=*/true);
      return;
    }
    if (n == 0) {
      client_eof_ = true;
      if (tunnel_ && !tunnel_->ended) shutdown(tunnel_->fd.get(), SHUT_WR);  // relay the FIN
      MaybeClose();
      return;
    }
    AddSent(static_cast<uint64_t>(n));
    const std::string_view in(w_->scratch(), static_cast<size_t>(n));
    if (h2_) {
      h2_->FromClient(in, ToUp(), ToClient());
      if (!AfterH2()) return;
      Flush();
      continue;
    }
    codec_.FromClient(in, [this](std::string_view b) { ToUpstream(b); });
    if (codec_.state() == l7::Http1ServerConnection::State::kH2cUpgrade) {
      if (!UpgradeToH2()) return;
      Flush();
      continue;
    }
    if (std::string r = codec_.TakeLocalReply(); !r.empty()) {
      client_out_.Append(r.data(), r.size());
      closing_ = true;
    }
    if (codec_.state() == l7::Http1ServerConnection::State::kBroken) {
      info_.error = "HTTP: " + codec_.error();
      Close(/*reset=*/true);
      return;
    }
    Flush();
  }
}

void HttpOutbound::ToUpstream(std::string_view bytes) {
  Upstream* u = tunnel_ ? tunnel_ : cur_;
  if (!tunnel_ && !routed_.empty()) {  // kept for a retry (issue 15)
    Routed& r = routed_.back();
    if ((r.retry || !r.mirrors.empty()) && r.replay_ok && u && u->idx == r.up) {
      if (r.replay.size() + bytes.size() > kMaxReplayBytes) {
        r.replay_ok = false;
        std::string().swap(r.replay);
      } else {
        r.replay.append(bytes);
      }
    }
  }
  if (!u || u->ended) return;  // its upstream failed: the exchange is answered or reported
  u->out.Append(bytes.data(), bytes.size());
}

// Writes what each side holds; an upstream that fails is ended.
void HttpOutbound::Flush() {
  if (h2_) w_->outbound().h2_pool().Settle();  // shared upstreams' frames, woken connections
  if (closed_) return;
  for (const auto& u : ups_) {
    if (u->out.empty() || u->ended || u->held) continue;
    if (!FlushTo(u->fd.get(), u->out) && errno != EAGAIN) UpstreamEnded(*u);
    if (closed_) return;
  }
  if (!client_out_.empty() && !FlushTo(client_.get(), client_out_) && errno != EAGAIN) {
    info_.error = std::string("client: ") + std::strerror(errno);
    Close(/*reset=*/true);
    return;
  }
  MaybeClose();
}

void HttpOutbound::OnUpstream(Upstream& u, uint32_t events) {
  if (closed_ || u.ended) return;
  if (events & EPOLLOUT) Flush();
  if (closed_ || u.ended) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    const bool readable =
        &u == tunnel_ || !u.busy || (!routed_.empty() && routed_.front().up == u.idx);
    if (readable) {
      ReadUpstream(u);
    } else if (events & (EPOLLHUP | EPOLLERR)) {
      // Its response (if any) waits in the socket: read when its turn comes; stop the events.
      u.hup = true;
      w_->loop().Remove(u.fd.get());
      u.registered = false;
    }
  }
  if (!closed_) {
    Flush();
    if (!closed_) UpdateInterest();
  }
}

void HttpOutbound::ReadUpstream(Upstream& u) {
  bool emptied = false;  // as in ReadClient
  while (!closed_ && !u.ended && client_out_.empty() && !emptied) {
    ssize_t n = recv(u.fd.get(), w_->scratch(), kReadChunk, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // Not after a hang-up: the upstream is no longer watched (ReadClient's reason does not hold),
    // so what it sent is read now, to its EOF or error.
    emptied = !u.hup && n > 0 && static_cast<size_t>(n) < kReadChunk;
    if (n <= 0) {
      UpstreamEnded(u);
      return;
    }
    if (h2_) {
      u.answered = true;
      h2_->FromUpstream(u.idx, std::string_view(w_->scratch(), static_cast<size_t>(n)), ToUp(),
                        ToClient());
      if (!AfterH2()) return;
      if (!FlushTo(client_.get(), client_out_) && errno != EAGAIN) {
        Close(/*reset=*/true);
        return;
      }
      continue;
    }
    if (!u.busy && &u != tunnel_) {  // bytes nobody asked for: drop the upstream
      LOG_DEBUG("outbound", "an idle HTTP upstream sent bytes; dropped", {{"upstream", u.addr}});
      UpstreamEnded(u);
      return;
    }
    u.answered = true;
    u.resp_bytes += static_cast<uint64_t>(n);
    std::string_view bytes(w_->scratch(), static_cast<size_t>(n));
    AddReceived(static_cast<uint64_t>(n));
    Routed* front = &u != tunnel_ && !routed_.empty() && routed_.front().up == u.idx
                        ? &routed_.front()
                        : nullptr;
    std::string released;  // a held response head, once it stands (issue 15)
    if (front && front->hold) {
      front->head.append(bytes);
      if (!HoldHead(*front, &released)) continue;  // incomplete, or retried (u dropped)
      bytes = released;
    }
    if (front) front->committed = true;
    client_out_.Append(bytes.data(), bytes.size());
    // Client bytes held for a protocol switch go to the upstream that answered it.
    Upstream* keep = cur_;
    cur_ = &u;
    codec_.FromServer(bytes, [this](std::string_view b) { ToUpstream(b); });
    if (!tunnel_) cur_ = keep;
    if (codec_.state() == l7::Http1ServerConnection::State::kPassthrough) tunnel_ = &u;
    if (std::string r = codec_.TakeLocalReply(); !r.empty()) {  // released after this response
      client_out_.Append(r.data(), r.size());
      closing_ = true;
    }
    if (codec_.state() == l7::Http1ServerConnection::State::kBroken) {
      info_.error = "HTTP from upstream " + u.addr + ": " + codec_.error();
      Close(/*reset=*/true);
      return;
    }
    if (!FlushTo(client_.get(), client_out_) && errno != EAGAIN) {
      Close(/*reset=*/true);
      return;
    }
  }
}

// An upstream closed or failed. Idle: forgotten. Carrying the oldest request: a response it
// delimited by closing ends there; one it never began is answered here with Envoy's 503. Either
// way the client connection closes once its bytes are out (the upstream's state is unknown).
void HttpOutbound::UpstreamEnded(Upstream& u) {
  if (u.ended) return;
  DropUpstream(u);
  if (h2_) {
    h2_->UpstreamEof(u.idx, ToUp(), ToClient());  // its streams: 503 or reset; others go on
    AfterH2();
    return;
  }
  if (&u == tunnel_) {
    closing_ = true;
    codec_.ServerEof();
    MaybeClose();
    return;
  }
  if (!u.busy) return;
  const bool front = !routed_.empty() && routed_.front().up == u.idx;
  if (!front) return;  // handled when its turn comes (see UpdateInterest)
  Routed& r = routed_.front();
  if (u.resp_bytes > 0 && !r.hold) {
    closing_ = true;
    codec_.ServerEof();  // a close-delimited response ends, any other is cut short ("UC")
  } else {
    traffic::AttemptResult res;
    res.kind = u.answered ? traffic::AttemptResult::Kind::kReset
                          : traffic::AttemptResult::Kind::kConnectFailure;
    if (MaybeRetry(r, res)) return;
    FailFront(503, u.answered ? kConnectionTermination : kConnectFailure, u.answered ? "UC" : "UF");
  }
  MaybeClose();
}

// The gate: trace context, then an endpoint and an upstream for this request.
// W3C Trace Context when the request has none; a B3 trace id is kept (a 64-bit one left-padded,
// as W3C allows). The sampled flag is clear: ztunnel records no span, the application's sampler
// decides. And an x-request-id. Returns the request's trace id.
std::string HttpOutbound::AddTraceContext(HttpRequestAttributes& req) {
  Outbound& ob = w_->outbound();
  std::string trace_id = TraceId(req);
  if (!HasHeader(req, "traceparent")) {
    if (trace_id.empty()) trace_id = ob.RandomHex(32);
    if (trace_id.size() == 16) trace_id.insert(0, 16, '0');
    std::string tp;
    tp.reserve(55);
    absl::StrAppend(&tp, "00-", trace_id, "-", ob.RandomHex(16), "-00");
    req.add_headers.emplace_back("traceparent", std::move(tp));
  }
  if (!HasHeader(req, "x-request-id")) req.add_headers.emplace_back("x-request-id", ob.NewUuid());
  return trace_id;
}

// The endpoint of `svc` for the next request (the balancer over its ready endpoints in the
// current snapshot), or null when there is none.
const Workload* HttpOutbound::ChooseEndpoint(const ConfigSnapshot& snap, const Service& svc,
                                             traffic::OutlierDetector* outlier,
                                             std::string_view avoid) {
  std::vector<const Workload*> eps;
  std::vector<std::string_view> keys;
  eps.reserve(svc.ready_endpoint_uids.size());  // no regrowth per request
  keys.reserve(svc.ready_endpoint_uids.size());
  const auto now = Balancer::Clock::now();
  if (outlier) outlier->Tick(now);
  for (int pass = 0; pass < 3 && eps.empty(); ++pass) {
    // Pass 0: neither ejected nor `avoid`; 1: not ejected; 2: any (every endpoint is ejected).
    for (const auto& uid : svc.ready_endpoint_uids) {
      const Workload* e = snap.FindWorkloadByUid(uid);
      if (!e || !e->running || e->addresses.empty()) continue;
      if (pass < 2 && outlier && outlier->IsEjected(uid)) continue;
      if (pass < 1 && uid == avoid) continue;
      eps.push_back(e);
      keys.push_back(uid);
    }
  }
  if (eps.empty()) return nullptr;
  return eps[w_->outbound().balancer().Choose(keys, now)];
}

// The Service's routes and traffic policy for one request (issue 15, ztunnel/traffic/plan.h):
// the backend Service and port to send it to, with the rule's filters applied to `req`, or the
// local reply the plan answers it with (its response flags in *flags, "-" for none).
std::variant<HttpOutbound::Target, l7::LocalReply> HttpOutbound::PlanRoute(
    const SnapshotPtr& snap, HttpRequestAttributes& req, std::string* flags) {
  const Service* svc = snap->FindServiceByAddress(orig_.ip);
  if (!svc) return Target{};
  if (snap->http_routes().empty() && snap->traffic_policies().empty()) {
    // No traffic configuration anywhere (the common case): the plan would be the called Service
    // and port, unchanged; skip its copies and the target normalisation on this hot path.
    *flags = "-";
    Target t{svc, svc->FindPort(orig_.port)};
    if (!t.port) return l7::LocalReply{500, ""};
    return t;
  }
  Outbound& ob = w_->outbound();
  const Workload* src = snap->FindWorkloadByUid(pod_->uid);
  RequestTarget norm = NormalizeRequestTarget(req.method, req.path);
  const std::string path =
      norm.kind == RequestTarget::Kind::kPath ? norm.path + norm.query : req.path;
  traffic::PlanInput in{src ? std::string_view(src->ns) : std::string_view(), req.method, path,
                        req.authority, std::move(req.headers)};
  traffic::RequestPlan plan = traffic::PlanRequest(ob.RouterFor(snap), *svc, orig_.port,
                                                   std::move(in), [&ob] { return ob.Draw(); });
  req.headers = std::move(plan.headers);
  *flags = plan.response_flags.empty() ? "-" : plan.response_flags;
  if (plan.action == traffic::RequestPlan::Action::kLocalReply) {
    l7::LocalReply r{plan.status, plan.status == 404            ? ""
                                  : plan.response_flags == "FI" ? "fault filter abort"
                                                                : ""};
    if (!plan.location.empty()) r.headers.emplace_back("location", plan.location);
    r.grpc_status = plan.grpc_status;
    return r;
  }
  if (plan.selection.kind == traffic::RouteSelection::Kind::kMatched) {
    req.rewrite_head = true;  // the rule's filters may have changed the head
    req.authority = std::move(plan.authority);
    if (norm.kind == RequestTarget::Kind::kPath) req.path = std::move(plan.path);
  }
  Target t;
  t.svc = plan.backend_service.empty() ? svc : snap->FindServiceByKey(plan.backend_service);
  t.port = t.svc ? t.svc->FindPort(plan.backend_port ? plan.backend_port : orig_.port) : nullptr;
  if (!t.svc || !t.port) return l7::LocalReply{500, ""};  // cannot happen: weftd resolved it
  t.delay_ms = plan.delay_ms;
  t.timeout_ms = plan.request_timeout_ms;
  t.retry = std::move(plan.retry);
  t.response_mods[0] = plan.rule_response_headers;
  t.response_mods[1] = plan.backend_response_headers;
  t.mirrors = std::move(plan.mirrors);
  return t;
}

std::optional<l7::LocalReply> HttpOutbound::Route(HttpRequestAttributes& req) {
  std::string trace_id = AddTraceContext(req);
  auto snap = w_->shared().config->Get();
  auto planned = PlanRoute(snap, req, &gate_flags_);
  if (auto* reply = std::get_if<l7::LocalReply>(&planned)) return std::move(*reply);
  Routed r;
  r.id = next_routed_id_++;
  r.trace_id = std::move(trace_id);
  if (auto reply = Admit(r, snap, std::get<Target>(planned), req)) return reply;
  gate_flags_.clear();
  routed_.push_back(std::move(r));
  ArmTimer(routed_.back());
  return std::nullopt;
}

// An idle upstream of this connection to `dst`, else a new one.
HttpOutbound::Upstream* HttpOutbound::UpstreamFor(const ConfigSnapshot& snap, const Workload& dst,
                                                  const Target& t, traffic::CircuitBreaker* breaker,
                                                  bool* overflow) {
  const ServicePort* sp = t.port;
  // The pool's key: the endpoint, its port, and the Service it is reached as (metrics labels).
  const std::string key =
      absl::StrCat(dst.uid, ":", sp->target_port, "@", t.svc->ns, "/", t.svc->name);
  if (h2_) return SharedH2For(snap, dst, t, nullptr, overflow);
  for (const auto& u : ups_) {
    if (u->ended || u->key != key) continue;
    if (h2_ ? h2_->UpstreamUsable(u->idx) : !u->busy) return u.get();  // HTTP/2: multiplexed
  }
  // A new upstream connection (an idle pooled one counts as new to this connection) needs the
  // backend's maxConnections slot for the endpoint.
  std::optional<traffic::CircuitBreaker::Slot> slot;
  if (breaker && !(slot = breaker->TryConnection(dst.uid))) {
    if (overflow) *overflow = true;
    return nullptr;
  }
  if (!h2_) {  // an idle HTTP/1.1 upstream an earlier connection of this pod left
    if (auto idle = w_->outbound().upstream_pool().Take(pod_->uid, key)) {
      auto u = std::make_unique<Upstream>();
      u->conn_slot = std::move(slot);
      u->o = this;
      u->idx = ups_.size();
      u->fd = std::move(idle->fd);
      u->endpoint = dst.uid;
      u->key = key;
      u->addr = std::move(idle->addr);
      u->answered = true;
      u->dst_series = SameNodeTwin(idle->labels);
      u->series = std::make_unique<RequestSeriesCache>(std::move(idle->labels));
      ups_.push_back(std::move(u));
      return ups_.back().get();
    }
  }
  TcpLabels labels;
  std::string addr;
  auto fd = OpenFlow(snap, dst, t, &labels, &addr);
  if (!fd.ok()) return nullptr;
  auto u = std::make_unique<Upstream>();
  u->conn_slot = std::move(slot);
  u->o = this;
  u->idx = ups_.size();
  u->fd = std::move(*fd);
  u->endpoint = dst.uid;
  u->key = key;
  u->addr = addr;
  u->dst_series = SameNodeTwin(labels);
  u->series = std::make_unique<RequestSeriesCache>(std::move(labels));
  ups_.push_back(std::move(u));
  return ups_.back().get();
}

absl::StatusOr<UniqueFd> HttpOutbound::OpenFlow(const ConfigSnapshot& snap, const Workload& dst,
                                                const Target& t, TcpLabels* labels,
                                                std::string* addr) {
  const Workload* src = snap.FindWorkloadByUid(pod_->uid);
  if (!src) return absl::NotFoundError("the source pod is not in the configuration");
  FlowInfo info = info_;  // the source record: source and Service labels
  info.dst = SockAddr{AddressLike(dst, orig_.ip), t.port->target_port};
  FillServiceLabels(info.labels.mut(), t.svc);  // a route's backend may be another Service
  FillDestinationLabels(info.labels.mut(), &dst, dst.identity());
  info.labels.mut().connection_security_policy = dst.in_mesh() ? "mutual_tls" : "unknown";
  *labels = *info.labels;
  *addr = info.dst.ToString();
  bool same_node = false;
  auto fd = w_->outbound().OpenUpstream(pod_, snap, *src, dst, std::move(info), &same_node);
  if (same_node) labels->connection_security_policy = "same_node";
  if (!fd.ok()) {
    LOG_WARN("outbound", "cannot open an HTTP upstream",
             {{"pod", pod_->uid}, {"upstream", *addr}, {"error", fd.status().ToString()}});
  }
  return fd;
}

// HTTP/2 upstreams are the worker's, shared by the pod's client connections (upstream_pool.h):
// one with room for another stream, else a new one (the backend's maxConnections permitting;
// when it refuses, a full one queues the stream, or the request overflows).
HttpOutbound::Upstream* HttpOutbound::SharedH2For(
    const ConfigSnapshot& snap, const Workload& dst, const Target& t,
    const std::shared_ptr<const traffic::ServiceTraffic>& traffic, bool* overflow) {
  H2UpstreamPool& pool = w_->outbound().h2_pool();
  traffic::CircuitBreaker* breaker = traffic ? traffic->breaker.get() : nullptr;
  const std::string key =
      absl::StrCat(dst.uid, ":", t.port->target_port, "@", t.svc->ns, "/", t.svc->name);
  const std::string pool_key = absl::StrCat(pod_->uid, "\n", key);
  std::shared_ptr<H2UpstreamPool::Conn> c = pool.Find(pool_key);
  if (!c) {
    std::optional<traffic::CircuitBreaker::Slot> slot;
    if (breaker && !(slot = breaker->TryConnection(dst.uid))) {
      c = pool.Find(pool_key, /*full_ok=*/true);
      if (!c) {
        if (overflow) *overflow = true;
        return nullptr;
      }
    } else {
      TcpLabels labels;
      std::string addr;
      auto fd = OpenFlow(snap, dst, t, &labels, &addr);
      if (!fd.ok()) return nullptr;
      c = pool.Add(pool_key, std::move(*fd), dst.uid, std::move(addr), labels);
      c->slot = std::move(slot);
      c->traffic = traffic;
      if (c->closed) return nullptr;
    }
  }
  for (const auto& u : ups_)
    if (u->h2conn == c) return u.get();
  // This connection's first stream on it: a new index naming it in the codec.
  auto u = std::make_unique<Upstream>();
  u->o = this;
  u->idx = ups_.size();
  u->endpoint = c->endpoint;
  u->key = key;
  u->addr = c->addr;
  u->series = c->series;
  u->dst_series = c->dst_series;
  u->h2conn = c;
  h2_->AttachUpstream(u->idx, c->h2);
  ups_.push_back(std::move(u));
  return ups_.back().get();
}

// The codec reports exchanges in request order; those the gate routed are routed_'s, oldest
// first. The others (local replies) never had an upstream.
void HttpOutbound::Done(const l7::Exchange& ex) {
  if (ex.local_reply) {
    std::string_view flags = gate_flags_.empty() ? ResponseFlags(ex) : gate_flags_;
    if (gate_flags_.empty() && ex.status != 503) {
      w_->metrics().BadInput("http", ex.status == 431 ? "header_too_large" : "malformed_request");
    }
    Record(ex, &local_, flags, "", TraceId(ex.request));
    return;
  }
  if (routed_.empty()) return;  // cannot happen: every exchange not answered locally was routed
  Routed r = std::move(routed_.front());
  routed_.pop_front();
  if (r.timer) w_->loop().CancelTimer(r.timer);
  Upstream& u = *ups_[r.up];
  u.busy = false;
  const auto now = Balancer::Clock::now();
  if (r.failed) {
    l7::Exchange e = ex;  // ztunnel answered it: Envoy's 503 with UF/UC, 504 with UT
    e.status = r.fail_status;
    e.local_reply = true;
    e.reason = std::string(r.fail_body);
    e.ended = l7::Exchange::End::kComplete;
    w_->outbound().balancer().Finished(u.endpoint, /*failed=*/true, now);
    ReportAttempt(r, u.endpoint, 0);
    Record(e, u.series.get(), r.flags, u.addr, r.trace_id);
    return;
  }
  w_->outbound().balancer().Finished(u.endpoint, ex.status == 0, now);
  ReportAttempt(r, u.endpoint, ex.status);
  SendMirrors(r);
  // maxRequestsPerConnection: this upstream is done once it carried that many.
  traffic::CircuitBreaker* breaker = r.backend_traffic ? r.backend_traffic->breaker.get() : nullptr;
  if (breaker && breaker->max_requests_per_connection() &&
      u.requests >= breaker->max_requests_per_connection() && !u.ended && &u != tunnel_)
    DropUpstream(u);
  Record(ex, u.series.get(), r.flags.empty() ? ResponseFlags(ex) : std::string_view(r.flags),
         u.addr, r.trace_id, u.dst_series.get());
}

void HttpOutbound::Record(const l7::Exchange& ex, RequestSeriesCache* series,
                          std::string_view flags, const std::string& upstream,
                          const std::string& trace_id, RequestSeriesCache* dst_series) {
  const double ms = std::chrono::duration<double, std::milli>(ex.end - ex.start).count();
  series->Record(w_->metrics(), ex, flags, ms);
  if (dst_series) dst_series->Record(w_->metrics(), ex, flags, ms);
  const TcpLabels& l = series->labels();
  if (w_->opts().access_log && log::Enabled(log::Level::kInfo)) {
    WriteRequestLog(
        ex, l, RequestLogFields{"outbound", flags, ms, info_.src.ToString(), upstream, trace_id});
  }
  TapBuffer* tap = w_->opts().tap.get();
  if (!tap || !tap->Active()) return;
  TapEvent e = RequestTapEvent(ex, "source", trace_id);
  e.src_workload = l.source_workload_namespace + "/" + l.source_workload;
  e.src_identity = l.source_principal == "unknown" ? "" : l.source_principal;
  if (l.destination_workload != "unknown")
    e.dst_workload = l.destination_workload_namespace + "/" + l.destination_workload;
  e.dst_identity = l.destination_principal == "unknown" ? "" : l.destination_principal;
  e.src_addr = info_.src.ToString();
  e.dst_addr = upstream;
  tap->Publish(std::move(e));
}

// Readiness wanted from each socket: the client while nothing waits for an upstream and few
// requests are ahead of their responses; upstreams while the client's queue is empty, and only
// the one whose response is due (plus idle ones, so their close is seen).
void HttpOutbound::UpdateInterest() {
  bool upstream_full = false;
  for (const auto& u : ups_) upstream_full |= !u->out.empty();
  uint32_t c = 0;
  if (!client_eof_ && !closing_ && !upstream_full && (h2_ || routed_.size() < kMaxOutstanding))
    c |= EPOLLIN;
  if (!client_out_.empty()) c |= EPOLLOUT;
  if (c != client_interest_) {
    client_interest_ = c;
    w_->loop().Modify(client_.get(), c, this);
  }
  const size_t front = routed_.empty() ? SIZE_MAX : routed_.front().up;
  for (const auto& u : ups_) {
    if (u->ended || u->h2conn) continue;  // a shared HTTP/2 one: the pool watches its socket
    // HTTP/2: every upstream is read (streams interleave; flow control bounds each).
    const bool due = h2_ || u.get() == tunnel_ || u->idx == front;
    if (due && u->hup && client_out_.empty()) {
      ReadUpstream(*u);  // its close was seen while it waited its turn
      if (closed_) return;
      continue;
    }
    uint32_t ev = 0;
    if (client_out_.empty() && (due || !u->busy)) ev |= EPOLLIN;
    if (!u->out.empty() && !u->held) ev |= EPOLLOUT;
    SetInterest(*u, ev);
  }
}

void HttpOutbound::SetInterest(Upstream& u, uint32_t ev) {
  if (u.hup || (u.registered && ev == u.interest)) return;
  if (!u.registered) {
    if (!w_->loop().Add(u.fd.get(), ev, &u).ok()) {
      UpstreamEnded(u);
      return;
    }
    u.registered = true;
  } else {
    w_->loop().Modify(u.fd.get(), ev, &u);
  }
  u.interest = ev;
}

// Done when the client has nothing more coming (it closed, or a local reply or a dead upstream
// ends the connection), every response is out and nothing is left to send.
void HttpOutbound::MaybeClose() {
  if (closed_ || !client_out_.empty()) return;
  if (tunnel_) {  // a protocol switch: relay until the upstream ends (the client's FIN is passed)
    if (tunnel_->ended) Close(false);
    return;
  }
  if (h2_) {
    if (closing_ || client_eof_) Close(false);
    return;
  }
  if (closing_ || (client_eof_ && routed_.empty())) Close(false);
}

void HttpOutbound::Close(bool reset) {
  if (closed_) return;
  closed_ = true;
  w_->outbound().h2_pool().Unwake(this);
  CancelDetectTimer();
  for (Routed& r : routed_) {
    if (r.timer) w_->loop().CancelTimer(r.timer);
    r.timer = 0;
  }
  for (const auto& u : ups_) {
    if (u->hold_timer) w_->loop().CancelTimer(u->hold_timer);
    u->hold_timer = 0;
  }
  for (auto& [req, route] : h2_routes_) {
    if (route.timer) w_->loop().CancelTimer(route.timer);
    route.timer = 0;
  }
  if (h2_) {
    h2_->Finish();  // its streams on shared upstreams are cancelled, the others' go on
  } else {
    codec_.Finish();  // requests still waiting: cut short by the client ("DC")
  }
  // HTTP/1.1 upstreams idle and clean go to this worker's pool for the pod's next connection.
  const bool keep = !reset && !h2_ && !tunnel_;
  for (const auto& u : ups_) {
    if (u->registered) w_->loop().Remove(u->fd.get());
    u->registered = false;
    if (keep && u->fd.valid() && !u->ended && !u->busy && !u->hup && !u->held && u->out.empty()) {
      w_->outbound().upstream_pool().Put(
          pod_->uid, u->key, UpstreamPool::Idle{std::move(u->fd), u->addr, u->series->labels()});
    }
    u->fd.reset();  // the upstream flow sees EOF and ends its stream
  }
  w_->loop().Remove(client_.get());
  if (reset) SetResetOnClose(client_.get());
  client_.reset();
  if (h2_) w_->outbound().h2_pool().Settle();  // the cancellations go out
  Finish();
}

// HTTP/2: the router. The endpoint as for HTTP/1.1; the upstream is this connection's HTTP/2
// connection to it (multiplexed), opened on first use.
// HTTP/2: trace context and the route's plan per stream; the backend is kept for RouteH2 (also
// called again for a stream an upstream refused).
std::optional<l7::LocalReply> HttpOutbound::GateH2(HttpRequestAttributes& r) {
  AddTraceContext(r);
  H2Route& route = h2_routes_[&r];
  const SnapshotPtr snap = w_->shared().config->Get();
  auto planned = PlanRoute(snap, r, &route.flags);
  if (auto* reply = std::get_if<l7::LocalReply>(&planned)) return std::move(*reply);
  const Target& t = std::get<Target>(planned);
  if (t.svc) route.service = absl::StrCat(t.svc->ns, "/", t.svc->name);
  if (t.port) route.port = t.port->port;
  route.flags.clear();
  // The backend's circuit breaker and outlier detector, retries, timeouts, fault delays and
  // response header modifiers (issue 15).
  route.id = next_h2_id_++;
  const auto now = std::chrono::steady_clock::now();
  traffic::CircuitBreaker* breaker = nullptr;
  if (t.svc && t.port && !snap->traffic_policies().empty()) {
    route.traffic = w_->shared().TrafficFor(route.service, route.port);
    breaker = route.traffic ? route.traffic->breaker.get() : nullptr;
    if (breaker && !(route.request_slot = breaker->TryRequest())) {
      route.flags = "UO";
      return l7::LocalReply{
          503, "upstream connect error or disconnect/reset before headers. reset reason: overflow"};
    }
    if (t.retry.attempts > 0) route.called_traffic = CalledTraffic(*snap, t, route.traffic);
  }
  if (t.retry.attempts > 0) {
    traffic::RetryBudget* budget =
        route.called_traffic ? route.called_traffic->budget.get() : nullptr;
    if (t.retry.per_try_timeout_ms)
      route.try_deadline = now + std::chrono::milliseconds(t.retry.per_try_timeout_ms);
    route.retry = std::make_unique<traffic::RetryState>(t.retry, budget, breaker, now);
  }
  if (t.timeout_ms) route.deadline = now + std::chrono::milliseconds(t.timeout_ms);
  if (t.delay_ms) {  // fault delay: the first routing waits (DeferH2)
    route.defer_ms = t.delay_ms;
    route.final_flags = "DI";
  }
  route.response_mods[0] = t.response_mods[0];
  route.response_mods[1] = t.response_mods[1];
  route.mirrors = t.mirrors;
  route.mirror_timeout_ms = t.timeout_ms;
  if (route.response_mods[0] || route.response_mods[1] || !route.mirrors.empty()) route.snap = snap;
  ArmH2Timer(&r, route);
  return std::nullopt;
}

// A route's ResponseHeaderModifiers on an HTTP/2 response head (the codec keeps pseudo-headers
// and framing as they were).
void HttpOutbound::EditH2Response(const HttpRequestAttributes& req,
                                  std::vector<std::pair<std::string, std::string>>* fields) {
  auto it = h2_routes_.find(&req);
  if (it == h2_routes_.end()) return;
  for (const config::HttpHeaderModifier* m : it->second.response_mods)
    if (m) traffic::ApplyHeaderModifier(*m, fields);
}

std::variant<size_t, l7::LocalReply> HttpOutbound::RouteH2(const HttpRequestAttributes& r) {
  auto snap = w_->shared().config->Get();
  Target t;
  traffic::OutlierDetector* outlier = nullptr;
  std::shared_ptr<const traffic::ServiceTraffic> traffic;
  std::string_view avoid;  // a retry's previous endpoint
  if (auto it = h2_routes_.find(&r); it != h2_routes_.end()) {
    if (it->second.defer_ms) return DeferH2(&r, it->second);  // a fault delay, a back-off
    t.svc = snap->FindServiceByKey(it->second.service);
    t.port = t.svc ? t.svc->FindPort(it->second.port) : nullptr;
    traffic = it->second.traffic;
    if (traffic) outlier = traffic->outlier.get();
    avoid = it->second.avoid;
  }
  const Workload* dst = t.svc && t.port ? ChooseEndpoint(*snap, *t.svc, outlier, avoid) : nullptr;
  if (!dst) return l7::LocalReply{503, std::string(l7::kNoHealthyUpstream)};
  // The backend's maxConnections applies to the shared connections it opens.
  bool overflow = false;
  Upstream* u = SharedH2For(*snap, *dst, t, traffic, &overflow);
  if (overflow) {
    if (auto it = h2_routes_.find(&r); it != h2_routes_.end()) it->second.flags = "UO";
    return l7::LocalReply{
        503, "upstream connect error or disconnect/reset before headers. reset reason: overflow"};
  }
  if (!u) {
    w_->outbound().balancer().Finished(dst->uid, /*failed=*/true, Balancer::Clock::now());
    return l7::LocalReply{503, std::string(l7::kResetBeforeHeadersFailure)};
  }
  w_->outbound().balancer().Started(dst->uid, Balancer::Clock::now());
  return u->idx;
}

void HttpOutbound::DoneH2(const l7::Exchange& ex) {
  std::string_view flags = ResponseFlags(ex);
  bool failed = ex.status == 0;
  std::string route_flags;  // a route's local reply: its flags
  std::shared_ptr<const traffic::ServiceTraffic> traffic;
  std::string final_flags;  // set by its retries ("URX")
  if (auto it = h2_routes_.find(&ex.request); it != h2_routes_.end()) {
    route_flags = std::move(it->second.flags);
    final_flags = std::move(it->second.final_flags);
    traffic = std::move(it->second.traffic);
    if (it->second.timer) w_->loop().CancelTimer(it->second.timer);
    if (it->second.defer_timer) w_->loop().CancelTimer(it->second.defer_timer);
    h2_routes_.erase(it);  // releases its breaker slot
  }
  if (!ex.local_reply && !final_flags.empty()) flags = final_flags;
  if (ex.local_reply && !route_flags.empty()) {
    flags = route_flags;
  } else if (ex.local_reply) {
    if (ex.reason == l7::kNoHealthyUpstream) flags = "UH";
    if (ex.reason == l7::kResetBeforeHeadersFailure) flags = "UF";
    if (ex.reason == l7::kResetBeforeHeadersTermination) flags = "UC";
    if (ex.reason == l7::kResetBeforeHeadersProtocolError) flags = "UPE";
    failed |= flags != "-" && flags != "DPE";
    if (ex.refused_by_codec || ex.status == 431) {
      w_->metrics().BadInput("http", ex.status == 431 ? "header_too_large" : "malformed_request");
    }
  }
  std::string trace_id = TraceId(ex.request);
  for (const auto& [name, value] : ex.request.add_headers)
    if (trace_id.empty() && name == "traceparent" && value.size() >= 35)
      trace_id = value.substr(3, 32);
  if (ex.upstream < 0 || static_cast<size_t>(ex.upstream) >= ups_.size()) {
    Record(ex, &local_, flags, "", trace_id);
    return;
  }
  Upstream& u = *ups_[static_cast<size_t>(ex.upstream)];
  // A stream its client gave up on ("DC": the client reset it, or left) says nothing of the
  // endpoint, which may be shared with other client connections.
  if (ex.ended == l7::Exchange::End::kClientEnded && !ex.local_reply) failed = false;
  w_->outbound().balancer().Finished(u.endpoint, failed, Balancer::Clock::now());
  if (traffic && traffic->outlier && !(ex.ended == l7::Exchange::End::kClientEnded)) {
    traffic->outlier->Report(u.endpoint,
                             failed && ex.status == 0
                                 ? traffic::OutlierDetector::Outcome::kLocalFailure
                                 : traffic::OutlierDetector::Classify(ex.status),
                             Balancer::Clock::now());
  }
  Record(ex, u.series.get(), flags, u.addr, trace_id, u.dst_series.get());
}

// After the HTTP/2 codec ran: upstreams it is done with are closed, a broken connection aborts,
// a closing one ends once its bytes are out. False when the flow was closed.
bool HttpOutbound::AfterH2() {
  for (const auto& u : ups_) {
    if (!u->ended && h2_->UpstreamFinished(u->idx)) {
      UpstreamEnded(*u);
      if (closed_) return false;
    }
  }
  if (h2_->state() == l7::Http1ServerConnection::State::kBroken) {
    info_.error = "HTTP/2: " + h2_->error();
    Close(/*reset=*/true);
    return false;
  }
  if (h2_->state() == l7::Http1ServerConnection::State::kClosing) closing_ = true;
  return true;
}

void HttpOutbound::OnShutdown() {
  if (closed_ || !h2_) return;
  h2_->GoAway(ToUp(), ToClient());
  if (AfterH2()) Flush();
}

void HttpOutbound::Abort(const std::string& reason) {
  if (info_.error.empty()) info_.error = reason;
  Close(/*reset=*/true);
}

}  // namespace weft::ztunnel
