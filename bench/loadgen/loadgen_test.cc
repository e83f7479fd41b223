// weft-loadgen's engine against in-process HTTP servers on loopback (examples/teashop's Server).
#include <utility>  // Boost 1.74's asio/awaitable.hpp uses std::exchange without including it

#include "bench/loadgen/loadgen.h"

#include <gtest/gtest.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "examples/teashop/frontend.h"
#include "examples/teashop/http.h"

namespace weft::bench::loadgen {
namespace {

namespace asio = teashop::asio;
namespace http = teashop::http;
using namespace std::chrono_literals;

std::unique_ptr<teashop::Server> StartServer(teashop::Handler h) {
  teashop::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.threads = 1;
  so.role = "loadgen-test";
  auto s = teashop::Server::Start(so, std::move(h));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

asio::awaitable<void> Sleep(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

Profile OneType(std::string path = "/x") {
  Profile p;
  p.requests.push_back({"x", "GET", std::move(path), "", {}});
  return p;
}

// The server stalls once for 200 ms. One user at 100 requests/s on one keep-alive connection:
// the ~20 requests scheduled during the stall wait behind it, and their latency (from the
// intended send time) must say so: ~200, 190, 180, ... ms. A closed-loop client would report
// one slow request; the service time (from the actual send) shows exactly that.
TEST(Loadgen, CoordinatedOmissionIsCorrected) {
  std::atomic<int> n{0};
  auto server = StartServer([&n](teashop::Request) -> asio::awaitable<teashop::Response> {
    if (++n == 60) co_await Sleep(200ms);
    co_return teashop::MakeResponse(http::status::ok, "ok");
  });
  ASSERT_NE(server, nullptr);
  Options o;
  o.target = absl::StrCat("http://127.0.0.1:", server->port());
  o.users = 1;
  o.rate_per_user = 100;
  o.warmup = 200ms;  // the stall (request 60, ~600 ms in) falls in the measured window
  o.duration = 1500ms;
  o.profile = OneType();
  auto r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const TypeResult& t = r->overall;
  EXPECT_EQ(r->scheduled, 150u);
  EXPECT_EQ(t.ok, 150u) << r->Summary();
  EXPECT_EQ(t.unfinished, 0u);
  // Lower bounds only: the stall lasts at least 200 ms however fast the machine is; a busy
  // machine only adds latency. Upper bounds would measure the machine, not the correction.
  EXPECT_GE(t.latency.max(), 195'000'000) << r->Summary();
  EXPECT_GE(t.service.max(), 195'000'000);
  EXPECT_GE(t.latency.max(), t.service.max()) << r->Summary();
  // Requests intended in the first half of the stall waited >= 100 ms.
  EXPECT_GE(t.latency.CountAtOrAbove(100'000'000), 8u) << r->Summary();
  EXPECT_GE(t.latency.CountAtOrAbove(50'000'000), 13u) << r->Summary();
  EXPECT_GE(r->late_sends, 15u);
  // The correction charges the stall to the requests that waited behind it, which the service
  // time (from the actual send) does not.
  EXPECT_LT(t.service.CountAtOrAbove(100'000'000), t.latency.CountAtOrAbove(100'000'000))
      << r->Summary();
  // Completions over the measured window: never above the asked rate.
  EXPECT_GT(r->achieved_rps, 0) << r->Summary();
  EXPECT_LE(r->achieved_rps, 100 * 1.001) << r->Summary();
  EXPECT_LE(t.latency.Percentile(0.5), t.latency.max()) << r->Summary();
}

// Two threads share the users on one schedule: the same requests as with one thread, all
// answered, each counted once, and the JSON says how many threads ran.
TEST(Loadgen, ThreadsShareOneSchedule) {
  auto server = StartServer([](teashop::Request) -> asio::awaitable<teashop::Response> {
    co_return teashop::MakeResponse(http::status::ok, "ok");
  });
  ASSERT_NE(server, nullptr);
  Options o;
  o.target = absl::StrCat("http://127.0.0.1:", server->port());
  o.users = 5;
  o.total_rate = 250;
  o.threads = 2;
  o.warmup = 100ms;
  o.duration = 1000ms;
  o.conn = ConnMode::kPerRequest;
  o.profile = OneType();
  auto r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->scheduled, 250u);
  EXPECT_EQ(r->overall.ok, 250u) << r->Summary();
  EXPECT_EQ(r->errors(), 0u);
  EXPECT_GE(r->connections_opened, 250u);
  EXPECT_LE(r->achieved_rps, 250 * 1.001) << r->Summary();
  EXPECT_EQ(r->ToJson()["threads"], 2);
  // More threads than users (or slots) run one per user.
  o.threads = 16;
  o.max_inflight = 3;
  auto capped = loadgen::Run(o);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->options.threads, 3);
  EXPECT_EQ(capped->overall.ok, 250u) << capped->Summary();
  o.threads = 0;
  EXPECT_FALSE(loadgen::Run(o).ok());
}

// Several users, per-request connections, two request types (one a 404), a total rate; the
// JSON carries everything and the histograms merge back.
TEST(Loadgen, PerRequestTypesStatusesAndJson) {
  auto server = StartServer([](teashop::Request req) -> asio::awaitable<teashop::Response> {
    if (req.target() == "/missing") co_return teashop::MakeResponse(http::status::not_found, "no");
    co_return teashop::MakeResponse(http::status::ok, std::string(req.body().size(), 'y'));
  });
  ASSERT_NE(server, nullptr);
  Options o;
  o.target = absl::StrCat("http://127.0.0.1:", server->port());
  o.users = 4;
  o.total_rate = 200;
  o.warmup = 100ms;
  o.duration = 1000ms;
  o.conn = ConnMode::kPerRequest;
  auto p = ParseProfile(R"({"headers": {"X-User": "u{user}"}, "requests": [
      {"name": "good", "method": "POST", "path": "/ok?u={user}", "body": "hello"},
      {"name": "bad", "path": "/missing"}]})");
  ASSERT_TRUE(p.ok()) << p.status();
  o.profile = *p;
  auto r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->options.rate_per_user, 50);
  EXPECT_EQ(r->scheduled, 200u);
  const TypeResult& good = r->types.at("good");
  const TypeResult& bad = r->types.at("bad");
  EXPECT_EQ(good.ok, 100u) << r->Summary();
  EXPECT_EQ(bad.ok, 0u);
  EXPECT_EQ(bad.status_errors, 100u);
  EXPECT_EQ(bad.statuses.at(404), 100u);
  EXPECT_EQ(r->errors(), 100u);
  EXPECT_GT(r->achieved_rps, 0) << r->Summary();
  EXPECT_LE(r->achieved_rps, 200 * 1.001) << r->Summary();
  // One connection per request (warm-up requests included).
  EXPECT_GE(r->connections_opened, 200u);

  const nlohmann::json j = r->ToJson();
  EXPECT_EQ(j["conn"], "per-request");
  EXPECT_EQ(j["types"]["bad"]["statuses"]["404"], 100);
  EXPECT_EQ(j["overall"]["ok"], 100);
  EXPECT_GT(j["overall"]["latency_ms"]["p99"].get<double>(), 0);
  EXPECT_EQ(j["type_order"], nlohmann::json({"good", "bad"}));
  auto h = Histogram::FromJson(j["types"]["good"]["histograms_ns"]["latency"]);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->count(), 100u);
  EXPECT_EQ(h->Percentile(0.9), good.latency.Percentile(0.9));
  EXPECT_NE(r->Summary().find("good"), std::string::npos);
}

