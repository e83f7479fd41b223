#include "controlplane/weftd/weftd.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/admin/admin_server.h"
#include "common/log.h"
#include "common/status.h"
#include "controlplane/ca/ca.h"
#include "controlplane/ca/ca_server.h"
#include "controlplane/ca/k8s_ca.h"
#include "controlplane/k8s/endpoint.h"
#include "controlplane/k8s/rest_client.h"
#include "controlplane/k8s/route_status_writer.h"
#include "controlplane/k8s/watcher.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"
#include "controlplane/xds/server.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace weft::cp {

namespace {
constexpr char kScope[] = "weftd";

std::string BearerToken(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() > kBearer.size() &&
      absl::StartsWithIgnoreCase(Av(authorization), Av(kBearer)))
    return std::string(authorization.substr(kBearer.size()));
  return "";
}

std::string Iso(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return "";
  time_t s = std::chrono::system_clock::to_time_t(t);
  tm u{};
  gmtime_r(&s, &u);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &u);
  return buf;
}
}  // namespace

struct Weftd::Impl {
  WeftdOptions opts;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<Model> model;
  std::unique_ptr<LocalSource> local;
  std::shared_ptr<k8s::RestClient> kube;
  std::unique_ptr<k8s::Watcher> watcher;
  std::unique_ptr<k8s::RouteStatusWriter> route_status;  // cluster mode: routes' status
  std::unique_ptr<Issuer> issuer;
  std::unique_ptr<NodeAuthenticator> authn;
  std::unique_ptr<CaService> ca_service;
  std::unique_ptr<ConfigDiscoveryServer> xds;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<AdminServer> admin;
  int port = 0;
  bool started = false;
  std::string root_store;      // where the root (cert + key) is kept, for logs and /status
  std::string root_for_nodes;  // what nodes pass as --cp-root: a file, or the ConfigMap
  std::chrono::system_clock::time_point root_expires{};

  std::string CaDir() const { return opts.state_dir + "/ca"; }
  std::string TokenDir() const { return opts.state_dir + "/tokens"; }

  absl::Status StartCa();
  absl::Status StartSource();
  absl::Status StartGrpc();
  absl::Status StartAdmin(Weftd* self);
};

absl::Status Weftd::Impl::StartCa() {
  ::mkdir(opts.state_dir.c_str(), 0755);
  // Cluster mode keeps the root in a Secret, so every weftd replica (and a rescheduled one)
  // signs with the same root; local mode in <state_dir>/ca.
  std::unique_ptr<RootStore> store;
  if (opts.kubernetes) {
    store = std::make_unique<KubernetesSecretRootStore>(kube.get(), opts.k8s_namespace);
  } else {
    store = std::make_unique<FileRootStore>(CaDir());
  }
  WEFT_ASSIGN_OR_RETURN(auto root,
                        LoadOrCreateRoot(*store, "weft", std::chrono::hours(24 * 365 * 10)));
  root_store = store->Describe();
  IssuerOptions io;
  io.trust_domain = opts.trust_domain;
  issuer = std::make_unique<Issuer>(std::move(root), io);
  if (auto cert = tls::CertFromPem(issuer->root_pem()); cert.ok()) {
    root_expires = tls::CertValidity(cert->get()).not_after;
  }
  if (opts.kubernetes) {
    // Nodes cannot read the Secret (it holds the key): they mount this ConfigMap instead.
    // Written at every start, so a replaced root or an edited ConfigMap is corrected here.
    auto published = PublishRootCertConfigMap(kube.get(), opts.k8s_namespace, issuer->root_pem());
    if (!published.ok()) return published.status();
    root_for_nodes = absl::StrCat("ConfigMap ", opts.k8s_namespace, "/", kRootCertConfigMap,
                                  " key ", kRootCertConfigMapKey);
    const char* result = *published == PublishResult::kCreated ? "created" : "unchanged";
    if (*published == PublishResult::kUpdated) result = "updated";
    LOG_INFO(kScope, "root certificate published for nodes",
             {{"configmap", root_for_nodes}, {"result", result}});
  } else {
    root_for_nodes = FileRootStore(CaDir()).cert_path();
  }
  if (opts.kubernetes) {
    // Node tokens must be valid for the CA's audience and bound to a node (node-name extra,
    // Kubernetes 1.30+) or to a pod the model has on the node (pod-name + pod-uid extras).
    TokenReviewAuthOptions ta;
    ta.audience = opts.ca_audience;
    Model* pods = model.get();
    ta.pod_node = [pods](std::string_view ns, std::string_view name, std::string_view uid) {
      return pods->PodNode(ns, name, uid);
    };
    authn = std::make_unique<TokenReviewAuthenticator>(
        KubernetesTokenReviewer(kube.get(), {opts.ca_audience}), opts.ztunnel_service_accounts,
        std::move(ta), registry);
  } else {
    ::mkdir(TokenDir().c_str(), 0700);
    for (const auto& n : opts.node_tokens) {
      WEFT_RETURN_IF_ERROR(BootstrapTokenAuthenticator::EnsureNodeToken(TokenDir(), n).status());
    }
    authn = std::make_unique<BootstrapTokenAuthenticator>(TokenDir());
  }
  Model* m = model.get();
  NodeAuthorizer authz = [m](std::string_view node, const SpiffeId& id) {
    auto ids = m->IdentitiesOnNode(node);
    return std::binary_search(ids.begin(), ids.end(), id.ToString());
  };
  ca_service = std::make_unique<CaService>(issuer.get(), authn.get(), authz, registry);
  ca_service->SetNodeIdentities([m](std::string_view node) { return m->IdentitiesOnNode(node); });
  return absl::OkStatus();
}

