// weft-bench-suite end to end, tiny: the real binary brings up its five meshes (bare, eBPF,
// iptables, sidecar TCP and HTTP), runs one short step of seed, istio (HTTP/1.1 and gRPC, Weft
// L4 and L7), throughput and churn in each, and
// writes results.json, report.md and plots. Asserts that every mode produced figures, that every
// meshed run was seen by its mesh (the suite's own check), that the goals were evaluated, and
// that nothing is left behind. The figures themselves are not judged: speed targets live in the
// benchmark's report, not in tests.
#include <unistd.h>

#include <gtest/gtest.h>

#include <signal.h>
#include <filesystem>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/suite/results.h"
#include "cli/testbed/testbed.h"
#include "common/testing/child_process.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"
#include "nlohmann/json.hpp"

namespace weft::bench::suite {
namespace {

using json = nlohmann::json;

TEST(SuiteSmoke, EveryModeEveryScenarioTiny) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, BPF, iptables");
  for (const char* tool : {"iperf3", "haproxy", "gnuplot"}) {
    if (system(absl::StrCat("command -v ", tool, " >/dev/null").c_str()) != 0) {
      GTEST_SKIP() << tool << " is not installed (bash scripts/deps.sh installs it)";
    }
  }
  testing::TempDir dir;
  const std::string out = dir.path() + "/out", work = dir.path() + "/work";
  weft::testing::ChildProcess suite(dir.path(), "suite",
                                    {WEFT_BENCH_SUITE_PATH,
                                     "--quick",
                                     "--scenarios",
                                     "seed,istio,throughput,churn,dataplane",
                                     "--users",
                                     "2",
                                     "--seed-seconds",
                                     "1",
                                     "--istio-connections",
                                     "2",
                                     "--istio-rps",
                                     "100",
                                     "--istio-seconds",
                                     "1",
                                     "--iperf-seconds",
                                     "1",
                                     "--churn-rates",
                                     "100",
                                     "--churn-seconds",
                                     "1",
                                     "--dataplane-round-trips",
                                     "200",
                                     "--dataplane-connect-seconds",
                                     "1",
                                     "--out",
                                     out,
                                     "--work-dir",
                                     work,
                                     "--weftctl",
                                     WEFTCTL_PATH,
                                     "--loadgen",
                                     WEFT_LOADGEN_PATH});
  const int rc = suite.Wait(std::chrono::seconds(280));
  ASSERT_EQ(rc, 0) << suite.Err();

  std::ifstream f(out + "/results.json");
  const json j = json::parse(f, nullptr, false);
  auto read = ReadSuiteResults(j);
  ASSERT_TRUE(read.ok()) << read.status() << "\n" << suite.Err();
  const SuiteResults& doc = *read;
  EXPECT_TRUE(doc.errors.empty()) << absl::StrJoin(doc.errors, "\n");
  const std::vector<std::string> modes = {"bare", "ebpf", "iptables", "sidecar", "sidecar-http"};
  EXPECT_EQ(doc.modes, modes);
  const Scenarios& sc = doc.scenarios;
  ASSERT_TRUE(sc.seed && sc.istio && sc.throughput && sc.churn && sc.dataplane) << j.dump();
  ASSERT_FALSE(sc.seed->steps.empty());
  ASSERT_FALSE(sc.istio->cases.empty());
  for (const std::string& m : modes) {
    SCOPED_TRACE(m);
    ASSERT_TRUE(sc.seed->steps[0].runs.contains(m));
    ASSERT_TRUE(sc.istio->cases[0].runs.contains(m));
    const LoadRun& seed = sc.seed->steps[0].runs.at(m);
    EXPECT_GT(seed.ok.value_or(0), 0) << ToJson(seed).dump();
    EXPECT_EQ(seed.errors.value_or(-1), 0);
    EXPECT_GE(seed.resources.cpu_cores.value_or(-1), 0) << ToJson(seed).dump();
    EXPECT_GT(seed.resources.mem_bytes.value_or(0), 0);
    const LoadRun& istio = sc.istio->cases[0].runs.at(m);
    EXPECT_GT(istio.ok.value_or(0), 0) << ToJson(istio).dump();
    EXPECT_GT(istio.latency_ms.p99.value_or(0), 0);
    if (m == "sidecar-http") {
      // TCP-declared targets only (iperf3, the churn's echo-tcp): "sidecar" measures them.
      EXPECT_FALSE(sc.churn->runs.contains(m));
      for (const ThroughputCase& c : sc.throughput->cases) EXPECT_FALSE(c.runs.contains(m));
      EXPECT_GE(seed.mesh_connections.value_or(0), 1) << ToJson(seed).dump();
      EXPECT_GE(istio.mesh_connections.value_or(0), 2) << ToJson(istio).dump();
      continue;
    }
    for (const ThroughputCase& c : sc.throughput->cases) {
      ASSERT_TRUE(c.runs.contains(m)) << ToJson(c).dump();
      EXPECT_GT(c.runs.at(m).gbps.value_or(0), 0) << ToJson(c).dump();
      if (m != "bare") {
        EXPECT_GE(c.runs.at(m).mesh_connections.value_or(0), 1) << ToJson(c).dump();
      }
    }
    // Churn: the step ran and has its figures; whether this machine sustained the rate (the
    // saturation verdict) is the benchmark's business, not the test's.
    ASSERT_TRUE(sc.churn->runs.contains(m)) << ToJson(*sc.churn).dump();
    const ChurnRun& churn = sc.churn->runs.at(m);
    ASSERT_EQ(churn.steps.size(), 1u) << ToJson(*sc.churn).dump();
    const ChurnStep& step = churn.steps[0];
    EXPECT_TRUE(step.error.empty()) << step.error;
    EXPECT_GT(step.achieved_cps.value_or(0), 0) << ToJson(step).dump();
    // The verdict is there as a boolean (the schema refuses anything else).
    EXPECT_TRUE(j["scenarios"]["churn"]["runs"][m]["steps"][0]["saturated"].is_boolean());
    EXPECT_TRUE(churn.max_sustained_cps.has_value()) << ToJson(churn).dump();
    if (m != "bare") {
      EXPECT_GE(step.mesh_connections.value_or(0), 1) << ToJson(step).dump();
    }
    if (m == "bare") {
      EXPECT_FALSE(seed.mesh_connections.has_value());
      EXPECT_EQ(seed.resources.mesh_mem_bytes.value_or(-1), 0);
    } else {
      // The suite's own check that the traffic crossed the mesh, not around it.
      EXPECT_GE(seed.mesh_connections.value_or(0), 1) << ToJson(seed).dump();
      EXPECT_GE(istio.mesh_connections.value_or(0), 2) << ToJson(istio).dump();
      EXPECT_GT(seed.resources.mesh_mem_bytes.value_or(0), 0);
    }
    if (m == "ebpf" || m == "iptables") {
      EXPECT_GT(istio.resources.ztunnel_peak_rss_bytes.value_or(0), 0);
      EXPECT_GT(istio.resources.ztunnel_peak_anon_bytes.value_or(0), 0);
    }
  }
  EXPECT_EQ(sc.throughput->cases.size(), 4u);  // 2 pairs x 1 and 8 streams

