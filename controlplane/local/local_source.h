// The local configuration source: a directory of Kubernetes-style manifests (*.yaml, *.yml,
// *.json; multi-document YAML; `kind: List` expanded), watched with inotify and turned into
// ObjectEvents for the model. Each file is applied atomically: a file that fails to parse
// changes nothing (its last good objects stay in force), is logged, counted
// (weft_cp_local_file_errors_total) and listed in Errors() until it parses again. Objects that
// disappear from a file, or whose file is removed, are deleted. Unchanged objects are not
// re-sent. Events carry source "local:<path>".
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dir_watcher.h"
#include "common/unique_fd.h"
#include "controlplane/source/object_event.h"
#include "nlohmann/json.hpp"

namespace weft::cp {

// Parses YAML (one or more documents) or JSON text into objects. Scalars are typed by YAML's
// core schema (quoted: string; plain 80: number, true: boolean, null/~: null). Empty documents
// are skipped; `kind: List` documents contribute their items. Every object must be a mapping
// with a string `kind` and a `metadata` mapping. Errors (InvalidArgument) name the line, e.g.
//   line 7: duplicate key "name"
//   document 2 (line 12): expected a mapping with apiVersion, kind and metadata, got a list
absl::StatusOr<std::vector<nlohmann::json>> ParseManifests(std::string_view text);
// One YAML (or JSON) document as JSON, typed the same way (for fixtures and tools).
absl::StatusOr<nlohmann::json> YamlToJson(std::string_view text);
// Reads a file and parses it; errors are prefixed with the path.
absl::StatusOr<std::vector<nlohmann::json>> LoadManifestFile(const std::string& path);

struct FileError {
  std::string path;
  std::string error;
};

class LocalSource {
 public:
  // `registry` may be null (metrics then go to a private registry).
  LocalSource(std::string dir, ObjectSink sink,
              std::shared_ptr<prometheus::Registry> registry = nullptr);
  ~LocalSource();
  LocalSource(const LocalSource&) = delete;
  LocalSource& operator=(const LocalSource&) = delete;

  // Loads every file once (synchronously; broken files are reported, not fatal), then watches
  // the directory on a thread. Fails when the directory cannot be read or watched.
  absl::Status Start();
  void Stop();  // idempotent; joins the thread

  // Rescans the directory now and applies what changed (Start and the watcher call this).
  absl::Status Rescan();

  // Files whose current content does not parse, sorted by path.
  std::vector<FileError> Errors() const;

 private:
  // Fingerprints (std::hash and size) instead of texts and trees: at 10,000 pods the JSON trees
  // alone took ~40 MiB. A changed object is missed only if both its hash and its size collide.
  struct Fingerprint {
    size_t hash = 0;
    size_t size = 0;
    bool operator==(const Fingerprint&) const = default;
  };
  struct ObjectState {
    Fingerprint fp;       // of the object's compact JSON
    nlohmann::json stub;  // apiVersion, kind, metadata.name/namespace: what a delete carries
  };
  struct FileState {
    bool read = false;
    Fingerprint content;                         // last content read (good or bad)
    std::map<std::string, ObjectState> objects;  // last good: "kind/ns/name" -> object
  };
  void ApplyFile(const std::string& path, const std::string& content);
  void ReadAndApplyFile(const std::string& path);  // an unreadable file becomes its error
  void RemoveFile(const std::string& path);
  // Rereads just these directory entries (names from inotify): present regular files are
  // (re)applied, absent ones removed.
  void RescanNames(const std::set<std::string>& names);

  std::string dir_;
  ObjectSink sink_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* file_errors_;
  prometheus::Counter* reloads_;
  mutable std::mutex mu_;  // files_, errors_; Rescan runs one at a time (rescan_mu_)
  std::mutex rescan_mu_;
  std::map<std::string, FileState> files_;
  std::map<std::string, std::string> errors_;
  std::unique_ptr<DirWatcher> watcher_;  // while started
};

}  // namespace weft::cp
