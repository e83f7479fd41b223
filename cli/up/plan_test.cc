// weftctl up's manifest processing without root: placement, addresses, cluster IPs, env
// expansion, runtime manifests, hosts files, kube-proxy rules, state file.
#include "cli/up/plan.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "cli/up/kube_proxy.h"
#include "cli/up/state.h"
#include "cli/up/supervisor.h"
#include "common/testing/temp_dir.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"

namespace weft::up {
namespace {

using json = nlohmann::json;

std::vector<ManifestObject> Parse(const std::string& yaml) {
  auto objs = cp::ParseManifests(yaml);
  EXPECT_TRUE(objs.ok()) << objs.status();
  std::vector<ManifestObject> out;
  if (objs.ok())
    for (auto& o : *objs) out.push_back({"test.yaml", o});
  return out;
}

constexpr char kShop[] = R"yaml(
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server}}
spec:
  nodeName: node1
  containers:
  - name: app
    command: [/bin/server, --port, "$(PORT)", "$$(PORT)", "$(MISSING)"]
    args: ["--host=$(MY_IP)", "--svc=$(CART_SERVICE_HOST):$(CART_SERVICE_PORT)"]
    ports: [{name: http, containerPort: 8080}]
    env:
    - {name: PORT, value: "8080"}
    - {name: ADDR, value: "$(MY_IP):$(PORT)"}
    - name: MY_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {weft.dev/mesh: disabled}}
