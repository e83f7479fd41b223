#include "cli/localmesh/local_mesh.h"

#include <sys/stat.h>

#include <csignal>

#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/status.h"
#include "controlplane/local/local_source.h"
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

std::string LocalMesh::TestbedName(const std::string& pod) const {
  for (const auto& p : opts_.pods)
    if (p.name == pod && !p.testbed_name.empty()) return p.testbed_name;
  return pod;
}

std::string LocalMesh::ManifestsDir() const {
  return opts_.manifests_dir.empty() ? opts_.work_dir + "/manifests" : opts_.manifests_dir;
}

absl::StatusOr<UniqueFd> LocalMesh::PodNetns(const std::string& pod) const {
  WEFT_ASSIGN_OR_RETURN(auto name, testbed_->PodNetns(TestbedName(pod)));
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
  tb.prefix = o.prefix.empty() ? testbed::UniquePrefix(o.role) : o.prefix;
  tb.nodes = o.nodes;
  for (const auto& p : o.pods)
    tb.pods.push_back({p.testbed_name.empty() ? p.name : p.testbed_name, p.node});
  tb.cgroups = o.capture == "ebpf" || o.capture == "auto" || o.pod_cgroups;
  const bool external = o.control_plane && !o.manifests_dir.empty();
  WEFT_ASSIGN_OR_RETURN(m->testbed_, testbed::Testbed::Create(tb));

  // Certificates for every identity in the mesh (unused with weftd's CA, but ca() stays valid).
  WEFT_ASSIGN_OR_RETURN(
      auto ca, tls::CertificateAuthority::CreateRoot("weft-local", std::chrono::hours(24)));
  m->ca_ = std::make_unique<tls::CertificateAuthority>(std::move(ca));
  std::string certs = o.work_dir + "/certs";
  if (!external) WEFT_RETURN_IF_ERROR(ztunnel::WriteRootFile(certs, *m->ca_));
  std::set<std::string> done;
  for (const auto& p : o.pods) {
    if (o.control_plane) break;  // weftd's CA issues them; no certificate files
    if (!p.mesh || !done.insert(p.ns + "/" + p.service_account).second) continue;
    WEFT_RETURN_IF_ERROR(ztunnel::WriteCertFiles(certs, *m->ca_,
                                                 SpiffeId{"cluster.local", p.ns, p.service_account},
                                                 std::chrono::hours(12)));
  }
  if (!external) WEFT_RETURN_IF_ERROR(m->WriteConfig());
  if (!o.start_mesh) return m;

  if (o.control_plane) {
    if (!external) WEFT_RETURN_IF_ERROR(m->WriteManifests());
    WEFT_RETURN_IF_ERROR(m->StartWeftd());
  }
  m->ztunnels_.resize(o.nodes);
  m->agents_.resize(o.nodes);
  for (int n = 0; n < o.nodes; n++) WEFT_RETURN_IF_ERROR(m->StartZtunnel(n));
  for (int n = 0; n < o.nodes; n++) WEFT_RETURN_IF_ERROR(m->StartAgent(n));
  // Enrolment is done when every meshed pod's listeners exist.
  for (const auto& p : o.pods) {
    if (!p.mesh) continue;
    WEFT_ASSIGN_OR_RETURN(auto ip, m->testbed_->PodIp(m->TestbedName(p.name)));
    WEFT_ASSIGN_OR_RETURN(auto ns, m->testbed_->PodNetns(m->TestbedName(p.name)));
    auto st = testbed::WaitTcp(ns, SockAddr{ip, 15008}, std::chrono::seconds(15));
    if (!st.ok())
      return absl::DeadlineExceededError(
          absl::StrCat("pod ", p.name, " was not enrolled (no HBONE listener): ", st.message(),
                       "; see ", o.work_dir, "/logs"));
  }
  return m;
}

LocalMesh::~LocalMesh() {
  if (weftd_.valid()) weftd_.Terminate(std::chrono::seconds(2));
  for (auto& a : agents_)
    if (a.valid()) a.Terminate(std::chrono::seconds(2));
  for (auto& z : ztunnels_)
    if (z.valid()) z.Terminate(std::chrono::seconds(2));
  for (auto& d : draining_)
    if (d.proc.valid()) d.proc.Terminate(std::chrono::seconds(1));
  testbed_.reset();
}

absl::Status LocalMesh::WriteConfig() {
  nlohmann::json workloads = nlohmann::json::array(), services = nlohmann::json::array();
  for (const auto& p : opts_.pods) {
    WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(TestbedName(p.name)));
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
  return WriteFileAtomic(config_path(), y, 0644);
}

