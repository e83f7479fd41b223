// The CA without gRPC: root persistence, user-provided CAs, issuance checks, node
// authentication (bootstrap tokens, TokenReview) and authorization with counters.
#include "controlplane/ca/ca.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <prometheus/text_serializer.h>

#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "common/testing/temp_dir.h"
#include "controlplane/ca/ca_server.h"

namespace weft::cp {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using std::chrono::system_clock;

SpiffeId Id(std::string ns, std::string sa) {
  return SpiffeId{"cluster.local", ns, sa};
}

struct Csr {
  tls::EvpPkeyPtr key;
  std::string pem;
};
Csr MakeCsrFor(const SpiffeId& id) {
  Csr c;
  c.key = *tls::GenerateKey();
  auto csr = tls::MakeCsr(c.key.get(), id);
  c.pem = *tls::CsrToPem(csr->get());
  return c;
}

// X509_verify_cert of chain[0] with chain[1..n-2] untrusted and chain[n-1] as the only anchor,
// at `at` (explicit, to test validity periods).
int VerifyWithOpenSsl(const std::vector<std::string>& chain, std::time_t at) {
  std::vector<tls::X509Ptr> certs;
  for (const auto& p : chain) certs.push_back(*tls::CertFromPem(p));
  tls::X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), certs.back().get());
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (size_t i = 1; i + 1 < certs.size(); ++i) sk_X509_push(untrusted, certs[i].get());
  tls::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), certs[0].get(), untrusted);
  X509_STORE_CTX_set_time(ctx.get(), 0, at);
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  sk_X509_free(untrusted);
  return ok == 1 ? X509_V_OK : err;
}

TEST(FileRootStore, RootPersistsAcrossRestartWithPrivateKeyFile) {
  testing::TempDir tmp;
  std::string dir = tmp.path() + "/ca";
  FileRootStore store(dir);
  auto first = LoadOrCreateRoot(store, "weft", hours(24 * 365));
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st;
  ASSERT_EQ(::stat(store.key_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  FileRootStore again(dir);  // a restarted weftd
  auto second = LoadOrCreateRoot(again, "weft", hours(24 * 365));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->root_pem(), second->root_pem());
  EXPECT_EQ(*first->KeyPem(), *second->KeyPem());
}

TEST(FileRootStore, HalfARootIsAnErrorNotANewRoot) {
  testing::TempDir tmp;
  FileRootStore store(tmp.path());
  ASSERT_TRUE(LoadOrCreateRoot(store, "weft", hours(24)).ok());
  ASSERT_EQ(::unlink(store.key_path().c_str()), 0);
  auto r = LoadOrCreateRoot(store, "weft", hours(24));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("only one of"), std::string::npos) << r.status();
  // And a create never overwrites.
  EXPECT_TRUE(absl::IsAlreadyExists(store.Create({"x", "y"})));
}

TEST(FileRootStore, CorruptStoredRootIsReported) {
  testing::TempDir tmp;
  FileRootStore store(tmp.path());
  tmp.Write("root-cert.pem", "not a cert");
  tmp.Write("root-key.pem", "not a key");
  auto r = LoadOrCreateRoot(store, "weft", hours(24));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unusable"), std::string::npos) << r.status();
}

TEST(Issuer, IssuesA24HourSvidThatVerifiesWithOpenSsl) {
  auto now = system_clock::now();
  auto root = *tls::CertificateAuthority::CreateRoot("weft", hours(24 * 365));
  Issuer issuer(std::move(root), IssuerOptions{.clock = [now] { return now; }});
  auto c = MakeCsrFor(Id("default", "sleep"));
  auto chain = issuer.Issue(c.pem, "spiffe://cluster.local/ns/default/sa/sleep", seconds(0));
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 2u);  // leaf, root
  EXPECT_EQ(chain->back(), issuer.root_pem());
  EXPECT_EQ(VerifyWithOpenSsl(*chain, system_clock::to_time_t(now)), X509_V_OK);

  auto leaf = *tls::CertFromPem(chain->front());
  EXPECT_EQ(tls::CertSpiffeId(leaf.get())->ToString(),
            "spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_EQ(X509_check_private_key(leaf.get(), c.key.get()), 1);
  auto v = tls::CertValidity(leaf.get());
  EXPECT_NEAR(std::chrono::duration_cast<seconds>(v.not_after - now).count(), 24 * 3600, 2);
  // Expired after 24 h.
  EXPECT_EQ(VerifyWithOpenSsl(*chain, system_clock::to_time_t(now + hours(25))),
            X509_V_ERR_CERT_HAS_EXPIRED);
}

