#include "cli/commands.h"

#include <ostream>

#include "cli/cp_status.h"
#include "cli/dashboard/dashboard.h"
#include "cli/demo/demo.h"
#include "cli/dev_certs.h"
#include "cli/stat.h"
#include "cli/tap.h"
#include "cli/up/up.h"
#include "cli/validate.h"

namespace weft::cli {

#ifdef WEFT_CLI_CHECK
int CheckMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
#endif

namespace {

std::vector<Command>& Registry() {
  static std::vector<Command> commands = {
      {"dev-certs", "create a development CA and workload certificates in a directory",
       &DevCertsMain},
      {"demo", "run the README tour on a local mesh of network namespaces (root)", &demo::DemoMain},
      {"validate", "validate manifests (YAML/JSON) as weftd does; exit 1 on any rejected object",
       &ValidateMain},
      {"status", "weftd's view: nodes connected, config versions, rejected objects, CA",
       &StatusMain},
      {"config-dump", "the configuration weftd streams to a node (JSON)", &ConfigDumpMain},
      {"up", "run a whole mesh on this host from a manifest directory (root)", &up::UpMain},
      {"down", "stop a mesh started by up and remove everything it made", &up::DownMain},
      {"label", "label a live mesh's namespace or pod (weft.dev/mesh=enabled enrols)",
       &up::LabelMain},
      {"apply", "add or replace policies and other objects in a live mesh (-f FILE|DIR)",
       &up::ApplyMain},
      {"delete", "remove objects from a live mesh (-f FILE|DIR)", &up::DeleteMain},
      {"logs", "print a pod's or a mesh process's log (POD | ztunnel NODE | agent NODE | weftd)",
       &up::LogsMain},
      {"exec", "run a command inside a pod of a live mesh (POD -- CMD ...)", &up::ExecMain},
      {"upgrade", "replace a live mesh's ztunnel without refusing a connection (ztunnel [NODE])",
       &up::UpgradeMain},
      {"stat", "golden signals per workload from the ztunnels' metrics (a table)", &StatMain},
      {"tap", "the HTTP requests the ztunnels see, live (L7 workloads)", &TapMain},
      {"dashboard", "the mesh in a browser: pods, live service graph, golden signals, policies",
       &dashboard::DashboardMain},
#ifdef WEFT_CLI_CHECK
      {"check", "probe the kernel: can this node run eBPF capture? (report and decision)",
       &CheckMain},
#endif
  };
  return commands;
}

void Usage(std::ostream& os) {
  os << "Usage: weftctl <command> [flags] [args]\n"
        "\n"
        "Weft service mesh command-line tool.\n"
        "\n"
        "Commands:\n";
  for (const auto& c : Registry()) {
    std::string name(c.name);
    name.resize(std::max<size_t>(name.size() + 2, 14), ' ');
    os << "  " << name << c.summary << "\n";
  }
  os << "\n"
        "Flags:\n"
        "  -h, --help    show this help\n"
        "  --version     print the version\n"
        "\n"
        "Run 'weftctl <command> --help' for a command's flags.\n";
}

}  // namespace

const std::vector<Command>& Commands() {
  return Registry();
}

void AddCommand(Command c) {
  Registry().push_back(c);
}

int Main(int argc, char** argv, std::ostream& out, std::ostream& err) {
  if (argc < 2) {
    Usage(err);
    return kExitUsage;
  }
  std::string first = argv[1];
  if (first == "-h" || first == "--help") {
    Usage(out);
    return kExitOk;
  }
  if (first == "--version") {
    out << "weftctl " << WEFT_VERSION << "\n";
    return kExitOk;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  if (first == "help") {
    if (args.empty()) {
      Usage(out);
      return kExitOk;
    }
    first = args[0];
    args = {"--help"};
  }
  for (const auto& c : Registry()) {
    if (c.name == first) return c.run(args, out, err);
  }
  err << "weftctl: unknown command \"" << first << "\"\n"
      << "Run 'weftctl --help' for the list of commands.\n";
  return kExitUsage;
}

}  // namespace weft::cli
