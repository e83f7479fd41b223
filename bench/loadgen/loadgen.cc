#include <utility>  // Boost 1.74's asio/awaitable.hpp uses std::exchange without including it

#include "bench/loadgen/loadgen.h"

#include "bench/loadgen/h2_client.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <cmath>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/netns.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "examples/teashop/http.h"

namespace weft::bench::loadgen {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Stream = beast::tcp_stream;

// Max-in-flight slots. Single-threaded (the engine's io_context): a released slot is handed to
// the longest waiter by cancelling its timer.
class Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  asio::awaitable<void> Acquire() {
    if (free_ > 0) {
      --free_;
      co_return;
    }
    asio::steady_timer t(co_await asio::this_coro::executor, Clock::time_point::max());
    waiters_.push_back(&t);
    beast::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  void Release() {
    if (waiters_.empty()) {
      ++free_;
      return;
    }
    asio::steady_timer* t = waiters_.front();
    waiters_.pop_front();
    t->cancel();
  }

 private:
  int free_;
  std::deque<asio::steady_timer*> waiters_;
};

struct Outcome {
  bool transport_ok = false;
  bool cut = false;  // ended by the drain deadline: unfinished, not an error
  int status = 0;
  Clock::time_point first_byte, done;
};

// What one engine (one thread) measured; Run() merges them.
struct Partial {
  std::vector<TypeResult> types;  // by profile index
  std::vector<uint64_t> scheduled;
  uint64_t late_sends = 0, opened = 0;
  Clock::time_point last_completion{};
};

// One thread's share of the users: users[i] are global user numbers, so Intended() is the
// schedule of the whole run whatever the thread count.
class Engine {
 public:
  Engine(const Options& o, const teashop::Url& url, const std::vector<tcp::endpoint>& eps,
         int netns_fd, std::vector<int> users, int max_inflight, Clock::time_point start)
      : o_(o),
        url_(url),
        eps_(eps),
        netns_fd_(netns_fd),
        users_(std::move(users)),
        slots_(max_inflight),
        types_(o_.profile.requests.size()),
        start_(start) {}

  Partial Run() {
    const size_t ntypes = o_.profile.requests.size();
    period_ = std::chrono::nanoseconds(static_cast<int64_t>(std::llround(1e9 / o_.rate_per_user)));
    rec_begin_ = start_ + o_.warmup;
    rec_end_ = rec_begin_ + o_.duration;
    drain_deadline_ = rec_end_ + o_.drain;
    Partial p;
    // The schedule is fixed in advance, so the recorded requests it asks for are known now;
    // whatever did not complete by the drain deadline is "unfinished".
    p.scheduled.assign(ntypes, 0);
    for (int u : users_) {
      for (uint64_t k = 0;; ++k) {
        const auto t = Intended(u, k);
        if (t >= rec_end_) break;
        if (t >= rec_begin_) ++p.scheduled[k % ntypes];
      }
    }
    for (int u : users_) asio::co_spawn(io_, User(u), asio::detached);
    io_.run();
    p.types = std::move(types_);
    p.late_sends = late_sends_;
    p.opened = opened_;
    p.last_completion = last_completion_;
    return p;
  }

 private:
  Clock::time_point Intended(int u, uint64_t k) const {
    return start_ + period_ * u / o_.users + period_ * static_cast<int64_t>(k);
  }

  // The user's HTTP/1.1 requests, built once ("{user}" expanded).
  std::vector<http::request<http::string_body>> Http1Requests(int u) const {
    std::vector<http::request<http::string_body>> reqs;
    for (const RequestSpec& s : o_.profile.requests) {
      http::request<http::string_body> req{http::string_to_verb(s.method),
                                           url_.base_path + ExpandUser(s.path, u), 11};
      req.set(http::field::host, absl::StrCat(url_.host, ":", url_.port));
      req.set(http::field::user_agent, "weft-loadgen");
      for (const auto& [k, v] : s.headers) req.set(k, ExpandUser(v, u));
      if (!s.body.empty()) {
        if (req.find(http::field::content_type) == req.end()) {
          req.set(http::field::content_type, "application/octet-stream");
        }
        req.body() = ExpandUser(s.body, u);
      }
      req.keep_alive(o_.conn == ConnMode::kKeepAlive);
      req.prepare_payload();
      reqs.push_back(std::move(req));
    }
    return reqs;
  }

