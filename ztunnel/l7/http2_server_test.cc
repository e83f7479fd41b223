#include "ztunnel/l7/http2_server.h"

#include <nghttp2/nghttp2.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "ztunnel/l7/http2_mirror.h"

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

// Source side: client <-> codec <-> upstreams (real nghttp2 server sessions, one per index the
// router names, "connected" when the codec first emits bytes for it). The gate allows everything
// and adds a request id; `route` decides (default: round-robin over the usable ones of 0..n-1).
struct RouterHarness {
  explicit RouterHarness(size_t n, Http2Limits limits = {})
      : n(n),
        conn(
            limits,
            [this](HttpRequestAttributes& r) -> std::optional<LocalReply> {
              gated.push_back(r);
              r.add_headers.emplace_back("x-request-id", "rid-" + std::to_string(gated.size()));
              r.add_headers.emplace_back("traceparent", "00-t-s-01");
              return std::nullopt;
            },
            [this](const Exchange& e) { done.push_back(e); },
            [this](const HttpRequestAttributes& r) { return route ? route(r) : RoundRobin(); }) {}

  std::variant<size_t, LocalReply> RoundRobin() {
    ++routed;
    for (size_t k = 0; k < n; ++k) {
      size_t i = next++ % n;
      if (conn.UpstreamUsable(i)) return i;
    }
    return LocalReply{503, "no healthy upstream"};
  }

  // The upstream at index i (created when the codec first talks to it).
  Peer& Up(size_t i) {
    auto& p = ups[i];
    if (!p) {
      p = std::make_unique<Peer>(true, /*auto_window=*/!slow.count(i));
      if (on_new) on_new(i, *p);
    }
    return *p;
  }

  void Pump() {
    for (int round = 0; round < 1000; ++round) {
      std::map<size_t, std::string> to_up;
      std::string to_client;
      auto u = [&](size_t i, std::string_view b) { to_up[i].append(b); };
      auto c = [&](std::string_view b) { to_client.append(b); };
      bool moved = false;
      std::string from_client = client.Send();
      if (!from_client.empty()) conn.FromClient(from_client, u, c);
      moved |= !from_client.empty();
      for (auto& [i, p] : ups) {
        if (dead.count(i) || !connected.count(i)) continue;
        std::string from = p->Send();
        if (!from.empty()) conn.FromUpstream(i, from, u, c);
        moved |= !from.empty();
      }
      for (auto& [i, b] : to_up) {
        moved |= !b.empty();
        if (b.empty() || dead.count(i)) continue;
        connected.insert(i);
        Up(i).Recv(b);
      }
      if (!to_client.empty()) client.Recv(to_client);
      moved |= !to_client.empty();
      if (!moved) return;
    }
    FAIL() << "no quiescence";
  }

  // Upstream i's transport ends (a close, a reset, or a connect that failed).
  void Kill(size_t i) {
    dead.insert(i);
    std::string to_client;
    conn.UpstreamEof(
        i, [](size_t, std::string_view) {}, [&](std::string_view b) { to_client.append(b); });
    if (!to_client.empty()) client.Recv(to_client);
  }

  const Exchange* DoneFor(const std::string& path) const {
    for (const auto& e : done)
      if (e.request.path == path) return &e;
    return nullptr;
  }

  size_t n;
  size_t next = 0, routed = 0;
  std::function<std::variant<size_t, LocalReply>(const HttpRequestAttributes&)> route;
  std::function<void(size_t, Peer&)> on_new;
  Peer client{false};
  std::map<size_t, std::unique_ptr<Peer>> ups;
  std::set<size_t> dead, slow, connected;
  Http2ServerConnection conn;
  std::vector<HttpRequestAttributes> gated;
  std::vector<Exchange> done;
};

// Every upstream answers each request when it ends, naming itself.
void AnswerAll(RouterHarness& h, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    Peer& p = h.Up(i);
    p.on_end = [&p, i](int32_t id) {
      p.Respond(id, {{":status", "200"}},
                "up" + std::to_string(i) + ":" + Peer::Get(p.st[id].head, ":path"));
    };
  }
}

TEST(Http2ServerRouterTest, RequestsOfOneConnectionSpreadOverUpstreams) {
  RouterHarness h(3);
  std::vector<int32_t> ids;
  for (int k = 0; k < 30; ++k)
    ids.push_back(h.client.Request(Req("GET", "/r/" + std::to_string(k))));
  h.Pump();
  // Nobody answered yet: each upstream holds its share, as the balancer sees it.
  ASSERT_EQ(h.ups.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(h.conn.UpstreamStreams(i), 10u) << i;
    EXPECT_EQ(h.ups[i]->st.size(), 10u) << i;
    EXPECT_TRUE(h.conn.UpstreamUsable(i));
  }
  for (auto& [i, p] : h.ups) {
    Peer* peer = p.get();
    for (auto& [id, s] : peer->st) {
      EXPECT_TRUE(absl::StartsWith(Peer::Get(s.head, "x-request-id"), "rid-"));
      EXPECT_EQ(Peer::Get(s.head, "traceparent"), "00-t-s-01");
      peer->Respond(id, {{":status", "200"}},
                    "up" + std::to_string(i) + ":" + Peer::Get(s.head, ":path"));
    }
  }
  h.Pump();
  for (int k = 0; k < 30; ++k) {
    auto& s = h.client.st[ids[k]];
    EXPECT_EQ(Peer::Get(s.head, ":status"), "200");
    EXPECT_EQ(s.data, "up" + std::to_string(k % 3) + ":/r/" + std::to_string(k)) << k;
    EXPECT_TRUE(s.ended);
  }
  ASSERT_EQ(h.done.size(), 30u);
  for (int k = 0; k < 30; ++k) {
    const Exchange* e = h.DoneFor("/r/" + std::to_string(k));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->upstream, k % 3);
    EXPECT_EQ(e->status, 200);
    EXPECT_FALSE(e->local_reply);
  }
  // Each request's own id reached its upstream, once.
  std::set<std::string> rids;
  for (auto& [i, p] : h.ups)
    for (auto& [id, s] : p->st) rids.insert(Peer::Get(s.head, "x-request-id"));
  EXPECT_EQ(rids.size(), 30u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(h.conn.UpstreamStreams(i), 0u);
  EXPECT_EQ(h.conn.open_streams(), 0u);
  EXPECT_EQ(h.conn.buffered(), 0u);
  EXPECT_EQ(h.conn.state(), State::kHttp);
}

