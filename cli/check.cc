// `weftctl check`: the kernel probe weft-agent runs at start (agent/probe.h), as a command.
// Prints the report (every feature, ok/missing, why it matters) and the decision. Exit 0 when
// this node can run eBPF capture, 1 when weft-agent would fall back to iptables (the reason
// on stderr), 2 on usage errors.
#include <ostream>
#include <string>
#include <vector>

#include "agent/probe.h"
#include "cli/commands.h"

namespace weft::cli {

int CheckMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") {
      out << "Usage: weftctl check\n"
             "\n"
             "Probes this node's kernel for what Weft's eBPF capture needs (program types,\n"
             "helpers, map types, cgroup v2, bpffs, netns cookies, privileges) and what is\n"
             "optional (BTF, kTLS, sockmap program types), prints one line per feature and\n"
             "the decision weft-agent --capture auto would take. Run it as root (or with\n"
             "CAP_BPF + CAP_NET_ADMIN): unprivileged, the BPF probes cannot load.\n"
             "\n"
             "Exit status: 0 eBPF capture possible, 1 iptables capture (reason on stderr).\n";
      return kExitOk;
    }
    err << "weftctl check: unexpected argument \"" << a << "\"\n"
        << "Run 'weftctl check --help' for usage.\n";
    return kExitUsage;
  }
  agent::ProbeReport report = agent::ProbeKernel();
  out << report.Format();
  if (report.ebpf_possible) return kExitOk;
  err << "weftctl check: this node cannot run eBPF capture; weft-agent would use "
      << report.decision << "\n";
  return kExitFailure;
}

}  // namespace weft::cli
