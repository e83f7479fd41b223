#include "cli/localmesh/local_mesh.h"

#include <sys/stat.h>

#include <csignal>

#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "ztunnel/identity/identity.h"

namespace weft::localmesh {

namespace {
constexpr uint16_t kMetricsPort = 15020;
constexpr uint16_t kReadyPort = 15021;
}  // namespace

std::string LocalMesh::PodUid(const std::string& pod) const {
  for (const auto& p : opts_.pods)
    if (p.name == pod) return p.ns + "/" + p.name;
  return pod;
}

absl::StatusOr<UniqueFd> LocalMesh::PodNetns(const std::string& pod) const {
  WEFT_ASSIGN_OR_RETURN(auto name, testbed_->PodNetns(pod));
  return OpenNetns(testbed::NetnsPath(name));
}

absl::StatusOr<UniqueFd> LocalMesh::NodeNetns(int node) const {
  WEFT_ASSIGN_OR_RETURN(auto name, testbed_->NodeNetns(node));
  return OpenNetns(testbed::NetnsPath(name));
}

absl::StatusOr<std::unique_ptr<LocalMesh>> LocalMesh::Start(Options opts) {
  std::unique_ptr<LocalMesh> m(new LocalMesh());
  m->opts_ = std::move(opts);
  auto& o = m->opts_;
  if (o.work_dir.empty()) return absl::InvalidArgumentError("LocalMesh: work_dir is required");
  mkdir(o.work_dir.c_str(), 0755);
  mkdir((o.work_dir + "/logs").c_str(), 0755);
  (void)testbed::CleanupStale();

  testbed::Options tb;
  tb.prefix = testbed::UniquePrefix(o.role);
  tb.nodes = o.nodes;
  for (const auto& p : o.pods) tb.pods.push_back({p.name, p.node});
  tb.cgroups = o.capture == "ebpf" || o.capture == "auto";
  WEFT_ASSIGN_OR_RETURN(m->testbed_, testbed::Testbed::Create(tb));

  // Certificates for every identity in the mesh.
  WEFT_ASSIGN_OR_RETURN(
      auto ca, tls::CertificateAuthority::CreateRoot("weft-local", std::chrono::hours(24)));
  m->ca_ = std::make_unique<tls::CertificateAuthority>(std::move(ca));
  std::string certs = o.work_dir + "/certs";
  WEFT_RETURN_IF_ERROR(ztunnel::WriteRootFile(certs, *m->ca_));
  std::set<std::string> done;
  for (const auto& p : o.pods) {
    if (!p.mesh || !done.insert(p.ns + "/" + p.service_account).second) continue;
    WEFT_RETURN_IF_ERROR(ztunnel::WriteCertFiles(certs, *m->ca_,
                                                 SpiffeId{"cluster.local", p.ns, p.service_account},
                                                 std::chrono::hours(12)));
  }
  WEFT_RETURN_IF_ERROR(m->WriteConfig());
  if (!o.start_mesh) return m;

  m->ztunnels_.resize(o.nodes);
  m->agents_.resize(o.nodes);
  for (int n = 0; n < o.nodes; n++) WEFT_RETURN_IF_ERROR(m->StartZtunnel(n));
  for (int n = 0; n < o.nodes; n++) WEFT_RETURN_IF_ERROR(m->StartAgent(n));
  // Enrolment is done when every meshed pod's listeners exist.
  for (const auto& p : o.pods) {
    if (!p.mesh) continue;
    WEFT_ASSIGN_OR_RETURN(auto ip, m->testbed_->PodIp(p.name));
    WEFT_ASSIGN_OR_RETURN(auto ns, m->testbed_->PodNetns(p.name));
    auto st = testbed::WaitTcp(ns, SockAddr{ip, 15008}, std::chrono::seconds(15));
    if (!st.ok())
      return absl::DeadlineExceededError(
          absl::StrCat("pod ", p.name, " was not enrolled (no HBONE listener): ", st.message(),
                       "; see ", o.work_dir, "/logs"));
  }
  return m;
}

LocalMesh::~LocalMesh() {
  for (auto& a : agents_)
    if (a.valid()) a.Terminate(std::chrono::seconds(2));
  for (auto& z : ztunnels_)
    if (z.valid()) z.Terminate(std::chrono::seconds(2));
  testbed_.reset();
}

absl::Status LocalMesh::WriteConfig() {
  nlohmann::json workloads = nlohmann::json::array(), services = nlohmann::json::array();
  for (const auto& p : opts_.pods) {
    WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(p.name));
    nlohmann::json w = {{"uid", p.ns + "/" + p.name},
                        {"name", p.name},
                        {"namespace", p.ns},
                        {"serviceAccount", p.service_account},
                        {"node", "node" + std::to_string(p.node)},
                        {"addresses", {info.ip.ToString()}},
                        {"protocol", p.mesh ? "HBONE" : "TCP"},
                        {"netnsPath", testbed::NetnsPath(info.netns)}};
    if (!p.workload_name.empty()) w["workloadName"] = p.workload_name;
    if (!p.labels.empty()) w["labels"] = p.labels;
    if (info.ip6) w["addresses"].push_back(info.ip6->ToString());
    workloads.push_back(w);
  }
  for (const auto& s : opts_.services) {
    nlohmann::json eps = nlohmann::json::array();
    for (const auto& pod : s.pods) eps.push_back({{"workloadUid", PodUid(pod)}, {"ready", true}});
    services.push_back({{"name", s.name},
                        {"namespace", s.ns},
                        {"hostname", s.name + "." + s.ns + ".svc.cluster.local"},
                        {"addresses", {s.vip}},
                        {"ports",
                         {{{"port", s.port},
                           {"targetPort", s.target_port ? s.target_port : s.port},
                           {"name", "tcp"}}}},
                        {"endpoints", eps}});
  }
  ++version_;
  // JSON values are valid YAML; the policy sections are appended as YAML blocks.
  std::string y = absl::StrCat("version: \"v", version_, "\"\nworkloads: ", workloads.dump(),
                               "\nservices: ", services.dump(), "\n");
  if (!authz_yaml_.empty()) y += "authorizationPolicies:\n" + authz_yaml_;
  if (!peer_authn_yaml_.empty()) y += "peerAuthentications:\n" + peer_authn_yaml_;
  return tls::WriteFileAtomic(config_path(), y, 0644);
}

