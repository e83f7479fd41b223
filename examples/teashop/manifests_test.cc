// The example manifests run what they say: every Pod's command line and environment parse as
// weft-teashop's flags, the URLs name Services of the manifests on their ports, and the ports
// line up (containerPort = --listen port = the Services' targetPort). weftctl validate (another
// ctest) checks the Kubernetes side; this checks the application side.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/match.h"

#include "examples/teashop/app.h"

namespace weft::teashop {
namespace {

struct Objects {
  std::vector<YAML::Node> pods, services, accounts, namespaces;
};

Objects Load(const std::string& dir) {
  Objects o;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    for (const YAML::Node& doc : YAML::LoadAllFromFile(e.path().string())) {
      const std::string kind = doc["kind"].as<std::string>();
      if (kind == "Pod") o.pods.push_back(doc);
      if (kind == "Service") o.services.push_back(doc);
      if (kind == "ServiceAccount") o.accounts.push_back(doc);
      if (kind == "Namespace") o.namespaces.push_back(doc);
    }
  }
  return o;
}

TEST(Manifests, PodsRunValidTeashopCommandLines) {
  const Objects o = Load(WEFT_TEASHOP_MANIFESTS);
  ASSERT_EQ(o.pods.size(), 7u);  // frontend, 2 catalogue, cart, recommendation, store, client
  std::set<std::string> service_hosts, accounts;
  for (const YAML::Node& s : o.services) {
    const std::string name = s["metadata"]["name"].as<std::string>();
    const std::string ns = s["metadata"]["namespace"].as<std::string>();
    EXPECT_FALSE(s["spec"]["clusterIP"]) << name << ": weftctl up allocates cluster IPs";
    ASSERT_EQ(s["spec"]["ports"].size(), 1u);
    EXPECT_EQ(s["spec"]["ports"][0]["port"].as<int>(), 80);
    EXPECT_EQ(s["spec"]["ports"][0]["targetPort"].as<std::string>(), "http");
    EXPECT_EQ(s["spec"]["ports"][0]["appProtocol"].as<std::string>(), "http");
    EXPECT_EQ(s["spec"]["selector"]["app"].as<std::string>(), name);
    service_hosts.insert(name + "." + ns + ".svc.cluster.local:80");
  }
  for (const YAML::Node& a : o.accounts) {
    accounts.insert(a["metadata"]["namespace"].as<std::string>() + "/" +
                    a["metadata"]["name"].as<std::string>());
  }
  for (const YAML::Node& ns : o.namespaces) {
    EXPECT_FALSE(ns["metadata"]["labels"]) << "the demo enrols namespaces itself";
  }

  std::map<std::string, int> roles;
  std::map<std::string, std::set<std::string>> nodes_of;
  for (const YAML::Node& p : o.pods) {
    const std::string name = p["metadata"]["name"].as<std::string>();
    const std::string ns = p["metadata"]["namespace"].as<std::string>();
    SCOPED_TRACE(ns + "/" + name);
    const YAML::Node c = p["spec"]["containers"][0];
    ASSERT_TRUE(c["command"]);
    EXPECT_EQ(c["command"][0].as<std::string>(), "weft-teashop");
    EXPECT_FALSE(p["status"]) << "weftctl up assigns pod IPs";
    EXPECT_TRUE(accounts.count(ns + "/" + p["spec"]["serviceAccountName"].as<std::string>()));
    std::vector<std::string> args;
    for (const YAML::Node& a : c["args"]) args.push_back(a.as<std::string>());
    std::map<std::string, std::string> env;
    for (const YAML::Node& e : c["env"])
      env[e["name"].as<std::string>()] = e["value"].as<std::string>();
    auto opts = ParseFlags(args, [&](const char* n) -> const char* {
      auto it = env.find(n);
      return it == env.end() ? nullptr : it->second.c_str();
    });
    ASSERT_TRUE(opts.ok()) << opts.status();
    ++roles[opts->role];
    nodes_of[opts->role].insert(p["spec"]["nodeName"].as<std::string>());
    EXPECT_EQ(p["metadata"]["labels"]["app"].as<std::string>(),
              ns == "shop" ? opts->role : "client");
    EXPECT_EQ(opts->server.listen, "0.0.0.0:8080");
    ASSERT_EQ(c["ports"].size(), 1u);
    EXPECT_EQ(c["ports"][0]["name"].as<std::string>(), "http");
    EXPECT_EQ(c["ports"][0]["containerPort"].as<int>(), 8080);
    for (const std::string* url :
         {&opts->catalogue_url, &opts->cart_url, &opts->recommendation_url, &opts->store_url}) {
      if (url->empty()) continue;
      auto u = Url::Parse(*url);
      ASSERT_TRUE(u.ok()) << u.status();
      EXPECT_TRUE(service_hosts.count(u->host + ":" + std::to_string(u->port))) << *url;
    }
    if (opts->role == "frontend") {
      EXPECT_TRUE(absl::StrContains(opts->store_url, "store.shop.svc.cluster.local"));
    }
  }
  EXPECT_EQ(roles, (std::map<std::string, int>{{"frontend", 1},
                                               {"catalogue", 2},
                                               {"cart", 1},
                                               {"recommendation", 1},
                                               {"store", 1},
                                               {"idle", 1}}));
  // Load-balancing across nodes, and a front end with upstreams on the other node.
  EXPECT_EQ(nodes_of["catalogue"], (std::set<std::string>{"node0", "node1"}));
  EXPECT_EQ(nodes_of["frontend"], (std::set<std::string>{"node0"}));
  EXPECT_EQ(nodes_of["cart"], (std::set<std::string>{"node1"}));
}

}  // namespace
}  // namespace weft::teashop
