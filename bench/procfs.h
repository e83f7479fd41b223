// What weft-bench reads from /proc: a process's resident memory and CPU time, and a
// description of the machine for the report.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace weft::bench {

// VmRSS of `pid` in bytes (from /proc/<pid>/status). NotFound if the process is gone.
absl::StatusOr<int64_t> VmRssBytes(pid_t pid);

// utime + stime of `pid` (all its threads) in seconds (from /proc/<pid>/stat).
absl::StatusOr<double> CpuSeconds(pid_t pid);

struct MachineInfo {
  int nproc = 0;
  std::string kernel;     // uname -r and -v
  std::string cpu_model;  // first "model name" in /proc/cpuinfo
  int64_t mem_total_kib = 0;
  std::string loadavg;  // the first three fields of /proc/loadavg: other load skews results
};
MachineInfo ReadMachineInfo();

// Raises RLIMIT_NOFILE's soft limit to at least `want` (up to the hard limit, raising the
// hard limit too when we may). Returns the resulting soft limit.
absl::StatusOr<int64_t> RaiseFdLimit(int64_t want);

}  // namespace weft::bench
