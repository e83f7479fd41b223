#include "bench/bench.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bpf_stats.h"
#include "bench/procfs.h"
#include "bench/stats.h"
#include "bench/traffic.h"
#include "cli/localmesh/local_mesh.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace weft::bench {

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using localmesh::LocalMesh;

constexpr uint16_t kEchoPort = 9000;
constexpr uint16_t kOneShotPort = 9001;  // echo once, then the server closes
constexpr uint16_t kIperfBasePort = 5201;
constexpr int64_t kGoalBytesPerConn = 4096;
// The issue's targets for the same-node meshed (eBPF) pair.
constexpr double kGoalSameNodeThroughputRatio = 0.8;
constexpr double kGoalSameNodeP99Ratio = 1.3;
// The data-plane issue's goal for the cross-node meshed pair.
constexpr double kGoalCrossNodeThroughputRatio = 0.5;

const char* const kAllModes[] = {"bare", "iptables", "ebpf"};
const char* const kFigures[] = {"throughput", "latency", "connect_rate"};

struct PairDef {
  const char* key;
  const char* title;
  const char* server_suffix;
  int server_node;
};
const PairDef kPairs[] = {
    {"same_node", "same-node pair (client and server on node 0)", "local", 0},
    {"cross_node", "cross-node pair (client on node 0, server on node 1)", "remote", 1}};

std::string PodPrefix(const std::string& mode) {
  return mode == "iptables" ? "ipt" : mode;
}
std::string ClientPod(const std::string& mode) {
  return PodPrefix(mode) + "-client";
}
std::string ServerPod(const std::string& mode, const PairDef& pair) {
  return PodPrefix(mode) + "-" + pair.server_suffix;
}

// ------------------------------------------------------------------------------------------
// Flags

std::string ShellQuote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789-_=./:,+@") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string SelfDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

