#include "ztunnel/l7/http2_server.h"

#include <nghttp2/nghttp2.h>

#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace weft::ztunnel::l7 {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;
using State = Http2ServerConnection::State;

// One end of a connection: a real nghttp2 session (client = the workload's client, server = the
// app), recording what each stream received.
struct Peer {
  struct Stream {
    Fields head, trailers;
    std::vector<Fields> interim;
    std::string data;
    bool ended = false, closed = false, got_head = false;
    uint32_t code = 0;
    std::string out;  // body to send
    size_t out_off = 0;
    bool out_eof = true;
    Fields out_trailers;
  };

  explicit Peer(bool server, bool auto_window = true) : server(server) {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl,
                const uint8_t* v, size_t vl, uint8_t, void* u) {
          auto* p = static_cast<Peer*>(u);
          Stream& s = p->st[f->hd.stream_id];
          std::pair<std::string, std::string> kv(std::string(reinterpret_cast<const char*>(n), nl),
                                                 std::string(reinterpret_cast<const char*>(v), vl));
          p->cur.push_back(std::move(kv));
          (void)s;
          return 0;
        });
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame*, void* u) {
          static_cast<Peer*>(u)->cur.clear();
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          auto* p = static_cast<Peer*>(u);
          if (f->hd.type == NGHTTP2_GOAWAY) p->goaway = true;
          if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
          Stream& s = p->st[f->hd.stream_id];
          if (f->hd.type == NGHTTP2_HEADERS) {
            bool interim = false;
            for (auto& [n, v] : p->cur) interim |= n == ":status" && v[0] == '1';
            if (interim) {
              s.interim.push_back(p->cur);
            } else if (!s.got_head) {
              s.head = p->cur;
              s.got_head = true;
            } else {
              s.trailers = p->cur;
            }
          }
          if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            s.ended = true;
            if (p->on_end) p->on_end(f->hd.stream_id);
          } else if (f->hd.type == NGHTTP2_HEADERS && p->server && p->on_head) {
            p->on_head(f->hd.stream_id);
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t n, void* u) {
          static_cast<Peer*>(u)->st[id].data.append(reinterpret_cast<const char*>(d), n);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, [](nghttp2_session*, int32_t id, uint32_t code, void* u) {
          auto& s = static_cast<Peer*>(u)->st[id];
          s.closed = true;
          s.code = code;
          return 0;
        });
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    if (!auto_window) nghttp2_option_set_no_auto_window_update(opt, 1);
    if (server) {
      nghttp2_session_server_new2(&s, cbs, this, opt);
    } else {
      nghttp2_session_client_new2(&s, cbs, this, opt);
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Peer() { nghttp2_session_del(s); }

  static std::vector<nghttp2_nv> Nv(const Fields& f) {
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : f)
      nv.push_back({(uint8_t*)n.data(), (uint8_t*)v.data(), n.size(), v.size(), 0});
    return nv;
  }
  static ssize_t Read(nghttp2_session* session, int32_t id, uint8_t* buf, size_t len,
                      uint32_t* flags, nghttp2_data_source*, void* u) {
    Stream& s = static_cast<Peer*>(u)->st[id];
    size_t n = std::min(len, s.out.size() - s.out_off);
    std::memcpy(buf, s.out.data() + s.out_off, n);
    s.out_off += n;
    if (s.out_off == s.out.size()) {
      if (!s.out_eof)
        return n ? static_cast<ssize_t>(n) : static_cast<ssize_t>(NGHTTP2_ERR_DEFERRED);
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s.out_trailers.empty()) {
        auto nv = Nv(s.out_trailers);
        nghttp2_submit_trailer(session, id, nv.data(), nv.size());
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
    }
    return static_cast<ssize_t>(n);
  }
  // Client: a request; body "" with end = true sends END_STREAM on the headers.
  int32_t Request(const Fields& f, std::string body = "", bool eof = true, Fields trailers = {}) {
    auto nv = Nv(f);
    nghttp2_data_provider prd{};
    prd.read_callback = Read;
    bool has_body = !body.empty() || !eof || !trailers.empty();
    int32_t id = nghttp2_submit_request(s, nullptr, nv.data(), nv.size(), has_body ? &prd : nullptr,
                                        nullptr);
    st[id].out = std::move(body);
    st[id].out_eof = eof;
    st[id].out_trailers = std::move(trailers);
    return id;
  }
  // Server: a response.
  void Respond(int32_t id, const Fields& f, std::string body, Fields trailers = {}) {
    st[id].out = std::move(body);
    st[id].out_trailers = std::move(trailers);
    auto nv = Nv(f);
    nghttp2_data_provider prd{};
    prd.read_callback = Read;
    bool has_body = !st[id].out.empty() || !st[id].out_trailers.empty();
    nghttp2_submit_response(s, id, nv.data(), nv.size(), has_body ? &prd : nullptr);
  }
  std::string Send() {
    std::string out;
    for (;;) {
      const uint8_t* d;
      ssize_t n = nghttp2_session_mem_send(s, &d);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(d), n);
    }
    return out;
  }
  void Recv(const std::string& b) {
    ssize_t n = nghttp2_session_mem_recv(s, reinterpret_cast<const uint8_t*>(b.data()), b.size());
    ASSERT_EQ(n, static_cast<ssize_t>(b.size())) << nghttp2_strerror(static_cast<int>(n));
  }
  static std::string Get(const Fields& f, const std::string& name) {
    for (auto& [n, v] : f)
      if (n == name) return v;
    return "";
  }

  nghttp2_session* s = nullptr;
  bool server;
  bool goaway = false;
  Fields cur;
  std::map<int32_t, Stream> st;
  std::function<void(int32_t)> on_end, on_head;
};

