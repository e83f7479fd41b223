// The scale scenario, small, against real meshes (root): RSS figures present and positive,
// the idle connections counted by both ztunnels, every mesh removed afterwards (no state file,
// no network namespace with the mesh's testbed prefix), also when stopped half-way; bad options
// are clear errors.
#include "bench/suite/scale.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/up/state.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"

namespace weft::bench::suite {
namespace {

ScaleOptions Small(const std::string& dir, const std::string& tag) {
  ScaleOptions o;
  o.weftctl = WEFTCTL_PATH;
  o.teashop = WEFT_TEASHOP_PATH;
  o.bench = WEFT_BENCH_SUITE_PATH;
  o.state_root = dir + "/state";
  o.work_dir = dir + "/work";
  o.name_prefix = absl::StrCat("sct", ::getpid(), tag);
  o.modes = {"iptables"};
  o.pod_counts = {3};
  o.connection_counts = {200};
  o.log = [](const std::string& line) { std::cerr << line << std::endl; };
  return o;
}

// Every mesh the run made is gone: `weftctl down` removed state.json and every namespace.
void ExpectNoMeshLeft(const ScaleOptions& o, const nlohmann::json& meshes) {
  ASSERT_TRUE(meshes.is_array());
  for (const auto& m : meshes) {
    const std::string name = m.at("name").get<std::string>();
    EXPECT_FALSE(std::filesystem::exists(o.state_root + "/" + name + "/state.json")) << name;
    ASSERT_TRUE(m.contains("testbed_prefix")) << m.dump();
    const std::string prefix = m["testbed_prefix"].get<std::string>();
    ASSERT_FALSE(prefix.empty());
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec))
      EXPECT_EQ(e.path().filename().string().find(prefix), std::string::npos)
          << "namespace left behind: " << e.path();
  }
}

TEST(ScaleTest, SmallRunMeasuresPodsAndIdleConnectionsAndRemovesEveryMesh) {
  WEFT_SKIP_UNLESS_ROOT("weftctl up: namespaces, cgroups, iptables");
  weft::testing::TempDir tmp;
  ScaleOptions o = Small(tmp.path(), "a");
  std::atomic<bool> stop{false};
  auto r = RunScale(o, stop);
  ASSERT_TRUE(r.ok()) << r.status();
  const nlohmann::json& j = *r;
  SCOPED_TRACE(j.dump(2));
  EXPECT_TRUE(j.at("errors").empty());

  ASSERT_EQ(j.at("pods").size(), 1u);
  const auto& p = j["pods"][0];
  EXPECT_EQ(p.at("mode"), "iptables");
  EXPECT_EQ(p.at("pods"), 3);
  EXPECT_GT(p.at("ztunnel_rss_bytes").get<int64_t>(), 0);
  EXPECT_GT(p.at("agent_rss_bytes").get<int64_t>(), 0);
  ASSERT_EQ(p.at("nodes").size(), 2u);
  EXPECT_EQ(p["nodes"][0].at("pods").get<int>() + p["nodes"][1].at("pods").get<int>(), 3);
  EXPECT_EQ(p["nodes"][0].at("ztunnel_enrolled_pods").get<double>() +
                p["nodes"][1].at("ztunnel_enrolled_pods").get<double>(),
            3);
  EXPECT_EQ(p["nodes"][0].at("ztunnel_rss_bytes").get<int64_t>() +
                p["nodes"][1].at("ztunnel_rss_bytes").get<int64_t>(),
            p["ztunnel_rss_bytes"].get<int64_t>());
  EXPECT_GT(p.at("up_seconds").get<double>(), 0);

  ASSERT_EQ(j.at("idle_connections").size(), 1u);
  const auto& c = j["idle_connections"][0];
  EXPECT_EQ(c.at("mode"), "iptables");
  EXPECT_EQ(c.at("connections"), 200);
  const int64_t base = c.at("baseline_ztunnel_rss_bytes").get<int64_t>();
  const int64_t held = c.at("ztunnel_rss_bytes").get<int64_t>();
  EXPECT_GT(base, 0);
  EXPECT_GT(held, 0);
  ASSERT_TRUE(c.at("bytes_per_connection").is_number_integer());
  EXPECT_EQ(c["bytes_per_connection"].get<int64_t>(), (held - base) / 200);
  EXPECT_EQ(c.at("bytes_per_connection_per_ztunnel").get<int64_t>(),
            c["bytes_per_connection"].get<int64_t>() / 2);
  // The connections went through both ztunnels, and all of them reached the server.
  EXPECT_GE(c.at("ztunnel_counted").at("node0_outbound_opened").get<double>(), 200);
  EXPECT_GE(c["ztunnel_counted"].at("node1_inbound_opened").get<double>(), 200);
  EXPECT_GE(c.at("server_open_connections").get<int64_t>(), 200);
  EXPECT_GE(j.at("nofile_limit").get<int64_t>(), 2 * 200);
  EXPECT_FALSE(j.at("note").get<std::string>().empty());

  EXPECT_EQ(j.at("meshes").size(), 2u);
  ExpectNoMeshLeft(o, j["meshes"]);
}

TEST(ScaleTest, StopHalfWayRemovesTheMesh) {
  WEFT_SKIP_UNLESS_ROOT("weftctl up: namespaces, cgroups, iptables");
  weft::testing::TempDir tmp;
  ScaleOptions o = Small(tmp.path(), "b");
  o.settle = std::chrono::seconds(5);
  std::atomic<bool> stop{false};
  const std::string name = o.name_prefix + "-iptables-p3";
  std::string prefix;
  // Stop as soon as the first mesh is up: RunScale is then inside its settle wait.
  o.log = [&](const std::string& line) {
    std::cerr << line << std::endl;
    if (line.find("ready after") == std::string::npos) return;
    auto s = up::LoadMesh(o.state_root, name);
    if (s.ok()) prefix = s->prefix;
    stop = true;
  };
  auto r = RunScale(o, stop);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  ASSERT_FALSE(prefix.empty()) << "the mesh was never up";
  EXPECT_FALSE(std::filesystem::exists(o.state_root + "/" + name + "/state.json"));
  ExpectNoMeshLeft(o, nlohmann::json::array({{{"name", name}, {"testbed_prefix", prefix}}}));
}

TEST(ScaleTest, BadOptionsAreClearErrors) {
  WEFT_SKIP_UNLESS_ROOT("RunScale checks root before the options");
  weft::testing::TempDir tmp;
  std::atomic<bool> stop{false};
  ScaleOptions o = Small(tmp.path(), "c");
  o.weftctl = tmp.path() + "/no-such-weftctl";
  auto r = RunScale(o, stop);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("no-such-weftctl"), std::string::npos) << r.status();

  o = Small(tmp.path(), "c");
  o.modes = {"sidecar"};
  r = RunScale(o, stop);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("use ebpf or iptables"), std::string::npos) << r.status();

  o = Small(tmp.path(), "c");
  o.name_prefix = "Bad_Prefix";
  r = RunScale(o, stop);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();

  o = Small(tmp.path(), "c");
  o.connection_counts = {0};
  r = RunScale(o, stop);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("connection count 0"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace weft::bench::suite
