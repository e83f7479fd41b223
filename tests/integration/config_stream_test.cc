// The config stream end to end: weftd's server (controlplane/xds) on 127.0.0.1 port 0 with the
// node's real clients (ztunnel/xds).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/testing/temp_dir.h"
#include "common/tls.h"
#include "config/xds/resources.h"
#include "controlplane/xds/server.h"
#include "ztunnel/xds/client.h"

namespace weft::cp {
namespace {

namespace pb = ::weft::config::v1;
namespace xds = ::weft::config::xds;
using namespace std::chrono_literals;
using ztunnel::ConfigClient;
using ztunnel::ConfigClientOptions;
using ztunnel::ConfigClientStatus;

// ---- the world the view provider serves -----------------------------------------------------

class World {
 public:
  void Set(const std::string& node, pb::ConfigSnapshot s) {
    std::lock_guard<std::mutex> l(mu_);
    views_[node] = std::move(s);
  }
  template <typename F>
  void Edit(const std::string& node, F&& f) {
    std::lock_guard<std::mutex> l(mu_);
    f(views_[node]);
  }
  pb::ConfigSnapshot Get(const std::string& node) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = views_.find(node);
    return it == views_.end() ? pb::ConfigSnapshot{} : it->second;
  }
  int calls() const { return calls_; }
  // The model's fast form: one Resource object per unchanged object, shared by every call.
  SharedViewProvider SharedProvider() {
    return [this](const std::string& node) {
      ++calls_;
      pb::ConfigSnapshot snap = Get(node);
      SharedView v;
      v.globals = snap;
      v.globals.clear_workloads();
      v.globals.clear_services();
      v.globals.clear_authorization_policies();
      v.globals.clear_peer_authentications();
      std::lock_guard<std::mutex> l(shared_mu_);
      (void)xds::ForEachResource(
          snap,
          [&](xds::Key k, pb::Resource r) {
            std::string bytes = xds::DeterministicBytes(r);
            auto& slot = shared_[k];
            if (slot.first != bytes) {
              slot = {bytes, std::make_shared<const pb::Resource>(std::move(r))};
            }
            v.resources.push_back(slot.second);
            return absl::OkStatus();
          },
          [](const absl::Status&) {});
      // Keyless objects go to the server as they are: it must drop and count them.
      for (const auto& w : snap.workloads()) {
        if (!w.uid().empty()) continue;
        auto r = std::make_shared<pb::Resource>();
        *r->mutable_workload() = w;
        v.resources.push_back(std::move(r));
      }
      return v;
    };
  }
  ViewProvider Provider() {
    return [this](const std::string& node) {
      ++calls_;
      return Get(node);
    };
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, pb::ConfigSnapshot> views_;
  std::atomic<int> calls_{0};
  std::mutex shared_mu_;
  std::map<xds::Key, std::pair<std::string, std::shared_ptr<const pb::Resource>>> shared_;
};

pb::Workload MakeWorkload(const std::string& ns, const std::string& name, const std::string& ip,
                          const std::string& node) {
  pb::Workload w;
  w.set_uid(absl::StrCat(ns, "/", name));
  w.set_name(name);
  w.set_namespace_(ns);
  w.set_service_account("default");
  w.set_node(node);
  w.add_addresses(ip);
  w.set_protocol(pb::Workload::HBONE);
  w.set_phase("Running");
  (*w.mutable_labels())["app"] = name;
  return w;
}

pb::AuthorizationPolicy MakePolicy(const std::string& ns, const std::string& name,
                                   const std::string& ip_block) {
  pb::AuthorizationPolicy p;
  p.set_name(name);
  p.set_namespace_(ns);
  p.set_action(pb::AuthorizationPolicy::ALLOW);
  auto* rule = p.add_rules();
  rule->add_from()->mutable_source()->add_ip_blocks(ip_block);
  rule->add_to()->mutable_operation()->add_ports("8080");
  return p;
}

std::string Bytes(const pb::ConfigSnapshot& s) {
  return xds::DeterministicBytes(s);
}

// What a client must hold for `view` (version aside).
std::string Expected(const pb::ConfigSnapshot& view) {
  return Bytes(xds::Canonicalize(view));
}

std::string Held(const ConfigClient& c) {
  pb::ConfigSnapshot s = c.CurrentProto();
  s.clear_version();
  return Bytes(s);
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

double Metric(prometheus::Registry& r, const std::string& name,
              const std::map<std::string, std::string>& labels = {}) {
  for (const auto& fam : r.Collect()) {
    if (fam.name != name) continue;
    for (const auto& m : fam.metric) {
      bool match = true;
      for (const auto& [k, v] : labels) {
        bool found = false;
        for (const auto& lp : m.label) found |= lp.name == k && lp.value == v;
        match &= found;
      }
      if (!match) continue;
      return fam.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return -1;
}

// ---- a weftd stand-in: ConfigDiscoveryServer on a real gRPC server --------------------------

class TestServer {
 public:
  template <typename Provider>
  TestServer(Provider views, Authenticator auth, XdsServerOptions opts, int port = 0,
             std::shared_ptr<grpc::ServerCredentials> creds = nullptr)
      : xds_(std::move(views), std::move(auth), std::move(opts)) {
    grpc::ServerBuilder b;
    b.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                       creds ? creds : grpc::InsecureServerCredentials(), &port_);
    xds_.Register(b);
    server_ = b.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    EXPECT_GT(port_, 0);
  }
  ~TestServer() { Stop(); }
  void Stop() {
    if (!server_) return;
    xds_.Shutdown();
    server_->Shutdown();
    server_.reset();
  }
  int port() const { return port_; }
  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }
  ConfigDiscoveryServer& xds() { return xds_; }
  prometheus::Registry& metrics() { return *xds_.registry(); }
  std::optional<StreamStatus> StatusOf(const std::string& node, const std::string& component) {
    for (auto& s : xds_.Status()) {
      if (s.node == node && s.component == component) return s;
    }
    return std::nullopt;
  }

 private:
  ConfigDiscoveryServer xds_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

XdsServerOptions FastOptions() {
  XdsServerOptions o;
  o.debounce = 5ms;
  o.max_delay = 50ms;
  return o;
}

ConfigClientOptions ClientFor(const TestServer& s, const std::string& node,
                              const std::string& component = "ztunnel") {
  ConfigClientOptions o;
  o.target = s.target();
  o.node = node;
  o.component = component;
  o.initial_backoff = 20ms;
  o.max_backoff = 200ms;
  return o;
}

pb::ConfigSnapshot BaseView(const std::string& node) {
  pb::ConfigSnapshot s;
  s.set_trust_domain("cluster.local");
  s.set_root_namespace("weft-system");
  *s.add_workloads() = MakeWorkload("default", "a-" + node, "10.1.0.1", node);
  return s;
}

// ---- tests ---------------------------------------------------------------------------------

TEST(XdsStream, FullSnapshotThenDeltas) {
  World world;
  world.Set("n1", BaseView("n1"));
  TestServer server(world.Provider(), nullptr, FastOptions());
  std::vector<std::string> seen;
  std::mutex seen_mu;
  ConfigClient client(ClientFor(server, "n1"), [&](const ztunnel::SnapshotPtr& s) {
    std::lock_guard<std::mutex> l(seen_mu);
    seen.push_back(s->version());
  });
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }));
  EXPECT_EQ(Held(client), Expected(world.Get("n1")));
  EXPECT_NE(client.Current()->FindWorkloadByUid("default/a-n1"), nullptr);

