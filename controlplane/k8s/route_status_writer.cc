#include "controlplane/k8s/route_status_writer.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::cp::k8s {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxMessage = 32768;  // metav1.Condition.message's limit

std::string RoutePath(const std::string& kind, const std::string& ns, const std::string& name) {
  return absl::StrCat("/apis/gateway.networking.k8s.io/v1/namespaces/", ns, "/",
                      kind == "GRPCRoute" ? "grpcroutes" : "httproutes", "/", name);
}

// weftd's status.parents[] entries for `s`, without lastTransitionTime.
json OurEntries(const RouteStatus& s) {
  json out = json::array();
  for (const RouteParentStatus& p : s.parents) {
    json conditions = json::array();
    for (const RouteCondition& c : p.conditions) {
      conditions.push_back({{"type", c.type},
                            {"status", c.status},
                            {"reason", c.reason},
                            {"message", c.message.substr(0, kMaxMessage)},
                            {"observedGeneration", s.generation}});
    }
    out.push_back({{"parentRef", p.parent_ref},
                   {"controllerName", kRouteControllerName},
                   {"conditions", std::move(conditions)}});
  }
  return out;
}

bool Ours(const json& entry) {
  return entry.is_object() && entry.value("controllerName", json()) == kRouteControllerName;
}

json WithoutTimes(json entries) {
  for (json& e : entries) {
    if (!e.is_object() || !e.contains("conditions") || !e["conditions"].is_array()) continue;
    for (json& c : e["conditions"]) {
      if (c.is_object()) c.erase("lastTransitionTime");
    }
  }
  return entries;
}

// `ours` with lastTransitionTime: kept from the route's current entry for the same parent when
// the condition's status did not change, else `now`.
json Stamped(const json& ours, const json& current, const std::string& now) {
  json out = ours;
  for (json& e : out) {
    const json* before = nullptr;
    for (const json& c : current) {
      if (Ours(c) && c.value("parentRef", json()) == e["parentRef"]) before = &c;
    }
    for (json& cond : e["conditions"]) {
      cond["lastTransitionTime"] = now;
      if (before == nullptr || !before->contains("conditions")) continue;
      for (const json& old : (*before)["conditions"]) {
        if (old.is_object() && old.value("type", json()) == cond["type"] &&
            old.value("status", json()) == cond["status"] && old.contains("lastTransitionTime")) {
          cond["lastTransitionTime"] = old["lastTransitionTime"];
        }
      }
    }
  }
  return out;
}

}  // namespace

RouteStatusWriter::RouteStatusWriter(std::shared_ptr<RestClient> client,
                                     std::shared_ptr<prometheus::Registry> registry,
                                     RouteStatusWriterOptions options)
    : client_(std::move(client)), options_(std::move(options)) {
  writes_ = &prometheus::BuildCounter()
                 .Name("weft_k8s_route_status_writes_total")
                 .Help("Route status write-backs by result (ok, unchanged, conflict, error)")
                 .Register(*registry);
}

RouteStatusWriter::~RouteStatusWriter() {
  Stop();
}

void RouteStatusWriter::Start() {
  WEFT_CHECK(!thread_.joinable());
  thread_ = std::thread([this] { Run(); });
}

void RouteStatusWriter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RouteStatusWriter::Update(std::vector<RouteStatus> statuses) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = std::move(statuses);
  }
  cv_.notify_all();
}

void RouteStatusWriter::SetSource(std::function<std::vector<RouteStatus>()> source) {
  std::lock_guard<std::mutex> lock(mu_);
  source_ = std::move(source);
}

void RouteStatusWriter::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    dirty_ = true;
  }
  cv_.notify_all();
}

void RouteStatusWriter::Run() {
  std::vector<RouteStatus> current;
  bool retry = false;
  std::unique_lock<std::mutex> lock(mu_);
  auto ready = [this] { return stop_ || pending_.has_value() || dirty_; };
  while (!stop_) {
    if (retry) {
      cv_.wait_for(lock, options_.retry, ready);
    } else {
      cv_.wait(lock, ready);
    }
    if (stop_) return;
    if (dirty_ && !pending_ && source_) {
      cv_.wait_for(lock, options_.debounce, [this] { return stop_; });
      if (stop_) return;
      dirty_ = false;
      auto source = source_;
      lock.unlock();
      std::vector<RouteStatus> fresh = source();
      lock.lock();
      if (!pending_) pending_ = std::move(fresh);
    }
    dirty_ = false;
    if (pending_) {
      current = std::move(*pending_);
      pending_.reset();
    }
    lock.unlock();
    retry = !Sync(current);
    ++passes_;
    lock.lock();
  }
}