TEST(Http2ServerRouterTest, AddHeadersReachTheAppWithoutARouterToo) {
  Http2ServerConnection::Gate gate = [](HttpRequestAttributes& r) -> std::optional<LocalReply> {
    r.add_headers.emplace_back("x-request-id", "abc");
    return std::nullopt;
  };
  Peer client(false), app(true);
  Http2ServerConnection conn({}, gate, [](const Exchange&) {});
  client.Request(kGet);
  for (int i = 0; i < 5; ++i) {
    std::string to_app, to_client;
    conn.FromClient(
        client.Send(), [&](std::string_view b) { to_app.append(b); },
        [&](std::string_view b) { to_client.append(b); });
    app.Recv(to_app);
    client.Recv(to_client);
  }
  ASSERT_EQ(app.st.size(), 1u);
  EXPECT_EQ(Peer::Get(app.st.begin()->second.head, "x-request-id"), "abc");
  EXPECT_EQ(Peer::Get(app.st.begin()->second.head, "x-trace"), "t1");
}

// More body (and the end) for a stream a Peer sends.
void More(Peer& p, int32_t id, const std::string& data, bool eof, Fields trailers = {}) {
  p.st[id].out += data;
  p.st[id].out_eof = eof;
  p.st[id].out_trailers = std::move(trailers);
  nghttp2_session_resume_data(p.s, id);
}

// kDefer (a fault delay, a retry's back-off): the request waits, its body held, until RouteNow;
// its stream's neighbours go on meanwhile. A deferred request the client reset is gone.
// ResponseEdit changes the final head's fields but never its pseudo-headers or content-length.
TEST(Http2ServerRouterTest, ADeferredRequestWaitsForRouteNowAndResponsesCanBeEdited) {
  RouterHarness h(1);
  std::set<std::string> defer = {"/held", "/reset"};
  std::map<std::string, const HttpRequestAttributes*> held;
  h.route = [&](const HttpRequestAttributes& r) -> std::variant<size_t, LocalReply> {
    if (defer.erase(r.path)) {
      held[r.path] = &r;
      return Http2ServerConnection::kDefer;
    }
    return size_t{0};
  };
  h.conn.SetResponseEdit([](const HttpRequestAttributes&, Fields* f) {
    for (auto& [n, v] : *f) {
      if (n == ":status" || n == "content-length") ADD_FAILURE() << "edit saw " << n;
      if (n == "x-up") v = "edited";
    }
    f->emplace_back("x-added", "1");
    f->emplace_back("connection", "close");  // forbidden in HTTP/2: dropped
  });
  h.on_new = [&](size_t, Peer& p) {
    p.on_end = [&p](int32_t id) {
      p.Respond(id, {{":status", "200"}, {"x-up", "raw"}, {"content-length", "4"}}, "done");
    };
  };
  int32_t a = h.client.Request(Req("POST", "/held"), "body-", /*eof=*/false);
  int32_t b = h.client.Request(Req("GET", "/other"));
  int32_t c = h.client.Request(Req("GET", "/reset"));
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[b].head, ":status"), "200") << "a neighbour is not held up";
  EXPECT_EQ(Peer::Get(h.client.st[b].head, "x-up"), "edited");
  EXPECT_EQ(Peer::Get(h.client.st[b].head, "x-added"), "1");
  EXPECT_EQ(Peer::Get(h.client.st[b].head, "content-length"), "4");
  EXPECT_EQ(Peer::Get(h.client.st[b].head, "connection"), "");
  EXPECT_TRUE(h.client.st[a].head.empty());
  More(h.client, a, "more", true);
  h.Pump();
  ASSERT_EQ(h.ups.size(), 1u);
  EXPECT_EQ(h.ups[0]->st.size(), 1u) << "only the neighbour reached the upstream";
  // The client gives up on /reset before it is routed.
  nghttp2_submit_rst_stream(h.client.s, NGHTTP2_FLAG_NONE, c, NGHTTP2_CANCEL);
  h.Pump();
  auto u = [](size_t, std::string_view) {};
  auto cl = [](std::string_view) {};
  EXPECT_FALSE(h.conn.RouteNow(*held["/reset"], u, cl)) << "its stream is gone";
  std::map<size_t, std::string> to_up;
  std::string to_client;
  ASSERT_TRUE(h.conn.RouteNow(
      *held["/held"], [&](size_t i, std::string_view x) { to_up[i].append(x); },
      [&](std::string_view x) { to_client.append(x); }));
  h.Up(0).Recv(to_up[0]);
  if (!to_client.empty()) h.client.Recv(to_client);
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[a].head, ":status"), "200");
  EXPECT_EQ(h.client.st[a].data, "done");
  bool found = false;
  for (auto& [id, s] : h.ups[0]->st)
    if (Peer::Get(s.head, ":path") == "/held") {
      found = true;
      EXPECT_EQ(s.data, "body-more") << "the body waited with it, whole";
    }
  EXPECT_TRUE(found);
  EXPECT_EQ(h.conn.open_streams(), 0u);
  EXPECT_EQ(h.conn.buffered(), 0u);
}

