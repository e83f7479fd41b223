// HTTP/1.1 for the tea shop, on Boost.Beast: a server (N worker threads, each running its own
// single-threaded io_context, so a connection and everything it awaits stay on one thread) and
// an upstream client with keep-alive pooling or a connection per request. Handlers are C++20
// coroutines (asio::awaitable), so a front end waiting for its upstreams holds no thread.
#pragma once

#include <utility>  // Boost 1.74's asio/awaitable.hpp uses std::exchange without including it

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace weft::teashop {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// A response with the given status, body and Content-Type (version and keep-alive are set by the
// server from the request).
Response MakeResponse(http::status status, std::string body,
                      std::string_view content_type = "text/plain; charset=utf-8");
Response JsonResponse(http::status status, const std::string& json_text);

// The path of a request target ("/a/b?x=1" -> "/a/b").
std::string_view TargetPath(std::string_view target);
// key=value pairs of a query string or an application/x-www-form-urlencoded body, decoded
// ('+' is a space, %XX by libcurl). A repeated key keeps its last value.
std::map<std::string, std::string> ParseParams(std::string_view query);
// The query parameters of a request target.
std::map<std::string, std::string> QueryParams(std::string_view target);
// Percent-encodes a query value (libcurl).
std::string UrlEscape(std::string_view s);

// "http://host:port[/base]" (port defaults to 80). Only plain http: TLS is the mesh's job.
struct Url {
  std::string host;
  uint16_t port = 80;
  std::string base_path;  // "" or "/base", prepended to every request target
  static absl::StatusOr<Url> Parse(std::string_view url);
  std::string ToString() const;
};

using Handler = std::function<asio::awaitable<Response>(Request)>;

struct ServerOptions {
  std::string listen = "0.0.0.0:8080";  // "ADDR:PORT", "[v6]:PORT"; port 0 picks one
  int threads = 2;
  std::string role = "teashop";                   // in access logs
  bool access_log = false;                        // one JSON line per request on stderr
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive idle and whole-request read limit
  std::chrono::milliseconds drain_timeout{5000};  // Stop(): how long in-flight requests may run
  size_t body_limit = 1 << 20;
};

// GET /healthz is answered by the server itself ("ok"); everything else goes to the handler. A
// handler that throws yields 500, malformed HTTP a 400 and the connection closed, never a crash.
class Server {
 public:
  // Binds and starts serving before returning. Errors name the address and what to do.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions opts, Handler handler);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const;  // "ADDR:PORT" actually bound
  uint64_t requests() const { return requests_.load(); }

  // Graceful: stops accepting, closes idle keep-alive connections, lets requests in flight
  // finish (at most drain_timeout), then joins the workers. Idempotent; any thread but a worker.
  void Stop();

 private:
  struct Worker;
  Server(ServerOptions opts, Handler handler);
  asio::awaitable<void> Accept();
  asio::awaitable<void> Session(Worker* w, asio::ip::tcp::socket socket);

  ServerOptions opts_;
  Handler handler_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;  // on workers_[0]
  uint16_t port_ = 0;
  std::atomic<uint64_t> requests_{0};
  std::atomic<bool> stopping_{false};
  std::once_flag stop_once_;
  size_t next_worker_ = 0;  // used on workers_[0]'s thread only
};

enum class ConnMode { kKeepAlive, kPerRequest };
absl::StatusOr<ConnMode> ParseConnMode(std::string_view s);  // "keepalive" | "per-request"
std::string_view ConnModeName(ConnMode m);

// Calls one upstream. Thread-safe; Call() must run on a single-threaded io_context (the server's
// workers and the load driver's are). Keep-alive connections are pooled inside the io_context
// they belong to (an asio service), so a connection never changes threads and never outlives
// its io_context, whichever of the two is destroyed first. A pooled connection that turns out
// closed is replaced and the request retried once when no response byte had arrived.
class UpstreamClient {
 public:
  UpstreamClient(std::string name, Url url, ConnMode mode,
                 std::chrono::milliseconds timeout = std::chrono::seconds(5));
  ~UpstreamClient();

  // Sends `method target` (target relative to the URL's base path) with `body`; an error only
  // for transport failures, with the upstream's name, address and the step that failed, e.g.
  // "catalogue (http://127.0.0.1:9/): connect: Connection refused". Any HTTP status is a
  // response.
  asio::awaitable<absl::StatusOr<Response>> Call(
      http::verb method, std::string target, std::string body = {},
      std::vector<std::pair<std::string, std::string>> headers = {});

  const std::string& name() const { return name_; }
  const Url& url() const { return url_; }
  uint64_t connections_opened() const { return opened_.load(); }

 private:
  using Stream = beast::tcp_stream;
  asio::awaitable<absl::StatusOr<std::unique_ptr<Stream>>> Connect();
  absl::Status Err(std::string_view step, const beast::error_code& ec) const;

  std::string name_;
  Url url_;
  ConnMode mode_;
  std::chrono::milliseconds timeout_;
  const uint64_t id_;  // this client's key in the io_contexts' idle pools
  std::atomic<uint64_t> opened_{0};
  std::mutex mu_;
  std::vector<asio::ip::tcp::endpoint> resolved_;      // guarded by mu_
  std::chrono::steady_clock::time_point resolved_at_;  // guarded by mu_
};

}  // namespace weft::teashop
