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
//  - ztunnel runs in a DaemonSet of its own with least privilege (no host PID namespace, only
//    the capabilities it needs), the handoff socket is the same file for the agent and ztunnel,
//    and /metrics is fenced off to the monitoring namespace (issue 13, hole 9);
//  - values the chart refuses (rootNamespace, capture) fail the render with a message.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "bpf/bpffs.h"
#include "bpf/pinned_maps.h"
#include "bpf/pins.h"
#include "bpf/testing.h"
#include "common/net.h"
#include "common/netns.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "ztunnel/capture/capture.h"
#include "ztunnel/proxy/io.h"

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
  YAML::Node zds = Find(objs, "DaemonSet", "weft-ztunnel");
  for (const auto& [bin, c] : std::vector<std::pair<std::string, YAML::Node>>{
           {WEFT_WEFTD_BIN, Container(deploy, "weftd")},
           {WEFT_ZTUNNEL_BIN, Container(zds, "ztunnel")}}) {
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
  // Istio's policies are read by default: weftd may list and watch them.
  EXPECT_NE(YAML::Dump(Find(objs, "Deployment", "weftd")).find("--istio-policies=true"),
            std::string::npos);
  EXPECT_NE(YAML::Dump(Find(objs, "ClusterRole", "weftd")).find("security.istio.io"),
            std::string::npos);
  {
    // The agent removes its node's taint: get + patch on nodes and nothing else, for the node
    // pods' account, with an API token mounted in the agent's container only.
    YAML::Node role = Find(objs, "ClusterRole", "weft-node");
    ASSERT_TRUE(role.IsDefined());
    ASSERT_EQ(role["rules"].size(), 1u);
    EXPECT_EQ(role["rules"][0]["resources"][0].as<std::string>(), "nodes");
    EXPECT_EQ(role["rules"][0]["verbs"].size(), 2u);
    EXPECT_EQ(
        Find(objs, "ClusterRoleBinding", "weft-node")["subjects"][0]["name"].as<std::string>(),
        "ztunnel");
    YAML::Node agent = Container(Find(objs, "DaemonSet", "weft-node"), "weft-agent");
    EXPECT_TRUE(HasFlag(Args(agent), "--kubernetes"));
    bool token = false;
    for (const auto& m : agent["volumeMounts"])
      token |= m["mountPath"].as<std::string>() == "/var/run/secrets/kubernetes.io/serviceaccount";
    EXPECT_TRUE(token) << "in-cluster credentials for the agent";
    for (const auto& c :
         Find(objs, "DaemonSet", "weft-ztunnel")["spec"]["template"]["spec"]["containers"])
      for (const auto& m : c["volumeMounts"])
        EXPECT_NE(m["name"].as<std::string>(), "kube-api-access") << "ztunnel gets no API token";
  }

  YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
  YAML::Node zds = Find(objs, "DaemonSet", "weft-ztunnel");
  YAML::Node svc = Find(objs, "Service", "weftd");
  YAML::Node pod = ds["spec"]["template"]["spec"];
  EXPECT_TRUE(pod["hostNetwork"].as<bool>());
  EXPECT_TRUE(pod["hostPID"].as<bool>());
  EXPECT_EQ(pod["initContainers"][0]["name"].as<std::string>(), "mount-bpffs");
  int grpc_port = -1;
  for (const auto& p : svc["spec"]["ports"]) {
    if (p["name"].as<std::string>() == "grpc") grpc_port = p["port"].as<int>();
  }
  for (const auto& [w, c] :
       std::vector<std::pair<YAML::Node, std::string>>{{ds, "weft-agent"}, {zds, "ztunnel"}}) {
    SCOPED_TRACE(c);
    auto args = Args(Container(w, c));
    EXPECT_EQ(FlagValue(args, "--control-plane"),
              "weftd.weft-system.svc.cluster.local:" + std::to_string(grpc_port));
    EXPECT_EQ(FlagValue(args, "--cp-server-name"), "weftd.weft-system.svc");
    EXPECT_EQ(FlagValue(args, "--node"), "node-1");
    // Each node pod projects its own token with weftd's CA audience (and weftd asks for it).
    bool token_projected = false;
    for (const auto& v : w["spec"]["template"]["spec"]["volumes"]) {
      // (kube-api-access: the agent's API-server token, default audience; checked below.)
      if (!v["projected"] || v["name"].as<std::string>() == "kube-api-access") continue;
      for (const auto& src : v["projected"]["sources"]) {
        if (!src["serviceAccountToken"]) continue;
        token_projected = true;
        EXPECT_EQ(src["serviceAccountToken"]["audience"].as<std::string>(), "weft-ca");
      }
    }
    EXPECT_TRUE(token_projected);
  }
  EXPECT_EQ(FlagValue(Args(Container(Find(objs, "Deployment", "weftd"), "weftd")), "--ca-audience"),
            "weft-ca");
  EXPECT_EQ(FlagValue(Args(Container(ds, "weft-agent")), "--capture"), "auto");
  EXPECT_FALSE(HasFlag(Args(Container(ds, "weft-agent")), "--local-legs"));  // off by default
  {
    auto legs = Objects(Render("weft-system", "agent: {localLegs: true}\n"));
    EXPECT_EQ(FlagValue(Args(Container(Find(legs, "DaemonSet", "weft-node"), "weft-agent")),
                        "--local-legs"),
              "on");
  }
  // weft-cni: installed into the host's CNI dirs, served on a host socket at the same path.
  {
    auto args = Args(Container(ds, "weft-agent"));
    EXPECT_EQ(FlagValue(args, "--cni-socket"), "/run/weft-cni/agent.sock");
    EXPECT_EQ(FlagValue(args, "--cni-bin-dir"), "/host/cni/bin");
    EXPECT_EQ(FlagValue(args, "--cni-conf-dir"), "/host/cni/net.d");
    EXPECT_TRUE(HasFlag(args, "--cni-uninstall-on-exit"));
    std::map<std::string, std::string> host;
    for (const auto& v : pod["volumes"])
      if (v["hostPath"])
        host[v["name"].as<std::string>()] = v["hostPath"]["path"].as<std::string>();
    EXPECT_EQ(host["cni-bin"], "/opt/cni/bin");
    EXPECT_EQ(host["cni-conf"], "/etc/cni/net.d");
    EXPECT_EQ(host["cni-socket"], "/run/weft-cni");
    bool socket_mounted = false;
    for (const auto& m : Container(ds, "weft-agent")["volumeMounts"])
      socket_mounted |= m["name"].as<std::string>() == "cni-socket" &&
                        m["mountPath"].as<std::string>() == "/run/weft-cni";
    EXPECT_TRUE(socket_mounted) << "the plugin reaches the agent at the host's path";
  }
  EXPECT_TRUE(HasFlag(Args(Container(ds, "weft-agent")), "--cgroup"));

  // The scrape annotation names a port one of the pod's containers declares.
  for (const auto& w : {ds, zds, Find(objs, "Deployment", "weftd")}) {
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
// Hitless upgrades (docs/upgrades.md): two ztunnel pods overlap on a node (the new one takes the
// old one's listeners over), and the old pod's grace period covers its drain deadline.
TEST_F(HelmRenderTest, ZtunnelRollsWithOverlapAndDrains) {
  for (const char* values : {"", "ztunnel:\n  drainDeadlineSeconds: 90\n"}) {
    SCOPED_TRACE(values);
    auto objs = Objects(Render("weft-system", values));
    YAML::Node zds = Find(objs, "DaemonSet", "weft-ztunnel");
    YAML::Node strategy = zds["spec"]["updateStrategy"];
    EXPECT_EQ(strategy["type"].as<std::string>(), "RollingUpdate");
    EXPECT_EQ(strategy["rollingUpdate"]["maxSurge"].as<int>(), 1);
    EXPECT_EQ(strategy["rollingUpdate"]["maxUnavailable"].as<int>(), 0);
    EXPECT_GT(zds["spec"]["minReadySeconds"].as<int>(), 0);
    const int drain = std::string(values).empty() ? 30 : 90;
    EXPECT_EQ(FlagValue(Args(Container(zds, "ztunnel")), "--drain-deadline"),
              std::to_string(drain) + "s");
    EXPECT_GT(zds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as<int>(), drain);
    // The agent's DaemonSet keeps its own strategy (it holds no listener).
    YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
    EXPECT_EQ(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"].as<int>(), 1);
  }
}

TEST_F(HelmRenderTest, NodePodsRunAsTheServiceAccountWeftdAccepts) {
  Result help = RunArgv({WEFT_WEFTD_BIN, "--help"});
  ASSERT_EQ(help.exit_code, 0) << help.out;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(help.out, m, std::regex(R"(system:serviceaccount:NS:([a-z0-9-]+))")))
      << "weftd --help no longer names its default node ServiceAccount:\n"
      << help.out;
  auto objs = Objects(Render("weft-system", ""));
  for (const char* name : {"weft-node", "weft-ztunnel"}) {
    YAML::Node ds = Find(objs, "DaemonSet", name);
    EXPECT_EQ(ds["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>(), m[1].str())
        << name;
  }
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
  denyAtConnect: false
  logLevel: debug
weftd:
  image: {tag: "9.9.9"}
  istioPolicies: false
cni:
  enabled: false
agent:
  removeNodeTaint: false
)"));
  ExpectArgsAccepted(objs);
  for (const auto& o : objs)  // agent.removeNodeTaint=false: no RBAC for the node pods
    EXPECT_FALSE(o["kind"].as<std::string>().starts_with("ClusterRole") &&
                 o["metadata"]["name"].as<std::string>() == "weft-node");
  EXPECT_FALSE(
      HasFlag(Args(Container(Find(objs, "DaemonSet", "weft-node"), "weft-agent")), "--kubernetes"));
  EXPECT_FALSE(
      HasFlag(Args(Container(Find(objs, "DaemonSet", "weft-node"), "weft-agent")), "--cni-socket"))
      << "cni.enabled=false";
  {
    // No Istio policies: weftd is told so and is not allowed to read them.
    const std::string weftd = YAML::Dump(Find(objs, "Deployment", "weftd"));
    EXPECT_NE(weftd.find("--istio-policies=false"), std::string::npos);
    EXPECT_EQ(YAML::Dump(Find(objs, "ClusterRole", "weftd")).find("security.istio.io"),
              std::string::npos);
  }
  YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
  YAML::Node zds = Find(objs, "DaemonSet", "weft-ztunnel");
  YAML::Node pod = ds["spec"]["template"]["spec"];
  EXPECT_FALSE(pod["initContainers"].IsDefined());
  EXPECT_FALSE(pod["securityContext"].IsDefined());
  EXPECT_FALSE(zds["spec"]["template"]["spec"]["securityContext"].IsDefined());
  // No eBPF capture: ztunnel has no bpffs.
  for (const auto& v : zds["spec"]["template"]["spec"]["volumes"])
    EXPECT_NE(v["name"].as<std::string>(), "bpffs");
  for (const auto& m : Container(zds, "ztunnel")["volumeMounts"])
    EXPECT_NE(m["mountPath"].as<std::string>(), "/sys/fs/bpf");
  auto agent = Args(Container(ds, "weft-agent"));
  auto zt = Args(Container(zds, "ztunnel"));
  EXPECT_EQ(FlagValue(agent, "--capture"), "iptables");
  EXPECT_FALSE(HasFlag(agent, "--cgroup")) << "weft-agent refuses --cgroup with iptables";
  EXPECT_EQ(FlagValue(agent, "--log-level"), "warn");
  EXPECT_EQ(FlagValue(zt, "--log-level"), "debug");
  EXPECT_TRUE(HasFlag(zt, "--no-deny-at-connect"));
  EXPECT_EQ(FlagValue(zt, "--workers"), "4");
  EXPECT_TRUE(HasFlag(zt, "--no-access-log"));
  EXPECT_TRUE(HasFlag(zt, "--no-same-node-fast-path"));
  EXPECT_EQ(FlagValue(zt, "--control-plane"), "weftd.mesh.svc.example.internal:15012");
  EXPECT_EQ(FlagValue(zt, "--cp-server-name"), "weftd.mesh.svc");
  YAML::Node deploy = Find(objs, "Deployment", "weftd");
  EXPECT_EQ(FlagValue(Args(Container(deploy, "weftd")), "--namespace"), "mesh");
  EXPECT_EQ(Container(deploy, "weftd")["image"].as<std::string>(), "localhost/weft/weftd:9.9.9");
  EXPECT_FALSE(
      deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"].IsDefined());
  YAML::Node sm = Find(objs, "ServiceMonitor", "weftd");
  EXPECT_EQ(sm["metadata"]["labels"]["release"].as<std::string>(), "prom");
  YAML::Node pm = Find(objs, "PodMonitor", "weft-node");
  ASSERT_EQ(pm["spec"]["podMetricsEndpoints"].size(), 1u);
  EXPECT_EQ(pm["spec"]["podMetricsEndpoints"][0]["port"].as<std::string>(), "agent-metrics");
  YAML::Node zpm = Find(objs, "PodMonitor", "weft-ztunnel");
  ASSERT_EQ(zpm["spec"]["podMetricsEndpoints"].size(), 1u);
  EXPECT_EQ(zpm["spec"]["podMetricsEndpoints"][0]["port"].as<std::string>(), "zt-metrics");
}

// Issue 13 hole 9: ztunnel (which parses every pod's bytes) runs in a DaemonSet of its own,
// without the host's PID namespace, with only the capabilities its calls need, under the
// runtime's seccomp filter and no_new_privs; /metrics, which names other tenants' workloads, is
// fenced off to the monitoring namespace.
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

std::vector<std::string> Strings(const YAML::Node& list) {
  std::vector<std::string> out;
  for (const auto& x : list) out.push_back(x.as<std::string>());
  return out;
}

TEST_F(HelmRenderTest, ZtunnelHasLeastPrivilegeAndMetricsAreFenced) {
  auto objs = Objects(Render("weft-system", ""));
  YAML::Node zds = Find(objs, "DaemonSet", "weft-ztunnel");
  YAML::Node pod = zds["spec"]["template"]["spec"];
  // Its own pod: not the host's PID namespace (the agent's pod keeps it), nothing else in it.
  EXPECT_TRUE(pod["hostPID"].IsDefined() && !pod["hostPID"].as<bool>());
  EXPECT_FALSE(pod["hostIPC"].IsDefined() && pod["hostIPC"].as<bool>());
  EXPECT_FALSE(pod["shareProcessNamespace"].IsDefined() && pod["shareProcessNamespace"].as<bool>());
  EXPECT_FALSE(pod["initContainers"].IsDefined()) << "mount-bpffs stays with the agent";
  ASSERT_EQ(pod["containers"].size(), 1u);
  for (const auto& c :
       Find(objs, "DaemonSet", "weft-node")["spec"]["template"]["spec"]["containers"])
    EXPECT_NE(c["name"].as<std::string>(), "ztunnel") << "ztunnel left the agent's pod";

  YAML::Node sc = Container(zds, "ztunnel")["securityContext"];
  EXPECT_EQ(Strings(sc["capabilities"]["drop"]), std::vector<std::string>{"ALL"});
  std::vector<std::string> add = Strings(sc["capabilities"]["add"]);
  std::sort(add.begin(), add.end());
  // SYS_ADMIN: setns into the pod's netns and the pod's map by id; NET_ADMIN: SO_MARK
  // (ZtunnelsCallsNeedExactlyTheChartsCapabilities tries them).
  EXPECT_EQ(add, (std::vector<std::string>{"NET_ADMIN", "SYS_ADMIN"}));
  EXPECT_EQ(sc["seccompProfile"]["type"].as<std::string>(), "RuntimeDefault");
  EXPECT_FALSE(sc["allowPrivilegeEscalation"].as<bool>());
  EXPECT_FALSE(sc["privileged"] && sc["privileged"].as<bool>());
  EXPECT_TRUE(sc["readOnlyRootFilesystem"].as<bool>());
  // Host paths: only the handoff directory and bpffs (eBPF capture).
  std::set<std::string> host_paths;
  for (const auto& v : pod["volumes"]) {
    if (v["hostPath"]) host_paths.insert(v["hostPath"]["path"].as<std::string>());
  }
  EXPECT_EQ(host_paths, (std::set<std::string>{"/sys/fs/bpf", "/var/run/weft-handoff"}));

  YAML::Node weftd = Find(objs, "Deployment", "weftd");
  YAML::Node np = Find(objs, "NetworkPolicy", "weftd-metrics");
  EXPECT_TRUE(Selects(np, weftd));
  EXPECT_EQ(np["spec"]["policyTypes"][0].as<std::string>(), "Ingress");
  std::set<int> open, monitoring;
  PolicyPorts(np, &open, &monitoring);
  EXPECT_EQ(open, (std::set<int>{15012, 15015}));
  EXPECT_EQ(monitoring, std::set<int>{15014});
  for (const auto& o : objs) {
    std::string name = o["metadata"]["name"].as<std::string>();
    EXPECT_FALSE(o["kind"].as<std::string>() == "NetworkPolicy" && name != "weftd-metrics")
        << name << ": the node pods' policies are opt-in (hostNetwork)";
  }

  // Node metrics exposed and fenced: ztunnel's 15020 and the agent's 15030 only from the
  // monitoring namespace, each policy selecting its own DaemonSet's pods (and not the other's).
  objs = Objects(Render("weft-system", "networkPolicy: {nodeMetrics: true}\n"));
  struct Want {
    std::string policy, daemonset, other;
    std::set<int> open, monitoring;
  };
  for (const Want& w : {Want{"weft-ztunnel-metrics", "weft-ztunnel", "weft-node", {15021}, {15020}},
                        Want{"weft-node-metrics", "weft-node", "weft-ztunnel", {}, {15030}}}) {
    SCOPED_TRACE(w.policy);
    YAML::Node node_np = Find(objs, "NetworkPolicy", w.policy);
    EXPECT_TRUE(Selects(node_np, Find(objs, "DaemonSet", w.daemonset)));
    EXPECT_FALSE(Selects(node_np, Find(objs, "DaemonSet", w.other)));
    EXPECT_EQ(node_np["spec"]["policyTypes"][0].as<std::string>(), "Ingress");
    open.clear();
    monitoring.clear();
    PolicyPorts(node_np, &open, &monitoring);
    EXPECT_EQ(open, w.open);
    EXPECT_EQ(monitoring, w.monitoring);
  }

  objs = Objects(Render("weft-system", "networkPolicy: {enabled: false, nodeMetrics: true}\n"));
  for (const auto& o : objs) EXPECT_NE(o["kind"].as<std::string>(), "NetworkPolicy");
}

// The handoff socket is one file for both pods: the agent's --ztunnel-socket is ztunnel's
// --inpod-socket, and its directory is, in each container, the mount of a hostPath volume with
// the same host path (node.handoffHostPath), writable only in ztunnel's.
struct HandoffMount {
  std::string mount_path, host_path;
  bool read_only = false;
};

// The mount of `c` that holds `file` (the longest mountPath that is a directory above it).
HandoffMount MountHolding(const YAML::Node& workload, const YAML::Node& c,
                          const std::string& file) {
  HandoffMount out;
  std::string volume;
  for (const auto& m : c["volumeMounts"]) {
    std::string path = m["mountPath"].as<std::string>();
    if (file.rfind(path + "/", 0) == 0 && path.size() > out.mount_path.size()) {
      out.mount_path = path;
      volume = m["name"].as<std::string>();
      out.read_only = m["readOnly"] && m["readOnly"].as<bool>();
    }
  }
  for (const auto& v : workload["spec"]["template"]["spec"]["volumes"]) {
    if (v["name"].as<std::string>() == volume && v["hostPath"])
      out.host_path = v["hostPath"]["path"].as<std::string>();
  }
  return out;
}

TEST_F(HelmRenderTest, HandoffSocketIsOneFileForTheAgentAndZtunnel) {
  for (const auto& [values, host_path] : std::vector<std::pair<std::string, std::string>>{
           {"", "/var/run/weft-handoff"},
           {"node: {handoffHostPath: /opt/weft/handoff}\n", "/opt/weft/handoff"}}) {
    SCOPED_TRACE(host_path);
    auto objs = Objects(Render("weft-system", values));
    YAML::Node ds = Find(objs, "DaemonSet", "weft-node");
    YAML::Node zds = Find(objs, "DaemonSet", "weft-ztunnel");
    const std::string agent_socket =
        FlagValue(Args(Container(ds, "weft-agent")), "--ztunnel-socket");
    const std::string zt_socket = FlagValue(Args(Container(zds, "ztunnel")), "--inpod-socket");
    ASSERT_FALSE(zt_socket.empty());
    EXPECT_EQ(agent_socket, zt_socket);
    HandoffMount agent = MountHolding(ds, Container(ds, "weft-agent"), agent_socket);
    HandoffMount zt = MountHolding(zds, Container(zds, "ztunnel"), zt_socket);
    EXPECT_EQ(agent.host_path, host_path) << "the agent's socket directory is not the host's";
    EXPECT_EQ(zt.host_path, host_path) << "ztunnel's socket directory is not the host's";
    EXPECT_EQ(agent.mount_path, zt.mount_path);
    EXPECT_TRUE(agent.read_only) << "only ztunnel creates the socket";
    EXPECT_FALSE(zt.read_only);
    // The real parsers read the same path from the rendered arguments.
    std::vector<std::string> agent_argv = {"weft-agent"};
    for (const auto& a : Args(Container(ds, "weft-agent"))) agent_argv.push_back(a);
    std::vector<const char*> argv;
    for (const auto& a : agent_argv) argv.push_back(a.c_str());
    auto cl = weft::agent::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
    ASSERT_TRUE(cl.ok()) << cl.status();
    EXPECT_EQ(cl->options.ztunnel_socket, zt_socket);
  }
}

// ---- ztunnel's capabilities, tried on its own calls ------------------------------------------

#ifndef CAP_BPF
#define CAP_BPF 39
#endif

// Capabilities by the name a container's securityContext uses; 0 for a name this test does not
// know (the test then fails: add it here with what it is).
int CapabilityNumber(const std::string& name) {
  static const std::map<std::string, int> kCaps = {
      {"SYS_ADMIN", CAP_SYS_ADMIN},      {"NET_ADMIN", CAP_NET_ADMIN},
      {"NET_RAW", CAP_NET_RAW},          {"BPF", CAP_BPF},
      {"SYS_PTRACE", CAP_SYS_PTRACE},    {"NET_BIND_SERVICE", CAP_NET_BIND_SERVICE},
      {"DAC_OVERRIDE", CAP_DAC_OVERRIDE}};
  auto it = kCaps.find(name);
  return it == kCaps.end() ? 0 : it->second;
}

// In a child process, as uid 0 with no capability but `caps` (effective and permitted) and
// no_new_privs, as the chart runs ztunnel: the privileged calls ztunnel makes for a pod in eBPF
// capture, through ztunnel's own code. Returns "" when every call succeeded, else the first
// failure. `client` is an unconnected TCP socket inside the pod's netns (the pod's app).
std::string ZtunnelCallsWith(const std::set<int>& caps, int pod_netns, const std::string& pins,
                             int client) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    auto report = [&](const std::string& result) {
      (void)!::write(fds[1], result.data(), result.size());
      ::_exit(0);
    };
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    for (int c : caps) {
      data[c / 32].effective |= 1u << (c % 32);
      data[c / 32].permitted |= 1u << (c % 32);
    }
    if (::syscall(SYS_capset, &hdr, data) != 0) report("capset failed");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) report("no_new_privs failed");
    using namespace weft;
    // The handoff: the agent's fd must be a pod's netns.
    if (auto refused = CheckPodNetns(pod_netns)) report("CheckPodNetns: " + refused->reason);
    // AddPod: the pod's listeners, created inside its netns (setns) and marked (SO_MARK).
    ztunnel::ListenerSpec inbound{pod_netns, *SockAddr::Parse("0.0.0.0:0"), ztunnel::kZtunnelMark};
    auto in = ztunnel::Listen(inbound);
    if (!in.ok()) report("inbound listener: " + in.status().ToString());
    ztunnel::ListenerSpec outbound{pod_netns, *SockAddr::Parse("127.0.0.1:0"),
                                   ztunnel::kZtunnelMark};
    auto out = ztunnel::Listen(outbound);
    if (!out.ok()) report("outbound listener: " + out.status().ToString());
    // eBPF capture: the agent's pins, and the inbound listener registered under the pod's slot.
    auto maps = bpf::PinnedMaps::Open(pins);
    if (!maps.ok()) report("PinnedMaps::Open: " + maps.status().ToString());
    absl::Status st = (*maps)->SetListener(1, WEFT_LISTENER_INBOUND, in->get());
    if (!st.ok()) report("SetListener: " + st.ToString());
    // An outbound connection from the app: its original destination is read from the pod's own
    // map. The agent recorded none here, so the answer is "not recorded": the lookup ran.
    auto bound = LocalAddress(out->get());
    if (!bound.ok()) report("LocalAddress: " + bound.status().ToString());
    sockaddr_storage ss;
    socklen_t len = bound->ToSockaddr(&ss);
    if (::connect(client, reinterpret_cast<sockaddr*>(&ss), len) != 0) report("connect failed");
    pollfd ready{out->get(), POLLIN, 0};  // the listener is non-blocking
    if (::poll(&ready, 1, 30000) != 1) report("the connection never reached the listener");
    UniqueFd accepted(::accept(out->get(), nullptr, nullptr));
    if (!accepted) report(std::string("accept: ") + std::strerror(errno));
    auto orig = (*maps)->OriginalDestinationOfAccepted(accepted.get());
    if (!absl::IsNotFound(orig.status()) ||
        orig.status().message().find("not redirected by eBPF") == std::string_view::npos)
      report("OriginalDestinationOfAccepted: " + orig.status().ToString());
    report("");
  }
  ::close(fds[1]);
  std::string result;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) result.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return "the child died: " + std::to_string(status);
  return result;
}

