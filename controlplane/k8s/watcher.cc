#include "controlplane/k8s/watcher.h"

#include <algorithm>
#include <exception>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::cp::k8s {
namespace {

using json = nlohmann::json;

std::string StatusMessage(const std::string& body) {
  auto j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return body.substr(0, 512);
}

// obj[key] if it is a string, else `fallback`. (json::value(key, default) throws type_error when
// the member exists with another type: one such event or list killed the watcher thread, and
// with it weftd.)
std::string StringField(const json& obj, const char* key, const std::string& fallback = "") {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::string ResourceVersionOf(const json& obj) {
  auto m = obj.find("metadata");
  if (m == obj.end() || !m->is_object()) return "";
  auto rv = m->find("resourceVersion");
  if (rv == m->end() || !rv->is_string()) return "";
  return rv->get<std::string>();
}

std::string NameOf(const json& obj) {
  auto m = obj.find("metadata");
  if (m == obj.end() || !m->is_object()) return "";
  std::string ns = StringField(*m, "namespace");
  std::string name = StringField(*m, "name");
  return ns.empty() ? name : absl::StrCat(ns, "/", name);
}

}  // namespace

std::string ResourceType::Label() const {
  return qualified ? absl::StrCat(kind, ".", group) : kind;
}

std::string ResourceType::ApiVersion() const {
  return group.empty() ? version : absl::StrCat(group, "/", version);
}

std::string ResourceType::CollectionPath() const {
  return group.empty() ? absl::StrCat("/api/", version, "/", resource)
                       : absl::StrCat("/apis/", group, "/", version, "/", resource);
}

const std::vector<ResourceType>& WatchedResources() {
  static const std::vector<ResourceType> kResources = {
      {"", "v1", "namespaces", "Namespace"},
      {"", "v1", "pods", "Pod"},
      {"", "v1", "services", "Service"},
      {"discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"},
      {"", "v1", "serviceaccounts", "ServiceAccount"},
      {"networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"},
      {"security.weft.dev", "v1", "authorizationpolicies", "AuthorizationPolicy"},
      {"security.weft.dev", "v1", "peerauthentications", "PeerAuthentication"},
      {"gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", true},
      {"gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute", true},
      {"gateway.networking.k8s.io", "v1beta1", "referencegrants", "ReferenceGrant", true},
      {"networking.weft.dev", "v1", "trafficpolicies", "TrafficPolicy", true},
      // Istio's own, read exactly as Weft's (controlplane/model/objects.cc).
      {kIstioSecurityGroup,
       "v1",
       "authorizationpolicies",
       "AuthorizationPolicy",
       true,
       true,
       {"v1beta1"}},
      {kIstioSecurityGroup,
       "v1",
       "peerauthentications",
       "PeerAuthentication",
       true,
       true,
       {"v1beta1"}},
  };
  return kResources;
}

std::vector<ResourceType> WatchedResources(bool istio_policies) {
  std::vector<ResourceType> out;
  for (const ResourceType& rt : WatchedResources()) {
    if (istio_policies || rt.group != kIstioSecurityGroup) out.push_back(rt);
  }
  return out;
}

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, uint64_t seed)
    : initial_(initial), max_(std::max(max, initial)), rng_(seed) {}

std::chrono::milliseconds Backoff::Next() {
  int64_t d = initial_.count();
  for (int i = 0; i < attempt_ && d < max_.count(); ++i) d *= 2;
  d = std::min<int64_t>(d, max_.count());
  if (attempt_ < 62) ++attempt_;
  std::uniform_int_distribution<int64_t> dist(d / 2, d);
  return std::chrono::milliseconds(dist(rng_));
}