  // Add, modify, remove: each arrives as a delta.
  world.Edit("n1", [](pb::ConfigSnapshot& s) {
    *s.add_workloads() = MakeWorkload("default", "b", "10.1.0.2", "n1");
    *s.add_authorization_policies() = MakePolicy("default", "allow", "10.0.0.0/8");
  });
  server.xds().Notify({"n1"});
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n1")); }));
  world.Edit("n1", [](pb::ConfigSnapshot& s) {
    s.mutable_workloads(0)->add_addresses("10.1.0.100");
    s.mutable_workloads()->DeleteSubrange(1, 1);
  });
  server.xds().Notify({"n1"});
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n1")); }));

  ConfigClientStatus cs = client.Status();
  EXPECT_TRUE(cs.connected);
  EXPECT_EQ(cs.full_snapshots, 1u);
  EXPECT_EQ(cs.acks, 3u);
  EXPECT_EQ(cs.nacks, 0u);
  EXPECT_EQ(client.Current()->version(), cs.version);
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "full"}}), 1);
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}}), 2);
  ASSERT_TRUE(WaitFor([&] { return Metric(server.metrics(), "weft_xds_acks_total") == 3; }));
  EXPECT_GT(Metric(server.metrics(), "weft_xds_push_bytes_total"), 0);
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_connected_nodes"), 1);
  {
    std::lock_guard<std::mutex> l(seen_mu);
    EXPECT_EQ(seen.size(), 3u);
  }
  auto st = server.StatusOf("n1", "ztunnel");
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->connected);
  EXPECT_EQ(st->version_sent, cs.version);
  EXPECT_EQ(st->version_acked, cs.version);
  EXPECT_EQ(st->acks, 3u);

  // A Notify that changes nothing for the node sends nothing. Once its round has rebuilt the
  // view, a real change (the marker) follows in a round of its own: when the marker has
  // arrived, the no-op round is over, and only the marker was pushed.
  const int calls_before = world.calls();
  server.xds().Notify({"n1"});
  ASSERT_TRUE(WaitFor([&] { return world.calls() > calls_before; }, 30s));
  world.Edit("n1", [](pb::ConfigSnapshot& s) {
    *s.add_workloads() = MakeWorkload("default", "marker", "10.1.0.60", "n1");
  });
  server.xds().Notify({"n1"});
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n1")); }, 30s));
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}}), 3);

  client.Stop();
  ASSERT_TRUE(WaitFor([&] { return !server.StatusOf("n1", "ztunnel")->connected; }));
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_connected_nodes"), 0);
  EXPECT_NE(client.Current(), nullptr);  // the last good config stays after Stop
}

