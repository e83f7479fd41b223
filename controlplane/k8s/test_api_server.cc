#include "controlplane/k8s/test_api_server.h"

#include <sys/socket.h>

#include <openssl/x509.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/file.h"

namespace weft::cp::k8s::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct TestApiServer::Impl {
  asio::io_context io;
  std::unique_ptr<asio::ssl::context> tls;
  tcp::acceptor acceptor{io};
  uint16_t port = 0;
  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::map<std::string, std::deque<ScriptedReply>> queues;
  std::map<std::string, TestApiServer::Handler> handlers;
  std::vector<RecordedRequest> requests;
  std::set<int> open_fds;
  std::vector<std::thread> threads;
  std::thread accept_thread;

  void AcceptLoop() {
    for (;;) {
      auto sock = std::make_shared<tcp::socket>(io);
      boost::system::error_code ec;
      acceptor.accept(*sock, ec);
      std::lock_guard<std::mutex> lock(mu);
      if (ec || stopping) return;
      open_fds.insert(sock->native_handle());
      threads.emplace_back([this, sock] { Serve(*sock); });
    }
  }

  void Serve(tcp::socket& sock) {
    boost::system::error_code ec;
    if (tls) {
      asio::ssl::stream<tcp::socket&> stream(sock, *tls);
      stream.handshake(asio::ssl::stream_base::server, ec);
      if (!ec) {
        std::string cn;
        if (X509* peer = SSL_get_peer_certificate(stream.native_handle())) {
          char buf[256] = {0};
          X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf, sizeof buf);
          cn = buf;
          X509_free(peer);
        }
        ReadAndRespond(stream, cn);
      }
    } else {
      ReadAndRespond(sock, "");
    }
    std::lock_guard<std::mutex> lock(mu);
    open_fds.erase(sock.native_handle());
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
  }

  template <typename Stream>
  void ReadAndRespond(Stream& sock, const std::string& client_cn) {
    boost::system::error_code ec;
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::read(sock, buf, req, ec);
    if (!ec) Respond(sock, req, client_cn);
  }

  template <typename Stream>
  void Respond(Stream& sock, const http::request<http::string_body>& req,
               const std::string& client_cn) {
    RecordedRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    const auto q = r.target.find('?');
    r.path = r.target.substr(0, q);
    if (q != std::string::npos) {
      std::stringstream ss(r.target.substr(q + 1));
      std::string kv;
      while (std::getline(ss, kv, '&')) {
        const auto eq = kv.find('=');
        r.query[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
      }
    }
    r.authorization = std::string(req[http::field::authorization]);
    r.content_type = std::string(req[http::field::content_type]);
    r.body = req.body();
    r.client_cn = client_cn;
    r.at = std::chrono::steady_clock::now();
    ScriptedReply reply;
    TestApiServer::Handler handler;
    {
      std::unique_lock<std::mutex> lock(mu);
      requests.push_back(r);
      cv.notify_all();
      cv.wait(lock,
              [&] { return stopping || !queues[r.path].empty() || handlers.count(r.path) > 0; });
      if (stopping) return;
      if (!queues[r.path].empty()) {
        reply = std::move(queues[r.path].front());
        queues[r.path].pop_front();
      } else {
        handler = handlers[r.path];
      }
    }
    if (handler) reply = handler(r);
    boost::system::error_code ec;
    if (!reply.stream) {
      http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
      res.set(http::field::content_type, "application/json");
      res.keep_alive(false);
      res.body() = reply.body;
      res.prepare_payload();
      http::write(sock, res, ec);
      return;
    }
    http::response<http::empty_body> res{static_cast<http::status>(reply.status), 11};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(false);
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    http::write_header(sock, sr, ec);
    for (const auto& c : reply.chunks) {
      if (ec) return;
      asio::write(sock, http::make_chunk(asio::buffer(c)), ec);
    }
    if (!reply.drop && !ec) asio::write(sock, http::make_chunk_last(), ec);
  }
};

TestApiServer::TestApiServer(TlsConfig cfg) : TestApiServer() {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->use_certificate_chain(asio::buffer(cfg.cert_pem));
  ctx->use_private_key(asio::buffer(cfg.key_pem), asio::ssl::context::pem);
  if (!cfg.client_ca_pem.empty()) {
    ctx->add_certificate_authority(asio::buffer(cfg.client_ca_pem));
    ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->tls = std::move(ctx);
}

TestApiServer::TestApiServer() : impl_(std::make_unique<Impl>()) {
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->accept_thread = std::thread([this] { impl_->AcceptLoop(); });
}

TestApiServer::~TestApiServer() {
  Stop();
}

void TestApiServer::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    // shutdown() wakes threads blocked in accept/read on these sockets.
    ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
    for (int fd : impl_->open_fds) ::shutdown(fd, SHUT_RDWR);
  }
  impl_->cv.notify_all();
  impl_->accept_thread.join();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    threads.swap(impl_->threads);
  }
  for (auto& t : threads) t.join();
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

std::string TestApiServer::url() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return std::string(impl_->tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(impl_->port);
}

void TestApiServer::Enqueue(const std::string& path, ScriptedReply reply) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->queues[path].push_back(std::move(reply));
  impl_->cv.notify_all();
}

void TestApiServer::SetHandler(const std::string& path, Handler handler) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->handlers[path] = std::move(handler);
  impl_->cv.notify_all();
}

std::vector<RecordedRequest> TestApiServer::Requests(const std::string& path) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<RecordedRequest> out;
  for (const auto& r : impl_->requests) {
    if (path.empty() || r.path == path) out.push_back(r);
  }
  return out;
}

bool TestApiServer::WaitForRequests(const std::string& path, size_t n,
                                    std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] {
    size_t c = 0;
    for (const auto& r : impl_->requests) c += r.path == path;
    return c >= n;
  });
}

std::string Fixture(const std::string& name) {
  return ReadFile(std::string(WEFT_K8S_TESTDATA) + "/" + name).value();
}

std::vector<std::string> FixtureLines(const std::string& name) {
  std::stringstream ss(Fixture(name));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(ss, line)) {
    if (!line.empty()) out.push_back(line + "\n");
  }
  return out;
}

}  // namespace weft::cp::k8s::testing
