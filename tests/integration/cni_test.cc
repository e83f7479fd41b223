// weft-cni end to end (root): a container runtime's view. The test plays the runtime: it reads
// the conflist weft-agent chained weft-cni into, and runs each plugin as containerd does
// (CNI_* variables, the plugin's configuration with prevResult on stdin): Debian's real bridge +
// host-local, then weft-cni, which asks a real in-process Agent (iptables capture) that hands
// pods to a real HandoffServer (agent/testing.h). The plugins run inside a "node" network
// namespace the test creates (the bridge lives there, never in the host's), and each pod is a
// namespace of its own. Bridge names and subnets are per process and test.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/agent.h"
#include "agent/testing.h"
#include "bpf/pins.h"
#include "bpf/testing.h"
#include "cni/install.h"
#include "cni/protocol.h"
#include "common/file.h"
#include "common/testing/eventually.h"
#include "common/testing/kernel_features.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shared/capture.h"

namespace weft {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using agent::testing::FakeZtunnel;
using nlohmann::json;
using weft::testing::Shell;

constexpr char kNodePrefix[] = "weft-cnode-";
constexpr char kPodPrefix[] = "weft-cpod-";
constexpr char kDebianCni[] = "/usr/lib/cni";
constexpr char kMeshedUid[] = "c0ffee00-0000-4000-8000-000000000001";
constexpr char kPlainUid[] = "c0ffee00-0000-4000-8000-000000000002";

using weft::testing::Eventually;

json Pod(const std::string& uid, const std::string& ns, const std::string& name,
         const std::string& protocol) {
  return {{"uid", uid},       {"name", name},
          {"namespace", ns},  {"serviceAccount", "default"},
          {"node", "node-1"}, {"protocol", protocol}};
}

struct PluginRun {
  int exit_code = -1;
  json out;  // stdout parsed (null when empty or not JSON)
  std::string raw, err;
};

class CniTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, a bridge, iptables");
    if (!fs::exists(std::string(kDebianCni) + "/bridge"))
      GTEST_SKIP() << "Debian's containernetworking-plugins are missing (scripts/deps.sh)";
    weft::testing::DeleteStaleNamespaces(kNodePrefix);
    weft::testing::DeleteStaleNamespaces(kPodPrefix);
    node_ = std::make_unique<weft::testing::ScopedNetns>(kNodePrefix);
    static int seq = 0;
    ++seq;
    // Unique per process and test; inside the node netns anyway, so never the host's.
    bridge_ = absl::StrCat("wc", ::getpid() % 100000, "x", seq);
    subnet_ = absl::StrCat("10.", 100 + ::getpid() % 100, ".", seq % 250, ".0/24");
    fs::create_directories(bin());
    fs::create_directories(conf());
    json list = {
        {"cniVersion", "1.0.0"},
        {"name", absl::StrCat("weft-t", ::getpid(), "-", seq)},
        {"plugins",
         {{{"type", "bridge"},
           {"bridge", bridge_},
           {"isGateway", true},
           {"ipam",
            {{"type", "host-local"}, {"subnet", subnet_}, {"dataDir", dir_.path() + "/ipam"}}}}}}};
    original_ = list.dump(2);
    dir_.Write("net.d/10-test.conflist", original_);
    WriteConfig(
        {Pod(kMeshedUid, "shop", "web-1", "HBONE"), Pod(kPlainUid, "plain", "app-1", "TCP")});
  }
  void TearDown() override { StopAgent(); }

  std::string bin() const { return dir_.path() + "/bin"; }
  std::string conf() const { return dir_.path() + "/net.d"; }
  std::string agent_socket() const { return dir_.path() + "/cni.sock"; }
  std::string zt_socket() const { return dir_.path() + "/zt.sock"; }

  void WriteConfig(const std::vector<json>& workloads) {
    dir_.Write("config.json", json{{"version", "1"}, {"workloads", workloads}}.dump());
  }

  agent::AgentOptions Options() {
    agent::AgentOptions o;
    o.node = "node-1";
    o.config_path = dir_.path() + "/config.json";
    o.ztunnel_socket = zt_socket();
    o.capture = agent::CaptureMode::kIptables;
    o.ack_timeout = 2s;
    o.pod_retry = 200ms;
    o.cni_socket = agent_socket();
    o.cni_pod_wait = 500ms;
    o.cni_install.bin_dir = bin();
    o.cni_install.conf_dir = conf();
    o.cni_install.plugin_binary = WEFT_CNI_BIN;
    o.cni_install.timeout_seconds = 10;
    o.cni_recheck = 100ms;
    o.uninstall_on_exit = true;
    return o;
  }
  void StartAgent(agent::AgentOptions o) {
    agent_ = std::make_unique<agent::Agent>(std::move(o));
    thread_ = std::thread([this] { run_status_ = agent_->Run(); });
  }
  void StopAgent() {
    if (!agent_) return;
    agent_->Stop();
    thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_;
    agent_.reset();
  }
  // Waits until the agent installed weft-cni and is connected to ztunnel (its readiness).
  bool AgentReady() {
    return Eventually([&] {
      auto t = ReadFile(conf() + "/10-test.conflist");
      return agent_->ztunnel_connected() && t.ok() && absl::StrContains(*t, "weft-cni");
    });
  }

  // One plugin, as the runtime runs it (inside the node netns).
  PluginRun Plugin(const std::string& type, const std::string& cmd, json plugin_conf,
                   const std::string& netns, const std::string& args) {
    std::string path;
    for (const std::string& d : {bin(), std::string(kDebianCni)})
      if (path.empty() && fs::exists(d + "/" + type)) path = d + "/" + type;
    PluginRun r;
    if (path.empty()) {
      r.err = "plugin " + type + " not found";
      return r;
    }
    std::string in = dir_.Write("stdin.json", plugin_conf.dump());
    std::string err = dir_.path() + "/stderr.txt";
    r.raw = Shell(
        absl::StrCat("{ ip netns exec ", node_->name(), " env -i CNI_COMMAND=", cmd,
                     " CNI_CONTAINERID=ctr-", netns.substr(netns.rfind('/') + 1),
                     " CNI_NETNS=", netns, " CNI_IFNAME=eth0 'CNI_ARGS=", args,
                     "' CNI_PATH=", bin(), ":", kDebianCni, " ", path, " <", in, " 2>", err, "; }"),
        &r.exit_code);
    r.err = ReadFile(err).value_or("");
    r.out = json::parse(r.raw, nullptr, false);
    if (r.out.is_discarded()) r.out = nullptr;
    return r;
  }

  // The runtime's chain over the conflist in conf(): ADD and CHECK in order, DEL in reverse
  // (also after a failed ADD),
  // each plugin's configuration = its entry + name + cniVersion (+ prevResult).
  PluginRun Chain(const std::string& cmd, const std::string& netns, const std::string& args,
                  const json& cached = nullptr) {
    json list = json::parse(ReadFile(conf() + "/10-test.conflist").value_or("{}"));
    std::vector<json> plugins(list["plugins"].begin(), list["plugins"].end());
    if (cmd == "DEL") std::reverse(plugins.begin(), plugins.end());
    json prev = cmd == "ADD" ? json(nullptr) : cached;
    PluginRun last;
    for (json p : plugins) {
      p["name"] = list["name"];
      p["cniVersion"] = list["cniVersion"];
      if (!prev.is_null()) p["prevResult"] = prev;
      last = Plugin(p["type"], cmd, p, netns, args);
      if (last.exit_code != 0) {
        // A failed ADD is torn down before the runtime retries it (containerd's RunPodSandbox).
        if (cmd == "ADD") Chain("DEL", netns, args);
        return last;
      }
      if (cmd == "ADD") prev = last.out;
    }
    return last;
  }
  static std::string PodArgs(const std::string& ns, const std::string& name,
                             const std::string& uid) {
    return absl::StrCat("IgnoreUnknown=1;K8S_POD_NAMESPACE=", ns, ";K8S_POD_NAME=", name,
                        ";K8S_POD_UID=", uid);
  }
  static bool Captured(const weft::testing::ScopedNetns& pod) {
    return absl::StrContains(pod.Exec("iptables-save -t nat"), "-j WEFT_INPOD_OUTPUT");
  }

  weft::testing::TempDir dir_;
  std::unique_ptr<weft::testing::ScopedNetns> node_;
  std::string bridge_, subnet_, original_;
  std::unique_ptr<agent::Agent> agent_;
  std::thread thread_;
  absl::Status run_status_;
};

