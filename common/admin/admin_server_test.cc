#include "common/admin/admin_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <prometheus/counter.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/testing/kernel_features.h"
#include "nlohmann/json.hpp"

namespace weft {
namespace {

const bool kCurlInit = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();

struct HttpResult {
  long code = 0;
  std::string body;
  std::string content_type;
  std::string headers;
  long new_connections = -1;
  std::string error;
};

size_t Append(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

std::string Url(const SockAddr& a, const std::string& path) {
  return "http://" + a.ToString() + path;
}

// One request on `curl` (a reused handle keeps its connection alive).
HttpResult Fetch(CURL* curl, const std::string& method, const std::string& url) {
  HttpResult r;
  curl_easy_reset(curl);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.headers);
  if (method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
  } else if (method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) {
    r.error = curl_easy_strerror(rc);
    return r;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.code);
  char* ct = nullptr;
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
  if (ct) r.content_type = ct;
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &r.new_connections);
  return r;
}

HttpResult Fetch(const std::string& method, const std::string& url) {
  CURL* c = curl_easy_init();
  HttpResult r = Fetch(c, method, url);
  curl_easy_cleanup(c);
  return r;
}

// A raw TCP client for the malformed-input tests.
int Connect(const SockAddr& a) {
  sockaddr_storage ss;
  socklen_t len = a.ToSockaddr(&ss);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early on bad input; that is what we test
    off += n;
  }
}

// Reads until the peer closes (returns true) or `timeout` passes (returns false).
bool ReadUntilClosed(int fd, std::chrono::milliseconds timeout, std::string* got) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;  // EOF or reset: closed either way
    got->append(buf, n);
  }
}

SockAddr Loopback4() {
  return SockAddr{IpAddr::V4(INADDR_LOOPBACK), 0};
}

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kCurlInit);
    saved_level_ = log::GetLevel();
    registry_ = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter()
        .Name("test_widgets_total")
        .Help("widgets")
        .Register(*registry_)
        .Add({{"kind", "round"}})
        .Increment(7);
  }
  void TearDown() override { log::SetLevel(saved_level_); }

  AdminOptions Options() {
    AdminOptions o;
    o.admin_addr = o.metrics_addr = o.readiness_addr = Loopback4();
    o.registries = {registry_};
    o.config_dump = [] {
      return std::string(R"({"workloads":[{"name":"sleep"}],"version":"v7"})");
    };
    o.not_ready_reason = [this] {
      std::lock_guard<std::mutex> l(mu_);
      return not_ready_;
    };
    return o;
  }

  void SetNotReady(std::string r) {
    std::lock_guard<std::mutex> l(mu_);
    not_ready_ = std::move(r);
  }

  std::unique_ptr<AdminServer> StartServer(AdminOptions o) {
    auto s = std::make_unique<AdminServer>(std::move(o));
    absl::Status st = s->Start();
    EXPECT_TRUE(st.ok()) << st;
    return s;
  }

  log::Level saved_level_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex mu_;
  std::string not_ready_ = "waiting for initial config";
};

TEST_F(AdminServerTest, BoundAddressesAreResolved) {
  auto s = StartServer(Options());
  for (const SockAddr& a : {s->admin_addr(), s->metrics_addr(), s->readiness_addr()}) {
    EXPECT_NE(a.port, 0);
    EXPECT_EQ(a.ip.ToString(), "127.0.0.1");
  }
  EXPECT_NE(s->admin_addr().port, s->metrics_addr().port);
  EXPECT_NE(s->metrics_addr().port, s->readiness_addr().port);
}

TEST_F(AdminServerTest, MetricsRendersRegistries) {
  auto s = StartServer(Options());
  HttpResult r = Fetch("GET", Url(s->metrics_addr(), "/metrics"));
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.content_type.rfind("text/plain; version=0.0.4", 0), 0u) << r.content_type;
  EXPECT_NE(r.body.find("# TYPE test_widgets_total counter\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("test_widgets_total{kind=\"round\"} 7\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\nweft_admin_bad_requests_total 0\n"), std::string::npos) << r.body;

  HttpResult head = Fetch("HEAD", Url(s->metrics_addr(), "/metrics"));
  EXPECT_EQ(head.code, 200);
  EXPECT_EQ(head.body, "");
  EXPECT_NE(head.headers.find("Content-Length: "), std::string::npos) << head.headers;

  HttpResult post = Fetch("POST", Url(s->metrics_addr(), "/metrics"));
  EXPECT_EQ(post.code, 405);
  EXPECT_NE(post.headers.find("Allow: GET, HEAD"), std::string::npos) << post.headers;
}

