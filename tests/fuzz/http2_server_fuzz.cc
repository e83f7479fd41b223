// libFuzzer target for ztunnel's destination-side HTTP/2 codec (ztunnel/l7/http2_server.h): the
// bytes of a (possibly hostile) client and app, interleaved, through one h2c connection.
//
// Input: records (records.h). Flags: bit 0 = the record is app bytes (else client bytes),
// bit 1 = the gate denies the next requests, bit 2 = the app closes after this record,
// bits 4-7 = split the record into that many + 1 reads.
// Invariants checked besides "no crash, no leak, no hang": nothing reaches the app once the
// connection is broken; what the codec holds never exceeds the two connection windows (plus
// local reply bodies); every exchange is reported at most once per request the codec saw.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tests/fuzz/records.h"
#include "ztunnel/l7/http2_server.h"

namespace {

using weft::ztunnel::HttpRequestAttributes;
using weft::ztunnel::l7::Exchange;
using weft::ztunnel::l7::Http2Limits;
using weft::ztunnel::l7::Http2ServerConnection;
using weft::ztunnel::l7::LocalReply;
using State = Http2ServerConnection::State;

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 * 1024) return 0;
  bool deny = false;
  size_t gated = 0, reported = 0;
  Http2Limits limits;
  limits.max_fields = 16;  // small, so the fuzzer reaches the limits
  limits.max_header_list_bytes = 4096;
  limits.stream_window = 1024;
  limits.connection_window = 4096;
  Http2ServerConnection conn(
      limits,
      [&](HttpRequestAttributes& r) -> std::optional<LocalReply> {
        if (r.path.size() > 3) r.path.resize(3);  // a rewritten :path
        ++gated;
        if (deny) return LocalReply{};
        return std::nullopt;
      },
      [&](const Exchange&) { ++reported; });
  size_t to_app = 0, to_client = 0;
  auto app = [&](std::string_view b) {
    Check(conn.state() != State::kBroken);
    to_app += b.size();
  };
  auto client = [&](std::string_view b) { to_client += b.size(); };
  for (const auto& r : weft::fuzz::SplitRecords(data, size, 64)) {
    deny = r.flags & 2;
    size_t parts = (r.flags >> 4) + 1;
    size_t step = r.payload.size() / parts + 1;
    for (size_t off = 0; off < r.payload.size(); off += step) {
      std::string_view piece = r.payload.substr(off, step);
      if (r.flags & 1) {
        conn.FromApp(piece, app, client);
      } else {
        conn.FromClient(piece, app, client);
      }
      Check(conn.buffered() <=
            2 * static_cast<size_t>(limits.connection_window) + conn.open_streams() * 256);
    }
    if (r.flags & 4) conn.AppEof(client);
  }
  conn.Finish();
  Check(reported <= gated + 64 * 1024);
  return 0;
}
