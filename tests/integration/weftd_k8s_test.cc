// The real weftd binary in cluster mode (--kubernetes --api-server URL --namespace NS) against
// recorded API-server replies (controlplane/k8s's TestApiServer, fixtures in
// testdata/k8s): lists and watches of every kind the model uses, the CA root Secret, the root
// certificate ConfigMap for nodes and TokenReviews. Nodes are played by raw gRPC clients over
// TLS, trusting the root weftd published in the ConfigMap.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cli/testbed/testbed.h"
#include "common/file.h"
#include "common/net.h"
#include "common/scrape/scrape.h"
#include "common/spiffe.h"
#include "common/status.h"
#include "common/testing/temp_dir.h"
#include "common/tls.h"
#include "controlplane/k8s/test_api_server.h"
#include "nlohmann/json.hpp"
#include "weft/ca/v1/ca.grpc.pb.h"
#include "weft/config/v1/config.grpc.pb.h"

namespace weft::cp {
namespace {

using json = nlohmann::json;
using k8s::testing::RecordedRequest;
using k8s::testing::ScriptedReply;
using k8s::testing::TestApiServer;
using namespace std::chrono_literals;

constexpr char kNs[] = "weft-test";
constexpr char kSecret[] = "/api/v1/namespaces/weft-test/secrets/weft-ca-root";
constexpr char kSecrets[] = "/api/v1/namespaces/weft-test/secrets";
constexpr char kConfigMap[] = "/api/v1/namespaces/weft-test/configmaps/weft-ca-root-cert";
constexpr char kConfigMaps[] = "/api/v1/namespaces/weft-test/configmaps";
constexpr char kReviews[] = "/apis/authentication.k8s.io/v1/tokenreviews";
constexpr char kPods[] = "/api/v1/pods";
constexpr char kNodeAToken[] = "node-a-ztunnel-token";
constexpr char kStolenToken[] = "stolen-token";

std::string Fixture(const std::string& name) {
  return ReadFile(std::string(WEFTD_K8S_TESTDATA) + "/" + name).value();
}

std::string NotFound(const std::string& what) {
  return json{{"kind", "Status"},     {"apiVersion", "v1"},
              {"status", "Failure"},  {"message", what + " not found"},
              {"reason", "NotFound"}, {"code", 404}}
      .dump();
}

constexpr char kGrpcRoutes[] = "/apis/gateway.networking.k8s.io/v1/grpcroutes";
constexpr char kCatalogueRoute[] =
    "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/catalogue";

// Every kind weftd lists, with its recorded list reply (the watches that follow stay quiet
// until the test queues an event).
const std::vector<std::pair<std::string, std::string>>& Lists() {
  static const std::vector<std::pair<std::string, std::string>> kLists = {
      {"/api/v1/namespaces", "namespaces_list.json"},
      {kPods, "pods_list.json"},
      {"/api/v1/services", "services_list.json"},
      {"/apis/discovery.k8s.io/v1/endpointslices", "endpointslices_list.json"},
      {"/api/v1/serviceaccounts", "serviceaccounts_list.json"},
      {"/apis/networking.k8s.io/v1/networkpolicies", "networkpolicies_list.json"},
      {"/apis/security.weft.dev/v1/authorizationpolicies", "authorizationpolicies_list.json"},
      {"/apis/security.weft.dev/v1/peerauthentications", "peerauthentications_list.json"},
      {"/apis/gateway.networking.k8s.io/v1/httproutes", "httproutes_list.json"},
      {"/apis/gateway.networking.k8s.io/v1beta1/referencegrants", "referencegrants_list.json"},
      {"/apis/networking.weft.dev/v1/trafficpolicies", "trafficpolicies_list.json"},
  };
  return kLists;
}

void ServeListsAndReviews(TestApiServer& api) {
  for (const auto& [path, file] : Lists())
    api.Enqueue(path, {.status = 200, .body = Fixture(file)});
  // A cluster whose Gateway API install has no GRPCRoute: skipped, not an error loop.
  api.Enqueue(kGrpcRoutes, {.status = 404, .body = NotFound("the requested resource")});
  // Nor Istio: its policy kinds (watched by default, --istio-policies) are skipped the same way.
  for (const char* istio : {"/apis/security.istio.io/v1/authorizationpolicies",
                            "/apis/security.istio.io/v1/peerauthentications"}) {
    api.Enqueue(istio, {.status = 404, .body = NotFound("the requested resource")});
  }
  // The 404s make weftd ask which versions the group serves (an older one would be watched):
  // none, the group itself is not served.
  api.SetHandler("/apis/security.istio.io", [](const RecordedRequest&) -> ScriptedReply {
    return {.status = 404, .body = NotFound("the requested resource")};
  });
  api.SetHandler(kCatalogueRoute, [](const RecordedRequest&) -> ScriptedReply {
    return {.status = 200, .body = Fixture("httproute_catalogue.json")};
  });
  api.SetHandler(
      std::string(kCatalogueRoute) + "/status",
      [](const RecordedRequest&) -> ScriptedReply { return {.status = 200, .body = "{}"}; });
  // TokenReview answers depend on the token in the request, as the API server's do.
  api.SetHandler(kReviews, [](const RecordedRequest& r) -> ScriptedReply {
    auto req = json::parse(r.body, nullptr, false);
    std::string token = req.is_object() ? req["spec"].value("token", "") : "";
    if (token == kNodeAToken) return {.status = 201, .body = Fixture("tokenreview_node_a.json")};
    return {.status = 201, .body = Fixture("tokenreview_rejected.json")};
  });
}

std::vector<RecordedRequest> WithMethod(const std::vector<RecordedRequest>& all,
                                        const std::string& method) {
  std::vector<RecordedRequest> out;
  for (const auto& r : all) {
    if (r.method == method) out.push_back(r);
  }
  return out;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// A log file's text so far ("" before the process created it).
std::string ReadAll(const std::string& path) {
  return ReadFile(path).value_or("");
}

// A running weftd process and the addresses from its "weftd started" log line.
struct RunningWeftd {
  testbed::Process proc;
  std::string log_path;
  int grpc_port = 0;
  SockAddr admin, metrics, readiness;
  std::string Log() const { return ReadAll(log_path); }
};

std::vector<std::string> WeftdArgv(const std::string& api_url, const std::string& state_dir) {
  return {
      WEFTD_PATH,  "--kubernetes", "--api-server", api_url,       "--namespace",   kNs,
      "--grpc",    "127.0.0.1:0",  "--state-dir",  state_dir,     "--admin",       "127.0.0.1:0",
      "--metrics", "127.0.0.1:0",  "--readiness",  "127.0.0.1:0", "--debounce-ms", "20"};
}

absl::StatusOr<RunningWeftd> StartWeftd(const std::string& api_url, const std::string& dir,
                                        const std::string& name) {
  RunningWeftd w;
  w.log_path = dir + "/" + name + ".log";
  WEFT_ASSIGN_OR_RETURN(w.proc, testbed::Spawn("", WeftdArgv(api_url, dir + "/state"), w.log_path));
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::stringstream ss(ReadAll(w.log_path));
    std::string line;
    while (std::getline(ss, line)) {
      auto j = json::parse(line, nullptr, false);
      if (!j.is_object() || j.value("msg", "") != "weftd started") continue;
      w.grpc_port = j.value("grpc_port", 0);
      auto admin = SockAddr::Parse(j.value("admin", ""));
      auto metrics = SockAddr::Parse(j.value("metrics", ""));
      auto ready = SockAddr::Parse(j.value("readiness", ""));
      if (!admin.ok() || !metrics.ok() || !ready.ok() || w.grpc_port == 0) {
        return absl::InternalError("unexpected 'weftd started' line: " + line);
      }
      w.admin = *admin;
      w.metrics = *metrics;
      w.readiness = *ready;
      return w;
    }
    if (!w.proc.Alive()) {
      return absl::FailedPreconditionError("weftd exited early; log:\n" + ReadAll(w.log_path));
    }
    std::this_thread::sleep_for(20ms);
  }
  return absl::DeadlineExceededError("weftd did not start; log:\n" + ReadAll(w.log_path));
}

// A node's gRPC channel: TLS to weftd, trusting `root_pem`, checking the name "localhost" (one of
// weftd's serving names) while dialing 127.0.0.1.
std::shared_ptr<grpc::Channel> NodeChannel(int port, const std::string& root_pem) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = root_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(o), args);
}

