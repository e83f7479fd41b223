// `weftctl demo`: the README's five-minute tour, run for real on this machine (root).
//
// Builds a local mesh (cli/localmesh: nodes and pods as network namespaces, one ztunnel and one
// weft-agent per node as real processes), opens a small tea shop on it (frontend, catalogue,
// cart in namespace shop, and a legacy pod outside the mesh), drives traffic, captures the node
// fabric to show that only TLS crosses it, prints the Istio TCP metrics and the peer identities,
// applies a DENY AuthorizationPolicy and shows it take effect, then tears everything down.
// Exit 0 only if every check held; otherwise the failed checks are listed and the exit is 1.
#pragma once

#include "common/scrape/scrape.h"

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace weft::cli::demo {

struct DemoOptions {
  int nodes = 2;         // --nodes N (2..8): the shop uses nodes 0 and 1, the rest stay empty
  bool keep = false;     // --keep: after the checks, leave the mesh up until Ctrl-C
  std::string work_dir;  // --work-dir DIR: certs, mesh.yaml, logs, captures (default: a temp dir)
  bool help = false;
};

// Parses the arguments after "demo". InvalidArgument = usage error.
absl::StatusOr<DemoOptions> ParseDemoArgs(const std::vector<std::string>& args);

struct DemoBinaries {
  std::string ztunnel;
  std::string agent;
};

// Finds the ztunnel and weft-agent executables, first match wins:
//   1. $WEFT_ZTUNNEL_BIN / $WEFT_AGENT_BIN (each on its own),
//   2. $WEFT_BIN_DIR/ztunnel and $WEFT_BIN_DIR/weft-agent,
//   3. the build tree weftctl runs from (<build>/cli/weftctl): <build>/ztunnel/app/ztunnel and
//      <build>/agent/weft-agent,
//   4. next to weftctl (an install with all three in one bin directory).
// `self_exe` is weftctl's own path (normally /proc/self/exe resolved). NotFound lists the places
// looked at and how to point weftctl at the binaries.
absl::StatusOr<DemoBinaries> FindDemoBinaries(const std::string& self_exe);

// One sample of Prometheus text exposition (as prometheus-cpp writes it).
using weft::MetricSample;  // common/scrape
using weft::ParseSamples;  // common/scrape

// Runs the demo, writing progress to `out` and errors to `err`. Returns the exit code.
int RunDemo(const DemoOptions& opts, std::ostream& out, std::ostream& err);

// The CommandFn registered as "demo".
int DemoMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli::demo
