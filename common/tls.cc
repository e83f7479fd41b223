#include "common/tls.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace weft::tls {
namespace {

using std::chrono::system_clock;

struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;
struct ExtStackDeleter {
  void operator()(STACK_OF(X509_EXTENSION) * p) const {
    sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free);
  }
};
using ExtStackPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), ExtStackDeleter>;
struct ExtDeleter {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
using ExtPtr = std::unique_ptr<X509_EXTENSION, ExtDeleter>;
struct X509StackDeleter {
  void operator()(STACK_OF(X509) * p) const { sk_X509_free(p); }  // does not own the certs
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;

// PEM inputs come from files and the network: never trust their size to fit an int.
absl::StatusOr<BioPtr> MemBio(std::string_view data, std::string_view what) {
  if (data.size() > static_cast<size_t>(INT_MAX))
    return absl::InvalidArgumentError(absl::StrCat(Av(what), ": input too large"));
  BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) return OpenSslError(absl::StrCat("BIO_new_mem_buf for ", Av(what)));
  return bio;
}

absl::StatusOr<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  if (n < 0) return OpenSslError("BIO_get_mem_data");
  return std::string(data, static_cast<size_t>(n));
}

// Tells an empty/garbage PEM input apart from a corrupted PEM block for the error text.
absl::Status PemError(std::string_view what, std::string_view pem) {
  std::string queue = OpenSslErrors();
  if (pem.find("-----BEGIN") == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("no PEM ", Av(what), " found (expected a \"-----BEGIN ...-----\" block)"));
  }
  return absl::InvalidArgumentError(absl::StrCat("malformed PEM ", Av(what), ": ", queue));
}

GENERAL_NAME* MakeName(int type, const std::string& value) {
  ASN1_IA5STRING* s = ASN1_IA5STRING_new();
  if (s == nullptr) return nullptr;
  if (!ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()))) {
    ASN1_IA5STRING_free(s);
    return nullptr;
  }
  GENERAL_NAME* gn = GENERAL_NAME_new();
  if (gn == nullptr) {
    ASN1_IA5STRING_free(s);
    return nullptr;
  }
  GENERAL_NAME_set0_value(gn, type, s);
  return gn;
}

// Built from GENERAL_NAMEs rather than a config string so URIs containing ',' or ':' cannot
// inject extra names.
absl::StatusOr<ExtPtr> MakeSanExtension(const std::vector<std::string>& uris,
                                        const std::vector<std::string>& dns, bool critical) {
  GeneralNamesPtr names(GENERAL_NAMES_new());
  if (!names) return OpenSslError("GENERAL_NAMES_new");
  auto add = [&](int type, const std::string& v) -> absl::Status {
    GENERAL_NAME* gn = MakeName(type, v);
    if (gn == nullptr || !sk_GENERAL_NAME_push(names.get(), gn)) {
      GENERAL_NAME_free(gn);
      return OpenSslError("building subjectAltName");
    }
    return absl::OkStatus();
  };
  for (const auto& u : uris) WEFT_RETURN_IF_ERROR(add(GEN_URI, u));
  for (const auto& d : dns) WEFT_RETURN_IF_ERROR(add(GEN_DNS, d));
  ExtPtr ext(X509V3_EXT_i2d(NID_subject_alt_name, critical ? 1 : 0, names.get()));
  if (!ext) return OpenSslError("encoding subjectAltName");
  return ext;
}

absl::Status AddExt(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext) return OpenSslError(absl::StrCat("creating extension ", OBJ_nid2sn(nid)));
  if (!X509_add_ext(cert, ext.get(), -1))
    return OpenSslError(absl::StrCat("adding extension ", OBJ_nid2sn(nid)));
  return absl::OkStatus();
}

