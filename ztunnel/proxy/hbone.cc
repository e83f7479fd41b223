#include "ztunnel/proxy/hbone.h"

#include "absl/strings/str_cat.h"

namespace weft::ztunnel {

HeaderList BuildConnectRequest(const SockAddr& target, const std::string& traceparent) {
  HeaderList h = {{":method", "CONNECT"}, {":authority", target.ToString()}};
  if (!traceparent.empty()) h.emplace_back("traceparent", traceparent);
  return h;
}

absl::StatusOr<SockAddr> ParseConnectRequest(const HeaderList& headers) {
  const std::string* method = nullptr;
  const std::string* authority = nullptr;
  for (const auto& [k, v] : headers) {
    if (k == ":method") {
      method = &v;
    } else if (k == ":authority") {
      authority = &v;
    } else if (k == ":scheme" || k == ":path" || k == ":protocol") {
      return absl::InvalidArgumentError(absl::StrCat("HBONE CONNECT must not carry ", k));
    }
  }
  if (method == nullptr || *method != "CONNECT")
    return absl::UnimplementedError(
        absl::StrCat("HBONE accepts only CONNECT, got ", method ? *method : "no :method"));
  if (authority == nullptr) return absl::InvalidArgumentError("CONNECT without :authority");
  auto target = SockAddr::Parse(*authority);
  if (!target.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("CONNECT :authority must be ip:port: ", target.status().message()));
  if (target->port == 0) return absl::InvalidArgumentError("CONNECT to port 0");
  return target;
}

int StatusForRejection(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnimplemented:
      return 405;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 400;
  }
}

}  // namespace weft::ztunnel
