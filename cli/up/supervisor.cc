#include "cli/up/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <ostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/localmesh/local_mesh.h"
#include "cli/testbed/testbed.h"
#include "cli/up/kube_proxy.h"
#include "cli/up/plan.h"
#include "common/file.h"
#include "common/log.h"
#include "common/status.h"
#include "common/tls.h"
#include "controlplane/local/local_source.h"

namespace weft::up {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kScope[] = "up";
constexpr milliseconds kInitialBackoff{1000};
constexpr milliseconds kMaxBackoff{30000};
constexpr seconds kStableRun{30};  // a run this long resets the backoff

bool IsExecutable(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

std::string SelfDir() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "" : self.parent_path().string();
}

// The CMake build tree the running binary belongs to (weftctl is <build>/cli/weftctl, the
// benchmark suite <build>/bench/suite/weft-bench-suite): the closest ancestor of its directory
// holding a CMakeCache.txt, if any.
std::string BuildRoot() {
  std::string dir = SelfDir();
  if (dir.empty()) return "";
  for (std::filesystem::path p = std::filesystem::path(dir).parent_path();
       !p.empty() && p != p.root_path(); p = p.parent_path()) {
    if (std::filesystem::exists(p / "CMakeCache.txt")) return p.string();
  }
  return "";
}

std::optional<std::string> SearchTree(const std::string& dir, const std::string& name, int depth) {
  std::error_code ec;
  std::vector<std::string> subdirs;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string base = e.path().filename().string();
    if (e.is_directory(ec)) {
      if (depth > 0 && base != "CMakeFiles" && !base.starts_with(".") && base != "Testing")
        subdirs.push_back(e.path().string());
    } else if (base == name && IsExecutable(e.path().string())) {
      return e.path().string();
    }
  }
  std::sort(subdirs.begin(), subdirs.end());
  for (const auto& d : subdirs)
    if (auto hit = SearchTree(d, name, depth - 1)) return hit;
  return std::nullopt;
}

std::optional<std::string> InPath(const std::string& name) {
  const char* env = std::getenv("PATH");
  std::string path = env && *env ? env : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view d : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string cand = absl::StrCat(d, "/", name);
    if (IsExecutable(cand)) return cand;
  }
  return std::nullopt;
}

std::string BinDirEnv() {
  const char* d = std::getenv("WEFT_BIN_DIR");
  return d && *d ? d : "";
}

// One pod's process and its restart bookkeeping.
struct PodRun {
  const PodPlan* plan = nullptr;
  testbed::PodInfo info;
  std::string hosts_file, dir, log;
  std::string hosts;              // what hosts_file holds
  std::vector<std::string> argv;  // argv[0] resolved
  testbed::Process proc;
  int restarts = 0;
  Clock::time_point started{};
  std::optional<Clock::time_point> restart_at;
  milliseconds backoff = kInitialBackoff;
  bool done = false;  // exited and its restart policy says stay down
};

// A node daemon's restart bookkeeping (the DaemonSet controller's job).
struct DaemonRun {
  std::optional<Clock::time_point> restart_at;
  milliseconds backoff = kInitialBackoff;
  Clock::time_point started = Clock::now();
};

void AppendLine(const std::string& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  f << line << "\n";
}

class Supervisor {
 public:
  Supervisor(UpOptions o) : opts_(std::move(o)), paths_(PathsFor(opts_.state_root, opts_.name)) {}
  ~Supervisor() { Teardown(); }

  absl::Status Start();
  // Until a signal in `sigs`, or until the process `owner` (a pidfd; invalid: none) exits.
  void Loop(const sigset_t& sigs, const UniqueFd& owner);
  void Teardown();
  const MeshState& state() const { return state_; }

 private:
  // Start's steps, in order.
  absl::Status InitState();
  absl::Status PlanMesh(localmesh::Options& lo);
  absl::Status PreparePods(localmesh::Options& lo);
  absl::Status RecordMeshState();
  void WaitForPodPorts();
  absl::Status CheckDaemonsStarted();
  absl::Status StartPod(PodRun& r);
  void CheckPods();
  void CheckDaemons();
  void CheckUpgrades();
  void SyncServiceRules(bool force);
  void SaveState();

