#include "agent/node_taint.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::agent {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr char kScope[] = "agent";
constexpr auto kTimeout = 10s;
constexpr int kAttempts = 5;  // re-reads after the taints changed under the patch

std::string StatusMessage(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return body.substr(0, 256);
}

absl::Status HttpError(long status, const std::string& body, const std::string& node,
                       const char* verb) {
  const std::string msg = StatusMessage(body);
  if (status == 403) {
    return absl::PermissionDeniedError(absl::StrCat(
        verb, " node ", node, ": forbidden (", msg,
        "); the agent's service account needs get and patch on nodes (the chart's ClusterRole "
        "weft-node grants them)"));
  }
  if (status == 404) {
    return absl::NotFoundError(absl::StrCat(
        verb, " node ", node, ": not found (", msg,
        "); --node must be the Kubernetes node name (the chart passes spec.nodeName)"));
  }
  return absl::UnavailableError(absl::StrCat(verb, " node ", node, ": HTTP ", status, ": ", msg));
}

}  // namespace

NodeTaint::NodeTaint(std::shared_ptr<k8s::RestClient> client, std::string node)
    : client_(std::move(client)), node_(std::move(node)) {}

absl::StatusOr<bool> NodeTaint::Remove(const std::atomic<bool>* cancel) {
  const std::string path = absl::StrCat("/api/v1/nodes/", k8s::UrlEncode(node_));
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    WEFT_ASSIGN_OR_RETURN(k8s::HttpResponse got, client_->Get(path, kTimeout, cancel));
    if (got.status != 200) return HttpError(got.status, got.body, node_, "get");
    json n = json::parse(got.body, nullptr, /*allow_exceptions=*/false);
    const json* taints =
        n.is_object() && n.contains("spec") && n["spec"].is_object() && n["spec"].contains("taints")
            ? &n["spec"]["taints"]
            : nullptr;
    size_t index = 0;
    const json* ours = nullptr;
    for (size_t i = 0; taints != nullptr && taints->is_array() && i < taints->size(); ++i) {
      const json& t = (*taints)[i];
      if (t.is_object() && t.value("key", json()) == kNotReadyTaintKey &&
          t.value("effect", json()) == kNotReadyTaintEffect) {
        index = i;
        ours = &t;
        break;
      }
    }
    if (ours == nullptr) return false;
    // Test the exact entry, then remove it: if the list changed since the read, the test fails
    // and nothing is written.
    const std::string at = absl::StrCat("/spec/taints/", index);
    const json patch = json::array(
        {{{"op", "test"}, {"path", at}, {"value", *ours}}, {{"op", "remove"}, {"path", at}}});
    WEFT_ASSIGN_OR_RETURN(
        k8s::HttpResponse put,
        client_->Patch(path, patch.dump(), "application/json-patch+json", kTimeout, cancel));
    if (put.status == 200) return true;
    if (put.status != 422 && put.status != 409) {
      return HttpError(put.status, put.body, node_, "patch");
    }
    LOG_INFO(kScope, "the node's taints changed while removing ours; reading it again",
             {{"node", node_}, {"status", put.status}});
  }
  return absl::AbortedError(absl::StrCat("patch node ", node_, ": its taints kept changing (",
                                         kAttempts, " attempts); retrying later"));
}

NodeTaintRemover::NodeTaintRemover(NodeTaint taint, std::function<bool()> ready, Options options)
    : taint_(std::move(taint)), ready_(std::move(ready)), options_(options) {}

NodeTaintRemover::~NodeTaintRemover() {
  Stop();
}

void NodeTaintRemover::Start() {
  thread_ = std::thread([this] { Run(); });
}

void NodeTaintRemover::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool NodeTaintRemover::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stop_; });
}

void NodeTaintRemover::Run() {
  while (!ready_()) {
    if (!SleepFor(options_.poll)) return;
  }
  auto backoff = options_.backoff_min;
  for (;;) {
    absl::StatusOr<bool> removed = taint_.Remove(&cancel_);
    if (cancel_.load()) return;
    if (removed.ok()) {
      LOG_INFO(kScope,
               *removed ? "agent ready: node taint removed" : "agent ready: node was not tainted",
               {{"taint", absl::StrCat(kNotReadyTaintKey, ":", kNotReadyTaintEffect)}});
      done_ = true;
      return;
    }
    LOG_WARN(kScope, "could not remove the node taint; retrying",
             {{"error", std::string(removed.status().message())},
              {"retry_ms", static_cast<int64_t>(backoff.count())}});
    if (!SleepFor(backoff)) return;
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
}

}  // namespace weft::agent
