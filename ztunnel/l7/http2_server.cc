#include "ztunnel/l7/http2_server.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace weft::ztunnel::l7 {
using Clock = std::chrono::steady_clock;
using Fields = std::vector<std::pair<std::string, std::string>>;

namespace {

// Bytes one peer sent that wait for the other session to take them into its frames.
struct Buf {
  std::string d;
  size_t off = 0;
  size_t size() const { return d.size() - off; }
  void Append(const uint8_t* p, size_t n) { d.append(reinterpret_cast<const char*>(p), n); }
  size_t Take(uint8_t* out, size_t n) {
    n = std::min(n, size());
    std::memcpy(out, d.data() + off, n);
    off += n;
    if (off == d.size()) {
      d.clear();
      off = 0;
    } else if (off > 64 * 1024 && off * 2 > d.size()) {
      d.erase(0, off);
      off = 0;
    }
    return n;
  }
  void Clear() {
    d.clear();
    off = 0;
  }
};

std::vector<nghttp2_nv> Nv(const Fields& f) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(f.size());
  for (const auto& [n, v] : f) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

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
  int32_t down_id = 0;
  int32_t up_id = 0;  // 0: no app stream (denied, refused, not yet sent)
  Exchange ex;
  Fields req_fields, resp_fields, req_trailers, resp_trailers;
  uint64_t field_bytes = 0;  // request header block so far (limit)
  bool too_large = false;
  bool in_trailers_req = false, in_trailers_resp = false;
  bool grpc = false;
  Buf req, resp;  // client DATA for the app, app DATA (or a local body) for the client
  bool req_eof = false, resp_eof = false;
  bool denied = false;          // answered locally: client DATA is dropped
  bool resp_submitted = false;  // a final response (or local reply) went to the client session
  bool resp_complete = false;   // the app's response ended (END_STREAM)
  bool down_closed = false, up_closed = false, reported = false;
};