TEST(Http2ServerRouterTest, StreamingGrpcCallsWithTrailersThroughTheRouter) {
  RouterHarness h(3);
  const Fields grpc = {{"content-type", "application/grpc"}, {"te", "trailers"}};
  const std::string m1("\0\0\0\0\2m1", 7), m2("\0\0\0\0\2m2", 7);
  const std::string r1("\0\0\0\0\2r1", 7), r2("\0\0\0\0\2r2", 7);
  h.on_new = [&](size_t, Peer& p) {
    // Each call's response starts as soon as its head arrives, before the request ends.
    p.on_head = [&p, r1](int32_t id) {
      p.st[id].out_eof = false;
      p.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}}, r1);
    };
  };
  std::vector<int32_t> ids;
  for (int k = 0; k < 6; ++k)
    ids.push_back(h.client.Request(Req("POST", "/pkg.Svc/Chat" + std::to_string(k), grpc), m1,
                                   /*eof=*/false));
  h.Pump();
  for (int32_t id : ids) {
    EXPECT_EQ(h.client.st[id].data, r1) << "the response streams before the request ended";
    EXPECT_FALSE(h.client.st[id].ended);
  }
  for (int32_t id : ids) More(h.client, id, m2, true);
  h.Pump();
  for (auto& [i, p] : h.ups) {
    EXPECT_EQ(p->st.size(), 2u);
    for (auto& [id, s] : p->st) {
      EXPECT_EQ(s.data, m1 + m2);
      EXPECT_TRUE(s.ended);
      More(*p, id, r2, true, {{"grpc-status", "0"}, {"grpc-message", ""}});
    }
  }
  h.Pump();
  for (int32_t id : ids) {
    auto& s = h.client.st[id];
    EXPECT_EQ(s.data, r1 + r2);
    EXPECT_EQ(Peer::Get(s.trailers, "grpc-status"), "0");
    EXPECT_TRUE(s.ended);
  }
  ASSERT_EQ(h.done.size(), 6u);
  for (const auto& e : h.done) {
    EXPECT_EQ(e.grpc_status, 0);
    int k = e.request.path.back() - '0';
    EXPECT_EQ(e.upstream, k % 3);
  }
  EXPECT_EQ(h.conn.buffered(), 0u);
}

TEST(Http2ServerRouterTest, AnUpstreamThatEndsFailsOnlyItsOwnStreams) {
  RouterHarness h(3);
  // Upstream 1 answers nothing; the others answer when a request ends.
  AnswerAll(h, 3);
  h.ups[1]->on_end = nullptr;
  std::vector<int32_t> ids;
  for (int k = 0; k < 6; ++k)
    ids.push_back(h.client.Request(Req("GET", "/a/" + std::to_string(k))));
  h.Pump();
  // Upstream 1 sends the head of one of its two responses, and part of its body.
  int32_t headed = h.ups[1]->st.begin()->first;
  h.ups[1]->st[headed].out_eof = false;
  h.ups[1]->Respond(headed, {{":status", "200"}}, "part");
  h.Pump();
  EXPECT_EQ(h.conn.UpstreamStreams(1), 2u);
  h.Kill(1);
  h.Pump();
  EXPECT_FALSE(h.conn.UpstreamUsable(1));
  EXPECT_TRUE(h.conn.UpstreamUsable(0) && h.conn.UpstreamUsable(2));
  EXPECT_EQ(h.conn.UpstreamStreams(1), 0u);
  for (int k = 0; k < 6; ++k) {
    auto& s = h.client.st[ids[k]];
    const Exchange* e = h.DoneFor("/a/" + std::to_string(k));
    ASSERT_NE(e, nullptr) << k;
    EXPECT_EQ(e->upstream, k % 3);
    if (k % 3 != 1) {
      EXPECT_EQ(s.data, "up" + std::to_string(k % 3) + ":/a/" + std::to_string(k));
    } else if (k == 1) {  // the first request on upstream 1: its head went out, so a reset
      EXPECT_EQ(s.data, "part");
      EXPECT_TRUE(s.closed);
      EXPECT_EQ(s.code, NGHTTP2_INTERNAL_ERROR);
      EXPECT_EQ(e->ended, Exchange::End::kServerEnded);
      EXPECT_EQ(e->status, 200);
    } else {  // no head yet: Envoy's 503
      EXPECT_EQ(Peer::Get(s.head, ":status"), "503");
      EXPECT_EQ(s.data, kResetBeforeHeadersTermination);
      EXPECT_TRUE(e->local_reply);
      EXPECT_EQ(e->reason, kResetBeforeHeadersTermination);
      EXPECT_EQ(e->ended, Exchange::End::kServerEnded);
    }
  }
  // The router is not offered it again: new requests go to 0 and 2 only.
  std::vector<int32_t> more;
  for (int k = 0; k < 4; ++k)
    more.push_back(h.client.Request(Req("GET", "/b/" + std::to_string(k))));
  h.Pump();
  for (int k = 0; k < 4; ++k) {
    const Exchange* e = h.DoneFor("/b/" + std::to_string(k));
    ASSERT_NE(e, nullptr);
    EXPECT_NE(e->upstream, 1);
    EXPECT_EQ(Peer::Get(h.client.st[more[k]].head, ":status"), "200");
  }
  EXPECT_FALSE(h.client.goaway) << "one upstream ending is not the client connection's end";
  EXPECT_EQ(h.conn.state(), State::kHttp);
  EXPECT_EQ(h.conn.open_streams(), 0u);
}

