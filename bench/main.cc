// weft-bench: see bench/bench.h. Parses flags, runs the benchmark, writes results.json and
// report.md, prints the report. SIGINT/SIGTERM stop the run and clean up; a second one restores
// kernel.bpf_stats_enabled and kills. `weft-bench client ...` is the traffic client the
// benchmark spawns inside pods (bench/client.h).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "bench/bench.h"
#include "bench/bpf_stats.h"
#include "bench/client.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int sig) {
  if (!g_stop.exchange(true)) return;
  // Second signal: the user wants out now. Only async-signal-safe calls from here.
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
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && std::string(argv[1]) == "client")
    return weft::bench::ClientMain(argc - 1, argv + 1, g_stop);

  auto cfg = weft::bench::ParseArgs(argc, argv);
  if (!cfg.ok()) {
    std::fprintf(stderr, "weft-bench: %s\n", std::string(cfg.status().message()).c_str());
    return 2;
  }
  if (cfg->help) {
    std::fputs(weft::bench::Usage().c_str(), stdout);
    return 0;
  }
  auto results = weft::bench::Run(*cfg, g_stop);
  if (!results.ok()) {
    std::fprintf(stderr, "weft-bench: %s\n", std::string(results.status().message()).c_str());
    return g_stop.load() ? 130 : 1;
  }
  std::string md = weft::bench::RenderMarkdown(*results);
  if (!cfg->out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(cfg->out_dir, ec);
    if (ec || !WriteFile(cfg->out_dir + "/results.json", results->dump(2) + "\n") ||
        !WriteFile(cfg->out_dir + "/report.md", md)) {
      std::fprintf(stderr, "weft-bench: cannot write results to %s\n", cfg->out_dir.c_str());
      std::fputs(md.c_str(), stdout);
      return 1;
    }
    std::fprintf(stderr, "[weft-bench] wrote %s/results.json and %s/report.md\n",
                 cfg->out_dir.c_str(), cfg->out_dir.c_str());
  }
  std::fputs(md.c_str(), stdout);
  return 0;
}
