#include "bench/suite/report.h"

#include "bench/suite/results.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common/file.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace weft::bench::suite {
namespace {

using json = nlohmann::json;

SuiteResults Load(const std::string& name) {
  std::ifstream f(std::string(WEFT_SUITE_TESTDATA) + "/" + name);
  EXPECT_TRUE(f.good()) << name;
  auto r = ReadSuiteResults(json::parse(f));
  EXPECT_TRUE(r.ok()) << name << ": " << r.status();
  return r.value_or(SuiteResults{});
}

const GoalRow* Find(const std::vector<GoalRow>& goals, const std::string& scenario,
                    const std::string& goal_prefix, const std::string& mode) {
  for (const GoalRow& g : goals)
    if (g.scenario == scenario && g.mode == mode && g.goal.rfind(goal_prefix, 0) == 0) return &g;
  return nullptr;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(EvaluateGoals, SeedRatiosPassAndMissWithTheMissSize) {
  const std::vector<GoalRow> goals = EvaluateGoals(Load("results-full.json"));

  const GoalRow* p75_ebpf = Find(goals, "seed", "p75 latency at 20 users", "ebpf");
  ASSERT_NE(p75_ebpf, nullptr);
  EXPECT_TRUE(p75_ebpf->measured);
  EXPECT_TRUE(p75_ebpf->pass) << p75_ebpf->detail;
  EXPECT_EQ(p75_ebpf->value, "1.05× bare");

  // iptables at 20 users: 16.08 ms vs 12.00 ms = 1.34×; 1.34 / 1.10 − 1 = 21.8%.
  const GoalRow* p75_ipt = Find(goals, "seed", "p75 latency at 20 users", "iptables");
  ASSERT_NE(p75_ipt, nullptr);
  EXPECT_TRUE(p75_ipt->measured);
  EXPECT_FALSE(p75_ipt->pass);
  EXPECT_EQ(p75_ipt->value, "1.34× bare");
  EXPECT_TRUE(Contains(p75_ipt->detail, "1.34× bare, goal ≤ 1.10×: missed by 22%"))
      << p75_ipt->detail;
  EXPECT_TRUE(Contains(p75_ipt->detail, "16.08 ms vs bare 12.00 ms")) << p75_ipt->detail;

  // Memory: 430 MiB vs 400 MiB = 1.075×, 2.4% over 1.05×.
  const GoalRow* mem_ipt = Find(goals, "seed", "memory at 20 users", "iptables");
  ASSERT_NE(mem_ipt, nullptr);
  EXPECT_FALSE(mem_ipt->pass);
  EXPECT_TRUE(Contains(mem_ipt->detail, "missed by 2.4%")) << mem_ipt->detail;

  const GoalRow* cpu_ipt = Find(goals, "seed", "CPU (cores) at 20 users", "iptables");
  ASSERT_NE(cpu_ipt, nullptr);
  EXPECT_TRUE(cpu_ipt->pass) << cpu_ipt->detail;
  EXPECT_EQ(cpu_ipt->value, "1.20× bare");
}

TEST(EvaluateGoals, FailedRunIsNotMeasuredNeverPass) {
  const std::vector<GoalRow> goals = EvaluateGoals(Load("results-full.json"));
  const GoalRow* ipt40 = Find(goals, "seed", "holds 40 users", "iptables");
  ASSERT_NE(ipt40, nullptr);
  EXPECT_FALSE(ipt40->measured);
  EXPECT_FALSE(ipt40->pass);
  EXPECT_EQ(ipt40->value, "not measured");
  EXPECT_TRUE(Contains(ipt40->detail, "the iptables run at 40 users failed: weft-loadgen exited"))
      << ipt40->detail;

  const GoalRow* ebpf40 = Find(goals, "seed", "holds 40 users", "ebpf");
  ASSERT_NE(ebpf40, nullptr);
  EXPECT_TRUE(ebpf40->measured);
  EXPECT_TRUE(ebpf40->pass) << ebpf40->detail;
  EXPECT_TRUE(Contains(ebpf40->detail, "bare 199.9 rps")) << ebpf40->detail;
}

TEST(EvaluateGoals, IstioThroughputScale) {
  const std::vector<GoalRow> goals = EvaluateGoals(Load("results-full.json"));
  // 64 connections, iptables: +1.40 ms vs half of the sidecar's +2.00 ms = 1.00 ms: 40% over.
  const GoalRow* p99 =
      Find(goals, "istio", "added p99 over bare ≤ ½ the sidecar's added p99 (64", "iptables");
  ASSERT_NE(p99, nullptr);
  EXPECT_FALSE(p99->pass);
  EXPECT_EQ(p99->value, "+1.40 ms");
  EXPECT_TRUE(Contains(p99->detail, "missed by 40%")) << p99->detail;
  const GoalRow* p99_ebpf4 =
      Find(goals, "istio", "added p99 over bare ≤ ½ the sidecar's added p99 (4 ", "ebpf");
  ASSERT_NE(p99_ebpf4, nullptr);
  EXPECT_TRUE(p99_ebpf4->pass) << p99_ebpf4->detail;

  // ((0.474 − 0.400) + (0.0464 − 0.040)) cores × 1000 / 999.8 rps = 0.0804 vCPU: 34% over 0.06.
  const GoalRow* cpu =
      Find(goals, "istio", "CPU per 1,000 rps over bare ≤ 0.06 vCPU (4 ", "iptables");
  ASSERT_NE(cpu, nullptr);
  EXPECT_FALSE(cpu->pass);
  EXPECT_EQ(cpu->value, "0.080 vCPU");
  EXPECT_TRUE(Contains(cpu->detail, "missed by 34%")) << cpu->detail;
  EXPECT_TRUE(Contains(cpu->detail, "mesh processes alone 0.050 vCPU")) << cpu->detail;
  const GoalRow* cpu_ebpf =
      Find(goals, "istio", "CPU per 1,000 rps over bare ≤ 0.06 vCPU (4 ", "ebpf");
  ASSERT_NE(cpu_ebpf, nullptr);
  EXPECT_TRUE(cpu_ebpf->pass) << cpu_ebpf->detail;

  const GoalRow* rss = Find(goals, "istio", "ztunnel RSS at 1,000 rps ≤ 12 MiB (4 ", "iptables");
  ASSERT_NE(rss, nullptr);
  EXPECT_FALSE(rss->pass);
  EXPECT_EQ(rss->value, "13.0 MiB");

  const GoalRow* hbone = Find(goals, "throughput", "cross-node, 1 stream", "ebpf");
  ASSERT_NE(hbone, nullptr);
  EXPECT_TRUE(hbone->pass);
  EXPECT_EQ(hbone->value, "60% of bare");
  const GoalRow* same = Find(goals, "throughput", "same-node, 1 stream", "iptables");
  ASSERT_NE(same, nullptr);
  EXPECT_FALSE(same->pass);
  EXPECT_EQ(same->value, "75% of bare");

  const GoalRow* idle_ebpf = Find(goals, "scale", "ztunnel memory per idle", "ebpf");
  const GoalRow* idle_ipt = Find(goals, "scale", "ztunnel memory per idle", "iptables");
  ASSERT_NE(idle_ebpf, nullptr);
  ASSERT_NE(idle_ipt, nullptr);
  EXPECT_TRUE(idle_ebpf->pass);
  EXPECT_EQ(idle_ebpf->value, "3,500 B");
  EXPECT_FALSE(idle_ipt->pass);
  EXPECT_TRUE(Contains(idle_ipt->detail, "at 10,000 connections")) << idle_ipt->detail;
  EXPECT_TRUE(Contains(idle_ipt->detail, "missed by 12%")) << idle_ipt->detail;

  // Every row is either measured or says why not; a pass is always measured.
  for (const GoalRow& g : goals) {
    EXPECT_FALSE(g.detail.empty()) << g.goal;
    if (g.pass) {
      EXPECT_TRUE(g.measured) << g.goal;
    }
  }
}

TEST(EvaluateGoals, MissingScenariosAreNotMeasured) {
  const std::vector<GoalRow> goals = EvaluateGoals(Load("results-quick-seed-only.json"));
  const GoalRow* p75 = Find(goals, "seed", "p75 latency at 20 users", "ebpf");
  ASSERT_NE(p75, nullptr);
  EXPECT_TRUE(p75->measured);
  const GoalRow* p75_ipt = Find(goals, "seed", "p75 latency at 20 users", "iptables");
  ASSERT_NE(p75_ipt, nullptr);
  EXPECT_FALSE(p75_ipt->measured);
  EXPECT_TRUE(Contains(p75_ipt->detail, "the iptables run at 20 users missing"));
  for (const char* s : {"istio", "throughput", "scale"}) {
    const GoalRow* g = Find(goals, s, "", "ebpf");
    ASSERT_NE(g, nullptr) << s;
    EXPECT_FALSE(g->measured) << s;
    EXPECT_FALSE(g->pass) << s;
    EXPECT_TRUE(Contains(g->detail, "not run")) << g->detail;
  }
  const GoalRow* g40 = Find(goals, "seed", "holds 40 users", "ebpf");
  ASSERT_NE(g40, nullptr);
  EXPECT_FALSE(g40->measured);

  const json j = GoalsToJson(goals);
  ASSERT_EQ(j.size(), goals.size());
  int not_measured = 0;
  for (const json& g : j)
    if (g["result"] == "not measured") ++not_measured;
  EXPECT_GT(not_measured, 10);
  EXPECT_EQ(j[0]["scenario"], "seed");
  EXPECT_EQ(j[0]["result"], "pass");
}

TEST(EvaluateGoals, AnEmptyDocumentHasNoPass) {
  for (const char* text :
       {R"({"suite": "weft-bench-suite"})",
        R"({"suite": "weft-bench-suite", "scenarios": {"istio": {"rps": 1000, "payload_bytes": 1024,
            "duration_seconds": 8, "cases": [{"connections": 4}]}}})"}) {
    auto r = ReadSuiteResults(json::parse(text));
    ASSERT_TRUE(r.ok()) << text << ": " << r.status();
    std::vector<GoalRow> goals = EvaluateGoals(*r);
    EXPECT_FALSE(goals.empty()) << text;
    for (const GoalRow& g : goals) EXPECT_FALSE(g.pass) << text << ": " << g.goal;
    EXPECT_FALSE(RenderSuiteMarkdown(*r).empty()) << text;
  }
}

