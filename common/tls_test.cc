#include "common/tls.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

namespace weft::tls {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

SpiffeId Id(std::string ns = "default", std::string sa = "web") {
  return SpiffeId{"cluster.local", std::move(ns), std::move(sa)};
}

CertificateAuthority Root(std::string_view org = "weft-test") {
  auto ca = CertificateAuthority::CreateRoot(org, 24h);
  EXPECT_TRUE(ca.ok()) << ca.status();
  return std::move(*ca);
}

struct Leaf {
  EvpPkeyPtr key;
  X509Ptr cert;
};

Leaf Issue(const CertificateAuthority& ca, const SpiffeId& id, std::chrono::seconds ttl = 1h,
           std::optional<system_clock::time_point> nb = std::nullopt) {
  auto key = GenerateKey();
  EXPECT_TRUE(key.ok()) << key.status();
  auto csr = MakeCsr(key->get(), id);
  EXPECT_TRUE(csr.ok()) << csr.status();
  auto cert = ca.Sign(csr->get(), id, ttl, nb);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return {std::move(*key), std::move(*cert)};
}

X509Ptr IssueWithSans(const CertificateAuthority& ca, std::vector<std::string> uris,
                      std::vector<std::string> dns) {
  auto key = GenerateKey();
  EXPECT_TRUE(key.ok());
  auto csr = MakeCsr(key->get(), Id());
  EXPECT_TRUE(csr.ok());
  auto cert = ca.SignWithSans(csr->get(), uris, dns, 1h);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return std::move(*cert);
}

std::vector<X509Ptr> Certs(const std::vector<std::string>& pems) {
  std::vector<X509Ptr> out;
  for (const auto& p : pems) {
    auto c = CertFromPem(p);
    EXPECT_TRUE(c.ok()) << c.status();
    out.push_back(std::move(*c));
  }
  return out;
}

std::vector<X509Ptr> RootsOf(const CertificateAuthority& ca) {
  return Certs({ca.root_pem()});
}

TEST(TlsKeys, PemRoundTrip) {
  auto key = GenerateKey();
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(EVP_PKEY_get_base_id(key->get()), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(key->get()), 256);
  auto pem = KeyToPem(key->get());
  ASSERT_TRUE(pem.ok());
  EXPECT_NE(pem->find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  auto back = KeyFromPem(*pem);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EVP_PKEY_eq(key->get(), back->get()), 1);
  auto other = GenerateKey();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(EVP_PKEY_eq(key->get(), other->get()), 1);
}

TEST(TlsKeys, MalformedPemIsAClearError) {
  auto none = KeyFromPem("hello");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("no PEM private key"), std::string::npos) << none.status();
  auto bad = KeyFromPem("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("malformed PEM private key"), std::string::npos)
      << bad.status();
  EXPECT_FALSE(KeyFromPem("").ok());
  EXPECT_TRUE(OpenSslErrors().empty());  // errors were drained into the status
}

TEST(TlsErrors, OpenSslErrorsDrainsTheQueue) {
  BioPtr bio(BIO_new_mem_buf("junk", 4));
  EXPECT_EQ(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), nullptr);
  std::string first = OpenSslErrors();
  EXPECT_NE(first.find("no start line"), std::string::npos) << first;
  EXPECT_EQ(OpenSslErrors(), "");
  EXPECT_EQ(ERR_peek_error(), 0u);
  auto st = OpenSslError("doing a thing");
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("doing a thing: unknown OpenSSL error"), std::string::npos);
}

TEST(TlsCerts, PemRoundTripAndBundles) {
  auto ca = Root();
  auto leaf = Issue(ca, Id());
  auto pem = CertToPem(leaf.cert.get());
  ASSERT_TRUE(pem.ok());
  auto back = CertFromPem(*pem);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(X509_cmp(leaf.cert.get(), back->get()), 0);

  auto bundle = CertsFromPem(*pem + ca.root_pem());
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  ASSERT_EQ(bundle->size(), 2u);
  EXPECT_EQ(X509_cmp((*bundle)[0].get(), leaf.cert.get()), 0);
  EXPECT_EQ(X509_cmp((*bundle)[1].get(), ca.cert()), 0);
}

