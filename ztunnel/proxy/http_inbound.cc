#include "ztunnel/proxy/http_inbound.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/log.h"
#include "ztunnel/proxy/worker.h"

namespace weft::ztunnel {

namespace {

bool IsHex(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isxdigit(c); });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = absl::ascii_tolower(static_cast<unsigned char>(c));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A B3 trace id: 16 or 32 hex digits, not all zero.
bool IsB3TraceId(std::string_view s) {
  return (s.size() == 16 || s.size() == 32) && IsHex(s) && s.find_first_not_of('0') != s.npos;
}

}  // namespace

std::string TraceId(const HttpRequestAttributes& req) {
  std::string_view b3, single;
  for (const auto& [name, value] : req.headers) {
    if (name == "traceparent") {
      // W3C Trace Context: 2 hex version, 32 hex trace id, 16 hex parent id, 2 hex flags, joined
      // by '-' (a later version may append fields); version ff and an all-zero id are invalid.
      std::string_view v = Trim(value);
      if (v.size() >= 55 && v[2] == '-' && v[35] == '-' && v[52] == '-' && IsHex(v.substr(0, 2)) &&
          Lower(v.substr(0, 2)) != "ff") {
        std::string_view id = v.substr(3, 32);
        if (IsHex(id) && IsHex(v.substr(36, 16)) && id.find_first_not_of('0') != id.npos)
          return Lower(id);
      }
    } else if (name == "x-b3-traceid") {
      b3 = Trim(value);
    } else if (name == "b3") {
      single = Trim(value);
    }
  }
  if (IsB3TraceId(b3)) return Lower(b3);
  // Single-header B3: traceid-spanid[-sampled[-parentspanid]] (or just the sampling state).
  std::string_view first = single.substr(0, single.find('-'));
  if (first.size() != single.size() && IsB3TraceId(first)) return Lower(first);
  return "";
}

namespace {
// The client's input was refused by a codec. HTTP/2's codec does not set refused_by_codec yet;
// the only local reply it makes for the client's input is a 431 (a gate never answers 431).
bool RefusedByCodec(const l7::Exchange& ex) {
  return ex.refused_by_codec || (ex.local_reply && ex.status == 431);
}
}  // namespace

std::string_view ResponseFlags(const l7::Exchange& ex) {
  switch (ex.ended) {
    case l7::Exchange::End::kServerEnded:
      return "UC";
    case l7::Exchange::End::kClientEnded:
      return "DC";
    case l7::Exchange::End::kComplete:
      break;
  }
  if (RefusedByCodec(ex)) return "DPE";
  if (ex.local_reply && ex.status == 503) return "UH";
  return "-";
}

HttpInbound::HttpInbound(Worker* w, std::string pod_uid, ConnectionInfo ci, const TcpLabels& labels,
                         Mode mode)
    : w_(w),
      pod_uid_(std::move(pod_uid)),
      ci_(std::move(ci)),
      mode_(mode),
      series_(labels),
      codec_(
          l7::Http1Limits{}, [this](HttpRequestAttributes& r) { return Gate(r); },
          [this](const l7::Exchange& ex) { Done(ex); }) {}

HttpInbound::~HttpInbound() {
  if (timer_ != 0) w_->loop().CancelTimer(timer_);
  Finish();
}

void HttpInbound::WatchTimeouts(std::function<void()> ended) {
  on_timeout_ = std::move(ended);
  Touch();
}

bool HttpInbound::InHead() const {
  if (sniffing_) return !sniffed_.empty();
  return h2_ ? h2_->InHead() : codec_.InHead();
}

bool HttpInbound::Idle() const {
  if (sniffing_) return sniffed_.empty();
  return h2_ ? h2_->open_streams() == 0 : codec_.Idle();
}

