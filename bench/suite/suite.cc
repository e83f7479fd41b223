#include "bench/suite/suite.h"

#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/accounting.h"
#include "bench/bpf_stats.h"
#include "bench/sidecar/on_up_mesh.h"
#include "bench/sidecar/sidecar_mesh.h"
#include "bench/suite/report.h"
#include "bench/suite/results.h"
#include "bench/suite/scale.h"
#include "bench/traffic.h"
#include "cli/mesh_ref.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "cli/up/supervisor.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/status.h"

namespace weft::bench::suite {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// The suite's own pods, next to the tea shop (namespace shop, so one label enrols them all).
constexpr char kBenchManifest[] = R"(# weft-bench-suite's pods (bench/suite/suite.h)
apiVersion: v1
kind: ServiceAccount
metadata: {name: load, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: echo, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: iperf, namespace: shop}
---
# Every client runs here (weftctl exec); the process itself only idles.
apiVersion: v1
kind: Pod
metadata: {name: load, namespace: shop, labels: {app: load}}
spec:
  nodeName: node0
  serviceAccountName: load
  containers:
  - name: load
    command: [weft-teashop]
    args: [--role, idle, --listen, "0.0.0.0:8080", --threads, "1"]
    ports: [{name: http, containerPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo, namespace: shop, labels: {app: echo}}
spec:
  nodeName: node1
  serviceAccountName: echo
  containers:
  - name: echo
    command: [weft-teashop]
    args: [--role, echo, --listen, "0.0.0.0:8080", --threads, "2", --echo-size, "1024"]
    ports: [{name: http, containerPort: 8080, protocol: TCP}]
---
# The echo server behind a Service declared HTTP (Weft L7, the HTTP sidecar mesh parses it) and
# behind one declared TCP (Weft L4): the istio scenario runs both in every Weft mode.
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-tcp, namespace: shop}
spec:
  selector: {app: echo}
  ports: [{name: tcp-echo, port: 80, targetPort: http, protocol: TCP, appProtocol: tcp}]
---
# The same server behind a Service with traffic features attached (issue 15): an HTTPRoute (a
# header match, a request header set, a response header added, a timeout) and a TrafficPolicy
# with retries and their budget. The istio scenario runs it once, in eBPF mode ("ebpf-l7-route"),
# so the features' own cost shows next to "ebpf-l7".
apiVersion: v1
kind: Service
metadata: {name: echo-routed, namespace: shop}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-routed, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-routed, port: 80}]
  rules:
  - name: bench
    matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-never, value: "1"}]}]
    backendRefs: [{name: echo, port: 80}]
  - name: all
    matches: [{path: {type: PathPrefix, value: /}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: bench}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-served-by, value: weft}]}}
    backendRefs: [{name: echo-routed, port: 80}]
    timeouts: {request: 10s}
---
apiVersion: networking.weft.dev/v1
kind: TrafficPolicy
metadata: {name: echo-routed, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: echo-routed}]
  retries: {attempts: 2, retryOn: "5xx,reset,connect-failure"}
---
# The h2c/gRPC echo server (weft-h2echo), the same two ways.
apiVersion: v1
kind: Pod
metadata: {name: echo-grpc, namespace: shop, labels: {app: echo-grpc}}
spec:
  nodeName: node1
  serviceAccountName: echo
  containers:
  - name: echo
    command: ["@H2ECHO@"]
    args: [--listen, "0.0.0.0:8081", --echo-size, "1024"]
    ports: [{name: grpc, containerPort: 8081, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-grpc, namespace: shop}
spec:
  selector: {app: echo-grpc}
  ports: [{name: grpc, port: 80, targetPort: grpc, protocol: TCP, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-grpc-tcp, namespace: shop}
spec:
  selector: {app: echo-grpc}
  ports: [{name: tcp-grpc, port: 80, targetPort: grpc, protocol: TCP, appProtocol: tcp}]
---
apiVersion: v1
kind: Pod
metadata: {name: iperf-local, namespace: shop, labels: {app: iperf-local}}
spec:
  nodeName: node0
  serviceAccountName: iperf
  containers:
  - name: iperf
    command: [iperf3]
    args: [-s, -p, "5201"]
    ports: [{name: iperf, containerPort: 5201, protocol: TCP}]
---
apiVersion: v1
kind: Pod
metadata: {name: iperf-remote, namespace: shop, labels: {app: iperf-remote}}
spec:
  nodeName: node1
  serviceAccountName: iperf
  containers:
  - name: iperf
    command: [iperf3]
    args: [-s, -p, "5201"]
    ports: [{name: iperf, containerPort: 5201, protocol: TCP}]
)";

constexpr char kNamespace[] = "shop";
constexpr char kLoadPod[] = "shop/load";

std::string Now() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
}

void Progress(const std::string& line) {
  std::cerr << absl::FormatTime("%H:%M:%S", absl::Now(), absl::UTCTimeZone()) << " " << line
            << std::endl;
}

bool Meshed(const std::string& mode) {
  return mode != kModeBare;
}
bool SidecarMode(const std::string& mode) {
  return mode == kModeSidecar || mode == kModeSidecarHttp;
}
bool WeftMode(const std::string& mode) {
  return mode == kModeEbpf || mode == kModeIptables;
}

// A binary given by flag, else where up::FindWeftBinary finds it (the build tree
// weft-bench-suite belongs to, next to it, then PATH).
absl::StatusOr<std::string> FindBinary(const std::string& given, const std::string& name,
                                       const std::string& build_rel) {
  if (given.empty()) return up::FindWeftBinary(name, build_rel);
  if (access(given.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(given, " is not an executable file"));
  }
  return given;
}

std::vector<double> LoadAvg() {
  std::ifstream f("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  f >> a >> b >> c;
  return {a, b, c};
}

int64_t MemTotal() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  while (f >> key >> kb) {
    if (key == "MemTotal:") return kb * 1024;
    f.ignore(1 << 10, '\n');
  }
  return 0;
}

double Round(double v, double unit) {
  return std::round(v / unit) * unit;
}

// ---------------------------------------------------------------------------------------------
// The meshes of a run are daemons of their own (each `weftctl up` supervisor outlives a crashed
// or SIGKILLed suite), so every run records them in <kRegistryDir>/<pid>.json before bringing
// them up; the next run takes down those of runs whose process is gone, then removes the file.

constexpr char kRegistryDir[] = "/run/weft/bench-suite";

class Registry {
 public:
  Registry() : path_(absl::StrCat(kRegistryDir, "/", getpid(), ".json")) {
    doc_ = {{"pid", getpid()},
            {"start_time", up::ProcessStartTime(getpid())},
            {"meshes", json::array()}};
  }
  ~Registry() { Clear(); }

  void Add(const std::string& name, const std::string& state_root) {
    doc_["meshes"].push_back({{"name", name}, {"state_root", state_root}});
    std::error_code ec;
    fs::create_directories(kRegistryDir, ec);
    std::ofstream(path_) << doc_.dump() << "\n";
  }
  void Clear() {
    std::error_code ec;
    fs::remove(path_, ec);
  }

  // Takes down the meshes of earlier runs whose suite process is gone; returns what it did.
  static std::vector<std::string> CleanStale(const std::string& weftctl) {
    std::vector<std::string> done;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(kRegistryDir, ec)) {
      std::ifstream f(e.path());
      json d = json::parse(f, nullptr, false);
      if (d.is_object()) {
        const pid_t pid = d.value("pid", 0);
        const uint64_t start = d.value("start_time", uint64_t{0});
        if (pid > 0 && up::ProcessStartTime(pid) == start && start != 0) continue;  // alive
        // Every mesh under a state root the run used (the scale scenario names its own).
        std::set<std::string> roots;
        for (const json& m : d.value("meshes", json::array())) {
          if (!m.value("state_root", "").empty()) roots.insert(m.value("state_root", ""));
        }
        for (const std::string& root : roots) {
          for (const auto& dir : fs::directory_iterator(root, ec)) {
            if (!fs::exists(dir.path() / "state.json")) continue;
            const std::string name = dir.path().filename().string();
            auto st = testbed::Exec("", up::WeftctlArgv(weftctl, name, root, {"down"}), {},
                                    std::chrono::seconds(60));
            done.push_back(absl::StrCat("mesh ", name, " of suite run ", pid, ": ",
                                        st.ok() ? "taken down" : st.status().message()));
          }
        }
      }
      fs::remove(e.path(), ec);
    }
    return done;
  }

 private:
  std::string path_;
  json doc_;
};

