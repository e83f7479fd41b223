#include "controlplane/ca/ca.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::cp {
namespace {

using std::chrono::system_clock;

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status EnsureDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create directory ", dir, ": ", ec.message(),
                     "; create it or point the CA directory elsewhere"));
  }
  ::chmod(dir.c_str(), 0700);
  return absl::OkStatus();
}

bool ValidNodeName(std::string_view n) {
  if (n.empty() || n.size() > 253) return false;
  if (n.front() == '.' || n.front() == '-' || n.back() == '.' || n.back() == '-') return false;
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::optional<StoredRoot>> FileRootStore::Load() {
  bool have_cert = Exists(cert_path()), have_key = Exists(key_path());
  if (!have_cert && !have_key) return std::optional<StoredRoot>();
  if (have_cert != have_key) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CA directory ", dir_,
        " holds only one of root-cert.pem and root-key.pem; restore the "
        "missing file, or remove both to generate a new root (every workload certificate "
        "must then be reissued)"));
  }
  StoredRoot r;
  WEFT_ASSIGN_OR_RETURN(r.cert_pem, tls::ReadFile(cert_path()));
  WEFT_ASSIGN_OR_RETURN(r.key_pem, tls::ReadFile(key_path()));
  return std::optional<StoredRoot>(std::move(r));
}

absl::Status FileRootStore::Create(const StoredRoot& root) {
  WEFT_RETURN_IF_ERROR(EnsureDir(dir_));
  if (Exists(cert_path()) || Exists(key_path())) {
    return absl::AlreadyExistsError(absl::StrCat("a root already exists in ", dir_));
  }
  // Key first: a crash in between leaves a key without a cert, which Load reports instead of
  // silently generating a second root.
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(key_path(), root.key_pem, 0600));
  return tls::WriteFileAtomic(cert_path(), root.cert_pem, 0644);
}

absl::StatusOr<tls::CertificateAuthority> LoadOrCreateRoot(RootStore& store, std::string_view org,
                                                           std::chrono::seconds lifetime) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    WEFT_ASSIGN_OR_RETURN(std::optional<StoredRoot> stored, store.Load());
    if (stored) {
      auto ca = tls::CertificateAuthority::FromPem(stored->cert_pem, stored->key_pem);
      if (!ca.ok()) {
        return absl::FailedPreconditionError(absl::StrCat("stored CA root in ", store.Describe(),
                                                          " is unusable: ", ca.status().message()));
      }
      LOG_INFO("ca", "loaded CA root", {{"store", store.Describe()}});
      return ca;
    }
    WEFT_ASSIGN_OR_RETURN(tls::CertificateAuthority ca,
                          tls::CertificateAuthority::CreateRoot(org, lifetime));
    StoredRoot r;
    r.cert_pem = ca.root_pem();
    WEFT_ASSIGN_OR_RETURN(r.key_pem, ca.KeyPem());
    absl::Status st = store.Create(r);
    if (st.ok()) {
      LOG_INFO("ca", "generated a new CA root", {{"store", store.Describe()}});
      return ca;
    }
    if (!absl::IsAlreadyExists(st)) {
      return absl::Status(st.code(), absl::StrCat("storing the new CA root in ", store.Describe(),
                                                  ": ", st.message()));
    }
  }
  return absl::AbortedError(
      absl::StrCat("CA root in ", store.Describe(), " keeps changing; is another weftd writing?"));
}

absl::StatusOr<tls::CertificateAuthority> LoadUserCa(const std::string& cert_file,
                                                     const std::string& key_file,
                                                     const std::string& chain_file) {
  WEFT_ASSIGN_OR_RETURN(std::string cert, tls::ReadFile(cert_file));
  WEFT_ASSIGN_OR_RETURN(std::string key, tls::ReadFile(key_file));
  std::string chain;
  if (!chain_file.empty()) {
    WEFT_ASSIGN_OR_RETURN(chain, tls::ReadFile(chain_file));
  }
  auto ca = tls::CertificateAuthority::FromPem(cert, key, chain);
  if (!ca.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("user-provided CA (", cert_file, ", ", key_file,
                                                   chain_file.empty() ? "" : ", ", chain_file,
                                                   "): ", ca.status().message()));
  }
  return ca;
}

// ---------------------------------------------------------------------------------------------

std::string BootstrapTokenAuthenticator::TokenPath(const std::string& dir, std::string_view node) {
  return absl::StrCat(dir, "/", Av(node), ".token");
}

