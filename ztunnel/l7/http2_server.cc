#include "ztunnel/l7/http2_server.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ztunnel/l7/nghttp2_fields.h"

namespace weft::ztunnel::l7 {
using Clock = std::chrono::steady_clock;
using Fields = std::vector<std::pair<std::string, std::string>>;

namespace {

// Bytes one peer sent that wait for the other session to take them into its frames. With
// `keep`, bytes taken stay (a request body kept for sending again to another upstream): Rewind
// goes back to the start, and `mark` (the furthest point ever taken) tells which bytes are taken
// for the first time, the ones whose window goes back to the sender.
struct Buf {
  std::string d;
  size_t off = 0;   // next byte to take
  size_t mark = 0;  // bytes before it were taken before (mark >= off)
  bool keep = false;
  size_t size() const { return d.size() - off; }         // not yet taken (this time)
  size_t unconsumed() const { return d.size() - mark; }  // never taken
  size_t held() const { return keep ? d.size() : size(); }
  void Append(const uint8_t* p, size_t n) { d.append(reinterpret_cast<const char*>(p), n); }
  // Copies up to n bytes out; returns how many, and in *fresh how many were never taken before.
  size_t Take(uint8_t* out, size_t n, size_t* fresh) {
    n = std::min(n, size());
    std::memcpy(out, d.data() + off, n);
    off += n;
    *fresh = off > mark ? off - mark : 0;
    mark = std::max(mark, off);
    if (!keep) Compact();
    return n;
  }
  void Rewind() { off = 0; }
  void Drop() {  // stop keeping what was taken
    keep = false;
    d.erase(0, off);
    mark -= off;
    off = 0;
  }
  void Clear() {
    d.clear();
    off = mark = 0;
  }

 private:
  void Compact() {
    if (off == d.size()) {
      Clear();
    } else if (off > 64 * 1024 && off * 2 > d.size()) {
      d.erase(0, off);
      mark -= off;
      off = 0;
    }
  }
};

// grpc/doc/http-grpc-status-mapping.md, as Envoy's Grpc::Utility::httpToGrpcStatus.
int HttpToGrpcStatus(int http) {
  switch (http) {
    case 400:
      return 13;  // INTERNAL
    case 401:
      return 16;  // UNAUTHENTICATED
    case 403:
      return 7;  // PERMISSION_DENIED
    case 404:
      return 12;  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;  // UNAVAILABLE
    default:
      return 2;  // UNKNOWN
  }
}

uint64_t FieldBytes(const Fields& f) {
  uint64_t n = 0;
  for (const auto& [k, v] : f) n += k.size() + v.size();
  return n;
}

}  // namespace

struct Http2ServerConnection::Stream {
  Http2ServerConnection* conn = nullptr;  // the client connection it belongs to
  int32_t down_id = 0;
  Upstream* up = nullptr;  // the upstream carrying it; null: none (denied, refused, not yet sent)
  int32_t up_id = 0;       // its stream on `up`; 0: none
  Exchange ex;
  Fields req_fields, resp_fields, req_trailers, resp_trailers;
  Fields fwd;                // the request header block sent upstream (again when re-routed)
  uint64_t field_bytes = 0;  // request header block so far (limit)
  bool too_large = false;
  bool in_trailers_req = false, in_trailers_resp = false;
  bool grpc = false;
  Buf req, resp;  // client DATA for the upstream, upstream DATA (or a local body) for the client
  uint64_t req_sent = 0;  // request body bytes taken into the current upstream's frames
  int reroutes = 0;
  bool req_eof = false, resp_eof = false;
  bool deferred = false;        // the router answered kDefer: waits for RouteNow
  bool denied = false;          // answered locally: client DATA is dropped
  bool head_sent = false;       // the request's HEADERS went out to the current upstream
  bool answered = false;        // the upstream sent a response head (interim 1xx included)
  bool resp_submitted = false;  // a final response (or local reply) went to the client session
  bool resp_complete = false;   // the upstream's response ended (END_STREAM)
  bool down_closed = false, up_closed = false, reported = false;
  bool mirror = false;      // a RequestMirror copy is being kept (SetMirror)
  std::string mirror_body;  // its body so far
};

// What an nghttp2 session's user data points at: the client's session (c set, up null), or an
// upstream's (up set; c is its owner, null for a shared one: each stream names its connection).
struct Http2ServerConnection::Side {
  Http2ServerConnection* c = nullptr;
  Upstream* up = nullptr;  // null: the client
};

// nghttp2 callbacks for every session; the user data (Side) tells which peer.
struct Http2ServerConnection::Callbacks {
  static Side& S(void* u) { return *static_cast<Side*>(u); }
  static Stream* Get(nghttp2_session* session, int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }
  // The request stream `id` of an upstream carries, while it still does (not re-routed).
  static Stream* GetUp(Upstream* up, int32_t id) {
    Stream* s = Get(up->s, id);
    return s && s->up == up && s->up_id == id ? s : nullptr;
  }

  static int BeginHeaders(nghttp2_session* session, const nghttp2_frame* f, void* u) {
    Side& side = S(u);
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (!side.up) {
      if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        auto s = std::make_unique<Stream>();
        s->conn = side.c;
        s->down_id = f->hd.stream_id;
        s->ex.start = Clock::now();
        nghttp2_session_set_stream_user_data(session, f->hd.stream_id, s.get());
        side.c->streams_[f->hd.stream_id] = std::move(s);
      } else if (Stream* s = Get(session, f->hd.stream_id)) {
        s->in_trailers_req = true;
      }
      return 0;
    }
    Stream* s = GetUp(side.up, f->hd.stream_id);
    if (!s) return 0;
    s->answered = true;  // it took the request: not refused (a retry may still send it again)
    if (!s->conn->retry_check_) s->conn->StopKeeping(*s);
    if (f->headers.cat == NGHTTP2_HCAT_HEADERS && s->resp_submitted) {
      s->in_trailers_resp = true;
    } else {
      s->resp_fields.clear();  // a response head (after interim 1xx ones)
    }
    return 0;
  }