// Directories in PATH that hold an executable `name`, or "".
std::string FindInPath(const std::string& name) {
  const char* path = getenv("PATH");
  std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (absl::string_view d : absl::StrSplit(dirs, ':')) {
    std::string p = absl::StrCat(d, "/", name);
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// ------------------------------------------------------------------------------------------
// Run helpers

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Progress(const std::string& msg) {
  static const double t0 = Now();
  std::fprintf(stderr, "[weft-bench %6.1fs] %s\n", Now() - t0, msg.c_str());
}

std::string UtcNow(const char* fmt) {
  time_t t = time(nullptr);
  tm u{};
  gmtime_r(&t, &u);
  char buf[64];
  strftime(buf, sizeof(buf), fmt, &u);
  return buf;
}

// Runs f() on the calling thread inside netns `fd` and returns what it returned.
template <typename T, typename F>
absl::StatusOr<T> InNetns(int fd, F f) {
  absl::StatusOr<T> out = absl::InternalError("not run");
  WEFT_RETURN_IF_ERROR(RunInNetns(fd, [&] {
    out = f();
    return absl::OkStatus();
  }));
  return out;
}

// One SCHED_IDLE thread per CPU, pinned, spinning until destroyed.
class IdleSpinners {
 public:
  absl::Status Start() {
    // Only on the CPUs this process may use (see --cpus).
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
      return absl::InternalError(absl::StrCat("sched_getaffinity: ", std::strerror(errno)));
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
      if (!CPU_ISSET(cpu, &allowed)) continue;
      threads_.emplace_back([this, cpu] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        sched_param sp{};
        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0) {
          failed_ = true;
          return;
        }
        while (!done_.load(std::memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        }
      });
    }
    std::this_thread::sleep_for(50ms);
    if (failed_.load()) {
      Stop();
      return absl::InternalError("cannot make a thread SCHED_IDLE");
    }
    return absl::OkStatus();
  }
  int count() const {
    return static_cast<int>(threads_.size());
  }
  void Stop() {
    done_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  ~IdleSpinners() {
    Stop();
  }

 private:
  std::vector<std::thread> threads_;
  std::atomic<bool> done_{false}, failed_{false};
};

// Removes the work dir (certs with private keys, logs) at the end unless asked to keep it.
struct WorkDir {
  std::string path;
  bool keep = false;
  ~WorkDir() {
    if (path.empty()) return;
    if (keep) {
      std::fprintf(stderr, "[weft-bench] work dir (logs, certs) kept in %s\n", path.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Sums utime+stime of processes; an empty list is 0.
absl::StatusOr<double> CpuOf(const std::vector<pid_t>& pids, const char* what) {
  double sum = 0;
  for (pid_t pid : pids) {
    auto s = CpuSeconds(pid);
    if (!s.ok())
      return absl::UnavailableError(
          absl::StrCat(what, " (pid ", pid, ") is gone: ", s.status().message()));
    sum += *s;
  }
  return sum;
}

// The pid of the process running `exe` inside the network namespace at `netns_path`, or -1.
pid_t FindProcessInNetns(const std::string& exe, const std::string& netns_path) {
  struct stat want {};
  if (stat(netns_path.c_str(), &want) != 0) return -1;
  std::error_code ec;
  auto want_exe = std::filesystem::weakly_canonical(exe, ec);
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(e.path().filename().string(), &pid)) continue;
    std::error_code ec2;
    auto self = std::filesystem::read_symlink(e.path() / "exe", ec2);
    if (ec2 || self != want_exe) continue;
    struct stat ns {};
    if (stat((e.path() / "ns/net").c_str(), &ns) == 0 && ns.st_ino == want.st_ino &&
        ns.st_dev == want.st_dev)
      return pid;
  }
  return -1;
}

// The last line of `text` that parses as a JSON object.
absl::StatusOr<json> LastJsonLine(const std::string& text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (it->empty() || it->front() != '{') continue;
    json j = json::parse(it->begin(), it->end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.is_object()) return j;
  }
  return absl::DataLossError("no JSON result in the client's output");
}

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string Tail(const std::string& s, size_t n = 1500) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

class Bench {
 public:
  Bench(const Config& cfg, const std::atomic<bool>& stop, std::string work_dir)
      : cfg_(cfg), stop_(stop), work_dir_(std::move(work_dir)) {}

  absl::StatusOr<json> Run();

 private:
  absl::Status CheckStop() const {
    return stop_.load() ? absl::CancelledError("interrupted (SIGINT/SIGTERM); cleaned up")
                        : absl::OkStatus();
  }
  bool HasMode(const std::string& mode) const {
    return std::find(cfg_.modes.begin(), cfg_.modes.end(), mode) != cfg_.modes.end();
  }
  LocalMesh& MeshOf(const std::string& mode) const {
    return mode == "ebpf" ? *ebpf_mesh_ : *ipt_mesh_;
  }
  absl::Status StartMeshes();
  absl::Status TunePodSysctls(const std::string& pod);
  absl::Status WaitReachable(const std::string& mode, const PairDef& pair);
  // Runs argv in the pod (its netns and cgroup) to completion and returns its output (stdout
  // and stderr). Stops it after `timeout` or on SIGINT.
  absl::StatusOr<std::string> RunInPod(const std::string& mode, const std::string& pod,
                                       const std::vector<std::string>& argv,
                                       const std::string& log_name, std::chrono::seconds timeout);
  struct Cpu {
    double ztunnel = 0, agent = 0;
  };
  absl::StatusOr<Cpu> CpuNow(const std::string& mode) const;
  // istio_tcp_connections_opened_total with source_workload = the mode's client pod, on the
  // client's node (node 0); zeros for bare.
  struct Opened {
    double source = 0;     // reporter="source": one per client connection
    double same_node = 0;  // reporter="source", connection_security_policy="same_node"
  };
  absl::StatusOr<Opened> OpenedCount(const std::string& mode) const;
  // Fails unless the mesh counted at least `expected` connections since `before`: a meshed
  // figure taken on traffic that bypassed ztunnel would silently be a bare figure.
  // Returns the run's counts (after - before) for results.json.
  absl::StatusOr<json> VerifyCaptured(const std::string& mode, const PairDef& pair,
                                      const Opened& before, double expected,
                                      const std::string& figure) const;
  absl::StatusOr<json> Measure(const std::string& figure, const std::string& mode,
                               const PairDef& pair);
  absl::StatusOr<json> Throughput(const std::string& mode, const PairDef& pair);
  absl::StatusOr<json> Latency(const std::string& mode, const PairDef& pair);
  absl::StatusOr<json> ConnectRate(const std::string& mode, const PairDef& pair);
  absl::StatusOr<json> Memory(const std::string& mode);
  absl::StatusOr<json> BpfSection();
  SockAddr ServerAddr(const std::string& mode, const PairDef& pair, uint16_t port) const {
    return SockAddr{*MeshOf(mode).PodIp(ServerPod(mode, pair)), port};
  }

  const Config& cfg_;
  const std::atomic<bool>& stop_;
  std::string work_dir_;
  std::string self_exe_;
  std::unique_ptr<LocalMesh> ipt_mesh_, ebpf_mesh_;
  std::map<std::string, std::vector<pid_t>> ztunnel_pids_, agent_pids_;  // mesh role -> pids
  std::map<std::string, UniqueFd> netns_;                                // pod -> netns handle
  std::map<std::string, std::unique_ptr<EchoServer>> echo_;              // server pod -> server
  std::map<std::string, std::unique_ptr<EchoServer>> oneshot_;  // server pod -> close_after_echo
  int iperf_runs_ = 0;
  int child_runs_ = 0;
  // BPF run-time accounting (eBPF mode): the programs at the start, and per figure the sums of
  // the per-run deltas of every eBPF-mode run.
  std::map<uint32_t, BpfProgStats> bpf_start_;
  std::map<std::string, std::map<uint32_t, std::pair<uint64_t, uint64_t>>> bpf_by_figure_;
  std::string bpf_error_;
};

absl::Status Bench::StartMeshes() {
  auto pod = [](std::string name, int node, bool mesh, std::string sa) {
    localmesh::MeshPod p;
    p.name = std::move(name);
    p.ns = mesh ? "bench" : "bench-bare";
    p.service_account = std::move(sa);
    p.node = node;
    p.mesh = mesh;
    return p;
  };
  auto options = [&](const std::string& role, const std::string& capture,
                     const std::vector<std::string>& modes) {
    localmesh::Options o;
    o.role = role;
    o.nodes = 2;
    for (const auto& mode : modes) {
      bool mesh = mode != "bare";
      o.pods.push_back(pod(ClientPod(mode), 0, mesh, mesh ? "client" : "bare"));
      for (const auto& pair : kPairs)
        o.pods.push_back(
            pod(ServerPod(mode, pair), pair.server_node, mesh, mesh ? "server" : "bare"));
    }
    o.ztunnel_bin = cfg_.ztunnel_bin;
    o.agent_bin = cfg_.agent_bin;
    o.work_dir = work_dir_ + "/" + role;
    o.capture = capture;
    o.ztunnel_workers = cfg_.ztunnel_workers;
    o.log_level = cfg_.log_level;
    o.access_log = false;
    o.start_mesh = true;
    return o;
  };
  // Both meshes stay up for the whole run, so every mode sees the same background (two
  // ztunnels and two agents per mesh).
  std::vector<std::string> ipt_modes;
  for (const char* m : {"bare", "iptables"})
    if (HasMode(m)) ipt_modes.push_back(m);
  if (!ipt_modes.empty()) {
    Progress(absl::StrCat("starting mesh 'bench' (capture iptables; pods for ",
                          absl::StrJoin(ipt_modes, " + "), "): 2 nodes, ztunnel (",
                          cfg_.ztunnel_workers, " workers) + weft-agent per node"));
    WEFT_ASSIGN_OR_RETURN(ipt_mesh_, LocalMesh::Start(options("bench", "iptables", ipt_modes)));
  }
  WEFT_RETURN_IF_ERROR(CheckStop());
  if (HasMode("ebpf")) {
    Progress("starting mesh 'benchebpf' (capture ebpf): 2 nodes, ztunnel + weft-agent per node");
    auto m = LocalMesh::Start(options("benchebpf", "ebpf", {"ebpf"}));
    if (!m.ok())
      return absl::Status(
          m.status().code(),
          absl::StrCat("the eBPF-capture mesh did not start: ", m.status().message(),
                       " (does weft-agent support --capture ebpf? `weft-agent --help`; to "
                       "measure without it: --modes bare,iptables)"));
    ebpf_mesh_ = std::move(*m);
  }
  for (auto* mesh : {ipt_mesh_.get(), ebpf_mesh_.get()}) {
    if (!mesh) continue;
    const std::string role = mesh->options().role;
    for (int n = 0; n < 2; n++) {
      ztunnel_pids_[role].push_back(mesh->ztunnel_pid(n));
      WEFT_ASSIGN_OR_RETURN(auto ns, mesh->testbed().NodeNetns(n));
      pid_t agent = FindProcessInNetns(cfg_.agent_bin, testbed::NetnsPath(ns));
      if (agent > 0) agent_pids_[role].push_back(agent);
    }
    for (const auto& p : mesh->options().pods) {
      WEFT_ASSIGN_OR_RETURN(netns_[p.name], mesh->PodNetns(p.name));
      WEFT_RETURN_IF_ERROR(TunePodSysctls(p.name));
    }
  }
  return absl::OkStatus();
}

absl::Status Bench::TunePodSysctls(const std::string& pod) {
  // The connect-rate runs open tens of thousands of short connections per pod: widen the
  // ephemeral port range and let TIME_WAIT ports be reused, in the pod's own netns only. The
  // range stays above every port a server listens on (iperf3, echo, ztunnel's 150xx), so a
  // connection left in TIME_WAIT cannot block a later listener.
  const std::pair<const char*, const char*> kSysctls[] = {
      {"/proc/sys/net/ipv4/ip_local_port_range", "16384 65000"},
      {"/proc/sys/net/ipv4/tcp_tw_reuse", "1"}};
  return RunInNetns(netns_.at(pod).get(), [&]() -> absl::Status {
    for (const auto& [path, value] : kSysctls) {
      std::ofstream f(path);
      f << value;
      f.close();
      if (!f) return absl::InternalError(absl::StrCat("cannot write ", path, " in pod ", pod));
    }
    return absl::OkStatus();
  });
}

absl::Status Bench::WaitReachable(const std::string& mode, const PairDef& pair) {
  // LocalMesh waited for enrolment, but ztunnel may still be loading the peer's workload.
  absl::Status st;
  for (auto deadline = Now() + 15; Now() < deadline;) {
    WEFT_RETURN_IF_ERROR(CheckStop());
    auto fd = MeshOf(mode).Dial(ClientPod(mode), ServerAddr(mode, pair, kEchoPort), 2s);
    st = fd.ok() ? ProbeOn(fd->get()) : fd.status();
    if (st.ok()) return absl::OkStatus();
    std::this_thread::sleep_for(200ms);
  }
  return absl::UnavailableError(
      absl::StrCat(ClientPod(mode), " cannot reach ", ServerPod(mode, pair), ": ", st.message()));
}

absl::StatusOr<std::string> Bench::RunInPod(const std::string& mode, const std::string& pod,
                                            const std::vector<std::string>& argv,
                                            const std::string& log_name,
                                            std::chrono::seconds timeout) {
  const std::string log =
      absl::StrCat(work_dir_, "/logs/", log_name, "-", pod, "-", ++child_runs_, ".log");
  WEFT_ASSIGN_OR_RETURN(auto proc, MeshOf(mode).SpawnInPod(pod, argv, log));
  const double deadline = Now() + static_cast<double>(timeout.count());
  while (true) {
    auto st = proc.Wait(50ms);
    if (st.ok()) {
      std::string out = ReadText(log);
      if (*st != 0)
        return absl::UnavailableError(
            absl::StrCat(argv[0] == self_exe_ ? "weft-bench client" : argv[0], " in pod ", pod,
                         " exited with status ", *st, ": ", Tail(out)));
      return out;
    }
    if (stop_.load()) {
      proc.Terminate(1s);
      return CheckStop();
    }
    if (Now() > deadline) {
      proc.Terminate(1s);
      return absl::DeadlineExceededError(absl::StrCat(argv[0], " in pod ", pod,
                                                      " did not finish within ", timeout.count(),
                                                      " s; output: ", Tail(ReadText(log))));
    }
  }
}

absl::StatusOr<Bench::Cpu> Bench::CpuNow(const std::string& mode) const {
  const std::string role = MeshOf(mode).options().role;
  Cpu c;
  auto z = CpuOf(ztunnel_pids_.at(role), "a ztunnel");
  if (!z.ok()) {
    std::string logs;
    for (int n = 0; n < 2; n++)
      logs += absl::StrCat("\nztunnel ", n, " log:\n", Tail(MeshOf(mode).ZtunnelLog(n)));
    return absl::UnavailableError(absl::StrCat(z.status().message(), logs));
  }
  c.ztunnel = *z;
  auto it = agent_pids_.find(role);
  if (it != agent_pids_.end()) {
    WEFT_ASSIGN_OR_RETURN(c.agent, CpuOf(it->second, "a weft-agent"));
  }
  return c;
}

absl::StatusOr<Bench::Opened> Bench::OpenedCount(const std::string& mode) const {
  Opened o;
  if (mode == "bare") return o;
  WEFT_ASSIGN_OR_RETURN(std::string text, MeshOf(mode).Metrics(0));
  const char* kName = "istio_tcp_connections_opened_total";
  const std::string client = ClientPod(mode);
  o.source = MetricSum(text, kName, {{"source_workload", client}, {"reporter", "source"}});
  o.same_node = MetricSum(text, kName,
                          {{"source_workload", client},
                           {"reporter", "source"},
                           {"connection_security_policy", "same_node"}});
  return o;
}

absl::StatusOr<json> Bench::VerifyCaptured(const std::string& mode, const PairDef& pair,
                                           const Opened& before, double expected,
                                           const std::string& figure) const {
  if (mode == "bare") return json();
  WEFT_ASSIGN_OR_RETURN(Opened after, OpenedCount(mode));
  // Only the source-side record proves the client's outbound connect was captured: with the
  // server on node 0, inbound capture alone would also produce a (destination-side) record.
  const double got = after.source - before.source;
  if (got < expected)
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s %s run (%s): the client's traffic did not go through the mesh: ztunnel on node 0 "
        "counted %.0f new outbound connections from %s (istio_tcp_connections_opened_total, "
        "reporter=source), expected at "
        "least %.0f. The %s capture did not catch the client's sockets, so this would have "
        "measured the bare path; not reporting it.",
        mode, figure, pair.key, got, ClientPod(mode), expected, mode));
  return json{{"opened_source", after.source - before.source},
              {"opened_same_node_fast_path", after.same_node - before.same_node}};
}

