// weft-agent's flags: one definition for its --help, its main and ParseCommandLine.
#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/agent.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/status.h"
#include "ztunnel/xds/endpoint_flags.h"

namespace weft::agent {

void AddFlags(CLI::App& app, CommandLine* cl) {
  AgentOptions& o = cl->options;
  o.capture = CaptureMode::kAuto;
  o.metrics_addr = *SockAddr::Parse(kDefaultMetricsAddr);
  SetUsage(app,
           "weft-agent --node NAME (--config FILE | --control-plane ADDR) --ztunnel-socket PATH\n"
           "                  [--capture ebpf|iptables|auto|none] [--cgroup PATH]\n"
           "                  [--bpf-pin-dir DIR] [--metrics ADDR:PORT|off] [--once]\n"
           "                  [--uninstall-on-exit] [--log-level debug|info|warn|error]\n"
           "                  [--cni-socket PATH [--cni-bin-dir DIR --cni-conf-dir DIR\n"
           "                   [--cni-plugin PATH] [--cni-uninstall-on-exit]]]\n"
           "                  [--kubernetes [--kubeconfig FILE]]\n"
           "       weft-agent --uninstall-cni --cni-bin-dir DIR --cni-conf-dir DIR");
  app.add_option("--node", o.node, "this node's name; only workloads scheduled here are enrolled")
      ->type_name("NAME")
      ->check(kNonEmpty);
  app.add_option("--config", o.config_path, "standalone config file (YAML or JSON ConfigSnapshot)")
      ->type_name("FILE")
      ->check(kNonEmpty);
  ztunnel::AddControlPlaneFlags(app, &o.control_plane);
  app.add_option("--ztunnel-socket", o.ztunnel_socket, "ztunnel's pod handoff socket")
      ->type_name("PATH")
      ->check(kNonEmpty);
  app.add_option_function<std::string>(
         "--capture",
         [&o](const std::string& v) {
           auto m = ParseCaptureMode(v);
           if (!m.ok()) throw CLI::ValidationError(std::string(m.status().message()));
           o.capture = *m;
         },
         "how pod traffic reaches ztunnel (default auto: eBPF when the kernel probe finds every "
         "feature, else iptables; the report is printed at start, `weftctl check` prints the "
         "same)")
      ->type_name("ebpf|iptables|auto|none");
  app.add_option("--cgroup", o.cgroup_path,
                 "eBPF: cgroup v2 directory the connect hooks attach to (default: the cgroup2 "
                 "mount root, e.g. /sys/fs/cgroup)")
      ->type_name("PATH")
      ->check(kNonEmpty);
  app.add_option("--bpf-pin-dir", o.bpf_pin_dir,
                 "eBPF: where maps and links are pinned (default /sys/fs/bpf/weft/<node>; "
                 "ztunnel opens the maps there)")
      ->type_name("DIR")
      ->check(kNonEmpty);
  app.add_option_function<std::string>(
         "--local-legs", [&o](const std::string& v) { o.local_legs = v == "on"; },
         "eBPF: sk_msg short-cut between apps and ztunnel in each pod, instead of loopback TCP "
         "(default off; no effect with iptables capture; docs/fastpath.md); env WEFT_LOCAL_LEGS")
      ->type_name("on|off")
      ->envname("WEFT_LOCAL_LEGS")  // so a whole mesh (bench/run.sh) can be switched
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option_function<std::string>(
         "--metrics",
         [&o](const std::string& v) {
           if (v == "off") {
             o.metrics_addr.reset();
             return;
           }
           auto a = SockAddr::Parse(v);
           if (!a.ok())
             throw CLI::ValidationError(absl::StrCat(
                 "--metrics: \"", v, "\" is not ADDR:PORT (e.g. 127.0.0.1:15030, [::1]:0) or off"));
           o.metrics_addr = *a;
         },
         absl::StrCat("/metrics address (default ", kDefaultMetricsAddr,
                      "; port 0 picks a free port, logged; off disables)"))
      ->type_name("ADDR:PORT|off");
  app.add_option("--log-level", cl->log_level, "debug|info|warn|error")
      ->type_name("LEVEL")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](const std::string& v) {
            log::Level l;
            return log::ParseLevel(v, &l)
                       ? std::string()
                       : "unknown level \"" + v + "\"; use debug, info, warn or error";
          },
          "", "LEVEL"));
  app.add_option("--cni-socket", o.cni_socket,
                 "serve weft-cni here (a Unix socket on the host; the plugin's agentSocket)")
      ->type_name("PATH")
      ->check(kNonEmpty);
  app.add_option("--cni-bin-dir", o.cni_install.bin_dir,
                 "install weft-cni into this CNI bin directory (e.g. the host's /opt/cni/bin)")
      ->type_name("DIR")
      ->check(kNonEmpty);
  app.add_option("--cni-conf-dir", o.cni_install.conf_dir,
                 "chain weft-cni into the first network configuration of this directory (e.g. "
                 "the host's /etc/cni/net.d)")
      ->type_name("DIR")
      ->check(kNonEmpty);
  app.add_option("--cni-plugin", o.cni_install.plugin_binary,
                 "the weft-cni binary to install (default: weft-cni beside weft-agent)")
      ->type_name("PATH")
      ->check(kNonEmpty);
  app.add_flag("--cni-uninstall-on-exit", o.cni_uninstall_on_exit,
               "remove weft-cni from the CNI dirs when stopping (pods stay captured)");
  app.add_flag("--uninstall-cni", cl->uninstall_cni,
               "remove weft-cni from --cni-bin-dir and --cni-conf-dir, and exit");
  app.add_flag("--kubernetes", cl->kubernetes,
               "remove this node's weft.dev/agent-not-ready:NoSchedule taint once ready (the "
               "API server of the pod's service account; RBAC: get and patch on nodes)");
  app.add_option("--kubeconfig", cl->kubeconfig,
                 "with --kubernetes: a kubeconfig instead of the in-cluster service account")
      ->type_name("FILE")
      ->check(kNonEmpty);
  app.add_flag("--once", cl->once, "sync once and exit (no watching, no reconnects)");
  app.add_flag("--uninstall-on-exit", o.uninstall_on_exit,
               "remove the capture from every pod when stopping, and in eBPF mode every pinned "
               "program, link and map (default: keep it, so pods stay captured or fail closed "
               "while the agent is down)");
}