TEST(Issuer, UserProvidedIntermediateServesTheFullChain) {
  testing::TempDir tmp;
  auto root = *tls::CertificateAuthority::CreateRoot("corp", hours(24 * 365));
  auto inter = *root.CreateIntermediate("weft", hours(24 * 100));
  std::string cert = tmp.Write("ca-cert.pem", inter.chain_pem()[0]);
  std::string key = tmp.Write("ca-key.pem", *inter.KeyPem());
  std::string chain_file = tmp.Write("cert-chain.pem", root.root_pem());

  auto ca = LoadUserCa(cert, key, chain_file);
  ASSERT_TRUE(ca.ok()) << ca.status();
  Issuer issuer(std::move(*ca), IssuerOptions{});
  auto c = MakeCsrFor(Id("prod", "api"));
  auto chain = issuer.Issue(c.pem, "spiffe://cluster.local/ns/prod/sa/api", hours(1));
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 3u);  // leaf, intermediate, root
  EXPECT_EQ(chain->back(), root.root_pem());
  EXPECT_EQ((*chain)[1], inter.chain_pem()[0]);
  EXPECT_EQ(VerifyWithOpenSsl(*chain, std::time(nullptr)), X509_V_OK);
  // Without the intermediate the leaf does not verify: the chain really is needed.
  std::vector<std::string> no_mid{chain->front(), chain->back()};
  EXPECT_NE(VerifyWithOpenSsl(no_mid, std::time(nullptr)), X509_V_OK);

  // An intermediate without its chain to a root is refused with a reason.
  auto bad = LoadUserCa(cert, key);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("self-signed root"), std::string::npos) << bad.status();
  // A key that does not belong to the cert is refused.
  std::string other_key = tmp.Write("other-key.pem", *root.KeyPem());
  EXPECT_FALSE(LoadUserCa(cert, other_key, chain_file).ok());
  EXPECT_FALSE(LoadUserCa(tmp.path() + "/missing.pem", key).ok());

  // A user-provided root on its own.
  std::string root_cert = tmp.Write("root-cert.pem", root.root_pem());
  auto user_root = LoadUserCa(root_cert, other_key);
  ASSERT_TRUE(user_root.ok()) << user_root.status();
  Issuer by_root(std::move(*user_root), IssuerOptions{});
  auto c2 = MakeCsrFor(Id("prod", "api"));
  auto chain2 = by_root.Issue(c2.pem, "spiffe://cluster.local/ns/prod/sa/api", hours(1));
  ASSERT_TRUE(chain2.ok()) << chain2.status();
  ASSERT_EQ(chain2->size(), 2u);
  EXPECT_EQ(chain2->back(), root.root_pem());
  EXPECT_EQ(VerifyWithOpenSsl(*chain2, std::time(nullptr)), X509_V_OK);
}

