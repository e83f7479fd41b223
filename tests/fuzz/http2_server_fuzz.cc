// libFuzzer target for ztunnel's HTTP/2 codec (ztunnel/l7/http2_server.h): the bytes of a
// (possibly hostile) client and upstreams, interleaved, through one h2c connection, on the
// destination side (one upstream, the app) or the source side (a router over up to 4 upstream
// slots, each slot opening a fresh upstream index when its upstream became unusable).
//
// Input: records (records.h). Bit 3 of the first byte chooses the source side (router mode).
// Flags: bit 0 = the record is upstream bytes (else client bytes), bit 1 = the gate denies the
// next requests, bit 2 = that upstream closes after this record. Destination side: bits 4-7 =
// split the record into that many + 1 reads. Source side: bit 3 = the router answers the next
// requests locally (503), bits 4-5 = split into that many + 1 reads, bits 6-7 = the upstream
// slot: the one the record's bytes come from, and the one the router picks for the requests it
// carries.
// Invariants checked besides "no crash, no leak, no hang": nothing reaches an upstream once the
// connection is broken; what the codec holds never exceeds the client's connection window twice
// (unsent, and kept for a replay) plus one connection window per upstream used (plus local reply
// bodies); every exchange is reported
// at most once per request the codec saw; Exchange::upstream names an upstream the router chose;
// no upstream carries more streams than the connection has. Source side: every other request
// is mirrored (SetMirror): at most one copy per request the gate allowed, its body within the
// bound, and each copy encodes as a request of its own (l7::Http2MirrorRequest).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <variant>

#include "tests/fuzz/records.h"
#include "ztunnel/l7/http2_mirror.h"
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

Http2Limits SmallLimits() {
  Http2Limits limits;
  limits.max_fields = 16;  // small, so the fuzzer reaches the limits
  limits.max_header_list_bytes = 4096;
  limits.stream_window = 1024;
  limits.connection_window = 4096;
  return limits;
}

void Destination(const uint8_t* data, size_t size) {
  bool deny = false;
  size_t gated = 0, reported = 0;
  Http2Limits limits = SmallLimits();
  Http2ServerConnection conn(
      limits,
      [&](HttpRequestAttributes& r) -> std::optional<LocalReply> {
        if (r.path.size() > 3) r.path.resize(3);  // a rewritten :path
        ++gated;
        if (deny) return LocalReply{};
        return std::nullopt;
      },
      [&](const Exchange& e) {
        Check(e.upstream == -1);
        ++reported;
      });
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
}

void Source(const uint8_t* data, size_t size) {
  bool deny = false, local = false;
  uint8_t flags = 0;      // the record being fed
  size_t gen[4] = {};     // per slot: how many upstreams it used up
  std::set<size_t> used;  // indices the router chose
  size_t gated = 0, reported = 0;
  Http2Limits limits = SmallLimits();
  Http2ServerConnection* c = nullptr;
  Http2ServerConnection conn(
      limits,
      [&](HttpRequestAttributes& r) -> std::optional<LocalReply> {
        ++gated;
        r.add_headers.emplace_back("x-request-id", std::to_string(gated));
        if (deny) return LocalReply{};
        return std::nullopt;
      },
      [&](const Exchange& e) {
        Check(e.upstream == -1 || used.count(static_cast<size_t>(e.upstream)));
        ++reported;
      },
      [&](const HttpRequestAttributes&) -> std::variant<size_t, LocalReply> {
        if (local) return LocalReply{503, "no healthy upstream"};
        size_t slot = flags >> 6;
        if (!c->UpstreamUsable(slot + 4 * gen[slot])) ++gen[slot];
        used.insert(slot + 4 * gen[slot]);
        return slot + 4 * gen[slot];
      });
  c = &conn;
  constexpr size_t kMirrorBody = 2048;
  size_t mirrors = 0;
  conn.SetMirror([&](const HttpRequestAttributes&) { return gated % 2 == 1; },
                 [&](const HttpRequestAttributes&, const Http2ServerConnection::MirrorCopy* copy) {
                   ++mirrors;
                   Check(mirrors <= gated);
                   if (!copy) return;
                   Check(copy->body.size() <= kMirrorBody);
                   weft::ztunnel::l7::Http2MirrorRequest m(copy->head, std::string(copy->body),
                                                           copy->trailers);
                   Check(!m.TakeOutput().empty());
                 },
                 kMirrorBody);
  auto up = [&](size_t i, std::string_view) {
    Check(conn.state() != State::kBroken);
    Check(used.count(i));
  };
  auto client = [&](std::string_view) {};
  auto records = weft::fuzz::SplitRecords(data, size, 64);
  for (size_t k = 0; k < records.size(); ++k) {
    const auto& r = records[k];
    flags = r.flags;
    deny = flags & 2;
    if (k > 0) local = flags & 8;
    size_t slot = flags >> 6, index = slot + 4 * gen[slot];
    size_t parts = ((flags >> 4) & 3) + 1;
    size_t step = r.payload.size() / parts + 1;
    for (size_t off = 0; off < r.payload.size(); off += step) {
      std::string_view piece = r.payload.substr(off, step);
      if (flags & 1) {
        conn.FromUpstream(index, piece, up, client);
      } else {
        conn.FromClient(piece, up, client);
      }
      Check(conn.buffered() <= (2 + used.size()) * static_cast<size_t>(limits.connection_window) +
                                   conn.open_streams() * 256);
    }
    size_t streams = 0;
    for (size_t i : used) streams += conn.UpstreamStreams(i);
    Check(streams <= conn.open_streams());
    // The caller closes an upstream that asks for it, or when the input says so.
    if ((flags & 4) || conn.UpstreamFinished(index)) {
      conn.UpstreamEof(index, up, client);
      Check(!conn.UpstreamUsable(index) || !used.count(index));
      ++gen[slot];
    }
  }
  conn.Finish();
  Check(reported <= gated + 64 * 1024);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 * 1024) return 0;
  if (size > 0 && (data[0] & 8)) {
    Source(data, size);
  } else {
    Destination(data, size);
  }
  return 0;
}
