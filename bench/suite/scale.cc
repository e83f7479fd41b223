#include "bench/suite/scale.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/procfs.h"
#include "bench/traffic.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "common/file.h"
#include "common/net.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/status.h"

namespace weft::bench::suite {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kNamespace = "scale";
constexpr const char* kOpened = "istio_tcp_connections_opened_total";
constexpr int64_t kGoalBytesPerConnPerZtunnel = 4096;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string Tail(const std::string& text, size_t n = 1500) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// "Max open files" soft limit of a process, -1 if unreadable.
int64_t NofileOf(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/limits"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream ss(line.substr(14));
    std::string soft;
    ss >> soft;
    if (soft == "unlimited") return RLIM_INFINITY;
    try {
      return std::stoll(soft);
    } catch (...) {
      return -1;
    }
  }
  return -1;
}

class Scale {
 public:
  Scale(const ScaleOptions& o, const std::atomic<bool>& stop, std::string work_dir)
      : o_(o), stop_(stop), work_dir_(std::move(work_dir)) {}

  ScaleResult Run();

 private:
  // One `weftctl up`; removed (`weftctl down`) by the destructor if Down() was not called.
  class Mesh {
   public:
    Mesh(Scale& s, std::string name) : s_(s), name_(std::move(name)) {}
    ~Mesh() {
      if (up_) (void)Down();
    }
    absl::Status Up(const std::string& capture, const std::string& manifest_dir);
    absl::Status Down();
    const std::string& name() const { return name_; }
    const up::MeshState& state() const { return state_; }
    double up_seconds = 0, down_seconds = 0;

   private:
    Scale& s_;
    std::string name_;
    bool up_ = false;
    up::MeshState state_;
  };

  void Log(const std::string& line) const {
    if (o_.log) o_.log(absl::StrCat("[scale] ", line));
  }
  absl::Status CheckStop() const {
    return stop_.load() ? absl::CancelledError("scale: stopped") : absl::OkStatus();
  }
  absl::Status Sleep(milliseconds d) const {
    for (auto end = Clock::now() + d; Clock::now() < end;) {
      WEFT_RETURN_IF_ERROR(CheckStop());
      std::this_thread::sleep_for(std::min<milliseconds>(milliseconds(100), d));
    }
    return CheckStop();
  }
  std::vector<std::string> WeftctlArgv(const std::string& mesh,
                                       std::vector<std::string> args) const {
    return up::WeftctlArgv(o_.weftctl, mesh, o_.state_root, std::move(args));
  }
  absl::StatusOr<std::string> WriteManifests(const std::string& tag,
                                             const std::vector<std::pair<std::string, int>>& pods);
  absl::StatusOr<ScalePods> PodsStep(const std::string& mode, int pods);
  absl::StatusOr<ScaleIdleMesh> ConnectionsMode(const std::string& mode,
                                                std::vector<ScaleIdle>& steps);
  // The idle-connections mesh of one mode, for its steps.
  struct ConnsMesh {
    std::string mode, name, to;  // `to`: the echo server, IP:port
    const up::MeshState* s = nullptr;
    EchoServer* echo = nullptr;
    std::vector<int64_t> base;  // each node's ztunnel RSS with no connection
    int64_t base_sum = 0;
  };
  absl::Status ConnectionsStep(const ConnsMesh& c, int n, std::vector<ScaleIdle>& steps);
  absl::Status WaitIdleOpen(const ConnsMesh& c, int n, testbed::Process& holder,
                            const std::string& log);
  void StepFailed(const ConnsMesh& c, int n, const absl::Status& st);
  absl::Status WaitOpen(const EchoServer& echo, const std::function<bool(int64_t)>& pred);
  absl::StatusOr<int64_t> ZtunnelRssSum(const up::MeshState& s,
                                        std::vector<int64_t>* per_node) const;
  absl::StatusOr<int64_t> Rss(pid_t pid, const char* what, int node) const;
  absl::StatusOr<std::string> Metrics(const up::NodeState& node) const;
  absl::StatusOr<double> Opened(const up::NodeState& node, const char* reporter) const;

