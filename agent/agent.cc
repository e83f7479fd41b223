#include "agent/agent.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fcntl.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/cni_server.h"
#include "agent/pod_netns.h"
#include "bpf/bpffs.h"
#include "bpf/node.h"
#include "bpf/pins.h"
#include "common/admin/admin_server.h"
#include "common/admin/scrape_time_registry.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "ztunnel/capture/capture.h"
#include "ztunnel/state/config_file.h"
#include "ztunnel/xds/client.h"

namespace weft::agent {
namespace {

using Clock = std::chrono::steady_clock;
using ztunnel::Workload;

constexpr char kScope[] = "agent";

std::vector<std::string> CidrStrings(const std::vector<Cidr>& v) {
  std::vector<std::string> out;
  for (const Cidr& c : v) out.push_back(c.ToString());
  return out;
}

// `addresses` matter to eBPF capture only (sk_lookup steers by address).
bool SameCapture(const Workload& a, const Workload& b, bool addresses_matter) {
  return a.capture_exclude_ports == b.capture_exclude_ports &&
         CidrStrings(a.capture_exclude_cidrs) == CidrStrings(b.capture_exclude_cidrs) &&
         (!addresses_matter || a.addresses == b.addresses);
}

// The agent's registry: its own counters and gauges plus, at each scrape, the eBPF decision
// counters read from the pinned per-CPU maps (they live in the kernel, not in this process,
// and survive agent restarts).
using AgentRegistry = ScrapeTimeRegistry;

bool SameInfo(const Workload& a, const Workload& b) {
  return a.name == b.name && a.ns == b.ns && a.service_account == b.service_account;
}

weft::inpod::v1::WorkloadInfo InfoOf(const Workload& w) {
  weft::inpod::v1::WorkloadInfo i;
  i.set_name(w.name);
  i.set_namespace_(w.ns);
  i.set_service_account(w.service_account);
  return i;
}

}  // namespace

struct Agent::Metrics {
  std::shared_ptr<AgentRegistry> registry = std::make_shared<AgentRegistry>();
  prometheus::Family<prometheus::Gauge>& enrolled_family =
      prometheus::BuildGauge()
          .Name("weft_agent_enrolled_pods")
          .Help("Pods of this node the agent has captured")
          .Register(*registry);
  prometheus::Gauge& enrolled = enrolled_family.Add({});
  prometheus::Family<prometheus::Gauge>& mode =
      prometheus::BuildGauge()
          .Name("weft_agent_capture_mode")
          .Help("1 for the capture mode in effect (ebpf, iptables or none)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& errors =
      prometheus::BuildCounter()
          .Name("weft_agent_errors_total")
          .Help("Failed agent operations by kind (enroll, unenroll, handoff)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& cni =
      prometheus::BuildCounter()
          .Name("weft_agent_cni_requests_total")
          .Help(
              "weft-cni requests by op (add, del, check, bad) and result (enrolled, "
              "passthrough, retry, error)")
          .Register(*registry);
  std::unique_ptr<AdminServer> admin;

  Metrics() {
    // Present (at 0) from the start, so rate() and alerts see them before the first error.
    for (const char* op : {"enroll", "unenroll", "handoff"}) errors.Add({{"op", op}});
  }
  void Error(std::string_view op) { errors.Add({{"op", std::string(op)}}).Increment(); }
  void Cni(std::string_view op, const cni::Reply& r) {
    std::string result = r.ok ? (r.enrolled ? "enrolled" : "passthrough")
                         : r.code == cni::kErrTryAgainLater ? "retry"
                                                            : "error";
    cni.Add({{"op", std::string(op)}, {"result", result}}).Increment();
  }
};

namespace {
constexpr std::pair<std::string_view, CaptureMode> kCaptureModeNames[] = {
    {"none", CaptureMode::kNone},
    {"iptables", CaptureMode::kIptables},
    {"ebpf", CaptureMode::kEbpf},
    {"auto", CaptureMode::kAuto}};
}  // namespace

absl::StatusOr<CaptureMode> ParseCaptureMode(std::string_view s) {
  for (const auto& [name, mode] : kCaptureModeNames) {
    if (name == s) return mode;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--capture: unknown mode \"", Av(s),
      "\"; supported: ebpf (sk_lookup + cgroup connect hooks), iptables (in-pod REDIRECT "
      "rules), auto (the kernel probe decides), none (handoff only)"));
}

std::string_view CaptureModeName(CaptureMode m) {
  for (const auto& [name, mode] : kCaptureModeNames) {
    if (mode == m) return name;
  }
  return "unknown";
}

Agent::Agent(AgentOptions opts)
    : opts_(std::move(opts)),
      client_(opts_.ztunnel_socket, opts_.ack_timeout),
      mode_(opts_.capture),
      metrics_(std::make_unique<Metrics>()) {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // Without the wake-up fd the agent cannot be stopped or notified: nothing sensible to do.
  WEFT_CHECK(fd >= 0);
  wake_.reset(fd);
}

// Like a killed agent, destruction leaves every pin in place (unless Run uninstalled).
Agent::~Agent() {
  Shutdown();
}

void Agent::Shutdown() {
  std::unique_ptr<AdminServer> admin;
  {
    std::lock_guard<std::mutex> lock(pub_mu_);
    if (metrics_) admin = std::move(metrics_->admin);
  }
  // Stopped outside the lock: its thread may be inside config_dump, which takes pub_mu_.
  if (admin) admin->Stop();
}

std::optional<SockAddr> Agent::metrics_addr() const {
  std::lock_guard<std::mutex> lock(pub_mu_);
  if (!metrics_ || !metrics_->admin) return std::nullopt;
  return metrics_->admin->metrics_addr();
}

absl::Status Agent::Init(bool serve) {
  if (!initialized_) {
    WEFT_RETURN_IF_ERROR(InitCapture());
    initialized_ = true;
  }
  if (serve && opts_.metrics_addr && !metrics_->admin) return StartAdmin();
  return absl::OkStatus();
}

// Chooses the capture mode (the kernel probe decides auto) and sets eBPF capture up.
absl::Status Agent::InitCapture() {
  CaptureMode want = opts_.capture;
  if (want == CaptureMode::kAuto || want == CaptureMode::kEbpf) {
    ProbeReport report = ProbeKernel();
    std::fputs(report.Format().c_str(), stderr);
    if (want == CaptureMode::kEbpf && !report.ebpf_possible)
      return absl::FailedPreconditionError(
          absl::StrCat("--capture ebpf: this node cannot run eBPF capture: ", report.decision,
                       " (see the report above; use --capture auto or iptables)"));
    CaptureMode chosen = report.ebpf_possible ? CaptureMode::kEbpf : CaptureMode::kIptables;
    LOG_INFO(kScope, "capture mode chosen",
             {{"requested", std::string(CaptureModeName(want))},
              {"mode", std::string(CaptureModeName(chosen))},
              {"reason", report.decision}});
    mode_ = chosen;
  }
  if (mode_ == CaptureMode::kEbpf) {
    absl::Status st = InitEbpf();
    if (!st.ok() && opts_.capture == CaptureMode::kEbpf) return st;
    if (!st.ok()) {
      // auto: the probe passed but setting up failed (e.g. the cgroup is not writable);
      // iptables still captures the pods.
      LOG_ERROR(kScope, "eBPF capture could not be set up; falling back to iptables",
                {{"error", std::string(st.message())}});
      node_.reset();
      pin_dir_.clear();
      mode_ = CaptureMode::kIptables;
    }
  }
  for (CaptureMode m : {CaptureMode::kEbpf, CaptureMode::kIptables, CaptureMode::kNone})
    metrics_->mode.Add({{"mode", std::string(CaptureModeName(m))}}).Set(m == mode_.load() ? 1 : 0);
  return absl::OkStatus();
}

absl::Status Agent::StartAdmin() {
  metrics_->registry->extra = [this](std::vector<prometheus::MetricFamily>* out) {
    if (mode_.load() != CaptureMode::kEbpf || pin_dir_.empty()) return;
    auto counters = bpf::NodeCapture::ReadPinnedCounters(pin_dir_);
    if (!counters.ok()) return;  // uninstalled: nothing to report
    prometheus::MetricFamily f;
    f.name = "weft_bpf_decisions_total";
    f.help = "Capture decisions of the eBPF programs by program and reason (drop_* refused)";
    f.type = prometheus::MetricType::Counter;
    for (auto [program, counts] :
         {std::pair<const char*, const bpf::ReasonCounts*>{"inbound", &counters->inbound},
          {"outbound", &counters->outbound}}) {
      for (const auto& [reason, n] : *counts) {
        prometheus::ClientMetric m;
        m.label = {{"program", program}, {"reason", std::string(bpf::ReasonName(reason))}};
        m.counter.value = static_cast<double>(n);
        f.metric.push_back(std::move(m));
      }
    }
    out->push_back(std::move(f));
  };
  AdminOptions ao;
  ao.component = "weft-agent";
  ao.metrics_addr = *opts_.metrics_addr;
  // /config_dump and POST /logging stay on loopback whatever address /metrics is exposed on
  // (a DaemonSet scrapes the node address; the admin endpoints must not be reachable there).
  ao.admin_addr = SockAddr{*IpAddr::Parse("127.0.0.1"), 0};
  ao.readiness_addr = SockAddr{*IpAddr::Parse("127.0.0.1"), 0};
  ao.registries = {metrics_->registry};
  ao.config_dump = [this] {
    nlohmann::json pods = nlohmann::json::array();
    for (const PodState& p : Pods())
      pods.push_back({{"uid", p.uid},
                      {"netnsPath", p.netns_path},
                      {"captured", p.captured},
                      {"handedOff", p.handed_off},
                      {"netnsCookie", p.netns_cookie},
                      {"slot", p.slot}});
    return nlohmann::json{{"node", opts_.node},
                          {"capture", std::string(CaptureModeName(mode_.load()))},
                          {"bpfPinDir", pin_dir_},
                          {"pods", pods}}
        .dump(2);
  };
  ao.not_ready_reason = [this]() -> std::string {
    return ztunnel_connected() ? "" : "not connected to ztunnel";
  };
  auto admin = std::make_unique<AdminServer>(std::move(ao));
  absl::Status st = admin->Start();
  if (!st.ok())
    return absl::Status(st.code(), absl::StrCat("--metrics: ", st.message(),
                                                " (pick another ADDR:PORT, or --metrics off)"));
  LOG_INFO(kScope, "metrics endpoint listening",
           {{"metrics", admin->metrics_addr().ToString()},
            {"admin", admin->admin_addr().ToString()},
            {"readiness", admin->readiness_addr().ToString()}});
  std::lock_guard<std::mutex> lock(pub_mu_);
  metrics_->admin = std::move(admin);
  return absl::OkStatus();
}

absl::Status Agent::InitEbpf() {
  std::string cgroup = opts_.cgroup_path;
  if (cgroup.empty()) {
    WEFT_ASSIGN_OR_RETURN(cgroup, FindCgroup2Mount());
  }
  int fd = ::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return absl::FailedPreconditionError(absl::StrCat(
        "--cgroup ", cgroup, ": ", std::strerror(errno),
        " (give a cgroup v2 directory, e.g. the cgroup2 mount root or the kubepods slice)"));
  cgroup_.reset(fd);
  pin_dir_ = opts_.bpf_pin_dir.empty() ? bpf::DefaultPinDir(opts_.node) : opts_.bpf_pin_dir;
  auto node = bpf::NodeCapture::Open(pin_dir_, cgroup_.get());
  if (!node.ok())
    return absl::Status(node.status().code(),
                        absl::StrCat("eBPF capture (pin dir ", pin_dir_, ", cgroup ", cgroup,
                                     "): ", node.status().message()));
  node_ = std::move(*node);
  const bpf::AdoptionReport& r = node_->adoption();
  LOG_INFO(kScope, "eBPF capture ready",
           {{"pin_dir", pin_dir_},
            {"cgroup", cgroup},
            {"maps_reused", r.maps_reused},
            {"links_readopted", r.links_readopted},
            {"links_attached", r.links_attached},
            {"swept", r.swept}});
  for (const std::string& n : r.notes) LOG_WARN(kScope, "eBPF pins", {{"note", n}});
  // The local legs are an optimisation: unavailable, every connection keeps loopback TCP.
  absl::Status legs = node_->outbound().SetLocalLegs(opts_.local_legs);
  if (!legs.ok()) {
    LOG_WARN(kScope, "sk_msg local legs unavailable; apps and ztunnel keep loopback TCP",
             {{"error", std::string(legs.message())}});
  } else {
    LOG_INFO(kScope, "sk_msg local legs", {{"enabled", opts_.local_legs}});
  }
  return absl::OkStatus();
}

void Agent::SweepEnrolled() {
  if (!node_) return;
  auto enrolled = node_->ListEnrolled();
  if (!enrolled.ok()) {
    LOG_ERROR(kScope, "reading the enrolled pods from the pinned maps failed",
              {{"error", std::string(enrolled.status().message())}});
    return;
  }
  std::set<uint64_t> ours;
  for (const auto& [uid, p] : pods_)
    if (p.captured) ours.insert(p.cookie);
  for (const bpf::EnrolledPod& e : *enrolled) {
    if (ours.count(e.netns_cookie)) continue;
    absl::Status st = node_->Unenroll(e.netns_cookie);
    if (st.ok()) {
      LOG_INFO(kScope, "unenrolled a pinned pod that is no longer in the config",
               {{"netns_cookie", e.netns_cookie}, {"slot", e.slot}});
    } else {
      metrics_->Error("unenroll");
      LOG_ERROR(kScope, "unenrolling a stale pinned pod failed",
                {{"netns_cookie", e.netns_cookie}, {"error", std::string(st.message())}});
    }
  }
}

void Agent::Stop() {
  stop_.store(true);
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void Agent::OnConfig(ztunnel::SnapshotPtr s) {
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    pending_ = std::move(s);
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

std::vector<Agent::PodState> Agent::Pods() const {
  std::lock_guard<std::mutex> lock(pub_mu_);
  return published_;
}

void Agent::Publish() {
  std::vector<PodState> v;
  size_t captured = 0;
  for (const auto& [uid, p] : pods_) {
    v.push_back(PodState{uid, p.w.netns_path.empty() ? p.cni_netns : p.w.netns_path, p.captured,
                         p.handed_off, p.cookie, p.slot});
    captured += p.captured ? 1 : 0;
  }
  metrics_->enrolled.Set(static_cast<double>(captured));
  // Not every pod enrolled: one pod that cannot be (its netns gone) must not keep the node from
  // taking new ones, which CNI ADD enrols (and the loop keeps retrying the others).
  ready_ = current_ != nullptr && client_.connected() &&
           (opts_.cni_install.bin_dir.empty() || cni_installed_);
  std::lock_guard<std::mutex> lock(pub_mu_);
  published_ = std::move(v);
}

absl::Status Agent::InstallCapture(Pod& p) {
  if (mode_ == CaptureMode::kNone) return absl::OkStatus();
  if (mode_ == CaptureMode::kEbpf) {
    bpf::PodSpec spec;
    spec.netns_fd = p.netns.get();
    spec.addresses = p.w.addresses;
    spec.exclude_ports = p.w.capture_exclude_ports;
    spec.exclude_cidrs = p.w.capture_exclude_cidrs;
    auto slot = node_->Enroll(spec);
    if (!slot.ok())
      return absl::Status(slot.status().code(),
                          absl::StrCat("pod ", p.w.uid, ": eBPF capture of ", p.w.netns_path, ": ",
                                       slot.status().message()));
    p.slot = *slot;
    p.captured = true;
    return absl::OkStatus();
  }
  ztunnel::InpodIptablesOptions o;
  o.exclude_ports = p.w.capture_exclude_ports;
  o.exclude_cidrs = p.w.capture_exclude_cidrs;
  absl::Status st = ztunnel::InstallInpodIptables(p.netns.get(), o);
  if (!st.ok())
    return absl::Status(st.code(), absl::StrCat("pod ", p.w.uid, ": installing capture in ",
                                                p.w.netns_path, ": ", st.message()));
  p.captured = true;
  return absl::OkStatus();
}

absl::Status Agent::Enroll(const Workload& w) {
  // Local mode names the netns; in a cluster CNI ADD names it, or (a pod that started before
  // the plugin was installed) it is found from the pod UID.
  std::string cni_netns;
  if (auto c = cni_pods_.find(w.uid); w.netns_path.empty() && c != cni_pods_.end())
    cni_netns = c->second.netns;
  const std::string& path = w.netns_path.empty() ? cni_netns : w.netns_path;
  auto ns = path.empty() ? FindPodNetns(w.uid) : OpenPodNetns(path);
  if (!ns.ok())
    return absl::Status(
        ns.status().code(),
        absl::StrCat("pod ", w.uid, ": ", ns.status().message(),
                     w.netns_path.empty() ? "" : " (is the pod running, and is netnsPath right?)"));
  Pod p;
  p.w = WithCni(w);
  p.cni_netns = cni_netns;
  p.netns = std::move(*ns);
  auto cookie = NetnsCookie(p.netns.get());
  if (cookie.ok()) p.cookie = *cookie;
  WEFT_RETURN_IF_ERROR(InstallCapture(p));
  LOG_INFO(kScope, "pod enrolled",
           {{"uid", w.uid},
            {"netns", path.empty() ? "(from /proc)" : path},
            {"captured", p.captured},
            {"capture", std::string(CaptureModeName(mode_.load()))},
            {"slot", p.slot}});
  pods_[w.uid] = std::move(p);
  return absl::OkStatus();
}

void Agent::Remove(const std::string& uid, bool tell_ztunnel) {
  auto it = pods_.find(uid);
  if (it == pods_.end()) return;
  Pod& p = it->second;
  // Capture goes first: the app's connections then flow directly instead of hitting a
  // listener that ztunnel is about to close.
  if (p.captured) {
    absl::Status st = mode_ == CaptureMode::kEbpf ? node_->Unenroll(p.cookie)
                                                  : ztunnel::RemoveInpodIptables(p.netns.get());
    if (!st.ok()) {
      metrics_->Error("unenroll");
      LOG_ERROR(kScope, "removing capture failed",
                {{"uid", uid}, {"error", std::string(st.message())}});
    }
  }
  if (tell_ztunnel && client_.connected()) {
    absl::Status st = client_.DelWorkload(uid);
    if (!st.ok()) {
      LOG_WARN(kScope, "DelWorkload failed", {{"uid", uid}, {"error", std::string(st.message())}});
      NoteHandoffError(st);
    }
  }
  LOG_INFO(kScope, "pod removed", {{"uid", uid}});
  handoff_errors_.erase(uid);
  pods_.erase(it);
}

absl::Status Agent::Reconcile(const ztunnel::ConfigSnapshot& snap) {
  std::map<std::string, const Workload*> desired;
  for (const Workload& w : snap.workloads()) {
    if (w.node != opts_.node || !w.in_mesh()) continue;
    if (w.netns_path.empty() && !IsKubernetesUid(w.uid)) {
      std::string err =
          "no netnsPath, and the uid is not a Kubernetes pod UID to find the netns by: give the "
          "pod's netns path";
      if (pod_errors_[w.uid] != err)
        LOG_WARN(kScope, "pod skipped", {{"uid", w.uid}, {"error", err}});
      pod_errors_[w.uid] = err;
      continue;
    }
    if (cni_deleted_.count(w.uid)) continue;  // its sandbox is gone (CNI DEL)
    desired[w.uid] = &w;
  }
  // CNI facts of pods that left the mesh (or the config) are forgotten.
  for (auto it = cni_deleted_.begin(); it != cni_deleted_.end();) {
    const Workload* w = snap.FindWorkloadByUid(*it);
    it = w && w->node == opts_.node && w->in_mesh() ? std::next(it) : cni_deleted_.erase(it);
  }
  for (auto it = cni_pods_.begin(); it != cni_pods_.end();)
    it = desired.count(it->first) ? std::next(it) : cni_pods_.erase(it);
  for (auto it = pod_errors_.begin(); it != pod_errors_.end();) {
    bool still_wanted = false;
    for (const Workload& w : snap.workloads())
      if (w.uid == it->first && w.node == opts_.node && w.in_mesh()) still_wanted = true;
    it = still_wanted ? std::next(it) : pod_errors_.erase(it);
  }

  std::vector<std::string> gone;
  for (const auto& [uid, p] : pods_) {
    auto d = desired.find(uid);
    if (d == desired.end() || d->second->netns_path != p.w.netns_path) gone.push_back(uid);
  }
  for (const std::string& uid : gone) Remove(uid, /*tell_ztunnel=*/true);

  absl::Status first;
  for (const auto& [uid, w] : desired) {
    absl::Status st;
    auto it = pods_.find(uid);
    if (it != pods_.end()) {
      Pod& p = it->second;
      Workload eff = WithCni(*w);
      bool capture_changed = !SameCapture(p.w, eff, mode_ == CaptureMode::kEbpf);
      bool info_changed = !SameInfo(p.w, eff);
      p.w = std::move(eff);
      if (capture_changed) st = InstallCapture(p);  // iptables install replaces the rules
      if (info_changed) p.handed_off = false;       // re-sent with the new info
    } else {
      st = Enroll(*w);
    }
    if (st.ok()) {
      if (pod_errors_.erase(uid) > 0) LOG_INFO(kScope, "pod recovered", {{"uid", uid}});
      continue;
    }
    metrics_->Error("enroll");
    std::string err(st.message());
    if (pod_errors_[uid] != err)
      LOG_ERROR(kScope, "pod enrollment failed; will retry", {{"uid", uid}, {"error", err}});
    pod_errors_[uid] = err;
    if (first.ok()) first = st;
  }
  // After a restart the pinned maps may still hold pods that left while the agent was away.
  if (mode_ == CaptureMode::kEbpf) SweepEnrolled();
  if (client_.connected()) {
    absl::Status st = HandOffPending();
    if (first.ok()) first = st;
  }
  return first;
}

absl::Status Agent::HandOffPending() {
  absl::Status first;
  for (auto& [uid, p] : pods_) {
    if (p.handed_off) continue;
    if (!client_.connected()) break;
    std::optional<weft::inpod::v1::EbpfCapture> ebpf;
    if (mode_ == CaptureMode::kEbpf && p.captured) {
      ebpf.emplace();
      ebpf->set_slot(p.slot);
      ebpf->set_pin_dir(pin_dir_);
    }
    absl::Status st = client_.AddWorkload(uid, InfoOf(p.w), p.netns.get(), ebpf);
    if (st.ok()) {
      p.handed_off = true;
      handoff_errors_.erase(uid);
      LOG_INFO(kScope, "pod handed to ztunnel", {{"uid", uid}});
      continue;
    }
    metrics_->Error("handoff");
    std::string err(st.message());
    // Refusals are retried every pod_retry; log each distinct error once.
    if (handoff_errors_[uid] != err)
      LOG_WARN(kScope, "AddWorkload failed; will retry", {{"uid", uid}, {"error", err}});
    handoff_errors_[uid] = err;
    NoteHandoffError(st);
    if (first.ok()) first = st;
  }
  return first;
}

void Agent::NoteHandoffError(const absl::Status& st) {
  if (!client_.connected()) Disconnect(std::string(st.message()));
}

void Agent::Disconnect(std::string_view why) {
  client_.Close();
  if (connected_.exchange(false))
    LOG_WARN(kScope, "lost the ztunnel connection; will reconnect and replay",
             {{"reason", why}, {"socket", opts_.ztunnel_socket}});
  for (auto& [uid, p] : pods_) p.handed_off = false;
}

absl::Status Agent::ConnectAndReplay() {
  WEFT_RETURN_IF_ERROR(client_.Connect());
  connected_ = true;
  LOG_INFO(kScope, "connected to ztunnel; replaying pods",
           {{"socket", opts_.ztunnel_socket}, {"pods", pods_.size()}});
  for (auto& [uid, p] : pods_) p.handed_off = false;
  absl::Status adds = HandOffPending();
  if (!client_.connected()) return adds;
  absl::Status st = client_.SnapshotSent();
  if (!st.ok()) {
    NoteHandoffError(st);
    return st;
  }
  LOG_INFO(kScope, "snapshot sent to ztunnel", {{"pods", pods_.size()}});
  return adds;
}

absl::Status Agent::RunOnce() {
  if (opts_.config_path.empty()) {
    return absl::InvalidArgumentError("--once needs --config (a file to sync from)");
  }
  WEFT_RETURN_IF_ERROR(Init(/*serve=*/false));
  WEFT_ASSIGN_OR_RETURN(ztunnel::SnapshotPtr snap, ztunnel::LoadConfigFile(opts_.config_path));
  current_ = snap;
  absl::Status enroll = Reconcile(*snap);
  absl::Status handoff = ConnectAndReplay();
  Publish();
  client_.Close();
  connected_ = false;
  if (!handoff.ok()) return handoff;
  return enroll;
}

absl::Status Agent::Run() {
  std::unique_ptr<ztunnel::ConfigFileWatcher> watcher;
  std::unique_ptr<ztunnel::ConfigClient> stream;
  if (!opts_.control_plane.enabled()) {
    watcher = std::make_unique<ztunnel::ConfigFileWatcher>(
        opts_.config_path, [this](ztunnel::SnapshotPtr s) { OnConfig(std::move(s)); },
        [this](const absl::Status& st) {
          LOG_ERROR(kScope, "config file rejected; keeping the last good config",
                    {{"file", opts_.config_path}, {"error", std::string(st.message())}});
        });
  } else {
    // The stream keeps the last good config while weftd is away and NACKs bad versions.
    auto co = opts_.control_plane.ClientOptions(opts_.node, "agent");
    stream = std::make_unique<ztunnel::ConfigClient>(
        std::move(co), [this](const ztunnel::SnapshotPtr& s) { OnConfig(s); });
  }
  WEFT_RETURN_IF_ERROR(Init(/*serve=*/true));
  if (watcher) WEFT_RETURN_IF_ERROR(watcher->Start());
  if (stream) WEFT_RETURN_IF_ERROR(stream->Start());
  // Last: from here on the loop runs, which answers every CNI request.
  WEFT_RETURN_IF_ERROR(StartCni());
  LOG_INFO(
      kScope, "agent running",
      {{"node", opts_.node},
       {"config", opts_.control_plane.enabled() ? opts_.control_plane.address : opts_.config_path},
       {"socket", opts_.ztunnel_socket},
       {"capture", std::string(CaptureModeName(mode_.load()))}});

  const auto never = Clock::time_point::max();
  auto backoff = opts_.backoff_min;
  auto next_connect = Clock::now();
  auto next_retry = never;
  bool warned_unreachable = false;

  while (!stop_.load()) {
    ztunnel::SnapshotPtr snap;
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      snap = std::move(pending_);
    }
    if (snap) {
      LOG_INFO(kScope, "config loaded", {{"version", snap->version()}});
      current_ = snap;
    }
    if (snap || (current_ && Clock::now() >= next_retry)) {
      next_retry = never;
      (void)Reconcile(*current_);  // failures are logged per pod and retried below
    }

    // Only with a config: a replay tells ztunnel the complete pod list, and an agent that
    // restarted would otherwise announce "no pods" until weftd's first push arrived, making
    // ztunnel drop (and re-add) every pod. Until then ztunnel keeps serving what it has.
    if (current_ && !client_.connected() && Clock::now() >= next_connect) {
      absl::Status st = ConnectAndReplay();
      if (client_.connected()) {
        backoff = opts_.backoff_min;
        warned_unreachable = false;
      } else {
        if (!warned_unreachable)
          LOG_WARN(kScope, "ztunnel unreachable; retrying", {{"error", std::string(st.message())}});
        else
          LOG_DEBUG(kScope, "ztunnel still unreachable", {{"error", std::string(st.message())}});
        warned_unreachable = true;
        next_connect = Clock::now() + backoff;
        backoff = std::min(backoff * 2, opts_.backoff_max);
      }
    }

    ServeCni();
    TryInstallCni();

    bool unfinished = !pod_errors_.empty();
    if (client_.connected())
      for (const auto& [uid, p] : pods_) unfinished |= !p.handed_off;
    if (!unfinished)
      next_retry = never;
    else if (next_retry == never)
      next_retry = Clock::now() + opts_.pod_retry;
    Publish();

    auto deadline =
        std::min({next_retry, client_.connected() ? never : next_connect, CniDeadline()});
    int timeout_ms = -1;
    if (deadline != never) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()) + 1);
    }
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {client_.fd(), POLLIN | POLLRDHUP, 0}};
    int n = ::poll(fds, client_.connected() ? 2 : 1, timeout_ms);
    if (n < 0 && errno != EINTR) {
      LOG_ERROR(kScope, "poll failed", {{"errno", errno}});
      break;
    }
    if (n > 0 && fds[0].revents) {
      uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof v);
    }
    // ztunnel only ever answers requests, so anything readable between requests means the
    // connection is closing.
    if (n > 0 && client_.connected() && fds[1].revents) {
      Disconnect("ztunnel closed the connection");
      backoff = opts_.backoff_min;
      next_connect = Clock::now() + backoff;
    }
  }

  if (watcher) watcher->Stop();
  if (stream) stream->Stop();
  CloseCni();
  LeaveOnExit();
  return absl::OkStatus();
}

