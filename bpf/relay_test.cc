// The same-node relay (bpf/relay.h) on loopback TCP pairs in the test's own netns (nothing is
// attached to a cgroup or a netns: the program runs only for sockets the test puts in its maps).
#include "bpf/relay.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "common/loopback.h"
#include "common/testing/root.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"

namespace weft::bpf {
namespace {

void Pair(UniqueFd out[2]) {
  auto st = LoopbackTcpPair(out);
  ASSERT_TRUE(st.ok()) << st;
}

std::unique_ptr<SameNodeRelay> LoadOrSkip() {
  auto r = SameNodeRelay::Load();
  if (!r.ok()) {
    ADD_FAILURE() << r.status();
    return nullptr;
  }
  return std::move(*r);
}

// Pushes bytes into `fd` (non-blocking) until no byte was taken for 300 ms or `limit` is
// reached; returns how many were taken. Between rounds `between()` runs (ztunnel's part).
size_t PushUntilStuck(int fd, size_t limit, const std::function<void()>& between) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string chunk(1 << 16, 'x');
  size_t total = 0;
  auto last_progress = std::chrono::steady_clock::now();
  while (total < limit &&
         std::chrono::steady_clock::now() - last_progress < std::chrono::milliseconds(300)) {
    ssize_t k = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    between();
    if (k > 0) {
      total += static_cast<size_t>(k);
      last_progress = std::chrono::steady_clock::now();
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return total;
}

TEST(SameNodeRelay, SelfTestPasses) {
  WEFT_SKIP_UNLESS_ROOT("loads a BPF program");
  auto st = SelfTestRelay();
  EXPECT_TRUE(st.ok()) << st;
}

// The kernel's own bound with no pause (what the design has to fix, docs/fastpath.md): the
// receiving application never reads, and the sender is only stopped by `limit`.
TEST(SameNodeRelay, SlowReaderWithoutPauseIsUnbounded) {
  WEFT_SKIP_UNLESS_ROOT("loads a BPF program");
  auto relay = LoadOrSkip();
  ASSERT_TRUE(relay);
  UniqueFd client[2], app[2];
  Pair(client);
  Pair(app);
  auto pair = relay->Join(client[1].get(), app[0].get(), ~0ull);
  ASSERT_TRUE(pair.ok()) << pair.status();
  size_t pushed = PushUntilStuck(client[0].get(), 256u << 20, [] {});
  std::printf("no pause: the sender pushed %zu MiB into a reader that never reads\n", pushed >> 20);
  relay->Leave(*pair);
}

// With ztunnel's part (pause on the ring buffer's event), the sender is stopped after the cap
// plus the sockets' own buffers.
TEST(SameNodeRelay, SlowReaderIsBoundedByPause) {
  WEFT_SKIP_UNLESS_ROOT("loads a BPF program");
  auto relay = LoadOrSkip();
  ASSERT_TRUE(relay);
  UniqueFd client[2], app[2];
  Pair(client);
  Pair(app);
  const uint64_t cap = 4u << 20;
  auto pair = relay->Join(client[1].get(), app[0].get(), cap);
  ASSERT_TRUE(pair.ok()) << pair.status();
  int paused = 0;
  size_t pushed = PushUntilStuck(client[0].get(), 256u << 20, [&] {
    relay->DrainEvents([&](uint64_t c) {
      if (c == pair->cookie[0] && relay->Pause(c).ok()) paused++;
    });
  });
  std::printf("with pause: the sender pushed %zu MiB (cap %llu MiB), paused %d times\n",
              pushed >> 20, static_cast<unsigned long long>(cap >> 20), paused);
  EXPECT_EQ(paused, 1);
  EXPECT_LT(pushed, 64u << 20);
  // Resumed once the reader catches up, every byte arrives.
  std::thread reader([&] {
    char buf[1 << 16];
    size_t got = 0;
    while (got < pushed) {
      ssize_t k = recv(app[1].get(), buf, sizeof buf, 0);
      if (k <= 0) break;
      got += static_cast<size_t>(k);
    }
    EXPECT_EQ(got, pushed);
  });
  for (int i = 0; i < 5000; i++) {
    auto w = BytesWritten(app[0].get());
    auto s = relay->Stats(pair->cookie[0]);
    ASSERT_TRUE(w.ok() && s.ok());
    if (s->redirected == pushed) break;
    if (s->over && *w + cap / 2 >= s->redirected) {
      ASSERT_TRUE(relay->Resume(client[1].get(), pair->cookie[0]).ok());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  reader.join();
  relay->Leave(*pair);
}

}  // namespace
}  // namespace weft::bpf
