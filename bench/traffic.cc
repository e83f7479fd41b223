#include "bench/traffic.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::bench {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kIoTimeout = std::chrono::seconds(5);

std::string Errno(const char* what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

void SetTimeouts(int fd, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // also bounds connect()
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

absl::StatusOr<UniqueFd> Dial(const SockAddr& to, std::chrono::milliseconds timeout) {
  sockaddr_storage ss{};
  socklen_t len = to.ToSockaddr(&ss);
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return absl::InternalError(Errno("socket"));
  SetTimeouts(fd.get(), timeout);
  SetNoDelay(fd.get());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return absl::UnavailableError(
        absl::StrCat("connect to ", to.ToString(), ": ", std::strerror(errno)));
  return fd;
}

absl::Status WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return absl::UnavailableError(Errno("send"));
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status ReadFull(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return absl::UnavailableError("connection closed by the peer mid-response");
    if (r < 0)
      return absl::UnavailableError(errno == EAGAIN ? std::string("no response within 5 s")
                                                    : Errno("recv"));
    p += r;
    n -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

// Sends `req` and checks that exactly it comes back.
absl::Status RoundTrip(int fd, const std::string& req, std::string& buf) {
  buf.resize(req.size());
  WEFT_RETURN_IF_ERROR(WriteAll(fd, req.data(), req.size()));
  WEFT_RETURN_IF_ERROR(ReadFull(fd, buf.data(), buf.size()));
  if (buf != req) return absl::DataLossError("the echo did not match the request");
  return absl::OkStatus();
}

}  // namespace

// ------------------------------------------------------------------------------------------
// EchoServer

absl::StatusOr<std::unique_ptr<EchoServer>> EchoServer::Start(int netns_fd, uint16_t port,
                                                              bool close_after_echo) {
  std::unique_ptr<EchoServer> s(new EchoServer());
  s->close_after_echo_ = close_after_echo;
  WEFT_ASSIGN_OR_RETURN(s->listen_,
                        SocketInNetns(netns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  int one = 1;
  setsockopt(s->listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (bind(s->listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    return absl::UnavailableError(
        absl::StrCat("echo server: bind 0.0.0.0:", port, ": ", std::strerror(errno)));
  if (listen(s->listen_.get(), 4096) != 0) return absl::InternalError(Errno("listen"));
  s->port_ = port;
  s->epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  s->wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->epoll_ || !s->wake_) return absl::InternalError(Errno("epoll/eventfd"));
  for (int fd : {s->listen_.get(), s->wake_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(s->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      return absl::InternalError(Errno("epoll_ctl"));
  }
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

EchoServer::~EchoServer() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof(one));
    thread_.join();
  }
}

void EchoServer::Loop() {
  struct Conn {
    UniqueFd fd;
    std::string pending;  // output the peer has not taken yet
  };
  std::unordered_map<int, Conn> conns;
  std::vector<char> buf(64 * 1024);
  std::vector<epoll_event> events(256);
  auto close_conn = [&](int fd) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    conns.erase(fd);
    open_--;
  };
  auto interest = [&](int fd, uint32_t ev) {
    epoll_event e{};
    e.events = ev;
    e.data.fd = fd;
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &e);
  };
  // Writes what it can of `c.pending`; true if the connection is still usable.
  auto flush = [&](Conn& c) {
    while (!c.pending.empty()) {
      ssize_t w = send(c.fd.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) return true;
      if (w <= 0) return false;
      c.pending.erase(0, static_cast<size_t>(w));
    }
    return true;
  };
  while (true) {
    int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == wake_.get()) return;  // conns' destructors close every connection
      if (fd == listen_.get()) {
        while (true) {
          int c = accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;  // EAGAIN, or out of fds: try again on the next readiness
          SetNoDelay(c);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = c;
          if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c, &ev) != 0) {
            close(c);
            continue;
          }
          conns[c].fd.reset(c);
          open_++;
          accepted_++;
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = it->second;
      if (!c.pending.empty()) {  // waiting for EPOLLOUT
        if (!flush(c)) {
          close_conn(fd);
        } else if (c.pending.empty()) {
          interest(fd, EPOLLIN);
        }
        continue;
      }
      ssize_t r = recv(fd, buf.data(), buf.size(), 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        close_conn(fd);
        continue;
      }
      c.pending.assign(buf.data(), static_cast<size_t>(r));
      // A one-shot reply of a few bytes always fits the socket buffer, so the close after it
      // never drops output.
      if (!flush(c) || (close_after_echo_ && c.pending.empty())) {
        close_conn(fd);
      } else if (!c.pending.empty()) {
        interest(fd, EPOLLOUT);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Clients

absl::StatusOr<PingPongResult> RunPingPong(const SockAddr& server, size_t size, int64_t warmup,
                                           int64_t round_trips, std::chrono::milliseconds max_time,
                                           const std::atomic<bool>& stop) {
  WEFT_ASSIGN_OR_RETURN(auto fd, Dial(server, kIoTimeout));
  std::string req(size, 'x'), buf;
  for (size_t i = 0; i < size; i++) req[i] = static_cast<char>('a' + i % 26);
  for (int64_t i = 0; i < warmup; i++) WEFT_RETURN_IF_ERROR(RoundTrip(fd.get(), req, buf));

  std::vector<int64_t> samples;
  samples.reserve(static_cast<size_t>(round_trips));
  auto start = Clock::now(), deadline = start + max_time;
  auto t0 = start;
  for (int64_t i = 0; i < round_trips; i++) {
    // A different request every time, so a stale or misrouted response cannot pass.
    std::memcpy(req.data(), &i, std::min(sizeof(i), size));
    WEFT_RETURN_IF_ERROR(RoundTrip(fd.get(), req, buf));
    auto t1 = Clock::now();
    samples.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    t0 = t1;
    if (t1 > deadline) break;
    if ((i & 255) == 0 && stop.load()) return absl::CancelledError("interrupted");
  }
  PingPongResult r;
  constexpr size_t kBlock = 1000;
  for (size_t b = 0; b + kBlock <= samples.size(); b += kBlock) {
    std::vector<int64_t> block(samples.begin() + static_cast<std::ptrdiff_t>(b),
                               samples.begin() + static_cast<std::ptrdiff_t>(b + kBlock));
    std::sort(block.begin(), block.end());
    r.block_p50_us.push_back(static_cast<double>(Percentile(block, 0.5)) / 1000.0);
  }
  r.round_trips = static_cast<int64_t>(samples.size());
  r.seconds = std::chrono::duration<double>(t0 - start).count();
  r.latency = Summarize(samples);
  return r;
}

absl::StatusOr<ConnectRateResult> RunConnectRate(const SockAddr& server,
                                                 std::chrono::milliseconds duration,
                                                 int64_t max_connections,
                                                 const std::atomic<bool>& stop) {
  ConnectRateResult r;
  const std::string req(32, 'c');
  std::string buf;
  absl::Status last;
  auto start = Clock::now(), deadline = start + duration, now = start;
  while (r.connections < max_connections && (now = Clock::now()) < deadline) {
    if (stop.load()) return absl::CancelledError("interrupted");
    auto fd = Dial(server, kIoTimeout);
    absl::Status st = fd.ok() ? RoundTrip(fd->get(), req, buf) : fd.status();
    if (st.ok()) {
      char b;
      ssize_t r = recv(fd->get(), &b, 1, 0);
      if (r != 0)
        st = absl::UnavailableError(r > 0 ? std::string("unexpected bytes after the reply")
                                          : Errno("waiting for the server's close"));
    }
    if (st.ok()) {
      r.connections++;
    } else {
      last = st;
      if (++r.failures >= 20)
        return absl::UnavailableError(absl::StrCat("connect rate: ", r.failures,
                                                   " connections failed, last: ", st.message()));
    }
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.per_second = r.seconds > 0 ? static_cast<double>(r.connections) / r.seconds : 0;
  return r;
}

absl::StatusOr<std::vector<UniqueFd>> OpenIdleConnections(const SockAddr& server, int n,
                                                          const std::atomic<bool>& stop) {
  std::vector<UniqueFd> fds;
  fds.reserve(static_cast<size_t>(n));
  std::string buf;
  for (int i = 0; i < n; i++) {
    if (stop.load()) return absl::CancelledError("interrupted");
    auto fd = Dial(server, kIoTimeout);
    if (!fd.ok())
      return absl::UnavailableError(
          absl::StrCat("opening idle connection ", i + 1, " of ", n, ": ", fd.status().message()));
    std::string req = absl::StrCat("idle-", i, std::string(16, '.')).substr(0, 16);
    if (auto st = RoundTrip(fd->get(), req, buf); !st.ok())
      return absl::UnavailableError(
          absl::StrCat("idle connection ", i + 1, " of ", n, ": ", st.message()));
    fds.push_back(std::move(*fd));
  }
  return fds;
}

}  // namespace weft::bench
