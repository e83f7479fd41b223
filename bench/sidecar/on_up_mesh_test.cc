// The sidecar reference mesh attached to a real `weftctl up` tea shop (root): the load
// generator started by `weftctl exec` in an unenrolled shop pod reaches the front end and its
// four upstreams through the sidecars (counted on both sides), a pod without a sidecar is
// refused (strict mTLS), and nothing is left after Stop() and `weftctl down`. Plus the plan
// (no root): container ports, service accounts, named target ports, pods of the same name in
// two namespaces.
#include "bench/sidecar/on_up_mesh.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "cli/testbed/testbed.h"
#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace weft::bench::sidecar {
namespace {

using namespace std::chrono_literals;

constexpr char kTwoNamespaces[] = R"yaml(
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec:
  serviceAccountName: web-sa
  containers:
  - name: app
    command: [x]
    ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]
  - name: side
    command: [y]
    ports: [{name: admin, containerPort: 9000}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: b, labels: {app: web}}
spec:
  containers: [{name: app, command: [x], ports: [{name: http, containerPort: 7070}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: c, labels: {app: web}}
spec:
  containers: [{name: app, command: [x], ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec:
  clusterIP: 10.247.0.10
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: admin, port: 9000}
  - {name: extra, port: 81, targetPort: 8181}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: b}
spec:
  clusterIP: 10.247.0.11
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 7070, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: c}
spec:
  clusterIP: 10.247.0.12
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
)yaml";

up::MeshState FakeState(const std::string& source) {
  up::MeshState s;
  s.name = "m";
  s.source = source;  // no dir: the plan reads the source manifests
  auto pod = [](std::string ns, std::string name, std::string ip, std::string netns) {
    up::PodState p;
    p.ns = std::move(ns);
    p.name = std::move(name);
    p.ip = std::move(ip);
    p.netns = std::move(netns);
    return p;
  };
  s.pods = {pod("a", "web", "10.248.0.2", "weft-x-a"), pod("b", "web", "10.248.1.2", "weft-x-b"),
            pod("c", "other", "10.248.0.3", "weft-x-c")};
  return s;
}

