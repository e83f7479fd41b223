#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/testbed/testbed.h"
#include "cli/up/plan.h"
#include "cli/up/state.h"
#include "cli/up/supervisor.h"
#include "cli/up/up.h"
#include "common/file.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/status.h"
#include "common/tls.h"
#include "common/unique_fd.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"

namespace weft::up {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kOk = 0, kFail = 1, kUsage = 2;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Flags every local-mesh command shares, plus the command's own.
struct Flags {
  std::string name = "weft";
  std::string state_root;
  std::vector<std::string> positional;
  std::vector<std::string> files;  // -f
  std::vector<std::string> rest;   // after --
  bool wait = false, overwrite = false, follow = false, foreground = false;
  int nodes = 2;
  int timeout_s = 60;
  int owner_pid = 0;
  std::string capture = "auto", log_level = "info", ns;
};

// A command's parser, named "weftctl CMD", with --name and --state-root.
std::unique_ptr<CLI::App> MeshApp(const std::string& cmd, const std::string& description,
                                  Flags& f) {
  auto app = std::make_unique<CLI::App>(description, "weftctl " + cmd);
  AddMeshFlags(*app, &f.name, &f.state_root);
  return app;
}

void AddTimeout(CLI::App& app, Flags& f, const std::string& what) {
  app.add_option("--timeout", f.timeout_s, what)
      ->type_name("SEC")
      ->check(Positive())
      ->capture_default_str();
}

void AddWait(CLI::App& app, Flags& f, const std::string& what) {
  app.add_flag("--wait", f.wait, what);
  AddTimeout(app, f, "for --wait");
}

int UsageError(std::ostream& err, const std::string& cmd, const std::string& msg) {
  err << "weftctl " << cmd << ": " << msg << "\nRun 'weftctl " << cmd << " --help'.\n";
  return kUsage;
}

int Failure(std::ostream& err, const std::string& cmd, const absl::Status& st) {
  err << "weftctl " << cmd << ": " << st.message() << "\n";
  return kFail;
}

// Prints `st` as Failure does and hands it back.
absl::Status Failed(std::ostream& err, const std::string& cmd, const absl::Status& st) {
  Failure(err, cmd, st);
  return st;
}

// An exclusive lock on the runtime manifest dir for read-modify-write edits.
class ManifestLock {
 public:
  explicit ManifestLock(const std::string& path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_) {
      while (::flock(fd_.get(), LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }

 private:
  UniqueFd fd_;
};

// A mesh whose supervisor runs; a crashed one is reported with what to do.
absl::StatusOr<MeshState> LoadLiveMesh(const std::string& root, const std::string& name) {
  WEFT_ASSIGN_OR_RETURN(MeshState s, LoadMesh(root, name));
  if (!SupervisorAlive(s)) {
    return absl::FailedPreconditionError(
        absl::StrCat("mesh \"", name, "\" is not running (its supervisor, pid ", s.supervisor_pid,
                     ", is gone); `weftctl down", name == "weft" ? "" : " --name " + name,
                     "` removes its remains, `weftctl up` starts it again"));
  }
  if (s.status != "ready") {
    return absl::UnavailableError(
        absl::StrCat("mesh \"", name, "\" is ", s.status, "; try again when it is ready"));
  }
  return s;
}

// ---- weftd: /status and waiting for the nodes to ACK a change --------------------------------

absl::StatusOr<json> WeftdStatus(const MeshState& s) {
  WEFT_ASSIGN_OR_RETURN(UniqueFd ns, OpenNetns(testbed::NetnsPath(s.weftd.netns)));
  WEFT_ASSIGN_OR_RETURN(SockAddr addr, SockAddr::Parse(s.weftd.admin));
  WEFT_ASSIGN_OR_RETURN(std::string body, HttpGet(addr, "/status", ns.get(), nullptr, 3000));
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.contains("model_generation")) {
    return absl::InternalError("weftd's /status is not the expected JSON: " + body);
  }
  return j;
}

std::string Fingerprint(const json& status) {
  return json{status["model_generation"], status["rejected"], status["file_errors"]}.dump();
}

std::map<std::string, std::string> SentVersions(const json& status) {
  std::map<std::string, std::string> out;
  if (status.contains("streams") && status["streams"].is_array())
    for (const auto& s : status["streams"])
      out[s.value("component", "") + "/" + s.value("node", "")] = s.value("version_sent", "");
  return out;
}

// Waits until weftd's model moved past `before` (a /status document), the change reached the
// nodes (a stream was sent a new version, or a second passed: a policy change only goes to the
// nodes it applies to) and every connected stream (at least one ztunnel per node) ACKed what it
// was sent, twice 300 ms apart (weftd debounces changes before pushing).
absl::Status WaitSettled(const MeshState& s, const json& before, seconds timeout) {
  auto deadline = Clock::now() + timeout;
  const std::string fp = Fingerprint(before);
  const auto sent_before = SentVersions(before);
  std::string last;
  std::optional<Clock::time_point> moved_at;
  auto all_acked = [&](const json& st) {
    size_t ztunnels = 0;
    bool acked = true;
    for (const auto& stream : st["streams"]) {
      if (!stream.value("connected", false)) continue;
      if (stream.value("component", "") == "ztunnel") ++ztunnels;
      acked &= stream.value("version_acked", "") == stream.value("version_sent", "x");
    }
    return acked && ztunnels >= s.nodes.size();
  };
  while (Clock::now() < deadline) {
    auto st = WeftdStatus(s);
    if (st.ok()) {
      last = st->dump();
      if (!moved_at && Fingerprint(*st) != fp) moved_at = Clock::now();
      bool pushed =
          moved_at && (SentVersions(*st) != sent_before || Clock::now() - *moved_at > seconds(1));
      if (pushed && all_acked(*st)) {
        std::this_thread::sleep_for(milliseconds(300));
        auto again = WeftdStatus(s);
        if (again.ok() && all_acked(*again)) return absl::OkStatus();
      }
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the nodes did not ACK weftd's new configuration within ", timeout.count(),
                   " s; weftd /status: ", last));
}

// Waits until the supervisor runs the service rules and hosts files of the manifests as they
// are now.
absl::Status WaitSynced(const MeshPaths& paths, seconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto st = ReadState(paths.state_file);
    if (!st.ok()) return st.status();
    if (st->synced_manifests == ManifestsSignature(paths.manifests)) return absl::OkStatus();
    std::this_thread::sleep_for(milliseconds(50));
  }
  return absl::DeadlineExceededError(
      "the supervisor did not pick up the change; see `weftctl logs supervisor`");
}

// Whether ztunnel's HBONE listener exists in the pod (the pod is enrolled).
bool HboneListening(const PodState& p) {
  auto ip = IpAddr::Parse(p.ip);
  return ip.ok() && testbed::WaitTcp(p.netns, SockAddr{*ip, 15008}, milliseconds(1)).ok();
}

Labels LabelsOf(const json& o) {
  Labels out;
  if (o.contains("metadata") && o["metadata"].contains("labels") &&
      o["metadata"]["labels"].is_object())
    for (auto& [k, v] : o["metadata"]["labels"].items())
      if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

absl::StatusOr<json> ReadObject(const std::string& path) {
  WEFT_ASSIGN_OR_RETURN(auto objs, cp::LoadManifestFile(path));
  if (objs.size() != 1) return absl::InternalError(path + " does not hold exactly one object");
  return objs[0];
}

// After a label change: waits until every pod that should be enrolled (per the runtime
// manifests) has ztunnel's HBONE listener in its namespace. Unenrolment needs no wait beyond the
// ACK: the agent removes the capture before it ACKs, while ztunnel may keep draining open HBONE
// connections (and so a listener) for a while.
absl::Status WaitEnrolment(const MeshState& s, const MeshPaths& paths, seconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (const PodState& p : s.pods) {
    auto ns_obj = ReadObject(paths.manifests + "/" + ObjectFileName("Namespace", "", p.ns));
    auto pod_obj = ReadObject(paths.manifests + "/" + ObjectFileName("Pod", p.ns, p.name));
    if (!Enrolled(ns_obj.ok() ? LabelsOf(*ns_obj) : Labels{},
                  pod_obj.ok() ? LabelsOf(*pod_obj) : Labels{}))
      continue;
    while (!HboneListening(p)) {
      if (Clock::now() > deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("pod ", p.ns, "/", p.name, " is still not enrolled after ",
                         timeout.count(), " s; see `weftctl logs agent node", p.node, "`"));
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  return absl::OkStatus();
}

// ---- up -------------------------------------------------------------------------------------

std::unique_ptr<CLI::App> UpApp(Flags& f) {
  auto app = MeshApp(
      "up",
      "Runs a whole mesh on this host without Kubernetes (root): N nodes and one pod per Pod\n"
      "(or Deployment replica) in the manifests as network namespaces and cgroups, weftd on\n"
      "the manifests, one weft-agent and one ztunnel per node, and each pod's\n"
      "spec.containers[0].command + args as a process in its pod. Services get cluster IPs\n"
      "(reachable from unenrolled pods through kube-proxy-like rules in the nodes) and names\n"
      "(NAME.NS.svc.cluster.local, NAME.NS in each pod's /etc/hosts). Pods are enrolled when\n"
      "their namespace has weft.dev/mesh=enabled (see weftctl label).\n"
      "\n"
      "By default a supervisor process keeps the mesh running in the background and up\n"
      "returns once it is ready; `weftctl down` removes everything.",
      f);
  app->add_option("MANIFEST_DIR", f.positional, "the manifests (YAML or JSON files)")
      ->required()
      ->expected(1);
  app->add_option("--nodes", f.nodes, "nodes node0..node<N-1>")
      ->type_name("N")
      ->check(Positive())
      ->capture_default_str();
  app->add_option("--capture", f.capture,
                  "ebpf | iptables | auto (auto: eBPF where the kernel can)")
      ->type_name("MODE")
      ->check(CLI::IsMember({"ebpf", "iptables", "auto"}))
      ->capture_default_str();
  app->add_flag("--foreground", f.foreground,
                "stay attached; Ctrl-C or SIGTERM tears the mesh down");
  app->add_option("--log-level", f.log_level, "of weftd, ztunnel and the agents")
      ->type_name("LEVEL")
      ->capture_default_str();
  app->add_option("--owner-pid", f.owner_pid,
                  "tear the mesh down when this process exits (tests pass their own pid)")
      ->type_name("PID")
      ->check(Positive());
  app->footer(
      "Commands (binaries) are found as: absolute path, $WEFT_BIN_DIR/<cmd>, the build tree\n"
      "weftctl runs from, PATH.");
  return app;
}

// Removes what a mesh whose supervisor died left behind. True if there was such a mesh.
absl::StatusOr<bool> CleanCrashed(const MeshPaths& paths, std::ostream& out) {
  auto prev = ReadState(paths.state_file);
  if (!prev.ok()) return false;
  if (SupervisorAlive(*prev)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "mesh \"", prev->name, "\" is already up (supervisor pid ", prev->supervisor_pid,
        "); run `weftctl down", prev->name == "weft" ? "" : " --name " + prev->name,
        "` first, or pick another --name"));
  }
  if (!prev->prefix.empty()) {
    WEFT_ASSIGN_OR_RETURN(auto removed, testbed::RemoveTestbed(prev->prefix));
    out << "removed the remains of mesh \"" << prev->name << "\" (its supervisor, pid "
        << prev->supervisor_pid << ", is gone): " << removed.size() << " namespaces\n";
  }
  std::error_code ec;
  std::filesystem::remove(paths.state_file, ec);
  return true;
}

// Checks the manifests here, so that mistakes are reported on this terminal (as weftd and the
// supervisor would find them). Returns the number of pods; the problems are on `err`.
absl::StatusOr<size_t> CheckManifests(const UpOptions& o, std::ostream& err) {
  auto objects = LoadManifests(o.manifest_dir);
  if (!objects.ok()) return Failed(err, "up", objects.status());
  PlanOptions po;
  po.nodes = o.nodes;
  auto plan = MakePlan(*objects, po);
  if (!plan.ok()) return Failed(err, "up", plan.status());
  const log::Level level = log::GetLevel();
  log::SetLevel(log::Level::kError);
  // As the mesh's weftd will read them: pods may name the namespaces the plan gave them.
  cp::Model model(cp::ModelOptions{.pod_netns_prefix = testbed::NetnsPath(po.prefix + "-")});
  for (const auto& [file, obj] : plan->RuntimeFiles())
    (void)model.Apply({cp::ObjectEvent::Type::kUpsert, file, obj["kind"].get<std::string>(), obj});
  log::SetLevel(level);
  auto rejected = model.Rejected();
  if (!rejected.empty()) {
    for (const auto& r : rejected)
      err << "weftctl up: " << r.kind << " " << (r.ns.empty() ? "" : r.ns + "/") << r.name << ": "
          << r.reason << "\n";
    err << "weftctl up: fix the manifests (weftctl validate DIR shows the same)\n";
    return absl::InvalidArgumentError("rejected objects");
  }
  for (const PodPlan& p : plan->pods) {
    auto cmd = ResolveCommand(p.argv[0]);
    if (!cmd.ok())
      return Failed(
          err, "up",
          absl::NotFoundError(absl::StrCat("pod ", p.uid(), ": ", cmd.status().message())));
  }
  return plan->pods.size();
}

// Forks the supervisor into its own session and waits until it reports the mesh ready (or
// fails); `lock` (the per-name `up` lock) is released in the child and held here until then.
int RunInBackground(const UpOptions& o, const MeshPaths& paths, UniqueFd& lock, std::ostream& out,
                    std::ostream& err) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return Failure(err, "up", ErrnoError(errno, "pipe2"));
  const std::string sup_log = paths.logs + "/supervisor.log";
  out.flush();
  err.flush();
  pid_t pid = ::fork();
  if (pid < 0) return Failure(err, "up", ErrnoError(errno, "fork"));
  if (pid == 0) {
    // The supervisor: its own session (no terminal, not in the caller's process group), stdio
    // to its log, so that whatever waits for this command's output is not held open.
    ::close(pipefd[0]);
    lock.reset();  // the parent holds it until the mesh is ready
    ::setsid();
    int devnull = ::open("/dev/null", O_RDONLY);
    int log = ::open(sup_log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    if (::chdir("/") != 0) {
    }
    std::ofstream sink("/dev/null");
    int rc = RunSupervisor(o, pipefd[1], sink);
    std::cout.flush();
    std::cerr.flush();
    ::_exit(rc);
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n > 0) {
      msg.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipefd[0]);
  if (msg.rfind("ok", 0) != 0) {
    if (msg.empty()) msg = "the supervisor exited before the mesh was ready";
    if (msg.rfind("error: ", 0) == 0) msg = msg.substr(7);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    err << "weftctl up: " << msg << "\n(supervisor log: " << sup_log << ")\n";
    return kFail;
  }
  auto state = ReadState(paths.state_file);
  if (!state.ok()) return Failure(err, "up", state.status());
  PrintSummary(*state, out);
  return kOk;
}

}  // namespace

int UpMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  if (auto rc = ParseCommand(*UpApp(f), args, out, err)) return *rc;
  if (auto st = ValidateMeshName(f.name); !st.ok())
    return UsageError(err, "up", std::string(st.message()));
  if (::geteuid() != 0) {
    err << "weftctl up: needs root (it creates network namespaces, cgroups and eBPF programs); "
           "run it with sudo\n";
    return kFail;
  }
  UpOptions o;
  o.manifest_dir = std::filesystem::absolute(f.positional[0]).string();
  o.name = f.name;
  o.state_root = std::filesystem::absolute(StateRoot(f.state_root)).string();
  o.nodes = f.nodes;
  o.capture = f.capture;
  o.log_level = f.log_level;
  o.foreground = f.foreground;
  o.owner_pid = f.owner_pid;
  MeshPaths paths = PathsFor(o.state_root, o.name);
  auto pods = CheckManifests(o, err);
  if (!pods.ok()) return kFail;