// nghttp2 callbacks for both sessions; `self->down_ == session` tells which peer.
struct Http2ServerConnection::Callbacks {
  static Http2ServerConnection* Self(void* u) { return static_cast<Http2ServerConnection*>(u); }
  static Stream* Get(nghttp2_session* session, int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int BeginHeaders(nghttp2_session* session, const nghttp2_frame* f, void* u) {
    auto* c = Self(u);
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (session == c->down_ && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
      auto s = std::make_unique<Stream>();
      s->down_id = f->hd.stream_id;
      s->ex.start = Clock::now();
      nghttp2_session_set_stream_user_data(session, f->hd.stream_id, s.get());
      c->streams_[f->hd.stream_id] = std::move(s);
      return 0;
    }
    Stream* s = Get(session, f->hd.stream_id);
    if (!s) return 0;
    if (session == c->down_) {
      s->in_trailers_req = true;
    } else if (f->headers.cat == NGHTTP2_HCAT_HEADERS && s->resp_submitted) {
      s->in_trailers_resp = true;
    } else {
      s->resp_fields.clear();  // a response head (after interim 1xx ones)
    }
    return 0;
  }

  static int Header(nghttp2_session* session, const nghttp2_frame* f, const uint8_t* name,
                    size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* u) {
    auto* c = Self(u);
    Stream* s = Get(session, f->hd.stream_id);
    if (!s || f->hd.type != NGHTTP2_HEADERS) return 0;
    std::string n(reinterpret_cast<const char*>(name), namelen);
    std::string v(reinterpret_cast<const char*>(value), valuelen);
    if (session == c->down_) {
      s->ex.request_bytes += namelen + valuelen;
      s->field_bytes += namelen + valuelen + 32;  // RFC 9113 6.5.2's accounting
      Fields& to = s->in_trailers_req ? s->req_trailers : s->req_fields;
      if (s->field_bytes > c->limits_.max_header_list_bytes ||
          s->req_fields.size() + s->req_trailers.size() >= c->limits_.max_fields) {
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
    auto* c = Self(u);
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type == NGHTTP2_GOAWAY) {
      if (session == c->up_ && !c->goaway_to_client_) {
        // The app is going away: so is this connection, gracefully.
        c->goaway_to_client_ = true;
        nghttp2_submit_goaway(c->down_, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->down_), NGHTTP2_NO_ERROR,
                              nullptr, 0);
      }
      return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    Stream* s = Get(session, f->hd.stream_id);
    if (!s) return 0;
    if (session == c->down_) {
      if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->req_eof = end;
        c->OnRequest(*s);
        return 0;
      }
      if (end) {
        s->req_eof = true;
        if (s->up_id > 0) nghttp2_session_resume_data(c->up_, s->up_id);
      }
      return 0;
    }
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
    auto* c = Self(u);
    Stream* s = Get(session, id);
    if (session == c->down_) {
      if (s) s->ex.request_bytes += len;
      if (!s || s->denied || s->up_id <= 0 || s->up_closed) {
        nghttp2_session_consume(session, id, len);  // dropped: never stalls the connection
        return 0;
      }
      s->req.Append(data, len);
      nghttp2_session_resume_data(c->up_, s->up_id);
      return 0;
    }
    if (!s || s->down_closed || !s->resp_submitted) {
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    s->resp.Append(data, len);
    s->ex.response_bytes += len;
    nghttp2_session_resume_data(c->down_, s->down_id);
    return 0;
  }

  static int StreamClose(nghttp2_session* session, int32_t id, uint32_t code, void* u) {
    auto* c = Self(u);
    Stream* s = Get(session, id);
    if (!s) return 0;
    if (session == c->down_) {
      c->ClientStreamClosed(*s, code);
    } else {
      c->AppStreamClosed(*s, code);
    }
    return 0;
  }

  static int FrameNotSent(nghttp2_session* session, const nghttp2_frame* f, int, void* u) {
    auto* c = Self(u);
    if (session != c->up_ || f->hd.type != NGHTTP2_HEADERS) return 0;
    // The request could not start (the app sent GOAWAY meanwhile): the client may retry.
    // (The stream stays until nghttp2 closes it: its data provider points at it.)
    Stream* s = Get(session, f->hd.stream_id);
    if (s && !s->up_closed && !s->down_closed && !s->resp_submitted) {
      s->denied = true;
      nghttp2_submit_rst_stream(c->down_, NGHTTP2_FLAG_NONE, s->down_id, NGHTTP2_REFUSED_STREAM);
    }
    return 0;
  }

  static int FrameSent(nghttp2_session* session, const nghttp2_frame* f, void* u) {
    auto* c = Self(u);
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
      c->Fail(absl::StrCat(session == c->down_ ? "the client" : "the application",
                           " broke HTTP/2 (GOAWAY ", nghttp2_http2_strerror(f->goaway.error_code),
                           ")"));
    }
    return 0;
  }

  // Data providers: client DATA towards the app (up) and app DATA towards the client (down).
  static ssize_t ReadUp(nghttp2_session* session, int32_t id, uint8_t* buf, size_t len,
                        uint32_t* flags, nghttp2_data_source* src, void* u) {
    auto* c = Self(u);
    auto* s = static_cast<Stream*>(src->ptr);
    size_t n = s->req.Take(buf, len);
    if (n > 0) nghttp2_session_consume(c->down_, s->down_id, n);
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
    auto* c = Self(u);
    auto* s = static_cast<Stream*>(src->ptr);
    size_t n = s->resp.Take(buf, len);
    if (n > 0 && s->up_id > 0 && !s->denied) nghttp2_session_consume(c->up_, s->up_id, n);
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
    : limits_(limits), gate_(std::move(gate)), done_(std::move(done)) {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, Callbacks::BeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, Callbacks::Header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, Callbacks::FrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, Callbacks::DataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, Callbacks::StreamClose);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, Callbacks::FrameNotSent);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, Callbacks::FrameSent);
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);  // given back as the other side takes it
  nghttp2_session_server_new2(&down_, cbs, this, opt);
  nghttp2_session_client_new2(&up_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  const nghttp2_settings_entry to_client[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(limits_.stream_window)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_bytes},
  };
  nghttp2_submit_settings(down_, NGHTTP2_FLAG_NONE, to_client, 3);
  const nghttp2_settings_entry to_app[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(limits_.stream_window)},
  };
  nghttp2_submit_settings(up_, NGHTTP2_FLAG_NONE, to_app, 2);
  nghttp2_session_set_local_window_size(down_, NGHTTP2_FLAG_NONE, 0, limits_.connection_window);
  nghttp2_session_set_local_window_size(up_, NGHTTP2_FLAG_NONE, 0, limits_.connection_window);
}