  static int Header(nghttp2_session* session, const nghttp2_frame* f, const uint8_t* name,
                    size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* u) {
    Side& side = S(u);
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = side.up ? GetUp(side.up, f->hd.stream_id) : Get(session, f->hd.stream_id);
    if (!s) return 0;
    std::string n(reinterpret_cast<const char*>(name), namelen);
    std::string v(reinterpret_cast<const char*>(value), valuelen);
    if (!side.up) {
      const Http2Limits& limits = side.c->limits_;
      s->ex.request_bytes += namelen + valuelen;
      s->field_bytes += namelen + valuelen + 32;  // RFC 9113 6.5.2's accounting
      Fields& to = s->in_trailers_req ? s->req_trailers : s->req_fields;
      if (s->field_bytes > limits.max_header_list_bytes ||
          s->req_fields.size() + s->req_trailers.size() >= limits.max_fields) {
        s->too_large = true;
        return 0;
      }
      to.emplace_back(std::move(n), std::move(v));
    } else {
      s->ex.response_bytes += namelen + valuelen;
      if (n == "grpc-status") {
        int code;
        if (absl::SimpleAtoi(v, &code)) s->ex.grpc_status = code;
      }
      (s->in_trailers_resp ? s->resp_trailers : s->resp_fields)
          .emplace_back(std::move(n), std::move(v));
    }
    return 0;
  }

  static int FrameRecv(nghttp2_session* session, const nghttp2_frame* f, void* u) {
    Side& side = S(u);
    Http2ServerConnection* c = side.c;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type == NGHTTP2_GOAWAY) {
      // nghttp2 closes the streams above last_stream_id right after this (REFUSED_STREAM).
      if (side.up) OnUpstreamGoaway(*side.up);
      return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    if (!side.up) {
      Stream* s = Get(session, f->hd.stream_id);
      if (!s) return 0;
      if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->req_eof = end;
        c->OnRequest(*s);
      } else if (end) {
        s->req_eof = true;
        c->ResumeUp(*s);
        c->MaybeMirror(*s);
      }
      return 0;
    }
    Stream* s = GetUp(side.up, f->hd.stream_id);
    if (!s) return 0;
    c = s->conn;
    c->Touch();
    if (f->hd.type == NGHTTP2_HEADERS) {
      if (s->in_trailers_resp) {
        s->resp_eof = s->resp_complete = true;
      } else {
        c->OnResponseHeaders(*s, end);
        return 0;
      }
    } else if (end) {
      s->resp_eof = s->resp_complete = true;
    }
    if (s->resp_eof && s->resp_submitted) nghttp2_session_resume_data(c->down_, s->down_id);
    return 0;
  }

  static int DataChunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                       size_t len, void* u) {
    Side& side = S(u);
    if (!side.up) {
      Stream* s = Get(session, id);
      if (s) s->ex.request_bytes += len;
      if (s && s->mirror) side.c->CopyForMirror(*s, data, len);
      // A deferred request keeps its body (held within the stream's window until RouteNow).
      if (!s || s->denied || (s->up_id <= 0 && !s->deferred) || s->up_closed) {
        nghttp2_session_consume(session, id, len);  // dropped: never stalls the connection
        return 0;
      }
      s->req.Append(data, len);
      side.c->ResumeUp(*s);
      return 0;
    }
    // A shared upstream's connection window goes back at once (each stream holds at most its
    // own window here), so a client that stops reading never stalls the others on it.
    const bool shared = side.up->hub != nullptr;
    if (shared) nghttp2_session_consume_connection(session, len);
    Stream* s = GetUp(side.up, id);
    if (!s || s->down_closed || !s->resp_submitted) {
      if (shared) {
        nghttp2_session_consume_stream(session, id, len);
      } else {
        nghttp2_session_consume(session, id, len);
      }
      return 0;
    }
    s->resp.Append(data, len);
    s->ex.response_bytes += len;
    nghttp2_session_resume_data(s->conn->down_, s->down_id);
    s->conn->Touch();
    return 0;
  }

  static int StreamClose(nghttp2_session* session, int32_t id, uint32_t code, void* u) {
    Side& side = S(u);
    if (!side.up) {
      if (Stream* s = Get(session, id)) side.c->ClientStreamClosed(*s, code);
    } else if (Stream* s = GetUp(side.up, id)) {
      s->conn->Touch();
      s->conn->AppStreamClosed(*s, code);
    }
    return 0;
  }

  static int FrameNotSent(nghttp2_session*, const nghttp2_frame* f, int, void* u) {
    Side& side = S(u);
    if (!side.up || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
      return 0;
    // The request could not start (the upstream sent GOAWAY meanwhile, or it was cancelled):
    // never processed, so it may be routed again, or the client may retry. The stream may not
    // exist in the session (nor its user data): look it up on our side.
    Stream* s = GetUp(side.up, f->hd.stream_id);
    for (size_t i = 0; !s && i < side.up->streams.size(); ++i) {
      if (side.up->streams[i]->up_id == f->hd.stream_id) s = side.up->streams[i];
    }
    if (s) {
      s->conn->Touch();
      s->conn->AppStreamClosed(*s, NGHTTP2_REFUSED_STREAM);
    }
    return 0;
  }

  static int FrameSent(nghttp2_session*, const nghttp2_frame* f, void* u) {
    Side& side = S(u);
    if (side.up && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
      if (Stream* s = GetUp(side.up, f->hd.stream_id)) s->head_sent = true;
      return 0;
    }
    if (f->hd.type != NGHTTP2_GOAWAY || f->goaway.error_code == NGHTTP2_NO_ERROR) return 0;
    if (side.up && (!side.c || side.c->router_)) {
      side.up->broken = true;  // that upstream only (Flush, or the hub's flush, ends it)
      return 0;
    }
    side.c->Fail(absl::StrCat(side.up ? "the application" : "the client", " broke HTTP/2 (GOAWAY ",
                              nghttp2_http2_strerror(f->goaway.error_code), ")"));
    return 0;
  }

  // Data providers: client DATA towards an upstream (up) and upstream DATA towards the client.
  static ssize_t ReadUp(nghttp2_session* session, int32_t id, uint8_t* buf, size_t len,
                        uint32_t* flags, nghttp2_data_source* src, void* u) {
    // By the stream's user data, not src->ptr: a stream its connection cancelled (Finish) may
    // still be scheduled on a shared upstream, and its user data is cleared then.
    (void)src;
    Stream* s = GetUp(S(u).up, id);
    if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // cancelled: its RST_STREAM follows
    auto* c = s->conn;
    size_t fresh;
    size_t n = s->req.Take(buf, len, &fresh);
    s->req_sent += n;
    if (fresh > 0) c->ConsumeDown(*s, fresh);
    if (s->req.keep) c->KeepForReplay(*s, fresh);
    if (s->req.size() == 0 && s->req_eof) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s->req_trailers.empty()) {
        auto nv = Nv(s->req_trailers);
        if (nghttp2_submit_trailer(session, id, nv.data(), nv.size()) == 0)
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      return static_cast<ssize_t>(n);
    }
    return n > 0 ? static_cast<ssize_t>(n) : static_cast<ssize_t>(NGHTTP2_ERR_DEFERRED);
  }
  static ssize_t ReadDown(nghttp2_session* session, int32_t id, uint8_t* buf, size_t len,
                          uint32_t* flags, nghttp2_data_source* src, void* u) {
    auto* c = S(u).c;
    auto* s = static_cast<Stream*>(src->ptr);
    size_t fresh;
    size_t n = s->resp.Take(buf, len, &fresh);
    if (n > 0) c->ConsumeUp(*s, n);
    if (s->resp.size() == 0 && s->resp_eof) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s->resp_trailers.empty()) {
        auto nv = Nv(s->resp_trailers);
        if (nghttp2_submit_trailer(session, id, nv.data(), nv.size()) == 0)
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      return static_cast<ssize_t>(n);
    }
    return n > 0 ? static_cast<ssize_t>(n) : static_cast<ssize_t>(NGHTTP2_ERR_DEFERRED);
  }
};

