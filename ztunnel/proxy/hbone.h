// HBONE: HTTP/2 CONNECT over mTLS to <destination pod IP>:15008, :authority = the original
// destination "ip:port". Pure helpers (no I/O), unit-tested on their own.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/spiffe.h"

namespace weft::ztunnel {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Request headers for a CONNECT to `target` (RFC 9113 §8.5: only :method and :authority).
HeaderList BuildConnectRequest(const SockAddr& target, const std::string& traceparent = "");

// Validates a received request: :method must be CONNECT (else kUnimplemented -> 405), no
// :scheme/:path (not extended CONNECT), :authority an "ip:port" literal (else
// kInvalidArgument -> 400). Returns the target.
absl::StatusOr<SockAddr> ParseConnectRequest(const HeaderList& headers);

// HTTP status for a rejected CONNECT.
int StatusForRejection(const absl::Status& s);

// Pool key: connections are shared only between tunnels with the same source identity,
// destination identity and destination (pod IP:15008). Each pod has its own pool, so the
// source address of a pooled connection is always the pod's own.
struct PoolKey {
  SpiffeId src;
  SpiffeId dst;
  SockAddr dst_addr;
  friend bool operator==(const PoolKey&, const PoolKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const PoolKey& k) {
    return H::combine(std::move(h), k.src, k.dst, k.dst_addr);
  }
};

}  // namespace weft::ztunnel
