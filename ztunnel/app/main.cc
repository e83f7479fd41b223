// ztunnel: the node's shared data-plane proxy. See docs/architecture.md.
#include <cstring>
#include <limits>
#include <string>

#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "ztunnel/app/ztunnel_app.h"
#include "ztunnel/xds/endpoint_flags.h"

namespace {

void AddFlags(CLI::App& app, weft::ztunnel::ZtunnelOptions& o) {
  weft::SetUsage(app,
                 "ztunnel --config FILE --certs DIR [options]       (standalone)\n"
                 "       ztunnel --control-plane ADDR --node NAME [options]  (config and certs "
                 "from weftd)");
  app.add_option("--config", o.config_file,
                 "standalone config (weft.config.v1.ConfigSnapshot as YAML/JSON), re-read on "
                 "change")
      ->type_name("FILE");
  app.add_option("--certs", o.certs_dir, "workload certificates (layout of `weftctl dev-certs`)")
      ->type_name("DIR");
  weft::ztunnel::AddControlPlaneFlags(app, &o.control_plane);
  app.add_option("--node", o.node, "this node's name")->type_name("NAME");
  app.add_option("--trust-domain-alias", o.trust_domain_aliases,
                 "also accept peers from trust domain TD (repeatable)")
      ->type_name("TD");
  app.add_option("--inpod-socket", o.inpod_socket, "Unix socket where weft-agent hands over pods")
      ->type_name("PATH");
  weft::AddSockAddrFlag(app, "--admin", &o.admin_addr, "admin endpoint");
  weft::AddSockAddrFlag(app, "--metrics", &o.metrics_addr, "Prometheus endpoint");
  weft::AddSockAddrFlag(app, "--readiness", &o.readiness_addr, "readiness endpoint");
  app.add_option("--workers", o.proxy.workers, "worker threads (default: one per CPU)")
      ->type_name("N")
      ->check(CLI::Range(0, std::numeric_limits<int>::max()).description(""));
  weft::AddLogLevelFlag(app);
  app.add_flag_callback(
      "--no-access-log", [&o] { o.proxy.access_log = false; }, "do not log a line per connection");
  app.add_flag_callback(
      "--no-same-node-fast-path", [&o] { o.proxy.same_node_fast_path = false; },
      "send traffic between two pods of this node over HBONE (mTLS) too, instead of the "
      "in-kernel same-node fast path");
  app.add_option("--fast-path-pipe-size", o.proxy.fast_path_pipe_size,
                 "pipe size per direction of a fast-path connection (4096..16777216; see "
                 "docs/fastpath.md)")
      ->type_name("BYTES")
      ->capture_default_str()
      ->check(CLI::Range(size_t{4096}, size_t{16} << 20).description(""));
}

}  // namespace

int main(int argc, char** argv) {
  weft::ztunnel::ZtunnelOptions o;
  CLI::App app("ztunnel: the node's shared data-plane proxy", "ztunnel");
  AddFlags(app, o);
  if (auto code = weft::ParseFlags(app, argc, argv)) return *code;
  weft::BlockTerminationSignals();  // threads inherit the mask: only sigwait sees the signals

  weft::ztunnel::ZtunnelApp zt(o);
  auto st = zt.Start();
  if (!st.ok()) {
    LOG_ERROR("ztunnel", "cannot start", {{"error", st.ToString()}});
    return 1;
  }
  int sig = weft::WaitForTerminationSignal();
  LOG_INFO("ztunnel", "shutting down", {{"signal", strsignal(sig)}});
  zt.Stop();
  return 0;
}
