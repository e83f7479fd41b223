#include "controlplane/local/local_source.h"

#include <dirent.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "common/log.h"
#include "common/status.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace weft::cp {
namespace {

using nlohmann::json;

constexpr auto kDebounce = std::chrono::milliseconds(50);
constexpr size_t kMaxValues = 2'000'000;  // after alias expansion

absl::Status AtLine(const YAML::Mark& m, std::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("line ", m.line + 1, ": ", Av(msg)));
}

// YAML 1.2 core schema typing of plain scalars; quoted scalars (tag "!") stay strings. Integers
// are [-+]?[0-9]+, floats [-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)?, checked by hand:
// std::regex made this most of the load time of a large manifest directory.
bool SkipDigits(std::string_view s, size_t& i) {
  const size_t start = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return i > start;
}

void SkipSign(std::string_view s, size_t& i) {
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
}

bool IsCoreInt(std::string_view s) {
  size_t i = 0;
  SkipSign(s, i);
  return SkipDigits(s, i) && i == s.size();
}

bool IsCoreFloat(std::string_view s) {
  size_t i = 0;
  SkipSign(s, i);
  const bool before = SkipDigits(s, i);
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!SkipDigits(s, i) && !before) return false;
  } else if (!before) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    SkipSign(s, i);
    if (!SkipDigits(s, i)) return false;
  }
  return i == s.size();
}

json Scalar(const std::string& tag, const std::string& s) {
  if (tag == "!") return json(s);
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return json(nullptr);
  if (s == "true" || s == "True" || s == "TRUE") return json(true);
  if (s == "false" || s == "False" || s == "FALSE") return json(false);
  const char c = s[0];
  if (!(c >= '0' && c <= '9') && c != '-' && c != '+' && c != '.') return json(s);  // most
  if (IsCoreInt(s)) {
    int64_t i;
    if (absl::SimpleAtoi(s, &i)) return json(i);
  }
  if (IsCoreFloat(s)) {
    double d;
    if (absl::SimpleAtod(s, &d)) return json(d);
  }
  return json(s);
}