TEST(Http2ServerRouterTest, AnUpstreamThatNeverAnsweredIsAConnectionFailure) {
  RouterHarness h(1);
  h.dead.insert(0);  // its bytes go nowhere and it never sends any
  int32_t id = h.client.Request(Req("GET", "/x"));
  h.Pump();
  h.Kill(0);
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[id].head, ":status"), "503");
  EXPECT_EQ(h.client.st[id].data, kResetBeforeHeadersFailure);
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].reason, kResetBeforeHeadersFailure);
  EXPECT_EQ(h.done[0].upstream, 0);
  // No usable upstream left: the router answers by itself.
  int32_t id2 = h.client.Request(Req("GET", "/y"));
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[id2].head, ":status"), "503");
  EXPECT_EQ(h.client.st[id2].data, "no healthy upstream");
}

TEST(Http2ServerRouterTest, StreamsAboveAnUpstreamsGoawayAreRoutedAgain) {
  RouterHarness h(2);
  // Prefer upstream 0 while it is usable.
  h.route = [&](const HttpRequestAttributes&) -> std::variant<size_t, LocalReply> {
    ++h.routed;
    return h.conn.UpstreamUsable(0) ? size_t{0} : size_t{1};
  };
  AnswerAll(h, 2);
  h.ups[0]->on_end = nullptr;  // upstream 0 holds its requests
  int32_t a = h.client.Request(Req("GET", "/g/0"));
  int32_t b = h.client.Request(Req("GET", "/g/1"));
  int32_t c = h.client.Request(Req("GET", "/g/2"));
  h.Pump();
  ASSERT_EQ(h.ups[0]->st.size(), 3u);
  EXPECT_TRUE(h.ups[1]->st.empty());
  // Upstream 0 goes away having processed only its first stream.
  int32_t first = h.ups[0]->st.begin()->first;
  nghttp2_submit_goaway(h.ups[0]->s, NGHTTP2_FLAG_NONE, first, NGHTTP2_NO_ERROR, nullptr, 0);
  h.Pump();
  EXPECT_FALSE(h.conn.UpstreamUsable(0));
  EXPECT_FALSE(h.conn.UpstreamFinished(0)) << "its first stream is still open";
  EXPECT_EQ(h.routed, 5u) << "the two unprocessed requests were routed again";
  EXPECT_EQ(h.client.st[b].data, "up1:/g/1");
  EXPECT_EQ(h.client.st[c].data, "up1:/g/2");
  EXPECT_FALSE(h.client.st[a].ended);
  h.ups[0]->Respond(first, {{":status", "200"}}, "up0:/g/0");
  h.Pump();
  EXPECT_EQ(h.client.st[a].data, "up0:/g/0");
  EXPECT_TRUE(h.conn.UpstreamFinished(0)) << "drained: the caller may close it";
  ASSERT_EQ(h.done.size(), 3u);
  EXPECT_EQ(h.DoneFor("/g/0")->upstream, 0);
  EXPECT_EQ(h.DoneFor("/g/1")->upstream, 1);
  EXPECT_EQ(h.DoneFor("/g/2")->upstream, 1);
  for (const auto& e : h.done) EXPECT_EQ(e.status, 200);
  EXPECT_FALSE(h.client.goaway);
  h.Kill(0);
  EXPECT_FALSE(h.conn.UpstreamFinished(0));
  EXPECT_EQ(h.conn.open_streams(), 0u);
}

TEST(Http2ServerRouterTest, RequestsQueuedForADrainingUpstreamAreRoutedAgain) {
  RouterHarness h(2);
  h.route = [&](const HttpRequestAttributes&) -> std::variant<size_t, LocalReply> {
    ++h.routed;
    return h.conn.UpstreamUsable(0) ? size_t{0} : size_t{1};
  };
  h.on_new = [](size_t i, Peer& p) {
    if (i != 0) return;
    const nghttp2_settings_entry one[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1}};
    nghttp2_submit_settings(p.s, NGHTTP2_FLAG_NONE, one, 1);
  };
  AnswerAll(h, 2);
  h.ups[0]->on_end = nullptr;
  int32_t a = h.client.Request(Req("GET", "/q/0"));
  h.Pump();  // upstream 0's SETTINGS (1 stream at a time) reach the codec
  int32_t b = h.client.Request(Req("POST", "/q/1"), "body-b");
  int32_t c = h.client.Request(Req("GET", "/q/2"));
  h.Pump();
  ASSERT_EQ(h.ups[0]->st.size(), 1u) << "the others wait in the codec's upstream session";
  int32_t first = h.ups[0]->st.begin()->first;
  nghttp2_submit_goaway(h.ups[0]->s, NGHTTP2_FLAG_NONE, first, NGHTTP2_NO_ERROR, nullptr, 0);
  h.Pump();
  EXPECT_EQ(h.client.st[b].data, "up1:/q/1");
  ASSERT_EQ(h.ups[1]->st.size(), 2u);
  EXPECT_EQ(h.ups[1]->st.begin()->second.data, "body-b") << "the body goes to the new upstream";
  EXPECT_EQ(h.client.st[c].data, "up1:/q/2");
  h.ups[0]->Respond(first, {{":status", "200"}}, "up0");
  h.Pump();
  EXPECT_EQ(h.client.st[a].data, "up0");
  EXPECT_EQ(h.conn.open_streams(), 0u);
  EXPECT_EQ(h.conn.buffered(), 0u);
}