TEST(TlsCerts, MalformedPemErrors) {
  auto empty = CertsFromPem("");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no PEM certificate"), std::string::npos);
  auto garbage = CertFromPem("not a certificate at all");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  auto broken = CertFromPem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("malformed PEM certificate"), std::string::npos)
      << broken.status();

  // A good certificate followed by a corrupted one is an error, not a silent truncation.
  auto ca = Root();
  auto trailing = CertsFromPem(ca.root_pem() +
                               "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.status().message().find("after 1 good"), std::string::npos)
      << trailing.status();
  EXPECT_TRUE(OpenSslErrors().empty());
}

TEST(TlsCsr, RoundTripCarriesIdentity) {
  auto key = GenerateKey();
  ASSERT_TRUE(key.ok());
  auto csr = MakeCsr(key->get(), Id("payments", "api"));
  ASSERT_TRUE(csr.ok()) << csr.status();
  auto pem = CsrToPem(csr->get());
  ASSERT_TRUE(pem.ok());
  EXPECT_NE(pem->find("BEGIN CERTIFICATE REQUEST"), std::string::npos);
  auto back = CsrFromPem(*pem);
  ASSERT_TRUE(back.ok()) << back.status();
  auto id = CsrSpiffeId(back->get());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, Id("payments", "api"));
  EXPECT_EQ(EVP_PKEY_eq(X509_REQ_get0_pubkey(back->get()), key->get()), 1);
}

TEST(TlsCsr, TamperedOrMissingSanIsRejected) {
  auto key = GenerateKey();
  ASSERT_TRUE(key.ok());
  auto csr = MakeCsr(key->get(), Id());
  ASSERT_TRUE(csr.ok());
  // Swap in another public key after signing: the self-signature no longer verifies.
  auto other = GenerateKey();
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(X509_REQ_set_pubkey(csr->get(), other->get()), 1);
  auto id = CsrSpiffeId(csr->get());
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("self-signature"), std::string::npos) << id.status();
  auto ca = Root();
  EXPECT_FALSE(ca.Sign(csr->get(), Id(), 1h).ok());

  X509ReqPtr bare(X509_REQ_new());
  ASSERT_EQ(X509_REQ_set_pubkey(bare.get(), key->get()), 1);
  ASSERT_GT(X509_REQ_sign(bare.get(), key->get(), EVP_sha256()), 0);
  auto none = CsrSpiffeId(bare.get());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("spiffe:// URI SAN"), std::string::npos) << none.status();
  EXPECT_FALSE(CsrFromPem("garbage").ok());
}

TEST(TlsCa, RootHasCaExtensions) {
  auto ca = Root("acme");
  X509* c = ca.cert();
  EXPECT_EQ(X509_check_issued(c, c), X509_V_OK);  // self-signed
  EXPECT_EQ(X509_check_ca(c), 1);
  EXPECT_TRUE(X509_get_extension_flags(c) & EXFLAG_CA);
  EXPECT_TRUE(X509_get_key_usage(c) & KU_KEY_CERT_SIGN);
  int crit = 0;
  auto* bc =
      static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(c, NID_basic_constraints, &crit, nullptr));
  ASSERT_NE(bc, nullptr);
  EXPECT_EQ(crit, 1);
  EXPECT_TRUE(bc->ca);
  BASIC_CONSTRAINTS_free(bc);
  EXPECT_NE(X509_get0_subject_key_id(c), nullptr);
  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof(cn));
  EXPECT_STREQ(cn, "acme root CA");
  EXPECT_EQ(ca.chain_pem().size(), 1u);
  auto v = CertValidity(c);
  EXPECT_LT(v.not_before, system_clock::now());
  EXPECT_NEAR(std::chrono::duration<double>(v.not_after - system_clock::now()).count(), 24 * 3600,
              120);
  EXPECT_FALSE(CertificateAuthority::CreateRoot("x", 0s).ok());
}