// yaml-cpp passes bytes that are not UTF-8 through, and every later json::dump() (the local
// source's fingerprints, the model, error messages) would throw on them: such scalars are input
// errors. nlohmann's serializer is the UTF-8 decoder at hand; ASCII (nearly every scalar) skips it.
bool IsUtf8(const std::string& s) {
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return true;
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

// Builds JSON straight from yaml-cpp's parse events: no YAML::Node graph in between (which cost
// about a third of a large directory's load). One document per HandleNextDocument; a problem
// in the content (duplicate key, non-scalar key, too many values) is kept and the rest of that
// document skipped, so that syntax errors anywhere in the file still win, as with YAML::LoadAll.
class JsonBuilder : public YAML::EventHandler {
 public:
  struct Document {
    json value;
    YAML::Mark mark;  // of the root node
    bool empty = true;
    absl::Status error;
  };
  Document Take() { return std::move(doc_); }

  void OnDocumentStart(const YAML::Mark&) override {
    doc_ = Document();
    stack_.clear();
    skipped_depth_ = 0;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (!doc_.error.ok()) return;
    if (KeyExpected()) return Fail(mark, "mapping keys must be scalars");
    const size_t before = values_;
    Count(mark, 1);
    Complete(mark, json(nullptr), anchor, before, nullptr);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (!doc_.error.ok()) return;
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) return Fail(mark, "alias to an unknown anchor");
    const Anchored& a = it->second;
    if (KeyExpected()) {
      if (!a.raw_scalar) return Fail(mark, "mapping keys must be scalars");
      return Key(mark, *a.raw_scalar);
    }
    Count(mark, a.values);
    Place(mark, json(a.value));
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    if (!doc_.error.ok()) return;
    if (!IsUtf8(value))
      return Fail(mark, "a scalar is not valid UTF-8 (manifests must be UTF-8 text)");
    if (KeyExpected()) {
      if (anchor != 0) anchors_[anchor] = Anchored{json(value), 1, value};
      return Key(mark, value);
    }
    const size_t before = values_;
    Count(mark, 1);
    Complete(mark, Scalar(tag, value), anchor, before, &value);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, json::array(), anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, json::object(), anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    json value;  // array or object under construction
    YAML::Mark mark;
    YAML::anchor_t anchor;
    size_t values_before;
    bool has_key = false;
    std::string key;
  };
  struct Anchored {
    json value;
    size_t values;                          // counted again at every alias
    std::optional<std::string> raw_scalar;  // for aliases used as mapping keys
  };

  bool KeyExpected() const {
    return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().has_key;
  }
  void Fail(const YAML::Mark& mark, std::string_view msg) {
    if (doc_.error.ok()) doc_.error = AtLine(mark, msg);
  }
  void Count(const YAML::Mark& mark, size_t n) {
    values_ += n;
    if (values_ > kMaxValues && doc_.error.ok()) {
      Fail(mark, absl::StrCat("more than ", kMaxValues, " values once YAML aliases are expanded"));
    }
  }
  void Key(const YAML::Mark& mark, const std::string& key) {
    Frame& f = stack_.back();
    if (f.value.contains(key)) return Fail(mark, absl::StrCat("duplicate key \"", key, "\""));
    f.key = key;
    f.has_key = true;
  }
  void Open(const YAML::Mark& mark, json empty, YAML::anchor_t anchor) {
    if (!doc_.error.ok()) {
      ++skipped_depth_;
      return;
    }
    if (KeyExpected()) {
      ++skipped_depth_;
      return Fail(mark, "mapping keys must be scalars");
    }
    const size_t before = values_;
    Count(mark, 1);
    stack_.push_back(Frame{std::move(empty), mark, anchor, before});
  }
  void Close() {
    if (skipped_depth_ > 0) {
      --skipped_depth_;
      return;
    }
    if (!doc_.error.ok()) return;
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    Complete(f.mark, std::move(f.value), f.anchor, f.values_before, nullptr);
  }
  void Complete(const YAML::Mark& mark, json v, YAML::anchor_t anchor, size_t values_before,
                const std::string* raw) {
    if (anchor != 0) {
      Anchored a{v, values_ - values_before, std::nullopt};
      if (raw != nullptr) a.raw_scalar = *raw;
      anchors_[anchor] = std::move(a);
    }
    Place(mark, std::move(v));
  }
  void Place(const YAML::Mark& mark, json v) {
    if (!doc_.error.ok()) return;
    if (stack_.empty()) {
      doc_.value = std::move(v);
      doc_.mark = mark;
      doc_.empty = doc_.value.is_null();
      return;
    }
    Frame& f = stack_.back();
    if (f.value.is_array()) {
      f.value.push_back(std::move(v));
    } else {
      f.value.get_ref<json::object_t&>().emplace(std::move(f.key), std::move(v));
      f.has_key = false;
    }
  }

  size_t values_ = 0;  // over all documents of the text, aliases expanded
  size_t skipped_depth_ = 0;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, Anchored> anchors_;
  Document doc_;
};

absl::Status SyntaxError(const YAML::Exception& e) {
  return absl::InvalidArgumentError(absl::StrCat("YAML syntax error at line ", e.mark.line + 1,
                                                 ", column ", e.mark.column + 1, ": ", e.msg));
}

// Every document of `text` in order (empty ones included, as null).
absl::StatusOr<std::vector<JsonBuilder::Document>> ParseDocuments(std::string_view text,
                                                                  bool first_only) {
  std::vector<JsonBuilder::Document> docs;
  JsonBuilder builder;
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
      docs.push_back(builder.Take());
      if (first_only) break;
      // yaml-cpp 0.7 can loop forever on some malformed text, yielding empty documents without
      // consuming input. A real document takes at least one byte of the text.
      if (docs.size() > text.size()) {
        return AtLine(docs.back().mark,
                      "the YAML parser is stuck (it keeps returning empty documents); the text "
                      "is malformed near here");
      }
    }
  } catch (const YAML::Exception& e) {
    return SyntaxError(e);
  }
  return docs;
}

std::string Describe(const json& j) {
  if (j.is_array()) return "a list";
  if (j.is_object()) return "a mapping";
  if (j.is_string()) return absl::StrCat("the string ", j.dump());
  return j.dump();
}

absl::Status CheckObject(const json& o, std::string_view where) {
  if (!o.is_object() || !o.contains("kind") || !o["kind"].is_string() || !o.contains("metadata") ||
      !o["metadata"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Av(where), ": expected a mapping with apiVersion, kind and metadata, got ",
        o.is_object() ? "a mapping without a string kind or a metadata mapping" : Describe(o)));
  }
  return absl::OkStatus();
}

std::string ObjectKey(const json& o) {
  const json& meta = o["metadata"];
  auto str = [&](const char* k) {
    return meta.contains(k) && meta[k].is_string() ? meta[k].get<std::string>() : std::string();
  };
  return absl::StrCat(o["kind"].get<std::string>(), "/", str("namespace"), "/", str("name"));
}

