// Standalone config: a file holding one weft.config.v1.ConfigSnapshot as YAML or JSON (field
// names as in the proto, lowerCamelCase or snake_case), re-read on change.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

// Parses YAML or JSON text (YAML is read with yaml-cpp, converted to JSON, then to the proto
// with protobuf's JSON parser: unknown fields are errors). Errors carry line/field context.
absl::StatusOr<weft::config::v1::ConfigSnapshot> ParseConfigText(std::string_view text);
absl::StatusOr<SnapshotPtr> LoadConfigFile(const std::string& path);

// Watches `path` (inotify on its directory, so editors that rename-over and `mv` both work)
// and calls on_load for every successful load and on_error for every failed one. The first
// load happens synchronously in Start(). Runs its own thread; Stop() (or the destructor) joins.
class ConfigFileWatcher {
 public:
  ConfigFileWatcher(std::string path, std::function<void(SnapshotPtr)> on_load,
                    std::function<void(const absl::Status&)> on_error);
  ~ConfigFileWatcher();
  absl::Status Start();  // error if the first load fails
  void Stop();

 private:
  void Run();
  std::string path_;
  std::function<void(SnapshotPtr)> on_load_;
  std::function<void(const absl::Status&)> on_error_;
  UniqueFd inotify_, stop_event_;
  std::thread thread_;
};

}  // namespace weft::ztunnel
