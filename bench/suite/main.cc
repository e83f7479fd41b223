// weft-bench-suite: see bench/suite/suite.h. Parses flags, runs the suite, writes results.json,
// the plots and report.md into --out, prints the report. SIGINT/SIGTERM stop the run after the
// step in progress and tear every mesh down; a second one restores kernel.bpf_stats_enabled and
// kills at once. `weft-bench-suite client ...` is the traffic client the dataplane and scale
// scenarios run inside pods (bench/client.h).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "bench/bpf_stats.h"
#include "bench/client.h"
#include "bench/suite/report.h"
#include "bench/suite/suite.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int sig) {
  if (!g_stop.exchange(true)) return;
  // Second signal: out now. Only async-signal-safe calls from here.
  weft::bench::RestoreBpfStatsFromSignal();
  signal(sig, SIG_DFL);
  raise(sig);
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  namespace suite = weft::bench::suite;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && std::string(argv[1]) == "client")
    return weft::bench::ClientMain(argc - 1, argv + 1, g_stop);

  auto opts = suite::ParseArgs(argc, argv);
  if (!opts.ok()) {
    std::fprintf(stderr, "weft-bench-suite: %s\n", std::string(opts.status().message()).c_str());
    return 2;
  }
  if (opts->help) {
    std::fputs(suite::Usage().c_str(), stdout);
    return 0;
  }
  if (const char* inv = getenv("WEFT_BENCH_INVOCATION")) opts->invoked_as = inv;
  if (const char* rev = getenv("WEFT_BENCH_REVISION")) opts->revision = rev;
  if (geteuid() != 0) {
    std::fprintf(stderr,
                 "weft-bench-suite: needs root (network namespaces, cgroups, BPF, iptables inside "
                 "them)\n");
    return 2;
  }
  auto results = suite::Run(*opts, g_stop);
  if (!results.ok()) {
    std::fprintf(stderr, "weft-bench-suite: %s\n", std::string(results.status().message()).c_str());
    return g_stop.load() ? 130 : 1;
  }
  (*results)["goals"] = suite::GoalsToJson(suite::EvaluateGoals(*results));
  std::vector<std::string> plots;
  if (!opts->out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opts->out_dir, ec);
    auto written = suite::WritePlots(*results, opts->out_dir);
    if (written.ok()) {
      plots = *written;
    } else {
      std::fprintf(stderr, "weft-bench-suite: plots: %s\n",
                   std::string(written.status().message()).c_str());
      (*results)["errors"].push_back("plots: " + std::string(written.status().message()));
    }
  }
  const std::string md = suite::RenderSuiteMarkdown(*results, plots);
  if (!opts->out_dir.empty()) {
    if (!WriteFile(opts->out_dir + "/results.json", results->dump() + "\n") ||
        !WriteFile(opts->out_dir + "/report.md", md)) {
      std::fprintf(stderr, "weft-bench-suite: cannot write results to %s\n", opts->out_dir.c_str());
      std::fputs(md.c_str(), stdout);
      return 1;
    }
    std::fprintf(stderr, "[weft-bench-suite] wrote %s/results.json, report.md and %zu plots\n",
                 opts->out_dir.c_str(), plots.size());
  }
  std::fputs(md.c_str(), stdout);
  return (*results)["errors"].empty() ? 0 : 3;
}
