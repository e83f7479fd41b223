// libFuzzer target for ztunnel's destination-side HTTP/1.1 codec (ztunnel/l7/http1_server.h):
// the bytes of a (possibly hostile) client and server, interleaved, through one connection.
//
// Input: records (records.h). Flags: bit 0 = the record is server bytes (else client bytes),
// bit 1 = the gate denies the next request heads, bit 2 = the server closes after this record,
// bits 4-7 = split the record into that many + 1 reads.
// Invariants checked besides "no crash, no leak, no hang": nothing reaches the server once the
// connection is closing or broken; a denied head never reaches the server; every exchange is
// reported at most once per request head the gate saw (plus refused heads).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tests/fuzz/records.h"
#include "ztunnel/l7/http1_server.h"

namespace {

using weft::ztunnel::HttpRequestAttributes;
using weft::ztunnel::l7::Exchange;
using weft::ztunnel::l7::Http1Limits;
using weft::ztunnel::l7::Http1ServerConnection;
using weft::ztunnel::l7::LocalReply;
using State = Http1ServerConnection::State;

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 * 1024) return 0;
  bool deny = false;
  size_t gated = 0, reported = 0;
  Http1Limits limits;
  limits.max_head_bytes = 4096;  // small, so the fuzzer reaches the limits
  limits.max_fields = 16;
  Http1ServerConnection conn(
      limits,
      [&](HttpRequestAttributes& r) -> std::optional<LocalReply> {
        if (r.path.size() > 3) r.path.resize(3);  // a rewrite of the request line
        ++gated;
        if (deny) return LocalReply{};
        return std::nullopt;
      },
      [&](const Exchange&) { ++reported; });
  std::string to_server;
  auto sink = [&](std::string_view b) {
    Check(conn.state() != State::kBroken);
    to_server.append(b);
  };
  for (const auto& r : weft::fuzz::SplitRecords(data, size, 64)) {
    deny = r.flags & 2;
    size_t parts = (r.flags >> 4) + 1;
    size_t step = r.payload.size() / parts + 1;
    for (size_t off = 0; off < r.payload.size(); off += step) {
      std::string_view piece = r.payload.substr(off, step);
      State before = conn.state();
      size_t sent_before = to_server.size();
      if (r.flags & 1) {
        conn.FromServer(piece, sink);
      } else {
        conn.FromClient(piece, sink);
        if (before == State::kClosing || before == State::kBroken) {
          Check(to_server.size() == sent_before);
        }
      }
      (void)conn.TakeLocalReply();
    }
    if (r.flags & 4) conn.ServerEof();
  }
  conn.Finish();
  Check(reported <= gated + 1);
  return 0;
}
