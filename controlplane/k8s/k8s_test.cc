#include <prometheus/registry.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <openssl/x509v3.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/testing/eventually.h"
#include "common/tls.h"
#include "controlplane/k8s/endpoint.h"
#include "controlplane/k8s/rest_client.h"
#include "controlplane/k8s/route_status_writer.h"
#include "controlplane/k8s/test_api_server.h"
#include "controlplane/k8s/token_review.h"
#include "controlplane/k8s/watcher.h"
#include "gtest/gtest.h"

namespace weft::cp::k8s {
namespace {

using namespace std::chrono_literals;
using testing::Fixture;
using testing::FixtureLines;
using testing::RecordedRequest;
using testing::ScriptedReply;
using testing::TestApiServer;
using json = nlohmann::json;

constexpr char kPods[] = "/api/v1/pods";

ScriptedReply Body(int status, std::string body) {
  ScriptedReply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

ScriptedReply Stream(std::vector<std::string> chunks, bool drop = false) {
  ScriptedReply r;
  r.stream = true;
  r.chunks = std::move(chunks);
  r.drop = drop;
  return r;
}

// Records what the sink receives as "type kind ns/name" strings.
class Recorder {
 public:
  ObjectSink Sink() {
    return [this](const ObjectEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
      cv_.notify_all();
    };
  }
  std::vector<std::string> Lines() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& e : events_) {
      const char* t = e.type == ObjectEvent::Type::kUpsert   ? "upsert"
                      : e.type == ObjectEvent::Type::kDelete ? "delete"
                                                             : "synced";
      std::string s = std::string(t) + " " + e.kind;
      if (e.type != ObjectEvent::Type::kSynced) {
        const auto& m = e.object["metadata"];
        s += " " + m.value("namespace", std::string()) + "/" + m.value("name", std::string());
      }
      out.push_back(s);
    }
    return out;
  }
  std::vector<ObjectEvent> Events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  bool WaitFor(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ObjectEvent> events_;
};

double CounterValue(prometheus::Registry& reg, const std::string& name,
                    const std::map<std::string, std::string>& labels) {
  for (const auto& fam : reg.Collect()) {
    if (fam.name != name) continue;
    for (const auto& m : fam.metric) {
      std::map<std::string, std::string> got;
      for (const auto& l : m.label) got[l.name] = l.value;
      bool match = true;
      for (const auto& [k, v] : labels) match = match && got[k] == v;
      if (match) return fam.type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value;
    }
  }
  return 0;
}

WatchOptions PodsOnly() {
  WatchOptions o;
  o.resources = {{"", "v1", "pods", "Pod"}};
  o.page_size = 2;
  o.watch_timeout = 60s;
  o.backoff_initial = 200ms;
  o.backoff_max = 800ms;
  o.seed = 42;
  return o;
}

std::string TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "weft-k8s-XXXXXX").string();
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

TEST(ResourceTypeTest, PathsAndApiVersions) {
  const auto& r = WatchedResources();
  ASSERT_EQ(r.size(), 14u);
  std::vector<std::string> paths;
  for (const auto& t : r) paths.push_back(t.CollectionPath() + " " + t.ApiVersion() + " " + t.kind);
  EXPECT_EQ(paths,
            (std::vector<std::string>{
                "/api/v1/namespaces v1 Namespace",
                "/api/v1/pods v1 Pod",
                "/api/v1/services v1 Service",
                "/apis/discovery.k8s.io/v1/endpointslices discovery.k8s.io/v1 EndpointSlice",
                "/api/v1/serviceaccounts v1 ServiceAccount",
                "/apis/networking.k8s.io/v1/networkpolicies networking.k8s.io/v1 NetworkPolicy",
                "/apis/security.weft.dev/v1/authorizationpolicies security.weft.dev/v1 "
                "AuthorizationPolicy",
                "/apis/security.weft.dev/v1/peerauthentications security.weft.dev/v1 "
                "PeerAuthentication",
                "/apis/gateway.networking.k8s.io/v1/httproutes gateway.networking.k8s.io/v1 "
                "HTTPRoute",
                "/apis/gateway.networking.k8s.io/v1/grpcroutes gateway.networking.k8s.io/v1 "
                "GRPCRoute",
                "/apis/gateway.networking.k8s.io/v1beta1/referencegrants "
                "gateway.networking.k8s.io/v1beta1 ReferenceGrant",
                "/apis/networking.weft.dev/v1/trafficpolicies networking.weft.dev/v1 "
                "TrafficPolicy",
                "/apis/security.istio.io/v1/authorizationpolicies security.istio.io/v1 "
                "AuthorizationPolicy",
                "/apis/security.istio.io/v1/peerauthentications security.istio.io/v1 "
                "PeerAuthentication",
            }));
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_EQ(r[i].optional, i >= 8) << r[i].kind;
    EXPECT_EQ(r[i].qualified, i >= 12) << r[i].kind;
  }
  EXPECT_EQ(r[12].Label(), "AuthorizationPolicy.security.istio.io");
  EXPECT_EQ(r[6].Label(), "AuthorizationPolicy");
  // weftd --istio-policies=false
  const std::vector<ResourceType> without = WatchedResources(false);
  ASSERT_EQ(without.size(), 12u);
  for (const auto& t : without) EXPECT_NE(t.group, "security.istio.io") << t.kind;
  EXPECT_EQ(WatchedResources(true).size(), 14u);
}

TEST(BackoffTest, DoublesWithJitterAndStaysBounded) {
  Backoff b(100ms, 1000ms, 7);
  const int64_t caps[] = {100, 200, 400, 800, 1000, 1000, 1000, 1000};
  for (int64_t cap : caps) {
    const auto d = b.Next().count();
    EXPECT_GE(d, cap / 2) << "cap " << cap;
    EXPECT_LE(d, cap) << "cap " << cap;
  }
  for (int i = 0; i < 200; ++i) EXPECT_LE(b.Next().count(), 1000);
  b.Reset();
  const auto d = b.Next().count();
  EXPECT_GE(d, 50);
  EXPECT_LE(d, 100);
  // Jitter: not every delay at the cap is the same.
  std::set<int64_t> seen;
  for (int i = 0; i < 50; ++i) seen.insert(b.Next().count());
  EXPECT_GT(seen.size(), 5u);
}

