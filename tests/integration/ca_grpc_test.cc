// The real gRPC CertificateService on 127.0.0.1:0 with ztunnel's CaCertificateProvider as the
// client: TLS with the CA-issued serving cert, node authorization, renewal at half-life with an
// injected clock, backoff while weftd is down and recovery after.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "common/testing/temp_dir.h"
#include "controlplane/ca/ca.h"
#include "controlplane/ca/ca_server.h"
#include "ztunnel/identity/ca_client.h"

namespace weft::cp {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::system_clock;

class FakeClock {
 public:
  FakeClock()
      : ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::floor<seconds>(system_clock::now()).time_since_epoch())
                .count()) {}
  system_clock::time_point Now() const {
    return system_clock::time_point(
        std::chrono::duration_cast<system_clock::duration>(std::chrono::nanoseconds(ns_.load())));
  }
  void Advance(std::chrono::nanoseconds d) { ns_ += d.count(); }
  std::function<system_clock::time_point()> Fn() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> ns_;
};

const SpiffeId kSleep{"cluster.local", "default", "sleep"};
const SpiffeId kDb{"cluster.local", "prod", "db"};

class CaGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = tls::CertificateAuthority::CreateRoot("weft", hours(24 * 365));
    ASSERT_TRUE(root.ok()) << root.status();
    issuer_ = std::make_unique<Issuer>(std::move(*root), IssuerOptions{.clock = clock_.Fn()});
    token_dir_ = tmp_.path() + "/tokens";
    token_ = *BootstrapTokenAuthenticator::EnsureNodeToken(token_dir_, "node-a");
    authn_ = std::make_unique<BootstrapTokenAuthenticator>(token_dir_);
    service_ = std::make_unique<CaService>(
        issuer_.get(), authn_.get(), [this](std::string_view node, const SpiffeId& id) {
          std::lock_guard l(mu_);
          return allowed_.count({std::string(node), id.ToString()}) > 0;
        });
    Allow("node-a", kSleep);
    Allow("node-b", kDb);  // on another node: node-a must not get it
  }
  void TearDown() override { StopServer(); }

  void Allow(std::string node, const SpiffeId& id) {
    std::lock_guard l(mu_);
    allowed_.insert({std::move(node), id.ToString()});
  }

  void StartServer(bool use_tls, int port = 0) {
    grpc::ServerBuilder b;
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (use_tls) {
      auto c = ServingCredentials(*issuer_, {"weftd.weft-system.svc", "localhost"});
      ASSERT_TRUE(c.ok()) << c.status();
      creds = *c;
    }
    b.AddListeningPort("127.0.0.1:" + std::to_string(port), creds, &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void StopServer() {
    if (server_) {
      server_->Shutdown(system_clock::now() + milliseconds(200));
      server_->Wait();
      server_.reset();
    }
  }

  ztunnel::CaClientOptions ClientOptions(bool use_tls,
                                         milliseconds rpc_timeout = milliseconds(5000)) {
    ztunnel::CaClientOptions o;
    o.address = "127.0.0.1:" + std::to_string(port_);
    if (use_tls) o.root_pem = issuer_->root_pem();
    o.node = "node-a";
    o.token = ztunnel::TokenFromFile(BootstrapTokenAuthenticator::TokenPath(token_dir_, "node-a"));
    o.clock = clock_.Fn();
    o.rpc_timeout = rpc_timeout;
    o.initial_backoff = seconds(10);
    o.max_backoff = seconds(80);
    o.max_reconnect_backoff = milliseconds(100);
    o.jitter_seed = 42;
    return o;
  }

  testing::TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<Issuer> issuer_;
  std::string token_dir_, token_;
  std::unique_ptr<BootstrapTokenAuthenticator> authn_;
  std::unique_ptr<CaService> service_;
  std::mutex mu_;
  std::set<std::pair<std::string, std::string>> allowed_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(CaGrpcTest, TlsIssuesVerifiedCertsOnlyForThisNodesIdentities) {
  StartServer(/*use_tls=*/true);
  ztunnel::Metrics metrics;
  auto o = ClientOptions(true);
  o.metrics = &metrics;
  auto client = ztunnel::CaCertificateProvider::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();

  auto b = (*client)->Get(kSleep);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->identity, kSleep);
  EXPECT_EQ(*tls::CertSpiffeId((*b)->leaf.get()), kSleep);
  EXPECT_EQ(X509_check_private_key((*b)->leaf.get(), (*b)->key.get()), 1);
  EXPECT_TRUE(tls::VerifyChain((*b)->leaf.get(), (*b)->intermediates, (*b)->roots).ok());
  EXPECT_NEAR(std::chrono::duration_cast<seconds>((*b)->not_after - clock_.Now()).count(),
              24 * 3600, 2);
  EXPECT_EQ(metrics.cert_expiry(kSleep.ToString()).Value(),
            static_cast<double>(system_clock::to_time_t((*b)->not_after)));
  // The bundle works for HBONE contexts.
  EXPECT_TRUE(ztunnel::TlsContextCache::BuildContext(**b, true).ok());
  // Cached: a second Get makes no request.
  EXPECT_EQ((*client)->Get(kSleep)->get(), b->get());
  EXPECT_EQ(service_->RequestCount("ok"), 1);

  // node-a asking for a pod identity scheduled on node-b: refused, counted.
  auto foreign = (*client)->Get(kDb);
  ASSERT_EQ(foreign.status().code(), absl::StatusCode::kPermissionDenied) << foreign.status();
  EXPECT_NE(foreign.status().message().find("runs no pod"), std::string::npos);
  EXPECT_EQ(service_->RequestCount("permission_denied"), 1);

  // A client that trusts another root does not talk to this weftd at all.
  auto other_root = *tls::CertificateAuthority::CreateRoot("other", hours(24));
  auto o2 = ClientOptions(true, milliseconds(500));
  o2.root_pem = other_root.root_pem();
  auto untrusting = *ztunnel::CaCertificateProvider::Create(o2);
  auto code = untrusting->Get(kSleep).status().code();
  EXPECT_TRUE(code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded)
      << code;
  EXPECT_EQ(service_->RequestCount("ok"), 1);
}

TEST_F(CaGrpcTest, MissingOrWrongBootstrapTokenIsUnauthenticated) {
  StartServer(/*use_tls=*/false);
  auto o = ClientOptions(false);
  o.token = nullptr;
  auto no_token = *ztunnel::CaCertificateProvider::Create(o);
  EXPECT_EQ(no_token->Get(kSleep).status().code(), absl::StatusCode::kUnauthenticated);

  o.token = [] { return absl::StatusOr<std::string>("node-a.deadbeef"); };
  auto wrong = *ztunnel::CaCertificateProvider::Create(o);
  EXPECT_EQ(wrong->Get(kSleep).status().code(), absl::StatusCode::kUnauthenticated);

  // node-b's valid token while claiming to be node-a.
  std::string tok_b = *BootstrapTokenAuthenticator::EnsureNodeToken(token_dir_, "node-b");
  o.token = [tok_b] { return absl::StatusOr<std::string>(tok_b); };
  auto impostor = *ztunnel::CaCertificateProvider::Create(o);
  EXPECT_EQ(impostor->Get(kSleep).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(service_->RequestCount("unauthenticated"), 3);
  EXPECT_EQ(service_->RequestCount("ok"), 0);
}

TEST_F(CaGrpcTest, TokenReviewPathOverGrpc) {
  // Same server, cluster-mode authenticator with an injected reviewer.
  TokenReviewAuthenticator tr(
      [](std::string_view t) -> absl::StatusOr<ReviewedToken> {
        if (t == "sa-token-node-a") {
          return ReviewedToken{"system:serviceaccount:weft-system:ztunnel",
                               "node-a",
                               std::nullopt,
                               std::nullopt,
                               {"weft-ca"}};
        }
        return absl::UnauthenticatedError("token not authenticated");
      },
      {"system:serviceaccount:weft-system:ztunnel"}, {.reviews_per_second = 1e-9, .burst = 2});
  service_ = std::make_unique<CaService>(
      issuer_.get(), &tr,
      [](std::string_view node, const SpiffeId& id) { return node == "node-a" && id == kSleep; });
  StartServer(/*use_tls=*/false);
  auto o = ClientOptions(false);
  o.token = [] { return absl::StatusOr<std::string>("sa-token-node-a"); };
  auto client = *ztunnel::CaCertificateProvider::Create(o);
  EXPECT_TRUE(client->Get(kSleep).ok());
  o.token = [] { return absl::StatusOr<std::string>("stolen"); };
  auto bad = *ztunnel::CaCertificateProvider::Create(o);
  EXPECT_EQ(bad->Get(kSleep).status().code(), absl::StatusCode::kUnauthenticated);
  // One more unknown token from this client (127.0.0.1) is over its TokenReview budget (2):
  // RESOURCE_EXHAUSTED, counted, and the API server is not asked.
  o.token = [] { return absl::StatusOr<std::string>("junk-2"); };
  auto flood = *ztunnel::CaCertificateProvider::Create(o);
  EXPECT_EQ(flood->Get(kSleep).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(service_->RequestCount("rate_limited"), 1);
  EXPECT_EQ(tr.stats().reviews, 2u);
}

TEST_F(CaGrpcTest, RenewsAtHalfLife) {
  StartServer(/*use_tls=*/false);
  ztunnel::Metrics metrics;
  auto o = ClientOptions(false);
  o.metrics = &metrics;
  auto client = *ztunnel::CaCertificateProvider::Create(o);
  auto first = *client->Get(kSleep);

  clock_.Advance(hours(11));
  EXPECT_EQ(client->RenewDue(), 0);  // not due yet
  EXPECT_EQ(client->Get(kSleep)->get(), first.get());

  clock_.Advance(hours(1) + seconds(60));  // past half of 24 h (+1 min back-dating)
  EXPECT_EQ(client->RenewDue(), 1);
  auto second = *client->Get(kSleep);
  EXPECT_NE(second.get(), first.get());
  EXPECT_GT(second->not_after, first->not_after);
  // A fresh key per certificate.
  EXPECT_NE(EVP_PKEY_eq(second->key.get(), first->key.get()), 1);
  EXPECT_EQ(metrics.cert_expiry(kSleep.ToString()).Value(),
            static_cast<double>(system_clock::to_time_t(second->not_after)));
  EXPECT_EQ(service_->RequestCount("ok"), 2);
}

TEST_F(CaGrpcTest, KeepsValidCertWhileCaIsDownBacksOffAndRecovers) {
  StartServer(/*use_tls=*/false);
  int port = port_;
  // The default RPC timeout: the first Get must succeed on a busy machine too; with weftd gone
  // the channel fails fast (connection refused), so the timeout costs nothing there.
  auto client = *ztunnel::CaCertificateProvider::Create(ClientOptions(false));
  auto got = client->Get(kSleep);
  ASSERT_TRUE(got.ok()) << got.status();
  auto first = *got;
  StopServer();

  clock_.Advance(hours(13));
  EXPECT_EQ(client->RenewDue(), 0);
  auto st = *client->StateOf(kSleep);
  EXPECT_EQ(st.failures, 1);
  EXPECT_TRUE(absl::IsUnavailable(st.last_error) || absl::IsDeadlineExceeded(st.last_error))
      << st.last_error;
  auto wait = st.next_attempt - clock_.Now();
  EXPECT_GE(wait, seconds(5));  // jitter within [initial/2, initial]
  EXPECT_LE(wait, seconds(10));
  // The still-valid old certificate keeps being served.
  EXPECT_EQ(client->Get(kSleep)->get(), first.get());

  // Inside the backoff window nothing is attempted.
  EXPECT_EQ(client->RenewDue(), 0);
  EXPECT_EQ(client->StateOf(kSleep)->failures, 1);

  clock_.Advance(seconds(11));
  EXPECT_EQ(client->RenewDue(), 0);
  st = *client->StateOf(kSleep);
  EXPECT_EQ(st.failures, 2);
  wait = st.next_attempt - clock_.Now();
  EXPECT_GE(wait, seconds(10));  // doubled: [20/2, 20]
  EXPECT_LE(wait, seconds(20));

  // Many failures: capped at max_backoff (80 s).
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(seconds(81));
    client->RenewDue();
  }
  st = *client->StateOf(kSleep);
  EXPECT_EQ(st.failures, 7);
  EXPECT_LE(st.next_attempt - clock_.Now(), seconds(80));
  EXPECT_EQ(client->Get(kSleep)->get(), first.get());

  // weftd comes back on the same port: the next due attempt succeeds.
  StartServer(/*use_tls=*/false, port);
  int renewed = 0;
  for (int i = 0; i < 100 && renewed == 0; ++i) {
    clock_.Advance(seconds(81));
    renewed = client->RenewDue();
    if (renewed == 0) std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(renewed, 1);
  st = *client->StateOf(kSleep);
  EXPECT_EQ(st.failures, 0);
  EXPECT_NE(client->Get(kSleep)->get(), first.get());
}

TEST_F(CaGrpcTest, ExpiredCertWithCaDownIsAnErrorNotAStaleCert) {
  StartServer(/*use_tls=*/false);
  auto client = *ztunnel::CaCertificateProvider::Create(ClientOptions(false));
  ASSERT_TRUE(client->Get(kSleep).ok());
  StopServer();
  clock_.Advance(hours(25));
  auto r = client->Get(kSleep);
  EXPECT_TRUE(absl::IsUnavailable(r.status()) || absl::IsDeadlineExceeded(r.status()))
      << r.status();
  // Backoff applies to Get too: the next call fails fast with the remembered reason.
  auto r2 = client->Get(kSleep);
  EXPECT_EQ(r2.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r2.status().message().find("retrying"), std::string::npos) << r2.status();
  EXPECT_EQ(client->StateOf(kSleep)->failures, 1);
}

TEST_F(CaGrpcTest, ConcurrentFirstGetsShareOneRequest) {
  StartServer(/*use_tls=*/false);
  auto client = *ztunnel::CaCertificateProvider::Create(ClientOptions(false));
  std::vector<std::thread> threads;
  std::vector<const ztunnel::CertBundle*> got(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto b = client->Get(kSleep);
      got[i] = b.ok() ? b->get() : nullptr;
    });
  }
  for (auto& t : threads) t.join();
  for (auto* b : got) EXPECT_EQ(b, got[0]);
  EXPECT_NE(got[0], nullptr);
  EXPECT_EQ(service_->RequestCount("ok"), 1);
}

TEST_F(CaGrpcTest, BackgroundThreadRenews) {
  StartServer(/*use_tls=*/false);
  auto o = ClientOptions(false);
  o.poll_interval = milliseconds(20);
  auto client = *ztunnel::CaCertificateProvider::Create(o);
  auto first = *client->Get(kSleep);
  client->Start();
  clock_.Advance(hours(13));
  bool renewed = false;
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (!renewed && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
    renewed = client->Get(kSleep)->get() != first.get();
  }
  client->Stop();
  EXPECT_TRUE(renewed);
}

}  // namespace
}  // namespace weft::cp