// The capabilities the chart adds to ztunnel are enough for its calls, and each one is needed by
// one of them: with one fewer, a call fails. A capability added to the chart without a call that
// needs it, or a call that needs one the chart lacks, fails this test.
TEST_F(HelmRenderTest, ZtunnelsCallsNeedExactlyTheChartsCapabilities) {
  WEFT_SKIP_UNLESS_ROOT("drops capabilities from a root child; netns, bpffs");
  auto objs = Objects(Render("weft-system", ""));
  YAML::Node sc = Container(Find(objs, "DaemonSet", "weft-ztunnel"), "ztunnel")["securityContext"];
  ASSERT_EQ(Strings(sc["capabilities"]["drop"]), std::vector<std::string>{"ALL"});
  std::map<std::string, int> chart;
  for (const std::string& name : Strings(sc["capabilities"]["add"])) {
    chart[name] = CapabilityNumber(name);
    ASSERT_NE(chart[name], 0) << "unknown capability " << name;
  }
  ASSERT_FALSE(chart.empty());

  // What the agent prepares: the pod's netns, the pinned maps, the pod's own by-peer map.
  weft::testing::DeleteStaleNamespaces("weft-hcap-");
  weft::testing::ScopedNetns pod("weft-hcap-");
  weft::bpf::testing::ScopedPinDir pins;
  ASSERT_TRUE(pod.fd() >= 0 && !pins.path().empty());
  ASSERT_TRUE(weft::bpf::MakeDirs(pins.path() + "/maps").ok());
  weft::UniqueFd listeners(bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "weft_listeners",
                                          sizeof(weft_listener_key), 8, 64, nullptr));
  weft::UniqueFd inner(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "weft_pod_od", sizeof(weft_peer_key),
                                      sizeof(weft_orig_dst), WEFT_ORIG_DST_PER_POD, nullptr));
  ASSERT_TRUE(listeners && inner) << std::strerror(errno);
  LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = static_cast<__u32>(inner.get()));
  weft::UniqueFd by_peer(bpf_map_create(BPF_MAP_TYPE_HASH_OF_MAPS, "weft_orig_dst_by_peer",
                                        sizeof(uint64_t), sizeof(uint32_t), 64, &opts));
  ASSERT_TRUE(by_peer) << std::strerror(errno);
  uint64_t cookie = pod.cookie();
  uint32_t inner_fd = static_cast<uint32_t>(inner.get());
  ASSERT_EQ(bpf_map_update_elem(by_peer.get(), &cookie, &inner_fd, BPF_ANY), 0);
  ASSERT_EQ(bpf_obj_pin(listeners.get(), weft::bpf::MapPin(pins.path(), "weft_listeners").c_str()),
            0);
  ASSERT_EQ(
      bpf_obj_pin(by_peer.get(), weft::bpf::MapPin(pins.path(), "weft_orig_dst_by_peer").c_str()),
      0);

  auto run = [&](const std::set<int>& caps) {
    auto client = weft::SocketInNetns(pod.fd(), AF_INET, SOCK_STREAM, 0);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? ZtunnelCallsWith(caps, pod.fd(), pins.path(), client->get())
                       : std::string("no client socket");
  };
  std::set<int> all;
  for (const auto& [name, cap] : chart) all.insert(cap);
  EXPECT_EQ(run(all), "") << "ztunnel's calls fail with the chart's capabilities";
  for (const auto& [name, cap] : chart) {
    std::set<int> fewer = all;
    fewer.erase(cap);
    std::string failure = run(fewer);
    EXPECT_NE(failure, "") << name << " is added to ztunnel but none of its calls needs it";
    if (!failure.empty()) std::cout << "without " << name << ": " << failure << "\n";
  }
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