// The whole life of one watched resource against recorded replies: paginated list, watch
// events, bookmark, dropped connection, 401, ERROR 410, HTTP 410, malformed line, clean end.
TEST(WatcherTest, ListWatchBookmarksGoneAndErrors) {
  TestApiServer server;
  // 1-2: paginated list, resourceVersion 1000.
  server.Enqueue(kPods, Body(200, Fixture("pods_list_page1.json")));
  server.Enqueue(kPods, Body(200, Fixture("pods_list_page2.json")));
  // 3: ADDED d, MODIFIED a, DELETED b, BOOKMARK 1010, half an event, connection dropped.
  auto w1 = FixtureLines("pods_watch_1.jsonl");
  w1.push_back(Fixture("pods_watch_1_partial.txt"));
  server.Enqueue(kPods, Stream(w1, /*drop=*/true));
  // 4: 401 on the resumed watch.
  server.Enqueue(kPods, Body(401, Fixture("status_401.json")));
  // 5: MODIFIED c, then ERROR 410 -> relist.
  server.Enqueue(kPods, Stream(FixtureLines("pods_watch_2.jsonl")));
  // 6: relist at 2000; 7: watch answered with HTTP 410 -> relist.
  server.Enqueue(kPods, Body(200, Fixture("pods_list_relist.json")));
  server.Enqueue(kPods, Body(410, Fixture("status_410.json")));
  // 8: list at 3000; 9: malformed event line -> relist.
  server.Enqueue(kPods, Body(200, Fixture("pods_list_3000.json")));
  server.Enqueue(kPods, Stream(FixtureLines("pods_watch_malformed.jsonl")));
  // 10: list at 4000; 11: ADDED f then the server ends the watch; 12: watch from 4001 (held).
  server.Enqueue(kPods, Body(200, Fixture("pods_list_4000.json")));
  server.Enqueue(kPods, Stream(FixtureLines("pods_watch_4000.jsonl")));

  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  auto client = std::make_shared<RestClient>(PlainEndpoint(server.url()));
  Watcher watcher(client, rec.Sink(), registry, PodsOnly());
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kPods, 12, 20s)) << server.Requests(kPods).size();
  ASSERT_TRUE(rec.WaitFor(17, 5s));
  EXPECT_TRUE(watcher.Synced());
  watcher.Stop();

  EXPECT_EQ(rec.Lines(), (std::vector<std::string>{
                             "upsert Pod default/pod-a",
                             "upsert Pod default/pod-b",
                             "upsert Pod prod/pod-c",
                             "synced Pod",
                             "upsert Pod prod/pod-d",
                             "upsert Pod default/pod-a",
                             "delete Pod default/pod-b",
                             "upsert Pod prod/pod-c",
                             "upsert Pod default/pod-a",
                             "upsert Pod prod/pod-c",
                             "upsert Pod prod/pod-e",
                             "synced Pod",
                             "upsert Pod default/pod-a",
                             "synced Pod",
                             "upsert Pod default/pod-a",
                             "synced Pod",
                             "upsert Pod prod/pod-f",
                         }));
  // List items get apiVersion/kind; watch objects keep theirs.
  const auto events = rec.Events();
  EXPECT_EQ(events[0].object["apiVersion"], "v1");
  EXPECT_EQ(events[0].object["kind"], "Pod");
  EXPECT_EQ(events[0].source, "kubernetes");
  EXPECT_EQ(events[0].object["status"]["podIP"], "10.244.1.10");
  EXPECT_EQ(events[5].object["metadata"]["labels"]["version"], "v2");
  EXPECT_EQ(events[6].object["metadata"]["resourceVersion"], "1003");

  const auto reqs = server.Requests(kPods);
  ASSERT_GE(reqs.size(), 12u);
  auto is_list = [](const testing::RecordedRequest& r) {
    return r.query.count("watch") == 0 && r.query.at("limit") == "2";
  };
  auto watch_rv = [](const testing::RecordedRequest& r) {
    EXPECT_EQ(r.query.at("watch"), "1");
    EXPECT_EQ(r.query.at("allowWatchBookmarks"), "true");
    const int t = std::stoi(r.query.at("timeoutSeconds"));
    EXPECT_GE(t, 60);
    EXPECT_LT(t, 120);
    return r.query.at("resourceVersion");
  };
  EXPECT_TRUE(is_list(reqs[0]));
  EXPECT_EQ(reqs[0].query.count("continue"), 0u);
  EXPECT_TRUE(is_list(reqs[1]));
  // The continue token is passed back percent-encoded.
  EXPECT_EQ(
      reqs[1].query.at("continue"),
      "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTAwMCwic3RhcnQiOiJkZWZhdWx0L3BvZC1iXHUwMDAwIn0%3D");
  EXPECT_EQ(watch_rv(reqs[2]), "1000");
  EXPECT_EQ(watch_rv(reqs[3]), "1010");  // resumed after the drop at the bookmark's version
  EXPECT_EQ(watch_rv(reqs[4]), "1010");  // retried after the 401
  EXPECT_TRUE(is_list(reqs[5]));         // ERROR 410 -> relist
  EXPECT_EQ(watch_rv(reqs[6]), "2000");
  EXPECT_TRUE(is_list(reqs[7]));  // HTTP 410 -> relist
  EXPECT_EQ(watch_rv(reqs[8]), "3000");
  EXPECT_TRUE(is_list(reqs[9]));  // malformed line -> relist
  EXPECT_EQ(watch_rv(reqs[10]), "4000");
  EXPECT_EQ(watch_rv(reqs[11]), "4001");  // clean end -> resume from the last event

  // Backoff after the dropped connection and after the 401 (200 ms initial, equal jitter:
  // [100, 200] then [200, 400]): lower bounds only, a busy machine only adds to a delay. That the
  // ERROR 410 after an event and the clean end are followed at once is
  // GoneAfterEventsAndCleanEndResumeWithoutBackoff's.
  const auto gap = [&](size_t i) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(reqs[i].at - reqs[i - 1].at);
  };
  EXPECT_GE(gap(3), 100ms);
  EXPECT_GE(gap(4), 200ms);

  auto& reg = *registry;
  EXPECT_EQ(CounterValue(reg, "weft_k8s_watch_events_total", {{"kind", "Pod"}, {"type", "ADDED"}}),
            2);
  EXPECT_EQ(
      CounterValue(reg, "weft_k8s_watch_events_total", {{"kind", "Pod"}, {"type", "MODIFIED"}}), 2);
  EXPECT_EQ(
      CounterValue(reg, "weft_k8s_watch_events_total", {{"kind", "Pod"}, {"type", "DELETED"}}), 1);
  EXPECT_EQ(
      CounterValue(reg, "weft_k8s_watch_events_total", {{"kind", "Pod"}, {"type", "BOOKMARK"}}), 1);
  EXPECT_EQ(CounterValue(reg, "weft_k8s_watch_events_total", {{"kind", "Pod"}, {"type", "ERROR"}}),
            1);
  EXPECT_EQ(
      CounterValue(reg, "weft_k8s_relists_total", {{"kind", "Pod"}, {"reason", "gone_event"}}), 1);
  EXPECT_EQ(
      CounterValue(reg, "weft_k8s_relists_total", {{"kind", "Pod"}, {"reason", "gone_status"}}), 1);
  EXPECT_EQ(
      CounterValue(reg, "weft_k8s_relists_total", {{"kind", "Pod"}, {"reason", "malformed_event"}}),
      1);
  EXPECT_EQ(CounterValue(reg, "weft_k8s_errors_total", {{"kind", "Pod"}, {"code", "401"}}), 1);
  EXPECT_EQ(CounterValue(reg, "weft_k8s_errors_total", {{"kind", "Pod"}, {"code", "transport"}}),
            1);
  EXPECT_EQ(CounterValue(reg, "weft_k8s_errors_total", {{"kind", "Pod"}, {"code", "malformed"}}),
            1);
  EXPECT_EQ(CounterValue(reg, "weft_k8s_synced", {{"kind", "Pod"}}), 1);
}

