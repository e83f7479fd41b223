// weft-e2e-app: the pods' process in the end-to-end suite, and the client it runs through
// `weftctl exec`. Payload-carrying on purpose: a capture can look for the token it sends.
//   serve PORT...            TCP echo servers on every address: each line read is written back
//   call HOST PORT TOKEN     connects (5 s), sends "TOKEN\n", prints the echoed line;
//                            exit 0 only if the echo is TOKEN (reason on stderr otherwise)
//   hold HOST PORT TOKEN MS  one connection kept open: every MS ms sends "TOKEN i\n" and prints
//                            "ok i" once echoed; prints "closed: <why>" and exits 1 when the
//                            connection fails; exits 0 after 180 s
//   churn HOST PORT TOKEN MS SECONDS
//                            a steady rate of new connections: every MS ms one connection, one
//                            round trip ("TOKEN i"), closed; prints "fail i: <why>" for each that
//                            failed and at the end "attempts N failed M"; exit 0 iff M is 0
//   http PORT...             HTTP/1.1 servers on every address (Boost.Beast): every request gets
//                            200 and the body "METHOD TARGET\n"; a WebSocket upgrade gets 101
//                            and then each message is echoed
//   ws HOST PORT PATH TOKEN  a WebSocket client: upgrades on PATH, sends TOKEN, prints the echo;
//                            exit 0 only if it is TOKEN
//   raw HOST PORT BYTES      sends BYTES, prints whatever comes back until the peer closes (5 s
//                            at most); exit 0 iff the peer closed (or reset) the connection
//   sleep                    waits forever
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "common/flags.h"
#include "common/net.h"

namespace {

void Echo(int c) {
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(c, buf, sizeof buf, 0)) > 0) {
    if (::send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
  }
  ::close(c);
}

int Serve(const std::vector<int>& ports, void (*handler)(int)) {
  std::vector<std::thread> loops;
  for (int port : ports) {
    auto listener = weft::ListenOnAllAddresses(static_cast<uint16_t>(port));
    if (!listener.ok()) {
      std::fprintf(stderr, "%s\n", listener.status().ToString().c_str());
      return 1;
    }
    int s = listener->release();
    std::printf("serving on port %d\n", port);
    loops.emplace_back([s, handler] {
      while (true) {
        int c = ::accept(s, nullptr, nullptr);
        if (c >= 0) std::thread(handler, c).detach();
      }
    });
  }
  std::fflush(stdout);
  for (auto& t : loops) t.join();
  return 0;
}

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;

// A WebSocket session on an upgraded connection: every message comes back.
void ServeWebSocket(tcp::socket sock, const bhttp::request<bhttp::string_body>& req) {
  websocket::stream<tcp::socket> ws(std::move(sock));
  beast::error_code ec;
  ws.accept(req, ec);
  while (!ec) {
    beast::flat_buffer msg;
    ws.read(msg, ec);
    if (ec) break;
    ws.text(ws.got_text());
    ws.write(msg.data(), ec);
  }
}

void ServeHttp(int fd) {
  boost::asio::io_context io;
  tcp::socket sock(io);
  beast::error_code ec;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  sock.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return;
  }
  beast::flat_buffer buf;
  while (true) {
    bhttp::request<bhttp::string_body> req;
    bhttp::read(sock, buf, req, ec);
    if (ec) return;
    if (websocket::is_upgrade(req)) return ServeWebSocket(std::move(sock), req);
    bhttp::response<bhttp::string_body> res{bhttp::status::ok, req.version()};
    res.set(bhttp::field::content_type, "text/plain");
    res.body() = std::string(req.method_string()) + " " + std::string(req.target()) + "\n";
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    bhttp::write(sock, res, ec);
    if (ec || !req.keep_alive()) return;
  }
}

int Connect(const char* host, const char* port) {
  auto conn = weft::DialTcp(host, port, std::chrono::seconds(5));
  if (!conn.ok()) {
    std::fprintf(stderr, "%s\n", conn.status().ToString().c_str());
    return -1;
  }
  return conn->release();
}

// Sends `line` + '\n' and reads the echo up to '\n'. Empty string + `why` on failure.
std::string RoundTrip(int s, const std::string& line, std::string* why) {
  std::string out = line + "\n";
  if (::send(s, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
    *why = std::string("send: ") + std::strerror(errno);
    return "";
  }
  std::string got;
  char c;
  while (true) {
    ssize_t n = ::recv(s, &c, 1, 0);
    if (n == 0) {
      *why = "closed by peer";
      return "";
    }
    if (n < 0) {
      *why = std::string("recv: ") + std::strerror(errno);
      return "";
    }
    if (c == '\n') return got;
    got.push_back(c);
  }
}

int Call(const char* host, const char* port, const std::string& token) {
  int s = Connect(host, port);
  if (s < 0) return 1;
  std::string why;
  std::string got = RoundTrip(s, token, &why);
  ::close(s);
  if (got != token) {
    std::fprintf(stderr, "no echo from %s:%s (%s)\n", host, port, why.c_str());
    return 1;
  }
  std::printf("%s\n", got.c_str());
  return 0;
}

int Hold(const char* host, const char* port, const std::string& token, int interval_ms) {
  int s = Connect(host, port);
  if (s < 0) {
    std::printf("closed: connect failed\n");
    return 1;
  }
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
    std::string why, line = token + " " + std::to_string(i);
    if (RoundTrip(s, line, &why) != line) {
      std::printf("closed: %s\n", why.empty() ? "wrong echo" : why.c_str());
      std::fflush(stdout);
      return 1;
    }
    std::printf("ok %d\n", i);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  return 0;
}

int Churn(const char* host, const char* port, const std::string& token, int interval_ms,
          int seconds) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  auto next = std::chrono::steady_clock::now();
  int attempts = 0, failed = 0;
  for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
    ++attempts;
    std::string why, line = token + " " + std::to_string(i);
    auto conn = weft::DialTcp(host, port, std::chrono::seconds(5));
    if (!conn.ok()) {
      why = conn.status().ToString();
    } else if (RoundTrip(conn->get(), line, &why) != line && why.empty()) {
      why = "wrong echo";
    }
    if (!why.empty()) {
      ++failed;
      std::printf("fail %d: %s\n", i, why.c_str());
    } else {
      std::printf("ok %d\n", i);
    }
    std::fflush(stdout);
    next += std::chrono::milliseconds(interval_ms);
    std::this_thread::sleep_until(next);
  }
  std::printf("attempts %d failed %d\n", attempts, failed);
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}