absl::StatusOr<json> Bench::Measure(const std::string& figure, const std::string& mode,
                                    const PairDef& pair) {
  const bool track_bpf = mode == "ebpf" && bpf_error_.empty();
  std::map<uint32_t, BpfProgStats> before;
  if (track_bpf) {
    auto b = ListBpfPrograms("weft_");
    if (b.ok())
      before = std::move(*b);
    else
      bpf_error_ = std::string(b.status().message());
  }
  WEFT_ASSIGN_OR_RETURN(Cpu cpu0, CpuNow(mode));
  absl::StatusOr<json> r = figure == "throughput" ? Throughput(mode, pair)
                           : figure == "latency"  ? Latency(mode, pair)
                                                  : ConnectRate(mode, pair);
  if (!r.ok()) return r.status();
  WEFT_ASSIGN_OR_RETURN(Cpu cpu1, CpuNow(mode));
  (*r)["ztunnel_cpu_s"] = cpu1.ztunnel - cpu0.ztunnel;
  (*r)["agent_cpu_s"] = cpu1.agent - cpu0.agent;
  if (track_bpf && bpf_error_.empty()) {
    auto after = ListBpfPrograms("weft_");
    if (!after.ok()) {
      bpf_error_ = std::string(after.status().message());
    } else {
      for (const auto& [id, a] : *after) {
        auto b = before.find(id);
        uint64_t t0 = b == before.end() ? 0 : b->second.run_time_ns;
        uint64_t c0 = b == before.end() ? 0 : b->second.run_cnt;
        auto& acc = bpf_by_figure_[figure][id];
        acc.first += a.run_cnt - c0;
        acc.second += a.run_time_ns - t0;
      }
    }
  }
  return r;
}

absl::StatusOr<json> Bench::Throughput(const std::string& mode, const PairDef& pair) {
  const std::string server = ServerPod(mode, pair);
  const std::string server_ns = *MeshOf(mode).testbed().PodNetns(server);
  const std::string port = std::to_string(kIperfBasePort + iperf_runs_++);
  const std::string log = absl::StrCat(work_dir_, "/logs/iperf3-s-", server, "-", port, ".log");
  WEFT_ASSIGN_OR_RETURN(auto srv,
                        MeshOf(mode).SpawnInPod(server, {"iperf3", "-s", "-1", "-p", port}, log));
  // Wait for the listener with ss rather than a probe connection: iperf3 -1 would take a probe
  // as its one test.
  for (auto deadline = Now() + 5;;) {
    auto out = testbed::Exec(server_ns, {"ss", "-Hltn", "sport = :" + port});
    if (out.ok() && !out->empty()) break;
    if (!srv.Alive() || Now() > deadline)
      return absl::UnavailableError(
          absl::StrCat("iperf3 server in ", server, " did not start listening; see ", log));
    std::this_thread::sleep_for(20ms);
  }
  WEFT_ASSIGN_OR_RETURN(Opened opened0, OpenedCount(mode));
  auto out = RunInPod(mode, ClientPod(mode),
                      {"iperf3", "-c", ServerAddr(mode, pair, 0).ip.ToString(), "-p", port, "-t",
                       std::to_string(cfg_.iperf_seconds), "-J"},
                      "iperf3-c", std::chrono::seconds(cfg_.iperf_seconds + 30));
  if (!srv.Wait(5s).ok()) srv.Terminate(1s);
  if (!out.ok())
    return absl::Status(out.status().code(), absl::StrCat("iperf3 ", mode, " ", pair.key,
                                                          " run failed: ", out.status().message(),
                                                          " (server log: ", log, ")"));
  // The log holds stderr too; iperf3 -J's document is the object starting on its own line.
  size_t start = out->compare(0, 1, "{") == 0 ? 0 : out->find("\n{");
  if (start != std::string::npos && start > 0) start++;
  json j = start == std::string::npos
               ? json(nullptr)
               : json::parse(out->begin() + static_cast<std::ptrdiff_t>(start), out->end(), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.contains("error") || !j.contains("end"))
    return absl::DataLossError(absl::StrCat("iperf3 ", mode, " ", pair.key, " gave no result: ",
                                            j.is_object() ? j.value("error", *out) : Tail(*out)));
  // iperf3 opens a control and a data connection.
  WEFT_ASSIGN_OR_RETURN(json counted, VerifyCaptured(mode, pair, opened0, 2, "throughput"));
  const json& end = j["end"];
  json r = {{"bits_per_second", end["sum_received"].value("bits_per_second", 0.0)},
            {"bytes", end["sum_received"].value("bytes", 0.0)},
            {"seconds", end["sum_received"].value("seconds", 0.0)},
            {"retransmits", end["sum_sent"].value("retransmits", 0)}};
  if (!counted.is_null()) r["mesh_counted"] = counted;
  if (r["bits_per_second"].get<double>() <= 0)
    return absl::DataLossError(absl::StrCat("iperf3 ", mode, " measured no throughput"));
  return r;
}

absl::StatusOr<json> Bench::Latency(const std::string& mode, const PairDef& pair) {
  const int64_t warmup = std::max<int64_t>(100, cfg_.round_trips / 20);
  WEFT_ASSIGN_OR_RETURN(Opened opened0, OpenedCount(mode));
  WEFT_ASSIGN_OR_RETURN(
      std::string out,
      RunInPod(
          mode, ClientPod(mode),
          {self_exe_, "client", "--kind", "pingpong", "--to",
           ServerAddr(mode, pair, kEchoPort).ToString(), "--size",
           std::to_string(cfg_.message_size), "--warmup", std::to_string(warmup), "--round-trips",
           std::to_string(cfg_.round_trips), "--max-seconds", std::to_string(cfg_.latency_seconds)},
          "pingpong", std::chrono::seconds(cfg_.latency_seconds + 30)));
  WEFT_ASSIGN_OR_RETURN(json r, LastJsonLine(out));
  WEFT_ASSIGN_OR_RETURN(json counted, VerifyCaptured(mode, pair, opened0, 1, "latency"));
  if (!counted.is_null()) r["mesh_counted"] = counted;
  return r;
}

absl::StatusOr<json> Bench::ConnectRate(const std::string& mode, const PairDef& pair) {
  WEFT_ASSIGN_OR_RETURN(Opened opened0, OpenedCount(mode));
  WEFT_ASSIGN_OR_RETURN(
      std::string out,
      RunInPod(mode, ClientPod(mode),
               {self_exe_, "client", "--kind", "connect", "--to",
                ServerAddr(mode, pair, kOneShotPort).ToString(), "--seconds",
                std::to_string(cfg_.connect_seconds), "--max", std::to_string(cfg_.connect_max)},
               "connect", std::chrono::seconds(cfg_.connect_seconds + 60)));
  WEFT_ASSIGN_OR_RETURN(json r, LastJsonLine(out));
  WEFT_ASSIGN_OR_RETURN(json counted, VerifyCaptured(mode, pair, opened0,
                                                     r.value("connections", 0.0), "connect_rate"));
  if (!counted.is_null()) r["mesh_counted"] = counted;
  return r;
}

