// The real weftctl against real local meshes (root): up from manifests, Service names and
// cluster IPs from enrolled and unenrolled pods, live enrolment by label (mTLS in ztunnel's
// metrics), a DENY policy applied and deleted live, logs, restarts, down leaving nothing; and a
// supervisor killed with SIGKILL, cleaned by the next up and by down.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "common/file.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"

namespace weft::up {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string Manifests(const std::string& app) {
  return absl::StrReplaceAll(R"yaml(
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server}}
spec:
  nodeName: node0
  containers:
  - name: app
    command: [APP, serve, "$(PORT)"]
    env: [{name: PORT, value: "8080"}]
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-a, namespace: shop}
spec:
  nodeName: node0
  containers: [{name: app, command: [APP, sleep]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-b, namespace: shop}
spec:
  nodeName: node1
  containers: [{name: app, command: [APP, sleep]}]
---
apiVersion: v1
kind: Pod
metadata: {name: outsider, namespace: other}
spec:
  nodeName: node1
  containers: [{name: app, command: [APP, sleep]}]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: other}
spec:
  containers: [{name: app, command: [APP, exit-after, "200"]}]
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: shop}
spec:
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: http}]
)yaml",
                             {{"APP", app}});
}

constexpr char kDenyShop[] = R"(
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-shop-clients, namespace: shop}
spec:
  selector: {matchLabels: {app: server}}
  action: DENY
  rules: [{from: [{source: {namespaces: [shop]}}]}]
)";

class UpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, iptables");
    root_ = tmp_.path() + "/state";
    name_ = absl::StrCat("t", ::getpid(), "-", counter_++);
    dir_ = tmp_.path() + "/manifests";
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ + "/app.yaml") << Manifests(WEFT_TESTAPP_PATH);
  }
  void TearDown() override {
    if (!root_.empty()) (void)Weftctl({"down"});  // whatever a failed test left
  }

  absl::StatusOr<std::string> Weftctl(std::vector<std::string> args,
                                      milliseconds timeout = seconds(120)) {
    return testbed::Exec("", WeftctlArgv(WEFTCTL_PATH, name_, root_, std::move(args)), "", timeout);
  }
  absl::StatusOr<std::string> Call(const std::string& pod, const std::string& host,
                                   const std::string& port) {
    return Weftctl({"exec", pod, "--", WEFT_TESTAPP_PATH, "call", host, port}, seconds(30));
  }
  MeshState State() {
    auto s = LoadMesh(root_, name_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : MeshState{};
  }
  // istio_tcp_connections_opened_total with mutual_tls, summed over every ztunnel. A ztunnel
  // whose metrics cannot be read fails the test (and the sum is -1), so that "no new mTLS
  // connection" cannot pass because nothing was read.
  double MtlsConnections(const MeshState& s) {
    double sum = 0;
    for (const NodeState& n : s.nodes) {
      auto ns = OpenNetns(testbed::NetnsPath(n.netns));
      auto addr = SockAddr::Parse(n.metrics);
      absl::StatusOr<std::string> m = !ns.ok()     ? ns.status()
                                      : !addr.ok() ? addr.status()
                                                   : HttpGet(*addr, "/metrics", ns->get());
      if (!m.ok()) {
        ADD_FAILURE() << "cannot scrape " << n.name << "'s ztunnel (" << n.metrics
                      << "): " << m.status();
        return -1;
      }
      sum += MetricSum(*m, "istio_tcp_connections_opened_total",
                       {{"connection_security_policy", "mutual_tls"}});
    }
    EXPECT_FALSE(s.nodes.empty());
    return s.nodes.empty() ? -1 : sum;
  }
  // The capture mode each node's agent chose (its "capture mode chosen" log line, written when
  // asked for ebpf or auto), node by node; "" for a node whose agent has not said.
  std::vector<std::string> ChosenCaptureModes(const MeshState& s) {
    std::vector<std::string> modes;
    for (const NodeState& n : s.nodes) {
      std::string mode;
      auto log = Weftctl({"logs", "agent", n.name}, seconds(30));
      EXPECT_TRUE(log.ok()) << log.status();
      for (absl::string_view line : absl::StrSplit(log.ok() ? *log : "", '\n')) {
        auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.value("msg", "") == "capture mode chosen")
          mode = j.value("mode", "");
      }
      modes.push_back(mode);
    }
    return modes;
  }
  void ExpectNothingLeft(const std::string& prefix) {
    EXPECT_TRUE(testbed::TestbedLeftovers(prefix).empty());
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec))
      EXPECT_FALSE(e.path().filename().string().starts_with(prefix + "-")) << e.path();
    // The service chains only ever exist inside the mesh's node namespaces.
    auto host = testbed::Exec("", {"iptables-save", "-t", "nat"});
    if (host.ok()) {
      EXPECT_EQ(host->find("WEFT-SERVICES"), std::string::npos);
    }
  }

  static inline int counter_ = 0;
  weft::testing::TempDir tmp_;
  std::string root_, name_, dir_;
};

