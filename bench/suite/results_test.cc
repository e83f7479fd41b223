#include "bench/suite/results.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace weft::bench::suite {
namespace {

using json = nlohmann::json;
namespace si = schema_internal;

// Gives every field of a result type a distinct value through its Schema (optionals set,
// containers with one element, bools true), so a round trip covers every field, including ones
// added later.
class Filler {
 public:
  template <typename T>
  void operator()(const char*, T& v, Field = Field::kOptional) {
    Fill(v);
  }
  template <typename T>
  void Derived(const char*, const T&) {}

  template <typename T>
  void Fill(T& v) {
    ++n_;
    if constexpr (si::IsOptional<T>::value) {
      v.emplace();
      Fill(*v);
    } else if constexpr (std::is_same_v<T, json>) {
      v = {{"n", n_}};
    } else if constexpr (std::is_same_v<T, bool>) {
      v = true;
    } else if constexpr (std::is_same_v<T, std::string>) {
      v = "s" + std::to_string(n_);
    } else if constexpr (std::is_floating_point_v<T>) {
      v = n_ + 0.25;
    } else if constexpr (std::is_arithmetic_v<T>) {
      v = static_cast<T>(n_);
    } else if constexpr (si::IsVector<T>::value) {
      v.resize(1);
      Fill(v[0]);
    } else if constexpr (si::IsMap<T>::value) {
      Fill(v["k" + std::to_string(n_)]);
    } else {
      T::Schema(v, *this);
    }
  }

 private:
  int n_ = 0;
};

template <typename T>
T Filled() {
  T v{};
  Filler().Fill(v);
  return v;
}

template <typename T>
class RoundTrip : public ::testing::Test {};
using ResultTypes = ::testing::Types<
    Percentiles, RunResources, LoadRun, SeedStep, SeedResult, IstioCase, IstioResult, ThroughputRun,
    ThroughputCase, ThroughputResult, ChurnStep, ChurnRun, ChurnResult, DataplaneRun, DataplanePair,
    BpfFigure, BpfProgram, DataplaneResult, ScalePodsNode, ScalePods, ScaleIdleNode, ZtunnelCounted,
    ScaleIdle, ScaleIdleMesh, ScaleMesh, ScaleResult, Machine, MeshRecord, Scenarios, SuiteResults>;
TYPED_TEST_SUITE(RoundTrip, ResultTypes);

// ToJson then FromJson gives the value back, every field set; and so does the default value.
TYPED_TEST(RoundTrip, ToJsonThenFromJsonIsTheSameValue) {
  const TypeParam v = Filled<TypeParam>();
  ASSERT_NE(v, TypeParam{});
  auto back = FromJson<TypeParam>(ToJson(v));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << ToJson(v).dump();
  EXPECT_EQ(*back, v) << ToJson(v).dump() << "\n" << ToJson(*back).dump();
  EXPECT_EQ(ToJson(*back), ToJson(v));
}

TEST(RoundTrip, DerivedFiguresAreWrittenNotRead) {
  const BpfFigure f{10000, 2500000};
  const json j = ToJson(f);
  EXPECT_EQ(j.at("ns_per_run"), 250);
  json changed = j;
  changed["ns_per_run"] = 1;
  EXPECT_EQ(FromJson<BpfFigure>(changed).value(), f);
}

TEST(RoundTrip, AbsentOptionalsAndEmptyOmittedFieldsAreNotWritten) {
  LoadRun run;
  run.error = "";
  const json j = ToJson(run);
  EXPECT_FALSE(j.contains("achieved_rps")) << j.dump();
  EXPECT_FALSE(j.contains("error")) << j.dump();
  EXPECT_FALSE(j.contains("loadgen")) << j.dump();
  EXPECT_TRUE(j.contains("latency_ms")) << j.dump();
}

json Fixture(const std::string& name) {
  std::ifstream f(std::string(WEFT_SUITE_TESTDATA) + "/" + name);
  EXPECT_TRUE(f.good()) << name;
  return json::parse(f);
}

// An old results.json with a required field missing: the error names it by its path.
TEST(FromJson, MissingRequiredFieldIsNamed) {
  const json doc = Fixture("results-full.json");
  ASSERT_TRUE(ReadSuiteResults(doc).ok()) << ReadSuiteResults(doc).status();
  const std::pair<json::json_pointer, const char*> cases[] = {
      {json::json_pointer("/scenarios/seed/steps/2/users"), "scenarios.seed.steps[2].users"},
      {json::json_pointer("/scenarios/seed/rate_per_user"), "scenarios.seed.rate_per_user"},
      {json::json_pointer("/scenarios/istio/cases/1/connections"),
       "scenarios.istio.cases[1].connections"},
      {json::json_pointer("/scenarios/throughput/cases/0/pair"),
       "scenarios.throughput.cases[0].pair"},
      {json::json_pointer("/scenarios/scale/idle_connections/0/mode"),
       "scenarios.scale.idle_connections[0].mode"},
      {json::json_pointer("/suite"), "suite"},
  };
  for (const auto& [ptr, path] : cases) {
    json j = doc;
    j[ptr.parent_pointer()].erase(ptr.back());
    auto r = ReadSuiteResults(j);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), std::string(path) + ": missing");
  }
  // null counts as missing.
  json j = doc;
  j["scenarios"]["churn"]["runs"]["ebpf"]["steps"][0]["asked_cps"] = nullptr;
  EXPECT_EQ(ReadSuiteResults(j).status().message(),
            "scenarios.churn.runs.ebpf.steps[0].asked_cps: missing");
}