absl::StatusOr<json> Bench::Memory(const std::string& mode) {
  const PairDef& pair = kPairs[1];  // cross-node: both ztunnels carry the connections
  const int n = cfg_.hold_connections;
  const std::string server = ServerPod(mode, pair);
  EchoServer& echo = *echo_.at(server);
  LocalMesh& mesh = MeshOf(mode);
  const std::string role = mesh.options().role;
  auto rss = [&](int node) -> absl::StatusOr<int64_t> {
    auto r = VmRssBytes(ztunnel_pids_.at(role).at(node));
    if (!r.ok())
      return absl::UnavailableError(absl::StrCat("ztunnel on node ", node, " is gone (",
                                                 r.status().message(), "); log:\n",
                                                 Tail(mesh.ZtunnelLog(node))));
    return r;
  };
  auto wait_open = [&](auto pred) {
    for (auto deadline = Now() + 10; !pred(echo.open_connections()) && Now() < deadline;)
      std::this_thread::sleep_for(20ms);
  };
  wait_open([](int64_t open) { return open == 0; });
  std::this_thread::sleep_for(1s);  // let the probe's teardown settle
  int64_t idle[2], held[2], after[2];
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(idle[i], rss(i));
  }
  Progress(absl::StrCat("memory: opening ", n, " tunnelled connections ", ClientPod(mode), " -> ",
                        server, " (", mode, " capture)"));
  const std::string log = absl::StrCat(work_dir_, "/logs/idle-", ClientPod(mode), ".log");
  WEFT_ASSIGN_OR_RETURN(auto holder, mesh.SpawnInPod(ClientPod(mode),
                                                     {self_exe_, "client", "--kind", "idle", "--to",
                                                      ServerAddr(mode, pair, kEchoPort).ToString(),
                                                      "--count", std::to_string(n)},
                                                     log));
  for (auto deadline = Now() + 60;;) {
    if (LastJsonLine(ReadText(log)).ok()) break;
    WEFT_RETURN_IF_ERROR(CheckStop());
    if (!holder.Alive() || Now() > deadline)
      return absl::UnavailableError(absl::StrCat("the idle-connection client did not open its ", n,
                                                 " connections: ", Tail(ReadText(log))));
    std::this_thread::sleep_for(50ms);
  }
  wait_open([&](int64_t open) { return open >= n; });
  const int64_t server_side_open = echo.open_connections();
  std::this_thread::sleep_for(1s);
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(held[i], rss(i));
  }
  holder.Terminate(5s);
  wait_open([](int64_t open) { return open == 0; });
  std::this_thread::sleep_for(1s);
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(after[i], rss(i));
  }
  if (server_side_open < n)
    return absl::InternalError(
        absl::StrCat("only ", server_side_open, " of ", n, " connections reached ", server));

  json nodes = json::array();
  int64_t total_delta = 0;
  for (int i = 0; i < 2; i++) {
    int64_t per_conn = (held[i] - idle[i]) / n;
    total_delta += held[i] - idle[i];
    nodes.push_back({{"node", i},
                     {"side", i == 0 ? "client side, outbound" : "server side, inbound"},
                     {"idle_rss_bytes", idle[i]},
                     {"rss_with_connections_bytes", held[i]},
                     {"rss_after_close_bytes", after[i]},
                     {"per_connection_bytes", per_conn},
                     {"goal_met", per_conn <= kGoalBytesPerConn}});
  }
  return json{{"mode", mode},
              {"client", ClientPod(mode)},
              {"server", server},
              {"connections", n},
              {"server_side_open", server_side_open},
              {"nodes", nodes},
              {"both_nodes_per_connection_bytes", total_delta / n},
              {"goal_max_per_connection_bytes_per_ztunnel", kGoalBytesPerConn}};
}

json Medians(const json& runs, const std::vector<std::string>& keys) {
  json m;
  for (const auto& k : keys) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.at(k).get<double>());
    m[k] = Median(v);
  }
  return m;
}

absl::StatusOr<json> Bench::BpfSection() {
  json s;
  s["stats_sysctl"] = "kernel.bpf_stats_enabled=1 during the run, previous value restored";
  if (!bpf_error_.empty()) {
    s["error"] = bpf_error_;
    return s;
  }
  auto end = ListBpfPrograms("weft_");
  if (!end.ok()) {
    s["error"] = std::string(end.status().message());
    return s;
  }
  // The programs this run's eBPF agents attached, from the links they pinned.
  std::set<uint32_t> ours;
  if (ebpf_mesh_) {
    for (int n = 0; n < 2; n++) {
      auto ids = ProgIdsOfPinnedLinks(absl::StrCat(ebpf_mesh_->BpfPinDir(n), "/links"));
      ours.insert(ids.begin(), ids.end());
    }
  }
  json progs = json::array();
  for (const auto& [id, p] : *end) {
    auto b = bpf_start_.find(id);
    uint64_t cnt = p.run_cnt - (b == bpf_start_.end() ? 0 : b->second.run_cnt);
    uint64_t ns = p.run_time_ns - (b == bpf_start_.end() ? 0 : b->second.run_time_ns);
    json figs;
    for (const char* f : kFigures) {
      auto fit = bpf_by_figure_.find(f);
      uint64_t fc = 0, fns = 0;
      if (fit != bpf_by_figure_.end()) {
        auto pit = fit->second.find(id);
        if (pit != fit->second.end()) std::tie(fc, fns) = pit->second;
      }
      figs[f] = {{"runs", fc},
                 {"run_time_ns", fns},
                 {"ns_per_run", fc ? static_cast<double>(fns) / static_cast<double>(fc) : 0.0}};
    }
    progs.push_back({{"id", id},
                     {"name", p.name},
                     {"type", p.type},
                     {"attached_by_this_run", ours.count(id) > 0},
                     {"runs", cnt},
                     {"run_time_ns", ns},
                     {"ns_per_run", cnt ? static_cast<double>(ns) / static_cast<double>(cnt) : 0.0},
                     {"ebpf_mode_runs_by_figure", figs}});
  }
  s["programs"] = progs;
  s["pinned_link_programs_found"] = ours.size();
  return s;
}

absl::StatusOr<json> Bench::Run() {
  self_exe_ = std::filesystem::read_symlink("/proc/self/exe").string();
  mkdir((work_dir_ + "/logs").c_str(), 0755);
  WEFT_RETURN_IF_ERROR(StartMeshes());
  WEFT_RETURN_IF_ERROR(CheckStop());
  for (const auto& mode : cfg_.modes) {
    for (const auto& pair : kPairs) {
      const std::string server = ServerPod(mode, pair);
      WEFT_ASSIGN_OR_RETURN(echo_[server], EchoServer::Start(netns_.at(server).get(), kEchoPort));
      WEFT_ASSIGN_OR_RETURN(oneshot_[server],
                            EchoServer::Start(netns_.at(server).get(), kOneShotPort, true));
      WEFT_RETURN_IF_ERROR(WaitReachable(mode, pair));
    }
  }
  Progress(absl::StrCat("every pair answers (modes ", absl::StrJoin(cfg_.modes, ", "), ")"));

  json results;
  const std::string mem_mode = HasMode("iptables") ? "iptables" : HasMode("ebpf") ? "ebpf" : "";
  if (!mem_mode.empty()) {
    WEFT_ASSIGN_OR_RETURN(results["ztunnel_memory"], Memory(mem_mode));
    WEFT_RETURN_IF_ERROR(CheckStop());
  }

  if (HasMode("ebpf")) {
    auto s = ListBpfPrograms("weft_");
    if (s.ok())
      bpf_start_ = std::move(*s);
    else
      bpf_error_ = std::string(s.status().message());
  }
  // runs[pair][figure][mode] = [per-round results]
  json runs;
  for (int round = 1; round <= cfg_.rounds; round++) {
    for (const char* figure : kFigures) {
      for (const auto& pair : kPairs) {
        for (const auto& mode : cfg_.modes) {
          WEFT_ASSIGN_OR_RETURN(json r, Measure(figure, mode, pair));
          std::string line;
          if (std::string(figure) == "throughput")
            line = absl::StrFormat("%.2f Gbit/s", r["bits_per_second"].get<double>() / 1e9);
          else if (std::string(figure) == "latency")
            line = absl::StrFormat("p50 %.1f us, p99 %.1f us", r["p50_us"].get<double>(),
                                   r["p99_us"].get<double>());
          else
            line = absl::StrFormat("%.0f conn/s", r["per_second"].get<double>());
          Progress(absl::StrCat("round ", round, "/", cfg_.rounds, " ", figure, " ", pair.key, " ",
                                mode, ": ", line));
          runs[pair.key][figure][mode].push_back(r);
          WEFT_RETURN_IF_ERROR(CheckStop());
        }
      }
    }
  }
  WEFT_ASSIGN_OR_RETURN(results["bpf_programs"], BpfSection());

  if (!mem_mode.empty()) {
    const std::string role = MeshOf(mem_mode).options().role;
    json after = json::array();
    for (int i = 0; i < 2; i++) {
      WEFT_ASSIGN_OR_RETURN(int64_t rss, VmRssBytes(ztunnel_pids_.at(role).at(i)));
      after.push_back(rss);
    }
    results["ztunnel_memory"]["rss_after_all_runs_bytes"] = after;
    // ztunnel gives idle buffer blocks back after two 5 s trim ticks without use.
    Progress("memory: waiting 12 s idle, then RSS again");
    for (int i = 0; i < 120 && !stop_.load(); i++) std::this_thread::sleep_for(100ms);
    WEFT_RETURN_IF_ERROR(CheckStop());
    json idle_after = json::array();
    for (int i = 0; i < 2; i++) {
      WEFT_ASSIGN_OR_RETURN(int64_t rss, VmRssBytes(ztunnel_pids_.at(role).at(i)));
      idle_after.push_back(rss);
    }
    results["ztunnel_memory"]["rss_idle_after_runs_bytes"] = idle_after;
  }

  const std::map<std::string, std::vector<std::string>> keys = {
      {"throughput", {"bits_per_second", "retransmits", "ztunnel_cpu_s", "agent_cpu_s"}},
      {"latency",
       {"p50_us", "p90_us", "p99_us", "p999_us", "mean_us", "ztunnel_cpu_s", "agent_cpu_s"}},
      {"connect_rate", {"per_second", "ztunnel_cpu_s", "agent_cpu_s"}}};
  json targets = json::array();
  const double tol = cfg_.tolerance;
  for (const auto& pair : kPairs) {
    json p;
    p["title"] = pair.title;
    for (const auto& mode : cfg_.modes)
      p["pods"][mode] = {{"client", ClientPod(mode)}, {"server", ServerPod(mode, pair)}};
    for (const char* figure : kFigures) {
      json s;
      for (const auto& mode : cfg_.modes) {
        const json& rs = runs[pair.key][figure][mode];
        s[mode] = {{"runs", rs}, {"median", Medians(rs, keys.at(figure))}};
      }
      for (const auto& mode : cfg_.modes) {
        for (const auto& k : keys.at(figure)) {
          if (absl::EndsWith(k, "_cpu_s")) continue;
          if (HasMode("bare") && mode != "bare")
            s["ratio_over_bare"][mode][k] =
                Ratio(s[mode]["median"][k].get<double>(), s["bare"]["median"][k].get<double>());
        }
      }
      if (HasMode("ebpf") && HasMode("iptables")) {
        for (const auto& k : keys.at(figure)) {
          if (absl::EndsWith(k, "_cpu_s")) continue;
          s["ratio_ebpf_over_iptables"][k] =
              Ratio(s["ebpf"]["median"][k].get<double>(), s["iptables"]["median"][k].get<double>());
        }
      }
      p[figure] = s;
    }
    auto target = [&](std::string what, double value, std::string op, double limit) {
      bool met = op == ">=" ? value >= limit : value <= limit;
      targets.push_back({{"pair", pair.key},
                         {"target", std::move(what)},
                         {"value", value},
                         {"op", op},
                         {"limit", limit},
                         {"met", met}});
    };
    if (HasMode("bare") && HasMode("ebpf")) {
      if (std::string(pair.key) == "same_node") {
        target("eBPF-mode throughput / bare",
               p["throughput"]["ratio_over_bare"]["ebpf"]["bits_per_second"],
               ">=", kGoalSameNodeThroughputRatio);
        target("eBPF-mode p99 latency / bare", p["latency"]["ratio_over_bare"]["ebpf"]["p99_us"],
               "<=", kGoalSameNodeP99Ratio);
      }
    }
    if (HasMode("bare") && std::string(pair.key) == "cross_node") {
      for (const char* mode : {"iptables", "ebpf"}) {
        if (!HasMode(mode)) continue;
        target(absl::StrCat(mode, "-mode throughput / bare (data-plane issue goal)"),
               p["throughput"]["ratio_over_bare"][mode]["bits_per_second"],
               ">=", kGoalCrossNodeThroughputRatio);
      }
    }
    if (HasMode("ebpf") && HasMode("iptables")) {
      const json& r = p["throughput"]["ratio_ebpf_over_iptables"];
      target("throughput eBPF / iptables", r["bits_per_second"], ">=", 1 - tol);
      for (const char* k : {"p50_us", "p90_us", "p99_us"})
        target(absl::StrCat("latency ", std::string(k).substr(0, 3), " eBPF / iptables"),
               p["latency"]["ratio_ebpf_over_iptables"][k], "<=", 1 + tol);
      target("connection rate eBPF / iptables",
             p["connect_rate"]["ratio_ebpf_over_iptables"]["per_second"], ">=", 1 - tol);
    }
    results["pairs"][pair.key] = p;
  }
  results["targets"] = targets;
  json procs;
  for (const auto& [role, pids] : ztunnel_pids_) procs[role]["ztunnel_pids"] = pids;
  for (const auto& [role, pids] : agent_pids_) procs[role]["agent_pids"] = pids;
  results["mesh_processes"] = procs;
  results["tolerance"] = tol;
  results["modes"] = cfg_.modes;
  results["modes_not_built"] = {
      {"ebpf+sockmap", "eBPF + sockmap accelerator (sockops + sk_msg redirect): not built"}};
  return results;
}

