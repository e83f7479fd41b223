#include "cli/dashboard/api.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

// Traffic from a source workload, addressed to a Service (svc: "" when none is known: a call to
// a pod's own address), to the destination workload that served it. Ids as the graph's nodes.
struct Flow {
  std::string src, svc, dst;
  bool operator<(const Flow& o) const {
    return std::tie(src, svc, dst) < std::tie(o.src, o.svc, o.dst);
  }
};
using EdgeTable = std::map<std::string, std::map<Flow, EdgeCounts>>;  // reporter -> flows

std::string SourceId(const MetricSample& s) {
  std::string w = Label(s, "source_workload");
  if (w.empty() || w == "unknown") return "unknown";
  return Label(s, "source_workload_namespace") + "/" + w;
}

std::string DestinationId(const MetricSample& s) {
  std::string dst = Label(s, "destination_workload");
  if (dst.empty() || dst == "unknown") return "";
  return Label(s, "destination_workload_namespace") + "/" + dst;
}

EdgeCounts& Add(EdgeCounts& into, const EdgeCounts& c) {
  for (const auto& [k, v] : c.opened_by_security) into.opened_by_security[k] += v;
  into.opened += c.opened;
  into.closed += c.closed;
  into.denied_conns += c.denied_conns;
  into.requests += c.requests;
  into.denied_requests += c.denied_requests;
  into.errors += c.errors;
  into.bytes += c.bytes;
  return into;
}

