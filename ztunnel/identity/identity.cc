#include "ztunnel/identity/identity.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::ztunnel {
namespace {

constexpr char kRootFile[] = "root-cert.pem";
constexpr char kChainFile[] = "cert-chain.pem";
constexpr char kKeyFile[] = "key.pem";
constexpr char kCipherSuites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};

// Identity components become directory names: refuse anything that could leave `dir`.
absl::Status CheckPathComponent(std::string_view what, std::string_view v) {
  if (v.empty() || v == "." || v == ".." || v.find('/') != std::string_view::npos ||
      v.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("identity ", Av(what), " \"", Av(v), "\" cannot be used as a directory name"));
  }
  return absl::OkStatus();
}

absl::Status CheckIdentity(const SpiffeId& id) {
  WEFT_RETURN_IF_ERROR(SpiffeId::Parse(id.ToString()).status());
  WEFT_RETURN_IF_ERROR(CheckPathComponent("namespace", id.ns));
  return CheckPathComponent("service account", id.service_account);
}

std::string IdentityDir(const std::string& dir, const SpiffeId& id) {
  return absl::StrCat(dir, "/", id.ns, "/", id.service_account);
}

std::string DevCertsHint(const std::string& dir, const SpiffeId& id) {
  return absl::StrCat("create it with `weftctl dev-certs --dir ", dir, " --trust-domain ",
                      id.trust_domain, " ", id.ns, "/", id.service_account,
                      "` or point ztunnel at the directory your CA writes");
}

// mtime alone misses two writes within one timestamp tick; size and inode (new on every atomic
// rename) make that practically impossible.
absl::StatusOr<std::string> FileStamp(const std::string& path, int64_t* mtime_ns) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", path));
  int64_t m = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  *mtime_ns = std::max(*mtime_ns, m);
  return absl::StrCat(m, ":", st.st_size, ":", st.st_ino, ";");
}

absl::StatusOr<std::shared_ptr<const CertBundle>> LoadBundle(const std::string& dir,
                                                             const SpiffeId& id) {
  const std::string root_path = absl::StrCat(dir, "/", kRootFile);
  const std::string idir = IdentityDir(dir, id);
  const std::string chain_path = absl::StrCat(idir, "/", kChainFile);
  const std::string key_path = absl::StrCat(idir, "/", kKeyFile);

  auto bundle = std::make_shared<CertBundle>();
  bundle->identity = id;

  WEFT_ASSIGN_OR_RETURN(std::string root_pem, tls::ReadFile(root_path));
  auto roots = tls::CertsFromPem(root_pem);
  if (!roots.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(root_path, ": ", roots.status().message(),
                                                   "; it must hold the mesh root CA "
                                                   "certificate(s) in PEM"));
  }
  bundle->roots = std::move(*roots);

  WEFT_ASSIGN_OR_RETURN(std::string chain_pem, tls::ReadFile(chain_path));
  auto chain = tls::CertsFromPem(chain_pem);
  if (!chain.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        chain_path, ": ", chain.status().message(),
        "; it must hold the workload certificate in PEM, followed by any intermediates"));
  }
  WEFT_ASSIGN_OR_RETURN(std::string key_pem, tls::ReadFile(key_path));
  auto key = tls::KeyFromPem(key_pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, ": ", key.status().message(),
                     "; it must hold the workload's private key in PEM"));
  }
  bundle->key = std::move(*key);
  bundle->leaf = std::move(chain->front());
  for (size_t i = 1; i < chain->size(); ++i) {
    X509* c = (*chain)[i].get();
    bool is_root = false;
    for (const auto& r : bundle->roots) is_root |= X509_cmp(c, r.get()) == 0;
    // Some CAs append the root to the chain; it is a trust anchor, not something to send.
    if (!is_root) bundle->intermediates.push_back(std::move((*chain)[i]));
  }

  if (X509_check_private_key(bundle->leaf.get(), bundle->key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, " does not match the first certificate in ", chain_path,
                     "; the two files must come from the same issuance (rewrite both)"));
  }
  auto leaf_id = tls::CertSpiffeId(bundle->leaf.get());
  if (!leaf_id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(chain_path, ": ", leaf_id.status().message()));
  }
  if (*leaf_id != id) {
    return absl::InvalidArgumentError(absl::StrCat(
        chain_path, " is issued to ", leaf_id->ToString(), " but this directory serves ",
        id.ToString(), "; the files are in the wrong directory or for another trust domain"));
  }
  auto verified = tls::VerifyChain(bundle->leaf.get(), bundle->intermediates, bundle->roots,
                                   /*check_time=*/false);
  if (!verified.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(chain_path, " does not chain to a root in ", root_path, ": ",
                     verified.message(), "; the certificate was issued by a CA that ", kRootFile,
                     " does not hold, or an intermediate is missing from the chain file"));
  }
  bundle->not_after = tls::CertValidity(bundle->leaf.get()).not_after;
  if (bundle->not_after < std::chrono::system_clock::now()) {
    LOG_WARN("identity", "workload certificate has expired; peers will reject it",
             {{"identity", id.ToString()}, {"file", chain_path}});
  }
  return std::shared_ptr<const CertBundle>(std::move(bundle));
}

