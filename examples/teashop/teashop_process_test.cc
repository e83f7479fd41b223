// Every role of weft-teashop as a real process on loopback (ports picked by the kernel and
// reported through --port-file), wired by URL as the manifests wire them by Service name.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/testing/child_process.h"
#include "common/testing/temp_dir.h"
#include "examples/teashop/frontend.h"
#include "examples/teashop/http.h"
#include "nlohmann/json.hpp"

namespace weft::teashop {
namespace {

using json = nlohmann::json;

// A weft-teashop child process (an empty environment unless `env` says otherwise).
class Proc : public weft::testing::ChildProcess {
 public:
  Proc(const std::string& dir, const std::string& name, std::vector<std::string> args,
       std::vector<std::string> env = {})
      : ChildProcess(dir, name, WithBinary(std::move(args)), std::move(env)) {}

 private:
  static std::vector<std::string> WithBinary(std::vector<std::string> args) {
    args.insert(args.begin(), WEFT_TEASHOP_PATH);
    return args;
  }
};

// A server role listening on a kernel-picked loopback port.
struct Role {
  std::unique_ptr<Proc> proc;
  uint16_t port = 0;
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port); }
};

Role StartRole(const std::string& dir, const std::string& role, std::vector<std::string> extra,
               std::vector<std::string> env = {}) {
  const std::string port_file = absl::StrCat(dir, "/", role, ".port");
  std::vector<std::string> args = {"--role",    role, "--listen",    "127.0.0.1:0",
                                   "--threads", "1",  "--port-file", port_file};
  args.insert(args.end(), extra.begin(), extra.end());
  Role r;
  r.proc = std::make_unique<Proc>(dir, role, args, env);
  r.port = r.proc->WaitPortFile(port_file, std::chrono::seconds(10));
  EXPECT_NE(r.port, 0) << role << " did not start: " << r.proc->Err();
  return r;
}

absl::StatusOr<Response> Call(const std::string& url, http::verb m, const std::string& target,
                              const std::string& form = {}) {
  UpstreamClient c("frontend", Url::Parse(url).value(), ConnMode::kPerRequest,
                   std::chrono::seconds(5));
  asio::io_context io;
  absl::StatusOr<Response> out = absl::UnknownError("not run");
  std::vector<std::pair<std::string, std::string>> headers = {{"X-User", "proc-test"}};
  if (!form.empty()) headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { out = co_await c.Call(m, target, form, headers); },
      asio::detached);
  io.run();
  return out;
}