bool RouteStatusWriter::Sync(const std::vector<RouteStatus>& statuses) {
  bool ok = true;
  std::map<std::string, json> wanted;
  std::map<std::string, const RouteStatus*> by_key;
  for (const RouteStatus& s : statuses) {
    const std::string key = absl::StrCat(s.kind, "/", s.ns, "/", s.name);
    wanted[key] = OurEntries(s);
    by_key[key] = &s;
  }
  // Routes weftd wrote for before and no longer has a Service parent of: entries removed.
  for (const auto& [key, entries] : written_) {
    if (!wanted.contains(key)) wanted[key] = json::array();
  }
  for (const auto& [key, ours] : wanted) {
    if (cancel_) return true;
    auto it = written_.find(key);
    if (it != written_.end() && it->second == ours) continue;
    const size_t a = key.find('/'), b = key.find('/', a + 1);
    const std::string result =
        WriteOne(key.substr(0, a), key.substr(a + 1, b - a - 1), key.substr(b + 1), ours);
    writes_->Add({{"result", result}}).Increment();
    if (result == "ok" || result == "unchanged" || result == "gone") {
      if (ours.empty() || result == "gone") {
        written_.erase(key);
      } else {
        written_[key] = ours;
      }
    } else {
      ok = false;
    }
  }
  return ok;
}

std::string RouteStatusWriter::WriteOne(const std::string& kind, const std::string& ns,
                                        const std::string& name, const json& ours) {
  const std::string path = RoutePath(kind, ns, name);
  auto got = client_->Get(path, options_.request_timeout, &cancel_);
  if (!got.ok() || (got->status != 200 && got->status != 404)) {
    LOG_WARN("k8s", "cannot read a route to write its status",
             {{"route", path},
              {"error", got.ok() ? absl::StrCat("HTTP ", got->status) : got.status().ToString()}});
    return "error";
  }
  if (got->status == 404) return "gone";
  json obj = json::parse(got->body, nullptr, false);
  if (!obj.is_object()) return "error";
  json current = json::array();
  if (auto st = obj.find("status"); st != obj.end() && st->is_object()) {
    if (auto p = st->find("parents"); p != st->end() && p->is_array()) current = *p;
  }
  json mine = json::array(), others = json::array();
  for (const json& e : current) (Ours(e) ? mine : others).push_back(e);
  if (WithoutTimes(mine) == ours) return "unchanged";
  const std::string now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromChrono(options_.now()), absl::UTCTimeZone());
  json parents = others;
  for (json& e : Stamped(ours, current, now)) parents.push_back(std::move(e));
  json patch = {{"status", {{"parents", std::move(parents)}}}};
  if (obj.contains("metadata") && obj["metadata"].is_object() &&
      obj["metadata"].contains("resourceVersion")) {
    patch["metadata"] = {{"resourceVersion", obj["metadata"]["resourceVersion"]}};
  }
  auto resp = client_->Patch(absl::StrCat(path, "/status"), patch.dump(),
                             "application/merge-patch+json", options_.request_timeout, &cancel_);
  if (resp.ok() && resp->status == 200) {
    LOG_INFO("k8s", "route status written", {{"route", absl::StrCat(kind, " ", ns, "/", name)}});
    return "ok";
  }
  if (resp.ok() && resp->status == 404) return "gone";
  if (resp.ok() && resp->status == 409) return "conflict";  // changed meanwhile: read again
  LOG_WARN(
      "k8s", "route status write failed; retrying",
      {{"route", path},
       {"error", resp.ok() ? absl::StrCat("HTTP ", resp->status, ": ", resp->body.substr(0, 256))
                           : resp.status().ToString()},
       {"hint", "weftd needs patch on httproutes/status and grpcroutes/status (helm RBAC)"}});
  return "error";
}

}  // namespace weft::cp::k8s