// A field of the wrong type is named too, with what was expected and what was there.
TEST(FromJson, MalformedFieldIsNamed) {
  const json doc = Fixture("results-full.json");
  const std::tuple<json::json_pointer, json, const char*> cases[] = {
      {json::json_pointer("/scenarios/istio/cases/0/runs/ebpf/latency_ms/p99"), "fast",
       "scenarios.istio.cases[0].runs.ebpf.latency_ms.p99: expected a number, got string \"fast\""},
      {json::json_pointer("/scenarios/seed/steps/0/users"), 2.5,
       "scenarios.seed.steps[0].users: expected a whole number, got number 2.5"},
      {json::json_pointer("/scenarios/seed/steps/0/users"), 1e12,
       "scenarios.seed.steps[0].users: expected a number in range"},
      {json::json_pointer("/scenarios/seed/steps/1/runs/bare/error"), 7,
       "scenarios.seed.steps[1].runs.bare.error: expected a string, got number 7"},
      {json::json_pointer("/quick"), "yes", "quick: expected true or false, got string \"yes\""},
      {json::json_pointer("/modes"), "bare", "modes: expected an array, got string \"bare\""},
      {json::json_pointer("/machine/load_before/1"), "high",
       "machine.load_before[1]: expected a number, got string \"high\""},
      {json::json_pointer("/scenarios/churn/runs/bare/steps/0/saturated"), 1,
       "scenarios.churn.runs.bare.steps[0].saturated: expected true or false, got number 1"},
  };
  for (const auto& [ptr, value, want] : cases) {
    json j = doc;
    j[ptr] = value;
    auto r = ReadSuiteResults(j);
    ASSERT_FALSE(r.ok()) << want;
    EXPECT_TRUE(std::string(r.status().message()).starts_with(want)) << r.status();
  }
}

// Unknown fields (a newer writer's) are ignored; missing optional ones stay unset.
TEST(FromJson, UnknownFieldsIgnoredOptionalsMayBeMissing) {
  json j = Fixture("results-quick-seed-only.json");
  j["scenarios"]["seed"]["steps"][0]["runs"]["ebpf"]["new_figure"] = 1;
  j["scenarios"]["seed"]["steps"][0]["runs"]["ebpf"].erase("cpu_cores");
  j["something_new"] = {{"x", 1}};
  auto r = ReadSuiteResults(j);
  ASSERT_TRUE(r.ok()) << r.status();
  const LoadRun& run = r->scenarios.seed->steps[0].runs.at("ebpf");
  EXPECT_FALSE(run.resources.cpu_cores);
  EXPECT_TRUE(run.latency_ms.p75);
  EXPECT_FALSE(r->scenarios.istio);
}

// Every run of the suite committed under bench/results reads, and writes back the same document
// (less "goals", which the writer adds next to it): the schema holds every field the suite wrote.
TEST(FromJson, CommittedRunsRoundTrip) {
  int runs = 0;
  for (const auto& dir : std::filesystem::directory_iterator(WEFT_BENCH_RESULTS)) {
    std::ifstream f(dir.path() / "results.json");
    if (!f.good()) continue;
    json j = json::parse(f);
    if (!j.contains("suite")) continue;  // another program's (weft-cp-bench)
    auto r = ReadSuiteResults(j);
    ASSERT_TRUE(r.ok()) << dir.path() << ": " << r.status();
    j.erase("goals");
    EXPECT_TRUE(ToJson(*r) == j) << dir.path() << ": " << json::diff(j, ToJson(*r)).dump();
    ++runs;
  }
  EXPECT_GT(runs, 0);
}

}  // namespace
}  // namespace weft::bench::suite