class UpLifecycleTest : public UpTest, public ::testing::WithParamInterface<const char*> {};

// iptables capture, and auto (eBPF where the kernel has the hooks, as here in CI).
INSTANTIATE_TEST_SUITE_P(Capture, UpLifecycleTest, ::testing::Values("iptables", "auto"));

TEST_P(UpLifecycleTest, MeshLifecycle) {
  auto up = Weftctl({"up", "--nodes", "2", "--capture", GetParam(), dir_});
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_NE(up->find("shop/server"), std::string::npos) << *up;
  EXPECT_NE(up->find("10.247.0.1"), std::string::npos) << *up;
  MeshState s = State();
  ASSERT_EQ(s.status, "ready");
  ASSERT_EQ(s.pods.size(), 5u);
  if (std::string(GetParam()) == "auto") {
    // This kernel has the hooks (CI runs here): auto must pick eBPF on every node.
    std::vector<std::string> modes = ChosenCaptureModes(s);
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (std::count(modes.begin(), modes.end(), "") > 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(200));
      modes = ChosenCaptureModes(s);
    }
    EXPECT_EQ(modes, std::vector<std::string>(s.nodes.size(), "ebpf"));
  }
  const std::string prefix = s.prefix;
  ASSERT_FALSE(prefix.empty());
  EXPECT_TRUE(SupervisorAlive(s));
  // A second up of the same name is refused while this one lives.
  auto again = Weftctl({"up", dir_});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("already up"), std::string::npos);

  // Nothing enrolled yet: names from the hosts files, cluster IPs through the node rules.
  for (const auto& [pod, host] : std::vector<std::pair<std::string, std::string>>{
           {"shop/client-a", "server"},
           {"shop/client-b", "server.shop.svc.cluster.local"},
           {"other/outsider", "server.shop"},
           {"other/outsider", "10.247.0.1"}}) {
    auto r = Call(pod, host, "80");
    ASSERT_TRUE(r.ok()) << pod << " -> " << host << ": " << r.status();
    EXPECT_EQ(*r, "hello from server\n");
  }
  auto direct = Call("client-b", "10.248.0.1", "8080");
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(MtlsConnections(s), 0);

  // Enrol shop live: its cross-node traffic becomes mTLS.
  auto label = Weftctl({"label", "namespace", "shop", "weft.dev/mesh=enabled", "--wait"});
  ASSERT_TRUE(label.ok()) << label.status();
  EXPECT_NE(label->find("namespace/shop labeled"), std::string::npos) << *label;
  auto meshed = Call("shop/client-b", "server.shop.svc.cluster.local", "80");
  ASSERT_TRUE(meshed.ok()) << meshed.status();
  EXPECT_EQ(*meshed, "hello from server\n");
  EXPECT_GT(MtlsConnections(s), 0);
  // An unenrolled pod still reaches the enrolled server through the cluster IP (PERMISSIVE).
  auto plain = Call("other/outsider", "server.shop", "80");
  ASSERT_TRUE(plain.ok()) << plain.status();

  // A pod opted out by its own label talks plain text (through the node's DNAT) to the
  // enrolled server; no new mTLS connection appears.
  auto optout = Weftctl({"label", "pod", "shop/client-a", "weft.dev/mesh=disabled", "--wait"});
  ASSERT_TRUE(optout.ok()) << optout.status();
  EXPECT_NE(optout->find("pod/shop/client-a labeled"), std::string::npos) << *optout;
  double mtls = MtlsConnections(s);
  auto opted = Call("shop/client-a", "server", "80");
  ASSERT_TRUE(opted.ok()) << opted.status();
  EXPECT_EQ(MtlsConnections(s), mtls);

  // A DENY policy applied live refuses shop's clients, and only them.
  std::ofstream(tmp_.path() + "/deny.yaml") << kDenyShop;
  auto apply = Weftctl({"apply", "-f", tmp_.path() + "/deny.yaml", "--wait"});
  ASSERT_TRUE(apply.ok()) << apply.status();
  EXPECT_NE(apply->find("created"), std::string::npos) << *apply;
  auto denied = Call("shop/client-b", "server.shop", "80");
  EXPECT_FALSE(denied.ok()) << *denied;
  EXPECT_TRUE(Call("other/outsider", "server.shop", "80").ok());
  // A Service applied live: a cluster IP, its name in every pod, the rules in every node.
  std::ofstream(tmp_.path() + "/alt.yaml") << R"yaml(
