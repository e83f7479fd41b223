// weftd: the control plane process. Wires one source (a local manifest directory or the
// Kubernetes API) into the model, serves each node its view over the ConfigDiscovery stream and
// runs the CA, all on one gRPC port; admin endpoints for `weftctl status` / `config-dump`.
//
//   source --ObjectEvents--> Model --OnChange(nodes)--> ConfigDiscoveryServer.Notify
//                              |                           (views: Model::NodeView)
//                              +--IdentitiesOnNode--> CaService (node authorization)
//
// Node authentication (both services): a bearer token. Local mode: per-node bootstrap tokens in
// <state_dir>/tokens/<node>.token (created for --node-tokens nodes at start); cluster mode:
// Kubernetes TokenReview.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/net.h"

namespace weft::cp {

struct WeftdOptions {
  // Exactly one source.
  std::string manifests_dir;  // local source: a directory of YAML/JSON manifests
  bool kubernetes = false;    // Kubernetes source (in-cluster, or kubeconfig / api_server)
  std::string kubeconfig;
  std::string api_server;  // override, e.g. http://127.0.0.1:8001 (kubectl proxy)
  std::string k8s_namespace = "weft-system";  // where the CA root Secret lives
  // Cluster mode: also watch Istio's security.istio.io AuthorizationPolicies and
  // PeerAuthentications (optional kinds: fine when Istio's CRDs are not installed).
  bool istio_policies = true;

  std::string grpc_addr = "0.0.0.0:15012";  // config stream + CA; port 0 picks one
  bool plaintext = false;                   // gRPC without TLS (tests, loopback only); default TLS
  // <state_dir>/ca (root, persisted), <state_dir>/tokens (local-mode node tokens).
  std::string state_dir = "/var/lib/weft";
  std::vector<std::string> node_tokens;  // local mode: ensure a bootstrap token for these nodes
  std::vector<std::string> ztunnel_service_accounts = {"system:serviceaccount:weft-system:ztunnel"};
  // cluster mode: the audience node tokens must be valid for (TokenReview spec.audiences).
  std::string ca_audience = "weft-ca";
  std::string trust_domain = "cluster.local";
  // Local mode: Pods may name their netns under this prefix (ModelOptions::pod_netns_prefix).
  std::string pod_netns_prefix;
  std::vector<std::string> serving_names = {"weftd.weft-system.svc", "localhost"};
  std::chrono::milliseconds debounce{100};

  SockAddr admin_addr = *SockAddr::Parse("127.0.0.1:15010");    // /status, /config_dump
  SockAddr metrics_addr = *SockAddr::Parse("0.0.0.0:15014");    // /metrics
  SockAddr readiness_addr = *SockAddr::Parse("0.0.0.0:15015");  // /healthz/ready
};

class Weftd {
 public:
  explicit Weftd(WeftdOptions opts);
  ~Weftd();  // Stop()
  Weftd(const Weftd&) = delete;
  Weftd& operator=(const Weftd&) = delete;

  // Loads or creates the CA root, starts the source (the local source loads every file before
  // this returns), the gRPC server and the admin endpoints. Errors say what to fix.
  absl::Status Start();
  void Stop();

  int grpc_port() const;
  SockAddr admin_addr() const;
  SockAddr metrics_addr() const;
  std::string root_cert_path() const;  // the mesh root (clients' --cp-root)
  std::string TokenPath(const std::string& node) const;

  // The /status document: nodes and their streams, config versions, rejected objects with
  // reasons, source file errors, CA counters.
  std::string StatusJson() const;
  // One node's current view as JSON (what `weftctl config-dump NODE` prints).
  std::string ConfigDumpJson(const std::string& node) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::cp
