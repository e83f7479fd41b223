// `weftctl demo`: the README's tour, run for real on this machine (root). `weftctl demo traffic`
// is its second part (traffic.cc): routes, retries and circuit breaking.
//
// It does what a user would type, printing each command before running it (the weftctl
// subcommands run as child processes of the same binary):
//   weftctl up --nodes N examples/teashop/manifests   a local mesh (cli/up) with the tea shop
//   weftctl exec legacy/client -- curl ...            the shop works in plain TCP (a capture on
//                                                     node0's fabric link shows clear HTTP)
//   weftctl label namespace shop weft.dev/mesh=enabled --wait      enrol the shop, live
//   weftctl exec legacy/client -- weft-teashop --role load ...     traffic for a few seconds,
//   weftctl stat shop                                 golden signals while it runs; meanwhile a
//                                                     capture of the fabric shows only TLS
//   istio_tcp_* from the ztunnels                     SPIFFE principals, mutual_tls
//   weftctl apply -f .../store-deny-except-frontend.yaml --wait
//   weftctl exec shop/cart -- curl http://store...    denied, counted (weft_policy_denials_total),
//                                                     while the front end's checkout still works
//   weftctl down                                      then checks that nothing is left
// Exit 0 only if every check held; otherwise the failed checks are listed and the exit is 1.
// The mesh is always torn down, also on Ctrl-C (except with --keep, which leaves it up until
// Ctrl-C).
#pragma once

#include <iosfwd>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace weft::cli::demo {

struct DemoOptions {
  std::string part;              // "" (the tour) or "traffic" (weftctl demo traffic)
  int nodes = 2;                 // --nodes N (2..8): the shop uses node0 and node1
  std::string capture = "auto";  // --capture auto|ebpf|iptables (weftctl up's)
  bool keep = false;             // --keep: after the checks, leave the mesh up until Ctrl-C
  std::string name = "weft";     // --name: the mesh's name (weftctl up --name)
  std::string state_root;        // --state-root: weftctl up's (default $WEFT_STATE_ROOT, /run/weft)
  std::string manifests;         // --manifests DIR (default: examples/teashop/manifests, found)
  std::string work_dir;          // --work-dir DIR: captures (default: a temp dir)
  double load_seconds = 8;       // --load-duration SEC (3..60): how long the load driver runs
  bool help = false;
};

// Parses the arguments after "demo". InvalidArgument = usage error.
absl::StatusOr<DemoOptions> ParseDemoArgs(const std::vector<std::string>& args);

// A command line as a user would type it: arguments with spaces or shell metacharacters are
// single-quoted.
std::string FormatCommand(const std::vector<std::string>& argv);

// The weftctl flags that select the mesh, only where they differ from the defaults
// (--name NAME unless "weft", --state-root DIR if given).
std::vector<std::string> MeshFlags(const DemoOptions& o);

// What a fabric capture shows about TCP connections, from two tshark field dumps:
//   syns:  "STREAM\tDSTPORT" per SYN without ACK (a connection opened during the capture)
//   https: "STREAM\tSRC\tDST\tMETHOD\tURI" per clear-text HTTP request
// A request on a stream whose SYN is not in the capture belongs to a connection opened before
// the capture started.
struct WireSummary {
  int new_connections = 0;
  std::map<int, int> new_by_port;  // destination port -> connections opened
  int http_on_new = 0;             // clear-text requests on connections opened in the capture
  int http_on_old = 0;             // ... on connections opened before it
  std::set<int> old_http_streams;
  std::vector<std::string> new_http_examples;  // "SRC -> DST METHOD URI", at most 5
};
WireSummary SummarizeWire(const std::string& syns, const std::string& https);

// From the tables `weftctl stat` prints: the rate column of NS/WORKLOAD, `column` "CONN/S"
// (the connection table) or "RPS" (the request table of HTTP workloads); nullopt when the row
// is not in such a table or the tables are the totals form.
std::optional<double> StatRate(const std::string& table, const std::string& ns,
                               const std::string& workload, const std::string& column = "CONN/S");

// Where the tea shop's manifests are: `flag` if given (must be a directory); else
// ./examples/teashop/manifests under `cwd`; else under the source tree this weftctl was built
// from (`source_dir`). NotFound says what to pass.
absl::StatusOr<std::string> FindManifests(const std::string& flag, const std::string& cwd,
                                          const std::string& source_dir);

// The policy file next to the manifests: <manifests>/../policies/store-deny-except-frontend.yaml.
std::string PolicyFile(const std::string& manifests, std::string_view name = {});

// Runs the demo, writing progress to `out` and errors to `err`. Returns the exit code.
int RunDemo(const DemoOptions& opts, std::ostream& out, std::ostream& err);
// `weftctl demo traffic` (traffic.cc): a canary shifted live, retries hiding a flaky back end, a
// circuit breaker protecting an overloaded one, measured from the ztunnels' metrics.
int RunTrafficDemo(const DemoOptions& opts, std::ostream& out, std::ostream& err);

// The CommandFn registered as "demo".
int DemoMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli::demo
