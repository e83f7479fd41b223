#include "examples/teashop/app.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/status.h"
#include "examples/teashop/backends.h"
#include "examples/teashop/frontend.h"
#include "examples/teashop/grpc_echo.h"
#include "examples/teashop/load.h"
#include "nlohmann/json.hpp"

namespace weft::teashop {

namespace {

absl::StatusOr<std::chrono::milliseconds> ParseDur(const std::string& flag, const std::string& v) {
  int64_t secs = 0;
  if (absl::SimpleAtoi(v, &secs) && secs >= 0) return std::chrono::milliseconds(secs * 1000);
  absl::Duration d;
  if (!absl::ParseDuration(v, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", v, "\": expected a duration such as 10s, 500ms or 1m"));
  }
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

template <typename T>
absl::Status ParseInt(const std::string& flag, const std::string& v, T lo, T hi, T* out) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < static_cast<int64_t>(lo) || n > static_cast<int64_t>(hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", v, "\": expected an integer from ", lo, " to ", hi));
  }
  *out = static_cast<T>(n);
  return absl::OkStatus();
}

// Flags whose values are checked after parsing: durations (by flag) and --upstream-conn.
struct Durations {
  std::map<std::string, std::string> values;
  std::string conn;
};

// The parser; flags with a type go straight into `o` (checked by CLI11), the others into `d`.
std::unique_ptr<CLI::App> TeashopApp(AppOptions& o, Durations& d) {
  auto app = std::make_unique<CLI::App>(
      "The tea shop: one binary, one role per process. Upstream URLs come from flags or, when\n"
      "a flag is absent, the environment (as a Kubernetes pod spec's env gives them).",
      "weft-teashop");
  app->add_option("--role", o.role,
                  "frontend catalogue cart recommendation store idle echo echo-request (servers), "
                  "load (a driver); required")
      ->type_name("ROLE");
  CLI::Option_group* server = app->add_option_group("server", "server roles");
  server->add_option("--listen", o.server.listen, "port 0: any; see --port-file")
      ->type_name("ADDR:PORT")
      ->capture_default_str();
  server->add_option("--threads", o.server.threads, "worker threads")
      ->type_name("N")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  server->add_flag("--access-log", o.server.access_log, "one JSON line per request on stderr");
  server->add_option("--log-level", o.log_level, "debug|info|warn|error")
      ->type_name("LEVEL")
      ->capture_default_str();
  server
      ->add_option("--drain-timeout", d.values["--drain-timeout"],
                   "on SIGTERM, how long requests in flight may finish (default 5s)")
      ->type_name("DUR");
  server->add_option("--port-file", o.port_file, "write the bound port to FILE once listening")
      ->type_name("FILE");
  CLI::Option_group* fe = app->add_option_group("frontend", "the front end's upstreams");
  fe->add_option("--catalogue-url", o.catalogue_url,
                 "env CATALOGUE_URL, e.g. http://catalogue.shop.svc.cluster.local:80")
      ->type_name("URL");
  fe->add_option("--cart-url", o.cart_url, "env CART_URL")->type_name("URL");
  fe->add_option("--recommendation-url", o.recommendation_url, "env RECOMMENDATION_URL")
      ->type_name("URL");
  fe->add_option("--store-url", o.store_url, "env STORE_URL")->type_name("URL");
  fe->add_option("--upstream-conn", d.conn,
                 "keepalive (default) | per-request; env UPSTREAM_CONN (load: to the target)")
      ->type_name("MODE");
  fe->add_option("--upstream-timeout", d.values["--upstream-timeout"],
                 "per upstream call (default 5s)")
      ->type_name("DUR");
  CLI::Option_group* be =
      app->add_option_group("backends", "catalogue, recommendation, store, echo");
  be->add_option("--catalogue-size", o.catalogue_size,
                 "teas generated (every role must agree); env CATALOGUE_SIZE")
      ->type_name("N")
      ->check(CLI::Range(1, Catalogue::kMaxSize))
      ->capture_default_str();
  be->add_option("--rec-dims", o.rec_dims, "recommendation: feature dimensions")
      ->type_name("N")
      ->check(CLI::Range(8, 65536))
      ->capture_default_str();
  be->add_option("--rec-passes", o.rec_passes, "recommendation: item-to-item passes per request")
      ->type_name("N")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  be->add_option("--stock", o.stock, "store: initial stock of each tea")
      ->type_name("N")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  be->add_option("--echo-size", o.echo_size,
                 "echo (the benchmark's fortio-like server): answers every request with its\n"
                 "body, or with N bytes when it has none")
      ->type_name("N")
      ->check(CLI::Range(0, 64 << 20))
      ->capture_default_str();
  server
      ->add_option("--fail-percent", o.fail_percent,
                   "answer 503 to this percentage of requests (at random; not /healthz): a\n"
                   "flaky back end")
      ->type_name("P")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  server
      ->add_option("--delay", d.values["--delay"],
                   "hold every request this long before answering (not /healthz): an\n"
                   "overloaded back end")
      ->type_name("DUR");
  be->add_option("--grpc-listen", o.grpc_listen,
                 "echo-request: also answer gRPC unary calls (any method) on ADDR:PORT with\n"
                 "the same JSON (as the message's bytes)")
      ->type_name("ADDR:PORT");
  be->add_option("--pod", o.pod,
                 "echo-request: the pod name it reports (env POD_NAME, else HOSTNAME)")
      ->type_name("NAME");
  be->add_option("--namespace", o.ns, "echo-request: the namespace it reports (env POD_NAMESPACE)")
      ->type_name("NS");
  CLI::Option_group* load =
      app->add_option_group("load", "a closed loop over the front end's 8 request types");
  load->add_option("--target", o.target, "the front end (env TARGET_URL)")->type_name("URL");
  load->add_option("--path", o.path,
                   "GET this path of --target in a loop (e.g. /teas/1 of a back end) instead\n"
                   "of the front end's eight request types")
      ->type_name("PATH");
  load->add_option("--duration", d.values["--duration"], "default 10s")->type_name("DUR");
  load->add_option("--concurrency", o.concurrency, "users")
      ->type_name("N")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  load->add_flag("--json", o.json, "print the report as JSON");
  CLI::Option_group* gc =
      app->add_option_group("grpc-call", "gRPC unary calls to --target HOST:PORT");
  gc->add_option("--method", o.grpc_method, "/package.Service/Method")->type_name("PATH");
  gc->add_option("--count", o.count, "calls, one after the other on one connection")
      ->type_name("N")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  gc->add_option("--metadata", o.metadata, "sent with every call (repeatable)")
      ->type_name("NAME=VALUE");
  gc->add_option("--expect-code", o.expect_code,
                 "exit 0 only if every call ended with this gRPC status (default 0, OK)")
      ->type_name("N")
      ->check(CLI::Range(0, 16))
      ->capture_default_str();
  load->add_option("--seed", o.seed, "varies the users' choices")
      ->type_name("N")
      ->capture_default_str();
  app->footer("DUR: 10s, 500ms, 1m, or a number of seconds.");
  return app;
}

