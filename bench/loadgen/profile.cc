#include "bench/loadgen/profile.h"

#include <fstream>
#include <set>
#include <sstream>

#include "nlohmann/json.hpp"

namespace weft::bench::loadgen {
namespace {

// The tea shop profile, in the same JSON form a --profile file uses.
constexpr std::string_view kTeashopJson = R"({
  "headers": {"X-User": "loadgen-{user}"},
  "requests": [
    {"name": "home", "method": "GET", "path": "/"},
    {"name": "category", "method": "GET", "path": "/category?name=green&page=1"},
    {"name": "product", "method": "GET", "path": "/product?id=42"},
    {"name": "search", "method": "GET", "path": "/search?q=smoky&page=1"},
    {"name": "cart_add", "method": "POST", "path": "/cart/add", "body": "id=42&qty=1",
     "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"name": "cart", "method": "GET", "path": "/cart"},
    {"name": "checkout", "method": "POST", "path": "/checkout"},
    {"name": "recommend", "method": "GET", "path": "/recommend?for=42,43"}
  ]})";

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError("profile: " + what +
                                    " (see bench/loadgen/profile.h for the format)");
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Headers(const nlohmann::json& j,
                                                                         const std::string& where) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!j.is_object()) return Bad(where + ": \"headers\" must be an object of strings");
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string() || k.empty()) {
      return Bad(where + ": header \"" + k + "\" must have a string value");
    }
    out.emplace_back(k, v.get<std::string>());
  }
  return out;
}

}  // namespace

std::string ExpandUser(std::string_view s, int user) {
  std::string out;
  const std::string u = std::to_string(user);
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, 6) == "{user}") {
      out += u;
      i += 6;
    } else {
      out += s[i++];
    }
  }
  return out;
}

absl::StatusOr<Profile> ParseProfile(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("not valid JSON");
  if (!j.is_object() || !j.contains("requests") || !j["requests"].is_array() ||
      j["requests"].empty()) {
    return Bad("expected an object with a non-empty \"requests\" array");
  }
  std::vector<std::pair<std::string, std::string>> common;
  if (j.contains("headers")) {
    auto h = Headers(j["headers"], "top level");
    if (!h.ok()) return h.status();
    common = std::move(*h);
  }
  static const std::set<std::string> kMethods = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"};
  Profile p;
  std::set<std::string> names;
  for (size_t i = 0; i < j["requests"].size(); ++i) {
    const auto& r = j["requests"][i];
    const std::string where = "requests[" + std::to_string(i) + "]";
    if (!r.is_object()) return Bad(where + " is not an object");
    RequestSpec s;
    for (const char* key : {"name", "method", "path", "body"}) {
      if (r.contains(key) && !r[key].is_string()) {
        return Bad(where + ": \"" + key + "\" must be a string");
      }
    }
    s.name = r.value("name", "");
    if (s.name.empty()) return Bad(where + ": \"name\" is required");
    if (!names.insert(s.name).second) return Bad(where + ": duplicate name \"" + s.name + "\"");
    s.method = r.value("method", "GET");
    if (!kMethods.count(s.method)) {
      return Bad(where + ": method \"" + s.method +
                 "\" is not one of GET POST PUT DELETE HEAD PATCH");
    }
    s.path = r.value("path", "/");
    if (s.path.empty() || s.path[0] != '/') {
      return Bad(where + ": \"path\" must start with '/' (got \"" + s.path + "\")");
    }
    s.body = r.value("body", "");
    s.headers = common;
    if (r.contains("headers")) {
      auto h = Headers(r["headers"], where);
      if (!h.ok()) return h.status();
      for (auto& kv : *h) s.headers.push_back(std::move(kv));
    }
    p.requests.push_back(std::move(s));
  }
  return p;
}

absl::StatusOr<Profile> LoadProfile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError("profile: cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  auto p = ParseProfile(ss.str());
  if (!p.ok()) return absl::InvalidArgumentError(path + ": " + std::string(p.status().message()));
  return p;
}

Profile TeashopProfile() {
  return *ParseProfile(kTeashopJson);
}

}  // namespace weft::bench::loadgen
