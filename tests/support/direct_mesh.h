// What the direct-tier mesh tests (tests/integration/direct_test.cc, fastpath_test.cc) share:
// the client and server workloads' identities and loopback addresses, and the one seam they
// use in place of netfilter, an original-destination table keyed by the client's address.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/spiffe.h"
#include "ztunnel/capture/capture.h"

namespace weft::testing {

inline const SpiffeId kClientId{"cluster.local", "ns-a", "client"};
inline const SpiffeId kServerId{"cluster.local", "ns-b", "server"};
inline const IpAddr kClientIp = *IpAddr::Parse("127.0.0.10");
inline const IpAddr kServerIp = *IpAddr::Parse("127.0.0.20");

// Original destination by the accepted socket's peer address (the test registers it first).
// Thread-safe.
class TableOrigDst : public ztunnel::OrigDstProvider {
 public:
  void Set(const SockAddr& client, const SockAddr& target) {
    std::lock_guard<std::mutex> l(mu_);
    table_[client.ToString()] = target;
  }
  absl::StatusOr<SockAddr> OriginalDst(int fd) override {
    auto peer = PeerAddress(fd);
    if (!peer.ok()) return peer.status();
    std::lock_guard<std::mutex> l(mu_);
    auto it = table_.find(peer->ToString());
    if (it == table_.end()) return absl::NotFoundError("no original destination registered");
    return it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::string, SockAddr> table_;
};

}  // namespace weft::testing