  UpOptions opts_;
  MeshPaths paths_;
  MeshState state_;
  Plan plan_;
  std::unique_ptr<localmesh::LocalMesh> mesh_;
  std::vector<PodRun> pods_;
  std::vector<DaemonRun> ztunnels_, agents_;
  DaemonRun weftd_;
  // Runtime manifests as last read: file -> (mtime, size) and its last good objects.
  std::map<std::string, std::pair<int64_t, int64_t>> file_sig_;
  std::map<std::string, std::vector<nlohmann::json>> file_objects_;
  std::string rules_script_;
  bool torn_down_ = false;
};

absl::Status Supervisor::Start() {
  WEFT_RETURN_IF_ERROR(InitState());
  localmesh::Options lo;
  WEFT_RETURN_IF_ERROR(PlanMesh(lo));
  WEFT_RETURN_IF_ERROR(PreparePods(lo));
  LOG_INFO(kScope, "starting the mesh",
           {{"prefix", state_.prefix}, {"nodes", opts_.nodes}, {"pods", plan_.pods.size()}});
  WEFT_ASSIGN_OR_RETURN(mesh_, localmesh::LocalMesh::Start(lo));
  ztunnels_.resize(opts_.nodes);
  agents_.resize(opts_.nodes);
  // The state other commands need, before the pods run (so a failure below is cleanable).
  WEFT_RETURN_IF_ERROR(RecordMeshState());
  SaveState();
  SyncServiceRules(/*force=*/true);

  for (PodRun& r : pods_) WEFT_RETURN_IF_ERROR(StartPod(r));
  WaitForPodPorts();
  // The rules above were written before any pod ran (no ready endpoint): now they have some.
  SyncServiceRules(/*force=*/true);
  WEFT_RETURN_IF_ERROR(CheckDaemonsStarted());
  state_.status = "ready";
  SaveState();
  LOG_INFO(kScope, "mesh ready", {{"name", opts_.name}, {"prefix", state_.prefix}});
  return absl::OkStatus();
}

// The mesh's directories and first state file, recorded before anything exists so that a crash
// from here on is cleanable by name.
absl::Status Supervisor::InitState() {
  state_.name = opts_.name;
  state_.status = "starting";
  state_.supervisor_pid = ::getpid();
  state_.supervisor_start_time = ProcessStartTime(::getpid());
  state_.prefix = testbed::UniquePrefix("up");
  state_.capture = opts_.capture;
  state_.source = opts_.manifest_dir;
  state_.dir = paths_.dir;
  for (const std::string& d : {paths_.manifests, paths_.pods, paths_.logs, paths_.upgrades}) {
    std::error_code ec;
    std::filesystem::create_directories(d, ec);
    if (ec) return absl::InternalError(absl::StrCat("creating ", d, ": ", ec.message()));
  }
  return WriteState(paths_.state_file, state_);
}

// The plan of the manifests, and the local mesh's options (pods come in PreparePods).
absl::Status Supervisor::PlanMesh(localmesh::Options& lo) {
  WEFT_ASSIGN_OR_RETURN(auto objects, LoadManifests(opts_.manifest_dir));
  PlanOptions po;
  po.nodes = opts_.nodes;
  po.prefix = state_.prefix;
  WEFT_ASSIGN_OR_RETURN(plan_, MakePlan(objects, po));
  state_.warnings = plan_.warnings;
  for (const auto& w : plan_.warnings) LOG_WARN(kScope, "manifest", {{"warning", w}});

  lo.role = "up";
  lo.prefix = state_.prefix;
  lo.nodes = opts_.nodes;
  lo.work_dir = paths_.dir;
  lo.capture = opts_.capture;
  lo.log_level = opts_.log_level;
  lo.control_plane = true;
  lo.manifests_dir = paths_.manifests;
  lo.pod_cgroups = true;
  lo.node_named_logs = true;
  WEFT_ASSIGN_OR_RETURN(lo.weftd_bin, FindWeftBinary("weftd", "controlplane/weftd/weftd"));
  WEFT_ASSIGN_OR_RETURN(lo.ztunnel_bin, FindWeftBinary("ztunnel", "ztunnel/app/ztunnel"));
  WEFT_ASSIGN_OR_RETURN(lo.agent_bin, FindWeftBinary("weft-agent", "agent/weft-agent"));
  return absl::OkStatus();
}

