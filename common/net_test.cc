#include "common/net.h"

#include <gtest/gtest.h>

namespace weft {
namespace {

TEST(IpAddr, ParsesAndFormats) {
  auto a = IpAddr::Parse("10.1.2.3");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->IsV4());
  EXPECT_EQ(a->ToString(), "10.1.2.3");
  auto m = IpAddr::Parse("::ffff:10.1.2.3");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, *a) << "IPv4-mapped IPv6 must compare equal to IPv4";
  auto b = IpAddr::Parse("fd00::1");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->IsV4());
  EXPECT_EQ(b->ToString(), "fd00::1");
  EXPECT_FALSE(IpAddr::Parse("10.1.2").ok());
  EXPECT_FALSE(IpAddr::Parse("").ok());
}

TEST(Cidr, Contains) {
  auto c = Cidr::Parse("10.1.0.0/16");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->Contains(*IpAddr::Parse("10.1.255.3")));
  EXPECT_FALSE(c->Contains(*IpAddr::Parse("10.2.0.1")));
  EXPECT_FALSE(c->Contains(*IpAddr::Parse("fd00::1")));
  auto host = Cidr::Parse("10.1.2.3");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->prefix_len(), 32);
  auto c6 = Cidr::Parse("fd00::/8");
  ASSERT_TRUE(c6.ok());
  EXPECT_TRUE(c6->Contains(*IpAddr::Parse("fd12::5")));
  auto c7 = Cidr::Parse("10.0.0.0/9");
  ASSERT_TRUE(c7.ok());
  EXPECT_TRUE(c7->Contains(*IpAddr::Parse("10.127.0.1")));
  EXPECT_FALSE(c7->Contains(*IpAddr::Parse("10.128.0.1")));
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/33").ok());
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/x").ok());
}

TEST(SockAddr, RoundTrip) {
  auto a = SockAddr::Parse("10.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->port, 8080);
  sockaddr_storage ss;
  a->ToSockaddr(&ss);
  EXPECT_EQ(SockAddr::FromSockaddr(reinterpret_cast<sockaddr*>(&ss)), *a);
  auto b = SockAddr::Parse("[fd00::1]:15008");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ToString(), "[fd00::1]:15008");
  EXPECT_FALSE(SockAddr::Parse("10.0.0.1").ok());
  EXPECT_FALSE(SockAddr::Parse("10.0.0.1:70000").ok());
}

}  // namespace
}  // namespace weft