int AlpnSelectH2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                 unsigned int inlen, void*) {
  // Walk the client's length-prefixed list; h2 is the only protocol HBONE speaks.
  for (unsigned int i = 0; i < inlen;) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// The trust domains a context accepts for peers: the local identity's and its aliases. Kept in
// the SSL_CTX's ex_data and freed with the context (connections may outlive the cache entry).
struct TrustDomains {
  std::vector<std::string> accepted;
};
void FreeTrustDomains(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<TrustDomains*>(ptr);
}
int TrustDomainsIndex() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeTrustDomains);
  return idx;
}

// Chain verification callback: after OpenSSL verified the chain, the leaf's SPIFFE ID must be in
// an accepted trust domain (a root shared with another mesh must not let its workloads in).
// A leaf without a usable SPIFFE ID passes here; PeerIdentity refuses it (kNoSpiffeId).
int VerifyTrustDomain(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok != 1 || X509_STORE_CTX_get_error_depth(store) != 0) return preverify_ok;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr) return preverify_ok;
  auto* tds =
      static_cast<TrustDomains*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), TrustDomainsIndex()));
  if (tds == nullptr) return preverify_ok;
  auto id = tls::CertSpiffeId(X509_STORE_CTX_get_current_cert(store));
  if (!id.ok()) return preverify_ok;
  for (const auto& td : tds->accepted)
    if (td == id->trust_domain) return 1;
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

TlsFailure FromVerifyResult(long v) {
  switch (v) {
    case X509_V_ERR_APPLICATION_VERIFICATION:  // only VerifyTrustDomain sets it
      return TlsFailure::kTrustDomainMismatch;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return TlsFailure::kExpired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return TlsFailure::kNotYetValid;
    default:
      // Unknown issuer, self-signed, bad signature, untrusted, invalid CA/purpose, ...: all
      // mean the chain is not one the mesh roots vouch for.
      return TlsFailure::kUnknownCa;
  }
}

std::optional<TlsFailure> FromSslReason(int reason) {
  switch (reason) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_NO_CERTIFICATE:
      return TlsFailure::kNoClientCert;
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
      return TlsFailure::kUnknownCa;
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      return TlsFailure::kExpired;
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
      return TlsFailure::kNoAlpn;
    default:
      return std::nullopt;
  }
}

void SetFailure(TlsFailure* out, TlsFailure f) {
  if (out != nullptr) *out = f;
}

}  // namespace

FileCertificateProvider::FileCertificateProvider(std::string dir) : dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
}

