// Byte buffers and socket helpers for the data path.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"

namespace weft::ztunnel {

// A FIFO of bytes kept as a chain of blocks: appending never moves bytes already queued (a
// contiguous buffer would memmove its unsent tail on every refill), and a drained block goes
// back to the per-thread cache at once, so an idle connection holds no buffer memory
// (ztunnel's grow-only buffers are a known complaint). Not thread-safe.
class ByteQueue {
 public:
  static constexpr size_t kBlock = 64 * 1024;
  ByteQueue() = default;
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;
  ~ByteQueue() { Clear(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const;  // bytes of blocks held

  // Contiguous space for at least `n` bytes at the tail; Commit(k) after writing k of them,
  // or Unreserve() if nothing was written (frees an empty tail block).
  char* Reserve(size_t n);
  void Commit(size_t n);
  void Unreserve();
  void Append(const void* p, size_t n);
  void Consume(size_t n);
  void Clear();
  // Up to `max` spans from the head, for writev/sendmsg. Returns how many were filled.
  int Peek(iovec* iov, int max) const;
  // Copies up to `max` bytes from the head into `dst` and consumes them; returns how many.
  size_t Take(void* dst, size_t max);
  std::string ToString() const;  // tests and logs

 private:
  struct Block {
    char* p;
    size_t cap, begin, end;
  };
  std::vector<Block> blocks_;  // empty vector: no allocation
  size_t size_ = 0;
};

// Buffers come from a per-thread cache of power-of-two blocks (16 KiB .. 4 MiB, at most 8 MiB
// cached per thread), so a busy connection that drains and refills its queues does not pay
// malloc/mmap and page faults each time, while an idle one holds nothing.
char* AllocBuffer(size_t* cap);  // rounds *cap up to the block size it returns
void FreeBuffer(char* p, size_t cap);
// Gives this thread's cached blocks back to the system if none was taken since the previous
// call (workers call it every few seconds: after a burst, an idle ztunnel shrinks again).
// Returns the bytes released.
size_t TrimBufferCache();

// What epoll last said about a socket registered once, edge-triggered
// (EventLoop::kEdgeTriggered), kept until a read or write shows it used up. A flow that stopped
// reading (its peer's queue is full: back-pressure) still knows the socket is readable when the
// peer drains, without a new edge; and a read or write that the socket cannot take is not tried.
// A short read means drained: TCP's recvmsg returns less than asked only once its receive queue
// (and backlog) is empty, and any byte that arrives later raises a new edge. Not so for a FIN or
// an error already queued behind the bytes, nor for TCP urgent data (a read stops short at its
// mark): once epoll reported one (`hangup`), reads go on to EAGAIN, EOF or the error. Likewise a
// short write means full (the kernel sets SOCK_NOSPACE, so EPOLLOUT comes when room is made).
struct Readiness {
  bool readable = false;
  bool writable = true;  // until a write is refused (a connecting socket refuses with EAGAIN)
  bool hangup = false;   // EPOLLRDHUP/HUP/ERR/PRI seen: a short read proves nothing
  // A socket in weft_local_legs (eBPF capture's sk_msg short-cut): its redirected bytes and its
  // TCP bytes are read separately, so a short read proves nothing either; reads go to EAGAIN.
  bool greedy = false;
  void OnEvents(uint32_t events);
};

// Reads from fd into q (up to `max` bytes). Returns bytes read, 0 on EOF, -1 with errno set
// (EAGAIN included). With `r`: no syscall (-1, EAGAIN) unless r->readable; EAGAIN or a short read
// clears it.
ssize_t ReadInto(int fd, ByteQueue& q, size_t max, Readiness* r = nullptr);
// read(2) that keeps `r` as ReadInto does.
ssize_t ReadReady(int fd, void* buf, size_t len, Readiness& r);
// Writes as much of q as the socket takes; returns false on a hard error (errno set). With `r`:
// nothing is tried unless r->writable; a short write or EAGAIN clears it (EPOLLOUT follows).
bool FlushTo(int fd, ByteQueue& q, Readiness* r = nullptr);

absl::Status SetNonBlocking(int fd);
void SetNoDelay(int fd);
// Dead-peer detection. TCP keepalive: the first probe after kKeepAliveIdle without traffic, then
// kKeepAliveProbes probes kKeepAliveInterval apart (Linux's own defaults, 2 h + 9 x 75 s, would
// let a vanished peer hold a connection for over two hours). TCP_USER_TIMEOUT: sent bytes
// unacknowledged (or keepalive probes unanswered) for kUserTimeout close the connection, which
// keepalive alone does not cover while data waits to be sent. A peer that vanished (node gone,
// netns deleted, a network partition) thus frees its flow after about two minutes, at the cost of
// one probe and its ACK per minute on an idle connection.
inline constexpr std::chrono::seconds kKeepAliveIdle{60};
inline constexpr std::chrono::seconds kKeepAliveInterval{10};
inline constexpr int kKeepAliveProbes = 6;
inline constexpr std::chrono::milliseconds kUserTimeout =
    kKeepAliveIdle + kKeepAliveProbes * kKeepAliveInterval;  // 120 s: keepalive's own bound
void SetKeepAlive(int fd);
// SetKeepAlive and TCP_USER_TIMEOUT: every HBONE connection ztunnel dials, and every listener
// on 15001, 15006 and 15008 (Listen, and taken-over ones when adopted), whose accepted sockets
// inherit them from the listener: five setsockopt calls less per accepted connection.
void SetDeadPeerTimeouts(int fd);
// What every socket accepted on a listener inherits from it (Listen, and taken-over listeners
// when adopted): SetDeadPeerTimeouts and TCP_NODELAY. Without TCP_NODELAY a small write behind an
// unacknowledged one (an HTTP/2 response behind the WINDOW_UPDATE ztunnel sent as it took the
// request) waits for the client's delayed ACK, 40 ms on Linux.
void SetListenerOptions(int fd);
// Close with RST instead of FIN (SO_LINGER 0): used when the other side of a tunnel failed.
void SetResetOnClose(int fd);

struct ListenerSpec {
  int netns_fd = -1;  // -1: current netns
  SockAddr addr;
  uint32_t mark = 0;  // SO_MARK; 0: none
  bool transparent = false;
};
// Non-blocking TCP listener (SO_REUSEADDR, SO_REUSEPORT) created inside the given netns.
absl::StatusOr<UniqueFd> Listen(const ListenerSpec& spec);

// Starts a non-blocking connect from inside netns (the socket keeps that netns). mark != 0
// sets SO_MARK so capture never loops. Completion is signalled by EPOLLOUT; check
// ConnectResult() then.
// `from` (optional, port 0) binds the source address first: the pod's own IP, so the peer
// sees the pod as the source even when ztunnel runs outside the pod (direct mode).
absl::StatusOr<UniqueFd> StartConnect(int netns_fd, const SockAddr& to, uint32_t mark,
                                      const IpAddr* from = nullptr);
// StartConnect's two steps (without `from`), for a caller that prepares the socket in between
// (the inbound local leg binds and announces it: OrigDstProvider::ExpectLocalLeg).
absl::StatusOr<UniqueFd> ConnectSocket(int netns_fd, const SockAddr& to, uint32_t mark);
absl::Status BeginConnect(int fd, const SockAddr& to);
int ConnectResult(int fd);  // 0 or the errno of the failed connect

}  // namespace weft::ztunnel