TEST_F(CniTest, EnrolledPodIsCapturedBeforeAddReturnsThenCheckAndDel) {
  FakeZtunnel zt(zt_socket());
  StartAgent(Options());
  ASSERT_TRUE(AgentReady()) << "weft-cni never chained into the conflist, or no ztunnel";
  weft::testing::ScopedNetns pod(kPodPrefix);
  std::string args = PodArgs("shop", "web-1", kMeshedUid);

  PluginRun add = Chain("ADD", pod.path(), args);
  ASSERT_EQ(add.exit_code, 0) << add.raw << add.err;
  // No waiting: both hold the moment ADD returned.
  EXPECT_TRUE(Captured(pod)) << pod.Exec("iptables-save -t nat");
  auto adds = zt.adds();
  ASSERT_EQ(adds.size(), 1u);
  EXPECT_EQ(adds[0].msg.uid(), kMeshedUid);
  EXPECT_EQ(adds[0].cookie, pod.cookie()) << "ztunnel got another netns than the runtime's";
  // prevResult passed through: the bridge's address, in the pod.
  ASSERT_TRUE(add.out.is_object()) << add.raw;
  std::string ip = add.out["ips"][0]["address"];
  EXPECT_TRUE(absl::StrContains(pod.Exec("ip -4 addr show eth0"), ip)) << ip;
  EXPECT_EQ(add.out["cniVersion"], "1.0.0");

  PluginRun check = Chain("CHECK", pod.path(), args, add.out);
  EXPECT_EQ(check.exit_code, 0) << check.raw << check.err;

  // Drift: the capture disappears behind the agent's back.
  pod.Exec("iptables -t nat -F OUTPUT; iptables -t nat -F PREROUTING");
  ASSERT_FALSE(Captured(pod));
  PluginRun drift = Chain("CHECK", pod.path(), args, add.out);
  EXPECT_EQ(drift.exit_code, 1) << drift.raw;
  EXPECT_EQ(drift.out.value("code", 0), 101) << drift.raw;
  EXPECT_TRUE(absl::StrContains(drift.out.value("details", ""), "missing")) << drift.raw;

  PluginRun del = Chain("DEL", pod.path(), args, add.out);
  ASSERT_EQ(del.exit_code, 0) << del.raw << del.err;
  EXPECT_EQ(zt.dels(), std::vector<std::string>{kMeshedUid});
  EXPECT_FALSE(absl::StrContains(pod.Exec("iptables-save -t nat"), "WEFT_INPOD_PREROUTING"));
  EXPECT_TRUE(agent_->Pods().empty());
  // Idempotent, and no error once the netns is gone (CNI_NETNS empty, as runtimes send it).
  PluginRun again = Chain("DEL", pod.path(), args, add.out);
  EXPECT_EQ(again.exit_code, 0) << again.raw << again.err;
  PluginRun gone = Plugin("weft-cni", "DEL",
                          {{"cniVersion", "1.0.0"},
                           {"name", "x"},
                           {"type", "weft-cni"},
                           {"agentSocket", agent_socket()}},
                          "", args);
  EXPECT_EQ(gone.exit_code, 0) << gone.raw << gone.err;
  EXPECT_EQ(zt.dels().size(), 1u) << "a repeated DEL must not reach ztunnel again";

  // The network plugin rewrites its configuration: the agent chains weft-cni in again.
  dir_.Write("net.d/10-test.conflist", original_);
  EXPECT_TRUE(AgentReady()) << "weft-cni was not chained again";

  // Uninstall on exit: the operator's conflist exactly as it was, the binary gone.
  StopAgent();
  EXPECT_EQ(json::parse(*ReadFile(conf() + "/10-test.conflist")), json::parse(original_));
  EXPECT_FALSE(fs::exists(bin() + "/weft-cni"));
}

