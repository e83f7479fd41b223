#include "examples/teashop/http.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/net.h"
#include "common/status.h"

namespace weft::teashop {
namespace {

using tcp = asio::ip::tcp;

std::string Unescape(std::string_view s) {
  std::string plus(s);
  std::replace(plus.begin(), plus.end(), '+', ' ');
  int len = 0;
  char* out = curl_easy_unescape(nullptr, plus.data(), static_cast<int>(plus.size()), &len);
  if (out == nullptr) return plus;
  std::string r(out, static_cast<size_t>(len));
  curl_free(out);
  return r;
}

}  // namespace

Response MakeResponse(http::status status, std::string body, std::string_view content_type) {
  Response res{status, 11};
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.body() = std::move(body);
  return res;
}

Response JsonResponse(http::status status, const std::string& json_text) {
  return MakeResponse(status, json_text, "application/json");
}

std::string_view TargetPath(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::map<std::string, std::string> ParseParams(std::string_view query) {
  std::map<std::string, std::string> out;
  for (absl::string_view kv : absl::StrSplit(Av(query), '&', absl::SkipEmpty())) {
    const size_t eq = kv.find('=');
    std::string_view k(kv.data(), eq == absl::string_view::npos ? kv.size() : eq);
    std::string_view v = eq == absl::string_view::npos
                             ? std::string_view()
                             : std::string_view(kv.data() + eq + 1, kv.size() - eq - 1);
    out[Unescape(k)] = Unescape(v);
  }
  return out;
}

std::map<std::string, std::string> QueryParams(std::string_view target) {
  const size_t q = target.find('?');
  return q == std::string_view::npos ? std::map<std::string, std::string>{}
                                     : ParseParams(target.substr(q + 1));
}

std::string UrlEscape(std::string_view s) {
  char* out = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  if (out == nullptr) return std::string(s);
  std::string r(out);
  curl_free(out);
  return r;
}

absl::StatusOr<Url> Url::Parse(std::string_view url) {
  const auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL \"", Av(url), "\": ", Av(why), " (expected http://HOST[:PORT][/PATH])"));
  };
  CURLU* h = curl_url();
  if (h == nullptr) return absl::ResourceExhaustedError("curl_url: out of memory");
  std::unique_ptr<CURLU, void (*)(CURLU*)> owner(h, curl_url_cleanup);
  const std::string s(url);
  if (CURLUcode rc = curl_url_set(h, CURLUPART_URL, s.c_str(), 0); rc != CURLUE_OK) {
    return bad(curl_url_strerror(rc));
  }
  auto part = [&](CURLUPart p) -> std::string {
    char* v = nullptr;
    if (curl_url_get(h, p, &v, 0) != CURLUE_OK || v == nullptr) return "";
    std::string r(v);
    curl_free(v);
    return r;
  };
  if (part(CURLUPART_SCHEME) != "http") return bad("only http:// is supported");
  if (!part(CURLUPART_QUERY).empty() || !part(CURLUPART_FRAGMENT).empty()) {
    return bad("a query or fragment is not allowed");
  }
  Url u;
  u.host = part(CURLUPART_HOST);
  if (u.host.size() > 2 && u.host.front() == '[' && u.host.back() == ']') {
    u.host = u.host.substr(1, u.host.size() - 2);
  }
  if (u.host.empty()) return bad("no host");
  const std::string port = part(CURLUPART_PORT);
  uint32_t p = 80;
  if (!port.empty() && (!absl::SimpleAtoi(port, &p) || p == 0 || p > 65535)) {
    return bad("bad port");
  }
  u.port = static_cast<uint16_t>(p);
  u.base_path = part(CURLUPART_PATH);
  while (!u.base_path.empty() && u.base_path.back() == '/') u.base_path.pop_back();
  return u;
}

std::string Url::ToString() const {
  const bool v6 = host.find(':') != std::string::npos;
  return absl::StrCat("http://", v6 ? "[" : "", host, v6 ? "]" : "", ":", port, base_path, "/");
}

absl::StatusOr<ConnMode> ParseConnMode(std::string_view s) {
  if (s == "keepalive" || s == "keep-alive") return ConnMode::kKeepAlive;
  if (s == "per-request") return ConnMode::kPerRequest;
  return absl::InvalidArgumentError(
      absl::StrCat("connection mode \"", Av(s), "\": use per-request or keepalive"));
}