// ---------------------------------------------------------------------------------------------
// One mode's environment: a `weftctl up` mesh (plus the sidecars in sidecar mode).

class Env {
 public:
  Env(std::string mode, const Options& o, std::string weftctl, Registry& registry)
      : mode_(std::move(mode)), o_(o), weftctl_(std::move(weftctl)), registry_(registry) {
    name_ = absl::StrCat("wbs", getpid(), "-", mode_);
    state_root_ = o_.work_dir + "/state";
  }
  ~Env() { (void)Down(); }

  const std::string& mode() const { return mode_; }
  const std::string& name() const { return name_; }
  const up::MeshState& state() const { return state_; }

  absl::Status Up() {
    const std::string dir = absl::StrCat(o_.work_dir, "/manifests-", mode_);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", ec.message()));
    for (const auto& e : fs::directory_iterator(o_.teashop_manifests, ec)) {
      const std::string file = e.path().filename().string();
      // The legacy client is the demo's unenrolled caller; the suite has its own load pod.
      if (!e.is_regular_file() || !file.ends_with(".yaml") ||
          file.find("legacy") != std::string::npos)
        continue;
      fs::copy_file(e.path(), fs::path(dir) / file, fs::copy_options::overwrite_existing, ec);
      if (ec)
        return absl::InternalError(absl::StrCat("copy ", e.path().string(), ": ", ec.message()));
    }
    if (ec) {
      return absl::NotFoundError(
          absl::StrCat("tea shop manifests ", o_.teashop_manifests, ": ", ec.message()));
    }
    std::ofstream(fs::path(dir) / "90-bench.yaml")
        << absl::StrReplaceAll(kBenchManifest, {{"@H2ECHO@", o_.h2echo}});

    const std::string capture = mode_ == kModeEbpf ? "ebpf" : "iptables";
    Progress(absl::StrCat("[", mode_, "] weftctl up --name ", name_, " --capture ", capture));
    registry_.Add(name_, state_root_);
    WEFT_RETURN_IF_ERROR(
        Weftctl({"up", "--nodes", "2", "--capture", capture, "--log-level", o_.log_level, dir},
                std::chrono::seconds(120))
            .status());
    up_ = true;
    if (WeftMode(mode_)) {
      WEFT_RETURN_IF_ERROR(
          Weftctl({"label", "namespace", kNamespace, "weft.dev/mesh=enabled", "--wait"},
                  std::chrono::seconds(60))
              .status());
    }
    WEFT_RETURN_IF_ERROR(Refresh());
    if (SidecarMode(mode_)) {
      sidecar::SidecarOptions so;
      so.http = mode_ == kModeSidecarHttp;
      so.work_dir = absl::StrCat(o_.work_dir, "/", mode_);
      fs::create_directories(so.work_dir, ec);
      WEFT_ASSIGN_OR_RETURN(sidecar_, sidecar::StartOnUpMesh(state_, {kNamespace}, so));
    }
    // Every server answers before the first run: the echo server through the mesh path.
    return WaitReady();
  }

  absl::Status Down() {
    absl::Status st;
    if (sidecar_) {
      st.Update(sidecar_->Stop());
      sidecar_.reset();
    }
    if (up_) {
      up_ = false;
      st.Update(Weftctl({"down"}, std::chrono::seconds(60)).status());
    }
    return st;
  }

  // Re-reads the mesh's state (pids change when the supervisor restarts something).
  absl::Status Refresh() {
    WEFT_ASSIGN_OR_RETURN(state_, up::LoadMesh(state_root_, name_));
    return absl::OkStatus();
  }

  absl::StatusOr<const up::PodState*> Pod(const std::string& ref) const {
    return up::FindPod(state_, ref);
  }

  // Runs argv in the load pod (weftctl exec); returns stdout. A non-zero exit is an error.
  absl::StatusOr<std::string> ExecInLoad(const std::vector<std::string>& argv,
                                         std::chrono::milliseconds timeout) {
    std::vector<std::string> a = {"exec", kLoadPod, "--"};
    a.insert(a.end(), argv.begin(), argv.end());
    return Weftctl(a, timeout);
  }

  // The accounting groups of this mode (see suite.h).
  std::vector<GroupSpec> Groups() const {
    GroupSpec apps{"apps", {}, "", true}, mesh{"mesh", {}, "", true};
    for (const up::PodState& p : state_.pods) {
      if (p.pid > 0 && absl::StrCat(p.ns, "/", p.name) != kLoadPod) apps.pids.push_back(p.pid);
    }
    if (WeftMode(mode_)) {
      for (const up::NodeState& n : state_.nodes) {
        if (n.ztunnel_pid > 0) mesh.pids.push_back(n.ztunnel_pid);
        if (n.agent_pid > 0) mesh.pids.push_back(n.agent_pid);
      }
      if (state_.weftd.pid > 0) mesh.pids.push_back(state_.weftd.pid);
    } else if (sidecar_) {
      mesh.pids = sidecar_->ProxyPids();
    }
    return {apps, mesh};
  }

  // A counter that goes up with every connection the load pod opens through the mesh: ztunnel's
  // source-side connections of the load workload (node0), or the load pod's sidecar's outbound
  // connections. -1 in bare mode.
  absl::StatusOr<double> MeshedConnections() {
    if (WeftMode(mode_)) return SourceMetric("istio_tcp_connections_opened_total");
    if (sidecar_) {
      WEFT_ASSIGN_OR_RETURN(auto c, sidecar_->ConnectionCounts(SidecarPodName(kLoadPod)));
      return static_cast<double>(c.outbound);
    }
    return -1.0;
  }

  // The requests Weft's source side terminated for the load pod (its ztunnels'
  // istio_requests_total, reporter source); -1 outside the Weft modes.
  absl::StatusOr<double> WeftSourceRequests() {
    if (!WeftMode(mode_)) return -1.0;
    return SourceMetric("istio_requests_total");
  }

  // The HTTP requests the load pod's sidecar parsed (sidecar-http mode; -1 otherwise).
  absl::StatusOr<double> ParsedHttpRequests() {
    if (mode_ != kModeSidecarHttp || !sidecar_) return -1.0;
    WEFT_ASSIGN_OR_RETURN(auto c, sidecar_->ConnectionCounts(SidecarPodName(kLoadPod)));
    return static_cast<double>(c.outbound_http_requests);
  }

 private:
  // `metric` summed over the mesh's ztunnels for reporter "source" and the load workload.
  absl::StatusOr<double> SourceMetric(const std::string& metric) {
    cli::MeshRef ref;
    ref.name = name_;
    ref.state_root = state_root_;
    ref.name_given = true;
    WEFT_ASSIGN_OR_RETURN(auto eps, cli::LocalZtunnelMetrics(ref));
    WEFT_ASSIGN_OR_RETURN(const up::PodState* load, Pod(kLoadPod));
    double sum = 0;
    for (const auto& ep : eps) {
      WEFT_ASSIGN_OR_RETURN(UniqueFd ns, cli::OpenNetns(ep.netns));
      WEFT_ASSIGN_OR_RETURN(SockAddr addr, SockAddr::Parse(ep.addr));
      WEFT_ASSIGN_OR_RETURN(std::string text, HttpGet(addr, "/metrics", ns.get()));
      sum += MetricSum(text, metric, {{"reporter", "source"}, {"source_workload", load->workload}});
    }
    return sum;
  }

