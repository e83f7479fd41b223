// weft-agent in eBPF mode end to end (root): a real HandoffServer as ztunnel, pod netns,
// a test cgroup for the connect hooks and a test pin dir. Enrolment sets the maps and tells
// ztunnel the slot; an agent destroyed without uninstalling (what SIGKILL leaves) keeps
// traffic captured, and the next agent re-adopts the pins, keeps the pods' slots, drops the
// pods that left meanwhile and duplicates nothing; unenrolment and --uninstall-on-exit leave
// nothing behind.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "agent/probe.h"
#include "agent/testing.h"
#include "bpf/pinned_maps.h"
#include "bpf/pins.h"
#include "bpf/testing.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/testing/eventually.h"
#include "common/testing/kernel_features.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "ztunnel/inpod/handoff_server.h"

namespace weft::agent {
namespace {

using testing::FakeZtunnel;

using namespace std::chrono_literals;
namespace bt = weft::bpf::testing;

constexpr char kNetnsPrefix[] = "weft-agb-";

using weft::testing::Eventually;

UniqueFd Listen(int netns_fd, const std::string& addr) {
  auto sa = SockAddr::Parse(addr);
  auto fd = SocketInNetns(netns_fd, sa->ip.IsV4() ? AF_INET : AF_INET6, SOCK_STREAM, 0);
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return UniqueFd();
  int one = 1;
  ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss;
  socklen_t len = sa->ToSockaddr(&ss);
  EXPECT_EQ(::bind(fd->get(), reinterpret_cast<sockaddr*>(&ss), len), 0) << addr;
  EXPECT_EQ(::listen(fd->get(), 64), 0);
  return std::move(*fd);
}

// A pod: its netns with `addr` (and a second local address to connect from) on lo, an app
// listener on addr:<port>, and the listeners ztunnel would open in it: outbound
// 127.0.0.1:15001 and inbound (any address, its own port; steered to by sk_lookup).
struct Pod {
  explicit Pod(std::string a) : addr(std::move(a)) {}
  std::string addr;
  weft::testing::ScopedNetns ns{kNetnsPrefix};
  UniqueFd zt_out, zt_in, app;
  uint16_t app_port = 0;
  void Setup() {
    ASSERT_GE(ns.fd(), 0);
    ns.Exec("ip addr add " + addr + "/32 dev lo");
    ns.Exec("ip addr add 10.99.99.1/32 dev lo");
    zt_out = Listen(ns.fd(), "127.0.0.1:15001");
    zt_in = Listen(ns.fd(), "0.0.0.0:0");
    app = Listen(ns.fd(), addr + ":0");
    ASSERT_TRUE(zt_out && zt_in && app);
    app_port = LocalAddress(app.get())->port;
  }
  SockAddr AppAddr() const { return SockAddr{*IpAddr::Parse(addr), app_port}; }
  // Outbound: the app (in the capture cgroup) connects to its own service address.
  std::string Outbound(const std::string& cgroup) const {
    uint16_t port = bt::ConnectFromCgroup(cgroup, ns.fd(), AppAddr());
    return bt::WhoAccepted(port, {{zt_out.get(), "ztunnel"}, {app.get(), "app"}});
  }
  // Inbound: a peer (not the pod address itself) connects to the app's address.
  std::string Inbound() const {
    uint16_t port = bt::ConnectFrom(ns.fd(), *SockAddr::Parse("10.99.99.1:0"), AppAddr());
    if (port == 0) return "refused";
    return bt::WhoAccepted(port, {{zt_in.get(), "ztunnel"}, {app.get(), "app"}});
  }
};

// ztunnel stand-in: the real HandoffServer, recording AddWorkloads (with their eBPF field).

nlohmann::json PodJson(const std::string& name, const Pod& pod) {
  return {{"uid", "default/" + name},
          {"name", name},
          {"namespace", "default"},
          {"serviceAccount", "sa-" + name},
          {"node", "node-1"},
          {"addresses", {pod.addr}},
          {"protocol", "HBONE"},
          {"netnsPath", pod.ns.path()},
          {"captureExcludePorts", {9090}}};
}

std::vector<std::vector<uint8_t>> PinnedKeys(const std::string& pin_dir, const char* map) {
  std::vector<std::vector<uint8_t>> out;
  UniqueFd fd(bpf_obj_get(bpf::MapPin(pin_dir, map).c_str()));
  if (!fd) return out;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  bpf_obj_get_info_by_fd(fd.get(), &info, &len);
  std::vector<uint8_t> k(info.key_size), cursor(info.key_size);
  bool first = true;
  while (bpf_map_get_next_key(fd.get(), first ? nullptr : cursor.data(), k.data()) == 0) {
    first = false;
    cursor = k;
    out.push_back(k);
  }
  return out;
}

// slot of `cookie` in the pinned weft_enrolled map, 0 when absent.
uint32_t PinnedSlot(const std::string& pin_dir, uint64_t cookie) {
  UniqueFd fd(bpf_obj_get(bpf::MapPin(pin_dir, "weft_enrolled").c_str()));
  weft_enrolled_pod v{};
  if (!fd || bpf_map_lookup_elem(fd.get(), &cookie, &v) != 0) return 0;
  return v.slot;
}

double Sample(const std::vector<MetricSample>& samples, const std::string& name,
              const std::map<std::string, std::string>& labels) {
  for (const MetricSample& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      match &= it != s.labels.end() && it->second == v;
    }
    if (match) return s.value;
  }
  return -1;
}

class AgentEbpfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("BPF, bpffs, netns, cgroups");
    ProbeReport report = ProbeKernel();
    WEFT_SKIP_UNLESS_KERNEL_FEATURE(report.ebpf_possible, "this kernel cannot run eBPF capture:\n"
                                                              << report.Format());
    weft::testing::DeleteStaleNamespaces(kNetnsPrefix);
    pins_ = std::make_unique<bt::ScopedPinDir>();
    ASSERT_FALSE(pins_->path().empty());
    cgroup_ = std::make_unique<bt::ScopedCgroup>();
    ASSERT_FALSE(cgroup_->path().empty()) << "probe found cgroup2, so the test cgroup must work";
    char tmpl[] = "/tmp/weft-agent-ebpf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/zt.sock";
    config_ = dir_ + "/config.json";
  }
  void TearDown() override {
    StopAgent();
    pins_.reset();  // detaches whatever a failed test left pinned
    cgroup_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void WriteConfig(const std::vector<nlohmann::json>& workloads, int version) {
    nlohmann::json cfg = {{"version", std::to_string(version)}, {"workloads", workloads}};
    std::string tmp = dir_ + "/.config.tmp";
    std::ofstream(tmp) << cfg.dump(2);
    std::filesystem::rename(tmp, config_);
  }

  AgentOptions Options(CaptureMode mode = CaptureMode::kEbpf) {
    AgentOptions o;
    o.node = "node-1";
    o.config_path = config_;
    o.ztunnel_socket = socket_;
    o.ack_timeout = 2s;
    o.pod_retry = 200ms;
    o.capture = mode;
    o.cgroup_path = cgroup_->path();
    o.bpf_pin_dir = pins_->path();
    o.metrics_addr = *SockAddr::Parse("127.0.0.1:0");
    return o;
  }
  void StartAgent(AgentOptions o) {
    agent_ = std::make_unique<Agent>(std::move(o));
    thread_ = std::thread([this] { run_status_ = agent_->Run(); });
  }
  void StopAgent() {
    if (!agent_) return;
    agent_->Stop();
    thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_;
    agent_.reset();
  }

  std::string dir_, socket_, config_;
  std::unique_ptr<bt::ScopedPinDir> pins_;
  std::unique_ptr<bt::ScopedCgroup> cgroup_;
  std::unique_ptr<Agent> agent_;
  std::thread thread_;
  absl::Status run_status_;
};