absl::StatusOr<std::shared_ptr<const CertBundle>> FileCertificateProvider::Get(const SpiffeId& id) {
  WEFT_RETURN_IF_ERROR(CheckIdentity(id));
  const std::string key = id.ToString();
  const std::string idir = IdentityDir(dir_, id);
  const std::string paths[] = {absl::StrCat(dir_, "/", kRootFile),
                               absl::StrCat(idir, "/", kChainFile),
                               absl::StrCat(idir, "/", kKeyFile)};
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  const Entry* prev = it == cache_.end() ? nullptr : &it->second;

  // Stat before reading: a change that lands after the stat triggers another reload next time.
  std::string stamp;
  int64_t mtime_ns = 0;
  absl::Status status;
  for (const auto& p : paths) {
    auto s = FileStamp(p, &mtime_ns);
    if (!s.ok()) {
      if (p == paths[0]) {
        status =
            absl::NotFoundError(absl::StrCat("mesh root certificate file ", p, " is missing (",
                                             s.status().message(), "); ", DevCertsHint(dir_, id)));
      } else {
        status =
            absl::NotFoundError(absl::StrCat("certificate file ", p, " for ", key, " is missing (",
                                             s.status().message(), "); ", DevCertsHint(dir_, id)));
      }
      break;
    }
    stamp += *s;
  }
  if (status.ok() && prev != nullptr && prev->stamp == stamp) return prev->bundle;

  if (status.ok()) {
    auto loaded = LoadBundle(dir_, id);
    if (loaded.ok()) {
      Entry& e = cache_[key];
      e.bundle = *loaded;
      e.mtime_ns = mtime_ns;
      e.stamp = std::move(stamp);
      return e.bundle;
    }
    status = loaded.status();
  }
  if (prev != nullptr && prev->bundle != nullptr) {
    // A rotation written file by file can be caught half-done; keep serving the last good
    // bundle (the failure behaviour the data plane promises) and re-check on the next change.
    LOG_WARN("identity", "certificate files changed but do not load; serving the previous ones",
             {{"identity", key}, {"error", std::string(status.message())}});
    Entry& e = it->second;
    if (!stamp.empty() && status.code() != absl::StatusCode::kNotFound) e.stamp = stamp;
    return e.bundle;
  }
  return status;
}

absl::StatusOr<std::shared_ptr<CertBundle>> MakeCertBundle(
    const tls::CertificateAuthority& ca, const SpiffeId& id, std::chrono::seconds ttl,
    std::optional<std::chrono::system_clock::time_point> not_before) {
  auto bundle = std::make_shared<CertBundle>();
  bundle->identity = id;
  WEFT_ASSIGN_OR_RETURN(bundle->key, tls::GenerateKey());
  WEFT_ASSIGN_OR_RETURN(tls::X509ReqPtr csr, tls::MakeCsr(bundle->key.get(), id));
  WEFT_ASSIGN_OR_RETURN(bundle->leaf, ca.Sign(csr.get(), id, ttl, not_before));
  const auto& chain = ca.chain_pem();
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(tls::X509Ptr c, tls::CertFromPem(chain[i]));
    bundle->intermediates.push_back(std::move(c));
  }
  WEFT_ASSIGN_OR_RETURN(tls::X509Ptr root, tls::CertFromPem(ca.root_pem()));
  bundle->roots.push_back(std::move(root));
  bundle->not_after = tls::CertValidity(bundle->leaf.get()).not_after;
  return bundle;
}

void StaticCertificateProvider::Set(std::shared_ptr<const CertBundle> bundle) {
  std::lock_guard<std::mutex> lock(mu_);
  bundles_[bundle->identity.ToString()] = std::move(bundle);
}

absl::StatusOr<std::shared_ptr<const CertBundle>> StaticCertificateProvider::Get(
    const SpiffeId& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = bundles_.find(id.ToString());
  if (it == bundles_.end())
    return absl::NotFoundError(absl::StrCat("no certificate configured for ", id.ToString()));
  return it->second;
}

absl::Status WriteCertFiles(const std::string& dir, const tls::CertificateAuthority& ca,
                            const SpiffeId& id, std::chrono::seconds ttl) {
  WEFT_RETURN_IF_ERROR(CheckIdentity(id));
  WEFT_ASSIGN_OR_RETURN(auto bundle, MakeCertBundle(ca, id, ttl));
  std::string chain;
  WEFT_ASSIGN_OR_RETURN(std::string leaf_pem, tls::CertToPem(bundle->leaf.get()));
  chain += leaf_pem;
  for (const auto& c : bundle->intermediates) {
    WEFT_ASSIGN_OR_RETURN(std::string pem, tls::CertToPem(c.get()));
    chain += pem;
  }
  WEFT_ASSIGN_OR_RETURN(std::string key_pem, tls::KeyToPem(bundle->key.get()));
  const std::string idir = IdentityDir(dir, id);
  std::error_code ec;
  std::filesystem::create_directories(idir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create directory ", idir, ": ", ec.message()));
  }
  // Key first: a reader that sees the new chain always finds its key already in place.
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(absl::StrCat(idir, "/", kKeyFile), key_pem, 0600));
  return tls::WriteFileAtomic(absl::StrCat(idir, "/", kChainFile), chain, 0644);
}

