// libFuzzer target for ztunnel's HBONE server (port 15008) on the TLS plaintext side: the input
// is what an authenticated peer sends inside TLS — the HTTP/2 preface and frames, through
// nghttp2's callbacks (hbone_conn.cc), the CONNECT headers and :authority parsing
// (ParseConnectRequest), the checks and authorization of Inbound::OnConnect, the application
// leg (Tunnel) and the data it relays.
//
// Everything is real: a Worker (its epoll loop run on this thread), Inbound::OnHbone on an
// accepted TCP connection, the server's TLS context from TlsContextCache with a certificate from
// a test CA, and a client that completes a TLS 1.3 handshake with its own mesh certificate and
// then writes the input as plaintext. The process runs in its own network namespace (unshared
// at start): the "pod" is 127.0.0.20 with an echoing application on port 8080; the client is
// 127.0.0.10. An AuthorizationPolicy allows the client on ports 8080 and 8081 only (nothing
// listens on 8081), so CONNECTs are answered 200, 403, 503, 400 or 405 depending on the input.
//
// One input: handshake, write the input, run the loop until it is idle (no fd of the loop
// ready), send close_notify, idle, close the socket, idle. A fresh Worker per input; the process
// must hold exactly the descriptors it held before (no tunnel or connection leaks), and the
// connection limits' unread-bytes budget must be back at zero.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "common/tls.h"
#include "common/unique_fd.h"
#include "ztunnel/identity/identity.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/state/snapshot.h"

namespace {

namespace zt = weft::ztunnel;
using weft::UniqueFd;

constexpr size_t kMaxInput = 64 * 1024;
constexpr int kIdleRounds = 2;       // consecutive idle checks that count as quiescent
constexpr int kMaxRounds = 200'000;  // a loop that never goes idle is a hang
constexpr char kServerIp[] = "127.0.0.20";
constexpr char kClientIp[] = "127.0.0.10";
constexpr uint16_t kAppPort = 8080;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "hbone_server: %s\n", what.c_str());
  std::abort();
}

sockaddr_in Addr(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  WEFT_CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
  return a;
}

UniqueFd Listen(const char* ip, uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  WEFT_CHECK(fd.valid());
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = Addr(ip, port);
  WEFT_CHECK(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  WEFT_CHECK(::listen(fd.get(), 64) == 0);
  return fd;
}

std::set<int> OpenFds() {
  std::set<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  WEFT_CHECK(d != nullptr);
  const int own = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != own) fds.insert(fd);
  }
  ::closedir(d);
  return fds;
}

