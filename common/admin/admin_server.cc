#include "common/admin/admin_server.h"

#include <prometheus/counter.h>
#include <prometheus/text_serializer.h>

#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/admin/process_metrics.h"
#include "common/log.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

constexpr size_t kBodyLimit = 64 * 1024;
constexpr uint32_t kHeaderLimit = 16 * 1024;
// The admin port is for operators and Prometheus; a few dozen connections is already unusual.
// The cap keeps a connection flood from exhausting file descriptors the data path needs.
constexpr size_t kMaxConnections = 128;
constexpr const char* kValidLevels = "debug, info, warn, error, off";

enum class Role { kAdmin, kMetrics, kReadiness };

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kMetrics:
      return "metrics";
    case Role::kReadiness:
      return "readiness";
  }
  return "?";
}

tcp::endpoint ToEndpoint(const SockAddr& a) {
  if (a.ip.IsV4()) return tcp::endpoint(asio::ip::address_v4(a.ip.v4_host_order()), a.port);
  asio::ip::address_v6::bytes_type b;
  std::copy(a.ip.bytes().begin(), a.ip.bytes().end(), b.begin());
  return tcp::endpoint(asio::ip::address_v6(b), a.port);
}

struct Reply {
  http::status status = http::status::ok;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string allow;  // for 405
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply Text(http::status s, std::string body) {
  Reply r;
  r.status = s;
  r.body = std::move(body);
  return r;
}

Reply MethodNotAllowed(std::string_view method, std::string_view path, std::string allow,
                       std::string_view hint = "") {
  Reply r = Text(http::status::method_not_allowed,
                 absl::StrCat("method ", Av(method), " not allowed on ", Av(path), "; use ", allow,
                              Av(hint), "\n"));
  r.allow = std::move(allow);
  return r;
}

// Query parameters of a request target, without percent-decoding: the only parameter we read
// (a log level name) is a plain word, and anything encoded is rejected as an unknown level.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name) {
  for (absl::string_view kv : absl::StrSplit(Av(query), '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (std::string_view(p.first.data(), p.first.size()) == name) return std::string(p.second);
  }
  return std::nullopt;
}

bool IsGet(http::verb v) {
  return v == http::verb::get || v == http::verb::head;
}

// All query parameters of a request target, not percent-decoded.
std::map<std::string, std::string> QueryParams(std::string_view query) {
  std::map<std::string, std::string> params;
  for (absl::string_view kv : absl::StrSplit(Av(query), '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    params[std::string(p.first)] = std::string(p.second);
  }
  return params;
}

}  // namespace

struct AdminServer::Impl {
  class Session;
  struct Listener {
    Listener(asio::io_context& ioc, Role r) : role(r), acceptor(ioc), backoff(ioc) {}
    Role role;
    tcp::acceptor acceptor;
    asio::steady_timer backoff;
    SockAddr bound;
  };

  explicit Impl(AdminOptions o) : opts(std::move(o)) {
    registries = opts.registries;
    if (registries.empty()) registries.push_back(std::make_shared<prometheus::Registry>());
    bad_requests = &prometheus::BuildCounter()
                        .Name("weft_admin_bad_requests_total")
                        .Help(
                            "Malformed or timed-out HTTP requests on the admin, metrics and "
                            "readiness ports (the connection was closed)")
                        .Register(*registries.front())
                        .Add({});
  }

  absl::Status Start();
  void Stop();
  absl::Status Bind(Listener& l, const SockAddr& want);
  absl::Status Assign(Listener& l, int fd);
  void Accept(Listener& l);
  void Run();
  void CountBadRequest(Role role, std::string_view why, const ErrorCode& ec);
  Reply Route(Role role, const http::request<http::string_body>& req);
  Reply Metrics();
  Reply Fallback(http::verb verb, std::string_view method, std::string_view path,
                 std::string_view query);
  Reply Logging(const http::request<http::string_body>& req, std::string_view method,
                std::string_view query);