Http2ServerConnection::~Http2ServerConnection() {
  nghttp2_session_del(down_);
  nghttp2_session_del(up_);
}

size_t Http2ServerConnection::buffered() const {
  size_t n = 0;
  for (const auto& [id, s] : streams_) n += s->req.size() + s->resp.size();
  return n;
}

void Http2ServerConnection::Fail(std::string reason) {
  if (state_ == State::kBroken) return;
  state_ = State::kBroken;
  error_ = std::move(reason);
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
  if (app_gone_ || goaway_to_client_) {
    s.denied = true;
    nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s.down_id, NGHTTP2_REFUSED_STREAM);
    return;
  }
  if (std::optional<LocalReply> r = gate_(a)) {
    Reply(s, *r);
    return;
  }
  // Forward the request, with the path the gate authorized.
  Fields out;
  out.emplace_back(":method", a.method);
  if (!scheme.empty()) out.emplace_back(":scheme", scheme);
  for (const auto& [n, v] : s.req_fields)
    if (n == ":authority") out.emplace_back(n, v);
  if (has_path) out.emplace_back(":path", a.path);
  for (const auto& [n, v] : s.req_fields)
    if (n.empty() || n[0] != ':') out.emplace_back(n, v);
  auto nv = Nv(out);
  nghttp2_data_provider prd;
  prd.source.ptr = &s;
  prd.read_callback = Callbacks::ReadUp;
  int32_t id =
      nghttp2_submit_request(up_, nullptr, nv.data(), nv.size(), s.req_eof ? nullptr : &prd, &s);
  if (id < 0) {
    s.denied = true;
    nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s.down_id, NGHTTP2_REFUSED_STREAM);
    return;
  }
  s.up_id = id;
}

// A local reply on the stream only (Envoy's sendLocalReply): gRPC requests get HTTP 200 with
// the status mapped to grpc-status in a trailers-only response.
void Http2ServerConnection::Reply(Stream& s, const LocalReply& r) {
  s.denied = true;
  s.ex.local_reply = true;
  s.ex.status = r.status;
  s.ex.reason = r.body;
  s.resp_submitted = true;
  s.resp_eof = true;
  Fields f;
  if (s.grpc) {
    s.ex.grpc_status = HttpToGrpcStatus(r.status);
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
  s.ex.status = status;
  s.resp_submitted = true;
  s.resp_eof = s.resp_complete = end_stream;
  nghttp2_data_provider prd;
  prd.source.ptr = &s;
  prd.read_callback = Callbacks::ReadDown;
  nghttp2_submit_response(down_, s.down_id, nv.data(), nv.size(), end_stream ? nullptr : &prd);
}

void Http2ServerConnection::AppStreamClosed(Stream& s, uint32_t code) {
  if (s.up_closed) return;
  s.up_closed = true;
  // Client DATA that will never reach the app: give its window back.
  if (s.req.size() > 0) {
    nghttp2_session_consume(down_, s.down_id, s.req.size());
    s.req.Clear();
  }
  if (!s.resp_complete && !s.denied && s.ex.ended == Exchange::End::kComplete)
    s.ex.ended = Exchange::End::kServerEnded;  // Envoy's UC
  if (!s.down_closed && !s.resp_complete) {
    // The app ended the stream without a complete response: reset the client's.
    nghttp2_submit_rst_stream(
        down_, NGHTTP2_FLAG_NONE, s.down_id,
        code == NGHTTP2_NO_ERROR ? static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR) : code);
  }
  MaybeRelease(s);
}

void Http2ServerConnection::ClientStreamClosed(Stream& s, uint32_t code) {
  s.down_closed = true;
  if (code != NGHTTP2_NO_ERROR && !s.resp_complete && !s.denied &&
      s.ex.ended == Exchange::End::kComplete) {
    s.ex.ended = Exchange::End::kClientEnded;  // Envoy's DC
  }
  if (s.resp.size() > 0) {
    if (s.up_id > 0 && !s.denied) nghttp2_session_consume(up_, s.up_id, s.resp.size());
    s.resp.Clear();
  }
  if (s.up_id > 0 && !s.up_closed) {
    // The client reset the stream (or it ended before the request did): reset the app's.
    nghttp2_submit_rst_stream(
        up_, NGHTTP2_FLAG_NONE, s.up_id,
        code == NGHTTP2_NO_ERROR ? static_cast<uint32_t>(NGHTTP2_CANCEL) : code);
  }
  MaybeRelease(s);
}