// ------------------------------------------------------------------------------------------
// Report

std::string Fmt(double v, int decimals) {
  return absl::StrFormat("%.*f", decimals, v);
}
std::string Gbps(double bps) {
  return Fmt(bps / 1e9, 2);
}
std::string MiB(int64_t b) {
  return Fmt(static_cast<double>(b) / (1024.0 * 1024.0), 1);
}
std::string YesNo(bool b) {
  return b ? "**yes**" : "**no**";
}

std::string ModeTitle(const std::string& mode) {
  if (mode == "bare") return "bare";
  if (mode == "iptables") return "iptables";
  if (mode == "ebpf") return "eBPF";
  return mode;
}

}  // namespace

std::string Usage() {
  return R"(usage: weft-bench [flags]
       weft-bench client --kind pingpong|connect|idle --to IP:PORT ...   (spawned by weft-bench)

Data-plane benchmark on two namespace testbeds that run side by side: mesh 'bench' (weft-agent
--capture iptables; it also holds the bare pods, which are not enrolled) and mesh 'benchebpf'
(--capture ebpf). For a same-node pair (client and server on node 0) and a cross-node pair
(client node 0, server node 1) it measures single-stream throughput (iperf3), 1 KiB
request/response latency, connection rate, ztunnel/agent CPU and BPF program run time, modes
interleaved round by round (bare, iptables, ebpf, bare, ...); plus ztunnel memory per idle
tunnelled connection. Clients run as processes in the client pod's netns and cgroup. Needs root.

  --modes LIST          comma-separated subset of bare,iptables,ebpf (default: all three)
  --rounds N            rounds per figure, medians reported (default 3)
  --seconds N           iperf3 duration per run (default 5)
  --round-trips N       measured request/response round trips per run (default 20000)
  --latency-seconds N   upper bound on one latency run (default 20)
  --message-size N      request and response size in bytes (default 1024)
  --connect-seconds N   duration of one connect-rate run (default 5)
  --hold-conns N        idle tunnelled connections for the memory figure (default 1000)
  --tolerance PCT       noise allowed when checking "eBPF at least as fast as iptables"
                        (default 5: eBPF >= 95% of iptables throughput/connect rate, <= 105%
                        of its latency)
  --cpus LIST           pin weft-bench and everything it starts to these CPUs (e.g. 0, 0-1, 0,2;
                        default: all). One CPU makes every wake-up local, which on a VM gives
                        steadier latency figures (cross-vCPU wake-ups make them bimodal)
  --nice N              nice value of weft-bench and every process it starts (default -10, so
                        other jobs on a shared machine disturb the figures less; 0: unchanged)
  --ztunnel-workers N   ztunnel worker threads (default: nproc)
  --log-level L         ztunnel/agent log level: debug|info|warn|error (default warn)
  --ztunnel-bin PATH    default: <build>/ztunnel/app/ztunnel next to this binary's build dir
  --agent-bin PATH      default: <build>/agent/weft-agent
  --out DIR             write DIR/results.json and DIR/report.md (created)
  --keep-work-dir       keep the testbeds' work dir (logs, certs) after the run
  --no-pm-qos           do not hold /dev/cpu_dma_latency at 0 during the run (default: held,
                        so idle-CPU wake-up latency does not swamp the figures)
  --no-spin             do not run the SCHED_IDLE busy loops that keep the vCPUs out of idle
                        (default: one per CPU; waking a halted vCPU costs ~50 µs per hop)
  --quick               3 rounds, 2 s iperf3, 5000 round trips, 2 s connect rate (~2-3 minutes)
  --help
)";
}

