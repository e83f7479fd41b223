// weft-e2e-app: the pods' process in the end-to-end suite, and the client it runs through
// `weftctl exec`. Payload-carrying on purpose: a capture can look for the token it sends.
//   serve PORT...            TCP echo servers on every address: each line read is written back
//   call HOST PORT TOKEN     connects (5 s), sends "TOKEN\n", prints the echoed line;
//                            exit 0 only if the echo is TOKEN (reason on stderr otherwise)
//   hold HOST PORT TOKEN MS  one connection kept open: every MS ms sends "TOKEN i\n" and prints
//                            "ok i" once echoed; prints "closed: <why>" and exits 1 when the
//                            connection fails; exits 0 after 180 s
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

int Serve(const std::vector<int>& ports) {
  std::vector<std::thread> loops;
  for (int port : ports) {
    auto listener = weft::ListenOnAllAddresses(static_cast<uint16_t>(port));
    if (!listener.ok()) {
      std::fprintf(stderr, "%s\n", listener.status().ToString().c_str());
      return 1;
    }
    int s = listener->release();
    std::printf("serving on port %d\n", port);
    loops.emplace_back([s] {
      while (true) {
        int c = ::accept(s, nullptr, nullptr);
        if (c >= 0) std::thread(Echo, c).detach();
      }
    });
  }
  std::fflush(stdout);
  for (auto& t : loops) t.join();
  return 0;
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
  CLI::App* sleep = app.add_subcommand("sleep", "waits forever");
  if (auto rc = weft::ParseFlags(app, argc, argv)) return *rc;
  if (serve->parsed()) return Serve(ports);
  if (call->parsed()) return Call(host.c_str(), port.c_str(), token);
  if (hold->parsed()) return Hold(host.c_str(), port.c_str(), token, interval_ms);
  (void)sleep;
  while (true) ::pause();
}