Http2ServerConnection::Http2ServerConnection(Http2Limits limits, Gate gate, Done done)
    : Http2ServerConnection(limits, std::move(gate), std::move(done), Router()) {}

Http2ServerConnection::Http2ServerConnection(Http2Limits limits, Gate gate, Done done,
                                             Router router)
    : limits_(limits),
      gate_(std::move(gate)),
      done_(std::move(done)),
      router_(std::move(router)),
      down_side_(std::make_unique<Side>(Side{this, nullptr})) {
  callbacks_ = NewCallbacks();
  options_ = NewOptions();
  nghttp2_session_server_new2(&down_, callbacks_, down_side_.get(), options_);

  const nghttp2_settings_entry to_client[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(limits_.stream_window)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_bytes},
  };
  nghttp2_submit_settings(down_, NGHTTP2_FLAG_NONE, to_client, 3);
  nghttp2_session_set_local_window_size(down_, NGHTTP2_FLAG_NONE, 0, limits_.connection_window);
  if (!router_) NewUpstream(0);  // the app: its preface goes out with the first flush
}

Http2ServerConnection::~Http2ServerConnection() {
  if (hub_) hub_->Forget(this);
  // Shared upstreams outlive this connection: nothing of it may stay reachable from them.
  for (auto& [id, st] : streams_) {
    Stream& s = *st;
    if (s.up && s.up->hub && s.up->s && s.up_id > 0) {
      if (!s.up_closed)
        nghttp2_submit_rst_stream(s.up->s, NGHTTP2_FLAG_NONE, s.up_id, NGHTTP2_CANCEL);
      nghttp2_session_set_stream_user_data(s.up->s, s.up_id, nullptr);
    }
    Bind(s, nullptr);
  }
  streams_.clear();
  nghttp2_session_del(down_);
  for (auto& [index, u] : upstreams_) {
    if (u->owner != this) continue;  // shared: its owner deletes it
    nghttp2_session_del(u->s);
    u->s = nullptr;
  }
  nghttp2_option_del(options_);
  nghttp2_session_callbacks_del(callbacks_);
}

nghttp2_session_callbacks* Http2ServerConnection::NewCallbacks() {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, Callbacks::BeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, Callbacks::Header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, Callbacks::FrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, Callbacks::DataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, Callbacks::StreamClose);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, Callbacks::FrameNotSent);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, Callbacks::FrameSent);
  return cbs;
}

nghttp2_option* Http2ServerConnection::NewOptions() {
  nghttp2_option* o = nullptr;
  nghttp2_option_new(&o);
  nghttp2_option_set_no_auto_window_update(o, 1);  // given back as the other side takes it
  return o;
}

Http2ServerConnection::Upstream* Http2ServerConnection::FindUpstream(size_t index) const {
  auto it = upstreams_.find(index);
  return it == upstreams_.end() ? nullptr : it->second.get();
}

Http2ServerConnection::Upstream* Http2ServerConnection::NewUpstream(size_t index) {
  std::shared_ptr<Upstream> u(new Upstream());
  u->index = index;
  u->owner = this;
  u->side = std::make_unique<Side>(Side{this, u.get()});
  u->Open(limits_, callbacks_, options_);
  Upstream* raw = u.get();
  upstreams_[index] = std::move(u);
  return raw;
}

void Http2ServerConnection::SetShared(std::shared_ptr<Http2Hub> hub,
                                      std::function<void(std::string_view)> to_client,
                                      std::function<void()> wake) {
  hub_ = std::move(hub);
  shared_to_client_ = std::move(to_client);
  wake_ = std::move(wake);
}

void Http2ServerConnection::AttachUpstream(size_t upstream, std::shared_ptr<Http2Upstream> u) {
  upstreams_[upstream] = std::move(u);
}

void Http2ServerConnection::Bind(Stream& s, Upstream* u) {
  if (s.up == u) return;
  if (s.up) {
    auto& v = s.up->streams;
    v.erase(std::remove(v.begin(), v.end(), &s), v.end());
  }
  s.up = u;
  if (u) u->streams.push_back(&s);
}

void Http2ServerConnection::Touch() {
  if (hub_ && !finished_) hub_->Mark(this);
}

void Http2ServerConnection::TouchUp(Upstream* u) {
  if (u && u->hub) u->hub->Mark(u);
}

// The hub drains this connection for another's work: its client's frames to the persistent
// sink (its own upstreams' are none: a connection with shared upstreams routes only to those),
// then its owner is told.
void Http2ServerConnection::FlushFromHub() {
  if (finished_ || state_ == State::kBroken) return;
  auto to_client = [this](std::string_view b) { shared_to_client_(b); };
  Flush([](size_t, std::string_view) {}, to_client);
  if (wake_) wake_();
}

// Request bytes an upstream took: the client may send as many again.
void Http2ServerConnection::ConsumeDown(Stream& s, size_t n) {
  nghttp2_session_consume(down_, s.down_id, n);
  Touch();
}

Http2Upstream::Http2Upstream() = default;

Http2Upstream::Http2Upstream(const Http2Limits& limits, std::shared_ptr<Http2Hub> hub, Output out,
                             std::function<void()> drained)
    : hub(std::move(hub)), out(std::move(out)), drained(std::move(drained)) {
  side = std::make_unique<Http2ServerConnection::Side>(Http2ServerConnection::Side{nullptr, this});
  own_callbacks = Http2ServerConnection::NewCallbacks();
  own_options = Http2ServerConnection::NewOptions();
  Open(limits, own_callbacks, own_options);
  this->hub->Mark(this);  // the preface and SETTINGS go out with the next flush
}