TEST_F(CniTest, UnenrolledPodPassesThroughUntouched) {
  FakeZtunnel zt(zt_socket());
  StartAgent(Options());
  ASSERT_TRUE(AgentReady());
  weft::testing::ScopedNetns pod(kPodPrefix);
  std::string args = PodArgs("plain", "app-1", kPlainUid);
  PluginRun add = Chain("ADD", pod.path(), args);
  ASSERT_EQ(add.exit_code, 0) << add.raw << add.err;
  ASSERT_TRUE(add.out.is_object()) << add.raw << add.err;
  EXPECT_FALSE(absl::StrContains(pod.Exec("iptables-save -t nat"), "WEFT_INPOD"));
  EXPECT_TRUE(zt.adds().empty());
  EXPECT_TRUE(absl::StrContains(pod.Exec("ip -4 addr show eth0"),
                                add.out["ips"][0]["address"].get<std::string>()));
  EXPECT_EQ(Chain("CHECK", pod.path(), args, add.out).exit_code, 0);
  EXPECT_EQ(Chain("DEL", pod.path(), args, add.out).exit_code, 0);
  EXPECT_TRUE(zt.dels().empty());
}

TEST_F(CniTest, AddFailsWhileTheAgentIsDownOrNotReady) {
  weft::testing::ScopedNetns pod(kPodPrefix);
  std::string args = PodArgs("shop", "web-1", kMeshedUid);
  // The agent's entry chained (as a previous agent left it), but no agent runs.
  json list = json::parse(original_);
  list["plugins"].push_back(
      {{"type", "weft-cni"}, {"agentSocket", agent_socket()}, {"timeoutSeconds", 5}});
  dir_.Write("net.d/10-test.conflist", list.dump());
  fs::copy_file(WEFT_CNI_BIN, bin() + "/weft-cni");
  PluginRun down = Chain("ADD", pod.path(), args);
  EXPECT_EQ(down.exit_code, 1) << down.raw;
  EXPECT_EQ(down.out.value("code", 0), 11) << down.raw;
  EXPECT_TRUE(absl::StrContains(down.out.value("details", ""), agent_socket())) << down.raw;
  EXPECT_FALSE(Captured(pod));

  // Agent up, ztunnel not: not ready, the ADD fails too.
  StartAgent(Options());
  ASSERT_TRUE(Eventually([&] { return fs::exists(agent_socket()); }));
  PluginRun not_ready = Chain("ADD", pod.path(), args);
  EXPECT_EQ(not_ready.exit_code, 1) << not_ready.raw;
  EXPECT_EQ(not_ready.out.value("code", 0), 11) << not_ready.raw;
  EXPECT_TRUE(absl::StrContains(not_ready.out.value("details", ""), "ztunnel")) << not_ready.raw;
  EXPECT_FALSE(Captured(pod));

  // ztunnel up: a pod the config does not list is refused after the wait, a listed one enrols.
  FakeZtunnel zt(zt_socket());
  ASSERT_TRUE(Eventually([&] { return agent_->ztunnel_connected(); }));
  weft::testing::ScopedNetns stranger(kPodPrefix);
  PluginRun unknown = Chain("ADD", stranger.path(), PodArgs("shop", "web-9", ""));
  EXPECT_EQ(unknown.exit_code, 1) << unknown.raw;
  EXPECT_EQ(unknown.out.value("code", 0), 11) << unknown.raw;
  EXPECT_TRUE(absl::StrContains(unknown.out.value("details", ""), "not in the agent's config"))
      << unknown.raw;
  PluginRun retried = Chain("ADD", pod.path(), args);
  EXPECT_EQ(retried.exit_code, 0) << retried.raw << retried.err;
  EXPECT_TRUE(Captured(pod));
}