TEST(TeashopProcesses, WholeShopOnLoopback) {
  testing::TempDir dir;
  Role catalogue = StartRole(dir.path(), "catalogue", {"--catalogue-size", "200"});
  Role cart = StartRole(dir.path(), "cart", {});
  Role rec = StartRole(dir.path(), "recommendation", {"--catalogue-size", "200"});
  Role store = StartRole(dir.path(), "store", {"--catalogue-size", "200"});
  ASSERT_TRUE(catalogue.port && cart.port && rec.port && store.port);
  // Upstreams by environment, as a pod spec gives them; one by flag.
  Role frontend =
      StartRole(dir.path(), "frontend",
                {"--access-log", "--upstream-conn", "keepalive", "--store-url", store.url()},
                {"CATALOGUE_URL=" + catalogue.url(), "CART_URL=" + cart.url(),
                 "RECOMMENDATION_URL=" + rec.url(), "STORE_URL=http://127.0.0.1:1"});
  ASSERT_NE(frontend.port, 0);
  const std::string f = frontend.url();

  struct Case {
    http::verb method;
    std::string target, form, expect;
  };
  const std::vector<Case> cases = {
      {http::verb::get, "/", "", "<h2>Featured</h2>"},
      {http::verb::get, "/category?name=oolong", "", "(oolong)"},
      {http::verb::get, "/product?id=17", "", "You may also like"},
      {http::verb::get, "/search?q=floral", "", "Search: floral"},
      {http::verb::post, "/cart/add", "id=17&qty=3", "Your cart holds 3 items"},
      {http::verb::get, "/cart", "", "<td>3</td>"},
      {http::verb::post, "/checkout", "", "checksum "},
      {http::verb::get, "/recommend?for=17,18", "", "Recommended for 17,18"},
  };
  ASSERT_EQ(cases.size(), kRequestTypes.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    EXPECT_EQ(c.method, kRequestTypes[i].method);
    EXPECT_EQ(TargetPath(c.target), kRequestTypes[i].path);
    auto r = Call(f, c.method, c.target, c.form);
    ASSERT_TRUE(r.ok()) << c.target << ": " << r.status();
    EXPECT_EQ(r->result(), http::status::ok) << c.target << ": " << r->body();
    EXPECT_NE(r->body().find(c.expect), std::string::npos) << c.target << ": " << r->body();
  }
  // One access-log line per request, JSON.
  bool logged = false;
  std::istringstream lines(frontend.proc->Err());
  for (std::string line; std::getline(lines, line);) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("scope", "") == "access" &&
        j.value("target", "") == "/product?id=17") {
      logged = j.value("status", 0) == 200 && j.value("role", "") == "frontend";
    }
  }
  EXPECT_TRUE(logged) << frontend.proc->Err();

  // The closed-loop driver, per-request connections to the front end.
  Proc load(dir.path(), "load",
            {"--role", "load", "--target", f, "--duration", "2s", "--concurrency", "4", "--json",
             "--upstream-conn", "per-request", "--catalogue-size", "200"});
  ASSERT_EQ(load.Wait(std::chrono::seconds(20)), 0) << load.Err();
  json report = json::parse(load.Out(), nullptr, false);
  ASSERT_TRUE(report.is_object()) << load.Out();
  ASSERT_EQ(report["types"].size(), 8u);
  for (const RequestType& t : kRequestTypes) {
    const json& s = report["types"][std::string(t.name)];
    EXPECT_GT(s["successes"].get<int>(), 0) << t.name << ": " << s.dump();
    EXPECT_EQ(s["successes"], s["requests"]) << t.name << ": " << s.dump();
  }

  // A graceful stop of one upstream: exit 0, then the front end names it in a 502.
  catalogue.proc->Signal(SIGTERM);
  EXPECT_EQ(catalogue.proc->Wait(std::chrono::seconds(10)), 0) << catalogue.proc->Err();
  EXPECT_NE(catalogue.proc->Err().find("\"msg\":\"stopped\""), std::string::npos);
  auto down = Call(f, http::verb::get, "/product?id=3");
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->result(), http::status::bad_gateway);
  EXPECT_EQ((*down)["X-Upstream"], "catalogue");
  EXPECT_NE(down->body().find("upstream catalogue failed"), std::string::npos) << down->body();
  // Pages that do not need it still work.
  auto cart_page = Call(f, http::verb::get, "/cart");
  ASSERT_TRUE(cart_page.ok());
  EXPECT_EQ(cart_page->result(), http::status::ok);

  for (Role* r : {&cart, &rec, &store, &frontend}) {
    r->proc->Signal(SIGTERM);
    EXPECT_EQ(r->proc->Wait(std::chrono::seconds(10)), 0) << r->proc->Err();
  }
}

// The benchmark's echo server: a bodiless request gets --echo-size bytes, a body comes back.
TEST(TeashopProcesses, EchoRole) {
  testing::TempDir dir;
  Role echo = StartRole(dir.path(), "echo", {"--echo-size", "1024"});
  ASSERT_NE(echo.port, 0);
  auto get = Call(echo.url(), http::verb::get, "/");
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->result(), http::status::ok);
  EXPECT_EQ(get->body(), std::string(1024, 'x'));
  const std::string form = "a=" + std::string(3000, 'b');
  auto post = Call(echo.url(), http::verb::post, "/anything", form);
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->body(), form);
  echo.proc->Signal(SIGTERM);
  EXPECT_EQ(echo.proc->Wait(std::chrono::seconds(10)), 0) << echo.proc->Err();
}

