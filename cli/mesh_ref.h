// How the read-only commands (status, config-dump, stat) find what to read: flags given
// explicitly win; otherwise a local mesh started by `weftctl up` (its state file names weftd's
// admin endpoint and each ztunnel's metrics endpoint, inside their network namespaces).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace weft::cli {

// --name NAME / --state-root DIR, as every `weftctl up` command takes them.
struct MeshRef {
  std::string name = "weft";
  std::string state_root;  // "" = $WEFT_STATE_ROOT, else /run/weft
  bool name_given = false;
};

// Adds --name and --state-root to `app`, filling `ref` (name_given when --name is given).
void AddMeshRefFlags(CLI::App& app, MeshRef* ref);

// An endpoint inside a network namespace (netns "" = the caller's).
struct NetnsEndpoint {
  std::string label;  // node name or "weftd"
  std::string netns;  // a path such as /run/netns/<name>
  std::string addr;   // ip:port
};

// weftd's admin endpoint of the local mesh `ref`. NotFound when there is no such mesh (the
// message says how to point the command elsewhere).
absl::StatusOr<NetnsEndpoint> LocalWeftdAdmin(const MeshRef& ref);
// Every ztunnel's metrics endpoint of the local mesh `ref`.
absl::StatusOr<std::vector<NetnsEndpoint>> LocalZtunnelMetrics(const MeshRef& ref);
// Every ztunnel's admin endpoint (loopback in its node's netns) of the local mesh `ref`.
absl::StatusOr<std::vector<NetnsEndpoint>> LocalZtunnelAdmins(const MeshRef& ref);

// Opens a netns path for HttpGet (invalid fd for "").
absl::StatusOr<UniqueFd> OpenNetns(const std::string& path);

}  // namespace weft::cli
