// weftctl demo: flag parsing, binary lookup, the metrics reader and the tea shop run anywhere;
// the end-to-end runs of the real `weftctl demo` binary need root and skip otherwise.
#include "cli/demo/demo.h"
#include "common/testing/temp_dir.h"

#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>

#include "cli/demo/tea_shop.h"

namespace weft::cli::demo {
namespace {

using namespace std::chrono_literals;

using weft::testing::TempDir;

// Sets (or, with nullptr, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

void WriteExecutable(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << "#!/bin/sh\n";
  chmod(path.c_str(), 0755);
}

TEST(ParseDemoArgs, DefaultsAndFlags) {
  auto d = ParseDemoArgs({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->nodes, 2);
  EXPECT_FALSE(d->keep);
  EXPECT_TRUE(d->work_dir.empty());
  auto o = ParseDemoArgs({"--nodes", "3", "--keep", "--work-dir=/tmp/x"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->nodes, 3);
  EXPECT_TRUE(o->keep);
  EXPECT_EQ(o->work_dir, "/tmp/x");
  EXPECT_TRUE(ParseDemoArgs({"--help"})->help);
}

TEST(ParseDemoArgs, RejectsBadInputWithAHint) {
  EXPECT_NE(ParseDemoArgs({"--nodes", "1"}).status().message().find("from 2 to 8"),
            std::string::npos);
  EXPECT_FALSE(ParseDemoArgs({"--nodes", "two"}).ok());
  EXPECT_NE(ParseDemoArgs({"--nodes"}).status().message().find("needs a value"), std::string::npos);
  EXPECT_NE(ParseDemoArgs({"--fast"}).status().message().find("unknown flag --fast"),
            std::string::npos);
  EXPECT_FALSE(ParseDemoArgs({"extra"}).ok());
  EXPECT_FALSE(ParseDemoArgs({"--work-dir="}).ok());
}

TEST(FindDemoBinaries, BuildTreeEnvDirAndExplicitVariables) {
  TempDir t;
  ScopedEnv a("WEFT_ZTUNNEL_BIN", nullptr), b("WEFT_AGENT_BIN", nullptr),
      c("WEFT_BIN_DIR", nullptr);
  const std::string self = t.path() + "/build/cli/weftctl";
  WriteExecutable(self);
  auto missing = FindDemoBinaries(self);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(t.path() + "/build/ztunnel/app/ztunnel"),
            std::string::npos)
      << missing.status();
  EXPECT_NE(missing.status().message().find("WEFT_BIN_DIR"), std::string::npos);

  WriteExecutable(t.path() + "/build/ztunnel/app/ztunnel");
  WriteExecutable(t.path() + "/build/agent/weft-agent");
  auto tree = FindDemoBinaries(self);
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_EQ(tree->ztunnel, t.path() + "/build/ztunnel/app/ztunnel");
  EXPECT_EQ(tree->agent, t.path() + "/build/agent/weft-agent");

  WriteExecutable(t.path() + "/bin/ztunnel");
  WriteExecutable(t.path() + "/bin/weft-agent");
  ScopedEnv dir("WEFT_BIN_DIR", (t.path() + "/bin").c_str());
  auto bindir = FindDemoBinaries(self);
  ASSERT_TRUE(bindir.ok());
  EXPECT_EQ(bindir->ztunnel, t.path() + "/bin/ztunnel");
  EXPECT_EQ(bindir->agent, t.path() + "/bin/weft-agent");

  WriteExecutable(t.path() + "/other/zt");
  ScopedEnv z("WEFT_ZTUNNEL_BIN", (t.path() + "/other/zt").c_str());
  auto expl = FindDemoBinaries(self);
  ASSERT_TRUE(expl.ok());
  EXPECT_EQ(expl->ztunnel, t.path() + "/other/zt");
  EXPECT_EQ(expl->agent, t.path() + "/bin/weft-agent");

  ScopedEnv bad("WEFT_AGENT_BIN", (t.path() + "/nope").c_str());
  auto wrong = FindDemoBinaries(self);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("WEFT_AGENT_BIN=" + t.path() + "/nope"),
            std::string::npos)
      << wrong.status();
}

TEST(FindDemoBinaries, InstalledSideBySide) {
  TempDir t;
  ScopedEnv a("WEFT_ZTUNNEL_BIN", nullptr), b("WEFT_AGENT_BIN", nullptr),
      c("WEFT_BIN_DIR", nullptr);
  for (const char* f : {"weftctl", "ztunnel", "weft-agent"})
    WriteExecutable(t.path() + "/bin/" + f);
  auto r = FindDemoBinaries(t.path() + "/bin/weftctl");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ztunnel, t.path() + "/bin/ztunnel");
}

TEST(TeaShop, CatalogueAndCartAnswerOverRealSockets) {
  SockAddr lo{*IpAddr::Parse("127.0.0.1"), 0};
  auto cat = TeaServer::Start(TeaService::kCatalogue, lo);
  ASSERT_TRUE(cat.ok()) << cat.status();
  auto cart = TeaServer::Start(TeaService::kCart, lo);
  ASSERT_TRUE(cart.ok()) << cart.status();
  auto r = TeaCall(-1, (*cat)->addr(), "search japan ref t-1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "catalogue: 3 teas matching 'japan': sencha, gyokuro, matcha [ref t-1]");
  auto c = TeaCall(-1, (*cart)->addr(), "add matcha ref t-2");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, "cart: added matcha, 1 items in the cart [ref t-2]");
  EXPECT_EQ((*cat)->requests(), 1);
}

TEST(TeaShop, RepliesFollowTheProtocol) {
  SockAddr lo{*IpAddr::Parse("127.0.0.1"), 0};
  auto cat = TeaServer::Start(TeaService::kCatalogue, lo);
  ASSERT_TRUE(cat.ok());
  EXPECT_EQ(*TeaCall(-1, (*cat)->addr(), "search OOLONG ref x"),
            "catalogue: 3 teas matching 'oolong': tieguanyin, da hong pao, dong ding [ref x]");
  EXPECT_EQ(*TeaCall(-1, (*cat)->addr(), "count"), "catalogue: 18 teas");
  EXPECT_EQ(*TeaCall(-1, (*cat)->addr(), "search zzz"), "catalogue: 0 teas matching 'zzz': none");
  EXPECT_EQ(TeaCall(-1, (*cat)->addr(), "buy")->rfind("error:", 0), 0u);
  auto cart = TeaServer::Start(TeaService::kCart, lo);
  ASSERT_TRUE(cart.ok());
  EXPECT_EQ(*TeaCall(-1, (*cart)->addr(), "add sencha ref a"),
            "cart: added sencha, 1 items in the cart [ref a]");
  EXPECT_EQ(*TeaCall(-1, (*cart)->addr(), "add Assam"), "cart: added assam, 2 items in the cart");
  EXPECT_EQ(*TeaCall(-1, (*cart)->addr(), "add coffee"), "error: no tea called 'coffee'");
  EXPECT_EQ((*cart)->requests(), 3);
  EXPECT_EQ((*cart)->connections(), 3);
}

TEST(TeaShop, CallErrorsSayWhatFailed) {
  SockAddr lo{*IpAddr::Parse("127.0.0.1"), 0};
  uint16_t port;
  {
    auto s = TeaServer::Start(TeaService::kCart, lo);
    ASSERT_TRUE(s.ok());
    port = (*s)->addr().port;
  }
  auto refused = TeaCall(-1, SockAddr{lo.ip, port}, "add sencha", 1s);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("connect 127.0.0.1:"), std::string::npos)
      << refused.status();
}

