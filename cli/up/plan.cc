#include "cli/up/plan.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/testbed/testbed.h"
#include "common/status.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"

namespace weft::up {
namespace {

using json = nlohmann::json;

bool IsManifestFile(const std::filesystem::path& p) {
  const std::string ext = p.extension().string();
  const std::string base = p.filename().string();
  return !base.starts_with(".") && (ext == ".yaml" || ext == ".yml" || ext == ".json");
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Str(const json& j, const char* key, std::string dflt = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}

std::string NsOf(const json& o) {
  const json& meta = o["metadata"];
  return Str(meta, "namespace", "default");
}

std::string NameOf(const json& o) {
  return Str(o["metadata"], "name");
}

std::string Where(const ManifestObject& m) {
  return absl::StrCat(m.file, ": ", m.object.value("kind", "?"), " ",
                      ClusterScoped(m.object.value("kind", "")) ? "" : NsOf(m.object) + "/",
                      NameOf(m.object));
}

absl::Status Bad(const ManifestObject& m, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(Where(m), ": ", Av(what)));
}

Labels LabelMap(const json& meta, const char* key = "labels") {
  Labels out;
  auto it = meta.find(key);
  if (it == meta.end() || !it->is_object()) return out;
  for (auto& [k, v] : it->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

// 64-bit FNV-1a: stable names for Deployment pods across runs.
uint64_t Fnv(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// The alphabet Kubernetes uses for generated name suffixes (no vowels, no confusable digits).
std::string SafeChars(uint64_t h, int n) {
  static constexpr std::string_view kAlphabet = "bcdfghjklmnpqrstvwxz2456789";
  std::string out;
  for (int i = 0; i < n; ++i) {
    out.push_back(kAlphabet[h % kAlphabet.size()]);
    h /= kAlphabet.size();
  }
  return out;
}

bool IsWorkloadKind(std::string_view kind) {
  return kind == "StatefulSet" || kind == "DaemonSet" || kind == "ReplicaSet" || kind == "Job" ||
         kind == "CronJob" || kind == "ReplicationController";
}

std::string EnvName(std::string_view svc) {
  std::string out;
  for (char c : svc) out.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
  return out;
}

// The value of a downward-API fieldRef for a placed pod.
std::optional<std::string> FieldRef(const PodPlan& p, const std::string& host_ip,
                                    std::string_view path) {
  auto bracket = [&](std::string_view head) -> std::optional<std::string> {
    // metadata.labels['key'] / metadata.labels["key"]
    if (!path.starts_with(head) || path.size() < head.size() + 4) return std::nullopt;
    std::string key(path.substr(head.size() + 2, path.size() - head.size() - 4));
    return key;
  };
  if (path == "metadata.name") return p.name;
  if (path == "metadata.namespace") return p.ns;
  if (path == "metadata.uid") return p.uid();
  if (path == "spec.nodeName") return absl::StrCat("node", p.node);
  if (path == "spec.serviceAccountName") return p.service_account;
  if (path == "status.podIP") return p.ip.ToString();
  if (path == "status.podIPs")
    return p.ip6 ? absl::StrCat(p.ip.ToString(), ",", p.ip6->ToString()) : p.ip.ToString();
  if (path == "status.hostIP" || path == "status.hostIPs") return host_ip;
  if (auto key = bracket("metadata.labels")) {
    auto it = p.labels.find(*key);
    return it == p.labels.end() ? "" : it->second;
  }
  if (auto key = bracket("metadata.annotations")) {
    auto annotations = LabelMap(p.object["metadata"], "annotations");
    auto it = annotations.find(*key);
    return it == annotations.end() ? "" : it->second;
  }
  return std::nullopt;
}

struct PodSource {
  const ManifestObject* from;
  json object;             // the Pod as written, or as the Deployment's controllers would make it
  std::string deployment;  // owning Deployment, if any
};

// $(VAR) lookups in the environment built so far.
std::function<std::optional<std::string>(std::string_view)> EnvLookup(
    const std::map<std::string, std::string>& env) {
  return [&env](std::string_view k) -> std::optional<std::string> {
    auto it = env.find(std::string(k));
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

absl::StatusOr<std::vector<ManifestObject>> LoadManifests(const std::string& path) {
  std::error_code ec;
  std::vector<std::string> files;
  if (std::filesystem::is_directory(path, ec)) {
    for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
      if (e.is_regular_file() && IsManifestFile(e.path())) files.push_back(e.path().string());
    }
    if (ec) return absl::InvalidArgumentError(absl::StrCat("reading ", path, ": ", ec.message()));
    std::sort(files.begin(), files.end());
  } else if (std::filesystem::exists(path, ec)) {
    files.push_back(path);
  } else {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  std::vector<ManifestObject> out;
  for (const std::string& f : files) {
    WEFT_ASSIGN_OR_RETURN(auto objs, cp::LoadManifestFile(f));
    for (auto& o : objs) out.push_back({f, std::move(o)});
  }
  return out;
}

bool ClusterScoped(std::string_view kind) {
  return kind == "Namespace" || kind == "Node" || kind == "ClusterRole" ||
         kind == "ClusterRoleBinding" || kind == "CustomResourceDefinition" ||
         kind == "PersistentVolume" || kind == "StorageClass";
}

std::string ObjectFileName(std::string_view kind, std::string_view ns, std::string_view name) {
  auto clean = [](std::string_view s) {
    std::string out;
    for (char c : s) {
      bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
      out.push_back(ok ? c : '-');
    }
    return out;
  };
  if (ClusterScoped(kind)) return absl::StrCat(Lower(kind), "_", clean(name), ".json");
  return absl::StrCat(Lower(kind), "_", clean(ns), "_", clean(name), ".json");
}

std::string ObjectFileName(const json& o) {
  std::string kind = o.value("kind", "");
  return ObjectFileName(kind, ClusterScoped(kind) ? "" : NsOf(o), NameOf(o));
}

bool Enrolled(const Labels& ns_labels, const Labels& pod_labels) {
  auto n = ns_labels.find(kMeshLabel);
  auto p = pod_labels.find(kMeshLabel);
  return n != ns_labels.end() && n->second == "enabled" &&
         !(p != pod_labels.end() && p->second == "disabled");
}

std::string ExpandVars(std::string_view in,
                       const std::function<std::optional<std::string>(std::string_view)>& lookup) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '$' || i + 1 == in.size()) {
      out.push_back(in[i]);
      continue;
    }
    if (in[i + 1] == '$') {  // escaped
      out.push_back('$');
      ++i;
      continue;
    }
    if (in[i + 1] == '(') {
      size_t close = in.find(')', i + 2);
      if (close != std::string_view::npos) {
        std::string_view name = in.substr(i + 2, close - i - 2);
        if (auto v = lookup(name)) {
          out += *v;
        } else {
          out.append(in.substr(i, close - i + 1));
        }
        i = close;
        continue;
      }
    }
    out.push_back('$');
  }
  return out;
}

absl::StatusOr<bool> ApplyLabelChange(Labels& labels, std::string_view change, bool overwrite) {
  auto valid_key = [](std::string_view k) {
    if (k.empty() || k.size() > 316) return false;
    for (char c : k) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
          c != '/')
        return false;
    }
    return true;
  };
  size_t eq = change.find('=');
  if (eq == std::string_view::npos) {
    if (!change.ends_with("-") || !valid_key(change.substr(0, change.size() - 1))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label change \"", Av(change), "\" is neither KEY=VALUE (set) nor KEY- (remove)"));
    }
    return labels.erase(std::string(change.substr(0, change.size() - 1))) > 0;
  }
  std::string key(change.substr(0, eq)), value(change.substr(eq + 1));
  if (!valid_key(key)) {
    return absl::InvalidArgumentError(absl::StrCat("label key \"", key, "\" is not valid"));
  }
  for (char c : value) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          "label value \"", value, "\" is not valid (letters, digits, '-', '_', '.')"));
    }
  }
  auto it = labels.find(key);
  if (it != labels.end() && it->second == value) return false;
  if (it != labels.end() && !overwrite) {
    return absl::FailedPreconditionError(absl::StrCat("'", key, "' already has a value (",
                                                      it->second, "), and --overwrite is false"));
  }
  labels[key] = value;
  return true;
}

