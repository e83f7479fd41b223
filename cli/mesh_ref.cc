#include "cli/mesh_ref.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "common/flags.h"
#include "common/status.h"

namespace weft::cli {
namespace {

std::string NetnsPathOf(const std::string& netns) {
  if (netns.empty() || netns[0] == '/') return netns;
  return testbed::NetnsPath(netns);
}

absl::StatusOr<up::MeshState> Load(const MeshRef& ref) {
  auto s = up::LoadMesh(up::StateRoot(ref.state_root), ref.name);
  if (!s.ok()) return s.status();
  if (!up::SupervisorAlive(*s)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the local mesh \"", ref.name,
                     "\" is not running (its supervisor is gone): weftctl down --name ", ref.name,
                     " cleans it up"));
  }
  return s;
}

}  // namespace

void AddMeshRefFlags(CLI::App& app, MeshRef* ref) {
  up::AddMeshFlags(app, &ref->name, &ref->state_root);
  app.get_option("--name")->each([ref](const std::string&) { ref->name_given = true; });
}

absl::StatusOr<NetnsEndpoint> LocalWeftdAdmin(const MeshRef& ref) {
  WEFT_ASSIGN_OR_RETURN(up::MeshState s, Load(ref));
  if (s.weftd.admin.empty()) {
    return absl::NotFoundError(absl::StrCat("the local mesh \"", ref.name, "\" has no weftd"));
  }
  return NetnsEndpoint{"weftd", NetnsPathOf(s.weftd.netns), s.weftd.admin};
}

namespace {

// One ztunnel endpoint per node of the local mesh: `field` of its NodeState (`what` names it).
absl::StatusOr<std::vector<NetnsEndpoint>> LocalZtunnelEndpoints(const MeshRef& ref,
                                                                 std::string up::NodeState::*field,
                                                                 std::string_view what) {
  WEFT_ASSIGN_OR_RETURN(up::MeshState s, Load(ref));
  std::vector<NetnsEndpoint> out;
  for (const up::NodeState& n : s.nodes) {
    if (!(n.*field).empty()) out.push_back({n.name, NetnsPathOf(n.netns), n.*field});
  }
  if (out.empty()) {
    return absl::NotFoundError(absl::StrCat("the local mesh \"", ref.name, "\" lists no ztunnel ",
                                            Av(what), " endpoint (started by an older weftctl? ",
                                            "run weftctl down and up again)"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<NetnsEndpoint>> LocalZtunnelMetrics(const MeshRef& ref) {
  return LocalZtunnelEndpoints(ref, &up::NodeState::metrics, "metrics");
}

absl::StatusOr<std::vector<NetnsEndpoint>> LocalZtunnelAdmins(const MeshRef& ref) {
  return LocalZtunnelEndpoints(ref, &up::NodeState::admin, "admin");
}

absl::StatusOr<UniqueFd> OpenNetns(const std::string& path) {
  if (path.empty()) return UniqueFd();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::UnavailableError(absl::StrCat("cannot open network namespace ", path, ": ",
                                               std::strerror(errno),
                                               errno == EACCES ? " (run as root)" : ""));
  }
  return fd;
}

}  // namespace weft::cli
