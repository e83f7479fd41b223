// Installing weft-cni into a CNI bin/conf directory pair laid out as a node's.
#include "cni/install.h"

#include <sys/stat.h>

#include <filesystem>

#include "common/file.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace weft::cni {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

class CniInstallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(bin());
    fs::create_directories(conf());
    o_.bin_dir = bin();
    o_.conf_dir = conf();
    o_.plugin_binary = dir_.Write("weft-cni.src", "#!plugin\n");
    o_.agent_socket = "/run/weft-cni/agent.sock";
    o_.timeout_seconds = 12;
  }
  std::string bin() const { return dir_.path() + "/bin"; }
  std::string conf() const { return dir_.path() + "/net.d"; }
  ordered_json Read(const std::string& name) {
    auto t = ReadFile(conf() + "/" + name);
    EXPECT_TRUE(t.ok()) << t.status();
    return ordered_json::parse(t.ok() ? *t : "{}");
  }
  weft::testing::TempDir dir_;
  InstallOptions o_;
};

const char kBridgeList[] = R"({
  "cniVersion": "1.0.0", "name": "podnet",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]})";

TEST_F(CniInstallTest, ChainsIntoTheFirstConflistAndUninstallsCleanly) {
  dir_.Write("net.d/10-podnet.conflist", kBridgeList);
  dir_.Write("net.d/99-other.conflist", kBridgeList);
  auto path = InstallPlugin(o_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, conf() + "/10-podnet.conflist");
  ordered_json l = Read("10-podnet.conflist");
  ASSERT_EQ(l["plugins"].size(), 3u) << l.dump();
  EXPECT_EQ(l["plugins"][0]["type"], "bridge");
  EXPECT_EQ(l["plugins"][1]["type"], "portmap");
  EXPECT_EQ(l["plugins"][2], ordered_json::parse(R"({"type":"weft-cni",
      "agentSocket":"/run/weft-cni/agent.sock","timeoutSeconds":12})"));
  EXPECT_EQ(l.begin().key(), "cniVersion");  // the operator's key order is kept
  EXPECT_EQ(Read("99-other.conflist")["plugins"].size(), 2u);
  struct stat st;
  ASSERT_EQ(::stat((bin() + "/weft-cni").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_EQ(*ReadFile(bin() + "/weft-cni"), "#!plugin\n");

  // Again, with another socket: one entry, updated.
  o_.agent_socket = "/run/other.sock";
  ASSERT_TRUE(InstallPlugin(o_).ok());
  l = Read("10-podnet.conflist");
  ASSERT_EQ(l["plugins"].size(), 3u) << l.dump();
  EXPECT_EQ(l["plugins"][2]["agentSocket"], "/run/other.sock");

  EXPECT_TRUE(*PluginChained(o_));
  // The network plugin rewrites its configuration: no longer chained.
  dir_.Write("net.d/10-podnet.conflist", kBridgeList);
  EXPECT_FALSE(*PluginChained(o_));
  ASSERT_TRUE(InstallPlugin(o_).ok());
  EXPECT_TRUE(*PluginChained(o_));

  ASSERT_TRUE(UninstallPlugin(o_).ok());
  EXPECT_FALSE(*PluginChained(o_));
  EXPECT_EQ(Read("10-podnet.conflist"), ordered_json::parse(kBridgeList));
  EXPECT_FALSE(fs::exists(bin() + "/weft-cni"));
  EXPECT_TRUE(UninstallPlugin(o_).ok()) << "uninstalling twice is no error";
}

TEST_F(CniInstallTest, SinglePluginConfBecomesAConflist) {
  dir_.Write("net.d/05-flat.conf",
             R"({"cniVersion":"0.4.0","name":"flat","type":"bridge","bridge":"br9"})");
  auto path = InstallPlugin(o_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, conf() + "/05-flat.conflist");
  EXPECT_FALSE(fs::exists(conf() + "/05-flat.conf"));
  ordered_json l = Read("05-flat.conflist");
  EXPECT_EQ(l["cniVersion"], "0.4.0");
  EXPECT_EQ(l["name"], "flat");
  ASSERT_EQ(l["plugins"].size(), 2u);
  EXPECT_EQ(l["plugins"][0]["bridge"], "br9");
  EXPECT_EQ(l["plugins"][1]["type"], "weft-cni");
}

TEST_F(CniInstallTest, ErrorsSayWhatIsWrong) {
  auto none = InstallPlugin(o_);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition) << none.status();
  EXPECT_NE(none.status().message().find("no network configuration"), std::string::npos);

  dir_.Write("net.d/10-broken.conflist", "{ not json");
  auto broken = InstallPlugin(o_);
  EXPECT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("10-broken.conflist"), std::string::npos)
      << broken.status();

  o_.plugin_binary = dir_.path() + "/missing";
  auto missing = InstallPlugin(o_);
  EXPECT_NE(missing.status().message().find("weft-cni binary"), std::string::npos)
      << missing.status();
}

}  // namespace
}  // namespace weft::cni
