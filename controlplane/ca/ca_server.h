// The gRPC weft.ca.v1.CertificateService: authenticates the calling node from the
// "authorization: Bearer <token>" metadata, authorizes the requested identity for that node,
// then has the Issuer sign the CSR.
//
// Status codes: UNAUTHENTICATED (missing/bad token), PERMISSION_DENIED (identity not on the
// node), INVALID_ARGUMENT (bad CSR, CSR/identity mismatch, bad validity), UNAVAILABLE
// (TokenReview unreachable). Every request is counted in
// weft_ca_requests_total{result="ok|unauthenticated|permission_denied|invalid|unavailable|error"}
// and every refusal is logged with the node, identity and reason.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "controlplane/ca/ca.h"
#include "weft/ca/v1/ca.grpc.pb.h"

namespace weft::cp {

class CaService final : public weft::ca::v1::CertificateService::Service {
 public:
  // `registry` may be null (a private one is made). All pointers must outlive the service.
  CaService(const Issuer* issuer, NodeAuthenticator* authn, NodeAuthorizer authz,
            std::shared_ptr<prometheus::Registry> registry = nullptr);

  grpc::Status CreateCertificate(grpc::ServerContext* ctx,
                                 const weft::ca::v1::CertificateRequest* req,
                                 weft::ca::v1::CertificateResponse* resp) override;

  // The same checks without gRPC (used by CreateCertificate; also handy for weftctl/tests).
  // `authorization` is the raw metadata value ("Bearer <token>").
  absl::StatusOr<std::vector<std::string>> Handle(std::string_view authorization,
                                                  const weft::ca::v1::CertificateRequest& req);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Current value of weft_ca_requests_total{result} (tests, weftctl status).
  double RequestCount(std::string_view result) const;

 private:
  void Count(std::string_view result);
  const Issuer* issuer_;
  NodeAuthenticator* authn_;
  NodeAuthorizer authz_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
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
