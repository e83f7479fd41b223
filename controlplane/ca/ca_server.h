// The gRPC weft.ca.v1.CertificateService: authenticates the calling node from the
// "authorization: Bearer <token>" metadata, authorizes the requested identity for that node,
// then has the Issuer sign the CSR.
//
// Status codes: UNAUTHENTICATED (missing/bad token), PERMISSION_DENIED (identity not on the
// node), INVALID_ARGUMENT (bad CSR, CSR/identity mismatch, bad validity), UNAVAILABLE
// (TokenReview unreachable), RESOURCE_EXHAUSTED (the client sent more unknown tokens than its
// TokenReview rate allows). Every request is counted in
// weft_ca_requests_total{result="ok|unauthenticated|permission_denied|invalid|unavailable|
// rate_limited|error"}
// and every refusal is logged with the node, identity and reason.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/ca/ca.h"
#include "weft/ca/v1/ca.grpc.pb.h"

namespace weft::cp {

// The newest certificate the CA issued for one identity to one node (`weftctl status` shows
// their expiries).
struct IssuedCertificate {
  std::string node;
  std::string identity;  // SPIFFE ID
  std::string serial;    // hex, as `openssl x509 -serial` prints it
  std::chrono::system_clock::time_point not_before, not_after;
  std::chrono::system_clock::time_point issued_at;  // the CA's clock at issuance
};

// The identities of the pods currently scheduled on a node, sorted (Model::IdentitiesOnNode).
using NodeIdentities = std::function<std::vector<std::string>(std::string_view node)>;

class CaService final : public weft::ca::v1::CertificateService::Service {
 public:
  // `registry` may be null (a private one is made). All pointers must outlive the service.
  CaService(const Issuer* issuer, NodeAuthenticator* authn, NodeAuthorizer authz,
            std::shared_ptr<prometheus::Registry> registry = nullptr);

  grpc::Status CreateCertificate(grpc::ServerContext* ctx,
                                 const weft::ca::v1::CertificateRequest* req,
                                 weft::ca::v1::CertificateResponse* resp) override;

  // The same checks without gRPC (used by CreateCertificate; also handy for weftctl/tests).
  // `authorization` is the raw metadata value ("Bearer <token>"); `client` the caller's
  // address (ClientAddress of the gRPC peer) for per-client limits.
  absl::StatusOr<std::vector<std::string>> Handle(std::string_view authorization,
                                                  const weft::ca::v1::CertificateRequest& req,
                                                  std::string_view client = "");

  // Issued-certificate records: the newest certificate per (node, identity), also exported as
  // weft_ca_issued_cert_expiry_timestamp_seconds{node,identity} (notAfter, Unix seconds).
  // A record is dropped (and its series removed) once its identity no longer runs on that
  // node: checked for a node at each of its issuances, for every node at most once a minute
  // (on any issuance) and at each IssuedCertificates() call. So memory is bounded by the pods
  // currently scheduled. `fn` lists a node's identities; without it the authorizer is asked
  // per record. Set before serving.
  void SetNodeIdentities(NodeIdentities fn);
  // The records after dropping stale ones, sorted by node then identity.
  std::vector<IssuedCertificate> IssuedCertificates();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Current value of weft_ca_requests_total{result} (tests, weftctl status).
  double RequestCount(std::string_view result) const;

 private:
  void Count(std::string_view result);
  void Record(const std::string& node, const std::string& identity, const std::string& leaf_pem);
  // Drops records of `nodes` whose identity left the node. Takes mu_ only briefly: the
  // identity lists are computed outside it.
  void Prune(const std::vector<std::string>& nodes);
  std::vector<std::string> RecordedNodes();
  std::chrono::system_clock::time_point Now() const;
  const Issuer* issuer_;
  NodeAuthenticator* authn_;
  NodeAuthorizer authz_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Gauge>* expiry_;
  NodeIdentities node_identities_;
  std::mutex mu_;  // guards issued_ and last_full_prune_
  std::map<std::pair<std::string, std::string>, IssuedCertificate> issued_;  // (node, identity)
  std::chrono::system_clock::time_point last_full_prune_{};
};

// TLS credentials for weftd's gRPC port: a serving certificate issued by `issuer` for
// `dns_names` (e.g. {"weftd.weft-system.svc", "localhost"}), valid `ttl` (cut at the CA's own
// expiry). Clients verify it against the mesh root (CaClientOptions::root_pem) and use one of
// the DNS names as the TLS server name. No client certificate is requested: nodes
// authenticate with their bearer token.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServingCredentials(
    const Issuer& issuer, const std::vector<std::string>& dns_names,
    std::chrono::seconds ttl = std::chrono::hours(24 * 365));

}  // namespace weft::cp