void Http2ServerConnection::MaybeRelease(Stream& s) {
  if (!s.down_closed || (s.up_id > 0 && !s.up_closed)) return;
  Report(s);
  if (s.up_id > 0) nghttp2_session_set_stream_user_data(up_, s.up_id, nullptr);
  streams_.erase(s.down_id);
}

void Http2ServerConnection::Report(Stream& s) {
  if (s.reported) return;
  s.reported = true;
  s.ex.end = Clock::now();
  done_(s.ex);
}

void Http2ServerConnection::Flush(Sink to_app, Sink to_client) {
  // Taking bytes into one session's frames gives window back on the other: loop until quiet.
  for (bool more = true; more && state_ != State::kBroken;) {
    more = false;
    for (nghttp2_session* sess : {up_, down_}) {
      if (sess == up_ && app_gone_) continue;
      for (;;) {
        const uint8_t* d;
        ssize_t n = nghttp2_session_mem_send(sess, &d);
        if (n < 0) {
          Fail(absl::StrCat("HTTP/2 send failed: ", nghttp2_strerror(static_cast<int>(n))));
          return;
        }
        if (n == 0) break;
        if (state_ == State::kBroken) return;  // the caller aborts both sides
        more = true;
        std::string_view b(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
        (sess == up_ ? to_app : to_client)(b);
      }
    }
  }
  if (state_ == State::kHttp && !nghttp2_session_want_read(down_) &&
      !nghttp2_session_want_write(down_)) {
    state_ = State::kClosing;  // GOAWAY exchanged and no stream left
  }
}

void Http2ServerConnection::FromClient(std::string_view in, Sink to_app, Sink to_client) {
  if (state_ == State::kBroken) return;
  ssize_t n =
      nghttp2_session_mem_recv(down_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  if (n < 0) {
    Fail(absl::StrCat("not HTTP/2 from the client: ", nghttp2_strerror(static_cast<int>(n))));
    return;
  }
  Flush(to_app, to_client);
}

void Http2ServerConnection::FromApp(std::string_view in, Sink to_app, Sink to_client) {
  if (state_ == State::kBroken || app_gone_) return;
  ssize_t n = nghttp2_session_mem_recv(up_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  if (n < 0) {
    Fail(absl::StrCat("not HTTP/2 from the application: ", nghttp2_strerror(static_cast<int>(n))));
    return;
  }
  Flush(to_app, to_client);
}

void Http2ServerConnection::AppEof(Sink to_client) {
  if (state_ == State::kBroken || app_gone_) return;
  app_gone_ = true;
  std::vector<Stream*> open;
  for (auto& [id, s] : streams_) open.push_back(s.get());
  for (Stream* s : open) {
    // From here on the app session is never driven again (Flush skips it), so no data provider
    // of it runs: its streams count as closed.
    bool open_both = !s->down_closed && s->up_id > 0 && !s->up_closed;
    if (s->up_id > 0) s->up_closed = true;
    if (!open_both) {
      MaybeRelease(*s);
      continue;
    }
    if (!s->resp_submitted) {
      Reply(*s, LocalReply{503,
                           "upstream connect error or disconnect/reset before headers. "
                           "reset reason: connection termination"});
      s->ex.ended = Exchange::End::kServerEnded;
    } else if (!s->resp_complete) {
      s->ex.ended = Exchange::End::kServerEnded;
      nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s->down_id, NGHTTP2_INTERNAL_ERROR);
    }
  }
  if (!goaway_to_client_) {
    goaway_to_client_ = true;
    nghttp2_submit_goaway(down_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(down_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
  }
  Flush([](std::string_view) {}, to_client);
}

void Http2ServerConnection::Finish() {
  for (auto& [id, s] : streams_) {
    if (!s->resp_complete && !s->denied && s->ex.ended == Exchange::End::kComplete)
      s->ex.ended = Exchange::End::kClientEnded;
    Report(*s);
  }
  streams_.clear();
}

}  // namespace weft::ztunnel::l7