TEST(Issuer, RefusesBadRequests) {
  auto root = *tls::CertificateAuthority::CreateRoot("weft", hours(24 * 365));
  Issuer issuer(std::move(root), IssuerOptions{});
  auto c = MakeCsrFor(Id("default", "sleep"));
  // CSR for one identity, request for another.
  auto r = issuer.Issue(c.pem, "spiffe://cluster.local/ns/default/sa/admin", seconds(0));
  ASSERT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("CSR is for"), std::string::npos) << r.status();
  // Foreign trust domain.
  auto c2 = MakeCsrFor(SpiffeId{"evil.org", "default", "sleep"});
  r = issuer.Issue(c2.pem, "spiffe://evil.org/ns/default/sa/sleep", seconds(0));
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  // Garbage CSR and malformed identity.
  EXPECT_TRUE(absl::IsInvalidArgument(
      issuer.Issue("garbage", "spiffe://cluster.local/ns/default/sa/sleep", seconds(0)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(issuer.Issue(c.pem, "spiffe://x/y", seconds(0)).status()));
  // Validity out of bounds.
  EXPECT_TRUE(absl::IsInvalidArgument(
      issuer.Issue(c.pem, "spiffe://cluster.local/ns/default/sa/sleep", seconds(5)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      issuer.Issue(c.pem, "spiffe://cluster.local/ns/default/sa/sleep", hours(24 * 30)).status()));
  // A CSR whose signature was tampered with (signature bytes flipped).
  auto csr = *tls::CsrFromPem(c.pem);
  const ASN1_BIT_STRING* sig = nullptr;
  X509_REQ_get0_signature(csr.get(), &sig, nullptr);
  const_cast<ASN1_BIT_STRING*>(sig)->data[10] ^= 0xff;
  std::string forged = *tls::CsrToPem(csr.get());
  r = issuer.Issue(forged, "spiffe://cluster.local/ns/default/sa/sleep", seconds(0));
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
}

// Issue 13 hole 7: the CA signs only keys of an accepted type and size (EC P-256/P-384,
// RSA >= 2048 bits); anything else is refused with a clear error.
TEST(Issuer, AcceptsOnlyP256P384OrRsa2048AndUp) {
  auto root = *tls::CertificateAuthority::CreateRoot("weft", hours(24 * 365));
  Issuer issuer(std::move(root), IssuerOptions{});
  const SpiffeId id = Id("default", "sleep");
  auto issue = [&](EVP_PKEY* key) {
    auto csr = tls::MakeCsr(key, id);
    EXPECT_TRUE(csr.ok()) << csr.status();
    return issuer.Issue(*tls::CsrToPem(csr->get()), id.ToString(), seconds(0));
  };
  struct Case {
    const char* type;
    const char* curve;  // EC only
    size_t bits;        // RSA only
    bool ok;
  };
  for (const Case& c : {Case{"EC", "prime256v1", 0, true}, Case{"EC", "secp384r1", 0, true},
                        Case{"RSA", nullptr, 2048, true}, Case{"RSA", nullptr, 1024, false},
                        Case{"EC", "secp224r1", 0, false}, Case{"EC", "secp256k1", 0, false},
                        Case{"EC", "secp521r1", 0, false}}) {
    tls::EvpPkeyPtr key(c.curve ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", c.curve)
                                : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", c.bits));
    ASSERT_TRUE(key) << c.type << " " << (c.curve ? c.curve : "") << c.bits;
    auto r = issue(key.get());
    std::string what = std::string(c.type) + " " + (c.curve ? c.curve : std::to_string(c.bits));
    if (c.ok) {
      EXPECT_TRUE(r.ok()) << what << ": " << r.status();
    } else {
      ASSERT_FALSE(r.ok()) << what << " must be refused";
      EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
      EXPECT_NE(r.status().message().find("CSR key"), std::string::npos) << r.status();
    }
  }
}

TEST(BootstrapToken, AcceptsOnlyTheNodesOwnToken) {
  testing::TempDir tmp;
  std::string dir = tmp.path() + "/tokens";
  auto tok = BootstrapTokenAuthenticator::EnsureNodeToken(dir, "node-a");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(*BootstrapTokenAuthenticator::EnsureNodeToken(dir, "node-a"), *tok);  // stable
  auto tok_b = *BootstrapTokenAuthenticator::EnsureNodeToken(dir, "node-b");
  EXPECT_NE(tok_b, *tok);
  struct stat st;
  ASSERT_EQ(::stat(BootstrapTokenAuthenticator::TokenPath(dir, "node-a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  BootstrapTokenAuthenticator auth(dir);
  EXPECT_EQ(*auth.Authenticate(*tok, "node-a"), "node-a");
  EXPECT_EQ(*auth.Authenticate(*tok, ""), "node-a");
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("", "node-a").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate(tok_b, "node-a").status()));
  std::string wrong = *tok;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate(wrong, "node-a").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("nodot", "node-a").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("../../etc/passwd.x", "").status()));
  // Revocation: deleting the file rejects the token at once.
  ASSERT_EQ(::unlink(BootstrapTokenAuthenticator::TokenPath(dir, "node-a").c_str()), 0);
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate(*tok, "node-a").status()));
  EXPECT_FALSE(BootstrapTokenAuthenticator::EnsureNodeToken(dir, "Bad/Name").ok());
}

ReviewedToken Reviewed(std::string user, std::optional<std::string> node = std::nullopt,
                       std::vector<std::string> audiences = {"weft-ca"}) {
  ReviewedToken t;
  t.username = std::move(user);
  t.node_name = std::move(node);
  t.audiences = std::move(audiences);
  return t;
}

