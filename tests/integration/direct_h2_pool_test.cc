// HTTP/2 upstreams shared across client connections (issue 14): two real ztunnels on loopback, a
// Service declared HTTP/2 whose one endpoint is a small nghttp2 server that counts the
// connections it accepts, the streams it answers and the streams it sees reset, and can send
// GOAWAY after a number of requests per connection (as a server with a request limit per
// connection does). Clients are raw nghttp2 sessions on captured sockets, so each test knows
// exactly which client connection carried which request.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/direct_mesh_fixture.h"

namespace weft::ztunnel {
namespace {

using namespace direct_fixture;
using Clock = std::chrono::steady_clock;

// Points at the bytes of `n` and `v`: literals, or strings that outlive the submit call.
nghttp2_nv Nv(std::string_view n, std::string_view v) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// A DATA source that sends `body` (kept alive by the caller), consuming it, then END_STREAM.
nghttp2_data_provider StringBody(std::string* body) {
  nghttp2_data_provider prd;
  prd.source.ptr = body;
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
    auto* b = static_cast<std::string*>(src->ptr);
    const size_t n = std::min(len, b->size());
    memcpy(buf, b->data(), n);
    b->erase(0, n);
    if (b->empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  };
  return prd;
}

// An h2c server on one thread. Answers every request 200 with body "ok <path>", after
// /slow/MS's milliseconds. With goaway_after = K: at a connection's K-th request it sends
// GOAWAY (NO_ERROR, last-stream-id = that request's stream), answers the streams up to it, never
// the later ones (nghttp2 closes them), and closes once they are done.
class H2Server {
 public:
  explicit H2Server(IpAddr ip, int goaway_after = 0) : goaway_after_(goaway_after) {
    lfd_ = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int one = 1;
    setsockopt(lfd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss;
    socklen_t len = SockAddr{ip, 0}.ToSockaddr(&ss);
    if (bind(lfd_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
        listen(lfd_.get(), 64) != 0) {
      return;
    }
    port_ = LocalAddress(lfd_.get())->port;
    thread_ = std::thread([this] { Run(); });
  }
  ~H2Server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& c : conns_) nghttp2_session_del(c->session);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  int resets() const { return resets_.load(); }
  // Paths answered, with how often each was.
  std::map<std::string, int> answered() {
    std::lock_guard<std::mutex> l(mu_);
    return answered_;
  }

 private:
  struct Stream {
    std::string path;
    Clock::time_point due{};
    bool respond = false, responded = false;
  };
  struct Conn {
    H2Server* srv = nullptr;
    UniqueFd fd;
    nghttp2_session* session = nullptr;
    std::map<int32_t, Stream> streams;
    int requests = 0;
    int32_t goaway_id = 0;  // 0: none sent
    bool dead = false;
  };

  static int OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nl,
                      const uint8_t* value, size_t vl, uint8_t, void* u) {
    auto* c = static_cast<Conn*>(u);
    if (f->hd.type == NGHTTP2_HEADERS &&
        std::string_view(reinterpret_cast<const char*>(name), nl) == ":path")
      c->streams[f->hd.stream_id].path.assign(reinterpret_cast<const char*>(value), vl);
    return 0;
  }
  static int OnFrame(nghttp2_session* session, const nghttp2_frame* f, void* u) {
    auto* c = static_cast<Conn*>(u);
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
      return 0;
    auto it = c->streams.find(f->hd.stream_id);
    if (it == c->streams.end()) return 0;
    if (c->goaway_id && f->hd.stream_id > c->goaway_id) return 0;  // not processed
    Stream& s = it->second;
    int ms = 0;
    if (s.path.rfind("/slow/", 0) == 0) (void)absl::SimpleAtoi(s.path.substr(6), &ms);
    s.due = Clock::now() + std::chrono::milliseconds(ms);
    s.respond = true;
    if (c->srv->goaway_after_ > 0 && !c->goaway_id && ++c->requests == c->srv->goaway_after_) {
      c->goaway_id = f->hd.stream_id;
      nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, c->goaway_id, NGHTTP2_NO_ERROR, nullptr, 0);
    }
    return 0;
  }
  static int OnClose(nghttp2_session*, int32_t id, uint32_t code, void* u) {
    auto* c = static_cast<Conn*>(u);
    auto it = c->streams.find(id);
    if (it == c->streams.end()) return 0;
    if (code == NGHTTP2_CANCEL) c->srv->resets_++;
    if (code == NGHTTP2_NO_ERROR && it->second.responded) {
      std::lock_guard<std::mutex> l(c->srv->mu_);
      c->srv->answered_[it->second.path]++;
    }
    c->streams.erase(it);
    return 0;
  }