// Issue 15's kinds ride the same stream: one HttpRoute per (route, parent Service, port), and
// TrafficPolicies; a canary shift is a one-resource delta.
TEST(XdsStream, RoutesAndTrafficPoliciesArriveAsDeltas) {
  World world;
  pb::ConfigSnapshot view = BaseView("n1");
  for (const char* name : {"reviews", "reviews-v1", "reviews-v2"}) {
    pb::Service* svc = view.add_services();
    svc->set_namespace_("default");
    svc->set_name(name);
    svc->set_hostname(absl::StrCat(name, ".default.svc.cluster.local"));
    svc->add_ports()->set_port(9080);
  }
  auto route = [](uint32_t port, uint32_t v2_weight) {
    pb::HttpRoute r;
    r.set_namespace_("default");
    r.set_name("canary");
    r.set_parent_service("default/reviews");
    r.set_parent_port(port);
    pb::HttpRouteRule* rule = r.add_rules();
    for (auto [name, weight] : {std::pair{"default/reviews-v1", 100 - v2_weight},
                                std::pair{"default/reviews-v2", v2_weight}}) {
      pb::HttpBackendRef* b = rule->add_backends();
      b->set_service(name);
      b->set_weight(weight);
    }
    return r;
  };
  *view.add_http_routes() = route(0, 10);
  *view.add_http_routes() = route(9080, 10);
  pb::TrafficPolicy* tp = view.add_traffic_policies();
  tp->set_namespace_("default");
  tp->set_name("reviews");
  tp->set_target_service("default/reviews");
  tp->mutable_retries()->set_attempts(2);
  world.Set("n1", view);
  TestServer server(world.SharedProvider(), nullptr, FastOptions());
  ConfigClient client(ClientFor(server, "n1"), [](const ztunnel::SnapshotPtr&) {});
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n1")); }));
  EXPECT_EQ(client.CurrentProto().http_routes_size(), 2);

  world.Edit("n1", [&](pb::ConfigSnapshot& s) {
    *s.mutable_http_routes(0) = route(0, 50);
    s.mutable_http_routes()->DeleteSubrange(1, 1);
    s.mutable_traffic_policies(0)->mutable_retries()->set_attempts(3);
  });
  server.xds().Notify({"n1"});
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n1")); }));
  EXPECT_EQ(client.CurrentProto().http_routes(0).rules(0).backends(1).weight(), 50u);
  EXPECT_EQ(client.Status().nacks, 0u);
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}}), 1);
  client.Stop();
}

// More nodes subscribe at once than the server writes full snapshots concurrently (it queues
// the rest): every node still gets its own complete view, then its deltas.
TEST(XdsStream, ManySimultaneousFullSnapshotsAllArrive) {
  World world;
  constexpr int kNodes = 24;
  auto big = [](const std::string& node, int extra) {
    pb::ConfigSnapshot s = BaseView(node);
    for (int i = 0; i < 300 + extra; ++i) {
      *s.add_workloads() = MakeWorkload("bulk", absl::StrCat("w", i),
                                        absl::StrCat("10.9.", i / 200, ".", i % 200), node);
    }
    return s;
  };
  for (int n = 0; n < kNodes; ++n) world.Set(absl::StrCat("n", n), big(absl::StrCat("n", n), n));
  TestServer server(world.SharedProvider(), nullptr, FastOptions());
  std::vector<std::unique_ptr<ConfigClient>> clients;
  for (int n = 0; n < kNodes; ++n) {
    clients.push_back(
        std::make_unique<ConfigClient>(ClientFor(server, absl::StrCat("n", n)), nullptr));
  }
  for (auto& c : clients) ASSERT_TRUE(c->Start().ok());
  for (int n = 0; n < kNodes; ++n) {
    const std::string node = absl::StrCat("n", n);
    ASSERT_TRUE(WaitFor([&] { return Held(*clients[n]) == Expected(world.Get(node)); }, 30s))
        << node;
  }
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "full"}}), kNodes);
  for (int n = 0; n < kNodes; ++n) {
    world.Edit(absl::StrCat("n", n), [](pb::ConfigSnapshot& s) {
      s.mutable_workloads(1)->mutable_labels()->insert({"rev", "2"});
    });
  }
  server.xds().NotifyAll();
  for (int n = 0; n < kNodes; ++n) {
    const std::string node = absl::StrCat("n", n);
    ASSERT_TRUE(WaitFor([&] { return Held(*clients[n]) == Expected(world.Get(node)); }, 30s))
        << node;
  }
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "full"}}), kNodes);
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}}), kNodes);
}

class XdsViews : public ::testing::TestWithParam<bool> {};  // true: SharedViewProvider

TEST_P(XdsViews, EachNodeGetsOnlyItsView) {
  World world;
  pb::ConfigSnapshot a = BaseView("na"), b = BaseView("nb");
  b.mutable_workloads(0)->set_uid("default/only-b");
  *b.add_authorization_policies() = MakePolicy("default", "b-only", "10.2.0.0/16");
  world.Set("na", a);
  world.Set("nb", b);
  std::unique_ptr<TestServer> server_ptr =
      GetParam() ? std::make_unique<TestServer>(world.SharedProvider(), nullptr, FastOptions())
                 : std::make_unique<TestServer>(world.Provider(), nullptr, FastOptions());
  TestServer& server = *server_ptr;
  ConfigClient ca(ClientFor(server, "na"), nullptr), cb(ClientFor(server, "nb"), nullptr);
  ASSERT_TRUE(ca.Start().ok());
  ASSERT_TRUE(cb.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return ca.Current() && cb.Current(); }));
  EXPECT_EQ(Held(ca), Expected(a));
  EXPECT_EQ(Held(cb), Expected(b));
  EXPECT_EQ(ca.Current()->FindWorkloadByUid("default/only-b"), nullptr);
  EXPECT_TRUE(ca.Current()->authorization_policies().empty());
  EXPECT_EQ(cb.Current()->authorization_policies().size(), 1u);

  // A change for nb only: na gets nothing new.
  std::string va = ca.Status().version;
  world.Edit("nb", [](pb::ConfigSnapshot& s) {
    *s.add_workloads() = MakeWorkload("default", "b2", "10.1.0.9", "nb");
  });
  server.xds().Notify({"nb"});
  ASSERT_TRUE(WaitFor([&] { return Held(cb) == Expected(world.Get("nb")); }));
  // NotifyAll rebuilds both views; once that round is over (a change for na, the marker, comes
  // in a round of its own), na has received the marker and nothing before it.
  const uint64_t acks_a = ca.Status().acks;
  const int calls_before = world.calls();
  server.xds().NotifyAll();
  ASSERT_TRUE(WaitFor([&] { return world.calls() >= calls_before + 2; }, 30s));
  EXPECT_EQ(ca.Status().version, va);
  world.Edit("na", [](pb::ConfigSnapshot& s) {
    *s.add_workloads() = MakeWorkload("default", "a-marker", "10.1.0.61", "na");
  });
  server.xds().Notify({"na"});
  ASSERT_TRUE(WaitFor([&] { return Held(ca) == Expected(world.Get("na")); }, 30s));
  EXPECT_EQ(ca.Status().acks, acks_a + 1) << "na got a version from NotifyAll";
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_connected_nodes"), 2);
}