// eBPF capture: the agent steers by address, and weftd has not reported the new pod's IP when
// ADD runs; the address comes from the bridge's result.
TEST_F(CniTest, EbpfCaptureUsesTheRuntimesAddressBeforeAddReturns) {
  WEFT_SKIP_UNLESS_KERNEL_FEATURE(bpf::testing::KernelHasCapturePrograms(),
                                  "sk_lookup, cgroup sock_addr and sock_ops programs");
  bpf::testing::ScopedPinDir pins;
  bpf::testing::ScopedCgroup cgroup;
  ASSERT_FALSE(pins.path().empty() || cgroup.path().empty());
  FakeZtunnel zt(zt_socket());
  agent::AgentOptions o = Options();
  o.capture = agent::CaptureMode::kEbpf;
  o.bpf_pin_dir = pins.path();
  o.cgroup_path = cgroup.path();
  StartAgent(std::move(o));
  ASSERT_TRUE(AgentReady());
  ASSERT_EQ(agent_->capture_mode(), agent::CaptureMode::kEbpf);
  weft::testing::ScopedNetns pod(kPodPrefix);
  std::string args = PodArgs("shop", "web-1", kMeshedUid);

  PluginRun add = Chain("ADD", pod.path(), args);
  ASSERT_EQ(add.exit_code, 0) << add.raw << add.err;
  ASSERT_TRUE(add.out.is_object()) << add.raw;
  auto adds = zt.adds();
  ASSERT_EQ(adds.size(), 1u);
  ASSERT_TRUE(adds[0].msg.has_ebpf());
  EXPECT_NE(adds[0].msg.ebpf().slot(), 0u);
  EXPECT_EQ(adds[0].cookie, pod.cookie());
  // The pod's address (IPv4-mapped) is in weft_pod_addrs under the pod's slot.
  std::string ip = add.out["ips"][0]["address"];
  ip = ip.substr(0, ip.find('/'));
  weft_addr_key key{};
  key.addr[10] = key.addr[11] = 0xff;
  ASSERT_EQ(::inet_pton(AF_INET, ip.c_str(), &key.addr[12]), 1) << ip;
  UniqueFd addrs(bpf_obj_get(bpf::MapPin(pins.path(), "weft_pod_addrs").c_str()));
  ASSERT_TRUE(addrs);
  weft_pod_slot slot{};
  ASSERT_EQ(bpf_map_lookup_elem(addrs.get(), &key, &slot), 0) << ip << " not steered";
  EXPECT_EQ(slot.slot, adds[0].msg.ebpf().slot());

  EXPECT_EQ(Chain("CHECK", pod.path(), args, add.out).exit_code, 0);
  EXPECT_EQ(Chain("DEL", pod.path(), args, add.out).exit_code, 0);
  EXPECT_NE(bpf_map_lookup_elem(addrs.get(), &key, &slot), 0) << "address left after DEL";
  EXPECT_EQ(zt.dels(), std::vector<std::string>{kMeshedUid});

  // A new sandbox; then drift: its weft_enrolled entry disappears behind the agent's back.
  weft::testing::ScopedNetns again(kPodPrefix);
  PluginRun add2 = Chain("ADD", again.path(), args);
  ASSERT_EQ(add2.exit_code, 0) << add2.raw << add2.err;
  UniqueFd enrolled(bpf_obj_get(bpf::MapPin(pins.path(), "weft_enrolled").c_str()));
  ASSERT_TRUE(enrolled);
  uint64_t cookie = again.cookie();
  ASSERT_EQ(bpf_map_delete_elem(enrolled.get(), &cookie), 0);
  PluginRun drift = Chain("CHECK", again.path(), args, add2.out);
  EXPECT_EQ(drift.exit_code, 1) << drift.raw;
  EXPECT_EQ(drift.out.value("code", 0), 101) << drift.raw;
  EXPECT_TRUE(absl::StrContains(drift.out.value("details", ""), "eBPF")) << drift.raw;
}