apiVersion: v1
kind: Service
metadata: {name: alt, namespace: shop}
spec:
  selector: {app: server}
  ports: [{port: 81, targetPort: 8080}]
)yaml";
  auto alt = Weftctl({"apply", "-f", tmp_.path() + "/alt.yaml", "--wait"});
  ASSERT_TRUE(alt.ok()) << alt.status();
  EXPECT_EQ(State().services.size(), 2u);
  auto via_alt = Call("other/outsider", "alt.shop.svc.cluster.local", "81");
  ASSERT_TRUE(via_alt.ok()) << via_alt.status();
  EXPECT_EQ(*via_alt, "hello from server\n");
  auto alt_del = Weftctl({"delete", "-f", tmp_.path() + "/alt.yaml", "--wait"});
  ASSERT_TRUE(alt_del.ok()) << alt_del.status();
  EXPECT_FALSE(Call("other/outsider", "alt.shop.svc.cluster.local", "81").ok());

  // A Pod cannot be applied after up.
  auto pod_apply = Weftctl({"apply", "-f", dir_});
  ASSERT_FALSE(pod_apply.ok());
  EXPECT_NE(pod_apply.status().message().find("fixed at up time"), std::string::npos);
  auto del = Weftctl({"delete", "-f", tmp_.path() + "/deny.yaml", "--wait"});
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_TRUE(Call("shop/client-b", "server.shop", "80").ok());

  // Unenrol: plain again, no new mTLS connections.
  auto unlabel = Weftctl({"label", "namespace", "shop", "weft.dev/mesh-", "--wait"});
  ASSERT_TRUE(unlabel.ok()) << unlabel.status();
  double before = MtlsConnections(s);
  ASSERT_TRUE(Call("shop/client-b", "server.shop", "80").ok());
  EXPECT_EQ(MtlsConnections(s), before);

  // Logs: the app's, a ztunnel's; the crashing pod was restarted with backoff.
  auto logs = Weftctl({"logs", "shop/server"});
  ASSERT_TRUE(logs.ok()) << logs.status();
  EXPECT_NE(logs->find("serving on port 8080"), std::string::npos) << *logs;
  auto zlog = Weftctl({"logs", "ztunnel", "node0"});
  ASSERT_TRUE(zlog.ok()) << zlog.status();
  EXPECT_FALSE(zlog->empty());
  auto crash_log = Weftctl({"logs", "crasher"});
  ASSERT_TRUE(crash_log.ok()) << crash_log.status();
  EXPECT_NE(crash_log->find("exited with status 3; restart 1"), std::string::npos) << *crash_log;

  auto down = Weftctl({"down"});
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_NE(down->find("is down"), std::string::npos) << *down;
  ExpectNothingLeft(prefix);
  EXPECT_FALSE(std::filesystem::exists(PathsFor(root_, name_).state_file));
  EXPECT_FALSE(ProcessStartTime(s.supervisor_pid) == s.supervisor_start_time);
}

