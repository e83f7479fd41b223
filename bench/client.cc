#include "bench/client.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/traffic.h"
#include "common/net.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft::bench {

namespace {

using json = nlohmann::json;

struct ClientFlags {
  std::string kind;
  SockAddr to;
  bool have_to = false;
  int64_t size = 1024, warmup = 100, round_trips = 20000, max_seconds = 20;
  int64_t seconds = 5, max = 200000, count = 0;
};

absl::StatusOr<ClientFlags> Parse(int argc, char** argv) {
  ClientFlags f;
  CLI::App app("the benchmark's traffic client (bench/client.h)", "client");
  app.add_option("--kind", f.kind)->check(CLI::IsMember({"pingpong", "connect", "idle"}));
  std::string to;
  app.add_option("--to", to);
  const std::tuple<const char*, int64_t*, int64_t, int64_t> kNumbers[] = {
      {"--size", &f.size, 1, 1 << 20},
      {"--warmup", &f.warmup, 0, 10'000'000},
      {"--round-trips", &f.round_trips, 1, 10'000'000},
      {"--max-seconds", &f.max_seconds, 1, 3600},
      {"--seconds", &f.seconds, 1, 3600},
      {"--max", &f.max, 1, 100'000'000},
      {"--count", &f.count, 1, 100'000}};
  for (const auto& [flag, v, lo, hi] : kNumbers)
    app.add_option(flag, *v)->check(CLI::Range(lo, hi));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return absl::InvalidArgumentError(app.help());
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (!to.empty()) {
    WEFT_ASSIGN_OR_RETURN(f.to, SockAddr::Parse(to));
    f.have_to = true;
  }
  if (f.kind.empty()) return absl::InvalidArgumentError("client: --kind is required");
  if (!f.have_to) return absl::InvalidArgumentError("client: --to IP:PORT is required");
  if (f.kind == "idle" && f.count == 0)
    return absl::InvalidArgumentError("client --kind idle: --count N is required");
  return f;
}

absl::StatusOr<json> Run(const ClientFlags& f, const std::atomic<bool>& stop) {
  if (f.kind == "pingpong") {
    WEFT_ASSIGN_OR_RETURN(auto r,
                          RunPingPong(f.to, static_cast<size_t>(f.size), f.warmup, f.round_trips,
                                      std::chrono::seconds(f.max_seconds), stop));
    const auto& l = r.latency;
    return json{{"round_trips", r.round_trips},
                {"seconds", r.seconds},
                {"warmup", f.warmup},
                {"p50_us", l.p50_us},
                {"p90_us", l.p90_us},
                {"p99_us", l.p99_us},
                {"p999_us", l.p999_us},
                {"mean_us", l.mean_us},
                {"min_us", l.min_us},
                {"max_us", l.max_us},
                {"block_p50_us", r.block_p50_us}};
  }
  if (f.kind == "connect") {
    WEFT_ASSIGN_OR_RETURN(auto r,
                          RunConnectRate(f.to, std::chrono::seconds(f.seconds), f.max, stop));
    return json{{"connections", r.connections},
                {"failures", r.failures},
                {"seconds", r.seconds},
                {"per_second", r.per_second}};
  }
  WEFT_ASSIGN_OR_RETURN(auto fds, OpenIdleConnections(f.to, static_cast<int>(f.count), stop));
  std::printf("%s\n", json{{"opened", fds.size()}}.dump().c_str());
  std::fflush(stdout);
  // Held until the benchmark has measured memory and asks us to go.
  while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return json();
}

}  // namespace

int ClientMain(int argc, char** argv, const std::atomic<bool>& stop) {
  auto f = Parse(argc, argv);
  if (!f.ok()) {
    std::fprintf(stderr, "weft-bench-suite client: %s\n",
                 std::string(f.status().message()).c_str());
    return 2;
  }
  auto r = Run(*f, stop);
  if (!r.ok()) {
    std::fprintf(stderr, "weft-bench-suite client --kind %s: %s\n", f->kind.c_str(),
                 std::string(r.status().message()).c_str());
    return 1;
  }
  if (!r->is_null()) std::printf("%s\n", r->dump().c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace weft::bench
