// ztunnel: the node's shared data-plane proxy. See docs/architecture.md.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "common/log.h"
#include "ztunnel/app/ztunnel_app.h"

namespace {

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: ztunnel --config FILE --certs DIR [options]       (standalone)\n"
      "       ztunnel --control-plane ADDR --node NAME [options]  (config and certs from weftd)\n"
      "  --config FILE        standalone config (weft.config.v1.ConfigSnapshot as YAML/JSON),\n"
      "                       re-read on change\n"
      "  --certs DIR          workload certificates (layout of `weftctl dev-certs`)\n"
      "  --control-plane ADDR weftd's gRPC address (host:port): config stream and CA\n"
      "  --cp-root FILE       mesh root certificate (PEM): TLS to weftd, checks issued chains\n"
      "  --cp-token FILE      this node's credential for weftd (bootstrap or SA token)\n"
      "  --cp-server-name N   name in weftd's certificate (default weftd.weft-system.svc)\n"
      "  --node NAME          this node's name\n"
      "  --trust-domain-alias TD\n"
      "                       also accept peers from trust domain TD (repeatable)\n"
      "  --inpod-socket PATH  Unix socket where weft-agent hands over pods\n"
      "  --admin ADDR         admin endpoint (default 127.0.0.1:15000)\n"
      "  --metrics ADDR       Prometheus endpoint (default 0.0.0.0:15020)\n"
      "  --readiness ADDR     readiness endpoint (default 0.0.0.0:15021)\n"
      "  --workers N          worker threads (default: one per CPU)\n"
      "  --log-level LEVEL    debug|info|warn|error (default info)\n"
      "  --no-access-log      do not log a line per connection\n"
      "  --no-same-node-fast-path\n"
      "                       send traffic between two pods of this node over HBONE (mTLS)\n"
      "                       too, instead of the in-kernel same-node fast path\n"
      "  --fast-path-pipe-size BYTES\n"
      "                       pipe size per direction of a fast-path connection (default\n"
      "                       262144; 4096..16777216; see docs/fastpath.md)\n");
}

}  // namespace

int main(int argc, char** argv) {
  using weft::SockAddr;
  weft::ztunnel::ZtunnelOptions o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ztunnel: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto addr = [&](SockAddr* out) {
      auto v = next();
      auto p = SockAddr::Parse(v);
      if (!p.ok()) {
        std::fprintf(stderr, "ztunnel: %s: %s\n", a.c_str(),
                     std::string(p.status().message()).c_str());
        std::exit(2);
      }
      *out = *p;
    };
    if (a == "--config") {
      o.config_file = next();
    } else if (a == "--certs") {
      o.certs_dir = next();
    } else if (a == "--trust-domain-alias") {
      o.trust_domain_aliases.push_back(next());
    } else if (a == "--control-plane") {
      o.control_plane.address = next();
    } else if (a == "--cp-root") {
      o.control_plane.root_file = next();
    } else if (a == "--cp-token") {
      o.control_plane.token_file = next();
    } else if (a == "--cp-server-name") {
      o.control_plane.server_name = next();
    } else if (a == "--node") {
      o.node = next();
    } else if (a == "--inpod-socket") {
      o.inpod_socket = next();
    } else if (a == "--admin") {
      addr(&o.admin_addr);
    } else if (a == "--metrics") {
      addr(&o.metrics_addr);
    } else if (a == "--readiness") {
      addr(&o.readiness_addr);
    } else if (a == "--workers") {
      if (!absl::SimpleAtoi(next(), &o.proxy.workers) || o.proxy.workers < 0) {
        std::fprintf(stderr, "ztunnel: --workers wants a number\n");
        return 2;
      }
    } else if (a == "--log-level") {
      weft::log::Level l;
      if (!weft::log::ParseLevel(next(), &l)) {
        std::fprintf(stderr, "ztunnel: --log-level: want debug|info|warn|error\n");
        return 2;
      }
      weft::log::SetLevel(l);
    } else if (a == "--no-access-log") {
      o.proxy.access_log = false;
    } else if (a == "--no-same-node-fast-path") {
      o.proxy.same_node_fast_path = false;
    } else if (a == "--fast-path-pipe-size") {
      uint64_t v = 0;
      if (!absl::SimpleAtoi(next(), &v) || v < 4096 || v > (16u << 20)) {
        std::fprintf(stderr, "ztunnel: --fast-path-pipe-size wants bytes, 4096..16777216\n");
        return 2;
      }
      o.proxy.fast_path_pipe_size = static_cast<size_t>(v);
    } else if (a == "-h" || a == "--help") {
      Usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "ztunnel: unknown argument %s\n", a.c_str());
      Usage(stderr);
      return 2;
    }
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // threads inherit: only sigwait sees them
  signal(SIGPIPE, SIG_IGN);

  weft::ztunnel::ZtunnelApp app(o);
  auto st = app.Start();
  if (!st.ok()) {
    LOG_ERROR("ztunnel", "cannot start", {{"error", st.ToString()}});
    return 1;
  }
  int sig = 0;
  sigwait(&set, &sig);
  LOG_INFO("ztunnel", "shutting down", {{"signal", strsignal(sig)}});
  app.Stop();
  return 0;
}