void Agent::LeaveOnExit() {
  if (opts_.uninstall_on_exit) {
    LOG_INFO(kScope, "stopping: removing capture from every pod", {{"pods", pods_.size()}});
    std::vector<std::string> uids;
    for (const auto& [uid, p] : pods_) uids.push_back(uid);
    for (const std::string& uid : uids) Remove(uid, /*tell_ztunnel=*/true);
    if (node_) {
      absl::Status st = node_->Uninstall();
      if (st.ok())
        LOG_INFO(kScope, "eBPF capture uninstalled", {{"pin_dir", pin_dir_}});
      else
        LOG_ERROR(kScope, "eBPF uninstall incomplete",
                  {{"pin_dir", pin_dir_}, {"error", std::string(st.message())}});
      node_.reset();
    }
  } else {
    LOG_INFO(kScope, "stopping: capture left in place; pods stay captured while the agent is away",
             {{"pods", pods_.size()}});
  }
  if (cni_installed_ && (opts_.uninstall_on_exit || opts_.cni_uninstall_on_exit)) {
    absl::Status st = cni::UninstallPlugin(opts_.cni_install);
    if (st.ok())
      LOG_INFO(kScope, "weft-cni uninstalled", {{"conf_dir", opts_.cni_install.conf_dir}});
    else
      LOG_ERROR(kScope, "weft-cni uninstall failed", {{"error", std::string(st.message())}});
  }
  client_.Close();
  connected_ = false;
  Publish();
  Shutdown();
}

// ---- weft-cni ----

absl::Status Agent::StartCni() {
  if (opts_.cni_socket.empty()) return absl::OkStatus();
  cni_server_ = std::make_unique<CniServer>(
      opts_.cni_socket, [this](const cni::Request& r) { return HandleCni(r); },
      [this] {
        metrics_->cni.Add({{"op", "bad"}, {"result", "error"}}).Increment();
      });
  WEFT_RETURN_IF_ERROR(cni_server_->Start());
  TryInstallCni();
  return absl::OkStatus();
}

std::string DefaultCniPlugin() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(cni::kPluginType) : (self.parent_path() / cni::kPluginType).string();
}

void Agent::TryInstallCni() {
  cni::InstallOptions& o = opts_.cni_install;
  if (o.bin_dir.empty() || !cni_server_ || Clock::now() < next_cni_install_) return;
  if (o.plugin_binary.empty()) o.plugin_binary = DefaultCniPlugin();
  if (o.agent_socket.empty()) o.agent_socket = opts_.cni_socket;
  if (cni_installed_) {
    next_cni_install_ = Clock::now() + opts_.cni_recheck;
    auto chained = cni::PluginChained(o);
    if (chained.ok() && *chained) return;
    LOG_WARN(kScope,
             "weft-cni is no longer chained (the network configuration was rewritten?); "
             "installing it again",
             {{"conf_dir", o.conf_dir},
              {"error", chained.ok() ? "" : std::string(chained.status().message())}});
    cni_installed_ = false;
  }
  auto path = cni::InstallPlugin(o);
  if (!path.ok()) {
    LOG_WARN(kScope, "weft-cni not installed yet; will retry",
             {{"error", std::string(path.status().message())}});
    next_cni_install_ = Clock::now() + opts_.pod_retry;
    return;
  }
  cni_installed_ = true;
  next_cni_install_ = Clock::now() + opts_.cni_recheck;
  LOG_INFO(kScope, "weft-cni installed",
           {{"binary", o.bin_dir + "/" + cni::kPluginType}, {"chained_into", *path}});
}

