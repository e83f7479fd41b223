// weft-cni: a chained CNI plugin (spec 1.0; also 0.3.0, 0.3.1, 0.4.0). It runs after the
// node's interface plugin (bridge, Calico, Cilium, ...) and asks the local weft-agent to
// enrol the new pod network namespace before the pod's containers start:
//   ADD     Kubernetes pods (K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS) go to the agent, which
//           enrols them when they are in the mesh and answers once the capture is installed and
//           ztunnel acknowledged; then prevResult is echoed. Agent unreachable or not ready:
//           the ADD fails (code 11, try again later), so no mesh pod runs uncaptured. Other
//           pods, and non-Kubernetes containers, pass through untouched.
//   DEL     the agent unenrols and cleans up; a missing netns, an unknown pod or an agent that
//           is not running is no error (the capture lives in the netns being deleted).
//   CHECK   the agent verifies an enrolled pod's capture is still in place (drift: error 101).
//   VERSION the supported versions.
// Network configuration (the conflist entry weft-agent --cni-conf-dir writes):
//   {"type": "weft-cni", "agentSocket": "/run/weft-cni/agent.sock", "timeoutSeconds": 30}
// Errors are the spec's JSON error object ({cniVersion, code, msg, details}) on stdout with
// exit status 1.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cni/protocol.h"

namespace weft::cni {

inline constexpr int kDefaultTimeoutSeconds = 30;
// Oldest first; the last is the newest.
const std::vector<std::string>& SupportedVersions();

struct PluginOutput {
  int exit_code = 0;
  std::string out;  // stdout: the result, the version answer, or the error object
  std::string log;  // stderr: one line per notable event (the runtime logs it)
};

// Runs one plugin invocation: `env` holds the CNI_* variables, `config` is stdin.
PluginOutput RunPlugin(const std::map<std::string, std::string>& env, std::string_view config);

// CNI_ARGS ("K1=V1;K2=V2") as a map; pairs without '=' are skipped.
std::map<std::string, std::string> ParseCniArgs(std::string_view args);

}  // namespace weft::cni