// A document that does not fit the schema is refused with the field's path, never rendered.
TEST(ReadSuiteResults, MalformedDocumentsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"null", "the document: expected an object, got null"},
      {"[]", "the document: expected an object, got array"},
      {"{}", "suite: missing"},
      {R"({"suite": "weft-cp-bench"})", "\"weft-cp-bench\" is not weft-bench-suite"},
      {R"({"suite": "weft-bench-suite", "scenarios": 3})",
       "scenarios: expected an object, got number 3"},
      {R"({"suite": "weft-bench-suite", "scenarios": {"seed": {"rate_per_user": 5,
          "warmup_seconds": 2, "duration_seconds": 8, "steps": [{"users": "x", "runs": 1}]}}})",
       "scenarios.seed.steps[0].users: expected a number, got string \"x\""},
      {R"({"suite": "weft-bench-suite", "scenarios": {"seed": {"rate_per_user": 5,
          "warmup_seconds": 2, "duration_seconds": 8, "steps": [{"users": 5, "runs": 1}]}}})",
       "scenarios.seed.steps[0].runs: expected an object, got number 1"},
      {R"({"suite": "weft-bench-suite", "scenarios": {"istio": {"cases": []}}})",
       "scenarios.istio.rps: missing"},
  };
  for (const auto& [text, want] : cases) {
    auto r = ReadSuiteResults(json::parse(text));
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_TRUE(Contains(std::string(r.status().message()), want)) << text << ": " << r.status();
  }
}

