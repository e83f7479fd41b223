// Resource accounting for one benchmark run: CPU seconds and RSS of groups of processes
// ("mesh", "apps", ...) and host CPU from /proc/stat, sampled on a background thread between
// Start() and Stop().
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace weft::bench {

// Host CPU time from the "cpu" line of /proc/stat, in seconds (USER_HZ ticks / CLK_TCK).
// user includes nice and guest time; system excludes irq and softirq.
struct HostCpu {
  double user = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  double Total() const { return user + system + idle + iowait + irq + softirq + steal; }
};
absl::StatusOr<HostCpu> ReadHostCpu();

// One process as sampled from /proc/<pid>/{stat,status}.
struct ProcSample {
  pid_t pid = 0;
  pid_t ppid = 0;
  uint64_t start_ticks = 0;  // field 22 of stat: with pid, identifies the process
  double cpu_seconds = 0;    // utime + stime
  int64_t rss_bytes = 0;     // VmRSS
  int64_t hwm_bytes = 0;     // VmHWM
  // From /proc/<pid>/smaps_rollup (0 when unreadable): the proportional set size (each shared
  // page divided among the processes mapping it, so sums over processes do not count shared
  // library code once per process, as RSS sums do) and the anonymous (private heap/stack) part.
  int64_t pss_bytes = 0;
  int64_t anon_bytes = 0;
};
// NotFound if the process is gone (or is a zombie with no memory left to read).
absl::StatusOr<ProcSample> ReadProcSample(pid_t pid);

struct GroupSpec {
  std::string name;                 // e.g. "mesh", "apps"; unique per sampler
  std::vector<pid_t> pids;          // sampled from Start() on
  std::string cgroup_dir;           // optional: a cgroup v2 directory; cgroup.procs is re-read
                                    // at every sample
  bool include_descendants = true;  // also every descendant of those processes (found by ppid)
};

struct ProcessUsage {
  pid_t pid = 0;
  std::string comm;
  double cpu_seconds = 0;      // over the run: last sample minus the Start() sample (0 for
                               // processes first seen after Start(): all their CPU is in the run)
  bool exited = false;         // gone before Stop(): keeps its last sample's CPU
  int64_t peak_rss_bytes = 0;  // max of samples and, if alive at Stop(), VmHWM
  double mean_rss_bytes = 0;   // over the samples in which it was alive
  int64_t peak_pss_bytes = 0;  // max of the PSS samples
  double mean_pss_bytes = 0;
  int64_t peak_anon_bytes = 0;  // max of the anonymous-memory samples
  int samples = 0;
};

struct GroupUsage {
  std::string name;
  double cpu_seconds = 0;      // sum over its processes
  int64_t peak_rss_bytes = 0;  // max over samples of the group's summed RSS (at least the
                               // largest single process peak)
  double mean_rss_bytes = 0;   // mean over samples of the group's summed RSS
  int64_t peak_pss_bytes = 0;  // the same for PSS: shared pages counted once across processes
  double mean_pss_bytes = 0;
  std::vector<ProcessUsage> processes;
};

struct RunUsage {
  double elapsed_seconds = 0;
  int nproc = 0;
  HostCpu host;           // deltas over the run, seconds
  HostCpu host_fraction;  // the same as fractions of host.Total()
  int samples = 0;
  std::vector<GroupUsage> groups;
  std::vector<std::string> errors;  // bad pids, unreadable cgroups, ...: reported, not fatal
};
nlohmann::json ToJson(const RunUsage& usage);

// Samples every `period` (clamped to [10 ms, 10 s]) on one background thread. Memory is bounded
// by the number of distinct processes seen (running sums, no per-sample storage).
class ResourceSampler {
 public:
  explicit ResourceSampler(std::vector<GroupSpec> groups,
                           std::chrono::milliseconds period = std::chrono::milliseconds(100));
  ~ResourceSampler();  // stops the thread if still running
  ResourceSampler(const ResourceSampler&) = delete;
  ResourceSampler& operator=(const ResourceSampler&) = delete;

  // Takes the baseline sample and starts the thread. FailedPrecondition if already started or
  // if /proc/stat cannot be read. Bad pids are not an error: they go to RunUsage::errors.
  absl::Status Start();
  // Takes a final sample, stops the thread and returns the totals. FailedPrecondition if not
  // running.
  absl::StatusOr<RunUsage> Stop();

 private:
  struct Proc;
  struct Group;
  void Loop();
  void SampleLocked(bool final_sample);

  std::chrono::milliseconds period_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool running_ = false;
  bool stop_ = false;
  std::thread thread_;
  std::chrono::steady_clock::time_point start_time_;
  HostCpu host_start_;
  int samples_ = 0;
  std::vector<std::string> errors_;
};

}  // namespace weft::bench