absl::Status SetRandomSerial(X509* cert) {
  unsigned char buf[16];
  if (RAND_bytes(buf, sizeof(buf)) != 1) return OpenSslError("RAND_bytes for serial");
  buf[0] &= 0x7f;  // DER INTEGER must be positive
  buf[0] |= 0x01;  // and non-zero with a stable length
  BIGNUM* bn = BN_bin2bn(buf, sizeof(buf), nullptr);
  if (bn == nullptr) return OpenSslError("BN_bin2bn");
  ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, nullptr);
  BN_free(bn);
  if (serial == nullptr) return OpenSslError("BN_to_ASN1_INTEGER");
  int ok = X509_set_serialNumber(cert, serial);
  ASN1_INTEGER_free(serial);
  if (!ok) return OpenSslError("X509_set_serialNumber");
  return absl::OkStatus();
}

absl::Status SetValidity(X509* cert, system_clock::time_point nb, system_clock::time_point na) {
  if (!ASN1_TIME_set(X509_getm_notBefore(cert), system_clock::to_time_t(nb)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert), system_clock::to_time_t(na))) {
    return OpenSslError("setting certificate validity");
  }
  return absl::OkStatus();
}

absl::StatusOr<X509_NAME*> MakeCaName(std::string_view org, std::string_view cn) {
  X509_NAME* name = X509_NAME_new();
  if (name == nullptr) return OpenSslError("X509_NAME_new");
  std::string o(org), c(cn);
  if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(c.c_str()), -1, -1, 0)) {
    X509_NAME_free(name);
    return OpenSslError("building CA subject name");
  }
  return name;
}

// Builds and signs a CA certificate for `key`, issued by (issuer_cert, issuer_key), or
// self-signed when issuer_cert is null.
// `path_len`: basicConstraints pathLenConstraint (intermediates allowed below this CA).
absl::StatusOr<X509Ptr> MakeCaCert(EVP_PKEY* key, std::string_view org, std::string_view cn,
                                   std::chrono::seconds lifetime, X509* issuer_cert,
                                   EVP_PKEY* issuer_key, int path_len) {
  if (lifetime.count() <= 0) return absl::InvalidArgumentError("CA lifetime must be positive");
  if (path_len < 0) return absl::InvalidArgumentError("CA pathlen must be 0 or more");
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("X509_new");
  if (!X509_set_version(cert.get(), X509_VERSION_3)) return OpenSslError("X509_set_version");
  WEFT_RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  auto now = system_clock::now();
  WEFT_RETURN_IF_ERROR(SetValidity(cert.get(), now - std::chrono::minutes(1), now + lifetime));
  WEFT_ASSIGN_OR_RETURN(X509_NAME * name, MakeCaName(org, cn));
  int ok =
      X509_set_subject_name(cert.get(), name) &&
      X509_set_issuer_name(cert.get(), issuer_cert ? X509_get_subject_name(issuer_cert) : name);
  X509_NAME_free(name);
  if (!ok) return OpenSslError("setting CA names");
  if (!X509_set_pubkey(cert.get(), key)) return OpenSslError("X509_set_pubkey");

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert ? issuer_cert : cert.get(), cert.get(), nullptr, nullptr, 0);
  WEFT_RETURN_IF_ERROR(AddExt(cert.get(), &ctx, NID_basic_constraints,
                              absl::StrCat("critical,CA:TRUE,pathlen:", path_len).c_str()));
  WEFT_RETURN_IF_ERROR(
      AddExt(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"));
  WEFT_RETURN_IF_ERROR(AddExt(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  WEFT_RETURN_IF_ERROR(AddExt(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  if (!X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()))
    return OpenSslError("signing CA certificate");
  return cert;
}

bool SelfSigned(X509* cert) {
  return X509_check_issued(cert, cert) == X509_V_OK;
}

absl::StatusOr<SpiffeId> SpiffeIdFromNames(GENERAL_NAMES* names, std::string_view what) {
  int n = sk_GENERAL_NAME_num(names);
  std::vector<std::string> uris;
  for (int i = 0; i < n; ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                      static_cast<size_t>(ASN1_STRING_length(s)));
  }
  if (uris.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(what),
                     " has a subjectAltName but no URI SAN; a SPIFFE workload certificate needs "
                     "exactly one spiffe:// URI SAN"));
  }
  if (uris.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(what), " has ", uris.size(), " URI SANs (", absl::StrJoin(uris, ", "),
                     "); a SPIFFE workload certificate must have exactly one"));
  }
  auto id = SpiffeId::Parse(uris[0]);
  if (!id.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(what), " URI SAN is not a SPIFFE ID: ", id.status().message()));
  }
  return id;
}

