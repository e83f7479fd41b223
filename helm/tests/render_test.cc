// The chart rendered for real (helm/tests/render: Go's text/template + sprig + Helm's functions,
// strict about missing values) with the default values and with every switch flipped, then:
//  - every document is a Kubernetes object in the release namespace (cluster-scoped kinds
//    excepted), and the switches show up as they should;
//  - the arguments each container passes, values substituted, are accepted by the real parsers:
//    weftd and ztunnel are run with them followed by --help (common/flags.h: the usage is
//    printed only if everything before parsed), weft-agent's ParseCommandLine is called directly
//    (it also checks the required and exclusive flags);
//  - the node pods dial weftd's Service on its gRPC port, and the scrape annotations name a
//    port a container declares;
//  - values the chart refuses (rootNamespace, capture) fail the render with a message.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "agent/agent.h"

namespace {

namespace fs = std::filesystem;

struct Result {
  int exit_code = -1;
  std::string out;  // stdout and stderr
};

// Runs argv (no shell), stdout and stderr together.
Result RunArgv(const std::vector<std::string>& argv) {
  Result r;
  int fds[2];
  if (::pipe(fds) != 0) return r;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) r.out.append(buf, n);
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class HelmRenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-helm-render-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Renders with an extra values file (empty: the defaults); the objects, or a failed render.
  Result Render(const std::string& ns, const std::string& values_yaml) {
    std::vector<std::string> argv = {WEFT_HELM_RENDER, WEFT_HELM_DIR, "-n", ns, "-r", "weft"};
    if (!values_yaml.empty()) {
      std::string f = dir_ + "/values-" + std::to_string(files_++) + ".yaml";
      std::ofstream(f) << values_yaml;
      argv.insert(argv.end(), {"-f", f});
    }
    return RunArgv(argv);
  }

  std::vector<YAML::Node> Objects(const Result& r) {
    EXPECT_EQ(r.exit_code, 0) << r.out;
    std::vector<YAML::Node> out;
    for (const auto& d : YAML::LoadAll(r.out)) {
      if (!d.IsNull()) out.push_back(d);
    }
    return out;
  }

  std::string dir_;
  int files_ = 0;
};

YAML::Node Find(const std::vector<YAML::Node>& objs, const std::string& kind,
                const std::string& name) {
  for (const auto& o : objs) {
    if (o["kind"].as<std::string>() == kind && o["metadata"]["name"].as<std::string>() == name)
      return o;
  }
  ADD_FAILURE() << kind << "/" << name << " not rendered";
  return YAML::Node();
}

YAML::Node Container(const YAML::Node& workload, const std::string& name) {
  for (const auto& c : workload["spec"]["template"]["spec"]["containers"]) {
    if (c["name"].as<std::string>() == name) return c;
  }
  ADD_FAILURE() << "no container " << name;
  return YAML::Node();
}

// The container's command and args, $(NODE_NAME) expanded as the kubelet would.
std::vector<std::string> Args(const YAML::Node& c) {
  std::vector<std::string> out;
  for (const auto& a : c["args"]) {
    std::string s = a.as<std::string>();
    if (s == "$(NODE_NAME)") s = "node-1";
    out.push_back(s);
  }
  return out;
}

std::string FlagValue(const std::vector<std::string>& args, const std::string& flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) return args[i + 1];
  }
  return "";
}

bool HasFlag(const std::vector<std::string>& args, const std::string& flag) {
  return std::find(args.begin(), args.end(), flag) != args.end();
}