// The two cases that resume at once, checked without a clock: the backoff is an hour, so any
// delay would stall the watcher far past the wait. An ERROR 410 after an event relists without a
// delay, and a watch the server ends after delivering events is resumed without one.
TEST(WatcherTest, GoneAfterEventsAndCleanEndResumeWithoutBackoff) {
  TestApiServer server;
  server.Enqueue(kPods, Body(200, Fixture("pods_list_page1.json")));
  server.Enqueue(kPods, Body(200, Fixture("pods_list_page2.json")));
  server.Enqueue(kPods, Stream(FixtureLines("pods_watch_2.jsonl")));  // MODIFIED c, ERROR 410
  server.Enqueue(kPods, Body(200, Fixture("pods_list_4000.json")));
  server.Enqueue(kPods, Stream(FixtureLines("pods_watch_4000.jsonl")));  // ADDED f, clean end
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  WatchOptions o = PodsOnly();
  o.backoff_initial = std::chrono::hours(1);
  o.backoff_max = std::chrono::hours(1);
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  o);
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kPods, 6, 60s))
      << "the watcher backed off: " << server.Requests(kPods).size() << " requests";
  watcher.Stop();
  const auto reqs = server.Requests(kPods);
  ASSERT_GE(reqs.size(), 6u);
  EXPECT_EQ(reqs[2].query.at("resourceVersion"), "1000");
  EXPECT_EQ(reqs[3].query.count("watch"), 0u) << "ERROR 410 -> relist";
  EXPECT_EQ(reqs[4].query.at("resourceVersion"), "4000");
  EXPECT_EQ(reqs[5].query.at("resourceVersion"), "4001") << "clean end -> resume from the event";
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_relists_total",
                         {{"kind", "Pod"}, {"reason", "gone_event"}}),
            1);
}

// Found with the k8s_watch fuzzer (tests/fuzz/regressions/k8s_watch/): members of the wrong type in
// a list or an event (json::value() throws) terminated weftd from the watcher thread.
TEST(WatcherTest, MembersOfTheWrongTypeAreNotFatal) {
  TestApiServer server;
  server.Enqueue(kPods, Body(200, R"({"kind":"PodList","metadata":{"resourceVersion":7,)"
                                  R"("continue":[]},"items":[]})"));
  server.Enqueue(
      kPods,
      Stream({R"({"type":"ADDED","object":{"apiVersion":1,"kind":"Pod","metadata":{"name":"a",)"
              R"("namespace":"ns","resourceVersion":"8"}}})"
              "\n",
              R"({"type":"ADDED","object":{"metadata":{"name":"b","namespace":"ns",)"
              R"("resourceVersion":"9"}}})"
              "\n",
              R"({"type":"ERROR","object":{"kind":"Status","code":500,"message":{"x":1}}})"
              "\n"}));
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  PodsOnly());
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kPods, 3, 20s));
  ASSERT_TRUE(rec.WaitFor(3, 5s));
  watcher.Stop();
  EXPECT_EQ(rec.Lines(),
            (std::vector<std::string>{"synced Pod", "upsert Pod ns/a", "upsert Pod ns/b"}));
  const auto events = rec.Events();
  EXPECT_EQ(events[1].object["apiVersion"], 1) << "a bad apiVersion is left for the model";
  EXPECT_EQ(events[2].object["apiVersion"], "v1") << "a missing one is filled in";
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_errors_total",
                         {{"kind", "Pod"}, {"code", "watch_error_500"}}),
            1);
}

TEST(WatcherTest, ForbiddenListIsCountedAndRetriedWithBackoff) {
  TestApiServer server;
  server.Enqueue(kPods, Body(403, Fixture("status_403_pods.json")));
  server.Enqueue(kPods, Body(403, Fixture("status_403_pods.json")));
  server.Enqueue(kPods, Body(200, Fixture("pods_list_3000.json")));
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  PodsOnly());
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kPods, 4, 10s));
  ASSERT_TRUE(rec.WaitFor(2, 5s));
  EXPECT_FALSE(rec.Lines().empty());
  watcher.Stop();
  EXPECT_EQ(rec.Lines(), (std::vector<std::string>{"upsert Pod default/pod-a", "synced Pod"}));
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_errors_total", {{"kind", "Pod"}, {"code", "403"}}),
            2);
  const auto reqs = server.Requests(kPods);
  const auto gap1 = reqs[1].at - reqs[0].at, gap2 = reqs[2].at - reqs[1].at;
  EXPECT_GE(gap1, 100ms);
  EXPECT_GE(gap2, 200ms);  // doubled (the first delay is at most 200 ms)
  EXPECT_EQ(reqs[3].query.at("resourceVersion"), "3000");
}

TEST(WatcherTest, ExpiredContinueTokenRestartsTheList) {
  TestApiServer server;
  server.Enqueue(kPods, Body(200, Fixture("pods_list_page1.json")));
  server.Enqueue(kPods, Body(410, Fixture("status_410.json")));
  server.Enqueue(kPods, Body(200, Fixture("pods_list_page1.json")));
  server.Enqueue(kPods, Body(200, Fixture("pods_list_page2.json")));
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  PodsOnly());
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kPods, 5, 10s));
  ASSERT_TRUE(rec.WaitFor(4, 5s));
  watcher.Stop();
  // Nothing from the abandoned first attempt reaches the sink.
  EXPECT_EQ(rec.Lines(),
            (std::vector<std::string>{"upsert Pod default/pod-a", "upsert Pod default/pod-b",
                                      "upsert Pod prod/pod-c", "synced Pod"}));
  const auto reqs = server.Requests(kPods);
  EXPECT_EQ(reqs[2].query.count("continue"), 0u);
  EXPECT_EQ(reqs[3].query.count("continue"), 1u);
  EXPECT_EQ(reqs[4].query.at("resourceVersion"), "1000");
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_errors_total", {{"kind", "Pod"}, {"code", "410"}}),
            1);
}