spec:
  containers: [{name: app, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: outsider, namespace: other}
spec:
  nodeName: node7
  containers: [{name: app, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: fixed, namespace: shop}
spec:
  clusterIP: 10.247.0.1
  selector: {app: server}
  ports: [{port: 81, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: other}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: [web]}]
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {action: DENY, rules: [{}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: shop}
data: {a: b}
)yaml";

TEST(PlanTest, PlacementAddressesAndClusterIps) {
  PlanOptions o;
  o.nodes = 2;
  o.prefix = "weft-up42-0";
  auto plan = MakePlan(Parse(kShop), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->pods.size(), 5u);  // 3 pods + 2 replicas
  const PodPlan* server = plan->FindPod("shop", "server");
  const PodPlan* client = plan->FindPod("shop", "client");
  const PodPlan* outsider = plan->FindPod("other", "outsider");
  ASSERT_TRUE(server && client && outsider);
  // nodeName honoured; the others round-robin in manifest order (node7 does not exist).
  EXPECT_EQ(server->node, 1);
  EXPECT_EQ(client->node, 0);
  EXPECT_EQ(outsider->node, 1);
  EXPECT_EQ(server->slot, 1);
  EXPECT_EQ(outsider->slot, 2);
  EXPECT_EQ(server->ip.ToString(), "10.248.1.1");
  EXPECT_EQ(outsider->ip.ToString(), "10.248.1.2");
  EXPECT_EQ(client->ip.ToString(), "10.248.0.1");
  ASSERT_TRUE(server->ip6.has_value());
  EXPECT_EQ(server->ip6->ToString(), "fd00:248:0:1::1");
  EXPECT_TRUE(std::any_of(plan->warnings.begin(), plan->warnings.end(),
                          [](const std::string& w) { return w.find("node7") != w.npos; }));
  EXPECT_TRUE(std::any_of(plan->warnings.begin(), plan->warnings.end(),
                          [](const std::string& w) { return w.find("ConfigMap") != w.npos; }));
  // Enrolment: namespace label, pod opt-out, unlabelled namespace.
  EXPECT_TRUE(server->enrolled);
  EXPECT_FALSE(client->enrolled);
  EXPECT_FALSE(outsider->enrolled);
  // The user's cluster IP is kept; the other one skips it.
  ASSERT_EQ(plan->services.size(), 2u);
  EXPECT_EQ(plan->services[0].name, "cart");
  EXPECT_EQ(plan->services[0].cluster_ip, "10.247.0.2");
  EXPECT_EQ(plan->services[1].cluster_ip, "10.247.0.1");
  // Deployment replicas: generated names, ReplicaSet owner, template labels + hash.
  std::set<std::string> names;
  for (const auto& p : plan->pods) {
    if (p.workload != "web") continue;
    names.insert(p.name);
    EXPECT_TRUE(p.name.starts_with("web-")) << p.name;
    EXPECT_EQ(p.labels.at("app"), "web");
    EXPECT_EQ(p.object["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
  }
  EXPECT_EQ(names.size(), 2u);
}

TEST(PlanTest, EnvExpansionAsKubernetesDoes) {
  PlanOptions o;
  o.nodes = 2;
  auto plan = MakePlan(Parse(kShop), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PodPlan* server = plan->FindPod("shop", "server");
  ASSERT_NE(server, nullptr);
  std::map<std::string, std::string> env(server->env.begin(), server->env.end());
  EXPECT_EQ(env["PORT"], "8080");
  // MY_IP is defined after ADDR: not expanded there (Kubernetes' ordering rule).
  EXPECT_EQ(env["ADDR"], "$(MY_IP):8080");
  EXPECT_EQ(env["MY_IP"], "10.248.1.1");
  EXPECT_EQ(env["NODE"], "node1");
  EXPECT_EQ(env["HOSTNAME"], "server");
  EXPECT_EQ(env["CART_SERVICE_HOST"], "10.247.0.2");
  EXPECT_EQ(env["CART_SERVICE_PORT"], "80");
  EXPECT_EQ(env["CART_SERVICE_PORT_HTTP"], "80");
  EXPECT_EQ(env["FIXED_SERVICE_HOST"], "10.247.0.1");
  std::vector<std::string> want = {
      "/bin/server",        "--port", "8080", "$(PORT)", "$(MISSING)", "--host=10.248.1.1",
      "--svc=10.247.0.2:80"};
  EXPECT_EQ(server->argv, want);
  EXPECT_EQ(server->ports.size(), 1u);
}

TEST(PlanTest, ExpandVars) {
  auto lookup = [](std::string_view k) -> std::optional<std::string> {
    if (k == "A") return "x";
    return std::nullopt;
  };
  EXPECT_EQ(ExpandVars("$(A)-$(B)-$$(A)-$$$(A)-$-$(-a$", lookup), "x-$(B)-$(A)-$x-$-$(-a$");
  EXPECT_EQ(ExpandVars("", lookup), "");
}

TEST(PlanTest, RuntimeManifestsAreWhatTheClusterWouldShowAndValid) {
  PlanOptions o;
  o.nodes = 2;
  o.prefix = "weft-up42-0";
  auto plan = MakePlan(Parse(kShop), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto files = plan->RuntimeFiles();
  ASSERT_TRUE(files.count("pod_shop_server.json"));
  const json& pod = files["pod_shop_server.json"];
  EXPECT_EQ(pod["spec"]["nodeName"], "node1");
  EXPECT_EQ(pod["status"]["phase"], "Running");
  EXPECT_EQ(pod["status"]["podIP"], "10.248.1.1");
  EXPECT_EQ(pod["status"]["podIPs"][1]["ip"], "fd00:248:0:1::1");
  EXPECT_EQ(pod["metadata"]["annotations"]["weft.dev/netns-path"],
            "/run/netns/weft-up42-0-shop-server");
  EXPECT_EQ(files["service_shop_cart.json"]["spec"]["clusterIP"], "10.247.0.2");
  EXPECT_TRUE(files.count("namespace_shop.json"));
  EXPECT_TRUE(files.count("namespace_other.json"));  // implied by the pods in it
  EXPECT_TRUE(files.count("authorizationpolicy_shop_deny-all.json"));
  EXPECT_FALSE(files.count("configmap_shop_cfg.json"));
  // weftd (given the mesh's netns prefix, as weftctl up starts it) accepts all of it and sees
  // the workloads where they were placed.
  cp::Model model(cp::ModelOptions{.pod_netns_prefix = "/run/netns/weft-up42-0-"});
  for (const auto& [f, obj] : files) {
    EXPECT_TRUE(model.Apply({cp::ObjectEvent::Type::kUpsert, f, obj["kind"], obj}).ok()) << f;
  }
  EXPECT_TRUE(model.Rejected().empty());
  auto view = model.NodeView("node1");
  bool found = false;
  for (const auto& w : view.workloads()) {
    if (w.uid() != "shop/server") continue;
    found = true;
    EXPECT_EQ(w.node(), "node1");
    EXPECT_EQ(w.netns_path(), "/run/netns/weft-up42-0-shop-server");
  }
  EXPECT_TRUE(found);
  for (const auto& w : view.workloads())
    if (w.name().starts_with("web-")) {
      EXPECT_EQ(w.workload_name(), "web");
    }
}

// The mesh flags go right after the command word and never into exec's command line.
TEST(StateTest, WeftctlArgv) {
  EXPECT_EQ(WeftctlArgv("/b/weftctl", "m", "/r", {"down"}),
            (std::vector<std::string>{"/b/weftctl", "down", "--name", "m", "--state-root", "/r"}));
  EXPECT_EQ(WeftctlArgv("w", "m", "/r", {"exec", "ns/p", "--", "curl", "--name", "x"}),
            (std::vector<std::string>{"w", "exec", "--name", "m", "--state-root", "/r", "ns/p",
                                      "--", "curl", "--name", "x"}));
  EXPECT_EQ(WeftctlArgv("w", "m", "/r", {"label", "namespace", "shop", "a=b", "--wait"}),
            (std::vector<std::string>{"w", "label", "--name", "m", "--state-root", "/r",
                                      "namespace", "shop", "a=b", "--wait"}));
  EXPECT_EQ(WeftctlArgv("w", "m", "/r", {}),
            (std::vector<std::string>{"w", "--name", "m", "--state-root", "/r"}));
}

TEST(PlanTest, ClearErrors) {
  PlanOptions o;
  auto no_cmd = MakePlan(Parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  "
                               "containers: [{name: c, image: nginx}]\n"),
                         o);
  ASSERT_FALSE(no_cmd.ok());
  EXPECT_NE(no_cmd.status().message().find("command is required"), std::string::npos);
  auto bad_vip = MakePlan(Parse("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  "
                                "clusterIP: 10.248.0.5\n  ports: [{port: 80}]\n"),
                          o);
  ASSERT_FALSE(bad_vip.ok());
  EXPECT_NE(bad_vip.status().message().find("testbed"), std::string::npos);
  auto secret = MakePlan(
      Parse(
          "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: c\n"
          "    command: [x]\n    env: [{name: K, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n"),
      o);
  ASSERT_FALSE(secret.ok());
  EXPECT_NE(secret.status().message().find("fieldRef"), std::string::npos);
  auto twice = MakePlan(Parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"
                              "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"),
                        o);
  EXPECT_FALSE(twice.ok());
  o.nodes = 0;
  EXPECT_FALSE(MakePlan({}, o).ok());
}

TEST(PlanTest, HostsFile) {
  PlanOptions o;
  o.nodes = 2;
  auto plan = MakePlan(Parse(kShop), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::string h = HostsFile(*plan, *plan->FindPod("shop", "client"));
  EXPECT_NE(h.find("127.0.0.1\tlocalhost"), std::string::npos);
  EXPECT_NE(h.find("10.248.0.1\tclient"), std::string::npos);
  EXPECT_NE(h.find("10.247.0.2\tcart.shop.svc.cluster.local cart.shop cart\n"), std::string::npos);
  std::string other = HostsFile(*plan, *plan->FindPod("other", "outsider"));
  // No bare name for another namespace's Service.
  EXPECT_NE(other.find("10.247.0.2\tcart.shop.svc.cluster.local cart.shop\n"), std::string::npos);
}

TEST(PlanTest, ClusterIpForAppliedServices) {
  std::vector<json> live = {
      json::parse(R"({"kind":"Service","metadata":{"name":"a","namespace":"shop"},
                      "spec":{"clusterIP":"10.247.0.1","ports":[{"port":80}]}})"),
      json::parse(R"({"kind":"Service","metadata":{"name":"b","namespace":"shop"},
                      "spec":{"clusterIP":"10.247.0.3","ports":[{"port":80}]}})")};
  json fresh = json::parse(R"({"kind":"Service","metadata":{"name":"c","namespace":"shop"},
                               "spec":{"ports":[{"port":80}]}})");
  ASSERT_TRUE(AssignClusterIp(fresh, live).ok());
  EXPECT_EQ(fresh["spec"]["clusterIP"], "10.247.0.2");  // the first free one
  json update = json::parse(R"({"kind":"Service","metadata":{"name":"b","namespace":"shop"},
                                "spec":{"ports":[{"port":81}]}})");
  ASSERT_TRUE(AssignClusterIp(update, live).ok());
  EXPECT_EQ(update["spec"]["clusterIP"], "10.247.0.3");  // an update keeps its address
  json taken = json::parse(R"({"kind":"Service","metadata":{"name":"d","namespace":"shop"},
                               "spec":{"clusterIP":"10.247.0.1","ports":[{"port":80}]}})");
  EXPECT_EQ(AssignClusterIp(taken, live).code(), absl::StatusCode::kAlreadyExists);
  json pod_range = json::parse(R"({"kind":"Service","metadata":{"name":"e"},
                                   "spec":{"clusterIP":"10.249.0.1","ports":[{"port":80}]}})");
  EXPECT_FALSE(AssignClusterIp(pod_range, live).ok());
  // The hosts files follow the objects.
  live.push_back(fresh);
  std::string h = HostsFile(live, "shop", "x", *IpAddr::Parse("10.248.0.9"), std::nullopt);
  EXPECT_NE(h.find("10.247.0.2\tc.shop.svc.cluster.local c.shop c\n"), std::string::npos) << h;
}