void HttpInbound::Touch() {
  if (!on_timeout_) return;
  const Clock::time_point now = Clock::now();
  last_active_ = now;
  if (!InHead()) {
    head_started_ = false;
  } else if (!head_started_) {  // this read brought the head's first byte
    head_started_ = true;
    head_since_ = now;
    Arm(now + w_->opts().request_headers_timeout);
  }
  if (timer_ == 0) Arm(now + w_->opts().http_idle_timeout);
}

void HttpInbound::Arm(Clock::time_point at) {
  if (timer_ != 0) {
    if (timer_at_ <= at) return;  // it fires first and looks again
    w_->loop().CancelTimer(timer_);
  }
  timer_at_ = at;
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(at - Clock::now());
  timer_ = w_->loop().AddTimer(std::max(wait, std::chrono::milliseconds(0)), [this] {
    timer_ = 0;
    OnTimer();
  });
}

void HttpInbound::OnTimer() {
  const Clock::time_point now = Clock::now();
  const ProxyOptions& o = w_->opts();
  const bool in_head = head_started_ && InHead();
  if (in_head && now - head_since_ >= o.request_headers_timeout) {
    HeadTimedOut();
    on_timeout_();
    return;
  }
  if (Idle() && now - last_active_ >= o.http_idle_timeout) {
    LOG_DEBUG("inbound", "idle HTTP connection closed",
              {{"dst", ci_.dst.ToString()}, {"src", ci_.src_ip.ToString()}});
    on_timeout_();
    return;
  }
  // Not yet: look again when the next deadline can be due (a request in flight: an idle
  // period from now).
  Clock::time_point next = last_active_ + o.http_idle_timeout;
  if (next <= now) next = now + o.http_idle_timeout;
  if (in_head) next = std::min(next, head_since_ + o.request_headers_timeout);
  Arm(next);
}

void HttpInbound::HeadTimedOut() {
  LOG_INFO("inbound", "HTTP request head not complete in time",
           {{"dst", ci_.dst.ToString()},
            {"src", ci_.src_ip.ToString()},
            {"timeout_ms", w_->opts().request_headers_timeout.count()}});
  if (sniffing_ || h2_) {
    // Not known to be HTTP/1.1 (fewer than 24 bytes of the HTTP/2 preface): closed, no reply.
    w_->metrics().BadInput("http", "header_timeout");
    return;
  }
  codec_.HeadTimedOut();  // 408, counted when Done() reports it; or broken
  if (codec_.state() == State::kBroken) w_->metrics().BadInput("http", "header_timeout");
}

// An HTTP/1.1 request line starts with a method token and a space; every registered method is
// uppercase letters and '-' (the longest, UPDATEREDIRECTREF, has 17).
HttpInbound::Sniff HttpInbound::ClientSniff(std::string_view held) {
  constexpr size_t kMaxMethod = 32;
  size_t i = 0;
  while (i < held.size() && i < kMaxMethod && (absl::ascii_isupper(held[i]) || held[i] == '-')) ++i;
  if (i == held.size() && i < kMaxMethod) return Sniff::kMore;
  return i > 0 && i < held.size() && held[i] == ' ' ? Sniff::kYes : Sniff::kNo;
}

// An HTTP server never speaks first, except an HTTP/2 one: its preface, a SETTINGS frame (9-byte
// header: 24-bit length, type 4, flags 0, stream 0).
HttpInbound::Sniff HttpInbound::AppSniff(std::string_view held) {
  constexpr unsigned char kHeader[] = {4, 0, 0, 0, 0, 0};  // bytes 3..8
  for (size_t i = 3; i < std::min<size_t>(held.size(), 9); ++i) {
    unsigned char c = static_cast<unsigned char>(held[i]);
    if (i == 5) c &= 0x7f;  // the stream id's reserved bit
    if (c != kHeader[i - 3]) return Sniff::kNo;
  }
  return held.size() >= 9 ? Sniff::kYes : Sniff::kMore;
}