TEST_F(AgentEbpfTest, EnrolRestartReconcileUnenrol) {
  Pod a("10.81.0.5"), c("10.81.0.7");
  a.Setup();
  c.Setup();
  WriteConfig({PodJson("pod-a", a), PodJson("pod-c", c)}, 1);
  FakeZtunnel zt(socket_);
  StartAgent(Options());

  ASSERT_TRUE(Eventually([&] {
    return zt.pods() == std::set<std::string>{"default/pod-a", "default/pod-c"};
  })) << "ztunnel never got both pods";
  EXPECT_EQ(agent_->capture_mode(), CaptureMode::kEbpf);
  auto adds = zt.adds();
  ASSERT_EQ(adds.size(), 2u);
  std::map<std::string, uint32_t> slots;
  for (const auto& add : adds) {
    ASSERT_TRUE(add.msg.has_ebpf()) << add.msg.uid() << ": AddWorkload must carry the eBPF slot";
    EXPECT_EQ(add.msg.ebpf().pin_dir(), pins_->path());
    slots[add.msg.uid()] = add.msg.ebpf().slot();
  }
  const uint32_t slot_a = slots["default/pod-a"];
  EXPECT_NE(slot_a, 0u);
  EXPECT_NE(slot_a, slots["default/pod-c"]);
  EXPECT_EQ(PinnedSlot(pins_->path(), a.ns.cookie()), slot_a);
  EXPECT_EQ(PinnedSlot(pins_->path(), c.ns.cookie()), slots["default/pod-c"]);
  // Pods() is published at the end of the loop iteration that handed the pods over.
  ASSERT_TRUE(Eventually([&] { return agent_->Pods().size() == 2; }));
  for (const auto& p : agent_->Pods()) {
    EXPECT_TRUE(p.captured) << p.uid;
    EXPECT_EQ(p.slot, slots[p.uid]);
  }
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_exclude_ports").size(), 2u) << "9090 for each pod";

  // ztunnel's part: its inbound listener into the pinned map under the slot it was given.
  auto maps = bpf::PinnedMaps::Open(pins_->path());
  ASSERT_TRUE(maps.ok()) << maps.status();
  ASSERT_TRUE((*maps)->SetListener(slot_a, WEFT_LISTENER_INBOUND, a.zt_in.get()).ok());
  EXPECT_EQ(a.Inbound(), "ztunnel");
  EXPECT_EQ(a.Outbound(cgroup_->path()), "ztunnel");
  EXPECT_EQ(c.Inbound(), "refused") << "pod-c's ztunnel listener is missing: fail closed";

  // Metrics: decisions from the pinned counters, the enrolled pods, the mode.
  auto addr = agent_->metrics_addr();
  ASSERT_TRUE(addr.has_value());
  EXPECT_NE(addr->port, 0);
  auto body = HttpGet(*addr, "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  auto samples = ParseSamples(*body, "weft_");
  EXPECT_GE(Sample(samples, "weft_bpf_decisions_total",
                   {{"program", "inbound"}, {"reason", "redirect_inbound"}}),
            1);
  EXPECT_GE(Sample(samples, "weft_bpf_decisions_total",
                   {{"program", "inbound"}, {"reason", "drop_no_inbound_socket"}}),
            1);
  EXPECT_GE(Sample(samples, "weft_bpf_decisions_total",
                   {{"program", "outbound"}, {"reason", "redirect_outbound"}}),
            1);
  EXPECT_EQ(Sample(samples, "weft_agent_enrolled_pods", {}), 2);
  EXPECT_EQ(Sample(samples, "weft_agent_capture_mode", {{"mode", "ebpf"}}), 1);
  EXPECT_EQ(Sample(samples, "weft_agent_capture_mode", {{"mode", "iptables"}}), 0);
  EXPECT_EQ(Sample(samples, "weft_agent_errors_total", {{"op", "unenroll"}}), 0);

  // The agent goes away without uninstalling (as after SIGKILL): capture stays, traffic flows.
  UniqueFd long_lived;
  uint16_t lp =
      bt::ConnectFrom(a.ns.fd(), *SockAddr::Parse("10.99.99.1:0"), a.AppAddr(), &long_lived);
  ASSERT_EQ(bt::WhoAccepted(lp, {{a.zt_in.get(), "ztunnel"}}), "ztunnel");
  StopAgent();
  EXPECT_TRUE(std::filesystem::exists(pins_->path()));
  EXPECT_EQ(a.Inbound(), "ztunnel") << "inbound still steered with the agent gone";
  EXPECT_EQ(a.Outbound(cgroup_->path()), "ztunnel") << "outbound still redirected";

  // While it is away pod-c leaves; a new agent (auto mode) re-adopts and reconciles.
  WriteConfig({PodJson("pod-a", a)}, 2);
  StartAgent(Options(CaptureMode::kAuto));
  ASSERT_TRUE(Eventually([&] { return zt.pods() == std::set<std::string>{"default/pod-a"}; }))
      << "the replay + SnapshotSent should leave ztunnel with pod-a only";
  EXPECT_EQ(agent_->capture_mode(), CaptureMode::kEbpf) << "auto picks eBPF on this kernel";
  ASSERT_TRUE(Eventually([&] { return PinnedSlot(pins_->path(), c.ns.cookie()) == 0; }))
      << "pod-c (gone from the config) is unenrolled";
  EXPECT_EQ(PinnedSlot(pins_->path(), a.ns.cookie()), slot_a) << "pod-a keeps its slot";
  adds = zt.adds();
  ASSERT_GE(adds.size(), 3u);
  EXPECT_EQ(adds.back().msg.uid(), "default/pod-a");
  EXPECT_EQ(adds.back().msg.ebpf().slot(), slot_a) << "the replay carries the same slot";
  ASSERT_TRUE(Eventually([&] { return agent_->Pods().size() == 1; }));
  EXPECT_EQ(agent_->Pods()[0].slot, slot_a);
  EXPECT_FALSE(std::filesystem::exists(
      bpf::LinkPin(pins_->path(), absl::StrCat("sk_lookup_", c.ns.cookie()))));
  EXPECT_EQ(bt::AttachedPrograms(c.ns.fd(), BPF_SK_LOOKUP), 0);
  // Nothing duplicated: one program per hook, one address entry, one exclusion.
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_INET4_CONNECT), 1);
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_INET6_CONNECT), 1);
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_SOCK_OPS), 1);
  EXPECT_EQ(bt::AttachedPrograms(a.ns.fd(), BPF_SK_LOOKUP), 1);
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_pod_addrs").size(), 1u);
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_enrolled").size(), 1u);
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_exclude_ports").size(), 1u);
  // ztunnel's listener entry survived; the connection made before the restart is intact.
  EXPECT_EQ(a.Inbound(), "ztunnel");
  EXPECT_EQ(a.Outbound(cgroup_->path()), "ztunnel");
  EXPECT_EQ(::send(long_lived.get(), "x", 1, MSG_NOSIGNAL), 1);

  // pod-a leaves: every entry and link goes, ztunnel is told, the app is reached directly.
  WriteConfig({}, 3);
  ASSERT_TRUE(Eventually([&] { return zt.pods().empty(); }));
  ASSERT_TRUE(Eventually([&] { return agent_->Pods().empty(); }));
  EXPECT_EQ(PinnedSlot(pins_->path(), a.ns.cookie()), 0u);
  for (const char* m : {"weft_enrolled", "weft_pod_addrs", "weft_listeners", "weft_exclude_ports",
                        "weft_exclude_cidrs"})
    EXPECT_TRUE(PinnedKeys(pins_->path(), m).empty()) << m << " is not empty";
  EXPECT_EQ(bt::AttachedPrograms(a.ns.fd(), BPF_SK_LOOKUP), 0);
  EXPECT_EQ(a.Inbound(), "app");
  EXPECT_EQ(a.Outbound(cgroup_->path()), "app");
  StopAgent();
}

