// The soak scenario (issue 13, "Soak"): a `weftctl up` mesh (testdata/mesh.yaml, 2 nodes) under
// steady load for a fixed time while it is churned, then checked:
//   load   four streams (weft-soak load in the client pods, through `weftctl exec`) at --rate each:
//          client-a -> echo (same-node and cross-node endpoints), client-b -> moving (its
//          EndpointSlice is churned), churner -> echo (the pod unenrolled and re-enrolled),
//          denied -> echo (the identity the churn's DENY policy refuses);
//   churn  once during warm-up: node0's ztunnel and node1's agent SIGKILLed (the supervisor
//          restarts them); then in a loop until the last stretch: the DENY applied and removed,
//          moving's endpoints moved and scaled 1 -> 2 -> 1, churner unenrolled and re-enrolled;
//   sample every --sample-interval: RSS and open fds of weftd, the supervisor, each ztunnel and
//          agent; each ztunnel's weft_active_connections / weft_hbone_pool_* gauges;
//   assert errors beyond those the churn explains (DENY windows on the denied stream, the
//          ztunnel restart) <= --max-unexplained-errors; the least-squares slope of every
//          process's RSS and fds after warm-up (the first --warmup-fraction of the run, or until
//          the restarts settled) within --max-rss-slope / --max-fd-slope, no unexpected restart;
//          the connection gauges back to 0 once the load stops; after `weftctl down`: no netns,
//          cgroup or bpffs pin with the mesh's prefix, no process of the mesh, no Weft iptables
//          rule added to the host's tables, no state file.
// A summary goes to stdout, the figures to --json. Exit 0 when every check held, 1 otherwise,
// 77 when not root (the ctest registration skips on it).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace weft::soak {

struct Options {
  std::chrono::milliseconds duration = std::chrono::minutes(20);
  std::string name;      // "" = soak<pid>
  std::string json_out;  // "" = none
  std::string weftctl;
  std::string testdata;  // tests/soak/testdata
  std::string capture = "auto";
  std::string work_dir;  // "" = a fresh /tmp/weft-soak-XXXXXX (removed on success unless keep)
  bool keep = false;
  std::chrono::milliseconds sample_interval = std::chrono::seconds(2);
  double rate = 20;  // requests/s per stream
  int users = 2;     // keep-alive users per stream
  double warmup_fraction = 0.2;
  double max_rss_kib_per_min = 256;
  double max_fds_per_min = 1;
  uint64_t max_unexplained_errors = 0;
  std::chrono::milliseconds flow_timeout = std::chrono::seconds(30);
};

// Runs the whole scenario; returns the exit code (0 pass, 1 fail, 77 skipped: not root).
int RunSoak(const Options& o);

}  // namespace weft::soak