TEST(WatcherTest, EmptyWatchesEndingAtOnceBackOff) {
  TestApiServer server;
  server.Enqueue(kPods, Body(200, Fixture("pods_list_3000.json")));
  server.Enqueue(kPods, Stream({}));
  server.Enqueue(kPods, Stream({}));
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  PodsOnly());
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kPods, 4, 10s));
  watcher.Stop();
  const auto reqs = server.Requests(kPods);
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(reqs[i].query.at("resourceVersion"), "3000");
  EXPECT_GE(reqs[2].at - reqs[1].at, 100ms);
  EXPECT_GE(reqs[3].at - reqs[2].at, 200ms);
  EXPECT_EQ(rec.Lines(), (std::vector<std::string>{"upsert Pod default/pod-a", "synced Pod"}));
}

TEST(WatcherTest, WatchesEveryResourceWithItsPathAndKind) {
  TestApiServer server;
  WatchOptions opts = PodsOnly();
  opts.resources = WatchedResources();
  for (const auto& rt : opts.resources) {
    json list = {{"kind", rt.kind + "List"},
                 {"apiVersion", rt.ApiVersion()},
                 {"metadata", {{"resourceVersion", "77"}}},
                 {"items", json::array({{{"metadata",
                                          {{"name", "x"},
                                           {"namespace", rt.kind == "Namespace" ? "" : "prod"},
                                           {"resourceVersion", "70"}}}}})}};
    if (rt.kind == "Namespace") list = json::parse(Fixture("namespaces_list.json"));
    server.Enqueue(rt.CollectionPath(), Body(200, list.dump()));
  }
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  opts);
  watcher.Start();
  for (const auto& rt : opts.resources) {
    ASSERT_TRUE(server.WaitForRequests(rt.CollectionPath(), 2, 10s)) << rt.kind;
  }
  EXPECT_TRUE(watcher.Synced());
  watcher.Stop();
  std::map<std::string, std::string> api_version_by_kind;  // by "<source> <kind>"
  int synced = 0;
  for (const auto& e : rec.Events()) {
    if (e.type == ObjectEvent::Type::kSynced) {
      ++synced;
      continue;
    }
    const std::string kind = e.object["kind"];
    api_version_by_kind[e.source == "kubernetes" ? kind : e.source + " " + kind] =
        e.object["apiVersion"];
    EXPECT_EQ(e.kind, e.object["kind"]);
  }
  EXPECT_EQ(synced, 14);
  EXPECT_EQ(api_version_by_kind["kubernetes/security.istio.io AuthorizationPolicy"],
            "security.istio.io/v1");
  EXPECT_EQ(api_version_by_kind["kubernetes/security.istio.io PeerAuthentication"],
            "security.istio.io/v1");
  EXPECT_EQ(api_version_by_kind["EndpointSlice"], "discovery.k8s.io/v1");
  EXPECT_EQ(api_version_by_kind["NetworkPolicy"], "networking.k8s.io/v1");
  EXPECT_EQ(api_version_by_kind["AuthorizationPolicy"], "security.weft.dev/v1");
  EXPECT_EQ(api_version_by_kind["PeerAuthentication"], "security.weft.dev/v1");
  EXPECT_EQ(api_version_by_kind["Namespace"], "v1");
  EXPECT_EQ(api_version_by_kind["HTTPRoute"], "gateway.networking.k8s.io/v1");
  EXPECT_EQ(api_version_by_kind["ReferenceGrant"], "gateway.networking.k8s.io/v1beta1");
  EXPECT_EQ(api_version_by_kind["TrafficPolicy"], "networking.weft.dev/v1");
  EXPECT_EQ(api_version_by_kind.size(), 14u);
  for (const auto& rt : opts.resources) {
    const auto reqs = server.Requests(rt.CollectionPath());
    EXPECT_EQ(reqs[0].query.at("limit"), "2") << rt.kind;
    EXPECT_EQ(reqs[1].query.at("resourceVersion"), rt.kind == "Namespace" ? "500" : "77");
  }
}

TEST(RestClientTest, RereadsRotatedTokenFile) {
  TestApiServer server;
  const std::string dir = TempDir();
  WriteFile(dir + "/token", "token-one\n");
  Endpoint ep = PlainEndpoint(server.url());
  ep.token_file = dir + "/token";
  RestOptions ro;
  ro.token_reread = 0s;
  RestClient client(ep, ro);
  server.Enqueue("/version", Body(200, R"({"major":"1","minor":"30"})"));
  server.Enqueue("/version", Body(200, R"({"major":"1","minor":"30"})"));
  auto r1 = client.Get("/version", 5s);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->status, 200);
  WriteFile(dir + "/token", "token-two");
  auto r2 = client.Get("/version", 5s);
  ASSERT_TRUE(r2.ok()) << r2.status();
  const auto reqs = server.Requests("/version");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].authorization, "Bearer token-one");
  EXPECT_EQ(reqs[1].authorization, "Bearer token-two");
  // A vanished token file keeps the last token.
  std::filesystem::remove(dir + "/token");
  EXPECT_EQ(client.BearerToken(), "token-two");
  std::filesystem::remove_all(dir);
}

