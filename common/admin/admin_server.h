// Admin, metrics and readiness HTTP endpoints, served by Boost.Beast on one thread of their
// own so they never stall the data path:
//   admin (default 127.0.0.1:15000): GET /config_dump, GET|POST /logging?level=debug|info|...
//   metrics (default 0.0.0.0:15020): GET /metrics  (Prometheus text format 0.0.4)
//   readiness (default 0.0.0.0:15021): GET /healthz/ready -> 200 "ready" | 503 reason
// Any other path is 404, a known path with the wrong method 405. Malformed HTTP (bad syntax,
// headers over 16 KiB, body over 64 KiB, a request not complete within read_timeout) gets a
// 4xx where possible and closes that connection, never the server; each one increments
// weft_admin_bad_requests_total, registered in opts.registries[0] (or, when no registry is
// given, in a registry of the server's own that /metrics also renders).
// HTTP/1.1 keep-alive is supported; idle connections are closed after read_timeout. At most
// 128 connections are open at once (over all three ports); further ones are closed on accept.
// config_dump and not_ready_reason are called on the server's thread: they must be
// thread-safe with respect to the rest of the process, and should be quick.
#pragma once

#include <prometheus/registry.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"

namespace weft {

// A reply of AdminOptions::fallback.
struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

struct AdminOptions {
  SockAddr admin_addr;  // port 0: pick a free port
  SockAddr metrics_addr;
  SockAddr readiness_addr;
  // Registries rendered on /metrics (ztunnel's and, e.g., the process collector).
  std::vector<std::shared_ptr<prometheus::Registry>> registries;
  // Also render the process_* metrics (common/admin/process_metrics.h) on /metrics.
  bool process_metrics = true;
  std::function<std::string()> config_dump;  // JSON text
  // Extra GET endpoints on the admin port returning JSON (e.g. weftd's "/status"). They get
  // the query parameters (not percent-decoded); an error becomes 404 (NotFound) or 400.
  // A handler for "/config_dump" takes precedence over config_dump.
  std::map<std::string, std::function<absl::StatusOr<std::string>(
                            const std::map<std::string, std::string>& params)>>
      json_handlers;
  // When set, the admin port serves only json_handlers and this (no /logging, no config_dump):
  // GET/HEAD requests for any other path (a web UI's pages and API, e.g. weftctl dashboard);
  // nullopt is a 404. Parameters as for json_handlers.
  std::function<std::optional<HttpReply>(const std::string& path,
                                         const std::map<std::string, std::string>& params)>
      fallback;
  // Bind the admin port only (metrics_addr and readiness_addr are ignored).
  bool admin_only = false;
  // Empty string: ready. Otherwise the reason it is not ready.
  std::function<std::string()> not_ready_reason;
  // Used in error hints ("is another ztunnel running ...?").
  std::string component = "ztunnel";
  // Listening sockets taken over from a predecessor process (ztunnel's hitless upgrade,
  // docs/upgrades.md), served instead of binding admin_addr / metrics_addr / readiness_addr;
  // -1: bind. The server owns them from Start on.
  int admin_fd = -1, metrics_fd = -1, readiness_fd = -1;
  // Whole-request read deadline (also the keep-alive idle timeout): bounds slowloris clients.
  std::chrono::milliseconds read_timeout{10000};
};

class AdminServer {
 public:
  explicit AdminServer(AdminOptions opts);
  ~AdminServer();  // stops and joins
  // Binds all three (error if any bind fails, e.g. "bind 0.0.0.0:15020: address in use — ..."),
  // then serves on a thread. Only once per object: a second call is FailedPrecondition.
  absl::Status Start();
  void Stop();  // closes listeners and connections, joins the thread; idempotent.
  // Bound addresses (useful when ports were 0).
  SockAddr admin_addr() const;
  SockAddr metrics_addr() const;
  SockAddr readiness_addr() const;
  // The listening descriptors (admin, metrics, readiness; -1 where none), for a successor.
  std::vector<int> listener_fds() const;
  // Malformed requests seen so far (the value of weft_admin_bad_requests_total).
  uint64_t bad_requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft
