// Checks of the Helm chart (helm/) that need neither helm nor a Kubernetes API server:
//  - Chart.yaml and values.yaml parse and say what the chart is;
//  - every .Values path a template reads exists in values.yaml, and every value is read;
//  - every include names a defined helper;
//  - every --flag the templates pass to weftd, ztunnel or weft-agent appears in that built
//    binary's --help (the binaries are the real ones, paths from CMake);
//  - each manifest template, with its template actions stripped (see StripActions), is YAML
//    whose objects have apiVersion/kind/metadata.name, and whose cross-references hold:
//    volume mounts name volumes, probes and Services name container ports, port names are
//    valid, the weftd ServiceAccount is the one clusterrole.yaml binds, and the ClusterRole
//    grants list+watch on every CRD in helm/crds;
//  - packaging/Containerfile builds an image per binary the chart runs, and its runtime-package
//    script works on the real binaries.
//  - the Grafana dashboards (helm/dashboards/*.json) parse, have distinct uids and panel ids,
//    and every query is non-empty and uses only variables the dashboard defines;
// Rendering for real (conditionals, indentation, substituted values) is render_test.cc's.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/file.h"
#include "tests/e2e/dashboard_queries.h"

namespace {

namespace fs = std::filesystem;

const fs::path kChart = WEFT_HELM_DIR;

std::vector<fs::path> TemplateFiles() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(kChart / "templates")) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Manifest templates: what Helm renders into objects (not helpers, not NOTES.txt).
std::vector<fs::path> ManifestTemplates() {
  std::vector<fs::path> out;
  for (const auto& p : TemplateFiles()) {
    if (p.extension() == ".yaml" || p.extension() == ".yml") out.push_back(p);
  }
  return out;
}

// ---- values -------------------------------------------------------------------------------

// Leaf paths of a YAML map ("a.b.c"); a map or sequence that is empty counts as a leaf.
void LeafPaths(const YAML::Node& n, const std::string& prefix, std::vector<std::string>* out) {
  if (n.IsMap() && n.size() > 0) {
    for (const auto& kv : n) {
      std::string k = kv.first.as<std::string>();
      LeafPaths(kv.second, prefix.empty() ? k : prefix + "." + k, out);
    }
  } else {
    out->push_back(prefix);
  }
}

bool PathExists(YAML::Node n, const std::string& path) {
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (!n.IsMap()) return false;
    YAML::Node child = n[part];
    if (!child.IsDefined()) return false;
    n.reset(child);  // not `n = child`: yaml-cpp's operator= assigns into the tree
  }
  return true;
}

struct Ref {
  std::string path;   // "weftd.ports.grpc"
  std::string where;  // "weftd.yaml:42"
};

// Every `.Values.a.b.c` (also `$.Values...`) in the templates, with file:line.
std::vector<Ref> ValuesRefs() {
  static const std::regex kRef(R"(\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+))");
  std::vector<Ref> refs;
  for (const auto& f : TemplateFiles()) {
    std::stringstream in(weft::ReadFile(f).value());
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      for (std::sregex_iterator it(line.begin(), line.end(), kRef), end; it != end; ++it) {
        refs.push_back({(*it)[1].str().substr(1), f.filename().string() + ":" + std::to_string(n)});
      }
    }
  }
  return refs;
}

TEST(HelmChartTest, ChartYamlParses) {
  YAML::Node c = YAML::LoadFile((kChart / "Chart.yaml").string());
  EXPECT_EQ(c["apiVersion"].as<std::string>(), "v2");
  EXPECT_EQ(c["name"].as<std::string>(), "weft");
  EXPECT_EQ(c["version"].as<std::string>(), "0.1.0");
  ASSERT_TRUE(c["appVersion"].IsScalar());
  EXPECT_FALSE(c["appVersion"].as<std::string>().empty());
}

TEST(HelmChartTest, ValuesYamlParses) {
  YAML::Node v = YAML::LoadFile((kChart / "values.yaml").string());
  ASSERT_TRUE(v.IsMap());
  // The keys the node pods and weftd cannot do without, and their ports distinct.
  for (const char* p : {"trustDomain", "rootNamespace", "capture", "logLevel", "weftd.ports.grpc",
                        "weftd.ports.metrics", "weftd.ports.readiness", "ztunnel.ports.metrics",
                        "ztunnel.ports.readiness", "agent.ports.metrics"}) {
    EXPECT_TRUE(PathExists(v, p)) << p;
  }
  std::set<int> node_ports = {v["ztunnel"]["ports"]["metrics"].as<int>(),
                              v["ztunnel"]["ports"]["readiness"].as<int>(),
                              v["agent"]["ports"]["metrics"].as<int>()};
  EXPECT_EQ(node_ports.size(), 3u) << "the node pod's ports (hostNetwork) must differ";
}

TEST(HelmChartTest, EveryValuesReferenceExists) {
  YAML::Node v = YAML::LoadFile((kChart / "values.yaml").string());
  std::vector<Ref> refs = ValuesRefs();
  ASSERT_GT(refs.size(), 20u) << "the scan found almost no .Values references: is it broken?";
  for (const Ref& r : refs) {
    EXPECT_TRUE(PathExists(v, r.path))
        << r.where << " reads .Values." << r.path << ", which values.yaml does not have";
  }
}

TEST(HelmChartTest, EveryValueIsRead) {
  YAML::Node v = YAML::LoadFile((kChart / "values.yaml").string());
  std::vector<std::string> leaves;
  LeafPaths(v, "", &leaves);
  std::vector<Ref> refs = ValuesRefs();
  for (const std::string& leaf : leaves) {
    bool read = false;
    for (const Ref& r : refs) {
      // A reference to the leaf, to a map above it (toYaml, with), or below it.
      if (leaf == r.path || leaf.rfind(r.path + ".", 0) == 0 || r.path.rfind(leaf + ".", 0) == 0)
        read = true;
    }
    EXPECT_TRUE(read) << "values.yaml has " << leaf << " but no template reads it";
  }
}

TEST(HelmChartTest, EveryIncludeIsDefined) {
  static const std::regex kDefine(R"(define\s+"([^"]+)\")");
  static const std::regex kInclude(R"((?:include|template)\s+"([^"]+)\")");
  std::set<std::string> defined;
  std::vector<Ref> used;
  for (const auto& f : TemplateFiles()) {
    std::string text = weft::ReadFile(f).value();
    for (std::sregex_iterator it(text.begin(), text.end(), kDefine), end; it != end; ++it)
      defined.insert((*it)[1]);
    for (std::sregex_iterator it(text.begin(), text.end(), kInclude), end; it != end; ++it)
      used.push_back({(*it)[1], f.filename().string()});
  }
  ASSERT_FALSE(used.empty());
  for (const Ref& u : used) {
    EXPECT_TRUE(defined.contains(u.path)) << u.where << " includes undefined \"" << u.path << "\"";
  }
}

// ---- flags --------------------------------------------------------------------------------

struct HelpRun {
  int exit_code = -1;
  std::string out;
};

// `binary [subcommand] --help`.
HelpRun RunHelp(const std::string& binary, const std::string& subcommand = "") {
  HelpRun r;
  std::string cmd = "'" + binary + "' " + (subcommand.empty() ? "" : "'" + subcommand + "' ") +
                    "--help 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// The flags each container passes, by binary: a `command: ["/usr/local/bin/NAME"]` line starts a
// container's binary; list items `- --flag` (or `- "--flag=..."`) that follow belong to it; any
// other `command:` ends it.
std::map<std::string, std::vector<Ref>> FlagsByBinary() {
  static const std::regex kCommand(R"(^\s*command:\s*(.*)$)");
  static const std::regex kBinary(R"(^\[\s*"/usr/local/bin/([A-Za-z0-9_-]+)\"\s*\]\s*$)");
  static const std::regex kFlag(R"(^\s*-\s*"?(--[A-Za-z0-9][A-Za-z0-9-]*))");
  std::map<std::string, std::vector<Ref>> flags;
  for (const auto& f : ManifestTemplates()) {
    std::stringstream in(weft::ReadFile(f).value());
    std::string line, binary;
    for (int n = 1; std::getline(in, line); ++n) {
      std::smatch m;
      std::string where = f.filename().string() + ":" + std::to_string(n);
      if (std::regex_search(line, m, kCommand)) {
        std::smatch b;
        std::string rest = m[1].str();
        binary = std::regex_match(rest, b, kBinary) ? b[1].str() : "";
      } else if (std::regex_search(line, m, kFlag)) {
        EXPECT_FALSE(binary.empty())
            << where << ": flag " << m[1] << " outside a container whose command is a Weft binary";
        flags[binary].push_back({m[1].str(), where});
      }
    }
  }
  return flags;
}

TEST(HelmChartTest, EveryFlagIsAcceptedByItsBinary) {
  const std::map<std::string, std::string> binaries = {{"weftd", WEFT_WEFTD_BIN},
                                                       {"ztunnel", WEFT_ZTUNNEL_BIN},
                                                       {"weft-agent", WEFT_AGENT_BIN},
                                                       {"weftctl", WEFT_WEFTCTL_BIN}};
  // weftctl runs one subcommand (the optional dashboard container), whose flags it checks.
  const std::map<std::string, std::string> subcommand = {{"weftctl", "dashboard"}};
  auto flags = FlagsByBinary();
  for (const auto& [name, path] : binaries) {
    SCOPED_TRACE(name);
    // Each binary runs in the chart with at least its control-plane / source flags.
    ASSERT_TRUE(flags.contains(name)) << "no template runs " << name;
    EXPECT_GE(flags[name].size(), 5u);
    auto sub = subcommand.find(name);
    HelpRun help = RunHelp(path, sub == subcommand.end() ? "" : sub->second);
    ASSERT_EQ(help.exit_code, 0) << path << " --help failed";
    for (const Ref& flag : flags[name]) {
      // The flag as a whole word: --cp-root must not match --cp-root-file.
      std::regex word("(^|[^A-Za-z0-9-])" + flag.path + "([^A-Za-z0-9-]|$)");
      EXPECT_TRUE(std::regex_search(help.out, word))
          << flag.where << " passes " << flag.path << " to " << name
          << ", which its --help does not know:\n"
          << help.out;
    }
  }
  for (const auto& [name, refs] : flags) {
    EXPECT_TRUE(binaries.contains(name)) << refs.front().where << " runs unknown binary " << name;
  }
}

// ---- images -------------------------------------------------------------------------------

// The images the chart runs come from packaging/Containerfile: one stage per binary, named like
// the binary and like the end of the values' image repository, with the binary where the
// chart's `command:` expects it.
TEST(HelmChartTest, ImagesMatchTheContainerfile) {
  std::string cf = weft::ReadFile(fs::path(WEFT_PACKAGING_DIR) / "Containerfile").value();
  YAML::Node v = YAML::LoadFile((kChart / "values.yaml").string());
  const std::map<std::string, std::string> component_binary = {
      {"weftd", "weftd"}, {"ztunnel", "ztunnel"}, {"agent", "weft-agent"}};
  auto flags = FlagsByBinary();
  for (const auto& [component, binary] : component_binary) {
    SCOPED_TRACE(binary);
    EXPECT_TRUE(flags.contains(binary)) << "no template runs /usr/local/bin/" << binary;
    EXPECT_TRUE(std::regex_search(cf, std::regex("\\nFROM [^\\n]+ AS " + binary + "\\n")))
        << "packaging/Containerfile has no stage " << binary;
    EXPECT_NE(cf.find("/usr/local/bin/" + binary), std::string::npos);
    std::string repo = v[component]["image"]["repository"].as<std::string>();
    EXPECT_EQ(repo.substr(repo.rfind('/') + 1), binary) << component << ".image.repository";
  }
}

// packaging/runtime-debs.sh (what the Containerfile installs in each runtime image) finds the
// package of every shared library of the real binaries.
TEST(HelmChartTest, RuntimeDebsListsEachBinarysPackages) {
  if (std::system("command -v dpkg >/dev/null 2>&1 && command -v ldd >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "needs dpkg and ldd (a Debian build host, as in the Containerfile)";
  for (const std::string bin : {WEFT_WEFTD_BIN, WEFT_ZTUNNEL_BIN, WEFT_AGENT_BIN}) {
    SCOPED_TRACE(bin);
    std::string cmd = "'" + std::string(WEFT_PACKAGING_DIR) + "/runtime-debs.sh' '" + bin + "'";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = ::pclose(p);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
    // Every binary is C++ over libc and links protobuf; only weftd serves gRPC (ztunnel and the
    // agent speak to it with common/grpc_client, nghttp2 + OpenSSL), so only its image has it.
    for (const char* pkg : {"libc6:", "libstdc++6:", "libprotobuf"}) {
      EXPECT_NE(out.find(pkg), std::string::npos) << pkg << " missing from:\n" << out;
    }
    const bool serves_grpc = bin == WEFT_WEFTD_BIN;
    EXPECT_EQ(out.find("libgrpc++") != std::string::npos, serves_grpc) << out;
    if (!serves_grpc) EXPECT_NE(out.find("libnghttp2"), std::string::npos) << out;
  }
}

// ---- manifests ----------------------------------------------------------------------------

// Helpers defined as a constant on one line: {{- define "NAME" -}}BODY{{- end }}.
std::map<std::string, std::string> ConstantHelpers() {
  static const std::regex kConst(
      R"re(\{\{-?\s*define\s+"([^"]+)"\s*-?\}\}([^{}\n]+)\{\{-?\s*end\s*-?\}\})re");
  std::map<std::string, std::string> out;
  std::string text = weft::ReadFile(kChart / "templates" / "_helpers.tpl").value();
  for (std::sregex_iterator it(text.begin(), text.end(), kConst), end; it != end; ++it)
    out[(*it)[1]] = (*it)[2];
  return out;
}

constexpr char kPlaceholder[] = "TEMPLATED";

// Not a template renderer: comments go; `include` of a constant helper becomes its text; a line
// holding only actions ({{ if }}, {{ end }}, {{- toYaml ... | nindent }}) goes; any other action
// becomes a placeholder scalar. Both branches of a conditional stay, so this works for templates
// whose branches are each valid YAML in place, which the chart's are. An action spread over
// several lines is reported, not guessed at.
std::string StripActions(const fs::path& f) {
  std::string text = weft::ReadFile(f).value();
  text = std::regex_replace(text, std::regex(R"(\{\{-?\s*/\*[\s\S]*?\*/\s*-?\}\})"), "");
  for (const auto& [name, body] : ConstantHelpers()) {
    std::regex inc("\\{\\{-?\\s*include\\s+\"" + name + "\"\\s+\\.\\s*-?\\}\\}");
    text = std::regex_replace(text, inc, body);
  }
  static const std::regex kAction(R"(\{\{.*?\}\})");
  std::stringstream in(text), out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::string bare = std::regex_replace(line, kAction, "");
    EXPECT_EQ(bare.find("{{"), std::string::npos)
        << f.filename() << ":" << n << ": an action over several lines; keep actions on one line";
    if (bare.find_first_not_of(" \t") == std::string::npos && bare.size() != line.size()) continue;
    out << std::regex_replace(line, kAction, kPlaceholder) << "\n";
  }
  return out.str();
}

struct Object {
  std::string file;
  YAML::Node node;
  std::string kind() const { return node["kind"].as<std::string>(); }
  std::string name() const { return node["metadata"]["name"].as<std::string>(); }
};

std::vector<Object> Objects() {
  std::vector<Object> out;
  for (const auto& f : ManifestTemplates()) {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(StripActions(f));
    } catch (const YAML::Exception& e) {
      ADD_FAILURE() << f.filename() << " (template actions stripped) is not YAML: " << e.what()
                    << "\n"
                    << StripActions(f);
      continue;
    }
    for (const auto& d : docs) {
      if (d.IsNull()) continue;
      out.push_back({f.filename().string(), d});
    }
  }
  return out;
}

const Object* Find(const std::vector<Object>& objs, const std::string& kind,
                   const std::string& name) {
  for (const auto& o : objs) {
    if (o.kind() == kind && o.name() == name) return &o;
  }
  return nullptr;
}

TEST(HelmChartTest, ManifestsAreKubernetesObjects) {
  std::vector<Object> objs = Objects();
  ASSERT_GE(objs.size(), 8u);
  for (const auto& o : objs) {
    ASSERT_TRUE(o.node.IsMap()) << o.file;
    EXPECT_TRUE(o.node["apiVersion"].IsScalar()) << o.file;
    ASSERT_TRUE(o.node["kind"].IsScalar()) << o.file;
    ASSERT_TRUE(o.node["metadata"]["name"].IsScalar()) << o.file << " " << o.kind();
    EXPECT_TRUE(o.node["metadata"]["labels"].IsDefined()) << o.file << " " << o.kind();
  }
  for (const auto& [kind, name] :
       std::vector<std::pair<std::string, std::string>>{{"Deployment", "weftd"},
                                                        {"Service", "weftd"},
                                                        {"ServiceAccount", "weftd"},
                                                        {"DaemonSet", "weft-node"},
                                                        {"DaemonSet", "weft-ztunnel"},
                                                        {"ServiceAccount", "ztunnel"},
                                                        {"ClusterRole", "weftd"},
                                                        {"ClusterRoleBinding", "weftd"}}) {
    EXPECT_NE(Find(objs, kind, name), nullptr) << kind << "/" << name << " missing";
  }
}

// Kubernetes' IANA_SVC_NAME rule for port names: 1-15 of [a-z0-9-], a letter, no "--", no
// leading or trailing '-'.
bool ValidPortName(const std::string& s) {
  static const std::regex kName("^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$");
  return std::regex_match(s, kName) && s.find("--") == std::string::npos &&
         s.find_first_of("abcdefghijklmnopqrstuvwxyz") != std::string::npos;
}

void CheckPodSpec(const Object& o, std::set<std::string>* port_names) {
  SCOPED_TRACE(o.file + " " + o.kind() + "/" + o.name());
  const YAML::Node spec = o.node["spec"]["template"]["spec"];
  ASSERT_TRUE(spec.IsMap());
  std::set<std::string> volumes, mounted;
  for (const auto& v : spec["volumes"]) volumes.insert(v["name"].as<std::string>());
  std::vector<YAML::Node> containers;
  for (const auto& c : spec["initContainers"]) containers.push_back(c);
  for (const auto& c : spec["containers"]) containers.push_back(c);
  ASSERT_FALSE(containers.empty());
  for (const auto& c : containers) {
    std::string cname = c["name"].as<std::string>();
    std::set<std::string> own_ports;
    for (const auto& p : c["ports"]) {
      std::string pn = p["name"].as<std::string>();
      EXPECT_TRUE(ValidPortName(pn)) << cname << ": port name \"" << pn << "\" is not valid";
      EXPECT_TRUE(port_names->insert(pn).second) << cname << ": port name " << pn << " repeated";
      own_ports.insert(pn);
    }
    for (const char* probe : {"readinessProbe", "livenessProbe", "startupProbe"}) {
      if (!c[probe].IsDefined()) continue;
      YAML::Node port = c[probe]["httpGet"]["port"];
      if (!port.IsDefined()) continue;
      EXPECT_TRUE(own_ports.contains(port.as<std::string>()))
          << cname << " " << probe << " uses port " << port.as<std::string>()
          << ", which the container does not declare";
    }
    for (const auto& m : c["volumeMounts"]) {
      std::string vn = m["name"].as<std::string>();
      EXPECT_TRUE(volumes.contains(vn)) << cname << " mounts undefined volume " << vn;
      mounted.insert(vn);
    }
  }
  for (const auto& v : volumes) EXPECT_TRUE(mounted.contains(v)) << "volume " << v << " unused";
}

TEST(HelmChartTest, CrossReferencesHold) {
  std::vector<Object> objs = Objects();
  const Object* deploy = Find(objs, "Deployment", "weftd");
  const Object* ds = Find(objs, "DaemonSet", "weft-node");
  const Object* zds = Find(objs, "DaemonSet", "weft-ztunnel");
  const Object* svc = Find(objs, "Service", "weftd");
  ASSERT_TRUE(deploy && ds && zds && svc);

  std::set<std::string> weftd_ports, node_ports, ztunnel_ports;
  CheckPodSpec(*deploy, &weftd_ports);
  CheckPodSpec(*ds, &node_ports);
  CheckPodSpec(*zds, &ztunnel_ports);

  for (const auto& p : svc->node["spec"]["ports"]) {
    EXPECT_TRUE(weftd_ports.contains(p["targetPort"].as<std::string>()))
        << "Service weftd targets port " << p["targetPort"] << " that weftd does not declare";
  }
  if (const Object* sm = Find(objs, "ServiceMonitor", "weftd")) {
    std::set<std::string> svc_ports;
    for (const auto& p : svc->node["spec"]["ports"]) svc_ports.insert(p["name"].as<std::string>());
    for (const auto& e : sm->node["spec"]["endpoints"])
      EXPECT_TRUE(svc_ports.contains(e["port"].as<std::string>())) << e["port"];
  } else {
    ADD_FAILURE() << "no ServiceMonitor weftd in monitoring.yaml";
  }
  for (const auto& [name, ports] : std::vector<std::pair<std::string, std::set<std::string>>>{
           {"weft-node", node_ports}, {"weft-ztunnel", ztunnel_ports}}) {
    if (const Object* pm = Find(objs, "PodMonitor", name)) {
      for (const auto& e : pm->node["spec"]["podMetricsEndpoints"])
        EXPECT_TRUE(ports.contains(e["port"].as<std::string>())) << name << " " << e["port"];
    } else {
      ADD_FAILURE() << "no PodMonitor " << name << " in monitoring.yaml";
    }
  }

  // weftd runs as the ServiceAccount clusterrole.yaml binds; the node pods as the one weftd
  // accepts node tokens from (system:serviceaccount:<ns>:ztunnel).
  std::string weftd_sa =
      deploy->node["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>();
  EXPECT_NE(Find(objs, "ServiceAccount", weftd_sa), nullptr);
  for (const char* kind : {"ClusterRoleBinding", "RoleBinding"}) {
    int bindings = 0;
    for (const auto& o : objs) {
      if (o.kind() != kind) continue;
      ++bindings;
      ASSERT_EQ(o.node["subjects"].size(), 1u) << o.name();
      // weft-node: the agent's own rule (its node's taint), for the node pods' account.
      EXPECT_EQ(o.node["subjects"][0]["name"].as<std::string>(),
                o.name() == "weft-node" ? "ztunnel" : weftd_sa)
          << kind << " " << o.name();
    }
    EXPECT_GE(bindings, 1) << "no " << kind;
  }
  for (const Object* node : {ds, zds}) {
    EXPECT_EQ(node->node["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>(),
              "ztunnel")
        << node->name();
  }
}

TEST(HelmChartTest, ClusterRoleCoversTheCrds) {
  std::vector<Object> objs = Objects();
  const Object* role = Find(objs, "ClusterRole", "weftd");
  ASSERT_NE(role, nullptr);
  int crds = 0;
  for (const auto& e : fs::directory_iterator(kChart / "crds")) {
    SCOPED_TRACE(e.path().filename().string());
    YAML::Node crd = YAML::LoadFile(e.path().string());
    ASSERT_EQ(crd["kind"].as<std::string>(), "CustomResourceDefinition");
    ++crds;
    std::string group = crd["spec"]["group"].as<std::string>();
    std::string plural = crd["spec"]["names"]["plural"].as<std::string>();
    EXPECT_EQ(crd["metadata"]["name"].as<std::string>(), plural + "." + group);
    std::set<std::string> verbs;
    for (const auto& rule : role->node["rules"]) {
      bool g = false, r = false;
      for (const auto& x : rule["apiGroups"]) g |= x.as<std::string>() == group;
      for (const auto& x : rule["resources"]) r |= x.as<std::string>() == plural;
      if (g && r) {
        for (const auto& v : rule["verbs"]) verbs.insert(v.as<std::string>());
      }
    }
    EXPECT_TRUE(verbs.contains("list") && verbs.contains("watch"))
        << "ClusterRole weftd does not grant list+watch on " << plural << "." << group;
  }
  EXPECT_GE(crds, 2);
}

}  // namespace

namespace {

TEST(HelmChartTest, GrafanaDashboardsAreWellFormed) {
  auto dashboards = weft::e2e::LoadDashboards((kChart / "dashboards").string());
  ASSERT_TRUE(dashboards.ok()) << dashboards.status();
  ASSERT_GE(dashboards->size(), 2u) << "the mesh overview and the request views";
  std::set<std::string> uids;
  for (const auto& d : *dashboards) {
    SCOPED_TRACE(d.file);
    ASSERT_TRUE(d.json.is_object());
    EXPECT_FALSE(d.json.value("title", "").empty());
    const std::string uid = d.json.value("uid", "");
    EXPECT_FALSE(uid.empty());
    EXPECT_TRUE(uids.insert(uid).second) << "uid " << uid << " used twice";
    std::set<int> ids;
    for (const auto& p : weft::e2e::AllPanels(d.json)) {
      ASSERT_TRUE(p.contains("id") && p["id"].is_number_integer()) << p.dump();
      EXPECT_TRUE(ids.insert(p["id"].get<int>()).second) << "panel id " << p["id"] << " twice";
      if (p.value("type", "") != "row") {
        EXPECT_FALSE(p.value("targets", nlohmann::json::array()).empty())
            << "panel \"" << p.value("title", "") << "\" has no query";
      }
    }
    const std::set<std::string> vars = weft::e2e::Variables(d.json);
    EXPECT_EQ(vars.count("datasource"), 1u) << "the Prometheus data source is a variable";
    auto queries = weft::e2e::Queries(d);
    EXPECT_FALSE(queries.empty());
    for (const auto& q : queries) {
      EXPECT_FALSE(q.expr.empty()) << q.Name();
      for (const std::string& v : weft::e2e::UsedVariables(q.expr)) {
        EXPECT_TRUE(vars.count(v) || weft::e2e::BuiltinVariables().count(v))
            << q.Name() << " uses $" << v << ", which the dashboard does not define";
      }
    }
  }
}

}  // namespace
