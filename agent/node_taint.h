// The node's `weft.dev/agent-not-ready:NoSchedule` taint (docs/kubernetes.md, "Node taint"): a
// node registered with it (kubelet --register-with-taints, or the node pool's taints) gets no
// pod from the scheduler until weft-agent is ready to enrol pods; the agent then removes it. The
// agent never adds it: a node whose agent restarts keeps taking pods (weft-cni fails their ADD
// until the agent is back, so none runs outside the mesh), and tainting a live node would evict
// nothing but would stop scheduling for every restart of the DaemonSet.
//
// Only Weft's own taint is removed, with a JSON patch that tests the exact entry it removes
// (test + remove of /spec/taints/<i>): another writer changing the taints in between makes the
// patch fail (422) and the agent reads the node again, so other taints are never lost.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/k8s/rest_client.h"

namespace weft::agent {

inline constexpr char kNotReadyTaintKey[] = "weft.dev/agent-not-ready";
inline constexpr char kNotReadyTaintEffect[] = "NoSchedule";

// Removes the taint from `node` (RBAC: get and patch on nodes). Thread-compatible.
class NodeTaint {
 public:
  NodeTaint(std::shared_ptr<k8s::RestClient> client, std::string node);

  // True when this call removed it, false when the node did not have it. Errors say what to fix
  // (403: the ClusterRole; 404: --node is not the node's name) and are worth retrying.
  // `cancel` (optional) aborts a request in flight once it becomes true.
  absl::StatusOr<bool> Remove(const std::atomic<bool>* cancel = nullptr);

 private:
  std::shared_ptr<k8s::RestClient> client_;
  std::string node_;
};

// Waits for `ready` and then removes the taint, on its own thread, retrying API errors with
// backoff; done once removed (or found absent). Stop() ends it early.
class NodeTaintRemover {
 public:
  struct Options {
    std::chrono::milliseconds poll{200};  // how often `ready` is asked
    std::chrono::milliseconds backoff_min{1000}, backoff_max{30000};
  };
  NodeTaintRemover(NodeTaint taint, std::function<bool()> ready, Options options);
  NodeTaintRemover(NodeTaint taint, std::function<bool()> ready)
      : NodeTaintRemover(std::move(taint), std::move(ready), Options()) {}
  ~NodeTaintRemover();
  NodeTaintRemover(const NodeTaintRemover&) = delete;
  NodeTaintRemover& operator=(const NodeTaintRemover&) = delete;

  void Start();
  void Stop();  // idempotent
  bool done() const { return done_.load(); }

 private:
  void Run();
  bool SleepFor(std::chrono::milliseconds d);  // false when stopping

  NodeTaint taint_;
  std::function<bool()> ready_;
  Options options_;
  std::atomic<bool> done_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                // guarded by mu_
  std::atomic<bool> cancel_{false};  // stop_, for the REST client
  std::thread thread_;
};

}  // namespace weft::agent