TEST(TokenReview, MapsReviewedUsersToNodes) {
  std::map<std::string, ReviewedToken> known = {
      {"kubelet-a", Reviewed("system:node:node-a")},
      {"zt-bound", Reviewed("system:serviceaccount:weft-system:ztunnel", "node-b")},
      {"other-sa", Reviewed("system:serviceaccount:default:sleep")},
  };
  int calls = 0;
  TokenReviewer reviewer = [&](std::string_view t) -> absl::StatusOr<ReviewedToken> {
    ++calls;
    if (t == "apiserver-down") return absl::UnavailableError("connection refused");
    auto it = known.find(std::string(t));
    if (it == known.end()) return absl::UnauthenticatedError("token not authenticated");
    return it->second;
  };
  TokenReviewAuthenticator auth(reviewer, {"system:serviceaccount:weft-system:ztunnel"});
  EXPECT_EQ(*auth.Authenticate("kubelet-a", "node-a"), "node-a");
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("kubelet-a", "node-b").status()));
  EXPECT_EQ(*auth.Authenticate("zt-bound", "node-b"), "node-b");
  EXPECT_EQ(*auth.Authenticate("zt-bound", ""), "node-b");
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("zt-bound", "node-a").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("other-sa", "node-a").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("forged", "node-a").status()));
  EXPECT_TRUE(absl::IsUnavailable(auth.Authenticate("apiserver-down", "node-a").status()));
  int before = calls;
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("", "node-a").status()));
  EXPECT_EQ(calls, before);  // no review for a missing token
}

// Issue 13 hole 4: a ztunnel token bound to no node and no pod could speak for any node.
TEST(TokenReview, RefusesTokensBoundToNeitherNodeNorPod) {
  TokenReviewAuthenticator auth(
      [](std::string_view) -> absl::StatusOr<ReviewedToken> {
        return Reviewed("system:serviceaccount:weft-system:ztunnel");
      },
      {"system:serviceaccount:weft-system:ztunnel"});
  for (std::string_view claimed : {"node-c", ""}) {
    auto r = auth.Authenticate("zt-unbound", claimed);
    ASSERT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
    EXPECT_NE(r.status().message().find("bound to neither a node nor a pod"), std::string::npos)
        << r.status();
  }
  EXPECT_EQ(auth.stats().unbound, 2u);
}

TEST(TokenReview, RefusesTokensNotValidForTheCaAudience) {
  std::vector<std::string> audiences;
  auto registry = std::make_shared<prometheus::Registry>();
  TokenReviewAuthenticator auth(
      [&](std::string_view) -> absl::StatusOr<ReviewedToken> {
        return Reviewed("system:serviceaccount:weft-system:ztunnel", "node-a", audiences);
      },
      {"system:serviceaccount:weft-system:ztunnel"}, {.cache_ttl = std::chrono::seconds(0)},
      registry);
  for (auto aud : {std::vector<std::string>{},
                   {"https://kubernetes.default.svc.cluster.local"},
                   {"weft-ca-other"}}) {
    audiences = aud;
    auto r = auth.Authenticate("t", "node-a");
    ASSERT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
    EXPECT_NE(r.status().message().find("not valid for audience weft-ca"), std::string::npos);
  }
  audiences = {"https://kubernetes.default.svc.cluster.local", "weft-ca"};
  EXPECT_EQ(*auth.Authenticate("t", "node-a"), "node-a");
  EXPECT_EQ(auth.stats().audience, 3u);
  bool found = false;
  for (const auto& fam : registry->Collect()) {
    if (fam.name != "weft_ca_token_reviews_total") continue;
    for (const auto& m : fam.metric) {
      if (m.label.size() == 1 && m.label[0].value == "audience") {
        EXPECT_EQ(m.counter.value, 3);
        found = true;
      }
    }
  }
  EXPECT_TRUE(found);
}

