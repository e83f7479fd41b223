// Internal to weft_cp_model: reading Kubernetes objects' JSON field by field. Every error is
// InvalidArgument "<field path>: <problem>", the path written as users write it
// ("spec.rules[0].matches[1].path.value").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace weft::cp::internal {

absl::Status Bad(std::string_view path, std::string_view problem);
std::string Join(std::string_view path, std::string_view key);  // "a.b"
std::string At(std::string_view path, size_t i);                // "a[3]"
std::string TypeName(const nlohmann::json& j);                  // "the string \"x\"", "a list"
absl::Status WrongType(std::string_view path, std::string_view want, const nlohmann::json& got);

// nullptr when absent or null.
const nlohmann::json* Get(const nlohmann::json& parent, std::string_view key);
// Absent: "" (or an error when required; required also refuses "").
absl::StatusOr<std::string> Str(const nlohmann::json& parent, std::string_view key,
                                std::string_view path, bool required = false);
// Absent: nullptr (or an error when required).
absl::StatusOr<const nlohmann::json*> Obj(const nlohmann::json& parent, std::string_view key,
                                          std::string_view path, bool required = false);
absl::StatusOr<const nlohmann::json*> Arr(const nlohmann::json& parent, std::string_view key,
                                          std::string_view path);
absl::StatusOr<std::optional<bool>> Bool(const nlohmann::json& parent, std::string_view key,
                                         std::string_view path);
// An integer in [lo, hi]; absent: nullopt.
absl::StatusOr<std::optional<int64_t>> Int(const nlohmann::json& parent, std::string_view key,
                                           std::string_view path, int64_t lo, int64_t hi);
absl::StatusOr<uint16_t> PortValue(const nlohmann::json& v, std::string_view path);
// Fails on the first key of `object` (a mapping) not in `known`, naming what is known.
absl::Status OnlyKnownFields(const nlohmann::json& object, std::string_view path,
                             std::initializer_list<std::string_view> known);

// Kubernetes label value / name part: <= 63 chars, [A-Za-z0-9._-], alphanumeric at both ends.
bool IsLabelName(std::string_view s, bool allow_empty);
// RFC 1123 label: <= 63 chars of [a-z0-9-], alphanumeric at both ends (namespace names).
bool IsDnsLabel(std::string_view s);
// RFC 1123 subdomain: dot-separated DNS labels, <= 253 chars (most object names).
bool IsDnsSubdomain(std::string_view s);
bool IsLabelKey(std::string_view k);

}  // namespace weft::cp::internal
