// End to end: the weft-loadgen binary against a real tea shop (front end + 4 back ends, each a
// weft-teashop process on loopback, ports from --port-file), in both connection modes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "common/testing/child_process.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"
#include "nlohmann/json.hpp"

namespace weft::bench::loadgen {
namespace {

using json = nlohmann::json;

// The file's text, "" when it cannot be read (yet).
std::string ReadText(const std::string& path) {
  return weft::ReadFile(path).value_or("");
}

using Proc = weft::testing::ChildProcess;

struct Role {
  std::unique_ptr<Proc> proc;
  uint16_t port = 0;
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port); }
};

Role StartRole(const std::string& dir, const std::string& role, std::vector<std::string> extra) {
  const std::string port_file = absl::StrCat(dir, "/", role, ".port");
  std::vector<std::string> args = {WEFT_TEASHOP_PATH, "--role",    role, "--listen",
                                   "127.0.0.1:0",     "--threads", "1",  "--port-file",
                                   port_file};
  args.insert(args.end(), extra.begin(), extra.end());
  Role r;
  r.proc = std::make_unique<Proc>(dir, role, args);
  r.port = r.proc->WaitPortFile(port_file, std::chrono::seconds(10));
  EXPECT_NE(r.port, 0) << role << " did not start: " << r.proc->Err();
  return r;
}

void CheckRun(const std::string& dir, const std::string& frontend, const std::string& conn) {
  SCOPED_TRACE(conn);
  const std::string out = absl::StrCat(dir, "/", conn, ".json");
  Proc lg(dir, "loadgen-" + conn,
          {WEFT_LOADGEN_PATH, "--target", frontend, "--users", "4", "--rate-per-user", "10",
           "--warmup", "800ms", "--duration", "1600ms", "--conn", conn, "--json", out});
  ASSERT_EQ(lg.Wait(std::chrono::seconds(20)), 0) << lg.Err() << lg.Out();
  EXPECT_NE(lg.Out().find("achieved"), std::string::npos) << lg.Out();
  json r = json::parse(ReadText(out), nullptr, false);
  ASSERT_TRUE(r.is_object()) << ReadText(out);
  EXPECT_EQ(r["conn"], conn);
  EXPECT_DOUBLE_EQ(r["asked_rps"].get<double>(), 40);
  EXPECT_GT(r["achieved_rps"].get<double>(), 0) << lg.Out();
  EXPECT_LE(r["achieved_rps"].get<double>(), 40 * 1.001) << lg.Out();
  EXPECT_EQ(r["scheduled"], 64);
  EXPECT_EQ(r["overall"]["ok"], 64) << lg.Out();
  EXPECT_EQ(r["overall"]["errors"], 0) << lg.Out();
  // Warm-up and window are whole cycles (8 requests per user each): every type 2 x 4 users.
  ASSERT_EQ(r["types"].size(), 8u);
  for (const auto& [name, t] : r["types"].items()) {
    EXPECT_EQ(t["ok"], 8) << name << ": " << t.dump();
    EXPECT_GT(t["latency_ms"]["p50"].get<double>(), 0) << name;
    EXPECT_LE(t["ttfb_ms"]["p50"].get<double>(), t["latency_ms"]["p50"].get<double>()) << name;
  }
  if (conn == "per-request") {
    EXPECT_GE(r["connections_opened"].get<int>(), 96);  // warm-up too
  } else {
    EXPECT_EQ(r["connections_opened"].get<int>(), 4);
  }
}

TEST(LoadgenProcess, TeashopBothConnectionModes) {
  testing::TempDir dir;
  Role catalogue = StartRole(dir.path(), "catalogue", {"--catalogue-size", "100"});
  Role cart = StartRole(dir.path(), "cart", {});
  Role rec =
      StartRole(dir.path(), "recommendation", {"--catalogue-size", "100", "--rec-dims", "64"});
  Role store = StartRole(dir.path(), "store", {"--catalogue-size", "100"});
  ASSERT_TRUE(catalogue.port && cart.port && rec.port && store.port);
  Role frontend = StartRole(dir.path(), "frontend",
                            {"--catalogue-url", catalogue.url(), "--cart-url", cart.url(),
                             "--recommendation-url", rec.url(), "--store-url", store.url()});
  ASSERT_NE(frontend.port, 0);
  CheckRun(dir.path(), frontend.url(), "keepalive");
  CheckRun(dir.path(), frontend.url(), "per-request");

  // Bad flags: exit 2 with a message.
  Proc bad(dir.path(), "bad", {WEFT_LOADGEN_PATH, "--target", frontend.url(), "--conn", "x"});
  EXPECT_EQ(bad.Wait(std::chrono::seconds(10)), 2);
  EXPECT_NE(bad.Err().find("keepalive or per-request"), std::string::npos) << bad.Err();
}

// --netns: the server listens on 127.0.0.1 inside a network namespace of its own (unshare --net,
// gone with the process); weft-loadgen reaches it only by creating its sockets in there.
TEST(LoadgenProcess, NetnsSocketsReachAServerInsideTheNamespace) {
  WEFT_SKIP_UNLESS_ROOT("unshare --net, setns");
  if (access("/usr/bin/unshare", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/unshare";
  testing::TempDir dir;
  const std::string port_file = dir.path() + "/ns.port";
  Proc server(
      dir.path(), "ns-server",
      {"/usr/bin/unshare", "--net", "/bin/sh", "-c",
       absl::StrCat("ip link set lo up && exec ", WEFT_TEASHOP_PATH,
                    " --role idle --listen 127.0.0.1:0 --threads 1 --port-file ", port_file)});
  std::string port;
  for (int i = 0; i < 1000 && port.empty(); ++i) {
    port = ReadText(port_file);
    if (port.empty()) {
      ASSERT_EQ(server.Wait(std::chrono::milliseconds(0)), -1) << server.Err();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ASSERT_FALSE(port.empty()) << server.Err();
  port = std::to_string(std::stoi(port));  // the file ends with a newline
  const std::string profile =
      dir.Write("health.json", R"({"requests": [{"name": "health", "path": "/healthz"}]})");
  const std::string out = dir.path() + "/ns.json";
  Proc lg(dir.path(), "loadgen-ns",
          {WEFT_LOADGEN_PATH, "--target", absl::StrCat("http://127.0.0.1:", port), "--netns",
           absl::StrCat("/proc/", server.pid(), "/ns/net"), "--users", "2", "--rate-per-user", "20",
           "--warmup", "0s", "--duration", "500ms", "--profile", profile, "--json", out});
  ASSERT_EQ(lg.Wait(std::chrono::seconds(20)), 0) << lg.Err() << lg.Out();
  json r = json::parse(ReadText(out), nullptr, false);
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["overall"]["ok"], 20) << lg.Out();
  EXPECT_EQ(r["overall"]["errors"], 0) << lg.Out();
}

}  // namespace
}  // namespace weft::bench::loadgen