TEST_F(AdminServerTest, MetricsRendersAllRegistriesInOrder) {
  auto second = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("second_thing_total").Help("x").Register(*second).Add({});
  AdminOptions o = Options();
  o.registries.push_back(second);
  auto s = StartServer(std::move(o));
  HttpResult r = Fetch("GET", Url(s->metrics_addr(), "/metrics"));
  EXPECT_EQ(r.code, 200);
  size_t first = r.body.find("test_widgets_total");
  size_t other = r.body.find("second_thing_total 0\n");
  EXPECT_NE(first, std::string::npos);
  EXPECT_NE(other, std::string::npos);
  EXPECT_LT(first, other);
  // The bad-request counter went to the first registry only.
  EXPECT_EQ(second->Collect().size(), 1u);
}

TEST_F(AdminServerTest, MetricsRendersProcessMetricsUnlessTurnedOff) {
  auto s = StartServer(Options());
  HttpResult r = Fetch("GET", Url(s->metrics_addr(), "/metrics"));
  EXPECT_EQ(r.code, 200);
  for (const char* want :
       {"# TYPE process_cpu_seconds_total counter\n", "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n", "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n",
        "# TYPE process_start_time_seconds gauge\n"}) {
    EXPECT_NE(r.body.find(want), std::string::npos) << want << r.body;
  }
  AdminOptions o = Options();
  o.process_metrics = false;
  auto quiet = StartServer(std::move(o));
  HttpResult q = Fetch("GET", Url(quiet->metrics_addr(), "/metrics"));
  EXPECT_EQ(q.code, 200);
  EXPECT_EQ(q.body.find("process_"), std::string::npos) << q.body;
}

TEST_F(AdminServerTest, ServesOwnRegistryWhenNoneGiven) {
  AdminOptions o = Options();
  o.registries.clear();
  auto s = StartServer(std::move(o));
  HttpResult r = Fetch("GET", Url(s->metrics_addr(), "/metrics"));
  EXPECT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("weft_admin_bad_requests_total 0\n"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("test_widgets_total"), std::string::npos);
}

TEST_F(AdminServerTest, ConfigDump) {
  auto s = StartServer(Options());
  HttpResult r = Fetch("GET", Url(s->admin_addr(), "/config_dump"));
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.content_type, "application/json");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["version"], "v7");
  EXPECT_EQ(j["workloads"][0]["name"], "sleep");
  EXPECT_EQ(Fetch("DELETE", Url(s->admin_addr(), "/config_dump")).code, 405);
}

TEST_F(AdminServerTest, JsonHandlersGetTheirQueryAndMapErrors) {
  AdminOptions o = Options();
  o.json_handlers["/status"] =
      [](const std::map<std::string, std::string>& q) -> absl::StatusOr<std::string> {
    auto it = q.find("node");
    if (it == q.end()) return absl::InvalidArgumentError("give ?node=NAME");
    if (it->second == "ghost") return absl::NotFoundError("no node ghost");
    return nlohmann::json{{"node", it->second}}.dump();
  };
  auto s = StartServer(std::move(o));
  HttpResult ok = Fetch("GET", Url(s->admin_addr(), "/status?node=node-1&x=y"));
  EXPECT_EQ(ok.code, 200);
  EXPECT_EQ(ok.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(ok.body)["node"], "node-1");
  HttpResult bad = Fetch("GET", Url(s->admin_addr(), "/status"));
  EXPECT_EQ(bad.code, 400);
  EXPECT_NE(bad.body.find("give ?node=NAME"), std::string::npos) << bad.body;
  EXPECT_EQ(Fetch("GET", Url(s->admin_addr(), "/status?node=ghost")).code, 404);
  EXPECT_EQ(Fetch("POST", Url(s->admin_addr(), "/status?node=a")).code, 405);
  // The plain config_dump callback still serves /config_dump.
  EXPECT_EQ(Fetch("GET", Url(s->admin_addr(), "/config_dump")).code, 200);
}