// A pod-bound token without the node-name extra (Kubernetes < 1.30): its pod must be one the
// model has running on the claimed node, with the token's pod uid.
TEST(TokenReview, PodBoundTokenCountsOnlyOnItsPodsNode) {
  ReviewedToken pod_bound = Reviewed("system:serviceaccount:weft-system:ztunnel");
  pod_bound.pod_name = "weft-node-x7k2p";
  pod_bound.pod_uid = "uid-1";
  std::vector<std::tuple<std::string, std::string, std::string>> asked;
  TokenReviewAuthOptions opts;
  opts.pod_node = [&](std::string_view ns, std::string_view name,
                      std::string_view uid) -> std::optional<std::string> {
    asked.emplace_back(ns, name, uid);
    if (ns == "weft-system" && name == "weft-node-x7k2p" && uid == "uid-1") {
      return std::string("node-a");
    }
    return std::nullopt;
  };
  TokenReviewAuthenticator auth(
      [&](std::string_view) -> absl::StatusOr<ReviewedToken> { return pod_bound; },
      {"system:serviceaccount:weft-system:ztunnel"}, opts);
  EXPECT_EQ(*auth.Authenticate("t", "node-a"), "node-a");
  EXPECT_EQ(*auth.Authenticate("t", ""), "node-a");
  ASSERT_FALSE(asked.empty());
  EXPECT_EQ(asked[0], std::make_tuple("weft-system", "weft-node-x7k2p", "uid-1"));
  auto other = auth.Authenticate("t", "node-b");
  ASSERT_TRUE(absl::IsUnauthenticated(other.status())) << other.status();
  EXPECT_NE(other.status().message().find("runs on node node-a, not on node-b"), std::string::npos);
  // The pod was replaced (another uid) or is gone: refused.
  pod_bound.pod_uid = "uid-old";
  auto gone = TokenReviewAuthenticator(
                  [&](std::string_view) -> absl::StatusOr<ReviewedToken> { return pod_bound; },
                  {"system:serviceaccount:weft-system:ztunnel"}, opts)
                  .Authenticate("t", "node-a");
  EXPECT_TRUE(absl::IsUnauthenticated(gone.status())) << gone.status();
}

struct FakeSteadyClock {
  std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
  std::function<std::chrono::steady_clock::time_point()> Fn() {
    return [this] { return now; };
  }
};

TEST(TokenReview, CachesResultsByTokenForTheirTtl) {
  FakeSteadyClock clock;
  std::map<std::string, int> reviews;
  bool down = false;
  TokenReviewAuthOptions opts;
  opts.cache_ttl = std::chrono::seconds(60);
  opts.negative_cache_ttl = std::chrono::seconds(10);
  opts.cache_entries = 3;
  opts.clock = clock.Fn();
  TokenReviewAuthenticator auth(
      [&](std::string_view t) -> absl::StatusOr<ReviewedToken> {
        ++reviews[std::string(t)];
        if (down) return absl::UnavailableError("connection refused");
        if (t.substr(0, 4) == "good") {
          return Reviewed("system:serviceaccount:weft-system:ztunnel", "node-a");
        }
        return absl::UnauthenticatedError("invalid bearer token");
      },
      {"system:serviceaccount:weft-system:ztunnel"}, opts);
  EXPECT_TRUE(auth.Authenticate("good", "node-a").ok());
  EXPECT_TRUE(auth.Authenticate("good", "node-a").ok());
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("good", "node-b").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("junk", "node-a").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("junk", "node-a").status()));
  EXPECT_EQ(reviews["good"], 1);
  EXPECT_EQ(reviews["junk"], 1);
  EXPECT_EQ(auth.stats().cache_hits, 3u);
  // The negative entry expires first.
  clock.now += std::chrono::seconds(11);
  EXPECT_TRUE(auth.Authenticate("good", "node-a").ok());
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("junk", "node-a").status()));
  EXPECT_EQ(reviews["good"], 1);
  EXPECT_EQ(reviews["junk"], 2);
  clock.now += std::chrono::seconds(50);
  EXPECT_TRUE(auth.Authenticate("good", "node-a").ok());
  EXPECT_EQ(reviews["good"], 2);
  // A failed review is not cached.
  down = true;
  EXPECT_TRUE(absl::IsUnavailable(auth.Authenticate("good-2", "node-a").status()));
  down = false;
  EXPECT_TRUE(auth.Authenticate("good-2", "node-a").ok());
  EXPECT_EQ(reviews["good-2"], 2);
  // Bounded: with 3 entries, the oldest ("good" of the last round) is dropped.
  EXPECT_TRUE(auth.Authenticate("good-3", "node-a").ok());
  EXPECT_TRUE(auth.Authenticate("good-4", "node-a").ok());
  EXPECT_TRUE(auth.Authenticate("good", "node-a").ok());
  EXPECT_EQ(reviews["good"], 3);
  EXPECT_TRUE(auth.Authenticate("good-4", "node-a").ok());
  EXPECT_EQ(reviews["good-4"], 1);
}

