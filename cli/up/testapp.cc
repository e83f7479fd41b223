// weft-up-testapp: a tiny app for the local-mesh tests, run as a pod's process or through
// `weftctl exec`.
//   serve PORT        TCP server on every address: answers each connection with
//                     "hello from <hostname>\n" and closes it
//   call HOST PORT    resolves HOST (the pod's /etc/hosts), connects, prints the answer;
//                     exit 0 with a non-empty answer, 1 otherwise (reason on stderr)
//   sleep             waits forever
//   exit-after MS     exits with status 3 after MS milliseconds (restart tests)
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/flags.h"
#include "common/net.h"

namespace {

int Serve(int port) {
  auto listener = weft::ListenOnAllAddresses(static_cast<uint16_t>(port));
  if (!listener.ok()) return std::fprintf(stderr, "%s\n", listener.status().ToString().c_str()), 1;
  int s = listener->get();
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
  auto conn = weft::DialTcp(host, port, std::chrono::seconds(5));
  if (!conn.ok()) return std::fprintf(stderr, "%s\n", conn.status().ToString().c_str()), 1;
  int s = conn->get();
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
  if (auto rc = weft::ParseFlags(app, argc, argv)) return *rc;
  if (serve->parsed()) return Serve(port);
  if (call->parsed()) return Call(host.c_str(), call_port.c_str());
  if (sleep->parsed()) {
    while (true) ::pause();
  }
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  std::puts("exiting with status 3");
  return 3;
}
