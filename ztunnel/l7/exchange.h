// What the destination-side HTTP codecs (http1_server.h, http2_server.h) share: the local reply a
// gate answers a request with, and the record of one request and its response.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ztunnel/rbac/request.h"

namespace weft::ztunnel::l7 {

// A response ztunnel makes itself instead of the server (Envoy's "local reply").
struct LocalReply {
  int status = 403;
  std::string body = "RBAC: access denied";  // Envoy's body for an RBAC denial
  // Extra response fields (names lower-case), e.g. a redirect's `location`.
  std::vector<std::pair<std::string, std::string>> headers;
  // For a gRPC request: this grpc-status instead of the one mapped from `status` (a fault
  // injection's abort); -1: mapped.
  int grpc_status = -1;
};

// One request and its response, reported once both are over (or the connection ended).
struct Exchange {
  HttpRequestAttributes request;  // empty method: the head could not be parsed
  std::chrono::steady_clock::time_point start, end;
  uint64_t request_bytes = 0;   // head + body as received from the client (HTTP/2: field
                                // names and values + DATA payload)
  uint64_t response_bytes = 0;  // head + body as sent to the client (interim 1xx included;
                                // a local reply's own bytes)
  int status = 0;               // 0: no response (the connection ended first)
  // How it ended: complete (the response, a local reply or a protocol switch), or cut short
  // because the server closed or reset its side first (Envoy's flag "UC"), or because the client
  // left or the connection was torn down first ("DC"). A cut-short exchange keeps the status of
  // a response head already seen.
  enum class End { kComplete, kServerEnded, kClientEnded };
  End ended = End::kComplete;
  bool local_reply = false;  // answered by ztunnel (status is the local reply's)
  std::string reason;        // local replies: why ("RBAC: access denied", a parse error)
  // A local reply the codec made itself because it refused the client's input (malformed or
  // ambiguous framing, a head over the limits, a head not complete in time), not a gate's.
  bool refused_by_codec = false;
  int upstream = -1;     // source side: the upstream (router's index) that carried it,
                         // -1 when none did (a local reply, or the destination side)
  int grpc_status = -1;  // HTTP/2: the response's grpc-status (trailers or trailers-only),
                         // -1 when it has none
};

}  // namespace weft::ztunnel::l7