system_clock::time_point AsnTimeToTimePoint(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || !ASN1_TIME_to_tm(t, &tm)) return system_clock::time_point{};
  return system_clock::from_time_t(timegm(&tm));
}

}  // namespace

std::string OpenSslErrors() {
  std::vector<std::string> parts;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    std::string part(buf);
    if ((flags & ERR_TXT_STRING) && data != nullptr && *data != '\0')
      absl::StrAppend(&part, " (", data, ")");
    parts.push_back(std::move(part));
  }
  return absl::StrJoin(parts, "; ");
}

absl::Status OpenSslError(std::string_view what) {
  std::string q = OpenSslErrors();
  return absl::InternalError(
      absl::StrCat(Av(what), ": ", q.empty() ? std::string("unknown OpenSSL error") : q));
}

absl::StatusOr<EvpPkeyPtr> GenerateKey() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("generating P-256 key");
  return key;
}

absl::StatusOr<std::string> KeyToPem(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("KeyToPem: null key");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
    return OpenSslError("writing private key PEM");
  return BioContents(bio.get());
}

absl::StatusOr<EvpPkeyPtr> KeyFromPem(std::string_view pem) {
  ERR_clear_error();
  WEFT_ASSIGN_OR_RETURN(BioPtr bio, MemBio(pem, "private key"));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return PemError("private key", pem);
  return key;
}

absl::StatusOr<std::string> CertToPem(X509* cert) {
  if (cert == nullptr) return absl::InvalidArgumentError("CertToPem: null certificate");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_X509(bio.get(), cert)) return OpenSslError("writing certificate PEM");
  return BioContents(bio.get());
}

absl::StatusOr<X509Ptr> CertFromPem(std::string_view pem) {
  WEFT_ASSIGN_OR_RETURN(auto certs, CertsFromPem(pem));
  return std::move(certs.front());
}

absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(std::string_view pem) {
  ERR_clear_error();
  WEFT_ASSIGN_OR_RETURN(BioPtr bio, MemBio(pem, "certificate"));
  std::vector<X509Ptr> out;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    out.push_back(std::move(cert));
  }
  // The loop always ends with an error; only "no more PEM blocks" after 1+ certs is success.
  unsigned long e = ERR_peek_last_error();
  if (!out.empty() && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
    return out;
  }
  if (out.empty()) return PemError("certificate", pem);
  return absl::InvalidArgumentError(absl::StrCat("malformed PEM certificate after ", out.size(),
                                                 " good one(s): ", OpenSslErrors()));
}

absl::StatusOr<X509ReqPtr> MakeCsr(EVP_PKEY* key, const SpiffeId& id) {
  if (key == nullptr) return absl::InvalidArgumentError("MakeCsr: null key");
  X509ReqPtr req(X509_REQ_new());
  if (!req) return OpenSslError("X509_REQ_new");
  if (!X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) || !X509_REQ_set_pubkey(req.get(), key))
    return OpenSslError("initialising CSR");
  WEFT_ASSIGN_OR_RETURN(ExtPtr san, MakeSanExtension({id.ToString()}, {}, true));
  ExtStackPtr exts(sk_X509_EXTENSION_new_null());
  if (!exts || !sk_X509_EXTENSION_push(exts.get(), san.get())) return OpenSslError("CSR exts");
  san.release();  // owned by exts now
  if (!X509_REQ_add_extensions(req.get(), exts.get())) return OpenSslError("adding CSR extensions");
  if (!X509_REQ_sign(req.get(), key, EVP_sha256())) return OpenSslError("signing CSR");
  return req;
}

