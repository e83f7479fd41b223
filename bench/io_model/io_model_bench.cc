// weft-io-model-bench: decides ztunnel's I/O model (epoll readiness vs io_uring completion).
//
// One program, one run: a single-threaded TCP relay in three variants that share the client,
// the server and the connection setup, plus a direct connection as the baseline:
//   bare          client -> server
//   epoll         client -> relay(level-triggered epoll, lazy ByteQueue, send(MSG_NOSIGNAL))
//   uring-mshot   client -> relay(io_uring multishot recv + provided buffer ring, zero-copy
//                 hand-off of the received buffer to the send SQE)
//   uring-plain   client -> relay(io_uring one-shot recv/send into a per-direction buffer)
// Workloads (interleaved, several rounds, median reported): single-stream throughput,
// 1 KiB ping-pong latency, 64-connection ping-pong, and relay-thread CPU per GB / per 100k req.
// Everything is on 127.0.0.1 with port 0; every loop is bounded in count and time.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double Secs(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "weft-io-model-bench: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(2);
}

double CpuSeconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
double ThreadCpuSeconds() {
  return CpuSeconds(RUSAGE_THREAD);
}
double ProcessCpuSeconds() {
  return CpuSeconds(RUSAGE_SELF);
}

// io_uring punts work it cannot do inline to io-wq kernel threads ("iou-wrk-*") that belong to
// this process: their CPU would be invisible in the relay thread's rusage, so count them.
int CountIoWqWorkers() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (!d) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string comm;
    std::getline(f, comm);
    if (comm.rfind("iou-wrk", 0) == 0) n++;
  }
  closedir(d);
  return n;
}

// ---- sockets -----------------------------------------------------------------------------

int Listener(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("bind 127.0.0.1:0");
  if (listen(fd, 1024) != 0) Die("listen");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("connect 127.0.0.1");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int Accept(int lfd) {
  int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) Die("accept");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void SetNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void SetRecvTimeout(int fd, int secs) {
  timeval tv{secs, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// ---- relay results -----------------------------------------------------------------------

struct RelayStats {
  double cpu_s = 0;        // relay thread user+sys
  uint64_t syscalls = 0;   // syscalls the relay thread issued (io_uring_enter counts as one)
  uint64_t bytes = 0;      // bytes relayed (both directions)
  uint64_t sends = 0;      // successful send()/send completions
  bool timed_out = false;  // the relay hit its deadline with connections still open
  int iowq_workers = 0;    // iou-wrk threads alive when the relay finished
};

struct ConnPair {
  int a;  // accepted from the client
  int b;  // connected to the server
};

// ---- epoll relay: a copy of ztunnel's PlainRelay logic (flow.cc) -------------------------

// ztunnel's ByteQueue semantics: storage allocated on first use, freed as soon as it drains.
class ByteQueue {
 public:
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  const char* data() const { return buf_.get() + begin_; }
  char* Reserve(size_t n) {
    if (cap_ - end_ >= n) return buf_.get() + end_;
    size_t used = size();
    if (begin_ > 0 && cap_ - used >= n && begin_ >= used) {
      std::memmove(buf_.get(), buf_.get() + begin_, used);
      begin_ = 0;
      end_ = used;
      return buf_.get() + end_;
    }
    size_t ncap = std::max<size_t>({16384, cap_ * 2, used + n});
    std::unique_ptr<char[]> nb(new char[ncap]);
    if (used) std::memcpy(nb.get(), buf_.get() + begin_, used);
    buf_ = std::move(nb);
    cap_ = ncap;
    begin_ = 0;
    end_ = used;
    return buf_.get() + end_;
  }
  void Commit(size_t n) { end_ += n; }
  void Consume(size_t n) {
    begin_ += n;
    if (begin_ >= end_) {
      buf_.reset();
      cap_ = begin_ = end_ = 0;
    }
  }

 private:
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0, begin_ = 0, end_ = 0;
};

constexpr size_t kRelayChunk = 64 * 1024;       // ztunnel kRelayChunk
constexpr size_t kRelayHighWater = 256 * 1024;  // ztunnel kRelayHighWater

class EpollRelay {
 public:
  // short_read_stop: stop reading after a read shorter than the chunk (the socket is drained;
  // level-triggered epoll reports it again if more arrives) instead of reading until EAGAIN as
  // ztunnel's PlainRelay does. Saves one read() per wakeup on request/response traffic.
  EpollRelay(const std::vector<ConnPair>& pairs, Clock::time_point deadline, bool short_read_stop)
      : deadline_(deadline), short_read_stop_(short_read_stop) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) Die("epoll_create1");
    conns_.resize(pairs.size());
    for (size_t i = 0; i < pairs.size(); i++) {
      Conn& c = conns_[i];
      c.fd[0] = pairs[i].a;
      c.fd[1] = pairs[i].b;
      for (int s = 0; s < 2; s++) {
        SetNonBlocking(c.fd[s]);
        c.interest[s] = EPOLLIN;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = (i << 1) | s;
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd[s], &ev) != 0) Die("epoll_ctl ADD");
      }
    }
    live_ = pairs.size();
  }
  ~EpollRelay() { close(ep_); }

  RelayStats Run() {
    double cpu0 = ThreadCpuSeconds();
    epoll_event evs[128];
    while (live_ > 0) {
      if (Clock::now() > deadline_) {
        st_.timed_out = true;
        break;
      }
      st_.syscalls++;
      int n = epoll_wait(ep_, evs, 128, 100);
      if (n < 0 && errno != EINTR) Die("epoll_wait");
      for (int k = 0; k < n; k++) {
        size_t ci = evs[k].data.u64 >> 1;
        int s = static_cast<int>(evs[k].data.u64 & 1);
        OnSide(conns_[ci], s, evs[k].events);
      }
    }
    for (Conn& c : conns_)
      for (int s = 0; s < 2; s++)
        if (c.fd[s] >= 0) close(c.fd[s]);
    st_.cpu_s = ThreadCpuSeconds() - cpu0;
    return st_;
  }

 private:
  struct Conn {
    int fd[2] = {-1, -1};
    ByteQueue q[2];  // q[i]: bytes read from fd[i], waiting to be written to fd[1-i]
    bool eof[2] = {false, false};
    bool shut[2] = {false, false};
    uint32_t interest[2] = {0, 0};
    bool done = false;
  };

  ssize_t ReadInto(int fd, ByteQueue& q, size_t max) {
    char* p = q.Reserve(max);
    st_.syscalls++;
    ssize_t n = ::read(fd, p, max);
    if (n > 0) {
      q.Commit(static_cast<size_t>(n));
    } else if (q.empty()) {
      q.Consume(0);
    }
    return n;
  }

  bool FlushTo(int fd, ByteQueue& q) {
    while (!q.empty()) {
      st_.syscalls++;
      ssize_t n = ::send(fd, q.data(), q.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN;
      }
      st_.bytes += static_cast<uint64_t>(n);
      st_.sends++;
      q.Consume(static_cast<size_t>(n));
    }
    return true;
  }

  void Abort(Conn& c) {
    for (int s = 0; s < 2; s++) {
      if (c.fd[s] >= 0) {
        st_.syscalls += 2;
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd[s], nullptr);
        close(c.fd[s]);
        c.fd[s] = -1;
      }
    }
    c.done = true;
    live_--;
  }

  void UpdateInterest(Conn& c, int i) {
    if (c.fd[i] < 0) return;
    uint32_t want = 0;
    if (!c.eof[i] && c.q[i].size() < kRelayHighWater) want |= EPOLLIN;
    if (!c.q[1 - i].empty()) want |= EPOLLOUT;
    if (want != c.interest[i]) {
      c.interest[i] = want;
      epoll_event ev{};
      ev.events = want;
      ev.data.u64 = (static_cast<uint64_t>(&c - conns_.data()) << 1) | i;
      st_.syscalls++;
      epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd[i], &ev);
    }
  }

  void Pump(Conn& c, int i) {
    int o = 1 - i;
    while (!c.eof[i] && c.q[i].size() < kRelayHighWater) {
      ssize_t n = ReadInto(c.fd[i], c.q[i], kRelayChunk);
      if (n > 0) {
        if (!FlushTo(c.fd[o], c.q[i])) return Abort(c);
        if (short_read_stop_ && static_cast<size_t>(n) < kRelayChunk) break;
        continue;
      }
      if (n == 0) {
        c.eof[i] = true;
        break;
      }
      if (errno == EAGAIN || errno == EINTR) break;
      return Abort(c);
    }
    if (c.eof[i] && c.q[i].empty() && !c.shut[o]) {
      st_.syscalls++;
      shutdown(c.fd[o], SHUT_WR);
      c.shut[o] = true;
    }
  }

  void OnSide(Conn& c, int i, uint32_t events) {
    if (c.done) return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) Pump(c, i);
    if (c.done) return;
    if (events & EPOLLOUT) {
      if (!FlushTo(c.fd[i], c.q[1 - i])) return Abort(c);
      if (c.q[1 - i].empty() && c.eof[1 - i] && !c.shut[i]) {
        st_.syscalls++;
        shutdown(c.fd[i], SHUT_WR);
        c.shut[i] = true;
      }
    }
    UpdateInterest(c, 0);
    UpdateInterest(c, 1);
    if (c.eof[0] && c.eof[1] && c.q[0].empty() && c.q[1].empty()) {
      for (int s = 0; s < 2; s++) {
        st_.syscalls += 2;
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd[s], nullptr);
        close(c.fd[s]);
        c.fd[s] = -1;
      }
      c.done = true;
      live_--;
    }
  }

  int ep_ = -1;
  std::vector<Conn> conns_;
  size_t live_ = 0;
  Clock::time_point deadline_;
  bool short_read_stop_;
  RelayStats st_;
};