  // One `up` per name at a time (a crashed one leaves no lock: the kernel drops it).
  std::error_code ec;
  std::filesystem::create_directories(o.state_root, ec);
  UniqueFd lock(::open((paths.dir + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    err << "weftctl up: another `weftctl up --name " << o.name
        << "` is starting or running in the foreground\n";
    return kFail;
  }
  auto crashed = CleanCrashed(paths, out);
  if (!crashed.ok()) return Failure(err, "up", crashed.status());
  (void)testbed::CleanupStale();
  std::filesystem::remove_all(paths.dir, ec);  // a fresh mesh: no stale manifests, CA or logs
  std::filesystem::create_directories(paths.logs, ec);
  if (ec)
    return Failure(err, "up", absl::InternalError("creating " + paths.logs + ": " + ec.message()));

  if (o.foreground) return RunSupervisor(o, -1, out);

  out << "starting mesh \"" << o.name << "\" (" << o.nodes << " nodes, " << *pods << " pods) ..."
      << std::endl;
  return RunInBackground(o, paths, lock, out, err);
}

// ---- down -----------------------------------------------------------------------------------

int DownMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  auto app = MeshApp("down",
                     "Stops the mesh's supervisor, which stops every process and removes every "
                     "namespace,\ncgroup, bpffs pin and iptables chain it made; then checks that "
                     "nothing with the\nmesh's prefix is left. Works after a supervisor crash too.",
                     f);
  AddTimeout(*app, f, "how long the supervisor may take to stop before it is killed");
  if (auto rc = ParseCommand(*app, args, out, err)) return *rc;
  const std::string root = StateRoot(f.state_root);
  MeshPaths paths = PathsFor(root, f.name);
  auto s = LoadMesh(root, f.name);
  if (absl::IsNotFound(s.status())) {
    out << "no mesh named \"" << f.name << "\" is running; nothing to do\n";
    return kOk;
  }
  if (!s.ok()) return Failure(err, "down", s.status());
  if (SupervisorAlive(*s)) {
    out << "stopping mesh \"" << s->name << "\" (supervisor pid " << s->supervisor_pid << ") ..."
        << std::endl;
    ::kill(s->supervisor_pid, SIGTERM);
    auto deadline = Clock::now() + seconds(f.timeout_s);
    while (SupervisorAlive(*s) && Clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(50));
    if (SupervisorAlive(*s)) {
      err << "weftctl down: the supervisor did not stop within " << f.timeout_s
          << " s; killing it and removing what it left\n";
      ::kill(s->supervisor_pid, SIGKILL);
      std::this_thread::sleep_for(milliseconds(200));
    }
  } else {
    out << "the supervisor of mesh \"" << s->name << "\" (pid " << s->supervisor_pid
        << ") is gone; removing what it left" << std::endl;
  }
  if (!s->prefix.empty() && !testbed::TestbedLeftovers(s->prefix).empty()) {
    auto removed = testbed::RemoveTestbed(s->prefix);
    if (!removed.ok()) return Failure(err, "down", removed.status());
  }
  std::error_code ec;
  std::filesystem::remove(paths.state_file, ec);
  auto left = s->prefix.empty() ? std::vector<std::string>{} : testbed::TestbedLeftovers(s->prefix);
  if (!left.empty()) {
    err << "weftctl down: still present: " << absl::StrJoin(left, " ") << "\n";
    return kFail;
  }
  out << "mesh \"" << s->name << "\" is down: no namespace, cgroup or bpffs pin named " << s->prefix
      << "* is left (logs kept in " << paths.logs << ")\n";
  return kOk;
}

// ---- label ----------------------------------------------------------------------------------

int LabelMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  auto app =
      MeshApp("label",
              "Edits a live mesh's Namespace or Pod labels, as kubectl label does in a cluster:\n"
              "weftd sees the change and pods are enrolled or unenrolled without restarting, e.g.\n"
              "  weftctl label namespace shop weft.dev/mesh=enabled\n"
              "  weftctl label namespace shop weft.dev/mesh-",
              f);
  app->add_option("ARGS", f.positional,
                  "namespace NS KEY=VALUE|KEY- ..., or pod NS/NAME KEY=VALUE|KEY- ...");
  app->add_flag("--overwrite", f.overwrite, "allow changing a label that has another value");
  AddWait(*app, f, "wait until every node ACKed the change and the pods' enrolment follows it");
  app->add_option("-n,--namespace", f.ns, "the namespace of a pod given by NAME")->type_name("NS");
  if (auto rc = ParseCommand(*app, args, out, err)) return *rc;
  if (f.positional.size() < 3) return UsageError(err, "label", "give a kind, a name and a change");
  const std::string kind_arg = f.positional[0];
  const bool is_ns = kind_arg == "namespace" || kind_arg == "namespaces" || kind_arg == "ns";
  const bool is_pod = kind_arg == "pod" || kind_arg == "pods" || kind_arg == "po";
  if (!is_ns && !is_pod) return UsageError(err, "label", "kind must be namespace or pod");
  const std::string root = StateRoot(f.state_root);
  auto s = LoadLiveMesh(root, f.name);
  if (!s.ok()) return Failure(err, "label", s.status());
  MeshPaths paths = PathsFor(root, f.name);
  std::string ns, name;
  if (is_ns) {
    name = f.positional[1];
  } else {
    std::string ref = f.positional[1];
    if (!f.ns.empty() && ref.find('/') == std::string::npos) ref = f.ns + "/" + ref;
    auto pod = FindPod(*s, ref);
    if (!pod.ok()) return Failure(err, "label", pod.status());
    ns = (*pod)->ns;
    name = (*pod)->name;
  }
  const std::string kind = is_ns ? "Namespace" : "Pod";
  const std::string file = paths.manifests + "/" + ObjectFileName(kind, ns, name);
  ManifestLock lock(paths.lock_file);
  json obj;
  if (std::filesystem::exists(file)) {
    auto o = ReadObject(file);
    if (!o.ok()) return Failure(err, "label", o.status());
    obj = *o;
  } else if (is_ns) {
    obj = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}};
  } else {
    return Failure(err, "label", absl::NotFoundError(file + " is missing"));
  }
  Labels labels = LabelsOf(obj);
  bool changed = false;
  for (size_t i = 2; i < f.positional.size(); ++i) {
    auto c = ApplyLabelChange(labels, f.positional[i], f.overwrite);
    if (!c.ok()) return Failure(err, "label", c.status());
    changed |= *c;
  }
  const std::string what = absl::StrCat(is_ns ? "namespace/" : "pod/", is_ns ? "" : ns + "/", name);
  if (!changed) {
    out << what << " not labeled (no change)\n";
    return kOk;
  }
  json before;
  if (f.wait) {
    auto st = WeftdStatus(*s);
    if (!st.ok()) return Failure(err, "label", st.status());
    before = *st;
  }
  obj["metadata"]["labels"] = labels;
  if (auto st = WriteFileAtomic(file, obj.dump(1) + "\n", 0644); !st.ok())
    return Failure(err, "label", st);
  out << what << " labeled\n";
  if (f.wait) {
    if (auto st = WaitSettled(*s, before, seconds(f.timeout_s)); !st.ok())
      return Failure(err, "label", st);
    if (auto st = WaitEnrolment(*s, paths, seconds(f.timeout_s)); !st.ok())
      return Failure(err, "label", st);
    if (auto st = WaitSynced(paths, seconds(f.timeout_s)); !st.ok())
      return Failure(err, "label", st);
    out << "every node ACKed; the pods' enrolment follows the labels\n";
  }
  return kOk;
}

