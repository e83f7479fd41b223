#include "tests/support/test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/netns.h"
#include "common/status.h"
#include "ztunnel/identity/identity.h"

namespace weft::testing {

namespace {
// The raw TLS clients write to peers that may have hung up: a test must see EPIPE, not die.
const bool kIgnoreSigpipe = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();
}  // namespace

EchoServer::EchoServer(const SockAddr& addr, int netns_fd)
    : EchoServer(addr, [&] {
        auto fd = SocketInNetns(netns_fd, addr.ip.IsV4() ? AF_INET : AF_INET6, SOCK_STREAM, 0);
        if (!fd.ok()) std::abort();
        return std::move(*fd);
      }()) {}

EchoServer::EchoServer(const SockAddr& addr, UniqueFd socket) {
  listen_ = std::move(socket);
  int one = 1;
  setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss;
  socklen_t len = addr.ToSockaddr(&ss);
  if (bind(listen_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      listen(listen_.get(), 1024) != 0) {
    perror("EchoServer bind/listen");
    std::abort();
  }
  addr_ = *LocalAddress(listen_.get());
  thread_ = std::thread([this] { Run(); });
}

LoopbackRelay::LoopbackRelay(UniqueFd target) : target_(std::move(target)) {
  listen_ = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(listen_.get(), 1) != 0 ||
      getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    perror("LoopbackRelay bind/listen");
    return;
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { Run(); });
}

LoopbackRelay::~LoopbackRelay() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void LoopbackRelay::Run() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  auto left = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now())
               .count()));
  };
  pollfd l{listen_.get(), POLLIN, 0};
  while (!stop_ && left() > 0 && poll(&l, 1, 100) == 0) {
  }
  if (stop_ || !(l.revents & POLLIN)) return;
  UniqueFd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!c.valid()) return;
  int fds[2] = {c.get(), target_.get()};
  bool open[2] = {true, true};  // reading side i still open
  char buf[16384];
  while (!stop_ && left() > 0 && (open[0] || open[1])) {
    pollfd p[2] = {{fds[0], static_cast<short>(open[0] ? POLLIN : 0), 0},
                   {fds[1], static_cast<short>(open[1] ? POLLIN : 0), 0}};
    if (poll(p, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (!open[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i], buf, sizeof buf);
      if (n <= 0) {
        open[i] = false;
        shutdown(fds[1 - i], SHUT_WR);
        continue;
      }
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(fds[1 - i], buf + off, static_cast<size_t>(n - off));
        if (w <= 0) return;
        off += w;
      }
    }
  }
}

EchoServer::~EchoServer() {
  stop_ = true;
  shutdown(listen_.get(), SHUT_RDWR);
  thread_.join();
  for (auto& t : conns_) t.join();
}

void EchoServer::Run() {
  while (!stop_) {
    pollfd p{listen_.get(), POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int c = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    accepted_++;
    conns_.emplace_back([this, c] {
      char buf[65536];
      while (!stop_) {
        pollfd p{c, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = read(c, buf, sizeof buf);
        // A socket in a sockmap (the local legs) can report EAGAIN after poll said readable.
        if (n < 0 && errno == EAGAIN) continue;
        if (n <= 0) break;
        ssize_t off = 0;
        while (off < n) {
          ssize_t k = write(c, buf + off, n - off);
          if (k <= 0) break;
          off += k;
        }
      }
      close(c);
    });
  }
}

absl::StatusOr<UniqueFd> Dial(const SockAddr& to, int netns_fd, std::chrono::milliseconds timeout,
                              const IpAddr* from) {
  WEFT_ASSIGN_OR_RETURN(UniqueFd fd,
                        SocketInNetns(netns_fd, to.ip.IsV4() ? AF_INET : AF_INET6, SOCK_STREAM, 0));
  if (from) {
    sockaddr_storage bs;
    socklen_t bl = SockAddr{*from, 0}.ToSockaddr(&bs);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&bs), bl) != 0) return ErrnoError(errno, "bind");
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_storage ss;
  socklen_t len = to.ToSockaddr(&ss);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return ErrnoError(errno, "connect " + to.ToString());
  return fd;
}

