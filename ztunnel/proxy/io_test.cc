#include "ztunnel/proxy/io.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>

namespace weft::ztunnel {
namespace {

TEST(ByteQueue, AllocatesLazilyAndFreesWhenDrained) {
  ByteQueue q;
  EXPECT_EQ(q.capacity(), 0u);
  q.Append("hello", 5);
  EXPECT_GT(q.capacity(), 0u);
  EXPECT_EQ(std::string(q.data(), q.size()), "hello");
  q.Consume(2);
  EXPECT_EQ(std::string(q.data(), q.size()), "llo");
  q.Consume(3);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.capacity(), 0u) << "an idle queue must hold no memory";
}

TEST(ByteQueue, GrowsAndCompacts) {
  ByteQueue q;
  std::string big(100000, 'x');
  q.Append(big.data(), big.size());
  q.Consume(99990);
  q.Append("0123456789", 10);
  EXPECT_EQ(std::string(q.data(), q.size()), "xxxxxxxxxx0123456789");
}

TEST(Io, ReadIntoAndFlushTo) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  ByteQueue out;
  out.Append("ping", 4);
  ASSERT_TRUE(FlushTo(a.get(), out));
  EXPECT_TRUE(out.empty());
  ByteQueue in;
  EXPECT_EQ(ReadInto(b.get(), in, 1024), 4);
  EXPECT_EQ(std::string(in.data(), in.size()), "ping");
  in.Clear();
  EXPECT_EQ(ReadInto(b.get(), in, 1024), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(in.capacity(), 0u) << "a read that got nothing must not keep a buffer";
  a.reset();
  EXPECT_EQ(ReadInto(b.get(), in, 1024), 0);
}

TEST(Io, ListenOnPortZeroAndConnect) {
  ListenerSpec spec;
  spec.addr = *SockAddr::Parse("127.0.0.1:0");
  auto l = Listen(spec);
  ASSERT_TRUE(l.ok()) << l.status();
  auto bound = LocalAddress(l->get());
  ASSERT_TRUE(bound.ok());
  EXPECT_NE(bound->port, 0);
  auto c = StartConnect(-1, *bound, 0);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(ConnectResult(c->get()), 0);
}

}  // namespace
}  // namespace weft::ztunnel