// Every flag and value the chart passes is accepted by the real binaries' parsers.
void ExpectArgsAccepted(const std::vector<YAML::Node>& objs) {
  YAML::Node deploy = Find(objs, "Deployment", "weftd");
  YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
  for (const auto& [bin, c] : std::vector<std::pair<std::string, YAML::Node>>{
           {WEFT_WEFTD_BIN, Container(deploy, "weftd")},
           {WEFT_ZTUNNEL_BIN, Container(ds, "ztunnel")}}) {
    std::vector<std::string> argv = {bin};
    for (const auto& a : Args(c)) argv.push_back(a);
    argv.push_back("--help");
    Result r = RunArgv(argv);
    EXPECT_EQ(r.exit_code, 0) << bin << " refused the chart's arguments:\n" << r.out;
    EXPECT_NE(r.out.find("usage:"), std::string::npos) << r.out;
  }
  std::vector<std::string> agent = {"weft-agent"};
  for (const auto& a : Args(Container(ds, "weft-agent"))) agent.push_back(a);
  std::vector<const char*> argv;
  for (const auto& a : agent) argv.push_back(a.c_str());
  auto cl = weft::agent::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(cl.ok()) << "weft-agent refused the chart's arguments: " << cl.status();
  EXPECT_EQ(cl->options.node, "node-1");
  EXPECT_TRUE(cl->options.control_plane.enabled());
}

TEST_F(HelmRenderTest, DefaultsRenderAndEveryArgumentIsAccepted) {
  auto objs = Objects(Render("weft-system", ""));
  ASSERT_GE(objs.size(), 9u);
  for (const auto& o : objs) {
    std::string kind = o["kind"].as<std::string>();
    SCOPED_TRACE(kind + "/" + o["metadata"]["name"].as<std::string>());
    if (kind == "ClusterRole" || kind == "ClusterRoleBinding") {
      EXPECT_FALSE(o["metadata"]["namespace"].IsDefined());
    } else {
      EXPECT_EQ(o["metadata"]["namespace"].as<std::string>(), "weft-system");
    }
  }
  ExpectArgsAccepted(objs);

  YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
  YAML::Node svc = Find(objs, "Service", "weftd");
  YAML::Node pod = ds["spec"]["template"]["spec"];
  EXPECT_TRUE(pod["hostNetwork"].as<bool>());
  EXPECT_TRUE(pod["hostPID"].as<bool>());
  EXPECT_EQ(pod["initContainers"][0]["name"].as<std::string>(), "mount-bpffs");
  int grpc_port = -1;
  for (const auto& p : svc["spec"]["ports"]) {
    if (p["name"].as<std::string>() == "grpc") grpc_port = p["port"].as<int>();
  }
  for (const char* c : {"weft-agent", "ztunnel"}) {
    SCOPED_TRACE(c);
    auto args = Args(Container(ds, c));
    EXPECT_EQ(FlagValue(args, "--control-plane"),
              "weftd.weft-system.svc.cluster.local:" + std::to_string(grpc_port));
    EXPECT_EQ(FlagValue(args, "--cp-server-name"), "weftd.weft-system.svc");
    EXPECT_EQ(FlagValue(args, "--node"), "node-1");
  }
  // The node token is projected with weftd's CA audience, and weftd asks for that audience.
  bool token_projected = false;
  for (const auto& v : pod["volumes"]) {
    if (!v["projected"]) continue;
    for (const auto& src : v["projected"]["sources"]) {
      if (!src["serviceAccountToken"]) continue;
      token_projected = true;
      EXPECT_EQ(src["serviceAccountToken"]["audience"].as<std::string>(), "weft-ca");
    }
  }
  EXPECT_TRUE(token_projected);
  EXPECT_EQ(FlagValue(Args(Container(Find(objs, "Deployment", "weftd"), "weftd")), "--ca-audience"),
            "weft-ca");
  EXPECT_EQ(FlagValue(Args(Container(ds, "weft-agent")), "--capture"), "auto");
  EXPECT_TRUE(HasFlag(Args(Container(ds, "weft-agent")), "--cgroup"));

  // The scrape annotation names a port one of the pod's containers declares.
  for (const auto& w : {ds, Find(objs, "Deployment", "weftd")}) {
    std::string port =
        w["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"].as<std::string>();
    bool declared = false;
    for (const auto& c : w["spec"]["template"]["spec"]["containers"])
      for (const auto& p : c["ports"])
        declared |= std::to_string(p["containerPort"].as<int>()) == port;
    EXPECT_TRUE(declared) << "prometheus.io/port " << port;
  }
  for (const auto& o : objs) {
    std::string kind = o["kind"].as<std::string>();
    EXPECT_NE(kind, "ServiceMonitor") << "off by default";
    EXPECT_NE(kind, "PodMonitor") << "off by default";
  }
}