TEST(TlsCa, LeafHasWorkloadExtensionsAndVerifies) {
  auto ca = Root();
  auto leaf = Issue(ca, Id("ns1", "sa1"), 2h);
  X509* c = leaf.cert.get();
  auto id = CertSpiffeId(c);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->ToString(), "spiffe://cluster.local/ns/ns1/sa/sa1");
  EXPECT_EQ(X509_check_ca(c), 0);
  uint32_t xku = X509_get_extended_key_usage(c);
  EXPECT_TRUE(xku & XKU_SSL_SERVER);
  EXPECT_TRUE(xku & XKU_SSL_CLIENT);
  uint32_t ku = X509_get_key_usage(c);
  EXPECT_TRUE(ku & KU_DIGITAL_SIGNATURE);
  EXPECT_FALSE(ku & KU_KEY_CERT_SIGN);
  EXPECT_NE(X509_get0_subject_key_id(c), nullptr);
  const ASN1_OCTET_STRING* akid = X509_get0_authority_key_id(c);
  ASSERT_NE(akid, nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(ca.cert())), 0);
  EXPECT_EQ(X509_get_signature_nid(c), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_check_private_key(c, leaf.key.get()), 1);
  // 128-bit random serials: two certs never share one.
  auto leaf2 = Issue(ca, Id("ns1", "sa1"));
  const ASN1_INTEGER* s1 = X509_get0_serialNumber(c);
  EXPECT_EQ(ASN1_STRING_length(s1), 16);
  EXPECT_NE(ASN1_INTEGER_cmp(s1, X509_get0_serialNumber(leaf2.cert.get())), 0);
  auto v = CertValidity(c);
  EXPECT_NEAR(std::chrono::duration<double>(v.not_after - system_clock::now()).count(), 7200, 120);

  EXPECT_TRUE(VerifyChain(c, {}, RootsOf(ca)).ok());
  // The same check straight through X509_verify_cert, with the SSL-client purpose.
  X509StorePtr store(X509_STORE_new());
  ASSERT_EQ(X509_STORE_add_cert(store.get(), ca.cert()), 1);
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  ASSERT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), c, nullptr), 1);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  EXPECT_EQ(X509_verify_cert(ctx.get()), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

TEST(TlsCa, OtherRootDoesNotVerify) {
  auto ca = Root(), other = Root("other");
  auto leaf = Issue(ca, Id());
  auto st = VerifyChain(leaf.cert.get(), {}, RootsOf(other));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("unable to get local issuer"), std::string::npos) << st;
  EXPECT_FALSE(VerifyChain(leaf.cert.get(), {}, {}).ok());
}

TEST(TlsCa, IntermediateChainVerifies) {
  auto root = Root();
  auto mid = root.CreateIntermediate("weft-mid", 12h);
  ASSERT_TRUE(mid.ok()) << mid.status();
  ASSERT_EQ(mid->chain_pem().size(), 2u);
  EXPECT_EQ(mid->root_pem(), root.root_pem());
  EXPECT_EQ(X509_check_issued(root.cert(), mid->cert()), X509_V_OK);
  EXPECT_EQ(X509_check_ca(mid->cert()), 1);

  auto leaf = Issue(*mid, Id());
  auto inter = Certs({mid->chain_pem()[0]});
  EXPECT_TRUE(VerifyChain(leaf.cert.get(), inter, RootsOf(root)).ok());
  // Without the intermediate the leaf cannot reach the root.
  auto st = VerifyChain(leaf.cert.get(), {}, RootsOf(root));
  EXPECT_FALSE(st.ok());

  // Two levels deep (a root made for it: the default pathlen allows one level).
  auto deep_root = CertificateAuthority::CreateRoot("weft-deep", 24h, /*path_len=*/2);
  ASSERT_TRUE(deep_root.ok());
  mid = deep_root->CreateIntermediate("weft-mid", 12h);
  ASSERT_TRUE(mid.ok());
  auto mid2 = mid->CreateIntermediate("weft-mid2", 6h);
  ASSERT_TRUE(mid2.ok());
  ASSERT_EQ(mid2->chain_pem().size(), 3u);
  auto leaf2 = Issue(*mid2, Id());
  auto inter2 = Certs({mid2->chain_pem()[0], mid2->chain_pem()[1]});
  EXPECT_TRUE(VerifyChain(leaf2.cert.get(), inter2, RootsOf(*deep_root)).ok());
}

