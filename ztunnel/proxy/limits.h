// Resource limits of the HBONE server (port 15008), issue 13 hole 3. A TLS handshake is open
// to anyone who can reach the port, so connections are admitted by count before any TLS work:
// per source IP and in total, separately for connections still in the handshake and for
// established (authenticated) ones. Bytes that a destination application does not read yet
// are bounded per connection by the HTTP/2 windows (ProxyOptions) and per ztunnel by a
// budget: over it, connections that hold unread bytes stop being read (back-pressure to the
// sender) instead of buffering more. Everything refused or paused is counted (metrics.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "common/net.h"

namespace weft::ztunnel {

class Metrics;

struct HboneLimitOptions {
  // Connections in the TLS handshake. An honest peer needs one round trip (about a millisecond
  // in a cluster), so even a node full of pods opening pooled connections at once needs few;
  // an idle or trickling peer holds its slot until the handshake timeout. 256 in total keeps
  // the handshake state of all of them ~11 MiB (~45 KiB each in OpenSSL); 32 per source means 8
  // sources are needed to fill the total, and a new source then takes the slot of the oldest
  // connection of the source with the most (Worker::AdmitHbone), so one or a few attacking pods
  // cannot lock out others.
  uint32_t max_handshaking = 256;
  uint32_t max_handshaking_per_source = 32;
  // When the handshaking total is full and no busier source can give up a slot, the oldest
  // handshake gives it up if it has run this long: an honest one needs a round trip, so many
  // sources holding one silent connection each cannot lock everyone out for the timeout.
  std::chrono::milliseconds stale_handshake{1000};
  // Established connections: each has passed mTLS. The source address of a pooled HBONE
  // connection is the source pod's own, and a pod pools one connection per destination pod
  // (more only past 100 streams), so 512 per source is ~4 connections to each of the 110 pods
  // a node can hold; 4096 in total at ~20 KiB of TLS and HTTP/2 state each when idle is
  // ~80 MiB. Raise both on nodes with more peers (ztunnel --hbone-max-established...).
  uint32_t max_established = 4096;
  uint32_t max_established_per_source = 512;
  // Bytes received for applications that have not read them yet, over all HBONE connections
  // of this ztunnel (each connection is also bounded by ProxyOptions::connection_window).
  size_t buffer_budget = 128u << 20;
  // A connection not read over the budget whose unread bytes do not shrink for this long is
  // closed: its applications do not read, and the peer's own RST_STREAMs would otherwise sit
  // unread behind the pause for ever.
  std::chrono::milliseconds stalled_close_after{10000};
};

// Thread-safe: the counts shared by all workers.
class HboneLimits {
 public:
  HboneLimits(const HboneLimitOptions& o, Metrics* metrics);

  // A new connection from `src`: empty if admitted (now counted as handshaking), else the
  // reason it is refused ("handshaking_per_source", "established_per_source",
  // "established_global").
  std::string_view AdmitHandshake(const IpAddr& src);
  // Its handshake finished: empty if it may stay (now counted as established), else the reason
  // it must be closed (it is no longer counted).
  std::string_view Establish(const IpAddr& src);
  void Release(const IpAddr& src, bool established);

  // Unread bytes held for applications (delta may be negative).
  void AddBuffered(int64_t delta);
  int64_t buffered() const { return buffered_.load(std::memory_order_relaxed); }
  bool OverBudget() const { return buffered() >= static_cast<int64_t>(opts_.buffer_budget); }
  const HboneLimitOptions& options() const { return opts_; }

 private:
  struct Counts {
    uint32_t handshaking = 0, established = 0;
  };

  const HboneLimitOptions opts_;
  Metrics* metrics_;
  std::mutex mu_;
  absl::flat_hash_map<IpAddr, Counts> by_source_;  // guarded by mu_
  uint32_t handshaking_ = 0, established_ = 0;     // guarded by mu_
  std::atomic<int64_t> buffered_{0};
};

}  // namespace weft::ztunnel