// ---- io_uring relay ----------------------------------------------------------------------

struct UringSupport {
  bool usable = false;
  bool multishot_bufring = false;  // multishot recv + registered buffer ring both work
  std::string detail;              // why not / which flags
  unsigned setup_flags = 0;
};

constexpr unsigned kBufCount = 256;       // provided buffers (power of two)
constexpr unsigned kBufSize = 64 * 1024;  // same chunk as the epoll relay reads
constexpr uint16_t kBufGroup = 7;

// First candidate InitRing tries: 0 = DEFER_TASKRUN, 1 = COOP_TASKRUN, 2 = plain (--uring-setup).
int g_uring_setup_first = 0;

// Tries setup flags from most to least modern; returns the ones this kernel accepts.
int InitRing(io_uring* ring, unsigned* flags_out) {
  const unsigned candidates[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
          IORING_SETUP_SUBMIT_ALL,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
      IORING_SETUP_CQSIZE,
      0,
  };
  int rc = -EINVAL;
  for (int i = g_uring_setup_first; i < 4; i++) {
    unsigned f = candidates[i];
    io_uring_params p{};
    p.flags = f;
    p.cq_entries = 8192;
    rc = io_uring_queue_init_params(512, ring, &p);
    if (rc == 0) {
      *flags_out = f;
      return 0;
    }
    if (rc != -EINVAL) return rc;  // EPERM/ENOSYS etc: no point trying other flags
  }
  return rc;
}