TEST(PlanOnUpMeshTest, PodsServicesAndNamedPorts) {
  weft::testing::TempDir tmp;
  tmp.Write("m.yaml", kTwoNamespaces);
  up::MeshState s = FakeState(tmp.path());
  auto plan = PlanOnUpMesh(s, {"a", "b"});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->pods.size(), 2u);
  EXPECT_EQ(plan->pods[0].name, "a/web");
  EXPECT_EQ(plan->pods[0].ns, "a");
  EXPECT_EQ(plan->pods[0].service_account, "web-sa");
  // UDP 53 left out; 8181 is a Service's undeclared targetPort.
  EXPECT_EQ(plan->pods[0].ports, (std::vector<uint16_t>{8080, 8181, 9000}));
  EXPECT_EQ(plan->pods[1].name, "b/web");
  EXPECT_EQ(plan->pods[1].service_account, "default");
  EXPECT_EQ(plan->pods[1].ports, (std::vector<uint16_t>{7070}));
  ASSERT_EQ(plan->placements.size(), 2u);
  EXPECT_EQ(plan->placements[1].ip.ToString(), "10.248.1.2");
  EXPECT_EQ(plan->placements[1].netns, "weft-x-b");
  EXPECT_EQ(SidecarPodNames(s, {"b", "a"}), (std::vector<std::string>{"a/web", "b/web"}));

  // Selectors stay in their namespace; c's pod is not attached, so c's Service is not routed.
  std::map<std::string, const SidecarService*> svc;
  for (const auto& x : plan->services) svc[x.name] = &x;
  ASSERT_EQ(svc.size(), 4u) << "services: a/web:80, a/web:81, a/web:9000, b/web:80";
  const SidecarService& a80 = *svc.at("a/web:80");
  EXPECT_EQ(a80.address.ToString(), "10.247.0.10");
  EXPECT_EQ(a80.pods, (std::vector<std::string>{"a/web"}));
  EXPECT_EQ(a80.target_ports, (std::vector<uint16_t>{8080}));  // named port "http"
  EXPECT_EQ(svc.at("a/web:9000")->target_ports, (std::vector<uint16_t>{9000}));
  EXPECT_EQ(svc.at("a/web:81")->target_ports, (std::vector<uint16_t>{8181}));
  EXPECT_EQ(svc.at("b/web:80")->pods, (std::vector<std::string>{"b/web"}));
  EXPECT_EQ(svc.at("b/web:80")->target_ports, (std::vector<uint16_t>{7070}));

  // What each port speaks (the HTTP sidecar mesh parses these), on both sides.
  EXPECT_EQ(a80.protocol, AppProtocol::kHttp);  // the name's Istio prefix
  EXPECT_EQ(svc.at("a/web:9000")->protocol, AppProtocol::kTcp);
  EXPECT_EQ(svc.at("b/web:80")->protocol, AppProtocol::kHttp2);  // appProtocol wins
  EXPECT_EQ(plan->pods[0].port_protocols.at(8080), AppProtocol::kHttp);
  EXPECT_EQ(plan->pods[0].port_protocols.at(9000), AppProtocol::kTcp);
  EXPECT_EQ(plan->pods[1].port_protocols.at(7070), AppProtocol::kHttp2);

  auto bad = PlanOnUpMesh(s, {"a", "nope"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nope"), std::string::npos) << bad.status();
  EXPECT_FALSE(PlanOnUpMesh(s, {}).ok());
}

// A sidecar mesh must refuse a pod it has no placement for, before touching anything.
// appProtocol first, then Istio's port-name prefixes (<protocol>[-<suffix>]).
TEST(PlanOnUpMeshTest, PortProtocolAsIstioReadsIt) {
  auto proto = [](const char* port_json) { return PortProtocol(nlohmann::json::parse(port_json)); };
  EXPECT_EQ(proto(R"({"appProtocol": "http"})"), AppProtocol::kHttp);
  EXPECT_EQ(proto(R"({"appProtocol": "grpc-web"})"), AppProtocol::kHttp);
  for (const char* h2 : {"http2", "h2c", "kubernetes.io/h2c", "grpc"}) {
    EXPECT_EQ(proto(absl::StrCat(R"({"appProtocol": ")", h2, "\"}").c_str()), AppProtocol::kHttp2)
        << h2;
  }
  EXPECT_EQ(proto(R"({"appProtocol": "tcp", "name": "http"})"), AppProtocol::kTcp);
  EXPECT_EQ(proto(R"({"appProtocol": "mysql"})"), AppProtocol::kTcp);
  EXPECT_EQ(proto(R"({"name": "http"})"), AppProtocol::kHttp);
  EXPECT_EQ(proto(R"({"name": "http-web"})"), AppProtocol::kHttp);
  EXPECT_EQ(proto(R"({"name": "http2-api"})"), AppProtocol::kHttp2);
  EXPECT_EQ(proto(R"({"name": "grpc"})"), AppProtocol::kHttp2);
  EXPECT_EQ(proto(R"({"name": "grpc-web"})"), AppProtocol::kHttp);
  EXPECT_EQ(proto(R"({"name": "httpbin"})"), AppProtocol::kTcp);  // a prefix needs its '-'
  EXPECT_EQ(proto(R"({"name": "tcp-echo"})"), AppProtocol::kTcp);
  EXPECT_EQ(proto(R"({})"), AppProtocol::kTcp);
}

TEST(PlanOnUpMeshTest, StartNeedsAPlacementPerPod) {
  weft::testing::TempDir tmp;
  SidecarOptions o;
  o.work_dir = tmp.path();
  o.proxy_user = "root";
  SidecarPod p;
  p.name = "a/web";
  auto m = SidecarMesh::Start(std::vector<PodPlacement>{}, {p}, {}, o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("no placement"), std::string::npos) << m.status();
}

