// Installing weft-cni on a node (weft-agent --cni-bin-dir/--cni-conf-dir): the plugin binary is
// copied into the CNI bin directory and a weft-cni entry is chained at the end of the network
// configuration the container runtime uses, the first of *.conf, *.conflist, *.json in the
// CNI conf directory in lexical order (containerd's and CRI-O's rule). Uninstalling takes both
// out again. Files are replaced atomically, so the runtime never reads a half-written one.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace weft::cni {

struct InstallOptions {
  std::string bin_dir;        // e.g. /opt/cni/bin (as mounted in the agent's container)
  std::string conf_dir;       // e.g. /etc/cni/net.d
  std::string plugin_binary;  // the weft-cni to copy
  std::string agent_socket;   // written into the entry: where the plugin finds the agent
  int timeout_seconds = 30;   // written into the entry
};

// Copies the binary (as <bin_dir>/weft-cni, mode 0755) and chains the entry (replacing an
// earlier weft-cni entry, so a changed socket path or timeout takes effect). A single-plugin
// configuration (.conf, or .json without "plugins") is rewritten as <name>.conflist with its
// plugin first and weft-cni after it, and the original removed. Returns the configuration file
// it chained into. FailedPrecondition when the conf directory holds no network configuration
// yet (the node's network plugin has not written it; try again later).
absl::StatusOr<std::string> InstallPlugin(const InstallOptions& o);

// Removes the weft-cni entry from every configuration in conf_dir and <bin_dir>/weft-cni.
// Nothing installed is no error.
absl::Status UninstallPlugin(const InstallOptions& o);

// Whether weft-cni is in place: <bin_dir>/weft-cni exists and the configuration the runtime
// uses has a weft-cni entry (a network plugin that rewrites its configuration drops it).
absl::StatusOr<bool> PluginChained(const InstallOptions& o);

// The file the runtime would use (see above), or NotFound.
absl::StatusOr<std::string> FindNetworkConfig(const std::string& conf_dir);

}  // namespace weft::cni