std::string FlagNames(unsigned f) {
  std::string s;
  auto add = [&](unsigned bit, const char* name) {
    if (f & bit) s += (s.empty() ? "" : "|") + std::string(name);
  };
  add(IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
  add(IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN");
  add(IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN");
  add(IORING_SETUP_CQSIZE, "CQSIZE");
  add(IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL");
  return s.empty() ? "none" : s;
}

std::string ReadSmallFile(const char* path) {
  std::ifstream f(path);
  if (!f) return "";
  std::string s;
  std::getline(f, s);
  return s;
}

class UringRelay {
 public:
  // multishot: multishot recv into a shared provided-buffer ring, send straight out of the
  // received buffer. Otherwise: one-shot recv into a per-direction 64 KiB buffer, then send.
  UringRelay(const std::vector<ConnPair>& pairs, Clock::time_point deadline, bool multishot)
      : deadline_(deadline), multishot_(multishot) {
    int rc = InitRing(&ring_, &flags_);
    if (rc != 0) {
      errno = -rc;
      Die("io_uring_queue_init");
    }
    io_uring_register_ring_fd(&ring_);  // saves an fdget per enter; optional
    if (multishot_) {
      size_t ring_bytes = kBufCount * sizeof(io_uring_buf);
      void* mem =
          mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
      if (mem == MAP_FAILED) Die("mmap buffer ring");
      br_ = static_cast<io_uring_buf_ring*>(mem);
      br_bytes_ = ring_bytes;
      io_uring_buf_ring_init(br_);
      io_uring_buf_reg reg{};
      reg.ring_addr = reinterpret_cast<uint64_t>(br_);
      reg.ring_entries = kBufCount;
      reg.bgid = kBufGroup;
      rc = io_uring_register_buf_ring(&ring_, &reg, 0);
      if (rc != 0) {
        errno = -rc;
        Die("io_uring_register_buf_ring");
      }
      bufs_.reset(new char[static_cast<size_t>(kBufCount) * kBufSize]);
      for (unsigned b = 0; b < kBufCount; b++)
        io_uring_buf_ring_add(br_, Buf(b), kBufSize, b, io_uring_buf_ring_mask(kBufCount), b);
      io_uring_buf_ring_advance(br_, kBufCount);
    }
    conns_.resize(pairs.size());
    for (size_t i = 0; i < pairs.size(); i++) {
      conns_[i].fd[0] = pairs[i].a;
      conns_[i].fd[1] = pairs[i].b;
      if (!multishot_)
        for (int d = 0; d < 2; d++) conns_[i].dir[d].own.reset(new char[kBufSize]);
    }
    live_ = pairs.size();
  }
  ~UringRelay() {
    if (br_) io_uring_unregister_buf_ring(&ring_, kBufGroup);
    io_uring_queue_exit(&ring_);
    if (br_) munmap(br_, br_bytes_);
  }

  RelayStats Run() {
    double cpu0 = ThreadCpuSeconds();
    for (size_t i = 0; i < conns_.size(); i++)
      for (int d = 0; d < 2; d++) ArmRecv(i, d);
    while (live_ > 0) {
      if (Clock::now() > deadline_) {
        st_.timed_out = true;
        break;
      }
      __kernel_timespec ts{0, 100 * 1000 * 1000};
      io_uring_cqe* cqe = nullptr;
      st_.syscalls++;
      int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      if (rc < 0 && rc != -ETIME && rc != -EINTR) {
        errno = -rc;
        Die("io_uring_submit_and_wait_timeout");
      }
      unsigned head, seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        seen++;
        OnCqe(cqe->user_data, cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&ring_, seen);
      // Directions that stalled on an empty buffer ring get re-armed once buffers came back.
      if (!starved_.empty() && free_bufs_ > 0) {
        std::vector<std::pair<size_t, int>> again;
        again.swap(starved_);
        for (auto [ci, d] : again) ArmRecv(ci, d);
      }
    }
    st_.iowq_workers = CountIoWqWorkers();
    if (st_.timed_out) {
      // Make outstanding operations complete (bounded) before fds and buffers go away.
      for (Conn& c : conns_) Fail(c);
      auto give_up = Clock::now() + std::chrono::seconds(2);
      while (live_ > 0 && Clock::now() < give_up) {
        __kernel_timespec ts{0, 50 * 1000 * 1000};
        io_uring_cqe* cqe = nullptr;
        io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring_, head, cqe) {
          seen++;
          OnCqe(cqe->user_data, cqe->res, cqe->flags);
        }
        io_uring_cq_advance(&ring_, seen);
      }
    }
    for (Conn& c : conns_)
      for (int s = 0; s < 2; s++)
        if (c.fd[s] >= 0) close(c.fd[s]);
    st_.cpu_s = ThreadCpuSeconds() - cpu0;
    return st_;
  }

  unsigned flags() const { return flags_; }

 private:
  enum Op : uint64_t { kRecv = 1, kSend = 2 };
  struct Chunk {
    char* p;
    uint32_t len;
    int bid;  // provided-buffer id, -1 for the per-direction buffer
  };
  struct Dir {  // data flowing fd[d] -> fd[1-d]
    std::deque<Chunk> pending;
    std::unique_ptr<char[]> own;  // one-shot mode only
    bool recv_armed = false;
    bool send_inflight = false;
    bool eof = false;
  };
  struct Conn {
    int fd[2] = {-1, -1};
    Dir dir[2];
    bool shut[2] = {false, false};  // SHUT_WR sent on fd[i]
    bool failed = false;
    int inflight = 0;
    bool done = false;
  };

  char* Buf(unsigned bid) { return bufs_.get() + static_cast<size_t>(bid) * kBufSize; }

  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
      st_.syscalls++;
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
      if (!sqe) Die("io_uring_get_sqe: submission queue stays full");
    }
    return sqe;
  }

  static uint64_t Tag(size_t ci, int d, Op op) { return (ci << 3) | (uint64_t(d) << 2) | op; }

  void ArmRecv(size_t ci, int d) {
    Conn& c = conns_[ci];
    Dir& dr = c.dir[d];
    if (c.failed || c.done || dr.eof || dr.recv_armed) return;
    io_uring_sqe* sqe = Sqe();
    if (multishot_) {
      io_uring_prep_recv_multishot(sqe, c.fd[d], nullptr, 0, 0);
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = kBufGroup;
    } else {
      io_uring_prep_recv(sqe, c.fd[d], dr.own.get(), kBufSize, 0);
    }
    io_uring_sqe_set_data64(sqe, Tag(ci, d, kRecv));
    dr.recv_armed = true;
    c.inflight++;
  }

  void ArmSend(size_t ci, int d) {
    Conn& c = conns_[ci];
    Dir& dr = c.dir[d];
    if (c.failed || dr.send_inflight || dr.pending.empty()) return;
    io_uring_sqe* sqe = Sqe();
    const Chunk& ch = dr.pending.front();
    io_uring_prep_send(sqe, c.fd[1 - d], ch.p, ch.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, Tag(ci, d, kSend));
    dr.send_inflight = true;
    c.inflight++;
  }

  void ReturnBuf(int bid) {
    if (bid < 0) return;
    io_uring_buf_ring_add(br_, Buf(static_cast<unsigned>(bid)), kBufSize,
                          static_cast<unsigned short>(bid), io_uring_buf_ring_mask(kBufCount), 0);
    io_uring_buf_ring_advance(br_, 1);
    free_bufs_++;
  }

  void Fail(Conn& c) {
    if (c.failed || c.done) return;
    c.failed = true;
    for (int s = 0; s < 2; s++) {
      st_.syscalls++;
      shutdown(c.fd[s], SHUT_RDWR);  // completes any pending recv/send on these sockets
    }
  }

  void MaybeShut(Conn& c, int d) {
    Dir& dr = c.dir[d];
    int o = 1 - d;
    if (dr.eof && dr.pending.empty() && !dr.send_inflight && !c.shut[o] && !c.failed) {
      st_.syscalls++;
      shutdown(c.fd[o], SHUT_WR);
      c.shut[o] = true;
    }
  }

  void MaybeDone(Conn& c) {
    if (c.done || c.inflight > 0) return;
    bool finished = c.failed || (c.shut[0] && c.shut[1]);
    if (!finished) return;
    for (int d = 0; d < 2; d++) {
      for (const Chunk& ch : c.dir[d].pending) ReturnBuf(ch.bid);
      c.dir[d].pending.clear();
    }
    for (int s = 0; s < 2; s++) {
      close(c.fd[s]);
      c.fd[s] = -1;
    }
    c.done = true;
    live_--;
  }

  void OnCqe(uint64_t tag, int res, unsigned flags) {
    size_t ci = tag >> 3;
    int d = static_cast<int>((tag >> 2) & 1);
    Op op = static_cast<Op>(tag & 3);
    Conn& c = conns_[ci];
    Dir& dr = c.dir[d];
    if (op == kRecv) {
      bool more = multishot_ && (flags & IORING_CQE_F_MORE);
      if (!more) {
        dr.recv_armed = false;
        c.inflight--;
      }
      if (res > 0) {
        Chunk ch{dr.own.get(), static_cast<uint32_t>(res), -1};
        if (multishot_) {
          int bid = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
          ch.p = Buf(static_cast<unsigned>(bid));
          ch.bid = bid;
          free_bufs_--;
        }
        dr.pending.push_back(ch);
        if (c.failed) {
          ReturnBuf(ch.bid);
          dr.pending.pop_back();
        } else {
          ArmSend(ci, d);
          // Multishot keeps going by itself; one-shot re-arms once this buffer is sent.
          if (multishot_ && !more) ArmRecv(ci, d);
        }
      } else if (res == 0) {
        dr.eof = true;
        MaybeShut(c, d);
      } else if (res == -ENOBUFS) {
        starved_.push_back({ci, d});  // ring empty: retry when sends hand buffers back
      } else {
        Fail(c);
      }
    } else {
      dr.send_inflight = false;
      c.inflight--;
      if (res <= 0) {
        Fail(c);
      } else if (!c.failed) {
        st_.bytes += static_cast<uint64_t>(res);
        st_.sends++;
        Chunk& ch = dr.pending.front();
        ch.p += res;
        ch.len -= static_cast<uint32_t>(res);
        if (ch.len == 0) {
          ReturnBuf(ch.bid);
          dr.pending.pop_front();
          if (!multishot_) ArmRecv(ci, d);
        }
        ArmSend(ci, d);
        MaybeShut(c, d);
      }
    }
    MaybeDone(c);
  }

  io_uring ring_{};
  unsigned flags_ = 0;
  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  std::unique_ptr<char[]> bufs_;
  long free_bufs_ = kBufCount;
  std::vector<std::pair<size_t, int>> starved_;
  Clock::time_point deadline_;
  bool multishot_;
  std::vector<Conn> conns_;
  size_t live_ = 0;
  RelayStats st_;
};

UringSupport ProbeUring() {
  UringSupport u;
  std::string disabled = ReadSmallFile("/proc/sys/kernel/io_uring_disabled");
  if (!disabled.empty() && disabled != "0") {
    // 1 = only for the io_uring_group, 2 = off for everyone; we still try, the syscall decides.
    u.detail = "kernel.io_uring_disabled=" + disabled + "; ";
  }
  io_uring ring{};
  unsigned flags = 0;
  int rc = InitRing(&ring, &flags);
  if (rc != 0) {
    u.detail += std::string("io_uring_queue_init failed: ") + std::strerror(-rc);
    return u;
  }
  u.setup_flags = flags;
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  if (!probe) {
    u.detail += "io_uring_get_probe_ring failed";
    io_uring_queue_exit(&ring);
    return u;
  }
  bool recv = io_uring_opcode_supported(probe, IORING_OP_RECV);
  bool send = io_uring_opcode_supported(probe, IORING_OP_SEND);
  io_uring_free_probe(probe);
  if (!recv || !send) {
    u.detail += "IORING_OP_RECV/SEND not supported";
    io_uring_queue_exit(&ring);
    return u;
  }
  u.usable = true;
  // Buffer rings arrived in 5.19, multishot recv in 6.0; the probe cannot see either (same
  // opcodes), so register a one-entry ring and issue a multishot recv on a socketpair.
  void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  auto* br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = 1;
  reg.bgid = 1;
  rc = io_uring_register_buf_ring(&ring, &reg, 0);
  if (rc != 0) {
    u.detail += std::string("register_buf_ring: ") + std::strerror(-rc);
  } else {
    static char b[64];
    io_uring_buf_ring_add(br, b, sizeof b, 0, io_uring_buf_ring_mask(1), 0);
    io_uring_buf_ring_advance(br, 1);
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_recv_multishot(sqe, sp[0], nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 1;
    (void)!write(sp[1], "x", 1);
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{1, 0};
    rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, nullptr);
    if (rc >= 0 && cqe && cqe->res == 1 && (cqe->flags & IORING_CQE_F_BUFFER)) {
      u.multishot_bufring = true;
    } else {
      u.detail += "multishot recv with buffer ring did not work (res=" +
                  std::to_string(cqe ? cqe->res : rc) + ")";
    }
    if (cqe) io_uring_cqe_seen(&ring, cqe);
    close(sp[0]);
    close(sp[1]);
    io_uring_unregister_buf_ring(&ring, 1);
  }
  io_uring_queue_exit(&ring);
  munmap(mem, 4096);
  u.detail += "setup flags " + FlagNames(flags);
  return u;
}

// ---- topology: client -> [relay] -> server -------------------------------------------------

enum class Variant { kBare, kEpoll, kEpollShortRead, kUringMshot, kUringPlain };
const char* VariantName(Variant v) {
  switch (v) {
    case Variant::kBare:
      return "bare";
    case Variant::kEpoll:
      return "epoll";
    case Variant::kEpollShortRead:
      return "epoll short-read";
    case Variant::kUringMshot:
      return "io_uring multishot+bufring";
    case Variant::kUringPlain:
      return "io_uring recv/send";
  }
  return "?";
}

struct Topology {
  std::vector<int> client;  // client-side fds
  std::vector<int> server;  // server-side fds
  std::thread relay;
  RelayStats relay_stats;
};

// Builds n connections. With a relay, the relay's fds are accepted/connected here (setup is
// not what we measure) and the relay thread starts on them right away.
void BuildTopology(Variant v, size_t n, Clock::time_point deadline, Topology* t) {
  uint16_t sport = 0;
  int sl = Listener(&sport);
  if (v == Variant::kBare) {
    for (size_t i = 0; i < n; i++) {
      t->client.push_back(Connect(sport));
      t->server.push_back(Accept(sl));
    }
    close(sl);
    return;
  }
  uint16_t rport = 0;
  int rl = Listener(&rport);
  std::vector<ConnPair> pairs;
  for (size_t i = 0; i < n; i++) {
    t->client.push_back(Connect(rport));
    ConnPair p{Accept(rl), Connect(sport)};
    t->server.push_back(Accept(sl));
    pairs.push_back(p);
  }
  close(rl);
  close(sl);
  t->relay = std::thread([v, pairs, deadline, t] {
    if (v == Variant::kEpoll || v == Variant::kEpollShortRead) {
      EpollRelay r(pairs, deadline, v == Variant::kEpollShortRead);
      t->relay_stats = r.Run();
    } else {
      UringRelay r(pairs, deadline, v == Variant::kUringMshot);
      t->relay_stats = r.Run();
    }
  });
}

// Server: one epoll thread over all its connections; discards or echoes until every peer
// closed (or the deadline). Returns bytes received and when the last EOF arrived.
char StreamByte(uint64_t offset) {
  return static_cast<char>('a' + (offset / 65536) % 7);
}

struct ServerResult {
  uint64_t bytes = 0;
  bool corrupt = false;  // stream pattern check failed (discard mode, single connection)
  Clock::time_point end;
};
ServerResult RunServer(const std::vector<int>& fds, bool echo, Clock::time_point deadline) {
  ServerResult r;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (size_t i = 0; i < fds.size(); i++) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  std::vector<char> buf(256 * 1024);
  size_t open = fds.size();
  epoll_event evs[128];
  while (open > 0 && Clock::now() < deadline) {
    int n = epoll_wait(ep, evs, 128, 100);
    for (int k = 0; k < n; k++) {
      int fd = fds[evs[k].data.u64];
      ssize_t got = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (got > 0) {
        // The stream workload sends byte ((offset / 64 KiB) % 7) + 'a' at each offset: sample a
        // few positions per read so a relay that drops, repeats or reorders a buffer is caught.
        if (!echo && fds.size() == 1) {
          auto bad = [&](size_t j) { return buf[j] != StreamByte(r.bytes + j); };
          if (bad(0) || bad(static_cast<size_t>(got) - 1)) r.corrupt = true;
          for (size_t j = 4096; j < static_cast<size_t>(got); j += 4096) r.corrupt |= bad(j);
        }
        r.bytes += static_cast<uint64_t>(got);
        // Blocking write: at most 1 KiB per connection is in flight in the echo workloads.
        if (echo && send(fd, buf.data(), static_cast<size_t>(got), MSG_NOSIGNAL) != got) got = 0;
      }
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        open--;
      }
    }
  }
  r.end = Clock::now();
  close(ep);
  return r;
}

