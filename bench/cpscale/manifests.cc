#include "bench/cpscale/manifests.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "yaml-cpp/yaml.h"

namespace weft::bench::cpscale {
namespace {

using nlohmann::json;

constexpr const char* kRootNamespace = "weft-system";

std::string Hex(std::mt19937_64& rng, int n) {
  static const char kChars[] = "bcdfghjklmnpqrstvwxz2456789";  // Kubernetes' safe alphabet
  std::string out;
  for (int i = 0; i < n; ++i) out += kChars[rng() % (sizeof(kChars) - 1)];
  return out;
}

// Strings are always double-quoted, so "8080" or "true" stay strings (as kubectl would need).
void Emit(YAML::Emitter& e, const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      e << YAML::BeginMap;
      for (const auto& [k, v] : j.items()) {
        e << YAML::Key << k << YAML::Value;
        Emit(e, v);
      }
      e << YAML::EndMap;
      break;
    case json::value_t::array:
      e << YAML::BeginSeq;
      for (const auto& v : j) Emit(e, v);
      e << YAML::EndSeq;
      break;
    case json::value_t::string:
      e << YAML::DoubleQuoted << j.get<std::string>();
      break;
    case json::value_t::boolean:
      e << j.get<bool>();
      break;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      e << j.get<int64_t>();
      break;
    case json::value_t::number_float:
      e << j.get<double>();
      break;
    default:
      e << YAML::Null;
  }
}

std::string Ip(int a, int b, int n) {  // a.b.x.y from a counter n (>= 1)
  return absl::StrFormat("%d.%d.%d.%d", a, b + n / 65536, (n / 256) % 256, n % 256);
}

}  // namespace

std::set<std::string> Cluster::NodesOf(const std::string& ns, const std::string& app) const {
  std::set<std::string> out;
  for (const GenPod& p : pods) {
    if (p.ns == ns && (app.empty() || p.app == app)) out.insert(p.node);
  }
  return out;
}

namespace {

// The generator's steps, in the order they draw from the seeded random sequence (the same seed
// gives the same cluster).
class Generator {
 public:
  explicit Generator(const ClusterSpec& spec) : spec_(spec), rng_(spec.seed) {}

  Cluster Run() {
    for (int i = 0; i < spec_.nodes; ++i) c_.nodes.push_back(absl::StrFormat("node-%03d", i));
    Namespaces();
    for (int n = 0; n < spec_.namespaces; ++n) Deployments(n);
    Services();
    for (int i = 0; i < spec_.policies; ++i) Policy(i);
    return std::move(c_);
  }

 private:
  size_t Pick(size_t n) { return static_cast<size_t>(rng_() % n); }