// echo-request (the mesh conformance suite's echo): its identity and the request, as JSON.
TEST(TeashopProcesses, EchoRequestRole) {
  testing::TempDir dir;
  Role echo = StartRole(dir.path(), "echo-request", {"--pod", "echo-v1", "--namespace", "ns1"});
  ASSERT_NE(echo.port, 0);
  auto get = Call(echo.url(), http::verb::get, "/a/b?x=1");
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->result(), http::status::ok);
  auto j = nlohmann::json::parse(get->body(), nullptr, false);
  ASSERT_TRUE(j.is_object()) << get->body();
  EXPECT_EQ(j["pod"], "echo-v1");
  EXPECT_EQ(j["namespace"], "ns1");
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["path"], "/a/b?x=1");
  EXPECT_FALSE(j["host"].get<std::string>().empty());
  EXPECT_EQ(j["headers"]["host"][0], j["host"]);
  echo.proc->Signal(SIGTERM);
  EXPECT_EQ(echo.proc->Wait(std::chrono::seconds(10)), 0) << echo.proc->Err();
}

// The traffic demo's back ends: --fail-percent answers 503 to that share of requests (never
// /healthz), --delay holds each one; `load --path` drives one URL and reports it as "get".
TEST(TeashopProcesses, FaultKnobsAndLoadOfOnePath) {
  testing::TempDir dir;
  Role flaky = StartRole(dir.path(), "echo-request",
                         {"--pod", "flaky", "--fail-percent", "30", "--delay", "20ms"});
  ASSERT_NE(flaky.port, 0);
  for (int i = 0; i < 20; ++i) {
    auto h = Call(flaky.url(), http::verb::get, "/healthz");
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->result(), http::status::ok);
  }
  const auto start = std::chrono::steady_clock::now();
  auto one = Call(flaky.url(), http::verb::get, "/x");
  ASSERT_TRUE(one.ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));

  Proc load(dir.path(), "load",
            {"--role", "load", "--target", flaky.url(), "--path", "/teas/1", "--duration", "1500ms",
             "--concurrency", "4", "--json"});
  ASSERT_EQ(load.Wait(std::chrono::seconds(30)), 0) << load.Err();
  auto j = nlohmann::json::parse(load.Out(), nullptr, false);
  ASSERT_TRUE(j.is_object()) << load.Out();
  ASSERT_EQ(j["types"].size(), 1u) << load.Out();
  const auto& get = j["types"]["get"];
  const double requests = get["requests"].get<double>();
  ASSERT_GE(requests, 100) << load.Out();  // 4 users x 1.5 s / 20 ms, less overheads
  const double failed = get["statuses"].value("503", 0.0);
  EXPECT_EQ(get["statuses"].value("200", 0.0) + failed, requests) << load.Out();
  EXPECT_GT(failed / requests, 0.15) << load.Out();
  EXPECT_LT(failed / requests, 0.45) << load.Out();

  Proc bad(dir.path(), "badpath",
           {"--role", "load", "--target", flaky.url(), "--path", "teas", "--duration", "1s"});
  EXPECT_EQ(bad.Wait(std::chrono::seconds(10)), 2);
  EXPECT_NE(bad.Err().find("absolute path"), std::string::npos) << bad.Err();
  flaky.proc->Signal(SIGTERM);
  EXPECT_EQ(flaky.proc->Wait(std::chrono::seconds(10)), 0) << flaky.proc->Err();
}

// A loopback port free a moment ago (gRPC's own listener has no port file).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