const PodPlan* Plan::FindPod(std::string_view ns, std::string_view name) const {
  for (const auto& p : pods)
    if (p.ns == ns && p.name == name) return &p;
  return nullptr;
}

std::map<std::string, json> Plan::RuntimeFiles() const {
  std::map<std::string, json> files;
  for (const auto& [name, o] : namespaces) files[ObjectFileName(o)] = o;
  for (const auto& p : pods) files[ObjectFileName(p.object)] = p.object;
  for (const auto& s : services) files[ObjectFileName(s.object)] = s.object;
  for (const auto& o : others) files[ObjectFileName(o)] = o;
  return files;
}

namespace {

// A Deployment's pods, as its ReplicaSet controller would make them (stable names per template).
absl::Status ExpandDeployment(const ManifestObject& m, const std::string& ns,
                              const std::string& name, std::vector<PodSource>& pod_sources) {
  const json& o = m.object;
  const json& spec = o.contains("spec") ? o["spec"] : json::object();
  int replicas = spec.contains("replicas") && spec["replicas"].is_number_integer()
                     ? spec["replicas"].get<int>()
                     : 1;
  if (replicas < 0 || replicas > 250) return Bad(m, "spec.replicas must be 0..250");
  if (!spec.contains("template") || !spec["template"].is_object())
    return Bad(m, "spec.template is required");
  const json& tmpl = spec["template"];
  std::string hash = SafeChars(Fnv(absl::StrCat(ns, "/", name, "\n", tmpl.dump())), 10);
  for (int r = 0; r < replicas; ++r) {
    json meta = tmpl.contains("metadata") ? tmpl["metadata"] : json::object();
    std::string pod_name =
        absl::StrCat(name, "-", hash, "-", SafeChars(Fnv(absl::StrCat(hash, "/", r)), 5));
    meta["name"] = pod_name;
    meta["namespace"] = ns;
    meta["labels"]["pod-template-hash"] = hash;
    meta["ownerReferences"] = json::array({{{"apiVersion", "apps/v1"},
                                            {"kind", "ReplicaSet"},
                                            {"name", absl::StrCat(name, "-", hash)},
                                            {"controller", true}}});
    json pod = {{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", meta},
                {"spec", tmpl.contains("spec") ? tmpl["spec"] : json::object()}};
    pod_sources.push_back({&m, std::move(pod), name});
  }
  return absl::OkStatus();
}

// Sorts the objects by role (pods, services, namespaces, other mesh objects); expands
// Deployments; warns about what local mode does not run.
absl::Status SortObjects(const std::vector<ManifestObject>& objects, Plan& plan,
                         std::vector<PodSource>& pod_sources,
                         std::vector<const ManifestObject*>& service_sources) {
  std::set<std::string> seen;  // kind/ns/name
  for (const ManifestObject& m : objects) {
    const json& o = m.object;
    const std::string kind = o.value("kind", "");
    const std::string name = NameOf(o);
    if (name.empty()) return Bad(m, "metadata.name is required");
    const std::string ns = ClusterScoped(kind) ? "" : NsOf(o);
    if (!seen.insert(absl::StrCat(kind, "/", ns, "/", name)).second) {
      return Bad(m, "defined twice (each object once across the manifest files)");
    }
    if (kind == "Pod") {
      pod_sources.push_back({&m, o, ""});
    } else if (kind == "Deployment") {
      WEFT_RETURN_IF_ERROR(ExpandDeployment(m, ns, name, pod_sources));
    } else if (kind == "Service") {
      service_sources.push_back(&m);
    } else if (kind == "Namespace") {
      plan.namespaces[name] = o;
    } else if (IsWorkloadKind(kind)) {
      plan.warnings.push_back(
          absl::StrCat(Where(m), ": not run (local mode runs Pods and Deployments)"));
    } else if (cp::IsSupportedKind(kind)) {
      json copy = o;
      if (!ClusterScoped(kind)) copy["metadata"]["namespace"] = ns;
      plan.others.push_back(std::move(copy));
    } else {
      plan.warnings.push_back(absl::StrCat(Where(m), ": ignored (kind not used in local mode)"));
    }
  }
  return absl::OkStatus();
}

// The cluster IPs the manifests give: IPv4, outside the testbed's ranges, each once.
absl::StatusOr<std::set<std::string>> GivenClusterIps(
    const std::vector<const ManifestObject*>& service_sources) {
  const Cidr pods_range = *Cidr::Parse("10.248.0.0/16");
  const Cidr nodes_range = *Cidr::Parse("10.249.0.0/16");
  std::set<std::string> taken;
  for (const ManifestObject* m : service_sources) {
    std::string ip = Str(m->object.value("spec", json::object()), "clusterIP");
    if (ip.empty() || ip == "None") continue;
    auto a = IpAddr::Parse(ip);
    if (!a.ok() || !a->IsV4())
      return Bad(*m, absl::StrCat("spec.clusterIP \"", ip, "\" is not an IPv4 address"));
    if (pods_range.Contains(*a) || nodes_range.Contains(*a)) {
      return Bad(*m, absl::StrCat("spec.clusterIP ", ip,
                                  " is inside the testbed's pod or node range (10.248.0.0/16, "
                                  "10.249.0.0/16); leave it out to get one from ",
                                  kVipRange));
    }
    if (!taken.insert(ip).second)
      return Bad(*m, absl::StrCat("spec.clusterIP ", ip, " is used twice"));
  }
  return taken;
}

absl::Status ServicePorts(const ManifestObject& m, const json& spec, ServicePlan& s) {
  if (!spec.contains("ports") || !spec["ports"].is_array() || spec["ports"].empty())
    return Bad(m, "spec.ports must list at least one port");
  for (const json& p : spec["ports"]) {
    ServicePortPlan sp;
    if (!p.is_object() || !p.contains("port") || !p["port"].is_number_integer() ||
        p["port"].get<int>() < 1 || p["port"].get<int>() > 65535)
      return Bad(m, "every spec.ports[] needs a port number 1..65535");
    sp.port = static_cast<uint16_t>(p["port"].get<int>());
    sp.name = Str(p, "name");
    sp.protocol = Str(p, "protocol", "TCP");
    if (p.contains("targetPort")) sp.target_port = p["targetPort"];
    s.ports.push_back(std::move(sp));
  }
  return absl::OkStatus();
}

// Services: cluster IPs (as given, else the next free one of kVipRange) and ports.
absl::Status PlanServices(const std::vector<const ManifestObject*>& service_sources, Plan& plan) {
  const Cidr vip_range = *Cidr::Parse(kVipRange);
  WEFT_ASSIGN_OR_RETURN(std::set<std::string> taken, GivenClusterIps(service_sources));
  uint32_t next_vip = vip_range.base().v4_host_order() + 1;
  for (const ManifestObject* m : service_sources) {
    ServicePlan s;
    s.ns = NsOf(m->object);
    s.name = NameOf(m->object);
    s.object = m->object;
    s.object["metadata"]["namespace"] = s.ns;
    json& spec = s.object["spec"];
    if (!spec.is_object()) return Bad(*m, "spec is required");
    std::string ip = Str(spec, "clusterIP");
    if (ip == "None") {
      s.cluster_ip = "";
    } else if (!ip.empty()) {
      s.cluster_ip = ip;
    } else {
      while (taken.count(IpAddr::V4(next_vip).ToString())) ++next_vip;
      if (!vip_range.Contains(IpAddr::V4(next_vip)))
        return Bad(*m, absl::StrCat("no free cluster IP left in ", kVipRange));
      s.cluster_ip = IpAddr::V4(next_vip++).ToString();
      spec["clusterIP"] = s.cluster_ip;
      spec["clusterIPs"] = json::array({s.cluster_ip});
    }
    WEFT_RETURN_IF_ERROR(ServicePorts(*m, spec, s));
    plan.services.push_back(std::move(s));
  }
  return absl::OkStatus();
}

// What placing the pods so far has used up.
struct Placement {
  std::vector<int> per_node;
  std::set<std::string> testbed_names, pod_ids;
  int round_robin = 0;
};

// The pod's node: spec.nodeName if it names one of this mesh's nodes, else round-robin.
int PickNode(const ManifestObject& m, const std::string& node_name, const PlanOptions& opts,
             Placement& pl, Plan& plan) {
  for (int n = 0; n < opts.nodes && !node_name.empty(); ++n)
    if (node_name == absl::StrCat("node", n)) return n;
  if (!node_name.empty()) {
    plan.warnings.push_back(absl::StrCat(Where(m), ": spec.nodeName \"", node_name,
                                         "\" is not a node of this mesh (node0..node",
                                         opts.nodes - 1, "); placed round-robin"));
  }
  return pl.round_robin++ % opts.nodes;
}

// Places the `index`th pod: node, slot, addresses, testbed name, identity and restart policy,
// and the effective object as the scheduler, kubelet and CNI would leave it.
absl::Status PlacePod(PodSource& src, size_t index, const PlanOptions& opts, Placement& pl,
                      Plan& plan, PodPlan& p) {
  const ManifestObject& m = *src.from;
  json& o = src.object;
  p.ns = NsOf(o);
  p.name = NameOf(o);
  o["metadata"]["namespace"] = p.ns;
  if (!pl.pod_ids.insert(p.uid()).second)
    return Bad(m, absl::StrCat("pod ", p.uid(), " is defined twice"));
  p.workload = src.deployment.empty() ? p.name : src.deployment;
  if (!o.contains("spec") || !o["spec"].is_object()) return Bad(m, "spec is required");
  json& spec = o["spec"];
  const int node = PickNode(m, Str(spec, "nodeName"), opts, pl, plan);
  if (pl.per_node[node] >= 250) return Bad(m, absl::StrCat("node", node, " has 250 pods already"));
  p.node = node;
  p.slot = ++pl.per_node[node];
  p.ip = testbed::PodAddress(node, p.slot);
  if (opts.ipv6) p.ip6 = testbed::PodAddress6(node, p.slot);
  std::string tb = testbed::SanitizePodName(absl::StrCat(p.ns, "-", p.name));
  bool reserved = tb == "fab" || (tb.size() > 1 && tb[0] == 'n' &&
                                  tb.find_first_not_of("0123456789", 1) == std::string::npos);
  if (tb.size() > 60 || reserved || pl.testbed_names.count(tb)) tb = absl::StrCat("pod", index);
  pl.testbed_names.insert(tb);
  p.testbed_name = tb;
  p.labels = LabelMap(o["metadata"]);
  p.service_account = Str(spec, "serviceAccountName", Str(spec, "serviceAccount", "default"));
  p.restart_policy = Str(spec, "restartPolicy", "Always");
  if (p.restart_policy != "Always" && p.restart_policy != "OnFailure" &&
      p.restart_policy != "Never")
    return Bad(m, absl::StrCat("spec.restartPolicy \"", p.restart_policy,
                               "\" is not Always, OnFailure or Never"));

  spec["nodeName"] = absl::StrCat("node", node);
  std::string netns = testbed::NetnsPath(absl::StrCat(opts.prefix, "-", tb));
  o["metadata"]["annotations"][kNetnsAnnotation] = netns;
  const std::string host_ip = testbed::NodeAddress(node).ToString();
  json ips = json::array({{{"ip", p.ip.ToString()}}});
  if (p.ip6) ips.push_back({{"ip", p.ip6->ToString()}});
  o["status"] = {{"phase", "Running"},
                 {"podIP", p.ip.ToString()},
                 {"podIPs", ips},
                 {"hostIP", host_ip},
                 {"hostIPs", json::array({{{"ip", host_ip}}})}};
  p.object = o;
  return absl::OkStatus();
}

// The process's environment: the basics, the Services of its namespace (as kubelet sets them),
// then spec.containers[0].env (values with $(VAR) expanded, downward-API fieldRefs).
absl::Status PodEnv(const ManifestObject& m, const json& c,
                    const std::vector<ServicePlan>& services, PodPlan& p,
                    std::map<std::string, std::string>& env_map) {
  auto set_env = [&](const std::string& k, const std::string& v) {
    auto it = std::find_if(p.env.begin(), p.env.end(), [&](auto& kv) { return kv.first == k; });
    if (it != p.env.end()) {
      it->second = v;
    } else {
      p.env.emplace_back(k, v);
    }
    env_map[k] = v;
  };
  set_env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  set_env("HOSTNAME", p.name.substr(0, 63));
  set_env("HOME", "/root");
  for (const ServicePlan& s : services) {
    if (s.ns != p.ns || s.cluster_ip.empty()) continue;
    std::string base = EnvName(s.name);
    set_env(base + "_SERVICE_HOST", s.cluster_ip);
    set_env(base + "_SERVICE_PORT", std::to_string(s.ports[0].port));
    for (const auto& sp : s.ports) {
      if (!sp.name.empty())
        set_env(absl::StrCat(base, "_SERVICE_PORT_", EnvName(sp.name)), std::to_string(sp.port));
    }
  }
  if (!c.contains("env") || !c["env"].is_array()) return absl::OkStatus();
  const std::string host_ip = testbed::NodeAddress(p.node).ToString();
  for (const json& e : c["env"]) {
    std::string name = Str(e, "name");
    if (name.empty()) return Bad(m, "spec.containers[0].env[] needs a name");
    if (!e.contains("valueFrom")) {
      set_env(name, ExpandVars(Str(e, "value"), EnvLookup(env_map)));
      continue;
    }
    const json& vf = e["valueFrom"];
    std::string path = vf.contains("fieldRef") ? Str(vf["fieldRef"], "fieldPath") : std::string();
    auto v = path.empty() ? std::nullopt : FieldRef(p, host_ip, path);
    if (!v) {
      return Bad(m, absl::StrCat("env ", name,
                                 ": only valueFrom.fieldRef (metadata.name, "
                                 "metadata.namespace, spec.nodeName, status.podIP, ...) is "
                                 "supported in local mode; give a value"));
    }
    set_env(name, *v);
  }
  return absl::OkStatus();
}

// The pod's process: spec.containers[0]'s command + args (expanded), ports, working dir, env.
absl::Status PodProcess(const ManifestObject& m, const std::vector<ServicePlan>& services,
                        Plan& plan, PodPlan& p) {
  const json& spec = p.object["spec"];
  if (!spec.contains("containers") || !spec["containers"].is_array() || spec["containers"].empty())
    return Bad(m, "spec.containers must list the container to run");
  if (spec["containers"].size() > 1) {
    plan.warnings.push_back(absl::StrCat(Where(m), ": only spec.containers[0] runs in local mode"));
  }
  const json& c = spec["containers"][0];
  if (!c.contains("command") || !c["command"].is_array() || c["command"].empty()) {
    return Bad(m,
               "spec.containers[0].command is required in local mode (there are no images: "
               "the command runs as a process on this host)");
  }
  if (c.contains("envFrom")) {
    return Bad(m, "spec.containers[0].envFrom is not supported in local mode; use env");
  }
  if (c.contains("ports") && c["ports"].is_array()) {
    for (const json& cp : c["ports"]) {
      if (!cp.is_object() || !cp.contains("containerPort") ||
          !cp["containerPort"].is_number_integer())
        return Bad(m, "spec.containers[0].ports[] needs a containerPort number");
      p.ports.push_back({Str(cp, "name"), static_cast<uint16_t>(cp["containerPort"].get<int>()),
                         Str(cp, "protocol", "TCP")});
    }
  }
  p.working_dir = Str(c, "workingDir");
  std::map<std::string, std::string> env_map;
  WEFT_RETURN_IF_ERROR(PodEnv(m, c, services, p, env_map));
  for (const char* field : {"command", "args"}) {
    if (!c.contains(field)) continue;
    if (!c[field].is_array())
      return Bad(m, absl::StrCat("spec.containers[0].", field, " must be a list of strings"));
    for (const json& a : c[field]) {
      if (!a.is_string() && !a.is_number())
        return Bad(m, absl::StrCat("spec.containers[0].", field, " must be a list of strings"));
      p.argv.push_back(
          ExpandVars(a.is_string() ? a.get<std::string>() : a.dump(), EnvLookup(env_map)));
    }
  }
  return absl::OkStatus();
}

// Namespaces the pods and services live in (made when the manifests do not define them), and
// each pod's enrolment.
void AddNamespaces(Plan& plan) {
  auto ensure_ns = [&](const std::string& ns) {
    if (plan.namespaces.count(ns)) return;
    plan.namespaces[ns] = {{"apiVersion", "v1"},
                           {"kind", "Namespace"},
                           {"metadata", {{"name", ns}, {"labels", json::object()}}}};
  };
  for (const auto& p : plan.pods) ensure_ns(p.ns);
  for (const auto& s : plan.services) ensure_ns(s.ns);
  for (auto& p : plan.pods)
    p.enrolled = Enrolled(LabelMap(plan.namespaces[p.ns]["metadata"]), p.labels);
}

}  // namespace

absl::StatusOr<Plan> MakePlan(const std::vector<ManifestObject>& objects, const PlanOptions& opts) {
  if (opts.nodes < 1 || opts.nodes > 250) {
    return absl::InvalidArgumentError(absl::StrCat("--nodes must be 1..250, got ", opts.nodes));
  }
  Plan plan;
  std::vector<PodSource> pod_sources;
  std::vector<const ManifestObject*> service_sources;
  WEFT_RETURN_IF_ERROR(SortObjects(objects, plan, pod_sources, service_sources));
  WEFT_RETURN_IF_ERROR(PlanServices(service_sources, plan));
  Placement placement;
  placement.per_node.assign(opts.nodes, 0);
  for (size_t i = 0; i < pod_sources.size(); ++i) {
    PodPlan p;
    WEFT_RETURN_IF_ERROR(PlacePod(pod_sources[i], i, opts, placement, plan, p));
    WEFT_RETURN_IF_ERROR(PodProcess(*pod_sources[i].from, plan.services, plan, p));
    plan.pods.push_back(std::move(p));
  }
  AddNamespaces(plan);
  return plan;
}

std::string HostsFile(const std::vector<json>& objects, const std::string& ns,
                      const std::string& name, const IpAddr& ip, const std::optional<IpAddr>& ip6) {
  std::string out = absl::StrCat("# Written by weftctl up for pod ", ns, "/", name,
                                 " (bind-mounted over /etc/hosts in its processes)\n",
                                 "127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost\n");
  absl::StrAppend(&out, ip.ToString(), "\t", name, "\n");
  if (ip6) absl::StrAppend(&out, ip6->ToString(), "\t", name, "\n");
  std::vector<const json*> services, pods;
  for (const json& o : objects) {
    if (o.value("kind", "") == "Service") services.push_back(&o);
    if (o.value("kind", "") == "Pod") pods.push_back(&o);
  }
  auto key = [](const json* o) { return std::make_pair(NsOf(*o), NameOf(*o)); };
  std::sort(services.begin(), services.end(),
            [&](const json* a, const json* b) { return key(a) < key(b); });
  for (const json* s : services) {
    const std::string sns = NsOf(*s), sname = NameOf(*s);
    const json& spec = (*s)["spec"];
    std::string names = absl::StrCat(sname, ".", sns, ".svc.cluster.local ", sname, ".", sns);
    if (sns == ns) absl::StrAppend(&names, " ", sname);
    const std::string vip = spec.is_object() ? Str(spec, "clusterIP") : "";
    if (!vip.empty() && vip != "None") {
      absl::StrAppend(&out, vip, "\t", names, "\n");
      continue;
    }
    // Headless: the selected pods' addresses.
    Labels selector = spec.is_object() ? LabelMap(spec, "selector") : Labels{};
    if (selector.empty()) continue;
    for (const json* p : pods) {
      if (NsOf(*p) != sns) continue;
      Labels labels = LabelMap((*p)["metadata"]);
      bool match = std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
        auto it = labels.find(kv.first);
        return it != labels.end() && it->second == kv.second;
      });
      const json& status = (*p)["status"];
      std::string pod_ip = status.is_object() ? Str(status, "podIP") : "";
      if (match && !pod_ip.empty()) absl::StrAppend(&out, pod_ip, "\t", names, "\n");
    }
  }
  return out;
}

