// weft-up-testapp: a tiny app for the local-mesh tests, run as a pod's process or through
// `weftctl exec`.
//   serve PORT        TCP server on every address: answers each connection with
//                     "hello from <hostname>\n" and closes it
//   call HOST PORT    resolves HOST (the pod's /etc/hosts), connects, prints the answer;
//                     exit 0 with a non-empty answer, 1 otherwise (reason on stderr)
//   sleep             waits forever
//   exit-after MS     exits with status 3 after MS milliseconds (restart tests)
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli/flags.h"

namespace {

int Serve(int port) {
  int s = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (s < 0) return std::perror("socket"), 1;
  int on = 1, off = 0;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<uint16_t>(port));
  a.sin6_addr = in6addr_any;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return std::perror("bind"), 1;
  if (::listen(s, 128) != 0) return std::perror("listen"), 1;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string reply = std::string("hello from ") + host + "\n";
  std::printf("serving on port %d as %s\n", port, host);
  std::fflush(stdout);
  while (true) {
    int c = ::accept(s, nullptr, nullptr);
    if (c < 0) continue;
    ssize_t n = ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
    (void)n;
    ::close(c);
  }
}

int Call(const char* host, const char* port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_INET;
  int rc = ::getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    std::fprintf(stderr, "resolve %s: %s\n", host, gai_strerror(rc));
    return 1;
  }
  int s = ::socket(res->ai_family, SOCK_STREAM, 0);
  timeval tv{5, 0};
  ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(s, res->ai_addr, res->ai_addrlen) != 0) {
    std::fprintf(stderr, "connect %s:%s: %s\n", host, port, std::strerror(errno));
    return 1;
  }
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(s, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
  if (got.empty()) {
    std::fprintf(stderr, "no answer from %s:%s (%s)\n", host, port,
                 n < 0 ? std::strerror(errno) : "closed");
    return 1;
  }
  std::fputs(got.c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "A tiny app for the local-mesh tests, run as a pod's process or through weftctl exec.",
      "weft-up-testapp"};
  app.require_subcommand(1);
  int port = 0, ms = 0;
  std::string host, call_port;
  CLI::App* serve =
      app.add_subcommand("serve",
                         "TCP server on every address: answers each connection with \"hello from "
                         "<hostname>\\n\" and closes it");
  serve->add_option("PORT", port)->required();
  CLI::App* call = app.add_subcommand(
      "call",
      "resolves HOST (the pod's /etc/hosts), connects, prints the answer; exit 0 with a "
      "non-empty answer, 1 otherwise");
  call->add_option("HOST", host)->required();
  call->add_option("PORT", call_port)->required();
  CLI::App* sleep = app.add_subcommand("sleep", "waits forever");
  CLI::App* exit_after =
      app.add_subcommand("exit-after", "exits with status 3 after MS milliseconds");
  exit_after->add_option("MS", ms)->required();
  if (absl::Status st = weft::flags::Parse(app, std::vector<std::string>(argv + 1, argv + argc));
      !st.ok()) {
    if (absl::IsCancelled(st)) return std::fputs(app.help().c_str(), stdout), 0;
    std::fprintf(stderr, "weft-up-testapp: %s\nRun 'weft-up-testapp --help'.\n",
                 std::string(st.message()).c_str());
    return 2;
  }
  if (serve->parsed()) return Serve(port);
  if (call->parsed()) return Call(host.c_str(), call_port.c_str());
  if (sleep->parsed()) {
    while (true) ::pause();
  }
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  std::puts("exiting with status 3");
  return 3;
}