// --max-inflight bounds the requests the server sees at once; late requests still count from
// their intended time.
TEST(Loadgen, MaxInflightBoundsConcurrency) {
  std::atomic<int> now{0}, peak{0};
  auto server = StartServer([&](teashop::Request) -> asio::awaitable<teashop::Response> {
    const int c = ++now;
    int p = peak.load();
    while (c > p && !peak.compare_exchange_weak(p, c)) {
    }
    co_await Sleep(10ms);
    --now;
    co_return teashop::MakeResponse(http::status::ok, "ok");
  });
  ASSERT_NE(server, nullptr);
  Options o;
  o.target = absl::StrCat("http://127.0.0.1:", server->port());
  o.users = 6;
  o.rate_per_user = 20;  // 120 rps of 10 ms requests: ~1.2 busy on average, bursts above 2
  o.warmup = 0ms;
  o.duration = 1000ms;
  o.max_inflight = 2;
  o.profile = OneType();
  auto r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(peak.load(), 2);
  EXPECT_EQ(r->overall.ok, 120u) << r->Summary();
  EXPECT_EQ(r->options.max_inflight, 2);
}

TEST(Loadgen, TransportErrorsAndBadOptions) {
  // A closed port: every request is a transport error, the run itself succeeds.
  auto probe = StartServer([](teashop::Request) -> asio::awaitable<teashop::Response> {
    co_return teashop::MakeResponse(http::status::ok, "ok");
  });
  ASSERT_NE(probe, nullptr);
  const std::string dead = absl::StrCat("http://127.0.0.1:", probe->port());
  probe.reset();
  Options o;
  o.target = dead;
  o.users = 2;
  o.rate_per_user = 20;
  o.warmup = 0ms;
  o.duration = 500ms;
  o.profile = OneType();
  auto r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->overall.ok, 0u);
  EXPECT_EQ(r->overall.transport_errors, 20u) << r->Summary();

  Options bad = o;
  bad.users = 0;
  EXPECT_EQ(loadgen::Run(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = o;
  bad.rate_per_user = 0;
  EXPECT_EQ(loadgen::Run(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = o;
  bad.target = "ftp://x";
  EXPECT_FALSE(loadgen::Run(bad).ok());
  bad = o;
  bad.netns = "/nonexistent/netns";
  auto s = loadgen::Run(bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("--netns"), std::string::npos);
  EXPECT_FALSE(ParseConnMode("pipelined").ok());
}

TEST(Profile, TeashopProfileIsTheFrontEndsRequestTypes) {
  const Profile p = TeashopProfile();
  ASSERT_EQ(p.requests.size(), teashop::kRequestTypes.size());
  for (size_t i = 0; i < p.requests.size(); ++i) {
    const auto& t = teashop::kRequestTypes[i];
    EXPECT_EQ(p.requests[i].name, t.name);
    EXPECT_EQ(http::string_to_verb(p.requests[i].method), t.method);
    EXPECT_EQ(teashop::TargetPath(p.requests[i].path), t.path);
  }
}

TEST(Profile, ParseErrorsSayWhatIsWrong) {
  auto err = [](std::string_view text) {
    auto p = ParseProfile(text);
    EXPECT_FALSE(p.ok()) << text;
    return p.ok() ? std::string() : std::string(p.status().message());
  };
  EXPECT_NE(err("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err(R"({"requests": []})").find("non-empty"), std::string::npos);
  EXPECT_NE(err(R"({"requests": [{"path": "/"}]})").find("\"name\" is required"),
            std::string::npos);
  EXPECT_NE(err(R"({"requests": [{"name": "a", "method": "BREW"}]})").find("BREW"),
            std::string::npos);
  EXPECT_NE(err(R"({"requests": [{"name": "a", "path": "x"}]})").find("start with '/'"),
            std::string::npos);
  EXPECT_NE(err(R"({"requests": [{"name": "a"}, {"name": "a"}]})").find("duplicate"),
            std::string::npos);
  EXPECT_NE(err(R"({"requests": [{"name": "a", "headers": {"k": 1}}]})").find("string value"),
            std::string::npos);
  EXPECT_FALSE(LoadProfile("/nonexistent/profile.json").ok());
  EXPECT_EQ(ExpandUser("/c?u={user}&v={user}", 7), "/c?u=7&v=7");
}

}  // namespace
}  // namespace weft::bench::loadgen