bool IsManifest(const std::string& name) {
  if (name.starts_with(".")) return false;  // editor swap files, ConfigMap ..data internals
  return name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json");
}

}  // namespace

absl::StatusOr<std::vector<json>> ParseManifests(std::string_view text) {
  WEFT_ASSIGN_OR_RETURN(std::vector<JsonBuilder::Document> docs, ParseDocuments(text, false));
  std::vector<json> out;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (!docs[i].error.ok()) return docs[i].error;
    if (docs[i].empty) continue;  // empty document (e.g. a trailing ---)
    const std::string where =
        absl::StrCat("document ", i + 1, " (line ", docs[i].mark.line + 1, ")");
    json& doc = docs[i].value;
    if (doc.is_object() && doc.value("kind", json()) == "List") {
      json items = doc.contains("items") ? std::move(doc["items"]) : json::array();
      if (!items.is_array()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": List items must be a list"));
      }
      for (size_t j = 0; j < items.size(); ++j) {
        WEFT_RETURN_IF_ERROR(CheckObject(items[j], absl::StrCat(where, " items[", j, "]")));
        out.push_back(std::move(items[j]));
      }
      continue;
    }
    WEFT_RETURN_IF_ERROR(CheckObject(doc, where));
    out.push_back(std::move(doc));
  }
  return out;
}

absl::StatusOr<json> YamlToJson(std::string_view text) {
  WEFT_ASSIGN_OR_RETURN(std::vector<JsonBuilder::Document> docs, ParseDocuments(text, true));
  if (docs.empty()) return json(nullptr);
  if (!docs[0].error.ok()) return docs[0].error;
  return std::move(docs[0].value);
}

absl::StatusOr<std::vector<json>> LoadManifestFile(const std::string& path) {
  WEFT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto objects = ParseManifests(text);
  if (!objects.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", objects.status().message()));
  }
  return objects;
}

LocalSource::LocalSource(std::string dir, ObjectSink sink,
                         std::shared_ptr<prometheus::Registry> registry)
    : dir_(std::move(dir)),
      sink_(std::move(sink)),
      registry_(registry ? std::move(registry) : std::make_shared<prometheus::Registry>()) {
  file_errors_ = &prometheus::BuildCounter()
                      .Name("weft_cp_local_file_errors_total")
                      .Help("Manifest file loads that failed (the file's last good state stays)")
                      .Register(*registry_);
  reloads_ = &prometheus::BuildCounter()
                  .Name("weft_cp_local_file_loads_total")
                  .Help("Manifest file loads that succeeded")
                  .Register(*registry_)
                  .Add({});
}

LocalSource::~LocalSource() {
  Stop();
}

std::vector<FileError> LocalSource::Errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FileError> out;
  for (const auto& [path, err] : errors_) out.push_back({path, err});
  return out;
}

namespace {

size_t HashOf(std::string_view s) {
  return std::hash<std::string_view>()(s);
}

// What a delete event needs (see ObjectEvent): the object's identity, not its body.
json Stub(const json& o) {
  json stub = json::object();
  if (o.contains("apiVersion")) stub["apiVersion"] = o["apiVersion"];
  stub["kind"] = o["kind"];
  json meta = json::object();
  const json& m = o["metadata"];
  for (const char* k : {"name", "namespace"}) {
    if (m.contains(k)) meta[k] = m[k];
  }
  stub["metadata"] = std::move(meta);
  return stub;
}

}  // namespace