// kObserve: the held bytes go on unparsed, and the connection is L4 from now on.
void HttpInbound::FallBackToL4(ByteQueue& to_app, ByteQueue& to_client) {
  sniffing_ = false;
  not_http_ = true;
  to_app.Append(sniffed_.data(), sniffed_.size());
  to_client.Append(app_early_.data(), app_early_.size());
  std::string().swap(sniffed_);
  std::string().swap(app_early_);
  if (timer_ != 0) w_->loop().CancelTimer(timer_);
  timer_ = 0;
  on_timeout_ = nullptr;  // L4 has no header or idle timeout
  w_->metrics().BadInput("http", "not_http_l4_fallback");
  LOG_DEBUG("inbound", "not HTTP on an HTTP port: relayed as L4",
            {{"dst", ci_.dst.ToString()}, {"src", ci_.src_ip.ToString()}});
}

void HttpInbound::FromClient(const char* p, size_t n, ByteQueue& to_app, ByteQueue& to_client) {
  std::string_view in(p, n);
  if (not_http_) {
    to_app.Append(p, n);
    return;
  }
  if (sniffing_) {
    // Prior-knowledge HTTP/2 starts with the 24-byte preface; HTTP/1.1 never does.
    sniffed_.append(in);
    std::string_view pre = l7::kHttp2Preface;
    size_t k = std::min(sniffed_.size(), pre.size());
    bool matches = std::string_view(sniffed_).substr(0, k) == pre.substr(0, k);
    Sniff h1 = matches || mode_ == Mode::kEnforce ? Sniff::kYes : ClientSniff(sniffed_);
    if ((matches && sniffed_.size() < pre.size()) || h1 == Sniff::kMore) {  // wait for the rest
      Touch();
      return;
    }
    if (h1 == Sniff::kNo) {
      FallBackToL4(to_app, to_client);
      return;
    }
    sniffing_ = false;
    if (matches) {
      h2_ = std::make_unique<l7::Http2ServerConnection>(
          l7::Http2Limits{}, [this](HttpRequestAttributes& r) { return Gate(r); },
          [this](const l7::Exchange& ex) { Done(ex); });
    }
    std::string held = std::move(sniffed_), early = std::move(app_early_);
    sniffed_.clear();
    app_early_.clear();
    if (!early.empty() && !h2_) to_client.Append(early.data(), early.size());  // as HTTP/1.1 would
    FromClient(held.data(), held.size(), to_app, to_client);
    if (!early.empty()) FromApp(early.data(), early.size(), to_app, to_client);
    return;
  }
  auto app = [&](std::string_view b) { to_app.Append(b.data(), b.size()); };
  if (h2_) {
    h2_->FromClient(in, app, [&](std::string_view b) { to_client.Append(b.data(), b.size()); });
    if (to_client.size() > kMaxClientBacklog && !flooded_) {
      flooded_ = true;
      flood_error_ = "HTTP/2 client does not read what it asks for (more than 4 MiB queued)";
    }
  } else {
    codec_.FromClient(in, app);
  }
  Touch();
  if (broken()) {
    w_->metrics().BadInput("http", "unframed_request");
    LOG_INFO("inbound", "HTTP connection refused",
             {{"dst", ci_.dst.ToString()}, {"src", ci_.src_ip.ToString()}, {"reason", error()}});
  }
}

