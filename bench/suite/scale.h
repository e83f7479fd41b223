// The `scale` scenario of weft-bench-suite (issue 6): ztunnel and weft-agent memory versus the
// number of pods, and ztunnel memory versus the number of idle tunnelled connections (goal:
// at most 4 KiB of ztunnel memory per idle tunnelled connection).
//
// Every mesh is a real `weftctl up` (root): nodes and pods are network namespaces and cgroups of
// this host, pods run `weft-teashop --role idle`. RSS is VmRSS from /proc/<pid>/status of the
// ztunnel and agent pids in the mesh's state.json.
//
// Pods: for each mode and pod count, one mesh with N enrolled pods spread over the nodes; after
// `up` returned (ready) and `settle`, the ztunnels' and agents' RSS summed over the nodes (and
// per node); then `down`.
//
// Idle connections: per mode one mesh with a client pod on node0 and a server pod on node1. An
// echo server (bench/traffic.h EchoServer) listens in the server pod's namespace on kScaleEchoPort;
// `weftctl exec client -- weft-bench-suite client --kind idle --to SERVER:9000 --count N` opens
// and holds N connections (its sockets are made by a task of the client pod, so either capture
// sees them). With all N open at the server, the ztunnels' RSS is read, ztunnel's
// istio_tcp_connections_opened_total is checked to have grown by N on both nodes (the
// connections really were tunnelled), the holder is stopped, and the next count follows.
// bytes_per_connection = (sum of both ztunnels' RSS - baseline) / N; each tunnelled connection
// is held by two ztunnels (outbound on node0, inbound on node1), so the per-ztunnel figure the
// 4 KiB goal is about is half of it (`bytes_per_connection_per_ztunnel`, see "note").
//
// The result is ScaleResult of bench/suite/results.h (the "scale" scenario of results.json): per
// pod count and per idle-connection count the figures summed over the nodes and per node, the
// meshes made, how long each step took, and the errors (a failed mode or step is reported there
// and the scenario goes on).
// File descriptors: RunScale raises its soft RLIMIT_NOFILE (inherited by weftctl, the daemons and
// the holder) and needs at least max(connection_counts) + 1024.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/suite/results.h"

namespace weft::bench::suite {

inline constexpr uint16_t kScaleEchoPort = 9000;

struct ScaleOptions {
  // Executables (absolute paths).
  std::string weftctl;  // weftctl (its ztunnel, weft-agent and weftd are found next to it)
  std::string teashop;  // weft-teashop: the idle pods
  std::string bench;    // weft-bench-suite: its `client --kind idle` holds the connections
  // weftctl --state-root for every mesh (created if missing), and where the manifest dirs and
  // holder logs go (default: state_root).
  std::string state_root;
  std::string work_dir;
  // Mesh names are <name_prefix>-<mode>-p<N> and <name_prefix>-<mode>-conns: the prefix must
  // keep them within 40 of [a-z0-9-] and be unique on the host (e.g. "sc" + pid).
  std::string name_prefix;
  std::vector<std::string> modes = {"ebpf", "iptables"};
  std::vector<int> pod_counts = {10, 50, 100};
  std::vector<int> connection_counts = {1000, 5000, 10000};
  int nodes = 2;
  // After `up` returned ready, before reading RSS.
  std::chrono::milliseconds settle = std::chrono::seconds(2);
  // Per `weftctl up`; a mesh that takes longer is reported as an error and removed.
  std::chrono::seconds up_timeout = std::chrono::seconds(240);
  // Progress lines (one per step); may be empty.
  std::function<void(const std::string&)> log;

  // The --quick sizes: pods {10, 40}, connections {1000, 5000}.
  static ScaleOptions Quick();
};

// Runs the scenario and returns its results. Errors only for unusable options (missing
// executables, bad prefix, not root) or when `stop` became true (Cancelled); every mesh made is
// removed (`weftctl down`) before returning, whatever happened.
absl::StatusOr<ScaleResult> RunScale(const ScaleOptions& o, const std::atomic<bool>& stop);

}  // namespace weft::bench::suite