  absl::StatusOr<std::string> Weftctl(std::vector<std::string> args,
                                      std::chrono::milliseconds timeout) {
    return testbed::Exec("", up::WeftctlArgv(weftctl_, name_, state_root_, std::move(args)), {},
                         timeout);
  }

  std::string SidecarPodName(const std::string& ref) const {
    return sidecar::SidecarPodName(ref.substr(0, ref.find('/')), ref.substr(ref.find('/') + 1));
  }

  absl::Status WaitReady() {
    absl::Status last;
    for (int i = 0; i < 50; ++i) {
      auto out = ExecInLoad(
          {o_.loadgen, "--target", "http://echo.shop.svc.cluster.local", "--users", "1", "--rate",
           "20", "--warmup", "0s", "--duration", "500ms", "--drain", "2s", "--timeout", "2s"},
          std::chrono::seconds(20));
      if (out.ok()) {
        auto front = ExecInLoad({o_.loadgen, "--target", "http://frontend.shop.svc.cluster.local",
                                 "--users", "1", "--rate", "16", "--warmup", "0s", "--duration",
                                 "500ms", "--drain", "5s", "--timeout", "5s"},
                                std::chrono::seconds(30));
        if (front.ok()) return absl::OkStatus();
        last = front.status();
      } else {
        last = out.status();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "mode ", mode_, ": the shop does not answer through the load pod: ", last.message()));
  }

  std::string mode_;
  const Options& o_;
  std::string weftctl_;
  Registry& registry_;
  std::string name_, state_root_;
  bool up_ = false;
  up::MeshState state_;
  std::unique_ptr<sidecar::SidecarMesh> sidecar_;
};

// ---------------------------------------------------------------------------------------------
// Runs and their summaries.

// weft-loadgen's percentiles ("p99.9" is "p999" in the results).
Percentiles ToPercentiles(const json& ms) {
  Percentiles out;
  if (!ms.is_object()) return out;
  const std::pair<const char*, std::optional<double> Percentiles::*> kFrom[] = {
      {"p50", &Percentiles::p50},  {"p75", &Percentiles::p75},    {"p90", &Percentiles::p90},
      {"p99", &Percentiles::p99},  {"p99.9", &Percentiles::p999}, {"max", &Percentiles::max},
      {"mean", &Percentiles::mean}};
  for (const auto& [from, to] : kFrom) {
    auto it = ms.find(from);
    if (it != ms.end() && it->is_number()) out.*to = it->get<double>();
  }
  return out;
}

// The accounting figures of `u` for a run's summary.
RunResources Resources(const RunUsage& u) {
  const double secs = std::max(u.elapsed_seconds, 1e-3);
  double apps_cpu = 0, mesh_cpu = 0, apps_pss = 0, mesh_pss = 0, apps_rss = 0, mesh_rss = 0;
  int64_t mesh_peak = 0, zt_rss = 0, zt_pss = 0, zt_anon = 0;
  for (const GroupUsage& g : u.groups) {
    if (g.name == "apps") {
      apps_cpu = g.cpu_seconds;
      apps_pss = g.mean_pss_bytes;
      apps_rss = g.mean_rss_bytes;
    } else if (g.name == "mesh") {
      mesh_cpu = g.cpu_seconds;
      mesh_pss = g.mean_pss_bytes;
      mesh_rss = g.mean_rss_bytes;
      mesh_peak = g.peak_rss_bytes;
      for (const ProcessUsage& p : g.processes) {
        if (p.comm != "ztunnel") continue;
        // The largest ztunnel (the busier node's), all three measures from the same one.
        if (p.peak_rss_bytes > zt_rss) {
          zt_rss = p.peak_rss_bytes;
          zt_pss = p.peak_pss_bytes;
          zt_anon = p.peak_anon_bytes;
        }
      }
    }
  }
  const HostCpu& h = u.host;
  RunResources r;
  r.cpu_cores = Round((apps_cpu + mesh_cpu) / secs, 1e-4);
  r.apps_cpu_cores = Round(apps_cpu / secs, 1e-4);
  r.mesh_cpu_cores = Round(mesh_cpu / secs, 1e-4);
  r.host_cpu_cores = Round((h.user + h.system + h.irq + h.softirq + h.steal) / secs, 1e-4);
  r.host_softirq_cores = Round(h.softirq / secs, 1e-4);
  // PSS: libraries shared by several processes (every HAProxy sidecar maps the same binary and
  // OpenSSL; ztunnel, agent and weftd share gRPC, protobuf, OpenSSL) count once, as the
  // machine pays for them once; RSS sums would count them once per process.
  r.mem_bytes = static_cast<int64_t>(apps_pss + mesh_pss);
  r.apps_mem_bytes = static_cast<int64_t>(apps_pss);
  r.mesh_mem_bytes = static_cast<int64_t>(mesh_pss);
  r.mem_rss_bytes = static_cast<int64_t>(apps_rss + mesh_rss);
  r.mesh_rss_bytes = static_cast<int64_t>(mesh_rss);
  r.mesh_peak_rss_bytes = mesh_peak;
  if (zt_rss > 0) {
    r.ztunnel_peak_rss_bytes = zt_rss;
    r.ztunnel_peak_pss_bytes = zt_pss;
    r.ztunnel_peak_anon_bytes = zt_anon;
  }
  r.usage = weft::bench::ToJson(u);
  return r;
}

LoadRun SummariseLoadgen(json lg) {
  LoadRun run;
  const json ov = lg.value("overall", json::object());
  run.asked_rps = lg.value("asked_rps", 0.0);
  run.achieved_rps = lg.value("achieved_rps", 0.0);
  run.sent = ov.value("sent", int64_t{0});
  run.ok = ov.value("ok", int64_t{0});
  run.errors = ov.value("errors", int64_t{0});
  run.unfinished = ov.value("unfinished", int64_t{0});
  run.latency_ms = ToPercentiles(ov.value("latency_ms", json()));
  run.ttfb_ms = ToPercentiles(ov.value("ttfb_ms", json()));
  run.service_ms = ToPercentiles(ov.value("service_ms", json()));
  // Per-type histograms would make the document megabytes; the overall ones stay.
  if (lg.contains("types")) {
    for (auto& [k, t] : lg["types"].items()) t.erase("histograms_ns");
  }
  run.loadgen = std::move(lg);
  return run;
}

// ---------------------------------------------------------------------------------------------
// The dataplane scenario's pieces (results.h DataplaneResult).

constexpr uint16_t kPingPongPort = 9000;
constexpr uint16_t kOneShotPort = 9001;  // echoes once, then the server closes
constexpr int kDataplaneMessageBytes = 1024;

struct DataplanePairDef {
  const char* pair;
  const char* server;  // pod ref
};
constexpr DataplanePairDef kDataplanePairs[] = {{"same-node", "shop/iperf-local"},
                                                {"cross-node", "shop/echo"}};

// The last line of `text` that parses as a JSON object (what `client` prints when done).
absl::StatusOr<json> LastJsonLine(const std::string& text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (it->empty() || it->front() != '{') continue;
    json j = json::parse(it->begin(), it->end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.is_object()) return j;
  }
  return absl::DataLossError("no JSON result in the client's output");
}

// The connection-rate runs open tens of thousands of short connections from the load pod: a
// wider ephemeral port range and TIME_WAIT reuse, in the load pod's netns only (set when the
// dataplane scenario starts, after the scenarios that measure connection churn).
absl::Status TuneLoadPodSysctls(const up::PodState& load) {
  const std::pair<const char*, const char*> kSysctls[] = {
      {"/proc/sys/net/ipv4/ip_local_port_range", "16384 65000"},
      {"/proc/sys/net/ipv4/tcp_tw_reuse", "1"}};
  WEFT_ASSIGN_OR_RETURN(UniqueFd ns, OpenNetns(testbed::NetnsPath(load.netns)));
  return RunInNetns(ns.get(), [&]() -> absl::Status {
    for (const auto& [path, value] : kSysctls) {
      std::ofstream f(path);
      f << value;
      f.close();
      if (!f) return absl::InternalError(absl::StrCat("cannot write ", path, " in the load pod"));
    }
    return absl::OkStatus();
  });
}

