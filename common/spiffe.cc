#include "common/spiffe.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace weft {

absl::StatusOr<SpiffeId> SpiffeId::Parse(std::string_view uri) {
  constexpr std::string_view kScheme = "spiffe://";
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad SPIFFE ID \"", Av(uri), "\": ", Av(why),
                     " (want spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>)"));
  };
  if (uri.substr(0, kScheme.size()) != kScheme) return bad("scheme is not spiffe://");
  std::string_view rest = uri.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("query or fragment");
  std::vector<absl::string_view> parts = absl::StrSplit(Av(rest), '/');
  if (parts.size() != 5 || parts[1] != "ns" || parts[3] != "sa") return bad("wrong path");
  for (auto p : parts)
    if (p.empty()) return bad("empty path segment");
  return SpiffeId{std::string(parts[0]), std::string(parts[2]), std::string(parts[4])};
}

std::string SpiffeId::ToString() const {
  return absl::StrCat("spiffe://", Principal());
}

std::string SpiffeId::Principal() const {
  return absl::StrCat(trust_domain, "/ns/", ns, "/sa/", service_account);
}

}  // namespace weft