// Upstream 0 while it is usable, else 1; upstream 0 holds its requests, 1 answers.
void PreferZeroWhichHolds(RouterHarness& h) {
  h.route = [&h](const HttpRequestAttributes&) -> std::variant<size_t, LocalReply> {
    ++h.routed;
    return h.conn.UpstreamUsable(0) ? size_t{0} : size_t{1};
  };
  AnswerAll(h, 2);
  h.ups[0]->on_end = nullptr;
}

TEST(Http2ServerRouterTest, ARefusedRequestIsSentAgainWithTheBodyAlreadySent) {
  Http2Limits limits;
  RouterHarness h(2, limits);
  PreferZeroWhichHolds(h);
  int32_t a = h.client.Request(Req("GET", "/a"));
  int32_t b = h.client.Request(Req("POST", "/b"), "sent", /*eof=*/false);
  h.Pump();
  ASSERT_EQ(h.ups[0]->st.size(), 2u);
  EXPECT_EQ(h.ups[0]->st.rbegin()->second.data, "sent");
  EXPECT_EQ(h.conn.buffered(), 4u) << "kept for a replay";
  nghttp2_submit_goaway(h.ups[0]->s, NGHTTP2_FLAG_NONE, h.ups[0]->st.begin()->first,
                        NGHTTP2_NO_ERROR, nullptr, 0);
  h.Pump();
  EXPECT_EQ(h.routed, 3u);
  ASSERT_EQ(h.ups[1]->st.size(), 1u);
  EXPECT_EQ(h.ups[1]->st.begin()->second.data, "sent") << "the body again, from its start";
  More(h.client, b, "+rest", true);
  h.Pump();
  EXPECT_EQ(h.ups[1]->st.begin()->second.data, "sent+rest");
  EXPECT_EQ(h.client.st[b].data, "up1:/b");
  EXPECT_FALSE(h.client.st[a].closed);
  EXPECT_EQ(h.DoneFor("/b")->upstream, 1);
  EXPECT_EQ(h.conn.buffered(), 0u);
}

TEST(Http2ServerRouterTest, ARefusedRequestWithMoreBodyThanKeptIsRefusedToTheClient) {
  RouterHarness h(2);
  PreferZeroWhichHolds(h);
  const std::string body(100 << 10, 'b');  // over the stream window kept for a replay
  int32_t b = h.client.Request(Req("POST", "/b"), body, /*eof=*/false);
  h.Pump();
  ASSERT_EQ(h.ups[0]->st.begin()->second.data.size(), body.size());
  EXPECT_EQ(h.conn.buffered(), 0u) << "nothing kept past the limit";
  nghttp2_submit_goaway(h.ups[0]->s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  h.Pump();
  EXPECT_TRUE(h.client.st[b].closed);
  EXPECT_EQ(h.client.st[b].code, NGHTTP2_REFUSED_STREAM) << "the client (gRPC) may retry";
  EXPECT_EQ(h.routed, 1u);
}

TEST(Http2ServerRouterTest, ARefusedRequestTheRouterThenAnswersDropsItsKeptBody) {
  RouterHarness h(1);
  h.route = [&h](const HttpRequestAttributes&) -> std::variant<size_t, LocalReply> {
    if (h.conn.UpstreamUsable(0)) return size_t{0};
    return LocalReply{503, "no healthy upstream"};
  };
  int32_t b = h.client.Request(Req("POST", "/b"), "sent", /*eof=*/false);
  h.Pump();
  EXPECT_EQ(h.conn.buffered(), 4u);
  nghttp2_submit_goaway(h.ups[0]->s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[b].head, ":status"), "503");
  EXPECT_EQ(h.conn.buffered(), 0u) << "the kept body (and its window) let go";
  More(h.client, b, "more", true);
  h.Pump();
  EXPECT_EQ(h.conn.buffered(), 0u);
  EXPECT_EQ(h.conn.open_streams(), 0u);
}

