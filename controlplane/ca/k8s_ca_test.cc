// Cluster-mode CA glue against recorded API-server replies (controlplane/k8s's TestApiServer):
// the root persisted in a Secret and TokenReview-based node authentication.
#include "controlplane/ca/k8s_ca.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
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
  auto forbidden = authn.Authenticate("t-403", "node-1");
  EXPECT_TRUE(absl::IsUnavailable(forbidden.status())) << forbidden.status();
}

// Issue 13 hole 4, against recorded TokenReview replies: a node's token must be valid for the
// CA's audience and bound to the node it speaks for; reviews are cached and rate-limited.
constexpr char kZtunnelSa[] = "system:serviceaccount:weft-system:weft-node";
constexpr char kBoundToken[] = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.sig";

TEST(KubernetesTokenReviewer, SendsTheCaAudienceAndRefusesATokenWithoutIt) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  TokenReviewAuthenticator authn(KubernetesTokenReviewer(&client), {kZtunnelSa});
  // A node-bound token minted for the API server's default audience.
  api.Enqueue(kReviewPath, {.status = 201, .body = Fixture("tokenreview_default_audience.json")});
  auto r = authn.Authenticate("eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.api", "node-1");
  ASSERT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("not valid for audience weft-ca"), std::string::npos)
      << r.status();
  auto reqs = api.Requests(kReviewPath);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(reqs[0].body)["spec"]["audiences"],
            nlohmann::json::array({"weft-ca"}));
}

TEST(KubernetesTokenReviewer, RefusesATokenBoundToAnotherNode) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  TokenReviewAuthenticator authn(KubernetesTokenReviewer(&client), {kZtunnelSa});
  api.Enqueue(kReviewPath, {.status = 201, .body = Fixture("tokenreview_authenticated.json")});
  auto r = authn.Authenticate(kBoundToken, "node-2");
  ASSERT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("bound to node node-1, not to node-2"), std::string::npos)
      << r.status();
}

TEST(KubernetesTokenReviewer, RefusesATokenBoundToNoNodeAndNoPod) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  TokenReviewAuthenticator authn(KubernetesTokenReviewer(&client), {kZtunnelSa});
  api.Enqueue(kReviewPath, {.status = 201, .body = Fixture("tokenreview_unbound.json")});
  auto r = authn.Authenticate("legacy-secret-token", "node-1");
  ASSERT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("bound to neither a node nor a pod"), std::string::npos)
      << r.status();
}

TEST(KubernetesTokenReviewer, CacheAnswersARepeatWithoutASecondReview) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  TokenReviewAuthenticator authn(KubernetesTokenReviewer(&client), {kZtunnelSa});
  api.SetHandler(kReviewPath, [](const k8s::testing::RecordedRequest& r) -> ScriptedReply {
    auto token = nlohmann::json::parse(r.body)["spec"].value("token", "");
    if (token == kBoundToken) {
      return {.status = 201, .body = Fixture("tokenreview_authenticated.json")};
    }
    return {.status = 201, .body = Fixture("tokenreview_rejected.json")};
  });
  for (int i = 0; i < 3; ++i) {
    auto ok = authn.Authenticate(kBoundToken, "node-1");
    ASSERT_TRUE(ok.ok()) << ok.status();
    EXPECT_TRUE(absl::IsUnauthenticated(authn.Authenticate("expired-token", "node-1").status()));
  }
  EXPECT_EQ(api.Requests(kReviewPath).size(), 2u);  // one per distinct token
}

TEST(KubernetesTokenReviewer, PodBoundTokenCountsForTheNodeItsPodRunsOn) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  TokenReviewAuthOptions opts;
  opts.pod_node = [](std::string_view ns, std::string_view name,
                     std::string_view uid) -> std::optional<std::string> {
    if (ns == "weft-system" && name == "weft-node-x7k2p" &&
        uid == "9e8d7c6b-0000-4000-8000-000000000002") {
      return std::string("node-1");
    }
    return std::nullopt;
  };
  TokenReviewAuthenticator authn(KubernetesTokenReviewer(&client), {kZtunnelSa}, opts);
  api.SetHandler(kReviewPath, [](const k8s::testing::RecordedRequest&) -> ScriptedReply {
    return {.status = 201, .body = Fixture("tokenreview_pod_bound.json")};
  });
  auto ok = authn.Authenticate("eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.pod", "node-1");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "node-1");
  auto other = authn.Authenticate("eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.pod", "node-2");
  EXPECT_TRUE(absl::IsUnauthenticated(other.status())) << other.status();
}

