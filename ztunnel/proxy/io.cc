#include "ztunnel/proxy/io.h"

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::ztunnel {

namespace {
constexpr size_t kMinBlock = 16 * 1024;
constexpr size_t kMaxCachedBlock = 4 << 20;
constexpr size_t kMaxCachedBytes = 8 << 20;

struct BlockCache {
  std::vector<std::pair<size_t, char*>> blocks;
  size_t bytes = 0;
  uint64_t taken = 0;  // AllocBuffer calls since the last TrimBufferCache
  ~BlockCache() {
    for (auto& [cap, p] : blocks) ::operator delete(p);
  }
};
thread_local BlockCache t_cache;
}  // namespace

char* AllocBuffer(size_t* cap) {
  size_t c = kMinBlock;
  while (c < *cap) c <<= 1;
  *cap = c;
  t_cache.taken++;
  auto& bl = t_cache.blocks;
  for (size_t i = bl.size(); i-- > 0;) {
    if (bl[i].first == c) {
      char* p = bl[i].second;
      bl[i] = bl.back();
      bl.pop_back();
      t_cache.bytes -= c;
      return p;
    }
  }
  return static_cast<char*>(::operator new(c));
}

void FreeBuffer(char* p, size_t cap) {
  if (!p) return;
  if (cap <= kMaxCachedBlock && t_cache.bytes + cap <= kMaxCachedBytes) {
    t_cache.blocks.emplace_back(cap, p);
    t_cache.bytes += cap;
    return;
  }
  ::operator delete(p);
}

size_t ByteQueue::capacity() const {
  size_t c = 0;
  for (const auto& b : blocks_) c += b.cap;
  return c;
}

char* ByteQueue::Reserve(size_t n) {
  if (!blocks_.empty() && blocks_.back().cap - blocks_.back().end >= n)
    return blocks_.back().p + blocks_.back().end;
  size_t cap = std::max(n, kBlock);
  char* p = AllocBuffer(&cap);
  blocks_.push_back({p, cap, 0, 0});
  return p;
}

void ByteQueue::Commit(size_t n) {
  blocks_.back().end += n;
  size_ += n;
}

size_t TrimBufferCache() {
  size_t freed = 0;
  if (t_cache.taken == 0) {
    for (auto& [cap, p] : t_cache.blocks) ::operator delete(p);
    freed = t_cache.bytes;
    t_cache.blocks.clear();
    t_cache.blocks.shrink_to_fit();
    t_cache.bytes = 0;
    if (freed > 0) malloc_trim(0);  // hand the freed heap pages back to the kernel
  }
  t_cache.taken = 0;
  return freed;
}

void ByteQueue::Unreserve() {
  if (!blocks_.empty() && blocks_.back().begin == blocks_.back().end) {
    FreeBuffer(blocks_.back().p, blocks_.back().cap);
    blocks_.pop_back();
    if (blocks_.empty()) std::vector<Block>().swap(blocks_);
  }
}

void ByteQueue::Append(const void* p, size_t n) {
  const char* src = static_cast<const char*>(p);
  while (n > 0) {
    if (blocks_.empty() || blocks_.back().end == blocks_.back().cap) Reserve(1);
    Block& b = blocks_.back();
    size_t k = std::min(n, b.cap - b.end);
    std::memcpy(b.p + b.end, src, k);
    b.end += k;
    size_ += k;
    src += k;
    n -= k;
  }
}

size_t ByteQueue::Take(void* dst, size_t max) {
  iovec v[8];
  size_t n = 0;
  while (n < max && !empty()) {
    int k = Peek(v, 8);
    size_t round = 0;
    for (int i = 0; i < k && n + round < max; ++i) {
      size_t take = std::min(max - n - round, v[i].iov_len);
      std::memcpy(static_cast<char*>(dst) + n + round, v[i].iov_base, take);
      round += take;
    }
    Consume(round);
    n += round;
  }
  return n;
}

void ByteQueue::Consume(size_t n) {
  size_t drop = 0;
  while (n > 0 && drop < blocks_.size()) {
    Block& b = blocks_[drop];
    size_t k = std::min(n, b.end - b.begin);
    b.begin += k;
    size_ -= k;
    n -= k;
    if (b.begin == b.end) {
      FreeBuffer(b.p, b.cap);
      drop++;
    }
  }
  blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<ptrdiff_t>(drop));
  if (blocks_.empty()) std::vector<Block>().swap(blocks_);  // idle: hold nothing
}

void ByteQueue::Clear() {
  for (auto& b : blocks_) FreeBuffer(b.p, b.cap);
  std::vector<Block>().swap(blocks_);
  size_ = 0;
}

int ByteQueue::Peek(iovec* iov, int max) const {
  int n = 0;
  for (const auto& b : blocks_) {
    if (n == max) break;
    if (b.end == b.begin) continue;
    iov[n++] = {b.p + b.begin, b.end - b.begin};
  }
  return n;
}

std::string ByteQueue::ToString() const {
  std::string s;
  s.reserve(size_);
  for (const auto& b : blocks_) s.append(b.p + b.begin, b.end - b.begin);
  return s;
}

void Readiness::OnEvents(uint32_t events) {
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) readable = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) hangup = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable = true;  // a write reports the error
}

namespace {
// After a read of `n` of `asked` bytes (errno set when n < 0).
void AfterRead(Readiness& r, ssize_t n, size_t asked) {
  if (n < 0 ? errno == EAGAIN : (n > 0 && static_cast<size_t>(n) < asked && !r.hangup && !r.greedy))
    r.readable = false;
}
}  // namespace