// Client side closes: half-close, then wait (bounded) for the relay/server to close too.
void CloseClient(int fd) {
  shutdown(fd, SHUT_WR);
  SetRecvTimeout(fd, 5);
  char b[4096];
  for (int i = 0; i < 100000 && recv(fd, b, sizeof b, 0) > 0; i++) {
  }
  close(fd);
}

void Finish(Topology* t) {
  if (t->relay.joinable()) t->relay.join();
}

// ---- workloads ---------------------------------------------------------------------------

struct Sample {
  double gbit_s = 0;  // throughput
  double p50_us = 0, p99_us = 0;
  double req_s = 0;       // many-connection ping-pong
  double cpu_s = 0;       // relay thread
  double proc_cpu_s = 0;  // whole process (client + relay + server + any io-wq threads)
  int iowq_workers = 0;
  uint64_t units = 0;  // bytes (throughput) or requests (ping-pong)
  uint64_t syscalls = 0;
  uint64_t relay_bytes = 0, relay_sends = 0;
  bool timed_out = false;
  bool ok = true;
};

struct Options {
  int rounds = 3;
  double tput_secs = 3;
  int rt_count = 20000;
  int conns = 64;
  double mc_secs = 2;
};

Sample Throughput(Variant v, const Options& o) {
  Sample s;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.tput_secs + 20));
  Topology t;
  BuildTopology(v, 1, deadline, &t);
  double pcpu0 = ProcessCpuSeconds();
  ServerResult sr;
  std::thread server([&] { sr = RunServer(t.server, false, deadline); });
  std::vector<std::vector<char>> chunks(7);
  for (size_t c = 0; c < chunks.size(); c++) chunks[c].assign(65536, StreamByte(c * 65536));
  auto start = Clock::now();
  auto stop = start + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(o.tput_secs));
  int fd = t.client[0];
  for (uint64_t i = 0; i < (1ull << 30) && Clock::now() < stop && s.ok; i++) {
    const std::vector<char>& chunk = chunks[i % chunks.size()];
    for (size_t off = 0; off < chunk.size() && s.ok;) {
      ssize_t n = send(fd, chunk.data() + off, chunk.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        s.ok = false;
      else
        off += static_cast<size_t>(n);
    }
  }
  CloseClient(fd);
  server.join();
  Finish(&t);
  s.units = sr.bytes;
  if (sr.corrupt) {
    std::fprintf(stderr, "%s: stream data corrupted through the relay\n", VariantName(v));
    s.ok = false;
  }
  s.gbit_s = sr.bytes * 8 / Secs(sr.end - start) / 1e9;
  s.cpu_s = t.relay_stats.cpu_s;
  s.proc_cpu_s = ProcessCpuSeconds() - pcpu0;
  s.iowq_workers = t.relay_stats.iowq_workers;
  s.syscalls = t.relay_stats.syscalls;
  s.relay_bytes = t.relay_stats.bytes;
  s.relay_sends = t.relay_stats.sends;
  s.timed_out = t.relay_stats.timed_out;
  return s;
}