bool IsServerRole(const std::string& r) {
  return r == "frontend" || r == "catalogue" || r == "cart" || r == "recommendation" ||
         r == "store" || r == "idle" || r == "echo" || r == "echo-request";
}

}  // namespace

absl::StatusOr<AppOptions> ParseFlags(const std::vector<std::string>& args,
                                      const std::function<const char*(const char*)>& getenv) {
  AppOptions o;
  auto env = [&](const char* name, std::string* out) {
    if (const char* v = getenv(name); v != nullptr && *v != '\0') *out = v;
  };
  env("CATALOGUE_URL", &o.catalogue_url);
  env("CART_URL", &o.cart_url);
  env("RECOMMENDATION_URL", &o.recommendation_url);
  env("STORE_URL", &o.store_url);
  env("TARGET_URL", &o.target);
  env("POD_NAME", &o.pod);
  env("POD_NAMESPACE", &o.ns);
  if (o.pod.empty()) env("HOSTNAME", &o.pod);
  std::string conn_env, size_env;
  env("UPSTREAM_CONN", &conn_env);
  env("CATALOGUE_SIZE", &size_env);
  if (!conn_env.empty()) {
    WEFT_ASSIGN_OR_RETURN(o.conn, ParseConnMode(conn_env));
  }
  if (!size_env.empty()) {
    WEFT_RETURN_IF_ERROR(
        ParseInt("CATALOGUE_SIZE", size_env, 1, Catalogue::kMaxSize, &o.catalogue_size));
  }

  Durations d;
  auto app = TeashopApp(o, d);
  WEFT_RETURN_IF_ERROR(ParseArgs(*app, args));
  const std::pair<const char*, std::chrono::milliseconds*> durations[] = {
      {"--drain-timeout", &o.server.drain_timeout},
      {"--upstream-timeout", &o.upstream_timeout},
      {"--duration", &o.duration},
      {"--delay", &o.delay}};
  for (const auto& [flag, out] : durations) {
    if (app->count(flag) > 0) {
      WEFT_ASSIGN_OR_RETURN(*out, ParseDur(flag, d.values.at(flag)));
    }
  }
  if (app->count("--upstream-conn") > 0) {
    WEFT_ASSIGN_OR_RETURN(o.conn, ParseConnMode(d.conn));
  }
  if (o.role.empty()) return absl::InvalidArgumentError("--role is required");
  if (!IsServerRole(o.role) && o.role != "load" && o.role != "grpc-call") {
    return absl::InvalidArgumentError(
        absl::StrCat("--role ", o.role,
                     ": use frontend, catalogue, cart, recommendation, store, idle, echo, "
                     "echo-request, load or grpc-call"));
  }
  if (o.role == "grpc-call") {
    if (o.target.empty() || o.grpc_method.empty())
      return absl::InvalidArgumentError("grpc-call needs --target HOST:PORT and --method PATH");
    for (const std::string& m : o.metadata)
      if (m.find('=') == std::string::npos || m[0] == '=')
        return absl::InvalidArgumentError(absl::StrCat("--metadata ", m, ": give NAME=VALUE"));
  }
  log::Level level;
  if (!log::ParseLevel(o.log_level, &level)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-level ", o.log_level, ": use debug, info, warn or error"));
  }
  o.server.role = o.role;
  if (o.role == "frontend") {
    const std::pair<const char*, const std::string*> urls[] = {
        {"--catalogue-url (or CATALOGUE_URL)", &o.catalogue_url},
        {"--cart-url (or CART_URL)", &o.cart_url},
        {"--recommendation-url (or RECOMMENDATION_URL)", &o.recommendation_url},
        {"--store-url (or STORE_URL)", &o.store_url}};
    for (const auto& [name, url] : urls) {
      if (url->empty()) return absl::InvalidArgumentError(absl::StrCat("frontend needs ", name));
      if (auto u = Url::Parse(*url); !u.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": ", u.status().message()));
      }
    }
  }
  if (o.role == "load") {
    if (o.target.empty())
      return absl::InvalidArgumentError("load needs --target URL (or TARGET_URL)");
    if (auto u = Url::Parse(o.target); !u.ok()) return u.status();
    if (!o.path.empty() && o.path[0] != '/')
      return absl::InvalidArgumentError(
          absl::StrCat("--path ", o.path, ": give an absolute path, e.g. /teas/1"));
  }
  return o;
}

