// weft-bench: see bench/bench.h. Parses flags, runs the benchmark, writes results.json and
// report.md, prints the report. SIGINT/SIGTERM stop the run and clean up; a second one kills.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "bench/bench.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) {
  g_stop.store(true);
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  auto cfg = weft::bench::ParseArgs(argc, argv);
  if (!cfg.ok()) {
    std::fprintf(stderr, "weft-bench: %s\n", std::string(cfg.status().message()).c_str());
    return 2;
  }
  if (cfg->help) {
    std::fputs(weft::bench::Usage().c_str(), stdout);
    return 0;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESETHAND | SA_RESTART;  // a second signal takes the default action
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

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