absl::StatusOr<Config> ParseArgs(int argc, char** argv) {
  Config c;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> quoted;
  for (int i = 0; i < argc; i++) quoted.push_back(ShellQuote(argv[i]));
  c.command_line = absl::StrJoin(quoted, " ");
  if (const char* inv = getenv("WEFT_BENCH_INVOCATION")) c.invoked_as = inv;
  // --quick sets defaults that explicit flags then override, wherever it appears.
  for (const auto& a : args) {
    if (a == "--quick") {
      c.quick = true;
      c.rounds = 3;
      c.iperf_seconds = 2;
      c.round_trips = 5000;
      c.connect_seconds = 2;
    }
  }
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(a + " needs a value");
      return args[++i];
    };
    auto number = [&](int64_t lo, int64_t hi) -> absl::StatusOr<int64_t> {
      WEFT_ASSIGN_OR_RETURN(std::string v, value());
      int64_t n = 0;
      if (!absl::SimpleAtoi(v, &n) || n < lo || n > hi)
        return absl::InvalidArgumentError(
            absl::StrCat(a, " wants a whole number from ", lo, " to ", hi, ", got '", v, "'"));
      return n;
    };
    if (a == "--help" || a == "-h") {
      c.help = true;
    } else if (a == "--quick") {
    } else if (a == "--no-pm-qos") {
      c.pm_qos = false;
    } else if (a == "--no-spin") {
      c.spin = false;
    } else if (a == "--keep-work-dir") {
      c.keep_work_dir = true;
    } else if (a == "--modes") {
      WEFT_ASSIGN_OR_RETURN(std::string v, value());
      std::set<std::string> want;
      for (absl::string_view m : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        if (m != "bare" && m != "iptables" && m != "ebpf")
          return absl::InvalidArgumentError(absl::StrCat(
              "--modes: unknown mode '", m, "' (modes: bare, iptables, ebpf; the sockmap ",
              "accelerator mode is not built)"));
        want.insert(std::string(m));
      }
      if (want.empty()) return absl::InvalidArgumentError("--modes needs at least one mode");
      c.modes.clear();
      for (const char* m : kAllModes)  // fixed interleaving order
        if (want.count(m)) c.modes.push_back(m);
    } else if (a == "--cpus") {
      WEFT_ASSIGN_OR_RETURN(std::string v, value());
      const int nproc = std::max(1, ReadMachineInfo().nproc);
      std::set<int> set;
      for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        std::vector<std::string> range = absl::StrSplit(part, '-');
        int lo = 0, hi = 0;
        if (range.size() > 2 || !absl::SimpleAtoi(range[0], &lo) ||
            !absl::SimpleAtoi(range.back(), &hi) || lo < 0 || hi < lo || hi >= nproc)
          return absl::InvalidArgumentError(
              absl::StrCat("--cpus wants CPU numbers or ranges from 0 to ", nproc - 1,
                           " separated by commas (e.g. 0 or 0-1), got '", v, "'"));
        for (int cpu = lo; cpu <= hi; cpu++) set.insert(cpu);
      }
      if (set.empty()) return absl::InvalidArgumentError("--cpus needs at least one CPU");
      c.cpus.assign(set.begin(), set.end());
    } else if (a == "--nice") {
      WEFT_ASSIGN_OR_RETURN(std::string v, value());
      if (!absl::SimpleAtoi(v, &c.nice) || c.nice < -20 || c.nice > 19)
        return absl::InvalidArgumentError(
            absl::StrCat("--nice wants a nice value from -20 to 19 (0: unchanged), got '", v, "'"));
    } else if (a == "--tolerance") {
      WEFT_ASSIGN_OR_RETURN(int64_t pct, number(0, 50));
      c.tolerance = static_cast<double>(pct) / 100.0;
    } else if (a == "--rounds") {
      WEFT_ASSIGN_OR_RETURN(c.rounds, number(1, 50));
    } else if (a == "--seconds") {
      WEFT_ASSIGN_OR_RETURN(c.iperf_seconds, number(1, 600));
    } else if (a == "--round-trips") {
      WEFT_ASSIGN_OR_RETURN(c.round_trips, number(1, 10'000'000));
    } else if (a == "--latency-seconds") {
      WEFT_ASSIGN_OR_RETURN(c.latency_seconds, number(1, 600));
    } else if (a == "--message-size") {
      WEFT_ASSIGN_OR_RETURN(c.message_size, number(16, 1 << 20));
    } else if (a == "--connect-seconds") {
      WEFT_ASSIGN_OR_RETURN(c.connect_seconds, number(1, 600));
    } else if (a == "--hold-conns") {
      WEFT_ASSIGN_OR_RETURN(c.hold_connections, number(1, 20000));
    } else if (a == "--ztunnel-workers") {
      WEFT_ASSIGN_OR_RETURN(c.ztunnel_workers, number(1, 256));
    } else if (a == "--log-level") {
      WEFT_ASSIGN_OR_RETURN(c.log_level, value());
      if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
          c.log_level != "error")
        return absl::InvalidArgumentError("--log-level wants debug, info, warn or error");
    } else if (a == "--ztunnel-bin") {
      WEFT_ASSIGN_OR_RETURN(c.ztunnel_bin, value());
    } else if (a == "--agent-bin") {
      WEFT_ASSIGN_OR_RETURN(c.agent_bin, value());
    } else if (a == "--out") {
      WEFT_ASSIGN_OR_RETURN(c.out_dir, value());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", a, "' (see weft-bench --help)"));
    }
  }
  if (c.ztunnel_workers == 0)
    c.ztunnel_workers =
        c.cpus.empty() ? std::max(1, ReadMachineInfo().nproc) : static_cast<int>(c.cpus.size());
  // weft-bench lives in <build>/bench/; the daemons are built into the same build dir.
  std::string build = std::filesystem::path(SelfDir()).parent_path().string();
  if (c.ztunnel_bin.empty()) c.ztunnel_bin = build + "/ztunnel/app/ztunnel";
  if (c.agent_bin.empty()) c.agent_bin = build + "/agent/weft-agent";
  return c;
}

absl::StatusOr<json> Run(const Config& cfg, const std::atomic<bool>& stop) {
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "weft-bench needs root (it creates network namespaces, cgroups and iptables rules in "
        "them, and reads BPF program stats); run it with sudo");
  for (const auto& [bin, flag] :
       {std::pair{cfg.ztunnel_bin, "--ztunnel-bin"}, std::pair{cfg.agent_bin, "--agent-bin"}}) {
    if (access(bin.c_str(), X_OK) != 0)
      return absl::NotFoundError(absl::StrCat(bin, " is not an executable: build it (ninja ",
                                              "ztunnel weft-agent) or pass ", flag));
  }
  for (const char* tool : {"iperf3", "ss", "iptables-restore", "ip"}) {
    if (FindInPath(tool).empty())
      return absl::NotFoundError(absl::StrCat(tool, " is not installed (apt-get install ",
                                              std::string(tool) == "iperf3" ? "iperf3"
                                              : std::string(tool) == "iptables-restore"
                                                  ? "iptables"
                                                  : "iproute2",
                                              ")"));
  }
  // The idle-connection client holds one fd per connection, and the ztunnels (which inherit
  // the limit) hold two sockets per tunnelled connection.
  WEFT_ASSIGN_OR_RETURN(int64_t nofile, RaiseFdLimit(4 * cfg.hold_connections + 4096));
  if (nofile < 2 * cfg.hold_connections + 256)
    return absl::ResourceExhaustedError(absl::StrCat(
        "RLIMIT_NOFILE is ", nofile, ", too low for --hold-conns ", cfg.hold_connections,
        "; lower --hold-conns or raise the hard limit (ulimit -Hn)"));

  // Before any thread or child exists, so all of them inherit it (on Linux the nice value is
  // per thread).
  if (!cfg.cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : cfg.cpus) CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
      return absl::InternalError(absl::StrCat("--cpus: sched_setaffinity: ", std::strerror(errno)));
  }
  if (cfg.nice != 0 && setpriority(PRIO_PROCESS, 0, cfg.nice) != 0)
    Progress(absl::StrCat("note: cannot set nice ", cfg.nice, ": ", std::strerror(errno)));
  const int nice_now = getpriority(PRIO_PROCESS, 0);
  // The request lasts while the fd is open and is dropped by the kernel when we exit.
  UniqueFd pm_qos;
  if (cfg.pm_qos) {
    pm_qos.reset(open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC));
    int32_t zero = 0;
    if (!pm_qos.valid() || write(pm_qos.get(), &zero, sizeof zero) != sizeof zero) {
      Progress("note: cannot hold /dev/cpu_dma_latency; latency figures include idle wake-ups");
      pm_qos.reset();
    }
  }
  IdleSpinners spinners;
  if (cfg.spin) {
    if (auto st = spinners.Start(); !st.ok())
      Progress(absl::StrCat("note: no idle spinners: ", st.message()));
  }
  // BPF run-time accounting costs two clock reads per program run, so it is on only while the
  // benchmark runs; the destructor (also reached on SIGINT/SIGTERM) restores the old value.
  std::optional<BpfStatsEnabler> bpf_stats;
  int bpf_stats_previous = -1;
  if (std::find(cfg.modes.begin(), cfg.modes.end(), "ebpf") != cfg.modes.end()) {
    auto e = BpfStatsEnabler::Enable();
    if (e.ok()) {
      bpf_stats_previous = e->previous();
      bpf_stats.emplace(std::move(*e));
    } else {
      Progress(absl::StrCat("note: no BPF program run times: ", e.status().message()));
    }
  }
  const std::string started = UtcNow("%Y-%m-%dT%H:%M:%SZ");
  const std::string load_before = ReadMachineInfo().loadavg;
  std::string iperf_version = "unknown";
  if (auto v = testbed::Exec("", {"iperf3", "--version"}); v.ok())
    iperf_version = v->substr(0, v->find('\n'));
  char tmpl[] = "/tmp/weft-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return absl::InternalError("mkdtemp /tmp/weft-bench-XXXXXX failed");
  chmod(tmpl, 0755);  // the pods' processes (iperf3, clients) write their logs here
  WorkDir wd{tmpl, cfg.keep_work_dir};

  absl::StatusOr<json> r;
  {
    Bench b(cfg, stop, wd.path);
    r = b.Run();
    Progress("cleaning up the testbeds");
  }  // the meshes and their namespaces are gone here
  bpf_stats.reset();
  if (!r.ok()) {
    if (!absl::IsCancelled(r.status())) wd.keep = true;
    return absl::Status(r.status().code(),
                        absl::StrCat(r.status().message(),
                                     wd.keep ? absl::StrCat(" (logs in ", wd.path, ")") : ""));
  }
  MachineInfo m = ReadMachineInfo();
  json& j = *r;
  j["tool"] = "weft-bench";
  j["started_utc"] = started;
  j["finished_utc"] = UtcNow("%Y-%m-%dT%H:%M:%SZ");
  j["command_line"] = cfg.command_line;
  if (!cfg.invoked_as.empty()) j["invoked_as"] = cfg.invoked_as;
  j["machine"] = {{"nproc", m.nproc},
                  {"kernel", m.kernel},
                  {"cpu_model", m.cpu_model},
                  {"mem_total_kib", m.mem_total_kib},
                  {"loadavg_before", load_before},
                  {"loadavg_after", m.loadavg}};
  j["iperf3_version"] = iperf_version;
  if (const char* rev = getenv("WEFT_BENCH_REVISION")) j["revision"] = rev;
  if (j.contains("bpf_programs")) j["bpf_programs"]["sysctl_previous_value"] = bpf_stats_previous;
  j["config"] = {{"rounds", cfg.rounds},
                 {"modes", cfg.modes},
                 {"iperf_seconds", cfg.iperf_seconds},
                 {"round_trips", cfg.round_trips},
                 {"latency_seconds_bound", cfg.latency_seconds},
                 {"message_size", cfg.message_size},
                 {"connect_seconds", cfg.connect_seconds},
                 {"connect_max", cfg.connect_max},
                 {"hold_connections", cfg.hold_connections},
                 {"tolerance", cfg.tolerance},
                 {"ztunnel_workers", cfg.ztunnel_workers},
                 {"log_level", cfg.log_level},
                 {"access_log", false},
                 {"same_node_fast_path", "ztunnel default"},
                 {"quick", cfg.quick},
                 {"pm_qos_cpu_dma_latency_0", pm_qos.valid()},
                 {"idle_spinners", spinners.count()},
                 {"nice", nice_now},
                 {"cpus", cfg.cpus}};
  return r;
}