std::string_view ConnModeName(ConnMode m) {
  return m == ConnMode::kKeepAlive ? "keepalive" : "per-request";
}

// ---------------------------------------------------------------------------------------------
// Server

struct Server::Worker {
  asio::io_context io{1};
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread thread;
  std::set<tcp::socket*> sessions;  // only touched on this worker's thread
  bool stopping = false;            // likewise
};

Server::Server(ServerOptions opts, Handler handler)
    : opts_(std::move(opts)), handler_(std::move(handler)) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions opts, Handler handler) {
  WEFT_ASSIGN_OR_RETURN(SockAddr addr, SockAddr::Parse(opts.listen));
  if (opts.threads < 1 || opts.threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads ", opts.threads, ": use 1 to 256 worker threads"));
  }
  std::unique_ptr<Server> s(new Server(std::move(opts), std::move(handler)));
  for (int i = 0; i < s->opts_.threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->guard = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        w->io.get_executor());
    s->workers_.push_back(std::move(w));
  }
  auto& io0 = s->workers_[0]->io;
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(addr.ip.ToString(), ec);
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat("listen address ", s->opts_.listen, ": ", ec.message()));
  tcp::endpoint ep(ip, addr.port);
  s->acceptor_ = std::make_unique<tcp::acceptor>(io0);
  if (s->acceptor_->open(ep.protocol(), ec); !ec) {
    s->acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
    s->acceptor_->bind(ep, ec);
    if (!ec) s->acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("listen on ", s->opts_.listen, ": ", ec.message(),
                     " (is another process using the port? pick another with --listen ADDR:PORT)"));
  }
  s->port_ = s->acceptor_->local_endpoint().port();
  asio::co_spawn(io0, s->Accept(), asio::detached);
  for (auto& w : s->workers_) {
    w->thread = std::thread([io = &w->io] { io->run(); });
  }
  return s;
}

std::string Server::address() const {
  auto ep = acceptor_->local_endpoint();
  const std::string a = ep.address().to_string();
  return ep.address().is_v6() ? absl::StrCat("[", a, "]:", port_) : absl::StrCat(a, ":", port_);
}

asio::awaitable<void> Server::Accept() {
  for (;;) {
    Worker* w = workers_[next_worker_++ % workers_.size()].get();
    beast::error_code ec;
    tcp::socket sock =
        co_await acceptor_->async_accept(w->io, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_.load() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: say so and back off instead of spinning.
      LOG_WARN("teashop", "accept failed", {{"error", ec.message()}});
      asio::steady_timer t(acceptor_->get_executor(), std::chrono::milliseconds(50));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    asio::co_spawn(w->io, Session(w, std::move(sock)), asio::detached);
  }
}

asio::awaitable<void> Server::Session(Worker* w, tcp::socket socket) {
  if (w->stopping) co_return;
  beast::tcp_stream stream(std::move(socket));
  w->sessions.insert(&stream.socket());
  beast::flat_buffer buffer;
  beast::error_code ec;
  std::string peer;
  if (opts_.access_log) {
    auto rep = stream.socket().remote_endpoint(ec);
    if (!ec) peer = absl::StrCat(rep.address().to_string(), ":", rep.port());
  }
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(opts_.body_limit);
    stream.expires_after(opts_.idle_timeout);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      // Closed, timed out or shut down by Stop(): nothing to answer. Bad syntax: say so.
      const bool syntax =
          ec.category() == http::make_error_code(http::error::bad_method).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message;
      if (syntax) {
        Response bad = MakeResponse(http::status::bad_request,
                                    absl::StrCat("bad HTTP request: ", ec.message(), "\n"));
        bad.keep_alive(false);
        bad.prepare_payload();
        stream.expires_after(std::chrono::seconds(5));
        co_await http::async_write(stream, bad, asio::redirect_error(asio::use_awaitable, ec));
      }
      break;
    }
    Request req = parser.release();
    const auto start = std::chrono::steady_clock::now();
    const std::string method(req.method_string());
    const std::string target(req.target());
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    Response res;
    if (req.method() == http::verb::get && TargetPath(target) == "/healthz") {
      res = MakeResponse(http::status::ok, "ok\n");
    } else {
      try {
        res = co_await handler_(std::move(req));
      } catch (const std::exception& e) {
        LOG_ERROR("teashop", "handler failed", {{"target", target}, {"error", e.what()}});
        res = MakeResponse(http::status::internal_server_error,
                           absl::StrCat("internal error: ", e.what(), "\n"));
      }
    }
    requests_.fetch_add(1, std::memory_order_relaxed);
    res.version(version);
    res.keep_alive(keep_alive && !w->stopping);
    res.prepare_payload();
    stream.expires_after(opts_.idle_timeout);
    const size_t bytes = res.body().size();
    const int status = res.result_int();
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (opts_.access_log) {
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
      log::WriteRecord({{"level", "info"},
                        {"scope", "access"},
                        {"role", opts_.role},
                        {"peer", peer},
                        {"method", method},
                        {"target", target},
                        {"status", status},
                        {"bytes", bytes},
                        {"duration_us", us}});
    }
    if (ec || !res.keep_alive()) break;
  }
  w->sessions.erase(&stream.socket());
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.close();
}

