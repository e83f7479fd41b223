// Writes weftd's route status (controlplane/source/route_status.h) back to the API server, as a
// Gateway API implementation does: for each HTTPRoute/GRPCRoute it GETs the route, replaces the
// status.parents[] entries whose controllerName is weft.dev/weftd with the new ones (entries of
// other controllers stay), keeps a condition's lastTransitionTime while its status is unchanged,
// and PATCHes the status subresource (a JSON merge patch carrying metadata.resourceVersion, so a
// concurrent writer turns it into a 409 that is retried) only when the result differs from what
// the route already has. A route whose Service parents all went away gets its weftd entries
// removed.
//
// Runs on its own thread: Update() hands over the newest statuses and returns. Failures are
// logged, counted (weft_k8s_route_status_writes_total{result=ok|unchanged|conflict|error}) and
// retried after `retry`.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/k8s/rest_client.h"
#include "controlplane/source/route_status.h"

namespace weft::cp::k8s {

struct RouteStatusWriterOptions {
  std::chrono::seconds request_timeout{10};
  std::chrono::milliseconds retry{5000};
  // Notify() -> read `source` after this long (changes come in bursts: a list, a rollout).
  std::chrono::milliseconds debounce{500};
  // The clock for lastTransitionTime (tests fix it).
  std::function<std::chrono::system_clock::time_point()> now = std::chrono::system_clock::now;
};

class RouteStatusWriter {
 public:
  RouteStatusWriter(std::shared_ptr<RestClient> client,
                    std::shared_ptr<prometheus::Registry> registry,
                    RouteStatusWriterOptions options = {});
  ~RouteStatusWriter();  // Stop()
  RouteStatusWriter(const RouteStatusWriter&) = delete;
  RouteStatusWriter& operator=(const RouteStatusWriter&) = delete;

  void Start();
  void Stop();
  // The complete current set (Model::RouteStatuses()); replaces any set not yet written.
  void Update(std::vector<RouteStatus> statuses);
  // Something changed: after the debounce, the writer reads the set from `source` itself (on its
  // own thread, so the caller, e.g. the model's change listener, never waits for it).
  void SetSource(std::function<std::vector<RouteStatus>()> source);
  void Notify();
  // Passes over a set completed so far (tests wait on it).
  uint64_t passes() const { return passes_.load(); }

 private:
  void Run();
  bool Sync(const std::vector<RouteStatus>& statuses);  // false: something to retry
  // "ok", "unchanged", "gone", "conflict" or "error".
  std::string WriteOne(const std::string& kind, const std::string& ns, const std::string& name,
                       const nlohmann::json& ours);

  std::shared_ptr<RestClient> client_;
  RouteStatusWriterOptions options_;
  prometheus::Family<prometheus::Counter>* writes_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::vector<RouteStatus>> pending_;
  std::function<std::vector<RouteStatus>()> source_;
  bool dirty_ = false;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};
  std::atomic<uint64_t> passes_{0};
  std::thread thread_;
  // Per "<kind>/<ns>/<name>": weftd's entries last found in place (without timestamps).
  std::map<std::string, nlohmann::json> written_;
};

}  // namespace weft::cp::k8s