TEST(PlanTest, LabelChanges) {
  Labels l = {{"a", "1"}};
  EXPECT_TRUE(*ApplyLabelChange(l, "weft.dev/mesh=enabled", false));
  EXPECT_EQ(l["weft.dev/mesh"], "enabled");
  EXPECT_FALSE(*ApplyLabelChange(l, "weft.dev/mesh=enabled", false));  // no change
  auto clash = ApplyLabelChange(l, "a=2", false);
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(*ApplyLabelChange(l, "a=2", true));
  EXPECT_TRUE(*ApplyLabelChange(l, "weft.dev/mesh-", false));
  EXPECT_FALSE(l.count("weft.dev/mesh"));
  EXPECT_FALSE(*ApplyLabelChange(l, "missing-", false));
  EXPECT_FALSE(ApplyLabelChange(l, "bad", false).ok());
  EXPECT_FALSE(ApplyLabelChange(l, "k=bad value", false).ok());
}

TEST(PlanTest, Enrolled) {
  EXPECT_TRUE(Enrolled({{"weft.dev/mesh", "enabled"}}, {}));
  EXPECT_FALSE(Enrolled({{"weft.dev/mesh", "enabled"}}, {{"weft.dev/mesh", "disabled"}}));
  EXPECT_FALSE(Enrolled({}, {{"weft.dev/mesh", "enabled"}}));
}

