#include "controlplane/ca/ca_server.h"

#include <openssl/bn.h>
#include <openssl/x509.h>
#include <prometheus/family.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "common/tls.h"

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
    case absl::StatusCode::kResourceExhausted:
      return "rate_limited";
    default:
      return "error";
  }
}

std::string SerialHex(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

constexpr std::chrono::minutes kFullPruneEvery{1};

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
  for (const char* r : {"ok", "unauthenticated", "permission_denied", "invalid", "unavailable",
                        "rate_limited", "error"}) {
    requests_->Add({{"result", r}});
  }
  expiry_ = &prometheus::BuildGauge()
                 .Name("weft_ca_issued_cert_expiry_timestamp_seconds")
                 .Help(
                     "notAfter (Unix seconds) of the newest certificate issued per node and "
                     "identity; series of pods that left the node are removed")
                 .Register(*registry_);
}

void CaService::SetNodeIdentities(NodeIdentities fn) {
  node_identities_ = std::move(fn);
}

std::chrono::system_clock::time_point CaService::Now() const {
  const auto& clock = issuer_->options().clock;
  return clock ? clock() : std::chrono::system_clock::now();
}

void CaService::Record(const std::string& node, const std::string& identity,
                       const std::string& leaf_pem) {
  auto leaf = tls::CertFromPem(leaf_pem);
  if (!leaf.ok()) return;  // the issuer just produced it; cannot happen short of a bug
  IssuedCertificate rec;
  rec.node = node;
  rec.identity = identity;
  rec.serial = SerialHex(leaf->get());
  tls::Validity v = tls::CertValidity(leaf->get());
  rec.not_before = v.not_before;
  rec.not_after = v.not_after;
  rec.issued_at = Now();
  bool full_prune = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    expiry_->Add({{"node", node}, {"identity", identity}})
        .Set(static_cast<double>(std::chrono::system_clock::to_time_t(rec.not_after)));
    if (rec.issued_at - last_full_prune_ >= kFullPruneEvery) {
      last_full_prune_ = rec.issued_at;
      full_prune = true;
    }
    issued_[{node, identity}] = std::move(rec);
  }
  Prune(full_prune ? RecordedNodes() : std::vector<std::string>{node});
}

std::vector<std::string> CaService::RecordedNodes() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> nodes;
  for (const auto& [key, rec] : issued_) {
    if (nodes.empty() || nodes.back() != key.first) nodes.push_back(key.first);
  }
  return nodes;
}

void CaService::Prune(const std::vector<std::string>& nodes) {
  for (const auto& node : nodes) {
    // (identity, serial) so that a record replaced by a new issuance meanwhile is kept.
    std::vector<std::pair<std::string, std::string>> recorded;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = issued_.lower_bound({node, ""});
           it != issued_.end() && it->first.first == node; ++it) {
        recorded.emplace_back(it->first.second, it->second.serial);
      }
    }
    if (recorded.empty()) continue;
    std::vector<std::pair<std::string, std::string>> gone;
    if (node_identities_) {
      std::vector<std::string> current = node_identities_(node);
      for (const auto& r : recorded) {
        if (!std::binary_search(current.begin(), current.end(), r.first)) gone.push_back(r);
      }
    } else {
      for (const auto& r : recorded) {
        auto parsed = SpiffeId::Parse(r.first);
        if (!parsed.ok() || !authz_ || !authz_(node, *parsed)) gone.push_back(r);
      }
    }
    if (gone.empty()) continue;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, serial] : gone) {
      auto it = issued_.find({node, id});
      if (it == issued_.end() || it->second.serial != serial) continue;
      issued_.erase(it);
      expiry_->Remove(&expiry_->Add({{"node", node}, {"identity", id}}));
    }
  }
}

std::vector<IssuedCertificate> CaService::IssuedCertificates() {
  Prune(RecordedNodes());
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<IssuedCertificate> out;
  out.reserve(issued_.size());
  for (const auto& [key, rec] : issued_) out.push_back(rec);
  return out;
}

void CaService::Count(std::string_view result) {
  requests_->Add({{"result", std::string(result)}}).Increment();
}

double CaService::RequestCount(std::string_view result) const {
  return requests_->Add({{"result", std::string(result)}}).Value();
}

absl::StatusOr<std::vector<std::string>> CaService::Handle(
    std::string_view authorization, const weft::ca::v1::CertificateRequest& req,
    std::string_view client) {
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
    WEFT_ASSIGN_OR_RETURN(node, authn_->Authenticate(token, req.node(), client));
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
    if (!result->empty()) Record(node, req.identity(), result->front());
    LOG_INFO("ca", "issued certificate", {{"node", node}, {"identity", req.identity()}});
  } else {
    LOG_WARN("ca", "refused certificate request",
             {{"node", node},
              {"claimed_node", req.node()},
              {"client", std::string(client)},
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
  auto chain = Handle(authorization, *req, ClientAddress(ctx->peer()));
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
