// Admin, metrics and readiness HTTP endpoints, served by Boost.Beast on one thread of their
// own so they never stall the data path:
//   admin (default 127.0.0.1:15000): GET /config_dump, GET|POST /logging?level=debug|info|...
//   metrics (default 0.0.0.0:15020): GET /metrics  (Prometheus text format 0.0.4)
//   readiness (default 0.0.0.0:15021): GET /healthz/ready -> 200 "ready" | 503 reason
// Any other path is 404; malformed HTTP closes that connection (counted), never the server.
#pragma once

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"

namespace weft {

struct AdminOptions {
  SockAddr admin_addr;      // port 0: pick a free port
  SockAddr metrics_addr;
  SockAddr readiness_addr;
  // Registries rendered on /metrics (ztunnel's and, e.g., the process collector).
  std::vector<std::shared_ptr<prometheus::Registry>> registries;
  std::function<std::string()> config_dump;  // JSON text
  // Empty string: ready. Otherwise the reason it is not ready.
  std::function<std::string()> not_ready_reason;
};

class AdminServer {
 public:
  explicit AdminServer(AdminOptions opts);
  ~AdminServer();  // stops and joins
  absl::Status Start();  // binds all three (error if any bind fails), then serves on a thread
  void Stop();
  // Bound addresses (useful when ports were 0).
  SockAddr admin_addr() const;
  SockAddr metrics_addr() const;
  SockAddr readiness_addr() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft
