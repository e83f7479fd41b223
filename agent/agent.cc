#include "agent/agent.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/status.h"
#include "ztunnel/capture/capture.h"
#include "ztunnel/state/config_file.h"

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

bool SameCapture(const Workload& a, const Workload& b) {
  return a.capture_exclude_ports == b.capture_exclude_ports &&
         CidrStrings(a.capture_exclude_cidrs) == CidrStrings(b.capture_exclude_cidrs);
}

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

absl::StatusOr<CaptureMode> ParseCaptureMode(std::string_view s) {
  if (s == "iptables") return CaptureMode::kIptables;
  if (s == "none") return CaptureMode::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("--capture: unknown mode \"", Av(s),
                   "\"; supported: iptables (in-pod REDIRECT rules), none (handoff only)"));
}

std::string Usage() {
  return "usage: weft-agent --node NAME --config FILE --ztunnel-socket PATH\n"
         "                  [--capture iptables|none] [--once] [--uninstall-on-exit]\n"
         "                  [--log-level debug|info|warn|error]\n"
         "  --node               this node's name; only workloads scheduled here are enrolled\n"
         "  --config             standalone config file (YAML or JSON ConfigSnapshot)\n"
         "  --ztunnel-socket     ztunnel's pod handoff socket\n"
         "  --capture            how pod traffic reaches ztunnel (default iptables)\n"
         "  --once               sync once and exit (no watching, no reconnects)\n"
         "  --uninstall-on-exit  remove the capture from every pod when stopping\n"
         "                       (default: keep it, so pods fail closed while the agent is down)\n";
}

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine cl;
  auto value = [&](int& i, std::string_view flag, std::string_view arg,
                   std::string* out) -> absl::Status {
    size_t eq = arg.find('=');
    if (eq != std::string_view::npos) {
      *out = std::string(arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      *out = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(Av(flag), " needs a value"));
    }
    if (out->empty()) return absl::InvalidArgumentError(absl::StrCat(Av(flag), " is empty"));
    return absl::OkStatus();
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view flag = arg.substr(0, arg.find('='));
    std::string v;
    if (flag == "--node") {
      WEFT_RETURN_IF_ERROR(value(i, flag, arg, &cl.options.node));
    } else if (flag == "--config") {
      WEFT_RETURN_IF_ERROR(value(i, flag, arg, &cl.options.config_path));
    } else if (flag == "--ztunnel-socket") {
      WEFT_RETURN_IF_ERROR(value(i, flag, arg, &cl.options.ztunnel_socket));
    } else if (flag == "--capture") {
      WEFT_RETURN_IF_ERROR(value(i, flag, arg, &v));
      WEFT_ASSIGN_OR_RETURN(cl.options.capture, ParseCaptureMode(v));
    } else if (flag == "--log-level") {
      WEFT_RETURN_IF_ERROR(value(i, flag, arg, &cl.log_level));
      log::Level l;
      if (!log::ParseLevel(cl.log_level, &l))
        return absl::InvalidArgumentError(absl::StrCat(
            "--log-level: unknown level \"", cl.log_level, "\"; use debug, info, warn or error"));
    } else if (arg == "--once") {
      cl.once = true;
    } else if (arg == "--uninstall-on-exit") {
      cl.options.uninstall_on_exit = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument \"", Av(arg), "\""));
    }
  }
  std::vector<std::string> missing;
  if (cl.options.node.empty()) missing.push_back("--node");
  if (cl.options.config_path.empty()) missing.push_back("--config");
  if (cl.options.ztunnel_socket.empty()) missing.push_back("--ztunnel-socket");
  if (!missing.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("missing required flag(s): ", absl::StrJoin(missing, ", ")));
  if (cl.once && cl.options.uninstall_on_exit)
    return absl::InvalidArgumentError(
        "--once leaves the pods enrolled; --uninstall-on-exit makes no sense with it");
  return cl;
}

Agent::Agent(AgentOptions opts)
    : opts_(std::move(opts)), client_(opts_.ztunnel_socket, opts_.ack_timeout) {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // Without the wake-up fd the agent cannot be stopped or notified: nothing sensible to do.
  WEFT_CHECK(fd >= 0);
  wake_.reset(fd);
}

Agent::~Agent() = default;

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
  for (const auto& [uid, p] : pods_)
    v.push_back(PodState{uid, p.w.netns_path, p.captured, p.handed_off});
  std::lock_guard<std::mutex> lock(pub_mu_);
  published_ = std::move(v);
}