Watcher::Watcher(std::shared_ptr<RestClient> client, ObjectSink sink,
                 std::shared_ptr<prometheus::Registry> registry, WatchOptions options)
    : client_(std::move(client)),
      sink_(std::move(sink)),
      registry_(std::move(registry)),
      options_(std::move(options)),
      served_(options_.resources),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {
  events_ = &prometheus::BuildCounter()
                 .Name("weft_k8s_watch_events_total")
                 .Help("Kubernetes watch events received, by kind and event type")
                 .Register(*registry_);
  relists_ = &prometheus::BuildCounter()
                  .Name("weft_k8s_relists_total")
                  .Help("Full relists after the watch could not resume (410 Gone, lost event)")
                  .Register(*registry_);
  errors_ = &prometheus::BuildCounter()
                 .Name("weft_k8s_errors_total")
                 .Help(
                     "Kubernetes API errors by kind and code (HTTP status, transport, "
                     "malformed, watch_error_<code>)")
                 .Register(*registry_);
  synced_gauge_ = &prometheus::BuildGauge()
                       .Name("weft_k8s_synced")
                       .Help("1 once the first full list of the kind has been delivered")
                       .Register(*registry_);
  for (const auto& rt : options_.resources) synced_gauge_->Add({{"kind", rt.Label()}}).Set(0);
}

Watcher::~Watcher() {
  Stop();
}

void Watcher::Start() {
  WEFT_CHECK(threads_.empty());
  for (size_t i = 0; i < options_.resources.size(); ++i) {
    threads_.emplace_back([this, i] { Run(i); });
  }
}

void Watcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

bool Watcher::Synced() const {
  return synced_count_.load() == options_.resources.size();
}

bool Watcher::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(stop_mu_);
  return !stop_cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

int Watcher::WatchTimeoutSeconds() {
  const int64_t t = std::max<int64_t>(1, options_.watch_timeout.count());
  std::lock_guard<std::mutex> lock(rng_mu_);
  return static_cast<int>(std::uniform_int_distribution<int64_t>(t, 2 * t - 1)(rng_));
}

prometheus::Counter& Watcher::ErrorCounter(const std::string& kind, const std::string& code) {
  return errors_->Add({{"kind", kind}, {"code", code}});
}

std::string Watcher::SourceOf(const ResourceType& rt) const {
  return rt.qualified ? absl::StrCat(options_.source, "/", rt.group) : options_.source;
}

void Watcher::Emit(ObjectEvent event) {
  std::lock_guard<std::mutex> lock(sink_mu_);
  try {
    sink_(event);
  } catch (const std::exception& e) {
    // A sink bug must not kill the watch thread; the model owns validation.
    LOG_ERROR("k8s", "object sink threw", {{"kind", event.kind}, {"error", e.what()}});
  }
}

namespace {

// Logs an HTTP error reply with what the operator should do about it.
void LogHttpError(const ResourceType& rt, const Endpoint& ep, std::string_view verb, long status,
                  const std::string& body) {
  const std::string msg = StatusMessage(body);
  const std::string resource =
      rt.group.empty() ? rt.resource : absl::StrCat(rt.resource, ".", rt.group);
  if (status == 401) {
    LOG_ERROR("k8s",
              "the API server rejected weftd's credentials (401 Unauthorized); check the service "
              "account token or kubeconfig user",
              {{"kind", rt.Label()}, {"verb", verb}, {"credentials", ep.origin}, {"message", msg}});
  } else if (status == 403) {
    LOG_ERROR("k8s",
              "weftd is not allowed to read this resource (403 Forbidden); grant list and watch "
              "on it (helm/templates/clusterrole.yaml, docs/kubernetes.md)",
              {{"kind", rt.Label()}, {"verb", verb}, {"resource", resource}, {"message", msg}});
  } else if (status == 404) {
    LOG_ERROR("k8s",
              "resource not served by the API server (404); for security.weft.dev kinds install "
              "the CRDs (helm/crds)",
              {{"kind", rt.Label()}, {"verb", verb}, {"resource", resource}, {"message", msg}});
  } else {
    LOG_WARN("k8s", "Kubernetes API error",
             {{"kind", rt.Label()}, {"verb", verb}, {"status", status}, {"message", msg}});
  }
}

}  // namespace

