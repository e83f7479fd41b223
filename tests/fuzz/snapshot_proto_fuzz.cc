// libFuzzer target for snapshots arriving as binary protobuf (the weftd stream): any message
// that parses must end in a snapshot or an InvalidArgument error, never a crash.
#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "google/protobuf/stubs/logging.h"
#include "ztunnel/state/snapshot.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // "invalid UTF-8" parse errors are expected here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  weft::config::v1::ConfigSnapshot pb;
  if (!pb.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto snap = weft::ztunnel::ConfigSnapshot::FromProto(pb);
  if (!snap.ok()) {
    WEFT_CHECK(snap.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  for (const auto& w : (*snap)->workloads()) {
    (void)(*snap)->PoliciesFor(w);
    (void)(*snap)->EffectiveMtls(w, 443);
    for (const auto& ip : w.addresses) WEFT_CHECK((*snap)->FindWorkloadByAddress(ip) != nullptr);
  }
  return 0;
}