absl::StatusOr<std::string> CsrToPem(X509_REQ* csr) {
  if (csr == nullptr) return absl::InvalidArgumentError("CsrToPem: null CSR");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_X509_REQ(bio.get(), csr)) return OpenSslError("writing CSR PEM");
  return BioContents(bio.get());
}

absl::StatusOr<X509ReqPtr> CsrFromPem(std::string_view pem) {
  ERR_clear_error();
  WEFT_ASSIGN_OR_RETURN(BioPtr bio, MemBio(pem, "CSR"));
  X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return PemError("certificate request (CSR)", pem);
  return req;
}

absl::StatusOr<SpiffeId> CsrSpiffeId(X509_REQ* csr) {
  if (csr == nullptr) return absl::InvalidArgumentError("CsrSpiffeId: null CSR");
  EVP_PKEY* pub = X509_REQ_get0_pubkey(csr);
  if (pub == nullptr || X509_REQ_verify(csr, pub) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR self-signature does not verify (corrupted or forged CSR): ", OpenSslErrors()));
  }
  ExtStackPtr exts(X509_REQ_get_extensions(csr));
  if (!exts) {
    ERR_clear_error();
    return absl::InvalidArgumentError("CSR has no extensions; it needs a spiffe:// URI SAN");
  }
  int crit = 0;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509V3_get_d2i(exts.get(), NID_subject_alt_name, &crit, nullptr)));
  if (!names) {
    ERR_clear_error();
    if (crit == -2)
      return absl::InvalidArgumentError("CSR has more than one subjectAltName extension");
    return absl::InvalidArgumentError("CSR has no subjectAltName; it needs a spiffe:// URI SAN");
  }
  return SpiffeIdFromNames(names.get(), "CSR");
}

absl::StatusOr<SpiffeId> CertSpiffeId(X509* cert) {
  if (cert == nullptr) return absl::InvalidArgumentError("CertSpiffeId: null certificate");
  int crit = 0;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, nullptr)));
  if (!names) {
    ERR_clear_error();
    if (crit == -2)
      return absl::InvalidArgumentError("certificate has more than one subjectAltName extension");
    if (crit >= 0) return absl::InvalidArgumentError("certificate subjectAltName is malformed");
    return absl::InvalidArgumentError(
        "certificate has no subjectAltName; a SPIFFE workload certificate needs exactly one "
        "spiffe:// URI SAN");
  }
  return SpiffeIdFromNames(names.get(), "certificate");
}

Validity CertValidity(X509* cert) {
  if (cert == nullptr) return {};
  return {AsnTimeToTimePoint(X509_get0_notBefore(cert)),
          AsnTimeToTimePoint(X509_get0_notAfter(cert))};
}