TEST(Http2ServerRouterTest, AStreamResetWithRefusedStreamIsRoutedAgainAFewTimesAtMost) {
  RouterHarness h(2);
  AnswerAll(h, 2);
  // Upstream 0 refuses every stream (RFC 9113 8.7: not processed) but stays usable.
  Peer& zero = h.Up(0);
  zero.on_end = [&zero](int32_t id) {
    nghttp2_submit_rst_stream(zero.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
  };
  int32_t a = h.client.Request(Req("GET", "/a"));
  h.Pump();
  EXPECT_EQ(h.routed, 2u);
  EXPECT_EQ(h.client.st[a].data, "up1:/a") << "routed again, round-robin, to upstream 1";
  EXPECT_EQ(h.DoneFor("/a")->upstream, 1);
  EXPECT_TRUE(h.conn.UpstreamUsable(0));
  // With only the refusing upstream, the client gets the refusal after kMaxReroutes.
  h.route = [&h](const HttpRequestAttributes&) -> std::variant<size_t, LocalReply> {
    ++h.routed;
    return size_t{0};
  };
  h.routed = 0;
  int32_t b = h.client.Request(Req("GET", "/b"));
  h.Pump();
  EXPECT_EQ(h.routed, 1u + Http2ServerConnection::kMaxReroutes);
  EXPECT_TRUE(h.client.st[b].closed);
  EXPECT_EQ(h.client.st[b].code, NGHTTP2_REFUSED_STREAM);
  EXPECT_EQ(h.conn.open_streams(), 0u);
}

TEST(Http2ServerRouterTest, AnAnsweredRequestIsNotKept) {
  RouterHarness h(1);
  h.on_new = [](size_t, Peer& p) {
    p.on_head = [&p](int32_t id) {
      p.st[id].out_eof = false;
      p.Respond(id, {{":status", "200"}}, "streaming");
    };
  };
  int32_t id = h.client.Request(Req("POST", "/chat"), "m1", /*eof=*/false);
  h.Pump();
  EXPECT_EQ(h.client.st[id].data, "streaming");
  More(h.client, id, "m2", false);
  h.Pump();
  EXPECT_EQ(h.ups[0]->st.begin()->second.data, "m1m2");
  EXPECT_EQ(h.conn.buffered(), 0u);
}

TEST(Http2ServerTest, ClientResetsGiveTheWindowOfTheirUnsentBodiesBack) {
  Http2Limits limits;
  Harness h(limits, /*app_auto_window=*/false);  // the app never reads
  // Each upload fills its stream's window in the codec (the app takes nothing after the first),
  // then the client resets it. nghttp2 sends WINDOW_UPDATE once half the connection window is
  // consumed: without the windows of the reset streams, the client would be left with
  // 1 MiB - 12 x 64 KiB.
  for (int i = 0; i < 12; ++i) {
    int32_t id = h.client.Request(Req("POST", "/upload"), std::string(200 << 10, 'x'));
    h.Pump();
    ASSERT_GT(h.conn.buffered(), 0u);
    nghttp2_submit_rst_stream(h.client.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    h.Pump();
    EXPECT_EQ(h.conn.buffered(), 0u);
  }
  EXPECT_GT(nghttp2_session_get_remote_window_size(h.client.s), limits.connection_window / 2);
}

TEST(Http2ServerRouterTest, TheRoutersLocalReplyReachesTheClient) {
  RouterHarness h(1);
  h.route = [](const HttpRequestAttributes& r) -> std::variant<size_t, LocalReply> {
    (void)r;
    return LocalReply{503, "no healthy upstream"};
  };
  int32_t id = h.client.Request(Req("GET", "/x"));
  int32_t g = h.client.Request(Req("POST", "/grpc", {{"content-type", "application/grpc"}}),
                               std::string("\0\0\0\0\0", 5));
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[id].head, ":status"), "503");
  EXPECT_EQ(h.client.st[id].data, "no healthy upstream");
  EXPECT_EQ(Peer::Get(h.client.st[g].head, "grpc-status"), "14") << "UNAVAILABLE";
  EXPECT_TRUE(h.ups.empty()) << "no upstream was ever opened";
  ASSERT_EQ(h.done.size(), 2u);
  for (const auto& e : h.done) {
    EXPECT_TRUE(e.local_reply);
    EXPECT_EQ(e.status, 503);
    EXPECT_EQ(e.upstream, -1);
  }
}

TEST(Http2ServerRouterTest, AnUpstreamThatBreaksHttp2FailsOnlyItsStreams) {
  RouterHarness h(2);
  AnswerAll(h, 2);
  h.ups[0]->on_end = nullptr;
  int32_t a = h.client.Request(Req("GET", "/a"));
  h.Pump();
  std::string to_client;
  h.conn.FromUpstream(
      0, std::string(64, '\xff'), [](size_t, std::string_view) {},
      [&](std::string_view b) { to_client.append(b); });
  h.client.Recv(to_client);
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[a].head, ":status"), "503");
  EXPECT_EQ(h.client.st[a].data, kResetBeforeHeadersProtocolError);
  EXPECT_FALSE(h.conn.UpstreamUsable(0));
  EXPECT_TRUE(h.conn.UpstreamFinished(0));
  int32_t b = h.client.Request(Req("GET", "/b"));
  h.Pump();
  EXPECT_EQ(h.client.st[b].data, "up1:/b");
  EXPECT_EQ(h.conn.state(), State::kHttp);
}

TEST(Http2ServerRouterTest, ASlowUpstreamPausesOnlyItsOwnStreams) {
  Http2Limits limits;
  RouterHarness h(2, limits);
  h.slow.insert(0);  // upstream 0 never reads: its window stays shut once spent
  h.route = [](const HttpRequestAttributes& r) -> std::variant<size_t, LocalReply> {
    return size_t{r.path == "/big" ? 0u : 1u};
  };
  AnswerAll(h, 2);
  const std::string big(4 << 20, 'x');
  int32_t up = h.client.Request(Req("POST", "/big"), big);
  h.Pump();
  std::vector<int32_t> small;
  for (int k = 0; k < 5; ++k) small.push_back(h.client.Request(Req("POST", "/s"), "tiny"));
  h.Pump();
  for (int32_t id : small) EXPECT_EQ(h.client.st[id].data, "up1:/s");
  EXPECT_LT(h.client.st[up].out_off, big.size() / 8) << "the big upload was paused";
  // One stream window not yet sent, and one sent but kept in case upstream 0 refuses it.
  EXPECT_LE(h.conn.buffered(), 2u * static_cast<size_t>(limits.stream_window));
  EXPECT_EQ(h.conn.UpstreamStreams(0), 1u);
}

TEST(Http2ServerRouterTest, NoUpstreamIsUsableOnceTheClientBrokeTheConnection) {
  RouterHarness h(2);
  AnswerAll(h, 2);
  h.client.Request(Req("GET", "/a"));
  h.Pump();
  EXPECT_TRUE(h.conn.UpstreamUsable(0));
  h.conn.FromClient(
      std::string(64, '\xff'), [](size_t, std::string_view) {}, [](std::string_view) {});
  EXPECT_EQ(h.conn.state(), State::kBroken);
  EXPECT_FALSE(h.conn.UpstreamUsable(0));
  EXPECT_FALSE(h.conn.UpstreamUsable(7)) << "nor a fresh one";
}