Http2Upstream::~Http2Upstream() {
  if (hub) hub->Forget(this);
  for (Stream* st : streams) st->up = nullptr;  // cannot happen: its connections hold it
  nghttp2_session_del(s);
  if (own_options) nghttp2_option_del(own_options);
  if (own_callbacks) nghttp2_session_callbacks_del(own_callbacks);
}

void Http2Upstream::Open(const Http2Limits& limits, nghttp2_session_callbacks* cbs,
                         nghttp2_option* options) {
  nghttp2_session_client_new2(&s, cbs, side.get(), options);
  const nghttp2_settings_entry to_up[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(limits.stream_window)},
  };
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, to_up, 2);
  nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, limits.connection_window);
}

size_t Http2Upstream::OpenStreams() const {
  size_t n = 0;
  for (const Stream* st : streams) n += st->up_id > 0 && !st->up_closed;
  return n;
}

size_t Http2Upstream::MaxStreams() const {
  if (!s) return 0;
  return nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

void Http2Upstream::Feed(std::string_view in) {
  if (!s || eof) return;
  if (!in.empty()) got_bytes = true;
  ssize_t n = nghttp2_session_mem_recv(s, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  if (n < 0) broken = true;  // not HTTP/2: the flush ends it (UPE)
  hub->Mark(this);
  hub->Flush();
}

void Http2Upstream::Eof() {
  if (eof) return;
  eof = true;
  if (s) {
    Http2ServerConnection::EndUpstream(
        *this, got_bytes ? kResetBeforeHeadersTermination : kResetBeforeHeadersFailure);
  }
  if (hub) hub->Flush();
}

void Http2Upstream::DrainShared() {
  while (s && !broken) {
    const uint8_t* d;
    ssize_t n = nghttp2_session_mem_send(s, &d);
    if (n < 0) {
      broken = true;
      break;
    }
    if (n == 0) break;
    out(std::string_view(reinterpret_cast<const char*>(d), static_cast<size_t>(n)));
  }
  if (s && broken) Http2ServerConnection::EndUpstream(*this, kResetBeforeHeadersProtocolError);
  if (drained) drained();
}

void Http2Hub::Mark(Http2ServerConnection* c) {
  if (c->marked_) return;
  c->marked_ = true;
  conns_.push_back(c);
}

void Http2Hub::Mark(Http2Upstream* u) {
  if (u->marked) return;
  u->marked = true;
  ups_.push_back(u);
}

void Http2Hub::Forget(Http2ServerConnection* c) {
  if (!c->marked_) return;
  c->marked_ = false;
  conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
}

void Http2Hub::Forget(Http2Upstream* u) {
  if (!u->marked) return;
  u->marked = false;
  ups_.erase(std::remove(ups_.begin(), ups_.end(), u), ups_.end());
}

void Http2Hub::Flush() {
  if (flushing_) return;
  flushing_ = true;
  // Upstreams first: their frames carry requests; a connection's flush may mark them again.
  while (!ups_.empty() || !conns_.empty()) {
    if (!ups_.empty()) {
      Http2Upstream* u = ups_.front();
      ups_.erase(ups_.begin());
      u->marked = false;
      u->DrainShared();
      continue;
    }
    Http2ServerConnection* c = conns_.front();
    conns_.erase(conns_.begin());
    c->marked_ = false;
    c->FlushFromHub();
  }
  flushing_ = false;
}

size_t Http2ServerConnection::buffered() const {
  size_t n = 0;
  for (const auto& [id, s] : streams_) n += s->req.held() + s->resp.size();
  return n;
}

bool Http2ServerConnection::UpstreamUsable(size_t upstream) const {
  const Upstream* u = FindUpstream(upstream);
  if (state_ == State::kBroken) return false;
  return !u || (u->s && !u->draining && !u->broken);
}

size_t Http2ServerConnection::UpstreamStreams(size_t upstream) const {
  const Upstream* u = FindUpstream(upstream);
  size_t n = 0;
  if (!u) return 0;
  for (const Stream* s : u->streams) n += s->conn == this && s->up_id > 0 && !s->up_closed;
  return n;
}

bool Http2ServerConnection::UpstreamFinished(size_t upstream) const {
  const Upstream* u = FindUpstream(upstream);
  if (!u || u->eof || u->hub) return false;  // a shared one: its owner sees Finished()
  return !u->s || (u->draining && UpstreamStreams(upstream) == 0);
}

void Http2ServerConnection::Fail(std::string reason) {
  if (state_ == State::kBroken) return;
  state_ = State::kBroken;
  error_ = std::move(reason);
}

void Http2ServerConnection::ResumeUp(Stream& s) {
  if (s.up && s.up->s && s.up_id > 0 && !s.up_closed) {
    nghttp2_session_resume_data(s.up->s, s.up_id);
    TouchUp(s.up);
  }
}

// Response bytes the client session took: the upstream may send as many again (a shared
// upstream's connection window went back when they arrived).
void Http2ServerConnection::ConsumeUp(Stream& s, size_t n) {
  if (!s.up || !s.up->s || s.up_id <= 0 || s.denied) return;
  if (s.up->hub) {
    nghttp2_session_consume_stream(s.up->s, s.up_id, n);
    TouchUp(s.up);
  } else {
    nghttp2_session_consume(s.up->s, s.up_id, n);
  }
}

void Http2ServerConnection::OnRequest(Stream& s) {
  HttpRequestAttributes& a = s.ex.request;
  std::string scheme;
  bool has_path = false;
  for (const auto& [n, v] : s.req_fields) {
    if (n == ":method") {
      a.method = v;
    } else if (n == ":authority") {
      a.authority = v;
    } else if (n == ":path") {
      a.path = v;
      has_path = true;
    } else if (n == ":scheme") {
      scheme = v;
    } else if (!n.empty() && n[0] != ':') {
      if (n == "host" && a.authority.empty()) a.authority = v;
      if (n == "content-type") s.grpc = absl::StartsWith(v, "application/grpc");
      a.headers.emplace_back(n, v);
    }
  }
  if (s.too_large) {
    Reply(s, LocalReply{431, "request header too large"});
    return;
  }
  const Upstream* app = router_ ? nullptr : FindUpstream(0);
  if (goaway_to_client_ || (app && !app->s)) {
    Refuse(s);
    return;
  }
  if (std::optional<LocalReply> r = gate_(a)) {
    Reply(s, *r);
    return;
  }
  // Forward the request, with the path the gate authorized and the fields it added.
  Fields& out = s.fwd;
  out.emplace_back(":method", a.method);
  if (!scheme.empty()) out.emplace_back(":scheme", scheme);
  if (a.rewrite_head) {  // a source-side gate's rewrite: the authority and fields it left
    if (!a.authority.empty()) out.emplace_back(":authority", a.authority);
    if (has_path) out.emplace_back(":path", a.path);
    for (const auto& [n, v] : s.req_fields)
      if (n == "te") out.emplace_back(n, v);  // kept as received
    for (const auto& [n, v] : a.headers)
      if (n != "host" && n != "te" && n != "connection" && n != "transfer-encoding")
        out.emplace_back(n, v);
  } else {
    for (const auto& [n, v] : s.req_fields)
      if (n == ":authority") out.emplace_back(n, v);
    if (has_path) out.emplace_back(":path", a.path);
    for (const auto& [n, v] : s.req_fields)
      if (n.empty() || n[0] != ':') out.emplace_back(n, v);
  }
  for (const auto& [n, v] : a.add_headers) out.emplace_back(n, v);
  if (router_ && mirror_sink_ && mirror_wanted_ && mirror_wanted_(a)) s.mirror = true;
  Route(s);
}

// Submits the request on the upstream the router picks (without a router: the app).
void Http2ServerConnection::Route(Stream& s) {
  Upstream* u = FindUpstream(0);
  size_t index = 0;
  if (router_) {
    std::variant<size_t, LocalReply> r = router_(s.ex.request);
    if (const auto* reply = std::get_if<LocalReply>(&r)) {
      Reply(s, *reply);
      return;
    }
    index = std::get<size_t>(r);
    if (index == kDefer) {  // RouteNow comes back for it
      s.deferred = true;
      return;
    }
    u = FindUpstream(index);
    if (!u) u = NewUpstream(index);
    if (!UpstreamUsable(index)) {
      Reply(s, LocalReply{503, std::string(kNoHealthyUpstream)});
      return;
    }
  }
  auto nv = Nv(s.fwd);
  nghttp2_data_provider prd;
  prd.source.ptr = &s;
  prd.read_callback = Callbacks::ReadUp;
  bool body = !s.req_eof || s.req.size() > 0 || !s.req_trailers.empty();
  int32_t id =
      nghttp2_submit_request(u->s, nullptr, nv.data(), nv.size(), body ? &prd : nullptr, &s);
  if (id < 0) {
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) u->draining = true;  // a fresh one is needed
    Refuse(s);
    return;
  }
  if (router_ && s.reroutes == 0 && !s.req_eof) s.req.keep = true;  // until answered (bounded)
  Bind(s, u);
  s.up_id = id;
  s.req_sent = 0;
  s.head_sent = false;
  if (router_) s.ex.upstream = static_cast<int>(index);
  TouchUp(u);
  ++routed_;
  MaybeMirror(s);
}

// RequestMirror's copy of a request body (SetMirror): bounded per stream and per connection;
// past a bound the request is not mirrored (the sink is told at once).
void Http2ServerConnection::CopyForMirror(Stream& s, const uint8_t* data, size_t len) {
  if (s.mirror_body.size() + len > mirror_max_body_ ||
      mirror_bytes_ + len > static_cast<size_t>(limits_.connection_window)) {
    DropMirror(s, /*tell=*/true);
    return;
  }
  s.mirror_body.append(reinterpret_cast<const char*>(data), len);
  mirror_bytes_ += len;
}

// The copy goes to the sink once the request is whole and on its way to an upstream.
void Http2ServerConnection::MaybeMirror(Stream& s) {
  if (!s.mirror || !s.req_eof || s.denied || !s.up || s.up_id <= 0) return;
  const MirrorCopy copy{s.fwd, s.mirror_body, s.req_trailers};
  s.mirror = false;
  mirror_sink_(s.ex.request, &copy);
  mirror_bytes_ -= std::min(mirror_bytes_, s.mirror_body.size());
  std::string().swap(s.mirror_body);
}

void Http2ServerConnection::DropMirror(Stream& s, bool tell) {
  if (!s.mirror) return;
  s.mirror = false;
  mirror_bytes_ -= std::min(mirror_bytes_, s.mirror_body.size());
  std::string().swap(s.mirror_body);
  if (tell) mirror_sink_(s.ex.request, nullptr);
}

// An upstream refused the stream without processing it (RFC 9113 8.7): with a router, it may go
// to another upstream, if nothing of it is lost (no body went out, or what did was kept).
bool Http2ServerConnection::Reroutable(const Stream& s) const {
  return router_ && s.up && !s.down_closed && !s.denied && !s.answered &&
         (s.req_sent == 0 || s.req.keep) && s.reroutes < kMaxReroutes;
}

bool Http2ServerConnection::Retriable(const Stream& s) const {
  return router_ && retry_check_ && s.up && !s.down_closed && !s.denied && !s.resp_submitted &&
         s.req_eof && (s.req_sent == 0 || s.req.keep) && s.reroutes < kMaxRetries;
}

// An attempt ended (status 0: without a response head): ask whether to send the request again,
// and do.
bool Http2ServerConnection::AskRetry(Stream& s, int status, int grpc_status) {
  if (!Retriable(s) || !retry_check_(s.ex.request, s.ex.upstream, status, grpc_status))
    return false;
  if (s.up->s && s.up_id > 0 && !s.up_closed) {
    nghttp2_submit_rst_stream(s.up->s, NGHTTP2_FLAG_NONE, s.up_id, NGHTTP2_CANCEL);
    TouchUp(s.up);
  }
  s.answered = false;
  s.up_closed = false;
  s.in_trailers_resp = false;
  s.resp_fields.clear();
  s.resp_trailers.clear();
  s.ex.grpc_status = -1;
  s.ex.response_bytes = 0;
  Reroute(s);
  return true;
}

Http2ServerConnection::Stream* Http2ServerConnection::FindStream(
    const HttpRequestAttributes& request) const {
  for (const auto& [id, s] : streams_)
    if (&s->ex.request == &request) return s.get();
  return nullptr;
}

bool Http2ServerConnection::RetryStream(const HttpRequestAttributes& request, UpstreamSink to_up,
                                        Sink to_client) {
  Stream* s = FindStream(request);
  if (!s || !AskRetry(*s, 0, -1)) return false;
  Flush(to_up, to_client);
  return true;
}

bool Http2ServerConnection::RouteNow(const HttpRequestAttributes& request, UpstreamSink to_up,
                                     Sink to_client) {
  Stream* s = FindStream(request);
  if (!s || !s->deferred || s->down_closed || s->reported || s->resp_submitted) return false;
  s->deferred = false;
  Route(*s);
  Flush(to_up, to_client);
  return true;
}

bool Http2ServerConnection::ResponseStarted(const HttpRequestAttributes& request) const {
  const Stream* s = FindStream(request);
  return s && s->resp_submitted;
}

void Http2ServerConnection::TimeOutStream(const HttpRequestAttributes& request,
                                          const LocalReply& reply, UpstreamSink to_up,
                                          Sink to_client) {
  Stream* s = FindStream(request);
  if (!s || s->down_closed || s->reported) return;
  if (s->up && s->up->s && s->up_id > 0 && !s->up_closed) {
    nghttp2_submit_rst_stream(s->up->s, NGHTTP2_FLAG_NONE, s->up_id, NGHTTP2_CANCEL);
    nghttp2_session_set_stream_user_data(s->up->s, s->up_id, nullptr);
    TouchUp(s->up);
  }
  s->up_id = 0;  // detached: nothing more comes from the upstream
  if (!s->resp_submitted) {
    Reply(*s, reply);
  } else {
    s->ex.ended = Exchange::End::kServerEnded;
    nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s->down_id, NGHTTP2_CANCEL);
  }
  Flush(to_up, to_client);
}