  // The same over HTTP/2 (h2c) or as gRPC calls.
  std::vector<H2Request> H2Requests(int u) const {
    const bool grpc = o_.protocol == Protocol::kGrpc;
    std::vector<H2Request> reqs;
    for (const RequestSpec& s : o_.profile.requests) {
      H2Request req;
      req.method = grpc ? "POST" : s.method;
      req.path = url_.base_path + ExpandUser(s.path, u);
      req.authority = absl::StrCat(url_.host, ":", url_.port);
      req.headers.push_back({"user-agent", "weft-loadgen"});
      bool has_type = false;
      for (const auto& [k, v] : s.headers) {
        const std::string name = absl::AsciiStrToLower(k);
        if (name == "content-type") {
          has_type = true;
          if (grpc) continue;
        }
        req.headers.push_back({name, ExpandUser(v, u)});
      }
      req.body = ExpandUser(s.body, u);
      if (grpc) {
        req.body = GrpcFrame(req.body);
        req.headers.push_back({"content-type", "application/grpc"});
        req.headers.push_back({"te", "trailers"});
      } else if (!req.body.empty() && !has_type) {
        req.headers.push_back({"content-type", "application/octet-stream"});
      }
      reqs.push_back(std::move(req));
    }
    return reqs;
  }

  asio::awaitable<void> User(int u) {
    std::unique_ptr<Stream> conn;
    std::unique_ptr<H2Conn> h2;
    asio::steady_timer timer(io_);
    const size_t ntypes = o_.profile.requests.size();
    const bool use_h2 = o_.protocol != Protocol::kHttp1;
    const std::vector<http::request<http::string_body>> reqs =
        use_h2 ? std::vector<http::request<http::string_body>>{} : Http1Requests(u);
    const std::vector<H2Request> h2reqs = use_h2 ? H2Requests(u) : std::vector<H2Request>{};
    for (uint64_t k = 0;; ++k) {
      const Clock::time_point intended = Intended(u, k);
      if (intended >= rec_end_) break;
      const bool recorded = intended >= rec_begin_;
      const size_t type = k % ntypes;
      if (Clock::now() < intended) {
        timer.expires_at(intended);
        beast::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      co_await slots_.Acquire();
      const Clock::time_point sent_at = Clock::now();
      if (sent_at >= drain_deadline_) {
        slots_.Release();
        break;
      }
      if (recorded && sent_at - intended >= std::chrono::milliseconds(1)) ++late_sends_;
      const Clock::time_point deadline = std::min(sent_at + o_.timeout, drain_deadline_);
      Outcome out = use_h2 ? co_await SendH2(h2, h2reqs[type], deadline)
                           : co_await Send(conn, reqs[type], deadline);
      slots_.Release();
      if (recorded && !out.cut) {
        TypeResult& t = types_[type];
        ++t.sent;
        last_completion_ = std::max(last_completion_, out.done);
        if (!out.transport_ok) {
          ++t.transport_errors;
        } else {
          ++t.statuses[out.status];
          if (out.status >= 200 && out.status < 400) {
            ++t.ok;
            t.latency.Record((out.done - intended).count());
            t.ttfb.Record((out.first_byte - intended).count());
            t.service.Record((out.done - sent_at).count());
          } else {
            ++t.status_errors;
          }
        }
      } else if (recorded) {
        ++types_[type].sent;
      }
      if (o_.conn == ConnMode::kPerRequest && conn) {
        // Wait for the server's FIN (it follows a "Connection: close" response at once) so
        // TIME_WAIT stays on the server side and a long per-request run keeps its ports.
        char byte;
        beast::error_code ec;
        conn->expires_after(std::chrono::milliseconds(200));
        co_await conn->async_read_some(asio::buffer(&byte, 1),
                                       asio::redirect_error(asio::use_awaitable, ec));
        conn->socket().close(ec);
        conn.reset();
      }
    }
    h2.reset();
    if (conn) {
      beast::error_code ec;
      conn->socket().shutdown(tcp::socket::shutdown_both, ec);
      conn->socket().close(ec);
    }
  }

  asio::awaitable<bool> Connect(std::unique_ptr<Stream>& conn, Clock::time_point deadline) {
    beast::error_code ec;
    for (const tcp::endpoint& ep : eps_) {
      auto s = std::make_unique<Stream>(io_);
      if (netns_fd_ >= 0) {
        auto fd = SocketInNetns(netns_fd_, ep.protocol().family(), SOCK_STREAM, 0);
        if (!fd.ok()) continue;
        s->socket().assign(ep.protocol(), fd->release(), ec);
        if (ec) continue;
      }
      s->expires_at(deadline);
      co_await s->async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) continue;
      s->socket().set_option(tcp::no_delay(true), ec);
      ++opened_;
      conn = std::move(s);
      co_return true;
    }
    co_return false;
  }

