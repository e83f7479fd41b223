// Standalone config: a file holding one weft.config.v1.ConfigSnapshot as YAML or JSON (field
// names as in the proto, lowerCamelCase or snake_case), re-read on change.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/dir_watcher.h"
#include "common/unique_fd.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

// Parses YAML or JSON text (YAML is read with yaml-cpp, converted to JSON, then to the proto
// with protobuf's JSON parser: unknown fields are errors). Errors carry line/field context.
// The conversion follows the proto schema, so `version: 1` or `ports: [80]` become strings and
// `port: "80"` a number where the field wants it. Errors (InvalidArgument) read e.g.
//   YAML syntax error at line 6, column 6: end of sequence flow not found
//   line 5: workloads[0]: unknown field "serviceAcount" in Workload (known fields: ...)
//   line 4: services[0].ports[0].port: expected an integer, got "http"
// Empty text, several YAML documents, duplicate keys, non-UTF-8 strings and more than 2M
// values after alias expansion are errors too.
// Only parses: ConfigSnapshot::FromProto does the semantic validation.
absl::StatusOr<weft::config::v1::ConfigSnapshot> ParseConfigText(std::string_view text);
// Reads, parses and validates; errors are prefixed with the path (NotFound etc. from open()).
absl::StatusOr<SnapshotPtr> LoadConfigFile(const std::string& path);

// Watches `path` (inotify on its directory, so editors that rename-over and `mv` both work)
// and calls on_load for every successful load and on_error for every failed one. The first
// load happens synchronously in Start(). Runs its own thread; Stop() (or the destructor) joins.
// Later loads call on_load/on_error on the watcher thread, one at a time; on_error never
// replaces anything, so the caller keeps its last good snapshot. Reloads are debounced by
// ~50 ms after the last event for the file name (IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE) or
// for "..data" (Kubernetes ConfigMap volumes swap that symlink). Start() fails, with no thread
// left running and no callback called, when the directory cannot be watched or the first load
// fails; calling it while running is FailedPrecondition. Stop() is idempotent.
class ConfigFileWatcher {
 public:
  ConfigFileWatcher(std::string path, std::function<void(SnapshotPtr)> on_load,
                    std::function<void(const absl::Status&)> on_error);
  ~ConfigFileWatcher();
  absl::Status Start();  // error if the first load fails
  void Stop();

 private:
  void Reload();
  std::string path_;
  std::function<void(SnapshotPtr)> on_load_;
  std::function<void(const absl::Status&)> on_error_;
  std::unique_ptr<DirWatcher> watcher_;  // while started
};

}  // namespace weft::ztunnel