  void Respond(Conn& c, int32_t id, Stream& s) {
    s.responded = true;
    auto body = std::make_shared<std::string>("ok " + s.path);
    bodies_[{&c, id}] = body;
    nghttp2_data_provider prd = StringBody(body.get());
    std::string len = std::to_string(body->size());
    nghttp2_nv hdrs[] = {Nv(":status", "200"), Nv("content-length", len)};
    nghttp2_submit_response(c.session, id, hdrs, 2, &prd);
  }

  void Run() {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnClose);
    while (!stop_) {
      std::vector<pollfd> pfds{{lfd_.get(), POLLIN, 0}};
      for (auto& c : conns_) pfds.push_back({c->fd.get(), POLLIN, 0});
      poll(pfds.data(), pfds.size(), 2);
      if (pfds[0].revents & POLLIN) {
        int fd = accept4(lfd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          int one = 1;  // as gRPC servers do: the test times ztunnel's sockets, not this one's
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          accepted_++;
          auto c = std::make_unique<Conn>();
          c->srv = this;
          c->fd = UniqueFd(fd);
          nghttp2_session_server_new(&c->session, cbs, c.get());
          nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
          nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
          conns_.push_back(std::move(c));
        }
      }
      for (size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = *conns_[i];
        if (i + 1 < pfds.size() && (pfds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
          char buf[16384];
          ssize_t n = recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
          if (n <= 0 || nghttp2_session_mem_recv(c.session, reinterpret_cast<uint8_t*>(buf), n) < 0)
            c.dead = true;
        }
        const auto now = Clock::now();
        for (auto& [id, s] : c.streams)
          if (s.respond && !s.responded && s.due <= now) Respond(c, id, s);
        for (;;) {
          const uint8_t* d;
          ssize_t n = nghttp2_session_mem_send(c.session, &d);
          if (n <= 0) break;
          if (send(c.fd.get(), d, n, MSG_NOSIGNAL) != n) c.dead = true;  // small test traffic
        }
        if (!nghttp2_session_want_read(c.session) && !nghttp2_session_want_write(c.session))
          c.dead = true;  // GOAWAY sent and its streams done
      }
      for (size_t i = 0; i < conns_.size();) {
        if (!conns_[i]->dead) {
          ++i;
          continue;
        }
        for (auto it = bodies_.begin(); it != bodies_.end();)
          it = it->first.first == conns_[i].get() ? bodies_.erase(it) : std::next(it);
        nghttp2_session_del(conns_[i]->session);
        conns_.erase(conns_.begin() + static_cast<long>(i));
      }
    }
    nghttp2_session_callbacks_del(cbs);
  }

  const int goaway_after_;
  UniqueFd lfd_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0}, resets_{0};
  std::vector<std::unique_ptr<Conn>> conns_;
  std::map<std::pair<Conn*, int32_t>, std::shared_ptr<std::string>> bodies_;
  std::mutex mu_;
  std::map<std::string, int> answered_;
};