// Bad input on the agent's socket: a decode error back (and weft_agent_cni_requests_total
// {op="bad"}), and the agent keeps serving.
TEST_F(CniTest, AgentAnswersMalformedRequestsAndKeepsServing) {
  FakeZtunnel zt(zt_socket());
  StartAgent(Options());
  ASSERT_TRUE(AgentReady());
  auto raw = [&](const std::string& bytes) {
    UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, agent_socket().c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_GT(::send(s.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), 0);
    std::string buf(cni::kMaxMessage, '\0');
    ssize_t n = ::recv(s.get(), buf.data(), buf.size(), 0);
    cni::Reply r;
    EXPECT_EQ(cni::DecodeReply(std::string_view(buf.data(), n > 0 ? n : 0), &r), "");
    return r;
  };
  for (const std::string bad : {std::string("not json"), std::string(R"({"op":"rm"})"),
                                std::string(R"({"op":"add","ips":"10.0.0.1"})")}) {
    cni::Reply r = raw(bad);
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_EQ(r.code, cni::kErrDecode) << bad;
    EXPECT_FALSE(r.error.empty()) << bad;
  }
  cni::Reply plain = raw(cni::EncodeRequest(
      {"check", "c", "/run/netns/none", "eth0", "plain", "app-1", kPlainUid, {}}));
  EXPECT_TRUE(plain.ok) << plain.error;
  EXPECT_FALSE(plain.enrolled);
}

