#include "ztunnel/app/ztunnel_app.h"

#include <chrono>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft::ztunnel {

ZtunnelApp::ZtunnelApp(ZtunnelOptions opts) : opts_(std::move(opts)) {}

ZtunnelApp::~ZtunnelApp() {
  Stop();
}

absl::Status ZtunnelApp::Start() {
  metrics_ = std::make_unique<Metrics>();
  deny_ = std::make_unique<ConnectDenyInstaller>(metrics_.get(), opts_.deny_at_connect, opts_.node);
  metrics_->SetBeforeScrape([d = deny_.get()] { d->ExportCounts(); });
  const bool cp = opts_.control_plane.enabled();
  if (!opts_.certs_dir.empty()) {
    certs_ = std::make_unique<FileCertificateProvider>(opts_.certs_dir);
  } else if (cp) {
    CaClientOptions co;
    const auto& ep = opts_.control_plane;
    co.address = ep.address;
    if (!ep.root_file.empty()) {
      std::ifstream f(ep.root_file);
      if (!f) {
        return absl::InvalidArgumentError(
            absl::StrCat("--cp-root ", ep.root_file, ": cannot read the mesh root certificate"));
      }
      co.root_pem.assign(std::istreambuf_iterator<char>(f), {});
    }
    co.tls_server_name = ep.server_name;
    co.node = opts_.node;
    if (!ep.token_file.empty()) co.token = TokenFromFile(ep.token_file);
    co.metrics = metrics_.get();
    WEFT_ASSIGN_OR_RETURN(auto ca, CaCertificateProvider::Create(std::move(co)));
    ca_certs_ = ca.get();
    certs_ = std::move(ca);
  } else {
    return absl::InvalidArgumentError(
        "--certs DIR (see `weftctl dev-certs`) or --control-plane ADDR is required");
  }
  tls_ = std::make_unique<TlsContextCache>(certs_.get(), opts_.trust_domain_aliases);
  if (!opts_.proxy.tap) opts_.proxy.tap = std::make_shared<TapBuffer>();
  proxy_ = std::make_unique<Proxy>(opts_.proxy, &store_, tls_.get(), metrics_.get(),
                                   orig_dst_override_ ? orig_dst_override_ : &so_orig_dst_);

  WEFT_RETURN_IF_ERROR(StartConfig());
  // A successor takes the running ztunnel's listeners (pods and admin ports) before it binds
  // anything of its own: the same sockets, so nothing queued on them is lost.
  WEFT_ASSIGN_OR_RETURN(std::optional<TakenState> taken, TakeOver());

  admin_ = std::make_unique<AdminServer>(MakeAdminOptions());
  WEFT_RETURN_IF_ERROR(admin_->Start());
  WEFT_RETURN_IF_ERROR(proxy_->Start());
  WEFT_RETURN_IF_ERROR(StartHandoff(taken));
  if (predecessor_) {
    // Both serve the same listeners now; the predecessor stops accepting and starts draining.
    auto drain = predecessor_->Commit();
    if (!drain.ok())
      return absl::Status(drain.status().code(),
                          absl::StrCat("taking over from ztunnel pid ", predecessor_pid_,
                                       ": commit: ", drain.status().message()));
    LOG_INFO("ztunnel", "took over from the running ztunnel",
             {{"predecessor_pid", predecessor_pid_},
              {"pods", taken ? taken->pods.size() : 0},
              {"predecessor_drains_ms", drain->count()}});
    predecessor_.reset();
  }
  if (!opts_.inpod_socket.empty() && opts_.takeover) WEFT_RETURN_IF_ERROR(StartTakeoverServer());
  if (ca_certs_) ca_certs_->Start();
  started_ = true;
  cert_thread_ = std::thread([this] { CertLoop(); });
  LOG_INFO("ztunnel", "ztunnel started",
           {{"node", opts_.node},
            {"workers", opts_.proxy.workers},
            {"admin", admin_->admin_addr().ToString()},
            {"metrics", admin_->metrics_addr().ToString()},
            {"readiness", admin_->readiness_addr().ToString()},
            {"inpod_socket", opts_.inpod_socket}});
  return absl::OkStatus();
}