TEST(RenderSuiteMarkdown, FullDocument) {
  const SuiteResults r = Load("results-full.json");
  const std::string md = RenderSuiteMarkdown(r, {"/x/seed-latency.png", "/x/seed.dat"});
  // Header.
  EXPECT_TRUE(Contains(md, "- Revision: ad1166f"));
  EXPECT_TRUE(Contains(md, "- Invocation: `bash bench/run.sh --suite`"));
  EXPECT_TRUE(Contains(md, "0.41 / 0.52 / 0.60"));
  EXPECT_TRUE(Contains(md, "2 CPUs, 8.0 GiB RAM, kernel 6.1.0-27-amd64"));
  EXPECT_TRUE(Contains(md, "- Quick run: no"));
  // Goals table rows.
  EXPECT_TRUE(Contains(md,
                       "| seed | p75 latency at 20 users ≤ 1.10× bare | iptables | 1.34× bare | "
                       "**missed** | 1.34× bare, goal ≤ 1.10×: missed by 22%"))
      << md;
  EXPECT_TRUE(Contains(md,
                       "| seed | holds 40 users: achieved ≥ 0.99× asked rps, no errors | "
                       "iptables | not measured | not measured |"));
  // Seed table: 20 users, iptables: p75 16.08, p75 ratio 1.34×, CPU 0.960 = 1.20×, memory 430.0
  // MiB = 1.07× (1.075 rounds to even).
  EXPECT_TRUE(Contains(md,
                       "| 20 | Weft, iptables capture | 12.06 | 16.08 | 20.10 | 32.16 | "
                       "99.8 / 100 | 0 | 0.960 | 430.0 | 1.34× | 1.34× | 1.20× |"))
      << md;
  EXPECT_TRUE(Contains(md, "| 40 | Weft, iptables capture | **failed** (see Errors) |"));
  EXPECT_TRUE(Contains(md,
                       "| 40 | sidecar mesh (HAProxy, mTLS) | 27.30 | 35.70 | 48.30 | 81.90 | "
                       "180.0 / 200 | 12 |"));
  // Istio: added p50/p90/p99 over bare and CPU per 1,000 rps.
  EXPECT_TRUE(Contains(md,
                       "| 64 | Weft, iptables capture | 999.8 / 1000 | 0 | 0.80 | 1.60 | 3.40 | "
                       "+0.20 / +0.50 / +1.40 | 0.061 | 0.055 | 11.5 |"))
      << md;
  // Throughput and churn percentages of bare.
  EXPECT_TRUE(Contains(md, "| cross-node | 1 | Weft, eBPF capture | 6.00 | 60% |"));
  EXPECT_TRUE(Contains(md, "| Weft, iptables capture | 2,800 | 70% |"));
  // Scale.
  EXPECT_TRUE(Contains(md, "| Weft, iptables capture | 10,000 | 59.9 | 16.0 | 9,200 | 4,600 |"))
      << md;
  EXPECT_TRUE(Contains(md, "| Weft, eBPF capture | 100 | 13.0 | 16.0 |"));
  // Anchors next to this run.
  EXPECT_TRUE(Contains(md, "## Published anchors (other hardware)"));
  EXPECT_TRUE(Contains(md, "bare 18 ms; Istio 42 ms (+133%); Linkerd 49 ms (+175%)"));
  EXPECT_TRUE(Contains(md, "| 12.00 ms | 12.60 ms (+5%) | 16.08 ms (+34%) | 25.20 ms (+110%) |"))
      << md;
  EXPECT_TRUE(Contains(md, "| 800 m | 920 m (+15%) | 960 m (+20%) |"));
  // Plots: the PNG given is linked, .dat files are not.
  EXPECT_TRUE(Contains(md, "![seed: p75 and p99 latency vs users](seed-latency.png)"));
  EXPECT_FALSE(Contains(md, "seed-cpu.png"));
  EXPECT_FALSE(Contains(md, "seed.dat"));
  // Errors: the listed one once, no duplicate from the run's own error field.
  const std::string err = "weft-loadgen exited with status 1: connect to 10.44.1.3:8080";
  const size_t first = md.find("- scenario seed, users 40, mode iptables: " + err);
  ASSERT_NE(first, std::string::npos) << md;
  EXPECT_EQ(md.find("- scenario", first + 1), std::string::npos);
}

