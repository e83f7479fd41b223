#include "bench/bench.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/procfs.h"
#include "bench/stats.h"
#include "bench/traffic.h"
#include "cli/localmesh/local_mesh.h"
#include "common/netns.h"
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
constexpr double kGoalThroughputRatio = 0.5;

const char* const kModes[] = {"bare", "mesh"};

std::string ClientPod(const std::string& mode) {
  return mode + "-client";
}
std::string ServerPod(const std::string& mode) {
  return mode + "-server";
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
  absl::Status TunePodSysctls(const std::string& pod);
  absl::StatusOr<double> ZtunnelCpu() const;
  absl::StatusOr<int64_t> ZtunnelRss(int node) const;
  absl::StatusOr<json> Throughput(const std::string& mode);
  absl::StatusOr<json> Latency(const std::string& mode);
  absl::StatusOr<json> ConnectRate(const std::string& mode);
  absl::StatusOr<json> Memory();
  SockAddr Echo(const std::string& mode) const {
    return SockAddr{*mesh_->PodIp(ServerPod(mode)), kEchoPort};
  }

  const Config& cfg_;
  const std::atomic<bool>& stop_;
  std::string work_dir_;
  std::unique_ptr<LocalMesh> mesh_;
  std::map<std::string, UniqueFd> netns_;                       // pod -> netns handle
  std::map<std::string, std::unique_ptr<EchoServer>> echo_;     // mode -> server
  std::map<std::string, std::unique_ptr<EchoServer>> oneshot_;  // mode -> close_after_echo
  int iperf_runs_ = 0;
};

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

absl::StatusOr<double> Bench::ZtunnelCpu() const {
  double sum = 0;
  for (int n = 0; n < 2; n++) {
    pid_t pid = mesh_->ztunnel_pid(n);
    auto s = pid > 0 ? CpuSeconds(pid) : absl::NotFoundError("not running");
    if (!s.ok())
      return absl::UnavailableError(absl::StrCat("ztunnel on node ", n, " is gone (",
                                                 s.status().message(), "); log:\n",
                                                 mesh_->ZtunnelLog(n)));
    sum += *s;
  }
  return sum;
}

absl::StatusOr<int64_t> Bench::ZtunnelRss(int node) const {
  pid_t pid = mesh_->ztunnel_pid(node);
  auto r = pid > 0 ? VmRssBytes(pid) : absl::NotFoundError("not running");
  if (!r.ok())
    return absl::UnavailableError(absl::StrCat("ztunnel on node ", node, " is gone (",
                                               r.status().message(), "); log:\n",
                                               mesh_->ZtunnelLog(node)));
  return r;
}

absl::StatusOr<json> Bench::Throughput(const std::string& mode) {
  const std::string server_ns = *mesh_->testbed().PodNetns(ServerPod(mode));
  const std::string client_ns = *mesh_->testbed().PodNetns(ClientPod(mode));
  const std::string port = std::to_string(kIperfBasePort + iperf_runs_++);
  const std::string log = absl::StrCat(work_dir_, "/logs/iperf3-", mode, "-", port, ".log");
  WEFT_ASSIGN_OR_RETURN(auto server,
                        testbed::Spawn(server_ns, {"iperf3", "-s", "-1", "-p", port}, log));
  // Wait for the listener with ss rather than a probe connection: iperf3 -1 would take a probe
  // as its one test.
  for (auto deadline = Now() + 5;;) {
    auto out = testbed::Exec(server_ns, {"ss", "-Hltn", "sport = :" + port});
    if (out.ok() && !out->empty()) break;
    if (!server.Alive() || Now() > deadline)
      return absl::UnavailableError(absl::StrCat("iperf3 server in ", ServerPod(mode),
                                                 " did not start listening; see ", log));
    std::this_thread::sleep_for(20ms);
  }
  WEFT_ASSIGN_OR_RETURN(double cpu0, ZtunnelCpu());
  auto out = testbed::Exec(client_ns,
                           {"iperf3", "-c", mesh_->PodIp(ServerPod(mode))->ToString(), "-p", port,
                            "-t", std::to_string(cfg_.iperf_seconds), "-J"},
                           {}, std::chrono::seconds(cfg_.iperf_seconds + 30));
  WEFT_ASSIGN_OR_RETURN(double cpu1, ZtunnelCpu());
  if (!server.Wait(5s).ok()) server.Terminate(1s);
  if (!out.ok())
    return absl::UnavailableError(absl::StrCat(
        "iperf3 ", mode, " run failed: ", out.status().message(), " (server log: ", log, ")"));
  json j = json::parse(*out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || j.contains("error") || !j.contains("end"))
    return absl::DataLossError(absl::StrCat(
        "iperf3 ", mode, " gave no result: ", j.is_discarded() ? *out : j.value("error", *out)));
  const json& end = j["end"];
  json r = {{"bits_per_second", end["sum_received"].value("bits_per_second", 0.0)},
            {"bytes", end["sum_received"].value("bytes", 0.0)},
            {"seconds", end["sum_received"].value("seconds", 0.0)},
            {"retransmits", end["sum_sent"].value("retransmits", 0)},
            {"ztunnel_cpu_s", cpu1 - cpu0}};
  if (r["bits_per_second"].get<double>() <= 0)
    return absl::DataLossError(absl::StrCat("iperf3 ", mode, " measured no throughput"));
  return r;
}

