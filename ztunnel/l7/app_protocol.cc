#include "ztunnel/l7/app_protocol.h"

#include <algorithm>

#include "absl/strings/ascii.h"

namespace weft::ztunnel::l7 {

namespace {
bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return absl::ascii_tolower(static_cast<unsigned char>(x)) ==
                  absl::ascii_tolower(static_cast<unsigned char>(y));
         });
}
}  // namespace

bool IsHttpPort(std::string_view app_protocol, std::string_view name) {
  if (!app_protocol.empty()) {
    for (std::string_view p :
         {"http", "http2", "h2c", "grpc", "grpc-web", "kubernetes.io/h2c", "kubernetes.io/ws"})
      if (EqualsNoCase(app_protocol, p)) return true;
    return false;
  }
  if (EqualsNoCase(name.substr(0, 8), "grpc-web") && (name.size() == 8 || name[8] == '-'))
    return true;
  std::string_view proto = name.substr(0, name.find('-'));
  for (std::string_view p : {"http", "http2", "grpc"})
    if (EqualsNoCase(proto, p)) return true;
  return false;
}

bool IsHttp2Port(std::string_view app_protocol, std::string_view name) {
  if (!app_protocol.empty()) {
    for (std::string_view p : {"http2", "h2c", "grpc", "kubernetes.io/h2c"})
      if (EqualsNoCase(app_protocol, p)) return true;
    return false;
  }
  if (EqualsNoCase(name.substr(0, 8), "grpc-web")) return false;
  std::string_view proto = name.substr(0, name.find('-'));
  return EqualsNoCase(proto, "http2") || EqualsNoCase(proto, "grpc");
}

}  // namespace weft::ztunnel::l7