absl::StatusOr<std::string> BootstrapTokenAuthenticator::EnsureNodeToken(const std::string& dir,
                                                                         std::string_view node) {
  if (!ValidNodeName(node)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node name \"", Av(node),
                     "\" is not a DNS subdomain (lower-case letters, digits, '.', '-')"));
  }
  std::string path = TokenPath(dir, node);
  if (auto existing = tls::ReadFile(path); existing.ok()) {
    std::string t(absl::StripAsciiWhitespace(*existing));
    if (absl::StartsWith(t, absl::StrCat(Av(node), "."))) return t;
  }
  WEFT_RETURN_IF_ERROR(EnsureDir(dir));
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return tls::OpenSslError("RAND_bytes");
  std::string token = absl::StrCat(
      Av(node), ".",
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(raw), sizeof raw)));
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(path, token, 0600));
  return token;
}

absl::StatusOr<std::string> BootstrapTokenAuthenticator::Authenticate(
    std::string_view token, std::string_view claimed_node) {
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no bootstrap token: send 'authorization: Bearer <token>' with the contents of the "
        "node's token file");
  }
  size_t dot = token.rfind('.');
  if (dot == std::string_view::npos || dot == 0) {
    return absl::UnauthenticatedError("malformed bootstrap token (expected <node>.<hex>)");
  }
  std::string_view node = token.substr(0, dot);
  if (!ValidNodeName(node)) return absl::UnauthenticatedError("malformed bootstrap token");
  if (!claimed_node.empty() && claimed_node != node) {
    return absl::UnauthenticatedError(
        absl::StrCat("bootstrap token belongs to node ", Av(node), ", not to ", Av(claimed_node)));
  }
  auto expected = tls::ReadFile(TokenPath(dir_, node));
  if (!expected.ok()) {
    return absl::UnauthenticatedError(absl::StrCat("no bootstrap token is registered for node ",
                                                   Av(node), " (revoked or never created)"));
  }
  std::string want(absl::StripAsciiWhitespace(*expected));
  if (want.size() != token.size() || CRYPTO_memcmp(want.data(), token.data(), token.size()) != 0) {
    return absl::UnauthenticatedError(absl::StrCat("wrong bootstrap token for node ", Av(node)));
  }
  return std::string(node);
}

TokenReviewer UsernameOnlyReviewer(
    std::function<absl::StatusOr<std::string>(std::string_view token)> review) {
  return [review = std::move(review)](std::string_view token) -> absl::StatusOr<ReviewedToken> {
    WEFT_ASSIGN_OR_RETURN(std::string user, review(token));
    return ReviewedToken{std::move(user), std::nullopt};
  };
}

absl::StatusOr<std::string> TokenReviewAuthenticator::Authenticate(std::string_view token,
                                                                   std::string_view claimed_node) {
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no service-account token: send 'authorization: Bearer <token>'");
  }
  auto reviewed = reviewer_(token);
  if (!reviewed.ok()) {
    if (absl::IsUnauthenticated(reviewed.status()) || absl::IsPermissionDenied(reviewed.status())) {
      return absl::UnauthenticatedError(
          absl::StrCat("TokenReview rejected the token: ", reviewed.status().message()));
    }
    return absl::UnavailableError(
        absl::StrCat("TokenReview failed (retry later): ", reviewed.status().message()));
  }
  const std::string& user = reviewed->username;
  constexpr std::string_view kNodePrefix = "system:node:";
  if (absl::StartsWith(user, Av(kNodePrefix))) {
    std::string node = user.substr(kNodePrefix.size());
    if (!claimed_node.empty() && claimed_node != node) {
      return absl::UnauthenticatedError(
          absl::StrCat("token belongs to node ", node, ", not to ", Av(claimed_node)));
    }
    return node;
  }
  bool allowed = false;
  for (const auto& a : allowed_) allowed |= a == user;
  if (!allowed) {
    return absl::UnauthenticatedError(
        absl::StrCat("token of ", user,
                     " may not request certificates (only ztunnel's service account or a "
                     "node credential may)"));
  }
  if (reviewed->node_name) {
    if (!claimed_node.empty() && claimed_node != *reviewed->node_name) {
      return absl::UnauthenticatedError(absl::StrCat(
          "token is bound to node ", *reviewed->node_name, ", not to ", Av(claimed_node)));
    }
    return *reviewed->node_name;
  }
  if (claimed_node.empty()) {
    return absl::UnauthenticatedError("request names no node and the token is not node-bound");
  }
  static std::once_flag warned;
  std::call_once(warned, [&] {
    LOG_WARN("ca",
             "service-account token is not node-bound; trusting the node named in the request "
             "(use Kubernetes >= 1.30 bound tokens for node binding)",
             {{"user", user}});
  });
  return std::string(claimed_node);
}

// ---------------------------------------------------------------------------------------------