// One config stream as a node's ztunnel would open it.
struct ConfigStream {
  std::unique_ptr<weft::config::v1::ConfigDiscovery::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<
      grpc::ClientReaderWriter<weft::config::v1::ConfigRequest, weft::config::v1::ConfigResponse>>
      stream;

  ConfigStream(std::shared_ptr<grpc::Channel> ch, const std::string& token,
               const std::string& node) {
    stub = weft::config::v1::ConfigDiscovery::NewStub(ch);
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() + 30s);
    stream = stub->Stream(&ctx);
    weft::config::v1::ConfigRequest hello;
    hello.set_node(node);
    hello.set_component("ztunnel");
    stream->Write(hello);
  }
  bool Ack(const weft::config::v1::ConfigResponse& r) {
    weft::config::v1::ConfigRequest ack;
    ack.set_version_acked(r.version());
    ack.set_nonce(r.nonce());
    return stream->Write(ack);
  }
};

std::vector<std::string> WorkloadNames(const weft::config::v1::ConfigResponse& r) {
  std::vector<std::string> out;
  for (const auto& res : r.upserted()) {
    if (res.has_workload())
      out.push_back(res.workload().namespace_() + "/" + res.workload().name());
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct Csr {
  tls::EvpPkeyPtr key;
  std::string pem;
};
Csr CsrFor(const SpiffeId& id) {
  Csr c;
  c.key = *tls::GenerateKey();
  c.pem = *tls::CsrToPem(tls::MakeCsr(c.key.get(), id)->get());
  return c;
}

grpc::Status RequestCert(const std::shared_ptr<grpc::Channel>& ch, const std::string& token,
                         const SpiffeId& id, weft::ca::v1::CertificateResponse* resp) {
  auto stub = weft::ca::v1::CertificateService::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  weft::ca::v1::CertificateRequest req;
  req.set_csr_pem(CsrFor(id).pem);
  req.set_identity(id.ToString());
  req.set_node("node-a");
  return stub->CreateCertificate(&ctx, req, resp);
}

// The root weftd stored: the Secret's data, base64-decoded.
struct StoredRoot {
  std::string cert, key;
};
StoredRoot FromSecretBody(const std::string& body) {
  auto j = json::parse(body);
  StoredRoot r;
  EXPECT_TRUE(absl::Base64Unescape(j["data"]["ca-cert.pem"].get<std::string>(), &r.cert));
  EXPECT_TRUE(absl::Base64Unescape(j["data"]["ca-key.pem"].get<std::string>(), &r.key));
  return r;
}

const SpiffeId kFrontend{"cluster.local", "shop", "frontend"};
const SpiffeId kCatalogue{"cluster.local", "shop", "catalogue"};  // runs on node-b

class WeftdKubernetes : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(WeftdKubernetes, ServesNodesFromTheApiServerAndKeepsItsRootInTheSecret) {
  TestApiServer api;
  api.Enqueue(kSecret, {.status = 404, .body = NotFound("secrets \"weft-ca-root\"")});
  api.Enqueue(kSecrets, {.status = 201, .body = "{}"});
  api.Enqueue(kConfigMap, {.status = 404, .body = NotFound("configmaps \"weft-ca-root-cert\"")});
  api.Enqueue(kConfigMaps, {.status = 201, .body = "{}"});
  ServeListsAndReviews(api);

  auto w = StartWeftd(api.url(), dir_.path(), "weftd-1");
  ASSERT_TRUE(w.ok()) << w.status();

  // The root: generated and stored in the Secret (a CA certificate, self-signed, with its key).
  auto secret_posts = api.Requests(kSecrets);
  ASSERT_EQ(secret_posts.size(), 1u);
  EXPECT_EQ(secret_posts[0].method, "POST");
  auto secret = json::parse(secret_posts[0].body);
  EXPECT_EQ(secret["metadata"]["name"], "weft-ca-root");
  EXPECT_EQ(secret["metadata"]["namespace"], kNs);
  StoredRoot root = FromSecretBody(secret_posts[0].body);
  auto root_cert = tls::CertFromPem(root.cert);
  ASSERT_TRUE(root_cert.ok()) << root_cert.status();
  auto root_key = tls::KeyFromPem(root.key);
  ASSERT_TRUE(root_key.ok()) << root_key.status();
  EXPECT_EQ(X509_check_private_key(root_cert->get(), root_key->get()), 1);
  EXPECT_EQ(X509_check_ca(root_cert->get()), 1);
  EXPECT_EQ(X509_verify(root_cert->get(), X509_get0_pubkey(root_cert->get())), 1)
      << "the root must be self-signed";

  // The root certificate (never the key) published for nodes in the ConfigMap.
  auto cm_posts = api.Requests(kConfigMaps);
  ASSERT_EQ(cm_posts.size(), 1u);
  EXPECT_EQ(cm_posts[0].method, "POST");
  auto cm = json::parse(cm_posts[0].body);
  EXPECT_EQ(cm["metadata"]["name"], "weft-ca-root-cert");
  EXPECT_EQ(cm["data"]["root-cert.pem"], root.cert);
  EXPECT_EQ(cm["data"].size(), 1u);
  const std::string published_root = cm["data"]["root-cert.pem"];

  // Ready once every kind has been listed.
  EXPECT_TRUE(WaitFor([&] {
    int status = 0;
    auto r = HttpGet(w->readiness, "/healthz/ready", -1, &status, 1000);
    return r.ok() && status == 200;
  })) << w->Log();
  for (const auto& [path, file] : Lists()) {
    EXPECT_GE(WithMethod(api.Requests(path), "GET").size(), 1u) << path << " was not listed";
  }
  // The route's status goes back to the API server: Accepted by the Service parent.
  const std::string route_status = std::string(kCatalogueRoute) + "/status";
  ASSERT_TRUE(api.WaitForRequests(route_status, 1, 10s)) << w->Log();
  {
    const RecordedRequest patch = api.Requests(route_status)[0];
    EXPECT_EQ(patch.method, "PATCH");
    const json parent = json::parse(patch.body)["status"]["parents"][0];
    EXPECT_EQ(parent["controllerName"], "weft.dev/weftd");
    EXPECT_EQ(parent["conditions"][0]["type"], "Accepted");
    EXPECT_EQ(parent["conditions"][0]["status"], "True") << patch.body;
  }

  auto channel = NodeChannel(w->grpc_port, published_root);

  // node-a's ztunnel, with its node-bound token: node-a's view built from the recorded pods.
  ConfigStream node_a(channel, kNodeAToken, "node-a");
  weft::config::v1::ConfigResponse snap;
  ASSERT_TRUE(node_a.stream->Read(&snap)) << node_a.stream->Finish().error_message() << w->Log();
  EXPECT_TRUE(snap.full_snapshot());
  EXPECT_EQ(WorkloadNames(snap), (std::vector<std::string>{"shop/catalogue-1", "shop/frontend-1"}));
  bool frontend_ok = false, service_ok = false, policy_ok = false;
  for (const auto& res : snap.upserted()) {
    if (res.has_workload() && res.workload().name() == "frontend-1") {
      frontend_ok =
          res.workload().node() == "node-a" && res.workload().service_account() == "frontend" &&
          res.workload().addresses_size() == 1 && res.workload().addresses(0) == "10.244.1.10";
    }
    service_ok |= res.has_service() && res.service().name() == "catalogue";
    policy_ok |= res.has_authorization_policy();
  }
  EXPECT_TRUE(frontend_ok) << snap.DebugString();
  EXPECT_TRUE(service_ok) << snap.DebugString();
  // The policy selects catalogue pods, none of which run on node-a.
  EXPECT_FALSE(policy_ok) << snap.DebugString();
  ASSERT_TRUE(node_a.Ack(snap));

  // A token the API server does not authenticate: refused and counted.
  {
    ConfigStream stolen(channel, kStolenToken, "node-a");
    weft::config::v1::ConfigResponse r;
    EXPECT_FALSE(stolen.stream->Read(&r));
    grpc::Status st = stolen.stream->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    EXPECT_NE(st.error_message().find("invalid bearer token"), std::string::npos)
        << st.error_message();
  }
  auto metrics = HttpGet(w->metrics, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(MetricSum(*metrics, "weft_xds_auth_failures_total", {{"reason", "unauthenticated"}}), 1)
      << *metrics;
  // Each authentication was one TokenReview carrying the presented token.
  auto reviews = api.Requests(kReviews);
  ASSERT_GE(reviews.size(), 2u);
  EXPECT_EQ(json::parse(reviews[0].body)["spec"]["token"], kNodeAToken);
  EXPECT_EQ(json::parse(reviews[0].body)["spec"]["audiences"], json::array({"weft-ca"}));

  // The CA: node-a gets a certificate for its own pod's identity, chaining to the Secret's root;
  // not for the identity of a pod on node-b.
  weft::ca::v1::CertificateResponse cert;
  grpc::Status st = RequestCert(channel, kNodeAToken, kFrontend, &cert);
  ASSERT_TRUE(st.ok()) << st.error_message() << w->Log();
  ASSERT_GE(cert.cert_chain_pem_size(), 2);
  EXPECT_EQ(cert.cert_chain_pem(cert.cert_chain_pem_size() - 1), root.cert);
  auto leaf = tls::CertFromPem(cert.cert_chain_pem(0));
  ASSERT_TRUE(leaf.ok());
  std::vector<tls::X509Ptr> roots;
  roots.push_back(*tls::CertFromPem(root.cert));
  EXPECT_TRUE(tls::VerifyChain(leaf->get(), {}, roots).ok());
  EXPECT_EQ(tls::CertSpiffeId(leaf->get())->ToString(), kFrontend.ToString());

  weft::ca::v1::CertificateResponse foreign;
  st = RequestCert(channel, kNodeAToken, kCatalogue, &foreign);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("node node-a runs no pod"), std::string::npos)
      << st.error_message();
  st = RequestCert(channel, kStolenToken, kFrontend, &foreign);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();

  // A pod ADDED on node-a arrives on node-a's stream as a delta.
  api.Enqueue(kPods,
              {.status = 200, .stream = true, .chunks = {Fixture("pods_watch_added.jsonl")}});
  weft::config::v1::ConfigResponse delta;
  ASSERT_TRUE(node_a.stream->Read(&delta)) << w->Log();
  EXPECT_FALSE(delta.full_snapshot());
  EXPECT_EQ(WorkloadNames(delta), std::vector<std::string>{"shop/checkout-1"})
      << delta.DebugString();
  EXPECT_NE(delta.version(), snap.version());
  ASSERT_TRUE(node_a.Ack(delta));
  // The watch asked for changes after the list's resourceVersion.
  auto pod_gets = api.Requests(kPods);
  ASSERT_GE(pod_gets.size(), 2u);
  EXPECT_EQ(pod_gets[1].query["watch"], "1");
  EXPECT_EQ(pod_gets[1].query["resourceVersion"], "2100");

  // The new pod's identity is now node-a's to request; /status lists both certificates.
  st = RequestCert(channel, kNodeAToken, SpiffeId{"cluster.local", "shop", "checkout"}, &cert);
  EXPECT_TRUE(st.ok()) << st.error_message();
  auto status = HttpGet(w->admin, "/status");
  ASSERT_TRUE(status.ok()) << status.status();
  auto sj = json::parse(*status);
  EXPECT_EQ(sj["source"], "kubernetes");
  EXPECT_EQ(sj["ca"]["root"], "ConfigMap weft-test/weft-ca-root-cert key root-cert.pem");
  EXPECT_EQ(sj["ca"]["root_store"], "Secret weft-test/weft-ca-root");
  ASSERT_EQ(sj["ca"]["certificates"].size(), 2u) << sj.dump(2);
  EXPECT_EQ(sj["ca"]["certificates"][0]["node"], "node-a");
  EXPECT_EQ(sj["ca"]["certificates"][0]["identity"], "spiffe://cluster.local/ns/shop/sa/checkout");
  EXPECT_EQ(sj["ca"]["certificates"][1]["identity"], "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(sj["ca"]["refused_permission_denied"], 1);
  EXPECT_EQ(sj["ca"]["refused_unauthenticated"], 1);
  metrics = HttpGet(w->metrics, "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_GT(MetricSum(*metrics, "weft_ca_issued_cert_expiry_timestamp_seconds",
                      {{"node", "node-a"}, {"identity", kFrontend.ToString()}}),
            0)
      << *metrics;

  node_a.ctx.TryCancel();
  EXPECT_EQ(w->proc.Terminate(5s), 0) << w->Log();

  // Second start (a rescheduled weftd): the Secret is there, so the same root is used and
  // nothing is created; the ConfigMap already holds it, so it is not written either.
  TestApiServer api2;
  json stored_secret = secret;
  stored_secret["metadata"]["resourceVersion"] = "3001";
  api2.Enqueue(kSecret, {.status = 200, .body = stored_secret.dump()});
  json stored_cm = cm;
  stored_cm["metadata"]["resourceVersion"] = "3002";
  api2.Enqueue(kConfigMap, {.status = 200, .body = stored_cm.dump()});
  ServeListsAndReviews(api2);
  auto w2 = StartWeftd(api2.url(), dir_.path(), "weftd-2");
  ASSERT_TRUE(w2.ok()) << w2.status();
  EXPECT_TRUE(api2.Requests(kSecrets).empty());
  EXPECT_TRUE(api2.Requests(kConfigMaps).empty());
  EXPECT_EQ(WithMethod(api2.Requests(kConfigMap), "PUT").size(), 0u);
  // Nodes holding the published root still trust weftd and get certificates from that root.
  auto channel2 = NodeChannel(w2->grpc_port, published_root);
  ASSERT_TRUE(WaitFor([&] {
    int s = 0;
    auto r = HttpGet(w2->readiness, "/healthz/ready", -1, &s, 1000);
    return r.ok() && s == 200;
  })) << w2->Log();
  weft::ca::v1::CertificateResponse again;
  st = RequestCert(channel2, kNodeAToken, kFrontend, &again);
  ASSERT_TRUE(st.ok()) << st.error_message() << w2->Log();
  EXPECT_EQ(again.cert_chain_pem(again.cert_chain_pem_size() - 1), root.cert);
  EXPECT_EQ(w2->proc.Terminate(5s), 0) << w2->Log();
}

TEST_F(WeftdKubernetes, UnreachableApiServerAtStartIsAClearErrorAndExitCode1) {
  std::string url;
  {
    TestApiServer gone;  // a port that was just free: nothing listens there after Stop()
    url = gone.url();
  }
  const std::string log = dir_.path() + "/weftd.log";
  auto proc = testbed::Spawn("", WeftdArgv(url, dir_.path() + "/state"), log);
  ASSERT_TRUE(proc.ok()) << proc.status();
  auto code = proc->Wait(20s);
  ASSERT_TRUE(code.ok()) << "weftd must give up, not hang: " << ReadAll(log);
  EXPECT_EQ(*code, 1) << ReadAll(log);
  std::string out = ReadAll(log);
  EXPECT_NE(out.find("weftd: reading Secret weft-test/weft-ca-root: cannot reach the API server"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find(url), std::string::npos) << "the error must name the server: " << out;
}

TEST_F(WeftdKubernetes, RejectedCredentialsAtStartAreAClearErrorAndExitCode1) {
  TestApiServer api;
  api.Enqueue(kSecret, {.status = 401,
                        .body = R"({"kind":"Status","apiVersion":"v1","metadata":{},)"
                                R"("status":"Failure","message":"Unauthorized",)"
                                R"("reason":"Unauthorized","code":401})"});
  const std::string log = dir_.path() + "/weftd.log";
  auto proc = testbed::Spawn("", WeftdArgv(api.url(), dir_.path() + "/state"), log);
  ASSERT_TRUE(proc.ok()) << proc.status();
  auto code = proc->Wait(20s);
  ASSERT_TRUE(code.ok()) << ReadAll(log);
  EXPECT_EQ(*code, 1) << ReadAll(log);
  std::string out = ReadAll(log);
  EXPECT_NE(out.find("the API server rejected weftd's credentials: Unauthorized"),
            std::string::npos)
      << out;
  // Nothing was created with credentials the API server refuses.
  EXPECT_TRUE(api.Requests(kSecrets).empty());
  EXPECT_TRUE(api.Requests(kConfigMaps).empty());
}

TEST_F(WeftdKubernetes, MissingConfigMapPermissionStopsStartWithTheRbacToGrant) {
  TestApiServer api;
  api.Enqueue(kSecret, {.status = 404, .body = NotFound("secrets \"weft-ca-root\"")});
  api.Enqueue(kSecrets, {.status = 201, .body = "{}"});
  api.Enqueue(kConfigMap,
              {.status = 403,
               .body = R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":)"
                       R"("configmaps \"weft-ca-root-cert\" is forbidden: User \")"
                       R"(system:serviceaccount:weft-test:weftd\" cannot get resource \")"
                       R"(configmaps\" in API group \"\" in the namespace \"weft-test\"",)"
                       R"("reason":"Forbidden","code":403})"});
  const std::string log = dir_.path() + "/weftd.log";
  auto proc = testbed::Spawn("", WeftdArgv(api.url(), dir_.path() + "/state"), log);
  ASSERT_TRUE(proc.ok()) << proc.status();
  auto code = proc->Wait(20s);
  ASSERT_TRUE(code.ok()) << ReadAll(log);
  EXPECT_EQ(*code, 1) << ReadAll(log);
  EXPECT_NE(ReadAll(log).find("grant weftd 'get' on configmaps in its namespace"),
            std::string::npos)
      << ReadAll(log);
}

TEST_F(WeftdKubernetes, A401WhileListingKeepsWeftdNotReadyWithTheCauseLoggedAndRetries) {
  // The root is in place, but the API server refuses weftd's credentials for the pod list
  // (e.g. a revoked token): weftd runs, is not ready, says why, and retries with backoff.
  TestApiServer api;
  auto ca = *tls::CertificateAuthority::CreateRoot("weft", std::chrono::hours(24));
  json stored = {{"kind", "Secret"},
                 {"apiVersion", "v1"},
                 {"metadata", {{"name", "weft-ca-root"}, {"namespace", kNs}}},
                 {"data",
                  {{"ca-cert.pem", absl::Base64Escape(ca.root_pem())},
                   {"ca-key.pem", absl::Base64Escape(*ca.KeyPem())}}}};
  api.Enqueue(kSecret, {.status = 200, .body = stored.dump()});
  json cm = {{"kind", "ConfigMap"},
             {"apiVersion", "v1"},
             {"metadata", {{"name", "weft-ca-root-cert"}, {"namespace", kNs}}},
             {"data", {{"root-cert.pem", ca.root_pem()}}}};
  api.Enqueue(kConfigMap, {.status = 200, .body = cm.dump()});
  const std::string unauthorized =
      R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
      R"("message":"Unauthorized","reason":"Unauthorized","code":401})";
  api.Enqueue(kPods, {.status = 401, .body = unauthorized});
  api.Enqueue(kPods, {.status = 401, .body = unauthorized});
  ServeListsAndReviews(api);  // queued after the two 401s: the third pod list succeeds

  auto w = StartWeftd(api.url(), dir_.path(), "weftd");
  ASSERT_TRUE(w.ok()) << w.status();
  int status = 0;
  auto ready = HttpGet(w->readiness, "/healthz/ready", -1, &status, 1000);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(status, 503);
  EXPECT_EQ(*ready, "Kubernetes source not synced yet\n");
  EXPECT_TRUE(WaitFor([&] {
    return w->Log().find("the API server rejected weftd's credentials (401 Unauthorized)") !=
           std::string::npos;
  })) << w->Log();
  EXPECT_NE(w->Log().find(R"("kind":"Pod")"), std::string::npos) << w->Log();

  // Backoff, then the list goes through: ready, and the errors were counted.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = HttpGet(w->readiness, "/healthz/ready", -1, &status, 1000);
        return r.ok() && status == 200;
      },
      15s))
      << w->Log();
  auto metrics = HttpGet(w->metrics, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(MetricSum(*metrics, "weft_k8s_errors_total", {{"kind", "Pod"}, {"code", "401"}}), 2)
      << *metrics;
  EXPECT_GE(WithMethod(api.Requests(kPods), "GET").size(), 3u);
  EXPECT_EQ(w->proc.Terminate(5s), 0) << w->Log();
}
}  // namespace
}  // namespace weft::cp
