// OpenSSL RAII types and X.509/SPIFFE helpers shared by ztunnel, weftd (CA) and weftctl.
// All functions are thread-safe (no shared mutable state). Errors carry OpenSSL's error queue
// text (OpenSslError) so logs say why.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/file.h"  // ReadFile/WriteFileAtomic, used with PEM files
#include "common/spiffe.h"

namespace weft::tls {

// Callers written before common/file.h name these tls::ReadFile / tls::WriteFileAtomic.
using weft::ReadFile;
using weft::WriteFileAtomic;

struct SslCtxDeleter {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslDeleter {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct X509ReqDeleter {
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
};
struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509StoreDeleter {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct X509StoreCtxDeleter {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free_all(p); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using X509ReqPtr = std::unique_ptr<X509_REQ, X509ReqDeleter>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreDeleter>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, X509StoreCtxDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// Drains OpenSSL's thread-local error queue into one string ("" if empty).
std::string OpenSslErrors();
absl::Status OpenSslError(std::string_view what);  // Internal error: "what: <queue>"

// Keys: ECDSA P-256.
absl::StatusOr<EvpPkeyPtr> GenerateKey();
absl::StatusOr<std::string> KeyToPem(EVP_PKEY* key);
absl::StatusOr<EvpPkeyPtr> KeyFromPem(std::string_view pem);

absl::StatusOr<std::string> CertToPem(X509* cert);
absl::StatusOr<X509Ptr> CertFromPem(std::string_view pem);
// All certificates in a PEM bundle, in order (error if none).
absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(std::string_view pem);

// CSR with the SPIFFE ID as its only URI SAN, signed by `key`.
absl::StatusOr<X509ReqPtr> MakeCsr(EVP_PKEY* key, const SpiffeId& id);
absl::StatusOr<std::string> CsrToPem(X509_REQ* csr);
absl::StatusOr<X509ReqPtr> CsrFromPem(std::string_view pem);
// Verifies the CSR's self-signature and returns its single SPIFFE URI SAN.
absl::StatusOr<SpiffeId> CsrSpiffeId(X509_REQ* csr);

// The SPIFFE ID in a certificate's URI SAN. Errors: no SAN, no spiffe:// URI, more than one
// URI SAN, malformed ID.
absl::StatusOr<SpiffeId> CertSpiffeId(X509* cert);

struct Validity {
  std::chrono::system_clock::time_point not_before, not_after;
};
Validity CertValidity(X509* cert);

// Verifies `leaf` (with `intermediates` as untrusted helpers) against `roots` (no purpose/EKU
// check; TLS does that at the handshake). `check_time=false` ignores validity periods (used where
// expiry is reported elsewhere, e.g. at the handshake). Error text is X509_verify_cert_error_string
// plus the depth.
absl::Status VerifyChain(X509* leaf, const std::vector<X509Ptr>& intermediates,
                         const std::vector<X509Ptr>& roots, bool check_time = true);

// A certificate authority: a CA cert + key that signs workload certificates.
class CertificateAuthority {
 public:
  // Self-signed root (CN "<org> root CA", CA:TRUE with pathlen `path_len`, keyCertSign), valid
  // `lifetime`. pathlen 1 (default): one level of intermediates below the root.
  static absl::StatusOr<CertificateAuthority> CreateRoot(std::string_view org,
                                                         std::chrono::seconds lifetime,
                                                         int path_len = 1);
  // Intermediate signed by `parent`.
  absl::StatusOr<CertificateAuthority> CreateIntermediate(std::string_view org,
                                                          std::chrono::seconds lifetime) const;
  static absl::StatusOr<CertificateAuthority> FromPem(std::string_view cert_pem,
                                                      std::string_view key_pem,
                                                      std::string_view chain_pem = "");

  // Issues a leaf (CA:FALSE, digitalSignature+keyEncipherment, serverAuth+clientAuth EKU) for
  // the CSR's public key with the given SPIFFE URI SAN. `not_before` defaults to now-1min.
  // notAfter = (not_before or now) + ttl, cut at the CA's own notAfter. Empty subject, critical
  // SAN, random 128-bit serial, ECDSA-SHA256. Errors: CSR signature invalid, ttl <= 0, bad id.
  absl::StatusOr<X509Ptr> Sign(
      X509_REQ* csr, const SpiffeId& id, std::chrono::seconds ttl,
      std::optional<std::chrono::system_clock::time_point> not_before = std::nullopt) const;
  // Like Sign, but with arbitrary URI/DNS SANs and no SPIFFE validation (tests and tools that
  // need non-conforming certificates, e.g. no SAN or two URI SANs). Empty SAN lists => no SAN
  // extension at all.
  absl::StatusOr<X509Ptr> SignWithSans(
      X509_REQ* csr, const std::vector<std::string>& uri_sans,
      const std::vector<std::string>& dns_sans, std::chrono::seconds ttl,
      std::optional<std::chrono::system_clock::time_point> not_before = std::nullopt) const;
  // PEM of the CA's private key (PKCS#8), for persisting a generated CA.
  absl::StatusOr<std::string> KeyPem() const { return KeyToPem(key_.get()); }

  X509* cert() const { return cert_.get(); }
  EVP_PKEY* key() const { return key_.get(); }
  // PEM of this CA's chain up to (and including) the root: [this, ..., root].
  const std::vector<std::string>& chain_pem() const { return chain_pem_; }
  std::string root_pem() const { return chain_pem_.back(); }

 private:
  X509Ptr cert_;
  EvpPkeyPtr key_;
  std::vector<std::string> chain_pem_;
};

}  // namespace weft::tls