// ---- apply / delete -------------------------------------------------------------------------

namespace {

using Changes = std::vector<std::pair<std::string, json>>;  // runtime file name, object

// The objects of `files` to write (apply) or remove (delete), each checked before anything is
// written; the problems are on `err`.
absl::StatusOr<Changes> CheckChanges(bool apply, const std::vector<std::string>& files,
                                     const MeshPaths& paths, std::ostream& out, std::ostream& err) {
  const std::string cmd = apply ? "apply" : "delete";
  std::vector<json> objects;
  for (const auto& path : files) {
    auto objs = LoadManifests(path);
    if (!objs.ok()) return Failed(err, cmd, objs.status());
    for (auto& m : *objs) objects.push_back(std::move(m.object));
  }
  // The live objects, for cluster IP allocation.
  std::vector<json> current;
  {
    auto live = LoadManifests(paths.manifests);
    if (!live.ok()) return Failed(err, cmd, live.status());
    for (auto& m : *live) current.push_back(std::move(m.object));
  }
  // Everything is checked before anything is written.
  Changes todo;
  std::vector<std::string> problems;
  for (json& o : objects) {
    const std::string kind = o.value("kind", "");
    const std::string name = o["metadata"].value("name", "");
    if (!ClusterScoped(kind) && !o["metadata"].contains("namespace"))
      o["metadata"]["namespace"] = "default";
    const std::string ref = absl::StrCat(
        kind, " ", ClusterScoped(kind) ? "" : o["metadata"].value("namespace", "") + "/", name);
    if (kind == "Pod" || kind == "Deployment" || (!apply && kind == "Namespace")) {
      problems.push_back(
          absl::StrCat(ref, ": ", kind == "Namespace" ? "namespaces" : "pods",
                       " are fixed at up time (change the manifest directory and run weftctl down, "
                       "weftctl up)"));
      continue;
    }
    if (apply && kind == "Service") {
      if (auto st = AssignClusterIp(o, current); !st.ok()) {
        problems.push_back(std::string(st.message()));
        continue;
      }
      current.push_back(o);  // later Services of this apply see its address
    }
    if (!cp::IsSupportedKind(kind)) {
      out << ref << ": skipped (kind not used by the mesh)\n";
      continue;
    }
    if (apply) {
      if (auto st = cp::ValidateObject(kind, o); !st.ok()) {
        problems.push_back(absl::StrCat(ref, ": ", st.message()));
        continue;
      }
    }
    todo.push_back({ObjectFileName(o), o});
  }
  if (!problems.empty()) {
    for (const auto& p : problems) err << "weftctl " << cmd << ": " << p << "\n";
    err << "weftctl " << cmd << ": nothing was changed\n";
    return absl::InvalidArgumentError("nothing was changed");
  }
  return todo;
}

// Writes or removes the runtime files under the manifest lock. Returns whether anything changed
// and whether an object to delete was missing.
absl::StatusOr<std::pair<bool, bool>> WriteChanges(bool apply, const Changes& todo,
                                                   const MeshPaths& paths, std::ostream& out,
                                                   std::ostream& err) {
  const std::string cmd = apply ? "apply" : "delete";
  ManifestLock lock(paths.lock_file);
  bool any = false, missing = false;
  for (const auto& [file, o] : todo) {
    const std::string path = paths.manifests + "/" + file;
    const std::string ref =
        absl::StrCat(Lower(o.value("kind", "")), "/", o["metadata"].value("name", ""));
    if (apply) {
      auto old = ReadObject(path);
      if (old.ok() && *old == o) {
        out << ref << " unchanged\n";
        continue;
      }
      if (auto st = WriteFileAtomic(path, o.dump(1) + "\n", 0644); !st.ok())
        return Failed(err, cmd, st);
      out << ref << (old.ok() ? " configured\n" : " created\n");
      any = true;
    } else {
      std::error_code ec;
      if (std::filesystem::remove(path, ec)) {
        out << ref << " deleted\n";
        any = true;
      } else {
        err << "weftctl delete: " << ref << " not found\n";
        missing = true;
      }
    }
  }
  return std::make_pair(any, missing);
}

int ApplyOrDelete(bool apply, const std::vector<std::string>& args, std::ostream& out,
                  std::ostream& err) {
  const std::string cmd = apply ? "apply" : "delete";
  Flags f;
  auto app = MeshApp(
      cmd,
      std::string(apply ? "Adds or replaces objects (policies, NetworkPolicies, Services, ...) in "
                          "a live mesh; they are\nvalidated first as `weftctl validate` does.\n"
                        : "Removes objects (policies, NetworkPolicies, Services, ...) from a "
                          "live mesh.\n") +
          "Pods are fixed at up time; a Service gets a cluster IP as at up time, and its name\n"
          "and address reach every pod.",
      f);
  app->add_option("-f,--filename", f.files, "a manifest file or directory (repeatable)")
      ->type_name("FILE|DIR")
      ->allow_extra_args(false);
  AddWait(*app, f, "wait until every node ACKed the change");
  if (auto rc = ParseCommand(*app, args, out, err)) return *rc;
  if (f.files.empty()) return UsageError(err, cmd, "give the objects with -f FILE|DIR");
  const std::string root = StateRoot(f.state_root);
  auto s = LoadLiveMesh(root, f.name);
  if (!s.ok()) return Failure(err, cmd, s.status());
  MeshPaths paths = PathsFor(root, f.name);

  auto todo = CheckChanges(apply, f.files, paths, out, err);
  if (!todo.ok()) return kFail;
  json before;
  if (f.wait) {
    auto st = WeftdStatus(*s);
    if (!st.ok()) return Failure(err, cmd, st.status());
    before = *st;
  }
  auto written = WriteChanges(apply, *todo, paths, out, err);
  if (!written.ok()) return kFail;
  const auto [any, missing] = *written;
  if (f.wait && any) {
    if (auto st = WaitSettled(*s, before, seconds(f.timeout_s)); !st.ok())
      return Failure(err, cmd, st);
    if (auto st = WaitSynced(paths, seconds(f.timeout_s)); !st.ok()) return Failure(err, cmd, st);
    out << "every node ACKed\n";
  }
  return missing ? kFail : kOk;
}

}  // namespace

int ApplyMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return ApplyOrDelete(true, args, out, err);
}

int DeleteMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return ApplyOrDelete(false, args, out, err);
}

// ---- logs -----------------------------------------------------------------------------------

int LogsMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  auto app = MeshApp("logs",
                     "Prints a process's log from the mesh's log folder. NODE: node0 or 0.\n"
                     "  weftctl logs [flags] POD|NS/POD\n"
                     "  weftctl logs [flags] ztunnel NODE | agent NODE | weftd | supervisor",
                     f);
  app->add_option("WHOSE", f.positional,
                  "POD | NS/POD | ztunnel NODE | agent NODE | weftd | supervisor");
  app->add_flag("-f,--follow", f.follow, "keep printing what is appended");
  if (auto rc = ParseCommand(*app, args, out, err)) return *rc;
  if (f.positional.empty()) return UsageError(err, "logs", "say whose log");
  const std::string root = StateRoot(f.state_root);
  auto s = LoadMesh(root, f.name);
  if (!s.ok()) return Failure(err, "logs", s.status());
  MeshPaths paths = PathsFor(root, f.name);
  const std::string& what = f.positional[0];
  std::string path;
  if (what == "ztunnel" || what == "agent") {
    if (f.positional.size() != 2) return UsageError(err, "logs", what + " needs a NODE");
    auto n = FindNode(*s, f.positional[1]);
    if (!n.ok()) return Failure(err, "logs", n.status());
    path = what == "ztunnel" ? (*n)->ztunnel_log : (*n)->agent_log;
  } else if (what == "weftd") {
    path = s->weftd.log;
  } else if (what == "supervisor") {
    path = paths.logs + "/supervisor.log";
  } else {
    auto p = FindPod(*s, what);
    if (!p.ok()) return Failure(err, "logs", p.status());
    path = (*p)->log;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Failure(err, "logs", absl::NotFoundError(path + " does not exist (yet)"));
  char buf[16384];
  while (true) {
    in.read(buf, sizeof buf);
    std::streamsize n = in.gcount();
    if (n > 0) {
      out.write(buf, n);
      continue;
    }
    if (!f.follow) break;
    out.flush();
    in.clear();
    std::this_thread::sleep_for(milliseconds(200));
  }
  return kOk;
}