// The dashboard is off by default; on, it is a container in weftd's pod (weftd's admin API is on
// the pod's loopback) reading the given Prometheus, behind a Service; without a Prometheus URL
// the chart refuses.
TEST_F(HelmRenderTest, DashboardIsOptionalAndReadsPrometheus) {
  auto objs = Objects(Render("weft-system", ""));
  for (const auto& o : objs) {
    EXPECT_NE(o["metadata"]["name"].as<std::string>(), "weft-dashboard");
  }
  for (const auto& c :
       Find(objs, "Deployment", "weftd")["spec"]["template"]["spec"]["containers"]) {
    EXPECT_NE(c["name"].as<std::string>(), "dashboard");
  }
  objs = Objects(Render(
      "weft-system", "dashboard: {enabled: true, prometheusUrl: 'http://prom.monitoring:9090'}\n"));
  YAML::Node c = Container(Find(objs, "Deployment", "weftd"), "dashboard");
  ASSERT_TRUE(c);
  std::vector<std::string> args = c["args"].as<std::vector<std::string>>();
  EXPECT_EQ(args[0], "dashboard");
  EXPECT_NE(std::find(args.begin(), args.end(), "http://prom.monitoring:9090"), args.end());
  EXPECT_NE(std::find(args.begin(), args.end(), "127.0.0.1:15010"), args.end());
  YAML::Node svc = Find(objs, "Service", "weft-dashboard");
  EXPECT_EQ(svc["spec"]["ports"][0]["port"].as<int>(), 8084);
  Result r = Render("weft-system", "dashboard: {enabled: true}\n");
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("dashboard.prometheusUrl is required"), std::string::npos) << r.out;
}