void Watcher::MarkSynced(const ResourceType& rt) {
  if (synced_gauge_->Add({{"kind", rt.Label()}}).Value() == 0) {
    synced_gauge_->Add({{"kind", rt.Label()}}).Set(1);
    synced_count_.fetch_add(1);
  }
}

bool Watcher::Absent(const ResourceType& rt, bool* logged) {
  if (!*logged) {
    LOG_WARN("k8s",
             "resource not served by the API server (404): its CRDs are not installed; Weft "
             "runs without it and checks again periodically",
             {{"kind", rt.Label()},
              {"resource", absl::StrCat(rt.resource, ".", rt.group, "/", rt.version)},
              {"recheck_seconds", options_.absent_recheck.count()}});
    *logged = true;
  }
  // None exist: objects of the kind seen before (CRDs removed) are gone.
  Emit(ObjectEvent{ObjectEvent::Type::kSynced, SourceOf(rt), rt.kind, json::object()});
  MarkSynced(rt);
  return SleepFor(options_.absent_recheck);
}

std::string Watcher::ServedVersion(size_t index) {
  const ResourceType& want = options_.resources[index];
  if (want.older_versions.empty()) return "";
  auto resp = client_->Get(absl::StrCat("/apis/", want.group), options_.list_timeout, &stop_);
  if (!resp.ok() || resp->status != 200) return "";  // 404: the group is not served at all
  json doc = json::parse(resp->body, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> served;
  if (doc.is_object() && doc.contains("versions") && doc["versions"].is_array()) {
    for (const json& v : doc["versions"]) served.push_back(StringField(v, "version"));
  }
  std::vector<std::string> ours = {want.version};
  ours.insert(ours.end(), want.older_versions.begin(), want.older_versions.end());
  for (const std::string& v : ours) {
    if (std::find(served.begin(), served.end(), v) != served.end()) return v;
  }
  return "";
}

bool Watcher::List(size_t index, Backoff& backoff, std::string* resource_version) {
  ResourceType& rt = served_[index];
  bool absent_logged = false;
  for (;;) {
    if (stop_) return false;
    std::vector<json> items;
    std::string cont;
    std::string rv;
    bool complete = false;
    bool retry_now = false;
    for (;;) {
      std::string path = absl::StrCat(rt.CollectionPath(), "?limit=", options_.page_size);
      if (!cont.empty()) absl::StrAppend(&path, "&continue=", UrlEncode(cont));
      auto resp = client_->Get(path, options_.list_timeout, &stop_);
      if (stop_) return false;
      if (!resp.ok()) {
        ErrorCounter(rt.Label(), "transport").Increment();
        LOG_WARN("k8s", "list failed", {{"kind", rt.Label()}, {"error", resp.status().ToString()}});
        break;
      }
      if (resp->status == 410 && !cont.empty()) {
        // The continue token expired between pages: start the list over from the beginning.
        ErrorCounter(rt.Label(), "410").Increment();
        LOG_WARN("k8s", "list continue token expired (410); listing again from the start",
                 {{"kind", rt.Label()}});
        retry_now = true;
        break;
      }
      if (resp->status == 404 && rt.optional) {
        retry_now = true;
        if (const std::string v = ServedVersion(index); !v.empty() && v != rt.version) {
          LOG_INFO("k8s", "version not served; watching the one the API server serves",
                   {{"kind", rt.Label()},
                    {"not_served", absl::StrCat(rt.group, "/", rt.version)},
                    {"watching", absl::StrCat(rt.group, "/", v)}});
          rt.version = v;
          break;
        }
        rt.version = options_.resources[index].version;  // rechecks start from the newest
        if (!Absent(rt, &absent_logged)) return false;
        break;
      }
      if (resp->status != 200) {
        ErrorCounter(rt.Label(), std::to_string(resp->status)).Increment();
        LogHttpError(rt, client_->endpoint(), "list", resp->status, resp->body);
        break;
      }
      json body = json::parse(resp->body, nullptr, /*allow_exceptions=*/false);
      if (!body.is_object() || !body.contains("items") ||
          !(body["items"].is_array() || body["items"].is_null())) {
        ErrorCounter(rt.Label(), "malformed").Increment();
        LOG_WARN("k8s", "list reply is not a Kubernetes list",
                 {{"kind", rt.Label()}, {"body", resp->body.substr(0, 256)}});
        break;
      }
      if (body["items"].is_array()) {
        for (auto& item : body["items"]) {
          if (!item.is_object()) continue;
          // Items inside a list carry no apiVersion/kind; the model needs both.
          item["apiVersion"] = rt.ApiVersion();
          item["kind"] = rt.kind;
          items.push_back(std::move(item));
        }
      }
      const json& meta = body.value("metadata", json::object());
      rv = StringField(meta, "resourceVersion");
      cont = StringField(meta, "continue");
      if (cont.empty()) {
        complete = true;
        break;
      }
    }
    if (complete) {
      for (auto& item : items) {
        Emit(ObjectEvent{ObjectEvent::Type::kUpsert, SourceOf(rt), rt.kind, std::move(item)});
      }
      Emit(ObjectEvent{ObjectEvent::Type::kSynced, SourceOf(rt), rt.kind, json::object()});
      MarkSynced(rt);
      LOG_INFO("k8s", "listed",
               {{"kind", rt.Label()}, {"items", items.size()}, {"resourceVersion", rv}});
      *resource_version = rv;
      return true;
    }
    if (!retry_now && !SleepFor(backoff.Next())) return false;
  }
}

struct Watcher::WatchPass {
  std::string rv;             // the last resourceVersion seen
  std::string relist_reason;  // set when the watch cannot resume
  std::string error_code;     // set when the stream reported an error
  std::string error_message;
  size_t received = 0;
};

bool Watcher::OnWatchLine(const ResourceType& rt, std::string_view line, WatchPass& pass) {
  json ev = json::parse(line, nullptr, /*allow_exceptions=*/false);
  const bool shaped = ev.is_object() && ev.contains("type") && ev["type"].is_string() &&
                      ev.contains("object") && ev["object"].is_object();
  const std::string type = shaped ? ev["type"].get<std::string>() : "";
  if (!shaped || (type != "ADDED" && type != "MODIFIED" && type != "DELETED" &&
                  type != "BOOKMARK" && type != "ERROR")) {
    pass.relist_reason = "malformed_event";
    pass.error_code = "malformed";
    pass.error_message = absl::StrCat("malformed watch event: ", Av(line.substr(0, 256)));
    return false;
  }
  ++pass.received;
  events_->Add({{"kind", rt.Label()}, {"type", type}}).Increment();
  json& obj = ev["object"];
  if (type == "ERROR") {
    // obj is a metav1.Status.
    const int code =
        obj.contains("code") && obj["code"].is_number_integer() ? obj["code"].get<int>() : 0;
    pass.error_message = StringField(obj, "message");
    if (code == 410) {
      pass.relist_reason = "gone_event";
    } else {
      pass.error_code = absl::StrCat("watch_error_", code);
    }
    return false;
  }
  const std::string new_rv = ResourceVersionOf(obj);
  if (type != "BOOKMARK") {
    // Filled in only when absent; a value of the wrong type stays for the model to reject.
    if (!obj.contains("apiVersion")) obj["apiVersion"] = rt.ApiVersion();
    if (!obj.contains("kind")) obj["kind"] = rt.kind;
    LOG_DEBUG("k8s", "watch event",
              {{"kind", rt.Label()}, {"type", type}, {"name", NameOf(obj)}, {"rv", new_rv}});
    Emit(ObjectEvent{type == "DELETED" ? ObjectEvent::Type::kDelete : ObjectEvent::Type::kUpsert,
                     SourceOf(rt), rt.kind, std::move(obj)});
  }
  if (!new_rv.empty()) pass.rv = new_rv;
  return true;
}

void Watcher::Run(size_t index) {
  const ResourceType& rt = served_[index];  // its version may change in List
  const uint64_t seed =
      options_.seed != 0 ? options_.seed + index : static_cast<uint64_t>(std::random_device{}());
  Backoff backoff(options_.backoff_initial, options_.backoff_max, seed);
  std::string rv;
  bool need_list = true;
  while (!stop_) {
    if (need_list) {
      if (!List(index, backoff, &rv)) return;
      need_list = false;
    }
    const int timeout_s = WatchTimeoutSeconds();
    const std::string path =
        absl::StrCat(rt.CollectionPath(), "?watch=1&resourceVersion=", UrlEncode(rv),
                     "&allowWatchBookmarks=true", "&timeoutSeconds=", timeout_s);
    WatchPass pass{.rv = rv};
    auto on_line = [&](std::string_view line) { return OnWatchLine(rt, line, pass); };
    const auto started = std::chrono::steady_clock::now();
    auto resp = client_->StreamLines(path, std::chrono::seconds(timeout_s) + options_.watch_grace,
                                     on_line, &stop_);
    if (stop_) return;
    rv = pass.rv;
    std::string& relist_reason = pass.relist_reason;
    std::string& error_code = pass.error_code;
    std::string& error_message = pass.error_message;
    const size_t received = pass.received;
    // Progress (events or a clean end) proves the connection and credentials work.
    if (received > 0) backoff.Reset();
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kResourceExhausted) {
        relist_reason = "malformed_event";
        error_code = "malformed";
        error_message = std::string(resp.status().message());
      } else {
        ErrorCounter(rt.Label(), "transport").Increment();
        LOG_WARN(
            "k8s", "watch connection failed; resuming from the last resourceVersion",
            {{"kind", rt.Label()}, {"resourceVersion", rv}, {"error", resp.status().ToString()}});
        if (!SleepFor(backoff.Next())) return;
        continue;
      }
    } else if (resp->status == 410) {
      relist_reason = "gone_status";
      error_message = StatusMessage(resp->body);
    } else if (resp->status == 404 && rt.optional) {
      need_list = true;  // its CRDs went away: the list says so (once) and rechecks
      continue;
    } else if (resp->status != 200) {
      ErrorCounter(rt.Label(), std::to_string(resp->status)).Increment();
      LogHttpError(rt, client_->endpoint(), "watch", resp->status, resp->body);
      if (!SleepFor(backoff.Next())) return;
      continue;
    }
    if (!error_code.empty()) {
      ErrorCounter(rt.Label(), error_code).Increment();
      LOG_WARN("k8s", "watch error",
               {{"kind", rt.Label()}, {"code", error_code}, {"message", error_message}});
    }
    if (!relist_reason.empty()) {
      relists_->Add({{"kind", rt.Label()}, {"reason", relist_reason}}).Increment();
      LOG_INFO("k8s", "relisting",
               {{"kind", rt.Label()},
                {"reason", relist_reason},
                {"resourceVersion", rv},
                {"message", error_message}});
      need_list = true;
      // A watch that failed before delivering anything right after a list would otherwise
      // spin list->watch->relist against a misbehaving server.
      if (received == 0 && !SleepFor(backoff.Next())) return;
      continue;
    }
    if (!error_code.empty()) {
      if (!SleepFor(backoff.Next())) return;
      continue;
    }
    if (received == 0 && std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
      // An empty watch that ends at once (a proxy closing idle streams, a broken server) would
      // otherwise reconnect in a tight loop.
      LOG_DEBUG("k8s", "watch ended immediately without events; backing off",
                {{"kind", rt.Label()}, {"resourceVersion", rv}});
      if (!SleepFor(backoff.Next())) return;
      continue;
    }
    backoff.Reset();  // the server closed the watch (timeoutSeconds): resume at once
  }
}

}  // namespace weft::cp::k8s
