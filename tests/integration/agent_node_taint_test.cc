// weft-agent's node taint (agent/node_taint.h) against a scripted API server that answers with
// a recorded Node: only weft.dev/agent-not-ready:NoSchedule is removed, with a JSON patch that
// tests the exact entry first; nothing is sent before the agent is ready; a patch that loses a
// race (422) reads the node again. (Here, not in agent/: the scripted API server is weftd's test
// helper, and agent/ may not depend on controlplane/.)
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "agent/node_taint.h"
#include "common/k8s/endpoint.h"
#include "common/k8s/rest_client.h"
#include "common/testing/eventually.h"
#include "controlplane/k8s/test_api_server.h"

namespace weft::agent {
namespace {

using cp::k8s::testing::Fixture;
using cp::k8s::testing::RecordedRequest;
using cp::k8s::testing::ScriptedReply;
using cp::k8s::testing::TestApiServer;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr char kNode[] = "/api/v1/nodes/worker-1";

std::shared_ptr<k8s::RestClient> Client(const TestApiServer& server) {
  return std::make_shared<k8s::RestClient>(k8s::PlainEndpoint(server.url()));
}

std::vector<RecordedRequest> Patches(const TestApiServer& server) {
  std::vector<RecordedRequest> out;
  for (const RecordedRequest& r : server.Requests(kNode)) {
    if (r.method == "PATCH") out.push_back(r);
  }
  return out;
}

NodeTaintRemover::Options Fast() {
  return {.poll = 20ms, .backoff_min = 20ms, .backoff_max = 100ms};
}

TEST(NodeTaintTest, RemovesOnlyItsOwnTaintOnceReadyWithATestedPatch) {
  TestApiServer server;
  server.Enqueue(kNode, {.status = 200, .body = Fixture("node_worker_1_tainted.json")});
  server.Enqueue(kNode, {.status = 200, .body = "{}"});
  std::atomic<bool> ready{false};
  std::atomic<int> asked{0};
  NodeTaintRemover remover(
      NodeTaint(Client(server), "worker-1"),
      [&] {
        ++asked;
        return ready.load();
      },
      Fast());
  remover.Start();
  // Not ready: asked several times, and the node is not even read.
  ASSERT_TRUE(weft::testing::Eventually([&] { return asked.load() >= 5; }, 10s));
  EXPECT_TRUE(server.Requests(kNode).empty());
  EXPECT_FALSE(remover.done());
  ready = true;
  ASSERT_TRUE(weft::testing::Eventually([&] { return remover.done(); }, 10s));
  const auto reqs = server.Requests(kNode);
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[1].method, "PATCH");
  EXPECT_EQ(reqs[1].content_type, "application/json-patch+json");
  // The exact patch: test the second taint as read (with its timeAdded), then remove it; the
  // dedicated=gpu and unreachable taints are not touched.
  EXPECT_EQ(json::parse(reqs[1].body), json::parse(R"([
    {"op": "test", "path": "/spec/taints/1",
     "value": {"effect": "NoSchedule", "key": "weft.dev/agent-not-ready",
               "timeAdded": "2026-12-01T09:12:44Z"}},
    {"op": "remove", "path": "/spec/taints/1"}])"));
}

TEST(NodeTaintTest, APatchThatLostARaceReadsTheNodeAgain) {
  TestApiServer server;
  json node = json::parse(Fixture("node_worker_1_tainted.json"));
  server.Enqueue(kNode, {.status = 200, .body = node.dump()});
  // Meanwhile another controller removed dedicated=gpu: the test op fails, 422.
  server.Enqueue(kNode,
                 {.status = 422, .body = R"({"kind":"Status","apiVersion":"v1","status":"Failure",
                                     "message":"the server rejected our request due to an error in our request",
                                     "reason":"Invalid","code":422})"});
  node["spec"]["taints"].erase(0);
  server.Enqueue(kNode, {.status = 200, .body = node.dump()});
  server.Enqueue(kNode, {.status = 200, .body = "{}"});
  NodeTaint taint(Client(server), "worker-1");
  absl::StatusOr<bool> removed = taint.Remove();
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_TRUE(*removed);
  const auto patches = Patches(server);
  ASSERT_EQ(patches.size(), 2u);
  EXPECT_EQ(json::parse(patches[1].body)[1],
            json::parse(R"({"op":"remove","path":"/spec/taints/0"})"));
}

TEST(NodeTaintTest, AnUntaintedNodeIsLeftAlone) {
  TestApiServer server;
  json node = json::parse(Fixture("node_worker_1_tainted.json"));
  node["spec"]["taints"].erase(1);
  server.Enqueue(kNode, {.status = 200, .body = node.dump()});
  NodeTaint taint(Client(server), "worker-1");
  absl::StatusOr<bool> removed = taint.Remove();
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_FALSE(*removed);
  EXPECT_TRUE(Patches(server).empty());
}

// A missing RBAC rule is named, and retried until it is granted.
TEST(NodeTaintTest, ForbiddenSaysWhatToGrantAndIsRetried) {
  TestApiServer server;
  server.Enqueue(kNode,
                 {.status = 403, .body = R"({"kind":"Status","apiVersion":"v1","status":"Failure",
                                     "message":"nodes \"worker-1\" is forbidden: User \"system:serviceaccount:weft-system:weft-node\" cannot get resource \"nodes\" in API group \"\" at the cluster scope",
                                     "reason":"Forbidden","code":403})"});
  NodeTaint taint(Client(server), "worker-1");
  absl::StatusOr<bool> removed = taint.Remove();
  ASSERT_EQ(removed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(std::string(removed.status().message()).find("needs get and patch on nodes"),
            std::string::npos)
      << removed.status();

  server.Enqueue(kNode, {.status = 403, .body = "{}"});
  server.Enqueue(kNode, {.status = 200, .body = Fixture("node_worker_1_tainted.json")});
  server.Enqueue(kNode, {.status = 200, .body = "{}"});
  NodeTaintRemover remover(
      NodeTaint(Client(server), "worker-1"), [] { return true; }, Fast());
  remover.Start();
  ASSERT_TRUE(weft::testing::Eventually([&] { return remover.done(); }, 10s));
  EXPECT_EQ(Patches(server).size(), 1u);
}

}  // namespace
}  // namespace weft::agent
