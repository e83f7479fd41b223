// weft-teashop's command line: one binary, one role per process.
//
//   weft-teashop --role frontend|catalogue|cart|recommendation|store|idle|echo|echo-request
//                [--listen ADDR:PORT]
//   weft-teashop --role load --target URL [--path PATH] [--duration 10s] [--concurrency N]
//                [--json]
//   weft-teashop --role grpc-call --target HOST:PORT --method /pkg.Svc/M [--count N]
//                [--metadata NAME=VALUE]... [--expect-code N]
//
// Server roles serve until SIGTERM/SIGINT, then drain (see Server::Stop) and exit 0. `idle`
// serves only /healthz (a pod that exists to run `--role load` in on demand). Upstream URLs come
// from flags or, when a flag is absent, the environment (CATALOGUE_URL, CART_URL,
// RECOMMENDATION_URL, STORE_URL; TARGET_URL for load), as a Kubernetes pod spec's env gives
// them.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/teashop/http.h"

namespace weft::teashop {

struct AppOptions {
  std::string role;
  ServerOptions server;
  std::string port_file;  // written with the bound port once listening (tests use port 0)
  std::string log_level = "info";
  // frontend
  std::string catalogue_url, cart_url, recommendation_url, store_url;
  ConnMode conn = ConnMode::kKeepAlive;
  std::chrono::milliseconds upstream_timeout{5000};
  // catalogue, recommendation, store (and load: the ids it asks for)
  int catalogue_size = 300;
  int rec_dims = 256, rec_passes = 2;
  int64_t stock = 1000000;
  int echo_size = 1024;     // echo: payload of a bodiless request
  std::string pod, ns;      // echo-request: the identity it answers with
  std::string grpc_listen;  // echo-request: also answer gRPC here (grpc_echo.h)
  // every server role (the traffic demo's flaky and overloaded back ends); /healthz is exempt
  int fail_percent = 0;                // answer 503 to this share of requests, drawn at random
  std::chrono::milliseconds delay{0};  // hold every request this long before answering
  // load
  std::string target;
  std::string path;  // load: GET this path (on --target) in a loop instead of the shop's tour
  std::chrono::milliseconds duration{10000};
  int concurrency = 4;
  bool json = false;
  uint32_t seed = 1;
  // grpc-call (--target HOST:PORT)
  std::string grpc_method;
  int count = 1;
  std::vector<std::string> metadata;  // "name=value"
  int expect_code = 0;                // exit 0 iff every call ended with this gRPC status
};

// Parses argv[1..] (flags as "--flag value" or "--flag=value"); `getenv` supplies the
// environment fallbacks. Errors say which flag is wrong and what it takes; Cancelled for --help.
absl::StatusOr<AppOptions> ParseFlags(const std::vector<std::string>& args,
                                      const std::function<const char*(const char*)>& getenv);

// The --help text (flags, defaults, environment fallbacks).
std::string Usage();

// The whole program: exit code 0 (served and stopped cleanly; load: at least one success),
// 1 (load: nothing succeeded; a server failed to start), 2 (usage).
int TeashopMain(int argc, char** argv);

}  // namespace weft::teashop
