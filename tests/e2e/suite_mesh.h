// One `weftctl up` mesh for a whole gtest suite: a fixture brings it up in SetUpTestSuite and
// down in TearDownTestSuite (ctest runs each test in its own process, so there each test has
// its own; a run of the binary shares one). Include after defining WEFTCTL_PATH (the test
// target's compile definitions do).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace weft::e2e {

struct SuiteMesh {
  std::unique_ptr<weft::testing::TempDir> tmp;
  std::string root, name, prefix;
  std::string error;  // why it is not up (empty: up)
  up::MeshState state;

  // `weftctl up --nodes 2 --capture iptables MANIFEST` as mesh NAME_PREFIX<pid>, state in a
  // temp dir, owned by this process (a test killed at its time-out leaves no mesh running).
  // Sets `error` on failure.
  void Up(const std::string& name_prefix, const std::string& manifest) {
    tmp = std::make_unique<weft::testing::TempDir>();
    root = tmp->path() + "/state";
    name = absl::StrCat(name_prefix, ::getpid());
    const auto t0 = std::chrono::steady_clock::now();
    auto up = Weftctl({"up", "--nodes", "2", "--capture", "iptables", "--owner-pid",
                       std::to_string(::getpid()), manifest});
    if (!up.ok()) {
      error = "weftctl up: " + std::string(up.status().message());
      return;
    }
    up_ = true;
    auto s = up::LoadMesh(root, name);
    if (!s.ok()) {
      error = "mesh state: " + s.status().ToString();
      return;
    }
    state = *s;
    prefix = s->prefix;
    std::printf("[ mesh %s up in %.1f s ]\n", name.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  // `weftctl down` (if it came up), expecting nothing of it left; then the temp dir goes.
  void Down() {
    if (up_) {
      auto down = Weftctl({"down"});
      EXPECT_TRUE(down.ok()) << down.status();
      if (!prefix.empty()) EXPECT_TRUE(testbed::TestbedLeftovers(prefix).empty());
      up_ = false;
    }
    tmp.reset();
  }

  bool ok() const { return up_ && error.empty(); }

  // `weftctl ARGS` against this mesh; its stdout, or an error naming the command and stderr.
  absl::StatusOr<std::string> Weftctl(
      std::vector<std::string> args,
      std::chrono::milliseconds timeout = std::chrono::seconds(120)) const {
    return testbed::Exec("", up::WeftctlArgv(WEFTCTL_PATH, name, root, std::move(args)), "",
                         timeout);
  }

 private:
  bool up_ = false;
};

}  // namespace weft::e2e