  asio::awaitable<Outcome> Send(std::unique_ptr<Stream>& conn,
                                const http::request<http::string_body>& req,
                                Clock::time_point deadline) {
    Outcome out;
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = conn != nullptr;
      if (!conn && !co_await Connect(conn, deadline)) break;
      beast::error_code ec;
      conn->expires_at(deadline);
      co_await http::async_write(*conn, req, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        conn.reset();
        if (reused && Clock::now() < deadline) continue;  // an idle connection the server closed
        break;
      }
      beast::flat_buffer buf;
      const size_t n = co_await conn->async_read_some(
          buf.prepare(16384), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        conn.reset();
        if (reused && ec != beast::error::timeout) continue;
        break;
      }
      buf.commit(n);
      out.first_byte = Clock::now();
      http::response_parser<http::string_body> parser;
      parser.body_limit(64 << 20);
      if (req.method() == http::verb::head) parser.skip(true);
      co_await http::async_read(*conn, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        conn.reset();
        break;
      }
      out.done = Clock::now();
      out.transport_ok = true;
      out.status = static_cast<int>(parser.get().result_int());
      if (o_.conn == ConnMode::kKeepAlive) {
        if (parser.get().keep_alive()) {
          conn->expires_never();
        } else {
          conn.reset();
        }
      }
      co_return out;
    }
    out.done = Clock::now();
    out.cut = out.done >= drain_deadline_;
    co_return out;
  }

  // One request over HTTP/2 on the user's connection (opened, or re-opened once when a reused
  // one failed before any response).
  asio::awaitable<Outcome> SendH2(std::unique_ptr<H2Conn>& conn, const H2Request& req,
                                  Clock::time_point deadline) {
    Outcome out;
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = conn != nullptr;
      if (!conn) {
        std::unique_ptr<Stream> s;
        if (!co_await Connect(s, deadline)) break;
        conn = std::make_unique<H2Conn>(std::move(s));
      }
      const H2Reply r = co_await conn->Exchange(req, deadline);
      if (!r.transport_ok) {
        conn.reset();
        if (reused && !r.got_response && Clock::now() < deadline) continue;
        break;
      }
      out.transport_ok = true;
      out.first_byte = r.first_byte;
      out.done = r.done;
      out.status = r.status;
      if (o_.protocol == Protocol::kGrpc && r.status == 200 && r.grpc_status != 0) {
        out.status = 1000 + (r.grpc_status < 0 ? 99 : r.grpc_status);
      }
      if (o_.conn == ConnMode::kPerRequest || !conn->usable()) conn.reset();
      co_return out;
    }
    out.done = Clock::now();
    out.cut = out.done >= drain_deadline_;
    co_return out;
  }

  const Options& o_;
  const teashop::Url& url_;
  const std::vector<tcp::endpoint>& eps_;
  int netns_fd_;
  std::vector<int> users_;
  asio::io_context io_{1};
  Slots slots_;
  std::vector<TypeResult> types_;
  std::chrono::nanoseconds period_{};
  Clock::time_point start_, rec_begin_, rec_end_, drain_deadline_, last_completion_{};
  uint64_t late_sends_ = 0, opened_ = 0;
};