TEST_P(XdsViews, KeylessAndDuplicateResourcesAreDroppedAndCounted) {
  World world;
  pb::ConfigSnapshot v = BaseView("n");
  pb::Workload dup = v.workloads(0);
  dup.set_name("second-copy");
  *v.add_workloads() = dup;               // same uid: the first one wins
  v.add_workloads()->set_name("no-uid");  // no key: dropped
  world.Set("n", v);
  std::unique_ptr<TestServer> server_ptr =
      GetParam() ? std::make_unique<TestServer>(world.SharedProvider(), nullptr, FastOptions())
                 : std::make_unique<TestServer>(world.Provider(), nullptr, FastOptions());
  TestServer& server = *server_ptr;
  ConfigClient client(ClientFor(server, "n"), nullptr);
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }));
  EXPECT_EQ(Held(client), Expected(v));
  ASSERT_EQ(client.Current()->workloads().size(), 1u);
  EXPECT_EQ(client.Current()->workloads()[0].name, "a-n");
  EXPECT_GE(Metric(server.metrics(), "weft_xds_view_errors_total"), 2);
}

TEST(XdsStream, ComponentStreamsOfOneNodeAreIndependent) {
  World world;
  world.Set("n", BaseView("n"));
  TestServer server(world.Provider(), nullptr, FastOptions());
  ConfigClient zt(ClientFor(server, "n", "ztunnel"), nullptr);
  ConfigClient agent(ClientFor(server, "n", "agent"), nullptr);
  ASSERT_TRUE(zt.Start().ok());
  ASSERT_TRUE(agent.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return zt.Current() && agent.Current(); }));
  agent.Stop();  // one component goes away; the other keeps streaming
  world.Edit("n", [](pb::ConfigSnapshot& s) {
    *s.add_workloads() = MakeWorkload("default", "x", "10.1.0.5", "n");
  });
  server.xds().Notify({"n"});
  ASSERT_TRUE(WaitFor([&] { return Held(zt) == Expected(world.Get("n")); }));
  EXPECT_NE(Held(agent), Expected(world.Get("n")));
  ASSERT_TRUE(WaitFor([&] { return !server.StatusOf("n", "agent")->connected; }));
  EXPECT_TRUE(server.StatusOf("n", "ztunnel")->connected);
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_connected_nodes"), 1);
  // The agent comes back and gets a full snapshot of the current view.
  ASSERT_TRUE(agent.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Held(agent) == Expected(world.Get("n")); }));
  EXPECT_EQ(agent.Status().full_snapshots, 2u);
}

TEST(XdsStream, NackKeepsLastGoodAndTheNextGoodChangeArrives) {
  World world;
  world.Set("n", BaseView("n"));
  TestServer server(world.Provider(), nullptr, FastOptions());
  auto client_metrics = std::make_shared<prometheus::Registry>();
  ConfigClientOptions co = ClientFor(server, "n");
  co.registry = client_metrics;
  std::atomic<int> callbacks{0};
  ConfigClient client(co, [&](const ztunnel::SnapshotPtr&) { ++callbacks; });
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }));
  const std::string good_version = client.Status().version;
  const std::string good = Held(client);

  // A policy with a malformed CIDR: ztunnel's validation rejects the version.
  world.Edit("n", [](pb::ConfigSnapshot& s) {
    *s.add_authorization_policies() = MakePolicy("default", "broken", "10.0.0.0/33");
    *s.add_workloads() = MakeWorkload("default", "new", "10.1.0.7", "n");
  });
  server.xds().Notify({"n"});
  ASSERT_TRUE(WaitFor([&] { return client.Status().nacks == 1; }));
  ConfigClientStatus cs = client.Status();
  EXPECT_EQ(cs.version, good_version);
  EXPECT_NE(cs.last_nack_error.find("bad CIDR"), std::string::npos) << cs.last_nack_error;
  EXPECT_EQ(Held(client), good);
  EXPECT_EQ(client.Current()->FindWorkloadByUid("default/new"), nullptr);
  EXPECT_EQ(callbacks.load(), 1);
  EXPECT_EQ(Metric(*client_metrics, "weft_xds_client_nacks_total"), 1);
  EXPECT_EQ(Metric(*client_metrics, "weft_xds_client_acks_total"), 1);
  // Istio's ztunnel names for the same stream: both responses (the good and the NACKed one)
  // received and sized, no stream ended yet.
  const std::map<std::string, std::string> url = {
      {"url", "type.googleapis.com/weft.config.v1.ConfigResponse"}};
  EXPECT_EQ(Metric(*client_metrics, "istio_xds_message_total", url), 2);
  EXPECT_GT(Metric(*client_metrics, "istio_xds_message_bytes_total", url), 0);
  for (const char* reason : {"ConnectionError", "Error", "Complete"}) {
    EXPECT_EQ(
        Metric(*client_metrics, "istio_xds_connection_terminations_total", {{"reason", reason}}), 0)
        << reason;
  }

  ASSERT_TRUE(WaitFor([&] { return Metric(server.metrics(), "weft_xds_nacks_total") == 1; }));
  // Push-to-answer latency, by answer: the good version's ACK and the bad one's NACK.
  auto answered = [&](const std::string& result) -> double {
    for (const auto& fam : server.metrics().Collect()) {
      if (fam.name != "weft_xds_push_ack_seconds") continue;
      for (const auto& m : fam.metric) {
        if (!m.label.empty() && m.label[0].value == result) {
          return static_cast<double>(m.histogram.sample_count);
        }
      }
    }
    return 0;
  };
  EXPECT_EQ(answered("ack"), 1);
  EXPECT_EQ(answered("nack"), 1);
  auto st = server.StatusOf("n", "ztunnel");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->version_acked, good_version);
  EXPECT_NE(st->version_sent, good_version);
  EXPECT_EQ(st->last_nack_version, st->version_sent);
  EXPECT_NE(st->last_nack_error.find("bad CIDR"), std::string::npos);

  // The NACKed version is not resent, even on a Notify that changes nothing: after that round
  // has rebuilt the view, the fix below (a round of its own) is the only further delta.
  const int calls_before = world.calls();
  server.xds().Notify({"n"});
  ASSERT_TRUE(WaitFor([&] { return world.calls() > calls_before; }, 30s));
  EXPECT_EQ(server.StatusOf("n", "ztunnel")->pushes, 2u);
  EXPECT_EQ(client.Status().nacks, 1u);

  // The fix arrives as a delta against the last good (ACKed) version.
  world.Edit("n", [](pb::ConfigSnapshot& s) {
    s.mutable_authorization_policies(0)
        ->mutable_rules(0)
        ->mutable_from(0)
        ->mutable_source()
        ->set_ip_blocks(0, "10.0.0.0/16");
  });
  server.xds().Notify({"n"});
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }));
  cs = client.Status();
  EXPECT_EQ(cs.full_snapshots, 1u);
  EXPECT_EQ(cs.acks, 2u);
  EXPECT_NE(client.Current()->FindWorkloadByUid("default/new"), nullptr);
  EXPECT_EQ(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}}), 2);
}