  AdminOptions opts;
  std::vector<std::shared_ptr<prometheus::Registry>> registries;
  prometheus::Counter* bad_requests;

  // Declared before ioc: the io_context's destructor destroys pending handlers, whose
  // sessions unregister themselves here.
  std::set<Session*> sessions;  // io thread only
  asio::io_context ioc{1};
  Listener admin{ioc, Role::kAdmin};
  Listener metrics{ioc, Role::kMetrics};
  Listener readiness{ioc, Role::kReadiness};
  bool stopping = false;    // io thread only
  bool cap_logged = false;  // io thread only

  mutable std::mutex mu;  // guards started, stopped, thread, the bound addresses
  bool started = false;
  bool stopped = false;
  std::thread thread;
};

class AdminServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* impl, Role role, tcp::socket s) : impl_(impl), role_(role), stream_(std::move(s)) {
    impl_->sessions.insert(this);
  }
  ~Session() { impl_->sessions.erase(this); }

  void Start() { Read(); }

  void Close() {
    ErrorCode ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    parser_->header_limit(kHeaderLimit);
    stream_.expires_after(impl_->opts.read_timeout);
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](ErrorCode ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(ErrorCode ec) {
    if (impl_->stopping || ec == asio::error::operation_aborted) return;
    if (ec == http::error::end_of_stream) return Close();  // client closed between requests
    if (ec == beast::error::timeout) {
      // An idle keep-alive connection timing out is normal; a half-sent request is not.
      if (parser_->got_some() || buf_.size() > 0)
        impl_->CountBadRequest(role_, "request not complete within read timeout", ec);
      return Close();
    }
    if (ec) {
      if (ec.category() != http::make_error_code(http::error::bad_method).category()) {
        return Close();  // socket error (reset etc.): nothing malformed, nothing to answer
      }
      impl_->CountBadRequest(role_, "malformed HTTP request", ec);
      http::status s = http::status::bad_request;
      if (ec == http::error::body_limit) s = http::status::payload_too_large;
      if (ec == http::error::header_limit) s = http::status::request_header_fields_too_large;
      if (ec == http::error::partial_message) return Close();  // client already gone
      return Send(Text(s, absl::StrCat("bad request: ", ec.message(), "\n")), 11,
                  /*head=*/false, /*keep_alive=*/false);
    }

    const auto& req = parser_->get();
    Reply r;
    try {
      r = impl_->Route(role_, req);
    } catch (const std::exception& e) {
      LOG_ERROR("admin", "request handler failed",
                {{"path", std::string(req.target())}, {"error", e.what()}});
      r = Text(http::status::internal_server_error,
               absl::StrCat("internal error: ", e.what(), "\n"));
    }
    Send(std::move(r), req.version(), req.method() == http::verb::head, req.keep_alive());
  }

  void Send(Reply r, unsigned version, bool head, bool keep_alive) {
    res_ = {};
    res_.version(version);
    res_.result(r.status);
    res_.set(http::field::server, "weft");
    res_.set(http::field::content_type, r.content_type);
    if (!r.allow.empty()) res_.set(http::field::allow, r.allow);
    for (const auto& [name, value] : r.headers) res_.set(name, value);
    res_.keep_alive(keep_alive);
    if (head) {
      res_.content_length(r.body.size());  // HEAD: the size of what GET would send, no body
    } else {
      res_.body() = std::move(r.body);
      res_.prepare_payload();
    }
    stream_.expires_after(impl_->opts.read_timeout);
    http::async_write(stream_, res_, [self = shared_from_this(), keep_alive](ErrorCode ec, size_t) {
      if (self->impl_->stopping || ec == asio::error::operation_aborted) return;
      if (ec || !keep_alive) {
        ErrorCode ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return self->stream_.close();
      }
      self->Read();
    });
  }

  Impl* impl_;
  Role role_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
};