// weftd accepts node tokens of system:serviceaccount:<its namespace>:<sa> (its --help names the
// default); the node pods must run as that ServiceAccount.
TEST_F(HelmRenderTest, NodePodsRunAsTheServiceAccountWeftdAccepts) {
  Result help = RunArgv({WEFT_WEFTD_BIN, "--help"});
  ASSERT_EQ(help.exit_code, 0) << help.out;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(help.out, m, std::regex(R"(system:serviceaccount:NS:([a-z0-9-]+))")))
      << "weftd --help no longer names its default node ServiceAccount:\n"
      << help.out;
  auto objs = Objects(Render("weft-system", ""));
  YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
  EXPECT_EQ(ds["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>(), m[1].str());
  Find(objs, "ServiceAccount", m[1].str());
}

TEST_F(HelmRenderTest, EverySwitchFlipped) {
  auto objs = Objects(Render("mesh", R"(
capture: iptables
logLevel: warn
clusterDomain: example.internal
node:
  mountBpffs: false
  seLinuxOptions: null
prometheus:
  annotations: false
  serviceMonitor: {enabled: true, labels: {release: prom}}
  podMonitor: {enabled: true}
ztunnel:
  workers: 4
  accessLog: false
  sameNodeFastPath: false
  logLevel: debug
weftd:
  image: {tag: "9.9.9"}
)"));
  ExpectArgsAccepted(objs);
  YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
  YAML::Node pod = ds["spec"]["template"]["spec"];
  EXPECT_FALSE(pod["initContainers"].IsDefined());
  EXPECT_FALSE(pod["securityContext"].IsDefined());
  auto agent = Args(Container(ds, "weft-agent"));
  auto zt = Args(Container(ds, "ztunnel"));
  EXPECT_EQ(FlagValue(agent, "--capture"), "iptables");
  EXPECT_FALSE(HasFlag(agent, "--cgroup")) << "weft-agent refuses --cgroup with iptables";
  EXPECT_EQ(FlagValue(agent, "--log-level"), "warn");
  EXPECT_EQ(FlagValue(zt, "--log-level"), "debug");
  EXPECT_EQ(FlagValue(zt, "--workers"), "4");
  EXPECT_TRUE(HasFlag(zt, "--no-access-log"));
  EXPECT_TRUE(HasFlag(zt, "--no-same-node-fast-path"));
  EXPECT_EQ(FlagValue(zt, "--control-plane"), "weftd.mesh.svc.example.internal:15012");
  EXPECT_EQ(FlagValue(zt, "--cp-server-name"), "weftd.mesh.svc");
  YAML::Node deploy = Find(objs, "Deployment", "weftd");
  EXPECT_EQ(FlagValue(Args(Container(deploy, "weftd")), "--namespace"), "mesh");
  EXPECT_EQ(Container(deploy, "weftd")["image"].as<std::string>(), "weft/weftd:9.9.9");
  EXPECT_FALSE(
      deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"].IsDefined());
  YAML::Node sm = Find(objs, "ServiceMonitor", "weftd");
  EXPECT_EQ(sm["metadata"]["labels"]["release"].as<std::string>(), "prom");
  YAML::Node pm = Find(objs, "PodMonitor", "weft-node");
  EXPECT_EQ(pm["spec"]["podMetricsEndpoints"].size(), 2u);
}

// Issue 13 hole 9: ztunnel (which parses every pod's bytes) holds only the capabilities it
// needs, under the runtime's seccomp filter and no_new_privs; /metrics, which names other
// tenants' workloads, is fenced off to the monitoring namespace.
bool Selects(const YAML::Node& policy, const YAML::Node& workload) {
  YAML::Node labels = workload["spec"]["template"]["metadata"]["labels"];
  for (const auto& kv : policy["spec"]["podSelector"]["matchLabels"]) {
    if (!labels[kv.first.as<std::string>()] ||
        labels[kv.first.as<std::string>()].as<std::string>() != kv.second.as<std::string>()) {
      return false;
    }
  }
  return policy["spec"]["podSelector"]["matchLabels"].size() > 0;
}

// Ports an ingress policy opens to everyone, and ports it opens only to the monitoring
// namespace.
void PolicyPorts(const YAML::Node& policy, std::set<int>* open, std::set<int>* monitoring) {
  for (const auto& rule : policy["spec"]["ingress"]) {
    std::set<int>* into = open;
    if (rule["from"]) {
      ASSERT_EQ(rule["from"].size(), 1u);
      EXPECT_EQ(rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    .as<std::string>(),
                "monitoring");
      into = monitoring;
    }
    for (const auto& p : rule["ports"]) into->insert(p["port"].as<int>());
  }
}

TEST_F(HelmRenderTest, ZtunnelHasLeastPrivilegeAndMetricsAreFenced) {
  auto objs = Objects(Render("weft-system", ""));
  YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
  YAML::Node sc = Container(ds, "ztunnel")["securityContext"];
  std::vector<std::string> drop, add;
  for (const auto& c : sc["capabilities"]["drop"]) drop.push_back(c.as<std::string>());
  for (const auto& c : sc["capabilities"]["add"]) add.push_back(c.as<std::string>());
  EXPECT_EQ(drop, std::vector<std::string>{"ALL"});
  std::sort(add.begin(), add.end());
  EXPECT_EQ(add, (std::vector<std::string>{"BPF", "NET_ADMIN", "SYS_ADMIN"}));
  EXPECT_EQ(sc["seccompProfile"]["type"].as<std::string>(), "RuntimeDefault");
  EXPECT_FALSE(sc["allowPrivilegeEscalation"].as<bool>());
  EXPECT_FALSE(sc["privileged"] && sc["privileged"].as<bool>());
  EXPECT_TRUE(sc["readOnlyRootFilesystem"].as<bool>());

  YAML::Node weftd = Find(objs, "Deployment", "weftd");
  YAML::Node np = Find(objs, "NetworkPolicy", "weftd-metrics");
  EXPECT_TRUE(Selects(np, weftd));
  EXPECT_EQ(np["spec"]["policyTypes"][0].as<std::string>(), "Ingress");
  std::set<int> open, monitoring;
  PolicyPorts(np, &open, &monitoring);
  EXPECT_EQ(open, (std::set<int>{15012, 15015}));
  EXPECT_EQ(monitoring, std::set<int>{15014});
  for (const auto& o : objs) {
    EXPECT_FALSE(o["kind"].as<std::string>() == "NetworkPolicy" &&
                 o["metadata"]["name"].as<std::string>() == "weft-node-metrics")
        << "the node pods' policy is opt-in (hostNetwork)";
  }

  objs = Objects(Render("weft-system", "networkPolicy: {nodeMetrics: true}\n"));
  YAML::Node node_np = Find(objs, "NetworkPolicy", "weft-node-metrics");
  EXPECT_TRUE(Selects(node_np, Find(objs, "DaemonSet", "weft-node")));
  open.clear();
  monitoring.clear();
  PolicyPorts(node_np, &open, &monitoring);
  EXPECT_EQ(open, std::set<int>{15021});
  EXPECT_EQ(monitoring, (std::set<int>{15020, 15030}));

  objs = Objects(Render("weft-system", "networkPolicy: {enabled: false}\n"));
  for (const auto& o : objs) EXPECT_NE(o["kind"].as<std::string>(), "NetworkPolicy");
}

TEST_F(HelmRenderTest, RefusedValuesFailWithAMessage) {
  Result r = Render("weft-system", "rootNamespace: istio-system\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("leave rootNamespace at weft-system"), std::string::npos) << r.out;
  r = Render("weft-system", "capture: tc\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("use auto, ebpf, iptables or none"), std::string::npos) << r.out;
  // Strict like `helm lint --strict`: a template reading a value that is not there fails.
  r = Render("weft-system", "ztunnel: null\n");
  EXPECT_NE(r.exit_code, 0) << r.out;
}

}  // namespace