// A prior-knowledge h2c client on one captured socket, driven by the test's thread.
class H2Client {
 public:
  struct Result {
    int status = 0;
    std::string body;
    bool closed = false;
    uint32_t error = 0;
  };
  explicit H2Client(UniqueFd fd) : fd_(std::move(fd)) {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl,
                const uint8_t* v, size_t vl, uint8_t, void* u) {
          auto* c = static_cast<H2Client*>(u);
          if (std::string_view(reinterpret_cast<const char*>(n), nl) == ":status") {
            int st = 0;
            (void)absl::SimpleAtoi(std::string(reinterpret_cast<const char*>(v), vl), &st);
            c->results_[f->hd.stream_id].status = st;
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t n, void* u) {
          static_cast<H2Client*>(u)->results_[id].body.append(reinterpret_cast<const char*>(d), n);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, [](nghttp2_session*, int32_t id, uint32_t code, void* u) {
          auto& r = static_cast<H2Client*>(u)->results_[id];
          r.closed = true;
          r.error = code;
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          if (f->hd.type == NGHTTP2_WINDOW_UPDATE && f->hd.stream_id == 0)
            static_cast<H2Client*>(u)->connection_window_updates_++;
          return 0;
        });
    nghttp2_session_client_new(&session_, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~H2Client() { nghttp2_session_del(session_); }

  int32_t Get(const std::string& path) {
    nghttp2_nv h[] = {Nv(":method", "GET"), Nv(":scheme", "http"), Nv(":authority", "h2.test"),
                      Nv(":path", path)};
    int32_t id = nghttp2_submit_request(session_, nullptr, h, 4, nullptr, nullptr);
    results_[id];
    return id;
  }
  // A POST with `body` (a gRPC-like unary call: the whole request, then the response).
  int32_t Post(const std::string& path, const std::string& body) {
    nghttp2_nv h[] = {Nv(":method", "POST"), Nv(":scheme", "http"), Nv(":authority", "h2.test"),
                      Nv(":path", path), Nv("content-type", "application/grpc")};
    auto left = std::make_shared<std::string>(body);
    nghttp2_data_provider prd = StringBody(left.get());
    int32_t id = nghttp2_submit_request(session_, nullptr, h, 5, &prd, nullptr);
    bodies_[id] = std::move(left);
    results_[id];
    return id;
  }
  // Connection-level WINDOW_UPDATE frames received so far.
  int connection_window_updates() const { return connection_window_updates_; }
  // Sends and receives what is ready (waits up to `ms` for bytes).
  void Pump(int ms) {
    if (!fd_.valid()) return;
    for (;;) {
      const uint8_t* d;
      ssize_t n = nghttp2_session_mem_send(session_, &d);
      if (n <= 0) break;
      if (send(fd_.get(), d, n, MSG_NOSIGNAL) != n) broken_ = true;
    }
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return;
    char buf[16384];
    ssize_t n = recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0 || nghttp2_session_mem_recv(session_, reinterpret_cast<uint8_t*>(buf), n) < 0)
      broken_ = true;
  }
  bool Done() const {
    for (const auto& [id, r] : results_)
      if (!r.closed) return false;
    return true;
  }
  void Close() { fd_.reset(); }
  bool broken() const { return broken_; }
  const std::map<int32_t, Result>& results() const { return results_; }

 private:
  UniqueFd fd_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, Result> results_;
  std::map<int32_t, std::shared_ptr<std::string>> bodies_;  // request bodies being sent
  int connection_window_updates_ = 0;
  bool broken_ = false;
};

class DirectH2Pool : public DirectMesh {
 protected:
  static inline const SockAddr kVip = *SockAddr::Parse("10.96.0.40:80");

  void SetUp() override {
    server_ = std::make_unique<H2Server>(kServerIp, GoawayAfter());
    ASSERT_NE(server_->port(), 0);
    extra_services_ = R"(- name: h2
  namespace: ns-b
  hostname: h2.ns-b.svc.cluster.local
  addresses: ["10.96.0.40"]
  ports: [{port: 80, targetPort: )" +
                      std::to_string(server_->port()) + R"(, name: http2, appProtocol: http2}]
  endpoints: [{workloadUid: ns-b/server, ready: true}]
)";
    DirectMesh::SetUp();
  }
  virtual int GoawayAfter() const { return 0; }

  // Pumps every client until all their streams are closed (bounded).
  static bool PumpAll(std::vector<std::unique_ptr<H2Client>>& cs, std::chrono::seconds limit) {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
      bool done = true;
      for (auto& c : cs) {
        c->Pump(1);
        done &= c->Done() || c->broken();
      }
      if (done) return true;
    }
    return false;
  }
  // Every stream of `c` answered 200 with its own path.
  static void ExpectAllOk(const H2Client& c, const std::map<int32_t, std::string>& paths,
                          const std::string& who) {
    for (const auto& [id, path] : paths) {
      const auto& r = c.results().at(id);
      EXPECT_TRUE(r.closed && r.error == 0 && r.status == 200 && r.body == "ok " + path)
          << who << " stream " << id << " " << path << ": status " << r.status << " error "
          << r.error << " body '" << r.body << "'";
    }
  }

  std::unique_ptr<H2Server> server_;
};

