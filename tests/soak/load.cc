#include "tests/soak/load.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "bench/loadgen/loadgen.h"
#include "bench/loadgen/profile.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"

namespace weft::soak {
namespace {

using std::chrono::milliseconds;

double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void PrintSegment(double t0, double t1, const bench::loadgen::Result& r) {
  const auto& o = r.overall;
  const uint64_t errors = o.status_errors + o.transport_errors + o.unfinished;
  nlohmann::json j = {{"t0_ms", t0},
                      {"t1_ms", t1},
                      {"requests", r.scheduled},
                      {"ok", o.ok},
                      {"errors", errors},
                      {"transport_errors", o.transport_errors},
                      {"status_errors", o.status_errors},
                      {"unfinished", o.unfinished},
                      {"connections", r.connections_opened}};
  std::printf("SEGMENT %s\n", j.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int LoadMain(int argc, char** argv) {
  CLI::App app{
      "One stream of the soak's load, run in a pod (weftctl exec): weft-loadgen's engine "
      "in back-to-back segments, one SEGMENT line each.",
      "weft-soak load"};
  bench::loadgen::Options o;
  o.conn = bench::loadgen::ConnMode::kKeepAlive;
  o.warmup = milliseconds(0);
  o.timeout = milliseconds(2000);
  o.duration = milliseconds(1000);
  o.users = 2;
  o.total_rate = 20;
  int seconds = 60;
  app.add_option("--target", o.target, "http://HOST[:PORT]")->required();
  app.add_option("--seconds", seconds, "stop after this long")->check(Positive());
  app.add_option("--users", o.users, "keep-alive users")->check(Positive());
  app.add_option("--rate", o.total_rate, "requests/s over all users");
  AddDurationFlag(app, "--segment", &o.duration, "length of one segment (default 1s)");
  AddDurationFlag(app, "--timeout", &o.timeout, "per request (default 2s)");
  if (auto rc = ParseFlags(app, argc, argv)) return *rc;
  o.drain = o.timeout;
  auto profile =
      bench::loadgen::ParseProfile(R"({"requests": [{"name": "echo", "path": "/soak"}]})");
  if (!profile.ok()) {
    std::fprintf(stderr, "weft-soak load: %s\n", profile.status().ToString().c_str());
    return 1;
  }
  o.profile = *profile;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() + o.duration / 2 < end) {
    const double t0 = NowMs();
    auto r = bench::loadgen::Run(o);
    if (!r.ok()) {
      // Nothing was sent (e.g. the name did not resolve): every request of the segment failed.
      std::this_thread::sleep_for(o.duration);
      bench::loadgen::Result none;
      none.scheduled = static_cast<uint64_t>(o.total_rate * o.duration.count() / 1000);
      none.overall.transport_errors = none.scheduled;
      std::fprintf(stderr, "weft-soak load: %s\n", r.status().ToString().c_str());
      PrintSegment(t0, NowMs(), none);
      continue;
    }
    PrintSegment(t0, NowMs(), *r);
  }
  return 0;
}

}  // namespace weft::soak