std::string Usage() {
  AppOptions o;
  Durations d;
  return TeashopApp(o, d)->help();
}

namespace {

asio::awaitable<Response> NotHere(Request req) {
  co_return MakeResponse(http::status::not_found, "this pod only answers /healthz\n");
}

// echo-request (the Gateway API conformance suite's echo server): every request answered 200
// with JSON naming this pod and what arrived: {"pod", "namespace", "method", "path" (the whole
// request target, query included), "host", "headers": {lower-case name: [values...]}}.
Handler EchoRequestHandler(std::string pod, std::string ns) {
  return [pod, ns](Request req) -> asio::awaitable<Response> {
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& f : req) {
      std::string name = absl::AsciiStrToLower(std::string(f.name_string()));
      headers[name].push_back(std::string(f.value()));
    }
    nlohmann::json j = {{"pod", pod},
                        {"namespace", ns},
                        {"method", std::string(req.method_string())},
                        {"path", std::string(req.target())},
                        {"host", std::string(req[http::field::host])},
                        {"headers", headers}};
    co_return JsonResponse(http::status::ok, j.dump());
  };
}

// --fail-percent and --delay around a role's handler. Failures are drawn from a counter mixed
// by splitmix64: uniform, lock-free, and the same sequence on every run.
Handler WithFaults(Handler inner, int fail_percent, std::chrono::milliseconds delay) {
  if (fail_percent == 0 && delay.count() == 0) return inner;
  auto draws = std::make_shared<std::atomic<uint64_t>>(0);
  return [inner = std::move(inner), fail_percent, delay,
          draws](Request req) -> asio::awaitable<Response> {
    if (req.target() == "/healthz") co_return co_await inner(std::move(req));
    if (delay.count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, delay);
      beast::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    uint64_t z = draws->fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    if (static_cast<int>(z % 100) < fail_percent)
      co_return MakeResponse(http::status::service_unavailable,
                             "injected failure (weft-teashop --fail-percent)\n");
    co_return co_await inner(std::move(req));
  };
}