// ---- upgrade --------------------------------------------------------------------------------

namespace {
// Asks the supervisor to replace `node`'s ztunnel and waits for its answer.
absl::StatusOr<UpgradeResult> RequestUpgrade(const MeshPaths& paths, const std::string& node,
                                             const std::string& binary, milliseconds drain,
                                             seconds timeout) {
  UpgradeRequest req;
  req.id = absl::StrCat(::getpid(), "-", Clock::now().time_since_epoch().count());
  req.node = node;
  req.binary = binary;
  req.drain_deadline_ms = drain.count();
  const std::string result = paths.upgrades + "/" + node + ".result.json";
  WEFT_RETURN_IF_ERROR(WriteFileAtomic(paths.upgrades + "/" + node + ".request.json",
                                       json(req).dump() + "\n", 0600));
  auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    auto text = ReadFile(result);
    if (text.ok()) {
      auto j = json::parse(*text, nullptr, false);
      if (j.is_object() && j.value("id", "") == req.id) return j.get<UpgradeResult>();
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("no answer from the mesh's supervisor within ",
                                                  timeout.count(),
                                                  " s (see weftctl logs supervisor)"));
}
}  // namespace

int UpgradeMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  std::string binary;
  milliseconds drain{0};
  auto app = MeshApp(
      "upgrade",
      "Replaces a node's ztunnel without refusing a connection (docs/upgrades.md): a new ztunnel\n"
      "takes the running one's listeners over (the same sockets, passed as descriptors), the\n"
      "old one stops accepting and drains its open connections up to the drain deadline, then\n"
      "closes them and exits. Nodes one after the other; without NODE, every node.\n"
      "  weftctl upgrade [flags] ztunnel [NODE]",
      f);
  app->add_option("WHAT", f.positional, "ztunnel [NODE]");
  app->add_option("--binary", binary, "the new ztunnel (default: the mesh's own ztunnel binary)")
      ->type_name("PATH")
      ->check(CLI::ExistingFile);
  AddDurationFlag(*app, "--drain-deadline", &drain,
                  "how long the old ztunnel's open connections may go on (default: 30s)");
  f.timeout_s = 120;
  AddTimeout(*app, f, "per node, for the new ztunnel to take over");
  if (auto rc = ParseCommand(*app, args, out, err)) return *rc;
  if (f.positional.empty() || f.positional[0] != "ztunnel" || f.positional.size() > 2)
    return UsageError(err, "upgrade", "say `ztunnel [NODE]`");
  const std::string root = StateRoot(f.state_root);
  auto s = LoadLiveMesh(root, f.name);
  if (!s.ok()) return Failure(err, "upgrade", s.status());
  std::vector<std::string> nodes;
  if (f.positional.size() == 2) {
    auto n = FindNode(*s, f.positional[1]);
    if (!n.ok()) return Failure(err, "upgrade", n.status());
    nodes.push_back((*n)->name);
  } else {
    for (const NodeState& n : s->nodes) nodes.push_back(n.name);
  }
  if (!binary.empty()) binary = std::filesystem::absolute(binary).string();
  const MeshPaths paths = PathsFor(root, f.name);
  for (const std::string& node : nodes) {
    auto r = RequestUpgrade(paths, node, binary, drain, seconds(f.timeout_s));
    if (!r.ok()) return Failure(err, "upgrade", r.status());
    if (!r->ok) return Failure(err, "upgrade", absl::UnavailableError(node + ": " + r->error));
    out << node << ": ztunnel pid " << r->old_pid << " -> pid " << r->new_pid
        << " (listeners taken over; the old one drains its open connections for up to "
        << r->drain_deadline_ms / 1000.0 << " s)\n";
  }
  return kOk;
}