// Issue 13 hole 7: generated roots carry a basicConstraints pathLenConstraint (1 by default:
// one level of intermediates), intermediates one less, and a CA at pathlen 0 makes no
// intermediates of its own.
TEST(TlsCa, RootsAndIntermediatesCarryPathLen) {
  auto root = Root();
  EXPECT_EQ(X509_get_pathlen(root.cert()), 1);
  auto mid = root.CreateIntermediate("weft-mid", 12h);
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(X509_get_pathlen(mid->cert()), 0);
  auto too_deep = mid->CreateIntermediate("weft-mid2", 6h);
  ASSERT_FALSE(too_deep.ok());
  EXPECT_NE(too_deep.status().message().find("pathlen"), std::string::npos) << too_deep.status();
  auto deep = CertificateAuthority::CreateRoot("deep", 24h, /*path_len=*/2);
  ASSERT_TRUE(deep.ok());
  EXPECT_EQ(X509_get_pathlen(deep->cert()), 2);
}

TEST(TlsCa, ValidityWindowAndClamping) {
  auto ca = Root();
  auto now = system_clock::now();
  auto expired = Issue(ca, Id(), 1h, now - 3h);
  auto st = VerifyChain(expired.cert.get(), {}, RootsOf(ca));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("expired"), std::string::npos) << st;
  EXPECT_TRUE(VerifyChain(expired.cert.get(), {}, RootsOf(ca), /*check_time=*/false).ok());

  auto future = Issue(ca, Id(), 1h, now + 2h);
  st = VerifyChain(future.cert.get(), {}, RootsOf(ca));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not yet valid"), std::string::npos) << st;

  // A leaf asking to outlive its 24h CA is cut at the CA's notAfter.
  auto long_lived = Issue(ca, Id(), 24h * 30);
  EXPECT_LE(CertValidity(long_lived.cert.get()).not_after, CertValidity(ca.cert()).not_after);

  auto key = GenerateKey();
  auto csr = MakeCsr(key->get(), Id());
  EXPECT_FALSE(ca.Sign(csr->get(), Id(), 0s).ok());
  EXPECT_FALSE(ca.Sign(csr->get(), SpiffeId{"td", "", "sa"}, 1h).ok());
}