TEST(RestClientTest, TransportErrorIsUnavailable) {
  std::string url;
  {
    TestApiServer server;
    url = server.url();
  }
  RestClient client(PlainEndpoint(url));
  auto r = client.Get("/api/v1/pods", 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

// A throwaway PKI: CA, a server cert for 127.0.0.1, a client cert (CN weftd).
struct Pki {
  std::string ca_pem, server_cert, server_key, client_cert, client_key;
};

tls::X509Ptr Issue(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                   bool is_ca, const std::string& san) {
  tls::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  };
  add(NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  if (is_ca) add(NID_key_usage, "critical,keyCertSign,cRLSign");
  if (!san.empty()) add(NID_subject_alt_name, san.c_str());
  EXPECT_GT(X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()), 0);
  return cert;
}

Pki MakePki() {
  Pki p;
  auto ca_key = tls::GenerateKey().value();
  auto ca = Issue(ca_key.get(), "test-cluster-ca", nullptr, nullptr, true, "");
  auto server_key = tls::GenerateKey().value();
  auto server = Issue(server_key.get(), "kube-apiserver", ca.get(), ca_key.get(), false,
                      "IP:127.0.0.1,DNS:kubernetes.default.svc");
  auto client_key = tls::GenerateKey().value();
  auto client = Issue(client_key.get(), "weftd", ca.get(), ca_key.get(), false, "");
  p.ca_pem = tls::CertToPem(ca.get()).value();
  p.server_cert = tls::CertToPem(server.get()).value();
  p.server_key = tls::KeyToPem(server_key.get()).value();
  p.client_cert = tls::CertToPem(client.get()).value();
  p.client_key = tls::KeyToPem(client_key.get()).value();
  return p;
}

// The real transport: HTTPS with the cluster CA from a kubeconfig's inline data and a client
// certificate; and refusal of a server the CA did not sign.
TEST(RestClientTest, HttpsWithKubeconfigCaAndClientCertificate) {
  const Pki pki = MakePki();
  TestApiServer server(testing::TlsConfig{pki.server_cert, pki.server_key, pki.ca_pem});
  server.Enqueue("/version", Body(200, R"({"major":"1","minor":"30"})"));
  const std::string kubeconfig = absl::StrCat(
      "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n"
      "    server: ",
      server.url(), "\n    certificate-authority-data: ", absl::Base64Escape(pki.ca_pem),
      "\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n"
      "  user:\n    client-certificate-data: ",
      absl::Base64Escape(pki.client_cert),
      "\n    client-key-data: ", absl::Base64Escape(pki.client_key), "\n");
  auto ep = EndpointFromKubeconfigText(kubeconfig, "");
  ASSERT_TRUE(ep.ok()) << ep.status();
  RestClient client(*ep);
  auto r = client.Get("/version", 5s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["minor"], "30");
  const auto reqs = server.Requests("/version");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].client_cn, "weftd");

  // Same server, but trust only a different CA (from a file): the handshake must fail.
  const Pki other = MakePki();
  const std::string dir = TempDir();
  WriteFile(dir + "/ca.crt", other.ca_pem);
  Endpoint wrong = *ep;
  wrong.ca_pem.clear();
  wrong.ca_file = dir + "/ca.crt";
  auto bad = RestClient(wrong).Get("/version", 5s);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnavailable) << bad.status();
  std::filesystem::remove_all(dir);
}

TEST(TokenReviewTest, PostsTheTokenAndParsesTheUser) {
  TestApiServer server;
  const std::string path = "/apis/authentication.k8s.io/v1/tokenreviews";
  server.Enqueue(path, Body(201, Fixture("tokenreview_authenticated.json")));
  Endpoint ep = PlainEndpoint(server.url());
  ep.token = "weftd-own-token";
  RestClient client(ep);
  auto r = ReviewToken(client, "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.sig", {"weft-ca"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->authenticated);
  EXPECT_EQ(r->username, "system:serviceaccount:weft-system:weft-node");
  EXPECT_EQ(r->uid, "3d7c4c7e-0b5e-4a6b-a8c1-7c1f2e7e9b10");
  EXPECT_EQ(r->groups, (std::vector<std::string>{"system:serviceaccounts",
                                                 "system:serviceaccounts:weft-system",
                                                 "system:authenticated"}));
  EXPECT_EQ(r->extra.at("authentication.kubernetes.io/node-name"),
            std::vector<std::string>{"node-1"});
  EXPECT_EQ(r->audiences, std::vector<std::string>{"weft-ca"});

  const auto reqs = server.Requests(path);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].authorization, "Bearer weftd-own-token");
  EXPECT_EQ(reqs[0].content_type, "application/json");
  EXPECT_EQ(json::parse(reqs[0].body),
            json::parse(R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
              "spec":{"token":"eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUifQ.e30.sig",
                      "audiences":["weft-ca"]}})"));
}

TEST(TokenReviewTest, RejectedTokenAndForbiddenReviewer) {
  TestApiServer server;
  const std::string path = "/apis/authentication.k8s.io/v1/tokenreviews";
  server.Enqueue(path, Body(201, Fixture("tokenreview_rejected.json")));
  server.Enqueue(path, Body(403, Fixture("status_403_tokenreviews.json")));
  server.Enqueue(path, Body(401, Fixture("status_401.json")));
  RestClient client(PlainEndpoint(server.url()));
  auto r = ReviewToken(client, "expired-token");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->authenticated);
  EXPECT_EQ(r->error, "[invalid bearer token, service account token has expired]");
  EXPECT_TRUE(r->username.empty());
  EXPECT_EQ(json::parse(server.Requests(path)[0].body)["spec"],
            json::parse(R"({"token":"expired-token"})"));

  auto f = ReviewToken(client, "t");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(f.status().message().find("cannot create resource \"tokenreviews\""), std::string::npos)
      << f.status();
  EXPECT_NE(f.status().message().find("clusterrole"), std::string::npos);
  auto u = ReviewToken(client, "t");
  EXPECT_EQ(u.status().code(), absl::StatusCode::kUnauthenticated) << u.status();
  EXPECT_EQ(ReviewToken(client, "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenReviewTest, ParseRejectsMalformedReplies) {
  EXPECT_FALSE(ParseTokenReviewResponse("not json").ok());
  EXPECT_FALSE(ParseTokenReviewResponse(R"({"kind":"Status"})").ok());
  EXPECT_FALSE(ParseTokenReviewResponse(R"({"kind":"TokenReview"})").ok());
  EXPECT_FALSE(
      ParseTokenReviewResponse(R"({"kind":"TokenReview","status":{"authenticated":"yes"}})").ok());
  EXPECT_FALSE(
      ParseTokenReviewResponse(R"({"kind":"TokenReview","status":{"authenticated":true}})").ok());
}

constexpr char kKubeconfig[] = R"(apiVersion: v1
kind: Config
current-context: prod-admin
clusters:
- name: prod
  cluster:
    server: https://prod.example.com:6443/
    certificate-authority-data: %CA%
- name: dev
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: pki/ca.crt
    insecure-skip-tls-verify: true
contexts:
- name: prod-admin
  context:
    cluster: prod
    user: admin
    namespace: default
- name: dev-cert
  context:
    cluster: dev
    user: dev-user
- name: gke
  context:
    cluster: prod
    user: gke-user
users:
- name: admin
  user:
    token: sha256~abcdef
- name: dev-user
  user:
    client-certificate: pki/client.crt
    client-key: /abs/client.key
    tokenFile: tok
- name: gke-user
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
)";

TEST(KubeconfigTest, CurrentContextWithInlineData) {
  const std::string ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  std::string text = kKubeconfig;
  text.replace(text.find("%CA%"), 4, absl::Base64Escape(ca));
  auto ep = EndpointFromKubeconfigText(text, "/etc/weft");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->server, "https://prod.example.com:6443");
  EXPECT_EQ(ep->ca_pem, ca);
  EXPECT_TRUE(ep->ca_file.empty());
  EXPECT_EQ(ep->token, "sha256~abcdef");
  EXPECT_FALSE(ep->insecure_skip_tls_verify);
  EXPECT_EQ(ep->origin, "kubeconfig context prod-admin");
}

