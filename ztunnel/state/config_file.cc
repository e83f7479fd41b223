#include "ztunnel/state/config_file.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <limits>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file.h"
#include "common/log.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft::ztunnel {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

constexpr auto kDebounce = std::chrono::milliseconds(50);

// Converts a YAML tree to JSON guided by the proto schema. yaml-cpp does not type scalars, and
// typing them by YAML's core schema alone would turn `version: 1` or `ports: [80]` into numbers
// that protobuf refuses for string fields; the schema tells which JSON type each field needs.
// Walking the schema also lets errors name the line, which protobuf's JSON parser cannot.
class YamlToJson {
 public:
  // YAML aliases share nodes, but the JSON copy expands them: a few lines of nested aliases
  // could ask for billions of values. Real configs stay far below this.
  static constexpr size_t kMaxValues = 2'000'000;

  absl::StatusOr<json> Message(const YAML::Node& n, const Descriptor* d, const std::string& path) {
    WEFT_RETURN_IF_ERROR(Spend(n));
    if (n.IsNull()) return json(nullptr);
    if (!n.IsMap()) {
      return Fail(
          n, path,
          absl::StrCat("expected a mapping (key: value) for ", d->name(), ", got ", KindName(n)));
    }
    json out = json::object();
    absl::flat_hash_set<int> seen;
    for (const auto& kv : n) {
      // Copies: yaml-cpp's iterator hands out proxies, so references would dangle.
      const YAML::Node k = kv.first;
      const YAML::Node v = kv.second;
      if (!k.IsScalar()) return Fail(k, path, "mapping keys must be plain field names");
      const std::string key = k.Scalar();
      const FieldDescriptor* f = FindField(d, key);
      if (f == nullptr) {
        return Fail(k, path,
                    absl::StrCat("unknown field \"", key, "\" in ", d->name(),
                                 " (known fields: ", KnownFields(d), ")"));
      }
      std::string fpath = path.empty() ? f->json_name() : absl::StrCat(path, ".", f->json_name());
      if (!seen.insert(f->number()).second) {
        return Fail(k, fpath, "field is set twice");
      }
      WEFT_ASSIGN_OR_RETURN(out[key], Field(v, f, fpath));
    }
    return out;
  }

 private:
  absl::StatusOr<json> Field(const YAML::Node& n, const FieldDescriptor* f,
                             const std::string& path) {
    if (n.IsNull()) return json(nullptr);
    if (f->is_map()) {
      if (!n.IsMap()) {
        return Fail(n, path, absl::StrCat("expected a mapping, got ", KindName(n)));
      }
      const FieldDescriptor* kf = f->message_type()->map_key();
      const FieldDescriptor* vf = f->message_type()->map_value();
      json out = json::object();
      for (const auto& kv : n) {
        const YAML::Node k = kv.first;
        const YAML::Node v = kv.second;
        if (!k.IsScalar()) return Fail(k, path, "map keys must be scalars");
        const std::string key = k.Scalar();
        std::string kpath = absl::StrCat(path, "[", key, "]");
        // Validates the key's type (e.g. a port number); JSON map keys are always strings.
        WEFT_RETURN_IF_ERROR(Scalar(k, kf, kpath).status());
        if (out.contains(key)) return Fail(k, kpath, "key is set twice");
        WEFT_ASSIGN_OR_RETURN(out[key], Single(v, vf, kpath));
      }
      return out;
    }
    if (f->is_repeated()) {
      if (!n.IsSequence()) {
        return Fail(n, path, absl::StrCat("expected a list, got ", KindName(n)));
      }
      json out = json::array();
      for (size_t i = 0; i < n.size(); ++i) {
        WEFT_ASSIGN_OR_RETURN(json v, Single(n[i], f, absl::StrCat(path, "[", i, "]")));
        out.push_back(std::move(v));
      }
      return out;
    }
    return Single(n, f, path);
  }