// Own network namespace with loopback up: the proxy's connections stay in it.
void IsolateNetwork() {
  if (::unshare(CLONE_NEWNET) != 0 && ::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
    Die(std::string("cannot unshare a network namespace (needs root or user namespaces): ") +
        std::strerror(errno));
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  WEFT_CHECK(::ioctl(s.get(), SIOCGIFFLAGS, &ifr) == 0);
  ifr.ifr_flags |= IFF_UP;
  WEFT_CHECK(::ioctl(s.get(), SIOCSIFFLAGS, &ifr) == 0);
}

weft::config::v1::ConfigSnapshot MeshConfig() {
  weft::config::v1::ConfigSnapshot c;
  c.set_version("1");
  auto add = [&](const char* name, const char* ip) {
    auto* w = c.add_workloads();
    w->set_uid(std::string("prod/") + name + "-0");
    w->set_name(std::string(name) + "-0");
    w->set_namespace_("prod");
    w->set_service_account(name);
    w->set_node("node-a");
    w->add_addresses(ip);
    (*w->mutable_labels())["app"] = name;
    w->set_protocol(weft::config::v1::Workload::HBONE);
    w->set_phase("Running");
  };
  add("server", kServerIp);
  add("client", kClientIp);
  auto* p = c.add_authorization_policies();
  p->set_name("server-allow");
  p->set_namespace_("prod");
  (*p->mutable_selector()->mutable_match_labels())["app"] = "server";
  auto* r = p->add_rules();
  r->add_from()->mutable_source()->add_principals("cluster.local/ns/prod/sa/client");
  auto* op = r->add_to()->mutable_operation();
  op->add_ports("8080");
  op->add_ports("8081");
  return c;
}

// What lives for the whole process.
struct Env {
  zt::StaticCertificateProvider certs;
  std::unique_ptr<zt::TlsContextCache> tls;
  zt::ConfigStore config;
  zt::Metrics metrics;
  zt::Proxy::Shared shared;
  std::shared_ptr<zt::Pod> pod;
  std::shared_ptr<SSL_CTX> client_ctx;
  UniqueFd hbone_listener;  // where the client's TCP connection is accepted for the server
  UniqueFd app_listener;    // the pod's application, kServerIp:kAppPort
};
Env* env = nullptr;

// The pod's application: echoes what it reads (best effort), closes on EOF or error.
class AppConn : public zt::EventLoop::Handler {
 public:
  AppConn(zt::EventLoop* loop, UniqueFd fd) : loop_(loop), fd_(std::move(fd)) {
    (void)loop_->Add(fd_.get(), EPOLLIN, this);
  }
  ~AppConn() override { Close(); }
  bool open() const { return fd_.valid(); }
  void OnEvents(uint32_t) override {
    char buf[16384];
    for (;;) {
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n > 0) {
        (void)!::send(fd_.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL | MSG_DONTWAIT);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      Close();
      return;
    }
  }

 private:
  void Close() {
    if (!fd_.valid()) return;
    loop_->Remove(fd_.get());
    fd_.reset();
  }
  zt::EventLoop* loop_;
  UniqueFd fd_;
};

class AppListener : public zt::EventLoop::Handler {
 public:
  explicit AppListener(zt::EventLoop* loop) : loop_(loop) {
    (void)loop_->Add(env->app_listener.get(), EPOLLIN, this);
  }
  ~AppListener() override { loop_->Remove(env->app_listener.get()); }
  void OnEvents(uint32_t) override {
    for (;;) {
      int fd = ::accept4(env->app_listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;
      conns_.push_back(std::make_unique<AppConn>(loop_, UniqueFd(fd)));
    }
  }

 private:
  zt::EventLoop* loop_;
  std::vector<std::unique_ptr<AppConn>> conns_;
};

// The peer: a TLS client with the mesh identity of prod/client that writes the input as its
// plaintext and reads (and drops) whatever the server answers.
class Client : public zt::EventLoop::Handler {
 public:
  enum class Stage { kSending, kSent, kClosing, kClosed };
  Client(zt::EventLoop* loop, UniqueFd fd, const uint8_t* data, size_t size)
      : loop_(loop), fd_(std::move(fd)), data_(data), size_(size) {
    ssl_.reset(SSL_new(env->client_ctx.get()));
    SSL_set_fd(ssl_.get(), fd_.get());
    SSL_set_connect_state(ssl_.get());
    (void)loop_->Add(fd_.get(), EPOLLIN | EPOLLOUT, this);
  }
  ~Client() override { Close(); }
  Stage stage() const { return stage_; }

  void OnEvents(uint32_t) override {
    if (stage_ == Stage::kClosed) return;
    ERR_clear_error();
    if (!SSL_is_init_finished(ssl_.get())) {
      int rc = SSL_do_handshake(ssl_.get());
      if (rc != 1) {
        int e = SSL_get_error(ssl_.get(), rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
          Die("the client's TLS handshake with the server failed: " + weft::tls::OpenSslErrors());
        return;
      }
    }
    while (stage_ == Stage::kSending && sent_ < size_) {
      int n = SSL_write(ssl_.get(), data_ + sent_,
                        static_cast<int>(std::min<size_t>(size_ - sent_, 16384)));
      if (n <= 0) {
        int e = SSL_get_error(ssl_.get(), n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
        Close();  // the server closed on us
        return;
      }
      sent_ += static_cast<size_t>(n);
    }
    if (stage_ == Stage::kSending && sent_ == size_) stage_ = Stage::kSent;
    Drain();
    if (stage_ != Stage::kClosed)
      loop_->Modify(fd_.get(), stage_ == Stage::kSending ? EPOLLIN | EPOLLOUT : EPOLLIN, this);
  }

  // The next step once the loop went idle: close_notify and FIN, then the socket.
  void Advance() {
    if (stage_ == Stage::kSending || stage_ == Stage::kSent) {
      ERR_clear_error();
      if (SSL_is_init_finished(ssl_.get())) SSL_shutdown(ssl_.get());
      ::shutdown(fd_.get(), SHUT_WR);
      stage_ = Stage::kClosing;
    } else if (stage_ == Stage::kClosing) {
      Close();
    }
  }

 private:
  void Drain() {
    char buf[16384];
    for (;;) {
      ERR_clear_error();
      int n = SSL_read(ssl_.get(), buf, sizeof buf);
      if (n > 0) continue;
      int e = SSL_get_error(ssl_.get(), n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      Close();  // close_notify, EOF, reset: the server is done with us
      return;
    }
  }
  void Close() {
    if (stage_ == Stage::kClosed) return;
    stage_ = Stage::kClosed;
    loop_->Remove(fd_.get());
    ssl_.reset();
    fd_.reset();
  }

  zt::EventLoop* loop_;
  UniqueFd fd_;
  weft::tls::SslPtr ssl_;
  const uint8_t* data_;
  size_t size_;
  size_t sent_ = 0;
  Stage stage_ = Stage::kSending;
};

// A TCP connection kClientIp -> kServerIp: {client end, accepted end}.
std::pair<UniqueFd, UniqueFd> ConnectPair() {
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  WEFT_CHECK(c.valid());
  sockaddr_in src = Addr(kClientIp, 0);
  WEFT_CHECK(::bind(c.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
  sockaddr_in dst{};
  socklen_t len = sizeof dst;
  WEFT_CHECK(::getsockname(env->hbone_listener.get(), reinterpret_cast<sockaddr*>(&dst), &len) ==
             0);
  WEFT_CHECK(::connect(c.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst) == 0);
  ::fcntl(c.get(), F_SETFL, O_NONBLOCK);
  pollfd p{env->hbone_listener.get(), POLLIN, 0};
  WEFT_CHECK(::poll(&p, 1, 5000) == 1);
  UniqueFd s(::accept4(env->hbone_listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  WEFT_CHECK(s.valid());
  return {std::move(c), std::move(s)};
}

// The loop's epoll fd: the one new "anon_inode:[eventpoll]" among the fds Init opened.
int FindEpollFd(const std::set<int>& before) {
  for (int fd : OpenFds()) {
    if (before.count(fd)) continue;
    char target[64] = {0};
    std::string link = "/proc/self/fd/" + std::to_string(fd);
    if (::readlink(link.c_str(), target, sizeof target - 1) > 0 &&
        std::strcmp(target, "anon_inode:[eventpoll]") == 0)
      return fd;
  }
  Die("cannot find the worker loop's epoll fd");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  weft::log::SetLevel(weft::log::Level::kError);  // every rejected CONNECT logs a warning
  IsolateNetwork();
  env = new Env;
  auto ca = weft::tls::CertificateAuthority::CreateRoot("fuzz", std::chrono::hours(24 * 365));
  WEFT_CHECK(ca.ok());
  for (const char* sa : {"server", "client"}) {
    auto b = zt::MakeCertBundle(*ca, weft::SpiffeId{"cluster.local", "prod", sa},
                                std::chrono::hours(24 * 365));
    WEFT_CHECK(b.ok());
    env->certs.Set(*b);
  }
  env->tls = std::make_unique<zt::TlsContextCache>(&env->certs);
  auto cctx = env->tls->ClientContext(weft::SpiffeId{"cluster.local", "prod", "client"});
  WEFT_CHECK(cctx.ok());
  env->client_ctx = *cctx;
  auto snap = zt::ConfigSnapshot::FromProto(MeshConfig());
  WEFT_CHECK(snap.ok());
  env->config.Set(*snap);
  env->shared.opts.workers = 1;
  env->shared.config = &env->config;
  env->shared.tls = env->tls.get();
  env->shared.metrics = &env->metrics;
  env->shared.limits = std::make_unique<zt::HboneLimits>(env->shared.opts.hbone_limits,
                                                         &env->metrics);  // as Proxy's ctor
  env->pod = std::make_shared<zt::Pod>();
  env->pod->uid = "prod/server-0";
  env->hbone_listener = Listen(kServerIp, 0);
  env->app_listener = Listen(kServerIp, kAppPort);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  const std::set<int> fds_before = OpenFds();
  {
    zt::Worker worker(&env->shared, 0);
    WEFT_CHECK(worker.Init().ok());
    const int epfd = FindEpollFd(fds_before);
    const std::set<int> fds_init = OpenFds();  // + the loop's epoll and wake fds
    zt::EventLoop& loop = worker.loop();
    AppListener app(&loop);
    auto fds = ConnectPair();  // {client end, server end}
    std::unique_ptr<Client> client;
    int idle = 0, rounds = 0;
    std::function<void()> check = [&] {
      if (++rounds > kMaxRounds) Die("the loop never went idle (a busy loop?)");
      pollfd p{epfd, POLLIN, 0};
      idle = ::poll(&p, 1, 0) == 1 ? 0 : idle + 1;
      if (idle >= kIdleRounds) {
        idle = 0;
        if (client->stage() == Client::Stage::kClosed) {
          loop.Stop();
          return;
        }
        client->Advance();
      }
      loop.Post(check);
    };
    loop.Post([&] {
      worker.inbound().OnHbone(env->pod, std::move(fds.second));
      client = std::make_unique<Client>(&loop, std::move(fds.first), data, size);
      loop.Post(check);
    });
    loop.Run();
    client.reset();
    // The client is gone and the loop idle: the server must have closed the connection and
    // every tunnel (and so the application its end of each).
    const std::set<int> fds_after = OpenFds();
    if (fds_after != fds_init)
      Die(std::to_string(fds_after.size() - fds_init.size()) +
          " descriptors still open after the peer went away (connection or tunnel leak)");
    // Every byte held for an application was given back to the per-ztunnel budget.
    if (env->shared.limits->buffered() != 0)
      Die("buffered-bytes budget off by " + std::to_string(env->shared.limits->buffered()) +
          " after every connection closed");
  }
  WEFT_CHECK(OpenFds() == fds_before);
  return 0;
}