TEST_F(AdminServerTest, ConfigDumpCallbackErrorsAreServerErrors) {
  AdminOptions o = Options();
  o.config_dump = []() -> std::string { throw std::runtime_error("snapshot unavailable"); };
  auto s = StartServer(std::move(o));
  HttpResult r = Fetch("GET", Url(s->admin_addr(), "/config_dump"));
  EXPECT_EQ(r.code, 500);
  EXPECT_NE(r.body.find("snapshot unavailable"), std::string::npos) << r.body;
  // And the server is still there.
  EXPECT_EQ(Fetch("GET", Url(s->readiness_addr(), "/healthz/ready")).code, 503);

  AdminOptions none = Options();
  none.config_dump = nullptr;
  auto s2 = StartServer(std::move(none));
  EXPECT_EQ(Fetch("GET", Url(s2->admin_addr(), "/config_dump")).code, 503);
}

TEST_F(AdminServerTest, LoggingGetAndSet) {
  log::SetLevel(log::Level::kInfo);
  auto s = StartServer(Options());
  std::string url = Url(s->admin_addr(), "/logging");

  HttpResult get = Fetch("GET", url);
  EXPECT_EQ(get.code, 200);
  EXPECT_EQ(get.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(get.body), nlohmann::json({{"level", "info"}}));

  HttpResult post = Fetch("POST", url + "?level=debug");
  EXPECT_EQ(post.code, 200) << post.body;
  EXPECT_EQ(nlohmann::json::parse(post.body)["level"], "debug");
  EXPECT_EQ(log::GetLevel(), log::Level::kDebug);

  HttpResult put = Fetch("PUT", url + "?level=error");
  EXPECT_EQ(put.code, 200) << put.body;
  EXPECT_EQ(log::GetLevel(), log::Level::kError);
  EXPECT_EQ(nlohmann::json::parse(Fetch("GET", url).body)["level"], "error");

  HttpResult bad = Fetch("POST", url + "?level=verbose");
  EXPECT_EQ(bad.code, 400);
  EXPECT_NE(bad.body.find("verbose"), std::string::npos) << bad.body;
  EXPECT_NE(bad.body.find("debug, info, warn, error, off"), std::string::npos) << bad.body;
  EXPECT_EQ(log::GetLevel(), log::Level::kError);

  HttpResult missing = Fetch("POST", url);
  EXPECT_EQ(missing.code, 400);
  EXPECT_NE(missing.body.find("debug, info, warn, error, off"), std::string::npos);

  // GET never changes state.
  EXPECT_EQ(Fetch("GET", url + "?level=debug").code, 405);
  EXPECT_EQ(log::GetLevel(), log::Level::kError);
  EXPECT_EQ(Fetch("DELETE", url).code, 405);
}

TEST_F(AdminServerTest, ReadinessFollowsReasonFunction) {
  auto s = StartServer(Options());
  std::string url = Url(s->readiness_addr(), "/healthz/ready");
  HttpResult r = Fetch("GET", url);
  EXPECT_EQ(r.code, 503);
  EXPECT_EQ(r.body, "waiting for initial config\n");

  SetNotReady("");
  r = Fetch("GET", url);
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.body, "ready\n");

  SetNotReady("certificate for spiffe://td/ns/a/sa/b not issued yet");
  r = Fetch("GET", url);
  EXPECT_EQ(r.code, 503);
  EXPECT_NE(r.body.find("not issued yet"), std::string::npos);
}

TEST_F(AdminServerTest, UnknownPathsAndWrongPortAre404) {
  auto s = StartServer(Options());
  EXPECT_EQ(Fetch("GET", Url(s->admin_addr(), "/nope")).code, 404);
  EXPECT_EQ(Fetch("GET", Url(s->metrics_addr(), "/")).code, 404);
  EXPECT_EQ(Fetch("GET", Url(s->readiness_addr(), "/healthz")).code, 404);
  // Each endpoint lives on its own port only.
  EXPECT_EQ(Fetch("GET", Url(s->admin_addr(), "/metrics")).code, 404);
  EXPECT_EQ(Fetch("GET", Url(s->metrics_addr(), "/config_dump")).code, 404);
  HttpResult r = Fetch("GET", Url(s->readiness_addr(), "/metrics"));
  EXPECT_EQ(r.code, 404);
  EXPECT_NE(r.body.find("/healthz/ready"), std::string::npos) << r.body;
  EXPECT_EQ(s->bad_requests(), 0u);
}

