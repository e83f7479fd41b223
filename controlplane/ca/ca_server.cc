#include "controlplane/ca/ca_server.h"

#include <prometheus/family.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::cp {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

std::string_view ResultLabel(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return "ok";
    case absl::StatusCode::kUnauthenticated:
      return "unauthenticated";
    case absl::StatusCode::kPermissionDenied:
      return "permission_denied";
    case absl::StatusCode::kInvalidArgument:
      return "invalid";
    case absl::StatusCode::kUnavailable:
      return "unavailable";
    default:
      return "error";
  }
}

}  // namespace

CaService::CaService(const Issuer* issuer, NodeAuthenticator* authn, NodeAuthorizer authz,
                     std::shared_ptr<prometheus::Registry> registry)
    : issuer_(issuer),
      authn_(authn),
      authz_(std::move(authz)),
      registry_(registry ? std::move(registry) : std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("weft_ca_requests_total")
                   .Help("Certificate requests handled by weftd's CA, by result")
                   .Register(*registry_);
  // Pre-create the children so dashboards see zeros rather than missing series.
  for (const char* r :
       {"ok", "unauthenticated", "permission_denied", "invalid", "unavailable", "error"}) {
    requests_->Add({{"result", r}});
  }
}

void CaService::Count(std::string_view result) {
  requests_->Add({{"result", std::string(result)}}).Increment();
}

double CaService::RequestCount(std::string_view result) const {
  return requests_->Add({{"result", std::string(result)}}).Value();
}

absl::StatusOr<std::vector<std::string>> CaService::Handle(
    std::string_view authorization, const weft::ca::v1::CertificateRequest& req) {
  std::string node;  // authenticated node ("" until authenticated)
  auto result = [&]() -> absl::StatusOr<std::vector<std::string>> {
    std::string_view token;
    std::string_view auth = authorization;
    if (absl::StartsWithIgnoreCase(Av(auth), "bearer ")) {
      token = auth.substr(7);
      while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    } else if (!auth.empty()) {
      return absl::UnauthenticatedError("authorization metadata must be 'Bearer <token>'");
    }
    WEFT_ASSIGN_OR_RETURN(node, authn_->Authenticate(token, req.node()));
    auto id = SpiffeId::Parse(req.identity());
    if (!id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("requested identity: ", id.status().message()));
    }
    if (!authz_ || !authz_(node, *id)) {
      return absl::PermissionDeniedError(
          absl::StrCat("node ", node, " runs no pod with identity ", req.identity(),
                       "; a node gets certificates only for pods scheduled on it"));
    }
    return issuer_->Issue(req.csr_pem(), req.identity(),
                          std::chrono::seconds(req.validity_seconds()));
  }();
  Count(ResultLabel(result.status()));
  if (result.ok()) {
    LOG_INFO("ca", "issued certificate", {{"node", node}, {"identity", req.identity()}});
  } else {
    LOG_WARN("ca", "refused certificate request",
             {{"node", node},
              {"claimed_node", req.node()},
              {"identity", req.identity()},
              {"result", std::string(ResultLabel(result.status()))},
              {"reason", std::string(result.status().message())}});
  }
  return result;
}

grpc::Status CaService::CreateCertificate(grpc::ServerContext* ctx,
                                          const weft::ca::v1::CertificateRequest* req,
                                          weft::ca::v1::CertificateResponse* resp) {
  std::string authorization;
  const auto& md = ctx->client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    authorization.assign(it->second.data(), it->second.size());
  }
  auto chain = Handle(authorization, *req);
  if (!chain.ok()) return ToGrpc(chain.status());
  for (auto& pem : *chain) resp->add_cert_chain_pem(std::move(pem));
  return grpc::Status::OK;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServingCredentials(
    const Issuer& issuer, const std::vector<std::string>& dns_names, std::chrono::seconds ttl) {
  if (dns_names.empty()) {
    return absl::InvalidArgumentError("the serving certificate needs at least one DNS name");
  }
  WEFT_ASSIGN_OR_RETURN(Issuer::ServingCert sc, issuer.IssueServingCert(dns_names, ttl));
  grpc::SslServerCredentialsOptions opts(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  opts.pem_key_cert_pairs.push_back({sc.key_pem, sc.chain_pem});
  opts.pem_root_certs = issuer.root_pem();
  return grpc::SslServerCredentials(opts);
}

}  // namespace weft::cp
