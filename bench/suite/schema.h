// The JSON form of the suite's result types (results.h), both ways, from one list of fields per
// type. A result struct names its fields once:
//
//   struct SeedStep {
//     int users = 0;
//     std::map<std::string, LoadRun> runs;  // by mode
//     template <typename S, typename F>
//     static void Schema(S& s, F& f) {
//       f("users", s.users, Field::kRequired);
//       f("runs", s.runs);
//     }
//   };
//
// and ToJson(step) / FromJson<SeedStep>(j) walk that list. Leaf types: bool, integers, double,
// std::string and nlohmann::json (a sub-document with a schema of its own, kept as it is);
// std::optional, std::vector and std::map<std::string, T> of any of them or of a struct with a
// Schema. A struct may splice another one's fields into its own object by calling its Schema.
//
// Reading is strict about what is there and lenient about what is not: a field of the wrong type
// (a string where a number belongs, 2.5 where a whole number does) and a missing kRequired field
// are errors that name the field by its path ("scenarios.seed.steps[2].users: missing");
// a missing optional field keeps its default (std::nullopt, 0, "", empty); unknown fields are
// ignored, so a newer document can still be read. JSON null counts as missing (nlohmann writes
// NaN as null).
#pragma once

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft::bench::suite {

enum class Field {
  kOptional,   // may be missing; always written (std::optional: only when it holds a value)
  kRequired,   // missing is an error
  kOmitEmpty,  // may be missing; not written when empty ("", [], {}, null)
};

namespace schema_internal {

using json = nlohmann::json;

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};
template <typename T>
struct IsMap : std::false_type {};
template <typename T>
struct IsMap<std::map<std::string, T>> : std::true_type {};

template <typename T>
constexpr bool kIsLeaf = std::is_arithmetic_v<T> || std::is_same_v<T, std::string>;

template <typename T>
json WriteValue(const T& v);

class Writer {
 public:
  template <typename T>
  void operator()(const char* key, const T& v, Field field = Field::kOptional) {
    if constexpr (IsOptional<T>::value) {
      if (v) j_[key] = WriteValue(*v);
    } else {
      if (field == Field::kOmitEmpty && Empty(v)) return;
      j_[key] = WriteValue(v);
    }
  }
  // A figure computed from the others: written for readers of the JSON, never read back.
  template <typename T>
  void Derived(const char* key, const T& v) {
    j_[key] = WriteValue(v);
  }
  json Take() { return std::move(j_); }

 private:
  template <typename T>
  static bool Empty(const T& v) {
    if constexpr (std::is_same_v<T, json>) {
      return v.is_null();
    } else if constexpr (requires { v.empty(); }) {
      return v.empty();
    } else {
      return false;
    }
  }
  json j_ = json::object();
};

template <typename T>
json WriteValue(const T& v) {
  if constexpr (std::is_same_v<T, json> || kIsLeaf<T>) {
    return json(v);
  } else if constexpr (IsVector<T>::value) {
    json a = json::array();
    for (const auto& x : v) a.push_back(WriteValue(x));
    return a;
  } else if constexpr (IsMap<T>::value) {
    json o = json::object();
    for (const auto& [k, x] : v) o[k] = WriteValue(x);
    return o;
  } else {
    Writer w;
    T::Schema(v, w);
    return w.Take();
  }
}

inline std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

inline absl::Status TypeError(const std::string& path, const char* expected, const json& got) {
  std::string text = got.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return absl::InvalidArgumentError(absl::StrCat(path.empty() ? "the document" : path,
                                                 ": expected ", expected, ", got ", got.type_name(),
                                                 got.is_structured() ? "" : " " + text));
}

template <typename T>
absl::Status ReadValue(const json& j, const std::string& path, T& v);

class Reader {
 public:
  Reader(const json& j, const std::string& path) : j_(j), path_(path) {}

  template <typename T>
  void operator()(const char* key, T& v, Field field = Field::kOptional) {
    if (!status_.ok()) return;
    const std::string path = Join(path_, key);
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (field == Field::kRequired) status_ = absl::InvalidArgumentError(path + ": missing");
      return;
    }
    status_ = ReadValue(*it, path, v);
  }
  template <typename T>
  void Derived(const char*, const T&) {}
  const absl::Status& status() const { return status_; }

 private:
  const json& j_;
  const std::string& path_;
  absl::Status status_;
};

template <typename T>
absl::Status ReadNumber(const json& j, const std::string& path, T& v) {
  if (!j.is_number()) return TypeError(path, "a number", j);
  const double d = j.get<double>();
  if constexpr (std::is_integral_v<T>) {
    if (j.is_number_float() && d != std::floor(d)) return TypeError(path, "a whole number", j);
    if (d < static_cast<double>(std::numeric_limits<T>::min()) ||
        d > static_cast<double>(std::numeric_limits<T>::max()))
      return TypeError(path, "a number in range", j);
    v = j.is_number_float() ? static_cast<T>(d) : j.get<T>();
  } else {
    v = d;
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status ReadValue(const json& j, const std::string& path, T& v) {
  if constexpr (IsOptional<T>::value) {
    typename T::value_type x{};
    WEFT_RETURN_IF_ERROR(ReadValue(j, path, x));
    v = std::move(x);
  } else if constexpr (std::is_same_v<T, json>) {
    v = j;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!j.is_boolean()) return TypeError(path, "true or false", j);
    v = j.get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!j.is_string()) return TypeError(path, "a string", j);
    v = j.get<std::string>();
  } else if constexpr (std::is_arithmetic_v<T>) {
    return ReadNumber(j, path, v);
  } else if constexpr (IsVector<T>::value) {
    if (!j.is_array()) return TypeError(path, "an array", j);
    v.assign(j.size(), typename T::value_type{});
    for (size_t i = 0; i < j.size(); ++i)
      WEFT_RETURN_IF_ERROR(ReadValue(j[i], absl::StrCat(path, "[", i, "]"), v[i]));
  } else if constexpr (IsMap<T>::value) {
    if (!j.is_object()) return TypeError(path, "an object", j);
    v.clear();
    for (const auto& [k, x] : j.items()) WEFT_RETURN_IF_ERROR(ReadValue(x, Join(path, k), v[k]));
  } else {
    if (!j.is_object()) return TypeError(path, "an object", j);
    Reader r(j, path);
    T::Schema(v, r);
    return r.status();
  }
  return absl::OkStatus();
}

}  // namespace schema_internal

// The JSON form of a result value (a struct with a Schema, or a container of them).
template <typename T>
nlohmann::json ToJson(const T& v) {
  return schema_internal::WriteValue(v);
}

// The value back from its JSON form; InvalidArgument naming the first field that is missing
// (kRequired) or malformed, by its path below `path` (e.g. "scenarios.seed").
template <typename T>
absl::StatusOr<T> FromJson(const nlohmann::json& j, const std::string& path = "") {
  T v{};
  WEFT_RETURN_IF_ERROR(schema_internal::ReadValue(j, path, v));
  return v;
}

}  // namespace weft::bench::suite