void Server::Stop() {
  std::call_once(stop_once_, [this] {
    stopping_.store(true);
    auto& io0 = workers_[0]->io;
    asio::post(io0, [this] {
      beast::error_code ec;
      acceptor_->close(ec);
    });
    for (auto& w : workers_) {
      asio::post(w->io, [w = w.get()] {
        w->stopping = true;
        // Reading side only: a request being handled still gets its response written, then
        // the next read sees end-of-stream and the session ends.
        beast::error_code ec;
        for (tcp::socket* s : w->sessions) s->shutdown(tcp::socket::shutdown_receive, ec);
      });
      w->guard.reset();
    }
    // Workers return from run() when their last session ends; past the drain deadline they are
    // stopped, abandoning what is still in flight.
    std::mutex mu;
    std::condition_variable cv;
    int running = static_cast<int>(workers_.size());
    std::vector<std::thread> joiners;
    for (auto& w : workers_) {
      joiners.emplace_back([&, w = w.get()] {
        w->thread.join();
        std::lock_guard<std::mutex> l(mu);
        --running;
        cv.notify_all();
      });
    }
    {
      std::unique_lock<std::mutex> l(mu);
      if (!cv.wait_for(l, opts_.drain_timeout, [&] { return running == 0; })) {
        LOG_WARN("teashop", "requests still in flight at the drain deadline; stopping anyway",
                 {{"drain_timeout_ms", opts_.drain_timeout.count()}});
        for (auto& w : workers_) w->io.stop();
      }
    }
    for (auto& t : joiners) t.join();
  });
}

Server::~Server() {
  Stop();
  // Whatever the handler holds that belongs to the workers' io_contexts is released while they
  // still exist.
  handler_ = nullptr;
  acceptor_.reset();
}

// ---------------------------------------------------------------------------------------------
// UpstreamClient

namespace {

// Idle keep-alive connections, owned by the io_context they were opened on: asio shuts its
// services down (closing these) while its reactor still exists, so a pooled connection is never
// destroyed after its io_context, and a client destroyed first just leaves them to it.
class IdlePool : public asio::execution_context::service {
 public:
  using Stream = beast::tcp_stream;
  inline static asio::execution_context::id id;
  explicit IdlePool(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}

  std::unique_ptr<Stream> Take(uint64_t client) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = idle_.find(client);
    if (it == idle_.end() || it->second.empty()) return nullptr;
    auto s = std::move(it->second.back());
    it->second.pop_back();
    return s;
  }
  void Put(uint64_t client, std::unique_ptr<Stream> s) {
    std::lock_guard<std::mutex> l(mu_);
    auto& v = idle_[client];
    if (v.size() < 256) v.push_back(std::move(s));
  }

 private:
  void shutdown() override {
    std::lock_guard<std::mutex> l(mu_);
    idle_.clear();
  }
  std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<std::unique_ptr<Stream>>> idle_;
};

std::atomic<uint64_t> next_client_id{1};

}  // namespace

UpstreamClient::UpstreamClient(std::string name, Url url, ConnMode mode,
                               std::chrono::milliseconds timeout)
    : name_(std::move(name)),
      url_(std::move(url)),
      mode_(mode),
      timeout_(timeout),
      id_(next_client_id.fetch_add(1)) {}

