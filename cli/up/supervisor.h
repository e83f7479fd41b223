// The process that owns a local mesh (`weftctl up`): it is the testbed's owner pid (so a crash
// leaves remains that CleanupStale/`up`/`down` recognise), runs weftd, the node daemons and the
// pods' processes, restarts what crashes (with backoff, logged), keeps the kube-proxy rules in
// step with the runtime manifests and the pods' liveness, and tears everything down on
// SIGTERM/SIGINT.
#pragma once

#include <iosfwd>
#include <string>

#include "absl/status/statusor.h"
#include "cli/up/state.h"

namespace weft::up {

struct UpOptions {
  std::string manifest_dir;
  std::string name = "weft";
  std::string state_root;  // resolved (StateRoot)
  int nodes = 2;
  std::string capture = "auto";  // weft-agent --capture: ebpf | iptables | auto
  std::string log_level = "info";
  bool foreground = false;
  // Tear the mesh down when this process exits (0: no owner). A test passes its own pid, so a
  // test killed at its time-out (SIGKILL, no handler runs) leaves no mesh running.
  int owner_pid = 0;
};

// Runs the supervisor in the calling process until SIGTERM/SIGINT (blocked and taken
// synchronously; call before starting any thread) or until opts.owner_pid exits. Once the mesh is
// ready (weftd serving, every ztunnel ready, every enrolled pod's listeners up, every pod process
// started) it writes "ok\n" to `ready_fd`, or "error: <why>\n" if it could not start; then closes
// it. ready_fd < 0: the summary goes to `out` instead. The mesh directory must exist (with logs/).
// Returns the exit code.
int RunSupervisor(const UpOptions& opts, int ready_fd, std::ostream& out);

// The table `up` prints: pods (node, IP, enrolled, pid), services, where the logs are.
void PrintSummary(const MeshState& s, std::ostream& out);

// Where a Weft binary is: $WEFT_BIN_DIR/<name>, the build tree the running binary belongs to
// (<build>/<build_rel>), the running binary's directory, then PATH.
absl::StatusOr<std::string> FindWeftBinary(const std::string& name, const std::string& build_rel);
// A pod's command[0]: an absolute path as is; else $WEFT_BIN_DIR/<cmd>; else an executable named
// <cmd> in the build tree weftctl runs from (e.g. <build>/examples/teashop/weft-teashop); else
// PATH.
absl::StatusOr<std::string> ResolveCommand(const std::string& cmd);

}  // namespace weft::up