TEST(KubeconfigTest, NamedContextWithFilesFromDisk) {
  const std::string dir = TempDir();
  std::string text = kKubeconfig;
  text.replace(text.find("%CA%"), 4, "Zm9v");
  WriteFile(dir + "/config", text);
  auto ep = EndpointFromKubeconfig(dir + "/config", "dev-cert");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->server, "https://127.0.0.1:6443");
  EXPECT_EQ(ep->ca_file, dir + "/pki/ca.crt");
  EXPECT_TRUE(ep->insecure_skip_tls_verify);
  EXPECT_EQ(ep->client_cert_file, dir + "/pki/client.crt");
  EXPECT_EQ(ep->client_key_file, "/abs/client.key");
  EXPECT_EQ(ep->token_file, dir + "/tok");
  std::filesystem::remove_all(dir);
}

TEST(KubeconfigTest, ClearErrors) {
  std::string text = kKubeconfig;
  text.replace(text.find("%CA%"), 4, "Zm9v");
  auto exec = EndpointFromKubeconfigText(text, "", "gke");
  EXPECT_EQ(exec.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(exec.status().message().find("exec"), std::string::npos);
  auto missing = EndpointFromKubeconfigText(text, "", "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("no contexts entry named 'nope'"), std::string::npos)
      << missing.status();
  EXPECT_FALSE(EndpointFromKubeconfigText("clusters: [", "").ok());
  EXPECT_FALSE(EndpointFromKubeconfigText("just a string", "").ok());
  auto no_ctx = EndpointFromKubeconfigText("apiVersion: v1\nkind: Config\n", "");
  EXPECT_NE(no_ctx.status().message().find("no current-context"), std::string::npos);
  std::string bad_b64 = kKubeconfig;
  bad_b64.replace(bad_b64.find("%CA%"), 4, "abc$def%");
  EXPECT_NE(EndpointFromKubeconfigText(bad_b64, "").status().message().find("base64"),
            std::string::npos);
  std::string bad_server = text;
  bad_server.replace(bad_server.find("https://prod.example.com:6443/"), 30, "prod.example.com");
  EXPECT_NE(EndpointFromKubeconfigText(bad_server, "").status().message().find("http(s) URL"),
            std::string::npos);
  EXPECT_EQ(EndpointFromKubeconfig("/nonexistent/kubeconfig").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(InClusterTest, FromEnvironmentAndServiceAccountDir) {
  const std::string dir = TempDir();
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(InClusterEndpoint(dir).status().code(), absl::StatusCode::kFailedPrecondition);
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  EXPECT_EQ(InClusterEndpoint(dir).status().code(), absl::StatusCode::kNotFound);  // no token
  WriteFile(dir + "/token", "sa-token");
  WriteFile(dir + "/ca.crt", "ca");
  auto ep = InClusterEndpoint(dir);
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->server, "https://10.96.0.1:443");
  EXPECT_EQ(ep->token_file, dir + "/token");
  EXPECT_EQ(ep->ca_file, dir + "/ca.crt");
  setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
  EXPECT_EQ(InClusterEndpoint(dir)->server, "https://[fd00:10:96::1]:443");
  RestClient client(*ep);
  EXPECT_EQ(client.BearerToken(), "sa-token");
  // ResolveEndpoint prefers an explicit server, then a kubeconfig, then in-cluster.
  EXPECT_EQ(ResolveEndpoint("http://127.0.0.1:8001/", "")->server, "http://127.0.0.1:8001");
  unsetenv("KUBECONFIG");
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(ResolveEndpoint("", "").status().code(), absl::StatusCode::kFailedPrecondition);
  std::filesystem::remove_all(dir);
}

TEST(RestClientTest, PutSendsTheJsonBodyAndAHandlerAnswersFromTheRequest) {
  TestApiServer api;
  const std::string path = "/api/v1/namespaces/ns/configmaps/cm";
  api.SetHandler(path, [](const testing::RecordedRequest& r) {
    return Body(200, json{{"method", r.method}, {"echo", json::parse(r.body)}}.dump());
  });
  RestClient client(PlainEndpoint(api.url()));
  auto r = client.Put(path, R"({"data":{"k":"v"}})", 5s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  auto j = json::parse(r->body);
  EXPECT_EQ(j["method"], "PUT");
  EXPECT_EQ(j["echo"]["data"]["k"], "v");
  auto reqs = api.Requests(path);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].content_type, "application/json");
  // Queued replies go before the handler.
  api.Enqueue(path, Body(409, "{}"));
  auto conflict = client.Put(path, "{}", 5s);
  ASSERT_TRUE(conflict.ok()) << conflict.status();
  EXPECT_EQ(conflict->status, 409);
}
}  // namespace
}  // namespace weft::cp::k8s

// ---- Gateway API / Weft CRDs that a cluster may not have, and route status write-back

