#include "ztunnel/app/ztunnel_app.h"

#include <chrono>
#include <fstream>
#include <iterator>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft::ztunnel {

ZtunnelApp::ZtunnelApp(ZtunnelOptions opts) : opts_(std::move(opts)) {}

ZtunnelApp::~ZtunnelApp() {
  Stop();
}

absl::Status ZtunnelApp::Start() {
  metrics_ = std::make_unique<Metrics>();
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

  if (!opts_.config_file.empty()) {
    watcher_ = std::make_unique<ConfigFileWatcher>(
        opts_.config_file, [this](SnapshotPtr s) { OnConfig(std::move(s)); },
        [this](const absl::Status& st) {
          metrics_->ConfigLoad(false, "");
          metrics_->BadInput("config", "invalid_config");
          LOG_ERROR("config", "config file rejected; the last good config stays in force",
                    {{"file", opts_.config_file}, {"error", st.ToString()}});
        });
    WEFT_RETURN_IF_ERROR(watcher_->Start());
  } else if (cp) {
    auto co = opts_.control_plane.ClientOptions(opts_.node, "ztunnel");
    co.registry = metrics_->registry();
    cp_config_ = std::make_unique<ConfigClient>(std::move(co),
                                                [this](const SnapshotPtr& s) { OnConfig(s); });
    WEFT_RETURN_IF_ERROR(cp_config_->Start());
  } else {
    return absl::InvalidArgumentError(
        "--config FILE (standalone mode) or --control-plane ADDR is required");
  }

  AdminOptions ao;
  ao.admin_addr = opts_.admin_addr;
  ao.metrics_addr = opts_.metrics_addr;
  ao.readiness_addr = opts_.readiness_addr;
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
  admin_ = std::make_unique<AdminServer>(std::move(ao));
  WEFT_RETURN_IF_ERROR(admin_->Start());

  WEFT_RETURN_IF_ERROR(proxy_->Start());

  if (!opts_.inpod_socket.empty()) {
    HandoffServer::Callbacks cb;
    cb.add = [this](const weft::inpod::v1::AddWorkload& add, UniqueFd netns) {
      metrics_->WorkloadProxyStarting();
      absl::Status st = AddPod(add, std::move(netns));
      metrics_->WorkloadProxyStarted(st.ok());
      return st;
    };
    cb.del = [this](const std::string& uid) {
      const double before = metrics_->enrolled_pods().Value();
      proxy_->RemovePod(uid);
      if (metrics_->enrolled_pods().Value() < before) metrics_->WorkloadProxyStopped();
    };
    cb.on_bad_input = [this](std::string_view kind) { metrics_->BadInput("handoff", kind); };
    handoff_ = std::make_unique<HandoffServer>(opts_.inpod_socket, std::move(cb));
    WEFT_RETURN_IF_ERROR(handoff_->Start());
  }
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

absl::Status ZtunnelApp::AddPod(const weft::inpod::v1::AddWorkload& add, UniqueFd netns) {
  if (!add.has_ebpf()) return proxy_->AddPod(add.uid(), std::move(netns));
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
  o.orig_dst = provider.get();
  uint32_t slot = add.ebpf().slot();
  EbpfOrigDstProvider* prov = provider.get();
  o.on_listener = [prov, slot](ListenerKind kind, const SockAddr& bound, int fd) {
    if (kind == ListenerKind::kOutbound) return absl::OkStatus();  // reached by connect rewrite
    return prov->RegisterListener(slot, kind == ListenerKind::kHbone, bound, fd);
  };
  return proxy_->AddPod(add.uid(), std::move(netns), o);
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
}

void ZtunnelApp::Stop() {
  {
    std::lock_guard<std::mutex> lock(cert_mu_);
    stopping_ = true;
  }
  cert_cv_.notify_all();
  if (cert_thread_.joinable()) cert_thread_.join();
  if (handoff_) handoff_->Stop();
  if (watcher_) watcher_->Stop();
  if (cp_config_) cp_config_->Stop();
  if (ca_certs_) ca_certs_->Stop();
  if (proxy_) proxy_->Stop();
  if (admin_) admin_->Stop();
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
  return j.dump(2);
}

}  // namespace weft::ztunnel
