// The benchmark suite's report: goal evaluation, the markdown report and gnuplot PNG plots, all
// read from one results document (results.h: SuiteResults, read with FromJson<SuiteResults>).
// Pure functions of the document except WritePlots, which writes files and runs gnuplot.
//
// Every reader copes with a partial document: any scenario, step, case or run may be missing or
// may carry an "error" instead of numbers. A goal whose inputs are missing or failed is
// reported as "not measured", never as a pass.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/suite/results.h"
#include "nlohmann/json.hpp"

namespace weft::bench::suite {

// One goal for one Weft mode ("ebpf" or "iptables"). Goals are targets, not assertions: a miss
// is reported with its size ("1.34× bare, goal ≤ 1.10×: missed by 22%").
//
// The goals (issue 6), evaluated for each Weft mode:
//   seed, 20 users: p75 latency ≤ 1.10× bare; cpu_cores ≤ 1.25× bare; mem_bytes ≤ 1.05× bare.
//   seed, 40 users: achieved_rps ≥ 0.99 × asked_rps and 0 errors (bare's figures are shown
//     alongside).
//   istio, per connections case: p99(mode) − p99(bare) ≤ ½ (p99(sidecar) − p99(bare));
//     (host_cpu_cores(mode) − host_cpu_cores(bare)) × 1000 / achieved_rps(mode) ≤ 0.06 vCPU
//     (kernel time included; mesh_cpu_cores per 1000 rps is shown alongside);
//     ztunnel_peak_rss_bytes ≤ 12 MiB.
//   throughput: cross-node 1 stream ≥ 50% of bare's Gbit/s; same-node (each streams case)
//     ≥ 80% of bare's.
//   scale: bytes_per_connection at the largest idle-connection count ≤ 4 KiB (4096 B).
// "Missed by" is relative to the limit: value/limit − 1 for "≤" goals, 1 − value/limit for "≥".
struct GoalRow {
  std::string scenario;  // "seed", "istio", "throughput", "scale"
  std::string goal;      // what is asked, with the case: "p75 latency at 20 users ≤ 1.10× bare"
  std::string mode;      // "ebpf" or "iptables"
  std::string value;     // the measured figure as text ("1.34× bare"); "not measured" otherwise
  bool measured = false;
  bool pass = false;   // only ever true when measured
  std::string detail;  // the inputs and the verdict, or why it was not measured
};

// What `run` adds over `bare` (same step or case): latency percentiles and CPU per 1,000 rps
// (results.h OverBare; rps = the run's achieved rps, else `fallback_rps`). nullopt when either
// run is missing or failed, or `run` is bare's.
std::optional<OverBare> ComputeOverBare(const LoadRun* run, const LoadRun* bare,
                                        double fallback_rps);

// Whether the document has the L7 figures (an HTTP sidecar mesh run, a Weft "-l7" run, or an
// istio case with a protocol): then the report adds the goals of issue 14 (Weft L7's added p99
// and CPU per 1,000 rps at most the HTTP sidecar mesh's, per istio case and at 20 seed users)
// and the section "Added latency and CPU per 1,000 requests". Older documents render as before.
bool HasL7Figures(const SuiteResults& results);

// Every goal row, in a fixed order (scenario, goal, case, mode), whether or not the document
// holds the inputs.
std::vector<GoalRow> EvaluateGoals(const SuiteResults& results);

// [{"scenario", "goal", "mode", "value", "measured", "pass", "result", "detail"}, ...] with
// "result" one of "pass", "missed", "not measured".
nlohmann::json GoalsToJson(const std::vector<GoalRow>& goals);

// The markdown report: header (machine, load, revision, invocation, dates, quick), goals,
// published anchors next to this run's ratios, one section per scenario present, then the
// errors. `plot_files` (as WritePlots returns them) are linked by file name where their
// scenario's section is, so the report is meant to be written to the same directory as the
// plots; files not ending in .png are ignored.
std::string RenderSuiteMarkdown(const SuiteResults& results,
                                const std::vector<std::string>& plot_files = {});

// Writes the plot data (*.dat) and one gnuplot script (plots.gp, paths relative to out_dir, so
// `cd out_dir && gnuplot plots.gp` re-plots) into out_dir (created if missing), then runs
// `gnuplot plots.gp` in out_dir (posix_spawnp, no shell). PNGs (pngcairo, or gnuplot's png
// terminal where cairo is missing):
//   seed-latency.png       p75 and p99 latency (ms) vs users, one line per mode
//   seed-cpu.png           cpu_cores vs users per mode
//   seed-memory.png        mem_bytes (MiB) vs users per mode
//   istio-latency.png      p50/p90/p99 per mode per connections case (clustered bars)
//   scale-pods.png         ztunnel and agent RSS (MiB) vs pods per mode
//   scale-idle-connections.png  ztunnel RSS (MiB) vs idle connections per mode
// A plot is written only when its scenario has data. Returns every file written (.dat, .gp,
// .png; full paths). FailedPrecondition when gnuplot is not installed (or `gnuplot` names no
// executable), Internal with gnuplot's stderr when it fails, InvalidArgument when there is
// nothing to plot.
absl::StatusOr<std::vector<std::string>> WritePlots(const SuiteResults& results,
                                                    const std::string& out_dir,
                                                    const std::string& gnuplot = "gnuplot");

}  // namespace weft::bench::suite
