// Request profiles for weft-loadgen: the list of request types each user cycles over, as the
// TeaStore user profile does (JMeter: every user iterates over the same 8 requests).
//
// File format (JSON):
//   {"requests": [
//     {"name": "home", "method": "GET", "path": "/"},
//     {"name": "cart_add", "method": "POST", "path": "/cart/add", "body": "id=42&qty=1",
//      "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, ...],
//    "headers": {"X-User": "u{user}"}}          // optional, sent with every request
// "{user}" in a path, body or header value is replaced by the user's number (0-based), so each
// user has its own cart in the tea shop. method: GET, POST, PUT, DELETE, HEAD, PATCH.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace weft::bench::loadgen {

struct RequestSpec {
  std::string name;  // unique within the profile; the per-type key in the results
  std::string method = "GET";
  std::string path = "/";  // request target, starts with '/'
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // profile-wide ones included
};

struct Profile {
  std::vector<RequestSpec> requests;  // never empty once parsed
};

// The tea shop's 8 front-end request types (examples/teashop/README.md), X-User per user.
Profile TeashopProfile();
absl::StatusOr<Profile> ParseProfile(std::string_view json_text);
absl::StatusOr<Profile> LoadProfile(const std::string& path);

// `s` with every "{user}" replaced by the user number.
std::string ExpandUser(std::string_view s, int user);

}  // namespace weft::bench::loadgen