namespace {
// The key types the CA signs (issue 13): EC P-256 or P-384, RSA of 2048 bits or more.
absl::Status CheckCsrKey(X509_REQ* csr) {
  EVP_PKEY* key = X509_REQ_get0_pubkey(csr);
  if (key == nullptr) return absl::InvalidArgumentError("CSR key: missing or unreadable");
  const int bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) group[0] = 0;
    std::string_view g(group);
    if (g == "prime256v1" || g == "secp384r1") return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("CSR key: EC curve ", Av(g.empty() ? std::string_view("(unknown)") : g),
                     " is not accepted; use P-256 (prime256v1) or P-384 (secp384r1)"));
  }
  if (EVP_PKEY_is_a(key, "RSA")) {
    if (bits >= 2048) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("CSR key: RSA ", bits, " bits is too small; use at least 2048 bits"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("CSR key: type ", OBJ_nid2sn(EVP_PKEY_get_base_id(key)),
                   " is not accepted; use EC P-256/P-384 or RSA >= 2048 bits"));
}
}  // namespace

Issuer::Issuer(tls::CertificateAuthority ca, IssuerOptions opts)
    : ca_(std::move(ca)), opts_(std::move(opts)) {}

system_clock::time_point Issuer::Now() const {
  return opts_.clock ? opts_.clock() : system_clock::now();
}

absl::StatusOr<std::vector<std::string>> Issuer::Issue(std::string_view csr_pem,
                                                       std::string_view identity,
                                                       std::chrono::seconds ttl) const {
  auto id = SpiffeId::Parse(identity);
  if (!id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("requested identity: ", id.status().message()));
  }
  if (id->trust_domain != opts_.trust_domain) {
    return absl::InvalidArgumentError(absl::StrCat("requested identity ", Av(identity),
                                                   " is not in trust domain ", opts_.trust_domain));
  }
  auto csr = tls::CsrFromPem(csr_pem);
  if (!csr.ok()) return absl::InvalidArgumentError(absl::StrCat("CSR: ", csr.status().message()));
  WEFT_RETURN_IF_ERROR(CheckCsrKey(csr->get()));
  auto csr_id = tls::CsrSpiffeId(csr->get());
  if (!csr_id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("CSR: ", csr_id.status().message()));
  }
  if (!(*csr_id == *id)) {
    return absl::InvalidArgumentError(absl::StrCat("CSR is for ", csr_id->ToString(),
                                                   " but the request asks for ", Av(identity)));
  }
  if (ttl.count() == 0) ttl = opts_.default_ttl;
  if (ttl < opts_.min_ttl || ttl > opts_.max_ttl) {
    return absl::InvalidArgumentError(absl::StrCat("validity ", ttl.count(), "s is outside [",
                                                   opts_.min_ttl.count(), "s, ",
                                                   opts_.max_ttl.count(), "s]"));
  }
  // Back-date a minute for clock skew between weftd and the nodes, keeping the full ttl ahead.
  auto nb = Now() - std::chrono::minutes(1);
  WEFT_ASSIGN_OR_RETURN(tls::X509Ptr leaf,
                        ca_.Sign(csr->get(), *id, ttl + std::chrono::minutes(1), nb));
  std::vector<std::string> out;
  WEFT_ASSIGN_OR_RETURN(std::string leaf_pem, tls::CertToPem(leaf.get()));
  out.push_back(std::move(leaf_pem));
  // Our own CA cert is an intermediate unless it is the root itself.
  for (const auto& p : ca_.chain_pem()) out.push_back(p);
  return out;
}

absl::StatusOr<Issuer::ServingCert> Issuer::IssueServingCert(
    const std::vector<std::string>& dns_names, std::chrono::seconds ttl) const {
  WEFT_ASSIGN_OR_RETURN(tls::EvpPkeyPtr key, tls::GenerateKey());
  SpiffeId self{opts_.trust_domain, "weft-system", "weftd"};
  WEFT_ASSIGN_OR_RETURN(tls::X509ReqPtr csr, tls::MakeCsr(key.get(), self));
  WEFT_ASSIGN_OR_RETURN(tls::X509Ptr leaf, ca_.SignWithSans(csr.get(), {self.ToString()}, dns_names,
                                                            ttl + std::chrono::minutes(1),
                                                            Now() - std::chrono::minutes(1)));
  ServingCert out;
  WEFT_ASSIGN_OR_RETURN(out.key_pem, tls::KeyToPem(key.get()));
  WEFT_ASSIGN_OR_RETURN(out.chain_pem, tls::CertToPem(leaf.get()));
  const auto& chain = ca_.chain_pem();
  // Present leaf + intermediates; the root is what clients already trust.
  for (size_t i = 0; i + 1 < chain.size(); ++i) out.chain_pem += chain[i];
  return out;
}

}  // namespace weft::cp