// The real binary's one-shot uninstall (what an operator runs when cni.uninstallOnExit is off).
TEST_F(CniTest, AgentBinaryUninstallsThePlugin) {
  cni::InstallOptions o{bin(), conf(), WEFT_CNI_BIN, agent_socket(), 5};
  ASSERT_TRUE(cni::InstallPlugin(o).ok());
  int code = -1;
  std::string out = Shell(absl::StrCat(WEFT_AGENT_BIN, " --uninstall-cni --cni-bin-dir ", bin(),
                                       " --cni-conf-dir ", conf()),
                          &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(json::parse(*ReadFile(conf() + "/10-test.conflist")), json::parse(original_));
  EXPECT_FALSE(fs::exists(bin() + "/weft-cni"));
  out = Shell(absl::StrCat(WEFT_AGENT_BIN, " --uninstall-cni"), &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_TRUE(absl::StrContains(out, "--cni-bin-dir")) << out;
}

TEST_F(CniTest, VersionListsSupportedVersions) {
  PluginRun v = Plugin("bridge", "VERSION", {{"cniVersion", "1.0.0"}}, "", "");
  ASSERT_EQ(v.exit_code, 0) << v.raw;  // the runtime's reference: Debian's bridge
  fs::copy_file(WEFT_CNI_BIN, bin() + "/weft-cni");
  PluginRun w = Plugin("weft-cni", "VERSION", {{"cniVersion", "1.0.0"}}, "", "");
  ASSERT_EQ(w.exit_code, 0) << w.raw << w.err;
  EXPECT_EQ(w.out["supportedVersions"], json({"0.3.0", "0.3.1", "0.4.0", "1.0.0"}));
  EXPECT_EQ(w.out["cniVersion"], "1.0.0");
}

}  // namespace
}  // namespace weft