Clock::time_point Agent::CniDeadline() const {
  auto d = Clock::time_point::max();
  for (const auto& c : cni_waiting_) d = std::min(d, c->wait_until);
  if (!opts_.cni_install.bin_dir.empty() && cni_server_) d = std::min(d, next_cni_install_);
  return d;
}

cni::Reply Agent::HandleCni(const cni::Request& req) {
  auto call = std::make_shared<CniCall>();
  call->req = req;
  call->wait_until = Clock::now() + opts_.cni_pod_wait;
  std::future<cni::Reply> done = call->reply.get_future();
  {
    std::lock_guard<std::mutex> lock(cni_mu_);
    if (cni_closed_) return cni::Reply::Error(cni::kErrTryAgainLater, "weft-agent is stopping");
    cni_queue_.push_back(call);
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  // The loop answers every call, at the latest when it stops (CloseCni).
  return done.get();
}

void Agent::ServeCni() {
  std::vector<std::shared_ptr<CniCall>> calls;
  calls.swap(cni_waiting_);
  {
    std::lock_guard<std::mutex> lock(cni_mu_);
    for (auto& c : cni_queue_) calls.push_back(std::move(c));
    cni_queue_.clear();
  }
  bool changed = false;
  for (auto& c : calls) {
    std::optional<cni::Reply> r = AnswerCni(*c);
    if (!r) {
      cni_waiting_.push_back(std::move(c));
      continue;
    }
    metrics_->Cni(c->req.op, *r);
    if (!r->ok)
      LOG_WARN(kScope, "CNI request refused",
               {{"op", c->req.op},
                {"pod", c->req.pod_namespace + "/" + c->req.pod_name},
                {"code", r->code},
                {"error", r->error}});
    c->reply.set_value(std::move(*r));
    changed = true;
  }
  if (changed) Publish();
}

void Agent::CloseCni() {
  std::vector<std::shared_ptr<CniCall>> calls;
  calls.swap(cni_waiting_);
  {
    std::lock_guard<std::mutex> lock(cni_mu_);
    cni_closed_ = true;
    for (auto& c : cni_queue_) calls.push_back(std::move(c));
    cni_queue_.clear();
  }
  for (auto& c : calls)
    c->reply.set_value(cni::Reply::Error(cni::kErrTryAgainLater, "weft-agent is stopping"));
  if (cni_server_) cni_server_->Stop();
}

const Workload* Agent::FindCniWorkload(const cni::Request& r) const {
  if (!current_) return nullptr;
  for (const Workload& w : current_->workloads()) {
    if (w.node != opts_.node || w.ns != r.pod_namespace || w.name != r.pod_name) continue;
    // A pod re-created under the same name is another pod: wait for the config to have it.
    if (!r.pod_uid.empty() && IsKubernetesUid(w.uid) && w.uid != r.pod_uid) continue;
    return &w;
  }
  return nullptr;
}

Workload Agent::WithCni(const Workload& w) const {
  Workload out = w;
  auto c = cni_pods_.find(w.uid);
  if (out.addresses.empty() && c != cni_pods_.end()) out.addresses = c->second.ips;
  return out;
}

std::optional<cni::Reply> Agent::AnswerCni(const CniCall& c) {
  const cni::Request& r = c.req;
  const Workload* w = FindCniWorkload(r);
  if (r.op == "del") return CniDel(w, r);
  if (!w) {
    if (Clock::now() < c.wait_until) return std::nullopt;  // weftd may not have sent it yet
    return cni::Reply::Error(
        cni::kErrTryAgainLater,
        current_ ? absl::StrCat("pod ", r.pod_namespace, "/", r.pod_name, " on node ", opts_.node,
                                " is not in the agent's config yet (weftd has not sent it)")
                 : "weft-agent has no config yet (weftd not reached, or the config file not read)");
  }
  if (!w->in_mesh()) return cni::Reply::Ok(false);
  if (!client_.connected())
    return cni::Reply::Error(cni::kErrTryAgainLater,
                             absl::StrCat("weft-agent is not ready: not connected to ztunnel (",
                                          opts_.ztunnel_socket, ")"));
  return r.op == "add" ? CniAdd(*w, r) : CniCheck(*w, r);
}

cni::Reply Agent::CniAdd(const Workload& w, const cni::Request& r) {
  CniPod cp{r.netns, {}};
  for (const std::string& ip : r.ips)
    if (auto a = IpAddr::Parse(ip); a.ok()) cp.ips.push_back(*a);
  cni_deleted_.erase(w.uid);
  // A new sandbox of the same pod (the runtime re-created it): the old netns goes.
  auto it = pods_.find(w.uid);
  if (it != pods_.end() && w.netns_path.empty() && it->second.cni_netns != r.netns)
    Remove(w.uid, /*tell_ztunnel=*/true);
  cni_pods_[w.uid] = std::move(cp);
  absl::Status st;
  it = pods_.find(w.uid);
  if (it == pods_.end())
    st = Enroll(w);
  else if (!it->second.captured && mode_ != CaptureMode::kNone)
    st = InstallCapture(it->second);
  if (!st.ok()) {
    metrics_->Error("enroll");
    return cni::Reply::Error(cni::kErrEnrollFailed, std::string(st.message()));
  }
  pod_errors_.erase(w.uid);
  (void)HandOffPending();  // errors are per pod: this one's is checked below
  Pod& p = pods_[w.uid];
  if (!p.handed_off) {
    auto e = handoff_errors_.find(w.uid);
    return cni::Reply::Error(
        client_.connected() ? cni::kErrEnrollFailed : cni::kErrTryAgainLater,
        absl::StrCat("ztunnel did not take pod ", w.uid, ": ",
                     e != handoff_errors_.end() ? e->second : "no acknowledgement"));
  }
  LOG_INFO(kScope, "pod enrolled through CNI", {{"uid", w.uid}, {"netns", r.netns}});
  return cni::Reply::Ok(true);
}

cni::Reply Agent::CniDel(const Workload* w, const cni::Request& r) {
  std::string uid = w ? w->uid : "";
  if (uid.empty()) {  // the config may have dropped the pod already
    for (const auto& [u, p] : pods_)
      if (p.w.ns == r.pod_namespace && p.w.name == r.pod_name) uid = u;
  }
  if (uid.empty()) return cni::Reply::Ok(false);
  auto it = pods_.find(uid);
  bool enrolled = it != pods_.end();
  // A DEL for an older sandbox must not unenrol the pod's current one.
  if (enrolled && !r.netns.empty() && !it->second.cni_netns.empty() &&
      it->second.cni_netns != r.netns)
    return cni::Reply::Ok(false);
  if (enrolled) Remove(uid, /*tell_ztunnel=*/true);
  cni_pods_.erase(uid);
  if (w && w->in_mesh()) cni_deleted_.insert(uid);
  pod_errors_.erase(uid);
  return cni::Reply::Ok(enrolled);
}

absl::Status Agent::VerifyCapture(Pod& p) {
  if (mode_ == CaptureMode::kNone) return absl::OkStatus();
  if (!p.captured) return absl::FailedPreconditionError("capture was never installed");
  if (mode_ == CaptureMode::kEbpf) {
    WEFT_ASSIGN_OR_RETURN(std::vector<bpf::EnrolledPod> enrolled, node_->ListEnrolled());
    for (const bpf::EnrolledPod& e : enrolled)
      if (e.netns_cookie == p.cookie) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("the eBPF capture has no entry for the pod's netns (cookie ", p.cookie, ")"));
  }
  WEFT_ASSIGN_OR_RETURN(bool present, ztunnel::InpodIptablesPresent(p.netns.get()));
  if (!present)
    return absl::FailedPreconditionError(
        "the in-pod iptables capture (WEFT_INPOD_* jumps in the nat table) is missing");
  return absl::OkStatus();
}

cni::Reply Agent::CniCheck(const Workload& w, const cni::Request& r) {
  auto it = pods_.find(w.uid);
  if (it == pods_.end()) {
    auto e = pod_errors_.find(w.uid);
    return cni::Reply::Error(cni::kErrDrift,
                             absl::StrCat("pod ", w.uid, " is in the mesh but not enrolled",
                                          e != pod_errors_.end() ? ": " + e->second : ""));
  }
  Pod& p = it->second;
  if (!r.netns.empty() && !p.cni_netns.empty() && p.cni_netns != r.netns)
    return cni::Reply::Error(cni::kErrDrift, absl::StrCat("pod ", w.uid, " is enrolled with netns ",
                                                          p.cni_netns, ", not ", r.netns));
  absl::Status st = VerifyCapture(p);
  if (!st.ok())
    return cni::Reply::Error(cni::kErrDrift, absl::StrCat("pod ", w.uid, ": ", st.message()));
  if (!p.handed_off)
    return cni::Reply::Error(cni::kErrDrift,
                             absl::StrCat("pod ", w.uid, " is not acknowledged by ztunnel"));
  return cni::Reply::Ok(true);
}

}  // namespace weft::agent