TEST(KubeProxyTest, RulesFromSelectorsSlicesAndReadiness) {
  PlanOptions o;
  o.nodes = 2;
  auto plan = MakePlan(Parse(kShop), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::vector<json> objs;
  for (const auto& [f, obj] : plan->RuntimeFiles()) objs.push_back(obj);
  bool server_ready = true;
  auto ready = [&](const std::string& ns, const std::string& name) {
    return !(ns == "shop" && name == "server") || server_ready;
  };
  auto rules = ComputeServiceRules(objs, ready);
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].name, "cart");
  EXPECT_EQ(rules[0].vip.ToString(), "10.247.0.2");
  ASSERT_EQ(rules[0].endpoints.size(), 1u);
  EXPECT_EQ(rules[0].endpoints[0].ip.ToString(), "10.248.1.1");
  EXPECT_EQ(rules[0].endpoints[0].port, 8080);  // named targetPort "http"
  EXPECT_EQ(rules[1].endpoints[0].port, 8080);  // numeric targetPort
  std::string script = IptablesRestoreScript(rules);
  EXPECT_NE(script.find("-A PREROUTING -j WEFT-SERVICES"), std::string::npos);
  EXPECT_NE(script.find("-d 10.247.0.2/32 -p tcp -m tcp --dport 80"), std::string::npos);
  EXPECT_NE(script.find("DNAT --to-destination 10.248.1.1:8080"), std::string::npos);
  EXPECT_NE(script.find("SNAT --to-source 169.254.1.1"), std::string::npos);
  EXPECT_EQ(script.find("statistic"), std::string::npos);  // one endpoint: no coin toss

  // A pod that is not running is no endpoint.
  server_ready = false;
  rules = ComputeServiceRules(objs, ready);
  EXPECT_TRUE(rules[0].endpoints.empty());
  EXPECT_EQ(IptablesRestoreScript(rules).find("DNAT"), std::string::npos);

  // EndpointSlices win over the selector; three endpoints spread 1/3, 1/2, rest.
  objs.push_back(json::parse(R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
    "metadata":{"name":"cart-1","namespace":"shop","labels":{"kubernetes.io/service-name":"cart"}},
    "ports":[{"name":"http","port":9000}],
    "endpoints":[{"addresses":["10.248.0.9"]},{"addresses":["10.248.0.8"]},
                 {"addresses":["10.248.0.7"],"conditions":{"ready":true}},
                 {"addresses":["10.248.0.6"],"conditions":{"ready":false}}]})"));
  rules = ComputeServiceRules(objs, ready);
  ASSERT_EQ(rules[0].endpoints.size(), 3u);
  EXPECT_EQ(rules[0].endpoints[0].ip.ToString(), "10.248.0.7");
  EXPECT_EQ(rules[0].endpoints[0].port, 9000);
  script = IptablesRestoreScript(rules);
  EXPECT_NE(script.find("--probability 0.33333333333"), std::string::npos);
  EXPECT_NE(script.find("--probability 0.50000000000"), std::string::npos);
  EXPECT_EQ(script.find("10.248.0.6"), std::string::npos);
}