TEST_F(UpTest, CrashedSupervisorIsCleanedByUpAndDown) {
  auto up = Weftctl({"up", "--nodes", "2", "--capture", "iptables", dir_});
  ASSERT_TRUE(up.ok()) << up.status();
  MeshState first = State();
  ASSERT_TRUE(SupervisorAlive(first));
  ASSERT_EQ(::kill(first.supervisor_pid, SIGKILL), 0);
  for (int i = 0; i < 100 && SupervisorAlive(first); ++i)
    std::this_thread::sleep_for(milliseconds(50));
  ASSERT_FALSE(SupervisorAlive(first));

  // Commands that need a running mesh say so.
  auto exec_dead = Call("other/outsider", "server.shop", "80");
  ASSERT_FALSE(exec_dead.ok());
  EXPECT_NE(exec_dead.status().message().find("is not running"), std::string::npos)
      << exec_dead.status();

  // The next up removes the remains and works.
  auto up2 = Weftctl({"up", "--nodes", "2", "--capture", "iptables", dir_});
  ASSERT_TRUE(up2.ok()) << up2.status();
  EXPECT_NE(up2->find("removed the remains"), std::string::npos) << *up2;
  ExpectNothingLeft(first.prefix);
  MeshState second = State();
  ASSERT_NE(second.prefix, first.prefix);
  auto r = Call("other/outsider", "server.shop.svc.cluster.local", "80");
  ASSERT_TRUE(r.ok()) << r.status();

  // down after a crash cleans too.
  ASSERT_EQ(::kill(second.supervisor_pid, SIGKILL), 0);
  for (int i = 0; i < 100 && SupervisorAlive(second); ++i)
    std::this_thread::sleep_for(milliseconds(50));
  auto down = Weftctl({"down"});
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_NE(down->find("is gone"), std::string::npos) << *down;
  ExpectNothingLeft(second.prefix);
}

// `up --owner-pid P`: when P exits, however it exits (here SIGKILL, as ctest kills a test at its
// time-out), the supervisor tears the whole mesh down, with nothing left.
TEST_F(UpTest, OwnerExitTearsTheMeshDown) {
  auto gone = Weftctl({"up", "--owner-pid", "999999999", dir_});
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.status().message().find("--owner-pid 999999999"), std::string::npos)
      << gone.status();

  pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    ::pause();
    ::_exit(0);
  }
  auto up = Weftctl(
      {"up", "--nodes", "1", "--capture", "iptables", "--owner-pid", std::to_string(owner), dir_});
  if (!up.ok()) ::kill(owner, SIGKILL), ::waitpid(owner, nullptr, 0);
  ASSERT_TRUE(up.ok()) << up.status();
  MeshState s = State();
  ASSERT_TRUE(SupervisorAlive(s));
  ASSERT_EQ(::kill(owner, SIGKILL), 0);
  ASSERT_EQ(::waitpid(owner, nullptr, 0), owner);
  for (int i = 0; i < 600 && SupervisorAlive(s); ++i) std::this_thread::sleep_for(milliseconds(50));
  ASSERT_FALSE(SupervisorAlive(s)) << "the supervisor outlived its owner by 30 s";
  ExpectNothingLeft(s.prefix);
  auto log = ReadFile(PathsFor(root_, name_).logs + "/supervisor.log");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_NE(log->find("the owner process exited"), std::string::npos) << *log;
}

#ifdef WEFT_TEASHOP_MANIFESTS
// The demo shop (examples/teashop) from its own manifests: weft-teashop found in the build
// tree, the load driver in the unenrolled `legacy` pod against the enrolled shop.
TEST_F(UpTest, TeashopRunsEnrolledWithLoadFromOutside) {
  auto up = Weftctl({"up", "--nodes", "2", WEFT_TEASHOP_MANIFESTS});
  ASSERT_TRUE(up.ok()) << up.status();
  MeshState s = State();
  auto label = Weftctl({"label", "namespace", "shop", "weft.dev/mesh=enabled", "--wait"});
  ASSERT_TRUE(label.ok()) << label.status();
  auto load = Weftctl({"exec", "legacy/client", "--", "weft-teashop", "--role", "load", "--target",
                       "http://frontend.shop.svc.cluster.local:80", "--duration", "2s"},
                      seconds(60));
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_NE(load->find("successful"), std::string::npos) << *load;
  // frontend -> upstreams crosses nodes inside the enrolled namespace.
  EXPECT_GT(MtlsConnections(s), 0);
  auto down = Weftctl({"down"});
  ASSERT_TRUE(down.ok()) << down.status();
  ExpectNothingLeft(s.prefix);
}
#endif

}  // namespace
}  // namespace weft::up