TEST(RenderSuiteMarkdown, FewScenariosStillRender) {
  const std::string md = RenderSuiteMarkdown(Load("results-quick-seed-only.json"));
  EXPECT_TRUE(Contains(md, "- Quick run: yes"));
  EXPECT_TRUE(Contains(md, "## Seed"));
  EXPECT_FALSE(Contains(md, "## Istio"));
  EXPECT_FALSE(Contains(md, "## Throughput"));
  EXPECT_FALSE(Contains(md, "## Scale"));
  EXPECT_TRUE(Contains(md, "| 20 | Weft, eBPF capture | 9.45 | 12.60 |")) << md;
  EXPECT_TRUE(Contains(md, "scenario istio not run"));
  EXPECT_TRUE(Contains(md, "## Errors\n\nNone."));
}

TEST(RenderSuiteMarkdown, DataplaneFiguresRatiosAndBpfRunTime) {
  SuiteResults r = Load("results-quick-seed-only.json");
  r.modes = {"bare", "ebpf", "iptables"};
  DataplaneResult dp;
  dp.round_trips = 5000;
  dp.message_bytes = 1024;
  dp.connect_seconds = 2;
  DataplanePair pair;
  pair.pair = "same-node";
  pair.server = "shop/iperf-local";
  pair.pingpong["bare"].p50_us = 10;
  pair.pingpong["bare"].p99_us = 20;
  pair.pingpong["ebpf"].p50_us = 15;
  pair.pingpong["ebpf"].p99_us = 30;
  pair.pingpong["ebpf"].mesh_connections = 1;
  pair.connect["bare"].per_second = 20000;
  pair.connect["ebpf"].per_second = 5000;
  pair.connect["iptables"].error = "the mesh counted 0 connections";
  dp.pairs.push_back(pair);
  BpfProgram prog;
  prog.name = "weft_connect4";
  prog.type = "cgroup_sock_addr";
  prog.by_figure["connect"] = {10000, 2500000};
  dp.bpf_programs.push_back(prog);
  r.scenarios.dataplane = dp;
  // The typed form survives its JSON.
  EXPECT_EQ(FromJson<DataplaneResult>(ToJson(dp)).value(), dp);
  const std::string md = RenderSuiteMarkdown(r);
  EXPECT_TRUE(Contains(md, "## Data plane")) << md;
  EXPECT_TRUE(Contains(
      md, "| same-node | Weft, eBPF capture | 15.0 | – | 30.0 | – | 1.50× | 5,000 | 0.25× |"))
      << md;
  EXPECT_TRUE(Contains(
      md,
      "| same-node | Weft, iptables capture | – | – | – | – | – | **failed** (see Errors) | – |"))
      << md;
  EXPECT_TRUE(Contains(md, "| `weft_connect4` | cgroup_sock_addr | – | – | 10,000 | 250 |")) << md;
}