EdgeTable CollectEdges(const std::vector<MetricSample>& samples, const ServiceNames& services) {
  EdgeTable out;
  for (const MetricSample& s : samples) {
    std::string dst = DestinationId(s);
    if (dst.empty()) continue;
    EdgeCounts& e = out[Label(s, "reporter")][{SourceId(s), services.Of(s), dst}];
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

const EdgeCounts* Find(const EdgeTable& t, const std::string& reporter, const Flow& k) {
  auto r = t.find(reporter);
  if (r == t.end()) return nullptr;
  auto e = r->second.find(k);
  return e == r->second.end() ? nullptr : &e->second;
}

// One flow's counters, each counted once: connections and bytes from the destination's ztunnel
// where it saw the flow (it enforces policy, so it alone sees denials), else the caller's;
// requests from whichever side parsed HTTP (the caller's for a Service declared HTTP). Edges sum
// the views of their flows.
struct EdgeView {
  EdgeCounts total, window, req_total, req_window;
  std::set<std::string> reporters;
};

EdgeView ViewOf(const Flow& f, const EdgeTable& now, const EdgeTable& then, double window) {
  EdgeView v;
  const std::string reporter = Find(now, "destination", f) ? "destination" : "source";
  v.reporters.insert(reporter);
  v.total = *Find(now, reporter, f);
  v.window = Minus(v.total, window > 0 ? Find(then, reporter, f) : nullptr);
  v.req_total = v.total;
  v.req_window = v.window;
  const std::string other = reporter == "destination" ? "source" : "destination";
  if (v.total.requests == 0 && Find(now, other, f)) {
    v.req_total = *Find(now, other, f);
    v.req_window = Minus(v.req_total, window > 0 ? Find(then, other, f) : nullptr);
  }
  return v;
}

void Add(EdgeView& into, const EdgeView& v) {
  Add(into.total, v.total);
  Add(into.window, v.window);
  Add(into.req_total, v.req_total);
  Add(into.req_window, v.req_window);
  into.reporters.insert(v.reporters.begin(), v.reporters.end());
}

json EdgeJson(const std::string& source, const std::string& target, const std::string& kind,
              const EdgeView& v, double window) {
  const EdgeCounts &total = v.total, &d = v.window;
  auto [security, counts] = Security(d, total);
  const double per = window > 0 ? window : 1;
  const bool http = v.req_total.requests > 0;
  json e = {{"id", source + "->" + target},
            {"source", source},
            {"target", target},
            {"kind", kind},
            {"reporter", v.reporters.size() == 1 ? *v.reporters.begin() : "both"},
            {"security", security},
            {"security_counts", counts},
            {"protocol", http ? "http" : "tcp"},
            {"connections_opened", d.opened},
            {"connections_per_second", window > 0 ? d.opened / per : 0},
            {"requests", v.req_window.requests},
            {"requests_per_second", window > 0 ? v.req_window.requests / per : 0},
            {"denied", d.denied_conns + v.req_window.denied_requests},
            {"denied_total", total.denied_conns + v.req_total.denied_requests},
            {"errors", v.req_window.errors},
            {"bytes_per_second", window > 0 ? d.bytes / per : 0},
            {"active", d.opened > 0 || v.req_window.requests > 0 || d.bytes > 0}};
  double rate =
      http ? e["requests_per_second"].get<double>() : e["connections_per_second"].get<double>();
  e["rate"] = rate;
  e["rate_label"] = absl::StrFormat(http ? "%.1f rps" : "%.1f conn/s", rate);
  return e;
}

json WorkloadNode(const std::string& id, const std::string& ns, const std::string& workload,
                  const char* kind) {
  return {{"id", id},     {"namespace", ns}, {"workload", workload},
          {"kind", kind}, {"pods", 0},       {"enrolled_pods", 0}};
}

// A Service as a node: its endpoints stand for its pods (enrolled when their workload is).
json ServiceNode(const std::string& id, const json* svc, const std::map<std::string, bool>& uids) {
  const std::string ref = id.substr(std::strlen(kServicePrefix));  // "NS/NAME"
  const auto slash = ref.find('/');
  const std::string ns = ref.substr(0, slash), name = ref.substr(slash + 1);
  json n = {{"id", id},
            {"kind", "service"},
            {"namespace", ns},
            {"name", name},
            {"workload", name},
            {"label", name + "." + ns},
            {"hostname", svc ? Str(*svc, "hostname") : ""},
            {"in_config", svc != nullptr},
            {"pods", 0},
            {"enrolled_pods", 0}};
  if (!svc) return n;
  for (const json& e : Array(*svc, "endpoints")) {
    auto it = uids.find(Str(e, "workloadUid"));
    n["pods"] = n["pods"].get<int>() + 1;
    if (it != uids.end() && it->second) n["enrolled_pods"] = n["enrolled_pods"].get<int>() + 1;
  }
  return n;
}

// The nodes every workload and Service of `config` gives (traffic adds the others).
std::map<std::string, json> ConfigNodes(const json& config) {
  std::map<std::string, json> nodes;
  std::map<std::string, bool> enrolled_uids;
  for (const json& w : Array(config, "workloads")) {
    enrolled_uids[Str(w, "uid")] = Enrolled(w);
    std::string id = WorkloadId(w);
    json& n = nodes[id];
    if (n.is_null()) {
      n = WorkloadNode(id, Str(w, "namespace"), Str(w, "workloadName", Str(w, "name")), "workload");
    }
    n["pods"] = n["pods"].get<int>() + 1;
    if (Enrolled(w)) n["enrolled_pods"] = n["enrolled_pods"].get<int>() + 1;
  }
  for (const json& s : Array(config, "services")) {
    std::string id = ServiceNames::Id(Str(s, "namespace"), Str(s, "name"));
    nodes[id] = ServiceNode(id, &s, enrolled_uids);
  }
  return nodes;
}

}  // namespace

std::string ServiceNames::Id(const std::string& ns, const std::string& name) {
  return absl::StrCat(kServicePrefix, ns, "/", name);
}

ServiceNames::ServiceNames(const std::vector<MetricSample>& samples, const json& config) {
  for (const json& s : Array(config, "services")) {
    if (!Str(s, "hostname").empty())
      by_host_[Str(s, "hostname")] = Id(Str(s, "namespace"), Str(s, "name"));
  }
  for (const MetricSample& s : samples) {
    const std::string host = Label(s, "destination_service"),
                      name = Label(s, "destination_service_name"),
                      ns = Label(s, "destination_service_namespace");
    if (host.empty() || host == "unknown" || name.empty() || name == "unknown" || ns.empty() ||
        ns == "unknown") {
      continue;
    }
    by_host_.emplace(host, Id(ns, name));
  }
}

std::string ServiceNames::Of(const MetricSample& s) const {
  const std::string host = Label(s, "destination_service");
  if (host.empty() || host == "unknown") return "";
  if (auto it = by_host_.find(host); it != by_host_.end()) return it->second;
  // A host no sample or config names: Kubernetes' NAME.NAMESPACE[.svc.DOMAIN].
  std::vector<std::string> parts = absl::StrSplit(host, '.');
  return parts.size() >= 2 ? Id(parts[1], parts[0]) : "";
}

json GraphJson(const std::vector<MetricSample>& before, const std::vector<MetricSample>& after,
               double window_seconds, const json& config) {
  const ServiceNames services(after, config);
  const EdgeTable now = CollectEdges(after, services), then = CollectEdges(before, services);
  std::map<std::string, json> nodes = ConfigNodes(config);
  std::set<Flow> flows;
  for (const auto& [reporter, by_flow] : now) {
    for (const auto& [f, c] : by_flow) flows.insert(f);
  }
  // Without Service nodes: source -> destination workload. With them: source -> Service ->
  // destination workload, and source -> destination for calls addressed to no Service.
  using Key = std::tuple<std::string, std::string, std::string>;  // source, target, kind
  std::map<Key, EdgeView> edges, service_edges;
  for (const Flow& f : flows) {
    for (const std::string& id : {f.src, f.dst}) {
      if (nodes.count(id)) continue;
      auto slash = id.find('/');
      nodes[id] = WorkloadNode(id, slash == std::string::npos ? "" : id.substr(0, slash),
                               slash == std::string::npos ? id : id.substr(slash + 1),
                               id == "unknown" ? "unknown" : "workload");
    }
    if (!f.svc.empty() && !nodes.count(f.svc)) nodes[f.svc] = ServiceNode(f.svc, nullptr, {});
    const EdgeView v = ViewOf(f, now, then, window_seconds);
    Add(edges[{f.src, f.dst, "workload"}], v);
    if (f.svc.empty()) {
      Add(service_edges[{f.src, f.dst, "workload"}], v);
    } else {
      Add(service_edges[{f.src, f.svc, "to_service"}], v);
      Add(service_edges[{f.svc, f.dst, "from_service"}], v);
    }
  }
  auto list = [&](const std::map<Key, EdgeView>& in) {
    json out = json::array();
    for (const auto& [k, v] : in) {
      out.push_back(EdgeJson(std::get<0>(k), std::get<1>(k), std::get<2>(k), v, window_seconds));
    }
    return out;
  };
  json out = {{"window_seconds", window_seconds},
              {"nodes", json::array()},
              {"edges", list(edges)},
              {"service_edges", list(service_edges)}};
  for (auto& [id, n] : nodes) {
    const int pods = n["pods"].get<int>(), enrolled = n["enrolled_pods"].get<int>();
    n["enrolled"] = pods > 0 && enrolled == pods;
    n["meshed"] = enrolled == 0 ? "no" : (enrolled == pods ? "yes" : "partly");
    out["nodes"].push_back(std::move(n));
  }
  return out;
}

namespace {

using Readings = std::pair<std::vector<MetricSample>, std::vector<MetricSample>>;  // before, after

// The samples of both readings per `key(sample)` ("" leaves a sample out).
template <typename KeyFn>
std::map<std::string, Readings> GroupBy(const std::vector<MetricSample>& before,
                                        const std::vector<MetricSample>& after, KeyFn key) {
  std::map<std::string, Readings> out;
  for (const MetricSample& s : before) {
    if (std::string k = key(s); !k.empty()) out[k].first.push_back(s);
  }
  for (const MetricSample& s : after) {
    if (std::string k = key(s); !k.empty()) out[k].second.push_back(s);
  }
  return out;
}

bool IsRequestSample(const MetricSample& s) {
  return absl::StartsWith(s.name, "istio_request");
}

// Which reporter's samples count for each flow, as ViewOf chooses for the graph: for connections
// the destination's ztunnel where it saw the flow, else the caller's; for requests whichever
// side recorded them, the destination's first.
struct Chosen {
  std::map<Flow, std::string> conn, req;
};

Chosen Choose(const std::vector<MetricSample>& after, const ServiceNames& names) {
  std::map<Flow, std::set<std::string>> conn, req;
  for (const MetricSample& s : after) {
    const std::string dst = DestinationId(s);
    if (dst.empty()) continue;
    const Flow f{SourceId(s), names.Of(s), dst};
    if (!IsRequestSample(s)) {
      conn[f].insert(Label(s, "reporter"));
    } else if (s.value > 0) {
      req[f].insert(Label(s, "reporter"));
    }
  }
  Chosen c;
  for (const auto& [f, r] : conn) c.conn[f] = r.count("destination") ? "destination" : "source";
  for (const auto& [f, r] : req) c.req[f] = r.count("destination") ? "destination" : "source";
  return c;
}

// The samples of traffic addressed to a Service, each flow's counted once (Chosen), relabelled
// so that ComputeStats reads the Service as the destination workload.
std::vector<MetricSample> AsServices(const std::vector<MetricSample>& in, const Chosen& chosen,
                                     const ServiceNames& names) {
  std::vector<MetricSample> out;
  for (const MetricSample& s : in) {
    const std::string dst = DestinationId(s);
    if (dst.empty()) continue;
    const Flow f{SourceId(s), names.Of(s), dst};
    if (f.svc.empty()) continue;
    const auto& pick = IsRequestSample(s) ? chosen.req : chosen.conn;
    auto it = pick.find(f);
    if (it == pick.end() || it->second != Label(s, "reporter")) continue;
    const std::string ref = f.svc.substr(std::strlen(kServicePrefix));
    const auto slash = ref.find('/');
    MetricSample r = s;
    r.labels["destination_workload_namespace"] = ref.substr(0, slash);
    r.labels["destination_workload"] = ref.substr(slash + 1);
    r.labels["reporter"] = "destination";
    out.push_back(std::move(r));
  }
  return out;
}

// Each destination's stats in `r` as an edge from `source` (to the Service when `services`).
void AddEdgeStats(json& list, const std::string& source, const Readings& r, double window,
                  const char* kind, bool services) {
  for (const WorkloadStat& s : ComputeStats(r.first, r.second, window)) {
    json e = StatJson(s, window);
    const std::string target =
        services ? ServiceNames::Id(s.ns, s.workload) : s.ns + "/" + s.workload;
    e["source"] = source;
    e["target"] = target;
    e["id"] = source + "->" + target;
    e["kind"] = kind;
    list.push_back(std::move(e));
  }
}

json ServiceStats(const std::vector<WorkloadStat>& stats, double window) {
  json out = json::array();
  for (const WorkloadStat& s : stats) {
    json j = StatJson(s, window);
    j["id"] = ServiceNames::Id(s.ns, s.workload);
    j["service"] = s.workload;
    j["kind"] = "service";
    out.push_back(std::move(j));
  }
  return out;
}

// The Services' golden signals ("services", "service_totals") and the edges of the graph with
// Service nodes ("service_edges": source -> Service, Service -> workload, and source ->
// workload for calls addressed to no Service).
void AddServiceSignals(json& out, const std::vector<MetricSample>& before,
                       const std::vector<MetricSample>& after, double window,
                       const ServiceNames& names) {
  const Chosen chosen = Choose(after, names);
  const std::vector<MetricSample> sb = AsServices(before, chosen, names),
                                  sa = AsServices(after, chosen, names);
  out["services"] = ServiceStats(ComputeStats(sb, sa, window), window);
  out["service_totals"] = ServiceStats(ComputeStats({}, sa, 0), 0);
  json edges = json::array();
  for (const auto& [src, r] : GroupBy(sb, sa, SourceId)) {
    AddEdgeStats(edges, src, r, window, "to_service", true);
  }
  for (const auto& [svc, r] :
       GroupBy(before, after, [&](const MetricSample& s) { return names.Of(s); })) {
    AddEdgeStats(edges, svc, r, window, "from_service", false);
  }
  for (const auto& [src, r] : GroupBy(before, after, [&](const MetricSample& s) {
         return names.Of(s).empty() ? SourceId(s) : "";
       })) {
    AddEdgeStats(edges, src, r, window, "workload", false);
  }
  out["service_edges"] = std::move(edges);
}

}  // namespace

json SignalsJson(const std::vector<MetricSample>& before, const std::vector<MetricSample>& after,
                 double window_seconds, const json& config) {
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
  for (const auto& [src, r] : GroupBy(before, after, SourceId)) {
    AddEdgeStats(out["edges"], src, r, window_seconds, "workload", false);
  }
  AddServiceSignals(out, before, after, window_seconds, ServiceNames(after, config));
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

// The routes (parentService) and TrafficPolicies (targetService) of each Service, by "NS/NAME".
json PoliciesByService(const json& config) {
  json out = json::object();
  for (const json& s : Array(config, "services")) {
    out[Str(s, "namespace") + "/" + Str(s, "name")] = json::array();
  }
  auto add = [&](const std::string& service, std::string kind, const json& p, std::string detail) {
    if (service.empty()) return;
    if (!out.contains(service)) out[service] = json::array();
    out[service].push_back({{"kind", std::move(kind)},
                            {"namespace", Str(p, "namespace")},
                            {"name", Str(p, "name")},
                            {"detail", std::move(detail)}});
  };
  for (const json& p : Array(config, "httpRoutes")) {
    // A route in the Service's own namespace applies to every client (a producer route), one
    // elsewhere only to the clients of its namespace.
    const std::string parent = Str(p, "parentService"), ns = Str(p, "namespace");
    add(parent, Str(p, "kind", "HTTP_ROUTE") == "GRPC_ROUTE" ? "GRPCRoute" : "HTTPRoute", p,
        absl::StrCat(
            Array(p, "rules").size(), " rule(s), ",
            absl::StartsWith(parent, ns + "/") ? "every client" : "clients in namespace " + ns));
  }
  for (const json& p : Array(config, "trafficPolicies")) {
    std::vector<std::string> what;
    for (const char* k : {"retries", "connectionPool", "outlierDetection", "faultInjection"}) {
      if (p.contains(k)) what.push_back(k);
    }
    add(Str(p, "targetService"), "TrafficPolicy", p,
        what.empty() ? "no settings" : absl::StrJoin(what, ", "));
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
          {"policies", PoliciesByWorkload(config)},
          {"service_policies", PoliciesByService(config)}};
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