TEST_F(DirectH2Pool, ManyClientConnectionsShareOneUpstreamConnection) {
  constexpr int kClients = 8, kEach = 6;
  std::vector<std::unique_ptr<H2Client>> cs;
  std::vector<std::map<int32_t, std::string>> paths(kClients);
  for (int i = 0; i < kClients; ++i) {
    cs.push_back(std::make_unique<H2Client>(Outbound(kVip)));
    for (int j = 0; j < kEach; ++j) {
      const std::string p = absl::StrCat("/slow/20/", i, "/", j);
      paths[i][cs.back()->Get(p)] = p;
    }
  }
  ASSERT_TRUE(PumpAll(cs, 20s));
  for (int i = 0; i < kClients; ++i) ExpectAllOk(*cs[i], paths[i], absl::StrCat("client ", i));
  // 48 requests from 8 client connections, multiplexed over one upstream HTTP/2 connection.
  EXPECT_EQ(server_->accepted(), 1);
  const std::map<std::string, std::string> src = {{"reporter", "source"},
                                                  {"destination_service_name", "h2"}};
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "istio_requests_total", src) == kClients * kEach; }))
      << Metrics(*a_);
  EXPECT_EQ(Metric(*a_, "istio_tcp_connections_opened_total", src), 1) << Metrics(*a_);
  // A second round on the same client connections reuses it.
  for (int i = 0; i < kClients; ++i) paths[i][cs[i]->Get("/again")] = "/again";
  ASSERT_TRUE(PumpAll(cs, 20s));
  for (int i = 0; i < kClients; ++i) ExpectAllOk(*cs[i], paths[i], absl::StrCat("client ", i));
  EXPECT_EQ(server_->accepted(), 1);
}

TEST_F(DirectH2Pool, AClientLeavingMidStreamCancelsOnlyItsOwnStreams) {
  std::vector<std::unique_ptr<H2Client>> cs;
  cs.push_back(std::make_unique<H2Client>(Outbound(kVip)));  // leaves
  cs.push_back(std::make_unique<H2Client>(Outbound(kVip)));  // stays
  std::map<int32_t, std::string> stay;
  for (int j = 0; j < 3; ++j) cs[0]->Get(absl::StrCat("/slow/3000/leaver/", j));
  for (int j = 0; j < 3; ++j) {
    const std::string p = absl::StrCat("/slow/400/stayer/", j);
    stay[cs[1]->Get(p)] = p;
  }
  // Both clients' requests are at the server (on one connection) before the first leaves.
  const auto end = Clock::now() + 5s;
  while (Clock::now() < end && server_->accepted() < 1) {
    for (auto& c : cs) c->Pump(1);
  }
  for (int i = 0; i < 100; ++i)
    for (auto& c : cs) c->Pump(1);
  cs[0]->Close();
  std::vector<std::unique_ptr<H2Client>> rest;
  rest.push_back(std::move(cs[1]));
  ASSERT_TRUE(PumpAll(rest, 20s));
  ExpectAllOk(*rest[0], stay, "the client that stayed");
  // The leaver's three streams were reset at the server, nothing else; one connection throughout.
  EXPECT_TRUE(WaitFor([&] { return server_->resets() == 3; })) << server_->resets();
  for (const auto& [path, n] : server_->answered())
    EXPECT_EQ(path.find("leaver"), std::string::npos) << path;
  const std::string p = "/after";
  std::map<int32_t, std::string> after{{rest[0]->Get(p), p}};
  ASSERT_TRUE(PumpAll(rest, 20s));
  ExpectAllOk(*rest[0], after, "the client that stayed, later");
  EXPECT_EQ(server_->accepted(), 1);
  const std::map<std::string, std::string> dc = {
      {"reporter", "source"}, {"destination_service_name", "h2"}, {"response_flags", "DC"}};
  EXPECT_TRUE(WaitFor([&] { return Metric(*a_, "istio_requests_total", dc) == 3; }))
      << Metrics(*a_);
}

