#include "examples/teashop/app.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/status.h"
#include "examples/teashop/backends.h"
#include "examples/teashop/frontend.h"
#include "examples/teashop/load.h"

namespace weft::teashop {

const char kUsage[] =
    "usage: weft-teashop --role ROLE [flags]\n"
    "roles: frontend catalogue cart recommendation store idle echo (servers), load (a driver)\n"
    "server flags:\n"
    "  --listen ADDR:PORT        default 0.0.0.0:8080 (port 0: any; see --port-file)\n"
    "  --threads N               worker threads (default 2)\n"
    "  --access-log              one JSON line per request on stderr\n"
    "  --log-level LEVEL         debug|info|warn|error (default info)\n"
    "  --drain-timeout DUR       on SIGTERM, how long requests in flight may finish (5s)\n"
    "  --port-file FILE          write the bound port to FILE once listening\n"
    "frontend:\n"
    "  --catalogue-url URL       env CATALOGUE_URL, e.g. "
    "http://catalogue.shop.svc.cluster.local:80\n"
    "  --cart-url URL            env CART_URL\n"
    "  --recommendation-url URL  env RECOMMENDATION_URL\n"
    "  --store-url URL           env STORE_URL\n"
    "  --upstream-conn MODE      keepalive (default) | per-request; env UPSTREAM_CONN\n"
    "  --upstream-timeout DUR    per upstream call (default 5s)\n"
    "catalogue, recommendation, store:\n"
    "  --catalogue-size N        teas generated (default 300; every role must agree); env "
    "CATALOGUE_SIZE\n"
    "  --rec-dims N              recommendation: feature dimensions (default 256)\n"
    "  --rec-passes N            recommendation: item-to-item passes per request (default 2)\n"
    "  --stock N                 store: initial stock of each tea (default 1000000)\n"
    "echo (the benchmark's fortio-like server):\n"
    "  --echo-size N             answers every request with its body, or with N bytes when it\n"
    "                            has none (default 1024)\n"
    "load (closed loop over the front end's 8 request types):\n"
    "  --target URL              the front end (env TARGET_URL)\n"
    "  --duration DUR            default 10s\n"
    "  --concurrency N           users (default 4)\n"
    "  --upstream-conn MODE      connections to the target: keepalive | per-request\n"
    "  --json                    print the report as JSON\n"
    "  --seed N                  varies the users' choices (default 1)\n"
    "DUR: 10s, 500ms, 1m, or a number of seconds.\n";

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

bool IsServerRole(const std::string& r) {
  return r == "frontend" || r == "catalogue" || r == "cart" || r == "recommendation" ||
         r == "store" || r == "idle" || r == "echo";
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

  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i], value;
    bool has_value = false;
    if (const size_t eq = flag.find('='); flag.starts_with("--") && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto next = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      }
      return args[++i];
    };
    if (flag == "--access-log" || flag == "--json") {
      (flag == "--json" ? o.json : o.server.access_log) = true;
      continue;
    }
    if (flag == "-h" || flag == "--help") return absl::CancelledError("help");
    static const std::map<std::string, int> kValued = {
        {"--role", 0},           {"--listen", 0},        {"--threads", 0},
        {"--log-level", 0},      {"--drain-timeout", 0}, {"--port-file", 0},
        {"--catalogue-url", 0},  {"--cart-url", 0},      {"--recommendation-url", 0},
        {"--store-url", 0},      {"--upstream-conn", 0}, {"--upstream-timeout", 0},
        {"--catalogue-size", 0}, {"--rec-dims", 0},      {"--rec-passes", 0},
        {"--stock", 0},          {"--echo-size", 0},     {"--target", 0},
        {"--duration", 0},       {"--concurrency", 0},   {"--seed", 0}};
    if (!kValued.count(flag)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag));
    }
    WEFT_ASSIGN_OR_RETURN(std::string v, next());
    if (flag == "--role") {
      o.role = v;
    } else if (flag == "--listen") {
      o.server.listen = v;
    } else if (flag == "--threads") {
      WEFT_RETURN_IF_ERROR(ParseInt(flag, v, 1, 256, &o.server.threads));
    } else if (flag == "--log-level") {
      o.log_level = v;
    } else if (flag == "--drain-timeout") {
      WEFT_ASSIGN_OR_RETURN(o.server.drain_timeout, ParseDur(flag, v));
    } else if (flag == "--port-file") {
      o.port_file = v;
    } else if (flag == "--catalogue-url") {
      o.catalogue_url = v;
    } else if (flag == "--cart-url") {
      o.cart_url = v;
    } else if (flag == "--recommendation-url") {
      o.recommendation_url = v;
    } else if (flag == "--store-url") {
      o.store_url = v;
    } else if (flag == "--upstream-conn") {
      WEFT_ASSIGN_OR_RETURN(o.conn, ParseConnMode(v));
    } else if (flag == "--upstream-timeout") {
      WEFT_ASSIGN_OR_RETURN(o.upstream_timeout, ParseDur(flag, v));
    } else if (flag == "--catalogue-size") {
      WEFT_RETURN_IF_ERROR(ParseInt(flag, v, 1, Catalogue::kMaxSize, &o.catalogue_size));
    } else if (flag == "--rec-dims") {
      WEFT_RETURN_IF_ERROR(ParseInt(flag, v, 8, 65536, &o.rec_dims));
    } else if (flag == "--rec-passes") {
      WEFT_RETURN_IF_ERROR(ParseInt(flag, v, 0, 1000, &o.rec_passes));
    } else if (flag == "--echo-size") {
      WEFT_RETURN_IF_ERROR(ParseInt<int>(flag, v, 0, 64 << 20, &o.echo_size));
    } else if (flag == "--stock") {
      WEFT_RETURN_IF_ERROR(ParseInt<int64_t>(flag, v, 0, int64_t{1} << 40, &o.stock));
    } else if (flag == "--target") {
      o.target = v;
    } else if (flag == "--duration") {
      WEFT_ASSIGN_OR_RETURN(o.duration, ParseDur(flag, v));
    } else if (flag == "--concurrency") {
      WEFT_RETURN_IF_ERROR(ParseInt(flag, v, 1, 10000, &o.concurrency));
    } else if (flag == "--seed") {
      WEFT_RETURN_IF_ERROR(ParseInt<uint32_t>(flag, v, 0, UINT32_MAX, &o.seed));
    }
  }
  if (o.role.empty()) return absl::InvalidArgumentError("--role is required");
  if (!IsServerRole(o.role) && o.role != "load") {
    return absl::InvalidArgumentError(
        absl::StrCat("--role ", o.role,
                     ": use frontend, catalogue, cart, recommendation, store, idle, echo or load"));
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
  }
  return o;
}