void Http2ServerConnection::Reroute(Stream& s) {
  ++s.reroutes;
  if (s.up->s) nghttp2_session_set_stream_user_data(s.up->s, s.up_id, nullptr);
  Bind(s, nullptr);
  s.up_id = 0;
  s.ex.upstream = -1;
  s.req.Rewind();  // the whole body again (kept, see KeepForReplay)
  Route(s);
}

// A request body kept for a replay (Reroute) counts against limits: the stream window per stream,
// the connection window in all (so the codec holds at most twice the windows of request bytes);
// past them, or once answered, a refused request is not sent again (Reroutable).
void Http2ServerConnection::KeepForReplay(Stream& s, size_t fresh) {
  kept_ += fresh;
  if (s.req.mark > static_cast<size_t>(limits_.stream_window) ||
      kept_ > static_cast<size_t>(limits_.connection_window))
    StopKeeping(s);
}

void Http2ServerConnection::StopKeeping(Stream& s) {
  if (!s.req.keep) return;
  kept_ -= std::min(kept_, s.req.mark);
  s.req.Drop();
}

// Client DATA that will never reach an upstream: its window goes back to the client.
void Http2ServerConnection::DropRequestBody(Stream& s) {
  StopKeeping(s);
  if (s.req.unconsumed() > 0) nghttp2_session_consume(down_, s.down_id, s.req.unconsumed());
  s.req.Clear();
}