absl::Status VerifyChain(X509* leaf, const std::vector<X509Ptr>& intermediates,
                         const std::vector<X509Ptr>& roots, bool check_time) {
  if (leaf == nullptr) return absl::InvalidArgumentError("VerifyChain: null certificate");
  if (roots.empty()) return absl::FailedPreconditionError("no trust anchors to verify against");
  X509StorePtr store(X509_STORE_new());
  X509StackPtr untrusted(sk_X509_new_null());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return OpenSslError("allocating verify context");
  for (const auto& r : roots)
    if (!X509_STORE_add_cert(store.get(), r.get())) return OpenSslError("adding trust anchor");
  for (const auto& c : intermediates)
    if (!sk_X509_push(untrusted.get(), c.get())) return OpenSslError("building chain");
  if (!X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()))
    return OpenSslError("X509_STORE_CTX_init");
  if (!check_time) X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_NO_CHECK_TIME);
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    ERR_clear_error();
    return absl::FailedPreconditionError(
        absl::StrCat("certificate chain does not verify: ", X509_verify_cert_error_string(err),
                     " (at depth ", depth, ", 0 = leaf)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CertificateAuthority> CertificateAuthority::CreateRoot(std::string_view org,
                                                                      std::chrono::seconds lifetime,
                                                                      int path_len) {
  CertificateAuthority ca;
  WEFT_ASSIGN_OR_RETURN(ca.key_, GenerateKey());
  WEFT_ASSIGN_OR_RETURN(ca.cert_, MakeCaCert(ca.key_.get(), org, absl::StrCat(Av(org), " root CA"),
                                             lifetime, nullptr, nullptr, path_len));
  WEFT_ASSIGN_OR_RETURN(std::string pem, CertToPem(ca.cert_.get()));
  ca.chain_pem_.push_back(std::move(pem));
  return ca;
}

absl::StatusOr<CertificateAuthority> CertificateAuthority::CreateIntermediate(
    std::string_view org, std::chrono::seconds lifetime) const {
  // One level less than this CA allows; a CA without a pathlen (loaded from PEM) gets
  // intermediates that sign leaves only.
  long parent_len = X509_get_pathlen(cert_.get());
  if (parent_len == 0) {
    return absl::FailedPreconditionError(
        "this CA has basicConstraints pathlen 0: it may sign workload certificates but not "
        "intermediate CAs (create the root with a larger pathlen)");
  }
  CertificateAuthority ca;
  WEFT_ASSIGN_OR_RETURN(ca.key_, GenerateKey());
  WEFT_ASSIGN_OR_RETURN(
      ca.cert_, MakeCaCert(ca.key_.get(), org, absl::StrCat(Av(org), " intermediate CA"), lifetime,
                           cert_.get(), key_.get(), parent_len > 0 ? int(parent_len - 1) : 0));
  WEFT_ASSIGN_OR_RETURN(std::string pem, CertToPem(ca.cert_.get()));
  ca.chain_pem_.push_back(std::move(pem));
  ca.chain_pem_.insert(ca.chain_pem_.end(), chain_pem_.begin(), chain_pem_.end());
  return ca;
}

absl::StatusOr<CertificateAuthority> CertificateAuthority::FromPem(std::string_view cert_pem,
                                                                   std::string_view key_pem,
                                                                   std::string_view chain_pem) {
  auto certs = CertsFromPem(cert_pem);
  if (!certs.ok())
    return absl::InvalidArgumentError(absl::StrCat("CA certificate: ", certs.status().message()));
  auto key = KeyFromPem(key_pem);
  if (!key.ok())
    return absl::InvalidArgumentError(absl::StrCat("CA private key: ", key.status().message()));
  // A cert file that already holds the chain after the CA cert is accepted too.
  if (!chain_pem.empty()) {
    auto chain = CertsFromPem(chain_pem);
    if (!chain.ok())
      return absl::InvalidArgumentError(absl::StrCat("CA chain: ", chain.status().message()));
    for (auto& c : *chain) certs->push_back(std::move(c));
  }
  CertificateAuthority ca;
  ca.cert_ = std::move(certs->front());
  ca.key_ = std::move(*key);
  if (X509_check_private_key(ca.cert_.get(), ca.key_.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "CA private key does not match the CA certificate; check that the key and cert files "
        "belong together");
  }
  if (X509_check_ca(ca.cert_.get()) == 0) {
    return absl::InvalidArgumentError(
        "certificate is not a CA (basicConstraints CA:TRUE and keyCertSign are required)");
  }
  X509* top = certs->size() == 1 ? ca.cert_.get() : certs->back().get();
  if (!SelfSigned(top)) {
    return absl::InvalidArgumentError(
        "CA chain does not end in a self-signed root; append the issuer chain up to and "
        "including the root certificate");
  }
  std::vector<X509Ptr> roots, mids;
  for (size_t i = 1; i + 1 < certs->size(); ++i) mids.push_back(std::move((*certs)[i]));
  if (certs->size() > 1) roots.push_back(std::move(certs->back()));
  if (!roots.empty()) {
    auto st = VerifyChain(ca.cert_.get(), mids, roots, /*check_time=*/true);
    if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("CA ", st.message()));
  }
  WEFT_ASSIGN_OR_RETURN(std::string pem, CertToPem(ca.cert_.get()));
  ca.chain_pem_.push_back(std::move(pem));
  for (auto& m : mids) {
    WEFT_ASSIGN_OR_RETURN(std::string p, CertToPem(m.get()));
    ca.chain_pem_.push_back(std::move(p));
  }
  for (auto& r : roots) {
    WEFT_ASSIGN_OR_RETURN(std::string p, CertToPem(r.get()));
    ca.chain_pem_.push_back(std::move(p));
  }
  return ca;
}

