// ztunnel's side of deny at connect (issue 16 §5, docs/security.md "Deny at connect"): keeps
// the agent's pinned weft_connect_deny map equal to CompileConnectDenies() over the current
// config and the eBPF-captured pods this ztunnel holds, recompiled on every config, pod add and
// pod removal (on its own thread, changes coalesced: a pod handover never waits for a compile);
// and exports the per-label BPF counters as
// weft_policy_denials_total{direction="outbound"} (Metrics::SourcePolicyDenials).
//
// Never denies on a doubt: a map that cannot be opened (an agent without it) means no entries;
// entries beyond the map size or the label table are left out (the destination decides those
// connects) and counted in weft_connect_deny_errors_total; a failed write removes every entry.
//
// Thread-safety: every method may be called from any thread (one mutex); Stop() before the
// Metrics object goes away.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bpf/connect_deny.h"
#include "nlohmann/json.hpp"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/rbac/connect_deny.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

class ConnectDenyInstaller {
 public:
  // `enabled` false (--no-deny-at-connect): the map is cleared at the first pod and never
  // written again. `node`: this node's name (Workload::node of its own pods).
  ConnectDenyInstaller(Metrics* metrics, bool enabled, std::string node);
  ~ConnectDenyInstaller();
  // Ends the compile thread (idempotent).
  void Stop();

  // An eBPF-captured pod: its netns cookie and the agent's pin dir. The first pin dir opens the
  // map (its counters are zeroed: label ids are this process's); pods of another pin dir are
  // not compiled for (one agent per node).
  void AddPod(const std::string& uid, uint64_t netns_cookie, const std::string& pin_dir);
  void RemovePod(const std::string& uid);
  void OnConfig(SnapshotPtr snap);
  // Stops writing the map (a successor ztunnel owns it now); entries stay.
  void Detach();

  // Adds what the BPF counters counted since the last call to the metric. Called before each
  // scrape.
  void ExportCounts();

  // For the admin config dump: enabled, pin dir, entries, labels, last error.
  nlohmann::json Dump() const;

 private:
  void RecompileLocked();
  void Loop();
  void MarkDirtyLocked();

  Metrics* metrics_;
  const bool enabled_;
  const std::string node_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool dirty_ = false;
  bool stopping_ = false;
  std::thread thread_;
  bool detached_ = false;
  SnapshotPtr snap_;
  std::map<std::string, DenySource> pods_;  // uid -> source
  std::string pin_dir_;
  std::unique_ptr<bpf::ConnectDenyMap> map_;
  bool open_failed_ = false;
  // Label (policy, reason) <-> counter slot; never reused within the process.
  std::map<std::pair<std::string, std::string>, uint32_t> label_ids_;
  std::vector<std::pair<std::string, std::string>> labels_;
  std::vector<uint64_t> exported_;  // per slot: what the metric already has
  size_t entries_ = 0;
  std::string last_error_;
};

}  // namespace weft::ztunnel