absl::StatusOr<json> Bench::Latency(const std::string& mode) {
  const int64_t warmup = std::max<int64_t>(100, cfg_.round_trips / 20);
  WEFT_ASSIGN_OR_RETURN(double cpu0, ZtunnelCpu());
  WEFT_ASSIGN_OR_RETURN(auto res, InNetns<PingPongResult>(netns_.at(ClientPod(mode)).get(), [&] {
                          return RunPingPong(Echo(mode), static_cast<size_t>(cfg_.message_size),
                                             warmup, cfg_.round_trips,
                                             std::chrono::seconds(cfg_.latency_seconds), stop_);
                        }));
  WEFT_ASSIGN_OR_RETURN(double cpu1, ZtunnelCpu());
  const auto& l = res.latency;
  return json{{"round_trips", res.round_trips},
              {"seconds", res.seconds},
              {"warmup", warmup},
              {"p50_us", l.p50_us},
              {"p90_us", l.p90_us},
              {"p99_us", l.p99_us},
              {"p999_us", l.p999_us},
              {"mean_us", l.mean_us},
              {"min_us", l.min_us},
              {"max_us", l.max_us},
              {"ztunnel_cpu_s", cpu1 - cpu0}};
}

absl::StatusOr<json> Bench::ConnectRate(const std::string& mode) {
  WEFT_ASSIGN_OR_RETURN(double cpu0, ZtunnelCpu());
  WEFT_ASSIGN_OR_RETURN(auto res, InNetns<ConnectRateResult>(netns_.at(ClientPod(mode)).get(), [&] {
                          return RunConnectRate(SockAddr{Echo(mode).ip, kOneShotPort},
                                                std::chrono::seconds(cfg_.connect_seconds),
                                                cfg_.connect_max, stop_);
                        }));
  WEFT_ASSIGN_OR_RETURN(double cpu1, ZtunnelCpu());
  return json{{"per_second", res.per_second},
              {"connections", res.connections},
              {"failures", res.failures},
              {"seconds", res.seconds},
              {"ztunnel_cpu_s", cpu1 - cpu0}};
}