// ---------------------------------------------------------------------------------------------
// End to end: the real binary.

struct RunResult {
  int exit_code = -1;
  std::string output;
};

// Runs `weftctl demo args...` with stdout+stderr captured; `on_line` sees every line as it
// arrives and may signal the child (its pid is passed).
RunResult RunDemoBinary(const std::vector<std::string>& args,
                        const std::function<void(const std::string&, pid_t)>& on_line = {}) {
  int p[2];
  EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    setenv("WEFT_ZTUNNEL_BIN", WEFT_ZTUNNEL_BIN, 1);
    setenv("WEFT_AGENT_BIN", WEFT_AGENT_BIN, 1);
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
  auto deadline = std::chrono::steady_clock::now() + 240s;
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

// The testbed prefix the demo printed ("testbed weft-demo123-0-*").
std::string TestbedPrefix(const std::string& output) {
  std::smatch m;
  if (std::regex_search(output, m, std::regex("testbed (weft-demo[0-9]+-[0-9]+)-\\*"))) return m[1];
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
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, iptables)";
    if (system("command -v iptables-restore >/dev/null 2>&1 && command -v tshark >/dev/null "
               "2>&1") != 0)
      GTEST_SKIP() << "iptables-restore or tshark is not installed";
  }
};

TEST_F(DemoEndToEnd, RunsEveryStepAndPasses) {
  TempDir t;
  auto r = RunDemoBinary({"--work-dir", t.path()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* want : {
           "==> building a 2-node mesh",
           "frontend -> catalogue.shop (10.96.0.10:80, the service VIP): ",
           "payload marker found in clear: no",
           "TLS records seen: ",
           "legacy's marker found in clear: yes",
           "this proves mTLS between nodes",
           "istio_tcp_connections_opened_total{reporter=\"source\",source_workload=\"frontend\","
           "destination_workload=\"catalogue\"",
           "spiffe://cluster.local/ns/shop/sa/frontend -> "
           "spiffe://cluster.local/ns/shop/sa/catalogue  [mutual_tls]",
           "frontend -> cart: denied",
           "frontend -> catalogue.shop: ok",
           "weft_policy_denials_total{policy=\"shop/deny-frontend-to-cart\",direction=\"inbound\"",
           "[ok]     weft_policy_denials_total counts the denial",
           "==> demo passed",
       }) {
    EXPECT_NE(r.output.find(want), std::string::npos) << "missing \"" << want << "\" in:\n"
                                                      << r.output;
  }
  EXPECT_EQ(r.output.find("[FAILED]"), std::string::npos) << r.output;
  std::string prefix = TestbedPrefix(r.output);
  ASSERT_FALSE(prefix.empty()) << r.output;
  EXPECT_TRUE(NetnsWithPrefix(prefix).empty()) << "the demo left namespaces behind";
  // An explicit --work-dir is the user's: kept, with the logs and the capture.
  EXPECT_TRUE(std::filesystem::exists(t.path() + "/fabric.pcap"));
  EXPECT_TRUE(std::filesystem::exists(t.path() + "/logs/ztunnel-0.log"));
}

TEST_F(DemoEndToEnd, KeepHoldsTheMeshUntilCtrlC) {
  TempDir t;
  std::string prefix;
  std::vector<std::string> alive_while_kept;
  auto r =
      RunDemoBinary({"--keep", "--work-dir", t.path()}, [&](const std::string& line, pid_t pid) {
        if (prefix.empty()) prefix = TestbedPrefix(line);
        if (line.find("press Ctrl-C to tear it down") != std::string::npos) {
          alive_while_kept = NetnsWithPrefix(prefix);
          kill(pid, SIGINT);
        }
      });
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_FALSE(prefix.empty()) << r.output;
  EXPECT_GE(alive_while_kept.size(), 7u) << "fabric + 2 nodes + 4 pods while kept";
  EXPECT_NE(r.output.find("==> tearing down"), std::string::npos) << r.output;
  EXPECT_TRUE(NetnsWithPrefix(prefix).empty()) << r.output;
}

TEST_F(DemoEndToEnd, CtrlCMidwayCleansUpAndFails) {
  std::string prefix;
  bool sent = false;
  TempDir t;
  auto r = RunDemoBinary({"--work-dir", t.path() + "/w"}, [&](const std::string& line, pid_t pid) {
    if (prefix.empty()) prefix = TestbedPrefix(line);
    if (!sent && line.find("==> driving traffic") != std::string::npos) {
      sent = true;
      kill(pid, SIGINT);
    }
  });
  ASSERT_TRUE(sent) << r.output;
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("interrupted"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("==> tearing down"), std::string::npos) << r.output;
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
}

}  // namespace
}  // namespace weft::cli::demo
