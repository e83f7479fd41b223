// weftctl demo: flag parsing and the pure helpers run anywhere; the end-to-end runs of the real
// `weftctl demo` binary (weftctl up + the tea shop) need root and skip otherwise.
#include "cli/demo/demo.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <regex>

#include "common/testing/root.h"
#include "common/testing/temp_dir.h"

namespace weft::cli::demo {
namespace {

using namespace std::chrono_literals;
using weft::testing::TempDir;

TEST(ParseDemoArgs, DefaultsAndFlags) {
  auto d = ParseDemoArgs({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->nodes, 2);
  EXPECT_EQ(d->capture, "auto");
  EXPECT_EQ(d->name, "weft");
  EXPECT_FALSE(d->keep);
  EXPECT_DOUBLE_EQ(d->load_seconds, 8);
  EXPECT_TRUE(d->work_dir.empty());
  auto o = ParseDemoArgs({"--nodes", "3", "--keep", "--capture=iptables", "--name", "demo-1",
                          "--state-root", "/tmp/s", "--manifests", "m", "--load-duration", "5s",
                          "--work-dir=/tmp/x"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->nodes, 3);
  EXPECT_TRUE(o->keep);
  EXPECT_EQ(o->capture, "iptables");
  EXPECT_EQ(o->name, "demo-1");
  EXPECT_EQ(o->state_root, "/tmp/s");
  EXPECT_EQ(o->manifests, "m");
  EXPECT_DOUBLE_EQ(o->load_seconds, 5);
  EXPECT_EQ(o->work_dir, "/tmp/x");
  EXPECT_TRUE(ParseDemoArgs({"--help"})->help);
  EXPECT_EQ(ParseDemoArgs({"--capture", "ebpf"})->capture, "ebpf");
}

TEST(ParseDemoArgs, RejectsBadInputWithAHint) {
  EXPECT_NE(ParseDemoArgs({"--nodes", "1"}).status().message().find("from 2 to 8"),
            std::string::npos);
  EXPECT_FALSE(ParseDemoArgs({"--nodes", "two"}).ok());
  EXPECT_NE(ParseDemoArgs({"--nodes"}).status().message().find("--nodes"), std::string::npos);
  EXPECT_NE(ParseDemoArgs({"--fast"}).status().message().find("unknown flag --fast"),
            std::string::npos);
  EXPECT_NE(ParseDemoArgs({"--capture", "nft"}).status().message().find("auto, ebpf or iptables"),
            std::string::npos);
  EXPECT_FALSE(ParseDemoArgs({"--load-duration", "1"}).ok());
  EXPECT_FALSE(ParseDemoArgs({"--load-duration", "soon"}).ok());
  EXPECT_NE(ParseDemoArgs({"--name", "Bad_Name"}).status().message().find("--name"),
            std::string::npos);
  EXPECT_FALSE(ParseDemoArgs({"extra"}).ok());
  EXPECT_FALSE(ParseDemoArgs({"--work-dir="}).ok());
}

TEST(FormatCommand, QuotesOnlyWhatTheShellWouldSplit) {
  EXPECT_EQ(FormatCommand({"label", "namespace", "shop", "weft.dev/mesh=enabled", "--wait"}),
            "label namespace shop weft.dev/mesh=enabled --wait");
  EXPECT_EQ(FormatCommand({"exec", "legacy/client", "--", "curl", "-H", "X-User: demo", "-w",
                           "%{http_code}\\n", "it's", ""}),
            "exec legacy/client -- curl -H 'X-User: demo' -w '%{http_code}\\n' 'it'\\''s' ''");
}

TEST(MeshFlags, OnlyWhatDiffersFromTheDefaults) {
  DemoOptions o;
  EXPECT_TRUE(MeshFlags(o).empty());
  o.name = "demo";
  o.state_root = "/tmp/r";
  EXPECT_EQ(MeshFlags(o), (std::vector<std::string>{"--name", "demo", "--state-root", "/tmp/r"}));
}

TEST(StatRate, ReadsTheConnPerSecondColumn) {
  const std::string table =
      "NAMESPACE  WORKLOAD   MESHED  SUCCESS  CONN/S  P50    P95    P99    READ/S   WRITE/S\n"
      "shop       catalogue  100%    100%     0.0     -      -      -      1.2KiB   30KiB\n"
      "shop       frontend   0%      100%     41.7    3.1ms  7.9ms  9.6ms  12KiB    250KiB\n"
      "legacy     client*    -       -        0.0     -      -      -      0B       0B\n";
  EXPECT_DOUBLE_EQ(*StatRate(table, "shop", "frontend"), 41.7);
  EXPECT_DOUBLE_EQ(*StatRate(table, "shop", "catalogue"), 0);
  EXPECT_DOUBLE_EQ(*StatRate(table, "legacy", "client"), 0);
  EXPECT_FALSE(StatRate(table, "shop", "store").has_value());
  EXPECT_FALSE(StatRate("(no connections seen for shop)\n", "shop", "frontend").has_value());
  // HTTP workloads are in the request table: its RPS column.
  const std::string http =
      "NAMESPACE  WORKLOAD   MESHED  SUCCESS  RPS   P50    P95    P99    CONN/S\n"
      "shop       cart       100%    100%     88.5  1.2ms  3.0ms  4.1ms  0.0\n";
  EXPECT_DOUBLE_EQ(*StatRate(http, "shop", "cart", "RPS"), 88.5);
  EXPECT_FALSE(StatRate(http, "shop", "cart").has_value());
  // The totals form (--window 0) has no rate.
  EXPECT_FALSE(StatRate("NAMESPACE  WORKLOAD  MESHED  SUCCESS  CONNS  P50\n"
                        "shop  frontend  0%  100%  12  1ms\n",
                        "shop", "frontend")
                   .has_value());
}

TEST(SummarizeWire, SplitsNewConnectionsFromOldOnes) {
  // Streams 3 and 4 were opened during the capture (HBONE and weftd); stream 1 before it.
  const std::string syns = "3\t15008\n4\t15012\n3\t15008\nbad line\n";
  const std::string https =
      "1\t10.248.0.1\t10.248.1.3\tGET\t/recommendations?n=4\n"
      "1\t10.248.0.1\t10.248.1.3\tGET\t/recommendations?n=8\n";
  WireSummary w = SummarizeWire(syns, https);
  EXPECT_EQ(w.new_connections, 2);
  EXPECT_EQ(w.new_by_port, (std::map<int, int>{{15008, 1}, {15012, 1}}));
  EXPECT_EQ(w.http_on_new, 0);
  EXPECT_EQ(w.http_on_old, 2);
  EXPECT_EQ(w.old_http_streams, std::set<int>{1});
  // A clear-text request on a connection opened during the capture is a leak, and shown.
  WireSummary leak = SummarizeWire("7\t8080\n", "7\t10.248.0.1\t10.248.1.2\tPOST\t/cart\n");
  EXPECT_EQ(leak.http_on_new, 1);
  EXPECT_EQ(leak.new_http_examples,
            std::vector<std::string>{"10.248.0.1 -> 10.248.1.2 POST /cart"});
  EXPECT_EQ(SummarizeWire("", "").new_connections, 0);
}

TEST(FindManifests, FlagThenWorkingDirectoryThenSourceTree) {
  TempDir cwd, src;
  std::filesystem::create_directories(src.path() + "/examples/teashop/manifests");
  EXPECT_EQ(*FindManifests("", cwd.path(), src.path()), src.path() + "/examples/teashop/manifests");
  std::filesystem::create_directories(cwd.path() + "/examples/teashop/manifests");
  EXPECT_EQ(*FindManifests("", cwd.path(), src.path()), "examples/teashop/manifests");
  EXPECT_EQ(*FindManifests(cwd.path(), "", ""), cwd.path());
  auto missing = FindManifests(cwd.path() + "/nope", "", "");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_NE(missing.status().message().find("--manifests"), std::string::npos);
  TempDir empty;
  EXPECT_NE(FindManifests("", empty.path(), "").status().message().find("--manifests DIR"),
            std::string::npos);
}

TEST(PolicyFile, NextToTheManifests) {
  EXPECT_EQ(PolicyFile("examples/teashop/manifests"),
            "examples/teashop/policies/store-deny-except-frontend.yaml");
  EXPECT_EQ(PolicyFile("/x/teashop/manifests/"),
            "/x/teashop/policies/store-deny-except-frontend.yaml");
  EXPECT_TRUE(std::filesystem::is_regular_file(
      PolicyFile(std::string(WEFT_SOURCE_DIR) + "/examples/teashop/manifests")));
}

struct RunResult {
  int exit_code = -1;
  std::string output;
};

// Runs `weftctl demo args...` from the source tree, stdout+stderr captured; `on_line` sees
// every line as it arrives and may signal the demo (its pid is passed).
RunResult RunDemoBinary(const std::vector<std::string>& args,
                        const std::function<void(const std::string&, pid_t)>& on_line = {}) {
  int p[2];
  EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    if (chdir(WEFT_SOURCE_DIR) != 0) _exit(126);
    std::vector<char*> argv = {const_cast<char*>(WEFTCTL_PATH), const_cast<char*>("demo")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(p[1]);
  RunResult r;
  std::string partial;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + 360s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pf{p[0], POLLIN, 0};
    if (poll(&pf, 1, 500) <= 0) continue;
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    r.output.append(buf, n);
    partial.append(buf, n);
    size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      if (on_line) on_line(partial.substr(0, nl), pid);
      partial.erase(0, nl + 1);
    }
  }
  close(p[0]);
  if (std::chrono::steady_clock::now() >= deadline) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// The testbed prefix `weftctl down` reported ("... bpffs pin named weft-up123-0* is left").
std::string TestbedPrefix(const std::string& output) {
  std::smatch m;
  if (std::regex_search(output, m, std::regex("pin named (weft-[a-z0-9-]+)\\* is left")))
    return m[1];
  return "";
}

std::vector<std::string> NetnsWithPrefix(const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec))
    if (e.path().filename().string().rfind(prefix + "-", 0) == 0)
      out.push_back(e.path().filename());
  return out;
}

class DemoEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, iptables");
    if (system("command -v iptables-restore >/dev/null 2>&1 && command -v tshark >/dev/null "
               "2>&1 && command -v curl >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "iptables-restore, tshark or curl is not installed";
  }
  // A mesh name and state root of this test only, so that a user's mesh is never touched.
  std::vector<std::string> MeshArgs() {
    return {"--name", "demo-t" + std::to_string(getpid()), "--state-root", root_.path()};
  }
  TempDir root_;
};

TEST_F(DemoEndToEnd, RunsEveryStepAndPasses) {
  TempDir work;
  auto args = MeshArgs();
  args.insert(args.end(), {"--load-duration", "5", "--work-dir", work.path()});
  auto r = RunDemoBinary(args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string flags =
      "--name demo-t" + std::to_string(getpid()) + " --state-root " + root_.path();
  for (const std::string& want : std::vector<std::string>{
           "==> [2/9",
           "$ weftctl up " + flags + " --nodes 2 examples/teashop/manifests",
           "[ok] a capture shows the shop's calls between the nodes in clear text",
           "$ weftctl label " + flags + " namespace shop weft.dev/mesh=enabled --wait",
           "$ weftctl exec " + flags + " legacy/client -- weft-teashop --role load",
           "$ weftctl stat " + flags + " shop --window 3s",
           "[ok] weftctl stat shows shop/frontend serving traffic",
           "[ok] weftctl stat shows the back ends' requests (balanced per request at the source)",
           "clear-text HTTP requests on them: 0",
           "source_principal=\"spiffe://cluster.local/ns/shop/sa/frontend\"",
           "connection_security_policy=\"mutual_tls\"",
           "[ok] node1's ztunnel reports them inbound as mutual_tls",
           "to port 15008 (HBONE: mTLS between ztunnels)",
           "$ weftctl apply " + flags +
               " -f examples/teashop/policies/store-deny-except-frontend.yaml --wait",
           "[ok] shop/cart -> store is denied",
           "checkout -> HTTP 200",
           "weft_policy_denials_total{direction=\"inbound\",policy=\"shop/"
           "store-deny-except-frontend\"",
           "-f examples/teashop/policies/store-orders-from-frontend.yaml --wait",
           "[ok] shop/cart GET /healthz on the store is allowed",
           "POST /orders -> HTTP 403",
           "[ok] shop/cart POST /orders on the store gets ztunnel's 403",
           "[ok] checkout through the front end still works (its POST /orders is allowed)",
           "[ok] weftctl tap shows the cart's requests to the store",
           "[ok] the store's ztunnel counts the 403",
           "[ok] nothing of the mesh is left",
           "==> demo passed",
       }) {
    EXPECT_NE(r.output.find(want), std::string::npos) << "missing \"" << want << "\" in:\n"
                                                      << r.output;
  }
  EXPECT_EQ(r.output.find("[FAILED]"), std::string::npos) << r.output;
  std::string prefix = TestbedPrefix(r.output);
  ASSERT_FALSE(prefix.empty()) << r.output;
  EXPECT_TRUE(NetnsWithPrefix(prefix).empty()) << "the demo left namespaces behind";
  // An explicit --work-dir is the user's: kept, with the captures.
  EXPECT_TRUE(std::filesystem::exists(work.path() + "/before.pcap"));
  EXPECT_TRUE(std::filesystem::exists(work.path() + "/enrolled.pcap"));
}

// weftctl demo traffic: every feature measured from the ztunnels' metrics, and a clean exit.
TEST_F(DemoEndToEnd, TrafficPartPasses) {
  auto args = MeshArgs();
  args.insert(args.begin(), "traffic");
  auto r = RunDemoBinary(args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string flags =
      "--name demo-t" + std::to_string(getpid()) + " --state-root " + root_.path();
  for (const std::string& want : std::vector<std::string>{
           "==> [2/7",
           "examples/teashop/traffic-demo/canary-90-10.yaml --wait",
           "[ok] v2 gets 10 % of the requests",
           "[ok] the destinations' reports agree",
           "examples/teashop/traffic-demo/canary-50-50.yaml --wait",
           "[ok] v2 gets 50 % of the requests",
           "$ weftctl stat " + flags + " shop --window 2s",
           "[ok] without retries the client sees the failures",
           "[ok] with retries the client sees almost no failure",
           "[ok] the retries are the mesh's",
           "[ok] overflow is answered 503 UO by the client's ztunnel",
           "[ok] inventory is protected",
           "[ok] nothing of the mesh is left",
           "==> demo passed",
       }) {
    EXPECT_NE(r.output.find(want), std::string::npos) << "missing \"" << want << "\" in:\n"
                                                      << r.output;
  }
  EXPECT_EQ(r.output.find("[FAILED]"), std::string::npos) << r.output;
}

TEST_F(DemoEndToEnd, CtrlCMidwayTearsDownAndFails) {
  bool sent = false;
  TempDir work;
  auto args = MeshArgs();
  args.insert(args.end(), {"--work-dir", work.path()});
  auto r = RunDemoBinary(args, [&](const std::string& line, pid_t pid) {
    if (!sent && line.find("] enrolling namespace shop") != std::string::npos) {
      sent = true;
      kill(pid, SIGINT);
    }
  });
  ASSERT_TRUE(sent) << r.output;
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("interrupted"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("] tearing down"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[ok] nothing of the mesh is left"), std::string::npos) << r.output;
  std::string prefix = TestbedPrefix(r.output);
  ASSERT_FALSE(prefix.empty()) << r.output;
  EXPECT_TRUE(NetnsWithPrefix(prefix).empty()) << r.output;
}

TEST(DemoCommand, HelpAndUsageErrors) {
  auto help = RunDemoBinary({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("Usage: weftctl demo"), std::string::npos) << help.output;
  auto bad = RunDemoBinary({"--nodes", "99"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("--nodes \"99\" must be a number from 2 to 8"), std::string::npos)
      << bad.output;
  auto part = RunDemoBinary({"trafic"});
  EXPECT_EQ(part.exit_code, 2);
  EXPECT_NE(part.output.find("unknown part \"trafic\": give none (the tour) or traffic"),
            std::string::npos)
      << part.output;
}

}  // namespace
}  // namespace weft::cli::demo