absl::Status ZtunnelApp::StartConfig() {
  const bool cp = opts_.control_plane.enabled();
  if (!opts_.config_file.empty()) {
    watcher_ = std::make_unique<ConfigFileWatcher>(
        opts_.config_file, [this](SnapshotPtr s) { OnConfig(std::move(s)); },
        [this](const absl::Status& st) {
          metrics_->ConfigLoad(false, "");
          metrics_->BadInput("config", "invalid_config");
          LOG_ERROR("config", "config file rejected; the last good config stays in force",
                    {{"file", opts_.config_file}, {"error", st.ToString()}});
        });
    return watcher_->Start();
  }
  if (cp) {
    auto co = opts_.control_plane.ClientOptions(opts_.node, "ztunnel");
    co.registry = metrics_->registry();
    cp_config_ = std::make_unique<ConfigClient>(std::move(co),
                                                [this](const SnapshotPtr& s) { OnConfig(s); });
    return cp_config_->Start();
  }
  return absl::InvalidArgumentError(
      "--config FILE (standalone mode) or --control-plane ADDR is required");
}

namespace {
using weft::inpod::v1::ListenerRole;

ListenerRole RoleOf(ListenerKind k) {
  switch (k) {
    case ListenerKind::kOutbound:
      return weft::inpod::v1::LISTENER_OUTBOUND;
    case ListenerKind::kInboundPlain:
      return weft::inpod::v1::LISTENER_INBOUND_PLAIN;
    case ListenerKind::kHbone:
      return weft::inpod::v1::LISTENER_HBONE;
  }
  return weft::inpod::v1::LISTENER_ROLE_UNSPECIFIED;
}

std::optional<ListenerKind> KindOf(ListenerRole r) {
  switch (r) {
    case weft::inpod::v1::LISTENER_OUTBOUND:
      return ListenerKind::kOutbound;
    case weft::inpod::v1::LISTENER_INBOUND_PLAIN:
      return ListenerKind::kInboundPlain;
    case weft::inpod::v1::LISTENER_HBONE:
      return ListenerKind::kHbone;
    default:
      return std::nullopt;
  }
}

// A predecessor's admin listener is served only where this ztunnel is configured to listen (an
// upgrade may move a port; port 0 asks for a new one).
int AdoptIfSame(std::optional<TakenState>& taken, ListenerRole role, const SockAddr& want) {
  if (!taken || want.port == 0) return -1;
  for (auto& [r, fd] : taken->admin) {
    if (r != role || !fd.valid()) continue;
    auto la = LocalAddress(fd.get());
    if (la.ok() && *la == want) return fd.release();
  }
  return -1;
}
}  // namespace

AdminOptions ZtunnelApp::MakeAdminOptions() {
  AdminOptions ao;
  ao.admin_addr = opts_.admin_addr;
  ao.metrics_addr = opts_.metrics_addr;
  ao.readiness_addr = opts_.readiness_addr;
  ao.admin_fd = adopted_admin_[0];
  ao.metrics_fd = adopted_admin_[1];
  ao.readiness_fd = adopted_admin_[2];
  ao.registries = {metrics_->registry()};
  ao.config_dump = [this] { return ConfigDump(); };
  ao.not_ready_reason = [this] { return NotReadyReason(); };
  // `weftctl tap`: GET /tap?since=SEQ&max=N on the loopback admin port only (paths and
  // identities of other tenants' requests: never on the metrics address).
  ao.json_handlers["/tap"] =
      [tap = opts_.proxy.tap](
          const std::map<std::string, std::string>& q) -> absl::StatusOr<std::string> {
    uint64_t since = 0, max = 500;
    auto num = [&](const char* key, uint64_t* out) -> absl::Status {
      auto it = q.find(key);
      if (it == q.end()) return absl::OkStatus();
      if (!absl::SimpleAtoi(it->second, out)) {
        return absl::InvalidArgumentError(absl::StrCat("/tap: ", key, " must be a number"));
      }
      return absl::OkStatus();
    };
    WEFT_RETURN_IF_ERROR(num("since", &since));
    WEFT_RETURN_IF_ERROR(num("max", &max));
    return tap->ReadJson(since, std::min<uint64_t>(std::max<uint64_t>(max, 1), 5000));
  };
  // Which process answers (an upgrade replaces it behind the same ports).
  ao.json_handlers["/server_info"] =
      [this](const std::map<std::string, std::string>&) -> absl::StatusOr<std::string> {
    nlohmann::json j = {{"pid", ::getpid()},
                        {"node", opts_.node},
                        {"predecessor_pid", predecessor_pid_},
                        {"pods", proxy_->PodUids().size()}};
    return j.dump();
  };
  return ao;
}