TEST(TokenReview, RateLimitsReviewsPerClient) {
  FakeSteadyClock clock;
  int reviews = 0;
  TokenReviewAuthOptions opts;
  opts.reviews_per_second = 1;
  opts.burst = 5;
  opts.max_clients = 2;
  opts.clock = clock.Fn();
  TokenReviewAuthenticator auth(
      [&](std::string_view t) -> absl::StatusOr<ReviewedToken> {
        ++reviews;
        if (t == "good") return Reviewed("system:serviceaccount:weft-system:ztunnel", "node-a");
        return absl::UnauthenticatedError("invalid bearer token");
      },
      {"system:serviceaccount:weft-system:ztunnel"}, opts);
  for (int i = 0; i < 5; ++i) {
    auto r = auth.Authenticate(absl::StrCat("junk-", i), "node-a", "ipv4:10.0.0.9");
    EXPECT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
  }
  auto limited = auth.Authenticate("junk-5", "node-a", "ipv4:10.0.0.9");
  ASSERT_TRUE(absl::IsResourceExhausted(limited.status())) << limited.status();
  EXPECT_NE(limited.status().message().find("ipv4:10.0.0.9"), std::string::npos);
  EXPECT_EQ(reviews, 5);
  EXPECT_EQ(auth.stats().rate_limited, 1u);
  // Cached answers cost nothing: the flooding client's known token is still answered.
  EXPECT_TRUE(
      absl::IsUnauthenticated(auth.Authenticate("junk-0", "node-a", "ipv4:10.0.0.9").status()));
  // Another client is served.
  EXPECT_EQ(*auth.Authenticate("good", "node-a", "ipv4:10.0.0.1"), "node-a");
  // The bucket refills at the configured rate.
  clock.now += std::chrono::seconds(1);
  EXPECT_TRUE(
      absl::IsUnauthenticated(auth.Authenticate("junk-6", "node-a", "ipv4:10.0.0.9").status()));
  EXPECT_TRUE(
      absl::IsResourceExhausted(auth.Authenticate("junk-7", "node-a", "ipv4:10.0.0.9").status()));
  EXPECT_EQ(reviews, 7);
}

TEST(TokenReview, ClientAddressDropsThePort) {
  EXPECT_EQ(ClientAddress("ipv4:10.0.0.7:5123"), "ipv4:10.0.0.7");
  EXPECT_EQ(ClientAddress("ipv6:[fd00::7]:5123"), "ipv6:[fd00::7]");
  EXPECT_EQ(ClientAddress("ipv6:%5B::1%5D:5123"), "ipv6:%5B::1%5D:5123");
  EXPECT_EQ(ClientAddress("unix:/run/weft.sock"), "unix:/run/weft.sock");
}