nlohmann::json Millis(const Histogram& h) {
  auto ms = [](int64_t ns) { return std::round(ns / 1e3) / 1e3; };
  return {{"count", h.count()},
          {"min", ms(h.min())},
          {"mean", std::round(h.mean() / 1e3) / 1e3},
          {"p50", ms(h.Percentile(0.5))},
          {"p75", ms(h.Percentile(0.75))},
          {"p90", ms(h.Percentile(0.9))},
          {"p99", ms(h.Percentile(0.99))},
          {"p99.9", ms(h.Percentile(0.999))},
          {"max", ms(h.max())}};
}

}  // namespace

void TypeResult::Merge(const TypeResult& o) {
  sent += o.sent;
  ok += o.ok;
  status_errors += o.status_errors;
  transport_errors += o.transport_errors;
  unfinished += o.unfinished;
  for (const auto& [code, n] : o.statuses) statuses[code] += n;
  latency.Merge(o.latency);
  ttfb.Merge(o.ttfb);
  service.Merge(o.service);
}

nlohmann::json TypeResult::ToJson() const {
  nlohmann::json st = nlohmann::json::object();
  for (const auto& [code, n] : statuses) st[std::to_string(code)] = n;
  return {
      {"sent", sent},
      {"ok", ok},
      {"errors", status_errors + transport_errors},
      {"status_errors", status_errors},
      {"transport_errors", transport_errors},
      {"unfinished", unfinished},
      {"statuses", st},
      {"latency_ms", Millis(latency)},
      {"ttfb_ms", Millis(ttfb)},
      {"service_ms", Millis(service)},
      {"histograms_ns",
       {{"latency", latency.ToJson()}, {"ttfb", ttfb.ToJson()}, {"service", service.ToJson()}}}};
}

nlohmann::json Result::ToJson() const {
  nlohmann::json types_json = nlohmann::json::object();
  for (const auto& [name, t] : types) types_json[name] = t.ToJson();
  return {
      {"tool", "weft-loadgen"},
      {"target", options.target},
      {"conn", options.conn == ConnMode::kKeepAlive ? "keepalive" : "per-request"},
      {"protocol", ProtocolName(options.protocol)},
      {"users", options.users},
      {"rate_per_user", options.rate_per_user},
      {"asked_rps", asked_rps},
      {"achieved_rps", achieved_rps},
      {"duration_s", std::chrono::duration<double>(options.duration).count()},
      {"warmup_s", std::chrono::duration<double>(options.warmup).count()},
      {"measured_s", measured_seconds},
      {"max_inflight", options.max_inflight},
      {"threads", options.threads},
      {"netns", options.netns},
      {"scheduled", scheduled},
      {"late_sends", late_sends},
      {"connections_opened", connections_opened},
      {"type_order", type_order},
      {"overall", overall.ToJson()},
      {"types", types_json},
  };
}