  // istio: HTTP/1.1 then gRPC (h2c); every mode, and each Weft mode against the Service declared
  // HTTP too ("-l7"), every run with its figures over bare.
  ASSERT_EQ(sc.istio->cases.size(), 2u) << ToJson(*sc.istio).dump();
  EXPECT_EQ(sc.istio->cases[0].protocol, "http1");
  EXPECT_EQ(sc.istio->cases[1].protocol, "grpc");
  for (const IstioCase& c : sc.istio->cases) {
    SCOPED_TRACE(c.protocol);
    for (const std::string key :
         {"bare", "ebpf", "ebpf-l7", "iptables", "iptables-l7", "sidecar", "sidecar-http"}) {
      SCOPED_TRACE(key);
      ASSERT_TRUE(c.runs.contains(key));
      const LoadRun& run = c.runs.at(key);
      EXPECT_TRUE(run.error.empty()) << run.error;
      EXPECT_GT(run.ok.value_or(0), 0) << ToJson(run).dump();
      EXPECT_EQ(run.errors.value_or(-1), 0) << ToJson(run).dump();
      EXPECT_EQ(run.over_bare.has_value(), key != "bare") << ToJson(run).dump();
      if (key != "bare") EXPECT_GE(run.mesh_connections.value_or(0), 1) << ToJson(run).dump();
    }
    // The HTTP/1.1 case once more, through a route and a retry policy (eBPF only).
    EXPECT_EQ(c.runs.contains("ebpf-l7-route"), c.protocol == "http1");
    if (c.runs.contains("ebpf-l7-route")) {
      const LoadRun& run = c.runs.at("ebpf-l7-route");
      EXPECT_GT(run.ok.value_or(0), 0) << ToJson(run).dump();
      EXPECT_EQ(run.errors.value_or(-1), 0) << ToJson(run).dump();
    }
  }