void LocalSource::ApplyFile(const std::string& path, const std::string& content) {
  FileState& fs = files_[path];
  const Fingerprint content_fp{HashOf(content), content.size()};
  if (fs.read && fs.content == content_fp) return;
  fs.read = true;
  fs.content = content_fp;
  const std::string source = absl::StrCat("local:", path);
  auto parsed = ParseManifests(content);
  std::map<std::string, json*> objects;
  absl::Status err = parsed.status();
  if (parsed.ok()) {
    for (json& o : *parsed) {
      std::string key = ObjectKey(o);
      if (!objects.emplace(std::move(key), &o).second) {
        err =
            absl::InvalidArgumentError(absl::StrCat("object ", ObjectKey(o), " is defined twice"));
        break;
      }
    }
  }
  if (!err.ok()) {
    const std::string msg = std::string(err.message());
    {
      std::lock_guard<std::mutex> lock(mu_);
      errors_[path] = msg;
    }
    file_errors_->Add({{"file", path}}).Increment();
    LOG_WARN("local", "manifest file rejected; its last good state stays in force",
             {{"path", path}, {"error", msg}});
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    errors_.erase(path);
  }
  reloads_->Increment();
  for (const auto& [key, old] : fs.objects) {
    if (objects.contains(key)) continue;
    sink_(ObjectEvent{ObjectEvent::Type::kDelete, source, old.stub["kind"].get<std::string>(),
                      old.stub});
  }
  std::map<std::string, ObjectState> next;
  for (const auto& [key, o] : objects) {
    const std::string compact = o->dump();
    ObjectState state{{HashOf(compact), compact.size()}, json()};
    auto it = fs.objects.find(key);
    if (it != fs.objects.end() && it->second.fp == state.fp) {
      state.stub = std::move(it->second.stub);
    } else {
      state.stub = Stub(*o);
      sink_(ObjectEvent{ObjectEvent::Type::kUpsert, source, (*o)["kind"].get<std::string>(),
                        std::move(*o)});
    }
    next.emplace(key, std::move(state));
  }
  LOG_INFO("local", "manifest file loaded", {{"path", path}, {"objects", objects.size()}});
  fs.objects = std::move(next);
}

void LocalSource::RemoveFile(const std::string& path) {
  auto it = files_.find(path);
  if (it == files_.end()) return;
  const std::string source = absl::StrCat("local:", path);
  for (const auto& [key, old] : it->second.objects) {
    sink_(ObjectEvent{ObjectEvent::Type::kDelete, source, old.stub["kind"].get<std::string>(),
                      old.stub});
  }
  files_.erase(it);
  std::lock_guard<std::mutex> lock(mu_);
  errors_.erase(path);
  LOG_INFO("local", "manifest file removed; its objects are deleted", {{"path", path}});
}

void LocalSource::ReadAndApplyFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    errors_[path] = std::string(text.status().message());
    return;
  }
  ApplyFile(path, *text);
}

absl::Status LocalSource::Rescan() {
  std::lock_guard<std::mutex> rescan(rescan_mu_);
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return ErrnoError(errno, absl::StrCat("cannot read directory ", dir_));
  std::set<std::string> present;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (!IsManifest(name)) continue;
    const std::string path = absl::StrCat(dir_, "/", name);
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    present.insert(path);
  }
  closedir(d);
  std::vector<std::string> gone;
  for (const auto& [path, fs] : files_) {
    if (!present.contains(path)) gone.push_back(path);
  }
  for (const std::string& path : gone) RemoveFile(path);
  for (const std::string& path : present) {
    ReadAndApplyFile(path);
  }
  return absl::OkStatus();
}

void LocalSource::RescanNames(const std::set<std::string>& names) {
  std::lock_guard<std::mutex> rescan(rescan_mu_);
  for (const std::string& name : names) {
    if (!IsManifest(name)) continue;
    const std::string path = absl::StrCat(dir_, "/", name);
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      RemoveFile(path);  // deleted or renamed away (or no longer a regular file)
      continue;
    }
    ReadAndApplyFile(path);
  }
}

absl::Status LocalSource::Start() {
  if (watcher_) return absl::FailedPreconditionError("local source already started");
  // Every event names an entry; RescanNames rereads just those (and skips non-manifests). An
  // overflowed event queue means names were lost: reread everything.
  auto watcher = std::make_unique<DirWatcher>(
      dir_, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE, kDebounce,
      nullptr,
      [this](const std::set<std::string>& names, bool overflow) {
        if (!overflow) {
          RescanNames(names);
        } else if (absl::Status st = Rescan(); !st.ok()) {
          LOG_WARN("local", "manifest directory rescan failed",
                   {{"error", std::string(st.message())}});
        }
      },
      [](const absl::Status& st) {
        LOG_ERROR("local", "manifest watcher stopped", {{"error", std::string(st.message())}});
      });
  if (absl::Status st = watcher->Watch(); !st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("cannot watch manifest directory ", dir_, ": ", st.message()));
  }
  WEFT_RETURN_IF_ERROR(Rescan());
  WEFT_RETURN_IF_ERROR(watcher->Start());
  watcher_ = std::move(watcher);
  return absl::OkStatus();
}

void LocalSource::Stop() {
  if (!watcher_) return;
  watcher_->Stop();
  watcher_.reset();
}

}  // namespace weft::cp
