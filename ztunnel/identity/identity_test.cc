#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/testing/temp_dir.h"
#include "common/tls.h"
#include "ztunnel/identity/identity.h"

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using weft::testing::TempDir;

const SpiffeId kWeb{"cluster.local", "default", "web"};
const SpiffeId kDb{"cluster.local", "data", "db"};

tls::CertificateAuthority Root(std::string_view org = "weft-test") {
  auto ca = tls::CertificateAuthority::CreateRoot(org, 24h);
  EXPECT_TRUE(ca.ok()) << ca.status();
  return std::move(*ca);
}

void Overwrite(const std::string& path, const std::string& data) {
  ASSERT_TRUE(tls::WriteFileAtomic(path, data, 0600).ok());
}

std::string Serial(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string s(hex);
  OPENSSL_free(hex);
  BN_free(bn);
  return s;
}

TEST(FileCertificateProvider, LoadsWhatWriteCertFilesWrites) {
  TempDir dir;
  auto ca = Root();
  ASSERT_TRUE(WriteRootFile(dir.path(), ca).ok());
  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 2h).ok());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/default/web/cert-chain.pem"));
  auto perms = std::filesystem::status(dir.path() + "/default/web/key.pem").permissions();
  EXPECT_EQ(perms & std::filesystem::perms::group_read, std::filesystem::perms::none);

  FileCertificateProvider provider(dir.path() + "/");
  auto b = provider.Get(kWeb);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->identity, kWeb);
  EXPECT_EQ(*tls::CertSpiffeId((*b)->leaf.get()), kWeb);
  EXPECT_TRUE((*b)->intermediates.empty());
  ASSERT_EQ((*b)->roots.size(), 1u);
  EXPECT_EQ(X509_cmp((*b)->roots[0].get(), ca.cert()), 0);
  EXPECT_EQ(X509_check_private_key((*b)->leaf.get(), (*b)->key.get()), 1);
  auto left = (*b)->not_after - std::chrono::system_clock::now();
  EXPECT_GT(left, 2h - 2min);
  EXPECT_LE(left, 2h + 1min);

  // Unchanged files: the same bundle object (TlsContextCache relies on pointer identity).
  auto again = provider.Get(kWeb);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), b->get());
}

TEST(FileCertificateProvider, IntermediatesComeFromTheChainFile) {
  TempDir dir;
  auto root = Root();
  auto mid = root.CreateIntermediate("weft-mid", 12h);
  ASSERT_TRUE(mid.ok());
  ASSERT_TRUE(WriteRootFile(dir.path(), *mid).ok());
  ASSERT_TRUE(WriteCertFiles(dir.path(), *mid, kDb, 1h).ok());
  FileCertificateProvider provider(dir.path());
  auto b = provider.Get(kDb);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ((*b)->intermediates.size(), 1u);
  EXPECT_EQ(X509_cmp((*b)->intermediates[0].get(), mid->cert()), 0);
  EXPECT_EQ(X509_cmp((*b)->roots[0].get(), root.cert()), 0);

  // A chain file that also carries the root: the root is not treated as an intermediate.
  std::string chain = *tls::ReadFile(dir.path() + "/data/db/cert-chain.pem") + root.root_pem();
  Overwrite(dir.path() + "/data/db/cert-chain.pem", chain);
  FileCertificateProvider fresh(dir.path());
  auto b2 = fresh.Get(kDb);
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_EQ((*b2)->intermediates.size(), 1u);
}