// The client applies deltas in place: a NACKed delta that replaced, inserted and removed
// resources must leave exactly the previous version (proto bytes, version, the very same
// ConfigSnapshot object), and later deltas build on that.
TEST(XdsStream, NackedInPlaceDeltaLeavesThePreviousVersionExactly) {
  World world;
  world.Set("n", BaseView("n"));
  world.Edit("n", [](pb::ConfigSnapshot& s) {
    for (int i = 0; i < 20; ++i) {
      *s.add_workloads() =
          MakeWorkload("default", absl::StrCat("w", i), absl::StrCat("10.2.0.", i + 1), "n");
    }
    *s.add_authorization_policies() = MakePolicy("default", "p", "10.0.0.0/8");
  });
  TestServer server(world.Provider(), nullptr, FastOptions());
  std::atomic<int> callbacks{0};
  ConfigClient client(ClientFor(server, "n"), [&](const ztunnel::SnapshotPtr&) { ++callbacks; });
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }));
  const pb::ConfigSnapshot good = client.CurrentProto();
  const ztunnel::SnapshotPtr good_snapshot = client.Current();

  world.Edit("n", [](pb::ConfigSnapshot& s) {
    s.mutable_workloads(3)->set_phase("Pending");                          // replaced
    s.mutable_workloads()->DeleteSubrange(11, 1);                          // removed: w10
    s.mutable_authorization_policies()->Clear();                           // removed
    *s.add_workloads() = MakeWorkload("default", "dup", "10.2.0.5", "n");  // inserted: w4's IP
  });
  server.xds().Notify({"n"});
  ASSERT_TRUE(WaitFor([&] { return client.Status().nacks == 1; }));
  EXPECT_NE(client.Status().last_nack_error.find("already claimed"), std::string::npos)
      << client.Status().last_nack_error;
  EXPECT_EQ(Bytes(client.CurrentProto()), Bytes(good));
  EXPECT_EQ(client.Current(), good_snapshot);
  EXPECT_EQ(callbacks.load(), 1);

  // Fixing the address is sent as a delta against the kept version and lands exactly.
  world.Edit("n", [](pb::ConfigSnapshot& s) {
    s.mutable_workloads(s.workloads_size() - 1)->set_addresses(0, "10.2.1.1");
  });
  server.xds().Notify({"n"});
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }));
  EXPECT_EQ(client.Status().full_snapshots, 1u);
  EXPECT_EQ(callbacks.load(), 2);
  EXPECT_EQ(client.Current()->FindWorkloadByUid("default/w10"), nullptr);
  EXPECT_NE(client.Current()->FindWorkloadByUid("default/dup"), nullptr);
}

TEST(XdsStream, NackedFirstSnapshotIsFollowedByAFullSnapshot) {
  World world;
  pb::ConfigSnapshot bad = BaseView("n");
  *bad.add_authorization_policies() = MakePolicy("default", "broken", "not-a-cidr");
  world.Set("n", bad);
  TestServer server(world.Provider(), nullptr, FastOptions());
  ConfigClient client(ClientFor(server, "n"), nullptr);
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Status().nacks == 1; }));
  EXPECT_EQ(client.Current(), nullptr);  // nothing good yet
  world.Set("n", BaseView("n"));
  server.xds().Notify({"n"});
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }));
  EXPECT_EQ(Held(client), Expected(world.Get("n")));
  // The server never learnt what the client holds, so the repair is a full snapshot.
  EXPECT_EQ(client.Status().full_snapshots, 2u);
}