absl::Status LocalMesh::SetPolicies(const std::string& authz, const std::string& peer_authn) {
  authz_yaml_ = authz;
  peer_authn_yaml_ = peer_authn;
  WEFT_RETURN_IF_ERROR(WriteConfig());
  return WaitVersion(std::chrono::seconds(10));
}

absl::Status LocalMesh::SetMesh(const std::string& pod, bool mesh) {
  bool found = false;
  for (auto& p : opts_.pods) {
    if (p.name != pod) continue;
    found = true;
    if (mesh && p.mesh != mesh) {
      // Its identity may not have a certificate yet.
      WEFT_RETURN_IF_ERROR(ztunnel::WriteCertFiles(
          opts_.work_dir + "/certs", *ca_, SpiffeId{"cluster.local", p.ns, p.service_account},
          std::chrono::hours(12)));
    }
    p.mesh = mesh;
  }
  if (!found) return absl::NotFoundError(absl::StrCat("no pod named ", pod, " in the mesh"));
  WEFT_RETURN_IF_ERROR(WriteConfig());
  return WaitVersion(std::chrono::seconds(10));
}

absl::Status LocalMesh::WaitVersion(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int n = 0; n < opts_.nodes; n++) {
    while (true) {
      auto m = Metrics(n);
      if (m.ok() && MetricSum(*m, "weft_config_version_info", {{"version", version()}}) == 1) break;
      if (std::chrono::steady_clock::now() > deadline)
        return absl::DeadlineExceededError(
            absl::StrCat("ztunnel on node ", n, " did not load config ", version()));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LocalMesh::Metrics(int node) const {
  WEFT_ASSIGN_OR_RETURN(auto ns, NodeNetns(node));
  WEFT_ASSIGN_OR_RETURN(auto ip, testbed_->NodeIp(node));
  return HttpGet(SockAddr{ip, kMetricsPort}, "/metrics", ns.get());
}

std::string LocalMesh::ZtunnelLog(int node) const {
  std::ifstream f(opts_.work_dir + "/logs/ztunnel-" + std::to_string(node) + ".log");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

pid_t LocalMesh::ztunnel_pid(int node) const {
  return ztunnels_.at(node).valid() ? ztunnels_.at(node).pid() : -1;
}

absl::Status LocalMesh::KillZtunnel(int node) {
  auto& z = ztunnels_.at(node);
  if (!z.valid()) return absl::OkStatus();
  WEFT_RETURN_IF_ERROR(z.Kill(SIGKILL));
  (void)z.Wait(std::chrono::seconds(5));
  return absl::OkStatus();
}

absl::StatusOr<testbed::Process> LocalMesh::SpawnDaemon(int node, const std::string& name,
                                                        std::vector<std::string> argv) const {
  WEFT_ASSIGN_OR_RETURN(auto ns, testbed_->NodeNetns(node));
  std::string n = std::to_string(node);
  argv.insert(argv.end(),
              {"--node", "node" + n, "--config", config_path(), "--log-level", opts_.log_level});
  testbed::SpawnOptions so;
  so.append_log = true;  // a restarted daemon keeps its predecessor's log
  return testbed::Spawn(ns, argv, opts_.work_dir + "/logs/" + name + "-" + n + ".log", so);
}

std::string LocalMesh::HandoffSocket(int node) const {
  return opts_.work_dir + "/node" + std::to_string(node) + ".sock";
}

absl::Status LocalMesh::StartZtunnel(int node) {
  WEFT_ASSIGN_OR_RETURN(auto ip, testbed_->NodeIp(node));
  std::vector<std::string> argv = {opts_.ztunnel_bin,
                                   "--certs",
                                   opts_.work_dir + "/certs",
                                   "--inpod-socket",
                                   HandoffSocket(node),
                                   "--workers",
                                   std::to_string(opts_.ztunnel_workers)};
  if (!opts_.access_log) argv.push_back("--no-access-log");
  WEFT_ASSIGN_OR_RETURN(ztunnels_.at(node), SpawnDaemon(node, "ztunnel", std::move(argv)));
  WEFT_ASSIGN_OR_RETURN(auto nsfd, NodeNetns(node));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (true) {
    int status = 0;
    auto r = HttpGet(SockAddr{ip, kReadyPort}, "/healthz/ready", nsfd.get(), &status, 1000);
    if (r.ok() && status == 200) return absl::OkStatus();
    if (!ztunnels_.at(node).Alive() || std::chrono::steady_clock::now() > deadline)
      return absl::UnavailableError(absl::StrCat(
          "ztunnel on node ", node, " did not become ready; log:\n", ZtunnelLog(node)));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string LocalMesh::BpfPinDir(int node) const {
  return testbed::BpfPinRoot(testbed_->prefix()) + "-n" + std::to_string(node);
}

absl::Status LocalMesh::StartAgent(int node) {
  std::vector<std::string> argv = {opts_.agent_bin, "--ztunnel-socket", HandoffSocket(node),
                                   "--capture", opts_.capture};
  if (!testbed_->MeshCgroup().empty()) {
    // Every node's agent attaches to the one mesh cgroup (one host); each acts only on the
    // pods it enrolled.
    argv.insert(argv.end(), {"--cgroup", testbed_->MeshCgroup(), "--bpf-pin-dir", BpfPinDir(node)});
  }
  WEFT_ASSIGN_OR_RETURN(agents_.at(node), SpawnDaemon(node, "agent", std::move(argv)));
  return absl::OkStatus();
}

absl::Status LocalMesh::KillAgent(int node) {
  auto& a = agents_.at(node);
  if (!a.valid()) return absl::OkStatus();
  WEFT_RETURN_IF_ERROR(a.Kill(SIGKILL));
  (void)a.Wait(std::chrono::seconds(5));
  return absl::OkStatus();
}

std::string LocalMesh::AgentLog(int node) const {
  std::ifstream f(opts_.work_dir + "/logs/agent-" + std::to_string(node) + ".log");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

absl::StatusOr<UniqueFd> LocalMesh::Dial(const std::string& pod, const SockAddr& to,
                                         std::chrono::milliseconds timeout) const {
  WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(pod));
  return testbed::DialFromPod(info, to, timeout);
}

absl::StatusOr<testbed::Process> LocalMesh::SpawnInPod(const std::string& pod,
                                                       const std::vector<std::string>& argv,
                                                       const std::string& log_path) const {
  WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(pod));
  testbed::SpawnOptions so;
  so.cgroup = info.cgroup;
  return testbed::Spawn(info.netns, argv, log_path, so);
}

}  // namespace weft::localmesh
