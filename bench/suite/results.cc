#include "bench/suite/results.h"

namespace weft::bench::suite {

namespace {
std::string WeftTitle(std::string_view mode) {
  return mode == kModeEbpf ? "Weft, eBPF capture" : "Weft, iptables capture";
}
}  // namespace

std::string ModeTitle(std::string_view mode) {
  if (mode == kModeBare) return "bare (no mesh)";
  if (mode == kModeSidecar) return "sidecar mesh, TCP (HAProxy mode tcp per pod, mTLS)";
  if (mode == kModeSidecarHttp) return "sidecar mesh, HTTP (HAProxy mode http per pod, mTLS)";
  if (mode.ends_with(kL7RouteSuffix)) {
    const std::string_view base = mode.substr(0, mode.size() - kL7RouteSuffix.size());
    if (base == kModeEbpf || base == kModeIptables)
      return ModeTitle(base) + ", Service with an HTTPRoute and retries (L7)";
  }
  if (mode.ends_with(kL7Suffix)) {
    const std::string_view base = mode.substr(0, mode.size() - kL7Suffix.size());
    if (base == kModeEbpf || base == kModeIptables)
      return ModeTitle(base) + ", Service declared HTTP (L7)";
  }
  if (mode == kModeEbpf || mode == kModeIptables) return WeftTitle(mode);
  return std::string(mode);
}

absl::StatusOr<SuiteResults> ReadSuiteResults(const nlohmann::json& j) {
  WEFT_ASSIGN_OR_RETURN(SuiteResults r, FromJson<SuiteResults>(j));
  if (r.suite != "weft-bench-suite")
    return absl::InvalidArgumentError(absl::StrCat("suite: \"", r.suite,
                                                   "\" is not weft-bench-suite: not a results "
                                                   "document of the benchmark suite"));
  return r;
}

}  // namespace weft::bench::suite