namespace weft::cp::k8s {
namespace {

constexpr char kHttpRoutes[] = "/apis/gateway.networking.k8s.io/v1/httproutes";

TEST(WatcherTest, OptionalKindNotInstalledIsSyncedEmptyAndRecheckedQuietly) {
  TestApiServer server;
  server.Enqueue(kHttpRoutes, Body(404, Fixture("status_404_httproutes.json")));
  server.Enqueue(kHttpRoutes, Body(404, Fixture("status_404_httproutes.json")));
  server.Enqueue(kHttpRoutes, Body(200, Fixture("httproutes_list.json")));
  WatchOptions opts = PodsOnly();
  opts.resources = {{"gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", true}};
  opts.absent_recheck = 1s;
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  opts);
  watcher.Start();
  ASSERT_TRUE(rec.WaitFor(1, 5s));
  // Not installed is a complete (empty) state, not an error. (The synced event is emitted just
  // before the kind is marked synced: wait for the flag.)
  EXPECT_TRUE(weft::testing::Eventually([&] { return watcher.Synced(); }));
  // The CRDs get installed: the next recheck lists the routes and watches them.
  ASSERT_TRUE(server.WaitForRequests(kHttpRoutes, 4, 10s));
  ASSERT_TRUE(rec.WaitFor(4, 5s));
  watcher.Stop();
  EXPECT_EQ(rec.Lines(),
            (std::vector<std::string>{"synced HTTPRoute", "synced HTTPRoute",
                                      "upsert HTTPRoute prod/reviews", "synced HTTPRoute"}));
  EXPECT_EQ(rec.Events()[2].object["apiVersion"], "gateway.networking.k8s.io/v1");
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_errors_total", {{"kind", "HTTPRoute"}}), 0);
  const auto reqs = server.Requests(kHttpRoutes);
  EXPECT_GE(reqs[1].at - reqs[0].at, 900ms);  // rechecked at its own pace, not in a loop
  EXPECT_EQ(reqs[3].query.at("resourceVersion"), "5000");
}

// Istio's policies next to Weft's: their own source and metrics labels (so neither list's sync
// removes the other's objects), apiVersion filled in from the list, and Istio's CRDs absent
// (404) handled as for any optional kind: synced empty, not an error, rechecked.
TEST(WatcherTest, IstioPoliciesAreWatchedNextToWeftsUnderTheirOwnSource) {
  constexpr char kIstioAuthz[] = "/apis/security.istio.io/v1/authorizationpolicies";
  constexpr char kIstioPeer[] = "/apis/security.istio.io/v1/peerauthentications";
  constexpr char kWeftAuthz[] = "/apis/security.weft.dev/v1/authorizationpolicies";
  TestApiServer server;
  server.Enqueue(kIstioAuthz, Body(200, Fixture("istio_authorizationpolicies_list.json")));
  server.Enqueue(kIstioPeer, Body(404, Fixture("status_404_httproutes.json")));
  // The 404 makes the watcher ask which versions the group serves: v1 (and v1beta1), so the
  // kind is absent, not served under an older version.
  server.Enqueue("/apis/security.istio.io", Body(200, Fixture("apigroup_security_istio_io.json")));
  server.Enqueue(kWeftAuthz,
                 Body(200, R"({"kind":"AuthorizationPolicyList","metadata":{"resourceVersion":"9"},
                               "items":[]})"));
  WatchOptions opts = PodsOnly();
  opts.resources = {WatchedResources()[6], WatchedResources()[12], WatchedResources()[13]};
  opts.absent_recheck = 60s;
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  opts);
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kIstioAuthz, 2, 10s));  // listed, then watched
  ASSERT_TRUE(server.WaitForRequests(kWeftAuthz, 2, 10s));
  ASSERT_TRUE(rec.WaitFor(4, 5s));
  EXPECT_TRUE(weft::testing::Eventually([&] { return watcher.Synced(); }));  // (absent kind)
  watcher.Stop();
  std::multiset<std::string> seen;
  for (const auto& e : rec.Events()) {
    std::string line = e.source + " " + e.kind;
    if (e.type != ObjectEvent::Type::kSynced) {
      line += " " + e.object["metadata"]["name"].get<std::string>() + " " +
              e.object["apiVersion"].get<std::string>();
    }
    seen.insert(line);
  }
  EXPECT_EQ(seen, (std::multiset<std::string>{
                      "kubernetes AuthorizationPolicy",
                      "kubernetes/security.istio.io AuthorizationPolicy",
                      "kubernetes/security.istio.io AuthorizationPolicy allow-web "
                      "security.istio.io/v1",
                      "kubernetes/security.istio.io PeerAuthentication",
                  }));
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_synced",
                         {{"kind", "AuthorizationPolicy.security.istio.io"}}),
            1);
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_synced",
                         {{"kind", "PeerAuthentication.security.istio.io"}}),
            1);
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_errors_total", {}), 0);
  EXPECT_EQ(server.Requests(kIstioPeer).size(), 1u);  // rechecked only after absent_recheck
}

// A cluster whose Istio serves only security.istio.io/v1beta1 (releases before v1): the v1 list
// answers 404, the group's discovery document (recorded from such a cluster) lists v1beta1
// alone, and the watcher lists and watches v1beta1 instead; the objects keep their version.
TEST(WatcherTest, IstioServingOnlyV1beta1IsWatchedAtV1beta1) {
  constexpr char kV1[] = "/apis/security.istio.io/v1/authorizationpolicies";
  constexpr char kV1beta1[] = "/apis/security.istio.io/v1beta1/authorizationpolicies";
  constexpr char kGroup[] = "/apis/security.istio.io";
  TestApiServer server;
  server.Enqueue(kV1, Body(404, Fixture("status_404_httproutes.json")));
  server.Enqueue(kGroup, Body(200, Fixture("apigroup_security_istio_io_v1beta1_only.json")));
  server.Enqueue(kV1beta1, Body(200, Fixture("istio_authorizationpolicies_v1beta1_list.json")));
  WatchOptions opts = PodsOnly();
  opts.resources = {WatchedResources()[12]};
  auto registry = std::make_shared<prometheus::Registry>();
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(), registry,
                  opts);
  watcher.Start();
  ASSERT_TRUE(server.WaitForRequests(kV1beta1, 2, 10s));  // listed, then watched
  ASSERT_TRUE(rec.WaitFor(2, 5s));
  EXPECT_TRUE(watcher.Synced());
  watcher.Stop();
  const auto events = rec.Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].source, "kubernetes/security.istio.io");
  EXPECT_EQ(events[0].object["apiVersion"], "security.istio.io/v1beta1");
  EXPECT_EQ(events[0].object["metadata"]["name"], "allow-web");
  EXPECT_EQ(events[1].type, ObjectEvent::Type::kSynced);
  const auto watch = server.Requests(kV1beta1).back();
  EXPECT_EQ(watch.query.at("watch"), "1");
  EXPECT_EQ(watch.query.at("resourceVersion"), "7020");
  EXPECT_EQ(server.Requests(kV1).size(), 1u);
  EXPECT_EQ(server.Requests(kGroup).size(), 1u);
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_errors_total", {}), 0);
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_synced",
                         {{"kind", "AuthorizationPolicy.security.istio.io"}}),
            1);
}

// Neither version served, nor the group: the kind is absent as before (synced, no objects).
TEST(WatcherTest, IstioGroupNotServedIsAbsent) {
  constexpr char kV1[] = "/apis/security.istio.io/v1/peerauthentications";
  TestApiServer server;
  server.Enqueue(kV1, Body(404, Fixture("status_404_httproutes.json")));
  server.Enqueue("/apis/security.istio.io", Body(404, Fixture("status_404_httproutes.json")));
  WatchOptions opts = PodsOnly();
  opts.resources = {WatchedResources()[13]};
  opts.absent_recheck = 60s;
  Recorder rec;
  Watcher watcher(std::make_shared<RestClient>(PlainEndpoint(server.url())), rec.Sink(),
                  std::make_shared<prometheus::Registry>(), opts);
  watcher.Start();
  ASSERT_TRUE(rec.WaitFor(1, 10s));
  // (The synced event is emitted just before the kind is marked synced.)
  EXPECT_TRUE(weft::testing::Eventually([&] { return watcher.Synced(); }));
  watcher.Stop();
  EXPECT_EQ(server.Requests("/apis/security.istio.io/v1beta1/peerauthentications").size(), 0u);
}