// Client <-> codec <-> app, with a gate that denies paths starting with "/deny" and normalises
// "/a/../b" to "/b".
struct Harness {
  explicit Harness(Http2Limits limits = {}, bool app_auto_window = true)
      : app(true, app_auto_window),
        conn(
            limits,
            [this](HttpRequestAttributes& r) -> std::optional<LocalReply> {
              gated.push_back(r);
              if (absl::StartsWith(r.path, "/deny")) return LocalReply{};
              if (r.path == "/a/../b") r.path = "/b";
              return std::nullopt;
            },
            [this](const Exchange& e) { done.push_back(e); }) {}

  // Moves bytes until nobody has anything to say.
  void Pump() {
    for (int i = 0; i < 1000; ++i) {
      std::string to_app, to_client;
      auto a = [&](std::string_view b) { to_app.append(b); };
      auto c = [&](std::string_view b) { to_client.append(b); };
      std::string from_client = client.Send();
      if (!from_client.empty()) conn.FromClient(from_client, a, c);
      std::string from_app = app.Send();
      if (!from_app.empty()) conn.FromApp(from_app, a, c);
      if (!to_app.empty()) app.Recv(to_app);
      if (!to_client.empty()) client.Recv(to_client);
      wire_to_app += to_app.size();
      if (from_client.empty() && from_app.empty() && to_app.empty() && to_client.empty()) return;
    }
    FAIL() << "no quiescence";
  }

  Peer client{false};
  Peer app;
  Http2ServerConnection conn;
  std::vector<HttpRequestAttributes> gated;
  std::vector<Exchange> done;
  size_t wire_to_app = 0;
};

const Fields kGet = {{":method", "GET"},
                     {":scheme", "http"},
                     {":authority", "svc:80"},
                     {":path", "/a?x=1"},
                     {"x-trace", "t1"}};

Fields Req(const std::string& method, const std::string& path, Fields extra = {}) {
  Fields f = {{":method", method}, {":scheme", "http"}, {":authority", "svc"}, {":path", path}};
  f.insert(f.end(), extra.begin(), extra.end());
  return f;
}

TEST(Http2ServerTest, AllowedAndDeniedStreamsShareOneConnection) {
  Harness h;
  h.app.on_end = [&](int32_t id) {
    h.app.Respond(id, {{":status", "200"}}, "echo:" + h.app.st[id].data);
  };
  int32_t ok = h.client.Request(kGet);
  int32_t denied = h.client.Request(Req("POST", "/deny/x"), "secret body");
  int32_t ok2 = h.client.Request(Req("POST", "/a/../b"), "hello");
  h.Pump();

  ASSERT_EQ(h.gated.size(), 3u);
  EXPECT_EQ(h.gated[0].method, "GET");
  EXPECT_EQ(h.gated[0].authority, "svc:80");
  EXPECT_EQ(h.gated[0].path, "/a?x=1");
  ASSERT_EQ(h.gated[0].headers.size(), 1u);
  EXPECT_EQ(h.gated[0].headers[0], (std::pair<std::string, std::string>{"x-trace", "t1"}));

  // The app saw two streams: the denied one never reached it, the rewritten path did.
  ASSERT_EQ(h.app.st.size(), 2u);
  std::vector<std::string> paths;
  for (auto& [id, s] : h.app.st) {
    paths.push_back(Peer::Get(s.head, ":path"));
    EXPECT_EQ(s.data.find("secret"), std::string::npos);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"/a?x=1", "/b"}));
  EXPECT_EQ(Peer::Get(h.app.st.begin()->second.head, "x-trace"), "t1");

  EXPECT_EQ(Peer::Get(h.client.st[ok].head, ":status"), "200");
  EXPECT_EQ(h.client.st[ok].data, "echo:");
  EXPECT_EQ(h.client.st[ok2].data, "echo:hello");
  EXPECT_EQ(Peer::Get(h.client.st[denied].head, ":status"), "403");
  EXPECT_EQ(h.client.st[denied].data, "RBAC: access denied");
  EXPECT_TRUE(h.client.st[ok].closed && h.client.st[ok2].closed && h.client.st[denied].ended);

  ASSERT_EQ(h.done.size(), 3u);
  int local = 0;
  for (auto& e : h.done) local += e.local_reply;
  EXPECT_EQ(local, 1);
  EXPECT_EQ(h.conn.state(), State::kHttp);
  EXPECT_EQ(h.conn.open_streams(), 0u);
  EXPECT_EQ(h.conn.buffered(), 0u);
}

