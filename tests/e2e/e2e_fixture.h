// The end-to-end suite's fixture (tests/e2e/e2e_test.cc, e2e_l7_test.cc): the real weftctl brings
// a whole 2-node mesh up from a manifest of testdata/ (MeshFile()), a real Prometheus server in
// node0's namespace scrapes every ztunnel and weftd (every 500 ms), and the tests call from the
// pods with `weftctl exec`. Parameterised over the capture mode (iptables, ebpf).
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "common/file.h"
#include "common/testing/kernel_features.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"
#include "tests/e2e/prometheus_server.h"

namespace weft::e2e {

using std::chrono::milliseconds;
using std::chrono::seconds;
using up::MeshState;
using up::NodeState;
using up::PodState;

inline std::string Token() {
  std::mt19937_64 rng(std::random_device{}());
  return "WEFT-E2E-TOKEN-" + std::to_string(rng());
}

// Polls `pred` every 200 ms until it holds or `timeout` passes.
inline bool Eventually(const std::function<bool()>& pred, milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(200));
  }
}

// A connection kept open from a pod (`weft-e2e-app hold` under `weftctl exec`), its progress
// read from its log: "ok i" per echoed message, "closed: why" when the connection failed.
class HeldConnection {
 public:
  HeldConnection(testbed::Process p, std::string log) : proc_(std::move(p)), log_(std::move(log)) {}
  int Acks() const {
    std::string s = ReadFile(log_).value_or("");
    int n = 0;
    for (size_t at = s.find("ok "); at != std::string::npos; at = s.find("ok ", at + 1)) ++n;
    return n;
  }
  bool Closed() const { return ReadFile(log_).value_or("").find("closed:") != std::string::npos; }
  std::string Log() const { return ReadFile(log_).value_or(""); }

 private:
  testbed::Process proc_;
  std::string log_;
};

// Holds a process stopped (SIGSTOP) until it goes out of scope (SIGCONT): the mesh's
// supervisor, so that it restarts no daemon while a scenario checks the mesh with one dead.
class SupervisorPaused {
 public:
  explicit SupervisorPaused(pid_t pid) : pid_(pid) {
    stopped_ = pid > 0 && ::kill(pid, SIGSTOP) == 0 &&
               Eventually([&] { return ProcessState(pid) == 'T'; }, seconds(5));
  }
  ~SupervisorPaused() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }
  SupervisorPaused(const SupervisorPaused&) = delete;
  SupervisorPaused& operator=(const SupervisorPaused&) = delete;
  bool ok() const { return stopped_; }

 private:
  // The state letter of /proc/PID/stat (R, S, T, Z, ...); 0 if unreadable.
  static char ProcessState(pid_t pid) {
    auto stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    if (!stat.ok()) return 0;
    size_t close = stat->rfind(')');
    return close != std::string::npos && close + 2 < stat->size() ? (*stat)[close + 2] : 0;
  }

  pid_t pid_;
  bool stopped_ = false;
};