void AdminServer::Impl::CountBadRequest(Role role, std::string_view why, const ErrorCode& ec) {
  bad_requests->Increment();
  LOG_DEBUG("admin", "closing connection after bad request",
            {{"port", RoleName(role)}, {"reason", why}, {"error", ec.message()}});
}

absl::Status AdminServer::Impl::Bind(Listener& l, const SockAddr& want) {
  ErrorCode ec;
  tcp::endpoint ep = ToEndpoint(want);
  std::string where = want.ToString();
  l.acceptor.open(ep.protocol(), ec);
  if (ec) return absl::InternalError(absl::StrCat("socket for ", where, ": ", ec.message()));
  // SO_REUSEADDR only lets us rebind over TIME_WAIT leftovers after a restart; on Linux it does
  // not let two listeners share a port, so "address in use" still means a live listener.
  l.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  l.acceptor.bind(ep, ec);
  if (ec == asio::error::address_in_use) {
    return absl::UnavailableError(absl::StrCat("bind ", where, ": address in use — is another ",
                                               opts.component,
                                               " running in this network namespace?"));
  }
  if (ec == boost::system::errc::address_not_available) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bind ", where,
        ": address not available — use an address assigned to an interface in this network "
        "namespace, or 0.0.0.0 / ::"));
  }
  if (ec == asio::error::access_denied) {
    return absl::PermissionDeniedError(absl::StrCat(
        "bind ", where, ": permission denied — ports below 1024 need CAP_NET_BIND_SERVICE"));
  }
  if (ec) return absl::InternalError(absl::StrCat("bind ", where, ": ", ec.message()));
  l.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::InternalError(absl::StrCat("listen ", where, ": ", ec.message()));
  tcp::endpoint local = l.acceptor.local_endpoint(ec);
  if (ec) return absl::InternalError(absl::StrCat("getsockname ", where, ": ", ec.message()));
  l.bound = SockAddr::FromSockaddr(local.data());
  return absl::OkStatus();
}

absl::Status AdminServer::Impl::Assign(Listener& l, int fd) {
  auto local = LocalAddress(fd);
  if (!local.ok()) {
    ::close(fd);
    return local.status();
  }
  ErrorCode ec;
  l.acceptor.assign(local->ip.IsV4() ? tcp::v4() : tcp::v6(), fd, ec);
  if (ec) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("taking over ", local->ToString(), ": ", ec.message()));
  }
  l.bound = *local;
  return absl::OkStatus();
}

void AdminServer::Impl::Accept(Listener& l) {
  l.acceptor.async_accept([this, &l](ErrorCode ec, tcp::socket s) {
    if (stopping || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: retrying at once would spin; back off and let fds free up.
      LOG_WARN("admin", "accept failed", {{"port", RoleName(l.role)}, {"error", ec.message()}});
      l.backoff.expires_after(std::chrono::milliseconds(100));
      l.backoff.async_wait([this, &l](ErrorCode tec) {
        if (!stopping && !tec) Accept(l);
      });
      return;
    }
    if (sessions.size() >= kMaxConnections) {
      // Once per episode, not once per connection: a flood must not also flood the log.
      if (!cap_logged) {
        LOG_WARN("admin", "too many admin connections; closing new ones until some end",
                 {{"port", RoleName(l.role)}, {"limit", kMaxConnections}});
        cap_logged = true;
      }
      ErrorCode ignored;
      s.close(ignored);
    } else {
      cap_logged = false;
      std::make_shared<Session>(this, l.role, std::move(s))->Start();
    }
    Accept(l);
  });
}

void AdminServer::Impl::Run() {
  // A throwing handler (bad_alloc, a callback's exception escaping) must not take the process
  // down: log it and keep serving. run() returns normally only after ioc.stop().
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      LOG_ERROR("admin", "admin server handler threw; continuing", {{"error", e.what()}});
    } catch (...) {
      LOG_ERROR("admin", "admin server handler threw a non-std exception; continuing", {});
    }
  }
}

