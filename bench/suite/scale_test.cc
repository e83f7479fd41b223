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
void ExpectNoMeshLeft(const ScaleOptions& o, const std::vector<ScaleMesh>& meshes) {
  for (const ScaleMesh& m : meshes) {
    EXPECT_FALSE(std::filesystem::exists(o.state_root + "/" + m.name + "/state.json")) << m.name;
    ASSERT_FALSE(m.testbed_prefix.empty()) << m.name;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec))
      EXPECT_EQ(e.path().filename().string().find(m.testbed_prefix), std::string::npos)
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
  const ScaleResult& j = *r;
  SCOPED_TRACE(ToJson(j).dump(2));
  EXPECT_TRUE(j.errors.empty());

  ASSERT_EQ(j.pods.size(), 1u);
  const ScalePods& p = j.pods[0];
  EXPECT_EQ(p.mode, "iptables");
  EXPECT_EQ(p.pods, 3);
  EXPECT_GT(p.ztunnel_rss_bytes.value_or(0), 0);
  EXPECT_GT(p.agent_rss_bytes.value_or(0), 0);
  ASSERT_EQ(p.nodes.size(), 2u);
  EXPECT_EQ(p.nodes[0].pods + p.nodes[1].pods, 3);
  EXPECT_EQ(
      p.nodes[0].ztunnel_enrolled_pods.value_or(0) + p.nodes[1].ztunnel_enrolled_pods.value_or(0),
      3);
  EXPECT_EQ(p.nodes[0].ztunnel_rss_bytes.value_or(0) + p.nodes[1].ztunnel_rss_bytes.value_or(0),
            p.ztunnel_rss_bytes.value_or(-1));
  EXPECT_GT(p.up_seconds.value_or(0), 0);

  ASSERT_EQ(j.idle_connections.size(), 1u);
  const ScaleIdle& c = j.idle_connections[0];
  EXPECT_EQ(c.mode, "iptables");
  EXPECT_EQ(c.connections, 200);
  const int64_t base = c.baseline_ztunnel_rss_bytes.value_or(0);
  const int64_t held = c.ztunnel_rss_bytes.value_or(0);
  EXPECT_GT(base, 0);
  EXPECT_GT(held, 0);
  ASSERT_TRUE(c.bytes_per_connection.has_value());
  EXPECT_EQ(*c.bytes_per_connection, (held - base) / 200);
  EXPECT_EQ(c.bytes_per_connection_per_ztunnel.value_or(-1), *c.bytes_per_connection / 2);
  // The connections went through both ztunnels, and all of them reached the server.
  ASSERT_TRUE(c.ztunnel_counted.has_value());
  EXPECT_GE(c.ztunnel_counted->node0_outbound_opened.value_or(0), 200);
  EXPECT_GE(c.ztunnel_counted->node1_inbound_opened.value_or(0), 200);
  EXPECT_GE(c.server_open_connections.value_or(0), 200);
  EXPECT_GE(j.nofile_limit.value_or(0), 2 * 200);
  EXPECT_FALSE(j.note.empty());

  EXPECT_EQ(j.meshes.size(), 2u);
  ExpectNoMeshLeft(o, j.meshes);
  // Its JSON form reads back as the same value (results.h).
  EXPECT_EQ(FromJson<ScaleResult>(ToJson(j)).value(), j);
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
  ExpectNoMeshLeft(o, {{name, prefix}});
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
