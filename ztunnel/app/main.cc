// ztunnel: the node's shared data-plane proxy. See docs/architecture.md.
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "ztunnel/app/ztunnel_app.h"
#include "ztunnel/xds/endpoint_flags.h"

namespace {

// 15008's resource limits (ztunnel/proxy/limits.h explains the defaults).
void AddHboneLimitFlags(CLI::App& app, weft::ztunnel::ProxyOptions& p) {
  auto& l = p.hbone_limits;
  const auto positive = CLI::Range(1u, std::numeric_limits<uint32_t>::max()).description("");
  app.add_option("--hbone-max-handshaking", l.max_handshaking,
                 "inbound HBONE connections in the TLS handshake, in total")
      ->type_name("N")
      ->capture_default_str()
      ->check(positive);
  app.add_option("--hbone-max-handshaking-per-source", l.max_handshaking_per_source,
                 "inbound HBONE connections in the TLS handshake, per source IP")
      ->type_name("N")
      ->capture_default_str()
      ->check(positive);
  app.add_option("--hbone-max-established", l.max_established,
                 "established inbound HBONE connections, in total")
      ->type_name("N")
      ->capture_default_str()
      ->check(positive);
  app.add_option("--hbone-max-established-per-source", l.max_established_per_source,
                 "established inbound HBONE connections, per source IP")
      ->type_name("N")
      ->capture_default_str()
      ->check(positive);
  app.add_option("--hbone-buffer-budget", l.buffer_budget,
                 "bytes received over HBONE and not yet read by applications, in total; over it, "
                 "connections holding such bytes are not read (back-pressure)")
      ->type_name("BYTES")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1} << 20, size_t{1} << 40).description(""));
  app.add_option("--hbone-connection-window", p.connection_window,
                 "HTTP/2 connection receive window: unread bytes one HBONE connection may send")
      ->type_name("BYTES")
      ->capture_default_str()
      ->check(CLI::Range(65535, std::numeric_limits<int32_t>::max()).description(""));
  app.add_option_function<int>(
         "--hbone-handshake-timeout-ms",
         [&p](int ms) { p.handshake_timeout = std::chrono::milliseconds(ms); },
         "TLS handshake timeout of HBONE connections (default 5000)")
      ->type_name("MS")
      ->check(CLI::Range(100, 600000).description(""));
}

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
  app.add_flag_callback(
      "--no-deny-at-connect", [&o] { o.deny_at_connect = false; },
      "never fail a pod's connect() at the source: every connect goes to the destination to be "
      "authorized there, including those its policy certainly denies (docs/security.md, "
      "\"Deny at connect\")");
  app.add_flag_callback(
      "--no-local-legs", [&o] { o.proxy.local_legs = false; },
      "eBPF capture: keep loopback TCP between apps and ztunnel even when weft-agent runs "
      "--local-legs on (docs/fastpath.md)");
  using Relay = weft::ztunnel::ProxyOptions::SameNodeRelay;
  app.add_option("--same-node-relay", o.proxy.same_node_relay,
                 "how the same-node fast path moves bytes: sockmap (in the kernel, no ztunnel "
                 "wake-up per message), splice, or auto (sockmap where this kernel passes its "
                 "self-test at start, and a bulk flow the relay falls behind continues with "
                 "splice; docs/fastpath.md); env WEFT_SAME_NODE_RELAY")
      ->transform(CLI::CheckedTransformer(std::map<std::string, Relay>{{"auto", Relay::kAuto},
                                                                       {"sockmap", Relay::kSockmap},
                                                                       {"splice", Relay::kSplice}},
                                          CLI::ignore_case)
                      .description(""))
      ->type_name("auto|sockmap|splice")
      ->envname("WEFT_SAME_NODE_RELAY")  // so a whole mesh (bench/run.sh) can be switched
      ->default_str("auto");
  AddHboneLimitFlags(app, o.proxy);
  weft::AddDurationFlag(app, "--http-request-headers-timeout", &o.proxy.request_headers_timeout,
                        "L7: a request head must be complete this long after its first byte, or "
                        "the client gets 408 and is closed (default 10s)");
  weft::AddDurationFlag(app, "--http-idle-timeout", &o.proxy.http_idle_timeout,
                        "L7: close an HTTP connection with no request in flight and no bytes "
                        "either way for this long (default 1h)");
  weft::AddDurationFlag(app, "--drain-deadline", &o.drain_deadline,
                        "after a new ztunnel took the listeners over (hitless upgrade): how long "
                        "open connections may go on before they are closed (default 30s)");
  weft::AddDurationFlag(app, "--takeover-drain-deadline", &o.takeover_drain_deadline,
                        "when taking over from a running ztunnel: how long it drains (default: "
                        "its own --drain-deadline)");
  app.add_flag_callback(
      "--no-takeover", [&o] { o.takeover = false; },
      "do not take the listeners over from a ztunnel running at <--inpod-socket>.takeover");
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
  if (zt.Retiring()) {
    // Replaced (or being replaced) by a new ztunnel: open connections drain first (up to the
    // drain deadline, counted from the handover); a second signal stops at once.
    LOG_INFO("ztunnel", "replaced by a new ztunnel; exiting once drained",
             {{"signal", strsignal(sig)}});
    while (!zt.Drained()) {
      if (auto again = weft::WaitForTerminationSignal(std::chrono::milliseconds(100))) {
        LOG_INFO("ztunnel", "second signal: closing what is left now",
                 {{"signal", strsignal(*again)}});
        break;
      }
    }
  }
  LOG_INFO("ztunnel", "shutting down", {{"signal", strsignal(sig)}});
  zt.Stop();
  return 0;
}