// BPF program run time over the eBPF-mode runs of the dataplane scenario: the programs the eBPF
// mesh's agents attached (their pinned links), kernel.bpf_stats_enabled=1 while this lives.
class BpfRunTime {
 public:
  BpfRunTime(const up::MeshState* ebpf_mesh) {
    if (ebpf_mesh == nullptr) {
      error_ = "no eBPF mode in this run";
      return;
    }
    if (!HaveLibbpf()) {
      error_ = "weft-bench-suite was built without libbpf";
      return;
    }
    auto enabler = BpfStatsEnabler::Enable();
    if (!enabler.ok()) {
      error_ = absl::StrCat("kernel.bpf_stats_enabled: ", enabler.status().message());
      return;
    }
    enabler_.emplace(std::move(*enabler));
    for (size_t n = 0; n < ebpf_mesh->nodes.size(); ++n) {
      auto ids = ProgIdsOfPinnedLinks(
          absl::StrCat(testbed::BpfPinRoot(ebpf_mesh->prefix), "-n", n, "/links"));
      ours_.insert(ids.begin(), ids.end());
    }
    if (ours_.empty()) error_ = "no BPF program under the eBPF mesh's pinned links";
  }

  void Before() {
    if (!error_.empty()) return;
    auto b = ListBpfPrograms("weft_");
    if (b.ok()) {
      before_ = std::move(*b);
    } else {
      error_ = std::string(b.status().message());
    }
  }

  void After(const std::string& figure) {
    if (!error_.empty()) return;
    auto after = ListBpfPrograms("weft_");
    if (!after.ok()) {
      error_ = std::string(after.status().message());
      return;
    }
    for (const auto& [id, a] : *after) {
      if (!ours_.contains(id)) continue;
      auto b = before_.find(id);
      BpfProgram& p = programs_[id];
      p.name = a.name;
      p.type = a.type;
      BpfFigure& f = p.by_figure[figure];
      f.runs += static_cast<double>(a.run_cnt - (b == before_.end() ? 0 : b->second.run_cnt));
      f.run_time_ns +=
          static_cast<double>(a.run_time_ns - (b == before_.end() ? 0 : b->second.run_time_ns));
    }
  }

  void Finish(DataplaneResult& r) const {
    r.bpf_error = error_;
    for (const auto& [id, p] : programs_) r.bpf_programs.push_back(p);
  }

 private:
  std::optional<BpfStatsEnabler> enabler_;
  std::set<uint32_t> ours_;
  std::map<uint32_t, BpfProgStats> before_;
  std::map<uint32_t, BpfProgram> programs_;
  std::string error_;
};

class Runner {
 public:
  Runner(const Options& o, const std::atomic<bool>& stop) : o_(o), stop_(stop) {}

  SuiteResults& doc() { return doc_; }

  void Error(const std::string& what) {
    Progress("ERROR " + what);
    doc_.errors.push_back(what);
  }

  // One weft-loadgen run in the load pod with accounting around it.
  // `http_target`: the target Service is declared HTTP, so a Weft mode must terminate its
  // requests at the source (Weft L7) and the HTTP sidecar mesh must parse them.
  LoadRun LoadgenRun(Env& env, const std::vector<std::string>& loadgen_args, int seconds,
                     const std::string& what, bool http_target = false) {
    LoadRun run;
    const std::string out = absl::StrCat(o_.work_dir, "/loadgen-", ++seq_, ".json");
    std::vector<std::string> argv = {o_.loadgen};
    argv.insert(argv.end(), loadgen_args.begin(), loadgen_args.end());
    argv.insert(argv.end(), {"--json", out});
    auto before = Prepare(env, run);
    auto parsed_before = http_target ? env.ParsedHttpRequests() : absl::StatusOr<double>(-1.0);
    auto l7_before = http_target ? env.WeftSourceRequests() : absl::StatusOr<double>(-1.0);
    ResourceSampler sampler(env.Groups());
    (void)sampler.Start();
    auto res = env.ExecInLoad(argv, std::chrono::seconds(seconds + 60));
    auto usage = sampler.Stop();
    auto parsed_after = http_target ? env.ParsedHttpRequests() : absl::StatusOr<double>(-1.0);
    auto l7_after = http_target ? env.WeftSourceRequests() : absl::StatusOr<double>(-1.0);
    std::ifstream f(out);
    json lg = json::parse(f, nullptr, false);
    if (lg.is_object()) {
      LoadRun s = SummariseLoadgen(std::move(lg));
      s.warning = std::move(run.warning);
      s.error = std::move(run.error);
      run = std::move(s);
    }
    if (usage.ok()) run.resources = Resources(*usage);
    if (!res.ok() && !run.achieved_rps) run.error = std::string(res.status().message());
    Verify(env, before, run);
    // Every target of the HTTP sidecar mesh's runs is declared HTTP: its sidecars must have
    // parsed the requests, or this is the TCP sidecar mesh's figure.
    if (run.error.empty() && parsed_before.ok() && *parsed_before >= 0 &&
        (!parsed_after.ok() || *parsed_after - *parsed_before < 1)) {
      run.error = "the HTTP sidecar mesh parsed no HTTP request of the run (HAProxy mode http)";
    }
    if (run.error.empty() && l7_before.ok() && *l7_before >= 0 &&
        (!l7_after.ok() || *l7_after - *l7_before < 1)) {
      run.error =
          "Weft terminated no request of the run at the source (no istio_requests_total, "
          "reporter source, from the load pod) although its Service is declared HTTP: not an "
          "L7 figure";
    }
    if (!run.error.empty()) Error(absl::StrCat(what, ", mode ", env.mode(), ": ", run.error));
    return run;
  }

  // Records the mesh counter before a run (and refreshes the pids).
  template <typename Run>
  std::optional<double> Prepare(Env& env, Run& run) {
    if (auto st = env.Refresh(); !st.ok()) {
      if constexpr (requires { run.warning; }) run.warning = std::string(st.message());
    }
    if (!Meshed(env.mode())) return std::nullopt;
    auto c = env.MeshedConnections();
    if (!c.ok()) {
      run.error = absl::StrCat("cannot read the mesh's counters: ", c.status().message());
      return std::nullopt;
    }
    return *c;
  }

  // A meshed run whose connections the mesh did not count is a bare figure: an error. `expected`:
  // how many connections the run made (at least 1).
  template <typename Run>
  void Verify(Env& env, std::optional<double> before, Run& run, double expected = 1) {
    if (!before || !run.error.empty()) return;
    auto after = env.MeshedConnections();
    if (!after.ok()) {
      run.error = absl::StrCat("cannot read the mesh's counters: ", after.status().message());
      return;
    }
    run.mesh_connections = *after - *before;
    if (*after - *before < 1) {
      run.error =
          "the mesh counted no connection from the load pod during the run: the traffic "
          "bypassed it, so this is not a meshed figure";
    } else if (*after - *before < expected) {
      run.error = absl::StrCat("the mesh counted ", *after - *before, " of the run's ", expected,
                               " connections from the load pod: some bypassed it, so this is "
                               "not a meshed figure");
    }
  }

  // weft-loadgen's flags for `users` keep-alive users against `target` at `rate` (a rate flag
  // and its value), warm-up and measured seconds.
  static std::vector<std::string> KeepAliveArgs(const std::string& target, int users,
                                                std::vector<std::string> rate, int warmup,
                                                int duration) {
    std::vector<std::string> a = {"--target", target, "--users", std::to_string(users)};
    a.insert(a.end(), rate.begin(), rate.end());
    a.insert(a.end(), {"--warmup", absl::StrCat(warmup, "s"), "--duration",
                       absl::StrCat(duration, "s"), "--conn", "keepalive"});
    return a;
  }