  absl::StatusOr<json> Single(const YAML::Node& n, const FieldDescriptor* f,
                              const std::string& path) {
    WEFT_RETURN_IF_ERROR(Spend(n));
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return Message(n, f->message_type(), path);
    }
    if (n.IsNull()) return json(nullptr);
    if (!n.IsScalar()) {
      return Fail(n, path, absl::StrCat("expected a single value, got ", KindName(n)));
    }
    return Scalar(n, f, path);
  }

  absl::StatusOr<json> Scalar(const YAML::Node& n, const FieldDescriptor* f,
                              const std::string& path) {
    const std::string& s = n.Scalar();
    auto integer = [&](auto lo, auto hi) -> absl::StatusOr<json> {
      int64_t v = 0;
      uint64_t u = 0;
      if (absl::SimpleAtoi(s, &v)) {
        if (v < static_cast<int64_t>(lo) || (v > 0 && static_cast<uint64_t>(v) > hi)) {
          return Fail(n, path, absl::StrCat(s, " is out of range ", lo, "..", hi));
        }
        return json(v);
      }
      if (absl::SimpleAtoi(s, &u) && lo == 0 && u <= hi) return json(u);
      return Fail(n, path, absl::StrCat("expected an integer, got \"", s, "\""));
    };
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        return json(s);
      case FieldDescriptor::CPPTYPE_BOOL:
        if (s == "true" || s == "True" || s == "TRUE") return json(true);
        if (s == "false" || s == "False" || s == "FALSE") return json(false);
        return Fail(n, path, absl::StrCat("expected true or false, got \"", s, "\""));
      case FieldDescriptor::CPPTYPE_ENUM: {
        if (f->enum_type()->FindValueByName(s) != nullptr) return json(s);
        std::vector<std::string> names;
        for (int i = 0; i < f->enum_type()->value_count(); ++i) {
          names.push_back(f->enum_type()->value(i)->name());
        }
        return Fail(n, path,
                    absl::StrCat("unknown value \"", s,
                                 "\" (want one of: ", absl::StrJoin(names, ", "), ")"));
      }
      case FieldDescriptor::CPPTYPE_INT32:
        return integer(std::numeric_limits<int32_t>::min(),
                       static_cast<uint64_t>(std::numeric_limits<int32_t>::max()));
      case FieldDescriptor::CPPTYPE_INT64:
        return integer(std::numeric_limits<int64_t>::min(),
                       static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
      case FieldDescriptor::CPPTYPE_UINT32:
        return integer(int64_t{0}, uint64_t{std::numeric_limits<uint32_t>::max()});
      case FieldDescriptor::CPPTYPE_UINT64:
        return integer(int64_t{0}, std::numeric_limits<uint64_t>::max());
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        double d = 0;
        if (absl::SimpleAtod(s, &d)) return json(d);
        return Fail(n, path, absl::StrCat("expected a number, got \"", s, "\""));
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return Fail(n, path, "unsupported field type");
  }

  absl::Status Spend(const YAML::Node& n) {
    if (++values_ <= kMaxValues) return absl::OkStatus();
    return Fail(n, "",
                absl::StrCat("config too large: more than ", kMaxValues,
                             " values once YAML aliases are expanded"));
  }

  static const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
    // protobuf's JSON parser accepts both the proto name and the lowerCamelCase JSON name.
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      if (f->name() == key || f->json_name() == key) return f;
    }
    return nullptr;
  }

  static std::string KnownFields(const Descriptor* d) {
    std::vector<std::string> names;
    for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->json_name());
    return absl::StrJoin(names, ", ");
  }

  static std::string KindName(const YAML::Node& n) {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsScalar()) return absl::StrCat("the value \"", n.Scalar(), "\"");
    return "nothing";
  }

  static absl::Status Fail(const YAML::Node& n, std::string_view path, std::string_view msg) {
    std::string where;
    if (n.Mark().line >= 0) where = absl::StrCat("line ", n.Mark().line + 1, ": ");
    if (!path.empty()) absl::StrAppend(&where, Av(path), ": ");
    return absl::InvalidArgumentError(absl::StrCat(where, Av(msg)));
  }

  size_t values_ = 0;
};

// Sees document boundaries without building nodes.
class DocumentCounter : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

absl::Status SyntaxError(const YAML::Exception& e) {
  return absl::InvalidArgumentError(absl::StrCat("YAML syntax error at line ", e.mark.line + 1,
                                                 ", column ", e.mark.column + 1, ": ", e.msg));
}