std::string ReadAll(const std::string& path) {
  return weft::ReadFile(path).value_or("");
}

void ExpectPng(const std::string& path) {
  const std::string data = ReadAll(path);
  ASSERT_GT(data.size(), 2000u) << path;
  EXPECT_EQ(data.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << path;
  EXPECT_NE(data.find("IEND"), std::string::npos) << path;
}

TEST(WritePlots, WritesPngsDataAndScript) {
  testing::TempDir tmp;
  const std::string out = tmp.path() + "/plots";
  auto files = WritePlots(Load("results-full.json"), out);
  ASSERT_TRUE(files.ok()) << files.status();
  for (const char* png : {"seed-latency.png", "seed-cpu.png", "seed-memory.png",
                          "istio-latency.png", "scale-pods.png", "scale-idle-connections.png"}) {
    const std::string path = out + "/" + png;
    EXPECT_NE(std::find(files->begin(), files->end(), path), files->end()) << png;
    ExpectPng(path);
  }
  for (const char* kept :
       {"plots.gp", "seed-bare.dat", "seed-sidecar.dat", "istio.dat", "scale-idle-iptables.dat"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + std::string(kept))) << kept;
  // The 40-user iptables run failed: its data file stops at 30 users.
  const std::string ipt = ReadAll(out + "/seed-iptables.dat");
  EXPECT_NE(ipt.find("\n30 "), std::string::npos) << ipt;
  EXPECT_EQ(ipt.find("\n40 "), std::string::npos) << ipt;
  // Linked from the report.
  const std::string md = RenderSuiteMarkdown(Load("results-full.json"), *files);
  EXPECT_TRUE(Contains(md, "(seed-memory.png)"));
  EXPECT_TRUE(Contains(md, "(istio-latency.png)"));
  EXPECT_TRUE(Contains(md, "(scale-idle-connections.png)"));
}

TEST(WritePlots, SeedOnlyAndHostileTitles) {
  testing::TempDir tmp;
  SuiteResults r = Load("results-quick-seed-only.json");
  // Titles go into the gnuplot script as strings: quotes and newlines must not break it.
  r.mode_titles["ebpf"] = "it's \"eBPF\"\n system('false') `touch pwned` @GPVAL_PWD";
  auto files = WritePlots(r, tmp.path());
  ASSERT_TRUE(files.ok()) << files.status();
  ExpectPng(tmp.path() + "/seed-latency.png");
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/istio-latency.png"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/scale-pods.png"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/pwned"));
}

TEST(WritePlots, ClearErrors) {
  testing::TempDir tmp;
  auto missing = WritePlots(Load("results-full.json"), tmp.path(), "/nonexistent/gnuplot");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(std::string(missing.status().message()), "install gnuplot"))
      << missing.status();

  SuiteResults churn_only;
  churn_only.scenarios.churn.emplace();
  auto nothing = WritePlots(churn_only, tmp.path());
  ASSERT_FALSE(nothing.ok());
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kInvalidArgument);
}