class E2eTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, iptables");
    if (std::string(GetParam()) == "ebpf") {
      auto check = testbed::Exec("", {WEFTCTL_PATH, "check"});
      WEFT_SKIP_UNLESS_KERNEL_FEATURE(
          check.ok(), "weftctl check says this kernel cannot run eBPF capture: " << check.status());
    }
    root_ = tmp_.path() + "/state";
    name_ = absl::StrCat("e2e", ::getpid(), "-", counter_++);
    auto t0 = std::chrono::steady_clock::now();
    // Owned by this process: a test killed at its time-out leaves no mesh running.
    auto up = Weftctl({"up", "--nodes", "2", "--capture", GetParam(), "--owner-pid",
                       std::to_string(::getpid()), Data(MeshFile())});
    ASSERT_TRUE(up.ok()) << up.status();
    up_ok_ = true;
    s_ = State();
    ASSERT_EQ(s_.status, "ready");
    ASSERT_EQ(s_.capture, GetParam());
    ASSERT_EQ(s_.nodes.size(), 2u);
    for (const PodState& p : s_.pods) pods_[p.ns + "/" + p.name] = p;
    ASSERT_EQ(pods_.size(), ExpectedPods()) << *up;

    PrometheusServer::Options o;
    o.netns = s_.nodes[0].netns;
    o.listen = s_.nodes[0].ip + ":19090";
    o.work_dir = tmp_.path() + "/prometheus";
    std::filesystem::create_directories(o.work_dir);
    o.scrape_interval = milliseconds(500);
    ScrapeJob zt{"ztunnel", {}, {}};
    for (const NodeState& n : s_.nodes) zt.targets.push_back(n.metrics);
    o.jobs = {zt, ScrapeJob{"weftd", {s_.weftd.metrics}, {}}};
    for (ScrapeJob& j : ExtraScrapeJobs()) o.jobs.push_back(std::move(j));
    auto prom = PrometheusServer::Start(o);
    ASSERT_TRUE(prom.ok()) << prom.status();
    prom_ = std::move(*prom);
    auto targets = prom_->WaitTargetsUp(seconds(20));
    ASSERT_TRUE(targets.ok()) << targets << "\n" << prom_->Log();
    std::printf("[ mesh %s (%s) up with Prometheus in %.1f s ]\n", name_.c_str(), GetParam(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  // The manifest under testdata/ the mesh is brought up from, and how many pods it runs.
  virtual std::string MeshFile() const { return "mesh.yaml"; }
  virtual size_t ExpectedPods() const { return 5; }
  // More targets for the Prometheus server (it runs in node0's namespace).
  virtual std::vector<ScrapeJob> ExtraScrapeJobs() const { return {}; }

  void TearDown() override {
    held_.clear();
    prom_.reset();
    if (!root_.empty()) {
      auto down = Weftctl({"down"});
      if (up_ok_) {
        EXPECT_TRUE(down.ok()) << down.status();
      }
      if (!s_.prefix.empty()) {
        EXPECT_TRUE(testbed::TestbedLeftovers(s_.prefix).empty());
      }
    }
  }

  absl::StatusOr<std::string> Weftctl(std::vector<std::string> args,
                                      milliseconds timeout = seconds(120)) {
    return testbed::Exec("", up::WeftctlArgv(WEFTCTL_PATH, name_, root_, std::move(args)), "",
                         timeout);
  }
  MeshState State() {
    auto s = up::LoadMesh(root_, name_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : MeshState{};
  }
  // One round trip from `pod` to host:port carrying `token`; ok iff the echo came back.
  absl::Status Call(const std::string& pod, const std::string& host, const std::string& port,
                    const std::string& token = "ping") {
    auto r =
        Weftctl({"exec", pod, "--", WEFT_E2E_APP_PATH, "call", host, port, token}, seconds(30));
    if (!r.ok()) return r.status();
    if (*r != token + "\n") return absl::InternalError("unexpected answer: " + *r);
    return absl::OkStatus();
  }
  // Call as gtest assertions: the failure message names the call and what happened.
  ::testing::AssertionResult Reaches(const std::string& pod, const std::string& host,
                                     const std::string& port, const std::string& token = "ping") {
    absl::Status st = Call(pod, host, port, token);
    if (st.ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << pod << " -> " << host << ":" << port << ": " << st;
  }
  ::testing::AssertionResult Refused(const std::string& pod, const std::string& host,
                                     const std::string& port) {
    absl::Status st = Call(pod, host, port);
    if (!st.ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << pod << " -> " << host << ":" << port << " went through";
  }
  HeldConnection& Hold(const std::string& pod, const std::string& host, const std::string& port) {
    std::string log = absl::StrCat(tmp_.path(), "/hold-", held_.size(), ".log");
    auto p = testbed::Spawn(
        "",
        up::WeftctlArgv(WEFTCTL_PATH, name_, root_,
                        {"exec", pod, "--", WEFT_E2E_APP_PATH, "hold", host, port, "held", "200"}),
        log);
    EXPECT_TRUE(p.ok()) << p.status();
    held_.push_back(
        std::make_unique<HeldConnection>(p.ok() ? std::move(*p) : testbed::Process(), log));
    HeldConnection& h = *held_.back();
    EXPECT_TRUE(Eventually([&] { return h.Acks() >= 2 || h.Closed(); }, seconds(10))) << h.Log();
    EXPECT_FALSE(h.Closed()) << h.Log();
    return h;
  }
  absl::Status Apply(const std::string& file, bool wait = true) {
    std::vector<std::string> args = {"apply", "-f", file};
    if (wait) args.push_back("--wait");
    auto r = Weftctl(args);
    return r.ok() ? absl::OkStatus() : r.status();
  }
  absl::Status Delete(const std::string& file) {
    auto r = Weftctl({"delete", "-f", file, "--wait"});
    return r.ok() ? absl::OkStatus() : r.status();
  }
  absl::Status Label(const std::string& ns, const std::string& change) {
    auto r = Weftctl({"label", "namespace", ns, change, "--wait"});
    return r.ok() ? absl::OkStatus() : r.status();
  }
  static std::string Data(const std::string& file) {
    return std::string(WEFT_E2E_TESTDATA) + "/" + file;
  }
  // A capture of TCP on node0's link to the fabric (every cross-node byte of node0's pods).
  absl::StatusOr<testbed::Capture> CaptureFabric(const std::string& name) {
    return testbed::StartCapture(s_.nodes[0].netns, "eth0", tmp_.path() + "/" + name, "tcp");
  }
  double Sum(const std::string& promql) {
    auto v = prom_->Sum(promql);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  }
  // Waits until Prometheus has scraped a value of `promql` that `pred` accepts.
  void ExpectPromValue(const std::string& promql, const std::function<bool(double)>& pred) {
    auto v = prom_->WaitForValue(promql, pred, seconds(10));
    EXPECT_TRUE(v.ok()) << v.status();
  }
  double Denials(const std::string& reason = "") {
    return Sum(reason.empty() ? "sum(weft_policy_denials_total)"
                              : "sum(weft_policy_denials_total{reason=\"" + reason + "\"})");
  }
  const PodState& Pod(const std::string& ref) { return pods_.at(ref); }
  // Weft's capture (its WEFT_INPOD_* chains or a REDIRECT) in a pod's namespace; the drain rule
  // unenrolment leaves (WEFT_INPOD_DRAIN, redirects nothing) is not capture.
  bool HasCaptureRules(const std::string& pod) {
    auto rules = testbed::Exec(Pod(pod).netns, {"iptables-save"});
    EXPECT_TRUE(rules.ok()) << rules.status();
    return !rules.ok() || rules->find("WEFT_INPOD_OUTPUT") != std::string::npos ||
           rules->find("WEFT_INPOD_PREROUTING") != std::string::npos ||
           rules->find("REDIRECT") != std::string::npos;
  }
  // ztunnel's in-pod listening sockets (15001 outbound, 15006 inbound plain, 15008 HBONE) in
  // a pod's namespace, one `ss` line each: 6 while enrolled (IPv4 + IPv6), none otherwise.
  std::string ZtunnelListeners(const std::string& pod) {
    auto ss = testbed::Exec(Pod(pod).netns, {"ss", "-Hltn",
                                             "( sport = :15001 or sport = :15006 "
                                             "or sport = :15008 )"});
    EXPECT_TRUE(ss.ok()) << ss.status();
    return ss.ok() ? *ss : "";
  }
  static int Lines(const std::string& s) {
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
  }
  // sk_lookup links the node's agent pinned (eBPF mode: one per enrolled pod).
  int SkLookupLinks(int node) {
    int n = 0;
    std::error_code ec;
    std::string dir = testbed::BpfPinRoot(s_.prefix) + "-n" + std::to_string(node) + "/links";
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.path().filename().string().rfind("sk_lookup_", 0) == 0) ++n;
    return n;
  }
  int EnrolledSkLookupLinks() { return SkLookupLinks(0) + SkLookupLinks(1); }
  bool Ebpf() const { return std::string(GetParam()) == "ebpf"; }

  static inline int counter_ = 0;
  weft::testing::TempDir tmp_;
  std::string root_, name_;
  bool up_ok_ = false;
  MeshState s_;
  std::map<std::string, PodState> pods_;
  std::unique_ptr<PrometheusServer> prom_;
  std::vector<std::unique_ptr<HeldConnection>> held_;
};

}  // namespace weft::e2e
