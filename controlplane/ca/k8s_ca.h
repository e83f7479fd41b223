// Cluster-mode glue between the CA and the Kubernetes API (controlplane/k8s): the root kept in
// a Secret, and node tokens checked with TokenReview. Built as weft_cp_ca_k8s only when the
// k8s REST client (weft_cp_k8s_rest) is part of the build.
//
// RBAC weftd needs: secrets get+create and configmaps get+create+update in its own namespace
// (the root, and the root certificate published for nodes), and tokenreviews create (cluster
// scope, authentication.k8s.io).
#pragma once

#include <string>
#include <vector>

#include "controlplane/ca/ca.h"
#include "controlplane/k8s/rest_client.h"

namespace weft::cp {

// The root in Secret <ns>/<name> (type Opaque, data keys "ca-cert.pem" and "ca-key.pem").
// Load: GET (404 = nothing stored). Create: POST (409 Conflict = AlreadyExists, so two
// replicas starting together end up with the one root that won). Other HTTP errors say which
// permission is missing or that the API server is unreachable.
class KubernetesSecretRootStore : public RootStore {
 public:
  KubernetesSecretRootStore(k8s::RestClient* client, std::string ns,
                            std::string name = "weft-ca-root");
  absl::StatusOr<std::optional<StoredRoot>> Load() override;
  absl::Status Create(const StoredRoot& root) override;
  std::string Describe() const override;

  static constexpr const char* kCertKey = "ca-cert.pem";
  static constexpr const char* kKeyKey = "ca-key.pem";

 private:
  k8s::RestClient* client_;
  std::string ns_, name_;
};

// The mesh root certificate for nodes: ConfigMap <ns>/<name> with data key "root-cert.pem"
// (like Istio's istio-ca-root-cert). Nodes mount it and pass the file as --cp-root (the trust
// bundle for weftd's serving certificate and for peers' workload certificates). Only the root
// is published, never a key; with a user intermediate it is the root of that chain.
inline constexpr char kRootCertConfigMap[] = "weft-ca-root-cert";
inline constexpr char kRootCertConfigMapKey[] = "root-cert.pem";

enum class PublishResult { kCreated, kUpdated, kUnchanged };

// Idempotent create-or-update: GET; 404 -> POST (409: created meanwhile, read it again);
// 200 with another "root-cert.pem" (or none) -> PUT of the object read, with that key set and
// its resourceVersion (409: changed meanwhile, read again); same content -> no write. Up to
// three rounds. Other keys and metadata of an existing ConfigMap are kept. Errors name the
// missing permission (configmaps get/create/update in <ns>) or the HTTP failure.
absl::StatusOr<PublishResult> PublishRootCertConfigMap(
    k8s::RestClient* client, const std::string& ns, const std::string& root_pem,
    const std::string& name = kRootCertConfigMap);

// A TokenReviewer backed by k8s::ReviewToken, sending spec.audiences = `audiences` (empty:
// {"weft-ca"}): username, status.audiences, and what the token is bound to
// (status.user.extra["authentication.kubernetes.io/node-name"], ".../pod-name",
// ".../pod-uid"). A token the API server does
// not authenticate is Unauthenticated; a failed review (API server down, weftd's own
// credentials refused) is Unavailable, so the node retries instead of being told its token is
// bad.
TokenReviewer KubernetesTokenReviewer(k8s::RestClient* client,
                                      std::vector<std::string> audiences = {});

}  // namespace weft::cp