absl::StatusOr<std::optional<TakenState>> ZtunnelApp::TakeOver() {
  if (opts_.inpod_socket.empty() || !opts_.takeover) return std::nullopt;
  const std::string path = TakeoverSocketPath(opts_.inpod_socket);
  auto c = TakeoverClient::Connect(path, opts_.takeover_drain_deadline);
  if (absl::IsNotFound(c.status())) return std::nullopt;  // no ztunnel runs: a plain start
  if (!c.ok())
    return absl::Status(c.status().code(),
                        absl::StrCat("cannot take over from the running ztunnel (", path, "): ",
                                     c.status().message(), "; --no-takeover starts without"));
  predecessor_ = std::move(*c);
  predecessor_pid_ = predecessor_->predecessor_pid();
  LOG_INFO("ztunnel", "taking over from the running ztunnel; waiting for config first",
           {{"predecessor_pid", predecessor_pid_}});
  WEFT_RETURN_IF_ERROR(WaitForConfig(opts_.takeover_config_wait));
  auto taken = predecessor_->Take();
  if (!taken.ok())
    return absl::Status(taken.status().code(),
                        absl::StrCat("taking over from ztunnel pid ", predecessor_pid_, ": ",
                                     taken.status().message()));
  std::optional<TakenState> out(std::move(*taken));
  adopted_admin_ = {AdoptIfSame(out, weft::inpod::v1::LISTENER_ADMIN, opts_.admin_addr),
                    AdoptIfSame(out, weft::inpod::v1::LISTENER_METRICS, opts_.metrics_addr),
                    AdoptIfSame(out, weft::inpod::v1::LISTENER_READINESS, opts_.readiness_addr)};
  return out;
}