absl::StatusOr<json> Bench::Memory() {
  const int n = cfg_.hold_connections;
  EchoServer& echo = *echo_.at("mesh");
  auto wait_open = [&](auto pred) {
    for (auto deadline = Now() + 10; !pred(echo.open_connections()) && Now() < deadline;)
      std::this_thread::sleep_for(20ms);
  };
  wait_open([](int64_t open) { return open == 0; });
  std::this_thread::sleep_for(1s);  // let the probe's teardown settle
  int64_t idle[2], held[2], after[2];
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(idle[i], ZtunnelRss(i));
  }
  Progress(
      absl::StrCat("memory: opening ", n, " tunnelled connections mesh-client -> mesh-server"));
  WEFT_ASSIGN_OR_RETURN(auto fds,
                        InNetns<std::vector<UniqueFd>>(netns_.at("mesh-client").get(), [&] {
                          return OpenIdleConnections(Echo("mesh"), n, stop_);
                        }));
  wait_open([&](int64_t open) { return open >= n; });
  const int64_t server_side_open = echo.open_connections();
  std::this_thread::sleep_for(1s);
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(held[i], ZtunnelRss(i));
  }
  fds.clear();
  wait_open([](int64_t open) { return open == 0; });
  std::this_thread::sleep_for(1s);
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(after[i], ZtunnelRss(i));
  }
  if (server_side_open < n)
    return absl::InternalError(
        absl::StrCat("only ", server_side_open, " of ", n, " connections reached mesh-server"));

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
  return json{{"connections", n},
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

absl::StatusOr<json> Bench::Run() {
  localmesh::Options o;
  o.role = "bench";
  o.nodes = 2;
  auto pod = [](std::string name, std::string ns, std::string sa, int node, bool mesh) {
    localmesh::MeshPod p;
    p.name = std::move(name);
    p.ns = std::move(ns);
    p.service_account = std::move(sa);
    p.node = node;
    p.mesh = mesh;
    return p;
  };
  o.pods = {pod("mesh-client", "bench", "client", 0, true),
            pod("mesh-server", "bench", "server", 1, true),
            pod("bare-client", "bench-bare", "bare", 0, false),
            pod("bare-server", "bench-bare", "bare", 1, false)};
  o.ztunnel_bin = cfg_.ztunnel_bin;
  o.agent_bin = cfg_.agent_bin;
  o.work_dir = work_dir_;
  o.capture = "iptables";
  o.ztunnel_workers = cfg_.ztunnel_workers;
  o.log_level = cfg_.log_level;
  o.access_log = false;
  o.start_mesh = true;
  Progress(absl::StrCat("starting a 2-node testbed with ztunnel (", o.ztunnel_workers,
                        " workers) and weft-agent per node"));
  WEFT_ASSIGN_OR_RETURN(mesh_, LocalMesh::Start(o));
  WEFT_RETURN_IF_ERROR(CheckStop());
  for (const auto& p : o.pods) {
    WEFT_ASSIGN_OR_RETURN(netns_[p.name], mesh_->PodNetns(p.name));
    WEFT_RETURN_IF_ERROR(TunePodSysctls(p.name));
  }
  for (std::string mode : kModes) {
    WEFT_ASSIGN_OR_RETURN(echo_[mode],
                          EchoServer::Start(netns_.at(ServerPod(mode)).get(), kEchoPort));
    WEFT_ASSIGN_OR_RETURN(oneshot_[mode],
                          EchoServer::Start(netns_.at(ServerPod(mode)).get(), kOneShotPort, true));
    // The mesh path is ready once the agent enrolled both pods; LocalMesh waited for that, but
    // retry briefly in case ztunnel is still loading the peer's workload.
    absl::Status st;
    for (auto deadline = Now() + 15; Now() < deadline;) {
      WEFT_RETURN_IF_ERROR(CheckStop());
      auto r = InNetns<bool>(netns_.at(ClientPod(mode)).get(), [&]() -> absl::StatusOr<bool> {
        WEFT_RETURN_IF_ERROR(Probe(Echo(mode), 2s));
        return true;
      });
      st = r.status();
      if (st.ok()) break;
      std::this_thread::sleep_for(200ms);
    }
    if (!st.ok())
      return absl::UnavailableError(
          absl::StrCat(ClientPod(mode), " cannot reach ", ServerPod(mode), ": ", st.message()));
  }
  Progress("both paths answer; measuring ztunnel memory");

  json results;
  WEFT_ASSIGN_OR_RETURN(results["ztunnel_memory"], Memory());
  WEFT_RETURN_IF_ERROR(CheckStop());

  json runs = {{"throughput", {{"bare", json::array()}, {"mesh", json::array()}}},
               {"latency", {{"bare", json::array()}, {"mesh", json::array()}}},
               {"connect_rate", {{"bare", json::array()}, {"mesh", json::array()}}}};
  for (int round = 1; round <= cfg_.rounds; round++) {
    for (std::string mode : kModes) {
      Progress(absl::StrCat("round ", round, "/", cfg_.rounds, ": throughput ", mode));
      WEFT_ASSIGN_OR_RETURN(json r, Throughput(mode));
      Progress(absl::StrFormat("  %.2f Gbit/s", r["bits_per_second"].get<double>() / 1e9));
      runs["throughput"][mode].push_back(r);
      WEFT_RETURN_IF_ERROR(CheckStop());
    }
    for (std::string mode : kModes) {
      Progress(absl::StrCat("round ", round, "/", cfg_.rounds, ": latency ", mode));
      WEFT_ASSIGN_OR_RETURN(json r, Latency(mode));
      Progress(absl::StrFormat("  p50 %.1f us, p99 %.1f us", r["p50_us"].get<double>(),
                               r["p99_us"].get<double>()));
      runs["latency"][mode].push_back(r);
      WEFT_RETURN_IF_ERROR(CheckStop());
    }
    for (std::string mode : kModes) {
      Progress(absl::StrCat("round ", round, "/", cfg_.rounds, ": connect rate ", mode));
      WEFT_ASSIGN_OR_RETURN(json r, ConnectRate(mode));
      Progress(absl::StrFormat("  %.0f conn/s", r["per_second"].get<double>()));
      runs["connect_rate"][mode].push_back(r);
      WEFT_RETURN_IF_ERROR(CheckStop());
    }
  }
  json after = json::array();
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(int64_t rss, ZtunnelRss(i));
    after.push_back(rss);
  }
  results["ztunnel_memory"]["rss_after_all_runs_bytes"] = after;
  // ztunnel gives idle buffer blocks back after two 5 s trim ticks without use.
  Progress("memory: waiting 12 s idle, then RSS again");
  for (int i = 0; i < 120 && !stop_.load(); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  json idle_after = json::array();
  for (int i = 0; i < 2; i++) {
    WEFT_ASSIGN_OR_RETURN(int64_t rss, ZtunnelRss(i));
    idle_after.push_back(rss);
  }
  results["ztunnel_memory"]["rss_idle_after_runs_bytes"] = idle_after;

  auto section = [&](const std::string& metric, const std::vector<std::string>& keys) {
    json s;
    for (std::string mode : kModes) {
      s[mode] = {{"runs", runs[metric][mode]}, {"median", Medians(runs[metric][mode], keys)}};
    }
    json ratio;
    for (const auto& k : keys) {
      if (k == "ztunnel_cpu_s") continue;
      ratio[k] = Ratio(s["mesh"]["median"][k].get<double>(), s["bare"]["median"][k].get<double>());
    }
    s["ratio_mesh_over_bare"] = ratio;
    return s;
  };
  results["throughput"] =
      section("throughput", {"bits_per_second", "retransmits", "ztunnel_cpu_s"});
  double tput_ratio = results["throughput"]["ratio_mesh_over_bare"]["bits_per_second"];
  results["throughput"]["goal_min_ratio"] = kGoalThroughputRatio;
  results["throughput"]["goal_met"] = tput_ratio >= kGoalThroughputRatio;
  results["latency"] =
      section("latency", {"p50_us", "p90_us", "p99_us", "p999_us", "mean_us", "ztunnel_cpu_s"});
  results["connect_rate"] = section("connect_rate", {"per_second", "ztunnel_cpu_s"});
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

}  // namespace

std::string Usage() {
  return R"(usage: weft-bench [flags]

Data-plane benchmark: one 2-node namespace testbed, pods in and out of the mesh, same fabric.
Measures single-stream throughput (iperf3), 1 KiB request/response latency, connection rate,
and ztunnel memory per idle tunnelled connection; bare vs mesh, interleaved. Needs root.

  --rounds N            bare/mesh rounds per metric, medians reported (default 3)
  --seconds N           iperf3 duration per run (default 5)
  --round-trips N       measured request/response round trips per run (default 20000)
  --latency-seconds N   upper bound on one latency run (default 20)
  --message-size N      request and response size in bytes (default 1024)
  --connect-seconds N   duration of one connect-rate run (default 5)
  --hold-conns N        idle tunnelled connections for the memory figure (default 1000)
  --ztunnel-workers N   ztunnel worker threads (default: nproc)
  --log-level L         ztunnel/agent log level: debug|info|warn|error (default warn)
  --ztunnel-bin PATH    default: <build>/ztunnel/app/ztunnel next to this binary's build dir
  --agent-bin PATH      default: <build>/agent/weft-agent
  --out DIR             write DIR/results.json and DIR/report.md (created)
  --keep-work-dir       keep the testbed's work dir (logs, certs) after the run
  --no-pm-qos           do not hold /dev/cpu_dma_latency at 0 during the run (default: held,
                        so idle-CPU wake-up latency does not swamp the figures)
  --quick               1 round, 2 s iperf3, 5000 round trips, 2 s connect rate (~1 minute)
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
      c.rounds = 1;
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
    } else if (a == "--keep-work-dir") {
      c.keep_work_dir = true;
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
  if (c.ztunnel_workers == 0) c.ztunnel_workers = std::max(1, ReadMachineInfo().nproc);
  // weft-bench lives in <build>/bench/; the daemons are built into the same build dir.
  std::string build = std::filesystem::path(SelfDir()).parent_path().string();
  if (c.ztunnel_bin.empty()) c.ztunnel_bin = build + "/ztunnel/app/ztunnel";
  if (c.agent_bin.empty()) c.agent_bin = build + "/agent/weft-agent";
  return c;
}

absl::StatusOr<json> Run(const Config& cfg, const std::atomic<bool>& stop) {
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "weft-bench needs root (it creates network namespaces and iptables rules in them); "
        "run it with sudo");
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
  // Both ends of every held connection are in this process, and the ztunnels (which inherit
  // the limit) hold two sockets per tunnelled connection.
  WEFT_ASSIGN_OR_RETURN(int64_t nofile, RaiseFdLimit(4 * cfg.hold_connections + 4096));
  if (nofile < 2 * cfg.hold_connections + 256)
    return absl::ResourceExhaustedError(absl::StrCat(
        "RLIMIT_NOFILE is ", nofile, ", too low for --hold-conns ", cfg.hold_connections,
        "; lower --hold-conns or raise the hard limit (ulimit -Hn)"));

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
  const std::string started = UtcNow("%Y-%m-%dT%H:%M:%SZ");
  const std::string load_before = ReadMachineInfo().loadavg;
  std::string iperf_version = "unknown";
  if (auto v = testbed::Exec("", {"iperf3", "--version"}); v.ok())
    iperf_version = v->substr(0, v->find('\n'));
  char tmpl[] = "/tmp/weft-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return absl::InternalError("mkdtemp /tmp/weft-bench-XXXXXX failed");
  WorkDir wd{tmpl, cfg.keep_work_dir};

  absl::StatusOr<json> r;
  {
    Bench b(cfg, stop, wd.path);
    r = b.Run();
    Progress("cleaning up the testbed");
  }  // the mesh and its namespaces are gone here
  if (!r.ok()) {
    if (!absl::IsCancelled(r.status())) wd.keep = true;
    return absl::Status(r.status().code(),
                        absl::StrCat(r.status().message(),
                                     wd.keep ? absl::StrCat(" (logs in ", wd.path, "/logs)") : ""));
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
  j["config"] = {{"rounds", cfg.rounds},
                 {"iperf_seconds", cfg.iperf_seconds},
                 {"round_trips", cfg.round_trips},
                 {"latency_seconds_bound", cfg.latency_seconds},
                 {"message_size", cfg.message_size},
                 {"connect_seconds", cfg.connect_seconds},
                 {"connect_max", cfg.connect_max},
                 {"hold_connections", cfg.hold_connections},
                 {"ztunnel_workers", cfg.ztunnel_workers},
                 {"log_level", cfg.log_level},
                 {"access_log", false},
                 {"capture", "iptables"},
                 {"quick", cfg.quick},
                 {"pm_qos_cpu_dma_latency_0", pm_qos.valid()}};
  return r;
}

std::string RenderMarkdown(const json& j) {
  std::string md;
  auto line = [&](const std::string& s) { md += s + "\n"; };
  const json& c = j["config"];
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
  line(absl::StrCat("- Setup: one 2-node namespace testbed (veth + bridge fabric); bare = ",
                    "bare-client (node 0) -> bare-server (node 1), not enrolled; mesh = ",
                    "mesh-client (node 0) -> mesh-server (node 1), enrolled (in-pod iptables ",
                    "capture, HBONE mTLS between the nodes' ztunnels). ztunnel: ",
                    c["ztunnel_workers"].get<int>(), " workers, log level ",
                    c["log_level"].get<std::string>(), ", access log off."));
  line(
      absl::StrCat("- Rounds: ", c["rounds"].get<int>(),
                   ", modes interleaved (bare, mesh, bare, mesh, ...); tables show the median ",
                   "over rounds. ztunnel CPU = utime+stime of both nodes' ztunnels during a run."));
  line(c.value("pm_qos_cpu_dma_latency_0", false)
           ? "- CPU idle: PM QoS request /dev/cpu_dma_latency = 0 held during the run (no deep "
             "idle, so vCPU wake-ups do not swamp latency figures)"
           : "- CPU idle: not restricted (latency figures include idle vCPU wake-ups)");
  line("");

  const json& t = j["throughput"];
  line(absl::StrCat("## Single-stream throughput (iperf3, ", c["iperf_seconds"].get<int>(),
                    " s per run)"));
  line("");
  line("| metric | bare | mesh | mesh/bare | goal | met |");
  line("|---|---:|---:|---:|---|---|");
  line(absl::StrCat("| throughput (Gbit/s) | ", Gbps(t["bare"]["median"]["bits_per_second"]), " | ",
                    Gbps(t["mesh"]["median"]["bits_per_second"]), " | ",
                    Fmt(t["ratio_mesh_over_bare"]["bits_per_second"], 2),
                    " | mesh >= ", Fmt(t["goal_min_ratio"].get<double>() * 100, 0), "% of bare | ",
                    YesNo(t["goal_met"]), " |"));
  line(absl::StrCat("| retransmits | ", Fmt(t["bare"]["median"]["retransmits"], 0), " | ",
                    Fmt(t["mesh"]["median"]["retransmits"], 0), " | | | |"));
  line(absl::StrCat("| ztunnel CPU (s per run) | ", Fmt(t["bare"]["median"]["ztunnel_cpu_s"], 2),
                    " | ", Fmt(t["mesh"]["median"]["ztunnel_cpu_s"], 2), " | | | |"));
  line("");

  const json& l = j["latency"];
  line(absl::StrCat("## Request/response latency (", c["message_size"].get<int>(), " B request, ",
                    c["message_size"].get<int>(), " B response, one connection, ",
                    c["round_trips"].get<int64_t>(), " round trips per run)"));
  line("");
  line("| percentile | bare (µs) | mesh (µs) | mesh/bare |");
  line("|---|---:|---:|---:|");
  for (const auto& [key, name] :
       {std::pair{"p50_us", "p50"}, std::pair{"p90_us", "p90"}, std::pair{"p99_us", "p99"},
        std::pair{"p999_us", "p99.9"}, std::pair{"mean_us", "mean"}}) {
    line(absl::StrCat("| ", name, " | ", Fmt(l["bare"]["median"][key], 1), " | ",
                      Fmt(l["mesh"]["median"][key], 1), " | ",
                      Fmt(l["ratio_mesh_over_bare"][key], 2), " |"));
  }
  line(absl::StrCat("| ztunnel CPU (s per run) | ", Fmt(l["bare"]["median"]["ztunnel_cpu_s"], 2),
                    " | ", Fmt(l["mesh"]["median"]["ztunnel_cpu_s"], 2), " | |"));
  line("");

  const json& cr = j["connect_rate"];
  line(
      absl::StrCat("## Connection rate (connect + 32 B round trip + server closes + client closes, "
                   "sequential, ",
                   c["connect_seconds"].get<int>(), " s per run)"));
  line("");
  line("| metric | bare | mesh | mesh/bare |");
  line("|---|---:|---:|---:|");
  line(absl::StrCat("| connections/s | ", Fmt(cr["bare"]["median"]["per_second"], 0), " | ",
                    Fmt(cr["mesh"]["median"]["per_second"], 0), " | ",
                    Fmt(cr["ratio_mesh_over_bare"]["per_second"], 2), " |"));
  line(absl::StrCat("| ztunnel CPU (s per run) | ", Fmt(cr["bare"]["median"]["ztunnel_cpu_s"], 2),
                    " | ", Fmt(cr["mesh"]["median"]["ztunnel_cpu_s"], 2), " | |"));
  line("");

  const json& mem = j["ztunnel_memory"];
  const int n = mem["connections"];
  line(absl::StrCat("## ztunnel memory (VmRSS), idle vs ", n,
                    " open idle tunnelled connections (mesh-client -> mesh-server, one round trip "
                    "each)"));
  line("");
  line(absl::StrCat("| ztunnel | idle (MiB) | with ", n,
                    " conns (MiB) | after closing (MiB) | per connection (B) | goal | met |"));
  line("|---|---:|---:|---:|---:|---|---|");
  for (const auto& nd : mem["nodes"]) {
    line(absl::StrCat("| node ", nd["node"].get<int>(), " (", nd["side"].get<std::string>(), ") | ",
                      MiB(nd["idle_rss_bytes"]), " | ", MiB(nd["rss_with_connections_bytes"]),
                      " | ", MiB(nd["rss_after_close_bytes"]), " | ",
                      nd["per_connection_bytes"].get<int64_t>(), " | <= ", kGoalBytesPerConn,
                      " B | ", YesNo(nd["goal_met"]), " |"));
  }
  line(absl::StrCat("| both nodes | | | | ", mem["both_nodes_per_connection_bytes"].get<int64_t>(),
                    " | | |"));
  const json& after = mem["rss_after_all_runs_bytes"];
  line("");
  std::string idle_after;
  if (mem.contains("rss_idle_after_runs_bytes")) {
    const json& ia = mem["rss_idle_after_runs_bytes"];
    idle_after = absl::StrCat("; 12 s later, idle: node 0 ", MiB(ia[0]), " MiB, node 1 ",
                              MiB(ia[1]), " MiB");
  }
  line(absl::StrCat("RSS after all runs: node 0 ", MiB(after[0]), " MiB, node 1 ", MiB(after[1]),
                    " MiB", idle_after,
                    ". Per-connection figure = (RSS with connections - idle RSS) / ", n,
                    ", idle measured after one warm-up connection."));
  line("");

  line("## Per-round values");
  line("");
  line(
      "| round | mode | Gbit/s | p50 µs | p99 µs | p99.9 µs | conn/s | ztunnel CPU s (tput / lat / "
      "conn) |");
  line("|---:|---|---:|---:|---:|---:|---:|---|");
  for (size_t r = 0; r < t["bare"]["runs"].size(); r++) {
    for (const char* mode : kModes) {
      const json& tr = t[mode]["runs"][r];
      const json& lr = l[mode]["runs"][r];
      const json& cn = cr[mode]["runs"][r];
      line(absl::StrCat("| ", r + 1, " | ", mode, " | ", Gbps(tr["bits_per_second"]), " | ",
                        Fmt(lr["p50_us"], 1), " | ", Fmt(lr["p99_us"], 1), " | ",
                        Fmt(lr["p999_us"], 1), " | ", Fmt(cn["per_second"], 0), " | ",
                        Fmt(tr["ztunnel_cpu_s"], 2), " / ", Fmt(lr["ztunnel_cpu_s"], 2), " / ",
                        Fmt(cn["ztunnel_cpu_s"], 2), " |"));
    }
  }
  return md;
}

}  // namespace weft::bench
