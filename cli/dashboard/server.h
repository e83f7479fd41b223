// `weftctl dashboard`'s server: a collector thread reads the mesh (MeshSource) every interval
// and prepares the JSON documents (api.h); the admin server code (common/admin, Boost.Beast)
// serves them and the page's static files. A request never waits on the mesh: it gets the last
// prepared document, or the error that prevented it (HTTP 503, {"error": ...}).
//
// Endpoints (GET):
//   /                 the page (index.html and its files from the web root)
//   /api/meta         the source, the window, when the last reading was taken, the errors
//   /api/overview     namespaces, pods and their enrolment, nodes   (needs weftd)
//   /api/graph        the service graph, workloads and Services, over the window (metrics)
//   /api/signals      golden signals per workload, Service and edge  (needs metrics)
//   /api/series?since=UNIX   per workload, Service and edge: [t, rate, success, p50, p95,
//                            p99] points over the last minutes (rate: rps for HTTP, conn/s
//                            for TCP)
//   /api/health       policies per workload, routes and traffic policies per Service,
//                     rejected objects, certificates, config versions
//   /api/tap?since=N  the requests seen since event N ({"next": N', "events": [...]}); the
//                     collector reads the ztunnels' taps only while someone asked within 30 s
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "cli/dashboard/sources.h"
#include "common/admin/admin_server.h"
#include "common/net.h"

namespace weft::cli::dashboard {

struct DashboardOptions {
  std::unique_ptr<MeshSource> source;
  SockAddr listen;                           // port 0: a free port
  std::string web_root;                      // the built page (index.html); "" = API only
  double window_seconds = 10;                // golden signals and graph rates over this window
  std::chrono::milliseconds interval{2000};  // between readings
  double history_seconds = 600;              // time series kept
};

class Dashboard {
 public:
  explicit Dashboard(DashboardOptions opts);
  ~Dashboard();  // stops
  // Takes a first reading, then serves and keeps reading on a thread of its own.
  absl::Status Start();
  void Stop();
  SockAddr addr() const;
  // One reading now (tests drive the collector with it instead of Start).
  void CollectOnce();
  // The answer to GET `path` (what the HTTP server sends).
  HttpReply Handle(const std::string& path, const std::map<std::string, std::string>& params);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Where the built page is: `flag` if given, else $WEFT_DASHBOARD_WEB, else the build tree's
// (a CMake-configured path), else <dir of weftctl>/../share/weft/dashboard. An error says how to
// build it when no candidate has an index.html.
absl::StatusOr<std::string> FindWebRoot(const std::string& flag);

}  // namespace weft::cli::dashboard