UpstreamClient::~UpstreamClient() = default;

absl::Status UpstreamClient::Err(std::string_view step, const beast::error_code& ec) const {
  std::string what = ec == beast::error::timeout
                         ? absl::StrCat("timed out after ", timeout_.count(), " ms")
                         : ec.message();
  return absl::UnavailableError(
      absl::StrCat(name_, " (", url_.ToString(), "): ", Av(step), ": ", what));
}

asio::awaitable<absl::StatusOr<std::unique_ptr<UpstreamClient::Stream>>> UpstreamClient::Connect() {
  auto ex = co_await asio::this_coro::executor;
  beast::error_code ec;
  std::vector<tcp::endpoint> eps;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Service names are resolved (from /etc/hosts in a pod) at most every few seconds, so a
    // benchmark measures the network and not the resolver.
    if (!resolved_.empty() &&
        std::chrono::steady_clock::now() - resolved_at_ < std::chrono::seconds(5)) {
      eps = resolved_;
    }
  }
  if (eps.empty()) {
    tcp::resolver resolver(ex);
    auto results = co_await resolver.async_resolve(url_.host, std::to_string(url_.port),
                                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return Err(absl::StrCat("resolve ", url_.host), ec);
    for (const auto& r : results) eps.push_back(r.endpoint());
    std::lock_guard<std::mutex> l(mu_);
    resolved_ = eps;
    resolved_at_ = std::chrono::steady_clock::now();
  }
  auto s = std::make_unique<Stream>(ex);
  s->expires_after(timeout_);
  co_await s->async_connect(eps, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return Err("connect", ec);
  s->socket().set_option(tcp::no_delay(true), ec);
  opened_.fetch_add(1, std::memory_order_relaxed);
  co_return s;
}

asio::awaitable<absl::StatusOr<Response>> UpstreamClient::Call(
    http::verb method, std::string target, std::string body,
    std::vector<std::pair<std::string, std::string>> headers) {
  auto ex = co_await asio::this_coro::executor;
  IdlePool& pool = asio::use_service<IdlePool>(asio::query(ex, asio::execution::context));
  Request req{method, url_.base_path + target, 11};
  req.set(http::field::host, absl::StrCat(url_.host, ":", url_.port));
  req.set(http::field::user_agent, "weft-teashop");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == http::verb::post || method == http::verb::put) {
    if (req.find(http::field::content_type) == req.end()) {
      req.set(http::field::content_type, "application/json");
    }
    req.body() = std::move(body);
  }
  req.keep_alive(mode_ == ConnMode::kKeepAlive);
  req.prepare_payload();

  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Stream> s;
    bool reused = false;
    if (mode_ == ConnMode::kKeepAlive && attempt == 0) {
      s = pool.Take(id_);
      reused = s != nullptr;
    }
    if (!s) {
      auto c = co_await Connect();
      if (!c.ok()) co_return c.status();
      s = std::move(*c);
    }
    beast::error_code ec;
    s->expires_after(timeout_);
    co_await http::async_write(*s, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (reused) continue;  // the server closed the idle connection: try a fresh one
      co_return Err("send request", ec);
    }
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    co_await http::async_read(*s, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (reused && !parser.got_some()) continue;
      co_return Err("read response", ec);
    }
    Response res = parser.release();
    if (mode_ == ConnMode::kKeepAlive && res.keep_alive()) {
      s->expires_never();
      pool.Put(id_, std::move(s));
    } else {
      // The server closes after answering "Connection: close"; waiting for its FIN (it follows
      // the response at once) makes it the active closer, so TIME_WAIT stays on its side and a
      // client opening thousands of connections a second does not run out of ephemeral ports.
      char byte;
      s->expires_after(std::min<std::chrono::milliseconds>(timeout_, std::chrono::seconds(1)));
      co_await s->async_read_some(asio::buffer(&byte, 1),
                                  asio::redirect_error(asio::use_awaitable, ec));
      s->socket().shutdown(tcp::socket::shutdown_both, ec);
    }
    co_return res;
  }
  co_return absl::UnavailableError(
      absl::StrCat(name_, " (", url_.ToString(), "): no response on a fresh connection"));
}

}  // namespace weft::teashop