// ---- RequestMirror (SetMirror) ------------------------------------------------------------------

// What the mirror sink got, per request path: the copy, or "dropped" for a null one.
struct MirrorLog {
  struct Copy {
    Fields head, trailers;
    std::string body;
    bool dropped = false;
  };
  void Attach(Http2ServerConnection& conn, size_t max_body) {
    conn.SetMirror(
        [](const HttpRequestAttributes& r) { return absl::StartsWith(r.path, "/m"); },
        [this](const HttpRequestAttributes& r, const Http2ServerConnection::MirrorCopy* c) {
          Copy& k = got[r.path];
          ++calls[r.path];
          if (!c) {
            k.dropped = true;
            return;
          }
          k.head = c->head;
          k.body = std::string(c->body);
          k.trailers = c->trailers;
        },
        max_body);
  }
  std::map<std::string, Copy> got;
  std::map<std::string, int> calls;
};

// A mirrored request's copy is what its upstream got (the head as forwarded, with the gate's
// fields; the whole body; gRPC trailers), handed over once the request is whole; the primary
// streams are served as ever, and requests the route does not mirror are not copied.
TEST(Http2ServerRouterTest, AMirroredRequestIsCopiedWholeOnceItEnds) {
  RouterHarness h(2);
  AnswerAll(h, 2);
  MirrorLog log;
  log.Attach(h.conn, 64 * 1024);
  const Fields grpc = {{"content-type", "application/grpc"}, {"te", "trailers"}};
  const std::string msg("\0\0\0\0\5hello", 10);
  const std::string big(40 * 1024, 'b');
  int32_t get = h.client.Request(Req("GET", "/m/get"));
  int32_t post = h.client.Request(Req("POST", "/m/post"), big.substr(0, 1000), /*eof=*/false);
  int32_t call = h.client.Request(Req("POST", "/m/pkg.Svc/Call", grpc), msg, /*eof=*/true,
                                  {{"x-client-trailer", "t"}});
  int32_t plain = h.client.Request(Req("POST", "/plain"), "body");
  h.Pump();
  EXPECT_EQ(log.calls.count("/m/post"), 0u) << "not before the request is whole";
  More(h.client, post, big.substr(1000), true);
  h.Pump();
  for (int32_t id : {get, post, call, plain}) {
    EXPECT_EQ(Peer::Get(h.client.st[id].head, ":status"), "200") << id;
    EXPECT_TRUE(h.client.st[id].ended) << id;
  }
  EXPECT_EQ(log.calls.count("/plain"), 0u);
  ASSERT_EQ(log.calls["/m/get"], 1);
  ASSERT_EQ(log.calls["/m/post"], 1);
  ASSERT_EQ(log.calls["/m/pkg.Svc/Call"], 1);
  // Each copy equals what its upstream received.
  for (auto& [i, p] : h.ups) {
    for (auto& [id, s] : p->st) {
      const std::string path = Peer::Get(s.head, ":path");
      if (path == "/plain") continue;
      const MirrorLog::Copy& c = log.got[path];
      EXPECT_FALSE(c.dropped) << path;
      EXPECT_EQ(c.head, s.head) << path;
      EXPECT_EQ(c.body, s.data) << path;
      EXPECT_EQ(c.trailers, s.trailers) << path;
    }
  }
  EXPECT_TRUE(log.got["/m/get"].body.empty());
  EXPECT_EQ(log.got["/m/post"].body, big);
  EXPECT_EQ(log.got["/m/pkg.Svc/Call"].body, msg);
  EXPECT_EQ(Peer::Get(log.got["/m/pkg.Svc/Call"].trailers, "x-client-trailer"), "t");
  EXPECT_TRUE(absl::StartsWith(Peer::Get(log.got["/m/get"].head, "x-request-id"), "rid-"));
  EXPECT_EQ(h.conn.open_streams(), 0u);
  EXPECT_EQ(h.conn.buffered(), 0u);
}

// A body over the bound: the sink hears at once that there is no copy, and the request itself
// goes through whole. The copy is outside flow control: an upstream that does not read holds
// the stream, not the copy.
TEST(Http2ServerRouterTest, AMirroredBodyOverTheBoundIsNotCopiedAndTheRequestGoesOn) {
  RouterHarness h(1);
  AnswerAll(h, 1);
  MirrorLog log;
  log.Attach(h.conn, 4096);
  const std::string body(10000, 'x');
  int32_t over = h.client.Request(Req("POST", "/m/over"), body);
  int32_t under = h.client.Request(Req("POST", "/m/under"), body.substr(0, 4096));
  h.Pump();
  EXPECT_EQ(log.calls["/m/over"], 1);
  EXPECT_TRUE(log.got["/m/over"].dropped);
  EXPECT_FALSE(log.got["/m/under"].dropped);
  EXPECT_EQ(log.got["/m/under"].body.size(), 4096u);
  EXPECT_EQ(Peer::Get(h.client.st[over].head, ":status"), "200");
  EXPECT_EQ(Peer::Get(h.client.st[under].head, ":status"), "200");
  bool found = false;
  for (auto& [id, s] : h.ups[0]->st) {
    if (Peer::Get(s.head, ":path") != "/m/over") continue;
    found = true;
    EXPECT_EQ(s.data, body);
  }
  EXPECT_TRUE(found);
}