absl::Status Agent::InstallCapture(Pod& p) {
  if (opts_.capture == CaptureMode::kNone) return absl::OkStatus();
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
  auto ns = OpenNetns(w.netns_path);
  if (!ns.ok())
    return absl::Status(ns.status().code(),
                        absl::StrCat("pod ", w.uid, ": ", ns.status().message(),
                                     " (is the pod running, and is netnsPath right?)"));
  Pod p;
  p.w = w;
  p.netns = std::move(*ns);
  WEFT_RETURN_IF_ERROR(InstallCapture(p));
  LOG_INFO(kScope, "pod enrolled",
           {{"uid", w.uid}, {"netns", w.netns_path}, {"captured", p.captured}});
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
    absl::Status st = ztunnel::RemoveInpodIptables(p.netns.get());
    if (!st.ok())
      LOG_ERROR(kScope, "removing capture failed",
                {{"uid", uid}, {"error", std::string(st.message())}});
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
    if (w.netns_path.empty()) {
      std::string err = "no netnsPath: standalone mode needs the pod's netns path";
      if (pod_errors_[w.uid] != err)
        LOG_WARN(kScope, "pod skipped", {{"uid", w.uid}, {"error", err}});
      pod_errors_[w.uid] = err;
      continue;
    }
    desired[w.uid] = &w;
  }
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
      bool capture_changed = !SameCapture(p.w, *w);
      bool info_changed = !SameInfo(p.w, *w);
      p.w = *w;
      if (capture_changed) st = InstallCapture(p);  // iptables install replaces the rules
      if (info_changed) p.handed_off = false;       // re-sent with the new info
    } else {
      st = Enroll(*w);
    }
    if (st.ok()) {
      if (pod_errors_.erase(uid) > 0) LOG_INFO(kScope, "pod recovered", {{"uid", uid}});
      continue;
    }
    std::string err(st.message());
    if (pod_errors_[uid] != err)
      LOG_ERROR(kScope, "pod enrollment failed; will retry", {{"uid", uid}, {"error", err}});
    pod_errors_[uid] = err;
    if (first.ok()) first = st;
  }
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
    absl::Status st = client_.AddWorkload(uid, InfoOf(p.w), p.netns.get());
    if (st.ok()) {
      p.handed_off = true;
      handoff_errors_.erase(uid);
      LOG_INFO(kScope, "pod handed to ztunnel", {{"uid", uid}});
      continue;
    }
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
  ztunnel::ConfigFileWatcher watcher(
      opts_.config_path, [this](ztunnel::SnapshotPtr s) { OnConfig(std::move(s)); },
      [this](const absl::Status& st) {
        LOG_ERROR(kScope, "config file rejected; keeping the last good config",
                  {{"file", opts_.config_path}, {"error", std::string(st.message())}});
      });
  WEFT_RETURN_IF_ERROR(watcher.Start());
  LOG_INFO(kScope, "agent running",
           {{"node", opts_.node},
            {"config", opts_.config_path},
            {"socket", opts_.ztunnel_socket},
            {"capture", opts_.capture == CaptureMode::kIptables ? "iptables" : "none"}});

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

    if (!client_.connected() && Clock::now() >= next_connect) {
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

    bool unfinished = !pod_errors_.empty();
    if (client_.connected())
      for (const auto& [uid, p] : pods_) unfinished |= !p.handed_off;
    if (!unfinished)
      next_retry = never;
    else if (next_retry == never)
      next_retry = Clock::now() + opts_.pod_retry;
    Publish();

    auto deadline = std::min(next_retry, client_.connected() ? never : next_connect);
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

  watcher.Stop();
  if (opts_.uninstall_on_exit) {
    LOG_INFO(kScope, "stopping: removing capture from every pod", {{"pods", pods_.size()}});
    std::vector<std::string> uids;
    for (const auto& [uid, p] : pods_) uids.push_back(uid);
    for (const std::string& uid : uids) Remove(uid, /*tell_ztunnel=*/true);
  } else {
    LOG_INFO(kScope, "stopping: capture left in place, pods fail closed until the agent is back",
             {{"pods", pods_.size()}});
  }
  client_.Close();
  connected_ = false;
  Publish();
  return absl::OkStatus();
}

}  // namespace weft::agent