// ---- the real tea shop -----------------------------------------------------------------------

// The suite's load pod: an idle teashop server in the shop namespace from which weft-loadgen is
// run with `weftctl exec`.
constexpr char kLoadPod[] = R"yaml(
apiVersion: v1
kind: Pod
metadata:
  name: load
  namespace: shop
  labels: {app: load}
spec:
  nodeName: node0
  containers:
  - name: load
    command: [weft-teashop]
    args: [--role, idle, --listen, "0.0.0.0:8080"]
    ports:
    - {name: http, containerPort: 8080, protocol: TCP}
)yaml";

class OnUpMeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("network namespaces, cgroups, iptables");
    if (!testbed::Exec("", {"haproxy", "-v"}, {}, 10s).ok())
      GTEST_SKIP() << "haproxy is not installed (scripts/deps.sh installs it)";
    root_ = tmp_.path() + "/state";
    name_ = absl::StrCat("sc", ::getpid());
    dir_ = tmp_.path() + "/manifests";
    std::filesystem::create_directories(dir_);
    for (const auto& e : std::filesystem::directory_iterator(WEFT_TEASHOP_MANIFESTS)) {
      std::filesystem::copy_file(e.path(), dir_ + "/" + e.path().filename().string());
    }
    std::ofstream(dir_ + "/30-load.yaml") << kLoadPod;
    std::filesystem::create_directories(tmp_.path() + "/sidecar");
  }
  void TearDown() override {
    if (!root_.empty()) (void)Weftctl({"down"});  // whatever a failed test left
  }
  absl::StatusOr<std::string> Weftctl(std::vector<std::string> args,
                                      std::chrono::milliseconds timeout = 120s) {
    return testbed::Exec("", up::WeftctlArgv(WEFTCTL_PATH, name_, root_, std::move(args)), "",
                         timeout);
  }

  weft::testing::TempDir tmp_;
  std::string root_, name_, dir_;
};

const up::PodState* Pod(const up::MeshState& s, const std::string& ns, const std::string& name) {
  for (const auto& p : s.pods)
    if (p.ns == ns && p.name == name) return &p;
  return nullptr;
}

// A plain HTTP request from a pod's netns to another pod's app port.
absl::StatusOr<std::string> PlainGet(const up::PodState& from, const up::PodState& to) {
  auto ns = OpenNetns(testbed::NetnsPath(from.netns));
  if (!ns.ok()) return ns.status();
  auto ip = IpAddr::Parse(to.ip);
  if (!ip.ok()) return ip.status();
  return HttpGet(SockAddr{*ip, 8080}, "/healthz", ns->get(), nullptr, 3000);
}