// Each pod's resolved command, folder, hosts file and log, its place in the local mesh, and the
// runtime manifests weftd reads.
absl::Status Supervisor::PreparePods(localmesh::Options& lo) {
  pods_.resize(plan_.pods.size());
  for (size_t i = 0; i < plan_.pods.size(); ++i) {
    const PodPlan& p = plan_.pods[i];
    PodRun& r = pods_[i];
    r.plan = &p;
    r.argv = p.argv;
    auto resolved = ResolveCommand(p.argv[0]);
    if (!resolved.ok()) {
      return absl::NotFoundError(absl::StrCat("pod ", p.uid(), ": ", resolved.status().message()));
    }
    r.argv[0] = *resolved;
    r.dir = paths_.PodDir(p.ns, p.name);
    r.hosts_file = r.dir + "/hosts";
    r.log = paths_.PodLog(p.ns, p.name);
    std::error_code ec;
    std::filesystem::create_directories(r.dir, ec);
    r.hosts = HostsFile(plan_, p);
    WEFT_RETURN_IF_ERROR(WriteFileAtomic(r.hosts_file, r.hosts, 0644));
    localmesh::MeshPod mp;
    mp.name = p.name;
    mp.ns = p.ns;
    mp.service_account = p.service_account;
    mp.node = p.node;
    mp.mesh = p.enrolled;
    mp.labels = p.labels;
    mp.workload_name = p.workload;
    mp.testbed_name = p.testbed_name;
    lo.pods.push_back(std::move(mp));
  }
  for (const auto& [file, object] : plan_.RuntimeFiles()) {
    WEFT_RETURN_IF_ERROR(
        WriteFileAtomic(paths_.manifests + "/" + file, object.dump(1) + "\n", 0644));
  }
  return absl::OkStatus();
}

// weftd, the nodes, the services and the pods as the other weftctl commands see them.
absl::Status Supervisor::RecordMeshState() {
  auto& tb = mesh_->testbed();
  const std::string n0 = tb.nodes()[0].ip.ToString();
  state_.weftd = {tb.nodes()[0].netns, mesh_->WeftdAddress(),      n0 + ":15010",     n0 + ":15014",
                  n0 + ":15015",       paths_.logs + "/weftd.log", mesh_->weftd_pid()};
  for (const auto& n : tb.nodes()) {
    NodeState ns;
    ns.name = absl::StrCat("node", n.index);
    ns.netns = n.netns;
    ns.ip = n.ip.ToString();
    ns.metrics = ns.ip + ":15020";
    ns.admin = "127.0.0.1:15000";  // ztunnel's default admin address, in the node's netns
    ns.ztunnel_log = mesh_->DaemonLogPath("ztunnel", n.index);
    ns.agent_log = mesh_->DaemonLogPath("agent", n.index);
    state_.nodes.push_back(ns);
  }
  for (const ServicePlan& s : plan_.services) {
    ServiceState ss{s.ns, s.name, s.cluster_ip, {}};
    for (const auto& p : s.ports) {
      std::string target = p.target_port.is_null()     ? std::to_string(p.port)
                           : p.target_port.is_string() ? p.target_port.get<std::string>()
                                                       : p.target_port.dump();
      ss.ports.push_back(absl::StrCat(p.port, "->", target, "/", p.protocol));
    }
    state_.services.push_back(std::move(ss));
  }
  for (PodRun& r : pods_) {
    WEFT_ASSIGN_OR_RETURN(r.info, tb.Pod(r.plan->testbed_name));
    PodState ps;
    ps.ns = r.plan->ns;
    ps.name = r.plan->name;
    ps.workload = r.plan->workload;
    ps.node = r.plan->node;
    ps.ip = r.info.ip.ToString();
    ps.ip6 = r.info.ip6 ? r.info.ip6->ToString() : "";
    ps.netns = r.info.netns;
    ps.cgroup = r.info.cgroup;
    ps.hosts_file = r.hosts_file;
    ps.log = r.log;
    ps.working_dir = r.plan->working_dir.empty() ? r.dir : r.plan->working_dir;
    ps.enrolled = r.plan->enrolled;
    ps.argv = r.argv;
    for (const auto& [k, v] : r.plan->env) ps.env.push_back({k, v});
    state_.pods.push_back(std::move(ps));
  }
  return absl::OkStatus();
}