TEST_F(AdminServerTest, KeepAliveReusesConnection) {
  auto s = StartServer(Options());
  CURL* c = curl_easy_init();
  HttpResult a = Fetch(c, "GET", Url(s->metrics_addr(), "/metrics"));
  HttpResult b = Fetch(c, "GET", Url(s->metrics_addr(), "/metrics"));
  curl_easy_cleanup(c);
  EXPECT_EQ(a.code, 200);
  EXPECT_EQ(b.code, 200);
  EXPECT_EQ(a.new_connections, 1);
  EXPECT_EQ(b.new_connections, 0);  // second request went over the first connection

  // Two pipelined requests on one raw connection get two responses in order.
  int fd = Connect(s->readiness_addr());
  ASSERT_GE(fd, 0);
  SendAll(fd,
          "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n"
          "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string got;
  EXPECT_TRUE(ReadUntilClosed(fd, std::chrono::seconds(5), &got));
  close(fd);
  size_t first = got.find("HTTP/1.1 503");
  size_t second = got.find("HTTP/1.1 404");
  EXPECT_NE(first, std::string::npos) << got;
  EXPECT_NE(second, std::string::npos) << got;
  EXPECT_LT(first, second);
}

TEST_F(AdminServerTest, GarbageClosesConnectionAndServerKeepsServing) {
  auto s = StartServer(Options());
  // A healthy keep-alive connection opened before the garbage must keep working after it.
  CURL* c = curl_easy_init();
  EXPECT_EQ(Fetch(c, "GET", Url(s->metrics_addr(), "/metrics")).code, 200);

  int fd = Connect(s->metrics_addr());
  ASSERT_GE(fd, 0);
  // A TLS ClientHello prefix followed by junk: what a misconfigured scraper would send.
  static const char kGarbage[] = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http\r\n\r\n";
  SendAll(fd, std::string(kGarbage, sizeof kGarbage - 1));
  std::string got;
  EXPECT_TRUE(ReadUntilClosed(fd, std::chrono::seconds(5), &got)) << "server kept it open";
  close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << got;

  fd = Connect(s->admin_addr());
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /config_dump HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n");
  got.clear();
  EXPECT_TRUE(ReadUntilClosed(fd, std::chrono::seconds(5), &got));
  close(fd);

  EXPECT_EQ(s->bad_requests(), 2u);
  HttpResult r = Fetch(c, "GET", Url(s->metrics_addr(), "/metrics"));
  curl_easy_cleanup(c);
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.new_connections, 0);
  EXPECT_NE(r.body.find("\nweft_admin_bad_requests_total 2\n"), std::string::npos) << r.body;
  EXPECT_EQ(Fetch("GET", Url(s->readiness_addr(), "/healthz/ready")).code, 503);
}