absl::Status Weftd::Impl::StartSource() {
  if (opts.kubernetes) {
    // Routes' status.parents[] go back to the API server (Gateway API); the writer reads the
    // model on its own thread, debounced, so the watch threads never wait for it.
    route_status = std::make_unique<k8s::RouteStatusWriter>(kube, registry);
    Model* m = model.get();
    route_status->SetSource([m] { return m->RouteStatuses(); });
    k8s::RouteStatusWriter* writer = route_status.get();
    model->OnChange([writer](const NodeSet&) { writer->Notify(); });
    route_status->Start();
    k8s::WatchOptions wo;
    wo.resources = k8s::WatchedResources(opts.istio_policies);
    watcher = std::make_unique<k8s::Watcher>(kube, model->Sink(), registry, std::move(wo));
    watcher->Start();
    return absl::OkStatus();
  }
  local = std::make_unique<LocalSource>(opts.manifests_dir, model->Sink(), registry);
  return local->Start();
}

absl::Status Weftd::Impl::StartGrpc() {
  Model* m = model.get();
  NodeAuthenticator* a = authn.get();
  XdsServerOptions xo;
  xo.debounce = opts.debounce;
  xo.registry = registry;
  xds = std::make_unique<ConfigDiscoveryServer>(
      [m](const std::string& node) { return m->SharedNodeView(node); },
      [a](const Metadata& md) -> absl::StatusOr<std::string> {
        auto it = md.find("authorization");
        std::string token = it == md.end() ? "" : BearerToken(it->second);
        auto peer = md.find(":peer");
        return a->Authenticate(token, "", peer == md.end() ? "" : ClientAddress(peer->second));
      },
      xo);
  model->OnChange([this](const NodeSet& nodes) {
    if (nodes.all) {
      xds->NotifyAll();
    } else {
      xds->Notify(nodes.nodes);
    }
  });

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (opts.plaintext) {
    creds = grpc::InsecureServerCredentials();
  } else {
    WEFT_ASSIGN_OR_RETURN(creds, ServingCredentials(*issuer, opts.serving_names));
  }
  grpc::ServerBuilder b;
  b.AddListeningPort(opts.grpc_addr, creds, &port);
  b.RegisterService(ca_service.get());
  xds->Register(b);
  server = b.BuildAndStart();
  if (!server || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", opts.grpc_addr,
                                               " for gRPC (address in use? another weftd?)"));
  }
  return absl::OkStatus();
}

