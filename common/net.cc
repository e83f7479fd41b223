#include "common/net.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft {

IpAddr IpAddr::V4(uint32_t host_order) {
  IpAddr a;
  a.v4_ = true;
  uint32_t n = htonl(host_order);
  std::memcpy(a.b_.data(), &n, 4);
  return a;
}

IpAddr IpAddr::FromIn6(const in6_addr& in) {
  if (IN6_IS_ADDR_V4MAPPED(&in)) {
    IpAddr a;
    std::memcpy(a.b_.data(), &in.s6_addr[12], 4);
    return a;
  }
  IpAddr a;
  a.v4_ = false;
  std::memcpy(a.b_.data(), in.s6_addr, 16);
  return a;
}

absl::StatusOr<IpAddr> IpAddr::Parse(std::string_view s) {
  std::string str(s);
  in_addr v4;
  if (inet_pton(AF_INET, str.c_str(), &v4) == 1) return V4(ntohl(v4.s_addr));
  in6_addr v6;
  if (inet_pton(AF_INET6, str.c_str(), &v6) == 1) return FromIn6(v6);
  return absl::InvalidArgumentError(absl::StrCat("not an IP address: \"", Av(s), "\""));
}

bool IpAddr::IsLoopback() const {
  if (v4_) return b_[0] == 127;
  static const std::array<uint8_t, 16> kLo = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return b_ == kLo;
}

bool IpAddr::IsUnspecified() const {
  for (int i = 0; i < (v4_ ? 4 : 16); i++)
    if (b_[i]) return false;
  return true;
}

uint32_t IpAddr::v4_host_order() const {
  uint32_t n;
  std::memcpy(&n, b_.data(), 4);
  return ntohl(n);
}

std::string IpAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v4_ ? AF_INET : AF_INET6, b_.data(), buf, sizeof buf);
  return buf;
}

absl::StatusOr<Cidr> Cidr::Parse(std::string_view s) {
  Cidr c;
  auto slash = s.find('/');
  WEFT_ASSIGN_OR_RETURN(c.base_, IpAddr::Parse(s.substr(0, slash)));
  int max = c.base_.IsV4() ? 32 : 128;
  if (slash == std::string_view::npos) {
    c.len_ = max;
  } else if (!absl::SimpleAtoi(Av(s.substr(slash + 1)), &c.len_) || c.len_ < 0 || c.len_ > max) {
    return absl::InvalidArgumentError(absl::StrCat("bad CIDR prefix length in \"", Av(s), "\""));
  }
  return c;
}

bool Cidr::Contains(const IpAddr& a) const {
  if (a.IsV4() != base_.IsV4()) return false;
  const auto& x = a.bytes();
  const auto& y = base_.bytes();
  int full = len_ / 8, rem = len_ % 8;
  for (int i = 0; i < full; i++)
    if (x[i] != y[i]) return false;
  if (rem) {
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rem));
    if ((x[full] & mask) != (y[full] & mask)) return false;
  }
  return true;
}

std::string Cidr::ToString() const {
  return absl::StrCat(base_.ToString(), "/", len_);
}

absl::StatusOr<SockAddr> SockAddr::Parse(std::string_view s) {
  SockAddr a;
  std::string_view host, port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find("]:");
    if (close == std::string_view::npos)
      return absl::InvalidArgumentError(
          absl::StrCat("bad address \"", Av(s), "\", want [ip6]:port"));
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos)
      return absl::InvalidArgumentError(absl::StrCat("bad address \"", Av(s), "\", want ip:port"));
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  WEFT_ASSIGN_OR_RETURN(a.ip, IpAddr::Parse(host));
  uint32_t p;
  if (!absl::SimpleAtoi(Av(port), &p) || p > 65535)
    return absl::InvalidArgumentError(absl::StrCat("bad port in \"", Av(s), "\""));
  a.port = static_cast<uint16_t>(p);
  return a;
}

SockAddr SockAddr::FromSockaddr(const sockaddr* sa) {
  SockAddr a;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.ip = IpAddr::V4(ntohl(in->sin_addr.s_addr));
    a.port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    a.ip = IpAddr::FromIn6(in6->sin6_addr);
    a.port = ntohs(in6->sin6_port);
  }
  return a;
}

socklen_t SockAddr::ToSockaddr(sockaddr_storage* ss) const {
  std::memset(ss, 0, sizeof *ss);
  if (ip.IsV4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    in->sin_addr.s_addr = htonl(ip.v4_host_order());
    return sizeof(sockaddr_in);
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  std::memcpy(in6->sin6_addr.s6_addr, ip.bytes().data(), 16);
  return sizeof(sockaddr_in6);
}

std::string SockAddr::ToString() const {
  return ip.IsV4() ? absl::StrCat(ip.ToString(), ":", port)
                   : absl::StrCat("[", ip.ToString(), "]:", port);
}

static absl::StatusOr<SockAddr> Name(int fd, bool peer) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc != 0) return ErrnoError(errno, peer ? "getpeername" : "getsockname");
  return SockAddr::FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
}

absl::StatusOr<SockAddr> LocalAddress(int fd) {
  return Name(fd, false);
}
absl::StatusOr<SockAddr> PeerAddress(int fd) {
  return Name(fd, true);
}

absl::Status ErrnoError(int err, std::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(Av(what), ": ", std::strerror(err)));
}

absl::StatusOr<UniqueFd> ListenOnAllAddresses(uint16_t port) {
  UniqueFd s(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoError(errno, "socket");
  int on = 1, off = 0;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  a.sin6_addr = in6addr_any;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return ErrnoError(errno, absl::StrCat("bind port ", port));
  if (::listen(s.get(), 128) != 0) return ErrnoError(errno, "listen");
  return s;
}

absl::StatusOr<UniqueFd> DialTcp(const std::string& host, const std::string& port,
                                 std::chrono::seconds timeout) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_INET;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
  UniqueFd s(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{static_cast<time_t>(timeout.count()), 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int rc = s ? ::connect(s.get(), res->ai_addr, res->ai_addrlen) : -1;
  int err = errno;
  ::freeaddrinfo(res);
  if (rc != 0) return ErrnoError(err, absl::StrCat("connect ", host, ":", port));
  return s;
}

}  // namespace weft