namespace {

asio::awaitable<Response> NotHere(Request req) {
  co_return MakeResponse(http::status::not_found, "this pod only answers /healthz\n");
}

absl::StatusOr<Handler> MakeHandler(const AppOptions& o) {
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
  auto catalogue = std::make_shared<const Catalogue>(o.catalogue_size);
  if (o.role == "catalogue") return ServiceHandler(std::make_shared<CatalogueService>(catalogue));
  if (o.role == "recommendation") {
    return ServiceHandler(
        std::make_shared<RecommendationService>(catalogue, o.rec_dims, o.rec_passes));
  }
  return ServiceHandler(std::make_shared<StoreService>(catalogue, o.stock));
}

int RunServer(const AppOptions& o) {
  // Blocked before any thread starts, so every thread inherits the mask and sigwait() below is
  // the only place these signals arrive.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto handler = MakeHandler(o);
  if (!handler.ok()) {
    std::cerr << "weft-teashop: " << handler.status().message() << "\n";
    return 2;
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
  int sig = 0;
  sigwait(&set, &sig);
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

}  // namespace

int TeashopMain(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto opts = ParseFlags(args, [](const char* n) { return std::getenv(n); });
  if (!opts.ok()) {
    if (absl::IsCancelled(opts.status())) {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << "weft-teashop: " << opts.status().message() << "\n\n" << kUsage;
    return 2;
  }
  log::Level level = log::Level::kInfo;
  log::ParseLevel(opts->log_level, &level);
  log::SetLevel(level);
  return opts->role == "load" ? RunLoadRole(*opts) : RunServer(*opts);
}

}  // namespace weft::teashop