absl::Status Weftd::Impl::StartAdmin(Weftd* self) {
  AdminOptions ao;
  ao.admin_addr = opts.admin_addr;
  ao.metrics_addr = opts.metrics_addr;
  ao.readiness_addr = opts.readiness_addr;
  // The config server registers in `registry` (XdsServerOptions): listing a registry twice
  // would expose every series twice, which Prometheus rejects.
  for (const auto& r : {registry, model->registry(), xds->registry()}) {
    if (r && std::find(ao.registries.begin(), ao.registries.end(), r) == ao.registries.end())
      ao.registries.push_back(r);
  }
  ao.component = "weftd";
  ao.json_handlers["/status"] = [self](const std::map<std::string, std::string>&) {
    return absl::StatusOr<std::string>(self->StatusJson());
  };
  ao.json_handlers["/config_dump"] =
      [self](const std::map<std::string, std::string>& q) -> absl::StatusOr<std::string> {
    auto it = q.find("node");
    if (it == q.end() || it->second.empty()) {
      return absl::InvalidArgumentError("give the node: /config_dump?node=NAME");
    }
    return self->ConfigDumpJson(it->second);
  };
  ao.not_ready_reason = [this]() -> std::string {
    if (watcher && !watcher->Synced()) return "Kubernetes source not synced yet";
    return "";
  };
  admin = std::make_unique<AdminServer>(std::move(ao));
  return admin->Start();
}

Weftd::Weftd(WeftdOptions opts) : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(opts);
}

Weftd::~Weftd() {
  Stop();
}

absl::Status Weftd::Start() {
  auto& o = impl_->opts;
  if (o.kubernetes == !o.manifests_dir.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one source: --manifests DIR (local) or --kubernetes");
  }
  if (o.kubernetes && !o.pod_netns_prefix.empty()) {
    return absl::InvalidArgumentError(
        "--pod-netns-prefix is for local mode only: in a cluster the agent finds each pod's "
        "network namespace from its UID");
  }
  ModelOptions mo;
  mo.trust_domain = o.trust_domain;
  mo.pod_netns_prefix = o.pod_netns_prefix;
  impl_->model = std::make_unique<Model>(mo);
  if (o.kubernetes) {
    WEFT_ASSIGN_OR_RETURN(auto ep, k8s::ResolveEndpoint(o.api_server, o.kubeconfig));
    impl_->kube = std::make_shared<k8s::RestClient>(std::move(ep));
  }
  WEFT_RETURN_IF_ERROR(impl_->StartCa());
  WEFT_RETURN_IF_ERROR(impl_->StartGrpc());
  WEFT_RETURN_IF_ERROR(impl_->StartSource());
  WEFT_RETURN_IF_ERROR(impl_->StartAdmin(this));
  impl_->started = true;
  LOG_INFO(kScope, "weftd started",
           {{"source", o.kubernetes ? std::string("kubernetes") : "local:" + o.manifests_dir},
            {"grpc_port", impl_->port},
            {"tls", !o.plaintext},
            {"root_store", impl_->root_store},
            {"root", impl_->root_for_nodes},
            {"admin", impl_->admin->admin_addr().ToString()},
            {"metrics", impl_->admin->metrics_addr().ToString()},
            {"readiness", impl_->admin->readiness_addr().ToString()}});
  return absl::OkStatus();
}

void Weftd::Stop() {
  if (!impl_) return;
  if (impl_->local) impl_->local->Stop();
  if (impl_->watcher) impl_->watcher->Stop();
  if (impl_->route_status) impl_->route_status->Stop();
  if (impl_->xds) impl_->xds->Shutdown();
  if (impl_->server)
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (impl_->admin) impl_->admin->Stop();
  impl_->server.reset();
}

int Weftd::grpc_port() const {
  return impl_->port;
}
SockAddr Weftd::admin_addr() const {
  return impl_->admin->admin_addr();
}
SockAddr Weftd::metrics_addr() const {
  return impl_->admin->metrics_addr();
}
std::string Weftd::root_cert_path() const {
  return FileRootStore(impl_->CaDir()).cert_path();
}
std::string Weftd::TokenPath(const std::string& node) const {
  return BootstrapTokenAuthenticator::TokenPath(impl_->TokenDir(), node);
}