TEST(XdsStream, NotifyStormsAreDebounced) {
  World world;
  world.Set("n", BaseView("n"));
  XdsServerOptions opts;
  opts.debounce = 200ms;
  opts.max_delay = 10min;  // only the quiet period ends a round here
  TestServer server(world.Provider(), nullptr, opts);
  ConfigClient client(ClientFor(server, "n"), nullptr);
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }, 30s));
  int calls_before = world.calls();
  // The longest time between two Notify calls (from before one to after the next) bounds every
  // gap the server saw. Below the debounce, no round can have ended during the storm.
  std::chrono::steady_clock::duration max_gap{};
  auto prev_start = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) {
    const auto start = std::chrono::steady_clock::now();
    world.Edit("n", [i](pb::ConfigSnapshot& s) {
      *s.add_workloads() =
          MakeWorkload("storm", absl::StrCat("w", i), absl::StrCat("10.9.0.", i + 1), "n");
    });
    server.xds().Notify({"n"});
    if (i > 0) max_gap = std::max(max_gap, std::chrono::steady_clock::now() - prev_start);
    prev_start = start;
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }, 30s));
  double deltas = Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}});
  EXPECT_GE(deltas, 1);
  EXPECT_LE(deltas, 50);  // never more rounds than notifies
  if (max_gap < opts.debounce) {
    EXPECT_EQ(deltas, 1) << "50 notifies closer than the debounce made more than one round";
    EXPECT_EQ(world.calls() - calls_before, 1);
  } else {
    std::printf("storm gaps reached the debounce (machine stalled): only the bounds checked\n");
  }
}

TEST(XdsStream, MaxDelayBoundsTheDebounceUnderSteadyChange) {
  World world;
  world.Set("n", BaseView("n"));
  XdsServerOptions opts;
  opts.debounce = 10min;  // a quiet period never ends a round here: only max_delay pushes
  opts.max_delay = 150ms;
  TestServer server(world.Provider(), nullptr, opts);
  ConfigClient client(ClientFor(server, "n"), nullptr);
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }, 30s));
  // A change every 20 ms until max_delay has ended three rounds (or a generous deadline).
  auto deltas = [&] {
    return Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}});
  };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (int i = 0; deltas() < 3 && std::chrono::steady_clock::now() < deadline; ++i) {
    world.Edit("n", [i](pb::ConfigSnapshot& s) {
      *s.add_workloads() = MakeWorkload("steady", absl::StrCat("w", i),
                                        absl::StrCat("10.8.", i / 250, ".", i % 250 + 1), "n");
    });
    server.xds().Notify({"n"});
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(deltas(), 3);
  // The last changes arrive too: max_delay after the round's first Notify.
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }, 30s));
}

TEST(XdsStream, ServerRestartClientReconnectsAndGetsAFullSnapshot) {
  World world;
  world.Set("n", BaseView("n"));
  auto server = std::make_unique<TestServer>(world.Provider(), nullptr, FastOptions());
  const int port = server->port();
  auto client_metrics = std::make_shared<prometheus::Registry>();
  ConfigClientOptions co = ClientFor(*server, "n");
  co.registry = client_metrics;
  ConfigClient client(co, nullptr);
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }));
  const std::string before = Held(client);

  const auto stopped = std::chrono::steady_clock::now();
  server->Stop();
  ASSERT_TRUE(WaitFor([&] { return !client.Status().connected; }, 30s));
  // weftd is away: the client keeps serving its last good config and retries with backoff.
  ASSERT_TRUE(WaitFor([&] { return client.Status().streams >= 3; }, 30s));  // retried
  ConfigClientStatus away = client.Status();
  const auto away_for = std::chrono::steady_clock::now() - stopped;
  EXPECT_EQ(Held(client), before);
  EXPECT_FALSE(away.last_stream_error.empty());
  // But backed off: retry n waits at least half of min(200 ms, 20 ms * 2^n), so in `away_for`
  // at most this many retries fit (a slow machine only makes fewer).
  uint64_t retries = 0;
  std::chrono::milliseconds waited{0};
  while (true) {
    const std::chrono::milliseconds next =
        std::min(200ms, 20ms * (1 << std::min<uint64_t>(retries, 8))) / 2;
    if (waited + next > away_for) break;
    waited += next;
    ++retries;
  }
  EXPECT_LE(away.streams, 1 + 1 + retries) << "retries without backoff";
  // istio_xds_connection_terminations_total: the stream that delivered ended once (Error, or
  // Complete if the server said OK), every retry since failed before delivering.
  auto terminations = [&](const char* reason) {
    return Metric(*client_metrics, "istio_xds_connection_terminations_total", {{"reason", reason}});
  };
  EXPECT_EQ(terminations("Error") + terminations("Complete"), 1);
  EXPECT_GE(terminations("ConnectionError"), 1);  // the third stream may still be trying

  world.Edit("n", [](pb::ConfigSnapshot& s) {
    *s.add_workloads() = MakeWorkload("default", "after-restart", "10.1.0.50", "n");
  });
  server.reset();
  server = std::make_unique<TestServer>(world.Provider(), nullptr, FastOptions(), port);
  ASSERT_EQ(server->port(), port);
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }));
  ConfigClientStatus cs = client.Status();
  EXPECT_TRUE(cs.connected);
  EXPECT_EQ(cs.full_snapshots, 2u);
  EXPECT_EQ(Metric(server->metrics(), "weft_xds_pushes_total", {{"type", "full"}}), 1);
}

