// The same-node relay (bpf/relay.h) on loopback TCP pairs in the test's own netns (nothing is
// attached to a cgroup or a netns: the program runs only for sockets the test puts in its maps).
#include "bpf/relay.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "common/loopback.h"
#include "common/testing/root.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"
#include "relay_test_dup.skel.h"

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

// ztunnel's forwarding after an Unpause (CopyTail in ztunnel/proxy/fastpath.cc, blocking here):
// copies what the program left on `from` to `to` until an empty read finds every passed byte
// forwarded; from then on the program redirects again. False: timed out.
bool Forward(SameNodeRelay& relay, int from, int to, uint64_t cookie, uint64_t& forwarded) {
  std::string buf(1 << 16, '\0');
  for (int idle = 0; idle < 50000;) {  // 5 s without progress
    ssize_t n = recv(from, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      if (send(to, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) return false;
      forwarded += static_cast<uint64_t>(n);
      if (!relay.SetForwarded(cookie, forwarded).ok()) return false;
      idle = 0;
      continue;
    }
    auto s = relay.Stats(cookie);
    if (!s.ok()) return false;
    if (s->passed == forwarded) return true;
    idle++;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return false;
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
      if (c == pair->cookie[0] && relay->Pause(c, 0).ok()) paused++;
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
  // ztunnel's part of the resume: once the peer has taken every redirected byte, unpause and
  // forward what waited on the socket until the program redirects again.
  uint64_t forwarded = 0;
  bool unpaused = false;
  for (int i = 0; i < 5000 && !unpaused; i++) {
    auto w = BytesWritten(app[0].get());
    auto s = relay->Stats(pair->cookie[0]);
    ASSERT_TRUE(w.ok() && s.ok());
    if (*w - pair->base[1] == s->redirected) {
      ASSERT_TRUE(relay->Unpause(pair->cookie[0], 0).ok());
      unpaused = true;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ASSERT_TRUE(unpaused);
  ASSERT_TRUE(Forward(*relay, client[1].get(), app[0].get(), pair->cookie[0], forwarded));
  reader.join();
  relay->Leave(*pair);
}

// One direction of FrequentPauses: a paced stream of 32-bit counters written into `in[0]`,
// relayed from `in[1]` to `out[0]` while ztunnel's part pauses and resumes it, read from `out[1]`.
struct PausedStream {
  int writer, src, dst, reader;  // in[0], in[1] (joined), out[0] (joined), out[1]
  uint64_t cookie, dst_base;
  size_t got = 0, first_bad = SIZE_MAX;
  uint64_t forwarded = 0;
  std::atomic<int> cycles{0};  // pauses done (the writer paces itself by them)
  bool ok = true, drained = false;
};

// The writer keeps at most this many chunks ahead of the pauses, so every run pauses at least
// total / (kChunksPerPause * 64 KiB) times however slow the machine (under qemu's TCG the
// 500 µs pacing alone let the stream end after 8 pauses).
constexpr size_t kChunksPerPause = 16;

void RunPausedStream(SameNodeRelay& relay, PausedStream& d, size_t total) {
  std::atomic<bool> wrote{false}, stop{false};
  std::thread writer([&] {  // 64 KiB every 500 µs, at most kChunksPerPause per pause; FIN once told
    std::string chunk(1 << 16, '\0');
    uint32_t v = 0;
    for (size_t off = 0; off < total && !stop; off += chunk.size()) {
      while (!stop && off / chunk.size() >= (static_cast<size_t>(d.cycles) + 1) * kChunksPerPause)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      for (size_t i = 0; i < chunk.size(); i += 4, v++) std::memcpy(&chunk[i], &v, 4);
      if (send(d.writer, chunk.data(), chunk.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(chunk.size()))
        break;
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    wrote = true;
    for (int i = 0; i < 30000 && !stop; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    shutdown(d.writer, SHUT_WR);
  });
  std::thread reader([&] {
    timeval tv{10, 0};
    setsockopt(d.reader, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string buf(1 << 16, '\0');
    uint8_t word[4];
    uint32_t expect = 0;
    for (;;) {
      ssize_t k = recv(d.reader, buf.data(), buf.size(), 0);
      if (k <= 0) break;
      for (ssize_t i = 0; i < k; i++) {
        size_t at = d.got + static_cast<size_t>(i);
        word[at % 4] = static_cast<uint8_t>(buf[i]);
        if (at % 4 != 3) continue;
        uint32_t x;
        std::memcpy(&x, word, 4);
        if (x != expect++ && d.first_bad == SIZE_MAX) d.first_bad = at - 3;
      }
      d.got += static_cast<size_t>(k);
    }
  });
  while (!wrote && d.ok && d.cycles < 100000) {
    d.ok = relay.Pause(d.cookie, d.forwarded).ok();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    bool taken = false;  // Unpause only once the peer has taken every redirected byte
    for (int i = 0; i < 250000 && d.ok && !taken; i++) {  // 5 s
      auto w = BytesWritten(d.dst);
      auto s = relay.Stats(d.cookie);
      d.ok = w.ok() && s.ok();
      taken = d.ok && *w - d.dst_base == s->redirected + d.forwarded;
      if (!taken) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    d.ok = d.ok && taken && relay.Unpause(d.cookie, d.forwarded).ok() &&
           Forward(relay, d.src, d.dst, d.cookie, d.forwarded);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    d.cycles++;
  }
  stop = true;
  writer.join();
  // ztunnel's part at EOF: the FIN goes on once every byte before it has.
  pollfd p{d.src, POLLRDHUP, 0};
  d.ok = d.ok && poll(&p, 1, 5000) == 1;
  for (int i = 0; i < 5000 && !d.drained; i++) {
    auto dr = Drained(d.src, d.dst, relay, d.cookie, d.dst_base, d.forwarded);
    d.drained = dr.ok() && *dr;
    if (!d.drained) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  shutdown(d.dst, SHUT_WR);
  reader.join();
}

// Issue 16's data-loss bug: a pause that took the socket out of weft_relay_srcs lost an skb
// whenever a verdict ran during the removal (the kernel found no program and dropped it). Here
// both directions of a pair carry a paced 32 MiB stream and each is paused and resumed as fast
// as the test's forwarding allows (tens to hundreds of times per run; the fast path's bulk test
// pauses a few dozen times); every byte must arrive, in order. Pausing by removal lost 1-3 skbs
// in each of 3 runs of one such stream (docs/fastpath.md).
TEST(SameNodeRelay, FrequentPausesLoseNothing) {
  WEFT_SKIP_UNLESS_ROOT("loads a BPF program");
  auto relay = LoadOrSkip();
  ASSERT_TRUE(relay);
  UniqueFd client[2], app[2];
  Pair(client);
  Pair(app);
  auto pair = relay->Join(client[1].get(), app[0].get(), ~0ull >> 1);
  ASSERT_TRUE(pair.ok()) << pair.status();
  const size_t total = 32u << 20;
  PausedStream up{client[0].get(), client[1].get(), app[0].get(),
                  app[1].get(),    pair->cookie[0], pair->base[1]};
  PausedStream down{app[1].get(),    app[0].get(),    client[1].get(),
                    client[0].get(), pair->cookie[1], pair->base[0]};
  std::thread t([&] { RunPausedStream(*relay, down, total); });
  RunPausedStream(*relay, up, total);
  t.join();
  for (PausedStream* d : {&up, &down}) {
    std::printf("%d pauses; %zu of %zu bytes arrived (%llu forwarded by the test)\n",
                d->cycles.load(), d->got, total, static_cast<unsigned long long>(d->forwarded));
    EXPECT_TRUE(d->ok);
    EXPECT_TRUE(d->drained);
    EXPECT_GE(d->cycles, static_cast<int>(total / (kChunksPerPause << 16)));
    EXPECT_GT(d->forwarded, 0u);
    EXPECT_EQ(d->got, total);
    EXPECT_EQ(d->first_bad, SIZE_MAX) << "first wrong byte at offset " << d->first_bad;
  }
  relay->Leave(*pair);
}

// Runs `body` on a thread of its own in a new network namespace (that thread's only; the
// namespace goes away with the thread and the last of its sockets) whose loopback is up and
// delivers `per_mille` of the TCP segments with payload twice (relay_test_dup.bpf.c). False,
// with a test failure recorded, when the namespace or the tc program could not be set up.
bool InDuplicatingNetns(uint32_t per_mille, const std::function<void()>& body) {
  bool ran = false;
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      ADD_FAILURE() << "unshare(CLONE_NEWNET): " << std::strerror(errno);
      return;
    }
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s || ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) {
      ADD_FAILURE() << "loopback flags: " << std::strerror(errno);
      return;
    }
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) {
      ADD_FAILURE() << "loopback up: " << std::strerror(errno);
      return;
    }
    weft_relay_test_dup* skel = weft_relay_test_dup__open();
    if (!skel) {
      ADD_FAILURE() << "open relay_test_dup: " << std::strerror(errno);
      return;
    }
    skel->rodata->per_mille = per_mille;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(if_nametoindex("lo")),
                .attach_point = BPF_TC_EGRESS);
    int err = weft_relay_test_dup__load(skel);
    if (err == 0) err = bpf_tc_hook_create(&hook);
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(skel->progs.weft_dup_segments));
    if (err == 0) err = bpf_tc_attach(&hook, &opts);
    if (err != 0) {
      ADD_FAILURE() << "tc egress program on the namespace's loopback: " << std::strerror(-err);
    } else {
      body();
      ran = true;
    }
    weft_relay_test_dup__destroy(skel);  // (the filter keeps it until the namespace goes)
  });
  t.join();
  return ran;
}

// Sends `total` bytes of 32-bit counters into `fd` as fast as it takes them, then the FIN.
void SendCounters(int fd, size_t total) {
  std::string chunk(1 << 16, '\0');
  uint32_t v = 0;
  for (size_t off = 0; off < total; off += chunk.size()) {
    for (size_t i = 0; i < chunk.size(); i += 4, v++) std::memcpy(&chunk[i], &v, 4);
    if (send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(chunk.size()))
      break;
  }
  shutdown(fd, SHUT_WR);
}

// Reads counters from `fd` to EOF (10 s timeout): bytes read, and where the first wrong counter
// starts (SIZE_MAX: none).
std::pair<size_t, size_t> ReadCounters(int fd) {
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string buf(1 << 16, '\0');
  size_t got = 0, first_bad = SIZE_MAX;
  uint8_t word[4];
  uint32_t expect = 0;
  for (;;) {
    ssize_t k = recv(fd, buf.data(), buf.size(), 0);
    if (k <= 0) break;
    for (ssize_t i = 0; i < k; i++) {
      size_t at = got + static_cast<size_t>(i);
      word[at % 4] = static_cast<uint8_t>(buf[i]);
      if (at % 4 != 3) continue;
      uint32_t x;
      std::memcpy(&x, word, 4);
      if (x != expect++ && first_bad == SIZE_MAX) first_bad = at - 3;
    }
    got += static_cast<size_t>(k);
  }
  return {got, first_bad};
}

// One round of RepeatedBytesAreCutOffNotRelayedTwice: `total` bytes of counters from the client
// through a joined pair to an application that echoes them, and back; ztunnel's part pauses a
// direction past its cap (1 MiB), resumes and forwards it as CopyTail does, and passes each FIN
// on after Drained.
struct EchoRound {
  size_t echoed = 0;                     // bytes the application read (and wrote back)
  std::pair<size_t, size_t> back{0, 0};  // ReadCounters at the client
  bool drained = false;
  SameNodeRelay::SideStats stats[2];
};

void RunEchoRound(SameNodeRelay& relay, size_t total, EchoRound& r) {
  UniqueFd client[2], app[2];
  Pair(client);
  Pair(app);
  auto pair = relay.Join(client[1].get(), app[0].get(), 1u << 20);
  ASSERT_TRUE(pair.ok()) << pair.status();
  const int from[2] = {client[1].get(), app[0].get()}, to[2] = {app[0].get(), client[1].get()};
  std::atomic<bool> done{false};
  uint64_t forwarded[2] = {0, 0};
  std::thread z([&] {  // pause past the cap, resume once the peer took every redirected byte
    while (!done) {
      int i = -1;
      relay.DrainEvents([&](uint64_t c) { i = c == pair->cookie[0] ? 0 : 1; });
      if (i < 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      if (!relay.Pause(pair->cookie[i], forwarded[i]).ok()) break;
      bool taken = false;
      for (int k = 0; k < 25000 && !taken && !done; k++) {  // 5 s
        auto w = BytesWritten(to[i]);
        auto st = relay.Stats(pair->cookie[i]);
        taken = w.ok() && st.ok() && *w - pair->base[1 - i] == st->redirected + forwarded[i];
        if (!taken) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (!taken || !relay.Unpause(pair->cookie[i], forwarded[i]).ok() ||
          !Forward(relay, from[i], to[i], pair->cookie[i], forwarded[i]))
        break;
    }
  });
  std::thread writer([&] { SendCounters(client[0].get(), total); });
  std::thread echo([&] {  // the application: what it reads, it writes back, then its FIN
    std::string buf(1 << 16, '\0');
    for (;;) {
      ssize_t n = recv(app[1].get(), buf.data(), buf.size(), 0);
      if (n <= 0) break;
      if (send(app[1].get(), buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
      r.echoed += static_cast<size_t>(n);
    }
    shutdown(app[1].get(), SHUT_WR);
  });
  std::thread fin([&] {  // each direction's FIN once the bytes before it are out
    r.drained = true;
    for (int d = 0; d < 2; d++) {
      pollfd p{from[d], POLLRDHUP, 0};
      bool ok = poll(&p, 1, 10000) == 1;
      for (int k = 0; ok; k++) {
        auto dr = Drained(from[d], to[d], relay, pair->cookie[d], pair->base[1 - d], forwarded[d]);
        if (dr.ok() && *dr) break;
        ok = k < 10000;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      r.drained &= ok;
      shutdown(to[d], SHUT_WR);
    }
  });
  r.back = ReadCounters(client[0].get());
  for (std::thread* t : {&writer, &echo, &fin}) t->join();
  done = true;
  z.join();
  for (int i = 0; i < 2; i++) {
    auto st = relay.Stats(pair->cookie[i]);
    ASSERT_TRUE(st.ok()) << st.status();
    r.stats[i] = *st;
  }
  relay.Leave(*pair);
}

// Issue 16's duplicated skb. The kernel hands the verdict whole skbs off the receive queue
// (tcp_read_skb), without tcp_recvmsg's check against the bytes already read, and TCP queues a
// segment that starts before rcv_nxt but ends after it whole: such an skb reached the program
// with a head of bytes it had already relayed, and the peer got them twice (the fast path's
// bulk test came back one skb too long about once in 100-200 runs; with 2 % of the loopback
// segments delivered twice, 6 runs in 30: docs/fastpath.md). Here 15 % of the segments are
// delivered twice while 32 MiB go to an echoing application and back, in rounds until the
// program has cut a repeat (so the case ran; at most 10 rounds, about 0.3 s each; skipped, with
// the reason, when none came): every byte must arrive once, in order, and no side may have
// given up.
TEST(SameNodeRelay, RepeatedBytesAreCutOffNotRelayedTwice) {
  WEFT_SKIP_UNLESS_ROOT("loads BPF programs and makes a network namespace");
  auto relay = LoadOrSkip();
  ASSERT_TRUE(relay);
  const size_t total = 32u << 20;
  uint64_t cut = 0, cut_bytes = 0;
  int rounds = 0;
  bool ran = InDuplicatingNetns(150, [&] {
    for (; rounds < 10 && cut == 0 && !::testing::Test::HasFailure(); rounds++) {
      EchoRound r;
      RunEchoRound(*relay, total, r);
      EXPECT_TRUE(r.drained);
      EXPECT_EQ(r.echoed, total) << "the application got a different stream";
      EXPECT_EQ(r.back.first, total) << "the echo came back with a different length";
      EXPECT_EQ(r.back.second, SIZE_MAX) << "first wrong byte of the echo at " << r.back.second;
      for (const auto& st : r.stats) {
        EXPECT_FALSE(st.broken);
        cut += st.overlaps;
        cut_bytes += st.overlap_len;
      }
    }
  });
  ASSERT_TRUE(ran);
  std::printf("%d rounds of %zu MiB; the program cut %llu repeated heads (%llu bytes)\n", rounds,
              total >> 20, static_cast<unsigned long long>(cut),
              static_cast<unsigned long long>(cut_bytes));
  // Where no such skb ever came (Debian's 6.1 under qemu's TCG, docs/kernels.md), every byte
  // was still checked above, but the cut itself did not run: say so, do not pass silently.
  if (cut == 0 && !HasFailure())
    GTEST_SKIP() << "no skb with repeated bytes reached the program in " << rounds
                 << " rounds on this machine: the cut was not exercised (every byte was checked)";
}

}  // namespace
}  // namespace weft::bpf