// ---- exec -----------------------------------------------------------------------------------

int ExecMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  auto app =
      MeshApp("exec",
              "Runs a command in a pod of the mesh as its own process runs: in its network\n"
              "namespace and cgroup (so the capture sees it), with its /etc/hosts, hostname and\n"
              "environment. Exits with the command's status.\n"
              "  weftctl exec [flags] POD|NS/POD -- COMMAND [ARGS...]",
              f);
  app->add_option("POD", f.positional, "the pod, NAME or NS/NAME");
  // The command after `--` is the pod's, not weftctl's: it is not parsed.
  const auto dashes = std::find(args.begin(), args.end(), "--");
  f.rest.assign(dashes == args.end() ? dashes : dashes + 1, args.end());
  if (auto rc = ParseCommand(*app, std::vector<std::string>(args.begin(), dashes), out, err))
    return *rc;
  if (f.positional.size() != 1 || f.rest.empty())
    return UsageError(err, "exec", "give a POD, then -- and the command");
  const std::string root = StateRoot(f.state_root);
  auto s = LoadLiveMesh(root, f.name);
  if (!s.ok()) return Failure(err, "exec", s.status());
  auto pod = FindPod(*s, f.positional[0]);
  if (!pod.ok()) return Failure(err, "exec", pod.status());
  const PodState& p = **pod;
  std::vector<std::string> argv = f.rest;
  auto cmd = ResolveCommand(argv[0]);
  if (!cmd.ok()) return Failure(err, "exec", cmd.status());
  argv[0] = *cmd;
  testbed::SpawnOptions so;
  for (const auto& kv : p.env)
    if (kv.size() == 2) so.env.push_back({kv[0], kv[1]});
  so.clear_env = true;
  so.cgroup = p.cgroup;
  so.bind_mounts = {{p.hosts_file, "/etc/hosts"}};
  so.hostname = p.name.substr(0, 63);
  so.cwd = p.working_dir;
  so.inherit_stdio = true;
  out.flush();
  auto proc = testbed::Spawn(p.netns, argv, "", so);
  if (!proc.ok()) return Failure(err, "exec", proc.status());
  while (true) {
    auto st = proc->Wait(std::chrono::hours(1));
    if (st.ok()) return *st;
  }
}

}  // namespace weft::up
