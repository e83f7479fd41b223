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
#include <optional>
#include <string>
#include <vector>

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
// Get() checks that the key matches the leaf and that the chain verifies against the roots
// (validity periods are not checked here: an expired cert is still served, so the failure shows
// up at the handshake with reason "expired" at the peer, and in the log). Errors name the file
// and say what to do. If files that loaded before turn missing/bad (e.g. a rotation caught
// half-written), the last good bundle keeps being served (with a warning log) until the files
// load again; an identity that never loaded returns the error.
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
    std::string stamp;  // (mtime, size, inode) of all three files: catches same-tick rewrites
  };
  std::map<std::string, Entry> cache_;
};

// Builds a bundle in memory: new P-256 key, CSR, leaf signed by `ca` for `id`, intermediates
// from ca.chain_pem() (without the root), roots = {ca root}. For tests and tools.
absl::StatusOr<std::shared_ptr<CertBundle>> MakeCertBundle(
    const tls::CertificateAuthority& ca, const SpiffeId& id, std::chrono::seconds ttl,
    std::optional<std::chrono::system_clock::time_point> not_before = std::nullopt);

// A provider holding bundles set in memory (tests, and embedding callers that obtain certs
// some other way). Thread-safe. Get() returns NotFound for identities never Set().
class StaticCertificateProvider : public CertificateProvider {
 public:
  void Set(std::shared_ptr<const CertBundle> bundle);
  absl::StatusOr<std::shared_ptr<const CertBundle>> Get(const SpiffeId& id) override;

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const CertBundle>> bundles_;
};

// Writes the layout FileCertificateProvider reads: used by weftctl dev-certs and tests.
absl::Status WriteCertFiles(const std::string& dir, const tls::CertificateAuthority& ca,
                            const SpiffeId& id, std::chrono::seconds ttl);
absl::Status WriteRootFile(const std::string& dir, const tls::CertificateAuthority& ca);

// Handshake failure reasons, used as the `reason` label of weft_hbone_handshake_failures_total.
enum class TlsFailure {
  kNone,
  kUnknownCa,            // chain does not verify against the mesh roots
  kExpired,              // certificate expired
  kNotYetValid,          // certificate not yet valid
  kNoClientCert,         // client sent no certificate
  kNoSpiffeId,           // no (or malformed) spiffe:// URI SAN
  kIdentityMismatch,     // server's SPIFFE ID is not the destination workload's
  kTrustDomainMismatch,  // peer's SPIFFE ID is in neither our trust domain nor an alias
  kNoAlpn,               // peer did not negotiate h2
  kProtocol,             // not TLS / malformed / wrong version / other handshake error
};
std::string_view TlsFailureName(TlsFailure f);  // "unknown_ca", "expired", ...

// Classifies a failed handshake on `ssl` (after SSL_do_handshake returned SSL_ERROR_SSL),
// using SSL_get_verify_result and the error queue. Clears the error queue.
TlsFailure ClassifyHandshakeFailure(SSL* ssl);
// Same, and sets `*detail` (if non-null) to a human-readable cause for logs: the chain
// verification error and/or OpenSSL's error queue text, e.g.
// "peer certificate: certificate has expired; ... sslv3 alert certificate expired".
TlsFailure ClassifyHandshakeFailure(SSL* ssl, std::string* detail);

// Classification details:
//  - local chain verification (SSL_get_verify_result): expired -> kExpired, not yet valid ->
//    kNotYetValid, any other verify error (unknown issuer, self-signed, bad signature, ...) ->
//    kUnknownCa;
//  - TLS alerts received from the peer map the same way (unknown_ca / bad_certificate /
//    certificate_unknown -> kUnknownCa, certificate_expired -> kExpired,
//    certificate_required -> kNoClientCert, no_application_protocol -> kNoAlpn). In TLS 1.3
//    the client finishes its handshake before the server checks the client certificate, so a
//    client sees the server's alert on its first SSL_read; classify that failure with this
//    function too;
//  - peer sent no certificate while one is required -> kNoClientCert;
//  - a client offering ALPN without "h2" fails the handshake with kNoAlpn on both sides; a
//    client offering no ALPN at all completes the handshake and PeerIdentity reports kNoAlpn;
//  - anything else (not TLS, wrong version, bad record, ...) -> kProtocol.

// After a successful handshake: the peer's SPIFFE ID (errors map to kNoSpiffeId) and a
// check that the negotiated ALPN is h2. `failure` may be null.
absl::StatusOr<SpiffeId> PeerIdentity(SSL* ssl, TlsFailure* failure);
// Client side: PeerIdentity(ssl) must equal `expected`, else kIdentityMismatch.
absl::Status VerifyPeerIdentity(SSL* ssl, const SpiffeId& expected, TlsFailure* failure);

// SSL_CTX settings: TLS 1.3 only; ciphersuites AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305;
// ALPN h2 (the server aborts with no_application_protocol if the client offers ALPN without h2);
// leaf + intermediates + key from the bundle; verify store = bundle roots; SSL_VERIFY_PEER
// (server adds FAIL_IF_NO_PEER_CERT); no session tickets or session cache; modes
// ENABLE_PARTIAL_WRITE | ACCEPT_MOVING_WRITE_BUFFER | RELEASE_BUFFERS (idle connections hold
// no read/write buffers). The caller creates SSL objects and drives I/O.
class TlsContextCache {
 public:
  // `trust_domain_aliases`: trust domains accepted for peers besides the local identity's own
  // (Istio's trustDomainAliases).
  explicit TlsContextCache(CertificateProvider* provider,
                           std::vector<std::string> trust_domain_aliases = {})
      : provider_(provider), aliases_(std::move(trust_domain_aliases)) {}
  // Thread-safe. Contexts are rebuilt when the provider returns a different bundle (rotation).
  absl::StatusOr<std::shared_ptr<SSL_CTX>> ServerContext(const SpiffeId& local);
  absl::StatusOr<std::shared_ptr<SSL_CTX>> ClientContext(const SpiffeId& local);
  // Builds a context from a bundle without caching (the cache uses this).
  static absl::StatusOr<std::shared_ptr<SSL_CTX>> BuildContext(
      const CertBundle& bundle, bool server,
      const std::vector<std::string>& trust_domain_aliases = {});

 private:
  absl::StatusOr<std::shared_ptr<SSL_CTX>> Get(const SpiffeId& local, bool server);
  CertificateProvider* provider_;
  std::vector<std::string> aliases_;
  std::mutex mu_;
  struct Entry {
    std::shared_ptr<const CertBundle> bundle;
    std::shared_ptr<SSL_CTX> ctx;
  };
  std::map<std::pair<std::string, bool>, Entry> cache_;
};

}  // namespace weft::ztunnel