  // One step of a load scenario (a seed users count, an istio connections case): the same
  // weft-loadgen run in every mode, one after the other. False when stopped.
  bool LoadStep(std::vector<std::unique_ptr<Env>>& envs, const std::string& progress,
                const std::string& what, const std::vector<std::string>& args, int seconds,
                std::map<std::string, LoadRun>& runs, bool http_target = false) {
    for (auto& env : envs) {
      if (stop_) return false;
      Progress(absl::StrCat(progress, ", ", env->mode()));
      LoadRun run = LoadgenRun(*env, args, seconds, what, http_target);
      Line(run);
      runs[env->mode()] = std::move(run);
    }
    return true;
  }

  // Every run's figures over bare's in the same step or case (results.h OverBare).
  static void FillOverBare(std::map<std::string, LoadRun>& runs, double rps) {
    auto bare = runs.find(std::string(kModeBare));
    if (bare == runs.end()) return;
    for (auto& [key, run] : runs) run.over_bare = ComputeOverBare(&run, &bare->second, rps);
  }

  void Seed(std::vector<std::unique_ptr<Env>>& envs) {
    SeedResult& sc = doc_.scenarios.seed.emplace();
    sc.rate_per_user = o_.rate_per_user;
    sc.warmup_seconds = o_.seed_warmup_seconds;
    sc.duration_seconds = o_.seed_duration_seconds;
    for (int users : o_.seed_users) {
      SeedStep step;
      step.users = users;
      if (!LoadStep(envs, absl::StrCat("seed: ", users, " users x ", o_.rate_per_user, " rps"),
                    absl::StrCat("seed ", users),
                    KeepAliveArgs("http://frontend.shop.svc.cluster.local", users,
                                  {"--rate-per-user", absl::StrCat(o_.rate_per_user)},
                                  o_.seed_warmup_seconds, o_.seed_duration_seconds),
                    o_.seed_warmup_seconds + o_.seed_duration_seconds, step.runs,
                    /*http_target=*/true))  // the tea shop's Services are declared HTTP
        return;
      FillOverBare(step.runs, o_.rate_per_user * users);
      sc.steps.push_back(std::move(step));
    }
  }

  void Istio(std::vector<std::unique_ptr<Env>>& envs) {
    const std::string profile = o_.work_dir + "/istio-profile.json";
    json p = {{"requests",
               {{{"name", "echo"},
                 {"method", "POST"},
                 {"path", "/echo"},
                 {"body", std::string(o_.payload_bytes, 'f')},
                 {"headers", {{"Content-Type", "application/octet-stream"}}}}}}};
    std::ofstream(profile) << p.dump();
    IstioResult& sc = doc_.scenarios.istio.emplace();
    sc.rps = o_.istio_rps;
    sc.payload_bytes = o_.payload_bytes;
    sc.warmup_seconds = o_.istio_warmup_seconds;
    sc.duration_seconds = o_.istio_duration_seconds;
    for (const std::string& proto : o_.istio_protocols) {
      for (int conns : o_.istio_connections) {
        IstioCase c;
        c.connections = conns;
        c.protocol = proto;
        if (!IstioCaseRuns(envs, proto, conns, profile, c.runs)) return;
        FillOverBare(c.runs, o_.istio_rps);
        sc.cases.push_back(std::move(c));
      }
    }
  }

  // One istio case, modes interleaved. A Weft mode runs twice: against the echo server's
  // Service declared TCP (run key = the mode: Weft L4) and declared HTTP (mode + "-l7"); bare
  // and the sidecar meshes against the HTTP-declared one (which the HTTP sidecar mesh parses).
  bool IstioCaseRuns(std::vector<std::unique_ptr<Env>>& envs, const std::string& proto, int conns,
                     const std::string& profile, std::map<std::string, LoadRun>& runs) {
    const bool grpc = proto == kProtocolGrpc;
    const std::string http_svc = grpc ? "echo-grpc" : "echo";
    const std::string tcp_svc = grpc ? "echo-grpc-tcp" : "echo-tcp";
    for (auto& env : envs) {
      const std::string mode = env->mode();
      std::vector<std::pair<std::string, std::string>> keys = {{mode, http_svc}};
      if (WeftMode(mode)) keys = {{mode, tcp_svc}, {mode + std::string(kL7Suffix), http_svc}};
      // Once (eBPF, HTTP/1.1): the HTTP Service with a route and a retry policy attached.
      if (mode == kModeEbpf && !grpc)
        keys.emplace_back(mode + std::string(kL7RouteSuffix), "echo-routed");
      for (const auto& [key, svc] : keys) {
        if (stop_) return false;
        std::vector<std::string> args =
            KeepAliveArgs(absl::StrCat("http://", svc, ".shop.svc.cluster.local"), conns,
                          {"--rate", absl::StrCat(o_.istio_rps)}, o_.istio_warmup_seconds,
                          o_.istio_duration_seconds);
        args.insert(args.end(), {"--profile", profile, "--protocol", proto});
        Progress(absl::StrCat("istio ", proto, ": ", o_.istio_rps, " rps over ", conns,
                              " connections, ", key, " (", svc, ")"));
        LoadRun run = LoadgenRun(*env, args, o_.istio_warmup_seconds + o_.istio_duration_seconds,
                                 absl::StrCat("istio ", proto, " ", conns, " (", key, ")"),
                                 /*http_target=*/svc != tcp_svc);
        Line(run);
        runs[key] = std::move(run);
      }
    }
    return true;
  }

  void Throughput(std::vector<std::unique_ptr<Env>>& envs) {
    ThroughputResult& sc = doc_.scenarios.throughput.emplace();
    sc.seconds = o_.iperf_seconds;
    for (const std::string pair : {"same-node", "cross-node"}) {
      for (int streams : o_.iperf_streams) {
        ThroughputCase c;
        c.pair = pair;
        c.streams = streams;
        for (auto& env : envs) {
          if (stop_) return;
          if (env->mode() == kModeSidecarHttp) continue;  // iperf3 ports are TCP: as "sidecar"
          Progress(absl::StrCat("throughput: ", pair, ", ", streams, " stream(s), ", env->mode()));
          c.runs[env->mode()] = Iperf(*env, pair, streams);
        }
        sc.cases.push_back(std::move(c));
      }
    }
  }