TEST_F(AdminServerTest, OversizedBodyAndHeadersAreRejected) {
  auto s = StartServer(Options());
  int fd = Connect(s->admin_addr());
  ASSERT_GE(fd, 0);
  SendAll(fd, "POST /logging?level=debug HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                  std::string(100000, 'a'));
  std::string got;
  EXPECT_TRUE(ReadUntilClosed(fd, std::chrono::seconds(5), &got));
  close(fd);
  // The server closes with most of the body unread, so the kernel ends the connection with a
  // reset; what arrived before it (the reply) stays readable on Linux: it must be there.
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << "reply: \"" << got << "\"";

  fd = Connect(s->admin_addr());
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /logging HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
  got.clear();
  EXPECT_TRUE(ReadUntilClosed(fd, std::chrono::seconds(5), &got));
  close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 431", 0), 0u) << "reply: \"" << got << "\"";

  EXPECT_EQ(s->bad_requests(), 2u);
  EXPECT_NE(log::GetLevel(), log::Level::kDebug);  // the oversized request was not applied
}

TEST_F(AdminServerTest, SlowRequestTimesOut) {
  AdminOptions o = Options();
  o.read_timeout = std::chrono::milliseconds(300);
  auto s = StartServer(std::move(o));

  int slow = Connect(s->metrics_addr());
  ASSERT_GE(slow, 0);
  SendAll(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\n");  // never finishes the header
  int idle = Connect(s->metrics_addr());
  ASSERT_GE(idle, 0);

  // Closed by the 300 ms read timeout (the default one, 10 s, is longer than these waits).
  std::string got;
  EXPECT_TRUE(ReadUntilClosed(slow, std::chrono::seconds(8), &got));
  EXPECT_TRUE(ReadUntilClosed(idle, std::chrono::seconds(8), &got));
  EXPECT_EQ(got, "");
  close(slow);
  close(idle);
  // Only the half-sent request counts as bad; an idle connection timing out is normal. The
  // stream's timer closes a socket before the read handler that counts it runs, but that
  // handler is queued on the server's one I/O thread ahead of a connection made afterwards:
  // once a later request is answered, both timeouts have been counted (or not).
  HttpResult r = Fetch("GET", Url(s->metrics_addr(), "/metrics"));
  EXPECT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("\nweft_admin_bad_requests_total 1\n"), std::string::npos) << r.body;
  EXPECT_EQ(s->bad_requests(), 1u);
}

TEST_F(AdminServerTest, ConnectionFloodIsCapped) {
  auto s = StartServer(Options());
  std::vector<int> fds;
  for (int i = 0; i < 128; ++i) {
    int fd = Connect(s->readiness_addr());
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  // All 128 are held open by the server (each is answered when it asks).
  SendAll(fds.back(), "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n");
  char buf[64];
  pollfd p{fds.back(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  EXPECT_GT(recv(fds.back(), buf, sizeof buf, 0), 0);

  int extra = Connect(s->readiness_addr());
  ASSERT_GE(extra, 0);
  std::string got;
  EXPECT_TRUE(ReadUntilClosed(extra, std::chrono::seconds(5), &got)) << "129th was kept";
  EXPECT_EQ(got, "");
  close(extra);

  for (int fd : fds) close(fd);
  // Once clients leave, the server accepts again (as soon as it has seen them go).
  long code = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (code != 503 && std::chrono::steady_clock::now() < deadline) {
    code = Fetch("GET", Url(s->readiness_addr(), "/healthz/ready")).code;
    if (code != 503) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(code, 503);
}

TEST_F(AdminServerTest, PortInUseIsAClearError) {
  auto first = StartServer(Options());
  AdminOptions o = Options();
  o.readiness_addr = first->readiness_addr();
  AdminServer second(std::move(o));
  absl::Status st = second.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(st.message(), "bind " + first->readiness_addr().ToString() +
                              ": address in use — is another ztunnel running in this network "
                              "namespace?");
  second.Stop();
  second.Stop();
  // The first server is unaffected.
  EXPECT_EQ(Fetch("GET", Url(first->readiness_addr(), "/healthz/ready")).code, 503);

  AdminOptions agent = Options();
  agent.component = "weft-agent";
  agent.metrics_addr = first->metrics_addr();
  AdminServer third(std::move(agent));
  EXPECT_NE(std::string(third.Start().message()).find("is another weft-agent running"),
            std::string::npos);
}

TEST_F(AdminServerTest, StopIsIdempotentAndClosesEverything) {
  auto s = StartServer(Options());
  SockAddr m = s->metrics_addr();
  int idle = Connect(m);
  ASSERT_GE(idle, 0);
  EXPECT_EQ(Fetch("GET", Url(m, "/metrics")).code, 200);
  s->Stop();
  std::string got;
  EXPECT_TRUE(ReadUntilClosed(idle, std::chrono::seconds(5), &got));
  close(idle);
  EXPECT_EQ(Connect(m), -1);  // listener gone
  s->Stop();
  EXPECT_EQ(s->Start().code(), absl::StatusCode::kFailedPrecondition);
  s.reset();  // destructor after Stop is fine

  AdminServer never_started(Options());
  never_started.Stop();
}

TEST_F(AdminServerTest, StartTwiceFails) {
  auto s = StartServer(Options());
  EXPECT_EQ(s->Start().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Fetch("GET", Url(s->metrics_addr(), "/metrics")).code, 200);
}

TEST_F(AdminServerTest, ServesOnIpv6Loopback) {
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  bool v6 = probe >= 0 && bind(probe, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  if (probe >= 0) close(probe);
  WEFT_SKIP_UNLESS_KERNEL_FEATURE(v6, "no IPv6 loopback in this network namespace");

  AdminOptions o = Options();
  auto v6lo = SockAddr::Parse("[::1]:0");
  ASSERT_TRUE(v6lo.ok());
  o.readiness_addr = *v6lo;
  o.metrics_addr = *v6lo;
  auto s = StartServer(std::move(o));
  EXPECT_FALSE(s->readiness_addr().ip.IsV4());
  EXPECT_NE(s->readiness_addr().port, 0);
  SetNotReady("");
  HttpResult r = Fetch("GET", Url(s->readiness_addr(), "/healthz/ready"));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(Fetch("GET", Url(s->metrics_addr(), "/metrics")).code, 200);
  EXPECT_EQ(s->admin_addr().ip.ToString(), "127.0.0.1");
}

}  // namespace
}  // namespace weft