// The client may send the request again (RFC 9113 8.7: it was not processed).
void Http2ServerConnection::Refuse(Stream& s) {
  s.denied = true;
  DropMirror(s, /*tell=*/false);
  DropRequestBody(s);
  nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s.down_id, NGHTTP2_REFUSED_STREAM);
}

// A local reply on the stream only (Envoy's sendLocalReply): gRPC requests get HTTP 200 with
// the status mapped to grpc-status in a trailers-only response.
void Http2ServerConnection::Reply(Stream& s, const LocalReply& r) {
  s.denied = true;
  DropMirror(s, /*tell=*/false);  // (a request answered locally is not mirrored)
  DropRequestBody(s);             // (after a re-route, some may be here)
  s.ex.local_reply = true;
  s.ex.status = r.status;
  s.ex.reason = r.body;
  s.resp_submitted = true;
  s.resp_eof = true;
  Fields f;
  if (s.grpc) {
    s.ex.grpc_status = r.grpc_status >= 0 ? r.grpc_status : HttpToGrpcStatus(r.status);
    f = {{":status", "200"},
         {"content-type", "application/grpc"},
         {"grpc-status", std::to_string(s.ex.grpc_status)},
         {"grpc-message", r.body}};
    s.ex.response_bytes = FieldBytes(f);
    auto nv = Nv(f);
    nghttp2_submit_response(down_, s.down_id, nv.data(), nv.size(), nullptr);
    return;
  }
  f = {{":status", std::to_string(r.status)},
       {"content-length", std::to_string(r.body.size())},
       {"content-type", "text/plain"}};
  f.insert(f.end(), r.headers.begin(), r.headers.end());
  s.ex.response_bytes = FieldBytes(f) + r.body.size();
  s.resp.Append(reinterpret_cast<const uint8_t*>(r.body.data()), r.body.size());
  auto nv = Nv(f);
  nghttp2_data_provider prd;
  prd.source.ptr = &s;
  prd.read_callback = Callbacks::ReadDown;
  nghttp2_submit_response(down_, s.down_id, nv.data(), nv.size(), &prd);
}

void Http2ServerConnection::OnResponseHeaders(Stream& s, bool end_stream) {
  int status = 0;
  for (const auto& [n, v] : s.resp_fields)
    if (n == ":status") (void)absl::SimpleAtoi(v, &status);
  auto nv = Nv(s.resp_fields);
  if (s.down_closed) return;
  if (status / 100 == 1) {  // interim: forwarded, the final head follows
    nghttp2_submit_headers(down_, NGHTTP2_FLAG_NONE, s.down_id, nullptr, nv.data(), nv.size(),
                           nullptr);
    return;
  }
  int grpc_status = -1;
  if (end_stream) {  // trailers-only: the gRPC status is in the head
    for (const auto& [n, v] : s.resp_fields)
      if (n == "grpc-status") (void)absl::SimpleAtoi(v, &grpc_status);
  }
  if (AskRetry(s, status, grpc_status)) return;
  StopKeeping(s);
  if (response_edit_) {
    EditResponse(s);
    nv = Nv(s.resp_fields);
  }
  s.ex.status = status;
  s.resp_submitted = true;
  s.resp_eof = s.resp_complete = end_stream;
  nghttp2_data_provider prd;
  prd.source.ptr = &s;
  prd.read_callback = Callbacks::ReadDown;
  nghttp2_submit_response(down_, s.down_id, nv.data(), nv.size(), end_stream ? nullptr : &prd);
}