int WebSocketCall(const char* host, const char* port, const std::string& path,
                  const std::string& token) {
  int s = Connect(host, port);
  if (s < 0) return 1;
  boost::asio::io_context io;
  websocket::stream<tcp::socket> ws(io);
  beast::error_code ec;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len);
  ws.next_layer().assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), s, ec);
  if (!ec) ws.handshake(host, path, ec);
  if (!ec) ws.write(boost::asio::buffer(token), ec);
  beast::flat_buffer got;
  if (!ec) ws.read(got, ec);
  if (ec) {
    std::fprintf(stderr, "websocket %s:%s%s: %s\n", host, port, path.c_str(), ec.message().c_str());
    return 1;
  }
  std::string echo = beast::buffers_to_string(got.data());
  ws.close(websocket::close_code::normal, ec);
  std::printf("%s\n", echo.c_str());
  return echo == token ? 0 : 1;
}

int Raw(const char* host, const char* port, const std::string& bytes) {
  int s = Connect(host, port);
  if (s < 0) return 1;
  timeval tv{5, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::send(s, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n > 0) {
      std::fwrite(buf, 1, static_cast<size_t>(n), stdout);
      continue;
    }
    const bool closed = n == 0 || errno == ECONNRESET;
    std::printf("\n%s\n", n == 0 ? "closed" : std::strerror(errno));
    ::close(s);
    return closed ? 0 : 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "The pods' process in the end-to-end suite, and the client it runs through weftctl exec.",
      "weft-e2e-app"};
  app.require_subcommand(1);
  std::vector<int> ports;
  std::string host, port, token;
  int interval_ms = 0;
  CLI::App* serve = app.add_subcommand(
      "serve", "TCP echo servers on every address: each line read is written back");
  serve->add_option("PORT", ports)->required();
  CLI::App* call = app.add_subcommand(
      "call",
      "connects (5 s), sends \"TOKEN\\n\", prints the echoed line; exit 0 only if the "
      "echo is TOKEN");
  CLI::App* hold = app.add_subcommand(
      "hold",
      "one connection kept open: every MS ms sends \"TOKEN i\\n\" and prints \"ok i\" "
      "once echoed; prints \"closed: <why>\" and exits 1 when the connection fails; "
      "exits 0 after 180 s");
  for (CLI::App* c : {call, hold}) {
    c->add_option("HOST", host)->required();
    c->add_option("PORT", port)->required();
    c->add_option("TOKEN", token)->required();
  }
  hold->add_option("MS", interval_ms)->required();
  int seconds = 0;
  CLI::App* churn = app.add_subcommand(
      "churn",
      "a new connection every MS ms for SECONDS s, one round trip each; prints \"fail i: why\" "
      "per failure and \"attempts N failed M\"; exit 0 iff none failed");
  churn->add_option("HOST", host)->required();
  churn->add_option("PORT", port)->required();
  churn->add_option("TOKEN", token)->required();
  churn->add_option("MS", interval_ms)->required();
  churn->add_option("SECONDS", seconds)->required();
  CLI::App* http = app.add_subcommand(
      "http",
      "HTTP/1.1 servers on every address: 200 \"METHOD TARGET\\n\" for every request, "
      "WebSocket upgrades answered 101 and echoed");
  http->add_option("PORT", ports)->required();
  std::string path, bytes;
  CLI::App* ws =
      app.add_subcommand("ws", "WebSocket client: upgrades on PATH, sends TOKEN, prints the echo");
  ws->add_option("HOST", host)->required();
  ws->add_option("PORT", port)->required();
  ws->add_option("PATH", path)->required();
  ws->add_option("TOKEN", token)->required();
  CLI::App* raw = app.add_subcommand(
      "raw", "sends BYTES, prints what comes back until the peer closes (5 s at most)");
  raw->add_option("HOST", host)->required();
  raw->add_option("PORT", port)->required();
  raw->add_option("BYTES", bytes)->required();
  CLI::App* sleep = app.add_subcommand("sleep", "waits forever");
  if (auto rc = weft::ParseFlags(app, argc, argv)) return *rc;
  if (serve->parsed()) return Serve(ports, Echo);
  if (http->parsed()) return Serve(ports, ServeHttp);
  if (ws->parsed()) return WebSocketCall(host.c_str(), port.c_str(), path, token);
  if (raw->parsed()) return Raw(host.c_str(), port.c_str(), bytes);
  if (call->parsed()) return Call(host.c_str(), port.c_str(), token);
  if (hold->parsed()) return Hold(host.c_str(), port.c_str(), token, interval_ms);
  if (churn->parsed()) return Churn(host.c_str(), port.c_str(), token, interval_ms, seconds);
  (void)sleep;
  while (true) ::pause();
}