std::string Result::Summary() const {
  std::string s = absl::StrFormat(
      "weft-loadgen %s (%s): %d users x %.3g rps = %.1f rps asked, %.1f achieved over %.1f s "
      "(warm-up %.1f s)\n"
      "requests %d: ok %d, status errors %d, transport errors %d, unfinished %d; "
      "sent late %d; connections %d\n",
      options.target, options.conn == ConnMode::kKeepAlive ? "keepalive" : "per-request",
      options.users, options.rate_per_user, asked_rps, achieved_rps, measured_seconds,
      std::chrono::duration<double>(options.warmup).count(), scheduled, overall.ok,
      overall.status_errors, overall.transport_errors, overall.unfinished, late_sends,
      connections_opened);
  absl::StrAppendFormat(&s, "%-12s %7s %7s %6s %8s %8s %8s %8s %8s %8s %8s\n", "type", "ok",
                        "errors", "unit", "p50", "p75", "p90", "p99", "p99.9", "max", "ttfb p75");
  auto row = [&](const std::string& name, const TypeResult& t) {
    auto ms = [](int64_t ns) { return ns / 1e6; };
    absl::StrAppendFormat(&s, "%-12s %7d %7d %6s %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f\n", name,
                          t.ok, t.status_errors + t.transport_errors, "ms",
                          ms(t.latency.Percentile(0.5)), ms(t.latency.Percentile(0.75)),
                          ms(t.latency.Percentile(0.9)), ms(t.latency.Percentile(0.99)),
                          ms(t.latency.Percentile(0.999)), ms(t.latency.max()),
                          ms(t.ttfb.Percentile(0.75)));
  };
  for (const std::string& name : type_order) row(name, types.at(name));
  row("all", overall);
  s += "(latency from the intended send time; successful requests only)\n";
  return s;
}

absl::StatusOr<ConnMode> ParseConnMode(std::string_view s) {
  if (s == "keepalive") return ConnMode::kKeepAlive;
  if (s == "per-request") return ConnMode::kPerRequest;
  return absl::InvalidArgumentError(
      absl::StrCat("--conn: \"", Av(s), "\" is not keepalive or per-request"));
}

absl::StatusOr<Protocol> ParseProtocol(std::string_view s) {
  if (s == "http1") return Protocol::kHttp1;
  if (s == "h2c") return Protocol::kH2c;
  if (s == "grpc") return Protocol::kGrpc;
  return absl::InvalidArgumentError(
      absl::StrCat("--protocol: \"", Av(s), "\" is not http1, h2c or grpc"));
}

std::string_view ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kHttp1:
      return "http1";
    case Protocol::kH2c:
      return "h2c";
    case Protocol::kGrpc:
      return "grpc";
  }
  return "?";
}

