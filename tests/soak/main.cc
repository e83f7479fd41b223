// weft-soak: the soak scenario of issue 13 on a `weftctl up` mesh (see soak.h), and its load
// stream (`weft-soak load`, see load.h), which the scenario runs inside the client pods.
#include <cstring>
#include <string>

#include "absl/time/time.h"
#include "common/flags.h"
#include "tests/soak/load.h"
#include "tests/soak/soak.h"

namespace {

using std::chrono::milliseconds;

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "load") == 0)
    return weft::soak::LoadMain(argc - 1, argv + 1);
  weft::soak::Options o;
  o.weftctl = WEFTCTL_PATH;
  o.testdata = WEFT_SOAK_TESTDATA;
  CLI::App app{
      "The soak scenario (issue 13): a weftctl up mesh under steady load and churn (pods "
      "unenrolled and re-enrolled, a DENY policy applied and removed, a Service's endpoints moved "
      "and scaled, ztunnel and the agent restarted once each) for --duration; then checks that "
      "no error went unexplained, RSS and open fds of weftd, ztunnel, the agent and the "
      "supervisor stayed flat after warm-up, no flow leaked and nothing is left after down. "
      "Root. Exit 0 pass, 1 fail, 77 skipped (not root).",
      "weft-soak"};
  weft::SetUsage(app, "weft-soak [--duration 20m] [--name NAME] [--json OUT] [options]");
  weft::AddDurationFlag(app, "--duration", &o.duration,
                        "how long the load and churn run (default 20m)");
  app.add_option("--name", o.name, "mesh name (default soak<pid>)");
  app.add_option("--json", o.json_out, "write the figures and checks as JSON");
  app.add_option("--weftctl", o.weftctl, "weftctl binary")->capture_default_str();
  app.add_option("--testdata", o.testdata, "the mesh and policy manifests")->capture_default_str();
  app.add_option("--capture", o.capture, "ebpf|iptables|auto")->capture_default_str();
  app.add_option("--work-dir", o.work_dir, "logs and state (default: a new /tmp/weft-soak-*)");
  app.add_flag("--keep", o.keep, "keep the work dir after a passing run");
  weft::AddDurationFlag(app, "--sample-interval", &o.sample_interval,
                        "RSS/fd/gauge sampling (default 2s)");
  app.add_option("--rate", o.rate, "requests/s per stream (4 streams)")->capture_default_str();
  app.add_option("--users", o.users, "keep-alive users per stream")->capture_default_str();
  app.add_option("--warmup-fraction", o.warmup_fraction, "share of the run before slopes count")
      ->capture_default_str();
  app.add_option("--max-rss-slope", o.max_rss_kib_per_min, "KiB/min, per process")
      ->capture_default_str();
  app.add_option("--max-fd-slope", o.max_fds_per_min, "open fds/min, per process (absolute)")
      ->capture_default_str();
  app.add_option("--max-unexplained-errors", o.max_unexplained_errors,
                 "failed requests no churn explains")
      ->capture_default_str();
  weft::AddDurationFlag(app, "--flow-timeout", &o.flow_timeout,
                        "how long the connection gauges may take to reach 0 (default 30s)");
  if (auto rc = weft::ParseFlags(app, argc, argv)) return *rc;
  return weft::soak::RunSoak(o);
}