std::string Weftd::StatusJson() const {
  nlohmann::json j;
  j["source"] = impl_->opts.kubernetes ? "kubernetes" : "local:" + impl_->opts.manifests_dir;
  j["model_generation"] = impl_->model->generation();
  j["nodes"] = nlohmann::json::array();
  for (const auto& s : impl_->xds->Status()) {
    j["streams"].push_back({{"node", s.node},
                            {"component", s.component},
                            {"peer", s.peer},
                            {"connected", s.connected},
                            {"version_sent", s.version_sent},
                            {"version_acked", s.version_acked},
                            {"acks", s.acks},
                            {"nacks", s.nacks},
                            {"last_nack_version", s.last_nack_version},
                            {"last_nack_error", s.last_nack_error},
                            {"connected_at", Iso(s.connected_at)},
                            {"last_ack_at", Iso(s.last_ack_at)}});
  }
  if (!j.contains("streams")) j["streams"] = nlohmann::json::array();
  for (const auto& n : impl_->model->Nodes()) {
    j["nodes"].push_back({{"name", n}, {"identities", impl_->model->IdentitiesOnNode(n)}});
  }
  j["rejected"] = nlohmann::json::array();
  for (const auto& r : impl_->model->Rejected()) {
    j["rejected"].push_back({{"source", r.source},
                             {"kind", r.kind},
                             {"namespace", r.ns},
                             {"name", r.name},
                             {"reason", r.reason},
                             {"effect", r.effect}});
  }
  // Routes as users debug them: each Service parent's conditions (weftctl status shows them).
  j["routes"] = nlohmann::json::array();
  for (const auto& r : impl_->model->RouteStatuses()) {
    nlohmann::json parents = nlohmann::json::array();
    for (const auto& p : r.parents) {
      nlohmann::json conditions = nlohmann::json::array();
      for (const auto& c : p.conditions) {
        conditions.push_back(
            {{"type", c.type}, {"status", c.status}, {"reason", c.reason}, {"message", c.message}});
      }
      parents.push_back({{"parentRef", p.parent_ref}, {"conditions", std::move(conditions)}});
    }
    j["routes"].push_back({{"kind", r.kind},
                           {"namespace", r.ns},
                           {"name", r.name},
                           {"generation", r.generation},
                           {"parents", std::move(parents)}});
  }
  j["file_errors"] = nlohmann::json::array();
  if (impl_->local) {
    for (const auto& e : impl_->local->Errors())
      j["file_errors"].push_back({{"path", e.path}, {"error", e.error}});
  }
  j["ca"] = {{"root", impl_->root_for_nodes},
             {"root_store", impl_->root_store},
             {"root_expires", Iso(impl_->root_expires)},
             {"issued", impl_->ca_service->RequestCount("ok")},
             {"refused_permission_denied", impl_->ca_service->RequestCount("permission_denied")},
             {"refused_unauthenticated", impl_->ca_service->RequestCount("unauthenticated")}};
  // The newest certificate per node and identity (pods that left their node are not listed).
  j["ca"]["certificates"] = nlohmann::json::array();
  for (const auto& c : impl_->ca_service->IssuedCertificates()) {
    j["ca"]["certificates"].push_back({{"node", c.node},
                                       {"identity", c.identity},
                                       {"serial", c.serial},
                                       {"not_before", Iso(c.not_before)},
                                       {"not_after", Iso(c.not_after)},
                                       {"issued_at", Iso(c.issued_at)}});
  }
  return j.dump(2);
}

std::string Weftd::ConfigDumpJson(const std::string& node) const {
  auto view = impl_->model->NodeView(node);
  std::string out;
  google::protobuf::util::JsonPrintOptions po;
  po.add_whitespace = true;
  po.preserve_proto_field_names = false;
  (void)google::protobuf::util::MessageToJsonString(view, &out, po);
  return out;
}

}  // namespace weft::cp
