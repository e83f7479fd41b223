// Cluster-mode CA glue against recorded API-server replies (controlplane/k8s's TestApiServer):
// the root persisted in a Secret and TokenReview-based node authentication.
#include "controlplane/ca/k8s_ca.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "controlplane/k8s/test_api_server.h"
#include "nlohmann/json.hpp"

namespace weft::cp {
namespace {

using k8s::testing::Fixture;
using k8s::testing::ScriptedReply;
using k8s::testing::TestApiServer;
using std::chrono::hours;

constexpr char kSecretPath[] = "/api/v1/namespaces/weft-system/secrets/weft-ca-root";
constexpr char kSecretsPath[] = "/api/v1/namespaces/weft-system/secrets";
constexpr char kReviewPath[] = "/apis/authentication.k8s.io/v1/tokenreviews";

std::string NotFound() {
  return R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"secrets \"weft-ca-root\" not found","reason":"NotFound","code":404})";
}

TEST(KubernetesSecretRootStore, FirstStartCreatesTheSecretAndARestartLoadsIt) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  KubernetesSecretRootStore store(&client, "weft-system");

  api.Enqueue(kSecretPath, {.status = 404, .body = NotFound()});
  api.Enqueue(kSecretsPath, {.status = 201, .body = "{}"});
  auto first = LoadOrCreateRoot(store, "weft", hours(24 * 365));
  ASSERT_TRUE(first.ok()) << first.status();

  auto posts = api.Requests(kSecretsPath);
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].method, "POST");
  auto secret = nlohmann::json::parse(posts[0].body);
  EXPECT_EQ(secret["kind"], "Secret");
  EXPECT_EQ(secret["metadata"]["name"], "weft-ca-root");
  std::string cert, key;
  ASSERT_TRUE(absl::Base64Unescape(secret["data"]["ca-cert.pem"].get<std::string>(), &cert));
  ASSERT_TRUE(absl::Base64Unescape(secret["data"]["ca-key.pem"].get<std::string>(), &key));
  EXPECT_EQ(cert, first->root_pem());

  // Restart: the API server returns the Secret as stored.
  nlohmann::json stored = secret;
  stored["metadata"]["resourceVersion"] = "42";
  api.Enqueue(kSecretPath, {.status = 200, .body = stored.dump()});
  auto second = LoadOrCreateRoot(store, "weft", hours(24 * 365));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->root_pem(), first->root_pem());
  EXPECT_EQ(api.Requests(kSecretsPath).size(), 1u);  // no second create
}

TEST(KubernetesSecretRootStore, LosingTheCreateRaceLoadsTheWinnersRoot) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  KubernetesSecretRootStore store(&client, "weft-system");
  auto winner = *tls::CertificateAuthority::CreateRoot("weft", hours(24));
  nlohmann::json stored = {{"kind", "Secret"},
                           {"data",
                            {{"ca-cert.pem", absl::Base64Escape(winner.root_pem())},
                             {"ca-key.pem", absl::Base64Escape(*winner.KeyPem())}}}};
  api.Enqueue(kSecretPath, {.status = 404, .body = NotFound()});
  api.Enqueue(kSecretsPath, {.status = 409, .body = R"({"kind":"Status","code":409})"});
  api.Enqueue(kSecretPath, {.status = 200, .body = stored.dump()});
  auto ca = LoadOrCreateRoot(store, "weft", hours(24));
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(ca->root_pem(), winner.root_pem());
}

TEST(KubernetesSecretRootStore, ErrorsSayWhatIsWrong) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  KubernetesSecretRootStore store(&client, "weft-system");
  api.Enqueue(
      kSecretPath,
      {.status = 403, .body = R"({"kind":"Status","message":"secrets is forbidden","code":403})"});
  auto r = store.Load();
  ASSERT_TRUE(absl::IsPermissionDenied(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("grant weftd 'get'"), std::string::npos);

  api.Enqueue(kSecretPath,
              {.status = 200, .body = R"({"kind":"Secret","data":{"ca-cert.pem":"!!"}})"});
  r = store.Load();
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();

  api.Stop();
  EXPECT_FALSE(store.Load().ok());
}

TEST(KubernetesTokenReviewer, RecordedReviewsAuthenticateNodes) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  TokenReviewAuthenticator authn(KubernetesTokenReviewer(&client, {"weft-ca"}),
                                 {"system:serviceaccount:weft-system:weft-node"});

  api.Enqueue(kReviewPath, {.status = 201, .body = Fixture("tokenreview_authenticated.json")});
  auto node = authn.Authenticate("eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.sig", "node-1");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(*node, "node-1");
  auto reqs = api.Requests(kReviewPath);
  ASSERT_EQ(reqs.size(), 1u);
  auto sent = nlohmann::json::parse(reqs[0].body);
  EXPECT_EQ(sent["spec"]["token"], "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.sig");

  // The same (node-bound) token claiming another node.
  api.Enqueue(kReviewPath, {.status = 201, .body = Fixture("tokenreview_authenticated.json")});
  EXPECT_TRUE(absl::IsUnauthenticated(authn.Authenticate("t", "node-2").status()));

  api.Enqueue(kReviewPath, {.status = 201, .body = Fixture("tokenreview_rejected.json")});
  auto rejected = authn.Authenticate("expired-token", "node-1");
  ASSERT_TRUE(absl::IsUnauthenticated(rejected.status())) << rejected.status();
  EXPECT_NE(rejected.status().message().find("expired"), std::string::npos);

  // weftd itself lacks RBAC for tokenreviews: the node is told to retry, not that its token is
  // bad.
  api.Enqueue(kReviewPath, {.status = 403, .body = Fixture("status_403_tokenreviews.json")});
  auto forbidden = authn.Authenticate("t", "node-1");
  EXPECT_TRUE(absl::IsUnavailable(forbidden.status())) << forbidden.status();
}

}  // namespace
}  // namespace weft::cp