  const ScaleOptions& o_;
  const std::atomic<bool>& stop_;
  std::string work_dir_;
  std::vector<ScaleMesh> meshes_;
  std::vector<std::string> errors_;
};

absl::Status Scale::Mesh::Up(const std::string& capture, const std::string& manifest_dir) {
  const std::string log = absl::StrCat(s_.work_dir_, "/up-", name_, ".log");
  const auto t0 = Clock::now();
  testbed::SpawnOptions so;
  // PDEATHSIG follows the spawning thread, and the mesh is ended by `down`, not by our exit.
  so.die_with_parent = false;
  WEFT_ASSIGN_OR_RETURN(
      testbed::Process proc,
      testbed::Spawn("",
                     s_.WeftctlArgv(name_, {"up", "--capture", capture, "--nodes",
                                            std::to_string(s_.o_.nodes), manifest_dir}),
                     log, so));
  up_ = true;  // from here on a (partial) mesh may exist: the destructor downs it
  s_.meshes_.push_back({name_, ""});
  while (true) {
    auto st = proc.Wait(milliseconds(200));
    if (st.ok()) {
      if (*st != 0)
        return absl::UnavailableError(absl::StrCat("weftctl up ", name_, " exited with status ",
                                                   *st, ": ", Tail(ReadFile(log).value_or(""))));
      break;
    }
    if (s_.stop_.load() || Clock::now() - t0 > s_.o_.up_timeout) {
      proc.Terminate(seconds(10));
      if (s_.stop_.load()) return absl::CancelledError("scale: stopped");
      return absl::DeadlineExceededError(absl::StrCat(
          "weftctl up ", name_, " did not finish within ", s_.o_.up_timeout.count(),
          " s; lower the pod counts or raise up_timeout. Log: ", Tail(ReadFile(log).value_or(""))));
    }
  }
  up_seconds = SecondsSince(t0);
  WEFT_ASSIGN_OR_RETURN(state_, up::LoadMesh(s_.o_.state_root, name_));
  s_.meshes_.back().testbed_prefix = state_.prefix;
  if (state_.status != "ready")
    return absl::UnavailableError(
        absl::StrCat("mesh ", name_, " is '", state_.status, "' after up, not ready"));
  if (static_cast<int>(state_.nodes.size()) != s_.o_.nodes)
    return absl::InternalError(absl::StrCat("mesh ", name_, " has ", state_.nodes.size(),
                                            " nodes, asked for ", s_.o_.nodes));
  return absl::OkStatus();
}