absl::Status LocalMesh::Publish() {
  if (opts_.control_plane) {
    WEFT_ASSIGN_OR_RETURN(std::string before, WeftdFingerprint());
    WEFT_RETURN_IF_ERROR(WriteManifests());
    return WaitWeftdSettled(before, std::chrono::seconds(10));
  }
  WEFT_RETURN_IF_ERROR(WriteConfig());
  return WaitVersion(std::chrono::seconds(10));
}

absl::Status LocalMesh::SetPolicies(const std::string& authz, const std::string& peer_authn) {
  if (!opts_.manifests_dir.empty())
    return absl::FailedPreconditionError("the caller owns the manifests (Options::manifests_dir)");
  authz_yaml_ = authz;
  peer_authn_yaml_ = peer_authn;
  return Publish();
}

absl::Status LocalMesh::SetMesh(const std::string& pod, bool mesh) {
  if (!opts_.manifests_dir.empty())
    return absl::FailedPreconditionError("the caller owns the manifests (Options::manifests_dir)");
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
  return Publish();
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

std::string LocalMesh::DaemonLogPath(const std::string& name, int node) const {
  return absl::StrCat(opts_.work_dir, "/logs/", name, opts_.node_named_logs ? "-node" : "-", node,
                      ".log");
}

std::string LocalMesh::ZtunnelLog(int node) const {
  std::ifstream f(DaemonLogPath("ztunnel", node));
  return std::string(std::istreambuf_iterator<char>(f), {});
}

pid_t LocalMesh::ztunnel_pid(int node) const {
  return ztunnels_.at(node).valid() ? ztunnels_.at(node).pid() : -1;
}

pid_t LocalMesh::agent_pid(int node) const {
  return agents_.at(node).valid() ? agents_.at(node).pid() : -1;
}

pid_t LocalMesh::weftd_pid() const {
  return weftd_.valid() ? weftd_.pid() : -1;
}

bool LocalMesh::ZtunnelAlive(int node) {
  return ztunnels_.at(node).Alive();
}

bool LocalMesh::AgentAlive(int node) {
  return agents_.at(node).Alive();
}

bool LocalMesh::WeftdAlive() {
  return weftd_.Alive();
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
  argv.insert(argv.end(), {"--node", "node" + n, "--log-level", opts_.log_level});
  if (opts_.control_plane) {
    std::string state = opts_.work_dir + "/weftd";
    argv.insert(argv.end(),
                {"--control-plane", WeftdAddress(), "--cp-root", state + "/ca/root-cert.pem",
                 "--cp-token", state + "/tokens/node" + n + ".token"});
  } else {
    argv.insert(argv.end(), {"--config", config_path()});
  }
  testbed::SpawnOptions so;
  so.append_log = true;  // a restarted daemon keeps its predecessor's log
  return testbed::Spawn(ns, argv, DaemonLogPath(name, node), so);
}

std::string LocalMesh::HandoffSocket(int node) const {
  return opts_.work_dir + "/node" + std::to_string(node) + ".sock";
}

std::vector<std::string> LocalMesh::ZtunnelArgv(int node, const std::string& binary) const {
  std::vector<std::string> argv = {binary.empty() ? opts_.ztunnel_bin : binary, "--inpod-socket",
                                   HandoffSocket(node), "--workers",
                                   std::to_string(opts_.ztunnel_workers)};
  if (!opts_.control_plane) argv.insert(argv.end(), {"--certs", opts_.work_dir + "/certs"});
  if (!opts_.access_log) argv.push_back("--no-access-log");
  return argv;
}

absl::StatusOr<pid_t> LocalMesh::ZtunnelServerPid(int node) const {
  WEFT_ASSIGN_OR_RETURN(auto nsfd, NodeNetns(node));
  int status = 0;
  WEFT_ASSIGN_OR_RETURN(std::string body, HttpGet(*SockAddr::Parse("127.0.0.1:15000"),
                                                  "/server_info", nsfd.get(), &status, 1000));
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (status != 200 || !j.is_object() || !j.contains("pid"))
    return absl::UnavailableError(absl::StrCat("ztunnel /server_info: HTTP ", status, " ", body));
  return j["pid"].get<pid_t>();
}

absl::StatusOr<LocalMesh::ZtunnelUpgrade> LocalMesh::UpgradeZtunnel(
    int node, const std::string& binary, std::chrono::milliseconds drain_deadline,
    std::chrono::milliseconds timeout) {
  ZtunnelUpgrade u;
  u.old_pid = ztunnel_pid(node);
  if (!ZtunnelAlive(node))
    return absl::FailedPreconditionError(absl::StrCat("no ztunnel runs on node", node));
  WEFT_ASSIGN_OR_RETURN(pid_t serving, ZtunnelServerPid(node));
  std::vector<std::string> argv = ZtunnelArgv(node, binary);
  if (drain_deadline.count() > 0) {
    std::string d = absl::StrCat(drain_deadline.count(), "ms");
    argv.insert(argv.end(), {"--drain-deadline", d, "--takeover-drain-deadline", d});
  }
  WEFT_ASSIGN_OR_RETURN(testbed::Process next, SpawnDaemon(node, "ztunnel", std::move(argv)));
  u.new_pid = next.pid();
  // Taken over once the admin port (handed over with the pods' listeners) answers from the
  // new process.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto pid = ZtunnelServerPid(node);
    if (pid.ok() && *pid != serving) break;
    if (!next.Alive() || std::chrono::steady_clock::now() > deadline) {
      if (next.Alive()) next.Terminate(std::chrono::seconds(2));
      return absl::UnavailableError(absl::StrCat("the new ztunnel on node", node,
                                                 " did not take over (the old one, pid ", u.old_pid,
                                                 ", serves on); log:\n", ZtunnelLog(node)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  testbed::Process old = std::move(ztunnels_.at(node));
  ztunnels_.at(node) = std::move(next);
  (void)old.Kill(SIGTERM);  // drains, then exits
  u.drain_deadline = drain_deadline.count() > 0 ? drain_deadline : std::chrono::seconds(30);
  draining_.push_back({std::move(old), std::chrono::steady_clock::now() + u.drain_deadline +
                                           std::chrono::seconds(15)});
  return u;
}

size_t LocalMesh::ReapDraining() {
  auto now = std::chrono::steady_clock::now();
  for (auto it = draining_.begin(); it != draining_.end();) {
    if (!it->proc.Alive()) {
      it = draining_.erase(it);
      continue;
    }
    if (now >= it->kill_at) it->proc.Terminate(std::chrono::seconds(1));
    ++it;
  }
  return draining_.size();
}

absl::Status LocalMesh::StartZtunnel(int node) {
  WEFT_ASSIGN_OR_RETURN(auto ip, testbed_->NodeIp(node));
  WEFT_ASSIGN_OR_RETURN(ztunnels_.at(node),
                        SpawnDaemon(node, "ztunnel", ZtunnelArgv(node, opts_.ztunnel_bin)));
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
  if (!testbed_->MeshCgroup().empty() && opts_.capture != "iptables" && opts_.capture != "none") {
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
  std::ifstream f(DaemonLogPath("agent", node));
  return std::string(std::istreambuf_iterator<char>(f), {});
}

int LocalMesh::AgentSnapshotsSent(int node) const {
  const std::string log = AgentLog(node);
  int n = 0;
  for (size_t at = 0; (at = log.find("snapshot sent to ztunnel", at)) != std::string::npos; ++at)
    ++n;
  return n;
}

absl::StatusOr<UniqueFd> LocalMesh::Dial(const std::string& pod, const SockAddr& to,
                                         std::chrono::milliseconds timeout) const {
  WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(TestbedName(pod)));
  return testbed::DialFromPod(info, to, timeout);
}

absl::StatusOr<testbed::Process> LocalMesh::SpawnInPod(const std::string& pod,
                                                       const std::vector<std::string>& argv,
                                                       const std::string& log_path) const {
  WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(TestbedName(pod)));
  testbed::SpawnOptions so;
  so.cgroup = info.cgroup;
  return testbed::Spawn(info.netns, argv, log_path, so);
}

// ---- control-plane mode ----------------------------------------------------------------------

namespace {
constexpr uint16_t kWeftdGrpcPort = 15012;
constexpr uint16_t kWeftdAdminPort = 15010;
constexpr uint16_t kWeftdReadyPort = 15015;

// The mesh.yaml policy lists (name, namespace, then the spec fields) as Kubernetes objects.
absl::StatusOr<std::vector<nlohmann::json>> PolicyObjects(const std::string& yaml_list,
                                                          const std::string& kind) {
  std::vector<nlohmann::json> out;
  if (yaml_list.empty()) return out;
  WEFT_ASSIGN_OR_RETURN(nlohmann::json list, cp::YamlToJson(yaml_list));
  if (!list.is_array()) return absl::InvalidArgumentError(kind + " list is not a YAML list");
  for (auto& item : list) {
    nlohmann::json spec = item;
    spec.erase("name");
    spec.erase("namespace");
    out.push_back(
        {{"apiVersion", "security.weft.dev/v1"},
         {"kind", kind},
         {"metadata",
          {{"name", item.value("name", "")}, {"namespace", item.value("namespace", "default")}}},
         {"spec", spec}});
  }
  return out;
}
}  // namespace

std::string LocalMesh::WeftdAddress() const {
  auto ip = testbed_->NodeIp(0);
  return absl::StrCat(ip.ok() ? ip->ToString() : "127.0.0.1", ":", kWeftdGrpcPort);
}

absl::Status LocalMesh::WriteManifests() {
  std::string dir = ManifestsDir();
  mkdir(dir.c_str(), 0755);
  std::vector<nlohmann::json> objs;
  std::set<std::string> namespaces;
  for (const auto& p : opts_.pods) namespaces.insert(p.ns);
  for (const auto& ns : namespaces) {
    bool meshed = false;
    for (const auto& p : opts_.pods) meshed |= p.ns == ns && p.mesh;
    nlohmann::json labels = nlohmann::json::object();
    if (meshed) labels["weft.dev/mesh"] = "enabled";
    objs.push_back({{"apiVersion", "v1"},
                    {"kind", "Namespace"},
                    {"metadata", {{"name", ns}, {"labels", labels}}}});
  }
  for (const auto& p : opts_.pods) {
    WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(TestbedName(p.name)));
    nlohmann::json labels = p.labels.empty() ? nlohmann::json::object() : nlohmann::json(p.labels);
    if (!p.mesh) labels["weft.dev/mesh"] = "disabled";
    nlohmann::json ips = nlohmann::json::array({{{"ip", info.ip.ToString()}}});
    if (info.ip6) ips.push_back({{"ip", info.ip6->ToString()}});
    objs.push_back(
        {{"apiVersion", "v1"},
         {"kind", "Pod"},
         {"metadata",
          {{"name", p.name},
           {"namespace", p.ns},
           {"labels", labels},
           {"annotations", {{"weft.dev/netns-path", testbed::NetnsPath(info.netns)}}}}},
         {"spec",
          {{"nodeName", "node" + std::to_string(p.node)},
           {"serviceAccountName", p.service_account},
           {"containers", {{{"name", "app"}, {"image", "local"}}}}}},
         {"status", {{"phase", "Running"}, {"podIP", info.ip.ToString()}, {"podIPs", ips}}}});
  }
  for (const auto& s : opts_.services) {
    uint16_t target = s.target_port ? s.target_port : s.port;
    objs.push_back({{"apiVersion", "v1"},
                    {"kind", "Service"},
                    {"metadata", {{"name", s.name}, {"namespace", s.ns}}},
                    {"spec",
                     {{"clusterIP", s.vip},
                      {"ports", {{{"name", "tcp"}, {"port", s.port}, {"targetPort", target}}}}}}});
    nlohmann::json eps = nlohmann::json::array();
    for (const auto& pod : s.pods) {
      WEFT_ASSIGN_OR_RETURN(auto info, testbed_->Pod(TestbedName(pod)));
      std::string pod_ns = s.ns;
      for (const auto& p : opts_.pods)
        if (p.name == pod) pod_ns = p.ns;
      eps.push_back({{"addresses", {info.ip.ToString()}},
                     {"conditions", {{"ready", true}}},
                     {"targetRef", {{"kind", "Pod"}, {"name", pod}, {"namespace", pod_ns}}}});
    }
    objs.push_back({{"apiVersion", "discovery.k8s.io/v1"},
                    {"kind", "EndpointSlice"},
                    {"metadata",
                     {{"name", s.name + "-1"},
                      {"namespace", s.ns},
                      {"labels", {{"kubernetes.io/service-name", s.name}}}}},
                    {"addressType", "IPv4"},
                    {"endpoints", eps},
                    {"ports", {{{"name", "tcp"}, {"port", target}, {"protocol", "TCP"}}}}});
  }
  WEFT_ASSIGN_OR_RETURN(auto authz, PolicyObjects(authz_yaml_, "AuthorizationPolicy"));
  WEFT_ASSIGN_OR_RETURN(auto peer, PolicyObjects(peer_authn_yaml_, "PeerAuthentication"));
  nlohmann::json policies = {
      {"apiVersion", "v1"}, {"kind", "List"}, {"items", nlohmann::json::array()}};
  for (auto& o : authz) policies["items"].push_back(o);
  for (auto& o : peer) policies["items"].push_back(o);
  nlohmann::json mesh = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", objs}};
  WEFT_RETURN_IF_ERROR(WriteFileAtomic(dir + "/mesh.json", mesh.dump(1), 0644));
  return WriteFileAtomic(dir + "/policies.json", policies.dump(1), 0644);
}

absl::Status LocalMesh::StartWeftd() {
  WEFT_ASSIGN_OR_RETURN(auto ns, testbed_->NodeNetns(0));
  WEFT_ASSIGN_OR_RETURN(auto ip, testbed_->NodeIp(0));
  std::string tokens;
  for (int n = 0; n < opts_.nodes; n++) absl::StrAppend(&tokens, n ? "," : "", "node", n);
  std::string ips = ip.ToString();
  std::vector<std::string> argv = {opts_.weftd_bin,
                                   "--manifests",
                                   ManifestsDir(),
                                   "--state-dir",
                                   opts_.work_dir + "/weftd",
                                   "--node-tokens",
                                   tokens,
                                   "--grpc",
                                   WeftdAddress(),
                                   "--admin",
                                   absl::StrCat(ips, ":", kWeftdAdminPort),
                                   "--metrics",
                                   absl::StrCat(ips, ":15014"),
                                   "--readiness",
                                   absl::StrCat(ips, ":", kWeftdReadyPort),
                                   "--log-level",
                                   opts_.log_level};
  // The only namespaces Pods may name: the ones weftctl up made.
  argv.insert(argv.end(), {"--pod-netns-prefix", testbed::NetnsPath(testbed_->prefix() + "-")});
  testbed::SpawnOptions so;
  so.append_log = true;
  WEFT_ASSIGN_OR_RETURN(weftd_, testbed::Spawn(ns, argv, opts_.work_dir + "/logs/weftd.log", so));
  WEFT_ASSIGN_OR_RETURN(auto nsfd, NodeNetns(0));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (true) {
    int status = 0;
    auto r = HttpGet(SockAddr{ip, kWeftdReadyPort}, "/healthz/ready", nsfd.get(), &status, 1000);
    if (r.ok() && status == 200) return absl::OkStatus();
    if (!weftd_.Alive() || std::chrono::steady_clock::now() > deadline)
      return absl::UnavailableError(absl::StrCat("weftd did not become ready; log:\n", WeftdLog()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::Status LocalMesh::KillWeftd() {
  if (!weftd_.valid()) return absl::OkStatus();
  WEFT_RETURN_IF_ERROR(weftd_.Kill(SIGKILL));
  (void)weftd_.Wait(std::chrono::seconds(5));
  return absl::OkStatus();
}

std::string LocalMesh::WeftdLog() const {
  std::ifstream f(opts_.work_dir + "/logs/weftd.log");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

absl::StatusOr<std::string> LocalMesh::WeftdStatus() const {
  WEFT_ASSIGN_OR_RETURN(auto nsfd, NodeNetns(0));
  WEFT_ASSIGN_OR_RETURN(auto ip, testbed_->NodeIp(0));
  return HttpGet(SockAddr{ip, kWeftdAdminPort}, "/status", nsfd.get());
}

absl::StatusOr<std::string> LocalMesh::WeftdFingerprint() const {
  WEFT_ASSIGN_OR_RETURN(std::string body, WeftdStatus());
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.contains("model_generation"))
    return absl::InternalError("weftd /status is not the expected JSON: " + body);
  // What a manifest change moves: the model (accepted objects), or the rejected / broken lists.
  return nlohmann::json{j["model_generation"], j["rejected"], j["file_errors"]}.dump();
}

absl::Status LocalMesh::WaitWeftdSettled(const std::string& before,
                                         std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto body = WeftdStatus();
    if (body.ok()) {
      last = *body;
      auto j = nlohmann::json::parse(*body, nullptr, false);
      bool settled =
          !j.is_discarded() &&
          nlohmann::json{j["model_generation"], j["rejected"], j["file_errors"]}.dump() != before;
      int ztunnels = 0;
      if (settled) {
        for (const auto& s : j["streams"]) {
          if (!s.value("connected", false)) continue;
          if (s.value("component", "") == "ztunnel") ++ztunnels;
          settled &= s.value("version_acked", "") == s.value("version_sent", "x");
        }
        settled &= ztunnels == opts_.nodes;
      }
      if (settled) {
        // A push follows the change after the debounce: give it time to start, then re-check.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        auto again = WeftdStatus();
        auto k = nlohmann::json::parse(again.ok() ? *again : "", nullptr, false);
        bool still = !k.is_discarded();
        if (still)
          for (const auto& s : k["streams"])
            if (s.value("connected", false))
              still &= s.value("version_acked", "") == s.value("version_sent", "x");
        if (still) return absl::OkStatus();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError("the nodes did not ACK weftd's new config; /status: " + last);
}

}  // namespace weft::localmesh