Sample PingPong(Variant v, const Options& o) {
  Sample s;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  Topology t;
  BuildTopology(v, 1, deadline, &t);
  double pcpu0 = ProcessCpuSeconds();
  ServerResult sr;
  std::thread server([&] { sr = RunServer(t.server, true, deadline); });
  int fd = t.client[0];
  SetRecvTimeout(fd, 5);
  char msg[1024], in[1024];
  std::memset(msg, 'p', sizeof msg);
  uint32_t mismatches = 0;
  std::vector<double> lat;
  lat.reserve(o.rt_count);
  auto stop = Clock::now() + std::chrono::seconds(30);
  for (int i = 0; i < o.rt_count && Clock::now() < stop && s.ok; i++) {
    // Stamp each request so a stale or misplaced buffer in the relay shows up as a mismatch.
    std::memcpy(msg, &i, sizeof i);
    std::memcpy(msg + sizeof msg - sizeof i, &i, sizeof i);
    auto t0 = Clock::now();
    if (send(fd, msg, sizeof msg, MSG_NOSIGNAL) != sizeof msg) s.ok = false;
    size_t got = 0;
    while (s.ok && got < sizeof in) {
      ssize_t n = recv(fd, in + got, sizeof in - got, 0);
      if (n <= 0)
        s.ok = false;
      else
        got += static_cast<size_t>(n);
    }
    lat.push_back(Secs(Clock::now() - t0) * 1e6);
    if (s.ok && std::memcmp(in, msg, sizeof msg) != 0) mismatches++;
  }
  if (mismatches) {
    std::fprintf(stderr, "%s: %u ping-pong replies differ from the request\n", VariantName(v),
                 mismatches);
    s.ok = false;
  }
  CloseClient(fd);
  server.join();
  Finish(&t);
  std::sort(lat.begin(), lat.end());
  if (!lat.empty()) {
    s.p50_us = lat[lat.size() / 2];
    s.p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  }
  s.units = lat.size();
  s.cpu_s = t.relay_stats.cpu_s;
  s.proc_cpu_s = ProcessCpuSeconds() - pcpu0;
  s.iowq_workers = t.relay_stats.iowq_workers;
  s.syscalls = t.relay_stats.syscalls;
  s.relay_bytes = t.relay_stats.bytes;
  s.relay_sends = t.relay_stats.sends;
  s.timed_out = t.relay_stats.timed_out;
  return s;
}