// The suite's runs committed under bench/results (the ones the docs cite) still render as their
// committed report.md, byte for byte. After a deliberate change of the report, regenerate them:
//   build/bench/suite/weft-bench-suite report bench/results/<run>/results.json \
//       --out bench/results/<run>
// A run with latency percentiles (ms), process CPU, softirq and mesh CPU (cores) at `rps`.
LoadRun L7Run(double p50, double p90, double p99, double cpu, double softirq, double mesh,
              double rps = 1000) {
  LoadRun run;
  run.asked_rps = rps;
  run.achieved_rps = rps;
  run.ok = 1000;
  run.errors = 0;
  run.latency_ms.p50 = p50;
  run.latency_ms.p90 = p90;
  run.latency_ms.p99 = p99;
  run.resources.cpu_cores = cpu;
  run.resources.host_softirq_cores = softirq;
  run.resources.mesh_cpu_cores = mesh;
  return run;
}

// An istio document with the L7 runs: HTTP/1.1 and gRPC cases, Weft L4 and L7, both sidecars.
SuiteResults L7Document() {
  SuiteResults r;
  r.modes = {"bare", "ebpf", "iptables", "sidecar", "sidecar-http"};
  IstioResult& istio = r.scenarios.istio.emplace();
  istio.rps = 1000;
  istio.payload_bytes = 1024;
  istio.duration_seconds = 30;
  for (const char* proto : {"http1", "grpc"}) {
    IstioCase c;
    c.connections = 64;
    c.protocol = proto;
    c.runs["bare"] = L7Run(0.50, 0.80, 1.00, 0.200, 0.050, 0);
    c.runs["ebpf"] = L7Run(0.60, 0.95, 1.20, 0.230, 0.060, 0.030);         // L4: +0.20 ms p99
    c.runs["ebpf-l7"] = L7Run(0.70, 1.10, 1.50, 0.300, 0.060, 0.100);      // L7: +0.50 ms p99
    c.runs["iptables-l7"] = L7Run(0.90, 1.50, 2.50, 0.500, 0.070, 0.300);  // +1.50 ms, 0.32 vCPU
    c.runs["sidecar"] = L7Run(0.80, 1.20, 1.60, 0.350, 0.060, 0.150);
    c.runs["sidecar-http"] = L7Run(0.90, 1.40, 2.00, 0.450, 0.060, 0.250);  // +1.00 ms, 0.26
    c.runs["iptables"].error = "weft-loadgen exited 1";
    istio.cases.push_back(std::move(c));
  }
  return r;
}