// Declared TCP ports accepting: the closest thing to readiness without probes. A pod that does
// not accept within 15 s is a warning, not an error.
void Supervisor::WaitForPodPorts() {
  auto deadline = Clock::now() + seconds(15);
  for (PodRun& r : pods_) {
    for (const ContainerPort& cp : r.plan->ports) {
      if (cp.protocol != "TCP") continue;
      bool up = false;
      while (!up && Clock::now() < deadline && r.proc.Alive()) {
        up = testbed::WaitTcp(r.info.netns, SockAddr{*IpAddr::Parse("127.0.0.1"), cp.port},
                              milliseconds(150))
                 .ok() ||
             testbed::WaitTcp(r.info.netns, SockAddr{r.info.ip, cp.port}, milliseconds(150)).ok();
      }
      if (!up) {
        std::string w = absl::StrCat("pod ", r.plan->uid(), ": nothing accepts on port ", cp.port,
                                     " yet; see ", r.log);
        LOG_WARN(kScope, "pod not listening", {{"warning", w}});
        state_.warnings.push_back(w);
      }
    }
  }
}

// A daemon that refused its flags or crashed at start would otherwise only show later.
absl::Status Supervisor::CheckDaemonsStarted() {
  for (int n = 0; n < opts_.nodes; ++n) {
    for (const char* d : {"ztunnel", "agent"}) {
      bool alive = std::string(d) == "ztunnel" ? mesh_->ZtunnelAlive(n) : mesh_->AgentAlive(n);
      if (!alive) {
        std::ifstream f(mesh_->DaemonLogPath(d, n));
        std::string log((std::istreambuf_iterator<char>(f)), {});
        if (log.size() > 2000) log = "..." + log.substr(log.size() - 2000);
        return absl::UnavailableError(
            absl::StrCat(d, " on node", n, " exited at start; its log:\n", log));
      }
    }
  }
  if (!mesh_->WeftdAlive()) {
    return absl::UnavailableError("weftd exited at start; see " + state_.weftd.log);
  }
  return absl::OkStatus();
}

absl::Status Supervisor::StartPod(PodRun& r) {
  testbed::SpawnOptions so;
  so.env = r.plan->env;
  so.clear_env = true;
  so.cgroup = r.info.cgroup;
  so.bind_mounts = {{r.hosts_file, "/etc/hosts"}};
  so.hostname = r.plan->name.substr(0, 63);
  so.cwd = r.plan->working_dir.empty() ? r.dir : r.plan->working_dir;
  so.append_log = true;
  so.die_with_parent = true;  // only the main thread spawns; the pods die with the supervisor
  auto p = testbed::Spawn(r.info.netns, r.argv, r.log, so);
  if (!p.ok()) {
    return absl::Status(p.status().code(),
                        absl::StrCat("pod ", r.plan->uid(), ": ", p.status().message()));
  }
  r.proc = std::move(*p);
  r.started = Clock::now();
  r.restart_at.reset();
  LOG_INFO(kScope, "pod process started",
           {{"pod", r.plan->uid()}, {"pid", r.proc.pid()}, {"restarts", r.restarts}});
  return absl::OkStatus();
}

void Supervisor::CheckPods() {
  bool changed = false;
  auto now = Clock::now();
  for (size_t i = 0; i < pods_.size(); ++i) {
    PodRun& r = pods_[i];
    if (r.done) continue;
    if (r.restart_at) {
      if (now < *r.restart_at) continue;
      ++r.restarts;
      absl::Status st = StartPod(r);
      if (!st.ok()) {
        LOG_ERROR(kScope, "pod restart failed", {{"pod", r.plan->uid()}, {"error", st.ToString()}});
        r.backoff = std::min(r.backoff * 2, kMaxBackoff);
        r.restart_at = now + r.backoff;
      }
      changed = true;
      continue;
    }
    if (!r.proc.valid() || r.proc.Alive()) continue;
    int status = r.proc.exit_status().value_or(-1);
    const std::string& policy = r.plan->restart_policy;
    bool restart = policy == "Always" || (policy == "OnFailure" && status != 0);
    if (now - r.started >= kStableRun) r.backoff = kInitialBackoff;
    std::string msg =
        restart ? absl::StrCat("weftctl: pod ", r.plan->uid(), " exited with status ", status,
                               "; restart ", r.restarts + 1, " in ", r.backoff.count(), " ms")
                : absl::StrCat("weftctl: pod ", r.plan->uid(), " exited with status ", status,
                               "; restartPolicy ", policy, ": not restarted");
    AppendLine(r.log, msg);
    LOG_WARN(kScope, "pod process exited",
             {{"pod", r.plan->uid()},
              {"status", status},
              {"restart", restart},
              {"backoff_ms", r.backoff.count()}});
    if (restart) {
      r.restart_at = now + r.backoff;
      r.backoff = std::min(r.backoff * 2, kMaxBackoff);
    } else {
      r.done = true;
    }
    changed = true;
  }
  if (changed) {
    for (size_t i = 0; i < pods_.size(); ++i) {
      state_.pods[i].pid = pods_[i].proc.valid() && pods_[i].proc.Alive() ? pods_[i].proc.pid() : 0;
      state_.pods[i].restarts = pods_[i].restarts;
    }
    SaveState();
    SyncServiceRules(/*force=*/true);  // a dead pod is no ready endpoint
  }
}

