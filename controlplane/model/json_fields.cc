#include "controlplane/model/json_fields.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace weft::cp::internal {

using nlohmann::json;

absl::Status Bad(std::string_view path, std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(Av(path), ": ", Av(problem)));
}

std::string Join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(Av(path), ".", Av(key));
}

std::string At(std::string_view path, size_t i) {
  return absl::StrCat(Av(path), "[", i, "]");
}

std::string TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::string:
      return absl::StrCat("the string ", j.dump());
    case json::value_t::boolean:
      return absl::StrCat("the boolean ", j.dump());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return absl::StrCat("the number ", j.dump());
    case json::value_t::array:
      return "a list";
    case json::value_t::object:
      return "a mapping";
    default:
      return "null";
  }
}

absl::Status WrongType(std::string_view path, std::string_view want, const json& got) {
  return Bad(path, absl::StrCat("expected ", Av(want), ", got ", TypeName(got)));
}

// nullptr when absent or null.
const json* Get(const json& parent, std::string_view key) {
  if (!parent.is_object()) return nullptr;
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::string> Str(const json& parent, std::string_view key, std::string_view path,
                                bool required) {
  const json* v = Get(parent, key);
  const std::string p = Join(path, key);
  if (v == nullptr) {
    if (required) return Bad(p, "is required");
    return std::string();
  }
  if (!v->is_string()) return WrongType(p, "a string", *v);
  if (required && v->get_ref<const std::string&>().empty()) return Bad(p, "must not be empty");
  return v->get<std::string>();
}

absl::StatusOr<const json*> Obj(const json& parent, std::string_view key, std::string_view path,
                                bool required) {
  const json* v = Get(parent, key);
  if (v == nullptr) {
    if (required) return Bad(Join(path, key), "is required");
    return nullptr;
  }
  if (!v->is_object()) return WrongType(Join(path, key), "a mapping", *v);
  return v;
}

absl::StatusOr<const json*> Arr(const json& parent, std::string_view key, std::string_view path) {
  const json* v = Get(parent, key);
  if (v == nullptr) return nullptr;
  if (!v->is_array()) return WrongType(Join(path, key), "a list", *v);
  return v;
}

absl::StatusOr<std::optional<bool>> Bool(const json& parent, std::string_view key,
                                         std::string_view path) {
  const json* v = Get(parent, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean()) return WrongType(Join(path, key), "true or false", *v);
  return std::optional<bool>(v->get<bool>());
}

absl::StatusOr<uint16_t> PortValue(const json& v, std::string_view path) {
  if (!v.is_number_integer()) return WrongType(path, "a port number", v);
  const int64_t n = v.get<int64_t>();
  if (n < 1 || n > 65535) return Bad(path, absl::StrCat("port ", n, " is out of range 1-65535"));
  return static_cast<uint16_t>(n);
}

// Kubernetes label value / name part: <= 63 chars, [A-Za-z0-9._-], alphanumeric at both ends.
bool IsLabelName(std::string_view s, bool allow_empty) {
  if (s.empty()) return allow_empty;
  if (s.size() > 63) return false;
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

// Kubernetes namespace name: an RFC 1123 label, <= 63 chars of [a-z0-9-], alphanumeric at both
// ends.
bool IsDnsLabel(std::string_view s) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  return !s.empty() && s.size() <= 63 && alnum(s.front()) && alnum(s.back()) &&
         std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
}

bool IsLabelKey(std::string_view k) {
  auto slash = k.rfind('/');
  if (slash != std::string_view::npos) {
    std::string_view prefix = k.substr(0, slash);
    if (prefix.empty() || prefix.size() > 253) return false;
    for (char c : prefix) {
      if (!(std::islower(static_cast<unsigned char>(c)) ||
            std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.')) {
        return false;
      }
    }
    k = k.substr(slash + 1);
  }
  return IsLabelName(k, false);
}

absl::StatusOr<std::optional<int64_t>> Int(const json& parent, std::string_view key,
                                           std::string_view path, int64_t lo, int64_t hi) {
  const json* v = Get(parent, key);
  if (v == nullptr) return std::optional<int64_t>();
  const std::string p = Join(path, key);
  if (!v->is_number_integer()) return WrongType(p, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
    return Bad(p, absl::StrCat(v->dump(), " is out of range ", lo, "-", hi));
  }
  const int64_t n = v->get<int64_t>();
  if (n < lo || n > hi) return Bad(p, absl::StrCat(n, " is out of range ", lo, "-", hi));
  return std::optional<int64_t>(n);
}

absl::Status OnlyKnownFields(const json& object, std::string_view path,
                             std::initializer_list<std::string_view> known) {
  if (!object.is_object()) return absl::OkStatus();
  for (const auto& [k, v] : object.items()) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::vector<std::string> names(known.begin(), known.end());
      return Bad(Join(path, k),
                 absl::StrCat("unknown field (want ", absl::StrJoin(names, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(Av(s), '.')) {
    if (!IsDnsLabel(std::string_view(label.data(), label.size()))) return false;
  }
  return true;
}

}  // namespace weft::cp::internal