absl::StatusOr<X509Ptr> CertificateAuthority::Sign(
    X509_REQ* csr, const SpiffeId& id, std::chrono::seconds ttl,
    std::optional<system_clock::time_point> not_before) const {
  // Round-trip the ID through the parser so a malformed SpiffeId never reaches a certificate.
  WEFT_ASSIGN_OR_RETURN(SpiffeId checked, SpiffeId::Parse(id.ToString()));
  return SignWithSans(csr, {checked.ToString()}, {}, ttl, not_before);
}

absl::StatusOr<X509Ptr> CertificateAuthority::SignWithSans(
    X509_REQ* csr, const std::vector<std::string>& uri_sans,
    const std::vector<std::string>& dns_sans, std::chrono::seconds ttl,
    std::optional<system_clock::time_point> not_before) const {
  if (csr == nullptr) return absl::InvalidArgumentError("Sign: null CSR");
  if (ttl.count() <= 0) return absl::InvalidArgumentError("certificate TTL must be positive");
  if (!cert_ || !key_) return absl::FailedPreconditionError("CA is not initialised");
  EVP_PKEY* pub = X509_REQ_get0_pubkey(csr);
  if (pub == nullptr || X509_REQ_verify(csr, pub) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR self-signature does not verify (corrupted or forged CSR): ", OpenSslErrors()));
  }
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("X509_new");
  if (!X509_set_version(cert.get(), X509_VERSION_3)) return OpenSslError("X509_set_version");
  WEFT_RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  auto now = system_clock::now();
  auto nb = not_before.value_or(now - std::chrono::minutes(1));
  auto na = (not_before ? *not_before : now) + ttl;
  // A leaf must not outlive its issuer: clients would reject it once the CA expires anyway.
  auto ca_na = CertValidity(cert_.get()).not_after;
  if (na > ca_na) na = ca_na;
  WEFT_RETURN_IF_ERROR(SetValidity(cert.get(), nb, na));
  // SPIFFE X509-SVIDs carry the identity in the SAN only; an empty subject makes the SAN
  // critical (RFC 5280 4.2.1.6).
  X509_NAME* empty = X509_NAME_new();
  int ok = empty != nullptr && X509_set_subject_name(cert.get(), empty) &&
           X509_set_issuer_name(cert.get(), X509_get_subject_name(cert_.get()));
  X509_NAME_free(empty);
  if (!ok) return OpenSslError("setting certificate names");
  if (!X509_set_pubkey(cert.get(), pub)) return OpenSslError("X509_set_pubkey");

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert_.get(), cert.get(), nullptr, nullptr, 0);
  WEFT_RETURN_IF_ERROR(AddExt(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"));
  WEFT_RETURN_IF_ERROR(
      AddExt(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature,keyEncipherment"));
  WEFT_RETURN_IF_ERROR(AddExt(cert.get(), &ctx, NID_ext_key_usage, "serverAuth,clientAuth"));
  WEFT_RETURN_IF_ERROR(AddExt(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  WEFT_RETURN_IF_ERROR(AddExt(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  if (!uri_sans.empty() || !dns_sans.empty()) {
    WEFT_ASSIGN_OR_RETURN(ExtPtr san, MakeSanExtension(uri_sans, dns_sans, /*critical=*/true));
    if (!X509_add_ext(cert.get(), san.get(), -1)) return OpenSslError("adding subjectAltName");
  }
  if (!X509_sign(cert.get(), key_.get(), EVP_sha256())) return OpenSslError("signing certificate");
  return cert;
}

}  // namespace weft::tls
