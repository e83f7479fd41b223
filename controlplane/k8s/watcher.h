// The Kubernetes source: lists then watches each resource weftd uses and hands every object
// to an ObjectSink.
//
// Per resource (one thread each):
//   1. LIST  GET <path>?limit=N[&continue=T] until no continue token. Items get apiVersion and
//      kind filled in (the API server omits them inside lists). When the list is complete the
//      sink gets kUpsert for every item, then kSynced (objects missing from it are gone).
//   2. WATCH GET <path>?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=T
//      (T uniformly in [watch_timeout, 2*watch_timeout) so watches do not reconnect in step).
//      ADDED/MODIFIED -> kUpsert, DELETED -> kDelete, BOOKMARK -> only RV advances. RV is
//      each event's metadata.resourceVersion, so a reconnect resumes where the stream stopped.
//   3. The server ending the watch (timeout) -> watch again from RV, no delay (unless the
//      watch delivered nothing and lasted under a second: then after a backoff delay).
//      Connection dropped, transport error, HTTP 5xx/429/401/403..., ERROR event other than
//      410 -> counted, logged, exponential backoff with jitter, watch again from RV.
//      HTTP 410 Gone or an ERROR event with code 410 (RV too old), or a malformed event line
//      (an event was lost) -> relist (step 1). A failed list is retried with backoff.
//   401/403 are logged as errors naming the credentials and the RBAC to grant.
//
// The sink is called from the watcher's threads, one call at a time (serialized).
// Metrics: weft_k8s_watch_events_total{kind,type}, weft_k8s_relists_total{kind,reason}
// (reason: gone_status | gone_event | malformed_event), weft_k8s_errors_total{kind,code}
// (code: HTTP status, "transport", "malformed", "watch_error_<code>"),
// weft_k8s_synced{kind} (1 once the first list completed).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/k8s/rest_client.h"
#include "controlplane/source/object_event.h"

namespace weft::cp::k8s {

// One API resource: GET paths, and what to put in apiVersion/kind.
struct ResourceType {
  std::string group;     // "" for the core group
  std::string version;   // "v1"
  std::string resource;  // plural, lower case: "pods"
  std::string kind;      // "Pod"
  // A kind whose CRDs a cluster may not have (Gateway API, TrafficPolicy): a 404 on its list is
  // logged once (not counted as an error), the kind counts as synced with no objects, and the
  // list is retried quietly every WatchOptions::absent_recheck so installing the CRDs later
  // needs no restart.
  bool optional = false;
  // A kind also served by another group weftd watches (Istio's security.istio.io policies next
  // to security.weft.dev's): its metrics label and ObjectEvent::source name the group
  // ("AuthorizationPolicy.security.istio.io", "kubernetes/security.istio.io"), so the two
  // lists never count as, sync away or delete each other's objects. The model keys both by
  // kind and namespace/name: a name in both groups is one object, the first source's.
  bool qualified = false;
  // Older versions of the group to watch instead, newest first, when `version` is not served
  // (a list answers 404 and the group's discovery document, GET /apis/<group>, lists one of
  // these): Istio releases before security.istio.io/v1 serve only v1beta1. Both read alike.
  std::vector<std::string> older_versions = {};

  std::string Label() const;           // kind, or "<kind>.<group>" when qualified
  std::string ApiVersion() const;      // "v1" or "discovery.k8s.io/v1"
  std::string CollectionPath() const;  // "/api/v1/pods", "/apis/discovery.k8s.io/v1/endpointslices"
};

// Namespaces, Pods, Services, EndpointSlices, ServiceAccounts, NetworkPolicies,
// AuthorizationPolicies, PeerAuthentications, and (optional) HTTPRoutes, GRPCRoutes,
// ReferenceGrants, TrafficPolicies, and Istio's security.istio.io/v1 (else v1beta1)
// AuthorizationPolicies and PeerAuthentications (docs/kubernetes.md lists their versions).
const std::vector<ResourceType>& WatchedResources();
// The same, without Istio's security.istio.io kinds unless `istio_policies` (weftd
// --istio-policies).
std::vector<ResourceType> WatchedResources(bool istio_policies);
inline constexpr char kIstioSecurityGroup[] = "security.istio.io";

// Exponential backoff with "equal jitter": the n-th delay is uniform in [d/2, d] where
// d = min(max, initial * 2^n). Reset() after a success.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, uint64_t seed);
  std::chrono::milliseconds Next();
  void Reset() { attempt_ = 0; }

 private:
  std::chrono::milliseconds initial_, max_;
  int attempt_ = 0;
  std::mt19937_64 rng_;
};

struct WatchOptions {
  std::vector<ResourceType> resources = WatchedResources();
  int page_size = 500;                      // list limit
  std::chrono::seconds watch_timeout{300};  // minimum server-side timeoutSeconds
  std::chrono::seconds list_timeout{60};    // client-side timeout of one list page
  std::chrono::seconds watch_grace{30};     // client-side timeout = timeoutSeconds + grace
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::seconds absent_recheck{60};  // optional kinds whose CRDs are not installed
  uint64_t seed = 0;                        // jitter seed; 0 = random
  std::string source = "kubernetes";        // ObjectEvent::source
};

class Watcher {
 public:
  Watcher(std::shared_ptr<RestClient> client, ObjectSink sink,
          std::shared_ptr<prometheus::Registry> registry, WatchOptions options = {});
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Starts one thread per resource. Call once.
  void Start();
  // Stops all threads (in-flight requests abort within about a second). Idempotent.
  void Stop();
  // True once every resource completed its first list.
  bool Synced() const;

 private:
  struct Counters;
  struct WatchPass;  // what one watch request saw
  void Run(size_t index);
  // One line of a watch stream; false ends the stream (error or relist needed).
  bool OnWatchLine(const ResourceType& rt, std::string_view line, WatchPass& pass);
  // Returns false when stopping.
  bool List(size_t index, Backoff& backoff, std::string* resource_version);
  // An optional kind is not served (404): synced as empty; false when stopping.
  bool Absent(const ResourceType& rt, bool* logged);
  // After a 404 on a kind with older_versions: the newest of its versions the group's discovery
  // document lists, or "" (none, or discovery failed).
  std::string ServedVersion(size_t index);
  void MarkSynced(const ResourceType& rt);
  void Emit(ObjectEvent event);
  std::string SourceOf(const ResourceType& rt) const;  // ObjectEvent::source
  bool SleepFor(std::chrono::milliseconds d);          // false when stopping
  int WatchTimeoutSeconds();
  prometheus::Counter& ErrorCounter(const std::string& kind, const std::string& code);

  std::shared_ptr<RestClient> client_;
  ObjectSink sink_;
  std::shared_ptr<prometheus::Registry> registry_;
  WatchOptions options_;
  // options_.resources with the version each is watched at; element i is written only by the
  // thread of resource i (ServedVersion's fallback).
  std::vector<ResourceType> served_;

  prometheus::Family<prometheus::Counter>* events_;
  prometheus::Family<prometheus::Counter>* relists_;
  prometheus::Family<prometheus::Counter>* errors_;
  prometheus::Family<prometheus::Gauge>* synced_gauge_;

  std::mutex sink_mu_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::atomic<size_t> synced_count_{0};
  std::vector<std::thread> threads_;
};

}  // namespace weft::cp::k8s