std::string RenderMarkdown(const json& j) {
  std::string md;
  auto line = [&](const std::string& s) { md += s + "\n"; };
  const json& c = j["config"];
  std::vector<std::string> modes = c["modes"].get<std::vector<std::string>>();
  auto has = [&](const std::string& m) {
    return std::find(modes.begin(), modes.end(), m) != modes.end();
  };
  line("# Weft data-plane benchmark");
  line("");
  line(absl::StrCat("- Run: ", j.value("started_utc", ""), " to ", j.value("finished_utc", ""),
                    " (UTC)"));
  if (j.contains("invoked_as"))
    line(absl::StrCat("- Invoked as: `", j["invoked_as"].get<std::string>(), "`"));
  line(absl::StrCat("- Command line: `", j["command_line"].get<std::string>(), "`"));
  const json& m = j["machine"];
  line(absl::StrCat("- Machine: ", m["nproc"].get<int>(), " CPUs (nproc), ",
                    m["cpu_model"].get<std::string>(), ", ",
                    Fmt(m["mem_total_kib"].get<double>() / (1024.0 * 1024.0), 1), " GiB RAM"));
  line(absl::StrCat("- Kernel: ", m["kernel"].get<std::string>()));
  line(absl::StrCat("- Load average (1/5/15 min) before: ", m.value("loadavg_before", "?"),
                    ", after: ", m.value("loadavg_after", "?"),
                    " (other work on the machine skews the figures)"));
  if (j.contains("revision"))
    line(absl::StrCat("- Source revision: ", j["revision"].get<std::string>()));
  line(absl::StrCat("- Tools: ", j.value("iperf3_version", "iperf3 ?")));
  line(
      "- Setup: two 2-node namespace testbeds (veth + bridge fabric) up side by side for the "
      "whole run: mesh `bench` (weft-agent `--capture iptables`; also holds the bare pods, not "
      "enrolled) and mesh `benchebpf` (`--capture ebpf`, hooks on the testbed's cgroup). Per "
      "mode, one client pod on node 0 and two server pods: one on node 0 (same-node pair) and "
      "one on node 1 (cross-node pair).");
  line(absl::StrCat("- ztunnel: ", c["ztunnel_workers"].get<int>(), " workers, log level ",
                    c["log_level"].get<std::string>(),
                    ", access log off, same-node fast path as ztunnel's default."));
  line(
      "- Clients (iperf3 -c and `weft-bench client`) run as processes inside the client pod's "
      "netns and cgroup, the same way in every mode; after every meshed run the client "
      "node's ztunnel must have counted the run's connections "
      "(`istio_tcp_connections_opened_total{reporter=\"source\",source_workload=<client>}`), else "
      "the run fails. "
      "Echo and iperf3 servers run in the server pods.");
  line(absl::StrCat("- Rounds: ", c["rounds"].get<int>(), ", modes interleaved (",
                    absl::StrJoin(modes, ", "), ", ", absl::StrJoin(modes, ", "),
                    ", ...) for each figure and pair; tables show the median over rounds. "
                    "ztunnel/agent CPU = utime+stime of the mode's mesh's two ztunnels / two "
                    "agents during a run (bare: mesh `bench`'s, idle)."));
  if (c.value("idle_spinners", 0) > 0)
    line(absl::StrCat("- vCPU idle: ", c["idle_spinners"].get<int>(),
                      " SCHED_IDLE busy-loop threads (one per CPU) kept the vCPUs from halting, "
                      "so no hop pays a halted-vCPU wake-up (~50 µs here); they yield to any "
                      "other task. `--no-spin` turns them off."));
  line(c.value("pm_qos_cpu_dma_latency_0", false)
           ? "- CPU idle: PM QoS request /dev/cpu_dma_latency = 0 held during the run (no deep "
             "idle, so vCPU wake-ups do not swamp latency figures)"
           : "- CPU idle: not restricted (latency figures include idle vCPU wake-ups)");
  line(absl::StrCat(
      "- Priority: weft-bench and every process it starts (ztunnels, agents, iperf3, "
      "clients) ran at nice ",
      c.value("nice", 0),
      c.value("nice", 0) < 0 ? " so that other jobs on the machine disturb the figures less" : ""));
  if (c.contains("cpus") && !c["cpus"].empty())
    line(absl::StrCat("- CPUs: weft-bench and every process it starts were pinned to CPU(s) ",
                      absl::StrJoin(c["cpus"].get<std::vector<int>>(), ","),
                      " (`--cpus`): every wake-up is local, so latency is steadier but "
                      "throughput and connection rate have less parallelism than unpinned."));
  else
    line(
        "- CPUs: not pinned (all CPUs; `--cpus 0` pins everything to one CPU for steadier "
        "latency on a VM)");
  line("");
  line("Modes:");
  line("");
  line("- (a) bare: pods outside the mesh, plain routing");
  line("- (b) iptables: enrolled, in-pod iptables REDIRECT capture, ztunnel");
  line("- (c) eBPF: enrolled, cgroup connect4/6 + per-netns sk_lookup capture, ztunnel");
  line("- (d) eBPF + sockmap accelerator: **not built** (no figures)");
  line("");

  const double tol = j.value("tolerance", 0.05);
  for (const auto& pd : kPairs) {
    if (!j["pairs"].contains(pd.key)) continue;
    const json& p = j["pairs"][pd.key];
    line(absl::StrCat("## ", std::string(1, static_cast<char>(std::toupper(pd.title[0]))),
                      pd.title + 1));
    line("");
    std::string head = "| figure |", sep = "|---|";
    for (const auto& mode : modes) {
      head += " " + ModeTitle(mode) + " |";
      sep += "---:|";
    }
    for (const auto& mode : modes) {
      if (mode == "bare" || !has("bare")) continue;
      head += " " + ModeTitle(mode) + "/bare |";
      sep += "---:|";
    }
    const bool both = has("ebpf") && has("iptables");
    if (both) {
      head += " eBPF/iptables |";
      sep += "---:|";
    }
    line(head);
    line(sep);
    auto row = [&](const std::string& name, const char* figure, const char* key, int decimals,
                   double scale, bool ratios) {
      std::string s = "| " + name + " |";
      for (const auto& mode : modes)
        s += " " + Fmt(p[figure][mode]["median"][key].get<double>() / scale, decimals) + " |";
      for (const auto& mode : modes) {
        if (mode == "bare" || !has("bare")) continue;
        s += ratios ? " " + Fmt(p[figure]["ratio_over_bare"][mode][key].get<double>(), 2) + " |"
                    : " |";
      }
      if (both)
        s += ratios ? " " + Fmt(p[figure]["ratio_ebpf_over_iptables"][key].get<double>(), 2) + " |"
                    : " |";
      line(s);
    };
    row(absl::StrCat("throughput, iperf3 ", c["iperf_seconds"].get<int>(), " s (Gbit/s)"),
        "throughput", "bits_per_second", 2, 1e9, true);
    row("iperf3 retransmits", "throughput", "retransmits", 0, 1, false);
    for (const auto& [key, name] : {std::pair{"p50_us", "p50"}, std::pair{"p90_us", "p90"},
                                    std::pair{"p99_us", "p99"}, std::pair{"p999_us", "p99.9"}})
      row(absl::StrCat(c["message_size"].get<int>(), " B req/resp latency ", name, " (µs)"),
          "latency", key, 1, 1, true);
    row("connection rate (conn/s)", "connect_rate", "per_second", 0, 1, true);
    for (const char* figure : kFigures) {
      row(absl::StrCat("ztunnel CPU during ", figure, " run (s)"), figure, "ztunnel_cpu_s", 2, 1,
          false);
    }
    for (const char* figure : kFigures)
      row(absl::StrCat("agent CPU during ", figure, " run (s)"), figure, "agent_cpu_s", 2, 1,
          false);
    // Which path ztunnel took, from its own counters over every run of the pair.
    std::string counted = "| client connections counted by ztunnel (of them same-node fast path) |";
    for (const auto& mode : modes) {
      double src = 0, fast = 0;
      for (const char* figure : kFigures) {
        for (const auto& r : p[figure][mode]["runs"]) {
          if (!r.contains("mesh_counted")) continue;
          src += r["mesh_counted"].value("opened_source", 0.0);
          fast += r["mesh_counted"].value("opened_same_node_fast_path", 0.0);
        }
      }
      counted +=
          mode == "bare" ? " - |" : absl::StrCat(" ", Fmt(src, 0), " (", Fmt(fast, 0), ") |");
    }
    for (const auto& mode : modes)
      if (mode != "bare" && has("bare")) counted += " |";
    if (both) counted += " |";
    line(counted);
    line("");
  }

  line(
      absl::StrCat("## Targets (noise tolerance for eBPF vs iptables: ", Fmt(tol * 100, 0), " %)"));
  line("");
  line("| pair | target | value | limit | met |");
  line("|---|---|---:|---:|---|");
  for (const auto& t : j["targets"]) {
    line(absl::StrCat("| ", t["pair"].get<std::string>(), " | ", t["target"].get<std::string>(),
                      " | ", Fmt(t["value"].get<double>(), 2), " | ", t["op"].get<std::string>(),
                      " ", Fmt(t["limit"].get<double>(), 2), " | ", YesNo(t["met"]), " |"));
  }
  if (!has("ebpf")) line("| | eBPF-mode targets | not measured (--modes without ebpf) | | |");
  line("| | (d) eBPF + sockmap accelerator | not built | | |");
  line("");

  if (j.contains("bpf_programs")) {
    const json& b = j["bpf_programs"];
    line("## BPF program run time (bpf_prog_info run_time_ns / run_cnt)");
    line("");
    if (b.contains("error")) {
      line(absl::StrCat("Not available: ", b["error"].get<std::string>()));
    } else {
      line(
          "Programs named `weft_*` loaded on the machine; \"this run\" = attached through a "
          "link pinned by this run's eBPF-mode agents. kernel.bpf_stats_enabled was 1 for the "
          "run (previous value " +
          std::to_string(b.value("sysctl_previous_value", -1)) +
          ", restored), which itself adds a clock read pair to every program run.");
      line("");
      line(
          "On this one-host testbed both nodes' agents attach their connect4/connect6/sockops "
          "programs to the one mesh cgroup, so each of those programs is listed once per agent "
          "and every eBPF-mode connect runs both agents' copies (the copy of the agent that did "
          "not enrol the client only looks it up and leaves it alone); a real node has one "
          "agent. sk_lookup runs for every new connection's socket lookup in an enrolled pod's "
          "netns. Runs and ns/run cover "
          "the whole benchmark (all modes); the last column splits the eBPF-mode runs by figure.");
      line("");
      line(
          "| program | id | type | this run | runs | ns/run | ns/run (runs) in eBPF-mode "
          "throughput / latency / connect-rate runs |");
      line("|---|---:|---|---|---:|---:|---|");
      int others = 0;
      for (const auto& p : b["programs"]) {
        if (!p["attached_by_this_run"].get<bool>()) {
          others++;
          continue;
        }
        std::vector<std::string> figs;
        for (const char* f : kFigures) {
          const json& fr = p["ebpf_mode_runs_by_figure"][f];
          figs.push_back(absl::StrCat(Fmt(fr["ns_per_run"].get<double>(), 0), " (",
                                      fr["runs"].get<uint64_t>(), ")"));
        }
        line(absl::StrCat("| ", p["name"].get<std::string>(), " | ", p["id"].get<uint32_t>(), " | ",
                          p["type"].get<std::string>(), " | ",
                          p["attached_by_this_run"].get<bool>() ? "yes" : "no", " | ",
                          p["runs"].get<uint64_t>(), " | ", Fmt(p["ns_per_run"].get<double>(), 0),
                          " | ", absl::StrJoin(figs, " / "), " |"));
      }
      if (static_cast<int>(b["programs"].size()) == others)
        line("| (no weft_* program attached by this run's agents found) | | | | | | |");
      if (others > 0) {
        line("");
        line(absl::StrCat(others,
                          " other weft_* programs were loaded on the machine by other "
                          "processes (tests running meanwhile); left out here, listed in "
                          "results.json."));
      }
    }
    line("");
  }

  if (j.contains("ztunnel_memory")) {
    const json& mem = j["ztunnel_memory"];
    const int n = mem["connections"];
    line(absl::StrCat("## ztunnel memory (VmRSS), idle vs ", n,
                      " open idle tunnelled connections (", mem["client"].get<std::string>(),
                      " -> ", mem["server"].get<std::string>(), ", ",
                      ModeTitle(mem["mode"].get<std::string>()), " capture, one round trip each)"));
    line("");
    line(absl::StrCat("| ztunnel | idle (MiB) | with ", n,
                      " conns (MiB) | after closing (MiB) | per connection (B) | goal | met |"));
    line("|---|---:|---:|---:|---:|---|---|");
    for (const auto& nd : mem["nodes"]) {
      line(absl::StrCat(
          "| node ", nd["node"].get<int>(), " (", nd["side"].get<std::string>(), ") | ",
          MiB(nd["idle_rss_bytes"]), " | ", MiB(nd["rss_with_connections_bytes"]), " | ",
          MiB(nd["rss_after_close_bytes"]), " | ", nd["per_connection_bytes"].get<int64_t>(),
          " | <= ", kGoalBytesPerConn, " B | ", YesNo(nd["goal_met"]), " |"));
    }
    line(absl::StrCat("| both nodes | | | | ",
                      mem["both_nodes_per_connection_bytes"].get<int64_t>(), " | | |"));
    line("");
    if (mem.contains("rss_after_all_runs_bytes")) {
      const json& after = mem["rss_after_all_runs_bytes"];
      std::string idle_after;
      if (mem.contains("rss_idle_after_runs_bytes")) {
        const json& ia = mem["rss_idle_after_runs_bytes"];
        idle_after = absl::StrCat("; 12 s later, idle: node 0 ", MiB(ia[0]), " MiB, node 1 ",
                                  MiB(ia[1]), " MiB");
      }
      line(absl::StrCat("RSS after all runs: node 0 ", MiB(after[0]), " MiB, node 1 ",
                        MiB(after[1]), " MiB", idle_after,
                        ". Per-connection figure = (RSS with connections - idle RSS) / ", n,
                        ", idle measured after one warm-up connection."));
      line("");
    }
  }

  line("## Per-round values");
  line("");
  line(
      "Latency blocks: the lowest and highest median of the run's consecutive 1000-round-trip "
      "blocks; a wide span means the run changed speed midway (machine load, scheduling).");
  line("");
  line(
      "| pair | round | mode | Gbit/s | p50 µs | p99 µs | p99.9 µs | latency blocks p50 µs | "
      "conn/s | ztunnel CPU s (tput / lat / conn) |");
  line("|---|---:|---|---:|---:|---:|---:|---|---:|---|");
  for (const auto& pd : kPairs) {
    if (!j["pairs"].contains(pd.key)) continue;
    const json& p = j["pairs"][pd.key];
    for (size_t r = 0; r < p["throughput"][modes[0]]["runs"].size(); r++) {
      for (const auto& mode : modes) {
        const json& tr = p["throughput"][mode]["runs"][r];
        const json& lr = p["latency"][mode]["runs"][r];
        const json& cn = p["connect_rate"][mode]["runs"][r];
        std::string blocks = "-";
        if (lr.contains("block_p50_us") && !lr["block_p50_us"].empty()) {
          auto v = lr["block_p50_us"].get<std::vector<double>>();
          auto [lo, hi] = std::minmax_element(v.begin(), v.end());
          blocks = absl::StrCat(Fmt(*lo, 0), "-", Fmt(*hi, 0));
        }
        line(absl::StrCat("| ", pd.key, " | ", r + 1, " | ", ModeTitle(mode), " | ",
                          Gbps(tr["bits_per_second"]), " | ", Fmt(lr["p50_us"], 1), " | ",
                          Fmt(lr["p99_us"], 1), " | ", Fmt(lr["p999_us"], 1), " | ", blocks, " | ",
                          Fmt(cn["per_second"], 0), " | ", Fmt(tr["ztunnel_cpu_s"], 2), " / ",
                          Fmt(lr["ztunnel_cpu_s"], 2), " / ", Fmt(cn["ztunnel_cpu_s"], 2), " |"));
      }
    }
  }
  return md;
}

}  // namespace weft::bench