absl::Status AdminServer::Impl::Start() {
  std::lock_guard<std::mutex> lock(mu);
  if (started) {
    return absl::FailedPreconditionError(
        "AdminServer::Start called twice; create a new AdminServer to serve again");
  }
  started = true;
  auto bind = [this](Listener& l, int fd, const SockAddr& want) {
    return fd >= 0 ? Assign(l, fd) : Bind(l, want);
  };
  absl::Status st = bind(admin, opts.admin_fd, opts.admin_addr);
  if (st.ok() && !opts.admin_only) st = bind(metrics, opts.metrics_fd, opts.metrics_addr);
  if (st.ok() && !opts.admin_only) st = bind(readiness, opts.readiness_fd, opts.readiness_addr);
  if (!st.ok()) {
    ErrorCode ignored;
    for (Listener* l : {&admin, &metrics, &readiness}) l->acceptor.close(ignored);
    stopped = true;
    return st;
  }
  for (Listener* l : {&admin, &metrics, &readiness}) {
    if (l->acceptor.is_open()) Accept(*l);
  }
  thread = std::thread([this] { Run(); });
  LOG_INFO("admin", "admin server listening",
           {{"admin", admin.bound.ToString()},
            {"metrics", metrics.bound.ToString()},
            {"readiness", readiness.bound.ToString()}});
  return absl::OkStatus();
}

void AdminServer::Impl::Stop() {
  std::lock_guard<std::mutex> lock(mu);
  if (stopped) return;
  stopped = true;
  if (!thread.joinable()) return;  // never started
  asio::post(ioc, [this] {
    stopping = true;
    ErrorCode ignored;
    for (Listener* l : {&admin, &metrics, &readiness}) {
      l->acceptor.close(ignored);
      l->backoff.cancel();
    }
    // Copy: closing never destroys a session synchronously, but keep the loop independent of
    // that detail.
    std::vector<Session*> open(sessions.begin(), sessions.end());
    for (Session* s : open) s->Close();
    // Handlers of the closed sockets will not run; the io_context's destructor frees them.
    ioc.stop();
  });
  thread.join();
}

Reply AdminServer::Impl::Metrics() {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& r : registries) {
    auto f = r->Collect();
    families.insert(families.end(), std::make_move_iterator(f.begin()),
                    std::make_move_iterator(f.end()));
  }
  if (opts.process_metrics) {
    auto f = CollectProcessMetrics();
    families.insert(families.end(), std::make_move_iterator(f.begin()),
                    std::make_move_iterator(f.end()));
  }
  Reply r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = prometheus::TextSerializer().Serialize(families);
  return r;
}

Reply AdminServer::Impl::Logging(const http::request<http::string_body>& req,
                                 std::string_view method, std::string_view query) {
  std::optional<std::string> level = QueryParam(query, "level");
  auto json_level = [] {
    Reply r;
    r.content_type = "application/json";
    r.body = nlohmann::json{{"level", log::LevelName(log::GetLevel())}}.dump() + "\n";
    return r;
  };
  if (IsGet(req.method())) {
    if (level) {
      return MethodNotAllowed(method, "/logging?level=...", "POST, PUT",
                              " (GET only reads the level)");
    }
    return json_level();
  }
  if (req.method() != http::verb::post && req.method() != http::verb::put)
    return MethodNotAllowed(method, "/logging", "GET, HEAD, POST, PUT");
  if (!level) {
    return Text(http::status::bad_request,
                absl::StrCat("missing ?level= parameter; valid levels: ", kValidLevels, "\n"));
  }
  log::Level l;
  if (!log::ParseLevel(*level, &l)) {
    return Text(http::status::bad_request, absl::StrCat("invalid log level \"", *level,
                                                        "\"; valid levels: ", kValidLevels, "\n"));
  }
  log::Level old = log::GetLevel();
  log::SetLevel(l);
  // Logged at warn so the change is visible at every level except off.
  LOG_WARN("admin", "log level changed",
           {{"from", log::LevelName(old)}, {"to", log::LevelName(l)}});
  return json_level();
}

