#include "cli/up/state.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file.h"
#include "common/status.h"
#include "common/tls.h"

namespace weft::up {

std::string MeshPaths::PodDir(const std::string& ns, const std::string& name) const {
  return absl::StrCat(pods, "/", ns, "_", name);
}

std::string MeshPaths::PodLog(const std::string& ns, const std::string& name) const {
  return absl::StrCat(logs, "/pod-", ns, "-", name, ".log");
}

std::string StateRoot(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("WEFT_STATE_ROOT");
  if (env && *env) return env;
  return "/run/weft";
}

MeshPaths PathsFor(const std::string& root, const std::string& name) {
  MeshPaths p;
  p.dir = absl::StrCat(root, "/", name);
  p.state_file = p.dir + "/state.json";
  p.manifests = p.dir + "/manifests";
  p.lock_file = p.dir + "/manifests.lock";
  p.pods = p.dir + "/pods";
  p.logs = p.dir + "/logs";
  p.weftd_state = p.dir + "/weftd";
  p.upgrades = p.dir + "/upgrades";
  return p;
}

absl::Status ValidateMeshName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 40 && name[0] != '-';
  for (char c : name) ok &= (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mesh name \"", name, "\" is not valid: 1..40 of a-z, 0-9 and '-', not starting with '-'"));
  }
  return absl::OkStatus();
}

absl::Status WriteState(const std::string& path, const MeshState& s) {
  return WriteFileAtomic(path, nlohmann::json(s).dump(2) + "\n", 0644);
}

absl::StatusOr<MeshState> ReadState(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(path, " is not a mesh state file (bad JSON)"));
  }
  try {
    return j.get<MeshState>();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<MeshState> LoadMesh(const std::string& root, const std::string& name) {
  WEFT_RETURN_IF_ERROR(ValidateMeshName(name));
  auto s = ReadState(PathsFor(root, name).state_file);
  if (absl::IsNotFound(s.status())) {
    return absl::NotFoundError(absl::StrCat("no mesh named \"", name, "\" under ", root,
                                            " (start one with `weftctl up DIR`; other names: "
                                            "--name, other state roots: --state-root)"));
  }
  return s;
}

std::string ManifestsSignature(const std::string& dir) {
  std::vector<std::string> entries;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string f = e.path().filename().string();
    if (!f.ends_with(".json") && !f.ends_with(".yaml") && !f.ends_with(".yml")) continue;
    struct stat st;
    if (::stat(e.path().c_str(), &st) != 0) continue;
    entries.push_back(
        absl::StrCat(f, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec));
  }
  std::sort(entries.begin(), entries.end());
  return absl::StrCat(entries.size(), "-", std::hash<std::string>{}(absl::StrJoin(entries, ";")));
}

std::vector<std::string> WeftctlArgv(const std::string& weftctl, const std::string& name,
                                     const std::string& state_root, std::vector<std::string> args) {
  std::vector<std::string> argv = {weftctl};
  const auto at = args.empty()
                      ? args.end()
                      : std::min(args.begin() + 1, std::find(args.begin(), args.end(), "--"));
  args.insert(at, {"--name", name, "--state-root", state_root});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

uint64_t ProcessStartTime(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(f, line)) return 0;
  // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ');
  // After ")": field 3 is state; starttime is field 22, i.e. index 19 here.
  if (fields.size() < 20) return 0;
  if (fields[0] == "Z") return 0;  // a zombie is not running
  uint64_t t = 0;
  return absl::SimpleAtoi(fields[19], &t) ? t : 0;
}

bool SupervisorAlive(const MeshState& s) {
  uint64_t t = ProcessStartTime(s.supervisor_pid);
  return t != 0 && t == s.supervisor_start_time;
}

absl::StatusOr<const PodState*> FindPod(const MeshState& s, const std::string& ref) {
  std::vector<const PodState*> hits;
  size_t slash = ref.find('/');
  for (const PodState& p : s.pods) {
    if (slash != std::string::npos ? ref == p.ns + "/" + p.name : ref == p.name) hits.push_back(&p);
  }
  if (hits.size() == 1) return hits[0];
  std::vector<std::string> all;
  for (const PodState& p : s.pods) all.push_back(p.ns + "/" + p.name);
  if (hits.empty()) {
    return absl::NotFoundError(absl::StrCat("mesh \"", s.name, "\" has no pod \"", ref,
                                            "\"; its pods: ", absl::StrJoin(all, ", ")));
  }
  std::vector<std::string> names;
  for (const PodState* p : hits) names.push_back(p->ns + "/" + p->name);
  return absl::InvalidArgumentError(absl::StrCat(
      "pod name \"", ref, "\" is ambiguous: ", absl::StrJoin(names, ", "), "; give NS/NAME"));
}

absl::StatusOr<const NodeState*> FindNode(const MeshState& s, const std::string& ref) {
  for (const NodeState& n : s.nodes) {
    if (n.name == ref || n.name == "node" + ref) return &n;
  }
  return absl::NotFoundError(absl::StrCat("mesh \"", s.name, "\" has no node \"", ref,
                                          "\" (nodes node0..node", s.nodes.size() - 1, ")"));
}

void AddMeshFlags(CLI::App& app, std::string* name, std::string* state_root) {
  app.add_option("--name", *name, "the mesh (several meshes may run side by side)")
      ->type_name("NAME")
      ->capture_default_str();
  app.add_option("--state-root", *state_root,
                 "where meshes keep their state (default $WEFT_STATE_ROOT or /run/weft)")
      ->type_name("DIR");
}

}  // namespace weft::up
