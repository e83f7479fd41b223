// BPF program run time for the suite's dataplane scenario: the kernel's per-program run_time_ns /
// run_cnt (struct bpf_prog_info), which it only accounts while the sysctl kernel.bpf_stats_enabled
// is 1.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace weft::bench {

// Sets kernel.bpf_stats_enabled to 1 for its lifetime and writes the previous value back when
// destroyed (also the path taken on SIGINT/SIGTERM, which make the benchmark unwind). The value
// to restore is also kept for RestoreBpfStatsFromSignal(), so a second signal, which kills the
// process, still restores it.
class BpfStatsEnabler {
 public:
  // Error (and nothing changed) when /proc/sys/kernel/bpf_stats_enabled cannot be read/written.
  static absl::StatusOr<BpfStatsEnabler> Enable();
  BpfStatsEnabler(BpfStatsEnabler&& o) noexcept : previous_(o.previous_) { o.previous_ = -1; }
  BpfStatsEnabler& operator=(BpfStatsEnabler&&) = delete;
  ~BpfStatsEnabler();
  int previous() const { return previous_; }

 private:
  explicit BpfStatsEnabler(int previous) : previous_(previous) {}
  int previous_ = -1;  // -1: nothing to restore
};

// Async-signal-safe: writes back the value saved by a live BpfStatsEnabler, if any.
void RestoreBpfStatsFromSignal();

struct BpfProgStats {
  uint32_t id = 0;
  std::string name;  // as the kernel keeps it (at most 15 characters)
  std::string type;  // "sk_lookup", "cgroup_sock_addr", "sock_ops", ... (or the number)
  uint64_t run_time_ns = 0;
  uint64_t run_cnt = 0;
};

// Every loaded BPF program whose name starts with `name_prefix`, by id (bpf_prog_get_next_id,
// bpf_prog_get_fd_by_id, then the info by fd). Programs that vanish while listing are skipped.
absl::StatusOr<std::map<uint32_t, BpfProgStats>> ListBpfPrograms(const std::string& name_prefix);

// The ids of the programs behind the BPF links pinned in `dir` (bpffs, one level, e.g. the
// agent's <pin dir>/links). Unreadable entries are skipped; a missing dir gives an empty set.
std::set<uint32_t> ProgIdsOfPinnedLinks(const std::string& dir);

// Whether the benchmark was built with libbpf (without it the functions above return errors).
bool HaveLibbpf();

}  // namespace weft::bench
