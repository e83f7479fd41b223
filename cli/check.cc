// `weftctl check`: the kernel probe weft-agent runs at start (agent/probe.h), as a command.
// Prints the report (every feature, ok/missing, why it matters) and the decision. Exit 0 when
// this node can run eBPF capture, 1 when weft-agent would fall back to iptables (the reason
// on stderr), 2 on usage errors.
#include <ostream>
#include <string>
#include <vector>

#include "agent/probe.h"
#include "cli/commands.h"
#include "common/flags.h"

namespace weft::cli {

int CheckMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "Probes this node's kernel for what Weft's eBPF capture needs (program types,\n"
      "helpers, map types, cgroup v2, bpffs, netns cookies, privileges) and what is\n"
      "optional (BTF, kTLS, sockmap program types), prints one line per feature and\n"
      "the decision weft-agent --capture auto would take. Run it as root (or with\n"
      "CAP_BPF + CAP_NET_ADMIN): unprivileged, the BPF probes cannot load.",
      "weftctl check"};
  app.footer("Exit status: 0 eBPF capture possible, 1 iptables capture (reason on stderr).");
  if (auto rc = ParseCommand(app, args, out, err)) return *rc;
  agent::ProbeReport report = agent::ProbeKernel();
  out << report.Format();
  if (report.ebpf_possible) return kExitOk;
  err << "weftctl check: this node cannot run eBPF capture; weft-agent would use "
      << report.decision << "\n";
  return kExitFailure;
}

}  // namespace weft::cli