void Supervisor::CheckDaemons() {
  auto now = Clock::now();
  auto check = [&](DaemonRun& d, bool alive, const std::string& what, auto restart) {
    if (alive) {
      if (now - d.started >= kStableRun) d.backoff = kInitialBackoff;
      return;
    }
    if (!d.restart_at) {
      LOG_WARN(kScope, "daemon exited; restarting",
               {{"daemon", what}, {"backoff_ms", d.backoff.count()}});
      d.restart_at = now + d.backoff;
      d.backoff = std::min(d.backoff * 2, kMaxBackoff);
      return;
    }
    if (now < *d.restart_at) return;
    absl::Status st = restart();
    d.started = Clock::now();
    if (st.ok()) {
      d.restart_at.reset();
      LOG_INFO(kScope, "daemon restarted", {{"daemon", what}});
    } else {
      LOG_ERROR(kScope, "daemon restart failed", {{"daemon", what}, {"error", st.ToString()}});
      d.restart_at = Clock::now() + d.backoff;
      d.backoff = std::min(d.backoff * 2, kMaxBackoff);
    }
    SaveState();
  };
  check(weftd_, mesh_->WeftdAlive(), "weftd", [&] { return mesh_->StartWeftd(); });
  for (int n = 0; n < opts_.nodes; ++n) {
    check(ztunnels_[n], mesh_->ZtunnelAlive(n), absl::StrCat("ztunnel node", n),
          [&] { return mesh_->StartZtunnel(n); });
    check(agents_[n], mesh_->AgentAlive(n), absl::StrCat("agent node", n),
          [&] { return mesh_->StartAgent(n); });
  }
}

// `weftctl upgrade ztunnel` requests (upgrades/<node>.request.json): the new ztunnel takes the
// node's listeners over while the old one drains (LocalMesh::UpgradeZtunnel); the answer goes
// to upgrades/<node>.result.json.
void Supervisor::CheckUpgrades() {
  if (mesh_) mesh_->ReapDraining();
  std::error_code ec;
  std::vector<std::string> requests;
  for (const auto& e : std::filesystem::directory_iterator(paths_.upgrades, ec)) {
    std::string f = e.path().string();
    if (f.ends_with(".request.json")) requests.push_back(f);
  }
  std::sort(requests.begin(), requests.end());
  for (const std::string& f : requests) {
    auto text = ReadFile(f);
    std::filesystem::remove(f, ec);
    if (!text.ok()) continue;
    UpgradeResult res;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    UpgradeRequest req;
    if (j.is_object()) req = j.get<UpgradeRequest>();
    res.id = req.id;
    res.node = req.node;
    auto node = FindNode(state_, req.node);
    if (!j.is_object() || req.id.empty()) {
      res.error = "malformed upgrade request " + f;
    } else if (!node.ok()) {
      res.error = std::string(node.status().message());
    } else {
      int n = static_cast<int>(*node - state_.nodes.data());
      LOG_INFO(kScope, "upgrading ztunnel", {{"node", req.node}, {"binary", req.binary}});
      auto u = mesh_->UpgradeZtunnel(n, req.binary, milliseconds(req.drain_deadline_ms));
      if (u.ok()) {
        res.ok = true;
        res.old_pid = u->old_pid;
        res.new_pid = u->new_pid;
        res.drain_deadline_ms = u->drain_deadline.count();
        ztunnels_[n] = DaemonRun{};
        LOG_INFO(kScope, "ztunnel upgraded; the old one drains",
                 {{"node", req.node}, {"old_pid", u->old_pid}, {"new_pid", u->new_pid}});
      } else {
        res.error = std::string(u.status().message());
        LOG_ERROR(kScope, "ztunnel upgrade failed", {{"node", req.node}, {"error", res.error}});
      }
      SaveState();
    }
    std::string out =
        paths_.upgrades + "/" + (res.node.empty() ? "unknown" : res.node) + ".result.json";
    absl::Status st = WriteFileAtomic(out, nlohmann::json(res).dump() + "\n", 0644);
    if (!st.ok()) LOG_ERROR(kScope, "cannot write the upgrade result", {{"error", st.ToString()}});
  }
}

