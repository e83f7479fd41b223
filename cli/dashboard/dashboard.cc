#include "cli/dashboard/dashboard.h"

#include <chrono>
#include <memory>
#include <ostream>
#include <set>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/dashboard/server.h"
#include "cli/mesh_ref.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"

namespace weft::cli::dashboard {
namespace {

struct Flags {
  MeshRef mesh;
  std::string address = "127.0.0.1";
  int port = 0;
  std::string prometheus;
  std::string weftd = "127.0.0.1:15000";
  std::string web_root;
  std::chrono::milliseconds window{0};  // 0: 10 s local, 60 s with Prometheus
  std::chrono::milliseconds interval{2000};
  std::chrono::milliseconds timeout{3000};
};

std::unique_ptr<CLI::App> App(Flags& f) {
  auto app = std::make_unique<CLI::App>(
      "The mesh in a browser: namespaces and pods in and out of the mesh (and why), a live\n"
      "service graph (edges coloured by mTLS / same-node / plaintext, with rates and denials),\n"
      "golden signals per workload and edge (the numbers weftctl stat prints), policies and\n"
      "health (rejected objects, certificates, config versions), live requests (weftctl tap).\n"
      "On a weftctl up mesh it reads weftd and the ztunnels directly; against a cluster it\n"
      "reads a Prometheus server (--prometheus) and weftd's admin API (--weftd). Read-only;\n"
      "prints its URL and serves until Ctrl-C.",
      "weftctl dashboard");
  AddMeshRefFlags(*app, &f.mesh);
  app->add_option("--address", f.address, "address to serve on (default 127.0.0.1)");
  app->add_option("--port", f.port, "port to serve on (default 0: a free port, printed)")
      ->check(CLI::Range(0, 65535));
  app->add_option("--prometheus", f.prometheus,
                  "read the ztunnels' metrics from this Prometheus server (http://HOST:PORT)");
  app->add_option("--weftd", f.weftd,
                  "weftd's admin endpoint with --prometheus (default 127.0.0.1:15000)");
  app->add_option("--web-root", f.web_root, "the built page (default: found beside weftctl)");
  AddDurationFlag(*app, "--window", &f.window,
                  "rates and latencies over this window (default 10s; 60s with --prometheus)");
  AddDurationFlag(*app, "--interval", &f.interval, "read the mesh this often (default 2s)");
  AddDurationFlag(*app, "--timeout", &f.timeout,
                  "give up on weftd, a ztunnel or Prometheus after this long (default 3s)");
  return app;
}

}  // namespace

int DashboardMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  if (auto rc = ParseCommand(*App(f), args, out, err)) return *rc;
  auto web_root = FindWebRoot(f.web_root);
  if (!web_root.ok()) {
    err << "weftctl dashboard: " << web_root.status().message() << "\n";
    return kExitFailure;
  }
  auto ip = IpAddr::Parse(f.address);
  if (!ip.ok()) {
    err << "weftctl dashboard: --address \"" << f.address << "\" is not an IP address\n";
    return kExitUsage;
  }
  DashboardOptions o;
  o.listen = SockAddr{*ip, static_cast<uint16_t>(f.port)};
  o.web_root = *web_root;
  o.interval = std::max(f.interval, std::chrono::milliseconds(200));
  const bool prom = !f.prometheus.empty();
  o.window_seconds = f.window.count() > 0 ? f.window.count() / 1000.0 : (prom ? 60.0 : 10.0);
  o.source = prom ? PrometheusSource(f.prometheus, f.weftd, f.timeout.count())
                  : LocalSource(f.mesh, f.timeout.count());
  BlockTerminationSignals();
  // A terminal command: the server's start-up log line would only hide the URL.
  if (log::GetLevel() < log::Level::kWarn) log::SetLevel(log::Level::kWarn);
  Dashboard d(std::move(o));
  if (absl::Status st = d.Start(); !st.ok()) {
    err << "weftctl dashboard: " << st.message() << "\n";
    return kExitFailure;
  }
  out << "weftctl dashboard: http://" << d.addr().ToString() << "/ (Ctrl-C to stop)" << std::endl;
  auto meta = nlohmann::json::parse(d.Handle("/api/meta", {}).body);
  std::set<std::string> said;
  for (const auto& e : meta.value("errors", nlohmann::json::array())) {
    if (said.insert(e.value("error", "")).second) {
      err << "weftctl dashboard: warning: " << e.value("error", "") << " (the page shows it)\n";
    }
  }
  WaitForTerminationSignal();
  d.Stop();
  return kExitOk;
}

}  // namespace weft::cli::dashboard
