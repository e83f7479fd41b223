// The dashboard's documents from a recorded tea shop (weftctl up, shop enrolled, load from the
// unmeshed legacy client, the store's DENY-except-frontend policy and a denied call from the
// cart): weftd's /status and /config_dump, both ztunnels' metrics (the families weftctl stat
// reads, labels it does not read dropped) before and after a few seconds of load, and
// `weftctl stat --window 0 --json` taken with the "after" reading.
#include "cli/dashboard/api.h"

#include <gtest/gtest.h>

#include <cmath>

#include "cli/dashboard/sources.h"
#include "cli/stat.h"
#include "common/file.h"

namespace weft::cli::dashboard {
namespace {

using json = nlohmann::json;

std::string Data(const std::string& name) {
  auto s = ReadFile(std::string(WEFT_DASHBOARD_TESTDATA) + "/" + name);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.value_or("");
}

json DataJson(const std::string& name) {
  return json::parse(Data(name));
}

std::vector<MetricSample> Reading(const std::string& when) {
  std::vector<MetricSample> all;
  for (const char* node : {"node0", "node1"}) {
    for (auto& s : ParseSamples(Data(std::string(node) + "-" + when + ".metrics"), "")) {
      all.push_back(std::move(s));
    }
  }
  return all;
}

const json* Find(const json& list, const std::string& key, const std::string& value) {
  for (const json& e : list) {
    if (e.value(key, "") == value) return &e;
  }
  return nullptr;
}

TEST(Overview, EveryPodWithNodeIdentityAndWhyEnrolledOrNot) {
  std::map<std::string, NodeCapture> capture = {{"node0", {"ebpf", "every feature"}},
                                                {"node1", {"iptables", ""}}};
  json o = OverviewJson(DataJson("status.json"), DataJson("config_dump.json"), capture);
  ASSERT_EQ(o["pods"].size(), 7u) << o.dump(1);
  const json* front = Find(o["pods"], "name", "frontend");
  ASSERT_NE(front, nullptr);
  EXPECT_EQ((*front)["namespace"], "shop");
  EXPECT_EQ((*front)["node"], "node0");
  EXPECT_EQ((*front)["ip"], "10.248.0.1");
  EXPECT_EQ((*front)["identity"], "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_TRUE((*front)["enrolled"].get<bool>());
  EXPECT_EQ((*front)["reason"], "namespace shop has weft.dev/mesh=enabled");
  const json* legacy = Find(o["pods"], "name", "client");
  ASSERT_NE(legacy, nullptr);
  EXPECT_FALSE((*legacy)["enrolled"].get<bool>());
  EXPECT_EQ((*legacy)["reason"], "namespace legacy is not labelled weft.dev/mesh=enabled");
  // Namespaces and nodes.
  EXPECT_TRUE((*Find(o["namespaces"], "name", "shop"))["enrolled"].get<bool>());
  EXPECT_FALSE((*Find(o["namespaces"], "name", "legacy"))["enrolled"].get<bool>());
  const json* n0 = Find(o["nodes"], "name", "node0");
  ASSERT_NE(n0, nullptr);
  EXPECT_EQ((*n0)["capture"], "ebpf");
  EXPECT_TRUE((*n0)["ztunnel"]["connected"].get<bool>());
  EXPECT_EQ(o["services"].size(), 5u);
}

TEST(Overview, PodOptOutAndNodeWithoutCapture) {
  json config = DataJson("config_dump.json");
  for (json& w : config["workloads"]) {
    if (w["name"] == "store") {
      w["labels"]["weft.dev/mesh"] = "disabled";
      w["protocol"] = "TCP";
    }
  }
  json o = OverviewJson(DataJson("status.json"), config, {{"node1", {"none", "no cgroup v2"}}});
  EXPECT_EQ((*Find(o["pods"], "name", "store"))["reason"],
            "the pod opts out (weft.dev/mesh=disabled)");
  const json* cart = Find(o["pods"], "name", "cart");
  EXPECT_FALSE((*cart)["captured"].get<bool>());
  EXPECT_NE((*cart)["reason"].get<std::string>().find("node1 captures nothing (no cgroup v2)"),
            std::string::npos);
}

TEST(Graph, EdgesWithTheirSecurityAndTheDenialOnItsEdge) {
  json g = GraphJson({}, Reading("after"), 0, DataJson("config_dump.json"));
  auto edge = [&](const std::string& id) {
    const json* e = Find(g["edges"], "id", id);
    EXPECT_NE(e, nullptr) << id << " missing in " << g["edges"].dump(1);
    return e ? *e : json::object();
  };
  // The unmeshed client calls the enrolled front end in plaintext.
  EXPECT_EQ(edge("legacy/client->shop/frontend")["security"], "plaintext");
  // Same node (node0) and across nodes.
  EXPECT_EQ(edge("shop/frontend->shop/catalogue-0")["security"], "same_node");
  EXPECT_EQ(edge("shop/frontend->shop/cart")["security"], "mutual_tls");
  EXPECT_EQ(edge("shop/frontend->shop/cart")["protocol"], "http");
  // The cart's calls to the store were refused by the store's ztunnel.
  EXPECT_GE(edge("shop/cart->shop/store")["denied_total"].get<double>(), 2);
  EXPECT_EQ(edge("shop/frontend->shop/store")["denied_total"].get<double>(), 0);
  // Every workload is a node, with its enrolment.
  const json* client = Find(g["nodes"], "id", "legacy/client");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ((*client)["meshed"], "no");
  EXPECT_EQ((*Find(g["nodes"], "id", "shop/store"))["meshed"], "yes");
}

TEST(Graph, RatesAndDenialsOverTheWindow) {
  json g = GraphJson(Reading("before"), Reading("after"), 4, DataJson("config_dump.json"));
  const json* e = Find(g["edges"], "id", "shop/cart->shop/store");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ((*e)["denied"].get<double>(), 1) << e->dump(1);  // one call in the window
  const json* front = Find(g["edges"], "id", "legacy/client->shop/frontend");
  ASSERT_NE(front, nullptr);
  EXPECT_GT((*front)["requests_per_second"].get<double>(), 100) << front->dump(1);
  EXPECT_EQ((*front)["rate"], (*front)["requests_per_second"]);
  EXPECT_TRUE((*front)["active"].get<bool>());
}

// With Service nodes: client -> Service -> the workloads behind it, from the metrics'
// destination_service labels; every Service of weftd's config is a node, labelled name.namespace.
TEST(Graph, ServiceNodesBetweenCallersAndTheirWorkloads) {
  json g = GraphJson({}, Reading("after"), 0, DataJson("config_dump.json"));
  const json* cat = Find(g["nodes"], "id", "svc:shop/catalogue");
  ASSERT_NE(cat, nullptr) << g["nodes"].dump(1);
  EXPECT_EQ((*cat)["kind"], "service");
  EXPECT_EQ((*cat)["label"], "catalogue.shop");
  EXPECT_EQ((*cat)["hostname"], "catalogue.shop.svc.cluster.local");
  EXPECT_EQ((*cat)["pods"], 2);  // its endpoints, both enrolled
  EXPECT_EQ((*cat)["meshed"], "yes");
  int services = 0;
  for (const json& n : g["nodes"]) services += n["kind"] == "service";
  EXPECT_EQ(services, 5);
  auto edge = [&](const std::string& id) {
    const json* e = Find(g["service_edges"], "id", id);
    EXPECT_NE(e, nullptr) << id << " missing in " << g["service_edges"].dump(1);
    return e ? *e : json::object();
  };
  EXPECT_EQ(edge("shop/frontend->svc:shop/catalogue")["kind"], "to_service");
  EXPECT_EQ(edge("svc:shop/catalogue->shop/catalogue-0")["kind"], "from_service");
  EXPECT_EQ(edge("svc:shop/catalogue->shop/catalogue-0")["security"], "same_node");
  EXPECT_EQ(edge("svc:shop/catalogue->shop/catalogue-1")["security"], "mutual_tls");
  EXPECT_EQ(edge("shop/frontend->svc:shop/catalogue")["security"], "mixed");
  EXPECT_EQ(edge("legacy/client->svc:shop/frontend")["security"], "plaintext");
  EXPECT_EQ(edge("svc:shop/frontend->shop/frontend")["protocol"], "http");
  // The denial shows on both halves of the cart's call to the store.
  EXPECT_GE(edge("shop/cart->svc:shop/store")["denied_total"].get<double>(), 2);
  EXPECT_GE(edge("svc:shop/store->shop/store")["denied_total"].get<double>(), 2);
  // Nothing in this mesh calls a pod's own address: no direct edge in this view.
  for (const json& e : g["service_edges"]) EXPECT_NE(e["kind"], "workload") << e.dump();
  // Both halves count the same traffic: into a Service as much as out of it.
  for (const json& n : g["nodes"]) {
    if (n["kind"] != "service") continue;
    double in = 0, out = 0;
    for (const json& e : g["service_edges"]) {
      if (e["target"] == n["id"])
        in += e["requests"].get<double>() + e["connections_opened"].get<double>();
      if (e["source"] == n["id"])
        out += e["requests"].get<double>() + e["connections_opened"].get<double>();
    }
    EXPECT_EQ(in, out) << n["id"];
    EXPECT_GT(in, 0) << n["id"];
  }
}

TEST(Graph, ServiceOfASampleFromItsLabelsOrItsHostname) {
  auto sample = [](std::map<std::string, std::string> labels) {
    MetricSample s;
    s.name = "weft_tcp_connection_duration_seconds_count";
    s.labels = std::move(labels);
    return s;
  };
  ServiceNames names({sample({{"destination_service", "tea.example"},
                              {"destination_service_name", "teas"},
                              {"destination_service_namespace", "shop"}})},
                     DataJson("config_dump.json"));
  EXPECT_EQ(names.Of(sample({{"destination_service", "tea.example"}})), "svc:shop/teas");
  EXPECT_EQ(names.Of(sample({{"destination_service", "cart.shop.svc.cluster.local"}})),
            "svc:shop/cart");
  EXPECT_EQ(names.Of(sample({{"destination_service", "other.ns.svc.example.org"}})),
            "svc:ns/other");
  EXPECT_EQ(names.Of(sample({{"destination_service", "unknown"}})), "");
  EXPECT_EQ(names.Of(sample({})), "");
}

// The same numbers `weftctl stat` prints: the totals are those of the recorded
// `weftctl stat --window 0 --json`, field by field.
TEST(Signals, TotalsAreWhatWeftctlStatPrints) {
  json s = SignalsJson({}, Reading("after"), 0);
  json stat = DataJson("stat-totals.json");
  ASSERT_EQ(s["totals"].size(), stat.size()) << s["totals"].dump(1);
  for (const json& want : stat) {
    const json* got = nullptr;
    for (const json& t : s["totals"]) {
      if (t["namespace"] == want["namespace"] && t["workload"] == want["workload"]) got = &t;
    }
    ASSERT_NE(got, nullptr) << want.dump();
    for (const auto& [k, v] : want.items()) {
      if (v.is_number_float() && (*got)[k].is_number()) {
        EXPECT_NEAR((*got)[k].get<double>(), v.get<double>(), 1e-9) << want["workload"] << " " << k;
      } else {
        EXPECT_EQ((*got)[k], v) << want["workload"] << " " << k;
      }
    }
  }
}

TEST(Signals, PerEdgeIsTheDestinationsStatsForThatSourceOnly) {
  json s = SignalsJson(Reading("before"), Reading("after"), 4);
  const json* whole = Find(s["workloads"], "workload", "frontend");
  const json* edge = Find(s["edges"], "id", "legacy/client->shop/frontend");
  ASSERT_NE(whole, nullptr);
  ASSERT_NE(edge, nullptr);
  // The legacy client is the front end's only caller.
  EXPECT_DOUBLE_EQ((*edge)["requests_per_second"].get<double>(),
                   (*whole)["requests_per_second"].get<double>());
  EXPECT_DOUBLE_EQ((*edge)["request_success_rate"].get<double>(), 1.0);
  // The catalogue has two callers' worth of edges at most; each edge's rate is at most the
  // workload's.
  for (const json& e : s["edges"]) {
    const json* w = nullptr;
    for (const json& x : s["workloads"]) {
      if (x["namespace"].get<std::string>() + "/" + x["workload"].get<std::string>() ==
          e["target"]) {
        w = &x;
      }
    }
    ASSERT_NE(w, nullptr) << e.dump();
    EXPECT_LE(e["connections"].get<double>(), (*w)["connections"].get<double>());
  }
}

// A Service's golden signals: the traffic addressed to it, whichever workload served it.
TEST(Signals, PerServiceIsItsWorkloadsTrafficAddressedToIt) {
  json s = SignalsJson(Reading("before"), Reading("after"), 4, DataJson("config_dump.json"));
  const json* cat = Find(s["service_totals"], "id", "svc:shop/catalogue");
  ASSERT_NE(cat, nullptr) << s["service_totals"].dump(1);
  EXPECT_EQ((*cat)["service"], "catalogue");
  EXPECT_EQ((*cat)["protocol"], "http");
  double behind = 0;
  for (const char* w : {"catalogue-0", "catalogue-1"}) {
    const json* t = Find(s["totals"], "workload", w);
    ASSERT_NE(t, nullptr) << w;
    behind += (*t)["requests"].get<double>();
  }
  EXPECT_GT(behind, 0);
  EXPECT_EQ((*cat)["requests"].get<double>(), behind);
  // Over the window: the front end's Service has the front end's rate (its only caller).
  const json* fe = Find(s["services"], "id", "svc:shop/frontend");
  const json* fw = Find(s["workloads"], "workload", "frontend");
  ASSERT_NE(fe, nullptr);
  ASSERT_NE(fw, nullptr);
  EXPECT_GT((*fe)["requests_per_second"].get<double>(), 0);
  EXPECT_DOUBLE_EQ((*fe)["requests_per_second"].get<double>(),
                   (*fw)["requests_per_second"].get<double>());
  // The edges of the graph with Service nodes have stats under the graph's ids.
  json g = GraphJson(Reading("before"), Reading("after"), 4, DataJson("config_dump.json"));
  for (const json& e : g["service_edges"]) {
    EXPECT_NE(Find(s["service_edges"], "id", e["id"].get<std::string>()), nullptr) << e["id"];
  }
}

TEST(Health, PoliciesPerWorkloadCertificatesVersions) {
  absl::Time now;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2026-12-06T12:00:00Z", &now, &err));
  json h = HealthJson(DataJson("status.json"), DataJson("config_dump.json"), now);
  ASSERT_EQ(h["policies"]["shop/store"].size(), 1u) << h["policies"].dump(1);
  EXPECT_EQ(h["policies"]["shop/store"][0]["kind"], "AuthorizationPolicy");
  EXPECT_EQ(h["policies"]["shop/store"][0]["name"], "store-deny-except-frontend");
  EXPECT_EQ(h["policies"]["shop/store"][0]["detail"], "DENY, 1 rule(s)");
  EXPECT_TRUE(h["policies"]["shop/cart"].empty());
  const json* n0 = Find(h["nodes"], "name", "node0");
  ASSERT_NE(n0, nullptr);
  ASSERT_FALSE((*n0)["certificates"].empty());
  EXPECT_EQ((*n0)["certificates"][0]["state"], "ok");
  EXPECT_GT((*n0)["certificates"][0]["seconds_left"].get<double>(), 3600);
  EXPECT_FALSE((*n0)["ztunnel"]["version_acked"].get<std::string>().empty());
  // A day later every certificate has expired.
  json later =
      HealthJson(DataJson("status.json"), DataJson("config_dump.json"), now + absl::Hours(48));
  EXPECT_EQ((*Find(later["nodes"], "name", "node0"))["certificates"][0]["state"], "expired");
}

TEST(Health, RoutesAndTrafficPoliciesPerService) {
  json config = DataJson("config_dump.json");
  config["httpRoutes"] = json::parse(R"([
    {"name": "catalogue", "namespace": "shop", "parentService": "shop/catalogue",
     "rules": [{}, {}, {}]},
    {"name": "mine", "namespace": "legacy", "parentService": "shop/catalogue", "rules": [{}]}])");
  config["trafficPolicies"] = json::parse(R"([{"name": "store", "namespace": "shop",
    "targetService": "shop/store", "retries": {"attempts": 3}, "connectionPool": {}}])");
  json h = HealthJson(DataJson("status.json"), config, absl::Now());
  const json& sp = h["service_policies"];
  ASSERT_EQ(sp["shop/catalogue"].size(), 2u) << sp.dump(1);
  EXPECT_EQ(sp["shop/catalogue"][0]["kind"], "HTTPRoute");
  EXPECT_EQ(sp["shop/catalogue"][0]["detail"], "3 rule(s), every client");
  EXPECT_EQ(sp["shop/catalogue"][1]["detail"], "1 rule(s), clients in namespace legacy");
  ASSERT_EQ(sp["shop/store"].size(), 1u);
  EXPECT_EQ(sp["shop/store"][0]["kind"], "TrafficPolicy");
  EXPECT_EQ(sp["shop/store"][0]["detail"], "retries, connectionPool");
  EXPECT_TRUE(sp["shop/cart"].empty());  // every Service is listed, with or without any
}