void Supervisor::SyncServiceRules(bool force) {
  // Re-read the runtime manifests when a file changed (label/apply/delete edit them).
  std::map<std::string, std::pair<int64_t, int64_t>> sig;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(paths_.manifests, ec)) {
    std::string f = e.path().string();
    if (!f.ends_with(".json") && !f.ends_with(".yaml") && !f.ends_with(".yml")) continue;
    struct stat st;
    if (::stat(f.c_str(), &st) != 0) continue;
    sig[f] = {static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
              static_cast<int64_t>(st.st_size)};
  }
  if (sig == file_sig_ && !force) return;
  const std::string signature = ManifestsSignature(paths_.manifests);
  for (auto it = file_objects_.begin(); it != file_objects_.end();) {
    it = sig.count(it->first) ? std::next(it) : file_objects_.erase(it);
  }
  for (const auto& [f, s] : sig) {
    auto old = file_sig_.find(f);
    if (old != file_sig_.end() && old->second == s && file_objects_.count(f)) continue;
    auto objs = cp::LoadManifestFile(f);
    if (objs.ok()) file_objects_[f] = std::move(*objs);  // a broken file keeps its last good
  }
  file_sig_ = std::move(sig);
  std::vector<nlohmann::json> all;
  for (const auto& [f, objs] : file_objects_) all.insert(all.end(), objs.begin(), objs.end());

  // Name resolution follows the Services: the hosts files are rewritten in place (the bind
  // mounts hold their inodes).
  for (size_t i = 0; i < pods_.size(); ++i) {
    PodRun& r = pods_[i];
    std::string hosts = HostsFile(all, r.plan->ns, r.plan->name, r.info.ip, r.info.ip6);
    if (hosts == r.hosts) continue;
    std::ofstream f(r.hosts_file, std::ios::trunc);
    f << hosts;
    f.flush();
    if (f) r.hosts = std::move(hosts);
  }
  std::vector<ServiceState> services;
  for (const auto& o : all) {
    if (o.value("kind", "") != "Service") continue;
    ServiceState ss;
    ss.ns = o["metadata"].value("namespace", "default");
    ss.name = o["metadata"].value("name", "");
    const nlohmann::json& spec = o.contains("spec") ? o["spec"] : nlohmann::json::object();
    ss.cluster_ip = spec.value("clusterIP", "");
    if (ss.cluster_ip == "None") ss.cluster_ip.clear();
    if (spec.contains("ports") && spec["ports"].is_array()) {
      for (const auto& p : spec["ports"]) {
        std::string target = !p.contains("targetPort")     ? std::to_string(p.value("port", 0))
                             : p["targetPort"].is_string() ? p["targetPort"].get<std::string>()
                                                           : p["targetPort"].dump();
        ss.ports.push_back(
            absl::StrCat(p.value("port", 0), "->", target, "/", p.value("protocol", "TCP")));
      }
    }
    services.push_back(std::move(ss));
  }

  std::map<std::string, bool> ready;
  for (const PodRun& r : pods_) {
    ready[r.plan->uid()] = r.proc.valid() && !r.proc.exit_status() && !r.restart_at && !r.done;
  }
  auto rules = ComputeServiceRules(all, [&](const std::string& ns, const std::string& name) {
    auto it = ready.find(ns + "/" + name);
    return it != ready.end() && it->second;
  });
  std::string script = IptablesRestoreScript(rules);
  if (script != rules_script_) {
    for (const auto& n : mesh_->testbed().nodes()) {
      auto r = testbed::Exec(n.netns, {"iptables-restore"}, script, seconds(10));
      if (!r.ok()) {
        LOG_ERROR(kScope, "cannot program the service rules",
                  {{"node", n.netns}, {"error", r.status().ToString()}});
        file_sig_.clear();  // retried at the next tick
        return;
      }
    }
    rules_script_ = std::move(script);
    size_t endpoints = 0;
    for (const auto& r : rules) endpoints += r.endpoints.size();
    LOG_INFO(kScope, "service rules programmed",
             {{"service_ports", rules.size()}, {"endpoints", endpoints}});
  }
  // Tell label/apply/delete --wait that this state of the manifests is in force.
  if (signature != state_.synced_manifests || services.size() != state_.services.size()) {
    state_.synced_manifests = signature;
    if (mesh_) state_.services = std::move(services);
    SaveState();
  }
}

