#include "ztunnel/proxy/io.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <string>

namespace weft::ztunnel {
namespace {

TEST(ByteQueue, AllocatesLazilyAndFreesWhenDrained) {
  ByteQueue q;
  EXPECT_EQ(q.capacity(), 0u);
  q.Append("hello", 5);
  EXPECT_GT(q.capacity(), 0u);
  EXPECT_EQ(q.ToString(), "hello");
  q.Consume(2);
  EXPECT_EQ(q.ToString(), "llo");
  q.Consume(3);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.capacity(), 0u) << "an idle queue must hold no memory";
}

TEST(ByteQueue, ChainsBlocksAndFreesThemAsTheyDrain) {
  ByteQueue q;
  std::string big(3 * ByteQueue::kBlock + 10, 'x');
  q.Append(big.data(), big.size());
  EXPECT_EQ(q.size(), big.size());
  size_t held = q.capacity();
  q.Consume(2 * ByteQueue::kBlock);
  EXPECT_LT(q.capacity(), held) << "drained blocks must be given back";
  q.Append("0123456789", 10);
  EXPECT_EQ(q.ToString(), std::string(ByteQueue::kBlock + 10, 'x') + "0123456789");
  iovec iov[4];
  int n = q.Peek(iov, 4);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += iov[i].iov_len;
  EXPECT_EQ(total, q.size());
}

TEST(ByteQueue, IdleCacheIsGivenBack) {
  TrimBufferCache();  // start from a known state
  {
    ByteQueue q;
    std::string big(4 * ByteQueue::kBlock, 'x');
    q.Append(big.data(), big.size());
  }  // blocks go to the thread's cache
  EXPECT_EQ(TrimBufferCache(), 0u) << "blocks were taken since the last trim: keep them";
  EXPECT_GE(TrimBufferCache(), 4 * ByteQueue::kBlock) << "an idle period releases the cache";
  EXPECT_EQ(TrimBufferCache(), 0u);
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
  EXPECT_EQ(in.ToString(), "ping");
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

namespace weft::ztunnel {
namespace {

TEST(ByteQueueTakeTest, CopiesAcrossBlocksAndConsumes) {
  ByteQueue q;
  std::string big(ByteQueue::kBlock + 100, 'a');
  big.back() = 'z';
  q.Append(big.data(), big.size());
  q.Append("tail", 4);
  std::string out(big.size() + 4, '\0');
  EXPECT_EQ(q.Take(out.data(), 10), 10u);
  EXPECT_EQ(q.size(), big.size() + 4 - 10);
  EXPECT_EQ(q.Take(out.data() + 10, out.size()), big.size() + 4 - 10);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(out, big + "tail");
  EXPECT_EQ(q.Take(out.data(), 5), 0u);
}

// A short read means drained: the next read is not tried until an edge says readable again
// (the bytes that arrived meanwhile stay in the socket, for the edge they raise). Unless a
// hangup was seen: then reads go on until EAGAIN or EOF.
TEST(Readiness, AShortReadMeansDrainedUnlessAHangupWasSeen) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  Readiness r;
  char buf[64];
  EXPECT_EQ(ReadReady(a.get(), buf, sizeof buf, r), -1) << "no edge yet: nothing is tried";
  EXPECT_EQ(errno, EAGAIN);
  ASSERT_EQ(write(b.get(), "hello", 5), 5);
  r.OnEvents(EPOLLIN);
  EXPECT_EQ(ReadReady(a.get(), buf, sizeof buf, r), 5);
  EXPECT_FALSE(r.readable) << "5 of 64 bytes: drained";
  ASSERT_EQ(write(b.get(), "again", 5), 5);
  EXPECT_EQ(ReadReady(a.get(), buf, sizeof buf, r), -1) << "waits for the edge";
  r.OnEvents(EPOLLIN);
  EXPECT_EQ(ReadReady(a.get(), buf, 2, r), 2);
  EXPECT_TRUE(r.readable) << "a full read proves nothing";
  EXPECT_EQ(ReadReady(a.get(), buf, sizeof buf, r), 3);
  ASSERT_EQ(write(b.get(), "bye", 3), 3);
  b.reset();
  r.OnEvents(EPOLLIN | EPOLLRDHUP);
  EXPECT_EQ(ReadReady(a.get(), buf, sizeof buf, r), 3);
  EXPECT_TRUE(r.readable) << "after a hangup a short read does not hide the EOF behind it";
  EXPECT_EQ(ReadReady(a.get(), buf, sizeof buf, r), 0);
}

// A short write means full: nothing more is tried until EPOLLOUT; what was not taken stays queued.
TEST(Readiness, AShortWriteWaitsForEpollout) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  int small = 4096;
  setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ByteQueue q;
  std::string big(1 << 20, 'z');
  q.Append(big.data(), big.size());
  Readiness r;
  ASSERT_TRUE(FlushTo(a.get(), q, &r));
  EXPECT_FALSE(r.writable);
  size_t left = q.size();
  EXPECT_GT(left, 0u);
  ASSERT_TRUE(FlushTo(a.get(), q, &r));
  EXPECT_EQ(q.size(), left) << "not writable: no write tried";
  std::string got;
  char buf[65536];
  for (int i = 0; i < 10000 && got.size() < big.size(); i++) {
    ssize_t n = read(b.get(), buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    r.OnEvents(EPOLLOUT);
    ASSERT_TRUE(FlushTo(a.get(), q, &r));
  }
  EXPECT_EQ(got, big);
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace weft::ztunnel