absl::Status WriteRootFile(const std::string& dir, const tls::CertificateAuthority& ca) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create directory ", dir, ": ", ec.message()));
  }
  return tls::WriteFileAtomic(absl::StrCat(dir, "/", kRootFile), ca.root_pem(), 0644);
}

std::string_view TlsFailureName(TlsFailure f) {
  switch (f) {
    case TlsFailure::kNone:
      return "none";
    case TlsFailure::kUnknownCa:
      return "unknown_ca";
    case TlsFailure::kExpired:
      return "expired";
    case TlsFailure::kNotYetValid:
      return "not_yet_valid";
    case TlsFailure::kNoClientCert:
      return "no_client_cert";
    case TlsFailure::kNoSpiffeId:
      return "no_spiffe_id";
    case TlsFailure::kIdentityMismatch:
      return "identity_mismatch";
    case TlsFailure::kTrustDomainMismatch:
      return "trust_domain_mismatch";
    case TlsFailure::kNoAlpn:
      return "no_alpn";
    case TlsFailure::kProtocol:
      return "protocol";
  }
  return "protocol";
}

TlsFailure ClassifyHandshakeFailure(SSL* ssl) {
  return ClassifyHandshakeFailure(ssl, nullptr);
}

TlsFailure ClassifyHandshakeFailure(SSL* ssl, std::string* detail) {
  std::optional<TlsFailure> result;
  std::string text;
  if (ssl != nullptr) {
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
      result = FromVerifyResult(v);
      text = absl::StrCat("peer certificate: ", v == X509_V_ERR_APPLICATION_VERIFICATION
                                                    ? "SPIFFE ID is in another trust domain "
                                                      "(neither ours nor a configured alias)"
                                                    : X509_verify_cert_error_string(v));
    }
  }
  while (unsigned long e = ERR_get_error()) {
    if (detail != nullptr) {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof(buf));
      absl::StrAppend(&text, text.empty() ? "" : "; ", buf);
    }
    if (result || ERR_GET_LIB(e) != ERR_LIB_SSL) continue;
    result = FromSslReason(ERR_GET_REASON(e));
  }
  ERR_clear_error();
  if (detail != nullptr) *detail = text.empty() ? "connection closed or not TLS" : text;
  return result.value_or(TlsFailure::kProtocol);
}

absl::StatusOr<SpiffeId> PeerIdentity(SSL* ssl, TlsFailure* failure) {
  if (ssl == nullptr) {
    SetFailure(failure, TlsFailure::kProtocol);
    return absl::InvalidArgumentError("PeerIdentity: null SSL");
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != "h2") {
    SetFailure(failure, TlsFailure::kNoAlpn);
    return absl::FailedPreconditionError(
        absl::StrCat("peer did not negotiate ALPN h2 (got \"",
                     std::string(reinterpret_cast<const char*>(alpn), alpn_len),
                     "\"); HBONE port 15008 speaks HTTP/2 CONNECT over TLS only"));
  }
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) {
    SetFailure(failure, TlsFailure::kNoClientCert);
    return absl::UnauthenticatedError("peer presented no certificate");
  }
  auto id = tls::CertSpiffeId(cert);
  if (!id.ok()) {
    SetFailure(failure, TlsFailure::kNoSpiffeId);
    return absl::UnauthenticatedError(
        absl::StrCat("peer certificate has no usable SPIFFE ID: ", id.status().message()));
  }
  SetFailure(failure, TlsFailure::kNone);
  return id;
}