  // Dataplane: both pairs, ping-pong and connection-rate figures for bare and the Weft modes,
  // every meshed run crossed the mesh (at least its own connections counted), BPF run time of
  // the eBPF mesh's programs.
  const DataplaneResult& dp = *sc.dataplane;
  ASSERT_EQ(dp.pairs.size(), 2u) << ToJson(dp).dump();
  for (const DataplanePair& pair : dp.pairs) {
    SCOPED_TRACE(pair.pair);
    EXPECT_EQ(pair.pingpong.count("sidecar"), 0u);
    for (const std::string m : {"bare", "ebpf", "iptables"}) {
      SCOPED_TRACE(m);
      ASSERT_TRUE(pair.pingpong.contains(m) && pair.connect.contains(m));
      const DataplaneRun& pp = pair.pingpong.at(m);
      const DataplaneRun& cr = pair.connect.at(m);
      EXPECT_TRUE(pp.error.empty() && cr.error.empty()) << pp.error << cr.error;
      EXPECT_EQ(pp.round_trips.value_or(0), 200);
      EXPECT_GT(pp.p50_us.value_or(0), 0);
      EXPECT_LE(pp.p50_us.value_or(0), pp.p99_us.value_or(0));
      EXPECT_GT(cr.connections.value_or(0), 0);
      EXPECT_GT(cr.per_second.value_or(0), 0);
      if (m == "bare") {
        EXPECT_FALSE(pp.mesh_connections.has_value());
      } else {
        EXPECT_GE(pp.mesh_connections.value_or(0), 1);
        EXPECT_GE(cr.mesh_connections.value_or(0), cr.connections.value_or(1));
      }
    }
  }
  EXPECT_TRUE(dp.bpf_error.empty()) << dp.bpf_error;
  double bpf_runs = 0;
  for (const BpfProgram& p : dp.bpf_programs) {
    for (const auto& [figure, f] : p.by_figure) bpf_runs += f.runs;
  }
  EXPECT_GT(bpf_runs, 0) << ToJson(dp).dump();
  ASSERT_TRUE(j["goals"].is_array());
  EXPECT_FALSE(j["goals"].empty());

  std::ifstream md_file(out + "/report.md");
  std::string md((std::istreambuf_iterator<char>(md_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(md.find("## Goals"), std::string::npos) << md;
  EXPECT_NE(md.find("sidecar mesh"), std::string::npos);
  EXPECT_NE(md.find("## Data plane"), std::string::npos);
  EXPECT_NE(md.find("## Added latency and CPU per 1,000 requests"), std::string::npos);
  EXPECT_NE(md.find("L7: added p99 over bare"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(out + "/seed-latency.png"));

  // Every mesh was taken down: nothing named after their testbed prefixes is left.
  ASSERT_EQ(doc.meshes.size(), modes.size()) << ToJson(doc.meshes).dump();
  for (const MeshRecord& mesh : doc.meshes) {
    ASSERT_FALSE(mesh.testbed_prefix.empty()) << ToJson(mesh).dump();
    EXPECT_TRUE(testbed::TestbedLeftovers(mesh.testbed_prefix).empty()) << mesh.testbed_prefix;
  }
}

// A suite killed with SIGKILL leaves its meshes running (each `weftctl up` supervisor is a
// daemon of its own); the next run takes them down before starting its own.
TEST(SuiteSmoke, NextRunTakesDownAKilledRunsMeshes) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, BPF, iptables");
  testing::TempDir dir;
  const std::string work = dir.path() + "/killed";
  auto suite = std::make_unique<weft::testing::ChildProcess>(
      dir.path(), "killed",
      std::vector<std::string>{WEFT_BENCH_SUITE_PATH, "--modes", "bare", "--scenarios", "seed",
                               "--users", "1", "--seed-seconds", "120", "--work-dir", work,
                               "--weftctl", WEFTCTL_PATH, "--loadgen", WEFT_LOADGEN_PATH});
  const std::string registry = absl::StrCat("/run/weft/bench-suite/", suite->pid(), ".json");
  const std::string state = absl::StrCat(work, "/state/wbs", suite->pid(), "-bare/state.json");
  // Killed once its mesh is up and the seed step is running.
  for (int i = 0; i < 600 && suite->Err().find("seed: 1 users") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(suite->Err().find("seed: 1 users"), std::string::npos) << suite->Err();
  ASSERT_TRUE(std::filesystem::exists(registry));
  std::ifstream sf(state);
  json st = json::parse(sf, nullptr, false);
  ASSERT_TRUE(st.is_object()) << state;
  const std::string prefix = st.value("prefix", "");
  ASSERT_FALSE(prefix.empty());
  suite->Signal(SIGKILL);
  suite->Wait(std::chrono::seconds(10));
  suite.reset();
  EXPECT_TRUE(std::filesystem::exists(state)) << "the mesh outlives its suite";
  EXPECT_FALSE(testbed::TestbedLeftovers(prefix).empty());

  weft::testing::ChildProcess next(
      dir.path(), "next",
      {WEFT_BENCH_SUITE_PATH, "--modes", "bare", "--scenarios", "seed", "--users", "1",
       "--seed-seconds", "1", "--work-dir", dir.path() + "/next", "--weftctl", WEFTCTL_PATH,
       "--loadgen", WEFT_LOADGEN_PATH});
  ASSERT_EQ(next.Wait(std::chrono::seconds(120)), 0) << next.Err();
  EXPECT_NE(next.Err().find("cleanup of an earlier run"), std::string::npos) << next.Err();
  EXPECT_FALSE(std::filesystem::exists(state));
  EXPECT_FALSE(std::filesystem::exists(registry));
  EXPECT_TRUE(testbed::TestbedLeftovers(prefix).empty()) << prefix;
  EXPECT_FALSE(
      std::filesystem::exists(absl::StrCat("/run/weft/bench-suite/", next.pid(), ".json")));
}

}  // namespace
}  // namespace weft::bench::suite