// echo-request --grpc-listen answers any unary call with its JSON; grpc-call (a real gRPC
// client) prints one line per call, with the metadata it sent echoed back.
TEST(TeashopProcesses, GrpcEchoAndGrpcCall) {
  testing::TempDir dir;
  const int gport = FreePort();
  ASSERT_NE(gport, 0);
  Role echo = StartRole(dir.path(), "echo-request",
                        {"--pod", "echo-v1", "--namespace", "ns1", "--grpc-listen",
                         absl::StrCat("127.0.0.1:", gport)});
  ASSERT_NE(echo.port, 0);
  Proc call(dir.path(), "call",
            {"--role", "grpc-call", "--target", absl::StrCat("127.0.0.1:", gport), "--method",
             "/weft.echo.Echo/Hello", "--count", "3", "--metadata", "X-Test=one"});
  ASSERT_EQ(call.Wait(std::chrono::seconds(20)), 0) << call.Err();
  std::vector<std::string> lines = absl::StrSplit(call.Out(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << call.Out();
  for (const std::string& l : lines) {
    auto j = json::parse(l, nullptr, false);
    ASSERT_TRUE(j.is_object()) << l;
    EXPECT_EQ(j["code"], 0) << l;
    EXPECT_EQ(j["reply"]["pod"], "echo-v1") << l;
    EXPECT_EQ(j["reply"]["namespace"], "ns1") << l;
    EXPECT_EQ(j["reply"]["method"], "/weft.echo.Echo/Hello") << l;
    EXPECT_EQ(j["reply"]["headers"]["x-test"][0], "one") << l;
  }
  // Nothing listening: each call fails UNAVAILABLE (14), the exit is 1 (0 if that was expected).
  Proc none(dir.path(), "none",
            {"--role", "grpc-call", "--target", absl::StrCat("127.0.0.1:", FreePort()), "--method",
             "/a.B/C", "--upstream-timeout", "1s"});
  EXPECT_EQ(none.Wait(std::chrono::seconds(20)), 1) << none.Err();
  EXPECT_NE(none.Out().find("\"code\":14"), std::string::npos) << none.Out();
  Proc expected(dir.path(), "expected",
                {"--role", "grpc-call", "--target", absl::StrCat("127.0.0.1:", FreePort()),
                 "--method", "/a.B/C", "--upstream-timeout", "1s", "--expect-code", "14"});
  EXPECT_EQ(expected.Wait(std::chrono::seconds(20)), 0) << expected.Out();
  Proc bad(dir.path(), "bad", {"--role", "grpc-call", "--target", "x:1", "--method", "nope"});
  EXPECT_EQ(bad.Wait(std::chrono::seconds(10)), 2);
  EXPECT_NE(bad.Err().find("give /package.Service/Method"), std::string::npos) << bad.Err();
  echo.proc->Signal(SIGTERM);
  EXPECT_EQ(echo.proc->Wait(std::chrono::seconds(10)), 0) << echo.proc->Err();
}

TEST(TeashopProcesses, LoadFailsWhenNothingAnswers) {
  testing::TempDir dir;
  // A port that was just free: nothing listens there.
  Role idle = StartRole(dir.path(), "idle", {});
  ASSERT_NE(idle.port, 0);
  auto h = Call(idle.url(), http::verb::get, "/healthz");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->body(), "ok\n");
  EXPECT_EQ(Call(idle.url(), http::verb::get, "/")->result(), http::status::not_found);
  idle.proc->Signal(SIGTERM);
  ASSERT_EQ(idle.proc->Wait(std::chrono::seconds(10)), 0);

  Proc load(dir.path(), "load",
            {"--role", "load", "--target", idle.url(), "--duration", "300ms", "--json"});
  EXPECT_EQ(load.Wait(std::chrono::seconds(20)), 1) << load.Err();
  EXPECT_NE(load.Err().find("succeeded"), std::string::npos) << load.Err();
}

TEST(TeashopProcesses, UsageErrors) {
  testing::TempDir dir;
  Proc bad(dir.path(), "bad", {"--role", "frontend"});
  EXPECT_EQ(bad.Wait(std::chrono::seconds(10)), 2);
  EXPECT_NE(bad.Err().find("frontend needs --catalogue-url"), std::string::npos) << bad.Err();
  Proc bad_addr(dir.path(), "badaddr", {"--role", "cart", "--listen", "256.0.0.1:80"});
  EXPECT_EQ(bad_addr.Wait(std::chrono::seconds(10)), 1);
  EXPECT_FALSE(bad_addr.Err().empty());
}

}  // namespace
}  // namespace weft::teashop