absl::Status VerifyPeerIdentity(SSL* ssl, const SpiffeId& expected, TlsFailure* failure) {
  WEFT_ASSIGN_OR_RETURN(SpiffeId got, PeerIdentity(ssl, failure));
  if (got != expected) {
    SetFailure(failure, TlsFailure::kIdentityMismatch);
    return absl::PermissionDeniedError(
        absl::StrCat("server identity is ", got.ToString(),
                     " but the destination workload runs as ", expected.ToString(),
                     "; the address may have been reused by another pod (stale "
                     "workload state) or traffic was intercepted"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<SSL_CTX>> TlsContextCache::BuildContext(
    const CertBundle& bundle, bool server, const std::vector<std::string>& trust_domain_aliases) {
  if (!bundle.leaf || !bundle.key)
    return absl::InvalidArgumentError("certificate bundle has no leaf certificate or key");
  if (bundle.roots.empty())
    return absl::InvalidArgumentError("certificate bundle has no trust anchors (roots)");
  ERR_clear_error();
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()), SSL_CTX_free);
  if (!ctx) return tls::OpenSslError("SSL_CTX_new");
  SSL_CTX* c = ctx.get();
  if (!SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
      !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(c, kCipherSuites)) {
    return tls::OpenSslError("configuring TLS 1.3");
  }
  // HBONE connections are pooled and long-lived: resumption buys nothing and tickets would
  // outlive certificate rotation. NO_TICKET alone still issues stateful tickets in TLS 1.3.
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  // RELEASE_BUFFERS keeps idle tunnels from pinning ~34 KiB of buffers each.
  SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);

  if (SSL_CTX_use_certificate(c, bundle.leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(c, bundle.key.get()) != 1) {
    return tls::OpenSslError(
        absl::StrCat("loading certificate/key for ", bundle.identity.ToString()));
  }
  for (const auto& inter : bundle.intermediates) {
    if (SSL_CTX_add1_chain_cert(c, inter.get()) != 1)
      return tls::OpenSslError("adding intermediate certificate");
  }
  if (SSL_CTX_check_private_key(c) != 1)
    return tls::OpenSslError("private key does not match certificate");
  X509_STORE* store = SSL_CTX_get_cert_store(c);
  for (const auto& root : bundle.roots) {
    if (X509_STORE_add_cert(store, root.get()) != 1)
      return tls::OpenSslError("adding mesh root certificate");
  }

  auto* tds = new TrustDomains{{bundle.identity.trust_domain}};
  tds->accepted.insert(tds->accepted.end(), trust_domain_aliases.begin(),
                       trust_domain_aliases.end());
  if (SSL_CTX_set_ex_data(c, TrustDomainsIndex(), tds) != 1) {
    delete tds;
    return tls::OpenSslError("storing accepted trust domains");
  }
  if (server) {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, VerifyTrustDomain);
    SSL_CTX_set_alpn_select_cb(c, AlpnSelectH2, nullptr);
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, VerifyTrustDomain);
    // Unlike most OpenSSL calls, 0 means success here.
    if (SSL_CTX_set_alpn_protos(c, kAlpnH2, sizeof(kAlpnH2)) != 0)
      return tls::OpenSslError("setting ALPN");
  }
  return ctx;
}

absl::StatusOr<std::shared_ptr<SSL_CTX>> TlsContextCache::ServerContext(const SpiffeId& local) {
  return Get(local, true);
}

absl::StatusOr<std::shared_ptr<SSL_CTX>> TlsContextCache::ClientContext(const SpiffeId& local) {
  return Get(local, false);
}

absl::StatusOr<std::shared_ptr<SSL_CTX>> TlsContextCache::Get(const SpiffeId& local, bool server) {
  // The provider has its own lock and may block on I/O; don't hold ours across it.
  WEFT_ASSIGN_OR_RETURN(std::shared_ptr<const CertBundle> bundle, provider_->Get(local));
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = cache_[{local.ToString(), server}];
  if (e.ctx && e.bundle == bundle) return e.ctx;
  auto ctx = BuildContext(*bundle, server, aliases_);
  if (!ctx.ok()) {
    if (e.ctx) {
      LOG_WARN("identity", "cannot build TLS context for rotated certificate; keeping old one",
               {{"identity", local.ToString()}, {"error", std::string(ctx.status().message())}});
      return e.ctx;
    }
    return ctx.status();
  }
  e.bundle = std::move(bundle);
  e.ctx = *ctx;
  return e.ctx;
}

}  // namespace weft::ztunnel