absl::StatusOr<Handler> MakeRoleHandler(const AppOptions& o) {
  if (o.role == "frontend") {
    FrontendOptions f;
    WEFT_ASSIGN_OR_RETURN(f.catalogue, Url::Parse(o.catalogue_url));
    WEFT_ASSIGN_OR_RETURN(f.cart, Url::Parse(o.cart_url));
    WEFT_ASSIGN_OR_RETURN(f.recommendation, Url::Parse(o.recommendation_url));
    WEFT_ASSIGN_OR_RETURN(f.store, Url::Parse(o.store_url));
    f.conn = o.conn;
    f.timeout = o.upstream_timeout;
    return FrontendHandler(std::make_shared<Frontend>(f));
  }
  if (o.role == "cart") return ServiceHandler(std::make_shared<CartService>());
  if (o.role == "idle") return Handler(NotHere);
  if (o.role == "echo") {
    // Built once: every bodiless request gets the same payload, as fortio's server does.
    auto payload = std::make_shared<const std::string>(o.echo_size, 'x');
    return Handler([payload](Request req) -> asio::awaitable<Response> {
      std::string body = req.body().empty() ? *payload : std::move(req.body());
      co_return MakeResponse(http::status::ok, std::move(body), "application/octet-stream");
    });
  }
  if (o.role == "echo-request") return EchoRequestHandler(o.pod, o.ns);
  auto catalogue = std::make_shared<const Catalogue>(o.catalogue_size);
  if (o.role == "catalogue") return ServiceHandler(std::make_shared<CatalogueService>(catalogue));
  if (o.role == "recommendation") {
    return ServiceHandler(
        std::make_shared<RecommendationService>(catalogue, o.rec_dims, o.rec_passes));
  }
  return ServiceHandler(std::make_shared<StoreService>(catalogue, o.stock));
}

absl::StatusOr<Handler> MakeHandler(const AppOptions& o) {
  WEFT_ASSIGN_OR_RETURN(Handler h, MakeRoleHandler(o));
  return WithFaults(std::move(h), o.fail_percent, o.delay);
}

