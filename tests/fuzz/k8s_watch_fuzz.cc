// libFuzzer target for the Kubernetes API stream weftd consumes (controlplane/k8s/watcher.h):
// a real Watcher with its libcurl RestClient lists and watches one resource on a loopback HTTP
// server (the k8s tests' TestApiServer) that replies with the fuzzed list body and watch stream;
// every ObjectEvent goes to a real Model, as in weftd. Covers list parsing (items, continue,
// resourceVersion), watch lines split across HTTP chunks, ADDED/MODIFIED/DELETED, BOOKMARK and
// ERROR events, 410 relists, and the model's parsing of each object. Afterwards every node's
// view must pass ztunnel::ConfigSnapshot::FromProto.
//
// Input: records (records.h). Record 0 is the list reply body; flags bits 0-2 pick the resource
// (WatchedResources()), bit 3 answers the list with 410 Gone instead of 200. Records 1.. are the
// watch stream, one HTTP chunk each; record 1's bit 3 answers the watch with 410 (its payload
// as the body), the last record's bit 4 drops the connection without the final chunk.
// The watcher's third request ends the input: the server answers it (and any retry) with 500.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "controlplane/k8s/rest_client.h"
#include "controlplane/k8s/test_api_server.h"
#include "controlplane/k8s/watcher.h"
#include "controlplane/model/model.h"
#include "tests/fuzz/records.h"
#include "ztunnel/state/snapshot.h"

namespace {

using namespace std::chrono_literals;
namespace k8s = weft::cp::k8s;

constexpr size_t kMaxInput = 128 * 1024;
constexpr size_t kMaxChunks = 32;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  weft::log::SetLevel(weft::log::Level::kError);  // every malformed event logs a warning
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  auto records = weft::fuzz::SplitRecords(data, size, kMaxChunks + 1);
  if (records.empty()) return 0;
  const auto& resources = k8s::WatchedResources();
  const k8s::ResourceType rt = resources[records[0].flags % 8 % resources.size()];
  const std::string path = rt.CollectionPath();

  k8s::testing::TestApiServer server;
  k8s::testing::ScriptedReply list;
  list.status = (records[0].flags & 0x08) ? 410 : 200;
  list.body = std::string(records[0].payload);
  server.Enqueue(path, list);
  k8s::testing::ScriptedReply watch;
  if (records.size() > 1 && (records[1].flags & 0x08)) {
    watch.status = 410;
    watch.body = std::string(records[1].payload);
  } else {
    watch.stream = true;
    for (size_t i = 1; i < records.size(); ++i) {
      // An empty HTTP chunk would end the body: skip empty records.
      if (!records[i].payload.empty()) watch.chunks.emplace_back(records[i].payload);
    }
    watch.drop = records.size() > 1 && (records.back().flags & 0x10);
  }
  server.Enqueue(path, watch);
  server.SetHandler(path, [](const k8s::testing::RecordedRequest&) {
    return k8s::testing::ScriptedReply{.status = 500, .body = "{}"};
  });

  weft::cp::Model model;
  {
    k8s::Endpoint ep;
    ep.server = server.url();
    ep.origin = "fuzz";
    k8s::WatchOptions o;
    o.resources = {rt};
    o.seed = 1;
    o.backoff_initial = 2ms;
    o.backoff_max = 2ms;
    k8s::Watcher watcher(std::make_shared<k8s::RestClient>(ep), model.Sink(),
                         std::make_shared<prometheus::Registry>(), o);
    watcher.Start();
    if (!server.WaitForRequests(path, 3, 20s)) {
      std::fprintf(stderr, "k8s_watch: the watcher did not come back for a third request\n");
      std::abort();
    }
    watcher.Stop();
  }
  server.Stop();
  for (const std::string& node : model.Nodes()) {
    auto snap = weft::ztunnel::ConfigSnapshot::FromProto(model.NodeView(node));
    if (!snap.ok()) {
      std::fprintf(stderr, "node %s: model view rejected by the data plane: %s\n", node.c_str(),
                   snap.status().ToString().c_str());
      std::abort();
    }
  }
  return 0;
}