void Http2ServerConnection::EditResponse(Stream& s) {
  // What the edit may not touch: pseudo-headers and framing, as the upstream sent them.
  auto fixed = [](const std::string& n) {
    return n.empty() || n[0] == ':' || n == "content-length" || n == "connection" ||
           n == "keep-alive" || n == "proxy-connection" || n == "transfer-encoding" ||
           n == "upgrade" || n == "te";
  };
  Fields kept, editable;
  for (auto& f : s.resp_fields) (fixed(f.first) ? kept : editable).push_back(std::move(f));
  response_edit_(s.ex.request, &editable);
  s.resp_fields = std::move(kept);
  for (auto& f : editable)
    if (!fixed(f.first)) s.resp_fields.push_back(std::move(f));
}

void Http2ServerConnection::OnUpstreamGoaway(Upstream& u) {
  u.draining = true;
  Http2ServerConnection* owner = u.owner;
  if (!owner || owner->router_) {
    // Source side: the other upstreams carry on. Requests still queued in the session (over the
    // upstream's SETTINGS_MAX_CONCURRENT_STREAMS) would wait for a stream of it to end before
    // nghttp2 refuses them: route them again now (each by its own connection, when shared).
    std::vector<Stream*> queued;
    for (Stream* s : u.streams)
      if (!s->head_sent && !s->up_closed && s->conn->Reroutable(*s)) queued.push_back(s);
    for (Stream* s : queued) {
      s->conn->Touch();
      s->conn->Reroute(*s);
    }
    return;
  }
  if (owner->goaway_to_client_) return;
  // The app is going away: so is this connection, gracefully.
  owner->goaway_to_client_ = true;
  nghttp2_submit_goaway(owner->down_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(owner->down_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

void Http2ServerConnection::AppStreamClosed(Stream& s, uint32_t code) {
  if (s.up_closed) return;
  if (code == NGHTTP2_REFUSED_STREAM && Reroutable(s)) {
    Reroute(s);
    return;
  }
  // Reset by the upstream before a response head: a retry may send it again.
  if (code != NGHTTP2_NO_ERROR && code != NGHTTP2_REFUSED_STREAM && !s.resp_submitted &&
      AskRetry(s, 0, -1))
    return;
  s.up_closed = true;
  DropRequestBody(s);
  if (!s.resp_complete && !s.denied && s.ex.ended == Exchange::End::kComplete)
    s.ex.ended = Exchange::End::kServerEnded;  // Envoy's UC
  if (!s.down_closed && !s.resp_complete) {
    // The upstream ended the stream without a complete response: reset the client's.
    nghttp2_submit_rst_stream(
        down_, NGHTTP2_FLAG_NONE, s.down_id,
        code == NGHTTP2_NO_ERROR ? static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR) : code);
  }
  MaybeRelease(s);
}

void Http2ServerConnection::ClientStreamClosed(Stream& s, uint32_t code) {
  s.down_closed = true;
  DropRequestBody(s);
  if (code != NGHTTP2_NO_ERROR && !s.resp_complete && !s.denied &&
      s.ex.ended == Exchange::End::kComplete) {
    s.ex.ended = Exchange::End::kClientEnded;  // Envoy's DC
  }
  if (s.resp.size() > 0) {
    ConsumeUp(s, s.resp.size());
    s.resp.Clear();
  }
  if (s.up && s.up->s && s.up_id > 0 && !s.up_closed) {
    // The client reset the stream (or it ended before the request did): reset the upstream's.
    nghttp2_submit_rst_stream(
        s.up->s, NGHTTP2_FLAG_NONE, s.up_id,
        code == NGHTTP2_NO_ERROR ? static_cast<uint32_t>(NGHTTP2_CANCEL) : code);
    TouchUp(s.up);
  }
  MaybeRelease(s);
}

void Http2ServerConnection::MaybeRelease(Stream& s) {
  if (!s.down_closed || (s.up_id > 0 && !s.up_closed)) return;
  StopKeeping(s);
  DropMirror(s, /*tell=*/false);
  Report(s);
  if (s.up && s.up->s && s.up_id > 0)
    nghttp2_session_set_stream_user_data(s.up->s, s.up_id, nullptr);
  Bind(s, nullptr);
  streams_.erase(s.down_id);
}

void Http2ServerConnection::Report(Stream& s) {
  if (s.reported) return;
  s.reported = true;
  s.ex.end = Clock::now();
  done_(s.ex);
}

// An upstream is gone (closed, or broke HTTP/2): its session is never driven again, so no data
// provider of it runs and its streams count as closed.
// Every connection's streams on it, when shared (each answered by its own connection).
void Http2ServerConnection::EndUpstream(Upstream& u, std::string_view reason) {
  std::vector<Stream*> open = u.streams;
  u.draining = true;  // a retry below must not pick it
  for (Stream* s : open) {
    Http2ServerConnection* c = s->conn;
    c->Touch();
    bool open_both = !s->down_closed && s->up_id > 0 && !s->up_closed;
    if (open_both && !s->resp_submitted && c->AskRetry(*s, 0, -1)) continue;
    s->up_closed = true;
    c->DropRequestBody(*s);
    if (!open_both) {
      c->MaybeRelease(*s);
      continue;
    }
    if (!s->resp_submitted) {
      c->Reply(*s, LocalReply{503, std::string(reason)});
      s->ex.ended = Exchange::End::kServerEnded;
    } else if (!s->resp_complete) {
      s->ex.ended = Exchange::End::kServerEnded;
      nghttp2_submit_rst_stream(c->down_, NGHTTP2_FLAG_NONE, s->down_id, NGHTTP2_INTERNAL_ERROR);
    }
  }
  nghttp2_session_del(u.s);
  u.s = nullptr;
}

bool Http2ServerConnection::EndBrokenUpstreams() {
  bool any = false;
  for (auto& [index, u] : upstreams_) {
    if (!u->broken || !u->s || u->hub) continue;  // a shared one: the hub's flush ends it
    EndUpstream(*u, kResetBeforeHeadersProtocolError);
    any = true;
  }
  return any;
}

// Sends what `session` has; false when nothing.
bool Http2ServerConnection::Drain(nghttp2_session* session, Sink sink) {
  bool sent = false;
  for (;;) {
    const uint8_t* d;
    ssize_t n = nghttp2_session_mem_send(session, &d);
    if (n < 0) {
      Fail(absl::StrCat("HTTP/2 send failed: ", nghttp2_strerror(static_cast<int>(n))));
      return sent;
    }
    if (n == 0 || state_ == State::kBroken) return sent;  // broken: the caller aborts both sides
    sent = true;
    sink(std::string_view(reinterpret_cast<const char*>(d), static_cast<size_t>(n)));
  }
}

void Http2ServerConnection::Flush(UpstreamSink to_up, Sink to_client) {
  // Taking bytes into one session's frames gives window back on another, and a request refused
  // by one upstream may go to another: loop until quiet.
  if (finished_) return;
  for (bool more = true; more && state_ != State::kBroken;) {
    uint64_t routed = routed_;
    more = false;
    for (auto& [index, u] : upstreams_) {
      if (!u->s || u->broken || u->hub) continue;  // a shared one: the hub drains it
      size_t i = index;
      more |= Drain(u->s, [&](std::string_view b) { to_up(i, b); });
    }
    more |= Drain(down_, to_client);
    more |= EndBrokenUpstreams() || routed_ != routed;
  }
  if (hub_) hub_->Flush();  // shared upstreams, and other connections this work touched
  if (state_ == State::kHttp && !nghttp2_session_want_read(down_) &&
      !nghttp2_session_want_write(down_)) {
    state_ = State::kClosing;  // GOAWAY exchanged and no stream left
  }
}

void Http2ServerConnection::FromClient(std::string_view in, UpstreamSink to_up, Sink to_client) {
  if (state_ == State::kBroken) return;
  ssize_t n =
      nghttp2_session_mem_recv(down_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  if (n < 0) {
    Fail(absl::StrCat("not HTTP/2 from the client: ", nghttp2_strerror(static_cast<int>(n))));
    return;
  }
  Flush(to_up, to_client);
}

bool Http2ServerConnection::AcceptUpgrade(std::string_view settings,
                                          const HttpRequestAttributes& request, uint64_t head_bytes,
                                          UpstreamSink to_up, Sink to_client) {
  auto s = std::make_unique<Stream>();
  if (nghttp2_session_upgrade2(down_, reinterpret_cast<const uint8_t*>(settings.data()),
                               settings.size(), request.method == "HEAD", s.get()) != 0) {
    return false;
  }
  s->conn = this;
  s->down_id = 1;
  s->ex.start = Clock::now();
  s->ex.request_bytes = head_bytes;
  s->req_eof = true;
  Fields& f = s->req_fields;
  f = {{":method", request.method},
       {":scheme", "http"},
       {":authority", request.authority},
       {":path", request.path}};
  // RFC 9113 8.2.2: connection-specific fields do not exist in HTTP/2 (TE only as "trailers").
  static constexpr std::string_view kHopByHop[] = {
      "connection",        "upgrade", "http2-settings", "keep-alive", "proxy-connection",
      "transfer-encoding", "host"};
  for (const auto& [n, v] : request.headers) {
    if (std::find(std::begin(kHopByHop), std::end(kHopByHop), n) != std::end(kHopByHop)) continue;
    if (n == "te" && !absl::EqualsIgnoreCase(v, "trailers")) continue;
    f.emplace_back(n, v);
  }
  Stream& st = *s;
  streams_[1] = std::move(s);
  OnRequest(st);
  Flush(to_up, to_client);
  return true;
}

void Http2ServerConnection::FromUpstream(size_t upstream, std::string_view in, UpstreamSink to_up,
                                         Sink to_client) {
  Upstream* u = FindUpstream(upstream);
  if (state_ == State::kBroken || !u || !u->s || u->hub) return;  // shared: Http2Upstream::Feed
  if (!in.empty()) u->got_bytes = true;
  ssize_t n =
      nghttp2_session_mem_recv(u->s, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  if (n < 0) {
    if (!router_) {
      Fail(
          absl::StrCat("not HTTP/2 from the application: ", nghttp2_strerror(static_cast<int>(n))));
      return;
    }
    u->broken = true;  // that upstream only: Flush ends it
  }
  Flush(to_up, to_client);
}

void Http2ServerConnection::UpstreamEof(size_t upstream, UpstreamSink to_up, Sink to_client) {
  Upstream* u = FindUpstream(upstream);
  if (state_ == State::kBroken || !u || u->eof || u->hub) return;  // shared: Http2Upstream::Eof
  u->eof = true;
  if (!u->s) return;  // already ended (broke HTTP/2)
  EndUpstream(
      *u, !router_ || u->got_bytes ? kResetBeforeHeadersTermination : kResetBeforeHeadersFailure);
  if (!router_ && !goaway_to_client_) {
    goaway_to_client_ = true;
    nghttp2_submit_goaway(down_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(down_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
  }
  Flush(to_up, to_client);
}

void Http2ServerConnection::GoAway(UpstreamSink to_up, Sink to_client) {
  if (state_ != State::kHttp || goaway_to_client_) return;
  goaway_to_client_ = true;
  nghttp2_submit_goaway(down_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(down_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  Flush(to_up, to_client);
}

void Http2ServerConnection::FromClient(std::string_view in, Sink to_app, Sink to_client) {
  auto up = [&](size_t, std::string_view b) { to_app(b); };
  FromClient(in, UpstreamSink(up), to_client);
}

void Http2ServerConnection::FromApp(std::string_view in, Sink to_app, Sink to_client) {
  auto up = [&](size_t, std::string_view b) { to_app(b); };
  FromUpstream(0, in, up, to_client);
}

void Http2ServerConnection::AppEof(Sink to_client) {
  UpstreamEof(
      0, [](size_t, std::string_view) {}, to_client);
}

void Http2ServerConnection::Finish() {
  if (finished_) return;
  std::vector<Stream*> open;
  for (auto& [id, s] : streams_) open.push_back(s.get());
  for (Stream* s : open) {
    if (!s->resp_complete && !s->denied && s->ex.ended == Exchange::End::kComplete)
      s->ex.ended = Exchange::End::kClientEnded;
    Report(*s);
  }
  // Its streams on shared upstreams, and only those, are cancelled there (a request still queued
  // in the upstream's session is never sent).
  for (auto& [id, st] : streams_) {
    Stream& s = *st;
    if (s.up && s.up->hub && s.up->s && s.up_id > 0) {
      if (!s.up_closed) {
        nghttp2_submit_rst_stream(s.up->s, NGHTTP2_FLAG_NONE, s.up_id, NGHTTP2_CANCEL);
        TouchUp(s.up);
      }
      nghttp2_session_set_stream_user_data(s.up->s, s.up_id, nullptr);
    }
    Bind(s, nullptr);
  }
  streams_.clear();
  finished_ = true;
  if (hub_) {
    hub_->Forget(this);
    hub_->Flush();
  }
}

}  // namespace weft::ztunnel::l7