ssize_t ReadReady(int fd, void* buf, size_t len, Readiness& r) {
  if (!r.readable) {
    errno = EAGAIN;
    return -1;
  }
  ssize_t n = ::read(fd, buf, len);
  AfterRead(r, n, len);
  return n;
}

ssize_t ReadInto(int fd, ByteQueue& q, size_t max, Readiness* r) {
  if (r && !r->readable) {
    errno = EAGAIN;
    return -1;
  }
  char* p = q.Reserve(max);
  ssize_t n = ::read(fd, p, max);
  if (r) AfterRead(*r, n, max);
  if (n > 0) {
    q.Commit(static_cast<size_t>(n));
  } else {
    int saved = errno;
    q.Unreserve();  // give back a block Reserve may have allocated
    errno = saved;
  }
  return n;
}

bool FlushTo(int fd, ByteQueue& q, Readiness* r) {
  while (!q.empty()) {
    if (r && !r->writable) return true;
    iovec iov[16];
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = static_cast<size_t>(q.Peek(iov, 16));
    size_t asked = 0;
    for (size_t i = 0; i < mh.msg_iovlen; i++) asked += iov[i].iov_len;
    ssize_t n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return false;
      if (r) r->writable = false;
      return true;
    }
    q.Consume(static_cast<size_t>(n));
    if (r && static_cast<size_t>(n) < asked) r->writable = false;
  }
  return true;
}

absl::Status SetNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return ErrnoError(errno, "fcntl");
  return absl::OkStatus();
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void SetKeepAlive(int fd) {
  int one = 1, idle = static_cast<int>(kKeepAliveIdle.count()),
      intvl = static_cast<int>(kKeepAliveInterval.count()), cnt = kKeepAliveProbes;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

void SetDeadPeerTimeouts(int fd) {
  SetKeepAlive(fd);
  unsigned int ms = static_cast<unsigned int>(kUserTimeout.count());
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

// ztunnel batches its own writes (one sendmsg per batch), so Nagle has nothing useful to merge;
// it only holds a small write behind an earlier one the client has not acknowledged, until the
// client's delayed ACK. On an L7 client connection that was the response after each
// connection WINDOW_UPDATE (every 512 KiB of requests): issue 16's gRPC p99 tails.
void SetListenerOptions(int fd) {
  SetDeadPeerTimeouts(fd);
  SetNoDelay(fd);
}

void SetResetOnClose(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

static absl::Status ApplyMark(int fd, uint32_t mark) {
  if (mark == 0) return absl::OkStatus();
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)
    return ErrnoError(errno, "setsockopt(SO_MARK) (needs CAP_NET_ADMIN)");
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> Listen(const ListenerSpec& spec) {
  int family = spec.addr.ip.IsV4() ? AF_INET : AF_INET6;
  WEFT_ASSIGN_OR_RETURN(UniqueFd fd, SocketInNetns(spec.netns_fd, family, SOCK_STREAM, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (spec.transparent) {
    if (setsockopt(fd.get(), SOL_IP, IP_TRANSPARENT, &one, sizeof one) != 0)
      return ErrnoError(errno, "setsockopt(IP_TRANSPARENT)");
  }
  WEFT_RETURN_IF_ERROR(ApplyMark(fd.get(), spec.mark));
  sockaddr_storage ss;
  socklen_t len = spec.addr.ToSockaddr(&ss);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return ErrnoError(errno, absl::StrCat("bind ", spec.addr.ToString()));
  if (listen(fd.get(), 4096) != 0) return ErrnoError(errno, "listen");
  WEFT_RETURN_IF_ERROR(SetNonBlocking(fd.get()));
  SetListenerOptions(fd.get());  // inherited by every accepted socket
  return fd;
}

absl::StatusOr<UniqueFd> ConnectSocket(int netns_fd, const SockAddr& to, uint32_t mark) {
  int family = to.ip.IsV4() ? AF_INET : AF_INET6;
  WEFT_ASSIGN_OR_RETURN(UniqueFd fd,
                        SocketInNetns(netns_fd, family, SOCK_STREAM | SOCK_NONBLOCK, 0));
  WEFT_RETURN_IF_ERROR(ApplyMark(fd.get(), mark));
  SetNoDelay(fd.get());
  return fd;
}

absl::Status BeginConnect(int fd, const SockAddr& to) {
  sockaddr_storage ss;
  socklen_t len = to.ToSockaddr(&ss);
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS)
    return ErrnoError(errno, absl::StrCat("connect ", to.ToString()));
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> StartConnect(int netns_fd, const SockAddr& to, uint32_t mark,
                                      const IpAddr* from) {
  WEFT_ASSIGN_OR_RETURN(UniqueFd fd, ConnectSocket(netns_fd, to, mark));
  if (from && from->IsV4() == to.ip.IsV4() && !from->IsUnspecified()) {
    int one = 1;
    setsockopt(fd.get(), SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_storage bs;
    socklen_t blen = SockAddr{*from, 0}.ToSockaddr(&bs);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&bs), blen) != 0)
      return ErrnoError(errno, absl::StrCat("bind source ", from->ToString()));
  }
  WEFT_RETURN_IF_ERROR(BeginConnect(fd.get(), to));
  return fd;
}

int ConnectResult(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

}  // namespace weft::ztunnel
