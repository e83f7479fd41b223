// libFuzzer target for the config stream as the node's client receives it (ztunnel and
// weft-agent, ztunnel/xds/client.cc): a sequence of ConfigResponse protobufs (full snapshots and
// deltas), each applied in place to the client's SnapshotSet and validated with
// ConfigSnapshot::FromProto; a rejected version is reverted (NACK). The steps are those of
// ConfigClient::HandleResponse, without the gRPC stream around them.
//
// Input: records (records.h), each payload one serialized ConfigResponse.
// Oracles: a reverted SnapshotSet is byte-for-byte what it was before; SnapshotSet (the client's
// in-place set) and ResourceSet (the reference implementation of the same rules) agree on every
// response, accepted or not, and on the resulting snapshot.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/status.h"
#include "config/xds/resources.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/fuzz/records.h"
#include "ztunnel/state/snapshot.h"

namespace {

namespace pb = weft::config::v1;
namespace xds = weft::config::xds;

constexpr size_t kMaxInput = 256 * 1024;
constexpr size_t kMaxResponses = 16;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "xds_client: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // "invalid UTF-8" parse errors are expected here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  xds::SnapshotSet set;        // the client's copy (ConfigClient::set_)
  xds::ResourceSet reference;  // same rules, straightforward implementation
  std::string good_version;
  for (const auto& rec : weft::fuzz::SplitRecords(data, size, kMaxResponses)) {
    pb::ConfigResponse resp;
    if (!resp.ParseFromArray(rec.payload.data(), static_cast<int>(rec.payload.size()))) continue;
    const std::string before = xds::DeterministicBytes(set.snapshot());

    absl::Status st = set.Apply(resp);
    xds::ResourceSet ref_try = reference;
    absl::Status ref_st = ref_try.Apply(resp);
    if (st.ok() != ref_st.ok())
      Fail("SnapshotSet says " + st.ToString() + ", ResourceSet says " + ref_st.ToString());
    if (!st.ok()) {
      WEFT_CHECK(st.code() == absl::StatusCode::kInvalidArgument);
      WEFT_CHECK(!set.pending());
      if (xds::DeterministicBytes(set.snapshot()) != before)
        Fail("a rejected response changed the set");
      continue;
    }
    if (xds::DeterministicBytes(set.snapshot()) !=
        xds::DeterministicBytes(ref_try.ToSnapshot(resp.version())))
      Fail("SnapshotSet and ResourceSet disagree after version " + resp.version());

    auto validated = weft::ztunnel::ConfigSnapshot::FromProto(set.snapshot());
    if (!validated.ok()) {
      WEFT_CHECK(validated.status().code() == absl::StatusCode::kInvalidArgument);
      set.Revert();  // NACK: the last good version stays
      if (xds::DeterministicBytes(set.snapshot()) != before) Fail("Revert did not restore");
      continue;
    }
    set.Commit();  // ACK
    reference = std::move(ref_try);
    good_version = resp.version();
    // What the proxy then does with an accepted snapshot: lookups by every workload address.
    for (const auto& w : (*validated)->workloads()) {
      (void)(*validated)->PoliciesFor(w);
      for (const auto& ip : w.addresses) (void)(*validated)->FindWorkloadByAddress(ip);
    }
  }
  return 0;
}