absl::StatusOr<Result> Run(Options o) {
  if (o.users < 1) return absl::InvalidArgumentError("--users must be at least 1");
  if (o.total_rate > 0) o.rate_per_user = o.total_rate / o.users;
  if (!(o.rate_per_user > 0) || o.rate_per_user > 1e6) {
    return absl::InvalidArgumentError("the rate must be > 0 and <= 1e6 requests/s per user");
  }
  if (o.duration <= std::chrono::milliseconds(0)) {
    return absl::InvalidArgumentError("--duration must be > 0");
  }
  if (o.warmup < std::chrono::milliseconds(0) || o.drain < std::chrono::milliseconds(0) ||
      o.timeout <= std::chrono::milliseconds(0)) {
    return absl::InvalidArgumentError("--warmup and --drain must be >= 0, --timeout > 0");
  }
  if (o.max_inflight < 0) return absl::InvalidArgumentError("--max-inflight must be >= 0");
  if (o.threads < 1 || o.threads > 64) return absl::InvalidArgumentError("--threads: use 1 to 64");
  if (o.max_inflight == 0 || o.max_inflight > o.users) o.max_inflight = o.users;
  o.threads = std::min(o.threads, o.max_inflight);  // each thread holds at least one slot
  if (o.profile.requests.empty()) o.profile = TeashopProfile();
  for (const RequestSpec& s : o.profile.requests) {
    if (http::string_to_verb(s.method) == http::verb::unknown) {
      return absl::InvalidArgumentError("profile: unknown method " + s.method);
    }
  }
  WEFT_ASSIGN_OR_RETURN(teashop::Url url, teashop::Url::Parse(o.target));
  UniqueFd netns(-1);
  if (!o.netns.empty()) {
    netns = UniqueFd(open(o.netns.c_str(), O_RDONLY | O_CLOEXEC));
    if (netns.get() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--netns ", o.netns, ": ", strerror(errno),
          " (give a network namespace file, e.g. /run/netns/NAME or /proc/PID/ns/net; root)"));
    }
    // Fail now, not as a transport error on every request.
    WEFT_ASSIGN_OR_RETURN(UniqueFd probe, SocketInNetns(netns.get(), AF_INET, SOCK_STREAM, 0));
  }
  std::vector<tcp::endpoint> eps;
  {
    asio::io_context io;
    tcp::resolver resolver(io);
    beast::error_code ec;
    auto results = resolver.resolve(url.host, std::to_string(url.port), ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("resolve ", url.host, ": ", ec.message(), " (check --target)"));
    }
    for (const auto& r : results) eps.push_back(r.endpoint());
  }
  if (eps.empty()) return absl::UnavailableError("resolve " + url.host + ": no address");
  // Every thread's coroutines are up well before the first intended time.
  const Clock::time_point start = Clock::now() + std::chrono::milliseconds(20 + 5 * o.threads);
  std::vector<std::unique_ptr<Engine>> engines;
  for (int t = 0; t < o.threads; ++t) {
    std::vector<int> users;
    for (int u = t; u < o.users; u += o.threads) users.push_back(u);
    const int inflight = o.max_inflight / o.threads + (t < o.max_inflight % o.threads ? 1 : 0);
    engines.push_back(std::make_unique<Engine>(o, url, eps, netns.get(), std::move(users),
                                               std::max(1, inflight), start));
  }
  std::vector<Partial> parts(engines.size());
  {
    std::vector<std::thread> threads;
    for (size_t t = 1; t < engines.size(); ++t)
      threads.emplace_back([&, t] { parts[t] = engines[t]->Run(); });
    parts[0] = engines[0]->Run();
    for (std::thread& th : threads) th.join();
  }

  Result r;
  r.options = o;
  r.asked_rps = o.rate_per_user * o.users;
  const size_t ntypes = o.profile.requests.size();
  std::vector<TypeResult> types(ntypes);
  std::vector<uint64_t> scheduled(ntypes, 0);
  Clock::time_point last_completion{};
  for (Partial& p : parts) {
    for (size_t i = 0; i < ntypes; ++i) {
      types[i].Merge(p.types[i]);
      scheduled[i] += p.scheduled[i];
    }
    r.late_sends += p.late_sends;
    r.connections_opened += p.opened;
    last_completion = std::max(last_completion, p.last_completion);
  }
  const double window = std::chrono::duration<double>(o.duration).count();
  r.measured_seconds =
      std::max(window, std::chrono::duration<double>(last_completion - (start + o.warmup)).count());
  for (size_t i = 0; i < ntypes; ++i) {
    TypeResult& t = types[i];
    const uint64_t done = t.ok + t.status_errors + t.transport_errors;
    t.unfinished = scheduled[i] > done ? scheduled[i] - done : 0;
    r.scheduled += scheduled[i];
    r.type_order.push_back(o.profile.requests[i].name);
    r.types[o.profile.requests[i].name] = t;
    r.overall.Merge(t);
  }
  const uint64_t completed = r.overall.ok + r.overall.status_errors + r.overall.transport_errors;
  r.achieved_rps = r.measured_seconds > 0 ? completed / r.measured_seconds : 0;
  return r;
}