TEST(FileCertificateProvider, MissingFilesSayWhichAndWhatToDo) {
  TempDir dir;
  FileCertificateProvider provider(dir.path());
  auto no_root = provider.Get(kWeb);
  ASSERT_FALSE(no_root.ok());
  EXPECT_EQ(no_root.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_root.status().message().find(dir.path() + "/root-cert.pem"), std::string::npos)
      << no_root.status();
  EXPECT_NE(no_root.status().message().find("weftctl dev-certs --dir " + dir.path() +
                                            " --trust-domain cluster.local default/web"),
            std::string::npos)
      << no_root.status();

  auto ca = Root();
  ASSERT_TRUE(WriteRootFile(dir.path(), ca).ok());
  auto no_chain = provider.Get(kWeb);
  ASSERT_FALSE(no_chain.ok());
  EXPECT_NE(no_chain.status().message().find("default/web/cert-chain.pem"), std::string::npos)
      << no_chain.status();

  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  std::filesystem::remove(dir.path() + "/default/web/key.pem");
  auto no_key = provider.Get(kWeb);
  ASSERT_FALSE(no_key.ok());
  EXPECT_NE(no_key.status().message().find("default/web/key.pem"), std::string::npos)
      << no_key.status();

  // Identities that would escape the directory are refused.
  auto escape = provider.Get(SpiffeId{"cluster.local", "..", "x"});
  ASSERT_FALSE(escape.ok());
  EXPECT_NE(escape.status().message().find("directory name"), std::string::npos);
}

TEST(FileCertificateProvider, BadFilesAreNamed) {
  TempDir dir;
  auto ca = Root();
  ASSERT_TRUE(WriteRootFile(dir.path(), ca).ok());
  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  const std::string idir = dir.path() + "/default/web";
  const std::string good_key = *tls::ReadFile(idir + "/key.pem");
  const std::string good_chain = *tls::ReadFile(idir + "/cert-chain.pem");

  {  // garbage chain
    Overwrite(idir + "/cert-chain.pem", "this is not PEM");
    auto r = FileCertificateProvider(dir.path()).Get(kWeb);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(idir + "/cert-chain.pem: no PEM certificate"),
              std::string::npos)
        << r.status();
    Overwrite(idir + "/cert-chain.pem", good_chain);
  }
  {  // key from another issuance
    auto other = tls::GenerateKey();
    Overwrite(idir + "/key.pem", *tls::KeyToPem(other->get()));
    auto r = FileCertificateProvider(dir.path()).Get(kWeb);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("key.pem does not match"), std::string::npos) << r.status();
    Overwrite(idir + "/key.pem", good_key);
  }
  {  // roots from another CA
    auto other = Root("other");
    ASSERT_TRUE(WriteRootFile(dir.path(), other).ok());
    auto r = FileCertificateProvider(dir.path()).Get(kWeb);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("does not chain to a root"), std::string::npos)
        << r.status();
    ASSERT_TRUE(WriteRootFile(dir.path(), ca).ok());
  }
  EXPECT_TRUE(FileCertificateProvider(dir.path()).Get(kWeb).ok());
}

TEST(FileCertificateProvider, WrongIdentityIsRejected) {
  TempDir dir;
  auto ca = Root();
  ASSERT_TRUE(WriteRootFile(dir.path(), ca).ok());
  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  // Files for default/web placed where data/db is expected.
  std::filesystem::create_directories(dir.path() + "/data");
  std::filesystem::rename(dir.path() + "/default/web", dir.path() + "/data/db");
  auto r = FileCertificateProvider(dir.path()).Get(kDb);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("issued to spiffe://cluster.local/ns/default/sa/web"),
            std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("serves spiffe://cluster.local/ns/data/sa/db"),
            std::string::npos)
      << r.status();
  // Another trust domain with the same namespace/service account is a mismatch too.
  std::filesystem::rename(dir.path() + "/data/db", dir.path() + "/data/web");
  std::filesystem::rename(dir.path() + "/data", dir.path() + "/default");
  EXPECT_FALSE(
      FileCertificateProvider(dir.path()).Get(SpiffeId{"other.domain", "default", "web"}).ok());
}