TEST(CommandTest, Resolution) {
  weft::testing::TempDir tmp;
  std::string tool = tmp.Write("my-tool", "#!/bin/sh\n");
  ::chmod(tool.c_str(), 0755);
  EXPECT_EQ(*ResolveCommand("/bin/sh"), "/bin/sh");
  EXPECT_FALSE(ResolveCommand("/nonexistent/tool").ok());
  EXPECT_FALSE(ResolveCommand("my-tool").ok());
  ::setenv("WEFT_BIN_DIR", tmp.path().c_str(), 1);
  EXPECT_EQ(*ResolveCommand("my-tool"), tool);
  auto weftd = FindWeftBinary("my-tool", "controlplane/weftd/weftd");
  ASSERT_TRUE(weftd.ok()) << weftd.status();
  EXPECT_EQ(*weftd, tool);
  ::unsetenv("WEFT_BIN_DIR");
  auto sh = ResolveCommand("sh");  // PATH
  ASSERT_TRUE(sh.ok()) << sh.status();
  EXPECT_TRUE(sh->ends_with("/sh"));
  auto missing = ResolveCommand("no-such-command-weft");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("WEFT_BIN_DIR"), std::string::npos);
}

TEST(StateTest, RoundTripAndLookups) {
  MeshState s;
  s.name = "m";
  s.prefix = "weft-up1-0";
  s.nodes.push_back({"node0", "weft-up1-0-n0", "10.249.0.1", "10.249.0.1:15020", "z", "a", 1, 2});
  PodState a, b;
  a.ns = "shop";
  a.name = "x";
  a.env = {{"K", "V"}};
  b.ns = "other";
  b.name = "x";
  s.pods = {a, b};
  json j = s;
  MeshState back = j.get<MeshState>();
  EXPECT_EQ(back.pods[0].env[0][1], "V");
  EXPECT_EQ(back.nodes[0].metrics, "10.249.0.1:15020");
  EXPECT_EQ((*FindPod(back, "shop/x"))->ns, "shop");
  EXPECT_FALSE(FindPod(back, "x").ok());  // ambiguous
  EXPECT_FALSE(FindPod(back, "y").ok());
  EXPECT_EQ((*FindNode(back, "0"))->name, "node0");
  EXPECT_FALSE(FindNode(back, "node3").ok());
  EXPECT_FALSE(ValidateMeshName("Bad_Name").ok());
  EXPECT_TRUE(ValidateMeshName("weft-2").ok());
  EXPECT_GT(ProcessStartTime(::getpid()), 0u);
  EXPECT_EQ(ObjectFileName("Namespace", "", "shop"), "namespace_shop.json");
  EXPECT_EQ(ObjectFileName("AuthorizationPolicy", "shop", "deny"),
            "authorizationpolicy_shop_deny.json");
}

}  // namespace
}  // namespace weft::up