RouteStatus ReviewsStatus(const std::string& accepted, const std::string& reason) {
  RouteStatus s;
  s.kind = "HTTPRoute";
  s.ns = "prod";
  s.name = "reviews";
  s.generation = 2;
  RouteParentStatus p;
  p.parent_ref = {{"group", ""},
                  {"kind", "Service"},
                  {"namespace", "prod"},
                  {"name", "reviews"},
                  {"port", 9080}};
  p.conditions = {{"Accepted", accepted, reason, "m"},
                  {"ResolvedRefs", "True", "ResolvedRefs", "all references are resolved"}};
  s.parents = {p};
  return s;
}

TEST(RouteStatusWriterTest, PatchesOnlyChangesAndKeepsOtherControllersEntries) {
  constexpr char kRoute[] = "/apis/gateway.networking.k8s.io/v1/namespaces/prod/httproutes/reviews";
  const std::string status_path = std::string(kRoute) + "/status";
  TestApiServer server;
  json stored = json::parse(Fixture("httproute_reviews.json"));
  std::mutex mu;
  server.SetHandler(kRoute, [&](const RecordedRequest&) {
    std::lock_guard<std::mutex> l(mu);
    return Body(200, stored.dump());
  });
  server.SetHandler(status_path, [&](const RecordedRequest& r) {
    std::lock_guard<std::mutex> l(mu);
    json patch = json::parse(r.body);
    stored["status"] = patch["status"];  // what the API server keeps
    stored["metadata"]["resourceVersion"] = "4991";
    return Body(200, stored.dump());
  });
  auto registry = std::make_shared<prometheus::Registry>();
  RouteStatusWriterOptions opts;
  auto t = std::chrono::system_clock::from_time_t(1796000000);  // 2026-11-30T...
  opts.now = [&] { return t; };
  RouteStatusWriter writer(std::make_shared<RestClient>(PlainEndpoint(server.url())), registry,
                           opts);
  writer.Start();
  auto pass = [&](std::vector<RouteStatus> s) {
    const uint64_t before = writer.passes();
    writer.Update(std::move(s));
    for (int i = 0; i < 500 && writer.passes() == before; ++i) std::this_thread::sleep_for(10ms);
    return writer.passes() > before;
  };
  ASSERT_TRUE(pass({ReviewsStatus("True", "Accepted")}));
  auto patches = server.Requests(status_path);
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0].method, "PATCH");
  EXPECT_EQ(patches[0].content_type, "application/merge-patch+json");
  json body = json::parse(patches[0].body);
  EXPECT_EQ(body["metadata"]["resourceVersion"], "4990");  // optimistic concurrency
  const json& parents = body["status"]["parents"];
  ASSERT_EQ(parents.size(), 2u);
  EXPECT_EQ(parents[0]["controllerName"], "example.com/gateway-controller");  // kept as it was
  EXPECT_EQ(parents[1]["controllerName"], "weft.dev/weftd");
  EXPECT_EQ(parents[1]["parentRef"]["kind"], "Service");
  const json& accepted = parents[1]["conditions"][0];
  EXPECT_EQ(accepted["type"], "Accepted");
  EXPECT_EQ(accepted["reason"], "Accepted");
  EXPECT_EQ(accepted["observedGeneration"], 2);
  const std::string first_time = accepted["lastTransitionTime"];
  EXPECT_EQ(first_time, "2026-11-30T00:53:20Z");

  // The same status again: nothing is read or written.
  const size_t gets = server.Requests(kRoute).size();
  ASSERT_TRUE(pass({ReviewsStatus("True", "Accepted")}));
  EXPECT_EQ(server.Requests(kRoute).size(), gets);
  EXPECT_EQ(server.Requests(status_path).size(), 1u);

  // Accepted flips: its time moves, ResolvedRefs (unchanged) keeps its own.
  t += std::chrono::hours(1);
  ASSERT_TRUE(pass({ReviewsStatus("False", "NoMatchingParent")}));
  ASSERT_EQ(server.Requests(status_path).size(), 2u);
  body = json::parse(server.Requests(status_path)[1].body);
  EXPECT_EQ(body["metadata"]["resourceVersion"], "4991");
  const json& mine = body["status"]["parents"][1]["conditions"];
  EXPECT_EQ(mine[0]["reason"], "NoMatchingParent");
  EXPECT_EQ(mine[0]["lastTransitionTime"], "2026-11-30T01:53:20Z");
  EXPECT_EQ(mine[1]["lastTransitionTime"], first_time);

  // The route loses its Service parent: weftd's entry goes, the other controller's stays.
  ASSERT_TRUE(pass({}));
  ASSERT_EQ(server.Requests(status_path).size(), 3u);
  body = json::parse(server.Requests(status_path)[2].body);
  ASSERT_EQ(body["status"]["parents"].size(), 1u);
  EXPECT_EQ(body["status"]["parents"][0]["controllerName"], "example.com/gateway-controller");
  writer.Stop();
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_route_status_writes_total", {{"result", "ok"}}), 3);
}

TEST(RouteStatusWriterTest, ConflictIsRetried) {
  constexpr char kRoute[] = "/apis/gateway.networking.k8s.io/v1/namespaces/prod/httproutes/reviews";
  const std::string status_path = std::string(kRoute) + "/status";
  TestApiServer server;
  server.SetHandler(
      kRoute, [&](const RecordedRequest&) { return Body(200, Fixture("httproute_reviews.json")); });
  server.Enqueue(status_path, Body(409, R"({"kind":"Status","code":409,"reason":"Conflict"})"));
  server.SetHandler(status_path, [&](const RecordedRequest&) { return Body(200, "{}"); });
  auto registry = std::make_shared<prometheus::Registry>();
  RouteStatusWriterOptions opts;
  opts.retry = 50ms;
  RouteStatusWriter writer(std::make_shared<RestClient>(PlainEndpoint(server.url())), registry,
                           opts);
  writer.Start();
  writer.Update({ReviewsStatus("True", "Accepted")});
  ASSERT_TRUE(server.WaitForRequests(status_path, 2, 10s));
  writer.Stop();
  EXPECT_EQ(server.Requests(kRoute).size(), 2u);  // read again after the conflict
  EXPECT_EQ(CounterValue(*registry, "weft_k8s_route_status_writes_total", {{"result", "conflict"}}),
            1);
}

}  // namespace
}  // namespace weft::cp::k8s