TEST(Http2ServerTest, DeniedGrpcCallGetsTrailersOnlyPermissionDenied) {
  Harness h;
  int32_t id = h.client.Request(
      Req("POST", "/deny.Svc/Call", {{"content-type", "application/grpc"}, {"te", "trailers"}}),
      std::string("\0\0\0\0\0", 5));
  h.Pump();
  auto& s = h.client.st[id];
  EXPECT_EQ(Peer::Get(s.head, ":status"), "200");
  EXPECT_EQ(Peer::Get(s.head, "content-type"), "application/grpc");
  EXPECT_EQ(Peer::Get(s.head, "grpc-status"), "7");
  EXPECT_EQ(Peer::Get(s.head, "grpc-message"), "RBAC: access denied");
  EXPECT_TRUE(s.ended);
  EXPECT_TRUE(s.data.empty());
  EXPECT_TRUE(h.app.st.empty());
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].grpc_status, 7);
  EXPECT_EQ(h.done[0].status, 403);
}

TEST(Http2ServerTest, GrpcTrailersReachTheClientAndAreReported) {
  Harness h;
  h.app.on_end = [&](int32_t id) {
    h.app.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}},
                  std::string("\0\0\0\0\2ok", 7), {{"grpc-status", "0"}, {"grpc-message", ""}});
  };
  int32_t id = h.client.Request(
      Req("POST", "/pkg.Svc/Allowed", {{"content-type", "application/grpc"}, {"te", "trailers"}}),
      std::string("\0\0\0\0\0", 5), true, {{"x-client-trailer", "v"}});
  h.Pump();
  auto& app = h.app.st.begin()->second;
  EXPECT_EQ(Peer::Get(app.trailers, "x-client-trailer"), "v") << "request trailers forwarded";
  EXPECT_EQ(Peer::Get(app.head, "te"), "trailers");
  auto& s = h.client.st[id];
  EXPECT_EQ(s.data, std::string("\0\0\0\0\2ok", 7));
  EXPECT_EQ(Peer::Get(s.trailers, "grpc-status"), "0");
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].grpc_status, 0);
  EXPECT_EQ(h.done[0].status, 200);
  EXPECT_FALSE(h.done[0].local_reply);
}

TEST(Http2ServerTest, ClientResetReachesTheAppAndAppResetReachesTheClient) {
  Harness h;
  int32_t a = h.client.Request(Req("POST", "/up"), "part", false);
  int32_t b = h.client.Request(Req("POST", "/down"), "part", false);
  h.Pump();
  ASSERT_EQ(h.app.st.size(), 2u);
  nghttp2_submit_rst_stream(h.client.s, NGHTTP2_FLAG_NONE, a, NGHTTP2_CANCEL);
  h.Pump();
  int32_t app_a = 0, app_b = 0;
  for (auto& [id, s] : h.app.st) (Peer::Get(s.head, ":path") == "/up" ? app_a : app_b) = id;
  EXPECT_TRUE(h.app.st[app_a].closed);
  EXPECT_EQ(h.app.st[app_a].code, NGHTTP2_CANCEL);
  EXPECT_FALSE(h.app.st[app_b].closed);
  nghttp2_submit_rst_stream(h.app.s, NGHTTP2_FLAG_NONE, app_b, NGHTTP2_REFUSED_STREAM);
  h.Pump();
  EXPECT_TRUE(h.client.st[b].closed);
  EXPECT_EQ(h.client.st[b].code, NGHTTP2_REFUSED_STREAM);
  ASSERT_EQ(h.done.size(), 2u);
  EXPECT_EQ(h.done[0].ended, Exchange::End::kClientEnded);
  EXPECT_EQ(h.done[1].ended, Exchange::End::kServerEnded);
  EXPECT_EQ(h.conn.open_streams(), 0u);
  EXPECT_EQ(h.conn.state(), State::kHttp) << "a reset ends one stream, not the connection";
}