TEST(Health, PoliciesFromEveryNodesConfig) {
  // weftd sends a node the policies of its own workloads: node1's view lacks the store's.
  json node0 = DataJson("config_dump.json"), node1 = node0;
  node1.erase("authorizationPolicies");
  json merged = MergeNodeConfigs({node1, node0});
  EXPECT_EQ(merged["workloads"].size(), 7u);
  EXPECT_EQ(merged["authorizationPolicies"].size(), 1u);
  json h = HealthJson(DataJson("status.json"), merged, absl::Now());
  EXPECT_EQ(h["policies"]["shop/store"].size(), 1u);
}

TEST(Sources, PrometheusVectorAnswerBecomesSamples) {
  auto s = ParsePrometheusVector(R"({"status":"success","data":{"resultType":"vector","result":[
    {"metric":{"__name__":"istio_requests_total","reporter":"destination","response_code":"200",
      "destination_workload":"store","destination_workload_namespace":"shop",
      "instance":"10.0.0.1:15020"},"value":[1765000000.123,"42"]},
    {"metric":{"__name__":"weft_tcp_connection_duration_seconds_bucket","le":"+Inf"},
     "value":[1765000000.123,"7"]}]}})");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].name, "istio_requests_total");
  EXPECT_EQ((*s)[0].labels.at("destination_workload"), "store");
  EXPECT_EQ((*s)[0].value, 42);
  EXPECT_EQ((*s)[1].labels.at("le"), "+Inf");
  auto bad = ParsePrometheusVector(R"({"status":"error","error":"parse error at char 3"})");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("parse error at char 3"), std::string::npos);
  EXPECT_FALSE(ParsePrometheusVector("<html>").ok());
}

TEST(Sources, CaptureModeFromTheAgentsLog) {
  NodeCapture c = CaptureFromAgentLog(Data("agent.log"));
  EXPECT_EQ(c.mode, "ebpf");
  EXPECT_NE(c.reason.find("eBPF capture"), std::string::npos);
  EXPECT_EQ(CaptureFromAgentLog("not json\n").mode, "");
}

}  // namespace
}  // namespace weft::cli::dashboard