  void Namespaces() {
    auto& ns_file = c_.files["namespaces.yaml"];
    ns_file.push_back(
        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", kRootNamespace}}}});
    for (int i = 0; i < spec_.namespaces; ++i) {
      namespaces_.push_back(absl::StrFormat("ns-%02d", i));
      json labels = {{"team", absl::StrCat("team-", i % 7)}};
      if (i % 10 != 9) labels["weft.dev/mesh"] = "enabled";  // a few namespaces stay out
      ns_file.push_back({{"apiVersion", "v1"},
                         {"kind", "Namespace"},
                         {"metadata", {{"name", namespaces_.back()}, {"labels", labels}}}});
    }
  }

  // Deployments of 1-9 replicas in namespace n, pods spread evenly over namespaces; 100 pods per
  // file.
  void Deployments(int n) {
    static const char* kRoles[] = {"web", "api", "worker", "db", "cache", "gateway"};
    const std::string& ns = namespaces_[n];
    const int quota = spec_.pods / spec_.namespaces + (n < spec_.pods % spec_.namespaces ? 1 : 0);
    int made = 0;
    for (int d = 0; made < quota; ++d) {
      const std::string app = absl::StrCat(kRoles[d % 6], "-", d);
      apps_by_ns_[ns].push_back(app);
      const std::string hash = Hex(rng_, 10);
      const int replicas = std::min<int>(1 + static_cast<int>(Pick(9)), quota - made);
      for (int r = 0; r < replicas; ++r, ++made, ++pod_counter_) {
        const std::string file = absl::StrFormat("pods-%s-%02d.yaml", ns, made / 100);
        GenPod p{ns,
                 absl::StrCat(app, "-", hash, "-", Hex(rng_, 5)),
                 app,
                 c_.nodes[Pick(c_.nodes.size())],
                 {file, 0}};
        auto& objects = c_.files[file];
        p.ref.index = objects.size();
        objects.push_back(PodObject(p, hash, kRoles[d % 6]));
        c_.pods.push_back(std::move(p));
      }
    }
  }

  json PodObject(const GenPod& p, const std::string& hash, const char* role) const {
    return {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata",
             {{"name", p.name},
              {"namespace", p.ns},
              {"labels",
               {{"app", p.app}, {"pod-template-hash", hash}, {"version", "v1"}, {"tier", role}}},
              {"ownerReferences", json::array({{{"apiVersion", "apps/v1"},
                                                {"kind", "ReplicaSet"},
                                                {"name", absl::StrCat(p.app, "-", hash)},
                                                {"uid", absl::StrFormat("rs-%s-%s", p.ns, hash)},
                                                {"controller", true}}})}}},
            {"spec",
             {{"nodeName", p.node},
              {"serviceAccountName", p.app},
              {"containers",
               json::array(
                   {{{"name", "main"},
                     {"image", absl::StrCat("registry.example/", p.app, ":1.0")},
                     {"ports", json::array({{{"name", "http"}, {"containerPort", 8080}},
                                            {{"name", "grpc"}, {"containerPort", 9090}}})}}})}}},
            {"status", {{"phase", "Running"}, {"podIP", Ip(10, 16, pod_counter_ + 1)}}}};
  }

  // Services: an even share per namespace, each selecting one Deployment.
  void Services() {
    int svc_counter = 0;
    for (int n = 0; n < spec_.namespaces; ++n) {
      const std::string& ns = namespaces_[n];
      const auto& apps = apps_by_ns_[ns];
      if (apps.empty()) continue;
      const int quota =
          spec_.services / spec_.namespaces + (n < spec_.services % spec_.namespaces ? 1 : 0);
      auto& objects = c_.files[absl::StrFormat("services-%s.yaml", ns)];
      for (int s = 0; s < quota; ++s, ++svc_counter) {
        const std::string& app = apps[static_cast<size_t>(s) % apps.size()];
        json ports = json::array({{{"name", "http"}, {"port", 80}, {"targetPort", "http"}}});
        if (s % 3 == 0) {
          ports.push_back(
              {{"name", "grpc"}, {"port", 9090}, {"targetPort", 9090}, {"appProtocol", "grpc"}});
        }
        objects.push_back(
            {{"apiVersion", "v1"},
             {"kind", "Service"},
             {"metadata",
              {{"name", s < static_cast<int>(apps.size()) ? app : absl::StrCat(app, "-", s)},
               {"namespace", ns}}},
             {"spec",
              {{"clusterIP", Ip(10, 96, svc_counter + 1)},
               {"selector", {{"app", app}}},
               {"ports", ports}}}});
      }
    }
  }

  // Policy i: 2/5 AuthorizationPolicy, 1/5 PeerAuthentication, 2/5 NetworkPolicy; most select
  // one Deployment, some are namespace-wide; one mesh-wide STRICT PeerAuthentication.
  void Policy(int i) {
    GenPolicy g;
    g.ns = namespaces_[Pick(namespaces_.size())];
    const auto& apps = apps_by_ns_[g.ns];
    if (apps.empty()) return;
    g.app = apps[Pick(apps.size())];
    const std::string& peer = apps[Pick(apps.size())];
    const bool ns_wide = Pick(10) == 0;
    json spec_json = PolicySpec(i, g, peer);
    if (g.kind != "NetworkPolicy") {
      if (ns_wide && g.ns != kRootNamespace) g.app.clear();
      if (!g.app.empty()) spec_json["selector"] = {{"matchLabels", {{"app", g.app}}}};
    } else if (ns_wide) {
      g.app.clear();
      spec_json["podSelector"] = json::object();
    }
    const std::string api =
        g.kind == "NetworkPolicy" ? "networking.k8s.io/v1" : "security.weft.dev/v1";
    g.ref.file = absl::StrFormat("policies-%s.yaml", g.ns);
    auto& objects = c_.files[g.ref.file];
    g.ref.index = objects.size();
    objects.push_back({{"apiVersion", api},
                       {"kind", g.kind},
                       {"metadata", {{"name", g.name}, {"namespace", g.ns}}},
                       {"spec", spec_json}});
    c_.policies.push_back(std::move(g));
  }