void HttpInbound::FromApp(const char* p, size_t n, ByteQueue& to_app, ByteQueue& to_client) {
  if (not_http_) return;
  if (sniffing_) {
    // An HTTP/2 server speaks first (its SETTINGS): hold it until the client's bytes decide.
    app_early_.append(p, n);
    if (mode_ == Mode::kObserve && AppSniff(app_early_) == Sniff::kNo) {
      FallBackToL4(to_app, to_client);  // a server-first protocol
      return;
    }
    if (app_early_.size() <= 64 * 1024) {
      Touch();
      return;
    }
    sniffing_ = false;  // no HTTP/2 client waits that long: HTTP/1.1, which refuses it
    std::string early = std::move(app_early_);
    app_early_.clear();
    to_client.Append(early.data(), early.size());
    FromApp(early.data(), early.size(), to_app, to_client);
    return;
  }
  auto app = [&](std::string_view b) { to_app.Append(b.data(), b.size()); };
  if (h2_) {
    h2_->FromApp(std::string_view(p, n), app,
                 [&](std::string_view b) { to_client.Append(b.data(), b.size()); });
  } else {
    codec_.FromServer(std::string_view(p, n), app);
  }
  Touch();
  if (broken()) {
    w_->metrics().BadInput("http", "unframed_response");
    LOG_WARN("inbound", "the application's HTTP response could not be framed",
             {{"dst", ci_.dst.ToString()}, {"reason", error()}});
  }
}

void HttpInbound::AppEof() {
  if (not_http_) return;
  if (h2_) {
    h2_->AppEof([](std::string_view) {});
  } else {
    codec_.ServerEof();
  }
}

void HttpInbound::AppReset() {
  if (not_http_) return;
  if (h2_) {
    h2_->AppEof([](std::string_view) {});
  } else {
    codec_.ServerReset();
  }
}

void HttpInbound::Finish() {
  if (not_http_) return;
  if (h2_) {
    h2_->Finish();
  } else {
    codec_.Finish();
  }
}

std::optional<l7::LocalReply> HttpInbound::Gate(HttpRequestAttributes& req) {
  ++requests_;
  auto snap = w_->shared().config->Get();
  const Workload* dst = snap->FindWorkloadByUid(pod_uid_);
  if (!dst) return l7::LocalReply{503, "destination pod left the config"};
  RequestTarget t;
  AuthzDecision d = AuthorizeRequest(*snap, *dst, ci_, req, &t);
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
  if (t.kind == RequestTarget::Kind::kPath && t.authority.empty()) req.path = t.path + t.query;
  return std::nullopt;
}

void HttpInbound::Tap(const l7::Exchange& ex) {
  TapBuffer* tap = w_->opts().tap.get();
  if (!tap || !tap->Active()) return;
  TapEvent e = RequestTapEvent(ex, "destination", TraceId(ex.request));  // as in the access log
  auto snap = w_->shared().config->Get();
  if (const Workload* d = snap->FindWorkloadByUid(pod_uid_)) {
    e.dst_workload = d->ns + "/" + d->name;
    e.dst_identity = d->identity().ToString();
  }
  if (const Workload* s = snap->FindWorkloadByAddress(ci_.src_ip)) {
    e.src_workload = s->ns + "/" + s->name;
  }
  if (ci_.src_identity) e.src_identity = ci_.src_identity->ToString();
  e.src_addr = ci_.src_ip.ToString();
  e.dst_addr = ci_.dst.ToString();
  tap->Publish(std::move(e));
}

void HttpInbound::Done(const l7::Exchange& ex) {
  Tap(ex);
  if (RefusedByCodec(ex)) {
    // The codec refused the head itself (framing, limits, the header-read timeout).
    w_->metrics().BadInput("http", ex.status == 431   ? "header_too_large"
                                   : ex.status == 408 ? "header_timeout"
                                                      : "malformed_request");
    LOG_INFO("inbound", "HTTP request refused",
             {{"dst", ci_.dst.ToString()}, {"status", ex.status}, {"reason", ex.reason}});
  }
  const std::string_view flags = ResponseFlags(ex);
  const double ms = std::chrono::duration<double, std::milli>(ex.end - ex.start).count();
  series_.Record(w_->metrics(), ex, flags, ms);
  if (w_->opts().access_log && log::Enabled(log::Level::kInfo)) {
    WriteRequestLog(ex, series_.labels(),
                    RequestLogFields{"inbound", flags, ms, ci_.src_ip.ToString(),
                                     ci_.dst.ToString(), TraceId(ex.request)});
  }
}

}  // namespace weft::ztunnel
