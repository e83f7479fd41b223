#include "bench/suite/results.h"

namespace weft::bench::suite {

std::string ModeTitle(std::string_view mode) {
  if (mode == kModeBare) return "bare (no mesh)";
  if (mode == kModeEbpf) return "Weft, eBPF capture";
  if (mode == kModeIptables) return "Weft, iptables capture";
  if (mode == kModeSidecar) return "sidecar mesh (HAProxy per pod, mTLS)";
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