std::string EchoRoundTrip(int fd, const std::string& msg, std::chrono::milliseconds timeout) {
  size_t off = 0;
  while (off < msg.size()) {
    ssize_t k = send(fd, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
    if (k <= 0) break;
    off += static_cast<size_t>(k);
  }
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (got.size() < msg.size() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

bool WaitClosed(int fd, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
  }
  return false;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

absl::StatusOr<tls::CertificateAuthority> MakeMeshCerts(const std::string& dir,
                                                        const std::vector<SpiffeId>& ids) {
  WEFT_ASSIGN_OR_RETURN(auto ca,
                        tls::CertificateAuthority::CreateRoot("weft-test", std::chrono::hours(24)));
  WEFT_RETURN_IF_ERROR(ztunnel::WriteRootFile(dir, ca));
  for (const auto& id : ids)
    WEFT_RETURN_IF_ERROR(ztunnel::WriteCertFiles(dir, ca, id, std::chrono::hours(1)));
  return ca;
}

absl::StatusOr<ClientCert> IssueClientCert(const tls::CertificateAuthority& ca, const SpiffeId* id,
                                           std::chrono::seconds ttl,
                                           std::chrono::seconds not_before_offset) {
  ClientCert out;
  WEFT_ASSIGN_OR_RETURN(out.key, tls::GenerateKey());
  SpiffeId use = id ? *id : SpiffeId{"cluster.local", "x", "y"};
  WEFT_ASSIGN_OR_RETURN(auto csr, tls::MakeCsr(out.key.get(), use));
  WEFT_ASSIGN_OR_RETURN(
      out.cert, ca.Sign(csr.get(), use, ttl, std::chrono::system_clock::now() + not_before_offset));
  return out;
}

namespace {
struct H2State {
  SSL* ssl;
  int status = 0;
  bool closed = false;
};
}  // namespace

HboneDialResult HboneConnect(const SockAddr& hbone, const ClientCert* cert,
                             const std::string& root_pem, const std::string& authority,
                             const std::string* raw_after_handshake) {
  HboneDialResult r;
  auto fd = Dial(hbone);
  if (!fd.ok()) {
    r.error = fd.status().ToString();
    return r;
  }
  tls::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof kAlpn);
  if (auto roots = tls::CertsFromPem(root_pem); roots.ok())
    for (auto& c : *roots) X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), c.get());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (cert) {
    SSL_CTX_use_certificate(ctx.get(), cert->cert.get());
    SSL_CTX_use_PrivateKey(ctx.get(), cert->key.get());
  }
  tls::SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd->get());
  if (SSL_connect(ssl.get()) != 1) {
    r.error = "handshake: " + tls::OpenSslErrors();
    return r;
  }
  r.handshake_ok = true;
  if (raw_after_handshake) {
    SSL_write(ssl.get(), raw_after_handshake->data(),
              static_cast<int>(raw_after_handshake->size()));
    char buf[4096];
    while (SSL_read(ssl.get(), buf, sizeof buf) > 0) {
    }
    r.error = "closed";
    return r;
  }
  H2State st{ssl.get()};
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(
      cbs, [](nghttp2_session*, const uint8_t* d, size_t n, int, void* u) -> ssize_t {
        int k = SSL_write(static_cast<H2State*>(u)->ssl, d, static_cast<int>(n));
        return k > 0 ? k : NGHTTP2_ERR_CALLBACK_FAILURE;
      });
  nghttp2_session_callbacks_set_on_header_callback(
      cbs,
      [](nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t nl,
         const uint8_t* value, size_t vl, uint8_t, void* u) -> int {
        if (std::string(reinterpret_cast<const char*>(name), nl) == ":status")
          static_cast<H2State*>(u)->status =
              std::atoi(std::string(reinterpret_cast<const char*>(value), vl).c_str());
        return 0;
      });
  nghttp2_session_callbacks_set_on_stream_close_callback(
      cbs, [](nghttp2_session*, int32_t, uint32_t, void* u) -> int {
        static_cast<H2State*>(u)->closed = true;
        return 0;
      });
  nghttp2_session* s;
  nghttp2_session_client_new(&s, cbs, &st);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, nullptr, 0);
  std::string m = "CONNECT", a = authority;
  nghttp2_nv nv[] = {
      {(uint8_t*)":method", (uint8_t*)m.data(), 7, m.size(), NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)":authority", (uint8_t*)a.data(), 10, a.size(), NGHTTP2_NV_FLAG_NONE}};
  nghttp2_submit_request(s, nullptr, nv, 2, nullptr, nullptr);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (st.status == 0 && !st.closed && std::chrono::steady_clock::now() < deadline) {
    if (nghttp2_session_send(s) != 0) break;
    char buf[16384];
    int n = SSL_read(ssl.get(), buf, sizeof buf);
    if (n <= 0) {
      r.error = "read: " + tls::OpenSslErrors();
      break;
    }
    if (nghttp2_session_mem_recv(s, reinterpret_cast<uint8_t*>(buf), n) < 0) break;
  }
  r.status = st.status;
  nghttp2_session_del(s);
  return r;
}

std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> n{0};
  return prefix + std::to_string(getpid()) + "-" + std::to_string(n++);
}

bool IsRoot() {
  return geteuid() == 0;
}

}  // namespace weft::testing