TEST(XdsStream, AuthenticatorRefusesUnknownCredentialsAndForeignNodes) {
  World world;
  world.Set("n1", BaseView("n1"));
  world.Set("n2", BaseView("n2"));
  Authenticator auth = [](const Metadata& md) -> absl::StatusOr<std::string> {
    auto it = md.find("authorization");
    if (it == md.end()) return absl::UnauthenticatedError("no bearer token");
    if (it->second == "Bearer token-n1") return std::string("n1");
    return absl::UnauthenticatedError("unknown bootstrap token");
  };
  TestServer server(world.Provider(), auth, FastOptions());

  ConfigClientOptions good = ClientFor(server, "n1");
  testing::TempDir dir;
  good.bearer_token_file = dir.Write("token", "token-n1\n");
  ConfigClient ok_client(good, nullptr);
  ASSERT_TRUE(ok_client.Start().ok());

  ConfigClientOptions foreign = ClientFor(server, "n2");
  foreign.bearer_token = "token-n1";  // n1's credential claiming n2
  ConfigClient foreign_client(foreign, nullptr);
  ASSERT_TRUE(foreign_client.Start().ok());

  ConfigClientOptions wrong = ClientFor(server, "n1");
  wrong.bearer_token = "guess";
  ConfigClient wrong_client(wrong, nullptr);
  ASSERT_TRUE(wrong_client.Start().ok());

  ConfigClient anonymous(ClientFor(server, "n1"), nullptr);
  ASSERT_TRUE(anonymous.Start().ok());

  ASSERT_TRUE(WaitFor([&] { return ok_client.Current() != nullptr; }));
  EXPECT_EQ(Held(ok_client), Expected(world.Get("n1")));
  ASSERT_TRUE(WaitFor([&] {
    return foreign_client.Status().streams >= 2 && wrong_client.Status().streams >= 2 &&
           anonymous.Status().streams >= 2;
  }));
  EXPECT_EQ(foreign_client.Current(), nullptr);
  EXPECT_EQ(wrong_client.Current(), nullptr);
  EXPECT_EQ(anonymous.Current(), nullptr);
  EXPECT_NE(foreign_client.Status().last_stream_error.find("not to the requested node"),
            std::string::npos)
      << foreign_client.Status().last_stream_error;
  EXPECT_NE(wrong_client.Status().last_stream_error.find("unknown bootstrap token"),
            std::string::npos)
      << wrong_client.Status().last_stream_error;
  EXPECT_GE(Metric(server.metrics(), "weft_xds_auth_failures_total", {{"reason", "node_mismatch"}}),
            1);
  EXPECT_GE(
      Metric(server.metrics(), "weft_xds_auth_failures_total", {{"reason", "unauthenticated"}}), 2);
  EXPECT_FALSE(server.StatusOf("n2", "ztunnel").has_value());
}

TEST(XdsClient, StartRejectsBadOptions) {
  ConfigClientOptions o;
  o.node = "n";
  EXPECT_FALSE(ConfigClient(o, nullptr).Start().ok());  // no target
  o.target = "127.0.0.1:1";
  o.root_ca_file = "/nonexistent/ca.pem";
  auto st = ConfigClient(o, nullptr).Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent/ca.pem"), std::string::npos) << st;
  testing::TempDir dir;
  o.root_ca_file = dir.Write("ca.pem", "not a certificate");
  EXPECT_FALSE(ConfigClient(o, nullptr).Start().ok());
  o.root_ca_file.clear();
  o.node.clear();
  EXPECT_FALSE(ConfigClient(o, nullptr).Start().ok());
}

TEST(XdsClient, StartStopFromManyThreads) {
  World world;
  world.Set("n", BaseView("n"));
  TestServer server(world.Provider(), nullptr, FastOptions());
  ConfigClient client(ClientFor(server, "n"), nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        EXPECT_TRUE(client.Start().ok());
        if (i % 3 == 0) client.Stop();
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }));
  client.Stop();
  client.Stop();
}

// Self-signed serving certificate for 127.0.0.1 (SAN IP and DNS "weftd.test").
struct ServingCert {
  std::string key_pem, cert_pem;
};

ServingCert MakeServingCert() {
  auto key = tls::GenerateKey();
  EXPECT_TRUE(key.ok());
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key->get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("weftd.test"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  for (auto [nid, val] : {std::pair{NID_subject_alt_name, "DNS:weftd.test,IP:127.0.0.1"},
                          std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, val);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  EXPECT_GT(X509_sign(x, key->get(), EVP_sha256()), 0);
  ServingCert out;
  out.key_pem = *tls::KeyToPem(key->get());
  out.cert_pem = *tls::CertToPem(x);
  X509_free(x);
  return out;
}

TEST(XdsClient, TlsWithARootCaFile) {
  ServingCert cert = MakeServingCert();
  grpc::SslServerCredentialsOptions so;
  so.pem_key_cert_pairs.push_back({cert.key_pem, cert.cert_pem});
  World world;
  world.Set("n", BaseView("n"));
  TestServer server(world.Provider(), nullptr, FastOptions(), 0, grpc::SslServerCredentials(so));
  testing::TempDir dir;
  ConfigClientOptions o = ClientFor(server, "n");
  o.root_ca_file = dir.Write("ca.pem", cert.cert_pem);
  o.tls_server_name = "weftd.test";
  ConfigClient client(o, nullptr);
  ASSERT_TRUE(client.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }));
  EXPECT_EQ(Held(client), Expected(world.Get("n")));

  // A client that does not trust weftd's CA never gets config.
  ServingCert other = MakeServingCert();
  ConfigClientOptions untrusting = o;
  untrusting.root_ca_file = dir.Write("other.pem", other.cert_pem);
  ConfigClient refused(untrusting, nullptr);
  ASSERT_TRUE(refused.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return refused.Status().streams >= 2; }));
  EXPECT_EQ(refused.Current(), nullptr);
}

// ---- property: deltas under random change sequences end equal to a fresh snapshot -----------

class RandomMesh {
 public:
  explicit RandomMesh(uint64_t seed) : rng_(seed) {}