void Supervisor::SaveState() {
  if (mesh_) {
    state_.weftd.pid = mesh_->weftd_pid();
    for (size_t n = 0; n < state_.nodes.size(); ++n) {
      state_.nodes[n].ztunnel_pid = mesh_->ztunnel_pid(static_cast<int>(n));
      state_.nodes[n].agent_pid = mesh_->agent_pid(static_cast<int>(n));
    }
  }
  for (size_t i = 0; i < pods_.size() && i < state_.pods.size(); ++i) {
    if (pods_[i].proc.valid() && !pods_[i].proc.exit_status())
      state_.pods[i].pid = pods_[i].proc.pid();
  }
  absl::Status st = WriteState(paths_.state_file, state_);
  if (!st.ok()) LOG_ERROR(kScope, "cannot write the state file", {{"error", st.ToString()}});
}

void Supervisor::Loop(const sigset_t& sigs, const UniqueFd& owner) {
  while (true) {
    timespec tick{0, 250 * 1000 * 1000};
    int sig = ::sigtimedwait(&sigs, nullptr, &tick);
    if (sig > 0) {
      LOG_INFO(kScope, "signal received; tearing the mesh down", {{"signal", strsignal(sig)}});
      return;
    }
    pollfd p{owner.get(), POLLIN, 0};
    if (owner.valid() && ::poll(&p, 1, 0) > 0) {
      LOG_INFO(kScope, "the owner process exited; tearing the mesh down",
               {{"owner_pid", std::to_string(opts_.owner_pid)}});
      return;
    }
    CheckPods();
    CheckDaemons();
    CheckUpgrades();
    SyncServiceRules(/*force=*/false);
  }
}

void Supervisor::Teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  state_.status = "stopping";
  (void)WriteState(paths_.state_file, state_);
  // The apps first (SIGTERM to all, then a shared grace period), then the mesh under them.
  for (PodRun& r : pods_)
    if (r.proc.valid() && r.proc.Alive()) (void)r.proc.Kill(SIGTERM);
  auto deadline = Clock::now() + seconds(5);
  for (PodRun& r : pods_) {
    if (!r.proc.valid()) continue;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (!r.proc.Wait(std::max(left, milliseconds(1))).ok()) r.proc.Terminate(milliseconds(1));
  }
  std::string prefix = state_.prefix;
  mesh_.reset();  // daemons, then the testbed: namespaces, cgroups, pins, their iptables
  if (!prefix.empty()) {
    auto left = testbed::TestbedLeftovers(prefix);
    if (!left.empty()) {
      LOG_WARN(kScope, "leftovers after teardown; removing", {{"left", absl::StrJoin(left, " ")}});
      (void)testbed::RemoveTestbed(prefix);
    }
  }
  std::error_code ec;
  std::filesystem::remove(paths_.state_file, ec);
  LOG_INFO(kScope, "mesh stopped", {{"name", opts_.name}});
}

std::string Pad(std::string s, size_t w) {
  if (s.size() < w) s.resize(w, ' ');
  return s + "  ";
}

}  // namespace

absl::StatusOr<std::string> FindWeftBinary(const std::string& name, const std::string& build_rel) {
  std::vector<std::string> tried;
  if (std::string d = BinDirEnv(); !d.empty()) tried.push_back(d + "/" + name);
  if (std::string b = BuildRoot(); !b.empty()) tried.push_back(b + "/" + build_rel);
  if (std::string s = SelfDir(); !s.empty()) tried.push_back(s + "/" + name);
  for (const auto& t : tried)
    if (IsExecutable(t)) return t;
  if (auto p = InPath(name)) return *p;
  return absl::NotFoundError(absl::StrCat("cannot find ", name, " (tried ",
                                          absl::StrJoin(tried, ", "),
                                          " and PATH); build it or set WEFT_BIN_DIR"));
}

