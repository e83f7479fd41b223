// IP addresses, CIDRs and socket addresses: value types with parsing and formatting.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace weft {

// An IPv4 or IPv6 address. IPv4 is stored as IPv4 (not mapped); IsV4() tells.
class IpAddr {
 public:
  IpAddr() = default;
  static IpAddr V4(uint32_t host_order);
  static IpAddr FromIn6(const in6_addr& a);  // unmaps ::ffff:a.b.c.d to IPv4
  static absl::StatusOr<IpAddr> Parse(std::string_view s);

  bool IsV4() const { return v4_; }
  bool IsLoopback() const;
  bool IsUnspecified() const;
  uint32_t v4_host_order() const;                              // only if IsV4()
  const std::array<uint8_t, 16>& bytes() const { return b_; }  // v4: first 4 bytes
  std::string ToString() const;

  friend bool operator==(const IpAddr& a, const IpAddr& b) {
    return a.v4_ == b.v4_ && a.b_ == b.b_;
  }
  friend bool operator<(const IpAddr& a, const IpAddr& b) {
    return a.v4_ != b.v4_ ? a.v4_ > b.v4_ : a.b_ < b.b_;
  }
  template <typename H>
  friend H AbslHashValue(H h, const IpAddr& a) {
    return H::combine(std::move(h), a.v4_, a.b_);
  }

 private:
  bool v4_ = true;
  std::array<uint8_t, 16> b_{};
};

class Cidr {
 public:
  static absl::StatusOr<Cidr> Parse(std::string_view s);  // "10.0.0.0/8", "::1/128", "1.2.3.4"
  bool Contains(const IpAddr& a) const;
  std::string ToString() const;
  const IpAddr& base() const { return base_; }
  int prefix_len() const { return len_; }

 private:
  IpAddr base_;
  int len_ = 0;
};

// An address + port, convertible to/from sockaddr_storage.
struct SockAddr {
  IpAddr ip;
  uint16_t port = 0;

  static absl::StatusOr<SockAddr> Parse(std::string_view s);  // "1.2.3.4:80", "[::1]:80"
  static SockAddr FromSockaddr(const sockaddr* sa);
  // Fills `ss` and returns the length to pass to bind/connect.
  socklen_t ToSockaddr(sockaddr_storage* ss) const;
  std::string ToString() const;

  friend bool operator==(const SockAddr& a, const SockAddr& b) {
    return a.ip == b.ip && a.port == b.port;
  }
  template <typename H>
  friend H AbslHashValue(H h, const SockAddr& a) {
    return H::combine(std::move(h), a.ip, a.port);
  }
};

// Local/peer address of a connected socket.
absl::StatusOr<SockAddr> LocalAddress(int fd);
absl::StatusOr<SockAddr> PeerAddress(int fd);

// A listening TCP socket on every address of the namespace, IPv4 and IPv6 (one dual-stack
// socket), port `port` (0: any), SO_REUSEADDR, backlog 128. For the small test and example apps.
absl::StatusOr<UniqueFd> ListenOnAllAddresses(uint16_t port);

// Resolves `host` to IPv4 (a name in /etc/hosts, or an address) and connects to `port`, with
// `timeout` on the connect and, after it, on every send and recv.
absl::StatusOr<UniqueFd> DialTcp(const std::string& host, const std::string& port,
                                 std::chrono::seconds timeout);

}  // namespace weft