absl::Status ZtunnelApp::WaitForConfig(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!config_loaded_) {
    if (std::chrono::steady_clock::now() >= until)
      return absl::DeadlineExceededError(
          absl::StrCat("no config within ", timeout.count(),
                       " ms; the running ztunnel keeps serving (nothing was taken over)"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::OkStatus();
}

absl::Status ZtunnelApp::StartHandoff(std::optional<TakenState>& taken) {
  if (opts_.inpod_socket.empty()) return absl::OkStatus();
  HandoffServer::Callbacks cb;
  cb.add = [this](const weft::inpod::v1::AddWorkload& add, UniqueFd netns) {
    metrics_->WorkloadProxyStarting();
    absl::Status st = AddPod(add, std::move(netns));
    metrics_->WorkloadProxyStarted(st.ok());
    return st;
  };
  cb.del = [this](const std::string& uid) {
    const double before = metrics_->enrolled_pods().Value();
    deny_->RemovePod(uid);
    proxy_->RemovePod(uid);
    if (metrics_->enrolled_pods().Value() < before) metrics_->WorkloadProxyStopped();
  };
  cb.on_bad_input = [this](std::string_view kind) { metrics_->BadInput("handoff", kind); };
  handoff_ = std::make_unique<HandoffServer>(opts_.inpod_socket, std::move(cb));
  if (taken) {
    // The predecessor's pods, on the very sockets it served; the agent confirms them when it
    // reconnects here (its SnapshotSent removes any it no longer has).
    for (auto& p : taken->pods) {
      std::vector<PodOptions::Adopted> adopt;
      for (auto& [role, fd] : p.listeners) {
        auto kind = KindOf(role);
        if (!kind) return absl::DataLossError("a taken-over listener of an unknown kind");
        adopt.push_back({*kind, fd.get()});
      }
      metrics_->WorkloadProxyStarting();
      absl::Status st = AddPod(p.add, std::move(p.netns), std::move(adopt));
      metrics_->WorkloadProxyStarted(st.ok());
      if (!st.ok())
        return absl::Status(st.code(),
                            absl::StrCat("taking over pod ", p.add.uid(), ": ", st.message()));
      handoff_->Adopt(p.add);
    }
  }
  return handoff_->Start();
}

absl::Status ZtunnelApp::StartTakeoverServer() {
  TakeoverServer::Callbacks cb;
  cb.on_hello = [this](int64_t) {
    if (handoff_) handoff_->Pause();  // no pod changes until the successor commits or leaves
  };
  cb.snapshot = [this] { return Snapshot(); };
  cb.commit = [this](std::chrono::milliseconds asked) { return HandOver(asked); };
  cb.on_abort = [this] {
    if (!handoff_) return;
    // The successor may have put its own handoff socket at the path before it left.
    handoff_->Stop();
    handoff_->Resume();
    absl::Status st = handoff_->Start();
    if (!st.ok())
      LOG_ERROR("ztunnel", "cannot serve the handoff socket again", {{"error", st.ToString()}});
  };
  takeover_ =
      std::make_unique<TakeoverServer>(TakeoverSocketPath(opts_.inpod_socket), std::move(cb));
  return takeover_->Start();
}

TakeoverSnapshot ZtunnelApp::Snapshot() {
  TakeoverSnapshot snap;
  std::map<std::string, weft::inpod::v1::AddWorkload> adds;
  if (handoff_)
    for (auto& a : handoff_->pods()) adds[a.uid()] = a;
  for (auto& h : proxy_->HeldPods()) {
    auto it = adds.find(h.uid);
    if (it == adds.end() || h.netns < 0) continue;  // not the agent's (direct tests)
    TakeoverSnapshot::Pod p;
    p.add = it->second;
    p.netns = h.netns;
    for (const auto& l : h.listeners) p.listeners.emplace_back(RoleOf(l.kind), l.fd);
    snap.pods.push_back(std::move(p));
    snap.keep.push_back(h.keep);
  }
  const ListenerRole roles[] = {weft::inpod::v1::LISTENER_ADMIN, weft::inpod::v1::LISTENER_METRICS,
                                weft::inpod::v1::LISTENER_READINESS};
  auto fds = admin_->listener_fds();
  for (size_t i = 0; i < fds.size() && i < 3; ++i)
    if (fds[i] >= 0) snap.admin.emplace_back(roles[i], fds[i]);
  return snap;
}

// The successor serves every listener: stop accepting, let the agent reconnect (to the
// successor's handoff socket, now at the path), give the admin ports up, drain.
std::chrono::milliseconds ZtunnelApp::HandOver(std::chrono::milliseconds asked) {
  const auto deadline = asked.count() > 0 ? asked : opts_.drain_deadline;
  handed_over_ = true;
  if (deny_) deny_->Detach();
  if (handoff_) handoff_->Stop();
  proxy_->StopAccepting();
  admin_->Stop();
  LOG_INFO("ztunnel", "handed over to a successor; draining open connections",
           {{"drain_deadline_ms", deadline.count()}});
  drain_thread_ = std::thread([this, deadline] { Drain(deadline); });
  return deadline;
}

void ZtunnelApp::Drain(std::chrono::milliseconds deadline) {
  const auto start = std::chrono::steady_clock::now();
  const auto until = start + deadline;
  size_t open = proxy_->OpenConnections();
  size_t first = open;
  while (open > 0 && !stop_drain_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    open = proxy_->OpenConnections();
  }
  LOG_INFO("ztunnel", open == 0 ? "drained" : "drain deadline reached; closing what is left",
           {{"open_at_handover", first},
            {"closed_now", open},
            {"drain_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count()}});
  proxy_->Stop();
  drained_ = true;
}

bool ZtunnelApp::Retiring() const {
  return handed_over_.load() || (takeover_ && takeover_->pending());
}

absl::Status ZtunnelApp::AddPod(const weft::inpod::v1::AddWorkload& add, UniqueFd netns,
                                std::vector<PodOptions::Adopted> adopt) {
  if (!add.has_ebpf()) {
    PodOptions o;
    o.adopt = std::move(adopt);
    return proxy_->AddPod(add.uid(), std::move(netns), o);
  }
  const std::string& dir = add.ebpf().pin_dir();
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pod ", add.uid(), ": eBPF capture without a pin dir"));
  }
  auto& provider = ebpf_[dir];
  if (!provider) {
    auto p = EbpfOrigDstProvider::Open(dir);
    if (!p.ok()) {
      ebpf_.erase(dir);
      return absl::Status(
          p.status().code(),
          absl::StrCat("pod ", add.uid(), ": eBPF capture: ", p.status().message()));
    }
    provider = std::move(*p);
  }
  PodOptions o;
  o.adopt = std::move(adopt);
  o.orig_dst = provider.get();
  uint32_t slot = add.ebpf().slot();
  EbpfOrigDstProvider* prov = provider.get();
  o.on_listener = [prov, slot](ListenerKind kind, const SockAddr& bound, int fd) {
    if (kind == ListenerKind::kOutbound) return absl::OkStatus();  // reached by connect rewrite
    return prov->RegisterListener(slot, kind == ListenerKind::kHbone, bound, fd);
  };
  auto cookie = NetnsCookie(netns.get());
  WEFT_RETURN_IF_ERROR(proxy_->AddPod(add.uid(), std::move(netns), o));
  if (cookie.ok()) {
    deny_->AddPod(add.uid(), *cookie, dir);
  } else {
    LOG_WARN("deny-at-connect", "no netns cookie for the pod: its connects are not compiled",
             {{"pod", add.uid()}, {"error", cookie.status().ToString()}});
  }
  return absl::OkStatus();
}

void ZtunnelApp::OnConfig(SnapshotPtr s) {
  store_.Set(s);
  config_loaded_ = true;
  metrics_->ConfigLoad(true, s->version());
  LOG_INFO("config", "config loaded",
           {{"source", opts_.config_file.empty() ? opts_.control_plane.address : opts_.config_file},
            {"version", s->version()},
            {"workloads", s->workloads().size()},
            {"services", s->services().size()},
            {"authorization_policies", s->authorization_policies().size()}});
  proxy_->Reevaluate(s);
  deny_->OnConfig(s);
}

void ZtunnelApp::Stop() {
  {
    std::lock_guard<std::mutex> lock(cert_mu_);
    stopping_ = true;
  }
  cert_cv_.notify_all();
  if (cert_thread_.joinable()) cert_thread_.join();
  stop_drain_ = true;
  if (drain_thread_.joinable()) drain_thread_.join();
  if (takeover_) takeover_->Stop();
  if (handoff_) handoff_->Stop();
  if (watcher_) watcher_->Stop();
  if (cp_config_) cp_config_->Stop();
  if (ca_certs_) ca_certs_->Stop();
  if (proxy_) proxy_->Stop();
  if (admin_) admin_->Stop();
  if (metrics_) metrics_->SetBeforeScrape(nullptr);
  if (deny_) deny_->Stop();
}

// Publishes each local identity's certificate expiry and warms the cache so rotation happens
// off the data path.
void ZtunnelApp::CertLoop() {
  std::unique_lock<std::mutex> lock(cert_mu_);
  while (!stopping_) {
    lock.unlock();
    auto snap = store_.Get();
    std::set<std::string> seen;
    for (const auto& uid : proxy_->PodUids()) {
      const Workload* w = snap->FindWorkloadByUid(uid);
      if (!w || !seen.insert(w->identity().ToString()).second) continue;
      auto b = certs_->Get(w->identity());
      if (b.ok()) {
        metrics_->cert_expiry(w->identity().ToString())
            .Set(static_cast<double>(
                std::chrono::duration_cast<std::chrono::seconds>((*b)->not_after.time_since_epoch())
                    .count()));
      } else {
        LOG_WARN("identity", "no usable certificate for a local identity",
                 {{"identity", w->identity().ToString()}, {"error", b.status().ToString()}});
      }
    }
    lock.lock();
    cert_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return stopping_; });
  }
}

std::string ZtunnelApp::NotReadyReason() const {
  if (!config_loaded_) return "no config loaded yet";
  return "";
}

std::string ZtunnelApp::ConfigDump() const {
  nlohmann::json j;
  j["node"] = opts_.node;
  j["config"] = nlohmann::json::parse(store_.Get()->ToJson(), nullptr, false);
  j["pods"] = nlohmann::json::array();
  for (const auto& uid : proxy_->PodUids()) {
    nlohmann::json p = {{"uid", uid}};
    if (auto b = proxy_->BoundAddrs(uid)) {
      for (auto& a : b->hbone) p["hbone"].push_back(a.ToString());
      for (auto& a : b->outbound) p["outbound"].push_back(a.ToString());
      for (auto& a : b->inbound_plain) p["inbound"].push_back(a.ToString());
    }
    j["pods"].push_back(p);
  }
  j["agent_connected"] = handoff_ ? handoff_->agent_connected() : false;
  if (deny_) j["deny_at_connect"] = deny_->Dump();
  return j.dump(2);
}

}  // namespace weft::ztunnel
