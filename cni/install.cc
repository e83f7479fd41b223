#include "cni/install.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cni/protocol.h"
#include "common/file.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft::cni {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;  // keeps the operator's key order

bool IsConfigName(const std::string& name) {
  return absl::EndsWith(name, ".conf") || absl::EndsWith(name, ".conflist") ||
         absl::EndsWith(name, ".json");
}

absl::StatusOr<std::vector<std::string>> ConfigFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (e.is_regular_file() && IsConfigName(n) && n[0] != '.') names.push_back(n);
  }
  if (ec)
    return absl::FailedPreconditionError(
        absl::StrCat("CNI conf directory ", dir, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<Json> ReadJson(const std::string& path) {
  WEFT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a JSON object; the network configuration is broken"));
  return j;
}

bool IsWeft(const Json& plugin) {
  auto t = plugin.find("type");
  return t != plugin.end() && t->is_string() && t->get<std::string>() == kPluginType;
}

// Drops weft-cni entries; true if any was there.
bool StripWeft(Json* plugins) {
  size_t before = plugins->size();
  Json kept = Json::array();
  for (const Json& p : *plugins)
    if (!IsWeft(p)) kept.push_back(p);
  *plugins = std::move(kept);
  return plugins->size() != before;
}

}  // namespace

absl::StatusOr<std::string> FindNetworkConfig(const std::string& conf_dir) {
  WEFT_ASSIGN_OR_RETURN(std::vector<std::string> names, ConfigFiles(conf_dir));
  if (names.empty())
    return absl::NotFoundError(
        absl::StrCat("no network configuration (*.conf, *.conflist, "
                     "*.json) in ",
                     conf_dir, " yet"));
  return (fs::path(conf_dir) / names.front()).string();
}

absl::StatusOr<std::string> InstallPlugin(const InstallOptions& o) {
  if (o.bin_dir.empty() || o.conf_dir.empty() || o.plugin_binary.empty())
    return absl::InvalidArgumentError(
        "installing weft-cni needs the bin dir, the conf dir and "
        "the plugin binary");
  auto binary = ReadFile(o.plugin_binary);
  if (!binary.ok()) return WithContext(binary.status(), "reading the weft-cni binary");
  WEFT_RETURN_IF_ERROR(
      WithContext(WriteFileAtomic((fs::path(o.bin_dir) / kPluginType).string(), *binary, 0755),
                  "copying weft-cni into the CNI bin dir"));
  auto path = FindNetworkConfig(o.conf_dir);
  if (!path.ok())
    return absl::FailedPreconditionError(absl::StrCat(
        path.status().message(), "; the node's network plugin has not written its configuration"));
  WEFT_ASSIGN_OR_RETURN(Json conf, ReadJson(*path));
  std::string target = *path;
  Json list;
  if (conf.contains("plugins")) {
    if (!conf["plugins"].is_array())
      return absl::InvalidArgumentError(absl::StrCat(*path, ": \"plugins\" is not an array"));
    list = conf;
  } else {
    // A single plugin: the list takes its name and version, the plugin keeps the rest.
    list["cniVersion"] = conf.value("cniVersion", std::string("1.0.0"));
    list["name"] = conf.value("name", std::string("weft-chained"));
    list["plugins"] = Json::array({conf});
    target = (fs::path(*path).parent_path() / fs::path(*path).stem()).string() + ".conflist";
  }
  StripWeft(&list["plugins"]);
  if (list["plugins"].empty())
    return absl::InvalidArgumentError(
        absl::StrCat(*path, ": no plugin to chain after (weft-cni needs an interface plugin)"));
  list["plugins"].push_back(Json{{"type", kPluginType},
                                 {"agentSocket", o.agent_socket},
                                 {"timeoutSeconds", o.timeout_seconds}});
  WEFT_RETURN_IF_ERROR(WriteFileAtomic(target, list.dump(2) + "\n"));
  if (target != *path) {
    std::error_code ec;
    fs::remove(*path, ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat("removing ", *path, " after chaining into ", target, ": ", ec.message()));
  }
  return target;
}

absl::StatusOr<bool> PluginChained(const InstallOptions& o) {
  if (!fs::exists(fs::path(o.bin_dir) / kPluginType)) return false;
  auto path = FindNetworkConfig(o.conf_dir);
  if (!path.ok()) return false;
  WEFT_ASSIGN_OR_RETURN(Json conf, ReadJson(*path));
  auto plugins = conf.find("plugins");
  if (plugins == conf.end() || !plugins->is_array()) return false;
  for (const Json& p : *plugins)
    if (IsWeft(p)) return true;
  return false;
}

absl::Status UninstallPlugin(const InstallOptions& o) {
  if (!o.conf_dir.empty()) {
    auto names = ConfigFiles(o.conf_dir);
    if (names.ok()) {
      for (const std::string& n : *names) {
        std::string path = (fs::path(o.conf_dir) / n).string();
        auto conf = ReadJson(path);
        if (!conf.ok() || !conf->contains("plugins") || !(*conf)["plugins"].is_array()) continue;
        if (!StripWeft(&(*conf)["plugins"])) continue;
        WEFT_RETURN_IF_ERROR(WriteFileAtomic(path, conf->dump(2) + "\n"));
      }
    }
  }
  if (!o.bin_dir.empty()) {
    std::error_code ec;
    fs::remove(fs::path(o.bin_dir) / kPluginType, ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat("removing ", o.bin_dir, "/", kPluginType, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace weft::cni