// Nothing to mirror: a request answered locally (by the router), or reset by the client before
// it was whole. A deferred request is copied once it is routed, not before.
TEST(Http2ServerRouterTest, LocalRepliesAndResetRequestsAreNotMirroredAndDeferredOnesWait) {
  RouterHarness h(1);
  AnswerAll(h, 1);
  MirrorLog log;
  log.Attach(h.conn, 64 * 1024);
  const HttpRequestAttributes* held = nullptr;
  h.route = [&](const HttpRequestAttributes& r) -> std::variant<size_t, LocalReply> {
    if (r.path == "/m/local") return LocalReply{503, "no healthy upstream"};
    if (r.path == "/m/held" && !held) {
      held = &r;
      return Http2ServerConnection::kDefer;
    }
    return size_t{0};
  };
  int32_t local = h.client.Request(Req("POST", "/m/local"), "abc");
  int32_t reset = h.client.Request(Req("POST", "/m/reset"), "part", /*eof=*/false);
  h.client.Request(Req("POST", "/m/held"), "later");
  h.Pump();
  EXPECT_EQ(Peer::Get(h.client.st[local].head, ":status"), "503");
  nghttp2_submit_rst_stream(h.client.s, NGHTTP2_FLAG_NONE, reset, NGHTTP2_CANCEL);
  h.Pump();
  EXPECT_TRUE(log.calls.empty()) << log.calls.size();
  ASSERT_NE(held, nullptr);
  std::map<size_t, std::string> to_up;
  ASSERT_TRUE(h.conn.RouteNow(
      *held, [&](size_t i, std::string_view x) { to_up[i].append(x); }, [](std::string_view) {}));
  h.Up(0).Recv(to_up[0]);
  h.Pump();
  EXPECT_EQ(log.calls["/m/held"], 1);
  EXPECT_EQ(log.got["/m/held"].body, "later");
  EXPECT_EQ(log.calls.size(), 1u);
  EXPECT_EQ(h.conn.open_streams(), 0u);
}

// ---- Http2MirrorRequest: the copy's own connection ----------------------------------------------

// Moves bytes between a mirror request and a server Peer until neither has more.
void PumpMirror(Http2MirrorRequest& m, Peer& server) {
  for (int i = 0; i < 1000; ++i) {
    std::string out = m.TakeOutput();
    if (!out.empty()) server.Recv(out);
    std::string in = server.Send();
    if (!in.empty()) m.FromServer(in);
    if (out.empty() && in.empty()) return;
  }
  FAIL() << "no quiescence";
}

// The copy goes out as one request (a body over the server's initial window waits for its
// WINDOW_UPDATE), its response is read and dropped, and a GOAWAY ends the connection.
TEST(Http2MirrorRequestTest, SendsTheWholeRequestAndEndsWithItsResponse) {
  Peer server(true);
  server.on_end = [&server](int32_t id) {
    server.Respond(id, {{":status", "200"}}, std::string(100 * 1024, 'r'), {{"grpc-status", "0"}});
  };
  const std::string body(64 * 1024, 'q');
  Http2MirrorRequest m(Req("POST", "/pkg.Svc/Call", {{"content-type", "application/grpc"}}), body,
                       {{"x-t", "1"}});
  PumpMirror(m, server);
  ASSERT_EQ(server.st.size(), 1u);
  const Peer::Stream& s = server.st.begin()->second;
  EXPECT_EQ(Peer::Get(s.head, ":path"), "/pkg.Svc/Call");
  EXPECT_EQ(Peer::Get(s.head, "content-type"), "application/grpc");
  EXPECT_EQ(s.data, body);
  EXPECT_EQ(Peer::Get(s.trailers, "x-t"), "1");
  EXPECT_TRUE(s.ended);
  EXPECT_TRUE(m.done());
  EXPECT_FALSE(m.failed());
  EXPECT_EQ(m.status(), 200);
  EXPECT_TRUE(server.goaway) << "the connection is closed politely";
  EXPECT_EQ(m.pending(), 0u);

  Peer bodiless(true);
  bodiless.on_end = [&bodiless](int32_t id) { bodiless.Respond(id, {{":status", "404"}}, ""); };
  Http2MirrorRequest get(Req("GET", "/x"), "", {});
  PumpMirror(get, bodiless);
  ASSERT_EQ(bodiless.st.size(), 1u);
  EXPECT_TRUE(bodiless.st.begin()->second.ended);
  EXPECT_TRUE(bodiless.st.begin()->second.data.empty());
  EXPECT_TRUE(get.done());
  EXPECT_FALSE(get.failed()) << "any answer will do: it is dropped";
  EXPECT_EQ(get.status(), 404);
}

// No answer: a reset before the response head, or bytes that are not HTTP/2, end it as failed.
TEST(Http2MirrorRequestTest, AResetOrAServerThatIsNotHttp2FailsIt) {
  Peer server(true);
  server.on_end = [&server](int32_t id) {
    nghttp2_submit_rst_stream(server.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
  };
  Http2MirrorRequest m(Req("GET", "/x"), "", {});
  PumpMirror(m, server);
  EXPECT_TRUE(m.done());
  EXPECT_TRUE(m.failed());

  Http2MirrorRequest h1(Req("GET", "/x"), "", {});
  EXPECT_FALSE(h1.TakeOutput().empty());
  h1.FromServer("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
  EXPECT_TRUE(h1.done());
  EXPECT_TRUE(h1.failed());
}

}  // namespace
}  // namespace weft::ztunnel::l7