// Each helm/dashboards/*.json becomes a ConfigMap labelled grafana_dashboard: "1" carrying the
// file unchanged; off with grafanaDashboards.enabled=false; the namespace can be the monitoring
// one.
TEST_F(HelmRenderTest, GrafanaDashboardsAreConfigMapsForTheSidecar) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(fs::path(WEFT_HELM_DIR) / "dashboards")) {
    if (e.path().extension() != ".json") continue;
    std::ifstream f(e.path());
    files[e.path().filename().string()] =
        std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  ASSERT_GE(files.size(), 2u);
  auto dashboards = [](const std::vector<YAML::Node>& objs) {
    std::vector<YAML::Node> out;
    for (const auto& o : objs) {
      if (o["kind"].as<std::string>() == "ConfigMap" && o["metadata"]["labels"] &&
          o["metadata"]["labels"]["grafana_dashboard"])
        out.push_back(o);
    }
    return out;
  };
  std::vector<YAML::Node> cms = dashboards(Objects(Render("weft-system", "")));
  ASSERT_EQ(cms.size(), files.size());
  std::set<std::string> seen, names;
  for (const auto& cm : cms) {
    EXPECT_EQ(cm["metadata"]["labels"]["grafana_dashboard"].as<std::string>(), "1");
    EXPECT_EQ(cm["metadata"]["namespace"].as<std::string>(), "weft-system");
    EXPECT_TRUE(names.insert(cm["metadata"]["name"].as<std::string>()).second);
    ASSERT_EQ(cm["data"].size(), 1u);
    for (const auto& kv : cm["data"]) {
      const std::string key = kv.first.as<std::string>();
      ASSERT_EQ(files.count(key), 1u) << key;
      seen.insert(key);
      // `|-` drops the file's final newline; the dashboard itself is carried unchanged.
      std::string want = files[key];
      while (!want.empty() && want.back() == '\n') want.pop_back();
      EXPECT_EQ(kv.second.as<std::string>(), want) << key;
    }
  }
  EXPECT_EQ(seen.size(), files.size());
  EXPECT_TRUE(
      dashboards(Objects(Render("weft-system", "grafanaDashboards: {enabled: false}\n"))).empty());
  cms = dashboards(Objects(
      Render("weft-system",
             "grafanaDashboards: {namespace: monitoring, annotations: {grafana_folder: Weft}}\n")));
  ASSERT_EQ(cms.size(), files.size());
  for (const auto& cm : cms) {
    EXPECT_EQ(cm["metadata"]["namespace"].as<std::string>(), "monitoring");
    EXPECT_EQ(cm["metadata"]["annotations"]["grafana_folder"].as<std::string>(), "Weft");
  }
}

}  // namespace