  ThroughputRun Iperf(Env& env, const std::string& pair, int streams) {
    ThroughputRun run;
    auto before = Prepare(env, run);
    auto server = env.Pod(pair == "same-node" ? "shop/iperf-local" : "shop/iperf-remote");
    if (!server.ok()) {
      run.error = std::string(server.status().message());
      Error(absl::StrCat("throughput ", pair, ", mode ", env.mode(), ": ",
                         server.status().message()));
      return run;
    }
    ResourceSampler sampler(env.Groups());
    (void)sampler.Start();
    absl::StatusOr<std::string> out = absl::UnknownError("not run");
    // iperf3's server takes one test at a time and may still be finishing the previous one.
    for (int attempt = 0; attempt < 5; ++attempt) {
      out = env.ExecInLoad({"iperf3", "-c", (*server)->ip, "-p", "5201", "-t",
                            std::to_string(o_.iperf_seconds), "-P", std::to_string(streams), "-J"},
                           std::chrono::seconds(o_.iperf_seconds + 30));
      if (out.ok() || out.status().message().find("busy") == std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    auto usage = sampler.Stop();
    if (usage.ok()) run.resources = Resources(*usage);
    if (out.ok()) {
      json j = json::parse(*out, nullptr, false);
      const json* bps = nullptr;
      if (j.is_object() && j.contains("end") && j["end"].contains("sum_received")) {
        bps = &j["end"]["sum_received"]["bits_per_second"];
      }
      if (bps && bps->is_number()) {
        run.gbps = Round(bps->get<double>() / 1e9, 1e-3);
        if (j["end"].contains("sum_sent")) {
          run.retransmits = j["end"]["sum_sent"].value("retransmits", int64_t{0});
        }
      } else {
        run.error = "iperf3 printed no end.sum_received.bits_per_second";
      }
    } else {
      run.error = std::string(out.status().message());
    }
    Verify(env, before, run);
    if (!run.error.empty()) {
      Error(
          absl::StrCat("throughput ", pair, " x", streams, ", mode ", env.mode(), ": ", run.error));
    } else {
      Progress(absl::StrCat("  ", *run.gbps, " Gbit/s"));
    }
    return run;
  }

  // The data path below HTTP (results.h DataplaneResult): per pair, per figure, modes
  // interleaved.
  void Dataplane(std::vector<std::unique_ptr<Env>>& envs) {
    DataplaneResult res;
    res.round_trips = o_.dataplane_round_trips;
    res.message_bytes = kDataplaneMessageBytes;
    res.connect_seconds = o_.dataplane_connect_seconds;
    std::vector<std::unique_ptr<EchoServer>> servers;  // alive until the scenario ends
    std::vector<Env*> ready;
    const up::MeshState* ebpf = nullptr;
    for (auto& env : envs) {
      if (SidecarMode(env->mode())) continue;
      if (auto st = DataplaneSetUp(*env, servers); !st.ok()) {
        Error(absl::StrCat("dataplane, mode ", env->mode(), ": ", st.message()));
        continue;
      }
      ready.push_back(env.get());
      if (env->mode() == kModeEbpf) ebpf = &env->state();
    }
    BpfRunTime bpf(ebpf);
    for (const DataplanePairDef& def : kDataplanePairs) {
      DataplanePair pair;
      pair.pair = def.pair;
      pair.server = def.server;
      for (const std::string figure : {"pingpong", "connect"}) {
        for (Env* env : ready) {
          if (stop_) return;
          Progress(absl::StrCat("dataplane: ", def.pair, " ", figure, ", ", env->mode()));
          const bool track = env->mode() == kModeEbpf;
          if (track) bpf.Before();
          DataplaneRun run = ClientRun(*env, def, figure);
          if (track) bpf.After(figure);
          (figure == "pingpong" ? pair.pingpong : pair.connect)[env->mode()] = run;
        }
      }
      res.pairs.push_back(std::move(pair));
      doc_.scenarios.dataplane = res;
    }
    bpf.Finish(res);
    doc_.scenarios.dataplane = res;
  }

  // Echo servers in both server pods of `env` (threads of this process in the pods' netns) and
  // one short exchange with each through the mesh (ztunnel may still be loading a pod).
  absl::Status DataplaneSetUp(Env& env, std::vector<std::unique_ptr<EchoServer>>& servers) {
    WEFT_ASSIGN_OR_RETURN(const up::PodState* load, env.Pod(kLoadPod));
    WEFT_RETURN_IF_ERROR(TuneLoadPodSysctls(*load));
    for (const DataplanePairDef& def : kDataplanePairs) {
      WEFT_ASSIGN_OR_RETURN(const up::PodState* pod, env.Pod(def.server));
      WEFT_ASSIGN_OR_RETURN(UniqueFd ns, OpenNetns(testbed::NetnsPath(pod->netns)));
      WEFT_ASSIGN_OR_RETURN(servers.emplace_back(), EchoServer::Start(ns.get(), kPingPongPort));
      WEFT_ASSIGN_OR_RETURN(servers.emplace_back(),
                            EchoServer::Start(ns.get(), kOneShotPort, /*close_after_echo=*/true));
      absl::Status last;
      for (int i = 0; i < 30 && !stop_; ++i) {
        last = env.ExecInLoad({o_.self, "client", "--kind", "pingpong", "--to",
                               absl::StrCat(pod->ip, ":", kPingPongPort), "--warmup", "1",
                               "--round-trips", "10"},
                              std::chrono::seconds(30))
                   .status();
        if (last.ok()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      if (!last.ok()) return absl::UnavailableError(absl::StrCat(def.server, ": ", last.message()));
    }
    return absl::OkStatus();
  }

  // One `client` run in the load pod, checked against the mesh's counters.
  DataplaneRun ClientRun(Env& env, const DataplanePairDef& def, const std::string& figure) {
    DataplaneRun run;
    const std::optional<double> before = Prepare(env, run);
    auto pod = env.Pod(def.server);
    if (!pod.ok()) run.error = std::string(pod.status().message());
    if (run.error.empty()) {
      const std::string ip = (*pod)->ip;
      const bool pingpong = figure == "pingpong";
      std::vector<std::string> argv =
          pingpong
              ? std::vector<
                    std::string>{o_.self,
                                 "client",
                                 "--kind",
                                 "pingpong",
                                 "--to",
                                 absl::StrCat(ip, ":", kPingPongPort),
                                 "--size",
                                 std::to_string(kDataplaneMessageBytes),
                                 "--warmup",
                                 std::to_string(std::max(100, o_.dataplane_round_trips / 20)),
                                 "--round-trips",
                                 std::to_string(o_.dataplane_round_trips),
                                 "--max-seconds",
                                 "60"}
              : std::vector<std::string>{o_.self,     "client",
                                         "--kind",    "connect",
                                         "--to",      absl::StrCat(ip, ":", kOneShotPort),
                                         "--seconds", std::to_string(o_.dataplane_connect_seconds),
                                         "--max",     "200000"};
      auto out = env.ExecInLoad(
          argv, std::chrono::seconds(pingpong ? 90 : o_.dataplane_connect_seconds + 60));
      auto j = out.ok() ? LastJsonLine(*out) : absl::StatusOr<json>(out.status());
      auto parsed = j.ok() ? FromJson<DataplaneRun>(*j) : absl::StatusOr<DataplaneRun>(j.status());
      if (parsed.ok()) {
        run = std::move(*parsed);
        Verify(env, before, run, pingpong ? 1 : run.connections.value_or(0));
      } else {
        run.error = std::string(parsed.status().message());
      }
    }
    if (!run.error.empty()) {
      Error(absl::StrCat("dataplane ", def.pair, " ", figure, ", mode ", env.mode(), ": ",
                         run.error));
    } else if (run.p50_us) {
      Progress(absl::StrCat("  p50 ", *run.p50_us, " p99 ", run.p99_us.value_or(0), " µs"));
    } else {
      Progress(absl::StrCat("  ", Round(run.per_second.value_or(0), 0.1), " connections/s"));
    }
    return run;
  }

  void Churn(std::vector<std::unique_ptr<Env>>& envs) {
    ChurnResult& sc = doc_.scenarios.churn.emplace();
    sc.users = o_.churn_users;
    sc.seconds = o_.churn_seconds;
    sc.threads = o_.churn_threads;
    for (auto& env : envs)
      if (env->mode() != kModeSidecarHttp) sc.runs[env->mode()].max_sustained_cps = 0;
    for (double rate : o_.churn_rates) {
      for (auto& env : envs) {
        if (stop_) return;
        if (env->mode() == kModeSidecarHttp) continue;  // TCP-declared target: as "sidecar"
        ChurnRun& mr = sc.runs[env->mode()];
        if (!mr.steps.empty() && mr.steps.back().saturated) continue;
        Progress(absl::StrCat("churn: ", rate, " new connections/s, ", env->mode()));
        const LoadRun r =
            LoadgenRun(*env,
                       {"--target", "http://echo-tcp.shop.svc.cluster.local", "--users",
                        std::to_string(o_.churn_users), "--threads",
                        std::to_string(o_.churn_threads), "--rate", absl::StrCat(rate), "--warmup",
                        "1s", "--duration", absl::StrCat(o_.churn_seconds, "s"), "--drain", "5s",
                        "--timeout", "5s", "--conn", "per-request"},
                       1 + o_.churn_seconds, absl::StrCat("churn ", rate));
        ChurnStep step;
        step.asked_cps = rate;
        const double achieved = r.achieved_rps.value_or(0);
        const double sent = static_cast<double>(r.sent.value_or(0));
        const double errors = static_cast<double>(r.errors.value_or(0) + r.unfinished.value_or(0));
        const double p99 = r.latency_ms.p99.value_or(0);
        step.achieved_cps = Round(achieved, 0.1);
        step.p99_ms = p99;
        step.errors = errors;
        step.cpu_cores = r.resources.cpu_cores.value_or(0);
        step.host_cpu_cores = r.resources.host_cpu_cores.value_or(0);
        step.mesh_connections = r.mesh_connections;
        step.error = r.error;
        // Saturated: it no longer keeps up (achieved < 95 % of asked), requests fail, or
        // they queue (p99 over 100 ms at a rate the echo server answers in well under 1 ms).
        step.saturated = !r.error.empty() || achieved < 0.95 * rate ||
                         (sent > 0 && errors / sent > 0.001) || p99 > 100;
        if (!step.saturated) mr.max_sustained_cps = rate;
        Progress(absl::StrCat("  achieved ", Round(achieved, 0.1), "/s, p99 ", p99, " ms",
                              step.saturated ? ", saturated" : ""));
        mr.steps.push_back(std::move(step));
      }
    }
  }

 private:
  static void Line(const LoadRun& run) {
    if (!run.error.empty()) return;
    const Percentiles& l = run.latency_ms;
    Progress(absl::StrCat("  ", run.achieved_rps.value_or(0), "/", run.asked_rps.value_or(0),
                          " rps, p50 ", l.p50.value_or(0), " p75 ", l.p75.value_or(0), " p99 ",
                          l.p99.value_or(0), " ms, errors ", run.errors.value_or(0), ", cpu ",
                          run.resources.cpu_cores.value_or(0), " cores, mem ",
                          run.resources.mem_bytes.value_or(0) >> 20, " MiB"));
  }

  const Options& o_;
  const std::atomic<bool>& stop_;
  SuiteResults doc_;
  int seq_ = 0;
};

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

void Options::ApplyDefaults() {
  auto def = [&](int& v, int full, int q) {
    if (v <= 0) v = quick ? q : full;
  };
  if (seed_users.empty()) {
    seed_users = quick ? std::vector<int>{5, 20, 40} : std::vector<int>{5, 10, 20, 30, 40};
  }
  if (istio_connections.empty()) {
    istio_connections = quick ? std::vector<int>{64} : std::vector<int>{4, 64};
  }
  def(seed_warmup_seconds, 5, 2);
  def(seed_duration_seconds, 30, 8);
  def(istio_warmup_seconds, 5, 2);
  def(istio_duration_seconds, 30, 8);
  def(iperf_seconds, 10, 4);
  def(churn_seconds, 10, 4);
  def(dataplane_round_trips, 20000, 5000);
  def(dataplane_connect_seconds, 5, 2);
  if (churn_rates.empty()) {
    churn_rates = quick ? std::vector<double>{1000, 2000, 2500, 3000,  3500, 4000,
                                              5000, 6000, 8000, 10000, 12000}
                        : std::vector<double>{250,  500,  1000, 1500, 2000, 2500,  3000,  3500,
                                              4000, 5000, 6000, 7000, 8000, 10000, 12000, 16000};
  }
}

std::string Usage() {
  return R"(usage: weft-bench-suite [flags]   (root; bench/run.sh builds and runs it)
Weft vs bare vs iptables capture vs sidecar meshes (HAProxy mode tcp and mode http), scenarios
seed/istio/throughput/churn/dataplane/scale.
       weft-bench-suite client --kind pingpong|connect|idle --to IP:PORT ...
                           (the dataplane and scale scenarios' client, run in a pod)
       weft-bench-suite report RESULTS.json [--out DIR]
                           the report (and plots, with --out) of an earlier run again
  --quick                  a subset with shorter steps (under 10 minutes)
  --modes LIST             comma-separated, run order: bare,ebpf,iptables,sidecar,sidecar-http
  --scenarios LIST         seed,istio,throughput,churn,dataplane,scale
  --users LIST             seed: users per step (default 5,10,20,30,40; quick 5,20,40)
  --rate-per-user R        seed: requests/s per user (default 5)
  --seed-seconds N         seed: measured seconds per step (default 30; quick 8)
  --istio-connections LIST istio: connections (default 4,64; quick 64)
  --istio-protocols LIST   istio: http1,grpc (default both; grpc = unary calls over h2c)
  --istio-rps R            istio: requests/s (default 1000)
  --istio-seconds N        istio: measured seconds per case (default 30; quick 8)
  --iperf-seconds N        throughput: seconds per iperf3 run (default 10; quick 4)
  --churn-rates LIST       churn: new connections/s steps
  --churn-seconds N        churn: seconds per step (default 10; quick 4)
  --churn-threads N        churn: load generator threads, every mode (default 2)
  --dataplane-round-trips N   dataplane: 1 KiB round trips per ping-pong run (default 20000;
                           quick 5000)
  --dataplane-connect-seconds N  dataplane: seconds per connection-rate run (default 5; quick 2)
  --scale-pods LIST        scale: pod counts
  --scale-connections LIST scale: idle connection counts
  --out DIR                write results.json, report.md and plots there
  --work-dir DIR           manifests, mesh state and logs (default: a new /tmp directory)
  --keep-work-dir          keep it (logs of every mesh) after the run
  --log-level LEVEL        the meshes' daemons (default warn)
  --weftctl PATH --loadgen PATH --h2echo PATH --teashop-manifests DIR
)";
}

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) {
    if (i) o.command_line += " ";
    o.command_line += argv[i];
  }
  CLI::App app("weft-bench-suite", "weft-bench-suite");
  app.set_help_flag();  // --help prints Usage(), below
  app.add_flag("-h,--help", o.help);
  app.add_flag("--quick", o.quick);
  app.add_flag("--keep-work-dir", o.keep_work_dir);
  app.add_option("--modes", o.modes)
      ->delimiter(',')
      ->check(CLI::IsMember({"bare", "ebpf", "iptables", "sidecar", "sidecar-http"}));
  app.add_option("--istio-protocols", o.istio_protocols)
      ->delimiter(',')
      ->check(CLI::IsMember({"http1", "grpc"}));
  app.add_option("--scenarios", o.scenarios)
      ->delimiter(',')
      ->check(CLI::IsMember({"seed", "istio", "throughput", "churn", "dataplane", "scale"}));
  std::vector<int> churn_rates;
  for (auto [flag, list] : std::vector<std::pair<const char*, std::vector<int>*>>{
           {"--users", &o.seed_users},
           {"--istio-connections", &o.istio_connections},
           {"--scale-pods", &o.scale_pods},
           {"--scale-connections", &o.scale_connections},
           {"--churn-rates", &churn_rates}}) {
    app.add_option(flag, *list)->delimiter(',')->check(CLI::PositiveNumber);
  }
  for (auto [flag, v] : std::vector<std::pair<const char*, double*>>{
           {"--rate-per-user", &o.rate_per_user}, {"--istio-rps", &o.istio_rps}}) {
    app.add_option(flag, *v)->check(CLI::PositiveNumber);
  }
  for (auto [flag, v] : std::vector<std::pair<const char*, int*>>{
           {"--seed-seconds", &o.seed_duration_seconds},
           {"--istio-seconds", &o.istio_duration_seconds},
           {"--iperf-seconds", &o.iperf_seconds},
           {"--churn-seconds", &o.churn_seconds},
           {"--churn-threads", &o.churn_threads},
           {"--dataplane-round-trips", &o.dataplane_round_trips},
           {"--dataplane-connect-seconds", &o.dataplane_connect_seconds}}) {
    app.add_option(flag, *v)->check(CLI::PositiveNumber);
  }
  for (auto [flag, v] : std::vector<std::pair<const char*, std::string*>>{
           {"--out", &o.out_dir},
           {"--work-dir", &o.work_dir},
           {"--log-level", &o.log_level},
           {"--weftctl", &o.weftctl},
           {"--loadgen", &o.loadgen},
           {"--h2echo", &o.h2echo},
           {"--teashop-manifests", &o.teashop_manifests}}) {
    app.add_option(flag, *v);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat(e.what(), " (see --help)"));
  }
  if (!churn_rates.empty()) o.churn_rates.assign(churn_rates.begin(), churn_rates.end());
  o.ApplyDefaults();
  return o;
}

namespace {

// The binaries and inputs the run uses: given by flag, else found (FindBinary).
absl::Status ResolveInputs(Options& o) {
  WEFT_ASSIGN_OR_RETURN(o.weftctl, FindBinary(o.weftctl, "weftctl", "cli/weftctl"));
  WEFT_ASSIGN_OR_RETURN(o.loadgen,
                        FindBinary(o.loadgen, "weft-loadgen", "bench/loadgen/weft-loadgen"));
  // The `client` subcommand the dataplane and scale scenarios run in pods is this binary.
  std::error_code self_ec;
  o.self = fs::read_symlink("/proc/self/exe", self_ec).string();
  if (self_ec) return absl::InternalError("cannot read /proc/self/exe: " + self_ec.message());
  WEFT_ASSIGN_OR_RETURN(o.teashop,
                        FindBinary(o.teashop, "weft-teashop", "examples/teashop/weft-teashop"));
  // A pod's command: an absolute path (weftctl up runs it as given).
  WEFT_ASSIGN_OR_RETURN(o.h2echo, FindBinary(o.h2echo, "weft-h2echo", "bench/loadgen/weft-h2echo"));
  o.h2echo = fs::absolute(o.h2echo).string();
  if (o.teashop_manifests.empty()) o.teashop_manifests = WEFT_TEASHOP_MANIFESTS;
  if (!fs::is_directory(o.teashop_manifests)) {
    return absl::NotFoundError(absl::StrCat("no tea shop manifests at ", o.teashop_manifests,
                                            " (--teashop-manifests DIR)"));
  }
  return absl::OkStatus();
}

// The document's header: what ran, where and when.
void StartDocument(const Options& o, SuiteResults& doc) {
  doc.suite = "weft-bench-suite";
  doc.started = Now();
  doc.invocation = o.invoked_as.empty() ? o.command_line : o.invoked_as;
  doc.command_line = o.command_line;
  doc.revision = o.revision;
  doc.quick = o.quick;
  struct utsname u {};
  uname(&u);
  doc.machine.nproc = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  doc.machine.kernel = u.release;
  doc.machine.mem_total_bytes = MemTotal();
  doc.machine.load_before = LoadAvg();
  doc.modes = o.modes;
  for (const auto& m : o.modes) doc.mode_titles[m] = ModeTitle(m);
  doc.work_dir = o.work_dir;
}

// One environment per mode; a mode whose mesh does not come up is an error and is left out.
std::vector<std::unique_ptr<Env>> UpEnvs(const Options& o, Registry& registry, Runner& r,
                                         const std::atomic<bool>& stop) {
  std::vector<std::unique_ptr<Env>> envs;
  for (const auto& m : o.modes) {
    if (stop) break;
    auto env = std::make_unique<Env>(m, o, o.weftctl, registry);
    if (auto st = env->Up(); !st.ok()) {
      r.Error(absl::StrCat("mode ", m, ": setting up its mesh failed: ", st.message()));
      (void)env->Down();
      continue;
    }
    r.doc().meshes.push_back({m, env->name(), env->state().prefix, env->state().dir});
    envs.push_back(std::move(env));
  }
  return envs;
}

// The scale scenario on meshes of its own (scale.h), Weft modes only.
void ScaleScenario(const Options& o, Registry& registry, Runner& r, const std::atomic<bool>& stop) {
  ScaleOptions so = o.quick ? ScaleOptions::Quick() : ScaleOptions();
  so.weftctl = o.weftctl;
  so.bench = o.self;
  so.teashop = o.teashop;
  so.state_root = o.work_dir + "/scale-state";
  so.work_dir = o.work_dir + "/scale";
  so.name_prefix = absl::StrCat("wss", getpid());
  so.log = [](const std::string& line) { Progress("  " + line); };
  registry.Add(so.name_prefix + "-*", so.state_root);
  std::vector<std::string> weft_modes;
  for (const auto& m : o.modes) {
    if (WeftMode(m)) weft_modes.push_back(m);
  }
  if (!weft_modes.empty()) so.modes = weft_modes;
  if (!o.scale_pods.empty()) so.pod_counts = o.scale_pods;
  if (!o.scale_connections.empty()) so.connection_counts = o.scale_connections;
  Progress("scale: ztunnel and agent memory vs pods and idle connections");
  auto scale = RunScale(so, stop);
  if (!scale.ok()) {
    r.Error(absl::StrCat("scale: ", scale.status().message()));
    return;
  }
  for (const std::string& e : scale->errors) r.Error("scale: " + e);
  r.doc().scenarios.scale = std::move(*scale);
}

}  // namespace

absl::StatusOr<SuiteResults> Run(const Options& in, const std::atomic<bool>& stop) {
  Options o = in;
  o.ApplyDefaults();
  WEFT_RETURN_IF_ERROR(ResolveInputs(o));
  bool made_work_dir = false;
  if (o.work_dir.empty()) {
    char tmpl[] = "/tmp/weft-bench-suite.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    o.work_dir = tmpl;
    made_work_dir = true;
  } else {
    std::error_code ec;
    fs::create_directories(o.work_dir, ec);
  }

  Runner r(o, stop);
  SuiteResults& doc = r.doc();
  StartDocument(o, doc);
  const bool need_envs = Has(o.scenarios, "seed") || Has(o.scenarios, "istio") ||
                         Has(o.scenarios, "throughput") || Has(o.scenarios, "churn") ||
                         Has(o.scenarios, "dataplane");
  for (const std::string& line : Registry::CleanStale(o.weftctl)) {
    Progress("cleanup of an earlier run: " + line);
  }
  Registry registry;
  std::vector<std::unique_ptr<Env>> envs;
  if (need_envs) {
    envs = UpEnvs(o, registry, r, stop);
    if (envs.empty() && !stop) {
      return absl::FailedPreconditionError(
          absl::StrCat("no mode could be set up: ", absl::StrJoin(doc.errors, "; ")));
    }
  }
  if (!stop && Has(o.scenarios, "seed")) r.Seed(envs);
  if (!stop && Has(o.scenarios, "istio")) r.Istio(envs);
  if (!stop && Has(o.scenarios, "throughput")) r.Throughput(envs);
  if (!stop && Has(o.scenarios, "churn")) r.Churn(envs);
  if (!stop && Has(o.scenarios, "dataplane")) r.Dataplane(envs);
  for (auto& env : envs) {
    if (auto st = env->Down(); !st.ok()) {
      r.Error(absl::StrCat("mode ", env->mode(), ": teardown: ", st.message()));
    }
  }
  envs.clear();
  if (!stop && Has(o.scenarios, "scale")) ScaleScenario(o, registry, r, stop);
  registry.Clear();
  doc.finished = Now();
  doc.machine.load_after = LoadAvg();
  if (made_work_dir && !o.keep_work_dir && !stop) {
    std::error_code ec;
    fs::remove_all(o.work_dir, ec);
  }
  if (stop) return absl::CancelledError("interrupted");
  return doc;
}

}  // namespace weft::bench::suite