Reply AdminServer::Impl::Fallback(http::verb verb, std::string_view method, std::string_view path,
                                  std::string_view query) {
  if (!IsGet(verb)) return MethodNotAllowed(method, path, "GET, HEAD");
  std::optional<HttpReply> got = opts.fallback(std::string(path), QueryParams(query));
  if (!got) return Text(http::status::not_found, absl::StrCat("not found: ", Av(path), "\n"));
  Reply r;
  r.status = static_cast<http::status>(got->status);
  r.content_type = std::move(got->content_type);
  r.body = std::move(got->body);
  r.headers = std::move(got->headers);
  return r;
}

Reply AdminServer::Impl::Route(Role role, const http::request<http::string_body>& req) {
  std::string_view target(req.target().data(), req.target().size());
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  std::string_view method(req.method_string().data(), req.method_string().size());

  switch (role) {
    case Role::kAdmin:
      if (path == "/logging" && !opts.fallback) return Logging(req, method, query);
      if (auto h = opts.json_handlers.find(std::string(path)); h != opts.json_handlers.end()) {
        if (!IsGet(req.method())) return MethodNotAllowed(method, path, "GET, HEAD");
        auto body = h->second(QueryParams(query));
        if (!body.ok()) {
          return Text(
              absl::IsNotFound(body.status()) ? http::status::not_found : http::status::bad_request,
              absl::StrCat(body.status().message(), "\n"));
        }
        Reply r;
        r.content_type = "application/json";
        r.body = std::move(*body);
        return r;
      }
      if (opts.fallback) return Fallback(req.method(), method, path, query);
      if (path == "/config_dump") {
        if (!IsGet(req.method())) return MethodNotAllowed(method, path, "GET, HEAD");
        if (!opts.config_dump) {
          return Text(http::status::service_unavailable,
                      "config dump is not available in this process\n");
        }
        Reply r;
        r.content_type = "application/json";
        r.body = opts.config_dump();
        return r;
      }
      return Text(
          http::status::not_found,
          absl::StrCat("not found: ", Av(path), "\nthis port serves: /config_dump, /logging\n"));
    case Role::kMetrics:
      if (path == "/metrics") {
        if (!IsGet(req.method())) return MethodNotAllowed(method, path, "GET, HEAD");
        return Metrics();
      }
      return Text(http::status::not_found,
                  absl::StrCat("not found: ", Av(path), "\nthis port serves: /metrics\n"));
    case Role::kReadiness:
      if (path == "/healthz/ready") {
        if (!IsGet(req.method())) return MethodNotAllowed(method, path, "GET, HEAD");
        std::string reason = opts.not_ready_reason ? opts.not_ready_reason() : "";
        if (reason.empty()) return Text(http::status::ok, "ready\n");
        if (reason.back() != '\n') reason += '\n';
        return Text(http::status::service_unavailable, std::move(reason));
      }
      return Text(http::status::not_found,
                  absl::StrCat("not found: ", Av(path), "\nthis port serves: /healthz/ready\n"));
  }
  return Text(http::status::not_found, "not found\n");
}

AdminServer::AdminServer(AdminOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}

AdminServer::~AdminServer() {
  Stop();
}

absl::Status AdminServer::Start() {
  return impl_->Start();
}

void AdminServer::Stop() {
  impl_->Stop();
}

SockAddr AdminServer::admin_addr() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->admin.bound;
}

SockAddr AdminServer::metrics_addr() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->metrics.bound;
}

SockAddr AdminServer::readiness_addr() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->readiness.bound;
}

std::vector<int> AdminServer::listener_fds() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<int> out;
  for (auto* l : {&impl_->admin, &impl_->metrics, &impl_->readiness})
    out.push_back(l->acceptor.is_open() ? l->acceptor.native_handle() : -1);
  return out;
}

uint64_t AdminServer::bad_requests() const {
  return static_cast<uint64_t>(impl_->bad_requests->Value());
}

}  // namespace weft