// A unary call right after ztunnel gave the client connection window back (a WINDOW_UPDATE, sent
// as soon as the upstream took the request) must not wait for the client's delayed ACK: with
// Nagle on ztunnel's client socket, the response (a small write while the WINDOW_UPDATE was
// unacknowledged) was held until that ACK, 40 ms on Linux, every 512 KiB of requests per client
// connection (the gRPC p99 tails of issue 16's full run). Both ends set TCP_NODELAY, as gRPC
// does, so only ztunnel's sockets are timed. 16 KiB calls: a WINDOW_UPDATE every 32 calls.
TEST_F(DirectH2Pool, ACallAfterAConnectionWindowUpdateDoesNotWaitForADelayedAck) {
  auto fd = Outbound(kVip);
  int one = 1;
  ASSERT_EQ(setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
  H2Client c(std::move(fd));
  const std::string body(16 * 1024, 'g');
  constexpr int kCalls = 200;
  int with_update = 0, with_update_slow = 0, slow = 0;
  for (int i = 0; i < kCalls; ++i) {
    const int updates = c.connection_window_updates();
    const auto start = Clock::now();
    const int32_t id = c.Post(absl::StrCat("/unary/", i), body);
    const auto end = start + 5s;
    while (!c.results().at(id).closed && !c.broken() && Clock::now() < end) c.Pump(1);
    const auto took = Clock::now() - start;
    const auto& r = c.results().at(id);
    ASSERT_TRUE(r.closed && r.error == 0 && r.status == 200)
        << "call " << i << ": closed " << r.closed << " error " << r.error << " status " << r.status
        << " broken " << c.broken();
    const bool timer_sized = took >= 30ms;  // Linux's delayed ACK is at least 40 ms
    slow += timer_sized;
    if (i > 0 && c.connection_window_updates() > updates) {  // the first: the preface's
      ++with_update;
      with_update_slow += timer_sized;
    }
  }
  // 3.2 MiB of requests: ztunnel's 1 MiB connection window went back about 6 times.
  EXPECT_GE(with_update, 4);
  // Before the fix every one of these calls took 40+ ms; a busy machine may delay one.
  EXPECT_LE(with_update_slow, with_update / 2)
      << with_update_slow << " of " << with_update << " calls after a WINDOW_UPDATE took >= 30 ms";
  EXPECT_LE(slow, 3) << slow << " of " << kCalls << " calls took >= 30 ms";
}

class DirectH2PoolGoaway : public DirectH2Pool {
 protected:
  int GoawayAfter() const override { return 25; }
};

TEST_F(DirectH2PoolGoaway, AnUpstreamGoawayMidLoadLosesNoRequestItDidNotProcess) {
  // 4 client connections, 5 requests in flight each, 100 requests: the upstream sends GOAWAY
  // every 25 requests on a connection, so about 4 times mid-load, with streams above its
  // last-stream-id in flight. Those are sent again on a fresh connection; the ones it took are
  // answered on the old one. Every request gets its 200, and the server answered each once.
  constexpr int kClients = 4, kEach = 25, kWindow = 5;
  std::vector<std::unique_ptr<H2Client>> cs;
  std::vector<std::map<int32_t, std::string>> paths(kClients);
  std::vector<int> next(kClients, 0);
  for (int i = 0; i < kClients; ++i) cs.push_back(std::make_unique<H2Client>(Outbound(kVip)));
  const auto end = Clock::now() + 30s;
  for (bool more = true; more && Clock::now() < end;) {
    more = false;
    for (int i = 0; i < kClients; ++i) {
      int open = 0;
      for (const auto& [id, r] : cs[i]->results()) open += !r.closed;
      while (open < kWindow && next[i] < kEach) {
        const std::string p = absl::StrCat("/slow/2/", i, "/", next[i]++);
        paths[i][cs[i]->Get(p)] = p;
        ++open;
      }
      cs[i]->Pump(1);
      more |= next[i] < kEach || !cs[i]->Done();
      ASSERT_FALSE(cs[i]->broken()) << "client " << i;
    }
  }
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(cs[i]->Done()) << "client " << i;
    ExpectAllOk(*cs[i], paths[i], absl::StrCat("client ", i));
  }
  std::map<std::string, int> answered = server_->answered();
  EXPECT_EQ(answered.size(), static_cast<size_t>(kClients * kEach));
  for (const auto& [path, n] : answered) EXPECT_EQ(n, 1) << path;
  EXPECT_GE(server_->accepted(), 4);  // a GOAWAY every 25 requests
  const std::map<std::string, std::string> bad = {
      {"reporter", "source"}, {"destination_service_name", "h2"}, {"response_code", "503"}};
  EXPECT_EQ(Metric(*a_, "istio_requests_total", bad), 0) << Metrics(*a_);
}

}  // namespace
}  // namespace weft::ztunnel