absl::Status Scale::Mesh::Down() {
  up_ = false;
  const auto t0 = Clock::now();
  auto out = testbed::Exec("", s_.WeftctlArgv(name_, {"down"}), "", seconds(120));
  down_seconds = SecondsSince(t0);
  if (!out.ok()) {
    s_.Log(absl::StrCat("weftctl down ", name_, " failed: ", out.status().message()));
    return out.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Scale::WriteManifests(
    const std::string& tag, const std::vector<std::pair<std::string, int>>& pods) {
  const std::string dir = absl::StrCat(work_dir_, "/manifests-", tag);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  // JSON is YAML: each object is written with nlohmann's serializer, one document each.
  std::vector<json> docs;
  docs.push_back(
      {{"apiVersion", "v1"},
       {"kind", "Namespace"},
       {"metadata", {{"name", kNamespace}, {"labels", {{"weft.dev/mesh", "enabled"}}}}}});
  docs.push_back({{"apiVersion", "v1"},
                  {"kind", "ServiceAccount"},
                  {"metadata", {{"name", "idle"}, {"namespace", kNamespace}}}});
  for (const auto& [name, node] : pods) {
    docs.push_back(
        {{"apiVersion", "v1"},
         {"kind", "Pod"},
         {"metadata", {{"name", name}, {"namespace", kNamespace}, {"labels", {{"app", name}}}}},
         {"spec",
          {{"nodeName", absl::StrCat("node", node)},
           {"serviceAccountName", "idle"},
           {"containers",
            {{{"name", "app"},
              {"command",
               {o_.teashop, "--role", "idle", "--listen", "0.0.0.0:8080", "--threads", "1"}},
              {"ports", {{{"name", "http"}, {"containerPort", 8080}}}}}}}}}});
  }
  std::ofstream f(dir + "/scale.yaml");
  for (const auto& d : docs) f << "---\n" << d.dump() << "\n";
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", dir, "/scale.yaml"));
  return dir;
}

absl::StatusOr<int64_t> Scale::Rss(pid_t pid, const char* what, int node) const {
  auto r = VmRssBytes(pid);
  if (!r.ok())
    return absl::UnavailableError(
        absl::StrCat(what, " of node", node, " (pid ", pid, ") is gone: ", r.status().message()));
  return r;
}

absl::StatusOr<std::string> Scale::Metrics(const up::NodeState& node) const {
  WEFT_ASSIGN_OR_RETURN(SockAddr addr, SockAddr::Parse(node.metrics));
  WEFT_ASSIGN_OR_RETURN(UniqueFd ns, OpenNetns(testbed::NetnsPath(node.netns)));
  return HttpGet(addr, "/metrics", ns.get());
}

absl::StatusOr<double> Scale::Opened(const up::NodeState& node, const char* reporter) const {
  WEFT_ASSIGN_OR_RETURN(std::string text, Metrics(node));
  return MetricSum(text, kOpened, {{"reporter", reporter}});
}

absl::StatusOr<ScalePods> Scale::PodsStep(const std::string& mode, int pods) {
  std::vector<std::pair<std::string, int>> list;
  for (int i = 0; i < pods; i++) list.push_back({absl::StrCat("idle-", i), i % o_.nodes});
  const std::string name = absl::StrCat(o_.name_prefix, "-", mode, "-p", pods);
  WEFT_ASSIGN_OR_RETURN(std::string dir, WriteManifests(name, list));
  Log(absl::StrCat("pods: ", mode, ", ", pods, " pods: weftctl up ", name));
  Mesh mesh(*this, name);
  WEFT_RETURN_IF_ERROR(mesh.Up(mode, dir));
  Log(absl::StrCat("pods: ", mode, ", ", pods, " pods: ready after ", mesh.up_seconds, " s"));
  const up::MeshState& s = mesh.state();
  int enrolled = 0;
  for (const auto& p : s.pods) enrolled += p.enrolled ? 1 : 0;
  if (enrolled != pods)
    return absl::InternalError(
        absl::StrCat("mesh ", name, " has ", enrolled, " enrolled pods of ", pods, " asked"));
  WEFT_RETURN_IF_ERROR(Sleep(o_.settle));
  ScalePods r;
  r.mode = mode;
  r.pods = pods;
  int64_t zt = 0, ag = 0;
  for (int i = 0; i < static_cast<int>(s.nodes.size()); i++) {
    WEFT_ASSIGN_OR_RETURN(int64_t z, Rss(s.nodes[i].ztunnel_pid, "ztunnel", i));
    WEFT_ASSIGN_OR_RETURN(int64_t a, Rss(s.nodes[i].agent_pid, "weft-agent", i));
    int node_pods = 0;
    for (const auto& p : s.pods) node_pods += p.node == i ? 1 : 0;
    // The figure is only about N pods if ztunnel really took them all over.
    WEFT_ASSIGN_OR_RETURN(std::string metrics, Metrics(s.nodes[i]));
    const double in_ztunnel = MetricSum(metrics, "weft_enrolled_pods");
    if (in_ztunnel != node_pods)
      return absl::InternalError(absl::StrCat("node", i, "'s ztunnel reports ", in_ztunnel,
                                              " enrolled pods (weft_enrolled_pods), expected ",
                                              node_pods, "; see ", s.nodes[i].ztunnel_log));
    r.nodes.push_back({i, node_pods, in_ztunnel, z, a});
    zt += z;
    ag += a;
  }
  WEFT_RETURN_IF_ERROR(mesh.Down());
  Log(absl::StrCat("pods: ", mode, ", ", pods, " pods: ztunnels ", zt >> 10, " KiB, agents ",
                   ag >> 10, " KiB (both nodes); down took ", mesh.down_seconds, " s"));
  r.ztunnel_rss_bytes = zt;
  r.agent_rss_bytes = ag;
  r.up_seconds = mesh.up_seconds;
  r.down_seconds = mesh.down_seconds;
  return r;
}

absl::Status Scale::WaitOpen(const EchoServer& echo, const std::function<bool(int64_t)>& pred) {
  for (auto end = Clock::now() + seconds(30); !pred(echo.open_connections());) {
    WEFT_RETURN_IF_ERROR(CheckStop());
    if (Clock::now() > end) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Scale::ZtunnelRssSum(const up::MeshState& s,
                                             std::vector<int64_t>* per_node) const {
  int64_t sum = 0;
  for (size_t i = 0; i < s.nodes.size(); i++) {
    WEFT_ASSIGN_OR_RETURN(int64_t r, Rss(s.nodes[i].ztunnel_pid, "ztunnel", static_cast<int>(i)));
    if (per_node) per_node->push_back(r);
    sum += r;
  }
  return sum;
}

absl::StatusOr<ScaleIdleMesh> Scale::ConnectionsMode(const std::string& mode,
                                                     std::vector<ScaleIdle>& steps) {
  ConnsMesh c;
  c.mode = mode;
  c.name = absl::StrCat(o_.name_prefix, "-", mode, "-conns");
  WEFT_ASSIGN_OR_RETURN(std::string dir, WriteManifests(c.name, {{"client", 0}, {"server", 1}}));
  Log(absl::StrCat("idle connections: ", mode, ": weftctl up ", c.name));
  Mesh mesh(*this, c.name);
  WEFT_RETURN_IF_ERROR(mesh.Up(mode, dir));
  c.s = &mesh.state();
  WEFT_ASSIGN_OR_RETURN(const up::PodState* server, up::FindPod(*c.s, "server"));
  WEFT_ASSIGN_OR_RETURN(const up::PodState* client, up::FindPod(*c.s, "client"));
  if (!server->enrolled || !client->enrolled)
    return absl::InternalError(absl::StrCat("mesh ", c.name, ": client or server not enrolled"));
  WEFT_ASSIGN_OR_RETURN(UniqueFd server_ns, OpenNetns(testbed::NetnsPath(server->netns)));
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<EchoServer> echo,
                        EchoServer::Start(server_ns.get(), kScaleEchoPort));
  c.echo = echo.get();
  WEFT_ASSIGN_OR_RETURN(IpAddr server_ip, IpAddr::Parse(server->ip));
  c.to = SockAddr{server_ip, kScaleEchoPort}.ToString();

  // One short exchange first: the first tunnelled connection sets up what every later one
  // shares (certificates, workload lookups), which is not per-connection memory.
  auto warm = testbed::Exec(
      "",
      WeftctlArgv(c.name, {"exec", "client", "--", o_.bench, "client", "--kind", "pingpong", "--to",
                           c.to, "--warmup", "1", "--round-trips", "10"}),
      "", seconds(60));
  if (!warm.ok())
    return absl::UnavailableError(
        absl::StrCat("warm-up connection client -> server failed: ", warm.status().message()));
  WEFT_RETURN_IF_ERROR(WaitOpen(*c.echo, [](int64_t n) { return n == 0; }));
  WEFT_RETURN_IF_ERROR(Sleep(std::max<milliseconds>(o_.settle, seconds(1))));

  std::vector<int64_t> limits;
  WEFT_ASSIGN_OR_RETURN(c.base_sum, ZtunnelRssSum(*c.s, &c.base));
  for (const up::NodeState& n : c.s->nodes) limits.push_back(NofileOf(n.ztunnel_pid));
  Log(absl::StrCat("idle connections: ", mode, ": baseline ztunnels ", c.base_sum >> 10,
                   " KiB (both nodes); ztunnel RLIMIT_NOFILE ", absl::StrJoin(limits, ", ")));

  for (int n : o_.connection_counts) {
    WEFT_RETURN_IF_ERROR(CheckStop());
    WEFT_RETURN_IF_ERROR(ConnectionsStep(c, n, steps));
  }
  echo.reset();
  WEFT_RETURN_IF_ERROR(mesh.Down());
  return ScaleIdleMesh{mode, mesh.up_seconds, mesh.down_seconds, limits};
}

void Scale::StepFailed(const ConnsMesh& c, int n, const absl::Status& st) {
  errors_.push_back(
      absl::StrCat("scale, mode ", c.mode, ", ", n, " idle connections: ", st.message()));
  Log(absl::StrCat("idle connections: ", c.mode, ", ", n, ": ", st.message()));
}

// Waits until the holder of n idle connections says they are open (its log).
absl::Status Scale::WaitIdleOpen(const ConnsMesh& c, int n, testbed::Process& holder,
                                 const std::string& log) {
  for (auto end = Clock::now() + seconds(60 + n / 50);;) {
    const std::string text = ReadFile(log).value_or("");
    if (text.find("\"opened\"") != std::string::npos) return absl::OkStatus();
    if (stop_.load()) return absl::CancelledError("scale: stopped");
    if (!holder.Alive() || Clock::now() > end) {
      return absl::UnavailableError(absl::StrCat("the idle-connection holder did not open its ", n,
                                                 " connections (", c.echo->open_connections(),
                                                 " open at the server): ", Tail(text)));
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
}

// n idle connections client -> server: both ztunnels' RSS with them open, checked against
// ztunnel's counters; a failed step is recorded and the next count follows. Errors end the
// mode (stopped, or a ztunnel died).
absl::Status Scale::ConnectionsStep(const ConnsMesh& c, int n, std::vector<ScaleIdle>& steps) {
  const up::MeshState& s = *c.s;
  const auto t0 = Clock::now();
  ScaleIdle step;
  step.mode = c.mode;
  step.connections = n;
  step.baseline_ztunnel_rss_bytes = c.base_sum;
  WEFT_ASSIGN_OR_RETURN(double src0, Opened(s.nodes[0], "source"));
  WEFT_ASSIGN_OR_RETURN(double dst0, Opened(s.nodes[1], "destination"));
  Log(absl::StrCat("idle connections: ", c.mode, ": opening ", n, " client -> server"));
  const std::string log = absl::StrCat(work_dir_, "/idle-", c.name, "-", n, ".log");
  // Its own process group: stopping it reaches weftctl exec and the holder under it.
  WEFT_ASSIGN_OR_RETURN(
      testbed::Process holder,
      testbed::Spawn("",
                     WeftctlArgv(c.name, {"exec", "client", "--", o_.bench, "client", "--kind",
                                          "idle", "--to", c.to, "--count", std::to_string(n)}),
                     log));
  if (absl::Status opened = WaitIdleOpen(c, n, holder, log); !opened.ok()) {
    holder.Terminate(seconds(5));
    if (opened.code() == absl::StatusCode::kCancelled) return opened;
    StepFailed(c, n, opened);
    (void)WaitOpen(*c.echo, [](int64_t k) { return k == 0; });
    return absl::OkStatus();
  }
  WEFT_RETURN_IF_ERROR(WaitOpen(*c.echo, [&](int64_t k) { return k >= n; }));
  const int64_t server_open = c.echo->open_connections();
  WEFT_RETURN_IF_ERROR(Sleep(std::max<milliseconds>(o_.settle, seconds(1))));
  std::vector<int64_t> held;
  absl::StatusOr<int64_t> held_sum = ZtunnelRssSum(s, &held);
  auto src1 = Opened(s.nodes[0], "source");
  auto dst1 = Opened(s.nodes[1], "destination");
  const double open_seconds = SecondsSince(t0);
  holder.Terminate(seconds(10));
  WEFT_RETURN_IF_ERROR(WaitOpen(*c.echo, [](int64_t k) { return k == 0; }));
  if (!held_sum.ok()) return held_sum.status();  // a ztunnel died: no use for later counts
  WEFT_RETURN_IF_ERROR(Sleep(std::max<milliseconds>(o_.settle, seconds(1))));
  WEFT_ASSIGN_OR_RETURN(int64_t after_sum, ZtunnelRssSum(s, nullptr));
  if (!src1.ok() || !dst1.ok()) {
    StepFailed(c, n, !src1.ok() ? src1.status() : dst1.status());
    return absl::OkStatus();
  }
  const double counted_out = *src1 - src0, counted_in = *dst1 - dst0;
  for (size_t i = 0; i < s.nodes.size(); i++)
    step.nodes.push_back({static_cast<int>(i), i == 0 ? "client (outbound)" : "server (inbound)",
                          c.base[i], held[i], (held[i] - c.base[i]) / n});
  const int64_t per_conn = (*held_sum - c.base_sum) / n;
  step.ztunnel_rss_bytes = *held_sum;
  step.bytes_per_connection = per_conn;
  step.bytes_per_connection_per_ztunnel = per_conn / 2;
  step.goal_met = per_conn / 2 <= kGoalBytesPerConnPerZtunnel;
  step.ztunnel_rss_after_close_bytes = after_sum;
  step.server_open_connections = server_open;
  step.ztunnel_counted = ZtunnelCounted{counted_out, counted_in};
  step.seconds = open_seconds;
  Log(absl::StrCat("idle connections: ", c.mode, ", ", n, ": ztunnels ", *held_sum >> 10,
                   " KiB (baseline ", c.base_sum >> 10, "), ", per_conn,
                   " B per connection (both ztunnels), ztunnel counted ", counted_out, " out / ",
                   counted_in, " in, server saw ", server_open));
  steps.push_back(step);
  if (server_open < n || counted_out < n || counted_in < n)
    StepFailed(c, n,
               absl::DataLossError(
                   absl::StrCat("not every connection went through both ztunnels: server saw ",
                                server_open, ", ztunnel node0 counted ", counted_out,
                                " outbound, node1 ", counted_in, " inbound, of ", n)));
  return absl::OkStatus();
}

ScaleResult Scale::Run() {
  ScaleResult out;
  const auto t0 = Clock::now();
  for (const auto& mode : o_.modes) {
    for (int n : o_.pod_counts) {
      if (stop_.load()) break;
      auto r = PodsStep(mode, n);
      if (r.ok()) {
        out.pods.push_back(std::move(*r));
      } else if (r.status().code() != absl::StatusCode::kCancelled) {
        errors_.push_back(
            absl::StrCat("scale, mode ", mode, ", ", n, " pods: ", r.status().message()));
        Log(errors_.back());
      }
    }
  }
  out.pods_seconds = SecondsSince(t0);
  const auto t1 = Clock::now();
  for (const auto& mode : o_.modes) {
    if (stop_.load() || o_.connection_counts.empty()) break;
    auto r = ConnectionsMode(mode, out.idle_connections);
    if (r.ok()) {
      out.idle_connection_meshes.push_back(std::move(*r));
    } else if (r.status().code() != absl::StatusCode::kCancelled) {
      errors_.push_back(
          absl::StrCat("scale, mode ", mode, ", idle connections: ", r.status().message()));
      Log(errors_.back());
    }
  }
  out.nodes = o_.nodes;
  out.goal_bytes_per_connection_per_ztunnel = kGoalBytesPerConnPerZtunnel;
  out.note =
      "RSS is VmRSS. bytes_per_connection = (sum of both nodes' ztunnel RSS with N idle "
      "connections held - the same with none) / N. Each cross-node tunnelled connection is held "
      "by two ztunnels (node0 outbound, node1 inbound), so the goal (<= 4 KiB of ztunnel memory "
      "per idle tunnelled connection) is checked per ztunnel: bytes_per_connection_per_ztunnel "
      "= bytes_per_connection / 2 (per-node figures under nodes[]). The baseline is taken after "
      "one warm-up connection; pods run weft-teashop --role idle, spread round-robin over the "
      "nodes; connections are echoed by an in-process server in the server pod's namespace.";
  out.idle_connections_seconds = SecondsSince(t1);
  out.meshes = meshes_;
  out.errors = errors_;
  return out;
}

}  // namespace

ScaleOptions ScaleOptions::Quick() {
  ScaleOptions o;
  o.pod_counts = {10, 40};
  o.connection_counts = {1000, 5000};
  return o;
}

absl::StatusOr<ScaleResult> RunScale(const ScaleOptions& o, const std::atomic<bool>& stop) {
  if (::geteuid() != 0)
    return absl::PermissionDeniedError("scale: weftctl up needs root (namespaces, cgroups)");
  for (const auto& [flag, path] : {std::pair<const char*, const std::string&>{"weftctl", o.weftctl},
                                   {"teashop", o.teashop},
                                   {"bench", o.bench}})
    if (path.empty() || ::access(path.c_str(), X_OK) != 0)
      return absl::InvalidArgumentError(absl::StrCat("scale: ScaleOptions::", flag, " '", path,
                                                     "' is not an executable; build it first"));
  if (o.state_root.empty())
    return absl::InvalidArgumentError("scale: ScaleOptions::state_root is required");
  if (o.nodes < 2)
    return absl::InvalidArgumentError(
        "scale: nodes must be at least 2 (the idle connections cross nodes)");
  for (const auto& m : o.modes)
    if (m != "ebpf" && m != "iptables")
      return absl::InvalidArgumentError(
          absl::StrCat("scale: mode '", m, "': use ebpf or iptables"));
  for (int n : o.pod_counts)
    if (n < 1 || n > 1000)
      return absl::InvalidArgumentError(absl::StrCat("scale: pod count ", n, ": use 1..1000"));
  int max_conns = 0;
  for (int n : o.connection_counts) {
    if (n < 1 || n > 50000)
      return absl::InvalidArgumentError(
          absl::StrCat("scale: connection count ", n, ": use 1..50000"));
    max_conns = std::max(max_conns, n);
  }
  for (const std::string suffix : {"-iptables-conns", "-iptables-p1000"})
    WEFT_RETURN_IF_ERROR(up::ValidateMeshName(o.name_prefix + suffix));

  // One descriptor per connection in the echo server (this process) and in the holder; each
  // ztunnel needs about one per connection too (the app-side socket; the tunnel side shares
  // pooled HBONE connections, 100 streams each). All of them inherit this process's limit
  // (weftctl exec, up, the supervisor and the daemons do not change it). Without
  // CAP_SYS_RESOURCE the hard limit caps what we can ask for.
  WEFT_ASSIGN_OR_RETURN(int64_t nofile, RaiseFdLimit(2 * static_cast<int64_t>(max_conns) + 4096));
  if (nofile < static_cast<int64_t>(max_conns) + 1024)
    return absl::ResourceExhaustedError(
        absl::StrCat("scale: RLIMIT_NOFILE is ", nofile, ", too low for ", max_conns,
                     " connections (each process holding them needs one descriptor per "
                     "connection plus ~1024); lower the counts or raise the hard limit "
                     "(ulimit -Hn)"));

  std::error_code ec;
  std::filesystem::create_directories(o.state_root, ec);
  const std::string work = o.work_dir.empty() ? o.state_root : o.work_dir;
  std::filesystem::create_directories(work, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("scale: cannot create ", work, ": ", ec.message()));

  Scale s(o, stop, work);
  ScaleResult r = s.Run();
  if (stop.load()) return absl::CancelledError("scale: stopped (every mesh made was removed)");
  r.nofile_limit = nofile;
  return r;
}

}  // namespace weft::bench::suite