  // Sets g's kind and name (and, for the mesh-wide default, its namespace) and returns its spec.
  json PolicySpec(int i, GenPolicy& g, const std::string& peer) {
    switch (i % 5) {
      case 0:
      case 1:
        g.kind = "AuthorizationPolicy";
        g.name = absl::StrCat("allow-", g.app, "-", i);
        return {
            {"action", Pick(8) == 0 ? "DENY" : "ALLOW"},
            {"rules",
             json::array(
                 {{{"from", json::array({{{"source",
                                           {{"principals",
                                             json::array({absl::StrCat("cluster.local/ns/", g.ns,
                                                                       "/sa/", peer)})}}}}})},
                   {"to", json::array({{{"operation", {{"ports", json::array({"8080"})}}}}})}}})}};
      case 2: {
        g.kind = "PeerAuthentication";
        g.name = absl::StrCat("mtls-", g.app, "-", i);
        json spec = {{"mtls", {{"mode", Pick(2) == 0 ? "STRICT" : "PERMISSIVE"}}}};
        if (i == 2) {  // the mesh-wide default
          g.ns = kRootNamespace;
          g.name = "default";
          g.app.clear();
          spec = {{"mtls", {{"mode", "STRICT"}}}};
        }
        return spec;
      }
      default:
        g.kind = "NetworkPolicy";
        g.name = absl::StrCat("netpol-", g.app, "-", i);
        return {
            {"podSelector", {{"matchLabels", {{"app", g.app}}}}},
            {"policyTypes", json::array({"Ingress"})},
            {"ingress",
             json::array(
                 {{{"from", json::array({{{"podSelector", {{"matchLabels", {{"app", peer}}}}}}})},
                   {"ports", json::array({{{"protocol", "TCP"}, {"port", "http"}}})}}})}};
    }
  }

  const ClusterSpec& spec_;
  std::mt19937_64 rng_;
  Cluster c_;
  std::vector<std::string> namespaces_;
  std::map<std::string, std::vector<std::string>> apps_by_ns_;
  int pod_counter_ = 0;
};

}  // namespace

Cluster Generate(const ClusterSpec& spec) {
  return Generator(spec).Run();
}

absl::Status WriteManifestFile(const std::string& dir, const std::string& file,
                               const std::vector<json>& objects) {
  YAML::Emitter e;
  for (const json& o : objects) {
    e << YAML::BeginDoc;
    Emit(e, o);
  }
  e << YAML::Newline;
  // A dot-file is not a manifest to the local source, so the temporary file is never read.
  const std::string tmp = absl::StrCat(dir, "/.", file, ".tmp");
  const std::string path = absl::StrCat(dir, "/", file);
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  const size_t n = std::fwrite(e.c_str(), 1, e.size(), f);
  const bool ok = n == e.size() && std::fclose(f) == 0;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> WriteCluster(const Cluster& c, const std::string& dir) {
  size_t bytes = 0;
  for (const auto& [file, objects] : c.files) {
    if (absl::Status st = WriteManifestFile(dir, file, objects); !st.ok()) return st;
    std::error_code ec;
    bytes += static_cast<size_t>(std::filesystem::file_size(absl::StrCat(dir, "/", file), ec));
  }
  return bytes;
}

}  // namespace weft::bench::cpscale