TEST(TlsCa, FromPem) {
  auto root = Root();
  auto key_pem = root.KeyPem();
  ASSERT_TRUE(key_pem.ok());
  auto loaded = CertificateAuthority::FromPem(root.root_pem(), *key_pem);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(X509_cmp(loaded->cert(), root.cert()), 0);
  EXPECT_EQ(loaded->root_pem(), root.root_pem());
  auto leaf = Issue(*loaded, Id());
  EXPECT_TRUE(VerifyChain(leaf.cert.get(), {}, RootsOf(root)).ok());

  auto mid = root.CreateIntermediate("mid", 1h);
  ASSERT_TRUE(mid.ok());
  auto mid_key = mid->KeyPem();
  auto with_chain =
      CertificateAuthority::FromPem(mid->chain_pem()[0], *mid_key, mid->chain_pem()[1]);
  ASSERT_TRUE(with_chain.ok()) << with_chain.status();
  EXPECT_EQ(with_chain->chain_pem().size(), 2u);
  EXPECT_EQ(with_chain->root_pem(), root.root_pem());
  // Chain appended to the cert file works too.
  EXPECT_TRUE(
      CertificateAuthority::FromPem(mid->chain_pem()[0] + mid->chain_pem()[1], *mid_key).ok());

  auto no_chain = CertificateAuthority::FromPem(mid->chain_pem()[0], *mid_key);
  ASSERT_FALSE(no_chain.ok());
  EXPECT_NE(no_chain.status().message().find("self-signed root"), std::string::npos);

  auto wrong_key = CertificateAuthority::FromPem(root.root_pem(), *mid_key);
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_NE(wrong_key.status().message().find("does not match"), std::string::npos);

  auto leaf_pem = CertToPem(leaf.cert.get());
  auto leaf_key = KeyToPem(leaf.key.get());
  auto not_ca = CertificateAuthority::FromPem(*leaf_pem, *leaf_key, root.root_pem());
  ASSERT_FALSE(not_ca.ok());
  EXPECT_NE(not_ca.status().message().find("not a CA"), std::string::npos) << not_ca.status();

  auto other = Root("other");
  auto bad_chain = CertificateAuthority::FromPem(mid->chain_pem()[0], *mid_key, other.root_pem());
  ASSERT_FALSE(bad_chain.ok());
  EXPECT_NE(bad_chain.status().message().find("does not verify"), std::string::npos)
      << bad_chain.status();
  EXPECT_FALSE(CertificateAuthority::FromPem("junk", *key_pem).ok());
  EXPECT_FALSE(CertificateAuthority::FromPem(root.root_pem(), "junk").ok());
}

TEST(TlsSpiffe, CertSpiffeIdErrors) {
  auto ca = Root();
  auto none = CertSpiffeId(IssueWithSans(ca, {}, {}).get());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no subjectAltName"), std::string::npos) << none.status();

  auto dns = CertSpiffeId(IssueWithSans(ca, {}, {"web.default.svc"}).get());
  ASSERT_FALSE(dns.ok());
  EXPECT_NE(dns.status().message().find("no URI SAN"), std::string::npos) << dns.status();

  auto two = CertSpiffeId(
      IssueWithSans(ca, {"spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d"},
                    {})
          .get());
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("2 URI SANs"), std::string::npos) << two.status();

  auto https = CertSpiffeId(IssueWithSans(ca, {"https://example.com/x"}, {}).get());
  ASSERT_FALSE(https.ok());
  EXPECT_NE(https.status().message().find("not a SPIFFE ID"), std::string::npos) << https.status();

  auto bad_path =
      CertSpiffeId(IssueWithSans(ca, {"spiffe://cluster.local/ns/a/extra/b"}, {}).get());
  EXPECT_FALSE(bad_path.ok());

  // One URI SAN next to DNS SANs is fine.
  auto mixed =
      CertSpiffeId(IssueWithSans(ca, {"spiffe://cluster.local/ns/a/sa/b"}, {"b.a.svc"}).get());
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(*mixed, (SpiffeId{"cluster.local", "a", "b"}));
  EXPECT_FALSE(CertSpiffeId(nullptr).ok());
}

TEST(TlsFiles, AtomicWriteAndRead) {
  char tmpl[] = "/tmp/weft_tls_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/key.pem";
  ASSERT_TRUE(WriteFileAtomic(path, "secret", 0600).ok());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto data = ReadFile(path);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, "secret");
  ASSERT_TRUE(WriteFileAtomic(path, "second", 0644).ok());
  EXPECT_EQ(*ReadFile(path), "second");
  auto missing = ReadFile(std::string(tmpl) + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(WriteFileAtomic(std::string(tmpl) + "/no/such/dir/f", "x", 0600).ok());
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace weft::tls
