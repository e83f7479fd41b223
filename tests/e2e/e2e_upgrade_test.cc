// Hitless ztunnel upgrades end to end (docs/upgrades.md): `weftctl upgrade ztunnel` on a live
// `weftctl up` mesh, under a steady rate of new connections and with long-lived connections
// open, in both capture modes.
#include <cstdio>
#include <regex>

#include "tests/e2e/e2e_fixture.h"

namespace weft::e2e {
namespace {

class UpgradeTest : public E2eTest {};

INSTANTIATE_TEST_SUITE_P(Capture, UpgradeTest, ::testing::Values("iptables", "ebpf"),
                         [](const auto& info) { return std::string(info.param); });

// `weft-e2e-app churn` from a pod: a new connection every `ms` for `secs` seconds.
struct Churn {
  testbed::Process proc;
  std::string log;
  int Ok() const {
    std::string s = ReadFile(log).value_or("");
    int n = 0;
    for (size_t at = s.find("ok "); at != std::string::npos; at = s.find("ok ", at + 1)) ++n;
    return n;
  }
  // "attempts N failed M" once it finished.
  std::optional<std::pair<int, int>> Summary() const {
    std::string s = ReadFile(log).value_or("");
    std::smatch m;
    static const std::regex re("attempts ([0-9]+) failed ([0-9]+)");
    if (!std::regex_search(s, m, re)) return std::nullopt;
    return std::make_pair(std::stoi(m[1]), std::stoi(m[2]));
  }
};

TEST_P(UpgradeTest, NewConnectionsAreNeverRefusedAndOpenOnesDrainUntilTheDeadline) {
  ASSERT_TRUE(Label("e2e", "weft.dev/mesh=enabled").ok());
  ASSERT_TRUE(Reaches("e2e/client", "server.e2e", "80"));
  ASSERT_TRUE(Reaches("e2e/near", "server.e2e", "80"));
  const MeshState before = State();

  // Long-lived: across nodes (node0's outbound side, node1's inbound HBONE side) and within
  // node1 (the same-node fast path).
  HeldConnection& cross = Hold("e2e/client", "server.e2e", "80");
  HeldConnection& local = Hold("e2e/near", "server.e2e", "80");

  // A steady rate of new connections through both nodes' ztunnels, running across the upgrade.
  constexpr int kChurnSeconds = 40;
  std::vector<Churn> churn;
  for (const char* pod : {"e2e/client", "e2e/near"}) {
    Churn c;
    c.log = absl::StrCat(tmp_.path(), "/churn-", churn.size(), ".log");
    auto p =
        testbed::Spawn("",
                       up::WeftctlArgv(WEFTCTL_PATH, name_, root_,
                                       {"exec", pod, "--", WEFT_E2E_APP_PATH, "churn", "server.e2e",
                                        "80", "churn", "20", std::to_string(kChurnSeconds)}),
                       c.log);
    ASSERT_TRUE(p.ok()) << p.status();
    c.proc = std::move(*p);
    churn.push_back(std::move(c));
  }
  for (const Churn& c : churn)
    ASSERT_TRUE(Eventually([&] { return c.Ok() >= 20; }, seconds(20)))
        << ReadFile(c.log).value_or("");

  // Both nodes, one after the other; the old ztunnels drain for 8 s.
  constexpr auto kDrain = seconds(8);
  const auto upgrade_start = std::chrono::steady_clock::now();
  auto up = Weftctl({"upgrade", "ztunnel", "--drain-deadline", "8s"});
  ASSERT_TRUE(up.ok()) << up.status();
  const auto upgraded = std::chrono::steady_clock::now();
  std::printf("%s", up->c_str());
  const MeshState after = State();
  for (size_t n = 0; n < after.nodes.size(); ++n) {
    EXPECT_NE(after.nodes[n].ztunnel_pid, before.nodes[n].ztunnel_pid);
    EXPECT_NE(up->find(absl::StrCat("node", n, ": ztunnel pid ", before.nodes[n].ztunnel_pid,
                                    " -> pid ", after.nodes[n].ztunnel_pid)),
              std::string::npos)
        << *up;
  }

  // The open connections go on exchanging bytes on the old processes...
  for (HeldConnection* h : {&cross, &local}) {
    int acks = h->Acks();
    EXPECT_TRUE(Eventually([&] { return h->Acks() >= acks + 5 || h->Closed(); }, seconds(5)))
        << h->Log();
    EXPECT_FALSE(h->Closed()) << h->Log();
  }
  // ...until the deadline (counted from each node's handover, which happened after
  // upgrade_start), and then they are closed.
  std::this_thread::sleep_until(upgrade_start + kDrain - seconds(1));
  for (HeldConnection* h : {&cross, &local}) EXPECT_FALSE(h->Closed()) << h->Log();
  for (HeldConnection* h : {&cross, &local})
    EXPECT_TRUE(Eventually([&] { return h->Closed(); }, kDrain + seconds(10))) << h->Log();
  std::printf(
      "[ upgrade of both nodes took %.1f s; held connections closed %.1f s after it began ]\n",
      std::chrono::duration<double>(upgraded - upgrade_start).count(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - upgrade_start).count());

  // Not a single new connection refused or failed, before, during or after.
  for (Churn& c : churn) {
    ASSERT_TRUE(Eventually([&] { return c.Summary().has_value(); }, seconds(kChurnSeconds + 20)))
        << ReadFile(c.log).value_or("");
    auto [attempts, failed] = *c.Summary();
    std::printf("[ churn %s: %d connections attempted across the upgrade, %d failed ]\n",
                c.log.c_str(), attempts, failed);
    EXPECT_EQ(failed, 0) << ReadFile(c.log).value_or("");
    EXPECT_GT(attempts, 100);
  }

  // The new ztunnels serve the same metrics endpoints (taken over with the listeners): their
  // process started after the upgrade began, and they count the connections they carried.
  for (const NodeState& n : after.nodes) {
    ExpectPromValue(absl::StrCat("max(process_start_time_seconds{job=\"ztunnel\",instance=\"",
                                 n.metrics, "\"})"),
                    [&](double v) { return v >= static_cast<double>(std::time(nullptr)) - 120; });
  }
  ExpectPromValue(absl::StrCat("sum(istio_tcp_connections_opened_total{instance=\"",
                               after.nodes[0].metrics, "\",reporter=\"source\"})"),
                  [](double v) { return v > 0; });

  // The agents hand pods to the new ztunnels: a namespace enrolled after the upgrade works.
  ASSERT_TRUE(Label("e2e-b", "weft.dev/mesh=enabled").ok());
  EXPECT_EQ(Lines(ZtunnelListeners("e2e-b/other")), 6) << ZtunnelListeners("e2e-b/other");
  EXPECT_TRUE(Reaches("e2e-b/other", "server.e2e", "80"));
  EXPECT_TRUE(Reaches("e2e/client", "server.e2e", "80"));
}

}  // namespace
}  // namespace weft::e2e
