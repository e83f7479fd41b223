// weft-bench-suite: see bench/suite/suite.h. Parses flags, runs the suite, writes results.json,
// the plots and report.md into --out, prints the report. SIGINT/SIGTERM stop the run after the
// step in progress and tear every mesh down; a second one restores kernel.bpf_stats_enabled and
// kills at once. `weft-bench-suite client ...` is the traffic client the dataplane and scale
// scenarios run inside pods (bench/client.h); `weft-bench-suite report RESULTS.json [--out DIR]`
// renders the report (and the plots) again from a results.json the suite wrote.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>

#include "CLI/CLI.hpp"
#include "bench/bpf_stats.h"
#include "bench/client.h"
#include "bench/suite/report.h"
#include "bench/suite/suite.h"
#include "common/file.h"

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
  return weft::WriteFileAtomic(path, text).ok();
}

// `weft-bench-suite report RESULTS.json [--out DIR]`: the report of an earlier run, without
// running anything (no root). With --out, the plots and report.md are written into DIR (as the
// suite writes them); without, the report goes to stdout, with no plots to link.
int ReportMain(int argc, char** argv) {
  namespace suite = weft::bench::suite;
  std::string results_path, out_dir;
  CLI::App app("renders report.md and the plots from a results.json of weft-bench-suite",
               "weft-bench-suite report");
  app.add_option("results", results_path, "the results.json a run wrote")->required();
  app.add_option("--out", out_dir, "write the plots and report.md into this directory");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto text = weft::ReadFile(results_path);
  if (!text.ok()) {
    std::fprintf(stderr, "weft-bench-suite report: %s\n",
                 std::string(text.status().message()).c_str());
    return 2;
  }
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "weft-bench-suite report: %s is not JSON\n", results_path.c_str());
    return 2;
  }
  auto results = suite::ReadSuiteResults(j);
  if (!results.ok()) {
    std::fprintf(stderr, "weft-bench-suite report: %s: %s\n", results_path.c_str(),
                 std::string(results.status().message()).c_str());
    return 2;
  }
  std::vector<std::string> plots;
  if (!out_dir.empty()) {
    auto written = suite::WritePlots(*results, out_dir);
    if (!written.ok()) {
      std::fprintf(stderr, "weft-bench-suite report: plots: %s\n",
                   std::string(written.status().message()).c_str());
      return 1;
    }
    plots = *written;
  }
  const std::string md = suite::RenderSuiteMarkdown(*results, plots);
  if (!out_dir.empty()) {
    if (!WriteFile(out_dir + "/report.md", md)) {
      std::fprintf(stderr, "weft-bench-suite report: cannot write %s/report.md\n", out_dir.c_str());
      return 1;
    }
    std::fprintf(stderr, "[weft-bench-suite] wrote %s/report.md and %zu plot files\n",
                 out_dir.c_str(), plots.size());
    return 0;
  }
  std::fputs(md.c_str(), stdout);
  return 0;
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
  if (argc >= 2 && std::string(argv[1]) == "report") return ReportMain(argc - 1, argv + 1);

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
      results->errors.push_back("plots: " + std::string(written.status().message()));
    }
  }
  const std::string md = suite::RenderSuiteMarkdown(*results, plots);
  if (!opts->out_dir.empty()) {
    nlohmann::json doc = suite::ToJson(*results);
    doc["goals"] = suite::GoalsToJson(suite::EvaluateGoals(*results));
    if (!WriteFile(opts->out_dir + "/results.json", doc.dump() + "\n") ||
        !WriteFile(opts->out_dir + "/report.md", md)) {
      std::fprintf(stderr, "weft-bench-suite: cannot write results to %s\n", opts->out_dir.c_str());
      std::fputs(md.c_str(), stdout);
      return 1;
    }
    std::fprintf(stderr, "[weft-bench-suite] wrote %s/results.json, report.md and %zu plots\n",
                 opts->out_dir.c_str(), plots.size());
  }
  std::fputs(md.c_str(), stdout);
  return results->errors.empty() ? 0 : 3;
}