TEST_F(AgentEbpfTest, UninstallOnExitRemovesEverything) {
  Pod a("10.82.0.5");
  a.Setup();
  WriteConfig({PodJson("pod-a", a)}, 1);
  FakeZtunnel zt(socket_);
  AgentOptions o = Options();
  o.uninstall_on_exit = true;
  StartAgent(o);
  ASSERT_TRUE(Eventually([&] { return zt.pods() == std::set<std::string>{"default/pod-a"}; }));
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_INET4_CONNECT), 1);
  EXPECT_EQ(a.Outbound(cgroup_->path()), "ztunnel");
  StopAgent();
  EXPECT_FALSE(std::filesystem::exists(pins_->path())) << "the pin dir is removed";
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_INET4_CONNECT), 0);
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_SOCK_OPS), 0);
  EXPECT_EQ(bt::AttachedPrograms(a.ns.fd(), BPF_SK_LOOKUP), 0);
  EXPECT_EQ(zt.dels(), std::vector<std::string>{"default/pod-a"});
  EXPECT_EQ(a.Outbound(cgroup_->path()), "app");
  EXPECT_EQ(a.Inbound(), "app");
}

// The real binary, killed with SIGKILL mid-flight (no chance to clean up), then restarted.
TEST_F(AgentEbpfTest, SigkilledAgentProcessLeavesTrafficFlowingAndIsReadopted) {
  Pod a("10.83.0.5");
  a.Setup();
  WriteConfig({PodJson("pod-a", a)}, 1);
  FakeZtunnel zt(socket_);
  auto spawn = [&] {
    std::vector<std::string> args = {
        WEFT_AGENT_BIN,     "--node",        "node-1",      "--config",  config_,
        "--ztunnel-socket", socket_,         "--capture",   "ebpf",      "--cgroup",
        cgroup_->path(),    "--bpf-pin-dir", pins_->path(), "--metrics", "127.0.0.1:0",
        "--log-level",      "warn"};
    std::string log = dir_ + "/agent.log";
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& s : args) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return pid;
  };
  auto log = [&] {
    std::ifstream f(dir_ + "/agent.log");
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };

  pid_t pid = spawn();
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(Eventually([&] { return zt.pods() == std::set<std::string>{"default/pod-a"}; }))
      << log();
  auto adds = zt.adds();
  ASSERT_EQ(adds.size(), 1u);
  const uint32_t slot = adds[0].msg.ebpf().slot();
  auto maps = bpf::PinnedMaps::Open(pins_->path());
  ASSERT_TRUE(maps.ok()) << maps.status();
  ASSERT_TRUE((*maps)->SetListener(slot, WEFT_LISTENER_INBOUND, a.zt_in.get()).ok());

  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  EXPECT_EQ(a.Inbound(), "ztunnel") << "links are pinned: killing the agent changes nothing";
  EXPECT_EQ(a.Outbound(cgroup_->path()), "ztunnel");

  pid = spawn();
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(Eventually([&] { return zt.adds().size() >= 2; })) << log();
  adds = zt.adds();
  EXPECT_EQ(adds.back().msg.uid(), "default/pod-a");
  EXPECT_EQ(adds.back().msg.ebpf().slot(), slot) << "same slot after the restart";
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_INET4_CONNECT), 1);
  EXPECT_EQ(bt::AttachedPrograms(cgroup_->fd(), BPF_CGROUP_SOCK_OPS), 1);
  EXPECT_EQ(bt::AttachedPrograms(a.ns.fd(), BPF_SK_LOOKUP), 1);
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_enrolled").size(), 1u);
  EXPECT_EQ(a.Inbound(), "ztunnel");
  EXPECT_EQ(a.Outbound(cgroup_->path()), "ztunnel");

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log();
  EXPECT_EQ(a.Inbound(), "ztunnel") << "a plain stop keeps the capture too";
}