std::string HostsFile(const Plan& plan, const PodPlan& pod) {
  std::vector<json> objects;
  for (auto& [file, o] : plan.RuntimeFiles()) objects.push_back(o);
  return HostsFile(objects, pod.ns, pod.name, pod.ip, pod.ip6);
}

absl::Status AssignClusterIp(json& service, const std::vector<json>& existing) {
  const std::string ns = NsOf(service), name = NameOf(service);
  if (!service.contains("spec") || !service["spec"].is_object())
    return absl::InvalidArgumentError(
        absl::StrCat("Service ", ns, "/", name, ": spec is required"));
  json& spec = service["spec"];
  std::set<std::string> used;
  std::string previous;
  for (const json& o : existing) {
    if (o.value("kind", "") != "Service" || !o.contains("spec") || !o["spec"].is_object()) continue;
    std::string ip = Str(o["spec"], "clusterIP");
    if (NsOf(o) == ns && NameOf(o) == name) {
      previous = ip;  // an update keeps its address, as the API server does
    } else if (!ip.empty() && ip != "None") {
      used.insert(ip);
    }
  }
  std::string ip = Str(spec, "clusterIP");
  if (ip.empty() && !previous.empty()) ip = previous;
  if (ip == "None") return absl::OkStatus();
  const Cidr vip_range = *Cidr::Parse(kVipRange);
  if (ip.empty()) {
    for (uint32_t a = vip_range.base().v4_host_order() + 1;; ++a) {
      IpAddr cand = IpAddr::V4(a);
      if (!vip_range.Contains(cand)) {
        return absl::ResourceExhaustedError(absl::StrCat("no free cluster IP left in ", kVipRange));
      }
      if (!used.count(cand.ToString())) {
        ip = cand.ToString();
        break;
      }
    }
  } else {
    auto a = IpAddr::Parse(ip);
    if (!a.ok() || !a->IsV4()) {
      return absl::InvalidArgumentError(absl::StrCat("Service ", ns, "/", name, ": clusterIP \"",
                                                     ip, "\" is not an IPv4 address"));
    }
    if (Cidr::Parse("10.248.0.0/16")->Contains(*a) || Cidr::Parse("10.249.0.0/16")->Contains(*a)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Service ", ns, "/", name, ": clusterIP ", ip,
          " is inside the testbed's pod or node range; leave it out to get one from ", kVipRange));
    }
    if (used.count(ip)) {
      return absl::AlreadyExistsError(
          absl::StrCat("Service ", ns, "/", name, ": clusterIP ", ip, " is taken"));
    }
  }
  spec["clusterIP"] = ip;
  spec["clusterIPs"] = json::array({ip});
  return absl::OkStatus();
}

}  // namespace weft::up