absl::StatusOr<YAML::Node> LoadSingleDocument(std::string_view text) {
  const std::string str(text);
  try {
    // Not YAML::LoadAll: in yaml-cpp 0.7 it loops forever, allocating, on streams such as ","
    // (fixed upstream in jbeder/yaml-cpp#1319). Two documents are enough to know there are
    // too many, and the parser reports the same position again when it is stuck.
    std::istringstream in(str);
    YAML::Parser parser(in);
    DocumentCounter counter;
    for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
    }
    if (counter.starts.size() > 1) {
      const YAML::Mark& m = counter.starts[1];
      return absl::InvalidArgumentError(absl::StrCat(
          "config must be exactly one YAML document; found a second document or text the YAML "
          "parser cannot read at line ",
          m.line + 1, ", column ", m.column + 1, " (a stray '---' or ','?)"));
    }
    return YAML::Load(str);
  } catch (const YAML::Exception& e) {
    return SyntaxError(e);
  }
}

std::string Basename(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Dirname(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::StatusOr<weft::config::v1::ConfigSnapshot> ParseConfigText(std::string_view text) {
  WEFT_ASSIGN_OR_RETURN(YAML::Node root, LoadSingleDocument(text));
  if (root.IsNull()) {
    return absl::InvalidArgumentError(
        "config is empty: want one weft.config.v1.ConfigSnapshot mapping (version, "
        "trustDomain, workloads, services, authorizationPolicies, peerAuthentications, ...)");
  }
  weft::config::v1::ConfigSnapshot out;
  YamlToJson conv;
  WEFT_ASSIGN_OR_RETURN(json j, conv.Message(root, out.GetDescriptor(), ""));
  std::string js;
  try {
    js = j.dump();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config is not valid UTF-8: ", e.what()));
  }
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(js, &out, opts);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", std::string(st.message())));
  }
  return out;
}

absl::StatusOr<SnapshotPtr> LoadConfigFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return WithContext(text.status(), "config file");
  auto pb = ParseConfigText(*text);
  if (!pb.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", pb.status().message()));
  }
  auto snap = ConfigSnapshot::FromProto(*pb);
  if (!snap.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", snap.status().message()));
  }
  return *snap;
}

ConfigFileWatcher::ConfigFileWatcher(std::string path, std::function<void(SnapshotPtr)> on_load,
                                     std::function<void(const absl::Status&)> on_error)
    : path_(std::move(path)), on_load_(std::move(on_load)), on_error_(std::move(on_error)) {}

ConfigFileWatcher::~ConfigFileWatcher() {
  Stop();
}

absl::Status ConfigFileWatcher::Start() {
  if (watcher_) return absl::FailedPreconditionError("config watcher already started");
  const std::string dir = Dirname(path_);
  const std::string name = Basename(path_);
  auto watcher = std::make_unique<DirWatcher>(
      dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE, kDebounce,
      // Kubernetes ConfigMap volumes swap a "..data" symlink instead of touching the file.
      [name](std::string_view entry) { return entry == name || entry == "..data"; },
      [this](const std::set<std::string>&, bool) { Reload(); },
      [this](const absl::Status& st) { on_error_(st); });
  // Watch before the first load so a change racing with it is not missed.
  if (absl::Status st = watcher->Watch(); !st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("cannot watch directory ", dir, " of config file ", path_,
                                     " (does the directory exist?): ", st.message()));
  }
  WEFT_ASSIGN_OR_RETURN(SnapshotPtr first, LoadConfigFile(path_));
  on_load_(std::move(first));
  WEFT_RETURN_IF_ERROR(watcher->Start());
  watcher_ = std::move(watcher);
  return absl::OkStatus();
}

void ConfigFileWatcher::Stop() {
  if (!watcher_) return;
  watcher_->Stop();
  watcher_.reset();
}

void ConfigFileWatcher::Reload() {
  auto snap = LoadConfigFile(path_);
  if (snap.ok()) {
    LOG_INFO("config", "config file reloaded", {{"path", path_}, {"version", (*snap)->version()}});
    on_load_(*std::move(snap));
  } else {
    LOG_WARN("config", "config file rejected; keeping the last good config",
             {{"path", path_}, {"error", std::string(snap.status().message())}});
    on_error_(snap.status());
  }
}

}  // namespace weft::ztunnel