Sample ManyConn(Variant v, const Options& o) {
  Sample s;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  Topology t;
  BuildTopology(v, static_cast<size_t>(o.conns), deadline, &t);
  double pcpu0 = ProcessCpuSeconds();
  ServerResult sr;
  std::thread server([&] { sr = RunServer(t.server, true, deadline); });
  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<size_t> got(t.client.size(), 0);
  char msg[1024], in[4096];
  std::memset(msg, 'm', sizeof msg);
  for (size_t i = 0; i < t.client.size(); i++) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, t.client[i], &ev);
  }
  auto start = Clock::now();
  auto stop =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.mc_secs));
  for (int fd : t.client) send(fd, msg, sizeof msg, MSG_NOSIGNAL);
  uint64_t done = 0;
  const uint64_t kMaxReq = 50'000'000;
  epoll_event evs[128];
  while (done < kMaxReq && Clock::now() < stop && s.ok) {
    int n = epoll_wait(ep, evs, 128, 1000);
    if (n == 0) s.ok = false;  // a second without any response: something is stuck
    for (int k = 0; k < n; k++) {
      size_t i = evs[k].data.u64;
      ssize_t r = recv(t.client[i], in, sizeof in, MSG_DONTWAIT);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        s.ok = false;
        break;
      }
      got[i] += static_cast<size_t>(r);
      if (got[i] >= sizeof msg) {
        got[i] -= sizeof msg;
        done++;
        send(t.client[i], msg, sizeof msg, MSG_NOSIGNAL);
      }
    }
  }
  double el = Secs(Clock::now() - start);
  close(ep);
  for (int fd : t.client) CloseClient(fd);
  server.join();
  Finish(&t);
  s.units = done;
  s.req_s = done / el;
  s.cpu_s = t.relay_stats.cpu_s;
  s.proc_cpu_s = ProcessCpuSeconds() - pcpu0;
  s.iowq_workers = t.relay_stats.iowq_workers;
  s.syscalls = t.relay_stats.syscalls;
  s.relay_bytes = t.relay_stats.bytes;
  s.relay_sends = t.relay_stats.sends;
  s.timed_out = t.relay_stats.timed_out;
  return s;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Fmt(double x, int prec = 2) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, x);
  return b;
}

