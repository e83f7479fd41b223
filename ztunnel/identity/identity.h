// Workload certificates and TLS contexts for HBONE.
//
// CertificateProvider is the seam the CA client (issue: weftd) will implement; this issue ships
// FileCertificateProvider. TlsContextCache builds SSL_CTXs per local identity:
//  - TLS 1.3 only, ALPN "h2", ECDHE, session tickets off (short-lived tunnels are pooled);
//  - server: requires a client certificate, verifies its chain against the mesh roots;
//  - client: verifies the server chain against the mesh roots; the SPIFFE SAN is checked after
//    the handshake with VerifyPeerIdentity (the expected identity is per connection).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "common/spiffe.h"
#include "common/tls.h"

namespace weft::ztunnel {

struct CertBundle {
  SpiffeId identity;
  tls::EvpPkeyPtr key;
  tls::X509Ptr leaf;
  std::vector<tls::X509Ptr> intermediates;  // leaf's issuers, without the root
  std::vector<tls::X509Ptr> roots;          // trust anchors of the mesh
  std::chrono::system_clock::time_point not_after;
};

class CertificateProvider {
 public:
  virtual ~CertificateProvider() = default;
  // Thread-safe. May block briefly (file read / CSR round trip) on first use per identity.
  virtual absl::StatusOr<std::shared_ptr<const CertBundle>> Get(const SpiffeId& id) = 0;
};

// Reads <dir>/root-cert.pem (mesh roots, 1+ certs) and, per identity,
// <dir>/<namespace>/<serviceaccount>/cert-chain.pem (leaf first, then intermediates) and
// key.pem. Re-reads files whose mtime changed. The leaf's SPIFFE SAN must equal the identity.
class FileCertificateProvider : public CertificateProvider {
 public:
  explicit FileCertificateProvider(std::string dir);
  absl::StatusOr<std::shared_ptr<const CertBundle>> Get(const SpiffeId& id) override;

 private:
  std::string dir_;
  std::mutex mu_;
  struct Entry {
    std::shared_ptr<const CertBundle> bundle;
    int64_t mtime_ns = 0;
  };
  std::map<std::string, Entry> cache_;
};

// Writes the layout FileCertificateProvider reads: used by weftctl dev-certs and tests.
absl::Status WriteCertFiles(const std::string& dir, const tls::CertificateAuthority& ca,
                            const SpiffeId& id, std::chrono::seconds ttl);
absl::Status WriteRootFile(const std::string& dir, const tls::CertificateAuthority& ca);

// Handshake failure reasons, used as the `reason` label of weft_hbone_handshake_failures_total.
enum class TlsFailure {
  kNone,
  kUnknownCa,         // chain does not verify against the mesh roots
  kExpired,           // certificate expired
  kNotYetValid,       // certificate not yet valid
  kNoClientCert,      // client sent no certificate
  kNoSpiffeId,        // no (or malformed) spiffe:// URI SAN
  kIdentityMismatch,  // server's SPIFFE ID is not the destination workload's
  kNoAlpn,            // peer did not negotiate h2
  kProtocol,          // not TLS / malformed / wrong version / other handshake error
};
std::string_view TlsFailureName(TlsFailure f);  // "unknown_ca", "expired", ...

// Classifies a failed handshake on `ssl` (after SSL_do_handshake returned SSL_ERROR_SSL),
// using SSL_get_verify_result and the error queue. Clears the error queue.
TlsFailure ClassifyHandshakeFailure(SSL* ssl);

// After a successful handshake: the peer's SPIFFE ID (errors map to kNoSpiffeId) and a
// check that the negotiated ALPN is h2.
absl::StatusOr<SpiffeId> PeerIdentity(SSL* ssl, TlsFailure* failure);
// Client side: PeerIdentity(ssl) must equal `expected`, else kIdentityMismatch.
absl::Status VerifyPeerIdentity(SSL* ssl, const SpiffeId& expected, TlsFailure* failure);

class TlsContextCache {
 public:
  explicit TlsContextCache(CertificateProvider* provider) : provider_(provider) {}
  // Thread-safe. Contexts are rebuilt when the provider returns a different bundle (rotation).
  absl::StatusOr<std::shared_ptr<SSL_CTX>> ServerContext(const SpiffeId& local);
  absl::StatusOr<std::shared_ptr<SSL_CTX>> ClientContext(const SpiffeId& local);

 private:
  absl::StatusOr<std::shared_ptr<SSL_CTX>> Get(const SpiffeId& local, bool server);
  CertificateProvider* provider_;
  std::mutex mu_;
  struct Entry {
    std::shared_ptr<const CertBundle> bundle;
    std::shared_ptr<SSL_CTX> ctx;
  };
  std::map<std::pair<std::string, bool>, Entry> cache_;
};

}  // namespace weft::ztunnel