TEST(CaService, AuthorizesPerNodeAndCountsEveryResult) {
  testing::TempDir tmp;
  auto root = *tls::CertificateAuthority::CreateRoot("weft", hours(24 * 365));
  Issuer issuer(std::move(root), IssuerOptions{});
  BootstrapTokenAuthenticator authn(tmp.path());
  std::string tok_a = *BootstrapTokenAuthenticator::EnsureNodeToken(tmp.path(), "node-a");
  NodeAuthorizer authz = [](std::string_view node, const SpiffeId& id) {
    return node == "node-a" && id.ns == "default" && id.service_account == "sleep";
  };
  CaService svc(&issuer, &authn, authz);

  weft::ca::v1::CertificateRequest req;
  auto c = MakeCsrFor(Id("default", "sleep"));
  req.set_csr_pem(c.pem);
  req.set_identity("spiffe://cluster.local/ns/default/sa/sleep");
  req.set_node("node-a");
  auto ok = svc.Handle("Bearer " + tok_a, req);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(svc.RequestCount("ok"), 1);

  // A foreign identity (a pod on another node) is refused and counted.
  auto c2 = MakeCsrFor(Id("prod", "db"));
  req.set_csr_pem(c2.pem);
  req.set_identity("spiffe://cluster.local/ns/prod/sa/db");
  auto denied = svc.Handle("Bearer " + tok_a, req);
  ASSERT_TRUE(absl::IsPermissionDenied(denied.status())) << denied.status();
  EXPECT_NE(denied.status().message().find("node node-a runs no pod"), std::string::npos);
  EXPECT_EQ(svc.RequestCount("permission_denied"), 1);

  // No token, wrong scheme, wrong token.
  req.set_csr_pem(c.pem);
  req.set_identity("spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_TRUE(absl::IsUnauthenticated(svc.Handle("", req).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(svc.Handle("Basic " + tok_a, req).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(svc.Handle("Bearer node-a.00", req).status()));
  EXPECT_EQ(svc.RequestCount("unauthenticated"), 3);

  // CSR/identity mismatch on an authorized identity.
  req.set_csr_pem(c2.pem);
  EXPECT_TRUE(absl::IsInvalidArgument(svc.Handle("Bearer " + tok_a, req).status()));
  EXPECT_EQ(svc.RequestCount("invalid"), 1);
}

// Serial of a PEM certificate as OpenSSL prints it (hex, upper case).
std::string OpenSslSerial(const std::string& pem) {
  auto cert = *tls::CertFromPem(pem);
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert.get()), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string out = hex;
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::string Scrape(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

TEST(CaService, RecordsTheNewestCertificatePerNodeAndIdentityAndDropsPodsThatLeft) {
  testing::TempDir tmp;
  system_clock::time_point now = std::chrono::floor<seconds>(system_clock::now());
  auto clock = [&now] { return now; };
  Issuer issuer(*tls::CertificateAuthority::CreateRoot("weft", hours(24 * 365)),
                IssuerOptions{.clock = clock});
  BootstrapTokenAuthenticator authn(tmp.path());
  std::string tok_a = *BootstrapTokenAuthenticator::EnsureNodeToken(tmp.path(), "node-a");
  std::string tok_b = *BootstrapTokenAuthenticator::EnsureNodeToken(tmp.path(), "node-b");
  // The scheduling the model would report: node -> identities (sorted).
  std::mutex mu;
  std::map<std::string, std::set<std::string>> on_node = {
      {"node-a",
       {"spiffe://cluster.local/ns/default/sa/sleep", "spiffe://cluster.local/ns/prod/sa/web"}},
      {"node-b", {"spiffe://cluster.local/ns/prod/sa/db"}}};
  auto ids = [&](std::string_view node) {
    std::lock_guard l(mu);
    auto it = on_node.find(std::string(node));
    return it == on_node.end() ? std::vector<std::string>{}
                               : std::vector<std::string>(it->second.begin(), it->second.end());
  };
  NodeAuthorizer authz = [&](std::string_view node, const SpiffeId& id) {
    auto v = ids(node);
    return std::binary_search(v.begin(), v.end(), id.ToString());
  };
  CaService svc(&issuer, &authn, authz);
  svc.SetNodeIdentities(ids);
  auto issue = [&](const std::string& token, const std::string& node, const SpiffeId& id,
                   seconds ttl) {
    weft::ca::v1::CertificateRequest req;
    req.set_csr_pem(MakeCsrFor(id).pem);
    req.set_identity(id.ToString());
    req.set_node(node);
    req.set_validity_seconds(ttl.count());
    return svc.Handle("Bearer " + token, req);
  };

  EXPECT_TRUE(svc.IssuedCertificates().empty());
  auto sleep1 = issue(tok_a, "node-a", Id("default", "sleep"), hours(24));
  ASSERT_TRUE(sleep1.ok()) << sleep1.status();
  const auto t0 = now;
  now += std::chrono::minutes(5);
  auto web = issue(tok_a, "node-a", Id("prod", "web"), hours(2));
  ASSERT_TRUE(web.ok()) << web.status();
  auto db = issue(tok_b, "node-b", Id("prod", "db"), hours(24));
  ASSERT_TRUE(db.ok()) << db.status();
  // Refused requests leave no record.
  ASSERT_FALSE(issue(tok_b, "node-b", Id("prod", "web"), hours(24)).ok());

  auto recs = svc.IssuedCertificates();
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].node, "node-a");
  EXPECT_EQ(recs[0].identity, "spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_EQ(recs[0].serial, OpenSslSerial(sleep1->front()));
  EXPECT_EQ(recs[0].issued_at, t0);
  EXPECT_EQ(recs[0].not_after, t0 + hours(24));
  EXPECT_LE(recs[0].not_before, t0);
  EXPECT_EQ(recs[1].identity, "spiffe://cluster.local/ns/prod/sa/web");
  EXPECT_EQ(recs[1].not_after, now + hours(2));
  EXPECT_EQ(recs[2].node, "node-b");
  std::string metrics = Scrape(*svc.registry());
  EXPECT_NE(metrics.find("weft_ca_issued_cert_expiry_timestamp_seconds{identity=\"spiffe://"
                         "cluster.local/ns/prod/sa/db\",node=\"node-b\"}"),
            std::string::npos)
      << metrics;

  // A renewal replaces the record: one entry per (node, identity), the newest serial.
  now += hours(12);
  auto sleep2 = issue(tok_a, "node-a", Id("default", "sleep"), hours(24));
  ASSERT_TRUE(sleep2.ok()) << sleep2.status();
  recs = svc.IssuedCertificates();
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].serial, OpenSslSerial(sleep2->front()));
  EXPECT_NE(recs[0].serial, OpenSslSerial(sleep1->front()));
  EXPECT_EQ(recs[0].issued_at, now);
  EXPECT_EQ(recs[0].not_after, now + hours(24));

  // The web pod leaves node-a and node-b's pod is deleted: their records and series go.
  {
    std::lock_guard l(mu);
    on_node["node-a"].erase("spiffe://cluster.local/ns/prod/sa/web");
    on_node.erase("node-b");
  }
  recs = svc.IssuedCertificates();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].identity, "spiffe://cluster.local/ns/default/sa/sleep");
  metrics = Scrape(*svc.registry());
  EXPECT_EQ(metrics.find("sa/web"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("node-b"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sa/sleep"), std::string::npos) << metrics;
}

TEST(CaService, IssuancesAloneKeepTheRecordsBounded) {
  // Nobody reads IssuedCertificates(): issuances still drop records of pods that left, their
  // own node's at once and every node's at least once a minute.
  testing::TempDir tmp;
  system_clock::time_point now = std::chrono::floor<seconds>(system_clock::now());
  Issuer issuer(*tls::CertificateAuthority::CreateRoot("weft", hours(24 * 365)),
                IssuerOptions{.clock = [&now] { return now; }});
  BootstrapTokenAuthenticator authn(tmp.path());
  std::string tok_a = *BootstrapTokenAuthenticator::EnsureNodeToken(tmp.path(), "node-a");
  std::string tok_b = *BootstrapTokenAuthenticator::EnsureNodeToken(tmp.path(), "node-b");
  std::set<std::string> live;  // "node|sa" of scheduled pods; no identity lister: authz decides
  NodeAuthorizer authz = [&](std::string_view node, const SpiffeId& id) {
    return live.count(std::string(node) + "|" + id.service_account) > 0;
  };
  CaService svc(&issuer, &authn, authz);
  auto issue = [&](const std::string& token, const std::string& node, const std::string& sa) {
    weft::ca::v1::CertificateRequest req;
    req.set_csr_pem(MakeCsrFor(Id("default", sa)).pem);
    req.set_identity(Id("default", sa).ToString());
    req.set_node(node);
    ASSERT_TRUE(svc.Handle("Bearer " + token, req).ok());
  };
  auto series = [&] {
    std::string m = Scrape(*svc.registry());
    size_t n = 0;
    for (size_t p = 0;
         (p = m.find("weft_ca_issued_cert_expiry_timestamp_seconds{", p)) != std::string::npos;
         ++p) {
      ++n;
    }
    return n;
  };
  // Pods come and go on node-a: each issuance drops node-a's departed pods.
  for (int i = 0; i < 50; ++i) {
    std::string sa = "job-" + std::to_string(i);
    live.insert("node-a|" + sa);
    issue(tok_a, "node-a", sa);
    live.erase("node-a|" + sa);
  }
  EXPECT_EQ(series(), 1u);  // only the last job's record is left (its pod left after)
  live.insert("node-b|db");
  issue(tok_b, "node-b", "db");
  EXPECT_EQ(series(), 2u);  // node-a's record survives until the next full sweep
  live.erase("node-b|db");  // node-b's pod is gone; node-b never asks again
  now += std::chrono::minutes(2);
  live.insert("node-a|web");
  issue(tok_a, "node-a", "web");  // the full sweep drops node-b's record and node-a's last job
  EXPECT_EQ(series(), 1u);
}
}  // namespace
}  // namespace weft::cp
