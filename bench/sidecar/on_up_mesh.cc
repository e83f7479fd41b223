#include "bench/sidecar/on_up_mesh.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/up/kube_proxy.h"
#include "cli/up/plan.h"
#include "common/status.h"

namespace weft::bench::sidecar {
namespace {

using json = nlohmann::json;

std::string StrField(const json& o, const char* key, const std::string& def = "") {
  if (!o.is_object()) return def;
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : def;
}

std::string NsOf(const json& o) {
  return o.is_object() && o.contains("metadata") ? StrField(o["metadata"], "namespace", "default")
                                                 : "default";
}
std::string NameOf(const json& o) {
  return o.is_object() && o.contains("metadata") ? StrField(o["metadata"], "name") : "";
}

// The TCP containerPorts of every container of a Pod object.
std::vector<uint16_t> ContainerTcpPorts(const json& pod) {
  std::set<uint16_t> ports;
  const json& spec = pod.contains("spec") ? pod["spec"] : json();
  if (!spec.is_object() || !spec.contains("containers") || !spec["containers"].is_array())
    return {};
  for (const json& c : spec["containers"]) {
    if (!c.is_object() || !c.contains("ports") || !c["ports"].is_array()) continue;
    for (const json& p : c["ports"]) {
      if (!p.is_object() || !p.contains("containerPort") || !p["containerPort"].is_number_integer())
        continue;
      int port = p["containerPort"].get<int>();
      if (StrField(p, "protocol", "TCP") == "TCP" && port > 0 && port < 65536)
        ports.insert(static_cast<uint16_t>(port));
    }
  }
  return {ports.begin(), ports.end()};
}

bool NamePrefix(std::string_view name, std::string_view prefix) {
  return name == prefix ||
         (name.starts_with(prefix) && name.size() > prefix.size() && name[prefix.size()] == '-');
}

// (namespace, service name, port) -> what the port speaks, for every Service object.
std::map<std::tuple<std::string, std::string, int>, AppProtocol> ServicePortProtocols(
    const std::vector<json>& objects) {
  std::map<std::tuple<std::string, std::string, int>, AppProtocol> out;
  for (const json& o : objects) {
    if (!o.is_object() || o.value("kind", "") != "Service" || !o.contains("spec")) continue;
    const json& ports = o["spec"].is_object() ? o["spec"].value("ports", json()) : json();
    if (!ports.is_array()) continue;
    for (const json& p : ports) {
      if (p.is_object() && p.contains("port") && p["port"].is_number_integer())
        out[{NsOf(o), NameOf(o), p["port"].get<int>()}] = PortProtocol(p);
    }
  }
  return out;
}

}  // namespace

AppProtocol PortProtocol(const json& port) {
  const std::string app = StrField(port, "appProtocol");
  if (!app.empty()) {
    if (app == "http" || app == "grpc-web") return AppProtocol::kHttp;
    if (app == "http2" || app == "h2c" || app == "kubernetes.io/h2c" || app == "grpc")
      return AppProtocol::kHttp2;
    return AppProtocol::kTcp;
  }
  const std::string name = StrField(port, "name");
  if (NamePrefix(name, "grpc-web")) return AppProtocol::kHttp;
  if (NamePrefix(name, "http2") || NamePrefix(name, "grpc")) return AppProtocol::kHttp2;
  if (NamePrefix(name, "http")) return AppProtocol::kHttp;
  return AppProtocol::kTcp;
}

std::string SidecarPodName(const std::string& ns, const std::string& name) {
  return absl::StrCat(ns, "/", name);
}

std::vector<std::string> SidecarPodNames(const up::MeshState& mesh,
                                         const std::vector<std::string>& namespaces) {
  const std::set<std::string> wanted(namespaces.begin(), namespaces.end());
  std::vector<std::string> names;
  for (const up::PodState& p : mesh.pods) {
    if (wanted.contains(p.ns)) names.push_back(SidecarPodName(p.ns, p.name));
  }
  return names;
}

absl::StatusOr<UpMeshPlan> PlanOnUpMesh(const up::MeshState& mesh,
                                        const std::vector<std::string>& namespaces) {
  if (namespaces.empty()) {
    return absl::InvalidArgumentError("sidecar mesh: name at least one namespace to attach to");
  }
  const std::set<std::string> wanted(namespaces.begin(), namespaces.end());
  // The runtime manifests are what the mesh runs now (after apply/delete); the source only
  // describes the mesh as it was brought up.
  std::string dir = mesh.dir + "/manifests";
  std::error_code ec;
  if (mesh.dir.empty() || !std::filesystem::is_directory(dir, ec)) dir = mesh.source;
  if (dir.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sidecar mesh: mesh '", mesh.name,
        "' has neither a runtime manifest dir nor a source (is it a `weftctl up` state?)"));
  }
  WEFT_ASSIGN_OR_RETURN(auto loaded, up::LoadManifests(dir));

  std::map<std::pair<std::string, std::string>, const up::PodState*> state_pods;
  for (const up::PodState& p : mesh.pods) state_pods[{p.ns, p.name}] = &p;

  // The objects as kube-proxy sees them: pods with the state's addresses, as the runtime
  // manifests already have them (the source lacks status).
  std::vector<json> objects;
  std::map<std::pair<std::string, std::string>, const json*> pod_objects;
  for (auto& m : loaded) {
    json o = std::move(m.object);
    if (o.is_object() && o.value("kind", "") == "Pod") {
      auto it = state_pods.find({NsOf(o), NameOf(o)});
      if (it == state_pods.end()) continue;  // not running in this mesh
      o["metadata"]["namespace"] = it->first.first;
      o["status"]["phase"] = "Running";
      o["status"]["podIP"] = it->second->ip;
    }
    objects.push_back(std::move(o));
  }
  for (const json& o : objects) {
    if (o.is_object() && o.value("kind", "") == "Pod") pod_objects[{NsOf(o), NameOf(o)}] = &o;
  }

  UpMeshPlan plan;
  std::map<std::string, std::string> by_ip;  // pod IPv4 -> sidecar name (wanted namespaces)
  std::set<std::string> seen_ns;
  for (const up::PodState& p : mesh.pods) {
    if (!wanted.contains(p.ns)) continue;
    seen_ns.insert(p.ns);
    const std::string name = SidecarPodName(p.ns, p.name);
    auto ip = IpAddr::Parse(p.ip);
    if (!ip.ok() || !ip->IsV4()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sidecar mesh: pod ", name, " has no IPv4 address in the state ('", p.ip, "')"));
    }
    if (p.netns.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("sidecar mesh: pod ", name, " has no netns in the state"));
    }
    plan.placements.push_back({name, *ip, p.netns});
    by_ip[ip->ToString()] = name;
    SidecarPod sp;
    sp.name = name;
    sp.ns = p.ns;
    sp.service_account = "default";
    auto obj = pod_objects.find({p.ns, p.name});
    if (obj != pod_objects.end()) {
      const json& spec = (*obj->second)["spec"];
      sp.ports = ContainerTcpPorts(*obj->second);
      sp.service_account =
          StrField(spec, "serviceAccountName", StrField(spec, "serviceAccount", "default"));
      if (sp.service_account.empty()) sp.service_account = "default";
    }
    plan.pods.push_back(std::move(sp));
  }
  std::vector<std::string> missing;
  for (const std::string& ns : wanted) {
    if (!seen_ns.contains(ns)) missing.push_back(ns);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: mesh '", mesh.name,
                                                   "' has no pod in namespace(s) ",
                                                   absl::StrJoin(missing, ", ")));
  }

  const auto protocols = ServicePortProtocols(objects);
  for (const up::ServiceRule& r : up::ComputeServiceRules(
           objects, [](const std::string&, const std::string&) { return true; })) {
    if (!wanted.contains(r.ns) || r.protocol != "TCP") continue;
    SidecarService s;
    s.name = absl::StrCat(r.ns, "/", r.name, ":", r.port);
    s.address = r.vip;
    s.port = r.port;
    if (auto p = protocols.find({r.ns, r.name, r.port}); p != protocols.end())
      s.protocol = p->second;
    for (const up::ServiceEndpoint& e : r.endpoints) {
      auto it = by_ip.find(e.ip.ToString());
      if (it == by_ip.end()) continue;
      s.pods.push_back(it->second);
      s.target_ports.push_back(e.port);
    }
    if (!s.pods.empty()) plan.services.push_back(std::move(s));
  }
  // A numeric targetPort need not be declared as a containerPort; the backend's inbound
  // sidecar must still forward it (and capture plain connections to it).
  std::map<std::string, SidecarPod*> by_name;
  for (SidecarPod& p : plan.pods) by_name[p.name] = &p;
  for (const SidecarService& s : plan.services) {
    for (size_t i = 0; i < s.pods.size(); ++i) {
      // The backend's inbound sidecar parses what the Service declares (HTTP wins when two
      // Services declare the same target port differently).
      AppProtocol& proto = by_name.at(s.pods[i])->port_protocols[s.target_ports[i]];
      if (s.protocol != AppProtocol::kTcp) proto = s.protocol;
      std::vector<uint16_t>& ports = by_name.at(s.pods[i])->ports;
      if (std::find(ports.begin(), ports.end(), s.target_ports[i]) == ports.end()) {
        ports.insert(std::upper_bound(ports.begin(), ports.end(), s.target_ports[i]),
                     s.target_ports[i]);
      }
    }
  }
  return plan;
}

absl::StatusOr<std::unique_ptr<SidecarMesh>> StartOnUpMesh(
    const up::MeshState& mesh, const std::vector<std::string>& namespaces, SidecarOptions opts) {
  WEFT_ASSIGN_OR_RETURN(UpMeshPlan plan, PlanOnUpMesh(mesh, namespaces));
  return SidecarMesh::Start(plan.placements, plan.pods, plan.services, opts);
}

}  // namespace weft::bench::sidecar
