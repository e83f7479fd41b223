// `weftctl dashboard`'s JSON API on a live tea shop (weftctl up, the e2e fixture with its real
// Prometheus): the pods listed with their enrolment before and after `weftctl label`, the edges
// with mutual_tls once the shop is enrolled, and through Service nodes (caller -> Service ->
// workload), the Services' signals and the catalogue's route on its Service, the store's denial
// on the cart -> store edges; the same graph, Service nodes included, from Prometheus
// (--prometheus, as in a cluster); and the mesh going down shown as an error, not an empty page.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "common/netns.h"
#include "common/scrape/scrape.h"
#include "tests/e2e/e2e_fixture.h"

namespace weft::e2e {
namespace {

using json = nlohmann::json;

class DashboardApiTest : public E2eTest {
 protected:
  std::string MeshFile() const override { return WEFT_TEASHOP_MANIFESTS; }
  size_t ExpectedPods() const override { return 7; }

  // Starts `weftctl dashboard ARGS` in `netns` ("" = ours); returns its address.
  SockAddr StartDashboard(const std::string& netns, std::vector<std::string> args) {
    std::string web = tmp_.path() + "/web";
    std::filesystem::create_directories(web);
    EXPECT_TRUE(WriteFileAtomic(web + "/index.html", "<title>dashboard</title>").ok());
    std::vector<std::string> argv = {WEFTCTL_PATH, "dashboard", "--web-root", web,
                                     "--interval", "500ms",     "--timeout",  "2s"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string log = tmp_.path() + "/dashboard" + std::to_string(dashboards_.size()) + ".log";
    auto p = testbed::Spawn(netns, argv, log);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {};
    dashboards_.push_back(std::move(*p));
    std::string url;
    EXPECT_TRUE(Eventually(
        [&] {
          std::string text = ReadFile(log).value_or("");
          size_t at = text.find("http://");
          if (at == std::string::npos) return false;
          url = text.substr(at + 7, text.find('/', at + 7) - at - 7);
          return true;
        },
        seconds(20)))
        << ReadFile(log).value_or("");
    dashboard_netns_ = netns;
    auto a = SockAddr::Parse(url);
    EXPECT_TRUE(a.ok()) << url;
    return a.value_or(SockAddr{});
  }

  json Get(const SockAddr& at, const std::string& path, int* code = nullptr) {
    UniqueFd ns;
    if (!dashboard_netns_.empty()) {
      ns = UniqueFd(::open(testbed::NetnsPath(dashboard_netns_).c_str(), O_RDONLY | O_CLOEXEC));
    }
    int status = 0;
    auto body = HttpGet(at, path, ns.valid() ? ns.get() : -1, &status, 5000);
    if (code) *code = status;
    if (!body.ok()) return {{"error", std::string(body.status().message())}};
    json j = json::parse(*body, nullptr, false);
    return j.is_discarded() ? json{{"error", "not JSON: " + *body}} : j;
  }

  // An edge of the graph without Service nodes ("edges") or with them ("service_edges"), or a
  // node ("nodes").
  static const json* Edge(const json& graph, const std::string& id, const char* list = "edges") {
    if (!graph.is_object() || !graph.contains(list)) return nullptr;
    for (const json& e : graph[list]) {  // a reference into `graph`, not into a copy
      if (e.value("id", "") == id) return &e;
    }
    return nullptr;
  }
  static const json* ServiceEdge(const json& graph, const std::string& id) {
    return Edge(graph, id, "service_edges");
  }

  void Load(const std::string& duration) {
    auto r = Weftctl({"exec", "legacy/client", "--", "weft-teashop", "--role", "load", "--target",
                      "http://frontend.shop", "--duration", duration});
    EXPECT_TRUE(r.ok()) << r.status();
  }

  std::vector<testbed::Process> dashboards_;
  std::string dashboard_netns_;
};

TEST_P(DashboardApiTest, PodsEdgesAndDenialsOfTheTeaShop) {
  SockAddr at = StartDashboard("", {"--name", name_, "--state-root", root_, "--window", "3s"});
  // Every pod, none enrolled yet: the namespace is not labelled.
  json ov = Get(at, "/api/overview");
  ASSERT_EQ(ov.value("pods", json::array()).size(), 7u) << ov.dump(1);
  for (const json& p : ov["pods"]) {
    EXPECT_FALSE(p["enrolled"].get<bool>()) << p.dump();
    EXPECT_NE(p["reason"].get<std::string>().find("not labelled weft.dev/mesh=enabled"),
              std::string::npos);
    EXPECT_EQ(p["identity"].get<std::string>().rfind("spiffe://cluster.local/ns/", 0), 0u);
  }
  ASSERT_TRUE(Label("shop", "weft.dev/mesh=enabled").ok());
  EXPECT_TRUE(Eventually(
      [&] {
        json o = Get(at, "/api/overview");
        int enrolled = 0;
        for (const json& p : o.value("pods", json::array())) enrolled += p.value("enrolled", false);
        return enrolled == 6;  // the shop's six; the legacy client stays out
      },
      seconds(10)));
  // Traffic after enrolment: the shop's edges are mTLS (or same-node), the legacy caller's
  // plaintext.
  Load("3s");
  json g;
  EXPECT_TRUE(Eventually(
      [&] {
        g = Get(at, "/api/graph");
        const json* cart = Edge(g, "shop/frontend->shop/cart");
        const json* legacy = Edge(g, "legacy/client->shop/frontend");
        return cart && legacy && (*cart)["security"] == "mutual_tls" &&
               (*legacy)["security"] == "plaintext";
      },
      seconds(15)))
      << g.dump(1);
  // The same calls through Service nodes: caller -> Service -> the workload behind it.
  EXPECT_TRUE(Eventually(
      [&] {
        g = Get(at, "/api/graph");
        const json* to_cart = ServiceEdge(g, "shop/frontend->svc:shop/cart");
        const json* cart = ServiceEdge(g, "svc:shop/cart->shop/cart");
        const json* legacy = ServiceEdge(g, "legacy/client->svc:shop/frontend");
        const json* frontend = ServiceEdge(g, "svc:shop/frontend->shop/frontend");
        return to_cart && cart && legacy && frontend && (*to_cart)["security"] == "mutual_tls" &&
               (*cart)["security"] == "mutual_tls" && (*legacy)["security"] == "plaintext" &&
               (*frontend)["kind"] == "from_service";
      },
      seconds(15)))
      << g["service_edges"].dump(1);
  const json* svc = Edge(g, "svc:shop/frontend", "nodes");
  ASSERT_NE(svc, nullptr) << g["nodes"].dump(1);
  EXPECT_EQ((*svc)["kind"], "service");
  EXPECT_EQ((*svc)["label"], "frontend.shop");
  EXPECT_EQ((*svc)["meshed"], "yes");
  json sig = Get(at, "/api/signals");
  const json* fe = Edge(sig, "svc:shop/frontend", "service_totals");
  ASSERT_NE(fe, nullptr) << sig.dump(1);
  EXPECT_GT((*fe)["requests"].get<double>(), 0);
  // The catalogue's route is listed on its Service.
  ASSERT_TRUE(Apply(std::string(WEFT_TEASHOP_TRAFFIC) + "/catalogue-route.yaml").ok());
  json h;
  EXPECT_TRUE(Eventually(
      [&] {
        h = Get(at, "/api/health");
        const json list =
            h.value("service_policies", json::object()).value("shop/catalogue", json::array());
        return list.size() == 1 && list[0].value("name", "") == "catalogue" &&
               list[0].value("kind", "") == "HTTPRoute";
      },
      seconds(15)))
      << h.value("service_policies", json()).dump(1);
  // The store accepts only the front end: the cart's call is denied, on its edge.
  ASSERT_TRUE(Apply(std::string(WEFT_TEASHOP_POLICIES) + "/store-deny-except-frontend.yaml").ok());
  (void)Weftctl({"exec", "shop/cart", "--", "curl", "-sS", "-m", "3", "http://store.shop/healthz"});
  EXPECT_TRUE(Eventually(
      [&] {
        g = Get(at, "/api/graph");
        const json* e = Edge(g, "shop/cart->shop/store");
        const json* to_store = ServiceEdge(g, "shop/cart->svc:shop/store");
        return e && (*e)["denied_total"].get<double>() >= 1 && to_store &&
               (*to_store)["denied_total"].get<double>() >= 1;
      },
      seconds(15)))
      << g.dump(1);
  h = Get(at, "/api/health");
  ASSERT_TRUE(h.contains("policies")) << h.dump(1);
  EXPECT_EQ(h["policies"]["shop/store"][0]["name"], "store-deny-except-frontend");
  // The mesh goes down: every document becomes an error the page shows.
  ASSERT_TRUE(Weftctl({"down"}).ok());
  up_ok_ = false;
  root_.clear();
  // (A reading taken during the teardown may still see some of it, e.g. a ztunnel that no
  // longer answers while the mesh's state is still there: wait for one after.)
  json gr;
  EXPECT_TRUE(Eventually(
      [&] {
        int ov_code = 0, gr_code = 0;
        json o = Get(at, "/api/overview", &ov_code);
        gr = Get(at, "/api/graph", &gr_code);
        return ov_code == 503 && o.contains("error") && gr_code == 503 &&
               gr.value("error", "").find("no mesh named") != std::string::npos;
      },
      seconds(15)))
      << gr.dump();
  EXPECT_EQ(gr.value("source", ""), "metrics") << gr.dump();
}

// As in a cluster: the graph from Prometheus's copy of the ztunnels' counters.
TEST_P(DashboardApiTest, TheSameGraphFromPrometheus) {
  ASSERT_TRUE(Label("shop", "weft.dev/mesh=enabled").ok());
  Load("3s");
  ASSERT_TRUE(Apply(std::string(WEFT_TEASHOP_POLICIES) + "/store-deny-except-frontend.yaml").ok());
  (void)Weftctl({"exec", "shop/cart", "--", "curl", "-sS", "-m", "3", "http://store.shop/healthz"});
  SockAddr at = StartDashboard(s_.nodes[0].netns,
                               {"--prometheus", "http://" + s_.nodes[0].ip + ":19090", "--weftd",
                                s_.weftd.admin, "--address", "127.0.0.1", "--window", "30s"});
  json g;
  EXPECT_TRUE(Eventually(
      [&] {
        g = Get(at, "/api/graph");
        const json* cart = Edge(g, "shop/frontend->shop/cart");
        const json* store = Edge(g, "shop/cart->shop/store");
        const json* via = ServiceEdge(g, "shop/frontend->svc:shop/cart");
        const json* behind = ServiceEdge(g, "svc:shop/cart->shop/cart");
        return cart && store && (*cart)["security"] == "mutual_tls" &&
               (*store)["denied_total"].get<double>() >= 1 && via && behind &&
               (*via)["security"] == "mutual_tls";
      },
      seconds(20)))
      << g.dump(1);
  json ov = Get(at, "/api/overview");
  EXPECT_EQ(ov.value("pods", json::array()).size(), 7u) << ov.dump(1);
  // Prometheus gone: the graph says so (and weftd's documents still come).
  prom_.reset();
  int code = 0;
  EXPECT_TRUE(Eventually(
      [&] {
        g = Get(at, "/api/graph", &code);
        return code == 503 && g.value("source", "") == "prometheus";
      },
      seconds(15)))
      << g.dump(1);
  Get(at, "/api/overview", &code);
  EXPECT_EQ(code, 200);
}

INSTANTIATE_TEST_SUITE_P(Capture, DashboardApiTest, ::testing::Values("iptables"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace weft::e2e