TEST(Http2ServerTest, SlowAppPausesTheClientInsteadOfBuffering) {
  Http2Limits limits;
  Harness h(limits, /*app_auto_window=*/false);  // the app never reads: its window stays shut
  const std::string big(4 << 20, 'x');
  int32_t id = h.client.Request(Req("POST", "/upload"), big);
  h.Pump();
  // The app's window (64 KiB per stream) is spent; the codec holds at most its own stream window;
  // the client is left with no window, its body mostly unsent.
  size_t at_app = h.app.st.begin()->second.data.size();
  EXPECT_LE(at_app, 65535u);
  EXPECT_LE(h.conn.buffered(), static_cast<size_t>(limits.stream_window));
  EXPECT_LE(at_app + h.conn.buffered(), 2u * 65536u);
  EXPECT_EQ(nghttp2_session_get_stream_remote_window_size(h.client.s, id), 0);
  EXPECT_LT(h.client.st[id].out_off, big.size() / 8) << "the client was not paused";
  // The app reads everything it got: the rest flows, still without ever buffering more.
  size_t consumed = 0;
  for (int i = 0; i < 5000 && !h.app.st.begin()->second.ended; ++i) {
    int32_t app_id = h.app.st.begin()->first;
    size_t n = h.app.st.begin()->second.data.size() - consumed;
    consumed += n;
    nghttp2_session_consume(h.app.s, app_id, n);
    h.Pump();
    EXPECT_LE(h.conn.buffered(), static_cast<size_t>(limits.stream_window));
  }
  EXPECT_EQ(h.app.st.begin()->second.data.size(), big.size());
  EXPECT_TRUE(h.app.st.begin()->second.data == big);
  EXPECT_TRUE(h.app.st.begin()->second.ended);
}

TEST(Http2ServerTest, ManyStreamsBufferAtMostTheConnectionWindow) {
  Http2Limits limits;
  Harness h(limits, /*app_auto_window=*/false);
  for (int i = 0; i < 40; ++i) h.client.Request(Req("POST", "/s"), std::string(256 << 10, 'y'));
  h.Pump();
  EXPECT_LE(h.conn.buffered(), static_cast<size_t>(limits.connection_window));
  EXPECT_GT(h.conn.buffered(), 0u);
}

TEST(Http2ServerTest, HeaderListOverTheLimitGets431) {
  Http2Limits limits;
  limits.max_fields = 5;
  Harness h(limits);
  int32_t id = h.client.Request(Req("GET", "/", {{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[id].head, ":status"), "431");
  EXPECT_TRUE(h.app.st.empty());
  EXPECT_TRUE(h.gated.empty()) << "refused before the gate";
}

TEST(Http2ServerTest, AppGoawayIsForwardedAndRefusedStreamsAreReset) {
  Harness h;
  int32_t a = h.client.Request(Req("POST", "/a"), "x", false);
  h.Pump();
  nghttp2_submit_goaway(h.app.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  h.Pump();
  EXPECT_TRUE(h.client.goaway);
  EXPECT_TRUE(h.client.st[a].closed);
  EXPECT_EQ(h.client.st[a].code, NGHTTP2_REFUSED_STREAM);
}

TEST(Http2ServerTest, ServerPushIsDisabledTowardsTheApp) {
  Harness h;
  h.client.Request(kGet);
  h.Pump();
  EXPECT_EQ(nghttp2_session_get_remote_settings(h.app.s, NGHTTP2_SETTINGS_ENABLE_PUSH), 0u);
  EXPECT_EQ(
      nghttp2_session_get_remote_settings(h.client.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
      100u);
}

TEST(Http2ServerTest, NotHttp2IsBroken) {
  Harness h;
  h.conn.FromClient(
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n", [](std::string_view) {}, [](std::string_view) {});
  EXPECT_EQ(h.conn.state(), State::kBroken);
  EXPECT_FALSE(h.conn.error().empty());
}

TEST(Http2ServerTest, AppEofAnswersWaitingStreamsWith503) {
  Harness h;
  int32_t id = h.client.Request(Req("GET", "/x"));
  h.Pump();
  std::string to_client;
  h.conn.AppEof([&](std::string_view b) { to_client.append(b); });
  h.client.Recv(to_client);
  EXPECT_EQ(Peer::Get(h.client.st[id].head, ":status"), "503");
  EXPECT_TRUE(h.client.goaway);
}

}  // namespace
}  // namespace weft::ztunnel::l7
