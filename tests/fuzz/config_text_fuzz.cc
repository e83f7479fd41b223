// libFuzzer target for the standalone config path: text -> YAML -> JSON -> proto -> validated
// snapshot. Any input must end in a snapshot or an InvalidArgument error, never a crash, hang
// or runaway allocation. Built only with Clang (see CMakeLists.txt); seed corpus: testdata/.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/status.h"
#include "ztunnel/state/config_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto pb = weft::ztunnel::ParseConfigText(text);
  if (!pb.ok()) {
    WEFT_CHECK(pb.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  auto snap = weft::ztunnel::ConfigSnapshot::FromProto(*pb);
  if (snap.ok()) {
    // Exercise the read paths a worker would use.
    for (const auto& w : (*snap)->workloads()) {
      (void)(*snap)->PoliciesFor(w);
      (void)(*snap)->EffectiveMtls(w, 80);
    }
    (void)(*snap)->ToJson();
  } else {
    WEFT_CHECK(snap.status().code() == absl::StatusCode::kInvalidArgument);
  }
  return 0;
}