TEST(OverBare, AddedLatencyAndCpuPerThousandRequests) {
  const LoadRun bare = L7Run(0.50, 0.80, 1.00, 0.200, 0.050, 0);
  const LoadRun run = L7Run(0.70, 1.10, 1.50, 0.300, 0.060, 0.100, 500);
  auto o = ComputeOverBare(&run, &bare, 1000);
  ASSERT_TRUE(o.has_value());
  EXPECT_NEAR(*o->p50_ms, 0.20, 1e-9);
  EXPECT_NEAR(*o->p90_ms, 0.30, 1e-9);
  EXPECT_NEAR(*o->p99_ms, 0.50, 1e-9);
  // (0.100 processes + 0.010 softirq) cores over bare at 500 rps = 0.22 vCPU per 1,000 rps.
  EXPECT_NEAR(*o->cpu_per_1000_rps, 0.22, 1e-9);
  EXPECT_NEAR(*o->mesh_cpu_per_1000_rps, 0.20, 1e-9);
  // Not against itself, not with a failed or missing run.
  EXPECT_FALSE(ComputeOverBare(&bare, &bare, 1000).has_value());
  LoadRun failed = run;
  failed.error = "boom";
  EXPECT_FALSE(ComputeOverBare(&failed, &bare, 1000).has_value());
  EXPECT_FALSE(ComputeOverBare(&run, nullptr, 1000).has_value());
  // No achieved rps: the scenario's rate.
  LoadRun no_rps = run;
  no_rps.achieved_rps.reset();
  no_rps.asked_rps.reset();
  EXPECT_NEAR(*ComputeOverBare(&no_rps, &bare, 1000)->cpu_per_1000_rps, 0.11, 1e-9);
}

TEST(EvaluateGoals, WeftL7AgainstTheHttpSidecarMesh) {
  const SuiteResults r = L7Document();
  ASSERT_TRUE(HasL7Figures(r));
  const std::vector<GoalRow> goals = EvaluateGoals(r);
  const GoalRow* p99 =
      Find(goals, "istio",
           "L7: added p99 over bare ≤ the HTTP sidecar mesh's (grpc, 64 connections)", "ebpf-l7");
  ASSERT_NE(p99, nullptr);
  EXPECT_TRUE(p99->measured && p99->pass) << p99->detail;
  EXPECT_EQ(p99->value, "+0.50 ms");
  const GoalRow* ipt = Find(
      goals, "istio", "L7: added p99 over bare ≤ the HTTP sidecar mesh's (http1, 64 connections)",
      "iptables-l7");
  ASSERT_NE(ipt, nullptr);
  EXPECT_TRUE(ipt->measured);
  EXPECT_FALSE(ipt->pass);
  EXPECT_TRUE(Contains(ipt->detail, "+1.50 ms, goal ≤ +1.00 ms (sidecar-http): missed by 50%"))
      << ipt->detail;
  const GoalRow* cpu = Find(goals, "istio", "L7: CPU over bare per 1,000 rps", "iptables-l7");
  ASSERT_NE(cpu, nullptr);
  EXPECT_FALSE(cpu->pass) << cpu->detail;
  EXPECT_EQ(cpu->value, "+0.320 vCPU");
  const GoalRow* ecpu = Find(goals, "istio", "L7: CPU over bare per 1,000 rps", "ebpf-l7");
  ASSERT_NE(ecpu, nullptr);
  EXPECT_TRUE(ecpu->pass) << ecpu->detail;
  // The issue-6 goals read the HTTP/1.1 case and the L4 run ("ebpf": +0.20 ms ≤ ½ × 0.60).
  const GoalRow* l4 = Find(goals, "istio", "added p99 over bare ≤ ½", "ebpf");
  ASSERT_NE(l4, nullptr);
  EXPECT_TRUE(l4->pass) << l4->detail;
  EXPECT_TRUE(Contains(l4->detail, "p99 1.20 ms vs bare 1.00 ms")) << l4->detail;
  // No seed scenario: its L7 goals are absent, not "not measured" rows by the dozen.
  EXPECT_EQ(Find(goals, "seed", "L7:", "ebpf"), nullptr);
  // Without the sidecar-http run: not measured, never a pass.
  SuiteResults no_side = r;
  for (IstioCase& c : no_side.scenarios.istio->cases) c.runs.erase("sidecar-http");
  const std::vector<GoalRow> g2 = EvaluateGoals(no_side);
  const GoalRow* nm = Find(g2, "istio", "L7: added p99", "ebpf-l7");
  ASSERT_NE(nm, nullptr);
  EXPECT_FALSE(nm->measured || nm->pass);
  EXPECT_TRUE(Contains(nm->detail, "sidecar-http")) << nm->detail;
}