absl::Status CheckCniFlags(const CommandLine& cl) {
  const AgentOptions& o = cl.options;
  bool bin = !o.cni_install.bin_dir.empty(), conf = !o.cni_install.conf_dir.empty();
  if (bin != conf)
    return absl::InvalidArgumentError("--cni-bin-dir and --cni-conf-dir go together");
  if (cl.uninstall_cni && !bin)
    return absl::InvalidArgumentError("--uninstall-cni needs --cni-bin-dir and --cni-conf-dir");
  if (!cl.uninstall_cni && bin && o.cni_socket.empty())
    return absl::InvalidArgumentError(
        "installing weft-cni (--cni-bin-dir) needs --cni-socket: the plugin asks the agent there");
  if (cl.once && !o.cni_socket.empty())
    return absl::InvalidArgumentError("--once serves no CNI requests; drop --cni-socket");
  return absl::OkStatus();
}

absl::Status CheckCommandLine(const CommandLine& cl) {
  const AgentOptions& o = cl.options;
  WEFT_RETURN_IF_ERROR(CheckCniFlags(cl));
  if (cl.uninstall_cni) return absl::OkStatus();
  std::vector<std::string> missing;
  if (o.node.empty()) missing.push_back("--node");
  if (o.config_path.empty() && !o.control_plane.enabled())
    missing.push_back("--config or --control-plane");
  if (!o.config_path.empty() && o.control_plane.enabled())
    return absl::InvalidArgumentError(
        "--config and --control-plane exclude each other: the pod list comes from one of them");
  if (o.ztunnel_socket.empty()) missing.push_back("--ztunnel-socket");
  if (!missing.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("missing required flag(s): ", absl::StrJoin(missing, ", ")));
  bool ebpf_flags = !o.cgroup_path.empty() || !o.bpf_pin_dir.empty();
  if (ebpf_flags && (o.capture == CaptureMode::kIptables || o.capture == CaptureMode::kNone))
    return absl::InvalidArgumentError(
        "--cgroup and --bpf-pin-dir only apply to --capture ebpf or auto");
  if (!cl.kubeconfig.empty() && !cl.kubernetes)
    return absl::InvalidArgumentError("--kubeconfig only applies with --kubernetes");
  if (cl.once && cl.kubernetes)
    return absl::InvalidArgumentError(
        "--once never becomes ready to take pods; drop --kubernetes (the node taint stays)");
  if (cl.once && o.uninstall_on_exit)
    return absl::InvalidArgumentError(
        "--once leaves the pods enrolled; --uninstall-on-exit makes no sense with it");
  return absl::OkStatus();
}

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine cl;
  CLI::App app("weft-agent", "weft-agent");
  AddFlags(app, &cl);
  WEFT_RETURN_IF_ERROR(
      ParseArgs(app, std::vector<std::string>(argv + std::min(argc, 1), argv + argc)));
  WEFT_RETURN_IF_ERROR(CheckCommandLine(cl));
  return cl;
}

}  // namespace weft::agent