namespace {

constexpr std::string_view kUsage = R"(usage: weft-loadgen --target URL [flags]
Open-loop HTTP/1.1 (or h2c, gRPC) load: constant arrival rate, latency from the intended send time.
  --target URL             http://HOST[:PORT][/base] (required)
  --users N                users, each with its own schedule and connection (default 1)
  --rate-per-user R        requests/s per user (default 1)
  --rate R                 total requests/s instead (spread evenly over the users)
  --duration DUR           measured window (default 10s; 500ms, 1m30s, ...)
  --warmup DUR             before the window, not recorded (default 2s)
  --timeout DUR            per request (default 10s)
  --drain DUR              after the window, wait this long for queued requests (default 10s)
  --conn MODE              keepalive (default) | per-request
  --protocol P             http1 (default) | h2c (HTTP/2, prior knowledge) | grpc (unary gRPC
                           calls over h2c: each request's body is the message; success is
                           HTTP 200 with grpc-status 0, other grpc-status N count as status
                           1000+N)
  --max-inflight N         requests in flight at once, at most --users (default: --users)
  --threads N              threads sharing the users (user u on thread u % N), one schedule
                           (default 1)
  --profile FILE           request types (JSON, see bench/loadgen/profile.h); default: the
                           tea shop's 8 front-end requests
  --json FILE              write the results as JSON ("-": stdout, the summary goes to stderr)
  --netns PATH             create the sockets in this network namespace (root)
Exit status: 0 ok, 1 the run failed or no request succeeded, 2 bad flags.
)";

absl::Status ParseFlags(int argc, char** argv, Options& o, std::string& json_out, bool& help) {
  CLI::App app("weft-loadgen", "weft-loadgen");
  app.set_help_flag();  // --help prints kUsage
  app.add_flag("-h,--help", help);
  app.add_option("--target", o.target);
  app.add_option("--users", o.users);
  app.add_option("--rate-per-user", o.rate_per_user);
  app.add_option("--rate", o.total_rate);
  app.add_option("--max-inflight", o.max_inflight);
  app.add_option("--threads", o.threads);
  std::string conn, profile, protocol;
  app.add_option("--conn", conn);
  app.add_option("--protocol", protocol);
  app.add_option("--profile", profile);
  app.add_option("--json", json_out);
  app.add_option("--netns", o.netns);
  std::map<std::string, std::pair<std::string, std::chrono::milliseconds*>> durations = {
      {"--duration", {"", &o.duration}},
      {"--warmup", {"", &o.warmup}},
      {"--timeout", {"", &o.timeout}},
      {"--drain", {"", &o.drain}}};
  for (auto& [flag, d] : durations) app.add_option(flag, d.first);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat(e.what(), " (see --help)"));
  }
  if (help) return absl::OkStatus();
  for (const auto& [flag, d] : durations) {
    if (d.first.empty()) continue;
    absl::Duration v;
    if (!absl::ParseDuration(d.first, &v) || v < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": \"", d.first, "\" is not a duration like 10s or 500ms"));
    }
    *d.second = std::chrono::milliseconds(absl::ToInt64Milliseconds(v));
  }
  if (!conn.empty()) {
    WEFT_ASSIGN_OR_RETURN(o.conn, ParseConnMode(conn));
  }
  if (!protocol.empty()) {
    WEFT_ASSIGN_OR_RETURN(o.protocol, ParseProtocol(protocol));
  }
  if (!profile.empty()) {
    WEFT_ASSIGN_OR_RETURN(o.profile, LoadProfile(profile));
  }
  if (o.target.empty()) return absl::InvalidArgumentError("--target is required (see --help)");
  return absl::OkStatus();
}

}  // namespace

int Main(int argc, char** argv) {
  Options o;
  std::string json_out;
  bool help = false;
  if (absl::Status s = ParseFlags(argc, argv, o, json_out, help); !s.ok()) {
    std::cerr << "weft-loadgen: " << s.message() << "\n";
    return 2;
  }
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  absl::StatusOr<Result> r = Run(std::move(o));
  if (!r.ok()) {
    std::cerr << "weft-loadgen: " << r.status().message() << "\n";
    return r.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const std::string summary = r->Summary();
  if (json_out == "-") {
    std::cerr << summary;
    std::cout << r->ToJson().dump(1) << "\n";
  } else {
    std::cout << summary;
    if (!json_out.empty()) {
      std::ofstream f(json_out);
      f << r->ToJson().dump(1) << "\n";
      if (!f) {
        std::cerr << "weft-loadgen: cannot write " << json_out << "\n";
        return 1;
      }
    }
  }
  return r->overall.ok > 0 ? 0 : 1;
}

}  // namespace weft::bench::loadgen