TEST(RenderSuiteMarkdown, AddedLatencyAndCpuSectionWithL7Runs) {
  const std::string md = RenderSuiteMarkdown(L7Document());
  EXPECT_TRUE(Contains(md, "## Added latency and CPU per 1,000 requests (L4 and L7)")) << md;
  EXPECT_TRUE(Contains(md, "Goals, not assertions (issues 6 and 14, L7 rows marked \"L7:\")"))
      << md;
  EXPECT_TRUE(Contains(md,
                       "| istio, grpc, 64 connections | Weft, eBPF capture, Service declared HTTP "
                       "(L7) | 1000.0 | 0.70 / 1.10 / 1.50 | +0.20 / +0.30 / +0.50 | 0.110 | "
                       "0.100 | 0 |"))
      << md;
  EXPECT_TRUE(Contains(md,
                       "| istio, http1, 64 connections | sidecar mesh, HTTP (HAProxy mode http "
                       "per pod, mTLS) | 1000.0 | 0.90 / 1.40 / 2.00 | +0.40 / +0.60 / +1.00 | "
                       "0.260 | 0.250 | 0 |"))
      << md;
  EXPECT_TRUE(Contains(md, "| istio, http1, 64 connections | Weft, iptables capture | **failed**"))
      << md;
  // The istio table names each case's protocol and shows the L7 runs after their mode.
  EXPECT_TRUE(Contains(md, "| 64 (grpc) | Weft, eBPF capture, Service declared HTTP (L7) |")) << md;
  // A document without L7 runs has no such section (older reports render as they were).
  SuiteResults old = L7Document();
  for (IstioCase& c : old.scenarios.istio->cases) {
    c.protocol.clear();
    c.runs.erase("ebpf-l7");
    c.runs.erase("iptables-l7");
    c.runs.erase("sidecar-http");
  }
  old.scenarios.istio->cases.pop_back();
  EXPECT_FALSE(HasL7Figures(old));
  EXPECT_FALSE(Contains(RenderSuiteMarkdown(old), "Added latency and CPU")) << md;
}

TEST(RenderSuiteMarkdown, CommittedRunsRenderAsCommitted) {
  int runs = 0;
  for (const auto& dir : std::filesystem::directory_iterator(WEFT_BENCH_RESULTS)) {
    auto text = weft::ReadFile(dir.path().string() + "/results.json");
    if (!text.ok()) continue;
    const json j = json::parse(*text, nullptr, false);
    if (!j.is_object() || !j.contains("suite")) continue;  // another program's (weft-cp-bench)
    auto r = ReadSuiteResults(j);
    ASSERT_TRUE(r.ok()) << dir.path() << ": " << r.status();
    std::vector<std::string> pngs;
    for (const auto& f : std::filesystem::directory_iterator(dir.path()))
      if (f.path().extension() == ".png") pngs.push_back(f.path().string());
    EXPECT_EQ(RenderSuiteMarkdown(*r, pngs), ReadAll(dir.path().string() + "/report.md"))
        << dir.path();
    ++runs;
  }
  EXPECT_GT(runs, 0) << "no results.json of weft-bench-suite under " << WEFT_BENCH_RESULTS;
}

}  // namespace
}  // namespace weft::bench::suite