  // One random add/modify/remove of a workload, service or policy. Keeps the view valid
  // (unique addresses, endpoints naming existing workloads), as weftd's model does.
  void Step(pb::ConfigSnapshot& s) {
    switch (Pick(9)) {
      case 0:
      case 1: {  // add workload
        int id = next_id_++;
        *s.add_workloads() =
            MakeWorkload(Ns(), absl::StrCat("w", id),
                         absl::StrCat("10.", 20 + id / 250, ".", id % 250, ".1"), "n");
        break;
      }
      case 2:  // modify workload
        if (s.workloads_size() > 0) {
          auto* w = s.mutable_workloads(Pick(s.workloads_size()));
          (*w->mutable_labels())["v"] = absl::StrCat(Pick(5));
          w->set_phase(Pick(4) == 0 ? "Pending" : "Running");
        }
        break;
      case 3:  // remove workload (and its endpoints)
        if (s.workloads_size() > 0) {
          int i = Pick(s.workloads_size());
          std::string uid = s.workloads(i).uid();
          s.mutable_workloads()->DeleteSubrange(i, 1);
          for (auto& svc : *s.mutable_services()) {
            auto* eps = svc.mutable_endpoints();
            for (int e = eps->size() - 1; e >= 0; --e) {
              if (eps->Get(e).workload_uid() == uid) eps->DeleteSubrange(e, 1);
            }
          }
        }
        break;
      case 4: {  // add service
        int id = next_id_++;
        pb::Service* svc = s.add_services();
        svc->set_namespace_(Ns());
        svc->set_name(absl::StrCat("s", id));
        svc->set_hostname(absl::StrCat("s", id, ".", svc->namespace_(), ".svc.cluster.local"));
        svc->add_addresses(absl::StrCat("10.96.", id / 250, ".", id % 250));
        auto* port = svc->add_ports();
        port->set_port(80);
        port->set_target_port(8080);
        break;
      }
      case 5:  // modify service: endpoints follow workloads
        if (s.services_size() > 0 && s.workloads_size() > 0) {
          auto* svc = s.mutable_services(Pick(s.services_size()));
          svc->clear_endpoints();
          for (const auto& w : s.workloads()) {
            if (Pick(3) == 0) {
              auto* ep = svc->add_endpoints();
              ep->set_workload_uid(w.uid());
              ep->set_ready(Pick(2) == 0);
            }
          }
        }
        break;
      case 6:  // remove service
        if (s.services_size() > 0) s.mutable_services()->DeleteSubrange(Pick(s.services_size()), 1);
        break;
      case 7:  // add or modify policy
        if (s.authorization_policies_size() > 0 && Pick(2) == 0) {
          auto* p = s.mutable_authorization_policies(Pick(s.authorization_policies_size()));
          p->set_action(Pick(2) == 0 ? pb::AuthorizationPolicy::ALLOW
                                     : pb::AuthorizationPolicy::DENY);
        } else {
          *s.add_authorization_policies() = MakePolicy(Ns(), absl::StrCat("p", next_id_++),
                                                       absl::StrCat("10.", Pick(200), ".0.0/16"));
        }
        break;
      case 8:  // remove policy
        if (s.authorization_policies_size() > 0) {
          s.mutable_authorization_policies()->DeleteSubrange(Pick(s.authorization_policies_size()),
                                                             1);
        }
        break;
    }
  }

 private:
  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  std::string Ns() { return Pick(2) == 0 ? "default" : "prod"; }
  std::mt19937_64 rng_;
  int next_id_ = 0;
};

TEST_P(XdsViews, PropertyDeltasUnderRandomChangesEqualAFreshSnapshot) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    World world;
    world.Set("n", BaseView("n"));
    XdsServerOptions opts;
    opts.debounce = 1ms;
    opts.max_delay = 5ms;
    std::unique_ptr<TestServer> server_ptr =
        GetParam() ? std::make_unique<TestServer>(world.SharedProvider(), nullptr, opts)
                   : std::make_unique<TestServer>(world.Provider(), nullptr, opts);
    TestServer& server = *server_ptr;
    ConfigClient client(ClientFor(server, "n"), nullptr);
    ASSERT_TRUE(client.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return client.Current() != nullptr; }));
    RandomMesh mesh(seed);
    std::mt19937_64 rng(seed * 7919);
    for (int step = 0; step < 150; ++step) {
      // Bursts of 1-5 changes, sometimes waiting for the client, sometimes racing it.
      int burst = 1 + static_cast<int>(rng() % 5);
      for (int i = 0; i < burst; ++i) world.Edit("n", [&](pb::ConfigSnapshot& s) { mesh.Step(s); });
      server.xds().Notify({"n"});
      if (rng() % 4 == 0) {
        ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }))
            << "step " << step;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 3));
      }
    }
    ASSERT_TRUE(WaitFor([&] { return Held(client) == Expected(world.Get("n")); }));
    ConfigClientStatus cs = client.Status();
    EXPECT_EQ(cs.nacks, 0u);
    EXPECT_EQ(cs.full_snapshots, 1u);
    EXPECT_GT(Metric(server.metrics(), "weft_xds_pushes_total", {{"type", "delta"}}), 20);
    // A fresh subscriber's full snapshot is byte-identical to the delta-built state.
    ConfigClient fresh(ClientFor(server, "n", "agent"), nullptr);
    ASSERT_TRUE(fresh.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return fresh.Current() != nullptr; }));
    EXPECT_EQ(Held(fresh), Held(client));
  }
}

INSTANTIATE_TEST_SUITE_P(Providers, XdsViews, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Shared") : std::string("Snapshot");
                         });

}  // namespace
}  // namespace weft::cp