std::string MachineInfo() {
  utsname u{};
  uname(&u);
  std::string cpu;
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::ostringstream os;
  os << "- kernel: " << u.sysname << " " << u.release << " " << u.machine << "\n"
     << "- CPU: " << cpu << ", " << std::thread::hardware_concurrency() << " online CPUs\n"
     << "- liburing: " << WEFT_LIBURING_VERSION << " (pkg-config liburing)\n";
  std::string dis = ReadSmallFile("/proc/sys/kernel/io_uring_disabled");
  os << "- /proc/sys/kernel/io_uring_disabled: " << (dis.empty() ? "(absent)" : dis) << "\n";
  // The box may be shared (parallel builds): the nice value says how hard we competed for CPU.
  os << "- nice value of this run: " << getpriority(PRIO_PROCESS, 0) << "\n";
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string out_path;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&](const char* name) -> const char* {
      size_t n = std::strlen(name);
      return a.compare(0, n, name) == 0 ? a.c_str() + n : nullptr;
    };
    if (const char* p = val("--rounds="))
      o.rounds = std::atoi(p);
    else if (const char* p = val("--tput-secs="))
      o.tput_secs = std::atof(p);
    else if (const char* p = val("--round-trips="))
      o.rt_count = std::atoi(p);
    else if (const char* p = val("--conns="))
      o.conns = std::atoi(p);
    else if (const char* p = val("--mc-secs="))
      o.mc_secs = std::atof(p);
    else if (const char* p = val("--out="))
      out_path = p;
    else if (const char* p = val("--uring-setup=")) {
      std::string m = p;
      if (m == "defer")
        g_uring_setup_first = 0;
      else if (m == "coop")
        g_uring_setup_first = 1;
      else if (m == "plain")
        g_uring_setup_first = 2;
      else {
        std::fprintf(stderr, "weft-io-model-bench: --uring-setup must be defer, coop or plain\n");
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--rounds=N] [--tput-secs=S] [--round-trips=N] [--conns=N] "
                   "[--mc-secs=S] [--uring-setup=defer|coop|plain] [--out=RESULTS.md]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.rounds < 1 || o.rounds > 50 || o.tput_secs <= 0 || o.tput_secs > 60 || o.rt_count < 100 ||
      o.rt_count > 10'000'000 || o.conns < 1 || o.conns > 1000 || o.mc_secs <= 0 ||
      o.mc_secs > 60) {
    std::fprintf(stderr,
                 "weft-io-model-bench: options out of range (rounds 1..50, tput-secs 0..60, "
                 "round-trips 100..1e7, conns 1..1000, mc-secs 0..60)\n");
    return 2;
  }
  std::string cmd;
  for (int i = 0; i < argc; i++) cmd += (i ? " " : "") + std::string(argv[i]);

  std::string load_before = ReadSmallFile("/proc/loadavg");
  UringSupport us = ProbeUring();
  std::vector<Variant> variants = {Variant::kBare, Variant::kEpoll, Variant::kEpollShortRead};
  if (us.usable) {
    if (us.multishot_bufring) variants.push_back(Variant::kUringMshot);
    variants.push_back(Variant::kUringPlain);
  }
  std::fprintf(stderr, "io_uring: %s (%s)\n", us.usable ? "usable" : "NOT usable",
               us.detail.c_str());

  const size_t nv = variants.size();
  std::vector<std::vector<Sample>> tput(nv), pp(nv), mc(nv);
  std::string round_log;
  bool any_fail = false;
  for (int r = 0; r < o.rounds; r++) {
    for (size_t k = 0; k < nv; k++) {
      // Rotate the order each round so no variant always runs first/last.
      size_t vi = (k + static_cast<size_t>(r)) % nv;
      Variant v = variants[vi];
      Sample a = Throughput(v, o), b = PingPong(v, o), c = ManyConn(v, o);
      for (const Sample* x : {&a, &b, &c}) any_fail |= !x->ok || x->timed_out;
      char logline[512];
      std::snprintf(logline, sizeof logline,
                    "round %d %-27s tput %5.2f Gbit/s | pp p50 %5.1f p99 %7.1f us | mc %6.0f req/s "
                    "| relay cpu tput/pp/mc %.2f/%.2f/%.2f s%s\n",
                    r + 1, VariantName(v), a.gbit_s, b.p50_us, b.p99_us, c.req_s, a.cpu_s, b.cpu_s,
                    c.cpu_s,
                    (!a.ok || !b.ok || !c.ok || a.timed_out || b.timed_out || c.timed_out)
                        ? " | FAILED or deadline hit"
                        : "");
      std::fputs(logline, stderr);
      round_log += logline;
      tput[vi].push_back(a);
      pp[vi].push_back(b);
      mc[vi].push_back(c);
    }
  }

  struct Row {
    double gbit, p50, p99, req_s, cpu_gb, cpu_100k_pp, cpu_100k_mc, sys_gb, sys_req_mc;
    double pcpu_gb, pcpu_100k_mc, iowq, sys_rt_pp, kib_per_send;
  };
  std::vector<Row> rows(nv);
  auto med = [](const std::vector<Sample>& v, auto f) {
    std::vector<double> x;
    for (const Sample& s : v) x.push_back(f(s));
    return Median(x);
  };
  for (size_t k = 0; k < nv; k++) {
    Row& w = rows[k];
    w.gbit = med(tput[k], [](const Sample& s) { return s.gbit_s; });
    w.p50 = med(pp[k], [](const Sample& s) { return s.p50_us; });
    w.p99 = med(pp[k], [](const Sample& s) { return s.p99_us; });
    w.req_s = med(mc[k], [](const Sample& s) { return s.req_s; });
    // Bytes through the relay count once (client -> server); per GB = per 1e9 bytes.
    w.cpu_gb =
        med(tput[k], [](const Sample& s) { return s.units ? s.cpu_s / (s.units / 1e9) : 0; });
    w.cpu_100k_pp =
        med(pp[k], [](const Sample& s) { return s.units ? s.cpu_s / (s.units / 1e5) : 0; });
    w.cpu_100k_mc =
        med(mc[k], [](const Sample& s) { return s.units ? s.cpu_s / (s.units / 1e5) : 0; });
    w.sys_gb =
        med(tput[k], [](const Sample& s) { return s.units ? s.syscalls / (s.units / 1e9) : 0; });
    w.pcpu_gb =
        med(tput[k], [](const Sample& s) { return s.units ? s.proc_cpu_s / (s.units / 1e9) : 0; });
    w.pcpu_100k_mc =
        med(mc[k], [](const Sample& s) { return s.units ? s.proc_cpu_s / (s.units / 1e5) : 0; });
    double iowq = 0;
    for (const auto* v : {&tput[k], &pp[k], &mc[k]})
      for (const Sample& s : *v) iowq = std::max<double>(iowq, s.iowq_workers);
    w.iowq = iowq;
    w.sys_rt_pp =
        med(pp[k], [](const Sample& s) { return s.units ? double(s.syscalls) / s.units : 0; });
    w.kib_per_send = med(tput[k], [](const Sample& s) {
      return s.relay_sends ? s.relay_bytes / 1024.0 / s.relay_sends : 0;
    });
    w.sys_req_mc =
        med(mc[k], [](const Sample& s) { return s.units ? double(s.syscalls) / s.units : 0; });
  }

  std::ostringstream md;
  md << "| metric | ";
  for (Variant v : variants) md << VariantName(v) << " | ";
  // Ratio columns: every io_uring variant against ztunnel's current epoll relay, and the best
  // io_uring variant against the cheap epoll fix (short-read stop).
  std::vector<std::pair<size_t, size_t>> ratios;
  for (size_t k = 3; k < nv; k++) ratios.push_back({k, 1});
  if (nv > 3) ratios.push_back({3, 2});
  for (auto [a, b] : ratios)
    md << VariantName(variants[a]) << " / " << VariantName(variants[b]) << " | ";
  md << "\n|---|";
  for (size_t k = 0; k < nv + ratios.size(); k++) md << "---:|";
  md << "\n";
  auto line = [&](const char* name, auto get, int prec, bool relay_only) {
    md << "| " << name << " | ";
    for (size_t k = 0; k < nv; k++)
      md << ((relay_only && k == 0) ? std::string("–") : Fmt(get(rows[k]), prec)) << " | ";
    for (auto [a, b] : ratios) {
      double e = get(rows[b]);
      md << (e > 0 ? Fmt(get(rows[a]) / e, 2) : std::string("–")) << " | ";
    }
    md << "\n";
  };
  line(
      "(1) single-stream throughput, Gbit/s", [](const Row& r) { return r.gbit; }, 2, false);
  line(
      "(2) 1 KiB ping-pong p50, µs", [](const Row& r) { return r.p50; }, 1, false);
  line(
      "(2) 1 KiB ping-pong p99, µs", [](const Row& r) { return r.p99; }, 1, false);
  line(
      "(3) 64-conn ping-pong, req/s", [](const Row& r) { return r.req_s; }, 0, false);
  line(
      "(4) relay CPU s per GB (stream)", [](const Row& r) { return r.cpu_gb; }, 3, true);
  line(
      "(4) relay CPU s per 100k req (1 conn)", [](const Row& r) { return r.cpu_100k_pp; }, 3, true);
  line(
      "(4) relay CPU s per 100k req (64 conns)", [](const Row& r) { return r.cpu_100k_mc; }, 3,
      true);
  line(
      "whole-process CPU s per GB (stream)", [](const Row& r) { return r.pcpu_gb; }, 3, false);
  line(
      "whole-process CPU s per 100k req (64 conns)", [](const Row& r) { return r.pcpu_100k_mc; }, 3,
      false);
  line(
      "relay syscalls per GB (stream)", [](const Row& r) { return r.sys_gb; }, 0, true);
  line(
      "relay syscalls per round trip (1 conn)", [](const Row& r) { return r.sys_rt_pp; }, 2, true);
  line(
      "relay KiB per send (stream)", [](const Row& r) { return r.kib_per_send; }, 1, true);
  line(
      "relay syscalls per req (64 conns)", [](const Row& r) { return r.sys_req_mc; }, 2, true);
  line(
      "max io-wq (iou-wrk) threads at relay end", [](const Row& r) { return r.iowq; }, 0, true);

  // Spread over rounds: the machine may be shared, so show how far apart the rounds were.
  std::ostringstream spread;
  spread << "| metric (min – max over rounds) | ";
  for (Variant v : variants) spread << VariantName(v) << " | ";
  spread << "\n|---|";
  for (size_t k = 0; k < nv; k++) spread << "---:|";
  spread << "\n";
  auto srow = [&](const char* name, const std::vector<std::vector<Sample>>& all, auto f, int prec) {
    spread << "| " << name << " | ";
    for (size_t k = 0; k < nv; k++) {
      double lo = 1e300, hi = -1e300;
      for (const Sample& x : all[k]) {
        lo = std::min(lo, f(x));
        hi = std::max(hi, f(x));
      }
      spread << Fmt(lo, prec) << " – " << Fmt(hi, prec) << " | ";
    }
    spread << "\n";
  };
  srow(
      "(1) throughput, Gbit/s", tput, [](const Sample& x) { return x.gbit_s; }, 2);
  srow(
      "(2) ping-pong p50, µs", pp, [](const Sample& x) { return x.p50_us; }, 1);
  srow(
      "(2) ping-pong p99, µs", pp, [](const Sample& x) { return x.p99_us; }, 1);
  srow(
      "(3) 64-conn req/s", mc, [](const Sample& x) { return x.req_s; }, 0);
  srow(
      "(4) relay CPU s/GB", tput,
      [](const Sample& x) { return x.units ? x.cpu_s / (x.units / 1e9) : 0; }, 3);
  srow(
      "(4) relay CPU s/100k req (64 conns)", mc,
      [](const Sample& x) { return x.units ? x.cpu_s / (x.units / 1e5) : 0; }, 3);

  std::ostringstream doc;
  doc << "# ztunnel I/O model: epoll readiness vs io_uring completion\n\n"
      << "Generated by `weft-io-model-bench` (bench/io_model/io_model_bench.cc).\n\n"
      << "## Machine\n\n"
      << MachineInfo() << "- io_uring: " << (us.usable ? "usable" : "NOT usable") << " ("
      << us.detail << ")"
      << (us.usable && !us.multishot_bufring ? "; multishot recv/buffer ring unavailable" : "")
      << "\n\n## Command\n\n```\n"
      << cmd << "\n```\n\n"
      << "Rounds: " << o.rounds << " (variant order rotated each round); median reported. "
      << "Throughput: 1 connection, 64 KiB writes for " << o.tput_secs
      << " s, server discards. Ping-pong: " << o.rt_count
      << " round trips of 1 KiB over 1 connection. Many-conn: " << o.conns
      << " connections, 1 KiB request echoed, one outstanding per connection, " << o.mc_secs
      << " s. Client, relay and server are three threads in one process on 127.0.0.1.\n\n"
      << (any_fail ? "**WARNING: at least one run failed or hit its deadline; see stderr.**\n\n"
                   : "")
      << "## Results\n\n"
      << md.str() << "\n### Spread\n\n"
      << spread.str() << "\n- load average before: " << load_before
      << "\n- load average after: " << ReadSmallFile("/proc/loadavg") << "\n"
      << "\n### Per-round log\n\n```\n"
      << round_log << "```\n";
  std::fputs(md.str().c_str(), stdout);
  std::fputs(("\n" + spread.str()).c_str(), stdout);
  if (!us.usable)
    std::printf("\nio_uring NOT usable here (%s): measured epoll only.\n", us.detail.c_str());
  if (!out_path.empty()) {
    std::ofstream f(out_path);
    if (!f) {
      std::fprintf(stderr, "weft-io-model-bench: cannot write %s: %s\n", out_path.c_str(),
                   std::strerror(errno));
      return 1;
    }
    f << doc.str();
  }
  return any_fail ? 1 : 0;
}
