// weft-bench-suite: the benchmark suite of issue 6. Weft against no mesh, against itself with
// iptables capture and against a sidecar mesh built from real proxies, on the scenarios of the
// published anchors (a TeaStore thesis, Istio's fortio method) plus throughput, connection churn,
// the data path below HTTP (ping-pong latency, connection rate, BPF run time) and scale. Results:
// results.json (schema in results.h), report.md and PNG plots (report.h).
//
// Environments. One `weftctl up` local mesh per mode, all up for the whole run (2 nodes each,
// the tea shop of examples/teashop plus the suite's pods: `load` on node0, where every client
// runs; `echo` on node1, the fortio-like server; `iperf-local` on node0 and `iperf-remote` on
// node1, iperf3 servers):
//   bare      namespace shop not enrolled: plain routing, no proxy anywhere
//   ebpf      `--capture ebpf`, shop enrolled (weftctl label ... --wait)
//   iptables  `--capture iptables`, shop enrolled
//   sidecar   shop not enrolled; one HAProxy per pod doing mTLS, in-pod iptables capture
//             (bench/sidecar: the architecture of Istio's sidecar mode and Linkerd), mode tcp
//   sidecar-http  the same with HAProxy in mode http on every port declared HTTP (the fair
//             analog of Istio's sidecars, which always parse HTTP); seed and istio only
// The istio scenario runs each Weft mode twice: against a Service declared TCP (run key
// "<mode>", Weft L4) and one declared HTTP ("<mode>-l7"), over HTTP/1.1 and gRPC (h2c).
// Every client is a process in the `load` pod (`weftctl exec`: its netns, cgroup and hosts
// file), the same way in every mode; after each meshed run the suite checks that the traffic
// really went through the mesh (ztunnel's or the sidecar's connection counters), else the run
// is an error rather than a bare figure reported as a meshed one.
//
// Interleaving. Within every step (a users count, a connections case, a pair/streams case, a
// churn rate) the modes run one after the other, so slow drift of the machine hits all alike.
//
// Accounting per run (bench/accounting.h): group "apps" = every pod's process and descendants
// except the load pod's; group "mesh" = ztunnels, agents and weftd (Weft modes) or the HAProxy
// sidecars (sidecar mode; the load pod's own sidecar included, as a meshed client has one);
// host CPU from /proc/stat (softirq included: kernel work an eBPF mesh does lands there).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/suite/results.h"

namespace weft::bench::suite {

struct Options {
  std::vector<std::string> modes = {"bare", "ebpf", "iptables", "sidecar", "sidecar-http"};
  std::vector<std::string> scenarios = {"seed",  "istio",     "throughput",
                                        "churn", "dataplane", "scale"};
  bool quick = false;

  // seed: users x rate_per_user, the tea shop's 8 request types, keep-alive per user.
  std::vector<int> seed_users;  // default: 5 10 20 30 40 (quick: 5 20 40)
  double rate_per_user = 5;
  int seed_warmup_seconds = 0;    // default 5 (quick 2)
  int seed_duration_seconds = 0;  // default 30 (quick 8)
  // istio: POST of payload_bytes to the echo server (node1) from the load pod (node0), echoed.
  std::vector<int> istio_connections;  // default: 4 64 (quick: 64)
  // http1 and/or grpc (unary gRPC calls over h2c to weft-h2echo); each protocol x connections
  // is a case; Weft modes run against the Service declared TCP and declared HTTP ("-l7").
  std::vector<std::string> istio_protocols = {"http1", "grpc"};
  double istio_rps = 1000;
  int payload_bytes = 1024;
  int istio_warmup_seconds = 0;    // default 5 (quick 2)
  int istio_duration_seconds = 0;  // default 30 (quick 8)
  // throughput: iperf3 from the load pod to iperf-local (same node) / iperf-remote (cross node).
  std::vector<int> iperf_streams = {1, 8};
  int iperf_seconds = 0;  // default 10 (quick 4)
  // churn: a new connection per request (HTTP/1.1, Connection: close) to the echo server at
  // rising rates until the mode saturates.
  // Steps of 500/s up to 4,000 and no coarser than a third above, so "max sustained" is within
  // one small step of the real figure; up to 16,000, above what bare reaches here.
  std::vector<double> churn_rates;  // default 250 500 1000 1500 ... 4000 5000 6000 7000 8000
                                    // 10000 12000 16000 (quick: 1000 2000 2500 ... 12000)
  int churn_users = 32;
  // Load generator threads (weft-loadgen --threads), the same in every mode: one thread topped
  // out near bare's figure on this machine, which would make bare's the generator's ceiling.
  int churn_threads = 2;
  int churn_seconds = 0;  // default 10 (quick 4)
  // dataplane (results.h DataplaneResult): `client --kind pingpong` (1 KiB round trips on one
  // connection) and `--kind connect` (sequential connections) from the load pod to the suite's
  // echo servers in iperf-local (same node) and echo (cross node); BPF program run time.
  int dataplane_round_trips = 0;      // default 20000 (quick 5000)
  int dataplane_connect_seconds = 0;  // default 5 (quick 2)
  // scale: bench/suite/scale.h
  std::vector<int> scale_pods;         // default: RunScale's
  std::vector<int> scale_connections;  // default: RunScale's

  std::string out_dir;   // results.json, report.md, plots ("" = nowhere)
  std::string work_dir;  // manifests, state, logs ("" = a fresh /tmp/weft-bench-suite.XXXXXX)
  bool keep_work_dir = false;
  std::string log_level = "warn";  // weftctl up --log-level

  // Binaries and inputs; "" = found next to weft-bench-suite in the build tree, then PATH.
  std::string weftctl, loadgen, teashop, teashop_manifests, h2echo;
  std::string self;  // this binary (set by Run): its `client` subcommand runs in pods

  std::string command_line, invoked_as, revision;
  bool help = false;

  void ApplyDefaults();
};

std::string Usage();
absl::StatusOr<Options> ParseArgs(int argc, char** argv);

// Runs every scenario asked for and returns the results document (results.h). Progress goes to
// stderr. A failed run is recorded in the document (its `error`, `errors`) and the suite goes on;
// an error is returned only when no environment could be set up, or CancelledError once `stop`
// is set (everything started is torn down first).
absl::StatusOr<SuiteResults> Run(const Options& opts, const std::atomic<bool>& stop);

}  // namespace weft::bench::suite