TEST_F(AgentEbpfTest, ConfigEditsUpdateAddressesAndExclusionsInPlace) {
  Pod a("10.84.0.5");
  a.Setup();
  a.ns.Exec("ip addr add 10.84.0.6/32 dev lo");
  nlohmann::json w = PodJson("pod-a", a);
  WriteConfig({w}, 1);
  FakeZtunnel zt(socket_);
  StartAgent(Options());
  ASSERT_TRUE(Eventually([&] { return zt.pods() == std::set<std::string>{"default/pod-a"}; }));
  const uint32_t slot = zt.adds().at(0).msg.ebpf().slot();
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_pod_addrs").size(), 1u);

  // A second address and the app port excluded: applied to the maps, same slot, no re-handoff.
  w["addresses"] = {"10.84.0.5", "10.84.0.6"};
  w["captureExcludePorts"] = {a.app_port};
  WriteConfig({w}, 2);
  ASSERT_TRUE(Eventually([&] { return PinnedKeys(pins_->path(), "weft_pod_addrs").size() == 2u; }));
  ASSERT_TRUE(Eventually([&] { return a.Outbound(cgroup_->path()) == "app"; }))
      << "the app port is now excluded";
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_exclude_ports").size(), 1u) << "9090 was replaced";
  EXPECT_EQ(PinnedSlot(pins_->path(), a.ns.cookie()), slot);
  EXPECT_EQ(zt.adds().size(), 1u) << "capture changes need no new AddWorkload";
  StopAgent();
}

TEST_F(AgentEbpfTest, ExplicitEbpfOnABadCgroupFailsWithTheReason) {
  WriteConfig({}, 1);
  AgentOptions o = Options();
  o.cgroup_path = dir_ + "/not-a-cgroup";
  Agent agent(o);
  absl::Status st = agent.RunOnce();
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(absl::StrContains(st.message(), "--cgroup")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "not-a-cgroup")) << st;
}

}  // namespace
}  // namespace weft::agent