TEST(KubernetesTokenReviewer, RateLimitRefusesTheNextJunkTokenOfOneClientOnly) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  auto now = std::chrono::steady_clock::time_point(hours(1));
  TokenReviewAuthOptions opts;
  opts.burst = 3;
  opts.reviews_per_second = 0.5;
  opts.clock = [&now] { return now; };  // no refill unless the test moves it
  TokenReviewAuthenticator authn(KubernetesTokenReviewer(&client), {kZtunnelSa}, opts);
  api.SetHandler(kReviewPath, [](const k8s::testing::RecordedRequest& r) -> ScriptedReply {
    auto token = nlohmann::json::parse(r.body)["spec"].value("token", "");
    if (token == kBoundToken) {
      return {.status = 201, .body = Fixture("tokenreview_authenticated.json")};
    }
    return {.status = 201, .body = Fixture("tokenreview_rejected.json")};
  });
  for (int i = 0; i < 3; ++i) {
    auto junk = authn.Authenticate(absl::StrCat("junk-", i), "node-1", "ipv4:10.1.2.3");
    EXPECT_TRUE(absl::IsUnauthenticated(junk.status())) << junk.status();
  }
  auto limited = authn.Authenticate("junk-3", "node-1", "ipv4:10.1.2.3");
  EXPECT_TRUE(absl::IsResourceExhausted(limited.status())) << limited.status();
  EXPECT_EQ(api.Requests(kReviewPath).size(), 3u);  // the API server never saw junk-3
  auto served = authn.Authenticate(kBoundToken, "node-1", "ipv4:10.1.2.4");
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(api.Requests(kReviewPath).size(), 4u);
  EXPECT_EQ(authn.stats().rate_limited, 1u);
  now += std::chrono::seconds(2);  // one review's worth of refill
  EXPECT_TRUE(
      absl::IsUnauthenticated(authn.Authenticate("junk-3", "node-1", "ipv4:10.1.2.3").status()));
}

constexpr char kConfigMapPath[] = "/api/v1/namespaces/weft-system/configmaps/weft-ca-root-cert";
constexpr char kConfigMapsPath[] = "/api/v1/namespaces/weft-system/configmaps";

TEST(PublishRootCertConfigMap, CreatesLeavesAloneAndUpdatesKeepingOtherKeys) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  auto ca = *tls::CertificateAuthority::CreateRoot("weft", hours(24));
  const std::string root = ca.root_pem();

  // First start: absent -> POST.
  api.Enqueue(kConfigMapPath,
              {.status = 404, .body = R"({"kind":"Status","reason":"NotFound","code":404})"});
  api.Enqueue(kConfigMapsPath, {.status = 201, .body = "{}"});
  auto r = PublishRootCertConfigMap(&client, "weft-system", root);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, PublishResult::kCreated);
  auto posts = api.Requests(kConfigMapsPath);
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].method, "POST");
  auto created = nlohmann::json::parse(posts[0].body);
  EXPECT_EQ(created["kind"], "ConfigMap");
  EXPECT_EQ(created["metadata"]["name"], "weft-ca-root-cert");
  EXPECT_EQ(created["metadata"]["namespace"], "weft-system");
  EXPECT_EQ(created["data"]["root-cert.pem"], root);
  EXPECT_EQ(created["data"].size(), 1u);  // never a key

  // Restart with the same root: one GET, no write.
  nlohmann::json stored = created;
  stored["metadata"]["resourceVersion"] = "7";
  api.Enqueue(kConfigMapPath, {.status = 200, .body = stored.dump()});
  r = PublishRootCertConfigMap(&client, "weft-system", root);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, PublishResult::kUnchanged);
  EXPECT_EQ(api.Requests(kConfigMapPath).size(), 2u);
  EXPECT_EQ(api.Requests(kConfigMapsPath).size(), 1u);

  // Stale content (someone edited it, another key added): PUT with the read resourceVersion,
  // the other key kept; a 409 on the first PUT reads again.
  stored["data"]["root-cert.pem"] = "stale";
  stored["data"]["extra.pem"] = "kept";
  api.Enqueue(kConfigMapPath, {.status = 200, .body = stored.dump()});
  api.Enqueue(kConfigMapPath, {.status = 409, .body = R"({"kind":"Status","code":409})"});
  stored["metadata"]["resourceVersion"] = "8";
  api.Enqueue(kConfigMapPath, {.status = 200, .body = stored.dump()});
  api.Enqueue(kConfigMapPath, {.status = 200, .body = "{}"});
  r = PublishRootCertConfigMap(&client, "weft-system", root);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, PublishResult::kUpdated);
  std::vector<k8s::testing::RecordedRequest> puts;
  for (const auto& q : api.Requests(kConfigMapPath)) {
    if (q.method == "PUT") puts.push_back(q);
  }
  ASSERT_EQ(puts.size(), 2u);
  auto second = nlohmann::json::parse(puts[1].body);
  EXPECT_EQ(second["metadata"]["resourceVersion"], "8");
  EXPECT_EQ(second["data"]["root-cert.pem"], root);
  EXPECT_EQ(second["data"]["extra.pem"], "kept");
}

TEST(PublishRootCertConfigMap, ErrorsNameTheMissingPermission) {
  TestApiServer api;
  k8s::RestClient client(k8s::PlainEndpoint(api.url()));
  api.Enqueue(kConfigMapPath, {.status = 404, .body = "{}"});
  api.Enqueue(kConfigMapsPath, {.status = 403,
                                .body = R"({"kind":"Status","message":"configmaps is forbidden: )"
                                        R"(User cannot create","code":403})"});
  auto r = PublishRootCertConfigMap(&client, "weft-system", "PEM");
  ASSERT_TRUE(absl::IsPermissionDenied(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("grant weftd 'create' on configmaps in its namespace"),
            std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("ConfigMap weft-system/weft-ca-root-cert"), std::string::npos)
      << r.status();

  api.Enqueue(kConfigMapPath, {.status = 401, .body = Fixture("status_401.json")});
  r = PublishRootCertConfigMap(&client, "weft-system", "PEM");
  ASSERT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("rejected weftd's credentials"), std::string::npos);
}
}  // namespace
}  // namespace weft::cp