int RunServer(const AppOptions& o) {
  // Before any thread starts, so every thread inherits the mask and the wait below is the only
  // place these signals arrive.
  BlockTerminationSignals();

  auto handler = MakeHandler(o);
  if (!handler.ok()) {
    std::cerr << "weft-teashop: " << handler.status().message() << "\n";
    return 2;
  }
  std::unique_ptr<GrpcEcho> grpc_echo;
  if (!o.grpc_listen.empty()) {
    auto g = GrpcEcho::Start(o.grpc_listen, o.pod, o.ns);
    if (!g.ok()) {
      LOG_ERROR("teashop", "cannot start", {{"role", o.role}, {"error", g.status().ToString()}});
      return 1;
    }
    grpc_echo = std::move(*g);
    LOG_INFO("teashop", "serving gRPC", {{"role", o.role}, {"port", grpc_echo->port()}});
  }
  auto server = Server::Start(o.server, std::move(*handler));
  if (!server.ok()) {
    LOG_ERROR("teashop", "cannot start",
              {{"role", o.role}, {"error", std::string(server.status().message())}});
    return 1;
  }
  LOG_INFO("teashop", "serving",
           {{"role", o.role},
            {"address", (*server)->address()},
            {"threads", o.server.threads},
            {"upstream_conn", std::string(ConnModeName(o.conn))}});
  if (!o.port_file.empty()) {
    // Written then renamed, so a reader never sees a partial number.
    const std::string tmp = o.port_file + ".tmp";
    std::ofstream(tmp) << (*server)->port() << "\n";
    if (std::rename(tmp.c_str(), o.port_file.c_str()) != 0) {
      LOG_ERROR("teashop", "cannot write --port-file", {{"file", o.port_file}});
      return 1;
    }
  }
  const int sig = WaitForTerminationSignal();
  LOG_INFO("teashop", "stopping",
           {{"role", o.role}, {"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Stop();
  LOG_INFO("teashop", "stopped", {{"role", o.role}, {"requests", (*server)->requests()}});
  return 0;
}

int RunLoadRole(const AppOptions& o) {
  signal(SIGPIPE, SIG_IGN);
  LoadOptions l;
  l.target = o.target;
  l.duration = o.duration;
  l.concurrency = o.concurrency;
  l.conn = o.conn;
  l.timeout = o.upstream_timeout;
  l.catalogue_size = o.catalogue_size;
  l.seed = o.seed;
  l.path = o.path;
  l.threads = std::min(o.server.threads, o.concurrency);
  auto report = RunLoad(l);
  if (!report.ok()) {
    std::cerr << "weft-teashop: " << report.status().message() << "\n";
    return 2;
  }
  if (o.json) {
    std::cout << report->ToJson().dump() << std::endl;
  } else {
    std::cout << report->ToTable() << std::flush;
  }
  if (report->Successes() == 0) {
    std::cerr << "weft-teashop: no request to " << o.target
              << " succeeded (is the front end up and reachable?)\n";
    return 1;
  }
  return 0;
}

int RunGrpcCallRole(const AppOptions& o) {
  GrpcCallOptions g;
  g.target = o.target;
  g.method = o.grpc_method;
  g.count = o.count;
  g.timeout = o.upstream_timeout;
  for (const std::string& m : o.metadata) {
    const size_t eq = m.find('=');
    g.metadata.emplace_back(absl::AsciiStrToLower(m.substr(0, eq)), m.substr(eq + 1));
  }
  auto lines = GrpcCalls(g);
  if (!lines.ok()) {
    std::cerr << "weft-teashop: " << lines.status().message() << "\n";
    return 2;
  }
  bool all_expected = true;
  for (const std::string& l : *lines) {
    std::cout << l << "\n";
    all_expected &= absl::StartsWith(l, absl::StrCat("{\"code\":", o.expect_code, ","));
  }
  std::cout << std::flush;
  return all_expected ? 0 : 1;
}

}  // namespace

int TeashopMain(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto opts = ParseFlags(args, [](const char* n) { return std::getenv(n); });
  if (!opts.ok()) {
    if (absl::IsCancelled(opts.status())) {
      std::cout << Usage();
      return 0;
    }
    std::cerr << "weft-teashop: " << opts.status().message() << "\nRun 'weft-teashop --help'.\n";
    return 2;
  }
  log::Level level = log::Level::kInfo;
  log::ParseLevel(opts->log_level, &level);
  log::SetLevel(level);
  if (opts->role == "grpc-call") return RunGrpcCallRole(*opts);
  return opts->role == "load" ? RunLoadRole(*opts) : RunServer(*opts);
}

}  // namespace weft::teashop