TEST_F(OnUpMeshTest, TeashopThroughSidecars) {
  auto up = Weftctl({"up", "--nodes", "2", dir_});
  ASSERT_TRUE(up.ok()) << up.status();
  auto st = up::LoadMesh(root_, name_);
  ASSERT_TRUE(st.ok()) << st.status();
  const up::MeshState& s = *st;
  const up::PodState* client = Pod(s, "legacy", "client");
  const up::PodState* frontend = Pod(s, "shop", "frontend");
  const up::PodState* cart = Pod(s, "shop", "cart");
  ASSERT_TRUE(client && frontend && cart);
  for (const auto& p : s.pods) ASSERT_FALSE(p.enrolled) << p.ns << "/" << p.name;
  // Without sidecars the shop answers anyone: the refusals below are the sidecars' doing.
  auto before = PlainGet(*client, *frontend);
  ASSERT_TRUE(before.ok()) << before.status();

  SidecarOptions o;
  o.work_dir = tmp_.path() + "/sidecar";
  auto mesh = StartOnUpMesh(s, {"shop"}, o);
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  const std::vector<std::string> names = (*mesh)->PodNames();
  EXPECT_EQ(names, SidecarPodNames(s, {"shop"}));
  EXPECT_EQ(names.size(), 7u);  // frontend, 2 catalogue, cart, recommendation, store, load
  EXPECT_EQ((*mesh)->ProxyPids().size(), names.size());
  std::map<std::string, SidecarMesh::Counts> start;
  for (const auto& n : names) {
    auto c = (*mesh)->ConnectionCounts(n);
    ASSERT_TRUE(c.ok()) << n << ": " << c.status();
    start[n] = *c;
  }

  // As the suite runs it: weft-loadgen started by `weftctl exec` (root, not the proxy user).
  auto load = Weftctl({"exec", "shop/load", "--", WEFT_LOADGEN_PATH, "--target",
                       "http://frontend.shop.svc.cluster.local:80", "--rate", "40", "--duration",
                       "3s", "--json", "-"},
                      90s);
  ASSERT_TRUE(load.ok()) << load.status();
  auto doc = nlohmann::json::parse(*load, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << *load;
  const nlohmann::json& overall = doc["overall"];
  ASSERT_TRUE(overall.is_object()) << *load;
  EXPECT_GT(overall.value("ok", 0), 50) << *load;
  EXPECT_EQ(overall.value("errors", -1), 0) << *load;

  auto grew = [&](const std::string& n) {
    auto c = (*mesh)->ConnectionCounts(n);
    EXPECT_TRUE(c.ok()) << n << ": " << c.status();
    return c.ok()
               ? SidecarMesh::Counts{c->outbound - start[n].outbound, c->inbound - start[n].inbound}
               : SidecarMesh::Counts{};
  };
  EXPECT_GT(grew("shop/load").outbound, 0);      // the exec'd client is captured
  EXPECT_GT(grew("shop/frontend").inbound, 0);   // and arrives over mTLS
  EXPECT_GT(grew("shop/frontend").outbound, 0);  // the front end's upstream calls too
  EXPECT_GT(grew("shop/catalogue-0").inbound + grew("shop/catalogue-1").inbound, 0);
  EXPECT_GT(grew("shop/cart").inbound, 0);
  EXPECT_GT(grew("shop/recommendation").inbound, 0);
  EXPECT_GT(grew("shop/store").inbound, 0);

  // Strict mTLS: the legacy client (no sidecar) gets no plain answer from a shop pod, neither
  // by pod IP nor through the Service's cluster IP (kube-proxy DNATs it to a pod).
  EXPECT_FALSE(PlainGet(*client, *frontend).ok());
  EXPECT_FALSE(PlainGet(*client, *cart).ok());
  // weft-loadgen exits 1 when no request succeeded; the shell turns exactly that into success,
  // so the exec itself must succeed and a failure to run anything is not taken for a refusal.
  auto via_vip = Weftctl(
      {"exec", "legacy/client", "--", "/bin/sh", "-c",
       absl::StrCat(WEFT_LOADGEN_PATH,
                    " --target http://frontend.shop.svc.cluster.local:80 --rate 10 --duration 1s"
                    " --json -; test $? -eq 1")},
      60s);
  ASSERT_TRUE(via_vip.ok()) << via_vip.status();
  auto d = nlohmann::json::parse(*via_vip, nullptr, false);
  ASSERT_TRUE(d.is_object()) << *via_vip;
  EXPECT_EQ(d["overall"].value("ok", -1), 0) << *via_vip;
  EXPECT_GT(d["overall"].value("errors", 0), 0) << *via_vip;

  EXPECT_TRUE((*mesh)->Stop().ok());
  EXPECT_TRUE((*mesh)->Leftovers().empty());
  // The capture is gone with the sidecars.
  auto after = PlainGet(*client, *frontend);
  EXPECT_TRUE(after.ok()) << after.status();
  auto down = Weftctl({"down"});
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_TRUE((*mesh)->Leftovers().empty());
  EXPECT_TRUE(testbed::TestbedLeftovers(s.prefix).empty());
}

}  // namespace
}  // namespace weft::bench::sidecar
