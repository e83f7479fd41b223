#include "cli/validate.h"

#include <algorithm>
#include <filesystem>
#include <ostream>

#include "cli/commands.h"
#include "common/flags.h"
#include "common/log.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"

namespace weft::cli {
namespace {

constexpr char kDescription[] =
    "Validates Kubernetes manifests (multi-document YAML or JSON; a directory means its\n"
    "*.yaml, *.yml and *.json files) the way weftd does: Namespace, Pod, Service,\n"
    "ServiceAccount, EndpointSlice, NetworkPolicy, AuthorizationPolicy and\n"
    "PeerAuthentication (security.weft.dev/v1, or Istio's security.istio.io/v1 and v1beta1,\n"
    "read the same way), Gateway API HTTPRoute, GRPCRoute and\n"
    "ReferenceGrant, and networking.weft.dev/v1 TrafficPolicy. Other kinds are ignored.\n"
    "Prints every rejected object with its reason (and, for a policy weftd enforces\n"
    "fail-closed instead, what it enforces; for a route, that it is not applied); exits 1\n"
    "if there is any. Route attachment (parent Services, backendRefs) is checked against\n"
    "the Services in the given files: weftctl status shows it for the running mesh.";

bool IsManifest(const std::filesystem::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

int ValidateMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::vector<std::string> given;
  CLI::App app{kDescription, "weftctl validate"};
  app.add_option("FILE|DIR", given, "manifest files or directories")->required();
  if (auto rc = ParseCommand(app, args, out, err)) return *rc;
  std::vector<std::string> files;
  for (const std::string& a : given) {
    std::error_code ec;
    if (std::filesystem::is_directory(a, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : std::filesystem::directory_iterator(a, ec)) {
        if (e.is_regular_file() && IsManifest(e.path()) &&
            !e.path().filename().string().starts_with(".")) {
          in_dir.push_back(e.path().string());
        }
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    err << "weftctl validate: no files given\nRun 'weftctl validate --help'.\n";
    return kExitUsage;
  }

  // The report below says everything; the model's own warning logs would repeat it on stderr.
  const log::Level level = log::GetLevel();
  log::SetLevel(log::Level::kError);
  struct Restore {
    log::Level level;
    ~Restore() { log::SetLevel(level); }
  } restore{level};

  // One model for all files, so objects defined twice across files are caught as in weftd.
  cp::Model model;
  int bad_files = 0, objects = 0, ignored = 0;
  for (const std::string& f : files) {
    auto parsed = cp::LoadManifestFile(f);
    if (!parsed.ok()) {
      out << parsed.status().message() << "\n";
      ++bad_files;
      continue;
    }
    for (const nlohmann::json& o : *parsed) {
      ++objects;
      const std::string kind = o["kind"].get<std::string>();
      if (!cp::IsSupportedKind(kind)) ++ignored;
      (void)model.Apply(cp::ObjectEvent{cp::ObjectEvent::Type::kUpsert, f, kind, o});
    }
  }
  const auto rejected = model.Rejected();
  for (const cp::RejectedObject& r : rejected) {
    out << r.source << ": " << r.kind << " " << (r.ns.empty() ? "" : r.ns + "/") << r.name << ": "
        << r.reason << "\n";
    if (!r.effect.empty()) out << "  -> " << r.effect << "\n";
  }
  // Informational: what the routes' status would say if these files were the whole cluster.
  for (const cp::RouteStatus& r : model.RouteStatuses()) {
    for (const cp::RouteParentStatus& p : r.parents) {
      for (const cp::RouteCondition& c : p.conditions) {
        if (c.status == "True") continue;
        out << "note: " << r.kind << " " << r.ns << "/" << r.name << " -> Service "
            << p.parent_ref.value("namespace", "") << "/" << p.parent_ref.value("name", "") << ": "
            << c.type << "=False " << c.reason << ": " << c.message << "\n";
      }
    }
  }
  out << files.size() << (files.size() == 1 ? " file, " : " files, ") << objects
      << (objects == 1 ? " object" : " objects") << " (" << ignored << " of unused kinds), "
      << bad_files << " unreadable " << (bad_files == 1 ? "file" : "files") << ", "
      << rejected.size() << " rejected";
  auto is_route = [](const cp::RejectedObject& r) {
    return r.kind == "HTTPRoute" || r.kind == "GRPCRoute";
  };
  const auto fail_closed =
      std::count_if(rejected.begin(), rejected.end(),
                    [&](const cp::RejectedObject& r) { return !r.effect.empty() && !is_route(r); });
  if (fail_closed > 0) {
    out << " (" << fail_closed << (fail_closed == 1 ? " policy" : " policies")
        << " enforced fail-closed)";
  }
  out << "\n";
  return bad_files == 0 && rejected.empty() ? kExitOk : kExitFailure;
}

}  // namespace weft::cli