TEST(FileCertificateProvider, ReloadsOnChangeAndKeepsLastGoodOnBadRotation) {
  TempDir dir;
  auto ca = Root();
  ASSERT_TRUE(WriteRootFile(dir.path(), ca).ok());
  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  FileCertificateProvider provider(dir.path());
  auto first = provider.Get(kWeb);
  ASSERT_TRUE(first.ok());

  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  auto second = provider.Get(kWeb);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->get(), first->get());
  EXPECT_NE(Serial((*second)->leaf.get()), Serial((*first)->leaf.get()));
  EXPECT_EQ(X509_check_private_key((*second)->leaf.get(), (*second)->key.get()), 1);

  // Rotation caught half-written (new key, old chain): the last good bundle stays in service.
  auto key = tls::GenerateKey();
  Overwrite(dir.path() + "/default/web/key.pem", *tls::KeyToPem(key->get()));
  auto during = provider.Get(kWeb);
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ(during->get(), second->get());

  // Once the rotation completes the new files load.
  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  auto third = provider.Get(kWeb);
  ASSERT_TRUE(third.ok());
  EXPECT_NE(third->get(), second->get());
  EXPECT_EQ(X509_check_private_key((*third)->leaf.get(), (*third)->key.get()), 1);

  // A root rotation counts as a change too.
  auto ca2 = Root("second");
  ASSERT_TRUE(WriteRootFile(dir.path(), ca2).ok());
  ASSERT_TRUE(WriteCertFiles(dir.path(), ca2, kWeb, 1h).ok());
  auto fourth = provider.Get(kWeb);
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(X509_cmp((*fourth)->roots[0].get(), ca2.cert()), 0);
}

TEST(FileCertificateProvider, ConcurrentReadersDuringRotationSeeConsistentBundles) {
  TempDir dir;
  auto ca = Root();
  ASSERT_TRUE(WriteRootFile(dir.path(), ca).ok());
  ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  FileCertificateProvider provider(dir.path());
  TlsContextCache cache(&provider);
  // Loaded once before the rotation starts, as ztunnel does at startup; after that, readers
  // always get a consistent bundle (new or last good).
  ASSERT_TRUE(provider.Get(kWeb).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto b = provider.Get(kWeb);
        // Key and leaf always belong together, whatever point of a rotation we hit.
        if (!b.ok() || X509_check_private_key((*b)->leaf.get(), (*b)->key.get()) != 1) ++bad;
        if (!cache.ServerContext(kWeb).ok()) ++bad;
        ++reads;
      }
    });
  }
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(WriteCertFiles(dir.path(), ca, kWeb, 1h).ok());
  while (reads.load() < 100) std::this_thread::yield();
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  // After the last rotation the provider serves exactly what is on disk.
  auto last = provider.Get(kWeb);
  ASSERT_TRUE(last.ok());
  auto on_disk = tls::CertFromPem(*tls::ReadFile(dir.path() + "/default/web/cert-chain.pem"));
  EXPECT_EQ(X509_cmp((*last)->leaf.get(), on_disk->get()), 0);
}

TEST(StaticCertificateProvider, ServesWhatWasSet) {
  auto ca = Root();
  StaticCertificateProvider provider;
  EXPECT_EQ(provider.Get(kWeb).status().code(), absl::StatusCode::kNotFound);
  auto bundle = MakeCertBundle(ca, kWeb, 1h);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  provider.Set(*bundle);
  auto got = provider.Get(kWeb);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->get(), bundle->get());
  EXPECT_FALSE(provider.Get(kDb).ok());
}

TEST(TlsFailureName, AllNamesAreMetricLabels) {
  EXPECT_EQ(TlsFailureName(TlsFailure::kNone), "none");
  EXPECT_EQ(TlsFailureName(TlsFailure::kUnknownCa), "unknown_ca");
  EXPECT_EQ(TlsFailureName(TlsFailure::kExpired), "expired");
  EXPECT_EQ(TlsFailureName(TlsFailure::kNotYetValid), "not_yet_valid");
  EXPECT_EQ(TlsFailureName(TlsFailure::kNoClientCert), "no_client_cert");
  EXPECT_EQ(TlsFailureName(TlsFailure::kNoSpiffeId), "no_spiffe_id");
  EXPECT_EQ(TlsFailureName(TlsFailure::kIdentityMismatch), "identity_mismatch");
  EXPECT_EQ(TlsFailureName(TlsFailure::kNoAlpn), "no_alpn");
  EXPECT_EQ(TlsFailureName(TlsFailure::kProtocol), "protocol");
}

}  // namespace
}  // namespace weft::ztunnel