absl::StatusOr<std::string> ResolveCommand(const std::string& cmd) {
  if (cmd.empty()) return absl::InvalidArgumentError("empty command");
  if (cmd.front() == '/') {
    if (IsExecutable(cmd)) return cmd;
    return absl::NotFoundError(absl::StrCat(cmd, " is not an executable file"));
  }
  if (cmd.find('/') == std::string::npos) {
    if (std::string d = BinDirEnv(); !d.empty() && IsExecutable(d + "/" + cmd))
      return d + "/" + cmd;
    if (std::string b = BuildRoot(); !b.empty()) {
      if (auto hit = SearchTree(b, cmd, 4)) return *hit;
    }
    if (auto p = InPath(cmd)) return *p;
  } else if (IsExecutable(cmd)) {
    return std::filesystem::absolute(cmd).string();
  }
  return absl::NotFoundError(absl::StrCat(
      "command \"", cmd,
      "\" not found ($WEFT_BIN_DIR, the build tree next to weftctl, PATH); give an absolute "
      "path or build it"));
}

void PrintSummary(const MeshState& s, std::ostream& out) {
  out << "mesh \"" << s.name << "\" is up: " << s.nodes.size() << " nodes, capture " << s.capture
      << ", supervisor pid " << s.supervisor_pid << "\n\n";
  out << Pad("POD", 36) << Pad("NODE", 6) << Pad("IP", 14) << Pad("ENROLLED", 8) << "PID\n";
  for (const PodState& p : s.pods) {
    out << Pad(p.ns + "/" + p.name, 36) << Pad("node" + std::to_string(p.node), 6) << Pad(p.ip, 14)
        << Pad(p.enrolled ? "yes" : "no", 8) << p.pid << "\n";
  }
  if (!s.services.empty()) {
    out << "\n" << Pad("SERVICE", 36) << Pad("CLUSTER-IP", 14) << "PORTS\n";
    for (const ServiceState& v : s.services) {
      out << Pad(v.ns + "/" + v.name, 36) << Pad(v.cluster_ip.empty() ? "None" : v.cluster_ip, 14)
          << absl::StrJoin(v.ports, ",") << "\n";
    }
  }
  for (const auto& w : s.warnings) out << "\nwarning: " << w;
  if (!s.warnings.empty()) out << "\n";
  out << "\nstate and logs: " << s.dir << " (logs/: weftd.log, ztunnel-node<i>.log, "
      << "agent-node<i>.log, pod-<ns>-<name>.log)\n"
      << "  weftctl logs POD | weftctl logs ztunnel node0 | weftctl exec POD -- CMD\n"
      << "  weftctl label namespace NS weft.dev/mesh=enabled   (enrol its pods)\n"
      << "  weftctl down" << (s.name == "weft" ? "" : " --name " + s.name) << "\n";
}

int RunSupervisor(const UpOptions& opts, int ready_fd, std::ostream& out) {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  weft::log::Level level;
  if (weft::log::ParseLevel(opts.log_level, &level)) weft::log::SetLevel(level);

  auto notify = [&](const std::string& msg) {
    if (ready_fd < 0) return;
    std::string line = msg + "\n";
    ssize_t n = ::write(ready_fd, line.data(), line.size());
    (void)n;
    ::close(ready_fd);
    ready_fd = -1;
  };
  // The owner is watched through a pidfd, which cannot be confused with a later process that
  // reuses the pid. Opened before anything starts: an owner already gone is an error.
  UniqueFd owner;
  if (opts.owner_pid > 0) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, opts.owner_pid, 0));
    if (fd < 0) {
      std::string why = absl::StrCat("--owner-pid ", opts.owner_pid, ": ", std::strerror(errno));
      LOG_ERROR(kScope, "the mesh did not start", {{"error", why}});
      if (ready_fd < 0) out << "weftctl up: " << why << "\n";
      notify("error: " + why);
      return 1;
    }
    owner.reset(fd);
  }
  Supervisor sup(opts);
  absl::Status st = sup.Start();
  if (!st.ok()) {
    LOG_ERROR(kScope, "the mesh did not start", {{"error", st.ToString()}});
    sup.Teardown();
    if (ready_fd < 0) out << "weftctl up: " << st.message() << "\n";
    notify("error: " + std::string(st.message()));
    return 1;
  }
  if (ready_fd < 0) {
    PrintSummary(sup.state(), out);
    out << "\nrunning in the foreground: Ctrl-C tears the mesh down\n" << std::flush;
  }
  notify("ok");
  sup.Loop(sigs, owner);
  sup.Teardown();
  return 0;
}

}  // namespace weft::up
