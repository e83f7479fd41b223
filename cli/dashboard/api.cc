#include "cli/dashboard/api.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/stat.h"

namespace weft::cli::dashboard {
namespace {

using json = nlohmann::json;

constexpr char kMeshLabel[] = "weft.dev/mesh";

const json& Array(const json& doc, const char* key) {
  static const json kEmpty = json::array();
  if (!doc.is_object()) return kEmpty;
  auto it = doc.find(key);
  return it != doc.end() && it->is_array() ? *it : kEmpty;
}

std::string Str(const json& doc, const char* key, const std::string& def = "") {
  if (!doc.is_object()) return def;
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : def;
}

std::string Label(const MetricSample& s, const char* name) {
  auto it = s.labels.find(name);
  return it == s.labels.end() ? "" : it->second;
}

// "NS/WORKLOAD" of a config workload (its canonical metrics name).
std::string WorkloadId(const json& w) {
  return Str(w, "namespace") + "/" + Str(w, "workloadName", Str(w, "name"));
}

bool OptsOut(const json& w) {
  return w.contains("labels") && Str(w["labels"], kMeshLabel) == "disabled";
}

bool Enrolled(const json& w) {
  return Str(w, "protocol") == "HBONE";
}

// The component's stream of `node` in weftd's status (null when it has none).
json Stream(const json& status, const std::string& node, const char* component) {
  for (const json& s : Array(status, "streams")) {
    if (Str(s, "node") == node && Str(s, "component") == component) {
      return {{"connected", s.value("connected", false)},
              {"version_sent", Str(s, "version_sent")},
              {"version_acked", Str(s, "version_acked")},
              {"nacks", s.value("nacks", 0)},
              {"last_nack_error", Str(s, "last_nack_error")}};
    }
  }
  return nullptr;
}

std::vector<std::string> NodeNames(const json& status, const json& config) {
  std::set<std::string> names;
  for (const json& n : Array(status, "nodes")) names.insert(Str(n, "name"));
  for (const json& w : Array(config, "workloads")) {
    if (!Str(w, "node").empty()) names.insert(Str(w, "node"));
  }
  names.erase("");
  return {names.begin(), names.end()};
}

// Why a pod is in the mesh or not, as weftd decides it (controlplane/model: the namespace's
// weft.dev/mesh=enabled, the pod's weft.dev/mesh=disabled), and whether its node captures.
std::string EnrolmentReason(const json& w, const NodeCapture* capture) {
  const std::string ns = Str(w, "namespace");
  if (!Enrolled(w)) {
    if (OptsOut(w)) return "the pod opts out (weft.dev/mesh=disabled)";
    return absl::StrCat("namespace ", ns, " is not labelled weft.dev/mesh=enabled");
  }
  std::string why = absl::StrCat("namespace ", ns, " has weft.dev/mesh=enabled");
  if (capture && capture->mode == "none") {
    absl::StrAppend(&why, "; but node ", Str(w, "node"), " captures nothing (",
                    capture->reason.empty() ? "agent probe" : capture->reason, ")");
  }
  return why;
}

json PodJson(const json& w, const std::string& trust_domain,
             const std::map<std::string, NodeCapture>& capture) {
  const std::string node = Str(w, "node");
  auto cap = capture.find(node);
  const NodeCapture* c = cap == capture.end() ? nullptr : &cap->second;
  const json& addrs = Array(w, "addresses");
  std::string sa = Str(w, "serviceAccount", "default");
  return {{"namespace", Str(w, "namespace")},
          {"name", Str(w, "name")},
          {"workload", Str(w, "workloadName", Str(w, "name"))},
          {"node", node},
          {"ip", addrs.empty() ? "" : addrs[0].get<std::string>()},
          {"addresses", addrs},
          {"identity", absl::StrCat("spiffe://", Str(w, "trustDomain", trust_domain), "/ns/",
                                    Str(w, "namespace"), "/sa/", sa)},
          {"enrolled", Enrolled(w)},
          {"captured", Enrolled(w) && (!c || c->mode != "none")},
          {"reason", EnrolmentReason(w, c)},
          {"phase", Str(w, "phase")},
          {"labels", w.value("labels", json::object())}};
}

}  // namespace

json MergeNodeConfigs(const std::vector<json>& configs) {
  json out = json::object();
  std::map<std::string, std::set<std::string>> seen;  // list -> keys
  for (const json& c : configs) {
    if (!c.is_object()) continue;
    for (const auto& [key, value] : c.items()) {
      if (!value.is_array()) {
        if (!out.contains(key)) out[key] = value;
        continue;
      }
      if (!out.contains(key)) out[key] = json::array();
      for (const json& item : value) {
        std::string id = item.is_object()
                             ? Str(item, "uid", Str(item, "namespace") + "/" + Str(item, "name"))
                             : item.dump();
        if (seen[key].insert(id).second) out[key].push_back(item);
      }
    }
  }
  return out;
}

json OverviewJson(const json& status, const json& config,
                  const std::map<std::string, NodeCapture>& capture) {
  const std::string td = Str(config, "trustDomain", "cluster.local");
  json out = {{"trust_domain", td},
              {"config_version", Str(config, "version")},
              {"source", Str(status, "source")}};
  json nodes = json::array();
  for (const std::string& n : NodeNames(status, config)) {
    auto c = capture.find(n);
    nodes.push_back({{"name", n},
                     {"capture", c == capture.end() ? "" : c->second.mode},
                     {"capture_reason", c == capture.end() ? "" : c->second.reason},
                     {"ztunnel", Stream(status, n, "ztunnel")},
                     {"agent", Stream(status, n, "agent")}});
  }
  out["nodes"] = std::move(nodes);
  std::map<std::string, json> namespaces;
  json pods = json::array();
  for (const json& w : Array(config, "workloads")) {
    json p = PodJson(w, td, capture);
    json& ns = namespaces[Str(w, "namespace")];
    if (ns.is_null()) ns = {{"pods", 0}, {"enrolled_pods", 0}, {"enrolled", false}};
    ns["pods"] = ns["pods"].get<int>() + 1;
    if (Enrolled(w)) ns["enrolled_pods"] = ns["enrolled_pods"].get<int>() + 1;
    // The namespace label is what enrols; a pod that opts out says nothing about it.
    if (Enrolled(w) && !OptsOut(w)) ns["enrolled"] = true;
    pods.push_back(std::move(p));
  }
  out["pods"] = std::move(pods);
  out["namespaces"] = json::array();
  for (auto& [name, ns] : namespaces) {
    ns["name"] = name;
    out["namespaces"].push_back(std::move(ns));
  }
  json services = json::array();
  for (const json& s : Array(config, "services")) {
    json ports = json::array();
    for (const json& p : Array(s, "ports")) {
      std::string proto = Str(p, "appProtocol", Str(p, "name"));
      ports.push_back(absl::StrCat(p.value("port", 0), "->", p.value("targetPort", 0),
                                   proto.empty() ? "" : "/" + proto));
    }
    int ready = 0;
    for (const json& e : Array(s, "endpoints")) ready += e.value("ready", false) ? 1 : 0;
    services.push_back({{"namespace", Str(s, "namespace")},
                        {"name", Str(s, "name")},
                        {"addresses", Array(s, "addresses")},
                        {"ports", std::move(ports)},
                        {"endpoints", Array(s, "endpoints").size()},
                        {"ready_endpoints", ready}});
  }
  out["services"] = std::move(services);
  return out;
}

namespace {

// One edge's counters as one reporter saw them (summed over ztunnels).
struct EdgeCounts {
  std::map<std::string, double> opened_by_security;  // connection_security_policy -> opened
  double opened = 0, closed = 0, denied_conns = 0;
  double requests = 0, denied_requests = 0, errors = 0;
  double bytes = 0;
};

using EdgeKey = std::pair<std::string, std::string>;                     // source id, dest id
using EdgeTable = std::map<std::string, std::map<EdgeKey, EdgeCounts>>;  // reporter -> edges

std::string SourceId(const MetricSample& s) {
  std::string w = Label(s, "source_workload");
  if (w.empty() || w == "unknown") return "unknown";
  return Label(s, "source_workload_namespace") + "/" + w;
}

EdgeTable CollectEdges(const std::vector<MetricSample>& samples) {
  EdgeTable out;
  for (const MetricSample& s : samples) {
    std::string dst = Label(s, "destination_workload");
    if (dst.empty() || dst == "unknown") continue;
    EdgeCounts& e = out[Label(s, "reporter")]
                       [{SourceId(s), Label(s, "destination_workload_namespace") + "/" + dst}];
    if (s.name == "istio_tcp_connections_opened_total") {
      e.opened += s.value;
      e.opened_by_security[Label(s, "connection_security_policy")] += s.value;
    } else if (s.name == "weft_tcp_connection_duration_seconds_count") {
      e.closed += s.value;
      if (Label(s, "response_flags") == "DENY") e.denied_conns += s.value;
    } else if (s.name == "istio_requests_total") {
      e.requests += s.value;
      // ztunnel's own RBAC answers: 403 for HTTP, PERMISSION_DENIED (7) for gRPC.
      const std::string code = Label(s, "response_code");
      if (code == "403" || Label(s, "grpc_response_status") == "7") e.denied_requests += s.value;
      if (code.rfind('5', 0) == 0) e.errors += s.value;
    } else if (s.name == "istio_tcp_sent_bytes_total" ||
               s.name == "istio_tcp_received_bytes_total") {
      e.bytes += s.value;
    }
  }
  return out;
}

EdgeCounts Minus(const EdgeCounts& a, const EdgeCounts* b) {
  if (!b) return a;
  auto sub = [](double x, double y) { return std::max(0.0, x - y); };
  EdgeCounts d = a;
  for (auto& [k, v] : d.opened_by_security) {
    auto it = b->opened_by_security.find(k);
    if (it != b->opened_by_security.end()) v = sub(v, it->second);
  }
  d.opened = sub(a.opened, b->opened);
  d.closed = sub(a.closed, b->closed);
  d.denied_conns = sub(a.denied_conns, b->denied_conns);
  d.requests = sub(a.requests, b->requests);
  d.denied_requests = sub(a.denied_requests, b->denied_requests);
  d.errors = sub(a.errors, b->errors);
  d.bytes = sub(a.bytes, b->bytes);
  return d;
}

// "mutual_tls", "same_node", "plaintext" (Istio's "none") or "mixed": the connections opened in
// the window, else (a quiet edge) all connections the ztunnels counted.
std::pair<std::string, json> Security(const EdgeCounts& window, const EdgeCounts& total) {
  const EdgeCounts& use = window.opened > 0 ? window : total;
  json counts = json::object();
  std::string only;
  int kinds = 0;
  for (const auto& [k, v] : use.opened_by_security) {
    if (v <= 0) continue;
    std::string name = k == "none" || k.empty() ? "plaintext" : k;
    counts[name] = counts.value(name, 0.0) + v;
    if (name != only) ++kinds;
    only = name;
  }
  if (kinds == 0) return {"unknown", counts};
  return {kinds == 1 ? only : "mixed", counts};
}

const EdgeCounts* Find(const EdgeTable& t, const std::string& reporter, const EdgeKey& k) {
  auto r = t.find(reporter);
  if (r == t.end()) return nullptr;
  auto e = r->second.find(k);
  return e == r->second.end() ? nullptr : &e->second;
}

json EdgeJson(const EdgeKey& key, const EdgeTable& now, const EdgeTable& then, double window) {
  // The destination's ztunnel where it saw the edge (it enforces policy, so it alone sees
  // denials), else the caller's.
  std::string reporter = Find(now, "destination", key) ? "destination" : "source";
  const EdgeCounts& total = *Find(now, reporter, key);
  EdgeCounts d = Minus(total, window > 0 ? Find(then, reporter, key) : nullptr);
  // Requests are recorded by whichever side parses HTTP: the caller's for an HTTP Service.
  const EdgeCounts* req_total = &total;
  const EdgeCounts* req_now = &d;
  EdgeCounts req_d;
  const std::string other = reporter == "destination" ? "source" : "destination";
  if (total.requests == 0 && Find(now, other, key)) {
    req_total = Find(now, other, key);
    req_d = Minus(*req_total, window > 0 ? Find(then, other, key) : nullptr);
    req_now = &req_d;
  }
  auto [security, counts] = Security(d, total);
  const double per = window > 0 ? window : 1;
  const bool http = req_total->requests > 0;
  json e = {{"id", key.first + "->" + key.second},
            {"source", key.first},
            {"target", key.second},
            {"reporter", reporter},
            {"security", security},
            {"security_counts", counts},
            {"protocol", http ? "http" : "tcp"},
            {"connections_opened", d.opened},
            {"connections_per_second", window > 0 ? d.opened / per : 0},
            {"requests", req_now->requests},
            {"requests_per_second", window > 0 ? req_now->requests / per : 0},
            {"denied", d.denied_conns + req_now->denied_requests},
            {"denied_total", total.denied_conns + req_total->denied_requests},
            {"errors", req_now->errors},
            {"bytes_per_second", window > 0 ? d.bytes / per : 0},
            {"active", d.opened > 0 || req_now->requests > 0 || d.bytes > 0}};
  double rate =
      http ? e["requests_per_second"].get<double>() : e["connections_per_second"].get<double>();
  e["rate"] = rate;
  e["rate_label"] = absl::StrFormat(http ? "%.1f rps" : "%.1f conn/s", rate);
  return e;
}

}  // namespace

json GraphJson(const std::vector<MetricSample>& before, const std::vector<MetricSample>& after,
               double window_seconds, const json& config) {
  const EdgeTable now = CollectEdges(after), then = CollectEdges(before);
  std::map<std::string, json> nodes;
  for (const json& w : Array(config, "workloads")) {
    std::string id = WorkloadId(w);
    json& n = nodes[id];
    if (n.is_null()) {
      n = {{"id", id},
           {"namespace", Str(w, "namespace")},
           {"workload", Str(w, "workloadName", Str(w, "name"))},
           {"kind", "workload"},
           {"pods", 0},
           {"enrolled_pods", 0}};
    }
    n["pods"] = n["pods"].get<int>() + 1;
    if (Enrolled(w)) n["enrolled_pods"] = n["enrolled_pods"].get<int>() + 1;
  }
  std::set<EdgeKey> keys;
  for (const auto& [reporter, edges] : now) {
    for (const auto& [k, c] : edges) keys.insert(k);
  }
  json edges = json::array();
  for (const EdgeKey& k : keys) {
    for (const std::string& id : {k.first, k.second}) {
      if (nodes.count(id)) continue;
      auto slash = id.find('/');
      nodes[id] = {{"id", id},
                   {"namespace", slash == std::string::npos ? "" : id.substr(0, slash)},
                   {"workload", slash == std::string::npos ? id : id.substr(slash + 1)},
                   {"kind", id == "unknown" ? "unknown" : "workload"},
                   {"pods", 0},
                   {"enrolled_pods", 0}};
    }
    edges.push_back(EdgeJson(k, now, then, window_seconds));
  }
  json out = {{"window_seconds", window_seconds}, {"nodes", json::array()}, {"edges", edges}};
  for (auto& [id, n] : nodes) {
    const int pods = n["pods"].get<int>(), enrolled = n["enrolled_pods"].get<int>();
    n["enrolled"] = pods > 0 && enrolled == pods;
    n["meshed"] = enrolled == 0 ? "no" : (enrolled == pods ? "yes" : "partly");
    out["nodes"].push_back(std::move(n));
  }
  return out;
}

json SignalsJson(const std::vector<MetricSample>& before, const std::vector<MetricSample>& after,
                 double window_seconds) {
  json out = {{"window_seconds", window_seconds},
              {"workloads", json::array()},
              {"edges", json::array()},
              {"totals", json::array()}};
  for (const WorkloadStat& s : ComputeStats(before, after, window_seconds)) {
    out["workloads"].push_back(StatJson(s, window_seconds));
  }
  for (const WorkloadStat& s : ComputeStats({}, after, 0)) {
    out["totals"].push_back(StatJson(s, 0));
  }
  // Per edge: the destination's stats over only one source's samples.
  std::set<std::string> sources;
  for (const MetricSample& s : after) sources.insert(SourceId(s));
  for (const std::string& src : sources) {
    auto only = [&](const std::vector<MetricSample>& in) {
      std::vector<MetricSample> out;
      for (const MetricSample& s : in) {
        if (SourceId(s) == src) out.push_back(s);
      }
      return out;
    };
    for (const WorkloadStat& s : ComputeStats(only(before), only(after), window_seconds)) {
      json e = StatJson(s, window_seconds);
      e["source"] = src;
      e["target"] = s.ns + "/" + s.workload;
      e["id"] = src + "->" + s.ns + "/" + s.workload;
      out["edges"].push_back(std::move(e));
    }
  }
  return out;
}

namespace {

bool SelectorMatches(const json& policy, const json& w) {
  const json sel = policy.value("selector", json::object()).value("matchLabels", json::object());
  const json labels = w.value("labels", json::object());
  for (const auto& [k, v] : sel.items()) {
    if (!labels.contains(k) || labels[k] != v) return false;
  }
  return true;
}

// Namespaced policies with an optional selector: the workload's namespace, or the root
// namespace (mesh-wide).
bool AppliesTo(const json& policy, const json& w, const std::string& root_ns) {
  const std::string ns = Str(policy, "namespace");
  return (ns == Str(w, "namespace") || ns == root_ns) && SelectorMatches(policy, w);
}

// Workload uids behind each "ns/name" Service.
std::map<std::string, std::set<std::string>> ServiceEndpoints(const json& config) {
  std::map<std::string, std::set<std::string>> out;
  for (const json& s : Array(config, "services")) {
    auto& uids = out[Str(s, "namespace") + "/" + Str(s, "name")];
    for (const json& e : Array(s, "endpoints")) uids.insert(Str(e, "workloadUid"));
  }
  return out;
}

json PoliciesByWorkload(const json& config) {
  const std::string root_ns = Str(config, "rootNamespace", "weft-system");
  const auto endpoints = ServiceEndpoints(config);
  auto serves = [&](const std::string& service, const std::string& uid) {
    auto it = endpoints.find(service);
    return it != endpoints.end() && it->second.count(uid) > 0;
  };
  json out = json::object();
  for (const json& w : Array(config, "workloads")) {
    const std::string uid = Str(w, "uid");
    json list = json::array();
    auto add = [&](const char* kind, const json& p, std::string detail) {
      list.push_back({{"kind", kind},
                      {"namespace", Str(p, "namespace")},
                      {"name", Str(p, "name")},
                      {"detail", std::move(detail)}});
    };
    for (const json& p : Array(config, "authorizationPolicies")) {
      if (!AppliesTo(p, w, root_ns)) continue;
      add("AuthorizationPolicy", p,
          absl::StrCat(Str(p, "action", "ALLOW"), p.value("dryRun", false) ? " (dry run)" : "",
                       ", ", Array(p, "rules").size(), " rule(s)"));
    }
    for (const json& p : Array(config, "peerAuthentications")) {
      if (AppliesTo(p, w, root_ns)) {
        add("PeerAuthentication", p,
            "mTLS " + Str(p.value("mtls", json::object()), "mode", "UNSET"));
      }
    }
    for (const json& p : Array(config, "networkPolicies")) {
      const json& uids = Array(p, "workloadUids");
      if (std::find(uids.begin(), uids.end(), uid) != uids.end()) {
        add("NetworkPolicy", p, absl::StrCat(Array(p, "ingress").size(), " ingress rule(s)"));
      }
    }
    for (const json& p : Array(config, "httpRoutes")) {
      if (serves(Str(p, "parentService"), uid)) {
        add(Str(p, "kind", "HTTP_ROUTE") == "GRPC_ROUTE" ? "GRPCRoute" : "HTTPRoute", p,
            "parent " + Str(p, "parentService"));
      }
    }
    for (const json& p : Array(config, "trafficPolicies")) {
      if (serves(Str(p, "targetService"), uid)) {
        add("TrafficPolicy", p, "target " + Str(p, "targetService"));
      }
    }
    out[Str(w, "namespace") + "/" + Str(w, "name")] = std::move(list);
  }
  return out;
}

json CertificateJson(const json& c, absl::Time now) {
  absl::Time before, after;
  std::string err;
  json out = c;
  if (!absl::ParseTime(absl::RFC3339_full, Str(c, "not_after"), &after, &err) ||
      !absl::ParseTime(absl::RFC3339_full, Str(c, "not_before"), &before, &err)) {
    out["state"] = "unknown";
    return out;
  }
  out["seconds_left"] = absl::ToDoubleSeconds(after - now);
  // Nodes renew at half-life: past 80% a node has failed to renew for a while.
  const bool overdue = now > before + (after - before) * 0.8;
  out["state"] = now >= after ? "expired" : (overdue ? "renew_overdue" : "ok");
  return out;
}

}  // namespace

json HealthJson(const json& status, const json& config, absl::Time now) {
  json nodes = json::array();
  json ca = status.value("ca", json::object());
  for (const std::string& n : NodeNames(status, config)) {
    json certs = json::array();
    for (const json& c : Array(ca, "certificates")) {
      if (Str(c, "node") == n) certs.push_back(CertificateJson(c, now));
    }
    nodes.push_back({{"name", n},
                     {"ztunnel", Stream(status, n, "ztunnel")},
                     {"agent", Stream(status, n, "agent")},
                     {"certificates", std::move(certs)}});
  }
  ca.erase("certificates");
  return {{"config_version", Str(config, "version")},
          {"model_generation", status.value("model_generation", 0)},
          {"nodes", std::move(nodes)},
          {"rejected", Array(status, "rejected")},
          {"file_errors", Array(status, "file_errors")},
          {"ca", std::move(ca)},
          {"policies", PoliciesByWorkload(config)}};
}

json ErrorJson(const absl::Status& st, const std::string& source) {
  std::string hint;
  if (source == "weftd") {
    hint = "is the mesh up? (weftctl up; weftctl status says what weftd sees)";
  } else if (source == "prometheus") {
    hint = "check --prometheus (the URL of a Prometheus server that scrapes the ztunnels)";
  } else if (source == "metrics") {
    hint = "are the ztunnels running? (weftctl stat reads the same endpoints)";
  }
  return {{"error", std::string(st.message())},
          {"code", absl::StatusCodeToString(st.code())},
          {"source", source},
          {"hint", hint}};
}

}  // namespace weft::cli::dashboard
